"""One way into a dataset for every training stage: a local folder or a Hub dataset id, by name.

:func:`load_split` accepts

* a ``save_to_disk`` folder (``dataset_dict.json`` for a ``DatasetDict``, ``state.json`` for a ``Dataset``): the
  synthetic corpus, ranked demonstrations;
* a prepared folder in the Hub dataset layout (``README.md`` whose ``configs:`` map splits to
  ``data/<split>-XXXXX-of-YYYYY.parquet``, as written by ``esarm prepare-mead`` / ``prepare-ravdess``, or any
  local dataset repository ``datasets.load_dataset`` understands);
* a Hub dataset id (``user/name``), read with ``datasets.load_dataset``; ``streaming=True`` reads it without
  downloading it first (an ``IterableDataset``), for corpora larger than the disk.

A local folder and a Hub repository go through the same ``load_dataset`` call: a folder tested here is what the
Hub serves. A ``datasets.Audio`` column is read with ``decode=False`` (its ``{"bytes", "path"}`` storage), so
that no torchcodec is needed: :func:`esarm.data.schema.decode_audio_value` decodes it in the collators.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["dataset_reference", "even_spread", "load_split", "load_splits"]

_SAVE_TO_DISK_MARKERS = ("dataset_dict.json", "state.json")
_DATA_SUFFIXES = (".parquet", ".arrow", ".jsonl", ".json", ".csv")


def _is_save_to_disk(folder: Path) -> bool:
    return any((folder / name).is_file() for name in _SAVE_TO_DISK_MARKERS)


def _is_dataset_repository(folder: Path) -> bool:
    """A folder ``load_dataset`` reads: a card with ``configs:`` or data files under ``data/`` or at the top."""
    card = folder / "README.md"
    if card.is_file() and "configs:" in card.read_text(encoding="utf-8", errors="replace").split("\n---", 1)[0]:
        return True
    candidates = [*folder.glob("*"), *(folder / "data").glob("*")]
    return any(path.is_file() and path.name.endswith(_DATA_SUFFIXES) for path in candidates)


def _describe_folder(folder: Path) -> str:
    names = sorted(path.name + ("/" if path.is_dir() else "") for path in folder.iterdir())
    return "an empty folder" if not names else f"a folder holding {names[:8]}{' ...' if len(names) > 8 else ''}"


def _kind(name_or_path: str | os.PathLike, argument: str) -> str:
    """``"disk"``, ``"repository"`` or ``"hub"``; a ``ValueError`` naming ``argument`` for anything else."""
    if name_or_path is None or str(name_or_path) == "":
        raise ValueError(f"{argument} must be a dataset folder or a Hub dataset id, got {name_or_path!r}")
    path = Path(name_or_path)
    if path.is_dir():
        if _is_save_to_disk(path):
            return "disk"
        if _is_dataset_repository(path):
            return "repository"
        raise ValueError(
            f"{argument} must be a save_to_disk folder (dataset_dict.json or state.json), a prepared dataset "
            f"folder (README.md with configs: or data/*.parquet) or a Hub dataset id, got {str(path)!r}: "
            f"{_describe_folder(path)}"
        )
    if path.exists():
        raise ValueError(f"{argument} must be a dataset folder or a Hub dataset id, got the file {str(path)!r}")
    text = str(name_or_path)
    # a Hub id is "name" or "owner/name"; anything with more parts, a leading "." or "/" is a missing folder
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text:
        raise ValueError(f"{argument} must be an existing dataset folder or a Hub dataset id, got {text!r} "
                         "(no such folder)")  # fmt: skip
    return "hub"


def load_splits(name_or_path: str | os.PathLike, streaming: bool = False, argument: str = "dataset_name_or_path"):
    """Every split of a dataset (see the module docstring): a ``DatasetDict`` (``IterableDatasetDict`` when
    ``streaming``). A ``save_to_disk`` folder holding a single ``Dataset`` becomes ``{"train": dataset}``.

    ``argument`` is the name the error messages give the dataset (the caller's parameter or config field).
    """
    from datasets import Dataset, DatasetDict, IterableDatasetDict, load_dataset, load_from_disk

    kind = _kind(name_or_path, argument)
    if kind == "disk":
        data = load_from_disk(str(name_or_path))
        data = DatasetDict({"train": data}) if isinstance(data, Dataset) else data
        if streaming:
            return IterableDatasetDict({name: split.to_iterable_dataset() for name, split in data.items()})
        return _without_audio_decoding(data)
    try:
        data = load_dataset(str(name_or_path), streaming=streaming)
    except (FileNotFoundError, ConnectionError) as error:
        # datasets raises DatasetNotFoundError (a FileNotFoundError) for an unknown id, ConnectionError offline
        raise ValueError(
            f"{argument} {str(name_or_path)!r} is neither a local dataset folder nor a Hub dataset that can be "
            f"reached ({type(error).__name__}: {error})"
        ) from error
    return _without_audio_decoding(data)


def load_split(
    name_or_path: str | os.PathLike, split: str, streaming: bool = False, argument: str = "dataset_name_or_path"
):
    """One split of a dataset (a ``Dataset``, or an ``IterableDataset`` when ``streaming``).

    A ``save_to_disk`` folder holding a single ``Dataset`` (no splits) returns it for any ``split``. A missing
    split raises a ``ValueError`` that lists the splits present.
    """
    from datasets import Dataset, load_from_disk

    if _kind(name_or_path, argument) == "disk" and (Path(name_or_path) / "state.json").is_file():
        data = load_from_disk(str(name_or_path))
        assert isinstance(data, Dataset)
        return _without_audio_decoding(data.to_iterable_dataset() if streaming else data)
    splits = load_splits(name_or_path, streaming=streaming, argument=argument)
    if split not in splits:
        raise ValueError(f"split must be one of {sorted(splits)} for {argument} {str(name_or_path)!r}, got {split!r}")
    return splits[split]


def dataset_reference(name_or_path: str | os.PathLike) -> str:
    """How to find the dataset again from anywhere: an absolute path for a local folder, else the Hub id."""
    path = Path(name_or_path)
    return str(path.resolve()) if path.exists() else str(name_or_path)


def _without_audio_decoding(data: Any):
    """Read ``datasets.Audio`` columns as their stored ``{"bytes", "path"}`` (decoding would need torchcodec)."""
    from datasets import Audio

    features = data.features if hasattr(data, "features") else next(iter(data.values())).features
    if features is None:  # a streamed dataset whose features are only known after reading
        return data
    for name, feature in features.items():
        if isinstance(feature, Audio) and feature.decode:
            data = data.cast_column(name, Audio(decode=False))
    return data


def even_spread(dataset_split: Any, max_clips: int | None) -> Any:
    """At most ``max_clips`` rows of a split, spread evenly over it (rows are ordered by sentence and emotion, so
    the first ``max_clips`` would cover few of them); a list of rows is cut to its first ``max_clips``."""
    count = len(dataset_split) if max_clips is None else min(len(dataset_split), max_clips)
    if count == len(dataset_split):
        return dataset_split
    if hasattr(dataset_split, "select"):
        return dataset_split.select(np.linspace(0, len(dataset_split) - 1, count).round().astype(int).tolist())
    return dataset_split[:count]
