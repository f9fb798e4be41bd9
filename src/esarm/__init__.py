"""esarm: emotional speech -> 52 ARKit blendshapes (ESARM: STA model, VQ motion prior, reward model, RL).

Importing the package registers the three models with ``AutoConfig`` / ``AutoModel`` / ``AutoProcessor``,
marks them for ``register_for_auto_class`` (saved folders then carry their code and load with
``trust_remote_code=True`` where esarm is not installed) and registers the ``"speech-to-animation"`` pipeline.

The import itself is light: the public names load on first use, and the registration runs as soon as
``transformers`` is imported (at once when it already is). ``import transformers`` alone imports torch and takes
about 6 s on a 2-core CPU, which made every ``esarm`` command, ``--help`` included, wait that long; registration
needs transformers' Auto classes, and nobody can reach those without importing transformers first.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY_NAMES: dict[str, str] = {
    "ARKIT_NAMES": "blendshapes",
    "EMOTIONS": "blendshapes",
    "ESARMMotionPriorConfig": "configuration_esarm",
    "ESARMRewardModelConfig": "configuration_esarm",
    "ESARMSTAConfig": "configuration_esarm",
    "EpsilonGreedyLogitsProcessor": "generation",
    "ESARMMotionPrior": "modeling_motion_prior",
    "ESARMRewardModel": "modeling_reward",
    "ranking_loss": "modeling_reward",
    "ESARMSTAForGeneration": "modeling_sta",
    "SpeechToAnimationPipeline": "pipeline",
    "ESARMProcessor": "processing_esarm",
}

__all__ = sorted([*_LAZY_NAMES, "__version__"])

if TYPE_CHECKING:
    from .blendshapes import ARKIT_NAMES, EMOTIONS
    from .configuration_esarm import ESARMMotionPriorConfig, ESARMRewardModelConfig, ESARMSTAConfig
    from .generation import EpsilonGreedyLogitsProcessor
    from .modeling_motion_prior import ESARMMotionPrior
    from .modeling_reward import ESARMRewardModel, ranking_loss
    from .modeling_sta import ESARMSTAForGeneration
    from .pipeline import SpeechToAnimationPipeline
    from .processing_esarm import ESARMProcessor


def __getattr__(name: str) -> Any:
    if name not in _LAZY_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_NAMES})


_registered = False


def _register() -> None:
    """Register configs, models, processor and pipeline with transformers' Auto classes (idempotent)."""
    global _registered
    if _registered:
        return
    _registered = True
    from transformers import AutoConfig, AutoModel, AutoProcessor

    from .configuration_esarm import ESARMMotionPriorConfig, ESARMRewardModelConfig, ESARMSTAConfig
    from .modeling_motion_prior import ESARMMotionPrior
    from .modeling_reward import ESARMRewardModel
    from .modeling_sta import ESARMSTAForGeneration
    from .pipeline import register_pipeline
    from .processing_esarm import ESARMProcessor

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


class _RegisterAfterTransformers(importlib.abc.MetaPathFinder):
    """Runs :func:`_register` right after the ``transformers`` package has been imported (a post-import hook)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "transformers":
            return None
        sys.meta_path.remove(self)  # let the other finders locate transformers, once
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            _register()

        spec.loader.exec_module = exec_then_register
        return spec


if "transformers" in sys.modules:
    _register()
elif not any(isinstance(finder, _RegisterAfterTransformers) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterTransformers())
