"""Interactive rendering: prepared data -> `plotly.graph_objects.Figure` (no streamlit here)."""
from __future__ import annotations

import html
from functools import singledispatch

import numpy as np
import plotly.graph_objects as go

from app.figures._data import MatrixData
from app.figures._ticks import log_ticks, tick_positions

_TEMPLATE = "plotly_white"


def _esc(label: str) -> str:
    """Escape a label for plotly's pseudo-HTML text (a token "<s>" would otherwise strike through)."""
    return html.escape(label, quote=False)


def _layout(fig: go.Figure, title: str, caption: str, note: str, *, height: int, width: int | None = None) -> None:
    """Title, and the caveat caption (plus any note) as a line under the plot, so exported HTML carries it."""
    text = _esc(caption) + (f"<br><i>{_esc(note)}</i>" if note else "")
    fig.update_layout(
        template=_TEMPLATE,
        title=dict(text=_esc(title), x=0.01),
        height=height,
        width=width,
        margin=dict(l=10, r=10, t=50, b=90 if note else 70),
        annotations=[
            dict(
                text=text, xref="paper", yref="paper", x=0, y=0, yshift=-60, xanchor="left",
                yanchor="top", showarrow=False, align="left", font=dict(size=11, color="#555"),
            )
        ],
    )


def _log_z(values: np.ndarray, floor: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(np.maximum(values, floor)).astype(np.float32)


@singledispatch
def to_plotly(prepared) -> go.Figure:
    """Interactive plotly figure for any prepared view (`MatrixData`, `GridData`, ...)."""
    raise TypeError(f"no plotly renderer for {type(prepared).__name__}")


def _names(labels: tuple[str, ...], index: np.ndarray | None) -> list[str]:
    """Unique, escaped category names for an axis: the labels, or "label (#pos)" when labels repeat.

    Unique names keep repeated tokens on separate rows and let the hover show the token with
    `%{y}`/`%{x}`: O(n) payload instead of O(n^2) per-cell strings (6 MB at 512x512).
    """
    shown = [_esc(s) if s.strip() else repr(s) for s in labels]
    if len(set(shown)) == len(shown):
        return shown
    pos = index if index is not None else np.arange(len(labels))
    return [f"{s} (#{int(i)})" for s, i in zip(shown, pos)]


def _category_axis(names: list[str], labels: tuple[str, ...], title: str) -> dict:
    pos = tick_positions(len(names))
    return dict(
        title=dict(text=_esc(title)),
        type="category",
        tickmode="array",
        tickvals=[names[i] for i in pos],
        ticktext=[_esc(labels[i]) for i in pos],
        showgrid=False,
        zeroline=False,
    )


@to_plotly.register
def _matrix(p: MatrixData) -> go.Figure:
    rows, cols = p.values.shape
    y = _names(p.row_labels, p.row_index)
    x = _names(p.col_labels, p.col_index)
    extra: dict = {}
    if p.scale == "log":
        # colour by log10(value); the real value rides along in numeric customdata [rows, cols]
        z = _log_z(p.values, p.log_floor)
        extra["customdata"] = p.values
        value = "%{customdata:.3g}"
        tickvals, ticktext = log_ticks(p.values, p.log_floor)
        colorbar = dict(title=dict(text=_esc(p.value_name)), tickvals=tickvals, ticktext=ticktext)
        zmin = zmax = None
    else:
        z = p.values
        value = "%{z:.3g}"
        colorbar = dict(title=dict(text=_esc(p.value_name)))
        zmin, zmax = p.zmin, p.zmax
    if p.cell_text is not None:
        extra["text"] = [[_esc(str(t)) for t in row] for row in p.cell_text]
        extra["texttemplate"] = "%{text}"
    hover = p.hover.format(row="%{y}", col="%{x}", value=value)
    fig = go.Figure(
        go.Heatmap(
            z=z, x=x, y=y, hovertemplate=hover + "<extra></extra>", colorscale=p.colorscale,
            zmin=zmin, zmax=zmax, colorbar=colorbar, hoverongaps=False, **extra,
        )
    )
    side = min(900, max(360, 14 * max(rows, cols) + 160))
    _layout(fig, p.title, p.caption, p.note, height=side)
    fig.update_xaxes(**_category_axis(x, p.col_labels, p.x_title), tickangle=-60 if cols > 8 else 0)
    fig.update_yaxes(**_category_axis(y, p.row_labels, p.y_title), autorange="reversed")
    return fig
