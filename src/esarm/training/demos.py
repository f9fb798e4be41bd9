"""Deprecated alias of ``esarm.training.demos_config`` and ``esarm.training.demos_trainer`` (removed in the next
release)."""

from ._deprecation import moved

__getattr__ = moved(
    __name__,
    ["esarm.training.demos_config", "esarm.training.demos_trainer", "esarm.data.demonstrations"],
    {"ESARMDemoConfig": "esarm.training.demos_config:ESARMDemoTrainingConfig"},
)
