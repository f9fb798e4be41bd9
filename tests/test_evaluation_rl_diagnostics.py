"""Reward-model and RL diagnostics on hand numbers: per-source accuracy, rank correlation across a clip's rollouts,
the reward-hacking check, the expressiveness ratio and the per-region token diagnostics."""

from __future__ import annotations

import numpy as np
import pytest

from esarm.blendshapes import region_indices
from esarm.evaluation.rl_diagnostics import (
    expressiveness,
    group_names,
    motion_report,
    rank_correlation_by_clip,
    ranking_source_accuracy,
    reward_hacking_check,
    swap_group_tokens,
    token_change_rate,
)


def test_ranking_source_accuracy_counts_ties_as_half():
    metrics = ranking_source_accuracy(["a", "a", "a", "b"], [2.0, 1.0, 1.0, 0.0], [1.0, 1.0, 3.0, 1.0])
    assert metrics == {"accuracy_a": pytest.approx(0.5), "num_pairs_a": 3.0, "accuracy_b": 0.0, "num_pairs_b": 1.0}
    with pytest.raises(ValueError, match="same length"):
        ranking_source_accuracy(["a"], [1.0, 2.0], [0.0])


def test_rank_correlation_is_per_clip_and_skips_short_or_constant_clips():
    clip_ids = ["x"] * 4 + ["y"] * 4 + ["z"] * 2 + ["w"] * 3
    returns = [1, 2, 3, 4] + [4, 3, 2, 1] + [1, 2] + [5, 5, 5]
    quality = [10, 20, 30, 40] + [10, 20, 30, 40] + [1, 2] + [1, 2, 3]
    # x: rho 1, y: rho -1; z has too few rollouts, w a constant return
    assert rank_correlation_by_clip(clip_ids, returns, quality) == pytest.approx(0.0)
    assert rank_correlation_by_clip(clip_ids[:4], returns[:4], quality[:4]) == pytest.approx(1.0)
    assert np.isnan(rank_correlation_by_clip(["z", "z"], [1.0, 2.0], [1.0, 2.0]))


def test_reward_hacking_check_flags_a_rising_return_with_worse_lve():
    hacked = reward_hacking_check([0, 10, 20], [7.0, 7.2, 7.6], [4.5, 5.2, 5.3])
    assert hacked == {"hacking_spearman": pytest.approx(1.0), "hacking_fraction": 1.0, "hacking": 1.0}
    honest = reward_hacking_check([20, 0, 10], [7.6, 7.0, 7.2], [4.3, 4.5, 4.4])  # steps in any order
    assert honest["hacking"] == 0.0 and honest["hacking_spearman"] == pytest.approx(-1.0)
    assert reward_hacking_check([0], [1.0], [1.0]) == {}


def test_expressiveness_is_the_ratio_of_motion_per_region():
    rng = np.random.default_rng(0)
    target = rng.random((40, 52)).astype(np.float32)
    damped = target.copy()
    mouth = region_indices("mouth")
    damped[:, mouth] = 0.5 * target[:, mouth] + 0.25
    metrics = expressiveness([damped, target], [target, target])
    assert metrics["std_ratio_mouth"] == pytest.approx(0.75)
    assert metrics["std_ratio_eyes"] == pytest.approx(1.0) and metrics["std_ratio_brows"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same length"):
        expressiveness([target], [])


def test_motion_report_prefixes_the_ratios_and_adds_fdd_with_a_rig(rig_path):
    from esarm.evaluation.metrics import fdd
    from esarm.rig import resolve_rig

    rig = resolve_rig(str(rig_path))
    rng = np.random.default_rng(1)
    targets = [rng.random((30, 52)).astype(np.float32) * 0.5 for _ in range(2)]
    predictions = [t[:28] * 0.5 for t in targets]  # shorter: each pair is cut to the shorter length
    report = motion_report("rl", predictions, targets, rig)
    assert report["rl_std_ratio_mouth"] == pytest.approx(0.5, rel=0.05)
    assert report["rl_fdd_mm2"] == pytest.approx(fdd(predictions, [t[:28] for t in targets], rig))
    assert set(motion_report("sta", predictions, targets)) == {"sta_std_ratio_mouth", "sta_std_ratio_eyes",
                                                               "sta_std_ratio_brows"}  # fmt: skip


def test_token_change_rate_counts_changes_per_group_over_all_sequences():
    first = np.array([[0, 5], [0, 6], [1, 6]])  # group 0: one change in 2 steps; group 1: one change
    second = np.array([[2, 2], [2, 2]])  # no change in 1 step
    assert token_change_rate([first, second]).tolist() == pytest.approx([1 / 3, 1 / 3])
    assert token_change_rate([np.array([[3, 4]])]).tolist() == [0.0, 0.0], "one step: nothing to change"
    with pytest.raises(ValueError, match="at least one"):
        token_change_rate([])
    with pytest.raises(ValueError, match=r"\[T', G\] arrays, got shape \(3,\)"):
        token_change_rate([np.zeros(3)])


def test_swap_group_tokens_takes_one_group_over_the_common_steps():
    tokens = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    donor = np.array([[10, 11, 12], [13, 14, 15]])
    swapped = swap_group_tokens(tokens, donor, 1)
    assert swapped.tolist() == [[0, 11, 2], [3, 14, 5], [6, 7, 8]]
    assert tokens[0, 1] == 1, "the input is not modified"
    with pytest.raises(ValueError, match=r"group must be in \[0, 3\), got 3"):
        swap_group_tokens(tokens, donor, 3)
    with pytest.raises(ValueError, match="same G"):
        swap_group_tokens(tokens, donor[:, :2], 0)
    assert group_names(3) == ["mouth", "eyes", "brows"] and group_names(1) == ["group0"]
