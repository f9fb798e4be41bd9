"""Many languages: the IPA viseme model, the sentences per language, and the multilingual corpus's splits."""

from __future__ import annotations

import numpy as np
import pytest

from esarm.blendshapes import BLENDSHAPE_INDEX
from esarm.data import SyntheticCorpusConfig, generate_synthetic_corpus, speaker_splits
from esarm.data.ipa import base_symbols, unmapped_symbols, viseme_class
from esarm.data.phones import phone_class
from esarm.data.synthetic import corpus_sentences, corpus_speakers
from esarm.data.synthetic.languages import (
    LANGUAGES,
    TEST_LANGUAGES,
    TRAINING_LANGUAGES,
    VALIDATION_LANGUAGES,
    language_sentences,
)
from esarm.data.synthetic.tts import isolated_synthesizer
from esarm.data.synthetic.visemes import coarticulate, phoneme_segments


@pytest.mark.parametrize(
    ("phoneme", "expected"),
    [
        ("t͡ʃʰ", ["t", "ʃ"]),  # tie bar and aspiration
        ("ˈɔ̃ː", ["ɔ"]),  # stress, nasal vowel (French), length
        ("ma˥˩", ["m", "a"]),  # tone letters (Mandarin)
        ("ˈa2", ["a"]),  # eSpeak's tone numbers (Vietnamese, Mandarin)
        ("ts.", ["t", "s"]),  # eSpeak's retroflex mnemonic
        ("ə-", ["ə"]),  # eSpeak's unstressed mark
        ("tʼ", ["t"]),  # ejective
    ],
)
def test_base_symbols_drop_every_modifier(phoneme, expected):
    assert base_symbols(phoneme) == expected


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        ("y", "close back rounded"),  # German ü: the lips round although the tongue is front
        ("ø", "mid back rounded"),  # German ö
        ("œ", "open back rounded"),  # French œuf
        ("ɯ", "close front"),  # Turkish ı: unrounded
        ("β", "bilabial"),  # Spanish intervocalic b
        ("ʁ", "velar"),  # French r (uvular)
        ("r", "alveolar"),  # a trill is not the rounded English ɹ
        ("ɹ", "rhotic"),
        ("ɥ", "rounded approximant"),  # French huit
        ("ɕ", "sibilant"),  # Polish ś
        ("ʂ", "postalveolar"),  # Polish sz
        ("ɲ", "palatal"),
        ("ʋ", "labiodental"),  # Dutch w
        ("ħ", "glottal"),
        ("☃", None),
    ],
)
def test_viseme_class_from_ipa_features(symbol, expected):
    assert viseme_class(symbol) == expected


@pytest.mark.parametrize(
    ("phonemes", "classes"),
    [
        (["ʃ", "ˈøː", "n", "ə"], ["other", "mid", "other", "mid"]),  # de "schöne"
        (["p", "ˈɐ̃ʊ"], ["bilabial", "open"]),  # pt "pão"
        (["m", "ˈɑu"], ["bilabial", "open"]),  # cmn "猫" as eSpeak prints it
        (["k", "ˈʉː"], ["other", "close"]),  # Scottish English / Swedish ʉ
    ],
)
def test_phone_classes_of_other_languages(phonemes, classes):
    assert [phone_class(p) for p in phonemes] == classes


def test_visemes_of_other_languages_shape_the_mouth():
    # German "Mütze" against Spanish "misa": the ü rounds the lips, the i spreads them; both close on the m
    frame_times = np.array([0.05, 0.15])
    for phonemes, pucker in ((["m", "ˈʏ", "ts", "ə"], True), (["m", "ˈi", "s", "a"], False)):
        segments = phoneme_segments(phonemes, np.array([0.0, 0.1, 0.2, 0.3]), 0.4)
        shapes = coarticulate(segments, frame_times, rest_before=False)
        assert shapes[0, BLENDSHAPE_INDEX["jawOpen"]] < shapes[1, BLENDSHAPE_INDEX["jawOpen"]]
        assert bool(shapes[1, BLENDSHAPE_INDEX["mouthPucker"]] > 0.3) == pucker


def test_espeak_speaks_every_language_within_the_chart():
    with isolated_synthesizer() as synthesizer:
        for code, language in LANGUAGES.items():
            phonemes = []
            for sentence in language_sentences(code, 3):
                words = synthesizer.phonemize(sentence, voice=language.voice)
                assert words, f"{code}: no phonemes for {sentence!r}"
                phonemes += words
            assert not unmapped_symbols(phonemes), code


def test_language_sentences_are_deterministic_distinct_and_extend():
    first = language_sentences("de", 12, seed=0)
    assert first == language_sentences("de", 12, seed=0)
    assert len(set(first)) == 12
    assert language_sentences("de", 20, seed=0)[:12] == first
    assert language_sentences("de", 12, seed=1) != first
    assert all(s.endswith("。") and " " not in s for s in language_sentences("cmn", 5))
    with pytest.raises(ValueError, match="language"):
        language_sentences("xx", 3)


def test_held_out_languages_are_disjoint_from_training():
    assert not set(TRAINING_LANGUAGES) & set(VALIDATION_LANGUAGES + TEST_LANGUAGES)
    assert not set(VALIDATION_LANGUAGES) & set(TEST_LANGUAGES)


@pytest.fixture(scope="module")
def small_config() -> SyntheticCorpusConfig:
    return SyntheticCorpusConfig.multilingual(
        num_speakers=6, languages=("en", "it", "ru", "vi"), validation_languages=("fr",), test_languages=("de", "cmn"),
        speakers_per_held_out_language=1, num_sentences=1, sentence_pool_size=4, emotions=("neutral", "happy"),
    )  # fmt: skip


def test_multilingual_corpus_holds_languages_out(small_config):
    speakers = {s.name: s for s in corpus_speakers(small_config)}
    splits = speaker_splits(small_config)
    languages = {split: {speakers[n].language for n in names} for split, names in splits.items()}
    assert languages == {"train": {"en", "it", "ru", "vi"}, "validation": {"en", "fr"}, "test": {"en", "de", "cmn"}}
    voices = {split: {speakers[n].voice for n in names} for split, names in splits.items()}
    assert not voices["train"] & (voices["validation"] | voices["test"])
    assert speakers[splits["test"][-1]].voice.startswith("cmn+")
    sentences = {
        split: {s for n in names for s in corpus_sentences(small_config, speakers[n].language)}
        for split, names in splits.items()
    }  # fmt: skip
    english = set(corpus_sentences(small_config, "en"))
    for held_out in ("validation", "test"):
        # the held-out languages' sentences appear nowhere in training
        assert not (sentences[held_out] - english) & sentences["train"]


def test_multilingual_corpus_is_reproducible_across_workers(small_config):
    first = generate_synthetic_corpus(small_config, progress=False)
    again = generate_synthetic_corpus(SyntheticCorpusConfig(**{**small_config.to_dict(), "num_workers": 2}), False)
    assert set(first["test"]["language"]) == {"en", "de", "cmn"}
    for split in first:
        assert first[split]["id"] == again[split]["id"]
        for a, b in zip(first[split], again[split]):
            assert a["audio"]["bytes"] == b["audio"]["bytes"]
            np.testing.assert_array_equal(a["blendshapes"], b["blendshapes"])
    german = [row for row in first["test"] if row["language"] == "de"][0]
    assert german["sentence"] in corpus_sentences(small_config, "de")


@pytest.mark.parametrize(
    ("overrides", "argument"),
    [
        ({"languages": ("en", "xx")}, "languages"),
        ({"test_languages": ("it",)}, "test_languages"),
        ({"validation_languages": ("de",), "test_languages": ("de",)}, "disjoint"),
        ({"languages": ("en", "en")}, "languages"),
        ({"speakers_per_held_out_language": 0}, "speakers_per_held_out_language"),
    ],
)
def test_language_fields_are_checked(overrides, argument):
    with pytest.raises(ValueError, match=argument):
        SyntheticCorpusConfig.multilingual(**overrides)


def test_fixed_voices_are_english_only():
    with pytest.raises(ValueError, match="voices must be 'random'"):
        SyntheticCorpusConfig.micro(languages=("en", "it"))


def test_multilingual_preset_shape():
    config = SyntheticCorpusConfig.multilingual()
    splits = speaker_splits(config)
    speakers = {s.name: s for s in corpus_speakers(config)}
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [24, 5, 7]
    assert sorted(speakers[n].language for n in splits["train"]) == sorted(2 * TRAINING_LANGUAGES)
    assert sorted(speakers[n].language for n in splits["test"]) == sorted(["en", *2 * TEST_LANGUAGES])
    assert config.num_clips == 36 * 6 * 8 == 1728
