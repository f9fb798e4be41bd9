"""Bad input through the installed ``esarm`` script: every case exits with status 2 and one line on stderr that
names the problem, never a traceback. The cases run as real subprocesses (the console script next to the
interpreter), in parallel, against one tiny saved model and copies of it damaged in each way."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from esarm import (
    ESARMMotionPrior,
    ESARMMotionPriorConfig,
    ESARMRewardModel,
    ESARMRewardModelConfig,
    ESARMSTAConfig,
    ESARMSTAForGeneration,
)

ROOT = Path(__file__).resolve().parents[1]


def _esarm_command() -> list[str]:
    script = Path(sys.executable).parent / "esarm"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "esarm.cli"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A tiny STA model, a motion prior, a reward model, damaged copies, audio and configs."""
    root = tmp_path_factory.mktemp("bad_input")
    torch.manual_seed(0)
    ESARMSTAForGeneration(ESARMSTAConfig.tiny()).save_pretrained(root / "sta")
    ESARMMotionPrior(ESARMMotionPriorConfig.tiny()).save_pretrained(root / "prior")
    ESARMRewardModel(ESARMRewardModelConfig.tiny()).save_pretrained(root / "reward")
    weights = (root / "sta" / "model.safetensors").read_bytes()
    for name, damage in (
        ("truncated", lambda b: b[: len(b) // 2]),
        ("corrupted", lambda b: b"\xff" * 64 + b[64:]),
    ):
        shutil.copytree(root / "sta", root / name)
        (root / name / "model.safetensors").write_bytes(damage(weights))
    shutil.copytree(root / "sta", root / "wrong_type")
    config = json.loads((root / "wrong_type" / "config.json").read_text())
    (root / "wrong_type" / "config.json").write_text(json.dumps({**config, "model_type": "wav2vec2"}))
    rate = 16000
    t = np.arange(rate // 2) / rate
    soundfile.write(root / "speech.wav", 0.3 * np.sin(2 * np.pi * 180 * t), rate)
    soundfile.write(root / "short.wav", np.zeros(rate // 100), rate)  # 0.01 s: less than one frame at 30 fps
    samples = 0.3 * np.sin(2 * np.pi * 180 * t)
    samples[[100, 2000]] = np.nan, np.inf
    soundfile.write(root / "nan.wav", samples, rate, subtype="FLOAT")  # float WAV keeps NaN / inf samples
    (root / "malformed.yaml").write_text("corpus:\n  preset: tiny\n   num_workers: 2\n")
    (root / "preset.yaml").write_text("corpus:\n  preset: huge\n")
    (root / "key.yaml").write_text("sta:\n  max_stepz: 3\n")
    (root / "a_file").write_text("not a folder")
    return root


def _cases(root: Path) -> list[tuple[str, list[str], str]]:
    speech, out = str(root / "speech.wav"), str(root / "anim.csv")
    animate = ["animate", speech, "--out", out, "--model"]
    pipeline = ["pipeline", "--output-dir", str(root / "run"), "--config"]
    evaluate = ["evaluate", "--model", str(root / "sta"), "--dataset", str(root), "--output-dir", str(root / "ev")]
    return [
        ("truncated model.safetensors", [*animate, str(root / "truncated")], "truncated or corrupted"),
        ("corrupted model.safetensors", [*animate, str(root / "corrupted")], "must be a safetensors file"),
        ("motion prior as --model", [*animate, str(root / "prior")], "got a motion prior"),
        ("reward model as --model", [*animate, str(root / "reward")], "got a reward model"),
        ("motion prior to evaluate", ["evaluate", "--model", str(root / "prior"), "--dataset", str(root)],
         "got a motion prior"),
        ("STA as --reward-model", ["evaluate", "--model", str(root / "sta"), "--dataset", str(root),
                                   "--reward-model", str(root / "sta")], "must be a reward model"),
        ("wrong model_type", [*animate, str(root / "wrong_type")], "model_type 'wav2vec2'"),
        ("--device foo", [*animate, str(root / "sta"), "--device", "foo"], "--device must be a torch device"),
        *(
            [("--device cuda without CUDA", [*animate, str(root / "sta"), "--device", "cuda"], "needs a CUDA GPU")]
            if not torch.cuda.is_available() else []
        ),
        ("malformed yaml", [*pipeline, str(root / "malformed.yaml")], "must be valid yaml"),
        ("unknown corpus.preset", [*pipeline, str(root / "preset.yaml")], "corpus.preset must be one of"),
        ("unknown config key", [*pipeline, str(root / "key.yaml")], "unknown keys ['max_stepz']"),
        ("synth --preset to_dict", ["synth", "--preset", "to_dict", "--output-dir", str(root / "c")],
         "--preset must be one of"),
        ("0.01 s of audio", ["animate", str(root / "short.wav"), "--out", out, "--model", str(root / "sta")],
         "must be at least one animation frame long (534 samples"),
        ("--out under a file", [*animate[:2], "--out", str(root / "a_file" / "x.csv"), "--model", str(root / "sta")],
         str(root / "a_file")),
        ("synth --output-dir under a file", ["synth", "--preset", "micro", "--output-dir", str(root / "a_file" / "c")],
         str(root / "a_file")),
        ("pipeline --output-dir under a file", [*pipeline[:1], "--output-dir", str(root / "a_file" / "run"),
                                                "--config", "tiny"], str(root / "a_file")),
        ("missing --rig", ["pipeline", "--output-dir", str(root / "run"), "--config", "tiny", "--set",
                           f"rig_path={root / 'no_rig.npz'}"], "no such path"),
        ("--threads 0", [*animate, str(root / "sta"), "--threads", "0"], "--threads must be a positive"),
        ("--lipsync-splits train", [*evaluate, "--lipsync-splits", "train"],
         "--lipsync-splits must be a non-empty subset of ['validation', 'test'], got ['train']"),
        ("--lipsync-labels happy happy", [*evaluate, "--lipsync-labels", "happy", "happy"],
         "--lipsync-labels must be two different emotions"),
        ("--lipsync-labels joyful", [*evaluate, "--lipsync-labels", "neutral", "joyful"],
         "got ['neutral', 'joyful']"),
        ("--lipsync-max-clips 0", [*evaluate, "--lipsync-max-clips", "0"], "--lipsync-max-clips must be a positive"),
        ("--lipsync-num-sentences 21", [*evaluate, "--lipsync-num-sentences", "21"],
         "--lipsync-num-sentences must be in 1..20"),
        ("--lipsync-heldout a file", [*evaluate, "--lipsync-heldout", str(root / "a_file")],
         "--lipsync-heldout must be a folder of held-out sets"),
        ("--lipsync-heldout under a file", [*evaluate, "--lipsync-heldout", str(root / "a_file" / "h")],
         str(root / "a_file")),
        ("--set of the wrong type", [*pipeline, "tiny", "--set", "sta.max_steps=abc"],
         "sta.max_steps must be int, got 'abc' (str)"),
        ("non-finite audio", ["animate", str(root / "nan.wav"), "--out", out, "--model", str(root / "sta")],
         "must be finite, got 2 NaN/inf samples"),
        ("argparse's own error", [*animate, str(root / "sta"), "--intensity", "7"],
         "argument --intensity: invalid choice: 7 (choose from 1, 2, 3) (see esarm animate --help)"),
        ("no audio to animate", ["animate", "--out", out], "give audio files or folders to animate, or --example"),
    ]  # fmt: skip


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    )
    return subprocess.run([*_esarm_command(), *argv], capture_output=True, text=True, timeout=120, env=env)


def test_every_bad_input_is_one_line_and_exit_status_2(files):
    cases = _cases(files)
    with ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2))) as pool:
        results = list(pool.map(lambda case: _run(case[1]), cases))
    failures = []
    for (name, _argv, expected), result in zip(cases, results):
        lines = result.stderr.strip().splitlines()
        if result.returncode != 2 or len(lines) != 1 or expected not in lines[0] or not lines[0].startswith("esarm "):
            failures.append(f"{name}: exit {result.returncode}, stderr:\n{result.stderr[-2000:]}")
    assert not failures, "\n\n".join(failures)
    assert not (files / "c").exists()  # synth checked the folder before building anything
