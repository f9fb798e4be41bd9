"""The five ESARM training stages and the pipeline running them.

1. :mod:`esarm.training.motion_prior` — VQ motion prior (``train_motion_prior``).
2. :mod:`esarm.training.sta` — speech-to-animation model (``train_sta``).
3. :mod:`esarm.training.demos` — automatically ranked demonstrations (``collect_demos``).
4. :mod:`esarm.training.reward` — reward model (``train_reward_model``).
5. :mod:`esarm.training.rl` — RL fine-tuning (``train_rl``).

:func:`esarm.training.pipeline.run_pipeline` runs them all plus the evaluation. Names are imported lazily so
that ``import esarm.training`` stays cheap and works while a stage's dependencies are missing.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ESARMMotionPriorTrainingConfig": "motion_prior",
    "MotionPriorTrainer": "motion_prior",
    "train_motion_prior": "motion_prior",
    "evaluate_motion_prior": "motion_prior",
    "ESARMSTATrainingConfig": "sta",
    "STATrainer": "sta",
    "train_sta": "sta",
    "ESARMDemoConfig": "demos",
    "collect_demos": "demos",
    "run_pipeline": "pipeline",
    "write_done_marker": "common",
    "read_done_marker": "common",
    "parse_stage_args": "common",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
