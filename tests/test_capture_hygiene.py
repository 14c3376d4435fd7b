"""Hygiene and concurrency: everything restored after exit (also on errors), threads never mix records."""
from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from hooks import CaptureError, capture_attention
from hooks import _context, _engine
from tests import tiny_models as tm


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


class Boom(RuntimeError):
    pass


def _raise_on_call(module, args):
    raise Boom("halfway")


def assert_clean(model, impl="sdpa"):
    assert hook_count(model) == 0
    assert not _engine._INSTALLED and not _engine._CONFIGS and not _engine._HOOKS
    assert _context.ACTIVE.get() is None
    assert torch.backends.mha.get_fastpath_enabled()
    if impl is not None:
        assert model.config._attn_implementation == impl
        for cfg in _engine._hf.configs_of(model):
            assert cfg._attn_implementation == impl


def test_hf_model_raising_halfway_restores_everything():
    model = tm.tiny_vision_encoder_decoder()  # several configs (top, encoder, decoder)
    inputs = {"pixel_values": tm.pixel_inputs(), "decoder_input_ids": torch.tensor([[5, 9], [5, 10]])}
    boom = model.decoder.transformer.h[1].register_forward_pre_hook(_raise_on_call)
    with pytest.raises(Boom):
        with torch.no_grad(), capture_attention(model):
            model(**inputs)
    boom.remove()
    assert_clean(model)
    with torch.no_grad(), capture_attention(model) as cap:  # the next capture works
        model(**inputs)
    assert len(cap.maps) == 6
    assert_clean(model)


def test_torch_model_raising_halfway_restores_fast_path_and_hooks():
    model = nn.Transformer(32, 4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=64,
                           batch_first=True).eval()
    boom = model.decoder.layers[0].register_forward_pre_hook(_raise_on_call)
    src, tgt = torch.randn(1, 5, 32), torch.randn(1, 3, 32)
    with pytest.raises(Boom):
        with torch.no_grad(), capture_attention(model):
            assert not torch.backends.mha.get_fastpath_enabled()  # off during the capture
            model(src, tgt)
    boom.remove()
    assert_clean(model, impl=None)
    with torch.no_grad(), capture_attention(model) as cap:
        model(src, tgt)
    assert len(cap.maps) == 6


def test_model_without_attention_raises_at_enter():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    with pytest.raises(CaptureError, match="Sequential has no attention module"):
        with capture_attention(model):
            pass
    assert_clean(model, impl=None)


def test_uncapturable_attention_is_an_error_not_a_partial_result():
    class FusedAttention(nn.Module):  # computes attention in a kernel that exposes no weights
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(32, 96)

        def forward(self, x):
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            return nn.functional.scaled_dot_product_attention(q, k, v)

    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = nn.MultiheadAttention(32, 4, batch_first=True)
            self.fused = FusedAttention()

        def forward(self, x):
            return self.fused(self.mha(x, x, x)[0])

    model = Mixed().eval()
    with pytest.raises(CaptureError, match=r"Mixed: attention modules ran whose weights cannot be observed \(fused"):
        with torch.no_grad(), capture_attention(model):
            model(torch.randn(1, 3, 32))
    assert_clean(model, impl=None)


def test_not_a_module_is_a_clear_error():
    with pytest.raises(TypeError, match="needs a torch.nn.Module"):
        capture_attention("bert-base-uncased")


def _run_threads(fn, n):
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def wrap(i):
        try:
            barrier.wait()
            fn(i)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_concurrent_captures_on_one_hf_model_never_mix():
    model = tm.tiny_gpt2()
    n = 6
    inputs = [torch.randint(7, 60, (1, 4 + i)) for i in range(n)]  # different lengths and tokens
    with torch.no_grad():
        refs = []
        for ids in inputs:
            with capture_attention(model) as cap:
                model(input_ids=ids)
            refs.append([m.weights for m in cap.maps])
        plain = [model(input_ids=ids).logits for ids in inputs]
    results: dict[int, list] = {}
    uncaptured: dict[int, torch.Tensor] = {}

    def work(i):
        with torch.no_grad():
            for _ in range(3):
                if i == n - 1:  # one thread uses the shared model with no capture at all
                    uncaptured[i] = model(input_ids=inputs[i]).logits
                    continue
                with capture_attention(model) as cap:
                    model(input_ids=inputs[i])
                results.setdefault(i, []).append([m.weights for m in cap.maps])

    _run_threads(work, n)
    for i, runs in results.items():
        for maps in runs:
            assert len(maps) == 2
            for got, ref in zip(maps, refs[i]):
                torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(uncaptured[n - 1], plain[n - 1], atol=1e-5, rtol=1e-4)
    assert_clean(model)


def test_concurrent_captures_on_one_torch_encoder_never_mix():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, dropout=0.0, batch_first=True)
    model = nn.TransformerEncoder(layer, num_layers=2).eval()
    n = 4
    inputs = [torch.randn(1, 3 + i, 32) for i in range(n)]
    with torch.no_grad():
        refs = []
        for x in inputs:
            with capture_attention(model) as cap:
                model(x)
            refs.append([m.weights for m in cap.maps])
    results: dict[int, list] = {}

    def work(i):
        with torch.no_grad():
            for _ in range(3):
                with capture_attention(model) as cap:
                    model(inputs[i])
                results.setdefault(i, []).append([m.weights for m in cap.maps])

    _run_threads(work, n)
    assert sorted(results) == list(range(n))
    for i, runs in results.items():
        for maps in runs:
            for got, ref in zip(maps, refs[i]):
                torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
    assert_clean(model, impl=None)


def test_overlapping_captures_of_a_model_and_its_submodule():
    """Per-object refcounts: hooks installed once, no double records, restored by whichever exits last."""
    model = nn.Transformer(32, 4, num_encoder_layers=2, num_decoder_layers=1, dim_feedforward=64,
                           batch_first=True).eval()
    src, tgt = torch.randn(1, 5, 32), torch.randn(1, 3, 32)
    outer = capture_attention(model)
    inner = capture_attention(model.encoder)
    with torch.no_grad():
        outer.__enter__()
        inner.__enter__()
        assert sum(len(m._forward_pre_hooks) for m in model.modules()) == 4  # one per MHA module (2 encoder, 2 decoder)
        model(src, tgt)
        outer.__exit__(None, None, None)  # out of order: the outer block ends first
        assert not torch.backends.mha.get_fastpath_enabled() and hook_count(model.encoder) == 4
        model(src, tgt)
        inner.__exit__(None, None, None)
    assert [m.name for m in outer.maps] == ["encoder.layers.0.self_attn", "encoder.layers.1.self_attn",
                                            "decoder.layers.0.self_attn", "decoder.layers.0.multihead_attn"]
    assert [m.name for m in inner.maps] == ["layers.0.self_attn", "layers.1.self_attn"] * 2
    torch.testing.assert_close(inner.maps[0].weights, outer.maps[0].weights)
    assert_clean(model, impl=None)


def test_overlapping_hf_captures_restore_the_implementation():
    model = tm.tiny_gpt2()
    ids = torch.tensor([[7, 8, 9]])
    a, b = capture_attention(model), capture_attention(model.transformer)
    with torch.no_grad():
        a.__enter__()
        b.__enter__()
        model(input_ids=ids)
        a.__exit__(None, None, None)
        assert model.config._attn_implementation == "attnscope"  # b still captures
        model(input_ids=ids)
        b.__exit__(None, None, None)
    assert [m.name for m in a.maps] == ["transformer.h.0.attn", "transformer.h.1.attn"]
    assert [m.name for m in b.maps] == ["h.0.attn", "h.1.attn"] * 2
    assert_clean(model)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_uncaptured_thread_runs_the_original_implementation(impl, monkeypatch):
    """While one context captures, another thread using the model with no capture gets its normal
    outputs, through the implementation the model was loaded with."""
    import transformers.integrations.sdpa_attention as sdpa_mod

    calls = []
    real = sdpa_mod.sdpa_attention_forward
    monkeypatch.setattr(sdpa_mod, "sdpa_attention_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = tm.tiny_llama()
    model.set_attn_implementation(impl)
    ids = torch.tensor([[7, 8, 9, 10], [11, 12, 13, 14]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]])
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask).logits
        calls.clear()
        out: list = []
        with capture_attention(model) as cap:
            model(input_ids=ids, attention_mask=mask)
            worker = threading.Thread(target=lambda: out.append(model(input_ids=ids, attention_mask=mask).logits))
            worker.start()
            worker.join()
    assert len(cap.maps) == 2  # the other thread's calls were not recorded here
    real_rows = mask.bool()  # [batch, seq]: a padding query's output is arbitrary (fully masked row)
    torch.testing.assert_close(out[0][real_rows], plain[real_rows], atol=1e-5, rtol=1e-4)
    assert (len(calls) == 2) == (impl == "sdpa")
    assert not _engine._hf._ORIGINALS
    assert_clean(model, impl=impl)


def test_hf_architecture_with_inline_attention_names_class_and_what_to_try():
    from transformers import BloomConfig, BloomModel

    model = BloomModel(BloomConfig(vocab_size=tm.VOCAB, hidden_size=32, n_layer=2, n_head=4)).eval()
    before = model.config._attn_implementation
    with pytest.raises(CaptureError, match=r"BloomModel has no attention module .*h\.0\.self_attention.*"
                                           r"output_attentions=True.*Try"):
        with torch.no_grad(), capture_attention(model):
            model(input_ids=torch.tensor([[7, 8, 9]]))
    assert_clean(model, impl=before)


def test_concurrent_generation_captures_stitch_their_own_sequences():
    model = tm.tiny_llama()
    prompts = [torch.tensor([[7 + i, 20 + i, 30 + 2 * i]]) for i in range(4)]
    with torch.no_grad():
        refs = []
        for ids in prompts:
            with capture_attention(model) as cap:
                model.generate(input_ids=ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)
            refs.append([m.weights for m in cap.stitched()])
    results: dict[int, list] = {}

    def work(i):
        with torch.no_grad(), capture_attention(model) as cap:
            model.generate(input_ids=prompts[i], max_new_tokens=4, min_new_tokens=4, do_sample=False)
        results[i] = [m.weights for m in cap.stitched()]

    _run_threads(work, len(prompts))
    for i, maps in results.items():
        for got, ref in zip(maps, refs[i], strict=True):
            torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
    assert_clean(model)
