"""Config of stage 4, the reward model (:func:`esarm.training.reward_trainer.train_reward_model`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from ..data.demonstrations import RANKING_SOURCES
from .args import ESARMTrainingArguments, Interval, OneOf


@dataclass
class ESARMRewardTrainingConfig(ESARMTrainingArguments):
    """Arguments of stage 4: the shared :class:`~esarm.training.args.ESARMTrainingArguments` plus the fields below.

    ``dataset_name_or_path`` is the ranked-demonstration dataset of stage 3 (its ``train_split`` trains, its
    ``eval_split`` measures the pairwise accuracy); ``model_config`` names an ``ESARMRewardModelConfig`` preset."""

    renamed_keys = {"demos_name_or_path": "dataset_name_or_path", "eval_demos_name_or_path": "eval_dataset_name_or_path",
                    "eval_batch_size": "per_device_eval_batch_size"}  # fmt: skip

    eval_dataset_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Held-out demonstrations from another stage-3 run (its eval_split), e.g. the paper's uniform "
            "epsilon noise, so that reward models trained on different kinds of noise are compared on one set. "
            "None: dataset_name_or_path."
        },
    )
    sta_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Trained STA folder: its processor gives the speaker list and its motion prior the token "
            "geometry (G, K, frames_per_token, fps) of a fresh reward model."
        },
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Start from this trained reward model folder instead of a fresh one."}
    )
    ranking_sources: Annotated[list[str], OneOf(RANKING_SOURCES)] = field(
        default_factory=lambda: ["epsilon"],
        metadata={"help": f"Automatic ranking sources of the training pairs, any of {list(RANKING_SOURCES)}."},
    )
    max_pairs_per_clip: Annotated[int | None, Interval(min=1)] = field(
        default=None, metadata={"help": "Sample at most this many pairs per clip and ranking source (None: all)."}
    )
    misalignment_shifts: list[int] = field(
        default_factory=lambda: [2, 4, 8],
        metadata={"help": "Audio shifts (motion tokens, either direction) of the misalignment source's worse side."},
    )
    ground_truth_negatives: Literal["all", "near_policy"] = field(
        default="all",
        metadata={
            "help": "ground_truth source: the captured animation ranks above 'all' generated rows of its clip, or "
            "only the 'near_policy' ones (smallest-epsilon, emotion-mismatch and checkpoint rollouts): the pairs "
            "the epsilon ranking does not already imply."
        },
    )
    vertex_error_margin: Annotated[float, Interval(min=0)] = field(
        default=0.5, metadata={"help": "vertex_error source: minimum LVE + EVE difference (mm) of a pair."}
    )
    snippet_length: Annotated[int, Interval(min=0)] = field(
        default=0, metadata={"help": "T-REX snippets: max snippet length in motion tokens (0: whole rollouts)."}
    )
    min_snippet_length: Annotated[int, Interval(min=1)] = field(
        default=4, metadata={"help": "Minimum snippet length in motion tokens."}
    )
    snippet_alignment: Literal["aligned", "trex"] = field(
        default="aligned",
        metadata={
            "help": "'aligned': both snippets cover the same time window (same audio); 'trex': the better "
            "rollout's snippet starts no earlier than the worse one's (T-REX's sampling)."
        },
    )
    token_embedding_init: Literal["random", "motion_prior"] = field(
        default="random",
        metadata={
            "help": "'random': the reward model learns its motion-token embeddings from scratch; 'motion_prior': "
            "each code starts as a fixed random projection of the face pose the STA model's motion prior decodes "
            "it to (see code_pose_embeddings), so that codes of similar poses start close."
        },
    )
    # changed TrainingArguments defaults
    per_device_eval_batch_size: Annotated[int, Interval(min=1)] = field(
        default=16, metadata={"help": "Rollouts per forward pass in evaluation."}
    )
    output_dir: str | None = field(default=None, metadata={"help": "Where the trained reward model is saved."})
    learning_rate: float = field(default=3e-4, metadata={"help": "AdamW learning rate."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Pairs per device and step."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs over the pairs (unless max_steps > 0)."})

    def __post_init__(self):
        super().__post_init__()
        # a snippet is cut between the two lengths: the shortest may not exceed the longest
        if self.snippet_length and self.min_snippet_length > self.snippet_length:
            raise ValueError(
                f"min_snippet_length must be <= snippet_length={self.snippet_length}, got {self.min_snippet_length}"
            )
        # a shift of 0 would pair a motion with its own aligned audio as the worse side (a pair with no signal)
        if not self.misalignment_shifts or any(int(k) == 0 for k in self.misalignment_shifts):
            raise ValueError(f"misalignment_shifts must be non-zero token shifts, got {self.misalignment_shifts}")
