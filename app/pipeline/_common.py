"""Shared by every pipeline module: the error type, progress callback, fusion literal, caveats."""
from __future__ import annotations

from typing import Callable, Literal


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
