"""MEAD (Wang et al., ECCV 2020) prepared from its original files into the package schema.

MEAD as distributed (after extracting each speaker's ``video.tar`` and ``audio.tar``)::

    <root>/M003/video/front/angry/level_1/001.mp4     (7 views; only ``front`` is used)
    <root>/M003/audio/angry/level_1/001.m4a

Facts this module checks: 60 actors named ``M###`` / ``W###``, MEAD's 8 emotions (the package's
``EMOTIONS``), ``level_1``..``level_3`` with neutral only at ``level_1``, 30 fps video. Clip numbers are per
emotion and level (MEAD's sentences differ between emotions), so ``sentence`` is ``"<emotion>_<nnn>"`` unless
a ``sentences`` map gives the text.

Splits: by speaker (default, ``split_speakers``) or MEAD's usual sentence split (``split_by="sentence"``:
per speaker, emotion and level, the last 10 neutral clips and the last 6 clips of every other emotion are the
test set, the rest is training).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from ...blendshapes import EMOTIONS
from .preparation import (
    BlendshapeExtractor,
    ClipSource,
    PreparationResult,
    UnparsedFile,
    card_configs_yaml,
    prepare_clips,
    resolve_extractor,
    select_clips,
    split_of_speaker,
    split_speakers,
)

MEAD_FPS = 30.0
MEAD_NUM_ACTORS = 60
MEAD_VIEWS = ("front", "down", "left_30", "left_60", "right_30", "right_60", "top")
SPEAKER_PATTERN = re.compile(r"^[MW]\d{3}$")
LEVEL_PATTERN = re.compile(r"^level_([123])$")
CLIP_PATTERN = re.compile(r"^(\d{3})$")
MEAD_TEST_LAST = {"neutral": 10, "other": 6}


def _parse_clip(speaker_dir: Path, relative: Path) -> tuple[dict[str, Any] | None, str | None]:
    """Labels from ``<emotion>/level_<k>/<nnn>`` (a path relative to the view or audio folder), or a reason."""
    parts = relative.with_suffix("").parts
    if len(parts) != 3:
        return None, "expected <emotion>/level_<k>/<nnn>"
    emotion, level, number = parts
    if emotion not in EMOTIONS:
        return None, f"emotion must be one of {EMOTIONS}, got {emotion!r}"
    level_match = LEVEL_PATTERN.match(level)
    if not level_match:
        return None, f"level must be level_1, level_2 or level_3, got {level!r}"
    intensity = int(level_match.group(1))
    if emotion == "neutral" and intensity != 1:
        return None, f"neutral clips exist only at level_1 in MEAD, got {level}"
    if not CLIP_PATTERN.match(number):
        return None, f"clip name must be three digits (001.mp4), got {relative.name!r}"
    return {"speaker": speaker_dir.name, "emotion": emotion, "intensity": intensity, "number": number}, None


def find_mead_clips(
    root: str | os.PathLike, view: str = "front", sentences: dict[str, str] | None = None
) -> tuple[list[ClipSource], list[UnparsedFile]]:
    """Clips of a MEAD tree (speaker folders under ``root``, or ``root`` itself a speaker folder).

    Returns the clips with both video (``view``) and audio, and every file that was not used with the reason
    (bad names, levels or emotions, video without audio and audio without video).
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root must be a MEAD folder with speaker folders (M003, W009, ...), got {str(root)!r}")
    if view not in MEAD_VIEWS:
        raise ValueError(f"view must be one of {MEAD_VIEWS}, got {view!r}")
    speaker_dirs = [root] if SPEAKER_PATTERN.match(root.name) else sorted(p for p in root.iterdir() if p.is_dir())
    clips: list[ClipSource] = []
    unparsed: list[UnparsedFile] = []
    for speaker_dir in speaker_dirs:
        if not SPEAKER_PATTERN.match(speaker_dir.name):
            unparsed.append(UnparsedFile(str(speaker_dir), "speaker folder must be named M### or W### (M003)"))
            continue
        video_root, audio_root = speaker_dir / "video" / view, speaker_dir / "audio"
        audio_files = {p.relative_to(audio_root).with_suffix(""): p for p in sorted(audio_root.rglob("*.m4a"))}
        used_audio = set()
        for video in sorted(video_root.rglob("*.mp4")):
            relative = video.relative_to(video_root)
            labels, reason = _parse_clip(speaker_dir, relative)
            if labels is None:
                unparsed.append(UnparsedFile(str(video), reason))
                continue
            audio = audio_files.get(relative.with_suffix(""))
            if audio is None:
                unparsed.append(UnparsedFile(str(video), "no matching audio/<emotion>/level_<k>/<nnn>.m4a"))
                continue
            used_audio.add(relative.with_suffix(""))
            key = f"{labels['emotion']}/{labels['number']}"
            sentence = (sentences or {}).get(key, f"{labels['emotion']}_{labels['number']}")
            clip_id = f"{labels['speaker']}_{labels['emotion']}_level_{labels['intensity']}_{labels['number']}"
            clips.append(
                ClipSource(
                    id=clip_id,
                    speaker=labels["speaker"],
                    emotion=labels["emotion"],
                    intensity=labels["intensity"],
                    sentence=sentence,
                    video=str(video),
                    audio=str(audio),
                    extra={"number": labels["number"]},
                )
            )
        for relative, audio in audio_files.items():
            if relative not in used_audio:
                labels, reason = _parse_clip(speaker_dir, relative.with_suffix(".m4a"))
                unparsed.append(UnparsedFile(str(audio), reason or f"no matching video/{view}/... .mp4"))
    return clips, unparsed


def mead_test_clips(clips: Sequence[ClipSource]) -> set[str]:
    """MEAD's usual test set: per speaker, emotion and level, the last 10 neutral / last 6 other clips."""
    groups: dict[tuple[str, str, int], list[ClipSource]] = {}
    for clip in clips:
        groups.setdefault((clip.speaker, clip.emotion, clip.intensity), []).append(clip)
    test = set()
    for (_, emotion, _), members in groups.items():
        last = MEAD_TEST_LAST["neutral" if emotion == "neutral" else "other"]
        members = sorted(members, key=lambda c: c.extra["number"])
        test.update(c.id for c in members[-last:])
    return test


def _card(report: dict[str, Any], split_by: str) -> str:
    sizes = "\n".join(f"| {split} | {count} |" for split, count in sorted(report["split_sizes"].items()))
    splits = report["splits"]
    speakers = (
        "\n".join(f"- {split}: {', '.join(names)}" for split, names in splits.items())
        if split_by == "speaker"
        else "MEAD's sentence split (per speaker, emotion and level: last 10 neutral / last 6 other clips are test)."
    )
    return f"""---
license: other
license_name: mead
language: [en]
pretty_name: MEAD (esarm blendshapes)
tags: [speech-driven-animation, blendshapes, arkit, emotion, mead]
{card_configs_yaml(report)}
---
# MEAD prepared for esarm

MEAD (Wang et al., *MEAD: A Large-scale Audio-visual Dataset for Emotional Talking-face Generation*, ECCV 2020)
prepared by `esarm.data.prepare.mead.prepare_mead`: front-view video -> 52 ARKit blendshapes per frame (MediaPipe
FaceLandmarker, ARKit order, `tongueOut` = 0), audio -> 16 kHz mono FLAC, lengths aligned. Respect MEAD's
license: these files derive from it.

| split | clips |
|---|---|
{sizes}

Splits ({split_by}):
{speakers}

Frames without a face (interpolated): {report["missing_frames_interpolated"]}. Clips rejected:
{len(report["rejected"])}. Files not used: {len(report["unparsed"])}. Details in `report.json`; split lists in
`splits.json`.

Columns: `id`, `speaker`, `emotion`, `intensity` (MEAD level), `sentence` (`<emotion>_<nnn>` unless a sentence
map was given), `audio` (`{{bytes, path}}`: 16-bit FLAC at 16 kHz; `esarm.data.schema.decode_audio_value` gives
float32 samples), `sampling_rate`, `blendshapes` (float32 [frames, 52]), `fps` (30).
"""


def prepare_mead(
    root: str | os.PathLike,
    output_dir: str | os.PathLike,
    extractor: BlendshapeExtractor | str | None = None,
    model_asset_path: str | os.PathLike | None = None,
    view: str = "front",
    split_by: Literal["speaker", "sentence"] = "speaker",
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    sentences: dict[str, str] | str | os.PathLike | None = None,
    num_workers: int = 1,
    max_missing_fraction: float = 0.2,
    shard_size: int = 500,
    push_to_hub: str | None = None,
    private: bool = True,
    max_clips: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> PreparationResult:
    """Prepare MEAD from its original files (see the module docstring); resumable and idempotent.

    Args:
        root: folder with the extracted speaker folders (``M003/video/front/...``, ``M003/audio/...``).
        output_dir: where the parquet shards, card, ``splits.json`` and ``report.json`` go (plus ``.cache``).
        extractor: blendshapes from frames, or ``"package.module:ClassName"`` of one (default: MediaPipe with
            ``model_asset_path``).
        model_asset_path: MediaPipe's ``face_landmarker.task`` (default ``$ESARM_MEDIAPIPE_TASK``).
        view: camera view to use (``front``).
        split_by: ``"speaker"`` (train / validation / test speakers) or ``"sentence"`` (MEAD's test clips).
        validation_fraction, test_fraction, seed: the speaker split (balanced between M and W speakers).
        sentences: ``{"<emotion>/<nnn>": text}`` (or a JSON file of it) to fill ``sentence``.
        num_workers: processes; max_missing_fraction: most frames without a face a clip may have.
        shard_size: clips per parquet shard; push_to_hub: a dataset repo id to upload to (``private``).
        max_clips: use only the first clips (sorted by id; a quick look). overwrite: start from scratch (the
            cache of finished clips is deleted too).
    """
    if split_by not in ("speaker", "sentence"):
        raise ValueError(f"split_by must be 'speaker' or 'sentence', got {split_by!r}")
    if sentences is not None and not isinstance(sentences, dict):
        sentences = json.loads(Path(sentences).read_text())
    clips, unparsed = find_mead_clips(root, view=view, sentences=sentences)
    clips = select_clips(clips, output_dir, max_clips=max_clips, overwrite=overwrite)
    if not clips:
        raise ValueError(f"root {str(root)!r} has no MEAD clips (video/{view}/<emotion>/level_<k>/<nnn>.mp4 + audio)")
    speakers = sorted({c.speaker for c in clips})
    if len(speakers) > MEAD_NUM_ACTORS:
        raise ValueError(f"MEAD has {MEAD_NUM_ACTORS} actors, found {len(speakers)} speaker folders")
    if split_by == "speaker":
        splits = split_speakers(speakers, validation_fraction, test_fraction, seed, group=lambda s: s[0])
        split_of = split_of_speaker(splits)
    else:
        test = mead_test_clips(clips)
        splits = {"train": sorted(c.id for c in clips if c.id not in test), "test": sorted(test)}

        def split_of(clip: ClipSource) -> str:
            return "test" if clip.id in test else "train"

    extractor = resolve_extractor(extractor, model_asset_path)
    return prepare_clips(
        clips,
        output_dir,
        extractor,
        split_of,
        splits,
        card=lambda report: _card(report, split_by),
        unparsed=unparsed,
        num_workers=num_workers,
        max_missing_fraction=max_missing_fraction,
        fps=MEAD_FPS,
        shard_size=shard_size,
        progress=progress,
        push_to_hub=push_to_hub,
        private=private,
    )
