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
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

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
from .lipsync_evaluation import DEFAULT_LABELS, LipSyncSettings, load_model, run_lipsync
from .report import write_report
from .rl_diagnostics import motion_report
from .rollouts import DEFAULT_EPSILONS, evaluate_motion_prior, rollout_batch

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
    trimmed to the same length (captures may hold a frame more or less) before the metrics.

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
        num_diversity_samples: when >= 2, also sample this many animations (``do_sample=True``) per clip for
            ``diversity_mm``.
        seed: seed of the rollouts.
        return_predictions: also return ``predictions`` / ``targets`` (lists of ``[T, 52]`` arrays).
        progress: show a progress bar.

    Returns:
        ``{"lve_mm", "lve_squared_mm2", "eve_mm", "eve_squared_mm2", "mve_mm", "fdd_mm2", "blendshape_mae",
        "lve_mm_std", "eve_mm_std", "mouth_audio_correlation", "emotion_accuracy"?, "reward_mean"?, ...}``.
    """
    model.eval()
    device = next(model.parameters()).device
    fps = float(getattr(model.config, "fps", 30.0))
    speakers = model_speakers(getattr(model, "name_or_path", None)) if speakers is None else speakers
    collator = STACollator(speakers=list(speakers), fps=fps)
    rows = _rows(dataset_split, max_samples)
    if not rows:
        raise ValueError("dataset_split must hold at least one clip, got none")
    predictions, targets, audios, emotions, rewards, diversities = [], [], [], [], [], []
    generator = torch.Generator(device="cpu").manual_seed(seed)
    for start in tqdm(
        range(0, len(rows), batch_size), desc=f"evaluate ε={epsilon:g}", disable=not progress, leave=False
    ):
        chunk = rows[start : start + batch_size]
        batch = collator([{k: v for k, v in r.items() if k != "blendshapes"} for r in chunk])
        inputs = {k: v.to(device) for k, v in batch.items()}
        with torch.no_grad():
            out = model.generate(**inputs, epsilon=epsilon, generator=generator)
            if reward_model is not None:
                scored = reward_model(**inputs, motion_tokens=out.motion_tokens, motion_mask=out.token_mask)
                rewards.extend(scored.returns.float().cpu().tolist())
            if num_diversity_samples >= 2:
                samples = [
                    model.generate(**inputs, do_sample=True, generator=generator).blendshapes.float().cpu().numpy()
                    for _ in range(num_diversity_samples)
                ]
        for i, row in enumerate(chunk):
            frames = int(out.frame_mask[i].sum())
            target = np.asarray(row["blendshapes"], dtype=np.float32)
            length = min(frames, len(target))
            predictions.append(out.blendshapes[i, :length].float().cpu().numpy())
            targets.append(target[:length])
            audios.append(decode_audio_value(row["audio"]))
            emotions.append(row["emotion"])
            if num_diversity_samples >= 2:
                stack = np.stack([s[i, :frames] for s in samples])
                diversities.append(M.diversity(stack, rig=rig))
    results: dict[str, Any] = {"epsilon": float(epsilon), "num_clips": len(predictions)}
    if rig is not None:
        results.update(M.compute_vertex_metrics(predictions, targets, rig))
        results["lve_mm_std"] = float(np.std(M.lve(predictions, targets, rig, reduction="sequences")))
        results["eve_mm_std"] = float(np.std(M.eve(predictions, targets, rig, reduction="sequences")))
    else:
        results["blendshape_mae"] = M.blendshape_mae(predictions, targets)
        results["num_frames"] = int(sum(len(p) for p in predictions))
    # audio starts with the first frame, so the energy of frame t lines up with prediction frame t
    results["mouth_audio_correlation"] = M.mouth_audio_correlation(predictions, audios, fps=fps, rig=rig)
    if classifier is not None:
        results["emotion_accuracy"] = M.emotion_accuracy(classifier, predictions, emotions)
    if rewards:
        results.update(
            {"reward_mean": float(np.mean(rewards)), "reward_std": float(np.std(rewards)), "rewards": rewards}
        )
    if diversities:
        results["diversity_mm" if rig is not None else "diversity"] = float(np.mean(diversities))
    if return_predictions:
        results["predictions"], results["targets"] = predictions, targets
    return results


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
    if isinstance(model_paths, (str, os.PathLike)):
        model_paths = [model_paths]
    named = dict(model_paths) if isinstance(model_paths, Mapping) else {Path(p).name: p for p in model_paths}
    if not named:
        raise ValueError("model_paths must name at least one model folder, got none")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    rig = resolve_rig(rig)
    corpus = load_splits(dataset_name_or_path, argument="dataset_name_or_path")
    if split not in corpus:
        raise ValueError(f"split must be one of {list(corpus)}, got {split!r}")
    dataset_name = dataset_name or Path(str(dataset_name_or_path)).name
    classifier = None
    if classifier_path is not None:
        classifier = ExpressionClassifier.load(classifier_path)
    elif train_split is not None and train_split in corpus:
        classifier = ExpressionClassifier(seed=seed).fit(corpus[train_split])
    reward_model = None
    if reward_model_path is not None:
        reward_model = ESARMRewardModel.from_pretrained(reward_model_path).to(device).eval()

    results: dict[str, Any] = {
        "dataset": dataset_name,
        "split": split,
        "rig": rig.source,
        "models": {},
        "epsilons": {},
    }
    if classifier is not None:
        results["classifier_accuracy_ground_truth"] = classifier.score(_ground_truth_rows(corpus[split], max_samples))
    curves = None
    for index, (name, path) in enumerate(named.items()):
        model = ESARMSTAForGeneration.from_pretrained(str(path)).to(device).eval()
        logger.info("Evaluating %s (%s) on %s/%s", name, path, dataset_name, split)
        numbers = evaluate_model(
            model, corpus[split], rig, classifier=classifier, batch_size=batch_size, max_samples=max_samples,
            num_diversity_samples=num_diversity_samples, seed=seed, return_predictions=index == 0, progress=progress,
        )  # fmt: skip
        if index == 0:
            curves = {"predicted": numbers.pop("predictions")[0], "target": numbers.pop("targets")[0], "title": name}
        results["models"][name] = numbers
        if index == 0 and epsilons:
            for epsilon in epsilons:
                row = evaluate_model(
                    model, corpus[split], rig, epsilon=float(epsilon), reward_model=reward_model,
                    batch_size=batch_size, max_samples=max_samples, seed=seed, progress=progress,
                )  # fmt: skip
                results["epsilons"].setdefault(dataset_name, {})[str(float(epsilon))] = row
    if lipsync is not False:
        settings = LipSyncSettings() if lipsync is True else lipsync
        models = {name: load_model(path, device) for name, path in named.items()}
        train = corpus[train_split] if train_split is not None and train_split in corpus else None
        results.update(run_lipsync(models, corpus[split], split, train, rig, settings, seed))
    write_report(results, output_dir, curves=curves, fps=float(getattr(model.config, "fps", 30.0)))
    return results


def _ground_truth_rows(dataset_split: Any, max_samples: int | None) -> list[dict[str, Any]]:
    """Rows (ground truth) of the evaluated clips, for the classifier's accuracy on ground truth."""
    return [{"blendshapes": r["blendshapes"], "emotion": r["emotion"]} for r in _rows(dataset_split, max_samples)]


# ---------------------------------------------------------------------------------------------------------------
# the models of a pipeline run


@dataclass
class ESARMEvaluationConfig:
    """Arguments of the final evaluation of a pipeline run (:func:`evaluate_pipeline`)."""

    run_dir: str | None = field(default=None, metadata={"help": "Pipeline run folder (stage sub-folders)."})
    dataset_name_or_path: str | None = field(default=None, metadata={"help": "Corpus folder (save_to_disk)."})
    output_dir: str | None = field(default=None, metadata={"help": "Where results.json / results.md go."})
    split: str = field(default="test", metadata={"help": "Held-out split to evaluate on."})
    train_split: str = field(default="train", metadata={"help": "Split for baselines and the classifier."})
    max_clips: int | None = field(default=None, metadata={"help": "Evaluate at most this many clips."})
    epsilons: list[float] = field(
        default_factory=lambda: list(DEFAULT_EPSILONS), metadata={"help": "Noise levels of Table II."}
    )
    batch_size: int = field(default=32, metadata={"help": "Clips generated together."})
    rig_path: str | None = field(default=None, metadata={"help": "Face rig (.npz); default $ESARM_RIG."})
    seed: int = field(default=0, metadata={"help": "Seed of the noisy rollouts."})
    lipsync: bool = field(default=True, metadata={"help": "Measure lip sync (esarm.evaluation.lipsync_evaluation)."})
    lipsync_heldout: str | None = field(
        default=None,
        metadata={"help": "Folder of the fixed held-out sets (esarm.data.heldout), built there when missing; the "
                  "pipeline's default is <run>/heldout. None: lip sync on the evaluated split itself. A corpus "
                  "without phoneme timings (MEAD) is always measured on its own split (alignment-free measures)."},
    )  # fmt: skip
    lipsync_splits: list[str] = field(
        default_factory=lambda: ["validation", "test"],
        metadata={"help": "Held-out splits; one whose synthesiser is not installed (test: flite) is skipped."},
    )
    lipsync_num_sentences: int | None = field(
        default=None, metadata={"help": "Sentences per held-out voice when the sets are built (None: all 20)."}
    )
    lipsync_max_clips: int | None = field(default=None, metadata={"help": "Measure at most this many clips per set."})
    lipsync_probe_clips: int | None = field(
        default=256, metadata={"help": "Fit the log-mel probe on at most this many clips of train_split."}
    )
    lipsync_labels: list[str] = field(
        default_factory=lambda: list(DEFAULT_LABELS),
        metadata={"help": "Two emotion labels: the first is scored, the lip motion of the two is compared."},
    )
    lipsync_real_speech: bool = field(
        default=True, metadata={"help": "Also measure the real-speech set shipped in the package (esarm.data.real_speech)."}
    )

    def __post_init__(self) -> None:
        self.lipsync_settings()  # a bad lip-sync field fails here, not after the models ran

    def lipsync_settings(self) -> LipSyncSettings:
        """The ``lipsync_*`` fields as :class:`~esarm.evaluation.lipsync_evaluation.LipSyncSettings`."""
        try:
            return LipSyncSettings(
                self.lipsync_heldout, list(self.lipsync_splits), self.lipsync_num_sentences, self.lipsync_max_clips,
                self.lipsync_probe_clips, list(self.lipsync_labels), real_speech=self.lipsync_real_speech,
            )  # fmt: skip
        except ValueError as error:  # name the config's field, not the settings' attribute
            raise ValueError(f"lipsync_{error}") from None


def _ground_truth(dataset, count: int, fps: float) -> list[np.ndarray]:
    out = []
    for i in range(count):
        row = dataset[i]
        gt = np.asarray(row["blendshapes"], dtype=np.float32)
        out.append(gt[: num_frames(len(decode_audio_value(row["audio"])), float(row.get("fps") or fps), SAMPLING_RATE)])
    return out


def _generate(model, collator, rows, batch_size, epsilon=0.0, seed=0, emotions=None, desc="generate"):
    results = []
    for start in tqdm(range(0, len(rows), batch_size), desc=desc, leave=False):
        chunk = rows[start : start + batch_size]
        if emotions is not None:
            chunk = [{**r, "emotion": e} for r, e in zip(chunk, emotions[start : start + batch_size])]
        outs = rollout_batch(model, collator, chunk, epsilon, seed + start)
        results.extend(o["blendshapes"] for o in outs)
    return results


def _errors(predictions: list[np.ndarray], targets: list[np.ndarray], rig) -> dict[str, float]:
    n = [min(len(p), len(t)) for p, t in zip(predictions, targets)]
    metrics = {"mae": float(np.mean([np.abs(p[:k] - t[:k]).mean() for p, t, k in zip(predictions, targets, n)]))}
    if rig is not None:
        trimmed = ([p[:k] for p, k in zip(predictions, n)], [t[:k] for t, k in zip(targets, n)])
        metrics["lve"] = float(np.mean(M.lve(*trimmed, rig, reduction="sequences")))
        metrics["eve"] = float(np.mean(M.eve(*trimmed, rig, reduction="sequences")))
    return metrics


def _accuracy(classifier, sequences, labels) -> float:
    predicted = np.asarray(classifier.predict(sequences))
    return float((predicted == np.asarray(labels)).mean())


def _other_emotion(emotion: str, index: int) -> str:
    """A different emotion for the control test, cycling through all others."""
    others = [e for e in EMOTIONS if e != emotion]
    return others[index % len(others)]


def _region_change(a: list[np.ndarray], b: list[np.ndarray], indices: list[int]) -> float:
    return float(np.mean([np.abs(x[: len(y)][:, indices] - y[: len(x)][:, indices]).mean() for x, y in zip(a, b)]))


def evaluate_pipeline(
    config: ESARMEvaluationConfig, stage_metrics: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Evaluate the models of a pipeline run; writes ``results.json`` / ``results.md`` and the report (tables,
    JSON, plots: :func:`~esarm.evaluation.report.write_report`) to ``config.output_dir``. Returns a flat dict of
    numbers."""
    stage_metrics = stage_metrics or {}
    run_dir = Path(config.run_dir)
    rig = resolve_rig(config.rig_path)
    results: dict[str, Any] = {"split": config.split, "rig": rig is not None}
    test = even_spread(load_split(config.dataset_name_or_path, config.split), config.max_clips)
    train = load_split(config.dataset_name_or_path, config.train_split)
    count = len(test)
    results["num_clips"] = count

    # motion prior reconstruction on held-out speakers
    prior = ESARMMotionPrior.from_pretrained(run_dir / "motion_prior").eval()
    for key, value in evaluate_motion_prior(prior, test, rig).items():
        results[f"prior_{key}"] = value

    sta = ESARMSTAForGeneration.from_pretrained(run_dir / "sta").eval()
    fps = sta.config.fps
    speakers = model_speakers(run_dir / "sta")
    collator = STACollator(speakers=speakers, fps=fps)
    rows = [test[i] for i in range(count)]
    targets = _ground_truth(test, count, fps)
    train_sequences = _ground_truth(train, len(train), fps)

    # baselines without audio
    all_frames = np.concatenate(train_sequences)
    mean_pose = all_frames.mean(0)
    by_condition: dict[tuple[str, int], list[np.ndarray]] = {}
    for row_emotion, row_intensity, seq in zip(train["emotion"], train["intensity"], train_sequences):
        by_condition.setdefault((row_emotion, int(row_intensity)), []).append(seq)
    condition_pose = {k: np.concatenate(v).mean(0) for k, v in by_condition.items()}
    mean_predictions = [np.repeat(mean_pose[None], len(t), 0) for t in targets]
    condition_predictions = [
        np.repeat(condition_pose.get((r["emotion"], int(r["intensity"])), mean_pose)[None], len(t), 0)
        for r, t in zip(rows, targets)
    ]
    torch.manual_seed(config.seed)
    sta_predictions = _generate(sta, collator, rows, config.batch_size, desc="STA greedy")
    for name, predictions in (
        ("mean_baseline", mean_predictions),
        ("condition_baseline", condition_predictions),
        ("sta", sta_predictions),
    ):
        for key, value in _errors(predictions, targets, rig).items():
            results[f"{name}_{key}"] = value
    results.update(motion_report("sta", sta_predictions, targets, rig))

    # emotion control
    classifier = ExpressionClassifier().fit(train_sequences, list(train["emotion"]))
    results["classifier"] = type(classifier).__name__
    results["classifier_accuracy_ground_truth"] = _accuracy(classifier, targets, [r["emotion"] for r in rows])
    results["sta_emotion_accuracy"] = _accuracy(classifier, sta_predictions, [r["emotion"] for r in rows])
    swapped = [_other_emotion(r["emotion"], i) for i, r in enumerate(rows)]
    swapped_predictions = _generate(sta, collator, rows, config.batch_size, emotions=swapped, desc="STA swapped")
    results["sta_swapped_emotion_accuracy"] = _accuracy(classifier, swapped_predictions, swapped)
    lips = region_indices("mouth")
    upper = region_indices("brows") + region_indices("eyes")
    results["swap_lip_change_mae"] = _region_change(sta_predictions, swapped_predictions, lips)
    results["swap_upper_change_mae"] = _region_change(sta_predictions, swapped_predictions, upper)
    # lip *motion* (own mean pose removed): between the two labels, and against ground truth as the reference
    results["swap_lip_motion_correlation"] = M.motion_correlation(sta_predictions, swapped_predictions, lips)
    results["swap_upper_motion_correlation"] = M.motion_correlation(sta_predictions, swapped_predictions, upper)
    results["sta_lip_motion_correlation_ground_truth"] = M.motion_correlation(sta_predictions, targets, lips)
    if rig is not None:
        between = _errors(swapped_predictions, sta_predictions, rig)
        results["swap_lip_change_lve"] = between["lve"]
        results["swap_upper_change_eve"] = between["eve"]

    # Table II: noisy rollouts
    for epsilon in config.epsilons:
        predictions = _generate(sta, collator, rows, config.batch_size, epsilon, config.seed, desc=f"eps {epsilon:g}")
        for key, value in _errors(predictions, targets, rig).items():
            results[f"eps_{epsilon:g}_{key}"] = value

    # RL-tuned policy (when stage 5 saved one)
    rl_dir = run_dir / "rl"
    if (rl_dir / "config.json").is_file():
        policy = ESARMSTAForGeneration.from_pretrained(rl_dir).eval()
        rl_predictions = _generate(policy, collator, rows, config.batch_size, desc="RL greedy")
        for key, value in _errors(rl_predictions, targets, rig).items():
            results[f"rl_{key}"] = value
        results["rl_emotion_accuracy"] = _accuracy(classifier, rl_predictions, [r["emotion"] for r in rows])
        results.update(motion_report("rl", rl_predictions, targets, rig))

    if config.lipsync:
        models = {"sta": load_model(run_dir / "sta")}
        if (rl_dir / "config.json").is_file():
            models["rl"] = load_model(rl_dir)
        evaluated = load_split(config.dataset_name_or_path, config.split)
        results.update(
            run_lipsync(models, evaluated, config.split, train, rig, config.lipsync_settings(), config.seed)
        )

    # reward model / RL numbers reported by their stages
    for stage in ("reward", "rl"):
        for key, value in (stage_metrics.get(stage) or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not key.startswith("stage_"):
                results[f"{stage}/{key}"] = value
    results["emotion_ids"] = {e: emotion_to_id(e) for e in EMOTIONS}

    paths = write_report(results, config.output_dir, stage_metrics=stage_metrics)
    logger.info("Results:\n%s", paths["results_markdown"].read_text())
    return results
