"""A native batched vector env: B generations stepped in lockstep with numpy arrays.

``gym.make_vec("TextSummarize-v0", num_envs=B)`` returns this class (the registration's
``vector_entry_point``); ``vectorization_mode="sync"`` still gives Gymnasium's SyncVectorEnv over
:class:`textenv.env.TextEnv`, and both produce the same episodes for the same seeds.

Unlike SyncVectorEnv it shares one tokenizer, one prompt cache and one reward across the batch,
writes every sub-env's token in one numpy assignment, and scores all episodes that finish on a
step in ONE batched reward call (a reward model or BERTScore sees a batch, not B single calls).
Only finished sub-envs are touched one by one (decode, reset).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from textenv.core import TaskSetup, check_dense, check_seed
from textenv.models import env_model_kwargs
from textenv.render import text_image
from textenv.tasks import Task
from textenv.turns import TurnState, check_turn_task, ends_turn, plan_move, turn_info

__all__ = ["TextVectorEnv", "policy_envs"]

_AUTORESET = {"next_step": AutoresetMode.NEXT_STEP, "same_step": AutoresetMode.SAME_STEP}


class TextVectorEnv(VectorEnv):
    """``num_envs`` copies of :class:`textenv.env.TextEnv`, batched. Same arguments as the env.

    Autoreset: ``autoreset_mode="next_step"`` (Gymnasium's default: the step after an episode
    ends resets that sub-env and ignores its action) or ``"same_step"`` (the sub-env is reset in
    the step that ends it; the finished episode's observation and info are in
    ``info["final_obs"]`` / ``info["final_info"]``, as stable-baselines3-style loops expect).
    Seeds: ``reset(seed=s)`` seeds sub-env ``i`` with ``s + i``, as SyncVectorEnv does.
    ``reset(options={"index": [i0, i1, ...]})`` picks each sub-env's prompt.
    """

    def __init__(
        self,
        num_envs: int,
        task: Task | str | Callable[..., Task],
        dense_reward: bool = False,
        render_mode: str | None = None,
        autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
        **setup_kwargs: Any,
    ) -> None:
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        mode = _AUTORESET.get(autoreset_mode, autoreset_mode)
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(f"autoreset_mode must be 'next_step' or 'same_step', got {autoreset_mode!r}")
        self.setup = TaskSetup(task, **setup_kwargs)  # the keywords of textenv.core.TaskSetup
        self.num_envs = int(num_envs)
        self.render_mode = render_mode
        self.dense_reward = dense_reward
        self.metadata = {"render_modes": ["ansi", "rgb_array"], "autoreset_mode": mode}
        self.single_observation_space = self.setup.observation_space()
        self.single_action_space = self.setup.action_space()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = spaces.MultiDiscrete(np.full(self.num_envs, self.setup.vocab_size))
        b, length = self.num_envs, self.setup.length
        self._ids = np.zeros((b, length), dtype=np.int64)
        self._mask = np.zeros((b, length), dtype=np.int8)
        self._n_gen = np.zeros(b, dtype=np.int64)
        self._index = np.zeros(b, dtype=np.int64)
        self._needs_reset = np.zeros(b, dtype=bool)
        self._potential = np.zeros(b, dtype=np.float64)
        self._rngs: list[np.random.Generator] | None = None
        self._rows = np.arange(b)
        self._turns = [TurnState() for _ in range(b)]
        if self.setup.multi_turn:
            check_turn_task(self.setup, dense_reward)

    @property
    def tokenizer(self) -> Any:
        return self.setup.tokenizer

    def _obs(self) -> dict[str, np.ndarray]:
        return {"input_ids": self._ids.copy(), "attention_mask": self._mask.copy()}

    def _reset_one(self, i: int, index: int | None = None) -> dict[str, Any]:
        if index is None:
            index = int(self._rngs[i].integers(len(self.setup.examples)))
        enc = self.setup.encode(index)
        self.setup.write_prompt(self._ids[i], self._mask[i], enc)
        self._index[i] = index
        self._n_gen[i] = 0
        self._potential[i] = 0.0
        self._needs_reset[i] = False
        self._turns[i] = TurnState()
        return {"index": index, "prompt": enc.text, "prompt_truncated": enc.truncated}

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        # Every seed and option is checked, and every prompt drawn and encoded, before any sub-env is
        # reseeded or written: a refused reset leaves all of them, generators included, as they were.
        seeds = self._check_seeds(seed)
        options = dict(options or {})
        unknown = sorted(set(options) - {"index"})
        if unknown:
            raise ValueError(f"unknown reset options {unknown}; the only option is 'index'")
        indices: list[int | None] = [None] * self.num_envs
        if "index" in options:
            raw = np.asarray(options["index"]).reshape(-1).tolist()
            if len(raw) != self.num_envs:
                raise ValueError(f"options['index'] needs {self.num_envs} indices, got {len(raw)}")
            indices = [self.setup.check_index(i) for i in raw]
        rngs = [seeding.np_random(s)[0] if s is not None or self._rngs is None else copy.deepcopy(self._rngs[i])
                for i, s in enumerate(seeds)]
        drawn = [int(rngs[i].integers(len(self.setup.examples))) if index is None else index
                 for i, index in enumerate(indices)]
        for index in drawn:
            self.setup.encode(index)  # cached: a prompt that cannot be encoded fails here, before any write
        self._rngs = rngs
        infos: dict[str, Any] = {}
        for i in range(self.num_envs):
            infos = self._add_info(infos, self._reset_one(i, drawn[i]), i)
        return self._obs(), infos

    def _check_seeds(self, seed: Any) -> list[int | None]:
        """One seed per sub-env from ``reset(seed=...)``: ``None``, an int ``s`` (sub-env ``i`` gets
        ``s + i``) or a sequence of ``num_envs`` ints or ``None``s, each checked."""
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)):
            first = check_seed(seed)
            return [first + i for i in range(self.num_envs)]
        if isinstance(seed, (str, bytes)) or not isinstance(seed, (Sequence, np.ndarray)):
            raise TypeError(f"reset(seed=...) takes an int, None or {self.num_envs} of them, "
                            f"got {type(seed).__name__} {seed!r}")
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"reset(seed=...) needs {self.num_envs} seeds, got {len(seeds)}")
        return [check_seed(s, f"seed[{i}]") for i, s in enumerate(seeds)]

    def _check_actions(self, actions: Any) -> np.ndarray:
        arr = np.asarray(actions)
        if arr.shape != (self.num_envs,):
            raise ValueError(f"actions must have shape ({self.num_envs},), got {arr.shape}")
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"actions must be integer token ids, got dtype {arr.dtype}")
        bad = (arr < 0) | (arr >= self.setup.vocab_size)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"action {arr[i]} for sub-env {i} is out of range: token ids are in [0, {self.setup.vocab_size})"
            )
        return arr.astype(np.int64)

    def step(self, actions: Any) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._rngs is None:
            raise RuntimeError("step() called before reset()")
        tokens = self._check_actions(actions)
        if self.setup.multi_turn:
            return self._step_turns(tokens)
        setup = self.setup
        active = ~self._needs_reset
        eos = active & (tokens == setup.eos_token_id)
        writes = active & ~eos
        new_n = self._n_gen + writes
        truncated = writes & (new_n >= setup.max_new_tokens)
        done = eos | truncated
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        infos: dict[str, Any] = {}
        scored = np.flatnonzero(active if self.dense_reward else done)
        if len(scored):
            # Score before writing anything: a reward that raises leaves every sub-env as it was.
            p = setup.max_prompt_tokens
            completions = []
            for i in scored:
                gen = self._ids[i, p:p + self._n_gen[i]].tolist()
                if writes[i]:
                    gen.append(int(tokens[i]))
                completions.append(setup.completion(int(self._index[i]), gen, ended_with_eos=bool(eos[i])))
            totals, parts = setup.score(completions)
            totals_arr = np.asarray(totals)
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused just below
                rewards[scored] = totals_arr - self._potential[scored] if self.dense_reward else totals_arr
            check_dense(rewards[scored])
            self._potential[scored] = totals_arr
        cols = setup.max_prompt_tokens + self._n_gen
        w = np.flatnonzero(writes)
        self._ids[w, cols[w]] = tokens[w]
        self._mask[w, cols[w]] = 1
        self._n_gen = new_n
        final = {}
        for j, i in enumerate(scored):
            if done[i]:
                final[int(i)] = setup.final_info(
                    int(self._index[i]), completions[j], totals[j], {k: v[j] for k, v in parts.items()}
                )
        obs, infos = self._autoreset(final, done, infos)
        return obs, rewards, eos.copy(), truncated.copy(), infos

    def _step_turns(self, tokens: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray,
                                                        dict[str, Any]]:
        """A step of a multi-turn task (:mod:`textenv.turns`): most rows append their token in one
        numpy assignment; the rows whose agent turn ends are planned one by one, scored in one batched
        reward call, then get the other side's next turn written after their EOS."""
        setup = self.setup
        p = setup.max_prompt_tokens
        active = ~self._needs_reset
        starts = np.asarray([t.start for t in self._turns])
        ending = active & ends_turn(setup, tokens, self._n_gen - starts, self._n_gen)
        rows = np.flatnonzero(ending)
        moves = [plan_move(setup, self._turns[i], int(self._index[i]), self._ids[i, p:p + self._n_gen[i]].tolist(),
                           int(tokens[i])) for i in rows]
        # scored before any row is written: a reward that raises leaves every sub-env as it was
        scored = [j for j, m in enumerate(moves) if m.scored is not None]
        totals, parts = setup.score([moves[j].scored for j in scored]) if scored else ([], {})
        slot = {j: s for s, j in enumerate(scored)}
        plain = np.flatnonzero(active & ~ending)
        self._ids[plain, p + self._n_gen[plain]] = tokens[plain]
        self._mask[plain, p + self._n_gen[plain]] = 1
        self._n_gen[plain] += 1
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        infos: dict[str, Any] = {}
        final: dict[int, dict[str, Any]] = {}
        for j, (i, move) in enumerate(zip(rows, moves, strict=True)):
            n = int(self._n_gen[i])
            self._ids[i, p + n:p + n + len(move.write)] = move.write
            self._mask[i, p + n:p + n + len(move.write)] = 1
            self._n_gen[i] = n + len(move.write)
            if move.completion is None:  # a token that might have closed a tool call and did not
                continue
            s = slot.get(j)  # None: a tool call's turn, worth 0
            total = 0.0 if s is None else totals[s]
            info = turn_info(setup, self._turns[i], int(self._index[i]), move, total,
                             {} if s is None else {k: v[s] for k, v in parts.items()}, n)
            rewards[i] = total
            terminated[i], truncated[i] = move.terminated, move.truncated
            if move.terminated or move.truncated:
                final[int(i)] = info
            else:
                infos = self._add_info(infos, info, int(i))
        obs, infos = self._autoreset(final, terminated | truncated, infos)
        return obs, rewards, terminated, truncated, infos

    def _autoreset(self, final: dict[int, dict[str, Any]], done: np.ndarray,
                   infos: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Autoreset per ``autoreset_mode``: the step's observation and info dict, finished episodes'
        infos included (``final_info`` in same-step mode)."""
        resetting = np.flatnonzero(self._needs_reset)
        if self.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP:
            for i in resetting:
                infos = self._add_info(infos, self._reset_one(int(i)), int(i))
            for i, info in final.items():
                infos = self._add_info(infos, info, i)
            self._needs_reset = done.copy()
            return self._obs(), infos
        if final:
            final_obs = self._obs()
            final_info: dict[str, Any] = {}
            for i, info in final.items():
                final_info = self._add_info(final_info, info, i)
            infos["final_obs"] = np.full(self.num_envs, None, dtype=object)  # only finished rows get one
            for i in final:
                infos["final_obs"][i] = {k: v[i] for k, v in final_obs.items()}
            infos["_final_obs"] = done.copy()
            infos["final_info"] = final_info
            infos["_final_info"] = done.copy()
            for i in final:
                self._reset_one(i)
        return self._obs(), infos

    def render(self) -> tuple[str, ...] | tuple[np.ndarray, ...] | None:
        if self.render_mode is None or self._rngs is None:
            return None
        if self.render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {self.render_mode!r} is not supported; use None, 'ansi' or 'rgb_array'")
        p = self.setup.max_prompt_tokens
        texts = tuple(
            self.setup.encode(int(self._index[i])).text
            + self.setup.tokenizer.decode(self._ids[i, p:p + self._n_gen[i]].tolist(), skip_special_tokens=True)
            for i in self._rows
        )
        return texts if self.render_mode == "ansi" else tuple(text_image(t) for t in texts)


def policy_envs(env_id: str, model: str, num_envs: int, split: str = "train", tokenizer: Any = None,
                max_new_tokens: int | None = None, **env_kwargs: Any) -> VectorEnv:
    """The vector env a policy rolls out in, as every trainer and the eval suite build it: ``env_id``'s
    task on ``split``, speaking ``model``'s vocabulary (``tokenizer``, when given, is shared with the
    policy and other envs instead of loaded again), the ``"same_step"`` autoreset that
    ``agents.rollout.collect`` reads, the token budget when given (None: the task's) and any other env
    keyword (``reward``, ``turns``...)."""
    import gymnasium as gym

    kwargs = {**env_model_kwargs(model, tokenizer), **env_kwargs}
    if max_new_tokens:
        kwargs["max_new_tokens"] = max_new_tokens
    return gym.make_vec(env_id, num_envs=num_envs, split=split, autoreset_mode="same_step", **kwargs)
