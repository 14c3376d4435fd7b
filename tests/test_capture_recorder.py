"""The recorder interface (hooks._recorder), nested captures, and smaller capture paths."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from hooks import Capture, capture_attention
from hooks._recorder import Recorder
from tests import tiny_models as tm


class EntropyRecorder(Recorder):
    """A statistics-only recorder: per-head mean row entropy -Σ a log a from query/key, output via sdpa,
    never storing [batch, heads, q, k]. Shapes as documented in hooks._recorder."""

    def __init__(self):
        super().__init__()
        self.entropy: dict[str, torch.Tensor] = {}

    def hf_attention(self, site, module, query, key, value, attention_mask, eager, *, scaling, dropout=0.0, **kw):
        scores = query @ key.transpose(-1, -2) * scaling  # [batch, heads, q, k]
        if attention_mask is not None:
            scores = scores + attention_mask
        logp = scores.log_softmax(-1)
        self.entropy[site.name] = -(logp.exp() * logp).sum(-1).mean(-1)  # [batch, heads]
        out = nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=scaling)
        return out.transpose(1, 2), None  # [batch, q, heads, d]

    def is_empty(self):
        return not self.entropy


def test_a_statistics_recorder_replaces_the_weights_recorder():
    model = tm.tiny_bert()
    inputs = tm.text_inputs(tm.tiny_tokenizer())
    with torch.no_grad():
        plain = model(**inputs).logits
        with capture_attention(model) as full:
            model(**inputs)
        rec = EntropyRecorder()
        with Capture(model, rec) as cap:
            stats_out = model(**inputs).logits
    assert cap.maps == [] and set(rec.entropy) == {m.name for m in full.maps}
    torch.testing.assert_close(stats_out, plain, atol=1e-5, rtol=1e-4)
    for m in full.maps:
        w = m.weights
        ref = -(w * w.clamp_min(1e-30).log()).sum(-1).mean(-1)  # [batch, heads]
        torch.testing.assert_close(rec.entropy[m.name], ref, atol=1e-4, rtol=0)


def test_nested_captures_both_record():
    model = tm.tiny_gpt2()
    ids = torch.tensor([[7, 8, 9, 10]])
    with torch.no_grad(), capture_attention(model) as outer:
        model(input_ids=ids)
        with capture_attention(model, layers=[1]) as inner:
            model(input_ids=ids)
    assert [m.layer for m in inner.maps] == [1]
    assert [m.layer for m in outer.maps] == [0, 1, 0, 1]
    torch.testing.assert_close(outer.maps[3].weights, inner.maps[0].weights)
    assert model.config._attn_implementation == "sdpa"


def test_module_that_delegates_to_the_interface_is_still_captured():
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    def attend(module, q, k, v):  # the interface is called from a helper, not from forward itself
        fn = ALL_ATTENTION_FUNCTIONS.get_interface(module.config._attn_implementation, None)
        return fn(module, q, k, v, None, scaling=q.shape[-1] ** -0.5)[0]

    class Helper(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.config, self.is_causal = config, False
            self.qkv = nn.Linear(32, 96)

        def forward(self, x):
            q, k, v = (t.unflatten(-1, (4, 8)).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))  # [b, h, n, d]
            return attend(self, q, k, v)

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = tm.tiny_bert().config
            self.blocks = nn.ModuleList([tm.tiny_bert().bert.encoder.layer[0].attention.self, Helper(self.config)])

        def forward(self, x):
            return self.blocks[1](self.blocks[0](x)[0])

    model = Wrapper().eval()
    with torch.no_grad(), capture_attention(model) as cap:
        model(torch.randn(1, 5, 32))
    assert [(m.name, m.layer, m.weights.shape) for m in cap.maps] == [
        ("blocks.0", 0, (1, 4, 5, 5)), ("blocks.1", 1, (1, 4, 5, 5))]


@pytest.mark.parametrize("batch_first", [True, False])
def test_keep_graph_with_multihead_attention(batch_first):
    """live.grad = dL/dA, checked against autograd through an explicit A -> output computation."""
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(32, 4, batch_first=batch_first, kdim=20, vdim=24)
    x, mem, val = torch.randn(2, 5, 32), torch.randn(2, 7, 20), torch.randn(2, 7, 24)
    args = (x, mem, val) if batch_first else (x.transpose(0, 1), mem.transpose(0, 1), val.transpose(0, 1))
    plain, _ = mha(*args)
    with capture_attention(mha, keep_graph=True) as cap:
        out, _ = mha(*args)
    torch.testing.assert_close(out, plain, atol=1e-5, rtol=1e-4)
    out.pow(2).sum().backward()
    live = cap.maps[0].live
    assert live is not None and live.grad is not None and live.grad.shape == (2, 4, 5, 7)
    a = cap.maps[0].weights.clone().requires_grad_(True)  # [b, h, q, k]
    v = (val @ mha.v_proj_weight.T + mha.in_proj_bias[64:]).unflatten(-1, (4, 8)).transpose(1, 2)  # [b, h, k, d]
    ref = mha.out_proj((a @ v).transpose(1, 2).flatten(2))  # [b, q, E]
    ref.pow(2).sum().backward()
    torch.testing.assert_close(live.grad, a.grad, atol=1e-5, rtol=1e-4)


def test_gpt2_upcast_and_reorder_path_is_exact():
    model = tm.tiny_gpt2(reorder_and_upcast_attn=True)
    ids = torch.tensor([[7, 8, 9, 10, 11]])
    ref = model.__class__(model.config).eval()
    ref.load_state_dict(model.state_dict())
    ref.set_attn_implementation("eager")
    with torch.no_grad():
        expected = ref(input_ids=ids, output_attentions=True).attentions
        with capture_attention(model) as cap:
            model(input_ids=ids)
    for m, r in zip(cap.maps, expected):
        torch.testing.assert_close(m.weights, r, atol=1e-6, rtol=0)


def test_terminal_demo_prints_shapes_and_row_sums(capsys):
    from hooks.demo import main

    assert main([]) == 0
    out = capsys.readouterr().out
    assert "weights (1, 4, 7, 7)" in out and out.count("row sums in [1.000000, 1.000000]") == 2
