"""Axis labels: one `PositionLabel` per query/key position (tokens, image CLS and patches).

Every view labels its axes with `position_labels`, so labels agree across the app and exports.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

LabelKind = Literal["token", "cls", "patch", "extra"]


@dataclass(frozen=True)
class PositionLabel:
    """index: position in the sequence; text: what to print on the axis; is_special: [CLS]/[SEP]/pad/
    image CLS and other non-content positions; kind: "token" | "cls" | "patch" | "extra" (e.g. DeiT's
    distillation token or registers); row/col: patch grid position (image patches only)."""

    index: int
    text: str
    is_special: bool
    kind: LabelKind
    row: int | None = None
    col: int | None = None


def position_labels(
    source: Any,
    input_ids: torch.Tensor | Sequence[int] | None = None,
    *,
    n_positions: int | None = None,
    stack: str | None = None,
    batch_index: int = 0,
    grid: tuple[int, int] | None = None,
) -> list[PositionLabel]:
    """Labels for the positions of one sequence.

    source: a `ModelBundle`, a tokenizer, or None. For text, give `input_ids` ([seq] or [batch, seq],
    row `batch_index` is used). For images (bundle modality "image", or the "encoder"/"vision" stack of
    an "image-to-text"/"image-text" bundle) give `n_positions` (the map's key length); the patch grid
    comes from the model config (image_size // patch_size) unless `grid` = (rows, cols) is given
    (images run at another size), and leading extra positions (CLS, ...) are labelled before the patches.
    """
    if _is_image_stack(source, stack):
        if n_positions is None:
            raise ValueError("image positions need n_positions (the number of keys of the attention map)")
        return image_labels(n_positions, grid=grid or _grid_of(source.model.config))
    if input_ids is None:
        raise ValueError("text positions need input_ids")
    ids = torch.as_tensor(input_ids)
    if ids.dim() == 2:
        ids = ids[batch_index]
    ids_list = [int(i) for i in ids.tolist()]
    tok = getattr(source, "tokenizer", source)
    if tok is None or not hasattr(tok, "convert_ids_to_tokens"):
        return [PositionLabel(i, str(t), False, "token") for i, t in enumerate(ids_list)]
    special = set(getattr(tok, "all_special_ids", []) or [])
    tokens = tok.convert_ids_to_tokens(ids_list)
    labels = []
    for i, (tid, piece) in enumerate(zip(ids_list, tokens)):
        text = piece if tid in special else _readable(tok, piece)
        labels.append(PositionLabel(i, text, tid in special, "token"))
    return labels


def image_labels(n_positions: int, *, grid: tuple[int, int]) -> list[PositionLabel]:
    """CLS / extra tokens first, then "patch r,c" row-major over `grid` = (rows, cols).

    n = rows*cols: no CLS (e.g. Swin-like pooling models); n = rows*cols + 1: CLS at 0;
    more: CLS then "extra i" tokens (distillation token, registers).
    """
    rows, cols = grid
    n_extra = n_positions - rows * cols
    if n_extra < 0:
        raise ValueError(f"{n_positions} positions is fewer than the {rows}x{cols} patch grid")
    labels = []
    for i in range(n_extra):
        labels.append(PositionLabel(i, "CLS", True, "cls") if i == 0 else PositionLabel(i, f"extra {i}", True, "extra"))
    for p in range(rows * cols):
        r, c = divmod(p, cols)
        labels.append(PositionLabel(n_extra + p, f"patch {r},{c}", False, "patch", r, c))
    return labels


_VISIBLE = str.maketrans({" ": "␣", "\n": "↵", "\t": "⇥"})


def _readable(tok: Any, piece: str) -> str:
    """Token text as a person reads it (byte-level BPE 'Ġcat' -> ' cat'); a whitespace-only token is
    drawn visibly ('Ġ' -> '␣', newline -> '↵'); the raw piece if the tokenizer cannot convert it."""
    try:
        text = tok.convert_tokens_to_string([piece])
    except Exception:  # noqa: BLE001 - some slow tokenizers cannot convert single pieces
        return piece
    if not text:
        return piece
    return text if text.strip() else text.translate(_VISIBLE)


def _is_image_stack(source: Any, stack: str | None) -> bool:
    modality = getattr(source, "modality", None)
    if modality == "image":
        return True
    if modality == "image-to-text":
        return stack == "encoder"
    if modality == "image-text":
        return stack == "vision"
    return False


def _grid_of(config: Any) -> tuple[int, int]:
    vision = getattr(config, "vision_config", None) or getattr(config, "encoder", None) or config
    size, patch = getattr(vision, "image_size", None), getattr(vision, "patch_size", None)
    if size is None or patch is None:
        raise ValueError(f"{type(config).__name__} has no image_size/patch_size to derive the patch grid from")
    size = (size, size) if isinstance(size, int) else tuple(size)
    patch = (patch, patch) if isinstance(patch, int) else tuple(patch)
    return size[0] // patch[0], size[1] // patch[1]
