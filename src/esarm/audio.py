"""Audio input: load files (wav/flac/ogg with soundfile, m4a/mp3/mp4/anything else with PyAV), downmix to mono,
resample (scipy ``resample_poly``) and validate.

Every function returns float32 mono samples ``[samples]`` at ``target_rate`` Hz (16 kHz for the speech encoders).
Multi-channel arrays are ``(channels, samples)``, as transformers' audio feature extractors expect.

scipy, soundfile and PyAV are optional here, because this module travels with every saved model folder
(``trust_remote_code``) and should run with numpy alone: without scipy, resampling uses a numpy port of
``resample_poly`` (same Kaiser-windowed filter, outputs equal to float32 rounding); without soundfile, PCM WAV
files are read with the standard library's ``wave``; other formats need soundfile or PyAV, and the error says so.
"""

from __future__ import annotations

import logging
import math
import os
import wave
from pathlib import Path

import numpy as np
from transformers.utils import is_av_available, is_scipy_available, is_soundfile_available

logger = logging.getLogger(__name__)

TARGET_SAMPLING_RATE = 16000
MAX_CHANNELS = 16

__all__ = [
    "TARGET_SAMPLING_RATE",
    "check_duration",
    "load_audio",
    "min_samples",
    "read_audio_file",
    "resample",
    "resample_polyphase",
    "to_mono",
    "validate_audio",
]


def min_samples(sampling_rate: int, fps: float) -> int:
    """Shortest audio that can be animated, in samples at ``sampling_rate``: one animation frame at ``fps``
    (534 samples at 16 kHz and 30 fps)."""
    return math.ceil(sampling_rate / fps)


def check_duration(audio: np.ndarray, sampling_rate: int, fps: float, argument: str = "audio") -> np.ndarray:
    """Return ``audio`` (``[samples]`` at ``sampling_rate``) if it lasts at least one animation frame at ``fps``;
    raise ``ValueError`` naming ``argument``, the minimum and the length otherwise. The processor and the CLI
    apply this one rule."""
    shortest = min_samples(sampling_rate, fps)
    if audio.shape[-1] < shortest:
        raise ValueError(
            f"{argument} must be at least one animation frame long ({shortest} samples = 1/{fps:g} s at "
            f"{sampling_rate} Hz), got {audio.shape[-1]} samples"
        )
    return audio


def validate_audio(audio, argument: str = "audio") -> np.ndarray:
    """Check that ``audio`` is a non-empty, finite, numeric 1-D ``[samples]`` or 2-D ``(channels, samples)`` array.

    Returns it as a float32 numpy array; raises ``ValueError`` naming ``argument``, the expectation and the value.
    """
    if hasattr(audio, "detach"):  # torch tensor
        audio = audio.detach().cpu().numpy()
    try:
        array = np.asarray(audio)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{argument} must be an array of samples, got {type(audio).__name__}: {error}") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"{argument} must be a numeric array of samples, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise ValueError(f"{argument} must be real-valued samples, got dtype {array.dtype}")
    if array.ndim not in (1, 2):
        raise ValueError(f"{argument} must be 1-D or 2-D (channels, samples), got shape {array.shape}")
    if array.ndim == 2 and array.shape[0] > MAX_CHANNELS:
        raise ValueError(
            f"{argument} must be 2-D (channels, samples) with at most {MAX_CHANNELS} channels, got shape "
            f"{array.shape} (transpose a (samples, channels) array)"
        )
    if array.size == 0 or array.shape[-1] == 0:
        raise ValueError(f"{argument} must hold at least one sample, got shape {array.shape}")
    if np.issubdtype(array.dtype, np.unsignedinteger):
        # unsigned PCM (8-bit WAV) is offset by half its range: silence is 128 for uint8
        midpoint = (float(np.iinfo(array.dtype).max) + 1.0) / 2.0
        array = (array.astype(np.float64) - midpoint) / midpoint
    elif np.issubdtype(array.dtype, np.integer):
        # signed PCM integers -> [-1, 1]
        array = array.astype(np.float64) / float(-np.iinfo(array.dtype).min)
    array = array.astype(np.float32, copy=False)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{argument} must be finite, got {int((~np.isfinite(array)).sum())} NaN/inf samples")
    return array


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average the channels of ``(channels, samples)`` audio; 1-D audio is returned unchanged."""
    return audio if audio.ndim == 1 else audio.mean(axis=0, dtype=np.float32)


def resample(audio: np.ndarray, from_rate: int | float, to_rate: int | float) -> np.ndarray:
    """Resample ``audio`` (``[samples]`` or ``(channels, samples)``) from ``from_rate`` to ``to_rate`` Hz.

    Polyphase filtering with the reduced ratio of the two rates: ``scipy.signal.resample_poly`` when scipy is
    installed, else :func:`resample_polyphase` (the same filter in numpy); float32 out.
    """
    for name, rate in (("from_rate", from_rate), ("to_rate", to_rate)):
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) or not rate > 0:
            raise ValueError(f"{name} must be a positive sampling rate in Hz, got {rate!r}")
        if float(rate) != int(rate):
            raise ValueError(f"{name} must be a whole number of Hz, got {rate!r}")
    from_rate, to_rate = int(from_rate), int(to_rate)
    audio = np.asarray(audio, dtype=np.float32)
    if from_rate == to_rate:
        return audio
    divisor = math.gcd(from_rate, to_rate)
    up, down = to_rate // divisor, from_rate // divisor
    if is_scipy_available():
        from scipy.signal import resample_poly

        return resample_poly(audio, up, down, axis=-1).astype(np.float32)
    return resample_polyphase(audio, up, down)


def resample_polyphase(audio: np.ndarray, up: int, down: int) -> np.ndarray:
    """``scipy.signal.resample_poly(audio, up, down, axis=-1)`` in numpy: upsample by ``up``, low-pass, keep every
    ``down``-th sample, computed one filter phase at a time (memory: a few output-sized arrays).

    The filter is scipy's default: ``2 * 10 * max(up, down) + 1`` taps of a sinc with cutoff ``1 / max(up, down)``
    (of Nyquist) under a Kaiser window (beta 5), normalised to unit DC gain times ``up``; output ``m`` is centred
    on input time ``m * down / up``, so ``ceil(samples * up / down)`` samples come out, aligned as scipy's.
    """
    audio = np.asarray(audio, dtype=np.float64)
    max_rate = max(up, down)
    half_len = 10 * max_rate
    taps = np.arange(-half_len, half_len + 1)
    cutoff = 1.0 / max_rate
    kernel = cutoff * np.sinc(cutoff * taps) * np.kaiser(2 * half_len + 1, 5.0)
    kernel *= up / kernel.sum()
    num_in = audio.shape[-1]
    num_out = -(-num_in * up // down)
    # y[m] = sum_j x[j] * kernel[m * down - j * up + half_len]: the upsampled signal filtered at position m * down.
    position = np.arange(num_out) * down + half_len
    newest = position // up  # latest input sample under the kernel (kernel index position % up)
    out = np.zeros((*audio.shape[:-1], num_out))
    for back in range(-(-(2 * half_len + 1) // up) + 1):
        source = newest - back
        index = position - source * up
        valid = (source >= 0) & (source < num_in) & (index <= 2 * half_len)
        weights = np.where(valid, kernel[np.minimum(index, 2 * half_len)], 0.0)
        out += weights * audio[..., np.clip(source, 0, num_in - 1)]
    return out.astype(np.float32)


def _read_wave(path: Path) -> tuple[np.ndarray, int]:
    """PCM WAV (8, 16, 24 or 32 bit) with the standard library: the reader that needs no package."""
    with wave.open(str(path), "rb") as handle:
        channels, width, rate = handle.getnchannels(), handle.getsampwidth(), handle.getframerate()
        raw = handle.readframes(handle.getnframes())
    if width == 1:  # unsigned 8 bit
        samples = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 3:  # little-endian 24 bit: widen to 32 bit
        triples = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        widened = np.zeros((len(triples), 4), np.uint8)
        widened[:, 1:] = triples
        samples = widened.view("<i4").ravel().astype(np.float32) / 2.0**31
    else:
        samples = np.frombuffer(raw, {2: "<i2", 4: "<i4"}[width]).astype(np.float32) / float(2 ** (8 * width - 1))
    return samples.reshape(-1, channels).T, int(rate)


def _read_pyav(av, path: Path) -> tuple[np.ndarray, int]:
    try:
        return _decode_pyav(av, path)
    except av.FFmpegError as error:
        raise ValueError(
            f"path {str(path)!r} must be an audio file soundfile or PyAV can decode, got {type(error).__name__}: {error}"
        ) from error


def _decode_pyav(av, path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"path {str(path)!r} must contain an audio stream, got none")
        stream = container.streams.audio[0]
        # Planar float32 keeps each channel contiguous: frame.to_ndarray() is (channels, samples).
        resampler = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=stream.rate)
        chunks = []
        for frame in container.decode(stream):
            for converted in resampler.resample(frame):
                chunks.append(converted.to_ndarray())
        for converted in resampler.resample(None):  # flush
            chunks.append(converted.to_ndarray())
        rate = int(stream.rate)
    if not chunks:
        raise ValueError(f"path {str(path)!r} must contain audio samples, got an empty stream")
    return np.concatenate(chunks, axis=-1).astype(np.float32), rate


def read_audio_file(path: Path) -> tuple[np.ndarray, int]:
    """Samples ``(channels, samples)`` and rate of an audio file: soundfile, else ``wave`` (PCM WAV), else PyAV."""
    if is_soundfile_available():
        import soundfile

        try:
            data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (samples, channels)
            return data.T, int(rate)
        except Exception as error:  # libsndfile does not read m4a / mp4 / some mp3: fall back to FFmpeg
            logger.debug("soundfile could not read %s (%s); trying wave and PyAV", path, error)
    try:
        return _read_wave(path)
    except (wave.Error, EOFError, KeyError) as error:  # not PCM WAV (KeyError: an unsupported sample width)
        logger.debug("wave could not read %s (%s); trying PyAV", path, error)
    if is_av_available():
        import av

        return _read_pyav(av, path)
    raise ImportError(
        f"reading {str(path)!r} needs soundfile (wav, flac, ogg) or PyAV (mp3, m4a, mp4, ...), and neither is "
        "installed: pip install soundfile av, or pass the samples as an array with their sampling_rate"
    )


def load_audio(
    path_or_array,
    sampling_rate: int | None = None,
    target_rate: int = TARGET_SAMPLING_RATE,
) -> np.ndarray:
    """Load audio as float32 mono samples ``[samples]`` at ``target_rate`` Hz.

    Args:
        path_or_array: A file path (wav, flac, ogg, ... read with soundfile; m4a, mp3, mp4 and anything soundfile
            cannot read decoded with PyAV) or an array / tensor ``[samples]`` or ``(channels, samples)``.
        sampling_rate: Rate of an array input in Hz (assumed to be ``target_rate`` when omitted, with a warning).
            Files carry their own rate; a value given with a path must match it.
        target_rate: Output rate in Hz.

    Returns:
        ``np.float32`` array ``[samples]``.
    """
    if isinstance(path_or_array, (str, os.PathLike)):
        path = Path(path_or_array)
        if path.is_dir():
            raise ValueError(f"path {str(path)!r} must be an audio file, got a folder")
        if not path.is_file():
            raise FileNotFoundError(f"audio file {str(path)!r} does not exist")
        audio, rate = read_audio_file(path)
        if sampling_rate is not None and int(sampling_rate) != rate:
            raise ValueError(
                f"sampling_rate must match the file's rate ({rate} Hz) for {str(path)!r}, got {sampling_rate}"
            )
        audio = validate_audio(audio, argument=f"audio in {str(path)!r}")
    else:
        audio = validate_audio(path_or_array)
        if sampling_rate is None:
            logger.warning(
                "No sampling_rate given for an audio array: assuming %d Hz. Pass sampling_rate to avoid silent errors.",
                target_rate,
            )
            rate = target_rate
        else:
            rate = sampling_rate
    return resample(to_mono(audio), rate, target_rate)
