"""A mouth from the phones PocketSphinx recognises, with the rest of the face (eyes, brows) from the STA model.

The CPU models learn lip sync from synthetic voices only, and on recordings of real people their mouths follow the
speech much less well than the phones PocketSphinx's acoustic model (trained on real speech) hears in it.
:func:`with_phone_mouth` replaces or mixes the mouth region of an animation (jaw, mouth, tongue, cheekPuff:
:data:`esarm.blendshapes.FACE_REGIONS`) with :func:`phone_visemes`: the corpus's viseme and coarticulation model
(:func:`esarm.data.synthetic.expressions.animate`, neutral, one fixed speaker style, :data:`STYLE`) run on the
recognised phones (:func:`esarm.data.sphinx.recognise_phones`). English only: the acoustic model is en-us.

Measured with esarm's default model, labelled neutral (``python benchmarks/phone_mouth.py --heldout
runs/heldout_validation_7``; r of jawOpen with the graded openness of the clips' phone labels, p / b / m closure and
rest in silence of the jaw):

================================  ======================  ==================================
mouth                             real speech (14 clips)  eSpeak NG validation (42 clips)
================================  ======================  ==================================
the model (``"model"``)           r 0.588, 0.505, 0.225   r 0.684, 0.516, 0.259
recognised phones (``"phones"``)  r 0.774, 0.386, 0.117   r 0.650, 0.561, 0.197
their mean (``"mix"``)            r 0.724, 0.442, 0.170   r 0.727, 0.539, 0.228
================================  ======================  ==================================

``"phones"`` follows real people best; ``"mix"`` is above the model on both sets.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .blendshapes import NUM_BLENDSHAPES, region_indices
from .data.phones import PAUSE
from .data.sphinx import recognise_phones, to_ipa
from .data.synthetic.expressions import animate, make_speakers

__all__ = ["MOUTH_MODES", "STYLE", "phone_visemes", "with_phone_mouth"]

MOUTH_MODES = ("model", "phones", "mix")
"""Where the mouth comes from: the model, the recognised phones, or the mean of the two."""

MOUTH = region_indices("mouth")

STYLE = dataclasses.replace(
    make_speakers(1, seed=0)[0], articulation=1.0, jaw_share=1.0, asymmetry=0.0, expressivity=0.0
)
"""The speaker style of :func:`phone_visemes`: the first synthetic corpus speaker's, with unit gains and no
asymmetry."""


def phone_visemes(audio: Any, sampling_rate: int, fps: float, num_frames: int) -> np.ndarray:
    """``[num_frames, 52]`` float32: the viseme model on the phones PocketSphinx recognises in ``audio`` (only the
    mouth region is meant for use; the other blendshapes are the viseme model's neutral face)."""
    samples = np.asarray(audio, np.float32).reshape(-1)
    phones, starts = recognise_phones(samples, sampling_rate)
    phonemes = to_ipa(phones)
    if not phonemes or phonemes[0] != PAUSE:
        phonemes, starts = [PAUSE, *phonemes], [0.0, *starts]
    face = animate(phonemes, np.asarray(starts), samples, sampling_rate, STYLE, "neutral", 1, fps,
                   np.random.default_rng(0))[:num_frames]  # fmt: skip
    if len(face) < num_frames:  # rounding of the clip's length: hold the last frame
        face = np.concatenate([face, np.repeat(face[-1:], num_frames - len(face), 0)])
    return face.astype(np.float32)


def with_phone_mouth(blendshapes: Any, audio: Any, sampling_rate: int, fps: float, mouth: str = "phones") -> np.ndarray:
    """``blendshapes`` ``[T, 52]`` with the mouth region from the recognised phones (``mouth="phones"``), the mean of
    the two (``"mix"``) or unchanged (``"model"``); a new array, the other blendshapes as given."""
    if mouth not in MOUTH_MODES:
        raise ValueError(f"mouth must be one of {list(MOUTH_MODES)}, got {mouth!r}")
    blendshapes = np.array(blendshapes, dtype=np.float32)
    if blendshapes.ndim != 2 or blendshapes.shape[1] != NUM_BLENDSHAPES:
        raise ValueError(f"blendshapes must have shape [frames, {NUM_BLENDSHAPES}], got {blendshapes.shape}")
    if mouth == "model":
        return blendshapes
    lips = phone_visemes(audio, sampling_rate, fps, len(blendshapes))[:, MOUTH]
    blendshapes[:, MOUTH] = lips if mouth == "phones" else 0.5 * (blendshapes[:, MOUTH] + lips)
    return blendshapes
