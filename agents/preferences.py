"""Preference pairs for reward-model training: the standard RLHF recipe with a synthetic labeler.

No human labels exist for textenv's tasks, so the task's own reward (VADER, ROUGE-L against the
references, a verifier) plays the labeler of Ouyang et al. (2022): for a prompt, a policy (the SFT
model) samples several completions, the labeler ranks them, and ranked pairs become preferences
(:func:`sample_pairs`). Beside them come each task's own pairs (:attr:`textenv.tasks.Task.pairs`:
a reference over a swapped, shuffled or truncated one; a positive continuation over a negative
one), and *brevity negatives* (a sample over its own first third): the first reward models here
were won by short outputs, and a pair that prefers the whole answer to its beginning is the
direct counter-example.

Every pair carries a ``kind`` so held-out accuracy can be read per kind, and
:func:`length_matched` picks the pairs whose two sides have about the same length: accuracy on
those is what a reward model knows beyond "longer is better".

A completion is appended to its prompt with a space when the prompt ends in a non-space
character (``"Count: 7 8 9"`` + ``" 10 11 ..."``), as a policy would generate it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import textenv  # noqa: F401  (registers the envs)
from textenv.core import TaskSetup
from textenv.devices import autocast
from textenv.models import DEFAULT_MODEL
from textenv.rewards import Completion, resolve
from textenv.tasks import Example, first_third, task_of
from textenv.vector import policy_envs

__all__ = ["TASK_PAIR_KINDS", "Pair", "length_matched", "make_pairs", "rank_candidates", "sample_pairs",
           "task_setup"]

logger = logging.getLogger(__name__)

# The kinds of the tasks' own pairs (textenv.task_factories: reference_pairs, _truncations, _sentiment_pairs):
# what a reward model's ``--kinds`` may name. Sampled pairs are "sampled"; ``samples_per_prompt`` rules them.
TASK_PAIR_KINDS = ("swap", "shuffle", "truncate", "short", "sentiment")


@dataclass(frozen=True)
class Pair:
    """One preference: ``prompt + chosen`` should score above ``prompt + rejected``."""

    prompt: str
    chosen: str
    rejected: str
    kind: str = "pair"


def _no_reward(completions: Sequence[Completion]) -> list[float]:
    return [0.0] * len(completions)  # static pairs never score; skip loading the task's reward


def task_setup(env_id: str, split: str, model: str = DEFAULT_MODEL, tokenizer: Any = None) -> TaskSetup:
    """The env's own :class:`TaskSetup` for ``env_id`` (same prompts, same tokenizer)."""
    return TaskSetup(task_of(env_id), split, model=model, tokenizer=tokenizer, reward=_no_reward)


def _spaced(prompt: str, completion: str) -> str:
    return completion if not prompt or prompt[-1].isspace() or completion[:1].isspace() else " " + completion


def _words(text: str) -> int:
    return len(text.split())


def length_matched(pair: Pair, ratio: float = 0.8) -> bool:
    """True when the shorter side has at least ``ratio`` of the longer side's words."""
    a, b = _words(pair.chosen), _words(pair.rejected)
    return min(a, b) >= ratio * max(a, b, 1)


def make_pairs(env_id: str, split: str = "train", model: str = DEFAULT_MODEL, tokenizer: Any = None,
               limit: int | None = None, seed: int = 0, kinds: Sequence[str] | None = None) -> list[Pair]:
    """The task's own preference pairs (:attr:`textenv.tasks.Task.pairs`) for ``split``, with the
    prompt rendered as the env renders it (``model``/``tokenizer`` decide the chat template, so
    build pairs with the reward model's tokenizer). ``kinds`` keeps only pairs of those kinds (a
    filter that keeps none of the task's pairs is an error naming the kinds it makes);
    ``limit`` keeps the first N. Identical for the same arguments."""
    setup = task_setup(env_id, split, model, tokenizer)
    if setup.task.pairs is None:
        raise ValueError(f"task {setup.task.name!r} defines no preference pairs; use sampled pairs "
                         "(samples_per_prompt > 0) ranked by its reward")
    out, made = [], set()
    for pref in setup.task.pairs(split, np.random.default_rng(seed)):
        made.add(pref.kind)
        if kinds is not None and pref.kind not in kinds:
            continue
        prompt = setup.prompt_text(setup.examples[pref.index])
        out.append(Pair(prompt, _spaced(prompt, pref.chosen), _spaced(prompt, pref.rejected), pref.kind))
        if limit is not None and len(out) >= limit:
            break
    if kinds is not None and made and not out:
        raise ValueError(f"task {setup.task.name!r} makes no pairs of kinds {', '.join(kinds or ())} in split "
                         f"{split!r}; it makes {', '.join(sorted(made))}")
    return out


def rank_candidates(prompts: Sequence[str], candidates: Sequence[Sequence[str]], reward: Any,
                    examples: Sequence[Example] | None = None) -> list[Pair]:
    """Pairs from given completions ranked by ``reward`` (a name or callable for
    :func:`textenv.rewards.resolve`): best vs worst per prompt; prompts whose scores tie are skipped.
    ``examples`` supply references and metadata for rewards that need them (ROUGE, verifier)."""
    reward = resolve(reward)
    pairs = []
    for k, (prompt, cands) in enumerate(zip(prompts, candidates, strict=True)):
        ex = examples[k] if examples is not None else Example(text=prompt)
        scores = reward([Completion(prompt=prompt, text=c, references=ex.references, metadata=ex.metadata)
                         for c in cands])
        best, worst = int(np.argmax(scores)), int(np.argmin(scores))
        if scores[best] > scores[worst] and cands[best] != cands[worst]:
            pairs.append(Pair(prompt, cands[best], cands[worst], "sampled"))
    return pairs


def _ranked(prompt: str, texts: list[str], scores: list[float], margin: float,
            rng: np.random.Generator, brevity: float, length_ratio: float = 2 / 3) -> list[Pair]:
    """Per prompt: the best sample over the worst one of a similar length (the shorter side has at
    least ``length_ratio`` of the longer one's words) whose labeler score is at least ``margin``
    lower, then the next best over the next such, and with probability ``brevity`` the best sample
    over its first third.

    Length-matching is what keeps the pairs from teaching brevity: VADER and ROUGE both score a
    short neutral text above a long mixed one, so unmatched best-vs-worst pairs made the shorter
    side the winner in most pairs and PPO on that reward model learned to stop after a word. Length
    is taught on purpose, by the truncation pairs (longer wins)."""
    seen: dict[str, float] = {}
    for t, s in zip(texts, scores, strict=True):
        if t.strip():
            seen.setdefault(t, s)  # duplicate samples are one candidate
    order = sorted(seen, key=lambda t: -seen[t])
    out = []
    left = list(order)
    while left:
        hi = left.pop(0)
        lo = next((t for t in reversed(left) if seen[hi] - seen[t] >= margin
                   and length_matched(Pair(prompt, hi, t, "sampled"), length_ratio)), None)
        if lo is not None:
            left.remove(lo)
            out.append(Pair(prompt, _spaced(prompt, hi), _spaced(prompt, lo), "sampled"))
    if order and _words(order[0]) >= 6 and rng.random() < brevity:
        out.append(Pair(prompt, _spaced(prompt, order[0]), _spaced(prompt, first_third(order[0])), "truncate"))
    return out


@torch.no_grad()
def sample_pairs(env_id: str, split: str, policy_model: str, tokenizer: Any, prompts: int, samples: int = 4,
                 margin: float = 0.1, max_new_tokens: int | None = None, temperature: float = 1.0,
                 seed: int = 0, device: torch.device | str = "cpu", precision: str = "auto",
                 brevity: float = 0.5, batch_size: int = 32) -> list[Pair]:
    """Pairs of ``policy_model``'s own samples, ranked by the task's reward (the synthetic labeler).

    ``prompts`` prompts of ``split`` (a seeded choice) get ``samples`` completions each, sampled
    through the task's vector env with the KV-cached policy (prompts prefilled once per group);
    the env's reward of each finished episode is the label. See :func:`_ranked` for the pairs.
    A multi-turn task's samples are first turns (``turns=1``, one turn's token budget).
    """
    from agents.policy import LMActorCritic, Sampling
    from agents.rollout import collect, row_seed

    if samples < 2 or prompts < 1:
        raise ValueError(f"need samples >= 2 and prompts >= 1, got {samples}, {prompts}")
    device = torch.device(device)
    kwargs: dict[str, Any] = {}
    task = task_of(env_id)
    if task.turns > 1:  # a reward model scores one turn in its context: rank first turns, whose contexts match
        kwargs["turns"] = 1
        max_new_tokens = max_new_tokens or min(task.max_turn_tokens or task.max_new_tokens, task.max_new_tokens)
    b = max(samples, batch_size // samples * samples)
    envs = policy_envs(env_id, policy_model, b, split=split, tokenizer=tokenizer, max_new_tokens=max_new_tokens,
                       **kwargs)
    setup = envs.unwrapped.setup
    policy = LMActorCritic.from_pretrained(policy_model, tokenizer=setup.tokenizer,
                                           sampling=Sampling(temperature=temperature), seed=seed).to(device)
    rng = np.random.default_rng([seed, 17])
    chosen = rng.permutation(len(setup.examples))[:prompts]
    flat = [(int(i), j) for i in chosen for j in range(samples)]
    texts: dict[int, list[str]] = {}
    scores: dict[int, list[float]] = {}
    with autocast(device, precision):
        for start in range(0, len(flat), b):
            chunk = flat[start:start + b]
            episodes = collect(envs, policy, [i for i, _ in chunk], seed=seed,
                               row_seeds=[row_seed(seed, i, j) for i, j in chunk])
            for e in episodes:
                texts.setdefault(e.index, []).append(str(e.info.get("text", "")))
                scores.setdefault(e.index, []).append(e.episode_return)
    envs.close()
    out = []
    for i in chosen:
        prompt = setup.prompt_text(setup.examples[int(i)])
        out += _ranked(prompt, texts[int(i)], scores[int(i)], margin, rng, brevity)
    logger.info("%s/%s: %d pairs from %d prompts x %d samples of %s", env_id, split, len(out), len(chosen),
                samples, policy_model)
    return out
