"""Reading glTF 2.0 heads as face rigs: :func:`read_gltf_rig` reads a head whose morph targets carry ARKit names
into rig arrays (millimetres). The accessor readers (:func:`buffer_blobs`, :func:`read_accessor`) are shared with
:mod:`esarm.export.gltf`, which lays a rig and an animation out as a glTF document and reads animations back.
pygltflib is imported on first use.

The layout both sides agree on: morph targets named in ``mesh.extras.targetNames`` (the convention both Blender and
three.js read), the rig's vertex regions in ``mesh.extras.esarm_regions``, metres in the file (:data:`MM_TO_M`).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..blendshapes import ARKIT_NAMES, BLENDSHAPE_INDEX, NUM_BLENDSHAPES
from .regions import regions_from_targets

MM_TO_M = 0.001
UNITS_TO_MM = {"mm": 1.0, "millimetres": 1.0, "cm": 10.0, "centimetres": 10.0, "m": 1000.0, "metres": 1000.0}

_COMPONENT_DTYPES = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_TYPE_SIZES = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


def units_scale(units: str, argument: str) -> float:
    """Millimetres per ``units`` (``"mm"``, ``"cm"``, ``"m"`` or their long names)."""
    if units not in UNITS_TO_MM:
        raise ValueError(f"{argument} must be one of {sorted(UNITS_TO_MM)}, got {units!r}")
    return UNITS_TO_MM[units]


def normalise_target_name(name: str) -> str:
    """``"blendShape1.JawOpen"`` (Maya / FBX exports, Live Link case) -> ``"jawOpen"``."""
    name = str(name).split(".")[-1]
    return name[:1].lower() + name[1:]


# ---------------------------------------------------------------------------------------------------------------------
# Reading


def read_gltf_rig(
    path: str | os.PathLike,
    mesh: str | int | None = None,
    regions: Mapping[str, Sequence[int]] | None = None,
    units: str = "m",
) -> dict[str, Any]:
    """Read a glTF / GLB head whose morph targets carry ARKit names (ARKit-ready avatar exports).

    Returns the keyword arguments of :class:`~esarm.rig.FaceRig` (``neutral``, ``deltas``, ``faces``, ``regions``,
    ``source``), in millimetres.

    Args:
        path: ``.glb`` or ``.gltf`` file.
        mesh: name or index of the mesh to read; by default the mesh whose target names cover the most ARKit
            names. All triangle primitives of that mesh are concatenated.
        regions: vertex ids per region; by default extras ``{"esarm_regions": {...}}`` on the mesh, else derived
            from the targets themselves (:func:`~esarm.rig.regions.regions_from_targets`).
        units: length unit of the file (glTF's is metres); converted to millimetres.

    Target names come from ``mesh.extras.targetNames`` (the glTF convention) or the primitives' extras. Names
    compare case-insensitively on the first letter (Live Link's ``JawOpen``); all 52 must be present, except
    ``tongueOut``, which is taken as zero when absent (most heads have no tongue target). The node transform
    of the first node using the mesh is applied.
    """
    from pygltflib import GLTF2

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path must be a glTF / GLB file, got {path} (no such file)")
    scale = units_scale(units, argument="units")
    gltf = GLTF2().load(str(path))
    mesh_index, names = _pick_mesh(gltf, mesh, path)
    gltf_mesh = gltf.meshes[mesh_index]
    normalised = [normalise_target_name(n) for n in names]
    missing = [n for n in ARKIT_NAMES if n not in normalised and n != "tongueOut"]
    if missing:
        raise ValueError(
            f"mesh {gltf_mesh.name or mesh_index!r} in {path} must have morph targets for all 52 ARKit "
            f"blendshapes, missing {missing}"
        )
    positions, target_deltas, triangles = _read_primitives(gltf, buffer_blobs(gltf, path), gltf_mesh, len(names))
    if len(positions) == 0:
        raise ValueError(f"mesh {gltf_mesh.name!r} in {path} must have a triangle primitive")
    matrix = _world_matrix(gltf, mesh_index)
    neutral = positions @ matrix[:3, :3].T + matrix[:3, 3]
    all_deltas = target_deltas @ matrix[:3, :3].T
    deltas = np.zeros((NUM_BLENDSHAPES, len(neutral), 3), dtype=np.float64)
    for t, name in enumerate(normalised):
        if name in BLENDSHAPE_INDEX:
            deltas[BLENDSHAPE_INDEX[name]] = all_deltas[t]
    neutral_mm = (neutral * scale).astype(np.float32)
    deltas_mm = (deltas * scale).astype(np.float32)
    if regions is None:
        extras = gltf_mesh.extras if isinstance(gltf_mesh.extras, dict) else {}
        regions = extras.get("esarm_regions") or regions_from_targets(neutral_mm, deltas_mm)
    return {
        "neutral": neutral_mm,
        "deltas": deltas_mm,
        "faces": triangles,
        "regions": dict(regions),
        "source": f"glTF {path.name}, mesh {gltf_mesh.name or mesh_index!r}",
    }


def _pick_mesh(gltf, mesh: str | int | None, path: Path) -> tuple[int, list[str]]:
    """The index and target names of the mesh named by ``mesh``, or of the one covering the most ARKit names."""
    if not gltf.meshes:
        raise ValueError(f"{path} must contain a mesh with ARKit morph targets, got no meshes")
    candidates = []
    for index, candidate in enumerate(gltf.meshes):
        names = _target_names(candidate)
        known = {normalise_target_name(n) for n in names} & set(ARKIT_NAMES)
        candidates.append((len(known), index, names))
    if mesh is None:
        _, mesh_index, names = max(candidates, key=lambda c: (c[0], -c[1]))
        return mesh_index, names
    matches = [i for i, m in enumerate(gltf.meshes) if mesh == i or mesh == m.name]
    if not matches:
        raise ValueError(f"mesh must be one of {[m.name for m in gltf.meshes]} or an index, got {mesh!r}")
    return matches[0], candidates[matches[0]][2]


def _read_primitives(gltf, blobs, gltf_mesh, num_targets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mesh's triangle primitives concatenated: positions ``[V, 3]``, target deltas ``[targets, V, 3]`` and
    triangles ``[F, 3]`` (file units, before the node transform); empty arrays when there is no triangle primitive."""
    positions, target_deltas, triangles, offset = [], [], [], 0
    for primitive in gltf_mesh.primitives:
        if primitive.mode not in (None, 4):
            continue  # points / lines carry no surface
        base = read_accessor(gltf, blobs, primitive.attributes.POSITION)
        if len(primitive.targets or []) != num_targets:
            raise ValueError(
                f"every primitive of mesh {gltf_mesh.name!r} must have {num_targets} morph targets, got "
                f"{len(primitive.targets or [])}"
            )
        per_target = np.zeros((num_targets, len(base), 3), dtype=np.float64)
        for t, target in enumerate(primitive.targets):
            accessor = target.get("POSITION") if isinstance(target, dict) else getattr(target, "POSITION", None)
            if accessor is not None:
                per_target[t] = read_accessor(gltf, blobs, accessor)
        if primitive.indices is not None:
            tri = read_accessor(gltf, blobs, primitive.indices).astype(np.int64).reshape(-1, 3)
        else:
            tri = np.arange(len(base), dtype=np.int64).reshape(-1, 3)
        positions.append(base)
        target_deltas.append(per_target)
        triangles.append(tri + offset)
        offset += len(base)
    if not positions:
        return np.zeros((0, 3)), np.zeros((num_targets, 0, 3)), np.zeros((0, 3), np.int64)
    return np.concatenate(positions), np.concatenate(target_deltas, axis=1), np.concatenate(triangles)


def _target_names(mesh) -> list[str]:
    extras = mesh.extras if isinstance(mesh.extras, dict) else {}
    names = extras.get("targetNames")
    if not names:
        for primitive in mesh.primitives:
            p_extras = primitive.extras if isinstance(primitive.extras, dict) else {}
            if p_extras.get("targetNames"):
                names = p_extras["targetNames"]
                break
    return [str(n) for n in (names or [])]


def buffer_blobs(gltf, path: str | os.PathLike) -> dict[int, bytes]:
    """Bytes of every buffer of a loaded ``pygltflib.GLTF2`` (GLB binary chunk, data URI or external file)."""
    blobs = {}
    for index, buffer in enumerate(gltf.buffers):
        if buffer.uri is None:
            blobs[index] = gltf.binary_blob()
        elif buffer.uri.startswith("data:"):
            blobs[index] = base64.b64decode(buffer.uri.split(",", 1)[1])
        else:
            blobs[index] = (Path(path).parent / buffer.uri).read_bytes()
    return blobs


def _read_view(gltf, blobs, view_index: int, byte_offset: int, dtype, count: int, width: int) -> np.ndarray:
    view = gltf.bufferViews[view_index]
    data = blobs[view.buffer]
    start = (view.byteOffset or 0) + (byte_offset or 0)
    item = np.dtype(dtype).itemsize * width
    stride = view.byteStride or item
    if stride == item:
        return np.frombuffer(data, dtype=dtype, count=count * width, offset=start).reshape(count, width)
    rows = [np.frombuffer(data, dtype=dtype, count=width, offset=start + i * stride) for i in range(count)]
    return np.stack(rows) if rows else np.zeros((0, width), dtype)


def read_accessor(gltf, blobs: Mapping[int, bytes], accessor_index: int) -> np.ndarray:
    """An accessor's values (dense + sparse, any stride) as ``[count, width]`` float64 (``[count]`` for scalars)."""
    accessor = gltf.accessors[accessor_index]
    dtype = _COMPONENT_DTYPES[accessor.componentType]
    width = _TYPE_SIZES[accessor.type]
    if accessor.bufferView is None:
        values = np.zeros((accessor.count, width), dtype=np.float64)
    else:
        values = _read_view(gltf, blobs, accessor.bufferView, accessor.byteOffset, dtype, accessor.count, width)
        values = values.astype(np.float64)
    sparse = accessor.sparse
    if sparse is not None and sparse.count:
        idx = sparse.indices
        ids = _read_view(
            gltf, blobs, idx.bufferView, idx.byteOffset, _COMPONENT_DTYPES[idx.componentType], sparse.count, 1
        )
        vals = _read_view(gltf, blobs, sparse.values.bufferView, sparse.values.byteOffset, dtype, sparse.count, width)
        values = values.copy()
        values[ids[:, 0].astype(np.int64)] = vals
    return values[:, 0] if width == 1 else values


def _world_matrix(gltf, mesh_index: int) -> np.ndarray:
    """World transform (4x4) of the first node that uses the mesh; identity if none."""
    parents = {child: i for i, node in enumerate(gltf.nodes) for child in (node.children or [])}
    node_index = next((i for i, node in enumerate(gltf.nodes) if node.mesh == mesh_index), None)
    matrix = np.eye(4)
    while node_index is not None:
        matrix = _local_matrix(gltf.nodes[node_index]) @ matrix
        node_index = parents.get(node_index)
    return matrix


def _local_matrix(node) -> np.ndarray:
    if node.matrix:
        return np.array(node.matrix, dtype=np.float64).reshape(4, 4).T  # glTF matrices are column-major
    x, y, z, w = node.rotation or (0.0, 0.0, 0.0, 1.0)
    rotation = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    matrix = np.eye(4)
    matrix[:3, :3] = rotation * np.asarray(node.scale or (1.0, 1.0, 1.0))[None, :]
    matrix[:3, 3] = node.translation or (0.0, 0.0, 0.0)
    return matrix
