"""The generative model behind the synthetic corpus: speakers, emotions, and blendshapes from speech.

``EMOTION_PROFILES`` say how each emotion changes the voice (eSpeak NG prosody) and the face (an expression
over the upper face, cheeks and mouth corners); ``make_speakers`` draws speaker styles (voice, articulation,
asymmetry, expressivity, resting face, blink rate); ``animate`` turns one synthesized utterance (phoneme
timings + audio) into ground-truth ARKit blendshapes for a speaker, emotion and intensity.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from ...blendshapes import ARKIT_NAMES, BLENDSHAPE_INDEX, EMOTIONS, NUM_BLENDSHAPES
from .festival import FESTIVAL_VOICES
from .languages import check_language, language_voice
from .visemes import OPENING_NAMES, coarticulate, phoneme_segments, stress_curve
from .voices import HELD_OUT_ACCENTS, TRAINING_ACCENTS, random_voice

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
    engine: str = "espeak"  # "espeak" or "festival"
    variant: str = ""  # eSpeak variant file of a random voice ("" for a stock variant or another engine)
    formant_scale: float = 1.0  # Festival voices: factor on the formant frequencies
    language: str = "en"  # the language the speaker reads (esarm.data.synthetic.languages)


VOICE_SPACES = ("fixed", "random")
"""``make_speakers`` voices: ``"fixed"``, the :data:`VOICES` list; ``"random"``, drawn from :mod:`esarm.data.synthetic.voices`
(and Festival's voices, see ``engines``)."""


def make_speakers(num_speakers: int, seed: int = 0, voices: str = "fixed", engines: tuple[str, ...] = ("espeak",),
                  num_held_out: int = 0, festival_share: float = 0.3,
                  languages: tuple[str, ...] = ("en",)) -> list[SpeakerStyle]:  # fmt: skip
    """Speaker styles, deterministic for ``seed``.

    Args:
        num_speakers: speakers in all splits.
        seed: seed of every draw; speaker ``i`` is the same whatever ``num_speakers`` is (with ``"random"`` voices,
            a held-out speaker is the same for the same position among the ``num_held_out`` last ones).
        voices: one of :data:`VOICE_SPACES`.
        engines: with ``"random"`` voices, the engines of training speakers (``"espeak"``, ``"festival"``).
        num_held_out: with ``"random"`` voices, the last speakers (validation and test) get eSpeak voices of the
            reserved accents (:data:`esarm.data.synthetic.voices.HELD_OUT_ACCENTS`); training speakers never do.
        festival_share: with ``"festival"`` among several engines, the chance that a training speaker is Festival's.
        languages: with ``"random"`` voices, training speaker ``i`` reads ``languages[i % len(languages)]``
            (:mod:`esarm.data.synthetic.languages`; Festival's voices speak English only); the held-out ones read English.
    """
    if voices not in VOICE_SPACES:
        raise ValueError(f"voices must be one of {VOICE_SPACES}, got {voices!r}")
    if not languages:
        raise ValueError("languages must name at least one language, got ()")
    for language in languages:
        check_language(language, "languages")
    if voices == "fixed":
        if tuple(languages) != ("en",):
            raise ValueError(f"languages must be ('en',) with voices='fixed' (an English voice list), got {languages}")
        return [_fixed_speaker(index, seed) for index in range(num_speakers)]
    num_train = num_speakers - num_held_out
    return [
        _random_speaker(
            index, seed, engines, festival_share, held_out=False, language=languages[index % len(languages)]
        )
        if index < num_train
        else _random_speaker(index - num_train, seed, ("espeak",), 0.0, held_out=True, number=index)
        for index in range(num_speakers)
    ]


def _fixed_speaker(index: int, seed: int) -> SpeakerStyle:
    rng = np.random.default_rng([seed, 1, index])
    language, variant, sex = VOICES[index % len(VOICES)]
    cycle = index // len(VOICES)
    base_pitch = (40.0 if sex == "M" else 62.0) + rng.uniform(-6, 6) + 4.0 * ((cycle % 3) - 1) * (cycle > 0)
    return SpeakerStyle(
        name=f"{sex}{index + 1:03d}",
        voice=f"{language}+{variant}",
        pitch=base_pitch,
        pitch_range=rng.uniform(40, 60),
        rate=rng.uniform(165, 190),
        volume=rng.uniform(95, 110),
        **_face_style(rng),
    )


def make_language_speakers(
    language: str, num_speakers: int, seed: int = 0, first_number: int = 0
) -> list[SpeakerStyle]:
    """Speakers of a held-out language: random eSpeak NG voices of its language voice, faces drawn as any speaker's.

    Their own random streams (of ``seed`` and the language) make them independent of every training speaker and of
    the other languages' speakers; their names are numbered from ``first_number + 1`` on.
    """
    stream = zlib.crc32(check_language(language).encode())
    return [
        _random_speaker(index, seed, ("espeak",), 0.0, held_out=False, number=first_number + index,
                        language=language, streams=([seed, 9, stream, index], [seed, 10, stream, index]))
        for index in range(num_speakers)
    ]  # fmt: skip


def _random_speaker(index: int, seed: int, engines: tuple[str, ...], festival_share: float, held_out: bool,
                    number: int | None = None, language: str = "en",
                    streams: tuple[list[int], list[int]] | None = None) -> SpeakerStyle:  # fmt: skip
    """A speaker of the random voice space: stream 3 (training) or 4 (held-out) of ``seed`` (or ``streams``: the
    voice's and the face's seeds), then its face. English speakers draw an English accent, others their language's
    voice."""
    voice_seed, face_seed = streams or ([seed, 4 if held_out else 3, index], [seed, 5 if held_out else 1, index])
    voice_rng = np.random.default_rng(voice_seed)
    festival = (
        language == "en" and "festival" in engines
        and (engines == ("festival",) or voice_rng.random() < festival_share)
    )  # fmt: skip
    if festival:
        voice = str(voice_rng.choice(sorted(FESTIVAL_VOICES)))
        sex, variant, formant_scale = FESTIVAL_VOICES[voice], "", round(voice_rng.uniform(0.9, 1.1) * 40) / 40
    else:
        accents = (
            (HELD_OUT_ACCENTS if held_out else TRAINING_ACCENTS) if language == "en" else (language_voice(language),)
        )
        espeak_voice = random_voice(voice_rng, accents)
        voice, sex, variant, formant_scale = espeak_voice.name, espeak_voice.sex, espeak_voice.variant_text(), 1.0
    rng = np.random.default_rng(face_seed)
    return SpeakerStyle(
        name=f"{sex}{(index if number is None else number) + 1:03d}",
        voice=voice,
        # eSpeak's pitch parameter moves within the variant's Hz range; Festival maps it to Hz (esarm.data.synthetic)
        pitch=(40.0 if sex == "M" else 60.0) + rng.uniform(-10, 10),
        pitch_range=rng.uniform(25, 75),
        rate=rng.uniform(145, 210),
        volume=rng.uniform(90, 115),
        engine="festival" if festival else "espeak",
        variant=variant,
        formant_scale=formant_scale,
        language=language,
        **_face_style(rng),
    )


def _face_style(rng: np.random.Generator) -> dict:
    return dict(
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


def prosody(speaker: SpeakerStyle, emotion: str, intensity: int, rng: np.random.Generator) -> dict[str, float]:
    """eSpeak NG parameters (pitch, pitch_range, rate, volume) of a speaker in an emotion, with a little jitter."""
    profile = EMOTION_PROFILES[emotion]
    scale = INTENSITY_SCALE[intensity] if emotion != "neutral" else 0.0
    return {
        "pitch": speaker.pitch + scale * profile.pitch + rng.uniform(-2, 2),
        "pitch_range": speaker.pitch_range + scale * profile.pitch_range + rng.uniform(-3, 3),
        "rate": speaker.rate + scale * profile.rate + rng.uniform(-5, 5),
        "volume": speaker.volume + scale * profile.volume,
    }
