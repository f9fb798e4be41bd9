"""Data: the synthetic emotional talking-face corpus and MEAD / RAVDESS preparation.

Every dataset has one row per clip: ``id``, ``speaker``, ``emotion`` (``esarm.blendshapes.EMOTIONS``),
``intensity`` (1..3), ``sentence``, ``audio`` (16 kHz mono FLAC bytes: ``schema.decode_audio_value``), ``sampling_rate``,
``blendshapes`` (float32 [frames, 52], ARKit order) and ``fps``, in ``train`` / ``validation`` / ``test`` splits
by speaker.
"""

from .mead import find_mead_clips, mead_test_clips, prepare_mead
from .preparation import (
    BlendshapeExtractor,
    ClipSource,
    MediaPipeBlendshapeExtractor,
    PreparationResult,
    UnparsedFile,
    load_prepared,
    split_speakers,
)
from .ravdess import find_ravdess_clips, parse_ravdess_name, prepare_ravdess
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
