"""Stitch the per-step maps of a KV-cached generate() into one matrix per attention module."""
from __future__ import annotations

import torch

from ._types import AttentionMap, CaptureError


def stitch(maps: list[AttentionMap]) -> list[AttentionMap]:
    """One map per module (first-appearance order), rows from all its calls.

    Self-attention: a call with q queries over k cached keys fills rows [k-q, k) and columns [0, k)
    of a [batch, heads, T, T] matrix, T = the largest k; so row t is position t's attention over
    positions <= t (zeros above the diagonal). This covers a prefill + one row per cached step, and
    also full recomputation (use_cache=False: the last call fills every row).
    Cross-attention: rows are appended per call ([batch, heads, T_dec, T_enc]); a call with more
    queries than rows so far (prefill / full recompute) replaces rows [0, q).
    generate(max_new_tokens=n) feeds the model prompt + n - 1 positions (the last new token is never
    fed back), so T = len(final sequence) - 1.
    Assumes one generate() (or forward) per capture, greedy or sampling with num_beams=1: beam search
    reorders the cache between steps, which the maps do not reveal (a changing batch size is refused).
    """
    groups: dict[str, list[AttentionMap]] = {}
    for m in maps:
        groups.setdefault(m.name, []).append(m)
    out: list[AttentionMap] = []
    for name, ms in groups.items():
        first = ms[0]
        batch, heads = first.weights.shape[:2]
        if any(m.weights.shape[:2] != (batch, heads) for m in ms):
            raise CaptureError(
                f"{name}: batch/heads changed between calls {[tuple(m.weights.shape[:2]) for m in ms]}; "
                "stitched() supports one generate() with a fixed batch (greedy or sampling, num_beams=1)."
            )
        if first.kind == "self":
            total = max(m.weights.shape[-1] for m in ms)
            full = torch.zeros(batch, heads, total, total, dtype=first.weights.dtype)  # [batch, heads, T, T]
            filled = torch.zeros(total, dtype=torch.bool)
            for m in ms:
                q, k = m.weights.shape[-2:]
                if q > k:
                    raise CaptureError(f"{name}: a self-attention call has more queries ({q}) than keys ({k})")
                full[:, :, k - q : k, :k] = m.weights
                filled[k - q : k] = True
            if not bool(filled.all()):
                missing = (~filled).nonzero().flatten().tolist()[:8]
                raise CaptureError(f"{name}: rows {missing} were never computed; cannot stitch these calls")
        else:
            n_keys = first.weights.shape[-1]
            if any(m.weights.shape[-1] != n_keys for m in ms):
                raise CaptureError(f"{name}: the encoder length changed between calls; cannot stitch")
            rows: list[torch.Tensor] = []
            for m in ms:
                q = m.weights.shape[-2]
                if q > len(rows):
                    rows = list(m.weights.unbind(dim=-2))  # q x [batch, heads, k]
                else:
                    rows.extend(m.weights.unbind(dim=-2))
            full = torch.stack(rows, dim=-2)  # [batch, heads, T_dec, T_enc]
        out.append(AttentionMap(first.name, first.layer, first.stack, first.kind, full, None, 0))
    return out
