"""Miniature MEAD and RAVDESS trees from synthetic clips, encoded to real mp4 / m4a with PyAV.

Used by the tests and ``benchmarks/data.py`` when the real datasets (and MediaPipe's model) are absent.
The video frames carry the clip's ground-truth blendshapes as gray blocks (one 16x16 block per coefficient,
plus a white "face" block), so ``PixelBlendshapeExtractor`` reads them back after lossy H.264 coding and an
end-to-end preparation can be checked against the ground truth. A frame whose face block is black has "no
face".
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ...blendshapes import NUM_BLENDSHAPES
from ..schema import decode_audio_value

BLOCK = 16
COLUMNS = 8
ROWS = 7  # 56 blocks: 52 coefficients + the face block
FACE_BLOCK = NUM_BLENDSHAPES
FRAME_SHAPE = (ROWS * BLOCK, COLUMNS * BLOCK)  # (112, 128) pixels


def blendshapes_to_frames(blendshapes: np.ndarray, face_found: np.ndarray | None = None) -> np.ndarray:
    """Frames uint8 RGB [T, 112, 128, 3] that encode blendshapes [T, 52] as gray blocks."""
    blendshapes = np.clip(np.asarray(blendshapes, np.float32), 0, 1)
    face_found = np.ones(len(blendshapes), bool) if face_found is None else np.asarray(face_found, bool)
    frames = np.zeros((len(blendshapes), *FRAME_SHAPE, 3), np.uint8)
    levels = np.concatenate([blendshapes, face_found[:, None].astype(np.float32)], axis=1)
    for block in range(NUM_BLENDSHAPES + 1):
        row, column = divmod(block, COLUMNS)
        value = np.round(levels[:, block] * 255).astype(np.uint8)
        frames[:, row * BLOCK : (row + 1) * BLOCK, column * BLOCK : (column + 1) * BLOCK, :] = value[
            :, None, None, None
        ]
    return frames


class PixelBlendshapeExtractor:
    """A ``BlendshapeExtractor`` that reads the blocks written by ``blendshapes_to_frames`` (tests, benchmarks)."""

    def __call__(self, frames: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
        frames = np.asarray(frames, np.float32).mean(axis=-1)  # [T, H, W]
        height, width = frames.shape[1:]
        scale_y, scale_x = height / FRAME_SHAPE[0], width / FRAME_SHAPE[1]
        values = np.zeros((len(frames), NUM_BLENDSHAPES + 1), np.float32)
        for block in range(NUM_BLENDSHAPES + 1):
            row, column = divmod(block, COLUMNS)
            # the centre of the block, away from coding artefacts at its edges
            y0, y1 = int((row * BLOCK + 4) * scale_y), int(((row + 1) * BLOCK - 4) * scale_y)
            x0, x1 = int((column * BLOCK + 4) * scale_x), int(((column + 1) * BLOCK - 4) * scale_x)
            values[:, block] = frames[:, y0:y1, x0:x1].mean(axis=(1, 2)) / 255.0
        return np.clip(values[:, :NUM_BLENDSHAPES], 0, 1), values[:, FACE_BLOCK] > 0.5


def encode_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float = 30.0,
    audio: np.ndarray | None = None,
    sampling_rate: int = 16000,
) -> Path:
    """Write frames uint8 RGB [T, H, W, 3] to an H.264 mp4 (with an AAC audio track when ``audio`` is given)."""
    from fractions import Fraction

    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = "yuv444p"  # no chroma subsampling: gray blocks survive intact
        video.options = {"crf": "10", "preset": "ultrafast"}
        audio_stream = container.add_stream("aac", rate=sampling_rate) if audio is not None else None
        if audio_stream is not None:
            audio_stream.layout = "mono"
        for frame in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio_stream is not None:
            _encode_audio_stream(container, audio_stream, audio, sampling_rate)
    return path


def _encode_audio_stream(container, stream, audio: np.ndarray, sampling_rate: int) -> None:
    import av

    audio = np.clip(np.asarray(audio, np.float32), -1, 1)
    frame_size = 1024
    for start in range(0, len(audio), frame_size):
        chunk = audio[start : start + frame_size]
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
        frame.sample_rate = sampling_rate
        frame.pts = start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def encode_audio(path: str | os.PathLike, audio: np.ndarray, sampling_rate: int = 16000) -> Path:
    """Write float32 mono audio to an AAC ``.m4a`` file."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="ipod") as container:
        stream = container.add_stream("aac", rate=sampling_rate)
        stream.layout = "mono"
        _encode_audio_stream(container, stream, audio, sampling_rate)
    return path


def make_mead_tree(root: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> list[Path]:
    """A MEAD-shaped tree from synthetic corpus rows (speakers must be named like M001 / W002).

    Each row becomes ``<speaker>/video/front/<emotion>/level_<k>/<nnn>.mp4`` (blocks encoding its blendshapes,
    ``fps`` frames per second) and ``<speaker>/audio/<emotion>/level_<k>/<nnn>.m4a``, ``nnn`` being the
    sentence number of the synthetic id. Returns the video paths.
    """
    root = Path(root)
    videos = []
    for row in rows:
        number = row["id"].rsplit("_", 1)[-1]
        level = f"level_{row['intensity']}"
        video = root / row["speaker"] / "video" / "front" / row["emotion"] / level / f"{number}.mp4"
        encode_video(video, blendshapes_to_frames(np.asarray(row["blendshapes"])), row["fps"])
        encode_audio(
            root / row["speaker"] / "audio" / row["emotion"] / level / f"{number}.m4a", decode_audio_value(row["audio"])
        )
        videos.append(video)
    return videos


_RAVDESS_EMOTION_CODES = {"neutral": "01", "happy": "03", "sad": "04", "angry": "05", "fear": "06",
                          "disgusted": "07", "surprised": "08"}  # fmt: skip


def make_ravdess_tree(root: str | os.PathLike, rows: Iterable[dict[str, Any]], actors: dict[str, int]) -> list[Path]:
    """A RAVDESS-shaped tree: each row becomes ``Actor_XX/01-01-EE-II-SS-01-XX.mp4`` (video + audio track).

    ``actors`` maps a synthetic speaker to a RAVDESS actor number; intensity 3 -> strong, others normal; the
    statement is 01 or 02 after the synthetic sentence number (odd -> 01). Rows with contempt are skipped.
    """
    root = Path(root)
    paths = []
    for row in rows:
        if row["emotion"] not in _RAVDESS_EMOTION_CODES:
            continue
        actor = actors[row["speaker"]]
        intensity = "02" if row["intensity"] == 3 and row["emotion"] != "neutral" else "01"
        statement = "01" if int(row["id"].rsplit("_", 1)[-1]) % 2 else "02"
        name = f"01-01-{_RAVDESS_EMOTION_CODES[row['emotion']]}-{intensity}-{statement}-01-{actor:02d}.mp4"
        path = root / f"Actor_{actor:02d}" / name
        frames = blendshapes_to_frames(np.asarray(row["blendshapes"]))
        encode_video(path, frames, row["fps"], audio=decode_audio_value(row["audio"]))
        paths.append(path)
    return paths
