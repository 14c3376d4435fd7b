"""Hugging Face adapter: a registered attention function ("attnscope") that records weights.

transformers 5 modules call ``ALL_ATTENTION_FUNCTIONS.get_interface(config._attn_implementation,
eager_attention_forward)``. During a capture the engine sets ``_attn_implementation = "attnscope"``
on every config the model's modules read; `attnscope_attention` then runs the module's *own*
eager function (so weights equal eager ``output_attentions=True`` exactly) through the active
recorder. Masks are built by transformers' eager mask function (additive float masks).
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

IMPL = "attnscope"


def generic_eager_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fallback eager attention: A = softmax(Q Kᵀ·scaling + mask), out = A V.

    query [b, h, q, d]; key/value [b, h_kv, k, d] repeated to h heads (GQA). Returns
    (out [b, q, h, d], A [b, h, q, k]).
    """
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)  # [b, h, k, d]
        value = value.repeat_interleave(groups, dim=1)
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling  # [b, h, q, k]
    if attention_mask is not None:
        scores = scores + attention_mask[..., : key.shape[-2]]
    weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    out = torch.matmul(weights, value).transpose(1, 2).contiguous()  # [b, q, h, d]
    return out, weights


def module_eager(module: nn.Module) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """The eager attention function of the module's own modeling file (model-specific details such
    as GPT-2's upcast/reorder path or T5's position_bias), else `generic_eager_attention`."""
    if getattr(module, "reorder_and_upcast_attn", False) and hasattr(module, "_upcast_and_reordered_attn"):

        def gpt2_upcast(mod, query, key, value, attention_mask, **_kw):
            return mod._upcast_and_reordered_attn(query, key, value, attention_mask)

        return gpt2_upcast
    fn = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    return fn if callable(fn) else generic_eager_attention


def _to_additive(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A boolean keep-mask (sdpa style, True = attend) as an additive float mask (0 / dtype min)."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


def _as_loaded(module, query, key, value, attention_mask, **kwargs):
    """Attention as the model runs it when nothing records it: transformers' sdpa function when the
    config was "sdpa" (it accepts the eager-style float masks, and never builds a [q, k] map per head
    on the Python side, so filtered-out layers of a long input stay cheap), else the module's eager
    function (flash/flex kernels would not accept these masks)."""
    if _ORIGINALS.get(id(getattr(module, "config", None)), "sdpa") == "sdpa":
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    return module_eager(module)(module, query, key, value, _to_additive(attention_mask, query.dtype), **kwargs)


def attnscope_attention(module, query, key, value, attention_mask, **kwargs):
    """The registered attention function: record through the active recorder, else run untouched.

    Outside a capture (another thread sharing the model while it is switched), and for modules a
    capture's layer filter leaves out, the call runs as the model would have (`_as_loaded`).
    Nested captures: the innermost recorder computes the output, the outer ones get `record`.
    """
    from ._context import active_sites

    hits = active_sites(module)
    wanting = [(rec, site) for rec, site in hits if rec.wants(site)]
    if not wanting:  # not captured here, or a layer/head filter leaves this module out
        return _as_loaded(module, query, key, value, attention_mask, **kwargs)
    eager = module_eager(module)
    # A mask built before the switch (sdpa style, boolean) is converted; eager masks pass through.
    attention_mask = _to_additive(attention_mask, query.dtype)
    (inner, site), outer = wanting[0], wanting[1:]  # nested captures: the innermost computes
    out, weights = inner.hf_attention(site, module, query, key, value, attention_mask, eager, **kwargs)
    for rec, outer_site in outer:
        if isinstance(weights, torch.Tensor):
            rec.record(outer_site, weights)
    return out, weights


_registered = False


def register() -> None:
    """Register the "attnscope" attention and mask functions with transformers (idempotent)."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(IMPL, attnscope_attention)
    AttentionMaskInterface.register(IMPL, eager_mask)
    _registered = True


def configs_of(model: nn.Module) -> list[Any]:
    """Every distinct PreTrainedConfig object the model and its modules read (with sub-configs)."""
    if "transformers" not in sys.modules:
        return []  # no transformers loaded: no config can exist (pure PyTorch models stay import-light)
    from transformers import PretrainedConfig

    found: dict[int, Any] = {}

    def add(cfg: Any) -> None:
        if isinstance(cfg, PretrainedConfig) and id(cfg) not in found:
            found[id(cfg)] = cfg
            for key in getattr(cfg, "sub_configs", {}) or {}:
                add(getattr(cfg, key, None))

    for mod in model.modules():
        add(getattr(mod, "config", None))
    return list(found.values())


_ORIGINALS: dict[int, Any] = {}  # id(config) -> implementation before the switch (while switched)


def switch(config: Any) -> Any:
    """Set "attnscope" on one config; returns its original implementation for `restore`."""
    original = config.__dict__.get("_attn_implementation_internal")
    _ORIGINALS[id(config)] = original
    config._attn_implementation_internal = IMPL  # direct: the property setter would recurse into sub-configs
    return original


def restore(config: Any, original: Any) -> None:
    config._attn_implementation_internal = original
    _ORIGINALS.pop(id(config), None)
