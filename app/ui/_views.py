"""The dashboard's views. Each takes (bundle, run, runs, settings), draws itself and returns the
prepared figures it showed ({name: prepared}), which the export panel offers for download."""
from __future__ import annotations

import streamlit as st

from app import figures, pipeline
from app.ui._state import keep_valid, session_peek, session_run

PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"scale": 2}}


_FIGS_KEY = "_attnscope_plotly"
_MAX_FIGS = 32


def _plotly(prepared):
    """`figures.to_plotly`, memoised per prepared object for this session (building a plotly
    figure costs ~60 ms; prepared analysis figures are cached objects, so reruns reuse them)."""
    cache = st.session_state.setdefault(_FIGS_KEY, {})
    hit = cache.get(id(prepared))
    if hit is not None and hit[0] is prepared:
        return hit[1]
    fig = figures.to_plotly(prepared)
    cache[id(prepared)] = (prepared, fig)  # keeps `prepared` alive, so its id is not reused
    while len(cache) > _MAX_FIGS:
        cache.pop(next(iter(cache)))
    return fig


def show(prepared, key: str) -> None:
    """Draw one prepared figure with plotly, and its reduction note (downsampled, hidden ...)."""
    st.plotly_chart(_plotly(prepared), key=key, config=PLOTLY_CONFIG)
    if getattr(prepared, "note", ""):
        st.caption(f"Note: {prepared.note}")


def matrix(bundle, run, runs, s) -> dict:
    """View 1: attention matrix of the chosen layer/head(s)."""
    sec = s["section"]
    n = len(sec.key_labels)
    window = None
    if n > figures.MAX_SIZE:
        old = st.session_state.get("window")
        if old is None or old[1] > n:  # a new (shorter) input: start at the first 256 tokens
            st.session_state["window"] = (0, min(n, 256))
        lo, hi = st.slider("Token window (long input: zoom into a range)", 0, n, key="window")
        window = (lo, hi) if (lo, hi) != (0, n) else None
    p = pipeline.matrix_view(sec, layer=s["layer"], head=s["head"], fusion=s["fusion"],
                             hide_special=s["hide_special"], scale=s["scale"], window=window)
    show(p, "fig_matrix")
    return {"matrix": p}


def _open_cell(layer_key: str, head_key: str) -> None:
    """Callback: open the model-view cell picked in the selectboxes in the matrix view."""
    st.session_state["layer"] = st.session_state[layer_key]
    st.session_state["fusion"] = "one head"
    st.session_state["head"] = st.session_state[head_key]
    st.session_state["view"] = "Matrix"


def model_view(bundle, run, runs, s) -> dict:
    """View 2: layers x heads grid; a cell opens in the matrix view."""
    sec = s["section"]
    p = pipeline.model_view(sec, hide_special=s["hide_special"], scale=s["scale"])
    show(p, "fig_model")
    c1, c2, c3 = st.columns([1, 1, 1])
    keep_valid("grid_layer", range(len(sec.layers)), 0)
    keep_valid("grid_head", range(sec.n_heads), 0)
    c1.selectbox("Layer", list(range(len(sec.layers))), key="grid_layer",
                 format_func=lambda i: f"layer {sec.layers[i]}")
    c2.selectbox("Head", list(range(sec.n_heads)), key="grid_head", format_func=lambda h: f"head {h}")
    c3.button("Open in matrix view", key="open_cell", on_click=_open_cell, args=("grid_layer", "grid_head"))
    return {"model_view": p}


def token_view(bundle, run, runs, s) -> dict:
    """View 3: one query token's attention as coloured text and bars."""
    sec = s["section"]
    q_labels = sec.query_labels
    default = len(q_labels) - 1 if sec.causal else 0
    keep_valid("query", range(len(q_labels)), default)
    query = st.selectbox("Query token", list(range(len(q_labels))), key="query",
                         format_func=lambda i: f"{i}: {q_labels[i]}")
    p = pipeline.token_view(sec, layer=s["layer"], head=s["head"], fusion=s["fusion"],
                            query=query, hide_special=s["hide_special"])
    st.markdown(figures.token_html(p), unsafe_allow_html=True)  # escaped by figures.token_html
    show(p, "fig_tokens")
    return {"tokens": p}


def image_view(bundle, run, runs, s) -> dict:
    """View 4: patch heatmap over the image (attention, rollout, gradient rollout, cross-attention)."""
    if run.image is None:
        st.info("The image view needs an image model (pick shapes-vit or shapes-captioner).")
        return {}
    patchy = [x for x in run.sections if x.key_grid is not None]  # sections whose keys are patches
    if not patchy:
        st.info("This model's attention is not over image patches.")
        return {}
    sec = patchy[-1]  # captioner: the cross-attention of the generated words
    if len(patchy) > 1:
        titles = [x.title for x in patchy]
        keep_valid("image_section", titles, titles[-1])
        sec = patchy[titles.index(st.selectbox("Attention over the patches", titles, key="image_section"))]
    layer = min(s["layer"], len(sec.layers) - 1)
    sources = pipeline.image_sources(run, sec)
    keep_valid("image_source", sources, "rollout" if "rollout" in sources else sources[0])  # sums layers
    source = st.radio("Map", sources, key="image_source", horizontal=True)
    queries = pipeline.image_queries(run, sec, source)
    keep_valid("image_query", queries, queries[0])
    query = st.selectbox("Query", queries, key="image_query")
    opacity = st.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key="opacity")
    with st.spinner("computing ..."):
        p = pipeline.image_view(run, sec, source=source, query=query, layer=layer,
                                head=s["head"], fusion=s["fusion"], opacity=opacity,
                                mask=st.session_state.get("_sample_mask"))
    show(p, "fig_image")
    return {"image": p}


def analysis_view(bundle, run, runs, s) -> dict:
    """View 5: entropy, pattern labels, layer consistency, head distance, cross-input consistency."""
    sec = s["section"]
    out = pipeline.analysis_views(sec)
    if len(runs) > 1:
        out.update(pipeline.cross_input_view([r.section(sec.stack, sec.kind) for r in runs],
                                             names=[r.name for r in runs]))
    else:
        st.caption("Give several inputs (text separated by a line holding only ---, or several "
                   "uploads) to see how stable each head is across inputs.")
    out.update(pipeline.faithfulness_views(run))
    left, right = st.columns(2)
    for i, (name, p) in enumerate(out.items()):
        with (left if i % 2 == 0 else right):
            show(p, f"fig_{name}")
    return out


def generation(bundle, run, runs, s) -> dict:
    """View 6: generate N tokens, then step through each generated token's attention."""
    gen = run._cache.get("generation")
    if gen is None:
        if run.input_kind != "text" or not getattr(bundle, "is_causal", False):
            st.info("Generation is for causal language models and the captioner.")
            return {}
        n_new = st.number_input("Tokens to generate", 1, 64, 8, key="n_new")
        key = ("gen", run.model_id, run.input_sha256, int(n_new))
        if st.button("Generate", key="generate"):
            with st.spinner(f"Generating {int(n_new)} tokens ..."):
                session_run(key, lambda: pipeline.generate_input(bundle, run, max_new_tokens=int(n_new)))
        gen = session_peek(key)
        if gen is None:
            st.caption("Generate to step through each new token's attention (captured from the KV cache).")
            return {}
    st.markdown(f"**Generated:** {gen.text!r}")
    if gen.n_generated < 1:
        st.info("The model generated no tokens.")
        return {}
    step = 0
    if gen.n_generated > 1:
        keep_valid("gen_step", range(gen.n_generated), 0)
        step = st.slider("Generated token", 0, gen.n_generated - 1, key="gen_step")
    p = pipeline.generation_step_view(gen, step=step, layer=s["layer"], head=s["head"],
                                      fusion=s["fusion"])
    st.markdown(figures.token_html(p), unsafe_allow_html=True)  # escaped by figures.token_html
    show(p, "fig_generation")
    return {"generation_step": p}


VIEW_FUNCS = {
    "Matrix": matrix,
    "Model view": model_view,
    "Token view": token_view,
    "Image view": image_view,
    "Analysis": analysis_view,
    "Generation": generation,
}


def warnings_panel(run) -> None:
    """Always beside the figures: general caveats, this input's faithfulness verdict and numbers,
    truncation, mask-leak and non-finite warnings."""
    st.markdown("**Read with care**")
    for w in run.warnings:
        st.warning(w)
    for caveat in pipeline.GENERAL_CAVEATS:
        st.caption(f"⚠ {caveat}")
    st.markdown("**Faithfulness on this input**")
    small = run.n_positions <= pipeline.AUTO_FAITHFULNESS_POSITIONS
    if small or run._cache.get("faithfulness") is not None or st.button("Run the faithfulness check",
                                                                        key="faith_button"):
        bar = st.progress(0.0, text="faithfulness check ...")
        summary = pipeline.faithfulness_summary(run, progress=lambda f, m: bar.progress(f, text=m))
        bar.empty()
        if summary.ok:
            st.info(summary.verdict)
            st.caption(summary.numbers)
        else:
            st.caption(summary.verdict)
    else:
        st.caption(f"This input has {run.n_positions} positions: the occlusion check takes a while, "
                   "so it runs on request.")
