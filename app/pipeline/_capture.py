"""`capture_input`: one input through the model under `hooks.capture_attention` -> `Run`."""
from __future__ import annotations

from typing import Any

import torch

import hooks
from app import inputs as safe_inputs
from app.pipeline._common import PipelineError, Progress, _say
from app.pipeline._generation import _caption
from app.pipeline._run import (Run, _describe_prediction, _display_image, _labels, _mask_leaks, _nonfinite,
                               _sections)


# ---------------------------------------------------------------------------------------- capture


def _check(bundle, given: str) -> None:
    try:
        safe_inputs.check_modality(str(getattr(bundle, "modality", "text")), given)
    except safe_inputs.InputError as exc:
        raise PipelineError(str(exc)) from None


def _encode_text(bundle, text: str) -> tuple[dict, list[int], Any]:
    """Tokenise (truncating to the model's limit) -> (model inputs, token ids, TruncationInfo|None)."""
    tok = getattr(bundle, "tokenizer", None)
    if tok is None:
        raise PipelineError(f"{getattr(bundle, 'model_id', 'this model')} has no tokenizer: it cannot read text.")
    fast = bool(getattr(tok, "is_fast", False))
    enc = tok(text, return_tensors="pt", return_offsets_mapping=fast)
    offsets = enc.pop("offset_mapping", None)
    ids = enc["input_ids"]  # [1, n]
    if ids.shape[1] == 0:
        raise PipelineError("The text gives no tokens for this model's tokenizer.")
    limit = safe_inputs.max_positions_of(getattr(bundle.model, "config", None), tok)
    trunc = safe_inputs.truncate_tokens(ids.shape[1], limit,
                                        offsets=offsets[0].tolist() if offsets is not None else None)
    keep = ("input_ids", "attention_mask", "token_type_ids")
    inputs = {k: v[:, : (limit if trunc else None)] for k, v in enc.items() if k in keep}
    return inputs, inputs["input_ids"][0].tolist(), trunc


def _pixels(bundle, image) -> torch.Tensor:
    proc = getattr(bundle, "image_processor", None)
    if proc is None:
        raise PipelineError(f"{getattr(bundle, 'model_id', 'this model')} has no image processor: it cannot read images.")
    return proc(images=image.convert("RGB"), return_tensors="pt")["pixel_values"]  # [1, 3, H, W]


def _pil(image):
    """DecodedImage | PIL image -> (PIL RGB image, sha256 or None, decode notes)."""
    if hasattr(image, "image") and hasattr(image, "sha256"):
        return image.image, image.sha256, list(getattr(image, "warnings", ()))
    return image, None, []


def capture_input(bundle, *, text: str | None = None, image=None, name: str = "input",
                  progress: Progress = None, max_new_tokens: int = 20) -> Run:
    """Run one input through the model under `hooks.capture_attention` -> `Run`.

    text models: one forward pass over the (truncated) tokens; image models: one forward pass over
    the processed pixels; image-to-text (captioning) models: greedy `generate()` of at most
    `max_new_tokens`, with the KV-cache steps stitched into full maps (encoder self, decoder self
    [T, T], cross [T, patches]). `image` is an `app.inputs.DecodedImage` or a PIL image.
    """
    if (text is None) == (image is None):
        raise PipelineError("Give exactly one input: a text or an image.")
    _check(bundle, "text" if text is not None else "image")
    model = bundle.model
    _say(progress, 0.1, "preparing input")
    if text is not None:
        text = safe_inputs.decode_text(text).text
        inputs, ids, trunc = _encode_text(bundle, text)
        _say(progress, 0.3, f"capturing attention over {len(ids)} tokens")
        with torch.no_grad(), hooks.capture_attention(model) as cap:
            out = model(**inputs)
        lab, sp, _, _ = _labels(bundle, ids=ids)
        labels = {key: (lab, sp, lab, sp) for key in ((None, "self"), ("encoder", "self"), ("text", "self"))}
        causal = {None} if getattr(bundle, "is_causal", False) else set()
        sections = _sections(cap.maps, labels, causal_stacks=causal, grid_of={})
        prediction, _ = _describe_prediction(bundle, out.logits) if hasattr(out, "logits") else ("", None)
        run = Run(name=name, model_id=str(bundle.model_id), input_kind="text", text=text, image=None,
                  input_sha256=safe_inputs.sha256_hex(text.encode("utf-8")), sections=sections,
                  prediction=prediction, truncation=trunc.message if trunc else None, n_positions=len(ids),
                  _bundle=bundle, _model_inputs=inputs)
        run.warnings += [trunc.message] if trunc else []
    else:
        pil, sha, notes = _pil(image)
        pixels = _pixels(bundle, pil)
        if getattr(bundle, "modality", "") == "image-to-text":
            return _caption(bundle, pil, sha, notes, pixels, name, progress, max_new_tokens)
        _say(progress, 0.3, "capturing attention over the image patches")
        with torch.no_grad(), hooks.capture_attention(model) as cap:
            out = model(pixel_values=pixels)
        n = cap.maps[0].weights.shape[-1]
        lab, sp, grid, cls = _labels(bundle, n=n)
        labels = {(None, "self"): (lab, sp, lab, sp), ("vision", "self"): (lab, sp, lab, sp)}
        sections = _sections(cap.maps, labels, causal_stacks=set(),
                             grid_of={(None, "self"): (grid, cls), ("vision", "self"): (grid, cls)})
        prediction, _ = _describe_prediction(bundle, out.logits) if hasattr(out, "logits") else ("", None)
        run = Run(name=name, model_id=str(bundle.model_id), input_kind="image", text=None,
                  image=_display_image(pil), input_sha256=sha or safe_inputs.sha256_hex(pil.tobytes()),
                  sections=sections, prediction=prediction, n_positions=n, _bundle=bundle,
                  _model_inputs={"pixel_values": pixels}, warnings=notes)
    run.warnings += _nonfinite(cap.maps, model)
    run.warnings += _mask_leaks(run)
    _say(progress, 1.0, "captured")
    return run
