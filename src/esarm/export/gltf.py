"""glTF 2.0 / GLB export of a face rig with the 52 ARKit blendshapes as named morph targets and the animation
as a morph-weights channel, which Blender's importer (shape keys + action) and three.js (``GLTFLoader`` +
``AnimationMixer``) play.

Layout: one mesh, one primitive (POSITION, uint16/uint32 indices), 52 morph targets (POSITION deltas) named in
``mesh.extras.targetNames`` (the convention both Blender and three.js read), one node, one scene and one
animation with a LINEAR sampler (times in seconds -> 52 weights per frame). Units are metres (glTF's unit);
the rig is in millimetres and is scaled by 0.001.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from esarm.blendshapes import ARKIT_NAMES, reorder, validate_blendshapes
from esarm.export._rig import resolve_rig, rig_arrays
from esarm.utils import atomic_write_bytes

MM_TO_M = 0.001


def _build_gltf(rig: Any, blendshapes: np.ndarray | None, fps: float, name: str):
    import pygltflib as gl

    neutral, deltas, faces = rig_arrays(rig)
    positions = (neutral * MM_TO_M).astype(np.float32)  # [V, 3] m
    targets = (deltas * MM_TO_M).astype(np.float32)  # [52, V, 3] m
    index_dtype, index_type = (
        (np.uint16, gl.UNSIGNED_SHORT) if positions.shape[0] < 65535 else (np.uint32, gl.UNSIGNED_INT)
    )
    indices = faces.astype(index_dtype).reshape(-1)

    blobs: list[bytes] = []
    buffer_views: list[gl.BufferView] = []
    accessors: list[gl.Accessor] = []
    offset = 0

    def add(array: np.ndarray, component: int, kind: str, target: int | None, with_bounds: bool) -> int:
        nonlocal offset
        data = np.ascontiguousarray(array).tobytes()
        padding = (-len(data)) % 4
        buffer_views.append(gl.BufferView(buffer=0, byteOffset=offset, byteLength=len(data), target=target))
        blobs.append(data + b"\x00" * padding)
        offset += len(data) + padding
        count = array.shape[0]
        accessor = gl.Accessor(bufferView=len(buffer_views) - 1, componentType=component, count=count, type=kind)
        if with_bounds:
            flat = array.reshape(count, -1)
            accessor.min = flat.min(axis=0).astype(float).tolist()
            accessor.max = flat.max(axis=0).astype(float).tolist()
        accessors.append(accessor)
        return len(accessors) - 1

    position_id = add(positions, gl.FLOAT, gl.VEC3, gl.ARRAY_BUFFER, True)
    index_id = add(indices, index_type, gl.SCALAR, gl.ELEMENT_ARRAY_BUFFER, False)
    # glTF requires min/max on every POSITION accessor, morph targets included.
    target_ids = [add(targets[k], gl.FLOAT, gl.VEC3, gl.ARRAY_BUFFER, True) for k in range(len(ARKIT_NAMES))]

    primitive = gl.Primitive(
        attributes=gl.Attributes(POSITION=position_id),
        indices=index_id,
        mode=gl.TRIANGLES,
        targets=[gl.Attributes(POSITION=t) for t in target_ids],
    )
    mesh = gl.Mesh(
        name=name,
        primitives=[primitive],
        weights=[0.0] * len(ARKIT_NAMES),
        extras={"targetNames": list(ARKIT_NAMES)},
    )
    animations = []
    if blendshapes is not None and blendshapes.shape[0] > 0:
        times = (np.arange(blendshapes.shape[0], dtype=np.float32) / np.float32(fps)).astype(np.float32)
        time_id = add(times, gl.FLOAT, gl.SCALAR, None, True)
        # Output of a morph-weights sampler: frames * targets scalars, frame-major.
        weight_id = add(blendshapes.astype(np.float32).reshape(-1), gl.FLOAT, gl.SCALAR, None, False)
        animations.append(
            gl.Animation(
                name=f"{name}_speech",
                samplers=[gl.AnimationSampler(input=time_id, output=weight_id, interpolation="LINEAR")],
                channels=[gl.AnimationChannel(sampler=0, target=gl.AnimationChannelTarget(node=0, path="weights"))],
                extras={"fps": float(fps), "targetNames": list(ARKIT_NAMES)},
            )
        )
    gltf = gl.GLTF2(
        asset=gl.Asset(version="2.0", generator="esarm"),
        scene=0,
        scenes=[gl.Scene(nodes=[0])],
        nodes=[gl.Node(mesh=0, name=name)],
        meshes=[mesh],
        accessors=accessors,
        bufferViews=buffer_views,
        buffers=[gl.Buffer(byteLength=offset)],
        animations=animations,
    )
    return gltf, b"".join(blobs)


def write_gltf(
    path: str | os.PathLike,
    blendshapes: np.ndarray | None = None,
    fps: float = 30.0,
    rig: Any = None,
    names: tuple[str, ...] | list[str] = ARKIT_NAMES,
    name: str = "face",
) -> Path:
    """Write the rig (and, if given, the animation ``blendshapes`` ``[frames, 52]`` at ``fps``) as glTF.

    ``.glb`` gives one binary file; ``.gltf`` embeds the buffer as a data URI. ``rig`` is a rig object, a path
    or ``None`` for the default rig; ``names`` is the order of the last axis of ``blendshapes``.
    """
    path = Path(path)
    if path.suffix.lower() not in (".glb", ".gltf"):
        raise ValueError(f"path must end in .glb or .gltf, got {path.name}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    values = None
    if blendshapes is not None:
        values = validate_blendshapes(blendshapes)
        if values.ndim != 2:
            raise ValueError(f"blendshapes must have shape [frames, 52], got shape {values.shape}")
        values = reorder(values, names, ARKIT_NAMES)
    gltf, blob = _build_gltf(resolve_rig(rig), values, fps, name)
    if path.suffix.lower() == ".glb":
        gltf.set_binary_blob(blob)
        data = b"".join(gltf.save_to_bytes())
    else:
        import base64

        gltf.buffers[0].uri = "data:application/octet-stream;base64," + base64.b64encode(blob).decode("ascii")
        data = gltf.gltf_to_json().encode("utf-8")
    return atomic_write_bytes(path, data)


def _accessor_array(gltf, blob: bytes, accessor_id: int) -> np.ndarray:
    import pygltflib as gl

    accessor = gltf.accessors[accessor_id]
    view = gltf.bufferViews[accessor.bufferView]
    dtype = {gl.FLOAT: np.float32, gl.UNSIGNED_SHORT: np.uint16, gl.UNSIGNED_INT: np.uint32}[accessor.componentType]
    width = {gl.SCALAR: 1, gl.VEC3: 3, gl.VEC4: 4}[accessor.type]
    start = (view.byteOffset or 0) + (accessor.byteOffset or 0)
    array = np.frombuffer(blob, dtype=dtype, count=accessor.count * width, offset=start)
    return array.reshape(accessor.count, width) if width > 1 else array


def read_gltf_animation(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read the first morph-weights animation of a glTF/GLB -> (``[frames, 52]`` in ``ARKIT_NAMES`` order, fps).

    Target names come from ``mesh.extras.targetNames``; fps from the sampler's key times.
    """
    import pygltflib as gl

    gltf = gl.GLTF2().load(str(path))
    blob = (
        gltf.binary_blob() if str(path).lower().endswith(".glb") else gltf.get_data_from_buffer_uri(gltf.buffers[0].uri)
    )
    mesh = gltf.meshes[0]
    names = (mesh.extras or {}).get("targetNames")
    if not names:
        raise ValueError(f"{path}: the mesh has no extras.targetNames, cannot tell which morph target is which")
    channels = [(a, c) for a in gltf.animations for c in a.channels if c.target.path == "weights"]
    if not channels:
        raise ValueError(f"{path}: no animation channel with path 'weights'")
    animation, channel = channels[0]
    sampler = animation.samplers[channel.sampler]
    times = _accessor_array(gltf, blob, sampler.input)
    weights = _accessor_array(gltf, blob, sampler.output).reshape(len(times), len(names))
    fps = float(round(1.0 / float(np.median(np.diff(times))), 6)) if len(times) > 1 else 30.0
    return reorder(weights.astype(np.float32), names, ARKIT_NAMES), fps
