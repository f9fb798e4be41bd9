"""The whole ESARM training pipeline: corpus -> 5 stages -> evaluation -> results table.

``run_pipeline(config, output_dir)`` reads one config (yaml path or dict) with a section per stage::

    seed: 0
    num_threads: null           # torch CPU threads (1 on a shared machine; null: torch's default)
    rig_path: null              # face rig for LVE / EVE (default: $ESARM_RIG)
    corpus: {preset: tiny, ...} # SyntheticCorpusConfig preset + fields, or {dataset_name_or_path: prepared/mead}
    motion_prior: {...}         # ESARMMotionPriorTrainingConfig fields
    sta: {...}                  # ESARMSTATrainingConfig fields
    demos: {...}                # ESARMDemoTrainingConfig fields
    reward: {...}               # ESARMRewardTrainingConfig fields
    rl: {...}                   # ESARMRLTrainingConfig fields
    evaluation: {...}           # ESARMEvaluationConfig fields (esarm.evaluation.run)

Each stage writes into ``output_dir/<stage>``; the ``*_name_or_path`` fields that point at an earlier stage's
folder (and ``dataset_name_or_path``, ``rig_path``) are filled in here unless the section sets them.

Before the first stage, everything the last one needs is checked (:func:`check_pipeline_config`: sections, keys
and corpus preset; the face rig resolves; ``output_dir`` is writable), so a typo fails in a second, not after an
hour of training. A stage whose folder holds the done marker is skipped (its metrics are read back) if its inputs
are unchanged: the marker stores a fingerprint of the stage's config section, the seed, the done marker of the
stage before it and, for the evaluation, the face rig (:func:`stage_fingerprint`); a changed fingerprint reruns the
stage and so every stage after it. An interrupted Trainer stage resumes from its last checkpoint when its inputs
are the ones it started with. Every Trainer stage shows one progress line (steps, ETA, loss) and every stage ends
with a one-line summary in the log.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import transformers.trainer
import yaml
from accelerate import PartialState
from transformers.trainer_callback import ProgressCallback

from ..data import SyntheticCorpusConfig, build_synthetic_corpus
from ..data.loading import load_splits
from ..data.synthetic import CORPUS_PRESETS
from ..evaluation.run import ESARMEvaluationConfig, evaluate_pipeline
from ..rig import FaceRig, resolve_rig
from ..utils import atomic_write, atomic_write_json, check_field_types, check_writable_folder, to_jsonable
from .args import load_config_file, rename_deprecated_keys
from .checkpoints import DONE_MARKER, read_done_inputs, read_done_marker, write_done_marker
from .demos_config import ESARMDemoTrainingConfig
from .demos_trainer import collect_demos
from .iterated_rl import train_iterated_rl
from .motion_prior_config import ESARMMotionPriorTrainingConfig
from .motion_prior_trainer import train_motion_prior
from .reward_config import ESARMRewardTrainingConfig
from .reward_trainer import train_reward_model
from .rl_config import ESARMRLTrainingConfig
from .rl_trainer import train_rl
from .sta_config import ESARMSTATrainingConfig
from .sta_trainer import train_sta

logger = logging.getLogger(__name__)

STAGES = ("corpus", "motion_prior", "sta", "demos", "reward", "rl", "evaluation")
STAGE_DIRS = {
    "corpus": "corpus",
    "motion_prior": "motion_prior",
    "sta": "sta",
    "demos": "demos",
    "reward": "reward_model",
    "rl": "rl",
    "evaluation": "evaluation",
}
TOP_LEVEL_KEYS = ("seed", "rig_path", "num_threads")
STAGE_CONFIGS = {
    "motion_prior": ESARMMotionPriorTrainingConfig,
    "sta": ESARMSTATrainingConfig,
    "demos": ESARMDemoTrainingConfig,
    "reward": ESARMRewardTrainingConfig,
    "rl": ESARMRLTrainingConfig,
    "evaluation": ESARMEvaluationConfig,
}
STARTED_MARKER = "esarm_stage_inputs.json"
SUMMARY_KEYS = {
    "corpus": ("num_train", "num_validation", "num_test"),
    "motion_prior": ("eval_reconstruction_mae", "eval_codebook_usage", "eval_reconstruction_lve"),
    "sta": ("train_loss", "eval_loss", "eval_token_accuracy", "eval_emotion_accuracy"),
    "demos": ("train_num_rollouts", "train_lve_eps_0.02", "train_lve_eps_1"),
    "reward": ("eval_accuracy", "eval_gt_beats_eps_0.02"),
    "rl": ("reward_before", "reward_after"),
    "evaluation": ("sta_lve", "mean_baseline_lve", "condition_baseline_lve", "sta_mae", "condition_baseline_mae"),
}


def _summary(name: str, metrics: dict[str, Any]) -> str:
    parts = []
    for key in SUMMARY_KEYS.get(name, ()):
        value = metrics.get(key)
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        elif value is not None:
            parts.append(f"{key}={value}")
    return ", ".join(parts)


def rename_deprecated_sections(values: dict[str, Any]) -> dict[str, Any]:
    """A copy of a pipeline config whose stage sections use the current field names: keys a stage's config renamed
    (its ``renamed_keys``) are renamed with a ``FutureWarning`` (:func:`~esarm.training.args.rename_deprecated_keys`)."""
    values = dict(values)
    for stage, config_class in STAGE_CONFIGS.items():
        if isinstance(values.get(stage), dict):
            values[stage] = rename_deprecated_keys(config_class, values[stage], where=f"config section {stage!r}")
    return values


def check_pipeline_config(values: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first problem of a pipeline config: an unknown section or key, a section
    that is not a mapping, an unknown ``corpus.preset``, a bad value in the evaluation section. (The other stages'
    field values are checked by each stage's config.)"""
    unknown = sorted(set(values) - set(STAGES) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ValueError(f"config sections must be among {list(STAGES) + list(TOP_LEVEL_KEYS)}, got unknown {unknown}")
    for stage in STAGES:
        section = values.get(stage)
        if section is None:
            continue
        if not isinstance(section, dict):
            raise ValueError(f"config section {stage!r} must be a mapping of fields, got {section!r}")
        if stage == "corpus":
            known = {f.name for f in dataclasses.fields(SyntheticCorpusConfig)} | {"preset", "dataset_name_or_path"}
            preset = section.get("preset", "tiny")
            if not section.get("dataset_name_or_path") and preset not in CORPUS_PRESETS:
                raise ValueError(f"corpus.preset must be one of {list(CORPUS_PRESETS)}, got {preset!r}")
        else:
            known = {f.name for f in dataclasses.fields(STAGE_CONFIGS[stage])}
        bad = sorted(set(section) - known)
        if bad:
            raise ValueError(
                f"config section {stage!r} has unknown keys {bad}; expected fields of "
                f"{'SyntheticCorpusConfig' if stage == 'corpus' else STAGE_CONFIGS[stage].__name__}"
            )
        check_field_types(SyntheticCorpusConfig if stage == "corpus" else STAGE_CONFIGS[stage], section, prefix=stage)
    try:  # the evaluation runs last, and every one of its fields has a default: check its values now
        ESARMEvaluationConfig(**(values.get("evaluation") or {}))
    except ValueError as error:
        raise ValueError(f"evaluation.{error}") from None


def rig_fingerprint(rig: FaceRig) -> str:
    """sha256 of a rig's geometry (neutral mesh, deltas, regions): what the LVE / EVE numbers depend on."""
    digest = hashlib.sha256()
    for array in (rig.neutral, rig.deltas, *(rig.regions[name] for name in sorted(rig.regions))):
        digest.update(array.tobytes())
    return digest.hexdigest()


def stage_fingerprint(stage: str, section: dict[str, Any], seed: int, upstream: Path | None, rig: str | None) -> str:
    """sha256 of what a stage is run from: its config section, the seed, the bytes of the done marker of the stage
    before it (which changes whenever that stage reruns) and the rig fingerprint (evaluation only: the other
    stages use the rig for logged metrics, their weights do not depend on it)."""
    marker = upstream / DONE_MARKER if upstream is not None else None
    record = {
        "stage": stage,
        "section": to_jsonable(section),
        "seed": seed,
        "upstream": hashlib.sha256(marker.read_bytes()).hexdigest()
        if marker is not None and marker.is_file()
        else None,
        "rig": rig,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


class StageProgressCallback(ProgressCallback):
    """One progress line per training stage: ``sta: 37%|███▋ | 296/800 [02:11<03:43, 2.25it/s, loss=3.1]``.

    Transformers' own bar also opens a bar per evaluation and writes every log dict on a line of its own (16
    lines for the tiny STA stage); here the last loss goes into the bar's postfix and evaluations run silently.
    """

    def __init__(self, stage: str):
        super().__init__()
        self.stage = stage

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        if self.training_bar is not None:
            self.training_bar.set_description(self.stage)
            self.training_bar.unit = "step"

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        pass

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.training_bar is not None and logs and "loss" in logs:
            self.training_bar.set_postfix(loss=f"{logs['loss']:.4g}", refresh=False)


@contextmanager
def stage_progress(stage: str) -> Iterator[None]:
    """Trainers built inside the block show :class:`StageProgressCallback`. Transformers picks a Trainer's progress
    callback from ``transformers.trainer.DEFAULT_PROGRESS_CALLBACK`` when the Trainer is built (the same hook it
    uses for its notebook bar), so the stage modules build their Trainers unchanged."""
    previous = transformers.trainer.DEFAULT_PROGRESS_CALLBACK
    transformers.trainer.DEFAULT_PROGRESS_CALLBACK = StageProgressCallback(stage)
    try:
        yield
    finally:
        transformers.trainer.DEFAULT_PROGRESS_CALLBACK = previous


class PipelineRunner:
    """Runs the stages in order; see :func:`run_pipeline`."""

    def __init__(self, config: dict[str, Any], output_dir: str | os.PathLike, resume: bool = True):
        self.config = config
        self.output_dir = Path(output_dir)
        self.resume = resume
        self.seed = int(config.get("seed", 0))
        self.rig_path = config.get("rig_path")
        self.rig_fingerprint = rig_fingerprint(resolve_rig(self.rig_path))
        self.dataset_name_or_path: str | None = None
        self.timings: dict[str, float] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self.fresh: set[str] = set()  # stages run from scratch: their inputs changed since they started

    def dir(self, stage: str) -> Path:
        return self.output_dir / STAGE_DIRS[stage]

    def section(self, stage: str) -> dict[str, Any]:
        return dict(self.config.get(stage) or {})

    def trainer_kwargs(self, stage: str) -> dict[str, Any]:
        values = {"seed": self.seed, **self.section(stage), "output_dir": str(self.dir(stage))}
        values.setdefault("resume_from_checkpoint", "auto" if self.resume and stage not in self.fresh else None)
        values.setdefault("disable_tqdm", False)  # the stage's progress line (StageProgressCallback)
        return values

    def fingerprint(self, stage: str) -> str:
        index = STAGES.index(stage)
        upstream = self.dir(STAGES[index - 1]) if index > 0 else None
        rig = self.rig_fingerprint if stage == "evaluation" else None
        return stage_fingerprint(stage, self.section(stage), self.seed, upstream, rig)

    # ---- stages: each config is built from its section plus the paths of the stages before it ----------------
    def corpus(self) -> dict[str, Any]:
        section = self.section("corpus")
        if section.get("dataset_name_or_path"):
            path = section["dataset_name_or_path"]
        else:
            preset = section.pop("preset", "tiny")
            section.setdefault("seed", self.seed)
            corpus_config = getattr(SyntheticCorpusConfig, preset)(**section)
            path = build_synthetic_corpus(
                corpus_config, self.dir("corpus"), overwrite="corpus" in self.fresh, progress=True
            )
        corpus = load_splits(path, argument="corpus.dataset_name_or_path")
        metrics = {f"num_{split}": corpus[split].num_rows for split in corpus}
        metrics["dataset_name_or_path"] = str(path)
        return metrics

    def motion_prior(self) -> dict[str, Any]:
        values = self.trainer_kwargs("motion_prior")
        values.setdefault("dataset_name_or_path", self.dataset_name_or_path)
        values.setdefault("rig_path", self.rig_path)
        return train_motion_prior(ESARMMotionPriorTrainingConfig(**values))

    def sta(self) -> dict[str, Any]:
        values = self.trainer_kwargs("sta")
        values.setdefault("dataset_name_or_path", self.dataset_name_or_path)
        values.setdefault("motion_prior_name_or_path", str(self.dir("motion_prior")))
        return train_sta(ESARMSTATrainingConfig(**values))

    def demos(self) -> dict[str, Any]:
        values = {"seed": self.seed, **self.section("demos"), "output_dir": str(self.dir("demos"))}
        values.setdefault("dataset_name_or_path", self.dataset_name_or_path)
        values.setdefault("sta_name_or_path", str(self.dir("sta")))
        values.setdefault("rig_path", self.rig_path)
        return collect_demos(ESARMDemoTrainingConfig(**values))

    def reward(self) -> dict[str, Any]:
        values = self.trainer_kwargs("reward")
        values.setdefault("dataset_name_or_path", str(self.dir("demos")))
        values.setdefault("sta_name_or_path", str(self.dir("sta")))
        return train_reward_model(ESARMRewardTrainingConfig(**values))

    def rl(self) -> dict[str, Any]:
        values = self.trainer_kwargs("rl")
        values.setdefault("sta_name_or_path", str(self.dir("sta")))
        values.setdefault("reward_model_name_or_path", str(self.dir("reward")))
        values.setdefault("dataset_name_or_path", self.dataset_name_or_path)
        values.setdefault("rig_path", self.rig_path)
        config = ESARMRLTrainingConfig(**values)
        if config.reward_rounds == 1:
            return train_rl(config)
        return self._iterated_rl(config)

    def _iterated_rl(self, config: ESARMRLTrainingConfig) -> dict[str, Any]:
        """Stage 5 in ``config.reward_rounds`` rounds (:func:`train_iterated_rl`) in ``rl/round<k>``, the reward
        model retrained with the ``reward`` section's settings on rollouts made with the ``demos`` section's; the
        last round's policy is copied to ``rl/`` (what the evaluation reads). Returns the last round's metrics and
        the reward models' retraining metrics (``round<k>_reward_<metric>``)."""
        rl_dir = self.dir("rl")
        if "rl" in self.fresh:  # rounds of other inputs must not be read back as finished
            for folder in rl_dir.glob("round*"):
                shutil.rmtree(folder, ignore_errors=True)
        reward = ESARMRewardTrainingConfig(
            **{**self.trainer_kwargs("reward"), "output_dir": str(rl_dir / "unused"), "resume_from_checkpoint": None}
        )
        demos = ESARMDemoTrainingConfig(**{"seed": self.seed, **self.section("demos"), "output_dir": str(rl_dir)})
        result = train_iterated_rl(config, reward, demos, config.reward_rounds, rl_dir)
        last = Path(result["policy"])
        for path in last.iterdir():
            if path.is_file():  # each file whole or not at all: a reader never sees half a weights file
                atomic_write(rl_dir / path.name, lambda tmp, source=path: shutil.copy2(source, tmp))
        metrics = dict(result["rounds"][-1]["rl"])
        for number, record in enumerate(result["rounds"]):
            for key, value in (record.get("reward") or {}).items():
                if isinstance(value, (int, float)):
                    metrics[f"round{number}_reward_{key}"] = value
        return metrics

    def evaluation(self) -> dict[str, Any]:
        values = {"seed": self.seed, **self.section("evaluation"), "output_dir": str(self.dir("evaluation"))}
        values.setdefault("dataset_name_or_path", self.dataset_name_or_path)
        values.setdefault("rig_path", self.rig_path)
        values.setdefault("run_dir", str(self.output_dir))
        lipsync = values.get("lipsync", {})
        if lipsync is True or isinstance(lipsync, dict):
            # The fixed held-out sets live beside the stages, so a rerun of the evaluation reuses them.
            values["lipsync"] = {"heldout": str(self.output_dir / "heldout"), **(lipsync if lipsync is not True else {})}
        return evaluate_pipeline(ESARMEvaluationConfig(**values), stage_metrics=self.results)

    # ---- driver ------------------------------------------------------------------------------------------------
    def run(self, stages: list[str] | None = None) -> dict[str, Any]:
        state = PartialState()
        selected = [s for s in STAGES if stages is None or s in stages]
        for number, name in enumerate(STAGES, start=1):
            stage_dir = self.dir(name)
            done = read_done_marker(stage_dir)
            inputs = self.fingerprint(name)
            changed = done is not None and read_done_inputs(stage_dir) != inputs
            if name not in selected or (self.resume and done is not None and not changed):
                if done is not None:
                    self.results[name] = done
                    if name == "corpus":
                        self.dataset_name_or_path = done.get("dataset_name_or_path", str(stage_dir))
                    logger.info(
                        "[%d/%d] %s: done before, skipped (%s)", number, len(STAGES), name, _summary(name, done)
                    )
                elif name == "corpus":
                    self.dataset_name_or_path = self.section("corpus").get("dataset_name_or_path", str(stage_dir))
                continue
            if changed and self.resume:
                logger.info(
                    "[%d/%d] %s: its inputs changed since it ran (config section, an earlier stage or the rig)",
                    number, len(STAGES), name,
                )  # fmt: skip
            if state.is_main_process:
                self._start(name, inputs)
            state.wait_for_everyone()
            logger.info("[%d/%d] %s: running in %s", number, len(STAGES), name, stage_dir)
            started = time.perf_counter()
            with stage_progress(name):
                metrics = getattr(self, name)() or {}
            seconds = time.perf_counter() - started
            metrics = {**metrics, "stage_seconds": seconds}
            if state.is_main_process:
                write_done_marker(stage_dir, metrics, inputs=inputs)
            state.wait_for_everyone()
            if name == "corpus":
                self.dataset_name_or_path = metrics["dataset_name_or_path"]
            self.results[name] = metrics
            self.timings[name] = seconds
            logger.info(
                "[%d/%d] %s: finished in %.1f s (%s)", number, len(STAGES), name, seconds, _summary(name, metrics)
            )
        summary = {"output_dir": str(self.output_dir), "timings_s": self.timings, "stages": self.results}
        if state.is_main_process:
            atomic_write_json(self.output_dir / "pipeline_results.json", summary)
        return summary

    def _start(self, name: str, inputs: str) -> None:
        """Record the inputs a stage starts from. Checkpoints of other inputs (or of a run from scratch) are
        removed, so that resuming never continues a stage from a checkpoint of another config."""
        stage_dir = self.dir(name)
        started = stage_dir / STARTED_MARKER
        previous = json.loads(started.read_text()).get("inputs") if started.is_file() else None
        if not self.resume or previous != inputs:
            self.fresh.add(name)
            for checkpoint in stage_dir.glob("checkpoint-*"):
                shutil.rmtree(checkpoint, ignore_errors=True)
        (stage_dir / DONE_MARKER).unlink(missing_ok=True)
        atomic_write_json(started, {"inputs": inputs})


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of the config ``values`` with ``"section.key=value"`` overrides applied (dots reach into nested
    mappings, e.g. ``sta.model_overrides.hidden_size=32``; values are parsed as yaml: ``500``, ``0.5``, ``false``,
    ``[0.02, 1.0]``)."""
    values = copy.deepcopy(values)
    for override in overrides:
        path, sep, raw = override.partition("=")
        keys = path.strip().split(".")
        if not sep or not all(keys):
            raise ValueError(f"overrides must look like 'section.key=value', got {override!r}")
        node = values
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ValueError(f"override {override!r}: {key!r} holds {child!r}, not a mapping")
            node = child
        node[keys[-1]] = yaml.safe_load(raw)
    return values


def run_pipeline(
    config: str | os.PathLike | dict[str, Any],
    output_dir: str | os.PathLike,
    resume: bool = True,
    stages: list[str] | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Run corpus -> motion prior -> STA -> demonstrations -> reward model -> RL -> evaluation.

    Args:
        config: a yaml/json path or a dict with one section per stage (see the module docstring).
        output_dir: run folder; each stage writes ``output_dir/<stage>``.
        resume: skip stages whose done marker exists and resume interrupted Trainer stages from their last
            checkpoint; ``False`` reruns every selected stage from scratch.
        stages: run only these stages (others must be complete or are skipped).
        overrides: ``"section.key=value"`` changes to the config (:func:`apply_overrides`).
    Raises:
        ValueError: the config is malformed or names an unknown section, key or corpus preset.
        FileNotFoundError: ``rig_path`` (or ``$ESARM_RIG``) names no rig.
        OSError: ``output_dir`` cannot be written.
    Returns ``{"output_dir", "timings_s", "stages": {stage: metrics}}``; the evaluation's tables are in
    ``output_dir/evaluation/results.md``.
    """
    values = dict(config) if isinstance(config, dict) else load_config_file(config)
    if overrides:
        values = apply_overrides(values, overrides)
    values = rename_deprecated_sections(values)
    check_pipeline_config(values)
    if stages is not None:
        bad = sorted(set(stages) - set(STAGES))
        if bad:
            raise ValueError(f"stages must be among {list(STAGES)}, got {bad}")
    if values.get("num_threads"):
        torch.set_num_threads(int(values["num_threads"]))
    check_writable_folder(output_dir, argument="output_dir")
    return PipelineRunner(values, output_dir, resume=resume).run(stages)
