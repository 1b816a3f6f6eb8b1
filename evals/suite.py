"""The eval suite's Python API: generate with every policy on every task, score, bootstrap, tabulate.

    from evals.suite import SuiteConfig, evaluate_suite
    df = evaluate_suite(SuiteConfig(envs=("TextCount-v0",), model="tiny",
                                    policies=("base=tiny", "random", "reference"), limit=16))

Returns a long-form DataFrame (policy, task, metric, value, ci_low, ci_high, n, higher_is_better).
A policy or task that fails (a missing or corrupt checkpoint, a reward that raises) is logged with a
message naming it and left out; every other row is still computed.

Policies (``SuiteConfig.policies``, :func:`evals.generate.parse_policy`):

- ``NAME=PATH``: a model name or checkpoint directory (``{task}`` in it is replaced per task);
  it samples K completions per prompt where ``samples`` asks for K (default 1);
- ``NAME=bon:PATH``: best-of-n (n=4) of ``PATH``'s samples, reranked by the task's reward model;
- ``NAME=vote:PATH``: majority vote (self-consistency, Wang et al. 2022) over n=4 samples: the
  answer most samples give after the verifier's answer extraction wins, ties to the earliest;
  no reward model needed;
- ``random`` and ``reference``: uniformly random tokens and the task's reference.

Samples (``SuiteConfig.samples``, task -> K): every per-example metric is averaged over a
prompt's K samples first and then bootstrapped over prompts, so ``n`` and the CIs count prompts.
Every task also reports ``accuracy`` (pass@1: the share of samples whose reward is at least 1, a
verifier's full score), and a task with K > 1 reports ``pass@K`` (Chen et al. 2021's unbiased
estimator; with n = k samples, "any of the K is correct"). Metrics that mean nothing for a task
(:func:`evals.metrics.task_metrics`: n-gram overlap of a one-number answer) are not computed.

Starts (:func:`policy_starts`): each policy trained or sampled from another one of the run gets a
``delta/<metric>`` row, its paired difference from that start on the task's first headline metric
(:mod:`evals.paired`), over the prompts both scored.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from evals.generate import (
    MAX_SAMPLES,
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
    CORRECT_REWARD,
    DELTA_PREFIX,
    METRICS,
    PASS_AT_PREFIX,
    bootstrap_ci,
    distinct_n,
    higher_is_better,
    is_metric,
    kl_per_token,
    load_metric,
    pass_at_k,
    per_example_lengths,
    prompt_means,
    task_metrics,
    win_rate_values,
)
from evals.paired import paired_difference, runs_interval
from evals.report import SEED_MARK, has_control_characters, make_frame
from textenv.context import RunContext
from textenv.models import DEFAULT_MODEL

__all__ = ["SAMPLES_FORM", "Failure", "SuiteConfig", "check_policy_name", "env_limits", "evaluate_suite",
           "generate_all", "policy_starts", "recorded_start", "score_generations", "seed_rows"]

logger = logging.getLogger(__name__)

SAMPLES_FORM = f"TASK=K with K an integer in 1..{MAX_SAMPLES}"  # what --samples takes (evals.run)


@dataclass(frozen=True)
class SuiteConfig(RunContext):
    """A leaderboard's envs, policies and budgets; ``model`` is the base model (its tokenizer, the KL
    reference, the win-rate baseline), ``device`` where policies, the reference and reward models run."""

    envs: tuple[str, ...] = ("TextSummarize-v0", "TextSentiment-v0")  # env ids
    policies: tuple[str, ...] = (f"base={DEFAULT_MODEL}", "random", "reference")
    reward_models: dict[str, str] = field(default_factory=dict)  # task -> its reward model: rm_score, best-of-n
    samples: dict[str, int] = field(default_factory=dict)  # task -> K seeded samples per prompt (others: 1)
    metrics: tuple[str, ...] | None = None  # None: every metric that applies
    limit: int | None = 32
    limits: dict[str, int] = field(default_factory=dict)  # task -> its number of test examples instead of limit
    skip: tuple[tuple[str, str], ...] = ()  # (policy, task) left out by design (no reward model on a verifier task)
    starts: tuple[tuple[str, str], ...] = ()  # (policy, its start policy), before what policy_starts infers
    decoding: Decoding = Decoding()
    packed: bool = False  # a prompt's samples side by side in a batch, its prompt prefilled once (same row seeds)
    n_boot: int = 1000
    progress: bool = True


@dataclass(frozen=True)
class Failure:
    policy: str
    env: str
    message: str


def env_limits(cfg: SuiteConfig) -> dict[str, int | None]:
    """Test examples per task: ``cfg.limit`` unless ``cfg.limits`` names the task."""
    return {**{env: cfg.limit for env in cfg.envs}, **cfg.limits}


def _check_counts(counts: Mapping[str, int], what: str, expected: str, high: int | None = None) -> None:
    """Refuse a ``samples`` or ``limits`` entry that is not a task with a count in ``1..high``, named
    as the ``TASK=N`` it would be on the command line."""
    if not isinstance(counts, Mapping):
        raise ValueError(f"bad {what} {counts!r}: expected a dict task -> count, each {expected}")
    for env, n in counts.items():
        if not env or isinstance(n, bool) or not isinstance(n, int) or n < 1 or (high is not None and n > high):
            raise ValueError(f"bad {what} {f'{env}={n}'!r}: expected {expected}")


def _check_skip(skip: Sequence[tuple[str, str]]) -> None:
    for pair in skip:
        if not isinstance(pair, tuple) or len(pair) != 2 or not all(isinstance(x, str) and x for x in pair):
            raise ValueError(f"bad skip {pair!r}: expected a (POLICY, TASK) pair of names")


def check_policy_name(name: str) -> str:
    """``name`` when it can head a leaderboard row; a name with a control character (a newline, a
    tab), a backslash (it would unescape the ``\\|`` that keeps a ``|`` inside its cell) or leading
    or trailing spaces (Markdown drops them, so two rows would read alike) is refused when the
    flags are parsed, not when the table is written after the run."""
    why = ("holds a control character (a newline breaks the Markdown table)" if has_control_characters(name)
           else "holds a backslash (Markdown drops it or splits the cell at a following |)" if "\\" in name
           else "starts or ends with a space" if name != name.strip()
           else None)
    if why:
        raise ValueError(f"bad policy name {name!r}: it {why}; name it with letters, digits, '-' or '_' "
                         "(--policy NAME=PATH)")
    return name


def check_config(cfg: SuiteConfig) -> list[PolicySpec]:
    """Fail early on what can be checked without a model: unknown tasks, metrics, policy syntax and names."""
    from textenv.tasks import env_spec

    for env in cfg.envs:
        try:
            env_spec(env)
        except ValueError as exc:
            raise ValueError(f"unknown task {env!r}: {exc}") from exc
    if cfg.metrics is not None:
        unknown = [m for m in cfg.metrics if not is_metric(m)]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; known: {sorted(METRICS)}, 'reward/<part>', 'pass@<k>'")
    _check_counts(cfg.samples, "samples", SAMPLES_FORM, MAX_SAMPLES)
    _check_counts(cfg.limits, "limits", "TASK=N with N a positive integer")
    _check_skip(cfg.skip)
    if not isinstance(cfg.reward_models, Mapping):
        raise ValueError(f"bad reward_models {cfg.reward_models!r}: expected a dict task -> the reward model's path")
    specs = [parse_policy(p) for p in cfg.policies]
    names = [check_policy_name(s.name) for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"policy names must be unique, got {names}")
    for policy, start in cfg.starts:
        unknown = [n for n in (policy, start) if n not in names]
        if unknown or policy == start:
            raise ValueError(f"bad start {policy}={start}: " + (f"{unknown[0]!r} is not a policy of the run {names}"
                                                                 if unknown else "a policy cannot start from itself")
                             + "; expected NAME=START with two of the run's policy names (--start)")
    if cfg.limit is not None and cfg.limit < 1:
        raise ValueError(f"limit must be >= 1, got {cfg.limit}")
    return specs


def _env_indices(envs, cfg: SuiteConfig, env: str) -> list[int]:
    n = len(envs.unwrapped.setup.examples)
    limit = cfg.limits.get(env, cfg.limit)
    return list(range(n if limit is None else min(n, limit)))


def generate_all(cfg: SuiteConfig, shard: tuple[int, int] = (0, 1),
                 failures: list[Failure] | None = None) -> list[Generation]:
    """Every policy's generations (with their model-based scores) for this shard's batches."""
    from textenv.devices import resolve_device

    failures = failures if failures is not None else []
    specs = check_config(cfg)
    device = resolve_device(cfg.device)
    rank, world = shard
    envs = _open_envs(cfg, specs, failures)
    references = _base_models(cfg, envs, device)
    rms: dict[str, Any] = {}  # task -> its reward model, loaded once per task, not once per policy
    out: list[Generation] = []
    unit = 0  # batches are dealt to processes round-robin across all (policy, task) pairs
    for spec in specs:
        for env, vec in envs.items():
            if _left_out(spec, env, vec.unwrapped.setup, cfg):
                continue
            every = batches(_env_indices(vec, cfg, env), cfg.decoding.batch_size)
            mine = [b for j, b in enumerate(every) if (unit + j) % world == rank]
            unit += len(every)
            if not mine:
                continue
            reference = references[id(vec.unwrapped.setup.tokenizer)]
            try:
                out.extend(_generate_pair(spec, env, vec, mine, cfg, reference, rms, device))
            except Exception as exc:  # noqa: BLE001 - one failing (policy, task) must not sink the table
                logger.error("policy %r on %s skipped: %s: %s", spec.name, env, type(exc).__name__, exc)
                failures.append(Failure(spec.name, env, f"{type(exc).__name__}: {exc}"))
    return out


def _open_envs(cfg: SuiteConfig, specs: Sequence[PolicySpec], failures: list[Failure]) -> dict[str, Any]:
    """Each task's vector env; a task whose env cannot be made (an empty test split) is a failure of
    every policy on it, and the other tasks still run."""
    from textenv.models import is_tiny, load_tokenizer

    tokenizer = None if is_tiny(cfg.model) else load_tokenizer(cfg.model)
    envs = {}
    for env in cfg.envs:
        try:
            envs[env] = make_envs(env, cfg.model, tokenizer, cfg.decoding, cfg.decoding.batch_size)
        except Exception as exc:  # noqa: BLE001 - e.g. an empty test split: the other tasks still run
            logger.error("env %s skipped: %s: %s", env, type(exc).__name__, exc)
            failures.extend(Failure(s.name, env, f"{type(exc).__name__}: {exc}") for s in specs)
    return envs


def _base_models(cfg: SuiteConfig, envs: Mapping[str, Any], device: Any) -> dict[int, Any]:
    """The base model (the KL reference, and the policy of a row on ``cfg.model``) once per distinct
    tokenizer, keyed by the tokenizer's ``id``: "tiny" has one tokenizer per task."""
    from agents.policy import LMActorCritic, Sampling

    sampling = Sampling(temperature=cfg.decoding.temperature, top_p=cfg.decoding.top_p)
    references: dict[int, Any] = {}
    for vec in envs.values():
        tok = vec.unwrapped.setup.tokenizer
        if id(tok) not in references:
            references[id(tok)] = LMActorCritic.from_pretrained(cfg.model, tokenizer=tok, sampling=sampling).to(device)
    return references


def _left_out(spec: PolicySpec, env: str, setup: Any, cfg: SuiteConfig) -> bool:
    """Whether the suite leaves ``spec`` out on ``env``, saying why: the ``reference`` row of a task
    without references, or a pair in ``cfg.skip``."""
    if spec.kind == "reference" and not setup.examples[0].references:
        logger.info("env %s has no references: no 'reference' row", env)
        return True
    if (spec.name, env) in cfg.skip:
        logger.info("policy %r on %s: left out by the suite's design (skip)", spec.name, env)
        return True
    return False


def _generate_pair(spec: PolicySpec, env: str, vec: Any, mine: Sequence[Sequence[int]], cfg: SuiteConfig,
                   reference: Any, rms: dict[str, Any], device: Any) -> list[Generation]:
    """One (policy, task)'s generations on this process's batches ``mine``, with their model-based
    scores; the task's reward model is loaded into ``rms`` the first time a policy needs it."""
    from textenv.devices import autocast
    from textenv.rewards import resolve

    setup = vec.unwrapped.setup
    policy = None
    if spec.kind in ("model", "best_of_n", "majority_vote"):
        path = (spec.path or cfg.model).format(task=env)
        policy = reference if path == cfg.model else load_policy(path, setup.tokenizer, cfg.decoding).to(device)
    if env in cfg.reward_models and env not in rms:
        rms[env] = resolve("classifier", path=cfg.reward_models[env], device=str(device))
    rm = rms.get(env)
    out: list[Generation] = []
    for idx in tqdm(mine, desc=f"{spec.name} / {env}", disable=not cfg.progress, leave=False):
        with autocast(device, cfg.precision):
            gens = generate(spec, env, vec, idx, cfg.seed, policy=policy, reward_model=rm,
                            samples=cfg.samples.get(env, 1), packed=cfg.packed)
            _model_scores(gens, policy, reference, rm, setup, metric_wanted(cfg, env))
        out.extend(gens)
    return out


def metric_wanted(cfg: SuiteConfig, env: str) -> Callable[[str], bool]:
    """Whether the suite computes a metric on ``env``: one of ``cfg.metrics`` (None: all) and not
    one that means nothing for the task (:attr:`evals.metrics.TaskMetrics.not_computed`)."""
    meaningless = task_metrics(env).not_computed
    asked = None if cfg.metrics is None else frozenset(cfg.metrics)
    return lambda name: name not in meaningless and (asked is None or name in asked)


def _model_scores(gens: list[Generation], policy, reference, rm, setup, wanted: Callable[[str], bool]) -> None:
    """Per-example scores that need a model, computed batch by batch (so they shard); only the
    ``wanted`` ones (:func:`metric_wanted`)."""
    from textenv.rewards import Completion
    from textenv.rewards.embed import BertScore

    eos = setup.eos_token_id
    if gens[0].references and wanted("bertscore"):
        for g, v in zip(gens, BertScore()([Completion(prompt=g.prompt, text=g.text, references=tuple(g.references))
                                           for g in gens]), strict=True):
            g.scores["bertscore"] = float(v)
    single = not setup.multi_turn  # a conversation's row joins its turns: no one-completion RM score or reference NLL
    if rm is not None and single and wanted("rm_score"):
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
            ref = sample_logprobs(policy, gens, reference.model)
            for g, r in zip(gens, ref, strict=True):
                g.scores["kl_to_ref"] = kl_per_token(g.logprobs[:len(r)], r)
    if policy is not None and single and gens[0].references and gens[0].logprobs is not None \
            and wanted("ref_perplexity"):
        firsts = [g for g in gens if g.sample == 0]  # the reference's NLL is the same for every sample
        for g, v in zip(firsts, reference_nll(policy, firsts, eos), strict=True):
            g.scores["ref_nll"] = v


def _ci(values: Sequence[float], cfg: SuiteConfig, statistic: Callable = np.mean) -> tuple[float, float, float]:
    return bootstrap_ci(np.asarray(values, dtype=float), n_boot=cfg.n_boot, seed=cfg.seed, statistic=statistic)


def _pass_at_k_values(gs: Sequence[Generation]) -> tuple[int, list[float]]:
    """(k, per-prompt pass@k) with k the fewest samples any prompt has; k = 1 means one sample each
    (pass@1 is ``accuracy``, so no pass@k column)."""
    n: dict[int, int] = {}
    c: dict[int, int] = {}
    for g in gs:
        n[g.index] = n.get(g.index, 0) + 1
        c[g.index] = c.get(g.index, 0) + (g.reward >= CORRECT_REWARD)
    k = min(n.values())
    return k, [pass_at_k(n[i], c[i], k) for i in n] if k > 1 else []


@functools.cache
def _task_metrics(env: str) -> tuple[str, ...]:
    """The task's own extra metrics (``Task.metrics``: ``"squad"`` on QA)."""
    from textenv.tasks import task_of

    return task_of(env).metrics


@dataclass
class _Scored:
    """One (policy, task)'s rows, and its per-prompt values of the task's Δ metric for pairing."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    delta_values: dict[int, float] = field(default_factory=dict)  # prompt index -> mean over its samples


def _group_rows(policy: str, env: str, gs: Sequence[Generation], base: Sequence[Generation] | None,
                cfg: SuiteConfig) -> _Scored:
    """The rows of one (policy, task): every per-sample value averaged over its prompt's samples,
    then bootstrapped over prompts (``n`` counts prompts). ``base`` pairs prompts for win_rate."""
    out = _Scored()
    wanted = metric_wanted(cfg, env)
    delta_metric = task_metrics(env).delta_metric
    ids = [g.index for g in gs]

    def add(metric: str, values: Sequence[float | None], prompts: Sequence[int] = ids,
            statistic: Callable = np.mean) -> None:
        if not wanted(metric):
            return
        means = prompt_means(values, prompts)
        if not means:
            return
        if metric == delta_metric:
            out.delta_values = means
        est, low, high = _ci(list(means.values()), cfg, statistic)
        out.rows.append({"policy": policy, "task": env, "metric": metric, "value": est, "ci_low": low,
                         "ci_high": high, "n": len(means), "higher_is_better": higher_is_better(metric)})

    texts = [g.text for g in gs]
    add("reward", [g.reward for g in gs])
    parts = sorted({k for g in gs for k in g.parts})
    if len(parts) > 1:
        for part in parts:
            add(f"reward/{part}", [g.parts.get(part) for g in gs])
    add("accuracy", [float(g.reward >= CORRECT_REWARD) for g in gs])
    k, passes = _pass_at_k_values(gs)
    if passes:
        add(f"{PASS_AT_PREFIX}{k}", passes, prompts=list(dict.fromkeys(ids)))
    if gs[0].references:
        _reference_metrics(gs, env, add, wanted)
    for key in ("bertscore", "rm_score", "kl_to_ref"):
        add(key, [g.scores.get(key) for g in gs])
    add("ref_perplexity", [g.scores.get("ref_nll") for g in gs], statistic=lambda v: float(np.exp(np.mean(v))))
    for n in (1, 2):  # per completion, averaged: a mean, so the bootstrap CI is sound
        if wanted(f"distinct{n}"):
            add(f"distinct{n}", [distinct_n([t], n) if len(t.split()) >= n else None for t in texts])
    add("length", per_example_lengths(texts))
    add("tool_calls", [g.tool_calls for g in gs])
    add("tool_error_rate", [g.tool_errors / g.tool_calls if g.tool_calls else None for g in gs])
    if base is not None:  # per prompt: the mean reward of its samples against the base's
        mine = prompt_means([g.reward for g in gs], ids)
        theirs = prompt_means([g.reward for g in base], [g.index for g in base])
        paired = [i for i in mine if i in theirs]
        if paired:
            add("win_rate", win_rate_values([mine[i] for i in paired], [theirs[i] for i in paired]), prompts=paired)
    return out


def _reference_metrics(gs: Sequence[Generation], env: str, add: Callable[..., None],
                       wanted: Callable[[str], bool]) -> None:
    """ROUGE, BLEU, chrF and (on tasks whose ``Task.metrics`` has ``"squad"``) SQuAD EM/F1 against
    the references; each family only when one of its metrics is wanted."""
    texts = [g.text for g in gs]
    refs = [g.references for g in gs]
    if any(wanted(k) for k in ("rouge1", "rouge2", "rougeL")):
        rouge = load_metric("rouge").compute(predictions=texts, references=refs, use_aggregator=False)
        for key in ("rouge1", "rouge2", "rougeL"):
            add(key, rouge[key])
    for key in ("bleu", "chrf"):
        if wanted(key):
            add(key, load_metric(key).compute(predictions=texts, references=refs)["sentence_scores"])
    if "squad" in _task_metrics(env) and (wanted("exact_match") or wanted("f1")):
        from textenv.rewards.qa import answer_line  # what the env's QA rewards score

        squad = load_metric("squad").compute(predictions=[answer_line(t) for t in texts],
                                             references=refs, use_aggregator=False)
        for key in ("exact_match", "f1"):
            add(key, squad[key])


def _policy_path(spec: PolicySpec, cfg: SuiteConfig, env: str) -> str:
    """The model or checkpoint a model, best-of-n or vote policy samples on ``env`` (as generation finds it)."""
    path = spec.path or cfg.model
    try:
        return path.format(task=env)
    except (KeyError, IndexError, ValueError):  # braces that are no {task}: generation names that failure
        return path


def _same_model(path: str) -> str:
    """A key under which two spellings of one checkpoint folder match (a model name stays itself)."""
    p = Path(path)
    return str(p.resolve()) if p.exists() else path


def recorded_start(checkpoint: str | Path) -> str | None:
    """The model a checkpoint was trained from, as its trainer recorded it: an SFT checkpoint's
    ``sft_config.json`` ``model``; a PPO checkpoint's run ``config.json`` ``model`` (the run folder
    that a pipeline copy's ``ppo_run.json`` names, else the checkpoint's parent when it is one of a
    run's checkpoints, with ``trainer_state.json``). None for anything else (a model name, a plain
    Hugging Face folder) or a record that cannot be read."""
    folder = Path(checkpoint)

    def model_of(config: Path) -> str | None:
        model = json.loads(config.read_text()).get("model") if config.is_file() else None
        return model if isinstance(model, str) and model else None

    try:
        if (folder / "sft_config.json").is_file():
            return model_of(folder / "sft_config.json")
        if (folder / "ppo_run.json").is_file():
            return model_of(Path(json.loads((folder / "ppo_run.json").read_text())["run"]) / "config.json")
        if (folder / "trainer_state.json").is_file():
            return model_of(folder.parent / "config.json")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        logger.info("checkpoint %s: its training record does not name its start (%s)", folder, exc)
    return None


def policy_starts(cfg: SuiteConfig, env: str) -> dict[str, str]:
    """Policy name -> the name of the policy of the run it started from, on ``env``.

    ``cfg.starts`` first (the suite's pipeline names them, the user adds ``--start``); else a
    best-of-n or vote policy starts from the model policy whose path it samples, and a checkpoint
    from the model policy whose path its training record names (:func:`recorded_start`). A policy
    with no start in the run (the base model, random, reference) has none.
    """
    specs = [parse_policy(p) for p in cfg.policies]
    models: dict[str, str] = {}  # checkpoint key -> the first model policy that evaluates it
    for spec in specs:
        if spec.kind == "model":
            models.setdefault(_same_model(_policy_path(spec, cfg, env)), spec.name)
    out: dict[str, str] = {}
    for spec in specs:
        path = _policy_path(spec, cfg, env) if spec.kind in ("model", "best_of_n", "majority_vote") else None
        source = path if spec.kind in ("best_of_n", "majority_vote") else recorded_start(path) if path else None
        start = models.get(_same_model(source)) if source else None
        if start is not None and start != spec.name:
            out[spec.name] = start
    return {**out, **dict(cfg.starts)}


def _delta_rows(scored: dict[tuple[str, str], _Scored], cfg: SuiteConfig) -> list[dict[str, Any]]:
    """A ``delta/<metric>`` row for each scored policy whose start was scored on the same task:
    the paired difference on the prompts both have (:func:`evals.paired.paired_difference`)."""
    rows: list[dict[str, Any]] = []
    for env in sorted({e for _, e in scored}):
        metric = task_metrics(env).delta_metric
        for policy, start in sorted(policy_starts(cfg, env).items()):
            mine, theirs = scored.get((policy, env)), scored.get((start, env))
            if mine is None or not mine.delta_values:
                continue
            paired = [i for i in mine.delta_values if theirs is not None and i in theirs.delta_values]
            if not paired:
                logger.info("%s on %s: no Δ %s, its start %r has no %s there", policy, env, metric, start, metric)
                continue
            d = paired_difference([mine.delta_values[i] for i in paired], [theirs.delta_values[i] for i in paired],
                                  n_resamples=cfg.n_boot, seed=cfg.seed)
            rows.append({"policy": policy, "task": env, "metric": DELTA_PREFIX + metric, "value": d.value,
                         "ci_low": d.ci_low, "ci_high": d.ci_high, "n": d.n,
                         "higher_is_better": higher_is_better(metric), "start": start, "p_value": d.p_value})
    return rows


def score_generations(gens: Sequence[Generation], cfg: SuiteConfig) -> pd.DataFrame:
    """Every metric with a 95% bootstrap CI over prompts, for every (policy, task) present in ``gens``
    (a prompt's K samples are averaged first, see :func:`_group_rows`), and each policy's paired
    difference from its start (:func:`policy_starts`)."""
    gens = sorted(gens, key=lambda g: (g.task, g.policy, g.index, g.sample))
    base_name = next((parse_policy(p).name for p in cfg.policies if parse_policy(p).kind == "model"
                      and (parse_policy(p).path or cfg.model) == cfg.model), None)
    groups: dict[tuple[str, str], list[Generation]] = {}
    for g in gens:
        groups.setdefault((g.policy, g.task), []).append(g)
    scored: dict[tuple[str, str], _Scored] = {}
    for (policy, env), gs in groups.items():
        base = groups.get((base_name, env)) if base_name is not None and policy != base_name else None
        scored[(policy, env)] = _group_rows(policy, env, gs, base, cfg)
    rows = [r for s in scored.values() for r in s.rows] + _delta_rows(scored, cfg)
    return make_frame(rows + seed_rows(rows, cfg.n_boot, cfg.seed))


def seed_rows(rows: Sequence[dict[str, Any]], n_boot: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """The rows of each policy trained with several seeds (``NAME@seed<S>``, ``evals.run --seeds``)
    summarised as ``NAME (mean of K seeds)``: per metric (its paired difference from the start
    included), the mean of the seeds' values with a 95% interval over runs
    (:func:`evals.paired.runs_interval`) and ``n`` the number of runs: training variance shown, not
    hidden by one draw. A metric is summarised where at least two seeds have it."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        name, mark, run = str(r["policy"]).partition(SEED_MARK)
        if mark and run.isdigit():
            groups.setdefault((name, str(r["task"]), str(r["metric"])), []).append(r)
    out = []
    for (name, env, metric), runs in sorted(groups.items()):
        if len(runs) < 2:
            continue
        value, low, high = runs_interval([float(r["value"]) for r in runs], n_resamples=n_boot, seed=seed)
        row = {"policy": f"{name} (mean of {len(runs)} seeds)", "task": env, "metric": metric, "value": value,
               "ci_low": low, "ci_high": high, "n": len(runs), "higher_is_better": runs[0]["higher_is_better"]}
        if "start" in runs[0]:
            row.update(start=runs[0]["start"], p_value=float("nan"))  # an interval over runs, not a test over prompts
        out.append(row)
    return out


def evaluate_suite(cfg: SuiteConfig, failures: list[Failure] | None = None) -> pd.DataFrame:
    """One process: generate everything, then score it."""
    return score_generations(generate_all(cfg, failures=failures), cfg)
