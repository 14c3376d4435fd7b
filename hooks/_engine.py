"""The capture engine: per-model installation (refcounted, under a lock) and `Capture`."""
from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from . import _hf, _torch
from ._context import ACTIVE, Active
from ._naming import find_sites
from ._recorder import Recorder, WeightsRecorder
from ._types import AttentionMap, CaptureError, Site

_LOCK = threading.RLock()


# ---------------------------------------------------------------- installation (refcounted)
# Everything changed is refcounted per object, not per model, so overlapping captures of a model
# and of one of its submodules (or of two models sharing a config) install and restore once.

_CONFIGS: dict[int, list[Any]] = {}  # id(config) -> [config, original implementation, refs]
_HOOKS: dict[int, list[Any]] = {}  # id(module) -> [handles, refs]


def _acquire_config(cfg: Any) -> None:
    entry = _CONFIGS.get(id(cfg))
    if entry is None:
        _CONFIGS[id(cfg)] = [cfg, _hf.switch(cfg), 1]
    else:
        entry[2] += 1


def _release_config(cfg: Any) -> None:
    entry = _CONFIGS[id(cfg)]
    entry[2] -= 1
    if entry[2] == 0:
        del _CONFIGS[id(cfg)]
        _hf.restore(cfg, entry[1])


def _acquire_hooks(mod: nn.Module) -> None:
    entry = _HOOKS.get(id(mod))
    if entry is not None:
        entry[1] += 1
        return
    if isinstance(mod, nn.MultiheadAttention):
        handles = [mod.register_forward_pre_hook(_torch.mha_pre_hook, with_kwargs=True),
                   mod.register_forward_hook(_torch.mha_hook, with_kwargs=True)]
    else:
        handles = [mod.register_forward_pre_hook(_torch.opaque_hook)]
    _HOOKS[id(mod)] = [handles, 1]


def _release_hooks(mod: nn.Module) -> None:
    entry = _HOOKS[id(mod)]
    entry[1] -= 1
    if entry[1] == 0:
        del _HOOKS[id(mod)]
        for h in entry[0]:
            h.remove()


@dataclass
class _Installed:
    """One model's share of the installation, plus what its captures need to name sites."""

    refs: int
    sites: dict[int, Site]
    opaque: dict[int, str]
    names: dict[int, str]
    multi_stack: bool
    configs: list[Any]
    hooked: list[nn.Module]
    has_mha: bool


_INSTALLED: dict[int, _Installed] = {}


def _install(model: nn.Module) -> _Installed:
    with _LOCK:
        inst = _INSTALLED.get(id(model))
        if inst is not None:
            inst.refs += 1
            return inst
        sites, opaque, multi_stack = find_sites(model)
        configs = _hf.configs_of(model)
        hooked = [m for m in model.modules() if isinstance(m, nn.MultiheadAttention) or id(m) in opaque]
        has_mha = any(isinstance(m, nn.MultiheadAttention) for m in hooked)
        done_cfg: list[Any] = []
        done_mod: list[nn.Module] = []
        try:
            if configs:
                _hf.register()
            for cfg in configs:
                _acquire_config(cfg)
                done_cfg.append(cfg)
            for mod in hooked:
                _acquire_hooks(mod)
                done_mod.append(mod)
        except BaseException:
            for mod in done_mod:
                _release_hooks(mod)
            for cfg in done_cfg:
                _release_config(cfg)
            raise
        if has_mha:
            _torch.fastpath_off()
        names = {id(mod): name for name, mod in model.named_modules()}
        inst = _Installed(1, sites, opaque, names, multi_stack, configs, hooked, has_mha)
        _INSTALLED[id(model)] = inst
        return inst


def _uninstall(model: nn.Module) -> None:
    with _LOCK:
        inst = _INSTALLED[id(model)]
        inst.refs -= 1
        if inst.refs:
            return
        del _INSTALLED[id(model)]
        for mod in inst.hooked:
            _release_hooks(mod)
        for cfg in inst.configs:
            _release_config(cfg)
        if inst.has_mha:
            _torch.fastpath_restore()


# ---------------------------------------------------------------- the capture


def _leave(active: Active) -> None:
    """Take `active` out of this context's chain, also when captures are exited out of order."""
    cur = ACTIVE.get()
    if cur is active:
        ACTIVE.set(active.parent)
        return
    while cur is not None and cur.parent is not active:
        cur = cur.parent
    if cur is not None:
        cur.parent = active.parent


class Capture:
    """A capture of one model's attention; use as a context manager (see `capture_attention`).

    maps: list[AttentionMap] in forward order (available inside and after the `with` block).
    """

    def __init__(self, model: nn.Module, recorder: Recorder) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"capture_attention needs a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.recorder = recorder
        self._active: Active | None = None
        self._entered = False

    @property
    def maps(self) -> list[AttentionMap]:
        return getattr(self.recorder, "maps", [])

    @property
    def stats(self) -> list:
        """mode="stats": one `AttentionStats` per module call, forward order ([] in mode="full")."""
        return getattr(self.recorder, "stats", [])

    def stitched(self) -> list[AttentionMap]:
        """One map per attention module with the generation steps stitched together (see `hooks._stitch`)."""
        from ._stitch import stitch

        return stitch(self.maps)

    def __enter__(self) -> Capture:
        if self._entered:
            raise RuntimeError("this Capture is already active; create a new one with capture_attention()")
        inst = _install(self.model)
        if not inst.sites:
            _uninstall(self.model)
            raise CaptureError(self._no_modules_message(inst))
        self._active = Active(self.recorder, dict(inst.sites), inst.opaque, inst.names, inst.multi_stack,
                               parent=ACTIVE.get())
        ACTIVE.set(self._active)
        self._entered = True
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            _leave(self._active)
        finally:
            self._entered = False
            _uninstall(self.model)
        if exc_type is None:
            self._check()

    # -- messages

    def _no_modules_message(self, inst: _Installed) -> str:
        cls = type(self.model).__name__
        msg = (
            f"{cls} has no attention module attnscope can observe: neither torch.nn.MultiheadAttention "
            "nor a Hugging Face module that dispatches through the attention interface (transformers >= 4.48 style)."
        )
        if inst.opaque:
            names = ", ".join(sorted(inst.opaque.values())[:4])
            msg += f" Modules computing attention another way: {names}."
        if inst.configs:
            msg += (" This Hugging Face architecture computes attention in its own code; its weights may still be "
                    "available from model(..., output_attentions=True) with attn_implementation='eager'.")
        return msg + " Try a model built from nn.MultiheadAttention or a current transformers architecture."

    def _check(self) -> None:
        act = self._active
        cls = type(self.model).__name__
        if act.opaque_ran:
            names = ", ".join(sorted(act.opaque_ran)[:4])
            raise CaptureError(
                f"{cls}: attention modules ran whose weights cannot be observed ({names}; fused or custom "
                "attention code). Captured maps would be partial. Try loading the model with "
                "attn_implementation='eager', or use nn.MultiheadAttention / a Hugging Face attention-interface model."
            )
        if not self.recorder.is_empty():
            return
        if not act.seen:
            raise CaptureError(
                f"No attention was captured from {cls}: none of its attention modules ran inside the "
                "`with capture_attention(...)` block. Call the model (or model.generate) inside the block."
            )
        layers = sorted({s.layer for s in act.sites.values()})
        want = sorted(getattr(self.recorder, "layers", None) or [])
        raise CaptureError(
            f"No attention was captured from {cls}: layers={want} matched none of its layer indices {layers}."
        )


def capture_attention(
    model: nn.Module,
    layers: Iterable[int] | None = None,
    *,
    heads: Iterable[int] | None = None,
    dtype: torch.dtype = torch.float32,
    keep_graph: bool = False,
    mode: Literal["full", "stats"] = "full",
    **stats_options: Any,
) -> Capture:
    """Capture the attention probabilities of every attention module of `model` during the block.

    >>> with capture_attention(model) as cap:
    ...     model(**inputs)
    >>> cap.maps[0].weights.shape   # [batch, heads, q, k]

    layers: keep only these layer indices (within each stack); heads: keep only these heads
    (memory); dtype: storage dtype of `weights`; keep_graph: also keep `m.live` in the autograd
    graph (retain_grad) for gradient-weighted methods (needs grad enabled; None under no_grad). Works on Hugging Face models as loaded
    (sdpa is switched to a recording function for the duration and restored), on
    nn.MultiheadAttention-based modules (weights forced on, fast path off for the duration), and
    is safe for concurrent captures from several threads on one model. Raises CaptureError when
    nothing (or only part of the attention) could be captured.

    mode="stats": keep statistics only (`cap.stats`, list of `AttentionStats`; memory grows with
    N·chunk, not N² per head), options key_mask, delimiter_mask, window, causal, head_mean_dtype,
    chunk_elements: see `hooks._stats.StatsRecorder`.
    """
    if mode == "stats":
        from ._stats import StatsRecorder

        if heads is not None or keep_graph or dtype != torch.float32:
            raise ValueError("mode='stats' keeps no maps: heads, dtype and keep_graph apply to mode='full' only "
                             "(the head mean's storage is head_mean_dtype)")
        return Capture(model, StatsRecorder(layers, **stats_options))
    if mode != "full":
        raise ValueError(f"mode must be 'full' or 'stats', got {mode!r}")
    if stats_options:
        raise TypeError(f"unexpected options for mode='full': {sorted(stats_options)}")
    return Capture(model, WeightsRecorder(layers, heads=heads, dtype=dtype, keep_graph=keep_graph))
