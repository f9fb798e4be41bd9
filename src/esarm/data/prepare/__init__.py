"""Preparing real audio-visual corpora (MEAD, RAVDESS) in the package schema.

- :mod:`~esarm.data.prepare.mead`, :mod:`~esarm.data.prepare.ravdess`: find and parse each corpus's clips, then
  prepare them (``prepare_mead``, ``prepare_ravdess``).
- :mod:`~esarm.data.prepare.preparation`: the shared run (speaker splits, workers, parquet shards, dataset card).
- :mod:`~esarm.data.prepare.clips`: one clip (video -> blendshapes, audio -> 16 kHz) and the per-clip cache.
- :mod:`~esarm.data.prepare.extraction`: blendshape extractors (MediaPipe's FaceLandmarker) and media decoding.
- :mod:`~esarm.data.prepare.testing`: a small fake MEAD download and a deterministic extractor, to test or
  benchmark a preparation without the real corpus or MediaPipe.
"""

from .clips import ClipSource, UnparsedFile
from .extraction import BlendshapeExtractor, MediaPipeBlendshapeExtractor
from .mead import find_mead_clips, mead_test_clips, prepare_mead
from .preparation import PreparationResult, load_prepared, split_speakers
from .ravdess import find_ravdess_clips, parse_ravdess_name, prepare_ravdess

__all__ = [
    "BlendshapeExtractor",
    "ClipSource",
    "MediaPipeBlendshapeExtractor",
    "PreparationResult",
    "UnparsedFile",
    "find_mead_clips",
    "find_ravdess_clips",
    "load_prepared",
    "mead_test_clips",
    "parse_ravdess_name",
    "prepare_mead",
    "prepare_ravdess",
    "split_speakers",
]
