"""Stage 4: the trainer of the reward model (config: :mod:`~esarm.training.reward_config`; pairs, datasets and
collators: :mod:`esarm.data.demonstrations`; held-out measures: :mod:`esarm.evaluation.ranking`): train the reward model on automatically ranked demonstrations (paper Sec. III-B.3, eq. 1; D-REX).

Training pairs are two rollouts of the *same clip* generated with different noise levels ``epsilon``; the label is
``y = int(eps_i < eps_j)`` (the less noisy rollout is the better one) and the loss is
:func:`esarm.modeling_reward.ranking_loss` on the two discounted returns ``R(tau)``. Optionally, as in T-REX,
each pair is cut to random sub-sequences ("snippets") of equal length, each with its own audio window.

Ranking sources (``ranking_sources``; each automatic, from the demonstrations of stage 3 and their clips):

* ``"epsilon"``: the paper's D-REX ranking (less noise is better);
* ``"ground_truth"``: the captured animation of a clip ranks above every rollout of that clip (T-REX with the human
  demonstrations the STA model was trained on);
* ``"misalignment"``: a motion (ground truth or smallest-epsilon rollout) against its own audio ranks above the same
  motion against the audio rolled by ``misalignment_shifts`` tokens (teaches lip sync);
* ``"emotion_mismatch"``: a rollout generated for another emotion ranks below the requested emotion's rollout and
  ground truth;
* ``"checkpoint"``: greedy rollouts of later STA checkpoints rank above those of earlier ones;
* ``"vertex_error"``: of two rollouts of a clip, the one closer to the captured animation (LVE + EVE, mm, stored
  by stage 3 with a rig) ranks higher, when they differ by more than ``vertex_error_margin`` mm;
* ``"ground_truth_epsilon"``: the captured animation ranks above copies of it with exploration noise at epsilon
  (stage 3's ``ground_truth_epsilons``), a less noisy copy above a noisier one: D-REX anchored at real motion
  instead of the policy's, so that noise is told from captured motion by its codes, not by how often they change.

Held-out evaluation: :func:`esarm.evaluation.ranking.evaluate_ranking` (pairwise accuracy by epsilon gap and by
ranking source, where the ground truth ranks, rank correlation of the return with -LVE / -EVE).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from transformers import Trainer, set_seed

from ..configuration_esarm import ESARMRewardModelConfig, ESARMSTAConfig, motion_prior_config_dict
from ..data.demonstrations import (
    RankingPairCollator,
    RankingPairDataset,
    RolloutCollator,
    build_source_pairs,
    demo_columns,
)
from ..data.loading import load_split
from ..evaluation.ranking import MODEL_INPUT_KEYS, evaluate_ranking
from ..labels import model_speakers
from ..modeling_reward import ESARMRewardModel, ranking_loss
from ..modeling_sta import ESARMSTAForGeneration
from .args import build_model_config, parse_overrides
from .checkpoints import resolve_resume_checkpoint, write_done_marker
from .metric_store import MetricStore, log_with_metrics
from .reward_config import ESARMRewardTrainingConfig

logger = logging.getLogger(__name__)

__all__ = ["ESARMRewardTrainer", "build_reward_model", "code_pose_embeddings", "sta_context", "train_reward_model"]


class ESARMRewardTrainer(Trainer):
    """``Trainer`` whose loss is the pairwise ranking loss (eq. 1) on the returns of the two rollouts of each pair.

    ``evaluate`` runs :func:`evaluate_ranking` on ``eval_dataset`` (a demonstration split: rollouts and ground-truth
    rows, not pairs) and logs the result with the ``eval_`` prefix.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._metric_store = MetricStore()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]  # [B], 1 where rollout i is the better one
        outputs = model(**{key: inputs[key] for key in MODEL_INPUT_KEYS if key in inputs})
        returns_i, returns_j = outputs.returns.float().chunk(2)  # [B] each: the batch is the i sides, then the j sides
        loss = ranking_loss(returns_i, returns_j, labels)
        mode = "train" if model.training else "eval"
        self._metric_store.add(mode, "pair_accuracy", ((returns_i > returns_j).long() == labels).float().mean())
        self._metric_store.add(mode, "return_margin", ((returns_i - returns_j) * (2 * labels - 1)).mean())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        super().log(log_with_metrics(self, logs), start_time)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("ESARMRewardTrainer.evaluate needs an eval_dataset (a demonstration split)")
        if not isinstance(self.data_collator, RankingPairCollator):
            raise ValueError(f"data_collator must be a RankingPairCollator, got {type(self.data_collator).__name__}")
        model = self.accelerator.unwrap_model(self.model)
        metrics = evaluate_ranking(
            model, dataset, self.data_collator.rollouts, self.args.per_device_eval_batch_size, self.args.misalignment_shifts
        )
        metrics = {f"{metric_key_prefix}_{key}": value for key, value in metrics.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


TOKEN_GEOMETRY: tuple[str, ...] = ("num_groups", "codebook_size", "frames_per_token", "fps")
"""The reward config's fields that must match the motion prior the demonstrations were tokenised with."""


def sta_context(sta_name_or_path: str | None) -> tuple[list[str], Any]:
    """Known speakers (the STA processor's) and the motion-prior config of a trained STA folder (``[]``/``None``)."""
    if sta_name_or_path is None:
        return [], None
    sta_config = ESARMSTAConfig.from_pretrained(sta_name_or_path)
    return model_speakers(sta_name_or_path), getattr(sta_config, "motion_prior_config", None)


def build_reward_model(config: ESARMRewardTrainingConfig, motion_prior_config=None, num_speakers: int = 0):
    """A trained reward model (``model_name_or_path``) or a fresh one: preset + overrides, with the token geometry
    (G, K, frames_per_token, fps) of the motion prior the demonstrations were tokenised with and room for
    ``num_speakers`` known speakers (ids 1..N)."""
    if config.model_name_or_path is not None:
        return ESARMRewardModel.from_pretrained(config.model_name_or_path)
    overrides = parse_overrides(config.model_overrides)
    if overrides.get("motion_input") == "blendshapes" and "motion_prior_config" not in overrides:
        # a motion-input model judges the decoded motion: it decodes with the prior the demonstrations' tokens
        # come from (the STA model's; train_reward_model loads its trained weights)
        if motion_prior_config is None:
            raise ValueError(
                "model_overrides motion_input='blendshapes' needs sta_name_or_path (its trained motion prior decodes "
                "the demonstrations' tokens), got None"
            )
        overrides["motion_prior_config"] = motion_prior_config_dict(motion_prior_config)
        # the preset's token geometry must already match that prior for the config to validate
        overrides.update(
            {key: getattr(motion_prior_config, key) for key in TOKEN_GEOMETRY}
        )
    model_config = build_model_config(ESARMRewardModelConfig, config.model_config, overrides)
    values = model_config.to_dict()
    for key in ("transformers_version", "architectures", "model_type"):
        values.pop(key, None)
    values["num_speakers"] = max(int(values.get("num_speakers", 0)), num_speakers)
    if motion_prior_config is not None:
        # the geometry, and the prior a motion-input model decodes with, come from the STA model's motion prior,
        # not from the preset (whose prior is the tiny one)
        for key in (*TOKEN_GEOMETRY, "motion_prior_config"):
            values.pop(key, None)
        model_config = ESARMRewardModelConfig.from_motion_prior_config(motion_prior_config, **values)
    else:
        model_config = ESARMRewardModelConfig(**values)
    return ESARMRewardModel(model_config)


@torch.no_grad()
def code_pose_embeddings(prior, hidden_size: int, std: float, seed: int = 0) -> torch.Tensor:
    """Motion-token embeddings ``[G * K, hidden_size]`` (row ``g * K + k`` for code ``k`` of group ``g``, the reward
    model's layout) built from what each code *means*: the face pose the motion prior decodes a steady run of that
    code to, restricted to the group's face region, centred over the group's codes and sent through a fixed random
    Gaussian projection (which keeps distances between poses up to a small distortion, Johnson-Lindenstrauss),
    scaled to ``std`` per group.

    Why: the reward model sees motion only as code ids. Trained from random embeddings on a few hundred pairs it
    learns which ids the near-greedy policy emits rather than which motion is good; epsilon noise and captured
    motion both bring codes the policy rarely emits. Starting from pose geometry, a code next to the policy's
    codes (a real blink, a wider jaw) and a code far from it (a uniform random draw) start apart.
    """
    groups, codes = prior.num_groups, prior.codebook_size
    steps = 4  # a steady run: the decoder's convolutions see the same code on both sides
    ids = torch.arange(codes, device=prior.device)[:, None, None].expand(codes, steps, groups)
    poses = prior.decode(ids).float()  # [K, steps * frames_per_token, 52]
    poses = poses[:, poses.shape[1] // 2]  # the middle frame: [K, 52]
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for indices in prior.groups:
        pose = poses[:, indices].cpu()
        pose = pose - pose.mean(0, keepdim=True)
        projection = torch.randn(len(indices), hidden_size, generator=generator)
        embedding = pose @ projection
        rows.append(embedding * (std / embedding.std().clamp_min(1e-8)))
    return torch.cat(rows)  # [G * K, hidden]


def train_reward_model(config: ESARMRewardTrainingConfig) -> dict[str, Any]:
    """Train (or resume) the reward model, save it to ``config.output_dir``, evaluate it on the held-out demos and
    write the stage's done marker. Returns the metrics (``eval_accuracy``, ``eval_accuracy_gap_<g>``,
    ``eval_gt_beats_eps_<e>``, ...)."""
    for name in ("output_dir", "dataset_name_or_path"):
        if getattr(config, name) is None:
            raise ValueError(f"{name} must be set for train_reward_model, got None")
    set_seed(config.seed)
    speakers, motion_prior_config = sta_context(config.sta_name_or_path)
    model = build_reward_model(config, motion_prior_config, num_speakers=len(speakers))
    fresh = config.model_name_or_path is None
    needs_prior = fresh and (
        config.token_embedding_init == "motion_prior" or model.config.motion_input == "blendshapes"
    )
    if needs_prior and config.sta_name_or_path is None:
        setting = "motion_input='blendshapes'"
        if config.token_embedding_init == "motion_prior":
            setting = "token_embedding_init='motion_prior'"
        raise ValueError(f"{setting} needs sta_name_or_path (its trained motion prior), got None")
    # the STA model's trained prior, loaded once (a fresh prior decodes every code to noise)
    prior = ESARMSTAForGeneration.from_pretrained(config.sta_name_or_path).motion_prior.eval() if needs_prior else None
    if fresh and config.token_embedding_init == "motion_prior":
        model.get_input_embeddings().weight.data.copy_(
            code_pose_embeddings(prior, model.config.hidden_size, model.config.initializer_range, config.seed)
        )
    if fresh and model.config.motion_input == "blendshapes":
        model.load_motion_prior(prior)
    train_demos = load_split(config.dataset_name_or_path, config.train_split)
    pairs = training_pairs(config, train_demos)
    eval_source = config.eval_dataset_name_or_path or config.dataset_name_or_path
    eval_demos = load_split(eval_source, config.eval_split) if config.eval_split else None

    collator = RankingPairCollator(
        RolloutCollator(speakers, float(model.config.fps), int(model.config.frames_per_token)),
        config.snippet_length,
        config.min_snippet_length,
        config.snippet_alignment,
        seed=config.seed,
    )
    trainer = ESARMRewardTrainer(
        model=model,
        args=config,
        train_dataset=RankingPairDataset(train_demos, pairs),
        eval_dataset=eval_demos,
        data_collator=collator,
    )
    train_output = trainer.train(resume_from_checkpoint=resolve_resume_checkpoint(config))
    trainer.save_model(config.output_dir)
    metrics: dict[str, Any] = {
        "train_loss": train_output.training_loss,
        "train_steps": train_output.global_step,
        "train_pairs": len(pairs),
        **{f"train_pairs_{source}": sum(p.source == source for p in pairs) for source in config.ranking_sources},
        "train_runtime_s": train_output.metrics.get("train_runtime"),
    }
    if eval_demos is not None:
        metrics.update(trainer.evaluate())
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        write_done_marker(config.output_dir, metrics)
    trainer.accelerator.wait_for_everyone()
    return metrics


def training_pairs(config: ESARMRewardTrainingConfig, demos) -> list:
    """The training pairs of ``config.ranking_sources`` on a demonstration split (a clear error when there are
    none: stage 3 makes the rows each source needs)."""
    pairs = build_source_pairs(
        **demo_columns(demos),
        sources=config.ranking_sources,
        max_pairs_per_clip=config.max_pairs_per_clip,
        shifts=config.misalignment_shifts,
        vertex_error_margin=config.vertex_error_margin,
        ground_truth_negatives=config.ground_truth_negatives,
        seed=config.seed,
    )
    if not pairs:
        raise ValueError(
            f"dataset_name_or_path {config.dataset_name_or_path!r} gives no training pairs for ranking_sources "
            f"{config.ranking_sources} (stage 3 makes the rows of each source: see ESARMDemoTrainingConfig)"
        )
    counts = {source: sum(p.source == source for p in pairs) for source in config.ranking_sources}
    logger.info("reward model: %d training pairs from %d demonstration rows: %s", len(pairs), len(demos), counts)
    return pairs
