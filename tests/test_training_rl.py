"""Stage 5 (RL fine-tuning): the RLOO / clipped-ratio algorithm on hand numbers, the KL term, the trainer's effect on
a tiny STA policy against a simple fixed reward model, ground-truth isolation and checkpoint resume."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import datasets
import numpy as np
import pytest
import torch
from torch import nn
from transformers.utils import ModelOutput

from esarm import ESARMProcessor, ESARMRewardModelConfig
from esarm.evaluation.policy import evaluate_policy, quality_score
from esarm.evaluation.rollouts import CONDITION_KEYS
from esarm.training.args import ESARMTrainingArguments
from esarm.training.rl_config import ESARMRLTrainingConfig
from esarm.training.rl_trainer import ESARMRLTrainer, HeldOutQualityCallback, PolicyInputCollator
from esarm.training.rl_utils import clipped_policy_loss, masked_mean, returns_to_go, rloo_advantages, token_log_probs


@dataclass
class _RewardOutput(ModelOutput):
    rewards: torch.Tensor | None = None
    returns: torch.Tensor | None = None


class LowerHalfCodeReward(nn.Module):
    """A fixed reward model with the real one's interface (its ``ESARMRewardModelConfig``, with the policy's token
    geometry, and its output fields): the share of valid steps whose first-group code lies in the lower half of the
    codebook (about 0.5 for a random-init policy, 1.0 at best)."""

    def __init__(self, policy):
        super().__init__()
        self.config = ESARMRewardModelConfig.from_motion_prior_config(
            policy.config.motion_prior_config, num_speakers=1, gamma=1.0
        )
        self.codebook_size = self.config.codebook_size
        self.register_buffer("unused", torch.zeros(1))

    def forward(self, motion_tokens, motion_mask, **conditions):
        hit = (motion_tokens[..., 0] < self.codebook_size // 2).float() * motion_mask.float()
        steps = motion_mask.float().sum(1, keepdim=True).clamp(min=1.0)
        return _RewardOutput(rewards=hit / steps, returns=(hit / steps).sum(1))


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


def _args(tmp_path, **overrides) -> ESARMRLTrainingConfig:
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
    return ESARMRLTrainingConfig(**values)


@pytest.mark.skipif(torch.accelerator.is_available(), reason="an accelerator keeps pinned memory")
def test_rl_config_shares_the_stages_training_arguments(tmp_path):
    """The shared defaults (no pinned memory without an accelerator: torch warns on every epoch otherwise)."""
    config = _args(tmp_path)
    assert isinstance(config, ESARMTrainingArguments)
    assert config.dataloader_pin_memory is False and config.save_total_limit == 1  # transformers' default: None


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


def test_per_step_advantages_and_returns_to_go_on_hand_numbers():
    returns = torch.tensor([[3.0, 1.0], [1.0, 1.0]])  # two rollouts of one clip, two steps
    torch.testing.assert_close(rloo_advantages(returns, 2), torch.tensor([[2.0, 0.0], [-2.0, 0.0]]))
    rewards = torch.tensor([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    torch.testing.assert_close(
        returns_to_go(rewards, mask, gamma=0.5), torch.tensor([[3.0, 4.0, 4.0], [2.0, 2.0, 0.0]])
    )
    # the clipped loss takes one advantage per step: [B, T'] broadcast over the G groups
    logps = torch.zeros(1, 2, 3)
    loss, _, _ = clipped_policy_loss(logps, logps, torch.tensor([[1.0, 3.0]]), torch.ones(1, 2, 3), 0.2)
    assert loss.item() == pytest.approx(-2.0)


def test_config_validates_rl_fields(tmp_path):
    with pytest.raises(ValueError, match="num_rollouts must be a number >= 2, got 1"):
        _args(tmp_path, num_rollouts=1)
    with pytest.raises(ValueError, match="cliprange"):
        _args(tmp_path, cliprange=1.5)
    with pytest.raises(ValueError, match="temperature"):
        _args(tmp_path, temperature=0.0)
    with pytest.raises(ValueError, match=r"quality_metric must be one of \['lve_eve', 'expressive'\], got 'fdd'"):
        _args(tmp_path, quality_metric="fdd")
    with pytest.raises(ValueError, match="quality_tolerance_mm must be a number >= 0, got -0.1"):
        _args(tmp_path, quality_tolerance_mm=-0.1)


def test_quality_score_on_hand_numbers():
    initial = {"lve_mm": 4.0, "eve_mm": 2.0, "expressive_distance": math.log(2.0)}
    assert quality_score(initial, initial) == 6.0
    assert quality_score({"blendshape_mae": 0.3}, {"blendshape_mae": 0.3}) == 0.3  # no rig
    # expressive: the mean per-clip distance from the capture's motion, while LVE and EVE stay within the tolerance
    assert quality_score(initial, initial, "expressive") == pytest.approx(math.log(2.0))
    livelier = {**initial, "lve_mm": 4.04, "eve_mm": 1.9, "expressive_distance": 2 * math.log(1.25)}
    assert quality_score(livelier, initial, "expressive", 0.05) == pytest.approx(2 * math.log(1.25))
    assert quality_score(livelier, initial, "expressive", 0.03) == math.inf  # LVE 0.04 mm worse
    assert quality_score({**livelier, "eve_mm": 2.06}, initial, "expressive", 0.05) == math.inf
    with pytest.raises(ValueError, match="metric 'expressive' needs lve_mm and eve_mm"):
        quality_score({"blendshape_mae": 0.3}, {"blendshape_mae": 0.3}, "expressive")
    with pytest.raises(ValueError, match="metric must be one of"):
        quality_score(initial, initial, "lve")


# ---- the trainer on a tiny STA policy ----------------------------------------------------------------------------
def test_kl_is_zero_when_policy_equals_reference(tmp_path, policy):
    trainer = ESARMRLTrainer(
        model=policy,
        reward_model=LowerHalfCodeReward(policy),
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
        reward_model=LowerHalfCodeReward(policy),
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
        reward_model=LowerHalfCodeReward(policy),
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
    reward_model = LowerHalfCodeReward(policy)
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


class _CountingTrainer(ESARMRLTrainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.generations = 0

    def _generate_and_score(self, inputs, mode):
        self.generations += 1
        return super()._generate_and_score(inputs, mode)


def test_every_ppo_epoch_is_an_update_with_gradient_accumulation(tmp_path, policy):
    # 2 micro-batches per update and 2 PPO epochs: one generation serves two updates, and the second update
    # replays the rollouts with a moved policy (ratio != 1)
    reward_model = LowerHalfCodeReward(policy)
    args = _args(tmp_path, max_steps=2, gradient_accumulation_steps=2, learning_rate=1e-2, logging_steps=1)
    trainer = _CountingTrainer(model=policy, reward_model=reward_model, args=args, train_dataset=_clips(8))
    trainer.train()
    assert args.steps_per_generation == 2
    assert trainer.generations == 2, "one generation per micro-batch of the generation batch, then replayed"
    ratios = [entry["ratio_mean"] for entry in trainer.state.log_history if "ratio_mean" in entry]
    assert len(ratios) == 2 and ratios[0] == pytest.approx(1.0, abs=1e-5)
    assert abs(ratios[1] - 1.0) > 1e-4, "the second PPO epoch must run on the updated policy"
    with pytest.raises(ValueError, match="steps_per_generation"):
        _args(tmp_path, gradient_accumulation_steps=2, steps_per_generation=3)


def test_adaptive_kl_raises_the_coefficient_above_the_target(tmp_path, policy):
    reward_model = LowerHalfCodeReward(policy)
    args = _args(tmp_path, max_steps=8, learning_rate=5e-2, kl_coef=0.1, kl_target=1e-4, kl_horizon=8)
    trainer = ESARMRLTrainer(model=policy, reward_model=reward_model, args=args, train_dataset=_clips())
    trainer.train()
    # the first generation has KL 0 (policy = reference): the coefficient shrinks, then grows while KL > target
    coefs = [entry["kl_coef"] for entry in trainer.state.log_history if "kl_coef" in entry]
    assert coefs[0] < 0.1 and trainer.kl_coef > min(coefs), coefs


def test_dense_rewards_train_the_policy(tmp_path, policy):
    torch.manual_seed(0)
    reward_model = LowerHalfCodeReward(policy)
    dataset = _clips()
    args = _args(tmp_path, max_steps=24, learning_rate=2e-2, kl_coef=0.0, reward_type="dense")
    trainer = ESARMRLTrainer(model=policy, reward_model=reward_model, args=args, train_dataset=dataset)
    before = _sampled_reward(policy, reward_model, trainer.data_collator, dataset, num_samples=16, seed=1)
    trainer.train()
    after = _sampled_reward(policy, reward_model, trainer.data_collator, dataset, num_samples=16, seed=1)
    assert after > before + 0.2, (before, after)


def test_quality_guard_keeps_the_best_checkpoint_and_stops_early(policy):
    scores = iter([5.0, 4.0, 4.5, 4.6, 3.0])

    def measure(model):
        lve = next(scores)
        return {"lve_mm": lve, "eve_mm": 0.0, "reward": 1.0}, {"lve_mm": np.full(4, lve), "eve_mm": np.zeros(4)}

    guard = HeldOutQualityCallback(measure, 1, 2)

    class _State:
        global_step = 0

    class _Control:
        should_training_stop = False

    state, control = _State(), _Control()
    guard.on_train_begin(None, state, control, model=policy)
    for step in (1, 2, 3):
        with torch.no_grad():
            policy.motion_head.weight.add_(1.0)
        state.global_step = step
        guard.on_step_end(None, state, control, model=policy)
    assert guard.best_step == 1 and [h["step"] for h in guard.history] == [0, 1, 2, 3]
    assert control.should_training_stop, "two checks without improvement with patience 2"
    torch.testing.assert_close(guard.best_state["motion_head.weight"] + 2.0, policy.motion_head.weight.detach())


def test_expressive_guard_keeps_the_liveliest_policy_within_the_tolerance(policy):
    checks = iter(
        [
            {"lve_mm": 4.0, "eve_mm": 2.0, "expressive_distance": 0.7},  # the STA model: damped eyes
            {"lve_mm": 4.02, "eve_mm": 2.01, "expressive_distance": 0.35},  # livelier, within 0.05 mm: kept
            {"lve_mm": 4.2, "eve_mm": 2.0, "expressive_distance": 0.0},  # as lively as the capture but worse lips
            {"lve_mm": 4.0, "eve_mm": 2.0, "expressive_distance": 0.5},
        ]
    )

    def measure(model):
        values = next(checks)
        return {"reward": 0.0, **values}, {key: np.full(3, value) for key, value in values.items()}

    guard = HeldOutQualityCallback(measure, every=1, metric="expressive", tolerance_mm=0.05)

    class _State:
        global_step = 0

    state = _State()
    guard.on_train_begin(None, state, None, model=policy)
    for step in (1, 2, 3):
        state.global_step = step
        guard.on_step_end(None, state, None, model=policy)
    assert guard.best_step == 1
    assert [h["score"] for h in guard.history][2] == math.inf


def test_evaluate_policy_measures_motion_per_region_against_the_ground_truth(policy, rig):
    from esarm.blendshapes import region_indices

    collator = PolicyInputCollator(speakers=["spk1"], fps=float(policy.config.fps))
    clips = _clips(3, seconds=1.0)
    policy.eval()
    with torch.no_grad():
        generated = policy.generate(**collator([clips[i] for i in range(3)]), emotion=None, do_sample=False)
    lengths = generated.frame_mask.sum(1).tolist()
    own = [generated.blendshapes[i, : int(n)].numpy() for i, n in enumerate(lengths)]
    # the ground truth is the policy's own greedy animation, then the same with the eyes moving twice as much
    as_truth = clips.remove_columns("blendshapes").add_column("blendshapes", [a.tolist() for a in own])
    values = evaluate_policy(policy, LowerHalfCodeReward(policy), as_truth, collator, rig=rig)
    assert values["lve_mm"] < 1e-3 and values["eve_mm"] < 1e-3
    for region in ("mouth", "eyes", "brows"):
        assert values[f"std_ratio_{region}"] == pytest.approx(1.0, rel=1e-4), region
    eyes = region_indices("eyes")
    livelier = []
    for animation in own:
        truth = animation.copy()
        truth[:, eyes] = animation[:, eyes].mean(0) + 2.0 * (animation[:, eyes] - animation[:, eyes].mean(0))
        livelier.append(truth.tolist())
    values = evaluate_policy(
        policy, LowerHalfCodeReward(policy),
        clips.remove_columns("blendshapes").add_column("blendshapes", livelier), collator, rig=rig,
    )  # fmt: skip
    assert values["std_ratio_eyes"] == pytest.approx(0.5, rel=1e-4)
    assert values["std_ratio_mouth"] == pytest.approx(1.0, rel=1e-4) and values["eve_mm"] > 1e-3


def test_ablation_sweeps_rl_options_one_at_a_time(repo_script):
    rl_ablation = repo_script("benchmarks/rl_ablation.py")
    centre = {"learning_rate": 3e-4, "max_steps": 40, "kl_coef": 0.05}
    assert rl_ablation.rl_variants(centre, {}) == [("", centre)]
    variants = rl_ablation.rl_variants(centre, json.loads('{"learning_rate": [1e-4, 1e-3], "kl_target": [null]}'))
    assert [name for name, _ in variants] == ["", "learning_rate=0.0001", "learning_rate=0.001", "kl_target=null"]
    assert variants[0][1] == centre
    assert variants[2][1] == {"learning_rate": 1e-3, "max_steps": 40, "kl_coef": 0.05}
    assert variants[3][1] == {**centre, "kl_target": None}
    with pytest.raises(ValueError, match="must be an ESARMRLTrainingConfig field, got 'lr'"):
        rl_ablation.rl_variants(centre, {"lr": [1e-4]})
    with pytest.raises(ValueError, match="non-empty list, got learning_rate: 0.001"):
        rl_ablation.rl_variants(centre, {"learning_rate": 1e-3})


def test_checkpoint_resume_continues_from_the_saved_step(tmp_path, policy, tiny_sta_config):
    from esarm.modeling_sta import ESARMSTAForGeneration

    reward_model = LowerHalfCodeReward(policy)
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
    from esarm.training.rl_trainer import train_rl

    policy.save_pretrained(tmp_path / "sta")
    ESARMProcessor(speakers=["spk1"], fps=policy.config.fps).save_pretrained(tmp_path / "sta")  # spk1 -> speaker id 1
    ESARMRewardModel(tiny_reward_config).save_pretrained(tmp_path / "reward_model")
    datasets.DatasetDict({"train": _clips(4, seed=0), "validation": _clips(2, seed=1)}).save_to_disk(
        str(tmp_path / "corpus")
    )
    config = ESARMRLTrainingConfig(
        sta_name_or_path=str(tmp_path / "sta"),
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
        quality_eval_steps=1,
        quality_eval_clips=2,
    )
    metrics = train_rl(config)
    assert [h["step"] for h in metrics["quality_history"]] == [0, 1, 2]
    assert metrics["quality_best_step"] in (0, 1, 2) and "hacking" in metrics
    assert metrics["guard_accepted"] in (0, 1) and metrics["guard_metric"] == "lve_eve"
    assert metrics["quality_best_step"] == (metrics["guard_candidate_step"] if metrics["guard_accepted"] else 0)
    for key in ("reward", "blendshape_mae", "lve_mm", "eve_mm", "std_ratio_eyes", "sampled_reward", "sampled_lve_mm"):
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
        ESARMRLTrainingConfig, section="rl", args=["--output_dir", str(tmp_path), "--num_rollouts", "3", "--top_k", "5"]
    )
    assert (config.num_rollouts, config.top_k, config.kl_coef, config.learning_rate) == (3, 5, 0.05, 1e-5)


def test_iterated_rl_retrains_the_reward_model_on_each_rounds_policy(tmp_path, policy):
    from esarm import ESARMRewardModel
    from esarm.training.demos_config import ESARMDemoTrainingConfig
    from esarm.training.iterated_rl import ITERATED_RANKING_SOURCES, train_iterated_rl
    from esarm.training.reward_config import ESARMRewardTrainingConfig

    policy.save_pretrained(tmp_path / "sta")
    ESARMProcessor(speakers=["spk1"], fps=policy.config.fps).save_pretrained(tmp_path / "sta")
    initial = ESARMRewardModel(ESARMRewardModelConfig.tiny(num_speakers=1))  # spk1: id 1 in the demonstrations
    initial.save_pretrained(tmp_path / "reward_model")
    datasets.DatasetDict({"train": _clips(4, seed=0), "validation": _clips(2, seed=1)}).save_to_disk(
        str(tmp_path / "corpus")
    )
    common = dict(save_strategy="no", disable_tqdm=True, per_device_eval_batch_size=2)
    rl = ESARMRLTrainingConfig(
        sta_name_or_path=str(tmp_path / "sta"), reward_model_name_or_path=str(tmp_path / "reward_model"),
        dataset_name_or_path=str(tmp_path / "corpus"), output_dir=str(tmp_path / "unused"),
        per_device_train_batch_size=2, num_rollouts=2, max_steps=1, max_eval_clips=0, **common,
    )  # fmt: skip
    reward = ESARMRewardTrainingConfig(
        output_dir=str(tmp_path / "unused"), max_steps=2, per_device_train_batch_size=2, snippet_length=6,
        learning_rate=1e-2, **common,
    )  # fmt: skip
    demos = ESARMDemoTrainingConfig(output_dir=str(tmp_path / "unused"), epsilons=[0.02, 0.5], max_clips=2, **common)
    result = train_iterated_rl(rl, reward, demos, rounds=2, output_dir=tmp_path / "iterated")

    first, second = result["rounds"]
    assert first["reward_model"] == str(tmp_path / "reward_model")
    assert second["policy_start"] == str(tmp_path / "iterated" / "round0" / "rl")
    assert second["reward_model"] == result["reward_model"] == str(tmp_path / "iterated" / "round0" / "reward_model")
    assert result["policy"] == str(tmp_path / "iterated" / "round1" / "rl") and "reward" not in second
    # the retraining ranked the capture above the round's samples (one epsilon: no epsilon pairs) and moved the model
    demos_rows = datasets.load_from_disk(str(tmp_path / "iterated" / "round0" / "demos"))["train"]
    assert set(demos_rows["source"]) == {"ground_truth", "epsilon"}
    assert set(np.round(demos_rows["epsilon"], 6)) == {0.0, 0.02}
    assert first["reward"]["train_pairs"] == sum(first["reward"][f"train_pairs_{s}"] for s in ITERATED_RANKING_SOURCES)
    retrained = ESARMRewardModel.from_pretrained(result["reward_model"]).state_dict()
    assert any(not torch.equal(value, retrained[name]) for name, value in initial.state_dict().items())
    # a second call reads every finished sub-stage back
    assert train_iterated_rl(rl, reward, demos, rounds=2, output_dir=tmp_path / "iterated")["rounds"][0]["rl"] == (
        first["rl"]
    )
    with pytest.raises(ValueError, match="rounds must be an integer >= 1"):
        train_iterated_rl(rl, reward, demos, rounds=0, output_dir=tmp_path / "x")
