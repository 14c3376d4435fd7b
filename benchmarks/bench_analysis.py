"""Benchmark of the analysis package (a script, not a test).

Times, on random row-stochastic attention (float32, batch 1):
  rollout    attention_rollout over 12 layers x 12 heads at 1,024 tokens     (target ~1 s on 2 cores)
  patterns   head_patterns (entropy, normalised entropy and pattern scores) for 12 x 12 heads at
             1,024 tokens (target ~1 s on 2 cores); head_entropy alone is printed for reference
  faithfulness  faithfulness_check on a 64-token input of a tiny GPT-2 (built from a config)

Usage: python benchmarks/bench_analysis.py [--tokens 1024] [--layers 12] [--heads 12] [--repeat 3]
                                           [--threads N] [--smoke]
Prints one line per benchmark: best wall time of --repeat runs and the CPU time of that run (all
threads; on a busy machine CPU time is the steadier figure); ``main`` returns the wall times.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: repo root on the path

from analysis import attention_rollout, faithfulness_check, head_entropy, head_patterns  # noqa: E402


def _attention(layers: int, heads: int, n: int, *, causal: bool, seed: int = 0) -> torch.Tensor:
    """Random attention ``[layers, 1, heads, n, n]``, rows summing to 1 (built in place, per layer)."""
    g = torch.Generator().manual_seed(seed)
    out = torch.empty(layers, 1, heads, n, n)
    for i in range(layers):
        x = out[i]
        x.normal_(generator=g).mul_(2.0)
        if causal:
            x.masked_fill_(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        torch.softmax(x, dim=-1, out=x)
    return out


_CPU: dict[int, float] = {}


def _best(fn, repeat: int) -> float:
    """Best wall time of ``repeat`` runs; the CPU time (all threads) of that run goes to ``_CPU``."""
    best, cpu = float("inf"), 0.0
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall = time.perf_counter() - t0
        if wall < best:
            best, cpu = wall, time.process_time() - c0
    _CPU[id(fn)] = cpu
    return best


def _line(label: str, fn, repeat: int) -> float:
    wall = _best(fn, repeat)
    print(f"{label}: {wall:.3f} s wall ({_CPU.pop(id(fn)):.3f} s CPU)", flush=True)
    return wall


def _faithfulness_run(n_tokens: int):
    """Build a tiny GPT-2 and return a callable running one faithfulness check on ``n_tokens``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=300, n_positions=128, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(cfg).eval()
    model.config._attn_implementation = "eager"
    ids = torch.randint(1, 300, (1, n_tokens))
    with torch.no_grad():
        out = model(input_ids=ids, output_attentions=True)
    target = int(out.logits[0, -1].argmax())
    weights = torch.stack(out.attentions)  # [L, 1, heads, n, n]
    raw = weights[-1, 0].mean(0)[-1]  # last layer, head mean, last query row: [n]
    rollout = attention_rollout(list(weights))[0, -1]  # [n]

    def score_fn(keep: torch.Tensor) -> torch.Tensor:
        # occlude by masking the token out of attention (the last token is never removed)
        with torch.no_grad():
            logits = model(input_ids=ids.expand(keep.shape[0], -1), attention_mask=keep.long()).logits
        return torch.softmax(logits[:, -1], dim=-1)[:, target]

    removable = torch.ones(n_tokens, dtype=torch.bool)
    removable[-1] = False

    def run() -> None:
        faithfulness_check(
            n_positions=n_tokens,
            score_fn=score_fn,
            attention_importance={"raw attention": raw, "rollout": rollout},
            removable=removable,
            batch_size=64,
        )

    return run


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat (for CI)")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.tokens, args.layers, args.heads, args.repeat = 64, 2, 4, 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average {load:.1f}")
    results: dict[str, float] = {}

    w = _attention(args.layers, args.heads, args.tokens, causal=False)
    layers = list(w.unbind(0))  # views, no copy: [1, heads, n, n] each
    results["rollout"] = _line(
        f"rollout      {args.layers} layers x {args.heads} heads x {args.tokens} tokens",
        lambda: attention_rollout(layers),
        args.repeat,
    )

    del layers, w
    w = _attention(args.layers, args.heads, args.tokens, causal=True, seed=1)
    delim = torch.zeros(1, args.tokens, dtype=torch.bool)
    delim[0, ::16] = True

    # head_patterns returns the head entropy (nats) and the normalised entropy ("broad") with the
    # pattern scores, so one call is "entropy + pattern scores"; head_entropy alone is timed for reference.
    results["patterns"] = _line(
        f"patterns     entropy + pattern scores, {args.layers}x{args.heads} heads x {args.tokens} tokens",
        lambda: head_patterns(w, causal=True, delimiter_mask=delim),
        args.repeat,
    )
    results["entropy"] = _line(
        "entropy      head_entropy alone, same tensor", lambda: head_entropy(w, normalize=True, causal=True), args.repeat
    )
    del w

    n_faith = 16 if args.smoke else 64
    results["faithfulness"] = _line(
        f"faithfulness occlusion + deletion curves, {n_faith} tokens, tiny GPT-2",
        _faithfulness_run(n_faith),
        1 if args.smoke else min(args.repeat, 2),
    )
    return results


if __name__ == "__main__":
    main()
