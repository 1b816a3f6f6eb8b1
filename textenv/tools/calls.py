"""A tool call in an agent's turn, parsed and run: whatever the agent wrote, the result is text.

The format (Hermes/Qwen style, which SmolLM2's instruct data also uses)::

    <tool_call>{"name": "calculator", "arguments": {"expression": "12*7"}}</tool_call>

A one-element JSON list around the object is accepted too. The turn ends at the closing tag.
:func:`call_tool` never raises for anything the agent wrote or a tool did: malformed JSON, an unknown
tool, wrong argument types, a call over :data:`MAX_CALL_CHARS`, a tool that raises or runs past its
time limit all become an ``"error: ..."`` result the agent reads in the next turn.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from textenv.tools.base import Tool

__all__ = ["CLOSE", "MAX_CALL_CHARS", "OPEN", "CallError", "ToolLimits", "ToolResult", "call_tool", "find_call",
           "parse_call", "run_tool"]

OPEN, CLOSE = "<tool_call>", "</tool_call>"
MAX_CALL_CHARS = 4000
"""The longest call body parsed, in characters; a 1 MB argument is refused before ``json.loads``."""


class CallError(ValueError):
    """What was wrong with a call, in words the agent reads."""


@dataclass(frozen=True)
class ToolLimits:
    """``max_calls`` per episode; each call's time limit in seconds; the longest result, in characters
    (a longer one is cut and says so)."""

    max_calls: int = 3
    timeout: float = 2.0
    max_result_chars: int = 400

    def __post_init__(self) -> None:
        if isinstance(self.max_calls, bool) or not isinstance(self.max_calls, int) or self.max_calls < 1:
            raise ValueError(f"max_tool_calls must be an integer >= 1, got {self.max_calls!r}")
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or not 0 < self.timeout <= 600:
            raise ValueError(f"tool_timeout must be a number of seconds in (0, 600], got {self.timeout!r}")
        chars = self.max_result_chars
        if isinstance(chars, bool) or not isinstance(chars, int) or not 1 <= chars <= 100_000:
            raise ValueError(f"max_tool_result_chars must be an integer in [1, 100000], got {chars!r}")


@dataclass(frozen=True)
class ToolResult:
    """One call's outcome: the text inserted as the tool turn and the record ``info["calls"]`` keeps."""

    text: str
    name: str | None
    arguments: Mapping[str, Any] | None
    error: bool

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": dict(self.arguments or {}), "result": self.text, "error": self.error}


def find_call(text: str) -> str | None:
    """The body of the last complete ``<tool_call>...</tool_call>`` in ``text``, or None (no call)."""
    end = text.rfind(CLOSE)
    if end < 0:
        return None
    start = text.rfind(OPEN, 0, end)
    return None if start < 0 else text[start + len(OPEN):end]


def parse_call(body: str, tools: Mapping[str, Tool]) -> tuple[Tool, dict[str, Any]]:
    """The tool a call names and its checked arguments (ints accepted for floats), or a
    :class:`CallError` saying what is wrong."""
    if len(body) > MAX_CALL_CHARS:
        raise CallError(f"the call is {len(body):,} characters long; at most {MAX_CALL_CHARS:,}")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise CallError(f'the call is not valid JSON ({str(exc)[:80]}); write {{"name": ..., "arguments": {{...}}}}'
                        ) from None
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise CallError('a call is one JSON object {"name": ..., "arguments": {...}}')
    extra = sorted(set(data) - {"name", "arguments"})
    if extra:
        raise CallError(f"unexpected keys {extra} in the call; it has only name and arguments")
    tool = tools.get(data["name"])
    if tool is None:
        raise CallError(f"unknown tool {data['name'][:64]!r}; the tools are {sorted(tools)}")
    args = data.get("arguments", {})
    if not isinstance(args, dict):
        raise CallError(f"arguments of {tool.name} must be a JSON object, got {type(args).__name__}")
    unknown = sorted(set(args) - set(tool.parameters))
    if unknown:
        raise CallError(f"{tool.name} has no argument {unknown[0][:64]!r}; its arguments are {list(tool.parameters)}")
    missing = [k for k in tool.required if k not in args]
    if missing:
        raise CallError(f"{tool.name} needs the argument {missing[0]!r}")
    checked = {}
    for key, value in args.items():
        kind = tool.parameters[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not kind:
            raise CallError(f"argument {key!r} of {tool.name} must be a {kind.__name__}, got {type(value).__name__}")
        checked[key] = value
    return tool, checked


def run_tool(tool: Tool, arguments: Mapping[str, Any], example: Any, timeout: float) -> str:
    """``tool.fn(**arguments)`` in a daemon thread, its result as text; a :class:`CallError` when it
    raises or runs past ``timeout`` seconds. Python cannot stop a thread, so a tool that never
    returns keeps its thread until the process exits; its result, should it come, is dropped."""
    box: dict[str, Any] = {}
    kwargs = {**arguments, **({"example": example} if tool.takes_example else {})}

    def target() -> None:
        try:
            box["value"] = _as_text(tool.fn(**kwargs))  # converted here: a __str__ can raise or hang too
        except BaseException as exc:  # noqa: BLE001 - any failure of a tool is a result the agent reads
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"textenv-tool-{tool.name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise CallError(f"{tool.name} took longer than its limit of {timeout:g} s")
    if "error" in box:
        exc = box["error"]
        raise CallError(f"{tool.name} failed: {type(exc).__name__}: {str(exc)[:200]}")
    return box["value"]


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def call_tool(body: str, tools: Mapping[str, Tool], example: Any, limits: ToolLimits) -> ToolResult:
    """Parse and run one call; every failure is an error result, never an exception."""
    name = args = None
    try:
        tool, args = parse_call(body, tools)
        name = tool.name
        text = run_tool(tool, args, example, limits.timeout)
        error = False
    except CallError as exc:
        text, error = f"error: {exc}", True
    if len(text) > limits.max_result_chars:
        text = text[:limits.max_result_chars] + " ...(cut)"
    return ToolResult(text, name, args, error)
