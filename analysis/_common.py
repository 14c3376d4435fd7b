"""Shared input checks and mask helpers for the analysis package (private).

Mask convention used by every public function that takes masks (all keyword-only):

- ``causal: bool`` -- query row ``i`` may attend to keys ``j <= i + (k - q)`` (the last query is
  aligned with the last key, so a generation step with ``q = 1`` sees every key).
- ``key_mask``: bool ``[batch, k]`` (or ``[k]``), True = real token, False = padding key.
- ``query_mask``: bool ``[batch, q]`` (or ``[q]``), True = real query row. Defaults to ``key_mask``
  when ``q == k`` (self-attention), otherwise to "all rows real".

A row is *valid* when its query is real and it has at least one valid key; statistics averaged
"over query rows" average over valid rows only.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

Layers = Sequence[Tensor] | Tensor
"""Per-layer attention: a sequence of ``[batch, heads, q, k]`` (forward order) or ``[L, batch, heads, q, k]``."""

CHUNK_ELEMENTS = 1 << 23
"""Elements per chunk of the chunked reductions (32 MB of float32). Measured on 2 shared cores:
smaller chunks stay in cache (best single-threaded), larger ones need fewer thread barriers (best
with 2 threads on a busy machine); 2^23 is within ~15 % of the best of both."""


def as_float(t: object, name: str, *, min_ndim: int = 0) -> Tensor:
    """Return ``t`` detached as float32 (no copy when it already is); clear errors otherwise."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must be a real-valued tensor, got dtype {t.dtype}")
    if t.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape {tuple(t.shape)}")
    return t.detach().to(torch.float32)


def check_attention(t: object, name: str = "weights") -> Tensor:
    """Validate an attention tensor ``[..., heads, q, k]`` and return it as float32 (detached)."""
    w = as_float(t, name, min_ndim=3)
    if w.shape[-1] == 0 or w.shape[-2] == 0:
        raise ValueError(f"{name} has an empty query or key axis: shape {tuple(w.shape)}")
    return w


def layer_list(layers: Layers, name: str = "layers", *, square: bool = False) -> list[Tensor]:
    """Turn a sequence of ``[batch, heads, q, k]`` tensors (or a stacked ``[L, batch, heads, q, k]``
    tensor) into a list of float32 ``[batch, heads, q, k]`` tensors, checking they agree in shape."""
    if isinstance(layers, Tensor):
        if layers.ndim != 5:
            raise ValueError(
                f"{name} as one tensor must be [layers, batch, heads, q, k], got shape {tuple(layers.shape)}"
            )
        items: Sequence[object] = list(layers.unbind(0))
    elif isinstance(layers, Sequence) and not isinstance(layers, (str, bytes)):
        items = layers
    else:
        raise TypeError(f"{name} must be a sequence of [batch, heads, q, k] tensors, got {type(layers).__name__}")
    if len(items) == 0:
        raise ValueError(f"{name} is empty: no attention layers were given")
    out = []
    for i, t in enumerate(items):
        w = as_float(t, f"{name}[{i}]")
        if w.ndim != 4:
            raise ValueError(f"{name}[{i}] must be [batch, heads, q, k], got shape {tuple(w.shape)}")
        if out and w.shape != out[0].shape:
            raise ValueError(
                f"{name}[{i}] has shape {tuple(w.shape)} but {name}[0] has {tuple(out[0].shape)}"
            )
        if square and w.shape[-1] != w.shape[-2]:
            raise ValueError(f"{name}[{i}] must be self-attention (q == k), got shape {tuple(w.shape)}")
        out.append(w)
    return out


def as_bool_mask(m: object, name: str, length: int, axis: str) -> Tensor:
    """Validate a ``[batch, length]`` or ``[length]`` mask (bool or 0/1 ints) and return it as bool."""
    if not isinstance(m, Tensor):
        raise TypeError(f"{name} must be a bool torch.Tensor [batch, {axis}], got {type(m).__name__}")
    if m.ndim not in (1, 2):
        raise ValueError(f"{name} must be [batch, {axis}] or [{axis}], got shape {tuple(m.shape)}")
    if m.shape[-1] != length:
        raise ValueError(f"{name} has {m.shape[-1]} positions but the attention has {axis} = {length}")
    if m.dtype != torch.bool:
        if m.is_floating_point() or m.is_complex():
            raise TypeError(f"{name} must be bool or integer 0/1 (True = real token), got {m.dtype}")
        m = m != 0
    return m.detach()


@dataclass(frozen=True)
class Masks:
    """Validity masks broadcastable against attention ``[..., heads, q, k]``.

    keys: bool ``[..., 1, q, k]`` (None = every key valid); n_keys: float ``[..., 1, q]`` number of
    valid keys per row; rows: bool ``[..., 1, q]`` valid rows (None = every row valid).
    """

    keys: Tensor | None
    n_keys: Tensor
    rows: Tensor | None


def build_masks(
    q: int,
    k: int,
    *,
    causal: bool = False,
    key_mask: Tensor | None = None,
    query_mask: Tensor | None = None,
    device: torch.device | str = "cpu",
) -> Masks:
    """Build :class:`Masks` from the package's mask convention (see module docstring)."""
    keys: Tensor | None = None
    if causal:
        # key j allowed for query i iff j <= i + (k - q)
        keys = torch.ones(q, k, dtype=torch.bool, device=device).tril(k - q)  # [q, k]
    if key_mask is not None:
        km = as_bool_mask(key_mask, "key_mask", k, "k").to(device)[..., None, None, :]  # [*B, 1, 1, k]
        keys = km if keys is None else keys & km  # [*B, 1, q, k]
    if query_mask is None and key_mask is not None and q == k:
        query_mask = key_mask
    rows: Tensor | None = None
    if keys is None:
        n_keys = torch.full((1, q), float(k), device=device)  # [1, q]
    else:
        if keys.ndim == 2:
            keys = keys[None]  # [1, q, k]
        n_keys = keys.sum(-1, dtype=torch.float32)  # [..., 1, q]
        rows = n_keys >= 1
    if query_mask is not None:
        qm = as_bool_mask(query_mask, "query_mask", q, "q").to(device)[..., None, :]  # [*B, 1, q]
        rows = qm if rows is None else rows & qm
    return Masks(keys=keys, n_keys=n_keys, rows=rows)


def check_broadcast(shape: tuple[int, ...], masks: Masks, name: str = "weights") -> None:
    """Raise a clear error when the masks' batch dimensions do not fit attention of ``shape``
    ``(..., heads, q, k)``."""
    shape = tuple(shape)
    shapes = []
    if masks.keys is not None:
        shapes.append((tuple(masks.keys.shape), shape))
    if masks.rows is not None:
        shapes.append((tuple(masks.rows.shape), shape[:-1]))
    for mask_shape, target in shapes:
        try:
            ok = torch.broadcast_shapes(target, mask_shape) == target
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(
                f"the masks (shape {mask_shape}) do not fit {name} of shape {shape}: "
                "key_mask must be [batch, k] and query_mask [batch, q] for weights [..., batch, heads, q, k]"
            )


def row_mean(x: Tensor, rows: Tensor | None) -> Tensor:
    """Mean of ``x [..., q]`` over valid rows (``rows`` bool broadcastable to ``x``); NaN if none."""
    if rows is None:
        return x.mean(-1)
    r = rows.to(x.dtype).expand_as(x)
    return (x * r).sum(-1) / r.sum(-1)


def chunked_row_reduce(
    w: Tensor, fn, *, per_matrix: Tensor | None = None, rest_dims: int = 1
) -> tuple[Tensor, ...]:
    """One chunked pass over ``w [..., q, k]`` computing one or more per-row results ``[..., q]``.

    ``fn(block [n, q, k], scratch [n, q, k], extra [n, ...] | None) -> tuple of [n, q]`` runs on
    chunks of the flattened leading dims (``n`` matrices at a time, about :data:`CHUNK_ELEMENTS`
    floats, so every statistic of a chunk is computed while it is in cache). ``scratch`` is one
    reused float32 buffer ``fn`` may overwrite (never ``block``: it is the caller's memory);
    ``per_matrix`` (optional; its last ``rest_dims`` dims are ``rest``) is broadcast to
    ``[..., *rest]`` and handed over sliced as ``extra [n, *rest]``.
    """
    q, k = w.shape[-2:]
    lead = w.shape[:-2]
    flat = w.reshape(-1, q, k)  # [N, q, k]
    n = flat.shape[0]
    extra = None
    if per_matrix is not None:
        rest = per_matrix.shape[per_matrix.ndim - rest_dims :]
        extra = per_matrix.expand(*lead, *rest).reshape(n, *rest)  # [N, ...]
    step = max(1, CHUNK_ELEMENTS // max(1, q * k))
    scratch = torch.empty(min(step, n), q, k, dtype=torch.float32, device=w.device)
    outs: list[Tensor] = []
    for s in range(0, n, step):
        block = flat[s : s + step]
        res = fn(block, scratch[: block.shape[0]], None if extra is None else extra[s : s + step])
        if not outs:
            outs = [torch.empty(n, q, dtype=torch.float32, device=w.device) for _ in res]  # [N, q] each
        for o, r in zip(outs, res):
            o[s : s + step] = r
    return tuple(o.reshape(*lead, q) for o in outs)
