"""The speech encoder of the ESARM models (STA model and reward model).

- :func:`build_audio_encoder` creates the speech encoder (WavLM by default, any ``AutoModel`` speech encoder) from
  a nested config, or loads pretrained weights (e.g. ``microsoft/wavlm-base-plus``) when a name is given.
- :class:`SpeechEncoder` turns 16 kHz audio into one feature vector per motion step: encoder hidden states ->
  learned softmax-weighted sum of layers -> linear projection -> linear resampling to ``T'`` steps (+ mask).
  :meth:`SpeechEncoder.set_window` makes it encode long audio in overlapping windows (cost linear in the length).
- :class:`SpeechEncoderCheckpointingMixin`: gradient checkpointing of the speech encoder without reentry.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel

from .frames import resample

logger = logging.getLogger(__name__)

__all__ = [
    "SpeechEncoder",
    "SpeechEncoderCheckpointingMixin",
    "audio_encoder_config_from_dict",
    "audio_frame_lengths",
    "build_audio_encoder",
    "checkpoint_speech_encoders_without_reentry",
    "conv_geometry",
    "crossfade_weights",
    "encoder_windows",
    "is_building_empty_model",
]


def audio_encoder_config_from_dict(value: PreTrainedConfig | dict | None, default_model_type: str = "wavlm"):
    """Return a speech-encoder config from a config, a dict (with ``model_type``) or ``None`` (WavLM defaults)."""
    if value is None:
        return AutoConfig.for_model(default_model_type)
    if isinstance(value, PreTrainedConfig):
        return value
    if isinstance(value, dict):
        value = dict(value)
        model_type = value.pop("model_type", default_model_type)
        value.pop("transformers_version", None)
        return AutoConfig.for_model(model_type, **value)
    raise ValueError(f"audio_encoder_config must be a PreTrainedConfig, a dict or None, got {type(value).__name__}")


def is_building_empty_model() -> bool:
    """True while ``from_pretrained`` builds a model skeleton on the meta device (weights are loaded afterwards).

    Models use it to skip downloading pretrained sub-model weights that the checkpoint overwrites anyway.
    """
    try:
        return torch.get_default_device().type == "meta"
    except Exception:  # pragma: no cover - very old torch
        return torch.empty(0).device.type == "meta"


def build_audio_encoder(
    audio_encoder_config: PreTrainedConfig | dict | None,
    audio_encoder_name_or_path: str | None = None,
    load_pretrained: bool | None = None,
) -> PreTrainedModel:
    """Create the speech encoder.

    Args:
        audio_encoder_config: config of the encoder (``WavLMConfig`` by default); a dict must carry ``model_type``.
        audio_encoder_name_or_path: Hub name or local folder of pretrained weights (``microsoft/wavlm-base-plus``).
        load_pretrained: load the pretrained weights. Defaults to ``True`` when a name is given, except while a
            ``from_pretrained`` call builds the enclosing model on the meta device (its checkpoint holds the weights).

    Returns:
        The encoder (``AutoModel``), with ``output_hidden_states`` available at call time.
    """
    config = audio_encoder_config_from_dict(audio_encoder_config)
    if load_pretrained is None:
        load_pretrained = bool(audio_encoder_name_or_path) and not is_building_empty_model()
    if load_pretrained:
        if not audio_encoder_name_or_path:
            raise ValueError("audio_encoder_name_or_path must be set to load a pretrained audio encoder, got None")
        logger.info("Loading pretrained audio encoder %s", audio_encoder_name_or_path)
        try:
            encoder = AutoModel.from_pretrained(audio_encoder_name_or_path, config=config)
        except OSError as error:
            raise OSError(
                f"could not load the pretrained audio encoder {audio_encoder_name_or_path!r} ({error}); offline, "
                "set audio_encoder_name_or_path=None for a random-init encoder of the same architecture"
            ) from error
    else:
        encoder = AutoModel.from_config(config)
    return encoder


def audio_frame_lengths(encoder: nn.Module, sample_lengths: torch.Tensor) -> torch.Tensor:
    """Number of encoder frames for each audio length in samples (``[B]`` long tensor)."""
    if hasattr(encoder, "_get_feat_extract_output_lengths"):
        return encoder._get_feat_extract_output_lengths(sample_lengths).long()
    config = getattr(encoder, "config", None)
    strides = getattr(config, "conv_stride", None)
    if strides:
        return torch.div(sample_lengths, math.prod(strides), rounding_mode="floor").long()
    raise ValueError(f"cannot infer frame lengths for audio encoder {type(encoder).__name__}")


def conv_geometry(encoder: nn.Module) -> tuple[int, int]:
    """(receptive field, stride) in samples of one frame of the encoder's convolutional feature extractor (400 and
    320 for WavLM / wav2vec 2.0), from ``config.conv_kernel`` / ``config.conv_stride``."""
    config = getattr(encoder, "config", None)
    kernels, strides = getattr(config, "conv_kernel", None), getattr(config, "conv_stride", None)
    if not kernels or not strides:
        raise ValueError(
            f"windowed encoding needs an encoder config with conv_kernel and conv_stride, got {type(encoder).__name__}"
        )
    receptive, stride = 1, 1
    for kernel, step in zip(kernels, strides):
        receptive += (kernel - 1) * stride
        stride *= step
    return receptive, stride


def encoder_windows(num_frames: int, window: int, overlap: int) -> tuple[list[int], int]:
    """(first frame of each window, window length) covering ``num_frames`` frames with the fewest windows of at
    most ``window`` frames that overlap by at least ``overlap`` frames: the windows are shortened to share the
    frames evenly (every frame encoded past the audio length costs time), the last one ending at the last frame."""
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be in [0, window) = [0, {window}), got {overlap}")
    if num_frames <= window:
        return [0], num_frames
    count = math.ceil((num_frames - overlap) / (window - overlap))
    length = math.ceil((num_frames + (count - 1) * overlap) / count)
    return [round(i * (num_frames - length) / (count - 1)) for i in range(count)], length


def crossfade_weights(starts: list[int], window: int, num_frames: int) -> torch.Tensor:
    """Weights ``[len(starts), window]`` that stitch windowed features: linear ramps across each overlap with the
    neighbouring windows, normalised so the weights of every frame sum to 1."""
    weights = torch.ones(len(starts), window)
    position = torch.arange(window, dtype=torch.float32) + 0.5
    for i, start in enumerate(starts):
        if i > 0:
            left = starts[i - 1] + window - start  # frames shared with the previous window
            weights[i] = torch.minimum(weights[i], (position / left).clamp(max=1.0))
        if i < len(starts) - 1:
            right = start + window - starts[i + 1]
            weights[i] = torch.minimum(weights[i], ((window - position) / right).clamp(max=1.0))
    total = torch.zeros(num_frames)
    for start, weight in zip(starts, weights):
        total[start : start + window] += weight
    return weights / torch.stack([total[start : start + window] for start in starts])


class SpeechEncoder(nn.Module):
    """Audio -> one feature vector per motion step.

    Encoder hidden states (all layers incl. the input embeddings) are combined with learned softmax weights,
    projected to ``output_size`` and resampled to the requested number of steps per sequence (interval means,
    :func:`esarm.frames.resample`).

    Args:
        encoder: the speech encoder (see :func:`build_audio_encoder`).
        output_size: size of the projected features.
    """

    def __init__(self, encoder: PreTrainedModel, output_size: int):
        super().__init__()
        self.encoder = encoder
        if getattr(encoder.config, "layerdrop", 0.0):
            # LayerDrop (0.1 in WavLM's default config) skips layers in training, and transformers then returns
            # fewer hidden states than the learned layer weights expect: off, as every layer is weighted
            encoder.config.layerdrop = 0.0
        num_states = int(encoder.config.num_hidden_layers) + 1
        self.layer_weights = nn.Parameter(torch.zeros(num_states))
        self.projection = nn.Linear(int(encoder.config.hidden_size), output_size)
        self.window_frames: int | None = None  # see set_window; not saved, an inference setting
        self.window_overlap_frames = 0
        self.windows_per_batch = 8

    def set_window(self, window_frames: int | None, overlap_frames: int = 0) -> None:
        """Encode audio longer than ``window_frames`` encoder frames in windows of at most that many frames (20 ms
        each for WavLM) overlapping by at least ``overlap_frames`` (:func:`encoder_windows`), cross-faded linearly
        across the overlaps; ``None`` encodes the whole audio at once (the default, as in training).

        Self-attention over the whole audio costs quadratic time in its length; windows make the cost linear. The
        accuracy cost against the whole-audio encoder is measured by ``benchmarks/generation.py``.
        """
        if window_frames is None:
            self.window_frames, self.window_overlap_frames = None, 0
            return
        if isinstance(window_frames, bool) or not isinstance(window_frames, int) or window_frames < 1:
            raise ValueError(f"window_frames must be a positive int or None, got {window_frames!r}")
        valid_overlap = isinstance(overlap_frames, int) and not isinstance(overlap_frames, bool)
        if not valid_overlap or not 0 <= overlap_frames < window_frames:
            raise ValueError(f"overlap_frames must be an int in [0, {window_frames}), got {overlap_frames!r}")
        conv_geometry(self.encoder)  # fails now, not at the first long clip, if the encoder has no conv geometry
        self.window_frames, self.window_overlap_frames = window_frames, overlap_frames

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None,
        num_steps: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            input_values: ``[B, S]`` 16 kHz audio (normalised as the feature extractor does).
            attention_mask: ``[B, S]`` 1 for real samples, 0 for padding (or ``None``: no padding).
            num_steps: ``[B]`` long, number of motion steps ``T'`` wanted for each sequence.

        Returns:
            features ``[B, max T', output_size]`` and their boolean mask ``[B, max T']``.
        """
        batch, samples = input_values.shape
        if attention_mask is None:
            sample_lengths = torch.full((batch,), samples, dtype=torch.long, device=input_values.device)
        else:
            sample_lengths = attention_mask.long().sum(-1)
        frames = audio_frame_lengths(self.encoder, sample_lengths)
        if self.window_frames is not None and int(frames.max()) > self.window_frames:
            pooled = self._windowed_states(input_values, sample_lengths, frames)
        else:
            pooled = self._weighted_states(input_values, attention_mask)
        frames = frames.clamp(min=1, max=pooled.shape[1])
        projected = self.projection(pooled)  # [B, F, output_size]
        return resample(projected, frames, num_steps.to(frames.device))

    def _weighted_states(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """The learned weighted sum of the encoder's hidden states ``[B, F, H_enc]``."""
        with warnings.catch_warnings():
            # WavLM's attention mixes a float position bias with a boolean padding mask (harmless torch warning)
            warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")
            outputs = self.encoder(
                input_values, attention_mask=attention_mask, output_hidden_states=True, return_dict=True
            )
        states = list(outputs.hidden_states)
        # Pre-norm encoders (do_stable_layer_norm) normalise after the last layer: use that final output.
        states[-1] = outputs.last_hidden_state
        hidden_states = torch.stack(states, dim=0)  # [L+1, B, F, H_enc]
        weights = torch.softmax(self.layer_weights, dim=0).to(hidden_states.dtype)
        return (weights[:, None, None, None] * hidden_states).sum(0)

    def _windowed_states(
        self, input_values: torch.Tensor, sample_lengths: torch.Tensor, frame_lengths: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`_weighted_states` of each sequence computed over overlapping windows and cross-faded.

        A window starting at frame ``s`` reads samples ``[s * stride, s * stride + span)``, which give exactly the
        encoder frames ``s .. s + window - 1`` of the whole audio (same convolution taps); only the attention (and
        a group-normalised first convolution) see less context. Each sequence is encoded unpadded, its windows
        batched ``windows_per_batch`` at a time.
        """
        receptive, stride = conv_geometry(self.encoder)
        hidden = int(self.encoder.config.hidden_size)
        pooled = input_values.new_zeros(input_values.shape[0], int(frame_lengths.max()), hidden)
        for b, (num_samples, num_frames) in enumerate(zip(sample_lengths.tolist(), frame_lengths.tolist())):
            if num_frames <= self.window_frames:
                states = self._weighted_states(input_values[b : b + 1, :num_samples], None)[0]
                pooled[b, : states.shape[0]] = states[:num_frames]
                continue
            starts, window = encoder_windows(num_frames, self.window_frames, self.window_overlap_frames)
            span = (window - 1) * stride + receptive
            weights = crossfade_weights(starts, window, num_frames).to(pooled)
            for first in range(0, len(starts), self.windows_per_batch):
                group = starts[first : first + self.windows_per_batch]
                windows = torch.stack([input_values[b, s * stride : s * stride + span] for s in group])
                states = self._weighted_states(windows, None)  # [windows, window, H_enc]
                for k, start in enumerate(group):
                    pooled[b, start : start + window] += weights[first + k, :, None] * states[k, :window]
        return pooled


def checkpoint_speech_encoders_without_reentry(model: nn.Module, gradient_checkpointing_func: Callable) -> None:
    """Make the checkpointed layers of every :class:`SpeechEncoder` in ``model`` use non-reentrant checkpointing.

    Call it from a model's ``_set_gradient_checkpointing`` after transformers has set ``gradient_checkpointing_func``
    on every layer. Reentrant checkpointing (``use_reentrant=True``) detaches only the positional arguments of a
    layer. WavLM hands the relative ``position_bias`` of its first layer to the others as a keyword argument, so with
    reentry every layer's recomputation runs a nested backward through the layers before it: with two tiny WavLM
    layers (transformers 5.24, torch 2.13) one backward pass did not finish in 40 s, while four layers without
    reentry took 0.15 s.
    Non-reentrant checkpointing saves the same activations and handles keyword arguments; the layers outside the
    speech encoders keep the function as given.
    """
    keywords = getattr(gradient_checkpointing_func, "keywords", None) or {}
    if not keywords.get("use_reentrant", False):
        return  # transformers' default is already use_reentrant=False
    # a partial of a partial: the later keyword wins, the other arguments (e.g. preserve_rng_state) are kept
    without_reentry = functools.partial(gradient_checkpointing_func, use_reentrant=False)
    for speech_encoder in model.modules():
        if isinstance(speech_encoder, SpeechEncoder):
            for module in speech_encoder.encoder.modules():
                if hasattr(module, "_gradient_checkpointing_func"):
                    module._gradient_checkpointing_func = without_reentry


class SpeechEncoderCheckpointingMixin:
    """For the ``PreTrainedModel`` classes that hold a :class:`SpeechEncoder`: after transformers has set up gradient
    checkpointing, :func:`checkpoint_speech_encoders_without_reentry` keeps the speech encoders' layers
    non-reentrant. Put it before ``PreTrainedModel`` among the bases."""

    def _set_gradient_checkpointing(
        self, enable: bool = True, gradient_checkpointing_func: Callable = checkpoint, **kwargs
    ) -> None:
        # **kwargs: the options of the installed transformers (every_n_layers in 5.24)
        super()._set_gradient_checkpointing(
            enable=enable, gradient_checkpointing_func=gradient_checkpointing_func, **kwargs
        )
        if enable:
            # WavLM passes a tensor that needs gradients by keyword, which reentrant checkpointing cannot handle
            checkpoint_speech_encoders_without_reentry(self, gradient_checkpointing_func)
