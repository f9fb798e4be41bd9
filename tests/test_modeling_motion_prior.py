"""ESARMMotionPrior: shapes, padding invariance, encode/decode consistency, save/load, gradients, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError

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
    if "finite" not in message:  # value checks belong to encode (user input), not to forward (no device sync)
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
        (dict(frames_per_token=3), r"'frames_per_token'.*must be one of \[1, 2, 4\], got 3"),
        (dict(codebook_size=1), r"'codebook_size'.*greater or equal to 2, got 1"),
        (dict(num_blendshapes=51), r"'num_blendshapes'.*must be one of \[52\], got 51"),
        (dict(kernel_size=4), r"'kernel_size'.*must be an odd positive integer, got 4"),
        (dict(fps=0), r"'fps'.*greater than 0.0, got 0"),
        (dict(fps="30"), r"'fps'.*expected float, got str"),
        (dict(hidden_size=3.5), r"'hidden_size' expected int, got float"),
        (dict(group_by_region="yes"), r"'group_by_region' expected bool, got str"),
        (dict(ema_decay=1.5), r"'ema_decay'.*greater than 0.0 and smaller than 1.0, got 1.5"),
        (dict(threshold_ema_dead_code=-1), r"'threshold_ema_dead_code'.*greater or equal to 0, got -1"),
        (dict(velocity_loss_weight=-0.1), r"'velocity_loss_weight'.*greater or equal to 0.0, got -0.1"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(StrictDataclassError, match=f"(?s){message}"):  # the field name and the reason: two lines
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


# ---- transformers' model conventions ---------------------------------------------------------------------------


def test_return_dict_false_gives_a_tuple(prior):
    blendshapes = smooth_blendshapes(2, 10)
    prior.eval()  # a training forward moves the codebook (EMA, dead-code reset): the second call would differ
    with torch.no_grad():
        expected = prior(blendshapes)
        as_tuple = prior(blendshapes, return_dict=False)
        prior.config.return_dict = False
        from_config = prior(blendshapes)
    assert isinstance(as_tuple, tuple) and isinstance(from_config, tuple)
    assert len(as_tuple) == len(expected.to_tuple())
    torch.testing.assert_close(as_tuple[1], expected.reconstruction)


def test_unknown_keyword_arguments_are_rejected(prior):
    blendshapes = smooth_blendshapes(1, 6)
    with pytest.raises(TypeError, match="attention_maks"):
        prior(blendshapes, attention_maks=torch.ones(1, 6))


def test_output_hidden_states(prior):
    with torch.no_grad():
        out = prior(smooth_blendshapes(2, 10), output_hidden_states=True)
        plain = prior(smooth_blendshapes(2, 10))
    assert plain.hidden_states is None
    assert len(out.hidden_states) == prior.num_groups
    assert all(h.shape == (2, 5, prior.config.latent_dim) for h in out.hidden_states)


def test_checkpoint_without_codebook_state_loads_a_fresh_one(tmp_path, prior):
    """The EMA buffers are set by _init_weights: a checkpoint without them does not load uninitialised memory."""
    from safetensors.torch import load_file, save_file

    prior.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    dropped = [key for key in weights if key.endswith(("cluster_size", "initted", "embed_avg"))]
    assert len(dropped) == 3 * prior.num_groups
    save_file({k: v for k, v in weights.items() if k not in dropped}, tmp_path / "model.safetensors",
              metadata={"format": "pt"})  # fmt: skip
    loaded = ESARMMotionPrior.from_pretrained(tmp_path)
    for quantizer in loaded.quantizers:
        codebook = quantizer._codebook
        assert torch.equal(codebook.cluster_size, torch.ones_like(codebook.cluster_size))
        assert not bool(codebook.initted)  # k-means still to run (kmeans_init=True)
        torch.testing.assert_close(codebook.embed_avg, codebook.embed)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_motion_prior_config):
    assert ESARMMotionPrior.supports_gradient_checkpointing
    blendshapes = smooth_blendshapes(2, 12)
    gradients = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        prior = ESARMMotionPrior(tiny_motion_prior_config.__class__.tiny(kmeans_init=False)).train()
        if checkpointing:
            prior.activation_checkpointing_enable()
        prior(blendshapes).loss.backward()
        gradients.append(prior.encoders[0].conv_in.weight.grad.clone())
    torch.testing.assert_close(gradients[0], gradients[1])


def test_bf16_forward_and_backward():
    prior = ESARMMotionPrior(ESARMMotionPriorConfig.tiny()).to(torch.bfloat16).train()
    out = prior(smooth_blendshapes(2, 10).to(torch.bfloat16))
    out.loss.backward()
    assert out.reconstruction.dtype == torch.bfloat16 and torch.isfinite(out.loss.float())
    assert prior.decode(out.motion_tokens).dtype == torch.bfloat16


def test_bf16_autocast_forward_and_backward():
    """Mixed precision as the Trainer's ``bf16=True`` runs it: float32 weights, bf16 convolutions."""
    prior = ESARMMotionPrior(ESARMMotionPriorConfig.tiny()).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = prior(smooth_blendshapes(2, 10))
    out.loss.backward()
    assert torch.isfinite(out.loss) and prior.decoders[0].conv_out.weight.grad is not None


# ---- the quantizer: inline inference, the library for training ---------------------------------------------------


def test_inline_lookup_matches_vector_quantize_pytorch():
    """Eval-mode ids and codes equal those of the library's VectorQuantize on the same codebook."""
    from vector_quantize_pytorch import VectorQuantize

    prior = ESARMMotionPrior(ESARMMotionPriorConfig.tiny(kmeans_init=False))
    quantizer = prior.quantizers[0].eval()
    with torch.no_grad():
        quantizer._codebook.embed.normal_(generator=torch.Generator().manual_seed(1))
    library = VectorQuantize(dim=quantizer.codebook.shape[1], codebook_size=quantizer.codebook.shape[0]).eval()
    library._codebook.load_state_dict(quantizer._codebook.state_dict())
    latents = torch.randn(3, 7, quantizer.codebook.shape[1], generator=torch.Generator().manual_seed(2))
    mask = torch.ones(3, 7, dtype=torch.bool)
    with torch.no_grad():
        quantized, ids, loss = quantizer(latents, mask)
        expected_quantized, expected_ids, expected_loss = library(latents, mask=mask)
    assert torch.equal(ids, expected_ids.long())
    torch.testing.assert_close(quantized, expected_quantized, rtol=0, atol=0)
    assert float(loss) == float(expected_loss) == 0.0


def test_state_dict_keeps_the_library_layout(prior):
    """Checkpoints written when the quantizers were the library's modules load unchanged (same keys and shapes)."""
    from vector_quantize_pytorch import VectorQuantize

    config = prior.config
    library = VectorQuantize(dim=config.latent_dim, codebook_size=config.codebook_size, kmeans_init=config.kmeans_init)
    expected = {f"quantizers.0.{k}": tuple(v.shape) for k, v in library.state_dict().items()}
    actual = {k: tuple(v.shape) for k, v in prior.state_dict().items() if k.startswith("quantizers.0.")}
    assert actual == expected


def test_training_updates_the_models_own_buffers_after_a_copy():
    """The library's EMA step writes the buffers of the module it is called through, also after deepcopy / .to()."""
    import copy

    prior = ESARMMotionPrior(ESARMMotionPriorConfig.tiny(codebook_size=16)).train()
    prior(smooth_blendshapes(2, 16))  # builds the library quantizer and runs k-means
    twin = copy.deepcopy(prior).to(torch.float32)
    before, twin_before = prior.quantizers[0].codebook.clone(), twin.quantizers[0].codebook.clone()
    twin(smooth_blendshapes(2, 16, seed=5))
    assert not torch.equal(twin.quantizers[0].codebook, twin_before), "EMA updated the copy's codebook"
    assert torch.equal(prior.quantizers[0].codebook, before), "the original's codebook is untouched"
    assert "quantizers.0._library_quantizer" not in "".join(prior.state_dict())


def test_dead_codes_are_those_below_an_absolute_ema_usage():
    """``threshold_ema_dead_code`` is an EMA usage count, as documented: a code used less than that is reset to a
    batch latent on a training step, a rarely used code above it is kept. (vector-quantize-pytorch 1.34 made the
    argument a ratio of the mean usage, which resets the second code too; pyproject pins the release below it.)"""
    prior = ESARMMotionPrior(ESARMMotionPriorConfig.tiny(kmeans_init=False))
    quantizer = prior.quantizers[0].train()
    codebook = quantizer._codebook
    threshold = prior.config.threshold_ema_dead_code
    with torch.no_grad():
        codebook.embed.normal_(generator=torch.Generator().manual_seed(1))
        codebook.embed[0, :2] = 100.0  # far from every latent: never chosen, so only a reset can move them
        codebook.cluster_size.fill_(1000.0)
        codebook.cluster_size[0, 0] = threshold / 2  # dead
        codebook.cluster_size[0, 1] = 50.0  # rare (5 % of the mean usage) but alive
        codebook.embed_avg.copy_(codebook.embed * codebook.cluster_size[..., None])
    latents = torch.randn(4, 8, prior.config.latent_dim, generator=torch.Generator().manual_seed(2))
    quantizer(latents, torch.ones(4, 8, dtype=torch.bool))
    embed = codebook.embed[0]
    assert embed[0].abs().max() < 10, "the dead code was reset to a batch latent"
    torch.testing.assert_close(embed[1], torch.full_like(embed[1], 100.0), rtol=1e-3, atol=0)
