"""Synthetic shape images with pixel-exact ground truth, for shapes-vit and shapes-captioner.

Images are uint8 arrays [H, W, 3] (64 x 64 by default); masks are bool arrays [H, W].
Everything is drawn from a `numpy.random.Generator`, so a seed reproduces a data set exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIZE = 64
PATCH = 8
SHAPES = ("circle", "square", "triangle", "cross", "diamond")
# Named colours of the captioner (RGB, before a small random jitter).
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 80, 235),
    "yellow": (235, 220, 40),
    "pink": (240, 110, 200),
    "cyan": (40, 215, 225),
}
RELATIONS = ("left of",)  # "above" was tried: the 2-layer decoder stayed at chance on the dominant axis

_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5  # pixel centres, [H, W] each


def shape_mask(kind: str, cx: float, cy: float, r: float) -> np.ndarray:
    """Boolean mask [SIZE, SIZE] of a filled shape centred at (cx, cy) with half-extent r (pixels)."""
    dx, dy = _XX - cx, _YY - cy
    if kind == "circle":
        return dx * dx + dy * dy <= r * r
    if kind == "square":
        h = 0.82 * r
        return (np.abs(dx) <= h) & (np.abs(dy) <= h)
    if kind == "triangle":  # apex up, base at cy + r/2
        top, base = cy - r, cy + 0.6 * r
        half_width = (_YY - top) / (base - top) * r
        return (_YY >= top) & (_YY <= base) & (np.abs(dx) <= half_width)
    if kind == "cross":
        t = r / 3.0
        return ((np.abs(dx) <= r) & (np.abs(dy) <= t)) | ((np.abs(dy) <= r) & (np.abs(dx) <= t))
    if kind == "diamond":
        return np.abs(dx) + np.abs(dy) <= 1.1 * r
    raise ValueError(f"unknown shape {kind!r}; expected one of {SHAPES}")


def _upsample(grid: np.ndarray) -> np.ndarray:
    """Bilinear upsampling of a coarse [g, g, C] grid to [SIZE, SIZE, C] (corners aligned)."""
    g = grid.shape[0]
    t = np.linspace(0, g - 1, SIZE)
    i0 = np.minimum(t.astype(int), g - 2)
    f = (t - i0)[:, None, None]
    rows = grid[i0] * (1 - f) + grid[i0 + 1] * f  # [SIZE, g, C]
    f = (t - i0)[None, :, None]
    return rows[:, i0] * (1 - f) + rows[:, i0 + 1] * f  # [SIZE, SIZE, C]


def _background(rng: np.random.Generator, *, clutter: bool) -> np.ndarray:
    """Float image [H, W, 3] in [0, 255]: a base colour, smooth low-frequency noise, pixel noise, blobs."""
    base = rng.uniform(20, 120, size=3) if not clutter else rng.uniform(0, 255, size=3)
    coarse = rng.normal(0, 18 if clutter else 10, size=(5, 5, 3))
    smooth = _upsample(coarse)  # [H, W, 3], bilinear
    img = base + smooth + rng.normal(0, 8, size=(SIZE, SIZE, 3))
    if clutter:  # soft gaussian distractor blobs of random colour, smaller than any target
        for _ in range(rng.integers(3, 7)):
            bx, by, s = rng.uniform(0, SIZE), rng.uniform(0, SIZE), rng.uniform(1.5, 3.0)
            colour = rng.uniform(0, 255, size=3)
            y0, y1 = max(0, int(by - 4 * s)), min(SIZE, int(by + 4 * s) + 1)  # window of +-4 sigma
            x0, x1 = max(0, int(bx - 4 * s)), min(SIZE, int(bx + 4 * s) + 1)
            win = (slice(y0, y1), slice(x0, x1))
            w = np.exp(-((_XX[win] - bx) ** 2 + (_YY[win] - by) ** 2) / (2 * s * s))[..., None]  # [h, w, 1]
            img[win] = img[win] * (1 - w) + colour * w
    return img


def _contrasting_colour(rng: np.random.Generator, bg_mean: np.ndarray) -> np.ndarray:
    """A random RGB colour at Euclidean distance >= 120 from the background's mean colour."""
    while True:
        c = rng.uniform(0, 255, size=3)
        if np.linalg.norm(c - bg_mean) >= 120:
            return c


@dataclass(frozen=True)
class ShapeImage:
    """One shapes-vit example: image [H, W, 3] uint8, label index into SHAPES, mask [H, W] bool."""

    image: np.ndarray
    label: int
    mask: np.ndarray

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the mask, inclusive pixel coordinates."""
        ys, xs = np.nonzero(self.mask)
        return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def make_shape_image(rng: np.random.Generator) -> ShapeImage:
    """One target shape (random class, colour, size 8-13 px half-extent, position) on a cluttered background."""
    label = int(rng.integers(len(SHAPES)))
    r = rng.uniform(8, 13)
    cx, cy = rng.uniform(r + 1, SIZE - r - 1, size=2)
    mask = shape_mask(SHAPES[label], cx, cy, r)
    img = _background(rng, clutter=True)
    img[mask] = _contrasting_colour(rng, img[~mask].mean(axis=0))
    return ShapeImage(np.clip(img, 0, 255).astype(np.uint8), label, mask)


def shape_batch(rng: np.random.Generator, n: int) -> list[ShapeImage]:
    return [make_shape_image(rng) for _ in range(n)]


@dataclass(frozen=True)
class CaptionImage:
    """One shapes-captioner example: image [H, W, 3] uint8, caption, and one mask [H, W] per object.

    `objects` lists (colour, shape) in caption order; `masks[i]` is the mask of `objects[i]`.
    """

    image: np.ndarray
    caption: str
    objects: tuple[tuple[str, str], tuple[str, str]]
    masks: tuple[np.ndarray, np.ndarray]


def make_caption_image(rng: np.random.Generator) -> CaptionImage:
    """Two shapes of named colours side by side; caption '<colour> <shape> left of <colour> <shape>'.

    The left object is named first; the horizontal gap between centres is at least r1 + r2 + 4 px and
    the vertical offset at most 0.6 x the horizontal one. The two objects never share both colour and shape.
    """
    names = list(COLOURS)
    while True:
        r1, r2 = rng.uniform(8, 11, size=2)
        c1 = rng.uniform(r1 + 1, SIZE - r1 - 1, size=2)
        c2 = rng.uniform(r2 + 1, SIZE - r2 - 1, size=2)
        dx, dy = c2 - c1
        if abs(dx) < r1 + r2 + 4 or abs(dy) > 0.6 * abs(dx):
            continue  # overlapping, too close, or not side by side
        objs = [(names[rng.integers(len(names))], SHAPES[rng.integers(len(SHAPES))]) for _ in range(2)]
        if objs[0] != objs[1]:
            break
    img = _background(rng, clutter=False)
    masks = []
    for (colour, kind), (cx, cy), r in zip(objs, (c1, c2), (r1, r2)):
        m = shape_mask(kind, cx, cy, r)
        img[m] = np.array(COLOURS[colour]) + rng.uniform(-20, 20, size=3)  # jitter within +-20
        masks.append(m)
    order = (0, 1) if dx > 0 else (1, 0)
    a, b = (objs[i] for i in order)
    caption = f"{a[0]} {a[1]} {RELATIONS[0]} {b[0]} {b[1]}"
    return CaptionImage(
        np.clip(img, 0, 255).astype(np.uint8), caption, (a, b), (masks[order[0]], masks[order[1]])
    )


def patch_mask(mask: np.ndarray, patch: int = PATCH, margin: int = 0) -> np.ndarray:
    """Patches [H/patch, W/patch] touched by the mask, dilated by `margin` patches (square neighbourhood)."""
    g = mask.reshape(mask.shape[0] // patch, patch, mask.shape[1] // patch, patch).any(axis=(1, 3))
    if margin:
        out = np.zeros_like(g)
        for i, j in zip(*np.nonzero(g)):
            out[max(0, i - margin) : i + margin + 1, max(0, j - margin) : j + margin + 1] = True
        g = out
    return g


def bbox_patches(mask: np.ndarray, patch: int = PATCH, margin: int = 1) -> np.ndarray:
    """Patches [H/patch, W/patch] inside the mask's bounding box grown by `margin` patches on each side."""
    ys, xs = np.nonzero(mask)
    gh, gw = mask.shape[0] // patch, mask.shape[1] // patch
    out = np.zeros((gh, gw), dtype=bool)
    out[
        max(0, ys.min() // patch - margin) : min(gh, ys.max() // patch + margin + 1),
        max(0, xs.min() // patch - margin) : min(gw, xs.max() // patch + margin + 1),
    ] = True
    return out
