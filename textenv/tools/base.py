"""A tool is a plain typed Python callable; its name, docstring and typed parameters are what the
agent reads about it.

:func:`as_tool` reads them off the function, so a user's tool needs no wrapper class::

    def lookup(word: str) -> str:
        \"\"\"The dictionary definition of one English word.\"\"\"
        ...

    gym.make("TextQA-v0", tools=[lookup])

A parameter named ``example`` is not shown to the agent: the env passes the episode's
:class:`textenv.tasks.Example` there, which is how the built-in ``search`` reads the passage of the
question being asked.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Tool", "as_tool", "describe", "schema"]

_TYPES: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_MAX_DESCRIPTION = 1000  # characters: a tool's description sits in every prompt


@dataclass(frozen=True)
class Tool:
    """A callable the agent can call: ``fn(**arguments)`` (plus ``example=`` when ``takes_example``).

    ``parameters`` maps each argument the agent gives to its type (``str``, ``int``, ``float`` or
    ``bool``), in signature order; ``required`` names those without a default."""

    name: str
    fn: Callable[..., Any]
    description: str
    parameters: Mapping[str, type]
    required: tuple[str, ...]
    takes_example: bool = False


def as_tool(obj: Any) -> Tool:
    """A :class:`Tool` from a typed, documented callable (or a Tool, returned as is). Refused, naming
    the problem: no docstring (it is the agent's only description), a parameter without a ``str``,
    ``int``, ``float`` or ``bool`` annotation, ``*args``/``**kwargs``, positional-only parameters."""
    if isinstance(obj, Tool):
        return obj
    if not callable(obj):
        raise TypeError(f"a tool must be a callable or a textenv.tools.Tool, got {type(obj).__name__} {obj!r}")
    name = getattr(obj, "__name__", "")
    if not _NAME.fullmatch(name):
        raise ValueError(f"tool {obj!r}: its name {name!r} must be a Python identifier of at most 64 characters "
                         "(the agent calls it by name)")
    doc = (inspect.getdoc(obj) or "").strip()
    if not doc:
        raise ValueError(f"tool {name!r} has no docstring: the docstring is the agent's description of the tool")
    description = " ".join(doc.split("\n\n")[0].split())[:_MAX_DESCRIPTION]
    try:
        hints = typing.get_type_hints(obj)
    except Exception as exc:  # an annotation that does not resolve
        raise ValueError(f"tool {name!r}: its type hints do not resolve: {exc}") from None
    params: dict[str, type] = {}
    required: list[str] = []
    takes_example = False
    for p in inspect.signature(obj).parameters.values():
        if p.name == "example":
            takes_example = True
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            raise ValueError(f"tool {name!r}: parameter {p.name!r} must be a plain named parameter (the agent "
                             "passes arguments by name)")
        kind = hints.get(p.name)
        if kind not in _TYPES:
            raise ValueError(f"tool {name!r}: parameter {p.name!r} needs a type hint str, int, float or bool, "
                             f"got {kind!r}")
        params[p.name] = kind
        if p.default is p.empty:
            required.append(p.name)
    return Tool(name, obj, description, params, tuple(required), takes_example)


def schema(tool: Tool) -> dict[str, Any]:
    """The tool as a JSON-schema function description (the shape OpenAI-style tool lists use)."""
    return {"name": tool.name, "description": tool.description,
            "parameters": {"type": "object",
                           "properties": {k: {"type": _TYPES[t]} for k, t in tool.parameters.items()},
                           "required": list(tool.required)}}


def describe(tools: Sequence[Tool]) -> str:
    """What the prompt tells the agent: the call format and each tool's schema."""
    listed = "\n".join(json.dumps(schema(t)) for t in tools)
    return ("You can call tools. To call one, write\n"
            '<tool_call>{"name": "TOOL", "arguments": {...}}</tool_call>\n'
            "and stop: the result comes back in a tool message. Call tools to get facts and numbers you "
            "do not know, then reply with the final answer and no call.\n"
            f"<tools>\n{listed}\n</tools>")
