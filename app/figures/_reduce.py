"""Reductions that keep long-input figures light: head fusion, block pooling, windows, top-k."""
from __future__ import annotations

import math
import warnings
from typing import Literal

import numpy as np

Fusion = Literal["mean", "max"]
Pool = Literal["mean", "max"]


def as_float_array(x, *, name: str, ndim: tuple[int, ...]) -> np.ndarray:
    """`x` as a float32 numpy array with one of the allowed ranks; a clear ValueError otherwise.

    Accepts numpy arrays, nested lists and CPU tensors (anything with `.detach()` is converted
    through `.float().cpu().numpy()`, without importing torch here).
    """
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {type(x).__name__}: {exc}") from None
    if arr.ndim not in ndim:
        want = " or ".join(f"{d}-D" for d in ndim)
        raise ValueError(f"{name} must be {want}, got shape {tuple(arr.shape)}")
    return arr


def fuse_heads(attn: np.ndarray, *, head: int | None, fusion: Fusion) -> tuple[np.ndarray, str]:
    """[heads, q, k] -> [q, k]: one head if `head` is given, else mean or max over heads.

    Returns the matrix and a short description ("head 3", "mean of 12 heads").
    """
    if attn.ndim == 2:
        return attn, "" if head is None else f"head {head}"
    n_heads = attn.shape[0]
    if head is not None:
        if not 0 <= head < n_heads:
            raise ValueError(f"head {head} out of range: this layer has {n_heads} heads (0..{n_heads - 1})")
        return attn[head], f"head {head}"
    if fusion == "mean":
        return attn.mean(axis=0), f"mean of {n_heads} heads"
    if fusion == "max":
        return attn.max(axis=0), f"max of {n_heads} heads"
    raise ValueError(f"fusion must be 'mean' or 'max', got {fusion!r}")


def block_pool(values: np.ndarray, block_rows: int, block_cols: int, pool: Pool) -> np.ndarray:
    """[R, C] -> [ceil(R/br), ceil(C/bc)] by block mean or max; ragged edge blocks use their cells only."""
    rows, cols = values.shape
    out_r, out_c = math.ceil(rows / block_rows), math.ceil(cols / block_cols)
    padded = np.full((out_r * block_rows, out_c * block_cols), np.nan, dtype=np.float32)
    padded[:rows, :cols] = values
    blocks = padded.reshape(out_r, block_rows, out_c, block_cols)  # [R', br, C', bc]
    if pool not in ("mean", "max"):
        raise ValueError(f"pool must be 'mean' or 'max', got {pool!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks stay NaN
        reduce = np.nanmean if pool == "mean" else np.nanmax
        return reduce(blocks, axis=(1, 3)).astype(np.float32)


def block_labels(labels: tuple[str, ...], index: np.ndarray, block: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Labels for pooled blocks: "12–19 the…" (positions, then the block's first token)."""
    out, starts = [], []
    for b in range(0, len(labels), block):
        first, last = int(index[b]), int(index[min(b + block, len(labels)) - 1])
        out.append(f"{first}–{last} {labels[b]}…" if last != first else f"{first} {labels[b]}")
        starts.append(first)
    return tuple(out), np.asarray(starts, dtype=np.int64)


def topk_rows(values: np.ndarray, k: int) -> np.ndarray:
    """Keep the k largest entries of each row, NaN elsewhere: [R, C] -> [R, C]."""
    if k <= 0:
        raise ValueError(f"top-k needs k >= 1, got {k}")
    if k >= values.shape[1]:
        return values
    keep = np.argpartition(-np.nan_to_num(values, nan=-np.inf), k - 1, axis=1)[:, :k]  # [R, k]
    out = np.full_like(values, np.nan)
    np.put_along_axis(out, keep, np.take_along_axis(values, keep, axis=1), axis=1)
    return out


def bilinear_resize(heat: np.ndarray, height: int, width: int) -> np.ndarray:
    """[h, w] -> [height, width] by bilinear interpolation with half-pixel centres (align_corners=False)."""
    h, w = heat.shape
    ys = np.clip((np.arange(height) + 0.5) * h / height - 0.5, 0, h - 1)
    xs = np.clip((np.arange(width) + 0.5) * w / width - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = heat[y0][:, x0] * (1 - wx) + heat[y0][:, x1] * wx  # [height, width]
    bottom = heat[y1][:, x0] * (1 - wx) + heat[y1][:, x1] * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)
