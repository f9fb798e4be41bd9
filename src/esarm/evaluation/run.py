"""Running models over a dataset split and measuring them: the one evaluation path.

- :func:`evaluate_model` / :func:`run_evaluation` (``esarm evaluate``): saved STA models on a split -> the report
  (paper Tables I and II, plots).
- :func:`evaluate_pipeline`: the last stage of ``esarm pipeline``, the models of a run on held-out speakers (the
  ``test`` split by default).

What :func:`evaluate_pipeline` measures

Measured (vertex errors in mm on the face rig; blendshape MAE in coefficient units):

* motion prior: reconstruction MAE, codebook usage, LVE / EVE of reconstructions;
* STA (greedy, epsilon = 0) against two baselines without audio: the *mean animation* (the mean training pose at
  every frame) and a *condition-only* model (the mean training pose of the clip's emotion and intensity at every
  frame: the best constant animation a model that ignores the audio can produce under the L2 loss);
* emotion control: an expression classifier trained on ground-truth blendshapes of the training split classifies
  the generated animations (requested emotion = true emotion, and requested emotion = another one on the same
  audio); the same audio with two emotion labels: change of the upper face (EVE between the two) vs the lips
  (LVE between the two);
* Table II: LVE / EVE of epsilon-greedy rollouts for each epsilon;
* reward model and RL numbers from their stages' metrics, and the RL policy with the same metrics as the STA.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..blendshapes import EMOTIONS, region_indices
from ..data.collators import STACollator
from ..data.loading import even_spread, load_split, load_splits
from ..data.schema import SAMPLING_RATE, decode_audio_value
from ..frames import num_frames
from ..labels import emotion_to_id, model_speakers
from ..modeling_motion_prior import ESARMMotionPrior
from ..modeling_reward import ESARMRewardModel
from ..modeling_sta import ESARMSTAForGeneration
from ..rig import resolve_rig
from . import metrics as M
from .classifier import ExpressionClassifier
from .lipsync_evaluation import LipSyncSettings, load_model, load_saved_processor, run_lipsync
from .policy import policy_improvement
from .realism import DECODINGS, expressiveness_table
from .report import write_report
from .rl_diagnostics import motion_report
from .rollouts import DEFAULT_EPSILONS, evaluate_motion_prior, generate_clips, mean_measures, measure_clip

logger = logging.getLogger(__name__)

__all__ = ["ESARMEvaluationConfig", "evaluate_model", "evaluate_pipeline", "even_spread",
           "run_evaluation"]  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# saved models on a split (esarm evaluate)


def _rows(dataset_split: Any, max_samples: int | None) -> list[dict[str, Any]]:
    dataset_split = even_spread(dataset_split, max_samples)
    return [dict(dataset_split[i]) for i in range(len(dataset_split))]


def evaluate_model(
    model,
    dataset_split: Any,
    rig,
    speakers: Sequence[str] | None = None,
    epsilon: float = 0.0,
    batch_size: int = 8,
    max_samples: int | None = None,
    classifier=None,
    reward_model=None,
    num_diversity_samples: int = 0,
    seed: int = 0,
    return_predictions: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate animations for a dataset split with an ``ESARMSTAForGeneration`` and compute the metrics.

    Each clip is generated from its audio with its own emotion, intensity and speaker labels (speakers unknown to
    the model get the "unknown speaker" id). Generation gives ``round(seconds * fps)`` frames; the ground truth is
    trimmed to the same length (captures may hold a frame more or less) before the metrics
    (:func:`~esarm.evaluation.rollouts.generate_clips`).

    Args:
        model: an ``ESARMSTAForGeneration`` (eval mode is set here).
        dataset_split: a ``datasets.Dataset`` split (or list of rows) in the package's schema.
        rig: :class:`~esarm.evaluation.rig.FaceRig` for the vertex metrics (``None``: blendshape metrics only).
        speakers: the model's known speakers (default: read from the processor saved with the model).
        epsilon: epsilon-greedy noise of the rollouts (0 = greedy policy).
        batch_size: clips generated together.
        max_samples: evaluate at most this many clips (an even spread over the split).
        classifier: an :class:`~esarm.evaluation.classifier.ExpressionClassifier` for ``emotion_accuracy``.
        reward_model: an ``ESARMRewardModel`` scoring each rollout (``reward_mean``, ``reward_std``, ``rewards``).
        num_diversity_samples: when >= 2, also sample this many animations (``do_sample=True``, seeds ``seed + 1``
            on) per clip for ``diversity_mm``.
        seed: seed of the rollouts (batch ``k`` of :func:`~esarm.evaluation.rollouts.generate_clips`: ``seed +
            k * batch_size``).
        return_predictions: also return ``predictions`` / ``targets`` (lists of ``[T, 52]`` arrays).
        progress: show a progress bar.

    Returns:
        ``{"lve_mm", "lve_squared_mm2", "eve_mm", "eve_squared_mm2", "mve_mm", "fdd_mm2", "blendshape_mae",
        "lve_mm_std", "eve_mm_std", "mouth_audio_correlation", "emotion_accuracy"?, "reward_mean"?, ...}``.
    """
    model.eval()
    fps = float(getattr(model.config, "fps", 30.0))
    speakers = model_speakers(getattr(model, "name_or_path", None)) if speakers is None else speakers
    collator = STACollator(speakers=list(speakers), fps=fps)
    rows = _rows(dataset_split, max_samples)
    if not rows:
        raise ValueError("dataset_split must hold at least one clip, got none")
    clips = generate_clips(
        model, collator, rows, batch_size, epsilon=epsilon, seed=seed, reward_model=reward_model,
        desc=f"evaluate ε={epsilon:g}" if progress else None,
    )  # fmt: skip
    predictions = [c["blendshapes"][: c["num_frames"]] for c in clips]
    targets = [np.asarray(r["blendshapes"], dtype=np.float32)[: c["num_frames"]] for r, c in zip(rows, clips)]
    results: dict[str, Any] = {"epsilon": float(epsilon), **_animation_metrics(predictions, targets, rows, fps, rig)}
    if classifier is not None:
        results["emotion_accuracy"] = M.emotion_accuracy(classifier, predictions, [r["emotion"] for r in rows])
    if reward_model is not None:
        rewards = [c["reward"] for c in clips]
        results.update(
            {"reward_mean": float(np.mean(rewards)), "reward_std": float(np.std(rewards)), "rewards": rewards}
        )
    if num_diversity_samples >= 2:
        results["diversity_mm" if rig is not None else "diversity"] = _diversity(
            model, collator, rows, batch_size, num_diversity_samples, seed, rig
        )
    if return_predictions:
        results["predictions"], results["targets"] = predictions, targets
    return results


def _animation_metrics(predictions, targets, rows, fps: float, rig) -> dict[str, Any]:
    """The vertex metrics (with a rig; else blendshape MAE) of trimmed animations against their targets, and the
    mouth-audio correlation."""
    results: dict[str, Any] = {"num_clips": len(predictions)}
    if rig is not None:
        results.update(M.compute_vertex_metrics(predictions, targets, rig))
        results["lve_mm_std"] = float(np.std(M.lve(predictions, targets, rig, reduction="sequences")))
        results["eve_mm_std"] = float(np.std(M.eve(predictions, targets, rig, reduction="sequences")))
    else:
        results["blendshape_mae"] = M.blendshape_mae(predictions, targets)
        results["num_frames"] = int(sum(len(p) for p in predictions))
    # audio starts with the first frame, so the energy of frame t lines up with prediction frame t
    audios = [decode_audio_value(r["audio"]) for r in rows]
    results["mouth_audio_correlation"] = M.mouth_audio_correlation(predictions, audios, fps=fps, rig=rig)
    return results


def _diversity(model, collator, rows, batch_size: int, num_samples: int, seed: int, rig) -> float:
    """Mean over clips of :func:`~esarm.evaluation.metrics.diversity` among ``num_samples`` sampled animations."""
    samples = [
        generate_clips(model, collator, rows, batch_size, do_sample=True, seed=seed + 1 + k)
        for k in range(num_samples)
    ]
    return float(np.mean([M.diversity(np.stack([s[i]["blendshapes"] for s in samples]), rig=rig)
                          for i in range(len(rows))]))  # fmt: skip


def run_evaluation(
    model_paths: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike] | str,
    dataset_name_or_path: str | os.PathLike,
    split: str = "test",
    output_dir: str | os.PathLike = "evaluation",
    rig: Any = None,
    epsilons: Sequence[float] | None = None,
    dataset_name: str | None = None,
    train_split: str | None = "train",
    classifier_path: str | os.PathLike | None = None,
    reward_model_path: str | os.PathLike | None = None,
    batch_size: int = 8,
    max_samples: int | None = None,
    num_diversity_samples: int = 0,
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
    lipsync: LipSyncSettings | bool = True,
) -> dict[str, Any]:
    """Evaluate one or more saved STA models on a dataset split and write the report (``esarm evaluate``).

    Args:
        model_paths: ``save_pretrained`` folders of ``ESARMSTAForGeneration`` models: a path, a list (row names
            = folder names) or ``{row name: path}``.
        dataset_name_or_path: a corpus (:func:`esarm.data.loading.load_splits`: a ``save_to_disk`` folder, a
            prepared folder or a Hub id) holding ``split``.
        split: split to evaluate (held-out speakers).
        output_dir: where ``report.md``, ``report.json`` and the PNG plots go.
        rig: a ``FaceRig``, a path to one, or ``None`` (:func:`esarm.rig.resolve_rig`).
        epsilons: when given, the first model is also rolled out at each ε (Table II, per-ε plots).
        dataset_name: label of the dataset in Table II (default: the folder name).
        train_split: split whose ground truth trains the expression classifier (``None``: no classifier unless
            ``classifier_path``).
        classifier_path: a saved :class:`ExpressionClassifier` (skips training one).
        reward_model_path: a saved ``ESARMRewardModel`` to score rollouts (reward vs ε plot).
        batch_size, max_samples, num_diversity_samples, seed: see :func:`evaluate_model`.
        device: torch device (default: CUDA when available, else CPU).
        lipsync: where and how to measure lip sync (:class:`~esarm.evaluation.lipsync_evaluation.LipSyncSettings`;
            ``True``: its defaults, on ``split`` itself; ``False``: not measured). The log-mel probe is fitted on
            ``train_split`` when the corpus has it.

    Returns:
        The results dict (layout in :mod:`esarm.evaluation.report`), also written as ``report.json``.
    """
    named = _named_paths(model_paths)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    rig = resolve_rig(rig)
    corpus = load_splits(dataset_name_or_path, argument="dataset_name_or_path")
    if split not in corpus:
        raise ValueError(f"split must be one of {list(corpus)}, got {split!r}")
    dataset_name = dataset_name or Path(str(dataset_name_or_path)).name
    train = corpus[train_split] if train_split is not None and train_split in corpus else None
    classifier = _classifier(classifier_path, train, seed)
    reward_model = ESARMRewardModel.from_pretrained(reward_model_path).to(device).eval() if reward_model_path else None

    results: dict[str, Any] = {"dataset": dataset_name, "split": split, "rig": rig.source, "models": {}, "epsilons": {}}
    if classifier is not None:
        results["classifier_accuracy_ground_truth"] = classifier.score(_ground_truth_rows(corpus[split], max_samples))
    options = {"batch_size": batch_size, "max_samples": max_samples, "seed": seed, "progress": progress}
    curves, fps = None, 30.0
    for index, (name, path) in enumerate(named.items()):
        model = ESARMSTAForGeneration.from_pretrained(str(path)).to(device).eval()
        fps = float(getattr(model.config, "fps", 30.0))
        logger.info("Evaluating %s (%s) on %s/%s", name, path, dataset_name, split)
        numbers = evaluate_model(
            model, corpus[split], rig, classifier=classifier, num_diversity_samples=num_diversity_samples,
            return_predictions=index == 0, **options,
        )  # fmt: skip
        if index == 0:
            curves = {"predicted": numbers.pop("predictions")[0], "target": numbers.pop("targets")[0], "title": name}
            rows = _epsilon_rows(model, corpus[split], rig, epsilons or (), reward_model, options)
            if rows:
                results["epsilons"][dataset_name] = rows
        results["models"][name] = numbers
    if lipsync is not False:
        models = {name: load_model(path, device) for name, path in named.items()}
        settings = LipSyncSettings() if lipsync is True else lipsync
        results.update(run_lipsync(models, corpus[split], split, train, rig, settings, seed))
    write_report(results, output_dir, curves=curves, fps=fps)
    return results


def _classifier(classifier_path, train, seed: int) -> ExpressionClassifier | None:
    """A saved expression classifier, else one trained on ``train`` (``None`` without either)."""
    if classifier_path is not None:
        return ExpressionClassifier.load(classifier_path)
    return ExpressionClassifier(seed=seed).fit(train) if train is not None else None


def _named_paths(model_paths) -> dict[str, str | os.PathLike]:
    """``{row name: folder}`` of a path, a list of paths (named by their folder) or a mapping."""
    if isinstance(model_paths, (str, os.PathLike)):
        model_paths = [model_paths]
    named = dict(model_paths) if isinstance(model_paths, Mapping) else {Path(p).name: p for p in model_paths}
    if not named:
        raise ValueError("model_paths must name at least one model folder, got none")
    return named


def _epsilon_rows(model, dataset_split, rig, epsilons, reward_model, options) -> dict[str, dict[str, Any]]:
    """Table II of ``esarm evaluate``: :func:`evaluate_model` at each epsilon, keyed by ``str(float(epsilon))``."""
    return {
        str(float(epsilon)): evaluate_model(
            model, dataset_split, rig, epsilon=float(epsilon), reward_model=reward_model, **options
        )
        for epsilon in epsilons
    }


def _ground_truth_rows(dataset_split: Any, max_samples: int | None) -> list[dict[str, Any]]:
    """Rows (ground truth) of the evaluated clips, for the classifier's accuracy on ground truth."""
    return [{"blendshapes": r["blendshapes"], "emotion": r["emotion"]} for r in _rows(dataset_split, max_samples)]


# ---------------------------------------------------------------------------------------------------------------
# the models of a pipeline run


def _nested_lipsync(name: str):
    """The deprecated flat ``lipsync_<name>`` key as ``lipsync: {<name>: value}`` (``replacement`` names it in the
    deprecation warning)."""

    def convert(value: Any) -> dict[str, Any]:
        return {"lipsync": {name: value}}

    convert.replacement = f"'lipsync.{name}'"
    return convert


@dataclass
class ESARMEvaluationConfig:
    """Arguments of the final evaluation of a pipeline run (:func:`evaluate_pipeline`).

    ``renamed_keys`` maps the keys of earlier releases (``batch_size``, the flat ``lipsync_*`` fields) to the
    current ones; a pipeline config with them still runs, with a ``FutureWarning``, for one release."""

    renamed_keys: ClassVar[dict[str, Any]] = {
        "batch_size": "per_device_eval_batch_size",
        **{f"lipsync_{name}": _nested_lipsync(name)
           for name in ("heldout", "splits", "num_sentences", "max_clips", "probe_clips", "labels")},
    }  # fmt: skip

    run_dir: str | None = field(default=None, metadata={"help": "Pipeline run folder (stage sub-folders)."})
    dataset_name_or_path: str | None = field(default=None, metadata={"help": "Corpus folder (save_to_disk)."})
    output_dir: str | None = field(default=None, metadata={"help": "Where results.json / results.md go."})
    split: str = field(default="test", metadata={"help": "Held-out split to evaluate on."})
    train_split: str = field(default="train", metadata={"help": "Split for baselines and the classifier."})
    max_clips: int | None = field(default=None, metadata={"help": "Evaluate at most this many clips."})
    epsilons: list[float] = field(
        default_factory=lambda: list(DEFAULT_EPSILONS), metadata={"help": "Noise levels of Table II."}
    )
    per_device_eval_batch_size: int = field(default=32, metadata={"help": "Clips generated together."})
    rig_path: str | None = field(default=None, metadata={"help": "Face rig (.npz); default $ESARM_RIG."})
    seed: int = field(default=0, metadata={"help": "Seed of the noisy rollouts."})
    realism: bool = field(
        default=True,
        metadata={"help": "Measure the upper face's expressiveness and realism (blinks, motion ratios, a classifier "
                  "of captured vs generated windows) of the STA's three decodings and the RL policy."},
    )  # fmt: skip
    lipsync: LipSyncSettings | None = field(
        default_factory=LipSyncSettings,
        metadata={"help": "Lip-sync settings (esarm.evaluation.lipsync_evaluation.LipSyncSettings: heldout, splits, "
                  "num_sentences, max_clips, probe_clips, labels); null or false: lip sync is not measured. The "
                  "pipeline's default heldout folder is <run>/heldout."},
    )  # fmt: skip

    def __post_init__(self) -> None:
        # a config file gives the nested settings as a mapping (or true / false): build them here, so that a bad
        # lip-sync value fails when the config is read, not after the models ran
        if self.lipsync is True:
            self.lipsync = LipSyncSettings()
        elif self.lipsync is False:
            self.lipsync = None
        elif isinstance(self.lipsync, Mapping):
            unknown = sorted(set(self.lipsync) - set(LipSyncSettings.__dataclass_fields__))
            if unknown:
                raise ValueError(f"lipsync must hold fields of LipSyncSettings, got unknown {unknown}")
            self.lipsync = LipSyncSettings(**self.lipsync)
        elif self.lipsync is not None and not isinstance(self.lipsync, LipSyncSettings):
            raise ValueError(f"lipsync must be LipSyncSettings, a mapping of its fields, true or false, got "
                             f"{self.lipsync!r}")  # fmt: skip


def _ground_truth(dataset, count: int, fps: float) -> list[np.ndarray]:
    out = []
    for i in range(count):
        row = dataset[i]
        gt = np.asarray(row["blendshapes"], dtype=np.float32)
        out.append(gt[: num_frames(len(decode_audio_value(row["audio"])), float(row.get("fps") or fps), SAMPLING_RATE)])
    return out


def _errors(predictions: list[np.ndarray], targets: list[np.ndarray], rig) -> dict[str, float]:
    """Mean MAE (and LVE / EVE with a rig) of animations against their targets
    (:func:`~esarm.evaluation.rollouts.measure_clip`)."""
    return mean_measures([measure_clip(p, t, rig) for p, t in zip(predictions, targets)])


def _accuracy(classifier, sequences, labels) -> float:
    predicted = np.asarray(classifier.predict(sequences))
    return float((predicted == np.asarray(labels)).mean())


def _other_emotion(emotion: str, index: int) -> str:
    """A different emotion for the control test, cycling through all others."""
    others = [e for e in EMOTIONS if e != emotion]
    return others[index % len(others)]


def _region_change(a: list[np.ndarray], b: list[np.ndarray], indices: list[int]) -> float:
    return float(np.mean([np.abs(x[: len(y)][:, indices] - y[: len(x)][:, indices]).mean() for x, y in zip(a, b)]))


class _PipelineEvaluation:
    """The held-out clips of a pipeline run's evaluation and the pieces every measure of :func:`evaluate_pipeline`
    shares (the STA model, its collator, the ground truth, the rig)."""

    def __init__(self, config: ESARMEvaluationConfig):
        self.config = config
        self.run_dir = Path(config.run_dir)
        self.rig = resolve_rig(config.rig_path)
        self.test = even_spread(load_split(config.dataset_name_or_path, config.split), config.max_clips)
        self.train = load_split(config.dataset_name_or_path, config.train_split)
        self.sta = ESARMSTAForGeneration.from_pretrained(self.run_dir / "sta").eval()
        fps = self.sta.config.fps
        self.collator = STACollator(speakers=model_speakers(self.run_dir / "sta"), fps=fps)
        self.rows = [self.test[i] for i in range(len(self.test))]
        self.targets = _ground_truth(self.test, len(self.test), fps)
        self.train_sequences = _ground_truth(self.train, len(self.train), fps)
        self.emotions = [r["emotion"] for r in self.rows]
        rl_dir = self.run_dir / "rl"
        self.rl_dir = rl_dir if (rl_dir / "config.json").is_file() else None
        self.rl = ESARMSTAForGeneration.from_pretrained(self.rl_dir).eval() if self.rl_dir is not None else None

    def generate(self, model, epsilon: float = 0.0, seed: int = 0, emotions=None, desc: str = "generate"):
        """Animations of the held-out clips (with other ``emotions``: the same audio, other labels)."""
        rows = self.rows if emotions is None else [{**r, "emotion": e} for r, e in zip(self.rows, emotions)]
        clips = generate_clips(model, self.collator, rows, self.config.per_device_eval_batch_size, epsilon=epsilon,
                               seed=seed, rig=self.rig, desc=desc)  # fmt: skip
        return [c["blendshapes"] for c in clips], mean_measures(clips)

    def baselines(self) -> dict[str, float]:
        """The two baselines without audio: the mean training pose, and the mean pose of the clip's emotion and
        intensity, at every frame."""
        mean_pose = np.concatenate(self.train_sequences).mean(0)
        by_condition: dict[tuple[str, int], list[np.ndarray]] = {}
        for emotion, intensity, seq in zip(self.train["emotion"], self.train["intensity"], self.train_sequences):
            by_condition.setdefault((emotion, int(intensity)), []).append(seq)
        condition_pose = {k: np.concatenate(v).mean(0) for k, v in by_condition.items()}
        mean_predictions = [np.repeat(mean_pose[None], len(t), 0) for t in self.targets]
        condition_predictions = [
            np.repeat(condition_pose.get((r["emotion"], int(r["intensity"])), mean_pose)[None], len(t), 0)
            for r, t in zip(self.rows, self.targets)
        ]
        results = {}
        for name, predictions in (("mean_baseline", mean_predictions), ("condition_baseline", condition_predictions)):
            results.update({f"{name}_{k}": v for k, v in _errors(predictions, self.targets, self.rig).items()})
        return results

    def emotion_control(self, classifier, sta_predictions: list[np.ndarray]) -> dict[str, Any]:
        """The classifier on generated animations (requested emotion, and another one on the same audio) and how
        the lips and the upper face change between the two labels."""
        results: dict[str, Any] = {"classifier": type(classifier).__name__}
        results["classifier_accuracy_ground_truth"] = _accuracy(classifier, self.targets, self.emotions)
        results["sta_emotion_accuracy"] = _accuracy(classifier, sta_predictions, self.emotions)
        swapped = [_other_emotion(e, i) for i, e in enumerate(self.emotions)]
        swapped_predictions, _ = self.generate(self.sta, emotions=swapped, desc="STA swapped")
        results["sta_swapped_emotion_accuracy"] = _accuracy(classifier, swapped_predictions, swapped)
        lips = region_indices("mouth")
        upper = region_indices("brows") + region_indices("eyes")
        results["swap_lip_change_mae"] = _region_change(sta_predictions, swapped_predictions, lips)
        results["swap_upper_change_mae"] = _region_change(sta_predictions, swapped_predictions, upper)
        # lip *motion* (own mean pose removed): between the two labels, and against ground truth as the reference
        results["swap_lip_motion_correlation"] = M.motion_correlation(sta_predictions, swapped_predictions, lips)
        results["swap_upper_motion_correlation"] = M.motion_correlation(sta_predictions, swapped_predictions, upper)
        results["sta_lip_motion_correlation_ground_truth"] = M.motion_correlation(sta_predictions, self.targets, lips)
        if self.rig is not None:
            between = _errors(swapped_predictions, sta_predictions, self.rig)
            results["swap_lip_change_lve"] = between["lve"]
            results["swap_upper_change_eve"] = between["eve"]
        return results

    def rl_policy(self, classifier, sta_predictions: list[np.ndarray]) -> dict[str, Any]:
        """The RL-tuned policy (when stage 5 saved one) with the STA model's measures, and its paired improvement
        over the STA model on the metrics of the RL guard (``rl_test_<metric>_improvement`` and its interval,
        :func:`~esarm.evaluation.policy.policy_improvement`)."""
        if self.rl is None:
            return {}
        predictions, errors = self.generate(self.rl, desc="RL greedy")
        results: dict[str, Any] = {f"rl_{key}": value for key, value in errors.items()}
        results["rl_emotion_accuracy"] = _accuracy(classifier, predictions, self.emotions)
        results.update(motion_report("rl", predictions, self.targets, self.rig))
        if len(self.targets) >= 2:
            improvement = policy_improvement(sta_predictions, predictions, self.targets, self.rig, seed=self.config.seed)
            results.update({f"rl_test_{key}": value for key, value in improvement.items()})
        return results

    def realism(self) -> dict[str, dict[str, float]]:
        """Expressiveness and realism of the upper face (:func:`~esarm.evaluation.realism.expressiveness_table`):
        the STA model decoded greedy, sampled and greedy mouth + sampled eyes and brows, and the RL policy greedy
        (what RL has to beat: all three), each against the held-out capture."""
        rows = [{**row, "blendshapes": target} for row, target in zip(self.rows, self.targets)]
        options = dict(seed=self.config.seed, batch_size=self.config.per_device_eval_batch_size)
        table = expressiveness_table({"sta": self.sta}, rows, self.collator, self.rig, DECODINGS, **options)
        if self.rl is not None:
            greedy = {"greedy": DECODINGS["greedy"]}
            table.update(expressiveness_table({"rl": self.rl}, rows, self.collator, self.rig, greedy, **options))
        return table

    def lipsync(self) -> dict[str, Any]:
        # the models loaded once for every measure, each with the processor saved beside it
        models = {"sta": (self.sta, load_saved_processor(self.run_dir / "sta"))}
        if self.rl is not None:
            models["rl"] = (self.rl, load_saved_processor(self.rl_dir))
        evaluated = load_split(self.config.dataset_name_or_path, self.config.split)
        return run_lipsync(
            models, evaluated, self.config.split, self.train, self.rig, self.config.lipsync, self.config.seed
        )


def evaluate_pipeline(
    config: ESARMEvaluationConfig, stage_metrics: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Evaluate the models of a pipeline run; writes ``results.json`` / ``results.md`` and the report (tables,
    JSON, plots: :func:`~esarm.evaluation.report.write_report`) to ``config.output_dir``. Returns a flat dict of
    numbers."""
    stage_metrics = stage_metrics or {}
    run = _PipelineEvaluation(config)
    results: dict[str, Any] = {"split": config.split, "rig": run.rig is not None, "num_clips": len(run.rows)}
    # motion prior reconstruction on held-out speakers
    prior = ESARMMotionPrior.from_pretrained(run.run_dir / "motion_prior").eval()
    results.update({f"prior_{key}": value for key, value in evaluate_motion_prior(prior, run.test, run.rig).items()})
    results.update(run.baselines())
    torch.manual_seed(config.seed)
    sta_predictions, errors = run.generate(run.sta, desc="STA greedy")
    results.update({f"sta_{key}": value for key, value in errors.items()})
    results.update(motion_report("sta", sta_predictions, run.targets, run.rig))
    classifier = ExpressionClassifier().fit(run.train_sequences, list(run.train["emotion"]))
    results.update(run.emotion_control(classifier, sta_predictions))
    # Table II: noisy rollouts
    for epsilon in config.epsilons:
        _, errors = run.generate(run.sta, epsilon, config.seed, desc=f"eps {epsilon:g}")
        results.update({f"eps_{epsilon:g}_{key}": value for key, value in errors.items()})
    results.update(run.rl_policy(classifier, sta_predictions))
    if config.realism:
        results["realism"] = run.realism()
    if config.lipsync is not None:
        results.update(run.lipsync())
    # reward model / RL numbers reported by their stages
    for stage in ("reward", "rl"):
        for key, value in (stage_metrics.get(stage) or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not key.startswith("stage_"):
                results[f"{stage}/{key}"] = value
    results["emotion_ids"] = {e: emotion_to_id(e) for e in EMOTIONS}
    paths = write_report(results, config.output_dir, stage_metrics=stage_metrics)
    logger.info("Results:\n%s", paths["results_markdown"].read_text())
    return results
