"""Blink statistics, the realism classifier and the paired bootstrap on hand-made curves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from esarm.blendshapes import BLENDSHAPE_INDEX
from esarm.evaluation.realism import blink_report, blink_statistics, detect_blinks, format_table, realism_accuracy
from esarm.evaluation.significance import clips_needed, paired_bootstrap, paired_standard_deviation

FPS = 30.0


def _blink_shape() -> np.ndarray:
    """0 -> 1 in 4 frames (crosses 0.5 at frame 2), closed until frame 6, 1 -> 0 in 6 frames (0.5 at frame 9):
    7 frames above half closure."""
    up = np.linspace(0.0, 1.0, 5)  # frames 0..4
    hold = np.ones(2)  # frames 5, 6
    down = np.linspace(1.0, 0.0, 7)[1:]  # frames 7..12, 0.5 at frame 9
    return np.concatenate([up, hold, down])


def _with_blinks(num_frames: int, onsets) -> np.ndarray:
    clip = np.zeros((num_frames, 52), np.float32)
    shape = _blink_shape()
    for onset in onsets:
        for name in ("eyeBlinkLeft", "eyeBlinkRight"):
            clip[onset : onset + len(shape), BLENDSHAPE_INDEX[name]] = shape[: num_frames - onset]
    return clip


def test_detect_blinks_interpolates_the_crossings():
    curve = np.concatenate([np.zeros(10), _blink_shape(), np.zeros(5)])
    assert detect_blinks(curve) == [pytest.approx((12.0, 19.0))]
    assert detect_blinks(np.zeros(20)) == []


def test_a_known_blink_train_gives_its_rate_and_duration():
    # 60 s in four 15 s clips, a blink every 3 s: 20 per minute, each 7 frames = 233.3 ms above half closure
    clips = [_with_blinks(450, range(30, 450 - 20, 90)) for _ in range(4)]
    stats = blink_statistics(clips, FPS)
    assert stats["num_blinks"] == 20
    assert stats["blink_rate_per_min"] == pytest.approx(20.0)
    assert stats["blink_duration_ms"] == pytest.approx(7 / FPS * 1000)
    # a damped copy (lids never more than 40 % closed) has no blink; 3 of the 5 blinks per clip = 0.6 of the rate
    report = blink_report([c * 0.4 for c in clips], clips, FPS)
    assert report["blink_rate_per_min"] == 0 and math.isnan(report["blink_duration_ms"])
    sparse = [_with_blinks(450, range(30, 450 - 20, 180)) for _ in range(4)]
    assert blink_report(sparse, clips, FPS)["blink_rate_ratio"] == pytest.approx(3 / 5)


def _upper_face_clip(rng: np.random.Generator, frames: int, blink_rate: float, gaze: float) -> np.ndarray:
    """Smooth gaze noise (a moving average of white noise) on the eye-look channels, brow noise, Poisson blinks."""
    clip = np.zeros((frames, 52))
    kernel = np.ones(9) / 9
    for name in BLENDSHAPE_INDEX:
        if name.startswith(("eyeLook", "brow")):
            clip[:, BLENDSHAPE_INDEX[name]] = 0.2 + gaze * np.convolve(rng.normal(size=frames), kernel, "same")
    onsets = np.flatnonzero(rng.random(frames - 13) < blink_rate / FPS)
    return np.clip(clip + _with_blinks(frames, onsets), 0.0, 1.0)


def _corpus(seed: int, blink_rate: float, gaze: float, clips: int = 48, frames: int = 150) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [_upper_face_clip(rng, frames, blink_rate, gaze) for _ in range(clips)]


SPEAKERS = [f"speaker{i % 6}" for i in range(48)]


def test_realism_accuracy_is_chance_for_identical_distributions():
    result = realism_accuracy(_corpus(0, 0.3, 0.2), _corpus(1, 0.3, 0.2), SPEAKERS)
    # 48 clips x 5 windows x 2 classes = 480 windows. Under the null every held-out prediction is a coin flip, so
    # the accuracy's standard deviation is 0.5 / sqrt(480) = 0.023: four of them (0.091) bound it here.
    assert result["realism_windows"] == 480 and result["realism_folds"] == 5
    assert abs(result["realism_accuracy"] - 0.5) < 4 * 0.5 / math.sqrt(480)
    assert result["realism_p_value"] > 0.01


def test_realism_accuracy_tells_a_damped_face_without_blinks():
    result = realism_accuracy(_corpus(0, 0.3, 0.2), _corpus(1, 0.0, 0.06), SPEAKERS)
    assert result["realism_accuracy"] > 0.95
    assert result["realism_p_value"] < 1e-6


def test_realism_accuracy_rejects_bad_input():
    clips = _corpus(0, 0.3, 0.2, clips=4)
    with pytest.raises(ValueError, match="at least 2 distinct groups"):
        realism_accuracy(clips, clips, ["a"] * 4)
    with pytest.raises(ValueError, match="same length"):
        realism_accuracy(clips, clips[:3], ["a", "b"] * 2)
    with pytest.raises(ValueError, match="no clip is at least window=200 frames long"):
        realism_accuracy(clips, clips, ["a", "b"] * 2, window=200)


def test_format_table_names_each_decoding_and_the_capture():
    row = {"std_ratio_eyes": 0.34, "blink_rate_per_min": 2.0, "capture_blink_rate_per_min": 12.0,
           "capture_blink_duration_ms": 180.0, "blink_duration_ms": 150.0, "realism_accuracy": 0.9}  # fmt: skip
    text = format_table({"sta/greedy": row})
    assert "| sta/greedy | 0.34 | 2.0 | 150 | 0.900 |" in text
    assert "| capture | 1.00 | 12.0 | 180 | 0.500 |" in text


# ---- the paired bootstrap --------------------------------------------------------------------------------------


def test_paired_bootstrap_detects_a_known_shift():
    rng = np.random.default_rng(0)
    b = rng.normal(4.0, 1.0, size=200)  # per-clip LVE of one model; the other is 0.5 mm worse, per-clip noise 1 mm
    a = b + 0.5 + rng.normal(0.0, 1.0, size=200)
    difference, (low, high), p_value = paired_bootstrap(a, b, num_resamples=4000, seed=1)
    assert difference == pytest.approx(np.mean(a - b))
    assert 0.0 < low < 0.5 < high
    assert p_value < 0.001


def test_paired_bootstrap_finds_no_shift_where_there_is_none():
    rng = np.random.default_rng(2)
    b = rng.normal(4.0, 1.0, size=200)
    a = b + rng.normal(0.0, 1.0, size=200)
    _, (low, high), p_value = paired_bootstrap(a, b, num_resamples=4000, seed=1)
    assert low < 0.0 < high
    assert p_value > 0.05


def test_paired_bootstrap_uses_the_pairing():
    """A shift hidden by large between-clip differences is found because the clips are paired."""
    rng = np.random.default_rng(3)
    b = rng.normal(4.0, 2.0, size=40)
    a = b + 0.1 + rng.normal(0.0, 0.05, size=40)
    assert paired_bootstrap(a, b, num_resamples=2000).p_value < 0.001


def test_clips_needed_makes_the_standard_error_small_enough():
    n = clips_needed(0.1, 1.0)  # (1.96 + 0.84)^2 / 0.1^2 = 785 clips
    assert 780 <= n <= 790
    assert 1.0 / math.sqrt(n) <= 0.1 / 2.8 < 1.0 / math.sqrt(n - 10)
    assert clips_needed(0.2, 1.0) == pytest.approx(n / 4, abs=1)
    assert paired_standard_deviation([1.0, 2.0, 3.0], [1.0, 1.0, 1.0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="difference must be a finite non-zero number, got 0"):
        clips_needed(0, 1.0)
    with pytest.raises(ValueError, match="a and b must be 1-D and of the same length"):
        paired_bootstrap([1.0, 2.0], [1.0])


def test_flatten_table_names_model_decoding_and_measure():
    from esarm.evaluation.realism import flatten_table

    flat = flatten_table({"sta/greedy_mouth": {"realism_accuracy": 0.7}, "rl/greedy": {"lve_mm": 4.1}})
    assert flat == {"sta_greedy_mouth_realism_accuracy": 0.7, "rl_greedy_lve_mm": 4.1}
