"""Rendering speed of ``esarm.export.render`` on CPU: rasteriser frames per second (ICT-FaceKit face, 9.4k
vertices, 18.5k triangles) at several heights, Gouraud and flat, and the whole MP4 path (render + H.264 + AAC).

    python benchmarks/render.py [--rig PATH]      # default: esarm.rig.resolve_rig (the embedded rig if none set)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def animation(frames: int, seed: int = 0) -> np.ndarray:
    from esarm.blendshapes import BLENDSHAPE_INDEX

    rng = np.random.default_rng(seed)
    values = np.clip(rng.normal(0.1, 0.1, size=(frames, 52)), 0, 1).astype(np.float32)
    values[:, BLENDSHAPE_INDEX["jawOpen"]] = 0.4 + 0.4 * np.sin(np.arange(frames) / 3)
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rig", default=None, help="rig file (default: $ESARM_RIG, the cache or the embedded rig)")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--heights", type=int, nargs="+", default=[256, 384, 512])
    args = parser.parse_args()

    from esarm.export.render import FaceRenderer, render_video
    from esarm.rig import resolve_rig

    args.rig = resolve_rig(args.rig)

    weights = animation(args.frames)
    print(f"CPU, {os.cpu_count()} cores; {args.frames} frames per measurement\n")
    print("| height | width | shading | ms / frame | frames / s |")
    print("|---:|---:|---|---:|---:|")
    renderers = {}
    for height in args.heights:
        for shading in ("gouraud", "flat"):
            renderer = FaceRenderer(args.rig, height=height, shading=shading)
            renderers[(height, shading)] = renderer
            renderer.render(weights[0])
            started = time.perf_counter()
            for frame in weights:
                renderer.render(frame)
            seconds = (time.perf_counter() - started) / len(weights)
            print(f"| {height} | {renderer.width} | {shading} | {seconds * 1000:.1f} | {1 / seconds:.1f} |")

    print("\nWhole video (render + encode, 30 fps animation, 16 kHz audio):\n")
    print("| video | size | ms / frame | frames / s | real-time factor |")
    print("|---|---|---:|---:|---:|")
    audio = np.zeros(int(args.frames / 30 * 16000), np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        for label, kwargs in (
            ("MP4 + AAC, one face, 384 px", dict(height=384)),
            ("MP4 + AAC, side by side + curves, 384 px", dict(height=384, labels=["STA", "RL"], curves=True)),
            ("GIF, one face, 256 px", dict(height=256)),
        ):
            suffix = ".gif" if label.startswith("GIF") else ".mp4"
            height = kwargs.pop("height")
            renderer = renderers.get((height, "gouraud")) or FaceRenderer(args.rig, height=height)
            animations = [weights, weights[::-1]] if "labels" in kwargs else weights
            started = time.perf_counter()
            path = render_video(Path(tmp) / f"v{suffix}", animations, 30, audio=audio, renderer=renderer, **kwargs)
            seconds = (time.perf_counter() - started) / args.frames
            from PIL import Image

            size = Image.open(path).size if suffix == ".gif" else _mp4_size(path)
            print(f"| {label} | {size[0]}x{size[1]} | {seconds * 1000:.1f} | {1 / seconds:.1f} | {seconds * 30:.2f} |")
    print("\nReal-time factor = render time / animation duration at 30 fps (< 1: faster than real time).")


def _mp4_size(path) -> tuple[int, int]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height


if __name__ == "__main__":
    main()
