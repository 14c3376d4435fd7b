"""`Run` (one captured input) and the helpers that build its sections, labels and warnings."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

import hooks
from app import inputs as safe_inputs
from app.pipeline._common import PipelineError
from app.pipeline._section import Section


# ------------------------------------------------------------------------------------------- runs


@dataclass
class Run:
    """One input captured on one model: the sections on show plus what the warnings panel needs.

    image: [H, W, 3] uint8 picture the overlays are drawn on (image models), else None.
    prediction: one line, e.g. "class: circle (p = 0.97)" or "next token: ' kite' (p = 0.91)".
    warnings: input notes, truncation, non-finite values, mask leaks (shown beside the figures).
    """

    name: str
    model_id: str
    input_kind: str
    text: str | None
    image: np.ndarray | None
    input_sha256: str
    sections: list[Section]
    prediction: str = ""
    warnings: list[str] = field(default_factory=list)
    truncation: str | None = None
    n_positions: int = 0
    _bundle: Any = field(default=None, repr=False)
    _model_inputs: dict = field(default_factory=dict, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def section(self, stack: str | None = "_first", kind: str | None = None) -> Section:
        """The section for (stack, kind); with no arguments the main one (first captured)."""
        if stack == "_first":
            return self.sections[0]
        for sec in self.sections:
            if sec.stack == stack and (kind is None or sec.kind == kind):
                return sec
        raise PipelineError(f"no {stack or ''} {kind or ''} attention was captured for this input")

    def _cached(self, key: str, fn: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._cache:
                self._cache[key] = fn()
            return self._cache[key]


def input_kind(bundle) -> str:
    """"text" for text models, "image" for image and image-to-text (captioning) models."""
    return "text" if str(getattr(bundle, "modality", "text")) == "text" else "image"


def _labels(bundle, *, ids: Sequence[int] | None = None, n: int | None = None, stack: str | None = None):
    """`hooks.position_labels` -> (texts [n], special bool [n], patch grid (rows, cols) or None,
    index of the CLS position or None)."""
    labels = hooks.position_labels(bundle, ids, n_positions=n, stack=stack)
    texts = tuple(lab.text for lab in labels)
    special = np.array([lab.is_special for lab in labels], bool)
    patches = [lab for lab in labels if lab.kind == "patch"]
    grid = (max(p.row for p in patches) + 1, max(p.col for p in patches) + 1) if patches else None
    cls = next((lab.index for lab in labels if lab.kind == "cls"), None)
    return texts, special, grid, cls


def _sections(maps, labels: dict, *, causal_stacks: set, grid_of: dict) -> list[Section]:
    """Group AttentionMaps by (stack, kind) into Sections (batch item 0, first call per module).

    labels[(stack, kind)] = (query_labels, query_special, key_labels, key_special).
    """
    groups: dict[tuple, dict[str, Any]] = {}
    for m in maps:
        key = (m.stack, m.kind)
        g = groups.setdefault(key, {})
        if m.name not in g:  # first call of each module (generation steps are stitched elsewhere)
            g[m.name] = m
    out = []
    order = {("encoder", "self"): 0, (None, "self"): 0, ("vision", "self"): 1, ("text", "self"): 2,
             ("decoder", "self"): 3, ("decoder", "cross"): 4}
    for key in sorted(groups, key=lambda k: order.get(k, 9)):
        ms = sorted(groups[key].values(), key=lambda m: m.layer)
        q_lab, q_sp, k_lab, k_sp = labels[key]
        weights = [m.weights[0].float() for m in ms]  # each [heads, q, k]
        q, k = weights[0].shape[-2:]
        if (len(q_lab), len(k_lab)) != (q, k):
            raise PipelineError(f"internal: {len(q_lab)}x{len(k_lab)} labels for {q}x{k} maps in {key}")
        grid = grid_of.get(key)
        out.append(Section(
            stack=key[0], kind=key[1], layers=[m.layer for m in ms], names=[m.name for m in ms],
            weights=weights, query_labels=q_lab, key_labels=k_lab, query_special=q_sp,
            key_special=k_sp, causal=key[0] in causal_stacks and key[1] == "self",
            key_grid=grid[0] if grid else None, key_cls=grid[1] if grid else None))
    return out


def _describe_prediction(bundle, logits: torch.Tensor) -> tuple[str, int | None]:
    """One line for the model's output and the index of the predicted class / token."""
    cfg = getattr(bundle.model, "config", None)
    if logits.ndim == 2:  # [batch, classes]
        probs = logits[0].float().softmax(-1)
        c = int(probs.argmax())
        names = getattr(cfg, "id2label", None) or getattr(bundle, "labels", None) or {}
        label = names.get(c, names.get(str(c), f"class {c}")) if isinstance(names, dict) else (
            names[c] if c < len(names) else f"class {c}")
        return f"class: {label} (p = {probs[c]:.2f})", c
    if logits.ndim == 3:  # [batch, seq, vocab]: next token after the last position
        probs = logits[0, -1].float().softmax(-1)
        t = int(probs.argmax())
        tok = bundle.tokenizer.decode([t]) if getattr(bundle, "tokenizer", None) else str(t)
        return f"next token: {tok!r} (p = {probs[t]:.2f})", t
    return "", None


def _display_image(img) -> np.ndarray:
    """PIL image -> [H, W, 3] uint8, longest side at most 512 px (overlays stay light)."""
    from PIL import Image

    im = img.convert("RGB")
    if max(im.size) > 512:
        scale = 512 / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def _nonfinite(run_maps, model) -> list[str]:
    notes = safe_inputs.nonfinite_warnings({m.name: m.weights for m in run_maps}, what="attention")
    if notes:
        notes += safe_inputs.nonfinite_warnings(dict(model.named_parameters()), what="weights")[:3]
    return notes


def _mask_leaks(run: Run) -> list[str]:
    """`analysis.mask_checks` message for every causal section that leaks onto future keys."""
    return [f"{sec.title}: {sec.mask_check().message}" for sec in run.sections
            if sec.causal and not sec.mask_check().ok]
