"""ESARMProcessor: inputs of every kind, resampling, stereo, labels, save/load round trip, bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile
import torch
from transformers import Wav2Vec2FeatureExtractor

from esarm.blendshapes import EMOTIONS
from esarm.processing_esarm import ESARMProcessor


def tone(seconds: float, rate: int, frequency: float = 220.0) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


@pytest.fixture
def processor():
    return ESARMProcessor(speakers=["M003", "W009"], fps=30)


def test_single_array(processor):
    out = processor(tone(0.5, 16000), sampling_rate=16000, emotion="happy", intensity=3, speaker="W009")
    assert out["input_values"].shape == (1, 8000) and out["input_values"].dtype == torch.float32
    assert out["attention_mask"].tolist() == [[1] * 8000]
    assert out["emotion_ids"].tolist() == [EMOTIONS.index("happy")]
    assert out["intensity_ids"].tolist() == [2]
    assert out["speaker_ids"].tolist() == [2]
    # per-clip normalisation of the WavLM feature extractor
    assert abs(float(out["input_values"].mean())) < 1e-3 and float(out["input_values"].std()) == pytest.approx(
        1, abs=1e-2
    )


def test_batch_of_mixed_inputs_is_resampled_and_padded(processor, tmp_path):
    path = tmp_path / "clip.flac"
    soundfile.write(path, tone(0.25, 22050), 22050)
    stereo = np.stack([tone(0.5, 44100), tone(0.5, 44100, 440.0)])
    out = processor([str(path), stereo, torch.from_numpy(tone(1.0, 44100))], sampling_rate=44100)
    assert out["input_values"].shape == (3, 16000)
    assert out["attention_mask"].sum(-1).tolist() == [4000, 8000, 16000]
    assert torch.all(out["input_values"][0, 4000:] == 0)
    assert out["speaker_ids"].tolist() == [0, 0, 0]
    assert "emotion_ids" not in out and "intensity_ids" not in out  # emotion="auto" downstream


def test_flat_list_is_one_clip_and_np_output(processor):
    out = processor(tone(0.1, 16000).tolist(), sampling_rate=16000, return_tensors="np")
    assert isinstance(out["input_values"], np.ndarray) and out["input_values"].shape == (1, 1600)
    assert processor(tone(0.1, 16000), sampling_rate=16000, return_tensors=None)["speaker_ids"] == [0]


def test_labels_by_name_or_id_and_per_clip(processor):
    clips = [tone(0.1, 16000)] * 3
    out = processor(clips, sampling_rate=16000, emotion=["angry", 7, "Neutral"], intensity=["1", 2, 3],
                    speaker=["M003", 2, None])  # fmt: skip
    assert out["emotion_ids"].tolist() == [1, 7, 0]
    assert out["intensity_ids"].tolist() == [0, 1, 2]
    assert out["speaker_ids"].tolist() == [1, 2, 0]
    # names in any case; a speaker the model does not know is the unknown speaker; digit strings are ids
    unknown = processor(clips, sampling_rate=16000, speaker=["m003", "W999", "2"])
    assert unknown["speaker_ids"].tolist() == [1, 0, 2]
    assert processor(clips, sampling_rate=16000, emotion=torch.tensor(4))["emotion_ids"].tolist() == [4, 4, 4]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            dict(emotion="joyful"),
            r"emotion must be one of \['neutral', 'angry', .*'surprised'\] or an id in \[0, 8\), got 'joyful'",
        ),
        (dict(emotion=8), r"emotion must be one of .* got 8"),
        (dict(intensity=0), r"intensity must be a level in \[1, 2, 3\], got 0"),
        (dict(speaker=3), r"speaker must be one of the known speakers \['M003', 'W009'\], an id in \[0, 2\].* got 3"),
        (dict(speaker="7"), r"speaker must be one of the known speakers .* got '7'"),
        (dict(emotion=True), r"emotion must be one of .* got True"),
        (dict(emotion=["happy", "sad"]), r"emotion must be one label or one per audio clip \(1\), got 2 labels"),
        (dict(return_tensors="tf"), "return_tensors must be 'pt', 'np' or None, got 'tf'"),
        (dict(padding="longest"), r"unexpected arguments \['padding'\]"),
    ],
)
def test_bad_labels(processor, kwargs, message):
    with pytest.raises(ValueError, match=message):
        processor(tone(0.1, 16000), sampling_rate=16000, **kwargs)


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (
            np.zeros(100, dtype=np.float32),
            r"audio\[0\] must be at least one animation frame long \(534 samples = 1/30 s at 16000 Hz\), got 100",
        ),
        (np.zeros(0, dtype=np.float32), r"audio\[0\]: audio must hold at least one sample"),
        (np.array([0.0, np.nan] * 400), r"audio\[0\]: audio must be finite"),
        (np.zeros((4, 16000)), r"2-D \(channels, samples\) with 1-2 channels.*got an array of shape \(4, 16000\)"),
        (np.zeros((1, 2, 16000)), r"audio must be 1-D or 2-D \(channels, samples\), got shape \(1, 2, 16000\)"),
        (None, "audio must be a path, an array of samples or a list of them, got None"),
        ([], "at least one clip"),
    ],
)
def test_bad_audio(processor, audio, message):
    with pytest.raises(ValueError, match=message):
        processor(audio, sampling_rate=16000)


def test_short_audio_is_checked_after_resampling(processor):
    # 600 samples at 48 kHz = 200 samples at 16 kHz: shorter than one frame at 30 fps
    with pytest.raises(ValueError, match="at least one animation frame long"):
        processor(np.ones(600, dtype=np.float32), sampling_rate=48000)
    assert processor(np.ones(1600, dtype=np.float32), sampling_rate=48000)["input_values"].shape == (1, 534)


def test_missing_file(processor, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        processor(str(tmp_path / "nope.wav"))


def test_save_and_load_round_trip(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    loaded = ESARMProcessor.from_pretrained(tmp_path)
    assert loaded.speakers == ["M003", "W009"] and loaded.fps == 30.0
    assert isinstance(loaded.feature_extractor, Wav2Vec2FeatureExtractor)
    assert loaded.feature_extractor.to_dict() == processor.feature_extractor.to_dict()
    clips = [tone(0.3, 16000), tone(0.2, 8000)]
    expected = processor(clips, sampling_rate=16000, emotion="sad", speaker="M003")
    actual = loaded(clips, sampling_rate=16000, emotion="sad", speaker="M003")
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key])


def test_custom_feature_extractor_and_fps():
    extractor = Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=False, return_attention_mask=True)
    processor = ESARMProcessor(extractor, fps=60)
    assert processor.min_samples == 267 and processor.num_speakers == 0
    out = processor(np.full(300, 0.5, dtype=np.float32), sampling_rate=16000)
    assert torch.allclose(out["input_values"], torch.full((1, 300), 0.5))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(speakers=["a", "a"]), r"speakers must be unique names, got duplicates \['a'\]"),
        (dict(speakers=["a", 3]), "speakers must be a list of non-empty names"),
        (dict(speakers=["Ann", "ann"]), r"speakers must be unique names, got duplicates \['Ann', 'ann'\]"),
        (dict(fps=0), "fps must be a positive number of frames per second, got 0"),
    ],
)
def test_bad_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ESARMProcessor(**kwargs)


# ---- dependency-free fallbacks (a saved model folder runs where scipy, soundfile and PyAV are missing) ----------


@pytest.mark.parametrize(("from_rate", "to_rate"), [(44100, 16000), (48000, 16000), (8000, 16000), (22050, 16000)])
def test_numpy_resampling_equals_scipy(monkeypatch, from_rate, to_rate):
    from scipy.signal import resample_poly

    import esarm.audio

    audio = np.random.default_rng(0).standard_normal((2, from_rate // 3)).astype(np.float32)
    expected = esarm.audio.resample(audio, from_rate, to_rate)
    divisor = math.gcd(from_rate, to_rate)
    np.testing.assert_array_equal(expected, resample_poly(audio, to_rate // divisor, from_rate // divisor, axis=-1)
                                  .astype(np.float32))  # fmt: skip
    monkeypatch.setattr(esarm.audio, "is_scipy_available", lambda: False)
    fallback = esarm.audio.resample(audio, from_rate, to_rate)
    assert fallback.shape == expected.shape and fallback.dtype == np.float32
    np.testing.assert_allclose(fallback, expected, atol=2e-6)


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32"])
def test_wav_files_read_without_soundfile(tmp_path, monkeypatch, subtype):
    import esarm.audio

    stereo = (np.random.default_rng(1).uniform(-0.9, 0.9, (2205, 2))).astype(np.float32)
    path = tmp_path / "speech.wav"
    soundfile.write(path, stereo, 22050, subtype=subtype)
    expected = esarm.audio.load_audio(path)
    monkeypatch.setattr(esarm.audio, "is_soundfile_available", lambda: False)
    monkeypatch.setattr(esarm.audio, "is_av_available", lambda: False)
    np.testing.assert_allclose(esarm.audio.load_audio(path), expected, atol=1e-6)


def test_other_files_without_soundfile_and_pyav_name_what_to_install(tmp_path, monkeypatch):
    import esarm.audio

    path = tmp_path / "speech.flac"
    soundfile.write(path, np.zeros(1600, np.float32), 16000)
    monkeypatch.setattr(esarm.audio, "is_soundfile_available", lambda: False)
    monkeypatch.setattr(esarm.audio, "is_av_available", lambda: False)
    with pytest.raises(ImportError, match=r"needs soundfile .* or PyAV .*pip install soundfile av"):
        ESARMProcessor()(str(path))
