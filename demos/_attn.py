"""Attention maps and rollout for metric evaluation, through the project's own pipeline.

`hooks.capture_attention` and `analysis.attention_rollout` are used when present; until they land
the fallback reads transformers' eager `output_attentions` and computes rollout by the design's formula.
"""
from __future__ import annotations

from collections import defaultdict

import torch


def capture(model, **inputs):
    """Run `model(**inputs)`; return (outputs, maps) with maps[(stack, kind)] = list over layers of
    float32 tensors [batch, heads, q, k]. stack is "encoder" | "decoder" | None, kind "self" | "cross"."""
    try:
        from hooks import capture_attention
    except ImportError:
        capture_attention = None
    maps: dict = defaultdict(list)
    if capture_attention is not None:
        with torch.no_grad(), capture_attention(model) as cap:
            out = model(**inputs)
        for m in cap.maps:
            maps[(m.stack, m.kind)].append(m.weights)
        return out, dict(maps)
    if getattr(model.config, "_attn_implementation", "eager") != "eager":
        model.set_attn_implementation("eager")
    with torch.no_grad():
        out = model(**inputs, output_attentions=True)
    if getattr(out, "cross_attentions", None):
        maps[("encoder", "self")] = list(out.encoder_attentions)
        maps[("decoder", "self")] = list(out.decoder_attentions)
        maps[("decoder", "cross")] = list(out.cross_attentions)
    else:
        maps[(None, "self")] = list(out.attentions)
    return out, {k: [w.float() for w in v] for k, v in maps.items()}


def rollout(layers: list[torch.Tensor]) -> torch.Tensor:
    """Attention rollout [batch, q, k] of per-layer maps [batch, heads, q, k] (head mean, residual 0.5)."""
    try:
        from analysis import attention_rollout
    except ImportError:
        attention_rollout = None
    if attention_rollout is not None:
        return attention_rollout(layers)
    r = None
    for a in layers:
        a = 0.5 * a.mean(1) + 0.5 * torch.eye(a.shape[-1])  # [batch, q, k]
        a = a / a.sum(-1, keepdim=True)
        r = a if r is None else a @ r
    return r
