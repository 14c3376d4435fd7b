"""Shared pieces of the benchmark suite: result rows, the BERT-shaped model, interleaved timing."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

# BERT-base shape (issue 7) and the tiny shape of the CI smoke run (tests' tiny models: hidden 32).
FULL_SHAPE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                  vocab_size=30522)
SMOKE_SHAPE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, vocab_size=99)


@dataclass
class Row:
    """One line of the benchmark table.

    value: the measured figure in `unit` (None when skipped); target: the bound it must not exceed
    (None: "completes"); ok: True / False against the target, None when skipped or in a smoke run
    (smoke sizes say nothing about the full-size targets).
    """

    key: str
    what: str
    value: float | None
    unit: str
    target: float | None
    ok: bool | None
    detail: str = ""

    @property
    def status(self) -> str:
        if self.value is None and self.ok is None:
            return "skipped"
        return {True: "pass", False: "FAIL", None: "-"}[self.ok]

    def as_dict(self) -> dict:
        return {**asdict(self), "status": self.status}


def judge(value: float | None, target: float | None, *, smoke: bool) -> bool | None:
    """Pass/fail of `value <= target` (None when there is nothing to judge or in a smoke run)."""
    if smoke or value is None:
        return None
    return True if target is None else bool(value <= target)


def bert_model(shape: dict, *, max_positions: int, attn: str = "sdpa", seed: int = 0):
    """A BertModel with random weights built from a config (nothing downloads), eval mode."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(max_position_embeddings=max_positions, **shape)
    cfg._attn_implementation = attn
    return BertModel(cfg).eval()


def token_ids(n: int, vocab: int, *, seed: int = 0) -> torch.Tensor:
    """[1, n] random token ids (ids 0..4 are left to special tokens)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(5, vocab, (1, n), generator=g)


def interleaved_best(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Best wall time (s) of each function over `rounds` rounds run A, B, C, A, B, C, ... after one
    warm-up call each, so load from other processes hits every variant alike."""
    for fn in fns.values():
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best
