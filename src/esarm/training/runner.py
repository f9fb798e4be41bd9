"""The whole ESARM training pipeline: corpus -> 5 stages -> evaluation -> results table.

``run_pipeline(config, output_dir)`` reads one config (yaml path or dict) with a section per stage::

    seed: 0
    num_threads: null           # torch CPU threads (1 on a shared machine; null: torch's default)
    rig_path: null              # face rig for LVE / EVE (default: $ESARM_RIG)
    corpus: {preset: tiny, ...} # SyntheticCorpusConfig preset + fields, or {dataset_name_or_path: prepared/mead}
    motion_prior: {...}         # ESARMMotionPriorTrainingConfig fields
    sta: {...}                  # ESARMSTATrainingConfig fields
    demos: {...}                # ESARMDemoConfig fields
    reward: {...}               # ESARMRewardConfig fields
    rl: {...}                   # ESARMRLConfig fields
    evaluation: {...}           # ESARMEvaluationConfig fields (esarm.evaluation.run)

Each stage writes into ``output_dir/<stage>``; the ``*_name_or_path`` fields that point at an earlier stage's
folder (and ``dataset_name_or_path``, ``rig_path``) are filled in here unless the section sets them. A stage whose folder holds
the done marker is skipped (its metrics are read back); an interrupted Trainer stage resumes from its last
checkpoint. Every stage ends with a one-line summary in the log.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import PartialState

from ..data import SyntheticCorpusConfig, build_synthetic_corpus
from ..data.loading import load_splits
from ..evaluation.run import ESARMEvaluationConfig, evaluate_pipeline
from ..utils import atomic_write_json
from .args import load_config_file
from .checkpoints import read_done_marker, write_done_marker
from .demos import ESARMDemoConfig, collect_demos
from .motion_prior import ESARMMotionPriorTrainingConfig, train_motion_prior
from .reward import ESARMRewardConfig, train_reward_model
from .rl import ESARMRLConfig, train_rl
from .sta import ESARMSTATrainingConfig, train_sta

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
        self.dataset_name_or_path: str | None = None
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

    # ---- stages: each config is built from its section plus the paths of the stages before it ----------------
    def corpus(self) -> dict[str, Any]:
        section = self.section("corpus")
        if section.get("dataset_name_or_path"):
            path = section["dataset_name_or_path"]
        else:
            preset = section.pop("preset", "tiny")
            section.setdefault("seed", self.seed)
            corpus_config = getattr(SyntheticCorpusConfig, preset)(**section)
            path = build_synthetic_corpus(corpus_config, self.dir("corpus"), progress=True)
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
        return collect_demos(ESARMDemoConfig(**values))

    def reward(self) -> dict[str, Any]:
        values = self.trainer_kwargs("reward")
        values.setdefault("demos_name_or_path", str(self.dir("demos")))
        values.setdefault("sta_name_or_path", str(self.dir("sta")))
        return train_reward_model(ESARMRewardConfig(**values))

    def rl(self) -> dict[str, Any]:
        values = self.trainer_kwargs("rl")
        values.setdefault("policy_name_or_path", str(self.dir("sta")))
        values.setdefault("reward_model_name_or_path", str(self.dir("reward")))
        values.setdefault("dataset_name_or_path", self.dataset_name_or_path)
        values.setdefault("rig_path", self.rig_path)
        return train_rl(ESARMRLConfig(**values))

    def evaluation(self) -> dict[str, Any]:
        values = {"seed": self.seed, **self.section("evaluation"), "output_dir": str(self.dir("evaluation"))}
        values.setdefault("dataset_name_or_path", self.dataset_name_or_path)
        values.setdefault("rig_path", self.rig_path)
        values.setdefault("run_dir", str(self.output_dir))
        return evaluate_pipeline(ESARMEvaluationConfig(**values), stage_metrics=self.results)

    # ---- driver ------------------------------------------------------------------------------------------------
    def run(self, stages: list[str] | None = None) -> dict[str, Any]:
        state = PartialState()
        selected = [s for s in STAGES if stages is None or s in stages]
        for number, name in enumerate(STAGES, start=1):
            stage_dir = self.dir(name)
            done = read_done_marker(stage_dir)
            if name not in selected or (self.resume and done is not None):
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
            logger.info("[%d/%d] %s: running in %s", number, len(STAGES), name, stage_dir)
            started = time.perf_counter()
            metrics = getattr(self, name)() or {}
            seconds = time.perf_counter() - started
            metrics = {**metrics, "stage_seconds": seconds}
            if state.is_main_process:
                write_done_marker(stage_dir, metrics)
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
        torch.set_num_threads(int(values["num_threads"]))
    if stages is not None:
        bad = sorted(set(stages) - set(STAGES))
        if bad:
            raise ValueError(f"stages must be among {list(STAGES)}, got {bad}")
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    return PipelineRunner(values, output_dir, resume=resume).run(stages)
