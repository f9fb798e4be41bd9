"""Data-parallel correctness on CPU: a stage run by 2 processes (torchrun, gloo) gives the metrics of the
1-process run with the same global batch; demonstration collection gives the same dataset whatever the number of
processes; ``accelerate launch`` with one process runs the scripts unchanged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _env():
    env = dict(
        os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", MASTER_PORT=str(29500 + os.getpid() % 1000)
    )
    env.pop("WORLD_SIZE", None)
    return env


def _run(command: list[str], timeout: int = 600) -> None:
    result = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"


def _torchrun(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
            str(29500 + (os.getpid() + nproc) % 1000)]  # fmt: skip


def _prior_args(corpus, output_dir, batch_size, steps: int = 8):
    return ["scripts/train_motion_prior.py", "--dataset_name_or_path", str(corpus), "--output_dir", str(output_dir),
            "--max_steps", str(steps), "--per_device_train_batch_size", str(batch_size), "--learning_rate", "0.003",
            "--max_frames", "32", "--logging_steps", "4", "--save_steps", "100", "--seed", "1", "--use_cpu",
            "--disable_tqdm", "true"]  # fmt: skip


def test_two_processes_train_and_only_the_main_process_writes(micro_corpus, tmp_path):
    """The short version of the test below, in the default suite: 2 gloo processes train 2 steps, gather the
    evaluation (each validation clip counted once) and only rank 0 writes the model and the markers."""
    from esarm.data.loading import load_split

    _run([*_torchrun(2), *_prior_args(micro_corpus, tmp_path / "two", 4, steps=2)], timeout=300)
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["train_steps"] == 2 and np.isfinite(metrics["eval_reconstruction_mae"])
    assert metrics["eval_num_clips"] == len(load_split(micro_corpus, "validation"))
    written = sorted(p.name for p in (tmp_path / "two").iterdir() if not p.name.startswith("checkpoint-"))
    assert written.count("model.safetensors") == 1 and "esarm_stage_done.json" in written


@pytest.mark.slow
def test_two_processes_match_one_process(micro_corpus, tmp_path):
    _run([sys.executable, *_prior_args(micro_corpus, tmp_path / "one", 8)])
    _run([*_torchrun(2), *_prior_args(micro_corpus, tmp_path / "two", 4)])
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert one["train_steps"] == two["train_steps"] == 8
    # the same evaluation clips, each counted once (gathered over processes)
    assert one["eval_num_clips"] == two["eval_num_clips"]
    assert two["eval_reconstruction_mae"] == pytest.approx(one["eval_reconstruction_mae"], rel=0.1)
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=0.1)
    # only the main process wrote: one saved model, no stray per-rank files
    assert (tmp_path / "two" / "model.safetensors").is_file()
    logged = json.loads((tmp_path / "two" / "checkpoint-8" / "trainer_state.json").read_text())["log_history"]
    assert any("reconstruction_mae" in entry for entry in logged)


@pytest.mark.slow
def test_demo_collection_is_identical_with_two_processes(micro_corpus, tmp_path):
    from datasets import load_from_disk

    from esarm import ESARMMotionPrior, ESARMMotionPriorConfig, ESARMProcessor
    from esarm.data.loading import load_split
    from esarm.labels import dataset_speakers
    from esarm.training.sta import ESARMSTATrainingConfig, build_sta_model

    ESARMMotionPrior(ESARMMotionPriorConfig.tiny()).save_pretrained(tmp_path / "prior")
    speakers = dataset_speakers(load_split(micro_corpus, "train"))
    model = build_sta_model(
        ESARMSTATrainingConfig(output_dir=str(tmp_path / "sta"), motion_prior_name_or_path=str(tmp_path / "prior")),
        speakers,
    )
    model.save_pretrained(tmp_path / "sta")
    ESARMProcessor(speakers=speakers, fps=model.config.fps).save_pretrained(tmp_path / "sta")
    args = ["scripts/collect_demos.py", "--sta_name_or_path", str(tmp_path / "sta"), "--dataset_name_or_path", str(micro_corpus),
            "--splits", "train", "--epsilons", "0.02", "1.0", "--num_rollouts", "2", "--max_clips", "6",
            "--batch_size", "2", "--store_audio", "false"]  # fmt: skip
    _run([sys.executable, *args, "--output_dir", str(tmp_path / "one")])
    _run([*_torchrun(2), *args, "--output_dir", str(tmp_path / "two")])
    one = load_from_disk(str(tmp_path / "one"))["train"]
    two = load_from_disk(str(tmp_path / "two"))["train"]
    assert len(one) == len(two) == 6 * 2 * 2 + 6
    assert one["id"] == two["id"] and one["epsilon"] == two["epsilon"]
    for a, b in zip(one["motion_tokens"], two["motion_tokens"]):
        assert np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate") is None and not (Path(sys.executable).parent / "accelerate").exists(),
                    reason="accelerate CLI not installed")  # fmt: skip
def test_accelerate_launch_one_process(micro_corpus, tmp_path):
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    command = [accelerate, "launch", "--num_processes", "1", "--cpu", "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", *_prior_args(micro_corpus, tmp_path / "acc", 8)]  # fmt: skip
    _run(command)
    metrics = json.loads((tmp_path / "acc" / "metrics.json").read_text())
    assert metrics["train_steps"] == 8 and np.isfinite(metrics["eval_reconstruction_mae"])
