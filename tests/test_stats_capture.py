"""Statistics-only capture (issue 7): chunked statistics equal `analysis` on the full maps.

Every test captures the same forward twice on a tiny model -- once in full mode (exact eager
weights) and once with mode="stats" and a small chunk budget, so each call is split into several
chunks of query rows -- and compares the statistics computed both ways.
"""
from __future__ import annotations

import pytest
import torch

import analysis
from hooks import AttentionStats, capture_attention, stats_rollout
from tests import tiny_models as tm

ATOL = 1e-5
SEQ = 19
CHUNK = 4 * 4 * SEQ * 3  # batch 2 x 4 heads x 19 keys: 1-2 query rows per chunk


def _inputs(arch: str):
    """(model, inputs, key_mask [2, SEQ]) with a padded second row (left padding for causal LMs)."""
    model = getattr(tm, f"tiny_{arch}")()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(7, tm.VOCAB, (2, SEQ), generator=g)
    mask = torch.ones(2, SEQ, dtype=torch.long)
    if arch in ("gpt2", "llama"):
        mask[1, :4] = 0  # left padding
    else:
        mask[1, -4:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    if arch == "t5":
        inputs["decoder_input_ids"] = ids[:, :7]
    return model, inputs, mask.bool()


def _delimiters() -> torch.Tensor:
    dm = torch.zeros(2, SEQ, dtype=torch.bool)
    dm[:, ::5] = True
    return dm


def _both(model, inputs, **stats_options):
    with torch.no_grad(), capture_attention(model) as full:
        out_full = model(**inputs)
    with torch.no_grad(), capture_attention(model, mode="stats", chunk_elements=CHUNK, **stats_options) as st:
        out_stats = model(**inputs)
    return full, out_full, st, out_stats


def _main_output(out) -> torch.Tensor:
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


def _close(a: torch.Tensor, b: torch.Tensor, atol: float = ATOL) -> None:
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, atol=atol, rtol=0, equal_nan=True)


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama", "t5"])
def test_statistics_equal_analysis_on_full_maps(arch):
    model, inputs, key_mask = _inputs(arch)
    dm = _delimiters()
    full, out_full, st, out_stats = _both(model, inputs, key_mask=key_mask, delimiter_mask=dm)
    _close(_main_output(out_full), _main_output(out_stats))  # the model's output is unchanged
    assert len(st.stats) == len(full.maps) and not st.maps
    assert {s.path for s in st.stats} == {"chunked"}
    for m, s in zip(full.maps, st.stats):
        assert isinstance(s, AttentionStats)
        assert (s.name, s.layer, s.stack, s.kind, s.step) == (m.name, m.layer, m.stack, m.kind, m.step)
        assert s.shape == tuple(m.weights.shape)
        w = m.weights  # [batch, heads, q, k]
        _close(s.rows["entropy"], torch.special.entr(w).sum(-1))  # every row, fully masked padding rows too
        causal = "future" in s.rows
        assert causal == (arch in ("gpt2", "llama") or (arch == "t5" and s.stack == "decoder" and s.kind == "self"))
        km = key_mask if s.key_mask is not None else None
        delim = dm if s.delimiter_mask is not None else None
        assert (km is not None) == (s.shape[-1] == SEQ)  # masks apply where the key length matches
        for normalize in (False, True):
            _close(s.head_entropy(normalize=normalize, causal=causal),
                   analysis.head_entropy(w, normalize=normalize, causal=causal, key_mask=km))
            _close(s.row_entropy(normalize=normalize, causal=causal),
                   analysis.row_entropy(w, normalize=normalize, causal=causal, key_mask=km))
        ref = analysis.head_patterns(w, causal=causal, key_mask=km, delimiter_mask=delim)
        got = s.head_patterns(causal=causal)
        for name in analysis.PATTERN_NAMES:
            _close(got.scores[name], ref.scores[name])
        assert torch.equal(got.label_index, ref.label_index) and torch.equal(got.sink, ref.sink)
        _close(got.entropy, ref.entropy)
        ref_mc = analysis.mask_checks(w, causal=causal, key_mask=km)
        got_mc = s.mask_checks(causal=causal)
        for a, b in ((got_mc.future_mass, ref_mc.future_mass), (got_mc.padding_mass, ref_mc.padding_mass)):
            assert (a is None) == (b is None)
            if a is not None:
                _close(a, b)
        assert got_mc.ok == ref_mc.ok
        _close(s.head_mean.float(), w.mean(dim=1))  # [batch, q, k]


def test_rollout_from_head_means_equals_rollout_of_full_maps():
    model, inputs, key_mask = _inputs("bert")
    full, _, st, _ = _both(model, inputs, key_mask=key_mask)
    maps = [m.weights for m in full.maps]
    for kw in ({}, {"residual": 0.3, "start_layer": 1}, {"discard_ratio": 0.2}):
        _close(stats_rollout(st.stats, **kw), analysis.attention_rollout(maps, key_mask=key_mask, **kw))


def test_no_full_map_is_kept_and_scratch_stays_within_the_chunk_budget():
    model, inputs, key_mask = _inputs("llama")
    with torch.no_grad(), capture_attention(model, mode="stats", key_mask=key_mask, chunk_elements=CHUNK) as st:
        model(**inputs)
    b, h, q, k = st.stats[0].shape
    for s in st.stats:
        kept = [*s.rows.values(), s.head_mean]
        assert all(t.numel() <= b * q * k for t in kept)  # never [batch, heads, q, k]
        assert all(t.device.type == "cpu" for t in kept)
    assert st.recorder._scratch.numel() <= max(CHUNK, b * h * k)


def test_half_precision_head_means_and_bfloat16_model():
    model, inputs, key_mask = _inputs("gpt2")
    full, _, st, _ = _both(model, inputs, key_mask=key_mask, head_mean_dtype=torch.float16)
    assert st.stats[0].head_mean.dtype == torch.float16
    _close(st.stats[0].head_mean.float(), full.maps[0].weights.mean(1), atol=1e-3)
    model = model.to(torch.bfloat16)
    full, out_full, st, out_stats = _both(model, inputs, key_mask=key_mask)
    assert {s.path for s in st.stats} == {"chunked"}
    _close(_main_output(out_stats).float(), _main_output(out_full).float(), atol=0.05)
    _close(st.stats[1].head_entropy(causal=True),
           analysis.head_entropy(full.maps[1].weights.float(), causal=True, key_mask=key_mask), atol=2e-2)


def _softcap_gemma():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    cfg = Gemma2Config(vocab_size=tm.VOCAB, hidden_size=tm.HIDDEN, intermediate_size=tm.FFN, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=8, attn_logit_softcapping=0.5,
                       sliding_window=6, max_position_embeddings=64, initializer_range=0.5)
    return Gemma2ForCausalLM(cfg).eval()


def test_module_with_its_own_eager_function_falls_back_to_it_chunk_by_chunk():
    """Soft-capped logits (Gemma 2) and a sliding window: the fast path would be wrong, so every
    chunk runs the module's own eager function; statistics stay exact."""
    model = _softcap_gemma()
    ids = torch.randint(7, tm.VOCAB, (1, SEQ), generator=torch.Generator().manual_seed(2))
    full, out_full, st, out_stats = _both(model, {"input_ids": ids})
    assert {s.path for s in st.stats} == {"eager"}
    _close(out_stats.logits, out_full.logits)
    for m, s in zip(full.maps, st.stats):
        ref = analysis.head_patterns(m.weights, causal=True)
        got = s.head_patterns(causal=True)
        for name in ("first", "previous", "current", "local", "broad"):
            _close(got.scores[name], ref.scores[name])
        assert s.mask_checks(causal=True).ok


def test_dropout_in_training_mode_uses_the_module_eager_function():
    model, inputs, _ = _inputs("bert")
    model = tm.tiny_bert(attention_probs_dropout_prob=0.5).train()
    with torch.no_grad(), capture_attention(model, mode="stats") as st:
        model(**inputs)
    assert {s.path for s in st.stats} == {"eager"}


def test_multihead_attention_weights_are_reduced_the_same_way():
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(tm.HIDDEN, tm.HEADS, 64, batch_first=True)
    enc = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    x = torch.randn(2, 11, tm.HIDDEN)
    full, out_full, st, out_stats = _both(enc, {"src": x})
    _close(out_stats, out_full)
    assert {s.path for s in st.stats} == {"weights"}
    for m, s in zip(full.maps, st.stats):
        _close(s.head_entropy(), analysis.head_entropy(m.weights))
        _close(s.head_patterns().scores["local"], analysis.head_patterns(m.weights).scores["local"])


def test_generation_steps_each_get_statistics():
    model = tm.tiny_gpt2()
    ids = torch.randint(7, tm.VOCAB, (1, 6), generator=torch.Generator().manual_seed(3))
    kw = dict(max_new_tokens=3, do_sample=False, pad_token_id=0)
    with torch.no_grad(), capture_attention(model) as full:
        model.generate(ids, **kw)
    with torch.no_grad(), capture_attention(model, mode="stats") as st:
        model.generate(ids, **kw)
    assert [(s.name, s.shape, s.step) for s in st.stats] == [
        (m.name, tuple(m.weights.shape), m.step) for m in full.maps
    ]
    assert st.stats[-1].shape[-2:] == (1, 8)  # last step: one query over 8 cached keys
    for m, s in zip(full.maps, st.stats):
        _close(s.head_entropy(causal=True), analysis.head_entropy(m.weights, causal=True))


def test_single_head_full_map_stays_exact_alongside_statistics():
    """The map a user opens after a statistics-only pass: one layer, one head, full mode."""
    model, inputs, key_mask = _inputs("bert")
    with torch.no_grad(), capture_attention(model, mode="stats", key_mask=key_mask) as st:
        model(**inputs)
    with torch.no_grad(), capture_attention(model, layers=[1], heads=[2]) as one:
        model(**inputs)
    ref = model.__class__(model.config).eval()
    ref.load_state_dict(model.state_dict())
    ref.set_attn_implementation("eager")
    with torch.no_grad():
        eager = ref(**inputs, output_attentions=True).attentions[1][:, 2:3]  # [batch, 1, q, k]
    _close(one.maps[0].weights, eager)
    _close(st.stats[1].head_entropy()[:, 2], analysis.head_entropy(eager, key_mask=key_mask)[:, 0])


def test_concurrent_statistics_captures_on_one_shared_model():
    """The app serves one cached model to every session: captures in threads keep their own results."""
    from concurrent.futures import ThreadPoolExecutor

    model, inputs, key_mask = _inputs("llama")

    def one(i: int) -> torch.Tensor:
        sub = {k: v[i % 2 : i % 2 + 1] for k, v in inputs.items()}
        with torch.no_grad(), capture_attention(model, mode="stats", key_mask=key_mask[i % 2 : i % 2 + 1],
                                                chunk_elements=CHUNK) as st:
            model(**sub)
        return torch.stack([s.rows["entropy"] for s in st.stats])  # [layers, 1, heads, q]

    alone = [one(0), one(1)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(8)))
    for i, r in enumerate(results):
        torch.testing.assert_close(r, alone[i % 2], atol=1e-6, rtol=0)


def test_bad_options_get_clear_messages():
    model, inputs, key_mask = _inputs("bert")
    with pytest.raises(ValueError, match="mode must be"):
        capture_attention(model, mode="summary")
    with pytest.raises(ValueError, match="apply to mode='full' only"):
        capture_attention(model, mode="stats", heads=[0])
    with pytest.raises(TypeError, match="unexpected options"):
        capture_attention(model, key_mask=key_mask)
    with pytest.raises(ValueError, match="window"):
        capture_attention(model, mode="stats", window=-1)
    with pytest.raises(ValueError, match="key_mask"):
        capture_attention(model, mode="stats", key_mask=torch.ones(2, 3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="batch"):
        with torch.no_grad(), capture_attention(model, mode="stats", key_mask=key_mask.repeat(2, 1)):
            model(**inputs)
    with torch.no_grad(), capture_attention(model, mode="stats", head_mean_dtype=None) as st:
        model(**inputs)
    with pytest.raises(ValueError, match="future-key mass was not computed"):
        st.stats[0].mask_checks(causal=True)
    with pytest.raises(ValueError, match="head means were not kept"):
        stats_rollout(st.stats)
    with pytest.raises(ValueError, match="no statistics"):
        stats_rollout([])
