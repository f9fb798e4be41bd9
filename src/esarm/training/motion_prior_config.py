"""Config of stage 1, the VQ motion prior (:func:`esarm.training.motion_prior_trainer.train_motion_prior`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from .args import ESARMTrainingArguments, Interval


@dataclass
class ESARMMotionPriorTrainingConfig(ESARMTrainingArguments):
    """Arguments of stage 1: the shared :class:`~esarm.training.args.ESARMTrainingArguments` plus the fields below.

    ``model_config`` names an ``ESARMMotionPriorConfig`` preset; ``eval_split`` is the split of the final
    reconstruction metrics."""

    renamed_keys = {"eval_batch_size": "per_device_eval_batch_size"}

    max_frames: Annotated[int | None, Interval(min=1)] = field(
        default=64, metadata={"help": "Training windows of at most this many frames (random crops)."}
    )
    # changed TrainingArguments defaults
    per_device_eval_batch_size: Annotated[int, Interval(min=1)] = field(
        default=16, metadata={"help": "Clips per forward pass of the final reconstruction metrics."}
    )
    output_dir: str | None = field(default=None, metadata={"help": "Where the trained prior is saved."})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Batch size per device."})
    num_train_epochs: float = field(default=20.0, metadata={"help": "Epochs (ignored when max_steps > 0)."})
    label_names: list[str] | None = field(
        default_factory=lambda: ["blendshapes"],
        metadata={"help": "Input keys the Trainer treats as labels (so evaluation computes the loss)."},
    )
    prediction_loss_only: bool = field(default=True, metadata={"help": "Evaluation keeps losses only."})
