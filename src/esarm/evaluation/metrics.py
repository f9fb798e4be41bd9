"""Metrics on ARKit blendshape sequences: vertex errors on a face rig (LVE, EVE, MVE, FDD), blendshape MAE, a
lip-sync proxy without ground truth, diversity across samples and emotion-recognition accuracy.

Inputs. ``pred`` / ``target`` are blendshape coefficients in ``esarm.blendshapes.ARKIT_NAMES`` order: one sequence
``[T, 52]``, a batch ``[B, T, 52]`` (numpy or torch) or a list of ``[T_i, 52]`` sequences of different lengths.
``mask`` (``[T]``, ``[B, T]`` or a list of ``[T_i]``; 1 = real frame, 0 = padding) drops padded frames. Prediction
and ground truth must have the same number of frames: the metrics do not align sequences themselves (trim or
resample first; :func:`esarm.evaluation.run.evaluate_model` trims to the shorter one). NaN / inf coefficients
raise ``ValueError``.

Vertex errors use the rig (:class:`~esarm.rig.FaceRig`, millimetres). Since ``vertices = neutral +
weights @ deltas``, the vertex difference of two frames is ``(w_pred - w_target) @ deltas``: the neutral mesh
cancels.

Conventions. The code that FaceFormer, CodeTalker, ProbTalk3D and UniTalker share (and
``torchmetrics.functional.multimodal.lip_vertex_error``) takes, per frame, the maximum over the lip vertices of the
**squared** L2 distance, then averages over all frames of the split pooled across sequences (a long sequence
weighs more than a short one). ``squared=True`` gives that number (mm²), comparable in convention (not in mesh:
see docs/evaluation.md) with those papers; ``squared=False`` (default) takes the square root per frame before
averaging and gives millimetres.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..blendshapes import BLENDSHAPE_INDEX, EMOTIONS, NUM_BLENDSHAPES

logger = logging.getLogger(__name__)

_CHUNK_FRAMES = 512  # frames per vectorised chunk: bounds memory to chunk x vertices x 3 floats


# ---------------------------------------------------------------------------------------------------------------------
# Input handling


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def as_sequences(values: Any, argument: str = "blendshapes") -> list[np.ndarray]:
    """Split ``[T, 52]`` / ``[B, T, 52]`` / list of ``[T_i, 52]`` into a list of float64 ``[T_i, 52]`` arrays.

    Raises ``ValueError`` for a wrong shape or NaN / inf values.
    """
    if isinstance(values, (list, tuple)) and values and _to_numpy(values[0]).ndim == 2:
        sequences = [_to_numpy(v) for v in values]
    else:
        array = _to_numpy(values)
        if array.ndim == 2:
            sequences = [array]
        elif array.ndim == 3:
            sequences = list(array)
        else:
            raise ValueError(f"{argument} must have shape [frames, 52] or [batch, frames, 52], got shape {array.shape}")
    out = []
    for i, sequence in enumerate(sequences):
        sequence = np.asarray(sequence)
        if sequence.ndim != 2 or sequence.shape[-1] != NUM_BLENDSHAPES:
            raise ValueError(f"{argument}[{i}] must have shape [frames, 52], got shape {sequence.shape}")
        if not np.issubdtype(sequence.dtype, np.number):
            raise ValueError(f"{argument}[{i}] must be numeric, got dtype {sequence.dtype}")
        sequence = sequence.astype(np.float64)
        bad = ~np.isfinite(sequence)
        if bad.any():
            raise ValueError(f"{argument} must be finite, got {int(bad.sum())} NaN/inf values in sequence {i}")
        out.append(sequence)
    return out


def _masks(mask: Any, lengths: Sequence[int]) -> list[np.ndarray]:
    if mask is None:
        return [np.ones(n, dtype=bool) for n in lengths]
    if isinstance(mask, (list, tuple)) and mask and not np.isscalar(mask[0]):
        masks = [_to_numpy(m).astype(bool).reshape(-1) for m in mask]
    else:
        array = _to_numpy(mask).astype(bool)
        masks = [array] if array.ndim == 1 else list(array)
    if len(masks) != len(lengths):
        raise ValueError(f"mask must have one row per sequence ({len(lengths)}), got {len(masks)}")
    out = []
    for i, (m, n) in enumerate(zip(masks, lengths)):
        if m.shape[0] != n:
            raise ValueError(f"mask[{i}] must have {n} frames (like its sequence), got {m.shape[0]}")
        out.append(m)
    return out


def paired_sequences(pred: Any, target: Any, mask: Any = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Valid frames of each (prediction, ground truth) pair, float64 ``[T_i, 52]`` each; checks equal lengths."""
    preds = as_sequences(pred, "pred")
    targets = as_sequences(target, "target")
    if len(preds) != len(targets):
        raise ValueError(f"pred and target must hold the same number of sequences, got {len(preds)} and {len(targets)}")
    for i, (p, t) in enumerate(zip(preds, targets)):
        if p.shape[0] != t.shape[0]:
            raise ValueError(
                f"pred and target must have the same number of frames, got {p.shape[0]} and {t.shape[0]} in sequence "
                f"{i}: align them first (trim to the shorter or resample to the same fps)"
            )
    masks = _masks(mask, [p.shape[0] for p in preds])
    pairs = [(p[m], t[m]) for p, t, m in zip(preds, targets, masks) if m.any()]
    if not pairs:
        raise ValueError("mask must keep at least one frame, got none")
    return pairs


def _reduce(per_sequence_frames: list[np.ndarray], reduction: str):
    if reduction == "mean":
        return float(np.concatenate(per_sequence_frames).mean())
    if reduction == "sequences":
        return np.array([f.mean() for f in per_sequence_frames])
    if reduction == "frames":
        return np.concatenate(per_sequence_frames)
    raise ValueError(f"reduction must be 'mean', 'sequences' or 'frames', got {reduction!r}")


# ---------------------------------------------------------------------------------------------------------------------
# Vertex errors


def _max_squared_error(difference: np.ndarray, deltas_flat: np.ndarray, num_vertices: int) -> np.ndarray:
    """Per frame, the largest squared vertex distance ``[T]`` (mm²) for coefficient differences ``[T, 52]``."""
    out = np.empty(len(difference))
    for start in range(0, len(difference), _CHUNK_FRAMES):
        offsets = (difference[start : start + _CHUNK_FRAMES] @ deltas_flat).reshape(-1, num_vertices, 3)
        out[start : start + _CHUNK_FRAMES] = (offsets**2).sum(-1).max(-1)
    return out


def region_vertex_error(
    pred: Any,
    target: Any,
    rig,
    region: str,
    mask: Any = None,
    squared: bool = False,
    reduction: str = "mean",
):
    """Per frame the maximum vertex error over ``rig.region(region)``, averaged over frames (pooled).

    Args:
        pred, target: blendshapes (see module docstring), equal lengths.
        rig: :class:`~esarm.rig.FaceRig`.
        region: a region of the rig (``"lips"`` for LVE, ``"eye_forehead"`` for EVE).
        mask: optional frame mask (1 = real frame).
        squared: ``True``: squared L2 distance (mm², FaceFormer / CodeTalker / UniTalker convention);
            ``False``: L2 distance (mm).
        reduction: ``"mean"`` (float over all valid frames of all sequences), ``"sequences"`` (one mean per
            sequence) or ``"frames"`` (every valid frame's value).
    """
    ids = rig.region(region)
    deltas_flat = rig.deltas[:, ids].reshape(NUM_BLENDSHAPES, -1).astype(np.float64)
    per_frame = []
    for p, t in paired_sequences(pred, target, mask):
        error = _max_squared_error(p - t, deltas_flat, len(ids))
        per_frame.append(error if squared else np.sqrt(error))
    return _reduce(per_frame, reduction)


def lve(pred: Any, target: Any, rig, mask: Any = None, squared: bool = False, reduction: str = "mean"):
    """Lip vertex error: per frame the max over the rig's ``"lips"`` vertices of the vertex error, mean over frames.

    ``squared=True`` is the FaceFormer / CodeTalker / UniTalker / torchmetrics ``LipVertexError`` convention
    (squared L2, mm², no square root); ``squared=False`` (default) is the same with the L2 distance in mm. Frames
    are pooled across sequences. See :func:`region_vertex_error` for the arguments.
    """
    return region_vertex_error(pred, target, rig, "lips", mask=mask, squared=squared, reduction=reduction)


def lve_squared(pred: Any, target: Any, rig, mask: Any = None, reduction: str = "mean"):
    """LVE in the squared-L2 convention of FaceFormer / CodeTalker / UniTalker (mm²): ``lve(..., squared=True)``."""
    return lve(pred, target, rig, mask=mask, squared=True, reduction=reduction)


def eve(pred: Any, target: Any, rig, mask: Any = None, squared: bool = False, reduction: str = "mean"):
    """Emotion (eye + forehead) vertex error: :func:`lve` over the rig's ``"eye_forehead"`` vertices.

    EmoTalk's EVE, whose code was never released; its authors describe the same computation as LVE on FLAME's eye
    region + forehead masks. ``squared`` as in :func:`lve`.
    """
    return region_vertex_error(pred, target, rig, "eye_forehead", mask=mask, squared=squared, reduction=reduction)


def eve_squared(pred: Any, target: Any, rig, mask: Any = None, reduction: str = "mean"):
    """EVE in the squared-L2 convention (mm²): ``eve(..., squared=True)``."""
    return eve(pred, target, rig, mask=mask, squared=True, reduction=reduction)


def mve(pred: Any, target: Any, rig, mask: Any = None, reduction: str = "mean"):
    """Mean vertex error (mm): the L2 distance averaged over all rig vertices, then over frames (pooled)."""
    deltas_flat = rig.deltas.reshape(NUM_BLENDSHAPES, -1).astype(np.float64)
    per_frame = []
    for p, t in paired_sequences(pred, target, mask):
        difference = p - t
        errors = np.empty(len(difference))
        for start in range(0, len(difference), _CHUNK_FRAMES):
            offsets = (difference[start : start + _CHUNK_FRAMES] @ deltas_flat).reshape(-1, rig.num_vertices, 3)
            errors[start : start + _CHUNK_FRAMES] = np.sqrt((offsets**2).sum(-1)).mean(-1)
        per_frame.append(errors)
    return _reduce(per_frame, reduction)


def fdd(pred: Any, target: Any, rig, mask: Any = None, region: str = "eye_forehead", reduction: str = "mean"):
    """Upper-face dynamics deviation (CodeTalker's FDD), mm².

    Per sequence: for each upper-face vertex (``region``, default ``"eye_forehead"``) the standard deviation over
    time (population std) of the squared norm of its motion (vertex minus the neutral template), averaged over
    the vertices; FDD = that value for the ground truth minus that for the prediction, sign kept (positive: the
    prediction moves the upper face less than the ground truth), averaged over sequences.
    """
    ids = rig.region(region)
    deltas_flat = rig.deltas[:, ids].reshape(NUM_BLENDSHAPES, -1).astype(np.float64)

    def motion_std(weights: np.ndarray) -> float:
        squared_norm = ((weights @ deltas_flat).reshape(len(weights), len(ids), 3) ** 2).sum(-1)  # [T, V]
        return float(squared_norm.std(axis=0).mean())

    differences = [np.array([motion_std(t) - motion_std(p)]) for p, t in paired_sequences(pred, target, mask)]
    if reduction == "frames":
        raise ValueError("reduction must be 'mean' or 'sequences' for fdd (one value per sequence), got 'frames'")
    return _reduce(differences, reduction)


def blendshape_mae(pred: Any, target: Any, mask: Any = None, reduction: str = "mean"):
    """Mean absolute error of the 52 coefficients over valid frames (pooled across sequences)."""
    per_frame = [np.abs(p - t).mean(-1) for p, t in paired_sequences(pred, target, mask)]
    return _reduce(per_frame, reduction)


def compute_vertex_metrics(pred: Any, target: Any, rig, mask: Any = None) -> dict[str, float]:
    """All ground-truth metrics at once: ``lve_mm``, ``lve_squared_mm2``, ``eve_mm``, ``eve_squared_mm2``,
    ``mve_mm``, ``fdd_mm2``, ``blendshape_mae``, ``num_frames``, ``num_sequences``."""
    pairs = paired_sequences(pred, target, mask)
    preds = [p for p, _ in pairs]
    targets = [t for _, t in pairs]
    lips_sq = region_vertex_error(preds, targets, rig, "lips", squared=True, reduction="frames")
    eyes_sq = region_vertex_error(preds, targets, rig, "eye_forehead", squared=True, reduction="frames")
    return {
        "lve_mm": float(np.sqrt(lips_sq).mean()),
        "lve_squared_mm2": float(lips_sq.mean()),
        "eve_mm": float(np.sqrt(eyes_sq).mean()),
        "eve_squared_mm2": float(eyes_sq.mean()),
        "mve_mm": mve(preds, targets, rig),
        "fdd_mm2": fdd(preds, targets, rig),
        "blendshape_mae": blendshape_mae(preds, targets),
        "num_frames": int(sum(len(p) for p in preds)),
        "num_sequences": len(preds),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Metrics without ground truth


def mouth_opening(blendshapes: np.ndarray, rig=None) -> np.ndarray:
    """Mouth opening per frame ``[T]``.

    With a rig that has the 68 iBUG landmarks: the distance (mm) between the inner-lip centre landmarks 62 and 66.
    Otherwise the coefficient proxy ``jawOpen - mouthClose`` (ARKit's ``mouthClose`` closes the lips over an
    open jaw).
    """
    blendshapes = np.asarray(blendshapes, dtype=np.float64)
    if rig is not None and rig.landmarks is not None and len(rig.landmarks) == 68:
        points = rig.vertices(blendshapes, indices=rig.landmarks[[62, 66]])  # [T, 2, 3]
        return np.linalg.norm(points[:, 0] - points[:, 1], axis=-1)
    return blendshapes[:, BLENDSHAPE_INDEX["jawOpen"]] - blendshapes[:, BLENDSHAPE_INDEX["mouthClose"]]


def audio_energy(audio: np.ndarray, num_frames: int, fps: float, sampling_rate: int = 16000) -> np.ndarray:
    """Log RMS energy (dB) of the audio samples under each animation frame, ``[num_frames]``."""
    audio = np.asarray(audio, dtype=np.float64).reshape(-1)
    edges = np.round(np.arange(num_frames + 1) * sampling_rate / fps).astype(np.int64)
    energy = np.full(num_frames, -160.0)
    for t in range(num_frames):
        window = audio[edges[t] : max(edges[t + 1], edges[t] + 1)]
        if window.size:
            energy[t] = 20.0 * np.log10(np.sqrt(np.mean(window**2)) + 1e-8)
    return energy


def mouth_audio_correlation(
    blendshapes: Any,
    audio: Any,
    fps: float,
    sampling_rate: int = 16000,
    mask: Any = None,
    rig=None,
) -> float:
    """Lip-sync proxy that needs no ground truth: Pearson correlation between mouth opening and audio energy.

    Per sequence, the correlation over valid frames of :func:`mouth_opening` and :func:`audio_energy` (log RMS of
    the samples under each frame); the mean over sequences where it is defined (both signals vary). Speech opens
    the mouth when it is loud, so a good animation scores clearly above 0 (real captures typically 0.3-0.6).

    Args:
        blendshapes: ``[T, 52]``, ``[B, T, 52]`` or list of sequences.
        audio: one waveform per sequence (``[samples]``, list, or ``[B, samples]``) at ``sampling_rate``.
        fps: frame rate of the blendshapes.
    """
    sequences = as_sequences(blendshapes, "blendshapes")
    if isinstance(audio, (list, tuple)) and audio and not np.isscalar(audio[0]):
        waveforms = [_to_numpy(a) for a in audio]
    else:
        array = _to_numpy(audio)
        waveforms = [array] if array.ndim == 1 else list(array)
    if len(waveforms) != len(sequences):
        raise ValueError(f"audio must hold one waveform per sequence ({len(sequences)}), got {len(waveforms)}")
    masks = _masks(mask, [len(s) for s in sequences])
    correlations = []
    for sequence, waveform, m in zip(sequences, waveforms, masks):
        if not np.all(np.isfinite(waveform)):
            raise ValueError("audio must be finite, got NaN/inf samples")
        opening = mouth_opening(sequence, rig)[m]
        energy = audio_energy(waveform, len(sequence), fps, sampling_rate)[m]
        if len(opening) < 2 or opening.std() == 0 or energy.std() == 0:
            continue
        correlations.append(float(np.corrcoef(opening, energy)[0, 1]))
    if not correlations:
        logger.warning("mouth_audio_correlation is undefined: no sequence has varying mouth opening and energy")
        return math.nan
    return float(np.mean(correlations))


def diversity(samples: Any, rig=None, mask: Any = None) -> float:
    """Diversity of several samples generated for the same input.

    Args:
        samples: ``[S, T, 52]`` (S >= 2 samples of one input) or ``[B, S, T, 52]`` / a list of ``[S, T, 52]``
            (several inputs).
        rig: when given, distances are mean vertex distances in mm over all rig vertices; otherwise the L2 norm of
            the coefficient difference.
        mask: ``[T]`` or ``[B, T]`` valid frames shared by the samples of an input.

    Returns:
        For each input, the mean over all sample pairs and valid frames of the distance; averaged over inputs.
    """
    if isinstance(samples, (list, tuple)):
        groups = [_to_numpy(s) for s in samples]
    else:
        array = _to_numpy(samples)
        groups = [array] if array.ndim == 3 else list(array)
    masks = _masks(mask, [g.shape[1] for g in groups]) if mask is not None else [None] * len(groups)
    values = []
    for i, (group, m) in enumerate(zip(groups, masks)):
        if group.ndim != 3 or group.shape[0] < 2 or group.shape[-1] != NUM_BLENDSHAPES:
            raise ValueError(f"samples[{i}] must have shape [samples >= 2, frames, 52], got shape {group.shape}")
        group = np.stack(as_sequences(list(group), f"samples[{i}]"))
        if m is not None:
            group = group[:, m]
        distances = []
        for a in range(len(group)):
            for b in range(a + 1, len(group)):
                difference = group[a] - group[b]
                if rig is None:
                    distances.append(np.linalg.norm(difference, axis=-1).mean())
                else:
                    offsets = rig.offsets(difference)
                    distances.append(np.linalg.norm(offsets, axis=-1).mean())
        values.append(float(np.mean(distances)))
    return float(np.mean(values))


def emotion_accuracy(classifier, blendshapes: Any, emotions: Sequence[str | int], mask: Any = None) -> float:
    """Share of clips whose emotion the :class:`~esarm.evaluation.classifier.ExpressionClassifier` recognises.

    ``emotions`` are the intended emotions (names from ``esarm.blendshapes.EMOTIONS`` or ids).
    """
    sequences = as_sequences(blendshapes, "blendshapes")
    if len(emotions) != len(sequences):
        raise ValueError(f"emotions must hold one label per clip ({len(sequences)}), got {len(emotions)}")
    if mask is not None:
        sequences = [s[m] for s, m in zip(sequences, _masks(mask, [len(s) for s in sequences]))]
    expected = [EMOTIONS[e] if isinstance(e, (int, np.integer)) else str(e) for e in emotions]
    unknown = sorted(set(expected) - set(EMOTIONS))
    if unknown:
        raise ValueError(f"emotions must be names from {list(EMOTIONS)} or ids, got unknown {unknown}")
    predicted = classifier.predict(sequences)
    return float(np.mean([p == e for p, e in zip(predicted, expected)]))


# Names used by the training pipeline (mm, per-frame max over the region, mean over frames).
lip_vertex_error = lve
emotional_vertex_error = eve


def motion_correlation(a: list[np.ndarray], b: list[np.ndarray], indices: list[int]) -> float:
    """Mean over clip pairs of the correlation of the region's motion: the blendshapes of ``indices`` with each
    clip's own mean pose removed (so a different resting pose, e.g. a smile, does not count; the timing and size of
    the movements do), flattened over time and channels."""
    values = []
    for x, y in zip(a, b):
        n = min(len(x), len(y))
        u = x[:n, indices] - x[:n, indices].mean(0)
        v = y[:n, indices] - y[:n, indices].mean(0)
        denominator = float(np.sqrt((u**2).sum() * (v**2).sum()))
        if denominator > 0:
            values.append(float((u * v).sum()) / denominator)
    return float(np.mean(values)) if values else float("nan")
