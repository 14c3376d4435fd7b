"""analysis.layer_consistency / head_distance / cluster_order / cross_input_consistency."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import squareform

from analysis import (
    PATTERN_LABELS,
    HeadPatterns,
    cluster_order,
    cross_input_consistency,
    head_distance,
    head_patterns,
    layer_consistency,
)

SQRT_LN2 = math.sqrt(math.log(2))


def np_js(p: np.ndarray, q: np.ndarray) -> float:
    """Reference JS divergence (nats) via the KL form: (KL(p||m) + KL(q||m)) / 2."""
    m = (p + q) / 2

    def kl(a, b):
        return sum(x * math.log(x / y) for x, y in zip(a, b) if x > 0)

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def np_distance(a: np.ndarray, b: np.ndarray, rows: np.ndarray) -> float:
    """sqrt(mean over valid rows of JS(a_i, b_i)); a, b [q, k]; rows [q] bool."""
    return math.sqrt(np.mean([np_js(a[i], b[i]) for i in range(a.shape[0]) if rows[i]]))


def test_hand_computed_pairs():
    a = torch.tensor([[[[1.0, 0.0]]]])  # [batch, heads, q, k]
    b = torch.tensor([[[[0.0, 1.0]]]])
    c = torch.tensor([[[[0.5, 0.5]]]])
    d = layer_consistency([a, b, c])[0]
    assert d[0, 1].item() == pytest.approx(SQRT_LN2, rel=1e-6)  # disjoint supports: JS = ln 2
    # a vs c: M = (0.75, 0.25); JS = H(M) - (H(a) + H(c)) / 2
    h_m = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert d[0, 2].item() == pytest.approx(math.sqrt(h_m - math.log(2) / 2), rel=1e-5)
    assert torch.equal(d, d.T) and torch.all(d.diagonal() == 0)


def test_heads_are_averaged_before_comparing_layers():
    # Layer 0: two heads one-hot on opposite keys -> mean (0.5, 0.5); layer 1 uniform: distance 0.
    l0 = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])
    l1 = torch.full((1, 2, 1, 2), 0.5)
    assert layer_consistency([l0, l1]).abs().max().item() < 1e-6
    assert head_distance([l0, l1])[0, 1].item() == pytest.approx(SQRT_LN2, rel=1e-6)


def _random_layers(n_layers, b, h, q, seed, key_mask=None):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_layers):
        logits = torch.randn(b, h, q, q, generator=g) * 2
        if key_mask is not None:
            logits = logits.masked_fill(~key_mask[:, None, None, :], -1e9)
        out.append(torch.softmax(logits, dim=-1))
    return out


def test_layer_consistency_matches_numpy_reference_with_padding():
    key_mask = torch.tensor([[True] * 6, [False, False, True, True, True, True]])
    layers = _random_layers(3, 2, 4, 6, seed=3, key_mask=key_mask)
    got = layer_consistency(layers, key_mask=key_mask).double().numpy()
    means = [w.mean(1).double().numpy() for w in layers]  # [batch, q, k] per layer
    for bi in range(2):
        for i in range(3):
            for j in range(3):
                ref = np_distance(means[i][bi], means[j][bi], key_mask[bi].numpy())
                assert got[bi, i, j] == pytest.approx(ref, abs=2e-4)


def test_head_distance_matches_numpy_reference_and_layer_consistency():
    layers = _random_layers(2, 2, 3, 5, seed=4)
    got = head_distance(layers).double().numpy()
    assert got.shape == (6, 6)
    heads = [w[:, h].double().numpy() for w in layers for h in range(3)]  # index l * H + h
    rows = np.ones(5, dtype=bool)
    for i in range(6):
        for j in range(6):
            ref = np.mean([np_distance(heads[i][bi], heads[j][bi], rows) for bi in range(2)])
            assert got[i, j] == pytest.approx(ref, abs=2e-4)
    single = [w[:1, :1] for w in layers]  # one head, one input: head distance == layer consistency
    torch.testing.assert_close(head_distance(single), layer_consistency(single)[0])


def test_stacked_tensor_equals_sequence_and_inputs_untouched():
    layers = _random_layers(3, 1, 2, 4, seed=5)
    copies = [w.clone() for w in layers]
    torch.testing.assert_close(layer_consistency(torch.stack(layers)), layer_consistency(layers))
    assert all(torch.equal(a, b) for a, b in zip(layers, copies))


def test_layer_errors_are_clear():
    with pytest.raises(ValueError, match="empty"):
        layer_consistency([])
    with pytest.raises(ValueError, match=r"layers\[1\] has shape"):
        layer_consistency([torch.ones(1, 1, 2, 2) / 2, torch.ones(1, 1, 3, 3) / 3])
    with pytest.raises(ValueError, match=r"\[batch, heads, q, k\]"):
        layer_consistency([torch.ones(2, 2)])


def _contiguous(order: list[int], members: set[int]) -> bool:
    pos = sorted(order.index(m) for m in members)
    return pos[-1] - pos[0] == len(pos) - 1


def test_cluster_order_keeps_every_average_linkage_cluster_contiguous():
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.normal(c, 0.3, size=(5, 2)) for c in (0.0, 5.0, 10.0)])
    rng.shuffle(pts)
    dist = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    order = cluster_order(torch.tensor(dist)).tolist()
    assert sorted(order) == list(range(15))
    # every cluster of scipy's (independent) UPGMA tree must be a contiguous block of our order
    z = linkage(squareform(dist, checks=False), method="average")
    members = {i: {i} for i in range(15)}
    for step, (a, b, _, _) in enumerate(z):
        members[15 + step] = members[int(a)] | members[int(b)]
        assert _contiguous(order, members[15 + step])


def test_cluster_order_hand_case_and_errors():
    d = torch.tensor([[0.0, 9.0, 1.0, 9.0], [9.0, 0.0, 9.0, 2.0], [1.0, 9.0, 0.0, 9.0], [9.0, 2.0, 9.0, 0.0]])
    assert cluster_order(d).tolist() == [0, 2, 1, 3]
    assert cluster_order(torch.zeros(1, 1)).tolist() == [0]
    with pytest.raises(ValueError, match="symmetric"):
        cluster_order(torch.tensor([[0.0, 1.0], [2.0, 0.0]]))
    with pytest.raises(ValueError, match="square"):
        cluster_order(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="NaN"):
        cluster_order(torch.tensor([[0.0, float("nan")], [float("nan"), 0.0]]))


def _patterns(first: list[float], label: list[str], entropy: list[float]) -> HeadPatterns:
    t = torch.tensor(first)
    scores = {name: torch.zeros(len(first)) for name in ("previous", "current", "delimiter", "local", "broad")}
    scores["first"] = t
    idx = torch.tensor([PATTERN_LABELS.index(x) for x in label])
    return HeadPatterns(scores=scores, entropy=torch.tensor(entropy), label_index=idx, sink=t >= 0.5, sink_mass=t)


def test_cross_input_consistency_hand_case():
    runs = [
        _patterns([0.9, 0.1], ["first", "mixed"], [0.2, 1.0]),
        _patterns([0.7, 0.1], ["first", "broad"], [0.4, 1.0]),
        _patterns([0.8, 0.1], ["first", "mixed"], [0.3, 1.6]),
    ]
    c = cross_input_consistency(runs)
    assert c.n_inputs == 3
    assert c.mean["first"].tolist() == pytest.approx([0.8, 0.1], rel=1e-6)
    assert c.std["first"].tolist() == pytest.approx([math.sqrt(0.02 / 3), 0.0], abs=1e-6)
    assert c.std["entropy"].tolist() == pytest.approx([math.sqrt(0.02 / 3), math.sqrt(0.24 / 3)], abs=1e-6)
    assert c.modal_labels == ["first", "mixed"]
    assert c.label_agreement.tolist() == pytest.approx([1.0, 2 / 3])
    assert c.label_changes.tolist() == [False, True]


def test_cross_input_consistency_on_real_patterns_and_errors():
    prev = torch.zeros(1, 1, 6, 6)
    prev[0, 0, 0, 0] = 1
    prev[0, 0, torch.arange(1, 6), torch.arange(0, 5)] = 1  # previous-token head
    uniform = torch.full((1, 1, 6, 6), 1 / 6)
    stable = cross_input_consistency([head_patterns(prev), head_patterns(prev)])
    assert stable.label_changes.tolist() == [[False]] and stable.modal_labels == [["previous"]]
    changing = cross_input_consistency([head_patterns(prev), head_patterns(uniform)])
    assert changing.label_changes.tolist() == [[True]]
    assert changing.std["previous"].item() == pytest.approx((1 - 1 / 6) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="at least 2"):
        cross_input_consistency([head_patterns(prev)])
    with pytest.raises(ValueError, match="same model"):
        cross_input_consistency([head_patterns(prev), head_patterns(torch.full((1, 2, 6, 6), 1 / 6))])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-6, 6), min_size=2 * 2 * 3 * 4, max_size=2 * 2 * 3 * 4))
def test_property_js_symmetric_zero_bounded(logits):
    x = torch.softmax(torch.tensor(logits).reshape(2, 1, 2, 3, 4) * 2, dim=-1)  # 2 layers [batch=1, heads=2, 3, 4]
    layers = [x[0], x[1], x[0].clone()]
    before = [w.clone() for w in layers]
    d = layer_consistency(layers)[0]
    assert torch.allclose(d, d.T)
    assert d[0, 2].item() < 1e-3 and d.diagonal().abs().max().item() == 0  # identical maps
    assert (d >= 0).all() and (d <= SQRT_LN2 + 1e-5).all()
    hd = head_distance(layers)
    assert torch.allclose(hd, hd.T) and (hd <= SQRT_LN2 + 1e-5).all()
    assert all(torch.equal(a, b) for a, b in zip(layers, before))
