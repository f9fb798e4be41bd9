"""A space of random eSpeak NG voices, written as eSpeak *variant* files, with a region reserved for held-out sets.

eSpeak NG ships a fixed list of a few dozen variants (``m1``..``m7``, ``f1``..``f5``, ...). A variant file sets the
voice's pitch range in Hz, its formants (frequency, height and width of each of formants 0..8, in percent of the
language voice's), breathiness (``breath``, ``breathw``), pitch jitter (``flutter``), ``roughness``, the strength
of voicing and of consonants, and a spectral envelope (``tone``); ``klatt N`` switches to eSpeak's Klatt
synthesiser. :func:`random_voice` draws all of these per speaker, so a corpus can hold as many voices as speakers.
Formant frequencies move together (a vocal-tract length factor) plus a small independent jitter per formant, which
keeps the voices speech-like: independent ±15 % moves of F1 and F2 make vowels collide.

The voice space is split by accent (eSpeak's English language voices). :data:`TRAINING_ACCENTS` are for training
corpora; :data:`HELD_OUT_ACCENTS` are reserved for validation and test voices: a held-out set built from them (and
any variant parameters) holds voices that training never heard in that accent. :func:`random_voice` takes the
accents to draw from, so a held-out builder calls it with ``HELD_OUT_ACCENTS``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

TRAINING_ACCENTS: tuple[str, ...] = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-us-nyc", "en-gb-x-gbclan")
"""eSpeak NG English language voices used by training corpora."""

HELD_OUT_ACCENTS: tuple[str, ...] = ("en-029", "en-gb-x-gbcwmd")
"""eSpeak NG English language voices reserved for validation and test voices (Caribbean and Welsh English)."""

KLATT_MODES: tuple[int, ...] = (1, 2, 3, 4)
"""eSpeak's Klatt synthesiser variants (``klatt N``); 0 is eSpeak's own synthesiser."""

VARIANT_PREFIX = "esarm-"
"""Prefix of the variant files written by :func:`random_voice` voices (never an eSpeak stock variant name)."""


@dataclass(frozen=True)
class EspeakVoice:
    """One eSpeak NG voice: a language voice (``accent``) plus the parameters of a variant file.

    Attributes:
        accent: eSpeak language voice, e.g. ``"en-us"``.
        sex: ``"M"`` or ``"W"`` (eSpeak's ``gender``; also the speaker name's prefix).
        pitch_hz: (base, top) of the voice's pitch range in Hz (eSpeak's ``pitch`` parameter 0..99 moves in it).
        formants: per formant 0..8, (frequency, height, width) in percent of the language voice's.
        breath: breath noise added per formant 1..8 (0: none; eSpeak's ``f5`` uses up to 6).
        flutter: pitch jitter (eSpeak's default 64).
        roughness: 0..7, creak (eSpeak's default 2).
        voicing: strength of voiced sounds in percent.
        consonants: strength of (voiced, unvoiced) consonants in percent.
        tone: spectral envelope as (frequency Hz, amplitude %) pairs, eSpeak's ``tone``.
        klatt: 0 for eSpeak's synthesiser, else the Klatt variant (:data:`KLATT_MODES`).
    """

    accent: str
    sex: str
    pitch_hz: tuple[int, int]
    formants: tuple[tuple[int, int, int], ...]
    breath: tuple[int, ...]
    flutter: int
    roughness: int
    voicing: int
    consonants: tuple[int, int]
    tone: tuple[tuple[int, int], ...]
    klatt: int = 0

    def variant_text(self) -> str:
        """The variant file (eSpeak NG's ``voices/!v`` format)."""
        lines = [
            "language variant",
            f"name {self.variant_name}",
            f"gender {'male' if self.sex == 'M' else 'female'}",
            f"pitch {self.pitch_hz[0]} {self.pitch_hz[1]}",
        ]
        lines += [f"formant {k} {f} {h} {w}" for k, (f, h, w) in enumerate(self.formants)]
        lines += [
            f"breath {' '.join(str(b) for b in self.breath)}",
            f"flutter {self.flutter}",
            f"roughness {self.roughness}",
            f"voicing {self.voicing}",
            f"consonants {self.consonants[0]} {self.consonants[1]}",
            f"tone {' '.join(f'{f} {a}' for f, a in self.tone)}",
        ]
        if self.klatt:
            lines.append(f"klatt {self.klatt}")
        return "\n".join(lines) + "\n"

    @property
    def variant_name(self) -> str:
        """A stable file name for the variant: a digest of its parameters."""
        parameters = repr((self.sex, self.pitch_hz, self.formants, self.breath, self.flutter, self.roughness,
                           self.voicing, self.consonants, self.tone, self.klatt))  # fmt: skip
        return VARIANT_PREFIX + hashlib.sha1(parameters.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        """The eSpeak voice name, ``accent+variant``."""
        return f"{self.accent}+{self.variant_name}"


def random_voice(rng: np.random.Generator, accents: tuple[str, ...] = TRAINING_ACCENTS, sex: str | None = None,
                 klatt_probability: float = 0.25) -> EspeakVoice:  # fmt: skip
    """Draw one voice from the space described in the module docstring.

    Args:
        rng: the generator (one per speaker makes each speaker's voice independent of the others').
        accents: language voices to draw from (:data:`TRAINING_ACCENTS` or :data:`HELD_OUT_ACCENTS`).
        sex: ``"M"``, ``"W"`` or ``None`` (drawn, even odds).
        klatt_probability: chance of eSpeak's Klatt synthesiser instead of its own.
    """
    if not accents:
        raise ValueError("accents must name at least one eSpeak language voice, got ()")
    if sex not in (None, "M", "W"):
        raise ValueError(f"sex must be 'M', 'W' or None, got {sex!r}")
    if not 0.0 <= klatt_probability <= 1.0:
        raise ValueError(f"klatt_probability must be in [0, 1], got {klatt_probability}")
    accent = str(accents[int(rng.integers(len(accents)))])
    sex = sex or ("M" if rng.random() < 0.5 else "W")
    # eSpeak's stock voices: m* base 80-90 Hz, f* 160-180 Hz; the top is the base times 1.3-1.5
    base = int(rng.uniform(70, 110) if sex == "M" else rng.uniform(140, 200))
    pitch_hz = (base, int(base * rng.uniform(1.25, 1.6)))
    # vocal-tract length: women's formants ~10-15 % higher than men's (Peterson and Barney 1952)
    tract = rng.uniform(0.9, 1.04) if sex == "M" else rng.uniform(1.0, 1.14)
    formants = tuple(
        (
            int(round(100 * (tract if k > 0 else 1.0) * rng.uniform(0.97, 1.03))),
            int(round(rng.uniform(80, 120))),
            int(round(rng.uniform(80, 150))),
        )
        for k in range(9)
    )
    breathiness = rng.uniform(0, 1) ** 2  # most voices modal, some breathy
    breath = tuple(int(round(breathiness * b)) for b in (0, 4, 6, 6, 6, 6, 0, 10))
    tilt = rng.uniform(-30, 20)  # % per octave above 600 Hz: dark (negative) to bright voices
    tone = tuple((f, int(np.clip(100 + tilt * np.log2(f / 600), 20, 200))) for f in (600, 1200, 2400, 4800))
    return EspeakVoice(
        accent=accent,
        sex=sex,
        pitch_hz=pitch_hz,
        formants=formants,
        breath=breath,
        flutter=int(rng.integers(0, 65)),
        roughness=int(rng.integers(0, 5)),
        voicing=int(rng.integers(75, 131)),
        consonants=(int(rng.integers(70, 151)), int(rng.integers(70, 151))),
        tone=tone,
        klatt=int(rng.choice(KLATT_MODES)) if rng.random() < klatt_probability else 0,
    )


__all__ = ["HELD_OUT_ACCENTS", "KLATT_MODES", "TRAINING_ACCENTS", "EspeakVoice", "random_voice"]
