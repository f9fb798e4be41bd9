"""Phonemes -> lip and jaw blendshapes: a viseme table and coarticulation.

Each IPA phoneme from eSpeak NG (``"ʃ"``, ``"ˈɑːɹ"``, ``"oʊ"``, in any of its languages) is split into its segments
(one per base symbol; diphthongs and r-coloured vowels become two), each with a viseme target over the lower-face
blendshapes: the target of the symbol's viseme class, which :mod:`esarm.data.ipa` derives from the symbol's place
and manner (consonants) or height, backness and rounding (vowels). Targets are blended with dominance functions in
the style of Cohen and Massaro (1993): a segment dominates its own interval and its influence decays exponentially
outside it, so neighbouring sounds shape each other (anticipatory lip rounding before /u/, closure of /p b m/ winning
over the vowels around it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...blendshapes import BLENDSHAPE_INDEX, NUM_BLENDSHAPES
from ..ipa import CONSONANTS, VISEME_CLASSES, VOWELS, base_symbols, viseme_class

_STRESS = "ˈ"


def _both(name: str, value: float) -> dict[str, float]:
    return {f"{name}Left": value, f"{name}Right": value}


# Viseme targets (ARKit names -> weight) and dominance of each viseme class. Dominance reflects how
# strongly a sound constrains the lips: closures (p b m) and labiodentals (f v) must be reached, /h/ and the
# alveolars mostly borrow the shape of their neighbours.
_REST: dict[str, float] = {"jawOpen": 0.02, "mouthClose": 0.02}
_BILABIAL = {"jawOpen": 0.05, "mouthClose": 0.35, **_both("mouthPress", 0.45), "mouthRollLower": 0.1}
_LABIODENTAL = {"jawOpen": 0.08, "mouthRollLower": 0.45, **_both("mouthUpperUp", 0.2), "mouthShrugUpper": 0.1}
_DENTAL = {"jawOpen": 0.16, "tongueOut": 0.25, **_both("mouthLowerDown", 0.1)}
_ALVEOLAR = {"jawOpen": 0.12, **_both("mouthStretch", 0.12), **_both("mouthLowerDown", 0.05)}
_SIBILANT = {"jawOpen": 0.07, **_both("mouthStretch", 0.2), **_both("mouthUpperUp", 0.05)}
_POSTALVEOLAR = {"jawOpen": 0.1, "mouthFunnel": 0.5, "mouthPucker": 0.3, **_both("mouthUpperUp", 0.12)}
_VELAR = {"jawOpen": 0.2, **_both("mouthLowerDown", 0.05)}
_ROUNDED_APPROXIMANT = {"jawOpen": 0.08, "mouthPucker": 0.7, "mouthFunnel": 0.3}
_RHOTIC = {"jawOpen": 0.12, "mouthFunnel": 0.3, "mouthPucker": 0.2}
_PALATAL = {"jawOpen": 0.1, **_both("mouthStretch", 0.2), **_both("mouthSmile", 0.08)}
_GLOTTAL = {"jawOpen": 0.2}

_CLOSE_FRONT = {"jawOpen": 0.14, **_both("mouthStretch", 0.3), **_both("mouthSmile", 0.15)}
_MID_FRONT = {"jawOpen": 0.3, **_both("mouthStretch", 0.2), **_both("mouthLowerDown", 0.1)}
_OPEN_FRONT = {"jawOpen": 0.45, **_both("mouthStretch", 0.15), **_both("mouthLowerDown", 0.25)}
_OPEN = {"jawOpen": 0.6, **_both("mouthLowerDown", 0.2), **_both("mouthUpperUp", 0.05)}
_CENTRAL = {"jawOpen": 0.28, **_both("mouthLowerDown", 0.08)}
_OPEN_BACK_ROUNDED = {"jawOpen": 0.42, "mouthFunnel": 0.45, "mouthPucker": 0.1}
_MID_BACK_ROUNDED = {"jawOpen": 0.28, "mouthFunnel": 0.45, "mouthPucker": 0.3}
_CLOSE_BACK_ROUNDED = {"jawOpen": 0.14, "mouthPucker": 0.65, "mouthFunnel": 0.3}

VISEME_TARGETS: dict[str, tuple[dict[str, float], float]] = {
    "bilabial": (_BILABIAL, 3.0),
    "labiodental": (_LABIODENTAL, 2.0),
    "dental": (_DENTAL, 1.0),
    "alveolar": (_ALVEOLAR, 0.5),
    "sibilant": (_SIBILANT, 0.8),
    "postalveolar": (_POSTALVEOLAR, 1.5),
    "velar": (_VELAR, 0.5),
    "rounded approximant": (_ROUNDED_APPROXIMANT, 2.0),
    "rhotic": (_RHOTIC, 0.8),
    "palatal": (_PALATAL, 0.7),
    "glottal": (_GLOTTAL, 0.2),
    "close front": (_CLOSE_FRONT, 1.5),
    "mid front": (_MID_FRONT, 1.5),
    "open front": (_OPEN_FRONT, 1.6),
    "open": (_OPEN, 1.6),
    "central": (_CENTRAL, 1.0),
    "open back rounded": (_OPEN_BACK_ROUNDED, 1.6),
    "mid back rounded": (_MID_BACK_ROUNDED, 1.6),
    "close back rounded": (_CLOSE_BACK_ROUNDED, 1.8),
}
"""Target (ARKit name -> weight) and dominance of each viseme class of :mod:`esarm.data.ipa`."""
assert tuple(VISEME_TARGETS) == VISEME_CLASSES

VISEMES: dict[str, tuple[dict[str, float], float]] = {
    symbol: VISEME_TARGETS[viseme_class(symbol)] for symbol in (*VOWELS, *CONSONANTS)
}
"""Target and dominance of every IPA base symbol of the chart (:func:`esarm.data.ipa.viseme_class`)."""
PAUSE_DOMINANCE = 1.0
OPENING_NAMES: tuple[str, ...] = ("jawOpen", "mouthLowerDownLeft", "mouthLowerDownRight")
"""Blendshapes whose amplitude follows the loudness of the voice."""


def _vector(target: dict[str, float]) -> np.ndarray:
    out = np.zeros(NUM_BLENDSHAPES, np.float32)
    for name, value in target.items():
        out[BLENDSHAPE_INDEX[name]] = value
    return out


_VISEME_VECTORS = {symbol: (_vector(target), dominance) for symbol, (target, dominance) in VISEMES.items()}
_REST_VECTOR = _vector(_REST)


@dataclass
class Segment:
    """A viseme segment: ``[start, end)`` in seconds, target [52], dominance, whether it is stressed."""

    start: float
    end: float
    target: np.ndarray
    dominance: float
    stressed: bool


def phoneme_segments(phonemes: list[str], starts: np.ndarray, duration: float) -> list[Segment]:
    """Split eSpeak IPA phonemes with start times (s) into viseme segments.

    A phoneme ends where the next one starts (the last at ``duration``); a phoneme made of several base
    symbols shares its interval equally between them; an empty phoneme (eSpeak's end of clause) or one
    without a known symbol is a pause (rest pose).
    """
    if len(phonemes) != len(starts):
        raise ValueError(f"phonemes and starts must have the same length, got {len(phonemes)} and {len(starts)}")
    segments: list[Segment] = []
    ends = list(starts[1:]) + [duration]
    for phoneme, start, end in zip(phonemes, starts, ends):
        if end <= start:
            continue
        stressed = _STRESS in phoneme
        symbols = [c for c in base_symbols(phoneme) if c in _VISEME_VECTORS]
        if not symbols:
            segments.append(Segment(float(start), float(end), _REST_VECTOR, PAUSE_DOMINANCE, False))
            continue
        step = (end - start) / len(symbols)
        for k, symbol in enumerate(symbols):
            target, dominance = _VISEME_VECTORS[symbol]
            segments.append(Segment(start + k * step, start + (k + 1) * step, target, dominance, stressed))
    return segments


def coarticulate(
    segments: list[Segment], frame_times: np.ndarray, spread: float = 0.03, rest_before: bool = True
) -> np.ndarray:
    """Blend viseme targets into lower-face blendshapes at ``frame_times`` (s).

    Returns float32 [frames, 52]: ``sum_i D_i(t) T_i / sum_i D_i(t)`` with dominance ``D_i(t) = a_i`` inside
    segment ``i`` and ``a_i exp(-distance / spread)`` outside it (``spread`` in seconds).
    """
    if rest_before and segments:
        # Silence before the first phoneme: the mouth rests until the speaker starts.
        segments = [Segment(-1.0, segments[0].start, _REST_VECTOR, PAUSE_DOMINANCE, False), *segments]
    if not segments:
        return np.tile(_REST_VECTOR, (len(frame_times), 1))
    starts = np.array([s.start for s in segments])
    ends = np.array([s.end for s in segments])
    alphas = np.array([s.dominance for s in segments])
    targets = np.stack([s.target for s in segments])  # [segments, 52]
    t = frame_times[:, None]
    distance = np.maximum(starts[None] - t, 0.0) + np.maximum(t - ends[None], 0.0)  # [frames, segments]
    weights = alphas[None] * np.exp(-distance / spread)
    weights /= weights.sum(axis=1, keepdims=True) + 1e-12
    return (weights @ targets).astype(np.float32)


def stress_curve(segments: list[Segment], frame_times: np.ndarray, width: float = 0.12) -> np.ndarray:
    """Pitch-accent activity in [0, 1] per frame: a bump on each stressed vowel (drives brow raises)."""
    curve = np.zeros(len(frame_times), np.float32)
    for segment in segments:
        if segment.stressed and segment.target[BLENDSHAPE_INDEX["jawOpen"]] >= 0.14:
            center = 0.5 * (segment.start + segment.end)
            curve = np.maximum(curve, np.exp(-0.5 * ((frame_times - center) / width) ** 2))
    return curve
