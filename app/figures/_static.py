"""Static rendering: prepared data -> `matplotlib.figure.Figure` (Agg, object API, no pyplot state).

Thread-safe by construction: every call builds its own `Figure` + `FigureCanvasAgg`; nothing
touches pyplot's global figure manager, so concurrent app sessions cannot interfere.
"""
from __future__ import annotations

from functools import singledispatch

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from app.figures._data import BarsData, CurvesData, GridData, ImageData, MatrixData, TokenData
from app.figures._reduce import bilinear_resize
from app.figures._style import bar_colours, cmap, short, tick_positions


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)} | {0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r"}


def mpl_text(label: str) -> str:
    """Escape a label for matplotlib text: a literal "$" would otherwise start mathtext, and control
    characters (no glyph in any font) are shown as escapes ("\\n", "\\x00")."""
    return str(label).replace("$", r"\$").translate(_CONTROL)  # other backslashes are literal


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


@singledispatch
def to_matplotlib(prepared) -> Figure:
    """Static matplotlib figure for any prepared view (`MatrixData`, `GridData`, ...)."""
    raise TypeError(f"no matplotlib renderer for {type(prepared).__name__}")


def _ticks(ax, labels: tuple[str, ...], axis: str, rotate: bool) -> None:
    pos = tick_positions(len(labels))
    text = [mpl_text(short(labels[i])) for i in pos]
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
            r, g, b, _ = image.cmap(image.norm(shown[i, j]))
            ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"  # luminance contrast
            ax.text(j, i, mpl_text(str(t)), ha="center", va="center", fontsize=7, color=ink)
    fig.colorbar(image, ax=ax, label=mpl_text(p.value_name), shrink=0.8)
    add_caption(fig, p.caption, p.note)
    return fig


@to_matplotlib.register
def _grid(p: GridData) -> Figure:
    n_layers, n_heads = len(p.layer_labels), len(p.head_labels)
    fig = new_figure(min(16.0, 1.0 * n_heads + 2.5), min(16.0, 1.0 * n_layers + 1.8))
    ax = fig.add_subplot()
    if p.scale == "log":
        shown = np.maximum(p.values, p.log_floor)
        finite = shown[np.isfinite(shown)]
        norm = LogNorm(vmin=float(finite.min()), vmax=max(float(finite.max()), float(finite.min()) * 10))
    else:
        shown, norm = p.values, Normalize(vmin=0.0)
    image = ax.imshow(shown, cmap=cmap(p.colorscale), norm=norm, aspect="auto", interpolation="nearest")
    cr, cc = p.cell
    ax.set_xticks([p.cell_slice(0, j)[1].start + (cc - 1) / 2 for j in range(n_heads)],
                  [mpl_text(s) for s in p.head_labels], fontsize=7)
    ax.set_yticks([p.cell_slice(i, 0)[0].start + (cr - 1) / 2 for i in range(n_layers)],
                  [mpl_text(s) for s in p.layer_labels], fontsize=7)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(mpl_text(p.title), fontsize=11, loc="left")
    fig.colorbar(image, ax=ax, label="weight", shrink=0.8)
    add_caption(fig, p.caption, p.note)
    return fig


@to_matplotlib.register
def _tokens(p: TokenData) -> Figure:
    n = len(p.tokens)
    fig = new_figure(min(16.0, max(5.0, 0.28 * n + 1.5)), 3.6)
    ax = fig.add_subplot()
    ax.bar(np.arange(n), p.weights, color=bar_colours(n, p.query, p.highlight))
    _ticks(ax, p.tokens, "x", rotate=n > 8)
    ax.set_ylabel(mpl_text(p.value_name))
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_title(mpl_text(p.title), fontsize=11, loc="left")
    add_caption(fig, p.caption, p.note)
    return fig


@to_matplotlib.register
def _image(p: ImageData) -> Figure:
    height, width = p.image.shape[:2]
    fig = new_figure(6.4, max(3.0, 5.2 * height / max(width, 1)) + 0.8)
    ax = fig.add_subplot()
    ax.imshow(p.image, extent=(0, width, height, 0), interpolation="bilinear")
    heat = ax.imshow(p.heat, extent=(0, width, height, 0), cmap=cmap(p.colorscale), alpha=p.opacity,
                     vmin=0.0, vmax=1.0, interpolation="bilinear")
    if p.mask is not None:
        ys, xs = np.arange(height) + 0.5, np.arange(width) + 0.5  # pixel centres, y pointing down as in imshow
        ax.contour(xs, ys, p.mask.astype(np.float32), levels=[0.5], colors=["#00e5ff"], linewidths=1.5)
    ax.set_axis_off()
    ax.set_title(mpl_text(p.title), fontsize=11, loc="left")
    fig.colorbar(heat, ax=ax, label=mpl_text(p.value_name), shrink=0.8)
    add_caption(fig, p.caption, p.note)
    return fig


@to_matplotlib.register
def _bars(p: BarsData) -> Figure:
    n, k = len(p.categories), max(1, len(p.series))
    fig = new_figure(min(16.0, max(5.0, 0.3 * n * k ** 0.5 + 1.5)), 3.8)
    ax = fig.add_subplot()
    width = 0.8 / k
    for s, (label, values) in enumerate(p.series.items()):
        x = np.arange(n) - 0.4 + width * (s + 0.5)
        ax.bar(x, values, width, yerr=p.errors.get(label), label=mpl_text(label), capsize=2 if n <= 48 else 0)
    _ticks(ax, p.categories, "x", rotate=n > 8)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_xlabel(mpl_text(p.x_title))
    ax.set_ylabel(mpl_text(p.y_title))
    if len(p.series) > 1:
        ax.legend(fontsize=8)
    ax.set_title(mpl_text(p.title), fontsize=11, loc="left")
    add_caption(fig, p.caption, p.note)
    return fig


@to_matplotlib.register
def _curves(p: CurvesData) -> Figure:
    fig = new_figure(6.4, 4.2)
    ax = fig.add_subplot()
    for label, values in p.series.items():
        ax.plot(p.x, values, marker="o", markersize=3, label=mpl_text(label))
    ax.set_xlabel(mpl_text(p.x_title))
    ax.set_ylabel(mpl_text(p.y_title))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(mpl_text(p.title), fontsize=11, loc="left")
    add_caption(fig, p.caption, p.note)
    return fig


def blend(prepared: ImageData, *, colorscale: str | None = None) -> np.ndarray:
    """The overlay as one RGB image [H, W, 3] uint8: (1 - opacity) * image + opacity * cmap(heat↑).

    heat↑ is the patch map bilinearly upsampled to [H, W]; cmap is the colour scale.
    """
    h, w = prepared.image.shape[:2]
    up = bilinear_resize(prepared.heat, h, w)  # [H, W]
    colours = cmap(colorscale or prepared.colorscale)(np.clip(up, 0, 1))[:, :, :3] * 255  # [H, W, 3]
    out = (1 - prepared.opacity) * prepared.image.astype(np.float32) + prepared.opacity * colours
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
