"""Stage 4 (reward model): ranking pairs and labels (paper eq. 1), T-REX snippets, the Trainer's loss, held-out
pairwise metrics, and a short training that separates clearly different demonstrations."""

from __future__ import annotations

import random

import datasets
import numpy as np
import pytest
import torch

from esarm.data.demonstrations import (
    RankingPairCollator,
    RankingPairDataset,
    RolloutCollator,
    build_ranking_pairs,
    build_source_pairs,
    demo_columns,
    sample_snippet_starts,
)
from esarm.evaluation.ranking import GROUND_TRUTH_EPSILON, evaluate_ranking, ranking_metrics
from esarm.training.reward_config import ESARMRewardTrainingConfig
from esarm.training.reward_trainer import ESARMRewardTrainer


# ---- pairs and labels --------------------------------------------------------------------------------------------
def test_pairs_are_same_clip_different_epsilon_with_eq1_labels():
    clip_ids = ["a", "a", "a", "b", "b", "b", "b"]
    epsilons = [0.02, 0.5, 1.0, 0.02, 0.02, 0.25, 1.0]
    pairs = build_ranking_pairs(clip_ids, epsilons, seed=0)
    # clip a: 3 pairs; clip b: 6 pairs minus the equal-epsilon one
    assert len(pairs) == 3 + 5
    for i, j, label in pairs:
        assert clip_ids[i] == clip_ids[j]
        assert epsilons[i] != epsilons[j]
        assert label == int(epsilons[i] < epsilons[j])
    assert {label for _, _, label in pairs} == {0, 1}, "pair order is randomised so both labels occur"
    assert pairs == build_ranking_pairs(clip_ids, epsilons, seed=0), "pairs are reproducible with a seed"


def test_max_pairs_per_clip_limits_each_clip():
    clip_ids = ["a"] * 5 + ["b"] * 5
    epsilons = [0.02, 0.25, 0.5, 0.75, 1.0] * 2
    pairs = build_ranking_pairs(clip_ids, epsilons, max_pairs_per_clip=3, seed=1)
    assert len(pairs) == 6
    assert sum(clip_ids[i] == "a" for i, _, _ in pairs) == 3
    with pytest.raises(ValueError, match="same length"):
        build_ranking_pairs(["a"], [0.1, 0.2])


# clip "a": ground truth (row 0), epsilon 0.02 / 0.5 rollouts (1, 2), an emotion-mismatch rollout (3), two
# checkpoint rollouts (4: step 100, 5: step 200); clip "b": one epsilon rollout and its ground truth
_CLIPS = ["a", "a", "a", "a", "a", "a", "b", "b"]
_SOURCES = ["ground_truth", "epsilon", "epsilon", "emotion_mismatch", "checkpoint", "checkpoint", "epsilon",
            "ground_truth"]  # fmt: skip
_EPSILONS = [0.0, 0.02, 0.5, 0.02, 0.0, 0.0, 0.25, 0.0]
_STEPS = [-1, -1, -1, -1, 100, 200, -1, -1]
_ERRORS = [0.0, 5.0, 8.0, 9.0, 7.0, 5.2, 6.0, 0.0]


def _better_worse(pairs):
    return {(p.i, p.j) if p.label else (p.j, p.i) for p in pairs}


def test_each_ranking_source_ranks_the_expected_rows():
    def pairs_of(source, **kwargs):
        return build_source_pairs(_CLIPS, _SOURCES, _EPSILONS, [source], checkpoint_steps=_STEPS,
                                  vertex_errors=_ERRORS, seed=0, **kwargs)  # fmt: skip

    assert _better_worse(pairs_of("epsilon")) == {(1, 2)}
    assert _better_worse(pairs_of("ground_truth")) == {(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (7, 6)}
    # near the policy only: the epsilon 0.5 rollout (row 2) and the epsilon 0.25 one of clip b (row 6, its clip's
    # smallest epsilon) differ: row 6 stays, row 2 goes
    assert _better_worse(pairs_of("ground_truth", ground_truth_negatives="near_policy")) == {
        (0, 1), (0, 3), (0, 4), (0, 5), (7, 6)
    }  # fmt: skip
    assert _better_worse(pairs_of("emotion_mismatch")) == {(0, 3), (1, 3)}
    # the final model's best rollout (row 1) counts as the latest checkpoint
    assert _better_worse(pairs_of("checkpoint")) == {(5, 4), (1, 4), (1, 5)}
    # generated rows whose LVE + EVE differ by more than 0.5 mm (5.0 vs 5.2 does not)
    assert _better_worse(pairs_of("vertex_error")) == {(1, 2), (1, 3), (1, 4), (5, 2), (5, 3), (5, 4), (4, 2),
                                                       (4, 3), (2, 3)}  # fmt: skip
    misaligned = pairs_of("misalignment", shifts=(2, 4))
    # ground truth and best rollout of each clip, each against its own audio rolled by 2 and by 4 tokens
    assert len(misaligned) == 4 * 2
    for pair in misaligned:
        assert pair.i == pair.j and pair.source == "misalignment"
        better_shift, worse_shift = (pair.shift_i, pair.shift_j) if pair.label else (pair.shift_j, pair.shift_i)
        assert better_shift == 0 and abs(worse_shift) in (2, 4)
    assert {p.label for p in misaligned} == {0, 1}
    assert {p.shift_i + p.shift_j < 0 for p in misaligned} == {True, False}, "both shift directions occur"


def test_noisy_ground_truth_rows_rank_below_the_ground_truth_and_by_epsilon():
    # clip a: ground truth (row 0), its noisy copies at 0.25 (rows 1, 2) and 1.0 (row 3), one rollout (row 4)
    clips, sources = ["a"] * 5, ["ground_truth"] + ["ground_truth_epsilon"] * 3 + ["epsilon"]
    epsilons = [0.0, 0.25, 0.25, 1.0, 0.02]
    pairs = build_source_pairs(clips, sources, epsilons, ["ground_truth_epsilon"], seed=0)
    assert _better_worse(pairs) == {(0, 1), (0, 2), (0, 3), (1, 3), (2, 3)}
    # the noisy copies are no generated rollouts: the ground_truth source does not rank them
    assert _better_worse(build_source_pairs(clips, sources, epsilons, ["ground_truth"], seed=0)) == {(0, 4)}


def test_source_pairs_cap_each_clip_and_source_and_reject_unknown_sources():
    pairs = build_source_pairs(_CLIPS, _SOURCES, _EPSILONS, ["ground_truth", "misalignment"], max_pairs_per_clip=2)
    assert sum(p.source == "ground_truth" and _CLIPS[p.i] == "a" for p in pairs) == 2
    assert sum(p.source == "misalignment" and _CLIPS[p.i] == "b" for p in pairs) == 2
    with pytest.raises(ValueError, match="sources must be among"):
        build_source_pairs(_CLIPS, _SOURCES, _EPSILONS, ["lipsync"])
    with pytest.raises(ValueError, match="checkpoint_steps"):
        build_source_pairs(_CLIPS, _SOURCES, _EPSILONS, ["checkpoint"])
    with pytest.raises(ValueError, match="ranking_sources"):
        ESARMRewardTrainingConfig(output_dir="x", ranking_sources=["epsilon", "human"])
    with pytest.raises(ValueError, match=r"ground_truth_negatives must be one of \['all', 'near_policy'\], got 'few'"):
        ESARMRewardTrainingConfig(output_dir="x", ground_truth_negatives="few")
    with pytest.raises(ValueError, match="token_embedding_init must be one of"):
        ESARMRewardTrainingConfig(output_dir="x", token_embedding_init="codebook")


def test_demo_columns_read_old_splits_without_a_source_column():
    demos = datasets.Dataset.from_list(
        [{"id": "a", "epsilon": 0.02, "is_ground_truth": False}, {"id": "a", "epsilon": 0.0, "is_ground_truth": True}]
    )
    columns = demo_columns(demos)
    assert columns["row_sources"] == ["epsilon", "ground_truth"] and columns["clip_ids"] == ["a", "a"]
    assert all(np.isnan(columns["vertex_errors"]))


def test_aligned_snippets_share_one_window_inside_both_rollouts():
    rng = random.Random(0)
    for _ in range(200):
        start_i, start_j, length = sample_snippet_starts(12, 10, 6, True, "aligned", rng, min_snippet_length=3)
        assert start_i == start_j
        assert 3 <= length <= 6 and start_i + length <= 10


def test_trex_snippets_start_the_better_rollout_no_earlier():
    rng = random.Random(0)
    for i_is_better in (True, False):
        for _ in range(200):
            start_i, start_j, length = sample_snippet_starts(12, 15, 5, i_is_better, "trex", rng, min_snippet_length=2)
            better, worse = (start_i, start_j) if i_is_better else (start_j, start_i)
            assert better >= worse
            assert start_i + length <= 12 and start_j + length <= 15
    with pytest.raises(ValueError, match="alignment"):
        sample_snippet_starts(5, 5, 3, True, "later", rng)


def test_config_validates_snippet_fields(tmp_path):
    with pytest.raises(ValueError, match="snippet_alignment"):
        ESARMRewardTrainingConfig(output_dir=str(tmp_path), snippet_alignment="random")
    with pytest.raises(ValueError, match="min_snippet_length"):
        ESARMRewardTrainingConfig(output_dir=str(tmp_path), snippet_length=3, min_snippet_length=5)


# ---- held-out metrics on hand numbers ----------------------------------------------------------------------------
def test_ranking_metrics_by_gap_and_ground_truth_on_hand_numbers():
    gt = GROUND_TRUTH_EPSILON
    clip_ids = ["a", "a", "a", "a", "b", "b", "b"]
    epsilons = [gt, 0.02, 0.5, 1.0, gt, 0.02, 1.0]
    returns = [5.0, 3.0, 2.0, 4.0, 0.0, 2.0, 1.0]
    metrics = ranking_metrics(clip_ids, epsilons, returns)
    # rollout pairs: a (0.02 > 0.5 ok, 0.02 vs 1.0 wrong, 0.5 vs 1.0 wrong), b (0.02 > 1.0 ok)
    assert metrics["num_pairs"] == 4
    assert metrics["accuracy"] == pytest.approx(0.5)
    assert metrics["accuracy_gap_0.48"] == 1.0
    assert metrics["accuracy_gap_0.98"] == pytest.approx(0.5)
    assert metrics["accuracy_gap_0.50"] == 0.0
    # ground truth beats a's rollouts but loses to b's
    assert metrics["gt_beats_eps_0.02"] == pytest.approx(0.5)
    assert metrics["gt_beats_eps_1"] == pytest.approx(0.5)
    assert metrics["return_gt"] == pytest.approx(2.5)
    assert metrics["return_eps_0.02"] == pytest.approx(2.5)
    expected_loss = np.mean([np.log1p(np.exp(x)) for x in (2.0 - 3.0, 4.0 - 3.0, 4.0 - 2.0, 1.0 - 2.0)])
    assert metrics["loss"] == pytest.approx(expected_loss)


# ---- with the tiny reward model ----------------------------------------------------------------------------------
def _demo_rows(num_clips: int, rollouts_per_eps: int, codebook_size: int, num_groups: int, seed: int):
    """Clearly separable demonstrations: eps=0.02 rollouts use the codes of plausible motions (here the lowest
    quarter of each codebook, as a trained policy concentrates on few codes), eps=1.0 rollouts uniform random codes;
    plus one ground-truth row per clip drawn like the good rollouts."""
    rng = np.random.default_rng(seed)
    rows = []
    num_tokens, plausible = 8, max(2, codebook_size // 4)
    for clip in range(num_clips):
        audio = (0.1 * rng.standard_normal(8000)).astype(np.float32)  # 0.5 s
        base = {"id": f"c{seed}-{clip}", "audio": audio, "emotion": "happy", "intensity": 2, "speaker": "s1"}
        for _ in range(rollouts_per_eps):
            good = rng.integers(0, plausible, size=(num_tokens, num_groups))
            bad = rng.integers(0, codebook_size, size=(num_tokens, num_groups))
            rows.append({**base, "epsilon": 0.02, "is_ground_truth": False, "motion_tokens": good})
            rows.append({**base, "epsilon": 1.0, "is_ground_truth": False, "motion_tokens": bad})
        truth = rng.integers(0, plausible, size=(num_tokens, num_groups))
        rows.append({**base, "epsilon": 0.0, "is_ground_truth": True, "motion_tokens": truth})
    return datasets.Dataset.from_list(rows)


@pytest.fixture
def reward_model(tiny_reward_config):
    from esarm import ESARMRewardModel

    torch.manual_seed(0)
    return ESARMRewardModel(tiny_reward_config).eval()


def _collator(model, snippet_length: int = 0) -> RankingPairCollator:
    # the tiny reward model knows no speakers: everyone is the unknown speaker (id 0)
    rollouts = RolloutCollator(speakers=(), fps=float(model.config.fps), frames_per_token=model.config.frames_per_token)
    return RankingPairCollator(rollouts, snippet_length=snippet_length, min_snippet_length=2)


def test_trainer_loss_equals_ranking_loss_of_separate_forwards(tmp_path, reward_model):
    from esarm.modeling_reward import ranking_loss

    config = reward_model.config
    demos = _demo_rows(2, 1, config.codebook_size, config.num_groups, seed=0)
    pairs = build_ranking_pairs(demos["id"], demos["epsilon"], seed=0)
    pairs = [p for p in pairs if not demos[p[0]]["is_ground_truth"] and not demos[p[1]]["is_ground_truth"]]
    dataset = RankingPairDataset(demos, pairs)
    collator = _collator(reward_model)
    items = [dataset[k] for k in range(len(dataset))]
    batch = collator(items)
    assert batch["input_values"].shape[0] == 2 * len(items) and batch["labels"].tolist() == [p[2] for p in pairs]
    args = ESARMRewardTrainingConfig(output_dir=str(tmp_path), report_to="none")
    trainer = ESARMRewardTrainer(model=reward_model, args=args, data_collator=collator)
    with torch.no_grad():
        loss = trainer.compute_loss(reward_model, batch)
        side_i = collator.rollouts.encode([item["rollout_i"] for item in items])
        side_j = collator.rollouts.encode([item["rollout_j"] for item in items])
        returns_i = reward_model(**side_i).returns
        returns_j = reward_model(**side_j).returns
        expected = ranking_loss(returns_i, returns_j, batch["labels"])
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-5)


def test_snippets_crop_tokens_and_audio_to_the_same_window(reward_model):
    config = reward_model.config
    demos = _demo_rows(1, 1, config.codebook_size, config.num_groups, seed=0)
    collator = _collator(reward_model, snippet_length=3)
    batch = collator([{"rollout_i": demos[0], "rollout_j": demos[1], "label": 1}])
    length = batch["motion_mask"].sum(1)
    assert (length == length[0]).all() and 2 <= int(length[0]) <= 3
    samples_per_token = config.frames_per_token / config.fps * 16000
    assert batch["attention_mask"].sum(1).tolist() == [round(int(length[0]) * samples_per_token)] * 2


def test_audio_shift_rolls_the_audio_against_the_motion(reward_model):
    config = reward_model.config
    demos = _demo_rows(1, 1, config.codebook_size, config.num_groups, seed=0)
    rollouts = _collator(reward_model).rollouts
    plain = rollouts.encode([demos[0]])
    shifted = rollouts.encode([demos[0]], audio_shifts=[3])
    samples = round(3 * config.frames_per_token / config.fps * 16000)
    torch.testing.assert_close(shifted["input_values"], torch.roll(plain["input_values"], samples, dims=1))
    assert torch.equal(shifted["motion_tokens"], plain["motion_tokens"])


def test_short_training_separates_clearly_different_demonstrations(tmp_path, reward_model):
    config = reward_model.config
    train = _demo_rows(6, 2, config.codebook_size, config.num_groups, seed=1)
    held_out = _demo_rows(4, 2, config.codebook_size, config.num_groups, seed=2)
    collator = _collator(reward_model)
    before = evaluate_ranking(reward_model, held_out, collator.rollouts)
    rollouts = [i for i, gt in enumerate(train["is_ground_truth"]) if not gt]
    pairs = build_ranking_pairs([train["id"][i] for i in rollouts], [train["epsilon"][i] for i in rollouts], seed=0)
    pairs = [(rollouts[i], rollouts[j], y) for i, j, y in pairs]
    args = ESARMRewardTrainingConfig(
        output_dir=str(tmp_path / "rm"),
        max_steps=30,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    trainer = ESARMRewardTrainer(
        model=reward_model.train(),
        args=args,
        train_dataset=RankingPairDataset(train, pairs),
        eval_dataset=held_out,
        data_collator=collator,
    )
    trainer.train()
    after = trainer.evaluate()
    assert after["eval_num_pairs"] == 4 * 2 * 2
    assert after["eval_accuracy"] >= 0.9, (before.get("accuracy"), after)
    assert after["eval_accuracy"] > before["accuracy"]
    assert after["eval_return_eps_0.02"] > after["eval_return_eps_1"]
    # the ground truth (plausible codes here) ranks above the noisiest rollouts
    assert after["eval_gt_beats_eps_1"] >= 0.9
    # per-source held-out accuracy: every rollout pair and every ground-truth pair of the split is counted
    assert after["eval_num_pairs_epsilon"] == 16 and after["eval_num_pairs_ground_truth"] == 4 * 4
    assert after["eval_accuracy_epsilon"] == after["eval_accuracy"]
    assert 0.0 <= after["eval_accuracy_misalignment"] <= 1.0


def test_train_reward_model_from_saved_folders_writes_a_loadable_model(tmp_path, tiny_sta_config):
    from esarm import ESARMProcessor, ESARMRewardModel
    from esarm.modeling_sta import ESARMSTAForGeneration
    from esarm.training.checkpoints import read_done_marker
    from esarm.training.reward_trainer import train_reward_model

    sta_path = tmp_path / "sta"
    ESARMSTAForGeneration(tiny_sta_config).save_pretrained(sta_path)
    ESARMProcessor(speakers=["s1"], fps=30.0).save_pretrained(sta_path)  # the demos' speaker is known: id 1
    prior = tiny_sta_config.motion_prior_config
    splits = {
        "train": _demo_rows(4, 1, prior.codebook_size, prior.num_groups, seed=1),
        "validation": _demo_rows(2, 1, prior.codebook_size, prior.num_groups, seed=2),
    }
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "demos"))
    config = ESARMRewardTrainingConfig(
        dataset_name_or_path=str(tmp_path / "demos"),
        sta_name_or_path=str(sta_path),
        output_dir=str(tmp_path / "reward_model"),
        model_overrides='{"hidden_size": 16, "intermediate_size": 32}',
        max_steps=4,
        per_device_train_batch_size=2,
        save_steps=2,
        disable_tqdm=True,
        snippet_length=6,
        token_embedding_init="motion_prior",
        resume_from_checkpoint="auto",
    )
    metrics = train_reward_model(config)
    assert metrics["train_pairs"] == 4 and metrics["train_steps"] == 4
    assert metrics["eval_num_pairs"] == 2
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and "eval_accuracy_gap_0.98" in metrics
    assert {"eval_gt_beats_eps_0.02", "eval_gt_beats_eps_1", "eval_return_gt"} <= set(metrics)
    # what the reward model looks at, per face region: token change rates and the ground truth's swap gains
    from esarm.evaluation.rl_diagnostics import group_names

    for name in group_names(prior.num_groups):
        assert 0.0 <= metrics[f"eval_token_change_rate_{name}_gt"] <= 1.0
        assert 0.0 <= metrics[f"eval_token_change_rate_{name}_policy"] <= 1.0
        assert np.isfinite(metrics[f"eval_gt_swap_gain_{name}"])
    assert read_done_marker(config.output_dir)["eval_accuracy"] == metrics["eval_accuracy"]
    model = ESARMRewardModel.from_pretrained(config.output_dir)
    assert model.config.hidden_size == 16 and model.config.codebook_size == prior.codebook_size
    assert model.config.num_speakers == 1
    # the motion-token embeddings started from the STA model's code poses (4 small steps hardly move them)
    from esarm.training.reward_trainer import code_pose_embeddings

    prior = ESARMSTAForGeneration.from_pretrained(sta_path).motion_prior.eval()
    start = code_pose_embeddings(prior, 16, model.config.initializer_range, config.seed)
    trained = model.get_input_embeddings().weight.detach()
    assert np.corrcoef(start.flatten().numpy(), trained.flatten().numpy())[0, 1] > 0.9
    # a second run resumes from the last checkpoint (step 4 = max_steps) and trains no further
    again = train_reward_model(config)
    assert again["train_steps"] == 4
    # held-out demonstrations of another stage-3 run (3 clips instead of 2): the evaluation reads those
    other = {"validation": _demo_rows(3, 1, prior.codebook_size, prior.num_groups, seed=3)}
    datasets.DatasetDict(other).save_to_disk(str(tmp_path / "other_demos"))
    config.eval_dataset_name_or_path, config.output_dir = str(tmp_path / "other_demos"), str(tmp_path / "rm_other")
    assert train_reward_model(config)["eval_num_pairs"] == 3


def test_motion_input_reward_model_decodes_with_the_sta_models_trained_prior(tmp_path, tiny_sta_config):
    """A fresh motion-input reward model would decode the demonstrations' tokens with a random prior: stage 4 loads
    the STA model's prior into it, and that prior (not a preset's) is saved with it."""
    from esarm import ESARMProcessor, ESARMRewardModel
    from esarm.modeling_sta import ESARMSTAForGeneration
    from esarm.training.reward_trainer import train_reward_model

    # a prior of another codebook size than the reward preset's (tiny: 32 codes)
    config_values = tiny_sta_config.to_dict()
    config_values["motion_prior_config"] = {**config_values["motion_prior_config"], "codebook_size": 48}
    sta_config = type(tiny_sta_config)(**{k: v for k, v in config_values.items() if k not in ("transformers_version",
                                                                                            "architectures")})  # fmt: skip
    sta = ESARMSTAForGeneration(sta_config)
    torch.manual_seed(5)
    for parameter in sta.motion_prior.parameters():  # a prior unlike any freshly initialised one
        parameter.data.normal_()
    sta.save_pretrained(tmp_path / "sta")
    ESARMProcessor(speakers=["s1"], fps=30.0).save_pretrained(tmp_path / "sta")
    prior = sta.config.motion_prior_config
    splits = {"train": _demo_rows(4, 1, prior.codebook_size, prior.num_groups, seed=1)}
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "demos"))
    config = ESARMRewardTrainingConfig(
        dataset_name_or_path=str(tmp_path / "demos"), sta_name_or_path=str(tmp_path / "sta"), eval_split=None,
        output_dir=str(tmp_path / "reward_model"), model_overrides='{"hidden_size": 16, "motion_input": "blendshapes"}',
        max_steps=2, per_device_train_batch_size=2, disable_tqdm=True, snippet_length=6, save_strategy="no",
    )  # fmt: skip
    train_reward_model(config)
    model = ESARMRewardModel.from_pretrained(config.output_dir)
    assert model.config.motion_input == "blendshapes" and model.config.codebook_size == 48
    reference = sta.motion_prior.state_dict()
    for name, value in model.motion_prior.state_dict().items():
        assert torch.equal(value, reference[name]), name
    config.sta_name_or_path, config.output_dir = None, str(tmp_path / "no_sta")
    with pytest.raises(ValueError, match="sta_name_or_path"):
        train_reward_model(config)


def test_code_pose_embeddings_follow_the_decoded_poses(tiny_sta_config):
    from esarm.modeling_sta import ESARMSTAForGeneration
    from esarm.training.reward_trainer import code_pose_embeddings

    torch.manual_seed(0)
    prior = ESARMSTAForGeneration(tiny_sta_config).motion_prior.eval()
    groups, codes = prior.num_groups, prior.codebook_size
    embeddings = code_pose_embeddings(prior, 48, std=0.02, seed=3)
    assert embeddings.shape == (groups * codes, 48)
    assert torch.equal(embeddings, code_pose_embeddings(prior, 48, std=0.02, seed=3)), "a fixed projection per seed"
    for group, indices in enumerate(prior.groups):
        rows = embeddings[group * codes : (group + 1) * codes]
        assert rows.std().item() == pytest.approx(0.02, rel=1e-4)
        # distances between codes follow distances between their decoded poses (random projection: rank order
        # of the pairwise distances is kept, up to the projection's distortion)
        ids = torch.arange(codes)[:, None, None].expand(codes, 4, groups)
        poses = prior.decode(ids)
        poses = poses[:, poses.shape[1] // 2, indices]
        pose_distances = torch.pdist(poses)
        embedding_distances = torch.pdist(rows)
        rho = np.corrcoef(np.argsort(np.argsort(pose_distances.detach().numpy())),
                          np.argsort(np.argsort(embedding_distances.numpy())))[0, 1]  # fmt: skip
        assert rho > 0.8, f"group {group}: Spearman {rho:.2f} between pose and embedding distances"


def test_command_line_parses_into_the_config(tmp_path):
    from esarm.training.args import parse_stage_args

    with pytest.warns(FutureWarning, match="--demos_name_or_path is deprecated .* use --dataset_name_or_path"):
        config = parse_stage_args(
            ESARMRewardTrainingConfig,
            section="reward",
            args=[
                "--demos_name_or_path",
                "d",
                "--output_dir",
                str(tmp_path),
                "--snippet_length",
                "8",
                "--max_pairs_per_clip",
                "3",
            ],
        )
    assert (config.dataset_name_or_path, config.snippet_length, config.max_pairs_per_clip) == ("d", 8, 3)
    assert config.report_to == [] or config.report_to in ("none", ["none"])
