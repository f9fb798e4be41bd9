"""Layers shared by the ESARM models (STA model and reward model); the speech encoder is :mod:`esarm.speech_encoder`,
the check of the models' inputs :mod:`esarm.model_inputs`.

- :class:`CausalTransformer` is a small pre-norm causal transformer (rotary positions,
  ``F.scaled_dot_product_attention``) with an explicit :class:`KeyValueCache`, so incremental decoding does not
  depend on the cache classes or field names of a particular transformers version.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer

from .speech_encoder import SpeechEncoder

__all__ = [
    "CausalTransformer",
    "KeyValueCache",
    "init_module_weights",
    "sequence_mask",
]


# --------------------------------------------------------------------------------------------------------------------
# Causal transformer with an explicit key/value cache
# --------------------------------------------------------------------------------------------------------------------


class KeyValueCache:
    """Pre-allocated per-layer key/value buffers for incremental decoding.

    Writing a step is an in-place copy (no concatenation), so the cost per step does not grow with the length
    (apart from attention itself, which reads the cached keys; see ``attention_window`` of
    :class:`CausalTransformer` for a bounded cost).

    Args:
        num_layers: number of transformer blocks.
        batch_size: batch size.
        num_heads: attention heads.
        head_dim: size of one head.
        max_length: initial capacity in steps (grown by doubling if exceeded).
    """

    def __init__(
        self,
        num_layers: int,
        batch_size: int,
        num_heads: int,
        head_dim: int,
        max_length: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        shape = (batch_size, num_heads, max(1, max_length), head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.length = 0  # number of steps already stored (same for all layers after a full forward)

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]

    def _grow(self, needed: int) -> None:
        capacity = self.capacity
        while capacity < needed:
            capacity *= 2
        for i in range(len(self.keys)):
            for buffers in (self.keys, self.values):
                old = buffers[i]
                new = old.new_zeros(old.shape[0], old.shape[1], capacity, old.shape[3])
                new[:, :, : old.shape[2]] = old
                buffers[i] = new

    def update(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``key``/``value`` ``[B, heads, L, head_dim]`` of ``layer`` after the cached steps; return all."""
        end = self.length + key.shape[2]
        if end > self.capacity:
            self._grow(end)
        self.keys[layer][:, :, self.length : end] = key
        self.values[layer][:, :, self.length : end] = value
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, steps: int) -> None:
        self.length += steps


def rotary_cos_sin(positions: torch.Tensor, head_dim: int, base: float = 10000.0, dtype=torch.float32):
    """Rotary embedding tables ``[L, head_dim]`` for integer positions ``[L]``."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    angles = positions.float()[:, None] * inv_freq[None, :]  # [L, head_dim / 2]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size must be divisible by num_heads, got {hidden_size} and {num_heads}")
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)
        self.dropout = dropout

    def forward(
        self,
        hidden_states: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        is_causal: bool,
        cache: KeyValueCache | None,
        layer: int,
        key_start: int = 0,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention outputs ``[B, L, H]`` and, with ``output_attentions``, the weights ``[B, heads, L, keys]``.

        ``F.scaled_dot_product_attention`` cannot return its weights, so asking for them runs the same attention
        eagerly (softmax of the scaled scores, as transformers' ``eager`` attention); the outputs agree within
        float rounding.
        """
        batch, length, hidden = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch, length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)  # each [B, heads, L, head_dim]
        query, key = apply_rotary(query, cos, sin), apply_rotary(key, cos, sin)
        if cache is not None:
            key, value = cache.update(layer, key, value)
            if key_start:
                key, value = key[:, :, key_start:], value[:, :, key_start:]
        dropout = self.dropout if self.training else 0.0
        weights = None
        if output_attentions:
            attended, weights = eager_attention(query, key, value, mask, is_causal, dropout)
        else:
            attended = F.scaled_dot_product_attention(
                query, key, value, attn_mask=mask, dropout_p=dropout, is_causal=is_causal
            )
        return self.out(attended.transpose(1, 2).reshape(batch, length, hidden)), weights


def eager_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None,
    is_causal: bool,
    dropout: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``F.scaled_dot_product_attention`` written out, returning the attention weights too.

    Args:
        query: ``[B, heads, L, head_dim]``.
        key, value: ``[B, heads, S, head_dim]``.
        mask: boolean ``[B or 1, 1, L, S]``, True where a query may attend (every row has a True), or ``None``.
        is_causal: query ``i`` attends to keys ``<= i`` (``L == S``; used without ``mask``).
        dropout: dropout probability on the weights (0 outside training).

    Returns:
        The attended values ``[B, heads, L, head_dim]`` and the weights ``[B, heads, L, S]`` (before dropout).
    """
    scores = query @ key.transpose(-1, -2) / math.sqrt(query.shape[-1])  # [B, heads, L, S]
    if is_causal:
        mask = torch.ones(query.shape[-2], key.shape[-2], dtype=torch.bool, device=query.device).tril()
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1).to(value.dtype)
    return F.dropout(weights, p=dropout, training=dropout > 0) @ value, weights


class TransformerBlock(GradientCheckpointingLayer):
    """Pre-norm block: x + attn(norm(x)); x + mlp(norm(x)).

    A ``GradientCheckpointingLayer``: ``model.gradient_checkpointing_enable()`` recomputes it in the backward pass
    (the cache is only used without gradients, in generation, so checkpointing never meets it).
    """

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, dropout: float, eps: float):
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.attention = CausalSelfAttention(hidden_size, num_heads, dropout)
        self.mlp_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, intermediate_size), nn.GELU(), nn.Linear(intermediate_size, hidden_size)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, hidden_states, cos, sin, mask, is_causal, cache=None, layer=0, key_start=0, output_attentions=False
    ):
        """The block's output ``[B, L, H]``, or with ``output_attentions`` the pair (output, attention weights)."""
        attended, weights = self.attention(
            self.attention_norm(hidden_states), cos, sin, mask, is_causal, cache, layer, key_start, output_attentions
        )
        hidden_states = hidden_states + self.dropout(attended)
        hidden_states = hidden_states + self.dropout(self.mlp(self.mlp_norm(hidden_states)))
        return (hidden_states, weights) if output_attentions else hidden_states


class CausalTransformer(nn.Module):
    """Stack of pre-norm causal self-attention blocks with rotary positions and an explicit cache.

    Args:
        hidden_size: model width.
        num_layers: number of blocks.
        num_heads: attention heads (``hidden_size`` must be divisible by it).
        intermediate_size: MLP width.
        dropout: dropout on attention weights and residual branches.
        attention_window: if set, each step attends to at most this many most recent steps (itself included),
            which bounds the per-step cost of incremental decoding; ``None`` = full causal attention.
        layer_norm_eps: LayerNorm epsilon.
        causal: ``False`` turns the stack into a bidirectional encoder (padding keys masked, no cache).
    """

    def __init__(
        self,
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        intermediate_size: int,
        dropout: float = 0.0,
        attention_window: int | None = None,
        layer_norm_eps: float = 1e-5,
        causal: bool = True,
    ):
        super().__init__()
        self.causal = causal
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.attention_window = attention_window
        self.layers = nn.ModuleList(
            TransformerBlock(hidden_size, num_heads, intermediate_size, dropout, layer_norm_eps)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self._rotary_table: tuple[torch.Tensor, torch.Tensor] | None = None  # decoding steps' cos / sin, by position

    def new_cache(self, batch_size: int, max_length: int, like: torch.Tensor) -> KeyValueCache:
        """An empty cache for ``batch_size`` sequences of up to ``max_length`` steps (dtype/device of ``like``)."""
        return KeyValueCache(
            len(self.layers), batch_size, self.num_heads, self.head_dim, max_length, like.dtype, like.device
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: KeyValueCache | None = None,
        all_hidden_states: list[torch.Tensor] | None = None,
        all_attentions: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """
        Args:
            hidden_states: ``[B, L, H]`` inputs of the new steps.
            attention_mask: ``[B, past + L]`` True/1 for real steps, False/0 for padding keys (``None``: all real).
                With right padding (the usual case) no mask is needed: causal attention never looks ahead.
            cache: if given, the new steps are appended to it and attend to the cached ones.
            all_hidden_states: if given, the input of every block and the normalised output are appended to it
                (``num_layers + 1`` tensors ``[B, L, H]``, transformers' ``output_hidden_states`` convention).
            all_attentions: if given, the attention weights of every block are appended to it (``num_layers``
                tensors ``[B, heads, L, past + L]``, computed eagerly: see :class:`CausalSelfAttention`).

        Returns:
            ``[B, L, H]`` normalised outputs.
        """
        batch, length, _ = hidden_states.shape
        if (
            cache is not None
            and length == 1
            and attention_mask is None
            and all_hidden_states is None
            and all_attentions is None
            and not self.training
        ):
            return self._decode_step(hidden_states, cache)
        past = cache.length if cache is not None else 0
        total = past + length
        positions = torch.arange(past, total, device=hidden_states.device)
        cos, sin = rotary_cos_sin(positions, self.head_dim, dtype=hidden_states.dtype)

        mask = None
        is_causal = False
        key_start = 0
        window = self.attention_window
        if not self.causal:
            if cache is not None:
                raise ValueError("cache must be None for a bidirectional (causal=False) transformer")
            if attention_mask is not None:
                diagonal = torch.eye(length, dtype=torch.bool, device=hidden_states.device)
                mask = attention_mask.bool()[:, None, None, :] | diagonal[None, None]
        elif attention_mask is None and cache is not None and length == 1 and window is not None and window < total:
            # One decoding step with a sliding window: read only the last `window` cached steps (flat cost).
            key_start = total - window
        elif attention_mask is None and (window is None or window >= total):
            # Plain causal attention: a single new step sees everything; a prefill uses the fused causal path.
            is_causal = length > 1 and past == 0
            if length > 1 and past > 0:
                mask = self._causal_mask(positions, total, None, None)
        else:
            if attention_mask is not None and attention_mask.shape != (batch, total):
                raise ValueError(
                    f"attention_mask must have shape [batch, past + length] = {[batch, total]}, "
                    f"got {list(attention_mask.shape)}"
                )
            mask = self._causal_mask(positions, total, attention_mask, window)

        for index, block in enumerate(self.layers):
            if all_hidden_states is not None:
                all_hidden_states.append(hidden_states)
            output_attentions = all_attentions is not None
            hidden_states = block(
                hidden_states, cos, sin, mask, is_causal, cache=cache, layer=index, key_start=key_start,
                output_attentions=output_attentions,
            )  # fmt: skip
            if output_attentions:
                hidden_states, weights = hidden_states
                all_attentions.append(weights)
        if cache is not None:
            cache.advance(length)
        hidden_states = self.norm(hidden_states)
        if all_hidden_states is not None:
            all_hidden_states.append(hidden_states)
        return hidden_states

    def _rotary_at(self, position: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos``, ``sin`` ``[1, head_dim]`` of one position, from a table grown by doubling (not a buffer: it is
        derived, never saved)."""
        table = self._rotary_table
        if (
            table is None
            or table[0].shape[0] <= position
            or table[0].dtype != like.dtype
            or table[0].device != like.device
        ):
            size = max(64, 2 * (position + 1), table[0].shape[0] if table is not None else 0)
            table = rotary_cos_sin(torch.arange(size, device=like.device), self.head_dim, dtype=like.dtype)
            self._rotary_table = table
        return table[0][position : position + 1], table[1][position : position + 1]

    def _decode_step(self, hidden_states: torch.Tensor, cache: KeyValueCache) -> torch.Tensor:
        """One new step ``[B, 1, H]`` of every sequence against the cache, in inference.

        The same arithmetic as :meth:`forward` (same outputs) in fewer tensor operations: a step of one token is a
        few small matrix-vector products, so per-operation overhead is a large part of its time (``base``'s 6 blocks
        of width 256: 183 top-level operations per step instead of 238, and 0.64 -> 0.45 ms per frame for the tiny
        preset, whose loop is nearly all overhead; ``benchmarks/generation.py`` gives the loop's time). Queries and
        keys are rotated together with a precomputed table, the new key and value are written straight into the
        cache, and the blocks' submodules are called directly (so adapters or quantised layers that replace them
        still apply).
        """
        batch, _, hidden = hidden_states.shape
        position = cache.length
        end = position + 1
        if end > cache.capacity:
            cache._grow(end)
        window = self.attention_window
        key_start = end - window if window is not None and window < end else 0
        cos, sin = self._rotary_at(position, hidden_states)
        half = self.head_dim // 2
        for index, block in enumerate(self.layers):
            attention = block.attention
            qkv = attention.qkv(block.attention_norm(hidden_states)).view(batch, 3, self.num_heads, self.head_dim)
            query_key = qkv[:, :2]  # [B, 2, heads, head_dim]
            rotated = torch.cat([-query_key[..., half:], query_key[..., :half]], dim=-1)
            query_key = query_key * cos + rotated * sin
            keys, values = cache.keys[index], cache.values[index]
            keys[:, :, position] = query_key[:, 1]
            values[:, :, position] = qkv[:, 2]
            attended = F.scaled_dot_product_attention(
                query_key[:, 0, :, None], keys[:, :, key_start:end], values[:, :, key_start:end]
            )  # [B, heads, 1, head_dim]
            hidden_states = hidden_states + attention.out(attended.view(batch, 1, hidden))
            hidden_states = hidden_states + block.mlp(block.mlp_norm(hidden_states))
        cache.advance(1)
        return self.norm(hidden_states)

    @staticmethod
    def _causal_mask(
        query_positions: torch.Tensor, total: int, key_mask: torch.Tensor | None, window: int | None
    ) -> torch.Tensor:
        """Boolean ``[B or 1, 1, L, total]`` mask (True = attend); each step always sees itself (no empty rows)."""
        key_positions = torch.arange(total, device=query_positions.device)
        allowed = key_positions[None, :] <= query_positions[:, None]  # [L, total]
        if window is not None:
            allowed = allowed & (key_positions[None, :] > query_positions[:, None] - window)
        allowed = allowed[None, None]
        if key_mask is not None:
            allowed = allowed & key_mask.bool()[:, None, None, :]
        diagonal = key_positions[None, :] == query_positions[:, None]
        return allowed | diagonal[None, None]


# --------------------------------------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------------------------------------


def sequence_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """Boolean mask ``[B, max_length]`` that is True at positions ``< lengths[b]``."""
    max_length = int(lengths.max().item()) if max_length is None else max_length
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]
# --------------------------------------------------------------------------------------------------------------------
# Weight initialisation
# --------------------------------------------------------------------------------------------------------------------


def init_module_weights(module: nn.Module, std: float = 0.02) -> None:
    """Default init for the modules defined here (use from a model's ``_init_weights``).

    Uses ``transformers.initialization`` so weights loaded from a checkpoint are not re-initialised.
    """
    if isinstance(module, nn.Linear):
        init.normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        init.normal_(module.weight, mean=0.0, std=std)
    elif isinstance(module, nn.LayerNorm):
        if module.weight is not None:
            init.ones_(module.weight)
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, SpeechEncoder):
        init.zeros_(module.layer_weights)
