"""Data: the dataset schema, loading, collators and augmentation; the synthetic corpus (:mod:`esarm.data.synthetic`)
and the preparation of MEAD / RAVDESS (:mod:`esarm.data.prepare`).

Every dataset has one row per clip: ``id``, ``speaker``, ``emotion`` (``esarm.blendshapes.EMOTIONS``),
``intensity`` (1..3), ``sentence``, ``audio`` (16 kHz mono FLAC bytes: ``schema.decode_audio_value``), ``sampling_rate``,
``blendshapes`` (float32 [frames, 52], ARKit order) and ``fps``, in ``train`` / ``validation`` / ``test`` splits
by speaker.
"""

import importlib
import sys
import types
import warnings

from .prepare import (
    BlendshapeExtractor,
    ClipSource,
    MediaPipeBlendshapeExtractor,
    PreparationResult,
    UnparsedFile,
    find_mead_clips,
    find_ravdess_clips,
    load_prepared,
    mead_test_clips,
    parse_ravdess_name,
    prepare_mead,
    prepare_ravdess,
    split_speakers,
)
from .schema import CLIP_COLUMNS, clip_features
from .synthetic import (
    EMOTION_PROFILES,
    SENTENCES,
    SyntheticCorpusConfig,
    build_synthetic_corpus,
    generate_synthetic_corpus,
    make_speakers,
    speaker_splits,
)

__all__ = [
    "CLIP_COLUMNS",
    "EMOTION_PROFILES",
    "SENTENCES",
    "BlendshapeExtractor",
    "ClipSource",
    "MediaPipeBlendshapeExtractor",
    "PreparationResult",
    "SyntheticCorpusConfig",
    "UnparsedFile",
    "build_synthetic_corpus",
    "clip_features",
    "find_mead_clips",
    "find_ravdess_clips",
    "generate_synthetic_corpus",
    "load_prepared",
    "make_speakers",
    "mead_test_clips",
    "parse_ravdess_name",
    "prepare_mead",
    "prepare_ravdess",
    "speaker_splits",
    "split_speakers",
]

# Modules that moved into the two sub-packages: their old paths keep working for one release.
MOVED_MODULES = {
    **{name: "synthetic" for name in ("tts", "festival", "flite", "voices", "sentences", "expressions", "visemes")},
    **{name: "prepare" for name in ("mead", "ravdess", "preparation", "extraction", "testing")},
}


class _MovedModule(types.ModuleType):
    """Stands at a module's old path: each attribute read warns (FutureWarning) and comes from the new module."""

    def __init__(self, old: str, new: str):
        super().__init__(old)
        self._new = new

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):  # the import system's own look-ups (__path__, ...)
            return getattr(importlib.import_module(self._new), name)
        warnings.warn(
            f"{self.__name__} moved to {self._new}; the old path goes in the next release", FutureWarning, stacklevel=2
        )
        return getattr(importlib.import_module(self._new), name)


for _name, _package in MOVED_MODULES.items():
    _old, _new = f"{__name__}.{_name}", f"{__name__}.{_package}.{_name}"
    sys.modules.setdefault(_old, _MovedModule(_old, _new))
    globals()[_name] = sys.modules[_old]
del _name, _package, _old, _new
