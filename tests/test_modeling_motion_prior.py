"""ESARMMotionPrior: shapes, padding invariance, encode/decode consistency, save/load, gradients, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from esarm.blendshapes import FACE_REGIONS, NUM_BLENDSHAPES
from esarm.configuration_esarm import ESARMMotionPriorConfig
from esarm.modeling_motion_prior import ESARMMotionPrior

torch.set_num_threads(1)  # the test machine is shared: oversubscribed threads make tiny models slow


def smooth_blendshapes(batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    """Smooth curves in [0, 1] with exact zeros, like real ARKit coefficients: ``[batch, frames, 52]``."""
    generator = torch.Generator().manual_seed(seed)
    time = torch.arange(frames)[None, :, None] / 30.0
    freq = torch.rand(batch, 1, NUM_BLENDSHAPES, generator=generator) * 2 + 0.2
    phase = torch.rand(batch, 1, NUM_BLENDSHAPES, generator=generator) * 2 * math.pi
    return (0.6 * torch.sin(2 * math.pi * freq * time + phase)).clamp(0, 1)


@pytest.fixture
def prior(tiny_motion_prior_config):
    return ESARMMotionPrior(tiny_motion_prior_config)


def test_tiny_config_matches_contract(tiny_motion_prior_config):
    config = tiny_motion_prior_config
    assert config.model_type == "esarm_motion_prior"
    assert config.num_groups == len(FACE_REGIONS) == 3
    assert config.codebook_size == 32 and config.frames_per_token == 2
    assert config.fps == 30.0


def test_forward_shapes_and_range(prior):
    blendshapes = smooth_blendshapes(2, 11)
    mask = torch.ones(2, 11, dtype=torch.bool)
    mask[1, 7:] = False
    out = prior(blendshapes, attention_mask=mask)
    tokens = math.ceil(11 / prior.frames_per_token)
    assert out.reconstruction.shape == (2, 11, NUM_BLENDSHAPES)
    assert out.motion_tokens.shape == (2, tokens, prior.num_groups)
    assert out.motion_tokens.dtype == torch.long
    assert out.token_mask.tolist() == [
        [True] * tokens,
        [i < math.ceil(7 / prior.frames_per_token) for i in range(tokens)],
    ]
    assert out.reconstruction.min() >= 0 and out.reconstruction.max() <= 1
    assert torch.all(out.reconstruction[1, 7:] == 0), "padded frames decode to zero"
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert torch.allclose(out.loss, out.reconstruction_loss + prior.config.quantizer_loss_weight * out.quantizer_loss)
    assert out.codebook_usage.shape == (prior.num_groups,) and torch.all(out.codebook_usage > 0)
    assert out.perplexity.shape == (prior.num_groups,) and torch.all(out.perplexity >= 1)
    assert 0 <= int(out.motion_tokens.min()) and int(out.motion_tokens.max()) < prior.codebook_size


@pytest.mark.parametrize("frames_per_token", [1, 2, 4])
def test_frames_per_token(frames_per_token):
    prior = ESARMMotionPrior(ESARMMotionPriorConfig.tiny(frames_per_token=frames_per_token)).eval()
    blendshapes = smooth_blendshapes(1, 10)
    tokens = prior.encode(blendshapes)
    assert prior.frames_per_token == frames_per_token
    assert tokens.shape == (1, math.ceil(10 / frames_per_token), 3)
    assert prior.decode(tokens).shape == (1, tokens.shape[1] * frames_per_token, NUM_BLENDSHAPES)
    assert prior.decode(tokens, num_frames=10).shape == (1, 10, NUM_BLENDSHAPES)


def test_padding_values_and_amount_do_not_matter(prior):
    prior.eval()
    short = smooth_blendshapes(1, 7, seed=1)
    long_ = smooth_blendshapes(1, 13, seed=2)
    batch = torch.zeros(2, 13, NUM_BLENDSHAPES)
    batch[0, :7], batch[1] = short[0], long_[0]
    mask = torch.ones(2, 13, dtype=torch.bool)
    mask[0, 7:] = False
    garbage = batch.clone()
    garbage[0, 7:] = torch.rand(6, NUM_BLENDSHAPES) * 100
    garbage[0, 9] = float("nan")  # padded frames may hold anything

    with torch.no_grad():
        padded = prior(batch, attention_mask=mask)
        noisy = prior(garbage, attention_mask=mask)
        alone = prior(short)
    torch.testing.assert_close(noisy.reconstruction, padded.reconstruction)
    assert torch.equal(noisy.motion_tokens, padded.motion_tokens)
    torch.testing.assert_close(noisy.loss, padded.loss)
    # the short clip gives the same tokens and frames alone as inside a padded batch
    tokens_alone = alone.motion_tokens.shape[1]
    assert torch.equal(padded.motion_tokens[0, :tokens_alone], alone.motion_tokens[0])
    torch.testing.assert_close(padded.reconstruction[0, :7], alone.reconstruction[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded.reconstruction[1], prior(long_).reconstruction[0], atol=1e-5, rtol=1e-5)


def test_encode_decode_matches_forward(prior):
    prior.eval()
    blendshapes = smooth_blendshapes(2, 9)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 5:] = False
    with torch.no_grad():
        out = prior(blendshapes, attention_mask=mask)
    tokens = prior.encode(blendshapes, attention_mask=mask)
    assert torch.equal(tokens, out.motion_tokens)
    decoded = prior.decode(tokens, num_frames=9, motion_mask=out.token_mask)
    torch.testing.assert_close(decoded[0], out.reconstruction[0])
    torch.testing.assert_close(decoded[1, :5], out.reconstruction[1, :5])
    # the first clip alone (no mask) decodes the same
    torch.testing.assert_close(prior.decode(tokens[:1], num_frames=9), out.reconstruction[:1])


def test_training_reduces_reconstruction_error(tiny_motion_prior_config):
    prior = ESARMMotionPrior(tiny_motion_prior_config)
    optimizer = torch.optim.Adam(prior.parameters(), lr=3e-3)
    blendshapes = smooth_blendshapes(4, 16)
    losses = []
    for _ in range(40):
        out = prior(blendshapes)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.reconstruction_loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_vq_codebook_updates_and_reports_usage():
    prior = ESARMMotionPrior(ESARMMotionPriorConfig.tiny(codebook_size=16))
    codebook = prior.quantizers[0].codebook.clone()
    out = prior(smooth_blendshapes(4, 16))
    assert not torch.equal(prior.quantizers[0].codebook, codebook), "k-means init / EMA updated the codebook"
    assert out.quantizer_loss > 0
    assert torch.all(out.codebook_usage <= 1) and torch.all(out.perplexity <= 16)


def test_gradient_reaches_every_trainable_parameter(prior):
    out = prior(smooth_blendshapes(2, 8))
    out.loss.backward()
    missing = [name for name, p in prior.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not missing, f"no gradient for {missing}"


def test_save_and_load_round_trip(prior, tmp_path):
    prior(smooth_blendshapes(2, 8))  # initialises VQ codebooks (k-means) before saving
    prior.eval()
    prior.save_pretrained(tmp_path)
    loaded = ESARMMotionPrior.from_pretrained(tmp_path).eval()
    saved, original = loaded.config.to_dict(), prior.config.to_dict()
    saved.pop("_name_or_path"), original.pop("_name_or_path")
    assert saved == original
    blendshapes = smooth_blendshapes(2, 10, seed=3)
    with torch.no_grad():
        expected, actual = prior(blendshapes), loaded(blendshapes)
    assert torch.equal(expected.motion_tokens, actual.motion_tokens)
    torch.testing.assert_close(expected.reconstruction, actual.reconstruction, rtol=0, atol=0)
    tokens = expected.motion_tokens
    torch.testing.assert_close(prior.decode(tokens), loaded.decode(tokens), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("blendshapes", "message"),
    [
        (torch.rand(10, 52), r"blendshapes must have shape \[batch, frames, 52\].*got shape \(10, 52\)"),
        (torch.rand(1, 10, 51), r"blendshapes must have shape .*got shape \(1, 10, 51\)"),
        (torch.rand(1, 0, 52), "at least one frame"),
        (torch.full((1, 4, 52), float("nan")), "blendshapes must be finite"),
        (torch.ones(1, 4, 52, dtype=torch.long), "floating point"),
    ],
)
def test_bad_blendshapes(tiny_motion_prior_config, blendshapes, message):
    prior = ESARMMotionPrior(tiny_motion_prior_config)
    with pytest.raises(ValueError, match=message):
        prior(blendshapes)
    with pytest.raises(ValueError, match=message):
        prior.encode(blendshapes)


def test_bad_mask(tiny_motion_prior_config):
    prior = ESARMMotionPrior(tiny_motion_prior_config)
    with pytest.raises(ValueError, match=r"attention_mask must have shape \[2, 6\], got \(2, 5\)"):
        prior(torch.rand(2, 6, 52), attention_mask=torch.ones(2, 5))


def test_bad_tokens(tiny_motion_prior_config):
    prior = ESARMMotionPrior(tiny_motion_prior_config)
    K = prior.codebook_size
    with pytest.raises(ValueError, match=rf"code ids in \[0, {K}\), got values in \[{K}, {K}\]"):
        prior.decode(torch.full((1, 3, 3), K))
    with pytest.raises(ValueError, match=r"code ids in .*got values in \[-1, 0\]"):
        prior.decode(torch.tensor([[[0, 0, -1]]]))
    with pytest.raises(
        ValueError, match=r"motion_tokens must have shape \[batch, tokens >= 1, 3\].*got shape \(1, 3, 2\)"
    ):
        prior.decode(torch.zeros(1, 3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="integer code ids, got dtype torch.float32"):
        prior.decode(torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match=r"num_frames must be an int in \[1, 6\].*got 7"):
        prior.decode(torch.zeros(1, 3, 3, dtype=torch.long), num_frames=7)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(frames_per_token=3), "frames_per_token must be 1, 2 or 4, got 3"),
        (dict(codebook_size=1), "codebook_size must be an integer >= 2, got 1"),
        (dict(num_blendshapes=51), "num_blendshapes must be 52"),
        (dict(kernel_size=4), "kernel_size must be an odd positive integer, got 4"),
        (dict(fps=0), "fps must be a positive number"),
        (dict(ema_decay=1.5), r"ema_decay must be in \(0, 1\), got 1.5"),
        (dict(threshold_ema_dead_code=-1), "threshold_ema_dead_code must be >= 0, got -1"),
        (dict(velocity_loss_weight=-0.1), "velocity_loss_weight must be >= 0, got -0.1"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ESARMMotionPriorConfig(**kwargs)


def test_presets():
    base = ESARMMotionPriorConfig.base()
    assert base.codebook_size == 512 and base.num_groups == 3
    assert ESARMMotionPriorConfig(group_by_region=False).num_groups == 1
    assert ESARMMotionPriorConfig().codebook_size == 256
    prior = ESARMMotionPrior(ESARMMotionPriorConfig.tiny(group_by_region=False)).eval()
    assert prior.encode(smooth_blendshapes(1, 4)).shape == (1, 2, 1)


def test_untrained_vq_prior_is_deterministic_in_eval(tiny_motion_prior_config):
    """Encoding with an untrained prior neither runs k-means nor changes the codebook; tokens differ per input."""
    prior = ESARMMotionPrior(tiny_motion_prior_config).eval()
    codebook = prior.quantizers[0].codebook.clone()
    blendshapes = smooth_blendshapes(2, 12)
    first, second = prior.encode(blendshapes), prior.encode(blendshapes)
    assert torch.equal(first, second)
    assert torch.equal(prior.quantizers[0].codebook, codebook)
    assert not bool(prior.quantizers[0]._codebook.initted), "k-means still runs on the first training batch"
    decoded = prior.decode(torch.tensor([[[0, 0, 0]], [[1, 1, 1]]]))
    assert not torch.allclose(decoded[0], decoded[1])
