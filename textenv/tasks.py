"""Tasks: the record an env's prompts, references and default reward come from, and how a
registration names one.

A task is a plain :class:`Task` record built by a function; the built-in ones (``summarize``,
``sentiment``, ``reasoning``, ``qa``, ``dialogue``, ``count``) are in :mod:`textenv.task_factories`.
The env takes the function's ``"module:function"`` path from its Gymnasium registration and passes
it the task's own keyword arguments (``aspects=``, ``dataset=``...), so there is no task registry
beyond Gymnasium's: :func:`env_spec` finds a registration, :func:`task_of` builds its task,
:func:`setup_kwargs_of` reads the env's own keywords off it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from textenv.keywords import ENV_KEYWORDS, SETUP_OPTIONS

__all__ = ["SPLITS", "Example", "Preference", "Task", "env_spec", "first_third", "resolve_task", "setup_kwargs_of",
           "task_of"]

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Example:
    """One prompt: the task text (before the prompt template), its references and metadata."""

    text: str
    references: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Preference:
    """One synthetic preference: for example ``index`` of a split, the completion ``chosen`` should
    score above ``rejected``. ``kind`` says how the pair was made ("swap", "truncate"...), so a
    reward model's held-out accuracy can be reported per kind."""

    index: int
    chosen: str
    rejected: str
    kind: str


@dataclass(frozen=True)
class Task:
    """Everything an env needs to know about a task, except the tokenizer.

    ``load(split)`` returns the examples of a split. ``template`` formats an example's text into
    the user prompt (``{text}`` is replaced). ``chat`` wraps it in the tokenizer's chat template
    when the tokenizer has one (instruct models), with ``system`` as the system message.
    ``pairs(split, rng)`` (optional) returns the task's own synthetic preferences for reward-model
    training (:class:`Preference`); the reward-model trainer adds pairs of a policy's samples
    ranked by the task's reward, which need no task code.

    Multi-turn tasks (``turns > 1``): ``Example.text`` is the other side's opening turn,
    ``metadata["user_turns"]`` its next ``turns - 1`` turns (the env inserts the k-th after the
    agent's k-th turn ends) and ``metadata["replies"]`` the real reply of each agent turn (that
    turn's reference); the reward scores each agent turn (:class:`textenv.core.TaskSetup`).
    """

    name: str
    load: Callable[[str], list[Example]]
    reward: Any
    template: str = "{text}"
    chat: bool = True
    system: str | None = None
    max_prompt_tokens: int = 256
    max_new_tokens: int = 48
    pairs: Callable[[str, np.random.Generator], list[Preference]] | None = None
    metrics: tuple[str, ...] = ()  # the eval suite's extra local metrics ("squad": exact_match and f1)
    turns: int = 1  # agent turns per episode; > 1: the env inserts the other side's turns (dialogue)
    max_turn_tokens: int | None = None  # an agent turn ends at this many tokens (None: max_new_tokens)
    # with_tools(example, tool_names): how an example reads when the env has these tools (QA with
    # ``search``: the question alone, the passage reachable through the tool); None: unchanged
    with_tools: Callable[[Example, frozenset[str]], Example] | None = None
    # tool_calls(example, tool_names): the calls a demonstration makes before it answers with the
    # reference (SFT on tool episodes, :func:`agents.sft.tool_conversation`); None skips the example
    tool_calls: Callable[[Example, frozenset[str]], list[dict[str, Any]] | None] | None = None


def resolve_task(task: Task | str | Callable[..., Task], **kwargs: Any) -> Task:
    """A :class:`Task` from a Task, a factory, or a ``"module:function"`` path, with ``kwargs``."""
    if isinstance(task, Task):
        if kwargs:
            raise TypeError(f"unexpected task keyword arguments {sorted(kwargs)} for a built Task")
        return task
    if isinstance(task, str):
        module, _, attr = task.partition(":")
        if not attr:
            raise ValueError(f"task {task!r} must be a Task or a 'module:function' path")
        task = getattr(importlib.import_module(module), attr)
    try:
        built = task(**kwargs)
    except TypeError as exc:
        raise TypeError(f"bad keyword argument for task {getattr(task, '__name__', task)}: {exc}") from exc
    if not isinstance(built, Task):
        raise TypeError(f"task factory returned {type(built).__name__}, expected Task")
    return built


def env_spec(env_id: str) -> Any:
    """The Gymnasium spec of an env id, as ``gym.make`` finds it: ``"module:Env-vN"`` imports
    ``module`` first (where a user's task registers itself), then looks ``Env-vN`` up. A one-line
    ``ValueError`` names an id that is not registered or a module that does not import."""
    import gymnasium as gym

    import textenv

    module, sep, name = env_id.rpartition(":")
    if sep:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"env id {env_id!r}: cannot import {module!r} ({exc})") from exc
    try:
        return gym.spec(name)
    except gym.error.Error as exc:
        hint = "" if sep else " or 'module:Env-vN' (the module registers it on import)"
        raise ValueError(f"{env_id!r} is not a registered env id; expected one of {textenv.ENV_IDS}{hint}") from exc


def setup_kwargs_of(env_id: str) -> dict[str, Any]:
    """The keywords of ``env_id``'s registration that configure the env around its task (``tools``,
    ``max_new_tokens``, ``reward``...: :data:`textenv.keywords.SETUP_OPTIONS`), for code that builds a
    :class:`textenv.core.TaskSetup` from an id without making the env (SFT): ``TextReasoningTools-v0``'s
    demonstrations need its tools."""
    return {k: v for k, v in env_spec(env_id).kwargs.items() if k in SETUP_OPTIONS}


def task_of(env_id: str) -> Task:
    """The :class:`Task` a registered env id builds (``"TextSentiment-v0"`` -> the sentiment task),
    with the task keywords of its registration (those not in :data:`textenv.keywords.ENV_KEYWORDS`);
    the one way agents and evals get a task from an id."""
    kwargs = dict(env_spec(env_id).kwargs)
    if "task" not in kwargs:
        raise ValueError(f"{env_id!r} is registered but not a textenv id (no 'task' in its kwargs)")
    task = kwargs.pop("task")
    return resolve_task(task, **{k: v for k, v in kwargs.items() if k not in ENV_KEYWORDS})


def first_third(text: str) -> str:
    """The first third of ``text``'s words (at least one): the truncated side of a brevity pair."""
    words = text.split()
    return " ".join(words[: max(1, len(words) // 3)])
