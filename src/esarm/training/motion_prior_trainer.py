"""Stage 1: the trainer of the VQ motion prior (config: :mod:`~esarm.training.motion_prior_config`);
train the motion prior on ground-truth blendshape sequences.

Loss = reconstruction + quantizer (both computed by :class:`~esarm.ESARMMotionPrior`). Logged: the two loss
terms, reconstruction MAE and codebook usage. After training,
:func:`esarm.evaluation.rollouts.evaluate_motion_prior` measures the
reconstruction of the evaluation split (MAE, codebook usage over the whole split, and lip / eye-forehead vertex
errors of the reconstructions when a face rig is available).
"""

from __future__ import annotations

import logging
from typing import Any

from transformers import Trainer, set_seed

from ..configuration_esarm import ESARMMotionPriorConfig
from ..data.collators import MotionPriorCollator
from ..data.loading import load_split
from ..evaluation.rollouts import evaluate_motion_prior
from ..modeling_motion_prior import ESARMMotionPrior
from ..rig import resolve_rig
from .args import build_model_config
from .checkpoints import resolve_resume_checkpoint, write_done_marker
from .metric_store import MetricStore, log_with_metrics
from .motion_prior_config import ESARMMotionPriorTrainingConfig

logger = logging.getLogger(__name__)


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
        evaluation = evaluate_motion_prior(
            trainer.accelerator.unwrap_model(model), eval_dataset, rig, config.per_device_eval_batch_size
        )
        metrics.update({f"eval_{k}": v for k, v in evaluation.items()})
        scalars = {k: v for k, v in evaluation.items() if not isinstance(v, list)}  # a log line, not a print
        logger.info("motion prior on %s: %s", config.eval_split, scalars)
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        write_done_marker(config.output_dir, metrics)
    trainer.accelerator.wait_for_everyone()
    return metrics
