"""The eval suite's Python API: generate with every policy on every task, score, bootstrap, tabulate.

    from evals.suite import SuiteConfig, evaluate_suite
    df = evaluate_suite(SuiteConfig(tasks=("TextCount-v0",), model="tiny",
                                    policies=("base=tiny", "random", "reference"), limit=16))

Returns a long-form DataFrame (policy, task, metric, value, ci_low, ci_high, n, higher_is_better).
A policy or task that fails (a missing or corrupt checkpoint, a reward that raises) is logged with a
message naming it and left out; every other row is still computed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from evals.generate import (
    Decoding,
    Generation,
    PolicySpec,
    batches,
    generate,
    load_policy,
    make_envs,
    parse_policy,
    reference_nll,
    sample_logprobs,
)
from evals.metrics import (
    METRICS,
    bootstrap_ci,
    distinct_n,
    higher_is_better,
    kl_per_token,
    load_metric,
    per_example_lengths,
    win_rate_values,
)
from evals.report import make_frame

__all__ = ["Failure", "SuiteConfig", "evaluate_suite", "generate_all", "score_generations"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SuiteConfig:
    tasks: tuple[str, ...] = ("TextSummarize-v0", "TextSentiment-v0")
    model: str = "smollm2-135m"  # the base model: its tokenizer, the KL reference, the win-rate baseline
    policies: tuple[str, ...] = ("base=smollm2-135m", "random", "reference")
    reward_models: tuple[str, ...] = ()  # "TASK=PATH": rm_score metric and best-of-n reranking
    metrics: tuple[str, ...] | None = None  # None: every metric that applies
    limit: int | None = 32
    seed: int = 0
    decoding: Decoding = Decoding()
    n_boot: int = 1000
    progress: bool = True
    device: str = "cpu"  # policies, the reference and reward models run here ("auto": CUDA when present)
    precision: str = "auto"  # "auto" (bf16 autocast on CUDA, fp32 elsewhere), "fp32" or "bf16"


@dataclass(frozen=True)
class Failure:
    policy: str
    task: str
    message: str


def _reward_models(cfg: SuiteConfig) -> dict[str, str]:
    out = {}
    for item in cfg.reward_models:
        task, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"bad reward model {item!r}: expected TASK=PATH")
        out[task] = path
    return out


def check_config(cfg: SuiteConfig) -> list[PolicySpec]:
    """Fail early on what can be checked without a model: unknown tasks, metrics, policy syntax."""
    import gymnasium as gym

    for task in cfg.tasks:
        try:
            gym.spec(task)
        except gym.error.Error as exc:
            raise ValueError(f"unknown task {task!r}: not a registered textenv id ({exc})") from exc
    if cfg.metrics is not None:
        unknown = [m for m in cfg.metrics if m not in METRICS and not m.startswith("reward/")]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; known: {sorted(METRICS)}")
    specs = [parse_policy(p) for p in cfg.policies]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"policy names must be unique, got {names}")
    if cfg.limit is not None and cfg.limit < 1:
        raise ValueError(f"limit must be >= 1, got {cfg.limit}")
    return specs


def _task_indices(envs, cfg: SuiteConfig) -> list[int]:
    n = len(envs.unwrapped.setup.examples)
    return list(range(n if cfg.limit is None else min(n, cfg.limit)))


def generate_all(cfg: SuiteConfig, shard: tuple[int, int] = (0, 1),
                 failures: list[Failure] | None = None) -> list[Generation]:
    """Every policy's generations (with their model-based scores) for this shard's batches."""
    from agents.policy import LMActorCritic, Sampling
    from textenv.devices import autocast, resolve_device
    from textenv.models import is_tiny, load_tokenizer
    from textenv.rewards import resolve

    failures = failures if failures is not None else []
    specs = check_config(cfg)
    device = resolve_device(cfg.device)
    rank, world = shard
    tokenizer = None if is_tiny(cfg.model) else load_tokenizer(cfg.model)
    rms = _reward_models(cfg)
    envs = {}
    for task in cfg.tasks:
        try:
            envs[task] = make_envs(task, cfg.model, tokenizer, cfg.decoding, cfg.decoding.batch_size)
        except Exception as exc:  # noqa: BLE001 - e.g. an empty test split: the other tasks still run
            logger.error("task %s skipped: %s: %s", task, type(exc).__name__, exc)
            failures.extend(Failure(s.name, task, f"{type(exc).__name__}: {exc}") for s in specs)
    sampling = Sampling(temperature=cfg.decoding.temperature, top_p=cfg.decoding.top_p)
    references: dict[int, LMActorCritic] = {}  # one base model per distinct tokenizer ("tiny" has one per task)
    for task_envs in envs.values():
        tok = task_envs.unwrapped.setup.tokenizer
        if id(tok) not in references:
            references[id(tok)] = LMActorCritic.from_pretrained(cfg.model, tokenizer=tok, sampling=sampling).to(device)
    loaded_rms: dict[str, Any] = {}
    out: list[Generation] = []
    unit = 0  # batches are dealt to processes round-robin across all (policy, task) pairs
    for spec in specs:
        for task, task_envs in envs.items():
            setup = task_envs.unwrapped.setup
            tok = setup.tokenizer
            reference = references[id(tok)]
            if spec.kind == "reference" and not setup.examples[0].references:
                logger.info("task %s has no references: no 'reference' row", task)
                continue
            every = batches(_task_indices(task_envs, cfg), cfg.decoding.batch_size)
            mine = [b for j, b in enumerate(every) if (unit + j) % world == rank]
            unit += len(every)
            if not mine:
                continue
            try:
                policy = None
                if spec.kind in ("model", "best_of_n"):
                    path = (spec.path or cfg.model).format(task=task)
                    policy = reference if path == cfg.model else load_policy(path, tok, cfg.decoding).to(device)
                if task in rms and task not in loaded_rms:  # loaded once per task, not once per policy
                    loaded_rms[task] = resolve("classifier", path=rms[task], device=str(device))
                rm = loaded_rms.get(task)
                for idx in tqdm(mine, desc=f"{spec.name} / {task}", disable=not cfg.progress, leave=False):
                    with autocast(device, cfg.precision):
                        gens = generate(spec, task, task_envs, idx, cfg.seed, policy=policy, reward_model=rm)
                        _model_scores(gens, policy, reference, rm, setup, cfg.metrics)
                    out.extend(gens)
            except Exception as exc:  # noqa: BLE001 - one failing (policy, task) must not sink the table
                logger.error("policy %r on %s skipped: %s: %s", spec.name, task, type(exc).__name__, exc)
                failures.append(Failure(spec.name, task, f"{type(exc).__name__}: {exc}"))
                out = [g for g in out if not (g.policy == spec.name and g.task == task)]
    return out


def _model_scores(gens: list[Generation], policy, reference, rm, setup, metrics: Sequence[str] | None) -> None:
    """Per-example scores that need a model, computed batch by batch (so they shard); only those
    of the requested ``metrics`` (None: all)."""
    from textenv.rewards import Completion
    from textenv.rewards.embed import BertScore

    def wanted(name: str) -> bool:
        return metrics is None or name in metrics

    eos = setup.eos_token_id
    if gens[0].references and wanted("bertscore"):
        for g, v in zip(gens, BertScore()([Completion(prompt=g.prompt, text=g.text, references=tuple(g.references))
                                           for g in gens]), strict=True):
            g.scores["bertscore"] = float(v)
    if rm is not None and wanted("rm_score"):
        todo = [g for g in gens if "bon_rm_score" not in g.scores]  # best-of-n already scored its pick
        for g in gens:
            if "bon_rm_score" in g.scores:
                g.scores["rm_score"] = g.scores["bon_rm_score"]
        if todo:
            for g, v in zip(todo, rm([Completion(prompt=g.prompt, text=g.text) for g in todo]), strict=True):
                g.scores["rm_score"] = float(v)
    if policy is not None and gens[0].logprobs is not None and wanted("kl_to_ref"):
        if policy is reference:  # the base model against itself: the same weights, KL exactly 0
            for g in gens:
                g.scores["kl_to_ref"] = 0.0
        else:
            ref = sample_logprobs(policy, gens, eos, reference.model)
            for g, r in zip(gens, ref, strict=True):
                g.scores["kl_to_ref"] = kl_per_token(g.logprobs[:len(r)], r)
    if policy is not None and gens[0].references and gens[0].logprobs is not None and wanted("ref_perplexity"):
        for g, v in zip(gens, reference_nll(policy, gens, eos), strict=True):
            g.scores["ref_nll"] = v


def _ci(values: Sequence[float], cfg: SuiteConfig, statistic: Callable = np.mean) -> tuple[float, float, float]:
    return bootstrap_ci(np.asarray(values, dtype=float), n_boot=cfg.n_boot, seed=cfg.seed, statistic=statistic)


def score_generations(gens: Sequence[Generation], cfg: SuiteConfig) -> pd.DataFrame:
    """Every metric with a 95% bootstrap CI, for every (policy, task) present in ``gens``."""
    gens = sorted(gens, key=lambda g: (g.task, g.policy, g.index))
    base_name = next((parse_policy(p).name for p in cfg.policies if parse_policy(p).kind == "model"
                      and (parse_policy(p).path or cfg.model) == cfg.model), None)
    rows: list[dict[str, Any]] = []
    groups: dict[tuple[str, str], list[Generation]] = {}
    for g in gens:
        groups.setdefault((g.policy, g.task), []).append(g)
    wanted = set(cfg.metrics) if cfg.metrics is not None else None

    def add(policy: str, task: str, metric: str, values: Sequence[float], statistic: Callable = np.mean) -> None:
        if wanted is not None and metric not in wanted:
            return
        values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
        if not values:
            return
        est, low, high = _ci(values, cfg, statistic)
        higher = higher_is_better(metric)
        rows.append({"policy": policy, "task": task, "metric": metric, "value": est, "ci_low": low,
                     "ci_high": high, "n": len(values), "higher_is_better": higher})

    for (policy, task), gs in groups.items():
        texts = [g.text for g in gs]
        add(policy, task, "reward", [g.reward for g in gs])
        parts = sorted({k for g in gs for k in g.parts})
        if len(parts) > 1:
            for part in parts:
                add(policy, task, f"reward/{part}", [g.parts.get(part) for g in gs])
        if gs[0].references:
            refs = [g.references for g in gs]
            rouge = load_metric("rouge").compute(predictions=texts, references=refs, use_aggregator=False)
            for key in ("rouge1", "rouge2", "rougeL"):
                add(policy, task, key, rouge[key])
            for key in ("bleu", "chrf"):
                res = load_metric(key).compute(predictions=texts, references=refs)
                add(policy, task, key, res["sentence_scores"])
        for key in ("bertscore", "rm_score", "kl_to_ref"):
            add(policy, task, key, [g.scores.get(key) for g in gs])
        add(policy, task, "ref_perplexity", [g.scores.get("ref_nll") for g in gs],
            statistic=lambda v: float(np.exp(np.mean(v))))
        for n in (1, 2):  # per completion, averaged: a mean, so the bootstrap CI is sound
            add(policy, task, f"distinct{n}", [distinct_n([t], n) for t in texts if len(t.split()) >= n])
        add(policy, task, "length", per_example_lengths(texts))
        if base_name is not None and policy != base_name and (base_name, task) in groups:
            base = {g.index: g.reward for g in groups[(base_name, task)]}
            pairs = [(g.reward, base[g.index]) for g in gs if g.index in base]
            if pairs:
                add(policy, task, "win_rate", win_rate_values([a for a, _ in pairs], [b for _, b in pairs]))
    return make_frame(rows)


def evaluate_suite(cfg: SuiteConfig, failures: list[Failure] | None = None) -> pd.DataFrame:
    """One process: generate everything, then score it."""
    return score_generations(generate_all(cfg, failures=failures), cfg)
