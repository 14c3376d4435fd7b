"""Forward-time ratios of the two capture modes (issue 7), measured in one interleaved run.

  full capture  : forward inside capture_attention(model)            / eager forward without capture
  stats capture : forward inside capture_attention(model, mode="stats") / default sdpa forward without capture
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

    with torch.no_grad():
        t = interleaved_best({"eager": with_impl("eager"), "full": full, "sdpa": with_impl("sdpa"), "stats": stats},
                             rounds)
    r_full, r_stats = t["full"] / t["eager"], t["stats"] / t["sdpa"]
    layers, heads = shape["num_hidden_layers"], shape["num_attention_heads"]
    where = f"{layers} layers x {heads} heads, hidden {shape['hidden_size']}, {tokens} tokens"
    return [
        Row("capture_full", f"full capture / eager forward ({where})", r_full, "x", FULL_TARGET,
            judge(r_full, FULL_TARGET, smoke=smoke),
            f"full {t['full']:.3f} s, eager {t['eager']:.3f} s (best of {rounds})"),
        Row("capture_stats", f"statistics-only capture / sdpa forward ({where})", r_stats, "x", STATS_TARGET,
            judge(r_stats, STATS_TARGET, smoke=smoke),
            f"stats {t['stats']:.3f} s, sdpa {t['sdpa']:.3f} s (best of {rounds})"),
    ]
