"""The shipped demo weights, loaded through the shared loader, still meet their headline targets
on small fresh generated sets (seeds unseen in training and in metrics.json)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from demos import negation, recall_lm, shapes_captioner, shapes_vit
from demos.shapes import SHAPES, make_shape_image
from hooks import capture_attention, load_model
from hooks.registry import BUILTIN_MODELS

SEED = 424_242  # fresh: training uses 0, 1 and 10_001, metrics.json uses 20_261_204


def meets(value: float, target: float, n: int) -> bool:
    """A rate measured on n fresh samples is consistent with reaching `target`: value >= target minus
    3 binomial standard errors, 3 * sqrt(target * (1 - target) / n) (a small set cannot show more)."""
    return value >= target - 3 * (target * (1 - target) / n) ** 0.5


@pytest.fixture(scope="module", autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


def test_shapes_vit_accuracy_and_pointing_game():
    bundle = load_model("shapes-vit")
    m = shapes_vit.evaluate(bundle.model, n=500, seed=SEED)
    assert meets(m["accuracy"], 0.95, 500) and meets(m["pointing_game"], 0.85, 500), m


def test_shapes_vit_processor_matches_training_normalisation():
    bundle = load_model("shapes-vit")
    ex = make_shape_image(np.random.default_rng(SEED))
    from PIL import Image

    pixels = bundle.image_processor(Image.fromarray(ex.image), return_tensors="pt")["pixel_values"]
    assert torch.allclose(pixels, shapes_vit.to_pixels([ex.image]), atol=1e-5)
    with torch.no_grad():
        assert SHAPES[int(bundle.model(pixel_values=pixels).logits.argmax())] == SHAPES[ex.label]


def test_shapes_captioner_captions_and_grounding():
    bundle = load_model("shapes-captioner")
    m = shapes_captioner.evaluate(bundle.model, bundle.tokenizer, n=200, seed=SEED)
    assert meets(m["caption_accuracy"], 0.90, 200) and meets(m["grounding_best_layer"], 0.80, 4 * 200), m


def test_recall_lm_answers_and_heads():
    bundle = load_model("recall-lm")
    m = recall_lm.evaluate(bundle.model, bundle.tokenizer, n=300, seed=SEED)
    assert meets(m["answer_accuracy"], 0.95, 300) and meets(m["retrieval_head_score"], 0.90, 2 * 300), m
    assert m["previous_token_score"] >= 0.5, m
    assert m["answer_accuracy_retrieval_head_ablated"] < 0.5 * m["answer_accuracy"], "the retrieval head is used"


def test_recall_lm_generates_the_answer_from_text():
    bundle = load_model("recall-lm")
    tok = bundle.tokenizer
    prompt = "ann red kite . bob blue cup . what does bob have ?"
    ids = tok(prompt, return_tensors="pt")
    out = bundle.model.generate(**ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.eos_token_id)
    assert tok.decode(out[0, ids["input_ids"].shape[1]:]).split()[:3] == ["bob", "blue", "cup"]


def test_negation_classifier_accuracy_and_capture_with_padding():
    bundle = load_model("negation-classifier")
    assert bundle.kind == "torch" and bundle.model_id == "negation-classifier"
    m = negation.evaluate(bundle.model, bundle.tokenizer, n=500, seed=SEED)
    assert meets(m["accuracy"], 0.95, 500), m
    enc = bundle.tokenizer(["the soup was not good", "i did not like the movie at all ."], padding=True,
                           return_tensors="pt")
    with capture_attention(bundle.model) as cap:
        with torch.no_grad():
            logits = bundle.model(**enc).logits
    assert logits.argmax(-1).tolist() == [0, 0]
    T = enc["input_ids"].shape[1]
    cfg = bundle.model.config
    assert len(cap.maps) == cfg.num_hidden_layers
    for mp in cap.maps:
        assert mp.weights.shape == (2, cfg.num_attention_heads, T, T)
        assert torch.allclose(mp.weights[0, :, :, 6:], torch.zeros(())), "padding keys get no weight"


@pytest.mark.parametrize("name", list(BUILTIN_MODELS))
def test_metrics_file_records_targets_met(name):
    rec = BUILTIN_MODELS[name].metrics()
    assert rec["targets_met"] and all(rec["targets_met"].values()), rec
    for key, target in rec["targets"].items():
        assert rec["metrics"][key] >= target
    assert rec["command"].startswith("python") and rec["date"].startswith("20")
