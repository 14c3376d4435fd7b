"""Figure builders: matrix view (prepare + plotly + matplotlib), long-input reduction, guards."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from app.figures import CAVEAT, MatrixData, prepare_matrix, to_matplotlib, to_plotly

REPO = Path(__file__).resolve().parents[1]
FIGURE_SOURCES = sorted((REPO / "app" / "figures").rglob("*.py")) + sorted((REPO / "app").glob("figures*.py"))


def _rows(n: int, seed: int = 0, heads: int | None = None) -> np.ndarray:
    """Row-stochastic random attention: [n, n] or [heads, n, n]."""
    rng = np.random.default_rng(seed)
    shape = (n, n) if heads is None else (heads, n, n)
    a = rng.random(shape, dtype=np.float32)
    return a / a.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("src", FIGURE_SOURCES, ids=lambda p: p.name)
def test_figure_code_imports_neither_streamlit_nor_torch_nor_pyplot(src):
    text = src.read_text()
    imports = re.findall(r"^\s*(?:from|import)\s+([\w.]+)", text, flags=re.M)
    for mod in imports:
        assert not mod.startswith(("streamlit", "torch", "hooks", "matplotlib.pyplot")), f"{src.name} imports {mod}"


def test_guard_sees_the_figure_modules():
    assert len(FIGURE_SOURCES) >= 5


def test_repeated_tokens_stay_separate_rows():
    tokens = ["the", "cat", "saw", "the", "cat"]
    p = prepare_matrix(_rows(5), tokens)
    assert p.row_labels == tuple(tokens) and p.values.shape == (5, 5)
    fig = to_plotly(p)
    heat = fig.data[0]
    assert len(set(heat.y)) == 5 and len(set(heat.x)) == 5  # five distinct rows and columns
    assert list(fig.layout.yaxis.ticktext) == tokens  # but every row is labelled with its token
    assert heat.y[0] != heat.y[3] and "the" in heat.y[0] and "the" in heat.y[3]
    # the static figure labels five separate rows too
    ax = to_matplotlib(p).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == tokens


def test_hover_reads_query_arrow_key_colon_weight():
    p = prepare_matrix(_rows(3), ["a", "b", "c"])
    heat = to_plotly(p).data[0]
    assert heat.hovertemplate == "%{y} → %{x}: %{z:.3g}<extra></extra>"
    assert list(heat.y) == ["a", "b", "c"]


def test_labels_are_escaped_for_plotly_and_matplotlib():
    p = prepare_matrix(_rows(3), ["<s>", "$5", "a&b"])
    fig = to_plotly(p)
    assert list(fig.layout.xaxis.ticktext) == ["&lt;s&gt;", "$5", "a&amp;b"]
    ax = to_matplotlib(p).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["<s>", r"\$5", "a&b"]


def test_head_selection_and_fusion():
    a = _rows(4, heads=3)
    assert np.allclose(prepare_matrix(a, list("abcd"), head=1).values, a[1])
    assert np.allclose(prepare_matrix(a, list("abcd"), fusion="mean").values, a.mean(0))
    assert np.allclose(prepare_matrix(a, list("abcd"), fusion="max").values, a.max(0))
    assert prepare_matrix(a, list("abcd"), layer=2, head=1).title == "Layer 2, head 1"
    with pytest.raises(ValueError, match="head 5 out of range"):
        prepare_matrix(a, list("abcd"), head=5)


def test_hide_special_tokens_drops_rows_and_columns():
    a = _rows(5)
    tokens = ["[CLS]", "x", "y", "z", "[SEP]"]
    p = prepare_matrix(a, tokens, hide=[True, False, False, False, True])
    assert p.row_labels == p.col_labels == ("x", "y", "z")
    assert np.allclose(p.values, a[1:4, 1:4])
    assert p.row_index.tolist() == [1, 2, 3]
    assert "hidden" in p.note
    assert list(to_plotly(p).layout.xaxis.ticktext) == ["x", "y", "z"]


def test_log_scale_colours_by_log10_and_hovers_the_real_weight():
    a = _rows(4)
    p = prepare_matrix(a, list("abcd"), scale="log")
    heat = to_plotly(p).data[0]
    assert np.allclose(np.asarray(heat.z), np.log10(a), atol=1e-6)
    assert np.allclose(np.asarray(heat.customdata), a)
    assert heat.hovertemplate == "%{y} → %{x}: %{customdata:.3g}<extra></extra>"
    norm = to_matplotlib(p).axes[0].images[0].norm
    assert type(norm).__name__ == "LogNorm"


def test_cross_attention_needs_query_labels():
    a = np.full((2, 3), 1 / 3, dtype=np.float32)
    with pytest.raises(ValueError, match="pass query_tokens"):
        prepare_matrix(a, ["k1", "k2", "k3"])
    p = prepare_matrix(a, ["k1", "k2", "k3"], query_tokens=["a", "a"])
    assert p.values.shape == (2, 3) and len(set(to_plotly(p).data[0].y)) == 2


def test_window_and_topk():
    a = _rows(10)
    p = prepare_matrix(a, [str(i) for i in range(10)], window=(2, 6))
    assert np.allclose(p.values, a[2:6, 2:6]) and "window" in p.note
    t = prepare_matrix(a, [str(i) for i in range(10)], topk=2)
    kept = ~np.isnan(t.values)
    assert kept.sum(axis=1).tolist() == [2] * 10
    assert np.allclose(t.values[kept], a[kept])
    assert np.all(np.nanmin(t.values, axis=1) >= np.sort(a, axis=1)[:, -2] - 1e-7)


def test_bad_inputs_give_clear_messages():
    with pytest.raises(ValueError, match="2-D or 3-D"):
        prepare_matrix(np.zeros(3), ["a", "b", "c"])
    with pytest.raises(ValueError, match="2 key tokens"):
        prepare_matrix(_rows(3), ["a", "b"])
    with pytest.raises(ValueError, match="numeric"):
        prepare_matrix([["a", "b"], ["c", "d"]], ["a", "b"])
    with pytest.raises(ValueError, match="nothing left"):
        prepare_matrix(_rows(2), ["a", "b"], hide=[True, True])
    with pytest.raises(ValueError, match="empty token window"):
        prepare_matrix(_rows(4), list("abcd"), window=(3, 3))


def test_block_pooling_is_exact_on_blocks():
    a = _rows(8)
    p = prepare_matrix(a, [f"t{i}" for i in range(8)], max_size=4, pool="mean")
    expected = a.reshape(4, 2, 4, 2).mean(axis=(1, 3))  # [4 blocks, 2, 4 blocks, 2]
    assert np.allclose(p.values, expected)
    assert p.note == "downsampled 8x8 -> 4x4 by block mean"
    assert p.row_labels[1] == "2–3 t2…" and p.row_index.tolist() == [0, 2, 4, 6]
    m = prepare_matrix(a, [f"t{i}" for i in range(8)], max_size=3, pool="max")
    assert m.values.shape == (3, 3)  # ceil(8/3)=3 per block, ragged last block of 2
    assert np.isclose(m.values[2, 2], a[6:, 6:].max())


def test_4096_token_matrix_payload_is_at_most_5_mb():
    n = 4096
    rng = np.random.default_rng(1)
    a = rng.random((n, n), dtype=np.float32)  # [q, k]
    tokens = [f"tok{i % 97}" for i in range(n)]
    for scale in ("linear", "log"):
        p = prepare_matrix(a, tokens, scale=scale)
        assert p.values.shape == (512, 512)
        assert p.note == "downsampled 4096x4096 -> 512x512 by block mean"
        payload = len(to_plotly(p).to_json())
        assert payload <= 5 * 1024 * 1024, f"{scale}: {payload / 1e6:.1f} MB"


def test_matrix_data_validates_shapes():
    with pytest.raises(ValueError, match="labels"):
        MatrixData(values=np.zeros((2, 2)), row_labels=("a",), col_labels=("a", "b"), title="t")


def test_caption_travels_with_both_renderings():
    p = prepare_matrix(_rows(3), ["a", "b", "c"])
    assert p.caption == CAVEAT
    assert to_plotly(p).layout.title.subtitle.text == CAVEAT
    assert to_matplotlib(p).get_supxlabel().startswith(CAVEAT)


def test_long_labels_are_cut_in_ticks_but_not_in_hover():
    long = "x" * 40
    p = prepare_matrix(_rows(2), [long, "b"])
    fig = to_plotly(p)
    assert fig.layout.xaxis.ticktext[0] == "x" * 23 + "…" and fig.data[0].x[0] == long
    assert to_matplotlib(p).axes[0].get_xticklabels()[0].get_text() == "x" * 23 + "…"


def test_number_like_and_blank_tokens_stay_categories():
    tokens = ["1", "2", "1", " ", "10"]
    fig = to_plotly(prepare_matrix(_rows(5), tokens))
    assert fig.layout.xaxis.type == "category" and fig.layout.yaxis.type == "category"
    assert len(set(fig.data[0].x)) == 5  # "1" twice stays two columns; " " gets a visible name
    assert list(fig.layout.xaxis.ticktext) == tokens


def test_static_labels_escape_control_characters():
    p = prepare_matrix(_rows(3), ["\x00x", "new\nline", "back\\slash"])
    ticks = [t.get_text() for t in to_matplotlib(p).axes[0].get_xticklabels()]
    assert ticks == ["\\x00x", "new\\nline", "back\\slash"]
