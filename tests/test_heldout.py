"""The fixed held-out lip-sync sets (esarm.data.heldout) and the Flite driver (esarm.data.synthetic.flite)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from esarm.data.heldout import (
    TEST_SENTENCES,
    TEST_VOICES,
    VALIDATION_SENTENCES,
    VALIDATION_VOICES,
    build_heldout_sets,
    generate_heldout_sets,
    missing_engine,
)
from esarm.data.phones import openness_curve
from esarm.data.synthetic import SENTENCES, SyntheticCorpusConfig, corpus_sentences
from esarm.data.synthetic.expressions import VOICES
from esarm.data.synthetic.flite import FLITE_VOICES, FliteSynthesizer, find_flite, parse_segments
from esarm.data.synthetic.voices import HELD_OUT_ACCENTS, TRAINING_ACCENTS
from esarm.evaluation.lipsync import jaw_open, pearson, row_audio

needs_flite = pytest.mark.skipif(find_flite() is None, reason="flite is not installed (Debian package 'flite')")


def words(sentence: str) -> str:
    return " ".join(re.findall(r"[a-z']+", sentence.lower()))


def test_sentences_are_disjoint_from_each_other_and_from_training():
    validation, test, training = (
        {words(s) for s in group} for group in (VALIDATION_SENTENCES, TEST_SENTENCES, SENTENCES)
    )
    assert len(validation) == len(VALIDATION_SENTENCES) and 16 <= len(validation) <= 24
    assert len(test) == len(TEST_SENTENCES) and 16 <= len(test) <= 24
    assert not validation & test
    assert not (validation | test) & training
    # the random-voice presets draw from a larger pool of Harvard and generated sentences
    for preset in (SyntheticCorpusConfig.small(), SyntheticCorpusConfig.mead_like()):
        assert not (validation | test) & {words(s) for s in corpus_sentences(preset)}


def test_voices_are_disjoint_from_training():
    training_pairs = {(language, variant) for language, variant, _ in VOICES}
    for voice in VALIDATION_VOICES:
        language, variant = voice.voice.split("+")
        assert voice.engine == "espeak" and (language, variant) not in training_pairs
        # and no random training voice uses its accent
        assert language in HELD_OUT_ACCENTS and language not in TRAINING_ACCENTS
    assert {v.engine for v in TEST_VOICES} == {"flite"}
    assert {v.voice for v in TEST_VOICES} <= set(FLITE_VOICES)


def test_parse_segments():
    phonemes, starts = parse_segments("pau:0.220 dh:0.254 ax:0.304 b:0.394 ey1:0.5\n")
    assert phonemes == ["_", "ð", "ə", "b", "eɪ"]
    np.testing.assert_allclose(starts, [0.0, 0.22, 0.254, 0.304, 0.394])
    with pytest.raises(ValueError, match="'phone:end'"):
        parse_segments("pau 0.2")


def test_missing_flite_names_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setenv("ESARM_FLITE", str(tmp_path / "no-flite"))
    with pytest.raises(FileNotFoundError, match="Debian package 'flite'"):
        FliteSynthesizer()
    with pytest.raises(FileNotFoundError, match="Debian package 'flite'"):
        generate_heldout_sets(splits=("test",), num_sentences=1)
    # the lip-sync evaluation's reason for skipping the test split names the real cause and its fix
    monkeypatch.delenv("ESARM_FLITE")
    monkeypatch.setenv("PATH", str(tmp_path))  # no flite on PATH either
    assert "apt-get install flite" in missing_engine("test")
    assert missing_engine("validation") is None  # eSpeak NG ships with esarm


def test_bad_arguments():
    with pytest.raises(
        ValueError, match=r"splits must be a non-empty subset of \['validation', 'test'\], got \['train'\]"
    ):
        generate_heldout_sets(splits=("train",))
    with pytest.raises(ValueError, match="num_sentences must be in 1..20 or None, got 0"):
        generate_heldout_sets(splits=("validation",), num_sentences=0)


def test_build_is_reproducible_idempotent_and_follows_the_timings(tmp_path):
    from datasets import load_from_disk

    first = build_heldout_sets(tmp_path / "a", splits=("validation",), num_sentences=2)
    second = build_heldout_sets(tmp_path / "b", splits=("validation",), num_sentences=2)
    a, b = load_from_disk(str(first))["validation"], load_from_disk(str(second))["validation"]
    assert a.num_rows == 2 * len(VALIDATION_VOICES)
    assert all(np.array_equal(row_audio(x), row_audio(y)) for x, y in zip(a, b))
    for column in ("blendshapes", "phoneme_times"):
        np.testing.assert_array_equal(np.concatenate(a[column]), np.concatenate(b[column]))
    assert a["phonemes"] == b["phonemes"] and a["id"] == b["id"]

    stamp = (first / "dataset_dict.json").stat().st_mtime_ns
    assert build_heldout_sets(first, splits=("validation",), num_sentences=2) == first
    assert (first / "dataset_dict.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    with pytest.raises(ValueError, match="other settings"):
        build_heldout_sets(first, seed=1, splits=("validation",), num_sentences=2)

    row = a.with_format("numpy")[0]
    assert row["emotion"] == "neutral" and row["speaker"].startswith("espeak:")
    assert len(row["blendshapes"]) == round(len(row_audio(row)) / 16000 * 30)
    assert np.all(np.diff(row["phoneme_times"]) >= 0)
    # The ground truth follows the engine's own timings: its jaw tracks the phoneme-openness curve.
    curve = openness_curve(
        row["phonemes"], row["phoneme_times"], len(row_audio(row)) / 16000, 30.0, len(row["blendshapes"])
    )
    assert pearson(jaw_open(row["blendshapes"]), curve) > 0.6


@needs_flite
def test_flite_test_split(tmp_path):
    sets = generate_heldout_sets(splits=("test",), num_sentences=1)
    again = generate_heldout_sets(splits=("test",), num_sentences=1)
    test = sets["test"].with_format("numpy")
    assert test.num_rows == len(TEST_VOICES)
    assert [s.split(":")[0] for s in test["speaker"]] == ["flite"] * len(TEST_VOICES)
    assert all(np.array_equal(row_audio(x), row_audio(y)) for x, y in zip(test, again["test"]))
    for row in test:
        assert row["phonemes"][0] == "_" and "p" in row["phonemes"]  # "Paddy parked the bus behind the pub."
        assert len(row["blendshapes"]) == round(len(row_audio(row)) / 16000 * 30)
        assert np.all(np.diff(row["phoneme_times"]) >= 0)
