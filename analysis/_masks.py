"""Checks that attention respects its masks: no mass on future keys (causal models) and none on
padding keys (padded batches)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor

from ._common import as_float, build_masks, check_attention, check_broadcast
from ._rows import row_statistics

DEFAULT_TOLERANCE = 1e-4
"""Mass above this on a forbidden key counts as a leak (float16 softmax rounding stays below)."""


@dataclass(frozen=True)
class Leak:
    """One head whose attention reaches forbidden keys: ``kind`` "future" or "padding", ``index``
    into the ``[..., heads]`` result, ``mass`` the largest forbidden mass of any of its rows."""

    kind: str
    index: tuple[int, ...]
    mass: float


@dataclass(frozen=True)
class MaskCheck:
    """Result of :func:`mask_checks`; tensors are ``[..., heads]`` (None when not applicable)."""

    future_mass: Tensor | None
    padding_mass: Tensor | None
    leaks: list[Leak]
    tolerance: float

    @property
    def ok(self) -> bool:
        """True when no head leaks above the tolerance."""
        return not self.leaks

    @property
    def message(self) -> str:
        """One line for the app: all clear, or how many heads leak and the worst mass."""
        if not self.leaks:
            checked = [n for n, t in (("future", self.future_mass), ("padding", self.padding_mass)) if t is not None]
            what = " and ".join(f"{n} keys" for n in checked) or "nothing (no causal flag and no key mask)"
            return f"Mask check passed: no head puts more than {self.tolerance:g} of its attention on {what}."
        parts = []
        for kind in ("future", "padding"):
            ls = [x for x in self.leaks if x.kind == kind]
            if ls:
                worst = max(ls, key=lambda x: x.mass)
                parts.append(f"{len(ls)} head(s) attend to {kind} keys (worst {worst.mass:.3g} at index {worst.index})")
        return "Mask leak: " + "; ".join(parts) + "."


def _max_over_rows(x: Tensor, rows: Tensor | None) -> Tensor:
    """Max of ``x [..., q]`` over valid rows; 0 when a head has none."""
    if rows is not None:
        x = x.masked_fill(~rows.expand_as(x), 0.0)
    return x.amax(dim=-1)


def _leaks(kind: str, mass: Tensor, tolerance: float) -> list[Leak]:
    return [Leak(kind, tuple(int(i) for i in idx), float(mass[tuple(idx)])) for idx in (mass > tolerance).nonzero()]


def _check_args(causal: object, tolerance: float) -> None:
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be True or False, got {causal!r}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")


def mask_checks_from_rows(
    rows: Mapping[str, Tensor],
    *,
    k: int,
    causal: bool,
    key_mask: Tensor | None = None,
    query_mask: Tensor | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> MaskCheck:
    """:func:`mask_checks` from per-row masses ``[..., heads, q]`` (see :func:`row_statistics`):
    ``rows["future"]`` (needed when ``causal``) and ``rows["padding"]`` (needed with ``key_mask``)."""
    _check_args(causal, tolerance)
    for name, needed in (("future", causal), ("padding", key_mask is not None)):
        if needed and name not in rows:
            raise ValueError(f"rows lacks {name!r}: compute it with row_statistics(..., stats=[{name!r}, ...])")
    some = next(iter(rows.values()), None)
    if some is None:
        raise ValueError("rows is empty: nothing to check")
    q = some.shape[-1]
    masks = build_masks(q, k, key_mask=key_mask, query_mask=query_mask, device=some.device)
    check_broadcast((*some.shape, k), masks, "rows")
    future = padding = None
    leaks: list[Leak] = []
    if causal:
        future = _max_over_rows(as_float(rows["future"], "rows['future']"), masks.rows)
        leaks += _leaks("future", future, tolerance)
    if key_mask is not None:
        padding = _max_over_rows(as_float(rows["padding"], "rows['padding']"), masks.rows)
        leaks += _leaks("padding", padding, tolerance)
    return MaskCheck(future_mass=future, padding_mass=padding, leaks=leaks, tolerance=float(tolerance))


def mask_checks(
    weights: Tensor,
    *,
    causal: bool,
    key_mask: Tensor | None = None,
    query_mask: Tensor | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> MaskCheck:
    """Attention mass on keys a query must not see, per head.

    ``weights [..., heads, q, k]`` -> :class:`MaskCheck` with ``[..., heads]`` tensors:
    ``future_mass = max_i sum_{j > i + k - q} a_ij`` (only when ``causal``; must be 0) and
    ``padding_mass = max_i sum_{j: key_mask[j] = False} a_ij`` over real query rows (only with
    ``key_mask [batch, k]``). Every head above ``tolerance`` is listed in ``leaks``.
    """
    _check_args(causal, tolerance)
    w = check_attention(weights)
    stats = (["future"] if causal else []) + (["padding"] if key_mask is not None else [])
    if not stats:  # nothing is forbidden: no causal flag and no padding
        return MaskCheck(future_mass=None, padding_mass=None, leaks=[], tolerance=float(tolerance))
    rows = row_statistics(w, stats=stats, key_mask=key_mask)
    return mask_checks_from_rows(
        rows, k=w.shape[-1], causal=causal, key_mask=key_mask, query_mask=query_mask, tolerance=tolerance
    )
