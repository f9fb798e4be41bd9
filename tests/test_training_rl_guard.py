"""The RL guard's paired decision: the best check replaces the initial policy only when the paired bootstrap over
clips puts its improvement above 0; per-clip values of evaluate_policy; the guard's records."""

from __future__ import annotations

import math
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from esarm import ESARMSTAConfig
from esarm.blendshapes import region_indices
from esarm.evaluation.policy import (
    MOTION_FLOOR,
    clip_quality,
    evaluate_policy,
    paired_improvement,
    policy_improvement,
)
from esarm.modeling_sta import ESARMSTAForGeneration
from esarm.training.rl_trainer import HeldOutQualityCallback, PolicyInputCollator


class _State:
    global_step = 0


def _run_guard(policy, per_check_lve: list[np.ndarray], **options) -> tuple[HeldOutQualityCallback, list[dict]]:
    """Checks at steps 0, 1, ... with the given per-clip LVE (EVE 0); the policy's head moves between checks.
    Returns the guard and the weights the policy had at each check."""
    checks = iter(per_check_lve)

    def measure(model):
        lve = next(checks)
        return {"lve_mm": float(lve.mean()), "eve_mm": 0.0, "reward": 0.0}, {"lve_mm": lve, "eve_mm": np.zeros_like(lve)}

    guard = HeldOutQualityCallback(measure, every=1, **options)
    state, weights = _State(), []
    weights.append({k: v.clone() for k, v in policy.state_dict().items()})
    guard.on_train_begin(None, state, None, model=policy)
    for step in range(1, len(per_check_lve)):
        with torch.no_grad():
            policy.motion_head.weight.add_(0.1)
        weights.append({k: v.clone() for k, v in policy.state_dict().items()})
        state.global_step = step
        guard.on_step_end(None, state, None, model=policy)
    return guard, weights


@pytest.fixture
def policy():
    torch.manual_seed(0)
    return ESARMSTAForGeneration(ESARMSTAConfig.tiny())


def _clips_lve(seed: int = 0, num_clips: int = 64) -> np.ndarray:
    return 4.0 + np.random.default_rng(seed).gamma(4.0, 0.25, size=num_clips)  # per-clip LVE, mean ~5 mm


def test_a_clear_improvement_replaces_the_initial_policy(policy):
    initial = _clips_lve()
    noise = np.random.default_rng(1).normal(0.0, 0.1, size=len(initial))
    better = initial - 0.3 + noise  # every clip ~0.3 mm better
    guard, weights = _run_guard(policy, [initial, initial + 0.2, better])
    record, kept = guard.decide()
    assert record["guard_accepted"] == 1 and record["quality_best_step"] == 2 == record["guard_candidate_step"]
    assert record["guard_ci_low"] > 0.2 and record["guard_improvement"] == pytest.approx(0.3 - noise.mean())
    assert record["guard_confidence_level"] == pytest.approx(1 - 0.05 / 2)  # the best of 2 checks after the first
    assert record["guard_kept_improvement"] == record["guard_improvement"]
    assert all(torch.equal(kept[key], weights[2][key]) for key in kept)


def test_a_noisy_zero_mean_change_keeps_the_initial_weights(policy):
    initial = _clips_lve()
    noise = np.random.default_rng(2).normal(0.0, 0.5, size=len(initial))
    noise = noise - noise.mean() - 0.05  # 0.05 mm better on average: the best check by mean, within its noise
    guard, weights = _run_guard(policy, [initial, initial + noise, initial + 0.3])
    record, kept = guard.decide()
    assert record["guard_candidate_step"] == 1 and record["guard_accepted"] == 0 and record["quality_best_step"] == 0
    assert record["guard_improvement"] == pytest.approx(0.05)
    assert record["guard_ci_low"] < 0 < record["guard_ci_high"] and record["guard_p_value"] > 0.05
    std = float(np.std(noise, ddof=1))
    assert record["guard_per_clip_std"] == pytest.approx(std)
    assert record["guard_standard_error"] == pytest.approx(std / 8.0)  # 64 clips
    # ((z_{1 - 0.025 / 2} + z_{0.8}) * std / 0.05)^2 clips would detect a 0.05 mm change: hundreds
    assert record["guard_clips_needed"] == pytest.approx(((2.2414 + 0.8416) * std / 0.05) ** 2, rel=2e-3)
    assert record["guard_clips"] == 64 and record["guard_kept_improvement"] == 0.0
    assert all(torch.equal(kept[key], weights[0][key]) for key in kept)
    assert not torch.equal(policy.motion_head.weight, weights[0]["motion_head.weight"])
    # per check: the mean score, and the paired difference over the initial check with its standard error
    assert [h["step"] for h in guard.history] == [0, 1, 2]
    assert guard.history[1]["score"] == pytest.approx(initial.mean() - 0.05)
    assert guard.history[1]["difference"] == pytest.approx(0.05) and guard.history[2]["difference"] == pytest.approx(-0.3)
    assert guard.history[1]["standard_error"] == pytest.approx(std / 8.0)


def test_the_initial_policy_as_the_best_check_is_kept_without_a_test(policy):
    initial = _clips_lve()
    guard, weights = _run_guard(policy, [initial, initial + 0.1])
    record, kept = guard.decide()
    assert record["guard_accepted"] == 0 and record["guard_candidate_step"] == 0 and record["guard_improvement"] == 0
    assert all(torch.equal(kept[key], weights[0][key]) for key in kept)


def test_paired_improvement_corrects_for_the_number_of_checks():
    rng = np.random.default_rng(0)
    initial = rng.normal(5.0, 1.0, size=48)
    candidate = initial - 0.1 + rng.normal(0.0, 0.3, size=48)
    one = paired_improvement(initial, candidate, 0.95, 1)
    four = paired_improvement(initial, candidate, 0.95, 4)
    assert one["confidence_level"] == 0.95 and four["confidence_level"] == pytest.approx(0.9875)
    assert four["ci_low"] < one["ci_low"] < one["improvement"] < one["ci_high"] < four["ci_high"]
    assert four["clips_needed"] > one["clips_needed"]
    with pytest.raises(ValueError, match="num_comparisons must be a positive integer, got 0"):
        paired_improvement(initial, candidate, 0.95, 0)


def test_evaluate_policy_returns_per_clip_values_and_the_expressive_distance(policy, rig):
    policy.eval()
    collator = PolicyInputCollator(speakers=["spk1"], fps=float(policy.config.fps))
    rng = np.random.default_rng(0)
    rows = [{"audio": (0.1 * rng.standard_normal(16000)).astype(np.float32), "sampling_rate": 16000,
             "emotion": "happy", "intensity": 2, "speaker": "spk1"} for _ in range(3)]  # fmt: skip
    with torch.no_grad():
        generated = policy.generate(**collator(rows), emotion=None, do_sample=False)
    own = [generated.blendshapes[i, : int(n)].numpy() for i, n in enumerate(generated.frame_mask.sum(1))]
    eyes = region_indices("eyes")
    truths = []
    for animation in own:  # the policy's own animation with the eyes moving twice as much
        truth = animation.copy()
        truth[:, eyes] = animation[:, eyes].mean(0) + 2.0 * (animation[:, eyes] - animation[:, eyes].mean(0))
        truths.append(truth.tolist())
    dataset = datasets.Dataset.from_list([{**row, "blendshapes": truth} for row, truth in zip(rows, truths)])
    from test_training_rl import LowerHalfCodeReward  # the fixed reward model of the trainer's tests

    values, per_clip = evaluate_policy(policy, LowerHalfCodeReward(policy), dataset, collator, rig=rig, per_clip=True)
    assert set(per_clip) == {"reward", "blendshape_mae", "lve_mm", "eve_mm", "expressive_distance"}
    for key, clip_values in per_clip.items():
        assert clip_values.shape == (3,) and values[key] == pytest.approx(clip_values.mean()), key
    motion = [float(np.asarray(a)[:, eyes].std(0).sum()) for a in own]
    expected = [abs(math.log((m + MOTION_FLOOR) / (2 * m + MOTION_FLOOR))) for m in motion]
    np.testing.assert_allclose(per_clip["expressive_distance"], expected, rtol=1e-4)
    np.testing.assert_allclose(clip_quality(per_clip, "lve_eve"), per_clip["lve_mm"] + per_clip["eve_mm"])
    np.testing.assert_allclose(clip_quality(per_clip, "expressive"), expected, rtol=1e-4)


def test_policy_improvement_and_the_validation_to_test_gap_in_the_report(rig):
    from esarm.evaluation.report import guard_transfer_markdown, results_markdown

    rng = np.random.default_rng(0)
    eyes = region_indices("eyes")
    targets = [rng.uniform(0.0, 0.6, size=(40, 52)).astype(np.float32) for _ in range(6)]
    damped = []  # the eyes moving a third as much as the capture, every other region as the capture
    for target in targets:
        animation = target.copy()
        animation[:, eyes] = target[:, eyes].mean(0) + (target[:, eyes] - target[:, eyes].mean(0)) / 3.0
        damped.append(animation)
    improvement = policy_improvement(damped, targets, targets, rig)
    assert improvement["lve_eve_improvement"] > 0 and improvement["lve_eve_ci_low"] > 0  # the capture itself: 0 mm
    assert improvement["expressive_improvement"] == pytest.approx(math.log(3.0), rel=0.01)
    assert policy_improvement(damped, damped, targets, rig)["expressive_improvement"] == 0.0
    with pytest.raises(ValueError, match="same number"):
        policy_improvement(damped, targets[:3], targets, rig)

    rl = {"guard_metric": "lve_eve", "guard_candidate_step": 20, "guard_clips": 64.0, "guard_improvement": 0.11,
          "guard_ci_low": 0.02, "guard_ci_high": 0.2, "guard_accepted": 1, "guard_kept_improvement": 0.11}  # fmt: skip
    results = {"rl_test_lve_eve_improvement": -0.4, "rl_test_lve_eve_ci_low": -0.6, "rl_test_lve_eve_ci_high": -0.2}
    table = "\n".join(guard_transfer_markdown(results, rl))
    assert "update 20) with the STA model on 64 validation clips: improvement 0.110 [0.020, 0.200], accepted" in table
    assert "| improvement | 0.110 | -0.400 [-0.600, -0.200] | 0.510 |" in table
    assert "### RL guard: validation -> test" in results_markdown(results, {"rl": rl})
    assert guard_transfer_markdown(results, {}) == []  # no guard, no gap


def test_guard_cost_benchmark_times_a_check(tmp_path, repo_script):
    rng = np.random.default_rng(0)
    rows = [{"audio": (0.1 * rng.standard_normal(8000)).astype(np.float32), "sampling_rate": 16000,
             "emotion": "sad", "intensity": 3, "speaker": "spk9",
             "blendshapes": rng.random((15, 52)).astype(np.float32)} for _ in range(3)]  # fmt: skip
    datasets.DatasetDict({"validation": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "corpus"))
    config = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    seconds = repo_script("benchmarks/rl_guard_cost.py").guard_check_seconds(str(tmp_path / "corpus"), config, [2, 5])
    assert list(seconds) == [2, 3] and all(s > 0 for s in seconds.values())  # at most the split's 3 clips
