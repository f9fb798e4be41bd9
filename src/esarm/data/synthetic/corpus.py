"""A synthetic emotional talking-face corpus shaped like MEAD, generated offline in seconds.

Every speaker reads the same sentences in each of MEAD's 8 emotions at 3 intensities (neutral at intensity 1
only). Speech comes from eSpeak NG (a stock voice and variant per speaker, or with ``voices="random"`` a random
voice per speaker from :mod:`esarm.data.synthetic.voices`) and optionally Festival (:mod:`esarm.data.synthetic.festival`); the emotion
changes the voice's prosody (pitch level and range, rate, volume). Sentences come from
:mod:`esarm.data.synthetic.sentences`; each speaker reads the same sentences in every emotion. Ground-truth ARKit
blendshapes at ``fps`` combine

- lips and jaw from the phoneme timing through a viseme table with coarticulation
  (:mod:`esarm.data.synthetic.visemes`), the mouth opening scaled by the loudness envelope of the audio;
- the emotion's expression on the upper face, cheeks and mouth corners (brows, eye widen / squint, smile,
  frown, sneer), scaled by the intensity, with an onset, a slow drift and brow raises on pitch accents;
- blinks (a Poisson process), small gaze movements, and per-speaker style (articulation amplitude,
  left/right asymmetry, expressivity, resting offsets, blink rate).

The generative model lives in :mod:`esarm.data.synthetic.expressions`. The schema is the package's (``id``, ``speaker``, ``emotion``, ``intensity``, ``sentence``, ``audio``,
``sampling_rate``, ``blendshapes``, ``fps``) plus ``phonemes`` (IPA, stress marks removed) and ``phoneme_times``
(start of each phoneme in seconds). Everything is deterministic for a seed, whatever the number of workers.
"""

from __future__ import annotations

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

from ...blendshapes import EMOTIONS
from ...utils import staged_folder
from ..schema import clip_features, decode_audio_value, rows_to_dataset
from .config import (
    SyntheticCorpusConfig,
    corpus_sentences,
    corpus_speakers,
    speaker_sentences,
    speaker_splits,
)
from .expressions import (
    SpeakerStyle,
    animate,
    prosody,
)
from .festival import FestivalRequest, synthesize_batch
from .tts import EspeakSynthesizer, Utterance, get_synthesizer, isolated_synthesizer

logger = logging.getLogger(__name__)

ENGINE_SAMPLING_RATE = 22050


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
    # esarm.data.synthetic.tts); Festival runs one process per batch.
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
            "voices of that language, sentences written per language by `esarm.data.synthetic.languages`); the "
            "other validation and test speakers read English"
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

    from ..plotting import plot_clip

    dataset = load_from_disk(str(corpus))[split]
    matches = [
        i for i, (e, k) in enumerate(zip(dataset["emotion"], dataset["intensity"])) if (e, k) == (emotion, intensity)
    ]
    if not matches:
        raise ValueError(f"no clip with emotion {emotion!r} and intensity {intensity} in the {split} split of {corpus}")
    return plot_clip(dataset[matches[0]], path)


__all__ = [
    "CONFIG_FILE",
    "build_synthetic_corpus",
    "features",
    "festival_request",
    "generate_clip",
    "generate_synthetic_corpus",
    "plot_example",
]
