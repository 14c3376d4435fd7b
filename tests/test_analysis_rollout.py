"""analysis rollout family: attention_rollout, gradient_rollout, encoder_decoder_relevance and the
row helpers, against hand-computed cases and plain-numpy references."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import (
    attention_rollout,
    encoder_decoder_relevance,
    gradient_rollout,
    rollout_cls_to_patches,
    rollout_from_query,
)


def _layers(n_layers, b, h, q, seed, k=None):
    g = torch.Generator().manual_seed(seed)
    return [torch.softmax(torch.randn(b, h, q, k or q, generator=g) * 2, dim=-1) for _ in range(n_layers)]


def np_rollout(layers, fusion="mean", residual=0.5, discard=0.0, start=0):
    """Reference rollout for one batch item: layers list of [H, n, n] numpy arrays."""
    n = layers[0].shape[-1]
    r = np.eye(n)
    for a in layers[start:]:
        f = {"mean": a.mean(0), "max": a.max(0), "min": a.min(0)}[fusion].copy()
        drop = int(discard * n)
        for i in range(n):
            cand = sorted((f[i, j], j) for j in range(n) if j != i)[:drop]
            for _, j in cand:
                f[i, j] = 0.0
        t = (1 - residual) * f + residual * np.eye(n)
        t = t / t.sum(axis=1, keepdims=True)
        r = t @ r
    return r


def test_hand_computed_two_layers():
    a1 = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])  # everyone looks at token 1
    a2 = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])  # everyone looks at token 0
    # Ã1 = [[.5, .5], [0, 1]], Ã2 = [[1, 0], [.5, .5]]; R = Ã2 @ Ã1
    expected = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    torch.testing.assert_close(attention_rollout([a1, a2])[0], expected)
    torch.testing.assert_close(attention_rollout([a1, a2], start_layer=1)[0], torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
    torch.testing.assert_close(attention_rollout([a1], residual=0.0)[0], a1[0, 0])
    torch.testing.assert_close(attention_rollout([a1], residual=1.0)[0], torch.eye(2))


def test_rows_normalised_not_columns():
    # a row-stochastic but not column-stochastic map: normalising columns would change the answer
    a = torch.tensor([[[[0.9, 0.1, 0.0], [0.8, 0.1, 0.1], [0.7, 0.2, 0.1]]]])
    r = attention_rollout([a])[0]
    torch.testing.assert_close(r.sum(-1), torch.ones(3))
    torch.testing.assert_close(r, 0.5 * a[0, 0] + 0.5 * torch.eye(3))


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("residual,discard,start", [(0.5, 0.0, 0), (0.3, 0.4, 1), (0.8, 0.9, 0)])
def test_matches_numpy_reference(fusion, residual, discard, start):
    layers = _layers(3, 2, 4, 6, seed=7)
    got = attention_rollout(layers, head_fusion=fusion, residual=residual, discard_ratio=discard, start_layer=start)
    for bi in range(2):
        ref = np_rollout([w[bi].double().numpy() for w in layers], fusion, residual, discard, start)
        np.testing.assert_allclose(got[bi].numpy(), ref, rtol=1e-5, atol=1e-6)


def test_discard_never_drops_the_diagonal():
    # the diagonal is the smallest entry of every row; discard_ratio 0.5 drops 2 of the 4 entries
    a = torch.tensor([[0.01, 0.5, 0.3, 0.19], [0.5, 0.01, 0.3, 0.19], [0.5, 0.3, 0.01, 0.19], [0.5, 0.3, 0.19, 0.01]])
    r = attention_rollout([a[None, None]], residual=0.0, discard_ratio=0.5)[0]
    expected = torch.zeros(4, 4)
    expected.diagonal().fill_(0.01 / 0.51)
    expected[1:, 0] = 0.5 / 0.51
    expected[0, 1] = 0.5 / 0.51
    torch.testing.assert_close(r, expected)


def test_key_mask_matches_the_unpadded_sequence():
    n, pad = 5, 2
    key_mask = torch.tensor([[True] * n + [False] * pad])
    g = torch.Generator().manual_seed(8)
    layers = []
    for _ in range(3):
        logits = torch.randn(1, 2, n + pad, n + pad, generator=g)
        logits[..., n:] = -1e9  # real rows never see padding keys
        layers.append(torch.softmax(logits, dim=-1))
    padded = attention_rollout(layers, key_mask=key_mask)[0]
    plain = attention_rollout([w[..., :n, :n] / w[..., :n, :n].sum(-1, keepdim=True) for w in layers])[0]
    torch.testing.assert_close(padded[:n, :n], plain)
    assert padded[n:].abs().max() == 0 and padded[:, n:].abs().max() == 0


def test_rollout_errors_are_clear():
    sq = _layers(2, 1, 2, 3, seed=0)
    with pytest.raises(ValueError, match="head_fusion"):
        attention_rollout(sq, head_fusion="median")
    with pytest.raises(ValueError, match="residual"):
        attention_rollout(sq, residual=1.5)
    with pytest.raises(ValueError, match="start_layer"):
        attention_rollout(sq, start_layer=2)
    with pytest.raises(ValueError, match="q == k"):
        attention_rollout(_layers(1, 1, 2, 3, seed=0, k=4))


def np_gradient_rollout(attn, grads, start=0):
    n = attn[0].shape[-1]
    r = np.eye(n)
    for a, g in zip(attn[start:], grads[start:]):
        bar = np.maximum(a * g, 0).mean(0)
        r = r + bar @ r
    return r


def test_gradient_rollout_reference_and_layer_pairing():
    attn = _layers(3, 2, 4, 5, seed=9)
    g = torch.Generator().manual_seed(10)
    grads = [torch.randn(w.shape, generator=g) for w in attn]
    got = gradient_rollout(attn, grads)
    for bi in range(2):
        ref = np_gradient_rollout([w[bi].double().numpy() for w in attn], [x[bi].double().numpy() for x in grads])
        np.testing.assert_allclose(got[bi].numpy(), ref, rtol=1e-5, atol=1e-6)
    # the reverse-order bug (gradients from backward hooks not re-ordered) gives a different map
    assert not torch.allclose(gradient_rollout(attn, grads[::-1]), got)
    normed = gradient_rollout(attn, grads, normalize=True)
    torch.testing.assert_close(normed.sum(-1), torch.ones(2, 5))
    start = gradient_rollout(attn, grads, start_layer=2)[0]
    ref = np_gradient_rollout([w[0].double().numpy() for w in attn], [x[0].double().numpy() for x in grads], start=2)
    np.testing.assert_allclose(start.numpy(), ref, rtol=1e-5, atol=1e-6)


def test_gradient_rollout_hand_case_with_unit_gradients():
    a1 = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    a2 = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    ones = [torch.ones_like(a1), torch.ones_like(a2)]
    # R = (I + A2)(I + A1) = [[2, 0], [1, 1]] @ [[1, 1], [0, 2]] = [[2, 2], [1, 3]]
    torch.testing.assert_close(gradient_rollout([a1, a2], ones)[0], torch.tensor([[2.0, 2.0], [1.0, 3.0]]))


def test_gradient_rollout_errors():
    attn = _layers(2, 1, 2, 3, seed=0)
    with pytest.raises(ValueError, match="2 layers|has 1 layers"):
        gradient_rollout(attn, attn[:1])
    with pytest.raises(ValueError, match="its own layer"):
        gradient_rollout(attn, [torch.ones(1, 3, 3, 3)] * 2)


def np_enc_dec(enc, dec, cross, enc_g=None, dec_g=None, cross_g=None):
    """Reference for one batch item of the documented Chefer et al. 2021 encoder-decoder rules."""

    def bar(a, g):
        return a.mean(0) if g is None else np.maximum(a * g, 0).mean(0)

    def norm_res(r):
        n = r.shape[0]
        hat = r - np.eye(n)
        s = hat.sum(axis=1, keepdims=True)
        hat = np.divide(hat, s, out=np.zeros_like(hat), where=s > 0)
        return hat + np.eye(n)

    e, d = enc[0].shape[-1], dec[0].shape[-1]
    r_ee = np.eye(e)
    for i, a in enumerate(enc):
        r_ee = r_ee + bar(a, None if enc_g is None else enc_g[i]) @ r_ee
    r_dd, r_de = np.eye(d), np.zeros((d, e))
    for i, (s, c) in enumerate(zip(dec, cross)):
        a = bar(s, None if dec_g is None else dec_g[i])
        r_dd = r_dd + a @ r_dd
        r_de = r_de + a @ r_de
        r_de = r_de + norm_res(r_dd).T @ bar(c, None if cross_g is None else cross_g[i]) @ norm_res(r_ee)
    return r_de


def test_encoder_decoder_relevance_reference_and_hand_case():
    enc, dec, cross = _layers(2, 2, 3, 5, seed=11), _layers(2, 2, 3, 4, seed=12), _layers(2, 2, 3, 4, seed=13, k=5)
    before = [w.clone() for w in enc + dec + cross]
    got = encoder_decoder_relevance(enc, dec, cross)
    assert all(torch.equal(a, b) for a, b in zip(enc + dec + cross, before))
    assert got.shape == (2, 4, 5)
    for bi in range(2):
        ref = np_enc_dec(*[[w[bi].double().numpy() for w in group] for group in (enc, dec, cross)])
        np.testing.assert_allclose(got[bi].numpy(), ref, rtol=1e-5, atol=1e-6)
    g = torch.Generator().manual_seed(14)
    grads = [[torch.randn(w.shape, generator=g) for w in group] for group in (enc, dec, cross)]
    got_g = encoder_decoder_relevance(enc, dec, cross, encoder_grads=grads[0], decoder_grads=grads[1], cross_grads=grads[2])
    ref_g = np_enc_dec(
        *[[w[0].double().numpy() for w in group] for group in (enc, dec, cross)],
        *[[x[0].double().numpy() for x in group] for group in grads],
    )
    np.testing.assert_allclose(got_g[0].numpy(), ref_g, rtol=1e-5, atol=1e-6)
    # hand case: one decoder token (d = 1): R_dd = 2, R̄_dd = 2, R̄_ee = A_e + I, so R_de = 2 a_c (A_e + I)
    a_e = torch.tensor([[[[0.5, 0.5], [0.25, 0.75]]]])
    a_c = torch.tensor([[[[0.2, 0.8]]]])
    out = encoder_decoder_relevance([a_e], [torch.ones(1, 1, 1, 1)], [a_c])[0]
    torch.testing.assert_close(out, 2 * a_c[0, 0] @ (a_e[0, 0] + torch.eye(2)))


def test_encoder_decoder_shape_errors():
    enc, dec = _layers(1, 1, 2, 5, seed=0), _layers(2, 1, 2, 4, seed=0)
    with pytest.raises(ValueError, match="one of each per decoder layer"):
        encoder_decoder_relevance(enc, dec, _layers(1, 1, 2, 4, seed=0, k=5))
    with pytest.raises(ValueError, match="cross must be"):
        encoder_decoder_relevance(enc, dec, _layers(2, 1, 2, 4, seed=0, k=6))


def test_row_helpers():
    r = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(2, 5, 5)
    torch.testing.assert_close(rollout_from_query(r, -1), r[:, 4])
    torch.testing.assert_close(rollout_from_query(r, [1, 3]), (r[:, 1] + r[:, 3]) / 2)
    patches = rollout_cls_to_patches(r, grid=(2, 2))  # CLS = token 0, patches = tokens 1..4
    torch.testing.assert_close(patches, r[:, 0, 1:].reshape(2, 2, 2))
    assert patches[0, 0, 1].item() == r[0, 0, 2].item()  # row-major patch order
    no_cls = rollout_cls_to_patches(r, grid=(1, 4), cls_index=None)
    torch.testing.assert_close(no_cls, r[:, 1:, 1:].mean(1).reshape(2, 1, 4))
    with pytest.raises(ValueError, match="query_index"):
        rollout_from_query(r, 5)
    with pytest.raises(ValueError, match="only 5 tokens"):
        rollout_cls_to_patches(r, grid=(3, 2))


@settings(max_examples=30, deadline=None)
@given(
    logits=st.lists(st.floats(-6, 6), min_size=3 * 2 * 4 * 4, max_size=3 * 2 * 4 * 4),
    fusion=st.sampled_from(["mean", "max", "min"]),
    residual=st.floats(0.05, 1.0),
    discard=st.sampled_from([0.0, 0.25, 0.5, 0.75]),
)
def test_property_rollout_rows_stochastic_and_inputs_untouched(logits, fusion, residual, discard):
    x = torch.softmax(torch.tensor(logits).reshape(3, 1, 2, 4, 4) * 2, dim=-1)
    layers = list(x.unbind(0))
    before = x.clone()
    r = attention_rollout(layers, head_fusion=fusion, residual=residual, discard_ratio=discard)
    assert (r >= 0).all()
    torch.testing.assert_close(r.sum(-1), torch.ones(1, 4))
    assert torch.equal(x, before) and all(torch.equal(a, b) for a, b in zip(layers, before.unbind(0)))
    grads = [torch.ones_like(w) for w in layers]
    gradient_rollout(layers, grads)
    assert all(torch.equal(a, b) for a, b in zip(layers, before.unbind(0)))
