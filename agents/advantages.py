"""The maths of the update: GAE, critic-free group baselines, whitening, the length penalty, the
rollout batch they build, the clipped PPO loss and the KL controllers.

Plain tensor functions, tested against hand-computed numbers (tests/test_advantages.py). As in
cleanrl and stable-baselines3, the trainer only collects, calls :func:`update_batch` once per
iteration and loops :func:`ppo_loss` over minibatches: no loss arithmetic lives in the loop.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple, Protocol

import torch

__all__ = ["LOSS_TYPES", "AdaptiveKLController", "FixedKLController", "LossConfig", "LossType", "UpdateBatch",
           "aggregate", "gae", "group_advantages", "length_penalty", "ppo_loss", "update_batch", "whiten"]

LossType = Literal["token", "sequence", "dr_grpo"]
LOSS_TYPES: tuple[str, ...] = ("token", "sequence", "dr_grpo")


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


def group_advantages(scores: torch.Tensor, group_size: int, method: str, scale: bool = True) -> torch.Tensor:
    """Critic-free per-episode advantages from ``group_size`` samples of each prompt.

    ``scores`` (N,) are ordered group by group. ``"grpo"``: (score - group mean) / (group std +
    eps) (Shao et al. 2024); with ``scale=False`` score - group mean only, as Dr. GRPO (Liu et al.
    2025) does: dividing by the std up-weights prompts that are nearly always solved or nearly
    always failed (TRL's ``scale_rewards=False``). ``"rloo"``: score minus the mean of the other
    samples of its group (Ahmadian et al. 2024), unbiased for any group size >= 2; it is never
    scaled, so ``scale`` does not change it.
    """
    if group_size < 2:
        raise ValueError(f"{method} needs at least 2 samples per prompt, got {group_size}")
    if scores.numel() % group_size:
        raise ValueError(f"{scores.numel()} scores do not split into groups of {group_size}")
    g = scores.view(-1, group_size)
    if method == "grpo":
        centred = g - g.mean(1, keepdim=True)
        return (centred / (g.std(1, keepdim=True) + 1e-6) if scale else centred).reshape(-1)
    if method == "rloo":
        others = (g.sum(1, keepdim=True) - g) / (group_size - 1)
        return (g - others).reshape(-1)
    raise ValueError(f"unknown group advantage method {method!r}; expected 'grpo' or 'rloo'")


class UpdateBatch(NamedTuple):
    """One iteration's episodes as ``(N, A)`` tensors over their actions (right-padded; ``mask``
    is 1 where an action exists): what the rollout recorded and what :func:`update_batch` derived."""

    mask: torch.Tensor
    old_logp: torch.Tensor  # log-prob of each token under the policy that sampled it
    old_values: torch.Tensor  # value-head estimate at sampling time (zeros without a critic)
    advantages: torch.Tensor
    returns: torch.Tensor  # value targets (zeros without a critic)

    def rows(self, idx: torch.Tensor) -> UpdateBatch:
        """The episodes ``idx`` (a minibatch)."""
        return UpdateBatch(*(t[idx] for t in self))


def length_penalty(lengths: torch.Tensor, ref_length: float, band: tuple[float, float], coef: float) -> torch.Tensor:
    """The penalty (>= 0, to subtract from each episode's task score) for leaving a length band.

    ``coef * max(0, lo * L0 - L, L - hi * L0) / L0`` for each length ``L`` of ``lengths`` (N,),
    with ``band = (lo, hi)`` and ``ref_length = L0``: zero inside ``[lo * L0, hi * L0]``, growing
    linearly with the distance outside, measured in units of ``L0`` so one ``coef`` fits tasks of
    any length. It stops a policy from winning a reward by shortening (or lengthening) its
    replies: PPO on a sentiment reward otherwise converges on "I love this tweet.".
    """
    if not ref_length > 0:
        raise ValueError(f"ref_length must be > 0, got {ref_length}")
    lo, hi = band
    lengths = lengths.float()
    below, above = lo * ref_length - lengths, lengths - hi * ref_length
    return coef * torch.maximum(below, above).clamp(min=0) / ref_length


def update_batch(episode_rewards: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, old_logp: torch.Tensor,
                  old_values: torch.Tensor, kl_coef: float, advantage: str = "gae", group_size: int = 1,
                  gamma: float = 1.0, lam: float = 0.95, whiten_advantages: bool = True,
                  scale_group: bool = True, action_rewards: torch.Tensor | None = None) -> UpdateBatch:
    """Advantages and returns from each episode's reward ``(N,)`` and the per-action KL ``(N, T)``.

    ``"gae"``: per-action rewards ``-kl_coef * kl`` with the episode's reward added at its last
    action, then :func:`gae` over the value head's estimates (whitened over real actions when
    ``whiten_advantages``). ``action_rewards`` ``(N, T)`` (per-turn credit) places those rewards at
    their own actions instead, and only the rest of the episode's reward (``episode_rewards`` minus
    their sum: the shaping) at its last action: the total is the same, a turn's reward no longer
    reaches the turns before it undiscounted. ``"grpo"``/``"rloo"``: one sequence reward
    ``reward - kl_coef * sum(kl)`` per episode, :func:`group_advantages` over groups of ``group_size``
    (``scale_group=False``: GRPO without the division by the group's std, as Dr. GRPO), the same
    advantage on every action of the episode, no returns.
    """
    if advantage == "gae":
        rewards = -kl_coef * kl
        lengths = mask.sum(1).long()
        at_end = episode_rewards
        if action_rewards is not None:
            placed = action_rewards.to(rewards.dtype) * mask
            rewards = rewards + placed
            at_end = episode_rewards - placed.sum(1)
        rewards[torch.arange(len(episode_rewards)), lengths - 1] += at_end
        advantages, returns = gae(rewards, old_values, mask, gamma, lam)
        if whiten_advantages:
            advantages = whiten(advantages, mask)
    else:
        if action_rewards is not None:
            raise ValueError(f"per-action rewards need the gae advantage; {advantage} scores whole episodes")
        seq = episode_rewards - kl_coef * kl.sum(1)
        adv = group_advantages(seq, group_size, advantage, scale=scale_group)
        advantages, returns = adv[:, None] * mask, torch.zeros_like(mask)
    return UpdateBatch(mask, old_logp, old_values, advantages, returns)


class LossConfig(Protocol):
    """The fields of a config :func:`ppo_loss` reads (:class:`agents.ppo.PPOConfig` has them)."""

    clip_range: float
    clip_range_value: float
    vf_coef: float
    ent_coef: float
    advantage: str
    loss_type: str


def aggregate(x: torch.Tensor, mask: torch.Tensor, loss_type: str, max_tokens: int | None = None) -> torch.Tensor:
    """Reduce a per-token quantity ``x`` (N, T) over the real tokens (``mask``) of N episodes.

    ``"token"``: sum / number of real tokens (TRL's ``"bnpo"``, DAPO's token-level mean, Yu et al.
    2025): every token weighs the same. ``"sequence"``: the mean over each episode's tokens, then
    over episodes (the GRPO paper, Shao et al. 2024; TRL's ``"grpo"``): every episode weighs the
    same, so a short wrong answer's tokens are pushed down harder than a long one's. ``"dr_grpo"``:
    sum / (N * ``max_tokens``), the run's token budget per episode (Liu et al. 2025, "Understanding
    R1-Zero-like training"; TRL's ``"dr_grpo"``): a constant normaliser, free of that length bias.
    Episodes are the rows of ``x``, as in TRL.
    """
    if loss_type == "token":
        return (x * mask).sum() / mask.sum().clamp(min=1)
    if loss_type == "sequence":
        return ((x * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
    if loss_type == "dr_grpo":
        if max_tokens is None or max_tokens < 1:
            raise ValueError(f"loss_type 'dr_grpo' needs max_tokens >= 1 (the token budget), got {max_tokens}")
        if mask.shape[1] > max_tokens:
            raise ValueError(f"max_tokens {max_tokens} is below the episodes' {mask.shape[1]} tokens: not the budget")
        return (x * mask).sum() / (mask.shape[0] * max_tokens)
    raise ValueError(f"unknown loss_type {loss_type!r}; expected one of {LOSS_TYPES}")


def ppo_loss(logprobs: torch.Tensor, entropy: torch.Tensor, values: torch.Tensor | None, batch: UpdateBatch,
             cfg: LossConfig, max_tokens: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped PPO objective (Schulman et al. 2017) over the real tokens of ``batch``.

    ``logprobs``, ``entropy``, ``values``: ``(N, T)`` under the policy being updated. Loss =
    clipped policy-gradient loss ``- ent_coef * entropy``, both reduced by :func:`aggregate` as
    ``cfg.loss_type`` says (``"dr_grpo"`` needs ``max_tokens``, the token budget per episode), (+
    ``vf_coef *`` clipped value loss, a mean over real tokens, when ``cfg.advantage == "gae"``).
    Returns ``(loss, stats)``; the stats (``pg``, ``vf``, ``ent``, ``approx_kl`` = mean of ``(r - 1) -
    log r``, ``clipfrac``, these two always token means) carry no gradient except through
    ``pg``/``vf``/``ent``, which the caller detaches when it logs them.
    """
    m = batch.mask
    denom = m.sum().clamp(min=1)
    log_ratio = (logprobs.float() - batch.old_logp) * m
    ratio = log_ratio.exp()
    adv = batch.advantages
    pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range))
    pg_loss = aggregate(pg, m, cfg.loss_type, max_tokens)
    ent = aggregate(entropy.float(), m, cfg.loss_type, max_tokens)
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
