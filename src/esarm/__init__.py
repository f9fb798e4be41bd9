"""esarm: emotional speech -> 52 ARKit blendshapes (ESARM: STA model, VQ motion prior, reward model, RL).

Importing the package registers the three models with ``AutoConfig`` / ``AutoModel`` / ``AutoProcessor``, marks
them for ``register_for_auto_class`` (saved folders then carry their code and load with ``trust_remote_code=True``
where esarm is not installed) and registers the ``"speech-to-animation"`` pipeline. Each Auto-class registration
sits at the bottom of the module that defines the class, as in transformers. The pipeline task is registered here,
with the embedded default model (:mod:`esarm.default_model`) as the task's default: ``pipeline.py`` is copied into
saved folders for ``trust_remote_code``, so it cannot import the package data's module.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .blendshapes import ARKIT_NAMES, EMOTIONS
from .configuration_esarm import ESARMMotionPriorConfig, ESARMRewardModelConfig, ESARMSTAConfig
from .default_model import DEFAULT_MODEL_DIR  # noqa: I001 - after the models it loads
from .generation import EpsilonGreedyLogitsProcessor
from .modeling_motion_prior import ESARMMotionPrior
from .modeling_reward import ESARMRewardModel, ranking_loss
from .modeling_sta import ESARMSTAForGeneration
from .pipeline import SpeechToAnimationPipeline, register_pipeline
from .processing_esarm import ESARMProcessor

# pipeline("speech-to-animation") with no model: transformers' default model of the task, the embedded folder
register_pipeline(str(DEFAULT_MODEL_DIR) if (DEFAULT_MODEL_DIR / "config.json").is_file() else None)

__all__ = [
    "ARKIT_NAMES",
    "EMOTIONS",
    "ESARMMotionPrior",
    "ESARMMotionPriorConfig",
    "ESARMProcessor",
    "ESARMRewardModel",
    "ESARMRewardModelConfig",
    "ESARMSTAConfig",
    "ESARMSTAForGeneration",
    "EpsilonGreedyLogitsProcessor",
    "SpeechToAnimationPipeline",
    "__version__",
    "ranking_loss",
]
