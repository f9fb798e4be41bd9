"""``pipeline("speech-to-animation")``: speech in, 52 ARKit blendshape curves out.

>>> import esarm  # registers the task
>>> from transformers import pipeline
>>> animate = pipeline("speech-to-animation", model="path/to/sta_model")
>>> result = animate("speech.wav", emotion="happy", intensity=3)
>>> result["blendshapes"].shape, result["names"][:2], result["fps"]
((T, 52), ['eyeBlinkLeft', 'eyeLookDownLeft'], 30.0)
>>> long = animate("lecture.wav", emotion="neutral", chunk_length_s=10, stride_length_s=1)  # any length

Saved model folders carry this module (``custom_pipelines`` in ``config.json``, see :func:`custom_pipelines`), so
``pipeline("speech-to-animation", model=folder_or_repo, trust_remote_code=True)`` also works without esarm.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .audio import load_audio
from .blendshapes import ARKIT_NAMES, EMOTIONS
from .inference import apply_cpu_inference_defaults
from .phonetic import decoder_settings
from .processing_esarm import ESARMProcessor
from .streaming import animate_audio, resolve_condition_ids

logger = logging.getLogger(__name__)

__all__ = ["SpeechToAnimationPipeline", "check_phone_decoder_settings", "custom_pipelines", "register_pipeline"]

TASK = "speech-to-animation"
# generate() arguments the streaming windows pass on (chunked inference); see esarm.streaming.StreamingAnimator.
CHUNKED_GENERATE_ARGUMENTS = ("epsilon", "seed", "do_sample", "temperature", "top_k", "greedy_groups")


def default_processor(model) -> Any:
    """An ``ESARMProcessor`` matching ``model`` (16 kHz WavLM feature extractor, the model's fps, no speaker names)."""
    return ESARMProcessor(fps=float(model.config.fps))


def check_phone_decoder_settings(model, processor) -> None:
    """A processor that decodes phones for a model that hears them (``phone_features=True``) must decode them as the
    model was trained: with its ``config.phone_decoder_settings``; ``ValueError`` otherwise."""
    if not getattr(processor, "phone_features", False) or getattr(model, "phones", None) is None:
        return
    # (a folder's code saved before models and processors held settings has no such field: the package's defaults)
    expected = decoder_settings(getattr(model.config, "phone_decoder_settings", None))
    given = decoder_settings(getattr(processor, "phone_decoder_settings", None), "processor.phone_decoder_settings")
    if given != expected:
        raise ValueError(
            f"processor.phone_decoder_settings must be the model's config.phone_decoder_settings {expected} (the "
            f"settings its phone features were decoded with in training), got {given}: pass "
            "ESARMProcessor(phone_features=True, phone_decoder_settings=model.config.phone_decoder_settings)"
        )


def custom_pipelines() -> dict[str, dict[str, Any]]:
    """The ``custom_pipelines`` entry of a saved STA model's ``config.json``: where transformers finds this task
    (``pipeline.SpeechToAnimationPipeline`` in the folder's own code) when esarm is not installed."""
    module = SpeechToAnimationPipeline.__module__.rsplit(".", 1)[-1]
    return {TASK: {"impl": f"{module}.SpeechToAnimationPipeline", "pt": ["AutoModel"], "tf": [], "type": "audio"}}


def _strides(chunk_length_s: float, stride_length_s: Any) -> tuple[float, float]:
    """(left, right) stride in seconds, checked against ``chunk_length_s`` (the ASR pipeline's rules)."""
    if isinstance(chunk_length_s, bool) or not isinstance(chunk_length_s, (int, float)) or not chunk_length_s > 0:
        raise ValueError(f"chunk_length_s must be a positive number of seconds, got {chunk_length_s!r}")
    if stride_length_s is None:
        stride_length_s = chunk_length_s / 6  # the ASR pipeline's default
    if isinstance(stride_length_s, (int, float)) and not isinstance(stride_length_s, bool):
        stride_length_s = (stride_length_s, stride_length_s)
    if (
        not isinstance(stride_length_s, (tuple, list))
        or len(stride_length_s) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in stride_length_s)
    ):
        raise ValueError(f"stride_length_s must be seconds >= 0 or a (left, right) pair of them, got {stride_length_s!r}")
    left, right = (float(v) for v in stride_length_s)
    if left + right >= chunk_length_s:
        raise ValueError(
            f"stride_length_s must leave part of each chunk to keep: left + right < chunk_length_s "
            f"({chunk_length_s}), got {stride_length_s!r}"
        )
    return left, right


class SpeechToAnimationPipeline(Pipeline):
    """Animate speech with an :class:`~esarm.modeling_sta.ESARMSTAForGeneration` model.

    Call arguments (also accepted at construction):
        inputs: a path (wav, flac, mp3, m4a, ...), a float array of samples, a dict
            ``{"raw" or "array": samples, "sampling_rate": rate}``, or a list of them.
        sampling_rate: rate of a bare array (default 16 kHz).
        emotion: an emotion name from ``EMOTIONS`` / id, or ``"auto"`` for the emotion the model hears in the
            audio. Default (``None``): neutral. ``"auto"`` is not the default because the emotion head misfires on
            voices it never heard: on the fixed held-out sets (neutral speech of unseen voices) the ``small`` model
            hears "neutral" in 6 % (eSpeak NG) and 11 % (Flite) of the clips, the tiny one in none (README).
        intensity: 1, 2 or 3 (default: 1 for neutral, 2 otherwise).
        speaker: a known speaker name / id (default: unknown speaker).
        epsilon: epsilon-greedy noise in [0, 1] (0 = the model's greedy animation).
        seed: random seed (sampling, epsilon); ``do_sample``, ``temperature``, ``top_k`` as in ``generate``.
        generate_kwargs: a dict of further ``generate`` arguments (``generation_config``, ``logits_processor``,
            generation settings), as in transformers' ASR pipeline.
        chunk_length_s: animate long audio in windows of this many seconds (bounded memory), as the ASR pipeline
            chunks: :func:`esarm.streaming.animate_audio` with each window hearing ``chunk_length_s`` of audio and
            keeping the frames between its strides (the strides are its ``context_seconds`` and
            ``lookahead_seconds``), so the kept frames tile the timeline. With chunking, ``generate_kwargs`` may
            only hold ``epsilon``, ``seed``, ``do_sample``, ``temperature``, ``top_k``, ``greedy_groups``; window
            ``k`` uses ``seed + k``. ``generate_kwargs={"do_sample": True, "greedy_groups": ["mouth"]}``: the lips
            greedy, the eyes and brows sampled (they blink).
        stride_length_s: audio each window hears but keeps no frames of, on each side (seconds, or a
            ``(left, right)`` pair; default ``chunk_length_s / 6``); ignored without ``chunk_length_s``.

    Construction argument:
        cpu_defaults: apply :data:`esarm.inference.CPU_INFERENCE_DEFAULTS` to the model (in place) when it runs on
            the CPU (default ``True``): fused attention in the speech encoder, clips longer than its window encoded
            in cross-faded windows, and int8 linear layers in encoders at least 256 wide (an int8 model cannot train
            or be saved). ``False`` keeps the model as given; call :func:`esarm.inference.optimize_for_inference`
            for other levers.

    Batches: ``animate(list_of_clips, batch_size=8)`` pads the clips of a batch and generates them together (same
    animation as one by one); the token loop's per-step cost is shared by the batch (``benchmarks/animate.py``:
    clips per second against the batch size). ``chunk_length_s`` needs ``batch_size=1``.

    Returns:
        ``{"blendshapes": float32 [T, 52], "names": list of the 52 ARKit names, "fps": float, "emotion": str}``.
    """

    _load_processor = None
    _load_feature_extractor = False
    _load_tokenizer = False
    _load_image_processor = False
    _load_video_processor = False

    def __init__(self, model, processor=None, cpu_defaults: bool = True, **kwargs):
        super().__init__(model=model, processor=processor, **kwargs)
        if self.processor is None:
            self.processor = default_processor(self.model)
        check_phone_decoder_settings(self.model, self.processor)
        # transformers pads batches (``batch_size`` > 1) with the feature extractor's padding value; the attention
        # mask that preprocess always returns marks the padding, so a batch animates each clip as alone.
        self.feature_extractor = self.processor.feature_extractor
        self.model.eval()
        self.cpu_defaults = cpu_defaults
        if cpu_defaults:
            apply_cpu_inference_defaults(self.model)

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
        chunk_length_s: float | None = None,
        stride_length_s: Any = None,
        **kwargs,
    ):
        if kwargs:
            raise ValueError(
                f"speech-to-animation got unknown arguments {sorted(kwargs)}; expected sampling_rate, emotion, "
                "intensity, speaker, epsilon, seed, do_sample, temperature, top_k, generate_kwargs, chunk_length_s, "
                "stride_length_s"
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
        if speaker is not None and chunk_length_s is None:  # (the streaming windows check their own labels)
            resolve_condition_ids(None, None, speaker, getattr(self.processor, "speakers", None))  # warns if unknown
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
        if chunk_length_s is not None:
            left, right = _strides(chunk_length_s, stride_length_s)
            unsupported = sorted(set(forward) - set(CHUNKED_GENERATE_ARGUMENTS))
            if unsupported:
                raise ValueError(
                    f"with chunk_length_s, generate arguments must be among {list(CHUNKED_GENERATE_ARGUMENTS)} "
                    f"(what the streaming windows pass on), got {unsupported}"
                )
            preprocess["chunking"] = True
            forward["chunking"] = {"chunk_seconds": chunk_length_s - left - right, "overlap_seconds": 0.0,
                                   "context_seconds": left, "lookahead_seconds": right}  # fmt: skip
        return preprocess, forward, {}

    def preprocess(self, inputs, sampling_rate=None, emotion=None, intensity=None, speaker=None, chunking=False):
        if isinstance(inputs, dict):
            inputs = dict(inputs)
            array = inputs.pop("raw", inputs.pop("array", None))
            if array is None:
                raise ValueError(f"inputs dict must hold 'raw' or 'array' samples, got keys {sorted(inputs)}")
            sampling_rate = inputs.pop("sampling_rate", sampling_rate)
            inputs = array
        if emotion is None:
            emotion = "neutral"
        auto = isinstance(emotion, str) and emotion.strip().casefold() == "auto"
        if chunking:
            # Labels are checked when the streaming animator is built, before any window runs.
            audio = load_audio(inputs, sampling_rate, target_rate=self.processor.sampling_rate)
            return {"audio": audio, "emotion": "auto" if auto else emotion, "intensity": intensity, "speaker": speaker}
        features = self.processor(
            inputs,
            sampling_rate=sampling_rate,
            emotion=None if auto else emotion,
            intensity=intensity,
            speaker=speaker,
            return_tensors="pt",
        )
        model_inputs = {"input_values": features["input_values"]}
        mask = features.get("attention_mask")
        model_inputs["attention_mask"] = torch.ones_like(features["input_values"], dtype=torch.long) if mask is None else mask
        if not auto and features.get("emotion_ids") is not None:
            model_inputs["emotion_ids"] = features["emotion_ids"]
        if intensity is not None and features.get("intensity_ids") is not None:
            model_inputs["intensity_ids"] = features["intensity_ids"]
        if speaker is not None and features.get("speaker_ids") is not None:
            model_inputs["speaker_ids"] = features["speaker_ids"]
        if features.get("phone_features") is not None:  # a processor with phone_features=True
            model_inputs["phone_features"] = features["phone_features"]
        return model_inputs

    def _forward(self, model_inputs, chunking=None, **generate_kwargs):
        if chunking is not None:
            if not isinstance(model_inputs["audio"], np.ndarray):
                raise ValueError(
                    "chunk_length_s animates one recording at a time (window by window), got a batch: call the "
                    "pipeline with batch_size=1 when chunk_length_s is given"
                )
            result = animate_audio(self.model, model_inputs.pop("audio"), sampling_rate=self.processor.sampling_rate,
                                   processor=self.processor, cpu_defaults=self.cpu_defaults, **model_inputs, **chunking,
                                   **generate_kwargs)  # fmt: skip
            return {"frames": result.blendshapes, "emotion": result.emotion}
        output = self.model.generate(**model_inputs, emotion="auto", **generate_kwargs)
        return {"blendshapes": output.blendshapes, "frame_mask": output.frame_mask, "emotion_ids": output.emotion_ids}

    def postprocess(self, model_outputs):
        if "frames" in model_outputs:  # chunked: the streaming windows already gave frames [T, 52]
            return {
                "blendshapes": np.ascontiguousarray(model_outputs["frames"], dtype=np.float32),
                "names": list(ARKIT_NAMES),
                "fps": float(self.model.config.fps),
                "emotion": model_outputs["emotion"],
            }
        num_frames = int(model_outputs["frame_mask"][0].sum())
        blendshapes = model_outputs["blendshapes"][0, :num_frames].detach().to("cpu", torch.float32).numpy()
        return {
            "blendshapes": np.ascontiguousarray(blendshapes, dtype=np.float32),
            "names": list(ARKIT_NAMES),
            "fps": float(self.model.config.fps),
            "emotion": EMOTIONS[int(model_outputs["emotion_ids"][0])],
        }


def register_pipeline(default_model: str | None = None) -> None:
    """Register the ``"speech-to-animation"`` task with transformers (done on ``import esarm``, with esarm's default
    model: a local folder, so ``pipeline("speech-to-animation")`` loads it offline)."""
    if TASK in PIPELINE_REGISTRY.supported_tasks:
        return
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=SpeechToAnimationPipeline, pt_model=AutoModel, type="audio",
        default={"model": (default_model, None)} if default_model else None,
    )  # fmt: skip

