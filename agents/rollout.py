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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium.vector import AutoresetMode

from agents.kvcache import RolloutState
from agents.policy import EpisodeBatch, LMActorCritic

if TYPE_CHECKING:
    from agents.masking import TopKMasker

__all__ = ["Episode", "Rollout", "collect", "collect_rollout", "episodes_to_batch", "outcomes", "row_info",
           "row_seed"]


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


def outcomes(episodes: Rollout | Sequence[Episode]) -> tuple[torch.Tensor, np.ndarray]:
    """Each episode's return ``(N,)`` (float64) and whether the agent ended it with EOS ``(N,)``:
    read off a :class:`Rollout`'s tensors, or episode by episode from hand-built episodes."""
    if isinstance(episodes, Rollout):
        return episodes.scores, episodes.ended_with_eos
    return (torch.tensor([e.score for e in episodes], dtype=torch.float64),
            np.array([bool(e.info.get("ended_with_eos", False)) for e in episodes], dtype=bool))


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
    scores: torch.Tensor  # (N,) float64: each episode's return, the sum of its rewards
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
        generated = b.input_ids[i, pm:][b.attention_mask[i, pm:] == 1].tolist()
        multi = b.action_index is not None
        positions = b.action_index[i, :n].tolist() if multi else None
        return Episode(index=self.index[i], prompt_ids=prompt,
                       actions=[generated[q] for q in positions] if multi else generated,
                       logprobs=self.logprobs[i, :n].tolist(), values=self.values[i, :n].tolist(),
                       rewards=self.rewards[i, :n].tolist(), info=self.infos[i],
                       sequence=generated if multi else None, positions=positions)

    @classmethod
    def cat(cls, parts: Sequence[Rollout], pad_token_id: int) -> Rollout:
        """Rollouts as one, each widened to the widest: the record one collect of all their rows gives."""
        a = max(r.mask.shape[1] for r in parts)

        def stacked(name: str) -> torch.Tensor:
            return torch.cat([F.pad(getattr(r, name), (0, a - r.mask.shape[1])) for r in parts])

        return cls(EpisodeBatch.cat([r.batch for r in parts], pad_token_id), stacked("logprobs"), stacked("values"),
                   stacked("rewards"), torch.cat([r.scores for r in parts]), [i for r in parts for i in r.index],
                   [info for r in parts for info in r.infos])


def collect_rollout(envs, policy: LMActorCritic, indices: Sequence[int], seed: int,
                    generator: torch.Generator | None = None, greedy: bool = False,
                    row_seeds: Sequence[int] | None = None, masker: TopKMasker | None = None) -> Rollout:
    """One episode per sub-env, on prompts ``indices`` (one per sub-env), in sub-env order, as one
    :class:`Rollout`.

    ``indices`` may be shorter than the number of sub-envs (the last batch of an eval): the spare
    sub-envs repeat the first prompt and are never stepped by the policy. ``row_seeds`` and
    ``masker`` (NLPO action masking): see :meth:`LMActorCritic.act`.

    Multi-turn tasks: the generated tokens are each episode's whole sequence after the prompt (the
    turns the env inserted included) and the batch's action columns say where the actions are in
    it; the policy's KV cache takes the inserted turns in one forward
    (:meth:`agents.kvcache.CachedLM.advance`).
    """
    env = envs.unwrapped
    turns = env.setup.multi_turn
    b = env.num_envs
    same_step = env.metadata.get("autoreset_mode") == AutoresetMode.SAME_STEP
    n = len(indices)
    if not 0 < n <= b:
        raise ValueError(f"need between 1 and {b} prompt indices, got {n}")
    padded = list(indices) + [indices[0]] * (b - n)
    seeds = None if row_seeds is None else list(row_seeds) + [0] * (b - n)
    obs, _ = envs.reset(seed=seed, options={"index": padded})
    p = env.setup.max_prompt_tokens
    prompt_ids, prompt_mask = obs["input_ids"][:n, :p].copy(), obs["attention_mask"][:n, :p].astype(np.int64)
    state = policy.rollout_state(b, p)
    mask_state = None if masker is None else RolloutState(b, p)  # the masking model's own KV cache
    active = np.arange(b) < n
    steps: list[tuple[np.ndarray, ...]] = []  # per env step, whole-batch arrays: no per-row Python per token
    where = np.zeros(b, dtype=np.int64)  # multi-turn: generated tokens before each row's action
    infos_of: list[dict[str, Any]] = [{} for _ in range(b)]
    # multi-turn: each episode's last observation after the prompt, written as the episode ends
    seq_ids = np.zeros((b, obs["input_ids"].shape[1] - p), dtype=np.int64) if turns else None
    seq_mask = np.zeros_like(seq_ids) if turns else None
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
            infos_of[i] = row_info(final, int(i))
            if turns:
                last = infos["final_obs"][i] if same_step else {k: v[i] for k, v in obs.items()}
                seq_ids[i], seq_mask[i] = last["input_ids"][p:], last["attention_mask"][p:]
        active &= ~done
    live, actions, logprobs, values, rewards, wheres = (np.stack(x, 1)[:n] for x in zip(*steps, strict=True))
    pad_id = policy.pad_token_id
    if turns:
        gen_ids, gen_mask, positions = _place_actions(seq_ids[:n], seq_mask[:n], live, actions, wheres, padded)
    else:  # a row's steps are a prefix of the rollout's: its actions are right-padded already
        gen_ids, gen_mask, positions = actions, live, None
    pm = int(prompt_mask.sum(1).max())  # the prompts are left-padded into the first p columns: keep the widest
    prompt_ids, prompt_mask = prompt_ids[:, p - pm:], prompt_mask[:, p - pm:]
    ids = np.concatenate([np.where(prompt_mask == 1, prompt_ids, pad_id), np.where(gen_mask, gen_ids, pad_id)], 1)
    mask = np.concatenate([prompt_mask, gen_mask.astype(np.int64)], 1)
    batch = EpisodeBatch(torch.from_numpy(ids), torch.from_numpy(mask), gen_ids.shape[1],
                         *(() if positions is None else (torch.from_numpy(np.where(live, positions, 0)),
                                                         torch.from_numpy(live.astype(np.float32)))))
    zero = np.zeros((), dtype=np.float32)  # keeps the float32 of the policy's log-probs and values
    # Python's sum, as Episode.score has it: the same float on every Python version
    scores = [sum(r[took].tolist()) for r, took in zip(rewards, live, strict=True)]
    return Rollout(batch, *(torch.from_numpy(np.where(live, x, zero)) for x in (logprobs, values)),
                   torch.from_numpy(np.where(live, rewards, 0.0)), torch.tensor(scores, dtype=torch.float64),
                   [int(i) for i in padded[:n]], infos_of[:n])


def collect(envs, policy: LMActorCritic, indices: Sequence[int], seed: int,
            generator: torch.Generator | None = None, greedy: bool = False,
            row_seeds: Sequence[int] | None = None, masker: TopKMasker | None = None) -> list[Episode]:
    """:func:`collect_rollout`'s episodes one by one (evals, reward-model sampling, benchmarks)."""
    return list(collect_rollout(envs, policy, indices, seed, generator, greedy, row_seeds, masker))


def _place_actions(seq_ids: np.ndarray, seq_mask: np.ndarray, live: np.ndarray, actions: np.ndarray,
                   positions: np.ndarray, index: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Multi-turn episodes' generated tokens ``(N, G)`` right-padded, their mask, and the actions'
    columns ``(N, A)``, checked against the episodes' last observations: each action is the token
    at its position, except an EOS the env did not write (one that ended the episode), appended
    here."""
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
    return ids[:, :width], np.arange(width) < grown[:, None], positions


def episodes_to_batch(episodes: Sequence[Episode], pad_token_id: int) -> EpisodeBatch:
    """The learners' batch; multi-turn episodes carry their action positions (over actions only)."""
    multi = [e.positions is not None for e in episodes]
    if any(multi) and not all(multi):
        raise ValueError("cannot batch single-turn and multi-turn episodes together")
    return EpisodeBatch.from_episodes([e.prompt_ids.tolist() for e in episodes], [e.generated for e in episodes],
                                      pad_token_id, [e.positions for e in episodes] if all(multi) else None)
