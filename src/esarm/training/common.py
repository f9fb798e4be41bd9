"""Machinery shared by the training stages: argument parsing, done markers, resume, label ids, datasets.

Every stage writes ``esarm_stage_done.json`` into its output folder as its very last, atomic write; a folder
holding that marker is complete and :func:`esarm.training.pipeline.run_pipeline` skips it. A folder without
it but with ``checkpoint-*`` sub-folders resumes from the last one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainingArguments

from ..blendshapes import EMOTIONS, INTENSITIES
from ..data.loading import load_split  # noqa: F401  (the stages' one way into a dataset)
from ..rig import resolve_rig
from ..utils import atomic_write_text

logger = logging.getLogger(__name__)

DONE_MARKER = "esarm_stage_done.json"
METRICS_FILE = "metrics.json"


@dataclasses.dataclass
class ESARMTrainingArguments(TrainingArguments):
    """``TrainingArguments`` with the defaults the esarm stages share (motion prior, STA, reward model): no
    wandb/tensorboard, keep the dataset's columns (the collators select them), log every 10 steps, keep one
    checkpoint saved every 200 steps. Each stage's config subclasses it and adds its own fields."""

    logging_steps: float = dataclasses.field(default=10, metadata={"help": "Log every N steps."})
    save_steps: float = dataclasses.field(default=200, metadata={"help": "Checkpoint every N steps."})
    save_total_limit: int | None = dataclasses.field(default=1, metadata={"help": "Checkpoints kept."})
    report_to: None | str | list[str] = dataclasses.field(default="none", metadata={"help": "Experiment trackers."})
    remove_unused_columns: bool = dataclasses.field(
        default=False, metadata={"help": "Keep dataset columns (the collator selects what it needs)."}
    )

    def __post_init__(self):
        super().__post_init__()
        import torch

        if self.dataloader_pin_memory and not torch.accelerator.is_available():
            # pinned memory only speeds up copies to an accelerator; without one torch warns on every epoch
            self.dataloader_pin_memory = False


# ---------------------------------------------------------------------------------------------------------------
# files


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()  # 0-d torch tensor
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` through a temporary file in the same folder and ``os.replace``."""
    return atomic_write_text(path, json.dumps(_to_jsonable(obj), indent=2, sort_keys=True) + "\n")


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


# ---------------------------------------------------------------------------------------------------------------
# command line


def parse_stage_args(dataclass_type: type, section: str | None = None, args: Sequence[str] | None = None):
    """Parse one stage's config dataclass from the command line.

    Accepted forms: ``script.py --field value ...``, ``script.py config.yaml [--field value ...]`` and
    ``script.py --config config.yaml [...]``. The yaml (or json) may be flat (this stage's fields) or a pipeline
    config with one section per stage, in which case ``section`` is read. Command-line flags override the file.
    """
    from transformers import HfArgumentParser

    args = list(sys.argv[1:] if args is None else args)
    config_file = None
    if args and args[0].endswith((".yaml", ".yml", ".json")) and not args[0].startswith("-"):
        config_file = args.pop(0)
    elif "--config" in args:
        i = args.index("--config")
        config_file = args[i + 1]
        del args[i : i + 2]
    parser = HfArgumentParser(dataclass_type)
    if config_file is not None:
        values = load_config_file(config_file)
        if section is not None and isinstance(values.get(section), dict):
            values = values[section]
        known = {f.name for f in dataclasses.fields(dataclass_type)}
        unknown = sorted(set(values) - known)
        if unknown:
            logger.warning("Ignoring keys of %s not in %s: %s", config_file, dataclass_type.__name__, unknown)
        parser.set_defaults(**{k: _cli_default(v) for k, v in values.items() if k in known})
    (config,) = parser.parse_args_into_dataclasses(args=args)
    return config


def _cli_default(value: Any) -> Any:
    # argparse applies `type` to string defaults only; dicts (e.g. model_overrides) travel as json text
    return json.dumps(value) if isinstance(value, dict) else value


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a yaml or json config file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file must be an existing .yaml/.json file, got {str(path)!r}")
    text = path.read_text()
    if path.suffix == ".json":
        return json.loads(text)
    import yaml

    values = yaml.safe_load(text) or {}
    if not isinstance(values, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping, got {type(values).__name__}")
    return values


def parse_overrides(value: dict | str | None) -> dict[str, Any]:
    """Model-config overrides given as a dict or as json text (command line)."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return dict(value)
    parsed = json.loads(value)
    if not isinstance(parsed, dict):
        raise ValueError(f"model_overrides must be a json object, got {value!r}")
    return parsed


def build_model_config(config_class: type, preset: str | None, overrides: dict[str, Any] | str | None):
    """A model config from a preset name (``tiny``/``base``/...), a ``save_pretrained`` folder or a json file,
    with ``overrides`` applied (nested dicts update nested sub-configs' dicts)."""
    overrides = parse_overrides(overrides)
    preset = preset or "tiny"
    if Path(preset).exists():
        base = config_class.from_pretrained(preset).to_dict()
    elif hasattr(config_class, preset) and callable(getattr(config_class, preset)):
        base = getattr(config_class, preset)().to_dict()
    else:
        raise ValueError(f"model_config must be a preset name or a config folder/file, got {preset!r}")
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    for key in ("transformers_version", "architectures"):
        base.pop(key, None)
    return config_class(**base)


# ---------------------------------------------------------------------------------------------------------------
# labels and datasets


def emotion_to_id(emotion: str | int) -> int:
    if isinstance(emotion, (int, np.integer)):
        if not 0 <= int(emotion) < len(EMOTIONS):
            raise ValueError(f"emotion id must be in [0, {len(EMOTIONS)}), got {emotion}")
        return int(emotion)
    if emotion not in EMOTIONS:
        raise ValueError(f"emotion must be one of {list(EMOTIONS)}, got {emotion!r}")
    return EMOTIONS.index(emotion)


def intensity_to_id(intensity: int) -> int:
    if int(intensity) not in INTENSITIES:
        raise ValueError(f"intensity must be one of {list(INTENSITIES)}, got {intensity!r}")
    return int(intensity) - 1


def speaker_to_id(speaker: str, speakers: Sequence[str]) -> int:
    """1 + position in the known speaker list; 0 ("unknown speaker") for anyone else."""
    try:
        return 1 + list(speakers).index(speaker)
    except ValueError:
        return 0


def speakers_of(dataset) -> list[str]:
    """Sorted distinct speaker names of a dataset (the known speakers of a model trained on it)."""
    return sorted(set(dataset["speaker"]))


def is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def load_rig(rig_path: str | os.PathLike | None):
    """The face rig for vertex metrics (:func:`esarm.rig.resolve_rig`): ``rig_path``, else ``$ESARM_RIG``, else a
    converted rig in the user cache, else the rig embedded in esarm."""
    return resolve_rig(rig_path)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A json-able dict of a (TrainingArguments) dataclass, for logs and done markers."""
    if hasattr(config, "to_dict"):
        return config.to_dict()
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


# ---------------------------------------------------------------------------------------------------------------
# metrics kept by the Trainer subclasses between two log calls (TRL's `_metrics` pattern)


class MetricStore:
    """Running per-mode ("train"/"eval") metric sums, averaged over steps and over processes at log time."""

    def __init__(self):
        self._values: dict[str, dict[str, list[float]]] = {"train": {}, "eval": {}}

    def add(self, mode: str, name: str, value) -> None:
        if hasattr(value, "detach"):
            value = value.detach().float().mean().item()
        self._values[mode].setdefault(name, []).append(float(value))

    def pop(self, mode: str, accelerator=None) -> dict[str, float]:
        """Averages since the last pop; with an ``accelerator`` the per-process means are averaged over
        processes (every process must call this at the same point, as the Trainer's ``log`` does)."""
        import torch

        values = self._values[mode]
        self._values[mode] = {}
        if not values:
            return {}
        names = sorted(values)
        means = torch.tensor([sum(values[n]) / len(values[n]) for n in names], dtype=torch.float64)
        if accelerator is not None and accelerator.num_processes > 1:
            means = accelerator.reduce(means.to(accelerator.device), reduction="mean").cpu()
        return {n: float(v) for n, v in zip(names, means)}


def log_with_metrics(trainer, logs: dict[str, float]) -> dict[str, float]:
    """Add the trainer's stored metrics to ``logs`` ("eval_" prefix in evaluation), as TRL trainers do."""
    mode = "eval" if any(k.startswith("eval_") for k in logs) else "train"
    metrics = trainer._metric_store.pop(mode, trainer.accelerator)
    if mode == "eval":
        metrics = {f"eval_{k}": v for k, v in metrics.items()}
    return {**logs, **metrics}


def vertex_errors(predicted: np.ndarray, target: np.ndarray, rig) -> dict[str, float]:
    """Lip and eye-forehead vertex errors (mm) of one clip ``[T, 52]`` against its ground truth ``[T, 52]``:
    per frame the maximum L2 distance over the region's vertices, averaged over frames (LVE / EVE)."""
    n = min(len(predicted), len(target))
    from ..evaluation.metrics import eve, lve

    return {"lve": float(lve(predicted[:n], target[:n], rig)), "eve": float(eve(predicted[:n], target[:n], rig))}
