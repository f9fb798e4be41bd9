"""Lip-sync measures on hand-made curves, rigs and clips (esarm.evaluation.lipsync)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from esarm.blendshapes import BLENDSHAPE_INDEX, NUM_BLENDSHAPES
from esarm.data.phones import openness_curve
from esarm.evaluation.lipsync import (
    INNER_LIP_PAIRS,
    animate_rows,
    closure_ratio,
    cross_correlation,
    format_table,
    jaw_open,
    lip_aperture,
    lipsync_table,
    loudness_envelope,
    peak_lag_ms,
    pearson,
    rest_ratio,
    row_num_frames,
    set_scores,
    silence_closure,
)
from esarm.evaluation.lipsync_baselines import LogMelProbe, log_mel, mel_filter_bank, stack_context
from esarm.rig import FaceRig

RATE, FPS = 16000, 30.0


def bump(num_frames: int, centre: float, width: float = 2.0) -> np.ndarray:
    t = np.arange(num_frames)
    return np.exp(-0.5 * ((t - centre) / width) ** 2)


def test_pearson_values_and_undefined_cases():
    curve = bump(40, 20)
    assert pearson(curve, curve) == pytest.approx(1.0)
    assert pearson(-curve, curve) == pytest.approx(-1.0)
    assert pearson(3 * curve + 1, curve) == pytest.approx(1.0)
    assert math.isnan(pearson(np.ones(40), curve))
    with pytest.raises(ValueError, match="same number of frames, got 40 and 39"):
        pearson(curve, curve[:-1])


@pytest.mark.parametrize("shift", [-3, 0, 2])
def test_peak_lag_sign_positive_means_the_mouth_is_late(shift):
    reference = bump(60, 25) + 0.6 * bump(60, 40)
    mouth = np.roll(reference, shift)  # mouth[t + shift] == reference[t]
    assert peak_lag_ms(mouth, reference, FPS) == pytest.approx(shift * 1000 / FPS)
    correlation = cross_correlation(mouth, reference, max_lag_frames=4)
    assert correlation.shape == (9,)
    assert correlation[4 + shift] == pytest.approx(1.0, abs=1e-9)


def test_peak_lag_searches_only_within_the_window():
    reference = bump(60, 25)
    mouth = np.roll(reference, 10)
    assert abs(peak_lag_ms(mouth, reference, FPS, max_lag_frames=3)) <= 100.0
    with pytest.raises(ValueError, match="max_lag_frames must be >= 0, got -1"):
        cross_correlation(mouth, reference, max_lag_frames=-1)


def test_closure_ratio():
    classes = ["bilabial", "open", "bilabial", "close", "other", "pause"]
    mouth = [0.1, 1.0, 0.3, 0.6, 5.0, 9.0]
    assert closure_ratio(mouth, classes) == pytest.approx(0.2 / 0.8)
    assert math.isnan(closure_ratio([1.0, 2.0], ["open", "other"]))  # no bilabial frame
    with pytest.raises(ValueError, match="one entry per frame"):
        closure_ratio(mouth, classes[:-1])


def test_rest_ratio():
    classes = ["pause", "pause", "open", "bilabial", "mid", "pause"]
    assert rest_ratio([0.1, 0.1, 1.0, 0.0, 0.5, 0.1], classes) == pytest.approx(0.1 / 0.5)
    assert rest_ratio([0.5, 0.5, 0.5, 0.5, 0.5, 0.5], classes) == pytest.approx(1.0)  # never rests
    assert math.isnan(rest_ratio([1.0, 1.0], ["open", "mid"]))  # no pause
    assert math.isnan(rest_ratio([0.0, 0.0], ["pause", "open"]))  # no speech opening to compare with
    with pytest.raises(ValueError, match="one entry per frame"):
        rest_ratio([0.1, 0.2], ["pause"])


def test_loudness_envelope_follows_the_amplitude():
    t = np.arange(RATE) / RATE
    audio = np.where(t >= 0.5, 0.5 * np.sin(2 * np.pi * 440 * t), 0.0)
    envelope = loudness_envelope(audio, RATE, 30, FPS)
    assert envelope.shape == (30,)
    assert envelope[:13].max() == pytest.approx(0.0)
    np.testing.assert_allclose(envelope[17:], 0.5 / np.sqrt(2), rtol=0.02)


def test_silence_closure():
    loudness = np.concatenate([np.zeros(10), np.ones(10)])
    assert silence_closure(loudness.copy(), loudness) == pytest.approx(0.0)  # rests in silence
    assert silence_closure(np.ones(20), loudness) == pytest.approx(1.0)  # keeps the mouth open
    with pytest.raises(ValueError, match="quiet_fraction"):
        silence_closure(np.ones(20), loudness, quiet_fraction=1.5)


def hand_made_rig() -> FaceRig:
    """68 landmark vertices on a 100 mm face, y up; jawOpen lowers the lower inner lip by 20 mm, mouthClose raises
    it by 25 mm (through the upper lip, as linear ARKit rigs do)."""
    rng = np.random.default_rng(0)
    neutral = rng.uniform(-50, 50, size=(68, 3))
    neutral[8] = [0, -60, 0]  # chin
    neutral[27] = [0, 40, 0]  # nose bridge
    for upper, lower in INNER_LIP_PAIRS:
        neutral[upper] = [upper - 62, -30.0, 10.0]
        neutral[lower] = [upper - 62, -31.0, 10.0]  # 1 mm gap at rest
    deltas = np.zeros((NUM_BLENDSHAPES, 68, 3))
    lower_ids = [b for _, b in INNER_LIP_PAIRS]
    deltas[BLENDSHAPE_INDEX["jawOpen"], lower_ids, 1] = -20.0
    deltas[BLENDSHAPE_INDEX["mouthClose"], lower_ids, 1] = 25.0
    regions = {"lips": np.arange(48, 68), "eye_forehead": np.arange(17, 48)}
    return FaceRig(neutral, deltas, np.zeros((0, 3)), regions, landmarks=np.arange(68))


def test_lip_aperture_is_the_signed_vertical_gap_floored_at_zero():
    rig = hand_made_rig()
    weights = np.zeros((3, NUM_BLENDSHAPES))
    weights[1, BLENDSHAPE_INDEX["jawOpen"]] = 0.5
    weights[2, BLENDSHAPE_INDEX["jawOpen"]] = 0.1
    weights[2, BLENDSHAPE_INDEX["mouthClose"]] = 0.5  # lips pressed through each other: closed, not open
    np.testing.assert_allclose(lip_aperture(weights, rig), [1.0, 11.0, 0.0])
    np.testing.assert_allclose(jaw_open(weights), [0.0, 0.5, 0.1])


def test_lip_aperture_needs_landmarks():
    rig = hand_made_rig()
    rig.landmarks = None
    with pytest.raises(ValueError, match="68 iBUG landmarks"):
        lip_aperture(np.zeros((2, NUM_BLENDSHAPES)), rig)
    with pytest.raises(ValueError, match=r"\[frames, 52\]"):
        jaw_open(np.zeros((2, 51)))


def test_lip_aperture_on_the_ict_rig_closes_for_bilabials(rig):
    from esarm.data.synthetic.visemes import VISEMES

    def vector(target):
        out = np.zeros(NUM_BLENDSHAPES)
        for name, value in target.items():
            out[BLENDSHAPE_INDEX[name]] = value
        return out

    shapes = np.stack([vector(VISEMES[s][0]) for s in ("p", "a", "i")])
    closed, open_vowel, close_vowel = lip_aperture(shapes, rig)
    assert closed == 0.0
    assert open_vowel > 15.0 > close_vowel > 2.0


def test_mel_filter_bank_and_log_mel():
    bank = mel_filter_bank(40, 512, RATE)
    assert bank.shape == (257, 40)
    assert np.all(bank.max(axis=0) > 0.5) and bank.min() >= 0
    t = np.arange(RATE) / RATE
    audio = 0.01 * np.random.default_rng(0).standard_normal(RATE)
    audio[RATE // 2 :] += np.sin(2 * np.pi * 1000 * t[RATE // 2 :])
    features = log_mel(audio, RATE, 30, FPS)
    assert features.shape == (30, 40)
    np.testing.assert_allclose(features.mean(axis=0), 0, atol=1e-9)
    band_of_1khz = int(np.argmax(bank[32]))  # bin 32 = 1000 Hz at n_fft 512
    assert features[20:, band_of_1khz].mean() > 0.9 > features[:13, band_of_1khz].max()


def test_stack_context_repeats_the_edges():
    features = np.arange(10, dtype=float).reshape(5, 2)
    stacked = stack_context(features, context=1)
    assert stacked.shape == (5, 6)
    np.testing.assert_array_equal(stacked[:, 2:4], features)
    np.testing.assert_array_equal(stacked[0, :2], features[0])
    np.testing.assert_array_equal(stacked[-1, 4:], features[-1])


def tone_clip(seed: int, seconds: float = 2.0) -> dict:
    """A clip whose jawOpen is its (smooth, random) loudness: a linear log-mel probe can learn it."""
    rng = np.random.default_rng(seed)
    num_frames = int(seconds * FPS)
    jaw = np.clip(np.convolve(rng.uniform(0, 1, num_frames), np.ones(5) / 5, mode="same"), 0, 1)
    gain = np.repeat(jaw, RATE // int(FPS))[: int(seconds * RATE)]
    audio = gain * rng.standard_normal(len(gain)) * 0.3 + 0.001 * rng.standard_normal(len(gain))
    blendshapes = np.zeros((num_frames, NUM_BLENDSHAPES))
    blendshapes[:, BLENDSHAPE_INDEX["jawOpen"]] = jaw
    return {"audio": audio, "sampling_rate": RATE, "blendshapes": blendshapes, "fps": FPS}


def test_log_mel_probe_learns_a_linear_mapping():
    probe = LogMelProbe(context=1)
    with pytest.raises(RuntimeError, match="fitted"):
        probe.predict(np.zeros(RATE), RATE, 30, FPS)
    with pytest.raises(ValueError, match="at least one clip"):
        probe.fit([])
    probe.fit([tone_clip(seed) for seed in range(4)])
    held_out = tone_clip(99)
    predicted = probe.predict(held_out["audio"], RATE, len(held_out["blendshapes"]), FPS)
    assert predicted.shape == (60, NUM_BLENDSHAPES)
    assert (
        pearson(predicted[:, BLENDSHAPE_INDEX["jawOpen"]], held_out["blendshapes"][:, BLENDSHAPE_INDEX["jawOpen"]])
        > 0.8
    )
    with pytest.raises(ValueError, match="alpha"):
        LogMelProbe(alpha=-1)


def phoneme_clip() -> dict:
    """2 s: pause, then /b ɑ m i p æ/ and a pause, with ground truth = the openness curve as jawOpen."""
    phonemes = ["_", "b", "ɑ", "m", "i", "p", "æ", "_"]
    times = [0.0, 0.3, 0.45, 0.75, 0.9, 1.2, 1.35, 1.7]
    num_frames = int(2.0 * FPS)
    rng = np.random.default_rng(0)
    curve = openness_curve(phonemes, times, 2.0, FPS)
    audio = 0.001 * rng.standard_normal(2 * RATE)
    gain = curve[np.minimum((np.arange(len(audio)) * FPS / RATE).astype(int), num_frames - 1)]
    audio += 0.3 * gain * rng.standard_normal(len(gain))
    blendshapes = np.zeros((num_frames, NUM_BLENDSHAPES))
    blendshapes[:, BLENDSHAPE_INDEX["jawOpen"]] = curve
    return {
        "id": "clip", "audio": audio, "sampling_rate": RATE, "fps": FPS, "blendshapes": blendshapes,
        "phonemes": phonemes, "phoneme_times": times,
    }  # fmt: skip


def test_set_scores_on_a_perfect_and_a_late_mouth():
    row = phoneme_clip()
    perfect = {"jaw": jaw_open(row["blendshapes"])}
    scores = set_scores([row], [perfect])
    assert scores["r_jaw"] == pytest.approx(1.0)
    assert scores["lag_ms"] == 0.0
    assert scores["closure_jaw"] < 0.3
    assert math.isnan(scores["r_aperture"])
    late = set_scores([row], [{"jaw": np.roll(perfect["jaw"], 3)}])
    assert late["lag_ms"] == pytest.approx(100.0)
    assert late["r_jaw"] < scores["r_jaw"]
    assert scores["silence_closure"] < 0.2  # the mouth rests where the audio is quiet
    assert scores["rest_jaw"] < 0.2 and math.isnan(scores["rest_aperture"])  # ... and in the pauses
    with pytest.raises(ValueError, match="one entry per row"):
        set_scores([row], [])


def test_lipsync_table_sources_and_format():
    rows = [phoneme_clip()]
    probe = LogMelProbe(context=1).fit([tone_clip(seed) for seed in range(3)])
    constant = [np.full((60, NUM_BLENDSHAPES), 0.2)]
    table = lipsync_table(rows, constant, probe, rig=hand_made_rig())
    assert list(table) == ["model", "loudness", "log-mel probe", "ground truth"]
    assert math.isnan(table["model"]["r_jaw"])  # a mouth that never moves has no correlation
    assert table["ground truth"]["r_jaw"] == pytest.approx(1.0)
    assert table["loudness"]["r_jaw"] > 0.9  # the clip's loudness follows the openness curve by construction
    assert math.isnan(table["loudness"]["envelope_r"])
    assert np.isfinite(table["ground truth"]["r_aperture"])
    markdown = format_table({"held-out": table})
    assert markdown.count("\n") == 5 and "| held-out | model | - |" in markdown
    with pytest.raises(ValueError, match="one sequence per row"):
        lipsync_table(rows, constant * 2)


def test_rows_without_reference_motion_get_baselines_and_no_ground_truth():
    row = {k: v for k, v in phoneme_clip().items() if k != "blendshapes"}
    assert row_num_frames(row) == 60 == row_num_frames(phoneme_clip())
    truth = jaw_open(phoneme_clip()["blendshapes"])
    table = lipsync_table([row], {"model": [np.full((60, NUM_BLENDSHAPES), 0.2)]}, baselines={"rules": [truth]})
    assert list(table) == ["model", "loudness", "rules"]
    assert table["rules"]["r_jaw"] == pytest.approx(1.0) and table["rules"]["lag_ms"] == 0.0
    assert math.isnan(table["rules"]["r_aperture"])  # a jaw curve has no lip aperture
    with pytest.raises(ValueError, match=r"baselines\['rules'\] must hold one sequence per row"):
        lipsync_table([row], baselines={"rules": [truth, truth]})


def test_animate_rows_returns_the_rows_frame_counts():
    from esarm import ESARMSTAConfig, ESARMSTAForGeneration

    model = ESARMSTAForGeneration(ESARMSTAConfig.tiny()).eval()
    rows = [dict(phoneme_clip(), id="a"), {**phoneme_clip(), "id": "b", "audio": phoneme_clip()["audio"][: RATE + 77]}]
    rows[1]["blendshapes"] = rows[1]["blendshapes"][: int(round((RATE + 77) / RATE * FPS))]
    outputs = animate_rows(model, rows, seed=0)
    assert [o.shape for o in outputs] == [(60, NUM_BLENDSHAPES), (30, NUM_BLENDSHAPES)]
    again = animate_rows(model, rows[:1], seed=0)
    np.testing.assert_array_equal(again[0], outputs[0])
    with pytest.raises(ValueError, match="fps"):
        animate_rows(model, [dict(rows[0], fps=25.0)])
