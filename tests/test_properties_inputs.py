"""Property tests: any bytes given to decode_text / decode_image end as a result or an InputError.

Random bytes mostly fail at the first check, so the image tests also mutate valid files of every
allowed format (flipped bytes, truncation, spliced junk) to reach the parsers' deeper paths.
"""
from __future__ import annotations

import io
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from app.inputs import IMAGE_FORMATS, DecodedImage, DecodedText, InputError, decode_image, decode_text

# ATTNSCOPE_FUZZ_EXAMPLES=5000 for a longer fuzzing run by hand.
SETTINGS = settings(max_examples=int(os.environ.get("ATTNSCOPE_FUZZ_EXAMPLES", 150)), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _valid_images() -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    im = Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8))
    out = {}
    for fmt in IMAGE_FORMATS:
        buf = io.BytesIO()
        if fmt == "GIF":
            im.save(buf, fmt, save_all=True, append_images=[im.rotate(90)], duration=40)
        else:
            im.save(buf, fmt)
        out[fmt] = buf.getvalue()
    buf = io.BytesIO()
    im.convert("CMYK").save(buf, "JPEG")
    out["CMYK"] = buf.getvalue()
    return out


VALID = _valid_images()


def _check_image(data: bytes) -> None:
    try:
        out = decode_image(data, min_side=1)
    except InputError as err:
        assert str(err)  # a message for the user, never empty
    else:
        assert isinstance(out, DecodedImage) and out.image.mode == "RGB" and out.image.size == out.size


@SETTINGS
@given(st.binary(max_size=4096))
def test_random_bytes_as_image(data):
    _check_image(data)


@SETTINGS
@given(
    st.sampled_from(sorted(VALID)),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
    st.integers(0, 10**6),
    st.binary(max_size=64),
)
def test_mutated_valid_images(fmt, flips, cut, junk):
    data = bytearray(VALID[fmt])
    for pos, value in flips:
        data[pos % len(data)] = value
    cut = cut % (len(data) + 1)
    _check_image(bytes(data[:cut]) + junk if junk else bytes(data[:cut] or data))


@SETTINGS
@given(st.binary(max_size=4096))
def test_random_bytes_as_text(data):
    try:
        out = decode_text(data)
    except InputError as err:
        assert str(err)
    else:
        assert isinstance(out, DecodedText) and out.text.strip()
        assert "\x00" not in out.text


@SETTINGS
@given(st.text(max_size=500))
def test_any_str_round_trips_or_is_refused(text):
    try:
        out = decode_text(text.encode("utf-8", "surrogatepass"))
    except InputError as err:
        assert str(err)
    else:
        # Valid UTF-8 text is returned unchanged except for removed control characters.
        kept = "".join(ch for ch in text if ch in "\t\n\r\f\v" or not (ord(ch) < 32 or 127 <= ord(ch) < 160))
        assert out.text == kept
