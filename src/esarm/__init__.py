"""esarm: emotional speech -> 52 ARKit blendshapes (ESARM: STA model, VQ motion prior, reward model, RL).

Importing the package registers the three models with ``AutoConfig`` / ``AutoModel`` / ``AutoProcessor``, marks
them for ``register_for_auto_class`` (saved folders then carry their code and load with ``trust_remote_code=True``
where esarm is not installed) and registers the ``"speech-to-animation"`` pipeline. Each registration sits at the
bottom of the module that defines the class, as in transformers; this file only imports those modules.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .blendshapes import ARKIT_NAMES, EMOTIONS
from .configuration_esarm import ESARMMotionPriorConfig, ESARMRewardModelConfig, ESARMSTAConfig
from .generation import EpsilonGreedyLogitsProcessor
from .modeling_motion_prior import ESARMMotionPrior
from .modeling_reward import ESARMRewardModel, ranking_loss
from .modeling_sta import ESARMSTAForGeneration
from .pipeline import SpeechToAnimationPipeline
from .processing_esarm import ESARMProcessor

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
