"""Animations of dataset clips for measuring them: STA rollouts (greedy or epsilon-greedy) and motion-prior
reconstructions. Used by the evaluation drivers (:mod:`esarm.evaluation.run`) and by the training stages that
measure their own models (motion prior, demonstrations)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from transformers import LogitsProcessorList

from ..data.collators import STACollator, pad_blendshapes
from .metrics import eve, lve

# noise levels of the epsilon-greedy policy in the paper's Table II (demonstrations and their evaluation)
DEFAULT_EPSILONS = (0.02, 0.25, 0.5, 0.75, 1.0)


def rollout_batch(model, collator: STACollator, rows: list[dict[str, Any]], epsilon: float, seed: int,
                  do_sample: bool = False, temperature: float = 1.0,
                  logits_processor: LogitsProcessorList | None = None) -> list[dict[str, np.ndarray]]:  # fmt: skip
    """Generate one rollout per row at ``epsilon`` (plus any ``logits_processor``, e.g. another kind of
    exploration noise); returns per clip ``motion_tokens [T', G]`` and ``blendshapes [T, 52]`` cut to the clip's
    own length."""
    device = next(model.parameters()).device
    batch = collator([{k: v for k, v in r.items() if k != "blendshapes"} for r in rows])
    generator = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        out = model.generate(
            input_values=batch["input_values"].to(device),
            attention_mask=batch["attention_mask"].to(device),
            emotion_ids=batch["emotion_ids"].to(device),
            intensity_ids=batch["intensity_ids"].to(device),
            speaker_ids=batch["speaker_ids"].to(device),
            epsilon=epsilon,
            do_sample=do_sample,
            temperature=temperature,
            generator=generator,
            logits_processor=logits_processor,
        )
    results = []
    for i in range(len(rows)):
        n_tokens = int(out.token_mask[i].sum())
        n_frames = int(out.frame_mask[i].sum())
        results.append(
            {
                "motion_tokens": out.motion_tokens[i, :n_tokens].cpu().numpy().astype(np.int64),
                "blendshapes": out.blendshapes[i, :n_frames].float().cpu().numpy(),
            }
        )
    return results


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
    state = PartialState()
    indices = list(range(len(dataset)))
    with state.split_between_processes(indices) as shard:
        sequences = [np.asarray(dataset[i]["blendshapes"], dtype=np.float32) for i in shard]
        recs, tokens = reconstruct(model, sequences, batch_size) if sequences else ([], [])
        rows = []
        for seq, rec, ids in zip(sequences, recs, tokens):
            row = {"abs_sum": float(np.abs(rec - seq).sum()), "count": seq.size, "tokens": ids}
            if rig is not None:
                row.update(lve=float(lve(rec, seq, rig)), eve=float(eve(rec, seq, rig)))
            rows.append(row)
    rows = gather_object(rows) if state.num_processes > 1 else rows
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
