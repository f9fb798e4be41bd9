"""A fixed held-out set for lip sync: voices, sentences and (for test) a synthesiser that training never uses.

Two splits, built deterministically for a seed by :func:`build_heldout_sets`:

- ``validation``: eSpeak NG, the corpus's engine, but accent + variant pairs that :data:`esarm.data.synthetic.expressions.VOICES`
  does not list, in the accents that random training voices never use (:data:`esarm.data.synthetic.voices.HELD_OUT_ACCENTS`:
  Caribbean and Welsh English), with the Klatt and named variants such as ``Annie``, ``adam``, ``linda``,
  at pitches and rates outside the training speakers' ranges, reading :data:`VALIDATION_SENTENCES`;
- ``test``: CMU Flite (:mod:`esarm.data.synthetic.flite`), a different synthesiser family whose ``awb``, ``rms`` and ``slt``
  voices are built from recordings of real people, reading :data:`TEST_SENTENCES`.

The sentences were written for this set (not Harvard sentences, which the training pool draws from), rich in
p / b / m next to open vowels, so that the bilabial closures and wide openings that lip sync hinges on are frequent.
Rows follow the synthetic corpus's schema (:mod:`esarm.data.schema` plus ``phonemes`` and ``phoneme_times``); the
``blendshapes`` are the corpus's ground-truth generator (:func:`esarm.data.synthetic.expressions.animate`, one viseme and
coarticulation model for every engine) run on the engine's own phoneme timings, emotion neutral, so LVE and the
lip-sync measures (:mod:`esarm.evaluation.lipsync`) can both be computed. The ``speaker`` column names the engine
and voice (``"espeak:en-gb-x-gbcwmd+m8"``, ``"flite:awb"``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import resample
from ..utils import staged_folder
from .schema import SAMPLING_RATE, clip_features, rows_to_dataset
from .synthetic.expressions import SpeakerStyle, animate, make_speakers
from .synthetic.flite import INSTALL_HINT, FliteSynthesizer, find_flite
from .synthetic.tts import isolated_synthesizer

logger = logging.getLogger(__name__)

VALIDATION_SENTENCES: tuple[str, ...] = (
    "Bob bought a map of the big harbour.",
    "My father parked the car by the barn.",
    "Pam made a pot of plum jam for the market.",
    "A brave bat flapped above the palm trees.",
    "The mob paused by the broad stone bridge.",
    "Put the paper bag back in the top drawer.",
    "Mother baked bread on a bright May morning.",
    "Bill hopes to buy a pump for the boat.",
    "Pack the lamp and the maps in a box.",
    "A bumpy path climbs past the old mill.",
    "The band played a march in the park at dawn.",
    "Mark paid for a large bowl of soup.",
    "Bubbles popped on top of the warm bath.",
    "Mom wants a pair of cotton gloves.",
    "Paul was happy to patch the broken pipe.",
    "The tall palm bent in the autumn storm.",
    "Ripe apples piled up by the shop window.",
    "A barber cut my hair in a hurry.",
    "Peter swam across the bay by himself.",
    "Bring a pen and a pad to the meeting.",
)
"""Sentences of the validation split (20)."""

TEST_SENTENCES: tuple[str, ...] = (
    "Paddy parked the bus behind the pub.",
    "A lamb ran about the farm at noon.",
    "Mabel hummed a ballad by the open window.",
    "The pilot dropped a box of maps on the ramp.",
    "Barbara wants a cup of hot cocoa.",
    "Ben spotted a moth on the marble pillar.",
    "The baby grabbed a spoon and a plum.",
    "Pop the corn and pour it in the big pan.",
    "Max combed his hair before the party.",
    "A palm tree swayed above the calm pond.",
    "Bright papers blew across the empty plaza.",
    "Mike played bass in a famous band.",
    "Pat bumped her arm on the bathroom mirror.",
    "The boss approved a plan for the bank.",
    "My aunt bought a mop and a bucket.",
    "Robin hopped past the pumpkin patch.",
    "The army marched up a steep bumpy path.",
    "Amber lamps brighten the dark harbour.",
    "Bobby might ask about the lost camera.",
    "Palmer spilled a pot of paint on the carpet.",
)
"""Sentences of the test split (20)."""


@dataclass(frozen=True)
class HeldOutVoice:
    """One held-out voice.

    Attributes:
        engine: ``"espeak"`` or ``"flite"``.
        voice: the engine's voice name (eSpeak ``language+variant``, a Flite voice).
        sex: ``"M"`` or ``"W"`` (which facial style pool the speaker draws from does not depend on it).
        pitch: eSpeak base pitch (0..99), or Flite's target mean pitch in Hz (``None``: the voice's own).
        rate: eSpeak words per minute, or Flite's duration stretch (> 1: slower).
    """

    engine: str
    voice: str
    sex: str
    pitch: float | None
    rate: float

    @property
    def name(self) -> str:
        return f"{self.engine}:{self.voice}"


# Training speakers use rates of 165-190 words per minute and base pitches of 34-46 (men) and 56-68 (women): these
# voices sit outside those ranges on at least one of the two.
VALIDATION_VOICES: tuple[HeldOutVoice, ...] = (
    HeldOutVoice("espeak", "en-gb-x-gbcwmd+m8", "M", 32.0, 150.0),
    HeldOutVoice("espeak", "en-gb-x-gbcwmd+Annie", "W", 72.0, 200.0),
    HeldOutVoice("espeak", "en-029+adam", "M", 48.0, 205.0),
    HeldOutVoice("espeak", "en-029+belinda", "W", 54.0, 155.0),
    HeldOutVoice("espeak", "en-gb-x-gbcwmd+klatt4", "M", 30.0, 160.0),
    HeldOutVoice("espeak", "en-029+linda", "W", 74.0, 195.0),
)
TEST_VOICES: tuple[HeldOutVoice, ...] = (
    HeldOutVoice("flite", "awb", "M", None, 1.0),
    HeldOutVoice("flite", "rms", "M", None, 1.0),
    HeldOutVoice("flite", "slt", "W", None, 1.0),
    HeldOutVoice("flite", "kal16", "M", None, 1.0),
    HeldOutVoice("flite", "kal", "M", 125.0, 1.1),
)
SPLITS: dict[str, tuple[tuple[HeldOutVoice, ...], tuple[str, ...]]] = {
    "validation": (VALIDATION_VOICES, VALIDATION_SENTENCES),
    "test": (TEST_VOICES, TEST_SENTENCES),
}
"""Voices and sentences of each split."""

CONFIG_FILE = "heldout_config.json"
LEADING_SILENCE = (0.08, 0.25)  # s, drawn per clip, as in the synthetic corpus
NOISE_LEVEL = 0.002  # background noise standard deviation (full scale 1), as in the synthetic corpus
RATE_JITTER = 0.06  # relative per-clip change of the speaking rate


def features():
    """``datasets.Features`` of the held-out sets: the clip schema plus ``phonemes`` (IPA) and ``phoneme_times``."""
    from datasets import List, Value

    return clip_features({"phonemes": List(Value("string")), "phoneme_times": List(Value("float32"))})


def missing_engine(split: str) -> str | None:
    """Why ``split`` cannot be built on this machine (its synthesiser is not installed), or ``None`` when it can."""
    voices, _ = SPLITS[_check_splits([split])[0]]
    if any(v.engine == "flite" for v in voices) and find_flite() is None:
        return f"the {split} split is spoken by CMU Flite, which was not found: {INSTALL_HINT}"
    return None


def read_heldout_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The settings that held-out sets saved by :func:`build_heldout_sets` were built with (seed, splits, fps,
    num_sentences, voices, sentences)."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"folder must hold held-out sets written by build_heldout_sets, got {str(folder)!r}")
    return json.loads(path.read_text())


def speaker_styles(split: str, seed: int = 0) -> dict[str, SpeakerStyle]:
    """The ground-truth generator's facial style of each voice of ``split`` (by ``speaker`` name) for the sets
    built with ``seed``: with them, :func:`esarm.data.synthetic.expressions.animate` replays a held-out row's ground truth
    under another emotion label."""
    voices, _ = SPLITS[_check_splits([split])[0]]
    return {s.name: s for s in _speaker_styles(voices, seed, list(SPLITS).index(split))}


def _speaker_styles(voices: Sequence[HeldOutVoice], seed: int, split_index: int) -> list[SpeakerStyle]:
    # Facial styles come from the corpus's own generator (same ranges of articulation, jaw share, loudness coupling),
    # drawn with a seed of their own so that no held-out face is a training speaker's face.
    styles = make_speakers(len(voices), seed=10_000 + 100 * seed + split_index)
    return [dataclasses.replace(s, name=v.name, voice=v.voice) for s, v in zip(styles, voices)]


def _synthesize(voice: HeldOutVoice, sentence: str, rng: np.random.Generator, espeak, flite):
    jitter = 1.0 + rng.uniform(-RATE_JITTER, RATE_JITTER)
    if voice.engine == "espeak":
        utterance = espeak.synthesize(
            sentence, voice=voice.voice, rate=voice.rate * jitter, pitch=voice.pitch, pitch_range=50,
            seed=int(rng.integers(2**31)),
        )  # fmt: skip
        phonemes = [p.replace("ˈ", "").replace("ˌ", "") or "_" for p in utterance.phonemes]
    else:
        utterance = flite.synthesize(
            sentence, voice=voice.voice, duration_stretch=voice.rate / jitter, f0_mean=voice.pitch
        )
        phonemes = list(utterance.phonemes)
    return utterance, phonemes


def generate_clip(
    voice: HeldOutVoice, style: SpeakerStyle, sentence: str, sentence_index: int, rng: np.random.Generator,
    espeak=None, flite: FliteSynthesizer | None = None, fps: float = 30.0,
) -> dict[str, Any]:  # fmt: skip
    """One held-out row: speech from ``voice``, ground truth from the engine's phoneme timings (module docstring)."""
    utterance, phonemes = _synthesize(voice, sentence, rng, espeak, flite)
    speech = resample(utterance.audio, utterance.sampling_rate, SAMPLING_RATE)
    lead = int(rng.uniform(*LEADING_SILENCE) * SAMPLING_RATE)
    audio = np.concatenate([np.zeros(lead, np.float32), speech])
    audio = audio + NOISE_LEVEL * rng.standard_normal(len(audio)).astype(np.float32)
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
    times = np.asarray(utterance.phoneme_starts, np.float64) + lead / SAMPLING_RATE
    blendshapes = animate(phonemes, times, audio, SAMPLING_RATE, style, "neutral", 1, fps, rng)
    return {
        "id": f"{voice.engine}_{voice.voice}_neutral_level_1_{sentence_index + 1:03d}",
        "speaker": voice.name,
        "emotion": "neutral",
        "intensity": 1,
        "sentence": sentence,
        "audio": audio,
        "sampling_rate": SAMPLING_RATE,
        "blendshapes": blendshapes,
        "fps": float(fps),
        "phonemes": phonemes,
        "phoneme_times": times.astype(np.float32),
    }


def _check_splits(splits: Sequence[str]) -> tuple[str, ...]:
    splits = tuple(splits)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise ValueError(f"splits must be a non-empty subset of {list(SPLITS)}, got {list(splits)}")
    return splits


def generate_heldout_sets(
    seed: int = 0, splits: Sequence[str] = ("validation", "test"), fps: float = 30.0, num_sentences: int | None = None
):
    """The held-out sets in memory: a ``datasets.DatasetDict`` with the requested ``splits``.

    Args:
        seed: seed of every random choice (facial styles, rate jitter, silences, noise, blinks).
        splits: ``"validation"`` (eSpeak NG) and / or ``"test"`` (CMU Flite; needs the ``flite`` program).
        fps: frame rate of the ground-truth blendshapes.
        num_sentences: read only the first sentences of each split (default: all 20); for quick checks.

    Raises:
        FileNotFoundError: ``"test"`` is requested and flite is not installed (the message names the package).
    """
    from datasets import DatasetDict

    splits = _check_splits(splits)
    if num_sentences is not None and not 1 <= num_sentences <= len(VALIDATION_SENTENCES):
        raise ValueError(f"num_sentences must be in 1..{len(VALIDATION_SENTENCES)} or None, got {num_sentences}")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    flite = None
    if "test" in splits:
        if find_flite() is None:
            raise FileNotFoundError(f"the test split is spoken by CMU Flite, which was not found: {INSTALL_HINT}")
        flite = FliteSynthesizer()
    started = time.perf_counter()
    result = {}
    for split in splits:
        voices, sentences = SPLITS[split]
        sentences = sentences[:num_sentences]
        styles = _speaker_styles(voices, seed, list(SPLITS).index(split))
        rows = []
        for voice_index, (voice, style) in enumerate(zip(voices, styles)):
            # A fresh eSpeak NG state per voice keeps the audio bit-identical whatever ran before.
            with isolated_synthesizer() if voice.engine == "espeak" else contextlib.nullcontext() as espeak:
                for sentence_index, sentence in enumerate(sentences):
                    rng = np.random.default_rng([seed, 7, list(SPLITS).index(split), voice_index, sentence_index])
                    rows.append(generate_clip(voice, style, sentence, sentence_index, rng, espeak, flite, fps))
        result[split] = rows_to_dataset(rows, features())
    logger.info(
        "generated held-out sets %s in %.1f s", {k: len(v) for k, v in result.items()}, time.perf_counter() - started
    )
    return DatasetDict(result)


def _config(seed: int, splits: Sequence[str], fps: float, num_sentences: int | None) -> dict[str, Any]:
    return {
        "seed": seed,
        "splits": list(splits),
        "fps": float(fps),
        "num_sentences": num_sentences,
        "voices": {s: [dataclasses.asdict(v) for v in SPLITS[s][0]] for s in splits},
        "sentences": {s: list(SPLITS[s][1][:num_sentences]) for s in splits},
    }


def build_heldout_sets(
    output_dir: str | os.PathLike, seed: int = 0, splits: Sequence[str] = ("validation", "test"), fps: float = 30.0,
    num_sentences: int | None = None, overwrite: bool = False,
) -> Path:  # fmt: skip
    """Generate the held-out sets (:func:`generate_heldout_sets`) and save them with ``save_to_disk``.

    Idempotent: sets already in ``output_dir`` built from the same settings, voices and sentences are reused. Other
    contents raise ``ValueError`` unless ``overwrite``. The sets are written to a temporary folder beside
    ``output_dir`` and renamed into place, so ``output_dir`` is never half-written.
    """
    splits = _check_splits(splits)
    output_dir = Path(output_dir)
    wanted = _config(seed, splits, fps, num_sentences)
    config_path = output_dir / CONFIG_FILE
    if config_path.exists() and (output_dir / "dataset_dict.json").exists():
        existing = json.loads(config_path.read_text())
        if existing == wanted and not overwrite:
            logger.info("reusing the held-out sets in %s", output_dir)
            return output_dir
        if not overwrite:
            raise ValueError(
                f"output_dir {output_dir} holds held-out sets of other settings (seed {existing.get('seed')}, splits "
                f"{existing.get('splits')}); expected seed {seed}, splits {list(splits)}. Pass overwrite=True or "
                "another output_dir."
            )
    elif output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise ValueError(f"output_dir {output_dir} exists and does not hold held-out sets; pass overwrite=True")

    sets = generate_heldout_sets(seed, splits, fps, num_sentences)
    with staged_folder(output_dir) as staging:
        sets.save_to_disk(str(staging))
        (staging / CONFIG_FILE).write_text(json.dumps(wanted, indent=2))
    logger.info("saved held-out sets to %s", output_dir)
    return output_dir


__all__ = [
    "SPLITS",
    "TEST_SENTENCES",
    "TEST_VOICES",
    "VALIDATION_SENTENCES",
    "VALIDATION_VOICES",
    "HeldOutVoice",
    "build_heldout_sets",
    "features",
    "generate_clip",
    "generate_heldout_sets",
    "missing_engine",
    "read_heldout_config",
    "speaker_styles",
]
