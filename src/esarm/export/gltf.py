"""glTF 2.0 / GLB animation files: a face rig with the 52 ARKit blendshapes as named morph targets and the
animation as a morph-weights channel, which Blender's importer (shape keys + action) and three.js (``GLTFLoader``
+ ``AnimationMixer``) play.

Layout written: one mesh, one primitive (POSITION, uint16/uint32 indices), 52 morph targets (POSITION deltas) named
in ``mesh.extras.targetNames`` (the convention both Blender and three.js read), the rig's vertex regions in
``mesh.extras.esarm_regions`` (so :func:`esarm.rig.gltf.read_gltf_rig` reads the same rig back), one node, one scene
and, with an animation, a LINEAR sampler (times in seconds -> 52 weights per frame). Units are metres (glTF's
unit); the rig is in millimetres and is scaled by 0.001. pygltflib is imported on first use.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import numpy as np

from esarm.blendshapes import ARKIT_NAMES, reorder, validate_blendshapes
from esarm.rig import FaceRig, resolve_rig
from esarm.rig.gltf import MM_TO_M, buffer_blobs, read_accessor
from esarm.utils import atomic_write_bytes


def write_gltf(
    path: str | os.PathLike,
    blendshapes: np.ndarray | None = None,
    fps: float = 30.0,
    rig: FaceRig | str | os.PathLike | None = None,
    names: tuple[str, ...] | list[str] = ARKIT_NAMES,
    name: str = "face",
) -> Path:
    """Write the rig (and, if given, the animation ``blendshapes`` ``[frames, 52]`` at ``fps``) as glTF.

    ``.glb`` gives one binary file; ``.gltf`` embeds the buffer as a data URI. ``rig`` is a :class:`FaceRig`, a
    path or ``None`` (:func:`esarm.rig.resolve_rig`); ``names`` is the order of the last axis of ``blendshapes``.
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
    gltf, blob = build_gltf(resolve_rig(rig), values, fps, name)
    if path.suffix.lower() == ".glb":
        gltf.set_binary_blob(blob)
        data = b"".join(gltf.save_to_bytes())
    else:
        gltf.buffers[0].uri = "data:application/octet-stream;base64," + base64.b64encode(blob).decode("ascii")
        data = gltf.gltf_to_json().encode("utf-8")
    return atomic_write_bytes(path, data)


def read_gltf_animation(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read the first morph-weights animation of a glTF/GLB -> (``[frames, 52]`` in ``ARKIT_NAMES`` order, fps).

    Target names come from ``mesh.extras.targetNames``; fps from the sampler's key times.
    """
    import pygltflib as gl

    gltf = gl.GLTF2().load(str(path))
    blobs = buffer_blobs(gltf, path)
    mesh = gltf.meshes[0]
    names = (mesh.extras or {}).get("targetNames")
    if not names:
        raise ValueError(f"{path}: the mesh has no extras.targetNames, cannot tell which morph target is which")
    channels = [(a, c) for a in gltf.animations for c in a.channels if c.target.path == "weights"]
    if not channels:
        raise ValueError(f"{path}: no animation channel with path 'weights'")
    animation, channel = channels[0]
    sampler = animation.samplers[channel.sampler]
    times = read_accessor(gltf, blobs, sampler.input)
    weights = read_accessor(gltf, blobs, sampler.output).reshape(len(times), len(names))
    fps = float(round(1.0 / float(np.median(np.diff(times))), 6)) if len(times) > 1 else 30.0
    return reorder(weights.astype(np.float32), names, ARKIT_NAMES), fps


class _BufferWriter:
    """The one binary buffer of a glTF document: each :meth:`add` appends an array (4-byte aligned) with its buffer
    view and accessor."""

    def __init__(self):
        self.blobs: list[bytes] = []
        self.buffer_views: list = []
        self.accessors: list = []
        self.offset = 0

    def add(self, array: np.ndarray, component: int, kind: str, target: int | None, with_bounds: bool) -> int:
        import pygltflib as gl

        data = np.ascontiguousarray(array).tobytes()
        padding = (-len(data)) % 4
        self.buffer_views.append(gl.BufferView(buffer=0, byteOffset=self.offset, byteLength=len(data), target=target))
        self.blobs.append(data + b"\x00" * padding)
        self.offset += len(data) + padding
        count = array.shape[0]
        accessor = gl.Accessor(bufferView=len(self.buffer_views) - 1, componentType=component, count=count, type=kind)
        if with_bounds:
            flat = array.reshape(count, -1)
            accessor.min = flat.min(axis=0).astype(float).tolist()
            accessor.max = flat.max(axis=0).astype(float).tolist()
        self.accessors.append(accessor)
        return len(self.accessors) - 1


def _mesh(rig: FaceRig, buffer: _BufferWriter, name: str):
    """The rig as one mesh (metres) with the 52 ARKit morph targets, its arrays appended to ``buffer``."""
    import pygltflib as gl

    positions = (rig.neutral * MM_TO_M).astype(np.float32)  # [V, 3] m
    targets = (rig.deltas * MM_TO_M).astype(np.float32)  # [52, V, 3] m
    index_dtype, index_type = (
        (np.uint16, gl.UNSIGNED_SHORT) if positions.shape[0] < 65535 else (np.uint32, gl.UNSIGNED_INT)
    )
    position_id = buffer.add(positions, gl.FLOAT, gl.VEC3, gl.ARRAY_BUFFER, True)
    index_id = buffer.add(
        rig.faces.astype(index_dtype).reshape(-1), index_type, gl.SCALAR, gl.ELEMENT_ARRAY_BUFFER, False
    )
    # glTF requires min/max on every POSITION accessor, morph targets included.
    target_ids = [buffer.add(targets[k], gl.FLOAT, gl.VEC3, gl.ARRAY_BUFFER, True) for k in range(len(ARKIT_NAMES))]
    primitive = gl.Primitive(
        attributes=gl.Attributes(POSITION=position_id),
        indices=index_id,
        mode=gl.TRIANGLES,
        targets=[gl.Attributes(POSITION=t) for t in target_ids],
    )
    return gl.Mesh(
        name=name,
        primitives=[primitive],
        weights=[0.0] * len(ARKIT_NAMES),
        # The regions travel in the mesh's extras, so that read_gltf_rig gives back the same rig.
        extras={
            "targetNames": list(ARKIT_NAMES),
            "esarm_regions": {region: ids.tolist() for region, ids in rig.regions.items()},
        },
    )


def _animation(blendshapes: np.ndarray, fps: float, buffer: _BufferWriter, name: str):
    """One morph-weights animation of node 0: ``blendshapes`` ``[frames, 52]`` at ``fps``, LINEAR."""
    import pygltflib as gl

    times = (np.arange(blendshapes.shape[0], dtype=np.float32) / np.float32(fps)).astype(np.float32)
    time_id = buffer.add(times, gl.FLOAT, gl.SCALAR, None, True)
    # Output of a morph-weights sampler: frames * targets scalars, frame-major.
    weight_id = buffer.add(blendshapes.astype(np.float32).reshape(-1), gl.FLOAT, gl.SCALAR, None, False)
    return gl.Animation(
        name=f"{name}_speech",
        samplers=[gl.AnimationSampler(input=time_id, output=weight_id, interpolation="LINEAR")],
        channels=[gl.AnimationChannel(sampler=0, target=gl.AnimationChannelTarget(node=0, path="weights"))],
        extras={"fps": float(fps), "targetNames": list(ARKIT_NAMES)},
    )


def build_gltf(rig: FaceRig, blendshapes: np.ndarray | None, fps: float, name: str):
    """A ``pygltflib.GLTF2`` document of ``rig`` (metres) and its binary buffer; with ``blendshapes``
    ``[frames, 52]`` (``ARKIT_NAMES`` order) at ``fps``, also one morph-weights animation."""
    import pygltflib as gl

    buffer = _BufferWriter()
    mesh = _mesh(rig, buffer, name)
    animations = []
    if blendshapes is not None and blendshapes.shape[0] > 0:
        animations.append(_animation(blendshapes, fps, buffer, name))
    gltf = gl.GLTF2(
        asset=gl.Asset(version="2.0", generator="esarm"),
        scene=0,
        scenes=[gl.Scene(nodes=[0])],
        nodes=[gl.Node(mesh=0, name=name)],
        meshes=[mesh],
        accessors=buffer.accessors,
        bufferViews=buffer.buffer_views,
        buffers=[gl.Buffer(byteLength=buffer.offset)],
        animations=animations,
    )
    return gltf, b"".join(buffer.blobs)
