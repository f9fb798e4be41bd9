"""A synthetic emotional talking-face corpus shaped like MEAD, generated offline in seconds.

Every speaker reads the same sentences in each of MEAD's 8 emotions at 3 intensities (neutral at intensity 1
only). Speech comes from eSpeak NG (a distinct voice and variant per speaker); the emotion changes the voice's
prosody (pitch level and range, rate, volume). Ground-truth ARKit blendshapes at ``fps`` combine

- lips and jaw from the phoneme timing through a viseme table with coarticulation
  (:mod:`esarm.data.visemes`), the mouth opening scaled by the loudness envelope of the audio;
- the emotion's expression on the upper face, cheeks and mouth corners (brows, eye widen / squint, smile,
  frown, sneer), scaled by the intensity, with an onset, a slow drift and brow raises on pitch accents;
- blinks (a Poisson process), small gaze movements, and per-speaker style (articulation amplitude,
  left/right asymmetry, expressivity, resting offsets, blink rate).

The schema is the package's (``id``, ``speaker``, ``emotion``, ``intensity``, ``sentence``, ``audio``,
``sampling_rate``, ``blendshapes``, ``fps``) plus ``phonemes`` (IPA, eSpeak NG) and ``phoneme_times``
(start of each phoneme in seconds). Everything is deterministic for a seed, whatever the number of workers.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from ..blendshapes import ARKIT_NAMES, BLENDSHAPE_INDEX, EMOTIONS, INTENSITIES, NUM_BLENDSHAPES
from .schema import clip_features, rows_to_dataset
from .tts import EspeakSynthesizer, get_synthesizer, isolated_synthesizer
from .visemes import OPENING_NAMES, coarticulate, phoneme_segments, stress_curve

logger = logging.getLogger(__name__)

ENGINE_SAMPLING_RATE = 22050

# Harvard sentences (IEEE 1969, public domain), shortest first so that small corpora have short clips.
SENTENCES: tuple[str, ...] = (
    "Two blue fish swam in the tank.",
    "Read verse out loud for pleasure.",
    "Smoky fires lack flame and heat.",
    "Her purse was full of useless trash.",
    "The boy was there when the sun rose.",
    "Rice is often served in round bowls.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "The juice of lemons makes fine punch.",
    "Glue the sheet to the dark blue background.",
    "A pot of tea helps to pass the evening.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
    "The swan dive was far short of perfect.",
    "The birch canoe slid on the smooth planks.",
    "The box was thrown beside the parked truck.",
    "Four hours of steady work faced us.",
    "A rod is used to catch pink salmon.",
    "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.",
    "The beauty of the view stunned the young boy.",
    "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.",
    "These days a chicken leg is a rare dish.",
    "The hogs were fed chopped corn and garbage.",
    "A large size in stockings is hard to sell.",
    "The source of the huge river is the clear spring.",
    "It's easy to tell the depth of a well.",
)

# (eSpeak language voice, variant, "M"/"W") per speaker; more speakers than listed cycle with other pitches.
VOICES: tuple[tuple[str, str, str], ...] = (
    ("en-us", "m3", "M"),
    ("en-us", "f2", "W"),
    ("en", "m1", "M"),
    ("en", "f3", "W"),
    ("en-gb-x-rp", "m7", "M"),
    ("en-us", "f5", "W"),
    ("en-gb-scotland", "m2", "M"),
    ("en-029", "f1", "W"),
    ("en-us-nyc", "m4", "M"),
    ("en-gb-x-rp", "f4", "W"),
    ("en-us", "m6", "M"),
    ("en", "f2", "W"),
    ("en-gb-x-gbclan", "m5", "M"),
    ("en-us-nyc", "f3", "W"),
    ("en-029", "m1", "M"),
    ("en-gb-scotland", "f5", "W"),
)

INTENSITY_SCALE: dict[int, float] = {1: 0.4, 2: 0.7, 3: 1.0}


def _both(name: str, value: float) -> dict[str, float]:
    return {f"{name}Left": value, f"{name}Right": value}


@dataclass(frozen=True)
class EmotionProfile:
    """How one emotion at intensity 3 changes the voice and the face (intensity scales the changes).

    Attributes:
        pitch, pitch_range, rate, volume: additive changes to eSpeak's parameters (rate in words/minute).
        expression: ARKit name -> weight of the emotion's facial expression.
        articulation: gain on the lip/jaw viseme amplitude (tense or lax speech).
        blink_rate: factor on the speaker's blink rate.
        brow_accent: gain on the brow raises that follow pitch accents (negative: brows lower instead).
    """

    pitch: float = 0.0
    pitch_range: float = 0.0
    rate: float = 0.0
    volume: float = 0.0
    expression: dict[str, float] = field(default_factory=dict)
    articulation: float = 1.0
    blink_rate: float = 1.0
    brow_accent: float = 1.0


EMOTION_PROFILES: dict[str, EmotionProfile] = {
    "neutral": EmotionProfile(),
    "angry": EmotionProfile(
        pitch=6, pitch_range=25, rate=25, volume=60, articulation=1.25, blink_rate=1.3, brow_accent=-1.0,
        expression={**_both("browDown", 0.7), **_both("eyeSquint", 0.35), **_both("noseSneer", 0.3),
                    **_both("mouthPress", 0.15), **_both("mouthFrown", 0.2), **_both("eyeWide", 0.1),
                    **_both("mouthUpperUp", 0.15)},
    ),
    "contempt": EmotionProfile(
        pitch=-6, pitch_range=-12, rate=-20, volume=-10, articulation=0.85, blink_rate=0.8, brow_accent=0.6,
        expression={"mouthSmileLeft": 0.4, "mouthDimpleLeft": 0.35, "cheekSquintLeft": 0.25,
                    "mouthLeft": 0.2, **_both("eyeSquint", 0.15), "browDownRight": 0.15, "browOuterUpLeft": 0.1},
    ),
    "disgusted": EmotionProfile(
        pitch=-10, pitch_range=5, rate=-30, volume=-5, articulation=0.9, blink_rate=1.1, brow_accent=-0.5,
        expression={**_both("noseSneer", 0.6), **_both("mouthUpperUp", 0.35), **_both("browDown", 0.45),
                    **_both("cheekSquint", 0.4), **_both("eyeSquint", 0.3), **_both("mouthFrown", 0.25),
                    "mouthShrugUpper": 0.2},
    ),
    "fear": EmotionProfile(
        pitch=22, pitch_range=-10, rate=30, volume=-15, articulation=0.9, blink_rate=1.6, brow_accent=1.3,
        expression={"browInnerUp": 0.7, **_both("browOuterUp", 0.3), **_both("eyeWide", 0.6),
                    **_both("mouthStretch", 0.4), **_both("browDown", 0.15), "jawOpen": 0.05},
    ),
    "happy": EmotionProfile(
        pitch=15, pitch_range=30, rate=15, volume=25, articulation=1.1, blink_rate=1.0, brow_accent=1.3,
        expression={**_both("mouthSmile", 0.7), **_both("cheekSquint", 0.5), **_both("eyeSquint", 0.3),
                    **_both("mouthDimple", 0.2), **_both("browOuterUp", 0.1), "cheekPuff": 0.05},
    ),
    "sad": EmotionProfile(
        pitch=-15, pitch_range=-30, rate=-45, volume=-40, articulation=0.7, blink_rate=0.7, brow_accent=0.5,
        expression={"browInnerUp": 0.6, **_both("mouthFrown", 0.5), **_both("browDown", 0.15),
                    "mouthShrugLower": 0.25, **_both("eyeLookDown", 0.2), **_both("eyeBlink", 0.15),
                    "mouthRollLower": 0.1},
    ),
    "surprised": EmotionProfile(
        pitch=25, pitch_range=40, rate=5, volume=30, articulation=1.15, blink_rate=0.6, brow_accent=1.6,
        expression={"browInnerUp": 0.75, **_both("browOuterUp", 0.7), **_both("eyeWide", 0.7),
                    "jawOpen": 0.12, **_both("mouthLowerDown", 0.1)},
    ),
}  # fmt: skip
assert tuple(EMOTION_PROFILES) == EMOTIONS


@dataclass
class SyntheticCorpusConfig:
    """Size and generative parameters of the synthetic corpus.

    Args:
        num_speakers: speakers in all splits (train gets what validation and test do not).
        num_validation_speakers: speakers held out for the ``validation`` split.
        num_test_speakers: speakers held out for the ``test`` split.
        num_sentences: sentences per speaker, the first of ``SENTENCES`` (shortest first; 1..30).
        emotions: emotions to generate, a subset of ``EMOTIONS``.
        intensities: intensities (1..3) for every emotion but neutral, which has intensity 1 only (as MEAD).
        fps: blendshape frame rate (frames per second).
        sampling_rate: audio sampling rate in Hz.
        seed: seed of every random choice (speaker styles, blinks, gaze, noise, silences).
        noise_level: standard deviation of the background noise added to the audio (full scale = 1).
        leading_silence: range (s) of the silence before the speech starts, drawn per clip.
        num_workers: processes generating clips (0 or 1: in this process; eSpeak NG is not thread-safe).
            The corpus is bit-identical for a seed whatever the number of workers.
    """

    num_speakers: int = 6
    num_validation_speakers: int = 1
    num_test_speakers: int = 1
    num_sentences: int = 8
    emotions: tuple[str, ...] = EMOTIONS
    intensities: tuple[int, ...] = INTENSITIES
    fps: float = 30.0
    sampling_rate: int = 16000
    seed: int = 0
    noise_level: float = 0.002
    leading_silence: tuple[float, float] = (0.08, 0.25)
    num_workers: int = 1

    def __post_init__(self) -> None:
        self.emotions = tuple(self.emotions)
        self.intensities = tuple(int(i) for i in self.intensities)
        self.leading_silence = tuple(float(s) for s in self.leading_silence)
        held_out = self.num_validation_speakers + self.num_test_speakers
        if self.num_validation_speakers < 0 or self.num_test_speakers < 0:
            raise ValueError(
                "num_validation_speakers and num_test_speakers must be >= 0, got "
                f"{self.num_validation_speakers} and {self.num_test_speakers}"
            )
        if self.num_speakers < held_out + 1:
            raise ValueError(
                f"num_speakers must be at least num_validation_speakers + num_test_speakers + 1 = {held_out + 1}, "
                f"got {self.num_speakers}"
            )
        if not 1 <= self.num_sentences <= len(SENTENCES):
            raise ValueError(f"num_sentences must be in 1..{len(SENTENCES)}, got {self.num_sentences}")
        unknown = [e for e in self.emotions if e not in EMOTIONS]
        if unknown or not self.emotions:
            raise ValueError(f"emotions must be a non-empty subset of {EMOTIONS}, got {self.emotions}")
        if not self.intensities or any(i not in INTENSITIES for i in self.intensities):
            raise ValueError(f"intensities must be a non-empty subset of {INTENSITIES}, got {self.intensities}")
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.sampling_rate < 8000:
            raise ValueError(f"sampling_rate must be >= 8000 Hz, got {self.sampling_rate}")
        if self.noise_level < 0:
            raise ValueError(f"noise_level must be >= 0, got {self.noise_level}")
        low, high = self.leading_silence
        if not 0 <= low <= high:
            raise ValueError(f"leading_silence must be (low, high) with 0 <= low <= high, got {self.leading_silence}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")

    @classmethod
    def micro(cls, **overrides: Any) -> SyntheticCorpusConfig:
        """A few dozen clips in ~2 s: 3 speakers (1 per split), 2 sentences, 4 emotions, intensities 1 and 3."""
        values = dict(
            num_speakers=3, num_sentences=2, emotions=("neutral", "angry", "happy", "sad"), intensities=(1, 3)
        )
        return cls(**{**values, **overrides})

    @classmethod
    def tiny(cls, **overrides: Any) -> SyntheticCorpusConfig:
        """Tests and the demo: 6 speakers (4 train, 1 validation, 1 test), 8 sentences, all 22 conditions."""
        return cls(**overrides)

    @classmethod
    def small(cls, **overrides: Any) -> SyntheticCorpusConfig:
        """12 speakers (8 / 2 / 2), 16 sentences, all conditions: ~4k clips."""
        values = dict(num_speakers=12, num_validation_speakers=2, num_test_speakers=2, num_sentences=16)
        return cls(**{**values, **overrides})

    @classmethod
    def mead_like(cls, **overrides: Any) -> SyntheticCorpusConfig:
        """MEAD's shape: 48 speakers (40 / 4 / 4), 30 sentences, all conditions: ~32k clips."""
        values = dict(num_speakers=48, num_validation_speakers=4, num_test_speakers=4, num_sentences=30)
        return cls(**{**values, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @property
    def conditions(self) -> list[tuple[str, int]]:
        """(emotion, intensity) pairs generated per speaker and sentence."""
        pairs = []
        for emotion in self.emotions:
            levels = (1,) if emotion == "neutral" else self.intensities
            pairs.extend((emotion, level) for level in levels)
        return pairs

    @property
    def num_clips(self) -> int:
        return self.num_speakers * self.num_sentences * len(self.conditions)


@dataclass(frozen=True)
class SpeakerStyle:
    """A synthetic speaker: a voice and a facial style (see ``make_speakers``)."""

    name: str
    voice: str
    pitch: float  # eSpeak base pitch 0..99
    pitch_range: float
    rate: float  # words per minute
    volume: float
    articulation: float  # gain on lip/jaw motion
    jaw_share: float  # > 1: opens the jaw more, < 1: moves the lips more
    asymmetry: float  # left side *(1 + a), right side *(1 - a)
    expressivity: float  # gain on the emotional expression
    loudness_coupling: float  # how much the mouth opening follows the loudness envelope (0..1)
    brow_accent: float  # brow raise per pitch accent
    blink_rate: float  # blinks per second
    rest: dict[str, float]  # resting offsets (the speaker's neutral face)


def make_speakers(num_speakers: int, seed: int = 0) -> list[SpeakerStyle]:
    """Speaker styles, deterministic for ``seed``; speaker ``i`` is the same whatever ``num_speakers`` is."""
    speakers = []
    for index in range(num_speakers):
        rng = np.random.default_rng([seed, 1, index])
        language, variant, sex = VOICES[index % len(VOICES)]
        cycle = index // len(VOICES)
        base_pitch = (40.0 if sex == "M" else 62.0) + rng.uniform(-6, 6) + 4.0 * ((cycle % 3) - 1) * (cycle > 0)
        speakers.append(
            SpeakerStyle(
                name=f"{sex}{index + 1:03d}",
                voice=f"{language}+{variant}",
                pitch=base_pitch,
                pitch_range=rng.uniform(40, 60),
                rate=rng.uniform(165, 190),
                volume=rng.uniform(95, 110),
                articulation=rng.uniform(0.8, 1.2),
                jaw_share=rng.uniform(0.85, 1.15),
                asymmetry=rng.uniform(-0.12, 0.12),
                expressivity=rng.uniform(0.8, 1.2),
                loudness_coupling=rng.uniform(0.35, 0.6),
                brow_accent=rng.uniform(0.1, 0.3),
                blink_rate=rng.uniform(0.2, 0.45),
                rest={
                    "browInnerUp": rng.uniform(0, 0.06),
                    "mouthSmileLeft": rng.uniform(0, 0.05),
                    "mouthSmileRight": rng.uniform(0, 0.05),
                    "eyeSquintLeft": rng.uniform(0, 0.05),
                    "eyeSquintRight": rng.uniform(0, 0.05),
                    "mouthFrownLeft": rng.uniform(0, 0.04),
                    "mouthFrownRight": rng.uniform(0, 0.04),
                },
            )
        )
    return speakers


def speaker_splits(config: SyntheticCorpusConfig) -> dict[str, list[str]]:
    """Speaker names per split: the last speakers are test, the ones before them validation."""
    names = [s.name for s in make_speakers(config.num_speakers, config.seed)]
    num_train = config.num_speakers - config.num_validation_speakers - config.num_test_speakers
    return {
        "train": names[:num_train],
        "validation": names[num_train : num_train + config.num_validation_speakers],
        "test": names[num_train + config.num_validation_speakers :],
    }


def _vector(weights: dict[str, float]) -> np.ndarray:
    out = np.zeros(NUM_BLENDSHAPES, np.float32)
    for name, value in weights.items():
        out[BLENDSHAPE_INDEX[name]] += value
    return out


_LEFT = np.array([n.endswith("Left") for n in ARKIT_NAMES])
_RIGHT = np.array([n.endswith("Right") for n in ARKIT_NAMES])
_OPENING = np.array([BLENDSHAPE_INDEX[n] for n in OPENING_NAMES])
_JAW = BLENDSHAPE_INDEX["jawOpen"]


def _smooth_noise(rng: np.random.Generator, num_frames: int, fps: float, cutoff_s: float) -> np.ndarray:
    """Low-pass Gaussian noise, unit standard deviation, correlation time ~``cutoff_s`` seconds."""
    width = max(1, int(round(cutoff_s * fps)))
    kernel = np.exp(-0.5 * (np.arange(-3 * width, 3 * width + 1) / width) ** 2)
    kernel /= np.sqrt((kernel**2).sum())  # unit variance of the filtered white noise
    noise = np.convolve(rng.standard_normal(num_frames + 6 * width), kernel, mode="same")
    return noise[3 * width : 3 * width + num_frames].astype(np.float32)


def loudness_envelope(audio: np.ndarray, sampling_rate: int, frame_times: np.ndarray, fps: float) -> np.ndarray:
    """RMS loudness around each frame time, normalised so that the loud part of the clip is ~1 ([frames])."""
    half = max(1, int(sampling_rate / fps))  # a window of two frames
    cumulative = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    centers = np.clip((frame_times * sampling_rate).astype(int), 0, len(audio))
    low, high = np.clip(centers - half, 0, len(audio)), np.clip(centers + half, 0, len(audio))
    rms = np.sqrt((cumulative[high] - cumulative[low]) / np.maximum(high - low, 1))
    reference = np.percentile(rms, 90) + 1e-6
    return np.clip(rms / reference, 0.0, 1.3).astype(np.float32)


def _blinks(rng: np.random.Generator, num_frames: int, fps: float, rate: float) -> np.ndarray:
    """Blink curve in [0, 1]: closing in ~70 ms, opening in ~130 ms, Poisson onsets at ``rate`` per second."""
    curve = np.zeros(num_frames, np.float32)
    t = rng.exponential(1.0 / rate) * 0.5  # speakers often blink early in a take
    times = np.arange(num_frames) / fps
    while t < num_frames / fps:
        closing, opening = 0.07 * rng.uniform(0.8, 1.2), 0.13 * rng.uniform(0.8, 1.3)
        shape = np.where(times < t + closing, (times - t) / closing, 1.0 - (times - t - closing) / opening)
        shape = np.where((times >= t) & (times <= t + closing + opening), np.clip(shape, 0, 1), 0.0)
        curve = np.maximum(curve, shape * rng.uniform(0.85, 1.0))
        t += closing + opening + 0.25 + rng.exponential(1.0 / rate)
    return curve


def animate(
    phonemes: list[str],
    phoneme_times: np.ndarray,
    audio: np.ndarray,
    sampling_rate: int,
    speaker: SpeakerStyle,
    emotion: str,
    intensity: int,
    fps: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Ground-truth blendshapes float32 [frames, 52] (ARKit order, in [0, 1]) for one synthesized clip.

    ``phoneme_times`` are phoneme starts in seconds in ``audio`` (at ``sampling_rate`` Hz); the clip has
    ``round(len(audio) / sampling_rate * fps)`` frames, frame ``k`` sampled at ``(k + 0.5) / fps``.
    """
    profile = EMOTION_PROFILES[emotion]
    scale = INTENSITY_SCALE[intensity] if emotion != "neutral" else 0.0
    duration = len(audio) / sampling_rate
    num_frames = max(1, int(round(duration * fps)))
    frame_times = (np.arange(num_frames) + 0.5) / fps

    # Lower face: visemes with coarticulation, amplitude from speaker, emotion and loudness.
    segments = phoneme_segments(phonemes, np.asarray(phoneme_times), duration)
    lips = coarticulate(segments, frame_times)
    articulation = speaker.articulation * (1.0 + scale * (profile.articulation - 1.0))
    envelope = loudness_envelope(audio, sampling_rate, frame_times, fps)
    lips *= articulation
    lips[:, _OPENING] *= (1.0 - speaker.loudness_coupling + speaker.loudness_coupling * envelope)[:, None]
    lips[:, _JAW] *= speaker.jaw_share

    # Emotion: expression with an onset over the first ~0.4 s and a slow drift, brow raises on accents.
    onset = 1.0 / (1.0 + np.exp(-(frame_times - rng.uniform(0.1, 0.3)) / 0.08))
    drift = 1.0 + 0.12 * _smooth_noise(rng, num_frames, fps, 0.5)
    expression = _vector(profile.expression) * scale * speaker.expressivity
    face = lips + (onset * drift)[:, None] * expression[None]
    accents = stress_curve(segments, frame_times) * speaker.brow_accent * (1.0 + scale * (profile.brow_accent - 1.0))
    if profile.brow_accent >= 0 or scale == 0:
        for name, share in (("browInnerUp", 1.0), ("browOuterUpLeft", 0.6), ("browOuterUpRight", 0.6)):
            face[:, BLENDSHAPE_INDEX[name]] += share * np.abs(accents)
    else:
        for name in ("browDownLeft", "browDownRight"):
            face[:, BLENDSHAPE_INDEX[name]] += np.abs(accents)

    # Eyes: blinks and small gaze movements.
    blinks = _blinks(rng, num_frames, fps, speaker.blink_rate * (1.0 + scale * (profile.blink_rate - 1.0)))
    face[:, BLENDSHAPE_INDEX["eyeBlinkLeft"]] += blinks
    face[:, BLENDSHAPE_INDEX["eyeBlinkRight"]] += blinks
    horizontal = 0.08 * _smooth_noise(rng, num_frames, fps, 0.6)
    vertical = 0.06 * _smooth_noise(rng, num_frames, fps, 0.6)
    for name, values in (
        ("eyeLookOutRight", horizontal), ("eyeLookInLeft", horizontal),
        ("eyeLookOutLeft", -horizontal), ("eyeLookInRight", -horizontal),
        ("eyeLookUpLeft", vertical), ("eyeLookUpRight", vertical),
        ("eyeLookDownLeft", -vertical), ("eyeLookDownRight", -vertical),
    ):  # fmt: skip
        face[:, BLENDSHAPE_INDEX[name]] += np.maximum(values, 0.0)

    face += _vector(speaker.rest)[None]
    face[:, _LEFT] *= 1.0 + speaker.asymmetry
    face[:, _RIGHT] *= 1.0 - speaker.asymmetry
    return np.clip(face, 0.0, 1.0).astype(np.float32)


def _prosody(speaker: SpeakerStyle, emotion: str, intensity: int, rng: np.random.Generator) -> dict[str, float]:
    profile = EMOTION_PROFILES[emotion]
    scale = INTENSITY_SCALE[intensity] if emotion != "neutral" else 0.0
    return {
        "pitch": speaker.pitch + scale * profile.pitch + rng.uniform(-2, 2),
        "pitch_range": speaker.pitch_range + scale * profile.pitch_range + rng.uniform(-3, 3),
        "rate": speaker.rate + scale * profile.rate + rng.uniform(-5, 5),
        "volume": speaker.volume + scale * profile.volume,
    }


@functools.lru_cache(maxsize=8)
def _resampling_filter(from_rate: int, to_rate: int) -> tuple[int, int, np.ndarray]:
    """(up, down, FIR taps) of ``resample_poly``'s default Kaiser filter, computed once per rate pair."""
    from scipy.signal import firwin

    gcd = math.gcd(from_rate, to_rate)
    up, down = to_rate // gcd, from_rate // gcd
    half_length = 10 * max(up, down)
    return up, down, firwin(2 * half_length + 1, 1.0 / max(up, down), window=("kaiser", 5.0))


@dataclass(frozen=True)
class _ClipJob:
    speaker_index: int
    sentence_index: int
    emotion: str
    intensity: int


def generate_clip(
    config: SyntheticCorpusConfig, speaker: SpeakerStyle, speaker_index: int, sentence_index: int, emotion: str,
    intensity: int, synthesizer: EspeakSynthesizer | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One row of the corpus (see the module docstring for the columns)."""
    from scipy.signal import resample_poly

    rng = np.random.default_rng([config.seed, 2, speaker_index, sentence_index, EMOTIONS.index(emotion), intensity])
    sentence = SENTENCES[sentence_index]
    utterance = (synthesizer or get_synthesizer()).synthesize(
        sentence, voice=speaker.voice, **_prosody(speaker, emotion, intensity, rng)
    )
    up, down, taps = _resampling_filter(utterance.sampling_rate, config.sampling_rate)
    speech = resample_poly(utterance.audio, up, down, window=taps)
    lead = int(rng.uniform(*config.leading_silence) * config.sampling_rate)
    audio = np.concatenate([np.zeros(lead, np.float32), speech.astype(np.float32)])
    phoneme_times = utterance.phoneme_starts + lead / config.sampling_rate
    if config.noise_level > 0:
        audio = audio + config.noise_level * rng.standard_normal(len(audio)).astype(np.float32)
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
    blendshapes = animate(
        utterance.phonemes, phoneme_times, audio, config.sampling_rate, speaker, emotion, intensity, config.fps, rng
    )
    return {
        "id": f"{speaker.name}_{emotion}_level_{intensity}_{sentence_index + 1:03d}",
        "speaker": speaker.name,
        "emotion": emotion,
        "intensity": intensity,
        "sentence": sentence,
        "audio": audio,
        "sampling_rate": config.sampling_rate,
        "blendshapes": blendshapes,
        "fps": float(config.fps),
        "phonemes": [p.replace("ˈ", "").replace("ˌ", "") or "_" for p in utterance.phonemes],
        "phoneme_times": phoneme_times.astype(np.float32),
    }


def features():
    """The ``datasets.Features`` of the synthetic corpus (the package schema + ``phonemes``, ``phoneme_times``)."""
    from datasets import List, Value

    return clip_features({"phonemes": List(Value("string")), "phoneme_times": List(Value("float32"))})


def _jobs(config: SyntheticCorpusConfig) -> list[_ClipJob]:
    return [
        _ClipJob(speaker_index, sentence_index, emotion, intensity)
        for speaker_index in range(config.num_speakers)
        for sentence_index in range(config.num_sentences)
        for emotion, intensity in config.conditions
    ]


def _run_jobs(config: SyntheticCorpusConfig, jobs: list[_ClipJob]) -> list[dict[str, Any]]:
    # A fresh eSpeak NG state per (speaker, sentence) batch makes the audio reproducible (see esarm.data.tts).
    speakers = make_speakers(config.num_speakers, config.seed)
    with isolated_synthesizer() as synthesizer:
        return [
            generate_clip(
                config,
                speakers[j.speaker_index],
                j.speaker_index,
                j.sentence_index,
                j.emotion,
                j.intensity,
                synthesizer,
            )
            for j in jobs
        ]


def _batches(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def generate_synthetic_corpus(config: SyntheticCorpusConfig | None = None, progress: bool = True):
    """Generate the corpus in memory: a ``datasets.DatasetDict`` with ``train``, ``validation``, ``test``.

    Splits are by speaker (``speaker_splits``); rows are ordered by speaker, sentence, emotion, intensity.
    Uses ``config.num_workers`` processes; the result does not depend on their number (see the config).
    """
    from datasets import DatasetDict
    from tqdm.auto import tqdm

    config = config or SyntheticCorpusConfig.tiny()
    jobs = _jobs(config)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(jobs), desc="synthetic clips", unit="clip", disable=not progress)
    # One batch per (speaker, sentence): its composition does not depend on the corpus size.
    batches = [jobs[i : i + len(config.conditions)] for i in range(0, len(jobs), len(config.conditions))]
    if config.num_workers > 1:
        import scipy.signal  # noqa: F401  (imported once before forking rather than in every worker)

        with ProcessPoolExecutor(config.num_workers, mp_context=get_context("fork")) as pool:
            for batch_rows in pool.map(_run_jobs, [config] * len(batches), batches):
                rows.extend(batch_rows)
                bar.update(len(batch_rows))
    else:
        for batch in batches:
            rows.extend(_run_jobs(config, batch))
            bar.update(len(batch))
    bar.close()
    logger.info("generated %d clips in %.1f s", len(rows), time.perf_counter() - started)

    schema = features()
    splits = {}
    for split, names in speaker_splits(config).items():
        selected = [row for row in rows if row["speaker"] in set(names)]
        splits[split] = rows_to_dataset(selected, schema)
    return DatasetDict(splits)


def _card(config: SyntheticCorpusConfig, corpus, seconds: float) -> str:
    splits = speaker_splits(config)
    rows = "\n".join(
        f"| {name} | {corpus[name].num_rows} | {', '.join(splits[name])} | "
        f"{sum(len(a) for a in corpus[name]['audio']) / config.sampling_rate / 60:.1f} |"
        for name in corpus
    )
    return f"""---
license: apache-2.0
language: [en]
pretty_name: esarm synthetic emotional talking-face corpus
tags: [speech-driven-animation, blendshapes, arkit, synthetic, emotion]
task_categories: [audio-to-audio]
---
# esarm synthetic emotional talking-face corpus

Generated offline by `esarm.data.synthetic` (eSpeak NG speech + rule-based ARKit blendshapes) in
{seconds:.1f} s. Shaped like MEAD: every speaker reads the same {config.num_sentences} Harvard sentences in
{len(config.emotions)} emotions ({", ".join(config.emotions)}) at intensities {list(config.intensities)}
(neutral at intensity 1 only). Load with `datasets.load_from_disk(path)`.

| split | clips | speakers | minutes of audio |
|---|---|---|---|
{rows}

## Columns
- `id`, `speaker`, `emotion` (MEAD's names), `intensity` (1-3), `sentence`
- `audio`: float32 samples at `sampling_rate` ({config.sampling_rate} Hz, mono)
- `blendshapes`: float32 [frames, 52] in ARKit order (`esarm.blendshapes.ARKIT_NAMES`) at `fps` ({config.fps:g})
- `phonemes`: eSpeak NG phonemes (IPA, stress marks removed, `_` = pause); `phoneme_times`: start of each
  phoneme in seconds from the start of `audio`

## How it is generated
Speech: one eSpeak NG voice and variant per speaker; the emotion changes pitch level, pitch range, rate and
volume (scaled by intensity). Lips and jaw: a viseme per phoneme blended with dominance functions
(coarticulation), mouth opening scaled by the loudness envelope. Upper face and cheeks: a fixed expression per
emotion scaled by intensity and speaker expressivity, with an onset, slow drift and brow raises on stressed
vowels. Blinks, gaze and per-speaker style (articulation, asymmetry, resting face). It is a test corpus, not
a model of human faces: see the esarm README ("Synthetic corpus") for what it does and does not capture.

## Config
```json
{json.dumps(config.to_dict(), indent=2)}
```
"""


CONFIG_FILE = "synthetic_config.json"


def build_synthetic_corpus(
    config: SyntheticCorpusConfig | None = None, output_dir: str | os.PathLike = "data/synthetic",
    overwrite: bool = False, progress: bool = True,
) -> Path:  # fmt: skip
    """Generate the corpus and save it with ``save_to_disk`` plus a ``README.md`` dataset card.

    Idempotent: a complete corpus already in ``output_dir`` built from the same config is reused (workers do
    not count). A different config there raises ``ValueError`` unless ``overwrite``. The corpus is built in a
    temporary folder beside ``output_dir`` and renamed into place, so ``output_dir`` is never half-written.
    """
    config = config or SyntheticCorpusConfig.tiny()
    output_dir = Path(output_dir)
    wanted = {k: v for k, v in config.to_dict().items() if k != "num_workers"}
    config_path = output_dir / CONFIG_FILE
    if config_path.exists() and (output_dir / "dataset_dict.json").exists():
        existing = {k: v for k, v in json.loads(config_path.read_text()).items() if k != "num_workers"}
        if existing == wanted and not overwrite:
            logger.info("reusing the synthetic corpus in %s", output_dir)
            return output_dir
        if not overwrite:
            raise ValueError(
                f"output_dir {output_dir} holds a synthetic corpus of another config ({existing}); expected "
                f"{wanted}. Pass overwrite=True or another output_dir."
            )
    elif output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise ValueError(f"output_dir {output_dir} exists and is not a synthetic corpus; pass overwrite=True")

    started = time.perf_counter()
    corpus = generate_synthetic_corpus(config, progress=progress)
    seconds = time.perf_counter() - started
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        corpus.save_to_disk(str(staging))
        (staging / "README.md").write_text(_card(config, corpus, seconds))
        (staging / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2))
        if output_dir.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.old.", dir=output_dir.parent))
            os.replace(output_dir, trash / output_dir.name)
            os.replace(staging, output_dir)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("saved %d clips to %s", sum(corpus.num_rows.values()), output_dir)
    return output_dir


def plot_example(
    corpus: str | os.PathLike, path: str | os.PathLike, emotion: str = "happy", intensity: int = 3, split: str = "train"
) -> Path:
    """Draw the first clip of ``emotion`` at ``intensity`` of a saved corpus (``plotting.plot_clip``)."""
    from datasets import load_from_disk

    from .plotting import plot_clip

    dataset = load_from_disk(str(corpus))[split]
    matches = [
        i for i, (e, k) in enumerate(zip(dataset["emotion"], dataset["intensity"])) if (e, k) == (emotion, intensity)
    ]
    if not matches:
        raise ValueError(f"no clip with emotion {emotion!r} and intensity {intensity} in the {split} split of {corpus}")
    return plot_clip(dataset[matches[0]], path)
