"""The 52 ARKit blendshapes: names, orders, face-region groups and value ranges.

The package's canonical order (``ARKIT_NAMES``) is Apple's ``ARFaceAnchor.BlendShapeLocation`` order as
Live Link Face writes it (eyes, jaw, mouth, brows, cheeks, nose, tongue). Some tools (MediaPipe, EmoTalk,
the ICT-FaceKit conversion) use alphabetical order instead: ``ARKIT_NAMES_ALPHABETICAL``. Every array of
coefficients in this package is ``[..., 52]`` in ``ARKIT_NAMES`` order unless a function says otherwise;
use :func:`reorder` to convert.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawRight", "jawLeft", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthRight", "mouthLeft",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)  # fmt: skip
NUM_BLENDSHAPES = len(ARKIT_NAMES)
assert NUM_BLENDSHAPES == 52

ARKIT_NAMES_ALPHABETICAL: tuple[str, ...] = tuple(sorted(ARKIT_NAMES, key=lambda n: (n == "tongueOut", n)))
"""Alphabetical order with ``tongueOut`` last (MediaPipe without ``_neutral``, EmoTalk, ICT-FaceKit rig)."""

BLENDSHAPE_INDEX: dict[str, int] = {name: i for i, name in enumerate(ARKIT_NAMES)}

# Face regions used as separate codebooks by the motion prior. The lower face carries speech content,
# the eyes carry blinks and gaze, brows / cheeks / nose carry most of the emotion.
FACE_REGIONS: dict[str, tuple[str, ...]] = {
    "mouth": tuple(n for n in ARKIT_NAMES if n.startswith(("jaw", "mouth", "tongue")) or n == "cheekPuff"),
    "eyes": tuple(n for n in ARKIT_NAMES if n.startswith("eye")),
    "brows": tuple(
        n for n in ARKIT_NAMES if n.startswith(("brow", "nose")) or n in ("cheekSquintLeft", "cheekSquintRight")
    ),
}
assert sum(len(v) for v in FACE_REGIONS.values()) == NUM_BLENDSHAPES

VALUE_RANGE: tuple[float, float] = (0.0, 1.0)
"""ARKit coefficients are weights in [0, 1]."""

# Live Link Face CSV uses PascalCase names.
LIVE_LINK_NAMES: tuple[str, ...] = tuple(n[0].upper() + n[1:] for n in ARKIT_NAMES)


def region_indices(region: str) -> list[int]:
    """Indices (in ``ARKIT_NAMES`` order) of the blendshapes of one face region."""
    if region not in FACE_REGIONS:
        raise ValueError(f"region must be one of {sorted(FACE_REGIONS)}, got {region!r}")
    return [BLENDSHAPE_INDEX[n] for n in FACE_REGIONS[region]]


def _normalise_name(name: str) -> str:
    return name[0].lower() + name[1:] if name else name


def reorder(values: np.ndarray, from_names: Sequence[str], to_names: Sequence[str] = ARKIT_NAMES) -> np.ndarray:
    """Reorder the last axis of ``values`` from ``from_names`` to ``to_names``.

    Names compare case-insensitively on the first letter, so Live Link's ``JawOpen`` matches ``jawOpen``.
    Names absent from ``from_names`` are filled with zeros (e.g. MediaPipe has no ``tongueOut``); names in
    ``from_names`` that are not ARKit names (MediaPipe's ``_neutral``) are dropped.
    """
    values = np.asarray(values)
    from_names = [_normalise_name(n) for n in from_names]
    if values.shape[-1] != len(from_names):
        raise ValueError(
            f"values must have {len(from_names)} coefficients on the last axis (one per name in from_names), "
            f"got shape {values.shape}"
        )
    unknown = [n for n in to_names if _normalise_name(n) not in BLENDSHAPE_INDEX]
    if unknown:
        raise ValueError(f"to_names must be ARKit names, got unknown names {unknown}")
    position = {n: i for i, n in enumerate(from_names)}
    out = np.zeros(values.shape[:-1] + (len(to_names),), dtype=values.dtype)
    for j, name in enumerate(to_names):
        i = position.get(_normalise_name(name))
        if i is not None:
            out[..., j] = values[..., i]
    return out


def validate_blendshapes(values: np.ndarray, argument: str = "blendshapes") -> np.ndarray:
    """Check that ``values`` is a finite float array ``[..., frames, 52]`` and return it as float32."""
    values = np.asarray(values)
    if values.ndim < 2 or values.shape[-1] != NUM_BLENDSHAPES:
        raise ValueError(f"{argument} must have shape [..., frames, 52], got shape {values.shape}")
    if not np.issubdtype(values.dtype, np.number):
        raise ValueError(f"{argument} must be numeric, got dtype {values.dtype}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{argument} must be finite, got {int((~np.isfinite(values)).sum())} NaN/inf values")
    return values.astype(np.float32, copy=False)


# MEAD's emotions (and the order of emotion ids everywhere in the package) and intensity levels.
EMOTIONS: tuple[str, ...] = ("neutral", "angry", "contempt", "disgusted", "fear", "happy", "sad", "surprised")
INTENSITIES: tuple[int, ...] = (1, 2, 3)
