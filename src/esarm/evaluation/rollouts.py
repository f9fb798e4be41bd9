"""Animations of dataset clips and their measures: the one generate-trim-measure path and the one way to spread
clips over processes.

- :func:`generate_clips`: STA rollouts (greedy, epsilon-greedy or sampled) of dataset rows, each trimmed to its
  own length, measured against the row's ground truth (:func:`measure_clip`: MAE, LVE / EVE with a rig) and, with a
  reward model, scored.
- :func:`sharded_map`: split items over the accelerate processes, apply a function to each shard, gather (the same
  list, in item order, on every process).
- :func:`evaluate_motion_prior`: motion-prior reconstructions of a split.

Used by the evaluation drivers (:mod:`esarm.evaluation.run`), the reward model's and the RL policy's measures
(:mod:`esarm.evaluation.ranking`, :mod:`esarm.evaluation.policy`) and the training stages (demonstrations).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from tqdm.auto import tqdm
from transformers import LogitsProcessorList

from ..data.collators import pad_blendshapes
from ..labels import UNKNOWN_SPEAKER_ID
from .metrics import eve, lve

# noise levels of the epsilon-greedy policy in the paper's Table II (demonstrations and their evaluation)
DEFAULT_EPSILONS = (0.02, 0.25, 0.5, 0.75, 1.0)
# what a policy sees of a clip: its audio and its condition labels
CONDITION_KEYS: tuple[str, ...] = ("input_values", "attention_mask", "emotion_ids", "intensity_ids", "speaker_ids")


def sharded_map(function: Callable[[list[Any]], Sequence[Any]], items: Sequence[Any]) -> list[Any]:
    """``function(shard)`` on this process's contiguous share of ``items`` (accelerate's
    ``split_between_processes``), gathered: every process returns the results of all items, in item order.

    ``function`` takes a list of items and returns one result per item; with one process it runs on all items."""
    state = PartialState()
    with state.split_between_processes(list(items)) as shard:
        results = list(function(list(shard))) if len(shard) else []
        if len(results) != len(shard):
            raise ValueError(f"function must return one result per item, got {len(results)} for {len(shard)}")
    if state.num_processes > 1:
        results = gather_object(results)
    return results


def measure_clip(predicted: np.ndarray, target: Any, rig=None) -> dict[str, float]:
    """Blendshape MAE and, with a ``rig``, LVE / EVE (mm) of an animation ``[T, 52]`` against its ground truth,
    both trimmed to the shorter one (a capture may hold a frame more or less than ``round(seconds * fps)``)."""
    target = np.asarray(target, dtype=np.float32)
    length = min(len(predicted), len(target))
    predicted, target = predicted[:length], target[:length]
    measures = {"num_frames": length, "mae": float(np.abs(predicted - target).mean())}
    if rig is not None:
        measures["lve"] = float(lve(predicted, target, rig))
        measures["eve"] = float(eve(predicted, target, rig))
    return measures


def mean_measures(clips: Sequence[dict[str, Any]], keys: Sequence[str] = ("mae", "lve", "eve")) -> dict[str, float]:
    """The mean of each of ``keys`` over the clips that hold it (:func:`measure_clip`'s per-clip values)."""
    return {key: float(np.mean([c[key] for c in clips])) for key in keys if clips and key in clips[0]}


def reward_conditions(reward_model, conditions: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The conditions for the reward model: speakers it does not know (ids above its ``num_speakers``) become the
    unknown speaker 0, so a reward model trained with fewer known speakers than the policy still scores them."""
    speaker_ids = conditions.get("speaker_ids")
    if speaker_ids is None:
        return conditions
    unknown = speaker_ids > reward_model.config.num_speakers
    return {**conditions, "speaker_ids": speaker_ids.masked_fill(unknown, UNKNOWN_SPEAKER_ID)}


@torch.no_grad()
def generate_clips(
    model,
    collator,
    rows: Sequence[dict[str, Any]],
    batch_size: int = 16,
    *,
    epsilon: float = 0.0,
    seed: int = 0,
    do_sample: bool = False,
    temperature: float = 1.0,
    greedy_groups: Sequence[int | str] | None = None,
    logits_processor: Callable[[int], LogitsProcessorList | None] | None = None,
    reward_model=None,
    rig=None,
    desc: str | None = None,
) -> list[dict[str, Any]]:
    """Generate one animation per row, trim it to the clip's own length and measure it: the one path from dataset
    rows to measured animations.

    Args:
        model: an ``ESARMSTAForGeneration`` (or a policy with its ``generate``).
        collator: rows -> model inputs (``STACollator`` or the RL stage's ``PolicyInputCollator``); the rows'
            ``blendshapes`` are removed before it sees them.
        rows: clips in the package's schema; rows with ``blendshapes`` are measured against them.
        batch_size: clips generated together; batch ``k`` (rows ``start = k * batch_size`` on) is generated with
            its own generator seeded ``seed + start``.
        epsilon / do_sample / temperature: the rollout policy (0 / False: greedy).
        greedy_groups: codebook groups decoded by argmax whatever the others do (``generate``'s option, e.g.
            ``["mouth"]``: greedy lips, sampled eyes and brows).
        logits_processor: ``start -> LogitsProcessorList`` (e.g. exploration noise of its own, fresh per batch).
        reward_model: also score each animation (``reward``: the return ``R(tau)``).
        rig: face rig for LVE / EVE.
        desc: show a progress bar over the batches with this title (``None``: no bar).
    Returns:
        per row ``motion_tokens [T', G]`` and ``blendshapes [T, 52]`` (cut to the clip's own length), ``reward``
        (with a reward model) and, with ground truth, :func:`measure_clip`'s ``num_frames``, ``mae``, ``lve``,
        ``eve``.
    """
    device = next(model.parameters()).device
    clips = []
    for start in tqdm(range(0, len(rows), batch_size), desc=desc, disable=desc is None, leave=False):
        chunk = rows[start : start + batch_size]
        batch = collator([{k: v for k, v in r.items() if k != "blendshapes"} for r in chunk])
        conditions = {key: batch[key].to(device) for key in CONDITION_KEYS}
        generator = torch.Generator(device="cpu").manual_seed(seed + start)
        out = model.generate(
            **conditions, epsilon=epsilon, do_sample=do_sample, temperature=temperature, generator=generator,
            greedy_groups=greedy_groups, logits_processor=logits_processor(start) if logits_processor is not None else None,
        )  # fmt: skip
        returns = None
        if reward_model is not None:
            scored = reward_model(
                **reward_conditions(reward_model, conditions), motion_tokens=out.motion_tokens,
                motion_mask=out.token_mask,
            )  # fmt: skip
            returns = scored.returns.float().cpu().tolist()
        for i, row in enumerate(chunk):
            n_tokens, n_frames = int(out.token_mask[i].sum()), int(out.frame_mask[i].sum())
            clip = {
                "motion_tokens": out.motion_tokens[i, :n_tokens].cpu().numpy().astype(np.int64),
                "blendshapes": out.blendshapes[i, :n_frames].float().cpu().numpy(),
            }
            if returns is not None:
                clip["reward"] = float(returns[i])
            if row.get("blendshapes") is not None:
                clip.update(measure_clip(clip["blendshapes"], row["blendshapes"], rig))
            clips.append(clip)
    return clips


@torch.no_grad()
def reconstruct(model, sequences: list[np.ndarray], batch_size: int = 16) -> tuple[list[np.ndarray], list]:
    """Encode + decode ground-truth sequences ``[T_i, 52]``; returns reconstructions and token arrays."""
    model.eval()
    device = next(model.parameters()).device
    reconstructions, tokens = [], []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        blendshapes, mask = pad_blendshapes(chunk)
        outputs = model(blendshapes=blendshapes.to(device), attention_mask=mask.to(device))
        rec = outputs.reconstruction.float().cpu().numpy()
        ids = outputs.motion_tokens.cpu().numpy()
        f = model.frames_per_token
        for i, seq in enumerate(chunk):
            reconstructions.append(rec[i, : len(seq)])
            tokens.append(ids[i, : -(-len(seq) // f)])
    return reconstructions, tokens


def evaluate_motion_prior(model, dataset, rig=None, batch_size: int = 16) -> dict[str, float]:
    """Reconstruction metrics of ``model`` on ``dataset``: ``reconstruction_mae`` (blendshape units),
    ``codebook_usage`` (fraction of the K codes used in each group, averaged over groups, over the whole split),
    and with a ``rig`` ``reconstruction_lve`` / ``reconstruction_eve`` (mm). Clips are sharded over processes
    and the per-clip numbers gathered, so every process returns the same dict."""
    def measure(shard: list[int]) -> list[dict[str, Any]]:
        sequences = [np.asarray(dataset[i]["blendshapes"], dtype=np.float32) for i in shard]
        recs, tokens = reconstruct(model, sequences, batch_size)
        rows = []
        for seq, rec, ids in zip(sequences, recs, tokens):
            row = {"abs_sum": float(np.abs(rec - seq).sum()), "count": seq.size, "tokens": ids}
            if rig is not None:
                row.update(lve=float(lve(rec, seq, rig)), eve=float(eve(rec, seq, rig)))
            rows.append(row)
        return rows

    rows = sharded_map(measure, range(len(dataset)))
    metrics: dict[str, float] = {
        "reconstruction_mae": sum(r["abs_sum"] for r in rows) / max(1, sum(r["count"] for r in rows)),
        "num_clips": len(rows),
    }
    if rows:
        all_tokens = np.concatenate([r["tokens"] for r in rows], axis=0)  # [sum T', G]
        usage = [len(np.unique(all_tokens[:, g])) / model.codebook_size for g in range(all_tokens.shape[1])]
        metrics["codebook_usage"] = float(np.mean(usage))
        metrics["codebook_usage_per_group"] = [float(u) for u in usage]
    if rig is not None and rows:
        metrics["reconstruction_lve"] = float(np.mean([r["lve"] for r in rows]))
        metrics["reconstruction_eve"] = float(np.mean([r["eve"] for r in rows]))
    return metrics
