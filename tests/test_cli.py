"""`attnscope export` / `attnscope inspect` as a user runs them: subprocesses on tiny Hugging Face
models saved to temp folders and on the built-in demos, checking the files, report.json against
its schema, attention.npz against the captured maps, and stderr for one-line errors.

Each subprocess costs a few seconds of torch start-up, so each one checks many things at once; the
remaining cases (captioner sections, image folders, wide tables) call `export_main` / `inspect_main`
in-process.
"""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli_export import export_main, inspect_main
from app.export import validate_report
from hooks.registry import BUILTIN_MODELS
from tests.tiny_models import (
    save_tiny,
    tiny_bert,
    tiny_gpt2,
    tiny_image_processor,
    tiny_tokenizer,
    tiny_vision_encoder_decoder,
    tiny_vit,
)

ROOT = Path(__file__).resolve().parent.parent
PNG, PDF = b"\x89PNG\r\n\x1a\n", b"%PDF"


def cli(*args: str, cwd: Path | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    """Run `python -m app.cli ARGS` the way the `attnscope` script does."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ATTNSCOPE_DEBUG": ""}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, command: str, *fragments: str, code: int = 1):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith(f"attnscope {command}: error: ")]
    assert len(errors) == 1, proc.stderr
    for frag in fragments:
        assert frag in errors[0], errors[0]


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory) -> Path:
    return save_tiny(tiny_gpt2(n_positions=16), tiny_tokenizer(template=None), tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    return save_tiny(tiny_bert(), tiny_tokenizer(), tmp_path_factory.mktemp("bert"))


def _figure_files(report: dict) -> set[str]:
    return {f for fig in report["figures"] for f in fig["files"]}


def test_export_text_tiny_gpt2(gpt2_dir, tmp_path):
    """One text input past the model's 16 positions: selection, every static format, CSV, NPZ, schema."""
    text = "the cat sat on the mat and the dog ran under the big tree and the bird flew over it"  # 20 words
    out = tmp_path / "out"
    proc = cli("export", "--model", str(gpt2_dir), "--text", text, "--layers", "1", "--heads", "2",
               "--views", "matrix,rollout", "--formats", "png,svg,pdf,csv,npz,json", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "1/1" in proc.stderr  # progress bar on stderr
    assert proc.stdout == ""

    report = json.loads((out / "report.json").read_text())
    assert validate_report(report) == []
    assert report["model"]["class"] == "GPT2LMHeadModel"
    assert (report["model"]["num_layers"], report["model"]["num_heads"]) == (2, 4)
    assert report["selection"] == {"layers": [1], "heads": [2]}
    assert report["inputs"][0]["kind"] == "text" and report["inputs"][0]["num_tokens"] == 16
    assert any("truncat" in w["message"].lower() for w in report["warnings"]), report["warnings"]
    stats = report["statistics"]["self-attention"]
    assert np.asarray(stats["entropy_normalized"]).shape == (2, 4)
    assert "faithfulness" in report["statistics"]  # auto: 16 positions <= 128

    names = {fig["name"] for fig in report["figures"]}
    assert names == {"matrix-L1-H2", "rollout"}
    files = _figure_files(report)
    on_disk = {f"figures/{p.name}" for p in (out / "figures").iterdir()}
    assert files == on_disk
    for stem in names:
        assert (out / f"figures/{stem}.png").read_bytes().startswith(PNG)
        assert (out / f"figures/{stem}.pdf").read_bytes().startswith(PDF)
        assert b"<svg" in (out / f"figures/{stem}.svg").read_bytes()[:2000]
    assert "figures/rollout.csv" in files  # rollout is drawn as a matrix view

    rows = list(csv.reader(io.StringIO((out / "figures/matrix-L1-H2.csv").read_text())))
    assert rows[0][0] == "query \\ key" and len(rows) == 17 and len(rows[0]) == 17
    matrix = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    np.testing.assert_allclose(matrix.sum(1), 1.0, atol=1e-5)  # rows of one head are distributions

    maps = np.load(out / "attention.npz")
    assert sorted(maps.files) == ["transformer.h.0.attn", "transformer.h.1.attn"]
    w = maps["transformer.h.1.attn"]
    assert w.shape == (1, 4, 16, 16) and w.dtype == np.float32  # [batch, heads, q, k]
    np.testing.assert_allclose(w[0, 2], matrix, atol=1e-6)  # the CSV is head 2 of the captured map
    assert np.allclose(np.triu(w[0, 0], 1), 0)  # causal


def test_export_inputs_folder_aggregates(bert_dir, tmp_path):
    """--inputs DIR: per-input figures with sanitised names, skipped files, cross-input statistics."""
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a cat.txt").write_text("the cat sat on the mat", encoding="utf-8")
    (folder / "Héllo wörld!.txt").write_text("a dog ran under the tree", encoding="utf-8")
    (folder / "notes.csv").write_text("not an input")
    (folder / ".hidden.txt").write_text("skipped too")
    out = tmp_path / "out"
    proc = cli("export", "--model", str(bert_dir), "--inputs", str(folder), "--views", "consistency",
               "--formats", "png,npz,json", "--faithfulness", "never", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "2/2" in proc.stderr and "skipping 1 file(s)" in proc.stderr and "notes.csv" in proc.stderr

    report = json.loads((out / "report.json").read_text())
    assert validate_report(report) == []
    assert [i["name"] for i in report["inputs"]] == ["Héllo wörld!.txt", "a cat.txt"]  # sorted by name
    stats = report["statistics"]
    assert set(stats["per_input"]) == {"Héllo wörld!.txt", "a cat.txt"}
    cross = stats["cross_input"]["self-attention"]
    for name in ("entropy", "first", "previous", "current", "delimiter", "local", "broad"):
        mean, spread = np.asarray(cross[name]["mean"], float), np.asarray(cross[name]["spread"], float)
        assert mean.shape == spread.shape == (2, 4), name
        assert np.all(np.nan_to_num(spread) >= 0)
    per = [np.asarray(stats["per_input"][n]["self-attention"]["entropy_normalized"]) for n in ("Héllo wörld!.txt", "a cat.txt")]
    assert not np.allclose(per[0], per[1])  # two different inputs really were captured

    figure_names = {fig["name"] for fig in report["figures"]}
    assert figure_names == {"cross_input", "a_cat-layer_consistency", "a_cat-head_distance",
                            "Hello_world-layer_consistency", "Hello_world-head_distance"}
    for f in (out / "figures").iterdir():
        assert f.suffix == ".png" and f.read_bytes().startswith(PNG)
        assert all(c.isascii() and (c.isalnum() or c in "._-") for c in f.name), f.name
    maps = np.load(out / "attention.npz")
    assert {k.split("/")[0] for k in maps.files} == {"a_cat", "Hello_world"}
    assert maps["a_cat/bert.encoder.layer.0.attention.self"].shape == (1, 4, 8, 8)  # [CLS] 6 words [SEP]


def test_inspect_tiny_gpt2_summary(gpt2_dir):
    proc = cli("inspect", "--model", str(gpt2_dir), "--text", "the cat sat on the mat", "--faithfulness", "always")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith(f"model: {gpt2_dir} (GPT2LMHeadModel, text, 2 layers x 4 heads")
    assert "input: 'the cat sat on the mat' (6 tokens)" in out
    assert "output: next token:" in out
    table = [line.split() for line in out.splitlines() if line.strip().startswith(("L0 ", "L1 "))]
    assert len(table) == 2 and all(len(row) == 1 + 2 * 4 for row in table)  # layer + (entropy, label) x 4 heads
    assert all(0.0 <= float(v) <= 1.0 for row in table for v in row[1::2])
    assert "mask check: Mask check passed" in out and "future keys" in out
    assert "sinks:" in out
    assert "faithfulness: On this input" in out and "occlusion AOPC" in out
    assert "Attention is not importance" in out
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(not BUILTIN_MODELS["shapes-vit"].available, reason="shapes-vit weights not in this checkout")
def test_export_builtin_shapes_vit_image(tmp_path):
    image = ROOT / "sample_inputs/images/shapes-vit-1.png"
    out = tmp_path / "out"
    proc = cli("export", "--model", "shapes-vit", "--image", str(image), "--layers", "0", "--views",
               "image", "--formats", "png,json,npz", "--faithfulness", "never", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert validate_report(report) == []
    assert report["model"]["id"] == "shapes-vit"
    assert report["inputs"][0]["kind"] == "image" and len(report["inputs"][0]["image_sha256"]) == 64
    assert [fig["name"] for fig in report["figures"]] == ["image-attention-L0"]
    for fig in report["figures"]:
        assert (out / fig["files"][0]).read_bytes().startswith(PNG)
    maps = np.load(out / "attention.npz")
    assert len(maps.files) == report["model"]["num_layers"]
    assert all(maps[k].ndim == 4 and maps[k].shape[2] == maps[k].shape[3] for k in maps.files)


def test_bad_arguments_and_files_give_one_line_errors(gpt2_dir, tmp_path):
    """Two real processes: a usage error and a binary file renamed .txt (exit status, no traceback;
    both are caught before torch is even imported, so these processes are quick)."""
    proc = cli("export", "--model", str(gpt2_dir), "--text", "hi", "--views", "matrix,heatmap", "--out",
               str(tmp_path / "o"))
    assert_one_line_error(proc, "export", "--views", "'heatmap'", "matrix,model,tokens", code=2)
    fake = tmp_path / "photo.txt"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    proc = cli("inspect", "--model", str(gpt2_dir), "--text-file", str(fake))
    assert_one_line_error(proc, "inspect", "photo.txt", "not text")
    assert not (tmp_path / "o").exists()


def test_export_captioner_sections_in_process(tmp_path, capsys):
    """Image-to-text (ViT + GPT-2 decoder): one figure set per attention section, prefixed by it.
    In-process (`export_main`) to spare a torch start-up; CSV only, so nothing is rendered."""
    model = save_tiny(tiny_vision_encoder_decoder(), [tiny_image_processor(), tiny_tokenizer(template=None)],
                      tmp_path / "captioner")
    image = tmp_path / "img.png"
    Image.new("RGB", (40, 30), "blue").save(image)
    out = tmp_path / "out"
    code = export_main(["--model", str(model), "--image", str(image), "--layers", "1", "--views",
                        "matrix,image,rollout", "--formats", "csv,json,npz", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert validate_report(report) == []
    assert set(report["statistics"]) == {"encoder self-attention", "decoder self-attention", "decoder cross-attention"}
    names = {fig["name"] for fig in report["figures"]}
    assert {"encoder-self-matrix-L1", "decoder-self-matrix-L1", "decoder-cross-matrix-L1",
            "encoder-self-image-attention-L1", "encoder-self-image-rollout", "decoder-self-rollout",
            "decoder-cross-image-cross-attention-L1", "decoder-cross-image-relevance"} <= names
    rows = list(csv.reader(io.StringIO((out / "figures/decoder-cross-matrix-L1.csv").read_text())))
    assert len(rows[0]) - 1 == 17  # keys: CLS + 4x4 patches (the processor resizes to 32x32, patch 8)
    assert any("Faithfulness check not available" in w["message"] for w in report["warnings"])
    maps = np.load(out / "attention.npz")
    assert {k.split("/")[0] for k in maps.files} == {"encoder", "decoder"}


def test_inspect_wide_model_table_in_blocks(tmp_path, capsys):
    """16 heads: the table comes in blocks of 8 heads so rows stay terminal-width (in-process)."""
    model = save_tiny(tiny_bert(num_attention_heads=16, hidden_size=64), tiny_tokenizer(), tmp_path / "bert16")
    code = inspect_main(["--model", str(model), "--text", "the cat sat on the mat", "--faithfulness", "never",
                         "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    headers = [line.split() for line in out.splitlines() if line.strip().startswith("layer ")]
    assert headers == [["layer"] + [f"h{h}" for h in range(8)], ["layer"] + [f"h{h}" for h in range(8, 16)]]
    rows = [line for line in out.splitlines() if line.strip().startswith(("L0 ", "L1 "))]
    assert len(rows) == 4 and all(len(r) <= 132 for r in rows)
    assert "faithfulness: not run (--faithfulness never)" in out


def test_export_image_folder_in_process(tmp_path, capsys):
    """--inputs DIR of images for an image model: .jpg/.png read, a .txt skipped, per-input hashes,
    cross-input statistics; json only (nothing rendered)."""
    model = save_tiny(tiny_vit(), tiny_image_processor(), tmp_path / "vit")
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.effect_noise((40, 40), 60).convert("RGB").save(folder / "noise.jpg")
    Image.new("RGB", (32, 48), "green").save(folder / "green.png")
    (folder / "readme.txt").write_text("not an image")
    out = tmp_path / "out"
    code = export_main(["--model", str(model), "--inputs", str(folder), "--formats", "json",
                        "--faithfulness", "never", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "skipping 1 file(s)" in err and "readme.txt" in err and "2/2" in err
    report = json.loads((out / "report.json").read_text())
    assert validate_report(report) == []
    assert [(i["name"], i["kind"]) for i in report["inputs"]] == [("green.png", "image"), ("noise.jpg", "image")]
    assert len({i["image_sha256"] for i in report["inputs"]}) == 2
    cross = report["statistics"]["cross_input"]["self-attention"]
    assert np.asarray(cross["entropy"]["mean"]).shape == (2, 4)
    assert np.asarray(cross["label_agreement"]).shape == (2, 4)
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]
