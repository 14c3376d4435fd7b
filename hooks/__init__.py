"""attnscope capture engine: exact attention weights from Hugging Face and PyTorch models.

    from hooks import capture_attention
    with capture_attention(model) as cap:
        model(**inputs)
    cap.maps[i].weights   # [batch, heads, q, k]
"""
from __future__ import annotations

from ._engine import Capture, capture_attention
from ._types import AttentionMap, CaptureError, Site

__all__ = ["AttentionMap", "Capture", "CaptureError", "Site", "capture_attention"]
