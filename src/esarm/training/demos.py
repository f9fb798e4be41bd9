"""Stage 3: automatically ranked demonstrations (D-REX): rollouts of the trained STA model with epsilon-greedy
noise at several epsilons, several per clip, ranked by epsilon (smaller epsilon = better, rank 0).

Besides the epsilon rollouts (``source="epsilon"``), a demonstration split can hold rows for the other automatic
ranking sources of :mod:`esarm.training.reward` (column ``source``):

* ``"ground_truth"`` (``include_ground_truth``): the motion-prior tokens of the captured animation;
* ``"emotion_mismatch"`` (``emotion_mismatch``): a rollout generated for another emotion than the row's
  (``generated_emotion``), kept with the requested emotion, so that it ranks below the requested emotion's rollout;
* ``"checkpoint"`` (``checkpoints_name_or_path``): greedy rollouts of earlier STA checkpoints, ranked by their
  training step (``checkpoint_step``; the final model's epsilon rollouts count as the last step).

Work is split into items (a batch of clips x one epsilon x one rollout index), each generated with its own seed,
so the dataset does not depend on the number of processes: items are sharded with accelerate's
``split_between_processes``, gathered, and only the main process writes.
"""

from __future__ import annotations

import json
import logging
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from accelerate import PartialState
from accelerate.utils import gather_object
from datasets import Array2D, Dataset, DatasetDict, Features, Sequence, Value
from tqdm.auto import tqdm

from ..blendshapes import EMOTIONS, NUM_BLENDSHAPES
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
    rig_path: str | None = field(default=None, metadata={"help": "Face rig for per-epsilon LVE/EVE (optional)."})
    seed: int = field(default=0, metadata={"help": "Base seed; every work item derives its own."})

    def __post_init__(self):
        if not self.epsilons or any(not 0.0 <= float(e) <= 1.0 for e in self.epsilons):
            raise ValueError(f"epsilons must be a non-empty list of values in [0, 1], got {self.epsilons}")
        if self.num_rollouts < 1:
            raise ValueError(f"num_rollouts must be >= 1, got {self.num_rollouts}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
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
    metrics: dict[str, Any] = {}
    splits = {}
    for split in config.splits:
        dataset = load_split(config.dataset_name_or_path, split)
        count = len(dataset) if config.max_clips is None else min(len(dataset), config.max_clips)
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
                outs = rollout_batch(policy, collator, rows, epsilon, seed, config.do_sample, config.temperature)
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
                records.extend(_ground_truth_rows(model, dataset, count, cache, config, split, speakers))
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


def _ground_truth_rows(model, dataset, count, cache, config, split, speakers) -> list[dict[str, Any]]:
    rows = []
    prior = model.motion_prior
    device = next(model.parameters()).device
    for start in range(0, count, config.batch_size):
        indices = list(range(start, min(start + config.batch_size, count)))
        clips = [dataset[i] for i in indices]
        seqs = []
        for clip in clips:
            gt = np.asarray(clip["blendshapes"], dtype=np.float32)
            fps = float(clip.get("fps") or model.config.fps)
            seqs.append(gt[: num_frames(len(decode_audio_value(clip["audio"])), fps, SAMPLING_RATE)])
        blendshapes, mask = pad_blendshapes(seqs)
        tokens = prior.encode(blendshapes.to(device), mask.to(device)).cpu().numpy()
        f = prior.frames_per_token
        for index, clip, seq, ids in zip(indices, clips, seqs, tokens):
            base = cache.setdefault(index, _base_row(clip, config, split, index, speakers))
            rows.append(
                {**base, "epsilon": 0.0, "rollout": 0, "rank": -1, "is_ground_truth": True, "source": "ground_truth",
                 "generated_emotion": clip["emotion"], "checkpoint_step": -1, "lve": 0.0, "eve": 0.0,
                 "motion_tokens": ids[: -(-len(seq) // f)].astype(np.int64), "blendshapes": seq}
            )  # fmt: skip
    return rows
