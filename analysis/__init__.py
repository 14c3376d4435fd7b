"""Pure statistics on attention tensors: tensors in, tensors (or small dataclasses) out.

Every function takes float attention weights ``[..., heads, q, k]`` (rows summing to 1) or a
sequence of per-layer ``[batch, heads, q, k]`` maps, never mutates its inputs, imports nothing
from ``hooks`` or ``app``, and takes its options keyword-only. Masks follow one convention:
``causal=True`` (query ``i`` may see keys ``j <= i + k - q``), ``key_mask [batch, k]`` bool
(True = real token) and ``query_mask [batch, q]`` (defaults to ``key_mask`` when ``q == k``);
statistics "over query rows" average over real rows that have at least one valid key.
Statistics: :func:`head_entropy` (``[..., heads]``, nats, or 0..1 with ``normalize=True``) and
:func:`row_entropy`; :func:`layer_consistency` (``[batch, L, L]`` Jensen-Shannon distances between
head-averaged layers), :func:`head_distance` + :func:`cluster_order` (head x head distances and a
display order) and :func:`cross_input_consistency` (spread of head statistics over inputs);
:func:`attention_rollout` (``[batch, q, k]``, Abnar & Zuidema 2020) with :func:`rollout_from_query`
and :func:`rollout_cls_to_patches`; :func:`gradient_rollout` and :func:`encoder_decoder_relevance`
(Chefer et al. 2021); :func:`head_patterns` (previous / current / first-token sink / delimiter /
local / broad scores and a dominant label); :func:`mask_checks` (mass on future and padding keys);
:func:`faithfulness_check` (occlusion vs attention: Spearman ρ, top-k overlap, AOPC, and a
one-sentence verdict). For maps too large to hold at once, :func:`row_statistics` computes the
per-row values chunk by chunk (its ``diagonal`` places a block of query rows) and
:func:`entropy_from_rows`, :func:`patterns_from_rows`, :func:`mask_checks_from_rows` reduce them
exactly as the full-map functions do.
"""
from ._consistency import (
    CrossInputConsistency,
    cluster_order,
    cross_input_consistency,
    head_distance,
    layer_consistency,
)
from ._entropy import entropy_from_rows, head_entropy, row_entropy
from ._faithfulness import (
    AGREEMENT_THRESHOLDS,
    INPUT_X_GRADIENT,
    OPPOSITE_RHO,
    FaithfulnessReport,
    MethodAgreement,
    faithfulness_check,
    spearman,
)
from ._masks import DEFAULT_TOLERANCE, Leak, MaskCheck, mask_checks, mask_checks_from_rows
from ._patterns import (
    PATTERN_LABELS,
    PATTERN_NAMES,
    PATTERN_THRESHOLDS,
    HeadPatterns,
    dominant_labels,
    head_patterns,
    labels_of,
    patterns_from_rows,
)
from ._rows import PATTERN_ROWS, ROW_STATISTICS, row_statistics
from ._rollout import (
    attention_rollout,
    encoder_decoder_relevance,
    gradient_rollout,
    rollout_cls_to_patches,
    rollout_from_query,
)

__all__ = [
    "AGREEMENT_THRESHOLDS",
    "CrossInputConsistency",
    "DEFAULT_TOLERANCE",
    "FaithfulnessReport",
    "HeadPatterns",
    "INPUT_X_GRADIENT",
    "Leak",
    "MaskCheck",
    "MethodAgreement",
    "OPPOSITE_RHO",
    "PATTERN_LABELS",
    "PATTERN_NAMES",
    "PATTERN_ROWS",
    "PATTERN_THRESHOLDS",
    "ROW_STATISTICS",
    "attention_rollout",
    "cluster_order",
    "cross_input_consistency",
    "dominant_labels",
    "encoder_decoder_relevance",
    "entropy_from_rows",
    "faithfulness_check",
    "gradient_rollout",
    "head_distance",
    "head_entropy",
    "head_patterns",
    "labels_of",
    "layer_consistency",
    "mask_checks",
    "mask_checks_from_rows",
    "patterns_from_rows",
    "rollout_cls_to_patches",
    "rollout_from_query",
    "row_entropy",
    "row_statistics",
    "spearman",
]
