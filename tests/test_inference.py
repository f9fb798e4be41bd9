"""CPU inference levers: fused WavLM attention, dynamic int8 quantisation of the speech encoder."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear
from transformers.models.wavlm.modeling_wavlm import WavLMAttention

from esarm import ESARMSTAConfig, ESARMSTAForGeneration
from esarm.inference import WavLMSdpaAttention, optimize_for_inference


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
