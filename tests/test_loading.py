"""load_model: tiny random models saved with save_pretrained into tmp folders and loaded back."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

import hooks.registry
from hooks import LoadError, ModelBundle, capture_attention, load_model
from tests import tiny_models as tm

CASES = {
    # arch: (class name, tokenizer?, image processor?, modality, is_causal, is_encoder_decoder)
    "bert": ("BertForSequenceClassification", True, False, "text", False, False),
    "gpt2": ("GPT2LMHeadModel", True, False, "text", True, False),
    "llama": ("LlamaForCausalLM", True, False, "text", True, False),
    "t5": ("T5ForConditionalGeneration", True, False, "text", False, True),
    "bart": ("BartForConditionalGeneration", True, False, "text", False, True),
    "vit": ("ViTForImageClassification", False, True, "image", False, False),
    "clip": ("CLIPModel", True, True, "image-text", False, False),
    "vision_encoder_decoder": ("VisionEncoderDecoderModel", True, True, "image-to-text", False, True),
}


def _extras(arch):
    tok = tm.tiny_tokenizer(template="bert" if arch == "bert" else None)
    proc = tm.tiny_image_processor()
    return {"vit": proc, "clip": [tok, proc], "vision_encoder_decoder": [tok, proc]}.get(arch, tok)


@pytest.mark.parametrize("arch", list(CASES))
def test_round_trip(arch, tmp_path):
    original = getattr(tm, f"tiny_{arch}")()
    tm.save_tiny(original, _extras(arch), tmp_path)
    bundle = load_model(tmp_path)
    cls, has_tok, has_proc, modality, causal, enc_dec = CASES[arch]
    assert isinstance(bundle, ModelBundle) and bundle.kind == "hf"
    assert type(bundle.model).__name__ == cls
    assert not bundle.model.training
    assert (bundle.tokenizer is not None) == has_tok
    assert (bundle.image_processor is not None) == has_proc
    assert (bundle.modality, bundle.is_causal, bundle.is_encoder_decoder) == (modality, causal, enc_dec)
    assert bundle.attn_implementation == "sdpa" and bundle.model_id == str(tmp_path)
    for (name, p), (name2, q) in zip(original.state_dict().items(), bundle.model.state_dict().items()):
        assert name == name2 and torch.equal(p, q), name


def test_loaded_text_model_runs_through_the_pipeline(tmp_path):
    tm.save_tiny(tm.tiny_bert(), tm.tiny_tokenizer(), tmp_path)
    bundle = load_model(str(tmp_path), device="cpu", dtype=torch.float64)
    assert next(bundle.model.parameters()).dtype == torch.float64
    enc = bundle.tokenizer("the cat sat", return_tensors="pt")
    with torch.no_grad(), capture_attention(bundle.model) as cap:
        bundle.model(**enc)
    assert cap.maps[0].weights.shape == (1, 4, 5, 5)  # [CLS] the cat sat [SEP]


def test_missing_folder_and_empty_name(tmp_path):
    with pytest.raises(LoadError, match="not a model folder"):
        load_model(tmp_path / "nope")
    with pytest.raises(LoadError, match="no model given"):
        load_model("  ")


def test_folder_without_config(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(LoadError, match="has no config.json"):
        load_model(tmp_path)


def test_invalid_config_json(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(LoadError, match="not valid JSON"):
        load_model(tmp_path)


def test_folder_without_weights(tmp_path):
    tm.tiny_gpt2().config.save_pretrained(tmp_path)
    with pytest.raises(LoadError, match="has no weights"):
        load_model(tmp_path)


def _pickle_only(tmp_path):
    model = tm.tiny_gpt2()
    model.config.architectures = ["GPT2LMHeadModel"]  # save_pretrained of the model would write this
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    return model


def test_pickle_only_weights_are_refused_by_default(tmp_path):
    _pickle_only(tmp_path)
    with pytest.raises(LoadError, match="only pickle weights.*allow_pickle=True"):
        load_model(tmp_path)


def test_pickle_weights_with_explicit_opt_in(tmp_path):
    model = _pickle_only(tmp_path)
    bundle = load_model(tmp_path, allow_pickle=True)
    ids = torch.tensor([[7, 8, 9]])
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(input_ids=ids).logits, model(input_ids=ids).logits)


def test_remote_code_needs_opt_in_and_says_the_risk(tmp_path):
    cfg = tm.tiny_gpt2().config.to_dict()
    cfg.update(model_type="my-custom", auto_map={"AutoModel": "modeling_custom.CustomModel"})
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(LoadError, match="trust_remote_code.*executing someone else's code"):
        load_model(tmp_path)


def test_unknown_hub_id_offline_is_a_clear_error():
    with pytest.raises(LoadError, match="could not find a model 'attnscope-test/no-such-model' in the local cache"):
        load_model("attnscope-test/no-such-model", local_files_only=True)


def test_builtin_names_resolve_through_the_registry(tmp_path, monkeypatch):
    tm.save_tiny(tm.tiny_gpt2(), tm.tiny_tokenizer(template=None), tmp_path / "hf")
    torch_model = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(32, 4, batch_first=True), 1)
    (tmp_path / "tm").mkdir()
    (tmp_path / "tm" / "model.safetensors").write_bytes(b"")  # presence marks a built model
    builtins = {
        "demo-hf": SimpleNamespace(name="demo-hf", folder=tmp_path / "hf", kind="hf", modality="text"),
        "demo-torch": SimpleNamespace(name="demo-torch", folder=tmp_path / "tm", kind="torch", modality="text",
                                      load=lambda: (torch_model, "TOKENIZER")),
        "demo-missing": SimpleNamespace(name="demo-missing", folder=tmp_path / "gone", kind="hf", modality="text"),
    }
    monkeypatch.setattr(hooks.registry, "resolve", builtins.get)
    hf = load_model("demo-hf")
    assert hf.model_id == "demo-hf" and hf.kind == "hf" and hf.is_causal
    tb = load_model("demo-torch")
    assert (tb.kind, tb.model_id, tb.tokenizer, tb.attn_implementation) == ("torch", "demo-torch", "TOKENIZER", None)
    assert tb.model is torch_model and not tb.model.training
    with pytest.raises(LoadError, match="demo-missing.*python -m demos.build demo-missing"):
        load_model("demo-missing")


def test_unknown_hub_id_without_network_fails_fast(monkeypatch):
    import hooks.loading

    monkeypatch.setattr(hooks.loading, "_resolves", lambda host, timeout=3.0: False)
    with pytest.raises(LoadError, match="not in the local Hugging Face cache and huggingface.co cannot be reached"):
        load_model("attnscope-test/no-such-model")


def test_bad_dtype_and_device_are_load_errors(tmp_path):
    tm.save_tiny(tm.tiny_gpt2(), None, tmp_path)
    assert next(load_model(tmp_path, dtype="bfloat16").model.parameters()).dtype == torch.bfloat16
    for bad in ("int8", "float17", torch.int64):
        with pytest.raises(LoadError, match="dtype must be a floating torch dtype"):
            load_model(tmp_path, dtype=bad)
    with pytest.raises(LoadError, match="cannot move the model to device 'nonsense'"):
        load_model(tmp_path, device="nonsense")
