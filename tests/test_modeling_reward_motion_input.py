"""The reward model's decoded-motion input (motion_input="blendshapes"): shapes, what it reads, save / load, the
frozen prior, training on eq. 1."""

from __future__ import annotations

import math

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError

from esarm.configuration_esarm import ESARMMotionPriorConfig, ESARMRewardModelConfig
from esarm.modeling_motion_prior import ESARMMotionPrior
from esarm.modeling_reward import ESARMRewardModel, ranking_loss

SAMPLES = 8000  # 0.5 s -> 15 frames at 30 fps -> 8 motion steps of 2 frames


@pytest.fixture
def config():
    return ESARMRewardModelConfig.tiny(motion_input="blendshapes")


def make_inputs(config, batch: int = 2, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    steps = math.ceil(round(SAMPLES / 16000 * config.fps) / config.frames_per_token)
    return dict(
        input_values=torch.randn(batch, SAMPLES, generator=generator),
        emotion_ids=torch.arange(batch) % config.num_emotions,
        intensity_ids=torch.zeros(batch, dtype=torch.long),
        motion_tokens=torch.randint(0, config.codebook_size, (batch, steps, config.num_groups), generator=generator),
    )


def test_forward_shapes_and_masks(config):
    model = ESARMRewardModel(config).eval()
    assert model.token_embedding is None and model.get_input_embeddings() is model.motion_projection
    assert model.motion_projection.in_features == config.frames_per_token * 2 * 52
    inputs = make_inputs(config)
    steps = inputs["motion_tokens"].shape[1]
    mask = torch.ones(2, steps, dtype=torch.bool)
    mask[1, 5:] = False
    with torch.no_grad():
        out = model(**inputs, motion_mask=mask)
    assert out.rewards.shape == (2, steps) and out.returns.shape == (2,)
    assert torch.all(out.rewards[1, 5:] == 0)
    discounts = config.gamma ** torch.arange(5.0)
    torch.testing.assert_close(out.returns[1], (out.rewards[1, :5] * discounts).sum())


def test_codes_that_decode_alike_score_alike(config):
    """Two codes with the same code vector decode to the same motion: the decoded-motion reward model cannot tell
    them apart, the token-embedding one can (it reads code identities)."""
    model = ESARMRewardModel(config).eval()
    with torch.no_grad():
        for quantizer in model.motion_prior.quantizers:
            quantizer.codebook[1] = quantizer.codebook[0]
    inputs = make_inputs(config, batch=1)
    inputs["motion_tokens"][0, :, :] = 0
    renamed = {**inputs, "motion_tokens": inputs["motion_tokens"].clone()}
    renamed["motion_tokens"][0, 3:, :] = 1
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).rewards, model(**renamed).rewards)
        other = inputs["motion_tokens"].clone()
        other[0, 3:, :] = 2  # a different code vector: different motion, different rewards
        assert not torch.allclose(model(**inputs).rewards, model(**{**inputs, "motion_tokens": other}).rewards)
    tokens_model = ESARMRewardModel(ESARMRewardModelConfig.tiny()).eval()
    with torch.no_grad():
        assert not torch.allclose(tokens_model(**inputs).rewards, tokens_model(**renamed).rewards)


def test_save_load_round_trip_keeps_the_loaded_prior(config, tmp_path):
    model = ESARMRewardModel(config).eval()
    torch.manual_seed(5)
    prior = ESARMMotionPrior(ESARMMotionPriorConfig.tiny()).eval()
    inputs = make_inputs(config)
    with torch.no_grad():
        before = model(**inputs).returns
        model.load_motion_prior(prior)
        after = model(**inputs).returns
    assert not torch.allclose(before, after), "the loaded prior decodes the tokens"
    assert not any(p.requires_grad for p in model.motion_prior.parameters())
    model.save_pretrained(tmp_path)
    loaded = ESARMRewardModel.from_pretrained(tmp_path).eval()
    assert loaded.config.motion_input == "blendshapes"
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).rewards, model(**inputs).rewards, rtol=0, atol=0)
        torch.testing.assert_close(
            loaded.motion_prior.decode(inputs["motion_tokens"]), prior.decode(inputs["motion_tokens"]), rtol=0, atol=0
        )


def test_ranking_loss_trains_it_and_leaves_the_prior_frozen(config):
    """A few steps of eq. 1 on fixed pairs: held-still motion (one code) ranked above random codes."""
    model = ESARMRewardModel(config).train()
    assert not model.motion_prior.training
    prior_state = {k: v.clone() for k, v in model.motion_prior.state_dict().items()}
    better, worse = make_inputs(config, seed=0), make_inputs(config, seed=0)
    better["motion_tokens"] = torch.zeros_like(better["motion_tokens"])
    worse["motion_tokens"] = torch.randint(0, config.codebook_size, worse["motion_tokens"].shape)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    y = torch.tensor([1, 1])
    for _ in range(15):
        loss = ranking_loss(model(**better).returns, model(**worse).returns, y)
        optimizer.zero_grad()
        loss.backward()
        assert model.motion_projection.weight.grad.abs().sum() > 0
        optimizer.step()
    model.eval()
    with torch.no_grad():
        assert torch.all(model(**better).returns > model(**worse).returns)
    for key, value in model.motion_prior.state_dict().items():
        assert torch.equal(value, prior_state[key]), f"{key} of the frozen prior changed"


def test_bad_configs_and_priors(config):
    with pytest.raises(StrictDataclassError, match="motion_prior_config must be given with motion_input='blendshapes'"):
        ESARMRewardModelConfig.tiny(motion_input="blendshapes", motion_prior_config=None)
    with pytest.raises(StrictDataclassError, match="motion_prior_config must match num_groups, codebook_size"):
        ESARMRewardModelConfig.tiny(motion_input="blendshapes", codebook_size=8)
    with pytest.raises(StrictDataclassError, match="motion_input"):
        ESARMRewardModelConfig.tiny(motion_input="latents")
    model = ESARMRewardModel(config)
    with pytest.raises(ValueError, match=r"motion prior must have G, K, frames_per_token and fps \(3, 32, 2, 30.0\)"):
        model.load_motion_prior(ESARMMotionPrior(ESARMMotionPriorConfig.tiny(codebook_size=16)))
    with pytest.raises(ValueError, match="load_motion_prior needs motion_input='blendshapes', got motion_input='tokens'"):
        ESARMRewardModel(ESARMRewardModelConfig.tiny()).load_motion_prior(ESARMMotionPrior(ESARMMotionPriorConfig.tiny()))
