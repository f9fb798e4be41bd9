"""Languages of the multilingual synthetic corpus: eSpeak NG voices, which are held out, and short sentences in each.

eSpeak NG speaks about a hundred languages, each with its own phoneme timings; the viseme model maps all of them
through the IPA chart (:mod:`esarm.data.ipa`). :data:`LANGUAGES` lists the ones the corpus uses, with a small
vocabulary written for this package (Apache-2.0, like the code): everyday nouns, each with the article or
classifier its language puts before it, and the words for "this is" and "and". :func:`language_sentences` makes two
sentence shapes from it that are grammatical in every one of these languages whatever the noun's gender: a
presentative ("Das ist der Hund.") and an enumeration of three or four nouns ("Der Hund, die Milch und das Brot.").

The held-out languages were chosen so that each tests something the training languages do not give for free, while
each family still has a relative in training:

- test: German (front rounded vowels /y ø œ/, /ç/), Spanish (the approximants /β ð ɣ/ and a trilled /r/) and
  Mandarin (a tonal language in another script, whose retroflex phonemes eSpeak prints with its own mnemonics);
- validation: French (nasal vowels, uvular /ʁ/, /ɥ/) and Polish (the sibilant-rich /ɕ ʑ ʂ ʐ/ of Slavic);
- training: English, then Italian and Portuguese (Romance), Dutch and Swedish (Germanic), Russian and Czech
  (Slavic), Vietnamese (tonal), Turkish, Finnish, Hungarian and Indonesian (other families).
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Language:
    """One language of the corpus.

    Attributes:
        code: ISO 639 code (also the corpus's ``language`` column).
        voice: eSpeak NG language voice.
        this_is: the presentative, with ``{}`` for the noun phrase (``"Das ist {}."``).
        conjunction: "and".
        nouns: noun phrases (article or classifier included), in the form that follows ``this_is``.
        separator: between listed nouns (``", "``; Mandarin ``"、"``).
        end: the full stop (``"."``; Mandarin ``"。"``).
        spaced: whether words are separated by spaces (not in Mandarin).
    """

    code: str
    voice: str
    this_is: str
    conjunction: str
    nouns: tuple[str, ...]
    separator: str = ", "
    end: str = "."
    spaced: bool = True


def _split(text: str, separator: str = ";") -> tuple[str, ...]:
    return tuple(word.strip() for word in text.split(separator) if word.strip())


LANGUAGES: dict[str, Language] = {
    language.code: language
    for language in (
        Language("de", "de", "Das ist {}.", "und", _split(
            "der Hund; die Katze; das Haus; der Baum; die Blume; das Buch; der Apfel; die Brücke; das Fenster; "
            "der Vogel; die Milch; das Brot; der Mond; die Sonne; das Wasser; der Schuh; die Tür; das Schiff; "
            "der Löffel; die Mütze; das Glöckchen; der Bär; die Küche; das Kissen")),
        Language("fr", "fr", "C'est {}.", "et", _split(
            "le chat; la maison; le pain; la pomme; le bateau; la lune; le jardin; la fenêtre; le livre; "
            "la plume; le fromage; la bouche; le poisson; la boîte; le mouton; la chaise; le beurre; la fleur; "
            "le pont; la montagne; le bruit; la nuit; le cheval; la voiture")),
        Language("es", "es", "Es {}.", "y", _split(
            "el perro; la casa; el pan; la manzana; el barco; la luna; el jardín; la ventana; el libro; "
            "la pluma; el queso; la boca; el pescado; la caja; el caballo; la silla; el árbol; la flor; "
            "el puente; la montaña; el zapato; la noche; el vaso; la botella")),
        Language("it", "it", "È {}.", "e", _split(
            "il cane; la casa; il pane; la mela; la barca; la luna; il giardino; la finestra; il libro; "
            "la penna; il formaggio; la bocca; il pesce; la scatola; il cavallo; la sedia; il burro; il fiore; "
            "il ponte; la montagna; la scarpa; la notte; il bicchiere; la bottiglia")),
        Language("pt", "pt", "É {}.", "e", _split(
            "o cão; a casa; o pão; a maçã; o barco; a lua; o jardim; a janela; o livro; a pena; o queijo; "
            "a boca; o peixe; a caixa; o cavalo; a cadeira; a manteiga; a flor; a ponte; a montanha; "
            "o sapato; a noite; o copo; a garrafa")),
        Language("nl", "nl", "Dit is {}.", "en", _split(
            "de hond; de kat; het huis; de boom; de bloem; het boek; de appel; de brug; het raam; de vogel; "
            "de melk; het brood; de maan; de zon; het water; de schoen; de deur; het schip; de lepel; "
            "de muts; de beer; de keuken; het kussen; de fiets")),
        Language("sv", "sv", "Det är {}.", "och", _split(
            "en hund; en katt; ett hus; ett träd; en blomma; en bok; ett äpple; en bro; ett fönster; en fågel; "
            "en kopp; ett bröd; en måne; en sol; ett glas; en sko; en dörr; ett skepp; en sked; en mössa; "
            "en björn; ett kök; en kudde; en cykel")),
        Language("pl", "pl", "To jest {}.", "i", _split(
            "kot; pies; dom; drzewo; kwiat; książka; jabłko; most; okno; ptak; mleko; chleb; księżyc; "
            "słońce; woda; but; drzwi; statek; łyżka; czapka; niedźwiedź; kuchnia; poduszka; rower")),
        Language("ru", "ru", "Это {}.", "и", _split(
            "кошка; собака; дом; дерево; цветок; книга; яблоко; мост; окно; птица; молоко; хлеб; луна; "
            "солнце; вода; ботинок; дверь; корабль; ложка; шапка; медведь; кухня; подушка; велосипед")),
        Language("cs", "cs", "To je {}.", "a", _split(
            "kočka; pes; dům; strom; květina; kniha; jablko; most; okno; pták; mléko; chléb; měsíc; slunce; "
            "voda; bota; dveře; loď; lžíce; čepice; medvěd; kuchyně; polštář; kolo")),
        Language("tr", "tr", "Bu bir {}.", "ve", _split(
            "kedi; köpek; ev; ağaç; çiçek; kitap; elma; köprü; pencere; kuş; süt; ekmek; ay; güneş; su; "
            "ayakkabı; kapı; gemi; kaşık; şapka; ayı; mutfak; yastık; bisiklet")),
        Language("fi", "fi", "Tämä on {}.", "ja", _split(
            "kissa; koira; talo; puu; kukka; kirja; omena; silta; ikkuna; lintu; maito; leipä; kuu; aurinko; "
            "vesi; kenkä; ovi; laiva; lusikka; pipo; karhu; keittiö; tyyny; polkupyörä")),
        Language("hu", "hu", "Ez egy {}.", "és", _split(
            "macska; kutya; ház; fa; virág; könyv; alma; híd; ablak; madár; tej; kenyér; hold; nap; víz; "
            "cipő; ajtó; hajó; kanál; sapka; medve; konyha; párna; bicikli")),
        Language("id", "id", "Ini {}.", "dan", _split(
            "kucing; anjing; rumah; pohon; bunga; buku; apel; jembatan; jendela; burung; susu; roti; bulan; "
            "matahari; air; sepatu; pintu; kapal; sendok; topi; beruang; dapur; bantal; sepeda")),
        Language("vi", "vi", "Đây là {}.", "và", _split(
            "con mèo; con chó; ngôi nhà; cái cây; bông hoa; quyển sách; quả táo; cây cầu; cửa sổ; con chim; "
            "sữa; bánh mì; mặt trăng; mặt trời; nước; đôi giày; cái cửa; con tàu; cái thìa; cái mũ; con gấu; "
            "nhà bếp; cái gối; xe đạp")),
        Language("cmn", "cmn", "这是{}。", "和", _split(
            "猫;狗;房子;树;花;书;苹果;桥;窗户;鸟;牛奶;面包;月亮;太阳;水;鞋子;门;船;勺子;帽子;熊;厨房;枕头;自行车"),
            separator="、", end="。", spaced=False),
    )
}  # fmt: skip
"""Every language the corpus can speak besides English (English uses :mod:`esarm.data.sentences`)."""

TRAINING_LANGUAGES: tuple[str, ...] = ("en", "it", "pt", "nl", "sv", "ru", "cs", "vi", "tr", "fi", "hu", "id")
"""Languages of the training speakers of the ``multilingual`` preset."""

VALIDATION_LANGUAGES: tuple[str, ...] = ("fr", "pl")
"""Languages held out for validation (see the module docstring for why)."""

TEST_LANGUAGES: tuple[str, ...] = ("de", "es", "cmn")
"""Languages held out for test."""

CORPUS_LANGUAGES: tuple[str, ...] = ("en", *LANGUAGES)
"""Every language a :class:`~esarm.data.synthetic.SyntheticCorpusConfig` may name."""


def check_language(language: str, argument: str = "language") -> str:
    """``language`` if the corpus can speak it, else ``ValueError`` naming ``argument``."""
    if language not in CORPUS_LANGUAGES:
        raise ValueError(f"{argument} must be one of {list(CORPUS_LANGUAGES)}, got {language!r}")
    return language


def _sentence(language: Language, rng: np.random.Generator) -> str:
    count = int(rng.choice((1, 3, 4), p=(0.3, 0.4, 0.3)))
    nouns = [language.nouns[int(i)] for i in rng.choice(len(language.nouns), count, replace=False)]
    if count == 1:
        return language.this_is.format(nouns[0])
    listed = language.separator.join(nouns[:-1])
    space = " " if language.spaced else ""
    sentence = f"{listed}{space}{language.conjunction}{space}{nouns[-1]}{language.end}"
    return sentence[0].upper() + sentence[1:]


@functools.lru_cache(maxsize=64)
def _sentences(code: str, size: int, seed: int) -> tuple[str, ...]:
    language = LANGUAGES[code]
    # a generator per (seed, language): adding a language to a corpus leaves the others' sentences as they were
    rng = np.random.default_rng([seed, 8, zlib.crc32(code.encode())])
    sentences: list[str] = []
    seen: set[str] = set()
    for _ in range(50 * size):
        sentence = _sentence(language, rng)
        if sentence not in seen:
            seen.add(sentence)
            sentences.append(sentence)
            if len(sentences) == size:
                return tuple(sentences)
    raise ValueError(f"size must be at most {len(sentences)} distinct sentences for {code!r}, got {size}")


def language_sentences(language: str, size: int, seed: int = 0) -> list[str]:
    """``size`` distinct sentences in ``language`` (not English: :func:`esarm.data.sentences.sentence_pool`).

    Deterministic for ``(language, size, seed)``; a larger ``size`` extends a smaller one (the first sentences are
    the same).
    """
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {list(LANGUAGES)}, got {language!r}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    return list(_sentences(language, int(size), int(seed)))


def language_voice(language: str) -> str:
    """The eSpeak NG language voice of ``language`` (``"en"`` has several accents: :mod:`esarm.data.voices`)."""
    return "en" if check_language(language) == "en" else LANGUAGES[language].voice


__all__ = [
    "CORPUS_LANGUAGES",
    "LANGUAGES",
    "TEST_LANGUAGES",
    "TRAINING_LANGUAGES",
    "VALIDATION_LANGUAGES",
    "Language",
    "check_language",
    "language_sentences",
    "language_voice",
]
