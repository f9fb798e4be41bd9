"""Report: Table I / Table II markdown, JSON, plots, and running tiny random models over a dataset split."""

from __future__ import annotations

import json
import math

import datasets
import numpy as np
import pytest
from PIL import Image

from esarm import ESARMRewardModel, ESARMSTAForGeneration
from esarm.blendshapes import EMOTIONS
from esarm.evaluation import metrics, report, run
from esarm.evaluation.classifier import ExpressionClassifier

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Table II of the paper, as hand-made results
PAPER_TABLE_II = {
    "RAVDESS": {0.02: (3.18, 3.67), 0.25: (4.45, 4.39), 0.5: (6.59, 6.30), 0.75: (10.79, 10.35), 1.0: (13.94, 13.71)},
    "MEAD": {0.02: (3.04, 3.17), 0.25: (5.41, 5.62), 0.5: (7.72, 7.91), 0.75: (11.01, 11.32), 1.0: (14.01, 14.20)},
}


def paper_epsilons():
    return {
        dataset: {str(eps): {"lve_mm": lve, "eve_mm": eve, "lve_mm_std": 0.3, "eve_mm_std": 0.2}
                  for eps, (lve, eve) in rows.items()}
        for dataset, rows in PAPER_TABLE_II.items()
    }  # fmt: skip


def test_table_i_layout():
    models = {"FaceFormer": {"lve_mm": 4.123, "eve_mm": 5.0}, "ESARM": {"lve_mm": 3.04, "eve_mm": math.nan}}
    lines = report.table_models_markdown(models).strip().splitlines()
    assert lines[0] == "| Model | LVE (mm) | EVE (mm) |"
    assert lines[1] == "|---|---|---|"
    assert lines[2] == "| FaceFormer | 4.12 | 5.00 |"
    assert lines[3] == "| ESARM | 3.04 | – |"


def test_table_i_extra_columns_only_when_present():
    models = {"A": {"lve_mm": 1.0, "eve_mm": 2.0, "fdd_mm2": -0.5}, "B": {"lve_mm": 1.5, "eve_mm": 2.5}}
    header = report.table_models_markdown(models, extra=True).splitlines()[0]
    assert "FDD (mm²)" in header and "MVE" not in header


def test_table_ii_layout_matches_the_paper():
    lines = report.table_epsilons_markdown(paper_epsilons()).strip().splitlines()
    assert lines[0] == "| ε | RAVDESS LVE | RAVDESS EVE | MEAD LVE | MEAD EVE |"
    assert lines[2] == "| 0.02 | 3.18 | 3.67 | 3.04 | 3.17 |"
    assert lines[-1] == "| 1.00 | 13.94 | 13.71 | 14.01 | 14.20 |"
    assert len(lines) == 2 + 5


def test_json_round_trip_and_nan_as_null(tmp_path):
    results = {"models": {"A": {"lve_mm": np.float32(1.5), "eve_mm": math.nan, "num_frames": np.int64(3)}}}
    path = report.write_json(results, tmp_path / "r.json")
    loaded = json.loads(path.read_text())
    assert loaded == {"models": {"A": {"lve_mm": 1.5, "eve_mm": None, "num_frames": 3}}}


def _is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 2000


def test_plots_are_png(tmp_path):
    rng = np.random.default_rng(0)
    curves = report.plot_blendshape_curves(rng.uniform(0, 1, (60, 52)), rng.uniform(0, 1, (60, 52)), tmp_path / "c.png")
    errors = report.plot_epsilon_errors(paper_epsilons(), tmp_path / "e.png")
    rewards = report.plot_reward_vs_epsilon({0.0: [3.0, 3.2], 0.5: [1.0, 1.4], 1.0: -2.0}, tmp_path / "r.png")
    assert all(_is_png(p) for p in (curves, errors, rewards))
    assert not list(tmp_path.glob(".*"))  # atomic writes leave no temporary file


def test_plot_errors(tmp_path):
    with pytest.raises(ValueError, match="finite"):
        report.plot_reward_vs_epsilon({0.1: [math.nan]}, tmp_path / "r.png")
    with pytest.raises(ValueError, match="ARKit names"):
        report.plot_blendshape_curves(np.zeros((5, 52)), None, tmp_path / "c.png", names=("jawOpen", "smile"))
    with pytest.raises(ValueError, match="finite"):
        bad = np.zeros((5, 52))
        bad[0, 0] = np.nan
        report.plot_blendshape_curves(bad, None, tmp_path / "c.png")


def test_render_rig_poses(tmp_path, rig):
    poses = (("neutral", {}), ("jawOpen", {"jawOpen": 1.0}), ("blink", {"eyeBlinkLeft": 1.0}))
    path = report.render_rig_poses(rig, tmp_path / "rig.png", poses=poses, height=64, columns=2)
    image = np.asarray(Image.open(path))
    assert image.shape[0] == 2 * 64 and image.shape[2] == 3
    tile_width = image.shape[1] // 2
    neutral, jaw = image[:64, :tile_width].astype(int), image[:64, tile_width:].astype(int)
    assert np.abs(neutral - jaw).sum() > 0  # the open jaw changes the picture
    assert image[64:, tile_width:].max() == 0  # the unused cell stays empty
    with pytest.raises(ValueError, match="ARKit names"):
        report.render_rig_poses(rig, tmp_path / "bad.png", poses=(("x", {"smile": 1.0}),))


def test_write_report_nested(tmp_path):
    epsilons = paper_epsilons()
    epsilons["MEAD"]["0.02"]["rewards"] = [2.0, 2.5]
    epsilons["MEAD"]["1.0"]["rewards"] = [-1.0, -0.5]
    results = {"dataset": "MEAD", "split": "test", "rig": "ICT-FaceKit", "models": {"STA": {"lve_mm": 3.2, "eve_mm": 3.3}},
               "epsilons": epsilons}  # fmt: skip
    curves = {"predicted": np.zeros((30, 52)), "target": np.ones((30, 52)) * 0.5, "title": "clip 0"}
    paths = report.write_report(results, tmp_path, curves=curves)
    assert set(paths) == {"markdown", "json", "curves", "epsilon_errors", "reward_vs_epsilon"}
    markdown = paths["markdown"].read_text()
    assert "| STA | 3.20 | 3.30 |" in markdown and "| 0.25 | 4.45 | 4.39 | 5.41 | 5.62 |" in markdown
    assert "not with numbers published on FLAME" in markdown
    assert json.loads(paths["json"].read_text())["models"]["STA"]["lve_mm"] == 3.2
    assert all(_is_png(paths[k]) for k in ("curves", "epsilon_errors", "reward_vs_epsilon"))


def test_write_report_accepts_the_training_pipeline_flat_results(tmp_path):
    flat = {"split": "test", "num_clips": 4, "rig": True, "sta_lve": 3.0, "sta_eve": 2.0, "sta_mae": 0.1,
            "sta_emotion_accuracy": 0.5, "mean_baseline_lve": 5.0, "mean_baseline_eve": 4.0, "eps_0.5_lve": 7.7,
            "eps_0.5_eve": 7.9, "eps_0_lve": 3.1, "eps_0_eve": 3.2, "swap_lip_change_lve": 1.0,
            "reward/accuracy": 0.9, "classifier": "ExpressionClassifier"}  # fmt: skip
    paths = report.write_report(flat, tmp_path)
    # the run's own tables and numbers come from the same writer
    assert "| STA (greedy) | 0.1000 | 3.000 | 2.000 | 0.500 |" in paths["results_markdown"].read_text()
    assert json.loads(paths["results_json"].read_text())["sta_lve"] == 3.0
    markdown = paths["markdown"].read_text()
    assert "| sta | 3.00 | 2.00 |" in markdown and "| mean_baseline | 5.00 | 4.00 |" in markdown
    assert "swap" not in markdown.split("Table II")[0]
    assert "face rig." in markdown and "True" not in markdown
    assert "| 0.00 | 3.10 | 3.20 |" in markdown and "| 0.50 | 7.70 | 7.90 |" in markdown
    assert _is_png(paths["epsilon_errors"])


# ---------------------------------------------------------------------------------------------------------------------
# running tiny random models


def tiny_corpus(num_clips: int = 6, seed: int = 0):
    """A DatasetDict in the package's schema: 1-1.5 s of noise audio and random blendshapes at 30 fps."""
    rng = np.random.default_rng(seed)

    def split(name, count):
        rows = []
        for i in range(count):
            seconds = float(rng.uniform(1.0, 1.5))
            audio = (rng.normal(0, 0.1, int(seconds * 16000))).astype(np.float32)
            rows.append({
                "id": f"{name}-{i}", "speaker": f"{name}_speaker", "emotion": EMOTIONS[i % len(EMOTIONS)],
                "intensity": 1 + i % 3, "sentence": "a sentence", "audio": audio.tolist(), "sampling_rate": 16000,
                "blendshapes": rng.uniform(0, 1, (round(seconds * 30), 52)).astype(np.float32).tolist(), "fps": 30.0,
            })  # fmt: skip
        return datasets.Dataset.from_list(rows)

    return datasets.DatasetDict({"train": split("train", 16), "test": split("test", num_clips)})


@pytest.fixture
def tiny_sta(tiny_sta_config):
    return ESARMSTAForGeneration(tiny_sta_config).eval()


def test_evaluate_model_on_a_split(tiny_sta, tiny_reward_config, rig):

    corpus = tiny_corpus()
    classifier = ExpressionClassifier(seed=0).fit(corpus["train"], epochs=5)
    results = run.evaluate_model(
        tiny_sta, corpus["test"], rig, speakers=[], batch_size=4, classifier=classifier, reward_model=ESARMRewardModel(tiny_reward_config).eval(),
        num_diversity_samples=2, return_predictions=True, progress=False,
    )  # fmt: skip
    assert results["num_clips"] == 6 and len(results["predictions"]) == 6
    for prediction, target, row in zip(results["predictions"], results["targets"], corpus["test"]):
        assert prediction.shape == target.shape and prediction.shape[1] == 52
        assert abs(len(prediction) - len(row["blendshapes"])) <= 1
    for key in ("lve_mm", "lve_squared_mm2", "eve_mm", "mve_mm", "fdd_mm2", "blendshape_mae", "lve_mm_std"):
        assert np.isfinite(results[key])
    assert results["lve_mm"] > 0 and 0 <= results["emotion_accuracy"] <= 1
    assert len(results["rewards"]) == 6 and np.isfinite(results["rewards"]).all()
    assert results["reward_std"] >= 0
    assert results["diversity_mm"] >= 0
    # the same metrics recomputed from the returned predictions

    assert results["lve_mm"] == pytest.approx(metrics.lve(results["predictions"], results["targets"], rig))


def test_evaluate_model_is_deterministic_and_limits_samples(tiny_sta, rig):
    corpus = tiny_corpus()
    first = run.evaluate_model(tiny_sta, corpus["test"], rig, speakers=[], epsilon=0.5, max_samples=2, seed=1,
                                  progress=False)  # fmt: skip
    second = run.evaluate_model(tiny_sta, corpus["test"], rig, speakers=[], epsilon=0.5, max_samples=2, seed=1,
                                   progress=False)  # fmt: skip
    assert first["num_clips"] == 2
    assert first["lve_mm"] == second["lve_mm"] and first["eve_mm"] == second["eve_mm"]


def test_evaluate_script_runs_the_evaluation_and_writes_the_report(tmp_path, tiny_sta, rig_path, repo_script):
    corpus = tiny_corpus(num_clips=4)
    corpus.save_to_disk(str(tmp_path / "corpus"))
    tiny_sta.save_pretrained(tmp_path / "sta")
    results = repo_script("scripts/evaluate.py").main(
        ["--model_paths", str(tmp_path / "sta"), "--dataset_name_or_path", str(tmp_path / "corpus"), "--output_dir",
         str(tmp_path / "out"), "--rig", str(rig_path), "--epsilons", "1.0", "--dataset_name", "tiny",
         "--batch_size", "4"]
    )  # fmt: skip
    assert set(results["models"]) == {"sta"} and set(results["epsilons"]["tiny"]) == {"1.0"}
    assert "emotion_accuracy" in results["models"]["sta"]
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| sta |" in markdown and "| ε | tiny LVE | tiny EVE |" in markdown
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["models"]["sta"]["lve_mm"] == pytest.approx(results["models"]["sta"]["lve_mm"])
    assert _is_png(tmp_path / "out" / "blendshape_curves.png") and _is_png(tmp_path / "out" / "epsilon_errors.png")


def test_run_evaluation_rejects_unknown_split(tmp_path, rig_path):
    corpus = tiny_corpus(num_clips=2)
    corpus.save_to_disk(str(tmp_path / "corpus"))
    with pytest.raises(ValueError, match="split must be one of"):
        run.run_evaluation(["unused"], tmp_path / "corpus", split="validation", rig=rig_path)
