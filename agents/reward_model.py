"""Reward-model training: a Bradley–Terry sequence classifier on preference pairs.

A reward model is a sequence classifier with one output (``num_labels=1``) whose trunk starts from
a causal LM (the SFT model in the pipeline). It reads ``prompt + completion`` exactly as
:class:`textenv.rewards.classifier.SequenceClassifier` does (the prompt as
:meth:`textenv.core.TaskSetup.prompt_text` renders it, the completion appended with no separator,
left truncation), so the checkpoint plugs into any env::

    env = gym.make("TextSummarize-v0", reward=textenv.rewards.resolve("classifier", path=out))

Loss (Bradley & Terry 1952; Ouyang et al. 2022, eq. 1): ``-logsigmoid(r_chosen - r_rejected)``.
The pairs (:mod:`agents.preferences`): the policy's own samples ranked by the task's reward (the
synthetic labeler), the task's own pairs, and brevity negatives. Held-out accuracy is reported
over all pairs, per kind of pair and on length-matched pairs (``metrics.json``).

Run: ``python -m agents.reward_model --preset quick --env TextSentiment-v0``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

import textenv  # noqa: F401  (registers the envs)
from agents.config import check_numbers, prepare_out, save_config
from agents.distributed import Dist
from agents.preferences import TASK_PAIR_KINDS, Pair, length_matched, make_pairs, sample_pairs, task_setup
from agents.tracking import library_progress
from textenv.cli import arg, cli, parse_config
from textenv.context import ENV_HELP, EnvContext
from textenv.devices import autocast, resolve_device
from textenv.io import atomic_dir, check_output_dir
from textenv.models import DEFAULT_MODEL, freeze_below, is_tiny, load_checked, load_tokenizer, model_path, tiny_model
from textenv.tasks import SPLITS

__all__ = ["PRESETS", "RewardModelConfig", "accuracy_report", "bradley_terry_loss", "load_reward_model", "main",
           "score_texts", "train_reward_model"]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# model, loss, scoring


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Mean of ``-log sigmoid(r_chosen - r_rejected)`` (Bradley–Terry negative log-likelihood)."""
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def load_reward_model(model: str = DEFAULT_MODEL, tokenizer: Any = None, seed: int = 0):
    """``(tokenizer, AutoModelForSequenceClassification with one output)`` whose trunk is the
    causal LM ``model`` (``DEFAULT_MODEL``, "tiny" — built for ``tokenizer`` — or a local directory,
    which may also be a saved reward model). The new score head is seeded by ``seed``. A directory
    is checked as :func:`textenv.models.load_model` checks one: a trunk tensor missing from it is a
    one-line error naming it, not a reward model trained on randomly initialised blocks."""
    from transformers import AutoModelForSequenceClassification

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if is_tiny(model):
            if tokenizer is None:
                raise ValueError("model='tiny' needs the env's tokenizer (it is built from the task text)")
            lm = tiny_model(tokenizer, seed=seed)
            config = lm.config
            config.num_labels = 1
            rm = AutoModelForSequenceClassification.from_config(config)
            getattr(rm, rm.base_model_prefix).load_state_dict(getattr(lm, lm.base_model_prefix).state_dict())
        else:
            tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model)
            path = model_path(model)
            if Path(path).exists():
                check_output_dir(path, "model")
            rm = load_checked(AutoModelForSequenceClassification, path, new_head=True, num_labels=1)
    rm.config.pad_token_id = tokenizer.pad_token_id
    tokenizer.truncation_side = "left"  # as SequenceClassifier: keep the completion
    tokenizer.padding_side = "right"  # as SequenceClassifier: scores independent of the batch
    return tokenizer, rm


def score_texts(model, tokenizer, texts: Sequence[str], max_length: int, device: torch.device | str = "cpu",
                ) -> torch.Tensor:
    """One forward of the RM over ``texts`` (prompt + completion), tokenized as the classifier
    reward tokenizes them; returns the logits ``(len(texts),)`` (with grad if enabled)."""
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt").to(device)
    return model(**batch).logits[:, 0].float()


def margin_loss(margins: np.ndarray) -> float:
    """The Bradley–Terry loss of pairs given their margins ``r_chosen - r_rejected``."""
    m = torch.as_tensor(margins, dtype=torch.float32)
    return float(bradley_terry_loss(m, torch.zeros_like(m)))


@torch.no_grad()
def pair_margins(model, tokenizer, pairs: Sequence[Pair], max_length: int, batch_size: int = 16,
                 device: torch.device | str = "cpu", precision: str = "auto", progress: bool = True) -> np.ndarray:
    """``r_chosen - r_rejected`` for every pair (the model in eval mode, restored after)."""
    was_training = model.training
    model.eval()
    out = []
    for start in tqdm(range(0, len(pairs), batch_size), desc="eval", leave=False, disable=not progress):
        chunk = pairs[start:start + batch_size]
        with autocast(torch.device(device), precision):
            r = score_texts(model, tokenizer, [p.prompt + p.chosen for p in chunk]
                            + [p.prompt + p.rejected for p in chunk], max_length, device)
        out.append((r[: len(chunk)] - r[len(chunk):]).cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)


def accuracy_report(pairs: Sequence[Pair], margins: np.ndarray) -> dict[str, Any]:
    """Accuracy over all pairs, on length-matched pairs (:func:`agents.preferences.length_matched`:
    what the model knows beyond length) and per kind of pair, with the count behind each."""
    wins = np.asarray(margins) > 0
    matched = np.array([length_matched(p) for p in pairs], dtype=bool)
    report: dict[str, Any] = {
        "accuracy": float(wins.mean()) if len(wins) else None, "pairs": len(pairs),
        "accuracy_length_matched": float(wins[matched].mean()) if matched.any() else None,
        "pairs_length_matched": int(matched.sum()),
    }
    for kind in sorted({p.kind for p in pairs}):
        sel = np.array([p.kind == kind for p in pairs], dtype=bool)
        report[f"accuracy/{kind}"] = float(wins[sel].mean())
        report[f"pairs/{kind}"] = int(sel.sum())
    return report


# ---------------------------------------------------------------------------------------------
# config and training


@dataclass(frozen=True)
class RewardModelConfig(EnvContext):
    """Train a Bradley–Terry reward model on preference pairs from a textenv task (its prompts, reward and
    pairs); ``model`` is the trunk and the sampling policy (the SFT model in the pipeline)."""

    env: str = arg("TextSummarize-v0", ENV_HELP)
    epochs: int = arg(1, "passes over the training pairs")
    max_steps: int | None = arg(None, "stop after this many optimizer steps, >= 1 (None: run all epochs)")
    batch_size: int = arg(8, "pairs per optimizer step (2x sequences per forward)")
    lr: float = arg(1e-5, "AdamW learning rate")
    max_length: int = arg(512, "tokens per prompt+completion (left-truncated, as the classifier reward)")
    out: str | None = arg(None, "checkpoint directory (default: runs/reward_model/<env>)")
    limit: int | None = arg(None, "at most this many of the task's own training pairs (None: all; 0: none)")
    kinds: str = arg("all", "comma-separated kinds of the task's pairs to keep, or 'all'; the kinds: "
                            + ", ".join(TASK_PAIR_KINDS))
    samples_per_prompt: int = arg(4, "completions the policy samples per prompt for labeler-ranked pairs "
                                     "(0: no sampled pairs)")
    sample_prompts: int = arg(64, "training prompts that get sampled completions")
    sample_margin: float = arg(0.1, "least difference (>= 0) of the task's reward between the two sides of a "
                                    "sampled pair")
    sample_temperature: float = arg(1.0, "sampling temperature of the policy's completions")
    sample_max_new_tokens: int | None = arg(None, "token budget of sampled completions (default: the task's)")
    eval_split: str = arg("validation", f"held-out split for pairwise accuracy: one of {', '.join(SPLITS)}")
    eval_limit: int | None = arg(200, "at most this many of the task's own held-out pairs (None: all)")
    eval_sample_prompts: int = arg(32, "held-out prompts that get sampled completions")
    train_layers: int = arg(-1, "train only the top N transformer blocks + head (-1: all)")
    weight_decay: float = arg(0.0, "AdamW weight decay")
    progress: bool = arg(True, "show progress bars (ours and transformers' shard-writing ones)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_numbers(self, 1, "epochs", "max_steps", "batch_size", "max_length", "sample_max_new_tokens")
        check_numbers(self, 0, "limit", "eval_limit", "sample_prompts", "eval_sample_prompts", "sample_margin",
                      "weight_decay")
        check_numbers(self, 0, "lr", "sample_temperature", above=True)
        check_numbers(self, -1, "train_layers")
        if self.samples_per_prompt == 1 or self.samples_per_prompt < 0:
            raise ValueError(f"samples_per_prompt must be 0 or >= 2, got {self.samples_per_prompt}")
        if self.eval_split not in SPLITS:
            raise ValueError(f"unknown eval_split {self.eval_split!r}; expected one of {', '.join(SPLITS)}")
        self.kind_filter()  # an unknown kind would drop every task pair and train on sampled pairs alone

    def kind_filter(self) -> tuple[str, ...] | None:
        """The task pair kinds that ``kinds`` keeps (``None``: all); unknown kinds are an error."""
        if self.kinds == "all":
            return None
        kinds = tuple(k.strip() for k in self.kinds.split(","))
        unknown = [k for k in kinds if k not in TASK_PAIR_KINDS]
        if unknown:
            raise ValueError(f"unknown pair kinds {unknown} in kinds {self.kinds!r}; expected 'all' or a "
                             f"comma-separated list of {', '.join(TASK_PAIR_KINDS)}")
        return kinds


PRESETS: dict[str, RewardModelConfig] = {
    # a few minutes on 2 CPU cores with the default model: the top blocks + head, short sequences.
    "quick": RewardModelConfig(epochs=2, batch_size=8, lr=1e-4, max_length=128, limit=128, eval_limit=64,
                               train_layers=4, sample_prompts=48, eval_sample_prompts=24,
                               sample_max_new_tokens=32),
    # Sentiment's own pairs are cheap tweets: 512 instead of 128 (why: leaderboards/README.md).
    "quick-sentiment": RewardModelConfig(epochs=2, batch_size=8, lr=1e-4, max_length=128, limit=512, eval_limit=64,
                                         train_layers=4, sample_prompts=48, eval_sample_prompts=24,
                                         sample_max_new_tokens=32),
    # the tiny random model on TextCount-v0: seconds, for tests and for trying the CLI.
    "tiny": RewardModelConfig(env="TextCount-v0", model="tiny", epochs=1, batch_size=8, lr=1e-3, max_length=48,
                              limit=64, eval_limit=32, sample_prompts=16, eval_sample_prompts=8,
                              sample_max_new_tokens=12, device="cpu"),
    # one GPU: every layer, all pairs, two epochs.
    "default": RewardModelConfig(epochs=2, batch_size=16, lr=1e-5, max_length=512, eval_limit=256,
                                 sample_prompts=512, eval_sample_prompts=128),
}


def build_pairs(config: RewardModelConfig, tokenizer: Any, split: str, device: torch.device) -> list[Pair]:
    """The task's own pairs plus the policy's labeler-ranked samples for ``split``."""
    held = split != "train"
    kinds = config.kind_filter()
    limit = config.eval_limit if held else config.limit
    pairs = []
    if limit != 0:
        pairs += make_pairs(config.env, split, config.model, tokenizer, limit, config.seed + held, kinds)
    n_prompts = config.eval_sample_prompts if held else config.sample_prompts
    if config.samples_per_prompt and n_prompts:
        pairs += sample_pairs(config.env, split, config.model, tokenizer, n_prompts, config.samples_per_prompt,
                              config.sample_margin, config.sample_max_new_tokens, config.sample_temperature,
                              config.seed + held, device, config.precision)
    return pairs


def _pairs(config: RewardModelConfig, tokenizer: Any, device: torch.device) -> tuple[list[Pair], list[Pair]]:
    """The train and held-out pairs (:func:`build_pairs`); none on either side is an error."""
    train = build_pairs(config, tokenizer, "train", device)
    held = build_pairs(config, tokenizer, config.eval_split, device)
    if not train or not held:
        raise ValueError(f"no preference pairs for {config.env!r} (train {len(train)}, held-out {len(held)})")
    return train, held


def _held_out(model, tokenizer, held: Sequence[Pair], config: RewardModelConfig,
              device: torch.device) -> tuple[dict[str, Any], float]:
    """The held-out accuracy report (:func:`accuracy_report`) and Bradley–Terry loss."""
    m = pair_margins(model, tokenizer, held, config.max_length, 2 * config.batch_size, device, config.precision,
                     config.progress)
    return accuracy_report(held, m), margin_loss(m)


def _eval_metrics(before: tuple[dict[str, Any], float], after: tuple[dict[str, Any], float]) -> dict[str, Any]:
    """The ``eval/`` metrics of a run from its held-out ``(report, loss)`` before and after training."""
    (report0, loss0), (report1, loss1) = before, after
    return {
        "eval/accuracy_before": report0["accuracy"], "eval/loss_before": loss0,
        "eval/accuracy_after": report1["accuracy"], "eval/loss_after": loss1,
        "eval/accuracy_length_matched_after": report1["accuracy_length_matched"],
        **{f"eval/before/{k}": v for k, v in report0.items()},
        **{f"eval/after/{k}": v for k, v in report1.items()},
    }


def _train_steps(model, tokenizer, train: Sequence[Pair], config: RewardModelConfig, dist: Dist,
                 device: torch.device) -> tuple[int, list[float], list[float]]:
    """AdamW on :func:`bradley_terry_loss` over seeded shuffles of ``train``, ``batch_size`` pairs a
    step, for ``epochs`` (at most ``max_steps``); ``(steps, loss per step, accuracy per step)``. A
    non-finite gradient norm stops the run on every process."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    total = config.epochs * math.ceil(len(train) / config.batch_size)
    total = min(total, config.max_steps) if config.max_steps is not None else total
    rng = np.random.default_rng(config.seed)
    model.train()
    step, losses, accs = 0, [], []
    bar = tqdm(total=total, desc="reward model", disable=not config.progress)
    while step < total:
        order = rng.permutation(len(train))
        for start_i in range(0, len(order), config.batch_size):
            if step >= total:
                break
            chunk = [train[i] for i in order[start_i:start_i + config.batch_size]]
            with autocast(device, config.precision):
                r = score_texts(model, tokenizer, [p.prompt + p.chosen for p in chunk]
                                + [p.prompt + p.rejected for p in chunk], config.max_length, device)
            rc, rr = r[: len(chunk)], r[len(chunk):]
            loss = bradley_terry_loss(rc, rr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            dist.average_gradients(params)
            norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
            if dist.any(not torch.isfinite(norm)):
                bar.close()
                raise FloatingPointError(f"reward-model gradient became {float(norm)} at step {step}; "
                                         f"lower lr (now {config.lr})")
            opt.step()
            step += 1
            losses.append(loss.item())
            accs.append(float((rc > rr).float().mean()))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", acc=f"{np.mean(accs[-20:]):.2f}")
    bar.close()
    return step, losses, accs


def _save(model, tokenizer, config: RewardModelConfig, metrics: dict, out: Path) -> None:
    """The checkpoint, atomically: weights, tokenizer, config and metrics."""
    with atomic_dir(out) as tmp, library_progress(config.progress):
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        save_config(config, tmp / "reward_model_config.json")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))


def train_reward_model(config: RewardModelConfig, tokenizer: Any = None) -> dict:
    """Build pairs, measure held-out accuracy, train, measure again, write the checkpoint.

    Returns the metrics also written to ``<out>/metrics.json``: ``eval/accuracy_before|after``
    over all held-out pairs, ``eval/after/accuracy_length_matched`` and per-kind accuracies.
    ``tokenizer`` is only needed to pin the vocabulary of ``model='tiny'``.
    """
    start = time.perf_counter()
    device = resolve_device(config.device)
    out = prepare_out(config.out or f"runs/reward_model/{config.env}", sweep=Dist().is_main)  # before any work
    torch.manual_seed(config.seed)
    if tokenizer is None:
        tokenizer = task_setup(config.env, "train", config.model).tokenizer
    train, held = _pairs(config, tokenizer, device)
    tokenizer, model = load_reward_model(config.model, tokenizer, config.seed)
    model.to(device)
    freeze_below(model, config.train_layers)
    dist = Dist()  # under `accelerate launch`: an equal shard of the pairs per process, averaged gradients
    if dist.world > 1:
        train = train[:len(train) // dist.world * dist.world][dist.rank::dist.world]
    logger.info("%d train pairs %s, %d %s pairs %s", len(train), dict(Counter(p.kind for p in train)), len(held),
                config.eval_split, dict(Counter(p.kind for p in held)))
    before, loss0 = _held_out(model, tokenizer, held, config, device)
    logger.info("before training: %s accuracy %.3f, loss %.4f", config.eval_split, before["accuracy"], loss0)
    step, losses, accs = _train_steps(model, tokenizer, train, config, dist, device)
    after, loss1 = _held_out(model, tokenizer, held, config, device)
    logger.info("after training: %s accuracy %.3f (length-matched %s), loss %.4f; %s", config.eval_split,
                after["accuracy"], after["accuracy_length_matched"], loss1, after)
    metrics = {
        "env": config.env, "model": config.model, "steps": step,
        "train_pairs": len(train), "eval_pairs": len(held), "eval_split": config.eval_split,
        "train_pair_kinds": dict(Counter(p.kind for p in train)),
        **_eval_metrics((before, loss0), (after, loss1)),
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
    _save(model, tokenizer, config, metrics, out)
    dist.barrier()
    metrics["out"] = str(out)
    return metrics


def main(argv: Sequence[str] | None = None) -> dict:
    config = parse_config(RewardModelConfig, argv, PRESETS, description=RewardModelConfig.__doc__)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    metrics = train_reward_model(config)
    if Dist().is_main:  # one report, not one per process
        print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    cli(main)
