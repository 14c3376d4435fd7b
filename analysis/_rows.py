"""Per-row attention values (entropy, positional masses, forbidden-key masses) in one chunked
pass; the per-head statistics of `_patterns`, `_masks` and `_entropy` reduce these rows."""
from __future__ import annotations

from collections.abc import Collection

import torch
from torch import Tensor

from ._common import as_bool_mask, check_attention, chunked_row_reduce
from ._entropy import _entropy_block

ROW_STATISTICS: tuple[str, ...] = ("entropy", "first", "previous", "current", "local", "delimiter", "future", "padding")
"""Names :func:`row_statistics` can compute."""

PATTERN_ROWS: tuple[str, ...] = ("entropy", "first", "previous", "current", "local")
"""The rows :func:`analysis.patterns_from_rows` needs ("delimiter" is optional)."""


def _diag_rows(w: Tensor, offset: int) -> Tensor:
    """Entries ``w[..., i, i + offset]`` as ``[..., q]``; 0 where that key does not exist."""
    q = w.shape[-2]
    dg = w.diagonal(offset=offset, dim1=-2, dim2=-1)  # [..., n_diag]
    out = w.new_zeros(*w.shape[:-2], q)  # [..., q]
    start = max(0, -offset)
    out[..., start : start + dg.shape[-1]] = dg
    return out


def row_statistics(
    weights: Tensor,
    *,
    stats: Collection[str] = PATTERN_ROWS,
    key_mask: Tensor | None = None,
    delimiter_mask: Tensor | None = None,
    window: int = 2,
    diagonal: int | None = None,
) -> dict[str, Tensor]:
    """Per-row values of ``weights [..., heads, q, k]``, each ``[..., heads, q]`` (float32).

    Query row ``i`` sits at key ``i + d``, ``d = diagonal`` (default ``k - q``; pass
    ``start + K - Q`` for rows ``start..`` of a ``[Q, K]`` map computed in chunks). Names:

    - ``entropy``  ``-sum_j a_ij ln a_ij`` (nats, 0 ln 0 = 0)
    - ``first``    ``a[i, f]``, ``f`` = first real key of ``key_mask [batch, k]`` (0 without it)
    - ``previous`` ``a[i, i+d-1]``; ``current`` ``a[i, i+d]`` (0 where the key does not exist)
    - ``local``    ``sum_{|j-(i+d)| <= window} a_ij``
    - ``delimiter`` ``sum_{j: delimiter_mask[j]} a_ij`` (needs ``delimiter_mask [batch, k]``)
    - ``future``   ``sum_{j > i+d} a_ij``
    - ``padding``  ``sum_{j: not key_mask[j]} a_ij`` (needs ``key_mask``)

    The full-size passes (entropy, delimiter, future, padding) share one chunked pass.
    """
    w = check_attention(weights)
    q, k = w.shape[-2:]
    want = set(stats)
    unknown = want - set(ROW_STATISTICS)
    if unknown:
        raise ValueError(f"unknown row statistics {sorted(unknown)}; known: {ROW_STATISTICS}")
    if not isinstance(window, int) or window < 0:
        raise ValueError(f"window must be a non-negative int, got {window!r}")
    d = k - q if diagonal is None else diagonal
    if not isinstance(d, int):
        raise TypeError(f"diagonal must be an int, got {diagonal!r}")
    km = None if key_mask is None else as_bool_mask(key_mask, "key_mask", k, "k").to(w.device)
    vectors: list[tuple[str, Tensor]] = []  # (name, [*B, k] float) summed against every row
    if "delimiter" in want:
        if delimiter_mask is None:
            raise ValueError("the 'delimiter' row statistic needs delimiter_mask [batch, k]")
        vectors.append(("delimiter", as_bool_mask(delimiter_mask, "delimiter_mask", k, "k").to(w.device)))
    if "padding" in want:
        if km is None:
            raise ValueError("the 'padding' row statistic needs key_mask [batch, k]")
        vectors.append(("padding", ~km))
    heavy = [n for n in ("entropy", "future") if n in want] + [n for n, _ in vectors]

    out: dict[str, Tensor] = {}
    if heavy:
        per_matrix = None
        if vectors:
            vec_shape = torch.broadcast_shapes(*(v.shape for _, v in vectors))
            vecs = torch.stack([v.expand(vec_shape) for _, v in vectors], dim=-2).to(torch.float32)  # [*B, m, k]
            per_matrix = vecs[..., None, :, :]  # [*B, 1(heads), m, k]

        def one_pass(block: Tensor, scratch: Tensor, vec_block: Tensor | None) -> tuple[Tensor, ...]:
            res: list[Tensor] = []
            if "entropy" in want:
                res.append(_entropy_block(block, scratch))
            if "future" in want:
                res.append(torch.triu(block, d + 1, out=scratch).sum(-1))  # keys j > i + d
            if vec_block is not None:
                sums = torch.bmm(block, vec_block.transpose(1, 2))  # [n, q, k] @ [n, k, m] -> [n, q, m]
                res.extend(sums.unbind(-1))
            return tuple(res)

        out.update(zip(heavy, chunked_row_reduce(w, one_pass, per_matrix=per_matrix, rest_dims=2)))
    if "first" in want:
        if km is None:
            out["first"] = w[..., 0].clone()  # [..., heads, q]
        else:
            first_idx = km.to(torch.int8).argmax(dim=-1)  # [*B] first real key
            idx = first_idx[..., None, None, None].expand(*w.shape[:-1], 1)  # [..., heads, q, 1]
            out["first"] = w.gather(-1, idx).squeeze(-1)  # [..., heads, q]
    if "previous" in want:
        out["previous"] = _diag_rows(w, d - 1)
    if "current" in want:
        out["current"] = _diag_rows(w, d)
    if "local" in want:
        out["local"] = sum(_diag_rows(w, d + o) for o in range(-window, window + 1))  # [..., heads, q]
    return {name: out[name] for name in ROW_STATISTICS if name in out}
