"""Prepared-figure dataclasses: the small, renderer-independent data each view is drawn from.

Every `prepare_*` function returns one of these; `to_plotly` and `to_matplotlib` draw any of them.
Arrays are numpy, labels are plain (unescaped) strings; renderers escape for their own markup.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

CAVEAT = "Attention weights show where a head looks, not what matters for the prediction."
"""Default one-line caption every exported figure carries."""

Scale = Literal["linear", "log"]


@dataclass(frozen=True)
class MatrixData:
    """A heatmap: attention matrix, or an analysis matrix (layer x head, layer x layer, ...).

    values: [rows, cols] float (NaN = empty cell). Row i is drawn at integer position i, labelled
    `row_labels[i]`, so repeated labels stay separate rows. `row_index[i]` is the original
    position (token index, or first index of a pooled block) of row i; likewise columns.
    hover: a format with `{row}`, `{col}`, `{value}` (value formatted by the renderer),
    e.g. "{row} → {col}: {value}".
    """

    values: np.ndarray
    row_labels: tuple[str, ...]
    col_labels: tuple[str, ...]
    title: str
    caption: str = CAVEAT
    x_title: str = "key"
    y_title: str = "query"
    value_name: str = "weight"
    hover: str = "{row} → {col}: {value}"  # may also use {text} (the cell text)
    scale: Scale = "linear"
    colorscale: str = "viridis"
    zmin: float | None = None
    zmax: float | None = None
    cell_text: np.ndarray | None = None  # [rows, cols] str shown in each cell (e.g. pattern labels)
    row_index: np.ndarray | None = None  # [rows] int original positions
    col_index: np.ndarray | None = None  # [cols] int original positions
    note: str = ""  # e.g. "downsampled 2048x2048 -> 512x512 by block mean"
    log_floor: float = 1e-6  # values below are drawn at this floor on a log scale

    def __post_init__(self) -> None:
        if self.scale not in ("linear", "log"):
            raise ValueError(f"scale must be 'linear' or 'log', got {self.scale!r}")
        if self.values.ndim != 2:
            raise ValueError(f"matrix values must be 2-D [rows, cols], got shape {self.values.shape}")
        rows, cols = self.values.shape
        if len(self.row_labels) != rows or len(self.col_labels) != cols:
            raise ValueError(
                f"{len(self.row_labels)} row / {len(self.col_labels)} column labels for a "
                f"{rows}x{cols} matrix"
            )


@dataclass(frozen=True)
class GridData:
    """Model view: a layers x heads grid of small maps, packed into one matrix with NaN gaps.

    values: [L*(cr+gap)-gap, H*(cc+gap)-gap] for cells of cr x cc = `cell`; the map of
    (layer i, head j) sits at rows i*(cr+gap) ... +cr, columns j*(cc+gap) ... +cc.
    `query_labels` [cr] / `key_labels` [cc] label the rows / columns inside every cell.
    """

    values: np.ndarray
    layer_labels: tuple[str, ...]
    head_labels: tuple[str, ...]
    query_labels: tuple[str, ...]
    key_labels: tuple[str, ...]
    cell: tuple[int, int]
    title: str
    caption: str = CAVEAT
    query_index: np.ndarray | None = None  # [cr] original positions (first of each pooled block)
    key_index: np.ndarray | None = None  # [cc]
    gap: int = 1
    scale: Scale = "linear"
    colorscale: str = "viridis"
    note: str = ""
    log_floor: float = 1e-6

    def cell_slice(self, layer: int, head: int) -> tuple[slice, slice]:
        """Rows and columns of `values` holding the map of (layer index, head index)."""
        cr, cc = self.cell
        r0, c0 = layer * (cr + self.gap), head * (cc + self.gap)
        return slice(r0, r0 + cr), slice(c0, c0 + cc)


@dataclass(frozen=True)
class TokenData:
    """One query's attention over a sequence: coloured text and bars.

    weights: [n] float over `tokens` (n labels); `query` is the attending position (or None
    when the query is not in `tokens`, e.g. a generated word over image patches);
    `highlight` [n] bool marks tokens drawn differently (e.g. generated tokens).
    """

    weights: np.ndarray
    tokens: tuple[str, ...]
    query: int | None
    title: str
    caption: str = CAVEAT
    value_name: str = "weight"
    highlight: np.ndarray | None = None
    colorscale: str = "viridis"
    note: str = ""


@dataclass(frozen=True)
class ImageData:
    """Patch heatmap over an image.

    image: [H, W, 3] uint8; heat: [h, w] float at patch resolution (normalised to [0, 1] by
    `prepare_image` unless told not to); mask: optional [H, W] bool ground truth, drawn as a contour.
    """

    image: np.ndarray
    heat: np.ndarray
    title: str
    caption: str = CAVEAT
    opacity: float = 0.5
    mask: np.ndarray | None = None
    colorscale: str = "inferno"
    value_name: str = "attention"
    note: str = ""


@dataclass(frozen=True)
class BarsData:
    """Grouped bars with optional error bars: series name -> values [n] (and spreads [n])."""

    categories: tuple[str, ...]
    series: dict[str, np.ndarray]
    title: str
    caption: str = CAVEAT
    errors: dict[str, np.ndarray] = field(default_factory=dict)
    x_title: str = ""
    y_title: str = ""
    note: str = ""


@dataclass(frozen=True)
class CurvesData:
    """Line plot: x [n] shared by every series name -> y [n] (e.g. faithfulness deletion curves)."""

    x: np.ndarray
    series: dict[str, np.ndarray]
    title: str
    caption: str = CAVEAT
    x_title: str = ""
    y_title: str = ""
    note: str = ""


Prepared = MatrixData | GridData | TokenData | ImageData | BarsData | CurvesData
