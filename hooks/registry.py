"""Built-in demo models and sample inputs: names -> folders under sample_inputs/, shared by app and CLI.

Light on purpose (no torch/transformers import): `hooks.load_model(name)` calls `resolve(name)` first;
any name that is not built in is a Hugging Face id or a local path.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

__all__ = [
    "BuiltinModel", "Sample", "BUILTIN_MODELS", "DEFAULT_MODEL", "MODELS_DIR", "SAMPLES_DIR",
    "resolve", "samples", "get_sample",
]

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "sample_inputs"
MODELS_DIR = SAMPLES_DIR / "models"
Modality = Literal["text", "image", "image-to-text"]


@dataclass(frozen=True)
class BuiltinModel:
    """A demo model shipped in the repo. kind "hf": a Hugging Face folder (config.json, model.safetensors,
    tokenizer / image-processor files) for the shared loader; kind "torch": use `load()`."""

    name: str
    title: str
    description: str
    folder: Path
    modality: Modality
    kind: Literal["hf", "torch"]
    default_sample: str  # a Sample.id

    @property
    def available(self) -> bool:
        """Whether the weights are on disk (they are committed; False only in a broken checkout)."""
        return (self.folder / "model.safetensors").is_file()

    def metrics(self) -> dict:
        """The measured metrics.json beside the weights ({} when absent)."""
        path = self.folder / "metrics.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def load(self):
        """(model in eval mode, tokenizer) for kind "torch". Every demo, Hugging Face or not, also loads
        through the shared loader: `hooks.load_model(name)` -> ModelBundle."""
        if self.kind != "torch":
            raise ValueError(f"{self.name} is a Hugging Face folder: load it with hooks.load_model({self.name!r})")
        if not self.available:
            raise FileNotFoundError(f"built-in model {self.name!r} has no weights in {self.folder}; "
                                    f"rebuild them with `bash scripts/train_demos.sh {self.name}`")
        from hooks.demo_models import load_negation_classifier

        return load_negation_classifier(self.folder)


def _m(name: str, title: str, description: str, modality: Modality, kind: str, default_sample: str) -> BuiltinModel:
    return BuiltinModel(name, title, description, MODELS_DIR / name, modality, kind, default_sample)  # type: ignore[arg-type]


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    m.name: m
    for m in (
        _m("recall-lm", "Recall LM (GPT-2, 2 layers)",
           "Causal LM on facts like 'ann red kite . bob blue cup . what does ann have ? ann red kite'. "
           "Ground truth: each answer word copies a known word of the fact, so an induction / retrieval head "
           "should point at it, helped by a previous-token head.",
           "text", "hf", "recall-facts"),
        _m("shapes-vit", "Shapes ViT (64x64, patch 8)",
           "ViT classifying the one shape (circle, square, triangle, cross, diamond) in a cluttered image. "
           "Ground truth: the shape's pixel mask.",
           "image", "hf", "shapes-vit-1"),
        _m("shapes-captioner", "Shapes captioner (ViT + GPT-2 decoder)",
           "Writes captions like 'red circle left of blue square'. Ground truth: each object's mask, "
           "so cross-attention of a colour or shape word should land on its object.",
           "image-to-text", "hf", "shapes-captioner-1"),
        _m("negation-classifier", "Negation classifier (nn.TransformerEncoder)",
           "Sentiment with negation ('the soup was not good' -> negative), built from PyTorch's own "
           "nn.TransformerEncoder: shows the nn.MultiheadAttention capture path.",
           "text", "torch", "negation-1"),
    )
}
DEFAULT_MODEL = "recall-lm"


def resolve(name: str) -> BuiltinModel | None:
    """The built-in model called `name` (case-insensitive, surrounding spaces ignored), else None."""
    return BUILTIN_MODELS.get(name.strip().lower()) if isinstance(name, str) else None


@dataclass(frozen=True)
class Sample:
    """A sample input listed in sample_inputs/manifest.json. `models`: the built-in models it suits
    (empty: any model of its modality); `mask`: ground-truth mask PNG for images, else None."""

    id: str
    title: str
    description: str
    file: Path
    modality: Literal["text", "image"]
    models: tuple[str, ...]
    mask: Path | None = None

    def read_text(self) -> str:
        return self.file.read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _manifest() -> tuple[Sample, ...]:
    path = SAMPLES_DIR / "manifest.json"
    if not path.is_file():
        return ()
    out = []
    for s in json.loads(path.read_text(encoding="utf-8"))["samples"]:
        out.append(Sample(s["id"], s["title"], s["description"], SAMPLES_DIR / s["file"], s["modality"],
                          tuple(s.get("models", ())), SAMPLES_DIR / s["mask"] if s.get("mask") else None))
    return tuple(out)


def samples(model: str | None = None) -> list[Sample]:
    """Samples from the manifest; with `model`, those listed for that built-in model first, then the
    general samples of the model's modality (image-to-text models take images)."""
    all_samples = list(_manifest())
    if model is None:
        return all_samples
    builtin = resolve(model)
    if builtin is None:
        return all_samples
    modality = "text" if builtin.modality == "text" else "image"
    own = [s for s in all_samples if builtin.name in s.models]
    general = [s for s in all_samples if not s.models and s.modality == modality]
    return own + general


def get_sample(sample_id: str) -> Sample:
    """The sample with this id; KeyError naming the known ids otherwise."""
    for s in _manifest():
        if s.id == sample_id:
            return s
    raise KeyError(f"no sample {sample_id!r}; known: {', '.join(s.id for s in _manifest())}")
