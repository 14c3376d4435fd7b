"""Export, shared by the app and the CLI: figure files, raw numbers, report.json and the ZIP bundle.

API
---
`render_static(prepared, fmt="png"|"svg"|"pdf", scale=2) -> bytes`
    matplotlib (Agg, no browser), caption line included; PNG at dpi = 100 * scale (>= 200 by default).
`render_html(prepared) -> bytes`
    standalone interactive page, plotly.js embedded (works offline, ~5 MB).
`figure_file(prepared, fmt, scale=2) -> bytes`  any one of the above by format name;
    `figure_formats(prepared)` lists the formats a view offers (csv only for matrix views).
`matrix_csv(matrix [rows, cols], row_labels, col_labels) -> bytes`
    UTF-8 CSV: header "query \\ key", col labels...; one row per query; NaN -> empty cell.
`maps_npz({name: array [batch, heads, q, k]}) -> bytes`
    compressed NPZ keyed by module name; dtypes kept (float16 stays float16).
`input_record(*, text=None, image=None, image_sha256=None, name=None, num_tokens=None) -> dict`
`build_report(*, model_id, attn_implementation, dtype, num_layers, num_heads, inputs, ...) -> dict`
    report.json content; schema `REPORT_SCHEMA`, documented in docs/report-schema.md.
`validate_report(report) -> list[str]`  problems found (empty list = valid).
`bundle_files(figures {name: prepared}, report, formats=..., maps=None, scale=2) -> {path: bytes}`
    report.json, figures/<name>.<fmt>, attention.npz (when `maps` is given); for a folder.
`report_bundle(...same...) -> bytes`  the same files as one ZIP.
`safe_filename(name, default="figure") -> str`  no path separators, no traversal, [A-Za-z0-9._-] only.
"""
from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import math
import re
import unicodedata
import zipfile
from collections.abc import Mapping, Sequence
from importlib import metadata

import numpy as np

from app.figures import MatrixData, to_matplotlib, to_plotly

__all__ = [
    "FIGURE_FORMATS",
    "REPORT_SCHEMA",
    "SCHEMA_VERSION",
    "STATIC_FORMATS",
    "build_report",
    "bundle_files",
    "figure_file",
    "figure_formats",
    "input_record",
    "maps_npz",
    "matrix_csv",
    "render_html",
    "render_static",
    "report_bundle",
    "safe_filename",
    "validate_report",
]

STATIC_FORMATS = ("png", "svg", "pdf")
FIGURE_FORMATS = (*STATIC_FORMATS, "html", "csv")
SCHEMA_VERSION = "1.0"


# ---------------------------------------------------------------------------------------------
# figures


def render_static(prepared, fmt: str = "png", scale: float = 2) -> bytes:
    """PNG / SVG / PDF bytes of a prepared view, drawn by matplotlib with its caveat caption.

    PNG resolution: dpi = 100 * scale, so the default scale 2 gives twice the nominal pixel size.
    """
    fmt = fmt.lower()
    if fmt not in STATIC_FORMATS:
        raise ValueError(f"static format must be one of {', '.join(STATIC_FORMATS)}, got {fmt!r}")
    if not 1 <= scale <= 8:
        raise ValueError(f"scale must be between 1 and 8, got {scale}")
    fig = to_matplotlib(prepared)
    buf = io.BytesIO()
    meta = {"Creator": "attnscope"} if fmt in ("svg", "pdf") else {"Software": "attnscope"}
    fig.savefig(buf, format=fmt, dpi=100 * scale, metadata=meta)
    return buf.getvalue()


def render_html(prepared) -> bytes:
    """Standalone interactive HTML (plotly.js embedded, no network needed) of a prepared view."""
    fig = to_plotly(prepared)
    page = fig.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False})
    return page.encode("utf-8")


def _csv_label(label) -> str:
    """A token label safe to open in a spreadsheet: no cell starts as a formula."""
    text = str(label)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def matrix_csv(matrix, row_labels: Sequence[str], col_labels: Sequence[str]) -> bytes:
    """CSV of one matrix [rows, cols]: first row "query \\ key" + column labels, then label + values.

    Values use up to 8 significant digits; NaN (an empty cell) is written as an empty field.
    Labels starting with = + - @ (formula triggers in spreadsheets) get a leading apostrophe.
    """
    values = np.asarray(matrix, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"CSV export needs a 2-D matrix [rows, cols], got shape {values.shape}")
    if len(row_labels) != values.shape[0] or len(col_labels) != values.shape[1]:
        raise ValueError(
            f"{len(row_labels)} row / {len(col_labels)} column labels for a "
            f"{values.shape[0]}x{values.shape[1]} matrix"
        )
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["query \\ key", *map(_csv_label, col_labels)])
    for label, row in zip(row_labels, values):
        writer.writerow([_csv_label(label), *("" if math.isnan(v) else f"{v:.8g}" for v in row)])
    return buf.getvalue().encode("utf-8")


def _to_numpy(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a tensor; converted without importing torch here
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            x = x.float()
        x = x.numpy()
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"map {name!r} must hold floating-point weights, got dtype {arr.dtype}")
    return arr


def maps_npz(maps: Mapping[str, object]) -> bytes:
    """Compressed NPZ of attention maps {module name: [batch, heads, q, k]}; dtypes kept."""
    if not maps:
        raise ValueError("no attention maps to export")
    arrays = {}
    for name, value in maps.items():
        arr = _to_numpy(value, name)
        if arr.ndim != 4:
            raise ValueError(f"map {name!r} must be [batch, heads, q, k], got shape {arr.shape}")
        arrays[str(name)] = arr
    buf = io.BytesIO()
    # the layout np.savez_compressed writes (name.npy entries, deflated), without its keyword
    # arguments, so any module name works as a key (even "file")
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, arr, allow_pickle=False)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# names

_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def safe_filename(name: str, default: str = "figure", max_len: int = 100) -> str:
    """A file name safe on every OS: ASCII letters, digits, '.', '_', '-' only.

    Path separators and other characters become '_', leading dots are dropped (no "..", no
    hidden files), Windows device names get a '_' prefix, length is capped at `max_len`;
    an empty result falls back to `default`.
    """
    text = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text)
    text = re.sub(r"_{2,}", "_", re.sub(r"\.{2,}", ".", text)).strip("._-")
    text = text[:max_len].rstrip("._-")
    if not text:
        return default
    if text.split(".")[0].upper() in _WINDOWS_RESERVED:
        text = "_" + text
    return text


# ---------------------------------------------------------------------------------------------
# report.json

_ISO_UTC = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
_NULLABLE_STR = {"type": ["string", "null"]}
_NULLABLE_COUNT = {"type": ["integer", "null"], "minimum": 0}
_INDEX_LIST = {"type": "array", "items": {"type": "integer", "minimum": 0}, "uniqueItems": True}

REPORT_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://attnscope.local/report.schema.json",
    "title": "attnscope report.json",
    "type": "object",
    "additionalProperties": False,
    "required": [
        "schema_version", "attnscope_version", "created", "model", "inputs",
        "selection", "settings", "statistics", "warnings", "figures",
    ],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "attnscope_version": {"type": "string", "minLength": 1},
        "created": {"type": "string", "pattern": _ISO_UTC},
        "model": {
            "type": "object",
            "additionalProperties": False,
            "required": ["id", "revision", "class", "attn_implementation", "dtype", "num_layers", "num_heads"],
            "properties": {
                "id": {"type": "string", "minLength": 1},
                "revision": _NULLABLE_STR,
                "class": _NULLABLE_STR,
                "attn_implementation": {"type": "string", "minLength": 1},
                "dtype": {"type": "string", "minLength": 1},
                "num_layers": {"type": "integer", "minimum": 0},
                "num_heads": {"type": "integer", "minimum": 0},
            },
        },
        "inputs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["kind", "name", "text", "image_sha256", "image_hashed", "num_tokens"],
                "properties": {
                    "kind": {"enum": ["text", "image", "image+text"]},
                    "name": _NULLABLE_STR,
                    "text": _NULLABLE_STR,
                    "image_sha256": {"oneOf": [{"type": "string", "pattern": "^[0-9a-f]{64}$"}, {"type": "null"}]},
                    "image_hashed": {"enum": ["file", "pixels", None]},
                    "num_tokens": _NULLABLE_COUNT,
                },
                "allOf": [
                    {
                        "if": {"properties": {"kind": {"enum": ["text", "image+text"]}}},
                        "then": {"properties": {"text": {"type": "string"}}},
                    },
                    {
                        "if": {"properties": {"kind": {"enum": ["image", "image+text"]}}},
                        "then": {"properties": {"image_sha256": {"type": "string"}}},
                    },
                ],
            },
        },
        "selection": {
            "type": "object",
            "additionalProperties": False,
            "required": ["layers", "heads"],
            "properties": {"layers": _INDEX_LIST, "heads": _INDEX_LIST},
        },
        "settings": {"type": "object"},
        "statistics": {"type": "object"},
        "warnings": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "pattern": "^[a-z0-9_.-]+$"},
                    "message": {"type": "string", "minLength": 1},
                    "details": {"type": "object"},
                },
            },
        },
        "figures": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "title", "caption", "note", "files"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "title": {"type": "string"},
                    "caption": {"type": "string"},
                    "note": {"type": "string"},
                    "files": {"type": "array", "items": {"type": "string", "pattern": "^figures/[A-Za-z0-9._-]+$"}},
                },
            },
        },
    },
}
"""JSON Schema (draft 2020-12) of report.json; docs/report.schema.json is a copy (a test keeps them equal)."""


def _jsonable(value, path: str = "report"):
    """Plain JSON types from numpy arrays/scalars, tuples and mappings; NaN/inf -> None."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{path}.{k}") for k, v in value.items()}
    if hasattr(value, "detach"):
        value = value.detach().cpu().float().numpy()
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist(), path)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, bool, int)):
        return value
    raise TypeError(f"{path}: {type(value).__name__} cannot be written to report.json")


def input_record(
    *,
    text: str | None = None,
    image=None,
    image_sha256: str | None = None,
    name: str | None = None,
    num_tokens: int | None = None,
) -> dict:
    """One entry of report["inputs"]: the text itself and/or the image's SHA-256.

    `image` is the uploaded file's bytes (hashed as a file) or an RGB array [H, W, 3] uint8
    (hashed over its C-order pixel buffer); or pass `image_sha256`, the hex digest of the file
    bytes computed elsewhere. Images themselves are never stored.
    """
    if image is not None and image_sha256 is not None:
        raise ValueError("pass the image or its image_sha256, not both")
    digest = hashed = None
    if image_sha256 is not None:
        digest, hashed = str(image_sha256).lower(), "file"
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError(f"image_sha256 must be 64 hex digits, got {image_sha256!r}")
    elif image is not None:
        if isinstance(image, (bytes, bytearray, memoryview)):
            digest, hashed = hashlib.sha256(bytes(image)).hexdigest(), "file"
        else:
            pixels = np.ascontiguousarray(np.asarray(image))
            digest, hashed = hashlib.sha256(pixels.tobytes()).hexdigest(), "pixels"
    if text is None and digest is None:
        raise ValueError("an input record needs a text, an image or both")
    kind = "image+text" if text is not None and digest is not None else ("text" if text is not None else "image")
    return {
        "kind": kind,
        "name": name,
        "text": text,
        "image_sha256": digest,
        "image_hashed": hashed,
        "num_tokens": None if num_tokens is None else int(num_tokens),
    }


def _warning(w) -> dict:
    if isinstance(w, str):
        return {"code": "warning", "message": w}
    if isinstance(w, Mapping) and "message" in w:
        return {"code": str(w.get("code", "warning")), **{k: v for k, v in w.items() if k != "code"}}
    raise ValueError(f"a warning must be a string or a mapping with a 'message', got {w!r}")


def _version() -> str:
    try:
        return metadata.version("attnscope")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def build_report(
    *,
    model_id: str,
    attn_implementation: str,
    dtype: str,
    num_layers: int,
    num_heads: int,
    inputs: Mapping | Sequence[Mapping],
    revision: str | None = None,
    model_class: str | None = None,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    settings: Mapping | None = None,
    statistics: Mapping | None = None,
    warnings: Sequence[str | Mapping] = (),
) -> dict:
    """Assemble report.json (see docs/report-schema.md); raises ValueError if it does not validate.

    `inputs`: one `input_record(...)` or a list of them. `layers`/`heads` default to all.
    Statistics and settings may hold numpy arrays; they become lists (NaN -> null).
    """
    records = [inputs] if isinstance(inputs, Mapping) else list(inputs)
    report = {
        "schema_version": SCHEMA_VERSION,
        "attnscope_version": _version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "id": str(model_id),
            "revision": revision,
            "class": model_class,
            "attn_implementation": str(attn_implementation),
            "dtype": str(dtype).removeprefix("torch."),
            "num_layers": int(num_layers),
            "num_heads": int(num_heads),
        },
        "inputs": _jsonable(records, "inputs"),
        "selection": {
            "layers": [int(i) for i in (range(num_layers) if layers is None else layers)],
            "heads": [int(i) for i in (range(num_heads) if heads is None else heads)],
        },
        "settings": _jsonable(dict(settings or {}), "settings"),
        "statistics": _jsonable(dict(statistics or {}), "statistics"),
        "warnings": _jsonable([_warning(w) for w in warnings], "warnings"),
        "figures": [],
    }
    problems = validate_report(report)
    if problems:
        raise ValueError("invalid report: " + "; ".join(problems))
    return report


def validate_report(report) -> list[str]:
    """Problems of `report` against `REPORT_SCHEMA`, as "path: message" lines (empty if valid)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(REPORT_SCHEMA)
    out = []
    for err in sorted(validator.iter_errors(report), key=lambda e: list(map(str, e.absolute_path))):
        where = "/".join(map(str, err.absolute_path)) or "(root)"
        out.append(f"{where}: {err.message}")
    return out


# ---------------------------------------------------------------------------------------------
# bundle


def figure_formats(prepared) -> tuple[str, ...]:
    """The file formats a prepared view can be exported to: png, svg, pdf, html (+ csv for matrices)."""
    return FIGURE_FORMATS if isinstance(prepared, MatrixData) else FIGURE_FORMATS[:-1]


def figure_file(prepared, fmt: str, scale: float = 2) -> bytes:
    """One figure file: `render_static` (png/svg/pdf), `render_html` (html) or `matrix_csv` (csv,
    matrix views only; other views raise ValueError)."""
    fmt = fmt.lower()
    if fmt in STATIC_FORMATS:
        return render_static(prepared, fmt, scale)
    if fmt == "html":
        return render_html(prepared)
    if fmt == "csv":
        if not isinstance(prepared, MatrixData):
            raise ValueError(f"CSV export is for matrix views; {type(prepared).__name__} has no single matrix")
        return matrix_csv(prepared.values, prepared.row_labels, prepared.col_labels)
    raise ValueError(f"figure format must be one of {', '.join(FIGURE_FORMATS)}, got {fmt!r}")


def bundle_files(
    figures: Mapping[str, object],
    report: Mapping,
    *,
    formats: Sequence[str] = ("png", "svg", "pdf", "html", "csv"),
    maps: Mapping[str, object] | None = None,
    scale: float = 2,
) -> dict[str, bytes]:
    """The files of an export, {relative path: bytes}: figures/<name>.<fmt> for every prepared
    figure and format (CSV only for matrix views), attention.npz if `maps`, and report.json
    (the given report plus a "figures" list of what was written; validated).

    Figure names pass through `safe_filename`; clashes (ignoring case) get "-2", "-3", ...
    suffixes. The input `report` is not modified. `report_bundle` zips exactly these files; the CLI
    writes them into its output folder.
    """
    formats = [f.lower() for f in formats]
    bad = [f for f in formats if f not in FIGURE_FORMATS]
    if bad:
        raise ValueError(f"unknown figure format(s) {bad}: choose from {', '.join(FIGURE_FORMATS)}")
    out = json.loads(json.dumps(_jsonable(dict(report)), allow_nan=False))  # deep copy
    out["figures"] = []
    files: dict[str, bytes] = {}
    used: set[str] = set()
    for name, prepared in figures.items():
        stem = base = safe_filename(name)
        n = 1
        while stem.lower() in used:  # case-insensitive: the bundle may be unpacked on macOS/Windows
            n += 1
            stem = f"{base}-{n}"
        used.add(stem.lower())
        written = []
        for fmt in formats:
            if fmt in figure_formats(prepared):
                files[f"figures/{stem}.{fmt}"] = figure_file(prepared, fmt, scale)
                written.append(f"figures/{stem}.{fmt}")
        out["figures"].append(
            {"name": str(name), "title": prepared.title, "caption": prepared.caption,
             "note": prepared.note, "files": written}
        )
    if maps:
        files["attention.npz"] = maps_npz(maps)
    problems = validate_report(out)
    if problems:
        raise ValueError("invalid report: " + "; ".join(problems))
    files["report.json"] = json.dumps(out, indent=2, ensure_ascii=False, allow_nan=False).encode("utf-8")
    return files


def report_bundle(
    figures: Mapping[str, object],
    report: Mapping,
    *,
    formats: Sequence[str] = ("png", "svg", "pdf", "html", "csv"),
    maps: Mapping[str, object] | None = None,
    scale: float = 2,
) -> bytes:
    """ZIP bytes of `bundle_files(...)`: report.json, figures/<name>.<fmt>, attention.npz."""
    files = bundle_files(figures, report, formats=formats, maps=maps, scale=scale)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return buf.getvalue()
