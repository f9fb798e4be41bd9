"""Audio augmentation for training: noise, reverberation, telephone band, codec artefacts, gain and speed.

The synthetic corpus's speech is clean and each voice is consistent, so a speech encoder can learn the voices
instead of the phonetics. Each transform below is a config switch with a probability; :class:`AudioAugmenter`
applies them in the order a signal meets them (speed, room, channel, noise, gain), seeded per item so that a run
is reproducible. Speed perturbation changes the clip's duration: the augmenter returns the factor and
:func:`resample_timeline` resamples the blendshape timeline to match (a factor of 1.1 plays the clip 10 %
faster, in ``1 / 1.1`` of the time, with pitch and formants 10 % higher, as Kaldi's speed perturbation).

With the collator's per-clip normalisation (``normalize=True``) gain changes nothing but clipping: a gain above
0 dB saturates loud clips, which is the artefact it is there to teach.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.signal import butter, fftconvolve, resample_poly, sosfiltfilt


def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator, colour: str = "white") -> np.ndarray:
    """``audio`` plus Gaussian noise at ``snr_db`` dB below the clip's mean power.

    Args:
        colour: ``"white"`` (flat spectrum) or ``"pink"`` (power falling 3 dB per octave, like most room noise).
    """
    if colour not in ("white", "pink"):
        raise ValueError(f"colour must be 'white' or 'pink', got {colour!r}")
    noise = rng.standard_normal(len(audio))
    if colour == "pink":
        spectrum = np.fft.rfft(noise)
        spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
        spectrum[0] = 0.0
        noise = np.fft.irfft(spectrum, n=len(audio))
    power = float(np.mean(np.square(audio, dtype=np.float64)))
    noise *= math.sqrt(power / 10 ** (snr_db / 10) / (np.mean(noise**2) + 1e-20))
    return (audio + noise).astype(np.float32)


def room_impulse_response(
    sampling_rate: int, rt60: float, rng: np.random.Generator, direct_to_reverberant_db: float = 3.0
) -> np.ndarray:
    """A synthetic room impulse response: a direct path (sample 0) and an exponentially decaying noise tail.

    The tail's amplitude falls 60 dB in ``rt60`` seconds (its length); its energy is ``direct_to_reverberant_db``
    below the direct path's. Real rooms add early reflections, which this model folds into the tail.
    """
    if rt60 <= 0:
        raise ValueError(f"rt60 must be > 0 seconds, got {rt60}")
    length = max(2, int(rt60 * sampling_rate))
    t = np.arange(length) / sampling_rate
    tail = rng.standard_normal(length) * np.exp(-3.0 * math.log(10) * t / rt60)  # 10 ** (-3 t / rt60): -60 dB
    tail[0] = 0.0
    tail *= math.sqrt(10 ** (-direct_to_reverberant_db / 10) / (np.sum(tail**2) + 1e-20))
    tail[0] = 1.0
    return tail


def reverberate(audio: np.ndarray, impulse_response: np.ndarray) -> np.ndarray:
    """``audio`` convolved with ``impulse_response``, cut to its length (the direct path keeps the timing)."""
    wet = fftconvolve(audio, impulse_response)[: len(audio)]
    return wet.astype(np.float32)


def band_limit(audio: np.ndarray, sampling_rate: int, low: float = 300.0, high: float = 3400.0) -> np.ndarray:
    """Band-pass ``low``..``high`` Hz (default: the telephone band), zero phase (no delay against the timeline)."""
    if not 0 < low < high < sampling_rate / 2:
        raise ValueError(f"low and high must satisfy 0 < low < high < {sampling_rate / 2} Hz, got {low} and {high}")
    sos = butter(4, [low, high], btype="bandpass", fs=sampling_rate, output="sos")
    return sosfiltfilt(sos, audio).astype(np.float32)


def mu_law(audio: np.ndarray, bits: int = 8, mu: float = 255.0) -> np.ndarray:
    """G.711-style companding: compress with mu-law, quantise to ``bits`` bits, expand."""
    if not 2 <= bits <= 16:
        raise ValueError(f"bits must be in 2..16, got {bits}")
    x = np.clip(audio, -1.0, 1.0)
    compressed = np.sign(x) * np.log1p(mu * np.abs(x)) / math.log1p(mu)
    levels = 2 ** (bits - 1)
    quantised = np.round(compressed * levels) / levels
    return (np.sign(quantised) * np.expm1(np.abs(quantised) * math.log1p(mu)) / mu).astype(np.float32)


def downsample_upsample(audio: np.ndarray, sampling_rate: int, low_rate: int = 8000) -> np.ndarray:
    """Down to ``low_rate`` Hz and back: everything above ``low_rate / 2`` is lost, as in a narrowband codec."""
    if not 0 < low_rate < sampling_rate:
        raise ValueError(f"low_rate must be in (0, {sampling_rate}) Hz, got {low_rate}")
    low = resample_poly(audio, low_rate, sampling_rate)
    return resample_poly(low, sampling_rate, low_rate)[: len(audio)].astype(np.float32)


def change_speed(audio: np.ndarray, factor: float, max_denominator: int = 50) -> tuple[np.ndarray, float]:
    """Play ``audio`` ``factor`` times faster (duration / factor, pitch * factor); returns (audio, exact factor).

    The factor is rounded to a ratio ``p / q`` with ``q <= max_denominator`` (a polyphase filter of small size);
    the returned factor is that ratio, the one to resample the blendshape timeline with.
    """
    if factor <= 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    ratio = Fraction(factor).limit_denominator(max_denominator)
    if ratio == 1:
        return audio.astype(np.float32), 1.0
    return resample_poly(audio, ratio.denominator, ratio.numerator).astype(np.float32), float(ratio)


def resample_timeline(frames: np.ndarray, factor: float) -> np.ndarray:
    """Resample a ``[T, ...]`` timeline for audio played ``factor`` times faster: ``round(T / factor)`` frames.

    Output frame ``k`` is the input linearly interpolated at frame ``k * factor`` (frame centres as the corpus's).
    """
    if factor <= 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    frames = np.asarray(frames)
    num_frames = max(1, int(round(len(frames) / factor)))
    positions = np.clip((np.arange(num_frames) + 0.5) * factor - 0.5, 0, len(frames) - 1)
    low = np.floor(positions).astype(int)
    high = np.minimum(low + 1, len(frames) - 1)
    weight = (positions - low).reshape(-1, *([1] * (frames.ndim - 1)))
    return ((1 - weight) * frames[low] + weight * frames[high]).astype(frames.dtype)


def _check_range(name: str, value: tuple[float, float], low: float, high: float | None = None) -> tuple[float, float]:
    value = (float(value[0]), float(value[1]))
    if not low <= value[0] <= value[1] or (high is not None and value[1] > high):
        bound = f"{low} <= low <= high" + (f" <= {high}" if high is not None else "")
        raise ValueError(f"{name} must be (low, high) with {bound}, got {value}")
    return value


@dataclass
class AudioAugmentationConfig:
    """Which transforms :class:`AudioAugmenter` applies, how often, and how strongly (ranges are drawn uniformly).

    Args:
        speed_probability: chance of a speed change; ``speed`` its range (factor, 1.1 = 10 % faster).
        reverb_probability: chance of a synthetic room; ``rt60`` its reverberation time range (s) and
            ``direct_to_reverberant_db`` the direct path's energy over the tail's.
        band_limit_probability: chance of the telephone band (300-3400 Hz).
        codec_probability: chance of a codec artefact: 8-bit mu-law or a round trip through 8 kHz (even odds).
        noise_probability: chance of added noise (white or pink, even odds); ``snr_db`` its range.
        gain_probability: chance of a gain change; ``gain_db`` its range (the result is clipped to [-1, 1]).
    """

    speed_probability: float = 0.3
    speed: tuple[float, float] = (0.9, 1.1)
    reverb_probability: float = 0.3
    rt60: tuple[float, float] = (0.15, 0.7)
    direct_to_reverberant_db: tuple[float, float] = (0.0, 10.0)
    band_limit_probability: float = 0.15
    codec_probability: float = 0.15
    noise_probability: float = 0.5
    snr_db: tuple[float, float] = (5.0, 30.0)
    gain_probability: float = 0.3
    gain_db: tuple[float, float] = (-12.0, 6.0)

    def __post_init__(self) -> None:
        for name in ("speed", "reverb", "band_limit", "codec", "noise", "gain"):
            value = getattr(self, f"{name}_probability")
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}_probability must be in [0, 1], got {value}")
        self.speed = _check_range("speed", self.speed, 0.5, 2.0)
        self.rt60 = _check_range("rt60", self.rt60, 0.01, 3.0)
        self.direct_to_reverberant_db = _check_range("direct_to_reverberant_db", self.direct_to_reverberant_db, -20.0)
        self.snr_db = _check_range("snr_db", self.snr_db, -20.0)
        self.gain_db = _check_range("gain_db", self.gain_db, -60.0, 40.0)

    @classmethod
    def off(cls) -> AudioAugmentationConfig:
        """Every probability 0 (the augmenter returns its input)."""
        names = ("speed", "reverb", "band_limit", "codec", "noise", "gain")
        return cls(**{f"{name}_probability": 0.0 for name in names})


class AudioAugmenter:
    """Applies an :class:`AudioAugmentationConfig` to one clip: ``augmenter(audio, sampling_rate, seed)``.

    Returns ``(audio, speed)``: float32 audio and the speed factor applied (1.0 without a speed change), to
    resample the clip's blendshapes with :func:`resample_timeline`. The same seed gives the same output.
    """

    def __init__(self, config: AudioAugmentationConfig | None = None) -> None:
        self.config = config or AudioAugmentationConfig()

    def __repr__(self) -> str:
        return f"AudioAugmenter({self.config})"

    def __call__(self, audio: np.ndarray, sampling_rate: int, seed: int) -> tuple[np.ndarray, float]:
        c = self.config
        rng = np.random.default_rng(seed)
        # one draw per switch whatever happens before, so that turning one transform off leaves the others' draws
        coins = rng.random(6)
        out = np.asarray(audio, np.float32)
        speed = 1.0
        if coins[0] < c.speed_probability:
            out, speed = change_speed(out, rng.uniform(*c.speed))
        if coins[1] < c.reverb_probability:
            response = room_impulse_response(
                sampling_rate, rng.uniform(*c.rt60), rng, rng.uniform(*c.direct_to_reverberant_db)
            )
            out = reverberate(out, response)
        if coins[2] < c.band_limit_probability:
            out = band_limit(out, sampling_rate)
        if coins[3] < c.codec_probability:
            out = mu_law(out) if rng.random() < 0.5 else downsample_upsample(out, sampling_rate)
        if coins[4] < c.noise_probability:
            out = add_noise(out, rng.uniform(*c.snr_db), rng, "white" if rng.random() < 0.5 else "pink")
        if coins[5] < c.gain_probability:
            out = np.clip(out * 10 ** (rng.uniform(*c.gain_db) / 20), -1.0, 1.0)
        return out.astype(np.float32), speed


__all__ = [
    "AudioAugmentationConfig",
    "AudioAugmenter",
    "add_noise",
    "band_limit",
    "change_speed",
    "downsample_upsample",
    "mu_law",
    "resample_timeline",
    "reverberate",
    "room_impulse_response",
]
