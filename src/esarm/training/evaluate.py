"""Final evaluation of a pipeline run on held-out speakers (the ``test`` split by default).

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..blendshapes import EMOTIONS, region_indices
from ..data.collators import STACollator, num_frames_for
from ..data.schema import decode_audio_value
from .common import atomic_write_json, emotion_to_id, load_rig, load_split, vertex_errors
from .demos import DEFAULT_EPSILONS, rollout_batch

logger = logging.getLogger(__name__)


@dataclass
class EvaluationConfig:
    """Arguments of the final evaluation."""

    run_dir: str | None = field(default=None, metadata={"help": "Pipeline run folder (stage sub-folders)."})
    dataset_path: str | None = field(default=None, metadata={"help": "Corpus folder (save_to_disk)."})
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


# ---------------------------------------------------------------------------------------------------------------
# helpers


def _ground_truth(dataset, count: int, fps: float) -> list[np.ndarray]:
    out = []
    for i in range(count):
        row = dataset[i]
        gt = np.asarray(row["blendshapes"], dtype=np.float32)
        out.append(gt[: num_frames_for(len(decode_audio_value(row["audio"])), float(row.get("fps") or fps))])
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
        per_clip = [vertex_errors(p[:k], t[:k], rig) for p, t, k in zip(predictions, targets, n)]
        metrics["lve"] = float(np.mean([c["lve"] for c in per_clip]))
        metrics["eve"] = float(np.mean([c["eve"] for c in per_clip]))
    return metrics


class _CentroidClassifier:
    """Fallback expression classifier (nearest class centroid of standardised per-clip mean / std features)."""

    def fit(self, sequences, labels):
        features = np.stack([self._features(s) for s in sequences])
        self.mean, self.std = features.mean(0), features.std(0) + 1e-6
        z = (features - self.mean) / self.std
        labels = np.asarray(labels)
        self.classes = np.unique(labels)
        self.centroids = np.stack([z[labels == c].mean(0) for c in self.classes])
        return self

    @staticmethod
    def _features(seq):
        return np.concatenate([seq.mean(0), seq.std(0)])

    def predict(self, sequences) -> np.ndarray:
        z = (np.stack([self._features(s) for s in sequences]) - self.mean) / self.std
        return self.classes[((z[:, None] - self.centroids[None]) ** 2).sum(-1).argmin(1)]


def _expression_classifier(train_sequences, train_labels):
    """C's ExpressionClassifier when available (trained on ground truth), else the centroid fallback."""
    try:
        from ..evaluation.classifier import ExpressionClassifier

        classifier = ExpressionClassifier()
        classifier.fit(train_sequences, train_labels)
        return classifier, "ExpressionClassifier"
    except (ImportError, TypeError, AttributeError) as error:
        logger.info("Using the centroid expression classifier (%s)", error)
        return _CentroidClassifier().fit(train_sequences, train_labels), "centroid"


def _accuracy(classifier, sequences, labels) -> float:
    predicted = np.asarray(classifier.predict(sequences))
    return float((predicted == np.asarray(labels)).mean())


def _other_emotion(emotion: str, index: int) -> str:
    """A different emotion for the control test, cycling through all others."""
    others = [e for e in EMOTIONS if e != emotion]
    return others[index % len(others)]


def _region_change(a: list[np.ndarray], b: list[np.ndarray], indices: list[int]) -> float:
    return float(np.mean([np.abs(x[: len(y)][:, indices] - y[: len(x)][:, indices]).mean() for x, y in zip(a, b)]))


def _motion_correlation(a: list[np.ndarray], b: list[np.ndarray], indices: list[int]) -> float:
    """Mean over clip pairs of the correlation of the region's motion: the blendshapes of ``indices`` with each
    clip's own mean pose removed (so a different resting pose, e.g. a smile, does not count; the timing and size of
    the movements do), flattened over time and channels."""
    values = []
    for x, y in zip(a, b):
        n = min(len(x), len(y))
        u = x[:n, indices] - x[:n, indices].mean(0)
        v = y[:n, indices] - y[:n, indices].mean(0)
        denominator = float(np.sqrt((u**2).sum() * (v**2).sum()))
        if denominator > 0:
            values.append(float((u * v).sum()) / denominator)
    return float(np.mean(values)) if values else float("nan")


# ---------------------------------------------------------------------------------------------------------------
# evaluation


def evaluate_pipeline(
    config: EvaluationConfig, stage_metrics: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Evaluate the models of a pipeline run; writes ``results.json`` and ``results.md`` to ``config.output_dir``
    (and C's report files when ``esarm.evaluation.report`` is available). Returns a flat dict of numbers."""
    import torch

    from .. import ESARMMotionPrior, ESARMSTAForGeneration
    from .demos import _speakers
    from .motion_prior import evaluate_motion_prior

    stage_metrics = stage_metrics or {}
    run_dir = Path(config.run_dir)
    rig = load_rig(config.rig_path)
    results: dict[str, Any] = {"split": config.split, "rig": rig is not None}
    test = load_split(config.dataset_path, config.split)
    train = load_split(config.dataset_path, config.train_split)
    count = len(test) if config.max_clips is None else min(len(test), config.max_clips)
    if config.max_clips is not None and count < len(test):
        # an even spread over the split (rows are ordered by sentence and emotion)
        test = test.select(np.linspace(0, len(test) - 1, count).round().astype(int).tolist())
    results["num_clips"] = count

    # motion prior reconstruction on held-out speakers
    prior = ESARMMotionPrior.from_pretrained(run_dir / "motion_prior").eval()
    for key, value in evaluate_motion_prior(prior, test, rig).items():
        results[f"prior_{key}"] = value

    sta = ESARMSTAForGeneration.from_pretrained(run_dir / "sta").eval()
    fps = sta.config.fps
    speakers = _speakers(str(run_dir / "sta"))
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

    # emotion control
    classifier, classifier_name = _expression_classifier(train_sequences, list(train["emotion"]))
    results["classifier"] = classifier_name
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
    results["swap_lip_motion_correlation"] = _motion_correlation(sta_predictions, swapped_predictions, lips)
    results["swap_upper_motion_correlation"] = _motion_correlation(sta_predictions, swapped_predictions, upper)
    results["sta_lip_motion_correlation_ground_truth"] = _motion_correlation(sta_predictions, targets, lips)
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

    # reward model / RL numbers reported by their stages
    for stage in ("reward", "rl"):
        for key, value in (stage_metrics.get(stage) or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not key.startswith("stage_"):
                results[f"{stage}/{key}"] = value
    results["emotion_ids"] = {e: emotion_to_id(e) for e in EMOTIONS}

    output_dir = Path(config.output_dir)
    atomic_write_json(output_dir / "results.json", results)
    markdown = results_markdown(results, stage_metrics)
    tmp = output_dir / ".results.md.tmp"
    tmp.write_text(markdown)
    tmp.replace(output_dir / "results.md")
    _c_report(results, output_dir)
    logger.info("Results:\n%s", markdown)
    return results


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def results_markdown(results: dict[str, Any], stage_metrics: dict[str, dict[str, Any]] | None = None) -> str:
    """The results tables of a run (markdown)."""
    r, stage_metrics = results, stage_metrics or {}
    lines = [f"Held-out split `{r['split']}`: {r['num_clips']} clips (speakers unseen in training).", ""]
    lines += [
        "### Motion prior reconstruction",
        "",
        "| MAE | codebook usage | LVE (mm) | EVE (mm) |",
        "|---|---|---|---|",
    ]
    lines.append(
        f"| {_fmt(r.get('prior_reconstruction_mae'), 4)} | {_fmt(r.get('prior_codebook_usage'))} | "
        f"{_fmt(r.get('prior_reconstruction_lve'))} | {_fmt(r.get('prior_reconstruction_eve'))} |"
    )
    lines += ["", "### Speech-to-animation vs baselines without audio", ""]
    lines += ["| model | MAE | LVE (mm) | EVE (mm) | emotion acc. |", "|---|---|---|---|---|"]
    names = [("mean animation", "mean_baseline"), ("condition only (emotion + intensity mean)", "condition_baseline"),
             ("STA (greedy)", "sta")]  # fmt: skip
    if "rl_mae" in r:
        names.append(("STA + RL (greedy)", "rl"))
    for label, key in names:
        accuracy = r.get(f"{key}_emotion_accuracy")
        lines.append(
            f"| {label} | {_fmt(r.get(f'{key}_mae'), 4)} | {_fmt(r.get(f'{key}_lve'))} | {_fmt(r.get(f'{key}_eve'))} | "
            f"{_fmt(accuracy)} |"
        )
    lines += ["", "### Emotion control", ""]
    lines += [
        f"Expression classifier ({r.get('classifier')}) trained on ground-truth training animations; accuracy on "
        f"ground truth of the held-out split: {_fmt(r.get('classifier_accuracy_ground_truth'))}; on STA animations "
        f"with the true emotion requested: {_fmt(r.get('sta_emotion_accuracy'))}; with another emotion requested on "
        f"the same audio (accuracy w.r.t. the requested one): {_fmt(r.get('sta_swapped_emotion_accuracy'))}.",
        "",
        "| same audio, two emotion labels | lips | upper face (eyes, brows) |",
        "|---|---|---|",
        f"| mean abs. blendshape change | {_fmt(r.get('swap_lip_change_mae'), 4)} | "
        f"{_fmt(r.get('swap_upper_change_mae'), 4)} |",
    ]
    if "swap_lip_change_lve" in r:
        lines.append(
            f"| vertex change (LVE / EVE between the two, mm) | {_fmt(r['swap_lip_change_lve'])} | "
            f"{_fmt(r['swap_upper_change_eve'])} |"
        )
    if "swap_lip_motion_correlation" in r:
        lines += [
            f"| motion correlation between the two (own mean pose removed) | "
            f"{_fmt(r['swap_lip_motion_correlation'])} | {_fmt(r.get('swap_upper_motion_correlation'))} |",
            "",
            f"Reference for the lips: the STA's lip motion correlates with the ground truth's at "
            f"{_fmt(r.get('sta_lip_motion_correlation_ground_truth'))}.",
        ]
    lines += ["", "### Table II: noise level of the epsilon-greedy policy", "", "| epsilon | MAE | LVE (mm) | EVE (mm) |",
              "|---|---|---|---|"]  # fmt: skip
    for key in sorted(k for k in r if k.startswith("eps_") and k.endswith("_mae")):
        eps = key[len("eps_") : -len("_mae")]
        lines.append(
            f"| {eps} | {_fmt(r[key], 4)} | {_fmt(r.get(f'eps_{eps}_lve'))} | {_fmt(r.get(f'eps_{eps}_eve'))} |"
        )
    for stage, title in (("reward", "Reward model"), ("rl", "RL fine-tuning")):
        numbers = {k: v for k, v in (stage_metrics.get(stage) or {}).items() if isinstance(v, (int, float))}
        if numbers:
            lines += ["", f"### {title} (stage metrics)", "", "| metric | value |", "|---|---|"]
            lines += [f"| {k} | {_fmt(v, 4)} |" for k, v in sorted(numbers.items())]
    return "\n".join(lines) + "\n"


def _c_report(results: dict[str, Any], output_dir: Path) -> None:
    """Hand the numbers to the evaluation package's report writer when it offers one."""
    try:
        from ..evaluation import report
    except ImportError:
        return
    writer = getattr(report, "write_report", None)
    if writer is None:
        return
    try:
        writer(results, output_dir)
    except Exception as error:  # noqa: BLE001 - the pipeline's own results.md is already written
        logger.warning("esarm.evaluation.report.write_report failed: %s", error)
