"""Shared machinery to prepare a real audio-visual corpus (MEAD, RAVDESS) in the package schema.

A dataset module (``esarm.data.prepare.mead``, ``esarm.data.prepare.ravdess``) finds and parses the clips (``ClipSource``);
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

import argparse
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from ...utils import atomic_write, atomic_write_text, remove_stale_temporaries
from ..loading import load_splits
from ..schema import clip_features, rows_to_dataset
from .clips import (
    ClipCache,
    ClipRejected,
    ClipSource,
    UnparsedFile,
    init_worker,
    process_and_cache,
    process_clip,
)
from .extraction import (
    FACE_LANDMARKER_URL,
    MEDIAPIPE_TASK_ENV,
    BlendshapeExtractor,
    MediaPipeBlendshapeExtractor,
    decode_audio,
    decode_video,
    download_face_landmarker,
    interpolate_missing,
)

logger = logging.getLogger(__name__)



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


def split_of_speaker(splits: dict[str, list[str]]) -> Callable[[ClipSource], str]:
    """The ``split_of`` function of :func:`prepare_clips` for speaker splits (:func:`split_speakers`): a clip's
    split is its speaker's."""
    split_by_speaker = {speaker: split for split, speakers in splits.items() for speaker in speakers}
    return lambda clip: split_by_speaker[clip.speaker]


def select_clips(
    clips: Sequence[ClipSource], output_dir: str | os.PathLike, max_clips: int | None = None, overwrite: bool = False
) -> Sequence[ClipSource]:
    """The clips to prepare: the first ``max_clips`` by id (all when None). ``overwrite`` first deletes what an
    earlier preparation wrote to ``output_dir`` (dataset and cache of finished clips)."""
    if max_clips is not None:
        clips = sorted(clips, key=lambda c: c.id)[:max_clips]
    if overwrite:
        clear_prepared(output_dir)
    return clips


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

    def __str__(self) -> str:
        return (
            f"{self.output_dir}: {self.num_clips} clips {self.split_sizes} ({self.processed} processed now), "
            f"{len(self.rejected)} rejected, {len(self.unparsed)} files not used, "
            f"{self.missing_frames} frames without a face interpolated; details in report.json"
        )


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
    push_to_hub: str | None = None,
    private: bool = True,
) -> PreparationResult:
    """Process ``sources`` (resumably, in ``num_workers`` processes) and write the dataset to ``output_dir``.

    ``split_of`` names the split of each clip; ``splits`` is what ``splits.json`` publishes; ``card`` turns the
    report (a dict) into the README text. Reruns reuse every cached clip and rewrite nothing when the
    dataset is already complete. ``push_to_hub``: a dataset repo id to upload the result to (``private``).
    """
    result = _prepare_clips(
        sources, output_dir, extractor, split_of, splits, card, unparsed, num_workers, max_missing_fraction,
        max_length_mismatch, fps, shard_size, progress,
    )  # fmt: skip
    if push_to_hub:
        push_prepared_to_hub(result.output_dir, push_to_hub, private=private)
    return result


def _prepare_clips(
    sources, output_dir, extractor, split_of, splits, card, unparsed, num_workers, max_missing_fraction,
    max_length_mismatch, fps, shard_size, progress,
) -> PreparationResult:  # fmt: skip
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
            num_workers, mp_context=get_context("fork"), initializer=init_worker, initargs=(extractor,)
        ) as pool:
            futures = [pool.submit(process_and_cache, s, str(output_dir), options) for s in pending]
            for future in as_completed(futures):
                counts[future.result()[1]] += 1
                bar.update(1)
                bar.set_postfix(counts)
    else:
        init_worker(extractor)
        for source in pending:
            counts[process_and_cache(source, str(output_dir), options)[1]] += 1
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
    atomic_write_text(output_dir / "splits.json", json.dumps(splits, indent=2))
    atomic_write_text(output_dir / "README.md", card(report))
    atomic_write_text(report_path, json.dumps(report, indent=2))
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
    remove_stale_temporaries(data_dir)  # shards a killed run was writing
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
            atomic_write(path, lambda tmp, d=dataset: d.to_parquet(tmp))
            files.append(name)
    for stale in data_dir.glob("*.parquet"):
        if f"data/{stale.name}" not in files:
            stale.unlink()
    return files, missing_frames, sizes


def clear_prepared(output_dir: str | os.PathLike) -> None:
    """Delete what a preparation wrote in ``output_dir`` (shards, card, splits, report and the clip cache)."""
    import shutil

    output_dir = Path(output_dir)
    for name in (".cache", "data"):
        shutil.rmtree(output_dir / name, ignore_errors=True)
    for name in ("README.md", "splits.json", "report.json"):
        (output_dir / name).unlink(missing_ok=True)


def load_prepared(output_dir: str | os.PathLike):
    """The prepared dataset as a ``datasets.DatasetDict`` (its card maps each split to its parquet shards)."""
    return load_splits(output_dir, argument="output_dir")


def resolve_extractor(extractor: BlendshapeExtractor | str | None, model_asset_path=None) -> BlendshapeExtractor:
    """A ``BlendshapeExtractor``: ``extractor`` itself, one named ``"package.module:ClassName"`` (created with no
    arguments: another face tracker, or ``esarm.data.prepare.testing:PixelBlendshapeExtractor`` for tests), or MediaPipe's
    with ``model_asset_path`` when None."""
    if extractor is None:
        return MediaPipeBlendshapeExtractor(model_asset_path)
    if not isinstance(extractor, str):
        return extractor
    import importlib

    module_name, _, class_name = extractor.partition(":")
    if not module_name or not class_name:
        raise ValueError(f"extractor must be 'package.module:ClassName', got {extractor!r}")
    try:
        factory = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"extractor {extractor!r} cannot be imported: {error}") from error
    return factory()


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


# ------------------------------------------------------------------------------------------- the scripts
def add_preparation_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options ``scripts/prepare_mead.py`` and ``scripts/prepare_ravdess.py`` share (output folder,
    MediaPipe model, speaker split, workers, shards, Hub upload); :func:`preparation_options` reads them back."""
    parser.add_argument("--output-dir", required=True)
    parser.add_argument(
        "--model-asset-path", default=None, help="MediaPipe face_landmarker.task ($ESARM_MEDIAPIPE_TASK)"
    )
    parser.add_argument("--extractor", default=None, help="blendshape extractor 'package.module:ClassName' "
                        "(default: MediaPipe)")  # fmt: skip
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--max-missing-fraction", type=float, default=0.2)
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--push-to-hub", default=None, metavar="REPO_ID")
    parser.add_argument("--public", action="store_true", help="create the Hub repository public")


def preparation_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``prepare_mead`` / ``prepare_ravdess`` set by :func:`add_preparation_arguments`."""
    return {
        "model_asset_path": args.model_asset_path,
        "extractor": args.extractor,
        "validation_fraction": args.validation_fraction,
        "test_fraction": args.test_fraction,
        "seed": args.seed,
        "num_workers": args.num_workers,
        "max_missing_fraction": args.max_missing_fraction,
        "shard_size": args.shard_size,
        "push_to_hub": args.push_to_hub,
        "private": not args.public,
    }


__all__ = [
    "FACE_LANDMARKER_URL",
    "MEDIAPIPE_TASK_ENV",
    "BlendshapeExtractor",
    "ClipCache",
    "ClipRejected",
    "ClipSource",
    "MediaPipeBlendshapeExtractor",
    "PreparationResult",
    "UnparsedFile",
    "add_preparation_arguments",
    "card_configs_yaml",
    "clear_prepared",
    "decode_audio",
    "decode_video",
    "download_face_landmarker",
    "interpolate_missing",
    "load_prepared",
    "prepare_clips",
    "preparation_options",
    "process_clip",
    "push_prepared_to_hub",
    "resolve_extractor",
    "select_clips",
    "split_of_speaker",
    "split_speakers",
]
