"""Supervised fine-tuning: the first stage of the RLHF recipe (SFT -> reward model -> PPO).

``python -m agents.sft --env TextSummarize-v0`` fine-tunes a causal LM on a task's train split and
writes a checkpoint that ``textenv.models.load_model(out)`` (and so ``gym.make(..., model=out)``)
loads. Two modes:

- ``sft``: input = the env's own prompt text (:meth:`TaskSetup.prompt_text`, chat template for
  instruct models) + a reference + EOS; the loss is on the completion only. Using the env's prompt
  code rather than a re-implementation means the policy PPO later starts from has been trained on
  exactly the observations the env shows it; ending on EOS teaches it to stop, which the env's
  episodes (terminated on EOS) and its length penalties reward.
- ``domain``: continued LM training on the task's raw text (inputs and references, no template),
  loss on every token: adapts the model to the domain without teaching it a response format.

Validation loss and perplexity (validation split, same masking) are measured before training, every
``eval_every`` steps and at the end; ``<out>/metrics.json`` records them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

import textenv  # noqa: F401  (registers the env ids)
from agents.config import check_numbers, prepare_out, save_config
from agents.distributed import Dist, parameter_checksum
from agents.kvcache import pad
from agents.tracking import library_progress
from textenv.cli import arg, cli, parse_config
from textenv.context import ENV_HELP, EnvContext
from textenv.core import TaskSetup
from textenv.devices import autocast, resolve_device
from textenv.io import atomic_dir
from textenv.models import enable_checkpointing, load_model
from textenv.tasks import setup_kwargs_of, task_of

__all__ = ["PRESETS", "SFTConfig", "SFTResult", "build_example", "collate", "fit", "main",
           "save_checkpoint", "train_sft"]

logger = logging.getLogger(__name__)

IGNORE = -100  # the label torch's cross_entropy skips: prompt and padding positions


@dataclasses.dataclass(frozen=True)
class SFTConfig(EnvContext):
    """Supervised fine-tuning (or domain-adaptive LM training) on a textenv task: its data and prompts."""

    env: str = arg("TextSummarize-v0", ENV_HELP)
    mode: Literal["sft", "domain"] = arg("sft", "'sft': loss on reference completions after the env's "
                                         "prompt; 'domain': LM loss on the task's raw text")
    epochs: int = arg(3, "passes over the training examples")
    max_steps: int | None = arg(None, "stop after this many optimizer steps, >= 1 (None: run all epochs)")
    batch_size: int = arg(8, "sequences per micro-batch")
    grad_accum: int = arg(1, "micro-batches per optimizer step")
    lr: float = arg(5e-5, "peak AdamW learning rate (linear warmup, then linear decay to 0)")
    weight_decay: float = arg(0.0, "AdamW weight decay on matrices (not on biases or norms)")
    warmup_steps: int = arg(20, "optimizer steps of linear learning-rate warmup")
    max_grad_norm: float | None = arg(1.0, "clip the global gradient norm to this (None: no clipping)")
    max_length: int = arg(640, "tokens per sequence; prompts lose their first tokens first, as in the env")
    eval_every: int = arg(0, "evaluate on the validation split every N optimizer steps (0: at start and end)")
    eval_limit: int | None = arg(None, "use at most N validation examples (None: all)")
    limit: int | None = arg(None, "use at most N training examples (None: all)")
    gradient_checkpointing: bool = arg(False, "recompute activations in the backward pass (less memory, ~30% slower)")
    out: str | None = arg(None, "checkpoint directory (None: runs/sft/<env>)")
    progress: bool = arg(True, "show progress bars (ours and transformers' shard-writing ones)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in ("sft", "domain"):
            raise ValueError(f"unknown mode {self.mode!r}; expected 'sft' or 'domain'")
        check_numbers(self, 1, "epochs", "max_steps", "batch_size", "grad_accum", "eval_limit", "limit")
        check_numbers(self, 2, "max_length")  # at least one prompt and one completion token
        check_numbers(self, 0, "lr", "max_grad_norm", above=True)
        check_numbers(self, 0, "weight_decay", "warmup_steps", "eval_every")


PRESETS: dict[str, SFTConfig] = {
    # A few minutes on 2 CPU cores with the default model: a smoke run, not a useful model.
    "quick": SFTConfig(epochs=1, max_steps=10, batch_size=2, grad_accum=2, lr=5e-5, warmup_steps=2,
                       max_length=160, eval_limit=12, limit=40, device="cpu"),
    # Reasoning's answers are a few tokens: short sequences, bigger batches (what `make run` trains).
    "quick-reasoning": SFTConfig(epochs=1, max_steps=64, batch_size=8, lr=1e-4, warmup_steps=5, max_length=96,
                                 eval_limit=64),
    # Tool demonstrations (the call, its result, the answer): deliberately few, so RL has room to add.
    # ~300-token sequences: activation checkpointing (the same weights bit for bit) keeps the stage
    # under the tools suite's 6 GB (8.4 GB without).
    "quick-reasoningtools": SFTConfig(epochs=1, max_steps=4, batch_size=8, lr=1e-4, warmup_steps=1, max_length=320,
                                      limit=32, eval_limit=32, gradient_checkpointing=True),
    # QA's answers are a few words after a ~300-token passage: long prompts, short targets.
    "quick-qa": SFTConfig(epochs=1, max_steps=32, batch_size=4, lr=1e-4, warmup_steps=4, max_length=480,
                          eval_limit=32),
    # Dialogue: whole conversations (three real replies, the other side's turns between, unlabelled).
    "quick-dialogue": SFTConfig(epochs=1, max_steps=32, batch_size=4, lr=1e-4, warmup_steps=4, max_length=448,
                                eval_limit=32),
    # The tiny random model on TextCount-v0: seconds, for tests and for trying the CLI.
    "tiny": SFTConfig(env="TextCount-v0", model="tiny", epochs=1, max_steps=20, batch_size=8, lr=1e-3,
                      warmup_steps=2, max_length=48, eval_limit=16, limit=160, device="cpu"),
    # One GPU: the full train split, three epochs.
    "default": SFTConfig(epochs=3, batch_size=16, grad_accum=1, lr=5e-5, warmup_steps=20, weight_decay=0.01,
                         max_length=640, eval_every=50),
}
PRESETS["quick-reasoninghard"] = PRESETS["quick-reasoning"]  # the tools suite's SFT without tools: the answers


class SFTResult(NamedTuple):
    model: Any  # the trained transformers causal LM, in eval mode
    tokenizer: Any
    metrics: dict[str, Any]


# ---------------------------------------------------------------------------------------------
# data


def build_example(prompt_ids: Sequence[int], completion_ids: Sequence[int], max_length: int,
                  completion_labels: Sequence[int] | None = None) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` for one sequence: labels are ``-100`` on the prompt, the completion's
    ids elsewhere (so the loss is on the completion only; ``completion_labels`` overrides them, e.g.
    ``-100`` on the other side's turns of a conversation). Over ``max_length``, the prompt loses its
    first tokens (the env keeps a prompt's end too: the instruction and generation cue sit there),
    but keeps at least half the budget; then the completion is cut at its end."""
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2, got {max_length}")
    prompt, completion = list(prompt_ids), list(completion_ids)
    labels = completion if completion_labels is None else list(completion_labels)
    if len(labels) != len(completion):
        raise ValueError(f"{len(labels)} completion labels for {len(completion)} completion tokens")
    keep = max(max_length - len(completion), max_length // 2)
    prompt = prompt[-keep:] if len(prompt) > keep else prompt
    completion, labels = completion[:max_length - len(prompt)], labels[:max_length - len(prompt)]
    return prompt + completion, [IGNORE] * len(prompt) + labels


def conversation(setup: TaskSetup, index: int) -> tuple[list[int], list[int]]:
    """A multi-turn example as the env lays it out after the prompt: ``(ids, labels)`` with each real
    reply and its EOS labelled (the agent's tokens) and the other side's turns between them, chat
    template included (:func:`textenv.turns.user_turn_ids`), at ``-100``."""
    from textenv.turns import user_turn_ids

    tok, eos = setup.tokenizer, setup.eos_token_id
    ids: list[int] = []
    labels: list[int] = []
    replies = setup.examples[index].metadata["replies"][:setup.turns]
    for k, reply in enumerate(replies):
        turn = tok(reply, add_special_tokens=False)["input_ids"][:setup.max_turn_tokens - 1] + [eos]
        ids += turn
        labels += turn
        if k + 1 < len(replies):
            user = user_turn_ids(setup, index, k)
            ids += user
            labels += [IGNORE] * len(user)
    return ids, labels


def tool_conversation(setup: TaskSetup, index: int) -> tuple[list[int], list[int]] | None:
    """A demonstration of a tool episode as the env lays it out after the prompt: each call the task
    demonstrates (:attr:`textenv.tasks.Task.tool_calls`) as an agent turn ending at its closing tag
    (labelled), the EOS the env writes and the tool turn, run by the env's own tools (both ``-100``),
    then the reference answer and its EOS (labelled). None when the task skips the example, or when
    its calls' results (as the env shows them, cut at ``max_tool_result_chars``) hold no reference:
    SFT never shows an answer the conversation does not contain (a search that missed it)."""
    from textenv.tools import CLOSE, OPEN
    from textenv.turns import tool_reply

    tok, eos = setup.tokenizer, setup.eos_token_id
    example = setup.examples[index]
    hook = setup.task.tool_calls
    calls = hook(example, frozenset(setup.tool_table)) if hook is not None else []
    if calls is None:
        return None
    ids: list[int] = []
    labels: list[int] = []
    results = []
    for call in calls[:setup.tool_limits.max_calls]:
        body = json.dumps(call)
        turn = tok(f"{OPEN}{body}{CLOSE}", add_special_tokens=False)["input_ids"]
        reply = tool_reply(setup, body, example)
        results.append(reply.text)
        inserted = [eos, *reply.ids]
        ids += turn + inserted
        labels += turn + [IGNORE] * len(inserted)
    if results and not any(ref in text for ref in example.references for text in results):
        return None
    answer = tok(example.references[0], add_special_tokens=False)["input_ids"] + [eos]
    return ids + answer, labels + answer


def collate(batch: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch (positions then start at 0 for every row, as in generation without
    padding); padding has attention 0 and label ``-100``."""
    input_ids, mask = pad([ids for ids, _ in batch], pad_id, "right")
    labels, _ = pad([lab for _, lab in batch], IGNORE, "right", width=input_ids.shape[1])
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def _sequences(setup: TaskSetup, mode: str, max_length: int, limit: int | None) -> list[tuple[list, list]]:
    """The split's training sequences; multi-reference examples give one sequence per reference."""
    tok, eos = setup.tokenizer, setup.eos_token_id
    n = len(setup.examples) if limit is None else min(limit, len(setup.examples))
    if n < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    out = []
    if mode == "sft":
        for i in range(n):
            prompt = setup.encode(i).ids.tolist()  # the env's exact prompt ids, truncation included
            refs = setup.examples[i].references
            if not refs:
                raise ValueError(f"mode 'sft' needs references; task {setup.task.name!r} has none "
                                 f"(example {i} of split {setup.split!r}); try mode 'domain'")
            if setup.tools:  # a tool episode: the demonstrated calls, their results, the answer
                demo = tool_conversation(setup, i)
                if demo is not None:
                    out.append(build_example(prompt, demo[0], max_length, completion_labels=demo[1]))
                continue
            if setup.turns > 1:  # the whole conversation: every real reply, the other side's turns between
                ids, labels = conversation(setup, i)
                out.append(build_example(prompt, ids, max_length, completion_labels=labels))
                continue
            for ref in refs:
                out.append(build_example(prompt, tok(ref, add_special_tokens=False)["input_ids"] + [eos],
                                         max_length))
    elif mode == "domain":
        texts = [t for ex in setup.examples[:n] for t in (ex.text, *ex.references)]
        for text in dict.fromkeys(texts):  # unique, in order: aspects share their abstract
            ids = (tok(text, add_special_tokens=False)["input_ids"] + [eos])[:max_length]
            out.append((ids, list(ids)))
    else:
        raise ValueError(f"unknown mode {mode!r}; expected 'sft' or 'domain'")
    return out


def _batches(seqs: list, batch_size: int, generator: torch.Generator | None = None) -> list[list]:
    order = (torch.randperm(len(seqs), generator=generator).tolist() if generator is not None
             else list(range(len(seqs))))
    return [[seqs[i] for i in order[k:k + batch_size]] for k in range(0, len(order), batch_size)]


# ---------------------------------------------------------------------------------------------
# loss


def _loss_sum(model, batch: dict[str, torch.Tensor], device: torch.device,
              precision: str = "auto") -> tuple[torch.Tensor, int]:
    """Summed next-token NLL over the labelled positions, and their count (sums, not means, so
    validation perplexity weights every token equally across batches of any length)."""
    batch = {k: v.to(device) for k, v in batch.items()}
    with autocast(device, precision):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)), labels.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")
    return loss, int((labels != IGNORE).sum())


@torch.no_grad()
def _evaluate(model, batches: list, pad_id: int, device: torch.device, precision: str = "auto") -> dict[str, float]:
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for b in batches:
        loss, n = _loss_sum(model, collate(b, pad_id), device, precision)
        total, count = total + float(loss), count + n
    model.train(was_training)
    loss = total / max(count, 1)
    return {"loss": loss, "ppl": math.exp(min(loss, 700.0))}


# ---------------------------------------------------------------------------------------------
# training


def _task_setups(config: SFTConfig, tokenizer: Any) -> tuple[TaskSetup, TaskSetup]:
    """The train and validation splits as the env builds them (the registration's tools and budgets),
    both on the train split's tokenizer."""
    task = task_of(config.env)
    env_kwargs = setup_kwargs_of(config.env)
    train = TaskSetup(task, "train", model=config.model, tokenizer=tokenizer, **env_kwargs)
    val = TaskSetup(task, "validation", model=config.model, tokenizer=train.tokenizer, **env_kwargs)
    return train, val


def _trainable_model(config: SFTConfig, tokenizer: Any, device: torch.device) -> tuple[Any, Any]:
    """``(tokenizer, model)``: the model to train, on ``device`` in train mode, with activation
    checkpointing when asked (undone by :func:`_for_inference`)."""
    tokenizer, model = load_model(config.model, tokenizer=tokenizer, seed=config.seed)
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        raise ValueError(f"model {config.model!r} has fewer embeddings than its tokenizer has tokens")
    model.to(device).train()
    if config.gradient_checkpointing:
        enable_checkpointing(model)
        model.config.use_cache = False
    return tokenizer, model


def _for_inference(model: Any, config: SFTConfig) -> Any:
    """The trained model as generation wants it: checkpointing off, the KV cache on, eval mode."""
    if config.gradient_checkpointing:
        (getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable)()
        model.config.use_cache = True
    return model.eval()


def _total_steps(config: SFTConfig, n_train: int) -> int:
    """Optimizer steps: ``epochs`` passes over ``n_train`` sequences, at most ``max_steps``."""
    micro_per_epoch = math.ceil(n_train / config.batch_size)
    total = config.epochs * math.ceil(micro_per_epoch / config.grad_accum)
    return total if config.max_steps is None else min(total, config.max_steps)


def _optimizer(model: Any, config: SFTConfig, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW (no weight decay on biases and norms) and its schedule: linear warmup over
    ``warmup_steps``, then linear decay to 0 at ``total_steps``."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    warmup = config.warmup_steps

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


@dataclasses.dataclass
class _Learner:
    """What one optimizer step touches."""

    model: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    dist: Dist
    device: torch.device
    pad_id: int
    config: SFTConfig

    def step(self, micro: list) -> tuple[float, int]:
        """One optimizer step over the micro-batches ``micro``: its train loss per labelled token,
        and the tokens it read."""
        group = [collate(b, self.pad_id) for b in micro]
        # Normalise by the labelled tokens of the whole optimizer step, so grad_accum=2 with
        # batch 4 gives the same gradient as batch 8.
        n_labels = sum(int((g["labels"][:, 1:] != IGNORE).sum()) for g in group)
        step_loss, tokens = 0.0, 0
        for g in group:
            loss, _ = _loss_sum(self.model, g, self.device, self.config.precision)
            (loss / max(n_labels, 1)).backward()
            step_loss += float(loss.detach())
            tokens += int(g["attention_mask"].sum())
        self.dist.average_gradients(self.model.parameters())
        if self.config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return step_loss / max(n_labels, 1), tokens


def _train_steps(learner: _Learner, train: list, total_steps: int, evaluate: Callable[[], dict[str, float]],
                 history: list[dict[str, float]]) -> tuple[int, int, list[float]]:
    """Run ``total_steps`` optimizer steps over seeded shuffles of ``train``, evaluating every
    ``eval_every`` steps (appended to ``history``); ``(steps, tokens read, train loss per step)``.
    A non-finite train loss stops the run on every process."""
    config = learner.config
    generator = torch.Generator().manual_seed(config.seed)
    step, tokens, train_losses = 0, 0, []
    bar = tqdm(total=total_steps, desc=f"sft {config.env}", unit="step", leave=False, disable=not config.progress)
    while step < total_steps:
        micro = _batches(train, config.batch_size, generator)
        for k in range(0, len(micro), config.grad_accum):
            loss, n_tokens = learner.step(micro[k:k + config.grad_accum])
            step, tokens = step + 1, tokens + n_tokens
            train_losses.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
            if learner.dist.any(not math.isfinite(loss)):
                bar.close()
                raise FloatingPointError(f"train loss became {loss} at step {step}; "
                                         f"lower lr (now {config.lr}) or check the data")
            if config.eval_every > 0 and step % config.eval_every == 0 and step < total_steps:
                ev = evaluate()
                history.append({"step": step, "train_loss": loss, "val_loss": ev["loss"], "val_ppl": ev["ppl"]})
                logger.info("step %d: train loss %.4f, val loss %.4f, ppl %.2f", step, loss, ev["loss"], ev["ppl"])
            if step >= total_steps:
                break
    bar.close()
    return step, tokens, train_losses


def fit(config: SFTConfig, tokenizer: Any = None) -> SFTResult:
    """Train a model as ``config`` says and return it with its metrics; writes nothing.

    ``tokenizer``: the tokenizer to train with (for ``model="tiny"``, the env's own, so the model's
    vocabulary is the env's action space); default: the one the env would load.
    """
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    train_setup, val_setup = _task_setups(config, tokenizer)
    tokenizer, model = _trainable_model(config, train_setup.tokenizer, device)
    pad_id = train_setup.pad_token_id
    train = _sequences(train_setup, config.mode, config.max_length, config.limit)
    dist = Dist()  # under `accelerate launch`: an equal shard of the data per process, averaged gradients
    if dist.world > 1:
        train = train[:len(train) // dist.world * dist.world][dist.rank::dist.world]
    val = _sequences(val_setup, config.mode, config.max_length, config.eval_limit)
    val_batches = _batches(val, config.batch_size)
    total_steps = _total_steps(config, len(train))
    logger.info("%s on %s (%s): %d train / %d val sequences, %d optimizer steps on %s", config.mode,
                config.env, config.model, len(train), len(val), total_steps, device)
    optimizer, scheduler = _optimizer(model, config, total_steps)

    def evaluate() -> dict[str, float]:
        return _evaluate(model, val_batches, pad_id, device, config.precision)

    initial = evaluate()
    history: list[dict[str, float]] = [{"step": 0, "val_loss": initial["loss"], "val_ppl": initial["ppl"]}]
    logger.info("step 0: val loss %.4f, ppl %.2f", initial["loss"], initial["ppl"])
    start = time.perf_counter()
    learner = _Learner(model, optimizer, scheduler, dist, device, pad_id, config)
    step, tokens, train_losses = _train_steps(learner, train, total_steps, evaluate, history)
    wall = time.perf_counter() - start
    final = evaluate()
    recent = train_losses[-max(1, min(10, len(train_losses))):]
    final_train = sum(recent) / len(recent) if recent else float("nan")
    history.append({"step": step, "train_loss": final_train, "val_loss": final["loss"],
                    "val_ppl": final["ppl"]})
    logger.info("step %d: train loss %.4f, val loss %.4f -> %.4f, ppl %.2f -> %.2f", step, final_train,
                initial["loss"], final["loss"], initial["ppl"], final["ppl"])
    metrics = {
        "env": config.env, "model": config.model, "mode": config.mode, "steps": step,
        "train_sequences": len(train), "val_sequences": len(val),
        "initial_val_loss": initial["loss"], "initial_val_ppl": initial["ppl"],
        "final_val_loss": final["loss"], "final_val_ppl": final["ppl"],
        "final_train_loss": final_train, "wall_time_s": wall,
        "tokens": tokens, "tokens_per_s": tokens / wall if wall > 0 else float("nan"),
        "history": history,
    }
    if dist.world > 1:
        logger.info("process %d/%d parameter checksum %s", dist.rank, dist.world, parameter_checksum(model))
    return SFTResult(_for_inference(model, config), tokenizer, metrics)


def save_checkpoint(result: SFTResult, config: SFTConfig, out: str | Path) -> Path:
    """Write model (safetensors), tokenizer, ``sft_config.json`` and ``metrics.json`` to ``out``
    atomically; refuse a model whose final losses are not finite (it would load and look fine)."""
    m = result.metrics
    bad = {k: m[k] for k in ("final_val_loss", "final_train_loss") if not math.isfinite(m[k])}
    if bad:
        raise FloatingPointError(f"not writing a checkpoint to {out}: non-finite final loss {bad}")
    with atomic_dir(out) as tmp:
        result.model.save_pretrained(tmp, safe_serialization=True)
        result.tokenizer.save_pretrained(tmp)
        save_config(config, tmp / "sft_config.json")
        (tmp / "metrics.json").write_text(json.dumps(m, indent=2))
    logger.info("checkpoint written to %s", out)
    return Path(out)


def train_sft(config: SFTConfig, tokenizer: Any = None) -> dict[str, Any]:
    """Train (:func:`fit`), write the checkpoint to ``config.out`` and return the metrics. The output
    path is checked (and swept of killed runs' temporary folders) before any training."""
    dist = Dist()
    out = prepare_out(config.out or Path("runs") / "sft" / config.env, sweep=dist.is_main)
    with library_progress(config.progress):
        result = fit(config, tokenizer)
        if dist.is_main:  # identical weights everywhere: one process writes
            save_checkpoint(result, config, out)
        dist.barrier()
    return {**result.metrics, "out": str(out)}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = parse_config(SFTConfig, argv, presets=PRESETS)
    metrics = train_sft(config)
    if Dist().is_main:  # one report, not one per process
        print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=2))
    return metrics


if __name__ == "__main__":
    cli(main)
