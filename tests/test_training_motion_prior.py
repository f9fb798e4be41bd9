"""Stage 1 (motion prior training), the shared stage machinery (config parsing, done markers, resume) and the
motion-prior collator."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from esarm import ESARMMotionPrior, ESARMMotionPriorConfig
from esarm.data.collators import MotionPriorCollator, pad_blendshapes
from esarm.data.loading import load_split
from esarm.evaluation.rollouts import evaluate_motion_prior, reconstruct
from esarm.evaluation.run import ESARMEvaluationConfig
from esarm.training.args import parse_stage_args
from esarm.training.checkpoints import (
    DONE_MARKER,
    last_checkpoint,
    read_done_marker,
    resolve_resume_checkpoint,
    write_done_marker,
)
from esarm.training.demos_config import ESARMDemoTrainingConfig
from esarm.training.motion_prior_config import ESARMMotionPriorTrainingConfig
from esarm.training.motion_prior_trainer import train_motion_prior
from esarm.training.reward_config import ESARMRewardTrainingConfig
from esarm.training.rl_config import ESARMRLTrainingConfig
from esarm.training.sta_config import ESARMSTATrainingConfig
from esarm.utils import atomic_write_json


def _config(corpus, output_dir, **kwargs) -> ESARMMotionPriorTrainingConfig:
    values = dict(dataset_name_or_path=str(corpus), output_dir=str(output_dir), max_steps=3, per_device_train_batch_size=8,
                  logging_steps=1, save_steps=2, disable_tqdm=True, use_cpu=True)  # fmt: skip
    values.update(kwargs)
    return ESARMMotionPriorTrainingConfig(**values)


def test_every_stage_config_field_has_help():
    stages = (ESARMMotionPriorTrainingConfig, ESARMSTATrainingConfig, ESARMDemoTrainingConfig, ESARMRewardTrainingConfig,
              ESARMRLTrainingConfig, ESARMEvaluationConfig)  # fmt: skip
    for config_class in stages:
        missing = [f.name for f in dataclasses.fields(config_class) if not f.metadata.get("help")]
        assert not missing, f"{config_class.__name__} fields without help: {missing}"


def test_collator_pads_masks_and_crops():
    collator = MotionPriorCollator(max_frames=10, seed=0)
    long, short = np.random.rand(25, 52).astype(np.float32), np.random.rand(4, 52).astype(np.float32)
    batch = collator([{"blendshapes": long}, {"blendshapes": short}])
    assert batch["blendshapes"].shape == (2, 10, 52)
    assert batch["attention_mask"].sum(1).tolist() == [10, 4]
    assert torch.equal(batch["blendshapes"][1, :4], torch.from_numpy(short))
    assert float(batch["blendshapes"][1, 4:].abs().sum()) == 0.0
    # the crop is a contiguous window of the clip
    window = batch["blendshapes"][0].numpy()
    starts = [s for s in range(16) if np.allclose(long[s : s + 10], window)]
    assert len(starts) == 1


def test_parse_stage_args_reads_yaml_section_and_cli_overrides(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "motion_prior:\n  max_steps: 7\n  learning_rate: 0.01\n  model_overrides: {hidden_size: 48}\n"
        "sta:\n  max_steps: 99\n"
    )
    config = parse_stage_args(
        ESARMMotionPriorTrainingConfig, "motion_prior", [str(path), "--output_dir", str(tmp_path), "--max_steps", "5"]
    )
    assert config.max_steps == 5  # command line wins
    assert config.learning_rate == pytest.approx(0.01)  # from the yaml section
    assert json.loads(config.model_overrides) == {"hidden_size": 48}
    flat = tmp_path / "flat.yaml"
    flat.write_text("max_frames: 12\n")
    config = parse_stage_args(ESARMMotionPriorTrainingConfig, "motion_prior", ["--config", str(flat)])
    assert config.max_frames == 12
    with pytest.raises(ValueError, match="config file"):
        parse_stage_args(ESARMMotionPriorTrainingConfig, "motion_prior", [str(tmp_path / "missing.yaml")])


def test_done_marker_and_checkpoint_resolution(tmp_path):
    assert read_done_marker(tmp_path) is None
    write_done_marker(tmp_path, {"loss": np.float32(0.5), "steps": 3})
    assert read_done_marker(tmp_path) == {"loss": 0.5, "steps": 3}
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 3
    (tmp_path / DONE_MARKER).write_text("{not json")
    assert read_done_marker(tmp_path) is None
    # only checkpoints whose trainer state was written count; the largest step wins
    for step in (2, 10, 4):
        atomic_write_json(tmp_path / f"checkpoint-{step}" / "trainer_state.json", {})
    (tmp_path / "checkpoint-20").mkdir()
    assert last_checkpoint(tmp_path).endswith("checkpoint-10")
    config = ESARMMotionPriorTrainingConfig(output_dir=str(tmp_path), resume_from_checkpoint="auto")
    assert resolve_resume_checkpoint(config).endswith("checkpoint-10")
    config = ESARMMotionPriorTrainingConfig(output_dir=str(tmp_path / "empty"), resume_from_checkpoint="auto")
    assert resolve_resume_checkpoint(config) is None
    config = ESARMMotionPriorTrainingConfig(output_dir=str(tmp_path), resume_from_checkpoint=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="resume_from_checkpoint"):
        resolve_resume_checkpoint(config)


def test_train_motion_prior_saves_a_loadable_prior_with_metrics(micro_corpus, tmp_path, rig):

    config = _config(micro_corpus, tmp_path / "prior", rig_path=None)
    metrics = train_motion_prior(config)
    assert metrics["train_steps"] == 3
    for key in ("eval_reconstruction_mae", "eval_codebook_usage", "eval_reconstruction_lve", "eval_reconstruction_eve"):
        assert np.isfinite(metrics[key]), key
    assert 0 < metrics["eval_codebook_usage"] <= 1
    assert read_done_marker(tmp_path / "prior")["train_steps"] == 3
    prior = ESARMMotionPrior.from_pretrained(tmp_path / "prior")
    # the saved prior reproduces the reported reconstruction error
    again = evaluate_motion_prior(prior, load_split(micro_corpus, "validation"), rig)
    assert again["reconstruction_mae"] == pytest.approx(metrics["eval_reconstruction_mae"], rel=1e-4)
    log = json.loads((tmp_path / "prior" / "checkpoint-3" / "trainer_state.json").read_text())["log_history"]
    logged = {k for entry in log for k in entry}
    assert {"reconstruction_mae", "codebook_usage", "reconstruction_loss", "quantizer_loss"} <= logged


def test_training_reduces_reconstruction_error(micro_corpus, tmp_path):
    validation = load_split(micro_corpus, "validation")
    untrained = evaluate_motion_prior(ESARMMotionPrior(ESARMMotionPriorConfig.tiny()), validation)
    metrics = train_motion_prior(_config(micro_corpus, tmp_path / "prior", max_steps=40, learning_rate=3e-3))
    assert metrics["eval_reconstruction_mae"] < 0.7 * untrained["reconstruction_mae"]


def test_reconstruction_metrics_ignore_padding(micro_corpus):
    prior = ESARMMotionPrior(ESARMMotionPriorConfig.tiny())
    sequences = [np.asarray(b, np.float32) for b in load_split(micro_corpus, "test")["blendshapes"][:4]]
    together, _ = reconstruct(prior, sequences, batch_size=4)
    alone, _ = reconstruct(prior, sequences, batch_size=1)
    for a, b, s in zip(together, alone, sequences):
        assert a.shape == s.shape
        np.testing.assert_allclose(a, b, atol=1e-5)
    blendshapes, mask = pad_blendshapes(sequences)
    assert mask.sum().item() == sum(len(s) for s in sequences)
