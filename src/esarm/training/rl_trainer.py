"""Stage 5: the trainer of RL fine-tuning (config: :mod:`~esarm.training.rl_config`; the algorithm on tensors:
:mod:`~esarm.training.rl_utils`; held-out measures: :mod:`esarm.evaluation.policy`): RL fine-tuning of the STA policy against the frozen reward model (paper Sec. III-B.4, eq. 2).

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
capture's within an LVE / EVE tolerance) that stops early after ``early_stopping_patience`` checks without
improvement and lets its best check replace the STA model only when a paired bootstrap over the clips puts the
improvement above 0 (``guard_confidence``): the guard against a policy that exploits the reward model. Region-wise
RL (``trainable_groups``, :func:`freeze_other_groups`) trains only some codebook groups (the eyes and brows): what
the others' logits depend on is frozen, rollouts decode them greedily and the loss counts only the trainable tokens.

The trainer is a ``transformers.Trainer`` in TRL's style (TRL 1.16 has no PPO and its RLOO / GRPO trainers
assume text LLMs): one Trainer step is one optimiser update; the sampler repeats each generation batch of clips
(``steps_per_generation`` micro-batches, by default ``gradient_accumulation_steps``) ``num_ppo_epochs`` times and
rollouts are generated on the first pass and replayed on the others, as TRL's GRPO / RLOO do.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from torch import nn
from transformers import Trainer, TrainerCallback, set_seed
from trl.models import unwrap_model_for_generation
from trl.trainer.utils import RepeatSampler, disable_dropout_in_model

from ..blendshapes import FACE_REGIONS
from ..data.collators import STACollator
from ..data.loading import even_spread, load_split
from ..evaluation.policy import clip_quality, evaluate_policy, paired_improvement, quality_score
from ..evaluation.rl_diagnostics import reward_hacking_check
from ..evaluation.rollouts import CONDITION_KEYS, reward_conditions
from ..labels import model_speakers
from ..modeling_reward import ESARMRewardModel
from ..modeling_sta import ESARMSTAForGeneration
from ..processing_esarm import ESARMProcessor
from ..rig import resolve_rig
from .checkpoints import resolve_resume_checkpoint, write_done_marker
from .metric_store import MetricStore, log_with_metrics
from .rl_config import ESARMRLTrainingConfig
from .rl_utils import clipped_policy_loss, masked_mean, returns_to_go, rloo_advantages, token_log_probs

logger = logging.getLogger(__name__)

__all__ = ["ESARMRLTrainer", "GROUND_TRUTH_COLUMNS", "HeldOutQualityCallback", "POLICY_DATASET_COLUMNS",
           "PolicyInputCollator", "drop_ground_truth_columns", "freeze_other_groups", "train_rl"]  # fmt: skip

# Inputs the policy is allowed to see in this stage: audio and condition. Ground-truth animation columns
# (``blendshapes``, ``tokens``, ``motion_tokens``) are dropped before the dataloader (paper Sec. IV-C: "the agent
# does not have access to any human datasets during the reinforcement learning fine-tuning").
POLICY_DATASET_COLUMNS: tuple[str, ...] = ("audio", "sampling_rate", "emotion", "intensity", "speaker")
GROUND_TRUTH_COLUMNS: tuple[str, ...] = ("blendshapes", "tokens", "motion_tokens", "motion_mask", "labels")


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


def freeze_other_groups(model: nn.Module, trainable_groups: Sequence[str] | None) -> tuple[int, ...]:
    """Freeze every parameter of the STA ``model`` that the logits of a group outside ``trainable_groups`` depend on
    (:meth:`~esarm.ESARMSTAForGeneration.logit_dependencies`), and those that feed no logits, so that the other
    groups' logits stay bit-identical whatever the optimiser does; returns the trainable group indices.

    Args:
        trainable_groups: region names of :data:`~esarm.blendshapes.FACE_REGIONS` (``None``: every group, nothing
            frozen here).
    Raises:
        ValueError: the policy does not have one codebook per region, or once the other groups' parameters are
            frozen a trainable group keeps none of its own (e.g. ``["eyes", "brows"]`` with
            ``mouth_conditioning="full"``, where the mouth shares the motion transformer; or ``["eyes"]`` alone,
            which shares it with the brows).
    """
    num_groups = model.config.num_groups
    if trainable_groups is None:
        return tuple(range(num_groups))
    regions = list(FACE_REGIONS)
    if num_groups != len(regions):
        raise ValueError(f"trainable_groups needs a policy with one codebook per face region {regions}, got a policy "
                         f"with {num_groups} codebook group(s)")  # fmt: skip
    if not trainable_groups or any(group not in regions for group in trainable_groups):
        raise ValueError(f"trainable_groups must be a non-empty list of {regions}, got {trainable_groups!r}")
    trainable = {regions.index(group) for group in trainable_groups}
    frozen = set(range(num_groups)) - trainable
    dependencies = model.logit_dependencies()
    keep = {name for name, groups in dependencies.items() if set(groups) & trainable and not set(groups) & frozen}
    isolated = {group for name in keep for group in dependencies[name]}
    if not trainable <= isolated:
        raise ValueError(
            f"trainable_groups {sorted(trainable_groups, key=regions.index)} must keep parameters of their own once "
            f"everything {[regions[g] for g in sorted(frozen)]} depend(s) on is frozen: expected ['eyes', 'brows'] "
            f"(or ['mouth']) with a mouth stream of its own (mouth_conditioning 'content' or 'parallel'), got a policy "
            f"with mouth_conditioning={model.config.mouth_conditioning!r} where "
            f"{[regions[g] for g in sorted(trainable - isolated)]} share(s) every parameter with a frozen group"
        )
    for name, parameter in model.named_parameters():
        if name not in keep:
            parameter.requires_grad_(False)
    return tuple(sorted(trainable))


def _select_conditions(inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {key: inputs[key] for key in CONDITION_KEYS if inputs.get(key) is not None}


def _repeat_conditions(conditions: dict[str, torch.Tensor], times: int) -> dict[str, torch.Tensor]:
    return {key: value.repeat_interleave(times, dim=0) for key, value in conditions.items()}


class ESARMRLTrainer(Trainer):
    """RLOO with PPO-style clipping for the STA policy against a frozen reward model.

    Args:
        model: the policy, an ``ESARMSTAForGeneration``.
        reward_model: the frozen scorer, an ``ESARMRewardModel`` (or a model with its ``config`` and its
            ``forward(**conditions, motion_tokens, motion_mask)`` giving ``returns [B]`` and ``rewards [B, T']``).
        args: :class:`ESARMRLTrainingConfig`.
        ref_model: frozen reference policy for the KL term; a frozen copy of ``model`` when ``None``.
        train_dataset: clips (audio + condition; ground-truth columns are dropped when it is a ``datasets.Dataset``).
        data_collator: rows -> ``CONDITION_KEYS`` tensors; when ``None``, a :class:`PolicyInputCollator` with the
            speakers of ``processing_class`` (the policy's ``ESARMProcessor``) and the policy's fps.
    """

    _tag_names = ["esarm", "rl", "rloo"]

    def __init__(
        self,
        model: nn.Module,
        reward_model: nn.Module,
        args: ESARMRLTrainingConfig,
        ref_model: nn.Module | None = None,
        train_dataset=None,
        eval_dataset=None,
        data_collator=None,
        processing_class=None,
        callbacks=None,
        optimizers=(None, None),
    ):
        if not isinstance(args, ESARMRLTrainingConfig):
            raise ValueError(f"args must be an ESARMRLTrainingConfig, got {type(args).__name__}")
        if train_dataset is not None and hasattr(train_dataset, "column_names"):
            train_dataset = drop_ground_truth_columns(train_dataset)
        if data_collator is None:
            # the policy's processor names its speakers; without one every speaker is the unknown speaker
            speakers = processing_class.speakers if processing_class is not None else ()
            data_collator = PolicyInputCollator(speakers=speakers, fps=float(model.config.fps), seed=args.seed)
        if ref_model is None:
            from trl.experimental.utils import create_reference_model

            ref_model = create_reference_model(model)
        for frozen in (ref_model, reward_model):
            frozen.eval()
            frozen.requires_grad_(False)
            disable_dropout_in_model(frozen)
        # The ratio compares the sampling distribution with the training one: both must be deterministic.
        disable_dropout_in_model(model)
        if args.freeze_audio_encoder and model.audio_encoder is not None:  # None: a log-mel front end only
            model.audio_encoder.requires_grad_(False)
        # before the optimiser exists: transformers' Trainer gives it only the parameters that require grad, so the
        # frozen groups' parameters get neither updates nor weight decay
        trainable_groups = freeze_other_groups(model, args.trainable_groups)
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
        self.trainable_groups = trainable_groups
        # the other groups are decoded by argmax in rollouts: their tokens are not samples of the policy
        self.greedy_groups = [g for g in range(model.config.num_groups) if g not in trainable_groups] or None
        self._group_mask = torch.zeros(model.config.num_groups, dtype=torch.bool)
        self._group_mask[list(trainable_groups)] = True

    def _token_mask(self, motion_tokens: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """``[B, T', G]`` true on the valid tokens of the trainable groups: what the loss, KL and entropy count."""
        return token_mask.unsqueeze(-1) & self._group_mask.to(token_mask.device)

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
                greedy_groups=self.greedy_groups,
                decode_blendshapes=False,
            )
            motion_tokens = generated.motion_tokens  # [B*k, T', G]
            token_mask = generated.token_mask  # [B*k, T']
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

        mask = self._token_mask(motion_tokens, token_mask)  # [B*k, T', G]
        per_token_kl = (old_logps - ref_logps) * mask
        sequence_kl = per_token_kl.sum(dim=(1, 2))  # [B*k]
        rewards = scores - self.kl_coef * sequence_kl
        if args.reward_type == "dense":
            # per step: the reward model's reward minus the step's KL, summed to returns-to-go [B*k, T']
            step_rewards = scored.rewards.float() - self.kl_coef * per_token_kl.sum(-1)
            gamma = float(reward_model.config.gamma)
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
        mask = self._token_mask(motion_tokens, token_mask)
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


class HeldOutQualityCallback(TrainerCallback):
    """The guard against reward hacking: every ``every`` updates (and before the first), ``measure(model)`` (greedy
    held-out metrics and per-clip values of :func:`evaluate_policy` with ``per_clip=True``) scores the policy with
    :func:`quality_score` (``metric``, ``tolerance_mm``: the mean of the per-clip :func:`clip_quality`). The weights
    of the initial policy and of the best check are kept on the CPU, and training stops after ``patience`` checks
    without improvement. :meth:`decide` then tests the best check against the initial policy on the same clips
    (:func:`paired_improvement` at ``confidence``, corrected for the number of checks): only an improvement whose
    interval lies above 0 replaces the initial policy. ``history`` holds every check (``step``, ``score``,
    ``difference`` and ``standard_error`` of the per-clip improvement over the initial check, the measured means)."""

    def __init__(
        self, measure, every: int, patience: int | None = None, metric: str = "lve_eve", tolerance_mm: float = 0.05,
        confidence: float = 0.95, seed: int = 0,
    ):  # fmt: skip
        self.measure, self.every, self.patience = measure, every, patience
        self.metric, self.tolerance_mm, self.confidence, self.seed = metric, tolerance_mm, confidence, seed
        self.history: list[dict[str, float]] = []
        self.clip_scores: list[np.ndarray] = []  # per check, the per-clip values of clip_quality
        self.best_score, self.best_step, self.best_state, self.initial_state = math.inf, 0, None, None
        self._checks_without_improvement = 0

    def check(self, model: nn.Module, step: int) -> None:
        values, per_clip = self.measure(model)
        model.train()
        scores = clip_quality(per_clip, self.metric)
        initial = self.history[0] if self.history else values
        score = quality_score(values, initial, self.metric, self.tolerance_mm)
        improvement = (self.clip_scores[0] if self.clip_scores else scores) - scores
        standard_error = float(improvement.std(ddof=1) / math.sqrt(len(improvement))) if len(improvement) > 1 else 0.0
        self.history.append({"step": step, "score": score, "difference": float(improvement.mean()),
                             "standard_error": standard_error, **values})  # fmt: skip
        self.clip_scores.append(scores)
        logger.info("RL quality check at update %d: %s", step, values)
        if self.initial_state is None:
            self.initial_state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
        if score < self.best_score or self.best_state is None:
            self.best_score, self.best_step, self._checks_without_improvement = score, step, 0
            self.best_state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
        else:
            self._checks_without_improvement += 1

    def decide(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The paired test of the best check against the initial one; returns the guard's record and the weights
        to keep (the best check's when accepted, else the initial policy's).

        The record: ``guard_metric``, ``guard_candidate_step`` (the best check by mean), ``guard_num_checks``,
        ``guard_accepted`` (1 / 0), ``quality_best_step`` (the step of the kept weights), the test's
        ``guard_improvement`` (mean per-clip improvement of the candidate over the initial policy, in the metric's
        units, > 0 = better), ``guard_ci_low`` / ``guard_ci_high``, ``guard_p_value``, ``guard_confidence_level``,
        ``guard_per_clip_std``, ``guard_standard_error``, ``guard_clips``, ``guard_clips_needed`` (see
        :func:`paired_improvement`), and ``guard_kept_improvement``: the validation improvement of what is kept
        (``guard_improvement`` when accepted, else 0), to set beside the test speakers' improvement.
        """
        initial_step = self.history[0]["step"]
        candidate = next(i for i, check in enumerate(self.history) if check["step"] == self.best_step)
        record: dict[str, Any] = {"guard_metric": self.metric, "guard_candidate_step": self.best_step,
                                  "guard_num_checks": len(self.history)}  # fmt: skip
        accepted = False
        if candidate > 0:
            test = paired_improvement(
                self.clip_scores[0], self.clip_scores[candidate], self.confidence, len(self.history) - 1,
                seed=self.seed,
            )  # fmt: skip
            accepted = bool(test.pop("accepted"))
            record.update({f"guard_{key}": value for key, value in test.items()})
        else:
            record.update(guard_improvement=0.0, guard_clips=float(len(self.clip_scores[0])))
        record["guard_accepted"] = int(accepted)
        record["guard_kept_improvement"] = record["guard_improvement"] if accepted else 0.0
        record["quality_best_step"] = self.best_step if accepted else initial_step
        logger.info("RL guard: check %d vs the initial policy on %s: %s", self.best_step, self.metric, record)
        return record, self.best_state if accepted else self.initial_state

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


def train_rl(config: ESARMRLTrainingConfig) -> dict[str, Any]:
    """Runs stage 5 and returns its metrics (also in ``<output_dir>/metrics.json`` with the stage's done marker).

    Loads the STA policy, its processor, a frozen reference copy and the frozen reward model; evaluates the greedy
    policy on held-out clips (reward, and LVE / EVE / blendshape MAE against the ground truth), trains, evaluates
    again and saves the tuned policy + processor to ``output_dir``. Resumes from ``config.resume_from_checkpoint``
    (``"auto"``: the last checkpoint in ``output_dir``).

    Returns:
        ``reward_before`` / ``reward_after`` (held-out, greedy), ``lve_mm_before`` / ``lve_mm_after``,
        ``eve_mm_before`` / ``eve_mm_after``, ``blendshape_mae_before`` / ``_after`` (with ground truth and a rig),
        the same for sampled animations prefixed ``sampled_`` (``eval_sampled``; the groups ``trainable_groups``
        leaves out stay greedy), with the guard (``quality_eval_steps``) its record of
        :meth:`HeldOutQualityCallback.decide` (``guard_accepted``, ``guard_improvement`` and its interval, ...) and
        ``quality_history``, the last logged training metrics (``train_reward``, ``train_kl``, ...) and the whole ``train_log``.
    """
    for name in ("sta_name_or_path", "reward_model_name_or_path", "dataset_name_or_path", "output_dir"):
        if getattr(config, name) is None:
            raise ValueError(f"{name} must be set for train_rl, got None")
    set_seed(config.seed)
    device = PartialState().device
    policy = ESARMSTAForGeneration.from_pretrained(config.sta_name_or_path)
    freeze_other_groups(policy, config.trainable_groups)  # a policy that cannot isolate them fails before any work
    ref_policy = ESARMSTAForGeneration.from_pretrained(config.ref_policy_name_or_path or config.sta_name_or_path)
    reward_model = ESARMRewardModel.from_pretrained(config.reward_model_name_or_path)
    speakers = model_speakers(config.sta_name_or_path)
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
        guard = _quality_guard(config, reward_model, even_spread(eval_dataset, config.quality_eval_clips), collator, rig)
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
        metrics.update(_restore_best_policy(trainer, guard))
    trainer.save_model(config.output_dir)
    metrics.update(_training_metrics(trainer, train_output))
    if evaluate:
        unwrap = trainer.accelerator.unwrap_model
        metrics.update(
            _held_out(config, unwrap(trainer.model), unwrap(trainer.reward_model), eval_dataset, collator, rig, "after")
        )
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        ESARMProcessor(speakers=speakers, fps=float(policy.config.fps),
                       phone_decoder_settings=policy.config.phone_decoder_settings).save_pretrained(config.output_dir)
        write_done_marker(config.output_dir, metrics)
    trainer.accelerator.wait_for_everyone()
    return metrics


def _quality_guard(config: ESARMRLTrainingConfig, reward_model, clips, collator, rig) -> HeldOutQualityCallback:
    """The held-out quality check of ``config`` on ``clips``: greedy :func:`evaluate_policy` (per clip) every
    ``quality_eval_steps`` updates."""
    return HeldOutQualityCallback(
        lambda model: evaluate_policy(
            model, reward_model, clips, collator, config.per_device_eval_batch_size, rig, seed=config.seed,
            per_clip=True,
        ),  # fmt: skip
        config.quality_eval_steps,
        config.early_stopping_patience,
        config.quality_metric,
        config.quality_tolerance_mm,
        config.guard_confidence,
        config.seed,
    )


def _restore_best_policy(trainer: ESARMRLTrainer, guard: HeldOutQualityCallback) -> dict[str, Any]:
    """Check the final policy (unless the last check was at the last update), load the weights the guard's paired
    test keeps (:meth:`HeldOutQualityCallback.decide`) into the trainer's model and return the guard's record
    (its decision, the history, the reward-hacking check)."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if guard.history[-1]["step"] != trainer.state.global_step:
        guard.check(model, trainer.state.global_step)
    record, state = guard.decide()
    model.load_state_dict(state)
    metrics: dict[str, Any] = {**record, "quality_history": guard.history}
    if "lve_mm" in guard.history[0]:
        steps, rewards, lves = ([h[key] for h in guard.history] for key in ("step", "reward", "lve_mm"))
        metrics.update(reward_hacking_check(steps, rewards, lves))
    return metrics


def _training_metrics(trainer: ESARMRLTrainer, train_output) -> dict[str, Any]:
    """Steps, runtime, the last logged training metrics (``train_reward``, ``train_kl``, ...), the first logged
    reward and the whole ``train_log``."""
    train_log = [entry for entry in trainer.state.log_history if "reward" in entry]
    metrics = {"train_steps": train_output.global_step, "train_runtime_s": train_output.metrics.get("train_runtime")}
    if train_log:
        metrics.update({f"train_{key}": value for key, value in train_log[-1].items() if key not in ("step", "epoch")})
        metrics["train_reward_first"] = train_log[0]["reward"]
    metrics["train_log"] = train_log
    return metrics


def _held_out(config: ESARMRLTrainingConfig, policy, reward_model, dataset, collator, rig, when: str) -> dict[str, float]:
    """Held-out metrics of the greedy (and sampled) policy, keyed ``<metric>_<when>`` / ``sampled_<metric>_<when>``."""
    results = {}
    modes = [("", False)] + ([("sampled_", True)] if config.eval_sampled else [])
    # sampled as the rollouts sample: the groups region-wise RL freezes stay greedy
    trainable = config.trainable_groups or list(FACE_REGIONS)
    greedy_groups = [region for region in FACE_REGIONS if region not in trainable] or None
    for prefix, do_sample in modes:
        values = evaluate_policy(
            policy, reward_model, dataset, collator, config.per_device_eval_batch_size, rig, config.max_eval_clips,
            do_sample=do_sample, temperature=config.temperature, seed=config.seed, greedy_groups=greedy_groups,
        )  # fmt: skip
        logger.info("RL: held-out %s policy %s training: %s", "sampled" if do_sample else "greedy", when, values)
        results.update({f"{prefix}{key}_{when}": value for key, value in values.items()})
    return results
