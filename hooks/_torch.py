"""PyTorch built-ins: nn.MultiheadAttention hooks and the process-global MHA fast-path switch.

The pre-hook forces need_weights=True, average_attn_weights=False (per-head weights, and the
non-fused path); the forward hook records [batch, heads, q, k] and hands the caller what it asked
for (None, or head-averaged weights). The fused fast path of nn.TransformerEncoder(Layer) and MHA
never calls these hooks (and runs on nested tensors with a padding mask), so it is switched off
while any capture on a model with MHA is active (refcounted, restored at the last exit).
"""
from __future__ import annotations

import dataclasses
import inspect
import threading

import torch
from torch import nn

from ._context import ACTIVE, active_sites

_LOCK = threading.Lock()


_MHA_PARAMS = list(inspect.signature(nn.MultiheadAttention.forward).parameters)[1:]  # query, key, value, ...


def mha_pre_hook(module, args, kwargs):
    act = ACTIVE.get()
    if act is None or not active_sites(module):
        return None
    bound = dict(zip(_MHA_PARAMS, args))  # normalise: query, key, value positional, the rest keywords
    bound.update(kwargs)
    if any(p not in bound for p in _MHA_PARAMS[:3]):
        return None  # a malformed call: let the module raise its own error
    args = tuple(bound.pop(p) for p in _MHA_PARAMS[:3])
    kwargs = bound
    act.pending.setdefault(id(module), []).append(
        (kwargs.get("need_weights", True), kwargs.get("average_attn_weights", True))
    )
    kwargs["need_weights"] = True
    kwargs["average_attn_weights"] = False
    return args, kwargs


def mha_hook(module, args, kwargs, output):
    act = ACTIVE.get()
    if act is None or not act.pending.get(id(module)):
        return None
    need, average = act.pending[id(module)].pop()
    attn_out, weights = output  # weights [batch, heads, q, k] or unbatched [heads, q, k]
    query, key, value = args[:3]  # the pre-hook moved everything else into kwargs
    keep_graph = False
    for recorder, site in active_sites(module):
        if key is not query and site.kind == "self":
            site = dataclasses.replace(site, kind="cross")
        if recorder.wants(site):
            keep_graph |= bool(getattr(recorder, "keep_graph", False))
            recorder.record(site, weights if weights.dim() == 4 else weights.unsqueeze(0))  # [batch, heads, q, k]
    if keep_graph and weights.requires_grad and module.bias_k is None and not module.add_zero_attn:
        attn_out = _output_through(module, value, weights)
    if not need:
        return attn_out, None
    if average:
        return attn_out, weights.mean(dim=-3)  # [batch, q, k] (or [q, k] unbatched), as the caller asked
    return attn_out, weights


def _output_through(module: nn.MultiheadAttention, value: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The MHA output recomputed from `weights` so that gradients reach them (torch returns the
    weights as a view the output does not depend on): out = out_proj(A · (value W_vᵀ + b_v))."""
    e, h = module.embed_dim, module.num_heads
    w_v = module.in_proj_weight[2 * e :] if module._qkv_same_embed_dim else module.v_proj_weight
    b_v = module.in_proj_bias[2 * e :] if module.in_proj_bias is not None else None
    if value.dim() == 2:
        v = value.unsqueeze(0)  # unbatched [S, vdim] -> [1, S, vdim]
    else:
        v = value if module.batch_first else value.transpose(0, 1)  # [b, S, vdim]
    v = nn.functional.linear(v, w_v, b_v).unflatten(-1, (h, e // h)).transpose(1, 2)  # [b, h, S, d]
    a = weights if weights.dim() == 4 else weights.unsqueeze(0)  # [b, h, L, S]
    out = module.out_proj((a @ v).transpose(1, 2).flatten(2))  # [b, L, E]
    if value.dim() == 2:
        return out[0]
    return out if module.batch_first else out.transpose(0, 1)


def opaque_hook(module, args):
    act = ACTIVE.get()
    while act is not None:
        if id(module) in act.opaque:
            act.opaque_ran.add(act.opaque[id(module)])
        act = act.parent


# ---------------------------------------------------------------- fast path switch (process-global)

_fastpath_refs = 0
_fastpath_saved = True


def fastpath_off() -> None:
    global _fastpath_refs, _fastpath_saved
    with _LOCK:
        if _fastpath_refs == 0:
            _fastpath_saved = torch.backends.mha.get_fastpath_enabled()
            torch.backends.mha.set_fastpath_enabled(False)
        _fastpath_refs += 1


def fastpath_restore() -> None:
    global _fastpath_refs
    with _LOCK:
        _fastpath_refs -= 1
        if _fastpath_refs == 0:
            torch.backends.mha.set_fastpath_enabled(_fastpath_saved)


