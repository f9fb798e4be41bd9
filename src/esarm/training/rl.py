"""Deprecated alias of ``esarm.training.rl_config`` / ``rl_trainer`` / ``rl_utils`` and ``esarm.evaluation.policy``
(held-out measures); removed in the next release."""

from ._deprecation import moved

__getattr__ = moved(
    __name__,
    ["esarm.training.rl_config", "esarm.training.rl_trainer", "esarm.training.rl_utils", "esarm.evaluation.policy",
     "esarm.evaluation.rollouts"],
    {"ESARMRLConfig": "esarm.training.rl_config:ESARMRLTrainingConfig"},
)  # fmt: skip
