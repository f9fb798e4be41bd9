"""Region-wise RL: which parameters each codebook group's logits depend on (checked by perturbing each one), and RL
that trains the eyes and brows while the mouth's weights, logits and greedy tokens stay bit-identical."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import datasets
import numpy as np
import pytest
import torch
from torch import nn
from transformers.utils import ModelOutput

from esarm import ESARMMotionPriorConfig, ESARMRewardModelConfig, ESARMSTAConfig
from esarm.modeling_sta import ESARMSTAForGeneration
from esarm.training.rl_config import ESARMRLTrainingConfig
from esarm.training.rl_trainer import ESARMRLTrainer, PolicyInputCollator, freeze_other_groups


def _policy(mouth_conditioning: str, seed: int = 0) -> ESARMSTAForGeneration:
    torch.manual_seed(seed)
    return ESARMSTAForGeneration(ESARMSTAConfig.tiny(mouth_conditioning=mouth_conditioning))


def _clips(num_clips: int = 4, seconds: float = 0.5, seed: int = 0) -> datasets.Dataset:
    rng = np.random.default_rng(seed)
    return datasets.Dataset.from_list(
        [
            {
                "audio": (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32),
                "sampling_rate": 16000,
                "emotion": ["happy", "sad", "angry", "neutral"][i % 4],
                "intensity": 1 + i % 3,
                "speaker": "spk1",
            }
            for i in range(num_clips)
        ]
    )


@dataclass
class _RewardOutput(ModelOutput):
    rewards: torch.Tensor | None = None
    returns: torch.Tensor | None = None


class LowerHalfEyeCodeReward(nn.Module):
    """A fixed reward model with the real one's interface: the share of valid steps whose eye code (group 1) lies in
    the lower half of the codebook; it ignores the mouth, which region-wise RL keeps greedy."""

    def __init__(self, policy):
        super().__init__()
        self.config = ESARMRewardModelConfig.from_motion_prior_config(
            policy.config.motion_prior_config, num_speakers=1, gamma=1.0
        )
        self.register_buffer("unused", torch.zeros(1))

    def forward(self, motion_tokens, motion_mask, **conditions):
        hit = (motion_tokens[..., 1] < self.config.codebook_size // 2).float() * motion_mask.float()
        steps = motion_mask.float().sum(1, keepdim=True).clamp(min=1.0)
        return _RewardOutput(rewards=hit / steps, returns=(hit / steps).sum(1))


def _logits(model, batch, motion_tokens, labelled: bool) -> torch.Tensor:
    conditions = dict(batch) if labelled else {k: v for k, v in batch.items() if k != "emotion_ids"}
    with torch.no_grad():
        return model(**conditions, motion_tokens=motion_tokens).logits


def _units(model) -> dict[str, list[str]]:
    """Parameter names by module (each token embedding table on its own)."""
    units: dict[str, list[str]] = {}
    for name, _ in model.named_parameters():
        parts = name.split(".")
        units.setdefault(".".join(parts[:2]) if parts[0] == "token_embeddings" else parts[0], []).append(name)
    return units


@pytest.mark.parametrize("mouth_conditioning", ["full", "content", "parallel"])
def test_logit_dependencies_are_the_groups_each_parameter_changes(mouth_conditioning):
    """Perturb each module in turn: the groups whose logits change are exactly those logit_dependencies names
    (without labels, so the emotion classifier picks the style)."""
    policy = _policy(mouth_conditioning).eval()
    collator = PolicyInputCollator(speakers=["spk1"], fps=float(policy.config.fps))
    rows = _clips(2)
    batch = collator([rows[i] for i in range(2)])
    steps = int(policy.num_motion_steps(batch["input_values"].shape[1]))
    motion_tokens = torch.randint(0, policy.config.codebook_size, (2, steps, policy.config.num_groups))
    reference = _logits(policy, batch, motion_tokens, labelled=False)
    dependencies = policy.logit_dependencies()
    assert set(dependencies) == {name for name, _ in policy.named_parameters()}
    parameters = dict(policy.named_parameters())
    for unit, names in _units(policy).items():
        saved = {name: parameters[name].detach().clone() for name in names}
        with torch.no_grad():
            if unit == "emotion_head":  # moves the classifier's choice of style: another emotion for clip 0
                predicted = int(policy.classify_emotion(policy(**batch).emotion_features).argmax(-1)[0])
                parameters["emotion_head.weight"].zero_()
                parameters["emotion_head.bias"].zero_()[(predicted + 1) % policy.config.num_emotions] = 100.0
            else:
                for name in names:
                    parameters[name].add_(0.5 * torch.randn_like(parameters[name]))
        logits = _logits(policy, batch, motion_tokens, labelled=False)
        changed = {g for g in range(policy.config.num_groups) if not torch.equal(logits[:, :, g], reference[:, :, g])}
        declared = set().union(*(dependencies[name] for name in names))
        with torch.no_grad():
            for name in names:
                parameters[name].copy_(saved[name])
        if unit == "mask_embedding":  # replaces previous-token inputs in training mode only
            assert changed == set(), unit
            continue
        assert changed == declared, (mouth_conditioning, unit, changed, declared)


def test_region_wise_rl_trains_eyes_and_brows_and_leaves_the_mouth_bit_identical(tmp_path):
    policy = _policy("parallel")
    sta = copy.deepcopy(policy)
    before = {name: value.detach().clone() for name, value in policy.named_parameters()}
    args = ESARMRLTrainingConfig(
        output_dir=str(tmp_path / "rl"), per_device_train_batch_size=2, num_rollouts=4, max_steps=3,
        learning_rate=1e-2, weight_decay=0.1, num_ppo_epochs=1, save_strategy="no", disable_tqdm=True, seed=0,
        trainable_groups=["eyes", "brows"], entropy_coef=0.01,
    )  # fmt: skip
    trainer = ESARMRLTrainer(
        model=policy, reward_model=LowerHalfEyeCodeReward(policy), args=args, train_dataset=_clips()
    )
    assert trainer.trainable_groups == (1, 2) and trainer.greedy_groups == [0]
    trainable = {name for name, value in policy.named_parameters() if value.requires_grad}
    assert {"motion_head.weight", "motion_transformer.layers.0.attention.qkv.weight"} & trainable
    for frozen in ("mouth_head.weight", "mouth_style.weight", "content_encoder", "style_projection.weight",
                   "emotion_encoder", "emotion_head.weight", "speech_encoder"):  # fmt: skip
        assert not any(name.startswith(frozen) for name in trainable), frozen

    # rollouts: the mouth greedy, the eyes and brows sampled
    batch = trainer.data_collator([_clips()[i] for i in range(2)])
    rollouts = trainer._generate_and_score(batch, mode="train")["motion_tokens"]  # [2 * 4, T', G]
    with torch.no_grad():
        greedy = policy.generate(**batch, emotion=None, do_sample=False, decode_blendshapes=False).motion_tokens
    assert torch.equal(rollouts[..., 0], greedy[..., 0].repeat_interleave(4, dim=0))
    assert not torch.equal(rollouts[..., 1:], greedy[..., 1:].repeat_interleave(4, dim=0))

    trainer.train()
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimised == {id(value) for value in policy.parameters() if value.requires_grad}
    after = dict(policy.named_parameters())
    for name, value in before.items():
        if name not in trainable:
            assert torch.equal(after[name], value), f"{name} changed though frozen"
    assert any(not torch.equal(after[name], before[name]) for name in trainable), "no trainable parameter moved"

    trainer.save_model(str(tmp_path / "tuned"))
    tuned = ESARMSTAForGeneration.from_pretrained(str(tmp_path / "tuned")).eval()
    sta.eval()
    steps = int(sta.num_motion_steps(batch["input_values"].shape[1]))
    tokens = torch.randint(0, sta.config.codebook_size, (2, steps, sta.config.num_groups))
    for labelled in (True, False):
        old, new = _logits(sta, batch, tokens, labelled), _logits(tuned, batch, tokens, labelled)
        assert torch.equal(old[:, :, 0], new[:, :, 0]), labelled
        assert not torch.equal(old[:, :, 1:], new[:, :, 1:]), labelled
    with torch.no_grad():
        old, new = (m.generate(**batch, emotion=None, do_sample=False).motion_tokens for m in (sta, tuned))
    assert torch.equal(old[..., 0], new[..., 0])


def test_region_wise_rl_refuses_a_policy_that_cannot_isolate_the_frozen_groups(tmp_path):
    with pytest.raises(ValueError, match=r"mouth_conditioning='full' where \['eyes', 'brows'\] share"):
        freeze_other_groups(_policy("full"), ["brows", "eyes"])
    with pytest.raises(ValueError, match=r"\['eyes'\] must keep parameters of their own"):
        freeze_other_groups(_policy("parallel"), ["eyes"])
    mouth_only = _policy("content")
    assert freeze_other_groups(mouth_only, ["mouth"]) == (0,)
    assert {n.split(".")[0] for n, p in mouth_only.named_parameters() if p.requires_grad} == {
        "mouth_input", "mouth_transformer", "mouth_head"
    }  # fmt: skip
    single_codebook = ESARMMotionPriorConfig.tiny(group_by_region=False)
    single = ESARMSTAForGeneration(ESARMSTAConfig.tiny(motion_prior_config=single_codebook))
    with pytest.raises(ValueError, match="one codebook per face region"):
        freeze_other_groups(single, ["eyes"])
    with pytest.raises(ValueError, match=r"trainable_groups must be a non-empty list of \['mouth', 'eyes', 'brows'\]"):
        ESARMRLTrainingConfig(output_dir=str(tmp_path), trainable_groups=["lips"])
    policy = _policy("full")
    trainable = [p.requires_grad for p in policy.parameters()]
    assert freeze_other_groups(policy, None) == (0, 1, 2)
    assert [p.requires_grad for p in policy.parameters()] == trainable  # None: nothing frozen here


def test_train_rl_with_trainable_groups_keeps_the_mouth_and_records_the_guard(tmp_path, rig_path):
    from esarm import ESARMProcessor, ESARMRewardModel
    from esarm.training.rl_trainer import train_rl

    policy = _policy("parallel")
    policy.save_pretrained(tmp_path / "sta")
    ESARMProcessor(speakers=["spk1"], fps=policy.config.fps).save_pretrained(tmp_path / "sta")
    ESARMRewardModel(ESARMRewardModelConfig.tiny()).save_pretrained(tmp_path / "reward_model")
    rng = np.random.default_rng(1)
    validation = _clips(3, seed=1).add_column("blendshapes", [rng.random((15, 52)).tolist() for _ in range(3)])
    datasets.DatasetDict({"train": _clips(4), "validation": validation}).save_to_disk(str(tmp_path / "corpus"))
    values = dict(
        sta_name_or_path=str(tmp_path / "sta"), reward_model_name_or_path=str(tmp_path / "reward_model"),
        dataset_name_or_path=str(tmp_path / "corpus"), output_dir=str(tmp_path / "rl"), rig_path=str(rig_path),
        per_device_train_batch_size=2, per_device_eval_batch_size=3, num_rollouts=2, max_steps=2, learning_rate=1e-2,
        save_strategy="no", disable_tqdm=True, quality_eval_steps=1, quality_eval_clips=3,
        quality_metric="expressive", trainable_groups=["eyes", "brows"],
    )  # fmt: skip
    config = ESARMRLTrainingConfig(**values)
    metrics = train_rl(config)
    assert metrics["guard_metric"] == "expressive" and metrics["guard_num_checks"] == 3
    assert metrics["quality_best_step"] == (metrics["guard_candidate_step"] if metrics["guard_accepted"] else 0)
    tuned = ESARMSTAForGeneration.from_pretrained(config.output_dir)
    for name, value in policy.named_parameters():
        if name.startswith(("mouth_", "content_encoder", "style_projection", "emotion_", "speech_encoder")):
            assert torch.equal(dict(tuned.named_parameters())[name], value), name
    _policy("full").save_pretrained(tmp_path / "full")
    ESARMProcessor(speakers=["spk1"], fps=policy.config.fps).save_pretrained(tmp_path / "full")
    values.update(sta_name_or_path=str(tmp_path / "full"), output_dir=str(tmp_path / "rl_full"))
    with pytest.raises(ValueError, match="mouth_conditioning='full'"):
        train_rl(ESARMRLTrainingConfig(**values))
