"""Hugging Face capture: weights equal transformers' eager output_attentions, outputs unchanged."""
from __future__ import annotations

import copy

import pytest
import torch

from hooks import CaptureError, capture_attention
from tests import tiny_models as tm

ARCHS = ["bert", "gpt2", "llama", "t5", "bart", "vit", "clip", "vision_encoder_decoder"]
DEC_IDS = torch.tensor([[6, 10, 11], [6, 12, 13]])


def build(arch: str):
    """(model, inputs) for `arch`; text inputs are a padded batch of two."""
    model = getattr(tm, f"tiny_{arch}")()
    if arch == "vit":
        return model, {"pixel_values": tm.pixel_inputs()}
    if arch == "vision_encoder_decoder":
        return model, {"pixel_values": tm.pixel_inputs(), "decoder_input_ids": DEC_IDS}
    tok = tm.tiny_tokenizer(template="bert" if arch == "bert" else None)
    inputs = dict(tm.text_inputs(tok))
    if arch == "clip":
        inputs["pixel_values"] = tm.pixel_inputs()
    if arch in ("t5", "bart"):
        inputs["decoder_input_ids"] = DEC_IDS
    return model, inputs


def eager_reference(model, inputs) -> dict[tuple, list[torch.Tensor]]:
    """transformers' own eager output_attentions, keyed (stack, kind) -> per-layer [batch, heads, q, k]."""
    ref_model = copy.deepcopy(model)
    ref_model.set_attn_implementation("eager")
    with torch.no_grad():
        out = ref_model(**inputs, output_attentions=True)
    if hasattr(out, "text_model_output"):  # CLIP: two towers
        return {("text", "self"): list(out.text_model_output.attentions),
                ("vision", "self"): list(out.vision_model_output.attentions)}
    if getattr(out, "cross_attentions", None):
        return {("encoder", "self"): list(out.encoder_attentions),
                ("decoder", "self"): list(out.decoder_attentions),
                ("decoder", "cross"): list(out.cross_attentions)}
    return {(None, "self"): list(out.attentions)}


def grouped(maps) -> dict[tuple, list[torch.Tensor]]:
    groups: dict[tuple, list] = {}
    for m in sorted(maps, key=lambda m: m.layer):
        groups.setdefault((m.stack, m.kind), []).append(m.weights)
    return groups


def _first_tensor(out) -> torch.Tensor:
    return out.logits if getattr(out, "logits", None) is not None else out.logits_per_image


@pytest.mark.parametrize("arch", ARCHS)
def test_weights_equal_eager_and_outputs_unchanged(arch):
    model, inputs = build(arch)
    assert model.config._attn_implementation == "sdpa"
    with torch.no_grad():
        plain = model(**inputs)
        with capture_attention(model) as cap:
            captured = model(**inputs)
    assert model.config._attn_implementation == "sdpa"  # restored
    ref = eager_reference(model, inputs)
    got = grouped(cap.maps)
    assert set(got) == set(ref)
    for key, layers in ref.items():
        assert len(got[key]) == len(layers) == 2, key
        for w, r in zip(got[key], layers):
            assert w.dtype == torch.float32 and w.device.type == "cpu" and not w.requires_grad
            assert w.shape == r.shape
            torch.testing.assert_close(w, r.float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(_first_tensor(captured), _first_tensor(plain), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "arch,expected",
    [
        ("bert", {"bert.encoder.layer.1.attention.self": (None, 1, "self")}),
        ("t5", {"decoder.block.1.layer.1.EncDecAttention": ("decoder", 1, "cross"),
                "encoder.block.0.layer.0.SelfAttention": ("encoder", 0, "self")}),
        ("bart", {"model.decoder.layers.0.encoder_attn": ("decoder", 0, "cross")}),
        ("clip", {"text_model.encoder.layers.1.self_attn": ("text", 1, "self"),
                  "vision_model.encoder.layers.0.self_attn": ("vision", 0, "self")}),
        ("vision_encoder_decoder", {"decoder.transformer.h.1.crossattention": ("decoder", 1, "cross")}),
    ],
)
def test_names_stacks_layers_kinds(arch, expected):
    model, inputs = build(arch)
    with torch.no_grad(), capture_attention(model) as cap:
        model(**inputs)
    seen = {m.name: (m.stack, m.layer, m.kind) for m in cap.maps}
    for name, info in expected.items():
        assert seen[name] == info


def test_forward_order_and_shapes_t5():
    model, inputs = build("t5")
    with torch.no_grad(), capture_attention(model) as cap:
        model(**inputs)
    order = [(m.stack, m.layer, m.kind) for m in cap.maps]
    assert order == [("encoder", 0, "self"), ("encoder", 1, "self"),
                     ("decoder", 0, "self"), ("decoder", 0, "cross"),
                     ("decoder", 1, "self"), ("decoder", 1, "cross")]
    assert cap.maps[3].weights.shape == (2, 4, 3, 6)  # [batch, heads, dec q, enc k]


def test_layer_and_head_filters_and_dtype():
    model, inputs = build("bert")
    with torch.no_grad(), capture_attention(model) as full:
        model(**inputs)
    with torch.no_grad(), capture_attention(model, layers=[1], heads=[3, 0], dtype=torch.bfloat16) as cap:
        model(**inputs)
    assert [m.layer for m in cap.maps] == [1]
    w = cap.maps[0].weights
    assert w.dtype == torch.bfloat16 and w.shape == (2, 2, 8, 8)
    ref = full.maps[1].weights[:, [0, 3]]  # heads are stored sorted
    torch.testing.assert_close(w.float(), ref, atol=1e-2, rtol=0)


@pytest.mark.parametrize("arch", ["bert", "t5"])
def test_filtered_out_layers_run_as_loaded_not_eager(arch, monkeypatch):
    """A layer filter keeps the other layers on the model's own (sdpa) path: no [q, k] map per head is
    built for them (what keeps opening one layer of a long input cheap), and the outputs do not change."""
    import hooks._hf as hf

    model, inputs = build(arch)
    with torch.no_grad():
        plain = _first_tensor(model(**inputs))
    eager_calls = []
    original = hf.module_eager

    def counting(module):
        fn = original(module)

        def wrapped(*args, **kwargs):
            eager_calls.append(module)
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(hf, "module_eager", counting)
    with torch.no_grad(), capture_attention(model, layers=[1]) as cap:
        out = _first_tensor(model(**inputs))
    torch.testing.assert_close(out, plain, atol=1e-5, rtol=1e-5)
    assert cap.maps and {m.layer for m in cap.maps} == {1}
    assert len(eager_calls) == len(cap.maps)  # eager ran exactly for the captured modules


def test_padding_keys_get_zero_weight():
    model, inputs = build("bert")
    with torch.no_grad(), capture_attention(model) as cap:
        model(**inputs)
    pad = inputs["attention_mask"][1] == 0  # second text is shorter
    assert pad.any()
    w = cap.maps[0].weights[1]  # [heads, q, k]
    assert torch.all(w[..., pad] < 1e-6)
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]), atol=1e-5, rtol=0)


def test_keep_graph_gives_gradients_of_attention():
    model, inputs = build("bert")
    with capture_attention(model, keep_graph=True) as cap:
        out = model(**inputs)
    out.logits.sum().backward()
    for m in cap.maps:
        assert m.live is not None and m.live.grad is not None
        assert m.live.grad.shape == m.weights.shape
        assert m.live.grad.abs().sum() > 0
    with capture_attention(model) as plain:
        model(**inputs)
    assert all(m.live is None for m in plain.maps)


def test_train_mode_with_dropout_records_what_eager_returns():
    """Train mode: the recorded weights are the post-dropout probabilities eager returns (same RNG)."""
    model, inputs = build("bert")
    model.train()
    ref_model = copy.deepcopy(model)
    ref_model.set_attn_implementation("eager")
    torch.manual_seed(123)
    with capture_attention(model) as cap:
        model(**inputs)
    torch.manual_seed(123)
    ref = ref_model(**inputs, output_attentions=True).attentions
    for m, r in zip(cap.maps, ref, strict=True):
        torch.testing.assert_close(m.weights, r.detach(), atol=1e-6, rtol=0)
    assert (cap.maps[0].weights.sum(-1) - 1).abs().max() > 1e-3  # dropout was applied: rows no longer sum to 1


def test_layers_matching_nothing_raises():
    model, inputs = build("gpt2")
    with pytest.raises(CaptureError, match=r"GPT2LMHeadModel.*layers=\[7\].*\[0, 1\]"):
        with torch.no_grad(), capture_attention(model, layers=[7]):
            model(**inputs)
    assert model.config._attn_implementation == "sdpa"


def test_model_not_called_raises():
    model, _ = build("bert")
    with pytest.raises(CaptureError, match="none of its attention modules ran"):
        with capture_attention(model):
            pass


def test_bad_head_index_is_a_clear_error():
    model, inputs = build("bert")
    with pytest.raises(ValueError, match="heads=.*out of range"):
        with torch.no_grad(), capture_attention(model, heads=[9]):
            model(**inputs)
    assert model.config._attn_implementation == "sdpa"


def test_eager_loaded_model_also_restored():
    model, inputs = build("llama")
    model.set_attn_implementation("eager")
    with torch.no_grad(), capture_attention(model) as cap:
        model(**inputs)
    assert model.config._attn_implementation == "eager" and len(cap.maps) == 2


@pytest.mark.parametrize("kw", [{"layers": 1}, {"layers": ["0"]}, {"heads": 2}, {"heads": [True]}])
def test_filters_must_be_iterables_of_ints(kw):
    model, _ = build("bert")
    with pytest.raises(TypeError, match="must (be an iterable of|contain) ints"):
        capture_attention(model, **kw)


def _other(name):
    """Tiny configs of architectures beyond the issue's list (any model using the interface works)."""
    import transformers as T

    text = dict(vocab_size=tm.VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
    return {
        "distilbert": lambda: T.DistilBertModel(T.DistilBertConfig(vocab_size=tm.VOCAB, dim=32, n_layers=2, n_heads=4,
                                                                    hidden_dim=37)),
        "qwen2": lambda: T.Qwen2ForCausalLM(T.Qwen2Config(**text, num_key_value_heads=2)),
        "gemma2": lambda: T.Gemma2ForCausalLM(T.Gemma2Config(**text, num_key_value_heads=2, head_dim=8)),
        "mbart": lambda: T.MBartForConditionalGeneration(T.MBartConfig(
            vocab_size=tm.VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37)),
        "deit": lambda: T.DeiTModel(T.DeiTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                  intermediate_size=37, image_size=32, patch_size=8)),
    }[name]


@pytest.mark.parametrize("name", ["distilbert", "qwen2", "gemma2", "mbart", "deit"])
def test_other_interface_architectures(name):
    torch.manual_seed(0)
    model = _other(name)().eval()
    if name == "deit":
        inputs = {"pixel_values": tm.pixel_inputs()}
    else:
        inputs = {"input_ids": torch.tensor([[7, 8, 9, 10], [11, 12, 13, 14]]),
                  "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])}
        if name == "mbart":
            inputs["decoder_input_ids"] = DEC_IDS
    with torch.no_grad(), capture_attention(model) as cap:
        model(**inputs)
    ref = eager_reference(model, inputs)
    got = grouped(cap.maps)
    assert set(got) == set(ref)
    for key, layers in ref.items():
        for w, r in zip(got[key], layers, strict=True):
            torch.testing.assert_close(w, r.float(), atol=1e-5, rtol=0)


def test_stage_and_block_paths_get_distinct_layers():
    """Swin-style "layers.<stage>.blocks.<block>" paths: the first integer repeats, so layers are numbered
    in path order (Swin maps are per window: [batch * windows, heads, window², window²])."""
    from transformers import SwinConfig, SwinModel

    torch.manual_seed(0)
    model = SwinModel(SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[2, 2], num_heads=[2, 4],
                                 window_size=4)).eval()
    with torch.no_grad(), capture_attention(model) as cap:
        model(pixel_values=tm.pixel_inputs())
    assert [(m.name.split(".")[2], m.name.split(".")[4], m.layer) for m in cap.maps] == [
        ("0", "0", 0), ("0", "1", 1), ("1", "0", 2), ("1", "1", 3)]
    with torch.no_grad(), capture_attention(model, layers=[3]) as one:
        model(pixel_values=tm.pixel_inputs())
    assert [m.name for m in one.maps] == [cap.maps[3].name]
