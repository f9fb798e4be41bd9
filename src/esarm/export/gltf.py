"""glTF 2.0 / GLB animation files: a face rig with the 52 ARKit blendshapes as named morph targets and the
animation as a morph-weights channel, which Blender's importer (shape keys + action) and three.js (``GLTFLoader``
+ ``AnimationMixer``) play.

The document layout (and the reading of glTF heads as rigs) is :mod:`esarm.rig.gltf`; this module validates the
animation, writes the file atomically and reads the animation back. Units are metres (glTF's unit); the rig is in
millimetres and is scaled by 0.001.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import numpy as np

from esarm.blendshapes import ARKIT_NAMES, reorder, validate_blendshapes
from esarm.rig import FaceRig, resolve_rig
from esarm.rig.gltf import buffer_blobs, build_gltf, read_accessor
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
