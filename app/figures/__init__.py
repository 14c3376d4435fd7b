"""Figure builders: plain functions from numpy arrays + labels to figures. No streamlit, no torch.

Every view is two steps, so the app, the CLI and the exports draw the same data:

1. `prepare_*(...)` -> a small frozen dataclass (arrays, labels, title, caption, note);
2. a renderer: `to_plotly(prepared) -> plotly Figure` (interactive) or
   `to_matplotlib(prepared) -> matplotlib Figure` (static; `app.export.render_static` writes
   PNG/SVG/PDF from it, `app.export.render_html` a standalone HTML page).

Views
-----
`prepare_matrix(attn [q,k] | [heads,q,k], tokens, *, query_tokens=None, layer=None, head=None,
fusion="mean"|"max", hide=None [k] bool, hide_queries=None [q] bool, window=(start, stop),
topk=None, max_size=512, pool="mean"|"max", scale="linear"|"log") -> MatrixData`
    One layer's attention, one head or fused heads. Repeated tokens stay separate rows; hover
    reads "query token → key token: weight". Axes longer than `max_size` are block-pooled and
    `.note` says so ("downsampled 2048x2048 -> 512x512 by block mean"): show it beside the figure.

Every prepared object has `.title`, `.caption` (the one-line caveat, default `CAVEAT`) and
`.note` (empty unless data were reduced or hidden).

Example::

    from app.figures import prepare_matrix, to_plotly
    from app.export import render_static
    p = prepare_matrix(attn[0, :, :, :], tokens, layer=3, head=None, fusion="mean")
    fig = to_plotly(p)                       # st.plotly_chart(fig) in the app
    png = render_static(p, "png")            # bytes, 2x scale, caption included
"""
from app.figures._data import (
    CAVEAT,
    BarsData,
    CurvesData,
    GridData,
    ImageData,
    MatrixData,
    Prepared,
    TokenData,
)
from app.figures._plotly import to_plotly
from app.figures._prepare import MAX_SIZE, prepare_matrix
from app.figures._static import to_matplotlib

__all__ = [
    "CAVEAT",
    "MAX_SIZE",
    "BarsData",
    "CurvesData",
    "GridData",
    "ImageData",
    "MatrixData",
    "Prepared",
    "TokenData",
    "prepare_matrix",
    "to_matplotlib",
    "to_plotly",
]
