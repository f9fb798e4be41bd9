"""Configurations of the three ESARM models.

Each config holds every hyper-parameter of its model with a default and offers named presets as classmethods:
``tiny()`` (CPU tests, seconds) and ``base()`` (paper scale). Validation follows transformers' v5 configs: ``@strict``
typed fields check each value on construction and on assignment (type, range), and one ``validate_architecture()``
holds the rules that span fields. Both raise ``huggingface_hub.errors.StrictDataclassError`` naming the field, the
expected and the given value.
"""


from huggingface_hub.dataclasses import as_validated_field, strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.utils.type_validators import interval

from .blendshapes import EMOTIONS, FACE_REGIONS, INTENSITIES, NUM_BLENDSHAPES
from .phonetic import decoder_settings


@as_validated_field
def _odd_positive(value: int) -> None:
    if value < 1 or value % 2 == 0:
        raise ValueError(f"must be an odd positive integer, got {value!r}")


@as_validated_field
def _optional_positive(value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"must be None or a positive number of steps, got {value!r}")


@as_validated_field
def _phone_decoder_settings(value: dict | None) -> None:
    if value is not None:
        decoder_settings(value, argument="phone_decoder_settings")


def _one_of(*values):
    """A field restricted to a few values (``Literal`` annotations are not checked under postponed annotations)."""

    @as_validated_field
    def _inner(value) -> None:
        if isinstance(value, bool) or value not in values:
            raise ValueError(f"must be one of {list(values)}, got {value!r}")

    return _inner


def _positive(default):
    return interval(min=1)(default=default)


def _non_negative(default):
    return interval(min=0)(default=default)


def _probability(default):
    """A dropout-like probability in [0, 1): 1 would drop everything."""
    return interval(min=0.0, max=1.0, exclude_max=True)(default=default)


def _validate_speech_input(config) -> None:
    """Cross-field rule of the STA and reward configs: the nested config must be a speech encoder's."""
    encoder = config.audio_encoder_config
    for name in ("hidden_size", "num_hidden_layers"):
        value = getattr(encoder, name, None)
        if not isinstance(value, int):
            raise ValueError(
                f"audio_encoder_config.{name} must be an integer (a speech encoder config such as WavLMConfig), "
                f"got {value!r}"
            )


def _validate_heads(config) -> None:
    """The attention width splits into heads of an even size (rotary positions rotate pairs of channels)."""
    if config.hidden_size % config.num_attention_heads:
        raise ValueError(
            f"hidden_size must be divisible by num_attention_heads ({config.num_attention_heads}), "
            f"got {config.hidden_size}"
        )
    head_dim = config.hidden_size // config.num_attention_heads
    if head_dim % 2:
        raise ValueError(f"hidden_size // num_attention_heads must be even (rotary positions), got {head_dim}")


# ---- ESARMMotionPriorConfig ----


@strict
class ESARMMotionPriorConfig(PreTrainedConfig):
    r"""Configuration of :class:`~esarm.modeling_motion_prior.ESARMMotionPrior`, the discrete motion prior.

    Blendshape sequences ``[batch, frames, 52]`` (ARKit order, values in [0, 1]) are split into face-region groups
    (``esarm.blendshapes.FACE_REGIONS``: mouth, eyes, brows), each encoded by its own 1-D convolutional encoder,
    downsampled in time by ``frames_per_token`` and quantized with its own codebook of ``codebook_size`` codes.

    Args:
        num_blendshapes (`int`, defaults to 52): Coefficients per frame; must be 52 (ARKit).
        group_by_region (`bool`, defaults to `True`): One codebook per face region (G = 3). `False` uses one
            codebook over all 52 coefficients (G = 1).
        hidden_size (`int`, defaults to 128): Channels of the convolutional encoder and decoder.
        latent_dim (`int`, defaults to 64): Size of the vector each code stands for.
        num_res_blocks (`int`, defaults to 2): Residual blocks at frame rate and at token rate (each side).
        kernel_size (`int`, defaults to 3): Odd kernel size of the residual convolutions.
        frames_per_token (`int`, defaults to 2): Temporal downsampling, 1, 2 or 4 frames per token.
        codebook_size (`int`, defaults to 256): Codes per group (K).
        ema_decay (`float`, defaults to 0.99): EMA decay of the codebooks.
        kmeans_init (`bool`, defaults to `True`): Initialise the codebooks with k-means on the first training batch.
        threshold_ema_dead_code (`int`, defaults to 2): Codes whose EMA usage falls below this are reset to random
            encoder outputs of the batch (0 turns the reset off).
        commitment_weight (`float`, defaults to 0.25): Weight of the commitment loss.
        velocity_loss_weight (`float`, defaults to 1.0): Weight of the frame-to-frame velocity reconstruction loss.
        quantizer_loss_weight (`float`, defaults to 1.0): Weight of the quantizer loss in the total loss.
        dropout (`float`, defaults to 0.0): Dropout inside the residual blocks.
        fps (`float`, defaults to 30.0): Animation frame rate (frames per second) the prior is trained at.
        initializer_range (`float`, defaults to 0.02): Standard deviation of the normal weight initialisation.
    """

    model_type = "esarm_motion_prior"

    num_blendshapes: int = _one_of(NUM_BLENDSHAPES)(default=NUM_BLENDSHAPES)
    group_by_region: bool = True
    hidden_size: int = _positive(128)
    latent_dim: int = _positive(64)
    num_res_blocks: int = _non_negative(2)
    kernel_size: int = _odd_positive(default=3)
    frames_per_token: int = _one_of(1, 2, 4)(default=2)
    codebook_size: int = interval(min=2)(default=256)
    ema_decay: int | float = interval(min=0.0, max=1.0, exclude_min=True, exclude_max=True)(default=0.99)
    kmeans_init: bool = True
    threshold_ema_dead_code: int = _non_negative(2)
    commitment_weight: int | float = interval(min=0.0)(default=0.25)
    velocity_loss_weight: int | float = interval(min=0.0)(default=1.0)
    quantizer_loss_weight: int | float = interval(min=0.0)(default=1.0)
    dropout: int | float = _probability(0.0)
    fps: int | float = interval(min=0.0, exclude_min=True)(default=30.0)
    initializer_range: int | float = interval(min=0.0, max=1.0)(default=0.02)

    @property
    def num_groups(self) -> int:
        """Number of codebooks G (face-region groups)."""
        return len(FACE_REGIONS) if self.group_by_region else 1

    @classmethod
    def tiny(cls, **kwargs) -> "ESARMMotionPriorConfig":
        """A prior small enough to train in seconds on a CPU (tests, demos)."""
        defaults = dict(hidden_size=32, latent_dim=8, num_res_blocks=1, codebook_size=32, frames_per_token=2)
        return cls(**{**defaults, **kwargs})

    @classmethod
    def base(cls, **kwargs) -> "ESARMMotionPriorConfig":
        """Paper-scale prior: 3 region codebooks of 512 codes, 2 frames per token at 30 fps."""
        defaults = dict(hidden_size=256, latent_dim=64, num_res_blocks=3, codebook_size=512, frames_per_token=2)
        return cls(**{**defaults, **kwargs})


# ---- ESARMRewardModelConfig ----


REWARD_MOTION_INPUTS = ("tokens", "blendshapes")


def motion_prior_config_dict(config: ESARMMotionPriorConfig) -> dict:
    """The fields of a motion prior's config that differ from the defaults (what a reward config stores)."""
    return {k: v for k, v in config.to_diff_dict().items() if k not in ("transformers_version", "model_type")}


def _validate_reward_motion_input(config) -> None:
    """The decoded-motion input needs the prior's config, and that prior must emit the tokens the model reads."""
    if config.motion_input != "blendshapes":
        return
    if config.motion_prior_config is None:
        raise ValueError(
            "motion_prior_config must be given with motion_input='blendshapes' (the prior that decodes the tokens), "
            "got None"
        )
    prior = ESARMMotionPriorConfig(**config.motion_prior_config)
    expected = (config.num_groups, config.codebook_size, config.frames_per_token, float(config.fps))
    given = (prior.num_groups, int(prior.codebook_size), prior.frames_per_token, float(prior.fps))
    if expected != given:
        raise ValueError(
            f"motion_prior_config must match num_groups, codebook_size, frames_per_token and fps {expected}, "
            f"got {given}"
        )


@strict
class ESARMRewardModelConfig(PreTrainedConfig):
    r"""Configuration of :class:`~esarm.modeling_reward.ESARMRewardModel`, the reward model of paper section III-B.3.

    Input sequence of the causal transformer: a condition prefix (emotion, intensity and speaker embeddings, one
    position each) followed by interleaved ``[audio_1, motion_1, audio_2, motion_2, ...]`` embeddings, where
    ``audio_t`` is the speech encoder's feature resampled to motion step ``t`` and ``motion_t`` the sum of the G
    per-group embeddings of the motion token of step ``t``. The reward of step ``t`` is read at ``motion_t`` (it sees
    the audio and motion up to step ``t`` only); the return is ``sum_t gamma^t r_t`` over valid steps.

    Args:
        audio_encoder_config (`dict` or `PreTrainedConfig`, *optional*): Config of the speech encoder (any
            ``AutoModel`` speech encoder with hidden states; WavLM base architecture by default).
        audio_encoder_name_or_path (`str`, *optional*): Hub name or folder of pretrained encoder weights, e.g.
            ``"microsoft/wavlm-base-plus"``, loaded when a model is created from this config. `None`: random init.
        sampling_rate (`int`, defaults to 16000): Audio sampling rate in Hz.
        num_groups (`int`, defaults to 3): Token groups G of the motion prior (face-region codebooks).
        codebook_size (`int`, defaults to 256): Codes per group K of the motion prior.
        frames_per_token (`int`, defaults to 2): Animation frames per motion token of the motion prior.
        fps (`float`, defaults to 30.0): Animation frame rate (frames per second).
        hidden_size (`int`, defaults to 256): Width of the causal transformer.
        num_hidden_layers (`int`, defaults to 4): Blocks of the causal transformer.
        num_attention_heads (`int`, defaults to 4): Attention heads.
        intermediate_size (`int`, defaults to 1024): MLP width.
        num_emotions (`int`, defaults to 8): Emotion classes (``esarm.blendshapes.EMOTIONS``).
        num_intensities (`int`, defaults to 3): Intensity levels (ids 0..2 for intensities 1..3).
        num_speakers (`int`, defaults to 0): Known training speakers (ids 1..N); id 0 is the unknown speaker.
        gamma (`float`, defaults to 0.99): Discount of the return ``R(tau) = sum_t gamma^t r_t`` (paper eq. 2).
        dropout (`float`, defaults to 0.1): Dropout in the transformer.
        freeze_feature_encoder (`bool`, defaults to `True`): Freeze the convolutional feature encoder of the speech
            encoder.
        layer_norm_eps (`float`, defaults to 1e-5): LayerNorm epsilon.
        initializer_range (`float`, defaults to 0.02): Standard deviation of the normal weight initialisation.
        motion_input (`str`, defaults to `"tokens"`): What ``motion_t`` is built from: `"tokens"` (the paper: the sum
            of the G per-group embeddings of the step's code ids) or `"blendshapes"` (the frozen motion prior decodes
            the tokens; the ``frames_per_token`` frames of step ``t`` and their velocities, 2 x 52 values per frame,
            are projected to ``hidden_size``). Token embeddings let the model learn which *codes* a policy emits;
            the decoded motion makes two code sequences that look alike score alike.
        motion_prior_config (`dict`, *optional*): The motion prior's config (``ESARMMotionPriorConfig.to_dict()``),
            required with ``motion_input="blendshapes"``: the reward model holds a frozen copy of the prior
            (:meth:`~esarm.modeling_reward.ESARMRewardModel.load_motion_prior` loads trained weights).
    """

    model_type = "esarm_reward"
    sub_configs_defaults = {"audio_encoder_config": SubConfigSpec(config_class=AutoConfig, model_type="wavlm")}

    audio_encoder_config: dict | PreTrainedConfig | None = None
    audio_encoder_name_or_path: str | None = None
    sampling_rate: int = _positive(16000)
    num_groups: int = _positive(len(FACE_REGIONS))
    codebook_size: int = interval(min=2)(default=256)
    frames_per_token: int = _one_of(1, 2, 4)(default=2)
    fps: int | float = interval(min=0.0, exclude_min=True)(default=30.0)
    hidden_size: int = _positive(256)
    num_hidden_layers: int = _positive(4)
    num_attention_heads: int = _positive(4)
    intermediate_size: int = _positive(1024)
    num_emotions: int = _one_of(len(EMOTIONS))(default=len(EMOTIONS))
    num_intensities: int = _one_of(len(INTENSITIES))(default=len(INTENSITIES))
    num_speakers: int = _non_negative(0)
    gamma: int | float = interval(min=0.0, max=1.0, exclude_min=True)(default=0.99)
    dropout: int | float = _probability(0.1)
    freeze_feature_encoder: bool = True
    layer_norm_eps: int | float = interval(min=0.0, exclude_min=True)(default=1e-5)
    initializer_range: int | float = interval(min=0.0, max=1.0)(default=0.02)
    motion_input: str = _one_of(*REWARD_MOTION_INPUTS)(default="tokens")
    motion_prior_config: dict | None = None

    def validate_architecture(self):
        """Rules that span fields (``@strict`` calls it after construction)."""
        super().validate_architecture()
        _validate_speech_input(self)
        _validate_heads(self)
        _validate_reward_motion_input(self)

    @classmethod
    def from_motion_prior_config(cls, prior_config: ESARMMotionPriorConfig | dict, /, **kwargs):
        """A reward config whose token embeddings match a motion prior (G, K, frames per token, fps); with
        ``motion_input="blendshapes"`` it also holds the prior's config (for its frozen copy)."""
        if isinstance(prior_config, dict):
            prior_config = ESARMMotionPriorConfig(**prior_config)
        prior = dict(
            num_groups=prior_config.num_groups,
            codebook_size=int(prior_config.codebook_size),
            frames_per_token=prior_config.frames_per_token,
            fps=float(prior_config.fps),
        )
        if kwargs.get("motion_input") == "blendshapes" and "motion_prior_config" not in kwargs:
            prior["motion_prior_config"] = motion_prior_config_dict(prior_config)
        return cls(**{**prior, **kwargs})

    @classmethod
    def tiny(cls, **kwargs) -> "ESARMRewardModelConfig":
        """A random-init reward model small enough to train in seconds on a CPU (tests, demos).

        Matches ``ESARMMotionPriorConfig.tiny()`` (G, K, frames per token, fps) and uses a tiny WavLM.
        """
        defaults = dict(
            audio_encoder_config=_tiny_wavlm_config(),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            dropout=0.0,
        )
        return cls.from_motion_prior_config(ESARMMotionPriorConfig.tiny(), **{**defaults, **kwargs})

    @classmethod
    def base(cls, **kwargs) -> "ESARMRewardModelConfig":
        """Paper scale: pretrained ``microsoft/wavlm-base-plus`` encoder, matches ``ESARMMotionPriorConfig.base()``."""
        defaults = dict(audio_encoder_name_or_path="microsoft/wavlm-base-plus", hidden_size=256, num_hidden_layers=4)
        return cls.from_motion_prior_config(ESARMMotionPriorConfig.base(), **{**defaults, **kwargs})


# ---- ESARMSTAConfig ----

AUDIO_FRONT_ENDS = ("speech_encoder", "log_mel", "both", "phones", "log_mel+phones")
PHONE_FEATURE_SETS = ("one_hot", "one_hot+score")
MOUTH_CONDITIONINGS = ("full", "content", "parallel")


def _tiny_wavlm_config() -> dict:
    """A random-init WavLM small enough for CPU tests (same 320-sample hop as WavLM base: 50 frames/s)."""
    return dict(
        model_type="wavlm",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=[16, 16, 16],
        conv_stride=[5, 8, 8],
        conv_kernel=[10, 8, 8],
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        num_buckets=32,
        max_bucket_distance=64,
        # layer-normalised conv features make padded and unpadded batches give the same frames
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        apply_spec_augment=False,
        mask_time_prob=0.0,
        layerdrop=0.0,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
    )


@strict
class ESARMSTAConfig(PreTrainedConfig):
    r"""Configuration of :class:`~esarm.modeling_sta.ESARMSTAForGeneration`, the speech-to-animation model.

    Audio (16 kHz) -> speech encoder (WavLM) -> learned layer weighting -> projection and resampling to one feature
    per motion step -> emotion-disentangling encoder (content branch over time, emotion branch pooled over time with
    an emotion classifier) -> causal transformer over motion tokens whose input at step ``t`` is the projection of
    ``[content_t | emotion | S(c)]`` plus the embedding of the tokens of step ``t - 1`` -> one head of ``K`` logits per
    face-region codebook. ``S(c)`` is a linear projection of the one-hot emotion, intensity and speaker.

    Args:
        audio_encoder_config (`dict` or `PreTrainedConfig`, *optional*): Config of the speech encoder (any
            ``AutoModel`` speech encoder with hidden states; WavLM base architecture by default).
        audio_encoder_name_or_path (`str`, *optional*): Hub name or folder of pretrained encoder weights, e.g.
            ``"microsoft/wavlm-base-plus"``; loaded when a model is created from this config (not when a saved STA
            model is loaded, whose checkpoint holds the weights). `None`: random init.
        motion_prior_config (`dict` or `ESARMMotionPriorConfig`, *optional*): Config of the motion prior that
            decodes tokens (defines G, K, ``frames_per_token`` and ``fps``).
        sampling_rate (`int`, defaults to 16000): Audio sampling rate in Hz.
        hidden_size (`int`, defaults to 256): Width of the disentangling encoder and the motion transformer.
        num_hidden_layers (`int`, defaults to 6): Blocks of the causal motion transformer.
        num_attention_heads (`int`, defaults to 4): Attention heads (all transformers).
        intermediate_size (`int`, defaults to 1024): MLP width (all transformers).
        content_encoder_layers (`int`, defaults to 2): Blocks of the content branch (bidirectional over time).
        emotion_encoder_layers (`int`, defaults to 2): Blocks of the emotion branch (bidirectional, then pooled).
        style_size (`int`, defaults to 64): Size of the style vector ``S(c)``.
        num_emotions (`int`, defaults to 8): Emotion classes (``esarm.blendshapes.EMOTIONS``).
        num_intensities (`int`, defaults to 3): Intensity levels (ids 0..2 for intensities 1..3).
        num_speakers (`int`, defaults to 0): Known training speakers (ids 1..N); id 0 is the unknown speaker.
        attention_window (`int`, *optional*): Steps the motion transformer attends to (sliding window, bounds the
            per-step cost of generation); `None` = full causal attention.
        dropout (`float`, defaults to 0.1): Dropout in the encoder branches and the transformer.
        previous_token_dropout (`float`, defaults to 0.0): Training only: probability with which the embedding of
            the previous step's tokens (the teacher-forced input of step ``t``) is replaced by a learned mask
            embedding, per sequence and step. Counters the copy shortcut of teacher forcing (smooth motion makes
            the previous tokens predict the next ones, so the model ignores the audio) and the exposure bias of
            greedy generation. 0 disables it (no mask embedding is created). Inactive in ``eval()`` mode and when
            dropout is disabled (e.g. ``trl``'s ``disable_dropout_in_model`` in RL fine-tuning).
        spectral_features (`int`, defaults to 0): Number of log band energies (bands evenly spaced on a log
            frequency scale, 20 ms hop) computed directly from the waveform and added, through a linear projection,
            to the speech-encoder features of every step. A loudness / spectral-envelope path for small or
            random-init speech encoders (whose layer-normalised convolutional features discard loudness, the main
            cue of the mouth opening); 0 disables it (paper setting with pretrained WavLM).
        audio_front_end (`str`, defaults to `"speech_encoder"`): What hears the audio: `"speech_encoder"` (the
            nested speech encoder; the paper, with pretrained WavLM), `"log_mel"` (per-utterance-normalised log-mel
            frames and two convolutions, :class:`~esarm.audio_features.LogMelFrontEnd`; no speech encoder is built)
            or `"both"` (their features summed). The log-mel path is the speaker-robust choice for random-init CPU
            models trained on a few synthetic voices. `"phones"` hears PocketSphinx's recognised phones per 10 ms
            frame (:mod:`esarm.phonetic`: an acoustic model trained on real speech; needs `pip install
            pocketsphinx`) through two convolutions (:class:`~esarm.audio_features.PhoneFrontEnd`), and
            `"log_mel+phones"` sums the log-mel and phone paths.
        phone_feature_set (`str`, defaults to `"one_hot"`): What the phone path hears of each frame: `"one_hot"`
            (the recognised phone) or `"one_hot+score"` (and the recognised segment's acoustic score per frame).
        phone_decoder_settings (`dict`, *optional*): PocketSphinx's allphone settings that decode the phone path's
            phones, ``{"lw": ..., "beam": ..., "pbeam": ...}`` (exactly these keys, :data:`esarm.phonetic.
            DECODER_SETTING_NAMES`; ``lw > 0``, beams in (0, 1]). The model, the processor, streaming and the
            training cache all decode with them, so a model hears the phones it was trained on whatever the
            installed defaults are; STA training writes the settings its cached features were decoded with here.
            `None` (configs saved before the field existed): the installed package's
            :data:`esarm.phonetic.DECODER_SETTINGS`.
        log_mel_bands (`int`, defaults to 40): Mel bands of the log-mel front end.
        phone_loss_weight (`float`, defaults to 0.0): Weight of the auxiliary phone-class loss of the content branch
            (:class:`~esarm.audio_features.PhoneClassHead`, one of 6 classes per animation frame, targets from the
            corpus's phoneme timings; `forward`'s ``phone_classes``). 0 builds no head.
        mouth_conditioning (`str`, defaults to `"full"`): What the mouth codebook (group 0) is predicted from:
            `"full"` (the paper: every group from ``[content | emotion | S(c)]``) or `"content"` (a second causal
            transformer over the content features and the previous mouth tokens only, so that the emotion label
            cannot move the mouth's timing; the label still steers the eyes and brows) or `"parallel"` (a
            bidirectional transformer over the content features predicts every mouth token at once, without the
            previous tokens: no teacher-forcing shortcut and no exposure bias; the style vector adds one per-clip
            bias to the mouth logits, so the timing comes from the audio and the label sets the mouth's shape and
            amplitude). Needs a region-grouped prior.
        mouth_regression_weight (`float`, defaults to 0.0): Weight of a blendshape-space loss on the mouth
            codebook: the softmax of the mouth logits weights the codes, the frozen prior decodes that expected code
            vector and the mean squared error against the decoded target tokens is added to `loss`. Cross entropy
            treats a near miss like any wrong code; this loss gives credit for codes that decode to nearby shapes.
            Needs a region-grouped prior.
        emotion_loss_weight (`float`, defaults to 0.1): Weight of the emotion classification loss in `forward`.
        freeze_feature_encoder (`bool`, defaults to `True`): Freeze the convolutional feature encoder of the speech
            encoder (standard when fine-tuning WavLM).
        layer_norm_eps (`float`, defaults to 1e-5): LayerNorm epsilon.
        initializer_range (`float`, defaults to 0.02): Standard deviation of the normal weight initialisation.
    """

    model_type = "esarm_sta"
    sub_configs_defaults = {
        "audio_encoder_config": SubConfigSpec(config_class=AutoConfig, model_type="wavlm"),
        "motion_prior_config": ESARMMotionPriorConfig,
    }

    audio_encoder_config: dict | PreTrainedConfig | None = None
    audio_encoder_name_or_path: str | None = None
    motion_prior_config: dict | PreTrainedConfig | None = None
    sampling_rate: int = _positive(16000)
    hidden_size: int = _positive(256)
    num_hidden_layers: int = _positive(6)
    num_attention_heads: int = _positive(4)
    intermediate_size: int = _positive(1024)
    content_encoder_layers: int = _non_negative(2)
    emotion_encoder_layers: int = _non_negative(2)
    style_size: int = _positive(64)
    num_emotions: int = _one_of(len(EMOTIONS))(default=len(EMOTIONS))
    num_intensities: int = _one_of(len(INTENSITIES))(default=len(INTENSITIES))
    num_speakers: int = _non_negative(0)
    attention_window: int | None = _optional_positive(default=None)
    dropout: int | float = _probability(0.1)
    previous_token_dropout: int | float = _probability(0.0)
    spectral_features: int = _non_negative(0)
    audio_front_end: str = _one_of(*AUDIO_FRONT_ENDS)(default="speech_encoder")
    log_mel_bands: int = _positive(40)
    phone_feature_set: str = _one_of(*PHONE_FEATURE_SETS)(default="one_hot")
    phone_decoder_settings: dict | None = _phone_decoder_settings(default=None)
    phone_loss_weight: int | float = interval(min=0.0)(default=0.0)
    mouth_conditioning: str = _one_of(*MOUTH_CONDITIONINGS)(default="full")
    mouth_regression_weight: int | float = interval(min=0.0)(default=0.0)
    emotion_loss_weight: int | float = interval(min=0.0)(default=0.1)
    freeze_feature_encoder: bool = True
    layer_norm_eps: int | float = interval(min=0.0, exclude_min=True)(default=1e-5)
    initializer_range: int | float = interval(min=0.0, max=1.0)(default=0.02)

    def __post_init__(self, **kwargs):
        # Saved folders name their pipeline in `custom_pipelines` (esarm.pipeline.custom_pipelines) for machines
        # without esarm. Where the task is registered already (esarm imported), that entry would make
        # transformers' pipeline() demand trust_remote_code for installed code: the registered class serves it.
        if "speech-to-animation" in PIPELINE_REGISTRY.supported_tasks:
            kwargs.pop("custom_pipelines", None)
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Rules that span fields (``@strict`` calls it after construction)."""
        super().validate_architecture()
        _validate_speech_input(self)
        _validate_heads(self)
        # the content-only mouth stream predicts group 0, which is the mouth only when the prior groups by region
        if self.mouth_conditioning != "full" and self.num_groups <= 1:
            raise ValueError(
                f"mouth_conditioning must be 'full' with a prior of one codebook (group_by_region=False), "
                f"got {self.mouth_conditioning!r}"
            )
        if self.mouth_regression_weight > 0 and self.num_groups <= 1:
            raise ValueError(
                f"mouth_regression_weight must be 0 with a prior of one codebook (group_by_region=False), "
                f"got {self.mouth_regression_weight!r}"
            )

    @property
    def fps(self) -> float:
        """Animation frame rate (frames per second), from the motion prior config."""
        return float(self.motion_prior_config.fps)

    @property
    def num_groups(self) -> int:
        """Number of token groups G (face-region codebooks) of the motion prior."""
        return int(self.motion_prior_config.num_groups)

    @property
    def codebook_size(self) -> int:
        """Codes per group K of the motion prior."""
        return int(self.motion_prior_config.codebook_size)

    @property
    def frames_per_token(self) -> int:
        """Animation frames per motion token (temporal downsampling of the motion prior)."""
        return int(self.motion_prior_config.frames_per_token)

    @classmethod
    def tiny(cls, **kwargs) -> "ESARMSTAConfig":
        """A random-init model small enough to train and generate in seconds on a CPU (tests, demos)."""
        defaults = dict(
            audio_encoder_config=_tiny_wavlm_config(),
            motion_prior_config=ESARMMotionPriorConfig.tiny(),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            content_encoder_layers=1,
            emotion_encoder_layers=1,
            style_size=16,
            num_speakers=4,
            dropout=0.0,
        )
        return cls(**{**defaults, **kwargs})

    @classmethod
    def base(cls, **kwargs) -> "ESARMSTAConfig":
        """Paper scale: WavLM base plus (pretrained weights loaded when online), 6-block transformer of width 256."""
        defaults = dict(
            audio_encoder_config=dict(model_type="wavlm"),
            audio_encoder_name_or_path="microsoft/wavlm-base-plus",
            motion_prior_config=ESARMMotionPriorConfig.base(),
            num_speakers=48,
        )
        return cls(**{**defaults, **kwargs})


# Registration with transformers' Auto classes, done on import (``import esarm`` imports this module). A saved
# folder's copy of this file, run with ``trust_remote_code=True``, registers nothing: its own ``auto_map`` serves it.
if __package__ == "esarm":
    for _config_class in (ESARMMotionPriorConfig, ESARMSTAConfig, ESARMRewardModelConfig):
        AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
        _config_class.register_for_auto_class("AutoConfig")
