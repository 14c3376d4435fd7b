"""Interactive rendering: prepared data -> `plotly.graph_objects.Figure` (no streamlit here)."""
from __future__ import annotations

import base64
import html
import io
from functools import singledispatch

import numpy as np
import plotly.graph_objects as go

from app.figures._data import BarsData, CurvesData, GridData, ImageData, MatrixData, TokenData
from app.figures._style import bar_colours, log_ticks, short, tick_positions

_TEMPLATE = "plotly_white"


def _esc(label: str) -> str:
    """Escape a label for plotly's pseudo-HTML text (a token "<s>" would otherwise strike through)."""
    return html.escape(label, quote=False)


def _layout(fig: go.Figure, title: str, caption: str, note: str, *, height: int, width: int | None = None) -> None:
    """Title, with the caveat caption (and any note) as its subtitle, so every page and exported
    HTML shows it, above the plot where long tick labels cannot cover it."""
    sub = _esc(caption) + (f"<br><i>{_esc(note)}</i>" if note else "")
    fig.update_layout(
        template=_TEMPLATE,
        title=dict(text=_esc(title), x=0.01, xanchor="left",
                   subtitle=dict(text=sub, font=dict(size=11, color="#555"))),
        height=height,
        width=width,
        margin=dict(l=10, r=10, t=100 if note else 84, b=10),
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
        ticktext=[_esc(short(labels[i])) for i in pos],
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
    hover = p.hover.format(row="%{y}", col="%{x}", value=value, text="%{text}")
    fig = go.Figure(
        go.Heatmap(
            z=z, x=x, y=y, hovertemplate=hover + "<extra></extra>", colorscale=p.colorscale,
            zmin=zmin, zmax=zmax, colorbar=colorbar, hoverongaps=False, **extra,
        )
    )
    _layout(fig, p.title, p.caption, p.note, height=min(900, max(560, 18 * rows + 240)))
    fig.update_xaxes(**_category_axis(x, p.col_labels, p.x_title), tickangle=-60 if cols > 8 else 0,
                     constrain="domain")
    # square cells: one query row is as tall as one key column is wide
    fig.update_yaxes(**_category_axis(y, p.row_labels, p.y_title), autorange="reversed",
                     scaleanchor="x", constrain="domain")
    return fig


@to_plotly.register
def _grid(p: GridData) -> go.Figure:
    cr, cc = p.cell
    n_layers, n_heads = len(p.layer_labels), len(p.head_labels)
    # unique category names for every packed row / column: "layer 2 · the"
    y = [f"gap r{k}" for k in range(p.values.shape[0])]  # gap rows/columns are NaN: never hovered
    x = [f"gap c{k}" for k in range(p.values.shape[1])]
    q = _names(p.query_labels, p.query_index)
    kk = _names(p.key_labels, p.key_index)
    for i, layer in enumerate(p.layer_labels):
        rows, _ = p.cell_slice(i, 0)
        for r, name in zip(range(rows.start, rows.stop), q):
            y[r] = f"{_esc(layer)} · {name}"
    for j, head in enumerate(p.head_labels):
        _, cols = p.cell_slice(0, j)
        for c, name in zip(range(cols.start, cols.stop), kk):
            x[c] = f"{_esc(head)} · {name}"
    extra: dict = {}
    if p.scale == "log":
        z, extra["customdata"], value = _log_z(p.values, p.log_floor), p.values, "%{customdata:.3g}"
        tickvals, ticktext = log_ticks(p.values, p.log_floor)
        colorbar = dict(title=dict(text="weight"), tickvals=tickvals, ticktext=ticktext)
    else:
        z, value, colorbar = p.values, "%{z:.3g}", dict(title=dict(text="weight"))
    fig = go.Figure(
        go.Heatmap(
            z=z, x=x, y=y, colorscale=p.colorscale, colorbar=colorbar, hoverongaps=False,
            zmin=0.0 if p.scale == "linear" else None,
            hovertemplate="%{y} → %{x}: " + value + "<extra></extra>", **extra,
        )
    )
    mid_r = [p.cell_slice(i, 0)[0].start + cr // 2 for i in range(n_layers)]
    mid_c = [p.cell_slice(0, j)[1].start + cc // 2 for j in range(n_heads)]
    _layout(fig, p.title, p.caption, p.note, height=min(1400, max(420, 60 * n_layers + 160)))
    fig.update_xaxes(type="category", tickmode="array", tickvals=[x[c] for c in mid_c],
                     ticktext=[_esc(s) for s in p.head_labels], showgrid=False, side="top")
    fig.update_yaxes(type="category", tickmode="array", tickvals=[y[r] for r in mid_r],
                     ticktext=[_esc(s) for s in p.layer_labels], showgrid=False, autorange="reversed")
    return fig


@to_plotly.register
def _tokens(p: TokenData) -> go.Figure:
    names = _names(p.tokens, None)
    fig = go.Figure(
        go.Bar(
            x=names, y=p.weights, marker_color=bar_colours(len(names), p.query, p.highlight),
            hovertemplate="%{x}: %{y:.3g}<extra></extra>",
        )
    )
    _layout(fig, p.title, p.caption, p.note, height=380)
    fig.update_xaxes(**_category_axis(names, p.tokens, "token"), tickangle=-60 if len(names) > 8 else 0)
    fig.update_yaxes(title=dict(text=_esc(p.value_name)), rangemode="tozero")
    return fig


def _png_data_uri(image: np.ndarray, max_side: int = 1024) -> tuple[str, float]:
    """[H, W, 3] uint8 -> (PNG data URI, scale) with the longer side capped at `max_side` pixels."""
    from PIL import Image

    pil = Image.fromarray(image)
    scale = min(1.0, max_side / max(pil.size))
    if scale < 1.0:
        pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), scale


@to_plotly.register
def _image(p: ImageData) -> go.Figure:
    height, width = p.image.shape[:2]
    gh, gw = p.heat.shape
    uri, scale = _png_data_uri(p.image)
    # the picture is placed in original pixel coordinates whatever its display resolution
    fig = go.Figure(go.Image(source=uri, x0=0, y0=0, dx=1 / scale, dy=1 / scale, hoverinfo="skip"))
    fig.add_trace(
        go.Heatmap(
            z=p.heat, x0=width / gw / 2, dx=width / gw, y0=height / gh / 2, dy=height / gh,
            colorscale=p.colorscale, opacity=p.opacity, zsmooth="best", zmin=0.0, zmax=1.0,
            colorbar=dict(title=dict(text=_esc(p.value_name))),
            customdata=np.stack(np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij"), axis=-1),  # [gh, gw, 2]
            hovertemplate="patch (%{customdata[0]}, %{customdata[1]}): %{z:.3f}<extra></extra>",
        )
    )
    if p.mask is not None:
        step = max(1, max(height, width) // 256)  # contour from a <= 256 px mask keeps the payload small
        m = p.mask[::step, ::step].astype(np.uint8)
        fig.add_trace(
            go.Contour(
                z=m, x0=step / 2, dx=step, y0=step / 2, dy=step, showscale=False, hoverinfo="skip",
                contours=dict(start=0.5, end=0.5, size=1, coloring="none"),
                line=dict(color="#00e5ff", width=2), name="ground truth",
            )
        )
    _layout(fig, p.title, p.caption, p.note, height=min(800, max(360, int(520 * height / max(width, 1)) + 120)))
    fig.update_xaxes(visible=False, range=[0, width], constrain="domain")
    fig.update_yaxes(visible=False, range=[height, 0], scaleanchor="x")
    return fig


@to_plotly.register
def _bars(p: BarsData) -> go.Figure:
    names = _names(p.categories, None)
    fig = go.Figure()
    for label, values in p.series.items():
        err = p.errors.get(label)
        fig.add_trace(
            go.Bar(
                x=names, y=values, name=_esc(label),
                error_y=None if err is None else dict(type="data", array=err, visible=True),
                hovertemplate=f"%{{x}} · {_esc(label)}: %{{y:.3g}}" + ("" if err is None else " ± %{error_y.array:.3g}") + "<extra></extra>",
            )
        )
    _layout(fig, p.title, p.caption, p.note, height=420)
    fig.update_layout(barmode="group", showlegend=len(p.series) > 1)
    fig.update_xaxes(**_category_axis(names, p.categories, p.x_title), tickangle=-60 if len(names) > 8 else 0)
    fig.update_yaxes(title=dict(text=_esc(p.y_title)))
    return fig


@to_plotly.register
def _curves(p: CurvesData) -> go.Figure:
    fig = go.Figure()
    for label, values in p.series.items():
        fig.add_trace(
            go.Scatter(x=p.x, y=values, mode="lines+markers", name=_esc(label),
                       hovertemplate=f"{_esc(label)}: %{{y:.3g}} after %{{x}}<extra></extra>")
        )
    _layout(fig, p.title, p.caption, p.note, height=420)
    fig.update_xaxes(title=dict(text=_esc(p.x_title)))
    fig.update_yaxes(title=dict(text=_esc(p.y_title)))
    return fig
