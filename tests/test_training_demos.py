"""Stage 3 (ranked demonstrations): dataset layout, ranks, ground-truth rows, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import load_from_disk

from esarm.data.schema import decode_audio_value
from esarm.training.checkpoints import read_done_marker
from esarm.training.demos_config import ESARMDemoTrainingConfig
from esarm.training.demos_trainer import ExplorationNoiseLogitsProcessor, collect_demos, token_run_lengths


@pytest.fixture(scope="module")
def sta_path(tmp_path_factory, micro_corpus):
    from esarm import ESARMMotionPrior, ESARMMotionPriorConfig, ESARMProcessor
    from esarm.data.loading import load_split
    from esarm.labels import dataset_speakers
    from esarm.training.sta_config import ESARMSTATrainingConfig
    from esarm.training.sta_trainer import build_sta_model

    root = tmp_path_factory.mktemp("models")
    ESARMMotionPrior(ESARMMotionPriorConfig.tiny()).save_pretrained(root / "prior")
    speakers = dataset_speakers(load_split(micro_corpus, "train"))
    config = ESARMSTATrainingConfig(output_dir=str(root / "sta"), motion_prior_name_or_path=str(root / "prior"))
    model = build_sta_model(config, speakers)
    model.save_pretrained(root / "sta")
    ESARMProcessor(speakers=speakers, fps=model.config.fps).save_pretrained(root / "sta")
    return root / "sta"


def _collect(sta_path, corpus, output_dir, **kwargs):
    values = dict(sta_name_or_path=str(sta_path), dataset_name_or_path=str(corpus), output_dir=str(output_dir),
                  train_split="train", eval_split=None, epsilons=[0.02, 0.5, 1.0], num_rollouts=2, max_clips=5,
                  per_device_eval_batch_size=2, seed=3)  # fmt: skip
    values.update(kwargs)
    return collect_demos(ESARMDemoTrainingConfig(**values))


def test_config_validates():
    with pytest.raises(ValueError, match="epsilons"):
        ESARMDemoTrainingConfig(epsilons=[0.1, 1.5])
    with pytest.raises(ValueError, match="num_rollouts"):
        ESARMDemoTrainingConfig(num_rollouts=0)


def test_demonstrations_are_ranked_by_epsilon(sta_path, micro_corpus, tmp_path, rig_path):
    metrics = _collect(sta_path, micro_corpus, tmp_path / "demos", rig_path=str(rig_path))
    assert metrics["train_lve_eps_1"] > 0 and metrics["train_eve_eps_0.02"] > 0
    demos = load_from_disk(str(tmp_path / "demos"))["train"]
    rollouts = demos.filter(lambda r: not r["is_ground_truth"])
    truth = demos.filter(lambda r: r["is_ground_truth"])
    assert len(rollouts) == 5 * 3 * 2 and len(truth) == 5
    assert metrics["train_num_rollouts"] == 30
    assert read_done_marker(tmp_path / "demos")["train_num_rollouts"] == 30
    ranks = {round(e, 2): r for e, r in zip(rollouts["epsilon"], rollouts["rank"])}
    assert ranks == {0.02: 0, 0.5: 1, 1.0: 2}
    assert set(truth["rank"]) == {-1}
    corpus = load_from_disk(str(micro_corpus))["train"]
    for row in rollouts.select(range(6)):
        source = corpus[row["source_index"]]
        assert row["id"] == source["id"] and row["emotion"] == source["emotion"]
        np.testing.assert_allclose(row["audio"], decode_audio_value(source["audio"]))
        tokens, blendshapes = np.asarray(row["motion_tokens"]), np.asarray(row["blendshapes"])
        assert tokens.shape[1] == 3 and blendshapes.shape[1] == 52
        assert abs(len(blendshapes) - len(row["audio"]) / 16000 * 30) <= 1
        assert abs(len(tokens) - np.ceil(len(blendshapes) / 2)) <= 1
    # at epsilon = 1 every code is uniform: tokens of two rollouts of a clip differ
    noisy = rollouts.filter(lambda r: r["epsilon"] == 1.0 and r["source_index"] == 0)
    assert not np.array_equal(np.asarray(noisy[0]["motion_tokens"]), np.asarray(noisy[1]["motion_tokens"]))


def test_collection_is_deterministic_for_a_seed(sta_path, micro_corpus, tmp_path):
    _collect(sta_path, micro_corpus, tmp_path / "a", include_ground_truth=False, store_audio=False)
    _collect(sta_path, micro_corpus, tmp_path / "b", include_ground_truth=False, store_audio=False)
    a = load_from_disk(str(tmp_path / "a"))["train"]
    b = load_from_disk(str(tmp_path / "b"))["train"]
    assert a["id"] == b["id"] and a["epsilon"] == b["epsilon"]
    for x, y in zip(a["motion_tokens"], b["motion_tokens"]):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert all(len(audio) == 0 for audio in a["audio"])  # store_audio=False keeps only the reference


def test_emotion_mismatch_and_checkpoint_rows(sta_path, micro_corpus, tmp_path, rig_path):
    import shutil

    from esarm.training.demos_trainer import checkpoint_step

    checkpoint = tmp_path / "checkpoint-5"
    shutil.copytree(sta_path, checkpoint)
    assert checkpoint_step(str(checkpoint)) == 5
    with pytest.raises(ValueError, match="checkpoint-<step>"):
        checkpoint_step(str(sta_path))
    metrics = _collect(sta_path, micro_corpus, tmp_path / "demos", epsilons=[0.02, 1.0], num_rollouts=1,
                       emotion_mismatch=True, checkpoints_name_or_path=[str(checkpoint)], rig_path=str(rig_path))  # fmt: skip
    demos = load_from_disk(str(tmp_path / "demos"))["train"]
    sources = demos["source"]
    assert {s: sources.count(s) for s in set(sources)} == {
        "epsilon": 5 * 2, "emotion_mismatch": 5, "checkpoint": 5, "ground_truth": 5,
    }  # fmt: skip
    assert metrics["train_num_rollouts"] == 5 * 4 and metrics["train_lve_emotion_mismatch"] > 0
    for row in demos:
        if row["source"] == "emotion_mismatch":
            # generated for another emotion, kept with the requested one (and the smallest epsilon)
            assert row["generated_emotion"] != row["emotion"] and row["epsilon"] == pytest.approx(0.02)
        elif row["source"] == "checkpoint":
            assert row["checkpoint_step"] == 5 and row["epsilon"] == 0.0
        else:
            assert row["generated_emotion"] == row["emotion"] and row["checkpoint_step"] == -1
        assert row["lve"] >= 0 and (row["lve"] == 0) == (row["source"] == "ground_truth")


def test_noise_options_validate():
    with pytest.raises(ValueError, match="epsilon_noise"):
        ESARMDemoTrainingConfig(epsilon_noise="gaussian")
    with pytest.raises(ValueError, match="epsilon_regions"):
        ESARMDemoTrainingConfig(epsilon_regions=["nose"])
    with pytest.raises(ValueError, match="epsilon_regions"):
        ESARMDemoTrainingConfig(epsilon_regions=[])
    with pytest.raises(ValueError, match="include_ground_truth"):
        ESARMDemoTrainingConfig(epsilon_noise="hold", include_ground_truth=False)


def test_token_run_lengths():
    tokens = np.array([[1, 5], [1, 5], [2, 5], [2, 6], [2, 6]])
    mouth, eyes = token_run_lengths([tokens, tokens[:1]])
    assert sorted(mouth.tolist()) == [1, 2, 3] and sorted(eyes.tolist()) == [1, 2, 3]


def _noise_tokens(processor, policy_codes, steps):
    """Run ``processor`` over ``steps`` steps of scores whose argmax is ``policy_codes`` ``[B * G]``; returns
    the chosen codes ``[steps, B * G]``."""
    scores = torch.zeros(len(policy_codes), 32)
    scores[torch.arange(len(policy_codes)), policy_codes] = 5.0
    return torch.stack([processor(None, scores).argmax(-1) for _ in range(steps)])


def test_region_noise_leaves_other_groups_to_the_policy():
    policy_codes = torch.tensor([3, 4, 5] * 8)  # 8 sequences x G=3 groups (mouth, eyes, brows)
    processor = ExplorationNoiseLogitsProcessor(0.5, num_groups=3, groups=[0], seed=0)
    chosen = _noise_tokens(processor, policy_codes, 200).view(200, 8, 3)
    assert (chosen[..., 1] == 4).all() and (chosen[..., 2] == 5).all()
    noisy_share = (chosen[..., 0] != 3).float().mean().item()
    assert 0.4 < noisy_share < 0.55  # 0.5 x 31/32 of the random codes differ from the policy's


def test_held_noise_changes_codes_as_often_as_its_run_lengths():
    policy_codes = torch.zeros(64, dtype=torch.long)  # 64 sequences, one group, the policy never changes its code
    runs = [np.array([4])]  # every run of noise lasts 4 steps
    for epsilon in (0.25, 1.0):
        processor = ExplorationNoiseLogitsProcessor(epsilon, num_groups=1, groups=[0], run_lengths=runs, seed=1)
        chosen = _noise_tokens(processor, policy_codes, 400)
        noisy = (chosen != 0).float().mean().item()
        assert abs(noisy - epsilon * 31 / 32) < 0.05
        # independent per-step noise at epsilon changes the code on about 2 epsilon (1 - epsilon) + epsilon^2 of
        # steps; held noise only where a run starts or ends: at most 2 / 4 of the noisy steps
        change_rate = (chosen[1:] != chosen[:-1]).float().mean().item()
        assert change_rate < 0.5 * epsilon + 0.05
    uniform = _noise_tokens(ExplorationNoiseLogitsProcessor(1.0, 1, [0], seed=1), policy_codes, 400)
    assert (uniform[1:] != uniform[:-1]).float().mean().item() > 0.9


def test_noisy_ground_truth_rows(sta_path, micro_corpus, tmp_path, rig_path):
    _collect(sta_path, micro_corpus, tmp_path / "demos", ground_truth_epsilons=[0.5, 1.0], rig_path=str(rig_path))
    demos = load_from_disk(str(tmp_path / "demos"))["train"]
    truth = {r["id"]: np.asarray(r["motion_tokens"]) for r in demos if r["source"] == "ground_truth"}
    noisy = demos.filter(lambda r: r["source"] == "ground_truth_epsilon")
    assert len(noisy) == 5 * 2 * 2 and sorted(set(noisy["epsilon"])) == [0.5, 1.0]
    changed = {0.5: [], 1.0: []}
    for row in noisy:
        tokens = np.asarray(row["motion_tokens"])
        assert tokens.shape == truth[row["id"]].shape and len(row["blendshapes"]) >= len(tokens)
        assert row["lve"] > 0 and not row["is_ground_truth"]
        changed[row["epsilon"]].append((tokens != truth[row["id"]]).mean())
    # a share epsilon of the codes is drawn at random (1 / K of those draws the ground truth's own code)
    assert 0.3 < np.mean(changed[0.5]) < 0.6 and np.mean(changed[1.0]) > 0.8
    with pytest.raises(ValueError, match="ground_truth_epsilons"):
        ESARMDemoTrainingConfig(ground_truth_epsilons=[0.0])


@pytest.mark.parametrize("options", [{"epsilon_regions": ["mouth"]}, {"epsilon_noise": "hold"}])
def test_collect_with_other_noise(sta_path, micro_corpus, tmp_path, options):
    metrics = _collect(sta_path, micro_corpus, tmp_path / "demos", emotion_mismatch=True, **options)
    demos = load_from_disk(str(tmp_path / "demos"))["train"]
    _collect(sta_path, micro_corpus, tmp_path / "greedy", epsilons=[0.0], num_rollouts=1)
    greedy_tokens = load_from_disk(str(tmp_path / "greedy"))["train"].filter(lambda r: r["source"] == "epsilon")
    greedy_by_clip = {r["id"]: np.asarray(r["motion_tokens"]) for r in greedy_tokens}
    noisy = demos.filter(lambda r: r["source"] == "epsilon" and r["epsilon"] == 1.0)
    assert len(noisy) == 5 * 2 and sorted(set(demos["source"])) == ["emotion_mismatch", "epsilon", "ground_truth"]
    for row in noisy:
        tokens, greedy_codes = np.asarray(row["motion_tokens"]), greedy_by_clip[row["id"]]
        assert (tokens[:, 0] != greedy_codes[:, 0]).mean() > 0.5  # epsilon = 1: the mouth is noise
    if "epsilon_regions" in options:
        # eyes and brows stay the policy's argmax: they move off the greedy rollout's codes only where the noisy
        # mouth codes, fed back as the next step's input, change the policy's choice (measured with random-init
        # test models: 0-23 % of steps; noise on every group would change about 31/32 of them)
        assert "hold_mean_run_length" not in metrics
        for row in noisy:
            tokens, greedy_codes = np.asarray(row["motion_tokens"]), greedy_by_clip[row["id"]]
            assert (tokens[:, 1:] != greedy_codes[:, 1:]).mean() < 0.5
    else:
        assert len(metrics["hold_mean_run_length"]) == 3 and min(metrics["hold_mean_run_length"]) >= 1.0
