"""Evaluation: LVE / EVE and the other metrics (on the face rig of :mod:`esarm.rig`), lip sync
(:mod:`~esarm.evaluation.lipsync`), the expression classifier, blinks / FDD / the realism test
(:mod:`~esarm.evaluation.realism`), the paired bootstrap (:mod:`~esarm.evaluation.significance`), the drivers
that run models over a split (:mod:`~esarm.evaluation.run`) and the one report writer
(:mod:`~esarm.evaluation.report`).

Submodules import lazily so that ``import esarm.evaluation`` stays light (no torch / matplotlib until used).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

_EXPORTS = {
    "lve": "metrics",
    "lve_squared": "metrics",
    "eve": "metrics",
    "eve_squared": "metrics",
    "mve": "metrics",
    "fdd": "metrics",
    "blendshape_mae": "metrics",
    "region_vertex_error": "metrics",
    "compute_vertex_metrics": "metrics",
    "mouth_audio_correlation": "metrics",
    "diversity": "metrics",
    "emotion_accuracy": "metrics",
    "ExpressionClassifier": "classifier",
    "blink_statistics": "realism",
    "realism_accuracy": "realism",
    "expressiveness_table": "realism",
    "paired_bootstrap": "significance",
    "clips_needed": "significance",
    "evaluate_model": "run",
    "run_evaluation": "run",
    "evaluate_pipeline": "run",
    "ESARMEvaluationConfig": "run",
    "write_report": "report",
}

__all__ = [*_EXPORTS, "metric_path"]


def metric_path(name: str) -> str:
    """Folder of an ``evaluate``-loadable metric shipped with the package: ``evaluate.load(metric_path("lve"))``.

    Available: ``"lve"``, ``"eve"``.
    """
    path = Path(__file__).resolve().parent.parent / "metrics" / name
    if not (path / f"{name}.py").is_file():
        raise ValueError(f"name must be one of ['eve', 'lve'], got {name!r}")
    return str(path)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
