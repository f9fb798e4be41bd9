"""Phone features per audio frame from PocketSphinx, a phone recogniser trained on real speech.

The CPU presets' audio front ends (log-mel frames, a random-init WavLM) learn only from the synthetic corpus, so the
mouth follows real people's speech no better than a loudness meter. PocketSphinx (PyPI ``pocketsphinx``, BSD) ships
an American English acoustic model trained on recordings of real people; in *allphone* mode, with its phonetic
language model ``en-us-phone.lm.bin``, it recognises phones without a transcript. Those phones carry knowledge of
real speech into the model.

:func:`phone_features` turns one clip into a ``[num_frames, NUM_PHONE_FEATURES]`` float32 matrix on the log-mel
front end's grid (100 frames per second, ``samples // 160 + 1`` frames): a one-hot column per phone of
:data:`PHONES` (fillers and noise count as ``SIL``) and, last, the recognised segment's acoustic score per frame
(:func:`segment_score`). :func:`batch_phone_features` does it for a padded batch, as the STA model calls it.

The decoder's allphone search gives phone segments with scores, but no lattice (``Decoder.get_lattice()`` is
``None`` after an allphone utterance), so there are no soft phone posteriors to take.

The decoder is built once per process (about 0.3 s, the acoustic model's load) and reused.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "DECODER_SETTINGS",
    "DECODER_SETTING_NAMES",
    "FEATURES_VERSION",
    "FRAME_RATE",
    "NUM_PHONE_FEATURES",
    "PHONES",
    "PhoneSegment",
    "batch_phone_features",
    "decoder_settings",
    "phone_features",
    "padded_phone_features",
    "recognize_phones",
    "require_pocketsphinx",
    "segments_to_features",
    "tail_phone_features",
]

PHONES: tuple[str, ...] = (
    "SIL", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY",
    "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH",
)  # fmt: skip
"""The 39 ARPAbet phones of PocketSphinx's en-us acoustic model and silence, in feature-column order."""

NUM_PHONE_FEATURES = len(PHONES) + 1
"""Columns of :func:`phone_features`: one per phone, then the acoustic score."""

FRAME_RATE = 100
"""Feature frames per second: PocketSphinx's 10 ms frame shift, also the log-mel front end's."""

HOP_LENGTH = 160
"""Samples per feature frame at 16 kHz."""

SAMPLING_RATE = 16000

DECODER_SETTINGS: dict[str, Any] = {"lw": 0.5, "beam": 1e-5, "pbeam": 1e-5}
"""Allphone decoder settings: the phonetic language model's weight 0.5 and beams of 1e-5, chosen by
``python benchmarks/phonetic_beam.py`` (AMD EPYC, 1 thread, settings measured side by side on a shared machine):

- against the earlier ``lw 2.0, beam = pbeam = 1e-20`` they decode in 0.027 of real time instead of 0.044, and the
  recognised phones' graded openness follows the real-speech set's phone labels at r 0.820 instead of 0.806
  (closure 0.381 / 0.387, rest 0.052 / 0.048; with white noise at 20 dB r 0.774 / 0.752; eSpeak NG validation clips
  r 0.654 / 0.641, closure there 0.586 / 0.561); the loudness envelope scores 0.644 on the real-speech set
  (``benchmarks/real_speech_lipsync.py``);
- a lighter language model keeps narrow beams safe: at ``lw 2.0`` r falls to 0.767 at 1e-10 and 0.27 at 1e-5, at
  ``lw 0.5`` it holds 0.816 at 1e-4 (0.021 of real time) and falls to 0.780 at 1e-3; 1e-5 keeps a decade of
  margin from that edge;
- the cost: with noise at 10 dB r is 0.645 against 0.687 (every ``lw`` below 2 loses there, 0.65 at 1e-20).
"""

DECODER_SETTING_NAMES: tuple[str, ...] = ("lw", "beam", "pbeam")
"""The settings PocketSphinx's allphone search reads when it has a phonetic language model: ``lw`` (the language
model's weight) and the two pruning beams ``beam`` (HMM states) and ``pbeam`` (phone exits); a model's
``phone_decoder_settings`` names all three, so that its features do not depend on the installed defaults."""

SCORE_SCALE = 0.1
"""Scale of the per-frame acoustic score column: PocketSphinx's log-base-1.0001 segment scores per frame, relative to
the best senone of each frame, lie mostly within -50..+5 on speech, so this puts them in about -5..0.5."""

FEATURES_VERSION = 1
"""Version of the feature computation: raise it with any change that changes the features (cached columns carry it
in their fingerprint)."""

INSTALL_HINT = (
    "PocketSphinx is not installed: esarm's phonetic audio front end, phone aligner and phone recogniser need it "
    "(PyPI, BSD): pip install pocketsphinx"
)

_FILLERS = frozenset({"+NSN+", "+SPN+", "<sil>", "<s>", "</s>", "[NOISE]", "+NOISE+", "+BREATH+"})
_PHONE_IDS = {phone: index for index, phone in enumerate(PHONES)}
_decoders: dict[tuple, Any] = {}  # (process id, settings) -> decoder (a forked worker builds its own)


@dataclass(frozen=True)
class PhoneSegment:
    """A recognised phone: ``phone`` (one of :data:`PHONES`), its frames ``[start, end]`` (inclusive, 10 ms
    frames of PocketSphinx) and its acoustic ``score`` (log base 1.0001, summed over its frames)."""

    phone: str
    start: int
    end: int
    score: float


def require_pocketsphinx():
    """The ``pocketsphinx`` module; ``ImportError`` with :data:`INSTALL_HINT` when it is not installed."""
    try:
        import pocketsphinx
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    return pocketsphinx


def decoder_settings(settings: dict[str, Any] | None = None, argument: str = "settings") -> dict[str, float]:
    """``settings`` checked, as a new dict of floats in :data:`DECODER_SETTING_NAMES` order (equal settings give
    equal dicts, hence one dataset cache): ``None`` gives :data:`DECODER_SETTINGS` (as they are now); otherwise
    exactly the keys of :data:`DECODER_SETTING_NAMES`, ``lw > 0`` and the beams in (0, 1] (a beam is a probability
    ratio: above 1 it prunes every path). A ``ValueError`` names ``argument``, the expected and the given value."""
    if settings is None:
        settings = DECODER_SETTINGS
    if not isinstance(settings, dict) or set(settings) != set(DECODER_SETTING_NAMES):
        given = sorted(map(str, settings)) if isinstance(settings, dict) else settings
        raise ValueError(
            f"{argument} must be None or a dict with exactly the keys {list(DECODER_SETTING_NAMES)} (PocketSphinx "
            f"allphone settings, e.g. {DECODER_SETTINGS}), got {'keys ' if isinstance(settings, dict) else ''}{given!r}"
        )
    checked = {}
    for name in DECODER_SETTING_NAMES:
        value = settings[name]
        upper = math.inf if name == "lw" else 1.0
        number = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        if not number or not 0 < value <= upper:
            expected = "a finite number > 0" if name == "lw" else "a number in (0, 1]"
            raise ValueError(f"{argument}[{name!r}] must be {expected}, got {value!r}")
        checked[name] = float(value)
    return checked


def _decoder(settings: dict[str, Any] | None = None):
    settings = DECODER_SETTINGS if settings is None else settings
    key = (os.getpid(), tuple(sorted(settings.items())))
    decoder = _decoders.get(key)
    if decoder is None:
        pocketsphinx = require_pocketsphinx()
        model = os.path.join(pocketsphinx.get_model_path(), "en-us")
        decoder = pocketsphinx.Decoder(
            hmm=os.path.join(model, "en-us"),
            allphone=os.path.join(model, "en-us-phone.lm.bin"),
            loglevel="FATAL",
            **settings,
        )
        _decoders[key] = decoder
    return decoder


def _pcm(samples: np.ndarray) -> bytes:
    """16-bit PCM of zero-mean audio scaled to a standard deviation of 0.1 of full scale (-20 dBFS): the same bytes
    whether the clip arrives raw (the corpus) or normalised (the processor's ``input_values``)."""
    samples = np.asarray(samples, np.float64)
    centred = samples - samples.mean()
    scale = 0.1 / math.sqrt(float(centred.var()) + 1e-12) if centred.var() > 0 else 0.0
    return (np.clip(centred * scale, -1.0, 1.0) * 32767.0).round().astype(np.int16).tobytes()


def recognize_phones(samples: np.ndarray, settings: dict[str, Any] | None = None) -> list[PhoneSegment]:
    """Phone segments of one mono 16 kHz clip (PocketSphinx allphone decoding of the whole clip), with the
    decoder ``settings`` (default :data:`DECODER_SETTINGS`; one decoder per process and settings)."""
    return _recognize_pcm(_pcm(samples), settings)


def _recognize_pcm(pcm: bytes, settings: dict[str, Any] | None) -> list[PhoneSegment]:
    decoder = _decoder(settings)
    # PocketSphinx carries feature state (cepstral mean) from one utterance to the next, so without this reset a clip's
    # phones depend on the clip decoded before it (on the ALSA test voices one clip in four changed a phone)
    decoder.reinit_feat()
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    logmath = decoder.logmath
    segments = []
    for segment in decoder.seg():
        phone = "SIL" if segment.word in _FILLERS else segment.word
        if phone not in _PHONE_IDS:
            raise ValueError(f"PocketSphinx returned a phone outside PHONES: {segment.word!r}")
        score = float(logmath.log(segment.ascore)) if segment.ascore > 0 else -math.inf
        segments.append(PhoneSegment(phone, int(segment.start_frame), int(segment.end_frame), score))
    return segments


def num_feature_frames(num_samples: int) -> int:
    """Feature frames of a clip: ``num_samples // 160 + 1``, the log-mel front end's count."""
    return int(num_samples) // HOP_LENGTH + 1


def segment_score(segment: PhoneSegment) -> float:
    """The score column's value over ``segment``: its acoustic score per frame times :data:`SCORE_SCALE`, clipped to
    [-5, 5]."""
    per_frame = segment.score / max(1, segment.end - segment.start + 1)
    return float(np.clip(per_frame * SCORE_SCALE, -5.0, 5.0))


def segments_to_features(segments: list[PhoneSegment], num_frames: int) -> np.ndarray:
    """``[num_frames, NUM_PHONE_FEATURES]`` float32: a one-hot phone per frame and the segment score.

    PocketSphinx's frame ``i`` covers samples ``[160 i, 160 i + 410)``, centred 45 samples after log-mel frame
    ``i + 1``'s centre, so frame ``i``'s phone goes to output frame ``i + 1``; frames no segment covers (the first,
    the tail) are silence with score 0.
    """
    features = np.zeros((num_frames, NUM_PHONE_FEATURES), np.float32)
    covered = np.zeros(num_frames, bool)
    for segment in segments:
        lo, hi = segment.start + 1, min(segment.end + 2, num_frames)
        if lo >= hi:
            continue
        features[lo:hi, _PHONE_IDS[segment.phone]] = 1.0
        features[lo:hi, -1] = segment_score(segment)
        covered[lo:hi] = True
    features[~covered, _PHONE_IDS["SIL"]] = 1.0
    return features


def phone_features(samples: np.ndarray, settings: dict[str, Any] | None = None) -> np.ndarray:
    """Phone features of one mono 16 kHz clip: ``[samples // 160 + 1, NUM_PHONE_FEATURES]`` float32 (see the
    module docstring), decoded with ``settings`` (default :data:`DECODER_SETTINGS`)."""
    samples = np.asarray(samples)
    if samples.ndim != 1 or len(samples) == 0:
        raise ValueError(f"samples must be a non-empty 1-D array of 16 kHz audio, got shape {samples.shape}")
    return segments_to_features(recognize_phones(samples, settings), num_feature_frames(len(samples)))


def tail_phone_features(samples: np.ndarray, first_frame: int, settings: dict[str, Any] | None = None) -> np.ndarray:
    """Frames ``[first_frame + 1, samples // 160 + 1)`` of the clip's phone features, decoding only its audio from
    sample ``160 * first_frame`` on (at the level of the whole clip): the new frames of a stream whose earlier
    frames are known. A frame's phone then comes from that shorter decode, so it may differ from
    :func:`phone_features` of the whole clip; ``first_frame = 0`` gives its frames from 1 on.
    """
    samples = np.asarray(samples)
    num_frames = num_feature_frames(len(samples))
    if not 0 <= first_frame < num_frames - 1:
        raise ValueError(f"first_frame must be in 0..{num_frames - 2} for {len(samples)} samples, got {first_frame}")
    pcm = _pcm(samples)[2 * HOP_LENGTH * first_frame :]  # 16-bit samples: two bytes each
    features = segments_to_features(_recognize_pcm(pcm, settings), num_frames - first_frame)
    return features[1:]


def padded_phone_features(audio: np.ndarray, lengths, settings: dict[str, Any] | None = None) -> np.ndarray:
    """Phone features of a right-padded batch ``[B, S]`` with ``[B]`` valid samples: ``[B, F, NUM_PHONE_FEATURES]``
    float32, ``F = max(lengths) // 160 + 1``, zero after each clip's own frames; decoded with ``settings``
    (default :data:`DECODER_SETTINGS`)."""
    counts = [int(n) for n in np.asarray(lengths).tolist()]
    out = np.zeros((len(counts), num_feature_frames(max(counts)), NUM_PHONE_FEATURES), np.float32)
    for index, count in enumerate(counts):
        features = phone_features(audio[index, :count], settings)
        out[index, : len(features)] = features
    return out


def batch_phone_features(
    input_values: torch.Tensor, lengths: torch.Tensor, settings: dict[str, Any] | None = None
) -> torch.Tensor:
    """:func:`padded_phone_features` of a tensor batch, as a float32 tensor on the input's device."""
    audio = input_values.detach().to("cpu", torch.float32).numpy()
    return torch.from_numpy(padded_phone_features(audio, lengths.cpu().numpy(), settings)).to(input_values.device)
