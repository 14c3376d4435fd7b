"""The README stays true: its Python example runs, its notebook block is the tested one, its links resolve."""
from __future__ import annotations

import re
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_api_example_runs_and_captures_every_layer(capsys):
    namespace: dict = {}
    exec(compile(_python_blocks(README)[0], "README.md", "exec"), namespace)  # noqa: S102 - our own docs
    cap, layers = namespace["cap"], namespace["layers"]
    n_layers = namespace["bundle"].model.config.n_layer
    assert len(cap.maps) == n_layers and all(w.dim() == 4 for w in layers)
    rows = layers[0].sum(-1)  # [batch, heads, q]: attention rows are distributions
    assert torch.allclose(rows, torch.ones_like(rows), atol=1e-5)
    assert "transformer.h.0.attn" in capsys.readouterr().out


def test_readme_notebook_block_is_the_one_docs_test_runs():
    notebook = _python_blocks((REPO / "docs" / "notebook.md").read_text(encoding="utf-8"))[0]
    assert notebook in _python_blocks(README)


def test_readme_links_and_images_exist():
    targets = re.findall(r"\]\(((?!https?:)[^)#\s]+)\)", README)
    assert targets, "README has no relative links"
    missing = [t for t in targets if not (REPO / t).exists()]
    assert not missing, missing
