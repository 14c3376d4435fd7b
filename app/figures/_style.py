"""Style helpers shared by the plotly and matplotlib renderers: ticks, colours."""
from __future__ import annotations

import math

import matplotlib
import numpy as np

MAX_TICKS = 48
MAX_TICK_CHARS = 24


def short(label: str, limit: int = MAX_TICK_CHARS) -> str:
    """A tick label cut to `limit` characters ("…" marks the cut); hovers keep the full text."""
    return label if len(label) <= limit else label[: limit - 1] + "…"


def tick_positions(n: int, max_ticks: int = MAX_TICKS) -> np.ndarray:
    """Integer positions to label on an axis of n cells: all of them up to `max_ticks`, else evenly spaced."""
    if n <= max_ticks:
        return np.arange(n)
    step = math.ceil(n / max_ticks)
    return np.arange(0, n, step)


def log_ticks(values: np.ndarray, floor: float) -> tuple[list[float], list[str]]:
    """Colour-bar ticks for a log10 colour scale: powers of ten spanning the finite values (>= floor)."""
    finite = values[np.isfinite(values)]
    hi = float(finite.max()) if finite.size else 1.0
    lo = float(max(finite.min(), floor)) if finite.size else floor
    lo_exp = math.floor(math.log10(max(lo, floor)))
    hi_exp = math.ceil(math.log10(max(hi, floor)))
    exps = list(range(lo_exp, hi_exp + 1)) or [hi_exp]
    return [float(e) for e in exps], [f"1e{e}" if e else "1" for e in exps]


QUERY_COLOUR, HIGHLIGHT_COLOUR, BAR_COLOUR = "#e45756", "#f58518", "#4c78a8"


def bar_colours(n: int, query: int | None, highlight) -> list[str]:
    """Bar colours for a token view: the query red, highlighted (e.g. generated) tokens orange."""
    colours = [BAR_COLOUR] * n
    if highlight is not None:
        colours = [HIGHLIGHT_COLOUR if h else c for c, h in zip(colours, highlight)]
    if query is not None:
        colours[query] = QUERY_COLOUR
    return colours


def cmap(name: str):
    """A matplotlib colormap by plotly-or-matplotlib name ("blues" or "Blues")."""
    for candidate in (name, name.capitalize()):
        if candidate in matplotlib.colormaps:
            return matplotlib.colormaps[candidate]
    raise ValueError(f"unknown colour scale {name!r}")
