"""Static rendering: prepared data -> `matplotlib.figure.Figure` (Agg, object API, no pyplot state).

Thread-safe by construction: every call builds its own `Figure` + `FigureCanvasAgg`; nothing
touches pyplot's global figure manager, so concurrent app sessions cannot interfere.
"""
from __future__ import annotations

from functools import singledispatch

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from app.figures._data import MatrixData
from app.figures._ticks import tick_positions


def mpl_text(label: str) -> str:
    """Escape a label for matplotlib text: a literal "$" would otherwise start mathtext."""
    return str(label).replace("\\", "\\\\").replace("$", r"\$")


def new_figure(width: float, height: float) -> Figure:
    """A pyplot-free figure with its own Agg canvas; `width`/`height` in inches (at dpi 100)."""
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def add_caption(fig: Figure, caption: str, note: str = "") -> None:
    """The one-line caveat (and any note) under the axes, as part of the figure."""
    text = mpl_text(caption) + (f"\n{mpl_text(note)}" if note else "")
    fig.get_layout_engine().set(h_pad=0.1)
    fig.supxlabel(text, fontsize=8, color="#444", ha="left", x=0.01)


def cmap(name: str):
    return matplotlib.colormaps[name]


@singledispatch
def to_matplotlib(prepared) -> Figure:
    """Static matplotlib figure for any prepared view (`MatrixData`, `GridData`, ...)."""
    raise TypeError(f"no matplotlib renderer for {type(prepared).__name__}")


def _ticks(ax, labels: tuple[str, ...], axis: str, rotate: bool) -> None:
    pos = tick_positions(len(labels))
    text = [mpl_text(labels[i]) for i in pos]
    if axis == "x":
        ax.set_xticks(pos, text, rotation=90 if rotate else 0, fontsize=7)
    else:
        ax.set_yticks(pos, text, fontsize=7)


@to_matplotlib.register
def _matrix(p: MatrixData) -> Figure:
    rows, cols = p.values.shape
    side = min(12.0, max(4.5, 0.2 * max(rows, cols) + 2.5))
    fig = new_figure(side + 1.2, side)
    ax = fig.add_subplot()
    if p.scale == "log":
        shown = np.maximum(p.values, p.log_floor)  # NaN stays NaN (empty cell)
        finite = shown[np.isfinite(shown)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (p.log_floor, 1.0)
        norm = LogNorm(vmin=lo, vmax=max(hi, lo * 10))
    else:
        norm = Normalize(vmin=p.zmin, vmax=p.zmax)
        shown = p.values
    image = ax.imshow(shown, cmap=cmap(p.colorscale), norm=norm, aspect="auto", interpolation="nearest")
    _ticks(ax, p.col_labels, "x", rotate=cols > 8)
    _ticks(ax, p.row_labels, "y", rotate=False)
    ax.set_xlabel(mpl_text(p.x_title))
    ax.set_ylabel(mpl_text(p.y_title))
    ax.set_title(mpl_text(p.title), fontsize=11, loc="left")
    if p.cell_text is not None:
        for (i, j), t in np.ndenumerate(np.asarray(p.cell_text)):
            ax.text(j, i, mpl_text(str(t)), ha="center", va="center", fontsize=6, color="white")
    fig.colorbar(image, ax=ax, label=mpl_text(p.value_name), shrink=0.8)
    add_caption(fig, p.caption, p.note)
    return fig
