"""Done markers and resuming.

Every stage writes ``esarm_stage_done.json`` into its output folder as its very last, atomic write; a folder
holding that marker is complete and :func:`esarm.training.runner.run_pipeline` skips it. A folder without it but
with ``checkpoint-*`` sub-folders resumes from the last one.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from ..utils import atomic_write_json

logger = logging.getLogger(__name__)

DONE_MARKER = "esarm_stage_done.json"
METRICS_FILE = "metrics.json"


def write_done_marker(output_dir: str | os.PathLike, metrics: dict[str, Any] | None = None) -> Path:
    """Mark ``output_dir`` complete: writes ``metrics.json`` and then, last, ``esarm_stage_done.json``."""
    metrics = dict(metrics or {})
    atomic_write_json(Path(output_dir) / METRICS_FILE, metrics)
    return atomic_write_json(
        Path(output_dir) / DONE_MARKER, {"finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "metrics": metrics}
    )


def read_done_marker(output_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The metrics stored in a finished stage's marker, or ``None`` when the stage is not complete."""
    path = Path(output_dir) / DONE_MARKER
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text()).get("metrics", {})
    except (OSError, json.JSONDecodeError):
        logger.warning("Ignoring unreadable done marker %s", path)
        return None


def is_stage_done(output_dir: str | os.PathLike) -> bool:
    return read_done_marker(output_dir) is not None


def last_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The ``checkpoint-N`` folder with the largest N under ``output_dir`` (complete ones only), or ``None``."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    candidates = []
    for child in output_dir.iterdir():
        if child.is_dir() and child.name.startswith("checkpoint-") and child.name[11:].isdigit():
            # a checkpoint is usable once the Trainer state has been written (it is written last)
            if (child / "trainer_state.json").is_file():
                candidates.append((int(child.name[11:]), child))
    return str(max(candidates)[1]) if candidates else None


def resolve_resume_checkpoint(config: Any) -> str | None:
    """Turn ``config.resume_from_checkpoint`` into a path: ``"auto"``/``"last"``/``"true"`` -> last checkpoint in
    ``config.output_dir`` (``None`` when there is none), a path -> that path, ``None``/``"false"`` -> ``None``."""
    value = getattr(config, "resume_from_checkpoint", None)
    if value is None or (isinstance(value, bool) and not value):
        return None
    if isinstance(value, bool) or str(value).lower() in ("auto", "last", "true"):
        found = last_checkpoint(config.output_dir)
        if found:
            logger.info("Resuming from %s", found)
        return found
    if str(value).lower() == "false":
        return None
    if not Path(value).is_dir():
        raise ValueError(f"resume_from_checkpoint must be 'auto' or an existing checkpoint folder, got {value!r}")
    return str(value)
