"""Stage 2: the trainer of the speech-to-animation model (config: :mod:`~esarm.training.sta_config`): train the speech-to-animation (STA) model with the motion prior frozen.

Targets are the motion-prior tokens of the ground-truth blendshapes. Loss = teacher-forced cross-entropy over
motion tokens + emotion classification + (optionally) the phone-class loss of the content branch (all inside the
model's ``forward``) + ``cross_reconstruction_weight``
times the cross-reconstruction loss of the emotion-disentangling encoder: for clip A and a clip B of the same
speaker and sentence with another emotion, the content features of A (aligned to B's length by
:func:`esarm.frames.resample` or by DTW on the audio-derived content features) combined with B's emotion features and style must
predict B's tokens.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Trainer, set_seed

from ..configuration_esarm import ESARMMotionPriorConfig, ESARMSTAConfig
from ..data.augmentation import AudioAugmenter
from ..data.collators import PartnerIndex, STACollator
from ..data.loading import load_split
from ..data.phone_features import add_phone_features
from ..frames import resample
from ..labels import dataset_speakers
from ..modeling_sta import ESARMSTAForGeneration
from ..phonetic import decoder_settings
from ..processing_esarm import ESARMProcessor
from .args import build_model_config, parse_overrides
from .checkpoints import resolve_resume_checkpoint, write_done_marker
from .metric_store import MetricStore, log_with_metrics
from .sta_config import ESARMSTATrainingConfig

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# targets and alignment


@torch.no_grad()
def motion_targets(model, blendshapes: torch.Tensor, frame_mask: torch.Tensor, audio_mask: torch.Tensor):
    """Motion-prior tokens of ground-truth blendshapes, on the STA model's step grid.

    Args:
        model: the (unwrapped) STA model holding the frozen ``motion_prior``.
        blendshapes: ``[B, T, 52]``; frame_mask: ``[B, T]``; audio_mask: ``[B, S]`` (valid samples).
    Returns ``motion_tokens [B, T', G]`` and ``motion_mask [B, T']`` with ``T' = model.num_motion_steps(S)``: a
    step is valid when it is inside both the clip's audio and its animation.
    """
    prior = model.motion_prior
    tokens = prior.encode(blendshapes, frame_mask)  # [B, ceil(T / f), G]
    num_steps = int(model.num_motion_steps(audio_mask.shape[1]))
    f = prior.frames_per_token
    clip_tokens = (frame_mask.sum(1) + f - 1) // f  # [B]
    clip_steps = torch.tensor(
        [int(model.num_motion_steps(int(n))) for n in audio_mask.sum(1).tolist()], device=tokens.device
    )
    if tokens.shape[1] < num_steps:
        tokens = F.pad(tokens, (0, 0, 0, num_steps - tokens.shape[1]))
    tokens = tokens[:, :num_steps]
    steps = torch.arange(num_steps, device=tokens.device)
    motion_mask = steps[None] < torch.minimum(clip_tokens, clip_steps)[:, None]
    return tokens * motion_mask[..., None], motion_mask


def dtw_path(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """For each target step, the source step matched by dynamic time warping (cosine distance) ``[len(target)]``."""
    a = source / (np.linalg.norm(source, axis=1, keepdims=True) + 1e-8)
    b = target / (np.linalg.norm(target, axis=1, keepdims=True) + 1e-8)
    cost = 1.0 - b @ a.T  # [Tb, Ta]
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            acc[i, j] = cost[i - 1, j - 1] + min(acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1])
    match = np.zeros(n, dtype=np.int64)
    i, j = n, m
    while i > 0 and j > 0:
        match[i - 1] = j - 1
        step = np.argmin([acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]])
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    return match


def align_content(content: torch.Tensor, lengths: torch.Tensor, target_lengths: torch.Tensor, target_steps: int,
                  method: str = "resample", reference: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Align per-clip content features ``[B, T_a, H]`` (valid ``lengths``) to ``target_lengths`` on a grid of
    ``target_steps`` -> ``[B, target_steps, H]`` (zeros after each target length). ``method="dtw"`` matches the
    steps of ``content`` against ``reference`` ``[B, T_b, H]`` (the partner clip's own content features)."""
    out = content.new_zeros(content.shape[0], target_steps, content.shape[-1])
    for i in range(content.shape[0]):
        n, m = int(lengths[i]), int(target_lengths[i])
        if n == 0 or m == 0:
            continue
        if method == "dtw" and reference is not None:
            match = dtw_path(
                content[i, :n].detach().float().cpu().numpy(), reference[i, :m].detach().float().cpu().numpy()
            )
            out[i, :m] = content[i, torch.as_tensor(match, device=content.device)]
        else:
            out[i, :m] = resample(content[i : i + 1, :n], lengths.new_tensor([n]), lengths.new_tensor([m]))[0][0]
    return out


# ---------------------------------------------------------------------------------------------------------------
# trainer


class ESARMSTATrainer(Trainer):
    """``Trainer`` for the STA model: token targets from the frozen prior, the model's own loss (cross-entropy
    + emotion classification) plus the cross-reconstruction loss; logs token accuracy and emotion accuracy."""

    def __init__(self, *args, cross_reconstruction_weight: float = 0.0, cross_alignment: str = "resample", **kwargs):
        super().__init__(*args, **kwargs)
        self.cross_reconstruction_weight = cross_reconstruction_weight
        self.cross_alignment = cross_alignment
        self._metric_store = MetricStore()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        sta = self.accelerator.unwrap_model(model)
        sta.motion_prior.eval()  # frozen: no dropout, no codebook updates
        mode = "train" if model.training else "eval"
        tokens, token_mask = motion_targets(sta, inputs["blendshapes"], inputs["frame_mask"], inputs["attention_mask"])
        conditions = {k: inputs[k] for k in ("emotion_ids", "intensity_ids", "speaker_ids")}
        outputs = model(
            input_values=inputs["input_values"],
            attention_mask=inputs["attention_mask"],
            motion_tokens=tokens,
            motion_mask=token_mask,
            phone_classes=inputs.get("phone_classes"),
            phone_features=inputs.get("phone_features"),
            **conditions,
        )
        loss = outputs.loss
        store = self._metric_store
        with torch.no_grad():
            logits = outputs.logits[:, : tokens.shape[1]]  # [B, T', G, K]
            correct = (logits.argmax(-1) == tokens).float()
            store.add(mode, "token_accuracy", correct[token_mask].mean())
            store.add(mode, "token_ce", F.cross_entropy(logits[token_mask].flatten(0, 1), tokens[token_mask].flatten()))
            if getattr(outputs, "emotion_logits", None) is not None:
                store.add(
                    mode,
                    "emotion_accuracy",
                    (outputs.emotion_logits.argmax(-1) == inputs["emotion_ids"]).float().mean(),
                )
            if outputs.phone_loss is not None:
                store.add(mode, "phone_loss", outputs.phone_loss)
            if outputs.mouth_regression_loss is not None:
                store.add(mode, "mouth_regression_loss", outputs.mouth_regression_loss)
        if self.cross_reconstruction_weight > 0 and "partner_input_values" in inputs and inputs["has_partner"].any():
            cross = self.cross_reconstruction_loss(sta, inputs, outputs)
            store.add(mode, "cross_reconstruction_loss", cross)
            loss = loss + self.cross_reconstruction_weight * cross
        store.add(mode, "loss_total", loss)
        return (loss, outputs) if return_outputs else loss

    def cross_reconstruction_loss(self, sta, inputs, outputs) -> torch.Tensor:
        """Content of clip A + emotion and style of its partner B -> B's motion tokens (cross-entropy).

        A's content features are the ones of the main forward pass (``outputs``), so each clip goes through the
        speech encoder once per step.
        """
        keep = inputs["has_partner"]
        b = {k[len("partner_") :]: v[keep] for k, v in inputs.items() if k.startswith("partner_")}
        tokens_b, mask_b = motion_targets(sta, b["blendshapes"], b["frame_mask"], b["attention_mask"])
        content_a, steps_a = outputs.content_features[keep], outputs.motion_mask[keep]
        features_b, steps_b = sta.encode_audio(b["input_values"], b["attention_mask"], num_steps=mask_b.sum(1),
                                               phone_features=b.get("phone_features"))  # fmt: skip
        content_b, _ = sta.encode_content(audio_features=features_b, feature_mask=steps_b)
        emotion_b = sta.encode_emotion(audio_features=features_b, feature_mask=steps_b)
        aligned = align_content(
            content_a, steps_a.sum(1), mask_b.sum(1), tokens_b.shape[1], self.cross_alignment, content_b
        )
        logits = sta.decode_features(
            aligned, emotion_b, b["emotion_ids"], b["intensity_ids"], b["speaker_ids"], tokens_b, mask_b
        )  # [B, T', G, K]
        return F.cross_entropy(logits[mask_b].flatten(0, 1), tokens_b[mask_b].flatten())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        super().log(log_with_metrics(self, logs), start_time)


# ---------------------------------------------------------------------------------------------------------------
# entry point


def build_sta_model(config: ESARMSTATrainingConfig, speakers: list[str]):
    """A fresh STA model: preset + overrides, ``num_speakers`` from the training split, the trained prior loaded
    and frozen."""
    path = config.motion_prior_name_or_path
    if path is None or not Path(path).is_dir():
        raise ValueError(f"motion_prior_name_or_path must be a trained motion prior folder, got {path!r}")
    overrides = parse_overrides(config.model_overrides)
    overrides["num_speakers"] = len(speakers)
    overrides["motion_prior_config"] = ESARMMotionPriorConfig.from_pretrained(path).to_dict()
    model = ESARMSTAForGeneration(build_model_config(ESARMSTAConfig, config.model_config, overrides))
    model.load_motion_prior(path)
    model.motion_prior.requires_grad_(False)
    model.motion_prior.eval()
    return model


def train_sta(config: ESARMSTATrainingConfig) -> dict[str, Any]:
    """Train (or resume) the STA model, save it (with its processor) to ``config.output_dir``, evaluate
    teacher-forced metrics on ``config.eval_split`` and write the done marker. Returns the final metrics."""
    if config.output_dir is None:
        raise ValueError("output_dir must be set for train_sta, got None")
    set_seed(config.seed)
    train_dataset = load_split(config.dataset_name_or_path, config.train_split)
    speakers = dataset_speakers(train_dataset)
    model = build_sta_model(config, speakers)
    # phone front end: PocketSphinx decodes every clip once, cached in the dataset (esarm.data.phone_features). The
    # settings the cache is decoded with go into the model's config, so that the saved model decodes the phones it
    # was trained on after the package's defaults change
    uses_phones = model.phones is not None
    if uses_phones:
        model.config.phone_decoder_settings = decoder_settings(model.config.phone_decoder_settings)
        train_dataset = add_phone_features(train_dataset, model.config.phone_decoder_settings)
    use_pairs = config.cross_reconstruction_weight > 0
    partner_index = PartnerIndex(train_dataset) if use_pairs else None
    if partner_index is not None:
        logger.info("%d of %d training clips have a partner clip", partner_index.num_with_partner, len(train_dataset))
        train_dataset = train_dataset.map(lambda _, i: {"__index__": i}, with_indices=True)
    collator = STACollator(
        speakers=speakers,
        fps=model.config.fps,
        speaker_dropout=config.speaker_dropout,
        max_seconds=config.max_seconds,
        partner_index=partner_index,
        seed=config.seed,
        phone_targets=model.phone_head is not None,
        phone_features=uses_phones,
        augmentation=AudioAugmenter(augmentation) if (augmentation := config.augmentation_config()) else None,
    )
    trainer = ESARMSTATrainer(
        model=model,
        args=config,
        train_dataset=train_dataset,
        data_collator=collator,
        cross_reconstruction_weight=config.cross_reconstruction_weight,
        cross_alignment=config.cross_alignment,
    )
    train_output = trainer.train(resume_from_checkpoint=resolve_resume_checkpoint(config))
    trainer.save_model(config.output_dir)
    if trainer.is_world_process_zero():
        ESARMProcessor(speakers=speakers, fps=model.config.fps,
                       phone_decoder_settings=model.config.phone_decoder_settings).save_pretrained(config.output_dir)

    metrics: dict[str, Any] = {
        "train_loss": train_output.training_loss,
        "train_steps": train_output.global_step,
        "train_runtime_s": train_output.metrics.get("train_runtime"),
        "num_speakers": len(speakers),
    }
    if config.eval_split:
        eval_dataset = load_split(config.dataset_name_or_path, config.eval_split)
        if uses_phones:
            eval_dataset = add_phone_features(eval_dataset, model.config.phone_decoder_settings)
        trainer.data_collator = STACollator(
            speakers=speakers, fps=model.config.fps, seed=config.seed, phone_targets=model.phone_head is not None,
            phone_features=uses_phones,
        )
        evaluation = trainer.evaluate(eval_dataset)
        # the logged entry also holds the trainer's own metrics (token / emotion accuracy, ...)
        logged = next((e for e in reversed(trainer.state.log_history) if "eval_loss" in e), {})
        metrics.update({**logged, **evaluation})
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        write_done_marker(config.output_dir, metrics)
    trainer.accelerator.wait_for_everyone()
    return metrics
