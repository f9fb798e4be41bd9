"""Loading shared by the training stages and the evaluation: dataset splits and the face rig."""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def load_split(path: str | os.PathLike, split: str):
    """One split of a ``save_to_disk`` DatasetDict (or the Dataset itself when the folder holds one)."""
    from datasets import Dataset, DatasetDict, load_from_disk

    if path is None or not Path(path).exists():
        raise ValueError(f"dataset_path must be a folder written by save_to_disk, got {path!r}")
    data = load_from_disk(str(path))
    if isinstance(data, DatasetDict):
        if split not in data:
            raise ValueError(f"split must be one of {list(data)} for dataset {str(path)!r}, got {split!r}")
        return data[split]
    if isinstance(data, Dataset):
        return data
    raise ValueError(f"dataset_path {str(path)!r} holds {type(data).__name__}, expected a Dataset or DatasetDict")


def load_rig(rig_path: str | os.PathLike | None):
    """The face rig for vertex metrics: ``rig_path``, else ``$ESARM_RIG``; ``None`` when there is no rig (or the
    evaluation package is missing), in which case vertex metrics are skipped."""
    path = rig_path or os.environ.get("ESARM_RIG")
    if not path or not Path(path).exists():
        return None
    try:
        from ..evaluation.rig import FaceRig
    except ImportError:  # evaluation package not installed / not yet available
        logger.warning("esarm.evaluation is not importable; skipping vertex metrics")
        return None
    return FaceRig.from_npz(path)
