"""The maths of the update: GAE, critic-free group baselines, whitening, the rollout batch they
build, the clipped PPO loss and the KL controllers.

Plain tensor functions, tested against hand-computed numbers (tests/test_advantages.py). As in
cleanrl and stable-baselines3, the trainer only collects, calls :func:`rollout_batch` once per
iteration and loops :func:`ppo_loss` over minibatches: no loss arithmetic lives in the loop.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Protocol

import torch

__all__ = ["AdaptiveKLController", "FixedKLController", "LossConfig", "RolloutBatch", "gae",
           "group_advantages", "ppo_loss", "rollout_batch", "whiten"]


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


class RolloutBatch(NamedTuple):
    """One iteration's episodes as ``(N, T)`` tensors over generated tokens (right-padded; ``mask``
    is 1 where a token exists): what the rollout recorded and what :func:`rollout_batch` derived."""

    mask: torch.Tensor
    old_logp: torch.Tensor  # log-prob of each token under the policy that sampled it
    old_values: torch.Tensor  # value-head estimate at sampling time (zeros without a critic)
    advantages: torch.Tensor
    returns: torch.Tensor  # value targets (zeros without a critic)

    def rows(self, idx: torch.Tensor) -> RolloutBatch:
        """The episodes ``idx`` (a minibatch)."""
        return RolloutBatch(*(t[idx] for t in self))


def rollout_batch(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, old_logp: torch.Tensor,
                  old_values: torch.Tensor, kl_coef: float, advantage: str = "gae", group_size: int = 1,
                  gamma: float = 1.0, lam: float = 0.95, whiten_advantages: bool = True) -> RolloutBatch:
    """Advantages and returns from the task scores ``(N,)`` and the per-token KL ``(N, T)``.

    ``"gae"``: per-token rewards ``-kl_coef * kl`` with the score added at each episode's last
    token, then :func:`gae` over the value head's estimates (whitened over real tokens when
    ``whiten_advantages``). ``"grpo"``/``"rloo"``: one sequence reward ``score - kl_coef * sum(kl)``
    per episode, :func:`group_advantages` over groups of ``group_size``, the same advantage on every
    token of the episode, no returns.
    """
    if advantage == "gae":
        rewards = -kl_coef * kl
        lengths = mask.sum(1).long()
        rewards[torch.arange(len(scores)), lengths - 1] += scores
        advantages, returns = gae(rewards, old_values, mask, gamma, lam)
        if whiten_advantages:
            advantages = whiten(advantages, mask)
    else:
        seq = scores - kl_coef * kl.sum(1)
        adv = group_advantages(seq, group_size, advantage)
        advantages, returns = adv[:, None] * mask, torch.zeros_like(mask)
    return RolloutBatch(mask, old_logp, old_values, advantages, returns)


class LossConfig(Protocol):
    """The fields of a config :func:`ppo_loss` reads (:class:`agents.ppo.PPOConfig` has them)."""

    clip_range: float
    clip_range_value: float
    vf_coef: float
    ent_coef: float
    advantage: str


def ppo_loss(logprobs: torch.Tensor, entropy: torch.Tensor, values: torch.Tensor | None, batch: RolloutBatch,
             cfg: LossConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped PPO objective (Schulman et al. 2017) over the real tokens of ``batch``.

    ``logprobs``, ``entropy``, ``values``: ``(N, T)`` under the policy being updated. Loss =
    clipped policy-gradient loss ``- ent_coef * entropy`` (+ ``vf_coef *`` clipped value loss when
    ``cfg.advantage == "gae"``), each a mean over real tokens. Returns ``(loss, stats)``; the stats
    (``pg``, ``vf``, ``ent``, ``approx_kl`` = mean of ``(r - 1) - log r``, ``clipfrac``) carry no gradient
    except through ``pg``/``vf``/``ent``, which the caller detaches when it logs them.
    """
    m = batch.mask
    denom = m.sum().clamp(min=1)
    log_ratio = (logprobs.float() - batch.old_logp) * m
    ratio = log_ratio.exp()
    adv = batch.advantages
    pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range))
    pg_loss = (pg * m).sum() / denom
    ent = (entropy.float() * m).sum() / denom
    loss = pg_loss - cfg.ent_coef * ent
    vf_loss = torch.zeros(())
    if cfg.advantage == "gae":
        if values is None:
            raise ValueError("the gae advantage needs the value head's values")
        v = values.float()
        v_clip = batch.old_values + (v - batch.old_values).clamp(-cfg.clip_range_value, cfg.clip_range_value)
        vf = torch.max((v - batch.returns) ** 2, (v_clip - batch.returns) ** 2)
        vf_loss = 0.5 * (vf * m).sum() / denom
        loss = loss + cfg.vf_coef * vf_loss
    with torch.no_grad():
        approx_kl = (((ratio - 1) - log_ratio) * m).sum() / denom
        clipfrac = (((ratio - 1).abs() > cfg.clip_range).float() * m).sum() / denom
    return loss, {"pg": pg_loss, "vf": vf_loss, "ent": ent, "approx_kl": approx_kl, "clipfrac": clipfrac}


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
