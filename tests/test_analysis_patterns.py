"""analysis.head_patterns (scores, dominant labels, sinks) and analysis.mask_checks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import PATTERN_THRESHOLDS, head_patterns, labels_of, mask_checks, row_statistics

N = 8


def _head(kind: str, n: int = N) -> torch.Tensor:
    """One synthetic [n, n] causal head of a known pattern."""
    a = torch.zeros(n, n)
    for i in range(n):
        if kind == "previous":
            a[i, max(i - 1, 0)] = 1
        elif kind == "current":
            a[i, i] = 1
        elif kind == "first":
            a[i, 0] = 1
        elif kind == "delimiter":
            a[i, min(3, i) if i < 6 else 6] = 1  # tokens 3 and 6 are delimiters
        elif kind == "local":
            lo = max(0, i - 2)
            a[i, lo : i + 1] = 1 / (i + 1 - lo)  # spread over the 3 nearest keys
        elif kind == "uniform":
            a[i, : i + 1] = 1 / (i + 1)
        elif kind == "mixed":
            a[i, 0] = 0.3
            a[i, i] += 0.3
            a[i, : i + 1] += 0.4 / (i + 1)
    return a


KINDS = ["previous", "current", "first", "delimiter", "local", "uniform", "mixed"]


def test_synthetic_heads_get_their_labels_and_sinks_are_flagged():
    w = torch.stack([_head(k) for k in KINDS])[None]  # [batch=1, heads=7, n, n]
    delim = torch.zeros(1, N, dtype=torch.bool)
    delim[0, [3, 6]] = True
    p = head_patterns(w, causal=True, delimiter_mask=delim)
    assert p.labels == [["previous", "current", "first", "delimiter", "local", "broad", "mixed"]]
    assert p.sink.tolist() == [[False, False, True, False, False, False, False]]
    assert p.sink_mass[0, 2].item() == pytest.approx(1.0)
    assert p.scores["previous"][0, 0].item() == pytest.approx(1.0)  # rows 1..7 (row 0 has one key)
    assert p.scores["broad"][0, 5].item() == pytest.approx(1.0, rel=1e-5)
    assert p.thresholds == dict(PATTERN_THRESHOLDS)
    no_delim = head_patterns(w, causal=True)
    assert math.isnan(no_delim.scores["delimiter"][0, 3].item())
    assert no_delim.labels[0][3] != "delimiter"


def np_patterns(w, valid, rows, delim, window):
    """Reference scores for w [H, q, k] of one batch item: valid [q, k], rows [q], delim [k] bool."""
    h, q, k = w.shape
    d = k - q
    first_key = int(np.argmax(valid.any(axis=0)))
    out = {n: np.zeros(h) for n in ("first", "previous", "current", "delimiter", "local", "broad")}
    scored = [i for i in range(q) if rows[i] and valid[i].sum() >= 2]
    prev_rows = [i for i in scored if i + d - 1 >= 0]
    for hi in range(h):
        a = w[hi]
        out["first"][hi] = np.mean([a[i, first_key] for i in scored])
        out["previous"][hi] = np.mean([a[i, i + d - 1] for i in prev_rows])
        out["current"][hi] = np.mean([a[i, i + d] for i in scored])
        out["delimiter"][hi] = np.mean([a[i, delim].sum() for i in scored])
        out["local"][hi] = np.mean([sum(a[i, j] for j in range(k) if abs(j - (i + d)) <= window) for i in scored])
        ent = [-sum(x * math.log(x) for x in a[i] if x > 0) / math.log(valid[i].sum()) for i in scored]
        out["broad"][hi] = np.mean(ent)
    return out


@pytest.mark.parametrize("q", [6, 1])
def test_scores_match_numpy_reference_with_left_padding(q):
    k, b, h = 6, 2, 3
    key_mask = torch.tensor([[False, False, True, True, True, True], [True] * k])
    valid = key_mask[:, None, :] & torch.ones(q, k, dtype=torch.bool).tril(k - q)  # [b, q, k]
    g = torch.Generator().manual_seed(20)
    w = torch.softmax((torch.randn(b, h, q, k, generator=g) * 2).masked_fill(~valid[:, None], -1e9), dim=-1)
    delim = torch.zeros(b, k, dtype=torch.bool)
    delim[:, 4] = True
    p = head_patterns(w, causal=True, key_mask=key_mask, delimiter_mask=delim, window=1)
    for bi in range(b):
        rows = key_mask[bi].numpy() if q == k else np.ones(q, dtype=bool)
        ref = np_patterns(w[bi].double().numpy(), valid[bi].numpy(), rows, delim[bi].numpy(), 1)
        for name, val in ref.items():
            np.testing.assert_allclose(p.scores[name][bi].numpy(), val, rtol=1e-5, atol=1e-6, err_msg=name)


def test_layer_stack_special_rows_thresholds_and_errors():
    w = torch.stack([_head(k) for k in KINDS])[None]
    stacked = head_patterns(torch.stack([w, w]), causal=True)  # [L=2, batch, heads, q, k]
    assert stacked.label_index.shape == (2, 1, 7) and stacked.labels[0] == stacked.labels[1]
    special = torch.zeros(1, N, dtype=torch.bool)
    special[0, 1:] = True  # only row 0 left, which has a single key: every score NaN
    assert torch.isnan(head_patterns(w, causal=True, special_mask=special).scores["first"]).all()
    strict = head_patterns(w, causal=True, thresholds={"first": 1.01})
    assert strict.labels[0][2] != "first" and not strict.sink.any()
    assert labels_of(torch.tensor([0, 6])) == ["first", "mixed"]
    with pytest.raises(ValueError, match="unknown pattern names"):
        head_patterns(w, thresholds={"sink": 0.3})
    with pytest.raises(ValueError, match="window"):
        head_patterns(w, window=-1)
    with pytest.raises(ValueError, match="delimiter_mask has 3 positions"):
        head_patterns(w, delimiter_mask=torch.ones(1, 3, dtype=torch.bool))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-6, 6), min_size=2 * 5 * 5, max_size=2 * 5 * 5))
def test_property_scores_in_range_and_input_untouched(logits):
    w = torch.softmax(torch.tensor(logits).reshape(1, 2, 5, 5) * 2, dim=-1)
    before = w.clone()
    p = head_patterns(w, delimiter_mask=torch.tensor([True, False, False, False, True]))
    assert torch.equal(w, before)
    for name, s in p.scores.items():
        assert ((s >= -1e-6) & (s <= 1 + 1e-5)).all(), name
    # Row by row the local window holds the previous and current keys. (The head means differ in their
    # rows: "previous" leaves out row 0, which has no previous key, so only "current" compares directly.)
    rows = row_statistics(w, stats=("previous", "current", "local"))
    assert (rows["local"] + 1e-6 >= torch.maximum(rows["previous"], rows["current"])).all()
    assert (p.scores["local"] + 1e-6 >= p.scores["current"]).all()


def test_mask_checks_reports_leaks_with_index_and_mass():
    good = torch.stack([_head("uniform"), _head("previous")])[None]  # [1, 2, N, N], causal
    leaky = good.clone()
    leaky[0, 1, 2] = torch.tensor([0.5, 0.3, 0.0, 0.2] + [0.0] * (N - 4))  # row 2 puts 0.2 on key 3
    ok = mask_checks(good, causal=True)
    assert ok.ok and ok.leaks == [] and ok.future_mass.abs().max().item() == 0 and ok.padding_mass is None
    assert "passed" in ok.message
    bad = mask_checks(leaky, causal=True)
    assert not bad.ok and [(x.kind, x.index) for x in bad.leaks] == [("future", (0, 1))]
    assert bad.leaks[0].mass == pytest.approx(0.2) and bad.future_mass[0, 1].item() == pytest.approx(0.2)
    assert "future" in bad.message and "0.2" in bad.message
    assert mask_checks(leaky, causal=True, tolerance=0.25).ok


def test_mask_checks_padding_mass_counts_real_rows_only():
    key_mask = torch.tensor([[True, True, True, False]])
    w = torch.full((1, 1, 4, 4), 0.25)  # every row spreads 0.25 onto the padding key
    w[0, 0, 0] = torch.tensor([0.5, 0.4, 0.1, 0.0])
    r = mask_checks(w, causal=False, key_mask=key_mask)
    assert r.future_mass is None and r.padding_mass[0, 0].item() == pytest.approx(0.25)
    w[0, 0, :3] = torch.tensor([0.4, 0.3, 0.3, 0.0])  # real rows clean; padded row 3 may do anything
    assert mask_checks(w, causal=False, key_mask=key_mask).ok
    with pytest.raises(TypeError, match="causal must be"):
        mask_checks(w, causal="yes")


def test_mask_checks_and_patterns_on_a_tiny_gpt2_with_left_padding():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=99, n_positions=32, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(cfg).eval()
    model.config._attn_implementation = "eager"
    ids = torch.randint(1, 99, (2, 7))
    attention_mask = torch.ones(2, 7, dtype=torch.long)
    attention_mask[0, :3] = 0  # left padding
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=attention_mask, output_attentions=True)
    weights = torch.stack(out.attentions)  # [L, batch, heads, q, k]
    before = weights.clone()
    report = mask_checks(weights, causal=True, key_mask=attention_mask)
    assert report.ok, report.message
    assert report.future_mass.shape == (2, 2, 4) and report.padding_mass.max().item() < 1e-6
    # the padded rows of this model spread attention over every key, future included:
    # excluding padding query rows (query_mask defaults to key_mask) is what keeps the check honest
    forced = mask_checks(weights, causal=True, key_mask=attention_mask, query_mask=torch.ones(2, 7, dtype=torch.bool))
    assert not forced.ok
    p = head_patterns(weights, causal=True, key_mask=attention_mask)
    assert p.label_index.shape == (2, 2, 4) and torch.isfinite(p.scores["first"]).all()
    assert torch.equal(weights, before)


def test_row_statistics_in_query_chunks_reduce_like_the_full_map():
    from analysis import entropy_from_rows, head_entropy, mask_checks_from_rows, patterns_from_rows, row_statistics

    q = k = 9
    key_mask = torch.tensor([[False, False] + [True] * 7, [True] * 9])
    valid = key_mask[:, None, :] & torch.ones(q, k, dtype=torch.bool).tril()
    g = torch.Generator().manual_seed(21)
    w = torch.softmax((torch.randn(2, 3, q, k, generator=g) * 2).masked_fill(~valid[:, None], -1e9), dim=-1)
    w[0, 1, 4, 8] += 0.3  # one leak onto a future key (row 4 of head 1, batch 0)
    delim = torch.zeros(2, k, dtype=torch.bool)
    delim[:, [3, 7]] = True
    kw = dict(key_mask=key_mask, delimiter_mask=delim, window=1)
    names = ("entropy", "first", "previous", "current", "local", "delimiter", "future", "padding")
    full = row_statistics(w, stats=names, **kw)
    # rows 0..3 and 4..8 computed separately, each told where its first query row sits
    parts = [row_statistics(w[..., a:b, :], stats=names, diagonal=a, **kw) for a, b in ((0, 4), (4, 9))]
    for name in names:
        torch.testing.assert_close(torch.cat([p[name] for p in parts], dim=-1), full[name], msg=name)
    ref = head_patterns(w, causal=True, key_mask=key_mask, delimiter_mask=delim, window=1)
    got = patterns_from_rows(full, k=k, causal=True, key_mask=key_mask)
    for name in ref.scores:
        torch.testing.assert_close(got.scores[name], ref.scores[name], equal_nan=True, msg=name)
    assert got.labels == ref.labels
    torch.testing.assert_close(
        entropy_from_rows(full["entropy"], k=k, normalize=True, causal=True, key_mask=key_mask).nanmean(-1),
        head_entropy(w, normalize=True, causal=True, key_mask=key_mask),
    )
    checked = mask_checks_from_rows(full, k=k, causal=True, key_mask=key_mask)
    direct = mask_checks(w, causal=True, key_mask=key_mask)
    assert [(x.kind, x.index) for x in checked.leaks] == [(x.kind, x.index) for x in direct.leaks] == [("future", (0, 1))]
    with pytest.raises(ValueError, match="lacks"):
        patterns_from_rows({"entropy": full["entropy"]}, k=k)
    with pytest.raises(ValueError, match="needs delimiter_mask"):
        row_statistics(w, stats=["delimiter"])
