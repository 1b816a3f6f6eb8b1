"""Multi-turn episodes: the other side's turns inserted between the agent's, for both env classes.

A task with ``turns > 1`` (``TextDialogue-v0``) keeps one token per step, but an agent turn ends
at EOS (or at ``max_turn_tokens``) instead of the episode. The ending turn is scored on its own
(a :class:`Completion` whose prompt is the conversation so far and whose reference is the real
reply), and unless it was the last, the env writes the EOS that closes it (the agent's own, or one
of its own for a turn cut at the limit) and the next turn of the other side, chat template
included, into the observation, and the episode goes on. :func:`plan_move` decides what a step
does, before any scoring, so a reward that raises leaves the env as it was; :func:`turn_info`
commits it. Both envs call these and nothing else, so they cannot disagree.

Layout: everything after the prompt (agent tokens and inserted ones) fills the
``max_new_tokens`` positions in order. When the next turn and one agent token no longer fit, the
episode is truncated at the end of the agent's turn (``info["truncated_by"] == "room"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from textenv.rewards import Completion

__all__ = ["Move", "TurnState", "check_turn_task", "ends_turn", "plan_move", "turn_info", "user_turn_ids"]

_REPLY = "\x00reply\x00"


@dataclass
class TurnState:
    """Where one episode stands: finished agent turns and what they were."""

    turn: int = 0  # agent turns finished so far
    start: int = 0  # position (after the prompt) where the current agent turn began
    texts: list[str] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    bounds: list[tuple[int, int]] = field(default_factory=list)  # each agent turn's [start, end) positions
    parts: dict[str, float] = field(default_factory=dict)  # each reward part summed over the turns so far

    def copy(self) -> TurnState:
        return TurnState(self.turn, self.start, list(self.texts), list(self.rewards), list(self.bounds),
                         dict(self.parts))


@dataclass(frozen=True)
class Move:
    """What one step does: the tokens it appends after the prompt, the agent turn it ends (to score)
    and whether the episode ends."""

    write: tuple[int, ...]
    completion: Completion | None = None
    terminated: bool = False
    truncated: bool = False
    inserted: int = 0  # how many of ``write`` the env wrote (the closing EOS of a cut turn, the next turn)
    truncated_by: str | None = None  # "turn_limit", "room"


def check_turn_task(setup: Any, dense_reward: bool) -> None:
    """Refuse what a multi-turn env cannot do, at construction."""
    if dense_reward:
        raise ValueError(f"dense_reward=True is not supported for the multi-turn task {setup.task.name!r}: "
                         "its reward scores whole turns")
    for ex in setup.examples[:1]:
        missing = [k for k in ("user_turns", "replies") if k not in ex.metadata]
        if missing:
            raise ValueError(f"multi-turn task {setup.task.name!r}: examples need metadata {missing}")


def user_turn_ids(setup: Any, index: int, k: int) -> list[int]:
    """The tokens inserted after agent turn ``k`` (0-based) of example ``index`` ends, after its EOS:
    the other side's next turn and the cue for the agent's next one. With a chat template, exactly
    what the template puts between an assistant message's EOS and the next generation prompt; without
    one, ``"\\nUser: ...\\nAssistant:"``. Cached per (example, turn)."""
    cache = setup.turn_cache
    key = (index, k)
    if key in cache:
        return cache[key]
    example = setup.examples[index]
    turns = example.metadata["user_turns"]
    if k >= len(turns):
        raise ValueError(f"example {index} of {setup.task.name!r} has {len(turns)} inserted turns; "
                         f"turn {k + 1} of the agent needs one more (the conversation ended before the agent's turn)")
    user = turns[k]
    if not isinstance(user, str) or not user.strip():
        raise ValueError(f"example {index} of {setup.task.name!r}: inserted turn {k + 1} is empty")
    tok = setup.tokenizer
    if setup.use_chat:
        messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": _REPLY},
                    {"role": "user", "content": user}]
        if setup.task.system:
            messages.insert(0, {"role": "system", "content": setup.task.system})
        full = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        after = full[full.index(_REPLY) + len(_REPLY):]
        eos = tok.eos_token or ""
        if not eos or not after.startswith(eos):
            raise ValueError(f"the chat template does not end an assistant message with the EOS token {eos!r}, "
                             "so a turn's end cannot be told apart; use chat_template=False")
        text = after[len(eos):]
    else:
        text = f"\nUser: {user}\nAssistant:"
    ids = [int(t) for t in tok(text, add_special_tokens=False)["input_ids"]]
    cache[key] = ids
    return ids


def _user_text(example: Any, k: int) -> str:
    return example.text if k == 0 else example.metadata["user_turns"][k - 1]


def ends_turn(setup: Any, token: Any, turn_len: Any, n_gen: Any) -> Any:
    """Whether a step ends the agent's turn: ``token`` is EOS, or it fills the turn (``turn_len``
    tokens so far, ``max_turn_tokens``) or the layout (``n_gen`` tokens after the prompt so far,
    ``max_new_tokens``). Elementwise on arrays (the vector env's rows), or on one episode's ints."""
    return (np.equal(token, setup.eos_token_id) | (np.asarray(turn_len) + 1 >= setup.max_turn_tokens)
            | (np.asarray(n_gen) + 1 >= setup.max_new_tokens))


def plan_move(setup: Any, state: TurnState, index: int, generated: Sequence[int], token: int) -> Move:
    """What ``token`` does to an episode whose tokens after the prompt are ``generated``."""
    eos = token == setup.eos_token_id
    written = [] if eos else [token]
    if not ends_turn(setup, token, len(generated) - state.start, len(generated)):
        return Move(tuple(written))
    turn_ids = [*generated[state.start:], *written]
    n_after = len(generated) + len(written)
    full = not eos and n_after >= setup.max_new_tokens
    example = setup.examples[index]
    k = state.turn
    context = setup.encode(index).text + setup.tokenizer.decode(list(generated[:state.start]))
    replies = example.metadata["replies"]
    c = Completion(prompt=context, text=setup.tokenizer.decode(turn_ids, skip_special_tokens=True),
                   token_ids=tuple(int(t) for t in turn_ids),
                   references=(replies[k],) if k < len(replies) else example.references,
                   metadata={**example.metadata, "turn": k, "user": _user_text(example, k)}, ended_with_eos=eos)
    if k + 1 >= setup.turns:  # the last turn: a full layout is "room" here too, as for any turn
        return Move(tuple(written), c, terminated=eos, truncated=not eos,
                    truncated_by=None if eos else "room" if full else "turn_limit")
    if full:
        return Move(tuple(written), c, truncated=True, truncated_by="room")
    inserted = [setup.eos_token_id, *user_turn_ids(setup, index, k)]  # the EOS closes the turn
    if n_after + len(inserted) + 1 > setup.max_new_tokens:  # no room for the next turn and one reply token
        return Move(tuple(written), c, truncated=True, truncated_by="room")
    return Move((*written, *inserted), c, inserted=len(inserted) - eos)


def turn_info(setup: Any, state: TurnState, index: int, move: Move, total: float,
              parts: Mapping[str, float], generated_before: int) -> dict[str, Any]:
    """Commit a scored turn to ``state``; the step's info (the final info when the episode ends)."""
    c = move.completion
    end = state.start + len(c.token_ids)  # the agent's tokens of this turn (its EOS not counted)
    state.texts.append(c.text)
    state.rewards.append(float(total))
    state.bounds.append((state.start, end))
    for name, value in parts.items():
        state.parts[name] = state.parts.get(name, 0.0) + float(value)
    k = state.turn
    state.turn += 1
    state.start = generated_before + len(move.write)
    info: dict[str, Any] = {"turn": k, "turn_text": c.text, "turn_reward": float(total),
                            "turn_parts": dict(parts), "turn_ended_with_eos": c.ended_with_eos,
                            "inserted_tokens": move.inserted}
    if move.terminated or move.truncated:
        info.update(setup.final_info(index, c, total, parts))
        example = setup.examples[index]
        conversation = []
        for j, text in enumerate(state.texts):
            conversation += [{"role": "user", "content": _user_text(example, j)},
                             {"role": "assistant", "content": text}]
        info.update({"turns": list(state.texts), "turn_rewards": list(state.rewards),
                     "turn_bounds": np.asarray(state.bounds, dtype=np.int64), "return": float(sum(state.rewards)),
                     "return_parts": dict(state.parts),
                     "conversation": conversation, "truncated_by": move.truncated_by})
    return info
