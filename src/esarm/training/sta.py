"""Deprecated alias of ``esarm.training.sta_config`` and ``esarm.training.sta_trainer`` (removed in the next
release)."""

from ._deprecation import moved

__getattr__ = moved(__name__, ["esarm.training.sta_config", "esarm.training.sta_trainer"])
