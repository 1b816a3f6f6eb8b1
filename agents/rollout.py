"""Rollouts through the real Gymnasium vector env with the KV-cached policy.

:func:`collect_rollout` resets a :class:`textenv.vector.TextVectorEnv` on chosen prompts and steps
it token by token until every sub-env has finished one episode; sub-envs that finish early are
masked out of the policy's forwards (as ``generate`` keeps finished rows in the batch, at no more
cost). The env API is the contract: no ``generate``-and-replay shortcut.

What it records is one :class:`Rollout`: whole-batch tensors, filled from whole-batch arrays, that
PPO's advantages and loss read as they are. :func:`collect` gives the same episodes one by one as
:class:`Episode` s, for the code that reads episodes (evals, reward-model sampling, benchmarks).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium.vector import AutoresetMode

from agents.kvcache import CacheState
from agents.policy import EpisodeBatch, LMActorCritic

if TYPE_CHECKING:
    from agents.masking import TopKMasker

__all__ = ["Episode", "Rollout", "collect", "collect_rollout", "row_info", "row_seed"]


@dataclass
class Episode:
    """One finished episode, a row of a :class:`Rollout`, with what the policy and the env said at
    each action."""

    index: int
    prompt_ids: np.ndarray
    actions: list[int]  # the agent's tokens (EOS included when the episode ended on it)
    logprobs: list[float]
    values: list[float]
    rewards: list[float]  # the env's reward for each action
    info: dict[str, Any]  # the episode's final info
    sequence: list[int]  # every token after the prompt: the actions and, multi-turn, the env's turns between
    positions: list[int]  # each action's column in ``sequence``

    @property
    def episode_return(self) -> float:
        """The task reward of the episode (the sum of its env rewards)."""
        return float(sum(self.rewards))


def row_info(infos: dict[str, Any], i: int) -> dict[str, Any]:
    """Sub-env ``i``'s entries of a Gymnasium vector info dict (arrays + ``_key`` masks)."""
    out = {}
    for key, value in infos.items():
        if key.startswith("_"):
            continue
        present = infos.get(f"_{key}")
        if present is not None and not present[i]:
            continue
        out[key] = row_info(value, i) if isinstance(value, dict) else value[i]
    return out


def row_seed(seed: int, index: int, sample: int = 0) -> int:
    """The seed of one row's sampling stream (``collect(row_seeds=...)``): example ``index``'s
    ``sample``-th completion under run ``seed``, whichever batch or process draws it."""
    return (seed * 1_000_003 + index * 64 + sample) % (2**62)


@dataclass(frozen=True, eq=False)
class Rollout:
    """One rollout as whole-batch tensors, from :func:`collect_rollout` to the PPO loss (as
    stable-baselines3's ``RolloutBuffer`` and cleanrl's preallocated tensors): the episodes' tokens
    as the learner's :class:`EpisodeBatch`, and over its ``(N, A)`` action columns what the policy
    and the env said at each action, zero past a row's last action. Rows are episodes in sub-env
    order.

    ``rollout[i]`` is row ``i`` as an :class:`Episode`, built on access (evals, tests and the
    adapters read episodes; the trainer reads the tensors)."""

    batch: EpisodeBatch  # prompts left-padded, generated tokens right-padded; action columns when multi-turn
    logprobs: torch.Tensor  # (N, A) float32: log-prob of each action under the sampling policy
    values: torch.Tensor  # (N, A) float32: V(context before the action)
    rewards: torch.Tensor  # (N, A) float64: the env's reward for each action
    returns: torch.Tensor  # (N,) float64: each episode's return, the sum of its rewards
    index: list[int]  # each row's example
    infos: list[dict[str, Any]]  # each episode's final info

    @property
    def mask(self) -> torch.Tensor:
        """``(N, A)``: 1 where an action exists."""
        return self.batch.mask

    @property
    def lengths(self) -> torch.Tensor:
        """``(N,)``: actions per episode (EOS included when it ended on one)."""
        return self.mask.sum(1).long()

    @property
    def ended_with_eos(self) -> np.ndarray:
        """``(N,)`` bool: episodes the agent ended (not the token budget)."""
        return np.array([bool(info.get("ended_with_eos", False)) for info in self.infos], dtype=bool)

    def __len__(self) -> int:
        return len(self.index)

    def __iter__(self) -> Iterator[Episode]:
        return (self[i] for i in range(len(self)))

    def __getitem__(self, i: int) -> Episode:
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} of a {len(self)}-episode rollout")
        i %= len(self)
        b, n = self.batch, int(self.mask[i].sum())
        pm = b.prompt_len
        prompt = b.input_ids[i, :pm][b.attention_mask[i, :pm] == 1].numpy()
        sequence = b.input_ids[i, pm:][b.attention_mask[i, pm:] == 1].tolist()
        positions = b.action_index[i, :n].tolist()
        return Episode(index=self.index[i], prompt_ids=prompt, actions=[sequence[q] for q in positions],
                       logprobs=self.logprobs[i, :n].tolist(), values=self.values[i, :n].tolist(),
                       rewards=self.rewards[i, :n].tolist(), info=self.infos[i], sequence=sequence,
                       positions=positions)

    @classmethod
    def cat(cls, parts: Sequence[Rollout], pad_token_id: int) -> Rollout:
        """Rollouts as one, each widened to the widest: the record one collect of all their rows gives."""
        a = max(r.mask.shape[1] for r in parts)

        def stacked(name: str) -> torch.Tensor:
            return torch.cat([F.pad(getattr(r, name), (0, a - r.mask.shape[1])) for r in parts])

        return cls(EpisodeBatch.cat([r.batch for r in parts], pad_token_id), stacked("logprobs"), stacked("values"),
                   stacked("rewards"), torch.cat([r.returns for r in parts]), [i for r in parts for i in r.index],
                   [info for r in parts for info in r.infos])


def collect_rollout(envs, policy: LMActorCritic, indices: Sequence[int], seed: int,
                    generator: torch.Generator | None = None, greedy: bool = False,
                    row_seeds: Sequence[int] | None = None, masker: TopKMasker | None = None) -> Rollout:
    """One episode per sub-env, on prompts ``indices`` (one per sub-env), in sub-env order, as one
    :class:`Rollout`.

    ``indices`` may be shorter than the number of sub-envs (the last batch of an eval): the spare
    sub-envs repeat the first prompt and are never stepped by the policy. ``row_seeds`` and
    ``masker`` (NLPO action masking): see :meth:`LMActorCritic.act`.

    The generated tokens are each episode's last observation after the prompt (in a multi-turn task
    the turns the env inserted included, fed to the policy's KV cache in one forward:
    :meth:`agents.kvcache.CachedLM.advance`), with the EOS that ended it; each action's column among
    them is the count of generated tokens the policy read before choosing it.
    """
    b = envs.unwrapped.num_envs
    n = len(indices)
    if not 0 < n <= b:
        raise ValueError(f"need between 1 and {b} prompt indices, got {n}")
    padded = list(indices) + [indices[0]] * (b - n)
    seeds = None if row_seeds is None else list(row_seeds) + [0] * (b - n)
    obs, _ = envs.reset(seed=seed, options={"index": padded})
    p = envs.unwrapped.setup.max_prompt_tokens
    prompt_ids, prompt_mask = obs["input_ids"][:n, :p].copy(), obs["attention_mask"][:n, :p].astype(np.int64)
    steps, seq_ids, seq_mask, infos = _play(envs, obs, policy, np.arange(b) < n, generator, greedy, seeds, masker)
    live, actions, logprobs, values, rewards, positions = (np.stack(x, 1)[:n] for x in zip(*steps, strict=True))
    gen_ids, gen_mask = _generated(seq_ids[:n], seq_mask[:n], live, actions, positions, padded)
    pad_id = policy.pad_token_id
    pm = int(prompt_mask.sum(1).max())  # the prompts are left-padded into the first p columns: keep the widest
    prompt_ids, prompt_mask = prompt_ids[:, p - pm:], prompt_mask[:, p - pm:]
    ids = np.concatenate([np.where(prompt_mask == 1, prompt_ids, pad_id), np.where(gen_mask, gen_ids, pad_id)], 1)
    mask = np.concatenate([prompt_mask, gen_mask.astype(np.int64)], 1)
    batch = EpisodeBatch(torch.from_numpy(ids), torch.from_numpy(mask), gen_ids.shape[1],
                         torch.from_numpy(np.where(live, positions, 0)), torch.from_numpy(live.astype(np.float32)))
    zero = np.zeros((), dtype=np.float32)  # keeps the float32 of the policy's log-probs and values
    # Python's sum, as Episode.episode_return has it: the same float on every Python version
    returns = [sum(r[took].tolist()) for r, took in zip(rewards, live, strict=True)]
    return Rollout(batch, *(torch.from_numpy(np.where(live, x, zero)) for x in (logprobs, values)),
                   torch.from_numpy(np.where(live, rewards, 0.0)), torch.tensor(returns, dtype=torch.float64),
                   [int(i) for i in padded[:n]], infos[:n])


def _play(envs, obs: dict[str, np.ndarray], policy: LMActorCritic, active: np.ndarray,
          generator: torch.Generator | None, greedy: bool, seeds: list[int] | None,
          masker: TopKMasker | None) -> tuple[list[tuple[np.ndarray, ...]], np.ndarray, np.ndarray, list[dict]]:
    """Step the vector env from ``obs`` until every ``active`` sub-env finished its episode.
    Returns the steps as whole-batch arrays (no per-row Python per token: which rows acted, their
    actions, log-probs, values, rewards and the actions' columns), each episode's last observation
    after the prompt (ids, mask) and its final info."""
    env = envs.unwrapped
    b, p = env.num_envs, env.setup.max_prompt_tokens
    same_step = env.metadata.get("autoreset_mode") == AutoresetMode.SAME_STEP
    state = policy.cache_state(b, p)
    mask_state = None if masker is None else CacheState(b, p)  # the masking model's own KV cache
    steps: list[tuple[np.ndarray, ...]] = []
    infos_of: list[dict[str, Any]] = [{} for _ in range(b)]
    seq_ids = np.zeros((b, obs["input_ids"].shape[1] - p), dtype=np.int64)
    seq_mask = np.zeros_like(seq_ids)
    while active.any():
        allowed = None if masker is None else masker.next_allowed(obs, mask_state, active)
        res = policy.act(obs, state, generator=generator, greedy=greedy, active=active, row_seeds=seeds,
                         allowed=allowed)
        obs, rewards, terminated, truncated, infos = envs.step(res.actions)
        done = (terminated | truncated) & active
        steps.append((active.copy(), res.actions, res.logprobs, res.values, np.asarray(rewards, dtype=np.float64),
                      res.positions))
        final = infos.get("final_info", {}) if same_step else infos
        for i in np.flatnonzero(done):  # once per finished episode
            infos_of[i] = row_info(final, int(i))
            last = infos["final_obs"][i] if same_step else {k: v[i] for k, v in obs.items()}
            seq_ids[i], seq_mask[i] = last["input_ids"][p:], last["attention_mask"][p:]
        active &= ~done
    return steps, seq_ids, seq_mask, infos_of


def collect(envs, policy: LMActorCritic, indices: Sequence[int], seed: int,
            generator: torch.Generator | None = None, greedy: bool = False,
            row_seeds: Sequence[int] | None = None, masker: TopKMasker | None = None) -> list[Episode]:
    """:func:`collect_rollout`'s episodes one by one (evals, reward-model sampling, benchmarks)."""
    return list(collect_rollout(envs, policy, indices, seed, generator, greedy, row_seeds, masker))


def _generated(seq_ids: np.ndarray, seq_mask: np.ndarray, live: np.ndarray, actions: np.ndarray,
               positions: np.ndarray, index: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The episodes' generated tokens ``(N, G)`` right-padded and their mask: each episode's last
    observation after the prompt, plus the EOS that ended it (the env does not write an ending EOS),
    checked against the actions: each is the token at its column."""
    length = seq_mask.sum(1)
    appended = live & (positions >= length[:, None])
    grown = np.maximum(length, np.where(live, positions + 1, 0).max(1))
    width = max(1, int(grown.max()))
    ids = np.zeros((len(seq_ids), max(width, seq_ids.shape[1])), dtype=np.int64)
    ids[:, :seq_ids.shape[1]] = seq_ids
    rows, steps = np.nonzero(appended)
    ids[rows, positions[rows, steps]] = actions[rows, steps]
    at = np.take_along_axis(ids, np.where(live, positions, 0).clip(max=ids.shape[1] - 1), 1)
    wrong = (live & (at != actions)).any(1) | (appended.sum(1) != grown - length)
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise RuntimeError(f"episode on example {index[i]}: its actions {actions[i, live[i]].tolist()} at positions "
                           f"{positions[i, live[i]].tolist()} are not in the env's observation (the env and the "
                           "rollout disagree on the layout)")
    return ids[:, :width], np.arange(width) < grown[:, None]
