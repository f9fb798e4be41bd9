"""Video and audio decoding (PyAV) and face-blendshape extraction (MediaPipe FaceLandmarker).

A ``BlendshapeExtractor`` is any callable ``(frames [T, H, W, 3] uint8 RGB, fps) -> (values [T, 52],
face_found [T])``; ``MediaPipeBlendshapeExtractor`` is the real one, tests inject
``esarm.data.prepare.testing.PixelBlendshapeExtractor``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Protocol
from urllib.request import urlopen

import numpy as np

from ...blendshapes import ARKIT_NAMES, NUM_BLENDSHAPES, reorder
from ...utils import atomic_write_bytes, fetch_verified, file_sha256
from ..schema import SAMPLING_RATE

logger = logging.getLogger(__name__)

MEDIAPIPE_TASK_ENV = "ESARM_MEDIAPIPE_TASK"


class BlendshapeExtractor(Protocol):
    """Blendshapes from video frames: ``(frames [T, H, W, 3] uint8 RGB, fps) -> (values [T, 52], face_found [T])``.

    ``values`` are ARKit coefficients in ``ARKIT_NAMES`` order (rows where ``face_found`` is False are ignored).
    """

    def __call__(self, frames: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]: ...


# Version 1 of the float16 model, the one MediaPipe's model card lists (a "latest" URL would change under a pinned
# checksum).
FACE_LANDMARKER_URL = (
    "https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/face_landmarker.task"
)
# Google publishes no checksum for its MediaPipe model files, so none is pinned here; set this environment variable to
# the sha256 you trust and a download (or a cached file) that differs is refused.
FACE_LANDMARKER_SHA256_ENV = "ESARM_MEDIAPIPE_TASK_SHA256"


def download_face_landmarker(
    cache_dir: str | os.PathLike | None = None, timeout: float = 30.0, sha256: str | None = None
) -> str | None:
    """MediaPipe's ``face_landmarker.task`` (``FACE_LANDMARKER_URL``) in ``cache_dir`` (``~/.cache/esarm``),
    downloaded once, atomically; ``None`` when it cannot be downloaded or fails its checksum.

    ``sha256`` (default ``$ESARM_MEDIAPIPE_TASK_SHA256``) is checked on the download and on a cached file; without
    one the file is kept unverified and its sha256 is logged, so that it can be pinned.
    """
    folder = Path(cache_dir or Path.home() / ".cache" / "esarm")
    path = folder / "face_landmarker.task"
    sha256 = sha256 or os.environ.get(FACE_LANDMARKER_SHA256_ENV) or None
    if path.is_file() and (sha256 is None or file_sha256(path) == sha256):
        return str(path)
    try:
        if sha256 is not None:
            fetch_verified(FACE_LANDMARKER_URL, path, sha256, timeout=timeout)
        else:
            with urlopen(FACE_LANDMARKER_URL, timeout=timeout) as response:  # noqa: S310 (pinned https URL)
                atomic_write_bytes(path, response.read())
            logger.warning(
                "%s downloaded without a checksum to compare (sha256 %s): set %s to pin it",
                FACE_LANDMARKER_URL, file_sha256(path), FACE_LANDMARKER_SHA256_ENV,
            )  # fmt: skip
    except OSError as error:
        logger.warning("cannot download %s: %s", FACE_LANDMARKER_URL, error)
        return None
    return str(path)


class MediaPipeBlendshapeExtractor:
    """MediaPipe FaceLandmarker (``output_face_blendshapes=True``) in video mode, one face.

    Args:
        model_asset_path: the ``face_landmarker.task`` file (default: ``$ESARM_MEDIAPIPE_TASK``).
        min_face_detection_confidence, min_face_presence_confidence, min_tracking_confidence: MediaPipe's.
        download: without a path, download the model once to ``~/.cache/esarm`` when online.

    MediaPipe (the ``mead`` extra: ``pip install esarm[mead]``) is imported on first use; the landmarker is
    created lazily in each worker process. MediaPipe's 52 names are alphabetical with ``_neutral`` first:
    they are reordered to ``ARKIT_NAMES`` (``_neutral`` dropped, ``tongueOut`` = 0 as MediaPipe lacks it).
    """

    def __init__(
        self,
        model_asset_path: str | os.PathLike | None = None,
        min_face_detection_confidence: float = 0.5,
        min_face_presence_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        download: bool = True,
    ) -> None:
        path = model_asset_path or os.environ.get(MEDIAPIPE_TASK_ENV)
        if not path and download:
            path = download_face_landmarker()
        if not path:
            raise ValueError(
                f"model_asset_path must be the MediaPipe face_landmarker.task file (or set ${MEDIAPIPE_TASK_ENV}), "
                f"got None; download it from {FACE_LANDMARKER_URL}"
            )
        if not Path(path).is_file():
            raise ValueError(f"model_asset_path must be an existing .task file, got {str(path)!r}")
        self.model_asset_path = str(path)
        self.options = dict(
            min_face_detection_confidence=min_face_detection_confidence,
            min_face_presence_confidence=min_face_presence_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )
        self._landmarker = None
        self._pid = os.getpid()
        self._clock_ms = 0  # video mode needs increasing timestamps across clips

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_landmarker": None}

    def _create(self):
        try:
            import mediapipe as mp
        except ImportError as error:
            raise ImportError(
                "MediaPipe is needed to extract blendshapes from video: pip install 'esarm[mead]'"
            ) from error
        vision = mp.tasks.vision
        options = vision.FaceLandmarkerOptions(
            base_options=mp.tasks.BaseOptions(model_asset_path=self.model_asset_path),
            running_mode=vision.RunningMode.VIDEO,
            num_faces=1,
            output_face_blendshapes=True,
            **self.options,
        )
        return vision.FaceLandmarker.create_from_options(options)

    def __call__(self, frames: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
        import mediapipe as mp

        if self._landmarker is None or self._pid != os.getpid():  # one landmarker per (forked) process
            self._landmarker, self._pid = self._create(), os.getpid()
        values = np.zeros((len(frames), NUM_BLENDSHAPES), np.float32)
        found = np.zeros(len(frames), bool)
        step_ms = 1000.0 / fps
        start_ms = self._clock_ms
        for index, frame in enumerate(frames):
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
            result = self._landmarker.detect_for_video(image, int(start_ms + index * step_ms))
            if result.face_blendshapes:
                categories = result.face_blendshapes[0]
                names = [c.category_name for c in categories]
                scores = np.array([c.score for c in categories], np.float32)
                values[index] = reorder(scores, names, ARKIT_NAMES)
                found[index] = True
        self._clock_ms = int(start_ms + len(frames) * step_ms) + 1000
        return values, found


def decode_video(path: str | os.PathLike, max_side: int = 640) -> tuple[np.ndarray, float]:
    """Frames uint8 RGB [T, H, W, 3] (scaled so the longer side is at most ``max_side``) and the frame rate."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 30)
        frames = []
        for frame in container.decode(stream):
            scale = min(1.0, max_side / max(frame.width, frame.height))
            width, height = int(round(frame.width * scale / 2) * 2), int(round(frame.height * scale / 2) * 2)
            frames.append(frame.to_ndarray(format="rgb24", width=width, height=height))
    if not frames:
        raise ValueError(f"video {path} has no frames")
    return np.stack(frames), fps


def decode_audio(path: str | os.PathLike, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """Audio of a file (m4a, mp4, wav, ...) decoded with PyAV: float32 mono [samples] at ``sampling_rate`` Hz."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"{path} has no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sampling_rate)
        chunks = []
        for frame in container.decode(container.streams.audio[0]):
            for converted in resampler.resample(frame):
                chunks.append(converted.to_ndarray().reshape(-1))
        for converted in resampler.resample(None):
            chunks.append(converted.to_ndarray().reshape(-1))
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if audio.size == 0:
        raise ValueError(f"{path} has an empty audio stream")
    return audio


def interpolate_missing(values: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Fill frames where ``found`` is False by linear interpolation per channel (nearest at the ends)."""
    values = np.asarray(values, np.float32).copy()
    found = np.asarray(found, bool)
    if found.all() or not found.any():
        return values
    frames = np.arange(len(values))
    for channel in range(values.shape[1]):
        values[~found, channel] = np.interp(frames[~found], frames[found], values[found, channel])
    return values
