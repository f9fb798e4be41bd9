"""The settings of the synthetic corpus (:class:`SyntheticCorpusConfig` and its presets) and what follows from
them alone: the speakers, the sentences each reads, the speaker splits, the speech engines available here."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...blendshapes import EMOTIONS, INTENSITIES
from .expressions import (
    VOICE_SPACES,
    SpeakerStyle,
    make_language_speakers,
    make_speakers,
)
from .festival import DEBIAN_PACKAGES, festival_available, require_festival
from .languages import TEST_LANGUAGES, TRAINING_LANGUAGES, VALIDATION_LANGUAGES, check_language, language_sentences
from .sentences import HARVARD_SENTENCES, sentence_pool

logger = logging.getLogger(__name__)

__all__ = [
    "CORPUS_PRESETS",
    "ENGINES",
    "SENTENCES",
    "SyntheticCorpusConfig",
    "available_engines",
    "corpus_sentences",
    "corpus_speakers",
    "speaker_sentences",
    "speaker_splits",
]

SENTENCES: tuple[str, ...] = HARVARD_SENTENCES
"""The first sentences of every pool (:data:`esarm.data.synthetic.sentences.HARVARD_SENTENCES`)."""

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
            (:func:`esarm.data.synthetic.sentences.sentence_pool`: Harvard, then generated and phonetically balanced), of
            which each speaker reads ``num_sentences`` drawn for that speaker.
        exclude_sentences: sentences never used (e.g. a held-out set's validation and test lists).
        voices: ``"fixed"``: eSpeak NG stock voice + variant pairs (``VOICES``); ``"random"``: a random voice per
            speaker, training speakers from the training region of the voice space and validation / test
            speakers from its reserved accents (:mod:`esarm.data.synthetic.voices`).
        engines: synthesisers of the training speakers with ``"random"`` voices: ``("espeak",)`` or
            ``("espeak", "festival")`` (Festival: Debian packages, see :mod:`esarm.data.synthetic.festival`).
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
        languages: languages of the training speakers (:mod:`esarm.data.synthetic.languages`; training speaker ``i`` reads
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
        2 of each of the 12 :data:`~esarm.data.synthetic.languages.TRAINING_LANGUAGES`, then 1 English validation and 1
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
    a pool): English from :func:`esarm.data.synthetic.sentences.sentence_pool`, the others from
    :func:`esarm.data.synthetic.languages.language_sentences`."""
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
