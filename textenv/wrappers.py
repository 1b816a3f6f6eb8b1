"""Text-level actions: an agent that writes whole replies (``generate``, vLLM, an API) on the
token-level envs, with the same reward and info.

    >>> import gymnasium as gym, textenv
    >>> from textenv.wrappers import TextActions
    >>> env = TextActions(gym.make("TextCount-v0", model="tiny"))
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(" 10 11 12 13 14 15 16")
    >>> terminated, info["reply_tokens"] > 0
    (True, True)
"""

from __future__ import annotations

import string
from typing import Any

import gymnasium as gym
from gymnasium import spaces

__all__ = ["REPLY_CHARS_PER_TOKEN", "TextActions"]

CHARSET = string.ascii_letters + string.digits + string.punctuation + " "
"""Characters ``action_space.sample()`` draws from; ``step`` accepts any string within the length limit."""

REPLY_CHARS_PER_TOKEN = 32
"""A reply may have this many characters per token the episode (or turn) has left, or the action
space's ``max_length`` if more; a longer one is refused before it is tokenised. A token is rarely
over 16 characters, so nothing the budget could hold is refused, and a 10 MB reply (once 21 s of
tokenising per step, all but a few tokens then dropped) costs nothing."""


class TextActions(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Whole replies as actions (``gymnasium.spaces.Text``), played token by token on the wrapped
    textenv env.

    ``step(reply)`` tokenises ``reply`` with the env's tokenizer (no special tokens added), steps
    the env once per token, then with EOS when the reply fits the token budget, so the episode ends
    as it would had a policy emitted those tokens. The reward is the sum of the token steps'
    rewards (the sparse reward at the end, or the dense rewards' sum: the same total); ``info`` is
    the last token step's, plus ``reply_tokens`` (tokens played) and ``dropped_tokens`` (those past
    the budget, or after an EOS inside the reply, which end the episode first).

    On a multi-turn task (``TextDialogue-v0``) a reply is one agent turn: the step returns when the
    turn ends (at its EOS, or at ``max_turn_tokens``, the rest dropped) with that turn's reward, and
    the observation then holds the other side's next turn (``info["turn"]``, ``info["turn_text"]``).

    An empty reply is an empty completion (only EOS is played). A reply that is not a string is a
    ``TypeError`` before any token is played, and one longer than :data:`REPLY_CHARS_PER_TOKEN` (32)
    characters per token left (``env.unwrapped.tokens_left()``; or than ``action_space.max_length``,
    if more) a ``ValueError`` before it is tokenised, the env unchanged; a reward that raises leaves the env as it was
    before the reply (no half-played reply: the wrapper takes ``env.unwrapped.snapshot()`` first and
    restores it), as the token env does for one token.
    Observations are the wrapped env's (fixed-size token arrays); ``info["prompt"]`` from
    ``reset`` holds the prompt text.
    """

    def __init__(self, env: gym.Env, max_length: int | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, max_length=max_length)  # env.spec can rebuild it
        gym.Wrapper.__init__(self, env)
        base = env.unwrapped
        if not hasattr(base, "setup"):
            raise TypeError(f"TextActions wraps a textenv env, got {type(base).__name__}")
        self._setup = base.setup
        # a token is rarely more than 16 characters: room for any reply the budget can hold
        self.action_space = spaces.Text(max_length=max_length or 16 * self._setup.max_new_tokens, min_length=0,
                                        charset=CHARSET)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if not isinstance(action, str):
            raise TypeError(f"a TextActions action is a reply string, got {type(action).__name__} {action!r}")
        base = self.env.unwrapped
        if not base.running:
            raise gym.error.ResetNeeded("step() called before reset() or after the episode ended; call reset()")
        left = base.tokens_left()
        limit = max(self.action_space.max_length, REPLY_CHARS_PER_TOKEN * left)
        if len(action) > limit:
            raise ValueError(f"reply has {len(action):,} characters, more than {left} tokens can hold: at most "
                             f"{limit:,} ({REPLY_CHARS_PER_TOKEN} per token left, or the action space's max_length); "
                             "cut it before stepping (generate at most that many tokens)")
        ids = self._setup.tokenizer(action, add_special_tokens=False)["input_ids"] if action else []
        tokens = [*ids, self._setup.eos_token_id]
        saved = base.snapshot()
        total, played = 0.0, 0
        try:
            for token in tokens:
                obs, reward, terminated, truncated, info = self.env.step(int(token))
                total += float(reward)
                played += 1
                if terminated or truncated or "turn" in info:  # a multi-turn env ended the agent's turn
                    break
        except Exception:
            base.restore(saved)
            raise
        reply = min(played, len(ids))
        return obs, total, terminated, truncated, {**info, "reply_tokens": reply, "dropped_tokens": len(ids) - reply}
