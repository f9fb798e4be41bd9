"""CPU inference levers for a loaded ``ESARMSTAForGeneration``, applied after loading, outside the model code.

The speech encoder (WavLM) is almost all of the ``base`` preset's inference time on a CPU, so the levers act on it:

- ``attention="sdpa"``: transformers' WavLM runs its attention through ``F.multi_head_attention_forward`` with
  ``need_weights=True`` (it declares ``_supports_sdpa = False``), which materialises and head-averages the attention
  weights. Its gated relative position bias is an additive float mask, which ``F.scaled_dot_product_attention``
  accepts, so the same attention runs fused: :class:`WavLMSdpaAttention` swaps in for each ``WavLMAttention``
  (same parameters, same outputs to float rounding). Encoders that support SDPA in transformers are switched with
  ``set_attn_implementation("sdpa")``.
- ``int8=True``: dynamic int8 quantisation (``torch.ao.quantization.quantize_dynamic``) of the encoder's linear
  layers: weights stored in int8, activations quantised per batch on the fly. WavLM's eager attention reads
  ``q_proj.weight`` directly, so with ``attention="eager"`` its four attention projections stay in float.
- ``compile=True``: ``torch.compile`` of the motion transformer (the autoregressive decoder step).
- ``encoder_window_seconds``: the speech encoder hears long audio in overlapping windows of this length, cross-faded
  across ``encoder_window_overlap_seconds`` (:meth:`esarm.speech_encoder.SpeechEncoder.set_window`). Self-attention over
  the whole clip costs time quadratic in its length; windows make it linear.

The accuracy cost of each lever (token agreement, blendshape MAE against the float model) is measured by
``benchmarks/generation.py``; nothing here changes a saved checkpoint.
"""

from __future__ import annotations

import logging
import platform
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.wavlm.modeling_wavlm import WavLMAttention

from .speech_encoder import conv_geometry

logger = logging.getLogger(__name__)

__all__ = [
    "ATTENTION_IMPLEMENTATIONS",
    "CPU_INFERENCE_DEFAULTS",
    "INT8_MIN_HIDDEN_SIZE",
    "WavLMSdpaAttention",
    "apply_cpu_inference_defaults",
    "int8_inference_layers",
    "lever_settings",
    "optimize_for_inference",
]

ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa")
# The levers that esarm's pipeline, ``esarm animate`` and the streaming animator apply to a model on the CPU.
# Measured with benchmarks/generation.py (speed, random-init base) and benchmarks/lever_accuracy.py (a trained model):
# int8 cuts base's CPU time by 16 / 18 / 6 % at 5 / 30 / 60 s on a quiet 2-core machine and moved the trained tiny
# model's test LVE by 0.009 mm (0.2 %); "auto" applies it to wide encoders only (INT8_MIN_HIDDEN_SIZE).
CPU_INFERENCE_DEFAULTS = {"attention": "sdpa", "int8": "auto", "encoder_window_seconds": 20.0}
# int8="auto" quantises a speech encoder at least this wide. Measured: WavLM base (768) runs up to 18 % faster; the
# tiny preset's 32-wide encoder gains nothing (quantising the activations costs what the int8 products save) and
# keeps its float outputs.
INT8_MIN_HIDDEN_SIZE = 256
_ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


class WavLMSdpaAttention(WavLMAttention):
    """``WavLMAttention`` whose attention runs through ``F.scaled_dot_product_attention``.

    The gated relative position bias ``[B * heads, T, T]`` and the key padding mask become one additive float mask;
    the projections are called as modules (so they may be quantised). Attention weights are not returned.
    """

    def torch_multi_head_self_attention(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        gated_position_bias: torch.Tensor,
    ) -> tuple[torch.Tensor, None]:
        batch, length, _ = hidden_states.shape

        def heads(projection: nn.Module) -> torch.Tensor:  # [B, T, E] -> [B, heads, T, head_dim]
            return projection(hidden_states).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

        bias = gated_position_bias.view(batch, self.num_heads, length, length).to(hidden_states.dtype)
        if attention_mask is not None:
            padding = attention_mask.ne(1)[:, None, None, :]  # [B, 1, 1, T] True at padded keys
            bias = bias.masked_fill(padding, float("-inf"))
        attended = F.scaled_dot_product_attention(
            heads(self.q_proj),
            heads(self.k_proj),
            heads(self.v_proj),
            attn_mask=bias,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out_proj(attended.transpose(1, 2).reshape(batch, length, self.embed_dim)), None


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``): speed figures name it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _set_attention(encoder: nn.Module, attention: str) -> int:
    """Switch the encoder's attention; returns the number of WavLM attention modules swapped."""
    wavlm_modules = [module for module in encoder.modules() if isinstance(module, WavLMAttention)]
    if wavlm_modules:
        target = WavLMSdpaAttention if attention == "sdpa" else WavLMAttention
        for module in wavlm_modules:
            module.__class__ = target  # same parameters and buffers: only the attention computation changes
        return len(wavlm_modules)
    if attention == "sdpa":
        if not getattr(encoder, "_supports_sdpa", False):
            raise ValueError(
                f"attention='sdpa' needs a WavLM encoder or one that supports SDPA in transformers, "
                f"got {type(encoder).__name__}"
            )
    encoder.set_attn_implementation(attention)
    return 0


def _quantize_linear_layers(encoder: nn.Module) -> int:
    """Dynamic int8 quantisation of the encoder's ``nn.Linear`` layers in place; returns how many."""
    names = set()
    for name, module in encoder.named_modules():
        if type(module) is WavLMAttention:  # eager attention reads the projection weights, not the modules
            names.update(f"{name}.{projection}" for projection in _ATTENTION_PROJECTIONS)
    spec = {
        name: torch.ao.quantization.default_dynamic_qconfig
        for name, module in encoder.named_modules()
        if isinstance(module, nn.Linear) and name not in names
    }
    with warnings.catch_warnings():
        # torch.ao's eager-mode quantisation warns that it is deprecated in favour of torchao (an extra
        # dependency); it is the maintained path in the installed torch and gives the measured speed-up
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*(deprecated|quantize_per_tensor).*")
        torch.ao.quantization.quantize_dynamic(encoder, spec, dtype=torch.qint8, inplace=True)
    return len(spec)


def int8_inference_layers(model: nn.Module) -> int:
    """How many of ``model``'s layers are dynamic int8 inference layers (``optimize_for_inference(int8=True)``):
    such a model can generate, but not train or be saved."""
    return sum(isinstance(module, torch.ao.nn.quantized.dynamic.Linear) for module in model.modules())


def _set_encoder_window(model: Any, window_seconds: float | None, overlap_seconds: float) -> None:
    """Convert the window and overlap to encoder frames and set them on the model's speech encoder."""
    if window_seconds is None:
        if model.speech_encoder is not None:
            model.speech_encoder.set_window(None)
        return
    if isinstance(window_seconds, bool) or not isinstance(window_seconds, (int, float)) or not window_seconds > 0:
        raise ValueError(f"encoder_window_seconds must be a positive number of seconds or None, got {window_seconds!r}")
    if isinstance(overlap_seconds, bool) or not isinstance(overlap_seconds, (int, float)):
        raise ValueError(f"encoder_window_overlap_seconds must be a number of seconds, got {overlap_seconds!r}")
    if not 0 <= overlap_seconds < window_seconds:
        raise ValueError(
            f"encoder_window_overlap_seconds must be in [0, encoder_window_seconds={window_seconds}), "
            f"got {overlap_seconds}"
        )
    if model.speech_encoder is None:
        raise ValueError(
            f"encoder_window_seconds needs a speech encoder, got audio_front_end={model.config.audio_front_end!r}"
        )
    _, stride = conv_geometry(model.audio_encoder)
    frames_per_second = float(model.config.sampling_rate) / stride
    window = max(1, round(window_seconds * frames_per_second))
    model.speech_encoder.set_window(window, min(window - 1, round(overlap_seconds * frames_per_second)))


def optimize_for_inference(
    model: Any,
    *,
    int8: bool | str = False,
    attention: str = "eager",
    compile: bool = False,
    encoder_window_seconds: float | None = None,
    encoder_window_overlap_seconds: float = 2.0,
) -> Any:
    """Apply CPU inference levers to an ``ESARMSTAForGeneration`` in place and return it (in eval mode).

    Args:
        model: the STA model, on the CPU (dynamic int8 kernels are CPU-only).
        int8: dynamic int8 quantisation of the speech encoder's linear layers (module docstring); ``"auto"``: only
            for an encoder at least :data:`INT8_MIN_HIDDEN_SIZE` wide, where it pays.
        attention: ``"eager"`` (transformers' WavLM attention) or ``"sdpa"`` (fused attention, same result).
        compile: ``torch.compile`` the motion transformer (the decoder step; the first calls pay the compilation).
        encoder_window_seconds: encode audio longer than this in overlapping windows of this length (seconds);
            ``None`` encodes each clip whole (as in training).
        encoder_window_overlap_seconds: least overlap between neighbouring windows (seconds, cross-faded).

    Returns:
        ``model``, ready for ``generate``; it can no longer be trained or saved with int8 layers.
    """
    if attention not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(f"attention must be one of {list(ATTENTION_IMPLEMENTATIONS)}, got {attention!r}")
    if int8 not in (True, False, "auto"):
        raise ValueError(f"int8 must be True, False or 'auto', got {int8!r}")
    device = next(model.parameters()).device
    encoder = model.audio_encoder
    if int8 == "auto":
        width = getattr(getattr(encoder, "config", None), "hidden_size", 0)
        int8 = device.type == "cpu" and width >= INT8_MIN_HIDDEN_SIZE
    if int8 and device.type != "cpu":
        raise ValueError(f"int8=True needs the model on the CPU (dynamic int8 kernels are CPU-only), got {device}")
    model.eval()
    levers = dict(int8=int8, attention=attention, compile=compile, encoder_window_seconds=encoder_window_seconds,
                  encoder_window_overlap_seconds=encoder_window_overlap_seconds)  # fmt: skip
    if getattr(model, "_inference_levers", None) == levers:
        # already in place: the pipeline, the app and each StreamingAnimator apply the CPU defaults to the model
        # they are given, so without this every request would walk the encoder again (and log it)
        return model
    _set_encoder_window(model, encoder_window_seconds, encoder_window_overlap_seconds)
    swapped = _set_attention(encoder, attention)
    quantized = _quantize_linear_layers(encoder) if int8 else 0
    if compile:
        model.motion_transformer.forward = torch.compile(model.motion_transformer.forward, dynamic=True)
    logger.info(
        "inference levers: attention=%s (%d WavLM layers), int8 linear layers=%d, compiled decoder=%s, "
        "encoder window=%s s", attention, swapped, quantized, compile, encoder_window_seconds,
    )  # fmt: skip
    model._inference_levers = levers
    return model


def lever_settings(lever: str) -> dict[str, Any]:
    """The :func:`optimize_for_inference` keyword arguments of a lever as the benchmarks name it: parts joined by
    ``+`` among ``fp32`` (the model as saved), ``sdpa``, ``int8``, ``compile`` and ``encN`` (the speech encoder over
    N-second windows overlapping by N / 10 s), e.g. ``"int8+sdpa+enc20"``."""
    names = set(lever.split("+"))
    windows = [name for name in names if name.startswith("enc") and name[3:].replace(".", "", 1).isdigit()]
    if not names - set(windows) <= {"fp32", "sdpa", "int8", "compile"} or len(windows) > 1:
        raise ValueError(
            f"lever must join fp32, sdpa, int8, compile and one encN (N-second encoder windows) with '+', got {lever!r}"
        )
    window = float(windows[0][3:]) if windows else None
    return dict(
        int8="int8" in names, attention="sdpa" if "sdpa" in names else "eager", compile="compile" in names,
        encoder_window_seconds=window, encoder_window_overlap_seconds=window / 10 if window else 2.0,
    )  # fmt: skip


def apply_cpu_inference_defaults(model: Any, **overrides: Any) -> Any:
    """Apply :data:`CPU_INFERENCE_DEFAULTS` (with ``overrides``, e.g. ``int8=False``) to ``model`` in place when it
    runs on the CPU with a WavLM speech encoder (the setting they were measured on); other models are returned
    unchanged. Returns ``model``.

    Fused attention gives the same tokens, and clips shorter than the encoder window are encoded whole. int8 (wide
    encoders only) changes the animation a little (module docstring) and leaves a model that generates but cannot be
    trained or saved (``train()`` and ``save_pretrained`` say so): load it again for that, or pass
    ``cpu_defaults=False`` to the pipeline or the streaming animator.
    """
    unknown = set(overrides) - set(CPU_INFERENCE_DEFAULTS)
    if unknown:
        raise ValueError(f"overrides must be among {sorted(CPU_INFERENCE_DEFAULTS)}, got {sorted(unknown)}")
    encoder = model.audio_encoder
    if encoder is None or next(encoder.parameters()).device.type != "cpu":
        return model
    if not any(isinstance(module, WavLMAttention) for module in encoder.modules()):
        return model
    return optimize_for_inference(model, **{**CPU_INFERENCE_DEFAULTS, **overrides})
