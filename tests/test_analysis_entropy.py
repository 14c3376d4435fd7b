"""analysis.head_entropy / row_entropy: hand-computed cases, a plain-numpy reference, masks, properties."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import head_entropy, row_entropy


def _softmax(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, dim=-1)


def _masked_softmax(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Softmax over valid keys only; rows without any valid key become uniform (like HF padding rows)."""
    out = torch.softmax(logits.masked_fill(~valid, -1e9), dim=-1)
    return out


def np_row_entropy(w: np.ndarray, valid: np.ndarray, rows: np.ndarray, normalize: bool) -> np.ndarray:
    """Reference: loops over [B, H, q]; valid [B, q, k] allowed keys; rows [B, q] real rows; NaN off rows."""
    b, h, q, k = w.shape
    out = np.full((b, h, q), np.nan)
    for bi in range(b):
        for hi in range(h):
            for i in range(q):
                n = int(valid[bi, i].sum())
                if not rows[bi, i] or n == 0:
                    continue
                p = w[bi, hi, i]
                ent = -sum(x * math.log(x) for x in p if x > 0)
                if normalize:
                    ent = ent / math.log(n) if n > 1 else 0.0
                out[bi, hi, i] = ent
    return out


def test_hand_computed_rows():
    uniform = torch.full((1, 1, 5, 5), 0.2)
    assert head_entropy(uniform).item() == pytest.approx(math.log(5), rel=1e-6)
    assert head_entropy(uniform, normalize=True).item() == pytest.approx(1.0, rel=1e-6)
    one_hot = torch.eye(4)[None, None]
    assert head_entropy(one_hot).item() == pytest.approx(0.0, abs=1e-7)
    row = torch.tensor([[[[0.5, 0.25, 0.25]]]])
    assert head_entropy(row).item() == pytest.approx(1.5 * math.log(2), rel=1e-6)
    assert head_entropy(row, normalize=True).item() == pytest.approx(1.5 * math.log(2) / math.log(3), rel=1e-6)


def test_causal_normalisation_counts_i_plus_one_keys():
    q = 5
    tri = torch.tril(torch.ones(q, q))
    w = (tri / tri.sum(-1, keepdim=True))[None, None]  # row i uniform over i + 1 keys
    rows = row_entropy(w, normalize=True, causal=True)[0, 0]
    assert rows.tolist() == pytest.approx([0.0, 1.0, 1.0, 1.0, 1.0], abs=1e-6)  # row 0: one key -> 0
    assert head_entropy(w, normalize=True, causal=True).item() == pytest.approx(4 / 5, rel=1e-6)
    # without the causal flag, row i is divided by ln 5 instead of ln(i + 1)
    expected = sum(math.log(i + 1) / math.log(q) for i in range(q)) / q
    assert head_entropy(w, normalize=True).item() == pytest.approx(expected, rel=1e-6)


def test_generation_step_sees_all_keys():
    w = torch.full((1, 2, 1, 6), 1 / 6)  # q = 1 new token over 6 cached keys
    assert head_entropy(w, normalize=True, causal=True)[0].tolist() == pytest.approx([1.0, 1.0], rel=1e-6)


def test_padding_keys_and_rows_excluded():
    torch.manual_seed(0)
    key_mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    w = _softmax(torch.randn(2, 3, 5, 5))
    w[0, :, :3] = torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0, 0.0])  # real rows: uniform over 3 real keys
    h = head_entropy(w, key_mask=key_mask)
    assert h[0].tolist() == pytest.approx([math.log(3)] * 3, rel=1e-6)  # padded rows 3-4 ignored
    assert head_entropy(w, normalize=True, key_mask=key_mask)[0].tolist() == pytest.approx([1.0] * 3, rel=1e-6)
    r = row_entropy(w, key_mask=key_mask)
    assert torch.isnan(r[0, :, 3:]).all() and not torch.isnan(r[1]).any()


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_matches_numpy_reference_with_masks(normalize, causal):
    torch.manual_seed(1)
    b, h, q = 3, 4, 7
    key_mask = torch.ones(b, q, dtype=torch.bool)
    key_mask[0, :2] = False  # left padding
    key_mask[1, 5:] = False  # right padding
    valid = key_mask[:, None, :].expand(b, q, q).clone()
    if causal:
        valid &= torch.ones(q, q, dtype=torch.bool).tril()
    w = _masked_softmax(torch.randn(b, h, q, q) * 2, valid[:, None])
    ref = np_row_entropy(w.double().numpy(), valid.numpy(), key_mask.numpy(), normalize)
    got = row_entropy(w, normalize=normalize, causal=causal, key_mask=key_mask).double().numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(
        head_entropy(w, normalize=normalize, causal=causal, key_mask=key_mask).numpy(),
        np.nanmean(ref, axis=-1),
        rtol=1e-5,
        atol=1e-6,
    )


def test_leading_layer_dim_broadcasts_batch_masks():
    torch.manual_seed(2)
    key_mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    layers = _softmax(torch.randn(3, 2, 4, 4, 4))  # [L, batch, heads, q, k]
    stacked = head_entropy(layers, normalize=True, key_mask=key_mask)
    assert stacked.shape == (3, 2, 4)
    for i in range(3):
        torch.testing.assert_close(stacked[i], head_entropy(layers[i], normalize=True, key_mask=key_mask))


def test_bad_input_gets_clear_errors():
    with pytest.raises(TypeError, match="torch.Tensor"):
        head_entropy([[0.5, 0.5]])
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        head_entropy(torch.ones(2, 2))
    with pytest.raises(ValueError, match="key_mask has 3 positions"):
        head_entropy(torch.ones(1, 1, 4, 4) / 4, key_mask=torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool or integer"):
        head_entropy(torch.ones(1, 1, 4, 4) / 4, key_mask=torch.ones(1, 4))
    with pytest.raises(ValueError, match="do not fit"):
        head_entropy(torch.ones(2, 1, 4, 4) / 4, key_mask=torch.ones(3, 4, dtype=torch.bool))


def test_integer_masks_and_half_precision_accepted():
    w = torch.full((1, 1, 4, 4), 0.25, dtype=torch.float16)
    h = head_entropy(w, key_mask=torch.tensor([[1, 1, 1, 1]]))
    assert h.dtype == torch.float32 and h.item() == pytest.approx(math.log(4), rel=1e-3)


@settings(max_examples=40, deadline=None)
@given(
    logits=st.lists(st.floats(-8, 8), min_size=2 * 3 * 5, max_size=2 * 3 * 5),
    causal=st.booleans(),
)
def test_property_entropy_bounds_and_no_mutation(logits, causal):
    valid = torch.ones(3, 5, dtype=torch.bool)
    if causal:
        valid = valid.tril(5 - 3)  # query i sees keys j <= i + 2
    w = _masked_softmax(torch.tensor(logits).reshape(2, 1, 3, 5) * 3, valid)  # [batch, heads, q=3, k=5]
    before = w.clone()
    h = row_entropy(w, causal=causal)
    hn = row_entropy(w, normalize=True, causal=causal)
    assert torch.equal(w, before)
    assert (h >= -1e-6).all() and (h <= math.log(5) + 1e-5).all()
    n_keys = valid.sum(-1).float()  # [q]
    assert (h <= torch.log(n_keys) + 1e-5).all()
    assert (hn >= -1e-6).all() and (hn <= 1 + 1e-5).all()
