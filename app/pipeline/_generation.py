"""Greedy generation with stitched KV-cache attention (causal LMs and the captioner)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

import hooks
from app import inputs as safe_inputs
from app.pipeline._common import PipelineError, Progress, _say
from app.pipeline._run import Run, _display_image, _labels, _mask_leaks, _nonfinite, _sections
from app.pipeline._section import Section


# ------------------------------------------------------------------------------------- generation


@dataclass
class GenerationResult:
    """Greedy generation captured through the KV cache and stitched (`Capture.stitched`).

    tokens: labels of the whole sequence (prompt / start token + generated); the stitched maps
    cover the first T = len(tokens) - 1 positions (the last token is never fed back).
    Generated token s (0-based) is tokens[prompt_len + s]; it was predicted by query row
    prompt_len + s - 1, whose attention `step_row(s)` returns.
    """

    text: str
    tokens: tuple[str, ...]
    prompt_len: int
    sections: list[Section]

    @property
    def n_generated(self) -> int:
        return len(self.tokens) - self.prompt_len

    def step_row(self, step: int) -> int:
        if not 0 <= step < self.n_generated:
            raise PipelineError(f"step {step} is out of range: {self.n_generated} tokens were generated")
        return self.prompt_len + step - 1


def _generate(bundle, inputs: dict, max_new_tokens: int, progress: Progress):
    model = bundle.model
    cfg = getattr(model, "generation_config", None)
    extra = {}
    if cfg is not None and getattr(cfg, "pad_token_id", None) is None:
        eos = getattr(cfg, "eos_token_id", None)
        extra["pad_token_id"] = eos[0] if isinstance(eos, list) else eos
    _say(progress, 0.4, f"generating up to {max_new_tokens} tokens")
    with torch.no_grad(), hooks.capture_attention(model) as cap:
        seq = model.generate(**inputs, max_new_tokens=int(max_new_tokens), do_sample=False,
                             num_beams=1, **extra)
    return seq[0].tolist(), cap


def generate_input(bundle, run: Run, *, max_new_tokens: int = 10, progress: Progress = None) -> GenerationResult:
    """Generate after a text run's input (causal LMs) and stitch every step's attention."""
    if run.input_kind != "text" or not getattr(bundle, "is_causal", False):
        raise PipelineError("Generation is for causal language models (and the captioner, which "
                            "generates its caption when the image is captured).")
    if not 1 <= int(max_new_tokens) <= 256:
        raise PipelineError("Generate between 1 and 256 tokens.")
    inputs = {k: v for k, v in run._model_inputs.items() if k in ("input_ids", "attention_mask")}
    prompt_len = inputs["input_ids"].shape[1]
    limit = safe_inputs.max_positions_of(getattr(bundle.model, "config", None), bundle.tokenizer)
    if limit is not None and prompt_len + max_new_tokens > limit:
        raise PipelineError(f"The input has {prompt_len} tokens; generating {max_new_tokens} more would pass "
                            f"the model's maximum of {limit} positions.")
    seq, cap = _generate(bundle, inputs, max_new_tokens, progress)
    stitched = cap.stitched()
    total = stitched[0].weights.shape[-1]  # T = len(seq) - 1
    lab, sp, _, _ = _labels(bundle, ids=seq)
    key = (lab[:total], sp[:total], lab[:total], sp[:total])
    sections = _sections(stitched, {(None, "self"): key, ("decoder", "self"): key},
                         causal_stacks={None, "decoder"}, grid_of={})
    text = bundle.tokenizer.decode(seq[prompt_len:], skip_special_tokens=True)
    _say(progress, 1.0, "generated")
    return GenerationResult(text=text, tokens=lab, prompt_len=prompt_len, sections=sections)


def _caption(bundle, pil, sha, notes, pixels, name, progress, max_new_tokens) -> Run:
    """Captioning models: generate the caption, then sections encoder self / decoder self / cross."""
    seq, cap = _generate(bundle, {"pixel_values": pixels}, max_new_tokens, progress)
    stitched = cap.stitched()
    dec_self = next(m for m in stitched if m.stack == "decoder" and m.kind == "self")
    enc = next(m for m in stitched if m.stack == "encoder")
    total, n_enc = dec_self.weights.shape[-1], enc.weights.shape[-1]
    img_lab, img_sp, grid, cls = _labels(bundle, n=n_enc, stack="encoder")
    tok_lab, tok_sp, _, _ = _labels(bundle, ids=seq, stack="decoder")
    t_lab, t_sp = tok_lab[:total], tok_sp[:total]
    labels = {("encoder", "self"): (img_lab, img_sp, img_lab, img_sp),
              ("decoder", "self"): (t_lab, t_sp, t_lab, t_sp),
              ("decoder", "cross"): (t_lab, t_sp, img_lab, img_sp)}
    sections = _sections(stitched, labels, causal_stacks={"decoder"},
                         grid_of={("encoder", "self"): (grid, cls), ("decoder", "cross"): (grid, cls)})
    caption = bundle.tokenizer.decode(seq, skip_special_tokens=True).strip()
    run = Run(name=name, model_id=str(bundle.model_id), input_kind="image", text=None,
              image=_display_image(pil), input_sha256=sha or safe_inputs.sha256_hex(pil.tobytes()),
              sections=sections, prediction=f"caption: {caption!r}", n_positions=n_enc, _bundle=bundle,
              _model_inputs={"pixel_values": pixels}, warnings=notes)
    # the decoder sections above are the stitched generation; keep it for the Generation view
    run._cache["generation"] = GenerationResult(text=caption, tokens=tok_lab, prompt_len=1,
                                                sections=[s for s in sections if s.stack == "decoder"])
    run.warnings += _nonfinite(stitched, bundle.model)
    run.warnings += _mask_leaks(run)
    _say(progress, 1.0, "captured")
    return run
