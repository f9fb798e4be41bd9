"""``bf16=True`` in every training stage (motion prior, STA, reward model, RL), run by the pipeline runner on CPU.

transformers accepts bf16 without an accelerator only with ``use_cpu`` set; the stages' shared training arguments
set it, so ``--set motion_prior.bf16=true sta.bf16=true reward.bf16=true rl.bf16=true`` works on a laptop as on a
GPU. Each stage trains two steps of the micro corpus in mixed precision (float32 weights, bf16 autocast), and the
test sees it where it happens: a forward hook on every linear and convolution layer records the dtype of their
outputs during each stage's training forward passes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from contextlib import contextmanager

import pytest
import torch
from torch import nn

from esarm.training import runner
from esarm.training.checkpoints import read_done_marker
from esarm.training.motion_prior_config import ESARMMotionPriorTrainingConfig
from esarm.training.runner import STAGE_DIRS, run_pipeline

# each stage's training loss, or for RL (which logs no loss) the mean reward of its rollouts
TRAINING_STAGES = {"motion_prior": "train_loss", "sta": "train_loss", "reward": "train_loss", "rl": "train_reward"}


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.skipif(torch.accelerator.is_available(), reason="checks the CPU path (use_cpu set for bf16)")
def test_bf16_training_arguments_run_on_the_cpu_without_an_accelerator(tmp_path):
    config = ESARMMotionPriorTrainingConfig(output_dir=str(tmp_path), bf16=True)
    assert config.bf16 and config.use_cpu and config.device.type == "cpu"


def test_every_training_stage_trains_in_bf16(tmp_path, monkeypatch):
    shared = {"bf16": True, "max_steps": 2, "logging_steps": 1, "save_steps": 1000, "disable_tqdm": True}
    config = {
        "seed": 0,
        "num_threads": 1,
        "corpus": {"preset": "micro"},
        "motion_prior": {**shared, "per_device_train_batch_size": 8},
        "sta": {**shared, "per_device_train_batch_size": 4, "per_device_eval_batch_size": 8},
        "demos": {"epsilons": [0.02, 1.0], "num_rollouts": 1, "max_clips": 4, "per_device_eval_batch_size": 4},
        "reward": {**shared, "per_device_train_batch_size": 4},
        "rl": {**shared, "per_device_train_batch_size": 2, "num_rollouts": 2, "max_eval_clips": 2,
               "quality_eval_steps": 0},
    }  # fmt: skip
    # dtypes of the layer outputs seen in training-mode forward passes, per stage
    seen: dict[str, set[torch.dtype]] = defaultdict(set)
    current = {"stage": None}
    stage_progress = runner.stage_progress

    @contextmanager
    def tracked(stage):
        current["stage"] = stage
        with stage_progress(stage):
            yield

    def record(module, inputs, output):
        if module.training and isinstance(module, (nn.Linear, nn.Conv1d)) and isinstance(output, torch.Tensor):
            seen[current["stage"]].add(output.dtype)

    monkeypatch.setattr(runner, "stage_progress", tracked)
    handle = nn.modules.module.register_module_forward_hook(record)
    run = tmp_path / "run"
    try:
        run_pipeline(config, run, stages=["corpus", "motion_prior", "sta", "demos", "reward", "rl"])
    finally:
        handle.remove()
    for stage in TRAINING_STAGES:
        assert torch.bfloat16 in seen[stage], (stage, seen[stage])
    for stage, measure in TRAINING_STAGES.items():
        stage_dir = run / STAGE_DIRS[stage]
        metrics = read_done_marker(stage_dir)
        assert metrics["train_steps"] == 2, (stage, metrics)
        assert math.isfinite(metrics[measure]), (stage, metrics)
        arguments = torch.load(stage_dir / "training_args.bin", weights_only=False)
        assert arguments.bf16 and arguments.use_cpu, stage
