"""Concurrency and faults: one shared model, many threads, and a forward that raises halfway.

The app caches one model for every browser session, so captures run concurrently on the same
module tree. Checked on a tiny Hugging Face BERT (attention-interface path) and a tiny
nn.TransformerEncoder (nn.MultiheadAttention path):

* 8 threads x 25 captures, each thread with its own input: every capture's maps equal that
  input's single-threaded reference (no record from another thread mixed in), outputs equal the
  reference, all threads finish within a timeout (no deadlock), and afterwards the model is
  exactly as before (no hook left, attention implementation and fast-path switch restored).
* A forward that raises inside a capture leaves the model exactly as before, and the next
  capture works.
"""
from __future__ import annotations

import threading
import time

import pytest
import torch
from torch import nn

from hooks import capture_attention
from tests.tiny_models import WORDS, tiny_bert, tiny_tokenizer

THREADS, CAPTURES, TIMEOUT_S = 8, 25, 60.0


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    """9 Python threads on 2 cores: torch's own intra-op threads on top oversubscribe the machine
    (measured here: ~100 ms per tiny forward instead of ~6 ms). Restored after each test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------ models, inputs


class TorchEncoder(nn.Module):
    """Embedding + nn.TransformerEncoder (2 layers, 4 heads, d 32) + mean-pooled head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(99, 32)
        layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=37, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(32, 3)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(self.embed(input_ids))  # [batch, seq, 32]
        return self.head(hidden.mean(dim=1))  # [batch, 3]


def _texts() -> list[str]:
    """THREADS different sentences of different lengths (so a mixed-in map cannot match)."""
    return [" ".join(WORDS[3 * i : 3 * i + 4 + i]) for i in range(THREADS)]


def _hf_case():
    model, tok = tiny_bert(), tiny_tokenizer()
    inputs = [dict(tok(t, return_tensors="pt")) for t in _texts()]
    return model, inputs, lambda m, x: m(**x).logits


def _torch_case():
    model = TorchEncoder().eval()
    inputs = [{"input_ids": torch.arange(5 + i).unsqueeze(0) * (i + 1) % 99} for i in range(THREADS)]  # [1, 5+i]
    return model, inputs, lambda m, x: m(**x)


CASES = {"hf-bert": _hf_case, "torch-encoder": _torch_case}


# ------------------------------------------------------------------------------ model state


def _hook_dicts(mod: nn.Module) -> dict[str, tuple]:
    return {k: tuple(v) for k, v in vars(mod).items() if "hook" in k and isinstance(v, dict)}


def model_state(model: nn.Module) -> dict:
    """Everything a capture may touch: hooks on every module, per-instance overrides, attention
    implementation of every config, training flags, the global MHA fast-path switch, global hooks."""
    from torch.nn.modules import module as nn_module

    configs = {}
    for name, mod in model.named_modules():
        cfg = getattr(mod, "config", None)
        if cfg is not None:
            configs[name] = (
                cfg.__dict__.get("_attn_implementation_internal"),
                getattr(cfg, "_attn_implementation", None),
            )
    return {
        "hooks": {name: _hook_dicts(mod) for name, mod in model.named_modules()},
        "instance_attrs": {name: sorted(k for k in vars(mod) if not k.startswith("_")) for name, mod in model.named_modules()},
        "forward_overrides": [name for name, mod in model.named_modules() if "forward" in vars(mod)],
        "training": {name: mod.training for name, mod in model.named_modules()},
        "configs": configs,
        "fastpath": torch.backends.mha.get_fastpath_enabled(),
        "global_hooks": {
            k: len(v) for k, v in vars(nn_module).items() if k.startswith("_global") and isinstance(v, dict)
        },
    }


def assert_same_parameters(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), f"{key} changed"


def reference(model, inputs, run):
    """Single-threaded reference: (output, [maps' weights]) per input."""
    refs = []
    with torch.no_grad():
        for x in inputs:
            with capture_attention(model) as cap:
                out = run(model, x)
            refs.append((out, [(m.name, m.weights) for m in cap.maps]))
    return refs


def _run_in_threads(targets) -> None:
    """Start one daemon thread per callable, join all; fail if any is still running after TIMEOUT_S."""
    threads = [threading.Thread(target=fn, daemon=True) for fn in targets]
    for t in threads:
        t.start()
    deadline = time.monotonic() + TIMEOUT_S  # one timeout for all, not one per thread
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not [t for t in threads if t.is_alive()], f"threads still running after {TIMEOUT_S}s: deadlock?"


# ------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("case", sorted(CASES))
def test_threads_share_one_model_without_mixing_records(case):
    model, inputs, run = CASES[case]()
    before = model_state(model)
    params = {k: v.clone() for k, v in model.state_dict().items()}
    refs = reference(model, inputs, run)
    assert all(len(maps) == 2 for _, maps in refs)  # 2 layers captured per input
    assert len({maps[0][1].shape for _, maps in refs}) == THREADS  # every input has its own shape

    errors: list[str] = []
    done = [0] * (THREADS + 1)
    barrier = threading.Barrier(THREADS + 1)

    def capturing(i: int) -> None:
        try:
            barrier.wait(timeout=TIMEOUT_S)
            ref_out, ref_maps = refs[i]
            for _ in range(CAPTURES):
                with torch.no_grad(), capture_attention(model) as cap:
                    out = run(model, inputs[i])
                got = [(m.name, m.weights) for m in cap.maps]
                if [n for n, _ in got] != [n for n, _ in ref_maps]:
                    errors.append(f"thread {i}: modules {[n for n, _ in got]}")
                    return
                for (name, w), (_, ref) in zip(got, ref_maps):
                    if w.shape != ref.shape or not torch.allclose(w, ref, atol=1e-6):
                        errors.append(f"thread {i}: {name} differs from its own input's reference")
                        return
                if not torch.allclose(out, ref_out, atol=1e-5):
                    errors.append(f"thread {i}: output differs")
                    return
                done[i] += 1
        except Exception as err:  # noqa: BLE001 - reported below with the thread number
            errors.append(f"thread {i}: {type(err).__name__}: {err}")

    def plain(i: int) -> None:
        """A session that only runs the model while others capture: its output must not change."""
        try:
            barrier.wait(timeout=TIMEOUT_S)
            for _ in range(CAPTURES):
                with torch.no_grad():
                    out = run(model, inputs[0])
                if not torch.allclose(out, refs[0][0], atol=1e-5):
                    errors.append("plain thread: output changed while others captured")
                    return
                done[i] += 1
        except Exception as err:  # noqa: BLE001
            errors.append(f"plain thread: {type(err).__name__}: {err}")

    _run_in_threads([lambda i=i: capturing(i) for i in range(THREADS)] + [lambda: plain(THREADS)])
    assert errors == []
    assert done == [CAPTURES] * (THREADS + 1)
    assert model_state(model) == before
    assert_same_parameters(model, params)


class Boom(RuntimeError):
    pass


class Exploding(nn.Module):
    """Wraps a layer; when `armed`, raises instead of running it (a fault halfway through the forward)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.armed = False

    def forward(self, *args, **kwargs):
        if self.armed:
            raise Boom("injected failure after the first attention layer ran")
        return self.inner(*args, **kwargs)


@pytest.mark.parametrize("case", sorted(CASES))
def test_exception_inside_forward_leaves_model_as_before(case):
    model, inputs, run = CASES[case]()
    layers = model.bert.encoder.layer if case == "hf-bert" else model.encoder.layers
    layers[1] = Exploding(layers[1])  # part of the model from here on, before any snapshot
    before = model_state(model)
    params = {k: v.clone() for k, v in model.state_dict().items()}
    ref_out, ref_maps = reference(model, inputs[:1], run)[0]
    assert model_state(model) == before

    layers[1].armed = True
    with pytest.raises(Boom):
        with torch.no_grad(), capture_attention(model) as cap:
            run(model, inputs[0])
    layers[1].armed = False
    assert model_state(model) == before
    assert_same_parameters(model, params)

    with torch.no_grad(), capture_attention(model) as cap:  # the next capture works
        out = run(model, inputs[0])
    assert [m.name for m in cap.maps] == [n for n, _ in ref_maps]
    for m, (_, ref) in zip(cap.maps, ref_maps):
        assert torch.allclose(m.weights, ref, atol=1e-6)
    assert torch.allclose(out, ref_out, atol=1e-5)
    assert model_state(model) == before
    with torch.no_grad():  # and outside any capture the model still runs as before
        assert torch.allclose(run(model, inputs[0]), ref_out, atol=1e-5)


def test_pipeline_runs_from_threads_on_one_cached_bundle(tmp_path):
    """The dashboard's path: one cached bundle, `app.pipeline.capture_input` from several sessions."""
    from app import pipeline
    from tests.tiny_models import save_tiny

    bundle = pipeline.load_bundle(str(save_tiny(tiny_bert(), tiny_tokenizer(), tmp_path / "bert")))
    texts = _texts()[:4]
    refs = [pipeline.capture_input(bundle, text=t).section().stacked() for t in texts]  # [layers, heads, q, k]
    errors: list[str] = []
    barrier = threading.Barrier(len(texts))

    def session(i: int) -> None:
        try:
            barrier.wait(timeout=TIMEOUT_S)
            for _ in range(5):
                got = pipeline.capture_input(bundle, text=texts[i]).section().stacked()
                if got.shape != refs[i].shape or not torch.allclose(got, refs[i], atol=1e-6):
                    errors.append(f"session {i}: maps differ from its own input's reference")
                    return
        except Exception as err:  # noqa: BLE001
            errors.append(f"session {i}: {type(err).__name__}: {err}")

    _run_in_threads([lambda i=i: session(i) for i in range(len(texts))])
    assert errors == []
