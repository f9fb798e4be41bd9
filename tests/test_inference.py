"""CPU inference levers: fused WavLM attention, dynamic int8 quantisation, windowed speech encoder."""

from __future__ import annotations

import copy
import re
from types import SimpleNamespace

import pytest
import torch
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear
from transformers import WavLMConfig
from transformers.models.wavlm.modeling_wavlm import WavLMAttention

from esarm import ESARMSTAConfig, ESARMSTAForGeneration
from esarm.inference import (
    CPU_INFERENCE_DEFAULTS,
    INT8_MIN_HIDDEN_SIZE,
    WavLMSdpaAttention,
    apply_cpu_inference_defaults,
    int8_inference_layers,
    lever_settings,
    optimize_for_inference,
)
from esarm.speech_encoder import conv_geometry, crossfade_weights, encoder_windows


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return ESARMSTAForGeneration(ESARMSTAConfig.tiny()).eval()


def speech(batch: int = 2, seconds: float = 2.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(batch, int(seconds * 16000), generator=generator)


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")  # transformers eager WavLM
def test_sdpa_attention_matches_eager_with_padding(tiny_model):
    fused = optimize_for_inference(copy.deepcopy(tiny_model), attention="sdpa")
    layers = [m for m in fused.audio_encoder.modules() if isinstance(m, WavLMAttention)]
    assert layers and all(type(m) is WavLMSdpaAttention for m in layers)
    audio = speech()
    mask = torch.ones_like(audio, dtype=torch.long)
    mask[1, 20000:] = 0  # second clip is 1.25 s long, right-padded
    with torch.no_grad():
        eager = tiny_model.audio_encoder(audio, attention_mask=mask, output_hidden_states=True)
        ours = fused.audio_encoder(audio, attention_mask=mask, output_hidden_states=True)
    for expected, actual in zip(eager.hidden_states, ours.hidden_states):
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)
    expected_tokens = tiny_model.generate(audio, attention_mask=mask, emotion_ids=[1, 5]).motion_tokens
    assert torch.equal(fused.generate(audio, attention_mask=mask, emotion_ids=[1, 5]).motion_tokens, expected_tokens)
    # Switching back restores transformers' own attention.
    optimize_for_inference(fused, attention="eager")
    assert all(type(m) is WavLMAttention for m in fused.audio_encoder.modules() if isinstance(m, WavLMAttention))


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_int8_quantises_the_encoder_linear_layers(tiny_model, attention):
    model = optimize_for_inference(copy.deepcopy(tiny_model), int8=True, attention=attention)
    quantised = {n for n, m in model.audio_encoder.named_modules() if isinstance(m, DynamicQuantizedLinear)}
    floating = {n for n, m in model.audio_encoder.named_modules() if type(m) is torch.nn.Linear}
    projections = {
        n for n in quantised | floating if n.rsplit(".", 1)[-1] in ("q_proj", "k_proj", "v_proj", "out_proj")
    }
    assert any("feed_forward" in n for n in quantised) and projections
    # Eager WavLM attention reads q_proj.weight itself: its projections must stay float; fused attention calls them.
    assert (projections <= floating) if attention == "eager" else (projections <= quantised and not floating)
    # The rest of the model is untouched (the decoder and the motion prior stay float).
    assert not any(isinstance(m, DynamicQuantizedLinear) for m in model.motion_transformer.modules())
    audio = speech(1)
    with torch.no_grad():
        reference = tiny_model.speech_encoder(audio, None, torch.tensor([30]))[0]
        ours = model.speech_encoder(audio, None, torch.tensor([30]))[0]
    relative = (ours - reference).norm() / reference.norm()
    assert 0 < relative < 0.05  # int8 changes the features, a little
    output = model.generate(audio, emotion_ids=[3])
    assert output.blendshapes.shape == (1, 60, 52) and torch.isfinite(output.blendshapes).all()


def test_argument_errors(tiny_model):
    with pytest.raises(ValueError, match=r"attention must be one of \['eager', 'sdpa'\], got 'flash'"):
        optimize_for_inference(tiny_model, attention="flash")
    with pytest.raises(ValueError, match=r"int8 must be True, False or 'auto', got 'yes'"):
        optimize_for_inference(tiny_model, int8="yes")
    with pytest.raises(ValueError, match=r"overrides must be among \['attention', .*\], got \['threads'\]"):
        apply_cpu_inference_defaults(tiny_model, threads=2)


def test_levers_apply_once_and_lever_names_parse(tiny_model, caplog):
    model = copy.deepcopy(tiny_model)
    with caplog.at_level("INFO", logger="esarm.inference"):
        apply_cpu_inference_defaults(model)
        apply_cpu_inference_defaults(model)  # what every StreamingAnimator of the pipeline or the app does
        assert sum("inference levers" in r.message for r in caplog.records) == 1
        optimize_for_inference(model, attention="eager")  # other levers still apply
        assert sum("inference levers" in r.message for r in caplog.records) == 2
    assert all(type(m) is WavLMAttention for m in model.audio_encoder.modules() if isinstance(m, WavLMAttention))
    assert lever_settings("fp32") == dict(int8=False, attention="eager", compile=False, encoder_window_seconds=None,
                                          encoder_window_overlap_seconds=2.0)  # fmt: skip
    assert lever_settings("int8+sdpa+enc20") == dict(int8=True, attention="sdpa", compile=False,
                                                     encoder_window_seconds=20.0, encoder_window_overlap_seconds=2.0)  # fmt: skip
    for bad in ("fp16", "enc10+enc20", "sdpa+encx"):
        with pytest.raises(ValueError, match=f"lever must join fp32, sdpa, int8, compile and one encN .*got {re.escape(repr(bad))}"):
            lever_settings(bad)


def test_cpu_defaults_quantise_wide_encoders_only_and_the_result_refuses_to_train_or_save(tiny_model, tmp_path):
    assert CPU_INFERENCE_DEFAULTS["int8"] == "auto"
    narrow = apply_cpu_inference_defaults(copy.deepcopy(tiny_model))  # 32 wide: int8 would not pay
    assert int8_inference_layers(narrow) == 0
    narrow.train()  # still a float model
    wavlm = {**ESARMSTAConfig.tiny().audio_encoder_config.to_dict(), "hidden_size": INT8_MIN_HIDDEN_SIZE}
    wide = ESARMSTAForGeneration(ESARMSTAConfig.tiny(audio_encoder_config=wavlm)).eval()
    apply_cpu_inference_defaults(wide)
    assert int8_inference_layers(wide) > 0 and int8_inference_layers(wide.motion_transformer) == 0
    assert wide.generate(speech(1, 0.5), emotion_ids=[0]).blendshapes.shape == (1, 15, 52)
    with pytest.raises(ValueError, match="cannot train: its speech encoder holds dynamic int8 inference layers"):
        wide.train()
    with pytest.raises(ValueError, match="cannot be saved: .*cpu_defaults=False to keep it in float"):
        wide.save_pretrained(tmp_path / "wide")
    assert not (tmp_path / "wide").exists()
    floating = ESARMSTAForGeneration(ESARMSTAConfig.tiny(audio_encoder_config=wavlm)).eval()
    assert int8_inference_layers(apply_cpu_inference_defaults(floating, int8=False)) == 0


def test_encoder_windows_cover_the_frames_with_the_fewest_shortest_windows():
    assert encoder_windows(400, 500, 50) == ([0], 400)
    # 60 s of WavLM frames (50 per second) in windows of at most 10 s overlapping by at least 1 s: 7 windows,
    # shortened from 500 to 472 frames so that they share the frames evenly.
    starts, length = encoder_windows(3000, 500, 50)
    assert (starts, length) == ([0, 421, 843, 1264, 1685, 2107, 2528], 472)
    assert starts[-1] + length == 3000 and all(a + length - b >= 50 for a, b in zip(starts, starts[1:]))
    # 30 s in 20 s windows with 2 s of overlap: two windows of 16 s, not 20 s.
    assert encoder_windows(1500, 1000, 100) == ([0, 700], 800)
    assert encoder_windows(11, 5, 2) == ([0, 3, 6], 5)
    with pytest.raises(ValueError, match=r"overlap must be in \[0, window\) = \[0, 5\), got 5"):
        encoder_windows(11, 5, 5)


def test_crossfade_weights_ramp_across_overlaps_and_sum_to_one():
    weights = crossfade_weights([0, 3, 6], 5, 11)
    # Windows [0, 5), [3, 8), [6, 11): two frames shared by each pair, linear ramps at the frame centres.
    expected = torch.tensor(
        [[1.0, 1.0, 1.0, 0.75, 0.25], [0.25, 0.75, 1.0, 0.75, 0.25], [0.25, 0.75, 1.0, 1.0, 1.0]]
    )
    torch.testing.assert_close(weights, expected)
    total = torch.zeros(11)
    for start, weight in zip([0, 3, 6], weights):
        total[start : start + 5] += weight
    torch.testing.assert_close(total, torch.ones(11))


def test_conv_geometry_gives_the_encoder_frame_count(tiny_model):
    assert conv_geometry(SimpleNamespace(config=WavLMConfig())) == (400, 320)  # WavLM base: 25 ms taps every 20 ms
    receptive, stride = conv_geometry(tiny_model.audio_encoder)
    samples = torch.tensor([receptive, receptive + stride - 1, receptive + stride, 16000, 16001])
    expected = tiny_model.audio_encoder._get_feat_extract_output_lengths(samples)
    assert torch.equal((samples - receptive) // stride + 1, expected)


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
def test_windowed_encoder_matches_the_whole_audio_encoder(tiny_model):
    audio = speech(2, seconds=9.0)
    mask = torch.ones_like(audio, dtype=torch.long)
    mask[1, 16000 * 5 :] = 0  # second clip is 5 s long, right-padded
    windowed = optimize_for_inference(
        copy.deepcopy(tiny_model), encoder_window_seconds=3.0, encoder_window_overlap_seconds=1.0
    )
    assert windowed.speech_encoder.window_frames == 150 and windowed.speech_encoder.window_overlap_frames == 50
    with torch.no_grad():
        whole, whole_mask = tiny_model.encode_audio(audio, mask)
        ours, ours_mask = windowed.encode_audio(audio, mask)
        assert torch.equal(ours_mask, whole_mask)
        cosine = torch.nn.functional.cosine_similarity(ours, whole, dim=-1)[whole_mask]
        assert cosine.min() > 0.99 and not torch.allclose(ours, whole)  # windows hear less context: close, not equal
        # A window longer than the audio is the whole-audio encoder; None switches windows off.
        optimize_for_inference(windowed, encoder_window_seconds=20.0)
        torch.testing.assert_close(windowed.encode_audio(audio, mask)[0], whole, atol=1e-5, rtol=1e-4)
        optimize_for_inference(windowed)
        assert windowed.speech_encoder.window_frames is None
        optimize_for_inference(windowed, encoder_window_seconds=2.0, encoder_window_overlap_seconds=0.5)
        output = windowed.generate(audio, mask, emotion_ids=[1, 2])
    assert output.blendshapes.shape == (2, 270, 52) and int(output.frame_mask[1].sum()) == 150


def test_encoder_window_argument_errors(tiny_model):
    model = copy.deepcopy(tiny_model)
    with pytest.raises(ValueError, match=r"encoder_window_seconds must be a positive number of seconds or None, got 0"):
        optimize_for_inference(model, encoder_window_seconds=0)
    with pytest.raises(ValueError, match=r"encoder_window_overlap_seconds must be in \[0, encoder_window_seconds=2"):
        optimize_for_inference(model, encoder_window_seconds=2, encoder_window_overlap_seconds=2)
    with pytest.raises(ValueError, match=r"window_frames must be a positive int or None, got 0"):
        model.speech_encoder.set_window(0)
