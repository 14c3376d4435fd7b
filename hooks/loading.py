"""Load a model with its tokenizer / image processor into one `ModelBundle` shared by app and CLI.

Order: a built-in demo name (`hooks.registry.resolve`), else a local folder, else a Hugging Face
id (local cache first, then the Hub). Safetensors only unless `allow_pickle=True`; no remote code
unless `trust_remote_code=True`. Every refusal is a `LoadError` (a ValueError) with what to do.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

Modality = Literal["text", "image", "image-to-text", "image-text"]

_AUTO_BY_SUFFIX = (  # architecture-name suffix -> Auto class name
    ("ForCausalLM", "AutoModelForCausalLM"),
    ("LMHeadModel", "AutoModelForCausalLM"),
    ("ForConditionalGeneration", "AutoModelForSeq2SeqLM"),
    ("ForSequenceClassification", "AutoModelForSequenceClassification"),
    ("ForTokenClassification", "AutoModelForTokenClassification"),
    ("ForMaskedLM", "AutoModelForMaskedLM"),
    ("ForImageClassification", "AutoModelForImageClassification"),
)


class LoadError(ValueError):
    """A model could not (or must not) be loaded; the message says why and what to do."""


@dataclass
class ModelBundle:
    """A loaded model and everything needed to feed it and label its attention axes.

    kind: "hf" (transformers model) or "torch" (a built-in nn.Module demo).
    modality: "text" | "image" | "image-to-text" (vision encoder + text decoder) |
              "image-text" (dual encoders such as CLIP: text and vision towers).
    attn_implementation: the implementation the model was loaded with (captures switch it
              temporarily and restore it), None for plain torch models.
    """

    model: nn.Module
    model_id: str
    tokenizer: Any = None
    image_processor: Any = None
    revision: str | None = None
    modality: Modality = "text"
    is_causal: bool = False
    is_encoder_decoder: bool = False
    attn_implementation: str | None = None
    kind: Literal["hf", "torch"] = "hf"
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> Any:
        return getattr(self.model, "config", None)


def load_model(
    name_or_path: str | os.PathLike,
    *,
    trust_remote_code: bool = False,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    revision: str | None = None,
    allow_pickle: bool = False,
    local_files_only: bool | None = None,
    device_map: str | dict[str, Any] | None = None,
) -> ModelBundle:
    """Load a built-in demo, a local folder or a Hugging Face id as a `ModelBundle` (model in eval mode).

    local_files_only: None = try the local cache first, then the Hub; True = never touch the network.
    allow_pickle: accept `.bin` (pickle) weights, loaded with torch.load(weights_only=True).
    device: a torch device, or "auto" = the GPU when one is available, else the CPU.
    device_map: Hugging Face models too large for one device, e.g. "auto" (spread over GPUs and CPU;
    needs accelerate: pip install 'attnscope[large]'); with dtype="bfloat16"/"float16" to halve memory.
    """
    name = str(name_or_path).strip()
    if not name:
        raise LoadError("no model given: pass a built-in demo name, a Hugging Face id or a local folder")
    dtype = _dtype(dtype)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device_map is not None:
        if device is not None:
            raise LoadError("pass either device or device_map, not both (device_map places the model itself)")
        import importlib.util

        if importlib.util.find_spec("accelerate") is None:
            raise LoadError(f"device_map={device_map!r} needs the accelerate package: pip install 'attnscope[large]'")
    builtin = _resolve_builtin(name)
    if builtin is not None:
        bundle = _load_builtin(name, builtin, device=device, dtype=dtype)
    else:
        path = Path(name).expanduser()
        if path.is_dir():
            _check_folder(path, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
            bundle = _load_hf(str(path), trust_remote_code=trust_remote_code, dtype=dtype, revision=revision,
                              allow_pickle=allow_pickle, local_files_only=True, device_map=device_map)
        elif path.exists() or _looks_like_path(name):
            raise LoadError(f"{name!r} is not a model folder (no such directory). Give a folder that holds "
                            "config.json and model.safetensors, a built-in demo name, or a Hugging Face id.")
        else:
            bundle = _load_hub(name, trust_remote_code=trust_remote_code, dtype=dtype, revision=revision,
                               allow_pickle=allow_pickle, local_files_only=local_files_only, device_map=device_map)
    if device is not None:
        try:
            bundle.model.to(device)
        except (RuntimeError, AssertionError, ValueError, TypeError) as exc:
            raise LoadError(f"cannot move the model to device {device!r}: {str(exc).splitlines()[0]}") from None
    bundle.model.eval()
    return bundle


def _dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """None, a floating torch.dtype, or its name ("float16", "bfloat16", "float32")."""
    if dtype is None or isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return dtype
    value = getattr(torch, dtype, None) if isinstance(dtype, str) else None
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise LoadError(f"dtype must be a floating torch dtype such as torch.float16 or 'bfloat16', got {dtype!r}")
    return value


# ---------------------------------------------------------------- built-in demos


def _resolve_builtin(name: str):
    from . import registry

    resolve = getattr(registry, "resolve", None)
    return resolve(name) if callable(resolve) else None


def _load_builtin(name: str, builtin: Any, *, device, dtype) -> ModelBundle:
    """A `hooks.registry.BuiltinModel`: kind "torch" via its own load() -> (model, tokenizer);
    kind "hf" from its folder through the Hugging Face path (safetensors, no remote code)."""
    folder = Path(getattr(builtin, "folder", None) or getattr(builtin, "path"))
    if not (folder / "model.safetensors").is_file():
        raise LoadError(f"built-in model {name!r} has no weights in {folder}; rebuild it with "
                        f"`python -m demos.build {getattr(builtin, 'name', name)}`")
    if getattr(builtin, "kind", "hf") == "torch":
        loaded = builtin.load()
        model, tokenizer = loaded if isinstance(loaded, tuple) else (loaded, None)
        if dtype is not None:
            model.to(dtype)
        return ModelBundle(model=model.eval(), model_id=getattr(builtin, "name", name), tokenizer=tokenizer,
                           modality=getattr(builtin, "modality", "text"), kind="torch")
    bundle = _load_hf(str(folder), trust_remote_code=False, dtype=dtype, revision=None, allow_pickle=False,
                      local_files_only=True)
    bundle.model_id = getattr(builtin, "name", name)
    return bundle


# ---------------------------------------------------------------- Hugging Face


def _looks_like_path(name: str) -> bool:
    """Hub ids are "name" or "org/name"; anything else is meant as a path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _check_folder(path: Path, *, allow_pickle: bool, trust_remote_code: bool) -> None:
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise LoadError(f"{path} has no config.json: not a saved Hugging Face model (save it with save_pretrained).")
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LoadError(f"{cfg_file} is not valid JSON: {exc}") from None
    if "auto_map" in cfg and not trust_remote_code:
        raise LoadError(_remote_code_message(str(path)))
    safetensors = list(path.glob("*.safetensors")) or list(path.glob("*.safetensors.index.json"))
    pickles = list(path.glob("*.bin")) + list(path.glob("*.pt")) + list(path.glob("*.pth"))
    if not safetensors and pickles and not allow_pickle:
        raise LoadError(
            f"{path} has only pickle weights ({', '.join(p.name for p in pickles[:3])}). Pickle files can run code "
            "when loaded, so attnscope refuses them by default. Convert them to safetensors, or pass "
            "allow_pickle=True (they are then loaded with torch.load(weights_only=True))."
        )
    if not safetensors and not pickles:
        raise LoadError(f"{path} has no weights (model.safetensors): save the model with save_pretrained.")


def _remote_code_message(where: str) -> str:
    return (
        f"{where} needs custom Python code from the model repository (trust_remote_code). Running it means "
        "executing someone else's code on this machine with your permissions; attnscope does not do that "
        "by default. Only if you trust the source, load it with trust_remote_code=True."
    )


def _load_hub(name: str, *, local_files_only: bool | None, **kw) -> ModelBundle:
    """Hub ids: the local cache first; the Hub only when it resolves (offline: no minute of retries)."""
    if local_files_only is None:
        try:
            return _load_hf(name, local_files_only=True, **kw)
        except LoadError as exc:
            if not getattr(exc, "not_found", False):
                raise
        host = _hub_host()
        if not _resolves(host):
            raise LoadError(f"{name!r} is not in the local Hugging Face cache and {host} cannot be reached "
                            "(offline?). Download it on a connected machine or give a local folder.")
        return _load_hf(name, local_files_only=False, **kw)
    return _load_hf(name, local_files_only=local_files_only, **kw)


def _hub_host() -> str:
    from urllib.parse import urlparse

    from huggingface_hub import constants

    return urlparse(constants.ENDPOINT).hostname or "huggingface.co"


def _resolves(host: str, timeout: float = 3.0) -> bool:
    """Whether DNS resolves `host` within `timeout` seconds (getaddrinfo has no timeout: run it aside)."""
    import socket
    import threading

    ok: list[bool] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, 443)
            ok.append(True)
        except OSError:
            ok.append(False)

    worker = threading.Thread(target=lookup, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(ok and ok[0])


def _load_hf(source: str, *, trust_remote_code: bool, dtype, revision, allow_pickle: bool,
             local_files_only: bool, device_map=None) -> ModelBundle:
    import transformers
    from transformers import AutoConfig

    common = dict(revision=revision, trust_remote_code=trust_remote_code, local_files_only=local_files_only)
    try:
        config = AutoConfig.from_pretrained(source, **common)
    except (OSError, ValueError, KeyError) as exc:
        text = str(exc)
        if "trust_remote_code" in text:
            raise LoadError(_remote_code_message(source)) from None
        err = LoadError(
            f"could not find a model {source!r}"
            + (" in the local cache (offline)" if local_files_only else " locally or on the Hugging Face Hub")
            + f": {text.splitlines()[0] if text else type(exc).__name__}"
        )
        err.not_found = True  # type: ignore[attr-defined]
        raise err from None
    model_cls = _model_class(config, transformers)
    kwargs: dict[str, Any] = dict(common, use_safetensors=None if allow_pickle else True)
    if dtype is not None:
        kwargs["dtype"] = dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        model = model_cls.from_pretrained(source, **kwargs)
    except pickle.UnpicklingError:  # torch.load(weights_only=True) met a non-tensor object
        raise LoadError(
            f"{source!r}: its pickle weights hold objects other than tensors, which torch.load(weights_only=True) "
            "refuses (such a file can run code when unpickled). Use safetensors weights from a source you trust."
        ) from None
    except (OSError, ValueError, EnvironmentError) as exc:
        text = str(exc)
        if "safetensors" in text.lower() and not allow_pickle:
            raise LoadError(
                f"{source!r} has no safetensors weights. Pickle (.bin) weights can run code when loaded; pass "
                "allow_pickle=True to load them with torch.load(weights_only=True)."
            ) from None
        raise LoadError(f"could not load the weights of {source!r}: {text.splitlines()[0] if text else exc!r}") from None
    tokenizer = _optional(lambda: transformers.AutoTokenizer.from_pretrained(source, **common))
    processor = _optional(lambda: transformers.AutoImageProcessor.from_pretrained(source, **common))
    return _bundle_from(model.eval(), source, tokenizer, processor, revision)


def _model_class(config: Any, transformers: Any) -> Any:
    """The Auto class for the config's architecture (VisionEncoderDecoder, suffix table, else AutoModel)."""
    if getattr(config, "model_type", None) == "vision-encoder-decoder":
        return transformers.VisionEncoderDecoderModel
    for arch in getattr(config, "architectures", None) or []:
        for suffix, auto in _AUTO_BY_SUFFIX:
            if arch.endswith(suffix):
                return getattr(transformers, auto)
    return transformers.AutoModel


def _optional(fn):
    """Tokenizer / image processor are optional: a folder without one gives None (quietly)."""
    log = logging.getLogger("transformers")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return fn()
    except Exception:  # noqa: BLE001 - any failure here just means "this model has none"
        return None
    finally:
        log.setLevel(level)


def _bundle_from(model: nn.Module, model_id: str, tokenizer, processor, revision) -> ModelBundle:
    config = model.config
    enc_dec = bool(getattr(config, "is_encoder_decoder", False))
    main = getattr(model, "main_input_name", "input_ids")
    if hasattr(model, "text_model") and hasattr(model, "vision_model"):
        modality: Modality = "image-text"
    elif main == "pixel_values":
        modality = "image-to-text" if enc_dec else "image"
    else:
        modality = "text"
    causal_attention = any(getattr(m, "is_causal", False) is True for m in model.modules())
    can_generate = bool(getattr(model, "can_generate", lambda: False)())
    return ModelBundle(
        model=model,
        model_id=model_id,
        tokenizer=tokenizer,
        image_processor=processor if modality != "text" else None,
        revision=revision,
        modality=modality,
        is_causal=not enc_dec and (can_generate or causal_attention) and modality == "text",
        is_encoder_decoder=enc_dec,
        attn_implementation=getattr(config, "_attn_implementation", None),
        kind="hf",
    )
