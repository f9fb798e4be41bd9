"""Resolve the ``rig`` argument of the exporters and the renderer to an object with ``neutral`` [V,3] mm,
``deltas`` [52,V,3] mm (``ARKIT_NAMES`` order) and ``faces`` [F,3].

Any object with those three attributes works (``esarm.evaluation.rig.FaceRig`` is the intended one); a path
loads through ``FaceRig`` (.npz, .glb/.gltf); ``None`` means the default rig (``FaceRig.default()``, which
looks at ``$ESARM_RIG`` and the user's cache).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from esarm.blendshapes import ARKIT_NAMES, reorder


@dataclass
class MeshRig:
    """A minimal blendshape rig: ``vertices(w) = neutral + w @ deltas`` (millimetres)."""

    neutral: np.ndarray  # [V, 3] mm
    deltas: np.ndarray  # [52, V, 3] mm, ARKIT_NAMES order
    faces: np.ndarray  # [F, 3] vertex ids

    def vertices(self, blendshapes: np.ndarray) -> np.ndarray:
        weights = np.asarray(blendshapes, dtype=np.float32)
        return self.neutral + np.tensordot(weights, self.deltas, axes=([-1], [0]))


def _load_npz(path: Path) -> MeshRig:
    # Used only while esarm.evaluation.rig is unavailable; FaceRig.from_npz is the real loader.
    with np.load(path) as data:
        names = [str(n) for n in data["names"]]
        deltas = np.moveaxis(reorder(np.moveaxis(data["deltas"], 0, -1), names, ARKIT_NAMES), -1, 0)
        return MeshRig(data["neutral"].astype(np.float32), deltas.astype(np.float32), data["faces"].astype(np.int64))


def resolve_rig(rig: Any = None) -> Any:
    """Return a rig object (see module docstring) for ``rig`` = rig object, path, or ``None`` (default rig)."""
    if rig is not None and not isinstance(rig, (str, os.PathLike)):
        for attribute in ("neutral", "deltas", "faces"):
            if not hasattr(rig, attribute):
                raise ValueError(f"rig must have neutral, deltas and faces arrays, got {type(rig).__name__}")
        return rig
    try:
        from esarm.evaluation.rig import FaceRig
    except ImportError:
        FaceRig = None  # noqa: N806
    if rig is None:
        if FaceRig is not None and hasattr(FaceRig, "default"):
            return FaceRig.default()
        rig = os.environ.get("ESARM_RIG")
        if not rig:
            raise ValueError("no face rig: pass rig=PATH or set ESARM_RIG to an ICT-FaceKit ARKit .npz")
    path = Path(rig)
    if not path.exists():
        raise ValueError(f"rig file not found: {path}")
    if FaceRig is not None:
        if hasattr(FaceRig, "from_path"):
            return FaceRig.from_path(path)
        return FaceRig.from_npz(path)
    if path.suffix == ".npz":
        return _load_npz(path)
    raise ValueError(f"rig must be a .npz (or .glb/.gltf) file, got {path}")


def rig_arrays(rig: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(neutral [V,3] float32, deltas [52,V,3] float32, faces [F,3] int64) of a rig, as numpy."""

    def as_numpy(x):
        return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)

    neutral = as_numpy(rig.neutral).astype(np.float32)
    deltas = as_numpy(rig.deltas).astype(np.float32)
    faces = as_numpy(rig.faces).astype(np.int64)
    if deltas.shape != (52,) + neutral.shape:
        raise ValueError(f"rig deltas must have shape [52, V, 3] = {(52,) + neutral.shape}, got {deltas.shape}")
    return neutral, deltas, faces
