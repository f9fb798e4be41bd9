"""esarm.audio: loading wav / flac (soundfile) and m4a / mp3 (PyAV), downmixing, resampling, validation."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from esarm.audio import load_audio, resample, to_mono, validate_audio


def tone(frequency: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def dominant_frequency(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    return float(np.fft.rfftfreq(len(audio), 1 / rate)[spectrum.argmax()])


def write_with_pyav(path, audio: np.ndarray, rate: int, codec: str) -> None:
    """Encode mono float audio with FFmpeg through PyAV (AAC in .m4a, MP3 in .mp3)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        frame_size = 1024
        for start in range(0, len(audio), frame_size):
            chunk = audio[None, start : start + frame_size]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="flt", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@pytest.mark.parametrize(("suffix", "rate"), [(".wav", 16000), (".wav", 44100), (".flac", 22050)])
def test_load_soundfile_formats(tmp_path, suffix, rate):
    audio = tone(440, 0.5, rate)
    path = tmp_path / f"tone{suffix}"
    soundfile.write(path, audio, rate)
    loaded = load_audio(path)
    assert loaded.dtype == np.float32 and loaded.ndim == 1
    assert len(loaded) == 8000
    assert dominant_frequency(loaded, 16000) == pytest.approx(440, abs=4)
    if rate == 16000:
        np.testing.assert_allclose(loaded, audio, atol=1e-4)  # 16-bit PCM round trip


def test_load_stereo_file_downmixes(tmp_path):
    left, right = tone(300, 0.25, 16000), tone(700, 0.25, 16000)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(str(path)), (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize(("suffix", "codec"), [(".m4a", "aac"), (".mp3", "mp3")])
def test_load_compressed_formats_with_pyav(tmp_path, suffix, codec):
    path = tmp_path / f"tone{suffix}"
    write_with_pyav(path, tone(440, 1.0, 44100), 44100, codec)
    loaded = load_audio(path)
    assert loaded.dtype == np.float32 and loaded.ndim == 1
    # encoders add priming / padding samples: the length is within ~0.1 s of one second
    assert abs(len(loaded) - 16000) < 1600
    assert dominant_frequency(loaded, 16000) == pytest.approx(440, abs=4)


def test_load_array_and_tensor():
    import torch

    audio = tone(200, 0.5, 8000)
    loaded = load_audio(audio, sampling_rate=8000)
    assert len(loaded) == 8000
    assert dominant_frequency(loaded, 16000) == pytest.approx(200, abs=4)
    np.testing.assert_allclose(load_audio(torch.from_numpy(audio), sampling_rate=16000), audio)
    stereo = np.stack([audio, -audio])
    np.testing.assert_allclose(load_audio(stereo, sampling_rate=16000), np.zeros_like(audio), atol=1e-7)
    int_audio = (audio * 32767).astype(np.int16)
    np.testing.assert_allclose(load_audio(int_audio, sampling_rate=16000), audio, atol=1e-4)


def test_load_array_without_rate_assumes_target_and_warns(caplog):
    audio = tone(200, 0.1, 16000)
    with caplog.at_level("WARNING", logger="esarm.audio"):
        np.testing.assert_array_equal(load_audio(audio), audio)
    assert "assuming 16000 Hz" in caplog.text


def test_resample_lengths_and_identity():
    audio = tone(100, 1.0, 48000)
    assert len(resample(audio, 48000, 16000)) == 16000
    assert len(resample(audio, 48000, 22050)) == 22050
    assert resample(np.stack([audio, audio]), 48000, 16000).shape == (2, 16000)
    np.testing.assert_array_equal(resample(audio, 16000, 16000), audio)
    with pytest.raises(ValueError, match="from_rate must be a positive sampling rate in Hz, got 0"):
        resample(audio, 0, 16000)
    with pytest.raises(ValueError, match="to_rate must be a whole number of Hz, got 16000.5"):
        resample(audio, 16000, 16000.5)


def test_to_mono():
    assert to_mono(np.ones((2, 5), dtype=np.float32)).shape == (5,)
    assert to_mono(np.ones(5, dtype=np.float32)).shape == (5,)


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (np.zeros((1, 2, 3)), r"audio must be 1-D or 2-D \(channels, samples\), got shape \(1, 2, 3\)"),
        (np.zeros(0), r"audio must hold at least one sample, got shape \(0,\)"),
        (np.zeros((2, 0)), "at least one sample"),
        (np.array([0.0, np.nan, np.inf]), "audio must be finite, got 2 NaN/inf samples"),
        (np.zeros((16000, 2)), r"at most 16 channels, got shape \(16000, 2\) \(transpose"),
        (np.array(["a", "b"]), "audio must be a numeric array of samples, got dtype <U1"),
        (np.zeros(3, dtype=np.complex64), "real-valued"),
    ],
)
def test_validate_audio_rejects(audio, message):
    with pytest.raises(ValueError, match=message):
        validate_audio(audio)


def test_validate_audio_names_the_argument():
    with pytest.raises(ValueError, match=r"speech must be finite"):
        validate_audio([0.0, float("nan")], argument="speech")


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_audio(tmp_path / "missing.wav")
    junk = tmp_path / "junk.m4a"
    junk.write_bytes(b"not audio at all")
    with pytest.raises(ValueError, match="must be an audio file soundfile or PyAV can decode"):
        load_audio(junk)
    path = tmp_path / "tone.wav"
    soundfile.write(path, tone(440, 0.1, 16000), 16000)
    with pytest.raises(ValueError, match=r"sampling_rate must match the file's rate \(16000 Hz\).*got 8000"):
        load_audio(path, sampling_rate=8000)


def test_unsigned_integer_audio_is_centred():
    from esarm.audio import validate_audio

    pcm = np.array([0, 64, 128, 192, 255], dtype=np.uint8)  # 8-bit WAV: silence is 128
    np.testing.assert_allclose(validate_audio(pcm), [-1.0, -0.5, 0.0, 0.5, 127 / 128], atol=1e-7)
    np.testing.assert_allclose(validate_audio(np.array([0, 32768], np.uint16)), [-1.0, 0.0])
    np.testing.assert_allclose(validate_audio(np.array([-32768, 16384], np.int16)), [-1.0, 0.5])


def test_a_folder_is_not_an_audio_file(tmp_path):
    from esarm import ESARMProcessor
    from esarm.audio import load_audio

    with pytest.raises(ValueError, match="must be an audio file, got a folder"):
        load_audio(tmp_path)
    with pytest.raises(ValueError, match=r"audio\[0\]: path .* must be an audio file, got a folder"):
        ESARMProcessor()(str(tmp_path))


def test_one_minimum_duration_for_processor_and_cli():
    from esarm import ESARMProcessor
    from esarm.audio import check_duration, min_samples

    processor = ESARMProcessor()
    assert processor.min_samples == min_samples(16000, 30.0) == 534
    check_duration(np.zeros(534, np.float32), 16000, 30.0)
    with pytest.raises(
        ValueError, match=r"at least one animation frame long \(534 samples = 1/30 s at 16000 Hz\), got 533"
    ):
        check_duration(np.zeros(533, np.float32), 16000, 30.0)
    with pytest.raises(ValueError, match="534 samples"):
        processor(np.zeros(533, np.float32), sampling_rate=16000)
