"""Lip sync of saved models on a set of clips: the lip-sync step of ``esarm evaluate`` and of the pipeline's
evaluation stage (:mod:`esarm.evaluation.run`), and of ``benchmarks/sta_lipsync.py``.

Which clips (:func:`lipsync_sets`):

- the fixed held-out sets (:mod:`esarm.data.heldout`: validation = eSpeak NG voices and sentences training never
  uses, test = CMU Flite, a synthesiser family training never uses), built in their folder when missing; a split
  whose synthesiser is not installed is skipped with a logged reason;
- or, for a corpus whose rows carry no phoneme timings (a prepared real dataset such as MEAD), the evaluated corpus
  split itself: there only the alignment-free measures of :func:`esarm.evaluation.lipsync.set_scores` are defined;
- and, for a multilingual synthetic corpus (rows with a ``language`` column), one set per language of the evaluated
  split (:func:`language_sets`: ``"test:de"``, ``"test:en"``, ...; the validation and test languages are held out
  from training), so that lip sync per language stands beside the English held-out sets
  (:func:`language_comparison`).
- and, beside either, the real-speech set (:func:`real_speech_set`: recordings of real people with phone labels,
  shipped in the package), where the phone-rules and uLipSync baselines join the table.

What each set gets (:func:`evaluate_lipsync`): every model animated twice, with each of two emotion labels on the
same audio, scored with the first label (:func:`~esarm.evaluation.lipsync.lipsync_table`) beside the loudness
envelope, the log-mel probe (:func:`fit_probe`, on the corpus's training split) and the ground truth; plus
``two_label_r``, the mean-removed lip-motion correlation between the two labels
(:func:`esarm.evaluation.metrics.motion_correlation`). On the held-out sets the ground truth's own ``two_label_r``
replays the corpus's generator on the same phoneme timings with the two labels: the value a mouth that moves "as
the corpus does" reaches.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..blendshapes import EMOTIONS, region_indices
from ..data import heldout
from ..data.loading import even_spread
from ..data.real_speech import DESCRIPTION as REAL_SPEECH_DESCRIPTION
from ..data.real_speech import SET_NAME as REAL_SPEECH
from ..data.real_speech import load_real_speech_set
from ..data.synthetic.expressions import SpeakerStyle, animate
from ..modeling_sta import ESARMSTAForGeneration
from ..processing_esarm import ESARMProcessor
from . import metrics as M
from .lipsync import DEFAULT_MAX_LAG_FRAMES, LogMelProbe, animate_rows, lipsync_table, row_audio, row_num_frames
from .lipsync_baselines import baseline_mouths

logger = logging.getLogger(__name__)

__all__ = ["LipSyncSet", "LipSyncSettings", "check_settings", "evaluate_lipsync", "fit_probe", "generator_two_label",
           "has_phoneme_timings", "heldout_sets", "language_comparison", "language_sets", "lipsync_sets", "load_model",
           "real_speech_set", "run_lipsync"]  # fmt: skip

HELDOUT_DESCRIPTIONS = {
    "validation": "held-out eSpeak NG voices and sentences",
    "test": "held-out synthesiser family (CMU Flite) and sentences",
}
DEFAULT_LABELS = ("neutral", "happy")


@dataclass
class LipSyncSettings:
    """Where and how :func:`run_lipsync` measures lip sync: the one definition, nested as ``lipsync`` in
    :class:`~esarm.evaluation.run.ESARMEvaluationConfig` (the ``evaluation.lipsync`` section of a pipeline config)
    and built from the ``--lipsync-*`` flags of ``esarm evaluate``. A bad value raises ``ValueError`` naming the
    setting as ``spelling`` says: ``"config"`` (``lipsync.max_clips``) or ``"flag"`` (``--lipsync-max-clips``).

    Attributes:
        heldout: folder of the fixed held-out sets, built there when missing (``None``: the evaluated split itself).
        splits: held-out splits to measure.
        num_sentences: sentences per held-out voice when the sets are built (``None``: all 20).
        max_clips: measure at most this many clips per set (an even spread).
        probe_clips: fit the log-mel probe on at most this many training clips.
        labels: two emotion labels; the first is scored, ``two_label_r`` compares the two.
        real_speech: also measure the real-speech set (:func:`real_speech_set`).
    """

    heldout: str | os.PathLike | None = None
    splits: Sequence[str] = ("validation", "test")
    num_sentences: int | None = None
    max_clips: int | None = None
    probe_clips: int | None = 256
    labels: Sequence[str] = DEFAULT_LABELS
    real_speech: bool = True

    spelling: InitVar[str] = "config"

    def __post_init__(self, spelling: str = "config") -> None:
        # errors name each setting as the caller spells it: ``lipsync.max_clips`` (config) or ``--lipsync-max-clips``
        if spelling not in ("config", "flag"):
            raise ValueError(f"spelling must be 'config' or 'flag', got {spelling!r}")
        name = {"config": "lipsync.{}".format, "flag": lambda f: f"--lipsync-{f.replace('_', '-')}"}[spelling]
        self.splits, self.labels = list(self.splits), list(self.labels)
        counts = {name(f): getattr(self, f) for f in ("num_sentences", "max_clips", "probe_clips")}
        check_settings(self.splits, self.labels, counts, names=(name("splits"), name("labels")))
        if self.num_sentences is not None and self.num_sentences > len(heldout.VALIDATION_SENTENCES):
            raise ValueError(
                f"{name('num_sentences')} must be in 1..{len(heldout.VALIDATION_SENTENCES)} (sentences per held-out "
                f"voice), got {self.num_sentences}"
            )
        folder = Path(self.heldout).expanduser() if self.heldout is not None else None
        # a folder of something else would be built over (or read as held-out sets)
        if folder is not None and (folder.is_file() or (folder.is_dir() and any(folder.iterdir())
                                                        and not (folder / heldout.CONFIG_FILE).is_file())):  # fmt: skip
            raise ValueError(
                f"{name('heldout')} must be a folder of held-out sets, or a new or empty folder to build them in, "
                f"got {str(folder)!r}"
            )


@dataclass
class LipSyncSet:
    """Clips to measure lip sync on.

    Attributes:
        name: key of the set in the results (``"validation"``, ``"test"``, or the corpus split's name).
        description: where the clips come from, for the report.
        rows: clips of the package's schema (``audio``, ``sampling_rate``, ``blendshapes``, ``fps``, and
            ``phonemes`` / ``phoneme_times`` for the phoneme measures).
        styles: the ground-truth generator's facial style per ``speaker`` (held-out sets only), for the ground
            truth's two-label value.
        baselines: also score the jaw-only baselines of :mod:`esarm.evaluation.lipsync_baselines` (phone rules,
            uLipSync) on this set.
    """

    name: str
    description: str
    rows: list[dict[str, Any]]
    styles: dict[str, SpeakerStyle] | None = field(default=None, repr=False)
    baselines: bool = False


def _rows(dataset_split: Any, max_clips: int | None) -> list[dict[str, Any]]:
    selected = even_spread(dataset_split, max_clips)
    return [dict(row) for row in selected.with_format("numpy")]


def has_phoneme_timings(dataset_split: Any) -> bool:
    """Whether a split's rows carry ``phonemes`` and ``phoneme_times`` (the synthetic corpus does, MEAD does not)."""
    return {"phonemes", "phoneme_times"} <= set(dataset_split.column_names)


def heldout_sets(
    folder: str | os.PathLike, splits: Sequence[str] = ("validation", "test"), seed: int = 0,
    num_sentences: int | None = None, max_clips: int | None = None,
) -> list[LipSyncSet]:  # fmt: skip
    """The held-out sets in ``folder``, built there (:func:`esarm.data.heldout.build_heldout_sets` with ``seed`` and
    ``num_sentences``) when it holds none yet.

    Sets already in ``folder`` are used as they were built (a warning says so when ``seed`` or ``num_sentences``
    differ). A split whose synthesiser is not installed, or that an existing ``folder`` was built without, is skipped
    with a logged reason. ``max_clips`` keeps at most that many clips per split, spread evenly over voices and sentences.
    """
    from datasets import load_from_disk

    folder = Path(folder)
    unknown = [s for s in splits if s not in heldout.SPLITS]
    if unknown or not splits:
        raise ValueError(f"splits must be a non-empty subset of {list(heldout.SPLITS)}, got {list(splits)}")
    if not (folder / "dataset_dict.json").is_file():
        buildable = []
        for split in splits:
            reason = heldout.missing_engine(split)
            if reason is None:
                buildable.append(split)
            else:
                logger.warning("lip sync: skipped the held-out %s split: %s", split, reason)
        if not buildable:
            return []
        heldout.build_heldout_sets(folder, seed=seed, splits=buildable, num_sentences=num_sentences)
    built = heldout.read_heldout_config(folder)
    if (built["seed"], built["num_sentences"]) != (seed, num_sentences):
        # Sets already in the folder win: runs measured on one folder stay comparable.
        logger.warning(
            "lip sync: using the held-out sets in %s as built (seed %s, %s sentences per voice), not seed %s and %s",
            folder, built["seed"], built["num_sentences"] or "all", seed, num_sentences or "all",
        )  # fmt: skip
    stored = load_from_disk(str(folder))
    sets = []
    for split in splits:
        if split not in stored:
            reason = heldout.missing_engine(split)
            if reason is not None:  # the cause that left it out then, and still does: name it and its fix
                logger.warning(
                    "lip sync: skipped the held-out %s split: %s; then remove %s to build it", split, reason, folder
                )
            else:
                logger.warning(
                    "lip sync: skipped the held-out %s split: %s was built without it (splits %s); remove the folder "
                    "to build it again", split, folder, built["splits"],
                )  # fmt: skip
            continue
        rows = _rows(stored[split], max_clips)
        sets.append(LipSyncSet(split, HELDOUT_DESCRIPTIONS[split], rows, heldout.speaker_styles(split, built["seed"])))
    return sets


def lipsync_sets(
    dataset_split: Any, split: str | None, heldout_folder: str | os.PathLike | None,
    heldout_splits: Sequence[str] = ("validation", "test"), seed: int = 0, num_sentences: int | None = None,
    max_clips: int | None = None,
) -> list[LipSyncSet]:  # fmt: skip
    """Where to measure lip sync for an evaluation of ``dataset_split`` (the corpus split named ``split``).

    A split without phoneme timings (a prepared real dataset) is measured itself, with the alignment-free measures,
    whatever ``heldout_folder`` says: its models were trained on real voices, so the synthetic sets would measure
    another question. Otherwise the held-out sets of ``heldout_folder`` (:func:`heldout_sets`); when it is ``None``,
    the corpus split itself (with its phoneme timings). ``dataset_split=None``: the held-out sets alone.
    """
    if dataset_split is None or (heldout_folder is not None and has_phoneme_timings(dataset_split)):
        if heldout_folder is None:
            raise ValueError("heldout_folder must name the held-out sets' folder when dataset_split is None, got None")
        return heldout_sets(heldout_folder, heldout_splits, seed, num_sentences, max_clips)
    timings = has_phoneme_timings(dataset_split)
    description = f"corpus split {split!r}" + ("" if timings else " (no phoneme timings: alignment-free measures)")
    return [LipSyncSet(split, description, _rows(dataset_split, max_clips))]


def language_sets(
    dataset_split: Any, split: str, max_clips: int | None = None, emotion: str | None = "neutral"
) -> list[LipSyncSet]:  # fmt: skip
    """One set per language of a multilingual corpus split (its ``language`` column), named ``"<split>:<language>"``;
    no set when the split has no ``language`` column or speaks English only.

    ``emotion`` keeps that emotion's clips only (``None``: all): the English held-out sets are neutral speech, so
    neutral clips make the languages comparable with them. ``max_clips`` per language, an even spread.
    """
    if "language" not in dataset_split.column_names:
        return []
    languages = list(dict.fromkeys(dataset_split["language"]))
    if languages == ["en"]:
        return []
    emotions = dataset_split["emotion"]
    sets = []
    for language in languages:
        indices = [
            i for i, (spoken, label) in enumerate(zip(dataset_split["language"], emotions))
            if spoken == language and (emotion is None or label == emotion)
        ]  # fmt: skip
        if not indices:
            continue
        clips = "" if emotion is None else f"{emotion} "
        description = f"corpus split {split!r}, {clips}clips in {language!r}"
        sets.append(LipSyncSet(f"{split}:{language}", description, _rows(dataset_split.select(indices), max_clips)))
    return sets


def language_comparison(
    scores: Mapping[str, Mapping[str, Mapping[str, float]]], reference: str = "validation", key: str = "r_jaw"
) -> dict[str, dict[str, dict[str, float]]]:
    """Each model's lip sync per language set (:func:`language_sets`) against the English ``reference`` set and the
    loudness envelope on the same clips.

    Args:
        scores: :func:`evaluate_lipsync`'s ``{set: {source: scores}}``.
        reference: the English held-out set to compare with (the fixed eSpeak NG ``"validation"`` set: the same
            synthesiser as the languages' clips).
        key: the score compared.

    Returns:
        ``{set: {model: {"r", "english_r", "ratio", "loudness_r", "over_loudness"}}}`` for every ``"<split>:<lang>"``
        set; empty when ``scores`` has no language set or no ``reference``.
    """
    if reference not in scores:
        return {}
    baselines = {"loudness", "log-mel probe", "ground truth"}
    out = {}
    for name, sources in scores.items():
        if ":" not in name:
            continue
        rows = {}
        for source, values in sources.items():
            if source in baselines or source not in scores[reference]:
                continue
            english, loudness = scores[reference][source][key], sources["loudness"][key]
            rows[source] = {
                "r": values[key], "english_r": english, "ratio": values[key] / english if english else math.nan,
                "loudness_r": loudness, "over_loudness": values[key] - loudness,
            }  # fmt: skip
        out[name] = rows
    return out


def real_speech_set(fps: float = 30.0, max_clips: int | None = None) -> LipSyncSet:
    """The real-speech set (:func:`esarm.data.real_speech.load_real_speech_set`) at ``fps``, with the jaw-only
    baselines; ``max_clips`` keeps at most that many clips (an even spread)."""
    rows = load_real_speech_set(fps=fps)
    if max_clips is not None and max_clips < len(rows):
        rows = [rows[int(i)] for i in np.linspace(0, len(rows) - 1, max_clips).round()]
    return LipSyncSet(REAL_SPEECH, REAL_SPEECH_DESCRIPTION, rows, baselines=True)


def fit_probe(train_split: Any, max_clips: int | None = 256) -> LogMelProbe:
    """The log-mel ridge probe fitted on at most ``max_clips`` clips of a training split (an even spread).

    The cap bounds the time (the 128 clips of the tiny corpus fit in 3 s on one busy core) at little cost: fitted on
    128 or on 1,024 synthetic clips, the probe's held-out r moved by at most 0.04 (0.61 / 0.67 against 0.65 / 0.66
    on unseen eSpeak voices / another synthesiser).
    """
    if len(train_split) == 0:
        raise ValueError("train_split must hold at least one clip to fit the log-mel probe, got none")
    return LogMelProbe().fit(_rows(train_split, max_clips))


def load_model(path: str | os.PathLike, device: str | None = None):
    """A saved STA model (eval mode) and its processor when the folder holds one (a pipeline stage's folder
    does; a bare ``save_pretrained`` folder does not: then the model's own defaults apply)."""
    model = ESARMSTAForGeneration.from_pretrained(str(path)).eval()
    if device is not None:
        model = model.to(device)
    return model, load_saved_processor(path)


def load_saved_processor(path: str | os.PathLike) -> ESARMProcessor | None:
    """The processor saved in a model folder, or None when it holds none (the model's own defaults apply)."""
    saved = any((Path(path) / name).is_file() for name in ("processor_config.json", "preprocessor_config.json"))
    return ESARMProcessor.from_pretrained(str(path)) if saved else None


def generator_two_label(
    rows: Sequence[dict[str, Any]], styles: Mapping[str, SpeakerStyle], labels: Sequence[str] = DEFAULT_LABELS,
    seed: int = 0,
) -> float:  # fmt: skip
    """The ground-truth generator's lip-motion correlation between two emotion labels on the same timings and audio.

    Each row is animated by :func:`esarm.data.synthetic.expressions.animate` with its speaker's style, once per label (a
    non-neutral label at intensity 3, the strongest), with the same random draws for both labels.
    """
    first, second = [], []
    for index, row in enumerate(rows):
        audio, fps = row_audio(row), float(row["fps"])
        for label, out in zip(labels, (first, second)):
            rng = np.random.default_rng([seed, 11, index])
            out.append(animate(
                list(row["phonemes"]), np.asarray(row["phoneme_times"], np.float64), audio, int(row["sampling_rate"]),
                styles[row["speaker"]], label, 1 if label == "neutral" else 3, fps, rng,
            ))  # fmt: skip
    return M.motion_correlation(first, second, region_indices("mouth"))


def emotion_head_accuracy(model, rows: Sequence[dict[str, Any]], processor=None) -> float:
    """Share of ``rows`` whose ``emotion`` label the model's audio emotion head hears: what ``emotion="auto"`` would
    animate with. NaN when no row has a label."""
    import torch

    processor = processor or ESARMProcessor()
    device = next(model.parameters()).device
    hits = []
    for row in rows:
        if row.get("emotion") not in EMOTIONS:
            continue
        features = processor(row_audio(row), sampling_rate=int(row["sampling_rate"]), return_tensors="pt")
        mask = features.get("attention_mask")
        with torch.no_grad():
            pooled = model.encode_emotion(
                features["input_values"].to(device), None if mask is None else mask.to(device)
            )
            heard = int(model.classify_emotion(pooled).argmax(-1)[0])
        hits.append(EMOTIONS[heard] == row["emotion"])
    return float(np.mean(hits)) if hits else math.nan


def evaluate_lipsync(
    models: Mapping[str, tuple[Any, Any]], sets: Sequence[LipSyncSet], probe: LogMelProbe | None = None, rig=None,
    labels: Sequence[str] = DEFAULT_LABELS, seed: int = 0, max_lag_frames: int = DEFAULT_MAX_LAG_FRAMES,
) -> dict[str, dict[str, dict[str, float]]]:  # fmt: skip
    """Lip-sync scores of every model beside the baselines and the ground truth, per set.

    Args:
        models: ``{name: (model, processor or None)}`` (:func:`load_model`).
        sets: :func:`lipsync_sets`.
        probe: a fitted :class:`~esarm.evaluation.lipsync.LogMelProbe` (``None``: no probe row).
        rig: the face rig (``None``, or a rig without the 68 iBUG landmarks: no lip-aperture measures).
        labels: two emotion labels; the models are scored with the first, ``two_label_r`` compares the two.
        seed: seed of the models' rollouts (greedy) and of the generator's replay.

    Returns:
        ``{set name: {source: scores}}`` with sources ``*models``, ``"loudness"``, ``"log-mel probe"``, the
        baselines on sets that ask for them (``"phone rules"``, ``"uLipSync"``), ``"ground truth"`` (sets with
        reference motion) and the scores of :func:`~esarm.evaluation.lipsync.set_scores` plus ``two_label_r`` and
        ``emotion_head_accuracy`` (:func:`emotion_head_accuracy`, models only).
    """
    check_settings(heldout.SPLITS, labels)
    if rig is not None and (rig.landmarks is None or len(rig.landmarks) != 68):
        # The aperture is measured between iBUG-68 inner-lip landmarks; a rig without them still gets every jawOpen
        # and envelope measure.
        logger.info("lip sync: the rig (%s) has no 68 iBUG landmarks; lip-aperture measures left out", rig.source)
        rig = None
    lips = region_indices("mouth")
    results = {}
    for lipsync_set in sets:
        rows = lipsync_set.rows
        if not rows:
            logger.warning("lip sync: the %s set holds no clips; skipped", lipsync_set.name)
            continue
        animations, two_label, emotion_accuracy = {}, {}, {}
        for name, (model, processor) in models.items():
            first = animate_rows(model, rows, processor, emotion=labels[0], seed=seed)
            second = animate_rows(model, rows, processor, emotion=labels[1], seed=seed)
            animations[name] = first
            two_label[name] = M.motion_correlation(first, second, lips)
            emotion_accuracy[name] = emotion_head_accuracy(model, rows, processor)
        baselines = baseline_mouths(rows, [row_num_frames(r) for r in rows]) if lipsync_set.baselines else None
        table = lipsync_table(rows, animations, probe, rig, max_lag_frames, baselines)
        for source, scores in table.items():
            scores["two_label_r"] = two_label.get(source, math.nan)
            scores["emotion_head_accuracy"] = emotion_accuracy.get(source, math.nan)
        if lipsync_set.styles is not None:
            table["ground truth"]["two_label_r"] = generator_two_label(rows, lipsync_set.styles, labels, seed)
        results[lipsync_set.name] = table
        logger.info(
            "lip sync on %s (%d clips): %s", lipsync_set.name, len(rows),
            ", ".join(f"{source} r(jaw)={scores['r_jaw']:.3f}" for source, scores in table.items()),
        )  # fmt: skip
    return results


def check_settings(
    splits: Sequence[str], labels: Sequence[str], counts: Mapping[str, int | None] | None = None,
    names: tuple[str, str] = ("splits", "labels"),
) -> None:  # fmt: skip
    """Raise ``ValueError`` naming the first bad lip-sync setting: ``splits`` not a non-empty subset of the held-out
    splits, ``labels`` not two different emotions, or a count of ``counts`` (``{argument: value}``) below 1. ``names``
    are how the caller spells the first two arguments (config fields, command-line flags)."""
    if not splits or any(s not in heldout.SPLITS for s in splits):
        raise ValueError(f"{names[0]} must be a non-empty subset of {list(heldout.SPLITS)}, got {list(splits)}")
    if len(labels) != 2 or labels[0] == labels[1] or any(label not in EMOTIONS for label in labels):
        raise ValueError(f"{names[1]} must be two different emotions of {list(EMOTIONS)}, got {list(labels)}")
    for argument, value in (counts or {}).items():
        if value is not None and value < 1:
            raise ValueError(f"{argument} must be a positive number of clips or sentences (or unset), got {value}")


def run_lipsync(
    models: Mapping[str, tuple[Any, Any]], dataset_split: Any, split: str | None, train_split: Any, rig,
    settings: LipSyncSettings, seed: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """The lip-sync step of an evaluation: :func:`lipsync_sets`, the probe fitted on ``train_split`` (``None``: no
    probe), :func:`evaluate_lipsync`.

    Returns:
        ``{"lipsync": {set: {source: scores}}, "lipsync_sets": {set: {"description", "num_clips", "labels"}},
        "lipsync_seconds": wall time}``, what the report's lip-sync section reads.
    """
    started = time.perf_counter()
    sets = lipsync_sets(
        dataset_split, split, settings.heldout, settings.splits, seed, settings.num_sentences, settings.max_clips
    )
    if dataset_split is not None and split is not None and has_phoneme_timings(dataset_split):
        sets += language_sets(dataset_split, split, settings.max_clips)
    if settings.real_speech:
        fps = next((float(model.config.fps) for model, _ in models.values()), 30.0)
        sets.append(real_speech_set(fps, settings.max_clips))
    probe = fit_probe(train_split, settings.probe_clips) if train_split is not None and len(train_split) else None
    scores = evaluate_lipsync(models, sets, probe, rig, settings.labels, seed)
    described = {
        s.name: {"description": s.description, "num_clips": len(s.rows), "labels": list(settings.labels)}
        for s in sets
        if s.name in scores
    }
    results = {"lipsync": scores, "lipsync_sets": described, "lipsync_seconds": time.perf_counter() - started}
    languages = language_comparison(scores)
    if languages:
        results["lipsync_languages"] = languages
    return results
