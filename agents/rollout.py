"""Rollouts through the real Gymnasium vector env with the KV-cached policy.

:func:`collect` resets a :class:`textenv.vector.TextVectorEnv` on chosen prompts and steps it
token by token until every sub-env has finished one episode; sub-envs that finish early are
masked out of the policy's forwards (as ``generate`` keeps finished rows in the batch, at no more
cost). The env API is the contract: no ``generate``-and-replay shortcut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from agents.kvcache import RolloutState
from agents.policy import EpisodeBatch, LMActorCritic

if TYPE_CHECKING:
    from agents.masking import TopKMasker

__all__ = ["Episode", "collect", "episodes_to_batch", "row_info", "row_seed"]


@dataclass
class Episode:
    """One finished generation with what the policy and the env said at each token."""

    index: int
    prompt_ids: np.ndarray
    actions: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    sequence: list[int] | None = None  # multi-turn: every token after the prompt, the env's turns included
    positions: list[int] | None = None  # multi-turn: each action's place in ``sequence``

    @property
    def score(self) -> float:
        """The task reward of the episode (the sum of its env rewards)."""
        return float(sum(self.rewards))

    @property
    def generated(self) -> list[int]:
        """Token ids after the prompt that the learner reads: the actions (EOS included when the
        episode ended on it) and, in a multi-turn task, the turns the env inserted between them."""
        return self.actions if self.sequence is None else self.sequence


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


def collect(envs, policy: LMActorCritic, indices: Sequence[int], seed: int,
            generator: torch.Generator | None = None, greedy: bool = False,
            row_seeds: Sequence[int] | None = None, masker: TopKMasker | None = None) -> list[Episode]:
    """One episode per sub-env, on prompts ``indices`` (one per sub-env), in sub-env order.

    ``indices`` may be shorter than the number of sub-envs (the last batch of an eval): the spare
    sub-envs repeat the first prompt and are never stepped by the policy. ``row_seeds`` and
    ``masker`` (NLPO action masking): see :meth:`LMActorCritic.act`.

    Multi-turn tasks: each episode also records its whole ``sequence`` after the prompt (the turns
    the env inserted included) and its actions' ``positions`` in it; the policy's KV cache takes
    the inserted turns in one forward (:meth:`agents.kvcache.CachedLM.advance`).
    """
    env = envs.unwrapped
    turns = env.setup.turns > 1
    b = env.num_envs
    same_step = env.metadata.get("autoreset_mode") == AutoresetMode.SAME_STEP
    n = len(indices)
    if not 0 < n <= b:
        raise ValueError(f"need between 1 and {b} prompt indices, got {n}")
    padded = list(indices) + [indices[0]] * (b - n)
    seeds = None if row_seeds is None else list(row_seeds) + [0] * (b - n)
    obs, _ = envs.reset(seed=seed, options={"index": padded})
    p = env.setup.max_prompt_tokens
    episodes = [Episode(index=int(padded[i]), prompt_ids=obs["input_ids"][i, :p][obs["attention_mask"][i, :p] == 1])
                for i in range(b)]
    state = policy.rollout_state(b, p)
    mask_state = None if masker is None else RolloutState(b, p)  # the masking model's own KV cache
    active = np.arange(b) < n
    steps: list[tuple[np.ndarray, ...]] = []  # per env step, whole-batch arrays: no per-row Python per token
    where = np.zeros(b, dtype=np.int64)  # multi-turn: generated tokens before each row's action
    while active.any():
        allowed = None if masker is None else masker.next_allowed(obs, mask_state, active)
        res = policy.act(obs, state, generator=generator, greedy=greedy, active=active, row_seeds=seeds,
                         allowed=allowed)
        if turns:
            where = obs["attention_mask"][:, p:].sum(1)
        obs, rewards, terminated, truncated, infos = envs.step(res.actions)
        done = (terminated | truncated) & active
        steps.append((active.copy(), res.actions, res.logprobs, res.values, np.asarray(rewards, dtype=np.float64),
                      where))
        final = infos.get("final_info", {}) if same_step else infos
        for i in np.flatnonzero(done):  # once per finished episode
            episodes[i].info = row_info(final, int(i))
            if turns:
                last = infos["final_obs"][i] if same_step else {k: v[i] for k, v in obs.items()}
                episodes[i].sequence = last["input_ids"][p:][last["attention_mask"][p:] == 1].tolist()
        active &= ~done
    if steps:
        live, actions, logprobs, values, rewards, wheres = (np.stack(x, 1) for x in zip(*steps, strict=True))
        for i, ep in enumerate(episodes[:n]):
            took = live[i]
            ep.actions = actions[i, took].tolist()
            ep.logprobs = logprobs[i, took].tolist()
            ep.values = values[i, took].tolist()
            ep.rewards = rewards[i, took].tolist()
            if turns:
                ep.positions = wheres[i, took].tolist()
                _place_actions(ep)
    return episodes[:n]


def _place_actions(ep: Episode) -> None:
    """Check a multi-turn episode's actions against its sequence: each action is the token at its
    position, except an EOS the env did not write (one that ended the episode), appended here."""
    seq = ep.sequence
    if seq is None or ep.positions is None:
        raise ValueError("a multi-turn episode needs its sequence and action positions")
    for a, pos in zip(ep.actions, ep.positions, strict=True):
        if pos == len(seq):
            seq.append(a)
        elif not (pos < len(seq) and seq[pos] == a):
            raise RuntimeError(f"episode on example {ep.index}: action {a} at position {pos} is not in the "
                               f"env's observation (the env and the rollout disagree on the layout)")


def episodes_to_batch(episodes: Sequence[Episode], pad_token_id: int) -> EpisodeBatch:
    """The learners' batch; multi-turn episodes carry their action positions (over actions only)."""
    multi = [e.positions is not None for e in episodes]
    if any(multi) and not all(multi):
        raise ValueError("cannot batch single-turn and multi-turn episodes together")
    return EpisodeBatch.from_episodes([e.prompt_ids.tolist() for e in episodes], [e.generated for e in episodes],
                                      pad_token_id, [e.positions for e in episodes] if all(multi) else None)
