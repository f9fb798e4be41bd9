"""A picture of one clip: waveform with phonemes above the blendshape curves (matplotlib)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..blendshapes import BLENDSHAPE_INDEX
from ..utils import atomic_write
from .schema import decode_audio_value

DEFAULT_GROUPS: dict[str, tuple[str, ...]] = {
    "jaw and lips": ("jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthPressLeft", "mouthRollLower"),
    "mouth corners and cheeks": ("mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthStretchLeft",
                                 "cheekSquintLeft", "noseSneerLeft"),
    "brows and eyes": ("browInnerUp", "browDownLeft", "browOuterUpLeft", "eyeBlinkLeft", "eyeWideLeft",
                       "eyeSquintLeft"),
}  # fmt: skip


def plot_clip(
    example: dict[str, Any], path: str | os.PathLike, groups: dict[str, Sequence[str]] | None = None, dpi: int = 120
) -> Path:
    """Save a PNG of one clip: waveform with phoneme boundaries, then one panel of curves per group.

    ``example`` is a corpus row (``audio``, ``sampling_rate``, ``blendshapes`` [frames, 52], ``fps``, and
    optionally ``phonemes`` / ``phoneme_times``, ``id``, ``emotion``, ``intensity``, ``sentence``).
    Written atomically; returns the path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = groups or DEFAULT_GROUPS
    audio = decode_audio_value(example["audio"])
    sampling_rate = int(example["sampling_rate"])
    blendshapes = np.asarray(example["blendshapes"], np.float32)
    fps = float(example["fps"])
    unknown = [n for names in groups.values() for n in names if n not in BLENDSHAPE_INDEX]
    if unknown:
        raise ValueError(f"groups must name ARKit blendshapes, got unknown names {unknown}")

    figure, axes = plt.subplots(1 + len(groups), 1, figsize=(11, 2.0 + 2.0 * len(groups)), sharex=True)
    seconds = np.arange(len(audio)) / sampling_rate
    axes[0].plot(seconds, audio, color="0.3", linewidth=0.5)
    phonemes, times = example.get("phonemes"), example.get("phoneme_times")
    if phonemes is not None and times is not None:
        for phoneme, start in zip(phonemes, times):
            axes[0].axvline(start, color="tab:orange", linewidth=0.5, alpha=0.6)
            axes[0].text(start, 0.92, phoneme, transform=axes[0].get_xaxis_transform(), fontsize=7, ha="left")
    title = " | ".join(
        str(example[k]) for k in ("id", "emotion", "intensity", "sentence") if example.get(k) is not None
    )
    axes[0].set_title(title, fontsize=9)
    axes[0].set_ylabel("audio")
    frame_times = (np.arange(len(blendshapes)) + 0.5) / fps
    for axis, (group, names) in zip(axes[1:], groups.items()):
        for name in names:
            axis.plot(frame_times, blendshapes[:, BLENDSHAPE_INDEX[name]], label=name, linewidth=1.2)
        axis.set_ylim(0, 1)
        axis.set_ylabel(group, fontsize=8)
        axis.legend(fontsize=7, loc="upper right", ncol=3)
    axes[-1].set_xlabel("seconds")
    figure.tight_layout()

    try:
        # savefig picks the format from the file name: the temporary file must end in ".png".
        return atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=dpi), suffix=".png")
    finally:
        plt.close(figure)
