"""Config of stage 5, RL fine-tuning of the STA policy (:func:`esarm.training.rl_trainer.train_rl`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from ..blendshapes import FACE_REGIONS
from .args import ESARMTrainingArguments, Interval, OneOf

QUALITY_METRICS: tuple[str, ...] = ("lve_eve", "expressive")


@dataclass
class ESARMRLTrainingConfig(ESARMTrainingArguments):
    r"""Configuration of :class:`~esarm.training.rl_trainer.ESARMRLTrainer` and :func:`~esarm.training.rl_trainer.train_rl`.

    Only the RL-specific parameters are listed; see :class:`~esarm.training.args.ESARMTrainingArguments` (the
    defaults every stage shares) and ``transformers.TrainingArguments`` for the rest. Defaults that differ from
    the shared ones: ``learning_rate=1e-5``, ``logging_steps=1``, ``ddp_find_unused_parameters=True``. ``per_device_train_batch_size`` counts clips; each
    clip yields ``num_rollouts`` rollouts.

    Args:
        sta_name_or_path: folder of the trained STA model (``save_pretrained``) that initialises the policy; its
            processor is loaded from the same folder.
        reward_model_name_or_path: folder of the trained reward model (frozen during this stage).
        ref_policy_name_or_path: folder of the reference policy for the KL term; defaults to ``sta_name_or_path``.
        dataset_name_or_path / train_split / eval_split (shared): the corpus (one row per clip), its split of the
            rollouts and its held-out split of the before-after evaluation.
        num_rollouts: rollouts sampled per clip (``k``); the leave-one-out baseline needs at least 2.
        temperature: sampling temperature of the rollouts (the ratio uses the same tempered distribution).
        top_k: optional top-k truncation of rollout sampling.
        kl_coef: weight of the summed per-token KL estimate subtracted from the reward (the initial value with
            ``kl_target``).
        kl_target / kl_horizon: adaptive KL (Ziegler et al. 2019): after each generation,
            ``kl_coef *= 1 + clip(kl / kl_target - 1, -0.2, 0.2) * rollouts / kl_horizon`` (per-token KL).
        reward_type: ``"sparse"`` (paper eq. 2: the return at the end of the sequence) or ``"dense"``.
        steps_per_generation: micro-batches generated together and replayed ``num_ppo_epochs`` times.
        quality_eval_steps / quality_eval_clips / early_stopping_patience: the held-out quality check (the guard):
            every ``quality_eval_steps`` updates, the greedy policy on ``quality_eval_clips`` validation clips (an
            even spread). The default, 64 clips, detects (at 95 %, power 0.8) a paired change of 0.35 times the
            per-clip spread of the change; 16 clips detected only 0.7 times it.
        quality_metric: what the check minimises, per clip (:func:`~esarm.evaluation.policy.clip_quality`):
            ``"lve_eve"`` (LVE + EVE in mm; with the mouth frozen by ``trainable_groups`` the mouth's blendshapes
            cannot change and LVE moves only through upper-face blendshapes that reach lip vertices, so it compares
            mostly EVE) or ``"expressive"`` (the distance ``sum_r |log(motion_r / captured motion_r)|`` of
            each clip's per-region motion from the capture's, among checks whose mean LVE and EVE are each within
            ``quality_tolerance_mm`` of the initial policy's).
        quality_tolerance_mm: how much worse than the initial policy LVE and EVE may get under ``"expressive"``.
        guard_confidence: the best check replaces the initial policy only when the paired bootstrap over the
            validation clips (:func:`~esarm.evaluation.policy.paired_improvement`) puts its per-clip improvement's
            confidence interval above 0, at level ``1 - (1 - guard_confidence) / m`` for the best of ``m`` checks
            (Bonferroni); otherwise the initial weights are restored.
        trainable_groups: the face regions (codebook groups of :data:`~esarm.blendshapes.FACE_REGIONS`) whose
            logits RL may change; every parameter the other groups' logits depend on is frozen
            (:meth:`~esarm.ESARMSTAForGeneration.logit_dependencies`: the speech front ends and the content encoder,
            and for the mouth its own stream and the style path that selects its per-clip bias), so those logits are
            bit-identical after training; rollouts decode the frozen groups greedily and the loss, KL and entropy
            count the trainable groups' tokens only. ``["eyes", "brows"]`` keeps the lips of the STA model by
            construction; it needs a policy with its own mouth stream (``mouth_conditioning`` ``"content"`` or
            ``"parallel"``): with ``"full"`` every group shares the motion transformer and training is refused.
            ``None`` (the default) trains every group, as the paper does, so that a config without the field runs
            on every policy; ``configs/small.yaml`` sets ``[eyes, brows]``.
        reward_rounds: RL rounds of the pipeline's stage 5; between two rounds the reward model is retrained on the
            round's policy rollouts (:func:`~esarm.training.iterated_rl.train_iterated_rl`, with the pipeline's
            ``reward`` and ``demos`` sections). :func:`train_rl` itself runs one round.
        cliprange: PPO ratio clip ``epsilon``: ratios are clipped to ``[1 - cliprange, 1 + cliprange]``.
        num_ppo_epochs: optimiser updates on each batch of rollouts before new ones are sampled.
        entropy_coef: weight of the entropy bonus (0 disables it).
        normalize_advantages: standardise advantages over the (global) batch of rollouts.
        reward_clip: optional symmetric clip of the reward-model score before the KL penalty.
        max_eval_clips: held-out clips used for the before / after evaluation (LVE, EVE, reward).
        eval_sampled: also evaluate sampled animations (at ``temperature``, seeded) before / after: RL against a
            reward model trained on greedy demonstrations mostly sharpens the policy, which shows in samples first.
        freeze_audio_encoder: keep the policy's speech encoder (WavLM) frozen; RL then tunes the disentangling
            encoder and the motion decoder (cheaper, and the reward cannot reshape the speech features).
    """

    renamed_keys = {"policy_name_or_path": "sta_name_or_path"}

    sta_name_or_path: str | None = field(default=None, metadata={"help": "Folder of the trained STA model."})
    reward_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Folder of the trained reward model (kept frozen)."}
    )
    ref_policy_name_or_path: str | None = field(
        default=None, metadata={"help": "Folder of the KL reference policy; defaults to sta_name_or_path."}
    )
    num_rollouts: Annotated[int, Interval(min=2)] = field(default=4, metadata={"help": "Rollouts sampled per clip (k >= 2, leave-one-out)."})
    temperature: Annotated[float, Interval(min=0, exclude_min=True)] = field(default=1.0, metadata={"help": "Sampling temperature of the rollouts (> 0)."})
    top_k: Annotated[int | None, Interval(min=1)] = field(default=None, metadata={"help": "Optional top-k truncation of rollout sampling."})
    kl_coef: Annotated[float, Interval(min=0)] = field(
        default=0.05, metadata={"help": "Weight of the summed per-token KL to the reference, subtracted from R."}
    )
    kl_target: Annotated[float | None, Interval(min=0, exclude_min=True)] = field(
        default=None,
        metadata={
            "help": "Adaptive KL: steer the per-token KL (nats) towards this value by scaling kl_coef (None: fixed)."
        },
    )
    kl_horizon: Annotated[int, Interval(min=1)] = field(
        default=64, metadata={"help": "Adaptive KL horizon in rollouts: kl_coef changes by at most a fifth per horizon."}
    )
    reward_type: Literal["sparse", "dense"] = field(
        default="sparse",
        metadata={
            "help": "'sparse': the paper's end-of-sequence return R(tau); 'dense': the reward model's per-step "
            "rewards with per-token KL, returns-to-go and a per-step leave-one-out baseline."
        },
    )
    cliprange: Annotated[float, Interval(min=0, max=1, exclude_min=True, exclude_max=True)] = field(default=0.2, metadata={"help": "PPO clip range epsilon for the probability ratio."})
    num_ppo_epochs: Annotated[int, Interval(min=1)] = field(default=2, metadata={"help": "Optimiser updates per batch of rollouts."})
    steps_per_generation: Annotated[int | None, Interval(min=1)] = field(
        default=None,
        metadata={
            "help": "Micro-batches per generation batch (None: gradient_accumulation_steps), so that every PPO "
            "epoch is its own optimiser update."
        },
    )
    quality_eval_steps: Annotated[int, Interval(min=0)] = field(
        default=0,
        metadata={
            "help": "Every this many updates, measure greedy LVE + EVE on quality_eval_clips validation clips, keep "
            "the best policy (the initial one included) and restore it at the end (0: off)."
        },
    )
    quality_eval_clips: Annotated[int, Interval(min=2)] = field(
        default=64, metadata={"help": "Validation clips of the held-out quality check (the paired test's sample)."}
    )
    quality_metric: Literal["lve_eve", "expressive"] = field(
        default="lve_eve",
        metadata={
            "help": "'lve_eve': the check minimises per-clip LVE + EVE (mm); 'expressive': it minimises each clip's "
            "distance of the per-region motion from the capture's, sum_r |log(motion_r / captured_r)|, among checks "
            "whose mean LVE and EVE stay within quality_tolerance_mm of the initial policy's."
        },
    )
    guard_confidence: Annotated[float, Interval(min=0, max=1, exclude_min=True, exclude_max=True)] = field(
        default=0.95,
        metadata={
            "help": "The best check replaces the initial policy only if the paired bootstrap's interval of its "
            "per-clip improvement lies above 0 at this level (Bonferroni-corrected for the number of checks)."
        },
    )
    quality_tolerance_mm: Annotated[float, Interval(min=0)] = field(
        default=0.05,
        metadata={"help": "With quality_metric 'expressive': how much LVE and EVE may each exceed the initial ones."},
    )
    early_stopping_patience: Annotated[int | None, Interval(min=1)] = field(
        default=None, metadata={"help": "Stop after this many quality checks without improvement (None: never)."}
    )
    entropy_coef: Annotated[float, Interval(min=0)] = field(default=0.0, metadata={"help": "Weight of the entropy bonus (0 disables it)."})
    normalize_advantages: bool = field(
        default=True, metadata={"help": "Standardise advantages over the global batch of rollouts."}
    )
    reward_clip: Annotated[float | None, Interval(min=0, exclude_min=True)] = field(
        default=None, metadata={"help": "Clip reward-model scores to [-reward_clip, reward_clip] (None: no clip)."}
    )
    max_eval_clips: Annotated[int, Interval(min=0)] = field(default=16, metadata={"help": "Held-out clips for the before/after evaluation."})
    eval_sampled: bool = field(
        default=True,
        metadata={"help": "Also evaluate sampled animations (temperature) before/after, not only greedy ones."},
    )
    freeze_audio_encoder: bool = field(
        default=True,
        metadata={"help": "Keep the policy's speech encoder frozen (RL tunes the disentangling encoder and decoder)."},
    )
    reward_rounds: Annotated[int, Interval(min=1)] = field(
        default=1,
        metadata={
            "help": "RL rounds; between two, the reward model is retrained on the round's policy rollouts (the "
            "capture above them, misaligned audio below: esarm.training.iterated_rl). 1: the paper's single round."
        },
    )
    trainable_groups: Annotated[list[str] | None, OneOf(tuple(FACE_REGIONS))] = field(
        default=None,
        metadata={
            "help": "Face regions whose logits RL may change (e.g. eyes brows); everything the other regions' logits "
            "depend on is frozen and they are decoded greedily in rollouts. None: every region (the paper)."
        },
    )
    # Overridden TrainingArguments defaults.
    learning_rate: float = field(default=1e-5, metadata={"help": "Initial AdamW learning rate."})
    logging_steps: float = field(default=1, metadata={"help": "Log every X updates steps."})
    ddp_find_unused_parameters: bool | None = field(
        default=True,
        metadata={"help": "The RL loss leaves the policy's emotion-classifier head unused: DDP must allow it."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.steps_per_generation is None:
            self.steps_per_generation = self.gradient_accumulation_steps
        # Rollouts are replayed for num_ppo_epochs passes over the generation batch; with fewer micro-batches per
        # generation than per update, one update would swallow several PPO epochs (and later ones would never be
        # an update of their own).
        if self.steps_per_generation % self.gradient_accumulation_steps:
            raise ValueError(
                f"steps_per_generation must be a multiple of gradient_accumulation_steps="
                f"{self.gradient_accumulation_steps}, got {self.steps_per_generation}"
            )
