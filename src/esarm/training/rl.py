"""Stage 5: RL fine-tuning of the STA policy against the frozen reward model (paper Sec. III-B.4, eq. 2).

Per training step, for a batch of clips (audio + condition, never the ground-truth animation):

1. sample ``num_rollouts`` motion-token sequences per clip from the policy (temperature sampling, no grad);
2. score each with the frozen reward model: a sparse end-of-sequence reward ``R(tau)`` (its discounted return);
3. subtract ``kl_coef`` times the summed per-token KL estimate ``log pi(a|s) - log pi_ref(a|s)`` to the frozen
   STA reference policy (the RLOO paper's k1 estimator, applied to the reward like TRL's ``RLOOTrainer``);
4. leave-one-out baseline over the rollouts of the same clip -> advantages (optionally normalised);
5. ``num_ppo_epochs`` clipped-ratio updates on the buffered rollouts (per-token ratio, sequence advantage),
   with an optional entropy bonus.

Options beyond the paper: per-step (dense) rewards from the reward model's per-step outputs (``reward_type``), an
adaptive KL coefficient that steers the per-token KL towards ``kl_target`` (Ziegler et al. 2019,
arXiv:1909.08593), and a held-out quality check every ``quality_eval_steps`` updates (greedy LVE + EVE against the
ground truth of validation clips, or with ``quality_metric="expressive"`` the per-region motion closest to the
capture's within an LVE / EVE tolerance) that keeps the best policy and stops early after
``early_stopping_patience`` checks without improvement: the guard against a policy that exploits the reward model.

The trainer is a ``transformers.Trainer`` in TRL's style (TRL 1.16 has no PPO and its RLOO / GRPO trainers
assume text LLMs): one Trainer step is one optimiser update; the sampler repeats each generation batch of clips
(``steps_per_generation`` micro-batches, by default ``gradient_accumulation_steps``) ``num_ppo_epochs`` times and
rollouts are generated on the first pass and replayed on the others, as TRL's GRPO / RLOO do.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from torch import nn
from transformers import Trainer, TrainerCallback, set_seed
from trl.models import unwrap_model_for_generation
from trl.trainer.utils import RepeatSampler, disable_dropout_in_model, entropy_from_logits, selective_log_softmax

from ..blendshapes import FACE_REGIONS
from ..data.collators import STACollator
from ..data.loading import load_split
from ..evaluation.metrics import eve, lve
from ..evaluation.rl_diagnostics import region_motion, reward_hacking_check
from ..evaluation.run import even_spread
from ..labels import UNKNOWN_SPEAKER_ID, model_speakers
from ..modeling_reward import ESARMRewardModel
from ..modeling_sta import ESARMSTAForGeneration
from ..processing_esarm import ESARMProcessor
from ..rig import resolve_rig
from .args import ESARMTrainingArguments
from .checkpoints import resolve_resume_checkpoint, write_done_marker
from .metric_store import MetricStore, log_with_metrics

logger = logging.getLogger(__name__)

# Inputs the policy is allowed to see in this stage: audio and condition. Ground-truth animation columns
# (``blendshapes``, ``tokens``, ``motion_tokens``) are dropped before the dataloader (paper Sec. IV-C: "the agent
# does not have access to any human datasets during the reinforcement learning fine-tuning").
POLICY_DATASET_COLUMNS: tuple[str, ...] = ("audio", "sampling_rate", "emotion", "intensity", "speaker")
CONDITION_KEYS: tuple[str, ...] = ("input_values", "attention_mask", "emotion_ids", "intensity_ids", "speaker_ids")
GROUND_TRUTH_COLUMNS: tuple[str, ...] = ("blendshapes", "tokens", "motion_tokens", "motion_mask", "labels")
QUALITY_METRICS: tuple[str, ...] = ("lve_eve", "expressive")


# ---------------------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class ESARMRLConfig(ESARMTrainingArguments):
    r"""Configuration of :class:`ESARMRLTrainer` and :func:`train_rl`.

    Only the RL-specific parameters are listed; see :class:`~esarm.training.args.ESARMTrainingArguments` (the
    defaults every stage shares) and ``transformers.TrainingArguments`` for the rest. Defaults that differ from
    the shared ones: ``learning_rate=1e-5``, ``logging_steps=1``, ``ddp_find_unused_parameters=True``. ``per_device_train_batch_size`` counts clips; each
    clip yields ``num_rollouts`` rollouts.

    Args:
        policy_name_or_path: folder of the trained STA model (``save_pretrained``) that initialises the policy; its
            processor is loaded from the same folder.
        reward_model_name_or_path: folder of the trained reward model (frozen during this stage).
        ref_policy_name_or_path: folder of the reference policy for the KL term; defaults to ``policy_name_or_path``.
        dataset_name_or_path: corpus saved with ``datasets.save_to_disk`` (one row per clip).
        train_split / eval_split: splits used for rollouts / for the held-out before-after evaluation.
        num_rollouts: rollouts sampled per clip (``k``); the leave-one-out baseline needs at least 2.
        temperature: sampling temperature of the rollouts (the ratio uses the same tempered distribution).
        top_k: optional top-k truncation of rollout sampling.
        kl_coef: weight of the summed per-token KL estimate subtracted from the reward (the initial value with
            ``kl_target``).
        kl_target / kl_horizon: adaptive KL (Ziegler et al. 2019): after each generation,
            ``kl_coef *= 1 + clip(kl / kl_target - 1, -0.2, 0.2) * rollouts / kl_horizon`` (per-token KL).
        reward_type: ``"sparse"`` (paper eq. 2: the return at the end of the sequence) or ``"dense"``.
        steps_per_generation: micro-batches generated together and replayed ``num_ppo_epochs`` times.
        quality_eval_steps / quality_eval_clips / early_stopping_patience: the held-out quality check.
        quality_metric: what the check minimises: ``"lve_eve"`` (LVE + EVE in mm) or ``"expressive"`` (the distance
            of the per-region motion ratio generated / ground truth from 1, among checks whose LVE and EVE are each
            within ``quality_tolerance_mm`` of the initial policy's): :func:`quality_score`.
        quality_tolerance_mm: how much worse than the initial policy LVE and EVE may get under ``"expressive"``.
        cliprange: PPO ratio clip ``epsilon``: ratios are clipped to ``[1 - cliprange, 1 + cliprange]``.
        num_ppo_epochs: optimiser updates on each batch of rollouts before new ones are sampled.
        entropy_coef: weight of the entropy bonus (0 disables it).
        normalize_advantages: standardise advantages over the (global) batch of rollouts.
        reward_clip: optional symmetric clip of the reward-model score before the KL penalty.
        max_eval_clips: held-out clips used for the before / after evaluation (LVE, EVE, reward).
        eval_sampled: also evaluate sampled animations (at ``temperature``, seeded) before / after: RL against a
            reward model trained on greedy demonstrations mostly sharpens the policy, which shows in samples first.
        rig_path: face rig (.npz) for LVE / EVE; defaults to ``$ESARM_RIG``; without a rig only rewards are compared.
        freeze_audio_encoder: keep the policy's speech encoder (WavLM) frozen; RL then tunes the disentangling
            encoder and the motion decoder (cheaper, and the reward cannot reshape the speech features).
    """

    policy_name_or_path: str | None = field(default=None, metadata={"help": "Folder of the trained STA model."})
    reward_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Folder of the trained reward model (kept frozen)."}
    )
    ref_policy_name_or_path: str | None = field(
        default=None, metadata={"help": "Folder of the KL reference policy; defaults to policy_name_or_path."}
    )
    dataset_name_or_path: str | None = field(
        default=None, metadata={"help": "Corpus saved with datasets.save_to_disk (one row per clip)."}
    )
    train_split: str = field(default="train", metadata={"help": "Split whose clips are used for rollouts."})
    eval_split: str | None = field(
        default="validation", metadata={"help": "Held-out split for the before/after evaluation (None: skip)."}
    )
    num_rollouts: int = field(default=4, metadata={"help": "Rollouts sampled per clip (k >= 2, leave-one-out)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of the rollouts (> 0)."})
    top_k: int | None = field(default=None, metadata={"help": "Optional top-k truncation of rollout sampling."})
    kl_coef: float = field(
        default=0.05, metadata={"help": "Weight of the summed per-token KL to the reference, subtracted from R."}
    )
    kl_target: float | None = field(
        default=None,
        metadata={
            "help": "Adaptive KL: steer the per-token KL (nats) towards this value by scaling kl_coef (None: fixed)."
        },
    )
    kl_horizon: int = field(
        default=64, metadata={"help": "Adaptive KL horizon in rollouts: kl_coef changes by at most 20% per horizon."}
    )
    reward_type: str = field(
        default="sparse",
        metadata={
            "help": "'sparse': the paper's end-of-sequence return R(tau); 'dense': the reward model's per-step "
            "rewards with per-token KL, returns-to-go and a per-step leave-one-out baseline."
        },
    )
    cliprange: float = field(default=0.2, metadata={"help": "PPO clip range epsilon for the probability ratio."})
    num_ppo_epochs: int = field(default=2, metadata={"help": "Optimiser updates per batch of rollouts."})
    steps_per_generation: int | None = field(
        default=None,
        metadata={
            "help": "Micro-batches per generation batch (None: gradient_accumulation_steps), so that every PPO "
            "epoch is its own optimiser update."
        },
    )
    quality_eval_steps: int = field(
        default=0,
        metadata={
            "help": "Every this many updates, measure greedy LVE + EVE on quality_eval_clips validation clips, keep "
            "the best policy (the initial one included) and restore it at the end (0: off)."
        },
    )
    quality_eval_clips: int = field(default=8, metadata={"help": "Validation clips of the held-out quality check."})
    quality_metric: str = field(
        default="lve_eve",
        metadata={
            "help": "'lve_eve': the check minimises LVE + EVE (mm); 'expressive': it minimises the distance of the "
            "per-region motion ratio (generated / ground truth) from 1 among checks whose LVE and EVE stay within "
            "quality_tolerance_mm of the initial policy's."
        },
    )
    quality_tolerance_mm: float = field(
        default=0.05,
        metadata={"help": "With quality_metric 'expressive': how much LVE and EVE may each exceed the initial ones."},
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after this many quality checks without improvement (None: never)."}
    )
    entropy_coef: float = field(default=0.0, metadata={"help": "Weight of the entropy bonus (0 disables it)."})
    normalize_advantages: bool = field(
        default=True, metadata={"help": "Standardise advantages over the global batch of rollouts."}
    )
    reward_clip: float | None = field(
        default=None, metadata={"help": "Clip reward-model scores to [-reward_clip, reward_clip] (None: no clip)."}
    )
    max_eval_clips: int = field(default=16, metadata={"help": "Held-out clips for the before/after evaluation."})
    eval_sampled: bool = field(
        default=True,
        metadata={"help": "Also evaluate sampled animations (temperature) before/after, not only greedy ones."},
    )
    rig_path: str | None = field(
        default=None, metadata={"help": "Face rig .npz for LVE/EVE (default $ESARM_RIG); None and unset: skip."}
    )
    freeze_audio_encoder: bool = field(
        default=True,
        metadata={"help": "Keep the policy's speech encoder frozen (RL tunes the disentangling encoder and decoder)."},
    )
    # Overridden TrainingArguments defaults.
    learning_rate: float = field(default=1e-5, metadata={"help": "Initial AdamW learning rate."})
    logging_steps: float = field(default=1, metadata={"help": "Log every X updates steps."})
    ddp_find_unused_parameters: bool | None = field(
        default=True,
        metadata={"help": "The RL loss leaves the policy's emotion-classifier head unused: DDP must allow it."},
    )

    def __post_init__(self):
        _check(self.num_rollouts >= 2, "num_rollouts", "an integer >= 2 (leave-one-out baseline)", self.num_rollouts)
        _check(self.temperature > 0, "temperature", "> 0", self.temperature)
        _check(self.top_k is None or self.top_k >= 1, "top_k", "None or >= 1", self.top_k)
        _check(self.kl_coef >= 0, "kl_coef", ">= 0", self.kl_coef)
        _check(0 < self.cliprange < 1, "cliprange", "in (0, 1)", self.cliprange)
        _check(self.num_ppo_epochs >= 1, "num_ppo_epochs", ">= 1", self.num_ppo_epochs)
        _check(self.kl_target is None or self.kl_target > 0, "kl_target", "None or > 0", self.kl_target)
        _check(self.kl_horizon >= 1, "kl_horizon", ">= 1", self.kl_horizon)
        _check(self.reward_type in ("sparse", "dense"), "reward_type", "'sparse' or 'dense'", self.reward_type)
        _check(self.quality_eval_steps >= 0, "quality_eval_steps", ">= 0", self.quality_eval_steps)
        _check(self.quality_eval_clips >= 1, "quality_eval_clips", ">= 1", self.quality_eval_clips)
        _check(
            self.quality_metric in QUALITY_METRICS, "quality_metric", f"one of {QUALITY_METRICS}", self.quality_metric
        )
        _check(self.quality_tolerance_mm >= 0, "quality_tolerance_mm", ">= 0", self.quality_tolerance_mm)
        _check(
            self.early_stopping_patience is None or self.early_stopping_patience >= 1,
            "early_stopping_patience", "None or >= 1", self.early_stopping_patience,
        )  # fmt: skip
        _check(self.entropy_coef >= 0, "entropy_coef", ">= 0", self.entropy_coef)
        _check(self.reward_clip is None or self.reward_clip > 0, "reward_clip", "None or > 0", self.reward_clip)
        _check(self.max_eval_clips >= 0, "max_eval_clips", ">= 0", self.max_eval_clips)
        super().__post_init__()
        if self.steps_per_generation is None:
            self.steps_per_generation = self.gradient_accumulation_steps
        # Rollouts are replayed for num_ppo_epochs passes over the generation batch; with fewer micro-batches per
        # generation than per update, one update would swallow several PPO epochs (and later ones would never be
        # an update of their own).
        _check(
            self.steps_per_generation >= 1 and self.steps_per_generation % self.gradient_accumulation_steps == 0,
            "steps_per_generation", f"a multiple of gradient_accumulation_steps={self.gradient_accumulation_steps}",
            self.steps_per_generation,
        )  # fmt: skip


def _check(condition: bool, name: str, expected: str, got: Any) -> None:
    if not condition:
        raise ValueError(f"{name} must be {expected}, got {got!r}")


# ---------------------------------------------------------------------------------------------------------------
# The algorithm on tensors (tested on hand numbers)
# ---------------------------------------------------------------------------------------------------------------
def rloo_advantages(rewards: torch.Tensor, num_rollouts: int) -> torch.Tensor:
    """Leave-one-out advantages ``A_i = r_i - mean_{j != i} r_j`` within each clip's group of rollouts.

    Args:
        rewards: ``[num_clips * num_rollouts]`` (or ``[num_clips * num_rollouts, T']`` returns-to-go: one baseline
            per step), the rollouts of one clip contiguous.
        num_rollouts: group size ``k >= 2``.
    Returns:
        advantages of the shape of ``rewards`` (each group's advantages sum to 0).
    """
    if num_rollouts < 2:
        raise ValueError(f"num_rollouts must be >= 2 for a leave-one-out baseline, got {num_rollouts}")
    if rewards.shape[0] % num_rollouts:
        raise ValueError(f"rewards must hold a multiple of num_rollouts={num_rollouts} rows, got {rewards.shape[0]}")
    grouped = rewards.view(-1, num_rollouts, *rewards.shape[1:])
    baseline = (grouped.sum(dim=1, keepdim=True) - grouped) / (num_rollouts - 1)
    return (grouped - baseline).reshape(rewards.shape)


def returns_to_go(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """``G_t = sum_{s >= t} gamma^(s - t) r_s`` over valid steps (``rewards``, ``mask``: ``[B, T']``)."""
    rewards = rewards * mask
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        running = rewards[:, t] + gamma * running * mask[:, t]
        out[:, t] = running
    return out * mask


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | tuple[int, ...] | None = None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is true (``mask`` broadcastable to ``values``); 0 where nothing is valid."""
    mask = mask.to(values.dtype).expand_as(values)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1.0)
    return (values * mask).sum(dim=dim) / mask.sum(dim=dim).clamp(min=1.0)


def clipped_policy_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate with a per-token ratio and one (sparse-reward) advantage per sequence.

    Args:
        logps / old_logps: ``[B, T', G]`` log-probabilities of the sampled tokens under the current / the sampling
            policy.
        advantages: ``[B]`` (one per sequence) or ``[B, T']`` (per step).
        mask: ``[B, T', G]`` (or broadcastable), true on real tokens.
        cliprange: ``epsilon`` of the clip.
    Returns:
        ``(loss, clip_fraction, ratio_mean)``: the loss averages tokens within a sequence and then sequences;
        ``clip_fraction`` is the share of valid tokens whose clipped term was the active one.
    """
    ratio = torch.exp(logps - old_logps)
    adv = advantages.view(*advantages.shape, *([1] * (logps.dim() - advantages.dim())))
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange) * adv
    per_token = -torch.min(unclipped, clipped)
    token_dims = tuple(range(1, logps.dim()))
    loss = masked_mean(per_token, mask, dim=token_dims).mean()
    is_clipped = (clipped < unclipped).to(logps.dtype)
    return loss, masked_mean(is_clipped, mask).detach(), masked_mean(ratio, mask).detach()


def token_log_probs(
    logits: torch.Tensor, motion_tokens: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities and entropies of given tokens under tempered logits.

    Args:
        logits: ``[B, T', G, K]`` (``logits[:, t]`` is the distribution of ``motion_tokens[:, t]``).
        motion_tokens: ``[B, T', G]``.
    Returns:
        ``(logps [B, T', G], entropy [B, T', G])`` in nats.
    """
    logits = logits.float() / temperature
    return selective_log_softmax(logits, motion_tokens), entropy_from_logits(logits)


# ---------------------------------------------------------------------------------------------------------------
# Data: clips -> policy inputs (audio + condition only)
# ---------------------------------------------------------------------------------------------------------------
def drop_ground_truth_columns(dataset):
    """Keep only the columns a policy may see in this stage (audio and condition); works on ``datasets.Dataset``."""
    keep = [name for name in dataset.column_names if name in POLICY_DATASET_COLUMNS]
    missing = {"audio"} - set(keep)
    if missing:
        raise ValueError(f"RL dataset needs columns {sorted(POLICY_DATASET_COLUMNS)}, missing {sorted(missing)}")
    return dataset.select_columns(keep)


@dataclass
class PolicyInputCollator:
    """Turns clip rows into policy inputs; reads only the audio and condition columns of each row.

    Wraps :class:`esarm.data.collators.STACollator` (same audio normalisation and label ids as STA training)
    after dropping every other key, so ground-truth animation cannot reach the policy even if a row carries it.
    Returns ``input_values [B, S]``, ``attention_mask [B, S]``, ``emotion_ids [B]``, ``intensity_ids [B]``,
    ``speaker_ids [B]``.

    Args:
        speakers: the policy's known speaker names (its processor's ``speakers``); others map to id 0.
        fps: animation frame rate of the policy.
        max_seconds: crop longer clips to a random window of this many seconds (``None``: whole clips).
        seed: seed of the cropping RNG.
    """

    speakers: Sequence[str] = ()
    fps: float = 30.0
    max_seconds: float | None = None
    seed: int = 0

    def __post_init__(self):
        self._collator = STACollator(
            speakers=list(self.speakers), fps=self.fps, max_seconds=self.max_seconds, seed=self.seed
        )

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        allowed = (*POLICY_DATASET_COLUMNS, "fps")
        policy_rows = [{key: row[key] for key in allowed if key in row} for row in rows]
        batch = self._collator(policy_rows)
        return {key: batch[key] for key in CONDITION_KEYS}


def _select_conditions(inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {key: inputs[key] for key in CONDITION_KEYS if inputs.get(key) is not None}


def _repeat_conditions(conditions: dict[str, torch.Tensor], times: int) -> dict[str, torch.Tensor]:
    return {key: value.repeat_interleave(times, dim=0) for key, value in conditions.items()}


def reward_conditions(reward_model: nn.Module, conditions: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The conditions for the reward model: speakers it does not know (ids above its ``num_speakers``) become the
    unknown speaker 0, so a reward model trained with fewer known speakers than the policy still scores them."""
    num_speakers = getattr(getattr(reward_model, "config", None), "num_speakers", None)
    speaker_ids = conditions.get("speaker_ids")
    if num_speakers is None or speaker_ids is None:
        return conditions
    return {**conditions, "speaker_ids": speaker_ids.masked_fill(speaker_ids > num_speakers, UNKNOWN_SPEAKER_ID)}


def _token_mask(generated: Any, motion_tokens: torch.Tensor) -> torch.Tensor:
    token_mask = getattr(generated, "token_mask", None)
    if token_mask is None:
        return torch.ones(motion_tokens.shape[:2], dtype=torch.bool, device=motion_tokens.device)
    return token_mask.to(device=motion_tokens.device, dtype=torch.bool)


# ---------------------------------------------------------------------------------------------------------------
# Trainer
# ---------------------------------------------------------------------------------------------------------------
class ESARMRLTrainer(Trainer):
    """RLOO with PPO-style clipping for the STA policy against a frozen reward model.

    Args:
        model: the policy (``ESARMSTAForGeneration`` or anything with the same ``generate`` / ``forward(...).logits``).
        reward_model: frozen scorer whose ``forward(**conditions, motion_tokens, motion_mask).returns`` is ``[B]``.
        args: :class:`ESARMRLConfig`.
        ref_model: frozen reference policy for the KL term; a frozen copy of ``model`` when ``None``.
        train_dataset: clips (audio + condition; ground-truth columns are dropped when it is a ``datasets.Dataset``).
        data_collator: rows -> ``CONDITION_KEYS`` tensors; when ``None``, a :class:`PolicyInputCollator` with the
            speakers and fps of ``processing_class`` (the policy's ``ESARMProcessor``).
    """

    _tag_names = ["esarm", "rl", "rloo"]

    def __init__(
        self,
        model: nn.Module,
        reward_model: nn.Module,
        args: ESARMRLConfig,
        ref_model: nn.Module | None = None,
        train_dataset=None,
        eval_dataset=None,
        data_collator=None,
        processing_class=None,
        callbacks=None,
        optimizers=(None, None),
    ):
        if not isinstance(args, ESARMRLConfig):
            raise ValueError(f"args must be an ESARMRLConfig, got {type(args).__name__}")
        if train_dataset is not None and hasattr(train_dataset, "column_names"):
            train_dataset = drop_ground_truth_columns(train_dataset)
        if data_collator is None:
            data_collator = PolicyInputCollator(
                speakers=getattr(processing_class, "speakers", None) or (),
                fps=float(getattr(processing_class, "fps", None) or getattr(model.config, "fps", 30.0)),
                seed=args.seed,
            )
        if ref_model is None:
            from trl.experimental.utils import create_reference_model

            ref_model = create_reference_model(model)
        for frozen in (ref_model, reward_model):
            frozen.eval()
            frozen.requires_grad_(False)
            disable_dropout_in_model(frozen)
        # The ratio compares the sampling distribution with the training one: both must be deterministic.
        disable_dropout_in_model(model)
        if args.freeze_audio_encoder and isinstance(getattr(model, "audio_encoder", None), nn.Module):
            model.audio_encoder.requires_grad_(False)
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            # not forwarded: Trainer treats a ProcessorMixin as a tokenizer holder (align_special_tokens)
            processing_class=None,
            callbacks=callbacks,
            optimizers=optimizers,
        )
        self.ref_model = self.accelerator.prepare_model(ref_model, evaluation_mode=True)
        self.reward_model = self.accelerator.prepare_model(reward_model, evaluation_mode=True)
        self._metric_store = MetricStore()
        self._step = 0
        self._buffered_inputs: list[dict[str, torch.Tensor] | None] = [None] * args.steps_per_generation
        self.kl_coef = args.kl_coef

    # -- sampling: each generation batch (steps_per_generation micro-batches) is served num_ppo_epochs times in a
    # row (TRL's RepeatSampler); rollouts are generated on its first pass and replayed on the others -------------
    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return RepeatSampler(
            data_source=dataset,
            mini_repeat_count=1,
            batch_size=self.args.per_device_train_batch_size
            * self.accelerator.num_processes
            * self.args.steps_per_generation,
            repeat_count=self.args.num_ppo_epochs,
            shuffle=True,
            seed=self.args.seed,
        )

    def _prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        inputs = super()._prepare_inputs(inputs)
        if not self.model.training:
            return self._generate_and_score(inputs, mode="eval")
        position = self._step % (self.args.steps_per_generation * self.args.num_ppo_epochs)
        slot = position % self.args.steps_per_generation
        if position < self.args.steps_per_generation or self._buffered_inputs[slot] is None:
            self._buffered_inputs[slot] = self._generate_and_score(inputs, mode="train")
        self._step += 1
        return self._buffered_inputs[slot]

    @torch.no_grad()
    def _generate_and_score(self, inputs: dict[str, Any], mode: str) -> dict[str, torch.Tensor]:
        args = self.args
        conditions = _repeat_conditions(_select_conditions(inputs), args.num_rollouts)
        with unwrap_model_for_generation(self.model_wrapped, self.accelerator) as policy:
            was_training = policy.training
            policy.eval()
            generated = policy.generate(
                **conditions,
                emotion=None,
                do_sample=True,
                temperature=args.temperature,
                top_k=args.top_k,
                decode_blendshapes=False,
            )
            motion_tokens = generated.motion_tokens  # [B*k, T', G]
            token_mask = _token_mask(generated, motion_tokens)  # [B*k, T']
            old_logps, entropy = self._sequence_logps(policy, conditions, motion_tokens, token_mask)
            policy.train(was_training)
        ref_logps, _ = self._sequence_logps(self.ref_model, conditions, motion_tokens, token_mask)
        reward_model = self.accelerator.unwrap_model(self.reward_model)
        scored = reward_model(
            **reward_conditions(reward_model, conditions), motion_tokens=motion_tokens, motion_mask=token_mask
        )
        scores = scored.returns.float()
        if args.reward_clip is not None:
            scores = scores.clamp(-args.reward_clip, args.reward_clip)

        mask = token_mask.unsqueeze(-1).expand_as(motion_tokens)  # [B*k, T', G]
        per_token_kl = (old_logps - ref_logps) * mask
        sequence_kl = per_token_kl.sum(dim=(1, 2))  # [B*k]
        rewards = scores - self.kl_coef * sequence_kl
        if args.reward_type == "dense":
            # per step: the reward model's reward minus the step's KL, summed to returns-to-go [B*k, T']
            step_rewards = scored.rewards.float() - self.kl_coef * per_token_kl.sum(-1)
            gamma = float(getattr(getattr(reward_model, "config", None), "gamma", 1.0))
            advantages = rloo_advantages(returns_to_go(step_rewards, token_mask.float(), gamma), args.num_rollouts)
            valid = token_mask
        else:
            advantages = rloo_advantages(rewards, args.num_rollouts)
            valid = torch.ones_like(advantages, dtype=torch.bool)
        if args.normalize_advantages:
            # moments over the valid entries of all processes (per-step advantages differ in count per process)
            weights = valid.to(advantages.dtype)
            moments = torch.stack([(advantages * weights).sum(), (advantages**2 * weights).sum(), weights.sum()])
            total, squares, count = self.accelerator.reduce(moments, reduction="sum")
            if count > 1:
                mean = total / count
                std = ((squares / count - mean**2).clamp(min=0.0) * count / (count - 1)).sqrt()
                advantages = (advantages - mean) / (std + 1e-4) * weights
        kl_stats = self.accelerator.reduce(torch.stack([per_token_kl.sum(), mask.sum().float()]), reduction="sum")
        mean_kl = kl_stats[0] / kl_stats[1].clamp(min=1.0)
        if mode == "train" and args.kl_target is not None:
            error = float(torch.clamp(mean_kl / args.kl_target - 1.0, -0.2, 0.2))
            self.kl_coef *= 1.0 + error * len(scores) * self.accelerator.num_processes / args.kl_horizon

        # every value is gathered over processes first: the same number on each (the store then averages it)
        store, gather = self._metric_store, self.accelerator.gather
        gathered_scores = gather(scores)
        store.add(mode, "reward", gathered_scores.mean())
        store.add(mode, "reward_std", gathered_scores.std() if gathered_scores.numel() > 1 else 0.0)
        store.add(mode, "kl", mean_kl)
        store.add(mode, "kl_coef", self.kl_coef)
        store.add(mode, "kl_sequence", gather(sequence_kl).mean())
        store.add(mode, "total_reward", gather(rewards).mean())
        gathered_adv = gather(advantages)
        store.add(mode, "advantage_mean", gathered_adv.mean())
        store.add(mode, "advantage_std", gathered_adv.std() if gathered_adv.numel() > 1 else 0.0)
        store.add(mode, "sampling_entropy", gather(masked_mean(entropy, mask).view(1)).mean())
        store.add(mode, "sequence_length", gather(token_mask.sum(1).float()).mean())
        return {
            **conditions,
            "motion_tokens": motion_tokens,
            "motion_mask": token_mask,
            "old_logps": old_logps,
            "advantages": advantages,
        }

    def _sequence_logps(self, model, conditions, motion_tokens, token_mask) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(**conditions, motion_tokens=motion_tokens, motion_mask=token_mask).logits  # [B, T', G, K]
        return token_log_probs(logits, motion_tokens, self.args.temperature)

    # -- the loss: one screen ------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:
            raise ValueError("ESARMRLTrainer does not return outputs")
        conditions = _select_conditions(inputs)
        motion_tokens, token_mask = inputs["motion_tokens"], inputs["motion_mask"]
        logps, entropy = self._sequence_logps(model, conditions, motion_tokens, token_mask)
        mask = token_mask.unsqueeze(-1).expand_as(motion_tokens)
        loss, clip_fraction, ratio_mean = clipped_policy_loss(
            logps, inputs["old_logps"], inputs["advantages"], mask, self.args.cliprange
        )
        mean_entropy = masked_mean(entropy, mask)
        if self.args.entropy_coef > 0:
            loss = loss - self.args.entropy_coef * mean_entropy

        mode, gather = "train" if model.training else "eval", self.accelerator.gather
        self._metric_store.add(mode, "policy_loss", gather(loss.detach().view(1)).mean())
        self._metric_store.add(mode, "entropy", gather(mean_entropy.detach().view(1)).mean())
        self._metric_store.add(mode, "clip_fraction", gather(clip_fraction.view(1)).mean())
        self._metric_store.add(mode, "ratio_mean", gather(ratio_mean.view(1)).mean())
        return loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the averaged RL metrics collected since the last log (:class:`MetricStore`)."""
        super().log(log_with_metrics(self, logs), start_time)


# ---------------------------------------------------------------------------------------------------------------
# Held-out evaluation before / after (the honest check against reward hacking)
# ---------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_policy(
    policy: nn.Module,
    reward_model: nn.Module,
    dataset,
    collator,
    batch_size: int = 4,
    rig=None,
    max_clips: int | None = None,
    do_sample: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
) -> dict[str, float]:
    """Greedy (or, with ``do_sample``, seeded sampled) animations of held-out clips: mean reward-model return and, with ground truth, blendshape MAE and
    (with a rig) LVE / EVE in mm. Clips are sharded over processes and gathered (same dict on every process).

    The ground-truth blendshapes are read here only, to measure; the collator never passes them to the policy.

    Returns:
        ``{"reward": ..., "blendshape_mae": ..., "std_ratio_<region>": ..., "lve_mm": ..., "eve_mm": ...}`` (all but
        the reward need ground truth, LVE / EVE a rig); ``std_ratio_<region>`` is the generated / captured motion
        of each face region (std over time, summed over the region's blendshapes and over clips; 1 = as much as the
        capture).
    """
    count = len(dataset) if max_clips is None else min(max_clips, len(dataset))
    device = next(policy.parameters()).device
    policy.eval()
    reward_model.eval()
    state = PartialState()
    per_clip: list[dict[str, float]] = []
    with state.split_between_processes(list(range(count))) as shard:
        for start in range(0, len(shard), batch_size):
            rows = [dataset[i] for i in shard[start : start + batch_size]]
            conditions = {key: value.to(device) for key, value in collator(rows).items()}
            generated = policy.generate(
                **conditions, emotion=None, do_sample=do_sample, temperature=temperature, seed=seed + start
            )
            token_mask = _token_mask(generated, generated.motion_tokens)
            returns = reward_model(
                **reward_conditions(reward_model, conditions),
                motion_tokens=generated.motion_tokens,
                motion_mask=token_mask,
            ).returns
            for i, row in enumerate(rows):
                clip = {"reward": float(returns[i])}
                if row.get("blendshapes") is not None and generated.blendshapes is not None:
                    target = np.asarray(row["blendshapes"], dtype=np.float32)  # [T_gt, 52]
                    length = min(int(generated.frame_mask[i].sum()), len(target))
                    predicted = generated.blendshapes[i, :length].float().cpu().numpy()
                    clip["blendshape_mae"] = float(np.abs(predicted - target[:length]).mean())
                    # summed over clips after the gather, as esarm.evaluation.rl_diagnostics.expressiveness pools
                    clip.update({f"_motion_{r}": m for r, m in region_motion(predicted).items()})
                    clip.update({f"_reference_motion_{r}": m for r, m in region_motion(target[:length]).items()})
                    if rig is not None:
                        clip["lve_mm"] = float(lve(predicted, target[:length], rig))
                        clip["eve_mm"] = float(eve(predicted, target[:length], rig))
                per_clip.append(clip)
    if state.num_processes > 1:
        per_clip = gather_object(per_clip)
    if not per_clip:
        return {}
    means = {key: float(np.mean([clip[key] for clip in per_clip])) for key in per_clip[0]}
    results = {key: value for key, value in means.items() if not key.startswith("_")}
    for region in FACE_REGIONS if "blendshape_mae" in results else ():
        # pooled over clips, as esarm.evaluation.rl_diagnostics.expressiveness: sum of generated / sum of captured
        reference = means[f"_reference_motion_{region}"]
        results[f"std_ratio_{region}"] = means[f"_motion_{region}"] / reference if reference > 0 else float("nan")
    return results


def quality_score(
    values: dict[str, float], initial: dict[str, float], metric: str = "lve_eve", tolerance_mm: float = 0.05
) -> float:
    """The held-out quality guard's score of one check (lower is better).

    Args:
        values: the check's greedy held-out metrics (:func:`evaluate_policy`).
        initial: the metrics of the first check (the policy before RL).
        metric: ``"lve_eve"``: ``lve_mm + eve_mm`` (``blendshape_mae`` without a rig). ``"expressive"``: the
            distance of the per-region motion ratios from the capture's, ``sum_r |log std_ratio_r|``, when
            ``lve_mm`` and ``eve_mm`` are each at most ``tolerance_mm`` above ``initial``'s, else ``inf`` (a policy
            that moves more like the capture without losing lip or upper-face accuracy).
        tolerance_mm: the allowed loss of LVE and EVE under ``"expressive"``.
    """
    if metric not in QUALITY_METRICS:
        raise ValueError(f"metric must be one of {QUALITY_METRICS}, got {metric!r}")
    if metric == "lve_eve":
        return values["lve_mm"] + values["eve_mm"] if "lve_mm" in values else values["blendshape_mae"]
    if "lve_mm" not in values:
        raise ValueError(f"metric 'expressive' needs lve_mm and eve_mm (a face rig), got {sorted(values)}")
    if any(values[key] > initial[key] + tolerance_mm for key in ("lve_mm", "eve_mm")):
        return math.inf
    return float(sum(abs(math.log(values[f"std_ratio_{region}"])) for region in FACE_REGIONS))


class HeldOutQualityCallback(TrainerCallback):
    """The guard against reward hacking: every ``every`` updates (and before the first), ``measure(model)`` (greedy
    held-out metrics of :func:`evaluate_policy`) scores the policy with :func:`quality_score` (``metric``,
    ``tolerance_mm``); the weights of the best check, the initial policy included, are kept on the CPU
    (``best_state``), and training stops after ``patience`` checks without improvement. ``history`` holds every
    check (``step``, ``score`` plus the measured values)."""

    def __init__(
        self, measure, every: int, patience: int | None = None, metric: str = "lve_eve", tolerance_mm: float = 0.05
    ):
        self.measure, self.every, self.patience = measure, every, patience
        self.metric, self.tolerance_mm = metric, tolerance_mm
        self.history: list[dict[str, float]] = []
        self.best_score, self.best_step, self.best_state = math.inf, 0, None
        self._checks_without_improvement = 0

    def check(self, model: nn.Module, step: int) -> None:
        values = self.measure(model)
        model.train()
        initial = self.history[0] if self.history else values
        score = quality_score(values, initial, self.metric, self.tolerance_mm)
        self.history.append({"step": step, "score": score, **values})
        logger.info("RL quality check at update %d: %s", step, values)
        if score < self.best_score or self.best_state is None:
            self.best_score, self.best_step, self._checks_without_improvement = score, step, 0
            self.best_state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
        else:
            self._checks_without_improvement += 1

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not self.history:
            self.check(model, state.global_step)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:
            self.check(model, state.global_step)
            if self.patience is not None and self._checks_without_improvement >= self.patience:
                logger.info("RL: no held-out improvement in %d checks, stopping at update %d", self.patience,
                            state.global_step)  # fmt: skip
                control.should_training_stop = True
        return control


# ---------------------------------------------------------------------------------------------------------------
# Library entry point
# ---------------------------------------------------------------------------------------------------------------
def train_rl(config: ESARMRLConfig) -> dict[str, Any]:
    """Runs stage 5 and returns its metrics (also in ``<output_dir>/metrics.json`` with the stage's done marker).

    Loads the STA policy, its processor, a frozen reference copy and the frozen reward model; evaluates the greedy
    policy on held-out clips (reward, and LVE / EVE / blendshape MAE against the ground truth), trains, evaluates
    again and saves the tuned policy + processor to ``output_dir``. Resumes from ``config.resume_from_checkpoint``
    (``"auto"``: the last checkpoint in ``output_dir``).

    Returns:
        ``reward_before`` / ``reward_after`` (held-out, greedy), ``lve_mm_before`` / ``lve_mm_after``,
        ``eve_mm_before`` / ``eve_mm_after``, ``blendshape_mae_before`` / ``_after`` (with ground truth and a rig),
        the same for sampled animations prefixed ``sampled_`` (``eval_sampled``),
        the last logged training metrics (``train_reward``, ``train_kl``, ...) and the whole ``train_log``.
    """
    for name in ("policy_name_or_path", "reward_model_name_or_path", "dataset_name_or_path", "output_dir"):
        if getattr(config, name) is None:
            raise ValueError(f"{name} must be set for train_rl, got None")
    set_seed(config.seed)
    device = PartialState().device
    policy = ESARMSTAForGeneration.from_pretrained(config.policy_name_or_path)
    ref_policy = ESARMSTAForGeneration.from_pretrained(config.ref_policy_name_or_path or config.policy_name_or_path)
    reward_model = ESARMRewardModel.from_pretrained(config.reward_model_name_or_path)
    speakers = model_speakers(config.policy_name_or_path)
    collator = PolicyInputCollator(speakers=speakers, fps=float(policy.config.fps), seed=config.seed)
    train_dataset = drop_ground_truth_columns(load_split(config.dataset_name_or_path, config.train_split))
    eval_dataset = load_split(config.dataset_name_or_path, config.eval_split) if config.eval_split else None
    rig = resolve_rig(config.rig_path)

    metrics: dict[str, Any] = {}
    evaluate = eval_dataset is not None and config.max_eval_clips > 0
    if evaluate:
        metrics.update(
            _held_out(config, policy.to(device), reward_model.to(device), eval_dataset, collator, rig, "before")
        )

    guard = None
    if config.quality_eval_steps > 0 and eval_dataset is not None:
        quality_clips = even_spread(eval_dataset, config.quality_eval_clips)
        guard = HeldOutQualityCallback(
            lambda model: evaluate_policy(
                model, reward_model, quality_clips, collator, config.per_device_eval_batch_size, rig, seed=config.seed
            ),
            config.quality_eval_steps,
            config.early_stopping_patience,
            config.quality_metric,
            config.quality_tolerance_mm,
        )
    trainer = ESARMRLTrainer(
        model=policy,
        reward_model=reward_model,
        ref_model=ref_policy,
        args=config,
        train_dataset=train_dataset,
        data_collator=collator,
        callbacks=[guard] if guard is not None else None,
    )
    train_output = trainer.train(resume_from_checkpoint=resolve_resume_checkpoint(config))
    if guard is not None:
        if guard.history[-1]["step"] != trainer.state.global_step:
            guard.check(trainer.accelerator.unwrap_model(trainer.model), trainer.state.global_step)
        trainer.accelerator.unwrap_model(trainer.model).load_state_dict(guard.best_state)
        metrics["quality_best_step"] = guard.best_step
        metrics["quality_history"] = guard.history
        if "lve_mm" in guard.history[0]:
            metrics.update(
                reward_hacking_check(
                    [h["step"] for h in guard.history],
                    [h["reward"] for h in guard.history],
                    [h["lve_mm"] for h in guard.history],
                )  # fmt: skip
            )
    trainer.save_model(config.output_dir)
    train_log = [entry for entry in trainer.state.log_history if "reward" in entry]
    metrics.update(
        {"train_steps": train_output.global_step, "train_runtime_s": train_output.metrics.get("train_runtime")}
    )
    if train_log:
        metrics.update({f"train_{key}": value for key, value in train_log[-1].items() if key not in ("step", "epoch")})
        metrics["train_reward_first"] = train_log[0]["reward"]
    metrics["train_log"] = train_log

    if evaluate:
        unwrap = trainer.accelerator.unwrap_model
        metrics.update(
            _held_out(config, unwrap(trainer.model), unwrap(trainer.reward_model), eval_dataset, collator, rig, "after")
        )
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        ESARMProcessor(speakers=speakers, fps=float(policy.config.fps)).save_pretrained(config.output_dir)
        write_done_marker(config.output_dir, metrics)
    trainer.accelerator.wait_for_everyone()
    return metrics


def _held_out(config: ESARMRLConfig, policy, reward_model, dataset, collator, rig, when: str) -> dict[str, float]:
    """Held-out metrics of the greedy (and sampled) policy, keyed ``<metric>_<when>`` / ``sampled_<metric>_<when>``."""
    results = {}
    modes = [("", False)] + ([("sampled_", True)] if config.eval_sampled else [])
    for prefix, do_sample in modes:
        values = evaluate_policy(
            policy, reward_model, dataset, collator, config.per_device_eval_batch_size, rig, config.max_eval_clips,
            do_sample=do_sample, temperature=config.temperature, seed=config.seed,
        )  # fmt: skip
        logger.info("RL: held-out %s policy %s training: %s", "sampled" if do_sample else "greedy", when, values)
        results.update({f"{prefix}{key}_{when}": value for key, value in values.items()})
    return results
