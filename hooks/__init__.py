"""attnscope capture engine: exact attention weights from Hugging Face and PyTorch models.

    from hooks import capture_attention, load_model
    bundle = load_model("path/or/hub-id")
    with capture_attention(bundle.model) as cap:
        bundle.model(**inputs)
    cap.maps[i].weights   # [batch, heads, q, k]
"""
from __future__ import annotations

from ._engine import Capture, capture_attention
from ._stats import AttentionStats, stats_rollout
from ._types import AttentionMap, CaptureError, Site
from .labels import PositionLabel, image_labels, position_labels
from .loading import LoadError, ModelBundle, load_model

__all__ = [
    "AttentionMap",
    "AttentionStats",
    "Capture",
    "CaptureError",
    "LoadError",
    "ModelBundle",
    "PositionLabel",
    "Site",
    "capture_attention",
    "image_labels",
    "load_model",
    "position_labels",
    "stats_rollout",
]
