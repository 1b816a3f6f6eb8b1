"""The reward contract: one typed record per completion, a batched callable, named parts.

A reward is any callable ``reward(completions: Sequence[Completion]) -> list[float]``. Batching is
the point: ROUGE, a classifier or a reward model score a whole vector env's finished episodes in one
call. A reward that has named parts (``combine`` builds one) also exposes ``parts(completions) ->
dict[str, list[float]]``; the env reports those parts in ``info`` and agents log them as
``rewards/<name>/mean``.

``score`` is the one place that calls a reward: it checks the result (length, finite real
numbers) and turns any failure into a :class:`RewardError` naming the reward, so a bad reward never
leaves an env half-stepped. A score is a real number: a Python ``int`` or ``float``, a NumPy number
or a 0-d array/tensor holding one. Strings (``"7"``), booleans, ``None`` and containers are refused,
not coerced, and so is a result that is not a sequence (a dict, a string, a set): ``float("7")``
would make a bug look like a reward.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["Completion", "Reward", "RewardError", "reward_name", "score", "to_scores"]


@dataclass(frozen=True)
class Completion:
    """One finished generation, as a reward sees it.

    ``text`` is the completion cut at the first EOS (what follows an EOS is never scored).
    ``references`` holds every acceptable reference (ROUGE takes the best match); ``reference``
    is the first of them, or ``None`` for tasks without references. ``metadata`` carries
    task-specific fields (the verifier's entry for a reasoning task, the target for a synthetic one).
    """

    prompt: str
    text: str
    token_ids: tuple[int, ...] = ()
    references: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    ended_with_eos: bool = True

    @property
    def reference(self) -> str | None:
        return self.references[0] if self.references else None


@runtime_checkable
class Reward(Protocol):
    """Anything with ``__call__(completions) -> list[float]``: a function, a lambda, a class."""

    def __call__(self, completions: Sequence[Completion]) -> list[float]: ...


class RewardError(RuntimeError):
    """A reward raised, returned the wrong number of scores, or returned a non-finite score."""


def reward_name(reward: Callable[..., Any]) -> str:
    """A readable name for logs and error messages: ``name`` attribute, function or class name."""
    name = getattr(reward, "name", None)
    if isinstance(name, str) and name:
        return name
    return getattr(reward, "__name__", None) or type(reward).__name__


def _real(x: Any) -> float:
    if getattr(x, "ndim", None) == 0 and hasattr(x, "item"):  # a 0-d NumPy array or torch tensor
        x = x.item()
    if isinstance(x, bool) or type(x).__name__ == "bool_" or not isinstance(x, numbers.Real):
        raise TypeError(f"a score must be a real number, got {type(x).__name__} {x!r}")
    return float(x)


def to_scores(values: Any, name: str = "reward") -> list[float]:
    """``values`` (what a reward returned) as a list of floats, or a :class:`TypeError` saying why
    not: it must be a list, tuple, 1-d array or tensor of real numbers (see the module docstring)."""
    if isinstance(values, (str, bytes, Mapping, set, frozenset)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must return a sequence of numbers, got {type(values).__name__}")
    if getattr(values, "ndim", 1) != 1:
        raise TypeError(f"{name} must return a 1-d sequence of numbers, got shape {tuple(values.shape)}")
    return [_real(x) for x in values]


def score(
    reward: Callable[[Sequence[Completion]], Sequence[float]],
    completions: Sequence[Completion],
) -> tuple[list[float], dict[str, list[float]]]:
    """Call ``reward`` on a batch and return (totals, parts), both checked.

    Parts come from ``reward.parts`` when the reward has it (a weighted ``combine``); otherwise the
    reward is its own single part. Raises :class:`RewardError` naming the reward on an exception,
    a wrong-length result or a NaN/inf score; nothing is mutated before the check passes.
    """
    name = reward_name(reward)
    if not completions:
        return [], {}
    try:
        if hasattr(reward, "parts"):
            raw = reward.parts(completions)
            if not isinstance(raw, Mapping):
                raise TypeError(f"parts() must return a dict of score lists, got {type(raw).__name__}")
            parts = {k: to_scores(v, f"part {k!r}") for k, v in raw.items()}
            totals = to_scores(reward.total(parts)) if hasattr(reward, "total") else None
            if totals is None:
                totals = to_scores(reward(completions))
        else:
            totals = to_scores(reward(completions))
            parts = {name: totals}
    except RewardError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of user code is re-raised with its name
        raise RewardError(f"reward {name!r} raised {type(exc).__name__}: {exc}") from exc
    for part, values in {**parts, name: totals}.items():
        if len(values) != len(completions):
            raise RewardError(
                f"reward {part!r} returned {len(values)} scores for {len(completions)} completions"
            )
        bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
        if bad:
            raise RewardError(
                f"reward {part!r} returned a non-finite score ({values[bad[0]]}) for completion "
                f"{bad[0]} (text={completions[bad[0]].text[:60]!r}); rewards must be finite floats"
            )
    return totals, parts
