"""The dashboard page driven in-process by `streamlit.testing.v1.AppTest`.

Tiny random models (hidden 32, 2 layers, 4 heads) are saved to temp folders and opened through
the sidebar's "Other: Hugging Face id or local folder" field, exactly as a user's folder would be.
Download buttons hand deferred callables to Streamlit's media manager; a recording manager
captures them so each export's bytes can be checked.
"""
from __future__ import annotations

import base64
import io
import json
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from app import pipeline
from app.ui.main import OTHER
from tests.tiny_models import (
    save_tiny,
    tiny_gpt2,
    tiny_image_processor,
    tiny_tokenizer,
    tiny_vision_encoder_decoder,
    tiny_vit,
)

ENTRY = Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py"
TIMEOUT = 120  # seconds per script run: model loading on a busy 2-core machine


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory) -> str:
    return str(save_tiny(tiny_gpt2(), tiny_tokenizer(template=None), tmp_path_factory.mktemp("gpt2")))


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory) -> str:
    return str(save_tiny(tiny_vit(), tiny_image_processor(), tmp_path_factory.mktemp("vit")))


def _app(model_path: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)
    if model_path is not None:
        at.session_state["model_choice"] = OTHER
        at.session_state["model_path"] = model_path
    return at


def _ok(at: AppTest) -> AppTest:
    """The run raised nothing and showed no error."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def _figures(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def _heatmaps(at: AppTest) -> list[dict]:
    return [t for fig in _figures(at) for t in fig["data"] if t["type"] == "heatmap"]


def _array(value) -> np.ndarray:
    """A plotly JSON array: a plain list, or plotly's typed array {"dtype", "bdata", "shape"}."""
    if isinstance(value, dict):
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return flat.reshape([int(x) for x in str(shape).split(",")] if shape else -1).astype(float)
    return np.array(value, dtype=float)


def _png(color=(200, 30, 30)) -> bytes:
    im = Image.new("RGB", (48, 40), (240, 240, 240))
    im.paste(color, (8, 8, 30, 30))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def test_default_page_renders_a_heatmap_with_no_click():
    name = pipeline.default_model()
    assert name in pipeline.builtin_models(), "the registry must name a built-in default model"
    at = _ok(_app().run())
    assert at.session_state["model_choice"] == name
    maps = _heatmaps(at)
    assert maps, "no heatmap on the default page"
    z = _array(maps[0]["z"])
    assert z.ndim == 2 and z.size > 1 and np.nanmax(z) > 0
    assert at.text_area(key="text").value == pipeline.text_samples(name)[0].text  # sample preselected
    assert any("Attention is not importance" in c.value for c in at.caption)  # caveats beside it


def test_text_edit_recaptures_and_relabels_the_axes(gpt2_folder):
    at = _ok(_app(gpt2_folder).run())
    at.text_area(key="text").set_value("the quick brown fox jumps over the lazy dog")
    _ok(at.run())
    ticks = _figures(at)[0]["layout"]["xaxis"]["ticktext"]
    assert "quick" in " ".join(ticks) and len(ticks) == 9
    at.text_area(key="text").set_value("   ")
    at.run()
    assert not at.exception
    assert any("empty" in e.value for e in at.error)  # readable message, page still there
    assert at.sidebar.selectbox(key="model_choice").value == OTHER


def test_views_switch_without_rerunning_the_model(gpt2_folder, monkeypatch):
    at = _ok(_app(gpt2_folder).run())
    at.text_area(key="text").set_value("the quick brown fox jumps")
    _ok(at.run())
    calls = []
    real = pipeline.capture_input
    monkeypatch.setattr(pipeline, "capture_input", lambda *a, **k: calls.append(1) or real(*a, **k))
    for view in ("Model view", "Token view", "Analysis", "Matrix"):
        at.radio(key="view").set_value(view)
        _ok(at.run())
        assert _heatmaps(at) or _figures(at), view
        if view == "Token view":  # coloured text beside the bars
            assert any("<span" in m.value and "fox" in m.value for m in at.markdown)
    at.sidebar.selectbox(key="layer").set_value(1)
    at.sidebar.radio(key="fusion").set_value("one head")
    _ok(at.run())
    at.sidebar.selectbox(key="head").set_value(2)
    _ok(at.run())
    assert "head 2" in _figures(at)[0]["layout"]["title"]["text"]
    assert calls == []  # the captured run was reused every time


def test_generation_steps_through_each_generated_token(gpt2_folder):
    at = _ok(_app(gpt2_folder).run())
    at.radio(key="view").set_value("Generation")
    _ok(at.run())
    at.number_input(key="n_new").set_value(3)
    at.button(key="generate").click()
    _ok(at.run())
    assert any(m.value.startswith("**Generated:**") for m in at.markdown)
    titles = []
    for step in (0, 2):
        at.slider(key="gen_step").set_value(step)
        _ok(at.run())
        titles.append(_figures(at)[0]["layout"]["title"]["text"])
    assert titles[0].startswith("Step 0:") and titles[1].startswith("Step 2:")


def test_several_inputs_give_cross_input_consistency(gpt2_folder):
    at = _ok(_app(gpt2_folder).run())
    at.text_area(key="text").set_value("the cat sat on the mat\n---\na dog ran under the tree\n---\nthe fish swam")
    at.radio(key="view").set_value("Analysis")
    _ok(at.run())
    titles = [f["layout"]["title"]["text"] for f in _figures(at)]
    assert any("entropy" in t.lower() and "3 inputs" in t for t in titles), titles


def test_model_view_cell_opens_in_the_matrix_view(gpt2_folder):
    at = _ok(_app(gpt2_folder).run())
    at.radio(key="view").set_value("Model view")
    _ok(at.run())
    at.selectbox(key="grid_layer").set_value(1)
    at.selectbox(key="grid_head").set_value(3)
    _ok(at.run())
    at.button(key="open_cell").click()
    _ok(at.run())
    assert at.radio(key="view").value == "Matrix"
    assert at.sidebar.selectbox(key="head").value == 3 and at.sidebar.selectbox(key="layer").value == 1
    assert "layer 1, head 3" in _figures(at)[0]["layout"]["title"]["text"]


def test_image_upload_and_model_switch(gpt2_folder, vit_folder):
    at = _ok(_app(gpt2_folder).run())
    assert at.text_area  # text model: a text box
    at.sidebar.text_input(key="model_path").set_value(vit_folder)
    at.run()
    assert not at.exception
    assert not at.text_area  # image model: no text box
    at.file_uploader(key="upload_image").set_value(("red.png", _png(), "image/png"))
    at.radio(key="view").set_value("Image view")
    _ok(at.run())
    figs = _figures(at)
    assert figs and any(t["type"] == "image" for t in figs[0]["data"])
    assert any(t["type"] == "heatmap" for t in figs[0]["data"])
    for source in ("rollout", "gradient rollout"):
        at.radio(key="image_source").set_value(source)
        _ok(at.run())
        assert source in _figures(at)[0]["layout"]["title"]["text"].lower()


def test_captioner_image_then_caption_cross_attention_and_steps(tmp_path):
    folder = save_tiny(tiny_vision_encoder_decoder(), [tiny_tokenizer(template=None), tiny_image_processor()],
                       tmp_path / "ved")
    at = _app(str(folder))
    at.run()
    at.file_uploader(key="upload_image").set_value(("red.png", _png(), "image/png"))
    _ok(at.run())
    assert any(c.value.startswith("Model output: caption:") for c in at.caption)
    assert at.radio(key="view").value == "Image view"  # image models open on the image view
    title = _figures(at)[0]["layout"]["title"]["text"]
    assert title.startswith("Cross-attention, layer") and "from '" in title  # a generated word
    at.radio(key="image_source").set_value("relevance (Chefer et al.)")
    _ok(at.run())
    assert "relevance" in _figures(at)[0]["layout"]["title"]["text"]
    at.radio(key="view").set_value("Generation")
    _ok(at.run())
    assert _figures(at)[0]["layout"]["title"]["text"].startswith("Step 0: attention when generating")


def test_binary_text_upload_is_a_readable_error_and_the_page_recovers(gpt2_folder):
    at = _ok(_app(gpt2_folder).run())
    at.file_uploader(key="upload_text").set_value(("notes.txt", b"\x7fELF\x02\x01\x00\x00binary", "text/plain"))
    at.run()
    assert not at.exception
    assert any("notes.txt" in e.value and "not text" in e.value for e in at.error)
    at.file_uploader(key="upload_text").set_value(("notes.txt", "the cat sat".encode(), "text/plain"))
    _ok(at.run())
    assert _figures(at)[0]["layout"]["xaxis"]["ticktext"] == ["the", "cat", "sat"]


def test_bad_upload_and_missing_model_are_readable_errors(vit_folder, tmp_path):
    at = _app(vit_folder).run()
    at.file_uploader(key="upload_image").set_value(("broken.png", b"\x89PNG\r\n\x1a\nnot really", "image/png"))
    at.run()
    assert not at.exception and at.error
    at.sidebar.text_input(key="model_path").set_value(str(tmp_path / "no-such-model"))
    at.run()
    assert not at.exception
    assert any("no-such-model" in e.value for e in at.error)


class _Recording(MediaFileManager):
    """Keeps every deferred download callable by file name."""

    made: dict = {}

    def add_deferred(self, data_callable, mimetype, coordinates, file_name=None, **kw):
        _Recording.made[file_name] = data_callable
        return super().add_deferred(data_callable, mimetype, coordinates, file_name=file_name, **kw)


def test_every_export_yields_valid_bytes(gpt2_folder, monkeypatch):
    import streamlit.testing.v1.app_test as app_test

    monkeypatch.setattr(app_test, "MediaFileManager", _Recording)
    _Recording.made = {}
    _ok(_app(gpt2_folder).run())
    files = {name: make() for name, make in _Recording.made.items()}
    by_ext = {Path(name).suffix: data for name, data in files.items()}
    assert set(by_ext) >= {".png", ".svg", ".pdf", ".html", ".csv", ".npz", ".zip"}, sorted(files)
    assert all("/" not in name and ".." not in name for name in files)
    assert by_ext[".png"].startswith(b"\x89PNG\r\n\x1a\n")
    width = int.from_bytes(by_ext[".png"][16:20], "big")
    assert width >= 1000  # 2x scale
    assert by_ext[".pdf"].startswith(b"%PDF-")
    assert ET.fromstring(by_ext[".svg"]).tag.endswith("svg")
    assert b"plotly" in by_ext[".html"].lower()
    assert by_ext[".csv"].decode("utf-8").splitlines()[0].startswith("query")
    with np.load(io.BytesIO(by_ext[".npz"])) as npz:
        arrays = [npz[k] for k in npz.files]
    assert len(arrays) == 2 and all(a.ndim == 4 and a.shape[:2] == (1, 4) for a in arrays)
    with zipfile.ZipFile(io.BytesIO(by_ext[".zip"])) as zf:
        report = json.loads(zf.read("report.json"))
        names = zf.namelist()
    assert report["model"]["num_layers"] == 2 and report["model"]["num_heads"] == 4
    assert report["inputs"][0]["text"] and report["warnings"]
    assert any(n.endswith(".png") for n in names) and "attention.npz" in names


def test_long_input_is_windowed_and_the_page_says_so(tmp_path):
    from tests.tiny_models import WORDS

    folder = save_tiny(tiny_gpt2(n_positions=1024), tiny_tokenizer(template=None), tmp_path / "long")
    at = _app(str(folder))
    at.run()
    at.text_area(key="text").set_value(" ".join((list(WORDS) * 20)[:700]))  # 700 tokens
    _ok(at.run())
    notes = [c.value for c in at.caption if c.value.startswith("Note:")]
    assert "window: tokens 0–255 of 700" in notes[0]
    assert len(_figures(at)[0]["layout"]["xaxis"]["ticktext"]) <= 256
    at.slider(key="window").set_value((0, 700))  # the whole matrix: pooled to at most 512 rows
    _ok(at.run())
    assert any("downsampled 700x700" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")[0].proto.spec) < 5_000_000
    at.radio(key="view").set_value("Model view")
    _ok(at.run())
    assert any("downsampled 700x700" in c.value for c in at.caption)
    assert any("runs on request" in c.value for c in at.caption)  # no automatic occlusion at 700
