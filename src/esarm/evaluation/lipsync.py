"""Lip-sync measures: does the mouth open and close with the phonemes, on voices and sentences never trained on?

Per clip, from the phoneme timings of the synthesiser (:mod:`esarm.data.phones`):

- :func:`pearson` between mouth opening and the phoneme-openness curve (:func:`esarm.data.phones.openness_curve`),
  for ``jawOpen`` and for the lip aperture measured on the face rig (:func:`lip_aperture`);
- :func:`closure_ratio`: mean mouth opening on p / b / m frames over its mean on vowel frames (0: the lips close
  for every bilabial; 1: they do not close at all);
- :func:`rest_ratio`: mean mouth opening on pause frames over its mean on speech frames (0: the mouth rests in
  every pause);
- :func:`peak_lag_ms`: the lag at the peak of the cross-correlation, in ms; **positive = the mouth is late**.

Without phoneme timings (real captures such as MEAD), alignment-free measures against the audio itself:
the correlation and lag between mouth opening and the :func:`loudness_envelope`, and :func:`silence_closure` (mouth
opening in the quietest frames relative to the speech frames).

Every number is meant to stand beside two baselines and a ceiling (:func:`lipsync_table`): the loudness envelope
itself (a loudness meter that "opens" with the voice), a linear log-mel probe fitted on a training split
(:class:`~esarm.evaluation.lipsync_baselines.LogMelProbe`), and the ground-truth generator (the corpus's viseme model on the engine's own timings).
Sets without reference motion (the real-speech set, :mod:`esarm.data.real_speech`) have no ground-truth row; there
the baselines of :mod:`esarm.evaluation.lipsync_baselines` (recognised phones, uLipSync) stand beside the model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..blendshapes import BLENDSHAPE_INDEX, NUM_BLENDSHAPES
from ..data.phones import frame_classes, openness_curve
from .lipsync_baselines import LogMelProbe, row_audio

logger = logging.getLogger(__name__)

JAW_OPEN = BLENDSHAPE_INDEX["jawOpen"]

# iBUG-68 inner-lip landmarks, 0-based: the upper inner lip runs 61, 62, 63 (left to right), the lower 67, 66, 65
# below them (1-based 62-64 and 68-66). The aperture is the mean of the three vertical gaps.
INNER_LIP_PAIRS: tuple[tuple[int, int], ...] = ((61, 67), (62, 66), (63, 65))
# "Up" on the face: from the chin (8) to the top of the nose bridge (27), so any rig orientation works.
CHIN, NOSE_BRIDGE = 8, 27

VOWEL_CLASSES = ("open", "mid", "close")
DEFAULT_MAX_LAG_FRAMES = 6  # +-200 ms at 30 fps: wider than any coarticulation lead or audio-visual offset


# ---------------------------------------------------------------------------------------------------------------------
# Mouth signals


def jaw_open(blendshapes: Any) -> np.ndarray:
    """The ``jawOpen`` coefficient per frame, float64 ``[T]`` (``blendshapes`` is ``[T, 52]`` in ARKit order)."""
    blendshapes = np.asarray(blendshapes, dtype=np.float64)
    if blendshapes.ndim != 2 or blendshapes.shape[1] != NUM_BLENDSHAPES:
        raise ValueError(f"blendshapes must have shape [frames, 52], got shape {blendshapes.shape}")
    return blendshapes[:, JAW_OPEN]


def lip_aperture(blendshapes: Any, rig) -> np.ndarray:
    """Vertical inner-lip opening in mm per frame, float64 ``[T]``, measured on the rig.

    The mean over :data:`INNER_LIP_PAIRS` of the upper-lip landmark's height above the lower-lip landmark, along the
    chin-to-nose-bridge direction of the neutral face, floored at 0. The floor matters: ARKit rigs blend linearly,
    so a bilabial closure (``mouthClose`` + ``mouthPress`` over a nearly shut jaw) pushes the lips through each
    other. On the ICT-FaceKit rig the corpus's /p/ viseme gives a signed gap of -12.8 mm; its Euclidean distance
    (what an unsigned measure would report) is 13.3 mm, the opening of an /e/.

    Raises:
        ValueError: the rig has no 68 iBUG landmarks.
    """
    if rig.landmarks is None or len(rig.landmarks) != 68:
        raise ValueError(f"rig must carry 68 iBUG landmarks to measure the lip aperture, got {rig.landmarks!r}")
    weights = np.asarray(blendshapes, dtype=np.float64)
    if weights.ndim != 2 or weights.shape[1] != NUM_BLENDSHAPES:
        raise ValueError(f"blendshapes must have shape [frames, 52], got shape {weights.shape}")
    upper = rig.landmarks[[a for a, _ in INNER_LIP_PAIRS]]
    lower = rig.landmarks[[b for _, b in INNER_LIP_PAIRS]]
    up = rig.neutral[rig.landmarks[NOSE_BRIDGE]] - rig.neutral[rig.landmarks[CHIN]]
    up = np.asarray(up, np.float64) / np.linalg.norm(up)
    points = rig.vertices(weights, indices=np.concatenate([upper, lower]))  # [T, 2 * pairs, 3]
    gaps = (points[:, : len(upper)] - points[:, len(upper) :]) @ up  # [T, pairs]
    return np.maximum(gaps.mean(axis=1), 0.0)


# ---------------------------------------------------------------------------------------------------------------------
# Measures on curves


def _curves(a: Any, b: Any, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    if len(a) != len(b):
        raise ValueError(f"{names[0]} and {names[1]} must have the same number of frames, got {len(a)} and {len(b)}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError(f"{names[0]} and {names[1]} must be finite")
    return a, b


def pearson(mouth: Any, reference: Any) -> float:
    """Pearson correlation of two curves ``[T]``; NaN when either is constant or has fewer than 2 frames."""
    mouth, reference = _curves(mouth, reference, ("mouth", "reference"))
    if len(mouth) < 2 or np.ptp(mouth) == 0 or np.ptp(reference) == 0:
        return math.nan
    return float(np.corrcoef(mouth, reference)[0, 1])


def cross_correlation(mouth: Any, reference: Any, max_lag_frames: int = DEFAULT_MAX_LAG_FRAMES) -> np.ndarray:
    """Pearson r of ``mouth[t + k]`` with ``reference[t]`` for ``k = -max_lag_frames .. max_lag_frames``.

    Returns ``[2 * max_lag_frames + 1]`` (NaN where the overlap is constant or shorter than 2 frames). A peak at
    ``k > 0`` means the mouth does what the reference did ``k`` frames earlier: the mouth is late.
    """
    mouth, reference = _curves(mouth, reference, ("mouth", "reference"))
    if max_lag_frames < 0:
        raise ValueError(f"max_lag_frames must be >= 0, got {max_lag_frames}")
    values = []
    for k in range(-max_lag_frames, max_lag_frames + 1):
        if k >= 0:
            a, b = mouth[k:], reference[: len(reference) - k]
        else:
            a, b = mouth[: len(mouth) + k], reference[-k:]
        values.append(pearson(a, b) if len(a) >= 2 else math.nan)
    return np.array(values)


def peak_lag_ms(mouth: Any, reference: Any, fps: float, max_lag_frames: int = DEFAULT_MAX_LAG_FRAMES) -> float:
    """Lag (ms) at the peak of :func:`cross_correlation`; positive = the mouth is late. NaN when undefined."""
    return _lag_ms(cross_correlation(mouth, reference, max_lag_frames), fps)


def _lag_ms(correlation: np.ndarray, fps: float) -> float:
    if not np.any(np.isfinite(correlation)):
        return math.nan
    max_lag = (len(correlation) - 1) // 2
    return float((int(np.nanargmax(correlation)) - max_lag) * 1000.0 / fps)


def closure_ratio(mouth: Any, classes: Sequence[str]) -> float:
    """Mean ``mouth`` on bilabial (p / b / m) frames over its mean on vowel frames; NaN when either set is empty.

    ``classes`` holds one phone class per frame (:func:`esarm.data.phones.frame_classes`). 0 means the lips close on
    every bilabial; near 1, the mouth opens for p / b / m as much as for vowels.
    """
    mouth = np.asarray(mouth, np.float64).reshape(-1)
    classes = np.asarray(classes)
    if len(classes) != len(mouth):
        raise ValueError(f"classes must have one entry per frame ({len(mouth)}), got {len(classes)}")
    bilabial, vowel = classes == "bilabial", np.isin(classes, VOWEL_CLASSES)
    if not bilabial.any() or not vowel.any() or mouth[vowel].mean() == 0:
        return math.nan
    return float(mouth[bilabial].mean() / mouth[vowel].mean())


def rest_ratio(mouth: Any, classes: Sequence[str]) -> float:
    """Mean ``mouth`` on pause frames over its mean on speech (every other) frame; NaN when either set is empty or
    the speech mean is 0.

    ``classes`` holds one phone class per frame (:func:`esarm.data.phones.frame_classes`). The phoneme-timed
    counterpart of :func:`silence_closure`: 0 means the mouth rests in every pause, 1 that it moves on as in speech.
    """
    mouth = np.asarray(mouth, np.float64).reshape(-1)
    classes = np.asarray(classes)
    if len(classes) != len(mouth):
        raise ValueError(f"classes must have one entry per frame ({len(mouth)}), got {len(classes)}")
    pause = classes == "pause"
    if not pause.any() or pause.all() or mouth[~pause].mean() == 0:
        return math.nan
    return float(mouth[pause].mean() / mouth[~pause].mean())


def loudness_envelope(
    audio: Any, sampling_rate: int, num_frames: int, fps: float, window_frames: float = 2.0
) -> np.ndarray:
    """RMS of the audio in a window of ``window_frames`` frames centred on each frame centre ``(k + 0.5) / fps``.

    Returns float64 ``[num_frames]`` in the audio's units (full scale 1). This is the loudness baseline: a meter that
    opens the mouth with the voice.
    """
    audio = np.asarray(audio, np.float64).reshape(-1)
    if fps <= 0 or sampling_rate <= 0:
        raise ValueError(f"fps and sampling_rate must be > 0, got {fps} and {sampling_rate}")
    cumulative = np.concatenate([[0.0], np.cumsum(audio**2)])
    centres = (np.arange(num_frames) + 0.5) / fps * sampling_rate
    half = window_frames * sampling_rate / fps / 2
    low = np.clip(np.round(centres - half).astype(np.int64), 0, len(audio))
    high = np.clip(np.round(centres + half).astype(np.int64), 0, len(audio))
    return np.sqrt((cumulative[high] - cumulative[low]) / np.maximum(high - low, 1))


def silence_closure(mouth: Any, loudness: Any, quiet_fraction: float = 0.2, speech_fraction: float = 0.5) -> float:
    """Mean mouth opening in the quietest ``quiet_fraction`` of frames over its mean in the loudest ``speech_fraction``.

    Needs no phoneme timings (real captures). A mouth that rests in pauses scores near 0; one that keeps moving in
    silence near 1. NaN when the speech frames' mean opening is 0.
    """
    mouth, loudness = _curves(mouth, loudness, ("mouth", "loudness"))
    if not 0 < quiet_fraction < 1 or not 0 < speech_fraction < 1:
        raise ValueError(
            f"quiet_fraction and speech_fraction must be in (0, 1), got {quiet_fraction}, {speech_fraction}"
        )
    order = np.argsort(loudness, kind="stable")
    quiet = order[: max(1, int(round(quiet_fraction * len(order))))]
    speech = order[len(order) - max(1, int(round(speech_fraction * len(order)))) :]
    if mouth[speech].mean() == 0:
        return math.nan
    return float(mouth[quiet].mean() / mouth[speech].mean())


# ---------------------------------------------------------------------------------------------------------------------
# Sets: the model beside the baselines and the ground truth


def row_num_frames(row: dict[str, Any]) -> int:
    """A row's animation frames: the length of its ``blendshapes``, else ``round(seconds * fps)`` (rows without
    reference motion, such as the real-speech set's)."""
    if row.get("blendshapes") is not None:
        return len(row["blendshapes"])
    return int(round(len(row_audio(row)) / float(row["sampling_rate"]) * float(row["fps"])))


def reference_curves(row: dict[str, Any], num_frames: int) -> tuple[np.ndarray, list[str]]:
    """The openness curve and the frame classes of a row with ``phonemes`` and ``phoneme_times``."""
    duration = len(row_audio(row)) / float(row["sampling_rate"])
    fps = float(row["fps"])
    curve = openness_curve(row["phonemes"], row["phoneme_times"], duration, fps, num_frames)
    return curve, frame_classes(row["phonemes"], row["phoneme_times"], duration, fps, num_frames)


def animate_rows(
    model, rows: Iterable[dict[str, Any]], processor=None, emotion: str = "neutral", intensity: int | None = None,
    seed: int = 0, **generate_kwargs: Any,
) -> list[np.ndarray]:  # fmt: skip
    """Animate each row's audio with an STA model through :func:`esarm.streaming.animate_audio` (greedy, seeded;
    the model as trained: no CPU inference levers).

    Returns one ``[frames, 52]`` array per row with the row's frame count.

    Raises:
        ValueError: the model's frame rate differs from a row's ``fps``.
    """
    from ..streaming import animate_audio

    outputs = []
    for row in rows:
        result = animate_audio(
            model, row_audio(row), sampling_rate=int(row["sampling_rate"]), processor=processor,
            emotion=emotion, intensity=intensity, seed=seed, cpu_defaults=False, **generate_kwargs,
        )  # fmt: skip
        if abs(result.fps - float(row["fps"])) > 1e-6:
            raise ValueError(f"the model animates at {result.fps} fps, but row {row['id']!r} is at {row['fps']} fps")
        frames = row_num_frames(row)
        blendshapes = result.blendshapes[:frames]
        if len(blendshapes) < frames:  # rounding of the audio length: repeat the last frame
            blendshapes = np.concatenate([blendshapes, np.repeat(blendshapes[-1:], frames - len(blendshapes), 0)])
        outputs.append(blendshapes)
    return outputs


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _mean_lag_ms(correlations: Sequence[np.ndarray], fps: float) -> float:
    stacked = np.array(correlations)
    if not len(stacked) or not np.any(np.isfinite(stacked)):
        return math.nan
    return _lag_ms(np.nanmean(np.where(np.isfinite(stacked), stacked, np.nan), axis=0), fps)


def set_scores(
    rows: Sequence[dict[str, Any]],
    mouths: Sequence[dict[str, np.ndarray]],
    max_lag_frames: int = DEFAULT_MAX_LAG_FRAMES,
) -> dict[str, float]:
    """Scores of one source over a set.

    Args:
        rows: clips with ``audio``, ``sampling_rate``, ``fps``, and (for the phoneme measures) ``phonemes`` and
            ``phoneme_times``.
        mouths: per row, mouth curves by name: ``"jaw"`` (``jawOpen`` or any single opening curve) and optionally
            ``"aperture"`` (mm).

    Returns:
        ``r_jaw`` / ``r_aperture`` (mean over clips of r with the openness curve), ``closure_jaw`` /
        ``closure_aperture`` and ``rest_jaw`` / ``rest_aperture`` (:func:`closure_ratio`, :func:`rest_ratio`,
        pooled over the set's frames), ``lag_ms`` (peak of the clip-averaged cross-correlation
        of the jaw with the openness curve; positive = late), and the alignment-free ``envelope_r``,
        ``envelope_lag_ms`` and ``silence_closure`` (on the aperture when given, else the jaw), and ``jaw_std``
        (mean over clips of the jaw curve's standard deviation: a mouth that hardly moves scores a high r on a
        scale nobody sees). Measures that need phoneme timings are NaN for rows without them.
    """
    if len(rows) != len(mouths):
        raise ValueError(f"mouths must hold one entry per row ({len(rows)}), got {len(mouths)}")
    r = {"jaw": [], "aperture": []}
    pooled = {"jaw": ([], []), "aperture": ([], [])}
    lag_curves, envelope_curves, envelope_r, silence, jaw_std = [], [], [], [], []
    fps = float(rows[0]["fps"]) if rows else 30.0
    for row, curves in zip(rows, mouths):
        num_frames = len(curves["jaw"])
        loudness = loudness_envelope(row_audio(row), int(row["sampling_rate"]), num_frames, float(row["fps"]))
        main = curves.get("aperture", curves["jaw"])
        envelope_r.append(pearson(main, loudness))
        envelope_curves.append(cross_correlation(main, loudness, max_lag_frames))
        silence.append(silence_closure(main, loudness))
        jaw_std.append(float(np.std(curves["jaw"])))
        if row.get("phonemes") is None or row.get("phoneme_times") is None:
            continue
        openness, classes = reference_curves(row, num_frames)
        for name, curve in curves.items():
            r[name].append(pearson(curve, openness))
            pooled[name][0].append(np.asarray(curve, np.float64))
            pooled[name][1].extend(classes)
        lag_curves.append(cross_correlation(curves["jaw"], openness, max_lag_frames))
    scores = {
        "r_jaw": _nanmean(r["jaw"]),
        "r_aperture": _nanmean(r["aperture"]),
        "closure_jaw": math.nan,
        "closure_aperture": math.nan,
        "rest_jaw": math.nan,
        "rest_aperture": math.nan,
        "lag_ms": _mean_lag_ms(lag_curves, fps),
        "envelope_r": _nanmean(envelope_r),
        "envelope_lag_ms": _mean_lag_ms(envelope_curves, fps),
        "silence_closure": _nanmean(silence),
        "jaw_std": _nanmean(jaw_std),
    }
    for name, (values, classes) in pooled.items():
        if values:
            scores[f"closure_{name}"] = closure_ratio(np.concatenate(values), classes)
            scores[f"rest_{name}"] = rest_ratio(np.concatenate(values), classes)
    return scores


def _mouths(blendshapes: np.ndarray, rig) -> dict[str, np.ndarray]:
    curves = {"jaw": jaw_open(blendshapes)}
    if rig is not None:
        curves["aperture"] = lip_aperture(blendshapes, rig)
    return curves


def lipsync_table(
    rows: Sequence[dict[str, Any]],
    model_blendshapes: Sequence[np.ndarray] | Mapping[str, Sequence[np.ndarray]] | None = None,
    probe: LogMelProbe | None = None, rig=None, max_lag_frames: int = DEFAULT_MAX_LAG_FRAMES,
    baselines: Mapping[str, Sequence[np.ndarray]] | None = None,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """The lip-sync scores (:func:`set_scores`) of every source on one set, floor and ceiling beside the model.

    Sources: the models (``model_blendshapes``: one ``[frames, 52]`` per row, e.g. from :func:`animate_rows`, as
    source ``"model"``; or ``{name: sequences}`` for several models, one source each), ``"loudness"`` (the
    :func:`loudness_envelope` as the mouth; its own envelope measures and its ``jaw_std``, in audio units, are left
    NaN), ``"log-mel probe"`` (``probe``'s prediction), ``baselines`` (``{name: one opening curve [frames] per
    row}``, scored as jaws, e.g. :func:`esarm.evaluation.lipsync_baselines.baseline_mouths`) and ``"ground truth"``
    (the rows' ``blendshapes``: on the held-out sets, the corpus's generator run on the engine's timings; left out
    when the rows have none). ``rig`` adds the lip-aperture measures. Frames per row: :func:`row_num_frames`.
    """
    rows = list(rows)
    table = {}
    if model_blendshapes is not None and not isinstance(model_blendshapes, Mapping):
        model_blendshapes = {"model": model_blendshapes}
    for kind, sources in (("model_blendshapes", model_blendshapes or {}), ("baselines", baselines or {})):
        for name, sequences in sources.items():
            if len(sequences) != len(rows):
                raise ValueError(f"{kind}[{name!r}] must hold one sequence per row ({len(rows)}), got {len(sequences)}")
    for name, sequences in (model_blendshapes or {}).items():
        table[name] = set_scores(rows, [_mouths(b, rig) for b in sequences], max_lag_frames)
    frames = [row_num_frames(r) for r in rows]
    loudness = [
        {"jaw": loudness_envelope(row_audio(r), int(r["sampling_rate"]), n, float(r["fps"]))}
        for r, n in zip(rows, frames)
    ]
    table["loudness"] = set_scores(rows, loudness, max_lag_frames)
    table["loudness"].update(envelope_r=math.nan, envelope_lag_ms=math.nan, silence_closure=math.nan, jaw_std=math.nan)
    if probe is not None:
        predictions = [
            probe.predict(row_audio(r), int(r["sampling_rate"]), n, float(r["fps"])) for r, n in zip(rows, frames)
        ]
        table["log-mel probe"] = set_scores(rows, [_mouths(p, rig) for p in predictions], max_lag_frames)
    for name, curves in (baselines or {}).items():
        table[name] = set_scores(rows, [{"jaw": np.asarray(c, np.float64)} for c in curves], max_lag_frames)
    if rows and all(r.get("blendshapes") is not None for r in rows):
        table["ground truth"] = set_scores(
            rows, [_mouths(np.asarray(r["blendshapes"]), rig) for r in rows], max_lag_frames
        )
    return table


COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("r_jaw", "r(jawOpen)", "{:.2f}"),
    ("r_aperture", "r(aperture)", "{:.2f}"),
    ("closure_jaw", "closure(jawOpen)", "{:.2f}"),
    ("closure_aperture", "closure(aperture)", "{:.2f}"),
    ("rest_jaw", "rest(jawOpen)", "{:.2f}"),
    ("lag_ms", "lag ms", "{:+.0f}"),
    ("envelope_r", "r(envelope)", "{:.2f}"),
    ("envelope_lag_ms", "envelope lag ms", "{:+.0f}"),
    ("silence_closure", "silence closure", "{:.2f}"),
    ("two_label_r", "two-label lip r", "{:.2f}"),
    ("emotion_head_accuracy", "emotion heard", "{:.2f}"),
)


def format_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """A markdown table: one row per (set, source) of ``{set: {source: scores}}``; NaN or ``None`` shows as ``-``."""
    header = "| set | source | " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for set_name, sources in results.items():
        for source, scores in sources.items():
            values = [scores.get(key) for key, _, _ in COLUMNS]  # None: undefined, as a JSON round trip writes NaN
            cells = [
                "-" if value is None or not np.isfinite(value) else fmt.format(value)
                for value, (_, _, fmt) in zip(values, COLUMNS)
            ]
            lines.append(f"| {set_name} | {source} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = [
    "INNER_LIP_PAIRS",
    "animate_rows",
    "closure_ratio",
    "cross_correlation",
    "format_table",
    "jaw_open",
    "lip_aperture",
    "lipsync_table",
    "loudness_envelope",
    "pearson",
    "peak_lag_ms",
    "reference_curves",
    "rest_ratio",
    "row_num_frames",
    "set_scores",
    "silence_closure",
]
