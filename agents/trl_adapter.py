"""textenv tasks and rewards inside TRL: users who train with TRL's trainers keep our tasks and rewards.

TRL's online trainers (``GRPOTrainer``, ``RLOOTrainer``...) take a ``datasets.Dataset`` with a
``prompt`` column and reward functions called as ``f(prompts=..., completions=..., **columns)``,
every other dataset column passed by name, one value per completion. textenv's reward contract is
``reward(list[Completion]) -> list[float]``. Two functions bridge them::

    from trl import GRPOConfig, GRPOTrainer
    from agents.trl_adapter import task_dataset, trl_reward

    train = task_dataset("TextSentiment-v0", "train", model=DEFAULT_MODEL)
    trainer = GRPOTrainer(model=..., reward_funcs=[trl_reward("TextSentiment-v0")], train_dataset=train,
                          args=GRPOConfig(...))

The dataset's prompts are the env's own prompt text (template and chat template applied), so a
TRL run and ``agents.ppo`` see the same prompts; ``references`` and ``metadata`` (JSON, as Arrow
needs one type per column) ride along for the rewards that need them (ROUGE, the verifier).
Nothing here imports TRL: ``pip install trl`` (or ``textenv[trl]``) when you use it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym

import textenv  # noqa: F401  (registers the envs)
from textenv.models import DEFAULT_MODEL
from textenv.rewards import Completion, resolve, reward_name, score

__all__ = ["TRLReward", "task_dataset", "trl_reward"]


def _task_setup(env_id: str, split: str, model: str, tokenizer: Any = None):
    from agents.preferences import task_setup

    return task_setup(env_id, split, model, tokenizer)


def task_dataset(env_id: str, split: str = "train", model: str = DEFAULT_MODEL, tokenizer: Any = None,
                 limit: int | None = None):
    """The examples of ``env_id``'s task ``split`` as the ``datasets.Dataset`` TRL trainers take:
    columns ``prompt`` (the env's prompt text), ``references`` (list of strings), ``metadata`` (a JSON
    string) and ``index`` (the example's index in the split)."""
    from datasets import Dataset

    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 (or None), got {limit}")
    setup = _task_setup(env_id, split, model, tokenizer)
    examples = setup.examples[:limit] if limit is not None else setup.examples
    return Dataset.from_list([{"prompt": setup.prompt_text(ex), "references": list(ex.references),
                               "metadata": json.dumps(dict(ex.metadata), default=str), "index": i}
                              for i, ex in enumerate(examples)])


def _text(x: Any) -> str:
    """A TRL prompt or completion as text: a string, or a conversation (the last message's content)."""
    if isinstance(x, str):
        return x
    if isinstance(x, Sequence) and x and isinstance(x[-1], dict):
        return str(x[-1].get("content", ""))
    raise TypeError(f"expected a string or a list of chat messages, got {type(x).__name__}")


def _references(refs: Any) -> tuple[str, ...]:
    """One row's references as the reward records them: a plain string is one reference (not its
    characters), a list or tuple is several, None none."""
    if refs is None:
        return ()
    if isinstance(refs, str):
        return (refs,)
    if not isinstance(refs, (list, tuple)) or not all(isinstance(r, str) for r in refs):
        raise TypeError(f"references must be a string or a list of strings per row, got {refs!r}")
    return tuple(refs)

class TRLReward:
    """A textenv reward as a TRL reward function. Scores go through :func:`textenv.rewards.score`,
    so a failing or non-finite reward raises a ``RewardError`` naming it instead of training on NaN.
    ``__name__`` is the reward's name: TRL logs ``rewards/<name>/mean`` as textenv does."""

    def __init__(self, reward: str | Callable[..., Any]) -> None:
        self.reward = resolve(reward)
        self.__name__ = reward_name(self.reward)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], references: Sequence[Any] | None = None,
                 metadata: Sequence[Any] | None = None, **_: Any) -> list[float]:
        n = len(completions)
        refs = references if references is not None else [()] * n
        metas = metadata if metadata is not None else [{}] * n
        batch = [Completion(prompt=_text(p), text=_text(c), references=_references(r),
                            metadata=json.loads(m) if isinstance(m, str) else dict(m or {}))
                 for p, c, r, m in zip(prompts, completions, refs, metas, strict=True)]
        totals, _ = score(self.reward, batch)
        return totals


def trl_reward(env_id_or_reward: str | Callable[..., Any]) -> TRLReward:
    """A TRL reward function: an env id (``"TextSentiment-v0"``) gives that task's own reward; any
    other value is resolved as textenv rewards are (a name such as ``"rougeL"``, ``"pkg.mod:fn"``, a
    callable)."""
    if isinstance(env_id_or_reward, str) and env_id_or_reward in gym.registry:
        from textenv.tasks import task_of

        return TRLReward(task_of(env_id_or_reward).reward)
    return TRLReward(env_id_or_reward)
