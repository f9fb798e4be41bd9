"""Deprecated alias of ``esarm.training.reward_config`` / ``reward_trainer``, ``esarm.data.demonstrations`` (pairs,
datasets, collators) and ``esarm.evaluation.ranking`` (held-out measures); removed in the next release."""

from ._deprecation import moved

__getattr__ = moved(
    __name__,
    ["esarm.training.reward_config", "esarm.training.reward_trainer", "esarm.data.demonstrations",
     "esarm.evaluation.ranking"],
    {"ESARMRewardConfig": "esarm.training.reward_config:ESARMRewardTrainingConfig"},
)  # fmt: skip
