"""The notebook example in docs/notebook.md runs as written (load, capture, analyse, draw, save)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from hooks.registry import BUILTIN_MODELS

DOC = Path(__file__).resolve().parent.parent / "docs" / "notebook.md"


def _example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, "docs/notebook.md has no ```python block"
    return blocks[0]


def test_example_is_about_ten_lines():
    lines = [line for line in _example().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(lines) <= 14, lines


@pytest.mark.skipif(not BUILTIN_MODELS["negation-classifier"].available, reason="demo weights not in this checkout")
def test_notebook_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_example(), str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation

    png = tmp_path / "matrix.png"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    entropy, sec, fig = namespace["entropy"], namespace["sec"], namespace["fig"]
    assert tuple(entropy.shape) == (len(sec.layers), sec.n_heads)
    assert float(entropy.min()) >= 0.0 and float(entropy.max()) <= 1.0 + 1e-6
    assert len(namespace["labels"]) == len(sec.layers)
    assert fig.data and fig.layout.title.text  # a drawn plotly figure
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("class: ") and "On this input" in printed[2]
