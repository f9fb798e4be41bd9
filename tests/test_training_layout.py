"""The stage layout's contracts: one validation style for every stage config (typed fields, ``Literal`` choices,
``Interval`` / ``OneOf`` rules), one evaluation batch-size name, ``sta_name_or_path`` everywhere, and the deprecated
names (modules, classes, config keys, flags) that still resolve, with a ``FutureWarning``, for one release."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import yaml

from esarm.evaluation.lipsync_evaluation import LipSyncSettings
from esarm.evaluation.run import ESARMEvaluationConfig
from esarm.training.args import ESARMTrainingArguments, parse_stage_args
from esarm.training.demos_config import ESARMDemoTrainingConfig
from esarm.training.motion_prior_config import ESARMMotionPriorTrainingConfig
from esarm.training.reward_config import ESARMRewardTrainingConfig
from esarm.training.rl_config import ESARMRLTrainingConfig
from esarm.training.runner import check_pipeline_config, rename_deprecated_sections
from esarm.training.sta_config import ESARMSTATrainingConfig

STAGE_CONFIGS = (ESARMMotionPriorTrainingConfig, ESARMSTATrainingConfig, ESARMDemoTrainingConfig,
                 ESARMRewardTrainingConfig, ESARMRLTrainingConfig)  # fmt: skip
SHARED = ("dataset_name_or_path", "train_split", "eval_split", "model_config", "model_overrides", "rig_path", "seed",
          "per_device_eval_batch_size")  # fmt: skip


def test_every_stage_config_shares_the_base_fields_and_names():
    base = {f.name for f in dataclasses.fields(ESARMTrainingArguments)}
    assert set(SHARED) <= base
    for config_class in STAGE_CONFIGS:
        assert issubclass(config_class, ESARMTrainingArguments)
        names = {f.name for f in dataclasses.fields(config_class)}
        assert not names & {"eval_batch_size", "batch_size", "policy_name_or_path", "demos_name_or_path"}
    for config_class in (ESARMDemoTrainingConfig, ESARMRewardTrainingConfig, ESARMRLTrainingConfig):
        assert "sta_name_or_path" in {f.name for f in dataclasses.fields(config_class)}


@pytest.mark.parametrize(
    ("config_class", "values", "message"),
    [
        (ESARMRLTrainingConfig, {"num_rollouts": 1}, "num_rollouts must be a number >= 2, got 1"),
        (ESARMRLTrainingConfig, {"cliprange": 1.0}, "cliprange must be a number > 0 and < 1, got 1.0"),
        (ESARMRLTrainingConfig, {"reward_type": "dens"}, r"reward_type must be one of \['sparse', 'dense'\], got 'dens'"),
        (ESARMRLTrainingConfig, {"top_k": 0}, "top_k must be a number >= 1, got 0"),
        (ESARMSTATrainingConfig, {"cross_alignment": "warp"}, "cross_alignment must be one of"),
        (ESARMSTATrainingConfig, {"cross_reconstruction_weight": -1.0}, "cross_reconstruction_weight must be a number >= 0"),
        (ESARMRewardTrainingConfig, {"ranking_sources": []}, "ranking_sources must be a non-empty list of"),
        (ESARMRewardTrainingConfig, {"snippet_alignment": True}, "snippet_alignment must be one of"),
        (ESARMDemoTrainingConfig, {"epsilons": []}, "epsilons must be a non-empty list of a number >= 0 and <= 1s"),
        (ESARMDemoTrainingConfig, {"per_device_eval_batch_size": 0}, "per_device_eval_batch_size must be a number >= 1"),
        (ESARMMotionPriorTrainingConfig, {"max_frames": 0}, "max_frames must be a number >= 1, got 0"),
    ],
)
def test_stage_configs_check_their_fields_by_annotation(tmp_path, config_class, values, message):
    with pytest.raises(ValueError, match=message):
        config_class(output_dir=str(tmp_path), **values)


def test_cross_field_rules_stay_in_post_init(tmp_path):
    with pytest.raises(ValueError, match="steps_per_generation must be a multiple of gradient_accumulation_steps=2"):
        ESARMRLTrainingConfig(output_dir=str(tmp_path), gradient_accumulation_steps=2, steps_per_generation=3)
    assert ESARMRLTrainingConfig(output_dir=str(tmp_path), gradient_accumulation_steps=2).steps_per_generation == 2
    with pytest.raises(ValueError, match="min_snippet_length must be <= snippet_length=3, got 5"):
        ESARMRewardTrainingConfig(output_dir=str(tmp_path), snippet_length=3, min_snippet_length=5)


def test_literal_choices_reach_the_command_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_stage_args(ESARMRLTrainingConfig, args=["--output_dir", str(tmp_path), "--reward_type", "dens"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("old_module", "old_name", "new_module", "new_name"),
    [
        ("esarm.training.reward", "ESARMRewardConfig", "esarm.training.reward_config", "ESARMRewardTrainingConfig"),
        ("esarm.training.reward", "build_source_pairs", "esarm.data.demonstrations", "build_source_pairs"),
        ("esarm.training.reward", "evaluate_ranking", "esarm.evaluation.ranking", "evaluate_ranking"),
        ("esarm.training.reward", "train_reward_model", "esarm.training.reward_trainer", "train_reward_model"),
        ("esarm.training.rl", "ESARMRLConfig", "esarm.training.rl_config", "ESARMRLTrainingConfig"),
        ("esarm.training.rl", "evaluate_policy", "esarm.evaluation.policy", "evaluate_policy"),
        ("esarm.training.rl", "rloo_advantages", "esarm.training.rl_utils", "rloo_advantages"),
        ("esarm.training.rl", "train_rl", "esarm.training.rl_trainer", "train_rl"),
        ("esarm.training.demos", "ESARMDemoConfig", "esarm.training.demos_config", "ESARMDemoTrainingConfig"),
        ("esarm.training.demos", "collect_demos", "esarm.training.demos_trainer", "collect_demos"),
        ("esarm.training.sta", "train_sta", "esarm.training.sta_trainer", "train_sta"),
        ("esarm.training.sta", "ESARMSTATrainingConfig", "esarm.training.sta_config", "ESARMSTATrainingConfig"),
        ("esarm.training.motion_prior", "ESARMMotionPriorTrainer", "esarm.training.motion_prior_trainer",
         "ESARMMotionPriorTrainer"),
        ("esarm.training", "ESARMRLConfig", "esarm.training.rl_config", "ESARMRLTrainingConfig"),
    ],
)  # fmt: skip
def test_moved_names_keep_a_deprecated_alias(old_module, old_name, new_module, new_name):
    with pytest.warns(FutureWarning, match=rf"{old_module}\.{old_name} is deprecated .* use "):
        value = getattr(importlib.import_module(old_module), old_name)
    assert value is getattr(importlib.import_module(new_module), new_name)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        importlib.import_module(old_module).no_such_name  # noqa: B018


def test_renamed_config_file_keys_and_flags_still_parse(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"rl": {"policy_name_or_path": "runs/x/sta", "num_rollouts": 3},
                                    "demos": {"splits": ["train"], "batch_size": 4}}))  # fmt: skip
    with pytest.warns(FutureWarning, match="'policy_name_or_path' is deprecated .* use 'sta_name_or_path'"):
        config = parse_stage_args(ESARMRLTrainingConfig, "rl", [str(path), "--output_dir", str(tmp_path)])
    assert (config.sta_name_or_path, config.num_rollouts) == ("runs/x/sta", 3)
    with pytest.warns(FutureWarning, match="'batch_size' is deprecated"):
        demos = parse_stage_args(ESARMDemoTrainingConfig, "demos", [str(path), "--output_dir", str(tmp_path)])
    assert (demos.splits, demos.eval_split, demos.per_device_eval_batch_size) == (["train"], None, 4)
    with pytest.warns(FutureWarning, match="--policy_name_or_path is deprecated .* use --sta_name_or_path"):
        config = parse_stage_args(ESARMRLTrainingConfig, args=["--policy_name_or_path=s", "--output_dir", "o"])
    assert config.sta_name_or_path == "s"


def test_pipeline_sections_with_old_keys_are_renamed(tmp_path):
    old = {
        "rl": {"policy_name_or_path": "s"},
        "reward": {"demos_name_or_path": "d", "eval_batch_size": 4},
        "evaluation": {"batch_size": 8, "lipsync_num_sentences": 4, "lipsync_probe_clips": 64, "lipsync": True},
    }
    with pytest.warns(FutureWarning, match="config section 'evaluation': 'lipsync_num_sentences' is deprecated"):
        values = rename_deprecated_sections(old)
    check_pipeline_config(values)
    assert values["rl"] == {"sta_name_or_path": "s"}
    assert values["reward"] == {"dataset_name_or_path": "d", "per_device_eval_batch_size": 4}
    assert values["evaluation"] == {"per_device_eval_batch_size": 8, "lipsync": {"num_sentences": 4, "probe_clips": 64}}
    assert old["rl"] == {"policy_name_or_path": "s"}, "the caller's config is not changed"


def test_lipsync_settings_are_one_nested_dataclass(tmp_path):
    config = ESARMEvaluationConfig(lipsync={"heldout": str(tmp_path / "h"), "max_clips": 5})
    assert config.lipsync == LipSyncSettings(heldout=str(tmp_path / "h"), max_clips=5)
    assert ESARMEvaluationConfig(lipsync=False).lipsync is None
    assert ESARMEvaluationConfig(lipsync=True).lipsync == LipSyncSettings() == ESARMEvaluationConfig().lipsync
    assert not [f for f in dataclasses.fields(ESARMEvaluationConfig) if f.name.startswith("lipsync_")]
    with pytest.raises(ValueError, match=r"lipsync.splits must be a non-empty subset of \['validation', 'test'\]"):
        LipSyncSettings(splits=["train"])
    with pytest.raises(ValueError, match="lipsync.labels must be two different emotions"):
        ESARMEvaluationConfig(lipsync={"labels": ["happy", "happy"]})
    with pytest.raises(ValueError, match="lipsync.probe_clips must be a positive number .* got 0"):
        LipSyncSettings(probe_clips=0)
    with pytest.raises(ValueError, match=r"lipsync.num_sentences must be in 1\.\.20"):
        LipSyncSettings(num_sentences=21)
    (tmp_path / "not_sets").mkdir()
    (tmp_path / "not_sets" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="lipsync.heldout must be a folder of held-out sets"):
        LipSyncSettings(heldout=tmp_path / "not_sets")


def test_sharded_map_returns_every_result_in_item_order():
    from esarm.evaluation.rollouts import sharded_map

    assert sharded_map(lambda shard: [2 * x for x in shard], range(5)) == [0, 2, 4, 6, 8]
    assert sharded_map(lambda shard: [], []) == []
    with pytest.raises(ValueError, match="function must return one result per item, got 1 for 3"):
        sharded_map(lambda shard: shard[:1], [1, 2, 3])


def test_measure_clip_trims_to_the_shorter_animation(rig):
    import numpy as np

    from esarm.evaluation.metrics import lve
    from esarm.evaluation.rollouts import mean_measures, measure_clip

    predicted, target = np.full((5, 52), 0.5, np.float32), np.zeros((4, 52), np.float32)
    measures = measure_clip(predicted, target)
    assert measures == {"num_frames": 4, "mae": 0.5}
    with_rig = measure_clip(predicted, target, rig)
    assert with_rig["lve"] == pytest.approx(float(lve(predicted[:4], target, rig)))
    assert mean_measures([measures, {"num_frames": 2, "mae": 1.5}]) == {"mae": 1.0}


def test_generate_clips_trims_seeds_per_batch_and_measures(tiny_sta_config, micro_corpus, rig):
    import torch

    from esarm.data.collators import STACollator
    from esarm.data.loading import load_split
    from esarm.evaluation.rollouts import generate_clips
    from esarm.modeling_sta import ESARMSTAForGeneration

    torch.manual_seed(0)
    model = ESARMSTAForGeneration(tiny_sta_config).eval()
    rows = [dict(r) for r in load_split(micro_corpus, "train").select(range(3))]
    collator = STACollator(fps=model.config.fps)
    together = generate_clips(model, collator, rows, 3, epsilon=0.5, seed=7, rig=rig)
    again = generate_clips(model, collator, rows, 3, epsilon=0.5, seed=7, rig=rig)
    assert all((a["motion_tokens"] == b["motion_tokens"]).all() for a, b in zip(together, again))
    for clip, row in zip(together, rows):
        assert len(clip["blendshapes"]) == clip["num_frames"] <= len(row["blendshapes"]) + 1
        assert {"mae", "lve", "eve"} <= set(clip)
    # batch k is seeded seed + k * batch_size: the second clip alone, seeded 8, is the second of batches of one
    one_by_one = generate_clips(model, collator, rows, 1, epsilon=0.5, seed=7)
    alone = generate_clips(model, collator, rows[1:2], 1, epsilon=0.5, seed=8)
    assert (one_by_one[1]["motion_tokens"] == alone[0]["motion_tokens"]).all()


def test_lipsync_settings_name_a_bad_flag_as_the_command_line_spells_it():
    with pytest.raises(ValueError, match="--lipsync-max-clips must be a positive number"):
        LipSyncSettings(max_clips=0, spelling="flag")
    with pytest.raises(ValueError, match=r"--lipsync-num-sentences must be in 1\.\.20"):
        LipSyncSettings(num_sentences=21, spelling="flag")
    assert LipSyncSettings(max_clips=3, spelling="flag") == LipSyncSettings(max_clips=3)


@pytest.mark.parametrize("config_class", STAGE_CONFIGS)
def test_every_stage_prints_its_command_line_help(config_class, capsys):
    with pytest.raises(SystemExit) as done:
        parse_stage_args(config_class, args=["--help"])
    assert done.value.code == 0 and "--per_device_eval_batch_size" in capsys.readouterr().out
