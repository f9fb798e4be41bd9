"""The whole ESARM training pipeline: corpus -> 5 stages -> evaluation -> results table.

``run_pipeline(config, output_dir)`` reads one config (yaml path or dict) with a section per stage::

    seed: 0
    num_threads: null           # torch CPU threads (1 on a shared machine; null: torch's default)
    rig_path: null              # face rig for LVE / EVE (default: $ESARM_RIG)
    corpus: {preset: tiny, ...} # SyntheticCorpusConfig preset + fields, or {dataset_path: prepared/mead}
    motion_prior: {...}         # ESARMMotionPriorTrainingConfig fields
    sta: {...}                  # ESARMSTATrainingConfig fields
    demos: {...}                # ESARMDemoConfig fields
    reward: {...}               # the reward-model stage's config fields (esarm.training.reward)
    rl: {...}                   # ESARMRLConfig fields (esarm.training.rl)
    evaluation: {...}           # EvaluationConfig fields

Each stage writes into ``output_dir/<stage>``; paths between stages are filled in here. A stage whose folder holds
the done marker is skipped (its metrics are read back); an interrupted Trainer stage resumes from its last
checkpoint. Every stage ends with a one-line summary in the log.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import atomic_write_json, load_config_file, read_done_marker, write_done_marker

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
SUMMARY_KEYS = {
    "corpus": ("num_train", "num_validation", "num_test"),
    "motion_prior": ("eval_reconstruction_mae", "eval_codebook_usage", "eval_reconstruction_lve"),
    "sta": ("train_loss", "eval_loss", "eval_token_accuracy", "eval_emotion_accuracy"),
    "demos": ("train_num_rollouts", "train_lve_eps_0.02", "train_lve_eps_1"),
    "reward": ("eval_accuracy", "eval_gt_beats_eps_0.02"),
    "rl": ("reward_before", "reward_after"),
    "evaluation": ("sta_lve", "mean_baseline_lve", "condition_baseline_lve", "sta_mae", "condition_baseline_mae"),
}


def _fill(config_class: type, values: dict[str, Any], candidates: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    """Put each value under the first of its candidate field names that ``config_class`` has (stages 4-5 are
    written by another author; this keeps the mapping in one place)."""
    names = {f.name for f in dataclasses.fields(config_class)}
    values = dict(values)
    for options, value in candidates.items():
        for name in options:
            if name in names:
                values.setdefault(name, value)
                break
        else:
            logger.debug("%s has none of the fields %s", config_class.__name__, options)
    return values


def _config_class_of(function: Callable) -> type:
    hints = typing.get_type_hints(function)
    if "config" not in hints:
        raise ValueError(f"{function.__qualname__} must annotate its `config` parameter with a config dataclass")
    return hints["config"]


def _summary(name: str, metrics: dict[str, Any]) -> str:
    parts = []
    for key in SUMMARY_KEYS.get(name, ()):
        value = metrics.get(key)
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        elif value is not None:
            parts.append(f"{key}={value}")
    return ", ".join(parts)


class PipelineRunner:
    """Runs the stages in order; see :func:`run_pipeline`."""

    def __init__(self, config: dict[str, Any], output_dir: str | os.PathLike, resume: bool = True):
        self.config = config
        self.output_dir = Path(output_dir)
        self.resume = resume
        self.seed = int(config.get("seed", 0))
        self.rig_path = config.get("rig_path")
        self.dataset_path: str | None = None
        self.timings: dict[str, float] = {}
        self.results: dict[str, dict[str, Any]] = {}

    def dir(self, stage: str) -> Path:
        return self.output_dir / STAGE_DIRS[stage]

    def section(self, stage: str) -> dict[str, Any]:
        return dict(self.config.get(stage) or {})

    def trainer_kwargs(self, stage: str) -> dict[str, Any]:
        values = {"seed": self.seed, **self.section(stage), "output_dir": str(self.dir(stage))}
        values.setdefault("resume_from_checkpoint", "auto" if self.resume else None)
        return values

    # ---- stages ------------------------------------------------------------------------------------------------
    def corpus(self) -> dict[str, Any]:
        from ..data.loading import load_splits

        section = self.section("corpus")
        if section.get("dataset_path"):
            path = section["dataset_path"]
        else:
            from ..data import SyntheticCorpusConfig, build_synthetic_corpus

            preset = section.pop("preset", "tiny")
            section.setdefault("seed", self.seed)
            corpus_config = getattr(SyntheticCorpusConfig, preset)(**section)
            path = build_synthetic_corpus(corpus_config, self.dir("corpus"), progress=True)
        corpus = load_splits(path, argument="corpus.dataset_path")
        metrics = {f"num_{split}": corpus[split].num_rows for split in corpus}
        metrics["dataset_path"] = str(path)
        return metrics

    def motion_prior(self) -> dict[str, Any]:
        from .motion_prior import ESARMMotionPriorTrainingConfig, train_motion_prior

        values = self.trainer_kwargs("motion_prior")
        values.setdefault("dataset_path", self.dataset_path)
        values.setdefault("rig_path", self.rig_path)
        return train_motion_prior(ESARMMotionPriorTrainingConfig(**values))

    def sta(self) -> dict[str, Any]:
        from .sta import ESARMSTATrainingConfig, train_sta

        values = self.trainer_kwargs("sta")
        values.setdefault("dataset_path", self.dataset_path)
        values.setdefault("motion_prior_path", str(self.dir("motion_prior")))
        return train_sta(ESARMSTATrainingConfig(**values))

    def demos(self) -> dict[str, Any]:
        from .demos import ESARMDemoConfig, collect_demos

        values = {"seed": self.seed, **self.section("demos"), "output_dir": str(self.dir("demos"))}
        values.setdefault("dataset_path", self.dataset_path)
        values.setdefault("sta_model_path", str(self.dir("sta")))
        values.setdefault("rig_path", self.rig_path)
        return collect_demos(ESARMDemoConfig(**values))

    def reward(self) -> dict[str, Any]:
        from .reward import train_reward_model

        config_class = _config_class_of(train_reward_model)
        values = _fill(
            config_class,
            self.trainer_kwargs("reward"),
            {
                ("demos_path", "demos_name_or_path", "dataset_name_or_path", "dataset_path"): str(self.dir("demos")),
                ("sta_model_path", "policy_name_or_path", "sta_name_or_path"): str(self.dir("sta")),
                ("motion_prior_path", "motion_prior_name_or_path"): str(self.dir("motion_prior")),
                ("rig_path",): self.rig_path,
            },
        )
        return train_reward_model(config_class(**values))

    def rl(self) -> dict[str, Any]:
        from .rl import train_rl

        config_class = _config_class_of(train_rl)
        values = _fill(
            config_class,
            self.trainer_kwargs("rl"),
            {
                ("policy_name_or_path", "sta_model_path", "sta_name_or_path"): str(self.dir("sta")),
                ("reward_model_name_or_path", "reward_model_path"): str(self.dir("reward")),
                ("dataset_name_or_path", "dataset_path"): self.dataset_path,
                ("rig_path",): self.rig_path,
            },
        )
        return train_rl(config_class(**values))

    def evaluation(self) -> dict[str, Any]:
        from .evaluate import EvaluationConfig, evaluate_pipeline

        values = {"seed": self.seed, **self.section("evaluation"), "output_dir": str(self.dir("evaluation"))}
        values.setdefault("dataset_path", self.dataset_path)
        values.setdefault("rig_path", self.rig_path)
        values.setdefault("run_dir", str(self.output_dir))
        return evaluate_pipeline(EvaluationConfig(**values), stage_metrics=self.results)

    # ---- driver ------------------------------------------------------------------------------------------------
    def run(self, stages: list[str] | None = None) -> dict[str, Any]:
        from accelerate import PartialState

        state = PartialState()
        selected = [s for s in STAGES if stages is None or s in stages]
        for number, name in enumerate(STAGES, start=1):
            stage_dir = self.dir(name)
            done = read_done_marker(stage_dir)
            if name not in selected or (self.resume and done is not None):
                if done is not None:
                    self.results[name] = done
                    if name == "corpus":
                        self.dataset_path = done.get("dataset_path", str(stage_dir))
                    logger.info(
                        "[%d/%d] %s: done before, skipped (%s)", number, len(STAGES), name, _summary(name, done)
                    )
                elif name == "corpus":
                    self.dataset_path = self.section("corpus").get("dataset_path", str(stage_dir))
                continue
            logger.info("[%d/%d] %s: running in %s", number, len(STAGES), name, stage_dir)
            started = time.perf_counter()
            metrics = getattr(self, name)() or {}
            seconds = time.perf_counter() - started
            metrics = {**metrics, "stage_seconds": seconds}
            if state.is_main_process:
                write_done_marker(stage_dir, metrics)
            state.wait_for_everyone()
            if name == "corpus":
                self.dataset_path = metrics["dataset_path"]
            self.results[name] = metrics
            self.timings[name] = seconds
            logger.info(
                "[%d/%d] %s: finished in %.1f s (%s)", number, len(STAGES), name, seconds, _summary(name, metrics)
            )
        summary = {"output_dir": str(self.output_dir), "timings_s": self.timings, "stages": self.results}
        if state.is_main_process:
            atomic_write_json(self.output_dir / "pipeline_results.json", summary)
        return summary


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of the config ``values`` with ``"section.key=value"`` overrides applied (dots reach into nested
    mappings, e.g. ``sta.model_overrides.hidden_size=32``; values are parsed as yaml: ``500``, ``0.5``, ``false``,
    ``[0.02, 1.0]``)."""
    import copy

    import yaml

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
    Returns ``{"output_dir", "timings_s", "stages": {stage: metrics}}``; the evaluation's tables are in
    ``output_dir/evaluation/results.md``.
    """
    values = dict(config) if isinstance(config, dict) else load_config_file(config)
    if overrides:
        values = apply_overrides(values, overrides)
    top_level = ["seed", "rig_path", "num_threads"]
    unknown = sorted(set(values) - set(STAGES) - set(top_level))
    if unknown:
        raise ValueError(f"config sections must be among {list(STAGES) + top_level}, got unknown {unknown}")
    if values.get("num_threads"):
        import torch

        torch.set_num_threads(int(values["num_threads"]))
    if stages is not None:
        bad = sorted(set(stages) - set(STAGES))
        if bad:
            raise ValueError(f"stages must be among {list(STAGES)}, got {bad}")
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    return PipelineRunner(values, output_dir, resume=resume).run(stages)
