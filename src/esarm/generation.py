"""Autoregressive sampling of motion tokens: greedy, temperature / top-k sampling and epsilon-greedy exploration.

The loop drives the STA model's own causal transformer and :class:`~esarm.modules.KeyValueCache`, so it
does not depend on the cache classes or output field names of a particular transformers version. Logits have
one row per (sequence, face-region group): ``[batch * G, K]`` when they go through logits processors.

Epsilon-greedy (paper, Sec. III-B2): at each step and for each group, with probability ``1 - epsilon`` the
policy's action (the argmax, or a sample when ``do_sample=True``) and with probability ``epsilon`` a uniformly
random code. :class:`EpsilonGreedyLogitsProcessor` expresses this as logits of the mixture distribution
``(1 - epsilon) * policy + epsilon * uniform``, so sampling from them is exactly epsilon-greedy.

Per face region (``greedy_groups``): the listed codebook groups take the argmax of the model's raw logits whatever the
other settings, so ``do_sample=True, greedy_groups=["mouth"]`` keeps the mouth greedy (lip sync) and samples the
eyes and brows (blinks and gaze that speech does not determine, and that the argmax damps away).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
)

from .blendshapes import FACE_REGIONS

__all__ = [
    "GENERATION_FIELDS",
    "Decoding",
    "EpsilonGreedyLogitsProcessor",
    "build_logits_processor",
    "decode_autoregressively",
    "make_generator",
    "prepare_decoding",
    "resolve_greedy_groups",
    "sample_tokens",
]


# The generation settings ESARM reads: transformers' sampling fields plus epsilon (epsilon-greedy exploration) and
# greedy_groups (codebook groups decoded by argmax whatever the others do).
GENERATION_FIELDS = ("do_sample", "temperature", "top_k", "epsilon", "greedy_groups")

# GenerationConfig fields that cannot apply, and why. The number of steps is set by the audio (one step per
# frames_per_token animation frames) and each step emits G tokens at once, one per face-region codebook.
_UNSUPPORTED = {
    **dict.fromkeys(
        ("max_length", "max_new_tokens", "min_length", "min_new_tokens", "max_time", "stop_strings", "eos_token_id",
         "early_stopping"),
        "the number of motion steps is fixed by the audio length (one step per frames_per_token frames)",
    ),
    **dict.fromkeys(
        ("num_beams", "num_beam_groups", "diversity_penalty", "length_penalty", "num_return_sequences",
         "penalty_alpha", "assistant_model", "prompt_lookup_num_tokens"),
        "each step emits G tokens at once (one per face region) from the speech of that step: there is no beam, "
        "candidate or assistant decoding",
    ),
    **dict.fromkeys(
        ("top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff", "repetition_penalty", "no_repeat_ngram_size",
         "bad_words_ids", "force_words_ids", "forced_bos_token_id", "forced_eos_token_id", "suppress_tokens",
         "begin_suppress_tokens", "sequence_bias", "guidance_scale"),
        "ESARM samples with temperature, top_k and epsilon; pass any other LogitsProcessor as logits_processor",
    ),
}  # fmt: skip


def default_generation_config() -> GenerationConfig:
    """The generation settings of a fresh STA model: greedy, no exploration (saved as ``generation_config.json``)."""
    return GenerationConfig(do_sample=False, temperature=1.0, top_k=None, epsilon=0.0, greedy_groups=None)


def resolve_generation_settings(generation_config: GenerationConfig | None, default: GenerationConfig, **kwargs):
    """The ``do_sample``, ``temperature``, ``top_k``, ``epsilon`` and ``greedy_groups`` of one ``generate`` call.

    Explicit keyword arguments win over ``generation_config``, which wins over the model's ``default``. A keyword
    argument of ``GenerationConfig`` that cannot apply to ESARM raises ``ValueError`` saying why; any other raises
    ``TypeError`` (as an unknown argument of a Python function does).
    """
    for name in kwargs:
        if name in _UNSUPPORTED:
            raise ValueError(f"generate() does not support {name}: {_UNSUPPORTED[name]}")
        if name not in GENERATION_FIELDS:
            raise TypeError(f"generate() got an unexpected keyword argument {name!r}; generation settings are "
                            f"{list(GENERATION_FIELDS)}")  # fmt: skip
    if generation_config is not None and not isinstance(generation_config, GenerationConfig):
        raise ValueError(f"generation_config must be a transformers.GenerationConfig, got {type(generation_config)}")
    settings = {}
    for name in GENERATION_FIELDS:
        value = kwargs.get(name)
        for source in (generation_config, default):
            if value is None and source is not None:
                value = getattr(source, name, None)
        settings[name] = value
    settings["do_sample"] = bool(settings["do_sample"])
    settings["temperature"] = 1.0 if settings["temperature"] is None else settings["temperature"]
    settings["epsilon"] = 0.0 if settings["epsilon"] is None else settings["epsilon"]
    return settings


class EpsilonGreedyLogitsProcessor(LogitsProcessor):
    """Turn logits into those of the epsilon-greedy policy ``(1 - epsilon) * policy + epsilon * uniform``.

    Args:
        epsilon: probability of a uniformly random token, in [0, 1]. 0 = the policy itself, 1 = uniform.
        greedy: the exploiting policy is the argmax (``True``, the paper's epsilon-greedy) or the softmax of the
            incoming logits (``False``, i.e. after temperature / top-k when sampling).

    Sampling from the returned logits (e.g. ``torch.multinomial(softmax(scores))``) draws the random token with
    probability ``epsilon`` and the policy's token otherwise. Works on ``[N, K]`` scores (transformers'
    ``LogitsProcessor`` convention) and on any ``[..., K]``.
    """

    def __init__(self, epsilon: float, greedy: bool = True):
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0.0 <= float(epsilon) <= 1.0:
            raise ValueError(f"epsilon must be a number in [0, 1], got {epsilon!r}")
        self.epsilon = float(epsilon)
        self.greedy = greedy

    def __call__(self, input_ids: torch.LongTensor | None, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores.float()
        num_codes = scores.shape[-1]
        if self.greedy:
            policy = torch.zeros_like(scores).scatter_(-1, scores.argmax(-1, keepdim=True), 1.0)
        else:
            policy = torch.softmax(scores, dim=-1)
        mixture = (1.0 - self.epsilon) * policy + self.epsilon / num_codes
        return torch.log(mixture)  # -inf where the mixture is 0 (epsilon = 0: only the argmax survives)


def build_logits_processor(
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    epsilon: float = 0.0,
    logits_processor: LogitsProcessorList | list | None = None,
) -> LogitsProcessorList:
    """Processors for one decoding configuration, validating each argument.

    Greedy decoding with ``epsilon == 0`` needs none (argmax of the raw logits). Temperature and top-k only apply
    when ``do_sample``. ``epsilon > 0`` adds :class:`EpsilonGreedyLogitsProcessor` last (and sampling is then
    required to draw from the mixture, see :func:`sample_tokens`). User ``logits_processor`` entries run after
    temperature / top-k and before epsilon-greedy (exploration mixes in the uniform distribution last). They see
    scores ``[batch * G, K]`` and ``input_ids=None``.
    """
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not (math.isfinite(temperature) and temperature > 0)
    ):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be None or a positive integer, got {top_k!r}")
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0.0 <= float(epsilon) <= 1.0:
        raise ValueError(f"epsilon must be a number in [0, 1], got {epsilon!r}")
    processors = LogitsProcessorList()
    if do_sample:
        if temperature != 1.0:
            processors.append(TemperatureLogitsWarper(float(temperature)))
        if top_k is not None:
            processors.append(TopKLogitsWarper(top_k=top_k, min_tokens_to_keep=1))
    if logits_processor is not None:
        processors.extend(logits_processor)
    if epsilon > 0.0:
        processors.append(EpsilonGreedyLogitsProcessor(epsilon, greedy=not do_sample))
    return processors


def make_generator(generator: torch.Generator | None, seed: int | None) -> torch.Generator | None:
    """The random generator of a rollout: ``generator`` as given, or a new CPU one seeded with ``seed``.

    Seeded rollouts draw on the CPU whatever the model's device, so a seed gives the same tokens on CPU and GPU
    (up to the model's own numerics).
    """
    if generator is not None and seed is not None:
        raise ValueError(f"pass either generator or seed, not both (got seed={seed!r} and a generator)")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        generator = torch.Generator(device="cpu")
        generator.manual_seed(seed)
    elif generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return generator


def resolve_greedy_groups(greedy_groups: Sequence[int | str] | None, num_groups: int) -> tuple[int, ...]:
    """Indices of the codebook groups decoded by argmax: ``None`` = none; each entry a group index in
    ``[0, num_groups)`` or, for a region-grouped prior (one group per face region), a region name of
    :data:`~esarm.blendshapes.FACE_REGIONS` (``"mouth"`` is group 0)."""
    if greedy_groups is None:
        return ()
    if isinstance(greedy_groups, (str, int)):
        raise ValueError(f"greedy_groups must be a list of group indices or region names, got {greedy_groups!r}")
    regions = list(FACE_REGIONS) if num_groups == len(FACE_REGIONS) else []
    indices = []
    for group in greedy_groups:
        if isinstance(group, str) and group in regions:
            indices.append(regions.index(group))
        elif isinstance(group, int) and not isinstance(group, bool) and 0 <= group < num_groups:
            indices.append(group)
        else:
            names = f" or one of {regions}" if regions else ""
            raise ValueError(f"greedy_groups entries must be group indices in [0, {num_groups}){names}, got {group!r}")
    return tuple(sorted(set(indices)))


@dataclass
class Decoding:
    """How one ``generate`` call chooses tokens: processors for the scores ``[batch * G, K]``, whether to sample
    from them, the random generator, and the groups that take the argmax of the raw logits instead."""

    logits_processor: LogitsProcessorList
    sample: bool
    generator: torch.Generator | None = None
    greedy_groups: tuple[int, ...] = ()


def prepare_decoding(
    generation_config: GenerationConfig | None,
    default: GenerationConfig,
    num_groups: int,
    logits_processor: LogitsProcessorList | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    **kwargs,
) -> tuple[Decoding, dict]:
    """The :class:`Decoding` of one ``generate`` call and its resolved settings
    (:func:`resolve_generation_settings`), every argument validated."""
    settings = resolve_generation_settings(generation_config, default, **kwargs)
    processors = build_logits_processor(
        settings["do_sample"], settings["temperature"], settings["top_k"], settings["epsilon"], logits_processor
    )
    sample = settings["do_sample"] or settings["epsilon"] > 0.0
    greedy_groups = resolve_greedy_groups(settings["greedy_groups"], num_groups)
    return Decoding(processors, sample, make_generator(generator, seed), greedy_groups), settings


def sample_tokens(
    logits: torch.Tensor,
    logits_processor: LogitsProcessorList,
    sample: bool,
    generator: torch.Generator | None = None,
    greedy_groups: Sequence[int] = (),
) -> torch.LongTensor:
    """Choose one token per (sequence, group) from logits ``[B, G, K]``; returns ``[B, G]``. The ``greedy_groups``
    take the argmax of the raw ``logits`` (the draws of the other groups are the same as without them)."""
    batch, groups, num_codes = logits.shape
    scores = logits.reshape(batch * groups, num_codes).float()
    scores = logits_processor(None, scores)
    if not sample:
        chosen = scores.argmax(-1).view(batch, groups)
    else:
        probabilities = torch.softmax(scores, dim=-1)
        if generator is not None and generator.device.type != probabilities.device.type:
            # e.g. a CPU generator for a GPU model: draw where the generator lives (same numbers on every device)
            drawn = torch.multinomial(probabilities.to(generator.device), 1, generator=generator)
            chosen = drawn.to(logits.device).view(batch, groups)
        else:
            chosen = torch.multinomial(probabilities, 1, generator=generator).view(batch, groups)
    if greedy_groups:
        index = list(greedy_groups)
        chosen[:, index] = logits[:, index].argmax(-1)
    return chosen


def decode_autoregressively(
    step_logits: Callable[[torch.Tensor, int], torch.Tensor],
    num_steps: int,
    batch_size: int,
    num_groups: int,
    decoding: Decoding,
    device: torch.device,
) -> torch.LongTensor:
    """The sampling loop: ``num_steps`` calls of ``step_logits(tokens_so_far [B, t, G], t) -> logits [B, G, K]``,
    each step's tokens chosen as ``decoding`` says (:func:`sample_tokens`).

    A cached model only reads the last chosen tokens ``tokens_so_far[:, -1]``; the uncached path recomputes
    from the whole history. Returns the chosen tokens ``[B, num_steps, G]``.
    """
    tokens = torch.zeros(batch_size, num_steps, num_groups, dtype=torch.long, device=device)
    for t in range(num_steps):
        logits = step_logits(tokens[:, :t], t)
        tokens[:, t] = sample_tokens(
            logits, decoding.logits_processor, decoding.sample, decoding.generator, decoding.greedy_groups
        )
    return tokens
