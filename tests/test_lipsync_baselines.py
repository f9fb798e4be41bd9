"""The jaw-only lip-sync baselines on real speech (esarm.evaluation.lipsync_baselines) and PocketSphinx's phones
(esarm.data.sphinx), on clips of the shipped real-speech set."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

from esarm import phonetic
from esarm.data import sphinx
from esarm.data.phones import PAUSE, frame_classes, openness_curve
from esarm.data.real_speech import load_real_speech_set
from esarm.evaluation import lipsync_baselines as B
from esarm.evaluation.lipsync import pearson

FPS = 30.0


@pytest.fixture(scope="module")
def clip():
    """ "go forward ten meters", 2.8 s, with 0.46 s of silence before the speech and 0.66 s after it."""
    return next(r for r in load_real_speech_set(fps=FPS) if r["id"] == "pocketsphinx_goforward")


def frames(row) -> int:
    return int(round(len(row["audio"]) / row["sampling_rate"] * FPS))


def reference(row) -> np.ndarray:
    return openness_curve(row["phonemes"], row["phoneme_times"], len(row["audio"]) / 16_000, FPS, frames(row))


def test_to_ipa_maps_silences_and_fillers_to_pauses_and_pcm16_resamples():
    assert sphinx.to_ipa(["SIL", "+NSN+", "AA", "M", "EY"]) == [PAUSE, PAUSE, "ɑ", "m", "eɪ"]
    with pytest.raises(ValueError, match="ARPAbet"):
        sphinx.to_ipa(["QQ"])
    pcm = sphinx.pcm16(np.full(48_000, 0.5, np.float32), 48_000)  # 1 s at 48 kHz -> 16,000 int16 samples
    assert len(pcm) == 2 * 16_000 and abs(int(np.frombuffer(pcm, "<i2")[8000]) - 16384) <= 2
    assert sphinx.normalise_transcript("He turned sharply, and faced Gregson!") == "he turned sharply and faced gregson"


def test_alignment_and_recognition_of_a_real_recording(clip):
    pytest.importorskip("pocketsphinx")
    phones, starts = sphinx.align_phones(clip["audio"], 16_000, "go forward ten meters")
    assert phones[0] == "SIL" and phones[1:4] == ["G", "OW", "F"] and 0.3 < starts[1] < 0.6
    with pytest.raises(ValueError, match="could not be aligned"):
        sphinx.align_phones(clip["audio"], 16_000, "go forward qzxwv")
    recognised, times = sphinx.recognise_phones(clip["audio"], 16_000)
    assert recognised[0] == "SIL" and np.all(np.diff(times) > 0) and len(recognised) > 8
    # The phones of a clip do not depend on the clips decoded before it.
    sphinx.recognise_phones(load_real_speech_set()[2]["audio"], 16_000)
    assert sphinx.recognise_phones(clip["audio"], 16_000) == (recognised, times)


def test_phone_rules_jaw_follows_the_phones_and_rests_in_silence(clip):
    pytest.importorskip("pocketsphinx")
    jaw = B.phone_rules_jaw(clip["audio"], 16_000, frames(clip), FPS)
    assert jaw.shape == (frames(clip),) and jaw.min() >= 0.0 and jaw.max() <= 1.0
    assert pearson(jaw, reference(clip)) > 0.5
    silence = np.array(frame_classes(clip["phonemes"], clip["phoneme_times"], 2.79, FPS, frames(clip))) == "pause"
    assert jaw[silence].mean() < 0.2 * jaw[~silence].mean()  # the leading and trailing silences


def test_ulipsync_jaw_opens_on_speech_and_not_in_silence(clip):
    pytest.importorskip("pylipsync")
    jaw = B.ulipsync_jaw(clip["audio"], 16_000, frames(clip), FPS)
    assert jaw.shape == (frames(clip),) and jaw.min() >= 0.0 and jaw.max() <= 1.0
    classes = np.array(frame_classes(clip["phonemes"], clip["phoneme_times"], 2.79, FPS, frames(clip)))
    assert jaw[classes == "pause"].mean() < 0.5 * jaw[classes != "pause"].mean()
    # Every phoneme uLipSync scores has a graded openness.
    assert set(B._ulipsync_analyzer().phoneme_mfccs) == set(B.ULIPSYNC_OPENNESS)


def test_a_missing_extra_is_named_and_its_baseline_left_out(clip, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # as if pocketsphinx were not installed
    monkeypatch.setitem(sys.modules, "pylipsync", None)
    monkeypatch.setattr(phonetic, "_decoders", {})  # no decoder left over from an earlier test
    B._ulipsync_analyzer.cache_clear()
    try:
        with pytest.raises(ImportError, match="pip install pocketsphinx"):
            B.phone_rules_jaw(clip["audio"], 16_000, frames(clip), FPS)
        with pytest.raises(ImportError, match=r"pip install 'esarm\[lipsync\]'"):
            B.ulipsync_jaw(clip["audio"], 16_000, frames(clip), FPS)
        with caplog.at_level(logging.WARNING, logger="esarm.evaluation.lipsync_baselines"):
            assert B.baseline_mouths([clip], [frames(clip)]) == {}
        assert "left out the phone rules baseline" in caplog.text and "esarm[lipsync]" in caplog.text
    finally:
        B._ulipsync_analyzer.cache_clear()
    with pytest.raises(ValueError, match="names must be among"):
        B.baseline_mouths([clip], [frames(clip)], names=["rhubarb"])


def test_the_benchmark_splits_the_set_by_its_kind_of_labels(repo_script):
    benchmark = repo_script("benchmarks/real_speech.py")
    whole, published, aligned = benchmark.label_sets(FPS)
    assert [s.name for s in (whole, published, aligned)] == ["real speech", "published labels", "aligned labels"]
    assert [r["id"] for r in published.rows] == ["arctic_slt_a0009"]
    assert len(aligned.rows) == len(whole.rows) - 1 and all(s.baselines for s in (whole, published, aligned))


@pytest.mark.slow
def test_the_benchmark_prints_the_baselines_on_real_speech(repo_script, tmp_path, capsys):
    pytest.importorskip("pocketsphinx")
    pytest.importorskip("pylipsync")
    results = repo_script("benchmarks/real_speech.py").main(["--json", str(tmp_path / "out.json")])
    assert list(results["published labels"]) == ["loudness", "phone rules", "uLipSync"]
    assert results["real speech"]["phone rules"]["r_jaw"] > results["real speech"]["loudness"]["r_jaw"]
    assert "| aligned labels | uLipSync |" in capsys.readouterr().out and (tmp_path / "out.json").is_file()
