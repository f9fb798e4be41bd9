"""ESARMRewardModel: per-step rewards and discounted returns of (speech, motion-token) trajectories.

Paper section III-B.3 (Fig. 4): the reward model reads an animated talking-face sequence, audio and facial motion
interleaved so that causality holds, through a causal transformer with masked multi-head attention, and predicts a
reward. Here the sequence is

    [emotion, intensity, speaker, audio_1, motion_1, audio_2, motion_2, ..., audio_T', motion_T']

where ``audio_t`` is the speech encoder's feature (learned layer weighting, resampled to the motion steps; shared
:class:`~esarm.speech_encoder.SpeechEncoder`) and ``motion_t`` the sum of the G per-group embeddings of the motion
token ``[G]`` of step ``t`` (``motion_input="tokens"``, the paper) or, with ``motion_input="blendshapes"``, the
projection of the motion that the frozen motion prior decodes from those tokens: the step's ``frames_per_token``
frames of 52 coefficients and their velocities. The second judges motion, not code identities: an ESARM reward
model fed token embeddings learns which codes the policy emits (its held-out ranking of the capture above
epsilon = 0.02 rollouts was 18 %, docs/rl.md). The reward ``r_t`` is read at ``motion_t`` (it sees the condition and the audio and
motion of steps ``<= t``) and the return is ``R(tau) = sum_t gamma^t r_t`` over valid steps (paper eq. 2).

:func:`ranking_loss` is paper eq. 1, the Bradley-Terry cross entropy on the returns of a pair of trajectories; the
reward trainer (:mod:`esarm.training.reward`) trains with it. ``forward(labels=...)`` follows transformers' convention
for a scalar-score head (``...ForSequenceClassification`` with ``num_labels=1``): given a target return per
trajectory it returns the mean squared error, for regression onto known scores and for the generic training loops
that expect a ``loss``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.utils import ModelOutput

from .blendshapes import NUM_BLENDSHAPES
from .configuration_esarm import ESARMMotionPriorConfig, ESARMRewardModelConfig, motion_prior_config_dict
from .file_modes import NewFileModeMixin
from .frames import num_motion_steps
from .model_inputs import check_model_inputs
from .modeling_motion_prior import ESARMMotionPrior
from .modules import CausalTransformer, init_module_weights
from .speech_encoder import SpeechEncoder, SpeechEncoderCheckpointingMixin, build_audio_encoder

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
        self.token_embedding = self.motion_prior = self.motion_projection = None
        if config.motion_input == "tokens":
            # One table for all groups: the code k of group g is row g * K + k.
            self.token_embedding = nn.Embedding(config.num_groups * config.codebook_size, hidden)
        else:
            self.motion_prior = ESARMMotionPrior(ESARMMotionPriorConfig(**config.motion_prior_config))
            self.motion_prior.requires_grad_(False)
            # per step: frames_per_token frames x (52 values + 52 velocities)
            self.motion_projection = nn.Linear(config.frames_per_token * 2 * NUM_BLENDSHAPES, hidden)
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

    def get_input_embeddings(self) -> nn.Module:
        """The motion input: the token embedding table (``G * K`` rows: code ``k`` of group ``g`` is row
        ``g * K + k``), or with ``motion_input="blendshapes"`` the projection of the decoded motion."""
        return self.token_embedding if self.token_embedding is not None else self.motion_projection

    def set_input_embeddings(self, value: nn.Module) -> None:
        if self.token_embedding is not None:
            self.token_embedding = value
        else:
            self.motion_projection = value

    def train(self, mode: bool = True):
        super().train(mode)
        if self.motion_prior is not None:
            self.motion_prior.eval()  # frozen: decodes, never trains
        return self

    def load_motion_prior(self, path_or_model: str | os.PathLike | ESARMMotionPrior, **kwargs) -> ESARMMotionPrior:
        """Replace the frozen motion prior of ``motion_input="blendshapes"`` with a trained one (a folder, Hub name
        or instance; ``kwargs`` go to ``from_pretrained``). It must emit the tokens this model reads (G, K, frames per
        token, fps)."""
        if self.motion_prior is None:
            raise ValueError(
                f"load_motion_prior needs motion_input='blendshapes', got motion_input={self.config.motion_input!r}"
            )
        if isinstance(path_or_model, ESARMMotionPrior):
            prior = path_or_model
        elif isinstance(path_or_model, (str, os.PathLike)):
            prior = ESARMMotionPrior.from_pretrained(path_or_model, **kwargs)
        else:
            raise ValueError(
                f"path_or_model must be a folder / Hub name or an ESARMMotionPrior, got {type(path_or_model).__name__}"
            )
        config = self.config
        expected = (config.num_groups, config.codebook_size, config.frames_per_token, float(config.fps))
        given = (prior.num_groups, prior.codebook_size, prior.frames_per_token, float(prior.config.fps))
        if expected != given:
            raise ValueError(
                f"motion prior must have G, K, frames_per_token and fps {expected} (this reward model's), got {given}"
            )
        param = self.motion_projection.weight
        prior = prior.to(device=param.device, dtype=param.dtype).eval()
        prior.requires_grad_(False)
        self.motion_prior = prior
        self.config.motion_prior_config = motion_prior_config_dict(prior.config)
        return prior

    def embed_motion(self, motion_tokens: torch.LongTensor, motion_mask: torch.BoolTensor) -> torch.FloatTensor:
        """``motion_t`` of every step ``[B, T', H]`` from code ids ``[B, T', G]`` (padded steps hold code 0).

        ``"tokens"``: the sum of the per-group code embeddings. ``"blendshapes"``: the frozen prior decodes the
        codes to frames ``[B, T' * f, 52]``; each frame's velocity (difference to the previous frame, times ``fps``:
        coefficient units per second, 0 at the first frame) is appended and the ``f`` frames of a step are
        projected together. The prior's ``decode`` checks the code range (one device sync per call).
        """
        batch, steps, groups = motion_tokens.shape
        if self.token_embedding is not None:
            offsets = torch.arange(groups, device=motion_tokens.device) * self.config.codebook_size
            return self.token_embedding(motion_tokens + offsets).sum(dim=2)
        with torch.no_grad():
            frames = self.motion_prior.decode(motion_tokens, motion_mask=motion_mask)  # [B, T' * f, 52]
        frames = frames.to(self.motion_projection.weight.dtype)
        velocity = torch.diff(frames, dim=1, prepend=frames[:, :1]) * self.config.fps
        motion = torch.cat([frames, velocity], dim=-1).reshape(batch, steps, -1)  # [B, T', f * 104]
        return self.motion_projection(motion) * motion_mask[..., None]

    def num_motion_steps(self, num_samples: int) -> int:
        """Motion steps T' of ``num_samples`` of audio: ceil(round(seconds * fps) / frames_per_token)."""
        config = self.config
        return num_motion_steps(num_samples, config.fps, config.sampling_rate, config.frames_per_token)

    def _sequence(self, audio, motion, emotion_ids, intensity_ids, speaker_ids) -> torch.Tensor:
        """The transformer's input ``[B, 3 + 2T', H]``: the condition prefix (emotion, intensity, speaker), then
        ``audio_t``, ``motion_t`` (:meth:`embed_motion`) interleaved, each with its type embedding."""
        batch, steps, _ = motion.shape
        types = self.type_embedding.weight
        prefix = torch.stack(
            [self.emotion_embedding(emotion_ids), self.intensity_embedding(intensity_ids),
             self.speaker_embedding(speaker_ids)], dim=1,
        ) + types[0]  # fmt: skip
        interleaved = torch.stack([audio + types[1], motion + types[2]], dim=2).reshape(batch, 2 * steps, -1)
        return torch.cat([prefix, interleaved], dim=1)

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
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        # the audio in the speech encoder's dtype, the ids as int64, padded steps as code 0
        input_values, attention_mask, _, emotion_ids, intensity_ids, speaker_ids, motion_tokens, motion_mask = (
            check_model_inputs(
                self.config, self.speech_encoder.projection.weight, input_values, attention_mask, emotion_ids,
                intensity_ids, speaker_ids, motion_tokens, motion_mask,
                required=("emotion_ids", "intensity_ids", "motion_tokens"),
            )
        )  # fmt: skip
        if labels is not None and tuple(labels.shape) != (input_values.shape[0],):
            raise ValueError(
                f"labels must be a [batch={input_values.shape[0]}] tensor of target returns, got shape "
                f"{list(labels.shape)}"
            )
        steps = motion_tokens.shape[1]

        # Audio features resampled to each trajectory's number of valid steps.
        audio, _ = self.speech_encoder(input_values, attention_mask, motion_mask.sum(-1))  # [B, <=T', H]
        audio = F.pad(audio, (0, 0, 0, steps - audio.shape[1])) * motion_mask[..., None]

        motion = self.embed_motion(motion_tokens, motion_mask)  # [B, T', H]
        # Right padding only: causal attention never reads a later (padded) position, so no key mask is needed.
        hidden_states = [] if output_hidden_states else None
        attentions = [] if output_attentions else None
        hidden = self.transformer(
            self._sequence(audio, motion, emotion_ids, intensity_ids, speaker_ids),
            all_hidden_states=hidden_states, all_attentions=attentions,
        )  # fmt: skip
        # hidden: [B, 3 + 2T', H]
        motion_hidden = hidden[:, _PREFIX_LENGTH + 1 :: 2]  # outputs at motion_t: [B, T', H]

        rewards = self.reward_head(motion_hidden).squeeze(-1) * motion_mask
        discounts = self.config.gamma ** torch.arange(steps, device=rewards.device, dtype=rewards.dtype)
        returns = (rewards * discounts).sum(-1)
        loss = None if labels is None else F.mse_loss(returns.float(), labels.to(returns.device, torch.float32))
        output = ESARMRewardOutput(
            loss=loss, rewards=rewards, returns=returns, motion_mask=motion_mask, last_hidden_state=motion_hidden,
            hidden_states=tuple(hidden_states) if hidden_states else None,
            attentions=tuple(attentions) if attentions else None,
        )  # fmt: skip
        return output if return_dict else output.to_tuple()


__all__ = ["ESARMRewardModel", "ESARMRewardOutput", "ESARMRewardPreTrainedModel", "ranking_loss"]


# Registration with transformers' Auto classes, done on import (``import esarm`` imports this module). A saved
# folder's copy of this file, run with ``trust_remote_code=True``, registers nothing: its own ``auto_map`` serves it.
if __package__ == "esarm":
    AutoModel.register(ESARMRewardModelConfig, ESARMRewardModel, exist_ok=True)
    ESARMRewardModel.register_for_auto_class("AutoModel")
