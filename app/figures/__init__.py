"""Figure builders: plain functions from numpy arrays + labels to figures. No streamlit, no torch.

Every view is two steps, so the app, the CLI and the exports draw the same data:

1. `prepare_*(...)` -> a small frozen dataclass (arrays, labels, `.title`, `.caption` = the
   one-line caveat, `.note` = what was reduced or hidden, "" if nothing; show it by the figure);
2. a renderer: `to_plotly(prepared) -> plotly Figure` (interactive) or
   `to_matplotlib(prepared) -> matplotlib Figure` (static, pyplot-free, thread-safe);
   `app.export.render_static` writes PNG/SVG/PDF, `app.export.render_html` a standalone page.

Inputs may be numpy arrays, nested lists or CPU tensors. Bad input raises ValueError with a
message meant for the user.

Views (-> prepared type)
------------------------
1. `prepare_matrix(attn [q,k] | [heads,q,k], tokens, *, query_tokens=None, layer=None, head=None,
   fusion="mean"|"max", hide=None, hide_queries=None, window=None, topk=None, max_size=512,
   pool="mean"|"max", scale="linear"|"log") -> MatrixData`
   Repeated tokens stay separate rows (unique category names, tokens as tick text); hover reads
   "query token → key token: weight". Axes longer than `max_size` are block-pooled
   ("downsampled 2048x2048 -> 512x512 by block mean"); at most ~3 MB of plotly JSON.
2. `prepare_model_view(maps [L,heads,q,k] | list of [heads,q,k], tokens, *, layers=None, hide=None,
   cell=32, scale=...) -> GridData`: layers x heads grid of small maps in one light heatmap;
   `grid.cell_slice(layer_index, head)` locates one map.
3. `prepare_tokens(attn [k] | [heads,k] | [q,k] | [heads,q,k], tokens, *, query=None,
   query_label=None, head=None, fusion="mean", hide=None, highlight=None) -> TokenData`;
   `token_html(TokenData) -> str` is the coloured-text view (escaped HTML); the renderers draw bars.
4. `prepare_image(image [H,W,3] uint8, heat [h,w] | [h*w], *, grid=None, opacity=0.5, mask=None,
   normalize=True) -> ImageData`: patch map (attention of a query, rollout, gradient rollout, a
   generated word's cross-attention) over the image; `blend(ImageData) -> [H,W,3] uint8`.
5. Analysis: `prepare_entropy(entropy [L,H])`, `prepare_patterns(labels [L][H], scores [L,H])`,
   `prepare_layer_consistency([L,L])`, `prepare_head_distance([N,N], order=..., num_heads=...)`
   -> MatrixData; `prepare_cross_input(mean [L,H], spread [L,H], statistic=...)`,
   `prepare_importance(tokens, {method: [n]})` -> BarsData;
   `prepare_deletion_curves({method: [K+1]})` -> CurvesData.
6. `prepare_generation_step(row [k] | [heads,k], tokens, *, step, prompt_len, generated)`
   -> TokenData (generated tokens highlighted).

Example::

    from app.figures import prepare_matrix, to_plotly
    from app.export import render_static
    p = prepare_matrix(weights[0], tokens, layer=3, fusion="mean")   # weights [batch, heads, q, k]
    st.plotly_chart(to_plotly(p)); st.caption(p.note)              # in the app
    png = render_static(p, "png")                                   # bytes, 2x scale, caption included
"""
from app.figures._analysis import (
    head_names,
    prepare_cross_input,
    prepare_deletion_curves,
    prepare_entropy,
    prepare_head_distance,
    prepare_importance,
    prepare_layer_consistency,
    prepare_patterns,
)
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
from app.figures._html import token_html
from app.figures._plotly import to_plotly
from app.figures._prepare import (
    MAX_SIZE,
    prepare_generation_step,
    prepare_image,
    prepare_matrix,
    prepare_model_view,
    prepare_tokens,
)
from app.figures._static import blend, to_matplotlib

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
    "blend",
    "head_names",
    "prepare_cross_input",
    "prepare_deletion_curves",
    "prepare_entropy",
    "prepare_generation_step",
    "prepare_head_distance",
    "prepare_image",
    "prepare_importance",
    "prepare_layer_consistency",
    "prepare_matrix",
    "prepare_model_view",
    "prepare_patterns",
    "prepare_tokens",
    "to_matplotlib",
    "to_plotly",
    "token_html",
]
