"""The one check of the inputs of the STA model and the reward model (:func:`check_model_inputs`), and its parts
for the entry points that take one kind of input (``generate``, ``encode_audio``, ``decode_features``).

``forward`` checks argument conflicts, types and shapes only: no check reads tensor values (a device sync that
also breaks ``torch.compile``). The value checks (finite audio, at least one frame, ids in range) run with
``check_values=True`` where user input enters.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedConfig

from .speech_encoder import audio_frame_lengths

__all__ = [
    "ModelInputs",
    "as_tensor",
    "check_audio_inputs",
    "check_class_ids",
    "check_condition_ids",
    "check_model_inputs",
    "check_motion_tokens",
]


class ModelInputs(NamedTuple):
    """The inputs of a model's ``forward`` after :func:`check_model_inputs`: on the model's device, ids as int64,
    ``lengths`` the valid samples per sequence, padded motion steps set to code 0."""

    input_values: torch.Tensor  # (bsz, samples), the model's dtype
    attention_mask: torch.Tensor | None  # (bsz, samples)
    lengths: torch.LongTensor  # (bsz,)
    emotion_ids: torch.LongTensor | None  # (bsz,)
    intensity_ids: torch.LongTensor | None  # (bsz,)
    speaker_ids: torch.LongTensor  # (bsz,), 0 = unknown speaker
    motion_tokens: torch.LongTensor | None  # (bsz, steps, num_groups)
    motion_mask: torch.BoolTensor | None  # (bsz, steps)


def check_model_inputs(
    config: PreTrainedConfig,
    parameter: torch.Tensor,
    input_values,
    attention_mask=None,
    emotion_ids=None,
    intensity_ids=None,
    speaker_ids=None,
    motion_tokens=None,
    motion_mask=None,
    *,
    audio_encoder: nn.Module | None = None,
    required: tuple[str, ...] = (),
    check_values: bool = False,
) -> ModelInputs:
    """The one input check of the STA model and the reward model: argument conflicts, types and shapes.

    ``config`` gives ``sampling_rate``, ``fps``, ``num_groups``, ``codebook_size`` and the label counts; inputs
    move to ``parameter``'s device (audio to its dtype). ``required`` names the optional inputs a model cannot do
    without (the reward model needs ``emotion_ids``, ``intensity_ids`` and ``motion_tokens``). Token ids and class
    ids must be integers: bool and float tensors are rejected. ``check_values=True`` also reads the tensors (finite
    audio, lengths of at least one frame, ids in range): a device sync that ``forward`` avoids and the entry points
    for user input (``generate``, the processor, the pipeline) run.
    """
    for name in required:
        if locals()[name] is None:
            raise ValueError(f"{name} must be given, got None")
    if motion_tokens is None and motion_mask is not None:
        raise ValueError("motion_mask must come with motion_tokens, got motion_mask without motion_tokens")
    input_values, attention_mask, lengths = check_audio_inputs(
        config, parameter, input_values, attention_mask, audio_encoder=audio_encoder, check_values=check_values
    )
    batch = input_values.shape[0]
    emotion_ids, intensity_ids, speaker_ids = check_condition_ids(
        config, emotion_ids, intensity_ids, speaker_ids, batch, parameter.device, check_values=check_values
    )
    if motion_tokens is not None:
        motion_tokens, motion_mask = check_motion_tokens(
            config, motion_tokens, motion_mask, batch, parameter.device, check_values=check_values
        )
    return ModelInputs(
        input_values, attention_mask, lengths, emotion_ids, intensity_ids, speaker_ids, motion_tokens, motion_mask
    )


def as_tensor(value, argument: str) -> torch.Tensor:
    """``value`` as a tensor (numpy arrays are shared, not copied)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    raise ValueError(f"{argument} must be a torch.Tensor or numpy array, got {type(value).__name__}")


def check_audio_inputs(
    config: PreTrainedConfig,
    parameter: torch.Tensor,
    input_values,
    attention_mask=None,
    *,
    audio_encoder: nn.Module | None = None,
    check_values: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.LongTensor]:
    """``input_values [B, S]`` (or ``[S]``) and its mask, on ``parameter``'s device and dtype, and the lengths
    ``[B]``. With ``check_values``: finite samples, at least one animation frame per sequence and (given the
    ``audio_encoder``) at least one feature frame."""
    input_values = as_tensor(input_values, "input_values")
    if input_values.ndim == 1:
        input_values = input_values[None]
    if input_values.ndim != 2:
        raise ValueError(
            f"input_values must have shape [batch, samples] (16 kHz mono audio), got shape {list(input_values.shape)}"
        )
    if not input_values.is_floating_point():
        raise ValueError(f"input_values must be floating point audio samples, got dtype {input_values.dtype}")
    if input_values.shape[0] == 0 or input_values.shape[1] == 0:
        raise ValueError(f"input_values must not be empty, got shape {list(input_values.shape)}")
    if check_values:
        finite = torch.isfinite(input_values)
        if not bool(finite.all()):
            raise ValueError(f"input_values must be finite, got {int((~finite).sum())} NaN/inf samples")
    input_values = input_values.to(device=parameter.device, dtype=parameter.dtype)
    batch, samples = input_values.shape
    if attention_mask is not None:
        attention_mask = as_tensor(attention_mask, "attention_mask")
        if attention_mask.ndim == 1 and batch == 1:
            attention_mask = attention_mask[None]
        if tuple(attention_mask.shape) != (batch, samples):
            raise ValueError(
                f"attention_mask must have the shape of input_values {[batch, samples]}, "
                f"got {list(attention_mask.shape)}"
            )
        attention_mask = attention_mask.to(device=parameter.device, dtype=torch.long)
        lengths = attention_mask.sum(-1)
    else:
        lengths = torch.full((batch,), samples, dtype=torch.long, device=parameter.device)
    min_samples = math.ceil(config.sampling_rate / config.fps)
    if samples < min_samples or (check_values and int(lengths.min()) < min_samples):
        raise ValueError(
            f"input_values must hold at least one animation frame of audio per sequence ({min_samples} samples at "
            f"{config.sampling_rate} Hz and {config.fps:g} fps), got lengths {lengths.tolist()}"
        )
    if check_values and audio_encoder is not None and int(audio_frame_lengths(audio_encoder, lengths).min()) < 1:
        raise ValueError(
            f"input_values is too short for the audio encoder (no feature frame), got lengths {lengths.tolist()}"
        )
    return input_values, attention_mask, lengths


def check_class_ids(
    ids,
    argument: str,
    num_classes: int,
    batch_size: int,
    device: torch.device,
    default: int | None = None,
    check_values: bool = True,
) -> torch.LongTensor | None:
    """Class ids ``[B]`` (an int or a 0-d tensor is broadcast); ``None`` -> ``default`` or ``None``. Bool and float
    ids are rejected; ``check_values=False`` checks types and shapes only (no read of the values, so no device
    sync)."""
    if ids is None:
        if default is None:
            return None
        return torch.full((batch_size,), default, dtype=torch.long, device=device)
    if isinstance(ids, bool) or not isinstance(ids, (int, np.integer, torch.Tensor, np.ndarray, list, tuple)):
        raise ValueError(f"{argument} must be integer ids in [0, {num_classes}), got {type(ids).__name__}")
    ids = torch.as_tensor(ids)
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"{argument} must be integer ids, got dtype {ids.dtype}")
    if ids.ndim == 0:
        ids = ids.expand(batch_size)
    if ids.ndim != 1 or ids.shape[0] != batch_size:
        raise ValueError(
            f"{argument} must have shape [batch] = [{batch_size}] (one id per sequence of input_values), "
            f"got shape {list(ids.shape)}"
        )
    if check_values and ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_classes):
        raise ValueError(
            f"{argument} must be ids in [0, {num_classes}), got values in [{int(ids.min())}, {int(ids.max())}]"
        )
    return ids.to(device=device, dtype=torch.long)


def check_condition_ids(
    config: PreTrainedConfig, emotion_ids, intensity_ids, speaker_ids, batch_size: int, device, check_values=True
) -> tuple[torch.LongTensor | None, torch.LongTensor | None, torch.LongTensor]:
    """Emotion, intensity and speaker ids ``[B]``; no speaker is the unknown speaker 0."""
    return (
        check_class_ids(emotion_ids, "emotion_ids", config.num_emotions, batch_size, device, check_values=check_values),
        check_class_ids(
            intensity_ids, "intensity_ids", config.num_intensities, batch_size, device, check_values=check_values
        ),
        check_class_ids(
            speaker_ids, "speaker_ids", config.num_speakers + 1, batch_size, device, default=0,
            check_values=check_values,
        ),
    )  # fmt: skip


def check_motion_tokens(
    config: PreTrainedConfig, motion_tokens, motion_mask, batch_size: int, device, check_values: bool = True
) -> tuple[torch.LongTensor, torch.BoolTensor]:
    """Code ids ``[B, T', G]`` (bool and float rejected) and the step mask ``[B, T']`` (default all valid);
    padded steps get code 0. With ``check_values``: ids in ``[0, codebook_size)``, a valid step per row."""
    motion_tokens = as_tensor(motion_tokens, "motion_tokens")
    groups = config.num_groups
    if motion_tokens.ndim != 3 or motion_tokens.shape[-1] != groups or motion_tokens.shape[1] == 0:
        raise ValueError(
            f"motion_tokens must have shape [batch, steps >= 1, {groups}] (G = num_groups), "
            f"got shape {list(motion_tokens.shape)}"
        )
    if motion_tokens.shape[0] != batch_size:
        raise ValueError(
            f"motion_tokens must have batch size {batch_size} (that of input_values), got {motion_tokens.shape[0]}"
        )
    if motion_tokens.is_floating_point() or motion_tokens.is_complex() or motion_tokens.dtype == torch.bool:
        raise ValueError(f"motion_tokens must be integer code ids, got dtype {motion_tokens.dtype}")
    steps = motion_tokens.shape[1]
    if motion_mask is None:
        motion_mask = torch.ones(batch_size, steps, dtype=torch.bool, device=device)
    else:
        motion_mask = as_tensor(motion_mask, "motion_mask")
        if tuple(motion_mask.shape) != (batch_size, steps):
            raise ValueError(
                f"motion_mask must have shape [batch, steps] = {[batch_size, steps]}, got {list(motion_mask.shape)}"
            )
        motion_mask = motion_mask.to(device=device).bool()
        if check_values and int(motion_mask.sum(-1).min()) < 1:
            raise ValueError("motion_mask must mark at least one valid step per sequence, got an empty row")
    motion_tokens = motion_tokens.to(device=device, dtype=torch.long)
    valid = motion_tokens[motion_mask] if check_values else motion_tokens[:0]
    if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= config.codebook_size):
        raise ValueError(
            f"motion_tokens must be code ids in [0, {config.codebook_size}) (K = codebook_size), "
            f"got values in [{int(valid.min())}, {int(valid.max())}]"
        )
    return motion_tokens.masked_fill(~motion_mask[..., None], 0), motion_mask
