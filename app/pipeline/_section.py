"""`Section`: every captured map of one (stack, kind) for one input, with cached statistics."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

import analysis
from app.pipeline._common import PipelineError


# -------------------------------------------------------------------------------------- sections


@dataclass
class Section:
    """All captured maps of one (stack, kind) for one input (batch item 0).

    weights[i]: float32 tensor [heads, q, k] of layer `layers[i]` (module `names[i]`).
    query_labels [q] / key_labels [k]: axis labels; query_special / key_special: bool [q] / [k]
    (special tokens, CLS); key_grid: (rows, cols) patch grid when the keys are image patches,
    with `key_cls` the index of the CLS key (None without one). causal: decoder self-attention.
    Statistics are computed on first use and cached on the section.
    """

    stack: str | None
    kind: str
    layers: list[int]
    names: list[str]
    weights: list[torch.Tensor]
    query_labels: tuple[str, ...]
    key_labels: tuple[str, ...]
    query_special: np.ndarray
    key_special: np.ndarray
    causal: bool = False
    key_grid: tuple[int, int] | None = None
    key_cls: int | None = None
    _cache: dict = field(default_factory=dict, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def title(self) -> str:
        where = f"{self.stack} " if self.stack else ""
        return f"{where}{'cross' if self.kind == 'cross' else 'self'}-attention"

    @property
    def n_heads(self) -> int:
        return int(self.weights[0].shape[0])

    def layer_weights(self, layer: int) -> torch.Tensor:
        """[heads, q, k] of layer index `layer` (position in `layers`, not the module's index)."""
        if not 0 <= layer < len(self.weights):
            raise PipelineError(f"layer {layer} is out of range: this section has {len(self.weights)} layers")
        return self.weights[layer]

    def stacked(self) -> torch.Tensor:
        """[layers, heads, q, k] (all layers have the same shape within a section)."""
        return torch.stack(self.weights)

    def _cached(self, key: str, fn: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._cache:
                self._cache[key] = fn()
            return self._cache[key]

    def _batched(self) -> list[torch.Tensor]:
        return [w.unsqueeze(0) for w in self.weights]  # each [1, heads, q, k]

    # statistics (analysis package); each [layers, heads] unless said otherwise
    def entropy(self, *, normalize: bool = True) -> torch.Tensor:
        """Head entropy [layers, heads] (Clark et al. 2019), normalised to [0, 1] by default."""
        return self._cached(f"entropy{normalize}", lambda: torch.stack([
            analysis.head_entropy(w, normalize=normalize, **self._mask_kwargs()) for w in self._batched()
        ])[:, 0])  # [layers, 1, heads] -> [layers, heads]

    def consistency(self) -> torch.Tensor:
        """Layer consistency [layers, layers]: JS distance between head-averaged maps."""
        return self._cached("consistency", lambda: analysis.layer_consistency(self._batched())[0])

    def rollout(self) -> torch.Tensor:
        """Attention rollout [q, k] (Abnar & Zuidema 2020), self-attention sections only."""
        if self.kind != "self":
            raise PipelineError("Rollout needs self-attention; choose an encoder or decoder self-attention section.")
        return self._cached("rollout", lambda: analysis.attention_rollout(self._batched())[0])

    def _mask_kwargs(self) -> dict:
        return {"causal": self.causal}

    def patterns(self):
        """`analysis.HeadPatterns` with [layers, heads] tensors (special tokens are delimiters)."""
        def compute():
            w = self.stacked().unsqueeze(1)  # [layers, 1, heads, q, k]
            q_special = torch.from_numpy(self.query_special.copy())[None]  # [1, q]
            delim = torch.from_numpy(self.key_special.copy())[None]  # [1, k]
            p = analysis.head_patterns(w, causal=self.causal, special_mask=q_special,
                                       delimiter_mask=delim if self.kind == "self" else None)
            return p
        return self._cached("patterns", compute)

    def mask_check(self):
        """`analysis.MaskCheck` over all layers ([layers, heads] future-key mass for causal sections)."""
        return self._cached("mask_check", lambda: analysis.mask_checks(self.stacked(), causal=self.causal))

    def head_distance(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(distance [L*H, L*H] between every pair of heads (Clark et al. 2019), clustering order [L*H])."""
        def compute():
            dist = analysis.head_distance(self._batched(), **self._mask_kwargs())
            if not bool(torch.isfinite(dist).all()):  # NaN/inf maps (see Run.warnings): no clustering
                return dist, torch.arange(dist.shape[0])
            return dist, analysis.cluster_order(dist)
        return self._cached("head_distance", compute)
