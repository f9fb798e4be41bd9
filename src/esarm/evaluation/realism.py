"""Measures of expressiveness and realism of the upper face, and the table that compares decodings with them.

A mode-seeking model damps what speech does not determine: blinks (a Poisson process in a capture) and gaze (smooth
noise). LVE and EVE reward that damping, because the mean of a random blink train is a half-open eye. These
measures look at the motion itself, each against the capture of the same clips:

* :func:`blink_statistics` / :func:`blink_report`: blinks found on the mean of ``eyeBlinkLeft`` and
  ``eyeBlinkRight`` (a run above ``threshold``, crossing times interpolated between frames) give the blink rate
  (per minute) and the mean blink duration (ms: the time the lids are more than ``threshold`` closed, a full width
  at half maximum with the default 0.5);
* FDD, the upper-face dynamics deviation of CodeTalker (Xing et al., CVPR 2023), reused from
  :func:`esarm.evaluation.metrics.fdd`: per upper-face vertex of the rig (``eye_forehead``), the std over time of
  the squared norm of its displacement from the neutral mesh, averaged over vertices; captured minus generated,
  sign kept (mm², positive = the upper face moves less than the capture);
* :func:`realism_accuracy`: a two-sample test by classifier. Windows of upper-face blendshapes (eyes and brows) are
  summarised per channel (value and velocity statistics, :func:`window_features`); an L2-regularised logistic
  regression learns to tell captured from generated windows and is scored on held-out groups (speakers: group
  k-fold). 0.5 = the two cannot be told apart, 1.0 = every window is recognised. A clip's captured and generated
  windows always fall in the same fold, so the classifier never sees the other half of a test clip;
* :func:`expressiveness_table`: all of them, with the per-region motion ratios of
  :func:`~esarm.evaluation.rl_diagnostics.expressiveness` and LVE / EVE, for several decodings of one model (greedy,
  sampled, greedy mouth + sampled eyes and brows, ...), and :func:`format_table` to print them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import binomtest
from transformers import GenerationConfig

from ..blendshapes import BLENDSHAPE_INDEX, region_indices
from ..data.collators import STACollator
from . import metrics as M
from .rl_diagnostics import expressiveness

logger = logging.getLogger(__name__)

__all__ = ["DECODINGS", "blink_report", "decoding_config", "blink_statistics", "detect_blinks", "expressiveness_table",
           "flatten_table", "format_table", "generate_animations", "measure_animations", "realism_accuracy", "upper_face_indices",
           "window_features"]  # fmt: skip

BLINK_NAMES = ("eyeBlinkLeft", "eyeBlinkRight")

# The decodings compared by expressiveness_table: settings of STA.generate (a GenerationConfig's fields).
DECODINGS: dict[str, dict[str, Any]] = {
    "greedy": {"do_sample": False},
    "sampled": {"do_sample": True, "temperature": 1.0},
    "greedy_mouth": {"do_sample": True, "temperature": 1.0, "greedy_groups": ["mouth"]},
}


def upper_face_indices() -> list[int]:
    """Blendshape indices of the upper face: the ``eyes`` and ``brows`` regions (brows, nose, cheek squint)."""
    return region_indices("eyes") + region_indices("brows")


# ---------------------------------------------------------------------------------------------------------------
# blinks


def _crossing(curve: np.ndarray, low: int, high: int, threshold: float) -> float:
    """Fractional frame where ``curve`` crosses ``threshold`` between frames ``low`` and ``high = low + 1``."""
    step = curve[high] - curve[low]
    return low + ((threshold - curve[low]) / step if step != 0 else 0.5)


def detect_blinks(curve: np.ndarray, threshold: float = 0.5) -> list[tuple[float, float]]:
    """Blinks of one lid-closure curve ``[T]``: each run of frames above ``threshold``, as ``(start, end)`` in
    fractional frames (linear interpolation of the crossings; a run touching either end of the clip starts or ends
    there)."""
    curve = np.asarray(curve, dtype=np.float64)
    if curve.ndim != 1:
        raise ValueError(f"curve must be a [frames] array, got shape {curve.shape}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    above = curve > threshold
    edges = np.diff(above.astype(np.int8), prepend=0, append=0)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)  # ends: first frame below after the run
    blinks = []
    for start, end in zip(starts, ends):
        begin = _crossing(curve, start - 1, start, threshold) if start > 0 else 0.0
        finish = _crossing(curve, end - 1, end, threshold) if end < len(curve) else float(len(curve) - 1)
        blinks.append((float(begin), float(finish)))
    return blinks


def blink_statistics(sequences: Sequence[np.ndarray], fps: float, threshold: float = 0.5) -> dict[str, float]:
    """Blinks of animations ``[T, 52]`` (ARKit order): ``blink_rate_per_min`` (blinks per minute of animation),
    ``blink_duration_ms`` (mean time above ``threshold``; ``nan`` without blinks), ``num_blinks`` and
    ``duration_s``. The lid closure is the mean of ``eyeBlinkLeft`` and ``eyeBlinkRight``."""
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    columns = [BLENDSHAPE_INDEX[name] for name in BLINK_NAMES]
    durations, frames = [], 0
    for sequence in sequences:
        sequence = np.asarray(sequence)
        if sequence.ndim != 2 or sequence.shape[1] != len(BLENDSHAPE_INDEX):
            raise ValueError(f"sequences must hold [frames, 52] arrays, got shape {sequence.shape}")
        frames += len(sequence)
        durations += [end - start for start, end in detect_blinks(sequence[:, columns].mean(1), threshold)]
    seconds = frames / fps
    return {
        "blink_rate_per_min": 60.0 * len(durations) / seconds if seconds > 0 else float("nan"),
        "blink_duration_ms": 1000.0 * float(np.mean(durations)) / fps if durations else float("nan"),
        "num_blinks": float(len(durations)),
        "duration_s": float(seconds),
    }


def blink_report(
    predictions: Sequence[np.ndarray], targets: Sequence[np.ndarray], fps: float, threshold: float = 0.5
) -> dict[str, float]:
    """Blink rate and duration of generated animations beside the capture's: ``blink_rate_per_min``,
    ``blink_duration_ms``, ``capture_blink_rate_per_min``, ``capture_blink_duration_ms`` and
    ``blink_rate_ratio`` (generated / captured; 1.0 = as many blinks as the capture)."""
    generated = blink_statistics(predictions, fps, threshold)
    captured = blink_statistics(targets, fps, threshold)
    rate, reference = generated["blink_rate_per_min"], captured["blink_rate_per_min"]
    return {
        "blink_rate_per_min": rate,
        "blink_duration_ms": generated["blink_duration_ms"],
        "capture_blink_rate_per_min": reference,
        "capture_blink_duration_ms": captured["blink_duration_ms"],
        "blink_rate_ratio": rate / reference if reference > 0 else float("nan"),
    }


# ---------------------------------------------------------------------------------------------------------------
# the realism test


def window_features(window: np.ndarray) -> np.ndarray:
    """Summary of one window ``[W, C]`` of blendshapes: per channel the mean, std, min, max of the values and the
    mean absolute value, std and max absolute value of the velocity (frame differences). Returns ``[7 * C]``.

    Statistics, not the raw frames: a blink anywhere in the window looks the same, so a linear classifier can tell a
    blinking from a still eye with a few hundred windows.
    """
    velocity = np.diff(window, axis=0)
    speed = np.abs(velocity)
    stats = [window.mean(0), window.std(0), window.min(0), window.max(0), speed.mean(0), velocity.std(0),
             speed.max(0)]  # fmt: skip
    return np.concatenate(stats).astype(np.float64)


def _windows(sequences: Sequence[np.ndarray], window: int, channels: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping windows of each clip as features ``[N, F]`` and the clip index of each ``[N]``."""
    features, clips = [], []
    for index, sequence in enumerate(sequences):
        sequence = np.asarray(sequence, dtype=np.float64)[:, channels]
        for start in range(0, len(sequence) - window + 1, window):
            features.append(window_features(sequence[start : start + window]))
            clips.append(index)
    width = 7 * len(channels)
    return np.asarray(features).reshape(-1, width), np.asarray(clips, dtype=np.int64)


def _fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float, max_iter: int = 200) -> torch.Tensor:
    """Weights ``[F + 1]`` (bias last) of an L2-regularised logistic regression (L-BFGS, float64)."""
    x = torch.as_tensor(np.hstack([features, np.ones((len(features), 1))]))
    y = torch.as_tensor(labels, dtype=torch.float64)
    weights = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ weights, y)
        loss = loss + l2 * (weights[:-1] ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weights.detach()


def realism_accuracy(
    captured: Sequence[np.ndarray],
    generated: Sequence[np.ndarray],
    groups: Sequence[Any],
    window: int = 30,
    num_folds: int = 5,
    l2: float = 1e-2,
    channels: Sequence[int] | None = None,
) -> dict[str, float]:
    """Held-out accuracy of a classifier telling captured from generated windows of the upper face.

    Args:
        captured / generated: per clip ``[T, 52]`` animations (pair ``i`` is the same clip; each pair is cut to its
            shorter length, so both classes have the same number of windows).
        groups: per clip its group (the speaker): group k-fold, so the classifier is scored on speakers it was not
            fitted on. At least 2 groups.
        window: frames per window (30 = 1 s at 30 fps, long enough to hold a ~200 ms blink and its neighbourhood).
        num_folds: folds (at most the number of groups); groups are dealt to folds by size, largest first.
        l2: weight of the L2 penalty on the standardised features.
        channels: blendshape indices (default :func:`upper_face_indices`).

    Returns:
        ``realism_accuracy`` (pooled over folds), ``realism_se`` (its binomial standard error, at least ``0.5 / N``
        for N windows so that an accuracy of 0 or 1 does not claim a zero error), ``realism_p_value``
        (one-sided binomial test of accuracy > 0.5: small = the generated windows are told apart),
        ``realism_windows`` (windows classified, both classes) and ``realism_folds``.
    """
    if not len(captured) == len(generated) == len(groups) or not captured:
        raise ValueError(
            f"captured, generated and groups must be non-empty and of the same length, got {len(captured)}, "
            f"{len(generated)} and {len(groups)}"
        )
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise ValueError(f"window must be an integer >= 2 (frames), got {window!r}")
    distinct = sorted(set(groups), key=str)
    if len(distinct) < 2:
        raise ValueError(f"groups must hold at least 2 distinct groups (speakers) for held-out folds, got {distinct}")
    channels = list(channels) if channels is not None else upper_face_indices()
    pairs = [(np.asarray(c), np.asarray(g)) for c, g in zip(captured, generated)]
    pairs = [(c[: min(len(c), len(g))], g[: min(len(c), len(g))]) for c, g in pairs]
    real, real_clips = _windows([c for c, _ in pairs], window, channels)
    fake, fake_clips = _windows([g for _, g in pairs], window, channels)
    if not len(real):
        raise ValueError(f"no clip is at least window={window} frames long")
    features = np.vstack([real, fake])
    labels = np.concatenate([np.ones(len(real)), np.zeros(len(fake))])
    clip_group = {index: str(group) for index, group in enumerate(groups)}
    window_groups = np.asarray([clip_group[int(i)] for i in np.concatenate([real_clips, fake_clips])])

    # deal groups to folds, largest first, each to the emptiest fold (balanced folds, deterministic)
    num_folds = min(num_folds, len(distinct))
    sizes = {g: int((window_groups == g).sum()) for g in map(str, distinct)}
    fold_of, loads = {}, [0] * num_folds
    for group in sorted(sizes, key=lambda g: (-sizes[g], g)):
        fold = int(np.argmin(loads))
        fold_of[group], loads[fold] = fold, loads[fold] + sizes[group]
    folds = np.asarray([fold_of[g] for g in window_groups])

    correct = 0
    for fold in range(num_folds):
        train, test = folds != fold, folds == fold
        if not test.any() or len(np.unique(labels[train])) < 2:
            continue
        mean, std = features[train].mean(0), features[train].std(0) + 1e-8
        weights = _fit_logistic((features[train] - mean) / std, labels[train], l2)
        x = np.hstack([(features[test] - mean) / std, np.ones((int(test.sum()), 1))])
        predicted = (x @ weights.numpy()) > 0
        correct += int((predicted == labels[test].astype(bool)).sum())
    total = len(labels)
    accuracy = correct / total
    return {
        "realism_accuracy": accuracy,
        "realism_se": float(np.sqrt(max(accuracy * (1 - accuracy), 0.25 / total) / total)),
        "realism_p_value": float(binomtest(correct, total, 0.5, alternative="greater").pvalue),
        "realism_windows": float(total),
        "realism_folds": float(num_folds),
    }


# ---------------------------------------------------------------------------------------------------------------
# several decodings of one model


def decoding_config(settings: Mapping[str, Any]) -> GenerationConfig:
    """A complete ``GenerationConfig`` for one decoding: ``settings`` over greedy decoding without exploration (so
    a model's own saved ``generation_config`` does not fill the fields a decoding leaves out)."""
    defaults = {"do_sample": False, "temperature": 1.0, "top_k": None, "epsilon": 0.0, "greedy_groups": None}
    return GenerationConfig(**{**defaults, **settings})


@torch.no_grad()
def generate_animations(
    model, collator: STACollator, rows: Sequence[Mapping[str, Any]], generation_config: GenerationConfig,
    seed: int = 0, batch_size: int = 16,
) -> list[np.ndarray]:  # fmt: skip
    """Animations ``[T_i, 52]`` of dataset rows (audio and labels; ``blendshapes`` are ignored) decoded with
    ``generation_config``; batch ``b`` draws from a generator seeded ``seed + b``."""
    device = next(model.parameters()).device
    animations = []
    for start in range(0, len(rows), batch_size):
        chunk = [{k: v for k, v in r.items() if k != "blendshapes"} for r in rows[start : start + batch_size]]
        batch = collator(chunk)
        out = model.generate(
            **{k: batch[k].to(device) for k in ("input_values", "attention_mask", "emotion_ids", "intensity_ids",
                                                "speaker_ids")},
            generation_config=generation_config,
            seed=seed + start,
        )  # fmt: skip
        for i in range(len(chunk)):
            animations.append(out.blendshapes[i, : int(out.frame_mask[i].sum())].float().cpu().numpy())
    return animations


def measure_animations(
    predictions: Sequence[np.ndarray], targets: Sequence[np.ndarray], groups: Sequence[Any], rig=None,
    fps: float = 30.0, window: int = 30,
) -> dict[str, float]:  # fmt: skip
    """Every measure of one set of animations against the capture of the same clips (each pair cut to its shorter
    length): motion ratios, blinks, the realism test (held-out ``groups``) and, with a rig, FDD, LVE and EVE."""
    pairs = [(p[: min(len(p), len(t))], t[: min(len(p), len(t))]) for p, t in zip(predictions, targets)]
    predictions, targets = [p for p, _ in pairs], [t for _, t in pairs]
    row: dict[str, float] = dict(expressiveness(predictions, targets))
    row.update(blink_report(predictions, targets, fps))
    row.update(realism_accuracy(targets, predictions, groups, window=window))
    if rig is not None:
        row["fdd_mm2"] = float(M.fdd(predictions, targets, rig))
        row["lve_mm"] = float(M.lve(predictions, targets, rig))
        row["eve_mm"] = float(M.eve(predictions, targets, rig))
    return row


def expressiveness_table(
    models: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    collator: STACollator,
    rig=None,
    decodings: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    batch_size: int = 16,
    window: int = 30,
    reconstructions: Sequence[np.ndarray] | None = None,
) -> dict[str, dict[str, float]]:
    """Expressiveness and realism of several decodings of one or more STA models on dataset rows.

    Args:
        models: name -> STA model (e.g. ``{"sta": sta, "rl": policy}``); each is decoded with every decoding.
        rows: dataset rows (``audio``, labels, ``speaker``, ``blendshapes`` = the capture).
        collator: the STA collator of the models' speakers.
        rig: face rig for FDD, LVE and EVE (``None``: those columns are left out).
        decodings: name -> settings of ``generate`` (default :data:`DECODINGS`).
        seed: seed of the sampled decodings.
        window: frames per window of the realism test (:func:`realism_accuracy`).
        reconstructions: per row the motion prior's encode + decode of the capture (optional). Adds
            ``realism_accuracy_vs_prior`` (and its ``_se``): the realism test against those instead of the capture,
            i.e. whether the STA model's choice of tokens gives the animation away, beyond what the prior's decoder
            does to any motion.

    Returns:
        ``"<model>/<decoding>" -> measures``: ``std_ratio_<region>``, blink rate / duration and the capture's,
        ``realism_*``, and with a rig ``fdd_mm2``, ``lve_mm``, ``eve_mm``. Held-out groups of the realism test are
        the rows' speakers; with a single speaker, the clips (stated in ``realism_groups``: 1 speaker, 2 clip).
    """
    decodings = dict(DECODINGS if decodings is None else decodings)
    targets = [np.asarray(r["blendshapes"], dtype=np.float32) for r in rows]
    speakers = [str(r["speaker"]) for r in rows]
    by_speaker = len(set(speakers)) >= 2
    groups = speakers if by_speaker else [str(i) for i in range(len(rows))]
    if not by_speaker:
        logger.warning("one speaker in the evaluated rows: the realism test holds out clips, not speakers")
    fps = float(collator.fps)
    table = {}
    for model_name, model in models.items():
        for decoding, settings in decodings.items():
            predictions = generate_animations(model, collator, rows, decoding_config(settings), seed, batch_size)
            row = measure_animations(predictions, targets, groups, rig, fps, window)
            if reconstructions is not None:
                versus = realism_accuracy(reconstructions, predictions, groups, window=window)
                row["realism_accuracy_vs_prior"] = versus["realism_accuracy"]
                row["realism_se_vs_prior"] = versus["realism_se"]
            row["realism_groups"] = 1.0 if by_speaker else 2.0
            table[f"{model_name}/{decoding}"] = row
    return table


def flatten_table(table: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """:func:`expressiveness_table`'s result as flat results keys ``<model>_<decoding>_<measure>`` (e.g.
    ``sta_greedy_mouth_realism_accuracy``), the naming of :func:`esarm.evaluation.run.evaluate_pipeline`'s results."""
    return {
        f"{name.replace('/', '_')}_{key}": value for name, row in table.items() for key, value in row.items()
    }


_COLUMNS = (
    ("std_ratio_eyes", "eyes", "{:.2f}"), ("std_ratio_brows", "brows", "{:.2f}"),
    ("std_ratio_mouth", "mouth", "{:.2f}"), ("blink_rate_per_min", "blinks/min", "{:.1f}"),
    ("blink_duration_ms", "blink ms", "{:.0f}"), ("fdd_mm2", "FDD mm²", "{:+.3f}"),
    ("realism_accuracy", "realism acc", "{:.3f}"), ("realism_se", "± se", "{:.3f}"),
    ("realism_accuracy_vs_prior", "vs prior", "{:.3f}"),
    ("lve_mm", "LVE mm", "{:.3f}"), ("eve_mm", "EVE mm", "{:.3f}"),
)  # fmt: skip


def format_table(table: Mapping[str, Mapping[str, float]], capture_row: bool = True) -> str:
    """A markdown table of :func:`expressiveness_table`'s result, one row per decoding and (``capture_row``) a last
    row with the capture's blinks and the reference values (ratios 1, realism accuracy 0.5)."""
    columns = [c for c in _COLUMNS if any(c[0] in row for row in table.values())]
    lines = ["| decoding | " + " | ".join(title for _, title, _ in columns) + " |",
             "|---|" + "---:|" * len(columns)]  # fmt: skip
    for name, row in table.items():
        cells = [fmt.format(row[key]) if key in row else "" for key, _, fmt in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    first = next(iter(table.values()), None)
    if capture_row and first is not None:
        capture = {"std_ratio_eyes": 1.0, "std_ratio_brows": 1.0, "std_ratio_mouth": 1.0,
                   "blink_rate_per_min": first["capture_blink_rate_per_min"],
                   "blink_duration_ms": first["capture_blink_duration_ms"], "realism_accuracy": 0.5}  # fmt: skip
        cells = [fmt.format(capture[key]) if key in capture else "" for key, _, fmt in columns]
        lines.append("| capture | " + " | ".join(cells) + " |")
    return "\n".join(lines)
