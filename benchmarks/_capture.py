"""Forward-time ratios of the two capture modes (issue 7), measured in one interleaved run.

  full capture  : forward inside capture_attention(model)            / eager forward without capture
  stats capture : forward inside capture_attention(model, mode="stats") / default sdpa forward without capture
  one layer     : forward inside capture_attention(model, layers=[L // 2], heads=[0]) / sdpa forward
                  (what opening one layer/head of a long input costs; same bound as the full capture)
"""
from __future__ import annotations

import torch

from ._common import Row, bert_model, interleaved_best, judge, token_ids

FULL_TARGET = 1.15
STATS_TARGET = 1.3


def capture_rows(shape: dict, tokens: int, *, rounds: int, smoke: bool) -> list[Row]:
    from hooks import capture_attention

    model = bert_model(shape, max_positions=max(tokens, 512))
    ids = token_ids(tokens, shape["vocab_size"])

    def with_impl(impl: str):
        def run() -> None:  # BERT's modules all read model.config; switching it is what captures do too
            model.config._attn_implementation_internal = impl
            try:
                model(input_ids=ids)
            finally:
                model.config._attn_implementation_internal = "sdpa"

        return run

    def full() -> None:
        with capture_attention(model) as cap:
            model(input_ids=ids)
        assert len(cap.maps) == shape["num_hidden_layers"]

    def stats() -> None:
        with capture_attention(model, mode="stats") as cap:
            model(input_ids=ids)
        assert len(cap.stats) == shape["num_hidden_layers"]

    def one_layer() -> None:
        with capture_attention(model, layers=[shape["num_hidden_layers"] // 2], heads=[0]) as cap:
            model(input_ids=ids)
        assert len(cap.maps) == 1

    fns = {"eager": with_impl("eager"), "full": full, "sdpa": with_impl("sdpa"), "stats": stats, "one": one_layer}
    threads = torch.get_num_threads()
    with torch.no_grad():
        t = interleaved_best(fns, rounds)
        # the same ratios on one thread: the extra work alone, without the thread hand-offs that other
        # processes on a shared machine make expensive (each parallel op waits for both threads)
        torch.set_num_threads(1)
        try:
            t1 = interleaved_best(fns, max(1, rounds - 1)) if threads > 1 else t
        finally:
            torch.set_num_threads(threads)
    r_full, r_stats, r_one = t["full"] / t["eager"], t["stats"] / t["sdpa"], t["one"] / t["sdpa"]
    one = "" if threads == 1 else "; on 1 thread {:.2f} x"
    layers, heads = shape["num_hidden_layers"], shape["num_attention_heads"]
    where = f"{layers} layers x {heads} heads, hidden {shape['hidden_size']}, {tokens} tokens"
    return [
        Row("capture_full", f"full capture / eager forward ({where})", r_full, "x", FULL_TARGET,
            judge(r_full, FULL_TARGET, smoke=smoke),
            f"full {t['full']:.3f} s, eager {t['eager']:.3f} s (best of {rounds}, {threads} threads)"
            + one.format(t1["full"] / t1["eager"])),
        Row("capture_stats", f"statistics-only capture / sdpa forward ({where})", r_stats, "x", STATS_TARGET,
            judge(r_stats, STATS_TARGET, smoke=smoke),
            f"stats {t['stats']:.3f} s, sdpa {t['sdpa']:.3f} s (best of {rounds}, {threads} threads)"
            + one.format(t1["stats"] / t1["sdpa"])),
        Row("capture_one_layer", f"one layer/head full capture / sdpa forward ({where})", r_one, "x", FULL_TARGET,
            judge(r_one, FULL_TARGET, smoke=smoke),
            f"one layer {t['one']:.3f} s, sdpa {t['sdpa']:.3f} s (best of {rounds}, {threads} threads)"
            + one.format(t1["one"] / t1["sdpa"])),
    ]
