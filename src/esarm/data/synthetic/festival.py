"""The Festival speech synthesiser (a second engine family for the synthetic corpus), with phoneme timings.

Festival is a Debian tool, not a Python package: ``apt-get install festival festvox-kallpc16k festvox-kdlpc16k
festvox-us-slt-hts``. :func:`synthesize_batch` writes one Scheme script for a batch of utterances, runs
``festival -b`` once (about 0.3 s to start, then ~20 ms per utterance), and reads back each utterance's wave
and its ``Segment`` relation: ARPAbet phone names with their end times and the lexical stress of their syllable.
Phones are mapped to IPA (:func:`esarm.data.phones.arpabet_to_ipa`, stressed vowels marked ``ˈ``) so that the
one viseme and coarticulation model of :mod:`esarm.data.synthetic.visemes` turns them into the ground truth.

Voices: two diphone voices (``kal_diphone``, ``ked_diphone``: US English men; pitch mean and range through
``int_lr_params``, speed through ``Duration_Stretch``) and one HTS voice (``cmu_us_slt_arctic_hts``: a US
English woman; pitch in semitones ``-fm`` and speed ``-r`` of the HTS engine). A formant scale ``k`` makes more
timbres out of them: the wave is read as if sampled at ``k`` times its rate, which scales every frequency by
``k`` and every duration by ``1 / k``; pitch and speed are pre-compensated, so ``k`` moves the formants only.
Output is deterministic (the same script gives the same samples).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..phones import PAUSE, VOWELS, arpabet_to_ipa
from .tts import Utterance

FESTIVAL_VOICES: dict[str, str] = {"kal_diphone": "M", "ked_diphone": "M", "cmu_us_slt_arctic_hts": "W"}
"""Festival voices used for training corpora, with the speaker's sex."""

DEBIAN_PACKAGES = "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"

# The voices' own mean F0 in Hz: the reference of the HTS voice's semitone shift.
_HTS_F0_MEAN = 180.0


@dataclass(frozen=True)
class FestivalRequest:
    """One utterance to synthesise.

    Args:
        text: the sentence.
        voice: a key of :data:`FESTIVAL_VOICES`.
        f0_mean: target mean pitch in Hz (after the formant scale).
        f0_std: target pitch standard deviation in Hz (diphone voices; the HTS voice keeps its own contour).
        speed: speaking rate relative to the voice's own (1.0; 1.2 is 20 % faster).
        formant_scale: factor on every formant frequency (0.8..1.25); multiples of 0.025 keep the resampling to
            the corpus's rate cheap (a ratio of small integers).
    """

    text: str
    voice: str = "kal_diphone"
    f0_mean: float = 110.0
    f0_std: float = 15.0
    speed: float = 1.0
    formant_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.voice not in FESTIVAL_VOICES:
            raise ValueError(f"voice must be one of {sorted(FESTIVAL_VOICES)}, got {self.voice!r}")
        if not 0.8 <= self.formant_scale <= 1.25:
            raise ValueError(f"formant_scale must be in [0.8, 1.25], got {self.formant_scale}")
        # below 70-80 Hz (after the formant scale's compensation) the diphone voices place no pitch marks and crash
        if not 80.0 <= self.f0_mean <= 400.0:
            raise ValueError(f"f0_mean must be in [80, 400] Hz, got {self.f0_mean}")
        if self.speed <= 0 or self.f0_std < 0:
            raise ValueError(f"speed must be > 0 and f0_std >= 0, got {self.speed} and {self.f0_std}")
        if not self.text.strip():
            raise ValueError(f"text must be a non-empty sentence, got {self.text!r}")


@functools.lru_cache(maxsize=1)
def festival_available() -> bool:
    """Whether the ``festival`` program and the voices of :data:`FESTIVAL_VOICES` are installed."""
    if shutil.which("festival") is None:
        return False
    script = "".join(f'(format t "%l\\n" (symbol-bound? (intern "voice_{v}")))' for v in FESTIVAL_VOICES)
    result = subprocess.run(["festival", "--pipe"], input=script, capture_output=True, text=True, timeout=60)
    return result.returncode == 0 and result.stdout.split() == ["t"] * len(FESTIVAL_VOICES)


def require_festival() -> None:
    """Raise ``RuntimeError`` naming the Debian packages when Festival or one of its voices is missing."""
    if not festival_available():
        raise RuntimeError(
            f"engine 'festival' needs the Festival speech synthesiser and voices {sorted(FESTIVAL_VOICES)}: "
            f"apt-get install {DEBIAN_PACKAGES} (Debian / Ubuntu), or leave 'festival' out of engines"
        )


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _script(requests: list[FestivalRequest], folder: Path) -> str:
    lines = [
        "(define (esarm_dump utt tag)",
        '  (mapcar (lambda (s) (format t "%s %s %f %s\\n" tag (item.name s) (item.feat s "end")',
        '                        (item.feat s "R:SylStructure.parent.stress")))',
        "          (utt.relation.items utt 'Segment)))",
    ]
    for k, request in enumerate(requests):
        # pre-compensation of the formant scale: the wave is replayed k times faster (see the module docstring)
        k_scale = request.formant_scale
        f0, std, speed = request.f0_mean / k_scale, request.f0_std / k_scale, request.speed / k_scale
        lines.append(f"(voice_{request.voice})")
        if request.voice.endswith("_hts"):
            semitones = 12.0 * np.log2(f0 / _HTS_F0_MEAN)
            lines.append(
                f"(set! hts_engine_params (append {request.voice}::hts_engine_params "
                f'\'(("-fm" {semitones:.4f}) ("-r" {speed:.4f}))))'
            )
        else:
            lines.append(
                f"(set! int_lr_params '((target_f0_mean {f0:.3f}) (target_f0_std {std:.3f}) "
                "(model_f0_mean 170) (model_f0_std 34)))"
            )
            lines.append(f"(Parameter.set 'Duration_Stretch {1.0 / speed:.4f})")
        lines.append(f"(set! utt (utt.synth (Utterance Text {_scheme_string(request.text)})))")
        lines.append(f'(utt.save.wave utt "{folder / f"{k}.wav"}" \'riff)')
        lines.append(f'(esarm_dump utt "{k}")')
    return "\n".join(lines) + "\n"


def _read_wave(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as file:
        if file.getsampwidth() != 2 or file.getnchannels() != 1:
            raise RuntimeError(f"festival wrote {path} as {file.getnchannels()} x {8 * file.getsampwidth()} bit")
        frames = file.readframes(file.getnframes())
        return np.frombuffer(frames, "<i2").astype(np.float32) / 32768.0, file.getframerate()


def synthesize_batch(requests: list[FestivalRequest], timeout: float = 600.0) -> list[Utterance]:
    """Synthesise ``requests`` in one Festival process; one :class:`~esarm.data.synthetic.tts.Utterance` per request.

    Each utterance's ``sampling_rate`` is the voice's rate times its ``formant_scale`` (rounded to a whole Hz);
    ``phonemes`` are IPA (``"_"`` for a pause), ``phoneme_starts`` the start of each (the previous one's end).
    """
    if not requests:
        return []
    require_festival()
    with tempfile.TemporaryDirectory(prefix="esarm-festival-") as folder:
        script = Path(folder) / "batch.scm"
        script.write_text(_script(requests, Path(folder)))
        result = subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"festival failed ({result.returncode}): {result.stderr.strip()[-500:]}")
        segments: dict[int, list[tuple[str, float, str]]] = {k: [] for k in range(len(requests))}
        for line in result.stdout.splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[0].isdigit():
                segments[int(parts[0])].append((parts[1], float(parts[2]), parts[3]))
        utterances = []
        for k, request in enumerate(requests):
            audio, rate = _read_wave(Path(folder) / f"{k}.wav")
            utterances.append(_utterance(audio, rate, segments[k], request.formant_scale))
    return utterances


def _utterance(audio: np.ndarray, rate: int, segments: list[tuple[str, float, str]], scale: float) -> Utterance:
    if not segments:
        raise RuntimeError("festival returned no Segment relation")
    sampling_rate = int(round(rate * scale))
    scale = sampling_rate / rate
    phonemes, starts, previous_end = [], [], 0.0
    for name, end, stress in segments:
        ipa = arpabet_to_ipa(name)
        if ipa != PAUSE and ipa[0] in VOWELS and stress == "1":
            ipa = "ˈ" + ipa
        phonemes.append(ipa)
        starts.append(previous_end / scale)
        previous_end = end
    return Utterance(
        audio=audio,
        sampling_rate=sampling_rate,
        phonemes=phonemes,
        phoneme_starts=np.asarray(starts, np.float64),
        word_starts=np.zeros(0, np.float64),
    )


__all__ = [
    "DEBIAN_PACKAGES",
    "FESTIVAL_VOICES",
    "FestivalRequest",
    "festival_available",
    "require_festival",
    "synthesize_batch",
]
