"""The RL stage's algorithm on tensors (leave-one-out advantages, returns-to-go, the clipped surrogate, token
log-probabilities), apart from the trainer so that each is tested on hand numbers, as TRL keeps its own in
``trl.trainer.utils``."""

from __future__ import annotations

import torch
from trl.trainer.utils import entropy_from_logits, selective_log_softmax

__all__ = ["clipped_policy_loss", "masked_mean", "returns_to_go", "rloo_advantages", "token_log_probs"]


def rloo_advantages(rewards: torch.Tensor, num_rollouts: int) -> torch.Tensor:
    """Leave-one-out advantages ``A_i = r_i - mean_{j != i} r_j`` within each clip's group of rollouts.

    Args:
        rewards: ``[num_clips * num_rollouts]`` (or ``[num_clips * num_rollouts, T']`` returns-to-go: one baseline
            per step), the rollouts of one clip contiguous.
        num_rollouts: group size ``k >= 2``.
    Returns:
        advantages of the shape of ``rewards`` (each group's advantages sum to 0).
    """
    if num_rollouts < 2:
        raise ValueError(f"num_rollouts must be >= 2 for a leave-one-out baseline, got {num_rollouts}")
    if rewards.shape[0] % num_rollouts:
        raise ValueError(f"rewards must hold a multiple of num_rollouts={num_rollouts} rows, got {rewards.shape[0]}")
    grouped = rewards.view(-1, num_rollouts, *rewards.shape[1:])
    baseline = (grouped.sum(dim=1, keepdim=True) - grouped) / (num_rollouts - 1)
    return (grouped - baseline).reshape(rewards.shape)


def returns_to_go(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """``G_t = sum_{s >= t} gamma^(s - t) r_s`` over valid steps (``rewards``, ``mask``: ``[B, T']``)."""
    rewards = rewards * mask
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        running = rewards[:, t] + gamma * running * mask[:, t]
        out[:, t] = running
    return out * mask


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | tuple[int, ...] | None = None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is true (``mask`` broadcastable to ``values``); 0 where nothing is valid."""
    mask = mask.to(values.dtype).expand_as(values)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1.0)
    return (values * mask).sum(dim=dim) / mask.sum(dim=dim).clamp(min=1.0)


def clipped_policy_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate with a per-token ratio and one (sparse-reward) advantage per sequence.

    Args:
        logps / old_logps: ``[B, T', G]`` log-probabilities of the sampled tokens under the current / the sampling
            policy.
        advantages: ``[B]`` (one per sequence) or ``[B, T']`` (per step).
        mask: ``[B, T', G]`` (or broadcastable), true on real tokens.
        cliprange: ``epsilon`` of the clip.
    Returns:
        ``(loss, clip_fraction, ratio_mean)``: the loss averages tokens within a sequence and then sequences;
        ``clip_fraction`` is the share of valid tokens whose clipped term was the active one.
    """
    ratio = torch.exp(logps - old_logps)
    adv = advantages.view(*advantages.shape, *([1] * (logps.dim() - advantages.dim())))
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange) * adv
    per_token = -torch.min(unclipped, clipped)
    token_dims = tuple(range(1, logps.dim()))
    loss = masked_mean(per_token, mask, dim=token_dims).mean()
    is_clipped = (clipped < unclipped).to(logps.dtype)
    return loss, masked_mean(is_clipped, mask).detach(), masked_mean(ratio, mask).detach()


def token_log_probs(
    logits: torch.Tensor, motion_tokens: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities and entropies of given tokens under tempered logits.

    Args:
        logits: ``[B, T', G, K]`` (``logits[:, t]`` is the distribution of ``motion_tokens[:, t]``).
        motion_tokens: ``[B, T', G]``.
    Returns:
        ``(logps [B, T', G], entropy [B, T', G])`` in nats.
    """
    logits = logits.float() / temperature
    return selective_log_softmax(logits, motion_tokens), entropy_from_logits(logits)
