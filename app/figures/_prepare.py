"""`prepare_*`: pure functions from arrays + labels to the prepared dataclasses in `_data`."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from app.figures._data import CAVEAT, GridData, ImageData, MatrixData, Scale, TokenData
from app.figures._reduce import (
    Fusion,
    Pool,
    as_float_array,
    block_labels,
    block_pool,
    fuse_heads,
    topk_rows,
)

MAX_SIZE = 512
"""Default cap on rows/columns sent to the browser; longer axes are block-pooled."""


def _labels(tokens: Sequence[str], n: int, *, name: str) -> tuple[str, ...]:
    labels = tuple(str(t) for t in tokens)
    if len(labels) != n:
        raise ValueError(f"{len(labels)} {name} for an axis of length {n}")
    return labels


def _mask(mask, n: int, *, name: str) -> np.ndarray | None:
    if mask is None:
        return None
    arr = np.asarray(mask, dtype=bool)
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a bool mask of shape ({n},), got {arr.shape}")
    return arr


def _window(start_stop: tuple[int, int] | None, n: int) -> slice:
    if start_stop is None:
        return slice(0, n)
    start, stop = int(start_stop[0]), int(start_stop[1])
    start, stop = max(start, 0), min(stop, n)
    if start >= stop:
        raise ValueError(f"empty token window {start_stop} for a sequence of {n} tokens")
    return slice(start, stop)


def prepare_matrix(
    attn,
    tokens: Sequence[str],
    *,
    query_tokens: Sequence[str] | None = None,
    layer: int | None = None,
    head: int | None = None,
    fusion: Fusion = "mean",
    hide: Sequence[bool] | np.ndarray | None = None,
    hide_queries: Sequence[bool] | np.ndarray | None = None,
    window: tuple[int, int] | None = None,
    topk: int | None = None,
    max_size: int = MAX_SIZE,
    pool: Pool = "mean",
    scale: Scale = "linear",
    title: str | None = None,
    caption: str = CAVEAT,
) -> MatrixData:
    """Attention matrix view of one layer: [q, k] or [heads, q, k] -> `MatrixData`.

    - `tokens` label the keys; `query_tokens` the queries (default: `tokens`, self-attention).
    - `head` picks one head of a [heads, q, k] input; otherwise heads are fused by `fusion`
      (mean_h A[h] or max_h A[h]).
    - `window=(start, stop)` keeps key positions start..stop-1 (and the same query rows for
      self-attention); `hide` [k] / `hide_queries` [q] drop masked tokens (e.g. special tokens;
      for self-attention `hide` also drops query rows). Weights are not renormalised.
    - `topk` keeps the k largest weights of each row (others empty).
    - Axes longer than `max_size` are block-pooled (mean or max over blocks of
      ceil(n / max_size) tokens); `note` then says so.
    """
    arr = as_float_array(attn, name="attention", ndim=(2, 3))
    matrix, head_desc = fuse_heads(arr, head=head, fusion=fusion)  # [q, k]
    n_q, n_k = matrix.shape
    self_attn = query_tokens is None
    keys = _labels(tokens, n_k, name="key tokens")
    queries = keys if self_attn else _labels(query_tokens, n_q, name="query tokens")
    if self_attn and n_q != n_k:
        raise ValueError(f"a {n_q}x{n_k} matrix is not self-attention: pass query_tokens for the {n_q} queries")
    hide_k = _mask(hide, n_k, name="hide")
    hide_q = _mask(hide_queries, n_q, name="hide_queries")
    if hide_q is None and self_attn:
        hide_q = hide_k
    if max_size < 1:
        raise ValueError(f"max_size must be >= 1, got {max_size}")

    cols = np.arange(n_k)[_window(window, n_k)]
    rows = np.arange(n_q)[_window(window, n_q)] if self_attn else np.arange(n_q)
    notes = []
    if window is not None:
        notes.append(f"window: tokens {cols[0]}–{cols[-1]} of {n_k}")
    if hide_k is not None:
        cols = cols[~hide_k[cols]]
    if hide_q is not None:
        rows = rows[~hide_q[rows]]
    if (hide_k is not None and hide_k.any()) or (hide_q is not None and hide_q.any()):
        notes.append("hidden tokens dropped (weights not renormalised)")
    if rows.size == 0 or cols.size == 0:
        raise ValueError("nothing left to show: every token is hidden or outside the window")
    values = matrix[np.ix_(rows, cols)]  # [q', k']
    if topk is not None:
        values = topk_rows(values, int(topk))
        notes.append(f"top-{int(topk)} weights per row")
    row_labels = tuple(queries[i] for i in rows)
    col_labels = tuple(keys[j] for j in cols)
    r0, c0 = values.shape
    br, bc = math.ceil(r0 / max_size), math.ceil(c0 / max_size)
    if br > 1 or bc > 1:
        values = block_pool(values, br, bc, pool)  # [ceil(q'/br), ceil(k'/bc)]
        if br > 1:
            row_labels, rows = block_labels(row_labels, rows, br)
        if bc > 1:
            col_labels, cols = block_labels(col_labels, cols, bc)
        notes.append(f"downsampled {r0}x{c0} -> {values.shape[0]}x{values.shape[1]} by block {pool}")

    if title is None:
        parts = [f"Layer {layer}" if layer is not None else "Attention", head_desc]
        title = ", ".join(p for p in parts if p)
    return MatrixData(
        values=np.ascontiguousarray(values, dtype=np.float32),
        row_labels=row_labels,
        col_labels=col_labels,
        title=title,
        caption=caption,
        x_title="key",
        y_title="query",
        value_name="weight",
        hover="{row} → {col}: {value}",
        scale=scale,
        zmin=0.0 if scale == "linear" else None,
        row_index=np.asarray(rows, dtype=np.int64),
        col_index=np.asarray(cols, dtype=np.int64),
        note="; ".join(notes),
    )


def prepare_model_view(
    maps,
    tokens: Sequence[str],
    *,
    query_tokens: Sequence[str] | None = None,
    layers: Sequence[int] | None = None,
    hide: Sequence[bool] | np.ndarray | None = None,
    hide_queries: Sequence[bool] | np.ndarray | None = None,
    cell: int = 32,
    pool: Pool = "mean",
    scale: Scale = "linear",
    title: str = "Model view: every layer and head",
    caption: str = CAVEAT,
) -> GridData:
    """Model view: [L, heads, q, k] (or a list of L arrays [heads, q, k]) -> `GridData`.

    Each map is reduced like `prepare_matrix` (hidden tokens dropped, then block-pooled to at
    most `cell` x `cell`), and the L x heads maps are packed into one matrix with one-cell NaN
    gaps, so the whole grid is a single light heatmap (12 x 12 heads at cell 32: ~160k cells).
    `layers` are the layer numbers to label rows with (default 0..L-1).
    """
    if isinstance(maps, (list, tuple)):
        arrays = [as_float_array(m, name=f"maps[{i}]", ndim=(3,)) for i, m in enumerate(maps)]
        if not arrays or any(a.shape != arrays[0].shape for a in arrays):
            raise ValueError("maps must be a non-empty list of equally shaped [heads, q, k] arrays")
        stack = np.stack(arrays)  # [L, heads, q, k]
    else:
        stack = as_float_array(maps, name="maps", ndim=(4,))
    n_layers, n_heads = stack.shape[:2]
    layer_ids = list(range(n_layers)) if layers is None else [int(i) for i in layers]
    if len(layer_ids) != n_layers:
        raise ValueError(f"{len(layer_ids)} layer numbers for {n_layers} layers of maps")
    cells = [
        [
            prepare_matrix(stack[i, j], tokens, query_tokens=query_tokens, hide=hide, hide_queries=hide_queries,
                           max_size=cell, pool=pool, scale=scale)
            for j in range(n_heads)
        ]
        for i in range(n_layers)
    ]
    first = cells[0][0]
    cr, cc = first.values.shape
    gap = 1
    values = np.full((n_layers * (cr + gap) - gap, n_heads * (cc + gap) - gap), np.nan, dtype=np.float32)
    grid = GridData(
        values=values,
        layer_labels=tuple(f"layer {i}" for i in layer_ids),
        head_labels=tuple(f"head {j}" for j in range(n_heads)),
        query_labels=first.row_labels,
        key_labels=first.col_labels,
        cell=(cr, cc),
        query_index=first.row_index,
        key_index=first.col_index,
        title=title,
        caption=caption,
        gap=gap,
        scale=scale,
        note=first.note.replace("downsampled", "each map downsampled"),
        log_floor=first.log_floor,
    )
    for i in range(n_layers):
        for j in range(n_heads):
            rows, cols = grid.cell_slice(i, j)
            values[rows, cols] = cells[i][j].values  # [cr, cc] into the packed grid
    return grid


def _query_row(attn, *, query: int | None, head: int | None, fusion: Fusion) -> tuple[np.ndarray, str]:
    """[k] | [heads, k] (one query row) | [q, k] | [heads, q, k] + query index -> weights [k]."""
    arr = as_float_array(attn, name="attention", ndim=(1, 2, 3))
    if arr.ndim == 1:
        return arr, ""
    if query is None and arr.ndim == 2:  # [heads, k]: one query row per head
        return fuse_heads(arr[:, None, :], head=head, fusion=fusion)[0][0], ""
    if query is None:
        raise ValueError("pick a query position: attention [q, k] or [heads, q, k] needs query=")
    matrix, desc = fuse_heads(arr, head=head, fusion=fusion)  # [q, k]
    if not 0 <= query < matrix.shape[0]:
        raise ValueError(f"query {query} out of range: there are {matrix.shape[0]} query positions")
    return matrix[query], desc


def prepare_tokens(
    attn,
    tokens: Sequence[str],
    *,
    query: int | None = None,
    query_label: str | None = None,
    head: int | None = None,
    fusion: Fusion = "mean",
    hide: Sequence[bool] | np.ndarray | None = None,
    highlight: Sequence[bool] | np.ndarray | None = None,
    title: str | None = None,
    caption: str = CAVEAT,
) -> TokenData:
    """Token view: one query's attention over `tokens` (coloured text and bars) -> `TokenData`.

    `attn` is a weight vector [k], one query row per head [heads, k], or a matrix [q, k] /
    [heads, q, k] with `query` the attending position (heads picked or fused as in
    `prepare_matrix`). `query` also marks that token when it is one of `tokens` (self-attention);
    `query_label` names the query when it is not (e.g. a generated word over image patches).
    `hide` [k] drops tokens (weights not renormalised); `highlight` [k] marks tokens (e.g. generated).
    """
    row, desc = _query_row(attn, query=query, head=head, fusion=fusion)  # [k]
    labels = _labels(tokens, row.shape[0], name="tokens")
    keep = np.ones(row.shape[0], dtype=bool)
    hide_k = _mask(hide, row.shape[0], name="hide")
    marks = _mask(highlight, row.shape[0], name="highlight")
    note = ""
    if hide_k is not None:
        keep &= ~hide_k
        if hide_k.any():
            note = "hidden tokens dropped (weights not renormalised)"
    if not keep.any():
        raise ValueError("nothing left to show: every token is hidden")
    index = np.flatnonzero(keep)
    shown_query = None
    if query is not None and query_label is None and query < len(labels) and keep[query]:
        shown_query = int(np.searchsorted(index, query))
    if title is None:
        if query_label is not None:
            who = repr(query_label)
        elif query is not None and query < len(labels):
            who = f"{labels[query]!r} (#{query})"
        else:
            who = ""
        title = "Attention" + (f" of {who}" if who else "") + (f", {desc}" if desc else "")
    return TokenData(
        weights=row[index].astype(np.float32),
        tokens=tuple(labels[i] for i in index),
        query=shown_query,
        title=title,
        caption=caption,
        highlight=None if marks is None else marks[index],
        note=note,
    )


def prepare_generation_step(
    attn,
    tokens: Sequence[str],
    *,
    step: int,
    prompt_len: int,
    generated: str,
    head: int | None = None,
    fusion: Fusion = "mean",
    hide: Sequence[bool] | np.ndarray | None = None,
    caption: str = CAVEAT,
) -> TokenData:
    """Generation view: the attention row that produced generated token `step` -> `TokenData`.

    `attn`: [k] or [heads, k], the last query row of that decoding step over the k tokens so
    far (`tokens`, prompt first); tokens at positions >= `prompt_len` are highlighted as generated.
    """
    n = len(tokens)
    if not 0 <= prompt_len <= n:
        raise ValueError(f"prompt_len {prompt_len} out of range for {n} tokens")
    generated_mask = np.arange(n) >= prompt_len
    return prepare_tokens(
        attn, tokens, query=None, head=head, fusion=fusion, hide=hide, highlight=generated_mask,
        title=f"Step {step}: attention when generating {generated!r}", caption=caption,
    )


def _rgb(image) -> np.ndarray:
    """[H, W] / [H, W, 3] / [H, W, 4], uint8 or float in [0, 1] -> [H, W, 3] uint8."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)  # [H, W] -> [H, W, 3]
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or min(arr.shape[:2]) < 1:
        raise ValueError(f"image must be [H, W, 3] RGB (or gray [H, W], RGBA [H, W, 4]), got shape {arr.shape}")
    arr = arr[:, :, :3]
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if np.issubdtype(arr.dtype, np.floating):
        return np.ascontiguousarray(np.clip(np.nan_to_num(arr) * 255.0 + 0.5, 0, 255).astype(np.uint8))
    raise ValueError(f"image must be uint8 or float in [0, 1], got dtype {arr.dtype}")


def prepare_image(
    image,
    heat,
    *,
    grid: tuple[int, int] | None = None,
    opacity: float = 0.5,
    mask=None,
    normalize: bool = True,
    title: str = "Attention over image patches",
    value_name: str = "attention",
    caption: str = CAVEAT,
) -> ImageData:
    """Image view: a patch map over an RGB image -> `ImageData` (attention from one query, rollout,
    gradient rollout or a generated word's cross-attention: any [h, w] patch map).

    `heat`: [h, w], or [h*w] with `grid=(h, w)` (patch tokens only: drop CLS/register tokens
    first). normalize: (x - min) / (max - min), so maps of different methods share a colour
    scale (a constant map becomes 0). `mask`: optional [H, W] bool ground truth, drawn as a contour.
    """
    rgb = _rgb(image)
    arr = as_float_array(heat, name="heat", ndim=(1, 2))
    if arr.ndim == 1:
        if grid is None:
            side = math.isqrt(arr.size)
            if side * side != arr.size:
                raise ValueError(f"{arr.size} patch values are not a square grid: pass grid=(rows, cols)")
            grid = (side, side)
        if grid[0] * grid[1] != arr.size:
            raise ValueError(f"{arr.size} patch values do not fill a {grid[0]}x{grid[1]} grid")
        arr = arr.reshape(grid)  # [h*w] -> [h, w]
    elif grid is not None and tuple(arr.shape) != tuple(grid):
        raise ValueError(f"heat has shape {arr.shape} but grid={grid}")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be between 0 and 1, got {opacity}")
    if not np.isfinite(arr).all():
        raise ValueError("the patch map contains NaN or infinite values")
    if normalize:
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    gt = None
    if mask is not None:
        gt = np.asarray(mask).astype(bool)
        if gt.shape != rgb.shape[:2]:
            raise ValueError(f"mask shape {gt.shape} does not match the image {rgb.shape[:2]}")
    return ImageData(image=rgb, heat=arr.astype(np.float32), title=title, caption=caption,
                     opacity=float(opacity), mask=gt, value_name=value_name)

