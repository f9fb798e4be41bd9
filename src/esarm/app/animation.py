"""What one press of the app's "Animate" button does, without Gradio: speech in, the files the page shows out.

:class:`AppAnimator` holds the STA model, its processor, the face rig and a cached renderer; :meth:`AppAnimator.
animate` animates one recording under one emotion (or two, side by side) and writes, in a fresh folder per run,
the audio as 16 kHz WAV (what the 3D viewer plays) and one GLB / Live Link CSV / JSON per animation;
:meth:`AppAnimator.render` then adds the MP4 with the audio muxed in. They are two steps because the software
renderer is the slow part (on 5 s of speech, 1.7 s for the MP4 against 0.23 s for the default model: docs/app.md,
``benchmarks/app.py``), so the page shows the 3D view while the video renders. The Gradio page
(:mod:`esarm.app.ui`) only lays these out.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from esarm.audio import load_audio
from esarm.blendshapes import BLENDSHAPE_INDEX, EMOTIONS, INTENSITIES
from esarm.export import write_gltf, write_json, write_live_link_csv
from esarm.export.render import DEFAULT_CURVES, FaceRenderer, render_video
from esarm.rig import FaceRig, resolve_rig
from esarm.streaming import animate_audio, resolve_condition_ids

logger = logging.getLogger(__name__)

__all__ = ["AppAnimator", "AppResult", "curves_figure"]

AUTO = "auto"
UNKNOWN_SPEAKER = "unknown"
VIEWER_SAMPLING_RATE = 16000


@dataclass
class AppResult:
    """Files and facts of one run of the app.

    Attributes:
        folder: the run's folder (everything below is inside it).
        audio: the input as 16 kHz mono WAV, for the 3D viewer's player.
        duration: seconds of audio.
        fps: animation frame rate.
        labels: one label per animation (``"happy"``, or ``"auto: heard sad"``).
        emotions: the emotion each animation was made with (the heard one for ``auto``).
        blendshapes: ``[frames, 52]`` per animation, ARKit order.
        glb, csv, json: one file per animation.
        video: the MP4 (all animations side by side, audio muxed in); ``None`` until :meth:`AppAnimator.render`.
        timings: seconds per step (``"model"``, ``"files"``, then ``"video"``) and their ``"total"``.
    """

    folder: Path
    audio: Path
    duration: float
    fps: float
    labels: list[str]
    emotions: list[str]
    blendshapes: list[np.ndarray]
    glb: list[Path]
    csv: list[Path]
    json: list[Path]
    video: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def downloads(self) -> list[Path]:
        """Every animation file, in the order CSV, GLB, JSON per animation."""
        return [path for files in zip(self.csv, self.glb, self.json) for path in files]

    def summary(self) -> str:
        """One line for people: what was heard and what it cost."""
        timings = self.timings
        frames = len(self.blendshapes[0])
        steps = ", ".join(f"{name} {timings[name]:.2f} s" for name in ("model", "files", "video") if name in timings)
        total = timings.get("total", 0.0)
        return (
            f"{' | '.join(self.labels)} · {self.duration:.2f} s of audio, {frames} frames at {self.fps:g} fps · "
            f"{steps} · total {total:.2f} s (real-time factor {total / max(self.duration, 1e-9):.2f})"
        )


class AppAnimator:
    """The model side of the app: animates recordings and writes what the page shows.

    Args:
        model: an ``ESARMSTAForGeneration`` in eval mode.
        processor: its ``ESARMProcessor`` or ``None`` (default processor, no named speakers).
        output_dir: folder of the runs (one sub-folder each).
        rig: face rig of the GLB and the video (a :class:`~esarm.rig.FaceRig`, a path, or ``None`` for
            :func:`esarm.rig.resolve_rig`).
        video_height: height of each face in the MP4, in pixels.
        max_runs: runs kept in ``output_dir``; the oldest are deleted beyond it, so a long-running Space does not
            fill its disk.
    """

    def __init__(
        self,
        model: Any,
        processor: Any = None,
        output_dir: str | os.PathLike = "esarm-app",
        rig: FaceRig | str | os.PathLike | None = None,
        video_height: int = 320,
        max_runs: int = 32,
    ):
        if max_runs < 1:
            raise ValueError(f"max_runs must be at least 1, got {max_runs}")
        self.model = model
        self.processor = processor
        self.output_dir = Path(output_dir).expanduser().resolve()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.rig = resolve_rig(rig)
        self.renderer = FaceRenderer(self.rig, height=video_height)
        self.max_runs = int(max_runs)
        self.sampling_rate = int(model.config.sampling_rate)

    @property
    def speakers(self) -> list[str]:
        """Names of the speakers the processor knows (empty without a processor)."""
        return list(getattr(self.processor, "speakers", None) or [])

    def animate(
        self,
        audio: str | os.PathLike | np.ndarray,
        emotion: str = "neutral",
        intensity: int | None = None,
        speaker: str | None = None,
        epsilon: float = 0.0,
        seed: int | None = 0,
        compare_emotion: str | None = None,
        sampling_rate: int | None = None,
    ) -> AppResult:
        """Animate ``audio`` (a file path, or samples at ``sampling_rate``) under ``emotion``, and under
        ``compare_emotion`` too when given (side by side); write the run's audio, GLB, CSV and JSON files and
        return them (no video yet: :meth:`render`).

        ``emotion`` / ``compare_emotion`` are ``"auto"`` (the emotion heard in the audio) or a name of ``EMOTIONS``;
        ``intensity`` 1..3 (``None``: the model's default); ``speaker`` a known speaker, ``"unknown"`` or ``None``;
        ``epsilon`` in [0, 1]; ``seed`` makes sampling and epsilon noise repeatable.
        """
        emotions = [emotion] if compare_emotion in (None, "", "none") else [emotion, compare_emotion]
        for name, value in zip(("emotion", "compare_emotion"), emotions):
            if value != AUTO and value not in EMOTIONS:
                raise ValueError(f"{name} must be 'auto' or one of {list(EMOTIONS)}, got {value!r}")
        if intensity is not None and int(intensity) not in INTENSITIES:
            raise ValueError(f"intensity must be one of {list(INTENSITIES)}, got {intensity!r}")
        if not 0.0 <= float(epsilon) <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        speaker = None if speaker in (None, "", UNKNOWN_SPEAKER) else speaker
        resolve_condition_ids(None, intensity, speaker, self.speakers)  # a bad speaker fails before any work
        if audio is None or (isinstance(audio, str) and not audio):
            raise ValueError("audio must be a recording (upload a file or use the microphone), got none")

        started = time.perf_counter()
        samples = load_audio(audio, sampling_rate=sampling_rate, target_rate=self.sampling_rate)
        if samples.size == 0:
            raise ValueError("audio must hold at least one sample, got an empty recording")
        folder = self._new_run_folder()
        audio_path = folder / "audio.wav"
        viewer_audio = load_audio(samples, sampling_rate=self.sampling_rate, target_rate=VIEWER_SAMPLING_RATE)
        soundfile.write(audio_path, viewer_audio, VIEWER_SAMPLING_RATE, subtype="PCM_16")

        animations, used, labels = [], [], []
        for requested in emotions:
            result = animate_audio(
                self.model, samples, sampling_rate=self.sampling_rate, processor=self.processor, emotion=requested,
                intensity=None if intensity is None else int(intensity), speaker=speaker, epsilon=float(epsilon),
                seed=None if seed is None else int(seed),
            )  # fmt: skip
            animations.append(result.blendshapes)
            used.append(result.emotion)
            labels.append(f"auto: heard {result.emotion}" if requested == AUTO else requested)
        fps = float(result.fps)
        model_done = time.perf_counter()

        names = _file_names(emotions)
        glb, csv, json = [], [], []
        for name, animation, label in zip(names, animations, labels):
            glb.append(write_gltf(folder / f"{name}.glb", animation, fps, rig=self.rig, name="face"))
            csv.append(write_live_link_csv(folder / f"{name}.csv", animation, fps))
            metadata = {"emotion": label, "intensity": intensity, "speaker": speaker, "epsilon": float(epsilon)}
            json.append(write_json(folder / f"{name}.json", animation, fps, metadata=metadata))
        files_done = time.perf_counter()

        timings = {"model": model_done - started, "files": files_done - model_done, "total": files_done - started}
        result = AppResult(
            folder=folder, audio=audio_path, duration=len(samples) / self.sampling_rate, fps=fps, labels=labels,
            emotions=used, blendshapes=animations, glb=glb, csv=csv, json=json, timings=timings,
        )  # fmt: skip
        logger.info("%s", result.summary())
        return result

    def render(self, result: AppResult) -> Path:
        """Render ``result``'s animations side by side, with its audio, to ``animation.mp4`` in its folder; sets
        ``result.video`` and adds the time to ``result.timings``."""
        started = time.perf_counter()
        samples, rate = soundfile.read(result.audio, dtype="float32")
        several = len(result.blendshapes) > 1
        result.video = render_video(
            result.folder / "animation.mp4", result.blendshapes if several else result.blendshapes[0], result.fps,
            audio=samples, sampling_rate=rate, labels=result.labels if several else None, renderer=self.renderer,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        result.timings["video"] = seconds
        result.timings["total"] = result.timings.get("total", 0.0) + seconds
        return result.video

    def _new_run_folder(self) -> Path:
        runs = sorted((p for p in self.output_dir.glob("run-*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
        for old in runs[: max(0, len(runs) - self.max_runs + 1)]:
            shutil.rmtree(old, ignore_errors=True)
        folder = self.output_dir / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        return folder


def _file_names(emotions: list[str]) -> list[str]:
    """``face_happy`` per animation; the same emotion twice gets ``_1`` / ``_2``."""
    names = [f"face_{emotion}" for emotion in emotions]
    if len(set(names)) < len(names):
        names = [f"{name}_{i + 1}" for i, name in enumerate(names)]
    return names


def curves_figure(animations: list[np.ndarray], labels: list[str], fps: float, names: tuple[str, ...] = DEFAULT_CURVES):
    """A matplotlib ``Figure`` of some blendshape curves over time: one colour per blendshape, one line style per
    animation (solid, dashed, ...)."""
    from matplotlib.figure import Figure

    unknown = [n for n in names if n not in BLENDSHAPE_INDEX]
    if unknown:
        raise ValueError(f"names must be ARKit blendshape names, got unknown names {unknown}")
    if len(labels) != len(animations):
        raise ValueError(f"labels must have one label per animation ({len(animations)}), got {len(labels)}")
    figure = Figure(figsize=(9, 3.2), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    styles = ["-", "--", ":", "-."]
    for a, animation in enumerate(animations):
        seconds = np.arange(len(animation)) / fps
        for c, name in enumerate(names):
            axes.plot(
                seconds, animation[:, BLENDSHAPE_INDEX[name]], styles[a % len(styles)], color=f"C{c}",
                label=name if a == 0 else None, linewidth=1.4,
            )  # fmt: skip
    axes.set_xlabel("time (s)")
    axes.set_ylabel("weight")
    axes.set_ylim(-0.02, 1.02)
    title = "  vs  ".join(f"{label} ({styles[a % len(styles)]})" for a, label in enumerate(labels))
    axes.set_title(f"blendshape curves: {title}", fontsize=10)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return figure
