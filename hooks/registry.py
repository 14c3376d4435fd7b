"""Built-in demo models: names -> folders under sample_inputs/models (filled in by the demo-models work)."""
from __future__ import annotations
