"""Train and measure the built-in demo models: `python -m demos.build [NAME ...] [--steps N] [--eval-only]`.

Writes sample_inputs/models/<name>/ (weights, config, tokenizer/processor) and its metrics.json.
"""
from __future__ import annotations

import argparse
import json
import importlib
import sys

from demos import _train

MODULES = {
    "shapes-vit": "demos.shapes_vit",
    "shapes-captioner": "demos.shapes_captioner",
    "recall-lm": "demos.recall_lm",
    "negation-classifier": "demos.negation",
}
EVAL_N = {"shapes-vit": 1000, "shapes-captioner": 1000, "recall-lm": 1000, "negation-classifier": 2000}
EVAL_SEED = 20_261_204


def build(name: str, *, steps: int | None, eval_only: bool) -> dict:
    mod = importlib.import_module(MODULES[name])
    folder = _train.MODELS_DIR / name
    secs = None
    if eval_only:  # keep the recorded training cost of the weights being re-measured
        old = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
        if old.get("train_wall_seconds") is not None:
            secs = (old["train_wall_seconds"], old["train_cpu_seconds"])
    else:
        secs = mod.train(folder, **({} if steps is None else {"steps": steps}))
    _train.setup(0)
    loaded = mod.load(folder)
    loaded = loaded if isinstance(loaded, tuple) else (loaded,)
    metrics = mod.evaluate(*loaded, n=EVAL_N[name], seed=EVAL_SEED)
    record = _train.write_metrics(folder, metrics, targets=mod.TARGETS, train_seconds=secs,
                                 command=_train.command_line(), training=mod.TRAINING)
    print(name, record["metrics"], "targets met:", record["targets_met"], flush=True)
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m demos.build", description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", metavar="NAME", help=f"models to build, of {list(MODULES)} (default: all)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: each model's own)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: fastest on a busy 2-core machine)")
    p.add_argument("--eval-only", action="store_true", help="measure the shipped weights without training")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in MODULES]
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from {list(MODULES)}")
    _train.THREADS = args.threads
    ok = True
    for name in args.names or list(MODULES):
        ok &= all(build(name, steps=args.steps, eval_only=args.eval_only)["targets_met"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
