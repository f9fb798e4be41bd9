"""PocketSphinx (PyPI ``pocketsphinx``, BSD licence, a dependency of esarm): a phone aligner and phone recogniser.

PocketSphinx ships an en-us acoustic model trained on recordings of real people, a CMU pronouncing dictionary and
a phonetic language model. Two uses here, both on 16 kHz mono audio at its 100 frames per second:

- :func:`align_phones`: forced alignment of a known transcript (the phone labels of the real-speech set, where a
  source publishes the transcript but no phone labels);
- :func:`recognise_phones`: phones recognised with no transcript, in "allphone" mode with the phonetic language
  model (the phone-rules lip-sync baseline, :mod:`esarm.evaluation.lipsync_baselines`).

Phones come back as ARPAbet (upper case, as the model's dictionary spells them) with their start times in seconds;
:func:`to_ipa` maps them onto the corpus's IPA symbols (:mod:`esarm.data.phones`), silences and fillers to a pause.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..audio import resample
from ..phonetic import DECODER_SETTINGS, recognize_phones, require_pocketsphinx
from .phones import PAUSE, arpabet_to_ipa

SAMPLING_RATE = 16_000  # the en-us model's rate
FRAME_RATE = 100  # PocketSphinx's default -frate: phone boundaries fall on 10 ms frames

# The allphone settings of the phonetic front end (esarm.phonetic.DECODER_SETTINGS, where their measurements are).
ALLPHONE_SETTINGS = DECODER_SETTINGS


def pcm16(audio: Any, sampling_rate: int) -> bytes:
    """Little-endian 16-bit PCM at 16 kHz, the decoder's input, from float samples in [-1, 1] at any rate."""
    samples = np.asarray(audio, np.float32).reshape(-1)
    if sampling_rate != SAMPLING_RATE:
        samples = resample(samples, sampling_rate, SAMPLING_RATE)
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def _aligner():
    # A new decoder for every utterance: one decoder reused across utterances carries its feature normalisation
    # over, so the phones of a clip depended on the clips decoded before it (measured: 2 of 34 phones of a LibriVox
    # clip moved after decoding another clip). A decoder loads in 0.3 s.
    return require_pocketsphinx().Decoder(lm=None, loglevel="FATAL")


def _decode(decoder, pcm: bytes) -> None:
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()


def normalise_transcript(text: str) -> str:
    """Lower-case words as the CMU dictionary spells them: punctuation other than apostrophes dropped."""
    return " ".join(re.sub(r"[^a-z' ]+", " ", text.lower()).split())


def align_phones(audio: Any, sampling_rate: int, transcript: str) -> tuple[list[str], list[float]]:
    """Forced alignment of ``transcript`` on ``audio``: ARPAbet phones (``"SIL"`` for silences) and their starts (s).

    Raises:
        ValueError: a word of the transcript is not in PocketSphinx's dictionary, or the alignment failed.
    """
    words = normalise_transcript(transcript)
    if not words:
        raise ValueError(f"transcript must hold at least one word, got {transcript!r}")
    decoder = _aligner()
    try:
        decoder.set_align_text(words)
    except (RuntimeError, ValueError) as error:
        raise ValueError(
            f"transcript {transcript!r} could not be aligned (a word missing from the dictionary?)"
        ) from error
    pcm = pcm16(audio, sampling_rate)
    _decode(decoder, pcm)  # the word alignment, then the phone alignment inside it
    decoder.set_alignment()
    _decode(decoder, pcm)
    alignment = decoder.get_alignment()
    phones = [(p.name, p.start / FRAME_RATE) for p in alignment.phones()] if alignment is not None else []
    if not phones:
        raise ValueError(f"PocketSphinx found no alignment of {transcript!r} in the audio")
    return [name for name, _ in phones], [start for _, start in phones]


def recognise_phones(audio: Any, sampling_rate: int) -> tuple[list[str], list[float]]:
    """Phones recognised with no transcript and their starts (s): the phonetic front end's recogniser
    (:func:`esarm.phonetic.recognize_phones`: allphone mode, :data:`ALLPHONE_SETTINGS`, level-normalised input, the
    decoder's feature state reset per clip), fillers as ``"SIL"``."""
    samples = np.asarray(audio, np.float32).reshape(-1)
    if sampling_rate != SAMPLING_RATE:
        samples = resample(samples, sampling_rate, SAMPLING_RATE)
    segments = recognize_phones(samples)
    return [s.phone for s in segments], [s.start / FRAME_RATE for s in segments]


def to_ipa(phones: list[str]) -> list[str]:
    """IPA phonemes of PocketSphinx's ARPAbet phones; silences and fillers (``SIL``, ``+NSN+``...) become pauses."""
    return [
        PAUSE if p.upper() == "SIL" or p.startswith("+") or p.startswith("<") else arpabet_to_ipa(p) for p in phones
    ]


__all__ = [
    "ALLPHONE_SETTINGS", "FRAME_RATE", "align_phones", "normalise_transcript", "pcm16", "recognise_phones",
    "require_pocketsphinx", "to_ipa",
]  # fmt: skip
