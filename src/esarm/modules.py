"""Layers shared by the ESARM models (STA model and reward model).

- :func:`build_audio_encoder` creates the speech encoder (WavLM by default, any ``AutoModel`` speech encoder) from
  a nested config, or loads pretrained weights (e.g. ``microsoft/wavlm-base-plus``) when a name is given.
- :class:`SpeechEncoder` turns 16 kHz audio into one feature vector per motion step: encoder hidden states ->
  learned softmax-weighted sum of layers -> linear projection -> linear resampling to ``T'`` steps (+ mask).
  :meth:`SpeechEncoder.set_window` makes it encode long audio in overlapping windows (cost linear in the length).
- :class:`CausalTransformer` is a small pre-norm causal transformer (rotary positions,
  ``F.scaled_dot_product_attention``) with an explicit :class:`KeyValueCache`, so incremental decoding does not
  depend on the cache classes or field names of a particular transformers version.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer

from .frames import resample

logger = logging.getLogger(__name__)

__all__ = [
    "CausalTransformer",
    "KeyValueCache",
    "SpeechEncoder",
    "audio_frame_lengths",
    "build_audio_encoder",
    "SpeechEncoderCheckpointingMixin",
    "checkpoint_speech_encoders_without_reentry",
    "conv_geometry",
    "crossfade_weights",
    "encoder_windows",
    "init_module_weights",
    "is_building_empty_model",
    "sequence_mask",
]


# --------------------------------------------------------------------------------------------------------------------
# Audio encoder
# --------------------------------------------------------------------------------------------------------------------


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


def sequence_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """Boolean mask ``[B, max_length]`` that is True at positions ``< lengths[b]``."""
    max_length = int(lengths.max().item()) if max_length is None else max_length
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


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


# --------------------------------------------------------------------------------------------------------------------
# Causal transformer with an explicit key/value cache
# --------------------------------------------------------------------------------------------------------------------


class KeyValueCache:
    """Pre-allocated per-layer key/value buffers for incremental decoding.

    Writing a step is an in-place copy (no concatenation), so the cost per step does not grow with the length
    (apart from attention itself, which reads the cached keys; see ``attention_window`` of
    :class:`CausalTransformer` for a bounded cost).

    Args:
        num_layers: number of transformer blocks.
        batch_size: batch size.
        num_heads: attention heads.
        head_dim: size of one head.
        max_length: initial capacity in steps (grown by doubling if exceeded).
    """

    def __init__(
        self,
        num_layers: int,
        batch_size: int,
        num_heads: int,
        head_dim: int,
        max_length: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        shape = (batch_size, num_heads, max(1, max_length), head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.length = 0  # number of steps already stored (same for all layers after a full forward)

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]

    def _grow(self, needed: int) -> None:
        capacity = self.capacity
        while capacity < needed:
            capacity *= 2
        for i in range(len(self.keys)):
            for buffers in (self.keys, self.values):
                old = buffers[i]
                new = old.new_zeros(old.shape[0], old.shape[1], capacity, old.shape[3])
                new[:, :, : old.shape[2]] = old
                buffers[i] = new

    def update(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``key``/``value`` ``[B, heads, L, head_dim]`` of ``layer`` after the cached steps; return all."""
        end = self.length + key.shape[2]
        if end > self.capacity:
            self._grow(end)
        self.keys[layer][:, :, self.length : end] = key
        self.values[layer][:, :, self.length : end] = value
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, steps: int) -> None:
        self.length += steps


def rotary_cos_sin(positions: torch.Tensor, head_dim: int, base: float = 10000.0, dtype=torch.float32):
    """Rotary embedding tables ``[L, head_dim]`` for integer positions ``[L]``."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    angles = positions.float()[:, None] * inv_freq[None, :]  # [L, head_dim / 2]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size must be divisible by num_heads, got {hidden_size} and {num_heads}")
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)
        self.dropout = dropout

    def forward(
        self,
        hidden_states: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        is_causal: bool,
        cache: KeyValueCache | None,
        layer: int,
        key_start: int = 0,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention outputs ``[B, L, H]`` and, with ``output_attentions``, the weights ``[B, heads, L, keys]``.

        ``F.scaled_dot_product_attention`` cannot return its weights, so asking for them runs the same attention
        eagerly (softmax of the scaled scores, as transformers' ``eager`` attention); the outputs agree within
        float rounding.
        """
        batch, length, hidden = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch, length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)  # each [B, heads, L, head_dim]
        query, key = apply_rotary(query, cos, sin), apply_rotary(key, cos, sin)
        if cache is not None:
            key, value = cache.update(layer, key, value)
            if key_start:
                key, value = key[:, :, key_start:], value[:, :, key_start:]
        dropout = self.dropout if self.training else 0.0
        weights = None
        if output_attentions:
            attended, weights = eager_attention(query, key, value, mask, is_causal, dropout)
        else:
            attended = F.scaled_dot_product_attention(
                query, key, value, attn_mask=mask, dropout_p=dropout, is_causal=is_causal
            )
        return self.out(attended.transpose(1, 2).reshape(batch, length, hidden)), weights


def eager_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None,
    is_causal: bool,
    dropout: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``F.scaled_dot_product_attention`` written out, returning the attention weights too.

    Args:
        query: ``[B, heads, L, head_dim]``.
        key, value: ``[B, heads, S, head_dim]``.
        mask: boolean ``[B or 1, 1, L, S]``, True where a query may attend (every row has a True), or ``None``.
        is_causal: query ``i`` attends to keys ``<= i`` (``L == S``; used without ``mask``).
        dropout: dropout probability on the weights (0 outside training).

    Returns:
        The attended values ``[B, heads, L, head_dim]`` and the weights ``[B, heads, L, S]`` (before dropout).
    """
    scores = query @ key.transpose(-1, -2) / math.sqrt(query.shape[-1])  # [B, heads, L, S]
    if is_causal:
        mask = torch.ones(query.shape[-2], key.shape[-2], dtype=torch.bool, device=query.device).tril()
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1).to(value.dtype)
    return F.dropout(weights, p=dropout, training=dropout > 0) @ value, weights


class TransformerBlock(GradientCheckpointingLayer):
    """Pre-norm block: x + attn(norm(x)); x + mlp(norm(x)).

    A ``GradientCheckpointingLayer``: ``model.gradient_checkpointing_enable()`` recomputes it in the backward pass
    (the cache is only used without gradients, in generation, so checkpointing never meets it).
    """

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, dropout: float, eps: float):
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.attention = CausalSelfAttention(hidden_size, num_heads, dropout)
        self.mlp_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, intermediate_size), nn.GELU(), nn.Linear(intermediate_size, hidden_size)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, hidden_states, cos, sin, mask, is_causal, cache=None, layer=0, key_start=0, output_attentions=False
    ):
        """The block's output ``[B, L, H]``, or with ``output_attentions`` the pair (output, attention weights)."""
        attended, weights = self.attention(
            self.attention_norm(hidden_states), cos, sin, mask, is_causal, cache, layer, key_start, output_attentions
        )
        hidden_states = hidden_states + self.dropout(attended)
        hidden_states = hidden_states + self.dropout(self.mlp(self.mlp_norm(hidden_states)))
        return (hidden_states, weights) if output_attentions else hidden_states


class CausalTransformer(nn.Module):
    """Stack of pre-norm causal self-attention blocks with rotary positions and an explicit cache.

    Args:
        hidden_size: model width.
        num_layers: number of blocks.
        num_heads: attention heads (``hidden_size`` must be divisible by it).
        intermediate_size: MLP width.
        dropout: dropout on attention weights and residual branches.
        attention_window: if set, each step attends to at most this many most recent steps (itself included),
            which bounds the per-step cost of incremental decoding; ``None`` = full causal attention.
        layer_norm_eps: LayerNorm epsilon.
        causal: ``False`` turns the stack into a bidirectional encoder (padding keys masked, no cache).
    """

    def __init__(
        self,
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        intermediate_size: int,
        dropout: float = 0.0,
        attention_window: int | None = None,
        layer_norm_eps: float = 1e-5,
        causal: bool = True,
    ):
        super().__init__()
        self.causal = causal
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.attention_window = attention_window
        self.layers = nn.ModuleList(
            TransformerBlock(hidden_size, num_heads, intermediate_size, dropout, layer_norm_eps)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self._rotary_table: tuple[torch.Tensor, torch.Tensor] | None = None  # decoding steps' cos / sin, by position

    def new_cache(self, batch_size: int, max_length: int, like: torch.Tensor) -> KeyValueCache:
        """An empty cache for ``batch_size`` sequences of up to ``max_length`` steps (dtype/device of ``like``)."""
        return KeyValueCache(
            len(self.layers), batch_size, self.num_heads, self.head_dim, max_length, like.dtype, like.device
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: KeyValueCache | None = None,
        all_hidden_states: list[torch.Tensor] | None = None,
        all_attentions: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """
        Args:
            hidden_states: ``[B, L, H]`` inputs of the new steps.
            attention_mask: ``[B, past + L]`` True/1 for real steps, False/0 for padding keys (``None``: all real).
                With right padding (the usual case) no mask is needed: causal attention never looks ahead.
            cache: if given, the new steps are appended to it and attend to the cached ones.
            all_hidden_states: if given, the input of every block and the normalised output are appended to it
                (``num_layers + 1`` tensors ``[B, L, H]``, transformers' ``output_hidden_states`` convention).
            all_attentions: if given, the attention weights of every block are appended to it (``num_layers``
                tensors ``[B, heads, L, past + L]``, computed eagerly: see :class:`CausalSelfAttention`).

        Returns:
            ``[B, L, H]`` normalised outputs.
        """
        batch, length, _ = hidden_states.shape
        if (
            cache is not None
            and length == 1
            and attention_mask is None
            and all_hidden_states is None
            and all_attentions is None
            and not self.training
        ):
            return self._decode_step(hidden_states, cache)
        past = cache.length if cache is not None else 0
        total = past + length
        positions = torch.arange(past, total, device=hidden_states.device)
        cos, sin = rotary_cos_sin(positions, self.head_dim, dtype=hidden_states.dtype)

        mask = None
        is_causal = False
        key_start = 0
        window = self.attention_window
        if not self.causal:
            if cache is not None:
                raise ValueError("cache must be None for a bidirectional (causal=False) transformer")
            if attention_mask is not None:
                diagonal = torch.eye(length, dtype=torch.bool, device=hidden_states.device)
                mask = attention_mask.bool()[:, None, None, :] | diagonal[None, None]
        elif attention_mask is None and cache is not None and length == 1 and window is not None and window < total:
            # One decoding step with a sliding window: read only the last `window` cached steps (flat cost).
            key_start = total - window
        elif attention_mask is None and (window is None or window >= total):
            # Plain causal attention: a single new step sees everything; a prefill uses the fused causal path.
            is_causal = length > 1 and past == 0
            if length > 1 and past > 0:
                mask = self._causal_mask(positions, total, None, None)
        else:
            if attention_mask is not None and attention_mask.shape != (batch, total):
                raise ValueError(
                    f"attention_mask must have shape [batch, past + length] = {[batch, total]}, "
                    f"got {list(attention_mask.shape)}"
                )
            mask = self._causal_mask(positions, total, attention_mask, window)

        for index, block in enumerate(self.layers):
            if all_hidden_states is not None:
                all_hidden_states.append(hidden_states)
            output_attentions = all_attentions is not None
            hidden_states = block(
                hidden_states, cos, sin, mask, is_causal, cache=cache, layer=index, key_start=key_start,
                output_attentions=output_attentions,
            )  # fmt: skip
            if output_attentions:
                hidden_states, weights = hidden_states
                all_attentions.append(weights)
        if cache is not None:
            cache.advance(length)
        hidden_states = self.norm(hidden_states)
        if all_hidden_states is not None:
            all_hidden_states.append(hidden_states)
        return hidden_states

    def _rotary_at(self, position: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos``, ``sin`` ``[1, head_dim]`` of one position, from a table grown by doubling (not a buffer: it is
        derived, never saved)."""
        table = self._rotary_table
        if (
            table is None
            or table[0].shape[0] <= position
            or table[0].dtype != like.dtype
            or table[0].device != like.device
        ):
            size = max(64, 2 * (position + 1), table[0].shape[0] if table is not None else 0)
            table = rotary_cos_sin(torch.arange(size, device=like.device), self.head_dim, dtype=like.dtype)
            self._rotary_table = table
        return table[0][position : position + 1], table[1][position : position + 1]

    def _decode_step(self, hidden_states: torch.Tensor, cache: KeyValueCache) -> torch.Tensor:
        """One new step ``[B, 1, H]`` of every sequence against the cache, in inference.

        The same arithmetic as :meth:`forward` (same outputs) in fewer tensor operations: a step of one token is a
        few small matrix-vector products, so per-operation overhead is a large part of its time (``base``'s 6 blocks
        of width 256: 183 top-level operations per step instead of 238, and 0.64 -> 0.45 ms per frame for the tiny
        preset, whose loop is nearly all overhead; ``benchmarks/generation.py`` gives the loop's time). Queries and
        keys are rotated together with a precomputed table, the new key and value are written straight into the
        cache, and the blocks' submodules are called directly (so adapters or quantised layers that replace them
        still apply).
        """
        batch, _, hidden = hidden_states.shape
        position = cache.length
        end = position + 1
        if end > cache.capacity:
            cache._grow(end)
        window = self.attention_window
        key_start = end - window if window is not None and window < end else 0
        cos, sin = self._rotary_at(position, hidden_states)
        half = self.head_dim // 2
        for index, block in enumerate(self.layers):
            attention = block.attention
            qkv = attention.qkv(block.attention_norm(hidden_states)).view(batch, 3, self.num_heads, self.head_dim)
            query_key = qkv[:, :2]  # [B, 2, heads, head_dim]
            rotated = torch.cat([-query_key[..., half:], query_key[..., :half]], dim=-1)
            query_key = query_key * cos + rotated * sin
            keys, values = cache.keys[index], cache.values[index]
            keys[:, :, position] = query_key[:, 1]
            values[:, :, position] = qkv[:, 2]
            attended = F.scaled_dot_product_attention(
                query_key[:, 0, :, None], keys[:, :, key_start:end], values[:, :, key_start:end]
            )  # [B, heads, 1, head_dim]
            hidden_states = hidden_states + attention.out(attended.view(batch, 1, hidden))
            hidden_states = hidden_states + block.mlp(block.mlp_norm(hidden_states))
        cache.advance(1)
        return self.norm(hidden_states)

    @staticmethod
    def _causal_mask(
        query_positions: torch.Tensor, total: int, key_mask: torch.Tensor | None, window: int | None
    ) -> torch.Tensor:
        """Boolean ``[B or 1, 1, L, total]`` mask (True = attend); each step always sees itself (no empty rows)."""
        key_positions = torch.arange(total, device=query_positions.device)
        allowed = key_positions[None, :] <= query_positions[:, None]  # [L, total]
        if window is not None:
            allowed = allowed & (key_positions[None, :] > query_positions[:, None] - window)
        allowed = allowed[None, None]
        if key_mask is not None:
            allowed = allowed & key_mask.bool()[:, None, None, :]
        diagonal = key_positions[None, :] == query_positions[:, None]
        return allowed | diagonal[None, None]


# --------------------------------------------------------------------------------------------------------------------
# Weight initialisation
# --------------------------------------------------------------------------------------------------------------------


def init_module_weights(module: nn.Module, std: float = 0.02) -> None:
    """Default init for the modules defined here (use from a model's ``_init_weights``).

    Uses ``transformers.initialization`` so weights loaded from a checkpoint are not re-initialised.
    """
    if isinstance(module, nn.Linear):
        init.normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        init.normal_(module.weight, mean=0.0, std=std)
    elif isinstance(module, nn.LayerNorm):
        if module.weight is not None:
            init.ones_(module.weight)
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, SpeechEncoder):
        init.zeros_(module.layer_weights)
