"""Statistics-only capture: attention statistics computed chunk-wise, without storing full maps.

`capture_attention(model, mode="stats")` routes every call through `StatsRecorder`. For a Hugging
Face attention-interface module it computes ``A = softmax(Q Kᵀ·scaling [+ position_bias] + mask)``
in chunks of query rows (key/value heads repeated for grouped-query attention) and, from the same
chunk, the module's output ``A V`` and ``A K`` in one matmul against ``[K | V]`` (``A K`` gives the
entropy without a log over the chunk: ``H_i = lse_i - <q_i·scaling, (A K)_i>``). Per row and head
it accumulates the quantities the `analysis` statistics average, plus the head-mean map
``mean_h A`` per layer (what attention rollout needs). The output is the eager output (exact, and
no second attention pass): this costs less than running sdpa for the output and recomputing ``A``
for the statistics (measured: docs/benchmarks.md).

Extra memory per call is about ``batch·heads·chunk·k`` floats (``chunk`` = ``chunk_elements //
(batch·heads·k)`` rows, default 2^23 elements = 32 MB in float32) plus the ``[batch, q, k]``
head mean when ``head_mean_dtype`` is not None; never ``[batch, heads, q, k]``.

Exactness: the first time each module runs in this process (per dtype and set of extra arguments),
rows computed this way are compared with the module's *own* eager function on the last few query
rows. A module whose eager function does something else (soft-capping, attention sinks, custom
upcasting) falls back to running that eager function chunk by chunk (output and weights from
it): still bounded, still exact.
`nn.MultiheadAttention` computes its full weights anyway; they are reduced with the same code.

Per-row values kept (``AttentionStats.rows``, each ``[batch, heads, q]`` float32 on CPU) are those of
`analysis.row_statistics` ("entropy", "first", "previous", "current", "local", plus "future" for
causal modules or ``causal=True``, "padding" with ``key_mask``, "delimiter" with ``delimiter_mask``),
computed on each chunk of rows; `AttentionStats` reduces them with `analysis.entropy_from_rows`,
`analysis.patterns_from_rows` and `analysis.mask_checks_from_rows`, so every statistic equals the
one `analysis` computes on the full map.
"""
from __future__ import annotations

import math
import threading
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from analysis import (
    DEFAULT_TOLERANCE,
    HeadPatterns,
    MaskCheck,
    attention_rollout,
    entropy_from_rows,
    mask_checks_from_rows,
    patterns_from_rows,
    row_statistics,
)

from ._recorder import Recorder
from ._types import Kind, Site

CHUNK_ELEMENTS = 1 << 23
"""Elements of one ``[batch, heads, chunk, k]`` block of attention computed at a time."""

CHECK_ROWS = 4
"""Query rows compared with the module's own eager function, once per module and capture."""

_PLAIN_KWARGS = frozenset({
    "scaling", "dropout", "position_bias", "sliding_window", "position_ids", "cache_position", "use_cache",
    "output_attentions", "encoder_hidden_states", "is_causal", "past_key_values", "past_key_value",
})
"""Keyword arguments the fast path understands (the mask carries causality and sliding windows);
any other non-None extra (soft-capping, sinks...) sends the module to its own eager function."""


_VERIFIED: weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple, bool]] = weakref.WeakKeyDictionary()
_VERIFIED_LOCK = threading.Lock()
"""module -> {(dtype, device type, extra kwargs, plain bias, class): fast path verified}, so the check
against the module's eager function runs once per module and setting, not once per capture."""


@dataclass
class AttentionStats:
    """Statistics of one attention module call (the statistics-only counterpart of `AttentionMap`).

    shape:     ``(batch, heads, q, k)`` of the attention these statistics summarise.
    rows:      per-row values ``[batch, heads, q]`` float32 CPU (see `hooks._stats`); "future",
               "padding", "delimiter" only when computed.
    head_mean: ``mean_h A`` ``[batch, q, k]`` on CPU in the capture's ``head_mean_dtype`` (None if off).
    key_mask / delimiter_mask: ``[batch, k]`` bool masks used at capture time (None if not given or
               if their length did not match this module's keys).
    window:    the "local" window; path: "chunked" (fast path, verified against eager), "eager" (the
               module's own eager function, chunked) or "weights" (nn.MultiheadAttention weights).
    """

    name: str
    layer: int
    stack: str | None
    kind: Kind
    shape: tuple[int, int, int, int]
    rows: dict[str, Tensor]
    head_mean: Tensor | None
    key_mask: Tensor | None
    delimiter_mask: Tensor | None
    window: int
    path: str
    step: int = 0

    @property
    def site(self) -> Site:
        return Site(self.name, self.layer, self.stack, self.kind)

    def __repr__(self) -> str:
        return (
            f"AttentionStats(name={self.name!r}, layer={self.layer}, kind={self.kind!r}, shape={self.shape}, "
            f"rows={sorted(self.rows)}, path={self.path!r}, step={self.step})"
        )

    # -- reductions: analysis' own *_from_rows functions, so results equal analysis on the full map

    def row_entropy(self, *, normalize: bool = False, causal: bool = False, query_mask: Tensor | None = None) -> Tensor:
        """``H_i = -sum_j a_ij ln a_ij`` -> ``[batch, heads, q]`` (NaN on invalid rows), as `analysis.row_entropy`."""
        return entropy_from_rows(self.rows["entropy"], k=self.shape[-1], normalize=normalize, causal=causal,
                                 key_mask=self.key_mask, query_mask=query_mask)

    def head_entropy(self, *, normalize: bool = False, causal: bool = False, query_mask: Tensor | None = None) -> Tensor:
        """Mean row entropy over valid rows -> ``[batch, heads]``, as `analysis.head_entropy`."""
        return self.row_entropy(normalize=normalize, causal=causal, query_mask=query_mask).nanmean(-1)

    def head_patterns(
        self,
        *,
        causal: bool = False,
        query_mask: Tensor | None = None,
        special_mask: Tensor | None = None,
        thresholds: dict[str, float] | None = None,
    ) -> HeadPatterns:
        """Pattern scores ``[batch, heads]`` and dominant labels, as `analysis.head_patterns` on the
        full map with this capture's ``key_mask``, ``delimiter_mask`` and ``window``."""
        return patterns_from_rows(self.rows, k=self.shape[-1], causal=causal, key_mask=self.key_mask,
                                  query_mask=query_mask, special_mask=special_mask, thresholds=thresholds)

    def mask_checks(
        self, *, causal: bool, query_mask: Tensor | None = None, tolerance: float = DEFAULT_TOLERANCE
    ) -> MaskCheck:
        """Largest mass on future / padding keys per head ``[batch, heads]``, as `analysis.mask_checks`."""
        if causal is True and "future" not in self.rows:
            raise ValueError(
                f"{self.name}: future-key mass was not computed (the module is not causal); "
                "capture with capture_attention(..., mode='stats', causal=True) to check it"
            )
        return mask_checks_from_rows(self.rows, k=self.shape[-1], causal=causal, key_mask=self.key_mask,
                                     query_mask=query_mask, tolerance=tolerance)


def stats_rollout(
    stats: Sequence[AttentionStats], *, residual: float = 0.5, discard_ratio: float = 0.0, start_layer: int = 0
) -> Tensor:
    """Attention rollout (Abnar & Zuidema 2020) from the head means of a statistics-only capture.

    ``stats``: one self-attention `AttentionStats` per layer, forward order (e.g. ``cap.stats`` of an
    encoder). Equals ``analysis.attention_rollout(full_maps, head_fusion="mean", ...)``:
    ``R = Ã_{L-1} ··· Ã_{start_layer}``, ``Ã_l = rownorm((1 - residual)·mean_h A_l + residual·I)``
    -> ``[batch, n, n]``.
    """
    if not stats:
        raise ValueError("no statistics given: capture with mode='stats' and pass cap.stats")
    missing = [s.name for s in stats if s.head_mean is None]
    if missing:
        raise ValueError(f"head means were not kept for {missing[:3]}; capture with head_mean_dtype set")
    layers = [s.head_mean[:, None] for s in stats]  # [batch, 1, n, n]: mean over one head = itself
    return attention_rollout(
        layers, residual=residual, discard_ratio=discard_ratio, start_layer=start_layer, key_mask=stats[0].key_mask
    )


# ---------------------------------------------------------------- the recorder


class _Reducer:
    """Reduces one call's attention, chunk by chunk, to per-row values ``[b, h, q]`` (CPU float32,
    via `analysis.row_statistics` on each chunk of rows) and the head mean ``[b, q, k]``."""

    def __init__(self, shape: tuple[int, int, int, int], *, window: int, causal: bool, key_mask: Tensor | None,
                 delimiter_mask: Tensor | None, head_mean_dtype: torch.dtype | None) -> None:
        b, h, q, k = shape
        self.shape, self.window = shape, window
        self.key_mask, self.delimiter_mask = key_mask, delimiter_mask
        self.names = ["first", "previous", "current", "local"] + ["future"] * causal
        self.names += [n for n, m in (("padding", key_mask), ("delimiter", delimiter_mask)) if m is not None]
        self.rows = {n: torch.empty(b, h, q) for n in ["entropy", *self.names]}  # [b, h, q] each
        self.head_mean = None if head_mean_dtype is None else torch.empty(b, q, k, dtype=head_mean_dtype)

    def add(self, start: int, w: Tensor, entropy: Tensor | None) -> None:
        """Rows ``start .. start + c`` of ``A``: ``w [b, h, c, k]`` float32; ``entropy [b, h, c]`` or None
        (then computed from ``w``)."""
        b, h, q, k = self.shape
        stop = start + w.shape[-2]
        names = self.names if entropy is not None else ["entropy", *self.names]
        values = row_statistics(w, stats=names, key_mask=self.key_mask, delimiter_mask=self.delimiter_mask,
                                window=self.window, diagonal=start + k - q)  # query i sits at key i + k - q
        if entropy is not None:
            values["entropy"] = entropy
        for name, v in values.items():
            self.rows[name][..., start:stop] = v  # [b, h, c], to CPU
        if self.head_mean is not None:
            dst = self.head_mean[:, start:stop]  # [b, c, k]
            weights = torch.full((b, 1, h), 1.0 / h, dtype=w.dtype, device=w.device)  # mean_h as one GEMV
            if dst.is_contiguous() and dst.dtype == w.dtype and w.device.type == "cpu":
                torch.bmm(weights, w.reshape(b, h, -1), out=dst.view(b, 1, -1))  # [b, 1, h] @ [b, h, c*k]
            else:
                dst.copy_(torch.bmm(weights, w.reshape(b, h, -1)).view(dst.shape))


def _rows(t: Tensor, start: int, stop: int) -> Tensor:
    """Query rows ``start..stop`` of a mask/bias ``[..., q, k]``; a broadcast row axis (size 1) as is."""
    return t if t.shape[-2] == 1 else t[..., start:stop, :]


class StatsRecorder(Recorder):
    """Recorder of `capture_attention(..., mode="stats")`: keeps `AttentionStats`, never full maps.

    key_mask [batch, k] (True = real token): first-token and padding statistics for modules whose
    key length is k; delimiter_mask [batch, k]: delimiter mass; window: local window (default 2,
    as analysis.head_patterns); causal: compute future-key mass (None = for modules that say
    they are causal); head_mean_dtype: storage of the per-layer head mean (None = do not keep).
    """

    def __init__(
        self,
        layers: Iterable[int] | None = None,
        *,
        key_mask: Tensor | None = None,
        delimiter_mask: Tensor | None = None,
        window: int = 2,
        causal: bool | None = None,
        head_mean_dtype: torch.dtype | None = torch.float32,
        chunk_elements: int = CHUNK_ELEMENTS,
    ) -> None:
        super().__init__(layers)
        if head_mean_dtype not in (None, torch.float32, torch.float16, torch.bfloat16, torch.float64):
            raise ValueError(f"head_mean_dtype must be None or a floating dtype, got {head_mean_dtype}")
        if not isinstance(window, int) or window < 0:
            raise ValueError(f"window must be a non-negative int, got {window!r}")
        if causal not in (None, True, False):
            raise TypeError(f"causal must be None, True or False, got {causal!r}")
        if not isinstance(chunk_elements, int) or chunk_elements < 1:
            raise ValueError(f"chunk_elements must be a positive int, got {chunk_elements!r}")
        self.key_mask = self._mask(key_mask, "key_mask")
        self.delimiter_mask = self._mask(delimiter_mask, "delimiter_mask")
        self.window = window
        self.causal = causal
        self.head_mean_dtype = head_mean_dtype
        self.chunk_elements = chunk_elements
        self.stats: list[AttentionStats] = []
        self._steps: dict[str, int] = defaultdict(int)
        self._scratch: Tensor | None = None  # see _workspace

    @staticmethod
    def _mask(m: Tensor | None, name: str) -> Tensor | None:
        if m is None:
            return None
        if not isinstance(m, Tensor) or m.ndim not in (1, 2) or m.is_floating_point() or m.is_complex():
            raise ValueError(f"{name} must be a bool (or 0/1 integer) tensor [batch, k] or [k], got "
                             f"{getattr(m, 'dtype', type(m).__name__)} {tuple(getattr(m, 'shape', ()))}")
        return (m != 0).reshape(-1, m.shape[-1]).cpu()  # [batch, k], True = real token

    def is_empty(self) -> bool:
        return not self.stats

    # -- the two entry points of the recorder interface

    def hf_attention(
        self,
        site: Site,
        module: torch.nn.Module,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        attention_mask: Tensor | None,
        eager: Callable[..., tuple[Tensor, Tensor]],
        **kwargs: Any,
    ) -> tuple[Tensor, None]:
        b, h, q, _ = query.shape
        k = key.shape[-2]
        mask = None if attention_mask is None else attention_mask[..., :k]  # [b|1, 1, q, k]
        bias = kwargs.get("position_bias")
        bias = bias if isinstance(bias, Tensor) else None
        scaling = kwargs.get("scaling")
        scaling = query.shape[-1] ** -0.5 if scaling is None else float(scaling)
        groups = h // key.shape[1]
        key_rep = key.repeat_interleave(groups, dim=1) if groups > 1 else key  # [b, h, k, d], as repeat_kv
        value_rep = value.repeat_interleave(groups, dim=1) if groups > 1 else value  # [b, h, k, dv]
        d, dv = key.shape[-1], value.shape[-1]
        fused = torch.cat([key_rep, value_rep], dim=-1) if query.dtype == torch.float32 else None  # [b, h, k, d+dv]
        k_t = (key_rep if fused is None else fused[..., :d]).reshape(b * h, k, d).transpose(1, 2)  # [b*h, d, k]
        binary = mask is None or bool(((mask == 0) | (mask <= torch.finfo(mask.dtype).min / 2)).all())

        def fast_chunk(s: int, e: int) -> tuple[Tensor, Tensor, Tensor | None]:
            """(out [b, c, h, dv], weights [b, h, c, k] float32, entropy [b, h, c] or None) for rows s..e.
            The weights live in the recorder's workspace: use them before the next chunk."""
            c = e - s
            qc = query[:, :, s:e]  # [b, h, c, d]
            z = self._workspace((b * h, c, k), query.dtype, query.device)
            torch.baddbmm(z, qc.reshape(b * h, c, d), k_t, beta=0.0, alpha=scaling, out=z)  # Q Kᵀ·scaling
            z = z.view(b, h, c, k)
            if bias is not None:
                z.add_(_rows(bias, s, e)[..., :k])
            if mask is not None:
                z.add_(_rows(mask, s, e))
            # ln sum_j e^z_ij = max_j z_ij - ln max_j a_ij (both maxima sit at the same j; max a >= 1/k)
            zmax = z.amax(dim=-1).float()  # [b, h, c]
            if z.dtype == torch.float32:
                w = torch.softmax(z, dim=-1, out=z)  # in place: [b, h, c, k]
            else:
                w = torch.softmax(z, dim=-1, dtype=torch.float32)
            lse = zmax - torch.log(w.amax(dim=-1))
            # out = A V (the eager output); with it, sum_j a_ij K_j for the entropy in the same matmul
            if fused is not None:
                akv = torch.matmul(w, fused)  # [b, h, c, d + dv]
                ak, out = akv[..., :d], akv[..., d:]
            else:
                out = torch.matmul(w.to(value.dtype), value_rep)  # eager casts A to the model dtype first
                ak = torch.matmul(w, key_rep.float())
            out = out.transpose(1, 2)  # [b, c, h, dv]
            if bias is None and binary:
                # H_i = lse_i - sum_j a_ij z_ij, sum_j a_ij z_ij = scaling·<q_i, sum_j a_ij K_j> (mask
                # entries are 0, or -inf-like where a_ij = 0)
                ent = lse - torch.linalg.vecdot(qc.float(), ak) * scaling
                if mask is not None:  # fully masked rows: the mask term is not 0 there
                    lost = lse <= torch.finfo(lse.dtype).min / 2
                    if bool(lost.any()):
                        ent = torch.where(lost, row_statistics(w, stats=["entropy"])["entropy"], ent)
            else:
                ent = None  # computed by analysis.row_statistics with the other rows
            return out, w, ent

        def eager_chunk(s: int, e: int, *, dropout: float | None = None) -> tuple[Tensor, Tensor, None]:
            """The module's own eager function on query rows s..e: (out [b, c, h, dv], weights, None)."""
            kw = {n: (_rows(v, s, e) if isinstance(v, Tensor) and v.ndim == 4 and v.shape[-2] == q else v)
                  for n, v in kwargs.items()}
            if dropout is not None:
                kw["dropout"] = dropout
            out, w = eager(module, query[:, :, s:e], key, value, None if mask is None else _rows(mask, s, e), **kw)
            return out, w.float(), None

        extras = tuple(sorted(n for n, v in kwargs.items() if v is not None))
        check = (query.dtype, query.device.type, extras, bias is None, type(module))
        with _VERIFIED_LOCK:
            fast = _VERIFIED.get(module, {}).get(check)
        if fast is None:  # first call of this module with these settings in this process
            plain = set(extras) <= _PLAIN_KWARGS and not hasattr(module, "sinks")
            fast = plain and self._verify(q, fast_chunk, eager_chunk)
            with _VERIFIED_LOCK:
                _VERIFIED.setdefault(module, {})[check] = fast
        if module.training and float(kwargs.get("dropout") or 0.0) > 0.0:
            fast = False  # dropout on A: only the module's own eager function reproduces it
        rows = max(1, min(q, self.chunk_elements // max(1, b * h * k)))
        red = self._start(site, module, (b, h, q, k))
        outs: list[Tensor] = []
        for s in range(0, q, rows):
            out, w, ent = (fast_chunk if fast else eager_chunk)(s, min(q, s + rows))
            outs.append(out.to(query.dtype))
            red.add(s, w, ent)
            del w
        self._finish(site, red, "chunked" if fast else "eager")
        if query.device.type != "cpu":
            self._scratch = None  # accelerator memory goes back between calls; CPU keeps the pages warm
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
        return out.contiguous(), None  # [b, q, h, dv]

    def record(self, site: Site, weights: Tensor) -> None:
        """Full weights ``[batch, heads, q, k]`` (nn.MultiheadAttention): reduced chunk by chunk."""
        b, h, q, k = weights.shape
        rows = max(1, min(q, self.chunk_elements // max(1, b * h * k)))
        red = self._start(site, None, (b, h, q, k))
        for s in range(0, q, rows):
            w = weights[:, :, s : s + rows].detach().float()  # [b, h, c, k]
            red.add(s, w, None)
        self._finish(site, red, "weights")

    # -- helpers

    def _workspace(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        """A contiguous scratch tensor of `shape` for the scores, reused across chunks and calls (no
        fresh pages to fault in per chunk); it holds at most one chunk."""
        n = math.prod(shape)
        buf = self._scratch
        if buf is None or buf.numel() < n or buf.dtype != dtype or buf.device != device:
            buf = self._scratch = torch.empty(max(n, min(self.chunk_elements, 1 << 30)), dtype=dtype, device=device)
        return buf[:n].view(shape)

    @staticmethod
    def _verify(q: int, fast_chunk, eager_chunk) -> bool:
        """Do the fast path's weights and output equal the module's own eager function on the last
        query rows (1e-5 in float32, 1e-2 in half precision)?"""
        s = max(0, q - CHECK_ROWS)
        try:
            out_f, w_f, _ = fast_chunk(s, q)
            out_e, w_e, _ = eager_chunk(s, q, dropout=0.0)
        except Exception:  # noqa: BLE001 - any failure of the fast path means: use the module's eager
            return False
        if w_e.shape != w_f.shape or out_e.shape != out_f.shape:
            return False
        tol = 1e-5 if out_e.dtype in (torch.float32, torch.float64) else 1e-2
        return bool(torch.allclose(w_f, w_e, atol=tol, rtol=0.0)
                    and torch.allclose(out_f.float(), out_e.float(), atol=tol, rtol=1e-4))

    def _start(self, site: Site, module: torch.nn.Module | None, shape: tuple[int, int, int, int]) -> _Reducer:
        b, h, q, k = shape
        causal = self.causal if self.causal is not None else bool(getattr(module, "is_causal", False))
        key_mask = self.key_mask if self.key_mask is not None and self.key_mask.shape[-1] == k else None
        delim = self.delimiter_mask if self.delimiter_mask is not None and self.delimiter_mask.shape[-1] == k else None
        for name, m in (("key_mask", key_mask), ("delimiter_mask", delim)):
            if m is not None and m.shape[0] not in (1, b):
                raise ValueError(f"{name} has batch {m.shape[0]} but {site.name} ran with batch {b}")
        return _Reducer(shape, window=self.window, causal=causal, key_mask=key_mask, delimiter_mask=delim,
                        head_mean_dtype=self.head_mean_dtype)

    def _finish(self, site: Site, red: _Reducer, path: str) -> None:
        step = self._steps[site.name]
        self._steps[site.name] += 1
        self.stats.append(
            AttentionStats(site.name, site.layer, site.stack, site.kind, red.shape, red.rows, red.head_mean,
                           red.key_mask, red.delimiter_mask, self.window, path, step)
        )
