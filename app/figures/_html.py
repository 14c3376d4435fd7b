"""Token view as coloured text: an escaped HTML snippet (for `st.markdown(..., unsafe_allow_html=True)`
or any page). Every token text is HTML-escaped; only fixed markup is ours."""
from __future__ import annotations

import html

import numpy as np

from app.figures._data import TokenData
from app.figures._style import cmap as colormap


def _hex(rgba) -> str:
    r, g, b = (int(round(255 * c)) for c in rgba[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def token_html(p: TokenData) -> str:
    """`<div>` of `<span>`s, one per token, background = colormap(weight / max weight).

    Text colour is black or white by the background's luminance (0.299 R + 0.587 G + 0.114 B);
    the query token is outlined, highlighted tokens underlined; `title` shows the exact weight.
    """
    top = float(np.nanmax(p.weights)) if p.weights.size and np.isfinite(p.weights).any() else 0.0
    scaled = np.nan_to_num(p.weights / top if top > 0 else np.zeros_like(p.weights))  # [n] in [0, 1]
    cmap = colormap(p.colorscale)
    spans = []
    for i, (tok, w, s) in enumerate(zip(p.tokens, p.weights, scaled)):
        rgba = cmap(float(np.clip(s, 0, 1)))
        lum = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
        style = [f"background:{_hex(rgba)}", f"color:{'#000' if lum > 0.5 else '#fff'}",
                 "padding:1px 3px", "margin:1px", "border-radius:3px", "white-space:pre"]
        if i == p.query:
            style.append("outline:2px solid #e45756")
        if p.highlight is not None and p.highlight[i]:
            style.append("text-decoration:underline")
        title = html.escape(f"#{i} {tok}: {w:.4g}", quote=True)
        spans.append(f'<span class="attnscope-token" title="{title}" style="{";".join(style)}">{html.escape(tok)}</span>')
    return '<div class="attnscope-tokens" style="line-height:2;font-family:monospace">' + "".join(spans) + "</div>"
