"""The maths of the update: GAE, critic-free group baselines, whitening, the KL controllers.

Plain tensor functions, tested against hand-computed numbers (tests/test_advantages.py).
"""

from __future__ import annotations

import math

import torch

__all__ = ["AdaptiveKLController", "FixedKLController", "gae", "group_advantages", "whiten"]


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over right-padded episodes.

    ``rewards``, ``values``, ``mask``: (N, T); the value after an episode's last token is 0 (the
    episode is over). Returns (advantages, returns), zero where ``mask`` is 0.
    """
    n, t = rewards.shape
    adv = torch.zeros_like(rewards)
    last = torch.zeros(n, dtype=rewards.dtype, device=rewards.device)
    for i in reversed(range(t)):
        next_value = values[:, i + 1] * mask[:, i + 1] if i + 1 < t else torch.zeros_like(last)
        delta = rewards[:, i] + gamma * next_value - values[:, i]
        last = (delta + gamma * lam * last) * mask[:, i]
        adv[:, i] = last
    return adv, (adv + values) * mask


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Normalise ``x`` to unit variance (and zero mean) over the entries where ``mask`` is 1."""
    n = mask.sum().clamp(min=1)
    mean = (x * mask).sum() / n
    var = (((x - mean) * mask) ** 2).sum() / (n - 1).clamp(min=1)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def group_advantages(scores: torch.Tensor, group_size: int, method: str) -> torch.Tensor:
    """Critic-free per-episode advantages from ``group_size`` samples of each prompt.

    ``scores`` (N,) are ordered group by group. ``"grpo"``: (score - group mean) / (group std +
    eps) (Shao et al. 2024). ``"rloo"``: score minus the mean of the other samples of its group
    (Ahmadian et al. 2024), unbiased for any group size >= 2.
    """
    if group_size < 2:
        raise ValueError(f"{method} needs at least 2 samples per prompt, got {group_size}")
    if scores.numel() % group_size:
        raise ValueError(f"{scores.numel()} scores do not split into groups of {group_size}")
    g = scores.view(-1, group_size)
    if method == "grpo":
        return ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-6)).reshape(-1)
    if method == "rloo":
        others = (g.sum(1, keepdim=True) - g) / (group_size - 1)
        return (g - others).reshape(-1)
    raise ValueError(f"unknown group advantage method {method!r}; expected 'grpo' or 'rloo'")


class FixedKLController:
    """A constant KL coefficient."""

    def __init__(self, coef: float) -> None:
        self.value = coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass


class AdaptiveKLController:
    """Ziegler et al. (2019): move the coefficient so the observed KL tracks ``target``.

    ``value *= 1 + clip(kl / target - 1, -0.2, 0.2) * n_steps / horizon``: too much KL raises
    the coefficient, too little lowers it, by at most 20% per horizon of steps.
    """

    def __init__(self, coef: float, target: float, horizon: int) -> None:
        if target <= 0 or horizon <= 0:
            raise ValueError(f"need target > 0 and horizon > 0, got {target}, {horizon}")
        self.value, self.target, self.horizon = coef, target, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        if not math.isfinite(current_kl):
            return
        error = min(max(current_kl / self.target - 1, -0.2), 0.2)
        self.value *= 1 + error * n_steps / self.horizon
