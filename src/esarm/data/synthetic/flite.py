"""CMU Flite text-to-speech through its command-line program, with phoneme timings.

Flite is a second synthesiser family, unrelated to eSpeak NG (diphone voices ``kal`` / ``kal16``, and the
clustergen voices ``awb``, ``rms``, ``slt`` built from recordings of real people). esarm uses it for the held-out
test set (:mod:`esarm.data.heldout`), so that lip sync is measured on voices of an engine that training never heard.

``flite -psdur`` prints each segment of the utterance as ``phone:end`` (ARPAbet, end time in seconds); a phone
starts where the previous one ends. Phones are mapped to the package's IPA phone set with
:func:`esarm.data.phones.arpabet_to_ipa` (``pau`` -> ``"_"``). The program is deterministic: the same text, voice
and settings give bit-identical audio. Install it with the Debian / Ubuntu package ``flite``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import wave

import numpy as np

from ..phones import arpabet_to_ipa
from .tts import Utterance

FLITE_VOICES: tuple[str, ...] = ("kal", "kal16", "awb", "rms", "slt")
"""Voices of the Debian ``flite`` package (``flite -lv``; ``awb_time`` only speaks clock times)."""

INSTALL_HINT = "install the Debian package 'flite' (apt-get install flite)"


def find_flite() -> str | None:
    """Path of the ``flite`` program (``$ESARM_FLITE``, else ``PATH``), or ``None`` when it is not installed."""
    return os.environ.get("ESARM_FLITE") or shutil.which("flite")


def parse_segments(text: str) -> tuple[list[str], np.ndarray]:
    """IPA phonemes and start times (s) from ``flite -psdur`` output (``"pau:0.220 dh:0.254 ..."``)."""
    phonemes, ends = [], []
    for token in text.split():
        phone, separator, end = token.rpartition(":")
        if not separator:
            raise ValueError(f"flite segment must look like 'phone:end', got {token!r}")
        phonemes.append(arpabet_to_ipa(phone))
        ends.append(float(end))
    starts = np.concatenate([[0.0], ends[:-1]]) if ends else np.zeros(0)
    return phonemes, starts.astype(np.float64)


def _read_wav(path: str) -> tuple[np.ndarray, int]:
    with wave.open(path, "rb") as reader:
        if reader.getsampwidth() != 2 or reader.getnchannels() != 1:
            raise RuntimeError(
                f"flite must write 16-bit mono wav, got {reader.getsampwidth() * 8}-bit, {reader.getnchannels()} channels"
            )
        samples = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
        return samples.astype(np.float32) / 32768.0, reader.getframerate()


class FliteSynthesizer:
    """Synthesize with the ``flite`` program (see the module docstring).

    Args:
        executable: path of ``flite`` (default :func:`find_flite`).

    Raises:
        FileNotFoundError: when flite is not installed, naming the Debian package.
    """

    def __init__(self, executable: str | os.PathLike | None = None) -> None:
        found = str(executable) if executable is not None else find_flite()
        if not found or not (os.path.isfile(found) or shutil.which(found)):
            raise FileNotFoundError(f"the flite program was not found (got {found!r}): {INSTALL_HINT}")
        self.executable = found

    def synthesize(
        self, text: str, voice: str = "slt", duration_stretch: float = 1.0, f0_mean: float | None = None
    ) -> Utterance:
        """Synthesize ``text``.

        Args:
            text: the sentence.
            voice: one of :data:`FLITE_VOICES` (or a path to a ``.flitevox`` file).
            duration_stretch: factor on every segment's duration (> 1: slower speech).
            f0_mean: target mean pitch in Hz (``int_f0_target_mean``); ``None`` keeps the voice's own.
        """
        if not text.strip():
            raise ValueError(f"text must be a non-empty sentence, got {text!r}")
        if voice not in FLITE_VOICES and not os.path.isfile(voice):
            raise ValueError(f"voice must be one of {list(FLITE_VOICES)} or a .flitevox file, got {voice!r}")
        if not duration_stretch > 0:
            raise ValueError(f"duration_stretch must be > 0, got {duration_stretch!r}")
        settings = ["--setf", f"duration_stretch={duration_stretch:.4f}"]
        if f0_mean is not None:
            settings += ["--setf", f"int_f0_target_mean={f0_mean:.2f}"]
        with tempfile.TemporaryDirectory(prefix="esarm-flite-") as folder:
            path = os.path.join(folder, "speech.wav")
            command = [self.executable, "-voice", voice, "-psdur", *settings, "-t", text, "-o", path]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0 or not os.path.exists(path):
                raise RuntimeError(
                    f"flite failed with status {result.returncode} for {text!r}: {result.stderr.strip()}"
                )
            audio, sampling_rate = _read_wav(path)
        phonemes, starts = parse_segments(result.stdout)
        return Utterance(audio, sampling_rate, phonemes, starts, word_starts=np.zeros(0))
