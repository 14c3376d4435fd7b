"""The one attnscope pipeline, shared by the dashboard and the CLI.

    load (hooks.load_model) -> capture (hooks.capture_attention) -> analyse (analysis) -> figures

Nothing here imports streamlit; nothing is computed in two places: the app and the CLI both call

    bundle = load_bundle("recall-lm")                       # hooks.ModelBundle
    info = model_info(bundle)                               # ModelInfo (class, layers, heads, ...)
    run = capture_input(bundle, text="ann has a red kite")  # Run: one input, every captured map
    sec = run.section()                                     # Section: one (stack, kind), batch item 0
    fig = matrix_view(sec, layer=0, head=None, fusion="mean")   # app.figures prepared data
    sec.entropy(); sec.rollout(); sec.patterns()            # analysis, computed once, cached
    faithfulness_summary(run).verdict                       # occlusion vs attention, one sentence

Views (prepared data for `app.figures.to_plotly` / `app.export`): matrix_view, model_view,
token_view, image_view (attention / rollout / gradient rollout / cross-attention / relevance),
analysis_views, cross_input_view, faithfulness_views, generation_step_view (after
generate_input). Export helpers: export_maps (attention.npz), run_statistics, build_report.

Shapes: a `Section` holds, per captured layer, a float32 tensor [heads, q, k] (batch item 0).
Errors a user can cause (bad model name, wrong modality, uncapturable model, out-of-range layer)
are `PipelineError`; undecodable text or images are `app.inputs.InputError`. Both are ValueErrors
whose message is meant to be shown as is.
"""
from __future__ import annotations

from app.pipeline._common import GENERAL_CAVEATS, Fusion, PipelineError, Progress
from app.pipeline._sample_inputs import Sample, builtin_models, default_model, image_samples, text_samples
from app.pipeline._loading import ModelInfo, load_bundle, model_info
from app.pipeline._section import Section
from app.pipeline._run import Run, input_kind
from app.pipeline._generation import GenerationResult, generate_input
from app.pipeline._capture import capture_input
from app.pipeline._faithfulness import faithfulness, gradients
from app.pipeline._report import (AUTO_FAITHFULNESS_POSITIONS, FaithfulnessSummary, build_report, export_maps,
                                  faithfulness_summary, run_statistics)
from app.pipeline._views import (IMAGE_SOURCES, analysis_views, cross_input_view, faithfulness_views,
                                 generation_step_view, image_queries, image_sources, image_view, matrix_view,
                                 model_view, token_view)

__all__ = [
    "AUTO_FAITHFULNESS_POSITIONS",
    "GENERAL_CAVEATS",
    "IMAGE_SOURCES",
    "FaithfulnessSummary",
    "GenerationResult",
    "ModelInfo",
    "PipelineError",
    "Run",
    "Sample",
    "Section",
    "analysis_views",
    "build_report",
    "builtin_models",
    "capture_input",
    "cross_input_view",
    "default_model",
    "export_maps",
    "faithfulness",
    "faithfulness_summary",
    "faithfulness_views",
    "generate_input",
    "generation_step_view",
    "gradients",
    "image_queries",
    "image_samples",
    "image_sources",
    "image_view",
    "input_kind",
    "load_bundle",
    "matrix_view",
    "model_info",
    "model_view",
    "run_statistics",
    "text_samples",
    "token_view",
]
