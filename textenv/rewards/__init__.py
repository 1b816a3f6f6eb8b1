"""Rewards for text envs: one flat table of built-ins, a ``"pkg.mod:attr"`` fallback, weighted sums.

>>> reward = resolve({"rouge1": 0.5, "length": 0.5})   # a weighted sum of two built-ins
>>> done = [Completion(prompt="Summarize: ...", text="the cat sat on the mat", references=("the cat sat on a mat",))]
>>> totals, parts = score(reward, done)                 # the total and each part, per completion
>>> [round(t, 4) for t in totals], {k: [round(x, 4) for x in v] for k, v in sorted(parts.items())}
([0.4167], {'length': [0.0], 'rouge1': [0.8333]})

``REWARDS`` maps a short name to a ``"module:attr"`` string, imported only when resolved (as
Gymnasium's string entry points), so importing this package loads neither torch nor nltk.
"""

from __future__ import annotations

import importlib
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from textenv.rewards.base import Completion, Reward, RewardError, reward_name, score, to_scores

__all__ = [
    "REWARDS",
    "Combined",
    "Completion",
    "Reward",
    "RewardError",
    "combine",
    "resolve",
    "reward_name",
    "score",
]

REWARDS: dict[str, str] = {
    "rouge1": "textenv.rewards.text:Rouge1",
    "rouge2": "textenv.rewards.text:Rouge2",
    "rougeL": "textenv.rewards.text:RougeL",
    "bleu": "textenv.rewards.text:Bleu",
    "chrf": "textenv.rewards.text:Chrf",
    "embedding": "textenv.rewards.embed:EmbeddingSimilarity",
    "bertscore": "textenv.rewards.embed:BertScore",
    "relevance": "textenv.rewards.embed:Relevance",
    "length": "textenv.rewards.text:LengthPenalty",
    "repetition": "textenv.rewards.text:RepetitionPenalty",
    "keyword": "textenv.rewards.text:Keyword",
    "verifier": "textenv.rewards.verifier:Verifier",
    "qa_f1": "textenv.rewards.qa:QAF1",
    "exact_match": "textenv.rewards.qa:ExactMatch",
    "classifier": "textenv.rewards.classifier:SequenceClassifier",
    "vader": "textenv.rewards.sentiment:Vader",
    "sentiment": "textenv.rewards.sentiment:SentimentClassifier",
    "increasing": "textenv.rewards.synthetic:IncreasingNumbers",
}
"""Built-in rewards: short name -> ``"module:attr"`` (a class, instantiated with kwargs)."""

RewardSpec = str | Reward | Mapping[Any, float]


def _import(entry_point: str) -> Any:
    """The object named by ``"pkg.mod:attr"`` (``attr`` may be dotted), or a clear ImportError."""
    module_name, sep, attr = entry_point.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"reward entry point {entry_point!r} is not of the form 'pkg.mod:attr'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"cannot import reward {entry_point!r}: module {module_name!r} failed to import ({exc})"
        ) from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ImportError(
                f"cannot import reward {entry_point!r}: {module_name!r} has no attribute {attr!r}"
            )
        obj = getattr(obj, part)
    return obj


def resolve(spec: RewardSpec, **kwargs: Any) -> Reward:
    """Turn a config value into a reward callable.

    - a name in ``REWARDS`` -> that class instantiated with ``kwargs``;
    - ``"pkg.mod:attr"`` -> a class is instantiated with ``kwargs``, a function used as is;
    - a callable -> returned as is;
    - a mapping ``{spec: weight}`` -> ``combine(spec)``.
    """
    if isinstance(spec, str):
        if spec in REWARDS:
            return _import(REWARDS[spec])(**kwargs)
        if ":" not in spec:
            raise ValueError(
                f"unknown reward {spec!r}; known rewards: {', '.join(sorted(REWARDS))} "
                "(or give an import path 'pkg.mod:attr')"
            )
        obj = _import(spec)
        if isinstance(obj, type):
            return obj(**kwargs)
        if not callable(obj):
            raise TypeError(f"reward {spec!r} is a {type(obj).__name__}, not a callable or class")
        _no_kwargs(spec, kwargs)
        return obj
    if isinstance(spec, Mapping):
        _no_kwargs(spec, kwargs)
        return combine(spec)
    if callable(spec):
        _no_kwargs(spec, kwargs)
        return spec
    raise TypeError(
        f"cannot make a reward from {spec!r} ({type(spec).__name__}); expected a name, "
        "'pkg.mod:attr', a callable or a {reward: weight} mapping"
    )


def _no_kwargs(spec: object, kwargs: Mapping[str, Any]) -> None:
    if kwargs:
        raise TypeError(
            f"reward {spec!r} is not a class, so it takes no arguments; got {sorted(kwargs)}"
        )


class Combined:
    """A weighted sum of rewards that reports each part (logged as ``rewards/<name>/mean``).

    ``parts`` calls every reward once on the batch; ``total`` weighs them. ``base.score`` uses the
    two separately so the env gets both without scoring twice.
    """

    def __init__(
        self, rewards: Sequence[tuple[str, Reward, float]], name: str = "combined"
    ) -> None:
        self.name = name
        self.rewards = tuple(rewards)
        self.weights = {part: weight for part, _, weight in self.rewards}

    def parts(self, completions: Sequence[Completion]) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for part, reward, _ in self.rewards:
            try:
                values = to_scores(reward(completions))
            except RewardError:
                raise
            except Exception as exc:  # noqa: BLE001 - re-raised naming the part that failed
                raise RewardError(
                    f"reward {self.name!r}: part {part!r} raised {type(exc).__name__}: {exc}"
                ) from exc
            if len(values) != len(completions):
                raise RewardError(
                    f"reward {self.name!r}: part {part!r} returned {len(values)} scores for "
                    f"{len(completions)} completions"
                )
            out[part] = values
        return out

    def total(self, parts: Mapping[str, Sequence[float]]) -> list[float]:
        n = len(next(iter(parts.values()))) if parts else 0
        return [sum(w * float(parts[p][i]) for p, w in self.weights.items()) for i in range(n)]

    def __call__(self, completions: Sequence[Completion]) -> list[float]:
        return self.total(self.parts(completions))

    def __repr__(self) -> str:
        return f"Combined({self.weights!r}, name={self.name!r})"


def combine(weights: Mapping[str | Callable[..., Any], float], name: str = "combined") -> Combined:
    """``sum(weight * reward)`` over a ``{reward: weight}`` mapping; string keys are resolved.

    Part names are ``reward_name`` of each reward and must be distinct (they become log keys);
    weights must be finite numbers.
    """
    if not isinstance(weights, Mapping):
        raise TypeError(f"combine expects a {{reward: weight}} mapping, got {weights!r}")
    if not weights:
        raise ValueError("combine got an empty mapping; give at least one {reward: weight}")
    rewards: list[tuple[str, Reward, float]] = []
    for spec, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
            raise TypeError(f"weight for reward {spec!r} must be a number, got {weight!r}")
        if not math.isfinite(weight):
            raise ValueError(f"weight for reward {spec!r} must be finite, got {weight!r}")
        reward = resolve(spec)
        part = reward_name(reward)
        if any(part == existing for existing, _, _ in rewards):
            raise ValueError(
                f"two rewards in combine are both named {part!r}; give one a distinct name"
            )
        rewards.append((part, reward, float(weight)))
    return Combined(rewards, name=name)
