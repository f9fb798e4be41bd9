"""JSON animation files: ``{"format": "esarm-blendshapes", "fps", "names", "frames": [[52 floats], ...]}``.

The names are written explicitly so a reader never has to guess the order; :func:`read_json` accepts any order
of the 52 ARKit names (and PascalCase) and returns ``ARKIT_NAMES`` order.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from esarm.blendshapes import ARKIT_NAMES, reorder, validate_blendshapes
from esarm.utils import atomic_write_bytes

JSON_FORMAT = "esarm-blendshapes"


def write_json(
    path: str | os.PathLike,
    blendshapes: np.ndarray,
    fps: float = 30.0,
    names: tuple[str, ...] | list[str] = ARKIT_NAMES,
    metadata: dict[str, Any] | None = None,
    precision: int = 6,
) -> Path:
    """Write ``blendshapes`` ``[frames, 52]`` (order ``names``) at ``fps`` Hz, in ``ARKIT_NAMES`` order."""
    values = validate_blendshapes(blendshapes)
    if values.ndim != 2:
        raise ValueError(f"blendshapes must have shape [frames, 52], got shape {values.shape}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    values = reorder(values, names, ARKIT_NAMES)
    document = {
        "format": JSON_FORMAT,
        "version": 1,
        "fps": float(fps),
        "num_frames": int(values.shape[0]),
        "names": list(ARKIT_NAMES),
        "metadata": metadata or {},
        "frames": np.round(values.astype(np.float64), precision).tolist(),
    }
    return atomic_write_bytes(path, json.dumps(document, separators=(",", ":")).encode("utf-8"))


def read_json(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read an animation JSON -> (``[frames, 52]`` float32 in ``ARKIT_NAMES`` order, fps)."""
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    for key in ("names", "fps", "frames"):
        if key not in document:
            raise ValueError(f"{path}: animation JSON must have a {key!r} field, got fields {sorted(document)}")
    names = list(document["names"])
    frames = np.asarray(document["frames"], dtype=np.float32).reshape(-1, len(names))
    return reorder(frames, names, ARKIT_NAMES), float(document["fps"])
