"""Shared machinery to prepare a real audio-visual corpus (MEAD, RAVDESS) in the package schema.

A dataset module (``esarm.data.mead``, ``esarm.data.ravdess``) finds and parses the clips (``ClipSource``);
``prepare_clips`` then, for every clip,

1. decodes the video with PyAV and extracts 52 ARKit blendshapes per frame with a ``BlendshapeExtractor``
   (MediaPipe's FaceLandmarker by default, any callable ``frames -> (blendshapes [T, 52], face_found [T])``
   can be injected), interpolates frames without a face and rejects clips with too many of them;
2. decodes the audio with PyAV to 16 kHz mono float32 and aligns audio and animation lengths;
3. caches the result per clip (``.cache/clips/<id>.npz``, written atomically), so a rerun skips finished
   clips and a crash loses at most the clips in progress;

and finally writes parquet shards per split (``data/<split>-XXXXX-of-YYYYY.parquet``, speaker-level splits),
``splits.json``, ``report.json`` and a dataset card ``README.md`` that ``datasets.load_dataset`` understands.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..blendshapes import ARKIT_NAMES, NUM_BLENDSHAPES, reorder
from .schema import SAMPLING_RATE, clip_features, rows_to_dataset

logger = logging.getLogger(__name__)

MEDIAPIPE_TASK_ENV = "ESARM_MEDIAPIPE_TASK"
CACHE_DIR = ".cache/clips"


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


# ------------------------------------------------------------------------------------------- extraction
class BlendshapeExtractor(Protocol):
    """Blendshapes from video frames: ``(frames [T, H, W, 3] uint8 RGB, fps) -> (values [T, 52], face_found [T])``.

    ``values`` are ARKit coefficients in ``ARKIT_NAMES`` order (rows where ``face_found`` is False are ignored).
    """

    def __call__(self, frames: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]: ...


class MediaPipeBlendshapeExtractor:
    """MediaPipe FaceLandmarker (``output_face_blendshapes=True``) in video mode, one face.

    Args:
        model_asset_path: the ``face_landmarker.task`` file (default: ``$ESARM_MEDIAPIPE_TASK``).
        min_face_detection_confidence, min_face_presence_confidence, min_tracking_confidence: MediaPipe's.

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
    ) -> None:
        path = model_asset_path or os.environ.get(MEDIAPIPE_TASK_ENV)
        if not path:
            raise ValueError(
                f"model_asset_path must be the MediaPipe face_landmarker.task file (or set ${MEDIAPIPE_TASK_ENV}), "
                "got None; download it from https://storage.googleapis.com/mediapipe-models/face_landmarker/"
                "face_landmarker/float16/latest/face_landmarker.task"
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

        if self._landmarker is None:
            self._landmarker = self._create()
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


# -------------------------------------------------------------------------------------------- decoding
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
    most). ``fps`` checks the video frame rate (MEAD is 30 fps) when given.
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
    audio = audio[: int(round(num_frames / video_fps * SAMPLING_RATE))]
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
def _atomic_write_bytes(path: Path, write: Callable[[Any], None], suffix: str = "") -> None:
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
        os.chmod(staging, 0o644)  # mkstemp creates 0600 files
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.remove(staging)


def _atomic_write_text(path: Path, text: str) -> None:
    _atomic_write_bytes(path, lambda file: file.write(text.encode("utf-8")))


class ClipCache:
    """Per-clip results under ``<output_dir>/.cache/clips``: ``<id>.npz`` (done) or ``<id>.rejected.json``."""

    def __init__(self, output_dir: str | os.PathLike) -> None:
        self.folder = Path(output_dir) / CACHE_DIR
        self.folder.mkdir(parents=True, exist_ok=True)

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
        _atomic_write_bytes(self._done(row["id"]), lambda file: np.savez(file, meta=meta, **arrays), ".npz")

    def save_rejected(self, clip_id: str, reason: str) -> None:
        _atomic_write_text(self._rejected(clip_id), json.dumps({"id": clip_id, "reason": reason}))

    def load(self, clip_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        with np.load(self._done(clip_id)) as data:
            meta = json.loads(str(data["meta"]))
            row = {**meta["labels"], "audio": data["audio"], "blendshapes": data["blendshapes"]}
        return row, meta["stats"]

    def reason(self, clip_id: str) -> str:
        return json.loads(self._rejected(clip_id).read_text())["reason"]


_WORKER_EXTRACTOR: BlendshapeExtractor | None = None


def _init_worker(extractor: BlendshapeExtractor) -> None:
    global _WORKER_EXTRACTOR
    _WORKER_EXTRACTOR = extractor


def _process_and_cache(source: ClipSource, output_dir: str, options: dict[str, Any]) -> tuple[str, str]:
    """Process one clip in a worker and cache the outcome; returns (id, "done" | "rejected")."""
    cache = ClipCache(output_dir)
    try:
        row, stats = process_clip(source, _WORKER_EXTRACTOR, **options)
    except ClipRejected as rejection:
        cache.save_rejected(source.id, str(rejection))
        return source.id, "rejected"
    cache.save(row, stats)
    return source.id, "done"


# --------------------------------------------------------------------------------------------- splits
def split_speakers(
    speakers: Sequence[str],
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    group: Callable[[str], str] | None = None,
) -> dict[str, list[str]]:
    """Speaker-level splits, deterministic for ``seed``, balanced within each ``group`` (e.g. sex).

    Every split with a non-zero fraction gets at least one speaker when there are at least 3 speakers.
    """
    if not 0 <= validation_fraction < 1 or not 0 <= test_fraction < 1 or validation_fraction + test_fraction >= 1:
        raise ValueError(
            "validation_fraction and test_fraction must be in [0, 1) with a sum < 1, got "
            f"{validation_fraction} and {test_fraction}"
        )
    speakers = sorted(set(speakers))
    groups: dict[str, list[str]] = {}
    for speaker in speakers:
        groups.setdefault(group(speaker) if group else "", []).append(speaker)
    rng = random.Random(seed)
    ordered: list[str] = []
    shuffled = {key: rng.sample(members, len(members)) for key, members in sorted(groups.items())}
    while any(shuffled.values()):  # interleave the groups so each split mixes them
        for key in sorted(shuffled):
            if shuffled[key]:
                ordered.append(shuffled[key].pop())
    num_test = int(round(test_fraction * len(ordered)))
    num_validation = int(round(validation_fraction * len(ordered)))
    if len(ordered) >= 3:
        num_test = max(num_test, 1 if test_fraction > 0 else 0)
        num_validation = max(num_validation, 1 if validation_fraction > 0 else 0)
    test = ordered[:num_test]
    validation = ordered[num_test : num_test + num_validation]
    train = ordered[num_test + num_validation :]
    return {"train": sorted(train), "validation": sorted(validation), "test": sorted(test)}


# ------------------------------------------------------------------------------------------- the driver
@dataclass
class PreparationResult:
    """What a preparation run did.

    Attributes:
        output_dir: the prepared dataset (parquet shards + card).
        num_clips: clips in the dataset.
        processed: clips processed in this run (the others came from the cache).
        rejected: ``{clip id: reason}`` for clips left out (too many frames without a face, decoding errors).
        unparsed: files of the tree that were not used, with the reason.
        splits: split -> speakers (or, with sentence splits, split -> clip ids).
        missing_frames: frames without a face that were interpolated, over all clips.
    """

    output_dir: Path
    num_clips: int
    processed: int
    rejected: dict[str, str]
    unparsed: list[UnparsedFile]
    splits: dict[str, list[str]]
    missing_frames: int = 0
    split_sizes: dict[str, int] = field(default_factory=dict)


def prepare_clips(
    sources: Sequence[ClipSource],
    output_dir: str | os.PathLike,
    extractor: BlendshapeExtractor,
    split_of: Callable[[ClipSource], str],
    splits: dict[str, list[str]],
    card: Callable[[dict[str, Any]], str],
    unparsed: Sequence[UnparsedFile] = (),
    num_workers: int = 1,
    max_missing_fraction: float = 0.2,
    max_length_mismatch: float = 0.5,
    fps: float | None = None,
    shard_size: int = 500,
    progress: bool = True,
) -> PreparationResult:
    """Process ``sources`` (resumably, in ``num_workers`` processes) and write the dataset to ``output_dir``.

    ``split_of`` names the split of each clip; ``splits`` is what ``splits.json`` publishes; ``card`` turns the
    report (a dict) into the README text. Reruns reuse every cached clip and rewrite nothing when the
    dataset is already complete.
    """
    from tqdm.auto import tqdm

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    cache = ClipCache(output_dir)
    options = {"max_missing_fraction": max_missing_fraction, "max_length_mismatch": max_length_mismatch, "fps": fps}
    ids = [s.id for s in sources]
    if len(set(ids)) != len(ids):
        raise ValueError("sources must have unique ids, got duplicates")
    pending = [s for s in sources if cache.status(s.id) is None]
    logger.info("%d clips, %d cached, %d to process", len(sources), len(sources) - len(pending), len(pending))

    counts = {"done": 0, "rejected": 0}
    bar = tqdm(total=len(pending), desc="clips", unit="clip", disable=not progress or not pending)
    if num_workers > 1 and len(pending) > 1:
        with ProcessPoolExecutor(
            num_workers, mp_context=get_context("fork"), initializer=_init_worker, initargs=(extractor,)
        ) as pool:
            futures = [pool.submit(_process_and_cache, s, str(output_dir), options) for s in pending]
            for future in as_completed(futures):
                counts[future.result()[1]] += 1
                bar.update(1)
                bar.set_postfix(counts)
    else:
        _init_worker(extractor)
        for source in pending:
            counts[_process_and_cache(source, str(output_dir), options)[1]] += 1
            bar.update(1)
            bar.set_postfix(counts)
    bar.close()

    rejected = {s.id: cache.reason(s.id) for s in sources if cache.status(s.id) == "rejected"}
    accepted = [s for s in sources if cache.status(s.id) == "done"]
    for clip_id, reason in rejected.items():
        logger.warning("rejected %s: %s", clip_id, reason)
    for item in unparsed:
        logger.warning("not used: %s (%s)", item.path, item.reason)

    by_split: dict[str, list[ClipSource]] = {}
    for source in accepted:
        by_split.setdefault(split_of(source), []).append(source)
    fingerprint = hashlib.sha256(
        json.dumps(
            {k: sorted(s.id for s in v) for k, v in sorted(by_split.items())}
            | {"options": options, "shard": shard_size}
        ).encode()
    ).hexdigest()
    report_path = output_dir / "report.json"
    if report_path.exists() and not pending:
        previous = json.loads(report_path.read_text())
        if previous.get("fingerprint") == fingerprint and all((output_dir / f).exists() for f in previous["files"]):
            logger.info("dataset in %s is complete and up to date", output_dir)
            return _result(output_dir, previous, 0, unparsed)

    files, missing_frames, split_sizes = _write_shards(output_dir, cache, by_split, shard_size)
    report = {
        "fingerprint": fingerprint,
        "files": files,
        "num_clips": len(accepted),
        "split_sizes": split_sizes,
        "splits": splits,
        "missing_frames_interpolated": missing_frames,
        "rejected": rejected,
        "unparsed": [asdict(u) for u in unparsed],
        "options": options,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    _atomic_write_text(output_dir / "splits.json", json.dumps(splits, indent=2))
    _atomic_write_text(output_dir / "README.md", card(report))
    _atomic_write_text(report_path, json.dumps(report, indent=2))
    return _result(output_dir, report, counts["done"] + counts["rejected"], unparsed)


def _result(output_dir: Path, report: dict[str, Any], processed: int, unparsed) -> PreparationResult:
    return PreparationResult(
        output_dir=output_dir,
        num_clips=report["num_clips"],
        processed=processed,
        rejected=report["rejected"],
        unparsed=list(unparsed),
        splits=report["splits"],
        missing_frames=report["missing_frames_interpolated"],
        split_sizes=report["split_sizes"],
    )


def _write_shards(
    output_dir: Path, cache: ClipCache, by_split: dict[str, list[ClipSource]], shard_size: int
) -> tuple[list[str], int, dict[str, int]]:
    """Parquet shards ``data/<split>-XXXXX-of-YYYYY.parquet``; old shards are removed after the new ones land."""
    data_dir = output_dir / "data"
    data_dir.mkdir(exist_ok=True)
    schema = clip_features()
    files, missing_frames, sizes = [], 0, {}
    for split, sources in sorted(by_split.items()):
        sources = sorted(sources, key=lambda s: s.id)
        sizes[split] = len(sources)
        num_shards = max(1, -(-len(sources) // shard_size))
        for shard in range(num_shards):
            rows = []
            for source in sources[shard * shard_size : (shard + 1) * shard_size]:
                row, stats = cache.load(source.id)
                missing_frames += stats["missing_frames"]
                rows.append(row)
            name = f"data/{split}-{shard:05d}-of-{num_shards:05d}.parquet"
            path = output_dir / name
            dataset = rows_to_dataset(rows, schema)
            _atomic_write_bytes(path, lambda file, d=dataset: d.to_parquet(file), ".parquet")
            files.append(name)
    for stale in data_dir.glob("*.parquet"):
        if f"data/{stale.name}" not in files:
            stale.unlink()
    return files, missing_frames, sizes


def load_prepared(output_dir: str | os.PathLike):
    """The prepared dataset as a ``datasets.DatasetDict`` (from its parquet shards)."""
    from datasets import load_dataset

    output_dir = Path(output_dir)
    report = json.loads((output_dir / "report.json").read_text())
    data_files: dict[str, list[str]] = {}
    for name in report["files"]:
        split = Path(name).name.split("-")[0]
        data_files.setdefault(split, []).append(str(output_dir / name))
    return load_dataset("parquet", data_files=data_files, features=clip_features())


def push_prepared_to_hub(output_dir: str | os.PathLike, repo_id: str, private: bool = True, token: str | None = None):
    """Upload a prepared dataset folder (shards, card, splits, report; not the cache) to the Hub."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id, repo_type="dataset", folder_path=str(output_dir), ignore_patterns=[".cache/*", ".*"]
    )


def card_configs_yaml(report: dict[str, Any]) -> str:
    """The ``configs:`` YAML block of a dataset card that maps each split to its parquet shards."""
    lines = ["configs:", "- config_name: default", "  data_files:"]
    splits = sorted({Path(f).name.split("-")[0] for f in report["files"]})
    for split in splits:
        lines.append(f"  - split: {split}")
        lines.append(f"    path: data/{split}-*.parquet")
    return "\n".join(lines)
