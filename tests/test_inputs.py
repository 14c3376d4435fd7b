"""app.inputs: strict text decoding, safe image decoding, truncation, modality and NaN checks."""
from __future__ import annotations

import codecs
import hashlib
import io
import struct
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageFile

from app.inputs import (
    MAX_IMAGE_PIXELS,
    DecodedImage,
    InputError,
    check_modality,
    decode_image,
    decode_text,
    max_positions_of,
    nonfinite_warnings,
    sha256_hex,
    truncate_tokens,
)


def encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def noise(size=(64, 48), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height, with one tiny IDAT (no real pixel data)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


# ----------------------------------------------------------------------------------- text


def test_plain_utf8_roundtrip_and_hash():
    data = "Attention is not explanation — naïve café 注意 🙂\n".encode()
    out = decode_text(data, filename="a.txt")
    assert out.text == data.decode("utf-8")
    assert out.encoding == "utf-8" and out.warnings == ()
    assert out.sha256 == hashlib.sha256(data).hexdigest() == sha256_hex(data)


@pytest.mark.parametrize(
    "data, encoding",
    [
        (codecs.BOM_UTF8 + "héllo".encode(), "utf-8-sig"),
        ("héllo wörld".encode("utf-16"), "utf-16"),
        (codecs.BOM_UTF16_BE + "héllo wörld".encode("utf-16-be"), "utf-16"),
        ("héllo".encode("utf-32"), "utf-32"),
    ],
)
def test_boms_are_decoded_and_stripped(data, encoding):
    out = decode_text(data)
    assert out.encoding == encoding
    assert out.text in ("héllo", "héllo wörld")  # no BOM character left


@pytest.mark.parametrize("data", [b"", b"   \n\t  \r\n", "\u3000\n".encode()])
def test_empty_or_whitespace_refused(data):
    with pytest.raises(InputError, match="empty"):
        decode_text(data, filename="notes.txt")


def test_over_size_limit_refused_with_sizes():
    with pytest.raises(InputError, match=r"'big.txt' is 2\.0 KiB, over the 1\.0 KiB limit"):
        decode_text(b"a" * 2048, filename="big.txt", max_bytes=1024)


def test_latin1_is_refused_with_position_not_decoded_as_garbage():
    data = "line one\nsecond line: café au lait\n".encode("latin-1")
    with pytest.raises(InputError) as err:
        decode_text(data, filename="menu.txt")
    msg = str(err.value)
    offset = data.index(b"\xe9")
    assert f"at byte {offset} (line 2, column 17" in msg
    assert "0xE9" in msg and "UTF-8" in msg and "Windows-1252" in msg


def test_broken_utf16_reports_its_encoding():
    data = codecs.BOM_UTF16_LE + "ok".encode("utf-16-le") + b"\x00\xd8"  # lone high surrogate at the end
    with pytest.raises(InputError, match="not valid UTF-16"):
        decode_text(data)


@pytest.mark.parametrize(
    "data, expected",
    [
        (encode(noise(), "PNG"), "looks like a PNG image"),
        (encode(noise(), "JPEG"), "looks like a JPEG image"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "looks like a PDF document"),
        (b"PK\x03\x04\x14\x00\x00\x00", "looks like a ZIP archive"),
        (b"\x7fELF\x02\x01\x01\x00", "looks like an executable"),
        (b"hello\x00world", "binary file"),
        (bytes(range(1, 32)) * 4, "binary file"),
        ("utf-16 without a BOM".encode("utf-16-le"), "binary file"),
    ],
)
def test_binary_renamed_txt_refused(data, expected):
    with pytest.raises(InputError, match=expected):
        decode_text(data, filename="renamed.txt")


def test_text_that_merely_starts_like_a_signature_is_text():
    for s in ("BMW and MZ are names.", "<svg> is a tag", "GIF89a is a format name"):
        assert decode_text(s.encode()).text == s


def test_few_control_characters_removed_with_a_note():
    data = ("a clean sentence with one stray bell\x07 and an escape\x1b. " * 3).encode()
    out = decode_text(data)
    assert "\x07" not in out.text and "\x1b" not in out.text and "\t" not in out.text
    assert out.warnings == ("Removed 6 control characters from the text.",)


def test_bidirectional_overrides_are_noted():
    out = decode_text("access = 'user\u202e \u2066// admin\u2069 \u2066'".encode())
    assert "\u202e" in out.text  # kept: it is text, but the user is told
    assert out.warnings == (
        "The text contains 4 bidirectional control characters: it may display in a different order "
        "from the order the model reads it.",
    )


def test_str_input_gets_the_same_checks():
    assert decode_text("typed text").encoding == "str"
    with pytest.raises(InputError, match="empty"):
        decode_text("  \n ")
    with pytest.raises(InputError, match="over the"):
        decode_text("é" * 600, max_bytes=1000)  # 1200 UTF-8 bytes
    with pytest.raises(InputError, match="surrogate"):
        decode_text("bad \ud800 text")


def test_wrong_type_is_an_input_error():
    with pytest.raises(InputError, match="bytes"):
        decode_text(12345)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="bytes"):
        decode_image("not bytes")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- images


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF"])
def test_allowed_formats_decode_to_rgb(fmt):
    src = noise()
    out = decode_image(encode(src, fmt), filename=f"x.{fmt.lower()}")
    assert isinstance(out, DecodedImage)
    assert out.image.mode == "RGB" and out.size == (64, 48) == out.image.size
    assert out.format == fmt and out.frames == 1
    if fmt in ("PNG", "BMP"):
        assert np.array_equal(np.asarray(out.image), np.asarray(src))  # lossless formats are exact


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"", "empty"),
        (b"this is not an image at all", "not a readable PNG, JPEG, WebP, BMP or GIF image"),
        (encode(noise(), "TIFF"), "is a TIFF image, which is not supported"),
        (encode(noise((32, 32)), "ICO"), "is an ICO icon"),
        (b"%PDF-1.4 whatever", "is a PDF document"),
        (b"<?xml version='1.0'?><svg/>", "is an XML file"),
    ],
)
def test_bad_files_refused_with_reason(data, expected):
    with pytest.raises(InputError, match=expected):
        decode_image(data, filename="upload.png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
def test_truncated_files_refused(fmt):
    data = encode(noise((96, 96)), fmt)
    with pytest.raises(InputError, match="corrupt or truncated|not a readable"):
        decode_image(data[: len(data) // 2], filename="half")


def test_one_pixel_image_refused_as_too_small():
    with pytest.raises(InputError, match=r"only 1x1 pixels: too small to split into image patches"):
        decode_image(encode(Image.new("RGB", (1, 1), "red")))
    assert decode_image(encode(Image.new("RGB", (4, 4))), min_side=4).size == (4, 4)


def test_size_limit_in_bytes():
    data = encode(noise())
    with pytest.raises(InputError, match="over the .* limit for image uploads"):
        decode_image(data, max_bytes=len(data) - 1)


def test_decompression_bomb_refused_before_decoding(monkeypatch):
    loads = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self) or real_load(self))
    bomb = png_header_only(8000, 8000)  # 64 MP declared in a ~100-byte file
    assert len(bomb) < 200
    with pytest.raises(InputError, match=r"8000x8000 = 64,000,000 pixels, over the limit of 40,000,000"):
        decode_image(bomb, filename="bomb.png")
    assert loads == []  # refused from the header alone
    huge = png_header_only(30000, 30000)  # beyond Pillow's own hard limit too
    with pytest.raises(InputError, match="decompression bomb"):
        decode_image(huge)
    assert loads == []
    assert MAX_IMAGE_PIXELS == 40_000_000
    with pytest.raises(InputError, match="over the limit of 1,000"):
        decode_image(encode(noise()), max_pixels=1000)


@pytest.mark.parametrize("fmt, name", [("GIF", "GIF"), ("PNG", "PNG"), ("WEBP", "WebP")])
def test_animations_give_first_frame_with_note(fmt, name):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (32, 32), c) for c in colours]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, loop=0, lossless=True)
    out = decode_image(data, filename="anim")
    assert out.frames == 3 and out.format == fmt
    assert out.image.getpixel((5, 5)) == (255, 0, 0)
    assert out.warnings[0] == f"Animated {name} with 3 frames: only the first frame is used."


def test_metadata_bomb_refused():
    """A PNG text chunk of 16 MiB of "A" compressed to ~16 KB: refused, quickly."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = encode(Image.new("RGB", (32, 32), "red"))
    bomb = zlib.compress(b"A" * (16 * 1024 * 1024), 9)
    evil = png[:33] + chunk(b"zTXt", b"comment\x00\x00" + bomb) + png[33:]  # after the 33-byte signature + IHDR
    with pytest.raises(InputError, match="expands beyond a safety limit: refused as a possible decompression bomb"):
        decode_image(evil)


def test_cmyk_jpeg_converted():
    cmyk = Image.new("CMYK", (32, 32), (255, 0, 0, 0))  # pure cyan
    out = decode_image(encode(cmyk, "JPEG", quality=95))
    assert out.original_mode == "CMYK"
    r, g, b = out.image.getpixel((16, 16))
    assert r < 10 and g > 245 and b > 245
    assert any("CMYK" in w for w in out.warnings)


def test_rgba_composited_on_white():
    im = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    im.paste((255, 0, 0, 255), (0, 0, 16, 32))  # left half opaque red, right half transparent
    half = Image.new("RGBA", (32, 32), (0, 0, 0, 128))  # 50% black
    out = decode_image(encode(im))
    assert out.original_mode == "RGBA"
    assert out.image.getpixel((4, 4)) == (255, 0, 0)
    assert out.image.getpixel((28, 4)) == (255, 255, 255)  # transparent -> white, not black
    assert out.warnings == ("Transparent areas were filled with white.",)
    grey = decode_image(encode(half)).image.getpixel((0, 0))
    assert all(abs(c - 127) <= 1 for c in grey)
    assert decode_image(encode(Image.new("RGBA", (32, 32), (1, 2, 3, 255)))).warnings == ()


def test_sixteen_bit_scaled_not_clipped():
    values = np.array([[0, 257 * 100, 32768, 65535]], dtype=np.uint16).repeat(16, axis=0).repeat(8, axis=1)  # [16, 32]
    out = decode_image(encode(Image.fromarray(values)))
    assert out.original_mode.startswith("I;16")
    row = np.asarray(out.image)[0, ::8, 0]  # one pixel per value
    assert row.tolist() == [0, 100, 128, 255]
    assert "16-bit" in out.warnings[0]


def test_palette_images_with_and_without_transparency():
    pal = Image.new("P", (32, 32), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    out = decode_image(encode(pal))
    assert out.original_mode == "P" and out.image.getpixel((0, 0)) == (10, 200, 30)
    gif = encode(pal, "GIF", transparency=1)
    out = decode_image(gif)
    assert out.image.getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("mode, value, expected", [("L", 77, (77, 77, 77)), ("1", 1, (255, 255, 255)), ("LA", (50, 255), (50, 50, 50))])
def test_other_modes(mode, value, expected):
    assert decode_image(encode(Image.new(mode, (32, 32), value))).image.getpixel((3, 3)) == expected


def test_exif_rotated_jpeg_is_upright():
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (20, 0, 40, 20))  # stored: left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    out = decode_image(encode(im, "JPEG", exif=exif.tobytes(), quality=95))
    assert out.size == (20, 40)
    top, bottom = out.image.getpixel((10, 5)), out.image.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # the stored left (red) is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_unreadable_exif_keeps_the_image(monkeypatch):
    from PIL import ImageOps

    def broken(im):
        raise SyntaxError("not a TIFF IFD")

    monkeypatch.setattr(ImageOps, "exif_transpose", broken)
    out = decode_image(encode(noise(), "JPEG"))
    assert out.size == (64, 48)
    assert out.warnings == ("The EXIF orientation could not be read: the image is shown as stored.",)


def test_decoded_image_hash_is_of_the_upload():
    data = encode(noise())
    assert decode_image(data).sha256 == hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------ model-related checks


def test_truncation_message_and_cut_position():
    assert truncate_tokens(512, 512) is None and truncate_tokens(10, None) is None
    info = truncate_tokens(2300, 512)
    assert info.dropped == 1788
    assert info.message == "Input truncated to the model's maximum of 512 positions: tokens 513-2300 were dropped"
    assert truncate_tokens(6, 5).message.endswith("token 6 was dropped")
    offsets = [(i * 4, i * 4 + 3) for i in range(6)]
    info = truncate_tokens(6, 4, offsets=offsets)
    assert info.cut_char == 16 and "character 16" in info.message
    with pytest.raises(ValueError):
        truncate_tokens(5, 0)


def test_max_positions_of_configs_and_tokenizers():
    assert max_positions_of(SimpleNamespace(max_position_embeddings=512)) == 512
    assert max_positions_of(SimpleNamespace(n_positions=1024), SimpleNamespace(model_max_length=int(1e30))) == 1024
    assert max_positions_of(SimpleNamespace(n_positions=1024), SimpleNamespace(model_max_length=128)) == 128
    assert max_positions_of(SimpleNamespace(text_config=SimpleNamespace(max_position_embeddings=77))) == 77
    assert max_positions_of(SimpleNamespace(), None) is None  # e.g. T5: relative positions, no limit


@pytest.mark.parametrize(
    "modality, given, expected",
    [
        ("text", "image", "text model: it reads text, not images"),
        ("image", "text", "image model: it reads an image, not text"),
        ("image-to-text", "text", "needs an image first"),
        ("text", ["text", "image"], "text model"),
    ],
)
def test_modality_mismatch_messages(modality, given, expected):
    with pytest.raises(InputError, match=expected):
        check_modality(modality, given)


def test_modality_matches_pass():
    ok = [("text", "text"), ("image", "image"), ("image-to-text", "image"), ("image-to-text", ["image", "text"]),
          ("image-text", "text"), ("image-text", "image"), ("image-text", ("text", "image"))]
    for modality, given in ok:
        assert check_modality(modality, given) is None
    with pytest.raises(ValueError, match="input kinds"):
        check_modality("text", "audio")
    with pytest.raises(ValueError, match="unknown modality"):
        check_modality("audio", "text")  # type: ignore[arg-type]


def test_nonfinite_warnings_numpy_and_torch():
    torch = pytest.importorskip("torch")
    ok = {"a": np.ones(3), "ints": np.arange(4)}
    assert nonfinite_warnings(ok) == []
    bad = [("layer.0", np.array([1.0, np.nan, np.inf, -np.inf])), ("layer.1", torch.tensor([[np.nan, 0.5]]))]
    msgs = nonfinite_warnings(bad, what="attention")
    assert msgs == [
        "Attention 'layer.0' hold non-finite values (1 NaN, 2 inf of 4): statistics and figures computed from them are undefined.",
        "Attention 'layer.1' hold non-finite values (1 NaN of 2): statistics and figures computed from them are undefined.",
    ]
    lin = torch.nn.Linear(3, 2)
    assert nonfinite_warnings(lin.named_parameters(), what="weights") == []
    with torch.no_grad():
        lin.weight[0, 0] = float("inf")
    assert nonfinite_warnings(lin.named_parameters(), what="weights")[0].startswith("Weights 'weight' hold non-finite values (1 inf of 6)")
