"""Generations for the eval suite: every policy kind through the same test-split vector env.

A batch is a fixed slice of the example indices (``batches``), and every sampled token is drawn
from a stream seeded by (seed, example, sample) (:meth:`LMActorCritic.act` ``row_seeds``): a
batch's generations and per-example scores are therefore the same whichever process computes it,
which is what lets ``accelerate launch`` shard batches across processes and still produce the
one-process table bit for bit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

import textenv  # noqa: F401
from agents.policy import EpisodeBatch, LMActorCritic, Sampling
from agents.rollout import collect, row_info, row_seed
from textenv.io import check_output_dir
from textenv.models import env_model_kwargs
from textenv.rewards import Completion

__all__ = ["Decoding", "Generation", "PolicySpec", "batches", "generate", "make_envs", "parse_policy"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PolicySpec:
    """A policy on the command line: ``name=path`` (a model name or checkpoint directory),
    ``name=bon:path`` (best-of-n over ``path``'s samples, reranked by the task's reward model), or
    the built-in baselines ``random`` and ``reference``."""

    name: str
    kind: Literal["model", "best_of_n", "random", "reference"] = "model"
    path: str | None = None
    n: int = 4


def parse_policy(text: str) -> PolicySpec:
    if text in ("random", "reference"):
        return PolicySpec(text, kind=text)  # type: ignore[arg-type]
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"bad --policy {text!r}: expected NAME=PATH, NAME=bon:PATH, 'random' or 'reference'")
    if path.startswith("bon:"):
        return PolicySpec(name, kind="best_of_n", path=path[4:])
    return PolicySpec(name, kind="model", path=path)


@dataclass(frozen=True)
class Decoding:
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int | None = None
    batch_size: int = 8


@dataclass
class Generation:
    """One completion of one policy on one example, plus the per-example scores that need a model
    (filled by the suite in the same process, so they shard with the generation)."""

    policy: str
    task: str
    index: int
    prompt: str
    text: str
    references: list[str]
    reward: float
    parts: dict[str, float]
    token_ids: list[int]
    prompt_ids: list[int]
    logprobs: list[float] | None = None
    scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def batches(indices: Sequence[int], size: int) -> list[list[int]]:
    return [list(indices[i:i + size]) for i in range(0, len(indices), size)]


def make_envs(task: str, model: str, tokenizer: Any, decoding: Decoding, num_envs: int):
    kwargs: dict[str, Any] = env_model_kwargs(model, tokenizer)
    if decoding.max_new_tokens:
        kwargs["max_new_tokens"] = decoding.max_new_tokens
    return gym.make_vec(task, num_envs=num_envs, split="test", autoreset_mode="same_step", **kwargs)


def load_policy(path: str, tokenizer: Any, decoding: Decoding) -> LMActorCritic:
    """A model policy; a missing, unfinished (no ``COMPLETE`` marker, a leftover temporary folder)
    or mismatched checkpoint is a one-line error naming it, never a believable row."""
    p = Path(path)
    if p.is_absolute() or path.startswith(".") or "/" in path:
        check_output_dir(p, "checkpoint")
        if not (p / "config.json").exists() and not (p / "policy.json").exists():
            raise FileNotFoundError(f"{path!r} is not a model checkpoint (no config.json or policy.json)")
    sampling = Sampling(temperature=decoding.temperature, top_p=decoding.top_p)
    try:
        return LMActorCritic.from_pretrained(path, tokenizer=tokenizer, sampling=sampling)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot load checkpoint {path!r}: {type(exc).__name__}: {exc}") from exc


def _record(name: str, task: str, ep, setup) -> Generation:
    info = ep.info
    eos = setup.eos_token_id
    tokens = [t for t in ep.actions if t != eos]
    return Generation(
        policy=name, task=task, index=ep.index, prompt=info["prompt"], text=info["text"],
        references=list(info["references"]), reward=float(info["reward"]),
        parts={k: float(v) for k, v in info["reward_parts"].items()}, token_ids=tokens,
        prompt_ids=[int(t) for t in ep.prompt_ids], logprobs=[float(x) for x in ep.logprobs],
    )


def _random_batch(name: str, task: str, envs, idx: list[int], seed: int) -> list[Generation]:
    """Uniformly random tokens until EOS or the budget: the floor of every metric."""
    env = envs.unwrapped
    b = env.num_envs
    padded = idx + [idx[0]] * (b - len(idx))
    obs, _ = envs.reset(seed=seed, options={"index": padded})
    rngs = [np.random.default_rng(row_seed(seed, i)) for i in padded]
    active = np.arange(b) < len(idx)
    tokens: list[list[int]] = [[] for _ in range(b)]
    out: dict[int, Generation] = {}
    p = env.setup.max_prompt_tokens
    prompts = [obs["input_ids"][i, :p][obs["attention_mask"][i, :p] == 1] for i in range(b)]
    while active.any():
        actions = np.array([int(r.integers(env.setup.vocab_size)) for r in rngs])
        actions[~active] = env.setup.pad_token_id if env.setup.pad_token_id != env.setup.eos_token_id else 0
        obs, _, term, trunc, infos = envs.step(actions)
        final = infos.get("final_info", {})
        for i in np.flatnonzero(active):
            tokens[i].append(int(actions[i]))
            if term[i] or trunc[i]:
                info = row_info(final, int(i))
                out[i] = Generation(
                    policy=name, task=task, index=padded[i], prompt=info["prompt"], text=info["text"],
                    references=list(info["references"]), reward=float(info["reward"]),
                    parts={k: float(v) for k, v in info["reward_parts"].items()},
                    token_ids=[t for t in tokens[i] if t != env.setup.eos_token_id],
                    prompt_ids=[int(t) for t in prompts[i]],
                )
        active &= ~(term | trunc)
    return [out[i] for i in range(len(idx))]


def _reference_batch(name: str, task: str, setup, idx: list[int]) -> list[Generation]:
    """The task's reference as the completion: the upper bound where references exist."""
    out = []
    for i in idx:
        ex = setup.examples[i]
        if not ex.references:
            raise ValueError(f"task {task!r} has no references; the 'reference' policy does not apply")
        enc = setup.encode(i)
        text = ex.references[0]
        ids = setup.tokenizer(text, add_special_tokens=False)["input_ids"]
        totals, parts = setup.score([Completion(prompt=enc.text, text=text, token_ids=tuple(ids),
                                                references=ex.references, metadata=ex.metadata)])
        out.append(Generation(policy=name, task=task, index=i, prompt=enc.text, text=text,
                              references=list(ex.references), reward=totals[0],
                              parts={k: v[0] for k, v in parts.items()}, token_ids=list(ids),
                              prompt_ids=enc.ids.tolist()))
    return out


def generate(spec: PolicySpec, task: str, envs, idx: list[int], seed: int, policy: LMActorCritic | None = None,
             reward_model: Any = None) -> list[Generation]:
    """Generations of ``spec`` for the examples ``idx`` (one batch)."""
    setup = envs.unwrapped.setup
    if spec.kind == "random":
        return _random_batch(spec.name, task, envs, idx, seed)
    if spec.kind == "reference":
        return _reference_batch(spec.name, task, setup, idx)
    if policy is None:
        raise ValueError(f"policy {spec.name!r} needs a loaded model")
    if spec.kind == "model":
        episodes = collect(envs, policy, idx, seed=seed, row_seeds=[row_seed(seed, i) for i in idx])
        return [_record(spec.name, task, ep, setup) for ep in episodes]
    # best-of-n: n samples per prompt through the env, the reward model keeps the best
    if reward_model is None:
        raise ValueError(f"policy {spec.name!r} (best-of-n) needs a reward model for task {task!r}")
    b = envs.unwrapped.num_envs
    flat = [(i, j) for i in idx for j in range(spec.n)]
    gens: list[Generation] = []
    for start in range(0, len(flat), b):
        chunk = flat[start:start + b]
        episodes = collect(envs, policy, [i for i, _ in chunk], seed=seed,
                           row_seeds=[row_seed(seed, i, j) for i, j in chunk])
        gens.extend(_record(spec.name, task, ep, setup) for ep in episodes)
    rm = reward_model([Completion(prompt=g.prompt, text=g.text) for g in gens])
    best = []
    for k in range(len(idx)):
        group = list(range(k * spec.n, (k + 1) * spec.n))
        j = max(group, key=lambda m: rm[m])
        chosen = gens[j]
        chosen.logprobs = None  # a best-of-n policy has no per-token log-probs of its own
        chosen.scores["bon_rm_score"] = float(rm[j])
        best.append(chosen)
    return best


def _by_length(gens: Sequence[Generation], fn, size: int = 8) -> list:
    """``fn`` over chunks of ``size`` generations of similar prompt length (one padded forward per
    chunk wastes little on padding), results back in the order of ``gens``."""
    order = sorted(range(len(gens)), key=lambda i: len(gens[i].prompt_ids))
    out: list = [None] * len(gens)
    for start in range(0, len(order), size):
        rows = order[start:start + size]
        for i, r in zip(rows, fn([gens[i] for i in rows]), strict=True):
            out[i] = r
    return out


@torch.no_grad()
def reference_nll(policy: LMActorCritic, gens: Sequence[Generation], eos_token_id: int) -> list[float]:
    """Mean per-token NLL of each example's first reference (+ EOS) under ``policy``."""
    if len(gens) > 8:
        return _by_length(gens, lambda chunk: reference_nll(policy, chunk, eos_token_id))
    out = []
    refs = [policy.tokenizer(g.references[0], add_special_tokens=False)["input_ids"] + [eos_token_id]
            for g in gens]
    batch = EpisodeBatch.from_episodes([g.prompt_ids for g in gens], refs, policy.pad_token_id)
    sampling, policy.sampling = policy.sampling, Sampling()  # perplexity of the model itself, untempered
    try:
        scores = policy.evaluate(batch, with_values=False)
    finally:
        policy.sampling = sampling
    for i, r in enumerate(refs):
        out.append(float(-scores.logprobs[i, :len(r)].sum()) / len(r))
    return out


@torch.no_grad()
def sample_logprobs(model_policy: LMActorCritic, gens: Sequence[Generation], eos_token_id: int,
                    reference: torch.nn.Module) -> list[list[float]]:
    """Log-probs of each generation's own tokens under ``reference`` (same sampling transform)."""
    if len(gens) > 8:
        return _by_length(gens, lambda chunk: sample_logprobs(model_policy, chunk, eos_token_id, reference))
    seqs = [g.token_ids + ([eos_token_id] if len(g.token_ids) < len(g.logprobs or []) else []) for g in gens]
    batch = EpisodeBatch.from_episodes([g.prompt_ids for g in gens], [s or [eos_token_id] for s in seqs],
                                       model_policy.pad_token_id)
    ref = model_policy.reference_logprobs(batch, reference)
    return [ref[i, :len(s)].tolist() for i, s in enumerate(seqs)]
