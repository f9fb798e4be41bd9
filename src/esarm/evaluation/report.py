"""The evaluation report: markdown tables, a JSON of all numbers and plots (:func:`write_report`, the one writer).

Results layout (plain dicts of numbers, what :func:`esarm.evaluation.run.run_evaluation` returns and
:func:`write_report` reads)::

    {
      "dataset": "mead", "split": "test", "rig": "<rig provenance>",
      "models": {"ESARM": {"lve_mm": 3.1, "eve_mm": 2.9, "lve_squared_mm2": ..., ...}, ...},   # Table I
      "epsilons": {"mead": {"0.02": {"lve_mm": ..., "eve_mm": ..., "lve_mm_std": ..., "reward_mean": ...}}},  # Table II
      "lipsync": {"validation": {"ESARM": {"r_jaw": 0.5, "closure_aperture": 0.7, ...}, "loudness": {...}, ...}},
      "lipsync_sets": {"validation": {"description": "...", "num_clips": 24, "labels": ["neutral", "happy"]}},
    }

The ``lipsync`` sections (:mod:`esarm.evaluation.lipsync_evaluation`) hold the lip-sync scores per set and source.

:func:`write_report` also accepts the flat dict of :func:`esarm.evaluation.run.evaluate_pipeline`
(``<model>_lve`` / ``<model>_eve`` keys for Table I, ``eps_<epsilon>_lve`` / ``eps_<epsilon>_eve`` for Table II);
it then also writes that run's own tables, ``results.md`` (:func:`results_markdown`), and ``results.json``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..blendshapes import BLENDSHAPE_INDEX
from ..utils import atomic_write, atomic_write_json, atomic_write_text
from . import metrics as M
from .lipsync import format_table
from .realism import format_table as realism_table

logger = logging.getLogger(__name__)

REALISM_NOTE = (
    "Motion ratio = generated / captured std over time per region; blinks from eyeBlink crossings of 0.5; realism "
    "acc = held-out accuracy of a classifier telling captured from generated upper-face windows, cross-validated "
    "by speaker (0.5: it cannot tell them apart); FDD = captured minus generated upper-face dynamics (mm²). RL has "
    "to beat all three decodings of the STA model, not only the greedy one."
)

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


def _format(value: Any, digits: int = 3) -> str:
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


def write_json(results: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """All numbers as JSON (NaN -> null), written atomically."""
    return atomic_write_json(path, results, sort_keys=False)


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


def results_markdown(results: dict[str, Any], stage_metrics: dict[str, dict[str, Any]] | None = None) -> str:
    """The results tables of a run (markdown)."""
    r, stage_metrics = results, stage_metrics or {}
    lines = [f"Held-out split `{r.get('split')}`: {r.get('num_clips')} clips (speakers unseen in training).", ""]
    lines += [
        "### Motion prior reconstruction",
        "",
        "| MAE | codebook usage | LVE (mm) | EVE (mm) |",
        "|---|---|---|---|",
    ]
    lines.append(
        f"| {_format(r.get('prior_reconstruction_mae'), 4)} | {_format(r.get('prior_codebook_usage'))} | "
        f"{_format(r.get('prior_reconstruction_lve'))} | {_format(r.get('prior_reconstruction_eve'))} |"
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
            f"| {label} | {_format(r.get(f'{key}_mae'), 4)} | {_format(r.get(f'{key}_lve'))} | {_format(r.get(f'{key}_eve'))} | "
            f"{_format(accuracy)} |"
        )
    lines += ["", "### Emotion control", ""]
    lines += [
        f"Expression classifier ({r.get('classifier')}) trained on ground-truth training animations; accuracy on "
        f"ground truth of the held-out split: {_format(r.get('classifier_accuracy_ground_truth'))}; on STA animations "
        f"with the true emotion requested: {_format(r.get('sta_emotion_accuracy'))}; with another emotion requested on "
        f"the same audio (accuracy w.r.t. the requested one): {_format(r.get('sta_swapped_emotion_accuracy'))}.",
        "",
        "| same audio, two emotion labels | lips | upper face (eyes, brows) |",
        "|---|---|---|",
        f"| mean abs. blendshape change | {_format(r.get('swap_lip_change_mae'), 4)} | "
        f"{_format(r.get('swap_upper_change_mae'), 4)} |",
    ]
    if "swap_lip_change_lve" in r:
        lines.append(
            f"| vertex change (LVE / EVE between the two, mm) | {_format(r['swap_lip_change_lve'])} | "
            f"{_format(r.get('swap_upper_change_eve'))} |"
        )
    if "swap_lip_motion_correlation" in r:
        lines += [
            f"| motion correlation between the two (own mean pose removed) | "
            f"{_format(r['swap_lip_motion_correlation'])} | {_format(r.get('swap_upper_motion_correlation'))} |",
            "",
            f"Reference for the lips: the STA's lip motion correlates with the ground truth's at "
            f"{_format(r.get('sta_lip_motion_correlation_ground_truth'))}.",
        ]
    lines += ["", "### Table II: noise level of the epsilon-greedy policy", "", "| epsilon | MAE | LVE (mm) | EVE (mm) |",
              "|---|---|---|---|"]  # fmt: skip
    for key in sorted(k for k in r if k.startswith("eps_") and k.endswith("_mae")):
        eps = key[len("eps_") : -len("_mae")]
        lines.append(
            f"| {eps} | {_format(r[key], 4)} | {_format(r.get(f'eps_{eps}_lve'))} | {_format(r.get(f'eps_{eps}_eve'))} |"
        )
    if r.get("realism"):
        lines += ["", "### Expressiveness and realism of the upper face", "", REALISM_NOTE, "",
                  realism_table(r["realism"])]  # fmt: skip
    if r.get("lipsync"):
        lines += ["", "### Lip sync", "", lipsync_markdown(r).rstrip("\n")]
    for stage, title in (("reward", "Reward model"), ("rl", "RL fine-tuning")):
        numbers = {k: v for k, v in (stage_metrics.get(stage) or {}).items() if isinstance(v, (int, float))}
        if numbers:
            lines += ["", f"### {title} (stage metrics)", "", "| metric | value |", "|---|---|"]
            lines += [f"| {k} | {_format(v, 4)} |" for k, v in sorted(numbers.items())]
    lines += guard_transfer_markdown(r, stage_metrics.get("rl") or {})
    return "\n".join(lines) + "\n"


def guard_transfer_markdown(results: Mapping[str, Any], rl_metrics: Mapping[str, Any]) -> list[str]:
    """Lines of the RL guard's validation -> test gap: the per-clip improvement over the STA model the guard saw on
    its validation clips (``guard_improvement``, of the weights it kept: ``guard_kept_improvement``) beside the one
    the test speakers show for the same metric (``rl_test_<metric>_improvement`` of the evaluation); none without a
    guard."""
    metric = rl_metrics.get("guard_metric")
    test = results.get(f"rl_test_{metric}_improvement")
    if metric is None or test is None:
        return []
    kept = rl_metrics.get("guard_kept_improvement", 0.0)
    interval = (f"[{_format(rl_metrics['guard_ci_low'])}, {_format(rl_metrics['guard_ci_high'])}]"
                if "guard_ci_low" in rl_metrics else "(the initial policy was the best check)")  # fmt: skip
    return [
        "", "### RL guard: validation -> test", "",
        f"Metric `{metric}` (per clip, lower is better; improvement = STA minus RL). The guard compared the best check "
        f"(update {rl_metrics.get('guard_candidate_step')}) with the STA model on {_format(rl_metrics.get('guard_clips'), 0)} "
        f"validation clips: improvement {_format(rl_metrics.get('guard_improvement'))} {interval}, "
        f"{'accepted' if rl_metrics.get('guard_accepted') else 'rejected: the STA weights were kept'}.",
        "",
        "| | validation (kept policy) | test | gap (validation - test) |",
        "|---|---|---|---|",
        f"| improvement | {_format(kept)} | {_format(test)} [{_format(results.get(f'rl_test_{metric}_ci_low'))}, "
        f"{_format(results.get(f'rl_test_{metric}_ci_high'))}] | {_format(kept - test)} |",
    ]  # fmt: skip


def lipsync_markdown(results: Mapping[str, Any]) -> str:
    """The lip-sync section of a results dict (``lipsync`` and ``lipsync_sets``): what each set is, what the columns
    mean, and one table row per set and source. Empty when the results hold no lip-sync scores."""
    scores = results.get("lipsync") or {}
    if not scores:
        return ""
    sets = results.get("lipsync_sets") or {}
    lines = []
    for name in scores:
        about = sets.get(name, {})
        labels = about.get("labels") or ["?", "?"]
        lines.append(
            f"- `{name}`: {about.get('description', name)}, {about.get('num_clips', '?')} clips; models animated "
            f"with the label `{labels[0]}` (two-label lip r: against `{labels[1]}` on the same audio)."
        )
    lines += [
        "",
        "r: Pearson correlation of the mouth opening (jawOpen; lip aperture on the rig) with the phoneme-openness "
        "curve of the synthesiser's timings (real speech: of its published or aligned phone labels). closure: "
        "opening on p / b / m frames over vowel frames (0: the lips close on every bilabial). rest: opening on "
        "pause frames over speech frames (0: the mouth rests in every pause). lag: at the cross-correlation peak, "
        "positive = the mouth is late. Envelope and silence columns need no phoneme timings. The loudness envelope "
        "and the log-mel probe (fitted on the training split) are the floors, the ground truth (the corpus's "
        "generator) the ceiling; on real speech the phone-rules animator (PocketSphinx's recognised phones) and "
        "uLipSync stand beside the model.",
        "",
        format_table(scores),
    ]
    if results.get("lipsync_languages"):
        lines += ["", language_markdown(results["lipsync_languages"])]
    return "\n".join(lines) + "\n"


def language_markdown(comparison: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """The per-language lip-sync table (``lipsync_languages``, :func:`~esarm.evaluation.lipsync_evaluation.
    language_comparison`): each model's r(jawOpen) per language set beside the English held-out r and loudness."""
    lines = [
        "Per language (r(jawOpen, openness); English: the held-out `validation` set, the same synthesiser; targets: "
        "ratio >= 0.9 and at least 0.1 over loudness on the same clips):",
        "",
        "| set | model | r | English r | ratio | loudness r | over loudness |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, models in comparison.items():
        for model, row in models.items():
            cells = [row[k] for k in ("r", "english_r", "ratio", "loudness_r", "over_loudness")]
            lines.append(f"| {name} | {model} | " + " | ".join(_format(v, 3) for v in cells) + " |")
    return "\n".join(lines)


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
    if results.get("lipsync"):
        lines += ["## Lip sync", "", lipsync_markdown(results)]
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
    stage_metrics: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.json`` and the plots of a results dict into ``output_dir``; for the flat
    results of a pipeline run also ``results.json`` (every number) and ``results.md`` (:func:`results_markdown`).

    Args:
        results: either layout (module docstring).
        curves: optional ``{"predicted": [T, 52], "target": [T, 52] | None, "title": str}`` for the blendshape
            curve plot.
        fps: frame rate of ``curves``.
        stage_metrics: ``{stage: metrics}`` of a pipeline run, for the reward-model and RL tables of ``results.md``.

    Returns:
        ``{"markdown", "json", "results_markdown"?, "results_json"?, "curves"?, "epsilon_errors"?,
        "reward_vs_epsilon"?: path}``.
    """
    output_dir = Path(output_dir)
    nested = normalise_results(results)
    paths = {}
    if "flat" in nested:
        paths["results_json"] = atomic_write_json(output_dir / "results.json", results)
        paths["results_markdown"] = atomic_write_text(
            output_dir / "results.md", results_markdown(results, stage_metrics)
        )
    paths |= {
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

    # the renderer lives in the export package (with its rig resolver); only this documentation picture needs it
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


__all__ = [
    "language_markdown",
    "lipsync_markdown",
    "plot_blendshape_curves",
    "plot_epsilon_errors",
    "plot_reward_vs_epsilon",
    "render_rig_poses",
    "report_markdown",
    "results_markdown",
    "table_epsilons_markdown",
    "table_models_markdown",
    "write_json",
    "write_markdown",
    "write_report",
]
