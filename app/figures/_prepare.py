"""`prepare_*`: pure functions from arrays + labels to the prepared dataclasses in `_data`."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from app.figures._data import CAVEAT, MatrixData, Scale
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
