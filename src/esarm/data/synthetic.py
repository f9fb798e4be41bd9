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

The generative model lives in :mod:`esarm.data.expressions`. The schema is the package's (``id``, ``speaker``, ``emotion``, ``intensity``, ``sentence``, ``audio``,
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
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from ..blendshapes import EMOTIONS, INTENSITIES
from .expressions import (
    EMOTION_PROFILES,
    INTENSITY_SCALE,
    VOICES,
    EmotionProfile,
    SpeakerStyle,
    animate,
    loudness_envelope,
    make_speakers,
    prosody,
)
from .schema import clip_features, decode_audio_value, rows_to_dataset
from .tts import EspeakSynthesizer, get_synthesizer, isolated_synthesizer

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


def speaker_splits(config: SyntheticCorpusConfig) -> dict[str, list[str]]:
    """Speaker names per split: the last speakers are test, the ones before them validation."""
    names = [s.name for s in make_speakers(config.num_speakers, config.seed)]
    num_train = config.num_speakers - config.num_validation_speakers - config.num_test_speakers
    return {
        "train": names[:num_train],
        "validation": names[num_train : num_train + config.num_validation_speakers],
        "test": names[num_train + config.num_validation_speakers :],
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
        sentence, voice=speaker.voice, seed=int(rng.integers(2**31)), **prosody(speaker, emotion, intensity, rng)
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
        f"{sum(len(decode_audio_value(a)) for a in corpus[name]['audio']) / config.sampling_rate / 60:.1f} |"
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
- `audio`: `{{bytes, path}}`, 16-bit FLAC bytes at `sampling_rate` ({config.sampling_rate} Hz, mono);
  `esarm.data.schema.decode_audio_value` gives float32 samples
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


__all__ = [
    "EMOTION_PROFILES",
    "INTENSITY_SCALE",
    "SENTENCES",
    "VOICES",
    "EmotionProfile",
    "SpeakerStyle",
    "SyntheticCorpusConfig",
    "animate",
    "build_synthetic_corpus",
    "generate_clip",
    "generate_synthetic_corpus",
    "loudness_envelope",
    "make_speakers",
    "plot_example",
    "speaker_splits",
]
