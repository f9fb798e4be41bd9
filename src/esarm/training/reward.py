"""Stage 4: train the reward model on automatically ranked demonstrations (paper Sec. III-B.3, eq. 1; D-REX).

Training pairs are two rollouts of the *same clip* generated with different noise levels ``epsilon``; the label is
``y = int(eps_i < eps_j)`` (the less noisy rollout is the better one) and the loss is
:func:`esarm.modeling_reward.ranking_loss` on the two discounted returns ``R(tau)``. Optionally, as in T-REX,
each pair is cut to random sub-sequences ("snippets") of equal length, each with its own audio window.

Ranking sources (``ranking_sources``; each automatic, from the demonstrations of stage 3 and their clips):

* ``"epsilon"``: the paper's D-REX ranking (less noise is better);
* ``"ground_truth"``: the captured animation of a clip ranks above every rollout of that clip (T-REX with the human
  demonstrations the STA model was trained on);
* ``"misalignment"``: a motion (ground truth or smallest-epsilon rollout) against its own audio ranks above the same
  motion against the audio rolled by ``misalignment_shifts`` tokens (teaches lip sync);
* ``"emotion_mismatch"``: a rollout generated for another emotion ranks below the requested emotion's rollout and
  ground truth;
* ``"checkpoint"``: greedy rollouts of later STA checkpoints rank above those of earlier ones;
* ``"vertex_error"``: of two rollouts of a clip, the one closer to the captured animation (LVE + EVE, mm, stored
  by stage 3 with a rig) ranks higher, when they differ by more than ``vertex_error_margin`` mm;
* ``"ground_truth_epsilon"``: the captured animation ranks above copies of it with exploration noise at epsilon
  (stage 3's ``ground_truth_epsilons``), a less noisy copy above a noisier one: D-REX anchored at real motion
  instead of the policy's, so that noise is told from captured motion by its codes, not by how often they change.

Held-out evaluation (:func:`evaluate_ranking`) scores every rollout of the evaluation split once and reports the
pairwise accuracy over all different-epsilon pairs of a clip, overall and by epsilon gap, the mean return per
epsilon, and, when ground truth is available, where the ground-truth animations (motion-prior tokens of the
captured blendshapes) rank against the rollouts of each epsilon (``gt_beats_eps_0.02`` ...); it also reports the
accuracy of every ranking source on held-out pairs and the rank correlation of the return with -LVE / -EVE
(:mod:`esarm.evaluation.rl_diagnostics`).
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from torch.utils.data import Dataset as TorchDataset
from transformers import Trainer, set_seed

from ..configuration_esarm import ESARMRewardModelConfig, ESARMSTAConfig
from ..data.collators import STACollator
from ..data.loading import load_split
from ..data.schema import SAMPLING_RATE, decode_audio_value
from ..evaluation.rl_diagnostics import (
    group_names,
    rank_correlation_by_clip,
    ranking_source_accuracy,
    swap_group_tokens,
    token_change_rate,
)
from ..labels import model_speakers
from ..modeling_reward import ESARMRewardModel, ranking_loss
from ..modeling_sta import ESARMSTAForGeneration
from .args import ESARMTrainingArguments, build_model_config
from .checkpoints import resolve_resume_checkpoint, write_done_marker
from .metric_store import MetricStore, log_with_metrics

logger = logging.getLogger(__name__)

CLIP_ID_COLUMNS: tuple[str, ...] = ("clip_id", "id")
GROUND_TRUTH_EPSILON = -1.0  # marks ground-truth rows in evaluation (better than any rollout)
RANKING_SOURCES: tuple[str, ...] = (
    "epsilon", "ground_truth", "misalignment", "emotion_mismatch", "checkpoint", "vertex_error", "ground_truth_epsilon",
)  # fmt: skip
# stage-3 row sources made by the STA policy (the rollouts whose quality the reward model must rank)
GENERATED_ROW_SOURCES: tuple[str, ...] = ("epsilon", "emotion_mismatch", "checkpoint")
TOKEN_EMBEDDING_INITS: tuple[str, ...] = ("random", "motion_prior")


# ---------------------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class ESARMRewardConfig(ESARMTrainingArguments):
    """Arguments of stage 4 (the ``TrainingArguments`` fields plus the ones below; defaults changed for this stage:
    no trackers, keep the dataset's columns, one saved checkpoint)."""

    demos_name_or_path: str | None = field(
        default=None, metadata={"help": "Ranked-demonstration dataset of stage 3 (save_to_disk folder)."}
    )
    train_split: str = field(default="train", metadata={"help": "Demonstration split to train on."})
    eval_split: str | None = field(
        default="validation", metadata={"help": "Held-out demonstration split for pairwise accuracy (None: skip)."}
    )
    eval_demos_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Held-out demonstrations from another stage-3 run (its eval_split), e.g. the paper's uniform "
            "epsilon noise, so that reward models trained on different kinds of noise are compared on one set. "
            "None: demos_name_or_path."
        },
    )
    sta_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Trained STA folder: its processor gives the speaker list and its motion prior the token "
            "geometry (G, K, frames_per_token, fps) of a fresh reward model."
        },
    )
    model_config: str = field(
        default="tiny", metadata={"help": "ESARMRewardModelConfig preset (tiny, base) or a config folder / json."}
    )
    model_overrides: str | None = field(
        default=None, metadata={"help": "Json object of reward-model config fields overriding the preset."}
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Start from this trained reward model folder instead of a fresh one."}
    )
    ranking_sources: list[str] = field(
        default_factory=lambda: ["epsilon"],
        metadata={"help": f"Automatic ranking sources of the training pairs, any of {list(RANKING_SOURCES)}."},
    )
    max_pairs_per_clip: int | None = field(
        default=None, metadata={"help": "Sample at most this many pairs per clip and ranking source (None: all)."}
    )
    misalignment_shifts: list[int] = field(
        default_factory=lambda: [2, 4, 8],
        metadata={"help": "Audio shifts (motion tokens, either direction) of the misalignment source's worse side."},
    )
    ground_truth_negatives: str = field(
        default="all",
        metadata={
            "help": "ground_truth source: the captured animation ranks above 'all' generated rows of its clip, or "
            "only the 'near_policy' ones (smallest-epsilon, emotion-mismatch and checkpoint rollouts): the pairs "
            "the epsilon ranking does not already imply."
        },
    )
    vertex_error_margin: float = field(
        default=0.5, metadata={"help": "vertex_error source: minimum LVE + EVE difference (mm) of a pair."}
    )
    snippet_length: int = field(
        default=0, metadata={"help": "T-REX snippets: max snippet length in motion tokens (0: whole rollouts)."}
    )
    min_snippet_length: int = field(default=4, metadata={"help": "Minimum snippet length in motion tokens."})
    snippet_alignment: str = field(
        default="aligned",
        metadata={
            "help": "'aligned': both snippets cover the same time window (same audio); 'trex': the better "
            "rollout's snippet starts no earlier than the worse one's (T-REX's sampling)."
        },
    )
    token_embedding_init: str = field(
        default="random",
        metadata={
            "help": "'random': the reward model learns its motion-token embeddings from scratch; 'motion_prior': "
            "each code starts as a fixed random projection of the face pose the STA model's motion prior decodes "
            "it to (see code_pose_embeddings), so that codes of similar poses start close."
        },
    )
    eval_batch_size: int = field(default=16, metadata={"help": "Rollouts per forward pass in evaluation."})
    # changed TrainingArguments defaults
    output_dir: str | None = field(default=None, metadata={"help": "Where the trained reward model is saved."})
    learning_rate: float = field(default=3e-4, metadata={"help": "AdamW learning rate."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Pairs per device and step."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs over the pairs (unless max_steps > 0)."})

    def __post_init__(self):
        if self.snippet_length < 0:
            raise ValueError(f"snippet_length must be >= 0 (0: whole rollouts), got {self.snippet_length}")
        if self.min_snippet_length < 1:
            raise ValueError(f"min_snippet_length must be >= 1, got {self.min_snippet_length}")
        if self.snippet_length and self.min_snippet_length > self.snippet_length:
            raise ValueError(
                f"min_snippet_length must be <= snippet_length={self.snippet_length}, got {self.min_snippet_length}"
            )
        if self.snippet_alignment not in ("aligned", "trex"):
            raise ValueError(f"snippet_alignment must be 'aligned' or 'trex', got {self.snippet_alignment!r}")
        unknown = sorted(set(self.ranking_sources) - set(RANKING_SOURCES))
        if not self.ranking_sources or unknown:
            raise ValueError(
                f"ranking_sources must be a non-empty list of {list(RANKING_SOURCES)}, got {self.ranking_sources}"
            )
        if not self.misalignment_shifts or any(int(k) == 0 for k in self.misalignment_shifts):
            raise ValueError(f"misalignment_shifts must be non-zero token shifts, got {self.misalignment_shifts}")
        if self.ground_truth_negatives not in ("all", "near_policy"):
            raise ValueError(
                f"ground_truth_negatives must be 'all' or 'near_policy', got {self.ground_truth_negatives!r}"
            )
        if self.token_embedding_init not in TOKEN_EMBEDDING_INITS:
            raise ValueError(
                f"token_embedding_init must be one of {list(TOKEN_EMBEDDING_INITS)}, got {self.token_embedding_init!r}"
            )
        if self.max_pairs_per_clip is not None and self.max_pairs_per_clip < 1:
            raise ValueError(f"max_pairs_per_clip must be None or >= 1, got {self.max_pairs_per_clip}")
        super().__post_init__()


# ---------------------------------------------------------------------------------------------------------------
# Pairs and snippets
# ---------------------------------------------------------------------------------------------------------------
def clip_id_column(column_names: Sequence[str]) -> str:
    """The demonstration column naming the source clip (``clip_id``, else ``id``)."""
    for name in CLIP_ID_COLUMNS:
        if name in column_names:
            return name
    raise ValueError(f"demonstrations need a clip id column, one of {list(CLIP_ID_COLUMNS)}; got {list(column_names)}")


class RankingPair(NamedTuple):
    """Two demonstration rows of one clip; ``label = 1`` when row ``i`` is the better one. ``shift_i`` /
    ``shift_j`` roll each side's audio by that many motion tokens (the misalignment source's worse side)."""

    i: int
    j: int
    label: int
    source: str = "epsilon"
    shift_i: int = 0
    shift_j: int = 0


def build_ranking_pairs(
    clip_ids: Sequence[str], epsilons: Sequence[float], max_pairs_per_clip: int | None = None, seed: int = 0
) -> list[tuple[int, int, int]]:
    """Pairs ``(i, j, y)`` of rows of the same clip with different epsilon, ``y = int(eps_i < eps_j)`` (eq. 1).

    Every different-epsilon pair of a clip is used (or ``max_pairs_per_clip`` of them, sampled); the order inside a
    pair is randomised so that both labels occur.
    """
    if len(clip_ids) != len(epsilons):
        raise ValueError(f"clip_ids and epsilons must have the same length, got {len(clip_ids)} and {len(epsilons)}")
    pairs = build_source_pairs(
        clip_ids, ["epsilon"] * len(clip_ids), epsilons, ["epsilon"], max_pairs_per_clip=max_pairs_per_clip, seed=seed
    )
    return [(pair.i, pair.j, pair.label) for pair in pairs]


def build_source_pairs(
    clip_ids: Sequence[str],
    row_sources: Sequence[str],
    epsilons: Sequence[float],
    sources: Sequence[str],
    *,
    checkpoint_steps: Sequence[int] | None = None,
    vertex_errors: Sequence[float] | None = None,
    max_pairs_per_clip: int | None = None,
    shifts: Sequence[int] = (2, 4, 8),
    vertex_error_margin: float = 0.5,
    ground_truth_negatives: str = "all",
    seed: int = 0,
) -> list[RankingPair]:
    """Training (or held-out) pairs of every requested ranking source (see the module docstring).

    Args:
        clip_ids / row_sources / epsilons: per demonstration row, its clip, the stage-3 ``source`` that made it
            (``epsilon``, ``ground_truth``, ``emotion_mismatch``, ``checkpoint``, ``ground_truth_epsilon``) and its
            epsilon.
        sources: the ranking sources to build pairs for (:data:`RANKING_SOURCES`).
        checkpoint_steps: per row, the STA training step of ``checkpoint`` rows (needed for that source).
        vertex_errors: per row, LVE + EVE in mm against the ground truth (needed for ``vertex_error``).
        max_pairs_per_clip: sample at most this many pairs per clip and source (``None``: all).
        shifts: misalignment shifts in motion tokens; each aligned motion is paired with each shift, in a random
            direction.
        ground_truth_negatives: ``"all"`` generated rows of a clip rank below its ground truth, or only the
            ``"near_policy"`` ones (smallest-epsilon, emotion-mismatch and checkpoint rollouts).
    Returns:
        :class:`RankingPair` s, the order inside each pair randomised so that both labels occur.
    """
    unknown = sorted(set(sources) - set(RANKING_SOURCES))
    if unknown:
        raise ValueError(f"sources must be among {list(RANKING_SOURCES)}, got {unknown}")
    if not len(clip_ids) == len(row_sources) == len(epsilons):
        raise ValueError(
            f"clip_ids, row_sources and epsilons must have the same length, got {len(clip_ids)}, "
            f"{len(row_sources)} and {len(epsilons)}"
        )
    for name, argument, values in (("checkpoint", "checkpoint_steps", checkpoint_steps),
                                   ("vertex_error", "vertex_errors", vertex_errors)):  # fmt: skip
        if name in sources and values is None:
            raise ValueError(f"the {name!r} source needs {argument} (one value per row), got None")
    rng = random.Random(seed)
    rows_by_clip: dict[str, list[int]] = defaultdict(list)
    for row, clip in enumerate(clip_ids):
        rows_by_clip[clip].append(row)
    pairs: list[RankingPair] = []
    for clip in sorted(rows_by_clip):
        rows = rows_by_clip[clip]
        kind = {name: [r for r in rows if row_sources[r] == name] for name in ("epsilon", "ground_truth",
                "emotion_mismatch", "checkpoint", "ground_truth_epsilon")}  # fmt: skip
        best_eps = min((float(epsilons[r]) for r in kind["epsilon"]), default=None)
        best_rollouts = [r for r in kind["epsilon"] if float(epsilons[r]) == best_eps]
        generated = kind["epsilon"] + kind["emotion_mismatch"] + kind["checkpoint"]
        for source in sources:
            # (better, worse, better shift, worse shift)
            candidates: list[tuple[int, int, int, int]] = []
            if source == "epsilon":
                candidates = [(a, b, 0, 0) if epsilons[a] < epsilons[b] else (b, a, 0, 0)
                              for a, b in itertools.combinations(kind["epsilon"], 2) if epsilons[a] != epsilons[b]]  # fmt: skip
            elif source == "ground_truth_epsilon":
                # noise on top of the captured motion: the ground truth (epsilon 0) above its noisy copies, and
                # among those the less noisy one above
                chain = kind["ground_truth"] + kind["ground_truth_epsilon"]
                level = {r: 0.0 if row_sources[r] == "ground_truth" else float(epsilons[r]) for r in chain}
                candidates = [(a, b, 0, 0) if level[a] < level[b] else (b, a, 0, 0)
                              for a, b in itertools.combinations(chain, 2) if level[a] != level[b]]  # fmt: skip
            elif source == "ground_truth":
                negatives = generated
                if ground_truth_negatives == "near_policy":
                    negatives = best_rollouts + kind["emotion_mismatch"] + kind["checkpoint"]
                candidates = [(g, r, 0, 0) for g in kind["ground_truth"] for r in negatives]
            elif source == "misalignment":
                candidates = [(a, a, 0, k) for a in kind["ground_truth"] + best_rollouts for k in shifts]
            elif source == "emotion_mismatch":
                candidates = [
                    (b, m, 0, 0) for m in kind["emotion_mismatch"] for b in kind["ground_truth"] + best_rollouts
                ]
            elif source == "checkpoint":
                # the final model's smallest-epsilon rollouts count as the latest checkpoint
                step = {r: checkpoint_steps[r] for r in kind["checkpoint"]} | {r: math.inf for r in best_rollouts}
                candidates = [(a, b, 0, 0) if step[a] > step[b] else (b, a, 0, 0)
                              for a, b in itertools.combinations(sorted(step), 2) if step[a] != step[b]]  # fmt: skip
            elif source == "vertex_error":
                scored = [r for r in generated if math.isfinite(float(vertex_errors[r]))]
                candidates = [(a, b, 0, 0) if vertex_errors[a] < vertex_errors[b] else (b, a, 0, 0)
                              for a, b in itertools.combinations(scored, 2)
                              if abs(float(vertex_errors[a]) - float(vertex_errors[b])) > vertex_error_margin]  # fmt: skip
            if max_pairs_per_clip is not None and len(candidates) > max_pairs_per_clip:
                candidates = rng.sample(candidates, max_pairs_per_clip)
            for better, worse, better_shift, worse_shift in candidates:
                if source == "misalignment" and rng.random() < 0.5:
                    worse_shift = -worse_shift
                if rng.random() < 0.5:
                    pairs.append(RankingPair(better, worse, 1, source, better_shift, worse_shift))
                else:
                    pairs.append(RankingPair(worse, better, 0, source, worse_shift, better_shift))
    return pairs


def demo_columns(demos) -> dict[str, list]:
    """Per-row columns of a demonstration split that :func:`build_source_pairs` reads: ``clip_ids``,
    ``row_sources`` (column ``source``; splits without it: ground truth or epsilon from ``is_ground_truth``),
    ``epsilons``, ``checkpoint_steps`` and ``vertex_errors`` (LVE + EVE, ``nan`` when stage 3 had no rig)."""
    names = demos.column_names
    if "source" in names:
        row_sources = list(demos["source"])
    else:
        _, truth = rollout_rows(demos)
        truth = set(truth)
        row_sources = ["ground_truth" if i in truth else "epsilon" for i in range(len(demos))]
    count = len(demos)
    errors = (
        [float(a) + float(b) for a, b in zip(demos["lve"], demos["eve"])]
        if "lve" in names and "eve" in names
        else [math.nan] * count
    )
    return {
        "clip_ids": list(demos[clip_id_column(names)]),
        "row_sources": row_sources,
        "epsilons": [float(e) for e in demos["epsilon"]],
        "checkpoint_steps": list(demos["checkpoint_step"]) if "checkpoint_step" in names else [-1] * count,
        "vertex_errors": errors,
    }


def sample_snippet_starts(
    length_i: int,
    length_j: int,
    snippet_length: int,
    i_is_better: bool,
    alignment: str,
    rng: random.Random,
    min_snippet_length: int = 1,
) -> tuple[int, int, int]:
    """Random snippet windows ``(start_i, start_j, length)`` in motion tokens for one pair (T-REX).

    ``alignment="aligned"``: both windows start at the same token (the two rollouts share the clip's audio, so the
    reward model compares two animations of the same speech). ``alignment="trex"``: as in T-REX's
    ``create_training_data``, the better rollout's snippet starts no earlier than the worse one's.
    """
    shortest = min(length_i, length_j)
    length = rng.randint(min(min_snippet_length, shortest), min(snippet_length, shortest))
    if alignment == "aligned":
        start = rng.randint(0, shortest - length)
        return start, start, length
    if alignment != "trex":
        raise ValueError(f"alignment must be 'aligned' or 'trex', got {alignment!r}")
    better_length = length_i if i_is_better else length_j
    worse_start = rng.randint(0, shortest - length)
    better_start = rng.randint(worse_start, better_length - length)
    return (better_start, worse_start, length) if i_is_better else (worse_start, better_start, length)


def tokens_of(row: dict[str, Any]):
    """A rollout row's motion tokens ``[T', G]`` (column ``motion_tokens``, or ``tokens``)."""
    return row["motion_tokens"] if "motion_tokens" in row else row["tokens"]


def rollout_rows(demos) -> tuple[list[int], list[int]]:
    """Indices of the noisy rollouts and of the ground-truth rows (``is_ground_truth``) of a demonstration split."""
    if "is_ground_truth" not in demos.column_names:
        return list(range(len(demos))), []
    flags = demos["is_ground_truth"]
    return [i for i, gt in enumerate(flags) if not gt], [i for i, gt in enumerate(flags) if gt]


class RankingPairDataset(TorchDataset):
    """Pairs of demonstration rows: item ``k`` is ``{"rollout_i": row, "rollout_j": row, "label": y, "shift_i": s,
    "shift_j": s}``; ``pairs`` holds :class:`RankingPair` s or ``(i, j, y)`` triples (no audio shift)."""

    def __init__(self, demos, pairs: Sequence[RankingPair | tuple[int, int, int]]):
        self.demos = demos
        self.pairs = [RankingPair(*pair) for pair in pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        return {"rollout_i": self.demos[pair.i], "rollout_j": self.demos[pair.j], "label": pair.label,
                "shift_i": pair.shift_i, "shift_j": pair.shift_j}  # fmt: skip


@dataclass
class RolloutCollator:
    """Batches rollouts for the reward model: audio + condition (:class:`STACollator`, so ids and audio
    normalisation match STA training) and padded ``motion_tokens [B, T', G]`` with ``motion_mask [B, T']``.

    A rollout row needs ``motion_tokens`` (or ``tokens``) ``[T', G]``, ``emotion``, ``intensity``, ``speaker`` and
    either a non-empty ``audio`` (16 kHz) or ``source_path`` / ``source_split`` / ``source_index`` of its corpus clip
    (stage 3 with ``store_audio=False``). ``windows`` (``(start, length)`` per row, in tokens) crops rollouts and
    their audio to snippets; one token spans ``frames_per_token / fps`` seconds. ``audio_shifts`` (tokens per row)
    rolls each row's audio against its motion.
    """

    speakers: Sequence[str] = ()
    fps: float = 30.0
    frames_per_token: int = 1

    def __post_init__(self):
        self._collator = STACollator(speakers=list(self.speakers), fps=self.fps)
        self._sources: dict[tuple[str, str], Any] = {}

    def audio_of(self, row: dict[str, Any]) -> np.ndarray:
        audio = row.get("audio")
        if audio is not None and len(audio) > 0:
            return np.asarray(audio, dtype=np.float32)
        if row.get("source_path") is None:
            raise ValueError("rollout rows need a non-empty 'audio' or 'source_path'/'source_split'/'source_index'")
        key = (row["source_path"], row["source_split"])
        if key not in self._sources:
            self._sources[key] = load_split(*key)
        return decode_audio_value(self._sources[key][int(row["source_index"])]["audio"])

    def encode(
        self,
        rows: Sequence[dict[str, Any]],
        windows: Sequence[tuple[int, int]] | None = None,
        audio_shifts: Sequence[int] | None = None,
    ) -> dict[str, torch.Tensor]:
        samples_per_token = self.frames_per_token / self.fps * SAMPLING_RATE
        features, token_arrays = [], []
        for k, row in enumerate(rows):
            tokens = np.asarray(tokens_of(row), dtype=np.int64)  # [T', G]
            audio = self.audio_of(row)
            if audio_shifts is not None and audio_shifts[k]:
                # circular: the clip keeps its length and loudness, only the timing against the motion changes
                audio = np.roll(audio, int(round(audio_shifts[k] * samples_per_token)))
            if windows is not None:
                start, length = windows[k]
                tokens = tokens[start : start + length]
                audio = audio[int(round(start * samples_per_token)) : int(round((start + length) * samples_per_token))]
            features.append(
                {"audio": audio, "emotion": row["emotion"], "intensity": row["intensity"], "speaker": row["speaker"]}
            )
            token_arrays.append(tokens)
        batch = self._collator(features)
        lengths = [len(t) for t in token_arrays]
        motion_tokens = torch.zeros(len(rows), max(lengths), token_arrays[0].shape[-1], dtype=torch.long)
        motion_mask = torch.zeros(len(rows), max(lengths), dtype=torch.bool)
        for k, tokens in enumerate(token_arrays):
            motion_tokens[k, : len(tokens)] = torch.from_numpy(tokens)
            motion_mask[k, : len(tokens)] = True
        batch.update(motion_tokens=motion_tokens, motion_mask=motion_mask)
        return batch


@dataclass
class RankingPairCollator:
    """Collates :class:`RankingPairDataset` items into one reward-model batch of ``2B`` rollouts (the ``i`` sides,
    then the ``j`` sides) plus ``labels [B]``; with ``snippet_length > 0`` each pair is cut to T-REX snippets."""

    rollouts: RolloutCollator
    snippet_length: int = 0
    min_snippet_length: int = 4
    snippet_alignment: str = "aligned"
    seed: int = 0

    def __post_init__(self):
        self._rng = random.Random(self.seed)

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows_i = [item["rollout_i"] for item in items]
        rows_j = [item["rollout_j"] for item in items]
        labels = torch.tensor([int(item["label"]) for item in items], dtype=torch.long)
        windows = None
        if self.snippet_length > 0:
            windows_i, windows_j = [], []
            for row_i, row_j, label in zip(rows_i, rows_j, labels.tolist()):
                start_i, start_j, length = sample_snippet_starts(
                    len(tokens_of(row_i)),
                    len(tokens_of(row_j)),
                    self.snippet_length,
                    i_is_better=bool(label),
                    alignment=self.snippet_alignment,
                    rng=self._rng,
                    min_snippet_length=self.min_snippet_length,
                )
                windows_i.append((start_i, length))
                windows_j.append((start_j, length))
            windows = windows_i + windows_j
        shifts = [int(item.get("shift_i", 0)) for item in items] + [int(item.get("shift_j", 0)) for item in items]
        batch = self.rollouts.encode(rows_i + rows_j, windows, shifts)
        batch["labels"] = labels
        return batch


# ---------------------------------------------------------------------------------------------------------------
# Trainer
# ---------------------------------------------------------------------------------------------------------------
MODEL_INPUT_KEYS: tuple[str, ...] = (
    "input_values",
    "attention_mask",
    "emotion_ids",
    "intensity_ids",
    "speaker_ids",
    "motion_tokens",
    "motion_mask",
)


class ESARMRewardTrainer(Trainer):
    """``Trainer`` whose loss is the pairwise ranking loss (eq. 1) on the returns of the two rollouts of each pair.

    ``evaluate`` runs :func:`evaluate_ranking` on ``eval_dataset`` (a demonstration split: rollouts and ground-truth
    rows, not pairs) and logs the result with the ``eval_`` prefix.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._metric_store = MetricStore()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]  # [B], 1 where rollout i is the better one
        outputs = model(**{key: inputs[key] for key in MODEL_INPUT_KEYS if key in inputs})
        returns_i, returns_j = outputs.returns.float().chunk(2)  # [B] each: the batch is the i sides, then the j sides
        loss = ranking_loss(returns_i, returns_j, labels)
        mode = "train" if model.training else "eval"
        self._metric_store.add(mode, "pair_accuracy", ((returns_i > returns_j).long() == labels).float().mean())
        self._metric_store.add(mode, "return_margin", ((returns_i - returns_j) * (2 * labels - 1)).mean())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        super().log(log_with_metrics(self, logs), start_time)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("ESARMRewardTrainer.evaluate needs an eval_dataset (a demonstration split)")
        if not isinstance(self.data_collator, RankingPairCollator):
            raise ValueError(f"data_collator must be a RankingPairCollator, got {type(self.data_collator).__name__}")
        model = self.accelerator.unwrap_model(self.model)
        metrics = evaluate_ranking(
            model, dataset, self.data_collator.rollouts, self.args.eval_batch_size, self.args.misalignment_shifts
        )
        metrics = {f"{metric_key_prefix}_{key}": value for key, value in metrics.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


# ---------------------------------------------------------------------------------------------------------------
# Held-out evaluation
# ---------------------------------------------------------------------------------------------------------------
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
    state = PartialState()
    with state.split_between_processes(items) as shard:
        values = score_rollouts(model, [demos[i] for i, _ in shard], collator, batch_size, [k for _, k in shard])
        scored = list(zip(shard, values))
    if state.num_processes > 1:
        scored = gather_object(scored)
    returns = dict(scored)
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
    state = PartialState()
    with state.split_between_processes(items) as shard:
        rows = [
            {**demos[truth[clips[k]]], "motion_tokens": swap_group_tokens(gt_tokens[k], policy_tokens[best[clips[k]][0]], g)}
            for k, g in shard
        ]  # fmt: skip
        scored = list(zip(shard, score_rollouts(model, rows, collator, batch_size) if rows else []))
    if state.num_processes > 1:
        scored = gather_object(scored)
    gains: dict[int, list[float]] = defaultdict(list)
    for (k, g), value in scored:
        gains[g].append(value - returns[(truth[clips[k]], 0)])
    for g, name in enumerate(names):
        metrics[f"gt_swap_gain_{name}"] = float(np.mean(gains[g]))
    return metrics


# ---------------------------------------------------------------------------------------------------------------
# Library entry point
# ---------------------------------------------------------------------------------------------------------------
def sta_context(sta_name_or_path: str | None) -> tuple[list[str], Any]:
    """Known speakers (the STA processor's) and the motion-prior config of a trained STA folder (``[]``/``None``)."""
    if sta_name_or_path is None:
        return [], None
    sta_config = ESARMSTAConfig.from_pretrained(sta_name_or_path)
    return model_speakers(sta_name_or_path), getattr(sta_config, "motion_prior_config", None)


def build_reward_model(config: ESARMRewardConfig, motion_prior_config=None, num_speakers: int = 0):
    """A trained reward model (``model_name_or_path``) or a fresh one: preset + overrides, with the token geometry
    (G, K, frames_per_token, fps) of the motion prior the demonstrations were tokenised with and room for
    ``num_speakers`` known speakers (ids 1..N)."""
    if config.model_name_or_path is not None:
        return ESARMRewardModel.from_pretrained(config.model_name_or_path)
    model_config = build_model_config(ESARMRewardModelConfig, config.model_config, config.model_overrides)
    values = model_config.to_dict()
    for key in ("transformers_version", "architectures", "model_type"):
        values.pop(key, None)
    values["num_speakers"] = max(int(values.get("num_speakers", 0)), num_speakers)
    if motion_prior_config is not None:
        for key in ("num_groups", "codebook_size", "frames_per_token", "fps"):
            values.pop(key, None)
        model_config = ESARMRewardModelConfig.from_motion_prior_config(motion_prior_config, **values)
    else:
        model_config = ESARMRewardModelConfig(**values)
    return ESARMRewardModel(model_config)


@torch.no_grad()
def code_pose_embeddings(prior, hidden_size: int, std: float, seed: int = 0) -> torch.Tensor:
    """Motion-token embeddings ``[G * K, hidden_size]`` (row ``g * K + k`` for code ``k`` of group ``g``, the reward
    model's layout) built from what each code *means*: the face pose the motion prior decodes a steady run of that
    code to, restricted to the group's face region, centred over the group's codes and sent through a fixed random
    Gaussian projection (which keeps distances between poses up to a small distortion, Johnson-Lindenstrauss),
    scaled to ``std`` per group.

    Why: the reward model sees motion only as code ids. Trained from random embeddings on a few hundred pairs it
    learns which ids the near-greedy policy emits rather than which motion is good; epsilon noise and captured
    motion both bring codes the policy rarely emits. Starting from pose geometry, a code next to the policy's
    codes (a real blink, a wider jaw) and a code far from it (a uniform random draw) start apart.
    """
    groups, codes = prior.num_groups, prior.codebook_size
    steps = 4  # a steady run: the decoder's convolutions see the same code on both sides
    ids = torch.arange(codes, device=prior.device)[:, None, None].expand(codes, steps, groups)
    poses = prior.decode(ids).float()  # [K, steps * frames_per_token, 52]
    poses = poses[:, poses.shape[1] // 2]  # the middle frame: [K, 52]
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for indices in prior.groups:
        pose = poses[:, indices].cpu()
        pose = pose - pose.mean(0, keepdim=True)
        projection = torch.randn(len(indices), hidden_size, generator=generator)
        embedding = pose @ projection
        rows.append(embedding * (std / embedding.std().clamp_min(1e-8)))
    return torch.cat(rows)  # [G * K, hidden]


def train_reward_model(config: ESARMRewardConfig) -> dict[str, Any]:
    """Train (or resume) the reward model, save it to ``config.output_dir``, evaluate it on the held-out demos and
    write the stage's done marker. Returns the metrics (``eval_accuracy``, ``eval_accuracy_gap_<g>``,
    ``eval_gt_beats_eps_<e>``, ...)."""
    if config.output_dir is None:
        raise ValueError("output_dir must be set for train_reward_model, got None")
    if config.demos_name_or_path is None:
        raise ValueError("demos_name_or_path must be set for train_reward_model, got None")
    set_seed(config.seed)
    speakers, motion_prior_config = sta_context(config.sta_name_or_path)
    model = build_reward_model(config, motion_prior_config, num_speakers=len(speakers))
    if config.token_embedding_init == "motion_prior" and config.model_name_or_path is None:
        if config.sta_name_or_path is None:
            raise ValueError("token_embedding_init='motion_prior' needs sta_name_or_path (its motion prior), got None")
        prior = ESARMSTAForGeneration.from_pretrained(config.sta_name_or_path).motion_prior.eval()
        model.get_input_embeddings().weight.data.copy_(
            code_pose_embeddings(prior, model.config.hidden_size, model.config.initializer_range, config.seed)
        )

    train_demos = load_split(config.demos_name_or_path, config.train_split)
    pairs = build_source_pairs(
        **demo_columns(train_demos),
        sources=config.ranking_sources,
        max_pairs_per_clip=config.max_pairs_per_clip,
        shifts=config.misalignment_shifts,
        vertex_error_margin=config.vertex_error_margin,
        ground_truth_negatives=config.ground_truth_negatives,
        seed=config.seed,
    )
    if not pairs:
        raise ValueError(
            f"demos_name_or_path {config.demos_name_or_path!r} gives no training pairs for ranking_sources "
            f"{config.ranking_sources} (stage 3 makes the rows of each source: see ESARMDemoConfig)"
        )
    counts = {source: sum(p.source == source for p in pairs) for source in config.ranking_sources}
    logger.info("reward model: %d training pairs from %d demonstration rows: %s", len(pairs), len(train_demos), counts)
    eval_source = config.eval_demos_name_or_path or config.demos_name_or_path
    eval_demos = load_split(eval_source, config.eval_split) if config.eval_split else None

    collator = RankingPairCollator(
        RolloutCollator(speakers, float(model.config.fps), int(model.config.frames_per_token)),
        config.snippet_length,
        config.min_snippet_length,
        config.snippet_alignment,
        seed=config.seed,
    )
    trainer = ESARMRewardTrainer(
        model=model,
        args=config,
        train_dataset=RankingPairDataset(train_demos, pairs),
        eval_dataset=eval_demos,
        data_collator=collator,
    )
    train_output = trainer.train(resume_from_checkpoint=resolve_resume_checkpoint(config))
    trainer.save_model(config.output_dir)
    metrics: dict[str, Any] = {
        "train_loss": train_output.training_loss,
        "train_steps": train_output.global_step,
        "train_pairs": len(pairs),
        **{f"train_pairs_{source}": count for source, count in counts.items()},
        "train_runtime_s": train_output.metrics.get("train_runtime"),
    }
    if eval_demos is not None:
        metrics.update(trainer.evaluate())
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        write_done_marker(config.output_dir, metrics)
    trainer.accelerator.wait_for_everyone()
    return metrics
