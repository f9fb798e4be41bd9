"""Deprecated alias of ``esarm.training.motion_prior_config`` and ``esarm.training.motion_prior_trainer`` (removed
in the next release)."""

from ._deprecation import moved

__getattr__ = moved(__name__, ["esarm.training.motion_prior_config", "esarm.training.motion_prior_trainer"])
