"""Configurations of the three ESARM models.

Each config holds every hyper-parameter of its model with a default, validates its fields on construction
(raising ``ValueError`` that names the field, the expected and the given value) and offers named presets as
classmethods: ``tiny()`` (CPU tests, seconds) and ``base()`` (paper scale).
"""

from __future__ import annotations

# ---- ESARMMotionPriorConfig (owned by the motion-prior author) ----

# ---- ESARMRewardModelConfig (owned by the motion-prior author) ----

# ---- ESARMSTAConfig (owned by the STA author) ----
