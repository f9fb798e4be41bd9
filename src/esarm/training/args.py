"""The shared base of the training stages' configs and their parsing.

:class:`ESARMTrainingArguments` holds what every stage shares (the corpus and its splits, the model preset and
overrides, the face rig, the seed, the evaluation batch size) on top of ``transformers.TrainingArguments``; each
stage's ``<stage>_config.py`` adds only its own fields. One validation style for all of them: typed fields,
``Literal[...]`` for a closed set of choices (also the command line's ``choices``) and ``Annotated[type,
Interval(...)]`` / ``Annotated[list[str], OneOf(...)]`` for ranges and list members, all checked by
:func:`check_fields` on construction; a stage's ``__post_init__`` keeps only the rules that span fields.

Also here: command-line and config-file parsing (:func:`parse_stage_args`, with renamed keys accepted for one
release, :func:`rename_deprecated_keys`) and model configs built from a preset plus overrides.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import typing
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import torch
import yaml
from transformers import HfArgumentParser, TrainingArguments

logger = logging.getLogger(__name__)

__all__ = ["ESARMTrainingArguments", "Interval", "OneOf", "build_model_config", "check_fields", "config_to_dict",
           "load_config_file", "parse_overrides", "parse_stage_args", "rename_deprecated_keys", "renamed_to"]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Interval:
    """The range of a numeric field (``Annotated[int, Interval(min=1)]``), or of every item of a list field
    (``non_empty``: the list may not be empty); ``None`` values are not checked."""

    min: float | None = None
    max: float | None = None
    exclude_min: bool = False
    exclude_max: bool = False
    non_empty: bool = False

    def check(self, name: str, value: Any) -> None:
        if isinstance(value, (list, tuple)):
            if self.non_empty and not value:
                raise ValueError(f"{name} must be a non-empty list of {self.describe()}s, got {value!r}")
            for item in value:
                self._check_one(name, item, value)
            return
        self._check_one(name, value, value)

    def _check_one(self, name: str, value: Any, given: Any) -> None:
        low = self.min is None or (value > self.min if self.exclude_min else value >= self.min)
        high = self.max is None or (value < self.max if self.exclude_max else value <= self.max)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low and high):
            what = f"a list of {self.describe()}s" if isinstance(given, (list, tuple)) else self.describe()
            raise ValueError(f"{name} must be {what}, got {given!r}")

    def describe(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f"{'>' if self.exclude_min else '>='} {self.min:g}")
        if self.max is not None:
            parts.append(f"{'<' if self.exclude_max else '<='} {self.max:g}")
        return "a number " + " and ".join(parts)


@dataclasses.dataclass(frozen=True)
class OneOf:
    """The allowed members of a list field (``Annotated[list[str], OneOf(("a", "b"))]``)."""

    choices: tuple[Any, ...]
    non_empty: bool = True

    def check(self, name: str, value: Any) -> None:
        values = list(value) if isinstance(value, (list, tuple)) else None
        if values is None or (self.non_empty and not values) or any(v not in self.choices for v in values):
            raise ValueError(f"{name} must be a {'non-empty ' if self.non_empty else ''}list of "
                             f"{list(self.choices)}, got {value!r}")  # fmt: skip


def check_fields(config: Any, skip: Sequence[str] = ()) -> None:
    """Check every field of a dataclass against its annotation: ``Literal`` choices, and the ``Interval`` /
    ``OneOf`` rules of ``Annotated`` fields. ``None`` passes where the annotation allows it. Raises ``ValueError``
    naming the field, what was expected and what was given."""
    hints = typing.get_type_hints(type(config), include_extras=True)
    for field in dataclasses.fields(config):
        if field.name in skip or field.name not in hints:
            continue
        value = getattr(config, field.name)
        hint = hints[field.name]
        rules = ()
        if typing.get_origin(hint) is Annotated:
            hint, *rules = typing.get_args(hint)
        if value is None:
            continue
        for choices in _literal_choices(hint):
            if isinstance(value, bool) != any(isinstance(c, bool) for c in choices) or value not in choices:
                raise ValueError(f"{field.name} must be one of {list(choices)}, got {value!r}")
        for rule in rules:
            rule.check(field.name, value)


def _literal_choices(hint: Any) -> list[tuple[Any, ...]]:
    if typing.get_origin(hint) is Literal:
        return [typing.get_args(hint)]
    return [typing.get_args(a) for a in typing.get_args(hint) if typing.get_origin(a) is Literal]


def rename_deprecated_keys(config_class: type, values: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """A copy of config ``values`` with the keys that ``config_class.renamed_keys`` maps renamed (old -> new name,
    or old -> a function of the old value giving the new fields), each with a ``FutureWarning``. Renamed keys are
    accepted for one release."""
    renamed = getattr(config_class, "renamed_keys", {})
    out = dict(values)
    for old, new in renamed.items():
        if old in out:
            warnings.warn(
                f"{where or config_class.__name__}: {old!r} is deprecated and will be removed in the next release; "
                f"use {_new_names(new)}", FutureWarning, stacklevel=3,
            )  # fmt: skip
            value = out.pop(old)
            for key, new_value in (new(value) if callable(new) else {new: value}).items():
                if isinstance(new_value, dict) and isinstance(out.get(key), dict):
                    out[key] = {**new_value, **out[key]}  # old keys of one nested mapping (lipsync_* -> lipsync)
                elif isinstance(new_value, dict) and out.get(key) is True:
                    out[key] = new_value
                else:
                    out.setdefault(key, new_value)
    return out


def renamed_to(replacement: str, convert: Callable[[Any], dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
    """A ``renamed_keys`` entry for an old key whose value becomes other fields: ``convert(old value)`` gives them,
    ``replacement`` names them in the warning."""
    convert.replacement = replacement
    return convert


def _new_names(new: Any) -> str:
    return getattr(new, "replacement", None) or repr(new)


def _rename_deprecated_flags(config_class: type, args: list[str]) -> list[str]:
    renamed = getattr(config_class, "renamed_keys", {})
    out = []
    for arg in args:
        flag, sep, value = arg.partition("=")
        new = renamed.get(flag[2:].replace("-", "_")) if flag.startswith("--") else None
        if isinstance(new, str):
            warnings.warn(f"{flag} is deprecated and will be removed in the next release; use --{new}",
                          FutureWarning, stacklevel=3)  # fmt: skip
            arg = f"--{new}{sep}{value}"
        out.append(arg)
    return out


@dataclasses.dataclass
class ESARMTrainingArguments(TrainingArguments):
    """The base of every stage's config: ``TrainingArguments`` plus the fields all stages share, with the
    defaults every esarm stage uses (no wandb/tensorboard, keep the dataset's columns (the collators select them),
    log every 10 steps, keep one checkpoint saved every 200 steps). Each stage's ``<stage>_config.py`` subclasses
    it and adds only its own fields; :func:`check_fields` checks them all on construction.

    ``renamed_keys`` (a class attribute) maps the deprecated names of a stage's fields to the current ones: config
    files, command-line flags and the pipeline's sections accept the old names for one release, with a warning."""

    renamed_keys: ClassVar[dict[str, str]] = {}

    dataset_name_or_path: str | None = dataclasses.field(
        default=None, metadata={"help": "The stage's dataset: a corpus folder written by `save_to_disk`, a "
                                "prepared folder or a Hub id (the reward stage: the demonstrations of stage 3)."},
    )  # fmt: skip
    train_split: str = dataclasses.field(default="train", metadata={"help": "Split to train (or roll out) on."})
    eval_split: str | None = dataclasses.field(
        default="validation", metadata={"help": "Held-out split of the stage's final evaluation (None: skip)."}
    )
    model_config: str = dataclasses.field(
        default="tiny",
        metadata={"help": "Preset name (tiny, base) or config folder / json of the model the stage builds (motion "
                  "prior, STA, reward model; unused by the stages that load a trained model)."},
    )  # fmt: skip
    model_overrides: str | None = dataclasses.field(
        default=None, metadata={"help": "Json object (or yaml mapping) of model config fields over the preset."}
    )
    rig_path: str | None = dataclasses.field(
        default=None, metadata={"help": "Face rig .npz for LVE / EVE (default: $ESARM_RIG; none: skipped)."}
    )
    seed: int = dataclasses.field(default=0, metadata={"help": "Seed of the run (the pipeline passes its own)."})
    per_device_eval_batch_size: Annotated[int, Interval(min=1)] = dataclasses.field(
        default=8, metadata={"help": "Clips per forward pass in the stage's evaluation (and generation)."}
    )
    logging_steps: float = dataclasses.field(default=10, metadata={"help": "Log every N steps."})
    save_steps: float = dataclasses.field(default=200, metadata={"help": "Checkpoint every N steps."})
    save_total_limit: int | None = dataclasses.field(default=1, metadata={"help": "Checkpoints kept."})
    report_to: None | str | list[str] = dataclasses.field(default="none", metadata={"help": "Experiment trackers."})
    remove_unused_columns: bool = dataclasses.field(
        default=False, metadata={"help": "Keep dataset columns (the collator selects what it needs)."}
    )

    def __post_init__(self):
        check_fields(self, skip=_TRAINING_ARGUMENT_FIELDS)
        if (self.bf16 or self.bf16_full_eval) and not torch.accelerator.is_available():
            # With no accelerator the Trainer trains on the CPU in any case, and CPU bf16 (autocast) works, but
            # transformers accepts bf16 there only with use_cpu set ("Your setup doesn't support bf16/gpu")
            self.use_cpu = True
        super().__post_init__()
        if self.dataloader_pin_memory and not torch.accelerator.is_available():
            # pinned memory only speeds up copies to an accelerator; without one torch warns on every epoch
            self.dataloader_pin_memory = False


# transformers checks its own fields; check_fields checks the ones esarm adds
_TRAINING_ARGUMENT_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainingArguments)) - {
    "per_device_eval_batch_size"
}


def parse_stage_args(dataclass_type: type, section: str | None = None, args: Sequence[str] | None = None):
    """Parse one stage's config dataclass from the command line.

    Accepted forms: ``script.py --field value ...``, ``script.py config.yaml [--field value ...]`` and
    ``script.py --config config.yaml [...]``. The yaml (or json) may be flat (this stage's fields) or a pipeline
    config with one section per stage, in which case ``section`` is read. Command-line flags override the file.
    """
    args = _rename_deprecated_flags(dataclass_type, list(sys.argv[1:] if args is None else args))
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
        values = rename_deprecated_keys(dataclass_type, values, where=f"{config_file} ({dataclass_type.__name__})")
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
