"""Stage 3 (config: :mod:`~esarm.training.demos_config`; the rows it writes: :mod:`esarm.data.demonstrations`):
automatically ranked demonstrations (D-REX): rollouts of the trained STA model with epsilon-greedy
noise at several epsilons, several per clip, ranked by epsilon (smaller epsilon = better, rank 0).

Besides the epsilon rollouts (``source="epsilon"``), a demonstration split can hold rows for the other automatic
ranking sources of :mod:`esarm.training.reward_trainer` (column ``source``):

* ``"ground_truth"`` (``include_ground_truth``): the motion-prior tokens of the captured animation;
* ``"emotion_mismatch"`` (``emotion_mismatch``): a rollout generated for another emotion than the row's
  (``generated_emotion``), kept with the requested emotion, so that it ranks below the requested emotion's rollout;
* ``"checkpoint"`` (``checkpoints_name_or_path``): greedy rollouts of earlier STA checkpoints, ranked by their
  training step (``checkpoint_step``; the final model's epsilon rollouts count as the last step).

The exploration noise of the epsilon rollouts (``epsilon_noise``, ``epsilon_regions``) is the paper's
epsilon-greedy by default: every step and codebook group independently takes a uniformly random code with
probability epsilon. Because the supervised policy is nearly static in the upper face (its eye codes change on
10 % of steps, the captured eyes' on 39 %: docs/rl.md), such noise is told apart by how often codes change, and a
reward model trained on it scores real blinks and brow motion as noise. Two options change that:
``epsilon_regions`` puts noise on some face regions only (the others keep the policy's tokens), and
``epsilon_noise="hold"`` holds each random code for a run drawn from the ground truth's run lengths of that region
(:class:`ExplorationNoiseLogitsProcessor`).

Work is split into items (a batch of clips x one epsilon x one rollout index), each generated with its own seed,
so the dataset does not depend on the number of processes: items are sharded and gathered
(:func:`esarm.evaluation.rollouts.sharded_map`), and only the main process writes.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from datasets import Dataset, DatasetDict
from tqdm.auto import tqdm
from transformers import LogitsProcessor, LogitsProcessorList

from ..blendshapes import EMOTIONS
from ..data.collators import STACollator, pad_blendshapes
from ..data.demonstrations import clip_fields, demonstration_features
from ..data.loading import dataset_reference, load_split
from ..data.schema import SAMPLING_RATE, decode_audio_value
from ..evaluation.metrics import eve, lve
from ..evaluation.rollouts import generate_clips, sharded_map
from ..frames import num_frames
from ..labels import model_speakers
from ..modeling_sta import ESARMSTAForGeneration
from ..rig import resolve_rig
from .checkpoints import write_done_marker
from .demos_config import ESARMDemoTrainingConfig

__all__ = ["ExplorationNoiseLogitsProcessor", "add_exploration_noise", "checkpoint_step", "collect_demos",
           "token_run_lengths"]  # fmt: skip


def _item_seed(base: int, split: str, start: int, epsilon: float, rollout: int) -> int:
    return (base * 1_000_003 + zlib.crc32(f"{split}/{start}/{epsilon:.6f}/{rollout}".encode())) % (2**31 - 1)


def collect_demos(config: ESARMDemoTrainingConfig) -> dict[str, Any]:
    """Roll out the STA model on each split, save the ranked-demonstration ``DatasetDict`` to
    ``config.output_dir`` (main process) and write the done marker. Returns summary metrics: rows per split and,
    per epsilon, the blendshape MAE against ground truth (and LVE / EVE in mm with a rig)."""
    if config.output_dir is None or config.sta_name_or_path is None:
        raise ValueError(
            f"output_dir and sta_name_or_path must be set, got {config.output_dir!r} and {config.sta_name_or_path!r}"
        )
    state = PartialState()
    model = ESARMSTAForGeneration.from_pretrained(config.sta_name_or_path).to(state.device).eval()
    policies = {None: model}
    for path in config.checkpoints_name_or_path:
        policies[checkpoint_step(path)] = ESARMSTAForGeneration.from_pretrained(path).to(state.device).eval()
    rollouts = _Rollouts(config, policies, resolve_rig(config.rig_path))
    metrics: dict[str, Any] = {}
    splits = {}
    for split in config.splits:
        dataset = load_split(config.dataset_name_or_path, split)
        count = len(dataset) if config.max_clips is None else min(len(dataset), config.max_clips)
        bs = config.per_device_eval_batch_size
        truth = _ground_truth_tokens(model, dataset, count, bs) if config.include_ground_truth else []
        if config.epsilon_noise == "hold" and rollouts.run_lengths is None:
            # the noise's run lengths from the ground truth of the first split (the training clips by default)
            rollouts.run_lengths = token_run_lengths([ids for _, ids in truth])
            metrics["hold_mean_run_length"] = [float(r.mean()) for r in rollouts.run_lengths]
        items = _work_items(config, count, [step for step in policies if step is not None])

        def roll_out(shard, split=split, dataset=dataset, count=count):
            shard = tqdm(shard, desc=f"demos {split}", disable=not state.is_local_main_process)
            return [rollouts.item(split, dataset, count, item) for item in shard]

        produced = [record for batch in sharded_map(roll_out, items) for record in batch]
        produced.sort(key=lambda r: (r["index"], r["source"], r["checkpoint_step"], r["epsilon"], r["rollout"]))
        if state.is_main_process:
            splits[split] = rollouts.split_dataset(split, dataset, produced, truth)
        metrics.update(_split_metrics(config, split, produced))
    if state.is_main_process:
        DatasetDict(splits).save_to_disk(config.output_dir)
        write_done_marker(config.output_dir, metrics)
    state.wait_for_everyone()
    return metrics


class _Rollouts:
    """What stage 3 generates and writes for one config: the work items' rollouts and a split's dataset."""

    def __init__(self, config: ESARMDemoTrainingConfig, policies: dict[int | None, Any], rig):
        self.config, self.policies, self.rig = config, policies, rig
        model = policies[None]
        self.speakers = model_speakers(config.sta_name_or_path)
        self.collator = STACollator(speakers=self.speakers, fps=model.config.fps)
        self.num_groups = model.config.num_groups
        self.noisy_groups = _noisy_groups(config, model.motion_prior.group_names)
        self.run_lengths: list[np.ndarray] | None = None
        self.source_path = dataset_reference(config.dataset_name_or_path)

    def item(self, split: str, dataset, count: int, item: tuple[int, str, Any, int]) -> list[dict[str, Any]]:
        """The measured rollouts of one work item: a batch of clips x one source and epsilon x one rollout."""
        config = self.config
        start, source, value, rollout = item
        indices = list(range(start, min(start + config.per_device_eval_batch_size, count)))
        rows = [dataset[i] for i in indices]
        # emotion-mismatch rollouts at the smallest epsilon (only the emotion differs from the best epsilon
        # rollout); checkpoint rollouts greedy, like the final model's smallest-epsilon ones
        epsilon = {"epsilon": value, "emotion_mismatch": min(config.epsilons), "checkpoint": 0.0}[source]
        generated_emotions = [row["emotion"] for row in rows]
        if source == "emotion_mismatch":
            generated_emotions = [_other_emotion(row["emotion"], config.seed + i) for i, row in zip(indices, rows)]
            rows = [{**row, "emotion": e} for row, e in zip(rows, generated_emotions)]
        seed = _item_seed(config.seed, f"{split}/{source}/{value}", start, epsilon, rollout)
        model_epsilon, processors = epsilon, None
        if self.noisy_groups is not None and epsilon > 0.0:
            # the noise is this processor's; the model's own epsilon-greedy stays off
            noise = ExplorationNoiseLogitsProcessor(epsilon, self.num_groups, self.noisy_groups, self.run_lengths, seed)
            model_epsilon, processors = 0.0, LogitsProcessorList([noise])
        clips = generate_clips(
            self.policies[value if source == "checkpoint" else None], self.collator, rows, len(rows),
            epsilon=model_epsilon, seed=seed, do_sample=config.do_sample, temperature=config.temperature,
            logits_processor=(lambda _: processors) if processors is not None else None, rig=self.rig,
        )  # fmt: skip
        return [
            {"index": index, "source": source, "epsilon": epsilon, "rollout": rollout, "generated_emotion": emotion,
             "checkpoint_step": value if source == "checkpoint" else -1, "motion_tokens": clip["motion_tokens"],
             "blendshapes": clip["blendshapes"], "mae": clip["mae"], "lve": clip.get("lve", math.nan),
             "eve": clip.get("eve", math.nan)}
            for index, clip, emotion in zip(indices, clips, generated_emotions)
        ]  # fmt: skip

    def split_dataset(self, split: str, dataset, produced: list[dict[str, Any]], truth) -> Dataset:
        """The demonstration rows of one split: the rollouts, the ground truth and its noisy copies."""
        config = self.config
        eps_rank = {e: r for r, e in enumerate(sorted(set(config.epsilons)))}
        cache: dict[int, dict[str, Any]] = {}
        records = []
        for r in produced:
            base = cache.setdefault(r["index"], self.clip_fields(dataset, split, r["index"]))
            records.append(
                {**base, "epsilon": r["epsilon"], "rollout": r["rollout"],
                 "rank": eps_rank[r["epsilon"]] if r["source"] == "epsilon" else -2,
                 "is_ground_truth": False, "source": r["source"], "generated_emotion": r["generated_emotion"],
                 "checkpoint_step": r["checkpoint_step"], "lve": r["lve"], "eve": r["eve"],
                 "motion_tokens": r["motion_tokens"], "blendshapes": r["blendshapes"]}
            )  # fmt: skip
        if config.include_ground_truth:
            records.extend(_ground_truth_rows(dataset, truth, cache, self, split))
        # every region: noise on captured motion teaches noise apart from real motion wherever it is (the regions
        # restriction only keeps the policy's static upper face from ranking above motion)
        groups = list(range(self.num_groups))
        for epsilon in config.ground_truth_epsilons:
            for rollout in range(config.num_rollouts):
                records.extend(
                    _noisy_ground_truth_rows(
                        self.policies[None], truth, cache, epsilon, rollout, groups, self.run_lengths, self.rig,
                        _item_seed(config.seed, f"{split}/ground_truth_epsilon", 0, epsilon, rollout),
                    )
                )  # fmt: skip
        return Dataset.from_list(records, features=demonstration_features(self.num_groups))

    def clip_fields(self, dataset, split: str, index: int) -> dict[str, Any]:
        return clip_fields(dataset[index], self.source_path, split, index, self.speakers, self.config.store_audio)


def _split_metrics(config: ESARMDemoTrainingConfig, split: str, produced: list[dict[str, Any]]) -> dict[str, Any]:
    """Per epsilon (and for the emotion-mismatch rollouts) the mean MAE / LVE / EVE of a split's rollouts."""
    metrics: dict[str, Any] = {}
    for source, epsilon in [("epsilon", e) for e in config.epsilons] + [("emotion_mismatch", None)]:
        chosen = [r for r in produced if r["source"] == source and (epsilon is None or r["epsilon"] == epsilon)]
        name = f"eps_{epsilon:g}" if epsilon is not None else source
        for key in ("mae", "lve", "eve"):
            if chosen and not np.isnan(chosen[0][key]):
                metrics[f"{split}_{key}_{name}"] = float(np.mean([r[key] for r in chosen]))
    metrics[f"{split}_num_rollouts"] = len(produced)
    return metrics


def _noisy_groups(config: ESARMDemoTrainingConfig, group_names: list[str]) -> list[int] | None:
    """Indices of the codebook groups that get exploration noise, or ``None`` for the model's own epsilon-greedy
    (uniform noise on every group, the paper's)."""
    if config.epsilon_noise == "uniform" and config.epsilon_regions is None:
        return None
    if config.epsilon_regions is None:
        return list(range(len(group_names)))
    missing = sorted(set(config.epsilon_regions) - set(group_names))
    if missing:
        raise ValueError(
            f"epsilon_regions must name codebook groups of the STA model's motion prior {group_names}, got "
            f"{config.epsilon_regions}"
        )
    return [group_names.index(region) for region in config.epsilon_regions]


def _work_items(config: ESARMDemoTrainingConfig, count: int, steps: list[int]) -> list[tuple[int, str, Any, int]]:
    """``(first clip, source, epsilon or checkpoint step or None, rollout index)`` per generated batch."""
    starts = range(0, count, config.per_device_eval_batch_size)
    items = [(s, "epsilon", e, r) for s in starts for e in config.epsilons for r in range(config.num_rollouts)]
    if config.emotion_mismatch:
        items += [(s, "emotion_mismatch", None, 0) for s in starts]
    items += [(s, "checkpoint", step, 0) for s in starts for step in steps]
    return items


def hash_text(text: str) -> int:
    """A stable (process-independent) integer of a string, for seeds."""
    return zlib.crc32(text.encode())


def _other_emotion(emotion: str, index: int) -> str:
    """Another emotion than ``emotion``, cycling through all others with ``index``."""
    others = [e for e in EMOTIONS if e != emotion]
    return others[index % len(others)]


def checkpoint_step(path: str) -> int:
    """The training step of an STA checkpoint folder: ``global_step`` of its ``trainer_state.json``, else the
    number in a ``checkpoint-<step>`` name."""
    state_file = Path(path) / "trainer_state.json"
    if state_file.is_file():
        return int(json.loads(state_file.read_text())["global_step"])
    match = re.fullmatch(r"checkpoint-(\d+)", Path(path).name)
    if match is None:
        raise ValueError(
            f"checkpoints_name_or_path entries must hold trainer_state.json or be named checkpoint-<step>, got {path!r}"
        )
    return int(match.group(1))


def _ground_truth_tokens(model, dataset, count: int, batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per clip of ``dataset[:count]``: the captured blendshapes cut to the audio's frame count ``[T, 52]`` and
    their motion-prior tokens ``[T', G]``."""
    prior = model.motion_prior
    device = next(model.parameters()).device
    results = []
    for start in range(0, count, batch_size):
        clips = [dataset[i] for i in range(start, min(start + batch_size, count))]
        seqs = []
        for clip in clips:
            gt = np.asarray(clip["blendshapes"], dtype=np.float32)
            fps = float(clip.get("fps") or model.config.fps)
            seqs.append(gt[: num_frames(len(decode_audio_value(clip["audio"])), fps, SAMPLING_RATE)])
        blendshapes, mask = pad_blendshapes(seqs)
        with torch.no_grad():
            tokens = prior.encode(blendshapes.to(device), mask.to(device)).cpu().numpy()
        f = prior.frames_per_token
        results.extend((seq, ids[: -(-len(seq) // f)].astype(np.int64)) for seq, ids in zip(seqs, tokens))
    return results


def _ground_truth_rows(dataset, truth, cache, rollouts: _Rollouts, split: str) -> list[dict[str, Any]]:
    rows = []
    for index, (seq, ids) in enumerate(truth):
        clip = dataset[index]
        base = cache.setdefault(index, rollouts.clip_fields(dataset, split, index))
        rows.append(
            {**base, "epsilon": 0.0, "rollout": 0, "rank": -1, "is_ground_truth": True, "source": "ground_truth",
             "generated_emotion": clip["emotion"], "checkpoint_step": -1, "lve": 0.0, "eve": 0.0,
             "motion_tokens": ids, "blendshapes": seq}
        )  # fmt: skip
    return rows


def add_exploration_noise(tokens: np.ndarray, codebook_size: int, processor: LogitsProcessor) -> np.ndarray:
    """A copy of a token sequence ``[T', G]`` with the noise of ``processor`` (an
    :class:`ExplorationNoiseLogitsProcessor`, fresh) applied step by step, as if ``tokens`` were the policy's
    choices."""
    tokens = np.asarray(tokens)
    groups = np.arange(tokens.shape[1])
    noisy = np.empty_like(tokens)
    for t, codes in enumerate(tokens):
        scores = torch.zeros(len(codes), codebook_size)
        scores[groups, codes] = 1.0
        noisy[t] = processor(None, scores).argmax(-1).numpy()
    return noisy


def _noisy_ground_truth_rows(model, truth, cache, epsilon, rollout, groups, run_lengths, rig, seed):
    """The ``ground_truth_epsilon`` rows of one epsilon and rollout index: each clip's ground-truth tokens with
    exploration noise, decoded by the motion prior, with LVE / EVE against the captured animation."""
    prior = model.motion_prior
    device = next(model.parameters()).device
    rows = []
    for index, (seq, ids) in enumerate(truth):
        processor = ExplorationNoiseLogitsProcessor(epsilon, ids.shape[1], groups, run_lengths, seed + index)
        noisy = add_exploration_noise(ids, prior.codebook_size, processor)
        with torch.no_grad():
            decoded = prior.decode(torch.as_tensor(noisy, device=device)[None], num_frames=len(seq))
        blendshapes = decoded[0, : len(seq)].float().cpu().numpy()
        rows.append(
            {**cache[index], "epsilon": epsilon, "rollout": rollout, "rank": -2, "is_ground_truth": False,
             "source": "ground_truth_epsilon", "generated_emotion": cache[index]["emotion"], "checkpoint_step": -1,
             "lve": float(lve(blendshapes, seq, rig)) if rig is not None else float("nan"),
             "eve": float(eve(blendshapes, seq, rig)) if rig is not None else float("nan"),
             "motion_tokens": noisy.astype(np.int64), "blendshapes": blendshapes}
        )  # fmt: skip
    return rows


def token_run_lengths(token_sequences: list[np.ndarray]) -> list[np.ndarray]:
    """Per codebook group, the lengths (in steps) of every run of one repeated code in ``token_sequences``
    (``[T', G]`` each). Returns ``G`` integer arrays."""
    if not token_sequences:
        raise ValueError("token_sequences must hold at least one [T', G] array, got none")
    groups = np.asarray(token_sequences[0]).shape[1]
    runs: list[list[int]] = [[] for _ in range(groups)]
    for tokens in token_sequences:
        tokens = np.asarray(tokens)
        for g in range(groups):
            column = tokens[:, g]
            if len(column) == 0:
                continue
            boundaries = np.flatnonzero(np.diff(column) != 0) + 1
            edges = np.concatenate([[0], boundaries, [len(column)]])
            runs[g].extend(np.diff(edges).tolist())
    return [np.asarray(r if r else [1], dtype=np.int64) for r in runs]


class ExplorationNoiseLogitsProcessor(LogitsProcessor):
    """Epsilon-greedy exploration restricted to some codebook groups, optionally held over runs of steps.

    Works on the per-step scores ``[batch * G, K]`` of :meth:`ESARMSTAForGeneration.generate` (row ``b * G + g``)
    and is called once per step, so it keeps state across steps: make one per ``generate`` call. A noisy
    (sequence, group) gets scores whose only finite entry is the random code, so the greedy argmax (or a sample)
    takes it; the other rows keep the policy's scores.

    Args:
        epsilon: share of the steps of a noisy group that carry a random code, in [0, 1].
        num_groups: G, the codebooks per step.
        groups: indices of the groups that receive noise.
        run_lengths: ``None`` for independent noise per step (the paper's epsilon-greedy, restricted to
            ``groups``), else per group an array of run lengths (steps) to draw from: a noisy step starts a run of
            one random code whose length is drawn from it, and runs start with the probability that makes the
            expected noisy share ``epsilon``.
        seed: seed of this processor's own CPU generator.
    """

    def __init__(self, epsilon: float, num_groups: int, groups, run_lengths=None, seed: int = 0):
        if not 0.0 <= float(epsilon) <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
        if not groups or any(not 0 <= g < num_groups for g in groups):
            raise ValueError(f"groups must be a non-empty list of group indices in [0, {num_groups}), got {groups}")
        if run_lengths is not None and len(run_lengths) != num_groups:
            raise ValueError(f"run_lengths must hold one array per group ({num_groups}), got {len(run_lengths)}")
        self.epsilon = float(epsilon)
        self.num_groups = num_groups
        self.noisy = torch.zeros(num_groups, dtype=torch.bool)
        self.noisy[list(groups)] = True
        self.run_lengths = None if run_lengths is None else [torch.as_tensor(r, dtype=torch.long) for r in run_lengths]
        if self.run_lengths is not None:
            # a renewal process: off for a geometric number of steps (start probability p), then on for a run of
            # mean length L; the share of noisy steps is L / (L + (1 - p) / p) = epsilon <=> p below
            mean = torch.stack([r.float().mean() for r in self.run_lengths])
            start = self.epsilon / (self.epsilon + mean * (1.0 - self.epsilon))
            self.start_probability = start.clamp(max=1.0)
        self.generator = torch.Generator().manual_seed(seed)
        self.held: torch.Tensor | None = None
        self.remaining: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor | None, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows, num_codes = scores.shape
        group = torch.arange(rows) % self.num_groups
        if self.remaining is None:
            self.held = torch.zeros(rows, dtype=torch.long)
            self.remaining = torch.zeros(rows, dtype=torch.long)
        draw = torch.rand(rows, generator=self.generator)
        codes = torch.randint(num_codes, (rows,), generator=self.generator)
        if self.run_lengths is None:
            starts = self.noisy[group] & (draw < self.epsilon)
            lengths = torch.ones(rows, dtype=torch.long)
        else:
            starts = self.noisy[group] & (self.remaining == 0) & (draw < self.start_probability[group])
            lengths = torch.ones(rows, dtype=torch.long)
            for g, runs in enumerate(self.run_lengths):
                rows_of_group = group == g
                picks = torch.randint(len(runs), (int(rows_of_group.sum()),), generator=self.generator)
                lengths[rows_of_group] = runs[picks]
        self.held = torch.where(starts, codes, self.held)
        self.remaining = torch.where(starts, lengths, self.remaining)
        forced = self.remaining > 0
        self.remaining = (self.remaining - 1).clamp(min=0)
        if not bool(forced.any()):
            return scores
        forced, held = forced.to(scores.device), self.held.to(scores.device)
        one_hot = torch.full_like(scores, -math.inf).scatter_(-1, held[:, None], 0.0)
        return torch.where(forced[:, None], one_hot, scores)
