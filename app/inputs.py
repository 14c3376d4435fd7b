"""Safe decoding of user-supplied text and images, shared by the app and the CLI.

Everything a user hands in (typed text, an uploaded .txt/.md, an uploaded image) goes through
this module before it reaches a tokenizer or an image processor. It works on bytes in memory
(nothing is written to disk), never executes anything from an upload, and turns every problem
into an `InputError` (a `ValueError`) whose message can be shown to the user as is.

Limits (documented in SECURITY.md):
    MAX_TEXT_BYTES   = 2 MiB     text uploads
    MAX_IMAGE_BYTES  = 20 MiB    image uploads
    MAX_IMAGE_PIXELS = 40 MP     width * height from the image header, refused before decoding
    MIN_IMAGE_SIDE   = 16 px     smaller images cannot be split into attention patches meaningfully

No streamlit, no torch: `nonfinite_warnings` duck-types torch tensors and numpy arrays.
"""
from __future__ import annotations

import codecs
import hashlib
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "IMAGE_FORMATS",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "MAX_TEXT_BYTES",
    "MIN_IMAGE_SIDE",
    "DecodedImage",
    "DecodedText",
    "InputError",
    "TruncationInfo",
    "check_modality",
    "decode_image",
    "decode_text",
    "max_positions_of",
    "nonfinite_warnings",
    "sha256_hex",
    "truncate_tokens",
]

MAX_TEXT_BYTES = 2 * 1024 * 1024
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
MIN_IMAGE_SIDE = 16
#: Pillow format names accepted for uploads (the only plugins `Image.open` may try).
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")

#: Fraction of control characters above which decoded text is treated as a binary file.
_MAX_CONTROL_RATIO = 0.05
# Unicode category Cc minus tab, newline, vertical tab, form feed, carriage return (U+0009-U+000D).
_CONTROL_RE = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f]")
# Bidirectional embeddings, overrides and isolates ("Trojan Source"): U+202A-U+202E, U+2066-U+2069.
_BIDI_RE = re.compile("[\u202a-\u202e\u2066-\u2069]")
# Unpaired surrogates: a str can hold them, but they are not text (and cannot be encoded as UTF-8).
_SURROGATE_RE = re.compile("[\ud800-\udfff]")

# Magic numbers: (prefix, offset, description, may_begin_text). Names what a wrong file really is;
# prefixes that ordinary text may begin with count for text only beside NUL bytes.
_SIGNATURES: tuple[tuple[bytes, int, str, bool], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "a PNG image", False),
    (b"\xff\xd8\xff", 0, "a JPEG image", False),
    (b"GIF87a", 0, "a GIF image", True),
    (b"GIF89a", 0, "a GIF image", True),
    (b"BM", 0, "a BMP image", True),
    (b"WEBP", 8, "a WebP image", False),
    (b"II*\x00", 0, "a TIFF image", False),
    (b"MM\x00*", 0, "a TIFF image", False),
    (b"\x00\x00\x01\x00", 0, "an ICO icon", False),
    (b"ftypheic", 4, "a HEIC image", False),
    (b"ftypheix", 4, "a HEIC image", False),
    (b"ftypavif", 4, "an AVIF image", False),
    (b"8BPS", 0, "a Photoshop file", True),
    (b"%!PS", 0, "a PostScript/EPS file", True),
    (b"\xc5\xd0\xd3\xc6", 0, "an EPS file", False),
    (b"%PDF-", 0, "a PDF document", False),
    (b"PK\x03\x04", 0, "a ZIP archive (or a .docx/.xlsx/.npz file)", False),
    (b"\x1f\x8b", 0, "a gzip archive", False),
    (b"\x7fELF", 0, "an executable (ELF)", False),
    (b"MZ", 0, "a Windows executable", True),
    (b"\x80\x02", 0, "a Python pickle", False),
    (b"\x80\x04", 0, "a Python pickle", False),
    (b"\x93NUMPY", 0, "a NumPy array file", False),
    (b"<svg", 0, "an SVG drawing", True),
    (b"<?xml", 0, "an XML file", True),
)
# Descriptions of the formats in IMAGE_FORMATS.
_ALLOWED_KINDS = frozenset({"a PNG image", "a JPEG image", "a GIF image", "a BMP image", "a WebP image"})


class InputError(ValueError):
    """A user-supplied input cannot be used; the message says why, for display as is."""


@dataclass(frozen=True)
class DecodedText:
    """Text decoded from an upload or a text box.

    text: the decoded text (BOM removed, stray control characters removed).
    encoding: the codec that decoded it ("utf-8", "utf-8-sig", "utf-16", "utf-32", or "str").
    sha256: hex digest of the bytes as received (of the UTF-8 encoding for a str).
    warnings: user-visible notes about what was changed.
    """

    text: str
    encoding: str
    sha256: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class DecodedImage:
    """An uploaded image, decoded in memory and converted to 8-bit RGB.

    image: PIL image, mode "RGB", EXIF orientation applied, size (width, height) = `size`.
    format: Pillow format name of the upload ("PNG", "JPEG", ...).
    original_mode: Pillow mode before conversion ("P", "CMYK", "I;16", "RGBA", ...).
    size: (width, height) after EXIF rotation.
    frames: number of frames in the file (only the first is used).
    sha256: hex digest of the uploaded bytes (for report.json).
    warnings: user-visible notes (first frame of an animation, transparency flattened, ...).
    """

    image: Image.Image
    format: str
    original_mode: str
    size: tuple[int, int]
    frames: int
    sha256: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class TruncationInfo:
    """Where a tokenised input was cut to the model's maximum number of positions.

    Tokens are numbered from 1 in the message: tokens `max_positions + 1 .. n_tokens` are dropped.
    cut_char: character offset in the text where the dropped part starts (None if unknown).
    """

    n_tokens: int
    max_positions: int
    cut_char: int | None = None

    @property
    def dropped(self) -> int:
        """Number of tokens dropped: n_tokens - max_positions."""
        return self.n_tokens - self.max_positions

    @property
    def message(self) -> str:
        first, last = self.max_positions + 1, self.n_tokens
        span = f"token {first} was" if first == last else f"tokens {first}-{last} were"
        msg = f"Input truncated to the model's maximum of {self.max_positions} positions: {span} dropped"
        if self.cut_char is not None:
            msg += f" (the text from character {self.cut_char} on was not seen by the model)"
        return msg


def sha256_hex(data: bytes | bytearray | memoryview) -> str:
    """Hex SHA-256 digest of `data`."""
    return hashlib.sha256(bytes(data)).hexdigest()


def _human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    size = n / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _label(filename: str | None, default: str) -> str:
    return repr(filename) if filename else default


def _sniff(data: bytes, *, text: bool = False) -> str | None:
    """Describe `data` by its magic number ("a PNG image", ...), or None if unknown.

    text=True: ignore signatures that ordinary text may begin with unless the first 512 bytes
    hold a NUL byte (a text file may start with "BM" or "<svg").
    """
    binary_head = b"\x00" in data[:512]
    stripped = data[:512].lstrip()
    for prefix, offset, kind, may_begin_text in _SIGNATURES:
        at = data[offset : offset + len(prefix)] == prefix
        if not at and prefix.startswith(b"<"):
            at = stripped.startswith(prefix)
        if not at or (prefix == b"WEBP" and not data.startswith(b"RIFF")):
            continue
        if text and may_begin_text and not binary_head:
            continue
        return kind
    return None


def _as_bytes(data: Any, what: str) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise InputError(f"Expected the {what} as bytes, got {type(data).__name__}.")


def _check_size(raw: bytes, max_bytes: int, name: str, what: str) -> bytes:
    """Refuse empty data and data over `max_bytes`; return `raw`."""
    if not raw:
        raise InputError(f"{name} is empty (0 bytes): there is nothing to analyse.")
    if len(raw) > max_bytes:
        raise InputError(
            f"{name} is {_human_bytes(len(raw))}, over the {_human_bytes(max_bytes)} limit for {what} uploads."
        )
    return raw


# --------------------------------------------------------------------------------------- text


def _bom_codec(data: bytes) -> str | None:
    # UTF-32 LE's BOM starts with UTF-16 LE's, so test it first.
    for bom, name in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return name
    return None


def _decode_error_message(data: bytes, err: UnicodeDecodeError, codec: str, name: str) -> str:
    start = err.start
    line = data.count(b"\n", 0, start) + 1
    column = start - (data.rfind(b"\n", 0, start) + 1) + 1
    bad = data[start : max(err.end, start + 1)][:4]
    shown = " ".join(f"0x{b:02X}" for b in bad)
    msg = (
        f"{name} is not valid {codec.upper().replace('-SIG', '')} text: {err.reason} at byte "
        f"{start} (line {line}, column {column}; bytes {shown})."
    )
    if codec == "utf-8":
        msg += " attnscope reads UTF-8, or UTF-16/UTF-32 with a byte-order mark."
        try:
            data.decode("cp1252")
        except UnicodeDecodeError:
            pass
        else:
            msg += " The file may be in a legacy encoding such as Windows-1252/Latin-1:"
        msg += " re-save it as UTF-8 and upload it again."
    return msg


def _check_text(text: str, name: str) -> tuple[str, list[str]]:
    """Refuse empty and binary-looking text; strip stray control characters (noted); note
    bidirectional overrides (the text may display in another order than the model reads it)."""
    notes: list[str] = []
    if not text.strip():
        raise InputError(f"{name} is empty{' (only whitespace)' if text else ''}: there is nothing to analyse.")
    controls = len(_CONTROL_RE.findall(text))
    if controls:
        if "\x00" in text or controls > _MAX_CONTROL_RATIO * len(text):
            raise InputError(
                f"{name} looks like a binary file, not text ({controls} control characters in "
                f"{len(text)}): upload a plain-text .txt or .md file."
            )
        text = _CONTROL_RE.sub("", text)
        notes.append(f"Removed {controls} control character{'s' * (controls != 1)} from the text.")
        if not text.strip():
            raise InputError(f"{name} contains only whitespace and control characters: nothing to analyse.")
    bidi = len(_BIDI_RE.findall(text))
    if bidi:
        notes.append(
            f"The text contains {bidi} bidirectional control character{'s' * (bidi != 1)}: it may display "
            "in a different order from the order the model reads it."
        )
    return text, notes


def decode_text(
    data: bytes | str,
    *,
    filename: str | None = None,
    max_bytes: int = MAX_TEXT_BYTES,
) -> DecodedText:
    """Decode uploaded or typed text strictly; raise `InputError` for anything unusable.

    Accepted: UTF-8 (with or without BOM), UTF-16/UTF-32 with a BOM, or an already decoded `str`.
    Refused: empty/whitespace-only, over `max_bytes`, invalid in its encoding (the message gives
    the byte offset, line and column), binary content (NUL bytes, known binary signatures, or
    more than 5% control characters). Fewer stray control characters are removed with a note.
    """
    name = _label(filename, "The text")
    if isinstance(data, str):
        raw = data.encode("utf-8", errors="surrogatepass")
        _check_size(raw, max_bytes, name, "text")
        if _SURROGATE_RE.search(data):
            raise InputError(f"{name} contains unpaired surrogate characters: it is not valid Unicode text.")
        text, notes = _check_text(data, name)
        return DecodedText(text, "str", sha256_hex(raw), tuple(notes))

    raw = _check_size(_as_bytes(data, "text"), max_bytes, name, "text")
    codec = _bom_codec(raw)
    if codec is None:
        kind = _sniff(raw, text=True)
        if kind is not None:
            raise InputError(f"{name} looks like {kind}, not text: upload a plain-text .txt or .md file.")
        nul = raw.find(b"\x00")
        if nul >= 0:
            raise InputError(
                f"{name} looks like a binary file, not text (it contains a NUL byte at offset "
                f"{nul}). If it is UTF-16 text, save it with a byte-order mark or as UTF-8."
            )
        codec = "utf-8"
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as err:
        raise InputError(_decode_error_message(raw, err, codec, name)) from None
    text, notes = _check_text(text, name)
    return DecodedText(text, codec, sha256_hex(raw), tuple(notes))


# -------------------------------------------------------------------------------------- image


def _format_name(fmt: str) -> str:
    return "WebP" if fmt == "WEBP" else fmt


def _unreadable(name: str, err: Exception, what: str) -> InputError:
    """The InputError for a parser failure; Pillow's limits on compressed metadata say "too large"."""
    detail = str(err) or type(err).__name__
    if "too large" in detail.lower():
        return InputError(
            f"{name} holds compressed data that expands beyond a safety limit: refused as a possible "
            f"decompression bomb ({detail})."
        )
    return InputError(f"{name} is corrupt or truncated: {what} ({detail}).")


def _scale_to_uint8(arr: np.ndarray, mode: str) -> tuple[np.ndarray, list[str]]:
    """Map a single-channel integer/float array to uint8 (see `_to_rgb` for the rules)."""
    notes: list[str] = []
    if mode.startswith("I;16"):
        # 16-bit: v8 = round(v16 / 257) maps 0..65535 onto 0..255 exactly at both ends.
        out = np.rint(arr.astype(np.float64) / 257.0)
        notes.append("16-bit image scaled to 8 bits per channel.")
        return out.astype(np.uint8), notes
    a = arr.astype(np.float64)
    finite = a[np.isfinite(a)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if lo >= 0 and hi <= 255:
        out = a
    elif lo >= 0 and hi <= 65535 and mode == "I":
        out = a / 257.0
        notes.append("32-bit integer image with 16-bit values scaled to 8 bits.")
    else:
        out = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        notes.append(f"Image values ({lo:g}..{hi:g}) rescaled to 0..255 for display.")
    return np.rint(np.nan_to_num(np.clip(out, 0, 255))).astype(np.uint8), notes


def _to_rgb(im: Image.Image) -> tuple[Image.Image, list[str]]:
    """Convert any Pillow mode to 8-bit RGB.

    Alpha (RGBA, LA, PA, P with transparency) is composited over white; 16-bit grey (I;16*)
    is scaled v/257; CMYK uses Pillow's conversion (no ICC colour management).
    """
    notes: list[str] = []
    mode = im.mode
    if mode == "RGB":
        return im, notes
    if mode.startswith("I;16") or mode in ("I", "F"):
        grey, notes = _scale_to_uint8(np.asarray(im), mode)  # [height, width]
        return Image.fromarray(grey, "L").convert("RGB"), notes
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("P", "L", "RGB", "1") and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        if rgba.getchannel("A").getextrema()[0] < 255:
            notes.append("Transparent areas were filled with white.")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB"), notes
    if mode == "CMYK":
        notes.append("CMYK image converted to RGB without colour management; colours may differ slightly.")
    return im.convert("RGB"), notes


def decode_image(
    data: bytes,
    *,
    filename: str | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_bytes: int = MAX_IMAGE_BYTES,
    min_side: int = MIN_IMAGE_SIDE,
) -> DecodedImage:
    """Decode an uploaded image in memory to 8-bit RGB; raise `InputError` for anything unusable.

    Order of checks: empty -> over `max_bytes` -> format by magic number (PNG, JPEG, WebP, BMP,
    GIF only; Pillow may try no other plugin) -> header size: width*height over `max_pixels` is
    refused before any pixel is decoded (decompression bombs) -> smaller than `min_side` on a
    side is refused -> first frame decoded (truncated/corrupt data refused) -> EXIF orientation
    applied -> converted to RGB (see `_to_rgb`). Animated files give their first frame, with a note.
    """
    name = _label(filename, "The image")
    raw = _check_size(_as_bytes(data, "image"), max_bytes, name, "image")
    names = [_format_name(f) for f in IMAGE_FORMATS]
    allowed = ", ".join(names[:-1]) + " or " + names[-1]
    kind = _sniff(raw)
    if kind is not None and kind not in _ALLOWED_KINDS:
        raise InputError(f"{name} is {kind}, which is not supported: upload a {allowed} image.")
    try:
        # Lazy: reads the header only. Pillow itself raises DecompressionBombError above
        # 2 * Image.MAX_IMAGE_PIXELS; our explicit, lower `max_pixels` is checked just below.
        im = Image.open(io.BytesIO(raw), formats=list(IMAGE_FORMATS))
    except Image.DecompressionBombError:
        raise InputError(
            f"{name} declares more pixels than attnscope will decode (limit {max_pixels:,}): refused "
            "as a possible decompression bomb."
        ) from None
    except UnidentifiedImageError:
        raise InputError(
            f"{name} is not a readable {allowed} image: the file is corrupt or of another type."
        ) from None
    except Exception as err:  # noqa: BLE001 - any parser failure on untrusted bytes is a bad input
        raise _unreadable(name, err, f"it could not be read as a {allowed} image") from None

    with im:
        fmt = im.format or "?"
        width, height = im.size
        if width * height > max_pixels:
            raise InputError(
                f"{name} is {width}x{height} = {width * height:,} pixels, over the limit of "
                f"{max_pixels:,} ({max_pixels / 1e6:g} megapixels): refused before decoding "
                "(a possible decompression bomb). Downscale it and upload it again."
            )
        if min(width, height) < min_side:
            raise InputError(
                f"{name} is only {width}x{height} pixels: too small to split into image patches "
                f"(need at least {min_side}x{min_side})."
            )
        original_mode = im.mode
        try:
            frames = int(getattr(im, "n_frames", 1))
            if frames > 1:
                im.seek(0)
            im.load()
            exif_notes: list[str] = []
            try:
                upright = ImageOps.exif_transpose(im)
            except Exception:  # noqa: BLE001 - a broken EXIF block does not spoil the pixels
                upright = im
                exif_notes.append("The EXIF orientation could not be read: the image is shown as stored.")
            rgb, notes = _to_rgb(upright)
            rgb.load()
            notes = exif_notes + notes
        except Exception as err:  # noqa: BLE001 - truncated/corrupt pixel data in untrusted bytes
            raise _unreadable(name, err, f"its {_format_name(fmt)} pixel data could not be decoded") from None
    if frames > 1:
        notes.insert(0, f"Animated {_format_name(fmt)} with {frames} frames: only the first frame is used.")
    return DecodedImage(
        image=rgb,
        format=fmt,
        original_mode=original_mode,
        size=rgb.size,
        frames=frames,
        sha256=sha256_hex(raw),
        warnings=tuple(notes),
    )


# ------------------------------------------------------------------------- model-related checks


def truncate_tokens(
    n_tokens: int,
    max_positions: int | None,
    *,
    offsets: Iterable[tuple[int, int]] | None = None,
) -> TruncationInfo | None:
    """Describe the cut if `n_tokens` exceeds `max_positions`, else None.

    offsets: optional per-token (start, end) character offsets (a tokenizer's offset_mapping,
    length n_tokens); the first dropped token's start becomes `cut_char`.
    The caller keeps tokens [0, max_positions) (special tokens count as positions).
    """
    if max_positions is None or n_tokens <= max_positions:
        return None
    if max_positions < 1:
        raise ValueError(f"max_positions must be >= 1, got {max_positions}")
    cut_char = None
    if offsets is not None:
        offs = list(offsets)
        if len(offs) > max_positions:
            cut_char = int(offs[max_positions][0])
    return TruncationInfo(int(n_tokens), int(max_positions), cut_char)


_NO_LIMIT = 10**8  # tokenizers use int(1e30) as "no limit"


def max_positions_of(config: Any = None, tokenizer: Any = None) -> int | None:
    """Maximum number of positions a model accepts, or None if it has no fixed limit.

    The smallest of the config's `max_position_embeddings` / `n_positions` / `n_ctx`
    (text sub-config included) and the tokenizer's `model_max_length` when that is a real limit.
    """
    limits: list[int] = []
    configs = [config, getattr(config, "text_config", None), getattr(config, "decoder", None)]
    for cfg in configs:
        for attr in ("max_position_embeddings", "n_positions", "n_ctx"):
            value = getattr(cfg, attr, None) if cfg is not None else None
            if isinstance(value, int) and 0 < value < _NO_LIMIT:
                limits.append(value)
                break
        if limits:
            break
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < _NO_LIMIT:
        limits.append(value)
    return min(limits) if limits else None


Modality = Literal["text", "image", "image-to-text", "image-text"]
_MODALITIES = ("text", "image", "image-to-text", "image-text")


def check_modality(modality: Modality, given: str | Iterable[str]) -> None:
    """Raise `InputError` if the inputs `given` ("text", "image", or several) don't fit the model.

    text: text only; image: an image only; image-to-text (captioning): an image, optionally with
    caption text; image-text (dual encoders such as CLIP): text, an image, or both.
    """
    if modality not in _MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {list(_MODALITIES)}")
    kinds = {given} if isinstance(given, str) else set(given)
    unknown = kinds - {"text", "image"}
    if unknown or not kinds:
        raise ValueError(f"input kinds must be 'text' and/or 'image', got {sorted(kinds)}")
    if modality == "text" and "image" in kinds:
        raise InputError(
            "This is a text model: it reads text, not images. Type or upload text, or choose an image model."
        )
    if modality == "image" and "text" in kinds:
        raise InputError(
            "This is an image model: it reads an image, not text. Upload a PNG, JPEG, WebP, BMP or GIF "
            "image (or pick a sample image), or choose a text model."
        )
    if modality == "image-to-text" and "image" not in kinds:
        raise InputError("This captioning model needs an image first: it writes the caption from the image.")


def nonfinite_warnings(named: Mapping[str, Any] | Iterable[tuple[str, Any]], *, what: str = "values") -> list[str]:
    """One warning per array holding NaN or +-inf values; empty list if all are finite.

    named: mapping or (name, array) pairs; arrays are torch tensors or numpy arrays (any shape),
    e.g. `model.named_parameters()` or `{m.name: m.weights for m in cap.maps}`.
    what: noun for the message ("weights", "attention").
    """
    items = named.items() if isinstance(named, Mapping) else named
    out: list[str] = []
    for key, arr in items:
        if hasattr(arr, "isnan") and hasattr(arr, "detach"):  # torch.Tensor, no torch import
            t = arr.detach()
            if t.is_floating_point() or t.is_complex():
                n_nan, n_inf, total = int(t.isnan().sum()), int(t.isinf().sum()), t.numel()
            else:
                n_nan = n_inf = 0
                total = t.numel()
        else:
            a = np.asarray(arr)
            if np.issubdtype(a.dtype, np.inexact):
                n_nan, n_inf = int(np.count_nonzero(np.isnan(a))), int(np.count_nonzero(np.isinf(a)))
            else:
                n_nan = n_inf = 0
            total = a.size
        if n_nan or n_inf:
            parts = ", ".join(f"{n:,} {label}" for n, label in ((n_nan, "NaN"), (n_inf, "inf")) if n)
            out.append(
                f"{what[:1].upper()}{what[1:]} {key!r} hold non-finite values ({parts} of {total:,}): "
                "statistics and figures computed from them are undefined."
            )
    return out
