"""Attention maps for metric evaluation, captured through the project's own `hooks.capture_attention`."""
from __future__ import annotations

from collections import defaultdict

import torch

from hooks import capture_attention


def capture(model, **inputs):
    """Run `model(**inputs)` under capture; return (outputs, maps) with maps[(stack, kind)] the list
    over layers (forward order) of float32 tensors [batch, heads, q, k]; stack "encoder" | "decoder" |
    None (single-stack models), kind "self" | "cross"."""
    maps: dict = defaultdict(list)
    with torch.no_grad(), capture_attention(model) as cap:
        out = model(**inputs)
    for m in cap.maps:
        maps[(m.stack, m.kind)].append(m.weights)
    return out, dict(maps)
