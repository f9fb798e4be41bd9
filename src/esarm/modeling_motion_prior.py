"""ESARMMotionPrior: a discrete motion prior over ARKit blendshape sequences.

Blendshape sequences ``[batch, frames, 52]`` (ARKit order, values in [0, 1], ``fps`` frames per second) are split
into face-region groups (``esarm.blendshapes.FACE_REGIONS``: mouth, eyes, brows). Each group has its own
1-D convolutional encoder that downsamples time by ``frames_per_token``, its own quantizer with ``codebook_size``
codes and its own decoder, so a motion token is a tuple of G region codes ``[batch, tokens, G]``: lower-face
tokens carry speech content, upper-face tokens carry most of the emotion.

Quantizer: vector-quantize-pytorch's ``VectorQuantize`` with EMA codebook updates, k-means initialisation on the
first training batch and dead-code reset. Blendshape curves are smooth, strongly correlated and mostly near the
rest pose, so their latents fill a small, curved region of the latent space: a learned codebook puts its codes
where the data is (k-means, EMA, dead codes moved onto live latents). We also tried the library's finite scalar
quantization (FSQ), whose fixed grid needs no codebook: on the synthetic corpus (``esarm.data``, 300 steps, K = 64
per group, hidden 64) EMA-VQ reached a validation MAE of 0.053 with 88-98 % of the codes in use, while FSQ's
latents drifted into the saturated corners of its grid (1-6 codes in use, MAE 0.061), so FSQ was dropped.
The library is a training dependency only: inference is an inline nearest-code search and lookup on the same
buffers (:class:`ESARMVectorQuantizer`), so a saved prior or STA model needs only torch and transformers.

Outputs are clamped to [0, 1] like ARKit weights with a straight-through gradient: a sigmoid output
trained with MSE saturates at the many exact zeros of blendshape curves and learned ~2x slower (validation MAE 0.047
vs 0.023 after 300 steps on the synthetic corpus), a plain clamp would cut the gradient of out-of-range values.

Padding: every convolution sees its input multiplied by the padding mask at its own time resolution, so the
outputs for the valid frames of a sequence do not depend on the values in padded frames nor on how much padding
the batch adds.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from .blendshapes import FACE_REGIONS, NUM_BLENDSHAPES, region_indices
from .configuration_esarm import ESARMMotionPriorConfig
from .file_modes import NewFileModeMixin

logger = logging.getLogger(__name__)


@dataclass
class ESARMMotionPriorOutput(ModelOutput):
    """Output of :meth:`ESARMMotionPrior.forward`.

    Args:
        loss: ``reconstruction_loss + quantizer_loss_weight * quantizer_loss`` (scalar).
        reconstruction: Decoded blendshapes ``[batch, frames, 52]`` in [0, 1]; zero at padded frames.
        reconstruction_loss: Masked mean squared error of the values plus ``velocity_loss_weight`` times that of
            the frame-to-frame differences (scalar).
        quantizer_loss: Commitment loss of the quantizers, summed over groups (scalar).
        motion_tokens: Code ids ``[batch, tokens, G]``; 0 at padded tokens.
        token_mask: ``[batch, tokens]`` bool, True at tokens that cover at least one valid frame.
        codebook_usage: Fraction of each group's codes used by the valid tokens of the batch ``[G]``.
        perplexity: Perplexity of each group's code distribution over the valid tokens ``[G]`` (K at best).
        hidden_states: With ``output_hidden_states=True``: the encoder latents of each group before quantization,
            a tuple of G tensors ``[batch, tokens, latent_dim]``.
    """

    loss: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    quantizer_loss: torch.FloatTensor | None = None
    motion_tokens: torch.LongTensor | None = None
    token_mask: torch.BoolTensor | None = None
    codebook_usage: torch.FloatTensor | None = None
    perplexity: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


def group_indices(config: ESARMMotionPriorConfig) -> list[list[int]]:
    """Indices (ARKit order) of the blendshapes each codebook group encodes."""
    if config.group_by_region:
        return [region_indices(region) for region in FACE_REGIONS]
    return [list(range(NUM_BLENDSHAPES))]


def _validate_blendshapes(blendshapes: torch.Tensor) -> None:
    if not isinstance(blendshapes, torch.Tensor):
        raise ValueError(f"blendshapes must be a torch.Tensor [batch, frames, 52], got {type(blendshapes).__name__}")
    if blendshapes.ndim != 3 or blendshapes.shape[-1] != NUM_BLENDSHAPES:
        raise ValueError(
            f"blendshapes must have shape [batch, frames, {NUM_BLENDSHAPES}] (ARKit order), "
            f"got shape {tuple(blendshapes.shape)}"
        )
    if blendshapes.shape[1] == 0:
        raise ValueError(f"blendshapes must have at least one frame, got shape {tuple(blendshapes.shape)}")
    if not torch.is_floating_point(blendshapes):
        raise ValueError(f"blendshapes must be a floating point tensor, got dtype {blendshapes.dtype}")


def _validate_mask(mask: torch.Tensor | None, shape: tuple[int, int], argument: str) -> torch.Tensor | None:
    """Shape check only (no read of the values: ``forward`` stays free of device syncs)."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(shape):
        got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"{argument} must have shape {list(shape)}, got {got}")
    return mask.bool()


def _check_values(blendshapes: torch.Tensor, mask: torch.Tensor | None, argument: str) -> None:
    """Value checks of the user-facing entry points (``encode``, ``decode``); they read the tensors (a sync)."""
    if mask is not None and not bool(mask[:, 0].all()):
        raise ValueError(f"{argument} must mark at least the first step of every sequence as valid, got {mask}")
    if blendshapes is not None:
        valid = blendshapes if mask is None else blendshapes[mask.bool()]
        if not bool(torch.isfinite(valid).all()):
            raise ValueError("blendshapes must be finite at valid frames, got NaN or inf values")


def initial_codes(num_codes: int, dim: int) -> torch.Tensor:
    """Codes ``[num_codes, dim]`` of an untrained codebook, before k-means on the first training batch replaces them.

    Distinct codes (about the scale of fresh encoder latents: std 0.5) so an untrained prior still maps different
    tokens to different motion. A fixed sinusoidal pattern rather than random draws: the codebook is a buffer, and
    a buffer must come out the same whether the model is built directly or on the meta device and initialised later.
    """
    code = torch.arange(num_codes, dtype=torch.float32)[:, None]
    channel = torch.arange(dim, dtype=torch.float32)[None, :]
    return 0.7 * torch.sin(0.9 * code * (channel + 1.0) + channel)


class ESARMCodebook(nn.Module):
    """The codebook state of one quantizer: codes ``embed`` ``[1, K, D]`` and the EMA statistics of training.

    The buffer names, shapes and order are those of vector-quantize-pytorch's ``EuclideanCodebook``, so the state
    dict is the same whichever side built the model: checkpoints written before the library became a training-only
    dependency load unchanged, and the library's training step reads and updates these tensors in place.
    """

    def __init__(self, codebook_size: int, dim: int, kmeans_init: bool):
        super().__init__()
        codes = initial_codes(codebook_size, dim)[None]
        self.register_buffer("initted", torch.tensor(not kmeans_init))
        self.register_buffer("cluster_size", torch.ones(1, codebook_size))
        self.register_buffer("embed_avg", codes.clone())
        self.register_buffer("embed", codes)


class ESARMVectorQuantizer(nn.Module):
    """Nearest-code vector quantizer of one face-region group.

    Inference (eval mode: ``encode``, ``decode``, validation) is a plain nearest-neighbour search and embedding
    lookup written here, so a saved prior or STA model runs with torch alone (like Encodec's codebook in
    transformers). Training (train mode) runs vector-quantize-pytorch's ``VectorQuantize`` on the same buffers:
    k-means initialisation on the first batch, EMA code updates, dead-code reset and the commitment loss. The
    library is imported on the first training step only and is held outside the module tree, so it adds nothing
    to the state dict.
    """

    def __init__(self, config: ESARMMotionPriorConfig):
        super().__init__()
        self.config = config
        self._codebook = ESARMCodebook(config.codebook_size, config.latent_dim, config.kmeans_init)

    @property
    def codebook(self) -> torch.Tensor:
        """The codes ``[K, D]``."""
        return self._codebook.embed[0]

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Code vectors ``[..., D]`` of ids ``[...]``."""
        return F.embedding(ids, self.codebook)

    def nearest(self, latents: torch.Tensor) -> torch.LongTensor:
        """Id ``[...]`` of the code nearest (Euclidean) to each latent ``[..., D]``; computed in float32."""
        latents = latents.float()
        codes = self.codebook.float()
        # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2, the expansion the library uses: the same ids for the same codes.
        distances = latents.pow(2).sum(-1, keepdim=True) - 2 * latents @ codes.t() + codes.pow(2).sum(-1)
        return distances.argmin(dim=-1)

    def forward(self, latents: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.LongTensor, torch.Tensor]:
        """Latents ``[B, T', D]`` and valid-token mask ``[B, T']`` -> (quantized ``[B, T', D]``, ids, loss)."""
        if not self.training:
            ids = self.nearest(latents)
            # The library's eval step returns no commitment loss either: validation losses stay comparable.
            return self.lookup(ids).to(latents.dtype), ids, latents.new_zeros((), dtype=torch.float32)
        return self._training_quantizer()(latents, mask=mask)

    def _training_quantizer(self) -> nn.Module:
        """vector-quantize-pytorch's ``VectorQuantize``, reading and updating this module's codebook buffers."""
        quantizer = self.__dict__.get("_library_quantizer")
        if quantizer is None:
            try:
                from vector_quantize_pytorch import VectorQuantize
            except ImportError as error:
                raise ImportError(
                    "training ESARMMotionPrior (k-means initialisation, EMA codebook updates, dead-code reset) needs "
                    "vector-quantize-pytorch: pip install vector-quantize-pytorch (inference does not)"
                ) from error
            config = self.config
            quantizer = VectorQuantize(
                dim=config.latent_dim,
                codebook_size=config.codebook_size,
                decay=config.ema_decay,
                kmeans_init=config.kmeans_init,
                threshold_ema_dead_code=config.threshold_ema_dead_code,
                commitment_weight=config.commitment_weight,
                # No all-reduce inside forward (a rank that evaluates alone would hang); under DDP the codebook
                # buffers (registered here, not in the library) are broadcast from rank 0 before every forward.
                sync_codebook=False,
            )
            self.__dict__["_library_quantizer"] = quantizer  # not a submodule: no second copy in the state dict
        quantizer.to(self._codebook.embed.device)
        # Share this module's tensors (again on every step: .to(), DDP and deepcopy replace them); the library
        # updates them in place (EMA lerp, k-means copy_, dead-code assignment).
        for name, buffer in self._codebook.named_buffers(recurse=False):
            quantizer._codebook._buffers[name] = buffer
        return quantizer.train()


class ESARMMotionPriorResBlock(GradientCheckpointingLayer):
    """Pre-activation residual block of two masked 1-D convolutions (channels first: ``[batch, channels, time]``)."""

    def __init__(self, channels: int, kernel_size: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # mask: [batch, 1, time] float; zero padded steps before every convolution.
        residual = hidden
        hidden = self.conv1(F.gelu(hidden) * mask)
        hidden = self.conv2(self.dropout(F.gelu(hidden)) * mask)
        return (residual + hidden) * mask


class ESARMMotionPriorEncoder(nn.Module):
    """Blendshapes of one face region ``[batch, n_region, frames]`` -> latents ``[batch, latent_dim, tokens]``."""

    def __init__(self, config: ESARMMotionPriorConfig, in_channels: int):
        super().__init__()
        hidden, k = config.hidden_size, config.kernel_size
        self.conv_in = nn.Conv1d(in_channels, hidden, k, padding=k // 2)
        self.frame_blocks = nn.ModuleList(
            ESARMMotionPriorResBlock(hidden, k, config.dropout) for _ in range(config.num_res_blocks)
        )
        # Each stride-2 convolution halves the time axis: log2(frames_per_token) of them.
        self.downsample = nn.ModuleList(
            nn.Conv1d(hidden, hidden, 4, stride=2, padding=1) for _ in range(int(math.log2(config.frames_per_token)))
        )
        self.token_blocks = nn.ModuleList(
            ESARMMotionPriorResBlock(hidden, k, config.dropout) for _ in range(config.num_res_blocks)
        )
        self.conv_out = nn.Conv1d(hidden, config.latent_dim, 1)

    def forward(self, blendshapes: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        # blendshapes: [batch, n_region, frames], frames a multiple of frames_per_token; frame_mask: [batch, 1, frames]
        mask = frame_mask
        hidden = self.conv_in(blendshapes * mask) * mask
        for block in self.frame_blocks:
            hidden = block(hidden, mask)
        for conv in self.downsample:
            mask = F.max_pool1d(mask, 2)  # a step is valid when it covers any valid frame
            hidden = conv(hidden) * mask
        for block in self.token_blocks:
            hidden = block(hidden, mask)
        return self.conv_out(F.gelu(hidden)) * mask


class ESARMMotionPriorDecoder(nn.Module):
    """Quantized latents ``[batch, latent_dim, tokens]`` -> pre-activation blendshapes ``[batch, n_region, frames]``."""

    def __init__(self, config: ESARMMotionPriorConfig, out_channels: int):
        super().__init__()
        hidden, k = config.hidden_size, config.kernel_size
        self.conv_in = nn.Conv1d(config.latent_dim, hidden, k, padding=k // 2)
        self.token_blocks = nn.ModuleList(
            ESARMMotionPriorResBlock(hidden, k, config.dropout) for _ in range(config.num_res_blocks)
        )
        # Nearest-neighbour upsampling + convolution: smooth curves without transposed-convolution checkerboards.
        self.upsample = nn.ModuleList(
            nn.Conv1d(hidden, hidden, k, padding=k // 2) for _ in range(int(math.log2(config.frames_per_token)))
        )
        self.frame_blocks = nn.ModuleList(
            ESARMMotionPriorResBlock(hidden, k, config.dropout) for _ in range(config.num_res_blocks)
        )
        self.conv_out = nn.Conv1d(hidden, out_channels, k, padding=k // 2)

    def forward(self, latents: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        # latents: [batch, latent_dim, tokens]; token_mask: [batch, 1, tokens] float
        mask = token_mask
        hidden = self.conv_in(latents * mask) * mask
        for block in self.token_blocks:
            hidden = block(hidden, mask)
        for conv in self.upsample:
            mask = mask.repeat_interleave(2, dim=-1)
            hidden = conv(hidden.repeat_interleave(2, dim=-1) * mask) * mask
        for block in self.frame_blocks:
            hidden = block(hidden, mask)
        return self.conv_out(F.gelu(hidden) * mask)


class ESARMMotionPriorPreTrainedModel(NewFileModeMixin, PreTrainedModel):
    config_class = ESARMMotionPriorConfig
    config: ESARMMotionPriorConfig
    base_model_prefix = "motion_prior"
    main_input_name = "blendshapes"
    supports_gradient_checkpointing = True
    _no_split_modules = ["ESARMMotionPriorEncoder", "ESARMMotionPriorDecoder"]

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Conv1d):
            # Kaiming (fan-in) keeps the activations of the residual convolution stacks at unit scale.
            fan_in = module.in_channels * module.kernel_size[0] // module.groups
            init.normal_(module.weight, mean=0.0, std=1.0 / math.sqrt(fan_in))
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, ESARMCodebook):
            init.copy_(module.embed, initial_codes(*module.embed.shape[-2:]).expand_as(module.embed))
            # The EMA state too: a checkpoint without these buffers must start from the library's fresh state
            # (one count per code, k-means still to run), not from uninitialised memory.
            init.copy_(module.embed_avg, module.embed)
            init.ones_(module.cluster_size)
            init.constant_(module.initted, not self.config.kmeans_init)


class ESARMMotionPrior(ESARMMotionPriorPreTrainedModel):
    """Discrete motion prior: blendshapes ``[B, T, 52]`` <-> motion tokens ``[B, T', G]`` with T' = ceil(T / f).

    ``encode`` and ``decode`` are the two halves used by the STA model (frozen); ``forward`` returns the training
    losses. See the module docstring for the architecture and the choice of quantizer.
    """

    def __init__(self, config: ESARMMotionPriorConfig):
        super().__init__(config)
        self.groups = group_indices(config)
        self.encoders = nn.ModuleList(ESARMMotionPriorEncoder(config, len(idx)) for idx in self.groups)
        self.quantizers = nn.ModuleList(ESARMVectorQuantizer(config) for _ in self.groups)
        self.decoders = nn.ModuleList(ESARMMotionPriorDecoder(config, len(idx)) for idx in self.groups)
        self.post_init()

    # ---- properties -------------------------------------------------------------------------------------------
    @property
    def num_groups(self) -> int:
        """G: number of codebooks (face-region groups)."""
        return len(self.groups)

    @property
    def codebook_size(self) -> int:
        """K: codes per group."""
        return int(self.config.codebook_size)

    @property
    def frames_per_token(self) -> int:
        """Animation frames per motion token."""
        return int(self.config.frames_per_token)

    @property
    def group_names(self) -> list[str]:
        """Names of the groups: the face regions, or ``["face"]`` without grouping."""
        return list(FACE_REGIONS) if self.config.group_by_region else ["face"]

    def num_tokens(self, num_frames: int) -> int:
        """T' = ceil(num_frames / frames_per_token)."""
        return -(-int(num_frames) // self.frames_per_token)

    # ---- encoding ---------------------------------------------------------------------------------------------
    def _prepare(
        self, blendshapes: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Check shapes, pad the time axis to a multiple of frames_per_token and build the frame / token masks."""
        _validate_blendshapes(blendshapes)
        batch, frames, _ = blendshapes.shape
        mask = _validate_mask(attention_mask, (batch, frames), "attention_mask")
        if mask is None:
            mask = torch.ones(batch, frames, dtype=torch.bool, device=blendshapes.device)
        # Padded frames may hold anything (NaN included): replace them before any arithmetic.
        blendshapes = torch.where(mask[..., None], blendshapes, torch.zeros_like(blendshapes))
        padded = self.num_tokens(frames) * self.frames_per_token
        if padded != frames:
            blendshapes = F.pad(blendshapes, (0, 0, 0, padded - frames))
            mask = F.pad(mask, (0, padded - frames), value=False)
        token_mask = mask.view(batch, -1, self.frames_per_token).any(-1)
        return blendshapes, mask, token_mask

    def _quantize(
        self, group: int, latents: torch.Tensor, token_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Latents ``[B, T', D]`` -> (quantized ``[B, D, T']``, ids ``[B, T']``, loss)."""
        quantized, ids, loss = self.quantizers[group](latents, token_mask)
        ids = torch.where(token_mask, ids.long(), torch.zeros_like(ids, dtype=torch.long))
        quantized = quantized * token_mask[..., None]
        return quantized.transpose(1, 2), ids, loss

    def _encode(self, blendshapes: torch.Tensor, frame_mask: torch.Tensor, token_mask: torch.Tensor):
        inputs = blendshapes.transpose(1, 2).to(self.encoders[0].conv_in.weight.dtype)  # [B, 52, frames]
        frame_mask_f = frame_mask[:, None, :].to(inputs.dtype)
        token_mask_f = token_mask[:, None, :].to(inputs.dtype)
        quantized, ids, losses, latents_per_group = [], [], [], []
        for group, indices in enumerate(self.groups):
            latents = (self.encoders[group](inputs[:, indices], frame_mask_f) * token_mask_f).transpose(1, 2)
            group_quantized, group_ids, group_loss = self._quantize(group, latents, token_mask)
            quantized.append(group_quantized)
            ids.append(group_ids)
            losses.append(group_loss)
            latents_per_group.append(latents)  # [B, T', D], the tensor the quantizer reads
        return quantized, torch.stack(ids, dim=-1), torch.stack(losses).sum(), tuple(latents_per_group)

    @torch.no_grad()
    def encode(self, blendshapes: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.LongTensor:
        """Motion tokens ``[batch, ceil(frames / frames_per_token), G]`` of blendshapes ``[batch, frames, 52]``.

        ``attention_mask`` ``[batch, frames]`` marks valid frames (1) and padding (0); tokens that cover no valid
        frame are 0. Deterministic (codebooks are not updated).
        """
        _validate_blendshapes(blendshapes)
        _check_values(blendshapes, attention_mask, "attention_mask")
        was_training = self.training
        self.eval()
        try:
            blendshapes, frame_mask, token_mask = self._prepare(blendshapes, attention_mask)
            _, ids, _, _ = self._encode(blendshapes, frame_mask, token_mask)
        finally:
            self.train(was_training)
        return ids

    # ---- decoding ---------------------------------------------------------------------------------------------
    def _validate_tokens(self, motion_tokens: torch.Tensor) -> None:
        if not isinstance(motion_tokens, torch.Tensor):
            raise ValueError(f"motion_tokens must be a torch.Tensor [batch, tokens, G], got {type(motion_tokens)}")
        if motion_tokens.ndim != 3 or motion_tokens.shape[-1] != self.num_groups or motion_tokens.shape[1] == 0:
            raise ValueError(
                f"motion_tokens must have shape [batch, tokens >= 1, {self.num_groups}] (G = num_groups), "
                f"got shape {tuple(motion_tokens.shape)}"
            )
        if torch.is_floating_point(motion_tokens) or torch.is_complex(motion_tokens):
            raise ValueError(f"motion_tokens must be integer code ids, got dtype {motion_tokens.dtype}")
        if motion_tokens.numel() and (motion_tokens.min() < 0 or motion_tokens.max() >= self.codebook_size):
            raise ValueError(
                f"motion_tokens must be code ids in [0, {self.codebook_size}), got values in "
                f"[{int(motion_tokens.min())}, {int(motion_tokens.max())}]"
            )

    def _codes(self, group: int, ids: torch.Tensor) -> torch.Tensor:
        """Code vectors ``[B, D, T']`` of ids ``[B, T']``."""
        return self.quantizers[group].lookup(ids).transpose(1, 2)

    def _decode(self, quantized: list[torch.Tensor], token_mask: torch.Tensor) -> torch.Tensor:
        """Per-group quantized latents -> blendshapes ``[B, T' * frames_per_token, 52]`` in [0, 1]."""
        # The decoders run in their own dtype (bf16 under mixed precision) whatever the codebook's dtype (float32
        # buffers in the quantizer library): one dtype for the latents, the mask and the output.
        dtype = self.decoders[0].conv_in.weight.dtype
        token_mask_f = token_mask[:, None, :].to(dtype)
        batch, tokens = token_mask.shape
        out = torch.zeros(batch, NUM_BLENDSHAPES, tokens * self.frames_per_token, dtype=dtype, device=token_mask.device)
        for group, indices in enumerate(self.groups):
            out[:, indices] = self.decoders[group](quantized[group].to(dtype), token_mask_f).to(dtype)
        return (out + (out.clamp(0.0, 1.0) - out).detach()).transpose(1, 2)  # straight-through clamp to [0, 1]

    def decode_region(self, group: int, latents: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """One region's blendshapes ``[B, T' * frames_per_token, n_region]`` from code vectors ``[B, T', D]``.

        Differentiable in ``latents``, so a mix of codes (e.g. weighted by a softmax over the codebook) can be
        decoded and trained against; the codebook's own vectors give :meth:`decode`'s values for that region.
        ``token_mask`` ``[B, T']`` marks valid tokens; padded frames decode to zero.
        """
        dtype = self.decoders[group].conv_in.weight.dtype
        mask = token_mask[:, None, :].to(dtype)
        out = self.decoders[group](latents.transpose(1, 2).to(dtype) * mask, mask)
        out = out + (out.clamp(0.0, 1.0) - out).detach()  # the straight-through clamp of _decode
        frame_mask = token_mask.repeat_interleave(self.frames_per_token, dim=1)
        return out.transpose(1, 2) * frame_mask[..., None].to(dtype)

    def decode(
        self,
        motion_tokens: torch.Tensor,
        num_frames: int | None = None,
        motion_mask: torch.Tensor | None = None,
    ) -> torch.FloatTensor:
        """Blendshapes ``[batch, frames, 52]`` (ARKit order, [0, 1]) of motion tokens ``[batch, tokens, G]``.

        Args:
            motion_tokens: Code ids in [0, codebook_size).
            num_frames: Frames to return (default ``tokens * frames_per_token``); at most that many.
            motion_mask: Optional ``[batch, tokens]`` mask of valid tokens (padded tokens then do not influence
                the valid frames, and decode to zeros).
        """
        self._validate_tokens(motion_tokens)
        batch, tokens, _ = motion_tokens.shape
        max_frames = tokens * self.frames_per_token
        if num_frames is None:
            num_frames = max_frames
        if not isinstance(num_frames, int) or not 1 <= num_frames <= max_frames:
            raise ValueError(
                f"num_frames must be an int in [1, {max_frames}] (tokens * frames_per_token), got {num_frames!r}"
            )
        token_mask = _validate_mask(motion_mask, (batch, tokens), "motion_mask")
        _check_values(None, token_mask, "motion_mask")
        if token_mask is None:
            token_mask = torch.ones(batch, tokens, dtype=torch.bool, device=motion_tokens.device)
        ids = motion_tokens.long().masked_fill(~token_mask[..., None], 0)
        quantized = [self._codes(g, ids[..., g]) * token_mask[:, None, :] for g in range(self.num_groups)]
        frames = self._decode(quantized, token_mask)
        frame_mask = token_mask.repeat_interleave(self.frames_per_token, dim=1)
        return (frames * frame_mask[..., None])[:, :num_frames]

    # ---- training ---------------------------------------------------------------------------------------------
    def forward(
        self,
        blendshapes: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> ESARMMotionPriorOutput | tuple:
        """Encode, quantize and decode ``blendshapes`` ``[batch, frames, 52]``; return reconstruction and losses.

        Args:
            blendshapes: ``[batch, frames, 52]`` ARKit coefficients; padded frames may hold anything.
            attention_mask: ``[batch, frames]``: 1 at valid frames, 0 at padding (ignored by losses and outputs).
                The first frame of every sequence must be valid (checked by :meth:`encode`, not here: ``forward``
                reads no tensor values).
            output_hidden_states: Also return the encoder latents of each group (``config.output_hidden_states``
                by default).
            return_dict: Return an :class:`ESARMMotionPriorOutput` (default, ``config.return_dict``) or a tuple.
        """
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        frames = blendshapes.shape[1] if isinstance(blendshapes, torch.Tensor) and blendshapes.ndim == 3 else 0
        prepared, frame_mask, token_mask = self._prepare(blendshapes, attention_mask)
        quantized, ids, quantizer_loss, latents = self._encode(prepared, frame_mask, token_mask)
        reconstruction = self._decode(quantized, token_mask) * frame_mask[..., None]
        prepared = prepared.to(reconstruction.dtype)

        # Masked losses over valid frames (value) and valid consecutive frame pairs (velocity).
        weight = frame_mask[..., None].to(reconstruction.dtype)
        squared = (reconstruction - prepared) ** 2 * weight
        value_loss = squared.sum() / (weight.sum() * NUM_BLENDSHAPES).clamp_min(1.0)
        pair_weight = weight[:, 1:] * weight[:, :-1]
        velocity_error = (reconstruction.diff(dim=1) - prepared.diff(dim=1)) ** 2 * pair_weight
        velocity_loss = velocity_error.sum() / (pair_weight.sum() * NUM_BLENDSHAPES).clamp_min(1.0)
        reconstruction_loss = value_loss + self.config.velocity_loss_weight * velocity_loss
        loss = reconstruction_loss + self.config.quantizer_loss_weight * quantizer_loss

        usage, perplexity = self._codebook_statistics(ids, token_mask)
        output = ESARMMotionPriorOutput(
            loss=loss,
            reconstruction=reconstruction[:, :frames],
            reconstruction_loss=reconstruction_loss,
            quantizer_loss=quantizer_loss,
            motion_tokens=ids,
            token_mask=token_mask,
            codebook_usage=usage,
            perplexity=perplexity,
            hidden_states=latents if output_hidden_states else None,
        )
        return output if return_dict else output.to_tuple()

    @torch.no_grad()
    def _codebook_statistics(self, ids: torch.Tensor, token_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fraction of codes used and perplexity per group ``[G]`` over the valid tokens."""
        # Masked one-hot counts rather than boolean indexing: no data-dependent shape, so no device sync.
        weight = token_mask[..., None].float()  # [B, T', 1]
        usage, perplexity = [], []
        for group in range(self.num_groups):
            counts = (F.one_hot(ids[..., group], self.codebook_size).float() * weight).sum((0, 1))
            probs = counts / counts.sum().clamp_min(1.0)
            entropy = -(probs * probs.clamp_min(1e-12).log()).sum()
            usage.append((counts > 0).float().mean())
            perplexity.append(entropy.exp())
        return torch.stack(usage), torch.stack(perplexity)


__all__ = [
    "ESARMCodebook",
    "ESARMMotionPrior",
    "ESARMMotionPriorOutput",
    "ESARMMotionPriorPreTrainedModel",
    "ESARMVectorQuantizer",
    "group_indices",
]


# Registration with transformers' Auto classes, done on import (``import esarm`` imports this module). A saved
# folder's copy of this file, run with ``trust_remote_code=True``, registers nothing: its own ``auto_map`` serves it.
if __package__ == "esarm":
    AutoModel.register(ESARMMotionPriorConfig, ESARMMotionPrior, exist_ok=True)
    ESARMMotionPrior.register_for_auto_class("AutoModel")
