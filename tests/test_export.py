"""Export: every format yields valid bytes; CSV/NPZ round-trip; bundles validate; names are safe."""
from __future__ import annotations

import csv
import io
import json
import struct
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest

from app.export import (
    REPORT_SCHEMA,
    build_report,
    input_record,
    maps_npz,
    matrix_csv,
    render_html,
    render_static,
    report_bundle,
    safe_filename,
    validate_report,
)
from app.figures import CAVEAT, prepare_matrix, to_matplotlib

REPO = Path(__file__).resolve().parents[1]
TOKENS = ["[CLS]", "the", "cat", "the", "mat", "[SEP]"]


@pytest.fixture(scope="module")
def prepared():
    rng = np.random.default_rng(0)
    a = rng.random((4, 6, 6), dtype=np.float32)  # [heads, q, k]
    a /= a.sum(-1, keepdims=True)
    return prepare_matrix(a, TOKENS, layer=1, head=2)


def _report(**over):
    kw = dict(
        model_id="tiny-bert",
        attn_implementation="eager",
        dtype="torch.float32",
        num_layers=2,
        num_heads=4,
        inputs=input_record(text="the cat the mat", num_tokens=6),
        statistics={"entropy": np.array([[0.5, np.nan], [1.0, 2.0]])},
        warnings=["Attention is not importance.", {"code": "truncation", "message": "input truncated to 512"}],
    )
    kw.update(over)
    return build_report(**kw)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_png_is_rendered_at_twice_the_nominal_size(prepared):
    fig_w, fig_h = to_matplotlib(prepared).get_size_inches()
    w1, h1 = _png_size(render_static(prepared, "png", scale=1))
    w2, h2 = _png_size(render_static(prepared, "png"))  # default scale 2 -> dpi 200
    assert (w1, h1) == (round(fig_w * 100), round(fig_h * 100))
    assert (w2, h2) == (round(fig_w * 200), round(fig_h * 200))


def test_pdf_and_svg_are_valid_and_carry_the_caption(prepared):
    pdf = render_static(prepared, "pdf")
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    svg = render_static(prepared, "svg")
    root = ElementTree.fromstring(svg)
    assert root.tag.endswith("svg")
    # matplotlib writes text as glyph paths by default; the caption is in the figure as a text object
    assert to_matplotlib(prepared).get_supxlabel() == CAVEAT


def test_static_rejects_unknown_format(prepared):
    with pytest.raises(ValueError, match="png, svg, pdf"):
        render_static(prepared, "gif")


def test_html_is_standalone_with_plotlyjs_and_data(prepared):
    page = render_html(prepared).decode("utf-8")
    assert page.lstrip().lower().startswith("<html") or "<!doctype html" in page[:100].lower()
    assert "plotly.js v" in page and len(page) > 1_000_000  # the library itself is inlined
    assert "<script src=\"http" not in page  # nothing fetched from the network
    assert '"type":"heatmap"' in page and "Layer 1, head 2" in page
    assert CAVEAT in page


def test_csv_round_trips_with_repeated_labels(prepared):
    data = matrix_csv(prepared.values, prepared.row_labels, prepared.col_labels)
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    assert rows[0] == ["query \\ key", *TOKENS]
    assert [r[0] for r in rows[1:]] == TOKENS
    back = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    assert np.allclose(back, prepared.values, rtol=1e-7, atol=0)


def test_csv_nan_and_awkward_labels():
    data = matrix_csv(np.array([[np.nan, 0.5]]), ['a,"b"'], ["x\ny", "z"])
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    assert rows == [["query \\ key", "x\ny", "z"], ['a,"b"', "", "0.5"]]
    with pytest.raises(ValueError, match="labels"):
        matrix_csv(np.zeros((2, 2)), ["a"], ["b", "c"])


def test_csv_labels_never_start_a_spreadsheet_formula():
    data = matrix_csv(np.array([[0.25, 0.75]]), ["=SUM(A1)"], ["+1", "-"])
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    assert rows == [["query \\ key", "'+1", "'-"], ["'=SUM(A1)", "0.25", "0.75"]]


def test_npz_round_trips_and_keeps_dtype():
    rng = np.random.default_rng(0)
    maps = {"encoder.layer.0.attention": rng.random((1, 4, 5, 5)).astype(np.float16),
            "encoder.layer.1.attention": rng.random((2, 4, 5, 5)).astype(np.float32),
            "file": rng.random((1, 1, 2, 2))}  # a name np.savez's keywords would clash with
    back = np.load(io.BytesIO(maps_npz(maps)))
    assert sorted(back.files) == sorted(maps)
    for k, v in maps.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v)
    with pytest.raises(ValueError, match=r"\[batch, heads, q, k\]"):
        maps_npz({"x": np.zeros((4, 5, 5))})
    with pytest.raises(ValueError, match="no attention maps"):
        maps_npz({})


def test_report_validates_and_is_plain_json():
    rep = _report()
    assert validate_report(rep) == []
    assert rep["statistics"]["entropy"] == [[0.5, None], [1.0, 2.0]]
    assert rep["model"]["dtype"] == "float32"
    assert rep["selection"] == {"layers": [0, 1], "heads": [0, 1, 2, 3]}
    assert rep["warnings"][0] == {"code": "warning", "message": "Attention is not importance."}
    json.dumps(rep, allow_nan=False)


def test_report_rejects_bad_content():
    with pytest.raises(ValueError, match="invalid report"):
        _report(num_layers=-1)
    with pytest.raises(TypeError, match="statistics.x"):
        _report(statistics={"x": object()})
    with pytest.raises(ValueError, match="text, an image or both"):
        input_record()
    broken = _report()
    broken["model"].pop("id")
    assert any("'id' is a required property" in p for p in validate_report(broken))


def test_image_inputs_are_hashed_not_stored():
    png_bytes = b"\x89PNG fake file"
    rec = input_record(image=png_bytes, name="cat.png")
    assert rec["kind"] == "image" and rec["image_hashed"] == "file" and rec["text"] is None
    assert len(rec["image_sha256"]) == 64
    pix = input_record(image=np.zeros((4, 4, 3), np.uint8), text="a cat")
    assert pix["kind"] == "image+text" and pix["image_hashed"] == "pixels"
    assert validate_report(_report(inputs=[rec, pix])) == []
    pre = input_record(image_sha256=rec["image_sha256"].upper(), name="cat.png")
    assert pre == rec
    with pytest.raises(ValueError, match="64 hex digits"):
        input_record(image_sha256="abc")


def test_bundle_contains_validating_report_figures_and_npz(prepared):
    maps = {"layer.0": np.random.default_rng(0).random((1, 4, 6, 6)).astype(np.float32)}
    data = report_bundle({"Layer 1 / head 2": prepared, "layer 1 : head 2": prepared}, _report(), maps=maps)
    zf = zipfile.ZipFile(io.BytesIO(data))
    assert zf.testzip() is None
    names = set(zf.namelist())
    # the two names differ only in case after sanitising: the second gets a suffix
    assert {"report.json", "attention.npz", "figures/Layer_1_head_2.png", "figures/layer_1_head_2-2.csv"} <= names
    rep = json.loads(zf.read("report.json"))
    assert validate_report(rep) == []
    files = [f for fig in rep["figures"] for f in fig["files"]]
    assert set(files) == names - {"report.json", "attention.npz"}
    assert len(files) == 10  # two figures x png, svg, pdf, html, csv
    assert rep["figures"][0]["caption"] == CAVEAT
    assert _png_size(zf.read("figures/Layer_1_head_2.png"))[0] > 0
    assert np.array_equal(np.load(io.BytesIO(zf.read("attention.npz")))["layer.0"], maps["layer.0"])


def test_bundle_rejects_unknown_formats(prepared):
    with pytest.raises(ValueError, match="unknown figure format"):
        report_bundle({"m": prepared}, _report(), formats=["png", "exe"])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "etc_passwd"),
        ("..", "figure"),
        ("", "figure"),
        ("a/b\\c", "a_b_c"),
        ("Layer 3: head 2 (mean)", "Layer_3_head_2_mean"),
        ("CON.png", "_CON.png"),
        ("çafé…tête", "cafe.tete"),
        (".hidden", "hidden"),
        ("x" * 300, "x" * 100),
    ],
)
def test_safe_filename(name, expected):
    assert safe_filename(name) == expected


def test_safe_filename_never_escapes_a_folder():
    for name in ["../x", "..\\x", "/abs/path", "a/../../b", "\x00nul", "~/x", "…/…"]:
        out = safe_filename(name)
        assert "/" not in out and "\\" not in out and not out.startswith(".") and ".." not in out
        assert out and all(c.isalnum() or c in "._-" for c in out)


def test_docs_schema_file_matches_the_code():
    doc = json.loads((REPO / "docs" / "report.schema.json").read_text())
    assert doc == json.loads(json.dumps(REPORT_SCHEMA))
    assert "report.schema.json" in (REPO / "docs" / "report-schema.md").read_text()


def test_bundle_files_are_what_the_zip_holds(prepared):
    from app.export import bundle_files

    files = bundle_files({"m": prepared}, _report(), formats=["svg", "csv"])
    assert list(files) == ["figures/m.svg", "figures/m.csv", "report.json"]
    zf = zipfile.ZipFile(io.BytesIO(report_bundle({"m": prepared}, _report(), formats=["svg", "csv"])))
    assert zf.namelist() == list(files)
    assert zf.read("figures/m.csv") == files["figures/m.csv"]


def test_figure_file_dispatches_by_format(prepared):
    from app.export import figure_file, figure_formats
    from app.figures import prepare_deletion_curves

    assert figure_formats(prepared) == ("png", "svg", "pdf", "html", "csv")
    assert figure_file(prepared, "PDF").startswith(b"%PDF-")
    assert figure_file(prepared, "csv") == matrix_csv(prepared.values, prepared.row_labels, prepared.col_labels)
    curves = prepare_deletion_curves({"a": [1.0, 0.5]})
    assert "csv" not in figure_formats(curves)
    with pytest.raises(ValueError, match="CSV export is for matrix views"):
        figure_file(curves, "csv")
    with pytest.raises(ValueError, match="figure format"):
        figure_file(prepared, "bmp")
