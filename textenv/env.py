"""The token-level text-generation environment: one class for every task."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from textenv.core import TaskSetup, check_action, check_dense, check_seed
from textenv.render import text_image
from textenv.tasks import Task
from textenv.turns import TurnState, check_turn_task, plan_move, turn_info

__all__ = ["EpisodeSnapshot", "TextEnv"]


@dataclass(frozen=True)
class EpisodeSnapshot:
    """A :class:`TextEnv` episode's state, taken by :meth:`TextEnv.snapshot` and put back by
    :meth:`TextEnv.restore`; its arrays are read-only."""

    input_ids: np.ndarray  # the observation's arrays
    attention_mask: np.ndarray
    generated: tuple[int, ...]  # the tokens after the prompt so far (on a multi-turn task, both sides')
    index: int | None  # the example of the episode (None before the first reset)
    done: bool
    potential: float  # the reward so far, which dense_reward's next step is the change from
    turn: TurnState  # a multi-turn episode's turns so far (a copy, never the env's own)


def _frozen(array: np.ndarray) -> np.ndarray:
    copy = array.copy()
    copy.setflags(write=False)
    return copy


class TextEnv(gym.Env[dict[str, np.ndarray], int]):
    """Generate a completion for a prompt one token at a time.

    ## Description
    Each episode is one generation. ``reset`` draws a prompt from the task's split; each ``step``
    appends one token; the episode ends at EOS or at the token budget, and the decoded completion
    is scored by the task's reward (ROUGE, a verifier, sentiment, a reward model, any callable).
    The env holds a tokenizer, prompts and a reward, never a policy model: agents bring their own
    model (and their own KL penalty to a reference).

    ## Action Space
    ``Discrete(vocab_size)``: the next token id.

    ## Observation Space
    ``Dict(input_ids=Box(0, vocab_size-1, (L,), int64), attention_mask=Box(0, 1, (L,), int8))``
    with ``L = max_prompt_tokens + max_new_tokens``. The prompt is left-padded into the first
    ``max_prompt_tokens`` positions; generated tokens follow it; the rest is padding (mask 0).

    ## Rewards
    Sparse by default: 0 on every step but the last, which gets the task reward of the decoded
    completion (cut at EOS). With ``dense_reward=True`` each step gets the change in the task reward
    of the text so far (potential-based shaping; the rewards of an episode sum to its final task
    reward), at the cost of one reward call per step.

    ## Starting State
    A prompt drawn uniformly from the split with ``self.np_random``, or ``options={"index": i}``.

    ## Episode End
    Terminated when the action is the EOS token; truncated after ``max_new_tokens`` tokens. The
    final ``info`` carries ``text``, ``prompt``, ``reference``, ``references``, ``reward_parts``,
    ``num_tokens``, ``ended_with_eos`` and ``prompt_truncated``.

    ## Arguments
    - ``task``: a :class:`textenv.tasks.Task`, or a ``"module:function"`` path (set by registration).
    - ``split``: ``"train"``, ``"validation"`` or ``"test"``.
    - ``model``: whose tokenizer defines the action space: ``textenv.models.DEFAULT_MODEL``
      (default, SmolLM2-135M-Instruct), ``"tiny"`` or a local directory. ``tokenizer=`` passes a
      tokenizer object instead.
    - ``reward``: a reward name (``"rougeL"``), a ``"pkg.mod:fn"`` path, a callable, or a mapping
      ``{name: weight}`` (see :mod:`textenv.rewards`); default: the task's.
    - ``max_prompt_tokens``, ``max_new_tokens``, ``prompt_template`` (with ``{text}``, at most
      ``textenv.core.MAX_TEMPLATE_CHARS`` = 10,000 characters), ``chat_template`` (``True``/``False``:
      use the tokenizer's chat template or not; default ``None``: the task's choice).
    - ``dense_reward``: see Rewards. ``render_mode``: ``None``, ``"ansi"`` (the prompt and the text so
      far) or ``"rgb_array"`` (the same text drawn into an image, for ``RecordVideo`` and SB3's
      ``make_vec_env`` default); another mode is accepted, as Gymnasium does, but ``render()`` raises.
    - ``tools``: a list of built-in tool names (``"calculator"``, ``"search"``) and typed, documented
      callables the agent may call (:mod:`textenv.tools`, :mod:`textenv.turns`); ``max_tool_calls``
      (3) per episode, ``tool_timeout`` (2.0 s) per call, ``max_tool_result_chars`` (400).
    - any other keyword goes to the task (``aspects=`` for summaries, ``dataset=`` for reasoning).

    ## Version History
    - v0: initial version.

    >>> import gymnasium as gym, textenv
    >>> env = gym.make("TextCount-v0", model="tiny")
    >>> obs, info = env.reset(seed=0)
    >>> obs["input_ids"].shape
    (32,)
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        task: Task | str | Callable[..., Task],
        dense_reward: bool = False,
        render_mode: str | None = None,
        **setup_kwargs: Any,
    ) -> None:
        # split, model, tokenizer, reward, budgets, templates and the task's own keywords: the
        # signature of :class:`textenv.core.TaskSetup`, written once there for both envs
        self.setup = TaskSetup(task, **setup_kwargs)
        self.render_mode = render_mode
        self.dense_reward = dense_reward
        self.observation_space = self.setup.observation_space()
        self.action_space = self.setup.action_space()
        self._ids = np.zeros(self.setup.length, dtype=np.int64)
        self._mask = np.zeros(self.setup.length, dtype=np.int8)
        self._index: int | None = None
        self._generated: list[int] = []
        self._done = True
        self._potential = 0.0
        self._turn = TurnState()
        if self.setup.multi_turn:
            check_turn_task(self.setup, dense_reward)

    @property
    def tokenizer(self) -> Any:
        return self.setup.tokenizer

    @property
    def examples(self) -> list:
        return self.setup.examples

    def _obs(self) -> dict[str, np.ndarray]:
        return {"input_ids": self._ids.copy(), "attention_mask": self._mask.copy()}

    def reset(
        self, *, seed: int | None = None, options: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        # Seed and options are checked before the env reseeds, and the RNG is put back if the prompt
        # cannot be encoded: a refused reset leaves the env, its RNG included, as it was.
        seed = check_seed(seed)
        options = dict(options or {})
        unknown = sorted(set(options) - {"index"})
        if unknown:
            raise ValueError(f"unknown reset options {unknown}; the only option is 'index'")
        index = self.setup.check_index(options["index"]) if "index" in options else None
        rng, rng_seed = self._np_random, self._np_random_seed
        rng_state = rng.bit_generator.state if rng is not None else None
        super().reset(seed=seed)
        try:
            if index is None:
                index = int(self.np_random.integers(len(self.setup.examples)))
            enc = self.setup.encode(index)
        except BaseException:
            self._np_random, self._np_random_seed = rng, rng_seed
            if rng is not None:
                rng.bit_generator.state = rng_state
            raise
        self.setup.write_prompt(self._ids, self._mask, enc)
        self._index = index
        self._generated = []
        self._done = False
        self._potential = 0.0
        self._turn = TurnState()
        return self._obs(), {"index": index, "prompt": enc.text, "prompt_truncated": enc.truncated}

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self._index is None:
            raise gym.error.ResetNeeded("step() called before reset()")
        if self._done:
            raise gym.error.ResetNeeded("step() called after the episode ended; call reset()")
        token = check_action(action, self.setup.vocab_size)
        if self.setup.multi_turn:
            return self._step_turns(token)
        terminated = token == self.setup.eos_token_id
        generated = self._generated if terminated else [*self._generated, token]
        truncated = not terminated and len(generated) >= self.setup.max_new_tokens
        done = terminated or truncated
        reward, info = 0.0, {}
        if done or self.dense_reward:
            # Score before committing the step: a reward that raises leaves the env as it was.
            c = self.setup.completion(self._index, generated, ended_with_eos=terminated)
            totals, parts = self.setup.score([c])
            reward = totals[0] - self._potential if self.dense_reward else totals[0]
            check_dense([reward])
            if done:
                info = self.setup.final_info(self._index, c, totals[0], {k: v[0] for k, v in parts.items()})
            self._potential = totals[0]
        pos = self.setup.max_prompt_tokens + len(self._generated)
        if not terminated:
            self._ids[pos] = token
            self._mask[pos] = 1
        self._generated = generated
        self._done = done
        return self._obs(), float(reward), terminated, truncated, info

    def _step_turns(self, token: int) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """A step of a multi-turn task (:mod:`textenv.turns`): a token, or the end of an agent turn
        (scored, then the other side's next turn written into the observation)."""
        move = plan_move(self.setup, self._turn, self._index, self._generated, token)
        reward, info = 0.0, {}
        if move.completion is not None:  # scored before anything is written (a tool call's turn is worth 0)
            totals, parts = self.setup.score([move.scored]) if move.scored is not None else ([0.0], {})
            reward = totals[0]
            info = turn_info(self.setup, self._turn, self._index, move, reward, {k: v[0] for k, v in parts.items()},
                             len(self._generated))
        pos = self.setup.max_prompt_tokens + len(self._generated)
        self._ids[pos:pos + len(move.write)] = move.write
        self._mask[pos:pos + len(move.write)] = 1
        self._generated = [*self._generated, *move.write]
        self._done = move.terminated or move.truncated
        return self._obs(), float(reward), move.terminated, move.truncated, info

    @property
    def running(self) -> bool:
        """Whether an episode is running: ``reset`` was called and the episode has not ended since
        (``step`` raises ``ResetNeeded`` otherwise)."""
        return self._index is not None and not self._done

    def tokens_left(self) -> int:
        """How many more tokens the running episode (on a multi-turn task, the agent's current turn)
        takes before it is cut; 0 when none is running. :class:`textenv.wrappers.TextActions` bounds a
        reply's length with it before tokenising."""
        if not self.running:
            return 0
        n = len(self._generated)
        left = self.setup.max_new_tokens - n
        if self.setup.multi_turn:
            left = min(left, self.setup.max_turn_tokens - (n - self._turn.start))
        return left

    def snapshot(self) -> EpisodeSnapshot:
        """The episode's state as it is now, for :meth:`restore`: an agent that plays several steps as
        one move takes it back if a step raises (:class:`textenv.wrappers.TextActions` plays a reply all
        or nothing). Cheap: two arrays of the observation's length and the tokens so far."""
        return EpisodeSnapshot(_frozen(self._ids), _frozen(self._mask), tuple(self._generated), self._index,
                               self._done, self._potential, self._turn.copy())

    def restore(self, snapshot: EpisodeSnapshot) -> None:
        """Put the episode back as it was at :meth:`snapshot`: the same observation, tokens, turns and
        (with ``dense_reward``) reward so far, so the next steps give what they gave from there. The RNG
        is not part of it (only ``reset`` draws from it). A snapshot can be restored any number of times."""
        self._ids[:], self._mask[:] = snapshot.input_ids, snapshot.attention_mask
        self._generated, self._index, self._done = list(snapshot.generated), snapshot.index, snapshot.done
        self._potential, self._turn = snapshot.potential, snapshot.turn.copy()

    def render(self) -> str | np.ndarray | None:
        # An unsupported render_mode is accepted at construction, as Gymnasium does (it warns);
        # rendering with it fails.
        if self.render_mode is None:
            return None
        if self.render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {self.render_mode!r} is not supported; use None, 'ansi' or 'rgb_array'")
        if self._index is None:
            text = ""
        else:
            prompt = self.setup.encode(self._index).text
            text = f"{prompt}{self.setup.tokenizer.decode(self._generated, skip_special_tokens=True)}" + (
                "  [done]" if self._done else "")
        return text if self.render_mode == "ansi" else text_image(text)
