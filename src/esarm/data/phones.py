"""One phone set for every synthesiser: IPA base symbols, with ARPAbet mapped onto it, and mouth-openness classes.

The synthetic corpus stores each clip's phonemes as IPA strings (eSpeak NG's own output, stress marks removed,
``"_"`` for a pause) with their start times. Engines that speak ARPAbet (CMU Flite, Festival's US voices) are mapped
to the same IPA symbols here, so that one viseme and coarticulation model (:mod:`esarm.data.synthetic.visemes`) and one set
of lip-sync measures (:mod:`esarm.evaluation.lipsync`) serve every engine.

Openness classes (the reference curve of the lip-sync measures): open vowels 1, mid vowels 0.7, close vowels 0.4,
the bilabials p/b/m 0, every other phone 0.25, and pauses 0 (the mouth rests).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import ipa

PAUSE = "_"
"""The pause symbol of the corpus (eSpeak NG's end of clause, an ARPAbet ``pau`` / ``sil``)."""

# Vowels by the jaw opening of their viseme class (esarm.data.ipa): every vowel of the IPA chart, any language.
OPEN_VOWELS = frozenset(v for v in ipa.VOWELS if ipa.VOWEL_OPENNESS[ipa.viseme_class(v)] == "open")
MID_VOWELS = frozenset(v for v in ipa.VOWELS if ipa.VOWEL_OPENNESS[ipa.viseme_class(v)] == "mid")
CLOSE_VOWELS = frozenset(v for v in ipa.VOWELS if ipa.VOWEL_OPENNESS[ipa.viseme_class(v)] == "close")
VOWELS = OPEN_VOWELS | MID_VOWELS | CLOSE_VOWELS
BILABIALS = frozenset("pbm")

OPENNESS = {"open": 1.0, "mid": 0.7, "close": 0.4, "bilabial": 0.0, "other": 0.25, "pause": 0.0}
"""Reference mouth opening per phone class (see the module docstring)."""

# ARPAbet (CMU dictionary, as Flite and Festival's US English voices print it, lower case, stress digits removed)
# to IPA. Diphthongs keep both symbols: the first gives the class.
ARPABET_TO_IPA: dict[str, str] = {
    "aa": "ɑ", "ae": "æ", "ah": "ʌ", "ao": "ɔ", "aw": "aʊ", "ax": "ə", "axr": "ɚ", "ay": "aɪ", "eh": "ɛ",
    "er": "ɝ", "ey": "eɪ", "ih": "ɪ", "ix": "ɪ", "iy": "i", "ow": "oʊ", "oy": "ɔɪ", "uh": "ʊ", "uw": "u",
    "ux": "u", "b": "b", "ch": "tʃ", "d": "d", "dh": "ð", "dx": "ɾ", "el": "l", "em": "m", "en": "n", "f": "f",
    "g": "ɡ", "hh": "h", "h": "h", "jh": "dʒ", "k": "k", "l": "l", "m": "m", "n": "n", "ng": "ŋ", "nx": "n",
    "p": "p", "q": "ʔ", "r": "ɹ", "s": "s", "sh": "ʃ", "t": "t", "th": "θ", "v": "v", "w": "w", "wh": "ʍ",
    "y": "j", "z": "z", "zh": "ʒ", "pau": PAUSE, "sil": PAUSE, "h#": PAUSE, "#": PAUSE,
}  # fmt: skip


def arpabet_to_ipa(phone: str) -> str:
    """The IPA string of an ARPAbet phone (case and stress digits ignored); unknown phones raise ``ValueError``."""
    key = phone.strip().lower().rstrip("012")
    if key not in ARPABET_TO_IPA:
        raise ValueError(f"phone must be an ARPAbet symbol such as 'aa' or 'pau', got {phone!r}")
    return ARPABET_TO_IPA[key]


def base_symbols(phoneme: str) -> list[str]:
    """The base IPA symbols of a phoneme string, modifiers removed (``"ˈaɪ"`` -> ``["a", "ɪ"]``;
    :func:`esarm.data.ipa.base_symbols`)."""
    return ipa.base_symbols(phoneme)


def phone_class(phoneme: str) -> str:
    """``"open"``, ``"mid"``, ``"close"``, ``"bilabial"``, ``"other"`` or ``"pause"``, from the first base symbol."""
    symbols = base_symbols(phoneme)
    if not symbols or symbols[0] == PAUSE:
        return "pause"
    first = symbols[0]
    if first in OPEN_VOWELS:
        return "open"
    if first in MID_VOWELS:
        return "mid"
    if first in CLOSE_VOWELS:
        return "close"
    if first in BILABIALS:
        return "bilabial"
    return "other"


def openness(phoneme: str) -> float:
    """The reference mouth opening of one phoneme, in [0, 1] (:data:`OPENNESS`)."""
    return OPENNESS[phone_class(phoneme)]


def frame_classes(
    phonemes: Sequence[str], starts: Sequence[float], duration: float, fps: float, num_frames: int | None = None
) -> list[str]:
    """The phone class at the centre of each frame.

    Args:
        phonemes: IPA phonemes in order (``"_"`` or ``""`` for a pause).
        starts: start of each phoneme in seconds; a phoneme ends where the next starts, the last at ``duration``.
        duration: length of the audio in seconds.
        fps: frame rate of the animation.
        num_frames: frames to label (default: ``round(duration * fps)``).

    Frames before the first phoneme are pauses.
    """
    if len(phonemes) != len(starts):
        raise ValueError(f"phonemes and starts must have the same length, got {len(phonemes)} and {len(starts)}")
    if num_frames is None:
        num_frames = int(round(duration * fps))
    centres = (np.arange(num_frames) + 0.5) / fps
    starts_array = np.asarray(starts, np.float64)
    index = np.searchsorted(starts_array, centres, side="right") - 1  # the phoneme that started last
    classes = [phone_class(p) for p in phonemes]
    return ["pause" if i < 0 else classes[i] for i in index]


def openness_curve(
    phonemes: Sequence[str],
    starts: Sequence[float],
    duration: float,
    fps: float,
    num_frames: int | None = None,
    smoothing_frames: int = 3,
) -> np.ndarray:
    """Reference mouth opening per frame: :func:`openness` of each frame's phone, moving-averaged.

    Returns float32 [num_frames]. ``smoothing_frames`` is the width of a centred moving average (1: none); the ends
    are averaged over the frames that exist.
    """
    values = np.array([OPENNESS[c] for c in frame_classes(phonemes, starts, duration, fps, num_frames)], np.float64)
    if smoothing_frames > 1 and len(values):
        kernel = np.ones(smoothing_frames)
        counts = np.convolve(np.ones_like(values), kernel, mode="same")
        values = np.convolve(values, kernel, mode="same") / counts
    return values.astype(np.float32)
