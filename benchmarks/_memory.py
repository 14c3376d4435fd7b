"""Peak resident memory of a statistics-only capture, measured in a fresh process (issue 7).

Run as a script (the suite starts one process per size):

    python benchmarks/_memory.py --tokens 4096 [--smoke]

prints one JSON line per size: {"tokens", "model_gb", "extra_gb", "seconds", "peak_source", ...}
(several sizes run one after the other in this process: the smoke run saves a start-up that way).
model_gb = VmRSS after building the model and a short warm-up forward; extra_gb = peak RSS during
the captured forward minus model_gb. The peak is the kernel's high-water mark (VmHWM) after
resetting it (`echo 5 > /proc/self/clear_refs`); where the reset is refused, a 2 ms sampler of
VmRSS is used instead. tracemalloc would miss torch's allocations, so RSS is the measure.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: repo root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._common import FULL_SHAPE, SMOKE_SHAPE, bert_model, token_ids  # noqa: E402

GB = 1024**3


def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        return False
    return _status_kb("VmHWM") <= _status_kb("VmRSS") + 1024  # the reset took effect


class _Sampler(threading.Thread):
    """Fallback: the largest VmRSS seen every 2 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kb = _status_kb("VmRSS")
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak_kb = max(self.peak_kb, _status_kb("VmRSS"))

    def stop(self) -> int:
        self._stop.set()
        self.join()
        return max(self.peak_kb, _status_kb("VmRSS"))


def measure(tokens: int, *, smoke: bool) -> dict:
    from hooks import capture_attention

    shape = SMOKE_SHAPE if smoke else FULL_SHAPE
    model = bert_model(shape, max_positions=max(tokens, 512))
    ids = token_ids(tokens, shape["vocab_size"])
    with torch.no_grad():
        with capture_attention(model, mode="stats"):
            model(input_ids=ids[:, :16])  # warm-up: lazy imports, thread pools
        model_kb = _status_kb("VmRSS")
        reset = _reset_hwm()
        sampler = None if reset else _Sampler()
        if sampler is not None:
            sampler.start()
        t0 = time.perf_counter()
        with capture_attention(model, mode="stats") as cap:
            model(input_ids=ids)
        seconds = time.perf_counter() - t0
        peak_kb = _status_kb("VmHWM") if sampler is None else sampler.stop()
    entropy = torch.stack([s.head_entropy()[0] for s in cap.stats])  # [layers, heads]
    if not bool(torch.isfinite(entropy).all()) or len(cap.stats) != shape["num_hidden_layers"]:
        raise RuntimeError("statistics-only capture produced missing or non-finite statistics")
    layers, heads = shape["num_hidden_layers"], shape["num_attention_heads"]
    return {
        "tokens": tokens,
        "layers": layers,
        "heads": heads,
        "model_gb": model_kb * 1024 / GB,
        "extra_gb": (peak_kb - model_kb) * 1024 / GB,
        "seconds": seconds,
        "peak_source": "VmHWM after clear_refs" if sampler is None else "VmRSS sampled every 2 ms",
        "full_maps_gb": layers * heads * tokens * tokens * 4 / GB,  # what output_attentions would hold
        "head_means_gb": sum(s.head_mean.numel() * s.head_mean.element_size() for s in cap.stats) / GB,
        "mean_entropy": float(entropy.mean()),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, nargs="+", required=True)
    ap.add_argument("--smoke", action="store_true", help="tiny model (hidden 32, 2 layers, 4 heads)")
    args = ap.parse_args(argv)
    for n in args.tokens:
        print(json.dumps(measure(n, smoke=args.smoke)), flush=True)


if __name__ == "__main__":
    main()
