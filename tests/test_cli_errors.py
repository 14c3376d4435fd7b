"""Bad arguments and bad files for `attnscope export` / `inspect`, called in-process (fast): each gives
exactly one "attnscope <command>: error: ..." line on stderr, a non-zero status, no traceback,
and writes nothing. (tests/test_cli.py runs two of these as real subprocesses; bad files and models
as such, e.g. bombs, pickles, remote code, are in tests/test_hardening_cli.py.)"""
from __future__ import annotations

import io
import json
import re
import shlex
from pathlib import Path

import pytest
from PIL import Image

from app.cli_export import CliError, export_main, inspect_main, parse_indices
from tests.tiny_models import save_tiny, tiny_gpt2, tiny_image_processor, tiny_tokenizer, tiny_vit


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    gpt2 = save_tiny(tiny_gpt2(), tiny_tokenizer(template=None), root / "gpt2")
    vit = save_tiny(tiny_vit(), tiny_image_processor(), root / "vit")
    remote = root / "remote"  # needs its own code: the loader's message must name the CLI flag
    remote.mkdir()
    for f in gpt2.iterdir():
        (remote / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((remote / "config.json").read_text())
    (remote / "config.json").write_text(json.dumps({**cfg, "auto_map": {"AutoModel": "modeling_x.XModel"}}))
    (root / "noconfig").mkdir()
    return {"gpt2": gpt2, "vit": vit, "remote": remote, "noconfig": root / "noconfig"}


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("files")
    made = {
        "empty.txt": b"   \n\t ",
        "ok.txt": b"the cat sat on the mat",
        "big.txt": b"the cat " * (3 * 2**20 // 8),  # 3 MiB: refused before it is read
        "corrupt.png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
        "zero.png": b"",
        "ok.png": _png(32, 32),
    }
    for name, data in made.items():
        (root / name).write_bytes(data)
    (root / "a_folder.txt").mkdir()
    (root / "only_images").mkdir()
    (root / "only_images" / "x.png").write_bytes(_png(8, 8))
    return {name: root / name for name in [*made, "a_folder.txt", "only_images"]}


def _run(main, argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if ": error: " in line]
    assert "Traceback" not in captured.err
    assert len(errors) == 1, captured.err
    assert captured.out == ""
    return code, errors[0]


# (argv with {gpt2} {vit} {remote} {noconfig} {out} and file names, status, fragments of the message)
EXPORT_CASES = [
    ("--model {gpt2} --text hi", 2, ["required: --out"]),
    ("--model {gpt2} --text hi --text-file {ok.txt} --out {out}", 2, ["not allowed with"]),
    ("--text hi --out {out}", 2, ["--model"]),
    ("--model {gpt2} --text hi --views matrix,heat --out {out}", 2, ["--views", "'heat'"]),
    ("--model {gpt2} --text hi --formats png,gif --out {out}", 2, ["--formats", "'gif'"]),
    ("--model {gpt2} --text hi --layers 1- --out {out}", 2, ["--layers '1-'", "0,3-5"]),
    ("--model {gpt2} --text hi --layers 3-1 --out {out}", 2, ["--layers '3-1'"]),
    ("--model {gpt2} --text hi --heads -1 --out {out}", 2, ["start at 0"]),
    ("--model {gpt2} --text hi --fusion median --out {out}", 2, ["--fusion", "median"]),
    ("--model {gpt2} --text hello_there --layers 7 --out {out}", 2, ["--layers 7", "layers 0-1"]),
    ("--model {gpt2} --text hello_there --heads 1,4 --out {out}", 2, ["--heads 1,4", "heads 0-3"]),
    ("--model {noconfig} --text hi --out {out}", 1, ["no config.json"]),
    ("--model {remote} --text hi --out {out}", 1, ["Only if you trust the source", "load it with --trust-remote-code."]),
    ("--model {gpt2} --text '   ' --out {out}", 1, ["--text is empty"]),
    ("--model {gpt2} --text-file {empty.txt} --out {out}", 1, ["empty"]),
    ("--model {gpt2} --text-file {missing.txt} --out {out}", 1, ["does not exist"]),
    ("--model {gpt2} --text-file {big.txt} --out {out}", 1, ["big.txt", "3.0 MiB, over the 2 MiB limit"]),
    ("--model {gpt2} --text-file {a_folder.txt} --out {out}", 1, ["is not a file"]),
    ("--model {vit} --image {corrupt.png} --out {out}", 1, ["corrupt.png"]),
    ("--model {vit} --image {zero.png} --out {out}", 1, ["zero.png", "empty"]),
    ("--model {gpt2} --inputs {only_images} --out {out}", 1, ["no text files", "x.png"]),
    ("--model {gpt2} --inputs {ok.txt} --out {out}", 1, ["is not a folder"]),
    ("--model {gpt2} --text hi --out {ok.txt}", 1, ["is a file, not a folder"]),
]


@pytest.mark.parametrize("argv, status, fragments", EXPORT_CASES, ids=[c[0][:60] for c in EXPORT_CASES])
def test_export_bad_input_is_one_line(argv, status, fragments, models, files, tmp_path, capsys):
    names = {**{k: str(v) for k, v in models.items()}, **{k: str(v) for k, v in files.items()},
             "out": str(tmp_path / "out"), "missing": str(tmp_path / "nope"),
             "missing.txt": str(tmp_path / "missing.txt")}
    args = [re.sub(r"\{([^}]+)\}", lambda m: names[m.group(1)], a) for a in shlex.split(argv)]
    code, line = _run(export_main, args + ["--quiet"], capsys)
    assert code == status, line
    assert line.startswith("attnscope export: error: ")
    for frag in fragments:
        assert frag in line, line
    assert not (tmp_path / "out").exists()  # nothing written on failure


def test_inspect_bad_input_is_one_line(models, files, capsys):
    code, line = _run(inspect_main, ["--model", str(models["vit"]), "--image", str(files["zero.png"])], capsys)
    assert code == 1 and line.startswith("attnscope inspect: error: ") and "empty" in line
    code, line = _run(inspect_main, ["--model", str(models["gpt2"]), "--text", "hi", "--inputs", "x"], capsys)
    assert code == 2 and "unrecognized arguments: --inputs" in line  # inspect takes one input


def test_non_empty_out_needs_force(models, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    argv = ["--model", str(models["gpt2"]), "--text", "the cat sat", "--views", "entropy", "--formats", "json",
            "--faithfulness", "never", "--quiet", "--out", str(out)]
    code, line = _run(export_main, argv, capsys)
    assert code == 1 and "is not empty" in line and "--force" in line
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    assert export_main(argv + ["--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt", "report.json"]
    assert (out / "mine.txt").read_text() == "keep me"  # --force replaces our files, deletes nothing
    report = json.loads((out / "report.json").read_text())
    assert [f["name"] for f in report["figures"]] == []  # json only: no figure files were rendered


@pytest.mark.parametrize("spec, expected", [
    (None, None), ("all", None), ("0", [0]), ("0,3-5", [0, 3, 4, 5]), (" 2, 1 ,2", [1, 2]), ("4-4", [4]),
])
def test_parse_indices(spec, expected):
    assert parse_indices(spec) == expected


@pytest.mark.parametrize("spec", ["a", "1-", "-1", "3-1", "1,,2", "1.5"])
def test_parse_indices_rejects(spec):
    with pytest.raises(CliError) as err:
        parse_indices(spec, what="heads")
    assert err.value.code == 2 and "--heads" in str(err.value)
