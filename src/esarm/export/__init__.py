"""Exports of blendshape animations to animation tools, and rendered previews.

- :func:`write_live_link_csv` / :func:`read_live_link_csv`: Live Link Face CSV (Unreal, MetaHuman, Blender).
- :func:`write_json` / :func:`read_json`: JSON with names, fps and frames.
- :func:`write_gltf` / :func:`read_gltf_animation`: glTF/GLB of a rig with 52 named morph targets and the
  animation as morph weights (Blender, three.js).
- :mod:`esarm.export.render`: ``render_frame``, ``render_video`` (MP4 with audio, GIF), side by side, curves.
- :func:`save_animation` / :func:`load_animation`: pick the format from the file extension.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from esarm.export.csv import LIVE_LINK_HEADER, read_live_link_csv, write_live_link_csv
from esarm.export.gltf import read_gltf_animation, write_gltf
from esarm.export.json import read_json, write_json

ANIMATION_FORMATS = (".csv", ".json", ".glb", ".gltf", ".mp4", ".gif")

__all__ = [
    "ANIMATION_FORMATS",
    "LIVE_LINK_HEADER",
    "load_animation",
    "read_gltf_animation",
    "read_json",
    "read_live_link_csv",
    "render_frame",
    "render_video",
    "save_animation",
    "write_gltf",
    "write_json",
    "write_live_link_csv",
]


def save_animation(
    path: str | os.PathLike,
    blendshapes: np.ndarray,
    fps: float = 30.0,
    audio: np.ndarray | None = None,
    sampling_rate: int = 16000,
    rig: Any = None,
    metadata: dict[str, Any] | None = None,
    video_height: int = 384,
) -> Path:
    """Write ``blendshapes`` ``[frames, 52]`` (ARKit order) at ``fps`` in the format named by ``path``'s suffix:
    .csv (Live Link Face), .json, .glb/.gltf (rig + morph animation), .mp4 (rendered, audio muxed in), .gif
    (``video_height`` pixels high)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return write_live_link_csv(path, blendshapes, fps)
    if suffix == ".json":
        return write_json(path, blendshapes, fps, metadata=metadata)
    if suffix in (".glb", ".gltf"):
        return write_gltf(path, blendshapes, fps, rig=rig)
    if suffix in (".mp4", ".gif"):
        from esarm.export.render import render_video

        return render_video(
            path, blendshapes, fps, audio=audio, sampling_rate=sampling_rate, rig=rig, height=video_height
        )
    raise ValueError(f"output must end in one of {', '.join(ANIMATION_FORMATS)}, got {Path(path).name!r}")


def load_animation(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read a .csv / .json / .glb / .gltf animation -> (``[frames, 52]`` in ``ARKIT_NAMES`` order, fps)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return read_live_link_csv(path)
    if suffix == ".json":
        return read_json(path)
    if suffix in (".glb", ".gltf"):
        return read_gltf_animation(path)
    raise ValueError(f"cannot read animations from {Path(path).name!r}: expected .csv, .json, .glb or .gltf")


def __getattr__(name: str):
    # The renderer pulls in PyAV / matplotlib only when used.
    if name in ("render_frame", "render_video"):
        from esarm.export import render

        return getattr(render, name)
    raise AttributeError(f"module 'esarm.export' has no attribute {name!r}")
