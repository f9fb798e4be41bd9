"""Stage 1: train the VQ motion prior on ground-truth blendshape sequences.

Loss = reconstruction + quantizer (both computed by :class:`~esarm.ESARMMotionPrior`). Logged: the two loss
terms, reconstruction MAE and codebook usage. After training,
:func:`esarm.evaluation.rollouts.evaluate_motion_prior` measures the
reconstruction of the evaluation split (MAE, codebook usage over the whole split, and lip / eye-forehead vertex
errors of the reconstructions when a face rig is available).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from transformers import Trainer, set_seed

from ..configuration_esarm import ESARMMotionPriorConfig
from ..data.collators import MotionPriorCollator
from ..data.loading import load_split
from ..evaluation.rollouts import evaluate_motion_prior
from ..modeling_motion_prior import ESARMMotionPrior
from ..rig import resolve_rig
from .args import ESARMTrainingArguments, build_model_config
from .checkpoints import resolve_resume_checkpoint, write_done_marker
from .metric_store import MetricStore, log_with_metrics

logger = logging.getLogger(__name__)


@dataclass
class ESARMMotionPriorTrainingConfig(ESARMTrainingArguments):
    """Arguments of stage 1 (the ``TrainingArguments`` fields plus the ones below; defaults changed for this
    stage: no wandb/tensorboard, keep the dataset's columns, one saved checkpoint)."""

    dataset_name_or_path: str | None = field(
        default=None, metadata={"help": "Corpus folder written by `save_to_disk` (DatasetDict with splits)."}
    )
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str | None = field(
        default="validation", metadata={"help": "Split for the final reconstruction metrics (None: skip)."}
    )
    model_config: str = field(
        default="tiny",
        metadata={"help": "ESARMMotionPriorConfig preset name (tiny, base) or a config folder / json file."},
    )
    model_overrides: str | None = field(
        default=None, metadata={"help": "Json object (or yaml mapping) of config fields overriding the preset."}
    )
    max_frames: int | None = field(
        default=64, metadata={"help": "Training windows of at most this many frames (random crops)."}
    )
    rig_path: str | None = field(
        default=None, metadata={"help": "Face rig .npz for vertex errors (default: $ESARM_RIG; none: skipped)."}
    )
    eval_batch_size: int = field(default=16, metadata={"help": "Batch size of the final evaluation."})
    # changed TrainingArguments defaults
    output_dir: str | None = field(default=None, metadata={"help": "Where the trained prior is saved."})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Batch size per device."})
    num_train_epochs: float = field(default=20.0, metadata={"help": "Epochs (ignored when max_steps > 0)."})
    label_names: list[str] | None = field(
        default_factory=lambda: ["blendshapes"],
        metadata={"help": "Input keys the Trainer treats as labels (so evaluation computes the loss)."},
    )
    prediction_loss_only: bool = field(default=True, metadata={"help": "Evaluation keeps losses only."})


class ESARMMotionPriorTrainer(Trainer):
    """``Trainer`` whose loss is the prior's own (reconstruction + quantizer) and which logs the terms, the
    reconstruction MAE and the codebook usage."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._metric_store = MetricStore()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        blendshapes, mask = inputs["blendshapes"], inputs["attention_mask"]  # [B, T, 52], [B, T]
        outputs = model(blendshapes=blendshapes, attention_mask=mask)
        mode = "train" if model.training else "eval"
        weight = mask.unsqueeze(-1).to(blendshapes.dtype)
        mae = ((outputs.reconstruction - blendshapes).abs() * weight).sum() / (weight.sum() * blendshapes.shape[-1])
        store = self._metric_store
        store.add(mode, "reconstruction_mae", mae)
        for name in ("reconstruction_loss", "quantizer_loss", "codebook_usage"):
            value = getattr(outputs, name, None)
            if value is not None:
                store.add(mode, name, value)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        super().log(log_with_metrics(self, logs), start_time)


def train_motion_prior(config: ESARMMotionPriorTrainingConfig) -> dict[str, Any]:
    """Train (or resume) the motion prior, save it to ``config.output_dir`` with ``save_pretrained``, evaluate it
    and write the stage's done marker. Returns the final metrics."""
    if config.output_dir is None:
        raise ValueError("output_dir must be set for train_motion_prior, got None")
    set_seed(config.seed)
    train_dataset = load_split(config.dataset_name_or_path, config.train_split).select_columns(["blendshapes"])
    train_dataset = train_dataset.with_format("numpy")
    model = ESARMMotionPrior(build_model_config(ESARMMotionPriorConfig, config.model_config, config.model_overrides))
    collator = MotionPriorCollator(max_frames=config.max_frames, seed=config.seed)
    trainer = ESARMMotionPriorTrainer(model=model, args=config, train_dataset=train_dataset, data_collator=collator)
    train_output = trainer.train(resume_from_checkpoint=resolve_resume_checkpoint(config))
    trainer.save_model(config.output_dir)

    metrics: dict[str, Any] = {"train_loss": train_output.training_loss, "train_steps": train_output.global_step}
    metrics["train_runtime_s"] = train_output.metrics.get("train_runtime")
    if config.eval_split:
        eval_dataset = load_split(config.dataset_name_or_path, config.eval_split)
        rig = resolve_rig(config.rig_path)
        evaluation = evaluate_motion_prior(trainer.accelerator.unwrap_model(model), eval_dataset, rig)
        metrics.update({f"eval_{k}": v for k, v in evaluation.items()})
        scalars = {k: v for k, v in evaluation.items() if not isinstance(v, list)}  # a log line, not a print
        logger.info("motion prior on %s: %s", config.eval_split, scalars)
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        write_done_marker(config.output_dir, metrics)
    trainer.accelerator.wait_for_everyone()
    return metrics
