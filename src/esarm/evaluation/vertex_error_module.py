"""What the ``evaluate``-loadable LVE and EVE modules (``esarm/metrics/lve``, ``esarm/metrics/eve``) share.

Both turn predicted and reference ARKit coefficients into rig vertices and report, per frame, the maximum vertex
distance over one region of the rig, pooled over all frames; they differ only in the region and the texts. Those
modules stay thin ``evaluate.Metric`` classes that call :func:`metric_info` and :func:`compute_scores`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import datasets
import evaluate

from ..rig import resolve_rig
from .metrics import region_vertex_error

# metric name -> (rig region, how the docstring names its vertices)
REGIONS: dict[str, tuple[str, str]] = {"lve": ("lips", "lip"), "eve": ("eye_forehead", "eye/forehead")}


def _check_name(name: str) -> tuple[str, str]:
    if name not in REGIONS:
        raise ValueError(f"name must be one of {sorted(REGIONS)}, got {name!r}")
    return REGIONS[name]


def kwargs_description(name: str) -> str:
    """The ``inputs_description`` of the ``name`` module (``"lve"`` or ``"eve"``): arguments, returns, example."""
    _, vertices = _check_name(name)
    return f"""
Args:
    predictions: list of sequences, each [frames, 52] ARKit coefficients (esarm.blendshapes.ARKIT_NAMES order).
    references: list of sequences of the same lengths as the predictions.
    rig: path of a rig (.npz, .glb/.gltf or ICT-FaceKit folder); default: $ESARM_RIG, else a converted
        ICT-FaceKit rig in the user cache, else the rig embedded in esarm.
Returns:
    {name}_mm: mean over frames of the max {vertices}-vertex L2 distance (mm).
    {name}_squared_mm2: the same with the squared distance (mm²).
Examples:
    >>> import evaluate
    >>> from esarm.evaluation import metric_path
    >>> {name} = evaluate.load(metric_path("{name}"))
    >>> {name}.compute(predictions=[[[0.0] * 52]], references=[[[0.0] * 52]])
    {{'{name}_mm': 0.0, '{name}_squared_mm2': 0.0}}
"""


def metric_info(name: str, description: str, citation: str, reference_url: str):
    """``evaluate.MetricInfo`` of the ``name`` module: inputs are lists of ``[frames, 52]`` float32 sequences."""
    _check_name(name)
    sequences = datasets.Sequence(datasets.Sequence(datasets.Value("float32")))
    return evaluate.MetricInfo(
        description=description,
        citation=citation,
        inputs_description=kwargs_description(name),
        features=datasets.Features({"predictions": sequences, "references": sequences}),
        reference_urls=[reference_url],
    )


def compute_scores(
    name: str,
    predictions: Sequence,
    references: Sequence,
    rig: str | os.PathLike | None = None,
) -> dict[str, float]:
    """``{name}_mm`` (mean over frames of the max region-vertex distance, mm) and ``{name}_squared_mm2`` (mm²).

    ``rig``: a rig path or ``None`` (:func:`esarm.rig.resolve_rig`).
    """
    region, _ = _check_name(name)
    face_rig = resolve_rig(rig)
    squared = region_vertex_error(predictions, references, face_rig, region, squared=True, reduction="frames")
    return {f"{name}_mm": float((squared**0.5).mean()), f"{name}_squared_mm2": float(squared.mean())}
