"""Corpus diversity: random eSpeak NG voices, the held-out voice region, Festival, the sentence pool."""

from __future__ import annotations

import os

import numpy as np
import pytest

from esarm.data.phones import arpabet_to_ipa
from esarm.data.synthetic import (
    SyntheticCorpusConfig,
    corpus_speakers,
    festival,
    generate_synthetic_corpus,
    speaker_sentences,
    speaker_splits,
)
from esarm.data.synthetic.festival import FestivalRequest, festival_available, synthesize_batch
from esarm.data.synthetic.sentences import HARVARD_SENTENCES, phone_coverage, sentence_pool
from esarm.data.synthetic.tts import get_synthesizer, isolated_synthesizer
from esarm.data.synthetic.voices import HELD_OUT_ACCENTS, TRAINING_ACCENTS, random_voice

needs_festival = pytest.mark.skipif(not festival_available(), reason="Festival is not installed (Debian packages)")


def _spectral_centroid(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    return float((np.fft.rfftfreq(len(audio), 1 / rate) * spectrum).sum() / spectrum.sum())


def test_random_voices_differ_and_speak_with_phoneme_timings():
    centroids = []
    with isolated_synthesizer() as synthesizer:
        for seed in range(4):
            voice = random_voice(np.random.default_rng(seed))
            assert voice.accent in TRAINING_ACCENTS and voice.name.startswith(voice.accent + "+esarm-")
            synthesizer.install_variant(voice.variant_name, voice.variant_text())
            utterance = synthesizer.synthesize("Two blue fish swam in the tank.", voice=voice.name)
            assert np.abs(utterance.audio).max() > 0.05 and "b" in utterance.phonemes
            centroids.append(_spectral_centroid(utterance.audio, utterance.sampling_rate))
    assert max(centroids) - min(centroids) > 100.0  # Hz: different timbres


def test_variant_files_need_a_private_data_folder():
    with pytest.raises(RuntimeError, match="isolated_synthesizer"):
        get_synthesizer().install_variant("esarm-x", "name x\n")


def test_held_out_speakers_use_the_reserved_accents_only():
    config = SyntheticCorpusConfig.micro(num_speakers=8, num_validation_speakers=2, num_test_speakers=2,
                                         voices="random")  # fmt: skip
    speakers = corpus_speakers(config)
    accents = [s.voice.split("+")[0] for s in speakers]
    assert all(a in TRAINING_ACCENTS for a in accents[:4]) and all(a in HELD_OUT_ACCENTS for a in accents[4:])
    assert len({s.voice for s in speakers}) == 8 and len({s.name for s in speakers}) == 8
    # a training speaker does not change when more speakers are added
    assert corpus_speakers(SyntheticCorpusConfig.micro(**{**config.to_dict(), "num_speakers": 9}))[2] == speakers[2]


def test_sentence_pool_extends_harvard_is_balanced_and_excludes():
    pool = sentence_pool(80, seed=0, exclude=[HARVARD_SENTENCES[1]])
    assert len(set(pool)) == 80 and HARVARD_SENTENCES[1] not in pool
    assert pool[:29] == [s for s in HARVARD_SENTENCES if s != HARVARD_SENTENCES[1]]
    assert sentence_pool(80, seed=0, exclude=[HARVARD_SENTENCES[1]]) == pool
    excluded = pool[40:45]
    assert not set(excluded) & set(sentence_pool(80, seed=0, exclude=[HARVARD_SENTENCES[1], *excluded]))
    # the greedy choice evens out phone counts: the generated 50 beat 50 random sentences of the same grammar
    generated = phone_coverage(pool[30:])
    rng = np.random.default_rng(1)
    from esarm.data.synthetic.sentences import generate_sentence

    random_counts = phone_coverage([generate_sentence(rng) for _ in range(50)])
    assert min(generated.get(p, 0) for p in ("ʒ", "θ", "ŋ")) > min(random_counts.get(p, 0) for p in ("ʒ", "θ", "ŋ"))
    with pytest.raises(ValueError, match="size"):
        sentence_pool(0)


def test_pooled_corpus_keeps_mead_pairs_and_mixes_sentences():
    config = SyntheticCorpusConfig.micro(sentence_pool_size=40, voices="random", emotions=("neutral", "sad"),
                                         intensities=(3,))  # fmt: skip
    corpus = generate_synthetic_corpus(config, progress=False)
    rows = [row for split in corpus.values() for row in split]
    assert len(rows) == config.num_clips
    by_speaker = {}
    for row in rows:
        by_speaker.setdefault((row["speaker"], row["emotion"]), set()).add(row["sentence"])
    for name in speaker_splits(config)["train"] + speaker_splits(config)["test"]:
        assert by_speaker[(name, "neutral")] == by_speaker[(name, "sad")]  # the same sentences in every emotion
    assert len({s for sentences in by_speaker.values() for s in sentences}) > config.num_sentences
    assert speaker_sentences(config, 0) != speaker_sentences(config, 1)


def test_festival_missing_names_the_debian_packages(monkeypatch):
    festival.festival_available.cache_clear()
    monkeypatch.setenv("PATH", os.devnull)
    try:
        with pytest.raises(RuntimeError, match="festvox-kallpc16k"):
            SyntheticCorpusConfig.micro(voices="random", engines=("espeak", "festival"))
    finally:
        festival.festival_available.cache_clear()


def test_engines_are_validated():
    with pytest.raises(ValueError, match="engines"):
        SyntheticCorpusConfig.micro(engines=("espeak", "flite"))
    with pytest.raises(ValueError, match="engines"):
        SyntheticCorpusConfig.micro(voices="fixed", engines=("festival",))
    with pytest.raises(ValueError, match="voices"):
        SyntheticCorpusConfig.micro(voices="many")
    with pytest.raises(ValueError, match="sentence_pool_size"):
        SyntheticCorpusConfig.micro(num_sentences=4, sentence_pool_size=3)


@needs_festival
def test_festival_gives_ipa_phonemes_with_timings_and_formant_scaling():
    text = "Bob moved the heavy box."
    plain, scaled = synthesize_batch(
        [FestivalRequest(text, "kal_diphone"), FestivalRequest(text, "kal_diphone", formant_scale=1.1)]
    )
    duration = len(plain.audio) / plain.sampling_rate
    assert plain.phonemes[0] == "_" and "b" in plain.phonemes and "m" in plain.phonemes
    assert any(p.startswith("ˈ") for p in plain.phonemes)  # lexical stress carried over
    assert np.all(np.diff(plain.phoneme_starts) >= 0) and plain.phoneme_starts[-1] < duration
    # the formant scale keeps the duration (speed pre-compensated) and raises the spectrum
    assert abs(len(scaled.audio) / scaled.sampling_rate - duration) < 0.1 * duration
    assert scaled.sampling_rate == 17600
    assert arpabet_to_ipa("hh") in plain.phonemes
    again = synthesize_batch([FestivalRequest(text, "kal_diphone")])[0]
    np.testing.assert_array_equal(again.audio, plain.audio)


@needs_festival
def test_corpus_with_both_engines_is_reproducible_across_workers():
    config = SyntheticCorpusConfig.micro(num_speakers=5, voices="random", engines=("espeak", "festival"),
                                         festival_share=0.5, num_sentences=1, emotions=("neutral", "angry"),
                                         intensities=(3,))  # fmt: skip
    engines = [s.engine for s in corpus_speakers(config)]
    assert "festival" in engines[:3] and "espeak" in engines[:3]
    first = generate_synthetic_corpus(config, progress=False)
    again = generate_synthetic_corpus(SyntheticCorpusConfig.micro(**{**config.to_dict(), "num_workers": 2}), False)
    for a, b in zip(first["train"], again["train"]):
        assert a["id"] == b["id"]
        np.testing.assert_array_equal(a["audio"], b["audio"])
        np.testing.assert_array_equal(a["blendshapes"], b["blendshapes"])
