"""ESARM speech-to-animation (STA) model: 16 kHz speech + emotion / intensity / speaker -> motion tokens -> blendshapes.

Pipeline (paper Sec. III-A, Fig. 2b and 3):

1. speech encoder (WavLM) -> learned softmax weighting of its layers -> projection, resampled to one feature per
   motion step ``T'`` (``T = round(seconds * fps)`` frames, ``T' = ceil(T / frames_per_token)``);
2. emotion-disentangling encoder: a content branch over time and an emotion branch pooled over time with an
   emotion classifier (``emotion="auto"`` uses its prediction);
3. style ``S(c)``: linear projection of the one-hot emotion, intensity and speaker (id 0 = unknown speaker),
   concatenated to every step: the input of step ``t`` is the projection of ``[content_t | emotion | S(c)]``
   plus the embedding of the tokens chosen at ``t - 1`` (a learned BOS embedding at ``t = 0``);
4. causal transformer -> one head of ``K`` logits per face-region codebook (``G`` heads);
5. the (frozen) motion prior decodes the tokens to 52 ARKit blendshapes at ``fps``.

Config switches for small CPU models (:mod:`esarm.audio_features`): ``audio_front_end="log_mel"`` replaces the speech
encoder of step 1 by per-utterance-normalised log-mel frames, ``"phones"`` / ``"log_mel+phones"`` by (or adds) the
phones PocketSphinx recognises every 10 ms (:mod:`esarm.phonetic`); ``phone_loss_weight`` adds a phone-class head on the
content branch; ``mouth_conditioning="content"`` predicts the mouth codebook from the content features and the
previous mouth tokens only (a second causal transformer), so that the labels of step 3 cannot move the mouth.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, GenerationConfig, LogitsProcessorList, PreTrainedModel
from transformers import initialization as init
from transformers.dynamic_module_utils import custom_object_save
from transformers.utils import ModelOutput

from .audio_features import LogMelFrontEnd, PhoneClassHead, PhoneFrontEnd
from .configuration_esarm import ESARMSTAConfig
from .file_modes import NewFileModeMixin
from .frames import num_frames, num_motion_steps, resample
from .generation import decode_autoregressively, default_generation_config, prepare_decoding
from .inference import int8_inference_layers
from .model_inputs import check_audio_inputs, check_condition_ids, check_model_inputs, check_motion_tokens
from .modeling_motion_prior import ESARMMotionPrior
from .modules import CausalTransformer, init_module_weights, sequence_mask
from .pipeline import SpeechToAnimationPipeline, custom_pipelines
from .speech_encoder import SpeechEncoder, SpeechEncoderCheckpointingMixin, build_audio_encoder

logger = logging.getLogger(__name__)

__all__ = ["ESARMSTAForGeneration", "ESARMSTAGenerateOutput", "ESARMSTAOutput", "ESARMSTAPreTrainedModel"]


@dataclass
class ESARMSTAOutput(ModelOutput):
    """Output of :meth:`ESARMSTAForGeneration.forward`.

    Args:
        loss: ``token_loss + emotion_loss_weight * emotion_loss`` (terms present when their targets are given).
        token_loss: teacher-forced cross entropy of the motion tokens (mean over valid steps and groups).
        emotion_loss: cross entropy of the emotion classifier against ``emotion_ids``.
        phone_loss: cross entropy of the phone-class head of the content branch against ``phone_classes`` (with
            ``config.phone_loss_weight > 0``); weighted into ``loss``.
        mouth_regression_loss: mean squared error, in blendshape space, between the prior's decoding of the
            softmax-weighted mouth codes and that of the target mouth tokens (with
            ``config.mouth_regression_weight > 0``); weighted into ``loss``.
        logits: ``[B, T', G, K]`` next-token logits (``None`` without ``motion_tokens``: they need the previous
            tokens; use :meth:`~ESARMSTAForGeneration.generate`).
        emotion_logits: ``[B, E]`` emotion classifier logits (E = 8, ``EMOTIONS`` order).
        content_features: ``[B, T', H]`` content branch.
        emotion_features: ``[B, H]`` emotion branch (pooled over time).
        style: ``[B, style_size]`` style vector ``S(c)``.
        audio_features: ``[B, T', H]`` weighted, projected and resampled speech-encoder features.
        motion_mask: ``[B, T']`` True at valid steps (inside the audio and, with targets, inside ``motion_mask``).
        hidden_states: With ``output_hidden_states=True`` and ``motion_tokens``: the motion transformer's input to
            each block and its normalised output, ``num_hidden_layers + 1`` tensors ``[B, T', H]``.
        attentions: With ``output_attentions=True`` and ``motion_tokens``: the motion transformer's attention
            weights, ``num_hidden_layers`` tensors ``[B, heads, T', T']`` (the speech encoder's are not returned).
    """

    loss: torch.FloatTensor | None = None
    token_loss: torch.FloatTensor | None = None
    emotion_loss: torch.FloatTensor | None = None
    phone_loss: torch.FloatTensor | None = None
    mouth_regression_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    emotion_logits: torch.FloatTensor | None = None
    content_features: torch.FloatTensor | None = None
    emotion_features: torch.FloatTensor | None = None
    style: torch.FloatTensor | None = None
    audio_features: torch.FloatTensor | None = None
    motion_mask: torch.BoolTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class ESARMSTAGenerateOutput(ModelOutput):
    """Output of :meth:`ESARMSTAForGeneration.generate`.

    Args:
        motion_tokens: ``[B, T', G]`` code ids (0 at padded steps).
        blendshapes: ``[B, T, 52]`` ARKit coefficients in [0, 1] at ``fps`` (0 at padded frames).
        frame_mask: ``[B, T]`` True at valid frames.
        token_mask: ``[B, T']`` True at valid steps.
        emotion_ids: ``[B]`` emotion ids used (given, or predicted with ``emotion="auto"``).
        intensity_ids: ``[B]`` intensity ids used.
        speaker_ids: ``[B]`` speaker ids used.
        emotion_logits: ``[B, E]`` emotion classifier logits.
    """

    motion_tokens: torch.LongTensor | None = None
    blendshapes: torch.FloatTensor | None = None
    frame_mask: torch.BoolTensor | None = None
    token_mask: torch.BoolTensor | None = None
    emotion_ids: torch.LongTensor | None = None
    intensity_ids: torch.LongTensor | None = None
    speaker_ids: torch.LongTensor | None = None
    emotion_logits: torch.FloatTensor | None = None


# --------------------------------------------------------------------------------------------------------------------
# Input validation (ValueError naming the argument, the expected and the given value)
# --------------------------------------------------------------------------------------------------------------------


def _fit_steps(sequence: torch.Tensor, steps: int) -> torch.Tensor:
    """Cut or zero-pad ``[B, T', ...]`` to ``steps`` along the step axis."""
    if sequence.shape[1] >= steps:
        return sequence[:, :steps]
    padding = sequence.new_zeros((sequence.shape[0], steps - sequence.shape[1], *sequence.shape[2:]))
    return torch.cat([sequence, padding], dim=1)


# --------------------------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------------------------


class PreviousTokenDropout(nn.Dropout):
    """Training-time replacement of previous-token embeddings by a mask embedding (``config.previous_token_dropout``).

    Each sequence's step ``t`` input ``[B, L, H]`` is replaced by ``mask_embedding [H]`` with probability ``p``
    (steps independent). A subclass of ``nn.Dropout`` so that the usual switches apply: inactive in ``eval()`` mode
    and when dropout is disabled by setting ``p = 0`` (e.g. ``trl``'s ``disable_dropout_in_model``).
    """

    def forward(self, inputs: torch.Tensor, mask_embedding: torch.Tensor | None = None) -> torch.Tensor:
        if not self.training or self.p <= 0.0 or mask_embedding is None:
            return inputs
        drop = torch.rand(inputs.shape[:2], device=inputs.device) < self.p  # [B, L]
        return torch.where(drop[..., None], mask_embedding.to(inputs.dtype), inputs)


class SpectralFeatures(nn.Module):
    """Log band energies of the waveform per motion step, projected to the model width (``config.spectral_features``).

    20 ms hop (as WavLM), 64 ms Hann window, ``num_bands`` rectangular bands evenly spaced on a log frequency scale
    between 60 Hz and the Nyquist frequency; resampled to the motion steps like the speech-encoder features.
    """

    hop_length = 320  # samples at 16 kHz: 50 frames per second
    window_length = 1024

    def __init__(self, num_bands: int, sampling_rate: int, output_size: int):
        super().__init__()
        self.num_bands = num_bands
        self.sampling_rate = sampling_rate
        self.projection = nn.Linear(num_bands, output_size)

    def band_matrix(self, device: torch.device | None = None) -> torch.Tensor:
        """``[bins, num_bands]`` 0/1 matrix summing FFT power bins into bands (built on the fly rather than kept as
        a buffer: ``from_pretrained`` creates modules on the meta device and would leave a buffer there)."""
        bins = self.window_length // 2 + 1
        frequencies = torch.linspace(0, self.sampling_rate / 2, bins)
        edges = torch.logspace(math.log10(60.0), math.log10(self.sampling_rate / 2), self.num_bands + 1)
        bands = torch.zeros(bins, self.num_bands)
        for b in range(self.num_bands):
            inside = (frequencies >= edges[b]) & (frequencies <= edges[b + 1])
            if not inside.any():  # narrow low band: its nearest bin
                inside[int((frequencies - edges[b : b + 2].mean()).abs().argmin())] = True
            bands[inside, b] = 1.0
        return bands.to(device)

    def forward(
        self, input_values: torch.Tensor, sample_lengths: torch.Tensor, num_steps: torch.Tensor
    ) -> torch.Tensor:
        """``[B, S]`` audio, ``[B]`` valid samples, ``[B]`` steps -> ``[B, max(num_steps), output_size]``."""
        half = self.window_length // 2
        with torch.no_grad():  # a fixed transform of the input: nothing to learn before the projection
            padded = F.pad(input_values.float(), (half, half + self.hop_length))
            frames = padded.unfold(1, self.window_length, self.hop_length)  # [B, F, window]
            window = torch.hann_window(self.window_length, device=frames.device)
            spectrum = torch.fft.rfft(frames * window, dim=-1)
            power = spectrum.real.square() + spectrum.imag.square()  # [B, F, bins]
            energies = torch.log(power @ self.band_matrix(frames.device) + 1e-4) * 0.1  # [B, F, bands], ~unit scale
        num_frames = (sample_lengths // self.hop_length + 1).clamp(min=1, max=energies.shape[1])
        features, _ = resample(self.projection(energies.to(self.projection.weight.dtype)), num_frames,
                                        num_steps.to(num_frames.device))  # fmt: skip
        return features


class ESARMSTAPreTrainedModel(NewFileModeMixin, SpeechEncoderCheckpointingMixin, PreTrainedModel):
    config_class = ESARMSTAConfig
    base_model_prefix = "sta"
    main_input_name = "input_values"
    _no_split_modules = ["TransformerBlock"]
    supports_gradient_checkpointing = True
    # every attention layer calls F.scaled_dot_product_attention (esarm.modules.CausalSelfAttention)
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        init_module_weights(module, std)
        if isinstance(module, ESARMSTAForGeneration):
            init.normal_(module.bos_embedding, mean=0.0, std=std)
            if module.mask_embedding is not None:
                init.normal_(module.mask_embedding, mean=0.0, std=std)


class ESARMSTAForGeneration(ESARMSTAPreTrainedModel):
    """The ESARM speech-to-animation model (see the module docstring for the architecture).

    Holds the speech encoder (``self.audio_encoder``) and the frozen motion prior (``self.motion_prior``) that
    decodes generated tokens; replace the prior with a trained one with :meth:`load_motion_prior`.
    """

    def __init__(self, config: ESARMSTAConfig):
        super().__init__(config)
        hidden = config.hidden_size
        num_speaker_ids = config.num_speakers + 1  # id 0 = unknown speaker
        self.speech_encoder = None
        if config.audio_front_end in ("speech_encoder", "both"):
            encoder = build_audio_encoder(config.audio_encoder_config, config.audio_encoder_name_or_path)
            self.speech_encoder = SpeechEncoder(encoder, hidden)
        self.log_mel = (
            LogMelFrontEnd(config.log_mel_bands, hidden, config.sampling_rate)
            if config.audio_front_end in ("log_mel", "both", "log_mel+phones")
            else None
        )
        self.phones = (
            PhoneFrontEnd(hidden, use_score=config.phone_feature_set == "one_hot+score")
            if config.audio_front_end in ("phones", "log_mel+phones")
            else None
        )
        self.spectral_features = (
            SpectralFeatures(config.spectral_features, config.sampling_rate, hidden)
            if config.spectral_features
            else None
        )

        def encoder_branch(num_layers: int) -> CausalTransformer:
            return CausalTransformer(
                hidden, num_layers, config.num_attention_heads, config.intermediate_size, config.dropout,
                layer_norm_eps=config.layer_norm_eps, causal=False,
            )  # fmt: skip

        self.content_encoder = encoder_branch(config.content_encoder_layers)
        self.emotion_encoder = encoder_branch(config.emotion_encoder_layers)
        self.emotion_head = nn.Linear(hidden, config.num_emotions)
        self.phone_head = (
            PhoneClassHead(hidden, config.frames_per_token) if config.phone_loss_weight > 0 else None
        )
        self.style_projection = nn.Linear(config.num_emotions + config.num_intensities + num_speaker_ids,
                                          config.style_size)  # fmt: skip
        self.decoder_input = nn.Linear(2 * hidden + config.style_size, hidden)
        self.token_embeddings = nn.ModuleList(
            nn.Embedding(config.codebook_size, hidden) for _ in range(config.num_groups)
        )
        self.bos_embedding = nn.Parameter(torch.zeros(hidden))
        # training only: previous-token embeddings replaced by a learned mask embedding (no parameter when 0, so
        # checkpoints of models trained without it keep their state dict)
        self.previous_token_dropout = PreviousTokenDropout(config.previous_token_dropout)
        self.mask_embedding = nn.Parameter(torch.zeros(hidden)) if config.previous_token_dropout > 0 else None
        self.motion_transformer = CausalTransformer(
            hidden, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size, config.dropout,
            attention_window=config.attention_window, layer_norm_eps=config.layer_norm_eps,
        )  # fmt: skip
        self.motion_head = nn.Linear(hidden, config.num_groups * config.codebook_size)
        # mouth_conditioning="content": the mouth codebook (group 0) from the content features and the previous mouth
        # tokens only, through its own causal transformer; "parallel": from the content features, every step at once,
        # through a bidirectional one, plus a per-clip bias from the style (the label's mouth shape and amplitude).
        # The logits of group 0 from motion_head are then unused.
        self.mouth_input = self.mouth_transformer = self.mouth_head = self.mouth_style = None
        if config.mouth_conditioning in ("content", "parallel"):
            causal = config.mouth_conditioning == "content"
            self.mouth_input = nn.Linear(hidden, hidden)
            self.mouth_transformer = CausalTransformer(
                hidden, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size,
                config.dropout, attention_window=config.attention_window if causal else None,
                layer_norm_eps=config.layer_norm_eps, causal=causal,
            )  # fmt: skip
            self.mouth_head = nn.Linear(hidden, config.codebook_size)
            if not causal:
                self.mouth_style = nn.Linear(config.style_size, hidden)
        self.motion_prior = ESARMMotionPrior(config.motion_prior_config)
        self.post_init()
        # ESARM's own sampling settings (epsilon beside do_sample / temperature / top_k), saved beside the weights as
        # generation_config.json; from_pretrained replaces them with the saved ones.
        self.generation_config = default_generation_config()
        self.motion_prior.requires_grad_(False)
        self.motion_prior.eval()
        if config.freeze_feature_encoder and hasattr(self.audio_encoder, "freeze_feature_encoder"):
            self.audio_encoder.freeze_feature_encoder()

    @classmethod
    def can_generate(cls) -> bool:
        """True: :meth:`generate` follows transformers' conventions where they fit (see its docstring)."""
        return True

    def adjust_generation_fn(self, generation_config, from_auto_class, from_pipeline, pretrained_model_name_or_path,
                             **kwargs) -> None:  # fmt: skip
        """Called by ``from_pretrained`` on models that can generate: load the saved ``generation_config.json``.

        A ``generation_config`` passed to ``from_pretrained`` wins; a folder saved without one keeps the defaults.
        """
        if generation_config is not None:
            self.generation_config = generation_config
            return
        if pretrained_model_name_or_path is None:  # from_pretrained(None, config=..., state_dict=...): no folder
            return
        download = ("cache_dir", "force_download", "proxies", "token", "revision", "subfolder", "local_files_only")
        try:
            self.generation_config = GenerationConfig.from_pretrained(
                pretrained_model_name_or_path, **{key: kwargs[key] for key in download if kwargs.get(key) is not None}
            )
        except OSError:
            logger.info("%s has no generation_config.json: default generation settings", pretrained_model_name_or_path)

    # ---- properties ------------------------------------------------------------------------------------------

    @property
    def audio_encoder(self) -> PreTrainedModel | None:
        """The speech encoder (WavLM by default; ``None`` with ``config.audio_front_end="log_mel"``)."""
        return self.speech_encoder.encoder if self.speech_encoder is not None else None

    @property
    def fps(self) -> float:
        return self.config.fps

    @property
    def num_groups(self) -> int:
        return self.config.num_groups

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def train(self, mode: bool = True):
        if mode:
            self._check_no_int8_layers("train")
        super().train(mode)
        self.motion_prior.eval()  # the prior stays frozen (no EMA / dead-code updates while the STA trains)
        return self

    def _check_no_int8_layers(self, action: str) -> None:
        if int8_inference_layers(self):
            raise ValueError(
                f"this model cannot {action}: its speech encoder holds dynamic int8 inference layers "
                "(esarm.inference.optimize_for_inference(int8=True), one of the CPU defaults that "
                "pipeline('speech-to-animation'), StreamingAnimator and esarm animate apply in place); load the model "
                "again, or pass cpu_defaults=False to keep it in float"
            )

    # ---- motion prior ------------------------------------------------------------------------------------------

    def load_motion_prior(self, path_or_model: str | os.PathLike | ESARMMotionPrior, **kwargs) -> ESARMMotionPrior:
        """Replace the motion prior with a trained one (a ``save_pretrained`` folder, Hub name or instance).

        Its number of groups G and codebook size K must match this model's token heads; its ``fps`` and
        ``frames_per_token`` are adopted. The prior is frozen. ``kwargs`` go to ``from_pretrained``.
        """
        if isinstance(path_or_model, ESARMMotionPrior):
            prior = path_or_model
        elif isinstance(path_or_model, (str, os.PathLike)):
            prior = ESARMMotionPrior.from_pretrained(path_or_model, **kwargs)
        else:
            raise ValueError(
                f"path_or_model must be a folder / Hub name or an ESARMMotionPrior, got {type(path_or_model).__name__}"
            )
        if (prior.num_groups, prior.codebook_size) != (self.num_groups, self.codebook_size):
            raise ValueError(
                f"motion prior must have G={self.num_groups} groups and K={self.codebook_size} codes (this STA "
                f"model's token heads), got G={prior.num_groups} and K={prior.codebook_size}"
            )
        param = next(self.parameters())
        prior = prior.to(device=param.device, dtype=param.dtype)
        prior.requires_grad_(False)
        prior.eval()
        self.motion_prior = prior
        self.config.motion_prior_config = prior.config
        return prior

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """``PreTrainedModel.save_pretrained`` plus the ``"speech-to-animation"`` pipeline: ``custom_pipelines`` in
        ``config.json`` and the pipeline's code beside the model's, so ``pipeline("speech-to-animation",
        model=folder, trust_remote_code=True)`` works where esarm is not installed."""
        self._check_no_int8_layers("be saved")
        self.config.custom_pipelines = custom_pipelines()
        super().save_pretrained(save_directory, *args, **kwargs)
        custom_object_save(SpeechToAnimationPipeline, save_directory)

    # ---- lengths -----------------------------------------------------------------------------------------------

    @property
    def min_num_samples(self) -> int:
        """Shortest accepted audio: one animation frame (``sampling_rate / fps`` samples)."""
        return math.ceil(self.config.sampling_rate / self.fps)

    def num_animation_frames(self, num_samples: int | torch.Tensor) -> int | torch.Tensor:
        """Frames ``T = round(seconds * fps)`` of audio with ``num_samples`` samples (int or ``[B]`` tensor)."""
        return num_frames(num_samples, self.fps, self.config.sampling_rate)

    def num_motion_steps(self, num_samples: int | torch.Tensor) -> int | torch.Tensor:
        """Motion steps ``T' = ceil(T / frames_per_token)`` of audio with ``num_samples`` samples."""
        return num_motion_steps(num_samples, self.fps, self.config.sampling_rate, self.config.frames_per_token)

    @staticmethod
    def default_intensity_ids(emotion_ids: torch.LongTensor) -> torch.LongTensor:
        """Intensity used when none is given: id 0 (level 1) for neutral (MEAD's only level), else id 1 (level 2)."""
        return (emotion_ids != 0).long()

    # ---- building blocks (also used by the disentanglement training) ------------------------------------------

    def encode_audio(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        num_steps: torch.Tensor | None = None,
        phone_features: torch.Tensor | None = None,
    ) -> tuple[torch.FloatTensor, torch.BoolTensor]:
        """Speech features per motion step: ``([B, T', H]``, mask ``[B, T']``).

        ``num_steps`` ``[B]`` sets ``T'`` per sequence (default: from the audio length, :meth:`num_motion_steps`).
        ``phone_features`` ``[B, F, NUM_PHONE_FEATURES]``: the phone path's input when already computed (a dataset's
        cached column, :func:`esarm.data.phone_features.add_phone_features`); by default the model decodes it.
        """
        input_values, attention_mask, lengths = check_audio_inputs(
            self.config, next(self.parameters()), input_values, attention_mask, audio_encoder=self.audio_encoder
        )
        if num_steps is None:
            num_steps = self.num_motion_steps(lengths)
        return self._speech_features(
            input_values, attention_mask, lengths, torch.as_tensor(num_steps, device=lengths.device), phone_features
        )

    def _speech_features(
        self, input_values, attention_mask, lengths, num_steps, phone_features=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Speech-encoder, log-mel and / or phone features (plus the spectral features when configured), summed, on
        the step grid ``[B, T', H]``."""
        paths = []
        if self.speech_encoder is not None:
            paths.append(self.speech_encoder(input_values, attention_mask, num_steps))
        if self.log_mel is not None:
            paths.append(self.log_mel(input_values, lengths, num_steps))
        if self.phones is not None:
            settings = self.config.phone_decoder_settings
            paths.append(self.phones(input_values, lengths, num_steps, phone_features, settings))
        features, mask = paths[0]
        for other, _ in paths[1:]:
            features = features + other * mask[..., None]
        if self.spectral_features is not None:
            features = features + self.spectral_features(input_values, lengths, num_steps) * mask[..., None]
        return features, mask

    def _audio_features_for(
        self, input_values, attention_mask, audio_features, feature_mask
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if audio_features is not None:
            return audio_features, feature_mask
        if input_values is None:
            raise ValueError("input_values (or audio_features) must be given, got None")
        return self.encode_audio(input_values, attention_mask)

    def encode_content(
        self,
        input_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        emotion_ids: torch.Tensor | None = None,
        intensity_ids: torch.Tensor | None = None,
        speaker_ids: torch.Tensor | None = None,
        *,
        audio_features: torch.Tensor | None = None,
        feature_mask: torch.Tensor | None = None,
    ) -> tuple[torch.FloatTensor, torch.BoolTensor]:
        """Content branch: (content features ``[B, T', H]``, step mask ``[B, T']``).

        From audio ``input_values [B, S]`` or precomputed ``audio_features`` (:meth:`encode_audio`). The condition
        ids are accepted for a uniform signature but not used: by design the content branch hears only the audio.
        """
        features, mask = self._audio_features_for(input_values, attention_mask, audio_features, feature_mask)
        return self.content_encoder(features, attention_mask=mask), mask

    def encode_emotion(
        self,
        input_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        emotion_ids: torch.Tensor | None = None,
        intensity_ids: torch.Tensor | None = None,
        speaker_ids: torch.Tensor | None = None,
        *,
        audio_features: torch.Tensor | None = None,
        feature_mask: torch.Tensor | None = None,
    ) -> torch.FloatTensor:
        """Emotion branch: emotion features ``[B, H]`` pooled over valid steps (see :meth:`classify_emotion`).

        Inputs as in :meth:`encode_content`; the branch hears only the audio (conditions unused).
        """
        features, mask = self._audio_features_for(input_values, attention_mask, audio_features, feature_mask)
        hidden = self.emotion_encoder(features, attention_mask=mask)  # [B, T', H]
        if mask is None:
            return hidden.mean(1)
        weights = mask.to(hidden.dtype)[..., None]
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def classify_emotion(self, emotion_features: torch.Tensor) -> torch.FloatTensor:
        """Emotion classifier logits ``[B, E]`` (``EMOTIONS`` order) of emotion features ``[B, H]``."""
        return self.emotion_head(emotion_features)

    def style_vector(
        self, emotion_ids: torch.LongTensor, intensity_ids: torch.LongTensor, speaker_ids: torch.LongTensor
    ) -> torch.FloatTensor:
        """``S(c)``: linear projection of the one-hot emotion, intensity and speaker, ``[B, style_size]``."""
        one_hot = torch.cat(
            [
                F.one_hot(emotion_ids, self.config.num_emotions),
                F.one_hot(intensity_ids, self.config.num_intensities),
                F.one_hot(speaker_ids, self.config.num_speakers + 1),
            ],
            dim=-1,
        ).to(self.style_projection.weight.dtype)
        return self.style_projection(one_hot)

    def _conditioning(self, content: torch.Tensor, emotion: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Per-step input ``[B, T', H]``: projection of ``[content_t | emotion | S(c)]``."""
        steps = content.shape[1]
        expanded = [content, emotion[:, None].expand(-1, steps, -1), style[:, None].expand(-1, steps, -1)]
        return self.decoder_input(torch.cat(expanded, dim=-1))

    def get_input_embeddings(self) -> nn.ModuleList:
        """The per-group motion-token embeddings (``G`` tables of ``K`` codes), the inputs of the transformer."""
        return self.token_embeddings

    def set_input_embeddings(self, value: nn.ModuleList) -> None:
        self.token_embeddings = value

    def embed_motion_tokens(self, motion_tokens: torch.LongTensor) -> torch.FloatTensor:
        """Sum of the per-group token embeddings: ``[B, L, G]`` -> ``[B, L, H]``."""
        return sum(embedding(motion_tokens[..., g]) for g, embedding in enumerate(self.token_embeddings))

    def _previous_token_inputs(self, motion_tokens: torch.LongTensor, length: int) -> torch.FloatTensor:
        """Embeddings of the tokens of step ``t - 1`` for ``t < length`` (BOS at ``t = 0``): ``[B, length, H]``."""
        batch = motion_tokens.shape[0]
        bos = self.bos_embedding[None, None].expand(batch, 1, -1)
        if length == 1:
            return bos
        previous = self.embed_motion_tokens(motion_tokens[:, : length - 1])
        previous = self.previous_token_dropout(previous, self.mask_embedding)  # identity in eval mode
        return torch.cat([bos, previous], dim=1)

    def _previous_mouth_inputs(self, motion_tokens: torch.LongTensor, length: int) -> torch.FloatTensor:
        """Like :meth:`_previous_token_inputs` with the mouth tokens (group 0) only: ``[B, length, H]``."""
        batch = motion_tokens.shape[0]
        bos = self.bos_embedding[None, None].expand(batch, 1, -1)
        if length == 1:
            return bos
        previous = self.token_embeddings[0](motion_tokens[:, : length - 1, 0])
        previous = self.previous_token_dropout(previous, self.mask_embedding)  # identity in eval mode
        return torch.cat([bos, previous], dim=1)

    def encode_mouth(
        self, content_features: torch.Tensor, style: torch.Tensor, step_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``mouth_conditioning="parallel"``: the mouth stream ``[B, T', H]`` of every step at once (bidirectional;
        ``step_mask`` ``[B, T']`` masks padded steps) from the content features ``[B, T', H]``, plus one vector of the
        style ``[B, style_size]`` added to every step after the transformer: a per-clip bias of the mouth logits.
        The label can set the mouth's shape and amplitude (a smile, a wide-open angry mouth); the timing comes from
        the audio alone."""
        hidden = self.mouth_transformer(self.mouth_input(content_features), attention_mask=step_mask)
        return hidden + self.mouth_style(style)[:, None]

    def _mouth_regression_loss(
        self, mouth_logits: torch.Tensor, mouth_tokens: torch.LongTensor, step_mask: torch.Tensor
    ) -> torch.FloatTensor:
        """Mean squared error, over valid frames and mouth blendshapes, between the frozen prior's decoding of the
        softmax-weighted mouth codes (``[B, T', K]`` logits) and its decoding of the target mouth tokens ``[B, T']``."""
        prior = self.motion_prior
        quantizer = prior.quantizers[0]
        expected = mouth_logits.float().softmax(-1) @ quantizer.codebook.float()  # [B, T', D]
        predicted = prior.decode_region(0, expected, step_mask)
        with torch.no_grad():
            target = prior.decode_region(0, quantizer.lookup(mouth_tokens.masked_fill(~step_mask, 0)), step_mask)
        frames = step_mask.repeat_interleave(prior.frames_per_token, dim=1).to(predicted.dtype)
        error = (predicted.float() - target.float()).pow(2).mean(-1)
        return (error * frames).sum() / frames.sum().clamp(min=1.0)

    def _token_logits(self, hidden: torch.Tensor, mouth_hidden: torch.Tensor | None = None) -> torch.FloatTensor:
        """``[B, L, H]`` (and the mouth stream's ``[B, L, H]``) -> ``[B, L, G, K]``."""
        batch, length, _ = hidden.shape
        logits = self.motion_head(hidden).view(batch, length, self.num_groups, self.codebook_size)
        if mouth_hidden is None:
            return logits
        return torch.cat([self.mouth_head(mouth_hidden)[:, :, None], logits[:, :, 1:]], dim=2)

    def logit_dependencies(self) -> dict[str, tuple[int, ...]]:
        """For each parameter name, the codebook groups whose logits it can change, given the audio, the labels (or
        none: the emotion classifier then picks the style) and the previous tokens. A parameter listed with no group
        feeds no logits (the frozen motion prior, the phone-class head of a training loss).

        Every group reads the speech front ends and the content encoder. With ``mouth_conditioning="full"`` every
        group also shares the motion transformer and head, so no group can change without the others. With a mouth
        stream of its own (``"content"`` / ``"parallel"``) the mouth (group 0) reads ``mouth_*`` and not the motion
        transformer, whose group-0 rows of ``motion_head`` are unused; the parallel mouth reads the style
        (``mouth_style``), so the emotion branch and ``style_projection`` feed it too, while the content mouth
        reads its previous tokens (``token_embeddings.0``, ``bos_embedding``) instead. Names this map does not know
        count as feeding every group (what region-wise RL freezes errs on the safe side).
        """
        every = tuple(range(self.num_groups))
        if self.mouth_head is None:
            motion = style = previous_mouth = every
        else:
            motion = every[1:]
            parallel = self.config.mouth_conditioning == "parallel"
            style, previous_mouth = (every, motion) if parallel else (motion, every)
        by_module = {
            **dict.fromkeys(("speech_encoder", "log_mel", "phones", "spectral_features", "content_encoder"), every),
            **dict.fromkeys(("emotion_encoder", "emotion_head", "style_projection"), style),
            **dict.fromkeys(("decoder_input", "motion_transformer", "motion_head"), motion),
            **dict.fromkeys(("mouth_input", "mouth_transformer", "mouth_head", "mouth_style"), (0,)),
            **dict.fromkeys(("bos_embedding", "mask_embedding", "token_embeddings.0"), previous_mouth),
            **dict.fromkeys(("phone_head", "motion_prior"), ()),
        }
        dependencies = {}
        for name, _ in self.named_parameters():
            parts = name.split(".")
            if parts[0] == "token_embeddings":
                dependencies[name] = previous_mouth if parts[1] == "0" else motion
            else:
                dependencies[name] = by_module.get(parts[0], every)
        return dependencies

    def decode_features(
        self,
        content_features: torch.Tensor,
        emotion_features: torch.Tensor,
        emotion_ids: torch.Tensor | None = None,
        intensity_ids: torch.Tensor | None = None,
        speaker_ids: torch.Tensor | None = None,
        motion_tokens: torch.LongTensor | None = None,
        motion_mask: torch.Tensor | None = None,
        *,
        style: torch.Tensor | None = None,
        all_hidden_states: list[torch.Tensor] | None = None,
        all_attentions: list[torch.Tensor] | None = None,
    ) -> torch.FloatTensor:
        """Teacher-forced next-token logits ``[B, T', G, K]`` from disentangled features.

        Cross-reconstruction: content of clip A + emotion of clip B (same sentence, another emotion) -> the
        tokens of clip B.

        Args:
            content_features: ``[B, T', H]`` (e.g. of clip A, aligned to the target's ``T'``, see
                :func:`esarm.frames.resample`).
            emotion_features: ``[B, H]`` (e.g. of clip B) from :meth:`encode_emotion`.
            emotion_ids, intensity_ids, speaker_ids: ``[B]`` conditions of the style ``S(c)`` (emotion: the
                classifier's prediction when ``None``; intensity: :meth:`default_intensity_ids`; speaker: unknown).
            motion_tokens: ``[B, T', G]`` target tokens (inputs shifted right by one step).
            motion_mask: ``[B, T']`` valid steps (right padding; padded tokens are ignored).
            style: a precomputed ``S(c)`` ``[B, style_size]`` instead of the ids.
            all_hidden_states: if given, the motion transformer's hidden states are appended to it.
            all_attentions: if given, the motion transformer's attention weights are appended to it (computed
                eagerly: slower).
        """
        if motion_tokens is None:
            raise ValueError("motion_tokens must be given to decode_features (teacher forcing), got None")
        batch = content_features.shape[0]
        device = next(self.parameters()).device
        motion_tokens, motion_mask = check_motion_tokens(
            self.config, motion_tokens, motion_mask, batch, device, check_values=False
        )
        if motion_tokens.shape[1] != content_features.shape[1]:
            raise ValueError(
                f"motion_tokens must have the steps of content_features ({content_features.shape[1]}), "
                f"got shape {list(motion_tokens.shape)}"
            )
        if style is None:
            emotion_ids, intensity_ids, speaker_ids = check_condition_ids(
                self.config, emotion_ids, intensity_ids, speaker_ids, batch, device, check_values=False
            )
            if emotion_ids is None:
                emotion_ids = self.classify_emotion(emotion_features).argmax(-1)
            if intensity_ids is None:
                intensity_ids = self.default_intensity_ids(emotion_ids)
            style = self.style_vector(emotion_ids, intensity_ids, speaker_ids)
        conditioning = self._conditioning(content_features, emotion_features, style)
        inputs = conditioning + self._previous_token_inputs(motion_tokens, conditioning.shape[1])
        mouth_hidden = None
        if self.config.mouth_conditioning == "parallel":
            mouth_hidden = self.encode_mouth(content_features, style, motion_mask)
        elif self.mouth_transformer is not None:
            mouth_inputs = self.mouth_input(content_features)
            mouth_inputs = mouth_inputs + self._previous_mouth_inputs(motion_tokens, mouth_inputs.shape[1])
            mouth_hidden = self.mouth_transformer(mouth_inputs)
        # right padding: causal attention never lets valid steps see padded ones, so no mask is needed
        hidden = self.motion_transformer(inputs, all_hidden_states=all_hidden_states, all_attentions=all_attentions)
        return self._token_logits(hidden, mouth_hidden)

    # ---- forward -----------------------------------------------------------------------------------------------

    def _total_loss(self, token_loss, phone_loss, mouth_regression_loss, emotion_loss) -> torch.Tensor | None:
        """The training loss: the token loss plus the weighted auxiliary losses that were computed."""
        loss = token_loss
        if phone_loss is not None:
            weighted = self.config.phone_loss_weight * phone_loss
            loss = weighted if loss is None else loss + weighted
        if mouth_regression_loss is not None:
            loss = loss + self.config.mouth_regression_weight * mouth_regression_loss
        if emotion_loss is not None and (self.config.emotion_loss_weight > 0 or loss is None):
            weighted = self.config.emotion_loss_weight * emotion_loss
            loss = weighted if loss is None else loss + weighted
        return loss

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        emotion_ids: torch.Tensor | None = None,
        intensity_ids: torch.Tensor | None = None,
        speaker_ids: torch.Tensor | None = None,
        motion_tokens: torch.LongTensor | None = None,
        motion_mask: torch.Tensor | None = None,
        phone_classes: torch.LongTensor | None = None,
        phone_features: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> ESARMSTAOutput | tuple:
        """Teacher-forced pass.

        Checks argument conflicts, types and shapes only: no check reads tensor values (a device sync that also
        breaks ``torch.compile``). Values (finite audio, ids in range, at least one frame) are checked where user
        input enters: :class:`~esarm.ESARMProcessor`, the pipeline, :meth:`generate`.

        Args:
            input_values: ``[B, S]`` 16 kHz audio (``ESARMProcessor`` output).
            attention_mask: ``[B, S]`` 1 for real samples.
            emotion_ids: ``[B]`` in [0, 8) (``EMOTIONS``); ``None`` uses the emotion branch's prediction and adds
                no emotion loss.
            intensity_ids: ``[B]`` in [0, 3) (intensity 1..3); ``None``: :meth:`default_intensity_ids`.
            speaker_ids: ``[B]`` in [0, num_speakers] (0 = unknown); ``None``: unknown.
            motion_tokens: ``[B, T', G]`` target tokens (from ``ESARMMotionPrior.encode``), aligned by time with
                the audio: step ``t`` covers ``t * frames_per_token / fps`` seconds (steps beyond the audio are
                ignored, like padded ones).
            motion_mask: ``[B, T']`` True at valid steps.
            phone_classes: ``[B, T]`` phone class per animation frame (``esarm.audio_features.PHONE_CLASSES`` ids,
                -100 where unknown), the target of the phone-class head (used with ``config.phone_loss_weight > 0``).
            phone_features: ``[B, F, NUM_PHONE_FEATURES]`` the phone path's input (``audio_front_end`` with
                phones) when already computed, e.g. a dataset's cached column; by default decoded from the audio
                with ``config.phone_decoder_settings``.
            output_hidden_states: Return the motion transformer's hidden states (``config.output_hidden_states``).
            output_attentions: Return the motion transformer's attention weights (``config.output_attentions``),
                computed eagerly because ``F.scaled_dot_product_attention`` does not return them: slower.
            return_dict: Return an :class:`ESARMSTAOutput` (default, ``config.return_dict``) or a tuple.

        Returns:
            :class:`ESARMSTAOutput`; ``logits[:, t]`` is the distribution of the tokens of step ``t`` given the
            audio and the tokens before ``t`` (RL log-probabilities come from it).
        """
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        input_values, attention_mask, lengths, emotion_ids, intensity_ids, speaker_ids, motion_tokens, motion_mask = (
            check_model_inputs(
                self.config, next(self.parameters()), input_values, attention_mask, emotion_ids, intensity_ids,
                speaker_ids, motion_tokens, motion_mask, audio_encoder=self.audio_encoder,
            )
        )  # fmt: skip
        # Audio features live on the audio's own step grid (step t covers t * frames_per_token / fps seconds), as
        # in generate; target tokens are aligned to it by time (cut or padded), not stretched.
        audio_features, step_mask = self._speech_features(
            input_values, attention_mask, lengths, self.num_motion_steps(lengths), phone_features
        )
        content, _ = self.encode_content(audio_features=audio_features, feature_mask=step_mask)
        emotion_features = self.encode_emotion(audio_features=audio_features, feature_mask=step_mask)
        if motion_tokens is not None:
            steps = motion_tokens.shape[1]
            audio_features, content = _fit_steps(audio_features, steps), _fit_steps(content, steps)
            step_mask = _fit_steps(step_mask, steps) & motion_mask
        emotion_logits = self.classify_emotion(emotion_features)

        emotion_loss = None
        if emotion_ids is not None:
            emotion_loss = F.cross_entropy(emotion_logits.float(), emotion_ids)
            conditioning_emotions = emotion_ids
        else:
            conditioning_emotions = emotion_logits.argmax(-1)
        if intensity_ids is None:
            intensity_ids = self.default_intensity_ids(conditioning_emotions)
        style = self.style_vector(conditioning_emotions, intensity_ids, speaker_ids)

        logits = token_loss = None
        hidden_states = [] if output_hidden_states else None
        attentions = [] if output_attentions else None
        if motion_tokens is not None:
            logits = self.decode_features(
                content, emotion_features, motion_tokens=motion_tokens, motion_mask=step_mask, style=style,
                all_hidden_states=hidden_states, all_attentions=attentions,
            )
            # padded steps are ignored through ignore_index rather than boolean indexing (no data-dependent shape)
            targets = motion_tokens.masked_fill(~step_mask[..., None], -100)
            token_loss = F.cross_entropy(logits.flatten(0, 2).float(), targets.flatten(), ignore_index=-100)

        mouth_regression_loss = None
        if logits is not None and self.config.mouth_regression_weight > 0:
            mouth_regression_loss = self._mouth_regression_loss(logits[:, :, 0], motion_tokens[..., 0], step_mask)

        phone_loss = None
        if phone_classes is not None and self.phone_head is not None:
            phone_loss = self.phone_head.loss(content, phone_classes.to(content.device))

        output = ESARMSTAOutput(
            loss=self._total_loss(token_loss, phone_loss, mouth_regression_loss, emotion_loss),
            token_loss=token_loss,
            emotion_loss=emotion_loss,
            phone_loss=phone_loss,
            mouth_regression_loss=mouth_regression_loss,
            logits=logits,
            emotion_logits=emotion_logits,
            content_features=content,
            emotion_features=emotion_features,
            style=style,
            audio_features=audio_features,
            motion_mask=step_mask,
            hidden_states=tuple(hidden_states) if hidden_states else None,
            attentions=tuple(attentions) if attentions else None,
        )
        return output if return_dict else output.to_tuple()

    # ---- generation --------------------------------------------------------------------------------------------

    def _step_logits_fn(
        self, conditioning: torch.Tensor, content: torch.Tensor, style: torch.Tensor, token_mask: torch.Tensor,
        use_cache: bool,
    ) -> Callable[[torch.Tensor, int], torch.Tensor]:  # fmt: skip
        """The per-step function of :func:`~esarm.generation.decode_autoregressively` for one batch:
        ``step_logits(tokens_so_far [B, t, G], t) -> logits [B, G, K]``, with its own key/value caches (``use_cache``)
        for the motion transformer and the content-only mouth stream, or every mouth step precomputed (parallel)."""
        batch = conditioning.shape[0]
        total_steps = conditioning.shape[1]
        cache = self.motion_transformer.new_cache(batch, total_steps, conditioning) if use_cache else None
        mouth_conditioning = mouth_cache = parallel_mouth = None
        if self.config.mouth_conditioning == "parallel":
            parallel_mouth = self.encode_mouth(content, style, token_mask)  # [B, T', H]: every mouth step at once
        elif self.mouth_transformer is not None:
            mouth_conditioning = self.mouth_input(content)  # [B, T', H]: content only, whatever the labels
            if use_cache:
                mouth_cache = self.mouth_transformer.new_cache(batch, total_steps, mouth_conditioning)

        def step_logits(tokens_so_far: torch.Tensor, t: int) -> torch.Tensor:
            mouth_hidden = parallel_mouth[:, t : t + 1] if parallel_mouth is not None else None
            if cache is not None:
                if t == 0:
                    previous = previous_mouth = self.bos_embedding[None, None].expand(batch, 1, -1)
                else:
                    previous = self.embed_motion_tokens(tokens_so_far[:, -1:])
                    previous_mouth = self.token_embeddings[0](tokens_so_far[:, -1:, 0])
                hidden = self.motion_transformer(conditioning[:, t : t + 1] + previous, cache=cache)
                if mouth_conditioning is not None:
                    mouth_inputs = mouth_conditioning[:, t : t + 1] + previous_mouth
                    mouth_hidden = self.mouth_transformer(mouth_inputs, cache=mouth_cache)
            else:
                inputs = conditioning[:, : t + 1] + self._previous_token_inputs(tokens_so_far, t + 1)
                hidden = self.motion_transformer(inputs)[:, -1:]
                if mouth_conditioning is not None:
                    mouth_inputs = mouth_conditioning[:, : t + 1] + self._previous_mouth_inputs(tokens_so_far, t + 1)
                    mouth_hidden = self.mouth_transformer(mouth_inputs)[:, -1:]
            return self._token_logits(hidden, mouth_hidden)[:, 0]  # [B, G, K]

        return step_logits

    @torch.no_grad()
    def generate(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        emotion_ids: torch.Tensor | None = None,
        intensity_ids: torch.Tensor | None = None,
        speaker_ids: torch.Tensor | None = None,
        emotion: str | None = "auto",
        generation_config: GenerationConfig | None = None,
        logits_processor: LogitsProcessorList | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        use_cache: bool = True,
        decode_blendshapes: bool = True,
        phone_features: torch.Tensor | None = None,
        **kwargs,
    ) -> ESARMSTAGenerateOutput:
        """Generate motion tokens autoregressively and decode them to blendshapes.

        transformers' conventions where they fit: settings come from ``generation_config`` (default: the model's
        ``generation_config``, saved as ``generation_config.json``), overridden by keyword arguments
        (``do_sample``, ``temperature``, ``top_k``, ``epsilon``, ``greedy_groups``), plus any ``logits_processor``.
        Where ESARM differs, arguments are rejected with the reason: the number of steps is fixed by the audio (no
        ``max_new_tokens`` / ``max_length``), and each step emits G tokens at once, one per face region (no beams).

        Args:
            input_values: ``[B, S]`` (or ``[S]``) 16 kHz audio; sequences of different lengths are right-padded
                and described by ``attention_mask``.
            attention_mask: ``[B, S]`` 1 for real samples.
            emotion_ids: ``[B]`` (or an int) emotion ids; ``None`` with ``emotion="auto"`` takes the emotion the
                emotion branch hears in the audio.
            intensity_ids: ``[B]`` intensity ids (default: :meth:`default_intensity_ids`).
            speaker_ids: ``[B]`` speaker ids (default 0 = unknown speaker).
            emotion: ``"auto"`` or ``None`` (then ``emotion_ids`` is required).
            generation_config: a ``GenerationConfig`` with ``do_sample``, ``temperature``, ``top_k``, ``epsilon``
                and ``greedy_groups`` (missing ones from the model's ``generation_config``).
            logits_processor: extra processors, applied to scores ``[batch * G, K]`` after temperature / top-k.
            generator: random generator for sampling and exploration (reproducible rollouts) ...
            seed: ... or a seed for a new one (not both).
            use_cache: reuse keys/values of past steps (``False`` recomputes everything; same tokens).
            decode_blendshapes: also decode the tokens with the motion prior.
            phone_features: ``[B, F, NUM_PHONE_FEATURES]`` the phone path's input when already computed (the
                processor's ``phone_features``); by default decoded from ``input_values`` with
                ``config.phone_decoder_settings``.
            kwargs: generation settings overriding ``generation_config``:

                - epsilon: epsilon-greedy noise: per step and group, a uniformly random code with probability
                  ``epsilon`` (0 = the policy, 1 = uniform; paper Sec. III-B2).
                - do_sample: sample from the (temperature / top-k processed) policy instead of the argmax.
                - temperature: softmax temperature when sampling (> 0).
                - top_k: keep the ``top_k`` most likely codes when sampling.
                - greedy_groups: codebook groups (indices, or region names ``"mouth"``, ``"eyes"``, ``"brows"``)
                  that take the argmax of the raw logits whatever the settings above, e.g. ``do_sample=True,
                  greedy_groups=["mouth"]``: greedy lips, sampled eyes and brows. With
                  ``mouth_conditioning="parallel"`` the mouth tokens are then those of greedy decoding; otherwise
                  they are the argmax given the sampled upper-face history.

        Returns:
            :class:`ESARMSTAGenerateOutput` with ``motion_tokens [B, T', G]``, ``blendshapes [B, T, 52]`` (at
            ``fps``, ARKit order), ``frame_mask [B, T]``, ``token_mask [B, T']`` and the condition ids used.
        """
        if emotion not in ("auto", None):
            raise ValueError(f"emotion must be 'auto' or None (pass emotion_ids for a given emotion), got {emotion!r}")
        input_values, attention_mask, lengths, emotion_ids, intensity_ids, speaker_ids, _, _ = check_model_inputs(
            self.config, next(self.parameters()), input_values, attention_mask, emotion_ids, intensity_ids,
            speaker_ids, audio_encoder=self.audio_encoder, check_values=True,
        )  # fmt: skip
        batch = input_values.shape[0]
        if emotion_ids is None and emotion != "auto":
            raise ValueError("emotion_ids must be given when emotion is not 'auto', got None")
        decoding, _ = prepare_decoding(
            generation_config, self.generation_config, self.num_groups, logits_processor, generator, seed, **kwargs
        )

        num_steps = self.num_motion_steps(lengths)  # [B]
        num_frames = self.num_animation_frames(lengths)  # [B]
        audio_features, token_mask = self._speech_features(
            input_values, attention_mask, lengths, num_steps, phone_features
        )
        content, _ = self.encode_content(audio_features=audio_features, feature_mask=token_mask)
        emotion_features = self.encode_emotion(audio_features=audio_features, feature_mask=token_mask)
        emotion_logits = self.classify_emotion(emotion_features)
        if emotion_ids is None:
            emotion_ids = emotion_logits.argmax(-1)
        if intensity_ids is None:
            intensity_ids = self.default_intensity_ids(emotion_ids)
        style = self.style_vector(emotion_ids, intensity_ids, speaker_ids)
        conditioning = self._conditioning(content, emotion_features, style)  # [B, T', H]
        step_logits = self._step_logits_fn(conditioning, content, style, token_mask, use_cache)

        motion_tokens = decode_autoregressively(
            step_logits, conditioning.shape[1], batch, self.num_groups, decoding, input_values.device
        )
        motion_tokens = motion_tokens.masked_fill(~token_mask[..., None], 0)
        max_frames = int(num_frames.max())
        frame_mask = sequence_mask(num_frames, max_frames)
        blendshapes = None
        if decode_blendshapes:
            blendshapes = self.motion_prior.decode(motion_tokens, num_frames=max_frames, motion_mask=token_mask)
            blendshapes = blendshapes * frame_mask[..., None].to(blendshapes.dtype)
        return ESARMSTAGenerateOutput(
            motion_tokens=motion_tokens,
            blendshapes=blendshapes,
            frame_mask=frame_mask,
            token_mask=token_mask,
            emotion_ids=emotion_ids,
            intensity_ids=intensity_ids,
            speaker_ids=speaker_ids,
            emotion_logits=emotion_logits,
        )


# Registration with transformers' Auto classes, done on import (``import esarm`` imports this module). A saved
# folder's copy of this file, run with ``trust_remote_code=True``, registers nothing: its own ``auto_map`` serves it.
if __package__ == "esarm":
    AutoModel.register(ESARMSTAConfig, ESARMSTAForGeneration, exist_ok=True)
    ESARMSTAForGeneration.register_for_auto_class("AutoModel")
