"""The lip-sync step of the evaluation (esarm.evaluation.lipsync_evaluation): where it measures, what it returns,
the evaluation config's fields and the report's section."""

from __future__ import annotations

import json
import logging
import math

import datasets
import numpy as np
import pytest
import torch

from esarm import ESARMSTAConfig, ESARMSTAForGeneration
from esarm.blendshapes import BLENDSHAPE_INDEX, EMOTIONS
from esarm.data import heldout
from esarm.evaluation.lipsync import row_audio
from esarm.evaluation.lipsync_evaluation import (
    LipSyncSettings,
    evaluate_lipsync,
    fit_probe,
    heldout_sets,
    language_comparison,
    language_sets,
    lipsync_sets,
    run_lipsync,
)
from esarm.evaluation.report import report_markdown, results_markdown, write_report
from esarm.evaluation.run import ESARMEvaluationConfig
from esarm.processing_esarm import ESARMProcessor
from esarm.rig import FaceRig


@pytest.fixture(scope="module")
def validation_folder(tmp_path_factory):
    """The held-out validation split, one sentence per voice (6 clips)."""
    return heldout.build_heldout_sets(
        tmp_path_factory.mktemp("heldout") / "sets", splits=("validation",), num_sentences=1
    )


@pytest.fixture(scope="module")
def tiny_model():
    return ESARMSTAForGeneration(ESARMSTAConfig.tiny()).eval()


def mead_like_split(num_clips: int = 3) -> datasets.Dataset:
    """Rows of a prepared real dataset: audio and captured blendshapes, no phoneme timings. The mouth opens with
    the audio's bursts and rests in the pauses between them."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(num_clips):
        frames = 45
        jaw = np.zeros(frames)
        jaw[5:15] = jaw[25:38] = 0.6
        gain = np.repeat(jaw, 16000 // 30)
        audio = (gain * rng.normal(0, 0.3, len(gain)) + rng.normal(0, 0.001, len(gain))).astype(np.float32)
        blendshapes = np.zeros((frames, 52), np.float32)
        blendshapes[:, BLENDSHAPE_INDEX["jawOpen"]] = jaw
        rows.append({
            "id": f"m{i}", "speaker": "M003", "emotion": "neutral", "intensity": 1, "sentence": "s",
            "audio": audio.tolist(), "sampling_rate": 16000, "blendshapes": blendshapes.tolist(), "fps": 30.0,
        })  # fmt: skip
    return datasets.Dataset.from_list(rows)


def test_evaluation_config_lipsync_fields():
    config = ESARMEvaluationConfig()
    assert config.lipsync == LipSyncSettings() and config.lipsync.heldout is None
    assert config.lipsync.splits == ["validation", "test"] and config.lipsync.labels == ["neutral", "happy"]
    settings = ESARMEvaluationConfig(lipsync={"heldout": "h", "max_clips": 5}).lipsync
    assert (settings.heldout, settings.max_clips, settings.probe_clips) == ("h", 5, 256)
    with pytest.raises(ValueError, match=r"lipsync.splits must be a non-empty subset of \['validation', 'test'\], got \['train'\]"):  # fmt: skip
        ESARMEvaluationConfig(lipsync={"splits": ["train"]})
    with pytest.raises(ValueError, match="lipsync.labels must be two different emotions"):
        ESARMEvaluationConfig(lipsync={"labels": ["happy", "happy"]})
    with pytest.raises(ValueError, match="lipsync.probe_clips must be a positive number .* got 0"):
        ESARMEvaluationConfig(lipsync={"probe_clips": 0})
    assert ESARMEvaluationConfig.__dataclass_fields__["lipsync"].metadata["help"]


def test_missing_flite_skips_the_test_split_with_a_reason(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(heldout, "find_flite", lambda: None)
    folder = tmp_path / "sets"
    with caplog.at_level(logging.WARNING, logger="esarm.evaluation.lipsync_evaluation"):
        sets = heldout_sets(folder, ["validation", "test"], num_sentences=1, max_clips=2)
    assert [s.name for s in sets] == ["validation"] and len(sets[0].rows) == 2
    assert "skipped the held-out test split" in caplog.text and "flite" in caplog.text
    assert heldout.read_heldout_config(folder)["splits"] == ["validation"]
    # An existing folder built without a split says so instead of rebuilding (or failing on) the sets.
    monkeypatch.undo()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="esarm.evaluation.lipsync_evaluation"):
        assert [s.name for s in heldout_sets(folder, ["test", "validation"], num_sentences=1)] == ["validation"]
    assert "was built without it" in caplog.text
    with pytest.raises(ValueError, match="splits must be a non-empty subset"):
        heldout_sets(folder, ["train"])


def test_heldout_sets_beside_the_baselines_and_the_generator(validation_folder, tiny_model, micro_corpus):
    corpus = datasets.load_from_disk(str(micro_corpus))
    sets = lipsync_sets(corpus["test"], "test", validation_folder, ["validation"], max_clips=3)
    assert [(s.name, len(s.rows)) for s in sets] == [("validation", 3)]
    assert all(row["speaker"] in sets[0].styles for row in sets[0].rows)
    probe = fit_probe(corpus["train"], max_clips=8)
    results = evaluate_lipsync({"tiny": (tiny_model, None)}, sets, probe)
    table = results["validation"]
    assert list(table) == ["tiny", "loudness", "log-mel probe", "ground truth"]
    truth = table["ground truth"]
    assert truth["r_jaw"] > table["loudness"]["r_jaw"]  # the ceiling stands above the floor
    # The corpus's generator moves the lips with the phonemes whatever the label: a high two-label value.
    assert 0.5 < truth["two_label_r"] <= 1.0
    assert math.isnan(table["loudness"]["two_label_r"]) and math.isnan(table["log-mel probe"]["two_label_r"])
    assert "two_label_r" in table["tiny"] and math.isnan(table["tiny"]["r_aperture"])  # no rig given
    # the emotion head's accuracy on the labelled held-out clips: what emotion="auto" would animate with
    heard = [
        EMOTIONS[int(tiny_model.classify_emotion(tiny_model.encode_emotion(
            ESARMProcessor()(row_audio(row), sampling_rate=int(row["sampling_rate"]))["input_values"])).argmax())]
        for row in sets[0].rows
    ]  # fmt: skip
    expected = np.mean([h == row["emotion"] for h, row in zip(heard, sets[0].rows)])
    assert table["tiny"]["emotion_head_accuracy"] == pytest.approx(expected)
    assert math.isnan(table["loudness"]["emotion_head_accuracy"])
    with pytest.raises(ValueError, match="labels must be two different emotions"):
        evaluate_lipsync({}, sets, labels=["neutral"])


def test_a_split_without_phoneme_timings_gets_the_alignment_free_measures(tmp_path, tiny_model):
    split = mead_like_split()
    # Given a held-out folder, a real dataset is still measured on its own split, and nothing is built.
    sets = lipsync_sets(split, "test", tmp_path / "heldout")
    assert [s.name for s in sets] == ["test"] and "no phoneme timings" in sets[0].description
    assert not (tmp_path / "heldout").exists()
    # A rig without the iBUG landmarks (the aperture's reference points) leaves only the aperture measures out.
    neutral = np.random.default_rng(0).uniform(-50, 50, size=(68, 3))
    no_landmarks = FaceRig(neutral, np.zeros((52, 68, 3)), np.zeros((0, 3)), {"lips": [1], "eye_forehead": [2]})
    settings = LipSyncSettings(tmp_path / "heldout", real_speech=False)
    out = run_lipsync({"tiny": (tiny_model, None)}, split, "test", split, no_landmarks, settings)
    table = out["lipsync"]["test"]
    for source in ("tiny", "log-mel probe", "ground truth"):
        assert math.isnan(table[source]["r_jaw"]) and math.isnan(table[source]["closure_jaw"])
    truth = table["ground truth"]
    assert math.isnan(truth["r_aperture"])
    assert truth["envelope_r"] > 0.9 and truth["envelope_lag_ms"] == 0.0
    assert truth["silence_closure"] < 0.1  # the captured mouth rests in the pauses
    assert math.isnan(truth["two_label_r"])  # no generator to replay for real captures
    assert out["lipsync_sets"]["test"]["num_clips"] == 3 and out["lipsync_seconds"] > 0
    with pytest.raises(ValueError, match="heldout_folder must name"):
        lipsync_sets(None, None, None)


def lipsync_results() -> dict:
    nan = float("nan")
    scores = {"r_jaw": 0.42, "r_aperture": 0.4, "closure_jaw": 0.8, "closure_aperture": 0.7, "rest_jaw": 0.1,
              "lag_ms": 33.3,
              "envelope_r": 0.3, "envelope_lag_ms": 0.0, "silence_closure": 0.6, "jaw_std": 0.05, "two_label_r": 0.9}
    loudness = {**scores, "r_jaw": 0.61, "envelope_r": nan, "two_label_r": nan}
    return {
        "lipsync": {"validation": {"sta": scores, "loudness": loudness}},
        "lipsync_sets": {"validation": {"description": "held-out eSpeak NG voices and sentences", "num_clips": 24,
                                        "labels": ["neutral", "happy"]}},
    }  # fmt: skip


def test_report_shows_the_lipsync_section(tmp_path):
    flat = {"split": "test", "num_clips": 2, "sta_lve": 5.0, "sta_eve": 1.7, **lipsync_results()}
    markdown = results_markdown(flat)
    section = markdown[markdown.index("### Lip sync") :]
    assert "`validation`: held-out eSpeak NG voices and sentences, 24 clips" in section
    assert "| validation | sta | 0.42 | 0.40 | 0.80 | 0.70 | 0.10 | +33 | 0.30 | +0 | 0.60 | 0.90 |" in section
    assert "| validation | loudness | 0.61 |" in section and "| 0.60 | - |" in section
    paths = write_report(flat, tmp_path)
    saved = json.loads(paths["results_json"].read_text())
    assert saved["lipsync"]["validation"]["loudness"]["envelope_r"] is None  # strict JSON: NaN as null
    # The report reads its own JSON back: undefined measures (null) show as "-".
    assert "| validation | loudness | 0.61 |" in report_markdown(json.loads(paths["json"].read_text()))
    assert "## Lip sync" not in report_markdown({"models": {"a": {"lve_mm": 1.0}}})


def test_benchmark_measures_many_checkpoints_with_the_evaluation_step(
    tmp_path, validation_folder, micro_corpus, repo_script
):
    benchmark = repo_script("benchmarks/sta_lipsync.py")
    for seed in (0, 1):  # two "checkpoints"
        torch.manual_seed(seed)
        ESARMSTAForGeneration(ESARMSTAConfig.tiny()).save_pretrained(tmp_path / f"checkpoint-{seed}")
    models = [str(tmp_path / "checkpoint-0"), str(tmp_path / "checkpoint-1")]
    out = tmp_path / "lipsync.json"
    results = benchmark.main(
        [*models, "--heldout", str(validation_folder), "--train", str(micro_corpus), "--max_train_clips", "8",
         "--max_clips", "2", "--json", str(out)]
    )  # fmt: skip
    table = results["lipsync"]["validation"]
    assert list(table) == [*models, "loudness", "log-mel probe", "ground truth"]
    assert np.isfinite(table["ground truth"]["r_aperture"])  # the rig resolver's rig measures the lip aperture
    saved = json.loads(out.read_text())  # strict JSON: undefined measures are null, not NaN
    assert saved["lipsync"]["validation"]["loudness"]["envelope_r"] is None
    assert saved["lipsync"]["validation"]["ground truth"]["r_jaw"] == pytest.approx(table["ground truth"]["r_jaw"])
    curve = benchmark.curve_table(results["lipsync"], models)  # validation, then the real-speech set
    assert curve.count("\n") == 5 and models[1] in curve.splitlines()[-1] and "real speech" in curve.splitlines()[-1]


@pytest.fixture(scope="module")
def multilingual_corpus():
    from esarm.data import SyntheticCorpusConfig, generate_synthetic_corpus

    config = SyntheticCorpusConfig.multilingual(
        num_speakers=3, languages=("en", "it"), validation_languages=("fr",), test_languages=("de",),
        speakers_per_held_out_language=1, num_sentences=1, sentence_pool_size=2, emotions=("neutral", "sad"),
    )  # fmt: skip
    return generate_synthetic_corpus(config, progress=False)


def test_language_sets_split_a_multilingual_corpus_by_language(validation_folder, tiny_model, multilingual_corpus):
    corpus = multilingual_corpus
    sets = language_sets(corpus["test"], "test")
    assert [s.name for s in sets] == ["test:en", "test:de"]
    assert all(len(s.rows) == 1 and s.rows[0]["emotion"] == "neutral" for s in sets)
    assert {s.rows[0]["language"] for s in sets} == {"en", "de"}
    assert len(language_sets(corpus["test"], "test", emotion=None)[1].rows) == 2
    assert language_sets(corpus["train"].filter(lambda r: r["language"] == "en"), "train") == []
    # The evaluation's lip-sync step measures each language beside the English held-out set.
    settings = LipSyncSettings(validation_folder, splits=("validation",), real_speech=False)
    out = run_lipsync({"tiny": (tiny_model, None)}, corpus["test"], "test", corpus["train"], None, settings)
    assert list(out["lipsync"]) == ["validation", "test:en", "test:de"]
    german = out["lipsync_languages"]["test:de"]["tiny"]
    # an untrained model's jaw may not move (r undefined): equal NaNs count as equal
    np.testing.assert_equal(german["r"], out["lipsync"]["test:de"]["tiny"]["r_jaw"])
    np.testing.assert_equal(german["english_r"], out["lipsync"]["validation"]["tiny"]["r_jaw"])
    assert out["lipsync"]["test:de"]["ground truth"]["r_jaw"] > 0.5  # the generator follows German phonemes
    assert "| test:de | tiny |" in results_markdown({"split": "test", **out})


def test_language_comparison_against_english_and_loudness():
    scores = {
        "validation": {"sta": {"r_jaw": 0.6}, "loudness": {"r_jaw": 0.5}},
        "test:de": {"sta": {"r_jaw": 0.54}, "loudness": {"r_jaw": 0.4}, "ground truth": {"r_jaw": 0.9}},
    }
    comparison = language_comparison(scores)
    assert list(comparison) == ["test:de"] and list(comparison["test:de"]) == ["sta"]
    row = comparison["test:de"]["sta"]
    assert row["ratio"] == pytest.approx(0.9) and row["over_loudness"] == pytest.approx(0.14)
    assert row["english_r"] == 0.6 and row["loudness_r"] == 0.4
    assert language_comparison({"test:de": scores["test:de"]}) == {}


def test_language_benchmark_tables_every_held_out_language(
    tmp_path, validation_folder, tiny_model, multilingual_corpus, repo_script, capsys
):
    tiny_model.save_pretrained(tmp_path / "model")
    multilingual_corpus.save_to_disk(str(tmp_path / "corpus"))
    benchmark = repo_script("benchmarks/lipsync_languages.py")
    out = benchmark.main([str(tmp_path / "model"), "--corpus", str(tmp_path / "corpus"), "--heldout",
                          str(validation_folder), "--json", str(tmp_path / "languages.json")])  # fmt: skip
    assert list(out["lipsync"]) == ["validation", "validation:en", "validation:fr", "test:en", "test:de"]
    assert list(out["lipsync_languages"]) == ["validation:en", "validation:fr", "test:en", "test:de"]
    printed = capsys.readouterr().out
    assert f"| test:de | {tmp_path / 'model'} |" in printed
    assert json.loads((tmp_path / "languages.json").read_text())["lipsync_languages"].keys() == out[
        "lipsync_languages"
    ].keys()
