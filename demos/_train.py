"""Shared training utilities: seeding, thread limits, warmup-cosine schedule, metrics files."""
from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO / "sample_inputs" / "models"
THREADS = 1  # torch CPU threads (demos.build --threads); on a shared 2-core machine 1 is ~6x faster than 2


def setup(seed: int) -> np.random.Generator:
    """Seed torch and numpy, cap torch at THREADS CPU threads; return the numpy generator."""
    torch.manual_seed(seed)
    torch.set_num_threads(THREADS)
    return np.random.default_rng(seed)


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """LR multiplier: linear warmup over `warmup` steps, then cosine decay to 0.05 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def train_loop(
    model: torch.nn.Module,
    batches: Iterator[dict],
    loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor],
    *,
    steps: int,
    lr: float,
    warmup: int,
    weight_decay: float = 0.01,
    log_every: int = 100,
    evaluate: Callable[[], str] | None = None,
) -> tuple[float, float]:
    """AdamW with warmup-cosine and grad-norm clipping 1.0; prints progress.

    Returns (wall seconds, CPU seconds of this process): on a shared machine the CPU time is the
    honest measure of the training cost, wall time includes waiting for other users."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, steps, warmup))
    model.train()
    t0, c0, running = time.time(), time.process_time(), 0.0
    for step in range(steps):
        loss = loss_fn(model, next(batches))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        running += loss.item()
        if (step + 1) % log_every == 0:
            extra = ""
            if evaluate is not None:
                model.eval()
                extra = " " + evaluate()
                model.train()
            print(f"step {step + 1}/{steps} loss {running / log_every:.4f}{extra} [{time.time() - t0:.0f}s]", flush=True)
            running = 0.0
    model.eval()
    return time.time() - t0, time.process_time() - c0


def write_metrics(folder: Path, metrics: dict, *, targets: dict, train_seconds: tuple[float, float] | None,
                  command: str, training: str = "") -> dict:
    """Write folder/metrics.json: measured values, targets, whether each is met, how it was trained,
    command and date."""
    record = {
        "training": training,
        "metrics": metrics,
        "targets": targets,
        "targets_met": {k: bool(metrics[k] >= v) for k, v in targets.items()},
        "train_wall_seconds": None if train_seconds is None else round(train_seconds[0], 1),
        "train_cpu_seconds": None if train_seconds is None else round(train_seconds[1], 1),
        "command": command,
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads",
    }
    (folder / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, "-m", "demos.build", *sys.argv[1:]])
