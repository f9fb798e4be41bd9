"""Config of stage 3, the automatically ranked demonstrations (:func:`esarm.training.demos_trainer.collect_demos`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from ..blendshapes import FACE_REGIONS
from ..evaluation.rollouts import DEFAULT_EPSILONS
from .args import ESARMTrainingArguments, Interval, OneOf, renamed_to


def _splits_to_fields(splits: Any) -> dict[str, Any]:
    """The deprecated ``splits: [train, validation]`` as ``train_split`` / ``eval_split``."""
    splits = list(splits)
    if not 1 <= len(splits) <= 2:
        raise ValueError(f"splits (deprecated: train_split, eval_split) must name one or two splits, got {splits}")
    return {"train_split": splits[0], "eval_split": splits[1] if len(splits) > 1 else None}


@dataclass
class ESARMDemoTrainingConfig(ESARMTrainingArguments):
    """Arguments of stage 3: the shared :class:`~esarm.training.args.ESARMTrainingArguments` plus the fields below
    (no Trainer: generation only). The demonstrations roll out on ``train_split`` and ``eval_split`` of
    ``dataset_name_or_path``; ``per_device_eval_batch_size`` clips are generated together."""

    renamed_keys = {"batch_size": "per_device_eval_batch_size",
                    "splits": renamed_to("'train_split' and 'eval_split'", _splits_to_fields)}  # fmt: skip

    sta_name_or_path: str | None = field(default=None, metadata={"help": "Trained STA model folder (stage 2)."})
    epsilons: Annotated[list[float], Interval(min=0, max=1, non_empty=True)] = field(
        default_factory=lambda: list(DEFAULT_EPSILONS), metadata={"help": "Noise levels of the epsilon-greedy policy."}
    )
    num_rollouts: Annotated[int, Interval(min=1)] = field(default=2, metadata={"help": "Rollouts per clip and epsilon."})
    max_clips: Annotated[int | None, Interval(min=1)] = field(
        default=None, metadata={"help": "Use at most this many clips per split."}
    )
    do_sample: bool = field(
        default=False, metadata={"help": "Sample the policy's own distribution (else greedy) when not exploring."}
    )
    temperature: Annotated[float, Interval(min=0, exclude_min=True)] = field(
        default=1.0, metadata={"help": "Sampling temperature (with do_sample)."}
    )
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
    ground_truth_epsilons: Annotated[list[float], Interval(min=0, max=1, exclude_min=True)] = field(
        default_factory=list,
        metadata={
            "help": "Also write num_rollouts copies of each clip's ground-truth tokens with exploration noise of "
            "kind epsilon_noise on every region at each of these epsilons (source 'ground_truth_epsilon'): noise "
            "on top of captured motion rather than on the policy's, for the reward model's ground_truth_epsilon "
            "source."
        },
    )
    epsilon_noise: Literal["uniform", "hold"] = field(
        default="uniform",
        metadata={
            "help": "Exploration noise of the epsilon rollouts: 'uniform' (the paper's epsilon-greedy: each step and "
            "group independently draws a random code with probability epsilon) or 'hold' (a noisy step draws a "
            "random code and holds it for a run whose length is drawn from the ground truth's run lengths of that "
            "region, so noise changes codes as often as captured motion does; a share epsilon of steps is noisy)."
        },
    )
    epsilon_regions: Annotated[list[str] | None, OneOf(FACE_REGIONS)] = field(
        default=None,
        metadata={
            "help": "Face regions (codebook groups: mouth, eyes, brows) the exploration noise applies to; the other "
            "regions keep the policy's tokens. None: every region (the paper)."
        },
    )
    # changed TrainingArguments defaults
    output_dir: str | None = field(default=None, metadata={"help": "Where the demonstration DatasetDict is saved."})
    per_device_eval_batch_size: Annotated[int, Interval(min=1)] = field(
        default=16, metadata={"help": "Clips generated together."}
    )

    def __post_init__(self):
        super().__post_init__()
        # the noisy copies of the ground truth are copies of its rows
        if self.ground_truth_epsilons and not self.include_ground_truth:
            raise ValueError("ground_truth_epsilons needs include_ground_truth=True, got include_ground_truth=False")
        # the run lengths of held noise come from the ground-truth tokens
        if self.epsilon_noise == "hold" and not self.include_ground_truth:
            raise ValueError("epsilon_noise='hold' needs include_ground_truth=True, got include_ground_truth=False")
        self.epsilons = [float(e) for e in self.epsilons]

    @property
    def splits(self) -> list[str]:
        """The corpus splits rolled out on: ``train_split`` and, when set, ``eval_split``."""
        return [self.train_split] + ([self.eval_split] if self.eval_split else [])

