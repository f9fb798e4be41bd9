"""The synthetic corpus: schema, splits, determinism, audible emotion, learnable lip sync, saving."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from esarm.blendshapes import ARKIT_NAMES, BLENDSHAPE_INDEX, EMOTIONS
from esarm.data import SyntheticCorpusConfig, build_synthetic_corpus, generate_synthetic_corpus, speaker_splits
from esarm.data.schema import CLIP_COLUMNS, audio_feature, decode_audio_value
from esarm.data.synthetic import loudness_envelope
from esarm.data.synthetic.tts import get_synthesizer, isolated_synthesizer


@pytest.fixture(scope="module")
def micro_config() -> SyntheticCorpusConfig:
    return SyntheticCorpusConfig.micro()


@pytest.fixture(scope="module")
def micro_corpus(micro_config):
    return generate_synthetic_corpus(micro_config, progress=False)


def _rows(corpus):
    return [row for split in corpus.values() for row in split]


def _mean(rows, name):
    index = BLENDSHAPE_INDEX[name]
    return float(np.mean([np.asarray(r["blendshapes"])[:, index].mean() for r in rows]))


def test_espeak_synthesizes_speech_with_phoneme_timings():
    utterance = get_synthesizer().synthesize("Two blue fish swam in the tank.", voice="en-us+f2")
    assert utterance.sampling_rate == 22050
    assert 0.8 < len(utterance.audio) / utterance.sampling_rate < 4.0
    assert np.abs(utterance.audio).max() > 0.1
    assert np.all(np.diff(utterance.phoneme_starts) >= 0)
    assert "b" in utterance.phonemes and "f" in utterance.phonemes
    assert utterance.phoneme_starts[-1] <= len(utterance.audio) / utterance.sampling_rate + 1e-6


def test_identical_espeak_calls_give_identical_audio():
    """eSpeak NG's static state (pitch flutter and more) carries over between calls of one library; the process's
    synthesizer starts every call afresh."""
    synthesizer = get_synthesizer()
    first = synthesizer.synthesize("Father saw a large palm tree.", rate=140)
    synthesizer.synthesize("Something else in between, with another voice.", voice="en-us+m3")
    second = synthesizer.synthesize("Father saw a large palm tree.", rate=140)
    np.testing.assert_array_equal(first.audio, second.audio)
    np.testing.assert_array_equal(first.phoneme_starts, second.phoneme_starts)
    with isolated_synthesizer() as shared_state:  # one library state for both calls: they differ
        calls = [shared_state.synthesize("Father saw a large palm tree.", rate=140) for _ in range(2)]
    assert len(calls[0].audio) != len(calls[1].audio) or not np.array_equal(calls[0].audio, calls[1].audio)


def test_espeak_rejects_unknown_voice():
    with pytest.raises(ValueError, match="voice"):
        get_synthesizer().synthesize("Hello.", voice="no-such-voice+zz")


def test_schema_columns_and_dtypes(micro_corpus):
    train = micro_corpus["train"]
    assert set(CLIP_COLUMNS) <= set(train.column_names)
    assert str(train.features["blendshapes"].shape) == "(None, 52)"
    assert train.features["audio"] == audio_feature()
    row = train[0]
    assert decode_audio_value(row["audio"]).dtype == np.float32
    blendshapes = np.asarray(row["blendshapes"], np.float32)
    assert blendshapes.shape[1] == len(ARKIT_NAMES)
    assert row["sampling_rate"] == 16000 and row["fps"] == 30.0
    # frames follow the audio duration at fps
    assert abs(blendshapes.shape[0] - len(decode_audio_value(row["audio"])) / 16000 * 30) <= 1
    assert len(row["phonemes"]) == len(row["phoneme_times"])


def test_values_in_unit_range_and_audio_finite(micro_corpus):
    for row in _rows(micro_corpus):
        blendshapes = np.asarray(row["blendshapes"])
        assert blendshapes.min() >= 0.0 and blendshapes.max() <= 1.0
        audio = decode_audio_value(row["audio"])
        assert np.all(np.isfinite(audio)) and np.abs(audio).max() <= 1.0
        assert 1.0 < len(audio) / 16000 < 4.0


def test_splits_are_by_speaker_and_mead_shaped(micro_corpus, micro_config):
    speakers = {split: set(micro_corpus[split]["speaker"]) for split in micro_corpus}
    assert set(micro_corpus) == {"train", "validation", "test"}
    assert not (speakers["train"] & speakers["validation"]) and not (speakers["train"] & speakers["test"])
    assert speakers == {k: set(v) for k, v in speaker_splits(micro_config).items()}
    rows = _rows(micro_corpus)
    assert len(rows) == micro_config.num_clips
    assert {(r["emotion"], r["intensity"]) for r in rows if r["emotion"] == "neutral"} == {("neutral", 1)}
    assert {r["intensity"] for r in rows if r["emotion"] == "happy"} == {1, 3}
    assert len({r["id"] for r in rows}) == len(rows)
    # every speaker reads the same sentences in every emotion (cross-reconstruction pairs exist)
    sentences = {(r["speaker"], r["emotion"]): set() for r in rows}
    for r in rows:
        sentences[(r["speaker"], r["emotion"])].add(r["sentence"])
    assert len({frozenset(s) for s in sentences.values()}) == 1


def test_deterministic_for_a_seed_and_independent_of_workers():
    config = SyntheticCorpusConfig.micro(emotions=("neutral", "angry"), num_sentences=1, intensities=(3,))
    first = generate_synthetic_corpus(config, progress=False)
    again = generate_synthetic_corpus(SyntheticCorpusConfig.micro(**{**config.to_dict(), "num_workers": 2}), False)
    other_seed = generate_synthetic_corpus(SyntheticCorpusConfig.micro(**{**config.to_dict(), "seed": 1}), False)
    for a, b, c in zip(first["train"], again["train"], other_seed["train"]):
        assert a["id"] == b["id"]
        assert a["audio"]["bytes"] == b["audio"]["bytes"]
        np.testing.assert_array_equal(a["blendshapes"], b["blendshapes"])
        assert not np.array_equal(a["blendshapes"], c["blendshapes"])


def test_breathy_voices_are_reproducible_across_processes():
    # eSpeak NG seeds its noise generator (breath of the f* voices) from the clock at initialisation: each
    # utterance reseeds it, so two fresh processes give the same audio, and another seed other breath noise
    code = (
        "import hashlib, sys; from esarm.data.synthetic.tts import isolated_synthesizer\n"
        "with isolated_synthesizer() as s:\n"
        "    u = s.synthesize('Breathy voices.', voice='en-us+f5', seed=int(sys.argv[1]))\n"
        "print(hashlib.sha256(u.audio.tobytes()).hexdigest())"
    )

    def digest(seed):
        return subprocess.run([sys.executable, "-c", code, str(seed)], capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip

    first = digest(3)
    time.sleep(1.1)  # another clock second
    assert digest(3) == first
    assert digest(4) != first


def test_emotion_is_audible_in_the_voice(micro_corpus):
    rows = [r for r in _rows(micro_corpus) if r["intensity"] in (1, 3)]

    def stat(emotion, fn):
        return np.mean([fn(decode_audio_value(r["audio"])) for r in rows if r["emotion"] == emotion and
                        (r["intensity"] == 3 or emotion == "neutral")])  # fmt: skip

    def rms(a):
        return np.sqrt(np.mean(a**2))

    assert stat("angry", rms) > 1.2 * stat("neutral", rms) > 1.2 * stat("sad", rms)
    assert stat("sad", len) > 1.1 * stat("neutral", len) > stat("angry", len)


def test_emotion_shows_on_the_face_and_grows_with_intensity(micro_corpus):
    rows = _rows(micro_corpus)

    def pick(emotion, intensity=None):
        return [r for r in rows if r["emotion"] == emotion and (intensity is None or r["intensity"] == intensity)]

    neutral = pick("neutral")
    assert _mean(pick("happy", 3), "mouthSmileLeft") > _mean(pick("happy", 1), "mouthSmileLeft") + 0.1
    assert _mean(pick("happy", 1), "mouthSmileLeft") > _mean(neutral, "mouthSmileLeft")
    assert _mean(pick("angry", 3), "browDownLeft") > _mean(neutral, "browDownLeft") + 0.3
    assert _mean(pick("sad", 3), "mouthFrownRight") > _mean(neutral, "mouthFrownRight") + 0.2


def test_lips_follow_phonemes_and_loudness(micro_corpus):
    correlations, closures = [], []
    for row in micro_corpus["train"]:
        blendshapes = np.asarray(row["blendshapes"])
        audio = decode_audio_value(row["audio"])
        times = (np.arange(len(blendshapes)) + 0.5) / row["fps"]
        envelope = loudness_envelope(audio, row["sampling_rate"], times, row["fps"])
        correlations.append(np.corrcoef(envelope, blendshapes[:, BLENDSHAPE_INDEX["jawOpen"]])[0, 1])
        # lips press together during /b p m/ more than on average
        starts = np.asarray(row["phoneme_times"])
        bilabial = [int(s * row["fps"] + 1) for p, s in zip(row["phonemes"], starts) if p in ("b", "p", "m")]
        press = blendshapes[:, BLENDSHAPE_INDEX["mouthPressLeft"]]
        closures.append(press[np.clip(bilabial, 0, len(press) - 1)].mean() - press.mean())
    assert np.mean(correlations) > 0.4
    assert np.mean(closures) > 0.05


def test_speakers_have_their_own_style(micro_corpus):
    rows = [r for r in _rows(micro_corpus) if r["emotion"] == "happy" and r["intensity"] == 3]
    asymmetry = {}
    for row in rows:
        blendshapes = np.asarray(row["blendshapes"])
        left, right = (
            blendshapes[:, BLENDSHAPE_INDEX["mouthSmileLeft"]],
            blendshapes[:, BLENDSHAPE_INDEX["mouthSmileRight"]],
        )
        asymmetry.setdefault(row["speaker"], []).append(float((left - right).mean()))
    means = {speaker: np.mean(values) for speaker, values in asymmetry.items()}
    # consistent within a speaker (same sign for every clip), different between speakers
    assert all(np.sign(v).min() == np.sign(v).max() for v in asymmetry.values())
    assert max(means.values()) - min(means.values()) > 0.02


def test_blinks_happen(micro_corpus):
    blinks = np.concatenate([np.asarray(r["blendshapes"])[:, 0] for r in micro_corpus["train"]])
    assert (blinks > 0.7).mean() > 0.01


@pytest.mark.parametrize(
    ("overrides", "argument"),
    [
        ({"num_speakers": 2}, "num_speakers"),
        ({"num_sentences": 0}, "num_sentences"),
        ({"emotions": ("joy",)}, "emotions"),
        ({"intensities": (4,)}, "intensities"),
        ({"fps": 0}, "fps"),
        ({"num_workers": -1}, "num_workers"),
    ],
)
def test_config_validation_names_the_argument(overrides, argument):
    with pytest.raises(ValueError, match=argument):
        SyntheticCorpusConfig.micro(**overrides)


def test_build_saves_loads_and_is_idempotent(tmp_path):
    from datasets import load_from_disk

    config = SyntheticCorpusConfig.micro(emotions=("neutral", "sad"), num_sentences=1)
    output = build_synthetic_corpus(config, tmp_path / "corpus", progress=False)
    corpus = load_from_disk(str(output))
    assert corpus["train"].num_rows == 3 and corpus["test"].num_rows == 3
    card = (output / "README.md").read_text()
    assert "synthetic" in card and "| train | 3 |" in card
    assert json.loads((output / "synthetic_config.json").read_text())["num_sentences"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["corpus"]  # no staging folder left behind

    stamp = (output / "dataset_dict.json").stat().st_mtime_ns
    started = time.perf_counter()
    assert build_synthetic_corpus(config, output, progress=False) == output
    assert time.perf_counter() - started < 1.0
    assert (output / "dataset_dict.json").stat().st_mtime_ns == stamp

    other = SyntheticCorpusConfig.micro(emotions=("neutral", "sad"), num_sentences=2)
    with pytest.raises(ValueError, match="another config"):
        build_synthetic_corpus(other, output, progress=False)
    build_synthetic_corpus(other, output, overwrite=True, progress=False)
    assert load_from_disk(str(output))["train"].num_rows == 6


def test_plot_clip_writes_a_png(micro_corpus, tmp_path):
    from esarm.data.plotting import plot_clip

    path = plot_clip(micro_corpus["train"][0], tmp_path / "clip.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="groups"):
        plot_clip(micro_corpus["train"][0], tmp_path / "bad.png", groups={"x": ("notABlendshape",)})


@pytest.mark.slow
def test_tiny_corpus_builds_in_under_a_minute(tmp_path):
    config = SyntheticCorpusConfig.tiny(num_workers=2)
    started = time.perf_counter()
    build_synthetic_corpus(config, tmp_path / "tiny", progress=False)
    assert time.perf_counter() - started < 60
    assert config.num_clips == 6 * 8 * (1 + 7 * 3)
    assert set(EMOTIONS) == set(config.emotions)
