"""esarm: emotional speech -> 52 ARKit blendshapes (ESARM: STA model, VQ motion prior, reward model, RL).

Importing the package registers the three models with ``AutoConfig`` / ``AutoModel`` / ``AutoProcessor``,
marks them for ``register_for_auto_class`` (saved folders then carry their code and load with
``trust_remote_code=True`` where esarm is not installed) and registers the ``"speech-to-animation"`` pipeline.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModel, AutoProcessor

from .blendshapes import ARKIT_NAMES, EMOTIONS
from .configuration_esarm import ESARMMotionPriorConfig, ESARMRewardModelConfig, ESARMSTAConfig
from .generation import EpsilonGreedyLogitsProcessor
from .modeling_motion_prior import ESARMMotionPrior
from .modeling_reward import ESARMRewardModel, ranking_loss
from .modeling_sta import ESARMSTAForGeneration
from .pipeline import SpeechToAnimationPipeline, register_pipeline
from .processing_esarm import ESARMProcessor

__version__ = "0.1.0"

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


def _register() -> None:
    """Register configs, models, processor and pipeline with transformers' Auto classes (idempotent)."""
    for config_class, model_class in (
        (ESARMMotionPriorConfig, ESARMMotionPrior),
        (ESARMSTAConfig, ESARMSTAForGeneration),
        (ESARMRewardModelConfig, ESARMRewardModel),
    ):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
        config_class.register_for_auto_class("AutoConfig")
        model_class.register_for_auto_class("AutoModel")
    # The processor serves the two models that hear audio.
    for config_class in (ESARMSTAConfig, ESARMRewardModelConfig):
        AutoProcessor.register(config_class, ESARMProcessor, exist_ok=True)
    ESARMProcessor.register_for_auto_class("AutoProcessor")
    register_pipeline()


_register()
