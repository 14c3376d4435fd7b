"""The attnscope dashboard page: model picker, inputs, controls, views, warnings, export.

Every view runs inside `guarded`, so a user error becomes a readable `st.error` and the rest of
the page keeps working. All numbers come from `app.pipeline` (shared with the CLI); this module
only lays out widgets.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

import streamlit as st

import hooks
from app import pipeline
from app import inputs as safe_inputs
from app.launch import MAX_UPLOAD_MB
from app.ui import _views
from app.ui._export import export_panel
from app.ui._state import cached_bundle, keep_valid, session_run

OTHER = "Other: Hugging Face id or local folder"
VIEWS = ("Matrix", "Model view", "Token view", "Image view", "Analysis", "Generation")
TEXT_TYPES = ["txt", "md"]
DEFAULT_TEXT = "the quick brown fox jumps over the lazy dog . the dog was not happy"
IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif"]


def guarded(what: str, fn: Callable, *args, **kwargs):
    """Call `fn`; a user error (PipelineError, InputError, CaptureError, ValueError) or any other
    failure becomes one readable `st.error` line instead of a stack-trace page. Returns None then."""
    try:
        return fn(*args, **kwargs)
    except (pipeline.PipelineError, safe_inputs.InputError, hooks.CaptureError) as exc:
        st.error(f"{what}: {exc}")
    except Exception as exc:  # noqa: BLE001 - the page must stay usable whatever happens
        st.error(f"{what} failed: {type(exc).__name__}: {exc}")
    return None


def _default_model() -> str:
    """Preselected model: the page URL's ?model=..., else `attnscope app --model`, else the
    registry's default demo. (trust_remote_code can only be ticked by hand.)"""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model", default=None)
    args, _ = parser.parse_known_args(sys.argv[1:])
    return st.query_params.get("model") or args.model or pipeline.default_model()


def _model_picker() -> tuple[str, bool]:
    """Sidebar model choice -> (name or path, trust_remote_code)."""
    builtins = pipeline.builtin_models()
    default = _default_model()
    options = list(builtins) + [OTHER]
    if "model_choice" not in st.session_state:
        st.session_state["model_choice"] = default if default in builtins else OTHER
        if default not in builtins:
            st.session_state["model_path"] = default
    choice = st.sidebar.selectbox(
        "Model", options, key="model_choice",
        format_func=lambda n: f"{n} — {builtins[n]}" if n in builtins else n)
    trust = False
    if choice == OTHER:
        name = st.sidebar.text_input("Hugging Face id or local folder", key="model_path",
                                     placeholder="e.g. ./my-model or bert-base-uncased")
        trust = st.sidebar.checkbox(
            "Trust remote code", value=False, key="trust_remote_code",
            help="Runs Python code shipped with the model on this machine.")
        st.sidebar.caption("Off: no code shipped with a model is run. On: the model's own Python "
                           "code runs with your rights.")
        if trust:
            st.sidebar.warning("Remote code runs with your user's rights on this machine: "
                               "only enable it for models whose code you have read and trust.")
        return name.strip(), trust
    return choice, trust


def _model_info(bundle) -> None:
    info = pipeline.model_info(bundle)
    with st.sidebar.expander("Model info", expanded=False):
        st.markdown("\n".join(f"- **{k}**: {v}" for k, v in info.rows()))


def _text_inputs(model_key: str) -> list[tuple[str, str]]:
    """Text area (+ sample picker and .txt/.md upload) -> [(name, text)], first one is shown."""
    samples = pipeline.text_samples(model_key)
    if st.session_state.get("_text_model") != model_key:  # a new model: start from its first sample
        st.session_state["_text_model"] = model_key
        st.session_state["text"] = samples[0].text if samples else DEFAULT_TEXT
        if samples:
            st.session_state["sample_text"] = samples[0].title
    if samples:
        titles = [s.title for s in samples]
        keep_valid("sample_text", titles, titles[0])
        pick = st.selectbox("Sample text", titles, key="sample_text",
                            help="Samples shipped with attnscope for this model.")

        if st.session_state.get("_text_sample_shown") != pick:
            st.session_state["_text_sample_shown"] = pick
            st.session_state["text"] = samples[titles.index(pick)].text
    typed = st.text_area("Text (several inputs: separate them with a line holding only ---)",
                         key="text", height=110)
    uploads = st.file_uploader("…or upload .txt / .md files", type=TEXT_TYPES,
                               accept_multiple_files=True, key="upload_text")
    out: list[tuple[str, str]] = []
    for up in uploads or []:
        decoded = safe_inputs.decode_text(up.getvalue(), filename=up.name,
                                          max_bytes=MAX_UPLOAD_MB * 1024 * 1024)
        for note in decoded.warnings:
            st.info(f"{up.name}: {note}")
        out.append((up.name, decoded.text))
    if not out:
        parts = [p.strip() for p in "\n".join(
            "\x00" if line.strip() == "---" else line for line in (typed or "").splitlines()
        ).split("\x00")]
        out = [(f"text {i + 1}", safe_inputs.decode_text(p).text) for i, p in enumerate(parts) if p]
        if not out:
            raise safe_inputs.InputError("The text is empty: type something or pick a sample.")
    return out


def _image_inputs(model_key: str) -> list[tuple[str, safe_inputs.DecodedImage]]:
    """Image upload (PNG/JPEG/WebP/BMP/GIF) or the sample gallery -> [(name, decoded image)]."""
    uploads = st.file_uploader("Upload images (PNG, JPEG, WebP, BMP, GIF: first frame)",
                               type=IMAGE_TYPES, accept_multiple_files=True, key="upload_image")
    out = []
    st.session_state["_sample_mask"] = None
    for up in uploads or []:
        decoded = safe_inputs.decode_image(up.getvalue(), filename=up.name)
        for note in decoded.warnings:
            st.info(f"{up.name}: {note}")
        out.append((up.name, decoded))
    if out:
        return out
    samples = pipeline.image_samples(model_key)
    if not samples:
        raise safe_inputs.InputError("Upload an image: this model has no sample images.")
    titles = [s.title for s in samples]
    keep_valid("sample_image", titles, titles[0])
    pick = st.selectbox("Sample image", titles, key="sample_image")
    sample = samples[titles.index(pick)]
    st.session_state["_sample_mask"] = sample.mask  # ground truth, drawn as a contour
    cols = st.columns(min(len(samples), 8))
    for col, s in zip(cols, samples[:8]):
        col.image(s.image.image, caption=s.title, width=72)
    return [(sample.title, sample.image)]


def _capture(bundle, model_key: str, items: list) -> list:
    """Capture every input (cached per session): [Run], the first one is the one on show."""
    runs = []
    for name, value in items:
        text = value if isinstance(value, str) else None
        image = None if text is not None else value
        key = (model_key, "text" if text is not None else "image",
               safe_inputs.sha256_hex(text.encode()) if text is not None else value.sha256)
        with st.spinner(f"Capturing attention for {name} ..."):
            runs.append(session_run(key, lambda: pipeline.capture_input(
                bundle, text=text, image=image, name=name)))
    return runs


def _controls(run) -> dict:
    """Sidebar controls for the section on show -> settings dict."""
    st.sidebar.subheader("Controls")
    sections = run.sections
    titles = [s.title for s in sections]
    keep_valid("section", titles, titles[0])
    title = st.sidebar.selectbox("Attention", titles, key="section") if len(titles) > 1 else titles[0]
    sec = sections[titles.index(title)]
    n_layers, n_heads = len(sec.layers), sec.n_heads
    keep_valid("layer", range(n_layers), 0)
    keep_valid("head", range(n_heads), 0)
    layer = st.sidebar.selectbox("Layer", list(range(n_layers)), key="layer",
                                 format_func=lambda i: f"layer {sec.layers[i]}")
    fusion = st.sidebar.radio("Heads", ["mean", "max", "one head"], key="fusion", horizontal=True,
                              help="Fuse all heads by their mean or max, or show one head.")
    head = None
    if fusion == "one head":
        head = st.sidebar.selectbox("Head", list(range(n_heads)), key="head",
                                    format_func=lambda h: f"head {h}")
    hide = st.sidebar.checkbox("Hide special tokens", value=False, key="hide_special")
    scale = st.sidebar.radio("Colour scale", ["linear", "log"], key="scale", horizontal=True)
    return {"section": sec, "layer": layer, "head": head,
            "fusion": "mean" if fusion == "one head" else fusion,
            "hide_special": hide, "scale": scale}


def render() -> None:
    """Draw the whole page (the Streamlit entry script calls this on every rerun)."""
    st.set_page_config(page_title="attnscope", layout="wide")
    st.sidebar.title("attnscope")
    st.sidebar.caption("Attention visualisation and debugging, on this machine only.")
    name, trust = _model_picker()
    if not name:
        st.info("Type a Hugging Face id or a local folder in the sidebar to load a model.")
        return
    with st.spinner(f"Loading {name} (first time only; shared by every session) ..."):
        bundle = guarded("Model", cached_bundle, name, trust)
    if bundle is None:
        st.info("Pick another model in the sidebar; the built-in demos always work offline.")
        return
    guarded("Model info", _model_info, bundle)
    modality = pipeline.input_kind(bundle)

    st.subheader(f"{name}")
    with st.container(border=True):
        items = guarded("Input", _text_inputs if modality == "text" else _image_inputs, name)
    if not items:
        return
    runs = guarded("Capture", _capture, bundle, name, items)
    if not runs:
        return
    run = runs[0]
    settings = guarded("Controls", _controls, run)
    if settings is None:
        return
    if run.prediction:
        st.caption(f"Model output: {run.prediction}")

    if st.session_state.get("_view_model") != name:  # a new model opens on its natural view
        st.session_state["_view_model"] = name
        st.session_state["view"] = "Matrix" if modality == "text" else "Image view"
    view = st.radio("View", VIEWS, key="view", horizontal=True, label_visibility="collapsed")
    main, side = st.columns([3, 1], gap="medium")
    with main:
        prepared = guarded(view, _views.VIEW_FUNCS[view], bundle, run, runs, settings)
    with side:
        guarded("Warnings", _views.warnings_panel, run)
    with st.expander("Export", expanded=False):
        guarded("Export", export_panel, run, settings, prepared or {}, runs)
