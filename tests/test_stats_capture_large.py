"""Large models (issue 7): dtype and device choices at load time, and captures of a half-precision model.

Runs on CPU: the GPU / accelerate paths are checked where they exist and skipped otherwise.
"""
from __future__ import annotations

import importlib.util

import pytest
import torch

import analysis
from hooks import LoadError, capture_attention, load_model
from tests import tiny_models as tm

HAS_ACCELERATE = importlib.util.find_spec("accelerate") is not None


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tm.save_tiny(tm.tiny_gpt2(), tm.tiny_tokenizer(template=None), tmp_path_factory.mktemp("gpt2"))


def _ids():
    return torch.randint(7, tm.VOCAB, (1, 12), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("dtype", ["bfloat16", torch.float16])
def test_half_precision_model_captures_to_cpu_in_both_modes(folder, dtype):
    bundle = load_model(folder, dtype=dtype)
    want = dtype if isinstance(dtype, torch.dtype) else getattr(torch, dtype)
    assert next(bundle.model.parameters()).dtype == want
    with torch.no_grad(), capture_attention(bundle.model, dtype=torch.float16) as full:
        bundle.model(input_ids=_ids())
    with torch.no_grad(), capture_attention(bundle.model, mode="stats", head_mean_dtype=torch.bfloat16) as st:
        bundle.model(input_ids=_ids())
    assert all(m.weights.device.type == "cpu" and m.weights.dtype == torch.float16 for m in full.maps)
    for m, s in zip(full.maps, st.stats):
        assert s.path == "chunked" and s.head_mean.dtype == torch.bfloat16 and s.head_mean.device.type == "cpu"
        assert all(t.dtype == torch.float32 and t.device.type == "cpu" for t in s.rows.values())
        ref = analysis.head_entropy(m.weights.float(), causal=True)
        torch.testing.assert_close(s.head_entropy(causal=True), ref, atol=2e-2, rtol=0)


def test_device_auto_picks_the_gpu_only_when_there_is_one(folder):
    bundle = load_model(folder, device="auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert next(bundle.model.parameters()).device.type == expected


def test_device_and_device_map_together_are_refused(folder):
    with pytest.raises(LoadError, match="either device or device_map"):
        load_model(folder, device="cpu", device_map="auto")


@pytest.mark.skipif(HAS_ACCELERATE, reason="accelerate is installed here")
def test_device_map_without_accelerate_says_what_to_install(folder):
    with pytest.raises(LoadError, match=r"pip install 'attnscope\[large\]'"):
        load_model(folder, device_map="auto")


@pytest.mark.skipif(not HAS_ACCELERATE, reason="needs accelerate (pip install 'attnscope[large]')")
def test_device_map_auto_loads_and_captures(folder):
    bundle = load_model(folder, device_map="auto", dtype="bfloat16")
    with torch.no_grad(), capture_attention(bundle.model, mode="stats") as st:
        bundle.model(input_ids=_ids().to(next(bundle.model.parameters()).device))
    assert len(st.stats) == tm.LAYERS and st.stats[0].head_mean.device.type == "cpu"
