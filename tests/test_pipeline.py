"""pipeline("speech-to-animation"): local folders and instances, labels, seeds, file inputs, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch
from transformers import pipeline

from esarm import (
    ARKIT_NAMES,
    EMOTIONS,
    ESARMProcessor,
    ESARMSTAConfig,
    ESARMSTAForGeneration,
    SpeechToAnimationPipeline,
)

SAMPLING_RATE = 16000


@pytest.fixture
def model():
    return ESARMSTAForGeneration(ESARMSTAConfig.tiny()).eval()


@pytest.fixture
def folder(tmp_path, model):
    """A saved model folder with its processor (two known speakers)."""
    model.save_pretrained(tmp_path / "sta")
    ESARMProcessor(speakers=["alice", "bob"], fps=model.config.fps).save_pretrained(tmp_path / "sta")
    return tmp_path / "sta"


@pytest.fixture
def speech():
    return (np.random.default_rng(0).standard_normal(int(1.2 * SAMPLING_RATE)) * 0.1).astype(np.float32)


def test_pipeline_from_a_local_folder(folder, model, speech):
    animate = pipeline("speech-to-animation", model=str(folder))
    assert isinstance(animate, SpeechToAnimationPipeline)
    assert animate.processor.speakers == ["alice", "bob"]
    result = animate(speech, emotion="happy", intensity=3, speaker="bob")
    assert set(result) == {"blendshapes", "names", "fps", "emotion"}
    assert result["blendshapes"].dtype == np.float32 and result["blendshapes"].shape == (36, 52)  # 1.2 s at 30 fps
    assert result["names"] == list(ARKIT_NAMES) and result["fps"] == 30.0 and result["emotion"] == "happy"
    # same numbers as the model itself on the processed audio
    inputs = animate.processor(speech, emotion="happy", intensity=3, speaker="bob")
    expected = model.generate(**inputs).blendshapes[0].numpy()
    np.testing.assert_allclose(result["blendshapes"], expected, atol=1e-6)


def test_pipeline_from_an_instance_with_auto_emotion(model, speech):
    animate = pipeline("speech-to-animation", model=model)
    result = animate({"raw": speech, "sampling_rate": SAMPLING_RATE}, emotion="auto")
    inputs = ESARMProcessor()(speech)
    generated = model.generate(**inputs, emotion="auto")
    assert result["emotion"] == EMOTIONS[int(generated.emotion_ids[0])]
    np.testing.assert_allclose(result["blendshapes"], generated.blendshapes[0].numpy(), atol=1e-6)
    assert result["blendshapes"].min() >= 0.0 and result["blendshapes"].max() <= 1.0


def test_pipeline_default_emotion_is_neutral(model, speech):
    """Without an emotion the pipeline animates neutral speech, not the emotion head's guess (which misfires on
    unseen voices)."""
    animate = pipeline("speech-to-animation", model=model)
    result = animate(speech)
    neutral = model.generate(**ESARMProcessor()(speech), emotion_ids=EMOTIONS.index("neutral"))
    assert result["emotion"] == "neutral"
    np.testing.assert_allclose(result["blendshapes"], neutral.blendshapes[0].numpy(), atol=1e-6)


def test_emotion_changes_the_animation(model, speech):
    with torch.no_grad():  # random init: make the style vector S(c) weigh as a trained model's does
        model.style_projection.weight.mul_(100.0)
    animate = pipeline("speech-to-animation", model=model)
    happy = animate(speech, emotion="happy")["blendshapes"]
    sad = animate(speech, emotion="sad")["blendshapes"]
    assert happy.shape == sad.shape and not np.allclose(happy, sad)


def test_seed_and_epsilon(model, speech):
    animate = pipeline("speech-to-animation", model=model)
    first = animate(speech, epsilon=0.5, seed=1)["blendshapes"]
    np.testing.assert_array_equal(first, animate(speech, epsilon=0.5, seed=1)["blendshapes"])
    assert not np.array_equal(first, animate(speech, epsilon=0.5, seed=2)["blendshapes"])
    np.testing.assert_array_equal(animate(speech, epsilon=0.0, seed=3)["blendshapes"], animate(speech)["blendshapes"])


def test_file_inputs_are_resampled_and_batched(tmp_path, model, speech):
    path = tmp_path / "speech.wav"
    stereo_44k = np.stack([np.resize(speech, int(0.8 * 44100))] * 2, axis=1)  # 0.8 s, stereo, 44.1 kHz
    soundfile.write(path, stereo_44k, 44100)
    animate = pipeline("speech-to-animation", model=model)
    results = animate([str(path), speech], emotion="neutral")
    assert [r["blendshapes"].shape for r in results] == [(24, 52), (36, 52)]


def test_batch_size_pads_clips_and_gives_the_one_by_one_animation(model, speech):
    animate = pipeline("speech-to-animation", model=model)
    clips = [speech, speech[: int(0.5 * SAMPLING_RATE)], speech[::-1].copy()[: int(0.9 * SAMPLING_RATE)]]
    for emotion in ("happy", "auto"):
        alone = [animate(clip, emotion=emotion) for clip in clips]
        batched = animate(clips, emotion=emotion, batch_size=3)
        assert [r["blendshapes"].shape for r in batched] == [(36, 52), (15, 52), (27, 52)]
        for one, together in zip(alone, batched):
            assert together["emotion"] == one["emotion"]
            np.testing.assert_allclose(together["blendshapes"], one["blendshapes"], atol=1e-5)
    with pytest.raises(ValueError, match="chunk_length_s animates one recording at a time.*batch_size=1"):
        animate(clips, chunk_length_s=1.0, batch_size=2)


def test_bad_arguments_raise_value_errors(model, speech):
    animate = pipeline("speech-to-animation", model=model)
    with pytest.raises(ValueError, match="emotion.*joyful"):
        animate(speech, emotion="joyful")
    with pytest.raises(ValueError, match="unknown arguments.*'colour'"):
        animate(speech, colour="blue")
    with pytest.raises(ValueError, match="epsilon"):
        animate(speech, epsilon=2.0)
    with pytest.raises(ValueError, match="'raw' or 'array'"):
        animate({"samples": speech, "sampling_rate": SAMPLING_RATE})


def test_input_values_are_checked_at_the_boundary(model, speech):
    """The pipeline (through the processor) rejects what forward no longer reads: NaN audio, too short a clip."""
    animate = pipeline("speech-to-animation", model=model)
    broken = speech.copy()
    broken[[3, 7]] = np.nan
    with pytest.raises(ValueError, match=r"audio\[0\]: audio must be finite, got 2 NaN/inf samples"):
        animate(broken)
    with pytest.raises(ValueError, match=r"audio\[0\] must be at least one animation frame long"):
        animate(speech[:100])


def test_generate_kwargs_are_forwarded(model, speech):
    from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

    class OnlyCode3(LogitsProcessor):
        def __call__(self, input_ids, scores):
            forced = torch.full_like(scores, -float("inf"))
            forced[:, 3] = 0.0
            return forced

    animate = pipeline("speech-to-animation", model=model)
    forced = animate(speech, generate_kwargs={"logits_processor": LogitsProcessorList([OnlyCode3()])})
    frames = forced["blendshapes"].shape[0]
    expected = model.motion_prior.decode(torch.full((1, model.motion_prior.num_tokens(frames), 3), 3))[0].numpy()
    np.testing.assert_allclose(forced["blendshapes"], expected[:frames], atol=1e-6)
    explored = animate(speech, seed=0, generate_kwargs={"generation_config": GenerationConfig(epsilon=1.0)})
    assert not np.allclose(explored["blendshapes"], animate(speech)["blendshapes"])
    with pytest.raises(ValueError, match="max_new_tokens: the number of motion steps is fixed by the audio"):
        animate(speech, generate_kwargs={"max_new_tokens": 5})
    with pytest.raises(ValueError, match=r"\['seed'\] given both"):
        animate(speech, seed=0, generate_kwargs={"seed": 1})


# ---- chunked inference (chunk_length_s / stride_length_s, as the ASR pipeline) -----------------------------------


def test_chunking_is_the_streaming_windows(model):
    """chunk_length_s / stride_length_s are esarm.streaming's windows: each hears chunk_length_s of audio and keeps
    the frames between its strides (context before, look-ahead after)."""
    from esarm.streaming import animate_audio

    long_speech = (np.random.default_rng(1).standard_normal(int(3.0 * SAMPLING_RATE)) * 0.1).astype(np.float32)
    animate = pipeline("speech-to-animation", model=model)
    result = animate(long_speech, sampling_rate=SAMPLING_RATE, emotion="sad", intensity=2, chunk_length_s=1.2,
                     stride_length_s=(0.2, 0.4))  # fmt: skip
    assert result["blendshapes"].shape == (90, 52) and result["emotion"] == "sad"  # 3 s at 30 fps
    expected = animate_audio(model, long_speech, sampling_rate=SAMPLING_RATE, processor=animate.processor,
                             emotion="sad", intensity=2, chunk_seconds=0.6, overlap_seconds=0.0,
                             context_seconds=0.2, lookahead_seconds=0.4)  # fmt: skip
    np.testing.assert_allclose(result["blendshapes"], expected.blendshapes, atol=1e-6)
    unchunked = animate(long_speech, sampling_rate=SAMPLING_RATE, emotion="sad", intensity=2)["blendshapes"]
    assert not np.allclose(result["blendshapes"], unchunked), "several windows ran"


def test_chunking_longer_than_the_audio_is_the_unchunked_result(model, speech):
    animate = pipeline("speech-to-animation", model=model)
    whole = animate(speech, emotion="angry", epsilon=0.3, seed=4)
    chunked = animate(speech, emotion="angry", epsilon=0.3, seed=4, chunk_length_s=30.0)
    np.testing.assert_allclose(chunked["blendshapes"], whole["blendshapes"], atol=1e-5)


def test_chunking_bad_arguments(model, speech):
    animate = pipeline("speech-to-animation", model=model)
    with pytest.raises(ValueError, match=r"left \+ right < chunk_length_s \(1.0\), got \(0.5, 0.5\)"):
        animate(speech, chunk_length_s=1.0, stride_length_s=(0.5, 0.5))
    with pytest.raises(ValueError, match="chunk_length_s must be a positive number of seconds, got -1"):
        animate(speech, chunk_length_s=-1)
    with pytest.raises(ValueError, match="stride_length_s must be seconds >= 0"):
        animate(speech, chunk_length_s=2.0, stride_length_s=(0.1,))
    with pytest.raises(ValueError, match=r"with chunk_length_s, generate arguments must be among .*\['logits_proc"):
        animate(speech, chunk_length_s=2.0, generate_kwargs={"logits_processor": []})
    with pytest.raises(ValueError, match="emotion.*joyful"):
        animate(speech, chunk_length_s=2.0, emotion="joyful")


def test_cpu_defaults_fuse_the_encoder_attention_unless_switched_off(speech):
    from transformers.models.wavlm.modeling_wavlm import WavLMAttention

    from esarm.inference import CPU_INFERENCE_DEFAULTS, WavLMSdpaAttention

    torch.manual_seed(0)
    plain = ESARMSTAForGeneration(ESARMSTAConfig.tiny()).eval()
    fused = ESARMSTAForGeneration(ESARMSTAConfig.tiny()).eval()
    fused.load_state_dict(plain.state_dict())
    expected = pipeline("speech-to-animation", model=plain, cpu_defaults=False)(speech, emotion="fear")
    assert {type(m) for m in plain.audio_encoder.modules() if isinstance(m, WavLMAttention)} == {WavLMAttention}
    result = pipeline("speech-to-animation", model=fused)(speech, emotion="fear")
    assert {type(m) for m in fused.audio_encoder.modules() if isinstance(m, WavLMAttention)} == {WavLMSdpaAttention}
    window = round(CPU_INFERENCE_DEFAULTS["encoder_window_seconds"] * 50)  # WavLM frames, 50 per second
    assert fused.speech_encoder.window_frames == window
    np.testing.assert_allclose(result["blendshapes"], expected["blendshapes"], atol=1e-5)
