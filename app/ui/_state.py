"""Caches of the dashboard: one loaded model shared by every session, captures per session.

- `cached_bundle(name, trust_remote_code)`: `st.cache_resource`, so every browser session and
  thread shares the loaded model (captures on it are thread-safe in `hooks`).
- `session_run(key, compute)`: the captured `pipeline.Run` of each input is kept in the
  session's state (last `MAX_RUNS` inputs), so changing layer, head or view never reruns the model.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable

import streamlit as st

from app import pipeline

MAX_RUNS = 6
_RUNS_KEY = "_attnscope_runs"


@st.cache_resource(max_entries=3, show_spinner=False)
def cached_bundle(name: str, trust_remote_code: bool = False):
    """The model bundle for `name`, loaded once per server (shared by all sessions)."""
    return pipeline.load_bundle(name, trust_remote_code=trust_remote_code)


def session_peek(key: tuple) -> Any:
    """The value cached under `key` in this session, or None (nothing is computed)."""
    return st.session_state.get(_RUNS_KEY, {}).get(key)


def keep_valid(key: str, options, default) -> None:
    """Reset widget state `key` to `default` when its value is no longer one of `options` (the
    options of a widget change with the model or input; a stale value would be an error)."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = default


def session_run(key: tuple, compute: Callable[[], Any]) -> Any:
    """The value cached under `key` in this session (LRU of `MAX_RUNS`), computed on a miss."""
    runs: OrderedDict = st.session_state.setdefault(_RUNS_KEY, OrderedDict())
    if key in runs:
        runs.move_to_end(key)
        return runs[key]
    value = compute()
    runs[key] = value
    while len(runs) > MAX_RUNS:
        runs.popitem(last=False)
    return value
