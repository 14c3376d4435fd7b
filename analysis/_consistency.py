"""Consistency of attention: Jensen-Shannon distances between layers and between heads
(Clark et al. 2019), a display order for heads from average-linkage clustering, and the spread of
head statistics across inputs."""
from __future__ import annotations

import math

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._common import CHUNK_ELEMENTS, Layers, build_masks, check_broadcast, layer_list, row_mean
from ._entropy import _entropy_block, _entropy_rows
from ._patterns import PATTERN_LABELS, PATTERN_NAMES, HeadPatterns, labels_of


def _pairwise_js(x: Tensor, rows: Tensor | None) -> Tensor:
    """Row-averaged JS divergence between every pair of maps.

    ``x [N, B, 1, q, k]`` (N maps per batch item), ``rows`` bool ``[B, 1, q]`` or None ->
    ``[N, N, B]`` with ``JSD(P, Q) = H((P+Q)/2) - (H(P) + H(Q)) / 2`` (natural log) per row,
    clamped at 0 against rounding and averaged over valid rows. With ``S = P + Q``:
    ``H(S/2) = (H(S) + ln 2 * sum_j S_j) / 2`` where ``H(S) = -sum_j S_j ln S_j``, so each pair
    costs one add and one entropy pass over a reused buffer.
    """
    n, b, _, q, k = x.shape
    h = _entropy_rows(x)  # [N, B, 1, q]
    mass = x.sum(-1)  # [N, B, 1, q] row sums (1 for attention rows)
    out = torch.zeros(n, n, b, dtype=torch.float32, device=x.device)
    step = max(1, CHUNK_ELEMENTS // max(1, x[0].numel()))
    pair_sum = torch.empty(min(step, n), b, 1, q, k, dtype=torch.float32, device=x.device)  # S, reused
    scratch = torch.empty(min(step, n) * b, q, k, dtype=torch.float32, device=x.device)
    for a in range(n - 1):
        for s in range(a + 1, n, step):
            e = min(n, s + step)
            pq = torch.add(x[s:e], x[a], out=pair_sum[: e - s])  # [c, B, 1, q, k]
            flat = pq.view(-1, q, k)  # [c*B, q, k]
            h_s = _entropy_block(flat, scratch[: flat.shape[0]]).view(e - s, b, 1, q)  # [c, B, 1, q]
            h_m = 0.5 * (h_s + math.log(2.0) * (mass[a] + mass[s:e]))
            jsd = (h_m - 0.5 * (h[a] + h[s:e])).clamp_(min=0.0)  # [c, B, 1, q]
            d = row_mean(jsd, rows).squeeze(-1)  # [c, B]
            out[a, s:e] = d
            out[s:e, a] = d
    return out


def layer_consistency(
    layers: Layers,
    *,
    causal: bool = False,
    key_mask: Tensor | None = None,
    query_mask: Tensor | None = None,
) -> Tensor:
    """Jensen-Shannon distance between the head-averaged attention maps of every pair of layers.

    ``layers``: sequence of ``[batch, heads, q, k]`` (one per layer) or ``[L, batch, heads, q, k]``
    -> ``[batch, L, L]``. With ``P_l = mean_h A_l`` and ``M = (P_a + P_b) / 2``:
    ``D[a, b] = sqrt( mean_i JSD(P_a[i], P_b[i]) )``, ``JSD = (KL(P||M) + KL(Q||M)) / 2`` in nats,
    averaged over valid query rows (padding queries excluded). Symmetric, 0 on the diagonal,
    bounded by ``sqrt(ln 2)``. JS divergence between attention maps follows Clark et al. 2019.
    """
    ws = layer_list(layers)
    q, k = ws[0].shape[-2:]
    masks = build_masks(q, k, causal=causal, key_mask=key_mask, query_mask=query_mask, device=ws[0].device)
    check_broadcast(ws[0].shape, masks, "layers[0]")
    p = torch.stack([w.mean(dim=1, keepdim=True) for w in ws])  # [L, B, 1, q, k]
    rows = None if masks.rows is None else masks.rows.expand(p.shape[1], 1, q)  # [B, 1, q]
    js = _pairwise_js(p, rows)  # [L, L, B]
    return js.sqrt().permute(2, 0, 1).contiguous()  # [B, L, L]


def head_distance(
    layers: Layers,
    *,
    causal: bool = False,
    key_mask: Tensor | None = None,
    query_mask: Tensor | None = None,
) -> Tensor:
    """Jensen-Shannon distance between every pair of heads of the model (Clark et al. 2019).

    ``layers``: sequence of ``[batch, heads, q, k]`` or ``[L, batch, heads, q, k]`` ->
    ``[L*H, L*H]``, head ``(l, h)`` at index ``l * H + h``. For heads ``A``, ``B``:
    ``D = mean_batch sqrt( mean_i JSD(A[i], B[i]) )`` (natural log, valid query rows). Clark et al.
    sum the JS divergence over rows; the row mean used here keeps ``D`` within ``[0, sqrt(ln 2)]``
    at any length and matches :func:`layer_consistency`. Cost ``O((L*H)^2 * q * k)``.
    """
    ws = layer_list(layers)
    b, n_heads, q, k = ws[0].shape
    masks = build_masks(q, k, causal=causal, key_mask=key_mask, query_mask=query_mask, device=ws[0].device)
    check_broadcast(ws[0].shape, masks, "layers[0]")
    x = torch.stack(ws).transpose(1, 2).reshape(len(ws) * n_heads, b, 1, q, k)  # [L*H, B, 1, q, k]
    rows = None if masks.rows is None else masks.rows.expand(b, 1, q)  # [B, 1, q]
    return _pairwise_js(x, rows).sqrt().mean(-1)  # [L*H, L*H]


def cluster_order(distance: Tensor) -> Tensor:
    """Leaf order of average-linkage (UPGMA) hierarchical clustering of a distance matrix.

    ``distance [n, n]`` (symmetric, non-negative) -> ``long [n]``, a permutation that puts similar
    items next to each other (for ordering heads in a heatmap). Repeatedly merges the two closest
    clusters; the distance of a merged cluster ``C = A u B`` to ``X`` is
    ``(|A| d(A, X) + |B| d(B, X)) / (|A| + |B|)``; the leaves of the older (lower-index) cluster
    come first. Ties are broken by the lowest index, so the order is deterministic.
    """
    if not isinstance(distance, Tensor):
        raise TypeError(f"distance must be a torch.Tensor [n, n], got {type(distance).__name__}")
    if distance.ndim != 2 or distance.shape[0] != distance.shape[1]:
        raise ValueError(f"distance must be a square [n, n] matrix, got shape {tuple(distance.shape)}")
    d = distance.detach().to(torch.float64).cpu().numpy().copy()  # [n, n]
    n = d.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    if not np.isfinite(d).all():
        raise ValueError("distance contains NaN or infinite entries")
    if (d < 0).any():
        raise ValueError("distance must be non-negative")
    if not np.allclose(d, d.T, atol=1e-6):
        raise ValueError("distance must be symmetric")
    np.fill_diagonal(d, np.inf)
    orders: list[list[int]] = [[i] for i in range(n)]
    sizes = np.ones(n)
    active = np.ones(n, dtype=bool)
    for _ in range(n - 1):
        flat = int(np.argmin(d))
        a, b = divmod(flat, n)
        a, b = min(a, b), max(a, b)
        merged = (sizes[a] * d[a] + sizes[b] * d[b]) / (sizes[a] + sizes[b])  # [n]
        d[a, :] = merged
        d[:, a] = merged
        d[a, a] = np.inf
        d[b, :] = np.inf
        d[:, b] = np.inf
        d[a, ~active] = np.inf
        d[~active, a] = np.inf
        orders[a] = orders[a] + orders[b]
        sizes[a] += sizes[b]
        active[b] = False
    return torch.tensor(orders[int(np.flatnonzero(active)[0])], dtype=torch.long)


@dataclass(frozen=True)
class CrossInputConsistency:
    """How stable each head is across inputs; tensors ``[..., heads]``.

    ``mean[name]`` / ``std[name]`` for every pattern score and ``"entropy"`` (NaN-aware, population
    std); ``modal_label_index``: the most frequent dominant label (index into
    :data:`PATTERN_LABELS`, ties to the lower index); ``label_agreement``: fraction of inputs whose
    label is the modal one; ``label_changes``: True where the dominant label is not the same on
    every input.
    """

    n_inputs: int
    mean: dict[str, Tensor]
    std: dict[str, Tensor]
    modal_label_index: Tensor
    label_agreement: Tensor
    label_changes: Tensor

    @property
    def modal_labels(self) -> Any:
        """Modal labels as nested lists of str."""
        return labels_of(self.modal_label_index)


def cross_input_consistency(per_input: Sequence[HeadPatterns]) -> CrossInputConsistency:
    """Spread of each head's entropy and pattern scores over a set of inputs.

    ``per_input``: one :class:`HeadPatterns` per input (from :func:`head_patterns`, equal shapes
    ``[..., heads]``, at least 2). For every score ``s`` and head: ``mean = nanmean_n s_n``,
    ``std = sqrt(nanmean_n (s_n - mean)^2)``; a head whose dominant label differs between inputs
    is flagged in ``label_changes``: a pattern seen on one input may not hold on others.
    """
    if isinstance(per_input, HeadPatterns) or not isinstance(per_input, Sequence):
        raise TypeError("per_input must be a sequence of HeadPatterns, one per input")
    if len(per_input) < 2:
        raise ValueError(f"need the patterns of at least 2 inputs to measure their spread, got {len(per_input)}")
    for i, p in enumerate(per_input):
        if not isinstance(p, HeadPatterns):
            raise TypeError(f"per_input[{i}] must be a HeadPatterns (from head_patterns), got {type(p).__name__}")
        if p.label_index.shape != per_input[0].label_index.shape:
            raise ValueError(
                f"per_input[{i}] has head shape {tuple(p.label_index.shape)} but per_input[0] has "
                f"{tuple(per_input[0].label_index.shape)}: compare the same model's heads"
            )
    mean: dict[str, Tensor] = {}
    std: dict[str, Tensor] = {}
    for name in (*PATTERN_NAMES, "entropy"):
        x = torch.stack([p.entropy if name == "entropy" else p.scores[name] for p in per_input])  # [N, ..., heads]
        m = x.nanmean(dim=0)
        mean[name] = m
        std[name] = ((x - m) ** 2).nanmean(dim=0).sqrt()
    labels = torch.stack([p.label_index for p in per_input])  # [N, ..., heads]
    counts = torch.stack([(labels == c).sum(dim=0) for c in range(len(PATTERN_LABELS))])  # [C, ..., heads]
    modal = counts.argmax(dim=0)  # first maximum = lower index on ties
    agreement = counts.amax(dim=0).to(torch.float32) / len(per_input)
    return CrossInputConsistency(
        n_inputs=len(per_input),
        mean=mean,
        std=std,
        modal_label_index=modal,
        label_agreement=agreement,
        label_changes=agreement < 1.0,
    )
