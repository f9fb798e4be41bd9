"""Audio augmentation: measured SNR, reverberation decay, band limits, codec, speed and the timeline, seeding."""

from __future__ import annotations

import numpy as np
import pytest

from esarm.data.augmentation import (
    AudioAugmentationConfig,
    AudioAugmenter,
    add_noise,
    band_limit,
    change_speed,
    downsample_upsample,
    mu_law,
    resample_timeline,
    reverberate,
    room_impulse_response,
)
from esarm.data.collators import STACollator

RATE = 16000


def _tone(frequency: float = 440.0, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def _band_power(audio: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    frequencies = np.fft.rfftfreq(len(audio), 1 / RATE)
    return float(spectrum[(frequencies >= low) & (frequencies < high)].sum())


@pytest.mark.parametrize("colour", ["white", "pink"])
@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_noise_has_the_requested_snr(snr_db, colour):
    clean = _tone()
    noisy = add_noise(clean, snr_db, np.random.default_rng(0), colour)
    measured = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean((noisy - clean).astype(np.float64) ** 2))
    assert abs(measured - snr_db) < 0.05


def test_pink_noise_falls_with_frequency():
    noise = add_noise(np.full(RATE, 0.1, np.float32), 0.0, np.random.default_rng(1), "pink") - 0.1
    # 3 dB per octave: the 4-8 kHz octave holds about as much power as 125-250 Hz, far less per Hz
    assert _band_power(noise, 100, 200) / 100 > 10 * _band_power(noise, 4000, 8000) / 4000


def test_room_impulse_response_decays_60_db_in_rt60():
    response = room_impulse_response(RATE, 0.5, np.random.default_rng(0), direct_to_reverberant_db=3.0)
    assert len(response) == RATE // 2 and response[0] == 1.0
    tail = response[1:] ** 2
    assert abs(10 * np.log10(tail.sum()) + 3.0) < 1e-6  # tail energy 3 dB below the direct path
    early, late = tail[: RATE // 20].mean(), tail[-RATE // 20 :].mean()
    assert 45 < 10 * np.log10(early / late) < 60  # first vs last 50 ms of a 500 ms tail: ~54 dB apart


def test_reverberation_keeps_length_and_timing_and_smears_energy():
    click = np.zeros(RATE, np.float32)
    click[1000] = 1.0
    wet = reverberate(click, room_impulse_response(RATE, 0.3, np.random.default_rng(2)))
    assert len(wet) == len(click) and np.argmax(np.abs(wet)) == 1000
    assert np.sum(wet[1100:] ** 2) > 0.1 * np.sum(wet**2)


def test_band_limit_keeps_the_telephone_band():
    mixture = _tone(100.0) + _tone(1000.0) + _tone(6000.0)
    filtered = band_limit(mixture, RATE)
    assert _band_power(filtered, 900, 1100) > 0.8 * _band_power(mixture, 900, 1100)
    assert _band_power(filtered, 90, 110) < 0.01 * _band_power(mixture, 90, 110)
    assert _band_power(filtered, 5900, 6100) < 0.01 * _band_power(mixture, 5900, 6100)
    with pytest.raises(ValueError, match="low and high"):
        band_limit(mixture, RATE, low=3000, high=9000)


def test_codecs_add_artefacts_of_the_right_kind():
    tone = _tone(300.0)
    companded = mu_law(tone)
    error = companded - tone
    assert 0 < np.sqrt(np.mean(error**2)) < 0.01  # 8-bit mu-law: ~35-40 dB SNR on a loud tone
    assert len(np.unique(companded)) <= 256
    mixture = _tone(1000.0) + _tone(6000.0)
    narrow = downsample_upsample(mixture, RATE)
    assert len(narrow) == len(mixture)
    assert _band_power(narrow, 5900, 6100) < 1e-3 * _band_power(mixture, 5900, 6100)
    assert _band_power(narrow, 900, 1100) > 0.9 * _band_power(mixture, 900, 1100)


@pytest.mark.parametrize("factor", [0.9, 1.0, 1.1, 1.23])
def test_speed_change_scales_length_and_pitch(factor):
    tone = _tone(500.0, 2.0)
    fast, exact = change_speed(tone, factor)
    assert abs(exact - factor) < 0.02
    assert abs(len(fast) - len(tone) / exact) <= 1
    peak = np.fft.rfftfreq(len(fast), 1 / RATE)[np.argmax(np.abs(np.fft.rfft(fast)))]
    assert abs(peak - 500.0 * exact) < 2.0


def test_timeline_follows_the_speed_change():
    frames = np.stack([np.arange(60, dtype=np.float32)] * 52, axis=1)  # frame index in every channel
    faster = resample_timeline(frames, 1.2)
    assert faster.shape == (50, 52) and faster.dtype == np.float32
    # output frame k shows input time (k + 0.5) * 1.2 - 0.5: the same instant of speech
    np.testing.assert_allclose(faster[10, 0], 10.5 * 1.2 - 0.5, atol=1e-5)
    assert resample_timeline(frames, 0.8).shape == (75, 52)
    np.testing.assert_array_equal(resample_timeline(frames, 1.0), frames)


def test_augmenter_is_seeded_and_each_switch_works():
    audio = _tone(300.0) + 0.05 * np.random.default_rng(0).standard_normal(RATE).astype(np.float32)
    augmenter = AudioAugmenter(AudioAugmentationConfig(speed_probability=1.0, noise_probability=1.0))
    first, speed = augmenter(audio, RATE, seed=7)
    again, speed_again = augmenter(audio, RATE, seed=7)
    other, _ = augmenter(audio, RATE, seed=8)
    np.testing.assert_array_equal(first, again)
    assert speed == speed_again != 1.0 and abs(len(first) - len(audio) / speed) <= 1
    assert not np.array_equal(first[: len(other)], other[: len(first)])
    unchanged, factor = AudioAugmenter(AudioAugmentationConfig.off())(audio, RATE, seed=7)
    np.testing.assert_array_equal(unchanged, audio)
    assert factor == 1.0


@pytest.mark.parametrize(
    ("overrides", "argument"),
    [
        ({"noise_probability": 1.5}, "noise_probability"),
        ({"speed": (1.1, 0.9)}, "speed"),
        ({"rt60": (0.0, 0.5)}, "rt60"),
        ({"gain_db": (-6.0, 60.0)}, "gain_db"),
    ],
)
def test_config_validation_names_the_argument(overrides, argument):
    with pytest.raises(ValueError, match=argument):
        AudioAugmentationConfig(**overrides)


def test_sta_collator_augments_audio_and_resamples_blendshapes():
    features = [
        {
            "audio": _tone(200.0, 2.0),
            "blendshapes": np.tile(np.linspace(0, 1, 60, dtype=np.float32)[:, None], (1, 52)),
            "emotion": "happy",
            "intensity": 3,
            "speaker": "M001",
            "fps": 30.0,
        }
    ]
    plain = STACollator(speakers=["M001"], seed=3)(features)
    speed_only = AudioAugmentationConfig.off()
    speed_only.speed_probability, speed_only.speed = 1.0, (1.2, 1.2)
    augmented = STACollator(speakers=["M001"], seed=3, augmentation=AudioAugmenter(speed_only))(features)
    assert plain["input_values"].shape[1] == 32000 and plain["blendshapes"].shape[1] == 60
    assert augmented["input_values"].shape[1] == round(32000 / 1.2)
    assert augmented["blendshapes"].shape[1] == 50  # 2 s of motion played in 1.67 s at 30 fps
    assert float(augmented["blendshapes"][0, -1, 0]) > 0.98  # the motion still ends where the speech ends
    # seeded per clip from the collator's RNG: the same collator seed gives the same batch
    noisy = AudioAugmentationConfig(noise_probability=1.0)
    first = STACollator(speakers=["M001"], seed=5, augmentation=AudioAugmenter(noisy))(features)
    again = STACollator(speakers=["M001"], seed=5, augmentation=AudioAugmenter(noisy))(features)
    assert np.array_equal(first["input_values"].numpy(), again["input_values"].numpy())
