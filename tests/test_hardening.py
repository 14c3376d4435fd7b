"""Hostile or broken models: each ends as one clear error or warning, nothing runs that should not.

Folders are built in tmp_path from tiny configs (nothing downloads): missing folder or config,
pickle-only weights (refused by default; with the opt-in, a pickle that tries to run code is
still refused by torch.load(weights_only=True)), a config whose auto_map needs remote code
(refused without opt-in, the risk stated, the code never imported), a model with no capturable
attention, and NaN/inf weights (captured, reported as warnings, statistics still computed).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import analysis
from app.inputs import nonfinite_warnings
from hooks import CaptureError, LoadError, capture_attention, load_model
from tests.tiny_models import save_tiny, tiny_bert, tiny_tokenizer


@pytest.fixture(scope="module")
def saved_bert(tmp_path_factory) -> Path:
    return save_tiny(tiny_bert(), tiny_tokenizer(), tmp_path_factory.mktemp("bert"))


def _copy_without_weights(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        if f.suffix != ".safetensors":
            (dst / f.name).write_bytes(f.read_bytes())
    return dst


class _RunsCode:
    """Unpickling this calls Path.touch(marker): stands in for any code a pickle can run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


# ------------------------------------------------------------------------------------ loading


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(LoadError, match="not a model folder"):
        load_model(str(tmp_path / "does-not-exist"))
    with pytest.raises(LoadError, match="could not find a model 'no-such-org/no-such-model' in the local cache"):
        load_model("no-such-org/no-such-model", local_files_only=True)


def test_folder_without_config_or_weights(tmp_path, saved_bert):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoadError, match="has no config.json"):
        load_model(str(tmp_path / "empty"))
    bad = tmp_path / "badjson"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(LoadError, match="not valid JSON"):
        load_model(str(bad))
    no_weights = _copy_without_weights(saved_bert, tmp_path / "noweights")
    with pytest.raises(LoadError, match="has no weights"):
        load_model(str(no_weights))


def test_pickle_only_weights_refused_by_default_then_weights_only(tmp_path, saved_bert):
    folder = _copy_without_weights(saved_bert, tmp_path / "pickled")
    state = load_model(str(saved_bert)).model.state_dict()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(LoadError, match=r"only pickle weights \(pytorch_model.bin\).*can run code.*allow_pickle=True"):
        load_model(str(folder))
    loaded = load_model(str(folder), allow_pickle=True).model.state_dict()  # plain tensors: accepted
    assert all(torch.equal(loaded[k], v) for k, v in state.items())

    marker = tmp_path / "code-ran"
    torch.save({**state, "payload": _RunsCode(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(LoadError, match=r"objects other than tensors.*weights_only=True"):
        load_model(str(folder), allow_pickle=True)
    assert not marker.exists(), "a pickle payload ran during loading"


def test_remote_code_refused_without_opt_in(tmp_path, saved_bert):
    folder = _copy_without_weights(saved_bert, tmp_path / "remote")
    (folder / "model.safetensors").write_bytes((saved_bert / "model.safetensors").read_bytes())
    marker = tmp_path / "code-ran"
    (folder / "modeling_evil.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\n")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoModel": "modeling_evil.EvilModel", "AutoConfig": "modeling_evil.EvilConfig"}
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(LoadError) as err:
        load_model(str(folder))
    msg = str(err.value)
    assert "trust_remote_code" in msg and "executing someone else's code" in msg and "trust_remote_code=True" in msg
    assert not marker.exists(), "remote code was imported without opt-in"


def test_model_without_capturable_attention():
    model = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 8))
    with pytest.raises(CaptureError, match="Sequential has no attention module .* Try"):
        with capture_attention(model):
            model(torch.arange(4))


# --------------------------------------------------------------------------------- NaN / inf


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_weights_are_reported_not_crashed(bad):
    model, tok = tiny_bert(), tiny_tokenizer()
    with torch.no_grad():
        model.bert.encoder.layer[1].attention.self.query.weight[0, 0] = bad
    inputs = dict(tok("the cat sat on the mat", return_tensors="pt"))
    with torch.no_grad(), capture_attention(model) as cap:
        model(**inputs)
    maps = [m.weights for m in cap.maps]  # [1, 4, 8, 8] per layer
    assert torch.isfinite(maps[0]).all() and not torch.isfinite(maps[1]).all()

    attention_notes = nonfinite_warnings({m.name: m.weights for m in cap.maps}, what="attention")
    assert len(attention_notes) == 1
    assert attention_notes[0].startswith("Attention 'bert.encoder.layer.1.attention.self' hold non-finite values")
    weight_notes = nonfinite_warnings(model.named_parameters(), what="weights")
    kind = "NaN" if bad != bad else "inf"
    assert weight_notes == [
        "Weights 'bert.encoder.layer.1.attention.self.query.weight' hold non-finite values "
        f"(1 {kind} of 1,024): statistics and figures computed from them are undefined."
    ]
    # The statistics shown beside the figures still return (NaN where undefined) instead of raising.
    assert analysis.head_entropy(maps[0]).isfinite().all()
    assert analysis.head_entropy(maps[1]).shape == (1, 4)
    assert analysis.attention_rollout(maps).shape == (1, 8, 8)
    assert analysis.layer_consistency(maps).shape == (1, 2, 2)
    assert analysis.head_patterns(maps[1]) is not None
    assert analysis.mask_checks(maps[1], causal=False) is not None
