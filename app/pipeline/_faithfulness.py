"""Gradients (gradient rollout, input x gradient) and the occlusion faithfulness check."""
from __future__ import annotations

from typing import Callable

import torch

import analysis
import hooks
from app.pipeline._common import PipelineError, Progress, _say
from app.pipeline._run import Run, _describe_prediction
from app.pipeline._section import Section


# --------------------------------------------------------------- gradients and faithfulness check


def _query_index(run: Run, sec: Section) -> int:
    """The position whose output is explained: the last token (causal) or CLS / first token."""
    if sec.causal:
        return len(sec.query_labels) - 1
    return sec.key_cls if sec.key_cls is not None else 0


def _score_fn_logits(run: Run, logits: torch.Tensor, target: int) -> torch.Tensor:
    """Target probability [m] from logits [m, C] (classifiers) or [m, seq, V] (next token)."""
    last = logits[:, -1] if logits.ndim == 3 else logits  # [m, C]
    return last.float().softmax(-1)[:, target]


def _target(run: Run) -> int | None:
    def compute():
        bundle = run._bundle
        with torch.no_grad(), hooks.capture_attention(bundle.model) as _:
            out = bundle.model(**run._model_inputs)
        logits = getattr(out, "logits", None)
        return None if logits is None or logits.ndim not in (2, 3) else _describe_prediction(bundle, logits)[1]
    return run._cached("target", compute)


def _need_target(run: Run) -> int:
    if run._bundle is None or "generation" in run._cache and run.input_kind == "image":
        raise PipelineError("Gradient rollout and the faithfulness check need a classifier or a causal LM; "
                            "for the captioner use the cross-attention and rollout views.")
    target = _target(run)
    if target is None:
        raise PipelineError(f"{run.model_id} has no prediction head (no logits): there is no target "
                            "to explain with gradients or occlusion.")
    return target


def gradients(run: Run) -> dict[str, torch.Tensor]:
    """One forward + backward with the graph kept (Chefer et al. 2021 needs dA):
    {"gradient_rollout": [q, k] of the main section, "input_x_gradient": [positions] or absent}.

    Gradients are taken with `torch.autograd.grad` w.r.t. the attention maps and the input
    embeddings / pixels only, so concurrent sessions never accumulate into shared parameters.
    """
    def compute():
        target = _need_target(run)
        bundle, sec = run._bundle, run.sections[0]
        model = bundle.model
        inputs = dict(run._model_inputs)
        leaf = None
        with torch.enable_grad():
            if "pixel_values" in inputs:
                leaf = inputs["pixel_values"].detach().clone().requires_grad_(True)  # [1, 3, H, W]
                inputs["pixel_values"] = leaf
            elif hasattr(model, "get_input_embeddings") and bundle.kind == "hf":
                ids = inputs.pop("input_ids")
                leaf = model.get_input_embeddings()(ids).detach().requires_grad_(True)  # [1, n, d]
                inputs["inputs_embeds"] = leaf
            with hooks.capture_attention(model, keep_graph=True) as cap:
                out = model(**inputs)
            score = _score_fn_logits(run, out.logits, target).sum()
            lives = {m.name: m.live for m in cap.maps if m.live is not None}
            attn = [lives[n] for n in sec.names]  # forward order, each [1, heads, q, k]
            wrt = attn + ([leaf] if leaf is not None else [])
            grads = torch.autograd.grad(score, wrt, allow_unused=True)
        attn_d = [a.detach()[:1].float() for a in attn]
        g_attn = [torch.zeros_like(a) if g is None else g.detach()[:1].float() for a, g in zip(attn_d, grads)]
        result = {"gradient_rollout": analysis.gradient_rollout(attn_d, g_attn)[0]}  # [q, k]
        g_leaf = grads[-1] if leaf is not None else None
        if g_leaf is not None:
            gx = (g_leaf * leaf).detach()[0]  # [n, d] or [3, H, W]
            if gx.ndim == 2:
                result["input_x_gradient"] = gx.sum(-1)  # [n]
            elif sec.key_grid is not None:
                gh, gw = sec.key_grid
                _, H, W = gx.shape
                per_patch = gx.sum(0).reshape(gh, H // gh, gw, W // gw).sum((1, 3)).flatten()  # [gh*gw]
                full = torch.zeros(len(sec.key_labels))
                full[len(sec.key_labels) - gh * gw:] = per_patch
                result["input_x_gradient"] = full
        return result
    return run._cached("gradients", compute)


def _occlusion_score_fn(run: Run, target: int) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """score_fn(keep [m, n] bool) -> target probability [m], and the removable mask [n].

    Text: occluded tokens are replaced by the tokenizer's mask / unk / pad token (positions kept).
    Images: occluded patches are set to 0 in the processed pixels (the dataset mean colour).
    """
    bundle, sec = run._bundle, run.sections[0]
    model, inputs = bundle.model, run._model_inputs
    n = len(sec.key_labels)
    removable = torch.from_numpy(~sec.key_special.copy())
    if "pixel_values" in inputs:
        pixels = inputs["pixel_values"]  # [1, 3, H, W]
        gh, gw = sec.key_grid
        _, _, H, W = pixels.shape
        first = n - gh * gw

        def score(keep: torch.Tensor) -> torch.Tensor:
            m = keep.shape[0]
            patch_keep = keep[:, first:].reshape(m, 1, gh, 1, gw, 1).float()  # [m, 1, gh, 1, gw, 1]
            px = pixels.reshape(1, 3, gh, H // gh, gw, W // gw) * patch_keep  # [m, 3, gh, ph, gw, pw]
            with torch.no_grad():
                return _score_fn_logits(run, model(pixel_values=px.reshape(m, 3, H, W)).logits, target)
        return score, removable
    tok = bundle.tokenizer
    repl = next((t for t in (getattr(tok, "mask_token_id", None), getattr(tok, "unk_token_id", None),
                             getattr(tok, "pad_token_id", None), getattr(tok, "eos_token_id", None))
                 if t is not None), 0)

    def score(keep: torch.Tensor) -> torch.Tensor:
        m = keep.shape[0]
        batch = {k: v.expand(m, -1) for k, v in inputs.items()}  # [m, n]
        batch["input_ids"] = torch.where(keep, batch["input_ids"], torch.full_like(batch["input_ids"], repl))
        with torch.no_grad():
            return _score_fn_logits(run, model(**batch).logits, target)
    return score, removable


def faithfulness(run: Run, *, progress: Progress = None):
    """Occlusion vs attention (last layer head mean, rollout, gradient rollout, input×gradient)
    for the model's own prediction -> `analysis.FaithfulnessReport` (cached on the run)."""
    def compute():
        target = _need_target(run)
        sec = run.sections[0]
        if sec.kind != "self":
            raise PipelineError("The faithfulness check needs self-attention maps.")
        if len(sec.key_labels) < 2:  # occlusion needs something to remove and something to keep
            raise PipelineError("The faithfulness check needs an input of at least two positions.")
        q = _query_index(run, sec)
        last = sec.weights[-1].mean(0)[q]  # [k]
        importances = {"rollout": sec.rollout()[q], "last-layer attention": last}
        grads = gradients(run)
        importances["gradient rollout"] = grads["gradient_rollout"][q]
        score_fn, removable = _occlusion_score_fn(run, target)
        done = lambda i, total: _say(progress, i / max(total, 1), f"occlusion: {i}/{total} evaluations")  # noqa: E731
        return analysis.faithfulness_check(
            n_positions=len(sec.key_labels), score_fn=score_fn, attention_importance=importances,
            gradient_importance=grads.get("input_x_gradient"), removable=removable,
            batch_size=32, progress=done, primary="rollout")
    return run._cached("faithfulness", compute)
