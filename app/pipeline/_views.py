"""Prepared figure data (`app.figures`) for every view of the dashboard and the CLI."""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import torch

import analysis
from app import figures
from app.pipeline._common import Fusion, PipelineError
from app.pipeline._faithfulness import gradients
from app.pipeline._generation import GenerationResult
from app.pipeline._run import Run
from app.pipeline._section import Section


# ------------------------------------------------------------------------------- prepared figures


def matrix_view(sec: Section, *, layer: int, head: int | None = None, fusion: Fusion = "mean",
                hide_special: bool = False, scale: str = "linear",
                window: tuple[int, int] | None = None, topk: int | None = None):
    """View 1: one layer's [q, k] attention (one head or fused) -> `figures.MatrixData`."""
    w = sec.layer_weights(layer)  # [heads, q, k]
    if head is not None and not 0 <= head < sec.n_heads:
        raise PipelineError(f"head {head} is out of range: this layer has {sec.n_heads} heads")
    square = sec.kind == "self"
    desc = f"head {head}" if head is not None else f"{fusion} of {sec.n_heads} heads"
    return figures.prepare_matrix(
        w, sec.key_labels, query_tokens=None if square else sec.query_labels,
        layer=sec.layers[layer], head=head, fusion=fusion,
        hide=sec.key_special if hide_special else None,
        hide_queries=None if square or not hide_special else sec.query_special,
        window=window, topk=topk, scale=scale,
        title=f"{sec.title.capitalize()}, layer {sec.layers[layer]}, {desc}")


# --------------------------------------------------------------------- more prepared figure data


def model_view(sec: Section, *, hide_special: bool = False, scale: str = "linear"):
    """View 2: every layer x head of the section as one grid -> `figures.GridData`."""
    square = sec.kind == "self"
    return figures.prepare_model_view(
        sec.weights, sec.key_labels, query_tokens=None if square else sec.query_labels,
        layers=sec.layers, hide=sec.key_special if hide_special else None,
        hide_queries=None if square or not hide_special else sec.query_special, scale=scale,
        title=f"Model view: {sec.title}, every layer and head")


def token_view(sec: Section, *, layer: int, query: int, head: int | None = None, fusion: Fusion = "mean",
               hide_special: bool = False):
    """View 3: attention of query position `query` over the keys -> `figures.TokenData`."""
    if not 0 <= query < len(sec.query_labels):
        raise PipelineError(f"query {query} is out of range: {len(sec.query_labels)} positions")
    w = sec.layer_weights(layer)  # [heads, q, k]
    return figures.prepare_tokens(
        w, sec.key_labels, query=query, query_label=None if sec.kind == "self" else sec.query_labels[query],
        head=head, fusion=fusion, hide=sec.key_special if hide_special else None)


def generation_step_view(gen: GenerationResult, *, step: int, layer: int, head: int | None = None,
                         fusion: Fusion = "mean"):
    """View 6: the attention row that produced generated token `step` -> `figures.TokenData`."""
    sec = next(s for s in gen.sections if s.kind == "self")
    row = gen.step_row(step)
    w = sec.layer_weights(min(layer, len(sec.layers) - 1))[:, row, : row + 1]  # [heads, k so far]
    return figures.prepare_generation_step(
        w, gen.tokens[: row + 1], step=step, prompt_len=gen.prompt_len,
        generated=gen.tokens[gen.prompt_len + step], head=head, fusion=fusion)


IMAGE_SOURCES = ("attention", "rollout", "gradient rollout")


def image_sources(run: Run, sec: Section) -> list[str]:
    """Maps the image view offers for this run/section."""
    if sec.key_grid is None:
        raise PipelineError("The image view needs attention over image patches: choose the encoder "
                            "self-attention or the cross-attention of an image model.")
    if sec.kind == "cross":
        return ["cross-attention", "relevance (Chefer et al.)"]
    return list(IMAGE_SOURCES) if "generation" not in run._cache else ["attention", "rollout"]


def image_queries(run: Run, sec: Section, source: str) -> list[str]:
    """Query positions to explain: CLS and patches (self-attention), generated words (cross)."""
    if sec.kind == "cross":
        return [f"{i}: {t}" for i, t in enumerate(sec.query_labels)][1:] or ["0: " + sec.query_labels[0]]
    first = [f"{i}: {t}" for i, t in enumerate(sec.query_labels) if sec.query_special[i]]
    patches = [f"{i}: {t}" for i, t in enumerate(sec.query_labels) if not sec.query_special[i]]
    if source != "attention":
        return first or ["mean of patches"]
    return first + patches


def _relevance(run: Run) -> torch.Tensor:
    """Chefer et al. 2021 encoder-decoder relevance [T_dec, T_enc] of the captioner (no gradients)."""
    def compute():
        enc, dec, cross = (run.section("encoder", "self"), run.section("decoder", "self"),
                           run.section("decoder", "cross"))
        return analysis.encoder_decoder_relevance(enc._batched(), dec._batched(), cross._batched())[0]
    return run._cached("relevance", compute)


def image_view(run: Run, sec: Section, *, source: str, query: str, layer: int = 0, head: int | None = None,
               fusion: Fusion = "mean", opacity: float = 0.5, mask=None):
    """View 4: a patch map over the image -> `figures.ImageData`.

    source "attention": row `query` of layer `layer` (head or fused); "rollout": attention
    rollout from `query` (CLS); "gradient rollout": Chefer et al. 2021 from `query`;
    "cross-attention": a generated word's row of the cross-attention; "relevance": its
    encoder-decoder relevance. `query` is one of `image_queries(...)` ("index: label").
    """
    if run.image is None or sec.key_grid is None:
        raise PipelineError("The image view needs an image input and attention over image patches.")
    gh, gw = sec.key_grid
    n = len(sec.key_labels)
    first = n - gh * gw
    q = None if query == "mean of patches" else int(str(query).split(":")[0])
    if source in ("attention", "cross-attention"):
        w = sec.layer_weights(layer)  # [heads, q, k]
        a = w[head] if head is not None else (w.mean(0) if fusion == "mean" else w.amax(0))  # [q, k]
        row, what = a[q], f"{source}, layer {sec.layers[layer]}, {'head %d' % head if head is not None else fusion}"
    elif source == "rollout":
        r = sec.rollout()  # [q, k]
        row, what = (r[first:].mean(0) if q is None else r[q]), "attention rollout"
    elif source == "gradient rollout":
        r = gradients(run)["gradient_rollout"]  # [q, k]
        row, what = (r[first:].mean(0) if q is None else r[q]), "gradient rollout (gradient-weighted, Chefer et al. 2021)"
    elif source.startswith("relevance"):
        row, what = _relevance(run)[q], "encoder-decoder relevance (Chefer et al. 2021)"
    else:
        raise PipelineError(f"unknown map {source!r}; choose one of {image_sources(run, sec)}")
    heat = row[first:].reshape(gh, gw)  # [k] -> patches [gh, gw]
    who = sec.query_labels[q] if q is not None else "all patches"
    if mask is not None and np.asarray(mask).shape != run.image.shape[:2]:
        mask = None
    return figures.prepare_image(run.image, heat.numpy(), opacity=opacity, mask=mask,
                                 title=f"{what[0].upper()}{what[1:]} from {who!r}")


def analysis_views(sec: Section) -> dict[str, Any]:
    """View 5 for one section: entropy, pattern labels, layer consistency, head distance
    (prepared once per section and cached on it)."""
    return dict(sec._cached("analysis_views", lambda: _analysis_views(sec)))


def _analysis_views(sec: Section) -> dict[str, Any]:
    pat = sec.patterns()
    labels = [row[0] for row in pat.labels]  # [L][H]
    label_score = torch.stack([torch.stack([
        pat.scores[lab][li, 0, h] if lab in pat.scores else pat.entropy[li, 0, h] * 0 + float("nan")
        for h, lab in enumerate(row)]) for li, row in enumerate(labels)])  # [L, H]
    dist, order = sec.head_distance()
    return {
        "entropy": figures.prepare_entropy(sec.entropy(), layers=sec.layers, max_entropy=1.0,
                                           unit="normalised", title="Head entropy (0 focused, 1 uniform)"),
        "patterns": figures.prepare_patterns(labels, label_score.nan_to_num(0.0), layers=sec.layers),
        "layer_consistency": figures.prepare_layer_consistency(
            sec.consistency(), layers=sec.layers, value_name="JS distance",
            title="Layer consistency (JS distance)"),
        "head_distance": figures.prepare_head_distance(dist, order=order.tolist(), num_heads=sec.n_heads,
                                                       title="Head distance (JS), clustered"),
    }


def cross_input_view(sections: Sequence[Section], *, names: Sequence[str] = ()) -> dict[str, Any]:
    """Cross-input consistency of one section over several inputs: per head mean ± spread."""
    if len(sections) < 2:
        raise PipelineError("Cross-input consistency needs at least two inputs.")
    shapes = {tuple(s.stacked().shape[:2]) for s in sections}
    if len(shapes) > 1:
        raise PipelineError("The inputs gave different layer/head layouts; compare inputs of one model.")
    cons = analysis.cross_input_consistency([s.patterns() for s in sections])
    changed = int(cons.label_changes.sum())
    p = figures.prepare_cross_input(cons.mean["entropy"][:, 0], cons.std["entropy"][:, 0],
                                    statistic="entropy", n_inputs=cons.n_inputs, layers=sections[0].layers)
    if changed:
        p = dataclasses.replace(p, note=f"{changed} head(s) change their dominant pattern across these inputs")
    return {"cross_input": p}


def faithfulness_views(run: Run) -> dict[str, Any]:
    """Deletion curves and the per-position importances of the faithfulness check (if it ran)."""
    rep = run._cache.get("faithfulness")
    if rep is None:
        return {}
    def compute():
        curves = {name: m.deletion_curve for name, m in rep.methods.items()}
        imps = {"occlusion": rep.occlusion.nan_to_num(0.0), **{n: m.importance for n, m in rep.methods.items()}}
        return {"deletion_curves": figures.prepare_deletion_curves(curves),
                "importance": figures.prepare_importance(run.sections[0].key_labels, imps)}
    return dict(run._cached("faithfulness_views", compute))
