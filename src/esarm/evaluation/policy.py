"""The RL stage's held-out measures: a policy's greedy (or sampled) animations of held-out clips, scored by the
reward model and measured against the ground truth (:func:`evaluate_policy`), and the score the guard against
reward hacking keeps the best policy by (:func:`quality_score`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ..blendshapes import FACE_REGIONS
from .rl_diagnostics import region_motion
from .rollouts import generate_clips, sharded_map

__all__ = ["QUALITY_METRICS", "evaluate_policy", "quality_score"]

QUALITY_METRICS: tuple[str, ...] = ("lve_eve", "expressive")


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
) -> dict[str, float]:
    """Greedy (or, with ``do_sample``, seeded sampled) animations of held-out clips: mean reward-model return and,
    with ground truth, blendshape MAE and (with a rig) LVE / EVE in mm. Clips are sharded over processes and
    gathered (:func:`~esarm.evaluation.rollouts.sharded_map`: the same dict on every process).

    The ground-truth blendshapes are read here only, to measure; the collator never passes them to the policy.

    Returns:
        ``{"reward": ..., "blendshape_mae": ..., "std_ratio_<region>": ..., "lve_mm": ..., "eve_mm": ...}`` (all but
        the reward need ground truth, LVE / EVE a rig); ``std_ratio_<region>`` is the generated / captured motion
        of each face region (std over time, summed over the region's blendshapes and over clips; 1 = as much as the
        capture).
    """
    count = len(dataset) if max_clips is None else min(max_clips, len(dataset))
    policy.eval()
    reward_model.eval()

    def measure(shard: list[int]) -> list[dict[str, float]]:
        rows = [dataset[i] for i in shard]
        clips = generate_clips(
            policy, collator, rows, batch_size, do_sample=do_sample, temperature=temperature, seed=seed,
            reward_model=reward_model, rig=rig,
        )  # fmt: skip
        return [_clip_measures(clip, row) for clip, row in zip(clips, rows)]

    per_clip = sharded_map(measure, range(count))
    if not per_clip:
        return {}
    means = {key: float(np.mean([clip[key] for clip in per_clip])) for key in per_clip[0]}
    results = {key: value for key, value in means.items() if not key.startswith("_")}
    for region in FACE_REGIONS if "blendshape_mae" in results else ():
        # pooled over clips, as esarm.evaluation.rl_diagnostics.expressiveness: sum of generated / sum of captured
        reference = means[f"_reference_motion_{region}"]
        results[f"std_ratio_{region}"] = means[f"_motion_{region}"] / reference if reference > 0 else float("nan")
    return results


def _clip_measures(clip: dict[str, Any], row: dict[str, Any]) -> dict[str, float]:
    """One clip's reward and, with ground truth, MAE, LVE / EVE and the per-region motion of both animations
    (``_``-prefixed: summed over clips by :func:`evaluate_policy`)."""
    measures = {"reward": clip["reward"]}
    if "mae" in clip:
        length = clip["num_frames"]
        predicted, target = clip["blendshapes"][:length], np.asarray(row["blendshapes"], dtype=np.float32)[:length]
        measures["blendshape_mae"] = clip["mae"]
        measures.update({f"_motion_{r}": m for r, m in region_motion(predicted).items()})
        measures.update({f"_reference_motion_{r}": m for r, m in region_motion(target).items()})
        if "lve" in clip:
            measures["lve_mm"], measures["eve_mm"] = clip["lve"], clip["eve"]
    return measures


def quality_score(
    values: dict[str, float], initial: dict[str, float], metric: str = "lve_eve", tolerance_mm: float = 0.05
) -> float:
    """The held-out quality guard's score of one check (lower is better).

    Args:
        values: the check's greedy held-out metrics (:func:`evaluate_policy`).
        initial: the metrics of the first check (the policy before RL).
        metric: ``"lve_eve"``: ``lve_mm + eve_mm`` (``blendshape_mae`` without a rig). ``"expressive"``: the
            distance of the per-region motion ratios from the capture's, ``sum_r |log std_ratio_r|``, when
            ``lve_mm`` and ``eve_mm`` are each at most ``tolerance_mm`` above ``initial``'s, else ``inf`` (a policy
            that moves more like the capture without losing lip or upper-face accuracy).
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
    return float(sum(abs(math.log(values[f"std_ratio_{region}"])) for region in FACE_REGIONS))
