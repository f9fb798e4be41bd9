"""Sentences for the synthetic corpus: 30 Harvard sentences, then a seeded, phonetically balanced generated pool.

:func:`sentence_pool` returns the Harvard sentences first (in the corpus's historical order, so a corpus that reads
the first ``n`` sentences is unchanged), then sentences from a small template grammar. Generated candidates are
picked greedily for phonetic balance: each pick maximises the mean rarity ``1 / (1 + count)`` of its phones
(eSpeak NG's IPA, base symbols) given the phones already in the pool, so rare phones (/ʒ θ ð ʊ ɔɪ/) are sought
out instead of repeating /ə t n/. Any sentence in ``exclude`` (a validation or test list) never appears.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable

import numpy as np

from ..phones import base_symbols
from .tts import isolated_synthesizer

# Harvard sentences (IEEE 1969, public domain), shortest first so that small corpora have short clips.
HARVARD_SENTENCES: tuple[str, ...] = (
    "Two blue fish swam in the tank.",
    "Read verse out loud for pleasure.",
    "Smoky fires lack flame and heat.",
    "Her purse was full of useless trash.",
    "The boy was there when the sun rose.",
    "Rice is often served in round bowls.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "The juice of lemons makes fine punch.",
    "Glue the sheet to the dark blue background.",
    "A pot of tea helps to pass the evening.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
    "The swan dive was far short of perfect.",
    "The birch canoe slid on the smooth planks.",
    "The box was thrown beside the parked truck.",
    "Four hours of steady work faced us.",
    "A rod is used to catch pink salmon.",
    "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.",
    "The beauty of the view stunned the young boy.",
    "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.",
    "These days a chicken leg is a rare dish.",
    "The hogs were fed chopped corn and garbage.",
    "A large size in stockings is hard to sell.",
    "The source of the huge river is the clear spring.",
    "It's easy to tell the depth of a well.",
)

# The grammar: templates over word classes. Words were chosen to cover English phones, bilabials (p b m) and
# every vowel quality in particular, in short everyday words a text-to-speech front end pronounces reliably.
_WORDS: dict[str, tuple[str, ...]] = {
    "adj": ("big", "pale", "warm", "rough", "smooth", "bright", "quiet", "heavy", "thick", "cheap", "huge",
            "yellow", "purple", "broken", "young", "shiny", "muddy", "brave", "foolish", "gentle", "vivid",
            "beige", "hollow", "soggy", "tough", "royal", "wooden", "fresh", "plump", "dizzy"),
    "noun": ("boat", "book", "cup", "map", "bell", "goat", "kitten", "judge", "chair", "window", "thumb",
             "pebble", "mouth", "jewel", "garage", "violin", "pumpkin", "bishop", "wagon", "feather", "lamp",
             "oyster", "shovel", "bottle", "giraffe", "treasure", "engine", "puppy", "whistle", "bamboo"),
    "nouns": ("boats", "books", "cups", "maps", "bells", "goats", "kittens", "chairs", "pebbles", "jewels",
              "pumpkins", "wagons", "feathers", "lamps", "oysters", "bottles", "puppies", "coins", "berries"),
    "name": ("Bob", "Maya", "Peter", "Judith", "Owen", "Zoe", "Thomas", "Ruth", "Vivian", "Hugo", "Joy",
             "Martin", "Paula", "George", "Beth", "Oliver", "Amy", "Boyd"),
    "verb_past": ("pushed", "grabbed", "moved", "painted", "found", "brought", "washed", "measured", "chose",
                  "dropped", "pulled", "bought", "threw", "fixed", "shook", "touched", "buried", "loved"),
    "verb_base": ("push", "grab", "move", "paint", "find", "bring", "wash", "measure", "choose", "drop",
                  "pull", "buy", "throw", "fix", "shake", "touch", "bury", "keep"),
    "prep": ("under", "behind", "beside", "across", "near", "above", "through", "toward", "past", "by"),
    "place": ("barn", "bridge", "museum", "beach", "valley", "harbor", "kitchen", "garden", "palace", "pool",
              "market", "porch", "farm", "cabin", "mountain", "village"),
    "adverb": ("slowly", "boldly", "gladly", "quickly", "softly", "calmly", "badly", "loudly", "smoothly"),
    "time": ("at noon", "by Monday", "last June", "in the morning", "before dawn", "on Thursday", "every May",
             "at midnight", "in the autumn"),
    "number": ("two", "three", "five", "nine", "twelve", "thirty", "many", "both", "a few"),
}  # fmt: skip
_TEMPLATES: tuple[str, ...] = (
    "The {adj} {noun} was {prep} the {place}.",
    "{name} {verb_past} the {adj} {noun} {time}.",
    "A {noun} {verb_past} {prep} the {adj} {place}.",
    "Please {verb_base} the {noun} {adverb}.",
    "{name} and {name} {verb_past} {number} {nouns}.",
    "Why did {name} {verb_base} the {adj} {noun}?",
    "We {verb_past} {number} {adj} {nouns} {prep} the {place}.",
    "Maybe the {noun} will {verb_base} the {noun} {time}.",
    "{name} {adverb} {verb_past} a {noun} by the {place}.",
    "Put the {adj} {nouns} {prep} my {noun}.",
)


def generate_sentence(rng: np.random.Generator) -> str:
    """One sentence of the template grammar (see the module docstring)."""
    template = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))]
    words = []
    for chunk in template.split("{")[1:]:
        slot, _ = chunk.split("}", 1)
        choices = [w for w in _WORDS[slot] if w not in words]  # no "Hugo and Hugo"
        words.append(choices[int(rng.integers(len(choices)))])
    sentence = _fill(template, words)
    return sentence[0].upper() + sentence[1:]


def _fill(template: str, words: list[str]) -> str:
    out, rest = [], template
    for word in words:
        head, rest = rest.split("{", 1)
        _, rest = rest.split("}", 1)
        out += [head, word]
    return "".join(out) + rest


@functools.lru_cache(maxsize=16)
def _pool(size: int, seed: int, exclude: frozenset[str]) -> tuple[str, ...]:
    pool = [s for s in HARVARD_SENTENCES if _key(s) not in exclude][:size]
    if len(pool) >= size:
        return tuple(pool)
    rng = np.random.default_rng([seed, 7])
    seen = {_key(s) for s in pool} | exclude
    candidates: list[str] = []
    # 8 candidates per sentence still wanted; duplicates (the grammar repeats itself) are dropped
    for _ in range(8 * (size - len(pool)) + 100):
        sentence = generate_sentence(rng)
        if _key(sentence) not in seen:
            seen.add(_key(sentence))
            candidates.append(sentence)
    with isolated_synthesizer() as synthesizer:
        counted = [Counter(_phones(synthesizer.phonemize(s))) for s in candidates]
        counts = Counter(p for s in pool for p in _phones(synthesizer.phonemize(s)))
    inventory = sorted(set().union(*counted, counts))
    index = {p: i for i, p in enumerate(inventory)}
    matrix = np.zeros((len(candidates), len(inventory)))
    for row, phones in enumerate(counted):
        for phone, n in phones.items():
            matrix[row, index[phone]] = n
    lengths = matrix.sum(axis=1)
    totals = np.array([counts.get(p, 0) for p in inventory], np.float64)
    available = np.ones(len(candidates), bool)
    while len(pool) < size and available.any():
        scores = np.where(available, (matrix @ (1.0 / (1.0 + totals))) / np.maximum(lengths, 1), -np.inf)
        best = int(np.argmax(scores))
        pool.append(candidates[best])
        totals += matrix[best]
        available[best] = False
    return tuple(pool)


def _key(sentence: str) -> str:
    return " ".join(sentence.lower().split())


def _phones(words: list[str]) -> list[str]:
    return [s for word in words for s in base_symbols(word)]


def sentence_pool(size: int, seed: int = 0, exclude: Iterable[str] = ()) -> list[str]:
    """``size`` distinct sentences: the Harvard sentences, then generated ones chosen for phonetic balance.

    Args:
        size: sentences wanted (at least 1).
        seed: seed of the grammar (the Harvard part does not depend on it).
        exclude: sentences that must not appear (compared case- and whitespace-insensitively), e.g. the
            validation and test lists of a held-out set.
    Deterministic for ``(size, seed, exclude)``; a larger ``size`` extends a smaller one's Harvard part only (the
    greedy balance of the generated part depends on the size).
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    pool = _pool(int(size), int(seed), frozenset(_key(s) for s in exclude))
    if len(pool) < size:
        raise ValueError(f"size must be at most {len(pool)} (sentences the grammar can make), got {size}")
    return list(pool)


def phone_coverage(sentences: Iterable[str]) -> Counter:
    """Counts of eSpeak NG IPA base symbols over ``sentences`` (US English): how balanced a list is."""
    with isolated_synthesizer() as synthesizer:
        return Counter(p for s in sentences for p in _phones(synthesizer.phonemize(s)))


__all__ = ["HARVARD_SENTENCES", "generate_sentence", "phone_coverage", "sentence_pool"]
