"""Speaker-robust audio front end and the phone-class head of the STA model's content branch.

:class:`LogMelFrontEnd` turns 16 kHz audio into per-utterance-normalised log-mel frames and, through a small
convolutional stack, into one feature vector per motion step. It replaces (or sits beside) the speech encoder in the
CPU presets: a random-init WavLM convolution stack trained on a few hundred synthetic clips learns the voices it hears
(jawOpen r 0.34 on unseen eSpeak NG voices after training on 1,024 clips), while a *linear* map of normalised log-mel
frames reaches r 0.65 on the same clips. Normalising every band over the utterance removes most of a voice's and a
channel's spectral tilt before anything is learned.

:class:`PhoneFrontEnd` does the same for PocketSphinx's recognised phones per frame (:mod:`esarm.phonetic`), an
acoustic model trained on real speech that the synthetic corpus cannot teach.

:data:`PHONE_CLASSES` and :class:`PhoneClassHead` give the content branch a frame-level auxiliary target where the
corpus has phoneme timings (the synthetic corpus always does; real captures such as MEAD do not, so the loss is
optional).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .frames import resample
from .modules import sequence_mask
from .phonetic import NUM_PHONE_FEATURES, PHONES, batch_phone_features

__all__ = ["PHONE_CLASSES", "LogMelFrontEnd", "PhoneClassHead", "PhoneFrontEnd", "mel_filters", "normalized_log_mel"]

PHONE_CLASSES: tuple[str, ...] = ("open", "mid", "close", "bilabial", "other", "pause")
"""Phone classes of the auxiliary target, in id order: open, mid, close vowels, bilabials, other phones, pause (the
classes of :func:`esarm.data.phones.phone_class`, spelled out here so that the model does not import the data
package and its ``datasets`` dependency)."""

IGNORE_INDEX = -100
"""Target id of frames without a phone label (padding, clips without timings): ignored by the loss."""


def mel_filters(num_bands: int, n_fft: int, sampling_rate: int, low_hz: float = 20.0) -> torch.Tensor:
    """Triangular filters on the HTK mel scale between ``low_hz`` and the Nyquist frequency: ``[n_fft // 2 + 1,
    num_bands]`` float32, peak 1 each."""

    def to_mel(hz: float) -> float:
        return 2595.0 * math.log10(1.0 + hz / 700.0)

    edges_mel = torch.linspace(to_mel(low_hz), to_mel(sampling_rate / 2), num_bands + 2, dtype=torch.float64)
    edges = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)
    bins = torch.linspace(0, sampling_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - lower) / (centre - lower)
    falling = (upper - bins[None]) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).T.float()


def normalized_log_mel(
    input_values: torch.Tensor,
    sample_lengths: torch.Tensor,
    num_bands: int,
    sampling_rate: int = 16000,
    hop_length: int = 160,
    window_length: int = 400,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-mel energies normalised per utterance: each band shifted and scaled to zero mean and unit variance over the
    utterance's own frames (padding excluded).

    Args:
        input_values: ``[B, S]`` audio.
        sample_lengths: ``[B]`` valid samples per sequence.
        num_bands: mel bands.
        hop_length, window_length: in samples (10 ms and 25 ms at 16 kHz, the usual speech front end).

    Returns:
        ``([B, F, num_bands]`` features (0 at padded frames), ``[B]`` valid frames).
    """
    n_fft = 1 << (window_length - 1).bit_length()
    half = window_length // 2
    padded = F.pad(input_values.float(), (half, half + hop_length))
    frames = padded.unfold(1, window_length, hop_length)  # (bsz, num_frames, window_length)
    window = torch.hann_window(window_length, device=frames.device)
    spectrum = torch.fft.rfft(frames * window, n=n_fft, dim=-1)
    power = spectrum.real.square() + spectrum.imag.square()  # (bsz, num_frames, n_fft // 2 + 1)
    mel = torch.log(power @ mel_filters(num_bands, n_fft, sampling_rate).to(power.device) + 1e-6)
    num_frames = (sample_lengths // hop_length + 1).clamp(min=1, max=mel.shape[1])
    valid = sequence_mask(num_frames, mel.shape[1])[..., None].to(mel.dtype)  # (bsz, num_frames, 1)
    count = valid.sum(1, keepdim=True)
    mean = (mel * valid).sum(1, keepdim=True) / count
    variance = ((mel - mean).square() * valid).sum(1, keepdim=True) / count
    return (mel - mean) / torch.sqrt(variance + 1e-5) * valid, num_frames


class LogMelFrontEnd(nn.Module):
    """Audio -> per-utterance-normalised log-mel frames (100 per second) -> two 1-D convolutions over time (GELU) ->
    one feature vector per motion step (interval means, :func:`esarm.frames.resample`).

    The convolutions see ``1 + 2 * (kernel_size - 1)`` frames (90 ms with the default kernel of 5): a phone's
    spectral shape and its transitions, not the voice over a whole utterance.

    Args:
        num_bands: mel bands.
        output_size: size of the output features (the model width).
        sampling_rate: audio rate in Hz.
        kernel_size: odd kernel of the two convolutions, in 10 ms frames.
    """

    hop_length = 160
    window_length = 400

    def __init__(self, num_bands: int, output_size: int, sampling_rate: int = 16000, kernel_size: int = 5):
        super().__init__()
        self.num_bands = num_bands
        self.sampling_rate = sampling_rate
        padding = kernel_size // 2
        self.convolutions = nn.ModuleList(
            [
                nn.Conv1d(num_bands, output_size, kernel_size, padding=padding),
                nn.Conv1d(output_size, output_size, kernel_size, padding=padding),
            ]
        )
        self.projection = nn.Linear(output_size, output_size)

    def forward(
        self, input_values: torch.Tensor, sample_lengths: torch.Tensor, num_steps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, S]`` audio, ``[B]`` valid samples, ``[B]`` motion steps -> (``[B, max(num_steps), output_size]``,
        mask ``[B, max(num_steps)]``)."""
        with torch.no_grad():  # a fixed transform of the input: nothing to learn before the convolutions
            mel, num_frames = normalized_log_mel(
                input_values, sample_lengths, self.num_bands, self.sampling_rate, self.hop_length, self.window_length
            )
        return _encode_frames(self.convolutions, self.projection, mel, num_frames, num_steps)


def _encode_frames(convolutions: nn.ModuleList, projection: nn.Linear, frames: torch.Tensor, num_frames: torch.Tensor,
                   num_steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``[B, F, C]`` frames with ``[B]`` valid counts -> convolutions over time (GELU) -> projection -> interval means
    on the motion-step grid: (``[B, max(num_steps), H]``, mask ``[B, max(num_steps)]``)."""
    # padded frames are zeroed after every convolution, so that a padded sequence gives the features it has alone
    valid = sequence_mask(num_frames, frames.shape[1])[:, None].to(projection.weight.dtype)  # (bsz, 1, frames)
    hidden = frames.to(valid.dtype).transpose(1, 2)  # (bsz, channels, frames)
    for convolution in convolutions:
        hidden = F.gelu(convolution(hidden)) * valid
    return resample(projection(hidden.transpose(1, 2)), num_frames, num_steps.to(num_frames.device))


class PhoneFrontEnd(nn.Module):
    """Phone features per 10 ms frame (:func:`esarm.phonetic.batch_phone_features`: one-hot recognised phone and,
    with ``use_score``, the segment's acoustic score) -> the two convolutions of :class:`LogMelFrontEnd` -> one
    feature vector per motion step.

    Args:
        output_size: size of the output features (the model width).
        use_score: also hear the acoustic-score column.
        kernel_size: odd kernel of the two convolutions, in 10 ms frames.
    """

    hop_length = LogMelFrontEnd.hop_length

    def __init__(self, output_size: int, use_score: bool = False, kernel_size: int = 5):
        super().__init__()
        self.use_score = use_score
        self.num_features = NUM_PHONE_FEATURES if use_score else len(PHONES)
        padding = kernel_size // 2
        self.convolutions = nn.ModuleList(
            [
                nn.Conv1d(self.num_features, output_size, kernel_size, padding=padding),
                nn.Conv1d(output_size, output_size, kernel_size, padding=padding),
            ]
        )
        self.projection = nn.Linear(output_size, output_size)

    def forward(
        self,
        input_values: torch.Tensor,
        sample_lengths: torch.Tensor,
        num_steps: torch.Tensor,
        phone_features: torch.Tensor | None = None,
        decoder_settings: dict[str, Any] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, S]`` audio, ``[B]`` valid samples, ``[B]`` motion steps and, when already computed (a dataset's
        cached column), ``[B, F, NUM_PHONE_FEATURES]`` phone features -> (``[B, max(num_steps), output_size]``, mask
        ``[B, max(num_steps)]``). Without ``phone_features`` PocketSphinx decodes ``input_values`` here, with
        ``decoder_settings`` (the model's ``config.phone_decoder_settings``; `None`: the package's defaults)."""
        num_frames = sample_lengths // self.hop_length + 1
        if phone_features is None:
            phone_features = batch_phone_features(input_values, sample_lengths, decoder_settings)
        frames = phone_features[..., : self.num_features].to(input_values.device)
        if frames.shape[1] < int(num_frames.max()):  # a cached clip one frame short of its padded batch
            frames = F.pad(frames, (0, 0, 0, int(num_frames.max()) - frames.shape[1]))
        num_frames = num_frames.clamp(max=frames.shape[1])
        return _encode_frames(self.convolutions, self.projection, frames, num_frames, num_steps)


class PhoneClassHead(nn.Module):
    """Phone-class logits of every animation frame from the content features of its motion step.

    A motion step covers ``frames_per_token`` frames, so the head predicts one distribution per frame of the step:
    ``[B, T', H]`` -> ``[B, T' * frames_per_token, num_classes]``.
    """

    def __init__(self, hidden_size: int, frames_per_token: int, num_classes: int = len(PHONE_CLASSES)):
        super().__init__()
        self.frames_per_token = frames_per_token
        self.num_classes = num_classes
        self.classifier = nn.Linear(hidden_size, frames_per_token * num_classes)

    def forward(self, content_features: torch.Tensor) -> torch.Tensor:
        batch, steps, _ = content_features.shape
        logits = self.classifier(content_features)  # (bsz, steps, frames_per_token * num_classes)
        return logits.view(batch, steps * self.frames_per_token, self.num_classes)

    def loss(self, content_features: torch.Tensor, phone_classes: torch.LongTensor) -> torch.Tensor:
        """Cross entropy against frame targets ``[B, T]`` (ids in :data:`PHONE_CLASSES` order, :data:`IGNORE_INDEX`
        where unlabelled; cut or padded to the steps' frames); 0 when no frame is labelled."""
        logits = self(content_features)
        frames = logits.shape[1]
        if phone_classes.shape[1] >= frames:
            targets = phone_classes[:, :frames]
        else:
            targets = F.pad(phone_classes, (0, frames - phone_classes.shape[1]), value=IGNORE_INDEX)
        # sum over labelled frames / their count (at least 1): a batch without labels adds 0, not NaN
        total = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX,
                                reduction="sum")  # fmt: skip
        return total / (targets != IGNORE_INDEX).sum().clamp(min=1)
