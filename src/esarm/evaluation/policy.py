"""The RL stage's held-out measures: a policy's greedy (or sampled) animations of held-out clips, scored by the
reward model and measured against the ground truth (:func:`evaluate_policy`, per clip with ``per_clip=True``), the
score the guard against reward hacking ranks its checks by (:func:`quality_score`, the mean of
:func:`clip_quality`), and the paired test that decides whether the best check replaces the initial policy
(:func:`paired_improvement`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..blendshapes import FACE_REGIONS
from .rl_diagnostics import region_motion
from .rollouts import generate_clips, measure_clip, sharded_map
from .significance import clips_needed, paired_bootstrap

__all__ = ["MOTION_FLOOR", "QUALITY_METRICS", "animation_measures", "clip_quality", "evaluate_policy",
           "paired_improvement", "policy_improvement", "quality_score"]  # fmt: skip

QUALITY_METRICS: tuple[str, ...] = ("lve_eve", "expressive")
# Added to a region's motion (std over time summed over its blendshapes) before the log ratio of one clip, so that a
# region the animation holds still gives a large but finite distance: log(0.001 / 0.5) = -6.2 against a captured
# eye motion of 0.5. Captured regions move far more than this on every clip of the synthetic corpora.
MOTION_FLOOR = 1e-3


@torch.no_grad()
def evaluate_policy(
    policy: nn.Module,
    reward_model: nn.Module,
    dataset,
    collator,
    batch_size: int = 4,
    rig=None,
    max_clips: int | None = None,
    do_sample: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
    greedy_groups: Sequence[int | str] | None = None,
    per_clip: bool = False,
) -> dict[str, float] | tuple[dict[str, float], dict[str, np.ndarray]]:
    """Greedy (or, with ``do_sample``, seeded sampled) animations of held-out clips: mean reward-model return and,
    with ground truth, blendshape MAE and (with a rig) LVE / EVE in mm. Clips are sharded over processes and
    gathered (:func:`~esarm.evaluation.rollouts.sharded_map`: the same dict on every process).

    The ground-truth blendshapes are read here only, to measure; the collator never passes them to the policy.
    ``greedy_groups`` (with ``do_sample``) decodes those codebook groups by argmax, as region-wise RL's rollouts do.

    Returns:
        ``{"reward": ..., "blendshape_mae": ..., "expressive_distance": ..., "std_ratio_<region>": ...,
        "lve_mm": ..., "eve_mm": ...}`` (all but the reward need ground truth, LVE / EVE a rig);
        ``std_ratio_<region>`` is the generated / captured motion of each face region (std over time, summed over
        the region's blendshapes and over clips; 1 = as much as the capture); ``expressive_distance`` the mean over
        clips of :func:`animation_measures`' per-clip distance from the capture's motion. With ``per_clip``, a
        tuple of that dict and ``{key: [num_clips] array}`` of the per-clip values (``reward``, ``blendshape_mae``,
        ``expressive_distance``, ``lve_mm``, ``eve_mm``), in dataset order: what the guard's paired test reads.
    """
    count = len(dataset) if max_clips is None else min(max_clips, len(dataset))
    policy.eval()
    reward_model.eval()

    def measure(shard: list[int]) -> list[dict[str, float]]:
        rows = [dataset[i] for i in shard]
        clips = generate_clips(
            policy, collator, rows, batch_size, do_sample=do_sample, temperature=temperature, seed=seed,
            greedy_groups=greedy_groups, reward_model=reward_model, rig=rig,
        )  # fmt: skip
        return [_clip_measures(clip, row) for clip, row in zip(clips, rows)]

    clips = sharded_map(measure, range(count))
    if not clips:
        return ({}, {}) if per_clip else {}
    means = {key: float(np.mean([clip[key] for clip in clips])) for key in clips[0]}
    results = {key: value for key, value in means.items() if not key.startswith("_")}
    for region in FACE_REGIONS if "blendshape_mae" in results else ():
        # pooled over clips, as esarm.evaluation.rl_diagnostics.expressiveness: sum of generated / sum of captured
        reference = means[f"_reference_motion_{region}"]
        results[f"std_ratio_{region}"] = means[f"_motion_{region}"] / reference if reference > 0 else float("nan")
    if not per_clip:
        return results
    return results, {key: np.array([clip[key] for clip in clips]) for key in clips[0] if not key.startswith("_")}


def animation_measures(predicted: np.ndarray, target: Any, rig=None) -> dict[str, float]:
    """One animation ``[T, 52]`` against its ground truth (both cut to the shorter): ``blendshape_mae``, with a rig
    ``lve_mm`` / ``eve_mm``, and :func:`_motion_measures`' ``expressive_distance`` and per-region motions."""
    measured = measure_clip(np.asarray(predicted, dtype=np.float32), target, rig)
    measures = {"blendshape_mae": measured["mae"]}
    if "lve" in measured:
        measures["lve_mm"], measures["eve_mm"] = measured["lve"], measured["eve"]
    return {**measures, **_motion_measures(predicted, target)}


def _motion_measures(predicted: np.ndarray, target: Any) -> dict[str, float]:
    """``expressive_distance`` = ``sum_r |log((m_r + f) / (c_r + f))|`` over the face regions (``m_r`` / ``c_r``:
    the generated / captured motion of region ``r``, std over time summed over its blendshapes, both animations cut
    to the shorter; ``f`` = :data:`MOTION_FLOOR`; 0 = every region moves as much as the capture) and the per-region
    motions ``_motion_<r>`` / ``_reference_motion_<r>`` (which :func:`evaluate_policy` pools over clips)."""
    target = np.asarray(target, dtype=np.float32)
    length = min(len(predicted), len(target))
    motion, reference = region_motion(np.asarray(predicted)[:length]), region_motion(target[:length])
    distance = sum(abs(math.log((motion[r] + MOTION_FLOOR) / (reference[r] + MOTION_FLOOR))) for r in FACE_REGIONS)
    return {
        "expressive_distance": float(distance),
        **{f"_motion_{r}": m for r, m in motion.items()},
        **{f"_reference_motion_{r}": m for r, m in reference.items()},
    }


def _clip_measures(clip: dict[str, Any], row: dict[str, Any]) -> dict[str, float]:
    """One clip's reward and, with ground truth, its MAE, LVE / EVE (as :func:`generate_clips` measured them) and
    :func:`_motion_measures`."""
    measures = {"reward": clip["reward"]}
    if "mae" in clip:
        measures["blendshape_mae"] = clip["mae"]
        if "lve" in clip:
            measures["lve_mm"], measures["eve_mm"] = clip["lve"], clip["eve"]
        measures.update(_motion_measures(clip["blendshapes"][: clip["num_frames"]], row["blendshapes"]))
    return measures


def quality_score(
    values: dict[str, float], initial: dict[str, float], metric: str = "lve_eve", tolerance_mm: float = 0.05
) -> float:
    """The held-out quality guard's score of one check (lower is better).

    Args:
        values: the check's greedy held-out metrics (:func:`evaluate_policy`).
        initial: the metrics of the first check (the policy before RL).
        metric: ``"lve_eve"``: ``lve_mm + eve_mm`` (``blendshape_mae`` without a rig). ``"expressive"``: the mean
            per-clip distance of the per-region motion from the capture's (``expressive_distance``,
            :func:`animation_measures`), when ``lve_mm`` and ``eve_mm`` are each at most ``tolerance_mm`` above
            ``initial``'s, else ``inf`` (a policy that moves more like the capture without losing lip or upper-face
            accuracy). Either is the mean over clips of :func:`clip_quality` (within the tolerance).
        tolerance_mm: the allowed loss of LVE and EVE under ``"expressive"``.
    """
    if metric not in QUALITY_METRICS:
        raise ValueError(f"metric must be one of {QUALITY_METRICS}, got {metric!r}")
    if metric == "lve_eve":
        return values["lve_mm"] + values["eve_mm"] if "lve_mm" in values else values["blendshape_mae"]
    if "lve_mm" not in values:
        raise ValueError(f"metric 'expressive' needs lve_mm and eve_mm (a face rig), got {sorted(values)}")
    if any(values[key] > initial[key] + tolerance_mm for key in ("lve_mm", "eve_mm")):
        return math.inf
    return float(values["expressive_distance"])


def clip_quality(per_clip: Mapping[str, Sequence[float]], metric: str = "lve_eve") -> np.ndarray:
    """The per-clip values ``[num_clips]`` (lower is better) whose mean :func:`quality_score` ranks checks by:
    ``lve_mm + eve_mm`` (``blendshape_mae`` without a rig) for ``"lve_eve"``, ``expressive_distance`` for
    ``"expressive"`` (``per_clip``: the second value of :func:`evaluate_policy` with ``per_clip=True``)."""
    if metric not in QUALITY_METRICS:
        raise ValueError(f"metric must be one of {QUALITY_METRICS}, got {metric!r}")
    if metric == "expressive":
        return np.asarray(per_clip["expressive_distance"], dtype=np.float64)
    if "lve_mm" in per_clip:
        return np.asarray(per_clip["lve_mm"], dtype=np.float64) + np.asarray(per_clip["eve_mm"], dtype=np.float64)
    return np.asarray(per_clip["blendshape_mae"], dtype=np.float64)


def paired_improvement(
    initial: Sequence[float], candidate: Sequence[float], confidence: float = 0.95, num_comparisons: int = 1,
    num_resamples: int = 10000, seed: int = 0,
) -> dict[str, float]:  # fmt: skip
    """Is ``candidate`` (per-clip values, lower is better) better than ``initial`` on the same clips, beyond noise?

    The paired bootstrap over clips (:func:`~esarm.evaluation.significance.paired_bootstrap`) of the per-clip
    improvement ``initial - candidate``, at the level ``1 - (1 - confidence) / num_comparisons``: when the candidate
    is the best of ``num_comparisons`` checks, Bonferroni's correction keeps the chance that noise alone passes at
    most ``1 - confidence`` (a best-of-several selection otherwise passes far more often).

    Returns:
        ``improvement`` (mean per clip, > 0 = better), ``ci_low`` / ``ci_high`` (its interval), ``p_value``
        (two-sided, of no difference), ``confidence_level`` (the corrected level), ``per_clip_std`` and
        ``standard_error`` of the improvement, ``clips`` (how many), ``clips_needed``
        (:func:`~esarm.evaluation.significance.clips_needed` to detect an improvement of the observed size at the
        corrected level, power 0.8; ``nan`` when the improvement or its spread is 0) and ``accepted``
        (1 when the interval lies above 0, else 0).
    """
    if isinstance(num_comparisons, bool) or not isinstance(num_comparisons, int) or num_comparisons < 1:
        raise ValueError(f"num_comparisons must be a positive integer, got {num_comparisons!r}")
    initial, candidate = np.asarray(initial, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    level = 1.0 - (1.0 - confidence) / num_comparisons
    result = paired_bootstrap(initial, candidate, num_resamples=num_resamples, seed=seed, confidence=level)
    spread = float((initial - candidate).std(ddof=1))
    improvement = result.mean_difference
    needed = float("nan")
    if improvement != 0 and spread > 0:
        needed = float(clips_needed(improvement, spread, alpha=1.0 - level))
    low, high = result.confidence_interval
    return {
        "improvement": improvement,
        "ci_low": low,
        "ci_high": high,
        "p_value": result.p_value,
        "confidence_level": level,
        "per_clip_std": spread,
        "standard_error": spread / math.sqrt(len(initial)),
        "clips": float(len(initial)),
        "clips_needed": needed,
        "accepted": float(low > 0),
    }


def policy_improvement(
    before: Sequence[np.ndarray], after: Sequence[np.ndarray], targets: Sequence[np.ndarray], rig=None,
    confidence: float = 0.95, seed: int = 0,
) -> dict[str, float]:  # fmt: skip
    """How much better the animations ``after`` are than ``before`` (two policies, the same clips, their ground
    truth ``targets``) on each metric the RL guard can act on: per metric of :data:`QUALITY_METRICS`,
    ``<metric>_improvement`` (mean per-clip improvement of :func:`clip_quality`, > 0 = better) and its paired
    bootstrap ``<metric>_ci_low`` / ``_ci_high`` / ``_p_value`` (:func:`paired_improvement`). On the test speakers,
    beside the guard's ``guard_kept_improvement`` on the validation clips, it gives the validation -> test gap of
    the guard's choice."""
    if not len(before) == len(after) == len(targets) or len(targets) < 2:
        raise ValueError(f"before, after and targets must hold the same number (>= 2) of clips, got {len(before)}, "
                         f"{len(after)} and {len(targets)}")  # fmt: skip
    per_clip = []
    for animations in (before, after):
        measures = [animation_measures(a, t, rig) for a, t in zip(animations, targets)]
        per_clip.append({key: np.array([m[key] for m in measures]) for key in measures[0]})
    results = {}
    for metric in QUALITY_METRICS:
        test = paired_improvement(clip_quality(per_clip[0], metric), clip_quality(per_clip[1], metric), confidence,
                                  seed=seed)  # fmt: skip
        results.update({f"{metric}_{key}": test[key] for key in ("improvement", "ci_low", "ci_high", "p_value")})
    return results
