"""The five ESARM training stages and the runner of the whole pipeline.

Each stage is two modules, as in TRL: ``<stage>_config.py`` (a dataclass over the shared
:class:`~esarm.training.args.ESARMTrainingArguments` holding only the stage's own fields) and ``<stage>_trainer.py``
(the ``Trainer`` subclass and the stage's entry point).

1. motion prior: :mod:`~esarm.training.motion_prior_config` / :mod:`~esarm.training.motion_prior_trainer`
   (``ESARMMotionPriorTrainingConfig``, ``train_motion_prior``).
2. speech-to-animation model: :mod:`~esarm.training.sta_config` / :mod:`~esarm.training.sta_trainer`
   (``ESARMSTATrainingConfig``, ``train_sta``).
3. ranked demonstrations: :mod:`~esarm.training.demos_config` / :mod:`~esarm.training.demos_trainer`
   (``ESARMDemoTrainingConfig``, ``collect_demos``).
4. reward model: :mod:`~esarm.training.reward_config` / :mod:`~esarm.training.reward_trainer`
   (``ESARMRewardTrainingConfig``, ``train_reward_model``).
5. RL fine-tuning: :mod:`~esarm.training.rl_config` / :mod:`~esarm.training.rl_trainer`
   (``ESARMRLTrainingConfig``, ``train_rl``; the algorithm on tensors in :mod:`~esarm.training.rl_utils`).

Datasets come from :mod:`esarm.data` (demonstration pairs: :mod:`esarm.data.demonstrations`), measures from
:mod:`esarm.evaluation` (:mod:`~esarm.evaluation.rollouts`, :mod:`~esarm.evaluation.ranking`,
:mod:`~esarm.evaluation.policy`). :func:`esarm.training.runner.run_pipeline` runs every stage plus the evaluation
(:func:`esarm.evaluation.run.evaluate_pipeline`). Names are imported lazily so that ``import esarm.training`` does
not load torch, transformers and trl. The old stage modules (``esarm.training.reward`` ...) and config names
(``ESARMRewardConfig``, ``ESARMRLConfig``, ``ESARMDemoConfig``) still resolve, with a ``FutureWarning``, for one
release.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_LAZY = {
    "ESARMTrainingArguments": "args",
    "parse_stage_args": "args",
    "write_done_marker": "checkpoints",
    "read_done_marker": "checkpoints",
    "ESARMMotionPriorTrainingConfig": "motion_prior_config",
    "ESARMMotionPriorTrainer": "motion_prior_trainer",
    "train_motion_prior": "motion_prior_trainer",
    "ESARMSTATrainingConfig": "sta_config",
    "ESARMSTATrainer": "sta_trainer",
    "train_sta": "sta_trainer",
    "ESARMDemoTrainingConfig": "demos_config",
    "collect_demos": "demos_trainer",
    "ESARMRewardTrainingConfig": "reward_config",
    "ESARMRewardTrainer": "reward_trainer",
    "train_reward_model": "reward_trainer",
    "ESARMRLTrainingConfig": "rl_config",
    "ESARMRLTrainer": "rl_trainer",
    "train_rl": "rl_trainer",
    "run_pipeline": "runner",
}
_RENAMED = {
    "ESARMDemoConfig": "ESARMDemoTrainingConfig",
    "ESARMRewardConfig": "ESARMRewardTrainingConfig",
    "ESARMRLConfig": "ESARMRLTrainingConfig",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _RENAMED:
        warnings.warn(
            f"esarm.training.{name} is deprecated and will be removed in the next release; use "
            f"esarm.training.{_RENAMED[name]}", FutureWarning, stacklevel=2,
        )  # fmt: skip
        name = _RENAMED[name]
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
