"""ESARMSTAForGeneration and its config: shapes, masks, round trips, gradients, disentanglement hooks, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassError
from transformers.modeling_layers import GradientCheckpointingLayer

from esarm import ESARMMotionPrior, ESARMMotionPriorConfig, ESARMSTAConfig, ESARMSTAForGeneration
from esarm.audio_features import PHONE_CLASSES, PhoneClassHead, normalized_log_mel
from esarm.modeling_sta import ESARMSTAOutput
from esarm.speech_encoder import build_audio_encoder

SAMPLING_RATE = 16000


@pytest.fixture
def model(tiny_sta_config):
    return ESARMSTAForGeneration(tiny_sta_config).eval()


@pytest.fixture
def batch(model):
    """Two clips of 1.0 s and 0.6 s (right-padded), with labels and target tokens."""
    generator = torch.Generator().manual_seed(1)
    audio = torch.randn(2, SAMPLING_RATE, generator=generator) * 0.1
    attention_mask = torch.ones(2, SAMPLING_RATE, dtype=torch.long)
    attention_mask[1, int(0.6 * SAMPLING_RATE) :] = 0
    audio[1, int(0.6 * SAMPLING_RATE) :] = 0.0
    steps = model.num_motion_steps(attention_mask.sum(-1))
    tokens = torch.randint(0, model.codebook_size, (2, int(steps.max()), model.num_groups), generator=generator)
    motion_mask = torch.arange(tokens.shape[1])[None] < steps[:, None]
    return {
        "input_values": audio,
        "attention_mask": attention_mask,
        "emotion_ids": torch.tensor([1, 5]),
        "intensity_ids": torch.tensor([2, 0]),
        "speaker_ids": torch.tensor([0, 3]),
        "motion_tokens": tokens,
        "motion_mask": motion_mask,
    }


# ---- config ----------------------------------------------------------------------------------------------------


def test_presets_describe_the_motion_prior_and_encoder():
    tiny, base = ESARMSTAConfig.tiny(), ESARMSTAConfig.base()
    assert tiny.audio_encoder_config.model_type == "wavlm" and tiny.audio_encoder_config.hidden_size == 32
    assert base.audio_encoder_name_or_path == "microsoft/wavlm-base-plus"
    assert base.audio_encoder_config.hidden_size == 768 and base.audio_encoder_config.num_hidden_layers == 12
    prior = ESARMMotionPriorConfig.tiny()
    assert (tiny.num_groups, tiny.codebook_size, tiny.fps) == (prior.num_groups, prior.codebook_size, prior.fps)


def test_config_round_trip(tmp_path, tiny_sta_config):
    tiny_sta_config.save_pretrained(tmp_path)
    loaded = ESARMSTAConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == tiny_sta_config.to_dict()
    assert loaded.audio_encoder_config.conv_dim == tiny_sta_config.audio_encoder_config.conv_dim
    assert isinstance(loaded.motion_prior_config, ESARMMotionPriorConfig)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hidden_size", 0),
        ("hidden_size", 30),  # 2 heads of 15: rotary positions need an even head size
        ("num_attention_heads", 0),
        ("num_emotions", 7),
        ("num_intensities", 4),
        ("num_speakers", -1),
        ("attention_window", 0),
        ("dropout", 1.0),
        ("previous_token_dropout", 1.0),
        ("previous_token_dropout", -0.1),
        ("spectral_features", -1),
        ("emotion_loss_weight", -0.5),
        ("sampling_rate", 0),
        ("content_encoder_layers", -1),
        ("audio_front_end", "mfcc"),
        ("log_mel_bands", 0),
        ("phone_loss_weight", -1.0),
        ("mouth_conditioning", "style"),
    ],
)
def test_config_rejects_bad_fields(field, value):
    with pytest.raises(StrictDataclassError, match=field.split("_")[0]):
        ESARMSTAConfig.tiny(**{field: value})


def test_config_rejects_a_non_speech_encoder_config():
    with pytest.raises(StrictDataclassError, match="audio_encoder_config.num_hidden_layers must be an integer"):
        ESARMSTAConfig.tiny(audio_encoder_config={"model_type": "esarm_motion_prior"})


# ---- shapes, lengths, masks ------------------------------------------------------------------------------------


def test_num_motion_steps_follows_frames_and_downsampling(model):
    assert model.num_animation_frames(SAMPLING_RATE) == 30  # 1 s at 30 fps
    assert model.num_motion_steps(SAMPLING_RATE) == 15  # 2 frames per token
    assert model.num_motion_steps(int(1.05 * SAMPLING_RATE)) == math.ceil(round(1.05 * 30) / 2)
    lengths = torch.tensor([SAMPLING_RATE, 9600, 534])
    assert model.num_motion_steps(lengths).tolist() == [15, 9, 1]


def test_forward_shapes(model, batch):
    output = model(**batch)
    assert isinstance(output, ESARMSTAOutput)
    steps, groups, codes, hidden = batch["motion_tokens"].shape[1], model.num_groups, model.codebook_size, 32
    assert output.logits.shape == (2, steps, groups, codes)
    assert output.emotion_logits.shape == (2, 8)
    assert output.content_features.shape == (2, steps, hidden)
    assert output.emotion_features.shape == (2, hidden)
    assert output.audio_features.shape == (2, steps, hidden)
    assert torch.equal(output.motion_mask, batch["motion_mask"])
    assert output.loss.ndim == 0 and torch.isfinite(output.loss)
    expected = output.token_loss + model.config.emotion_loss_weight * output.emotion_loss
    torch.testing.assert_close(output.loss, expected)


def test_forward_without_tokens_gives_features_and_emotion(model, batch):
    output = model(batch["input_values"], batch["attention_mask"])
    assert output.logits is None and output.token_loss is None and output.loss is None
    assert output.motion_mask.sum(-1).tolist() == model.num_motion_steps(batch["attention_mask"].sum(-1)).tolist()


def test_padding_does_not_change_a_sequence(model, batch):
    """The short clip gives the same logits alone as right-padded in a batch (masks ignore padding)."""
    padded = model(**batch)
    length = int(batch["attention_mask"][1].sum())
    steps = int(batch["motion_mask"][1].sum())
    alone = model(
        batch["input_values"][1:, :length],
        emotion_ids=batch["emotion_ids"][1:],
        intensity_ids=batch["intensity_ids"][1:],
        speaker_ids=batch["speaker_ids"][1:],
        motion_tokens=batch["motion_tokens"][1:, :steps],
    )
    torch.testing.assert_close(padded.logits[1, :steps], alone.logits[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(padded.emotion_logits[1], alone.emotion_logits[0], atol=1e-4, rtol=1e-4)


def test_targets_are_aligned_with_the_audio_by_time(model, batch):
    """Shorter or longer target sequences keep step t at the same time: same logits, extra steps ignored."""
    reference = model(**batch)
    short = model(**dict(batch, motion_tokens=batch["motion_tokens"][:, :6], motion_mask=batch["motion_mask"][:, :6]))
    torch.testing.assert_close(short.logits, reference.logits[:, :6], atol=1e-5, rtol=1e-5)
    longer_tokens = torch.cat([batch["motion_tokens"], batch["motion_tokens"][:, :4]], dim=1)
    longer = model(**dict(batch, motion_tokens=longer_tokens, motion_mask=None))
    assert longer.logits.shape[1] == reference.logits.shape[1] + 4
    assert torch.equal(longer.motion_mask[:, : reference.logits.shape[1]], batch["motion_mask"])
    assert not longer.motion_mask[:, reference.logits.shape[1] :].any()  # beyond the audio: not scored
    torch.testing.assert_close(longer.token_loss, reference.token_loss, atol=1e-5, rtol=1e-5)


def test_logits_are_causal_in_the_tokens(model, batch):
    """Changing the tokens of step t changes the logits of steps > t only."""
    reference = model(**batch).logits
    changed = dict(batch, motion_tokens=batch["motion_tokens"].clone())
    changed["motion_tokens"][:, 5] = (changed["motion_tokens"][:, 5] + 1) % model.codebook_size
    logits = model(**changed).logits
    torch.testing.assert_close(logits[:, :6], reference[:, :6])
    assert not torch.allclose(logits[0, 6:], reference[0, 6:])


def test_conditions_change_the_prediction(model, batch):
    reference = model(**batch).logits
    other = model(**dict(batch, emotion_ids=torch.tensor([6, 6]))).logits
    assert not torch.allclose(reference, other)


def test_style_vector_is_a_linear_map_of_one_hot_conditions(model):
    emotion, intensity, speaker = torch.tensor([2]), torch.tensor([1]), torch.tensor([4])
    style = model.style_vector(emotion, intensity, speaker)
    weight, bias = model.style_projection.weight, model.style_projection.bias
    expected = weight[:, 2] + weight[:, 8 + 1] + weight[:, 8 + 3 + 4] + bias
    torch.testing.assert_close(style[0], expected)


def test_cross_reconstruction_hooks(model, batch):
    """encode_content / encode_emotion / decode_features reproduce forward, and mix clips when asked."""
    output = model(**batch)
    audio = (batch["input_values"], batch["attention_mask"])
    conditions = {name: batch[name] for name in ("emotion_ids", "intensity_ids", "speaker_ids")}
    content, mask = model.encode_content(*audio, **conditions)
    emotion = model.encode_emotion(*audio, **conditions)
    torch.testing.assert_close(content, output.content_features, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.classify_emotion(emotion), output.emotion_logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(mask, batch["motion_mask"])
    logits = model.decode_features(content, emotion, **conditions, motion_tokens=batch["motion_tokens"],
                                   motion_mask=batch["motion_mask"])  # fmt: skip
    valid = batch["motion_mask"]
    torch.testing.assert_close(logits[valid], output.logits[valid], atol=1e-5, rtol=1e-5)
    by_style = model.decode_features(content, emotion, motion_tokens=batch["motion_tokens"], style=output.style)
    torch.testing.assert_close(by_style[valid], output.logits[valid], atol=1e-5, rtol=1e-5)
    # content of clip 0 with the emotion and conditions of clip 1
    swapped = model.decode_features(
        content[:1], emotion[1:], emotion_ids=batch["emotion_ids"][1:], motion_tokens=batch["motion_tokens"][:1]
    )
    assert swapped.shape == output.logits[:1].shape
    assert not torch.allclose(swapped, output.logits[:1])
    # precomputed audio features give the same branches
    features, feature_mask = model.encode_audio(*audio)
    reused, _ = model.encode_content(audio_features=features, feature_mask=feature_mask)
    torch.testing.assert_close(reused[valid], content[valid])
    with pytest.raises(ValueError, match="motion_tokens must be given"):
        model.decode_features(content, emotion)
    with pytest.raises(ValueError, match="steps of content_features"):
        model.decode_features(content, emotion, motion_tokens=batch["motion_tokens"][:, :4])


def test_speech_encoder_turns_layerdrop_off(tiny_sta_config):
    # WavLM's default LayerDrop (0.1) would drop hidden states in training and break the learned layer weighting
    encoder_config = {**tiny_sta_config.audio_encoder_config.to_dict(), "num_hidden_layers": 4, "layerdrop": 0.9}
    model = ESARMSTAForGeneration(ESARMSTAConfig.tiny(audio_encoder_config=encoder_config)).train()
    assert model.audio_encoder.config.layerdrop == 0.0
    torch.manual_seed(0)
    for _ in range(3):
        features, _ = model.encode_audio(torch.randn(2, 8000))
        assert torch.isfinite(features).all()


# ---- training behaviour ---------------------------------------------------------------------------------------


def test_gradient_reaches_every_trainable_parameter(tiny_sta_config, batch):
    model = ESARMSTAForGeneration(tiny_sta_config).train()
    model(**batch).loss.backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing}"
    zero = [name for name, p in model.named_parameters() if p.requires_grad and not p.grad.abs().sum() > 0]
    assert not zero, f"zero gradient for {zero}"
    prior = list(model.motion_prior.parameters())
    assert prior and all(not p.requires_grad and p.grad is None for p in prior)
    assert not model.motion_prior.training  # the frozen prior stays in eval mode
    # the convolutional feature encoder is frozen by default (freeze_feature_encoder=True)
    assert all(not p.requires_grad for p in model.audio_encoder.feature_extractor.parameters())


def test_previous_token_dropout_masks_previous_tokens_in_training_only(tiny_sta_config, batch):
    """With ``previous_token_dropout`` the teacher-forced logits stop depending on the previous tokens at masked
    steps during training; in eval mode (generation, evaluation) the model is the same function as without it."""
    torch.manual_seed(0)
    plain = ESARMSTAForGeneration(tiny_sta_config).eval()
    config = ESARMSTAConfig.from_dict({**tiny_sta_config.to_dict(), "previous_token_dropout": 0.5})
    model = ESARMSTAForGeneration(config)
    assert plain.mask_embedding is None and model.mask_embedding is not None
    missing = model.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing == ["mask_embedding"]
    model.eval()
    # eval: identical to the model without the field, and deterministic
    torch.testing.assert_close(model(**batch).logits, plain(**batch).logits, rtol=0, atol=0)
    generated = model.generate(batch["input_values"], batch["attention_mask"], emotion_ids=batch["emotion_ids"])
    reference = plain.generate(batch["input_values"], batch["attention_mask"], emotion_ids=batch["emotion_ids"])
    assert torch.equal(generated.motion_tokens, reference.motion_tokens)
    # training: about half of the steps t >= 1 see the mask embedding instead of the tokens of step t - 1
    model.train()
    previous = model._previous_token_inputs(batch["motion_tokens"], batch["motion_tokens"].shape[1])
    masked = (previous == model.mask_embedding).all(-1)  # [B, T']
    assert not masked[:, 0].any()  # BOS is kept
    assert 0.2 < masked[:, 1:].float().mean() < 0.8
    unmasked = plain._previous_token_inputs(batch["motion_tokens"], batch["motion_tokens"].shape[1])
    torch.testing.assert_close(previous[~masked], unmasked[~masked])
    model(**batch).loss.backward()
    assert model.mask_embedding.grad is not None and model.mask_embedding.grad.abs().sum() > 0
    # disabling dropout (trl's disable_dropout_in_model sets p = 0 on every nn.Dropout) turns it off in training
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    torch.testing.assert_close(model(**batch).logits, plain.train()(**batch).logits, rtol=0, atol=0)


def test_spectral_features_follow_loudness_and_ignore_padding(tmp_path, tiny_sta_config, batch):
    """``spectral_features`` adds a loudness / spectral path from the waveform: louder audio changes the features
    (the layer-normalised tiny WavLM alone hardly sees loudness); a padded sequence gives the same features and tokens
    as on its own; saved and loaded models agree. Off by default (no module, unchanged state dict)."""
    assert ESARMSTAForGeneration(tiny_sta_config).spectral_features is None
    config = ESARMSTAConfig.from_dict({**tiny_sta_config.to_dict(), "spectral_features": 8})
    model = ESARMSTAForGeneration(config).eval()
    audio, mask = batch["input_values"], batch["attention_mask"]
    features, step_mask = model.encode_audio(audio, mask)
    loud = audio.clone()
    loud[0, : SAMPLING_RATE // 2] *= 10.0
    changed, _ = model.encode_audio(loud, mask)
    assert not torch.allclose(changed[0], features[0])
    assert (features[~step_mask] == 0).all()
    length = int(mask[1].sum())
    alone, alone_mask = model.encode_audio(audio[1:, :length])
    steps = int(alone_mask.sum())
    torch.testing.assert_close(alone[0, :steps], features[1, :steps], rtol=1e-4, atol=1e-5)
    both = model.generate(audio, mask, emotion_ids=batch["emotion_ids"])
    single = model.generate(audio[1:, :length], emotion_ids=batch["emotion_ids"][1:])
    assert torch.equal(single.motion_tokens[0], both.motion_tokens[1, :steps])
    model.save_pretrained(tmp_path)
    loaded = ESARMSTAForGeneration.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded.encode_audio(audio, mask)[0], features, rtol=0, atol=0)


def test_save_and_load_round_trip(tmp_path, model, batch):
    model.save_pretrained(tmp_path)
    loaded = ESARMSTAForGeneration.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits, rtol=0, atol=0)
    original = model.generate(batch["input_values"], batch["attention_mask"], do_sample=True, seed=3)
    reloaded = loaded.generate(batch["input_values"], batch["attention_mask"], do_sample=True, seed=3)
    assert torch.equal(original.motion_tokens, reloaded.motion_tokens)
    torch.testing.assert_close(original.blendshapes, reloaded.blendshapes, rtol=0, atol=0)


def test_load_motion_prior_from_folder(tmp_path, model, tiny_sta_config):
    prior = ESARMMotionPrior(tiny_sta_config.motion_prior_config)
    prior.save_pretrained(tmp_path / "prior")
    loaded = model.load_motion_prior(tmp_path / "prior")
    assert model.motion_prior is loaded
    assert all(not p.requires_grad for p in model.motion_prior.parameters())
    for name, value in prior.state_dict().items():
        assert torch.equal(model.motion_prior.state_dict()[name], value), name


def test_load_motion_prior_rejects_other_codebooks(model):
    other = ESARMMotionPrior(ESARMMotionPriorConfig.tiny(codebook_size=27))
    with pytest.raises(ValueError, match=f"K={model.codebook_size} codes.*got G=3 and K=27"):
        model.load_motion_prior(other)
    with pytest.raises(ValueError, match="path_or_model"):
        model.load_motion_prior(3)


def test_pretrained_audio_encoder_is_loaded_and_kept(tmp_path, tiny_sta_config):
    """audio_encoder_name_or_path loads encoder weights (here a local folder; a Hub name works the same online)."""
    encoder = build_audio_encoder(tiny_sta_config.audio_encoder_config)
    encoder.save_pretrained(tmp_path / "encoder")
    config = ESARMSTAConfig.tiny(audio_encoder_name_or_path=str(tmp_path / "encoder"))
    model = ESARMSTAForGeneration(config)
    for name, value in encoder.state_dict().items():
        assert torch.equal(model.audio_encoder.state_dict()[name], value), name
    # a saved STA model holds the weights: loading it does not fetch the encoder again
    model.config.audio_encoder_name_or_path = str(tmp_path / "missing")
    model.save_pretrained(tmp_path / "sta")
    loaded = ESARMSTAForGeneration.from_pretrained(tmp_path / "sta")
    for name, value in encoder.state_dict().items():
        assert torch.equal(loaded.audio_encoder.state_dict()[name], value), name


# ---- bad input -------------------------------------------------------------------------------------------------


def _bad_inputs(model):
    audio = torch.randn(2, SAMPLING_RATE) * 0.1
    tokens = torch.zeros(2, 15, 3, dtype=torch.long)
    codes = model.codebook_size
    nan_audio = audio.clone()
    nan_audio[0, 10] = float("nan")
    inf_audio = audio.clone()
    inf_audio[1, 5] = float("inf")
    short_mask = torch.ones(2, SAMPLING_RATE, dtype=torch.long)
    short_mask[1, 100:] = 0
    return {
        "empty audio": (dict(input_values=torch.zeros(1, 0)), "input_values.*empty"),
        "shorter than one frame": (dict(input_values=torch.randn(1, 500)), "at least one animation frame.*534 samples"),
        "padded shorter than one frame": (dict(input_values=audio, attention_mask=short_mask), "one animation frame"),
        "NaN": (dict(input_values=nan_audio), "finite.*1 NaN/inf"),
        "inf": (dict(input_values=inf_audio), "finite.*1 NaN/inf"),
        "wrong rank": (dict(input_values=audio[None]), r"\[batch, samples\].*\[1, 2, 16000\]"),
        "integer audio": (dict(input_values=(audio * 1000).long()), "floating point.*int64"),
        "not a tensor": (dict(input_values=[0.0] * 16000), "torch.Tensor or numpy.*list"),
        "mask shape": (dict(input_values=audio, attention_mask=torch.ones(2, 100)), "attention_mask.*shape"),
        "emotion batch mismatch": (
            dict(input_values=audio, emotion_ids=torch.tensor([0, 1, 2])),
            r"emotion_ids.*\[2\].*\[3\]",
        ),  # noqa: E501
        "unknown emotion": (dict(input_values=audio, emotion_ids=torch.tensor([0, 8])), r"emotion_ids.*\[0, 8\).*8"),
        "unknown intensity": (dict(input_values=audio, intensity_ids=torch.tensor([3, 0])), r"intensity_ids.*\[0, 3\)"),
        "unknown speaker": (dict(input_values=audio, speaker_ids=torch.tensor([5, 0])), r"speaker_ids.*\[0, 5\).*5"),
        "float labels": (dict(input_values=audio, emotion_ids=torch.tensor([0.0, 1.0])), "emotion_ids.*integer"),
        "token out of codebook": (
            dict(input_values=audio, motion_tokens=tokens + codes),
            rf"motion_tokens.*\[0, {codes}\).*{codes}",
        ),
        "negative token": (dict(input_values=audio, motion_tokens=tokens - 1), rf"motion_tokens.*\[0, {codes}\).*-1"),
        "tokens wrong groups": (
            dict(input_values=audio, motion_tokens=tokens[..., :2]),
            r"motion_tokens.*\[batch, steps >= 1, 3\]",
        ),  # noqa: E501
        "tokens batch mismatch": (dict(input_values=audio, motion_tokens=tokens[:1]), "motion_tokens.*batch size 2.*1"),
        "mask without tokens": (dict(input_values=audio, motion_mask=torch.ones(2, 15)), "motion_mask"),
    }


BAD_INPUT_CASES = [
    "empty audio", "shorter than one frame", "padded shorter than one frame", "NaN", "inf", "wrong rank",
    "integer audio", "not a tensor", "mask shape", "emotion batch mismatch", "unknown emotion",
    "unknown intensity", "unknown speaker", "float labels", "token out of codebook", "negative token",
    "tokens wrong groups", "tokens batch mismatch", "mask without tokens",
]  # fmt: skip


def test_bad_input_cases_are_all_listed(model):
    assert sorted(_bad_inputs(model)) == sorted(BAD_INPUT_CASES)


# Cases whose check reads tensor values: generate (an entry point for user input) runs them, forward does not
# (a device sync per step of training, and a graph break under torch.compile).
VALUE_CASES = [
    "padded shorter than one frame", "NaN", "inf", "unknown emotion", "unknown intensity", "unknown speaker",
    "token out of codebook", "negative token",
]  # fmt: skip


@pytest.mark.parametrize("case", [case for case in BAD_INPUT_CASES if case not in VALUE_CASES])
def test_forward_rejects_bad_input(model, case):
    kwargs, message = _bad_inputs(model)[case]
    with pytest.raises(ValueError, match=message):
        model(**kwargs)


@pytest.mark.parametrize("case", [case for case in BAD_INPUT_CASES if "token" not in case])
def test_generate_rejects_bad_input_values(model, case):
    kwargs, message = _bad_inputs(model)[case]
    with pytest.raises(ValueError, match=message):
        model.generate(**kwargs, decode_blendshapes=False)


def test_generate_rejects_bad_input(model):
    audio = torch.randn(2, SAMPLING_RATE) * 0.1
    with pytest.raises(ValueError, match="at least one animation frame"):
        model.generate(torch.randn(1, 100))
    with pytest.raises(ValueError, match="speaker_ids"):
        model.generate(audio, speaker_ids=torch.tensor([0]))
    with pytest.raises(ValueError, match="emotion must be 'auto' or None"):
        model.generate(audio, emotion="happy")
    with pytest.raises(ValueError, match="emotion_ids must be given"):
        model.generate(audio, emotion=None)


# ---- transformers' model conventions ---------------------------------------------------------------------------


def test_return_dict_false_gives_a_tuple(model, batch):
    with torch.no_grad():
        expected = model(**batch)
        as_tuple = model(**batch, return_dict=False)
        model.config.return_dict = False
        from_config = model(**batch)
    assert isinstance(as_tuple, tuple) and isinstance(from_config, tuple)
    torch.testing.assert_close(as_tuple[0], expected.loss)
    torch.testing.assert_close(from_config[3], expected.logits)


def test_unknown_keyword_arguments_are_rejected(model, batch):
    batch["attention_maks"] = batch.pop("attention_mask")
    with pytest.raises(TypeError, match="attention_maks"):
        model(**batch)


def test_output_hidden_states(model, batch):
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    assert out.hidden_states[0].shape == (2, batch["motion_tokens"].shape[1], model.config.hidden_size)


def test_input_embeddings_are_the_token_tables(model):
    embeddings = model.get_input_embeddings()
    assert embeddings is model.token_embeddings
    assert all(isinstance(table, torch.nn.Embedding) for table in embeddings)
    tokens = torch.tensor([[[1, 2, 3]]])
    expected = sum(table(tokens[..., g]) for g, table in enumerate(embeddings))
    torch.testing.assert_close(model.embed_motion_tokens(tokens), expected)


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_declared_features_hold(tiny_sta_config, batch, use_reentrant):
    """SDPA is what the attention calls; gradient checkpointing recomputes the blocks with the same gradients.

    With ``use_reentrant=True`` the speech encoder's layers are checkpointed without reentry (WavLM passes a tensor
    that needs gradients by keyword, which reentrant checkpointing does not detach: the backward pass hung).
    """
    assert ESARMSTAForGeneration._supports_sdpa and ESARMSTAForGeneration.supports_gradient_checkpointing
    gradients = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = ESARMSTAForGeneration(tiny_sta_config).train()
        if checkpointing:
            model.activation_checkpointing_enable({"use_reentrant": use_reentrant})
            blocks = list(model.motion_transformer.layers)
            encoder_layers = [m for m in model.audio_encoder.modules() if isinstance(m, GradientCheckpointingLayer)]
            assert encoder_layers and all(layer.gradient_checkpointing for layer in blocks + encoder_layers)
            assert all(
                block._gradient_checkpointing_func.keywords["use_reentrant"] is use_reentrant for block in blocks
            )
            assert not any(layer._gradient_checkpointing_func.keywords["use_reentrant"] for layer in encoder_layers)
        model(**batch).loss.backward()
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert gradients[0].keys() == gradients[1].keys()
    for name, gradient in gradients[0].items():
        torch.testing.assert_close(gradients[1][name], gradient, msg=name)


def test_decoder_step_compiles_without_graph_breaks(model):
    """One cached generation step (transformer + token heads) is a single graph for torch.compile."""
    conditioning = torch.randn(2, 1, model.config.hidden_size)
    cache = model.motion_transformer.new_cache(2, 8, conditioning)

    def step(inputs):
        return model._token_logits(model.motion_transformer(inputs, cache=cache))

    explanation = torch._dynamo.explain(step)(conditioning)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_bf16_forward_and_backward(tiny_sta_config, batch):
    model = ESARMSTAForGeneration(tiny_sta_config).to(torch.bfloat16).train()
    batch["input_values"] = batch["input_values"].to(torch.bfloat16)
    out = model(**batch)
    out.loss.backward()
    assert out.logits.dtype == torch.bfloat16 and model.motion_head.weight.grad is not None
    generated = model.eval().generate(batch["input_values"], batch["attention_mask"], seed=0)
    assert generated.blendshapes.dtype == torch.bfloat16


# ---- log-mel front end, phone head, content-only mouth -------------------------------------------------------------


def _variant(tiny_sta_config, **fields) -> ESARMSTAConfig:
    return ESARMSTAConfig.from_dict({**tiny_sta_config.to_dict(), **fields})


def test_content_mouth_needs_region_groups():
    prior = ESARMMotionPriorConfig.tiny(group_by_region=False)
    with pytest.raises(StrictDataclassError, match="mouth_conditioning must be 'full' with a prior of one codebook"):
        ESARMSTAConfig.tiny(motion_prior_config=prior, mouth_conditioning="content")


def test_normalized_log_mel_is_per_utterance_and_gain_invariant():
    """Every band has zero mean and unit variance over the utterance's own frames; a louder copy of the utterance
    (a gain is a constant shift of every log band) gives the same features; padding stays zero."""
    generator = torch.Generator().manual_seed(0)
    audio = torch.randn(2, SAMPLING_RATE, generator=generator) * torch.linspace(0.01, 1.0, SAMPLING_RATE)
    lengths = torch.tensor([SAMPLING_RATE, 8000])
    audio[1, 8000:] = 0.0
    features, frames = normalized_log_mel(audio, lengths, num_bands=20)
    assert frames.tolist() == [101, 51]  # 10 ms hop, one frame per hop plus the last partial one
    first = features[0, :101]
    torch.testing.assert_close(first.mean(0), torch.zeros(20), atol=1e-4, rtol=0)
    torch.testing.assert_close(first.std(0, unbiased=False), torch.ones(20), atol=1e-3, rtol=0)
    assert (features[1, 51:] == 0).all()
    louder, _ = normalized_log_mel(audio * 20.0, lengths, num_bands=20)
    torch.testing.assert_close(louder, features, atol=1e-3, rtol=0)


def test_log_mel_front_end_replaces_the_speech_encoder(tmp_path, tiny_sta_config, batch):
    """``audio_front_end="log_mel"`` builds no speech encoder; padded and lone sequences agree, louder audio does
    not change the features (per-utterance normalisation), a save / load round trip keeps the model."""
    model = ESARMSTAForGeneration(_variant(tiny_sta_config, audio_front_end="log_mel")).eval()
    assert model.speech_encoder is None and model.audio_encoder is None and model.log_mel is not None
    assert not any(name.startswith("speech_encoder") for name in model.state_dict())
    audio, mask = batch["input_values"], batch["attention_mask"]
    features, step_mask = model.encode_audio(audio, mask)
    assert (features[~step_mask] == 0).all()
    length = int(mask[1].sum())
    alone, alone_mask = model.encode_audio(audio[1:, :length])
    steps = int(alone_mask.sum())
    torch.testing.assert_close(alone[0, :steps], features[1, :steps], rtol=1e-4, atol=1e-5)
    louder, _ = model.encode_audio(audio * 8.0, mask)
    torch.testing.assert_close(louder, features, rtol=1e-3, atol=1e-4)
    output = model(**batch)
    assert output.logits.shape == (*batch["motion_tokens"].shape, model.codebook_size)
    model.save_pretrained(tmp_path)
    loaded = ESARMSTAForGeneration.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded(**batch).logits, output.logits, rtol=0, atol=0)
    both = ESARMSTAForGeneration(_variant(tiny_sta_config, audio_front_end="both"))
    assert both.speech_encoder is not None and both.log_mel is not None


def test_phone_head_predicts_every_frame_and_ignores_unlabelled_frames():
    head = PhoneClassHead(hidden_size=8, frames_per_token=2)
    content = torch.randn(2, 5, 8)
    assert head(content).shape == (2, 10, len(PHONE_CLASSES))
    targets = torch.randint(0, len(PHONE_CLASSES), (2, 10))
    targets[1, 6:] = -100
    logits = head(content)
    expected = torch.nn.functional.cross_entropy(logits[targets != -100], targets[targets != -100])
    torch.testing.assert_close(head.loss(content, targets), expected)
    # targets longer than the steps' frames are cut, shorter ones padded as unlabelled
    torch.testing.assert_close(head.loss(content, torch.cat([targets, targets], 1)), expected)
    torch.testing.assert_close(head.loss(content, targets[:, :4]), torch.nn.functional.cross_entropy(
        logits[:, :4].flatten(0, 1), targets[:, :4].flatten()))  # fmt: skip
    assert head.loss(content, torch.full((2, 10), -100)).item() == 0.0


def test_phone_loss_is_weighted_into_the_loss_and_trains_the_content_branch(tiny_sta_config, batch):
    model = ESARMSTAForGeneration(_variant(tiny_sta_config, phone_loss_weight=0.5)).train()
    assert ESARMSTAForGeneration(tiny_sta_config).phone_head is None
    frames = int(batch["motion_tokens"].shape[1]) * model.config.frames_per_token
    phone_classes = torch.randint(0, len(PHONE_CLASSES), (2, frames), generator=torch.Generator().manual_seed(2))
    with_phones = model(**batch, phone_classes=phone_classes)
    without = model(**batch)
    assert without.phone_loss is None and with_phones.phone_loss is not None
    torch.testing.assert_close(with_phones.loss, without.loss + 0.5 * with_phones.phone_loss)
    model.zero_grad()
    with_phones.phone_loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.content_encoder.parameters())
    assert all(p.grad is None for p in model.emotion_encoder.parameters())


def test_content_mouth_ignores_the_labels_and_generates_with_a_cache(tiny_sta_config, batch):
    """``mouth_conditioning="content"``: the mouth group's logits do not depend on the emotion, intensity or speaker
    labels, nor on the eye and brow tokens; the other groups still follow the labels. Cached generation equals the
    uncached one. With ``"full"`` the labels move the mouth logits too."""
    torch.manual_seed(0)
    model = ESARMSTAForGeneration(_variant(tiny_sta_config, mouth_conditioning="content")).eval()
    for module in model.modules():  # random weights large enough to make every dependence visible
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=0.3)
    other = {**batch, "emotion_ids": torch.tensor([6, 2]), "intensity_ids": torch.tensor([0, 2]),
             "speaker_ids": torch.tensor([2, 0])}  # fmt: skip
    first, second = model(**batch).logits, model(**other).logits
    torch.testing.assert_close(first[:, :, 0], second[:, :, 0], rtol=0, atol=0)
    assert not torch.allclose(first[:, :, 1:], second[:, :, 1:])
    upper_changed = {**batch, "motion_tokens": batch["motion_tokens"].clone()}
    upper_changed["motion_tokens"][..., 1:] = (upper_changed["motion_tokens"][..., 1:] + 1) % model.codebook_size
    torch.testing.assert_close(model(**upper_changed).logits[:, :, 0], first[:, :, 0], rtol=0, atol=0)
    cached = model.generate(batch["input_values"], batch["attention_mask"], emotion_ids=batch["emotion_ids"],
                            do_sample=True, seed=3)  # fmt: skip
    uncached = model.generate(batch["input_values"], batch["attention_mask"], emotion_ids=batch["emotion_ids"],
                              do_sample=True, seed=3, use_cache=False)  # fmt: skip
    assert torch.equal(cached.motion_tokens, uncached.motion_tokens)
    full = ESARMSTAForGeneration(tiny_sta_config).eval()
    for module in full.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=0.3)
    assert not torch.allclose(full(**batch).logits[:, :, 0], full(**other).logits[:, :, 0])


def _large_random_weights(model: ESARMSTAForGeneration) -> ESARMSTAForGeneration:
    for module in model.modules():  # random weights large enough to make every dependence visible
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=0.3)
    return model


def test_parallel_mouth_hears_the_audio_and_the_label_never_the_previous_tokens(tiny_sta_config, batch):
    """``mouth_conditioning="parallel"``: the mouth logits do not depend on any previous token (mouth or not) but do
    on the audio and, through one per-clip style input only, on the labels (with that input's weights zeroed the
    labels leave the mouth unchanged). Greedy generation picks the argmax of the teacher-forced logits of its own
    tokens (the RL log-probabilities are those of generation), and cached generation equals the uncached one."""
    torch.manual_seed(0)
    model = _large_random_weights(ESARMSTAForGeneration(_variant(tiny_sta_config, mouth_conditioning="parallel")))
    model.eval()
    first = model(**batch).logits
    other = {**batch, "emotion_ids": torch.tensor([6, 2]), "intensity_ids": torch.tensor([0, 2]),
             "speaker_ids": torch.tensor([2, 0])}  # fmt: skip
    assert not torch.allclose(model(**other).logits[:, :, 0], first[:, :, 0])
    shifted = {**batch, "motion_tokens": (batch["motion_tokens"] + 1) % model.codebook_size}
    torch.testing.assert_close(model(**shifted).logits[:, :, 0], first[:, :, 0], rtol=0, atol=0)
    reversed_audio = {**batch, "input_values": batch["input_values"].flip(-1)}
    assert not torch.allclose(model(**reversed_audio).logits[:, :, 0], first[:, :, 0])
    with torch.no_grad():
        model.mouth_style.weight.zero_()
    label_free = model(**batch).logits
    torch.testing.assert_close(model(**other).logits[:, :, 0], label_free[:, :, 0], rtol=0, atol=0)
    assert not torch.allclose(model(**other).logits[:, :, 1:], label_free[:, :, 1:])

    generated = model.generate(batch["input_values"], batch["attention_mask"], emotion_ids=batch["emotion_ids"])
    mask = generated.token_mask
    replay = model(batch["input_values"], batch["attention_mask"], emotion_ids=batch["emotion_ids"],
                   motion_tokens=generated.motion_tokens, motion_mask=mask).logits  # fmt: skip
    assert torch.equal(replay.argmax(-1)[mask], generated.motion_tokens[mask])
    cached = model.generate(batch["input_values"], batch["attention_mask"], do_sample=True, seed=3)
    uncached = model.generate(batch["input_values"], batch["attention_mask"], do_sample=True, seed=3, use_cache=False)
    assert torch.equal(cached.motion_tokens, uncached.motion_tokens)


def test_parallel_mouth_ignores_padding(tiny_sta_config, batch):
    """The bidirectional mouth stream masks padded steps: the shorter clip's mouth logits are those it gets alone."""
    torch.manual_seed(0)
    model = ESARMSTAForGeneration(_variant(tiny_sta_config, mouth_conditioning="parallel")).eval()
    both = model(**batch).logits
    steps = int(batch["motion_mask"][1].sum())
    alone = model(
        batch["input_values"][1:, : int(batch["attention_mask"][1].sum())],
        emotion_ids=batch["emotion_ids"][1:],
        intensity_ids=batch["intensity_ids"][1:],
        speaker_ids=batch["speaker_ids"][1:],
        motion_tokens=batch["motion_tokens"][1:, :steps],
    ).logits
    torch.testing.assert_close(both[1, :steps, 0], alone[0, :, 0], rtol=1e-4, atol=1e-4)


def test_mouth_regression_loss_measures_blendshape_distance(tiny_sta_config, batch):
    """``mouth_regression_weight``: near zero when the mouth logits put all their mass on the targets, larger for
    the wrong codes, added to ``loss`` with its weight, and its gradient reaches the mouth head, never the prior."""
    torch.manual_seed(0)
    model = ESARMSTAForGeneration(
        _variant(tiny_sta_config, mouth_conditioning="parallel", mouth_regression_weight=2.0)
    ).eval()
    mask, targets = batch["motion_mask"], batch["motion_tokens"][..., 0]
    exact = F.one_hot(targets, model.codebook_size).float() * 50.0
    assert model._mouth_regression_loss(exact, targets, mask) < 1e-8
    wrong = F.one_hot((targets + 7) % model.codebook_size, model.codebook_size).float() * 50.0
    far = model._mouth_regression_loss(wrong, targets, mask)
    with torch.no_grad():  # the same distance computed from decode(): the prior's own values per frame
        decoded = [
            model.motion_prior.decode(torch.stack([t, t, t], -1), motion_mask=mask)[..., model.motion_prior.groups[0]]
            for t in (targets, (targets + 7) % model.codebook_size)
        ]
        frames = mask.repeat_interleave(model.motion_prior.frames_per_token, 1)
        expected = (decoded[0] - decoded[1]).pow(2).mean(-1)[frames].mean()
    torch.testing.assert_close(far, expected, rtol=1e-4, atol=1e-7)
    out = model(**batch)
    without = ESARMSTAForGeneration(_variant(tiny_sta_config, mouth_conditioning="parallel")).eval()
    without.load_state_dict(model.state_dict())
    torch.testing.assert_close(out.loss, without(**batch).loss + 2.0 * out.mouth_regression_loss)
    model.zero_grad()
    out.mouth_regression_loss.backward()
    assert model.mouth_head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.motion_prior.parameters())
    assert model.motion_head.weight.grad is None or model.motion_head.weight.grad.abs().sum() == 0


def test_mouth_regression_needs_region_groups():
    prior = ESARMMotionPriorConfig.tiny(group_by_region=False)
    with pytest.raises(StrictDataclassError, match="mouth_regression_weight must be 0 with a prior of one codebook"):
        ESARMSTAConfig.tiny(motion_prior_config=prior, mouth_regression_weight=1.0)


def test_output_attentions_are_the_motion_transformers_causal_weights(model, batch):
    """``output_attentions=True``: one ``[B, heads, T', T']`` tensor per motion-transformer block, rows that sum to 1
    over the past steps only (causal), and the same logits as without them."""
    plain = model(**batch)
    out = model(**batch, output_attentions=True)
    assert plain.attentions is None
    torch.testing.assert_close(out.logits, plain.logits, rtol=1e-5, atol=1e-5)
    steps = batch["motion_tokens"].shape[1]
    assert len(out.attentions) == model.config.num_hidden_layers
    for weights in out.attentions:
        assert weights.shape == (2, model.config.num_attention_heads, steps, steps)
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]), rtol=1e-5, atol=1e-5)
        assert torch.all(weights.triu(diagonal=1) == 0)
