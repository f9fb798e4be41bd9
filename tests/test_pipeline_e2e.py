"""The whole tiny pipeline end to end (corpus -> 5 stages -> evaluation) and its resume / skip behaviour.

CI runs ``test_tiny_pipeline_end_to_end`` (not marked slow): a reduced tiny config that asserts the ordering facts
of the results (STA beats the audio-free baselines on held-out speakers, emotion control, epsilon ordering of the
errors at the extremes, reward-model accuracy above chance), not exact numbers.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from esarm.training import runner
from esarm.training.args import load_config_file
from esarm.training.checkpoints import DONE_MARKER, read_done_marker
from esarm.training.runner import apply_overrides, run_pipeline

TINY_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
# configs/tiny.yaml (corpus, motion prior and STA model as shipped) with shorter STA training and smaller
# demonstration / reward / RL / evaluation stages
CI_SIZE = [
    "sta.max_steps=500", "sta.warmup_steps=30",
    "demos.epsilons=[0.02, 0.5, 1.0]", "demos.max_clips=16", "demos.batch_size=16",
    "reward.max_steps=40", "reward.logging_steps=20",
    "rl.max_steps=2", "rl.per_device_train_batch_size=2", "rl.num_rollouts=2", "rl.max_eval_clips=4",
    "rl.logging_steps=1",
    "evaluation.max_clips=16", "evaluation.batch_size=16", "evaluation.epsilons=[0.02, 1.0]",
    *(f"{stage}.disable_tqdm=true" for stage in ("motion_prior", "sta", "reward", "rl")),
    *(f"{stage}.save_steps=1000" for stage in ("motion_prior", "sta", "reward", "rl")),
]  # fmt: skip
E2E_CONFIG = apply_overrides(load_config_file(TINY_CONFIG), CI_SIZE)


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_tiny_pipeline_end_to_end(tmp_path, rig_path):
    config = copy.deepcopy(E2E_CONFIG)
    config["rig_path"] = str(rig_path)
    summary = run_pipeline(config, tmp_path / "run")
    stages = summary["stages"]
    assert set(stages) == set(runner.STAGES)
    for stage in runner.STAGES:
        assert (tmp_path / "run" / runner.STAGE_DIRS[stage] / DONE_MARKER).is_file(), stage
    results = json.loads((tmp_path / "run" / "evaluation" / "results.json").read_text())
    table = (tmp_path / "run" / "evaluation" / "results.md").read_text()
    assert "Table II" in table and "STA (greedy)" in table
    # Table II at the extremes: uniform random tokens are far worse than the policy
    assert results["eps_1_lve"] > results["eps_0.02_lve"]
    assert results["eps_1_eve"] > results["eps_0.02_eve"]
    # the reward model ranks held-out rollout pairs better than chance
    assert stages["reward"]["eval_accuracy"] > 0.5
    assert "reward_before" in stages["rl"] and "reward_after" in stages["rl"]
    # STA vs audio-free baselines on held-out speakers
    assert results["sta_lve"] < results["mean_baseline_lve"]
    assert results["sta_eve"] < results["mean_baseline_eve"]
    # ... and the condition-only baseline (the labels' mean pose, the best animation without audio): lip sync
    # learned from the audio, by a margin
    assert results["sta_lve"] < results["condition_baseline_lve"] - 0.3, (results["sta_lve"], results)
    assert results["sta_eve"] < results["condition_baseline_eve"]
    # emotion control: the requested emotion is recognised (chance: 1/8)
    assert results["sta_emotion_accuracy"] > 0.5


def _small_config(**motion_prior):
    return {
        "seed": 0,
        "num_threads": 1,
        "corpus": {"preset": "micro"},
        "motion_prior": {
            "max_steps": 4,
            "save_steps": 2,
            "per_device_train_batch_size": 8,
            "logging_steps": 1,
            "disable_tqdm": True,
            **motion_prior,
        },  # fmt: skip
    }


def test_interrupted_stage_resumes_and_finished_stages_are_skipped(tmp_path, monkeypatch):
    from esarm.training import motion_prior as motion_prior_module

    run = tmp_path / "run"
    # a stage "killed" after its step-2 checkpoint: the checkpoint exists, the done marker does not
    run_pipeline(_small_config(max_steps=2), run, stages=["corpus", "motion_prior"])
    (run / "motion_prior" / DONE_MARKER).unlink()
    assert (run / "motion_prior" / "checkpoint-2" / "trainer_state.json").is_file()

    calls = []
    original_train = motion_prior_module.ESARMMotionPriorTrainer.train

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("resume_from_checkpoint"))
        return original_train(self, *args, **kwargs)

    monkeypatch.setattr(motion_prior_module.ESARMMotionPriorTrainer, "train", spy)

    def corpus_must_be_skipped(self):
        raise AssertionError("a finished stage was run again")

    monkeypatch.setattr(runner.PipelineRunner, "corpus", corpus_must_be_skipped)
    summary = run_pipeline(_small_config(), run, stages=["corpus", "motion_prior"])
    assert calls and calls[0].endswith("checkpoint-2")
    state = json.loads((run / "motion_prior" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    assert read_done_marker(run / "motion_prior")["train_steps"] == 4
    assert summary["stages"]["corpus"]["num_train"] > 0  # read back from the skipped stage's marker

    # a third run skips both; resume=False reruns the selected stage from scratch
    calls.clear()
    run_pipeline(_small_config(), run, stages=["corpus", "motion_prior"])
    assert calls == []
    run_pipeline(_small_config(max_steps=1), run, resume=False, stages=["motion_prior"])
    assert calls == [None]
    assert read_done_marker(run / "motion_prior")["train_steps"] == 1


def test_pipeline_config_is_validated(tmp_path):
    with pytest.raises(ValueError, match="unknown"):
        run_pipeline({"corpus": {}, "motion_priors": {}}, tmp_path)
    with pytest.raises(ValueError, match="stages must be among"):
        run_pipeline({"corpus": {}}, tmp_path, stages=["warmup"])


def test_config_overrides_reach_nested_sections():
    base = {"sta": {"max_steps": 800, "model_overrides": {"hidden_size": 64}}, "seed": 0}
    changed = apply_overrides(
        base, ["sta.model_overrides.hidden_size=32", "sta.max_steps=500", "seed=1", "evaluation.epsilons=[0.02, 1]"]
    )
    assert changed == {
        "sta": {"max_steps": 500, "model_overrides": {"hidden_size": 32}}, "seed": 1,
        "evaluation": {"epsilons": [0.02, 1]},
    }  # fmt: skip
    assert base["sta"]["model_overrides"]["hidden_size"] == 64  # the caller's config is left alone
    with pytest.raises(ValueError, match="section.key=value"):
        apply_overrides(base, ["sta.max_steps"])
    with pytest.raises(ValueError, match="not a mapping"):
        apply_overrides(base, ["seed.value=1"])
    with pytest.raises(ValueError, match="unknown"):  # a misspelt section is caught by run_pipeline's check
        run_pipeline({"corpus": {}}, "/nonexistent", overrides=["stta.max_steps=1"])
