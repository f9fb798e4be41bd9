"""Live Link Face CSV: the layout Epic's Live Link Face app records and Unreal / Blender / Maya importers read.

Header: ``Timecode,BlendShapeCount,<52 PascalCase ARKit names in Apple's order>,HeadYaw,HeadPitch,HeadRoll,
LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll``; one row per frame with the
timecode ``HH:MM:SS:FF.fff`` (``FF`` = frame within the second at the timecode rate, ``.fff`` = sub-frame
fraction), ``BlendShapeCount`` = 61 (52 coefficients + 9 rotations) and the values. We do not predict head or
eye rotations, so those 9 columns are zero.

The reader accepts the 52 names in any order (Apple's, or alphabetical as EmoTalk / MediaPipe write them) and
in PascalCase or camelCase, and returns ``[frames, 52]`` in ``ARKIT_NAMES`` order.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import numpy as np

from esarm.blendshapes import ARKIT_NAMES, BLENDSHAPE_INDEX, LIVE_LINK_NAMES, reorder, validate_blendshapes
from esarm.utils import atomic_write_bytes  # also importable from here, as before

ROTATION_NAMES: tuple[str, ...] = (
    "HeadYaw", "HeadPitch", "HeadRoll",
    "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)  # fmt: skip
LIVE_LINK_HEADER: tuple[str, ...] = ("Timecode", "BlendShapeCount", *LIVE_LINK_NAMES, *ROTATION_NAMES)
BLEND_SHAPE_COUNT = len(LIVE_LINK_NAMES) + len(ROTATION_NAMES)  # 61, as Live Link Face writes it


def format_timecode(frame: int, fps: float, start_seconds: float = 0.0) -> str:
    """Timecode of ``frame`` (at ``fps``) as Live Link Face writes it: ``HH:MM:SS:FF.fff``.

    ``FF`` counts frames at the integer timecode rate ``round(fps)``; ``.fff`` is the fraction of a timecode frame
    (zero for integer frame rates).
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    rate = max(1, round(fps))
    seconds = start_seconds + frame / fps
    # Timecode frame position with a tolerance for float error, so 0.9999999 becomes frame 1.
    position = round(seconds * rate * 1000) / 1000
    whole_seconds = math.floor(position / rate)
    within = position - whole_seconds * rate
    tc_frame = math.floor(within)
    fraction = within - tc_frame
    hours, rest = divmod(whole_seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}:{tc_frame:02d}.{round(fraction * 1000):03d}"


def parse_timecode(timecode: str, fps: float) -> float:
    """Seconds of a ``HH:MM:SS:FF[.fff]`` timecode whose frames count at ``round(fps)`` per second."""
    parts = timecode.strip().split(":")
    if len(parts) != 4:
        raise ValueError(f"timecode must look like HH:MM:SS:FF.fff, got {timecode!r}")
    hours, minutes, secs = (int(p) for p in parts[:3])
    frames = float(parts[3])
    return hours * 3600 + minutes * 60 + secs + frames / max(1, round(fps))


def write_live_link_csv(
    path: str | os.PathLike,
    blendshapes: np.ndarray,
    fps: float = 30.0,
    names: tuple[str, ...] | list[str] = ARKIT_NAMES,
    start_seconds: float = 0.0,
    precision: int = 8,
) -> Path:
    """Write ``blendshapes`` ``[frames, 52]`` (order ``names``, ARKit by default) as a Live Link Face CSV.

    Args:
        path: output file (written atomically).
        blendshapes: coefficients in [0, 1], ``[frames, 52]``.
        fps: animation frame rate (Hz); the timecode counts frames at ``round(fps)``.
        names: order of the last axis of ``blendshapes`` (e.g. ``ARKIT_NAMES_ALPHABETICAL``).
        start_seconds: timecode of the first frame.
        precision: decimals written per coefficient.
    """
    values = validate_blendshapes(blendshapes)
    if values.ndim != 2:
        raise ValueError(f"blendshapes must have shape [frames, 52], got shape {values.shape}")
    values = reorder(values, names, ARKIT_NAMES)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(LIVE_LINK_HEADER)
    zeros = ["0"] * len(ROTATION_NAMES)
    for index, frame in enumerate(values):
        writer.writerow(
            [format_timecode(index, fps, start_seconds), BLEND_SHAPE_COUNT]
            + [f"{v:.{precision}f}" for v in frame]
            + zeros
        )
    return atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def infer_timecode_rate(timecodes: list[str]) -> int | None:
    """Timecode frame rate from the ``FF`` field (its largest value + 1), when the clip crosses a second."""
    seconds = {tc.split(":")[2] for tc in timecodes if tc.count(":") == 3}
    if len(seconds) < 2:
        return None
    return max(int(float(tc.split(":")[3])) for tc in timecodes) + 1


def read_live_link_csv(path: str | os.PathLike, fps: float | None = None) -> tuple[np.ndarray, float]:
    """Read a Live Link Face CSV (ours or the app's) -> (``[frames, 52]`` float32 in ``ARKIT_NAMES`` order, fps).

    The 52 columns may be in any order and in PascalCase or camelCase; extra columns (head / eye rotations) are
    ignored. Without ``fps`` the frame rate is inferred from the timecodes (the app records at 60 or 30).
    """
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise ValueError(f"{path}: empty CSV, expected a Live Link Face header")
    header = [h.strip() for h in rows[0]]
    shape_columns = [i for i, h in enumerate(header) if h and (h[0].lower() + h[1:]) in BLENDSHAPE_INDEX]
    found = {header[i][0].lower() + header[i][1:] for i in shape_columns}
    missing = [n for n in ARKIT_NAMES if n not in found]
    if missing:
        raise ValueError(f"{path}: CSV must have a column for each of the 52 ARKit blendshapes, missing {missing}")
    body = [r for r in rows[1:] if r]
    try:
        values = np.array([[float(r[i]) for i in shape_columns] for r in body], dtype=np.float32)
    except (ValueError, IndexError) as error:
        raise ValueError(f"{path}: could not parse blendshape values ({error})") from None
    values = values.reshape(len(body), len(shape_columns))
    blendshapes = reorder(values, [header[i] for i in shape_columns], ARKIT_NAMES)
    if fps is None:
        if "Timecode" in header:
            timecodes = [r[header.index("Timecode")] for r in body]
            fps = float(infer_timecode_rate(timecodes) or 30)
        else:
            fps = 30.0
    return blendshapes, float(fps)
