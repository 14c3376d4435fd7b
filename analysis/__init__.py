"""Pure statistics on attention tensors: tensors in, tensors (or small dataclasses) out.

Every function takes float attention weights ``[..., heads, q, k]`` (rows summing to 1) or a
sequence of per-layer ``[batch, heads, q, k]`` maps, never mutates its inputs, imports nothing
from ``hooks`` or ``app``, and takes its options keyword-only. Masks follow one convention:
``causal=True`` (query ``i`` may see keys ``j <= i + k - q``), ``key_mask [batch, k]`` bool
(True = real token) and ``query_mask [batch, q]`` (defaults to ``key_mask`` when ``q == k``);
statistics "over query rows" average over real rows that have at least one valid key.
Headline statistics: :func:`head_entropy` (``[..., heads]``, nats, or 0..1 with
``normalize=True``) and :func:`row_entropy`; :func:`layer_consistency` (``[batch, L, L]``
Jensen-Shannon distances between head-averaged layers), :func:`head_distance` and
:func:`cluster_order`; :func:`attention_rollout` (``[batch, q, k]``, Abnar & Zuidema 2020) with
:func:`rollout_from_query` / :func:`rollout_cls_to_patches`; :func:`gradient_rollout` and
:func:`encoder_decoder_relevance` (Chefer et al. 2021).
"""
from ._consistency import cluster_order, head_distance, layer_consistency
from ._entropy import head_entropy, row_entropy
from ._rollout import (
    attention_rollout,
    encoder_decoder_relevance,
    gradient_rollout,
    rollout_cls_to_patches,
    rollout_from_query,
)

__all__ = [
    "attention_rollout",
    "cluster_order",
    "encoder_decoder_relevance",
    "gradient_rollout",
    "head_distance",
    "head_entropy",
    "layer_consistency",
    "rollout_cls_to_patches",
    "rollout_from_query",
    "row_entropy",
]
