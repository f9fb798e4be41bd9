"""Audio of any length, and live audio: windowed inference over ``ESARMSTAForGeneration.generate``.

The audio is cut into windows of ``chunk_seconds`` that overlap by ``overlap_seconds``; each window is animated
on its own (bounded memory: one window's audio features and attention at a time) and neighbouring windows are
cross-faded over the overlap with complementary raised-cosine weights, so there is no step at the borders. The
window starts fall on sample positions that are whole animation frames and whole motion tokens, so every
window's frames line up exactly with the timeline.

- :func:`animate_audio`: a whole waveform (a 10-minute file runs in ``chunk_seconds`` worth of memory).
- :class:`StreamingAnimator`: feed audio chunks as they arrive (:meth:`~StreamingAnimator.push`), get the
  animation frames that are final (:meth:`~StreamingAnimator.push` returns them; :meth:`~StreamingAnimator.flush`
  at the end). Its output equals :func:`animate_audio`'s for the same settings. Latency: a frame is final
  once the audio up to the end of the window that completes it has arrived, at most ``chunk_seconds`` after
  the frame's time (:attr:`~StreamingAnimator.latency_seconds`), plus one window's compute time.
- :meth:`StreamingAnimator.low_latency`: live use. Windows keep only one motion token of frames (67 ms at 30 fps)
  but hear ``context_seconds`` of audio before them and ``lookahead_seconds`` after them. The motion decoder is
  causal, so only the speech side needs the look-ahead; the latency is the look-ahead plus one token plus one
  window's compute (about 0.25 s with 0.1 s of look-ahead for the tiny model on 2 CPU threads, see
  ``benchmarks/streaming_latency.py`` for the quality cost against the offline result).

Audio is normalised per window as the processor's feature extractor does for a clip (zero mean, unit variance,
when its ``do_normalize`` is set), so audio that fits in one window gives exactly the unchunked result.
``emotion="auto"`` takes the emotion heard in the first window and keeps it for the rest of the audio.
"""

from __future__ import annotations

import importlib
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .audio import resample
from .blendshapes import EMOTIONS
from .inference import apply_cpu_inference_defaults
from .labels import UNKNOWN_SPEAKER_ID, emotion_to_id, intensity_to_id, speaker_to_id
from .phonetic import FRAME_RATE as PHONE_FRAME_RATE
from .phonetic import HOP_LENGTH as PHONE_HOP
from .phonetic import num_feature_frames, phone_features, tail_phone_features

logger = logging.getLogger(__name__)

__all__ = ["AnimationResult", "StreamingAnimator", "animate_audio", "resolve_condition_ids"]


@dataclass
class AnimationResult:
    """Blendshapes ``[frames, 52]`` (ARKit order) at ``fps``, and the emotion used."""

    blendshapes: np.ndarray
    fps: float
    emotion: str


def resolve_condition_ids(
    emotion: str | int | None, intensity: int | None, speaker: str | int | None, speakers: list[str] | None = None
) -> tuple[int | None, int | None, int]:
    """Emotion id (``None`` = heard in the audio), intensity id (``None`` = model default), speaker id (0 = unknown).

    ``emotion`` is a name of ``EMOTIONS``, an id, ``"auto"`` (heard in the audio) or ``None`` (neutral);
    ``intensity`` is 1..3 or ``None``;
    ``speaker`` a name in ``speakers`` (the processor's list), an id 0..len(speakers), or ``None``. Labels follow
    :mod:`esarm.labels` (names in any case, digit strings read as numbers, unknown speaker names -> 0).
    """
    if emotion is None:
        emotion = "neutral"
    emotion_id = None if isinstance(emotion, str) and emotion.strip().casefold() == "auto" else emotion_to_id(emotion)
    intensity_id = None if intensity is None else intensity_to_id(intensity)
    speaker_id = speaker_to_id(speaker, speakers or [])
    if speaker_id == UNKNOWN_SPEAKER_ID and isinstance(speaker, str) and not speaker.strip().isdigit():
        # a typo would otherwise animate as the unknown speaker without a word
        known = ", ".join(speakers) if speakers else "none: the model was saved without a processor"
        logger.warning(
            "speaker %r is not a speaker the model knows (%s); animating as the unknown speaker", speaker, known
        )
    return emotion_id, intensity_id, speaker_id


def _default_model(processor: Any) -> tuple[Any, Any]:
    """esarm's default model, with its processor unless one is given."""
    # Imported when needed, by name: the default model's loader imports the model, whose pipeline imports this
    # module; and this module is also the remote code of saved models, whose copy (without esarm) has no default.
    model, default_processor = importlib.import_module("esarm.default_model").load_default_model()
    return model, default_processor if processor is None else processor


def _alignment_frames(fps: float, sampling_rate: int, frames_per_token: int) -> int:
    """Smallest frame count that is a whole number of samples and of motion tokens (window starts snap to it)."""
    for frames in range(frames_per_token, 100_000, frames_per_token):
        samples = frames * sampling_rate / fps
        if abs(samples - round(samples)) < 1e-6:
            return frames
    raise ValueError(f"fps {fps} and sampling_rate {sampling_rate} have no common frame grid")


def _snap(seconds: float, fps: float, align: int) -> int:
    """``seconds`` as a frame count rounded to a multiple of ``align`` frames."""
    return int(round(seconds * fps / align)) * align


class StreamingAnimator:
    """Animate audio that arrives in pieces (a microphone, a network stream) or a long file, window by window.

    Window ``k`` animates frames ``[k * hop, k * hop + chunk)`` (``hop = chunk - overlap``); over its first
    ``overlap`` frames it fades in while window ``k - 1`` fades out. After window ``k`` the frames before
    ``(k + 1) * hop`` are final and are returned. The last window (at :meth:`flush`) is run on up to one window
    of audio before it as left context, so a short remainder is animated with full context.

    A window may also hear audio it does not keep frames of: ``context_seconds`` before its first frame and
    ``lookahead_seconds`` after its last (the speech encoder and the bidirectional content branch use both; the
    causal motion decoder starts at the context's first step). :meth:`low_latency` builds the live setting.

    Window starts snap to a grid of whole motion tokens that are also whole samples (0.2 s at 30 fps and 16 kHz);
    a window shorter than that grid snaps to whole motion tokens only, and its audio starts at the nearest sample
    (at most half a sample, 31 us at 16 kHz, off the frame grid).

    Args:
        model: an ``ESARMSTAForGeneration`` (eval mode is set); ``None``: esarm's default model
            (:func:`esarm.default_model.load_default_model`, offline) with its processor.
        processor: an ``ESARMProcessor`` (speaker names, normalisation); ``None``: normalise, no speaker names.
        emotion, intensity, speaker: conditions (see :func:`resolve_condition_ids`).
        chunk_seconds: window length (s): the frames a window keeps. Longer windows give the model more context
            and cost more memory.
        overlap_seconds: cross-fade length between windows (s), shorter than ``chunk_seconds``.
        context_seconds: audio before a window's first frame that the model also hears (s, >= 0).
        lookahead_seconds: audio after a window's last frame that the model also hears (s, >= 0); it adds to the
            latency.
        epsilon, seed, do_sample, temperature, top_k, greedy_groups: passed to ``generate`` (window ``k`` uses
            ``seed + k``); ``do_sample=True, greedy_groups=["mouth"]`` decodes the lips greedily and samples the
            eyes and brows (blinks), docs/rl.md.
        sampling_rate: rate of the pushed audio (Hz, default: the model's); resampled to the model's rate.
        cpu_defaults: apply :data:`esarm.inference.CPU_INFERENCE_DEFAULTS` to the model (in place) when it runs
            on the CPU: fused attention and windows in the speech encoder, and int8 linear layers in encoders at
            least 256 wide (:func:`esarm.inference.apply_cpu_inference_defaults`; a no-op when already applied).
        phone_decode_seconds: for a model that hears phones (``audio_front_end`` with ``phones``): PocketSphinx
            decodes only the last ``phone_decode_seconds`` of each window's audio, and of those keeps the phones of
            the second half (the first half lets the decoder settle); the earlier frames keep the phones that the
            windows before decoded for them (:func:`esarm.phonetic.tail_phone_features`). ``None`` (the default):
            every window decodes all its audio, as the offline call does. A window without phones of the windows
            before it for those frames (the first) decodes all its audio. Either way with the model's
            ``config.phone_decoder_settings``.
    """

    def __init__(
        self,
        model: Any = None,
        processor: Any = None,
        emotion: str | int | None = "neutral",
        intensity: int | None = None,
        speaker: str | int | None = None,
        chunk_seconds: float = 10.0,
        overlap_seconds: float = 1.0,
        epsilon: float = 0.0,
        seed: int | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        greedy_groups: list[str] | None = None,
        sampling_rate: int | None = None,
        context_seconds: float = 0.0,
        lookahead_seconds: float = 0.0,
        cpu_defaults: bool = True,
        phone_decode_seconds: float | None = None,
    ):
        if chunk_seconds <= 0:
            raise ValueError(f"chunk_seconds must be > 0, got {chunk_seconds}")
        for name, value in (("context_seconds", context_seconds), ("lookahead_seconds", lookahead_seconds)):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0 seconds, got {value}")
        if phone_decode_seconds is not None and not phone_decode_seconds >= 2.0 / PHONE_FRAME_RATE:
            raise ValueError(f"phone_decode_seconds must be None or >= 0.02 seconds, got {phone_decode_seconds}")
        if model is None:
            model, processor = _default_model(processor)
        self.model = apply_cpu_inference_defaults(model.eval()) if cpu_defaults else model.eval()
        self.model_rate = int(model.config.sampling_rate)
        self.input_rate = int(sampling_rate or self.model_rate)
        self.fps = float(model.config.fps)
        frames_per_token = int(model.config.frames_per_token)
        align = _alignment_frames(self.fps, self.model_rate, frames_per_token)
        if chunk_seconds * self.fps < 1.5 * align:
            align = frames_per_token  # short windows (live use): whole motion tokens, nearest sample
        self.chunk_frames = max(align, _snap(chunk_seconds, self.fps, align))
        self.overlap_frames = _snap(overlap_seconds, self.fps, align)
        if overlap_seconds < 0 or self.overlap_frames >= self.chunk_frames:
            raise ValueError(
                f"overlap_seconds must be >= 0 and shorter than chunk_seconds ({chunk_seconds}), got {overlap_seconds}"
            )
        self.hop_frames = self.chunk_frames - self.overlap_frames
        self.context_frames = _snap(context_seconds, self.fps, align)
        self.lookahead_frames = int(math.ceil(lookahead_seconds * self.fps - 1e-9))
        speakers = list(getattr(processor, "speakers", None) or [])
        self.emotion_id, self.intensity_id, self.speaker_id = resolve_condition_ids(
            emotion, intensity, speaker, speakers
        )
        extractor = getattr(processor, "feature_extractor", None)
        self.normalize = bool(getattr(extractor, "do_normalize", True))
        self.generate_kwargs = dict(epsilon=epsilon, do_sample=do_sample, temperature=temperature, top_k=top_k)
        if greedy_groups is not None:
            self.generate_kwargs["greedy_groups"] = list(greedy_groups)
        self.seed = seed
        self._audio = np.zeros(0, np.float32)  # model-rate samples from sample _audio_start on
        self._audio_start = 0
        self._window = 0  # index of the next window
        self._emitted = 0  # frames returned so far
        self._pending: list[tuple[int, np.ndarray, np.ndarray]] = []  # (first frame, frames [n, 52], weights [n])
        self._finished = False
        hears_phones = getattr(self.model, "phones", None) is not None
        self.phone_decode_frames = (
            int(round(phone_decode_seconds * PHONE_FRAME_RATE)) if hears_phones and phone_decode_seconds else None
        )
        self.phone_settle_frames = None if self.phone_decode_frames is None else self.phone_decode_frames // 2
        self._phones: dict[int, np.ndarray] = {}  # stream's 10 ms frame -> phone features a window gave it
        # the windows' phones are decoded as the model decodes its own (PhoneFrontEnd): with the settings it was
        # trained on (a folder's code saved before configs held them has no field: the package's defaults)
        self.phone_decoder_settings = getattr(self.model.config, "phone_decoder_settings", None)

    @classmethod
    def low_latency(
        cls,
        model: Any = None,
        processor: Any = None,
        lookahead_seconds: float = 0.1,
        context_seconds: float = 2.0,
        **kwargs: Any,
    ) -> StreamingAnimator:
        """A live animator: windows of one motion token with ``context_seconds`` of audio before them and
        ``lookahead_seconds`` after them, no cross-fade.

        The latency is ``lookahead_seconds`` + one motion token (67 ms at 30 fps, 2 frames per token) + the compute
        of one window (``context_seconds + lookahead_seconds`` of audio, tens of ms for the tiny model on a CPU).
        ``kwargs`` go to the constructor (conditions, sampling, ``sampling_rate``; ``chunk_seconds`` and
        ``overlap_seconds`` may be given to trade latency for fewer, smoother windows). Give the emotion: with
        ``emotion="auto"`` it is heard in the first window, only one token plus the look-ahead of audio.

        A model that hears phones decodes only the last second of each window (``phone_decode_seconds=1.0``; pass
        ``None`` to decode all of it): PocketSphinx's decoding is most of a window's compute. For a random-init STA
        of ``configs/small_phonetic.yaml`` on one thread (``benchmarks/streaming_latency.py``, AMD EPYC, a loaded
        machine) the p95 latency in CPU time is 236 ms against 267 ms decoding all 2.17 s of each window; the phones
        of the frames a window animates then follow the real-speech set's labels at r 0.803 instead of 0.831
        (``benchmarks/streaming_phones.py``).
        """
        if model is None:
            model, processor = _default_model(processor)
        frames_per_token = int(model.config.frames_per_token)
        kwargs.setdefault("chunk_seconds", frames_per_token / float(model.config.fps))
        kwargs.setdefault("overlap_seconds", 0.0)
        kwargs.setdefault("phone_decode_seconds", 1.0)
        return cls(model, processor, context_seconds=context_seconds, lookahead_seconds=lookahead_seconds, **kwargs)

    def frame_to_sample(self, frame: int) -> int:
        """Sample (at the model's rate) where animation frame ``frame`` starts."""
        return int(round(frame * self.model_rate / self.fps))

    @property
    def latency_seconds(self) -> float:
        """Longest wait, in seconds of audio, between a frame's time and the arrival of the audio that makes it
        final: one window plus its look-ahead (``chunk_seconds + lookahead_seconds``). Add the compute time of one
        window for wall-clock latency."""
        return (self.chunk_frames + self.lookahead_frames) / self.fps

    @property
    def emotion(self) -> str | None:
        """The emotion in use (``None`` until the first window when ``emotion="auto"``)."""
        return None if self.emotion_id is None else EMOTIONS[self.emotion_id]

    def push(self, audio: np.ndarray) -> np.ndarray:
        """Add audio (mono, or (channels, samples), float at ``sampling_rate``) -> frames ``[n, 52]`` now final."""
        if self._finished:
            raise ValueError("push() after flush(): create a new StreamingAnimator for a new stream")
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim == 2:
            audio = audio.mean(axis=0)
        if audio.ndim != 1:
            raise ValueError(f"audio must be 1-D or 2-D (channels, samples), got shape {audio.shape}")
        finite = np.isfinite(audio)
        if not finite.all():
            raise ValueError(
                f"audio must be finite, got {int((~finite).sum())} NaN/inf samples (the first at sample "
                f"{int(np.argmin(finite))} of this piece)"
            )
        if self.input_rate != self.model_rate:
            # Piecewise resampling: pieces should be long compared with the filter (tens of ms or more).
            audio = resample(audio, self.input_rate, self.model_rate)
        self._audio = np.concatenate([self._audio, audio])
        while self._audio_start + len(self._audio) >= self.frame_to_sample(
            self._window * self.hop_frames + self.chunk_frames + self.lookahead_frames
        ):
            start = self._window * self.hop_frames
            context_start = max(0, start - self.context_frames)
            self._run_window(context_start, start, start + self.chunk_frames, self.lookahead_frames)
        return self._take(self._window * self.hop_frames if self._window else 0)

    def flush(self) -> np.ndarray:
        """End of the audio: animate what is left -> the remaining frames ``[n, 52]``."""
        if self._finished:
            return np.zeros((0, 52), np.float32)
        self._finished = True
        total_samples = self._audio_start + len(self._audio)
        total_frames = int(self.model.num_animation_frames(total_samples))
        start = self._window * self.hop_frames
        covered = (self._window - 1) * self.hop_frames + self.chunk_frames if self._window else 0
        if total_frames > covered:
            # Left context: up to one window (and the context) of audio before the remainder (kept in the buffer).
            context_start = max(
                self._audio_start_frame(), min(start, total_frames - self.chunk_frames) - self.context_frames, 0
            )
            self._run_window(context_start, start, total_frames)
        return self._take(total_frames)

    # ---- internals ---------------------------------------------------------------------------------------------

    def _audio_start_frame(self) -> int:
        return int(math.ceil(self._audio_start * self.fps / self.model_rate - 1e-9))

    def _run_window(self, context_start: int, start: int, end: int, lookahead: int = 0) -> None:
        """Animate frames ``[context_start, end + lookahead)`` and keep ``[start, end)`` as window ``self._window``."""
        import torch

        first = self.frame_to_sample(context_start) - self._audio_start
        audio = self._audio[first : self.frame_to_sample(end + lookahead) - self._audio_start]
        minimum = int(self.model.min_num_samples)
        if len(audio) < minimum:  # a remainder shorter than one frame of audio
            audio = np.pad(audio, (0, minimum - len(audio)))
        if self.normalize:
            audio = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
        phones = None
        if self.phone_decode_frames is not None:
            phones = torch.from_numpy(self.window_phone_features(audio, self.frame_to_sample(context_start)))[None]
        with torch.no_grad():
            output = self.model.generate(
                torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None],
                phone_features=phones,
                emotion_ids=None if self.emotion_id is None else torch.tensor([self.emotion_id]),
                intensity_ids=None if self.intensity_id is None else torch.tensor([self.intensity_id]),
                speaker_ids=torch.tensor([self.speaker_id]),
                emotion="auto",
                seed=None if self.seed is None else self.seed + self._window,
                **self.generate_kwargs,
            )
        if self.emotion_id is None:
            self.emotion_id = int(output.emotion_ids[0])  # heard in the first window, kept for the rest
        frames = output.blendshapes[0, start - context_start : end - context_start].detach().to("cpu", torch.float32)
        frames = frames.numpy()
        if len(frames) < end - start:  # padding of a very short remainder: hold the last frame
            frames = np.concatenate([frames, np.repeat(frames[-1:], end - start - len(frames), axis=0)])
        weights = np.ones(end - start, np.float32)
        if self._pending and self.overlap_frames:
            previous_start, _, previous_weights = self._pending[-1]
            shared = previous_start + len(previous_weights) - start  # frames both windows cover
            if shared > 0:
                fade = min(self.overlap_frames, shared, end - start)
                ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)  # raised cosine, 0 -> 1
                weights[:fade] = ramp
                offset = start - previous_start
                previous_weights[offset : offset + fade] = 1.0 - ramp
                previous_weights[offset + fade :] = 0.0
        self._pending.append((start, frames, weights))
        self._window += 1
        # Keep one window (and the context) of audio before the next window's start (left context).
        keep_from = self.frame_to_sample(
            max(0, self._window * self.hop_frames - self.chunk_frames - self.context_frames)
        )
        if keep_from > self._audio_start:
            self._audio = self._audio[keep_from - self._audio_start :]
            self._audio_start = keep_from

    def window_phone_features(self, audio: np.ndarray, first_sample: int) -> np.ndarray:
        """Phone features ``[len(audio) // 160 + 1, NUM_PHONE_FEATURES]`` of a window whose audio starts at the
        stream's sample ``first_sample``: the last ``phone_decode_seconds`` decoded, the frames before from the
        windows before (see the class docstring), remembered for the windows after."""
        num_frames = num_feature_frames(len(audio))
        # the stream's 10 ms frame nearest to each of the window's frames (window starts are whole animation frames,
        # not whole 10 ms frames: at most 5 ms apart)
        keys = (first_sample + PHONE_HOP * np.arange(num_frames) + PHONE_HOP // 2) // PHONE_HOP
        first = num_frames - 1 - self.phone_decode_frames  # decode from this frame on
        known = first + 1 + self.phone_settle_frames  # frames [0, known) from the windows before
        if first >= 1 and all(int(k) in self._phones for k in keys[:known]):
            tail = tail_phone_features(audio, first, self.phone_decoder_settings)[known - first - 1 :]
            features = np.concatenate([np.stack([self._phones[int(k)] for k in keys[:known]]), tail])
            fresh = range(known, num_frames)
        else:
            features = phone_features(audio, self.phone_decoder_settings)
            fresh = range(num_frames)
        for index in fresh:
            self._phones[int(keys[index])] = features[index]
        for key in [k for k in self._phones if k < keys[0]]:  # frames no later window hears
            del self._phones[key]
        return features

    def _take(self, final_before: int) -> np.ndarray:
        """Blend the pending windows and return frames ``[emitted, final_before)``."""
        if final_before <= self._emitted or not self._pending:
            return np.zeros((0, 52), np.float32)
        length = final_before - self._emitted
        numerator = np.zeros((length, 52), np.float64)
        denominator = np.zeros(length, np.float64)
        for start, values, weights in self._pending:
            lo, hi = max(start, self._emitted), min(start + len(weights), final_before)
            if hi > lo:
                numerator[lo - self._emitted : hi - self._emitted] += (
                    values[lo - start : hi - start] * weights[lo - start : hi - start, None]
                )
                denominator[lo - self._emitted : hi - self._emitted] += weights[lo - start : hi - start]
        result = (numerator / np.maximum(denominator, 1e-12)[:, None]).astype(np.float32)
        self._emitted = final_before
        self._pending = [p for p in self._pending if p[0] + len(p[2]) > self._emitted]
        return result


def animate_audio(
    model: Any,
    audio: np.ndarray,
    sampling_rate: int | None = None,
    processor: Any = None,
    emotion: str | int | None = "neutral",
    intensity: int | None = None,
    speaker: str | int | None = None,
    chunk_seconds: float = 10.0,
    overlap_seconds: float = 1.0,
    epsilon: float = 0.0,
    seed: int | None = None,
    progress: bool = False,
    context_seconds: float = 0.0,
    lookahead_seconds: float = 0.0,
    cpu_defaults: bool = True,
    **generate_kwargs: Any,
) -> AnimationResult:
    """Animate a whole waveform of any length -> :class:`AnimationResult` (``round(seconds * fps)`` frames).
    ``model=None`` animates with esarm's default model (see :class:`StreamingAnimator`).

    Audio no longer than ``chunk_seconds`` is animated in one pass; longer audio window by window (module
    docstring). ``audio`` is mono (or (channels, samples)) float at ``sampling_rate`` (default: the model's).
    ``context_seconds`` and ``lookahead_seconds``: extra audio each window hears, ``cpu_defaults``: the CPU
    inference levers (see :class:`StreamingAnimator`).
    """
    animator = StreamingAnimator(
        model, processor, emotion=emotion, intensity=intensity, speaker=speaker, chunk_seconds=chunk_seconds,
        overlap_seconds=overlap_seconds, epsilon=epsilon, seed=seed, sampling_rate=sampling_rate,
        context_seconds=context_seconds, lookahead_seconds=lookahead_seconds, cpu_defaults=cpu_defaults,
        **generate_kwargs,
    )  # fmt: skip
    audio = np.asarray(audio, dtype=np.float32)
    step = max(1, int(round(animator.hop_frames / animator.fps * animator.input_rate)))  # one hop of input audio
    pieces = []
    starts = range(0, audio.shape[-1], step)
    iterator = starts
    if progress and len(starts) > 1:
        iterator = tqdm(starts, desc="animating", unit="window")
    for begin in iterator:
        pieces.append(animator.push(audio[..., begin : begin + step]))
    pieces.append(animator.flush())
    emotion_name = EMOTIONS[animator.emotion_id] if animator.emotion_id is not None else "neutral"
    return AnimationResult(np.concatenate(pieces, axis=0), animator.fps, emotion_name)
