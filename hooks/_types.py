"""Data types shared by the capture engine: `AttentionMap`, `Site`, `CaptureError`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Kind = Literal["self", "cross"]


class CaptureError(RuntimeError):
    """Nothing (or not everything) could be captured; the message names the model class and what to try."""


@dataclass(frozen=True)
class Site:
    """Where a map comes from: one attention module of the model.

    name:  dotted module path, e.g. "encoder.layer.3.attention.self"
    layer: index of the layer within its stack (first integer in the path; 0 if none)
    stack: "encoder" | "decoder" for encoder-decoder models, "text" | "vision" for the towers of a
           dual encoder (CLIP) or a vision-language model, None for single-stack models
    kind:  "self" | "cross"
    """

    name: str
    layer: int
    stack: str | None
    kind: Kind


@dataclass
class AttentionMap:
    """Attention probabilities of one module call.

    weights: [batch, heads, q, k] detached CPU tensor (rows sum to 1 over unmasked keys; 0 on masked keys).
    live:    only with keep_graph=True: the same probabilities still in the autograd graph, full heads,
             on the model's device, with retain_grad() called, so after backward `live.grad` is dL/dA.
             (nn.MultiheadAttention: the output is recomputed from A so gradients reach it; not
             with add_bias_kv/add_zero_attn, where live.grad stays None.)
    step:    how many times this module had been called before in the same capture (0 = first
             call / prefill; during generate() one per decoding step).
    """

    name: str
    layer: int
    stack: str | None
    kind: Kind
    weights: torch.Tensor
    live: torch.Tensor | None = None
    step: int = 0

    @property
    def site(self) -> Site:
        return Site(self.name, self.layer, self.stack, self.kind)

    def __repr__(self) -> str:  # tensors are large: show shapes only
        return (
            f"AttentionMap(name={self.name!r}, layer={self.layer}, stack={self.stack!r}, kind={self.kind!r}, "
            f"weights={tuple(self.weights.shape)}, step={self.step})"
        )
