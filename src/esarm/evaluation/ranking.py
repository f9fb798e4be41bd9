"""How well a reward model ranks held-out demonstrations (:func:`evaluate_ranking`, the reward stage's
evaluation).

:func:`evaluate_ranking` scores every rollout of a held-out demonstration split once and reports the pairwise
accuracy over all different-epsilon pairs of a clip, overall and by epsilon gap, the mean return per epsilon, and,
when ground truth is available, where the ground-truth animations (motion-prior tokens of the captured blendshapes)
rank against the rollouts of each epsilon (``gt_beats_eps_0.02`` ...); it also reports the accuracy of every
ranking source on held-out pairs and the rank correlation of the return with -LVE / -EVE
(:mod:`esarm.evaluation.rl_diagnostics`).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..data.demonstrations import (
    GENERATED_ROW_SOURCES,
    RANKING_SOURCES,
    RolloutCollator,
    build_source_pairs,
    demo_columns,
    tokens_of,
)
from .rl_diagnostics import (
    group_names,
    rank_correlation_by_clip,
    ranking_source_accuracy,
    swap_group_tokens,
    token_change_rate,
)
from .rollouts import sharded_map

__all__ = ["GROUND_TRUTH_EPSILON", "MODEL_INPUT_KEYS", "evaluate_ranking", "ranking_metrics", "score_rollouts"]

GROUND_TRUTH_EPSILON = -1.0  # marks ground-truth rows in evaluation (better than any rollout)
MODEL_INPUT_KEYS: tuple[str, ...] = (
    "input_values",
    "attention_mask",
    "emotion_ids",
    "intensity_ids",
    "speaker_ids",
    "motion_tokens",
    "motion_mask",
)


@torch.no_grad()
def score_rollouts(
    model,
    rows: Sequence[dict[str, Any]],
    collator: RolloutCollator,
    batch_size: int = 16,
    audio_shifts: Sequence[int] | None = None,
) -> list:
    """Reward-model returns ``R(tau)`` of whole rollouts (list of floats, in row order); ``audio_shifts`` (tokens
    per row) rolls each row's audio against its motion."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    returns: list[float] = []
    for start in range(0, len(rows), batch_size):
        shifts = None if audio_shifts is None else audio_shifts[start : start + batch_size]
        batch = collator.encode(rows[start : start + batch_size], audio_shifts=shifts)
        outputs = model(**{key: batch[key].to(device) for key in MODEL_INPUT_KEYS})
        returns.extend(outputs.returns.float().cpu().tolist())
    model.train(was_training)
    return returns


def ranking_metrics(clip_ids: Sequence[str], epsilons: Sequence[float], returns: Sequence[float]) -> dict[str, float]:
    """Pairwise statistics of scored rollouts (and ground-truth rows with ``epsilon = -1``) of held-out clips.

    Returns ``accuracy`` (ties count 1/2) and ``loss`` (eq. 1) over all different-epsilon rollout pairs of each clip,
    ``accuracy_gap_<g>`` by epsilon gap ``g``, ``num_pairs``, ``return_eps_<e>`` (mean return per epsilon) and, for
    ground-truth rows, ``return_gt`` and ``gt_beats_eps_<e>`` (share of a clip's rollouts at epsilon ``e`` scored
    below its ground truth: 1.0 means the reward model ranks the captured animation above every such rollout).
    """
    by_clip: dict[str, list[tuple[float, float]]] = defaultdict(list)
    returns_by_eps: dict[float, list[float]] = defaultdict(list)
    for clip, eps, value in zip(clip_ids, epsilons, returns):
        by_clip[clip].append((float(eps), float(value)))
        returns_by_eps[round(float(eps), 4)].append(float(value))
    correct: dict[str, list[float]] = defaultdict(list)
    losses: list[float] = []
    gt_wins: dict[float, list[float]] = defaultdict(list)
    for entries in by_clip.values():
        for (eps_a, ret_a), (eps_b, ret_b) in itertools.combinations(entries, 2):
            if eps_a == eps_b:
                continue
            (better_eps, better_ret), (worse_eps, worse_ret) = sorted([(eps_a, ret_a), (eps_b, ret_b)])
            score = 1.0 if better_ret > worse_ret else 0.5 if better_ret == worse_ret else 0.0
            if better_eps == GROUND_TRUTH_EPSILON:
                gt_wins[round(worse_eps, 4)].append(score)
                continue
            correct["all"].append(score)
            correct[f"{worse_eps - better_eps:.2f}"].append(score)
            losses.append(_softplus(worse_ret - better_ret))
    metrics: dict[str, float] = {"num_pairs": float(len(correct["all"]))}
    if correct["all"]:
        metrics["accuracy"] = float(np.mean(correct["all"]))
        metrics["loss"] = float(np.mean(losses))
    del correct["all"]
    for gap in sorted(correct, key=float):
        metrics[f"accuracy_gap_{gap}"] = float(np.mean(correct[gap]))
    for eps in sorted(returns_by_eps):
        name = "gt" if eps == GROUND_TRUTH_EPSILON else f"eps_{eps:g}"
        metrics[f"return_{name}"] = float(np.mean(returns_by_eps[eps]))
    for eps in sorted(gt_wins):
        metrics[f"gt_beats_eps_{eps:g}"] = float(np.mean(gt_wins[eps]))
    return metrics


def _softplus(x: float) -> float:
    return float(max(x, 0.0) + math.log1p(math.exp(-abs(x))))


def evaluate_ranking(
    model, demos, collator: RolloutCollator, batch_size: int = 16, shifts: Sequence[int] = (2, 4, 8)
) -> dict[str, float]:
    """Scores every row of a held-out demonstration split once (rollouts and ground-truth rows; misaligned copies
    for the misalignment pairs), sharded over processes and gathered. Returns :func:`ranking_metrics`, the
    per-region diagnostics of :func:`_region_diagnostics`, plus
    ``accuracy_<source>`` for every ranking source the split supports (all its pairs, ``shifts`` for misalignment)
    and ``spearman_return_lve`` / ``spearman_return_eve``: Spearman's rho between the return and ``-LVE`` /
    ``-EVE`` across the generated rollouts of each clip, averaged over clips (with a rig in stage 3). The same dict
    on every process."""
    columns = demo_columns(demos)
    # every source: one without rows in the split (no ground truth, no checkpoint rollouts, no rig) has no pairs
    pairs = build_source_pairs(**columns, sources=RANKING_SOURCES, shifts=shifts)
    items = sorted({(i, 0) for i in range(len(demos))} | {(p.i, p.shift_i) for p in pairs}
                   | {(p.j, p.shift_j) for p in pairs})  # fmt: skip
    values = sharded_map(
        lambda shard: score_rollouts(model, [demos[i] for i, _ in shard], collator, batch_size, [k for _, k in shard]),
        items,
    )
    returns = dict(zip(items, values))
    epsilons = [GROUND_TRUTH_EPSILON if s == "ground_truth" else e
                for s, e in zip(columns["row_sources"], columns["epsilons"])]  # fmt: skip
    # the D-REX table (ranking_metrics) reads the epsilon rollouts and the ground truth
    kept = [i for i, s in enumerate(columns["row_sources"]) if s in ("epsilon", "ground_truth")]
    metrics = ranking_metrics(
        [columns["clip_ids"][i] for i in kept], [epsilons[i] for i in kept], [returns[(i, 0)] for i in kept]
    )
    better = [returns[(p.i, p.shift_i)] if p.label else returns[(p.j, p.shift_j)] for p in pairs]
    worse = [returns[(p.j, p.shift_j)] if p.label else returns[(p.i, p.shift_i)] for p in pairs]
    metrics.update(ranking_source_accuracy([p.source for p in pairs], better, worse))
    metrics.update(_region_diagnostics(model, demos, columns, collator, batch_size, returns))
    generated = [i for i, s in enumerate(columns["row_sources"]) if s in GENERATED_ROW_SOURCES]
    if "lve" in demos.column_names:
        for name in ("lve", "eve"):
            values = demos[name]
            metrics[f"spearman_return_{name}"] = rank_correlation_by_clip(
                [columns["clip_ids"][i] for i in generated],
                [returns[(i, 0)] for i in generated],
                [-float(values[i]) for i in generated],
            )
    return metrics


def _region_diagnostics(model, demos, columns, collator, batch_size, returns) -> dict[str, float]:
    """What the reward model looks at, per codebook group (face region ``<r>``), on clips with a ground-truth row
    and epsilon rollouts:

    * ``token_change_rate_<r>_gt`` / ``_policy``: share of steps whose code changes, for the ground truth and for
      the clip's smallest-epsilon rollouts (the near-greedy policy);
    * ``gt_swap_gain_<r>``: mean return change when the ground truth's codes of region ``r`` are replaced by those
      of the clip's first smallest-epsilon rollout. Positive: the reward model prefers the policy's motion of that
      region to the captured one.
    """
    clip_ids, row_sources, epsilons = columns["clip_ids"], columns["row_sources"], columns["epsilons"]
    truth = {clip_ids[i]: i for i, s in enumerate(row_sources) if s == "ground_truth"}
    best: dict[str, list[int]] = defaultdict(list)
    smallest: dict[str, float] = {}
    for i, source in enumerate(row_sources):
        if source == "epsilon" and clip_ids[i] in truth:
            clip = clip_ids[i]
            if epsilons[i] < smallest.get(clip, math.inf):
                smallest[clip], best[clip] = epsilons[i], []
            if epsilons[i] == smallest[clip]:
                best[clip].append(i)
    if not best:
        return {}
    clips = sorted(best)
    gt_tokens = [np.asarray(tokens_of(demos[truth[c]])) for c in clips]
    policy_tokens = {i: np.asarray(tokens_of(demos[i])) for c in clips for i in best[c]}
    names = group_names(gt_tokens[0].shape[1])
    metrics: dict[str, float] = {}
    for name, gt_rate, policy_rate in zip(
        names, token_change_rate(gt_tokens), token_change_rate(list(policy_tokens.values()))
    ):
        metrics[f"token_change_rate_{name}_gt"] = float(gt_rate)
        metrics[f"token_change_rate_{name}_policy"] = float(policy_rate)
    items = [(k, g) for k in range(len(clips)) for g in range(len(names))]

    def score_swapped(shard: list[tuple[int, int]]) -> list[float]:
        rows = [
            {**demos[truth[clips[k]]], "motion_tokens": swap_group_tokens(gt_tokens[k], policy_tokens[best[clips[k]][0]], g)}
            for k, g in shard
        ]  # fmt: skip
        return score_rollouts(model, rows, collator, batch_size)

    gains: dict[int, list[float]] = defaultdict(list)
    for (k, g), value in zip(items, sharded_map(score_swapped, items)):
        gains[g].append(value - returns[(truth[clips[k]], 0)])
    for g, name in enumerate(names):
        metrics[f"gt_swap_gain_{name}"] = float(np.mean(gains[g]))
    return metrics
