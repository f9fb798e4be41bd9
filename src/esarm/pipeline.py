"""``pipeline("speech-to-animation")``: speech in, 52 ARKit blendshape curves out.

>>> import esarm  # registers the task
>>> from transformers import pipeline
>>> animate = pipeline("speech-to-animation", model="path/to/sta_model")
>>> result = animate("speech.wav", emotion="happy", intensity=3)
>>> result["blendshapes"].shape, result["names"][:2], result["fps"]
((T, 52), ['eyeBlinkLeft', 'eyeLookDownLeft'], 30.0)
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .blendshapes import ARKIT_NAMES, EMOTIONS

logger = logging.getLogger(__name__)

__all__ = ["SpeechToAnimationPipeline", "register_pipeline"]

TASK = "speech-to-animation"


def default_processor(model) -> Any:
    """An ``ESARMProcessor`` matching ``model`` (16 kHz WavLM feature extractor, the model's fps, no speaker names)."""
    from .processing_esarm import ESARMProcessor

    return ESARMProcessor(fps=float(model.config.fps))


class SpeechToAnimationPipeline(Pipeline):
    """Animate speech with an :class:`~esarm.modeling_sta.ESARMSTAForGeneration` model.

    Call arguments (also accepted at construction):
        inputs: a path (wav, flac, mp3, m4a, ...), a float array of samples, a dict
            ``{"raw" or "array": samples, "sampling_rate": rate}``, or a list of them.
        sampling_rate: rate of a bare array (default 16 kHz).
        emotion: an emotion name from ``EMOTIONS`` / id, or ``"auto"`` / ``None`` to use the emotion heard in the
            audio.
        intensity: 1, 2 or 3 (default: 1 for neutral, 2 otherwise).
        speaker: a known speaker name / id (default: unknown speaker).
        epsilon: epsilon-greedy noise in [0, 1] (0 = the model's greedy animation).
        seed: random seed (sampling, epsilon); ``do_sample``, ``temperature``, ``top_k`` as in ``generate``.
        generate_kwargs: a dict of further ``generate`` arguments (``generation_config``, ``logits_processor``,
            generation settings), as in transformers' ASR pipeline.

    Returns:
        ``{"blendshapes": float32 [T, 52], "names": list of the 52 ARKit names, "fps": float, "emotion": str}``.
    """

    _load_processor = None
    _load_feature_extractor = False
    _load_tokenizer = False
    _load_image_processor = False
    _load_video_processor = False

    def __init__(self, model, processor=None, **kwargs):
        super().__init__(model=model, processor=processor, **kwargs)
        if self.processor is None:
            self.processor = default_processor(self.model)
        self.model.eval()

    def _sanitize_parameters(
        self,
        sampling_rate: int | None = None,
        emotion: str | int | None = None,
        intensity: int | None = None,
        speaker: str | int | None = None,
        epsilon: float | None = None,
        seed: int | None = None,
        do_sample: bool | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        generate_kwargs: dict | None = None,
        **kwargs,
    ):
        if kwargs:
            raise ValueError(
                f"speech-to-animation got unknown arguments {sorted(kwargs)}; expected sampling_rate, emotion, "
                "intensity, speaker, epsilon, seed, do_sample, temperature, top_k, generate_kwargs"
            )
        if generate_kwargs is not None and not isinstance(generate_kwargs, dict):
            raise ValueError(f"generate_kwargs must be a dict of generate() arguments, got {type(generate_kwargs)}")
        preprocess = {}
        for name, value in (
            ("sampling_rate", sampling_rate),
            ("emotion", emotion),
            ("intensity", intensity),
            ("speaker", speaker),
        ):
            if value is not None:
                preprocess[name] = value
        forward = {}
        for name, value in (
            ("epsilon", epsilon),
            ("seed", seed),
            ("do_sample", do_sample),
            ("temperature", temperature),
            ("top_k", top_k),
        ):
            if value is not None:
                forward[name] = value
        if generate_kwargs:
            duplicated = sorted(set(generate_kwargs) & set(forward))
            if duplicated:
                raise ValueError(f"{duplicated} given both as pipeline arguments and in generate_kwargs: pass each once")
            forward.update(generate_kwargs)
        return preprocess, forward, {}

    def preprocess(self, inputs, sampling_rate=None, emotion=None, intensity=None, speaker=None):
        if isinstance(inputs, dict):
            inputs = dict(inputs)
            array = inputs.pop("raw", inputs.pop("array", None))
            if array is None:
                raise ValueError(f"inputs dict must hold 'raw' or 'array' samples, got keys {sorted(inputs)}")
            sampling_rate = inputs.pop("sampling_rate", sampling_rate)
            inputs = array
        auto = emotion is None or (isinstance(emotion, str) and emotion == "auto")
        features = self.processor(
            inputs,
            sampling_rate=sampling_rate,
            emotion=None if auto else emotion,
            intensity=intensity,
            speaker=speaker,
            return_tensors="pt",
        )
        model_inputs = {"input_values": features["input_values"]}
        if features.get("attention_mask") is not None:
            model_inputs["attention_mask"] = features["attention_mask"]
        if not auto and features.get("emotion_ids") is not None:
            model_inputs["emotion_ids"] = features["emotion_ids"]
        if intensity is not None and features.get("intensity_ids") is not None:
            model_inputs["intensity_ids"] = features["intensity_ids"]
        if speaker is not None and features.get("speaker_ids") is not None:
            model_inputs["speaker_ids"] = features["speaker_ids"]
        return model_inputs

    def _forward(self, model_inputs, **generate_kwargs):
        output = self.model.generate(**model_inputs, emotion="auto", **generate_kwargs)
        return {"blendshapes": output.blendshapes, "frame_mask": output.frame_mask, "emotion_ids": output.emotion_ids}

    def postprocess(self, model_outputs):
        num_frames = int(model_outputs["frame_mask"][0].sum())
        blendshapes = model_outputs["blendshapes"][0, :num_frames].detach().to("cpu", torch.float32).numpy()
        return {
            "blendshapes": np.ascontiguousarray(blendshapes, dtype=np.float32),
            "names": list(ARKIT_NAMES),
            "fps": float(self.model.config.fps),
            "emotion": EMOTIONS[int(model_outputs["emotion_ids"][0])],
        }


def register_pipeline() -> None:
    """Register the ``"speech-to-animation"`` task with transformers (done on ``import esarm``)."""
    if TASK in PIPELINE_REGISTRY.supported_tasks:
        return
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=SpeechToAnimationPipeline, pt_model=AutoModel, type="audio"
    )
