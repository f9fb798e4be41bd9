"""Stage 5 (RL fine-tuning): the RLOO / clipped-ratio algorithm on hand numbers, the KL term, the trainer's effect on
a tiny STA policy against a simple fixed reward model, ground-truth isolation and checkpoint resume."""

from __future__ import annotations

import math
from dataclasses import dataclass

import datasets
import numpy as np
import pytest
import torch
from torch import nn
from transformers.utils import ModelOutput

from esarm import ESARMProcessor
from esarm.training.rl import (
    CONDITION_KEYS,
    ESARMRLConfig,
    ESARMRLTrainer,
    clipped_policy_loss,
    masked_mean,
    rloo_advantages,
    token_log_probs,
)


@dataclass
class _RewardOutput(ModelOutput):
    returns: torch.Tensor | None = None


class LowerHalfCodeReward(nn.Module):
    """A fixed reward model: the share of valid steps whose first-group code lies in the lower half of the codebook
    (about 0.5 for a random-init policy, 1.0 at best)."""

    def __init__(self, codebook_size: int):
        super().__init__()
        self.codebook_size = codebook_size
        self.register_buffer("unused", torch.zeros(1))

    def forward(self, motion_tokens, motion_mask, **conditions):
        hit = (motion_tokens[..., 0] < self.codebook_size // 2).float() * motion_mask.float()
        return _RewardOutput(returns=hit.sum(1) / motion_mask.float().sum(1).clamp(min=1.0))


def _clips(num_clips: int = 4, seconds: float = 0.5, seed: int = 0) -> datasets.Dataset:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(num_clips):
        rows.append(
            {
                "id": f"clip{i}",
                "audio": (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32),
                "sampling_rate": 16000,
                "emotion": ["happy", "sad", "angry", "neutral"][i % 4],
                "intensity": 1 + i % 3,
                "speaker": "spk1",
                "sentence": "a sentence",
                "blendshapes": rng.random((int(30 * seconds), 52)).astype(np.float32),  # ground truth
                "tokens": rng.integers(0, 8, size=(4, 3)),
            }
        )
    return datasets.Dataset.from_list(rows)


@pytest.fixture
def policy(tiny_sta_config):
    from esarm.modeling_sta import ESARMSTAForGeneration

    torch.manual_seed(0)
    return ESARMSTAForGeneration(tiny_sta_config)


def _args(tmp_path, **overrides) -> ESARMRLConfig:
    values = dict(
        output_dir=str(tmp_path / "rl"),
        per_device_train_batch_size=2,
        num_rollouts=4,
        max_steps=2,
        learning_rate=1e-3,
        num_ppo_epochs=2,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    values.update(overrides)
    return ESARMRLConfig(**values)


# ---- the algorithm on hand numbers -------------------------------------------------------------------------------
def test_rloo_advantages_leave_one_out_on_hand_numbers():
    rewards = torch.tensor([1.0, 2.0, 3.0, 6.0, 5.0, 5.0, 5.0, 5.0])
    advantages = rloo_advantages(rewards, num_rollouts=4)
    # first clip: baselines (12 - r_i) / 3 = 11/3, 10/3, 3, 2; second clip: all equal -> no signal
    expected = torch.tensor([1 - 11 / 3, 2 - 10 / 3, 0.0, 4.0, 0.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(advantages.view(2, 4).sum(1), torch.zeros(2))


def test_rloo_advantages_rejects_single_rollouts_and_ragged_groups():
    with pytest.raises(ValueError, match="num_rollouts"):
        rloo_advantages(torch.zeros(4), num_rollouts=1)
    with pytest.raises(ValueError, match="multiple of num_rollouts"):
        rloo_advantages(torch.zeros(5), num_rollouts=2)


def test_clipped_policy_loss_on_hand_numbers():
    # three one-token sequences: ratio 1.5 with A=+1 (clipped at 1.2), ratio 0.5 with A=-1 (clipped at 0.8),
    # ratio 0.9 with A=+1 (inside the clip range)
    old_logps = torch.zeros(3, 1, 1)
    logps = torch.log(torch.tensor([1.5, 0.5, 0.9])).view(3, 1, 1).requires_grad_(True)
    advantages = torch.tensor([1.0, -1.0, 1.0])
    mask = torch.ones(3, 1, 1, dtype=torch.bool)
    loss, clip_fraction, ratio_mean = clipped_policy_loss(logps, old_logps, advantages, mask, cliprange=0.2)
    torch.testing.assert_close(loss, torch.tensor((-1.2 + 0.8 - 0.9) / 3))
    torch.testing.assert_close(clip_fraction, torch.tensor(2 / 3))
    torch.testing.assert_close(ratio_mean, torch.tensor((1.5 + 0.5 + 0.9) / 3))
    loss.backward()
    # clipped terms carry no gradient; the unclipped one gets -A * ratio / 3
    torch.testing.assert_close(logps.grad.view(-1), torch.tensor([0.0, 0.0, -0.9 / 3]))


def test_clipped_policy_loss_ignores_padded_tokens():
    logps = torch.tensor([[[0.1], [5.0]]])  # second step is padding with a huge ratio
    mask = torch.tensor([[[True], [False]]])
    loss, clip_fraction, _ = clipped_policy_loss(logps, torch.zeros_like(logps), torch.tensor([1.0]), mask, 0.2)
    torch.testing.assert_close(loss, -torch.exp(torch.tensor(0.1)))
    assert clip_fraction.item() == 0.0
    assert masked_mean(torch.tensor([1.0, 3.0]), torch.tensor([True, False])).item() == 1.0


def test_token_log_probs_match_log_softmax_with_temperature():
    logits = torch.randn(2, 3, 2, 5)
    tokens = torch.randint(0, 5, (2, 3, 2))
    logps, entropy = token_log_probs(logits, tokens, temperature=0.5)
    reference = torch.log_softmax(logits / 0.5, -1)
    torch.testing.assert_close(logps, reference.gather(-1, tokens[..., None])[..., 0])
    torch.testing.assert_close(entropy, -(reference.exp() * reference).sum(-1))


def test_config_validates_rl_fields(tmp_path):
    with pytest.raises(ValueError, match="num_rollouts must be an integer >= 2"):
        _args(tmp_path, num_rollouts=1)
    with pytest.raises(ValueError, match="cliprange"):
        _args(tmp_path, cliprange=1.5)
    with pytest.raises(ValueError, match="temperature"):
        _args(tmp_path, temperature=0.0)


# ---- the trainer on a tiny STA policy ----------------------------------------------------------------------------
def test_kl_is_zero_when_policy_equals_reference(tmp_path, policy):
    trainer = ESARMRLTrainer(
        model=policy,
        reward_model=LowerHalfCodeReward(policy.codebook_size),
        args=_args(tmp_path),
        train_dataset=_clips(),
    )
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    rollouts = trainer._prepare_inputs(batch)
    assert rollouts["motion_tokens"].shape[0] == 2 * 4  # clips x rollouts
    metrics = trainer._metric_store.pop("train")
    assert metrics["kl"] == 0.0 and metrics["kl_sequence"] == 0.0
    # the reference is a frozen copy; the policy's tempered log-probs of its own samples are finite and <= 0
    assert not any(p.requires_grad for p in trainer.ref_model.parameters())
    assert torch.isfinite(rollouts["old_logps"]).all() and (rollouts["old_logps"] <= 0).all()
    # advantages of each clip's group sum to zero before normalisation; after it they are standardised
    assert abs(rollouts["advantages"].mean().item()) < 1e-5


def test_kl_is_positive_after_the_policy_moved(tmp_path, policy):
    trainer = ESARMRLTrainer(
        model=policy,
        reward_model=LowerHalfCodeReward(policy.codebook_size),
        args=_args(tmp_path),
        train_dataset=_clips(),
    )
    with torch.no_grad():
        for parameter in policy.motion_head.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    trainer.model.train()
    trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    # k1 estimate on the policy's own samples: E_pi[log pi - log pi_ref] = KL(pi || pi_ref) > 0
    assert trainer._metric_store.pop("train")["kl"] > 0.01


def test_policy_never_receives_ground_truth(tmp_path, policy):
    from trl.experimental.utils import create_reference_model

    reference = create_reference_model(policy)  # before spying, so the reference keeps its own methods
    seen_keys: list[set[str]] = []
    original_generate, original_forward = policy.generate, policy.forward

    def spy_generate(*args, **kwargs):
        seen_keys.append(set(kwargs))
        return original_generate(*args, **kwargs)

    def spy_forward(*args, **kwargs):
        seen_keys.append(set(kwargs))
        return original_forward(*args, **kwargs)

    policy.generate, policy.forward = spy_generate, spy_forward
    dataset = _clips()
    assert {"blendshapes", "tokens"} <= set(dataset.column_names)
    trainer = ESARMRLTrainer(
        model=policy,
        reward_model=LowerHalfCodeReward(policy.codebook_size),
        ref_model=reference,
        args=_args(tmp_path),
        train_dataset=dataset,
    )
    assert "blendshapes" not in trainer.train_dataset.column_names
    batch = next(iter(trainer.get_train_dataloader()))
    assert set(batch) == set(CONDITION_KEYS)
    trainer.train()
    assert seen_keys, "the policy was never called"
    ground_truth = {"blendshapes", "tokens", "labels", "frame_mask"}
    for keys in seen_keys:
        assert not keys & ground_truth, keys


def _sampled_reward(policy, reward_model, collator, dataset, num_samples: int, seed: int) -> float:
    batch = collator([dataset[i] for i in range(len(dataset))])
    conditions = {key: value.repeat_interleave(num_samples, 0) for key, value in batch.items()}
    generated = policy.generate(**conditions, emotion=None, do_sample=True, seed=seed, decode_blendshapes=False)
    return reward_model(generated.motion_tokens, generated.token_mask).returns.mean().item()


def test_rl_steps_change_the_policy_and_raise_the_reward(tmp_path, policy):
    torch.manual_seed(0)
    reward_model = LowerHalfCodeReward(policy.codebook_size)
    dataset = _clips()
    args = _args(tmp_path, max_steps=24, learning_rate=2e-2, kl_coef=0.0, num_ppo_epochs=2)
    trainer = ESARMRLTrainer(model=policy, reward_model=reward_model, args=args, train_dataset=dataset)
    collator = trainer.data_collator
    before_weights = {n: p.detach().clone() for n, p in policy.named_parameters()}
    before = _sampled_reward(policy, reward_model, collator, dataset, num_samples=16, seed=1)
    trainer.train()
    after = _sampled_reward(policy, reward_model, collator, dataset, num_samples=16, seed=1)
    changed = [n for n, p in policy.named_parameters() if not torch.equal(p, before_weights[n])]
    assert changed, "no trainable parameter changed"
    assert not any(n.startswith("speech_encoder.encoder.") for n in changed), "the frozen speech encoder moved"
    # 64 rollouts of 8 steps each: the standard error of the mean share is about 0.02 (measured: 0.56 -> 0.97)
    assert after > before + 0.2, (before, after)
    logged = [entry for entry in trainer.state.log_history if "reward" in entry]
    for key in ("reward", "reward_std", "kl", "advantage_mean", "advantage_std", "sampling_entropy"):
        assert key in logged[0] and math.isfinite(logged[0][key])
    assert any("clip_fraction" in entry and "entropy" in entry for entry in trainer.state.log_history)


def test_checkpoint_resume_continues_from_the_saved_step(tmp_path, policy, tiny_sta_config):
    from esarm.modeling_sta import ESARMSTAForGeneration

    reward_model = LowerHalfCodeReward(policy.codebook_size)
    # keep both checkpoints (the stages' shared default keeps only the last one)
    args = _args(tmp_path, max_steps=4, save_strategy="steps", save_steps=2, save_total_limit=None, learning_rate=1e-3)
    ESARMRLTrainer(model=policy, reward_model=reward_model, args=args, train_dataset=_clips()).train()
    checkpoint = tmp_path / "rl" / "checkpoint-2"
    assert checkpoint.is_dir() and (tmp_path / "rl" / "checkpoint-4").is_dir()
    saved = dict(ESARMSTAForGeneration.from_pretrained(str(checkpoint)).named_parameters())

    torch.manual_seed(1)
    fresh = ESARMSTAForGeneration(tiny_sta_config)
    head = "motion_head.weight"
    assert (dict(fresh.named_parameters())[head] - saved[head]).abs().max() > 0.01
    trainer = ESARMRLTrainer(model=fresh, reward_model=reward_model, args=args, train_dataset=_clips())
    trainer.train(resume_from_checkpoint=str(checkpoint))
    assert trainer.state.global_step == 4
    # the log history of steps 1-2 comes back from the checkpoint; steps 3-4 are trained again
    assert [entry["step"] for entry in trainer.state.log_history if "loss" in entry] == [1, 2, 3, 4]
    # it started from checkpoint-2's weights: two Adam steps of lr 1e-3 move each weight by at most ~2e-3
    assert (dict(fresh.named_parameters())[head] - saved[head]).abs().max() < 3e-3


def test_train_rl_from_saved_folders_reports_before_and_after(tmp_path, policy, tiny_reward_config, rig_path):
    from esarm import ESARMRewardModel
    from esarm.modeling_sta import ESARMSTAForGeneration
    from esarm.training.checkpoints import read_done_marker
    from esarm.training.rl import train_rl

    policy.save_pretrained(tmp_path / "sta")
    ESARMProcessor(speakers=["spk1"], fps=policy.config.fps).save_pretrained(tmp_path / "sta")  # spk1 -> speaker id 1
    ESARMRewardModel(tiny_reward_config).save_pretrained(tmp_path / "reward_model")
    datasets.DatasetDict({"train": _clips(4, seed=0), "validation": _clips(2, seed=1)}).save_to_disk(
        str(tmp_path / "corpus")
    )
    config = ESARMRLConfig(
        policy_name_or_path=str(tmp_path / "sta"),
        reward_model_name_or_path=str(tmp_path / "reward_model"),
        dataset_name_or_path=str(tmp_path / "corpus"),
        output_dir=str(tmp_path / "rl"),
        rig_path=str(rig_path),
        per_device_train_batch_size=2,
        per_device_eval_batch_size=2,
        num_rollouts=2,
        max_steps=2,
        save_strategy="no",
        disable_tqdm=True,
    )
    metrics = train_rl(config)
    for key in ("reward", "blendshape_mae", "lve_mm", "eve_mm", "sampled_reward", "sampled_lve_mm"):
        assert math.isfinite(metrics[f"{key}_before"]) and math.isfinite(metrics[f"{key}_after"]), key
    assert metrics["lve_mm_before"] > 0 and metrics["train_steps"] == 2
    assert {"train_reward", "train_kl", "train_reward_first"} <= set(metrics)
    assert read_done_marker(config.output_dir)["reward_after"] == metrics["reward_after"]
    tuned = ESARMSTAForGeneration.from_pretrained(config.output_dir)
    assert tuned.config.num_groups == policy.config.num_groups

    assert ESARMProcessor.from_pretrained(config.output_dir).speakers == ["spk1"]


def test_command_line_parses_into_the_config(tmp_path):
    from esarm.training.args import parse_stage_args

    config = parse_stage_args(
        ESARMRLConfig, section="rl", args=["--output_dir", str(tmp_path), "--num_rollouts", "3", "--top_k", "5"]
    )
    assert (config.num_rollouts, config.top_k, config.kl_coef, config.learning_rate) == (3, 5, 0.05, 1e-5)
