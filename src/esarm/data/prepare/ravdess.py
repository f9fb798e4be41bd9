"""RAVDESS (Livingstone and Russo, 2018) prepared from its original files into the package schema.

RAVDESS files are ``Actor_XX/MM-VV-EE-II-SS-RR-AA.<ext>`` with seven two-digit fields:
modality (01 audio-video, 02 video-only, 03 audio-only), vocal channel (01 speech, 02 song), emotion
(01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised), intensity
(01 normal, 02 strong; neutral has no strong), statement (01 "Kids are talking by the door", 02 "Dogs are
sitting by the door"), repetition (01, 02) and actor (01..24; odd male, even female).

Blendshapes need the face and speech needs the voice, so the clips used are the audio-video speech files
(``01-01-*.mp4``, audio from their own track); song and video-only/audio-only files are reported as not used.

Emotions map onto MEAD's names: neutral, happy, sad, angry, fearful -> fear, disgust -> disgusted,
surprised. RAVDESS's *calm* has no MEAD counterpart: it is left out by default (``calm="drop"``, reported),
or labelled neutral with ``calm="neutral"`` (calm is low-arousal and close to neutral in the face, but not the
same). Intensities map onto MEAD's levels: normal -> 2, strong -> 3, neutral -> 1 (MEAD has neutral at
level 1 only). RAVDESS has no contempt.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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

RAVDESS_FPS = 29.97
MODALITIES = {"01": "audio-video", "02": "video-only", "03": "audio-only"}
VOCAL_CHANNELS = {"01": "speech", "02": "song"}
RAVDESS_EMOTIONS = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}  # fmt: skip
EMOTION_TO_MEAD = {
    "neutral": "neutral", "happy": "happy", "sad": "sad", "angry": "angry",
    "fearful": "fear", "disgust": "disgusted", "surprised": "surprised",
}  # fmt: skip
INTENSITY_TO_LEVEL = {"01": 2, "02": 3}
STATEMENTS = {"01": "Kids are talking by the door.", "02": "Dogs are sitting by the door."}
NAME_PATTERN = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
ACTOR_DIR_PATTERN = re.compile(r"^Actor_(\d{2})$")


@dataclass(frozen=True)
class RavdessName:
    """The seven fields of a RAVDESS file name (decoded)."""

    modality: str
    vocal_channel: str
    emotion: str  # RAVDESS's name: neutral, calm, happy, sad, angry, fearful, disgust, surprised
    intensity: str  # "normal" or "strong"
    statement: str  # "01" or "02"
    repetition: int
    actor: int

    @property
    def sex(self) -> str:
        return "M" if self.actor % 2 else "W"


def parse_ravdess_name(name: str) -> RavdessName:
    """Decode a RAVDESS file name (``03-01-06-01-02-01-12.wav``); ``ValueError`` names the bad field."""
    stem = Path(name).name.split(".")[0]
    match = NAME_PATTERN.match(stem)
    if not match:
        raise ValueError(f"name must be seven two-digit fields MM-VV-EE-II-SS-RR-AA, got {Path(name).name!r}")
    modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
    checks = [
        ("modality", modality, MODALITIES),
        ("vocal channel", channel, VOCAL_CHANNELS),
        ("emotion", emotion, RAVDESS_EMOTIONS),
        ("intensity", intensity, {"01": "normal", "02": "strong"}),
        ("statement", statement, STATEMENTS),
        ("repetition", repetition, {"01": 1, "02": 2}),
    ]
    for label, value, allowed in checks:
        if value not in allowed:
            raise ValueError(f"{label} must be one of {sorted(allowed)}, got {value!r} in {Path(name).name!r}")
    if not 1 <= int(actor) <= 24:
        raise ValueError(f"actor must be 01..24, got {actor!r} in {Path(name).name!r}")
    if emotion == "01" and intensity == "02":
        raise ValueError(f"neutral has no strong intensity in RAVDESS, got {Path(name).name!r}")
    return RavdessName(
        modality=MODALITIES[modality],
        vocal_channel=VOCAL_CHANNELS[channel],
        emotion=RAVDESS_EMOTIONS[emotion],
        intensity="normal" if intensity == "01" else "strong",
        statement=statement,
        repetition=int(repetition),
        actor=int(actor),
    )


def find_ravdess_clips(
    root: str | os.PathLike, calm: Literal["drop", "neutral"] = "drop"
) -> tuple[list[ClipSource], list[UnparsedFile]]:
    """Audio-video speech clips of a RAVDESS tree (``Actor_XX`` folders under ``root``) and the unused files."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root must be a RAVDESS folder with Actor_XX folders, got {str(root)!r}")
    if calm not in ("drop", "neutral"):
        raise ValueError(f"calm must be 'drop' or 'neutral', got {calm!r}")
    clips: list[ClipSource] = []
    unparsed: list[UnparsedFile] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        actor_dir = ACTOR_DIR_PATTERN.match(path.parent.name)
        try:
            name = parse_ravdess_name(path.name)
        except ValueError as error:
            unparsed.append(UnparsedFile(str(path), str(error)))
            continue
        if actor_dir is None or int(actor_dir.group(1)) != name.actor:
            unparsed.append(
                UnparsedFile(str(path), f"file of actor {name.actor:02d} must be in Actor_{name.actor:02d}/")
            )
            continue
        if name.modality != "audio-video" or name.vocal_channel != "speech" or path.suffix.lower() != ".mp4":
            unparsed.append(UnparsedFile(str(path), f"not used: {name.modality} {name.vocal_channel} file"))
            continue
        if name.emotion == "calm" and calm == "drop":
            unparsed.append(UnparsedFile(str(path), "not used: 'calm' has no MEAD emotion (calm='neutral' keeps it)"))
            continue
        emotion = "neutral" if name.emotion == "calm" else EMOTION_TO_MEAD[name.emotion]
        level = 1 if emotion == "neutral" else INTENSITY_TO_LEVEL["01" if name.intensity == "normal" else "02"]
        extra: dict[str, Any] = {"ravdess_emotion": name.emotion, "ravdess_intensity": name.intensity,
                                 "repetition": name.repetition}  # fmt: skip
        clips.append(
            ClipSource(
                id=path.stem,
                speaker=f"A{name.actor:02d}",
                emotion=emotion,
                intensity=level,
                sentence=STATEMENTS[name.statement],
                video=str(path),
                audio=str(path),
                extra=extra,
            )
        )
    return clips, unparsed


def _card(report: dict[str, Any], calm: str) -> str:
    sizes = "\n".join(f"| {split} | {count} |" for split, count in sorted(report["split_sizes"].items()))
    speakers = "\n".join(f"- {split}: {', '.join(names)}" for split, names in report["splits"].items())
    return f"""---
license: cc-by-nc-sa-4.0
language: [en]
pretty_name: RAVDESS (esarm blendshapes)
tags: [speech-driven-animation, blendshapes, arkit, emotion, ravdess]
{card_configs_yaml(report)}
---
# RAVDESS prepared for esarm

RAVDESS (Livingstone and Russo, PLoS ONE 2018, CC BY-NC-SA 4.0) prepared by
`esarm.data.prepare.ravdess.prepare_ravdess`: audio-video speech clips -> 52 ARKit blendshapes per frame (MediaPipe
FaceLandmarker, ARKit order, `tongueOut` = 0) and 16 kHz mono audio from the clip's own track.

Labels follow MEAD: fearful -> fear, disgust -> disgusted; intensity normal -> 2, strong -> 3, neutral -> 1.
Calm: {"dropped" if calm == "drop" else "labelled neutral"}. Speakers are `A01`..`A24` (odd male, even female).

| split | clips |
|---|---|
{sizes}

Speaker splits:
{speakers}

Frames without a face (interpolated): {report["missing_frames_interpolated"]}. Clips rejected:
{len(report["rejected"])}. Files not used: {len(report["unparsed"])} (see `report.json`).
"""


def prepare_ravdess(
    root: str | os.PathLike,
    output_dir: str | os.PathLike,
    extractor: BlendshapeExtractor | str | None = None,
    model_asset_path: str | os.PathLike | None = None,
    calm: Literal["drop", "neutral"] = "drop",
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    num_workers: int = 1,
    max_missing_fraction: float = 0.2,
    shard_size: int = 500,
    push_to_hub: str | None = None,
    private: bool = True,
    max_clips: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> PreparationResult:
    """Prepare RAVDESS from its original files (see the module docstring); resumable and idempotent.

    Arguments as ``esarm.data.prepare.mead.prepare_mead``; ``calm`` decides what happens to RAVDESS's calm clips.
    """
    clips, unparsed = find_ravdess_clips(root, calm=calm)
    clips = select_clips(clips, output_dir, max_clips=max_clips, overwrite=overwrite)
    if not clips:
        raise ValueError(f"root {str(root)!r} has no RAVDESS audio-video speech clips (Actor_XX/01-01-*.mp4)")
    speakers = sorted({c.speaker for c in clips})
    splits = split_speakers(
        speakers, validation_fraction, test_fraction, seed, group=lambda s: "M" if int(s[1:]) % 2 else "W"
    )
    return prepare_clips(
        clips,
        output_dir,
        resolve_extractor(extractor, model_asset_path),
        split_of_speaker(splits),
        splits,
        card=lambda report: _card(report, calm),
        unparsed=unparsed,
        num_workers=num_workers,
        max_missing_fraction=max_missing_fraction,
        shard_size=shard_size,
        progress=progress,
        push_to_hub=push_to_hub,
        private=private,
    )
