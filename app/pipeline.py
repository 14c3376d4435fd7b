"""The one attnscope pipeline, shared by the dashboard and the CLI.

    load (hooks.load_model) -> capture (hooks.capture_attention) -> analyse (analysis) -> figures

Nothing here imports streamlit; nothing is computed in two places: the app and the CLI both call

    bundle = load_bundle("recall-lm")                       # hooks.ModelBundle
    info = model_info(bundle)                               # ModelInfo (class, layers, heads, ...)
    run = capture_input(bundle, text="ann has a red kite")  # Run: one input, every captured map
    sec = run.section()                                     # Section: one (stack, kind), batch item 0
    fig = matrix_view(sec, layer=0, head=None, fusion="mean")   # app.figures prepared data
    sec.entropy(); sec.rollout(); sec.patterns()            # analysis, computed once, cached
    faithfulness_summary(run).verdict                       # occlusion vs attention, one sentence

Views (prepared data for `app.figures.to_plotly` / `app.export`): matrix_view, model_view,
token_view, image_view (attention / rollout / gradient rollout / cross-attention / relevance),
analysis_views, cross_input_view, faithfulness_views, generation_step_view (after
generate_input). Export helpers: export_maps (attention.npz), run_statistics, build_report.

Shapes: a `Section` holds, per captured layer, a float32 tensor [heads, q, k] (batch item 0).
Errors a user can cause (bad model name, wrong modality, uncapturable model, out-of-range layer)
are `PipelineError`; undecodable text or images are `app.inputs.InputError`. Both are ValueErrors
whose message is meant to be shown as is.
"""
from __future__ import annotations

import dataclasses
import functools
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch

import analysis
import hooks
from hooks import registry
from app import figures
from app import inputs as safe_inputs

__all__ = [
    "AUTO_FAITHFULNESS_POSITIONS",
    "GENERAL_CAVEATS",
    "IMAGE_SOURCES",
    "FaithfulnessSummary",
    "GenerationResult",
    "ModelInfo",
    "PipelineError",
    "Run",
    "Sample",
    "Section",
    "analysis_views",
    "build_report",
    "builtin_models",
    "capture_input",
    "cross_input_view",
    "default_model",
    "export_maps",
    "faithfulness",
    "faithfulness_summary",
    "faithfulness_views",
    "generate_input",
    "generation_step_view",
    "gradients",
    "image_queries",
    "image_samples",
    "image_sources",
    "image_view",
    "input_kind",
    "load_bundle",
    "matrix_view",
    "model_info",
    "model_view",
    "run_statistics",
    "text_samples",
    "token_view",
]

Fusion = Literal["mean", "max"]
Progress = Callable[[float, str], None] | None

GENERAL_CAVEATS = (
    "Attention is not importance: a head can look at a token that does not change the prediction.",
    "Patterns differ across inputs and layers: check other inputs before generalising from one.",
    "Attention sinks: many heads park their weight on the first token or a separator when they have "
    "nothing to do; that mass carries no meaning.",
)


class PipelineError(ValueError):
    """A problem the user can fix (model name, input, modality); the message is shown as is."""


def _say(progress: Progress, frac: float, msg: str) -> None:
    if progress is not None:
        progress(float(min(max(frac, 0.0), 1.0)), msg)


# ------------------------------------------------------------------------ built-ins and samples


@dataclass(frozen=True)
class Sample:
    """A shipped sample input: `text` for text samples, `image` (`app.inputs.DecodedImage`) and an
    optional ground-truth `mask` [H, W] bool for image samples."""

    id: str
    title: str
    description: str = ""
    text: str | None = None
    image: Any = None
    mask: np.ndarray | None = None


def builtin_models() -> dict[str, str]:
    """Built-in demo names -> one-line titles (from `hooks.registry`)."""
    return {name: m.title for name, m in registry.BUILTIN_MODELS.items()}


def default_model() -> str:
    """The model the app opens with: the registry's DEFAULT_MODEL."""
    return registry.DEFAULT_MODEL


@functools.lru_cache(maxsize=16)
def _samples(model: str, modality: str) -> tuple[Sample, ...]:
    """The registry's samples of one modality (the model's own first), decoded once through
    `app.inputs`; image samples carry their ground-truth mask [H, W] bool when there is one."""
    from PIL import Image

    out = []
    for s in registry.samples(model):
        if s.modality != modality or not s.file.is_file():
            continue
        if modality == "text":
            out.append(Sample(s.id, s.title, s.description,
                              text=safe_inputs.decode_text(s.file.read_bytes(), filename=s.file.name).text))
            continue
        mask = None
        if s.mask:
            with Image.open(s.mask) as m:
                mask = np.asarray(m.convert("L")) > 127  # [H, W] bool
        out.append(Sample(s.id, s.title, s.description, mask=mask,
                          image=safe_inputs.decode_image(s.file.read_bytes(), filename=s.file.name)))
    return tuple(out)


def text_samples(model: str) -> list[Sample]:
    """Sample texts for `model`: a built-in's own samples first, then the general ones (any other
    model gets every text sample)."""
    return list(_samples(model, "text"))


def image_samples(model: str) -> list[Sample]:
    """Sample images (with ground-truth masks) for `model`, ordered like `text_samples`."""
    return list(_samples(model, "image"))


# --------------------------------------------------------------------------------------- loading


def load_bundle(name_or_path: str, *, trust_remote_code: bool = False, progress: Progress = None):
    """Load a built-in demo, Hugging Face id or local folder through `hooks.load_model`.

    Loader errors (missing folder, pickle-only weights, remote code without opt-in, no network)
    become `PipelineError` with the loader's message.
    """
    name = (name_or_path or "").strip()
    if not name:
        raise PipelineError("Give a model: a built-in name, a Hugging Face id or a local folder.")
    _say(progress, 0.05, f"loading {name} ...")
    try:
        bundle = hooks.load_model(name, trust_remote_code=trust_remote_code)
    except (ValueError, OSError, ImportError, KeyError, RuntimeError) as exc:
        raise PipelineError(f"Could not load {name!r}: {exc}") from None
    _say(progress, 1.0, f"loaded {name}")
    return bundle


@dataclass(frozen=True)
class ModelInfo:
    """What the model panel shows."""

    model_id: str
    class_name: str
    modality: str
    layers: int
    heads: int
    attn_implementation: str
    parameters: int
    device: str
    dtype: str
    revision: str | None = None
    max_positions: int | None = None

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("model", self.model_id), ("class", self.class_name), ("modality", self.modality),
            ("layers", str(self.layers)), ("heads", str(self.heads)),
            ("attention implementation", self.attn_implementation),
            ("parameters", f"{self.parameters:,}"), ("device", self.device), ("dtype", self.dtype),
            ("revision", self.revision or "-"),
            ("max positions", str(self.max_positions) if self.max_positions else "no fixed limit"),
        ]


def _configs(model) -> list[Any]:
    cfg = getattr(model, "config", None)
    out = [cfg] if cfg is not None else []
    for sub in ("text_config", "vision_config", "encoder", "decoder"):
        c = getattr(cfg, sub, None)
        if c is not None and hasattr(c, "to_dict"):
            out.append(c)
    return out


def _first_attr(objs: Sequence[Any], names: Sequence[str]) -> int | None:
    for obj in objs:
        for name in names:
            value = getattr(obj, name, None)
            if isinstance(value, int) and value > 0:
                return value
    return None


def model_info(bundle) -> ModelInfo:
    """Class, layers, heads, attention implementation, parameters, device of a loaded bundle."""
    model = bundle.model
    cfgs = _configs(model)
    sub = cfgs[1:] or cfgs  # composite models: count the towers' layers
    layers = sum(_first_attr([c], ("num_hidden_layers", "n_layer", "num_layers")) or 0 for c in sub)
    if not layers:
        layers = len([m for m in model.modules() if isinstance(m, torch.nn.MultiheadAttention)])
    heads = _first_attr(sub, ("num_attention_heads", "n_head", "num_heads"))
    if heads is None:
        mha = [m for m in model.modules() if isinstance(m, torch.nn.MultiheadAttention)]
        heads = mha[0].num_heads if mha else 0
    loaded = getattr(bundle, "attn_implementation", None) or getattr(
        getattr(model, "config", None), "_attn_implementation", None)
    # What the model runs with, and how the weights shown were obtained (a capture switches sdpa & co.).
    impl = (f"{loaded} (weights captured by the model's own eager attention code)" if loaded
            else "torch nn.MultiheadAttention (per-head weights forced on during capture)")
    params = list(model.parameters())
    return ModelInfo(
        model_id=str(getattr(bundle, "model_id", type(model).__name__)),
        class_name=type(model).__name__,
        modality=str(getattr(bundle, "modality", "text")),
        layers=int(layers),
        heads=int(heads),
        attn_implementation=str(impl),
        parameters=int(sum(p.numel() for p in params)),
        device=str(params[0].device) if params else "cpu",
        dtype=str(params[0].dtype).replace("torch.", "") if params else "-",
        revision=getattr(bundle, "revision", None),
        max_positions=safe_inputs.max_positions_of(getattr(model, "config", None),
                                                   getattr(bundle, "tokenizer", None)),
    )


# -------------------------------------------------------------------------------------- sections


@dataclass
class Section:
    """All captured maps of one (stack, kind) for one input (batch item 0).

    weights[i]: float32 tensor [heads, q, k] of layer `layers[i]` (module `names[i]`).
    query_labels [q] / key_labels [k]: axis labels; query_special / key_special: bool [q] / [k]
    (special tokens, CLS); key_grid: (rows, cols) patch grid when the keys are image patches,
    with `key_cls` the index of the CLS key (None without one). causal: decoder self-attention.
    Statistics are computed on first use and cached on the section.
    """

    stack: str | None
    kind: str
    layers: list[int]
    names: list[str]
    weights: list[torch.Tensor]
    query_labels: tuple[str, ...]
    key_labels: tuple[str, ...]
    query_special: np.ndarray
    key_special: np.ndarray
    causal: bool = False
    key_grid: tuple[int, int] | None = None
    key_cls: int | None = None
    _cache: dict = field(default_factory=dict, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def title(self) -> str:
        where = f"{self.stack} " if self.stack else ""
        return f"{where}{'cross' if self.kind == 'cross' else 'self'}-attention"

    @property
    def n_heads(self) -> int:
        return int(self.weights[0].shape[0])

    def layer_weights(self, layer: int) -> torch.Tensor:
        """[heads, q, k] of layer index `layer` (position in `layers`, not the module's index)."""
        if not 0 <= layer < len(self.weights):
            raise PipelineError(f"layer {layer} is out of range: this section has {len(self.weights)} layers")
        return self.weights[layer]

    def stacked(self) -> torch.Tensor:
        """[layers, heads, q, k] (all layers have the same shape within a section)."""
        return torch.stack(self.weights)

    def _cached(self, key: str, fn: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._cache:
                self._cache[key] = fn()
            return self._cache[key]

    def _batched(self) -> list[torch.Tensor]:
        return [w.unsqueeze(0) for w in self.weights]  # each [1, heads, q, k]

    # statistics (analysis package); each [layers, heads] unless said otherwise
    def entropy(self, *, normalize: bool = True) -> torch.Tensor:
        """Head entropy [layers, heads] (Clark et al. 2019), normalised to [0, 1] by default."""
        return self._cached(f"entropy{normalize}", lambda: torch.stack([
            analysis.head_entropy(w, normalize=normalize, **self._mask_kwargs()) for w in self._batched()
        ])[:, 0])  # [layers, 1, heads] -> [layers, heads]

    def consistency(self) -> torch.Tensor:
        """Layer consistency [layers, layers]: JS distance between head-averaged maps."""
        return self._cached("consistency", lambda: analysis.layer_consistency(self._batched())[0])

    def rollout(self) -> torch.Tensor:
        """Attention rollout [q, k] (Abnar & Zuidema 2020), self-attention sections only."""
        if self.kind != "self":
            raise PipelineError("Rollout needs self-attention; choose an encoder or decoder self-attention section.")
        return self._cached("rollout", lambda: analysis.attention_rollout(self._batched())[0])

    def _mask_kwargs(self) -> dict:
        return {"causal": self.causal}

    def patterns(self):
        """`analysis.HeadPatterns` with [layers, heads] tensors (special tokens are delimiters)."""
        def compute():
            w = self.stacked().unsqueeze(1)  # [layers, 1, heads, q, k]
            q_special = torch.from_numpy(self.query_special.copy())[None]  # [1, q]
            delim = torch.from_numpy(self.key_special.copy())[None]  # [1, k]
            p = analysis.head_patterns(w, causal=self.causal, special_mask=q_special,
                                       delimiter_mask=delim if self.kind == "self" else None)
            return p
        return self._cached("patterns", compute)

    def mask_check(self):
        """`analysis.MaskCheck` over all layers ([layers, heads] future-key mass for causal sections)."""
        return self._cached("mask_check", lambda: analysis.mask_checks(self.stacked(), causal=self.causal))

    def head_distance(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(distance [L*H, L*H] between every pair of heads (Clark et al. 2019), clustering order [L*H])."""
        def compute():
            dist = analysis.head_distance(self._batched(), **self._mask_kwargs())
            if not bool(torch.isfinite(dist).all()):  # NaN/inf maps (see Run.warnings): no clustering
                return dist, torch.arange(dist.shape[0])
            return dist, analysis.cluster_order(dist)
        return self._cached("head_distance", compute)


# ------------------------------------------------------------------------------------------- runs


@dataclass
class Run:
    """One input captured on one model: the sections on show plus what the warnings panel needs.

    image: [H, W, 3] uint8 picture the overlays are drawn on (image models), else None.
    prediction: one line, e.g. "class: circle (p = 0.97)" or "next token: ' kite' (p = 0.91)".
    warnings: input notes, truncation, non-finite values, mask leaks (shown beside the figures).
    """

    name: str
    model_id: str
    input_kind: str
    text: str | None
    image: np.ndarray | None
    input_sha256: str
    sections: list[Section]
    prediction: str = ""
    warnings: list[str] = field(default_factory=list)
    truncation: str | None = None
    n_positions: int = 0
    _bundle: Any = field(default=None, repr=False)
    _model_inputs: dict = field(default_factory=dict, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def section(self, stack: str | None = "_first", kind: str | None = None) -> Section:
        """The section for (stack, kind); with no arguments the main one (first captured)."""
        if stack == "_first":
            return self.sections[0]
        for sec in self.sections:
            if sec.stack == stack and (kind is None or sec.kind == kind):
                return sec
        raise PipelineError(f"no {stack or ''} {kind or ''} attention was captured for this input")

    def _cached(self, key: str, fn: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._cache:
                self._cache[key] = fn()
            return self._cache[key]


def input_kind(bundle) -> str:
    """"text" for text models, "image" for image and image-to-text (captioning) models."""
    return "text" if str(getattr(bundle, "modality", "text")) == "text" else "image"


def _labels(bundle, *, ids: Sequence[int] | None = None, n: int | None = None, stack: str | None = None):
    """`hooks.position_labels` -> (texts [n], special bool [n], patch grid (rows, cols) or None,
    index of the CLS position or None)."""
    labels = hooks.position_labels(bundle, ids, n_positions=n, stack=stack)
    texts = tuple(lab.text for lab in labels)
    special = np.array([lab.is_special for lab in labels], bool)
    patches = [lab for lab in labels if lab.kind == "patch"]
    grid = (max(p.row for p in patches) + 1, max(p.col for p in patches) + 1) if patches else None
    cls = next((lab.index for lab in labels if lab.kind == "cls"), None)
    return texts, special, grid, cls


def _sections(maps, labels: dict, *, causal_stacks: set, grid_of: dict) -> list[Section]:
    """Group AttentionMaps by (stack, kind) into Sections (batch item 0, first call per module).

    labels[(stack, kind)] = (query_labels, query_special, key_labels, key_special).
    """
    groups: dict[tuple, dict[str, Any]] = {}
    for m in maps:
        key = (m.stack, m.kind)
        g = groups.setdefault(key, {})
        if m.name not in g:  # first call of each module (generation steps are stitched elsewhere)
            g[m.name] = m
    out = []
    order = {("encoder", "self"): 0, (None, "self"): 0, ("vision", "self"): 1, ("text", "self"): 2,
             ("decoder", "self"): 3, ("decoder", "cross"): 4}
    for key in sorted(groups, key=lambda k: order.get(k, 9)):
        ms = sorted(groups[key].values(), key=lambda m: m.layer)
        q_lab, q_sp, k_lab, k_sp = labels[key]
        weights = [m.weights[0].float() for m in ms]  # each [heads, q, k]
        q, k = weights[0].shape[-2:]
        if (len(q_lab), len(k_lab)) != (q, k):
            raise PipelineError(f"internal: {len(q_lab)}x{len(k_lab)} labels for {q}x{k} maps in {key}")
        grid = grid_of.get(key)
        out.append(Section(
            stack=key[0], kind=key[1], layers=[m.layer for m in ms], names=[m.name for m in ms],
            weights=weights, query_labels=q_lab, key_labels=k_lab, query_special=q_sp,
            key_special=k_sp, causal=key[0] in causal_stacks and key[1] == "self",
            key_grid=grid[0] if grid else None, key_cls=grid[1] if grid else None))
    return out


def _describe_prediction(bundle, logits: torch.Tensor) -> tuple[str, int | None]:
    """One line for the model's output and the index of the predicted class / token."""
    cfg = getattr(bundle.model, "config", None)
    if logits.ndim == 2:  # [batch, classes]
        probs = logits[0].float().softmax(-1)
        c = int(probs.argmax())
        names = getattr(cfg, "id2label", None) or getattr(bundle, "labels", None) or {}
        label = names.get(c, names.get(str(c), f"class {c}")) if isinstance(names, dict) else (
            names[c] if c < len(names) else f"class {c}")
        return f"class: {label} (p = {probs[c]:.2f})", c
    if logits.ndim == 3:  # [batch, seq, vocab]: next token after the last position
        probs = logits[0, -1].float().softmax(-1)
        t = int(probs.argmax())
        tok = bundle.tokenizer.decode([t]) if getattr(bundle, "tokenizer", None) else str(t)
        return f"next token: {tok!r} (p = {probs[t]:.2f})", t
    return "", None


def _display_image(img) -> np.ndarray:
    """PIL image -> [H, W, 3] uint8, longest side at most 512 px (overlays stay light)."""
    from PIL import Image

    im = img.convert("RGB")
    if max(im.size) > 512:
        scale = 512 / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


# ---------------------------------------------------------------------------------------- capture


def _check(bundle, given: str) -> None:
    try:
        safe_inputs.check_modality(str(getattr(bundle, "modality", "text")), given)
    except safe_inputs.InputError as exc:
        raise PipelineError(str(exc)) from None


def _encode_text(bundle, text: str) -> tuple[dict, list[int], Any]:
    """Tokenise (truncating to the model's limit) -> (model inputs, token ids, TruncationInfo|None)."""
    tok = getattr(bundle, "tokenizer", None)
    if tok is None:
        raise PipelineError(f"{getattr(bundle, 'model_id', 'this model')} has no tokenizer: it cannot read text.")
    fast = bool(getattr(tok, "is_fast", False))
    enc = tok(text, return_tensors="pt", return_offsets_mapping=fast)
    offsets = enc.pop("offset_mapping", None)
    ids = enc["input_ids"]  # [1, n]
    if ids.shape[1] == 0:
        raise PipelineError("The text gives no tokens for this model's tokenizer.")
    limit = safe_inputs.max_positions_of(getattr(bundle.model, "config", None), tok)
    trunc = safe_inputs.truncate_tokens(ids.shape[1], limit,
                                        offsets=offsets[0].tolist() if offsets is not None else None)
    keep = ("input_ids", "attention_mask", "token_type_ids")
    inputs = {k: v[:, : (limit if trunc else None)] for k, v in enc.items() if k in keep}
    return inputs, inputs["input_ids"][0].tolist(), trunc


def _pixels(bundle, image) -> torch.Tensor:
    proc = getattr(bundle, "image_processor", None)
    if proc is None:
        raise PipelineError(f"{getattr(bundle, 'model_id', 'this model')} has no image processor: it cannot read images.")
    return proc(images=image.convert("RGB"), return_tensors="pt")["pixel_values"]  # [1, 3, H, W]


def _pil(image):
    """DecodedImage | PIL image -> (PIL RGB image, sha256 or None, decode notes)."""
    if hasattr(image, "image") and hasattr(image, "sha256"):
        return image.image, image.sha256, list(getattr(image, "warnings", ()))
    return image, None, []


def _nonfinite(run_maps, model) -> list[str]:
    notes = safe_inputs.nonfinite_warnings({m.name: m.weights for m in run_maps}, what="attention")
    if notes:
        notes += safe_inputs.nonfinite_warnings(dict(model.named_parameters()), what="weights")[:3]
    return notes


def capture_input(bundle, *, text: str | None = None, image=None, name: str = "input",
                  progress: Progress = None, max_new_tokens: int = 20) -> Run:
    """Run one input through the model under `hooks.capture_attention` -> `Run`.

    text models: one forward pass over the (truncated) tokens; image models: one forward pass over
    the processed pixels; image-to-text (captioning) models: greedy `generate()` of at most
    `max_new_tokens`, with the KV-cache steps stitched into full maps (encoder self, decoder self
    [T, T], cross [T, patches]). `image` is an `app.inputs.DecodedImage` or a PIL image.
    """
    if (text is None) == (image is None):
        raise PipelineError("Give exactly one input: a text or an image.")
    _check(bundle, "text" if text is not None else "image")
    model = bundle.model
    _say(progress, 0.1, "preparing input")
    if text is not None:
        text = safe_inputs.decode_text(text).text
        inputs, ids, trunc = _encode_text(bundle, text)
        _say(progress, 0.3, f"capturing attention over {len(ids)} tokens")
        with torch.no_grad(), hooks.capture_attention(model) as cap:
            out = model(**inputs)
        lab, sp, _, _ = _labels(bundle, ids=ids)
        labels = {key: (lab, sp, lab, sp) for key in ((None, "self"), ("encoder", "self"), ("text", "self"))}
        causal = {None} if getattr(bundle, "is_causal", False) else set()
        sections = _sections(cap.maps, labels, causal_stacks=causal, grid_of={})
        prediction, _ = _describe_prediction(bundle, out.logits) if hasattr(out, "logits") else ("", None)
        run = Run(name=name, model_id=str(bundle.model_id), input_kind="text", text=text, image=None,
                  input_sha256=safe_inputs.sha256_hex(text.encode("utf-8")), sections=sections,
                  prediction=prediction, truncation=trunc.message if trunc else None, n_positions=len(ids),
                  _bundle=bundle, _model_inputs=inputs)
        run.warnings += [trunc.message] if trunc else []
    else:
        pil, sha, notes = _pil(image)
        pixels = _pixels(bundle, pil)
        if getattr(bundle, "modality", "") == "image-to-text":
            return _caption(bundle, pil, sha, notes, pixels, name, progress, max_new_tokens)
        _say(progress, 0.3, "capturing attention over the image patches")
        with torch.no_grad(), hooks.capture_attention(model) as cap:
            out = model(pixel_values=pixels)
        n = cap.maps[0].weights.shape[-1]
        lab, sp, grid, cls = _labels(bundle, n=n)
        labels = {(None, "self"): (lab, sp, lab, sp), ("vision", "self"): (lab, sp, lab, sp)}
        sections = _sections(cap.maps, labels, causal_stacks=set(),
                             grid_of={(None, "self"): (grid, cls), ("vision", "self"): (grid, cls)})
        prediction, _ = _describe_prediction(bundle, out.logits) if hasattr(out, "logits") else ("", None)
        run = Run(name=name, model_id=str(bundle.model_id), input_kind="image", text=None,
                  image=_display_image(pil), input_sha256=sha or safe_inputs.sha256_hex(pil.tobytes()),
                  sections=sections, prediction=prediction, n_positions=n, _bundle=bundle,
                  _model_inputs={"pixel_values": pixels}, warnings=notes)
    run.warnings += _nonfinite(cap.maps, model)
    run.warnings += _mask_leaks(run)
    _say(progress, 1.0, "captured")
    return run


def _mask_leaks(run: Run) -> list[str]:
    """`analysis.mask_checks` message for every causal section that leaks onto future keys."""
    return [f"{sec.title}: {sec.mask_check().message}" for sec in run.sections
            if sec.causal and not sec.mask_check().ok]


# ------------------------------------------------------------------------------------- generation


@dataclass
class GenerationResult:
    """Greedy generation captured through the KV cache and stitched (`Capture.stitched`).

    tokens: labels of the whole sequence (prompt / start token + generated); the stitched maps
    cover the first T = len(tokens) - 1 positions (the last token is never fed back).
    Generated token s (0-based) is tokens[prompt_len + s]; it was predicted by query row
    prompt_len + s - 1, whose attention `step_row(s)` returns.
    """

    text: str
    tokens: tuple[str, ...]
    prompt_len: int
    sections: list[Section]

    @property
    def n_generated(self) -> int:
        return len(self.tokens) - self.prompt_len

    def step_row(self, step: int) -> int:
        if not 0 <= step < self.n_generated:
            raise PipelineError(f"step {step} is out of range: {self.n_generated} tokens were generated")
        return self.prompt_len + step - 1


def _generate(bundle, inputs: dict, max_new_tokens: int, progress: Progress):
    model = bundle.model
    cfg = getattr(model, "generation_config", None)
    extra = {}
    if cfg is not None and getattr(cfg, "pad_token_id", None) is None:
        eos = getattr(cfg, "eos_token_id", None)
        extra["pad_token_id"] = eos[0] if isinstance(eos, list) else eos
    _say(progress, 0.4, f"generating up to {max_new_tokens} tokens")
    with torch.no_grad(), hooks.capture_attention(model) as cap:
        seq = model.generate(**inputs, max_new_tokens=int(max_new_tokens), do_sample=False,
                             num_beams=1, **extra)
    return seq[0].tolist(), cap


def generate_input(bundle, run: Run, *, max_new_tokens: int = 10, progress: Progress = None) -> GenerationResult:
    """Generate after a text run's input (causal LMs) and stitch every step's attention."""
    if run.input_kind != "text" or not getattr(bundle, "is_causal", False):
        raise PipelineError("Generation is for causal language models (and the captioner, which "
                            "generates its caption when the image is captured).")
    if not 1 <= int(max_new_tokens) <= 256:
        raise PipelineError("Generate between 1 and 256 tokens.")
    inputs = {k: v for k, v in run._model_inputs.items() if k in ("input_ids", "attention_mask")}
    prompt_len = inputs["input_ids"].shape[1]
    limit = safe_inputs.max_positions_of(getattr(bundle.model, "config", None), bundle.tokenizer)
    if limit is not None and prompt_len + max_new_tokens > limit:
        raise PipelineError(f"The input has {prompt_len} tokens; generating {max_new_tokens} more would pass "
                            f"the model's maximum of {limit} positions.")
    seq, cap = _generate(bundle, inputs, max_new_tokens, progress)
    stitched = cap.stitched()
    total = stitched[0].weights.shape[-1]  # T = len(seq) - 1
    lab, sp, _, _ = _labels(bundle, ids=seq)
    key = (lab[:total], sp[:total], lab[:total], sp[:total])
    sections = _sections(stitched, {(None, "self"): key, ("decoder", "self"): key},
                         causal_stacks={None, "decoder"}, grid_of={})
    text = bundle.tokenizer.decode(seq[prompt_len:], skip_special_tokens=True)
    _say(progress, 1.0, "generated")
    return GenerationResult(text=text, tokens=lab, prompt_len=prompt_len, sections=sections)


def _caption(bundle, pil, sha, notes, pixels, name, progress, max_new_tokens) -> Run:
    """Captioning models: generate the caption, then sections encoder self / decoder self / cross."""
    seq, cap = _generate(bundle, {"pixel_values": pixels}, max_new_tokens, progress)
    stitched = cap.stitched()
    dec_self = next(m for m in stitched if m.stack == "decoder" and m.kind == "self")
    enc = next(m for m in stitched if m.stack == "encoder")
    total, n_enc = dec_self.weights.shape[-1], enc.weights.shape[-1]
    img_lab, img_sp, grid, cls = _labels(bundle, n=n_enc, stack="encoder")
    tok_lab, tok_sp, _, _ = _labels(bundle, ids=seq, stack="decoder")
    t_lab, t_sp = tok_lab[:total], tok_sp[:total]
    labels = {("encoder", "self"): (img_lab, img_sp, img_lab, img_sp),
              ("decoder", "self"): (t_lab, t_sp, t_lab, t_sp),
              ("decoder", "cross"): (t_lab, t_sp, img_lab, img_sp)}
    sections = _sections(stitched, labels, causal_stacks={"decoder"},
                         grid_of={("encoder", "self"): (grid, cls), ("decoder", "cross"): (grid, cls)})
    caption = bundle.tokenizer.decode(seq, skip_special_tokens=True).strip()
    run = Run(name=name, model_id=str(bundle.model_id), input_kind="image", text=None,
              image=_display_image(pil), input_sha256=sha or safe_inputs.sha256_hex(pil.tobytes()),
              sections=sections, prediction=f"caption: {caption!r}", n_positions=n_enc, _bundle=bundle,
              _model_inputs={"pixel_values": pixels}, warnings=notes)
    # the decoder sections above are the stitched generation; keep it for the Generation view
    run._cache["generation"] = GenerationResult(text=caption, tokens=tok_lab, prompt_len=1,
                                                sections=[s for s in sections if s.stack == "decoder"])
    run.warnings += _nonfinite(stitched, bundle.model)
    run.warnings += _mask_leaks(run)
    _say(progress, 1.0, "captured")
    return run


# ------------------------------------------------------------------------------- prepared figures


def matrix_view(sec: Section, *, layer: int, head: int | None = None, fusion: Fusion = "mean",
                hide_special: bool = False, scale: str = "linear",
                window: tuple[int, int] | None = None, topk: int | None = None):
    """View 1: one layer's [q, k] attention (one head or fused) -> `figures.MatrixData`."""
    w = sec.layer_weights(layer)  # [heads, q, k]
    if head is not None and not 0 <= head < sec.n_heads:
        raise PipelineError(f"head {head} is out of range: this layer has {sec.n_heads} heads")
    square = sec.kind == "self"
    desc = f"head {head}" if head is not None else f"{fusion} of {sec.n_heads} heads"
    return figures.prepare_matrix(
        w, sec.key_labels, query_tokens=None if square else sec.query_labels,
        layer=sec.layers[layer], head=head, fusion=fusion,
        hide=sec.key_special if hide_special else None,
        hide_queries=None if square or not hide_special else sec.query_special,
        window=window, topk=topk, scale=scale,
        title=f"{sec.title.capitalize()}, layer {sec.layers[layer]}, {desc}")


# --------------------------------------------------------------- gradients and faithfulness check


def _query_index(run: Run, sec: Section) -> int:
    """The position whose output is explained: the last token (causal) or CLS / first token."""
    if sec.causal:
        return len(sec.query_labels) - 1
    return sec.key_cls if sec.key_cls is not None else 0


def _score_fn_logits(run: Run, logits: torch.Tensor, target: int) -> torch.Tensor:
    """Target probability [m] from logits [m, C] (classifiers) or [m, seq, V] (next token)."""
    last = logits[:, -1] if logits.ndim == 3 else logits  # [m, C]
    return last.float().softmax(-1)[:, target]


def _target(run: Run) -> int | None:
    def compute():
        bundle = run._bundle
        with torch.no_grad(), hooks.capture_attention(bundle.model) as _:
            out = bundle.model(**run._model_inputs)
        logits = getattr(out, "logits", None)
        return None if logits is None or logits.ndim not in (2, 3) else _describe_prediction(bundle, logits)[1]
    return run._cached("target", compute)


def _need_target(run: Run) -> int:
    if run._bundle is None or "generation" in run._cache and run.input_kind == "image":
        raise PipelineError("Gradient rollout and the faithfulness check need a classifier or a causal LM; "
                            "for the captioner use the cross-attention and rollout views.")
    target = _target(run)
    if target is None:
        raise PipelineError(f"{run.model_id} has no prediction head (no logits): there is no target "
                            "to explain with gradients or occlusion.")
    return target


def gradients(run: Run) -> dict[str, torch.Tensor]:
    """One forward + backward with the graph kept (Chefer et al. 2021 needs dA):
    {"gradient_rollout": [q, k] of the main section, "input_x_gradient": [positions] or absent}.

    Gradients are taken with `torch.autograd.grad` w.r.t. the attention maps and the input
    embeddings / pixels only, so concurrent sessions never accumulate into shared parameters.
    """
    def compute():
        target = _need_target(run)
        bundle, sec = run._bundle, run.sections[0]
        model = bundle.model
        inputs = dict(run._model_inputs)
        leaf = None
        with torch.enable_grad():
            if "pixel_values" in inputs:
                leaf = inputs["pixel_values"].detach().clone().requires_grad_(True)  # [1, 3, H, W]
                inputs["pixel_values"] = leaf
            elif hasattr(model, "get_input_embeddings") and bundle.kind == "hf":
                ids = inputs.pop("input_ids")
                leaf = model.get_input_embeddings()(ids).detach().requires_grad_(True)  # [1, n, d]
                inputs["inputs_embeds"] = leaf
            with hooks.capture_attention(model, keep_graph=True) as cap:
                out = model(**inputs)
            score = _score_fn_logits(run, out.logits, target).sum()
            lives = {m.name: m.live for m in cap.maps if m.live is not None}
            attn = [lives[n] for n in sec.names]  # forward order, each [1, heads, q, k]
            wrt = attn + ([leaf] if leaf is not None else [])
            grads = torch.autograd.grad(score, wrt, allow_unused=True)
        attn_d = [a.detach()[:1].float() for a in attn]
        g_attn = [torch.zeros_like(a) if g is None else g.detach()[:1].float() for a, g in zip(attn_d, grads)]
        result = {"gradient_rollout": analysis.gradient_rollout(attn_d, g_attn)[0]}  # [q, k]
        g_leaf = grads[-1] if leaf is not None else None
        if g_leaf is not None:
            gx = (g_leaf * leaf).detach()[0]  # [n, d] or [3, H, W]
            if gx.ndim == 2:
                result["input_x_gradient"] = gx.sum(-1)  # [n]
            elif sec.key_grid is not None:
                gh, gw = sec.key_grid
                _, H, W = gx.shape
                per_patch = gx.sum(0).reshape(gh, H // gh, gw, W // gw).sum((1, 3)).flatten()  # [gh*gw]
                full = torch.zeros(len(sec.key_labels))
                full[len(sec.key_labels) - gh * gw:] = per_patch
                result["input_x_gradient"] = full
        return result
    return run._cached("gradients", compute)


def _occlusion_score_fn(run: Run, target: int) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """score_fn(keep [m, n] bool) -> target probability [m], and the removable mask [n].

    Text: occluded tokens are replaced by the tokenizer's mask / unk / pad token (positions kept).
    Images: occluded patches are set to 0 in the processed pixels (the dataset mean colour).
    """
    bundle, sec = run._bundle, run.sections[0]
    model, inputs = bundle.model, run._model_inputs
    n = len(sec.key_labels)
    removable = torch.from_numpy(~sec.key_special.copy())
    if "pixel_values" in inputs:
        pixels = inputs["pixel_values"]  # [1, 3, H, W]
        gh, gw = sec.key_grid
        _, _, H, W = pixels.shape
        first = n - gh * gw

        def score(keep: torch.Tensor) -> torch.Tensor:
            m = keep.shape[0]
            patch_keep = keep[:, first:].reshape(m, 1, gh, 1, gw, 1).float()  # [m, 1, gh, 1, gw, 1]
            px = pixels.reshape(1, 3, gh, H // gh, gw, W // gw) * patch_keep  # [m, 3, gh, ph, gw, pw]
            with torch.no_grad():
                return _score_fn_logits(run, model(pixel_values=px.reshape(m, 3, H, W)).logits, target)
        return score, removable
    tok = bundle.tokenizer
    repl = next((t for t in (getattr(tok, "mask_token_id", None), getattr(tok, "unk_token_id", None),
                             getattr(tok, "pad_token_id", None), getattr(tok, "eos_token_id", None))
                 if t is not None), 0)

    def score(keep: torch.Tensor) -> torch.Tensor:
        m = keep.shape[0]
        batch = {k: v.expand(m, -1) for k, v in inputs.items()}  # [m, n]
        batch["input_ids"] = torch.where(keep, batch["input_ids"], torch.full_like(batch["input_ids"], repl))
        with torch.no_grad():
            return _score_fn_logits(run, model(**batch).logits, target)
    return score, removable


def faithfulness(run: Run, *, progress: Progress = None):
    """Occlusion vs attention (last layer head mean, rollout, gradient rollout, input×gradient)
    for the model's own prediction -> `analysis.FaithfulnessReport` (cached on the run)."""
    def compute():
        target = _need_target(run)
        sec = run.sections[0]
        if sec.kind != "self":
            raise PipelineError("The faithfulness check needs self-attention maps.")
        if len(sec.key_labels) < 2:  # occlusion needs something to remove and something to keep
            raise PipelineError("The faithfulness check needs an input of at least two positions.")
        q = _query_index(run, sec)
        last = sec.weights[-1].mean(0)[q]  # [k]
        importances = {"rollout": sec.rollout()[q], "last-layer attention": last}
        grads = gradients(run)
        importances["gradient rollout"] = grads["gradient_rollout"][q]
        score_fn, removable = _occlusion_score_fn(run, target)
        done = lambda i, total: _say(progress, i / max(total, 1), f"occlusion: {i}/{total} evaluations")  # noqa: E731
        return analysis.faithfulness_check(
            n_positions=len(sec.key_labels), score_fn=score_fn, attention_importance=importances,
            gradient_importance=grads.get("input_x_gradient"), removable=removable,
            batch_size=32, progress=done, primary="rollout")
    return run._cached("faithfulness", compute)


# ------------------------------------------------------------------------------ warnings, report

AUTO_FAITHFULNESS_POSITIONS = 128
"""Inputs up to this many positions get the faithfulness check automatically (a few seconds)."""


@dataclass(frozen=True)
class FaithfulnessSummary:
    """What the warnings panel prints: the verdict sentence and one line of numbers (ok=False when
    the check does not apply to this model, with the reason as `verdict`)."""

    ok: bool
    verdict: str
    numbers: str = ""
    report: Any = None


def faithfulness_summary(run: Run, *, progress: Progress = None) -> FaithfulnessSummary:
    """`faithfulness` as one verdict sentence plus ρ / top-k overlap / AOPC of every method."""
    try:
        rep = faithfulness(run, progress=progress)
    except PipelineError as exc:
        return FaithfulnessSummary(False, f"Faithfulness check not available: {exc}")
    nums = "; ".join(f"{name}: ρ = {m.spearman:.2f}, top-{rep.top_k} overlap = {m.top_k_overlap:.2f}, "
                     f"AOPC = {m.aopc:.3f}" for name, m in rep.methods.items())
    nums += f"; occlusion AOPC = {rep.occlusion_aopc:.3f}, random = {rep.random_aopc:.3f}"
    return FaithfulnessSummary(True, rep.verdict, nums, rep)


def export_maps(run: Run) -> dict[str, torch.Tensor]:
    """Every captured map of the run for attention.npz: module name -> [1, heads, q, k]."""
    return {f"{sec.stack + '/' if sec.stack else ''}{name}": w.unsqueeze(0)  # [1, heads, q, k]
            for sec in run.sections for name, w in zip(sec.names, sec.weights)}


def run_statistics(run: Run) -> dict:
    """Per section: entropy [L, H] (normalised), pattern labels, sinks, layer consistency, mask
    check; the faithfulness numbers when the check has run. Plain lists, ready for report.json."""
    stats: dict[str, Any] = {}
    for sec in run.sections:
        pat = sec.patterns()
        entry = {
            "layers": sec.layers,
            "entropy_normalized": sec.entropy().tolist(),
            "pattern_labels": [row[0] for row in pat.labels],  # [L][H]
            "sink_heads": pat.sink[:, 0].tolist(),
            "sink_mass": pat.sink_mass[:, 0].tolist(),
            "layer_consistency": sec.consistency().tolist(),
        }
        if sec.causal:
            entry["mask_check"] = sec.mask_check().message
        stats[sec.title] = entry
    rep = run._cache.get("faithfulness")
    if rep is not None:
        stats["faithfulness"] = {
            "verdict": rep.verdict, "primary": rep.primary, "top_k": rep.top_k,
            "methods": {n: {"spearman": m.spearman, "top_k_overlap": m.top_k_overlap, "aopc": m.aopc,
                            "strength": m.strength} for n, m in rep.methods.items()},
            "occlusion_aopc": rep.occlusion_aopc, "random_aopc": rep.random_aopc}
    return stats


def build_report(run: Run, *, settings: dict | None = None, runs: Sequence[Run] = ()) -> dict:
    """report.json for one run (plus the other inputs' records) through `app.export.build_report`."""
    from app import export

    info = model_info(run._bundle)
    records = [export.input_record(text=r.text, image_sha256=r.input_sha256 if r.text is None else None,
                                   name=r.name, num_tokens=r.n_positions) for r in (list(runs) or [run])]
    warnings = list(run.warnings) + list(GENERAL_CAVEATS)
    summary = run._cache.get("faithfulness")
    if summary is not None:
        warnings.append(summary.verdict)
    return export.build_report(
        model_id=info.model_id, revision=info.revision, model_class=info.class_name,
        attn_implementation=info.attn_implementation, dtype=info.dtype, num_layers=info.layers,
        num_heads=info.heads, inputs=records, settings=dict(settings or {}),
        statistics=run_statistics(run), warnings=warnings)


# --------------------------------------------------------------------- more prepared figure data


def model_view(sec: Section, *, hide_special: bool = False, scale: str = "linear"):
    """View 2: every layer x head of the section as one grid -> `figures.GridData`."""
    square = sec.kind == "self"
    return figures.prepare_model_view(
        sec.weights, sec.key_labels, query_tokens=None if square else sec.query_labels,
        layers=sec.layers, hide=sec.key_special if hide_special else None,
        hide_queries=None if square or not hide_special else sec.query_special, scale=scale,
        title=f"Model view: {sec.title}, every layer and head")


def token_view(sec: Section, *, layer: int, query: int, head: int | None = None, fusion: Fusion = "mean",
               hide_special: bool = False):
    """View 3: attention of query position `query` over the keys -> `figures.TokenData`."""
    if not 0 <= query < len(sec.query_labels):
        raise PipelineError(f"query {query} is out of range: {len(sec.query_labels)} positions")
    w = sec.layer_weights(layer)  # [heads, q, k]
    return figures.prepare_tokens(
        w, sec.key_labels, query=query, query_label=None if sec.kind == "self" else sec.query_labels[query],
        head=head, fusion=fusion, hide=sec.key_special if hide_special else None)


def generation_step_view(gen: GenerationResult, *, step: int, layer: int, head: int | None = None,
                         fusion: Fusion = "mean"):
    """View 6: the attention row that produced generated token `step` -> `figures.TokenData`."""
    sec = next(s for s in gen.sections if s.kind == "self")
    row = gen.step_row(step)
    w = sec.layer_weights(min(layer, len(sec.layers) - 1))[:, row, : row + 1]  # [heads, k so far]
    return figures.prepare_generation_step(
        w, gen.tokens[: row + 1], step=step, prompt_len=gen.prompt_len,
        generated=gen.tokens[gen.prompt_len + step], head=head, fusion=fusion)


IMAGE_SOURCES = ("attention", "rollout", "gradient rollout")


def image_sources(run: Run, sec: Section) -> list[str]:
    """Maps the image view offers for this run/section."""
    if sec.key_grid is None:
        raise PipelineError("The image view needs attention over image patches: choose the encoder "
                            "self-attention or the cross-attention of an image model.")
    if sec.kind == "cross":
        return ["cross-attention", "relevance (Chefer et al.)"]
    return list(IMAGE_SOURCES) if "generation" not in run._cache else ["attention", "rollout"]


def image_queries(run: Run, sec: Section, source: str) -> list[str]:
    """Query positions to explain: CLS and patches (self-attention), generated words (cross)."""
    if sec.kind == "cross":
        return [f"{i}: {t}" for i, t in enumerate(sec.query_labels)][1:] or ["0: " + sec.query_labels[0]]
    first = [f"{i}: {t}" for i, t in enumerate(sec.query_labels) if sec.query_special[i]]
    patches = [f"{i}: {t}" for i, t in enumerate(sec.query_labels) if not sec.query_special[i]]
    if source != "attention":
        return first or ["mean of patches"]
    return first + patches


def _relevance(run: Run) -> torch.Tensor:
    """Chefer et al. 2021 encoder-decoder relevance [T_dec, T_enc] of the captioner (no gradients)."""
    def compute():
        enc, dec, cross = (run.section("encoder", "self"), run.section("decoder", "self"),
                           run.section("decoder", "cross"))
        return analysis.encoder_decoder_relevance(enc._batched(), dec._batched(), cross._batched())[0]
    return run._cached("relevance", compute)


def image_view(run: Run, sec: Section, *, source: str, query: str, layer: int = 0, head: int | None = None,
               fusion: Fusion = "mean", opacity: float = 0.5, mask=None):
    """View 4: a patch map over the image -> `figures.ImageData`.

    source "attention": row `query` of layer `layer` (head or fused); "rollout": attention
    rollout from `query` (CLS); "gradient rollout": Chefer et al. 2021 from `query`;
    "cross-attention": a generated word's row of the cross-attention; "relevance": its
    encoder-decoder relevance. `query` is one of `image_queries(...)` ("index: label").
    """
    if run.image is None or sec.key_grid is None:
        raise PipelineError("The image view needs an image input and attention over image patches.")
    gh, gw = sec.key_grid
    n = len(sec.key_labels)
    first = n - gh * gw
    q = None if query == "mean of patches" else int(str(query).split(":")[0])
    if source in ("attention", "cross-attention"):
        w = sec.layer_weights(layer)  # [heads, q, k]
        a = w[head] if head is not None else (w.mean(0) if fusion == "mean" else w.amax(0))  # [q, k]
        row, what = a[q], f"{source}, layer {sec.layers[layer]}, {'head %d' % head if head is not None else fusion}"
    elif source == "rollout":
        r = sec.rollout()  # [q, k]
        row, what = (r[first:].mean(0) if q is None else r[q]), "attention rollout"
    elif source == "gradient rollout":
        r = gradients(run)["gradient_rollout"]  # [q, k]
        row, what = (r[first:].mean(0) if q is None else r[q]), "gradient rollout (gradient-weighted, Chefer et al. 2021)"
    elif source.startswith("relevance"):
        row, what = _relevance(run)[q], "encoder-decoder relevance (Chefer et al. 2021)"
    else:
        raise PipelineError(f"unknown map {source!r}; choose one of {image_sources(run, sec)}")
    heat = row[first:].reshape(gh, gw)  # [k] -> patches [gh, gw]
    who = sec.query_labels[q] if q is not None else "all patches"
    if mask is not None and np.asarray(mask).shape != run.image.shape[:2]:
        mask = None
    return figures.prepare_image(run.image, heat.numpy(), opacity=opacity, mask=mask,
                                 title=f"{what[0].upper()}{what[1:]} from {who!r}")


def analysis_views(sec: Section) -> dict[str, Any]:
    """View 5 for one section: entropy, pattern labels, layer consistency, head distance
    (prepared once per section and cached on it)."""
    return dict(sec._cached("analysis_views", lambda: _analysis_views(sec)))


def _analysis_views(sec: Section) -> dict[str, Any]:
    pat = sec.patterns()
    labels = [row[0] for row in pat.labels]  # [L][H]
    label_score = torch.stack([torch.stack([
        pat.scores[lab][li, 0, h] if lab in pat.scores else pat.entropy[li, 0, h] * 0 + float("nan")
        for h, lab in enumerate(row)]) for li, row in enumerate(labels)])  # [L, H]
    dist, order = sec.head_distance()
    return {
        "entropy": figures.prepare_entropy(sec.entropy(), layers=sec.layers, max_entropy=1.0,
                                           unit="normalised", title="Head entropy (0 focused, 1 uniform)"),
        "patterns": figures.prepare_patterns(labels, label_score.nan_to_num(0.0), layers=sec.layers),
        "layer_consistency": figures.prepare_layer_consistency(
            sec.consistency(), layers=sec.layers, value_name="JS distance",
            title="Layer consistency (JS distance)"),
        "head_distance": figures.prepare_head_distance(dist, order=order.tolist(), num_heads=sec.n_heads,
                                                       title="Head distance (JS), clustered"),
    }


def cross_input_view(sections: Sequence[Section], *, names: Sequence[str] = ()) -> dict[str, Any]:
    """Cross-input consistency of one section over several inputs: per head mean ± spread."""
    if len(sections) < 2:
        raise PipelineError("Cross-input consistency needs at least two inputs.")
    shapes = {tuple(s.stacked().shape[:2]) for s in sections}
    if len(shapes) > 1:
        raise PipelineError("The inputs gave different layer/head layouts; compare inputs of one model.")
    cons = analysis.cross_input_consistency([s.patterns() for s in sections])
    changed = int(cons.label_changes.sum())
    p = figures.prepare_cross_input(cons.mean["entropy"][:, 0], cons.std["entropy"][:, 0],
                                    statistic="entropy", n_inputs=cons.n_inputs, layers=sections[0].layers)
    if changed:
        p = dataclasses.replace(p, note=f"{changed} head(s) change their dominant pattern across these inputs")
    return {"cross_input": p}


def faithfulness_views(run: Run) -> dict[str, Any]:
    """Deletion curves and the per-position importances of the faithfulness check (if it ran)."""
    rep = run._cache.get("faithfulness")
    if rep is None:
        return {}
    def compute():
        curves = {name: m.deletion_curve for name, m in rep.methods.items()}
        imps = {"occlusion": rep.occlusion.nan_to_num(0.0), **{n: m.importance for n, m in rep.methods.items()}}
        return {"deletion_curves": figures.prepare_deletion_curves(curves),
                "importance": figures.prepare_importance(run.sections[0].key_labels, imps)}
    return dict(run._cached("faithfulness_views", compute))
