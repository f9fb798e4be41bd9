"""Helpers of the pipeline's evaluation stage and its results tables (the stage itself runs in
tests/test_pipeline_e2e.py)."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset

from esarm.evaluation.metrics import motion_correlation
from esarm.evaluation.report import results_markdown
from esarm.evaluation.run import even_spread


def test_motion_correlation_ignores_the_resting_pose_but_not_the_timing():
    rng = np.random.default_rng(0)
    talking = rng.normal(size=(40, 52)).cumsum(0)
    smiling = talking + 0.7  # same movements around another mean pose
    assert motion_correlation([talking], [smiling], [0, 1, 2]) == pytest.approx(1.0)
    assert motion_correlation([talking], [2.0 * talking], [0, 1, 2]) == pytest.approx(1.0)
    assert motion_correlation([talking], [-talking], [0, 1, 2]) == pytest.approx(-1.0)
    other = rng.normal(size=(40, 52)).cumsum(0)
    assert abs(motion_correlation([talking], [other[::-1]], list(range(52)))) < 0.9
    # lengths differ: compared on the common part; a still sequence has no motion and is skipped
    assert motion_correlation([talking, np.zeros((5, 52))], [smiling[:30], talking[:5]], [0]) == pytest.approx(1.0)


def test_results_markdown_reports_the_lip_motion_correlation():
    results = {
        "split": "test", "num_clips": 2, "swap_lip_change_mae": 0.1, "swap_upper_change_mae": 0.2,
        "swap_lip_motion_correlation": 0.91, "swap_upper_motion_correlation": 0.42,
        "sta_lip_motion_correlation_ground_truth": 0.61,
    }  # fmt: skip
    markdown = results_markdown(results)
    assert "| motion correlation between the two (own mean pose removed) | 0.910 | 0.420 |" in markdown
    assert "correlates with the ground truth's at 0.610" in markdown


def test_even_spread_covers_the_whole_split():
    rows = list(range(10))
    assert even_spread(rows, None) == rows and even_spread(rows, 20) == rows
    split = Dataset.from_dict({"index": rows})
    assert even_spread(split, 4)["index"] == [0, 3, 6, 9]
    assert even_spread(split, 1)["index"] == [0]
