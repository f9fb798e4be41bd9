"""esarm: emotional speech -> 52 ARKit blendshapes (ESARM: STA model, VQ motion prior, reward model, RL).

Importing the package registers the three models with ``AutoConfig`` / ``AutoModel`` / ``AutoProcessor``,
marks them for ``register_for_auto_class`` (saved folders load with ``trust_remote_code=True`` without esarm
installed) and registers the ``"speech-to-animation"`` pipeline.
"""

from __future__ import annotations

import importlib
import logging

from .blendshapes import ARKIT_NAMES, EMOTIONS
from .configuration_esarm import ESARMSTAConfig

__version__ = "0.1.0"

logger = logging.getLogger(__name__)

# Public name -> module that defines it. Names whose module is still missing (parts in progress) are skipped so
# that the package stays importable; the finished package defines all of them.
_PUBLIC = {
    "ESARMMotionPriorConfig": "configuration_esarm",
    "ESARMRewardModelConfig": "configuration_esarm",
    "ESARMMotionPrior": "modeling_motion_prior",
    "ESARMSTAForGeneration": "modeling_sta",
    "ESARMRewardModel": "modeling_reward",
    "ranking_loss": "modeling_reward",
    "ESARMProcessor": "processing_esarm",
    "EpsilonGreedyLogitsProcessor": "generation",
    "SpeechToAnimationPipeline": "pipeline",
}

__all__ = ["ARKIT_NAMES", "EMOTIONS", "ESARMSTAConfig", "__version__"]


def _import_public_names() -> None:
    for name, module_name in _PUBLIC.items():
        try:
            module = importlib.import_module(f".{module_name}", __name__)
            globals()[name] = getattr(module, name)
        except (ImportError, AttributeError) as error:  # pragma: no cover - only while parts are being written
            logger.debug("esarm.%s not available yet: %s", name, error)
            continue
        __all__.append(name)


_import_public_names()


def _register() -> None:
    """Register configs, models, processor and pipeline with transformers' Auto classes."""
    from transformers import AutoConfig, AutoModel, AutoProcessor

    names = globals()
    pairs = [
        ("ESARMMotionPriorConfig", "ESARMMotionPrior"),
        ("ESARMSTAConfig", "ESARMSTAForGeneration"),
        ("ESARMRewardModelConfig", "ESARMRewardModel"),
    ]
    for config_name, model_name in pairs:
        config_class = names.get(config_name)
        if config_class is None:
            continue
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        config_class.register_for_auto_class("AutoConfig")
        model_class = names.get(model_name)
        if model_class is not None:
            AutoModel.register(config_class, model_class, exist_ok=True)
            model_class.register_for_auto_class("AutoModel")
    processor_class = names.get("ESARMProcessor")
    if processor_class is not None:
        for config_name in ("ESARMSTAConfig", "ESARMRewardModelConfig"):
            if names.get(config_name) is not None:
                AutoProcessor.register(names[config_name], processor_class, exist_ok=True)
        processor_class.register_for_auto_class("AutoProcessor")
    if names.get("SpeechToAnimationPipeline") is not None:
        from .pipeline import register_pipeline

        register_pipeline()


_register()
