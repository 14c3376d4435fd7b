"""`attnscope export` and `attnscope inspect`: headless reports through the app's one pipeline.

    attnscope export --model NAME|ID|PATH (--text T | --text-file F | --image F | --inputs DIR)
                     [--layers 0,3-5] [--heads 0,2] [--views matrix,model,...] [--formats png,...]
                     --out DIR [--force] [--trust-remote-code]
    attnscope inspect --model NAME|ID|PATH (--text T | --text-file F | --image F)

Everything is computed by `app.pipeline` (load -> capture -> analyse -> prepared figures) and
written by `app.export.bundle_files`, the same code as the dashboard's "Report bundle" button;
this module only parses arguments, reads files safely, picks figures and writes the bundle into
a folder. Bad arguments and bad files give one "attnscope <command>: error: ..." line on stderr
and exit status 2 (usage) or 1 (model, file or input problem); never a traceback
(ATTNSCOPE_DEBUG=1 shows it for unexpected errors).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["CliError", "VIEWS", "FORMATS", "DEFAULT_FORMATS", "TEXT_SUFFIXES", "parse_indices", "export_main",
           "inspect_main"]

VIEWS = ("matrix", "model", "tokens", "image", "rollout", "entropy", "consistency", "faithfulness")
"""--views: matrix = one [q, k] map per selected layer (fused, or per --heads head); model = the
layers x heads grid; tokens = the query row as bars; image = patch maps over the image; rollout =
attention rollout (matrix for text, overlay for images); entropy = head entropy + pattern labels;
consistency = layer consistency + head distance (+ cross-input spread with --inputs);
faithfulness = deletion curves and per-position importances of the occlusion check."""
FORMATS = ("png", "svg", "pdf", "html", "csv", "npz", "json")
DEFAULT_FORMATS = ("png", "csv", "npz", "json")
TEXT_SUFFIXES = (".txt", ".md")
FAITHFULNESS = ("auto", "always", "never")


class CliError(Exception):
    """A user error: printed as one line, exit status `code` (2 = usage, 1 = input/model/file)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------------------------- arguments


class _Parser(argparse.ArgumentParser):
    """argparse that raises CliError (one line, status 2) instead of printing usage and exiting."""

    def error(self, message: str):  # type: ignore[override]
        raise CliError(f"{message} (see `attnscope {self.prog.split()[-1]} --help`)", code=2)


def parse_indices(spec: str | None, *, what: str = "layers") -> list[int] | None:
    """"0,3-5" -> [0, 3, 4, 5] (sorted, unique); None or "all" -> None. CliError on bad syntax."""
    if spec is None or spec.strip().lower() in ("", "all"):
        return None
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part.lstrip("-"):
                lo, hi = (int(x) for x in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                out.update(range(lo, hi + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise CliError(f"--{what} {spec!r}: use indices and ranges like 0,3-5", code=2) from None
    if min(out) < 0:
        raise CliError(f"--{what} {spec!r}: indices start at 0", code=2)
    return sorted(out)


def _choices(spec: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [s.strip().lower() for s in spec.split(",") if s.strip()]
    bad = [s for s in items if s not in allowed]
    if bad or not items:
        raise CliError(f"--{what}: unknown {', '.join(map(repr, bad)) or 'empty list'}; choose from "
                       f"{','.join(allowed)}", code=2)
    return list(dict.fromkeys(items))


def _common_args(p: argparse.ArgumentParser, *, many: bool) -> None:
    p.add_argument("--model", required=True, help="built-in demo name, Hugging Face id or local folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="the input text")
    src.add_argument("--text-file", metavar="FILE", help="a UTF-8 (or BOM-marked UTF-16/32) text file")
    src.add_argument("--image", metavar="FILE", help="an image file (PNG, JPEG, WebP, BMP, GIF)")
    if many:
        src.add_argument("--inputs", metavar="DIR",
                         help="a folder of .txt/.md files (text models) or images (image models)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow a model's own Python code to run (only for code you have read)")
    p.add_argument("--faithfulness", choices=FAITHFULNESS, default="auto",
                   help="occlusion check: auto = inputs up to 128 positions (default), always, never")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _export_parser() -> _Parser:
    p = _Parser(prog="attnscope export", description="Write figures, report.json and attention.npz "
                "for one or many inputs, headless (the dashboard's report bundle, as a folder).")
    _common_args(p, many=True)
    p.add_argument("--layers", help="layer indices, e.g. 0,3-5 (default: all)")
    p.add_argument("--heads", help="head indices, e.g. 0,2 (default: heads fused)")
    p.add_argument("--views", default=",".join(VIEWS), help=f"comma list of {','.join(VIEWS)} (default: all that apply)")
    p.add_argument("--formats", default=",".join(DEFAULT_FORMATS),
                   help=f"comma list of {','.join(FORMATS)} (default: {','.join(DEFAULT_FORMATS)})")
    p.add_argument("--fusion", choices=("mean", "max"), default="mean", help="how heads are fused (default mean)")
    p.add_argument("--scale", choices=("linear", "log"), default="linear", help="colour scale")
    p.add_argument("--hide-special", action="store_true", help="hide special tokens (CLS, SEP, ...) in the maps")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created; must be empty unless --force)")
    p.add_argument("--force", action="store_true", help="write into a non-empty output folder, replacing files")
    return p


def _inspect_parser() -> _Parser:
    p = _Parser(prog="attnscope inspect", description="Print a compact terminal summary of a model's "
                "attention on one input: entropy, pattern labels, sinks, mask checks, faithfulness.")
    _common_args(p, many=False)
    return p


# ---------------------------------------------------------------------------------------- running


def _guard(command: str, fn: Callable[[list[str]], int], argv: Sequence[str] | None) -> int:
    """Run `fn(argv)`; every user error -> one stderr line and a non-zero status, never a traceback."""
    argv = list(sys.argv[2:] if argv is None else argv)
    seen: set[str] = set()

    def one_line(message, category, *_args, **_kw) -> None:  # library warnings: one line each, once
        text = f"{category.__name__}: {str(message).splitlines()[0] if str(message) else ''}"
        if text not in seen:
            seen.add(text)
            print(f"attnscope {command}: note: {text}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line
            return int(fn(argv) or 0)
    except CliError as exc:
        _err(command, str(exc))
        return exc.code
    except KeyboardInterrupt:
        _err(command, "interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - a CLI must not end in a traceback
        if isinstance(exc, _user_errors()):
            _err(command, str(exc).replace("trust_remote_code=True", "--trust-remote-code"))  # the CLI's spelling
            return 1
        if os.environ.get("ATTNSCOPE_DEBUG"):
            raise
        _err(command, f"unexpected {type(exc).__name__}: {exc} (set ATTNSCOPE_DEBUG=1 for the traceback)")
        return 1


def _user_errors() -> tuple[type, ...]:
    """The project's "user can fix this" exceptions, from the modules imported so far (an error can
    only come from those; a usage error never pays for importing torch)."""
    names = {"app.inputs": ("InputError",), "app.pipeline": ("PipelineError",),
             "hooks.loading": ("LoadError",), "hooks._types": ("CaptureError",)}
    return tuple(getattr(sys.modules[m], n) for m, ns in names.items() if m in sys.modules for n in ns)


def _err(command: str, message: str) -> None:
    print(f"attnscope {command}: error: {' '.join(str(message).split())}", file=sys.stderr)


def _quiet_libraries() -> None:
    """No weight-loading progress bars or info logs from transformers: our own progress only."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass


class _Progress:
    """A plain-text progress bar on stderr: redrawn in place on a terminal, one line per step else."""

    def __init__(self, total: int, *, quiet: bool, width: int = 24):
        self.total, self.quiet, self.width, self.done = max(total, 1), quiet, width, 0
        self.tty = sys.stderr.isatty()
        self.start = time.monotonic()

    def step(self, label: str) -> None:
        self.done += 1
        self.show(label)

    def show(self, label: str) -> None:
        if self.quiet:
            return
        fill = round(self.width * self.done / self.total)
        line = (f"[{'#' * fill}{'.' * (self.width - fill)}] {self.done}/{self.total} "
                f"{time.monotonic() - self.start:5.1f}s {label}")
        if self.tty:
            print(f"\r\x1b[2K{line}", end="" if self.done < self.total else "\n", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ inputs


@dataclass
class _Input:
    name: str
    text: str | None = None
    image: Any = None  # app.inputs.DecodedImage
    notes: list[str] = field(default_factory=list)


def _read_file(path: Path, limit: int, what: str) -> bytes:
    """Bytes of a regular file of at most `limit` bytes (checked before reading)."""
    try:
        if not path.exists():
            raise CliError(f"{what} {str(path)!r} does not exist")
        if not path.is_file():
            raise CliError(f"{what} {str(path)!r} is not a file")
        size = path.stat().st_size
        if size > limit:
            raise CliError(f"{what} {str(path)!r} is {size / 2**20:.1f} MiB, over the {limit / 2**20:.0f} MiB limit")
        return path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None


def _text_input(path: Path) -> _Input:
    from app import inputs as safe_inputs

    decoded = safe_inputs.decode_text(_read_file(path, safe_inputs.MAX_TEXT_BYTES, "text file"), filename=path.name)
    return _Input(path.name, text=decoded.text, notes=[f"{path.name}: {n}" for n in decoded.warnings])


def _image_input(path: Path) -> _Input:
    from app import inputs as safe_inputs

    decoded = safe_inputs.decode_image(_read_file(path, safe_inputs.MAX_IMAGE_BYTES, "image"), filename=path.name)
    return _Input(path.name, image=decoded, notes=[f"{path.name}: {n}" for n in decoded.warnings])


def _image_suffixes() -> tuple[str, ...]:
    """File name endings of the formats `app.inputs.decode_image` accepts (.png, .jpg, .jpeg, ...)."""
    from app.inputs import IMAGE_FORMATS

    return tuple(e for f in IMAGE_FORMATS for e in ((".jpg", ".jpeg") if f == "JPEG" else ("." + f.lower(),)))


def _folder_inputs(folder: Path, kind: str, progress: _Progress) -> list[_Input]:
    """Files of `folder` (not recursive, hidden files skipped) that suit the model, sorted by name."""
    if not folder.is_dir():
        raise CliError(f"--inputs {str(folder)!r} is not a folder")
    suffixes = TEXT_SUFFIXES if kind == "text" else _image_suffixes()
    try:
        entries = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError as exc:
        raise CliError(f"cannot list --inputs {str(folder)!r}: {exc.strerror or exc}") from None
    files = [p for p in entries if p.suffix.lower() in suffixes]
    skipped = [p.name for p in entries if p not in files]
    if not files:
        raise CliError(f"--inputs {str(folder)!r} holds no {kind} files ({', '.join(suffixes)}) for this "
                       f"{kind} model" + (f"; found {', '.join(skipped[:5])}" if skipped else ""))
    if skipped:
        progress.note(f"skipping {len(skipped)} file(s) that are not {kind} inputs: {', '.join(skipped[:5])}"
                      + (" ..." if len(skipped) > 5 else ""))
    return [(_text_input if kind == "text" else _image_input)(p) for p in files]


def _read_inputs(args) -> list[_Input] | None:
    """--text / --text-file / --image, read and decoded before the (slow) model load; None for --inputs."""
    if getattr(args, "inputs", None):
        return None
    if args.image is not None:
        return [_image_input(Path(args.image))]
    if args.text_file is not None:
        return [_text_input(Path(args.text_file))]
    if not args.text.strip():
        raise CliError("--text is empty: give some text")
    return [_Input("text", text=args.text)]


def _inputs_for(args, items: list[_Input] | None, kind: str, progress: _Progress) -> list[_Input]:
    """The inputs checked against the model's kind ("text" or "image"); --inputs DIR is listed here."""
    if items is None:
        return _folder_inputs(Path(args.inputs), kind, progress)
    if kind == "text" and items[0].image is not None:
        raise CliError("this is a text model: give --text or --text-file, not --image")
    if kind == "image" and items[0].text is not None:
        raise CliError("this is an image model: give --image (or --inputs with images), not text")
    return items


# ------------------------------------------------------------------------------------- pipeline


def _load(args, progress: _Progress):
    from app import pipeline

    _quiet_libraries()
    progress.note(f"loading {args.model} ...")
    return pipeline.load_bundle(args.model, trust_remote_code=args.trust_remote_code)


def _capture(bundle, items: list[_Input], mode: str, progress: _Progress,
             on_first: Callable[[Any], None] | None = None) -> list:
    """Capture (and, per `mode`, run the faithfulness check on) every input -> [pipeline.Run];
    `on_first(run)` is called after the first capture (to check the selection early)."""
    from app import pipeline

    runs = []
    for item in items:
        run = pipeline.capture_input(bundle, text=item.text, image=item.image, name=item.name)
        run.warnings[:0] = item.notes
        if not runs and on_first is not None:
            on_first(run)
        if mode == "always" or mode == "auto" and run.n_positions <= pipeline.AUTO_FAITHFULNESS_POSITIONS:
            summary = pipeline.faithfulness_summary(run)
            if not summary.ok:
                run.warnings.append(summary.verdict)
        runs.append(run)
        progress.step(item.name)
    return runs


def _select(spec: list[int] | None, available: Sequence[int], what: str) -> list[int]:
    """Positions in `available` (module indices) of the requested indices; CliError if one is missing."""
    if spec is None:
        return list(range(len(available)))
    missing = [i for i in spec if i not in available]
    if missing:
        have = f"{min(available)}-{max(available)}" if available else "none"
        raise CliError(f"--{what} {','.join(map(str, missing))}: out of range (this model has {what} {have})", code=2)
    return [list(available).index(i) for i in spec]


def _image_figures(run, sec, views: list[str], layers: list[int], heads: list[int] | None, fusion: str) -> dict:
    """Patch maps over the image: attention / cross-attention per selected layer (and head) for the
    "image" view; rollout, gradient rollout, relevance once each for the "rollout" view. The query is
    the first one the dashboard offers (CLS, or the first generated word)."""
    from app import pipeline

    out: dict[str, Any] = {}
    for source in pipeline.image_sources(run, sec):
        per_layer = source in ("attention", "cross-attention")
        if ("image" if per_layer else "rollout") not in views:
            continue
        query = pipeline.image_queries(run, sec, source)[0]
        name = "image-" + source.split(" (")[0].replace(" ", "_")
        cells = [(li, h) for li in layers for h in (heads or [None])] if per_layer else [(0, None)]
        for li, h in cells:
            tag = (f"-L{sec.layers[li]}" + (f"-H{h}" if h is not None else "")) if per_layer else ""
            try:
                out[name + tag] = pipeline.image_view(run, sec, source=source, query=query, layer=li, head=h,
                                                      fusion=fusion)
            except pipeline.PipelineError as exc:  # e.g. gradient rollout on a model without a head
                run.warnings.append(f"{source} map skipped: {exc}")
                break
    return out


def _section_figures(run, sec, views: list[str], layers: list[int], heads: list[int] | None, args) -> dict:
    """{name: prepared figure} for one section of one run (names without the input prefix)."""
    from app import figures, pipeline

    out: dict[str, Any] = {}
    query = len(sec.query_labels) - 1 if sec.causal else 0  # as the dashboard's token view
    for li in layers:
        lname = f"L{sec.layers[li]}"
        for h in heads if heads is not None else [None]:
            tag = lname + (f"-H{h}" if h is not None else "")
            if "matrix" in views:
                out[f"matrix-{tag}"] = pipeline.matrix_view(
                    sec, layer=li, head=h, fusion=args.fusion, hide_special=args.hide_special, scale=args.scale)
            if "tokens" in views:
                out[f"tokens-{tag}"] = pipeline.token_view(
                    sec, layer=li, query=query, head=h, fusion=args.fusion, hide_special=args.hide_special)
    if "model" in views:
        out["model"] = pipeline.model_view(sec, hide_special=args.hide_special, scale=args.scale)
    if run.image is not None and sec.key_grid is not None:
        out.update(_image_figures(run, sec, views, layers, heads, args.fusion))
    elif "rollout" in views and sec.kind == "self":
        r = sec.rollout()  # [q, k]
        out["rollout"] = figures.prepare_matrix(
            r, sec.key_labels, hide=sec.key_special if args.hide_special else None, scale=args.scale,
            title=f"Attention rollout (Abnar & Zuidema 2020), {sec.title}, all {len(sec.layers)} layers")
    if {"entropy", "consistency"} & set(views):
        ana = pipeline.analysis_views(sec)
        keys = (["entropy", "patterns"] if "entropy" in views else []) + (
            ["layer_consistency", "head_distance"] if "consistency" in views else [])
        out.update({k: ana[k] for k in keys})
    return out


def _cross_input_stats(runs) -> dict:
    """Across inputs, per section title: {statistic: {"mean": [L][H], "spread": [L][H]}} for head
    entropy (nats) and every pattern score (`analysis.cross_input_consistency`: mean and standard
    deviation over inputs), plus "label_changes" / "label_agreement" [L][H] (dominant pattern)."""
    import analysis

    stats = {}
    for sec0 in runs[0].sections:
        cons = analysis.cross_input_consistency([r.section(sec0.stack, sec0.kind).patterns() for r in runs])
        entry = {name: {"mean": cons.mean[name][:, 0], "spread": cons.std[name][:, 0]}  # [L, 1, H] -> [L, H]
                 for name in cons.mean}
        entry["label_changes"] = cons.label_changes[:, 0]
        entry["label_agreement"] = cons.label_agreement[:, 0]
        stats[sec0.title] = entry
    return stats


def _cross_input_figures(runs) -> dict[str, Any]:
    """Per section, the dashboard's cross-input figure: head entropy mean ± spread over the inputs."""
    from app import pipeline

    figs: dict[str, Any] = {}
    for sec0 in runs[0].sections:
        secs = [r.section(sec0.stack, sec0.kind) for r in runs]
        prefix = _section_prefix(sec0, runs[0].sections)
        figs.update({f"{prefix}{name}": p for name, p in pipeline.cross_input_view(secs).items()})
    return figs


def _section_prefix(sec, sections: list) -> str:
    if len(sections) == 1:
        return ""
    return f"{sec.stack or 'main'}-{sec.kind}-"


def _input_prefixes(runs) -> list[str]:
    """Distinct, file-safe prefixes per input ("" for a single input)."""
    from app.export import safe_filename

    if len(runs) == 1:
        return [""]
    out, used = [], set()
    for i, r in enumerate(runs):
        base = safe_filename(Path(r.name).stem, default=f"input{i + 1}")
        stem, n = base, 1
        while stem in used:
            n += 1
            stem = f"{base}-{n}"
        used.add(stem)
        out.append(stem + "-")
    return out


# ------------------------------------------------------------------------------------------ export


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {str(out)!r} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise CliError(f"--out {str(out)!r} is not empty: choose an empty or new folder, or add --force "
                       "to write into it (files of the same name are replaced)")


def _write_files(files: dict[str, bytes], out: Path, formats: list[str]) -> list[Path]:
    """Write `export.bundle_files(...)` into `out`; paths are checked again (no traversal)."""
    written = []
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        parts = name.split("/")
        if name == "report.json" and "json" not in formats:
            continue
        ok = name in ("report.json", "attention.npz") or (
            len(parts) == 2 and parts[0] == "figures" and parts[1] and not parts[1].startswith("."))
        if not ok:  # bundle_files only makes safe names; refuse anything else outright
            raise CliError(f"internal: refusing to write unexpected file name {name!r}")
        target = out.joinpath(*parts)
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(data)
        written.append(target)
    return written


def _figures(runs, views: list[str], layer_spec, heads, args) -> dict[str, Any]:
    """Every prepared figure of every input and section, named "<input>-<section>-<view>-L<l>[-H<h>]"
    (the input and section parts only when there are several)."""
    from app import pipeline

    prepared: dict[str, Any] = {}
    for prefix, run in zip(_input_prefixes(runs), runs):
        for sec in run.sections:
            figs = _section_figures(run, sec, views, _select(layer_spec, sec.layers, "layers"), heads, args)
            if "faithfulness" in views and sec is run.sections[0]:
                figs.update(pipeline.faithfulness_views(run))
            sp = _section_prefix(sec, run.sections)
            prepared.update({f"{prefix}{sp}{name}": p for name, p in figs.items()})
    return prepared


def _report(runs, settings: dict, layers: list[int], heads: list[int]) -> dict:
    """report.json through `pipeline.build_report`; with several inputs the statistics become
    {"per_input": {name: run_statistics}, "cross_input": ...} and every input's warnings are listed."""
    from app import pipeline

    report = pipeline.build_report(runs[0], settings=settings, runs=runs)
    report["selection"] = {"layers": layers, "heads": heads}
    predictions = {r.name: r.prediction for r in runs if r.prediction}
    if predictions:
        report["settings"]["predictions"] = predictions
    if len(runs) > 1:
        per_input = {r.name: pipeline.run_statistics(r) for r in runs}
        report["statistics"] = {"per_input": per_input, "cross_input": _cross_input_stats(runs)}
        for r in runs[1:]:  # build_report lists the first input's warnings and verdict
            verdict = per_input[r.name].get("faithfulness", {}).get("verdict")
            notes = list(r.warnings) + ([verdict] if verdict else [])
            report["warnings"] += [{"code": "input", "message": f"{r.name}: {w}"} for w in notes]
    return report


def _maps(runs) -> dict:
    """attention.npz content: module name -> [1, heads, q, k]; "<input>/<module>" with several inputs."""
    from app import pipeline

    prefixes = [p.rstrip("-") + "/" if p else "" for p in _input_prefixes(runs)]
    return {f"{prefix}{name}": w for prefix, r in zip(prefixes, runs) for name, w in pipeline.export_maps(r).items()}


def _export(argv: list[str]) -> int:
    args = _export_parser().parse_args(argv)
    views = _choices(args.views, VIEWS, "views")
    formats = _choices(args.formats, FORMATS, "formats")
    layer_spec = parse_indices(args.layers, what="layers")
    head_spec = parse_indices(args.heads, what="heads")
    out = Path(args.out)
    _check_out(out, args.force)
    items = _read_inputs(args)

    from app import export, pipeline  # torch & co.: only once the arguments are known to be good

    fig_formats = [f for f in formats if f in export.FIGURE_FORMATS]

    notes = _Progress(0, quiet=args.quiet)
    bundle = _load(args, notes)
    items = _inputs_for(args, items, pipeline.input_kind(bundle), notes)
    selection: dict[str, list[int]] = {}

    def check_selection(run) -> None:  # after the first capture: fail before capturing the rest
        main = run.sections[0]
        if head_spec is not None and max(head_spec) >= main.n_heads:
            raise CliError(f"--heads {args.heads}: out of range (this model has heads 0-{main.n_heads - 1})",
                           code=2)
        selection["layers"] = [main.layers[i] for i in _select(layer_spec, main.layers, "layers")]
        selection["heads"] = head_spec if head_spec is not None else list(range(main.n_heads))

    progress = _Progress(len(items), quiet=args.quiet)
    progress.show(f"capturing {len(items)} input(s)")
    runs = _capture(bundle, items, args.faithfulness, progress, on_first=check_selection)

    prepared = _figures(runs, views, layer_spec, head_spec, args) if fig_formats else {}
    if len(runs) > 1 and fig_formats and "consistency" in views:
        prepared.update(_cross_input_figures(runs))
    settings = {"views": views, "formats": formats, "fusion": args.fusion, "heads_fused": head_spec is None,
                "scale": args.scale, "hide_special": args.hide_special, "faithfulness": args.faithfulness,
                "command": "attnscope export"}
    report = _report(runs, settings, selection["layers"], selection["heads"])
    if prepared:
        notes.note(f"rendering {len(prepared)} figure(s) x {len(fig_formats)} format(s) ...")
    files = export.bundle_files(prepared, report, formats=fig_formats, maps=_maps(runs) if "npz" in formats else None)
    written = _write_files(files, out, formats)
    notes.note(f"wrote {len(written)} file(s) to {out}")
    return 0


# ----------------------------------------------------------------------------------------- inspect


_TABLE_HEADS = 8
"""Heads per block of the inspect table (8 columns of "0.83 delimiter*" fit 132 characters)."""


def _fmt_row(values: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()


def _section_lines(sec) -> list[str]:
    """Entropy / pattern label / sink per head, sinks list, mask check of one section."""
    ent = sec.entropy()  # [L, H], 0 one-hot .. 1 uniform
    pat = sec.patterns()
    labels = [row[0] for row in pat.labels]  # [L][H]
    sink = pat.sink[:, 0]  # [L, H] bool
    mass = pat.sink_mass[:, 0]  # [L, H]
    n_heads = sec.n_heads
    cells = [[f"{float(ent[li, h]):.2f} {labels[li][h]}{'*' if bool(sink[li, h]) else ''}"
              for h in range(n_heads)] for li in range(len(sec.layers))]
    causal = ", causal" if sec.causal else ""
    lines = [f"{sec.title} ({len(sec.layers)} layers x {n_heads} heads, {len(sec.query_labels)}x"
             f"{len(sec.key_labels)} positions{causal})",
             "  normalised entropy (0 = one key, 1 = uniform) and dominant pattern; * = attention sink"]
    for first in range(0, n_heads, _TABLE_HEADS):  # wide models: blocks of heads, terminal-width rows
        cols = range(first, min(first + _TABLE_HEADS, n_heads))
        widths = [6] + [max(len(f"h{h}"), *(len(row[h]) for row in cells)) for h in cols]
        lines.append("  " + _fmt_row(["layer"] + [f"h{h}" for h in cols], widths))
        lines += ["  " + _fmt_row([f"L{sec.layers[li]}"] + [row[h] for h in cols], widths)
                  for li, row in enumerate(cells)]
    sinks = [(li, h) for li in range(len(sec.layers)) for h in range(n_heads) if bool(sink[li, h])]
    if sinks:
        shown = ", ".join(f"L{sec.layers[li]}h{h} ({float(mass[li, h]):.2f})" for li, h in sinks[:12])
        more = f", +{len(sinks) - 12} more" if len(sinks) > 12 else ""
        lines.append(f"  sinks: {len(sinks)} head(s) park most weight on the first token "
                     f"{sec.key_labels[0]!r}: {shown}{more}")
    else:
        lines.append("  sinks: none")
    if sec.causal:
        lines.append(f"  mask check: {sec.mask_check().message}")
    return lines


def _inspect(argv: list[str]) -> int:
    args = _inspect_parser().parse_args(argv)
    items = _read_inputs(args)

    from app import pipeline

    progress = _Progress(1, quiet=args.quiet)
    bundle = _load(args, progress)
    items = _inputs_for(args, items, pipeline.input_kind(bundle), progress)
    info = pipeline.model_info(bundle)
    run = pipeline.capture_input(bundle, text=items[0].text, image=items[0].image, name=items[0].name)
    run.warnings[:0] = items[0].notes
    lines = [
        f"model: {info.model_id} ({info.class_name}, {info.modality}, {info.layers} layers x {info.heads} heads, "
        f"{info.parameters:,} parameters, {info.dtype} on {info.device}, attention: {info.attn_implementation})",
    ]
    if run.text is not None:
        shown = run.text if len(run.text) <= 70 else run.text[:67] + "..."
        lines.append(f"input: {shown!r} ({run.n_positions} tokens)")
    else:
        h, w = run.image.shape[:2]
        lines.append(f"input: image {run.name} ({w}x{h} px shown, {run.n_positions} positions)")
    if run.prediction:
        lines.append(f"output: {run.prediction}")
    for sec in run.sections:
        lines += [""] + _section_lines(sec)
    lines.append("")
    run_check = args.faithfulness == "always" or (
        args.faithfulness == "auto" and run.n_positions <= pipeline.AUTO_FAITHFULNESS_POSITIONS)
    if run_check:
        summary = pipeline.faithfulness_summary(run)
        lines.append(f"faithfulness: {summary.verdict}")
        if summary.numbers:
            lines.append(f"  {summary.numbers}")
    else:
        why = "--faithfulness never" if args.faithfulness == "never" else (
            f"{run.n_positions} positions > {pipeline.AUTO_FAITHFULNESS_POSITIONS}; add --faithfulness always")
        lines.append(f"faithfulness: not run ({why})")
    lines.append("warnings:")
    lines += [f"  - {w}" for w in list(run.warnings) + list(pipeline.GENERAL_CAVEATS)]
    print("\n".join(lines))
    return 0


def export_main(argv: Sequence[str] | None = None) -> int:
    """`attnscope export ...` -> exit status (0 ok, 1 input/model/file problem, 2 bad arguments)."""
    return _guard("export", _export, argv)


def inspect_main(argv: Sequence[str] | None = None) -> int:
    """`attnscope inspect ...` -> exit status; the summary goes to stdout, errors to stderr."""
    return _guard("inspect", _inspect, argv)
