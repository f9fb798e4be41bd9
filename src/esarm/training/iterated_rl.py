"""RL against a reward model that is retrained on the current policy between rounds, as adversarial imitation
retrains its discriminator on the generator's samples (GAIL, Ho & Ermon 2016; T-REX's capture-above-policy pairs).

A reward model trained once on the STA model's demonstrations has seen only that policy's motion; RL moves the
policy to where the reward model was never told what is good. Each round here:

1. RL (:func:`~esarm.training.rl_trainer.train_rl`) from the last round's policy against the last round's reward
   model (the KL reference stays the STA model);
2. stage 3 (:func:`~esarm.training.demos_trainer.collect_demos`) rolls the new policy out on the training clips:
   its own samples beside the capture's tokens;
3. stage 4 (:func:`~esarm.training.reward_trainer.train_reward_model`) continues training the reward model from its
   last weights on those demonstrations: the capture ranked above the policy's samples (``ground_truth``) and the
   policy's samples above themselves on shifted audio (``misalignment``).

Every sub-stage writes its done marker in ``<output_dir>/round<k>/<stage>``; a finished one is read back, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from .checkpoints import read_done_marker
from .demos_config import ESARMDemoTrainingConfig
from .demos_trainer import collect_demos
from .reward_config import ESARMRewardTrainingConfig
from .reward_trainer import train_reward_model
from .rl_config import ESARMRLTrainingConfig
from .rl_trainer import train_rl

logger = logging.getLogger(__name__)

__all__ = ["ITERATED_RANKING_SOURCES", "train_iterated_rl"]

ITERATED_RANKING_SOURCES: tuple[str, ...] = ("ground_truth", "misalignment")
"""The ranking sources of the reward model's retraining on a policy's rollouts: the capture above the policy's
samples, and each sample above itself on misaligned audio (so the retrained model keeps judging lip sync)."""


def train_iterated_rl(
    rl: ESARMRLTrainingConfig,
    reward: ESARMRewardTrainingConfig,
    demos: ESARMDemoTrainingConfig,
    rounds: int,
    output_dir: str | Path,
) -> dict[str, Any]:
    """``rounds`` rounds of RL, the reward model retrained on each round's policy between them.

    Args:
        rl: the RL stage of every round (its ``sta_name_or_path`` is the first round's policy and every round's KL
            reference; its ``reward_model_name_or_path`` the first round's reward model). Its ``output_dir`` is
            replaced by ``<output_dir>/round<k>/rl``.
        reward: the retraining's settings (steps, learning rate, batch size...); ``ranking_sources`` is replaced by
            :data:`ITERATED_RANKING_SOURCES`, the model by the last round's and the data by the round's rollouts.
        demos: the rollouts of the policy for the retraining (``max_clips``, ``num_rollouts``...); sampled from
            the policy's own distribution at ``rl.temperature``, at the smallest of ``demos.epsilons``, beside the
            capture's tokens.
        rounds: RL rounds (>= 1; 1 is plain :func:`train_rl`).
        output_dir: the run's folder.

    Returns:
        ``{"rounds": [<round metrics>...], "policy": <folder of the last round's policy>, "reward_model": ...}``,
        where each round holds its ``rl`` metrics and, but for the last, the retrained ``reward`` metrics.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an integer >= 1, got {rounds!r}")
    for name in ("sta_name_or_path", "reward_model_name_or_path", "dataset_name_or_path"):
        if getattr(rl, name) is None:
            raise ValueError(f"rl.{name} must be set for train_iterated_rl, got None")
    output_dir = Path(output_dir)
    reference = rl.ref_policy_name_or_path or rl.sta_name_or_path
    policy, reward_model = rl.sta_name_or_path, rl.reward_model_name_or_path
    history: list[dict[str, Any]] = []
    for number in range(rounds):
        folder = output_dir / f"round{number}"
        rl_dir = folder / "rl"
        record: dict[str, Any] = {"policy_start": policy, "reward_model": reward_model}
        record["rl"] = read_done_marker(rl_dir) or train_rl(
            dataclasses.replace(
                rl, sta_name_or_path=policy, ref_policy_name_or_path=reference,
                reward_model_name_or_path=reward_model, output_dir=str(rl_dir),
            )  # fmt: skip
        )
        policy = str(rl_dir)
        if number + 1 < rounds:
            demos_dir, reward_dir = folder / "demos", folder / "reward_model"
            record["demos"] = read_done_marker(demos_dir) or collect_demos(
                dataclasses.replace(
                    demos, sta_name_or_path=policy, dataset_name_or_path=rl.dataset_name_or_path,
                    epsilons=[min(demos.epsilons)], do_sample=True, temperature=rl.temperature,
                    include_ground_truth=True, emotion_mismatch=False, checkpoints_name_or_path=[],
                    ground_truth_epsilons=[], output_dir=str(demos_dir), seed=rl.seed + number + 1,
                )  # fmt: skip
            )
            record["reward"] = read_done_marker(reward_dir) or train_reward_model(
                dataclasses.replace(
                    reward, model_name_or_path=reward_model, sta_name_or_path=policy,
                    dataset_name_or_path=str(demos_dir), ranking_sources=list(ITERATED_RANKING_SOURCES),
                    token_embedding_init="random", output_dir=str(reward_dir), seed=rl.seed + number + 1,
                )  # fmt: skip
            )
            reward_model = str(reward_dir)
        logger.info("iterated RL: round %d of %d done (%s)", number + 1, rounds, folder)
        history.append(record)
    return {"rounds": history, "policy": policy, "reward_model": reward_model}
