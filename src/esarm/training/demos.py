"""Stage 3: automatically ranked demonstrations (D-REX): rollouts of the trained STA model with epsilon-greedy
noise at several epsilons, several per clip, ranked by epsilon (smaller epsilon = better, rank 0).

Besides the epsilon rollouts (``source="epsilon"``), a demonstration split can hold rows for the other automatic
ranking sources of :mod:`esarm.training.reward` (column ``source``):

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
so the dataset does not depend on the number of processes: items are sharded with accelerate's
``split_between_processes``, gathered, and only the main process writes.
"""

from __future__ import annotations

import json
import logging
import math
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from datasets import Array2D, Dataset, DatasetDict, Features, Sequence, Value
from tqdm.auto import tqdm
from transformers import LogitsProcessor, LogitsProcessorList

from ..blendshapes import EMOTIONS, FACE_REGIONS, NUM_BLENDSHAPES
from ..data.collators import STACollator, pad_blendshapes
from ..data.loading import dataset_reference, load_split
from ..data.schema import SAMPLING_RATE, decode_audio_value
from ..evaluation.metrics import eve, lve
from ..evaluation.rollouts import DEFAULT_EPSILONS, rollout_batch
from ..frames import num_frames
from ..labels import emotion_to_id, intensity_to_id, model_speakers, speaker_to_id
from ..modeling_sta import ESARMSTAForGeneration
from ..rig import resolve_rig
from .checkpoints import write_done_marker

logger = logging.getLogger(__name__)

EPSILON_NOISES: tuple[str, ...] = ("uniform", "hold")


@dataclass
class ESARMDemoConfig:
    """Arguments of stage 3 (no Trainer: generation only)."""

    sta_name_or_path: str | None = field(default=None, metadata={"help": "Trained STA model folder (stage 2)."})
    dataset_name_or_path: str | None = field(
        default=None, metadata={"help": "Corpus folder written by `save_to_disk`."}
    )
    output_dir: str | None = field(default=None, metadata={"help": "Where the demonstration DatasetDict is saved."})
    splits: list[str] = field(
        default_factory=lambda: ["train", "validation"], metadata={"help": "Corpus splits to roll out on."}
    )
    epsilons: list[float] = field(
        default_factory=lambda: list(DEFAULT_EPSILONS), metadata={"help": "Noise levels of the epsilon-greedy policy."}
    )
    num_rollouts: int = field(default=2, metadata={"help": "Rollouts per clip and epsilon."})
    max_clips: int | None = field(default=None, metadata={"help": "Use at most this many clips per split."})
    batch_size: int = field(default=16, metadata={"help": "Clips generated together."})
    do_sample: bool = field(
        default=False, metadata={"help": "Sample the policy's own distribution (else greedy) when not exploring."}
    )
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (with do_sample)."})
    store_audio: bool = field(
        default=True, metadata={"help": "Copy the audio into each row (else only source_path/split/index)."}
    )
    include_ground_truth: bool = field(
        default=True, metadata={"help": "Add one row per clip with the prior's tokens of the ground truth."}
    )
    emotion_mismatch: bool = field(
        default=False,
        metadata={
            "help": "Add one rollout per clip generated for another emotion (at the smallest epsilon), kept with the "
            "requested emotion: the emotion-mismatch ranking source."
        },
    )
    checkpoints_name_or_path: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Earlier STA checkpoints (folders with trainer_state.json, or checkpoint-<step>) whose greedy "
            "rollouts rank by training step: the learning-progress ranking source."
        },
    )
    ground_truth_epsilons: list[float] = field(
        default_factory=list,
        metadata={
            "help": "Also write num_rollouts copies of each clip's ground-truth tokens with exploration noise of "
            "kind epsilon_noise on every region at each of these epsilons (source 'ground_truth_epsilon'): noise "
            "on top of captured motion rather than on the policy's, for the reward model's ground_truth_epsilon "
            "source."
        },
    )
    epsilon_noise: str = field(
        default="uniform",
        metadata={
            "help": "Exploration noise of the epsilon rollouts: 'uniform' (the paper's epsilon-greedy: each step and "
            "group independently draws a random code with probability epsilon) or 'hold' (a noisy step draws a "
            "random code and holds it for a run whose length is drawn from the ground truth's run lengths of that "
            "region, so noise changes codes as often as captured motion does; a share epsilon of steps is noisy)."
        },
    )
    epsilon_regions: list[str] | None = field(
        default=None,
        metadata={
            "help": "Face regions (codebook groups: mouth, eyes, brows) the exploration noise applies to; the other "
            "regions keep the policy's tokens. None: every region (the paper)."
        },
    )
    rig_path: str | None = field(default=None, metadata={"help": "Face rig for per-epsilon LVE/EVE (optional)."})
    seed: int = field(default=0, metadata={"help": "Base seed; every work item derives its own."})

    def __post_init__(self):
        if not self.epsilons or any(not 0.0 <= float(e) <= 1.0 for e in self.epsilons):
            raise ValueError(f"epsilons must be a non-empty list of values in [0, 1], got {self.epsilons}")
        if self.num_rollouts < 1:
            raise ValueError(f"num_rollouts must be >= 1, got {self.num_rollouts}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.epsilon_noise not in EPSILON_NOISES:
            raise ValueError(f"epsilon_noise must be one of {list(EPSILON_NOISES)}, got {self.epsilon_noise!r}")
        if self.epsilon_regions is not None and (
            not self.epsilon_regions or not set(self.epsilon_regions) <= set(FACE_REGIONS)
        ):
            raise ValueError(
                f"epsilon_regions must be None or a non-empty list of {list(FACE_REGIONS)}, got {self.epsilon_regions}"
            )
        if any(not 0.0 < float(e) <= 1.0 for e in self.ground_truth_epsilons):
            raise ValueError(f"ground_truth_epsilons must be values in (0, 1], got {self.ground_truth_epsilons}")
        if self.ground_truth_epsilons and not self.include_ground_truth:
            raise ValueError("ground_truth_epsilons needs include_ground_truth=True, got include_ground_truth=False")
        if self.epsilon_noise == "hold" and not self.include_ground_truth:
            # the run lengths of held noise come from the ground-truth tokens
            raise ValueError("epsilon_noise='hold' needs include_ground_truth=True, got include_ground_truth=False")
        self.epsilons = [float(e) for e in self.epsilons]


def _item_seed(base: int, split: str, start: int, epsilon: float, rollout: int) -> int:
    return (base * 1_000_003 + zlib.crc32(f"{split}/{start}/{epsilon:.6f}/{rollout}".encode())) % (2**31 - 1)


def _base_row(row: dict[str, Any], config: ESARMDemoConfig, split: str, index: int, speakers) -> dict[str, Any]:
    return {
        "id": row["id"],
        "speaker": row["speaker"],
        "emotion": row["emotion"],
        "intensity": int(row["intensity"]),
        "sentence": row.get("sentence", ""),
        "audio": decode_audio_value(row["audio"]) if config.store_audio else np.zeros(0, np.float32),
        "sampling_rate": int(row.get("sampling_rate", 16000)),
        "source_path": dataset_reference(config.dataset_name_or_path),
        "source_split": split,
        "source_index": index,
        "emotion_id": emotion_to_id(row["emotion"]),
        "intensity_id": intensity_to_id(row["intensity"]),
        "speaker_id": speaker_to_id(row["speaker"], speakers),
    }


def collect_demos(config: ESARMDemoConfig) -> dict[str, Any]:
    """Roll out the STA model on each split, save the ranked-demonstration ``DatasetDict`` to
    ``config.output_dir`` (main process) and write the done marker. Returns summary metrics: rows per split and,
    per epsilon, the blendshape MAE against ground truth (and LVE / EVE in mm with a rig)."""
    if config.output_dir is None or config.sta_name_or_path is None:
        raise ValueError(
            f"output_dir and sta_name_or_path must be set, got {config.output_dir!r} and {config.sta_name_or_path!r}"
        )
    state = PartialState()
    model = ESARMSTAForGeneration.from_pretrained(config.sta_name_or_path).to(state.device).eval()
    speakers = model_speakers(config.sta_name_or_path)
    collator = STACollator(speakers=speakers, fps=model.config.fps)
    rig = resolve_rig(config.rig_path)
    num_groups = model.config.num_groups
    features = Features(
        {
            "id": Value("string"),
            "speaker": Value("string"),
            "emotion": Value("string"),
            "intensity": Value("int32"),
            "sentence": Value("string"),
            "audio": Sequence(Value("float32")),
            "sampling_rate": Value("int32"),
            "source_path": Value("string"),
            "source_split": Value("string"),
            "source_index": Value("int64"),
            "emotion_id": Value("int32"),
            "intensity_id": Value("int32"),
            "speaker_id": Value("int32"),
            "epsilon": Value("float32"),
            "rollout": Value("int32"),
            "rank": Value("int32"),
            "is_ground_truth": Value("bool"),
            "source": Value("string"),
            "generated_emotion": Value("string"),
            "checkpoint_step": Value("int64"),
            "lve": Value("float32"),
            "eve": Value("float32"),
            "motion_tokens": Array2D((None, num_groups), "int64"),
            "blendshapes": Array2D((None, NUM_BLENDSHAPES), "float32"),
        }
    )
    eps_rank = {e: r for r, e in enumerate(sorted(set(config.epsilons)))}
    policies = {None: model}
    for path in config.checkpoints_name_or_path:
        policies[checkpoint_step(path)] = ESARMSTAForGeneration.from_pretrained(path).to(state.device).eval()
    noisy_groups = _noisy_groups(config, model.motion_prior.group_names)
    run_lengths = None
    metrics: dict[str, Any] = {}
    splits = {}
    for split in config.splits:
        dataset = load_split(config.dataset_name_or_path, split)
        count = len(dataset) if config.max_clips is None else min(len(dataset), config.max_clips)
        truth = _ground_truth_tokens(model, dataset, count, config.batch_size) if config.include_ground_truth else []
        if config.epsilon_noise == "hold" and run_lengths is None:
            # the noise's run lengths from the ground truth of the first split (the training clips by default)
            run_lengths = token_run_lengths([ids for _, ids in truth])
            metrics["hold_mean_run_length"] = [float(r.mean()) for r in run_lengths]
        items = _work_items(config, count, [step for step in policies if step is not None])
        produced = []
        with state.split_between_processes(items) as shard:
            for start, source, value, rollout in tqdm(
                shard, desc=f"demos {split}", disable=not state.is_local_main_process
            ):
                indices = list(range(start, min(start + config.batch_size, count)))
                rows = [dataset[i] for i in indices]
                # emotion-mismatch rollouts at the smallest epsilon (only the emotion differs from the best
                # epsilon rollout); checkpoint rollouts greedy, like the final model's smallest-epsilon ones
                epsilon = {"epsilon": value, "emotion_mismatch": min(config.epsilons), "checkpoint": 0.0}[source]
                generated_emotions = [row["emotion"] for row in rows]
                if source == "emotion_mismatch":
                    generated_emotions = [
                        _other_emotion(row["emotion"], config.seed + i) for i, row in zip(indices, rows)
                    ]
                    rows = [{**row, "emotion": e} for row, e in zip(rows, generated_emotions)]
                policy = policies[value if source == "checkpoint" else None]
                seed = _item_seed(config.seed, f"{split}/{source}/{value}", start, epsilon, rollout)
                model_epsilon, processors = epsilon, None
                if noisy_groups is not None and epsilon > 0.0:
                    # the noise is this processor's; the model's own epsilon-greedy stays off
                    noise = ExplorationNoiseLogitsProcessor(epsilon, num_groups, noisy_groups, run_lengths, seed)
                    model_epsilon, processors = 0.0, LogitsProcessorList([noise])
                outs = rollout_batch(
                    policy, collator, rows, model_epsilon, seed, config.do_sample, config.temperature, processors
                )
                for index, row, out, emotion in zip(indices, rows, outs, generated_emotions):
                    record = {"index": index, "source": source, "epsilon": epsilon, "rollout": rollout,
                              "generated_emotion": emotion, "checkpoint_step": value if source == "checkpoint" else -1,
                              **out}  # fmt: skip
                    gt = np.asarray(row["blendshapes"], dtype=np.float32)
                    n = min(len(gt), len(out["blendshapes"]))
                    record["mae"] = float(np.abs(out["blendshapes"][:n] - gt[:n]).mean())
                    record["lve"] = float(lve(out["blendshapes"][:n], gt[:n], rig)) if rig is not None else float("nan")
                    record["eve"] = float(eve(out["blendshapes"][:n], gt[:n], rig)) if rig is not None else float("nan")
                    produced.append(record)
        produced = gather_object(produced) if state.num_processes > 1 else produced
        produced.sort(key=lambda r: (r["index"], r["source"], r["checkpoint_step"], r["epsilon"], r["rollout"]))
        if state.is_main_process:
            records = []
            cache: dict[int, dict[str, Any]] = {}
            for r in produced:
                base = cache.setdefault(r["index"], _base_row(dataset[r["index"]], config, split, r["index"], speakers))
                records.append(
                    {**base, "epsilon": r["epsilon"], "rollout": r["rollout"],
                     "rank": eps_rank[r["epsilon"]] if r["source"] == "epsilon" else -2,
                     "is_ground_truth": False, "source": r["source"], "generated_emotion": r["generated_emotion"],
                     "checkpoint_step": r["checkpoint_step"], "lve": r["lve"], "eve": r["eve"],
                     "motion_tokens": r["motion_tokens"], "blendshapes": r["blendshapes"]}
                )  # fmt: skip
            if config.include_ground_truth:
                records.extend(_ground_truth_rows(dataset, truth, cache, config, split, speakers))
            # every region: noise on captured motion teaches noise apart from real motion wherever it is (the
            # regions restriction only keeps the policy's static upper face from ranking above motion)
            groups = list(range(num_groups))
            for epsilon in config.ground_truth_epsilons:
                for rollout in range(config.num_rollouts):
                    records.extend(
                        _noisy_ground_truth_rows(
                            model, truth, cache, epsilon, rollout, groups, run_lengths, rig,
                            _item_seed(config.seed, f"{split}/ground_truth_epsilon", 0, epsilon, rollout),
                        )
                    )  # fmt: skip
            splits[split] = Dataset.from_list(records, features=features)
        for source, epsilon in [("epsilon", e) for e in config.epsilons] + [("emotion_mismatch", None)]:
            chosen = [r for r in produced if r["source"] == source and (epsilon is None or r["epsilon"] == epsilon)]
            name = f"eps_{epsilon:g}" if epsilon is not None else source
            for key in ("mae", "lve", "eve"):
                if chosen and not np.isnan(chosen[0][key]):
                    metrics[f"{split}_{key}_{name}"] = float(np.mean([r[key] for r in chosen]))
        metrics[f"{split}_num_rollouts"] = len(produced)
    if state.is_main_process:
        DatasetDict(splits).save_to_disk(config.output_dir)
        write_done_marker(config.output_dir, metrics)
    state.wait_for_everyone()
    return metrics


def _noisy_groups(config: ESARMDemoConfig, group_names: list[str]) -> list[int] | None:
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


def _work_items(config: ESARMDemoConfig, count: int, steps: list[int]) -> list[tuple[int, str, Any, int]]:
    """``(first clip, source, epsilon or checkpoint step or None, rollout index)`` per generated batch."""
    starts = range(0, count, config.batch_size)
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


def _ground_truth_rows(dataset, truth, cache, config, split, speakers) -> list[dict[str, Any]]:
    rows = []
    for index, (seq, ids) in enumerate(truth):
        clip = dataset[index]
        base = cache.setdefault(index, _base_row(clip, config, split, index, speakers))
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
