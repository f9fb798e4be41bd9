"""Batch collators over the corpus schema (``id, speaker, emotion, intensity, sentence, audio, sampling_rate,
blendshapes, fps``) for the training stages.

* :class:`MotionPriorCollator` — padded blendshape windows for the motion prior (stage 1).
* :class:`STACollator` — normalised padded audio, condition ids and blendshapes for the STA model (stages 2-3),
  optionally with a *partner* clip per example (same speaker and sentence, another emotion) for the
  cross-reconstruction loss of the emotion-disentangling encoder.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..blendshapes import NUM_BLENDSHAPES
from ..frames import num_frames
from ..labels import UNKNOWN_SPEAKER_ID, emotion_to_id, intensity_to_id, speaker_to_id
from ..phonetic import HOP_LENGTH as PHONE_HOP
from ..phonetic import NUM_PHONE_FEATURES, num_feature_frames
from .augmentation import AudioAugmenter, resample_timeline
from .phone_features import PHONE_FEATURES_COLUMN
from .phones import OPENNESS, frame_classes
from .schema import SAMPLING_RATE, decode_audio_value

PHONE_CLASS_IDS: dict[str, int] = {name: i for i, name in enumerate(OPENNESS)}
"""Id of each phone class of :func:`esarm.data.phones.phone_class` (the targets of the STA model's phone head)."""
IGNORE_INDEX = -100


def phone_class_ids(phonemes, phoneme_times, num_frames: int, fps: float, speed: float = 1.0) -> np.ndarray:
    """Phone-class id at the centre of each of ``num_frames`` frames (int64 ``[num_frames]``); ``speed`` is the
    factor by which the audio was sped up after synthesis (the phoneme times shrink by it)."""
    starts = np.asarray(phoneme_times, np.float64) / speed
    duration = num_frames / fps
    classes = frame_classes(list(phonemes), starts, duration, fps, num_frames)
    return np.array([PHONE_CLASS_IDS[c] for c in classes], np.int64)


def normalize_audio(audio: np.ndarray) -> np.ndarray:
    """Zero-mean unit-variance normalisation of one clip, as ``Wav2Vec2FeatureExtractor(do_normalize=True)``."""
    audio = np.asarray(audio, dtype=np.float32)
    return ((audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)).astype(np.float32)


def pad_blendshapes(sequences: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad ``[T_i, 52]`` arrays to ``[B, T_max, 52]`` (float32) with a ``[B, T_max]`` bool mask."""
    lengths = [len(s) for s in sequences]
    out = torch.zeros(len(sequences), max(lengths), NUM_BLENDSHAPES)
    mask = torch.zeros(len(sequences), max(lengths), dtype=torch.bool)
    for i, seq in enumerate(sequences):
        out[i, : len(seq)] = torch.as_tensor(np.asarray(seq, dtype=np.float32))
        mask[i, : len(seq)] = True
    return out, mask


def pad_audio(clips: Sequence[np.ndarray], normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D clips to ``input_values [B, S]`` (zeros after the end) and ``attention_mask [B, S]`` (long)."""
    clips = [normalize_audio(c) if normalize else np.asarray(c, dtype=np.float32) for c in clips]
    lengths = [len(c) for c in clips]
    values = torch.zeros(len(clips), max(lengths))
    mask = torch.zeros(len(clips), max(lengths), dtype=torch.long)
    for i, clip in enumerate(clips):
        values[i, : len(clip)] = torch.from_numpy(clip)
        mask[i, : len(clip)] = 1
    return values, mask


class _SeededCollator:
    """RNG of a collator (``seed``, ``_rng``): in a ``DataLoader`` worker it is reseeded from the worker's seed,
    which differs per worker and epoch, so that worker copies do not replay the same draws every epoch (the main
    process keeps the plain seeded sequence)."""

    seed: int
    _rng: random.Random
    _worker_seed: int | None = None

    @property
    def rng(self) -> random.Random:
        info = torch.utils.data.get_worker_info()
        if info is not None and self._worker_seed != info.seed:
            self._worker_seed = info.seed
            self._rng = random.Random(f"{self.seed}-{info.seed}")
        return self._rng


@dataclass
class MotionPriorCollator(_SeededCollator):
    """Batches blendshape sequences for the motion prior; long ones are cropped to a random window.

    Args:
        max_frames: window length in frames (``None`` keeps whole clips).
        random_crop: random window start (training); ``False`` takes the first ``max_frames`` frames.
        seed: seed of the cropping RNG.
    Returns ``{"blendshapes": [B, T, 52] float, "attention_mask": [B, T] bool}``.
    """

    max_frames: int | None = None
    random_crop: bool = True
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self):
        self._rng = random.Random(self.seed)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        sequences = []
        for feature in features:
            seq = np.asarray(feature["blendshapes"], dtype=np.float32)
            if self.max_frames is not None and len(seq) > self.max_frames:
                start = self.rng.randint(0, len(seq) - self.max_frames) if self.random_crop else 0
                seq = seq[start : start + self.max_frames]
            sequences.append(seq)
        blendshapes, mask = pad_blendshapes(sequences)
        return {"blendshapes": blendshapes, "attention_mask": mask}


class PartnerIndex:
    """Finds, for a clip, the clips of the same speaker and sentence spoken with another emotion."""

    def __init__(self, dataset):
        self.groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.emotions: list[str] = list(dataset["emotion"])
        for i, (speaker, sentence) in enumerate(zip(dataset["speaker"], dataset["sentence"])):
            self.groups[(speaker, sentence)].append(i)
        self.dataset = dataset
        self.num_with_partner = sum(
            1
            for i, (speaker, sentence) in enumerate(zip(dataset["speaker"], dataset["sentence"]))
            if self.partners(i, speaker, sentence)
        )

    def partners(self, index: int, speaker: str, sentence: str) -> list[int]:
        emotion = self.emotions[index]
        return [j for j in self.groups.get((speaker, sentence), ()) if self.emotions[j] != emotion]


@dataclass
class STACollator(_SeededCollator):
    """Batches clips for the STA model.

    Each feature needs ``audio`` (16 kHz float array), ``emotion``, ``intensity``, ``speaker`` and, for
    training, ``blendshapes`` ([T, 52]). Returns ``input_values [B, S]``, ``attention_mask [B, S]``,
    ``emotion_ids [B]``, ``intensity_ids [B]``, ``speaker_ids [B]`` and, when blendshapes are present,
    ``blendshapes [B, T, 52]`` with ``frame_mask [B, T]`` (each clip's frames cut to its audio's duration) and,
    when every feature has ``phonemes`` and ``phoneme_times`` (synthetic corpora) and ``phone_targets`` is on,
    ``phone_classes [B, T]`` (:data:`PHONE_CLASS_IDS` per frame, -100 after each clip's end).
    With a :class:`PartnerIndex` (``partner_index``) and features carrying their row index (``__index__``)
    it adds the same keys prefixed ``partner_`` for one other-emotion clip of the same speaker and sentence,
    and ``has_partner [B]`` (False where none exists; such rows repeat the clip itself).

    Args:
        speakers: known speaker names (id = 1 + position; anyone else is 0, "unknown speaker").
        fps: animation frame rate (frames per second) used to cut blendshapes to the audio length.
        speaker_dropout: probability of replacing a speaker id by 0 during training, so that the
            "unknown speaker" embedding is learned for held-out speakers.
        max_seconds: crop clips longer than this many seconds (to a random aligned window when
            ``random_crop``), ``None`` keeps whole clips.
        normalize: zero-mean unit-variance audio per clip (the processor's ``do_normalize``).
        partner_index: enables partner clips for cross-reconstruction (whole clips: no cropping then).
        seed: seed of the collator's RNG (speaker dropout, crops, partner choice, augmentation seeds).
        augmentation: an :class:`~esarm.data.augmentation.AudioAugmenter` applied to each clip's audio (training
            only; ``None``: off), seeded per clip from the collator's RNG; a speed change resamples the clip's
            blendshapes to the new duration.
        phone_targets: add ``phone_classes`` from the phoneme timings when the features have them (the STA
            trainer's phone loss; off by default, since generation and the other stages take no such input).
        phone_features: pass on the cached ``phone_features`` column (:mod:`esarm.data.phone_features`) as
            ``phone_features [B, F, NUM_PHONE_FEATURES]``, zero-padded, resampled like the blendshapes when
            augmentation changes the speed and cropped with the audio (100 frames per second).
    """

    speakers: Sequence[str] = ()
    fps: float = 30.0
    speaker_dropout: float = 0.0
    max_seconds: float | None = None
    random_crop: bool = True
    normalize: bool = True
    partner_index: PartnerIndex | None = None
    seed: int = 0
    augmentation: AudioAugmenter | None = None
    phone_targets: bool = False
    phone_features: bool = False
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self):
        if not 0.0 <= self.speaker_dropout <= 1.0:
            raise ValueError(f"speaker_dropout must be in [0, 1], got {self.speaker_dropout}")
        self._rng = random.Random(self.seed)
        self.speakers = list(self.speakers)

    def _crop(self, audio: np.ndarray, blendshapes: np.ndarray | None, fps: float, phones: np.ndarray | None = None,
              phone_frames: np.ndarray | None = None):  # fmt: skip
        if self.max_seconds is None or len(audio) <= self.max_seconds * SAMPLING_RATE:
            return audio, blendshapes, phones, phone_frames
        window = int(self.max_seconds * fps)
        total_frames = num_frames(len(audio), fps, SAMPLING_RATE)
        start = self.rng.randint(0, max(0, total_frames - window)) if self.random_crop else 0
        a0 = int(round(start / fps * SAMPLING_RATE))
        audio = audio[a0 : a0 + int(round(window / fps * SAMPLING_RATE))]
        if blendshapes is not None:
            blendshapes = blendshapes[start : start + window]
        if phones is not None:
            phones = phones[start : start + window]
        if phone_frames is not None:
            phone_frames = phone_frames[a0 // PHONE_HOP : a0 // PHONE_HOP + num_feature_frames(len(audio))]
        return audio, blendshapes, phones, phone_frames

    def _encode(self, features: list[dict[str, Any]], crop: bool = True) -> dict[str, torch.Tensor]:
        clips, motions, phone_sequences, phone_frame_sequences = [], [], [], []
        has_motion = all(f.get("blendshapes") is not None for f in features)
        has_phones = self.phone_targets and all(
            f.get("phonemes") is not None and f.get("phoneme_times") is not None for f in features
        )
        for feature in features:
            audio = decode_audio_value(feature["audio"])
            rate = int(feature.get("sampling_rate", SAMPLING_RATE) or SAMPLING_RATE)
            if rate != SAMPLING_RATE:
                raise ValueError(f"audio must be sampled at {SAMPLING_RATE} Hz, got sampling_rate={rate}")
            fps = float(feature.get("fps", self.fps) or self.fps)
            motion = np.asarray(feature["blendshapes"], dtype=np.float32) if has_motion else None
            speed = 1.0
            if self.augmentation is not None:
                audio, speed = self.augmentation(audio, SAMPLING_RATE, seed=self.rng.getrandbits(64))
                if motion is not None and speed != 1.0:
                    motion = resample_timeline(motion, speed)
            phone_frames = None
            if self.phone_features:
                if feature.get(PHONE_FEATURES_COLUMN) is None:
                    raise ValueError(f"STACollator with phone_features needs the {PHONE_FEATURES_COLUMN!r} column "
                                     "(esarm.data.phone_features.add_phone_features)")  # fmt: skip
                phone_frames = np.asarray(feature[PHONE_FEATURES_COLUMN], np.float32)
                if speed != 1.0:
                    phone_frames = resample_timeline(phone_frames, speed)
            phones = None
            if has_phones:
                frames = num_frames(len(audio), fps, SAMPLING_RATE)
                phones = phone_class_ids(feature["phonemes"], feature["phoneme_times"], frames, fps, speed)
            if crop:
                audio, motion, phones, phone_frames = self._crop(audio, motion, fps, phones, phone_frames)
            clips.append(audio)
            if motion is not None:
                motions.append(motion[: num_frames(len(audio), fps, SAMPLING_RATE)])
            if phones is not None:
                phone_sequences.append(phones[: num_frames(len(audio), fps, SAMPLING_RATE)])
            if phone_frames is not None:
                phone_frame_sequences.append(phone_frames[: num_feature_frames(len(audio))])
        input_values, attention_mask = pad_audio(clips, normalize=self.normalize)
        speaker_ids = [speaker_to_id(f["speaker"], self.speakers) for f in features]
        if self.speaker_dropout > 0:
            speaker_ids = [UNKNOWN_SPEAKER_ID if self.rng.random() < self.speaker_dropout else s for s in speaker_ids]
        batch = {
            "input_values": input_values,
            "attention_mask": attention_mask,
            "emotion_ids": torch.tensor([emotion_to_id(f["emotion"]) for f in features]),
            "intensity_ids": torch.tensor([intensity_to_id(f["intensity"]) for f in features]),
            "speaker_ids": torch.tensor(speaker_ids),
        }
        if has_motion:
            batch["blendshapes"], batch["frame_mask"] = pad_blendshapes(motions)
        if has_phones:
            phone_classes = torch.full((len(features), max(len(p) for p in phone_sequences)), IGNORE_INDEX)
            for i, phones in enumerate(phone_sequences):
                phone_classes[i, : len(phones)] = torch.from_numpy(phones)
            batch["phone_classes"] = phone_classes
        if self.phone_features:
            padded = torch.zeros(len(features), max(map(len, phone_frame_sequences)), NUM_PHONE_FEATURES)
            for i, frames in enumerate(phone_frame_sequences):
                padded[i, : len(frames)] = torch.from_numpy(frames)
            batch["phone_features"] = padded
        return batch

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.partner_index is None:
            return self._encode(features)
        # cross-reconstruction aligns whole clips, so pairs are never cropped
        batch = self._encode(features, crop=False)
        partners, has_partner = [], []
        for feature in features:
            if "__index__" not in feature:
                raise ValueError("STACollator with partner_index needs features with their row index '__index__'")
            candidates = self.partner_index.partners(int(feature["__index__"]), feature["speaker"], feature["sentence"])
            if candidates:
                partners.append(self.partner_index.dataset[self.rng.choice(candidates)])
                has_partner.append(True)
            else:
                partners.append(feature)
                has_partner.append(False)
        # partners keep their own speaker id (same speaker) but follow the dropout of their anchor
        partner_batch = self._encode(partners, crop=False)
        partner_batch["speaker_ids"] = batch["speaker_ids"].clone()
        batch.update({f"partner_{k}": v for k, v in partner_batch.items()})
        batch["has_partner"] = torch.tensor(has_partner)
        return batch
