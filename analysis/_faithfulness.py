"""Faithfulness check: does an attention-derived importance agree with occlusion?

Model-agnostic: the caller passes a ``score_fn`` that runs the model on occluded inputs. Occlusion
importance (Zeiler & Fergus 2014) is compared with each attention-derived importance by Spearman
rank correlation, top-k overlap and the deletion curve / AOPC (Samek et al. 2017); the verdict
follows the caution of Jain & Wallace 2019, "Attention is not Explanation".
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import torch
from torch import Tensor

Strength = Literal["strong", "moderate", "weak", "none", "opposite", "undetermined"]

AGREEMENT_THRESHOLDS = MappingProxyType({"strong": 0.6, "moderate": 0.4, "weak": 0.2})
"""Cut-offs on ``agreement = (ρ + chance-corrected top-k overlap) / 2`` for the verdict's strength;
below "weak" the strength is "opposite" when ``ρ <= OPPOSITE_RHO``, else "none"."""

OPPOSITE_RHO = -0.2
"""Spearman ρ at or below which a non-agreeing method is said to rank positions against occlusion."""

INPUT_X_GRADIENT = "input×gradient"
"""Method name under which ``gradient_importance`` appears in the report."""

ScoreFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class MethodAgreement:
    """Agreement of one importance with occlusion.

    ``importance [n]``: as given; ``spearman``: ρ over removable positions (NaN when either side
    is constant); ``top_k_overlap``: ``|top-k(method) ∩ S| / |S|``, ``S`` = occlusion's top-k
    positions with a positive drop; ``agreement``: ``(ρ + (overlap - k/R) / (1 - k/R)) / 2``
    (ρ NaN counts as 0); ``deletion_curve [K+1]``: target score after deleting the method's top
    ``0..K`` positions; ``aopc = mean_k (f(x) - f(x^(k)))``; ``sentence``: the plain verdict.
    """

    name: str
    importance: Tensor
    spearman: float
    top_k_overlap: float
    agreement: float
    strength: Strength
    deletion_curve: Tensor
    aopc: float
    sentence: str


@dataclass(frozen=True)
class FaithfulnessReport:
    """Result of :func:`faithfulness_check`.

    ``base_score``: target score of the intact input; ``occlusion [n]``: drop in the target score
    when each position alone is occluded (NaN where not removable); ``methods``: per-method
    :class:`MethodAgreement`; ``occlusion_aopc`` / ``random_aopc``: AOPC of deleting in occlusion
    order / in one seeded random order (references for the methods' AOPC); ``verdict``: one plain
    sentence about ``primary``, for the app's warning.
    """

    base_score: float
    occlusion: Tensor
    removable: Tensor
    top_k: int
    methods: dict[str, MethodAgreement]
    occlusion_aopc: float
    random_aopc: float
    primary: str
    verdict: str
    n_evaluations: int


def _rank(x: Tensor) -> Tensor:
    """Average ranks (1-based, ties share their mean rank) of a 1-D tensor, float64."""
    x = x.to(torch.float64)
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x)
    sorted_x = x[order]
    _, inverse, counts = torch.unique_consecutive(sorted_x, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).to(torch.float64)  # last 1-based position of each tie group
    ranks[order] = (ends - (counts.to(torch.float64) - 1) / 2)[inverse]
    return ranks


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation ``ρ = pearson(rank(a), rank(b))`` of two 1-D tensors, ties given
    average ranks; NaN when either is constant (Spearman 1904)."""
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"spearman needs two 1-D tensors of equal length, got {tuple(a.shape)} and {tuple(b.shape)}")
    ra, rb = _rank(a), _rank(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt(float((ra * ra).sum()) * float((rb * rb).sum()))
    return float((ra * rb).sum()) / den if den > 0 else float("nan")


def _top(importance: Tensor, positions: Tensor, k: int) -> Tensor:
    """The ``k`` positions (from ``positions``) of highest importance; ties to the lower position."""
    order = torch.argsort(-importance[positions].to(torch.float64), stable=True)
    return positions[order[:k]]


def _strength(agreement: float, rho: float) -> Strength:
    if agreement >= AGREEMENT_THRESHOLDS["strong"]:
        return "strong"
    if agreement >= AGREEMENT_THRESHOLDS["moderate"]:
        return "moderate"
    if agreement >= AGREEMENT_THRESHOLDS["weak"]:
        return "weak"
    return "opposite" if rho <= OPPOSITE_RHO else "none"


_SENTENCES = {
    "strong": "On this input, {name} agrees strongly with occlusion ({nums}): it is a fair guide to importance here, on this input only.",
    "moderate": "On this input, {name} agrees with occlusion only moderately ({nums}): treat it as a rough hint, not as importance.",
    "weak": "On this input, {name} agrees with occlusion only weakly ({nums}): do not read it as importance.",
    "none": "On this input, {name} does not agree with occlusion ({nums}): do not read it as importance.",
    "opposite": "On this input, {name} ranks positions against occlusion ({nums}): do not read it as importance.",
}


def _check_vector(v: object, name: str, n: int) -> Tensor:
    if not isinstance(v, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [n_positions], got {type(v).__name__}")
    t = v.detach().to(torch.float64).cpu()
    if t.shape != (n,):
        raise ValueError(f"{name} must have shape [{n}] (one value per position), got {tuple(v.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


class _Evaluator:
    """Runs ``score_fn`` over keep-masks in batches, reporting progress per batch."""

    def __init__(self, score_fn: ScoreFn, batch_size: int, progress: Callable[[int, int], None] | None):
        self.score_fn, self.batch_size, self.progress = score_fn, batch_size, progress
        self.total_batches = 0
        self.done = 0
        self.rows = 0

    def plan(self, *row_counts: int) -> None:
        self.total_batches = sum(math.ceil(r / self.batch_size) for r in row_counts)

    def __call__(self, keep: Tensor) -> Tensor:
        out = []
        for s in range(0, keep.shape[0], self.batch_size):
            block = keep[s : s + self.batch_size]
            scores = self.score_fn(block.clone())
            if not isinstance(scores, Tensor):
                scores = torch.as_tensor(scores)
            scores = scores.detach().to(torch.float64).reshape(-1)
            if scores.shape != (block.shape[0],):
                raise ValueError(
                    f"score_fn must return one score per keep-mask row: {block.shape[0]} rows in, "
                    f"{tuple(scores.shape)} out"
                )
            if not torch.isfinite(scores).all():
                raise ValueError("score_fn returned NaN or infinite scores")
            out.append(scores)
            self.done += 1
            self.rows += block.shape[0]
            if self.progress is not None:
                self.progress(self.done, self.total_batches)
        return torch.cat(out)


def _deletion_masks(orders: list[Tensor], n: int, steps: int) -> Tensor:
    """Keep-masks deleting the first ``1..steps`` positions of each order: ``[len(orders)*steps, n]``."""
    rows = torch.ones(len(orders), steps, n, dtype=torch.bool)  # [m, steps, n]
    for m, order in enumerate(orders):
        for s in range(steps):
            rows[m, s:, order[s]] = False
    return rows.reshape(-1, n)


def faithfulness_check(
    *,
    n_positions: int,
    score_fn: ScoreFn,
    attention_importance: Mapping[str, Tensor],
    gradient_importance: Tensor | None = None,
    removable: Tensor | None = None,
    top_k: int | None = None,
    deletion_steps: int | None = None,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
    primary: str | None = None,
    seed: int = 0,
) -> FaithfulnessReport:
    """Compare attention-derived importances with occlusion on one input, for one target.

    ``score_fn(keep) -> scores``: ``keep`` bool ``[m, n_positions]`` (False = occlude that token /
    patch: remove it or replace it by a baseline, the caller decides), returning the target's score
    ``[m]`` (a probability: class, next token, caption word). ``attention_importance``: name ->
    ``[n_positions]`` (e.g. raw last-layer head-mean attention, rollout, gradient rollout);
    ``gradient_importance`` ``[n_positions]``: input×gradient, reported as :data:`INPUT_X_GRADIENT`.
    ``removable`` bool ``[n_positions]`` (default all): positions that may be occluded (e.g. not
    BOS/CLS); only they are ranked and compared.

    Occlusion importance: ``o_j = f(x) - f(x without j)``. Per method: Spearman ρ with ``o``;
    top-k overlap ``|top-k(method) ∩ S| / |S|`` with ``S`` = occlusion's top-k positions whose drop
    is positive and ``k = top_k`` (default ``ceil(R / 10)``, ``R`` = removable count); deletion
    curve ``f(x^(s))`` after deleting the method's top ``s = 0..K`` positions (``K =
    deletion_steps``, default ``R``) and ``AOPC = mean_s (f(x) - f(x^(s)))`` (Samek et al. 2017).
    Verdict strength from ``agreement = (ρ + (overlap - k/R) / (1 - k/R)) / 2``: strong >= 0.6,
    moderate >= 0.4, weak >= 0.2, else "opposite" if ρ <= -0.2, else "none"
    (:data:`AGREEMENT_THRESHOLDS`); "undetermined" when no single occlusion lowers the score.
    ``score_fn`` runs on batches of ``batch_size`` rows; ``progress(done, total)`` after each batch.
    """
    if not isinstance(n_positions, int) or n_positions < 2:
        raise ValueError(f"n_positions must be an int >= 2, got {n_positions!r}")
    if not callable(score_fn):
        raise TypeError("score_fn must be callable: keep-mask [m, n] bool -> scores [m]")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    n = n_positions
    if not isinstance(attention_importance, Mapping) or not attention_importance:
        raise ValueError("attention_importance must be a non-empty mapping name -> Tensor [n_positions]")
    methods = {str(k): _check_vector(v, f"attention_importance[{k!r}]", n) for k, v in attention_importance.items()}
    if gradient_importance is not None:
        if INPUT_X_GRADIENT in methods:
            raise ValueError(f"{INPUT_X_GRADIENT!r} is reserved for gradient_importance")
        methods[INPUT_X_GRADIENT] = _check_vector(gradient_importance, "gradient_importance", n)
    primary = next(iter(methods)) if primary is None else primary
    if primary not in methods:
        raise ValueError(f"primary {primary!r} is not one of the methods {list(methods)}")
    if removable is None:
        rem = torch.ones(n, dtype=torch.bool)
    else:
        if not isinstance(removable, Tensor) or removable.shape != (n,):
            raise ValueError(f"removable must be a bool tensor of shape [{n}]")
        rem = removable.detach().to(torch.bool).cpu()
    positions = rem.nonzero().flatten()  # [R]
    r = positions.numel()
    if r < 2:
        raise ValueError(f"at least 2 removable positions are needed, got {r}")
    k = max(1, math.ceil(r / 10)) if top_k is None else top_k
    if not isinstance(k, int) or not 1 <= k <= r:
        raise ValueError(f"top_k must be an int within [1, {r}], got {top_k!r}")
    steps = r if deletion_steps is None else deletion_steps
    if not isinstance(steps, int) or not 1 <= steps <= r:
        raise ValueError(f"deletion_steps must be an int within [1, {r}], got {deletion_steps!r}")

    evaluate = _Evaluator(score_fn, batch_size, progress)
    n_curves = len(methods) + 2  # methods, occlusion order, random order
    evaluate.plan(1 + r, n_curves * steps)

    # Phase 1: the intact input and each removable position occluded alone.
    keep = torch.ones(1 + r, n, dtype=torch.bool)  # [1 + R, n]
    keep[torch.arange(1, r + 1), positions] = False
    single = evaluate(keep)  # [1 + R]
    base = float(single[0])
    occlusion = torch.full((n,), float("nan"), dtype=torch.float64)
    occlusion[positions] = base - single[1:]

    # Phase 2: deletion curves for every method plus the occlusion and random references.
    gen = torch.Generator().manual_seed(seed)
    orders = [_top(imp, positions, steps) for imp in methods.values()]
    orders.append(_top(occlusion.nan_to_num(-math.inf), positions, steps))
    orders.append(positions[torch.randperm(r, generator=gen)[:steps]])
    deleted = evaluate(_deletion_masks(orders, n, steps)).reshape(n_curves, steps)  # [curves, K]
    curves = torch.cat([torch.full((n_curves, 1), base, dtype=torch.float64), deleted], dim=1)  # [curves, K+1]
    aopc = (base - curves).mean(dim=1)  # [curves]

    occ_r = occlusion[positions]
    tol = 1e-6 * max(1.0, abs(base))
    truth = [int(p) for p in _top(occlusion.nan_to_num(-math.inf), positions, k) if occlusion[p] > tol]
    chance = k / r
    report_methods: dict[str, MethodAgreement] = {}
    for i, (name, imp) in enumerate(methods.items()):
        rho = spearman(imp[positions], occ_r)
        hits = len(set(int(p) for p in _top(imp, positions, k)) & set(truth))
        overlap = hits / len(truth) if truth else float("nan")
        if not truth:
            agreement, strength = float("nan"), "undetermined"
            sentence = (
                f"On this input, occluding any single position barely changes the target score "
                f"(largest drop {float(occ_r.max()):.2g}), so occlusion can neither confirm nor refute "
                f"{name}: do not read it as importance."
            )
        else:
            corrected = (overlap - chance) / (1 - chance) if chance < 1 else 0.0
            agreement = ((0.0 if math.isnan(rho) else rho) + corrected) / 2
            strength = _strength(agreement, 0.0 if math.isnan(rho) else rho)
            rho_txt = "ρ undefined" if math.isnan(rho) else f"ρ = {rho:.2f}"
            nums = f"{rho_txt}, top-{k} overlap {hits}/{len(truth)}"
            sentence = _SENTENCES[strength].format(name=name, nums=nums)
        report_methods[name] = MethodAgreement(
            name=name,
            importance=imp.to(torch.float32),
            spearman=rho,
            top_k_overlap=overlap,
            agreement=agreement,
            strength=strength,
            deletion_curve=curves[i].to(torch.float32),
            aopc=float(aopc[i]),
            sentence=sentence,
        )
    return FaithfulnessReport(
        base_score=base,
        occlusion=occlusion.to(torch.float32),
        removable=rem,
        top_k=k,
        methods=report_methods,
        occlusion_aopc=float(aopc[-2]),
        random_aopc=float(aopc[-1]),
        primary=primary,
        verdict=report_methods[primary].sentence,
        n_evaluations=evaluate.rows,
    )
