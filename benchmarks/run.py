"""attnscope benchmark suite: every issue-7 figure measured in one run, printed as a table.

    python benchmarks/run.py [--smoke] [--only capture,memory,analysis,figures] [--rounds 3]
                             [--json out.json] [--markdown docs/benchmarks.md]
    attnscope bench [same options]

Rows (full sizes; --smoke runs each on tiny sizes for CI and judges nothing):
  capture_full       forward inside capture_attention(model) / eager forward         <= 1.15 x (512 tokens)
  capture_stats      forward inside capture_attention(model, mode="stats") / sdpa forward  <= 1.3 x (512 tokens)
  stats_memory_4096  peak RSS above the loaded model, statistics-only, 4,096 tokens  <= 1.5 GB (own process)
  stats_memory_8192  the same at 8,192 tokens: completes
  analysis_rollout   attention rollout, 12 layers x 12 heads, 1,024 tokens             <= 1 s
  analysis_entropy   head entropy + pattern scores, same sizes                          <= 1 s
                     (both from benchmarks/bench_analysis.py, the analysis package's own benchmark)
  payload_N, draw_N  plotly payload <= 5 MB and Chromium draw <= 1 s of an N x N matrix (2,048 / 4,096)
Model: BERT-shaped (12 layers, 12 heads, hidden 768) with random weights built from a config.
Timings are the best of --rounds interleaved rounds. Exit status 1 when a full-size target fails.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import io
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as a script or loaded by path: repo root on the path
    sys.path.insert(0, str(HERE.parent))

from benchmarks._common import FULL_SHAPE, SMOKE_SHAPE, Row, judge  # noqa: E402

GROUPS = ("capture", "analysis", "figures", "memory")
MEMORY_TARGET_GB = 1.5
ANALYSIS_TARGET_S = 1.0
SIZES = {
    False: dict(capture=512, memory=(4096, 8192), analysis=["--tokens", "1024", "--repeat", "3"], figures=[2048, 4096]),
    True: dict(capture=32, memory=(256, 512), analysis=["--smoke"], figures=[600, 700]),
}


def machine() -> dict:
    """What the figures were measured on."""
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_gb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0]) / 1024**2
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": None if mem_gb is None else round(mem_gb, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "os": platform.platform(terse=True),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_start": _load(),
    }


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def memory_rows(sizes: tuple[int, int], *, smoke: bool) -> list[Row]:
    """One fresh process per size (smoke: one for both), so each peak starts from a clean heap."""
    results: dict[int, dict | str] = {}
    for batch in ([list(sizes)] if smoke else [[n] for n in sizes]):
        cmd = [sys.executable, str(HERE / "_memory.py"), "--tokens", *map(str, batch)] + (["--smoke"] if smoke else [])
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300 if smoke else 1800)
        except subprocess.TimeoutExpired:
            results.update({n: "timed out" for n in batch})
            continue
        for line in proc.stdout.strip().splitlines():
            r = json.loads(line)
            results[r["tokens"]] = r
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        results.update({n: f"failed (exit {proc.returncode}): {err}" for n in batch if n not in results})
    rows = []
    for i, n in enumerate(sizes):
        r = results[n]
        key, what = f"stats_memory_{n}", f"statistics-only capture at {n} tokens: peak RSS above the loaded model"
        target = MEMORY_TARGET_GB if i == 0 else None
        if i > 0:
            what = f"statistics-only capture at {n} tokens completes (peak RSS above the model)"
        if isinstance(r, str):
            rows.append(Row(key, what, None, "GB", target, False, r))
            continue
        detail = (f"model {r['model_gb']:.2f} GB, forward {r['seconds']:.1f} s, head means {r['head_means_gb']:.2f} GB, "
                  f"full maps would be {r['full_maps_gb']:.1f} GB; {r['peak_source']}")
        rows.append(Row(key, what, r["extra_gb"], "GB", target, judge(r["extra_gb"], target, smoke=smoke), detail))
    return rows


def analysis_rows(args: list[str], *, smoke: bool) -> list[Row]:
    """benchmarks/bench_analysis.py's own timings (best of its repeats), one row per target."""
    from benchmarks import bench_analysis

    with contextlib.redirect_stdout(io.StringIO()):
        res = bench_analysis.main(args)
    size = "tiny sizes (smoke)" if smoke else "12 layers x 12 heads, 1,024 tokens"
    return [
        Row("analysis_rollout", f"attention rollout, {size}", res["rollout"], "s", ANALYSIS_TARGET_S,
            judge(res["rollout"], ANALYSIS_TARGET_S, smoke=smoke), "bench_analysis.py"),
        Row("analysis_entropy", f"head entropy + pattern scores, {size}", res["patterns"], "s", ANALYSIS_TARGET_S,
            judge(res["patterns"], ANALYSIS_TARGET_S, smoke=smoke),
            f"bench_analysis.py; rollout + entropy + patterns together {res['rollout'] + res['patterns']:.2f} s"),
    ]


def run(groups: list[str], *, smoke: bool, rounds: int) -> list[Row]:
    """The rows of `groups`; smoke: tiny sizes, one thread for the in-process parts (tiny ops only
    pay thread hand-offs), torch's thread count restored afterwards."""
    import torch

    sizes = SIZES[smoke]
    threads = torch.get_num_threads()
    if smoke:
        torch.set_num_threads(1)
    try:
        return _run(groups, sizes, smoke=smoke, rounds=rounds)
    finally:
        torch.set_num_threads(threads)


def _run(groups: list[str], sizes: dict, *, smoke: bool, rounds: int) -> list[Row]:
    rows: list[Row] = []
    for group in groups:
        if group == "capture":
            from benchmarks._capture import capture_rows

            rows += capture_rows(SMOKE_SHAPE if smoke else FULL_SHAPE, sizes["capture"], rounds=1 if smoke else rounds,
                                 smoke=smoke)
        elif group == "analysis":
            rows += analysis_rows(sizes["analysis"], smoke=smoke)
        elif group == "figures":
            from benchmarks._figures import figure_rows

            rows += figure_rows(sizes["figures"], smoke=smoke)
        elif group == "memory":
            rows += memory_rows(sizes["memory"], smoke=smoke)
        print(f"  ... {group} done", file=sys.stderr, flush=True)
    return rows


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} {unit}" if unit != "ms" else f"{value:.0f} ms"


def _target(row: Row) -> str:
    return "completes" if row.target is None else f"<= {_fmt(row.target, row.unit)}"


def table(rows: list[Row]) -> str:
    head = ("benchmark", "measured", "target", "status")
    body = [(r.key, _fmt(r.value, r.unit), _target(r), r.status) for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: list[Row], info: dict, command: str) -> str:
    """docs/benchmarks.md: the table, the machine, and how each figure is measured."""
    m = info
    out = [
        "# Benchmarks",
        "",
        "Issue 7's targets, measured in one run by `python benchmarks/run.py` (also `attnscope bench`; "
        "`--markdown docs/benchmarks.md` rewrites this file, `--json` keeps the raw rows, `--smoke` runs "
        "every row at tiny sizes as CI does in `tests/test_bench_smoke.py`).",
        "",
        f"Latest run: {m['date']}, `{command}`, on {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch "
        f"threads), {m['memory_gb']} GB RAM; Python {m['python']}, torch {m['torch']}, transformers "
        f"{m['transformers']}; {m['os']}. Load average (1/5/15 min) {m['load_average_start']} at the start and "
        f"{m.get('load_average_end')} at the end (above ~1 means other work shared the cores with the benchmark).",
        "",
        "| benchmark | what | measured | target | status | details |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        out.append(f"| `{r.key}` | {r.what} | {_fmt(r.value, r.unit)} | {_target(r)} | {r.status} | {r.detail} |")
    out += [
        "",
        "## How each figure is measured",
        "",
        "- **Model**: BERT-shaped (12 layers, 12 heads, hidden 768, FFN 3072) with random weights built from a "
        "config; batch 1; no gradients.",
        "- **Capture ratios** (`capture_full`, `capture_stats`): the four forwards (eager, full capture, sdpa, "
        "statistics-only capture) run interleaved for several rounds and each keeps its best time, so load "
        "from other processes hits all of them alike. The details add the same ratios on one thread: on a "
        "shared machine every parallel operation waits for both threads, so a path with more (smaller) "
        "operations loses more to contention than its extra work; the one-thread ratio is that work alone.",
        "- **Memory** (`stats_memory_*`): a fresh process builds the model, runs a short warm-up, reads VmRSS, "
        "resets the kernel's high-water mark (`/proc/self/clear_refs`), runs the statistics-only forward and "
        "reads VmHWM. The extra includes everything kept: per-row statistics and the float32 head mean of "
        "every layer (`[q, k]` per layer, what rollout needs). `output_attentions=True` would hold the "
        "full-maps figure in the details.",
        "- **Analysis** (`analysis_rollout`, `analysis_entropy`): `benchmarks/bench_analysis.py` (the analysis "
        "package's own benchmark) on random attention of 12 layers x 12 heads: rollout, and head entropy plus "
        "pattern scores; each against 1 s. (A statistics-only capture computes the per-row entropy during "
        "the forward; its per-head reduction is negligible.)",
        "- **Figures** (`payload_*`, `draw_*`): one layer's N x N matrix through `app.figures.prepare_matrix` "
        "(pooled to at most 512 x 512 above 512 tokens) and `to_plotly`; payload = its JSON, draw = "
        "`Plotly.newPlot` plus one animation frame in headless Chromium (Playwright, Debian's "
        "`/usr/bin/chromium`, `--no-sandbox --disable-gpu --disable-background-networking`), best of two.",
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="attnscope bench", description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (CI): every row, no target judged")
    ap.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups of {', '.join(GROUPS)}")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (best is kept)")
    ap.add_argument("--json", type=Path, help="write the rows and machine description as JSON")
    ap.add_argument("--markdown", type=Path, help="write the table as markdown (e.g. docs/benchmarks.md)")
    args = ap.parse_args(argv)
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown or not groups:
        ap.error(f"--only takes groups among {', '.join(GROUPS)}; got {', '.join(unknown) or 'nothing'}")
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    info = machine()
    rows = run(groups, smoke=args.smoke, rounds=args.rounds)
    info["load_average_end"] = _load()
    print(f"attnscope benchmarks{' (smoke sizes)' if args.smoke else ''}: {info['cpu']}, {info['cores']} cores, "
          f"torch {info['torch']}, load {info['load_average_start']} -> {info['load_average_end']}")
    print(table(rows))
    command = "python benchmarks/run.py" + (" " + " ".join(argv) if argv else "")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "smoke": args.smoke,
                                         "rows": [r.as_dict() for r in rows]}, indent=2), encoding="utf-8")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(rows, info, command), encoding="utf-8")
    return 1 if any(r.ok is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
