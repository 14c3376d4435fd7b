"""The shared pipeline (app + CLI) headless: what it shows is exactly what was captured and computed."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import analysis
from app import export, pipeline
from tests.tiny_models import save_tiny, tiny_bert, tiny_gpt2, tiny_image_processor, tiny_tokenizer, tiny_vit


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    return pipeline.load_bundle(str(save_tiny(tiny_gpt2(), tiny_tokenizer(template=None),
                                              tmp_path_factory.mktemp("gpt2"))))


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return pipeline.load_bundle(str(save_tiny(tiny_bert(), tiny_tokenizer(), tmp_path_factory.mktemp("bert"))))


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    return pipeline.load_bundle(str(save_tiny(tiny_vit(), tiny_image_processor(), tmp_path_factory.mktemp("vit"))))


def test_model_info_describes_the_model(gpt2):
    info = pipeline.model_info(gpt2)
    assert (info.class_name, info.layers, info.heads, info.max_positions) == ("GPT2LMHeadModel", 2, 4, 64)
    assert info.parameters == sum(p.numel() for p in gpt2.model.parameters())
    assert info.device == "cpu"
    # loaded with sdpa, which computes no weights: the info says how the shown weights were obtained
    assert info.attn_implementation.startswith("sdpa (") and "eager attention code" in info.attn_implementation


def test_matrix_view_shows_the_captured_weights_unchanged(gpt2):
    run = pipeline.capture_input(gpt2, text="the cat sat on the cat")
    sec = run.section()
    assert sec.causal and sec.query_labels == ("the", "cat", "sat", "on", "the", "cat")
    p = pipeline.matrix_view(sec, layer=1, head=2)
    np.testing.assert_array_equal(p.values, sec.weights[1][2].numpy())  # [q, k] of head 2
    fused = pipeline.matrix_view(sec, layer=0, fusion="max")
    np.testing.assert_allclose(fused.values, sec.weights[0].amax(0).numpy())
    assert len(p.row_labels) == 6 and p.row_labels[0] == p.row_labels[4] == "the"  # repeats kept


def test_statistics_are_the_analysis_packages(gpt2):
    run = pipeline.capture_input(gpt2, text="a dog ran under the tree and the bird flew")
    sec = run.section()
    layers = [w.unsqueeze(0) for w in sec.weights]  # [1, heads, q, k] each
    torch.testing.assert_close(sec.rollout(), analysis.attention_rollout(layers)[0])
    torch.testing.assert_close(sec.entropy(), torch.stack(
        [analysis.head_entropy(w, normalize=True, causal=True)[0] for w in layers]))
    assert sec.rollout() is sec.rollout()  # computed once, cached
    assert sec.mask_check().ok and not [w for w in run.warnings if "leak" in w.lower()]


def test_generation_stitches_every_step(gpt2):
    run = pipeline.capture_input(gpt2, text="the cat sat")
    gen = pipeline.generate_input(gpt2, run, max_new_tokens=4)
    assert gen.prompt_len == 3 and gen.n_generated == 4 and len(gen.tokens) == 7
    sec = gen.sections[0]
    assert sec.weights[0].shape == (4, 6, 6)  # [heads, T, T], T = 7 - 1
    torch.testing.assert_close(sec.weights[0][:, :3, :3], run.section().weights[0])  # prefill rows
    step = pipeline.generation_step_view(gen, step=3, layer=1, head=0)
    np.testing.assert_allclose(step.weights, sec.weights[1][0, 5, :6].numpy(), rtol=1e-6)
    with pytest.raises(pipeline.PipelineError, match="out of range"):
        gen.step_row(4)


def test_faithfulness_and_gradient_rollout_on_a_classifier(bert):
    run = pipeline.capture_input(bert, text="the cat sat on the mat and the dog ran")
    assert run.prediction.startswith("class: ")
    grads = pipeline.gradients(run)
    n = len(run.section().key_labels)
    assert grads["gradient_rollout"].shape == (n, n) and grads["input_x_gradient"].shape == (n,)
    summary = pipeline.faithfulness_summary(run)
    assert summary.ok and summary.verdict.startswith("On this input, rollout")
    assert "ρ =" in summary.numbers and set(summary.report.methods) >= {"rollout", "gradient rollout"}
    report = pipeline.build_report(run, settings={"layer": 0})
    assert export.validate_report(report) == []
    assert report["statistics"]["faithfulness"]["verdict"] == summary.verdict
    assert summary.verdict in [w["message"] if isinstance(w, dict) else w for w in report["warnings"]]


def test_image_views_rollout_and_gradient_rollout(vit):
    im = Image.new("RGB", (40, 40), (250, 250, 250))
    im.paste((200, 0, 0), (0, 0, 20, 20))
    run = pipeline.capture_input(vit, image=im)
    sec = run.section()
    assert sec.key_grid == (4, 4) and sec.key_cls == 0 and sec.key_labels[1] == "patch 0,0"
    assert pipeline.image_sources(run, sec) == ["attention", "rollout", "gradient rollout"]
    for source in ("attention", "rollout", "gradient rollout"):
        p = pipeline.image_view(run, sec, source=source, query="0: CLS", opacity=0.3)
        assert p.heat.shape == (4, 4) and p.opacity == 0.3 and p.image.shape == (40, 40, 3)
    raw = sec.rollout()[0, 1:].reshape(4, 4)
    p = pipeline.image_view(run, sec, source="rollout", query="0: CLS")
    np.testing.assert_allclose(p.heat, ((raw - raw.min()) / (raw.max() - raw.min())).numpy(), atol=1e-6)
    maps = pipeline.export_maps(run)
    assert len(maps) == 2 and all(m.shape == (1, 4, 17, 17) for m in maps.values())


def test_wrong_inputs_are_pipeline_errors(gpt2):
    with pytest.raises(pipeline.PipelineError, match="exactly one input"):
        pipeline.capture_input(gpt2, text="a", image=Image.new("RGB", (32, 32)))
    with pytest.raises(pipeline.PipelineError, match="Could not load"):
        pipeline.load_bundle("/no/such/folder")
    run = pipeline.capture_input(gpt2, text="the cat")
    with pytest.raises(pipeline.PipelineError, match="layer 5 is out of range"):
        pipeline.matrix_view(run.section(), layer=5)
    with pytest.raises(pipeline.PipelineError, match="image"):
        pipeline.image_view(run, run.section(), source="rollout", query="0: the")
