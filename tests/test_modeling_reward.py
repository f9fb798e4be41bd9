"""ESARMRewardModel and ranking_loss: shapes, masks, causality, returns, save/load, gradients, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from transformers.modeling_layers import GradientCheckpointingLayer

from esarm.configuration_esarm import ESARMMotionPriorConfig, ESARMRewardModelConfig
from esarm.modeling_reward import ESARMRewardModel, ranking_loss

torch.set_num_threads(1)  # the test machine is shared: oversubscribed threads make tiny models slow

SAMPLES = 8000  # 0.5 s at 16 kHz -> 15 frames at 30 fps -> 8 motion steps of 2 frames


@pytest.fixture
def model(tiny_reward_config):
    return ESARMRewardModel(tiny_reward_config).eval()


def make_inputs(config: ESARMRewardModelConfig, batch: int = 2, samples: int = SAMPLES, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    frames = round(samples / 16000 * config.fps)
    steps = math.ceil(frames / config.frames_per_token)
    return dict(
        input_values=torch.randn(batch, samples, generator=generator),
        attention_mask=torch.ones(batch, samples, dtype=torch.long),
        emotion_ids=torch.arange(batch) % config.num_emotions,
        intensity_ids=torch.arange(batch) % config.num_intensities,
        speaker_ids=torch.zeros(batch, dtype=torch.long),
        motion_tokens=torch.randint(0, config.codebook_size, (batch, steps, config.num_groups), generator=generator),
        motion_mask=torch.ones(batch, steps, dtype=torch.bool),
    )


def test_tiny_config_matches_tiny_motion_prior(tiny_reward_config, tiny_motion_prior_config):
    assert tiny_reward_config.model_type == "esarm_reward"
    for name in ("num_groups", "codebook_size", "frames_per_token", "fps"):
        assert getattr(tiny_reward_config, name) == getattr(tiny_motion_prior_config, name)
    config = ESARMRewardModelConfig.from_motion_prior_config(ESARMMotionPriorConfig.tiny(codebook_size=16), gamma=0.5)
    assert config.codebook_size == 16 and config.gamma == 0.5


def test_forward_shapes_and_discounted_returns(model):
    inputs = make_inputs(model.config)
    steps = inputs["motion_tokens"].shape[1]
    assert model.num_motion_steps(SAMPLES) == steps
    with torch.no_grad():
        out = model(**inputs)
    assert out.rewards.shape == (2, steps)
    assert out.returns.shape == (2,)
    assert out.last_hidden_state.shape == (2, steps, model.config.hidden_size)
    discounts = torch.tensor([model.config.gamma**t for t in range(steps)])
    torch.testing.assert_close(out.returns, (out.rewards * discounts).sum(-1))


def test_padded_steps_do_not_count(model):
    inputs = make_inputs(model.config)
    inputs["motion_mask"][1, 5:] = False
    inputs["motion_tokens"][1, 5:] = 10**6  # padded ids may hold anything
    with torch.no_grad():
        out = model(**inputs)
    assert torch.all(out.rewards[1, 5:] == 0)
    discounts = model.config.gamma ** torch.arange(5.0)
    torch.testing.assert_close(out.returns[1], (out.rewards[1, :5] * discounts).sum())


def test_rewards_are_causal_in_motion(model):
    inputs = make_inputs(model.config, batch=1)
    changed = {k: v.clone() for k, v in inputs.items()}
    changed["motion_tokens"][0, 4:] = (changed["motion_tokens"][0, 4:] + 1) % model.config.codebook_size
    with torch.no_grad():
        before, after = model(**inputs), model(**changed)
    torch.testing.assert_close(before.rewards[0, :4], after.rewards[0, :4])
    assert not torch.allclose(before.rewards[0, 4:], after.rewards[0, 4:])


def test_condition_changes_rewards(model):
    inputs = make_inputs(model.config, batch=1)
    other = dict(inputs, emotion_ids=torch.tensor([5]))
    with torch.no_grad():
        assert not torch.allclose(model(**inputs).rewards, model(**other).rewards)


def test_float64_audio_is_accepted(model):
    inputs = make_inputs(model.config, batch=1)
    with torch.no_grad():
        expected = model(**inputs).returns
        actual = model(**dict(inputs, input_values=inputs["input_values"].double())).returns
    torch.testing.assert_close(actual, expected)


def test_batch_equals_single(model):
    inputs = make_inputs(model.config, batch=2)
    with torch.no_grad():
        batched = model(**inputs)
        single = model(**{k: v[1:] for k, v in inputs.items()})
    torch.testing.assert_close(batched.rewards[1:], single.rewards, atol=1e-5, rtol=1e-5)


def test_gradient_reaches_every_trainable_parameter(tiny_reward_config):
    model = ESARMRewardModel(tiny_reward_config).train()
    better, worse = make_inputs(tiny_reward_config, seed=0), make_inputs(tiny_reward_config, seed=1)
    # different lengths: eq. 1 is invariant to a constant per-step reward only for equal-length pairs
    worse["motion_mask"][1, 5:] = False
    loss = ranking_loss(model(**better).returns, model(**worse).returns, torch.tensor([1, 1]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not missing, f"no gradient for {missing}"
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all("feature_extractor" in n for n in frozen), "only the conv feature encoder is frozen"


def test_training_learns_a_ranking(tiny_reward_config):
    """A few steps of eq. 1 on fixed pairs make the model rank the 'better' trajectories first."""
    model = ESARMRewardModel(tiny_reward_config).train()
    better, worse = make_inputs(tiny_reward_config, seed=0), make_inputs(tiny_reward_config, seed=0)
    worse["motion_tokens"] = torch.randint(0, tiny_reward_config.codebook_size, better["motion_tokens"].shape)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    y = torch.tensor([1, 1])
    for _ in range(15):
        loss = ranking_loss(model(**better).returns, model(**worse).returns, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        assert torch.all(model(**better).returns > model(**worse).returns)


def test_save_and_load_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path)
    loaded = ESARMRewardModel.from_pretrained(tmp_path).eval()
    inputs = make_inputs(model.config)
    with torch.no_grad():
        expected, actual = model(**inputs), loaded(**inputs)
    torch.testing.assert_close(expected.rewards, actual.rewards, rtol=0, atol=0)
    torch.testing.assert_close(expected.returns, actual.returns, rtol=0, atol=0)


def test_ranking_loss_matches_hand_computation():
    returns_i = torch.tensor([2.0, -1.0, 0.5])
    returns_j = torch.tensor([1.0, 1.0, 0.5])
    y = torch.tensor([1, 0, 1])  # y = int(eps_i < eps_j)
    # y=1: -log(e^2 / (e^2 + e^1)); y=0: -log(e^1 / (e^-1 + e^1)); equal returns: -log(1/2)
    expected = (
        -math.log(math.exp(2) / (math.exp(2) + math.exp(1)))
        - math.log(math.exp(1) / (math.exp(-1) + math.exp(1)))
        - math.log(0.5)
    ) / 3
    assert ranking_loss(returns_i, returns_j, y).item() == pytest.approx(expected, rel=1e-6)
    # swapping the pair and the label gives the same loss; huge margins stay finite
    assert ranking_loss(returns_j, returns_i, 1 - y).item() == pytest.approx(expected, rel=1e-6)
    assert torch.isfinite(ranking_loss(torch.tensor([1e4]), torch.tensor([-1e4]), torch.tensor([0])))
    assert ranking_loss(torch.tensor([1e4]), torch.tensor([-1e4]), torch.tensor([True])).item() == 0.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            (torch.zeros(2, 1), torch.zeros(2), torch.zeros(2)),
            r"returns_i must be a non-empty 1-D tensor \[batch\], got \(2, 1\)",
        ),
        ((torch.zeros(2), torch.zeros(3), torch.zeros(2)), "must have the same shape"),
        ((torch.zeros(2), torch.zeros(2), torch.tensor([0, 2])), r"y must hold labels in \[0, 1\]"),
    ],
)
def test_ranking_loss_bad_inputs(args, message):
    with pytest.raises(ValueError, match=message):
        ranking_loss(*args)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(input_values=torch.zeros(1, 2, SAMPLES)), r"input_values must have shape \[batch, samples\]"),
        (dict(input_values=torch.zeros(2, SAMPLES, dtype=torch.long)), "floating point audio samples, got dtype"),
        (
            dict(input_values=torch.zeros(2, 500), attention_mask=None),
            r"at least one animation frame of audio per sequence \(534 samples at 16000 Hz and 30 fps\), got "
            r"lengths \[500, 500\]",
        ),
        (dict(attention_mask=torch.ones(2, 10)), "attention_mask must have the shape of input_values"),
        (dict(motion_tokens=None), "motion_tokens must be given"),
        (dict(motion_tokens=None, motion_mask=torch.ones(2, 8)), "motion_tokens must be given"),
        (
            dict(motion_tokens=torch.zeros(2, 8, 2, dtype=torch.long)),
            r"motion_tokens must have shape \[batch, steps >= 1, 3\] \(G = num_groups\)",
        ),
        (dict(motion_tokens=torch.zeros(3, 8, 3, dtype=torch.long)), "motion_tokens must have batch size 2"),
        (dict(motion_tokens=torch.zeros(2, 8, 3)), "integer code ids, got dtype torch.float32"),
        (dict(motion_tokens=torch.zeros(2, 8, 3, dtype=torch.bool)), "integer code ids, got dtype torch.bool"),
        (dict(motion_mask=torch.ones(2, 7)), r"motion_mask must have shape \[batch, steps\] = \[2, 8\]"),
        (dict(emotion_ids=None), "emotion_ids must be given"),
        (dict(intensity_ids=None), "intensity_ids must be given"),
        (dict(emotion_ids=torch.tensor([0, 1, 2])), r"emotion_ids must have shape \[batch\] = \[2\]"),
        (dict(emotion_ids=torch.tensor([True, False])), "emotion_ids must be integer ids, got dtype torch.bool"),
        (dict(speaker_ids=torch.tensor([0.0, 1.0])), "speaker_ids must be integer ids, got dtype torch.float32"),
    ],
)
def test_bad_inputs(model, change, message):
    inputs = {**make_inputs(model.config), **change}
    with pytest.raises(ValueError, match=message):
        model(**inputs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(gamma=0.0), r"'gamma'.*greater than 0.0 and smaller or equal to 1.0, got 0.0"),
        (dict(frames_per_token=3), r"'frames_per_token'.*must be one of \[1, 2, 4\], got 3"),
        (dict(hidden_size=30, num_attention_heads=4), r"hidden_size must be divisible by num_attention_heads \(4\)"),
        (dict(num_emotions=7), r"'num_emotions'.*must be one of \[8\], got 7"),
        (dict(num_speakers=-1), r"'num_speakers'.*greater or equal to 0, got -1"),
        (dict(codebook_size=1), r"'codebook_size'.*greater or equal to 2, got 1"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(StrictDataclassError, match=f"(?s){message}"):  # the field name and the reason: two lines
        ESARMRewardModelConfig.tiny(**kwargs)


def test_presets():
    base = ESARMRewardModelConfig.base()
    assert base.audio_encoder_name_or_path == "microsoft/wavlm-base-plus"
    assert base.audio_encoder_config.model_type == "wavlm" and base.audio_encoder_config.hidden_size == 768
    assert base.codebook_size == ESARMMotionPriorConfig.base().codebook_size
    tiny = ESARMRewardModelConfig.tiny()
    assert tiny.audio_encoder_name_or_path is None and tiny.audio_encoder_config.hidden_size == 32


def test_padded_audio_batch_equals_single(model):
    """A shorter clip (audio and motion) padded into a batch gets the rewards it gets alone."""
    inputs = make_inputs(model.config, batch=2, samples=SAMPLES)
    short_samples, short_steps = 4800, model.num_motion_steps(4800)
    inputs["attention_mask"][1, short_samples:] = 0
    inputs["input_values"][1, short_samples:] = 0
    inputs["motion_mask"][1, short_steps:] = False
    alone = {k: v[1:].clone() for k, v in inputs.items()}
    alone["input_values"] = alone["input_values"][:, :short_samples]
    alone["attention_mask"] = alone["attention_mask"][:, :short_samples]
    alone["motion_tokens"] = alone["motion_tokens"][:, :short_steps]
    alone["motion_mask"] = alone["motion_mask"][:, :short_steps]
    with torch.no_grad():
        batched, single = model(**inputs), model(**alone)
    torch.testing.assert_close(batched.rewards[1, :short_steps], single.rewards[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(batched.returns[1], single.returns[0], atol=1e-4, rtol=1e-4)


# ---- transformers' model conventions ---------------------------------------------------------------------------


def test_return_dict_false_gives_a_tuple(model):
    inputs = make_inputs(model.config)
    with torch.no_grad():
        expected = model(**inputs)
        as_tuple = model(**inputs, return_dict=False)
        model.config.return_dict = False
        from_config = model(**inputs)
    assert isinstance(as_tuple, tuple) and isinstance(from_config, tuple)
    torch.testing.assert_close(as_tuple[0], expected.rewards)
    torch.testing.assert_close(from_config[1], expected.returns)


def test_unknown_keyword_arguments_are_rejected(model):
    inputs = make_inputs(model.config)
    inputs["attention_maks"] = inputs.pop("attention_mask")
    with pytest.raises(TypeError, match="attention_maks"):
        model(**inputs)


def test_output_hidden_states(model):
    inputs = make_inputs(model.config)
    steps = inputs["motion_tokens"].shape[1]
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    assert out.hidden_states[-1].shape == (2, 3 + 2 * steps, model.config.hidden_size)
    torch.testing.assert_close(out.hidden_states[-1][:, 4::2], out.last_hidden_state)


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_declared_features_hold(tiny_reward_config, use_reentrant):
    """SDPA is what the attention calls; gradient checkpointing recomputes the blocks with the same gradients.

    With ``use_reentrant=True`` the speech encoder's layers are checkpointed without reentry: WavLM hands a tensor
    that needs gradients to its layers by keyword, which reentrant checkpointing does not detach, and one backward
    pass then ran for minutes on two tiny layers.
    """
    assert ESARMRewardModel._supports_sdpa and ESARMRewardModel.supports_gradient_checkpointing
    inputs = make_inputs(tiny_reward_config)
    gradients = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = ESARMRewardModel(tiny_reward_config).train()
        if checkpointing:
            model.activation_checkpointing_enable({"use_reentrant": use_reentrant})
            blocks = list(model.transformer.layers)
            encoder_layers = [m for m in model.audio_encoder.modules() if isinstance(m, GradientCheckpointingLayer)]
            assert encoder_layers and all(layer.gradient_checkpointing for layer in blocks + encoder_layers)
            assert all(
                block._gradient_checkpointing_func.keywords["use_reentrant"] is use_reentrant for block in blocks
            )
            assert not any(layer._gradient_checkpointing_func.keywords["use_reentrant"] for layer in encoder_layers)
        model(**inputs).returns.sum().backward()
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert gradients[0].keys() == gradients[1].keys()
    assert any(name.startswith("speech_encoder.encoder.encoder.layers.1.") for name in gradients[0])
    for name, gradient in gradients[0].items():
        torch.testing.assert_close(gradients[1][name], gradient, msg=name)


def test_labels_give_the_mean_squared_error_of_the_returns(model):
    inputs = make_inputs(model.config)
    labels = torch.tensor([0.5, -1.0])
    with torch.no_grad():
        plain = model(**inputs)
        out = model(**inputs, labels=labels)
        as_tuple = model(**inputs, labels=labels, return_dict=False)
    assert plain.loss is None
    torch.testing.assert_close(out.loss, ((plain.returns - labels) ** 2).mean())
    torch.testing.assert_close(out.returns, plain.returns)
    torch.testing.assert_close(as_tuple[0], out.loss)  # the loss comes first, as in transformers' outputs
    with pytest.raises(ValueError, match=r"labels must be a \[batch=2\] tensor of target returns, got shape \[2, 1\]"):
        model(**inputs, labels=labels[:, None])


def test_output_attentions_are_causal_weights_and_leave_the_outputs_unchanged(model):
    inputs = make_inputs(model.config)
    length = 3 + 2 * inputs["motion_tokens"].shape[1]
    with torch.no_grad():
        plain = model(**inputs)
        out = model(**inputs, output_attentions=True)
        model.set_attn_implementation("eager")  # transformers allows config.output_attentions with eager only
        model.config.output_attentions = True
        from_config = model(**inputs)
    assert plain.attentions is None and len(from_config.attentions) == model.config.num_hidden_layers
    assert len(out.attentions) == model.config.num_hidden_layers
    for weights in out.attentions:
        assert weights.shape == (2, model.config.num_attention_heads, length, length)
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
        assert torch.all(weights.triu(diagonal=1) == 0)  # position i never reads a later position
    # the eager attention that returns the weights gives the fused attention's outputs
    torch.testing.assert_close(out.returns, plain.returns, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.last_hidden_state, plain.last_hidden_state, atol=1e-5, rtol=1e-5)


def test_input_embeddings_are_the_motion_token_table(model):
    config = model.config
    table = model.get_input_embeddings()
    assert isinstance(table, torch.nn.Embedding)
    assert tuple(table.weight.shape) == (config.num_groups * config.codebook_size, config.hidden_size)
    replacement = torch.nn.Embedding(config.num_groups * config.codebook_size, config.hidden_size)
    model.set_input_embeddings(replacement)
    assert model.get_input_embeddings() is replacement and model.token_embedding is replacement


def test_bf16_forward_and_backward(tiny_reward_config):
    model = ESARMRewardModel(tiny_reward_config).to(torch.bfloat16).train()
    inputs = make_inputs(tiny_reward_config)
    inputs["input_values"] = inputs["input_values"].to(torch.bfloat16)
    out = model(**inputs)
    out.returns.sum().backward()
    assert out.returns.dtype == torch.bfloat16 and model.reward_head.weight.grad is not None
