"""eSpeak NG text-to-speech through ctypes, with phoneme timings.

``espeakng-loader`` ships ``libespeak-ng`` and its voice data; this module drives the C API directly
(``espeak_Initialize`` in synchronous mode with phoneme events, ``espeak_SetSynthCallback``,
``espeak_SetVoiceByName``, ``espeak_SetParameter``, ``espeak_Synth``). The callback receives the audio in
chunks together with events; phoneme events carry the phoneme (IPA) and the sample it starts at.

eSpeak keeps global state and is not thread-safe: use one synthesizer per process (``get_synthesizer``
returns a per-process singleton) and parallelise with processes. Its output also depends slightly on what it
synthesized before, and ``espeak_Initialize`` does not reset it: static variables of the library that no API call
reaches, among them the index into the pitch-flutter table, which moves on with every sample (with the voice's
``flutter`` set to 0 a repeated call keeps its length, 61,790 samples, where it otherwise drifts by a few samples and
diverges after about 2,350; some other state still changes every other call). ``isolated_synthesizer`` loads a
private copy of the library whose state starts fresh; ``get_synthesizer``'s synthesizer does that for every
``synthesize`` call (about 13 ms more per call), so two identical calls give the same audio. The corpus builder
keeps one private copy per (speaker, sentence) batch, which makes its audio reproducible at lower cost.

That private copy also gets a private data folder (links to the shared voice data, plus its own ``voices/!v``
folder), into which :meth:`EspeakSynthesizer.install_variant` writes variant files: the random voices of
:mod:`esarm.data.synthetic.voices`.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

# espeak_AUDIO_OUTPUT / espeakINITIALIZE_* / espeak_PARAMETER / espeak_EVENT_TYPE values from speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_PHONEME_IPA = 0x0002
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAMETERS = {"rate": 1, "volume": 2, "pitch": 3, "range": 4, "wordgap": 7}
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7


# Parameter ranges accepted by eSpeak NG (rate in words per minute).
PARAMETER_RANGES: dict[str, tuple[int, int]] = {
    "rate": (80, 450),
    "volume": (0, 200),
    "pitch": (0, 99),
    "range": (0, 99),
    "wordgap": (0, 50),
}


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),  # samples at the engine's rate
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class Utterance:
    """One synthesized utterance.

    Attributes:
        audio: float32 [samples] in [-1, 1] at ``sampling_rate``.
        sampling_rate: Hz (eSpeak NG synthesizes at 22050 Hz).
        phonemes: IPA phonemes in order; ``""`` marks the final pause.
        phoneme_starts: float [len(phonemes)], seconds from the start of ``audio``.
        word_starts: float [words], seconds.
    """

    audio: np.ndarray
    sampling_rate: int
    phonemes: list[str]
    phoneme_starts: np.ndarray
    word_starts: np.ndarray


class EspeakSynthesizer:
    """A handle on the eSpeak NG library of this process (see module docstring: one per process)."""

    def __init__(
        self, library_path: str | os.PathLike | None = None, data_path: str | os.PathLike | None = None,
        fresh_state: bool = False,
    ) -> None:  # fmt: skip
        """``fresh_state``: run every :meth:`synthesize` call on a fresh private copy of the library
        (:func:`isolated_synthesizer`), so that it does not depend on the calls before it."""
        import espeakng_loader

        self.fresh_state = fresh_state
        self._lib = ctypes.CDLL(str(library_path or espeakng_loader.get_library_path()))
        self.data_path = Path(data_path or espeakng_loader.get_data_path())
        # only a private data folder (isolated_synthesizer's) may receive variant files
        self._private_data = data_path is not None
        self._lib.espeak_Initialize.restype = ctypes.c_int
        self._lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self._lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self._lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA | _INITIALIZE_DONT_EXIT
        rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(), options)
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (returned {rate})")
        self.sampling_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, str, int]] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: the C library holds the pointer
        self._lib.espeak_SetSynthCallback(self._callback)
        self._pid = os.getpid()

    def _on_audio(self, wav, num_samples, events) -> int:
        if num_samples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_PHONEME:
                self._events.append((_EVENT_PHONEME, event.id.string.decode("utf-8", "replace"), event.sample))
            elif event.type == _EVENT_WORD:
                self._events.append((_EVENT_WORD, "", event.sample))
            i += 1
        return 0

    def install_variant(self, name: str, text: str) -> None:
        """Write a variant file ``voices/!v/<name>`` (then ``"<language>+<name>"`` is a voice of this synthesizer).

        Only for a synthesizer of ``isolated_synthesizer`` (its data folder is private); ``text`` is the file, as
        :meth:`esarm.data.synthetic.voices.EspeakVoice.variant_text` writes it.
        """
        if not self._private_data:
            raise RuntimeError("install_variant needs a private data folder: use isolated_synthesizer()")
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"name must be a plain file name, got {name!r}")
        (self.data_path / "voices" / "!v" / name).write_text(text)

    def phonemize(self, text: str, voice: str = "en-us") -> list[str]:
        """IPA phonemes of ``text`` (eSpeak's pronunciation, no audio), one string per word, stress marks kept."""
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"voice must be an eSpeak NG voice name such as 'en-us', got {voice!r}")
        pointer = ctypes.c_char_p(text.encode("utf-8"))
        words: list[str] = []
        while pointer.value:  # one clause per call; eSpeak advances the pointer (NULL at the end)
            # phonememode 0x02: IPA; bits 8-23: the separator between phonemes (a space)
            clause = self._lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8, 0x02 | (ord(" ") << 8))
            words.extend((clause or b"").decode("utf-8", "replace").split())
        return words

    def synthesize(
        self,
        text: str,
        voice: str = "en-us",
        rate: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
        volume: int = 100,
        wordgap: int = 0,
        seed: int = 0,
    ) -> Utterance:
        """Synthesize ``text`` with eSpeak NG.

        Args:
            text: the sentence (UTF-8).
            voice: an eSpeak voice name with an optional variant, e.g. ``"en-us+f3"``.
            rate: speaking rate in words per minute (80..450).
            pitch: base pitch (0..99, eSpeak's default 50).
            pitch_range: pitch range (0..99; 0 is monotone).
            volume: amplitude (0..200, 100 is eSpeak's default).
            wordgap: extra pause between words in units of 10 ms.
            seed: seed of eSpeak NG's noise source (breathy voices): the same call gives the same audio.
        """
        if os.getpid() != self._pid:
            raise RuntimeError("an EspeakSynthesizer cannot be used in a forked child; call get_synthesizer()")
        if not text.strip():
            raise ValueError(f"text must be a non-empty sentence, got {text!r}")
        if self.fresh_state:
            with isolated_synthesizer() as fresh:
                return fresh.synthesize(text, voice, rate, pitch, pitch_range, volume, wordgap, seed)
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"voice must be an eSpeak NG voice name such as 'en-us+f3', got {voice!r}")
        values = {"rate": rate, "pitch": pitch, "range": pitch_range, "volume": volume, "wordgap": wordgap}
        for name, value in values.items():
            low, high = PARAMETER_RANGES[name]
            self._lib.espeak_SetParameter(_PARAMETERS[name], int(np.clip(round(value), low, high)), 0)
        self._chunks, self._events = [], []
        # eSpeak NG draws the noise of breathy voices (``breath`` in the ``f*`` variants) from its own generator,
        # seeded from the clock when it initialises: without this those voices differ from run to run
        self._lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        encoded = text.encode("utf-8")
        error = self._lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self._lib.espeak_Synchronize()
        if error != 0:
            raise RuntimeError(f"espeak_Synth failed with error {error} for {text!r}")
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        phonemes = [name for kind, name, _ in self._events if kind == _EVENT_PHONEME]
        starts = np.array([s for kind, _, s in self._events if kind == _EVENT_PHONEME], np.float64)
        words = np.array([s for kind, _, s in self._events if kind == _EVENT_WORD], np.float64)
        return Utterance(
            audio=(audio.astype(np.float32) / 32768.0),
            sampling_rate=self.sampling_rate,
            phonemes=phonemes,
            phoneme_starts=starts / self.sampling_rate,
            word_starts=words / self.sampling_rate,
        )


_SYNTHESIZER: EspeakSynthesizer | None = None


def get_synthesizer() -> EspeakSynthesizer:
    """The eSpeak NG synthesizer of this process (created on first use, recreated after a fork); each of its
    ``synthesize`` calls starts from a fresh library state, so identical calls give identical audio."""
    global _SYNTHESIZER
    if _SYNTHESIZER is None or _SYNTHESIZER._pid != os.getpid():
        _SYNTHESIZER = EspeakSynthesizer(fresh_state=True)
    return _SYNTHESIZER


def _private_data_folder(shared: Path, folder: str) -> Path:
    """``folder/espeak-ng-data``: links to every entry of ``shared`` but ``voices/!v``, a real folder of links.

    Linking costs ~2 ms (about 240 links) against ~20 ms for copying the 19 MB of voice data.
    """
    private = Path(folder) / "espeak-ng-data"
    private.mkdir()
    for entry in shared.iterdir():
        if entry.name != "voices":
            (private / entry.name).symlink_to(entry)
    (private / "voices").mkdir()
    for entry in (shared / "voices").iterdir():
        if entry.name != "!v":
            (private / "voices" / entry.name).symlink_to(entry)
    (private / "voices" / "!v").mkdir()
    for entry in (shared / "voices" / "!v").iterdir():
        (private / "voices" / "!v" / entry.name).symlink_to(entry)
    return private


@contextlib.contextmanager
def isolated_synthesizer() -> Iterator[EspeakSynthesizer]:
    """A synthesizer on a private copy of ``libespeak-ng`` (fresh static state): reproducible output.

    The same calls inside two ``isolated_synthesizer()`` blocks give bit-identical audio, whatever was
    synthesized before in the process. Costs a few milliseconds (copy, load, initialise, unload).
    """
    import _ctypes

    import espeakng_loader

    folder = tempfile.mkdtemp(prefix="esarm-espeak-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        path = os.path.join(folder, os.path.basename(espeakng_loader.get_library_path()))
        shutil.copyfile(espeakng_loader.get_library_path(), path)
        synthesizer = EspeakSynthesizer(path, _private_data_folder(Path(espeakng_loader.get_data_path()), folder))
        try:
            yield synthesizer
        finally:
            synthesizer._lib.espeak_Terminate()
            _ctypes.dlclose(synthesizer._lib._handle)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
