"""esarm: emotional speech -> 52 ARKit blendshapes (ESARM: STA model, VQ motion prior, reward model, RL).

Importing the package registers the three models with ``AutoConfig`` / ``AutoModel`` / ``AutoProcessor``,
marks them for ``register_for_auto_class`` (saved folders then carry their code and load with
``trust_remote_code=True`` where esarm is not installed) and registers the ``"speech-to-animation"`` pipeline.

The import itself is light: the public names load on first use, and the registration runs as soon as
``transformers`` is imported (at once when it already is; once the importing module is complete when one of
esarm's own modules imports it). ``import transformers`` alone imports torch and takes
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
    from .default_model import DEFAULT_MODEL_DIR
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
    # pipeline("speech-to-animation") without a model: transformers' default model of the task, a folder here
    register_pipeline(str(DEFAULT_MODEL_DIR) if (DEFAULT_MODEL_DIR / "config.json").is_file() else None)


def _register_when_ready(finished: str | None = None) -> None:
    """Register once transformers is imported and no esarm module is half-imported (``finished`` has just run to
    its end): a module of ours that imports transformers midway cannot be imported again from the registration."""
    if _registered or "transformers" not in sys.modules:
        return
    for name, module in list(sys.modules.items()):
        if name.startswith(f"{__name__}.") and name != finished:
            if getattr(getattr(module, "__spec__", None), "_initializing", False):
                return
    _register()


class _RegistrationHook(importlib.abc.MetaPathFinder):
    """A post-import hook: after ``transformers`` or one of esarm's modules has been imported, register when ready.
    The other finders locate the module; only its loader's ``exec_module`` is wrapped."""

    def find_spec(self, fullname, path=None, target=None):
        if _registered or (fullname != "transformers" and not fullname.startswith(f"{__name__}.")):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            _register_when_ready(finished=fullname)

        spec.loader.exec_module = exec_then_register
        return spec


if not any(isinstance(finder, _RegistrationHook) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegistrationHook())
_register_when_ready()
