"""Bad inputs through the shared pipeline (app and CLI): one readable error or a visible warning.

Tiny models are saved to a temp folder and loaded through `app.pipeline.load_bundle`, exactly
as a user's local folder would be: text longer than the model's positions (truncated, the
warning says where), an image given to a text model and text to an image model, empty text,
and NaN weights (reported beside the figures; every analysis view still builds).
"""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from app import pipeline
from app.inputs import InputError
from tests.tiny_models import WORDS, save_tiny, tiny_bert, tiny_image_processor, tiny_tokenizer, tiny_vit


@pytest.fixture(scope="module")
def text_bundle(tmp_path_factory):
    folder = save_tiny(tiny_bert(), tiny_tokenizer(), tmp_path_factory.mktemp("bert"))  # 64 positions
    return pipeline.load_bundle(str(folder))


@pytest.fixture(scope="module")
def image_bundle(tmp_path_factory):
    folder = save_tiny(tiny_vit(), tiny_image_processor(), tmp_path_factory.mktemp("vit"))
    return pipeline.load_bundle(str(folder))


def test_long_text_truncated_with_a_warning_that_says_where(text_bundle):
    words = (list(WORDS) * 3)[:100]  # 100 words -> [CLS] + 100 + [SEP] = 102 tokens
    text = " ".join(words)
    run = pipeline.capture_input(text_bundle, text=text)
    cut = len(" ".join(words[:63])) + 1  # positions 1..63 hold words 0..62; word 63 is the first dropped
    expected = (
        "Input truncated to the model's maximum of 64 positions: tokens 65-102 were dropped "
        f"(the text from character {cut} on was not seen by the model)"
    )
    assert run.truncation == expected and expected in run.warnings
    assert run.n_positions == 64
    assert all(w.shape[-2:] == (64, 64) for w in run.section().weights)  # [heads, q, k]


def test_modality_mismatches_are_readable_errors(text_bundle, image_bundle):
    with pytest.raises(pipeline.PipelineError, match="This is a text model: it reads text, not images"):
        pipeline.capture_input(text_bundle, image=Image.new("RGB", (32, 32)))
    with pytest.raises(pipeline.PipelineError, match="This is an image model: it reads an image, not text"):
        pipeline.capture_input(image_bundle, text="the cat sat")


def test_empty_text_is_a_readable_error(text_bundle):
    with pytest.raises(InputError, match="empty"):
        pipeline.capture_input(text_bundle, text=" \n\t ")


def test_nan_weights_are_reported_and_views_still_build(tmp_path):
    model = tiny_bert()
    with torch.no_grad():
        model.bert.encoder.layer[1].attention.self.query.weight[0, 0] = float("nan")
    bundle = pipeline.load_bundle(str(save_tiny(model, tiny_tokenizer(), tmp_path / "nan")))
    run = pipeline.capture_input(bundle, text="the cat sat on the mat")
    notes = [w for w in run.warnings if "non-finite" in w]
    assert notes and notes[0].startswith("Attention 'bert.encoder.layer.1.attention.self' hold non-finite values")
    assert any(w.startswith("Weights 'bert.encoder.layer.1.attention.self.query.weight'") for w in notes)
    sec = run.section()
    assert pipeline.matrix_view(sec, layer=1) is not None
    assert sec.entropy().shape == (2, 4)  # [layers, heads]: computed, NaN where undefined
    views = pipeline.analysis_views(sec)  # entropy, patterns, consistency, head distance: no exception
    assert set(views) >= {"entropy", "patterns", "layer_consistency", "head_distance"}
    assert sec.head_distance()[1].tolist() == list(range(8))  # undefined distances: natural head order
