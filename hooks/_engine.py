"""The capture engine: per-model installation (refcounted, under a lock) and `Capture`."""
from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import _hf, _torch
from ._context import ACTIVE, Active
from ._naming import find_sites
from ._recorder import Recorder, WeightsRecorder
from ._types import AttentionMap, CaptureError, Site

_LOCK = threading.RLock()


# ---------------------------------------------------------------- per-model installation


@dataclass
class _Installed:
    refs: int
    sites: dict[int, Site]
    opaque: dict[int, str]
    names: dict[int, str]
    multi_stack: bool
    handles: list[Any]
    saved_configs: list[tuple[Any, Any]]
    has_mha: bool


_INSTALLED: dict[int, _Installed] = {}


def _install(model: nn.Module) -> _Installed:
    with _LOCK:
        inst = _INSTALLED.get(id(model))
        if inst is not None:
            inst.refs += 1
            return inst
        sites, opaque, multi_stack = find_sites(model)
        handles: list[Any] = []
        saved: list[tuple[Any, Any]] = []
        has_mha = False
        try:
            configs = _hf.configs_of(model)
            if configs:
                _hf.register()
                saved = _hf.switch(configs)
            for mod in model.modules():
                if isinstance(mod, nn.MultiheadAttention):
                    has_mha = True
                    handles.append(mod.register_forward_pre_hook(_torch.mha_pre_hook, with_kwargs=True))
                    handles.append(mod.register_forward_hook(_torch.mha_hook, with_kwargs=True))
                elif id(mod) in opaque:
                    handles.append(mod.register_forward_pre_hook(_torch.opaque_hook))
            if has_mha:
                _torch.fastpath_off()
        except BaseException:
            for h in handles:
                h.remove()
            _hf.restore(saved)
            raise
        names = {id(mod): name for name, mod in model.named_modules()}
        inst = _Installed(1, sites, opaque, names, multi_stack, handles, saved, has_mha)
        _INSTALLED[id(model)] = inst
        return inst


def _uninstall(model: nn.Module) -> None:
    with _LOCK:
        inst = _INSTALLED[id(model)]
        inst.refs -= 1
        if inst.refs:
            return
        del _INSTALLED[id(model)]
        for h in inst.handles:
            h.remove()
        _hf.restore(inst.saved_configs)
        if inst.has_mha:
            _torch.fastpath_restore()


# ---------------------------------------------------------------- the capture


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
        self._token: contextvars.Token | None = None

    @property
    def maps(self) -> list[AttentionMap]:
        return getattr(self.recorder, "maps", [])

    def stitched(self) -> list[AttentionMap]:
        """One map per attention module with the generation steps stitched together (see `hooks._stitch`)."""
        from ._stitch import stitch

        return stitch(self.maps)

    def __enter__(self) -> Capture:
        if self._token is not None:
            raise RuntimeError("this Capture is already active; create a new one with capture_attention()")
        inst = _install(self.model)
        if not inst.sites:
            _uninstall(self.model)
            raise CaptureError(self._no_modules_message(inst))
        self._active = Active(self.recorder, dict(inst.sites), inst.opaque, inst.names, inst.multi_stack,
                               parent=ACTIVE.get())
        self._token = ACTIVE.set(self._active)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            ACTIVE.reset(self._token)
        finally:
            self._token = None
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
) -> Capture:
    """Capture the attention probabilities of every attention module of `model` during the block.

    >>> with capture_attention(model) as cap:
    ...     model(**inputs)
    >>> cap.maps[0].weights.shape   # [batch, heads, q, k]

    layers: keep only these layer indices (within each stack); heads: keep only these heads
    (memory); dtype: storage dtype of `weights`; keep_graph: also keep `m.live` in the autograd
    graph (retain_grad) for gradient-weighted methods. Works on Hugging Face models as loaded
    (sdpa is switched to a recording function for the duration and restored), on
    nn.MultiheadAttention-based modules (weights forced on, fast path off for the duration), and
    is safe for concurrent captures from several threads on one model. Raises CaptureError when
    nothing (or only part of the attention) could be captured.
    """
    return Capture(model, WeightsRecorder(layers, heads=heads, dtype=dtype, keep_graph=keep_graph))
