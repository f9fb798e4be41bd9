"""Arguments of the training stages: the shared ``TrainingArguments`` defaults, command-line and config-file
parsing, and model configs built from a preset plus overrides."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import HfArgumentParser, TrainingArguments

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ESARMTrainingArguments(TrainingArguments):
    """``TrainingArguments`` with the defaults every esarm stage that trains (motion prior, STA, reward model, RL) shares: no
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
        if (self.bf16 or self.bf16_full_eval) and not torch.accelerator.is_available():
            # With no accelerator the Trainer trains on the CPU in any case, and CPU bf16 (autocast) works, but
            # transformers accepts bf16 there only with use_cpu set ("Your setup doesn't support bf16/gpu")
            self.use_cpu = True
        super().__post_init__()
        if self.dataloader_pin_memory and not torch.accelerator.is_available():
            # pinned memory only speeds up copies to an accelerator; without one torch warns on every epoch
            self.dataloader_pin_memory = False


def parse_stage_args(dataclass_type: type, section: str | None = None, args: Sequence[str] | None = None):
    """Parse one stage's config dataclass from the command line.

    Accepted forms: ``script.py --field value ...``, ``script.py config.yaml [--field value ...]`` and
    ``script.py --config config.yaml [...]``. The yaml (or json) may be flat (this stage's fields) or a pipeline
    config with one section per stage, in which case ``section`` is read. Command-line flags override the file.
    """
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
    try:
        values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text) or {}
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        # one line: yaml's message spans several, with the position in its last line
        problem = " ".join(str(error).split())
        raise ValueError(
            f"config file {str(path)!r} must be valid {path.suffix[1:] or 'yaml'}, got: {problem}"
        ) from None
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


def config_to_dict(config: Any) -> dict[str, Any]:
    """A json-able dict of a (TrainingArguments) dataclass, for logs and done markers."""
    if hasattr(config, "to_dict"):
        return config.to_dict()
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
