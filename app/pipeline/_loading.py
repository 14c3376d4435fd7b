"""Loading a model (`load_bundle`) and what the model panel shows (`model_info`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

import hooks
from app import inputs as safe_inputs
from app.pipeline._common import PipelineError, Progress, _say


# --------------------------------------------------------------------------------------- loading


def load_bundle(name_or_path: str, *, trust_remote_code: bool = False, progress: Progress = None):
    """Load a built-in demo, Hugging Face id or local folder through `hooks.load_model`.

    Loader errors (missing folder, pickle-only weights, remote code without opt-in, no network)
    become `PipelineError` with the loader's message.
    """
    name = (name_or_path or "").strip()
    if not name:
        raise PipelineError("Give a model: a built-in name, a Hugging Face id or a local folder.")
    _say(progress, 0.05, f"loading {name} ...")
    try:
        bundle = hooks.load_model(name, trust_remote_code=trust_remote_code)
    except (ValueError, OSError, ImportError, KeyError, RuntimeError) as exc:
        raise PipelineError(f"Could not load {name!r}: {exc}") from None
    _say(progress, 1.0, f"loaded {name}")
    return bundle


@dataclass(frozen=True)
class ModelInfo:
    """What the model panel shows."""

    model_id: str
    class_name: str
    modality: str
    layers: int
    heads: int
    attn_implementation: str
    parameters: int
    device: str
    dtype: str
    revision: str | None = None
    max_positions: int | None = None

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("model", self.model_id), ("class", self.class_name), ("modality", self.modality),
            ("layers", str(self.layers)), ("heads", str(self.heads)),
            ("attention implementation", self.attn_implementation),
            ("parameters", f"{self.parameters:,}"), ("device", self.device), ("dtype", self.dtype),
            ("revision", self.revision or "-"),
            ("max positions", str(self.max_positions) if self.max_positions else "no fixed limit"),
        ]


def _configs(model) -> list[Any]:
    cfg = getattr(model, "config", None)
    out = [cfg] if cfg is not None else []
    for sub in ("text_config", "vision_config", "encoder", "decoder"):
        c = getattr(cfg, sub, None)
        if c is not None and hasattr(c, "to_dict"):
            out.append(c)
    return out


def _first_attr(objs: Sequence[Any], names: Sequence[str]) -> int | None:
    for obj in objs:
        for name in names:
            value = getattr(obj, name, None)
            if isinstance(value, int) and value > 0:
                return value
    return None


def model_info(bundle) -> ModelInfo:
    """Class, layers, heads, attention implementation, parameters, device of a loaded bundle."""
    model = bundle.model
    cfgs = _configs(model)
    sub = cfgs[1:] or cfgs  # composite models: count the towers' layers
    layers = sum(_first_attr([c], ("num_hidden_layers", "n_layer", "num_layers")) or 0 for c in sub)
    if not layers:
        layers = len([m for m in model.modules() if isinstance(m, torch.nn.MultiheadAttention)])
    heads = _first_attr(sub, ("num_attention_heads", "n_head", "num_heads"))
    if heads is None:
        mha = [m for m in model.modules() if isinstance(m, torch.nn.MultiheadAttention)]
        heads = mha[0].num_heads if mha else 0
    loaded = getattr(bundle, "attn_implementation", None) or getattr(
        getattr(model, "config", None), "_attn_implementation", None)
    # What the model runs with, and how the weights shown were obtained (a capture switches sdpa & co.).
    impl = (f"{loaded} (weights captured by the model's own eager attention code)" if loaded
            else "torch nn.MultiheadAttention (per-head weights forced on during capture)")
    params = list(model.parameters())
    return ModelInfo(
        model_id=str(getattr(bundle, "model_id", type(model).__name__)),
        class_name=type(model).__name__,
        modality=str(getattr(bundle, "modality", "text")),
        layers=int(layers),
        heads=int(heads),
        attn_implementation=str(impl),
        parameters=int(sum(p.numel() for p in params)),
        device=str(params[0].device) if params else "cpu",
        dtype=str(params[0].dtype).replace("torch.", "") if params else "-",
        revision=getattr(bundle, "revision", None),
        max_positions=safe_inputs.max_positions_of(getattr(model, "config", None),
                                                   getattr(bundle, "tokenizer", None)),
    )
