"""Does the reward model track animation quality, and what did RL do to the animation?

Pure functions on numbers the training stages and :func:`esarm.evaluation.run.evaluate_pipeline` measure:

* :func:`ranking_source_accuracy`: held-out pairwise accuracy per automatic ranking source (epsilon, ground truth,
  misalignment, emotion mismatch, ...);
* :func:`rank_correlation_by_clip`: Spearman correlation, across the rollouts of one clip, between the reward
  model's return and a quality measure (``-LVE``, ``-EVE``), averaged over clips: the reward model is useful to RL
  only if, *for a given clip*, a higher return means a better animation;
* :func:`reward_hacking_check`: over the held-out checks of an RL run, whether the return kept rising while LVE
  got worse;
* :func:`token_change_rate` and :func:`swap_group_tokens`: what the reward model looks at. Per codebook group (face
  region), how often a motion token changes from one step to the next, and a copy of a token sequence with one
  group taken from another sequence (score both: the return change says how much that region moves the reward);
* :func:`expressiveness`: per face region, the ratio of generated to ground-truth motion (std over time): the
  paper's claim is that RL restores expressive motion that the mode-seeking supervised model rarely produces.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from ..blendshapes import FACE_REGIONS, region_indices
from .metrics import fdd

__all__ = ["expressiveness", "group_names", "motion_report", "rank_correlation_by_clip", "ranking_source_accuracy",
           "reward_hacking_check", "swap_group_tokens", "token_change_rate"]  # fmt: skip


def ranking_source_accuracy(
    sources: Sequence[str], better_returns: Sequence[float], worse_returns: Sequence[float]
) -> dict[str, float]:
    """``accuracy_<source>`` (share of pairs whose better side has the higher return; ties count 1/2) and
    ``num_pairs_<source>`` for each ranking source of held-out pairs."""
    if not len(sources) == len(better_returns) == len(worse_returns):
        raise ValueError(
            f"sources, better_returns and worse_returns must have the same length, got {len(sources)}, "
            f"{len(better_returns)} and {len(worse_returns)}"
        )
    scores: dict[str, list[float]] = defaultdict(list)
    for source, better, worse in zip(sources, better_returns, worse_returns):
        scores[source].append(1.0 if better > worse else 0.5 if better == worse else 0.0)
    metrics = {}
    for source in sorted(scores):
        metrics[f"accuracy_{source}"] = float(np.mean(scores[source]))
        metrics[f"num_pairs_{source}"] = float(len(scores[source]))
    return metrics


def rank_correlation_by_clip(
    clip_ids: Sequence[str], returns: Sequence[float], quality: Sequence[float], min_rollouts: int = 3
) -> float:
    """Mean over clips of Spearman's rho between ``returns`` and ``quality`` (higher = better, e.g. ``-LVE``)
    across the rollouts of each clip. Clips with fewer than ``min_rollouts`` finite values, or a constant return or
    quality, are skipped; ``nan`` when no clip is left."""
    if not len(clip_ids) == len(returns) == len(quality):
        raise ValueError(
            f"clip_ids, returns and quality must have the same length, got {len(clip_ids)}, {len(returns)} and "
            f"{len(quality)}"
        )
    by_clip: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for clip, value, measure in zip(clip_ids, returns, quality):
        if np.isfinite(value) and np.isfinite(measure):
            by_clip[clip].append((float(value), float(measure)))
    rhos = []
    for entries in by_clip.values():
        values, measures = np.asarray(entries).T if entries else (np.zeros(0), np.zeros(0))
        if len(entries) < min_rollouts or np.ptp(values) == 0 or np.ptp(measures) == 0:
            continue
        rhos.append(float(spearmanr(values, measures).statistic))
    return float(np.mean(rhos)) if rhos else float("nan")


def reward_hacking_check(
    steps: Sequence[int], returns: Sequence[float], lves: Sequence[float], tolerance_mm: float = 0.05
) -> dict[str, float]:
    """Reads the held-out checks of an RL run (update step, mean return, mean LVE in mm at each check).

    Returns ``hacking_spearman`` (Spearman's rho between return and LVE across checks: positive means a higher
    return came with a *worse* lip error), ``hacking_fraction`` (share of consecutive checks where the return rose
    while LVE worsened by more than ``tolerance_mm``) and ``hacking`` (1.0 when the last check has a higher return
    and an LVE more than ``tolerance_mm`` worse than the first: the policy exploited the reward model).
    """
    if not len(steps) == len(returns) == len(lves):
        raise ValueError(
            f"steps, returns and lves must have the same length, got {len(steps)}, {len(returns)} and {len(lves)}"
        )
    if len(steps) < 2:
        return {}
    order = np.argsort(np.asarray(steps))
    r, e = np.asarray(returns, dtype=float)[order], np.asarray(lves, dtype=float)[order]
    rising = [(r[k + 1] > r[k]) and (e[k + 1] > e[k] + tolerance_mm) for k in range(len(r) - 1)]
    rho = float(spearmanr(r, e).statistic) if np.ptp(r) > 0 and np.ptp(e) > 0 else float("nan")
    return {
        "hacking_spearman": rho,
        "hacking_fraction": float(np.mean(rising)),
        "hacking": float(r[-1] > r[0] and e[-1] > e[0] + tolerance_mm),
    }


def group_names(num_groups: int) -> list[str]:
    """Names of the motion prior's codebook groups: the face regions (:data:`~esarm.blendshapes.FACE_REGIONS`, in
    order) when there is one group per region, else ``group<g>``."""
    if num_groups == len(FACE_REGIONS):
        return list(FACE_REGIONS)
    return [f"group{g}" for g in range(num_groups)]


def token_change_rate(token_sequences: Sequence[np.ndarray]) -> np.ndarray:
    """Per codebook group, the share of steps whose motion token differs from the previous step's, over all
    sequences (``[T', G]`` code ids each; sequences of one step add nothing). Returns ``[G]``."""
    if not token_sequences:
        raise ValueError("token_sequences must hold at least one [T', G] array, got none")
    changes = steps = 0
    for tokens in token_sequences:
        tokens = np.asarray(tokens)
        if tokens.ndim != 2:
            raise ValueError(f"token_sequences must hold [T', G] arrays, got shape {tokens.shape}")
        changes = changes + (tokens[1:] != tokens[:-1]).sum(axis=0)
        steps += max(len(tokens) - 1, 0)
    return np.asarray(changes, dtype=float) / max(steps, 1)


def swap_group_tokens(tokens: np.ndarray, donor: np.ndarray, group: int) -> np.ndarray:
    """A copy of ``tokens`` ``[T', G]`` whose codes of ``group`` are the ``donor``'s (``[T'', G]``) over their common
    steps; the other groups, and any steps beyond the donor's length, are kept."""
    tokens, donor = np.asarray(tokens), np.asarray(donor)
    if tokens.ndim != 2 or donor.ndim != 2 or tokens.shape[1] != donor.shape[1]:
        raise ValueError(
            f"tokens and donor must be [T, G] arrays with the same G, got {tokens.shape} and {donor.shape}"
        )
    if not 0 <= group < tokens.shape[1]:
        raise ValueError(f"group must be in [0, {tokens.shape[1]}), got {group}")
    swapped = tokens.copy()
    steps = min(len(tokens), len(donor))
    swapped[:steps, group] = donor[:steps, group]
    return swapped


def region_motion(blendshapes: np.ndarray) -> dict[str, float]:
    """Per face region, the motion of one animation ``[T, 52]``: the std over time of each blendshape, summed over the
    region's blendshapes (what :func:`expressiveness` sums over clips)."""
    blendshapes = np.asarray(blendshapes)
    return {region: float(blendshapes[:, region_indices(region)].std(axis=0).sum()) for region in FACE_REGIONS}


def expressiveness(predictions: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> dict[str, Any]:
    """Per face region (:data:`~esarm.blendshapes.FACE_REGIONS`), ``std_ratio_<region>``: the motion of the
    generated animations (std over time of each blendshape, summed over the region's blendshapes and over clips)
    divided by the same for the ground truth. 1.0 = as much motion as the capture; below 1 = damped (mode seeking).

    Args:
        predictions / targets: per clip ``[T, 52]`` arrays; each pair is cut to its shorter length.
    """
    if len(predictions) != len(targets) or not predictions:
        raise ValueError(
            f"predictions and targets must be non-empty and of the same length, got {len(predictions)} and "
            f"{len(targets)}"
        )
    generated = dict.fromkeys(FACE_REGIONS, 0.0)
    reference = dict.fromkeys(FACE_REGIONS, 0.0)
    for pred, target in zip(predictions, targets):
        n = min(len(pred), len(target))
        for totals, clip in ((generated, np.asarray(pred)[:n]), (reference, np.asarray(target)[:n])):
            for region, motion in region_motion(clip).items():
                totals[region] += motion
    return {
        f"std_ratio_{region}": generated[region] / reference[region] if reference[region] > 0 else float("nan")
        for region in FACE_REGIONS
    }


def motion_report(prefix: str, predictions: Sequence[np.ndarray], targets: Sequence[np.ndarray], rig=None) -> dict:
    """``<prefix>_std_ratio_<region>`` (:func:`expressiveness`) and, with a rig, ``<prefix>_fdd_mm2`` (upper-face
    dynamics deviation, :func:`esarm.evaluation.metrics.fdd`) of one model's animations of the evaluation clips."""
    results = {f"{prefix}_{key}": value for key, value in expressiveness(predictions, targets).items()}
    if rig is not None:
        pairs = [(p[: min(len(p), len(t))], t[: min(len(p), len(t))]) for p, t in zip(predictions, targets)]
        results[f"{prefix}_fdd_mm2"] = float(fdd([p for p, _ in pairs], [t for _, t in pairs], rig))
    return results
