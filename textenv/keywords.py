"""Which keywords of a registration configure the env, and which go to its task.

A textenv registration holds ``task`` plus one flat ``kwargs`` mapping: the env's own keywords
(``split``, ``tools``, ``max_new_tokens``...) beside the task's (``difficulty``, ``aspects``...).
Code that reads a registration without making the env (:func:`textenv.tasks.task_of`,
:func:`textenv.tasks.setup_kwargs_of`) sorts them with these sets, declared here, below both
:mod:`textenv.core` and :mod:`textenv.tasks`, so neither imports the other to read a signature.
``tests/test_tasks.py`` checks them against the signatures of :class:`textenv.core.TaskSetup` and
:class:`textenv.env.TextEnv`, so the two cannot drift apart.
"""

from __future__ import annotations

__all__ = ["ENV_KEYWORDS", "SETUP_KEYWORDS", "SETUP_OPTIONS"]

SETUP_OPTIONS = frozenset({
    "reward", "max_prompt_tokens", "max_new_tokens", "prompt_template", "chat_template",
    "tools", "max_tool_calls", "tool_timeout", "max_tool_result_chars",
})
"""The keywords that configure an env around its task (its reward, budgets, templates and tools):
what a registration fixes for every use of an id (``TextReasoningTools-v0``'s calculator)."""

SETUP_KEYWORDS = SETUP_OPTIONS | {"split", "model", "tokenizer"}
""":class:`textenv.core.TaskSetup`'s keywords after ``task``: the options, plus the split and the
tokenizer, which the code that makes the env chooses."""

ENV_KEYWORDS = SETUP_KEYWORDS | {"dense_reward", "render_mode"}
""":class:`textenv.env.TextEnv`'s keywords after ``task``; any other registration keyword is the task's."""
