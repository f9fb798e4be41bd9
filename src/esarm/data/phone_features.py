"""Phone features (:mod:`esarm.phonetic`) cached in a dataset, so that training decodes each clip once.

PocketSphinx decodes at about a tenth of real time on one core, more than the rest of a small STA training step, so
:func:`add_phone_features` computes them once with ``datasets.map``: the column ``phone_features``
(``Array2D((None, NUM_PHONE_FEATURES), float32)``, 100 frames per second of the clip's own audio) is stored in the
dataset's cache files, and a second call with the same dataset and function loads it from there.

The collator (:class:`esarm.data.collators.STACollator`) resamples the cached frames with the audio when
augmentation changes the speed, and crops them with the audio; the other augmentations (noise, rooms, codecs)
change the audio but not its phones, so the cached features are those of the clean clip.
"""

from __future__ import annotations

from typing import Any

from ..phonetic import FEATURES_VERSION, NUM_PHONE_FEATURES, decoder_settings, phone_features
from .schema import SAMPLING_RATE, decode_audio_value

__all__ = ["PHONE_FEATURES_COLUMN", "add_phone_features"]

PHONE_FEATURES_COLUMN = "phone_features"
NUM_PROC = 2
"""Processes of the map: the two cores the small preset is made for. ``datasets`` names the cache files by the
process count, so a fixed count lets every run (and a precomputation) find the same cache."""


def _phone_feature_row(row: dict[str, Any], settings: dict[str, float]) -> dict[str, Any]:
    rate = int(row.get("sampling_rate") or SAMPLING_RATE)
    if rate != SAMPLING_RATE:
        raise ValueError(f"audio must be sampled at {SAMPLING_RATE} Hz, got sampling_rate={rate}")
    return {PHONE_FEATURES_COLUMN: phone_features(decode_audio_value(row["audio"]), settings)}


def add_phone_features(dataset, settings: dict[str, Any] | None = None, num_proc: int = NUM_PROC):
    """``dataset`` (a ``datasets.Dataset`` with an ``audio`` column) with the ``phone_features`` column added (or
    kept, when it is already there), decoded with the decoder ``settings`` (checked by
    :func:`esarm.phonetic.decoder_settings`; `None`: :data:`esarm.phonetic.DECODER_SETTINGS`); cached by
    ``datasets`` (its fingerprint: the dataset, the feature version and the settings)."""
    from datasets import Array2D
    from datasets.fingerprint import Hasher

    settings = decoder_settings(settings)
    if PHONE_FEATURES_COLUMN in dataset.column_names:
        return dataset
    features = dataset.features.copy()
    features[PHONE_FEATURES_COLUMN] = Array2D((None, NUM_PHONE_FEATURES), "float32")
    # datasets hashes an imported function by its name, not its code: the fingerprint names the feature version and
    # the decoder settings, so that changed features are recomputed rather than read from an old cache
    fingerprint = Hasher.hash([dataset._fingerprint, FEATURES_VERSION, settings, num_proc])
    return dataset.map(_phone_feature_row, fn_kwargs={"settings": settings}, features=features, num_proc=num_proc,
                       desc="phone features", new_fingerprint=fingerprint)  # fmt: skip
