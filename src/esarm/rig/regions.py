"""Named vertex regions of a face rig: ``lips`` (LVE) and ``eye_forehead`` (EVE, FDD).

Two ways to build them: from the 68 iBUG landmarks when the mesh has them (ICT-FaceKit), or, for a head without
landmarks (a glTF avatar), from what its lip and eye/brow targets move.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..blendshapes import BLENDSHAPE_INDEX

REGION_NAMES: tuple[str, ...] = ("lips", "eye_forehead")
"""Vertex regions every rig carries: ``lips`` (LVE) and ``eye_forehead`` (EVE, FDD)."""

LIP_RADIUS_MM = 6.0  # lips: within 6 mm of the 20 mouth landmarks (48-67)
EYE_RADIUS_MM = 10.0  # eyes: within 10 mm of the eye landmarks (36-47)
# Brows: within 12 mm of the brow landmarks (17-26). The brow ridge curves back from the brow line, and 12 mm
# reaches the skin between brow and upper lid that browDown / browInnerUp move; on ICT-FaceKit these radii give the
# 2301-vertex eye_forehead region of the reference rig (10 mm would give 2249).
BROW_RADIUS_MM = 12.0
FOREHEAD_SIDE_MARGIN_MM = 5.0  # forehead: above the lowest brow landmark, up to 5 mm beyond the outer brow ends


def regions_from_landmarks(neutral: np.ndarray, landmarks: Sequence[int]) -> dict[str, np.ndarray]:
    """Lip and eye + forehead vertex regions from 68 iBUG landmarks on a y-up, z-forward face in mm.

    lips: vertices within ``LIP_RADIUS_MM`` (6 mm) of the 20 mouth landmarks (48-67). eye_forehead: vertices within
    ``EYE_RADIUS_MM`` (10 mm) of the eye landmarks (36-47) or ``BROW_RADIUS_MM`` (12 mm) of the brow landmarks
    (17-26), plus the forehead: vertices above the lowest brow landmark and no further sideways than
    ``FOREHEAD_SIDE_MARGIN_MM`` beyond the outer brow ends.
    """
    neutral = np.asarray(neutral, dtype=np.float64)
    points = neutral[np.asarray(landmarks, dtype=np.int64)]
    if len(points) != 68:
        raise ValueError(f"landmarks must hold 68 iBUG vertex ids, got {len(points)}")

    def near(ids: Sequence[int], radius: float) -> np.ndarray:
        distance = np.sqrt(((neutral[:, None, :] - points[None, list(ids)]) ** 2).sum(-1)).min(axis=1)
        return distance <= radius

    lips = near(range(48, 68), LIP_RADIUS_MM)
    brows = points[17:27]
    forehead = (neutral[:, 1] >= brows[:, 1].min()) & (
        np.abs(neutral[:, 0] - brows[:, 0].mean())
        <= np.abs(brows[:, 0] - brows[:, 0].mean()).max() + FOREHEAD_SIDE_MARGIN_MM
    )
    eye_forehead = near(range(17, 27), BROW_RADIUS_MM) | near(range(36, 48), EYE_RADIUS_MM) | forehead
    return {"lips": np.nonzero(lips)[0], "eye_forehead": np.nonzero(eye_forehead)[0]}


_LIP_TARGETS = ("mouthFunnel", "mouthPucker", "mouthRollLower", "mouthRollUpper")
_EYE_BROW_TARGETS = (
    "eyeBlinkLeft", "eyeBlinkRight", "eyeWideLeft", "eyeWideRight", "eyeSquintLeft", "eyeSquintRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
)  # fmt: skip


def regions_from_targets(
    neutral: np.ndarray, deltas: np.ndarray, lip_fraction: float = 0.5, eye_fraction: float = 0.25
) -> dict[str, np.ndarray]:
    """Approximate regions for a rig without landmarks, from what its targets move.

    lips: vertices that a lip-shaping target (funnel, pucker, roll lower / upper) moves by at least
    ``lip_fraction`` of that target's largest offset. eye_forehead: the same over the eye-lid and brow targets with
    ``eye_fraction``. ``deltas`` is ``[52, V, 3]`` in ``ARKIT_NAMES`` order. On the ICT-FaceKit rig these overlap
    the landmark regions by about 70 % (lips) and 65 % (eye_forehead) (intersection over union): pass explicit
    regions when numbers must be compared with a landmark-based rig.
    """
    deltas = np.asarray(deltas)
    regions = {}
    for region, targets, fraction in (
        ("lips", _LIP_TARGETS, lip_fraction),
        ("eye_forehead", _EYE_BROW_TARGETS, eye_fraction),
    ):
        selected = np.zeros(deltas.shape[1], dtype=bool)
        for name in targets:
            motion = np.linalg.norm(deltas[BLENDSHAPE_INDEX[name]], axis=-1)
            if motion.max() > 0:
                selected |= motion >= fraction * motion.max()
        regions[region] = np.nonzero(selected)[0]
    return regions
