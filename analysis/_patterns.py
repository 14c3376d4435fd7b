"""Per-head attention pattern scores and a dominant label (after Clark et al. 2019, "What Does
BERT Look At?", and Xiao et al. 2024, "Efficient Streaming Language Models with Attention Sinks")."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from ._common import as_bool_mask, build_masks, check_attention, check_broadcast, chunked_row_reduce, row_mean
from ._entropy import _entropy_block, _normalizer

PATTERN_NAMES: tuple[str, ...] = ("first", "previous", "current", "delimiter", "local", "broad")
"""Scores computed per head, each a mean over query rows (see :func:`head_patterns`)."""

PATTERN_LABELS: tuple[str, ...] = PATTERN_NAMES + ("mixed",)
"""Dominant labels; ``label_index`` indexes this tuple; "mixed" = no score passed its threshold."""

PATTERN_THRESHOLDS = MappingProxyType(
    {"first": 0.5, "previous": 0.5, "current": 0.5, "delimiter": 0.5, "local": 0.8, "broad": 0.9}
)
"""Default score a pattern must reach to be a head's dominant label (mean attention mass, or
normalised entropy for "broad"). A head with ``first >= 0.5`` is flagged as an attention sink."""

_SPECIFIC = ("first", "previous", "current", "delimiter")


@dataclass(frozen=True)
class HeadPatterns:
    """Pattern scores of every head; all tensors ``[..., heads]`` (the weights' leading dims).

    ``scores[name]``: see :func:`head_patterns`; ``entropy``: head entropy in nats;
    ``label_index``: index into :data:`PATTERN_LABELS`; ``sink``: first-token score reached
    ``thresholds["first"]``; ``sink_mass``: the mean attention on the first real token.
    """

    scores: dict[str, Tensor]
    entropy: Tensor
    label_index: Tensor
    sink: Tensor
    sink_mass: Tensor
    thresholds: dict[str, float] = field(default_factory=lambda: dict(PATTERN_THRESHOLDS))

    @property
    def labels(self) -> Any:
        """Dominant labels as nested lists of str shaped like ``label_index``."""
        return labels_of(self.label_index)


def labels_of(label_index: Tensor) -> Any:
    """Map a tensor of indices into :data:`PATTERN_LABELS` to nested lists of label strings."""

    def conv(x: Any) -> Any:
        return [conv(v) for v in x] if isinstance(x, list) else PATTERN_LABELS[int(x)]

    return conv(label_index.tolist())


def _diag_rows(w: Tensor, offset: int) -> Tensor:
    """Entries ``w[..., i, i + offset]`` as ``[..., q]``; 0 where that key does not exist."""
    q = w.shape[-2]
    dg = w.diagonal(offset=offset, dim1=-2, dim2=-1)  # [..., n_diag]
    out = w.new_zeros(*w.shape[:-2], q)  # [..., q]
    start = max(0, -offset)
    out[..., start : start + dg.shape[-1]] = dg
    return out


def dominant_labels(scores: dict[str, Tensor], thresholds: dict[str, float]) -> Tensor:
    """Label index per head (into :data:`PATTERN_LABELS`): the highest of first / previous /
    current / delimiter among those reaching their threshold; else "local" if it reaches its
    threshold; else "broad"; else "mixed". NaN scores never pass."""
    spec = torch.stack([scores[n] for n in _SPECIFIC], dim=-1)  # [..., heads, 4]
    thr = torch.tensor([thresholds[n] for n in _SPECIFIC], dtype=spec.dtype)
    passes = spec >= thr  # NaN compares False
    best = torch.where(passes, spec, torch.full_like(spec, -torch.inf)).argmax(dim=-1)
    local = torch.full_like(best, PATTERN_LABELS.index("local"))
    broad = torch.full_like(best, PATTERN_LABELS.index("broad"))
    mixed = torch.full_like(best, PATTERN_LABELS.index("mixed"))
    rest = torch.where(
        scores["local"] >= thresholds["local"], local, torch.where(scores["broad"] >= thresholds["broad"], broad, mixed)
    )
    return torch.where(passes.any(dim=-1), best, rest)


def head_patterns(
    weights: Tensor,
    *,
    causal: bool = False,
    key_mask: Tensor | None = None,
    query_mask: Tensor | None = None,
    special_mask: Tensor | None = None,
    delimiter_mask: Tensor | None = None,
    window: int = 2,
    thresholds: dict[str, float] | None = None,
) -> HeadPatterns:
    """Score every head for common attention patterns and name its dominant one.

    ``weights [..., heads, q, k]`` (e.g. ``[batch, heads, q, k]`` or ``[L, batch, heads, q, k]``)
    -> :class:`HeadPatterns` with ``[..., heads]`` tensors. With ``d = k - q`` (query ``i`` sits at
    key ``i + d``), each score is the mean over scored rows of:

    - ``first``    ``a[i, f]``, ``f`` = first real key (BOS/CLS: the attention sink position)
    - ``previous`` ``a[i, i+d-1]`` (rows that have a previous key)
    - ``current``  ``a[i, i+d]``
    - ``delimiter`` ``sum_{j in D} a[i, j]``, ``D`` = ``delimiter_mask [batch, k]`` (SEP/EOS/
      punctuation, chosen by the caller); NaN when no mask is given
    - ``local``    ``sum_{|j-(i+d)| <= window} a[i, j]``
    - ``broad``    normalised entropy ``H_i / ln n_i`` (1 = uniform over the row's valid keys)

    Scored rows: real query rows with at least 2 valid keys (a row with one key is forced, e.g.
    causal row 0), minus query rows marked in ``special_mask [batch, q]``. Dominant label: see
    :func:`dominant_labels`, thresholds :data:`PATTERN_THRESHOLDS` (overridable per name).
    Sinks (``first >= thresholds["first"]``) are flagged: mass parked on the first token usually
    means "no-op", not that the token matters (Xiao et al. 2024). Patterns after Clark et al. 2019.
    """
    w = check_attention(weights)
    q, k = w.shape[-2:]
    if not isinstance(window, int) or window < 0:
        raise ValueError(f"window must be a non-negative int, got {window!r}")
    thr = dict(PATTERN_THRESHOLDS)
    if thresholds is not None:
        unknown = set(thresholds) - set(PATTERN_NAMES)
        if unknown:
            raise ValueError(f"unknown pattern names in thresholds: {sorted(unknown)}; known: {PATTERN_NAMES}")
        thr.update({n: float(v) for n, v in thresholds.items()})
    masks = build_masks(q, k, causal=causal, key_mask=key_mask, query_mask=query_mask, device=w.device)
    check_broadcast(w, masks)
    d = k - q

    rows_all = masks.rows if masks.rows is not None else torch.ones(1, q, dtype=torch.bool, device=w.device)
    rows = rows_all & (masks.n_keys >= 2)  # [..., 1, q]
    if special_mask is not None:
        rows = rows & ~as_bool_mask(special_mask, "special_mask", q, "q").to(w.device)[..., None, :]
    has_prev = (torch.arange(q, device=w.device) + d - 1) >= 0  # [q]

    scores: dict[str, Tensor] = {}
    if delimiter_mask is None:
        (h_raw,) = chunked_row_reduce(w, lambda block, scratch, _: (_entropy_block(block, scratch),))
        scores["delimiter"] = torch.full(w.shape[:-2], float("nan"), device=w.device)
    else:
        dm = as_bool_mask(delimiter_mask, "delimiter_mask", k, "k").to(w.device, torch.float32)  # [*B, k]

        def entropy_and_delimiter(block: Tensor, scratch: Tensor, dm_block: Tensor) -> tuple[Tensor, Tensor]:
            delim_rows = torch.bmm(block, dm_block[:, :, None])[..., 0]  # [n, q, k] @ [n, k, 1] -> [n, q]
            return _entropy_block(block, scratch), delim_rows

        h_raw, delim = chunked_row_reduce(w, entropy_and_delimiter, per_matrix=dm[..., None, :])  # [..., heads, q]
        scores["delimiter"] = row_mean(delim, rows)
    if key_mask is None:
        first = w[..., 0]  # [..., heads, q]
    else:
        km = as_bool_mask(key_mask, "key_mask", k, "k").to(w.device)
        first_idx = km.to(torch.int8).argmax(dim=-1)  # [*B] first real key
        idx = first_idx[..., None, None, None].expand(*w.shape[:-1], 1)  # [..., heads, q, 1]
        first = w.gather(-1, idx).squeeze(-1)  # [..., heads, q]
    scores["first"] = row_mean(first, rows)
    scores["previous"] = row_mean(_diag_rows(w, d - 1), rows & has_prev)
    scores["current"] = row_mean(_diag_rows(w, d), rows)
    local = sum(_diag_rows(w, d + o) for o in range(-window, window + 1))  # [..., heads, q]
    scores["local"] = row_mean(local, rows)
    scores["broad"] = row_mean(h_raw * _normalizer(masks.n_keys), rows)
    scores = {name: scores[name] for name in PATTERN_NAMES}
    label_index = dominant_labels(scores, thr)
    return HeadPatterns(
        scores=scores,
        entropy=row_mean(h_raw, masks.rows),
        label_index=label_index,
        sink=scores["first"] >= thr["first"],
        sink_mass=scores["first"],
        thresholds=thr,
    )
