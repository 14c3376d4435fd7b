"""The warnings panel's faithfulness summary and the export helpers (attention.npz, report.json)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from app.pipeline._common import GENERAL_CAVEATS, PipelineError, Progress
from app.pipeline._faithfulness import faithfulness
from app.pipeline._loading import model_info
from app.pipeline._run import Run


# ------------------------------------------------------------------------------ warnings, report

AUTO_FAITHFULNESS_POSITIONS = 128
"""Inputs up to this many positions get the faithfulness check automatically (a few seconds)."""


@dataclass(frozen=True)
class FaithfulnessSummary:
    """What the warnings panel prints: the verdict sentence and one line of numbers (ok=False when
    the check does not apply to this model, with the reason as `verdict`)."""

    ok: bool
    verdict: str
    numbers: str = ""
    report: Any = None


def faithfulness_summary(run: Run, *, progress: Progress = None) -> FaithfulnessSummary:
    """`faithfulness` as one verdict sentence plus ρ / top-k overlap / AOPC of every method."""
    try:
        rep = faithfulness(run, progress=progress)
    except PipelineError as exc:
        return FaithfulnessSummary(False, f"Faithfulness check not available: {exc}")
    nums = "; ".join(f"{name}: ρ = {m.spearman:.2f}, top-{rep.top_k} overlap = {m.top_k_overlap:.2f}, "
                     f"AOPC = {m.aopc:.3f}" for name, m in rep.methods.items())
    nums += f"; occlusion AOPC = {rep.occlusion_aopc:.3f}, random = {rep.random_aopc:.3f}"
    return FaithfulnessSummary(True, rep.verdict, nums, rep)


def export_maps(run: Run) -> dict[str, torch.Tensor]:
    """Every captured map of the run for attention.npz: module name -> [1, heads, q, k]."""
    return {f"{sec.stack + '/' if sec.stack else ''}{name}": w.unsqueeze(0)  # [1, heads, q, k]
            for sec in run.sections for name, w in zip(sec.names, sec.weights)}


def run_statistics(run: Run) -> dict:
    """Per section: entropy [L, H] (normalised), pattern labels, sinks, layer consistency, mask
    check; the faithfulness numbers when the check has run. Plain lists, ready for report.json."""
    stats: dict[str, Any] = {}
    for sec in run.sections:
        pat = sec.patterns()
        entry = {
            "layers": sec.layers,
            "entropy_normalized": sec.entropy().tolist(),
            "pattern_labels": [row[0] for row in pat.labels],  # [L][H]
            "sink_heads": pat.sink[:, 0].tolist(),
            "sink_mass": pat.sink_mass[:, 0].tolist(),
            "layer_consistency": sec.consistency().tolist(),
        }
        if sec.causal:
            entry["mask_check"] = sec.mask_check().message
        stats[sec.title] = entry
    rep = run._cache.get("faithfulness")
    if rep is not None:
        stats["faithfulness"] = {
            "verdict": rep.verdict, "primary": rep.primary, "top_k": rep.top_k,
            "methods": {n: {"spearman": m.spearman, "top_k_overlap": m.top_k_overlap, "aopc": m.aopc,
                            "strength": m.strength} for n, m in rep.methods.items()},
            "occlusion_aopc": rep.occlusion_aopc, "random_aopc": rep.random_aopc}
    return stats


def build_report(run: Run, *, settings: dict | None = None, runs: Sequence[Run] = ()) -> dict:
    """report.json for one run (plus the other inputs' records) through `app.export.build_report`."""
    from app import export

    info = model_info(run._bundle)
    records = [export.input_record(text=r.text, image_sha256=r.input_sha256 if r.text is None else None,
                                   name=r.name, num_tokens=r.n_positions) for r in (list(runs) or [run])]
    warnings = list(run.warnings) + list(GENERAL_CAVEATS)
    summary = run._cache.get("faithfulness")
    if summary is not None:
        warnings.append(summary.verdict)
    return export.build_report(
        model_id=info.model_id, revision=info.revision, model_class=info.class_name,
        attn_implementation=info.attn_implementation, dtype=info.dtype, num_layers=info.layers,
        num_heads=info.heads, inputs=records, settings=dict(settings or {}),
        statistics=run_statistics(run), warnings=warnings)
