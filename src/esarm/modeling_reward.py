"""ESARMRewardModel: per-step rewards and discounted returns of (speech, motion-token) trajectories.

Paper section III-B.3 (Fig. 4): the reward model reads an animated talking-face sequence, audio and facial motion
interleaved so that causality holds, through a causal transformer with masked multi-head attention, and predicts a
reward. Here the sequence is

    [emotion, intensity, speaker, audio_1, motion_1, audio_2, motion_2, ..., audio_T', motion_T']

where ``audio_t`` is the speech encoder's feature (learned layer weighting, resampled to the motion steps; shared
:class:`~esarm.modules.SpeechEncoder`) and ``motion_t`` the sum of the G per-group embeddings of the motion
token ``[G]`` of step ``t``. The reward ``r_t`` is read at ``motion_t`` (it sees the condition and the audio and
motion of steps ``<= t``) and the return is ``R(tau) = sum_t gamma^t r_t`` over valid steps (paper eq. 2).

:func:`ranking_loss` is paper eq. 1, the Bradley-Terry cross entropy on the returns of a pair of trajectories; the
reward trainer (:mod:`esarm.training.reward`) trains with it. ``forward(labels=...)`` follows transformers' convention
for a scalar-score head (``...ForSequenceClassification`` with ``num_labels=1``): given a target return per
trajectory it returns the mean squared error, for regression onto known scores and for the generic training loops
that expect a ``loss``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_esarm import ESARMRewardModelConfig
from .file_modes import NewFileModeMixin
from .frames import num_motion_steps
from .modules import (
    CausalTransformer,
    SpeechEncoder,
    SpeechEncoderCheckpointingMixin,
    build_audio_encoder,
    init_module_weights,
)

logger = logging.getLogger(__name__)

# Positions of the condition prefix.
_PREFIX_LENGTH = 3


@dataclass
class ESARMRewardOutput(ModelOutput):
    """Output of :meth:`ESARMRewardModel.forward`.

    Args:
        loss: With ``labels``: mean squared error between ``returns`` and the target returns (float32).
        rewards: Per-step rewards ``[batch, tokens]``; 0 at padded steps.
        returns: Discounted returns ``sum_t gamma^t rewards[:, t]`` over valid steps ``[batch]``.
        motion_mask: ``[batch, tokens]`` bool mask of the valid steps used.
        last_hidden_state: Transformer outputs at the motion positions ``[batch, tokens, hidden]``.
        hidden_states: With ``output_hidden_states=True``: the transformer's input to each block and its normalised
            output over the whole sequence, ``num_hidden_layers + 1`` tensors ``[batch, 3 + 2 * tokens, hidden]``.
        attentions: With ``output_attentions=True``: the causal transformer's attention weights,
            ``num_hidden_layers`` tensors ``[batch, heads, 3 + 2 * tokens, 3 + 2 * tokens]`` (the speech encoder's
            own attentions are not returned).
    """

    loss: torch.FloatTensor | None = None
    rewards: torch.FloatTensor | None = None
    returns: torch.FloatTensor | None = None
    motion_mask: torch.BoolTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def ranking_loss(returns_i: torch.Tensor, returns_j: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pairwise ranking loss of paper eq. 1 (mean over the batch).

    ``L = -E[(1 - y) log P(tau_i < tau_j) + y log P(tau_j < tau_i)]`` with ``y = int(eps_i < eps_j)`` (1 when
    trajectory i was generated with less noise, i.e. is the better one) and the Bradley-Terry ranking predictor
    ``P(tau_j < tau_i) = exp(R_i) / (exp(R_i) + exp(R_j)) = sigmoid(R_i - R_j)``, computed with ``logsigmoid``.

    Args:
        returns_i: Returns ``R(tau_i)`` ``[batch]``.
        returns_j: Returns ``R(tau_j)`` ``[batch]``.
        y: Labels ``[batch]`` in [0, 1] (ints or bools from ``eps_i < eps_j``; soft labels allowed).

    Returns:
        Scalar loss.
    """
    for name, value in (("returns_i", returns_i), ("returns_j", returns_j)):
        if not isinstance(value, torch.Tensor) or value.ndim != 1 or value.numel() == 0:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"{name} must be a non-empty 1-D tensor [batch], got {got}")
    y = torch.as_tensor(y, device=returns_i.device)
    if returns_j.shape != returns_i.shape or y.shape != returns_i.shape:
        raise ValueError(
            f"returns_i, returns_j and y must have the same shape [batch], got {tuple(returns_i.shape)}, "
            f"{tuple(returns_j.shape)} and {tuple(y.shape)}"
        )
    y = y.to(returns_i.dtype)
    if bool(((y < 0) | (y > 1) | torch.isnan(y)).any()):
        raise ValueError(f"y must hold labels in [0, 1] (y = int(eps_i < eps_j)), got {y.tolist()}")
    margin = returns_i - returns_j
    log_i_better = F.logsigmoid(margin)  # log P(tau_j < tau_i)
    log_j_better = F.logsigmoid(-margin)  # log P(tau_i < tau_j)
    return -((1 - y) * log_j_better + y * log_i_better).mean()


class ESARMRewardPreTrainedModel(NewFileModeMixin, SpeechEncoderCheckpointingMixin, PreTrainedModel):
    config_class = ESARMRewardModelConfig
    config: ESARMRewardModelConfig
    base_model_prefix = "reward_model"
    main_input_name = "input_values"
    supports_gradient_checkpointing = True
    # every attention layer calls F.scaled_dot_product_attention (esarm.modules.CausalSelfAttention)
    _supports_sdpa = True
    _no_split_modules = ["TransformerBlock"]

    def _init_weights(self, module: nn.Module) -> None:
        # The speech encoder (a PreTrainedModel) is initialised by its own _init_weights (transformers dispatches).
        init_module_weights(module, self.config.initializer_range)


class ESARMRewardModel(ESARMRewardPreTrainedModel):
    """The ESARM reward model (see the module docstring). ``forward`` returns per-step rewards and returns."""

    def __init__(self, config: ESARMRewardModelConfig):
        super().__init__(config)
        hidden = config.hidden_size
        encoder = build_audio_encoder(config.audio_encoder_config, config.audio_encoder_name_or_path)
        self.speech_encoder = SpeechEncoder(encoder, hidden)
        if config.freeze_feature_encoder and hasattr(encoder, "freeze_feature_encoder"):
            encoder.freeze_feature_encoder()
        self.emotion_embedding = nn.Embedding(config.num_emotions, hidden)
        self.intensity_embedding = nn.Embedding(config.num_intensities, hidden)
        self.speaker_embedding = nn.Embedding(config.num_speakers + 1, hidden)  # id 0 = unknown speaker
        # One table for all groups: the code k of group g is row g * K + k.
        self.token_embedding = nn.Embedding(config.num_groups * config.codebook_size, hidden)
        self.type_embedding = nn.Embedding(3, hidden)  # condition / audio / motion position
        self.transformer = CausalTransformer(
            hidden,
            config.num_hidden_layers,
            config.num_attention_heads,
            config.intermediate_size,
            config.dropout,
            layer_norm_eps=config.layer_norm_eps,
        )
        self.reward_head = nn.Linear(hidden, 1)
        self.post_init()

    @property
    def audio_encoder(self) -> PreTrainedModel:
        return self.speech_encoder.encoder

    def get_input_embeddings(self) -> nn.Embedding:
        """The motion-token embedding table (``G * K`` rows: code ``k`` of group ``g`` is row ``g * K + k``)."""
        return self.token_embedding

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.token_embedding = value

    def num_motion_steps(self, num_samples: int) -> int:
        """Motion steps T' of ``num_samples`` of audio: ceil(round(seconds * fps) / frames_per_token)."""
        config = self.config
        return num_motion_steps(num_samples, config.fps, config.sampling_rate, config.frames_per_token)

    def _check_inputs(
        self,
        input_values,
        attention_mask,
        emotion_ids,
        intensity_ids,
        speaker_ids,
        motion_tokens,
        motion_mask,
    ) -> tuple[torch.Tensor, ...]:
        """Argument conflicts, types and shapes (no read of tensor values: a device sync in ``forward``).

        Values (finite audio, ids and codes in range, a valid first step) are checked where the data enters: the
        processor for audio and labels, the motion prior's ``encode`` for tokens.
        """
        config = self.config
        if not isinstance(input_values, torch.Tensor) or input_values.ndim != 2 or input_values.shape[1] == 0:
            got = tuple(input_values.shape) if isinstance(input_values, torch.Tensor) else type(input_values).__name__
            raise ValueError(f"input_values must be a float tensor [batch, samples] of 16 kHz audio, got {got}")
        batch = input_values.shape[0]
        if attention_mask is not None and tuple(attention_mask.shape) != tuple(input_values.shape):
            raise ValueError(
                f"attention_mask must have the shape of input_values {list(input_values.shape)}, "
                f"got {list(attention_mask.shape)}"
            )
        min_samples = math.ceil(config.sampling_rate / config.fps)
        if input_values.shape[1] < min_samples:
            raise ValueError(
                f"input_values must hold at least one animation frame of audio ({min_samples} samples at "
                f"{config.sampling_rate} Hz and {config.fps:g} fps), got lengths {input_values.shape[1]}"
            )
        if motion_tokens is None:
            raise ValueError("motion_tokens must be given ([batch, tokens, G] code ids), got None")
        if not isinstance(motion_tokens, torch.Tensor) or motion_tokens.ndim != 3:
            got = (
                tuple(motion_tokens.shape) if isinstance(motion_tokens, torch.Tensor) else type(motion_tokens).__name__
            )
            raise ValueError(f"motion_tokens must have shape [batch, tokens, {config.num_groups}], got {got}")
        if (
            motion_tokens.shape[0] != batch
            or motion_tokens.shape[2] != config.num_groups
            or motion_tokens.shape[1] == 0
        ):
            raise ValueError(
                f"motion_tokens must have shape [batch={batch}, tokens >= 1, G={config.num_groups}], "
                f"got {list(motion_tokens.shape)}"
            )
        if torch.is_floating_point(motion_tokens):
            raise ValueError(f"motion_tokens must be integer code ids, got dtype {motion_tokens.dtype}")
        steps = motion_tokens.shape[1]
        if motion_mask is None:
            motion_mask = torch.ones(batch, steps, dtype=torch.bool, device=motion_tokens.device)
        elif tuple(motion_mask.shape) != (batch, steps):
            raise ValueError(
                f"motion_mask must have shape [batch, tokens] = {[batch, steps]}, got {list(motion_mask.shape)}"
            )
        motion_mask = motion_mask.bool()
        ids = []
        for name, value in (("emotion_ids", emotion_ids), ("intensity_ids", intensity_ids), ("speaker_ids", speaker_ids)):
            if value is None:
                if name != "speaker_ids":
                    raise ValueError(f"{name} must be given (a [batch] tensor of ids), got None")
                value = torch.zeros(batch, dtype=torch.long, device=input_values.device)  # unknown speaker
            value = torch.as_tensor(value, device=input_values.device)
            if value.ndim == 0:
                value = value.expand(batch)
            if tuple(value.shape) != (batch,) or torch.is_floating_point(value):
                raise ValueError(f"{name} must be an integer tensor [batch={batch}], got shape {list(value.shape)} "
                                 f"and dtype {value.dtype}")  # fmt: skip
            ids.append(value.long())
        return (*ids, motion_tokens.long().masked_fill(~motion_mask[..., None], 0), motion_mask)

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        emotion_ids: torch.Tensor | None = None,
        intensity_ids: torch.Tensor | None = None,
        speaker_ids: torch.Tensor | None = None,
        motion_tokens: torch.Tensor | None = None,
        motion_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> ESARMRewardOutput | tuple:
        """Per-step rewards and discounted returns of trajectories.

        Args:
            input_values: 16 kHz audio ``[batch, samples]`` (as :class:`~esarm.ESARMProcessor` returns it).
            attention_mask: ``[batch, samples]`` 1 at real samples, 0 at padding.
            emotion_ids: ``[batch]`` ids into ``esarm.blendshapes.EMOTIONS``.
            intensity_ids: ``[batch]`` ids 0..2 (intensities 1..3).
            speaker_ids: ``[batch]`` ids, 0 = unknown speaker (default).
            motion_tokens: ``[batch, tokens, G]`` code ids of the motion prior.
            motion_mask: ``[batch, tokens]`` 1 at valid steps (right padding); default all valid.
            labels: ``[batch]`` target returns: the output then holds ``loss``, the mean squared error of ``returns``
                (regression, as transformers' ``num_labels=1`` heads). The ranking of paper eq. 1 needs a pair of
                trajectories: :func:`ranking_loss` on two ``returns``.
            output_hidden_states: Return the transformer's hidden states (``config.output_hidden_states``).
            output_attentions: Return the transformer's attention weights (``config.output_attentions``). They are
                computed eagerly, because ``F.scaled_dot_product_attention`` does not return them: slower.
            return_dict: Return an :class:`ESARMRewardOutput` (default, ``config.return_dict``) or a tuple.

        Returns:
            :class:`ESARMRewardOutput` with ``rewards`` ``[batch, tokens]`` and ``returns`` ``[batch]``.
        """
        if labels is not None and tuple(labels.shape) != (input_values.shape[0],):
            raise ValueError(
                f"labels must be a [batch={input_values.shape[0]}] tensor of target returns, got shape "
                f"{list(labels.shape)}"
            )
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        emotion_ids, intensity_ids, speaker_ids, motion_tokens, motion_mask = self._check_inputs(
            input_values, attention_mask, emotion_ids, intensity_ids, speaker_ids, motion_tokens, motion_mask
        )
        batch, steps, groups = motion_tokens.shape

        # Audio features resampled to each trajectory's number of valid steps.
        input_values = input_values.to(self.speech_encoder.projection.weight.dtype)
        audio, _ = self.speech_encoder(input_values, attention_mask, motion_mask.sum(-1))  # [B, <=T', H]
        audio = F.pad(audio, (0, 0, 0, steps - audio.shape[1])) * motion_mask[..., None]

        offsets = torch.arange(groups, device=motion_tokens.device) * self.config.codebook_size
        motion = self.token_embedding(motion_tokens + offsets).sum(dim=2)  # [B, T', H]

        types = self.type_embedding.weight
        prefix = torch.stack(
            [self.emotion_embedding(emotion_ids), self.intensity_embedding(intensity_ids),
             self.speaker_embedding(speaker_ids)], dim=1,
        ) + types[0]  # fmt: skip
        interleaved = torch.stack([audio + types[1], motion + types[2]], dim=2).reshape(batch, 2 * steps, -1)
        # Right padding only: causal attention never reads a later (padded) position, so no key mask is needed.
        hidden_states = [] if output_hidden_states else None
        attentions = [] if output_attentions else None
        hidden = self.transformer(
            torch.cat([prefix, interleaved], dim=1), all_hidden_states=hidden_states, all_attentions=attentions
        )
        # hidden: [B, 3 + 2T', H]
        motion_hidden = hidden[:, _PREFIX_LENGTH + 1 :: 2]  # outputs at motion_t: [B, T', H]

        rewards = self.reward_head(motion_hidden).squeeze(-1) * motion_mask
        discounts = self.config.gamma ** torch.arange(steps, device=rewards.device, dtype=rewards.dtype)
        returns = (rewards * discounts).sum(-1)
        loss = None
        if labels is not None:
            loss = F.mse_loss(returns.float(), labels.to(device=returns.device, dtype=torch.float32))
        output = ESARMRewardOutput(
            loss=loss,
            rewards=rewards,
            returns=returns,
            motion_mask=motion_mask,
            last_hidden_state=motion_hidden,
            hidden_states=tuple(hidden_states) if hidden_states else None,
            attentions=tuple(attentions) if attentions else None,
        )
        return output if return_dict else output.to_tuple()


__all__ = ["ESARMRewardModel", "ESARMRewardOutput", "ESARMRewardPreTrainedModel", "ranking_loss"]
