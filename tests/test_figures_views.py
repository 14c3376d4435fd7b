"""Figure builders: model, token, image, generation and analysis views; both renderers for each."""
from __future__ import annotations

import html
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from app.export import render_static
from app.figures import (
    BarsData,
    CurvesData,
    GridData,
    ImageData,
    MatrixData,
    TokenData,
    blend,
    prepare_cross_input,
    prepare_deletion_curves,
    prepare_entropy,
    prepare_generation_step,
    prepare_head_distance,
    prepare_image,
    prepare_importance,
    prepare_layer_consistency,
    prepare_matrix,
    prepare_model_view,
    prepare_patterns,
    prepare_tokens,
    to_matplotlib,
    to_plotly,
    token_html,
)

RNG = np.random.default_rng(0)
TOKENS = ["[CLS]", "the", "cat", "<script>", "the", "[SEP]"]


def _att(*shape: int) -> np.ndarray:
    a = RNG.random(shape, dtype=np.float32)
    return a / a.sum(axis=-1, keepdims=True)


# ------------------------------------------------------------------------------ model view


def test_model_view_packs_every_map_into_its_cell_with_nan_gaps():
    maps = _att(2, 4, 6, 6)  # [L, heads, q, k]
    g = prepare_model_view(maps, TOKENS, layers=[3, 7])
    assert isinstance(g, GridData) and g.cell == (6, 6)
    assert g.values.shape == (2 * 7 - 1, 4 * 7 - 1)
    for i in range(2):
        for j in range(4):
            assert np.allclose(g.values[g.cell_slice(i, j)], maps[i, j])
    assert np.isnan(g.values[6, :]).all() and np.isnan(g.values[:, 6]).all()  # gap row / column
    assert g.layer_labels == ("layer 3", "layer 7")
    fig = to_plotly(g)
    assert len(fig.data) == 1 and len(set(fig.data[0].y)) == g.values.shape[0]
    assert list(fig.layout.xaxis.ticktext) == ["head 0", "head 1", "head 2", "head 3"]


def test_model_view_pools_long_maps_and_stays_light():
    n = 256
    maps = _att(12, 12, n, n)
    g = prepare_model_view(list(maps), [f"t{i}" for i in range(n)], cell=32)
    assert g.cell == (32, 32)
    assert np.allclose(g.values[g.cell_slice(1, 2)], maps[1, 2].reshape(32, 8, 32, 8).mean(axis=(1, 3)))
    assert "each map downsampled 256x256 -> 32x32" in g.note
    assert len(to_plotly(g).to_json()) < 2 * 1024 * 1024


def test_model_view_hides_tokens_and_rejects_ragged_layers():
    g = prepare_model_view(_att(1, 2, 6, 6), TOKENS, hide=[t.startswith("[") for t in TOKENS])
    assert g.query_labels == ("the", "cat", "<script>", "the") and g.query_index.tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="equally shaped"):
        prepare_model_view([_att(2, 6, 6), _att(2, 5, 5)], TOKENS)


# ------------------------------------------------------------------------------ token view


def test_token_view_takes_the_query_row_of_the_fused_heads():
    a = _att(4, 6, 6)
    t = prepare_tokens(a, TOKENS, query=2)
    assert np.allclose(t.weights, a.mean(0)[2]) and t.query == 2
    assert t.title == "Attention of 'cat' (#2), mean of 4 heads"
    one = prepare_tokens(a, TOKENS, query=2, head=1)
    assert np.allclose(one.weights, a[1, 2])
    with pytest.raises(ValueError, match="query="):
        prepare_tokens(a, TOKENS)
    with pytest.raises(ValueError, match="query 9 out of range"):
        prepare_tokens(a, TOKENS, query=9)


def test_token_view_hides_tokens_and_keeps_the_query_mark():
    a = _att(6, 6)
    t = prepare_tokens(a, TOKENS, query=2, hide=[True, False, False, False, False, True])
    assert t.tokens == ("the", "cat", "<script>", "the") and t.query == 1
    assert np.allclose(t.weights, a[2, 1:5])


def test_token_html_is_escaped_coloured_and_marks_the_query():
    t = prepare_tokens(np.array([0.1, 0.2, 0.3, 0.35, 0.05, 0.0]), TOKENS, query=2)
    snippet = token_html(t)
    assert "<script>" not in snippet and "&lt;script&gt;" in snippet
    spans = re.findall(r'<span class="attnscope-token" title="([^"]*)" style="([^"]*)">([^<]*)</span>', snippet)
    assert [html.unescape(s[2]) for s in spans] == TOKENS
    backgrounds = [re.search(r"background:(#[0-9a-f]{6})", s[1]).group(1) for s in spans]
    assert len(set(backgrounds)) == 6  # six different weights, six colours
    assert "outline" in spans[2][1] and all("outline" not in s[1] for i, s in enumerate(spans) if i != 2)
    assert html.unescape(spans[3][0]) == "#3 <script>: 0.35"


def test_token_bars_colour_the_query():
    t = prepare_tokens(_att(6, 6), TOKENS, query=1)
    bar = to_plotly(t).data[0]
    assert bar.marker.color[1] != bar.marker.color[0] and len(set(bar.x)) == 6
    assert len(to_matplotlib(t).axes[0].patches) == 6


def test_generation_step_highlights_generated_tokens():
    row = _att(4, 6)  # [heads, k]: the step's last query row per head
    t = prepare_generation_step(row, TOKENS, step=2, prompt_len=4, generated="mat")
    assert np.allclose(t.weights, row.mean(0))
    assert t.highlight.tolist() == [False] * 4 + [True] * 2
    assert t.title == "Step 2: attention when generating 'mat'"
    with pytest.raises(ValueError, match="prompt_len"):
        prepare_generation_step(row, TOKENS, step=0, prompt_len=9, generated="x")


# ------------------------------------------------------------------------------ image view


@pytest.fixture(scope="module")
def image():
    return RNG.integers(0, 256, (64, 48, 3), dtype=np.uint8)


def test_image_view_reshapes_and_normalises_the_patch_map(image):
    heat = np.arange(12, dtype=np.float32) + 5  # [h*w] for a 4x3 grid
    p = prepare_image(image, heat, grid=(4, 3), opacity=0.3)
    assert p.heat.shape == (4, 3) and p.heat.min() == 0 and p.heat.max() == 1
    assert np.allclose(p.heat.reshape(-1), (heat - 5) / 11)
    assert prepare_image(image, np.ones(16)).heat.shape == (4, 4)  # square grid inferred
    with pytest.raises(ValueError, match="not a square grid"):
        prepare_image(image, np.ones(12))
    with pytest.raises(ValueError, match="opacity"):
        prepare_image(image, np.ones(16), opacity=1.5)
    with pytest.raises(ValueError, match="mask shape"):
        prepare_image(image, np.ones(16), mask=np.ones((10, 10), bool))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        prepare_image(np.zeros((4, 4, 2), np.uint8), np.ones(16))


def test_blend_follows_opacity(image):
    heat = RNG.random((4, 3))
    assert np.array_equal(blend(prepare_image(image, heat, opacity=0.0)), image)
    full = blend(prepare_image(image, np.zeros((4, 3)), opacity=1.0, normalize=False))
    import matplotlib

    assert np.allclose(full, np.round(np.array(matplotlib.colormaps["inferno"](0.0)[:3]) * 255), atol=1)
    half = blend(prepare_image(image, heat, opacity=0.5)).astype(int)
    assert half.shape == image.shape and not np.array_equal(half, image)


def test_image_plotly_places_patches_over_the_image_and_draws_the_mask(image):
    mask = np.zeros(image.shape[:2], bool)
    mask[10:30, 5:20] = True
    p = prepare_image(image, RNG.random((4, 3)), opacity=0.4, mask=mask)
    fig = to_plotly(p)
    assert [t.type for t in fig.data] == ["image", "heatmap", "contour"]
    heat = fig.data[1]
    assert heat.opacity == 0.4 and heat.dx == 16 and heat.dy == 16  # 48/3, 64/4 pixels per patch
    assert heat.x0 == 8 and heat.y0 == 8  # patch centres
    assert fig.data[0].source.startswith("data:image/png;base64,")
    assert len(to_matplotlib(p).axes[0].collections) >= 1  # the contour


# ------------------------------------------------------------------------------ analysis views


def test_entropy_heatmap_is_layers_by_heads():
    ent = RNG.random((3, 4)) * 2
    p = prepare_entropy(ent, max_entropy=np.log(6))
    assert p.values.shape == (3, 4) and p.row_labels == ("L0", "L1", "L2") and p.col_labels[-1] == "H3"
    heat = to_plotly(p).data[0]
    assert heat.hovertemplate == "%{y} %{x}: %{z:.3g} nats<extra></extra>"
    assert heat.zmax == pytest.approx(np.log(6))
    normalised = prepare_entropy(ent / np.log(6), max_entropy=1.0, unit="normalised")
    assert normalised.value_name == "entropy (normalised)" and "nats" not in normalised.hover


def test_pattern_labels_are_written_in_cells():
    labels = [["first", "previous"], ["broad", "mixed"]]
    p = prepare_patterns(labels, [[0.9, 0.6], [0.95, 0.1]], layers=[0, 5])
    heat = to_plotly(p).data[0]
    assert [list(r) for r in heat.text] == labels and heat.texttemplate == "%{text}"
    assert heat.hovertemplate == "%{y} %{x}: %{text} (%{z:.3g})<extra></extra>"
    assert p.row_labels == ("L0", "L5")
    texts = {t.get_text(): t.get_color() for t in to_matplotlib(p).axes[0].texts}
    assert {"first", "previous", "broad", "mixed"} <= set(texts)
    assert texts["broad"] == "white" and texts["mixed"] == "black"  # ink contrasts with the cell
    with pytest.raises(ValueError, match="labels have shape"):
        prepare_patterns([["a"]], [[0.1, 0.2]])


def test_head_distance_is_shown_in_clustering_order():
    d = RNG.random((4, 4))
    d = (d + d.T) / 2
    p = prepare_head_distance(d, order=[2, 0, 3, 1], num_heads=2)
    assert p.row_labels == ("L1H0", "L0H0", "L1H1", "L0H1")
    assert p.values[0, 1] == pytest.approx(d[2, 0]) and p.values[3, 2] == pytest.approx(d[1, 3])
    with pytest.raises(ValueError, match="permutation"):
        prepare_head_distance(d, order=[0, 0, 1, 2], num_heads=2)
    with pytest.raises(ValueError, match="num_heads"):
        prepare_head_distance(d)


def test_layer_consistency_and_cross_input():
    lc = prepare_layer_consistency(np.eye(3))
    assert lc.row_labels == lc.col_labels == ("L0", "L1", "L2")
    with pytest.raises(ValueError, match="square"):
        prepare_layer_consistency(np.ones((2, 3)))
    mean, spread = RNG.random((2, 3)), RNG.random((2, 3)) * 0.1
    b = prepare_cross_input(mean, spread, statistic="entropy", n_inputs=5)
    assert b.categories == ("L0H0", "L0H1", "L0H2", "L1H0", "L1H1", "L1H2")
    assert np.allclose(b.series["entropy"], mean.reshape(-1)) and np.allclose(b.errors["entropy"], spread.reshape(-1))
    bar = to_plotly(b).data[0]
    assert np.allclose(np.asarray(bar.error_y.array), spread.reshape(-1))
    assert b.title == "Entropy per head across 5 inputs (mean ± spread)"


def test_deletion_curves_and_importance_comparison():
    c = prepare_deletion_curves({"attention": [1.0, 0.8, 0.7], "occlusion": [1.0, 0.4, 0.2]})
    assert c.x.tolist() == [0, 1, 2] and len(to_plotly(c).data) == 2
    with pytest.raises(ValueError, match="same length"):
        prepare_deletion_curves({"a": [1, 2], "b": [1, 2, 3]})
    imp = prepare_importance(["a", "b", "a"], {"attention": [0.1, 0.4, 0.2], "occlusion": [-2.0, 1.0, 0.5]})
    assert np.allclose(imp.series["attention"], [0.25, 1.0, 0.5])
    assert np.allclose(imp.series["occlusion"], [-1.0, 0.5, 0.25])
    fig = to_plotly(imp)
    assert len(fig.data) == 2 and len(set(fig.data[0].x)) == 3  # repeated token "a" stays two bars
    with pytest.raises(ValueError, match="2 values for 3 tokens"):
        prepare_importance(["a", "b", "c"], {"x": [1, 2]})


# ------------------------------------------------------------------------------ every view, both renderers


def _all_views():
    img = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return {
        "matrix": prepare_matrix(_att(2, 6, 6), TOKENS, layer=0),
        "model": prepare_model_view(_att(2, 2, 6, 6), TOKENS, scale="log"),
        "tokens": prepare_tokens(_att(6, 6), TOKENS, query=0),
        "image": prepare_image(img, RNG.random((4, 4)), mask=np.eye(32, dtype=bool)),
        "entropy": prepare_entropy(RNG.random((2, 2))),
        "curves": prepare_deletion_curves({"a": [1.0, 0.5]}),
        "cross": prepare_cross_input(RNG.random((2, 2)), RNG.random((2, 2))),
    }


def test_every_view_renders_in_both_renderers_with_its_caption():
    kinds = set()
    for name, p in _all_views().items():
        kinds.add(type(p))
        fig = to_plotly(p)
        assert p.caption and fig.layout.title.subtitle.text.startswith(p.caption), name
        static = to_matplotlib(p)
        assert static.get_supxlabel().startswith(p.caption.replace("$", r"\$")), name
        assert render_static(p, "png")[:8] == b"\x89PNG\r\n\x1a\n", name
    assert kinds == {MatrixData, GridData, TokenData, ImageData, BarsData, CurvesData}


def test_unknown_objects_are_refused_by_the_renderers():
    with pytest.raises(TypeError, match="no plotly renderer"):
        to_plotly({"not": "prepared"})
    with pytest.raises(TypeError, match="no matplotlib renderer"):
        to_matplotlib([1, 2])


def test_static_rendering_is_thread_safe():
    views = [v for k, v in _all_views().items() if k in ("matrix", "tokens", "image", "curves")]
    sequential = [render_static(p, "png", scale=1) for p in views]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda p: render_static(p, "png", scale=1), views * 2))
    assert concurrent == sequential * 2
