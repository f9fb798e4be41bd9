"""A synthetic emotional talking-face corpus shaped like MEAD, generated offline in seconds.

Every speaker reads the same sentences in each of MEAD's 8 emotions at 3 intensities (neutral at intensity 1
only). Speech comes from eSpeak NG (a stock voice and variant per speaker, or with ``voices="random"`` a random
voice per speaker from :mod:`esarm.data.voices`) and optionally Festival (:mod:`esarm.data.festival`); the emotion
changes the voice's prosody (pitch level and range, rate, volume). Sentences come from
:mod:`esarm.data.sentences`; each speaker reads the same sentences in every emotion. Ground-truth ARKit
blendshapes at ``fps`` combine

- lips and jaw from the phoneme timing through a viseme table with coarticulation
  (:mod:`esarm.data.visemes`), the mouth opening scaled by the loudness envelope of the audio;
- the emotion's expression on the upper face, cheeks and mouth corners (brows, eye widen / squint, smile,
  frown, sneer), scaled by the intensity, with an onset, a slow drift and brow raises on pitch accents;
- blinks (a Poisson process), small gaze movements, and per-speaker style (articulation amplitude,
  left/right asymmetry, expressivity, resting offsets, blink rate).

The generative model lives in :mod:`esarm.data.expressions`. The schema is the package's (``id``, ``speaker``, ``emotion``, ``intensity``, ``sentence``, ``audio``,
``sampling_rate``, ``blendshapes``, ``fps``) plus ``phonemes`` (IPA, stress marks removed) and ``phoneme_times``
(start of each phoneme in seconds). Everything is deterministic for a seed, whatever the number of workers.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from ..blendshapes import EMOTIONS, INTENSITIES
from ..utils import staged_folder
from .expressions import (
    EMOTION_PROFILES,
    INTENSITY_SCALE,
    VOICE_SPACES,
    VOICES,
    EmotionProfile,
    SpeakerStyle,
    animate,
    loudness_envelope,
    make_language_speakers,
    make_speakers,
    prosody,
)
from .festival import DEBIAN_PACKAGES, FestivalRequest, festival_available, require_festival, synthesize_batch
from .languages import TEST_LANGUAGES, TRAINING_LANGUAGES, VALIDATION_LANGUAGES, check_language, language_sentences
from .schema import clip_features, decode_audio_value, rows_to_dataset
from .sentences import HARVARD_SENTENCES, sentence_pool
from .tts import EspeakSynthesizer, Utterance, get_synthesizer, isolated_synthesizer

logger = logging.getLogger(__name__)

ENGINE_SAMPLING_RATE = 22050

SENTENCES: tuple[str, ...] = HARVARD_SENTENCES
"""The first sentences of every pool (:data:`esarm.data.sentences.HARVARD_SENTENCES`)."""

ENGINES: tuple[str, ...] = ("espeak", "festival")


CORPUS_PRESETS = ("micro", "tiny", "small", "mead_like", "multilingual")  # the classmethods of SyntheticCorpusConfig


@dataclass
class SyntheticCorpusConfig:
    """Size and generative parameters of the synthetic corpus.

    Args:
        num_speakers: speakers in all splits (train gets what validation and test do not).
        num_validation_speakers: speakers held out for the ``validation`` split.
        num_test_speakers: speakers held out for the ``test`` split.
        num_sentences: sentences per speaker (each reads them in every emotion: MEAD's pairs).
        sentence_pool_size: ``None``: every speaker reads the first ``num_sentences`` of the pool (``SENTENCES``
            first, shortest first). A number: the pool's first ``sentence_pool_size`` sentences
            (:func:`esarm.data.sentences.sentence_pool`: Harvard, then generated and phonetically balanced), of
            which each speaker reads ``num_sentences`` drawn for that speaker.
        exclude_sentences: sentences never used (e.g. a held-out set's validation and test lists).
        voices: ``"fixed"``: eSpeak NG stock voice + variant pairs (``VOICES``); ``"random"``: a random voice per
            speaker, training speakers from the training region of the voice space and validation / test
            speakers from its reserved accents (:mod:`esarm.data.voices`).
        engines: synthesisers of the training speakers with ``"random"`` voices: ``("espeak",)`` or
            ``("espeak", "festival")`` (Festival: Debian packages, see :mod:`esarm.data.festival`).
        festival_share: with both engines, the chance that a training speaker speaks with Festival.
        emotions: emotions to generate, a subset of ``EMOTIONS``.
        intensities: intensities (1..3) for every emotion but neutral, which has intensity 1 only (as MEAD).
        fps: blendshape frame rate (frames per second).
        sampling_rate: audio sampling rate in Hz.
        seed: seed of every random choice (speaker styles, blinks, gaze, noise, silences).
        noise_level: standard deviation of the background noise added to the audio (full scale = 1).
        leading_silence: range (s) of the silence before the speech starts, drawn per clip.
        num_workers: processes generating clips (0 or 1: in this process; eSpeak NG is not thread-safe).
            The corpus is bit-identical for a seed whatever the number of workers.
        languages: languages of the training speakers (:mod:`esarm.data.languages`; training speaker ``i`` reads
            ``languages[i % len(languages)]``); the held-out speakers of ``num_validation_speakers`` and
            ``num_test_speakers`` read English. Other than ``("en",)`` needs ``voices="random"``.
        validation_languages: languages held out for the ``validation`` split: each adds
            ``speakers_per_held_out_language`` speakers there, with voices of that language and its own sentences.
        test_languages: the same for the ``test`` split. The three language lists are disjoint.
        speakers_per_held_out_language: speakers of each held-out language.
    """

    num_speakers: int = 6
    num_validation_speakers: int = 1
    num_test_speakers: int = 1
    num_sentences: int = 8
    sentence_pool_size: int | None = None
    exclude_sentences: tuple[str, ...] = ()
    voices: str = "fixed"
    engines: tuple[str, ...] = ("espeak",)
    festival_share: float = 0.3
    emotions: tuple[str, ...] = EMOTIONS
    intensities: tuple[int, ...] = INTENSITIES
    fps: float = 30.0
    sampling_rate: int = 16000
    seed: int = 0
    noise_level: float = 0.002
    leading_silence: tuple[float, float] = (0.08, 0.25)
    num_workers: int = 1
    languages: tuple[str, ...] = ("en",)
    validation_languages: tuple[str, ...] = ()
    test_languages: tuple[str, ...] = ()
    speakers_per_held_out_language: int = 2

    def __post_init__(self) -> None:
        self.languages = tuple(self.languages)
        self.validation_languages = tuple(self.validation_languages)
        self.test_languages = tuple(self.test_languages)
        self._check_languages()
        self.emotions = tuple(self.emotions)
        self.engines = tuple(self.engines)
        self.exclude_sentences = tuple(self.exclude_sentences)
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
        if self.num_sentences < 1:
            raise ValueError(f"num_sentences must be >= 1, got {self.num_sentences}")
        if self.sentence_pool_size is not None and self.sentence_pool_size < self.num_sentences:
            raise ValueError(
                f"sentence_pool_size must be None or >= num_sentences = {self.num_sentences}, "
                f"got {self.sentence_pool_size}"
            )
        if self.voices not in VOICE_SPACES:
            raise ValueError(f"voices must be one of {VOICE_SPACES}, got {self.voices!r}")
        if (
            not self.engines
            or any(e not in ENGINES for e in self.engines)
            or len(set(self.engines)) < len(self.engines)
        ):
            raise ValueError(f"engines must be distinct names among {ENGINES}, got {self.engines}")
        # the stock voice list is eSpeak's: other engines come with the random voice space
        if self.voices == "fixed" and self.engines != ("espeak",):
            raise ValueError(f"engines must be ('espeak',) with voices='fixed', got {self.engines}")
        if not 0.0 <= self.festival_share <= 1.0:
            raise ValueError(f"festival_share must be in [0, 1], got {self.festival_share}")
        if "festival" in self.engines:
            require_festival()
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

    def _check_languages(self) -> None:
        lists = {"languages": self.languages, "validation_languages": self.validation_languages,
                 "test_languages": self.test_languages}  # fmt: skip
        for name, languages in lists.items():
            for language in languages:
                check_language(language, name)
            if len(set(languages)) < len(languages):
                raise ValueError(f"{name} must not repeat a language, got {languages}")
        if not self.languages:
            raise ValueError("languages must name at least one training language, got ()")
        # a held-out language must be one that training never hears, or its r measures nothing held out
        for name in ("validation_languages", "test_languages"):
            shared = sorted(set(lists[name]) & set(self.languages))
            if shared:
                raise ValueError(f"{name} must not hold a training language (languages), got {shared}")
        shared = sorted(set(self.validation_languages) & set(self.test_languages))
        if shared:
            raise ValueError(f"validation_languages and test_languages must be disjoint, got {shared} in both")
        if self.speakers_per_held_out_language < 1:
            raise ValueError(f"speakers_per_held_out_language must be >= 1, got {self.speakers_per_held_out_language}")
        if self.voices == "fixed" and (self.languages != ("en",) or self.validation_languages or self.test_languages):
            raise ValueError(
                f"voices must be 'random' for a corpus in other languages than English, got {self.voices!r} with "
                f"languages {self.languages}, validation_languages {self.validation_languages}, test_languages "
                f"{self.test_languages}"
            )

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
        """Many voices and sentences for the CPU ``small`` model: 36 random-voice speakers (32 / 2 / 2; Festival
        for ~30 % of the training speakers where it is installed), 12 sentences each out of a pool of 192, the
        8 emotions at intensity 3: 3,456 clips, ~2 hours of audio."""
        values = dict(
            num_speakers=36, num_validation_speakers=2, num_test_speakers=2, num_sentences=12,
            sentence_pool_size=192, voices="random", engines=available_engines(), intensities=(3,),
        )  # fmt: skip
        return cls(**{**values, **overrides})

    @classmethod
    def multilingual(cls, **overrides: Any) -> SyntheticCorpusConfig:
        """Many languages for lip sync that does not depend on the language: 26 random-voice speakers (24 train,
        2 of each of the 12 :data:`~esarm.data.languages.TRAINING_LANGUAGES`, then 1 English validation and 1
        English test speaker), plus 2 speakers of each held-out language (validation: French and Polish; test:
        German, Spanish, Mandarin), 6 sentences each out of a pool of 48 per language, the 8 emotions at
        intensity 3: 1,728 clips."""
        values = dict(
            num_speakers=26, num_sentences=6, sentence_pool_size=48, voices="random", intensities=(3,),
            languages=TRAINING_LANGUAGES, validation_languages=VALIDATION_LANGUAGES, test_languages=TEST_LANGUAGES,
        )  # fmt: skip
        return cls(**{**values, **overrides})

    @classmethod
    def mead_like(cls, **overrides: Any) -> SyntheticCorpusConfig:
        """MEAD's shape: 48 random-voice speakers (40 / 4 / 4), the same 30 sentences, all conditions: ~32k clips."""
        values = dict(
            num_speakers=48, num_validation_speakers=4, num_test_speakers=4, num_sentences=30, voices="random",
            engines=available_engines(),
        )  # fmt: skip
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
    def num_held_out_language_speakers(self) -> int:
        """Speakers of the held-out languages (beyond ``num_speakers``)."""
        held_out = len(self.validation_languages) + len(self.test_languages)
        return held_out * self.speakers_per_held_out_language

    @property
    def num_clips(self) -> int:
        speakers = self.num_speakers + self.num_held_out_language_speakers
        return speakers * self.num_sentences * len(self.conditions)


def available_engines() -> tuple[str, ...]:
    """``("espeak", "festival")`` where Festival and its voices are installed, else ``("espeak",)`` (logged)."""
    if festival_available():
        return ENGINES
    logger.warning("Festival is not installed (apt-get install %s): eSpeak NG voices only", DEBIAN_PACKAGES)
    return ("espeak",)


def corpus_speakers(config: SyntheticCorpusConfig) -> list[SpeakerStyle]:
    """The speakers of a corpus: the ``num_speakers`` (train, English validation, English test), then the
    speakers of each validation language, then of each test language."""
    speakers = make_speakers(
        config.num_speakers, config.seed, voices=config.voices, engines=config.engines,
        num_held_out=config.num_validation_speakers + config.num_test_speakers, festival_share=config.festival_share,
        languages=config.languages,
    )  # fmt: skip
    for language in (*config.validation_languages, *config.test_languages):
        speakers += make_language_speakers(language, config.speakers_per_held_out_language, config.seed, len(speakers))
    return speakers


def corpus_sentences(config: SyntheticCorpusConfig, language: str = "en") -> list[str]:
    """The sentence pool of a corpus in ``language`` (``sentence_pool_size`` sentences, or ``num_sentences`` without
    a pool): English from :func:`esarm.data.sentences.sentence_pool`, the others from
    :func:`esarm.data.languages.language_sentences`."""
    size = config.sentence_pool_size or config.num_sentences
    if language == "en":
        return sentence_pool(size, config.seed, config.exclude_sentences)
    return language_sentences(language, size, config.seed)


def speaker_sentences(config: SyntheticCorpusConfig, speaker_index: int) -> list[int]:
    """Indices (into ``corpus_sentences``) of the sentences a speaker reads, in every emotion."""
    if config.sentence_pool_size is None:
        return list(range(config.num_sentences))
    rng = np.random.default_rng([config.seed, 6, speaker_index])
    return sorted(int(i) for i in rng.choice(config.sentence_pool_size, config.num_sentences, replace=False))


def speaker_splits(config: SyntheticCorpusConfig) -> dict[str, list[str]]:
    """Speaker names per split: of the ``num_speakers``, the last are test and the ones before them validation; the
    speakers of the validation and test languages join those splits."""
    names = [s.name for s in corpus_speakers(config)]
    num_train = config.num_speakers - config.num_validation_speakers - config.num_test_speakers
    per_language = config.speakers_per_held_out_language
    validation_end = config.num_speakers + len(config.validation_languages) * per_language
    return {
        "train": names[:num_train],
        "validation": names[num_train : num_train + config.num_validation_speakers]
        + names[config.num_speakers : validation_end],
        "test": names[num_train + config.num_validation_speakers : config.num_speakers] + names[validation_end:],
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


def _plan(config: SyntheticCorpusConfig, speaker: SpeakerStyle, job: _ClipJob) -> tuple[np.random.Generator, dict]:
    """The clip's generator and its synthesis parameters (seed and prosody), drawn first from it."""
    rng = np.random.default_rng(
        [config.seed, 2, job.speaker_index, job.sentence_index, EMOTIONS.index(job.emotion), job.intensity]
    )
    return rng, {"seed": int(rng.integers(2**31)), **prosody(speaker, job.emotion, job.intensity, rng)}


def festival_request(speaker: SpeakerStyle, sentence: str, parameters: dict) -> FestivalRequest:
    """A Festival utterance for a speaker's prosody (eSpeak NG units, see ``prosody``) mapped to Hz and speed.

    eSpeak's pitch 0..99 maps to ``110 * 2 ** ((pitch - 45) / 25)`` Hz (pitch 40: 96 Hz, 60: 167 Hz; an emotion's
    +15 raises it by half), its range 0..99 to a standard deviation of ``0.26 * range / 100`` of that, and its
    rate to a speed relative to 175 words per minute (eSpeak's default). The pitch is kept within 90..350 Hz.
    """
    # clamped to 90..350 Hz: Festival's diphone voices place no pitch marks (and crash) below 70-80 Hz
    f0 = float(np.clip(110.0 * 2.0 ** ((parameters["pitch"] - 45.0) / 25.0), 90.0, 350.0))
    return FestivalRequest(
        text=sentence, voice=speaker.voice, f0_mean=f0, f0_std=f0 * 0.26 * max(parameters["pitch_range"], 0) / 100,
        speed=max(parameters["rate"], 80.0) / 175.0, formant_scale=speaker.formant_scale,
    )  # fmt: skip


def _clip(
    config: SyntheticCorpusConfig, speaker: SpeakerStyle, job: _ClipJob, sentence: str, rng: np.random.Generator,
    utterance: Utterance, gain: float = 1.0,
) -> dict[str, Any]:  # fmt: skip
    """One row from a synthesized utterance (see the module docstring for the columns)."""
    from scipy.signal import resample_poly

    up, down, taps = _resampling_filter(utterance.sampling_rate, config.sampling_rate)
    speech = gain * resample_poly(utterance.audio, up, down, window=taps)
    lead = int(rng.uniform(*config.leading_silence) * config.sampling_rate)
    audio = np.concatenate([np.zeros(lead, np.float32), speech.astype(np.float32)])
    phoneme_times = utterance.phoneme_starts + lead / config.sampling_rate
    if config.noise_level > 0:
        audio = audio + config.noise_level * rng.standard_normal(len(audio)).astype(np.float32)
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
    blendshapes = animate(
        utterance.phonemes, phoneme_times, audio, config.sampling_rate, speaker, job.emotion, job.intensity,
        config.fps, rng,
    )  # fmt: skip
    return {
        "id": f"{speaker.name}_{job.emotion}_level_{job.intensity}_{job.sentence_index + 1:03d}",
        "speaker": speaker.name,
        "emotion": job.emotion,
        "intensity": job.intensity,
        "sentence": sentence,
        "audio": audio,
        "sampling_rate": config.sampling_rate,
        "blendshapes": blendshapes,
        "fps": float(config.fps),
        "phonemes": [p.replace("ˈ", "").replace("ˌ", "") or "_" for p in utterance.phonemes],
        "phoneme_times": phoneme_times.astype(np.float32),
        "language": speaker.language,
    }


def generate_clip(
    config: SyntheticCorpusConfig, speaker: SpeakerStyle, speaker_index: int, sentence_index: int, emotion: str,
    intensity: int, synthesizer: EspeakSynthesizer | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One row of the corpus (see the module docstring for the columns); ``sentence_index`` into the pool.

    A speaker with a random eSpeak voice needs a ``synthesizer`` of ``isolated_synthesizer`` (its variant file is
    installed there).
    """
    job = _ClipJob(speaker_index, sentence_index, emotion, intensity)
    sentence = corpus_sentences(config, speaker.language)[sentence_index]
    return _run_batch(config, speaker, sentence, [job], synthesizer)[0]


# Festival's waves peak near full scale (eSpeak NG's at ~0.5 at volume 100): this gain matches their loudness.
_FESTIVAL_GAIN = 0.5


def _run_batch(
    config: SyntheticCorpusConfig, speaker: SpeakerStyle, sentence: str, jobs: list[_ClipJob],
    synthesizer: EspeakSynthesizer | None,
) -> list[dict[str, Any]]:  # fmt: skip
    plans = [_plan(config, speaker, job) for job in jobs]
    if speaker.engine == "festival":
        requests = [festival_request(speaker, sentence, parameters) for _, parameters in plans]
        utterances = synthesize_batch(requests)
        gains = [_FESTIVAL_GAIN * parameters["volume"] / 100.0 for _, parameters in plans]
        return [
            _clip(config, speaker, job, sentence, rng, utterance, gain)
            for job, (rng, _), utterance, gain in zip(jobs, plans, utterances, gains)
        ]
    synthesizer = synthesizer or get_synthesizer()
    if speaker.variant:
        synthesizer.install_variant(speaker.voice.split("+", 1)[1], speaker.variant)
    rows = []
    for job, (rng, parameters) in zip(jobs, plans):
        utterance = synthesizer.synthesize(sentence, voice=speaker.voice, **parameters)
        rows.append(_clip(config, speaker, job, sentence, rng, utterance))
    return rows


def features():
    """The ``datasets.Features`` of the synthetic corpus (the package schema + ``phonemes``, ``phoneme_times``,
    ``language``)."""
    from datasets import List, Value

    return clip_features(
        {"phonemes": List(Value("string")), "phoneme_times": List(Value("float32")), "language": Value("string")}
    )


def _jobs(config: SyntheticCorpusConfig) -> list[_ClipJob]:
    return [
        _ClipJob(speaker_index, sentence_index, emotion, intensity)
        for speaker_index in range(config.num_speakers + config.num_held_out_language_speakers)
        for sentence_index in speaker_sentences(config, speaker_index)
        for emotion, intensity in config.conditions
    ]


def _run_jobs(config: SyntheticCorpusConfig, jobs: list[_ClipJob]) -> list[dict[str, Any]]:
    # One (speaker, sentence) batch. A fresh eSpeak NG state per batch makes the audio reproducible (see
    # esarm.data.tts); Festival runs one process per batch.
    speaker = corpus_speakers(config)[jobs[0].speaker_index]
    sentence = corpus_sentences(config, speaker.language)[jobs[0].sentence_index]
    if speaker.engine == "festival":
        return _run_batch(config, speaker, sentence, jobs, None)
    with isolated_synthesizer() as synthesizer:
        return _run_batch(config, speaker, sentence, jobs, synthesizer)


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
    for language in ("en", *config.languages, *config.validation_languages, *config.test_languages):
        corpus_sentences(config, language)  # the pools are cached: computed once here, inherited by forked workers
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
    sentences = (
        "the same for every speaker" if config.sentence_pool_size is None
        else f"drawn per speaker from a pool of {config.sentence_pool_size}: Harvard sentences, then generated ones"
    )  # fmt: skip
    if config.languages != ("en",) or config.validation_languages or config.test_languages:
        sentences += " in English, a pool of that size per language in the others"
    engines = " and ".join({"espeak": "eSpeak NG", "festival": "Festival"}[e] for e in config.engines)
    voices = (
        "eSpeak NG stock voice + variant pairs" if config.voices == "fixed"
        else f"a random voice per speaker ({engines}); validation and test speakers use reserved eSpeak accents"
    )  # fmt: skip
    languages = list(dict.fromkeys(("en", *config.languages, *config.validation_languages, *config.test_languages)))
    if len(languages) > 1:
        held_out = ", ".join(config.validation_languages) or "none"
        voices += (
            f". Languages: training {', '.join(config.languages)}; held out for validation {held_out}, for test "
            f"{', '.join(config.test_languages) or 'none'} ({config.speakers_per_held_out_language} speakers each, "
            "voices of that language, sentences written per language by `esarm.data.languages`); the other "
            "validation and test speakers read English"
        )
    rows = "\n".join(
        f"| {name} | {corpus[name].num_rows} | {', '.join(splits[name])} | "
        f"{sum(len(decode_audio_value(a)) for a in corpus[name]['audio']) / config.sampling_rate / 60:.1f} |"
        for name in corpus
    )
    return f"""---
license: apache-2.0
language: [{", ".join(languages)}]
pretty_name: esarm synthetic emotional talking-face corpus
tags: [speech-driven-animation, blendshapes, arkit, synthetic, emotion]
task_categories: [audio-to-audio]
---
# esarm synthetic emotional talking-face corpus

Generated offline by `esarm.data.synthetic` (eSpeak NG speech + rule-based ARKit blendshapes) in
{seconds:.1f} s. Shaped like MEAD: every speaker reads {config.num_sentences} sentences ({sentences}) in
{len(config.emotions)} emotions ({", ".join(config.emotions)}) at intensities {list(config.intensities)}
(neutral at intensity 1 only), the same sentences in every emotion. Voices: {voices}.
Load with `datasets.load_from_disk(path)`.

| split | clips | speakers | minutes of audio |
|---|---|---|---|
{rows}

## Columns
- `id`, `speaker`, `emotion` (MEAD's names), `intensity` (1-3), `sentence`
- `audio`: `{{bytes, path}}`, 16-bit FLAC bytes at `sampling_rate` ({config.sampling_rate} Hz, mono);
  `esarm.data.schema.decode_audio_value` gives float32 samples
- `blendshapes`: float32 [frames, 52] in ARKit order (`esarm.blendshapes.ARKIT_NAMES`) at `fps` ({config.fps:g})
- `phonemes`: the synthesiser's phonemes in IPA (Festival's ARPAbet mapped to IPA; stress marks removed,
  `_` = pause); `phoneme_times`: start of each phoneme in seconds from the start of `audio`
- `language`: the language the speaker reads (ISO 639 code)

## How it is generated
Speech: one voice per speaker (see above); the emotion changes pitch level, pitch range, rate and volume
(scaled by intensity). Lips and jaw: a viseme per phoneme blended with dominance functions
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
    hidden folder beside ``output_dir`` and renamed into place (:func:`esarm.utils.staged_folder`), so
    ``output_dir`` is never half-written; a staging folder that a killed build left behind is removed.
    """
    config = config or SyntheticCorpusConfig.tiny()
    output_dir = Path(output_dir)
    wanted = {k: v for k, v in config.to_dict().items() if k != "num_workers"}
    config_path = output_dir / CONFIG_FILE
    if config_path.exists() and (output_dir / "dataset_dict.json").exists():
        # a field that an older corpus's config lacks had its default value then
        saved = json.loads(config_path.read_text())
        defaults = SyntheticCorpusConfig().to_dict()
        existing = {**{k: defaults[k] for k in wanted if k not in saved}, **saved}
        existing.pop("num_workers", None)
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
    with staged_folder(output_dir) as staging:
        corpus.save_to_disk(str(staging))
        (staging / "README.md").write_text(_card(config, corpus, seconds))
        (staging / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2))
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
    "ENGINES",
    "INTENSITY_SCALE",
    "SENTENCES",
    "VOICES",
    "EmotionProfile",
    "SpeakerStyle",
    "SyntheticCorpusConfig",
    "animate",
    "available_engines",
    "build_synthetic_corpus",
    "corpus_sentences",
    "corpus_speakers",
    "festival_request",
    "generate_clip",
    "generate_synthetic_corpus",
    "loudness_envelope",
    "make_speakers",
    "plot_example",
    "speaker_sentences",
    "speaker_splits",
]
