"""Registry of built-in demo models and the sample inputs' manifest."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from hooks import registry
from hooks.registry import BUILTIN_MODELS, DEFAULT_MODEL, SAMPLES_DIR, get_sample, resolve, samples

HF_FILES = {"config.json", "model.safetensors"}


def test_resolve_names():
    assert resolve("recall-lm") is BUILTIN_MODELS["recall-lm"]
    assert resolve("  Shapes-ViT ") is BUILTIN_MODELS["shapes-vit"]
    assert resolve("gpt2") is None and resolve("./some/folder") is None and resolve(None) is None  # type: ignore[arg-type]
    assert set(registry.__all__) <= set(dir(registry))


def test_default_model_is_a_text_demo_with_an_in_distribution_sample():
    m = BUILTIN_MODELS[DEFAULT_MODEL]
    assert m.modality == "text" and m.available
    s = get_sample(m.default_sample)
    assert DEFAULT_MODEL in s.models and "what does" in s.read_text()


@pytest.mark.parametrize("name", list(BUILTIN_MODELS))
def test_model_folders_are_complete_and_small(name):
    m = BUILTIN_MODELS[name]
    files = {p.name for p in m.folder.iterdir()}
    assert HF_FILES | {"metrics.json"} <= files
    if m.kind == "hf":
        assert files & {"tokenizer.json", "preprocessor_config.json"}
    else:
        assert "tokenizer.json" in files
    assert sum(p.stat().st_size for p in m.folder.iterdir()) <= 5 * 2**20
    assert get_sample(m.default_sample) in samples(name)


def test_registry_load_returns_the_torch_model_and_says_what_to_do_otherwise(tmp_path):
    from dataclasses import replace

    model, tok = BUILTIN_MODELS["negation-classifier"].load()
    assert not model.training and tok("not good")["input_ids"][0] == tok.cls_token_id
    with pytest.raises(ValueError, match="hooks.load_model"):
        BUILTIN_MODELS["recall-lm"].load()
    with pytest.raises(FileNotFoundError, match="train_demos.sh"):
        replace(BUILTIN_MODELS["negation-classifier"], folder=tmp_path).load()


def test_manifest_entries_point_at_real_files():
    manifest = json.loads((SAMPLES_DIR / "manifest.json").read_text(encoding="utf-8"))
    ids = [s["id"] for s in manifest["samples"]]
    assert len(ids) == len(set(ids))
    for s in samples():
        assert s.file.is_file() and s.title and s.description
        assert all(m in BUILTIN_MODELS for m in s.models)
        if s.modality == "image":
            img = np.asarray(Image.open(s.file))
            mask = np.asarray(Image.open(s.mask)) > 127
            assert img.shape[:2] == mask.shape and 20 < mask.sum() < mask.size // 2
        else:
            assert s.mask is None and s.read_text().strip()
    with pytest.raises(KeyError, match="no sample"):
        get_sample("nope")


def test_samples_follow_the_model():
    assert all(s.modality == "image" for s in samples("shapes-captioner"))
    vit = samples("shapes-vit")
    assert vit and all(s.modality == "image" for s in vit) and all("shapes-captioner" not in s.models for s in vit)
    neg = [s.id for s in samples("negation-classifier")]
    assert neg[0].startswith("negation-") and "english" in neg and "recall-facts" not in neg
    assert samples("some/hf-model") == samples()


def test_sample_texts_cover_long_and_multilingual_inputs():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(BUILTIN_MODELS["recall-lm"].folder)
    assert len(tok(get_sample("long-document").read_text())["input_ids"]) >= 2000
    text = get_sample("emoji-multilingual").read_text()
    assert any(ord(c) > 0x1F000 for c in text) and any("\u4e00" <= c <= "\u9fff" for c in text)
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) .strip() == text.strip()
