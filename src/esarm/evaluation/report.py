"""Evaluation report: run models over a dataset split, then write markdown tables, a JSON of all numbers and plots.

Results layout (plain dicts of numbers, what :func:`run_evaluation` returns and :func:`write_report` reads)::

    {
      "dataset": "mead", "split": "test", "rig": "<rig provenance>",
      "models": {"ESARM": {"lve_mm": 3.1, "eve_mm": 2.9, "lve_squared_mm2": ..., ...}, ...},   # Table I
      "epsilons": {"mead": {"0.02": {"lve_mm": ..., "eve_mm": ..., "lve_mm_std": ..., "reward_mean": ...}}},  # Table II
    }

:func:`write_report` also accepts the flat dict of :func:`esarm.training.evaluate.evaluate_pipeline`
(``<model>_lve`` / ``<model>_eve`` keys for Table I, ``eps_<epsilon>_lve`` / ``eps_<epsilon>_eve`` for Table II).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..blendshapes import BLENDSHAPE_INDEX
from ..utils import atomic_write, atomic_write_text
from . import metrics as M

logger = logging.getLogger(__name__)

TABLE_I_METRICS: tuple[tuple[str, str], ...] = (("lve_mm", "LVE (mm)"), ("eve_mm", "EVE (mm)"))
TABLE_II_METRICS: tuple[tuple[str, str], ...] = (("lve_mm", "LVE"), ("eve_mm", "EVE"))
EXTRA_METRICS: tuple[tuple[str, str], ...] = (
    ("lve_squared_mm2", "LVE² (mm²)"),
    ("eve_squared_mm2", "EVE² (mm²)"),
    ("mve_mm", "MVE (mm)"),
    ("fdd_mm2", "FDD (mm²)"),
    ("blendshape_mae", "MAE"),
    ("emotion_accuracy", "emotion acc."),
    ("mouth_audio_correlation", "mouth/energy r"),
    ("diversity_mm", "diversity (mm)"),
)
CURVE_NAMES: tuple[str, ...] = ("jawOpen", "mouthSmileLeft", "mouthFunnel", "browInnerUp", "eyeBlinkLeft")


# ---------------------------------------------------------------------------------------------------------------------
# Markdown and JSON


def _format(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{digits}f}"
    return str(value)


def table_models_markdown(
    models: Mapping[str, Mapping[str, Any]],
    metrics: Sequence[tuple[str, str]] = TABLE_I_METRICS,
    digits: int = 2,
    extra: bool = False,
) -> str:
    """Paper Table I layout: one row per model, LVE / EVE columns (``metrics`` = (key, header) pairs).

    ``extra=True`` appends the columns of ``EXTRA_METRICS`` that at least one model has.
    """
    columns = list(metrics)
    if extra:
        columns += [(k, h) for k, h in EXTRA_METRICS if any(k in m for m in models.values())]
    lines = ["| Model | " + " | ".join(h for _, h in columns) + " |", "|---|" + "---|" * len(columns)]
    for name, values in models.items():
        lines.append(f"| {name} | " + " | ".join(_format(values.get(k), digits) for k, _ in columns) + " |")
    return "\n".join(lines) + "\n"


def _epsilon_key(value: Any) -> float:
    return float(value)


def table_epsilons_markdown(
    by_dataset: Mapping[str, Mapping[Any, Mapping[str, Any]]],
    metrics: Sequence[tuple[str, str]] = TABLE_II_METRICS,
    digits: int = 2,
) -> str:
    """Paper Table II layout: one row per epsilon, LVE / EVE columns per dataset.

    ``by_dataset[dataset][epsilon] = {"lve_mm": ..., "eve_mm": ...}`` (epsilons as numbers or strings).
    """
    datasets = list(by_dataset)
    epsilons = sorted({_epsilon_key(e) for d in by_dataset.values() for e in d})
    header = "| ε | " + " | ".join(f"{d} {h}" for d in datasets for _, h in metrics) + " |"
    lines = [header, "|---|" + "---|" * (len(datasets) * len(metrics))]
    for epsilon in epsilons:
        cells = []
        for dataset in datasets:
            row = next((v for e, v in by_dataset[dataset].items() if _epsilon_key(e) == epsilon), {})
            cells += [_format(row.get(k), digits) for k, _ in metrics]
        lines.append(f"| {epsilon:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(results: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """All numbers as JSON (NaN -> null), written atomically."""
    text = json.dumps(_jsonable(results), indent=2, sort_keys=False)
    return atomic_write_text(path, text + "\n")


def normalise_results(results: Mapping[str, Any]) -> dict[str, Any]:
    """Nested layout (module docstring) from either layout; the flat one of the training pipeline is converted."""
    if "models" in results or "epsilons" in results:
        return dict(results)
    models: dict[str, dict[str, Any]] = {}
    epsilons: dict[str, dict[str, Any]] = {}
    dataset = str(results.get("dataset", "dataset"))
    for key, value in results.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        for suffix, metric in (("_lve", "lve_mm"), ("_eve", "eve_mm"), ("_mae", "blendshape_mae"),
                               ("_emotion_accuracy", "emotion_accuracy")):  # fmt: skip
            if not key.endswith(suffix):
                continue
            prefix = key[: -len(suffix)]
            if prefix.startswith("eps_"):
                try:
                    epsilon = str(float(prefix[len("eps_") :]))
                except ValueError:
                    continue
                epsilons.setdefault(dataset, {}).setdefault(epsilon, {})[metric] = value
            elif "/" not in prefix and not prefix.startswith("swap"):
                models.setdefault(prefix, {})[metric] = value
    models = {k: v for k, v in models.items() if "lve_mm" in v or "eve_mm" in v}
    out = {k: v for k, v in results.items() if not isinstance(v, (int, float)) or isinstance(v, bool)}
    out.update({"models": models, "epsilons": epsilons, "flat": dict(results)})
    return out


def report_markdown(results: Mapping[str, Any], digits: int = 2) -> str:
    """Markdown of a results dict: Table I (models) and Table II (epsilons), with the rig's provenance."""
    results = normalise_results(results)
    lines = ["# Evaluation", ""]
    described = [f"{k}: `{results[k]}`" for k in ("dataset", "split", "num_clips") if k in results]
    if described:
        lines += ["; ".join(described), ""]
    if results.get("rig"):
        rig = f" ({results['rig']})" if isinstance(results["rig"], str) else ""
        lines += [
            f"Vertex errors in millimetres on the face rig{rig}. They compare models evaluated on this rig, not with "
            "numbers published on FLAME / BIWI meshes.",
            "",
        ]
    if results.get("models"):
        lines += ["## Table I: models", "", table_models_markdown(results["models"], digits=digits, extra=True)]
    if results.get("epsilons"):
        lines += [
            "## Table II: noise level (ε) of the policy",
            "",
            table_epsilons_markdown(results["epsilons"], digits=digits),
        ]
    return "\n".join(lines)


def write_markdown(results: Mapping[str, Any], path: str | os.PathLike, digits: int = 2) -> Path:
    """Write :func:`report_markdown` atomically."""
    text = report_markdown(results, digits=digits)
    return atomic_write_text(path, text)


# ---------------------------------------------------------------------------------------------------------------------
# Plots


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save_figure(figure, path: str | os.PathLike) -> Path:
    figure.tight_layout()
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))


def plot_blendshape_curves(
    predicted: Any,
    target: Any | None,
    path: str | os.PathLike,
    fps: float = 30.0,
    names: Sequence[str] = CURVE_NAMES,
    title: str | None = None,
) -> Path:
    """PNG of a few blendshape curves over time: prediction (solid) vs ground truth (dashed)."""
    predicted = M.as_sequences(predicted, "predicted")[0]
    target = M.as_sequences(target, "target")[0] if target is not None else None
    unknown = [n for n in names if n not in BLENDSHAPE_INDEX]
    if unknown:
        raise ValueError(f"names must be ARKit names, got unknown {unknown}")
    figure = _figure(9, 1.6 * len(names) + 0.6)
    axes = figure.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    for axis, name in zip(axes, names):
        index = BLENDSHAPE_INDEX[name]
        axis.plot(np.arange(len(predicted)) / fps, predicted[:, index], label="predicted", color="tab:blue")
        if target is not None:
            axis.plot(np.arange(len(target)) / fps, target[:, index], "--", label="ground truth", color="tab:orange")
        axis.set_ylabel(name, fontsize=8)
        axis.set_ylim(-0.05, 1.05)
    axes[0].legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel("time (s)")
    if title:
        axes[0].set_title(title)
    return _save_figure(figure, path)


def plot_epsilon_errors(
    by_dataset: Mapping[str, Mapping[Any, Mapping[str, Any]]],
    path: str | os.PathLike,
    metrics: Sequence[tuple[str, str]] = (("lve_mm", "LVE (mm)"), ("eve_mm", "EVE (mm)")),
) -> Path:
    """PNG of LVE / EVE against ε per dataset, with ±1 std error bars where ``<metric>_std`` is present."""
    figure = _figure(5 * len(metrics), 3.6)
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    for axis, (key, label) in zip(axes, metrics):
        for dataset, rows in by_dataset.items():
            points = sorted((_epsilon_key(e), v) for e, v in rows.items() if v.get(key) is not None)
            if not points:
                continue
            x = [p[0] for p in points]
            y = [p[1][key] for p in points]
            err = [p[1].get(f"{key}_std") or 0.0 for p in points]
            axis.errorbar(x, y, yerr=err, marker="o", capsize=3, label=dataset)
        axis.set_xlabel("ε")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    return _save_figure(figure, path)


def plot_reward_vs_epsilon(rewards: Mapping[Any, Any], path: str | os.PathLike) -> Path:
    """PNG of the reward model's return against ε: mean ± std of the per-clip returns (or single values)."""
    points = []
    for epsilon, values in rewards.items():
        values = np.atleast_1d(np.asarray(values, dtype=np.float64))
        values = values[np.isfinite(values)]
        if values.size:
            points.append((_epsilon_key(epsilon), values.mean(), values.std()))
    if not points:
        raise ValueError("rewards must hold at least one finite value, got none")
    points.sort()
    figure = _figure(5, 3.6)
    axis = figure.subplots()
    axis.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points], marker="o", capsize=3)
    axis.set_xlabel("ε")
    axis.set_ylabel("return R(τ)")
    axis.set_title("Reward model vs noise level")
    axis.grid(alpha=0.3)
    return _save_figure(figure, path)


def write_report(
    results: Mapping[str, Any],
    output_dir: str | os.PathLike,
    curves: Mapping[str, Any] | None = None,
    fps: float = 30.0,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.json`` and the plots of a results dict into ``output_dir``.

    Args:
        results: either layout (module docstring).
        curves: optional ``{"predicted": [T, 52], "target": [T, 52] | None, "title": str}`` for the blendshape
            curve plot.
        fps: frame rate of ``curves``.

    Returns:
        ``{"markdown", "json", "curves"?, "epsilon_errors"?, "reward_vs_epsilon"?: path}``.
    """
    output_dir = Path(output_dir)
    nested = normalise_results(results)
    paths = {
        "markdown": write_markdown(nested, output_dir / "report.md"),
        "json": write_json(nested, output_dir / "report.json"),
    }
    if curves is not None:
        paths["curves"] = plot_blendshape_curves(
            curves["predicted"], curves.get("target"), output_dir / "blendshape_curves.png", fps=fps,
            title=curves.get("title"),
        )  # fmt: skip
    if nested.get("epsilons"):
        paths["epsilon_errors"] = plot_epsilon_errors(nested["epsilons"], output_dir / "epsilon_errors.png")
        rewards = {
            e: row.get("rewards", row.get("reward_mean"))
            for rows in nested["epsilons"].values()
            for e, row in rows.items()
            if row.get("rewards", row.get("reward_mean")) is not None
        }
        if rewards:
            paths["reward_vs_epsilon"] = plot_reward_vs_epsilon(rewards, output_dir / "reward_vs_epsilon.png")
    return paths


RIG_POSES: tuple[tuple[str, dict[str, float]], ...] = (
    ("neutral", {}),
    ("jawOpen", {"jawOpen": 1.0}),
    ("mouthSmileLeft + Right", {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0}),
    ("mouthFunnel", {"mouthFunnel": 1.0}),
    ("browInnerUp", {"browInnerUp": 1.0}),
    ("eyeBlinkLeft + Right", {"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0}),
)
"""Poses of :func:`render_rig_poses` (the picture in docs/rig.png): neutral and a few extreme blendshapes."""


def render_rig_poses(
    rig,
    path: str | os.PathLike,
    poses: Sequence[tuple[str, Mapping[str, float]]] = RIG_POSES,
    height: int = 320,
    columns: int = 3,
) -> Path:
    """PNG grid of the rig rendered (``esarm.export.render``) at neutral and at the given poses, labelled."""
    from PIL import Image

    from ..export.render import FaceRenderer, apply_label, label_mask

    renderer = FaceRenderer(rig, height=height)
    tiles = []
    for label, weights in poses:
        unknown = [n for n in weights if n not in BLENDSHAPE_INDEX]
        if unknown:
            raise ValueError(f"poses must use ARKit names, got unknown {unknown}")
        vector = np.zeros(len(BLENDSHAPE_INDEX), dtype=np.float32)
        for name, value in weights.items():
            vector[BLENDSHAPE_INDEX[name]] = value
        image = renderer.render(vector)
        tiles.append(apply_label(image, label_mask(label, *image.shape[:2])))
    rows = -(-len(tiles) // columns)
    tile_height, tile_width = tiles[0].shape[:2]
    grid = np.zeros((rows * tile_height, columns * tile_width, 3), dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        grid[r * tile_height : (r + 1) * tile_height, c * tile_width : (c + 1) * tile_width] = tile
    return atomic_write(path, lambda tmp: Image.fromarray(grid).save(tmp, format="PNG"))


# ---------------------------------------------------------------------------------------------------------------------
# Running models


def _speakers_of(model) -> list[str]:
    """Known speakers of a model, from the processor saved beside it (empty: everyone is the unknown speaker)."""
    path = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
    if not path:
        return []
    try:
        from ..processing_esarm import ESARMProcessor

        return list(ESARMProcessor.from_pretrained(path).speakers)
    except Exception as error:  # noqa: BLE001 - no processor saved: unknown speaker everywhere
        logger.info("No speaker list for %s (%s); using the unknown-speaker id", path, error)
        return []


def _rows(dataset_split: Any, max_samples: int | None) -> list[dict[str, Any]]:
    count = len(dataset_split) if max_samples is None else min(len(dataset_split), max_samples)
    if hasattr(dataset_split, "select") and count < len(dataset_split):
        # an even spread over the split (rows are grouped by sentence / emotion)
        dataset_split = dataset_split.select(np.linspace(0, len(dataset_split) - 1, count).round().astype(int).tolist())
    return [dict(dataset_split[i]) for i in range(count)]


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
        rig: :class:`~esarm.rig.FaceRig` for the vertex metrics (``None``: blendshape metrics only).
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
    import torch
    from tqdm.auto import tqdm

    from ..data.collators import STACollator
    from ..data.schema import decode_audio_value

    model.eval()
    device = next(model.parameters()).device
    fps = float(getattr(model.config, "fps", 30.0))
    collator = STACollator(speakers=list(_speakers_of(model) if speakers is None else speakers), fps=fps)
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
    dataset_path: str | os.PathLike,
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
) -> dict[str, Any]:
    """Evaluate one or more saved STA models on a dataset split and write the report (``esarm evaluate``).

    Args:
        model_paths: ``save_pretrained`` folders of ``ESARMSTAForGeneration`` models: a path, a list (row names
            = folder names) or ``{row name: path}``.
        dataset_path: a corpus saved with ``save_to_disk`` (``DatasetDict`` with ``split``).
        split: split to evaluate (held-out speakers).
        output_dir: where ``report.md``, ``report.json`` and the PNG plots go.
        rig: a ``FaceRig``, a path to one, or ``None`` for :meth:`FaceRig.default`.
        epsilons: when given, the first model is also rolled out at each ε (Table II, per-ε plots).
        dataset_name: label of the dataset in Table II (default: the folder name).
        train_split: split whose ground truth trains the expression classifier (``None``: no classifier unless
            ``classifier_path``).
        classifier_path: a saved :class:`ExpressionClassifier` (skips training one).
        reward_model_path: a saved ``ESARMRewardModel`` to score rollouts (reward vs ε plot).
        batch_size, max_samples, num_diversity_samples, seed: see :func:`evaluate_model`.
        device: torch device (default: CUDA when available, else CPU).

    Returns:
        The results dict (layout in the module docstring), also written as ``report.json``.
    """
    import torch

    from ..data.loading import load_splits
    from ..modeling_sta import ESARMSTAForGeneration
    from ..rig import FaceRig
    from .classifier import ExpressionClassifier

    if isinstance(model_paths, (str, os.PathLike)):
        model_paths = [model_paths]
    named = dict(model_paths) if isinstance(model_paths, Mapping) else {Path(p).name: p for p in model_paths}
    if not named:
        raise ValueError("model_paths must name at least one model folder, got none")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if rig is None:
        rig = FaceRig.default()
    elif isinstance(rig, (str, os.PathLike)):
        rig = FaceRig.from_path(rig)
    corpus = load_splits(dataset_path, argument="dataset_path")
    if split not in corpus:
        raise ValueError(f"split must be one of {list(corpus)}, got {split!r}")
    dataset_name = dataset_name or Path(dataset_path).name
    classifier = None
    if classifier_path is not None:
        classifier = ExpressionClassifier.load(classifier_path)
    elif train_split is not None and train_split in corpus:
        classifier = ExpressionClassifier(seed=seed).fit(corpus[train_split])
    reward_model = None
    if reward_model_path is not None:
        from ..modeling_reward import ESARMRewardModel

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
    write_report(results, output_dir, curves=curves, fps=float(getattr(model.config, "fps", 30.0)))
    return results


def _ground_truth_rows(dataset_split: Any, max_samples: int | None) -> list[dict[str, Any]]:
    """Rows (ground truth) of the evaluated clips, for the classifier's accuracy on ground truth."""
    return [{"blendshapes": r["blendshapes"], "emotion": r["emotion"]} for r in _rows(dataset_split, max_samples)]


__all__ = [
    "evaluate_model",
    "plot_blendshape_curves",
    "plot_epsilon_errors",
    "plot_reward_vs_epsilon",
    "render_rig_poses",
    "report_markdown",
    "run_evaluation",
    "table_epsilons_markdown",
    "table_models_markdown",
    "write_json",
    "write_markdown",
    "write_report",
]
