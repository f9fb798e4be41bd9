"""The corpus schema (one row per clip) and a fast conversion of rows to a ``datasets.Dataset``.

Columns: ``id`` str, ``speaker`` str, ``emotion`` str (``EMOTIONS``), ``intensity`` int 1..3, ``sentence`` str,
``audio`` (16 kHz mono at ``sampling_rate``, see below), ``sampling_rate`` int, ``blendshapes``
``Array2D((None, 52), float32)`` in ARKit order at ``fps``, ``fps`` float.

``audio`` is a struct ``{"bytes": FLAC file, "path": None}``: the storage layout of ``datasets.Audio`` (so
``cast_column("audio", datasets.Audio())`` works where torchcodec is installed), but declared as a plain struct
because ``datasets.Audio`` needs torchcodec even to encode. :func:`decode_audio_value` turns it back into float32
samples, and also accepts the float32 lists of corpora written before the switch. On the synthetic speech,
16-bit FLAC takes 2.8x less room than float32 lists in a ``save_to_disk`` folder and 1.5x less than in (compressed)
parquet, and decodes as fast as the lists convert to arrays: ~4 ms per 1.9 s clip (``benchmarks/data_loading.py``).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import soundfile

from ..audio import resample
from ..blendshapes import EMOTIONS, NUM_BLENDSHAPES

logger = logging.getLogger(__name__)

SAMPLING_RATE = 16000
CLIP_COLUMNS: tuple[str, ...] = (
    "id", "speaker", "emotion", "intensity", "sentence", "audio", "sampling_rate", "blendshapes", "fps"
)  # fmt: skip


def clip_features(extra: dict[str, Any] | None = None):
    """``datasets.Features`` of the clip schema, plus ``extra`` columns (name -> feature)."""
    from datasets import Array2D, Features, Value

    columns = {
        "id": Value("string"),
        "speaker": Value("string"),
        "emotion": Value("string"),
        "intensity": Value("int32"),
        "sentence": Value("string"),
        "audio": audio_feature(),
        "sampling_rate": Value("int32"),
        "blendshapes": Array2D((None, NUM_BLENDSHAPES), "float32"),
        "fps": Value("float32"),
    }
    return Features({**columns, **(extra or {})})


def audio_feature() -> dict[str, Any]:
    """The ``audio`` column's feature: ``{"bytes": binary, "path": string}`` (``datasets.Audio``'s storage)."""
    from datasets import Value

    return {"bytes": Value("binary"), "path": Value("string")}


# FLAC stores integers: 16 bits keep about 96 dB of dynamic range (error <= 1/32768), as much as the sources
# have (MEAD's AAC tracks, eSpeak NG's 16-bit output).
FLAC_SUBTYPE = "PCM_16"


def encode_audio_value(samples: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> dict[str, Any]:
    """A value of the ``audio`` column: mono float samples in [-1, 1] as 16-bit FLAC bytes (``path`` None).

    Samples outside [-1, 1] are clipped (16-bit PCM cannot hold them), with a warning that counts them.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"samples must be 1-D mono audio, got shape {samples.shape}")
    outside = int(np.count_nonzero(np.abs(samples) > 1.0))
    if outside:
        logger.warning("clipping %d of %d samples outside [-1, 1] (peak %.3f) to store them as FLAC", outside,
                       len(samples), float(np.abs(samples).max()))  # fmt: skip
        samples = np.clip(samples, -1.0, 1.0)
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, int(sampling_rate), format="FLAC", subtype=FLAC_SUBTYPE)
    return {"bytes": buffer.getvalue(), "path": None}


def decode_audio_value(value: Any, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """Float32 mono samples at ``sampling_rate`` from a value of an ``audio`` column, whatever its layout.

    Accepted: ``{"bytes": ..., "path": ...}`` (this package's FLAC, or any ``datasets.Audio(decode=False)`` value:
    the bytes, else the file at ``path``, are read with soundfile: WAV, FLAC, OGG, MP3), raw encoded ``bytes``,
    ``{"array": ..., "sampling_rate": ...}`` (a decoded ``datasets.Audio`` value), and float samples (a list or an
    array: corpora written before the FLAC column). Encoded audio at another rate is resampled; multi-channel
    audio is averaged to mono. Raw samples carry no rate: they are taken to be at ``sampling_rate``.
    """
    if isinstance(value, Mapping):
        if value.get("bytes") is not None:
            return _decode_encoded(value["bytes"], sampling_rate)
        if value.get("path"):
            return _decode_encoded(value["path"], sampling_rate)
        if value.get("array") is not None:
            samples = np.asarray(value["array"], dtype=np.float32)
            samples = samples.mean(axis=0) if samples.ndim == 2 else samples
            rate = value.get("sampling_rate") or sampling_rate
            return resample(samples, rate, sampling_rate)
        raise ValueError(f"audio value must hold 'bytes', 'path' or 'array', got the keys {sorted(value)}")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _decode_encoded(bytes(value), sampling_rate)
    samples = np.asarray(value, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"audio value must be 1-D float samples or encoded audio, got shape {samples.shape}")
    return samples


def _decode_encoded(source: bytes | str, sampling_rate: int) -> np.ndarray:
    samples, rate = soundfile.read(io.BytesIO(source) if isinstance(source, bytes) else source, dtype="float32")
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float32)
    return resample(samples, rate, sampling_rate)


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
        elif name == "audio" and isinstance(feature, dict):
            # array rows are encoded here so that every writer stores the same FLAC
            values = [v if isinstance(v, Mapping) else encode_audio_value(v, row.get("sampling_rate", SAMPLING_RATE))
                      for v, row in zip(values, rows)]  # fmt: skip
            columns.append(pa.array(values, type=field_type))
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
    audio = decode_audio_value(row["audio"])
    if len(audio) == 0:
        raise ValueError("audio must hold at least one sample, got none")
