"""Lip-sync baselines: mouths that need no model of this package, to stand beside it (:mod:`esarm.evaluation.lipsync`).

- :class:`LogMelProbe`: a linear probe from log-mel frames to the 52 blendshapes, fitted on a training split (can a
  linear map of speaker-normalised spectra follow the mouth?).
- :func:`phone_rules_jaw`: the phone-recogniser rules animator, what Rhubarb Lip Sync does. PocketSphinx recognises
  phones with no transcript (:func:`esarm.data.sphinx.recognise_phones`: allphone mode, its phonetic language model,
  :data:`esarm.phonetic.DECODER_SETTINGS`); each recognised phone opens the jaw by its graded openness
  (:func:`esarm.data.phones.openness_curve`: the reference curve of the measures, computed on recognised phones).
- :func:`ulipsync_jaw`: uLipSync (PyPI ``pylipsync``, MIT), an outside peer. It scores every frame's MFCCs against
  templates of five vowels and silence; the jaw is the sum of those scores weighted by each vowel's graded openness
  (A open; E, O mid; I, U close).

The phone rules need PocketSphinx (a dependency of esarm), uLipSync the optional extra ``esarm[lipsync]``; without
either, its function raises ``ImportError`` naming the install command, and :func:`baseline_mouths` leaves its row
out with a logged warning.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ..data import sphinx
from ..data.phones import OPENNESS, openness_curve
from ..data.schema import decode_audio_value

logger = logging.getLogger(__name__)


def row_audio(row: dict[str, Any]) -> np.ndarray:
    """A clip's float32 samples at its ``sampling_rate``, whatever the layout of its ``audio`` column."""
    return decode_audio_value(row["audio"], int(row["sampling_rate"]))


# ---------------------------------------------------------------------------------------------------------------------
# Log-mel probe


def mel_filter_bank(num_bands: int, n_fft: int, sampling_rate: int, low_hz: float = 20.0, high_hz: float | None = None):
    """Triangular filters on the HTK mel scale, float64 ``[n_fft // 2 + 1, num_bands]`` (peak 1 each)."""
    high_hz = high_hz or sampling_rate / 2

    def mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    edges_mel = np.linspace(mel(low_hz), mel(high_hz), num_bands + 2)
    edges = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)
    bins = np.linspace(0, sampling_rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - lower) / (centre - lower)
    falling = (upper - bins[None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).T


def log_mel(
    audio: Any, sampling_rate: int, num_frames: int, fps: float, num_bands: int = 40, window_s: float = 0.025
) -> np.ndarray:
    """Per-utterance-normalised log-mel energies at each animation frame centre, float64 ``[num_frames, num_bands]``.

    A Hann window of ``window_s`` centred on ``(k + 0.5) / fps``; each band is then shifted and scaled to zero mean
    and unit variance over the utterance, which removes most of a voice's and a channel's spectral tilt.
    """
    audio = np.asarray(audio, np.float64).reshape(-1)
    window = int(round(window_s * sampling_rate))
    n_fft = 1 << (window - 1).bit_length()
    centres = np.round((np.arange(num_frames) + 0.5) / fps * sampling_rate).astype(np.int64)
    padded = np.pad(audio, (window, window))
    index = centres[:, None] + np.arange(window)[None] - window // 2 + window  # [T, window]
    index = np.clip(index, 0, len(padded) - 1)
    spectrum = np.abs(np.fft.rfft(padded[index] * np.hanning(window)[None], n=n_fft, axis=1)) ** 2
    mel = np.log(spectrum @ mel_filter_bank(num_bands, n_fft, sampling_rate) + 1e-10)
    return (mel - mel.mean(axis=0)) / (mel.std(axis=0) + 1e-6)


def stack_context(features: np.ndarray, context: int = 3) -> np.ndarray:
    """Each frame's features beside those of its ``context`` neighbours on each side (edges repeated):
    ``[T, F]`` -> ``[T, (2 * context + 1) * F]``."""
    features = np.asarray(features)
    padded = np.pad(features, ((context, context), (0, 0)), mode="edge")
    return np.concatenate([padded[k : k + len(features)] for k in range(2 * context + 1)], axis=1)


class LogMelProbe:
    """A linear probe: ridge regression from log-mel frames (+-``context``) to the 52 blendshapes.

    The issue it answers: can a linear map of speaker-normalised spectra follow the mouth on unseen voices? Its
    ``jawOpen`` is the baseline of the lip-sync table; all 52 outputs are fitted (at no extra cost) so that the lip
    aperture can be measured on the rig too.

    Args:
        num_bands: mel bands (:func:`log_mel`).
        context: frames of context on each side (:func:`stack_context`).
        alpha: ridge penalty (on the weights, not the bias); with ~10^4 training frames of unit-variance features
            the fit is insensitive to it between 1 and 100.
    """

    def __init__(self, num_bands: int = 40, context: int = 3, alpha: float = 10.0) -> None:
        if num_bands < 1 or context < 0 or alpha < 0:
            raise ValueError(
                f"num_bands >= 1, context >= 0 and alpha >= 0 expected, got {num_bands}, {context}, {alpha}"
            )
        self.num_bands, self.context, self.alpha = num_bands, context, alpha
        self.weights: np.ndarray | None = None  # [features + 1, 52]

    def features(self, audio: Any, sampling_rate: int, num_frames: int, fps: float) -> np.ndarray:
        """Design matrix ``[num_frames, (2 * context + 1) * num_bands + 1]`` (last column: bias)."""
        stacked = stack_context(log_mel(audio, sampling_rate, num_frames, fps, self.num_bands), self.context)
        return np.concatenate([stacked, np.ones((num_frames, 1))], axis=1)

    def fit(self, rows: Iterable[dict[str, Any]]) -> LogMelProbe:
        """Fit on rows of the clip schema (``audio``, ``sampling_rate``, ``blendshapes``, ``fps``)."""
        gram, cross, frames = None, None, 0
        for row in rows:
            target = np.asarray(row["blendshapes"], np.float64)
            x = self.features(row_audio(row), int(row["sampling_rate"]), len(target), float(row["fps"]))
            gram = x.T @ x if gram is None else gram + x.T @ x
            cross = x.T @ target if cross is None else cross + x.T @ target
            frames += len(target)
        if gram is None:
            raise ValueError("rows must hold at least one clip to fit the probe, got none")
        penalty = self.alpha * np.eye(len(gram))
        penalty[-1, -1] = 0.0
        self.weights = np.linalg.solve(gram + penalty, cross)
        logger.info("fitted the log-mel probe on %d frames", frames)
        return self

    def predict(self, audio: Any, sampling_rate: int, num_frames: int, fps: float) -> np.ndarray:
        """Blendshapes ``[num_frames, 52]`` (clipped to [0, 1]) for one clip."""
        if self.weights is None:
            raise RuntimeError("the probe must be fitted (LogMelProbe.fit) before predict")
        return np.clip(self.features(audio, sampling_rate, num_frames, fps) @ self.weights, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------------------------------
# Mouths from recognised phones and from uLipSync


def phone_rules_jaw(audio: Any, sampling_rate: int, num_frames: int, fps: float) -> np.ndarray:
    """The phone-rules animator's jaw ``[num_frames]`` in [0, 1]: the graded openness of the phones PocketSphinx
    recognises (smoothed over 3 frames, as the reference curve).

    Raises:
        ImportError: ``pocketsphinx`` is not installed.
    """
    phones, starts = sphinx.recognise_phones(audio, sampling_rate)
    duration = len(np.asarray(audio).reshape(-1)) / float(sampling_rate)
    return openness_curve(sphinx.to_ipa(phones), starts, duration, fps, num_frames).astype(np.float64)


ULIPSYNC_OPENNESS = {
    "aa": OPENNESS["open"], "ee": OPENNESS["mid"], "oh": OPENNESS["mid"], "ih": OPENNESS["close"],
    "ou": OPENNESS["close"], "silence": OPENNESS["pause"],
}  # fmt: skip
"""The graded openness of uLipSync's phonemes (its templates: Japanese A, E, O, I, U and silence)."""


@functools.lru_cache(maxsize=1)
def _ulipsync_analyzer():
    try:
        from pylipsync import PhonemeAnalyzer
    except ImportError as error:
        raise ImportError(
            "uLipSync is not installed: install the optional extra with `pip install 'esarm[lipsync]'` "
            "(or `pip install pylipsync`)"
        ) from error
    return PhonemeAnalyzer()


def ulipsync_jaw(audio: Any, sampling_rate: int, num_frames: int, fps: float) -> np.ndarray:
    """uLipSync's jaw ``[num_frames]``: per analysis frame, the sum of its phoneme scores (already scaled by its
    loudness) weighted by :data:`ULIPSYNC_OPENNESS`, interpolated onto the frame centres ``(k + 0.5) / fps``.

    uLipSync analyses at a whole number of frames per second (``round(fps)``), with its default 64 ms window.

    Raises:
        ImportError: ``pylipsync`` is not installed (the ``esarm[lipsync]`` extra).
    """
    analyzer = _ulipsync_analyzer()
    samples = np.asarray(audio, np.float32).reshape(-1)
    segments = analyzer.extract_phoneme_segments(samples, int(sampling_rate), fps=int(round(fps)), return_seconds=True)
    centres = np.array([(s.start + s.end) / 2 for s in segments])
    values = np.array([sum(float(p.target) * ULIPSYNC_OPENNESS[p.name] for p in s.phonemes) for s in segments])
    return np.interp((np.arange(num_frames) + 0.5) / fps, centres, values)


BASELINES: dict[str, Callable[[Any, int, int, float], np.ndarray]] = {
    "phone rules": phone_rules_jaw,
    "uLipSync": ulipsync_jaw,
}
"""The jaw-only baselines by source name: ``f(audio, sampling_rate, num_frames, fps) -> [num_frames]``."""


def baseline_mouths(
    rows: Sequence[dict[str, Any]], num_frames: Sequence[int], names: Iterable[str] = tuple(BASELINES)
) -> dict[str, list[np.ndarray]]:
    """``{name: one jaw curve per row}`` for the baselines in ``names``, for
    :func:`~esarm.evaluation.lipsync.lipsync_table`'s ``baselines``. A baseline whose package is missing is left
    out with a warning that names the extra to install."""
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(f"names must be among {list(BASELINES)}, got {unknown}")
    mouths = {}
    for name in names:
        try:
            mouths[name] = [
                BASELINES[name](row_audio(r), int(r["sampling_rate"]), n, float(r["fps"]))
                for r, n in zip(rows, num_frames)
            ]
        except ImportError as error:
            logger.warning("lip sync: left out the %s baseline: %s", name, error)
    return mouths


__all__ = [
    "BASELINES", "LogMelProbe", "ULIPSYNC_OPENNESS", "baseline_mouths", "log_mel", "mel_filter_bank",
    "phone_rules_jaw", "row_audio", "stack_context", "ulipsync_jaw",
]  # fmt: skip
