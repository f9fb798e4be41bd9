"""Wavefront OBJ reading for rig conversion: vertex positions and polygons, nothing else (no normals, UVs or
materials: a rig needs positions and connectivity)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np


def read_obj(path: str | os.PathLike, with_faces: bool = False) -> tuple[np.ndarray, list[list[int]]]:
    """Vertices ``[V, 3]`` (float64) and, if asked, polygons (0-based vertex ids) of a Wavefront OBJ file.

    Face entries may be ``v``, ``v/vt``, ``v/vt/vn`` or ``v//vn``; negative (relative) ids count back from the
    vertices read so far, as the OBJ format defines.
    """
    vertex_tokens: list[str] = []
    polygons: list[list[int]] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("v "):
                vertex_tokens.extend(line.split()[1:4])
            elif with_faces and line.startswith("f "):
                count = len(vertex_tokens) // 3
                ids = [int(token.split("/")[0]) for token in line.split()[1:]]
                polygons.append([i - 1 if i > 0 else count + i for i in ids])
    vertices = np.array(vertex_tokens, dtype=np.float64).reshape(-1, 3)
    return vertices, polygons


def triangulate(polygons: Sequence[Sequence[int]]) -> np.ndarray:
    """Fan-split polygons (quads -> (a, b, c), (a, c, d)) into ``[F, 3]`` int64 triangles."""
    triangles = [(p[0], p[k], p[k + 1]) for p in polygons for k in range(1, len(p) - 1)]
    return np.array(triangles, dtype=np.int64).reshape(-1, 3)
