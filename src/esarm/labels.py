"""One rule for condition labels <-> ids, used by the processor, the collators, streaming, training and the CLI.

- **emotion**: a name of :data:`~esarm.blendshapes.EMOTIONS` (any case) or an id 0..7 -> id 0..7;
- **intensity**: a level of :data:`~esarm.blendshapes.INTENSITIES` (1..3) -> id 0..2;
- **speaker**: ``None`` -> 0, the "unknown speaker"; a name of the model's known speakers (any case) -> 1 + its
  position; any other name -> 0 as well (held-out speakers are unknown by design, so a clip of a new speaker
  is animated with the unknown-speaker style instead of failing); an id 0..N -> that id.

Strings are names, numbers are ids. A string of digits that is not a name is read as the number it spells, for
all three labels alike: a command line or a CSV file hands every label over as text, so ``--speaker 2`` and an
intensity column ``"3"`` mean what they say. Booleans are rejected (``True`` is an ``int`` to Python, never a
label). An unknown emotion, an intensity outside 1..3 and an id out of range raise ``ValueError`` naming the
argument, the accepted values and the given one.

:func:`model_speakers` reads the known speakers of a saved model (from the processor saved beside it) and
:func:`dataset_speakers` the speakers a model trained on a corpus split will know.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from transformers.utils import cached_file

from .blendshapes import EMOTIONS, INTENSITIES

logger = logging.getLogger(__name__)

UNKNOWN_SPEAKER_ID = 0
PROCESSOR_CONFIG_FILE = "processor_config.json"

__all__ = [
    "UNKNOWN_SPEAKER_ID",
    "dataset_speakers",
    "emotion_to_id",
    "intensity_to_id",
    "model_speakers",
    "speaker_to_id",
]


def _as_number(label: Any) -> int | None:
    """The integer a label spells (an int, a numpy integer, a 0-d array or a digit string), else ``None``."""
    if hasattr(label, "ndim") and getattr(label, "ndim", None) == 0 and hasattr(label, "item"):
        label = label.item()
    if isinstance(label, bool):
        return None
    if isinstance(label, (int, np.integer)):
        return int(label)
    if isinstance(label, str) and label.strip().isdigit():
        return int(label.strip())
    return None


def _find_name(name: str, names: Sequence[str]) -> int | None:
    """Position of ``name`` in ``names``, ignoring case and surrounding white space; ``None`` when absent."""
    folded = name.strip().casefold()
    for index, candidate in enumerate(names):
        if candidate.casefold() == folded:
            return index
    return None


def emotion_to_id(emotion: str | int) -> int:
    """Id 0..7 of an emotion name of ``EMOTIONS`` (any case) or of an id."""
    if isinstance(emotion, str) and not emotion.strip().isdigit():
        index = _find_name(emotion, EMOTIONS)
    else:
        number = _as_number(emotion)
        index = number if number is not None and 0 <= number < len(EMOTIONS) else None
    if index is None:
        raise ValueError(f"emotion must be one of {list(EMOTIONS)} or an id in [0, {len(EMOTIONS)}), got {emotion!r}")
    return index


def intensity_to_id(intensity: str | int) -> int:
    """Id 0..2 of an intensity level 1..3."""
    level = _as_number(intensity)
    if level is None or level not in INTENSITIES:
        raise ValueError(f"intensity must be a level in {list(INTENSITIES)}, got {intensity!r}")
    return INTENSITIES.index(level)


def speaker_to_id(speaker: str | int | None, speakers: Sequence[str]) -> int:
    """Speaker id: 1 + position of a known name (any case), 0 (unknown speaker) for ``None`` and unknown names, or
    an id 0..N itself (N = ``len(speakers)``)."""
    speakers = list(speakers)
    if speaker is None:
        return UNKNOWN_SPEAKER_ID
    if isinstance(speaker, str):
        index = _find_name(speaker, speakers)
        if index is not None:
            return index + 1
        if not speaker.strip().isdigit():
            return UNKNOWN_SPEAKER_ID
    number = _as_number(speaker)
    if number is None or not 0 <= number <= len(speakers):
        raise ValueError(
            f"speaker must be one of the known speakers {speakers}, an id in [0, {len(speakers)}] "
            f"(0 = unknown speaker) or None, got {speaker!r}"
        )
    return number


def dataset_speakers(dataset) -> list[str]:
    """Sorted distinct speaker names of a corpus split: the known speakers of a model trained on it."""
    return sorted(set(dataset["speaker"]))


def model_speakers(name_or_path: str | os.PathLike | None) -> list[str]:
    """Known speakers of a saved model, read from the ``processor_config.json`` saved beside it (a local folder or
    a Hub repo). A model saved without a processor knows no speaker: every speaker is the unknown speaker."""
    if not name_or_path:
        return []
    path = cached_file(
        str(name_or_path),
        PROCESSOR_CONFIG_FILE,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )
    if path is None:
        logger.warning("%s has no %s; every speaker is the unknown speaker", name_or_path, PROCESSOR_CONFIG_FILE)
        return []
    with open(path, encoding="utf-8") as handle:
        speakers = json.load(handle).get("speakers") or []
    if not all(isinstance(name, str) for name in speakers):
        raise ValueError(f"speakers in {path} must be a list of names (str), got {speakers!r}")
    return list(speakers)
