"""The five ESARM training stages and the runner of the whole pipeline.

1. :mod:`esarm.training.motion_prior` — VQ motion prior (``train_motion_prior``).
2. :mod:`esarm.training.sta` — speech-to-animation model (``train_sta``).
3. :mod:`esarm.training.demos` — automatically ranked demonstrations (``collect_demos``).
4. :mod:`esarm.training.reward` — reward model (``train_reward_model``).
5. :mod:`esarm.training.rl` — RL fine-tuning (``train_rl``).

:func:`esarm.training.runner.run_pipeline` runs them all plus the evaluation
(:func:`esarm.evaluation.run.evaluate_pipeline`). Shared pieces: :mod:`~esarm.training.args` (arguments and their
parsing), :mod:`~esarm.training.checkpoints` (done markers, resuming), :mod:`~esarm.training.metric_store`. Names
are imported lazily so that ``import esarm.training`` does not load torch, transformers and trl.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ESARMTrainingArguments": "args",
    "parse_stage_args": "args",
    "write_done_marker": "checkpoints",
    "read_done_marker": "checkpoints",
    "ESARMMotionPriorTrainingConfig": "motion_prior",
    "ESARMMotionPriorTrainer": "motion_prior",
    "train_motion_prior": "motion_prior",
    "ESARMSTATrainingConfig": "sta",
    "ESARMSTATrainer": "sta",
    "train_sta": "sta",
    "ESARMDemoConfig": "demos",
    "collect_demos": "demos",
    "ESARMRewardConfig": "reward",
    "ESARMRewardTrainer": "reward",
    "train_reward_model": "reward",
    "ESARMRLConfig": "rl",
    "ESARMRLTrainer": "rl",
    "train_rl": "rl",
    "run_pipeline": "runner",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
