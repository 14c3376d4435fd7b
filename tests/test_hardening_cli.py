"""Bad files and models on the command line: a non-zero exit and one clear stderr line, no traceback.

Runs `app.cli.main` in-process (the console script's entry point; no interpreter start-up per
case) on tiny models saved to temp folders.
"""
from __future__ import annotations

import io
import json
import re
import struct
import zlib

import pytest
import torch
from PIL import Image

from app.cli import main
from tests.tiny_models import save_tiny, tiny_bert, tiny_image_processor, tiny_tokenizer, tiny_vit


def _png(im: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def _bomb_png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    bert = save_tiny(tiny_bert(), tiny_tokenizer(), root / "bert")
    vit = save_tiny(tiny_vit(), tiny_image_processor(), root / "vit")
    pickled = root / "pickled"
    pickled.mkdir()
    for f in bert.iterdir():
        if f.suffix != ".safetensors":
            (pickled / f.name).write_bytes(f.read_bytes())
    torch.save(tiny_bert().state_dict(), pickled / "pytorch_model.bin")
    remote = root / "remote"
    remote.mkdir()
    for f in bert.iterdir():
        (remote / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((remote / "config.json").read_text())
    cfg["auto_map"] = {"AutoModel": "modeling_x.XModel"}
    (remote / "config.json").write_text(json.dumps(cfg))
    files = {
        "latin1.txt": "caf\xe9 au lait".encode("latin-1"),
        "binary.txt": _png(Image.new("RGB", (32, 32))),
        "empty.txt": b"",
        "tiny.png": _png(Image.new("RGB", (1, 1))),
        "bomb.png": _bomb_png(9000, 9000),
        "truncated.jpg": _png(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")[:600],
        "tiff.png": _png(Image.new("RGB", (32, 32)), "TIFF"),
        "ok.png": _png(Image.new("RGB", (32, 32), "red")),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    return {"root": root, "bert": bert, "vit": vit, "pickled": pickled, "remote": remote}


CASES = [
    ("bert", "--text-file", "latin1.txt", r"not valid UTF-8 text: .* at byte 3 \(line 1, column 4"),
    ("bert", "--text-file", "binary.txt", "looks like a PNG image, not text"),
    ("bert", "--text-file", "empty.txt", "empty"),
    ("vit", "--image", "tiny.png", "only 1x1 pixels: too small"),
    ("vit", "--image", "bomb.png", "9000x9000 = 81,000,000 pixels, over the limit"),
    ("vit", "--image", "truncated.jpg", "corrupt or truncated"),
    ("vit", "--image", "tiff.png", "is a TIFF image, which is not supported"),
    ("bert", "--image", "ok.png", "this is a text model"),
    ("vit", "--text", "the cat", "this is an image model"),
    ("missing", "--text", "the cat", "not a model folder"),
    ("pickled", "--text", "the cat", "only pickle weights"),
    ("remote", "--text", "the cat", "trust_remote_code"),
]


@pytest.mark.parametrize("model, flag, value, expected", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_bad_input_is_one_clear_line(folders, capsys, model, flag, value, expected):
    root = folders["root"]
    model_path = str(root / "no-such-model") if model == "missing" else str(folders[model])
    arg = str(root / value) if flag != "--text" else value
    code = main(["export", "--model", model_path, flag, arg, "--out", str(root / f"out-{model}-{value}")])
    err = capsys.readouterr().err
    assert code != 0
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1, err
    assert errors[0].startswith("attnscope export: error: ")
    assert re.search(expected, errors[0], flags=re.IGNORECASE), errors[0]
    assert "Traceback" not in err
