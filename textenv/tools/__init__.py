"""Tools an agent calls from its turn: a small table of built-ins, plus any typed Python callable.

>>> import gymnasium as gym, textenv
>>> env = gym.make("TextReasoning-v0", model="tiny", tools=["calculator"])  # doctest: +SKIP

``TOOLS`` maps a built-in's name to its ``"module:function"``, imported when resolved (as
:data:`textenv.rewards.REWARDS`), so importing this package loads neither numpy nor scikit-learn.
A user's own tool is a callable in the same list: ``tools=["calculator", my_fn]``
(:func:`textenv.tools.base.as_tool` says what it needs).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from textenv.tools.base import Tool, as_tool, describe, schema
from textenv.tools.calls import CLOSE, OPEN, ToolLimits, ToolResult, call_tool, find_call

__all__ = ["CLOSE", "OPEN", "TOOLS", "Tool", "ToolLimits", "ToolResult", "as_tool", "call_tool", "describe",
           "find_call", "resolve_tools", "schema"]

TOOLS: dict[str, str] = {
    "calculator": "textenv.tools.calculator:calculator",
    "search": "textenv.tools.search:search",
}
"""Built-in tools: short name -> ``"module:function"``."""


def resolve_tools(spec: Any) -> tuple[Tool, ...]:
    """Tools from a list of built-in names, callables and :class:`Tool` records (order kept, as the
    prompt lists them; an empty list is no tools). A one-line error names an unknown name, a duplicate or
    anything else."""
    if isinstance(spec, (str, Tool)) or callable(spec):
        spec = [spec]
    if not isinstance(spec, Sequence):
        raise ValueError(f"tools must be a list of tool names {sorted(TOOLS)} or callables, got {spec!r}")
    out: list[Tool] = []
    for item in spec:
        if isinstance(item, str):
            if item not in TOOLS:
                raise ValueError(f"unknown tool {item!r}; the built-in tools are {sorted(TOOLS)} (or pass a callable)")
            module, _, attr = TOOLS[item].partition(":")
            item = getattr(importlib.import_module(module), attr)
        out.append(as_tool(item))
    names = [t.name for t in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"tools {dup} are given twice; each tool name appears once")
    return tuple(out)
