"""PyTorch built-ins: nn.MultiheadAttention (direct), TransformerEncoder/Decoder, nn.Transformer.

References are computed from each module's own projection weights:
A = softmax(Q Kᵀ / sqrt(d) + masks), Q = x W_q + b_q, K = m W_k + b_k, per head.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hooks import capture_attention

E, H = 32, 4


def mha_reference(mha: nn.MultiheadAttention, query, key, *, key_padding_mask=None, attn_mask=None):
    """[batch, heads, q, k] from the module's weights; query/key batch-first [b, L, dim]."""
    if mha._qkv_same_embed_dim:
        w_q, w_k, _ = mha.in_proj_weight.chunk(3)
    else:
        w_q, w_k = mha.q_proj_weight, mha.k_proj_weight
    b_q, b_k, _ = mha.in_proj_bias.chunk(3)
    d = mha.embed_dim // mha.num_heads
    q = (query @ w_q.T + b_q).unflatten(-1, (mha.num_heads, d)).transpose(1, 2)  # [b, h, q, d]
    k = (key @ w_k.T + b_k).unflatten(-1, (mha.num_heads, d)).transpose(1, 2)  # [b, h, k, d]
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)  # [b, h, q, k]
    if attn_mask is not None:
        scores = scores.masked_fill(attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
    return scores.softmax(-1)


def causal(n: int) -> torch.Tensor:
    return torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)  # True = masked


def padding(lengths, n) -> torch.Tensor:
    return torch.arange(n)[None, :] >= torch.tensor(lengths)[:, None]  # [b, n], True = pad


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("kv_dims", [None, (20, 24)])
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("grad", [False, True])
def test_mha_direct(batch_first, kv_dims, train, grad):
    torch.manual_seed(0)
    kdim, vdim = kv_dims or (E, E)
    mha = nn.MultiheadAttention(E, H, batch_first=batch_first, kdim=kdim, vdim=vdim, dropout=0.0)
    mha.train(train)
    x, mem = torch.randn(2, 5, E), torch.randn(2, 7, kdim)
    val = torch.randn(2, 7, vdim)
    kpm = padding([7, 4], 7)
    args = (x, mem, val) if batch_first else (x.transpose(0, 1), mem.transpose(0, 1), val.transpose(0, 1))
    with torch.set_grad_enabled(grad):
        plain_out, plain_avg = mha(*args, key_padding_mask=kpm)
        with capture_attention(mha) as cap:
            out, avg = mha(*args, key_padding_mask=kpm)
            out2, none = mha(*args, key_padding_mask=kpm, need_weights=False)
    assert none is None  # the caller's need_weights=False is honoured
    torch.testing.assert_close(out, plain_out, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(avg, plain_avg, atol=1e-6, rtol=0)  # head-averaged as asked
    assert len(cap.maps) == 2
    m = cap.maps[0]
    assert (m.name, m.layer, m.stack, m.kind) == ("MultiheadAttention", 0, None, "cross")
    with torch.no_grad():
        ref = mha_reference(mha, x, mem, key_padding_mask=kpm)
    torch.testing.assert_close(m.weights, ref, atol=1e-5, rtol=0)
    assert m.weights[1, :, :, 4:].abs().max() == 0  # padding keys get 0
    torch.testing.assert_close(cap.maps[1].weights, ref, atol=1e-5, rtol=0)


def test_mha_self_causal_positional_args_and_unbatched():
    torch.manual_seed(1)
    mha = nn.MultiheadAttention(E, H).eval()
    x = torch.randn(6, E)  # unbatched [L, E]
    mask = causal(6)
    with torch.no_grad(), capture_attention(mha) as cap:
        # positional: query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights
        _, w = mha(x, x, x, None, True, mask, False)
    assert w.shape == (H, 6, 6)  # the caller asked for per-head weights
    m = cap.maps[0]
    assert m.kind == "self" and m.weights.shape == (1, H, 6, 6)
    with torch.no_grad():
        ref = mha_reference(mha, x[None], x[None], attn_mask=mask)
    torch.testing.assert_close(m.weights, ref, atol=1e-5, rtol=0)
    assert torch.triu(m.weights[0, 0], diagonal=1).abs().max() == 0


def test_mha_called_with_keywords_only():
    torch.manual_seed(6)
    mha = nn.MultiheadAttention(E, H, batch_first=True).eval()
    x = torch.randn(1, 4, E)
    with torch.no_grad():
        plain = mha(query=x, key=x, value=x, need_weights=False)[0]
        with capture_attention(mha) as cap:
            out, w = mha(query=x, key=x, value=x, need_weights=False)
        ref = mha_reference(mha, x, x)
    assert w is None and cap.maps[0].kind == "self"
    torch.testing.assert_close(out, plain, atol=1e-6, rtol=0)
    torch.testing.assert_close(cap.maps[0].weights, ref, atol=1e-5, rtol=0)


class _InputSpy:
    """Records the (query, key, masks) each MultiheadAttention call receives, batch-first."""

    def __init__(self, model: nn.Module, batch_first: bool):
        self.calls: dict[str, list] = {}
        self.handles = [
            mod.register_forward_pre_hook(self._hook(name, batch_first), with_kwargs=True)
            for name, mod in model.named_modules() if isinstance(mod, nn.MultiheadAttention)
        ]

    def _hook(self, name, batch_first):
        def hook(mod, args, kwargs):
            q, k = args[0], args[1]
            if not batch_first:
                q, k = q.transpose(0, 1), k.transpose(0, 1)
            self.calls[name] = (q.detach(), k.detach(), kwargs.get("key_padding_mask"), kwargs.get("attn_mask"))
        return hook

    def references(self, model):
        mods = dict(model.named_modules())
        out = {}
        for name, (q, k, kpm, am) in self.calls.items():
            if kpm is not None and kpm.dtype != torch.bool:
                kpm = kpm < 0  # transformer layers hand MHA float masks (-inf = masked)
            if am is not None and am.dtype != torch.bool:
                am = am.expand(q.shape[1], k.shape[1]) if am.dim() == 2 else am
            out[name] = mha_reference(mods[name], q, k, key_padding_mask=kpm, attn_mask=am)
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def _check_against_spy(model, cap, spy):
    refs = spy.references(model)
    got = {m.name: m.weights for m in cap.maps}
    assert set(got) == set(refs)
    for name, ref in refs.items():
        torch.testing.assert_close(got[name], ref, atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore:.*nested tensors is in prototype stage")
@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("causal_mask", [False, True])
def test_transformer_encoder_fast_path_nested_and_padding(train, grad, batch_first, causal_mask):
    torch.manual_seed(2)
    layer = nn.TransformerEncoderLayer(E, H, dim_feedforward=64, dropout=0.0, batch_first=batch_first)
    enc = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=True).train(train)
    x = torch.randn(3, 6, E)
    kpm = padding([6, 4, 2], 6)
    src = x if batch_first else x.transpose(0, 1)
    mask = {"mask": causal(6), "is_causal": True} if causal_mask else {}
    with torch.set_grad_enabled(grad):
        plain = enc(src, src_key_padding_mask=kpm, **mask)  # eval + no_grad: fused fast path, nested tensors
        with _InputSpy(enc, batch_first) as spy, capture_attention(enc) as cap:
            out = enc(src, src_key_padding_mask=kpm, **mask)
    assert torch.backends.mha.get_fastpath_enabled()  # restored
    assert [(m.name, m.layer, m.kind) for m in cap.maps] == [("layers.0.self_attn", 0, "self"),
                                                               ("layers.1.self_attn", 1, "self")]
    for m in cap.maps:
        assert m.weights.shape == (3, H, 6, 6)  # full padded length
        assert m.weights[2, :, :, 2:].abs().max() == 0  # padding keys get 0
        if causal_mask:
            assert torch.triu(m.weights, diagonal=1).abs().max() == 0
    keep = ~kpm if batch_first else (~kpm).T  # [b, S] or [S, b]: real (non-padding) positions
    # the nested fast path writes 0 at padded positions; compare the real positions
    torch.testing.assert_close(out[keep], plain[keep], atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        _check_against_spy(enc, cap, spy)


@pytest.mark.parametrize("train", [False, True])
def test_transformer_decoder_self_and_cross(train):
    torch.manual_seed(3)
    layer = nn.TransformerDecoderLayer(E, H, dim_feedforward=64, dropout=0.0, batch_first=True)
    dec = nn.TransformerDecoder(layer, num_layers=2).train(train)
    tgt, mem = torch.randn(2, 5, E), torch.randn(2, 7, E)
    mkpm = padding([7, 3], 7)
    plain = dec(tgt, mem, tgt_mask=causal(5), memory_key_padding_mask=mkpm, tgt_is_causal=True)
    with _InputSpy(dec, True) as spy, capture_attention(dec) as cap:
        out = dec(tgt, mem, tgt_mask=causal(5), memory_key_padding_mask=mkpm, tgt_is_causal=True)
    torch.testing.assert_close(out, plain, atol=1e-5, rtol=1e-4)
    kinds = [(m.name, m.layer, m.stack, m.kind, tuple(m.weights.shape)) for m in cap.maps]
    assert kinds == [
        ("layers.0.self_attn", 0, None, "self", (2, H, 5, 5)),
        ("layers.0.multihead_attn", 0, None, "cross", (2, H, 5, 7)),
        ("layers.1.self_attn", 1, None, "self", (2, H, 5, 5)),
        ("layers.1.multihead_attn", 1, None, "cross", (2, H, 5, 7)),
    ]
    assert torch.triu(cap.maps[0].weights[0, 0], diagonal=1).abs().max() == 0  # causal
    assert cap.maps[1].weights[1, :, :, 3:].abs().max() == 0  # memory padding
    with torch.no_grad():
        _check_against_spy(dec, cap, spy)


def test_nn_transformer_stacks():
    torch.manual_seed(4)
    model = nn.Transformer(E, H, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=64,
                           dropout=0.0, batch_first=True).eval()
    src, tgt = torch.randn(2, 6, E), torch.randn(2, 4, E)
    skpm = padding([6, 5], 6)
    with torch.no_grad():
        plain = model(src, tgt, tgt_mask=causal(4), src_key_padding_mask=skpm, memory_key_padding_mask=skpm)
        with _InputSpy(model, True) as spy, capture_attention(model) as cap:
            out = model(src, tgt, tgt_mask=causal(4), src_key_padding_mask=skpm, memory_key_padding_mask=skpm)
        _check_against_spy(model, cap, spy)
    torch.testing.assert_close(out, plain, atol=1e-5, rtol=1e-4)
    summary = [(m.stack, m.layer, m.kind) for m in cap.maps]
    assert summary == [("encoder", 0, "self"), ("encoder", 1, "self"),
                       ("decoder", 0, "self"), ("decoder", 0, "cross"),
                       ("decoder", 1, "self"), ("decoder", 1, "cross")]


def test_mha_inside_custom_module_layer_filter():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(nn.MultiheadAttention(E, H, batch_first=True) for _ in range(3))

        def forward(self, x):
            for b in self.blocks:
                x = x + b(x, x, x, need_weights=False)[0]
            return x

    torch.manual_seed(5)
    model = Block().eval()
    with torch.no_grad(), capture_attention(model, layers=[2, 0]) as cap:
        model(torch.randn(1, 4, E))
    assert [m.name for m in cap.maps] == ["blocks.0", "blocks.2"]


def test_two_unnamed_towers_get_distinct_layers():
    class Towers(nn.Module):
        def __init__(self):
            super().__init__()
            self.left = nn.ModuleList(nn.MultiheadAttention(E, H, batch_first=True) for _ in range(2))
            self.right = nn.ModuleList(nn.MultiheadAttention(E, H, batch_first=True) for _ in range(2))

        def forward(self, x):
            for m in [*self.left, *self.right]:
                x = m(x, x, x)[0]
            return x

    model = Towers().eval()
    with torch.no_grad(), capture_attention(model) as cap:
        model(torch.randn(1, 3, E))
    assert [(m.name, m.layer, m.stack) for m in cap.maps] == [
        ("left.0", 0, None), ("left.1", 1, None), ("right.0", 2, None), ("right.1", 3, None)]
