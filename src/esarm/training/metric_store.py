"""Metrics kept by the Trainer subclasses between two log calls (TRL's ``_metrics`` pattern), one store for all
stages."""

from __future__ import annotations

import math

import torch


class MetricStore:
    """Running per-mode ("train"/"eval") metric sums, averaged over steps and over processes at log time."""

    def __init__(self):
        self._values: dict[str, dict[str, list[float]]] = {"train": {}, "eval": {}}

    def add(self, mode: str, name: str, value) -> None:
        """Record one value (a number or a tensor, averaged); NaN is skipped (e.g. the std of a single value)."""
        if hasattr(value, "detach"):
            value = value.detach().float().mean().item()
        if not math.isnan(float(value)):
            self._values[mode].setdefault(name, []).append(float(value))

    def pop(self, mode: str, accelerator=None) -> dict[str, float]:
        """Averages since the last pop; with an ``accelerator`` the per-process means are averaged over
        processes (every process must call this at the same point, as the Trainer's ``log`` does)."""
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
