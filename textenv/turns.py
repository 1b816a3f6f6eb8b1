"""Multi-turn episodes: what the other side inserts between the agent's turns, for both env classes.

A multi-turn env keeps one token per step, but an agent turn ends at EOS (or at ``max_turn_tokens``)
instead of the episode, and with tools also at a tool call's closing tag. :func:`other_side` then
decides, from the conversation so far, what the env inserts: the task's recorded reply
(``TextDialogue-v0``: the next turn of the other side, scored turn by turn), a tool's result (an env
made with ``tools=``: the call is run, the agent's turn is worth 0 and only the final answer, the
first turn without a call, is scored), or nothing (the episode ends). Unless the episode ends, the
env writes the EOS that closes the turn (the agent's own, or one of its own for a turn cut at the
limit or at a call) and the inserted turn, chat template included, into the observation, and the
episode goes on. :func:`plan_move` decides what a step does, before any scoring, so a reward that
raises leaves the env as it was; :func:`turn_info` commits it. Both envs call these and nothing
else, so they cannot disagree.

Layout: everything after the prompt (agent tokens and inserted ones) fills the
``max_new_tokens`` positions in order. When the next turn and one agent token no longer fit, the
episode is truncated at the end of the agent's turn (``info["truncated_by"] == "room"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from textenv.rewards import Completion
from textenv.tools import CLOSE, call_tool, find_call

__all__ = ["Move", "Reply", "TurnState", "check_turn_task", "ends_turn", "other_side", "plan_move", "tool_reply",
           "turn_info", "user_turn_ids"]

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
    inserted: list[tuple[str, str]] = field(default_factory=list)  # (role, text) inserted after each turn
    calls: list[dict[str, Any]] = field(default_factory=list)  # tool calls made: name, arguments, result, error
    tool_tokens: int = 0  # tokens the env wrote for tool turns (with the EOS it wrote to close a call)
    # the conversation after the prompt up to ``start`` as the tokenizer decodes it (special tokens and
    # template included): what the reward reads before the current turn, extended turn by turn
    context: str = ""

    def copy(self) -> TurnState:
        return TurnState(self.turn, self.start, list(self.texts), list(self.rewards), list(self.bounds),
                         dict(self.parts), list(self.inserted), list(self.calls), self.tool_tokens, self.context)


@dataclass(frozen=True)
class Reply:
    """What the other side inserts after an agent turn: its role (``"user"``, ``"tool"``), text and
    tokens (what the chat template puts after the agent's EOS, up to the next generation cue), and
    for a tool turn the call's record."""

    role: str
    text: str
    ids: tuple[int, ...]
    call: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Move:
    """What one step does: the tokens it appends after the prompt, the agent turn it ends and whether
    the episode ends. ``scored`` is what the reward scores for that turn (None: the turn is a tool
    call the episode goes on from, worth 0)."""

    write: tuple[int, ...]
    completion: Completion | None = None
    terminated: bool = False
    truncated: bool = False
    inserted: int = 0  # how many of ``write`` the env wrote (the closing EOS of a cut turn, the next turn)
    truncated_by: str | None = None  # "turn_limit", "room", "tool_calls"
    scored: Completion | None = None
    reply: Reply | None = None


def check_turn_task(setup: Any, dense_reward: bool) -> None:
    """Refuse what a multi-turn env cannot do, at construction."""
    if dense_reward:
        raise ValueError(f"dense_reward=True is not supported for the multi-turn task {setup.task.name!r}: "
                         "its reward scores whole turns")
    if setup.tools and setup.turns > 1:
        raise ValueError(f"tools= on the multi-turn task {setup.task.name!r} is not supported: an env either "
                         "inserts the task's recorded turns or tool results, not both")
    if setup.tools:
        return
    for ex in setup.examples[:1]:
        missing = [k for k in ("user_turns", "replies") if k not in ex.metadata]
        if missing:
            raise ValueError(f"multi-turn task {setup.task.name!r}: examples need metadata {missing}")


def _after_reply(setup: Any, role: str, content: str) -> str:
    """The text a chat template writes after an assistant message's EOS: a ``role`` message with
    ``content`` and the next generation cue (``"\\nUser: ...\\nAssistant:"`` without a template)."""
    tok = setup.tokenizer
    if not setup.use_chat:
        return f"\n{role.capitalize()}: {content}\nAssistant:"
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": _REPLY},
                {"role": role, "content": content}]
    system = setup.system_prompt()
    if system:
        messages.insert(0, {"role": "system", "content": system})
    full = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    after = full[full.index(_REPLY) + len(_REPLY):]
    eos = tok.eos_token or ""
    if not eos or not after.startswith(eos):
        raise ValueError(f"the chat template does not end an assistant message with the EOS token {eos!r}, "
                         "so a turn's end cannot be told apart; use chat_template=False")
    return after[len(eos):]


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
    text = _after_reply(setup, "user", user)
    ids = [int(t) for t in setup.tokenizer(text, add_special_tokens=False)["input_ids"]]
    cache[key] = ids
    return ids


def tool_reply(setup: Any, body: str, example: Any) -> Reply:
    """Run the call ``body`` with the env's tools and limits: the tool turn inserted after the agent's
    EOS, up to the cue for its next turn. The tokenizer's special tokens are removed from the result
    first (a tool cannot write an EOS, or any other control token, into the conversation), and the
    turn's text and the call's record hold the result as the agent reads it."""
    result = call_tool(body, setup.tool_table, example, setup.tool_limits)
    text = result.text
    for special in setup.tokenizer.all_special_tokens:
        text = text.replace(special, "")
    ids = setup.tokenizer(_after_reply(setup, "tool", text), add_special_tokens=False)["input_ids"]
    return Reply("tool", text, tuple(int(t) for t in ids), {**result.record(), "result": text})


def _user_text(example: Any, state: TurnState) -> str:
    users = [text for role, text in state.inserted if role == "user"]
    return users[-1] if users else example.text


def _at_limit(setup: Any, token: Any, turn_len: Any, n_gen: Any) -> Any:
    """Whether a step ends the agent's turn whatever it says: ``token`` is EOS, or it fills the turn
    (``turn_len`` tokens so far, ``max_turn_tokens``) or the layout (``n_gen`` tokens after the
    prompt so far, ``max_new_tokens``)."""
    return (np.equal(token, setup.eos_token_id) | (np.asarray(turn_len) + 1 >= setup.max_turn_tokens)
            | (np.asarray(n_gen) + 1 >= setup.max_new_tokens))


def ends_turn(setup: Any, token: Any, turn_len: Any, n_gen: Any) -> Any:
    """Whether a step may end the agent's turn: at a limit (:func:`_at_limit`), or, with tools, at a
    token that could close a call (its text holds ``>``; whether it does is :func:`plan_move`'s to
    check). Elementwise on arrays (the vector env's rows), or on one episode's ints."""
    ends = _at_limit(setup, token, turn_len, n_gen)
    if setup.tools:
        ends = ends | setup.may_close[np.asarray(token)]
    return ends


def _closes_call(setup: Any, turn_ids: Sequence[int]) -> bool:
    return setup.tokenizer.decode(list(turn_ids), skip_special_tokens=True).rstrip().endswith(CLOSE)


def other_side(setup: Any, state: TurnState, index: int, turn: Completion) -> Reply | str:
    """What the env inserts after the agent's turn ``turn``: a :class:`Reply`, or why the episode ends
    there: ``"end"`` (the task's last turn; with tools, an answer without a call) or ``"tool_calls"``
    (a call beyond ``max_tool_calls``). A call is run here, before anything is committed."""
    if setup.tools:
        body = find_call(turn.text)
        if body is None:
            return "end"
        if len(state.calls) >= setup.tool_limits.max_calls:
            return "tool_calls"
        return tool_reply(setup, body, setup.examples[index])
    k = state.turn
    if k + 1 >= setup.turns:
        return "end"
    example = setup.examples[index]
    return Reply("user", example.metadata["user_turns"][k], tuple(user_turn_ids(setup, index, k)))


def plan_move(setup: Any, state: TurnState, index: int, generated: Sequence[int], token: int) -> Move:
    """What ``token`` does to an episode whose tokens after the prompt are ``generated``."""
    eos = token == setup.eos_token_id
    written = [] if eos else [token]
    turn_ids = [*generated[state.start:], *written]
    limit = bool(_at_limit(setup, token, len(generated) - state.start, len(generated)))
    if not limit and not (setup.tools and _closes_call(setup, turn_ids)):
        return Move(tuple(written))
    n_after = len(generated) + len(written)
    full = not eos and n_after >= setup.max_new_tokens
    example = setup.examples[index]
    k = state.turn
    context = setup.encode(index).text + state.context
    replies = example.metadata.get("replies", ())
    c = Completion(prompt=context, text=setup.tokenizer.decode(turn_ids, skip_special_tokens=True),
                   token_ids=tuple(int(t) for t in turn_ids),
                   references=(replies[k],) if k < len(replies) else example.references,
                   metadata={**example.metadata, "turn": k, "user": _user_text(example, state)}, ended_with_eos=eos)
    # a turn that ends the episode holding a call is scored as an empty answer: the numbers in a call
    # are not an answer (a verifier would otherwise credit "expression": "84")
    final = replace(c, text="") if setup.tools and find_call(c.text) is not None else c
    if full:  # the layout is full: nothing more can be inserted, and no call is run
        return Move(tuple(written), c, truncated=True, truncated_by="room", scored=final)
    reply = other_side(setup, state, index, c)
    if isinstance(reply, str):
        cut = "tool_calls" if reply == "tool_calls" else None if eos else "turn_limit"
        return Move(tuple(written), c, terminated=cut is None, truncated=cut is not None, truncated_by=cut,
                    scored=final)
    inserted = [setup.eos_token_id, *reply.ids]  # the EOS closes the turn
    if n_after + len(inserted) + 1 > setup.max_new_tokens:  # no room for the next turn and one token
        return Move(tuple(written), c, truncated=True, truncated_by="room", scored=final)
    return Move((*written, *inserted), c, inserted=len(inserted) - eos, scored=None if setup.tools else c,
                reply=reply)


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
    if move.reply is not None:  # the episode goes on: the turn, its EOS and the reply join the context
        state.context += setup.tokenizer.decode([*c.token_ids, setup.eos_token_id, *move.reply.ids])
        state.inserted.append((move.reply.role, move.reply.text))
        if move.reply.call is not None:
            state.calls.append(dict(move.reply.call))
            state.tool_tokens += move.inserted
    k = state.turn
    state.turn += 1
    state.start = generated_before + len(move.write)
    info: dict[str, Any] = {"turn": k, "turn_text": c.text, "turn_reward": float(total),
                            "turn_parts": dict(parts), "turn_ended_with_eos": c.ended_with_eos,
                            "inserted_tokens": move.inserted}
    if move.reply is not None and move.reply.call is not None:
        info["tool_call"] = dict(move.reply.call)
    if move.terminated or move.truncated:
        info.update(_final_info(setup, state, index, move, total, parts))
    return info


def _final_info(setup: Any, state: TurnState, index: int, move: Move, total: float,
                parts: Mapping[str, float]) -> dict[str, Any]:
    info = setup.final_info(index, move.completion, total, parts)
    conversation = [{"role": "user", "content": setup.examples[index].text}]
    for j, text in enumerate(state.texts):
        conversation.append({"role": "assistant", "content": text})
        if j < len(state.inserted):
            role, content = state.inserted[j]
            conversation.append({"role": role, "content": content})
    info.update({"turns": list(state.texts), "turn_rewards": list(state.rewards),
                 # a list, not an array: a vector env's infos hold it per row however many turns each had
                 "turn_bounds": [tuple(b) for b in state.bounds], "return": float(sum(state.rewards)),
                 "return_parts": dict(state.parts), "conversation": conversation,
                 "truncated_by": move.truncated_by})
    if setup.tools:
        info.update({"tool_calls": len(state.calls), "tool_errors": sum(c["error"] for c in state.calls),
                     "tool_tokens": state.tool_tokens, "calls": [dict(c) for c in state.calls]})
    return info
