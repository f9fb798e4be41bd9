"""The model embedded in esarm: every entry point uses it when no model is given, offline with an empty cache; the
files in the package (sizes, float16 weights, card, licence); its packing is deterministic; saved files' modes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from safetensors import safe_open

from esarm import (
    ESARMMotionPrior,
    ESARMMotionPriorConfig,
    ESARMRewardModel,
    ESARMRewardModelConfig,
    ESARMSTAConfig,
    ESARMSTAForGeneration,
)
from esarm.default_model import BUILD_INFO_FILE, DEFAULT_MODEL_DIR, SAMPLE_SPEECH, describe_default_model
from esarm.processing_esarm import ESARMProcessor
from esarm.utils import atomic_write_text, file_sha256

ROOT = Path(__file__).resolve().parents[1]

OFFLINE_FIRST_CALL = """
import numpy as np
from transformers import pipeline

import esarm
from esarm.audio import load_audio
from esarm.default_model import SAMPLE_SPEECH
from esarm.streaming import StreamingAnimator

animate = pipeline("speech-to-animation")
result = animate(str(SAMPLE_SPEECH), emotion="happy")
audio = load_audio(str(SAMPLE_SPEECH))
animator = StreamingAnimator()
frames = np.concatenate([animator.push(audio), animator.flush()])
print(type(animate.model).__name__, animate.model.dtype, result["blendshapes"].shape, frames.shape, sep="|")
"""


def _offline_env(home: Path) -> dict[str, str]:
    """A user with nothing cached and no network: empty HOME and Hugging Face cache, the Hub offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "ESARM_"))}
    env.update(HOME=str(home), HF_HOME=str(home / "hf"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))  # fmt: skip
    return env


def test_the_package_ships_the_model_and_the_sample():
    files = {p.name: p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "processor_config.json", "README.md",
            "LICENSE", BUILD_INFO_FILE} <= set(files)  # fmt: skip
    assert sum(files.values()) <= 12 * 1024 * 1024
    assert not [name for name in files if name.endswith(".py")]  # esarm is installed wherever the folder is
    info = json.loads((DEFAULT_MODEL_DIR / BUILD_INFO_FILE).read_text())
    assert file_sha256(DEFAULT_MODEL_DIR / "model.safetensors") == info["weights_sha256"]
    with safe_open(str(DEFAULT_MODEL_DIR / "model.safetensors"), "pt") as weights:
        dtypes = {weights.get_slice(name).get_dtype() for name in weights.keys()}
    assert "F32" not in dtypes and "F16" in dtypes
    card = (DEFAULT_MODEL_DIR / "README.md").read_text()
    for section in ("## Training data", "## Evaluation", "## Limits", "## Licence", "## Rebuild"):
        assert section in card
    # the limits name the synthetic data and the languages the model was trained on (its corpus's config)
    assert "Synthetic training data" in card and "Trained on 12 languages" in card and "--example" in card
    assert "Apache License" in (DEFAULT_MODEL_DIR / "LICENSE").read_text()
    audio, rate = soundfile.read(SAMPLE_SPEECH)
    assert rate == 16000 and audio.ndim == 1 and 2.0 < len(audio) / rate < 8.0 and np.abs(audio).max() > 0.1
    assert describe_default_model().startswith("esarm's default model (")


def test_first_call_offline_with_an_empty_cache(tmp_path):
    """pipeline("speech-to-animation") and StreamingAnimator() with no model: the packaged one, float32."""
    result = subprocess.run([sys.executable, "-c", OFFLINE_FIRST_CALL], capture_output=True, text=True, timeout=300,
                            env=_offline_env(tmp_path), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    name, dtype, shape, frames = result.stdout.strip().splitlines()[-1].split("|")
    seconds = soundfile.info(SAMPLE_SPEECH).duration
    assert name == "ESARMSTAForGeneration" and dtype == "torch.float32"
    assert shape == f"({round(seconds * 30)}, 52)" and frames == shape
    assert "defaulted to" in result.stderr and str(DEFAULT_MODEL_DIR) in result.stderr  # which model, in one line
    assert not list((tmp_path / "hf").rglob("*.safetensors"))  # nothing was fetched into the cache


def test_esarm_animate_the_example_offline(tmp_path):
    out = tmp_path / "a.csv"
    command = [str(Path(sys.executable).parent / "esarm"), "animate", "--example", "--out", str(out)]
    if not Path(command[0]).is_file():
        command = [sys.executable, "-m", "esarm.cli", *command[1:]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=_offline_env(tmp_path),
                            cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("model: esarm's default model (") and len(lines) == 2
    assert lines[1].startswith(str(out)) and out.is_file()
    assert len(out.read_text().splitlines()) == 1 + round(soundfile.info(SAMPLE_SPEECH).duration * 30)


def test_greedy_mouth_keeps_the_greedy_lips_and_samples_the_upper_face():
    """``--greedy-mouth`` / ``greedy_groups=["mouth"]`` on the default model (its mouth is its own stream): the lips
    are the greedy animation's, frame for frame, while the eyes move more, and the seed fixes the sample."""
    from esarm.audio import load_audio
    from esarm.blendshapes import region_indices
    from esarm.streaming import animate_audio

    audio = load_audio(str(SAMPLE_SPEECH), target_rate=16000)
    greedy = animate_audio(None, audio, sampling_rate=16000).blendshapes
    mixed = [animate_audio(None, audio, sampling_rate=16000, seed=seed, do_sample=True, greedy_groups=["mouth"])
             .blendshapes for seed in (1, 1, 2)]  # fmt: skip
    mouth, eyes = region_indices("mouth"), region_indices("eyes")
    np.testing.assert_array_equal(mixed[0][:, mouth], greedy[:, mouth])
    np.testing.assert_array_equal(mixed[0], mixed[1])
    assert not np.array_equal(mixed[0][:, eyes], mixed[2][:, eyes])
    assert mixed[0][:, eyes].std(0).sum() > greedy[:, eyes].std(0).sum()


@pytest.fixture
def tiny_run(tmp_path) -> Path:
    """A run folder as the pipeline leaves it, for packing: a tiny STA with its processor, the corpus's done marker
    and the evaluation's results.md."""
    run = tmp_path / "run"
    torch.manual_seed(0)
    model = ESARMSTAForGeneration(ESARMSTAConfig.tiny())
    model.save_pretrained(run / "sta")
    ESARMProcessor(speakers=["spk01", "spk02"], fps=model.config.fps).save_pretrained(run / "sta")
    (run / "corpus").mkdir()
    (run / "corpus" / "esarm_stage_done.json").write_text(json.dumps({"metrics": {"num_train": 4, "num_test": 2}}))
    (run / "evaluation").mkdir()
    (run / "evaluation" / "results.md").write_text("| model | LVE (mm) |\n|---|---|\n| STA | 3.1 |\n")
    return run


def test_packing_is_deterministic_and_keeps_the_weights(tmp_path, tiny_run, repo_script):
    build = repo_script("scripts/build_default_model.py")
    config = {"seed": 0}
    first = build.pack(tiny_run / "sta", tiny_run, tmp_path / "a", config, "tiny")
    second = build.pack(tiny_run / "sta", tiny_run, tmp_path / "b", config, "tiny")
    assert first == second
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    original = ESARMSTAForGeneration.from_pretrained(tiny_run / "sta")
    packed = ESARMSTAForGeneration.from_pretrained(tmp_path / "a")
    assert packed.dtype == torch.float32
    for (name, value), (_, packed_value) in zip(original.state_dict().items(), packed.state_dict().items()):
        expected = value.half().to(value.dtype) if value.is_floating_point() else value
        assert torch.equal(packed_value, expected), name
    assert ESARMProcessor.from_pretrained(tmp_path / "a").speakers == ["spk01", "spk02"]
    assert "| STA | 3.1 |" in (tmp_path / "a" / "README.md").read_text()


def test_saved_files_get_the_umask_mode(tmp_path):
    previous = os.umask(0o027)
    try:
        torch.manual_seed(0)
        for name, model in (
            ("prior", ESARMMotionPrior(ESARMMotionPriorConfig.tiny())),
            ("sta", ESARMSTAForGeneration(ESARMSTAConfig.tiny())),
            ("reward", ESARMRewardModel(ESARMRewardModelConfig.tiny())),
        ):
            model.save_pretrained(tmp_path / name)
            assert (tmp_path / name / "model.safetensors").stat().st_mode & 0o777 == 0o640, name
        atomic_write_text(tmp_path / "notes.txt", "x")
        assert (tmp_path / "notes.txt").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(previous)


def test_esarm_animate_greedy_mouth_writes_the_greedy_lips(tmp_path):
    import csv

    from esarm.blendshapes import LIVE_LINK_NAMES, region_indices
    from esarm.cli import main

    tables = {}
    for name, flags in (("greedy", []), ("greedy_mouth", ["--greedy-mouth", "--seed", "3"])):
        path = tmp_path / f"{name}.csv"
        assert main(["animate", "--example", *flags, "--out", str(path)]) == 0
        header, *rows = list(csv.reader(path.read_text().splitlines()))
        columns = [header.index(LIVE_LINK_NAMES[i]) for i in range(len(LIVE_LINK_NAMES))]
        tables[name] = np.asarray([[float(row[c]) for c in columns] for row in rows])
    mouth = region_indices("mouth")
    np.testing.assert_array_equal(tables["greedy"][:, mouth], tables["greedy_mouth"][:, mouth])
    assert not np.array_equal(tables["greedy"], tables["greedy_mouth"])
