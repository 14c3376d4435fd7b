"""The benchmark suite at tiny sizes (CI): the runner produces every row, as a table, JSON and markdown.

Benchmarks are not timed tests: the smoke run judges no target, it checks that each measurement
runs and yields a number (draw rows may be skipped where no Chromium is installed).
"""
from __future__ import annotations

import json
import math

import pytest

from app import cli
from benchmarks import run
from benchmarks._common import Row, judge

ROWS = ["capture_full", "capture_stats", "capture_one_layer", "analysis_rollout", "analysis_entropy", "payload_600", "payload_700", "draw_600", "draw_700",
        "stats_memory_256", "stats_memory_512"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    rc = run.main(["--smoke", "--json", str(out / "bench.json"), "--markdown", str(out / "bench.md")])
    return rc, json.loads((out / "bench.json").read_text()), (out / "bench.md").read_text()


def test_smoke_run_produces_every_row_with_a_number(smoke):
    rc, report, _ = smoke
    assert rc == 0
    rows = {r["key"]: r for r in report["rows"]}
    assert list(rows) == ROWS
    for key, r in rows.items():
        assert r["ok"] is None  # smoke sizes judge nothing
        if key.startswith("draw_") and r["value"] is None:
            assert r["detail"].startswith("skipped:")  # no Chromium here
            continue
        assert isinstance(r["value"], float) and math.isfinite(r["value"]) and r["value"] >= 0, r
    assert rows["capture_full"]["value"] > 0 and rows["capture_stats"]["value"] > 0
    assert 0 < rows["payload_600"]["value"] < rows["payload_700"]["value"]
    assert "full maps would be" in rows["stats_memory_512"]["detail"]
    assert report["machine"]["cores"] >= 1 and report["smoke"] is True


def test_markdown_lists_every_row_and_the_machine(smoke):
    _, report, md = smoke
    assert md.startswith("# Benchmarks")
    assert report["machine"]["cpu"] in md and f"torch {report['machine']['torch']}" in md
    for key in ROWS:
        assert f"| `{key}` |" in md


def test_judging_and_table():
    assert judge(1.2, 1.3, smoke=False) is True
    assert judge(1.4, 1.3, smoke=False) is False
    assert judge(1.4, 1.3, smoke=True) is None
    assert judge(0.5, None, smoke=False) is True  # "completes"
    rows = [Row("a", "x", 1.4, "x", 1.3, False), Row("b", "y", None, "ms", 1000.0, None, "skipped: no Chromium")]
    assert [r.status for r in rows] == ["FAIL", "skipped"]
    text = run.table(rows)
    assert "1.40 x" in text and "<= 1.30 x" in text and "FAIL" in text and "skipped" in text


def test_attnscope_bench_dispatches_to_the_runner(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--help"])
    assert exc.value.code == 0
    assert "attnscope bench" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--only", "nothing"])
    assert exc.value.code == 2
    assert "--only takes groups among" in capsys.readouterr().err
