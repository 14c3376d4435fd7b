"""Per-head attention pattern scores and a dominant label (after Clark et al. 2019, "What Does
BERT Look At?", and Xiao et al. 2024, "Efficient Streaming Language Models with Attention Sinks")."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from ._common import as_bool_mask, as_float, build_masks, check_broadcast, row_mean
from ._entropy import _normalizer
from ._rows import PATTERN_ROWS, row_statistics

PATTERN_NAMES: tuple[str, ...] = ("first", "previous", "current", "delimiter", "local", "broad")
"""Scores computed per head, each a mean over query rows (see :func:`head_patterns`)."""

PATTERN_LABELS: tuple[str, ...] = PATTERN_NAMES + ("mixed",)
"""Dominant labels; ``label_index`` indexes this tuple; "mixed" = no score passed its threshold."""

PATTERN_THRESHOLDS = MappingProxyType(
    {"first": 0.5, "previous": 0.5, "current": 0.5, "delimiter": 0.5, "local": 0.8, "broad": 0.9}
)
"""Default score a pattern must reach to be a head's dominant label (mean attention mass, or
normalised entropy for "broad"). A head with ``first >= 0.5`` is flagged as an attention sink."""

_SPECIFIC = PATTERN_NAMES[:4]  # ("first", "previous", "current", "delimiter"): label index = position here


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


def dominant_labels(scores: dict[str, Tensor], thresholds: dict[str, float]) -> Tensor:
    """Label index per head (into :data:`PATTERN_LABELS`): the highest of first / previous /
    current / delimiter among those reaching their threshold; else "local" if it reaches its
    threshold; else "broad"; else "mixed". NaN scores never pass."""
    spec = torch.stack([scores[n] for n in _SPECIFIC], dim=-1)  # [..., heads, 4]
    thr = torch.tensor([thresholds[n] for n in _SPECIFIC], dtype=spec.dtype, device=spec.device)
    passes = spec >= thr  # NaN compares False
    best = torch.where(passes, spec, torch.full_like(spec, -torch.inf)).argmax(dim=-1)
    local = torch.full_like(best, PATTERN_LABELS.index("local"))
    broad = torch.full_like(best, PATTERN_LABELS.index("broad"))
    mixed = torch.full_like(best, PATTERN_LABELS.index("mixed"))
    rest = torch.where(
        scores["local"] >= thresholds["local"], local, torch.where(scores["broad"] >= thresholds["broad"], broad, mixed)
    )
    return torch.where(passes.any(dim=-1), best, rest)


def _thresholds(thresholds: dict[str, float] | None) -> dict[str, float]:
    thr = dict(PATTERN_THRESHOLDS)
    if thresholds is not None:
        unknown = set(thresholds) - set(PATTERN_NAMES)
        if unknown:
            raise ValueError(f"unknown pattern names in thresholds: {sorted(unknown)}; known: {PATTERN_NAMES}")
        thr.update({n: float(v) for n, v in thresholds.items()})
    return thr


def patterns_from_rows(
    rows: Mapping[str, Tensor],
    *,
    k: int,
    causal: bool = False,
    key_mask: Tensor | None = None,
    query_mask: Tensor | None = None,
    special_mask: Tensor | None = None,
    thresholds: dict[str, float] | None = None,
) -> HeadPatterns:
    """:func:`head_patterns` from per-row values (see :func:`row_statistics`: "entropy", "first",
    "previous", "current", "local", optionally "delimiter"; each ``[..., heads, q]``) of maps with
    ``k`` keys, e.g. accumulated chunk by chunk during capture. Same scores, rows and labels."""
    missing = [n for n in PATTERN_ROWS if n not in rows]
    if missing:
        raise ValueError(f"rows lacks {missing}: compute them with row_statistics(..., stats={PATTERN_ROWS})")
    r = {n: as_float(t, f"rows[{n!r}]", min_ndim=1) for n, t in rows.items()}
    h_raw = r["entropy"]
    q = h_raw.shape[-1]
    thr = _thresholds(thresholds)
    masks = build_masks(q, k, causal=causal, key_mask=key_mask, query_mask=query_mask, device=h_raw.device)
    check_broadcast((*h_raw.shape, k), masks, "rows")
    all_rows = masks.rows if masks.rows is not None else torch.ones(1, q, dtype=torch.bool, device=h_raw.device)
    scored = all_rows & (masks.n_keys >= 2)  # [..., 1, q]: rows with a choice to make
    if special_mask is not None:
        scored = scored & ~as_bool_mask(special_mask, "special_mask", q, "q").to(h_raw.device)[..., None, :]
    has_prev = (torch.arange(q, device=h_raw.device) + (k - q) - 1) >= 0  # [q]
    scores = {
        "first": row_mean(r["first"], scored),
        "previous": row_mean(r["previous"], scored & has_prev),
        "current": row_mean(r["current"], scored),
        "delimiter": (
            row_mean(r["delimiter"], scored) if "delimiter" in r else torch.full(h_raw.shape[:-1], float("nan"), device=h_raw.device)
        ),
        "local": row_mean(r["local"], scored),
        "broad": row_mean(h_raw * _normalizer(masks.n_keys), scored),
    }
    return HeadPatterns(
        scores=scores,
        entropy=row_mean(h_raw, masks.rows),
        label_index=dominant_labels(scores, thr),
        sink=scores["first"] >= thr["first"],
        sink_mass=scores["first"],
        thresholds=thr,
    )


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
    stats = PATTERN_ROWS + (("delimiter",) if delimiter_mask is not None else ())
    rows = row_statistics(weights, stats=stats, key_mask=key_mask, delimiter_mask=delimiter_mask, window=window)
    return patterns_from_rows(
        rows,
        k=weights.shape[-1],
        causal=causal,
        key_mask=key_mask,
        query_mask=query_mask,
        special_mask=special_mask,
        thresholds=thresholds,
    )
