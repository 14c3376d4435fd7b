"""The recorder interface: the one place where captured attention goes.

Every capture routes through a `Recorder`. The engine (`hooks._engine`) finds the attention
modules, installs the adapters (Hugging Face attention function, `nn.MultiheadAttention` hooks)
and, for each module call inside an active capture, calls exactly one of:

* ``recorder.hf_attention(site, module, query, key, value, attention_mask, eager, **kwargs)``
  for Hugging Face modules that dispatch through ``ALL_ATTENTION_FUNCTIONS``. Shapes:
  query [batch, heads, q, d], key/value [batch, kv_heads, k, d] (kv_heads < heads under
  grouped-query attention), attention_mask additive float [batch, 1, q, k] or None; kwargs carry
  ``scaling``, ``dropout`` and model extras (T5 ``position_bias``...). It must return what the
  model's own eager function returns: ``(attn_output [batch, q, heads, d], attn_weights)``.
  The default calls ``eager`` (the module's own eager function) and passes the weights to
  ``record``. A statistics-only recorder may instead compute the output another way and
  derive statistics chunk-wise from query/key without materialising [batch, heads, q, k].
* ``recorder.record(site, weights)`` for PyTorch built-ins (weights [batch, heads, q, k]).

``recorder.wants(site)`` is asked first; a module it does not want runs untouched.
A recorder lives in a ContextVar chain (`hooks._context`) for the duration of a
`with Capture(model, recorder):` block, so concurrent captures in other threads use their own
recorder. When captures are nested, the innermost wanting recorder runs ``hf_attention`` and the
outer ones receive ``record(site, weights)`` with the weights it returned (if it returned a tensor).
"""
from __future__ import annotations

import numbers
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch

from ._types import AttentionMap, Site


def _indices(values: Iterable[int] | None, what: str) -> frozenset[int] | None:
    """None, or an iterable of ints as a frozenset; anything else is a clear TypeError."""
    if values is None:
        return None
    if isinstance(values, (int, str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{what} must be an iterable of ints such as [0, 2], got {values!r}")
    out = set()
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (numbers.Integral, torch.Tensor)) or (
            isinstance(v, torch.Tensor) and (v.numel() != 1 or v.is_floating_point())
        ):
            raise TypeError(f"{what} must contain ints, got {v!r}")
        out.add(int(v))
    return frozenset(out)


class Recorder:
    """Base recorder: filters by site and delegates weight storage to `record`."""

    def __init__(self, layers: Iterable[int] | None = None) -> None:
        self.layers = _indices(layers, "layers")

    def wants(self, site: Site) -> bool:
        return self.layers is None or site.layer in self.layers

    def hf_attention(
        self,
        site: Site,
        module: torch.nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        eager: Callable[..., tuple[torch.Tensor, torch.Tensor]],
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out, weights = eager(module, query, key, value, attention_mask, **kwargs)
        self.record(site, weights)
        return out, weights

    def record(self, site: Site, weights: torch.Tensor) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def is_empty(self) -> bool:  # pragma: no cover - interface
        raise NotImplementedError


class WeightsRecorder(Recorder):
    """Stores every wanted call as an `AttentionMap` (detached CPU copy, optional head subset)."""

    def __init__(
        self,
        layers: Iterable[int] | None = None,
        *,
        heads: Iterable[int] | None = None,
        dtype: torch.dtype = torch.float32,
        keep_graph: bool = False,
    ) -> None:
        super().__init__(layers)
        if dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
            raise ValueError(f"dtype must be a floating dtype (float32, float16, bfloat16), got {dtype}")
        self.heads = None if heads is None else sorted(_indices(heads, "heads"))
        self.dtype = dtype
        self.keep_graph = keep_graph
        self.maps: list[AttentionMap] = []
        self._steps: dict[str, int] = defaultdict(int)

    def record(self, site: Site, weights: torch.Tensor) -> None:
        live = None
        if self.keep_graph and weights.requires_grad:
            weights.retain_grad()
            live = weights
        stored = weights.detach()
        if self.heads is not None:
            n_heads = stored.shape[1]
            bad = [h for h in self.heads if not -n_heads <= h < n_heads]
            if bad:
                raise ValueError(f"heads={bad} out of range for {site.name} with {n_heads} heads")
            stored = stored[:, self.heads]  # [batch, len(heads), q, k]
        stored = stored.to(device="cpu", dtype=self.dtype, copy=True)
        step = self._steps[site.name]
        self._steps[site.name] += 1
        self.maps.append(AttentionMap(site.name, site.layer, site.stack, site.kind, stored, live, step))

    def is_empty(self) -> bool:
        return not self.maps
