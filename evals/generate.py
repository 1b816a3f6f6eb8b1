"""Generations for the eval suite: every policy kind through the same test-split vector env.

A batch is a fixed slice of the example indices (``batches``), and every sampled token is drawn
from a stream seeded by (seed, example, sample) (:meth:`LMActorCritic.act` ``row_seeds``): a
batch's generations and per-example scores are therefore the same whichever process computes it,
which is what lets ``accelerate launch`` shard batches across processes and still produce the
one-process table bit for bit.

Policy kinds (:func:`parse_policy`): ``NAME=PATH`` samples ``samples`` completions per prompt
(K, default 1; sample j is seeded ``row_seed(seed, i, j)``, and ``row_seed(seed, i, 0)`` is
``row_seed(seed, i)``, so K=1 and sample 0 of K draw the same stream); ``NAME=bon:PATH`` keeps the
reward model's pick of n samples; ``NAME=vote:PATH`` keeps the majority answer of n samples
(self-consistency); ``random`` and ``reference`` are the floor and the ceiling.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

import textenv  # noqa: F401
from agents.policy import EpisodeBatch, LMActorCritic, Sampling, score_actions
from agents.rollout import collect, row_info, row_seed
from textenv.io import check_output_dir
from textenv.rewards import Completion
from textenv.rewards.verifier import extract_answer
from textenv.vector import policy_envs

__all__ = ["MAX_SAMPLES", "Decoding", "Generation", "PolicySpec", "batches", "generate", "majority", "make_envs",
           "parse_policy"]

logger = logging.getLogger(__name__)


MAX_SAMPLES = 64
"""Most samples per prompt: ``row_seed`` gives each example 64 consecutive seeds, so a 65th sample
would reuse the next example's first stream."""


@dataclass(frozen=True)
class PolicySpec:
    """A policy on the command line: ``name=path`` (a model name or checkpoint directory),
    ``name=bon:path`` (best-of-n over ``path``'s samples, reranked by the task's reward model),
    ``name=vote:path`` (majority vote over ``path``'s n samples' extracted answers, no reward model),
    or the built-in baselines ``random`` and ``reference``."""

    name: str
    kind: Literal["model", "best_of_n", "majority_vote", "random", "reference"] = "model"
    path: str | None = None
    n: int = 4  # samples per prompt of best-of-n and majority vote


_SELECTORS = {"bon:": "best_of_n", "vote:": "majority_vote"}


def parse_policy(text: str) -> PolicySpec:
    if text in ("random", "reference"):
        return PolicySpec(text, kind=text)  # type: ignore[arg-type]
    name, sep, path = text.partition("=")
    prefix = next((p for p in _SELECTORS if path.startswith(p)), "")
    kind, path = _SELECTORS.get(prefix, "model"), path[len(prefix):]
    if not sep or not name or not path:
        raise ValueError(f"bad --policy {text!r}: expected NAME=PATH, NAME=bon:PATH, NAME=vote:PATH, 'random' "
                         "or 'reference'")
    return PolicySpec(name, kind=kind, path=path)  # type: ignore[arg-type]


def majority(answers: Sequence[str]) -> int:
    """Index of the sample self-consistency keeps (Wang et al. 2022): the first sample whose answer
    most samples gave, so a tie goes to the answer that appeared first.

    Empty answers (nothing to extract) do not vote: a policy that often says nothing should not
    outvote its one real answer. When every answer is empty, sample 0 is kept.
    """
    if not answers:
        raise ValueError("majority needs at least one answer")
    counts = Counter(a for a in answers if a)
    if not counts:
        return 0
    top = max(counts.values())
    return next(i for i, a in enumerate(answers) if a and counts[a] == top)


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
    task: str  # the env id (the leaderboard schema's "task" column)
    index: int
    prompt: str
    text: str
    references: list[str]
    reward: float
    parts: dict[str, float]
    token_ids: list[int]  # a model's sample: every token after the prompt as the policy read it (EOS included)
    prompt_ids: list[int]
    logprobs: list[float] | None = None
    scores: dict[str, float] = field(default_factory=dict)
    sample: int = 0  # which of the prompt's K samples (0 unless the task asks for K > 1)
    positions: list[int] | None = None  # a model's sample: its actions' columns in token_ids (None: no model's)
    tool_calls: int | None = None  # a tool env's episode: the calls it made (None: the env has no tools)
    tool_errors: int | None = None  # of which returned an error text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def batches(indices: Sequence[int], size: int) -> list[list[int]]:
    return [list(indices[i:i + size]) for i in range(0, len(indices), size)]


def make_envs(env: str, model: str, tokenizer: Any, decoding: Decoding, num_envs: int):
    return policy_envs(env, model, num_envs, split="test", tokenizer=tokenizer, max_new_tokens=decoding.max_new_tokens)


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


def _outcome(info: dict[str, Any], setup, index: int) -> dict[str, Any]:
    """What a generation row keeps of an episode's final info. A multi-turn episode is one row: its
    prompt is the first turn's, its text the agent's turns one per line, its reward the episode's
    return and its parts summed over the turns. Its references are the real replies likewise for a
    conversation, the task's references for a tool episode (whose last turn is the scored answer),
    which also keeps the calls it made and how many of them returned an error."""
    if "turns" not in info:
        return {"prompt": info["prompt"], "text": info["text"], "references": list(info["references"]),
                "reward": float(info["reward"]), "parts": {k: float(v) for k, v in info["reward_parts"].items()}}
    out = {"prompt": setup.encode(index).text, "text": "\n".join(info["turns"]),
           "reward": float(info["return"]), "parts": {k: float(v) for k, v in info["return_parts"].items()}}
    if "tool_calls" in info:
        return {**out, "references": list(info["references"]), "tool_calls": int(info["tool_calls"]),
                "tool_errors": int(info["tool_errors"])}
    replies = setup.examples[index].metadata["replies"][:len(info["turns"])]
    return {**out, "references": ["\n".join(replies)]}


def _record(name: str, env: str, ep, setup) -> Generation:
    """A sampled episode as a row: its tokens as the policy read them and its actions' columns, so
    the row is scored again (KL to the reference) exactly where it was sampled."""
    return Generation(policy=name, task=env, index=ep.index, **_outcome(ep.info, setup, ep.index),
                      token_ids=list(ep.sequence), prompt_ids=[int(t) for t in ep.prompt_ids],
                      logprobs=[float(x) for x in ep.logprobs], positions=list(ep.positions))


def _driven_batch(name: str, env: str, envs, idx: list[int], seed: int, choose) -> list[Generation]:
    """Generations of a policy without a model: ``choose(infos)`` gives every row's next token (the
    rows that finished are given a pad token), ``infos`` being the previous step's vector info
    (``None`` before the first step). One episode per example of ``idx``."""
    vec = envs.unwrapped
    setup, b, eos = vec.setup, vec.num_envs, vec.setup.eos_token_id
    padded = idx + [idx[0]] * (b - len(idx))
    obs, _ = envs.reset(seed=seed, options={"index": padded})
    p = setup.max_prompt_tokens
    prompts = [obs["input_ids"][i, :p][obs["attention_mask"][i, :p] == 1] for i in range(b)]
    idle = setup.pad_token_id if setup.pad_token_id != eos else 0
    active = np.arange(b) < len(idx)
    tokens: list[list[int]] = [[] for _ in range(b)]
    out: dict[int, Generation] = {}
    infos = None
    while active.any():
        actions = np.where(active, choose(infos), idle)
        obs, _, term, trunc, infos = envs.step(actions)
        final = infos.get("final_info", {})
        for i in np.flatnonzero(active):
            tokens[i].append(int(actions[i]))
            if term[i] or trunc[i]:
                out[i] = Generation(policy=name, task=env, index=padded[i],
                                    **_outcome(row_info(final, int(i)), setup, padded[i]),
                                    token_ids=tokens[i],  # every token it played (EOS included)
                                    prompt_ids=[int(t) for t in prompts[i]])
        active &= ~(term | trunc)
    return [out[i] for i in range(len(idx))]


def _random_batch(name: str, env: str, envs, idx: list[int], seed: int) -> list[Generation]:
    """Uniformly random tokens until EOS or the budget: the floor of every metric."""
    b, vocab = envs.unwrapped.num_envs, envs.unwrapped.setup.vocab_size
    rngs = [np.random.default_rng(row_seed(seed, i)) for i in idx + [idx[0]] * (b - len(idx))]
    return _driven_batch(name, env, envs, idx, seed, lambda _: np.array([int(r.integers(vocab)) for r in rngs]))


def _replay_batch(name: str, env: str, envs, idx: list[int], seed: int) -> list[Generation]:
    """A multi-turn task's reference: each conversation's real replies typed into the env turn by
    turn (a reply ends with EOS, or where the env's ``max_turn_tokens`` cuts it), so they are scored
    in their context exactly as a policy's turns are."""
    setup, b = envs.unwrapped.setup, envs.unwrapped.num_envs
    replies = [[setup.tokenizer(r, add_special_tokens=False)["input_ids"]
                for r in setup.examples[i].metadata["replies"][:setup.turns]]
               for i in idx + [idx[0]] * (b - len(idx))]
    turn, pos = np.zeros(b, dtype=np.int64), np.full(b, -1, dtype=np.int64)

    def choose(infos) -> np.ndarray:
        if infos is not None:  # the env closed a row's turn on the last step: its next reply starts
            scored = infos.get("_turn", np.zeros(b, dtype=bool))
            turn[scored] += 1
            pos[scored] = -1
        pos[:] += 1
        actions = np.full(b, setup.eos_token_id, dtype=np.int64)  # a reply typed to its end: EOS
        for i in range(b):
            if turn[i] < len(replies[i]) and pos[i] < len(replies[i][turn[i]]):
                actions[i] = replies[i][turn[i]][pos[i]]
        return actions

    return _driven_batch(name, env, envs, idx, seed, choose)


def _reference_batch(name: str, env: str, setup, idx: list[int]) -> list[Generation]:
    """The task's reference as the completion: the upper bound where references exist."""
    out = []
    for i in idx:
        ex = setup.examples[i]
        if not ex.references:
            raise ValueError(f"task {env!r} has no references; the 'reference' policy does not apply")
        enc = setup.encode(i)
        text = ex.references[0]
        ids = setup.tokenizer(text, add_special_tokens=False)["input_ids"]
        totals, parts = setup.score([Completion(prompt=enc.text, text=text, token_ids=tuple(ids),
                                                references=ex.references, metadata=ex.metadata)])
        out.append(Generation(policy=name, task=env, index=i, prompt=enc.text, text=text,
                              references=list(ex.references), reward=totals[0],
                              parts={k: v[0] for k, v in parts.items()}, token_ids=list(ids),
                              prompt_ids=enc.ids.tolist()))
    return out


def _samples(spec: PolicySpec, env: str, envs, policy: LMActorCritic, idx: list[int], seed: int,
             n: int, packed: bool = False) -> list[Generation]:
    """``n`` samples of each prompt in ``idx``, returned prompt-major (all of ``idx[0]``'s, then
    ``idx[1]``'s), sample j of example i drawn from ``row_seed(seed, i, j)``.

    By default sample j of every prompt is drawn in one ``collect`` on ``idx``: sample 0 then comes
    from exactly the call a single-sample run makes, bit for bit. Same seeds alone would not do it:
    a row's tokens follow its seed, but its log-probs move by ~1e-7 with the other rows of the batch.
    ``packed`` fills the env's batch with (prompt, sample) rows instead (fewer steps when ``idx`` is
    short, and each prompt prefilled once for all its samples: the cost that dominates behind a long
    system prompt); best-of-n has always drawn that way and keeps it, so its rows stay as they were.
    """
    if not 1 <= n <= MAX_SAMPLES:
        raise ValueError(f"samples per prompt must be in 1..{MAX_SAMPLES}, got {n}")
    setup = envs.unwrapped.setup
    b = envs.unwrapped.num_envs
    flat = [(k, j) for k in range(len(idx)) for j in range(n)]
    calls = ([flat[s:s + b] for s in range(0, len(flat), b)] if packed
             else [[(k, j) for k in range(len(idx))] for j in range(n)])
    rows: dict[tuple[int, int], Generation] = {}
    for call in calls:
        episodes = collect(envs, policy, [idx[k] for k, _ in call], seed=seed,
                           row_seeds=[row_seed(seed, idx[k], j) for k, j in call])
        for (k, j), ep in zip(call, episodes, strict=True):
            rows[k, j] = _record(spec.name, env, ep, setup)
            rows[k, j].sample = j
    return [rows[key] for key in flat]


def _pick(gens: list[Generation], n: int, choose) -> list[Generation]:
    """One generation per prompt from prompt-major groups of ``n``: ``choose(group)`` is the index
    kept within its group. The pick stands for the prompt as sample 0 and, being a selection
    rather than the policy's own sample, carries no per-token log-probs (so no KL)."""
    out = []
    for start in range(0, len(gens), n):
        group = gens[start:start + n]
        chosen = group[choose(group)]
        chosen.logprobs = None
        chosen.sample = 0
        out.append(chosen)
    return out


def generate(spec: PolicySpec, env: str, envs, idx: list[int], seed: int, policy: LMActorCritic | None = None,
             reward_model: Any = None, samples: int = 1, packed: bool = False) -> list[Generation]:
    """Generations of ``spec`` for the examples ``idx`` (one batch): ``samples`` per prompt for a
    model policy (prompt-major), one per prompt for every other kind; ``packed``: a prompt's samples
    side by side in the env's batch (:func:`_samples`)."""
    setup = envs.unwrapped.setup
    if spec.kind == "random":
        return _random_batch(spec.name, env, envs, idx, seed)
    if spec.kind == "reference":
        if setup.turns > 1:
            return _replay_batch(spec.name, env, envs, idx, seed)
        return _reference_batch(spec.name, env, setup, idx)
    if policy is None:
        raise ValueError(f"policy {spec.name!r} needs a loaded model")
    if spec.kind == "model":
        return _samples(spec, env, envs, policy, idx, seed, samples, packed=packed)
    if spec.kind == "majority_vote":  # the answer most of n samples give; ties to the earliest
        gens = _samples(spec, env, envs, policy, idx, seed, spec.n)
        return _pick(gens, spec.n, lambda group: majority([extract_answer(g.text).strip() for g in group]))
    # best-of-n: n samples per prompt through the env, the reward model keeps the best
    if reward_model is None:
        raise ValueError(f"policy {spec.name!r} (best-of-n) needs a reward model for task {env!r}")
    gens = _samples(spec, env, envs, policy, idx, seed, spec.n, packed=True)
    rm = [float(v) for v in reward_model([Completion(prompt=g.prompt, text=g.text) for g in gens])]
    for g, v in zip(gens, rm, strict=True):
        g.scores["bon_rm_score"] = v
    return _pick(gens, spec.n, lambda group: max(range(len(group)), key=lambda m: group[m].scores["bon_rm_score"]))


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
    # perplexity of the model itself, untempered
    logp = score_actions(policy.model, batch, Sampling()).logprobs
    for i, r in enumerate(refs):
        out.append(float(-logp[i, :len(r)].sum()) / len(r))
    return out


@torch.no_grad()
def sample_logprobs(model_policy: LMActorCritic, gens: Sequence[Generation],
                    reference: torch.nn.Module) -> list[list[float]]:
    """Log-probs of each generation's actions under ``reference`` (same sampling transform), at the
    columns where they were sampled: a row holds its tokens as the policy read them."""
    if len(gens) > 8:
        return _by_length(gens, lambda chunk: sample_logprobs(model_policy, chunk, reference))
    batch = EpisodeBatch.from_episodes([g.prompt_ids for g in gens], [g.token_ids for g in gens],
                                       model_policy.pad_token_id, [g.positions for g in gens])
    ref = model_policy.reference_logprobs(batch, reference)
    return [ref[i, :len(g.positions)].tolist() for i, g in enumerate(gens)]
