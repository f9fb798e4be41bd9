"""Demonstration data of stages 3 and 4: the rows stage 3 writes, the ranking pairs built from them and the
datasets and collators that feed them to the reward model.

A demonstration split (:func:`esarm.training.demos_trainer.collect_demos`) holds one row per rollout of a clip
(column ``source``: ``epsilon``, ``emotion_mismatch``, ``checkpoint``, ``ground_truth``, ``ground_truth_epsilon``)
with its motion tokens, its condition and its audio (or a reference to the corpus clip). The ranking sources
(:data:`RANKING_SOURCES`, see :mod:`esarm.training.reward_trainer`) turn the rows of one clip into pairs
(:func:`build_source_pairs`); :class:`RankingPairDataset` and :class:`RankingPairCollator` batch them.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from datasets import Array2D, Features, Value
from datasets import Sequence as SequenceFeature
from torch.utils.data import Dataset as TorchDataset

from ..blendshapes import NUM_BLENDSHAPES
from ..labels import emotion_to_id, intensity_to_id, speaker_to_id
from .collators import STACollator
from .loading import load_split
from .schema import SAMPLING_RATE, decode_audio_value

CLIP_ID_COLUMNS: tuple[str, ...] = ("clip_id", "id")
RANKING_SOURCES: tuple[str, ...] = (
    "epsilon", "ground_truth", "misalignment", "emotion_mismatch", "checkpoint", "vertex_error", "ground_truth_epsilon",
)  # fmt: skip
# the stage-3 sources of demonstration rows
ROW_SOURCES: tuple[str, ...] = ("epsilon", "ground_truth", "emotion_mismatch", "checkpoint", "ground_truth_epsilon")
# stage-3 row sources made by the STA policy (the rollouts whose quality the reward model must rank)
GENERATED_ROW_SOURCES: tuple[str, ...] = ("epsilon", "emotion_mismatch", "checkpoint")


def demonstration_features(num_groups: int) -> Features:
    """The ``datasets`` features of a demonstration split whose motion tokens have ``num_groups`` codebooks."""
    string, int32, float32 = Value("string"), Value("int32"), Value("float32")
    return Features(
        {
            "id": string, "speaker": string, "emotion": string, "intensity": int32, "sentence": string,
            "audio": SequenceFeature(float32), "sampling_rate": int32, "source_path": string, "source_split": string,
            "source_index": Value("int64"), "emotion_id": int32, "intensity_id": int32, "speaker_id": int32,
            "epsilon": float32, "rollout": int32, "rank": int32, "is_ground_truth": Value("bool"), "source": string,
            "generated_emotion": string, "checkpoint_step": Value("int64"), "lve": float32, "eve": float32,
            "motion_tokens": Array2D((None, num_groups), "int64"),
            "blendshapes": Array2D((None, NUM_BLENDSHAPES), "float32"),
        }
    )  # fmt: skip


def clip_fields(row: dict[str, Any], source_path: str, split: str, index: int, speakers, store_audio: bool = True):
    """The fields a demonstration row copies from its corpus clip ``row`` (``split[index]`` of ``source_path``):
    condition, ids, and the audio (or, without ``store_audio``, only the reference to the clip)."""
    return {
        "id": row["id"],
        "speaker": row["speaker"],
        "emotion": row["emotion"],
        "intensity": int(row["intensity"]),
        "sentence": row.get("sentence", ""),
        "audio": decode_audio_value(row["audio"]) if store_audio else np.zeros(0, np.float32),
        "sampling_rate": int(row.get("sampling_rate", 16000)),
        "source_path": source_path,
        "source_split": split,
        "source_index": index,
        "emotion_id": emotion_to_id(row["emotion"]),
        "intensity_id": intensity_to_id(row["intensity"]),
        "speaker_id": speaker_to_id(row["speaker"], speakers),
    }


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
    options = {"shifts": shifts, "vertex_error_margin": vertex_error_margin, "checkpoint_steps": checkpoint_steps,
               "vertex_errors": vertex_errors, "ground_truth_negatives": ground_truth_negatives}  # fmt: skip
    pairs: list[RankingPair] = []
    for clip in sorted(rows_by_clip):
        rows = _ClipRows(rows_by_clip[clip], row_sources, epsilons)
        for source in sources:
            candidates = _PAIR_CANDIDATES[source](rows, epsilons, row_sources, **options)
            if max_pairs_per_clip is not None and len(candidates) > max_pairs_per_clip:
                candidates = rng.sample(candidates, max_pairs_per_clip)
            pairs.extend(_ordered_pair(source, candidate, rng) for candidate in candidates)
    return pairs


class _ClipRows:
    """The demonstration rows of one clip, by the stage-3 source that made them."""

    def __init__(self, rows: list[int], row_sources: Sequence[str], epsilons: Sequence[float]):
        self.kind = {name: [r for r in rows if row_sources[r] == name] for name in ROW_SOURCES}
        best = min((float(epsilons[r]) for r in self.kind["epsilon"]), default=None)
        self.best_rollouts = [r for r in self.kind["epsilon"] if float(epsilons[r]) == best]
        self.generated = self.kind["epsilon"] + self.kind["emotion_mismatch"] + self.kind["checkpoint"]


# Each source's candidates of one clip: (better row, worse row, better's audio shift, worse's audio shift).
def _ranked(rows: Sequence[int], score) -> list[tuple[int, int, int, int]]:
    """Every pair of ``rows`` with different ``score``, the lower score first (the better one)."""
    return [(a, b, 0, 0) if score(a) < score(b) else (b, a, 0, 0)
            for a, b in itertools.combinations(rows, 2) if score(a) != score(b)]  # fmt: skip


def _epsilon_pairs(rows, epsilons, row_sources, **_):
    return _ranked(rows.kind["epsilon"], lambda r: epsilons[r])


def _ground_truth_epsilon_pairs(rows, epsilons, row_sources, **_):
    # noise on top of the captured motion: the ground truth (epsilon 0) above its noisy copies, and among those
    # the less noisy one above
    chain = rows.kind["ground_truth"] + rows.kind["ground_truth_epsilon"]
    return _ranked(chain, lambda r: 0.0 if row_sources[r] == "ground_truth" else float(epsilons[r]))


def _ground_truth_pairs(rows, epsilons, row_sources, ground_truth_negatives="all", **_):
    negatives = rows.generated
    if ground_truth_negatives == "near_policy":
        negatives = rows.best_rollouts + rows.kind["emotion_mismatch"] + rows.kind["checkpoint"]
    return [(g, r, 0, 0) for g in rows.kind["ground_truth"] for r in negatives]


def _misalignment_pairs(rows, epsilons, row_sources, shifts=(2, 4, 8), **_):
    return [(a, a, 0, k) for a in rows.kind["ground_truth"] + rows.best_rollouts for k in shifts]


def _emotion_mismatch_pairs(rows, epsilons, row_sources, **_):
    return [(b, m, 0, 0) for m in rows.kind["emotion_mismatch"] for b in rows.kind["ground_truth"] + rows.best_rollouts]


def _checkpoint_pairs(rows, epsilons, row_sources, checkpoint_steps=None, **_):
    # the final model's smallest-epsilon rollouts count as the latest checkpoint; a later step ranks higher
    step = {r: checkpoint_steps[r] for r in rows.kind["checkpoint"]} | {r: math.inf for r in rows.best_rollouts}
    return _ranked(sorted(step), lambda r: -step[r])


def _vertex_error_pairs(rows, epsilons, row_sources, vertex_errors=None, vertex_error_margin=0.5, **_):
    scored = [r for r in rows.generated if math.isfinite(float(vertex_errors[r]))]
    return [pair for pair in _ranked(scored, lambda r: float(vertex_errors[r]))
            if float(vertex_errors[pair[1]]) - float(vertex_errors[pair[0]]) > vertex_error_margin]  # fmt: skip


_PAIR_CANDIDATES = {
    "epsilon": _epsilon_pairs, "ground_truth": _ground_truth_pairs, "misalignment": _misalignment_pairs,
    "emotion_mismatch": _emotion_mismatch_pairs, "checkpoint": _checkpoint_pairs,
    "vertex_error": _vertex_error_pairs, "ground_truth_epsilon": _ground_truth_epsilon_pairs,
}  # fmt: skip


def _ordered_pair(source: str, candidate: tuple[int, int, int, int], rng: random.Random) -> RankingPair:
    """A :class:`RankingPair` of one candidate, its order (and a misalignment's shift direction) random."""
    better, worse, better_shift, worse_shift = candidate
    if source == "misalignment" and rng.random() < 0.5:
        worse_shift = -worse_shift
    if rng.random() < 0.5:
        return RankingPair(better, worse, 1, source, better_shift, worse_shift)
    return RankingPair(worse, better, 0, source, worse_shift, better_shift)


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
