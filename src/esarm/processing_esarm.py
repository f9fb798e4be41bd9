"""ESARMProcessor: speech and condition labels -> model inputs.

Audio (paths in any format ``esarm.audio.load_audio`` reads, numpy arrays, tensors, or lists of them; any sampling
rate; stereo downmixed) becomes ``input_values`` ``[batch, samples]`` at 16 kHz, zero-mean / unit-variance per clip
and right-padded, with an ``attention_mask``. Emotion, intensity and speaker labels become ids:

- emotion: a name of ``esarm.blendshapes.EMOTIONS`` (any case) or an id 0..7 -> ``emotion_ids``;
- intensity: a level 1..3 (MEAD's intensities) -> ``intensity_ids`` 0..2;
- speaker: a name of ``processor.speakers`` (id 1..N), an id 0..N, or ``None`` -> ``speaker_ids``; ``None`` and
  names the model does not know are the unknown speaker (0).

With ``phone_features=True`` it also returns ``phone_features`` ``[batch, frames, NUM_PHONE_FEATURES]``: PocketSphinx's
recognised phone per 10 ms frame (:mod:`esarm.phonetic`), the input of the STA model's phone path
(``audio_front_end="phones"`` or ``"log_mel+phones"``), which otherwise decodes the audio itself; decoded with
``phone_decoder_settings``, which must be the model's ``config.phone_decoder_settings`` (the pipeline checks).

The rule is :mod:`esarm.labels`'s (digit strings are read as numbers, names match in any case).

A single label applies to every clip of the batch; a list gives one label per clip.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from transformers import AutoProcessor, BatchFeature, Wav2Vec2FeatureExtractor
from transformers.processing_utils import ProcessorMixin

from .audio import check_duration, load_audio, min_samples
from .labels import UNKNOWN_SPEAKER_ID, emotion_to_id, intensity_to_id, speaker_to_id
from .phonetic import decoder_settings, padded_phone_features

logger = logging.getLogger(__name__)

__all__ = ["ESARMProcessor"]


def _default_feature_extractor() -> Wav2Vec2FeatureExtractor:
    """The feature extractor of ``microsoft/wavlm-base-plus``: 16 kHz, per-clip normalisation, attention mask."""
    return Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=True
    )


def _is_scalar_label(value: Any) -> bool:
    return isinstance(value, (str, int, np.integer)) or (hasattr(value, "ndim") and value.ndim == 0)


class ESARMProcessor(ProcessorMixin):
    """Turns speech and emotion / intensity / speaker labels into inputs of the ESARM models.

    Args:
        feature_extractor: A ``Wav2Vec2FeatureExtractor`` (default: that of ``microsoft/wavlm-base-plus``).
        speakers: Names of the known speakers; speaker ``speakers[i]`` has id ``i + 1`` (0 = unknown speaker).
        fps: Animation frame rate (frames per second) of the model; audio shorter than one frame is rejected.
        phone_features: Also return ``phone_features`` (PocketSphinx phones per 10 ms frame; needs ``pip install
            pocketsphinx``).
        phone_decoder_settings: The allphone settings those phones are decoded with: the model's
            ``config.phone_decoder_settings`` (saved with the processor, so that a loaded processor decodes as the
            saved one did; :func:`esarm.phonetic.decoder_settings` checks them). `None`: the package's
            :data:`esarm.phonetic.DECODER_SETTINGS`.
    """

    def __init__(
        self,
        feature_extractor: Wav2Vec2FeatureExtractor | None = None,
        speakers: Sequence[str] | None = None,
        fps: float = 30.0,
        phone_features: bool = False,
        phone_decoder_settings: dict | None = None,
        **kwargs,
    ):
        if feature_extractor is None:
            feature_extractor = _default_feature_extractor()
        speakers = [] if speakers is None else list(speakers)
        if not all(isinstance(name, str) and name for name in speakers):
            raise ValueError(f"speakers must be a list of non-empty names (str), got {speakers!r}")
        folded = [name.casefold() for name in speakers]
        # names match in any case (esarm.labels), so two names that differ only in case would be one speaker
        duplicates = sorted({name for name in speakers if folded.count(name.casefold()) > 1})
        if duplicates:
            raise ValueError(f"speakers must be unique names, got duplicates {duplicates}")
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
            raise ValueError(f"fps must be a positive number of frames per second, got {fps!r}")
        if not isinstance(phone_features, bool):
            raise ValueError(f"phone_features must be True or False, got {phone_features!r}")
        self.speakers = speakers
        self.fps = float(fps)
        if phone_decoder_settings is not None:
            phone_decoder_settings = decoder_settings(phone_decoder_settings, argument="phone_decoder_settings")
        self.phone_features = phone_features
        self.phone_decoder_settings = phone_decoder_settings
        super().__init__(feature_extractor, **kwargs)

    # ---- label encoding -----------------------------------------------------------------------------------------
    @property
    def sampling_rate(self) -> int:
        """Sampling rate (Hz) of ``input_values``."""
        return int(self.feature_extractor.sampling_rate)

    @property
    def min_samples(self) -> int:
        """Shortest accepted audio in samples: one animation frame."""
        return min_samples(self.sampling_rate, self.fps)

    @property
    def num_speakers(self) -> int:
        """Known speakers N (speaker ids 1..N; id 0 is the unknown speaker)."""
        return len(self.speakers)

    def emotion_to_id(self, emotion: str | int) -> int:
        """Id (0..7) of an emotion name of ``EMOTIONS`` (any case) or id (:func:`esarm.labels.emotion_to_id`)."""
        return emotion_to_id(emotion)

    def intensity_to_id(self, intensity: str | int) -> int:
        """Id (0..2) of an intensity level 1..3 (:func:`esarm.labels.intensity_to_id`)."""
        return intensity_to_id(intensity)

    def speaker_to_id(self, speaker: str | int | None) -> int:
        """Id of a known speaker name (1..N, any case), an id (0..N), or 0 (unknown speaker) for ``None`` and for
        names the model does not know (:func:`esarm.labels.speaker_to_id`)."""
        return speaker_to_id(speaker, self.speakers)

    def _encode_labels(self, labels: Any, batch: int, argument: str, encode) -> list[int]:
        if _is_scalar_label(labels):
            labels = [labels.item() if hasattr(labels, "item") else labels] * batch
        elif hasattr(labels, "tolist"):
            labels = labels.tolist()
        labels = list(labels)
        if len(labels) != batch:
            raise ValueError(f"{argument} must be one label or one per audio clip ({batch}), got {len(labels)} labels")
        return [encode(label) for label in labels]

    # ---- main entry point ---------------------------------------------------------------------------------------
    def _load_clips(self, audio: Any, sampling_rate: int | None) -> list[np.ndarray]:
        if audio is None:
            raise ValueError("audio must be a path, an array of samples or a list of them, got None")
        if isinstance(audio, (list, tuple)):
            if len(audio) == 0:
                raise ValueError("audio must hold at least one clip, got an empty list")
            # A flat list of numbers is one clip; otherwise each element is a clip.
            clips = [audio] if isinstance(audio[0], (int, float, np.number)) else list(audio)
        elif hasattr(audio, "ndim") and audio.ndim == 2 and audio.shape[0] > 2:
            raise ValueError(
                "audio must be 1-D [samples], 2-D (channels, samples) with 1-2 channels, a path or a list of them, "
                f"got an array of shape {tuple(audio.shape)} (pass a list for a batch of clips)"
            )
        else:
            clips = [audio]
        loaded = []
        for index, clip in enumerate(clips):
            is_path = isinstance(clip, (str, os.PathLike))
            try:
                samples = load_audio(clip, None if is_path else sampling_rate, target_rate=self.sampling_rate)
            except ValueError as error:
                raise ValueError(f"audio[{index}]: {error}") from None
            loaded.append(check_duration(samples, self.sampling_rate, self.fps, argument=f"audio[{index}]"))
        return loaded

    def __call__(
        self,
        audio: Any = None,
        sampling_rate: int | None = None,
        emotion: Any = None,
        intensity: Any = None,
        speaker: Any = None,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """Prepare one clip or a batch of clips.

        Args:
            audio: A path, an array / tensor ``[samples]`` or ``(channels, samples)``, or a list of them.
            sampling_rate: Rate (Hz) of array inputs (files carry their own); resampled to 16 kHz.
            emotion: Emotion name or id, or one per clip; ``None`` leaves ``emotion_ids`` out (the STA model then
                hears the emotion itself, ``emotion="auto"``).
            intensity: Intensity level 1..3, or one per clip; ``None`` leaves ``intensity_ids`` out.
            speaker: Known speaker name or id, or one per clip; ``None`` = unknown speaker (id 0).
            return_tensors: ``"pt"`` (default), ``"np"`` or ``None`` (lists).

        Returns:
            ``BatchFeature`` with ``input_values`` ``[batch, samples]``, ``attention_mask`` ``[batch, samples]``,
            ``speaker_ids`` ``[batch]``, when given, ``emotion_ids`` and ``intensity_ids`` ``[batch]`` and, with
            ``phone_features=True``, ``phone_features`` ``[batch, max(samples) // 160 + 1, NUM_PHONE_FEATURES]``.
        """
        if kwargs:
            raise ValueError(f"unexpected arguments {sorted(kwargs)}; expected audio, sampling_rate, emotion, "
                             "intensity, speaker, return_tensors")  # fmt: skip
        clips = self._load_clips(audio, sampling_rate)
        batch = len(clips)
        features = self.feature_extractor(
            clips,
            sampling_rate=self.sampling_rate,
            padding=True,
            return_attention_mask=True,
            return_tensors="np",
        )
        data = {
            "input_values": np.asarray(features["input_values"], dtype=np.float32),
            "attention_mask": np.asarray(features["attention_mask"], dtype=np.int64),
        }
        if self.phone_features:
            data["phone_features"] = padded_phone_features(
                data["input_values"], data["attention_mask"].sum(-1), self.phone_decoder_settings
            )
        if emotion is not None:
            emotion_ids = self._encode_labels(emotion, batch, "emotion", self.emotion_to_id)
            data["emotion_ids"] = np.asarray(emotion_ids, dtype=np.int64)
        if intensity is not None:
            intensity_ids = self._encode_labels(intensity, batch, "intensity", self.intensity_to_id)
            data["intensity_ids"] = np.asarray(intensity_ids, dtype=np.int64)
        speaker_ids = self._encode_labels(
            UNKNOWN_SPEAKER_ID if speaker is None else speaker, batch, "speaker", self.speaker_to_id
        )
        data["speaker_ids"] = np.asarray(speaker_ids, dtype=np.int64)
        if return_tensors is None:
            data = {key: value.tolist() for key, value in data.items()}
        elif return_tensors not in ("pt", "np"):
            raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
        return BatchFeature(data=data, tensor_type=return_tensors)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_values", "attention_mask", "emotion_ids", "intensity_ids", "speaker_ids"]


# Registration with transformers' Auto classes, done on import (``import esarm`` imports this module). A saved
# folder's copy of this file, run with ``trust_remote_code=True``, registers nothing: its own ``auto_map`` serves it.
if __package__ == "esarm":
    from .configuration_esarm import ESARMRewardModelConfig, ESARMSTAConfig

    # the processor serves the two models that hear audio
    for _config_class in (ESARMSTAConfig, ESARMRewardModelConfig):
        AutoProcessor.register(_config_class, ESARMProcessor, exist_ok=True)
    ESARMProcessor.register_for_auto_class("AutoProcessor")
