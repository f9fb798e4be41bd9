"""The IPA chart as articulatory features, and the mouth shape (viseme class) that each feature set makes.

eSpeak NG speaks about a hundred languages and reports every phoneme in IPA (its phoneme events with
``espeakINITIALIZE_PHONEME_IPA``, :meth:`esarm.data.tts.EspeakSynthesizer.phonemize`). Rather than one hand list
per language, every IPA base symbol gets its features here (vowels: height, backness, rounding; consonants: place
and manner), and :func:`viseme_class` maps features to one of the viseme classes of :mod:`esarm.data.visemes`:
the lips follow the place of articulation (closed for bilabials, lower lip to the teeth for labiodentals, rounded
for labial-velars and rounded vowels) and the jaw follows vowel height. A language's phonemes are then covered as
soon as their symbols are IPA: :func:`unmapped_symbols` lists what a phoneme string holds beyond the chart.

Diacritics, length, stress, tone letters and tie bars (Unicode marks and modifier letters) are not base symbols
(:func:`is_modifier`): ``"t͡ʃʰ"`` is ``t`` + ``ʃ``, ``"ɔ̃ː"`` is ``ɔ``. eSpeak prints a few phonemes that have no
IPA name in its tables with its own mnemonics, where ``.`` marks retroflex (Mandarin ``"ts."``, ``"s."``, ``"i."``):
the dot is a modifier, so these read as their plain base symbols.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

# Symbols outside Unicode's mark and modifier categories that still modify the symbol before them: eSpeak's
# syllable and retroflex dots, its ``-`` (unstressed), and the ``ʼ`` of ejectives.
_EXTRA_MODIFIERS = frozenset(".-ʼ|‖")

HEIGHTS = ("close", "near-close", "close-mid", "mid", "open-mid", "near-open", "open")
BACKNESS = ("front", "central", "back")

# (height, backness, rounded) of every vowel of the IPA chart, plus the r-coloured vowels and eSpeak's ``ᵻ`` (its
# English reduced vowel, as in "roses": a near-close central vowel).
VOWELS: dict[str, tuple[str, str, bool]] = {
    "i": ("close", "front", False), "y": ("close", "front", True), "ɨ": ("close", "central", False),
    "ʉ": ("close", "central", True), "ɯ": ("close", "back", False), "u": ("close", "back", True),
    "ɪ": ("near-close", "front", False), "ʏ": ("near-close", "front", True), "ᵻ": ("near-close", "central", False),
    "ʊ": ("near-close", "back", True),
    "e": ("close-mid", "front", False), "ø": ("close-mid", "front", True), "ɘ": ("close-mid", "central", False),
    "ɵ": ("close-mid", "central", True), "ɤ": ("close-mid", "back", False), "o": ("close-mid", "back", True),
    "ə": ("mid", "central", False), "ɚ": ("mid", "central", False), "ɝ": ("open-mid", "central", False),
    "ɛ": ("open-mid", "front", False), "œ": ("open-mid", "front", True), "ɜ": ("open-mid", "central", False),
    "ɞ": ("open-mid", "central", True), "ʌ": ("open-mid", "back", False), "ɔ": ("open-mid", "back", True),
    "æ": ("near-open", "front", False), "ɐ": ("near-open", "central", False),
    "a": ("open", "front", False), "ɶ": ("open", "front", True), "ɑ": ("open", "back", False),
    "ɒ": ("open", "back", True),
}  # fmt: skip

# (place, manner) of every consonant of the IPA chart (pulmonic, non-pulmonic, co-articulated). The rhotic
# approximants keep a manner of their own: English /ɹ/ is made with rounded lips, trills and taps are not.
CONSONANTS: dict[str, tuple[str, str]] = {
    **dict.fromkeys("pbɓ", ("bilabial", "plosive")), "m": ("bilabial", "nasal"), "ʙ": ("bilabial", "trill"),
    **dict.fromkeys("ɸβ", ("bilabial", "fricative")), "ʘ": ("bilabial", "click"),
    "ɱ": ("labiodental", "nasal"), **dict.fromkeys("fv", ("labiodental", "fricative")),
    "ʋ": ("labiodental", "approximant"), "ⱱ": ("labiodental", "tap"),
    **dict.fromkeys("θð", ("dental", "fricative")), "ǀ": ("dental", "click"),
    **dict.fromkeys("tdɗ", ("alveolar", "plosive")), "n": ("alveolar", "nasal"), "r": ("alveolar", "trill"),
    "ɾ": ("alveolar", "tap"), **dict.fromkeys("sz", ("alveolar", "sibilant")),
    **dict.fromkeys("ɬɮ", ("alveolar", "fricative")), "ɹ": ("alveolar", "rhotic"), "l": ("alveolar", "lateral"),
    "ɫ": ("alveolar", "lateral"), "ɺ": ("alveolar", "tap"), **dict.fromkeys("ǃǁ", ("alveolar", "click")),
    **dict.fromkeys("ʃʒ", ("postalveolar", "sibilant")),
    **dict.fromkeys("ʈɖ", ("retroflex", "plosive")), "ɳ": ("retroflex", "nasal"), "ɽ": ("retroflex", "tap"),
    **dict.fromkeys("ʂʐ", ("retroflex", "sibilant")), "ɻ": ("retroflex", "rhotic"), "ɭ": ("retroflex", "lateral"),
    **dict.fromkeys("ɕʑ", ("alveolo-palatal", "sibilant")),
    **dict.fromkeys("cɟʄ", ("palatal", "plosive")), "ɲ": ("palatal", "nasal"),
    **dict.fromkeys("çʝ", ("palatal", "fricative")), "j": ("palatal", "approximant"), "ʎ": ("palatal", "lateral"),
    "ǂ": ("palatal", "click"),
    **dict.fromkeys("kgɡɠ", ("velar", "plosive")), "ŋ": ("velar", "nasal"), **dict.fromkeys("xɣ", ("velar", "fricative")),
    "ɰ": ("velar", "approximant"), "ʟ": ("velar", "lateral"), "ɧ": ("velar", "fricative"),
    **dict.fromkeys("qɢʛ", ("uvular", "plosive")), "ɴ": ("uvular", "nasal"), "ʀ": ("uvular", "trill"),
    **dict.fromkeys("χʁ", ("uvular", "fricative")),
    **dict.fromkeys("ħʕ", ("pharyngeal", "fricative")), **dict.fromkeys("ʜʢʡ", ("epiglottal", "fricative")),
    "ʔ": ("glottal", "plosive"), **dict.fromkeys("hɦ", ("glottal", "fricative")),
    **dict.fromkeys("wʍ", ("labial-velar", "approximant")), "ɥ": ("labial-palatal", "approximant"),
}  # fmt: skip

_PLACE_CLASSES = {
    "bilabial": "bilabial", "labiodental": "labiodental", "dental": "dental", "alveolar": "alveolar",
    "postalveolar": "postalveolar", "retroflex": "alveolar", "alveolo-palatal": "sibilant", "palatal": "palatal",
    "velar": "velar", "uvular": "velar", "pharyngeal": "glottal", "epiglottal": "glottal", "glottal": "glottal",
    "labial-velar": "rounded approximant", "labial-palatal": "rounded approximant",
}  # fmt: skip

VISEME_CLASSES: tuple[str, ...] = (
    "bilabial", "labiodental", "dental", "alveolar", "sibilant", "postalveolar", "velar", "rounded approximant",
    "rhotic", "palatal", "glottal", "close front", "mid front", "open front", "open", "central",
    "open back rounded", "mid back rounded", "close back rounded",
)  # fmt: skip
"""The viseme classes, in the order of :data:`esarm.data.visemes.VISEME_TARGETS`."""

VOWEL_OPENNESS: dict[str, str] = {
    "close front": "close", "close back rounded": "close", "mid front": "mid", "central": "mid",
    "mid back rounded": "mid", "open front": "open", "open": "open", "open back rounded": "open",
}  # fmt: skip
"""Openness class of each vowel viseme class (:mod:`esarm.data.phones`): the jaw opening the class makes."""


def is_modifier(character: str) -> bool:
    """Whether ``character`` modifies a base symbol rather than being one: combining marks (nasal ``̃``, tie bar),
    modifier letters and symbols (stress ``ˈ``, length ``ː``, ``ʰ``, tone letters ``˥``), the tone numbers that
    eSpeak prints for Mandarin and Vietnamese (``"ˈa2"``) and eSpeak's dots."""
    return character in _EXTRA_MODIFIERS or unicodedata.category(character) in ("Mn", "Lm", "Sk", "Nd")


def base_symbols(phoneme: str) -> list[str]:
    """The base symbols of a phoneme string, modifiers removed (``"ˈaɪ"`` -> ``["a", "ɪ"]``, ``"t͡sʰ"`` -> ``["t",
    "s"]``)."""
    return [c for c in phoneme if not is_modifier(c) and not c.isspace()]


def vowel_class(height: str, backness: str, rounded: bool) -> str:
    """The viseme class of a vowel: rounded vowels purse the lips (close, mid, open rounded), front unrounded ones
    spread them; the jaw opens with height. Central and back unrounded mid vowels make the neutral ``"central"``."""
    if height not in HEIGHTS or backness not in BACKNESS:
        raise ValueError(
            f"height must be one of {HEIGHTS} and backness one of {BACKNESS}, got {height!r}, {backness!r}"
        )
    level = HEIGHTS.index(height)
    if rounded:
        return "close back rounded" if level <= 1 else "mid back rounded" if level <= 2 else "open back rounded"
    if level <= 1:
        return "close front"
    if height == "near-open" and backness == "front":
        return "open front"
    if level >= 5:
        return "open"
    return "mid front" if backness == "front" else "central"


def consonant_class(place: str, manner: str) -> str:
    """The viseme class of a consonant: its place of articulation, except that alveolar sibilants (``s z``) spread
    the lips, retroflex ones (``ʂ ʐ``, Polish and Mandarin) protrude them as ``ʃ ʒ`` do, and the rhotic
    approximants (``ɹ ɻ``) round them."""
    if manner == "rhotic":
        return "rhotic"
    if manner == "sibilant" and place in ("alveolar", "retroflex"):
        return "sibilant" if place == "alveolar" else "postalveolar"
    if place not in _PLACE_CLASSES:
        raise ValueError(f"place must be one of {sorted(_PLACE_CLASSES)}, got {place!r}")
    return _PLACE_CLASSES[place]


def viseme_class(symbol: str) -> str | None:
    """The viseme class of one IPA base symbol (:data:`VISEME_CLASSES`), or ``None`` for a symbol off the chart."""
    if symbol in VOWELS:
        return vowel_class(*VOWELS[symbol])
    if symbol in CONSONANTS:
        return consonant_class(*CONSONANTS[symbol])
    return None


def unmapped_symbols(phonemes: Iterable[str]) -> set[str]:
    """The base symbols of ``phonemes`` (IPA strings) that the chart does not hold."""
    return {s for phoneme in phonemes for s in base_symbols(phoneme) if viseme_class(s) is None}


__all__ = [
    "BACKNESS",
    "CONSONANTS",
    "HEIGHTS",
    "VISEME_CLASSES",
    "VOWELS",
    "VOWEL_OPENNESS",
    "base_symbols",
    "consonant_class",
    "is_modifier",
    "unmapped_symbols",
    "viseme_class",
    "vowel_class",
]
