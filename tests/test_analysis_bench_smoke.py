"""Smoke run of benchmarks/bench_analysis.py at tiny sizes (not a timing test: it only has to run)."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_analysis.py"


def test_bench_analysis_smoke_runs_and_reports_every_benchmark(capsys):
    spec = importlib.util.spec_from_file_location("bench_analysis", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(["--smoke"])
    assert set(results) == {"rollout", "patterns", "entropy", "faithfulness"}
    assert all(math.isfinite(v) and v > 0 for v in results.values())
    out = capsys.readouterr().out
    assert "rollout" in out and "faithfulness" in out and "s wall" in out
