"""Generation: cache equivalence, greedy / sampling / epsilon-greedy statistics, reproducibility, bad arguments."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from esarm import EpsilonGreedyLogitsProcessor, ESARMSTAConfig, ESARMSTAForGeneration
from esarm.generation import build_logits_processor, make_generator, sample_tokens
from esarm.modules import CausalTransformer

SAMPLING_RATE = 16000


@pytest.fixture
def model(tiny_sta_config):
    return ESARMSTAForGeneration(tiny_sta_config).eval()


@pytest.fixture
def audio():
    """Two clips of 1.0 s and 0.7 s, right-padded, and their attention mask."""
    generator = torch.Generator().manual_seed(2)
    values = torch.randn(2, SAMPLING_RATE, generator=generator) * 0.1
    mask = torch.ones(2, SAMPLING_RATE, dtype=torch.long)
    mask[1, int(0.7 * SAMPLING_RATE) :] = 0
    values[1, int(0.7 * SAMPLING_RATE) :] = 0.0
    return values, mask


# ---- cache -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention_window", [None, 4])
def test_cached_generation_equals_uncached(tiny_sta_config, audio, attention_window):
    config = ESARMSTAConfig.tiny(attention_window=attention_window)
    model = ESARMSTAForGeneration(config).eval()
    cached = model.generate(*audio, use_cache=True)
    uncached = model.generate(*audio, use_cache=False)
    assert torch.equal(cached.motion_tokens, uncached.motion_tokens)
    torch.testing.assert_close(cached.blendshapes, uncached.blendshapes)


def test_cached_sampling_equals_uncached_sampling(model, audio):
    cached = model.generate(*audio, do_sample=True, temperature=1.5, top_k=10, epsilon=0.3, seed=7)
    uncached = model.generate(*audio, do_sample=True, temperature=1.5, top_k=10, epsilon=0.3, seed=7, use_cache=False)
    assert torch.equal(cached.motion_tokens, uncached.motion_tokens)


def test_generated_tokens_are_the_argmax_of_forward_logits(model, audio):
    """Greedy generation is consistent with teacher forcing on its own tokens (what RL log-probs rely on)."""
    output = model.generate(*audio)
    logits = model(*audio, emotion_ids=output.emotion_ids, intensity_ids=output.intensity_ids,
                   motion_tokens=output.motion_tokens, motion_mask=output.token_mask).logits  # fmt: skip
    valid = output.token_mask
    assert torch.equal(logits.argmax(-1)[valid], output.motion_tokens[valid])


@pytest.mark.parametrize("window", [None, 3])
def test_transformer_cache_matches_full_pass_and_grows(window):
    torch.manual_seed(0)
    transformer = CausalTransformer(16, 2, 2, 32, attention_window=window).eval()
    inputs = torch.randn(2, 9, 16)
    full = transformer(inputs)
    cache = transformer.new_cache(2, 2, inputs)  # capacity 2 < 9 steps: the cache grows
    steps = [transformer(inputs[:, :4], cache=cache)] + [
        transformer(inputs[:, t : t + 1], cache=cache) for t in range(4, 9)
    ]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 9 and cache.capacity >= 9


def test_transformer_decoding_steps_match_the_full_pass_past_the_rotary_table():
    """One-token steps take a leaner path (a rotary table grown by doubling from 64 positions): same outputs."""
    torch.manual_seed(0)
    transformer = CausalTransformer(16, 2, 2, 32).eval()
    inputs = torch.randn(1, 150, 16)
    cache = transformer.new_cache(1, 150, inputs)
    steps = torch.cat([transformer(inputs[:, t : t + 1], cache=cache) for t in range(150)], 1)
    torch.testing.assert_close(steps, transformer(inputs), atol=1e-5, rtol=1e-5)
    assert transformer._rotary_table[0].shape[0] >= 150
    transformer.double()  # the table follows the inputs' dtype
    cache = transformer.new_cache(1, 2, inputs.double())
    assert transformer(inputs[:, :1].double(), cache=cache).dtype == torch.float64


# ---- shapes and masks ------------------------------------------------------------------------------------------


def test_generate_output_shapes_and_masks(model, audio):
    output = model.generate(*audio, emotion_ids=torch.tensor([1, 2]), speaker_ids=torch.tensor([0, 4]))
    lengths = audio[1].sum(-1)
    frames = model.num_animation_frames(lengths)
    steps = model.num_motion_steps(lengths)
    assert output.motion_tokens.shape == (2, int(steps.max()), model.num_groups)
    assert output.blendshapes.shape == (2, int(frames.max()), 52)
    assert output.frame_mask.sum(-1).tolist() == frames.tolist() == [30, 21]
    assert output.token_mask.sum(-1).tolist() == steps.tolist()
    assert output.emotion_ids.tolist() == [1, 2] and output.intensity_ids.tolist() == [1, 1]
    assert torch.all(output.blendshapes[~output.frame_mask] == 0)
    assert torch.all(output.motion_tokens[~output.token_mask] == 0)
    assert output.blendshapes.min() >= 0 and output.blendshapes.max() <= 1


def test_batched_generation_equals_one_by_one(model, audio):
    values, mask = audio
    batched = model.generate(values, mask)
    short_length = int(mask[1].sum())
    alone = model.generate(values[1:, :short_length])
    steps, frames = int(batched.token_mask[1].sum()), int(batched.frame_mask[1].sum())
    assert torch.equal(alone.motion_tokens[0], batched.motion_tokens[1, :steps])
    torch.testing.assert_close(alone.blendshapes[0], batched.blendshapes[1, :frames], atol=1e-5, rtol=1e-5)


def test_auto_emotion_uses_the_emotion_branch(model, audio):
    output = model.generate(*audio, emotion="auto")
    assert torch.equal(output.emotion_ids, output.emotion_logits.argmax(-1))
    given = model.generate(*audio, emotion_ids=output.emotion_ids, intensity_ids=output.intensity_ids)
    assert torch.equal(given.motion_tokens, output.motion_tokens)


# ---- decoding strategies ---------------------------------------------------------------------------------------


def test_epsilon_zero_equals_greedy(model, audio):
    greedy = model.generate(*audio)
    assert torch.equal(model.generate(*audio, epsilon=0.0, seed=5).motion_tokens, greedy.motion_tokens)
    # top_k = 1 sampling is greedy too
    assert torch.equal(model.generate(*audio, do_sample=True, top_k=1, seed=5).motion_tokens, greedy.motion_tokens)


def test_epsilon_one_is_uniform(model):
    """With epsilon = 1 every code is equally likely: chi-square goodness of fit with a fixed seed."""
    audio = torch.randn(16, SAMPLING_RATE, generator=torch.Generator().manual_seed(3)) * 0.1
    tokens = model.generate(audio, epsilon=1.0, seed=0).motion_tokens  # 16 x 15 steps x 3 groups = 720 draws
    counts = torch.bincount(tokens.flatten(), minlength=model.codebook_size).double()
    assert counts.sum() == 720
    assert chisquare(counts.numpy()).pvalue > 1e-3
    # the greedy policy of a random model is far from uniform on the same audio
    greedy = model.generate(audio).motion_tokens
    greedy_counts = torch.bincount(greedy.flatten(), minlength=model.codebook_size).double()
    assert chisquare(greedy_counts.numpy()).pvalue < 1e-6


def test_epsilon_greedy_processor_is_the_mixture():
    scores = torch.tensor([[0.0, 3.0, 1.0, -2.0]])
    probabilities = EpsilonGreedyLogitsProcessor(0.2)(None, scores).exp()
    torch.testing.assert_close(probabilities, torch.tensor([[0.05, 0.85, 0.05, 0.05]]))
    sampled = EpsilonGreedyLogitsProcessor(0.5, greedy=False)(None, scores).exp()
    torch.testing.assert_close(sampled, 0.5 * torch.softmax(scores, -1) + 0.125)
    assert EpsilonGreedyLogitsProcessor(0.0)(None, scores).argmax(-1).item() == 1


def test_epsilon_greedy_sampling_frequency():
    """Sampling from the processed logits picks the argmax with probability 1 - eps + eps / K."""
    scores = torch.randn(20000, 8, generator=torch.Generator().manual_seed(0))[:, None]  # [N, G=1, K=8]
    processor = build_logits_processor(epsilon=0.4)
    tokens = sample_tokens(scores, processor, sample=True, generator=torch.Generator().manual_seed(1))
    agreement = (tokens[:, 0] == scores[:, 0].argmax(-1)).double().mean().item()
    assert abs(agreement - (0.6 + 0.4 / 8)) < 0.015


def test_seed_and_generator_make_rollouts_reproducible(model, audio):
    first = model.generate(*audio, epsilon=0.5, seed=11).motion_tokens
    assert torch.equal(first, model.generate(*audio, epsilon=0.5, seed=11).motion_tokens)
    generator = torch.Generator().manual_seed(11)
    assert torch.equal(first, model.generate(*audio, epsilon=0.5, generator=generator).motion_tokens)
    assert not torch.equal(first, model.generate(*audio, epsilon=0.5, seed=12).motion_tokens)


def test_temperature_changes_sampling_diversity(model, audio):
    with torch.no_grad():  # a confident policy: a random-init head has near-tied top logits
        model.motion_head.weight.mul_(100.0)
    greedy = model.generate(*audio).motion_tokens
    cold = model.generate(*audio, do_sample=True, temperature=1e-3, seed=0).motion_tokens
    hot = model.generate(*audio, do_sample=True, temperature=100.0, seed=0).motion_tokens
    assert torch.equal(cold, greedy)
    assert not torch.equal(hot, greedy)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(epsilon=1.5), r"epsilon must be a number in \[0, 1\], got 1.5"),
        (dict(epsilon=-0.1), "epsilon"),
        (dict(do_sample=True, temperature=0.0), "temperature must be a positive"),
        (dict(do_sample=True, top_k=0), "top_k must be None or a positive integer, got 0"),
        (dict(seed="1"), "seed must be an integer"),
        (dict(seed=1, generator=torch.Generator()), "either generator or seed"),
        (dict(generator=3), "generator must be a torch.Generator"),
    ],
)
def test_generate_rejects_bad_decoding_arguments(model, audio, kwargs, message):
    with pytest.raises(ValueError, match=message):
        model.generate(*audio, **kwargs)


def test_make_generator_seeds():
    first = torch.rand(3, generator=make_generator(None, 4))
    assert torch.equal(first, torch.rand(3, generator=make_generator(None, 4)))
    assert make_generator(None, None) is None


# ---- transformers' generation conventions ----------------------------------------------------------------------


def test_generation_config_is_saved_and_loaded(tmp_path, model):
    assert model.can_generate()
    assert model.generation_config.epsilon == 0.0 and model.generation_config.do_sample is False
    model.generation_config.update(epsilon=0.25, do_sample=True, top_k=5)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "generation_config.json").exists()
    loaded = ESARMSTAForGeneration.from_pretrained(tmp_path)
    assert (loaded.generation_config.epsilon, loaded.generation_config.top_k) == (0.25, 5)
    # the saved settings are the defaults of generate
    audio = torch.randn(1, 12000, generator=torch.Generator().manual_seed(0)) * 0.1
    default = loaded.generate(audio, seed=3).motion_tokens
    assert torch.equal(default, loaded.generate(audio, seed=3, epsilon=0.25, do_sample=True, top_k=5).motion_tokens)
    assert not torch.equal(default, loaded.generate(audio, seed=3, epsilon=0.0, do_sample=False).motion_tokens)


def test_generation_config_argument_and_keyword_overrides(model, audio):
    from_config = model.generate(*audio, seed=0, generation_config=GenerationConfig(epsilon=0.5, do_sample=True))
    from_kwargs = model.generate(*audio, seed=0, epsilon=0.5, do_sample=True)
    assert torch.equal(from_config.motion_tokens, from_kwargs.motion_tokens)
    greedy = model.generate(*audio, seed=0, generation_config=GenerationConfig(epsilon=0.5), epsilon=0.0)
    assert torch.equal(greedy.motion_tokens, model.generate(*audio).motion_tokens)


def test_logits_processor_is_applied(model, audio):
    class OnlyCode7(LogitsProcessor):
        def __call__(self, input_ids, scores):
            forced = torch.full_like(scores, -float("inf"))
            forced[:, 7] = 0.0
            return forced

    tokens = model.generate(*audio, logits_processor=LogitsProcessorList([OnlyCode7()])).motion_tokens
    valid = model.generate(*audio).token_mask
    assert bool((tokens[valid] == 7).all())


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(max_new_tokens=5), ValueError, "max_new_tokens: the number of motion steps is fixed by the audio"),
        (dict(max_length=5), ValueError, "max_length: the number of motion steps is fixed by the audio"),
        (dict(num_beams=2), ValueError, "num_beams: each step emits G tokens at once"),
        (dict(top_p=0.9), ValueError, "top_p: ESARM samples with temperature, top_k and epsilon"),
        (dict(colour="blue"), TypeError, "unexpected keyword argument 'colour'"),
        (dict(generation_config={"epsilon": 0.1}), ValueError, "generation_config must be a transformers"),
    ],
)
def test_generate_rejects_what_cannot_apply(model, audio, kwargs, error, message):
    with pytest.raises(error, match=message):
        model.generate(*audio, **kwargs)


# ---- greedy groups: greedy mouth, sampled eyes and brows --------------------------------------------------------


def test_greedy_mouth_keeps_the_greedy_mouth_and_samples_the_upper_face(audio):
    """With the parallel mouth stream the mouth does not read the previous tokens: its greedy tokens must be the
    greedy decoding's exactly, while the sampled eyes and brows change with the seed."""
    model = ESARMSTAForGeneration(ESARMSTAConfig.tiny(mouth_conditioning="parallel")).eval()
    greedy = model.generate(*audio)
    valid = greedy.token_mask
    runs = [model.generate(*audio, do_sample=True, temperature=2.0, greedy_groups=["mouth"], seed=s) for s in (1, 2)]
    for run in runs:
        assert torch.equal(run.motion_tokens[..., 0][valid], greedy.motion_tokens[..., 0][valid])
        assert not torch.equal(run.motion_tokens[..., 1:][valid], greedy.motion_tokens[..., 1:][valid])
    assert not torch.equal(runs[0].motion_tokens[..., 1:][valid], runs[1].motion_tokens[..., 1:][valid])
    # group indices name the same groups; cached and uncached decoding agree
    by_index = model.generate(*audio, do_sample=True, temperature=2.0, greedy_groups=[0], seed=1, use_cache=False)
    assert torch.equal(by_index.motion_tokens, runs[0].motion_tokens)


def test_greedy_groups_are_the_argmax_given_the_history(model, audio):
    """With the paper's mouth (every group from one transformer), the greedy groups are the argmax of teacher-forced
    logits on the generated history, and the other groups were sampled."""
    output = model.generate(*audio, do_sample=True, temperature=3.0, greedy_groups=["mouth", "brows"], seed=4)
    logits = model(*audio, emotion_ids=output.emotion_ids, intensity_ids=output.intensity_ids,
                   motion_tokens=output.motion_tokens, motion_mask=output.token_mask).logits  # fmt: skip
    valid = output.token_mask
    argmax = logits.argmax(-1)[valid]
    tokens = output.motion_tokens[valid]
    assert torch.equal(argmax[:, [0, 2]], tokens[:, [0, 2]])
    assert not torch.equal(argmax[:, 1], tokens[:, 1])


def test_greedy_groups_are_saved_in_the_generation_config(tmp_path, model, audio):
    model.generation_config.update(do_sample=True, greedy_groups=["mouth"])
    model.save_pretrained(tmp_path)
    loaded = ESARMSTAForGeneration.from_pretrained(tmp_path)
    assert loaded.generation_config.greedy_groups == ["mouth"]
    default = loaded.generate(*audio, seed=5).motion_tokens
    assert torch.equal(default, loaded.generate(*audio, seed=5, do_sample=True, greedy_groups=[0]).motion_tokens)
    assert not torch.equal(default, loaded.generate(*audio, seed=5, greedy_groups=[]).motion_tokens)


@pytest.mark.parametrize(
    ("greedy_groups", "message"),
    [
        ("mouth", "greedy_groups must be a list of group indices or region names, got 'mouth'"),
        (["lips"], r"greedy_groups entries must be group indices in \[0, 3\) or one of \['mouth', 'eyes', 'brows'\]"),
        ([3], r"got 3"),
        ([True], r"got True"),
    ],
)
def test_greedy_groups_reject_bad_values(model, audio, greedy_groups, message):
    with pytest.raises(ValueError, match=message):
        model.generate(*audio, do_sample=True, greedy_groups=greedy_groups)
