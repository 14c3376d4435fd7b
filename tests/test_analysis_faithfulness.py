"""analysis.faithfulness_check with synthetic score functions whose truth is known."""
from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import spearmanr

from analysis import INPUT_X_GRADIENT, faithfulness_check, spearman

N = 12


def only_position_3(keep: torch.Tensor) -> torch.Tensor:
    """Target probability 0.9 when position 3 is kept, 0.2 when it is occluded; nothing else matters."""
    return torch.where(keep[:, 3], 0.9, 0.2)


def _pointing_at(pos: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    imp = torch.rand(N, generator=g) * 0.1
    imp[pos] = 1.0
    return imp


def test_single_position_truth_verdicts():
    calls = []
    good_imp, bad_imp = _pointing_at(3, 0), _pointing_at(8, 1)
    report = faithfulness_check(
        n_positions=N,
        score_fn=only_position_3,
        attention_importance={"rollout": good_imp, "raw attention": bad_imp},
        batch_size=8,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert report.base_score == pytest.approx(0.9)
    assert torch.equal(good_imp, _pointing_at(3, 0)) and torch.equal(bad_imp, _pointing_at(8, 1))  # untouched
    expected_occ = torch.zeros(N)
    expected_occ[3] = 0.7
    torch.testing.assert_close(report.occlusion, expected_occ)
    good, bad = report.methods["rollout"], report.methods["raw attention"]
    assert good.strength == "strong" and good.top_k_overlap == 1.0
    assert bad.strength in ("none", "opposite") and bad.top_k_overlap == 0.0
    assert report.primary == "rollout" and report.verdict == good.sentence
    assert good.sentence.startswith("On this input, rollout agrees strongly with occlusion (ρ = ")
    assert "do not read it as importance" in bad.sentence
    # deleting the true position first drops the score at once: AOPC equals the occlusion-order reference
    assert good.deletion_curve[:2].tolist() == pytest.approx([0.9, 0.2])
    assert good.aopc == pytest.approx(report.occlusion_aopc) and good.aopc > bad.aopc
    # progress: once per batch, counting up to the announced total
    assert [d for d, _ in calls] == list(range(1, len(calls) + 1)) and all(t == len(calls) for _, t in calls)
    assert report.n_evaluations == 1 + N + 4 * N
    assert len(calls) == math.ceil((1 + N) / 8) + math.ceil(4 * N / 8)


def test_graded_truth_rho_strengths_and_input_x_gradient():
    weights = torch.linspace(2.0, 0.1, N)  # position j contributes weights[j] to the logit

    def score_fn(keep):
        return torch.sigmoid((keep.float() * weights).sum(-1) - weights.sum() / 2)

    g = torch.Generator().manual_seed(3)
    report = faithfulness_check(
        n_positions=N,
        score_fn=score_fn,
        attention_importance={"same": weights.clone(), "reversed": -weights, "noise": torch.rand(N, generator=g)},
        gradient_importance=weights * 0.5,
        primary="reversed",
    )
    assert report.methods["same"].spearman == pytest.approx(1.0)
    assert report.methods["same"].strength == "strong"
    assert report.methods["reversed"].spearman == pytest.approx(-1.0)
    assert report.methods["reversed"].strength == "opposite"
    assert "ranks positions against occlusion" in report.verdict
    assert report.methods[INPUT_X_GRADIENT].strength == "strong"
    assert report.methods["same"].aopc > report.random_aopc > report.methods["reversed"].aopc
    noise = report.methods["noise"]
    assert noise.spearman == pytest.approx(spearmanr(torch.rand(N, generator=torch.Generator().manual_seed(3)), report.occlusion).statistic)


def test_additive_score_aopc_by_hand():
    contrib = torch.tensor([0.1, 0.4, 0.2, 0.3])

    def score_fn(keep):
        return (keep.float() * contrib).sum(-1)

    report = faithfulness_check(
        n_positions=4, score_fn=score_fn, attention_importance={"a": torch.tensor([0.0, 3.0, 1.0, 2.0])}, top_k=2
    )
    m = report.methods["a"]
    # delete 1, then 3, then 2, then 0: scores 1.0, 0.6, 0.3, 0.1, 0.0
    assert m.deletion_curve.tolist() == pytest.approx([1.0, 0.6, 0.3, 0.1, 0.0])
    assert m.aopc == pytest.approx((0 + 0.4 + 0.7 + 0.9 + 1.0) / 5)
    assert m.spearman == pytest.approx(1.0) and m.top_k_overlap == 1.0


def test_removable_positions_are_never_occluded():
    seen = []

    def score_fn(keep):
        seen.append(keep.clone())
        return only_position_3(keep)

    removable = torch.ones(N, dtype=torch.bool)
    removable[0] = False
    report = faithfulness_check(
        n_positions=N, score_fn=score_fn, attention_importance={"x": _pointing_at(0, 2)}, removable=removable
    )
    assert all(k[:, 0].all() for k in seen)
    assert math.isnan(report.occlusion[0].item())
    assert report.n_evaluations == sum(k.shape[0] for k in seen) == 1 + (N - 1) + 3 * (N - 1)


def test_insensitive_model_is_undetermined():
    report = faithfulness_check(
        n_positions=6, score_fn=lambda keep: torch.full((keep.shape[0],), 0.5), attention_importance={"r": torch.rand(6)}
    )
    assert report.methods["r"].strength == "undetermined"
    assert "neither confirm nor refute" in report.verdict


def test_bad_arguments_get_clear_messages():
    imp = {"r": torch.rand(N)}
    with pytest.raises(ValueError, match="one score per keep-mask row"):
        faithfulness_check(n_positions=N, score_fn=lambda keep: torch.zeros(3), attention_importance=imp)
    with pytest.raises(ValueError, match="NaN"):
        faithfulness_check(n_positions=N, score_fn=lambda k: torch.full((k.shape[0],), float("nan")), attention_importance=imp)
    with pytest.raises(ValueError, match=r"shape \[12\]"):
        faithfulness_check(n_positions=N, score_fn=only_position_3, attention_importance={"r": torch.rand(5)})
    with pytest.raises(ValueError, match="primary"):
        faithfulness_check(n_positions=N, score_fn=only_position_3, attention_importance=imp, primary="nope")
    with pytest.raises(ValueError, match="top_k"):
        faithfulness_check(n_positions=N, score_fn=only_position_3, attention_importance=imp, top_k=0)
    with pytest.raises(ValueError, match="reserved"):
        faithfulness_check(
            n_positions=N, score_fn=only_position_3, attention_importance={INPUT_X_GRADIENT: torch.rand(N)},
            gradient_importance=torch.rand(N),
        )


def test_spearman_matches_scipy_with_ties():
    g = torch.Generator().manual_seed(5)
    for _ in range(5):
        a = torch.randint(0, 4, (15,), generator=g).float()
        b = torch.randn(15, generator=g)
        assert spearman(a, b) == pytest.approx(spearmanr(a.numpy(), b.numpy()).statistic, abs=1e-9)
    assert math.isnan(spearman(torch.ones(4), torch.arange(4.0)))
