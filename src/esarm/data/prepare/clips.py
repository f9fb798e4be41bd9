"""One clip of a real corpus: where it is (:class:`ClipSource`), turning it into a corpus row
(:func:`process_clip`: video -> blendshapes, audio -> 16 kHz, lengths aligned) and the per-clip cache that makes a
preparation resumable (:class:`ClipCache`). :mod:`esarm.data.prepare.preparation` runs it over a whole corpus."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...blendshapes import NUM_BLENDSHAPES
from ...utils import atomic_write, atomic_write_text, remove_stale_temporaries
from ..schema import SAMPLING_RATE
from .extraction import BlendshapeExtractor, decode_audio, decode_video, interpolate_missing

CACHE_DIR = ".cache/clips"

__all__ = [
    "CACHE_DIR",
    "ClipCache",
    "ClipRejected",
    "ClipSource",
    "UnparsedFile",
    "init_worker",
    "process_and_cache",
    "process_clip",
]


# ----------------------------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class ClipSource:
    """One clip found in a dataset tree.

    Attributes:
        id: unique clip id (also the cache file name).
        speaker, emotion (``EMOTIONS``), intensity (1..3), sentence: labels of the clip.
        video: path of the video whose frames give the blendshapes.
        audio: path of the audio (may be the video itself when the audio track is in it).
        extra: dataset-specific fields kept in the report (e.g. MEAD's clip number, RAVDESS's repetition).
    """

    id: str
    speaker: str
    emotion: str
    intensity: int
    sentence: str
    video: str
    audio: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UnparsedFile:
    """A file in the dataset tree that was not used, and why."""

    path: str
    reason: str


# ------------------------------------------------------------------------------------------- one clip
class ClipRejected(Exception):
    """A clip that cannot be used (too many frames without a face, unreadable media, ...)."""


def process_clip(
    source: ClipSource,
    extractor: BlendshapeExtractor,
    max_missing_fraction: float = 0.2,
    max_length_mismatch: float = 0.5,
    fps: float | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A corpus row for ``source`` and its statistics; raises ``ClipRejected`` with the reason.

    Audio and animation are cut to the shorter of the two (``max_length_mismatch`` seconds of difference at
    most), so that the audio lasts exactly ``frames / fps`` seconds. ``fps`` checks the video frame rate (MEAD is 30 fps) when given.
    """
    try:
        frames, video_fps = decode_video(source.video)
        audio = decode_audio(source.audio)
    except Exception as error:  # noqa: BLE001 - any decoding failure rejects the clip, with its message
        raise ClipRejected(f"cannot decode: {type(error).__name__}: {error}") from error
    if fps is not None and abs(video_fps - fps) > 0.5:
        raise ClipRejected(f"video frame rate must be {fps:g} fps, got {video_fps:g}")
    values, found = extractor(frames, video_fps)
    values, found = np.asarray(values, np.float32), np.asarray(found, bool)
    if values.shape != (len(frames), NUM_BLENDSHAPES) or found.shape != (len(frames),):
        raise ValueError(
            f"the extractor must return values [{len(frames)}, 52] and face_found [{len(frames)}], "
            f"got {values.shape} and {found.shape}"
        )
    missing = int((~found).sum())
    if missing > max_missing_fraction * len(frames):
        raise ClipRejected(f"no face in {missing} of {len(frames)} frames (max {max_missing_fraction:.0%})")
    blendshapes = np.clip(interpolate_missing(values, found), 0.0, 1.0)

    video_seconds, audio_seconds = len(frames) / video_fps, len(audio) / SAMPLING_RATE
    if abs(video_seconds - audio_seconds) > max_length_mismatch:
        raise ClipRejected(f"audio lasts {audio_seconds:.2f} s but video {video_seconds:.2f} s")
    num_frames = min(len(frames), int(round(audio_seconds * video_fps)))
    blendshapes = blendshapes[:num_frames]
    num_samples = int(round(num_frames / video_fps * SAMPLING_RATE))
    # exactly num_frames / fps seconds of audio: cut, or pad the last fraction of a frame with silence
    audio = np.pad(audio[:num_samples], (0, max(0, num_samples - len(audio))))
    row = {
        "id": source.id,
        "speaker": source.speaker,
        "emotion": source.emotion,
        "intensity": source.intensity,
        "sentence": source.sentence,
        "audio": audio,
        "sampling_rate": SAMPLING_RATE,
        "blendshapes": blendshapes.astype(np.float32),
        "fps": float(video_fps),
    }
    stats = {"frames": num_frames, "missing_frames": missing, "video_seconds": video_seconds,
             "audio_seconds": audio_seconds}  # fmt: skip
    return row, stats


# ---------------------------------------------------------------------------------------------- cache
class ClipCache:
    """Per-clip results under ``<output_dir>/.cache/clips``: ``<id>.npz`` (done) or ``<id>.rejected.json``."""

    def __init__(self, output_dir: str | os.PathLike) -> None:
        self.folder = Path(output_dir) / CACHE_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.folder)  # clips a killed run was writing

    def _done(self, clip_id: str) -> Path:
        return self.folder / f"{clip_id}.npz"

    def _rejected(self, clip_id: str) -> Path:
        return self.folder / f"{clip_id}.rejected.json"

    def status(self, clip_id: str) -> str | None:
        """``"done"``, ``"rejected"`` or None (not processed yet)."""
        if self._done(clip_id).exists():
            return "done"
        if self._rejected(clip_id).exists():
            return "rejected"
        return None

    def save(self, row: dict[str, Any], stats: dict[str, Any]) -> None:
        labels = {k: row[k] for k in ("id", "speaker", "emotion", "intensity", "sentence", "sampling_rate", "fps")}
        arrays = {"audio": row["audio"], "blendshapes": row["blendshapes"]}
        meta = np.array(json.dumps({"labels": labels, "stats": stats}))
        # np.savez appends ".npz" to names without it: the temporary file must have it.
        atomic_write(self._done(row["id"]), lambda tmp: np.savez(tmp, meta=meta, **arrays), suffix=".npz")

    def save_rejected(self, clip_id: str, reason: str) -> None:
        atomic_write_text(self._rejected(clip_id), json.dumps({"id": clip_id, "reason": reason}))

    def load(self, clip_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        with np.load(self._done(clip_id)) as data:
            meta = json.loads(str(data["meta"]))
            row = {**meta["labels"], "audio": data["audio"], "blendshapes": data["blendshapes"]}
        return row, meta["stats"]

    def reason(self, clip_id: str) -> str:
        return json.loads(self._rejected(clip_id).read_text())["reason"]


_WORKER_EXTRACTOR: BlendshapeExtractor | None = None


def init_worker(extractor: BlendshapeExtractor) -> None:
    global _WORKER_EXTRACTOR
    _WORKER_EXTRACTOR = extractor


def process_and_cache(source: ClipSource, output_dir: str, options: dict[str, Any]) -> tuple[str, str]:
    """Process one clip in a worker and cache the outcome; returns (id, "done" | "rejected")."""
    cache = ClipCache(output_dir)
    try:
        row, stats = process_clip(source, _WORKER_EXTRACTOR, **options)
    except ClipRejected as rejection:
        cache.save_rejected(source.id, str(rejection))
        return source.id, "rejected"
    cache.save(row, stats)
    return source.id, "done"
