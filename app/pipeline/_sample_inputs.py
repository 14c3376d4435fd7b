"""Built-in demo models and the shipped sample inputs."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from hooks import registry
from app import inputs as safe_inputs


# ------------------------------------------------------------------------ built-ins and samples


@dataclass(frozen=True)
class Sample:
    """A shipped sample input: `text` for text samples, `image` (`app.inputs.DecodedImage`) and an
    optional ground-truth `mask` [H, W] bool for image samples."""

    id: str
    title: str
    description: str = ""
    text: str | None = None
    image: Any = None
    mask: np.ndarray | None = None


def builtin_models() -> dict[str, str]:
    """Built-in demo names -> one-line titles (from `hooks.registry`)."""
    return {name: m.title for name, m in registry.BUILTIN_MODELS.items()}


def default_model() -> str:
    """The model the app opens with: the registry's DEFAULT_MODEL."""
    return registry.DEFAULT_MODEL


@functools.lru_cache(maxsize=16)
def _samples(model: str, modality: str) -> tuple[Sample, ...]:
    """The registry's samples of one modality (the model's own first), decoded once through
    `app.inputs`; image samples carry their ground-truth mask [H, W] bool when there is one."""
    from PIL import Image

    out = []
    for s in registry.samples(model):
        if s.modality != modality or not s.file.is_file():
            continue
        if modality == "text":
            out.append(Sample(s.id, s.title, s.description,
                              text=safe_inputs.decode_text(s.file.read_bytes(), filename=s.file.name).text))
            continue
        mask = None
        if s.mask:
            with Image.open(s.mask) as m:
                mask = np.asarray(m.convert("L")) > 127  # [H, W] bool
        out.append(Sample(s.id, s.title, s.description, mask=mask,
                          image=safe_inputs.decode_image(s.file.read_bytes(), filename=s.file.name)))
    return tuple(out)


def text_samples(model: str) -> list[Sample]:
    """Sample texts for `model`: a built-in's own samples first, then the general ones (any other
    model gets every text sample)."""
    return list(_samples(model, "text"))


def image_samples(model: str) -> list[Sample]:
    """Sample images (with ground-truth masks) for `model`, ordered like `text_samples`."""
    return list(_samples(model, "image"))
