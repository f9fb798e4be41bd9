"""The corpus schema (one row per clip) and a fast conversion of rows to a ``datasets.Dataset``.

Columns: ``id`` str, ``speaker`` str, ``emotion`` str (``EMOTIONS``), ``intensity`` int 1..3, ``sentence`` str,
``audio`` list of float32 at ``sampling_rate`` (16 kHz mono), ``sampling_rate`` int, ``blendshapes``
``Array2D((None, 52), float32)`` in ARKit order at ``fps``, ``fps`` float. ``datasets.Audio`` is deliberately
not used: decoding it needs torchcodec; the samples are stored as a plain float32 list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..blendshapes import EMOTIONS, NUM_BLENDSHAPES

SAMPLING_RATE = 16000
CLIP_COLUMNS: tuple[str, ...] = (
    "id", "speaker", "emotion", "intensity", "sentence", "audio", "sampling_rate", "blendshapes", "fps"
)  # fmt: skip


def clip_features(extra: dict[str, Any] | None = None):
    """``datasets.Features`` of the clip schema, plus ``extra`` columns (name -> feature)."""
    from datasets import Array2D, Features, List, Value

    columns = {
        "id": Value("string"),
        "speaker": Value("string"),
        "emotion": Value("string"),
        "intensity": Value("int32"),
        "sentence": Value("string"),
        "audio": List(Value("float32")),
        "sampling_rate": Value("int32"),
        "blendshapes": Array2D((None, NUM_BLENDSHAPES), "float32"),
        "fps": Value("float32"),
    }
    return Features({**columns, **(extra or {})})


def _list_array(arrays: Sequence[np.ndarray], dtype) -> Any:
    import pyarrow as pa

    lengths = np.array([len(a) for a in arrays], np.int64)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    flat = np.concatenate([np.asarray(a, dtype) for a in arrays]) if arrays else np.zeros(0, dtype)
    return pa.ListArray.from_arrays(offsets, pa.array(flat))


def rows_to_dataset(rows: Sequence[dict[str, Any]], features):
    """A ``datasets.Dataset`` from rows (dicts) in the schema of ``features``.

    Numeric list columns and ``Array2D`` columns are built directly as Arrow arrays from numpy (an order of
    magnitude faster than ``Dataset.from_dict``); other columns go through ``pyarrow.array``.
    """
    import pyarrow as pa
    from datasets import Array2D, Dataset, List, Value

    schema = features.arrow_schema
    columns = []
    for name, feature in features.items():
        values = [row[name] for row in rows]
        field_type = schema.field(name).type
        if isinstance(feature, Array2D):
            width = feature.shape[1]
            matrices = [np.asarray(v, np.float32).reshape(-1, width) for v in values]
            inner = _list_array([m.reshape(-1) for m in matrices], np.float32)
            # Regroup the flat values of each clip into rows of `width`.
            row_offsets = pa.array(np.arange(0, len(inner.values) + 1, width, dtype=np.int32))
            rows_array = pa.ListArray.from_arrays(row_offsets, inner.values)
            clip_offsets = np.concatenate([[0], np.cumsum([len(m) for m in matrices])]).astype(np.int32)
            storage = pa.ListArray.from_arrays(pa.array(clip_offsets), rows_array).cast(field_type.storage_type)
            columns.append(pa.ExtensionArray.from_storage(field_type, storage))
        elif isinstance(feature, List) and isinstance(feature.feature, Value) and feature.feature.dtype != "string":
            columns.append(_list_array(values, np.dtype(feature.feature.dtype)).cast(field_type))
        else:
            columns.append(pa.array(values, type=field_type))
    return Dataset(pa.Table.from_arrays(columns, schema=schema))


def validate_row(row: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the column when a row does not follow the clip schema."""
    missing = [c for c in CLIP_COLUMNS if c not in row]
    if missing:
        raise ValueError(f"row must have the columns {list(CLIP_COLUMNS)}, missing {missing}")
    if row["emotion"] not in EMOTIONS:
        raise ValueError(f"emotion must be one of {EMOTIONS}, got {row['emotion']!r}")
    if int(row["intensity"]) not in (1, 2, 3):
        raise ValueError(f"intensity must be 1, 2 or 3, got {row['intensity']!r}")
    blendshapes = np.asarray(row["blendshapes"])
    if blendshapes.ndim != 2 or blendshapes.shape[1] != NUM_BLENDSHAPES:
        raise ValueError(f"blendshapes must have shape [frames, 52], got {blendshapes.shape}")
    if np.asarray(row["audio"]).ndim != 1:
        raise ValueError(f"audio must be 1-D samples, got shape {np.asarray(row['audio']).shape}")
