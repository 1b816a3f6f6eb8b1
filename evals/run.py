"""``python -m evals.run``: leaderboards comparing base, SFT, reward-model best-of-n and PPO policies.

With no arguments it runs the ``quick`` suite on the default model: it makes the checkpoints it
needs with the agents' quick presets when they are missing (``agents.pipeline``, cached under
``runs/pipeline/``, reused after), evaluates them with the random and reference baselines on
``TextSummarize-v0``, ``TextSentiment-v0`` and ``TextReasoning-v0``, and writes
``leaderboards/quick.{csv,md,png}``. Rows that do not apply to a task (no reward model for the
verifier task, majority vote only where answers are extracted) are left out by the suite's
``skip`` and listed in the table's header.

    python -m evals.run                                   # the quick suite, everything
    python -m evals.run --envs TextSentiment-v0 --policies base,ppo-task --limit 16
    python -m evals.run --policy mine=path/to/checkpoint  # add any checkpoint (repeatable)
    python -m evals.run --policy mine=path/to/checkpoint --start mine=sft  # its Δ against the sft row
    python -m evals.run --suite full                      # GPU-sized budgets
    accelerate launch --multi_gpu --num_processes 2 -m evals.run ...  # shards batches, same table
                                                          # (--multi_gpu starts the processes; CPUs work too)

Policies (``--policy``, repeatable): ``NAME=PATH`` (a model name or checkpoint), ``NAME=bon:PATH``
(best-of-4 of PATH's samples by the task's reward model), ``NAME=vote:PATH`` (majority vote over 4
samples' extracted answers, self-consistency; no reward model), ``random`` and ``reference``.
Policy paths may contain ``{task}``, replaced per task (checkpoints are task-specific).

Reasoning metrics: ``--samples TextReasoning-v0=4`` draws 4 seeded samples per prompt from each
model policy on that task; every metric is then averaged per prompt and bootstrapped over prompts,
and the table gains ``pass@4`` next to ``accuracy`` (pass@1, reported on every task).

    python -m evals.run --envs TextReasoning-v0 --samples TextReasoning-v0=4 --policy maj=vote:smollm2-135m
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, TypeVar

from agents.distributed import Dist
from agents.pipeline import PipelineConfig, default_root, outdated_stages, rl_stage, run_pipeline
from agents.tracking import StageMemory, peak_rss_gb
from evals.generate import Decoding, Generation, parse_policy
from evals.report import SEED_MARK, collect_run_info, leaderboard_paths, write_leaderboard
from evals.suite import (
    SAMPLES_FORM,
    Failure,
    SuiteConfig,
    check_config,
    env_limits,
    generate_all,
    score_generations,
)
from textenv.cli import RunFailed, arg, cli, parse_config
from textenv.context import RunContext
from textenv.devices import resolve_device
from textenv.io import is_complete
from textenv.models import DEFAULT_MODEL

__all__ = ["SUITES", "RunConfig", "main", "parse_specs", "suite_config"]

logger = logging.getLogger(__name__)

V = TypeVar("V")
Pairs = tuple[tuple[str, str], ...]  # (policy, its start) or (policy, task)

PIPELINE = str(default_root("{task}", DEFAULT_MODEL))  # the suites' checkpoints, a template of the task


@dataclass(frozen=True)
class Suite:
    config: SuiteConfig
    preset: str  # the agents' preset used to make missing checkpoints
    budgets: str


_POLICIES = (
    f"base={DEFAULT_MODEL}",
    f"sft={PIPELINE}/sft",
    f"rm=bon:{PIPELINE}/sft",
    f"vote=vote:{PIPELINE}/sft",
    f"ppo-task={PIPELINE}/ppo_task",
    f"ppo-rm={PIPELINE}/ppo_rm",
    "random",
    "reference",
)

# Each trained or sampled row's start, for its paired difference (the pipeline trains SFT from the
# base model and RL from SFT; best-of-n and vote sample SFT).
_STARTS = (("sft", "base"), ("rm", "sft"), ("vote", "sft"), ("ppo-task", "sft"), ("ppo-rm", "sft"))


def _name(policy: str) -> str:
    """A policy's name: ``NAME`` of ``NAME=PATH`` (``random`` and ``reference`` are their own)."""
    return policy.partition("=")[0]


def _starts(policies: tuple[str, ...], starts: Pairs = _STARTS) -> Pairs:
    """The pairs of ``starts`` whose two policies are both among ``policies``."""
    names = {_name(p) for p in policies}
    return tuple((a, b) for a, b in starts if a in names and b in names)

TOOLS_LIMIT = 200  # test problems of the tools suite (2 samples each): a 3x accuracy ratio is told from noise

_FULL_ENVS = ("TextSummarize-v0", "TextSentiment-v0", "TextReasoning-v0")
_REASONING = "TextReasoning-v0"

_QA = "TextQA-v0"
_DIALOGUE = "TextDialogue-v0"
_QA_POLICIES = tuple(p for p in _POLICIES if _name(p) in ("base", "sft", "ppo-task", "random", "reference"))
_HARD = "TextReasoningHard-v0"
_TOOLS = "TextReasoningTools-v0"
_TOOLS_POLICIES = tuple(p for p in _POLICIES if _name(p) in ("base", "sft", "ppo-task"))
_DIALOGUE_POLICIES = tuple(p for p in _POLICIES if _name(p) in ("base", "sft", "ppo-task", "ppo-rm", "random",
                                                                 "reference"))

# What the quick presets train per task (agents.pipeline --ppo-reward, --reward-model): sentiment runs
# PPO on VADER and on its reward model; summaries train a reward model for best-of-n only (PPO on it
# lowered ROUGE-L in the quick budget; the full suite keeps it); reasoning and QA have a programmatic
# reward (the verifier, token F1), no reward model, and GRPO as their RL (the ppo-task row).
QUICK_STAGES: dict[str, dict[str, object]] = {
    "TextSentiment-v0": {"ppo_reward": "both"},
    "TextSummarize-v0": {"ppo_reward": "task", "reward_model": True},
    _REASONING: {"ppo_reward": "task", "reward_model": False},
    _QA: {"ppo_reward": "task", "reward_model": False},
    _DIALOGUE: {"ppo_reward": "both"},
    _HARD: {"ppo_reward": "none"},  # the tools suite's SFT without tools: no RL row
    _TOOLS: {"ppo_reward": "task", "reward_model": False},
}

# Minutes each task's quick pipeline took (every stage, one run after another) in the committed
# quick, qa, dialogue and tools leaderboards' runs on 2 CPU cores; said before training starts.
QUICK_MINUTES = {"TextSummarize-v0": 10.1, "TextSentiment-v0": 17.2, _REASONING: 5.0,
                 _QA: 11.7, _DIALOGUE: 26.7, _HARD: 3.6, _TOOLS: 11.4}



def _reward_models(*envs: str) -> dict[str, str]:
    """Each task's reward model as its suite pipeline trains it."""
    return {env: f"{PIPELINE.format(task=env)}/reward_model" for env in envs}


SUITES: dict[str, Suite] = {
    "quick": Suite(
        SuiteConfig(envs=_FULL_ENVS, policies=_POLICIES, starts=_starts(_POLICIES),
                    reward_models=_reward_models("TextSummarize-v0", "TextSentiment-v0"),
                    # reasoning on its whole test split (500): a 5-point change is then told from noise
                    limit=64, limits={_REASONING: 500}, samples={_REASONING: 4},
                    skip=(("ppo-rm", "TextSummarize-v0"), ("ppo-rm", _REASONING), ("rm", _REASONING),
                          ("vote", "TextSummarize-v0"), ("vote", "TextSentiment-v0")),
                    decoding=Decoding(temperature=0.7, max_new_tokens=32, batch_size=32)),
        preset="quick",
        budgets="CPU quick presets (agents.sft/reward_model/ppo --preset quick, the task's own quick-<task> where "
                "one exists; reasoning's ppo-task is GRPO), 32 new tokens, best-of-4 (reasoning: majority vote of 4)",
    ),
    "full": Suite(
        SuiteConfig(envs=_FULL_ENVS, policies=_POLICIES, starts=_starts(_POLICIES),
                    skip=(("vote", "TextSummarize-v0"), ("vote", "TextSentiment-v0")),
                    reward_models=_reward_models(*_FULL_ENVS),
                    limit=256, decoding=Decoding(temperature=0.7, max_new_tokens=None, batch_size=64)),
        preset="default",
        budgets="GPU default presets (agents.ppo --preset default-<task>: PPO on sentiment and summaries, GRPO "
                "with 8 samples per prompt on reasoning), the tasks' own token budgets, best-of-4",
    ),
    # Question answering over a passage (Disfl-QA): SFT on the train answers, then GRPO on token F1.
    "qa": Suite(
        SuiteConfig(envs=(_QA,), policies=_QA_POLICIES, starts=_starts(_QA_POLICIES), limit=None,
                    decoding=Decoding(temperature=0.7, max_new_tokens=24, batch_size=32)),
        preset="quick",
        budgets="CPU quick presets (agents.sft --preset quick-qa, agents.ppo --preset quick-qa: GRPO on token F1, "
                "4 answers per question), 24 new tokens, every test question",
    ),
    # Three-turn conversations (Chit-Chat Challenge): SFT on whole conversations, a reward model on
    # first turns, then GAE with per-turn credit under the heuristic reward, RLOO on the return under the RM.
    "dialogue": Suite(
        SuiteConfig(envs=(_DIALOGUE,), policies=_DIALOGUE_POLICIES, starts=_starts(_DIALOGUE_POLICIES),
                    reward_models=_reward_models(_DIALOGUE),
                    limit=64, decoding=Decoding(temperature=0.7, max_new_tokens=None, batch_size=32)),
        preset="quick",
        budgets="CPU quick presets (agents.sft/reward_model/ppo --preset quick-dialogue where one exists: GAE with "
                "per-turn credit on the task reward, RLOO on the reward model's return; 4 per prompt), 3 agent turns "
                "of at most 40 tokens",
    ),
    # Arithmetic beyond a 135M model's head (reasoning-gym's defaults), without and with a calculator:
    # SFT on the answers; SFT on a few tool demonstrations, then GRPO on tool episodes.
    "tools": Suite(
        SuiteConfig(envs=(_HARD, _TOOLS), policies=_TOOLS_POLICIES, starts=_starts(_TOOLS_POLICIES),
                    skip=(("ppo-task", _HARD),), limit=TOOLS_LIMIT, samples={_HARD: 2, _TOOLS: 2},
                    # the metrics: no KL to the base (a second forward over every ~190-token
                    # prompt, as much as generating); both samples of a prompt in one batch, one prefill
                    metrics=("accuracy", "pass@2", "tool_calls", "tool_error_rate", "length", "reward"),
                    packed=True, decoding=Decoding(temperature=0.7, max_new_tokens=None, batch_size=64)),
        preset="quick",
        budgets="CPU quick presets (agents.sft --preset quick-reasoninghard / quick-reasoningtools: the answers, "
                "a few tool demonstrations; agents.ppo --preset quick-reasoningtools: GRPO on tool episodes), "
                "the envs' own token budgets (32 new tokens; with tools 104 after the prompt), 2 samples per prompt",
    ),
}


def make_checkpoints(envs: tuple[str, ...], preset: str, model: str, device: str = "auto",
                     precision: str = "auto", progress: bool = True, rl_seeds: tuple[int, ...] = ()) -> list[dict]:
    """Run the missing pipeline stages (SFT -> reward model -> PPO on the task reward and/or the
    reward model; the quick suite's per-task choice in :data:`QUICK_STAGES`) for every task; return
    each task's pipeline report (stage times and peak memory)."""
    reports = []
    for env in envs:
        try:
            reports.append({"env": env, **run_pipeline(_pipeline_config(env, preset, model, device, precision,
                                                                        progress, rl_seeds))})
        except RunFailed as exc:  # a stage that learned nothing: the task's other rows are still evaluated
            logger.error("%s: the pipeline stopped: %s", env, exc)
            reports.append({"env": env, "failed": str(exc)})
    return reports


def _pipeline_config(env: str, preset: str, model: str, device: str = "auto", precision: str = "auto",
                     progress: bool = True, rl_seeds: tuple[int, ...] = ()) -> PipelineConfig:
    """The :class:`agents.pipeline.PipelineConfig` that makes a suite's checkpoints for ``env``."""
    stages = QUICK_STAGES if preset == "quick" else {}
    return PipelineConfig(env=env, model=model, preset=preset, out=PIPELINE.format(task=env), device=device,
                          precision=precision, progress=progress, rl_seeds=rl_seeds,
                          **stages.get(env, {}))  # type: ignore[arg-type]


def rl_seeds_of(cfg: SuiteConfig) -> tuple[int, ...]:
    """The RL training seeds a suite's policies name (``NAME@seed<S>``, :func:`with_seeds`); empty: none."""
    seeds = {int(run) for p in cfg.policies for _, mark, run in [_name(p).partition(SEED_MARK)]
             if mark and run.isdigit()}
    return tuple(sorted(seeds))


def _outdated(cfg: SuiteConfig, preset: str, env: str, memo: dict[str, dict[str, list[str]]]) -> dict[str, list[str]]:
    """The finished stages of ``env``'s suite pipeline that it would rebuild (built with other settings)."""
    if env not in memo:
        memo[env] = {}
        if Path(PIPELINE.format(task=env)).is_dir():
            memo[env] = outdated_stages(_pipeline_config(env, preset, cfg.model, cfg.device, cfg.precision,
                                                         rl_seeds=rl_seeds_of(cfg)))
            for stage, changes in memo[env].items():
                logger.warning("%s on %s was built with other settings than the suite's (%s)", stage, env,
                               "; ".join(changes[:3]))
    return memo[env]


def missing_checkpoints(cfg: SuiteConfig, preset: str | None = None) -> list[tuple[str, str, str]]:
    """``(policy, task, path)`` of each suite checkpoint (under ``runs/pipeline/``) that the run
    would evaluate and that is not there yet, or (given the suite's ``preset``) was built with
    other settings than the suite's pipeline would use now."""
    memo: dict[str, dict[str, list[str]]] = {}

    def missing(env: str, path: str) -> bool:
        return not is_complete(path) or (preset is not None and Path(path).name in _outdated(cfg, preset, env, memo))

    out = []
    uses: set[str] = set()  # tasks on which some suite checkpoint is evaluated
    for item in cfg.policies:
        spec = parse_policy(item)
        if spec.path is None or PIPELINE not in spec.path:
            continue
        for env in cfg.envs:
            path = spec.path.format(task=env)
            if (spec.name, env) not in cfg.skip:
                uses.add(env)
                if missing(env, path):
                    out.append((spec.name, env, path))
    root = PIPELINE.split("{task}")[0]
    for env, path in cfg.reward_models.items():  # the suite's reward models (rm_score, best-of-n): the pipeline's too
        if env in uses and path.startswith(root) and missing(env, path):
            out.append(("reward_model", env, path))
    return out


def training_plan(missing: list[tuple[str, str, str]], preset: str, device: str) -> str:
    """What ``make_checkpoints`` is about to train and about how long it takes, said before it starts."""
    envs = list(dict.fromkeys(t for _, t, _ in missing))
    minutes = sum(QUICK_MINUTES.get(t, 0.0) for t in envs)
    how_long = (f"about {minutes:.0f} min on 2 CPU cores (the committed quick leaderboard's stage times)"
                if preset == "quick" and device in ("auto", "cpu") and minutes else "time depends on the device")
    return (f"training the suite's missing checkpoints ({preset} presets) for {', '.join(envs)}: "
            + "; ".join(f"{p} ({path})" for p, _, path in missing)
            + f"; {how_long}. Cached after; --no-make evaluates without them.")


def stage_notes(reports: list[dict]) -> list[str]:
    """One header line per task: the seconds and peak RSS of each stage this run trained."""
    notes = []
    for rep in reports:
        parts = [f"{k.removesuffix('_resources')} {v['seconds']:.0f} s ({v.get('peak_gb', float('nan')):.2f} GB)"
                 for k, v in rep.items() if k.endswith("_resources")]
        if parts:
            notes.append(f"trained for {rep['env']}: " + ", ".join(parts))
    return notes


def kept_start_notes(policies: tuple[str, ...], envs: tuple[str, ...]) -> dict[tuple[str, str], str]:
    """``(policy, task) -> note`` for each PPO checkpoint whose run kept its starting weights
    (``ppo_run.json`` iteration 0: keep-best found no held-out eval better than the start), so the
    table never shows the start as an RL result."""
    out = {}
    for item in policies:
        spec = parse_policy(item)
        for env in envs:
            run_file = Path((spec.path or "").format(task=env)) / "ppo_run.json"
            if spec.kind == "model" and run_file.is_file() and json.loads(run_file.read_text()).get("iteration") == 0:
                out[(spec.name, env)] = (f"{spec.name} on {env} is its starting (SFT) policy: keep-best found no "
                                          "held-out eval better than the start, so the row is tabled as "
                                          f"'{spec.name} (= sft)'")
    return out


def reward_model_notes(reward_models: Mapping[str, str]) -> list[str]:
    """One header line per task's reward model: its held-out pairwise accuracy, all pairs and
    length-matched, as its trainer measured them (``metrics.json``)."""
    notes = []
    for env, path in reward_models.items():
        metrics_file = Path(path) / "metrics.json"
        if not metrics_file.exists():
            continue
        m = json.loads(metrics_file.read_text())
        after = {k.removeprefix("eval/after/"): v for k, v in m.items() if k.startswith("eval/after/")}
        kinds = ", ".join(f"{k[9:]} {v:.2f} (n={after.get('pairs/' + k[9:])})"
                          for k, v in sorted(after.items()) if k.startswith("accuracy/"))
        lm = after.get("accuracy_length_matched")
        notes.append(f"reward model {env}: held-out ({m.get('eval_split')}) pairwise accuracy "
                     f"{m['eval/accuracy_after']:.3f} on {m.get('eval_pairs')} pairs (before training "
                     f"{m['eval/accuracy_before']:.3f}); length-matched "
                     f"{'n/a' if lm is None else f'{lm:.3f}'} on {after.get('pairs_length_matched')} pairs; "
                     f"by kind: {kinds}")
    return notes


@dataclass(frozen=True)
class RunConfig(RunContext):
    """Which leaderboard to build: a suite's budgets and policies, narrowed or extended by flags; ``model``
    is the base model, ``device`` where policies, the reference and reward models run."""

    suite: Literal["quick", "full", "qa", "dialogue", "tools"] = arg(
        "quick", "budgets and default policies ('qa': TextQA-v0's base, SFT and GRPO rows; 'dialogue': "
                 "TextDialogue-v0's base, SFT and PPO rows; 'tools': hard arithmetic without and with a "
                 "calculator, base and SFT rows on each, GRPO with the calculator)")
    envs: tuple[str, ...] | None = arg(None, "env ids to evaluate, space- or comma-separated (None: the suite's)")
    policies: tuple[str, ...] | None = arg(None, "names of the suite's policies to keep (None: all); --policy "
                                                 "entries are kept either way")
    policy: tuple[str, ...] = arg((), "add policies: NAME=PATH, NAME=bon:PATH (best-of-n), NAME=vote:PATH "
                                      "(majority vote), 'random' or 'reference' (repeatable)")
    only: bool = arg(False, "evaluate only the --policy entries")
    start: tuple[str, ...] = arg((), "NAME=START: policy NAME was trained or sampled from policy START; its row "
                                     "gets the paired difference from it (repeatable; the suite's own and "
                                     "bon:/vote:/checkpoint records are found without it)")
    reward_model: tuple[str, ...] = arg((), "TASK=PATH: a task's reward model (rm_score metric, best-of-n "
                                            "reranking; repeatable)")
    samples: tuple[str, ...] = arg((), "TASK=K: K seeded samples per prompt for model policies on TASK, for "
                                       "pass@K (repeatable or comma-separated; overrides the suite's)")
    metrics: tuple[str, ...] | None = arg(None, "metrics to keep (None: all)")
    limit: int | None = arg(None, "test examples per task (None: the suite's)")
    out: str = arg("leaderboards", "directory of the leaderboard files")
    name: str | None = arg(None, "leaderboard file name (None: the suite name)")
    no_make: bool = arg(False, "never train: the suite's missing checkpoints are left out of the table")
    make: bool = arg(False, "train the suite's missing checkpoints even when --policy is given (without --policy "
                            "they are trained unless --no-make)")
    seeds: tuple[int, ...] = arg((), "RL training seeds: each of the suite's RL rows (ppo-task, ppo-rm) is trained "
                                     "once per seed from the same SFT start (agents.pipeline --rl-seeds) and "
                                     "evaluated as NAME@seedS, beside NAME (mean of K seeds) with a 95% interval "
                                     "over runs; empty: one run, seed 0")
    progress: bool = arg(True, "show progress bars (as every other entry point: --progress false turns them off)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if any(not isinstance(s, int) or s < 0 for s in self.seeds) or len(set(self.seeds)) < len(self.seeds):
            raise ValueError(f"--seeds must be distinct integers >= 0, got {list(self.seeds)}")


def _items(values: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """``("a,b", "c")`` -> ``("a", "b", "c")``: list flags take spaces or commas."""
    return None if values is None else tuple(v for item in values for v in item.split(",") if v)


def parse_specs(specs: Iterable[str], what: str, expected: str,
                value: Callable[[str], V] = str) -> tuple[tuple[str, V], ...]:
    """``KEY=VALUE`` flags (``--start``, ``--reward-model``, ``--samples``) as ``(key, value)`` pairs in order,
    ``value`` typing the text after the first ``=``: parsed once, here, so the suite holds typed values. A
    spec without a key, ``=`` or value, or one ``value`` refuses, fails in one line naming it and ``expected``.

    >>> parse_specs(["TextCount-v0=4", "T=2"], "samples", "TASK=K", _whole_number)
    (('TextCount-v0', 4), ('T', 2))
    """
    out = []
    for spec in specs:
        key, sep, text = spec.partition("=")
        try:
            if not sep or not key or not text:
                raise ValueError(spec)
            out.append((key, value(text)))
        except ValueError:
            raise ValueError(f"bad {what} {spec!r}: expected {expected}") from None
    return tuple(out)


def _whole_number(text: str) -> int:
    """Digits (spaces around them allowed) as an int; its range is the config's check."""
    if not text.strip().isdigit():
        raise ValueError(text)
    return int(text)


_START_FORM = ("NAME=START, a policy's name and the name of the policy it was trained or sampled from "
               "(e.g. --start mine=sft)")


def with_seeds(policies: tuple[str, ...], starts: Pairs, skip: Pairs,
               seeds: tuple[int, ...]) -> tuple[tuple[str, ...], Pairs, Pairs]:
    """Each of the suite's RL policies (a pipeline's ``ppo_task``/``ppo_rm``) once per seed:
    ``NAME@seedS`` on the pipeline's stage of that seed (:func:`agents.pipeline.rl_stage`), with
    NAME's start and skips; other policies as they are.

    >>> with_seeds(("sft=P/sft", "ppo-task=P/ppo_task"), (("ppo-task", "sft"),), (("ppo-task", "X-v0"),), (0, 1))[0]
    ('sft=P/sft', 'ppo-task@seed0=P/ppo_task', 'ppo-task@seed1=P/ppo_task_seed1')
    """
    out, renamed = [], {}
    for item in policies:
        name, _, spec = item.partition("=")
        folder = Path(spec).name
        if folder not in ("ppo_task", "ppo_rm") or ":" in spec:
            out.append(item)
            continue
        renamed[name] = [f"{name}{SEED_MARK}{s}" for s in seeds]
        out += [f"{name}{SEED_MARK}{s}={spec[:-len(folder)]}{rl_stage(folder.removeprefix('ppo_'), s)}"
                for s in seeds]
    starts = tuple((n, b) for a, b in starts for n in renamed.get(a, [a]))
    skip = tuple((n, env) for p, env in skip for n in renamed.get(p, [p]))
    return tuple(out), starts, skip


def _suite_policies(run: RunConfig, cfg: SuiteConfig) -> tuple[str, ...]:
    """The suite's own policies that ``--policies`` keeps (none with ``--only``)."""
    policies = () if run.only else cfg.policies
    keep = _items(run.policies)
    if keep:  # narrows the suite's own policies; --policy entries are always evaluated
        names = [_name(p) for p in policies]
        added = [_name(p) for p in run.policy]
        unknown = [k for k in keep if k not in names and k not in added]
        if unknown:
            raise ValueError(f"--policies: unknown policy names {unknown}; the suite's: {names}"
                             + (" (none: --only)" if run.only else ""))
        policies = tuple(p for p, n in zip(policies, names, strict=True) if n in keep)
    return policies


def suite_config(run: RunConfig) -> SuiteConfig:
    """The suite's :class:`SuiteConfig` with the flags of ``run`` applied; the ``KEY=VALUE`` flags become
    typed values here (:func:`parse_specs`), a flag's task overriding the suite's own entry."""
    cfg = SUITES[run.suite].config
    policies = _suite_policies(run, cfg)
    starts = _starts(policies, cfg.starts) + parse_specs(run.start, "--start", _START_FORM)  # the suite's own first
    skip = cfg.skip
    if run.seeds:
        policies, starts, skip = with_seeds(policies, starts, skip, run.seeds)
    policies += run.policy
    model = run.model
    if run.model != cfg.model:  # the default base entry follows --model
        policies = tuple(f"base={model}" if p == f"base={cfg.model}" else p for p in policies)
    return replace(
        cfg, policies=policies, model=model, seed=run.seed, progress=run.progress, skip=skip,
        envs=_items(run.envs) or cfg.envs,
        reward_models={**cfg.reward_models, **dict(parse_specs(run.reward_model, "reward model", "TASK=PATH"))},
        samples={**cfg.samples, **dict(parse_specs(_items(run.samples) or (), "samples", SAMPLES_FORM, _whole_number))},
        starts=starts, metrics=_items(run.metrics) or cfg.metrics,
        limit=run.limit if run.limit is not None else cfg.limit,
        limits={} if run.limit is not None else cfg.limits,  # --limit applies to every task
        device=run.device, precision=run.precision,
    )


@dataclass
class _Made:
    """What a run did about the suite's missing checkpoints: what it trained (the pipelines' reports),
    the (policy, task) rows left out for want of one and a header line for each."""

    trained: list[dict] = field(default_factory=list)
    not_made: set[tuple[str, str]] = field(default_factory=set)
    left_out: list[str] = field(default_factory=list)
    train: bool = False  # it trained: a checkpoint it could not make then fails the run


def _make_or_leave_out(args: RunConfig, cfg: SuiteConfig, preset: str, dist: Dist, start: float) -> _Made:
    """Train the suite's missing checkpoints when the run is the suite's own (no ``--policy``, or
    ``--make``; never ``--no-make`` or another base model); otherwise leave their rows out, saying why."""
    missing = missing_checkpoints(cfg, preset)
    # a run that names its own checkpoints (--policy) never trains the suite's unless --make asks
    if not (missing and not args.no_make and (args.make or not args.policy) and cfg.model == DEFAULT_MODEL):
        why = ("--no-make" if args.no_make else "--policy given (add --make to train it)" if args.policy
               else f"the suite trains them for {DEFAULT_MODEL} only")
        left_out = [f"not evaluated: {p} on {t} ({path} not made, or made with other settings: {why})"
                    for p, t, path in missing]
        for line in left_out:
            logger.warning(line)
        return _Made(not_made={(p, t) for p, t, _ in missing}, left_out=left_out)
    logger.info(training_plan(missing, preset, cfg.device))
    trained: list[dict] = []
    if dist.is_main:  # the others wait, then every process reads from the disk what was made
        trained = make_checkpoints(tuple(dict.fromkeys(t for _, t, _ in missing)), preset, cfg.model, cfg.device,
                                   cfg.precision, progress=cfg.progress, rl_seeds=args.seeds)
        logger.info("checkpoints ready after %.0f s", time.perf_counter() - start)
    dist.barrier()
    stopped = {r["env"]: r["failed"] for r in trained if "failed" in r}
    unmade = [(p, t, path) for p, t, path in missing if not is_complete(path)]  # every process sees the disk
    left_out = [f"not evaluated: {p} on {t} ({path} not made: {stopped.get(t, 'its training stopped')})"
                for p, t, path in unmade]
    return _Made(trained, {(p, t) for p, t, _ in unmade}, left_out, train=True)


def _present_reward_models(cfg: SuiteConfig) -> SuiteConfig:
    """``cfg`` without the reward models that do not exist, each named in a warning where its task is
    evaluated (its rm rows then fail by name)."""
    present = {env: path for env, path in cfg.reward_models.items() if Path(path).exists()}
    for env, path in cfg.reward_models.items():
        if env not in present and env in cfg.envs:
            logger.warning("reward model %s=%s not found: rm_score and best-of-n are skipped for that task", env, path)
    return replace(cfg, reward_models=present)


def _generate(cfg: SuiteConfig, dist: Dist) -> tuple[list[Generation], list[Failure]]:
    """This process's share of the generations and failures, gathered from every process under accelerate."""
    failures: list[Failure] = []
    with StageMemory() as meter:
        gens = generate_all(cfg, shard=(dist.rank, dist.world), failures=failures)
        mem = meter.lap()
    logger.info("evaluation generated %d completions; peak RSS %.2f GB", len(gens), mem.get("peak_gb", float("nan")))
    if dist.world > 1:
        logger.info("process %d/%d generated %d completions", dist.rank, dist.world, len(gens))
        gens = [Generation(**g) for g in dist.gather([g.to_dict() for g in gens])]
        # a (policy, task) split across processes fails on each of them: report it once
        failures = list(dict.fromkeys(Failure(**f) for f in dist.gather([vars(f) for f in failures])))
    return gens, failures


def _header_notes(cfg: SuiteConfig, made: _Made, kept: dict[tuple[str, str], str], failures: list[Failure],
                  train_secs: float, eval_secs: float) -> list[str]:
    """The leaderboard header's lines: time and memory, what was trained, examples per task, the
    reward models' accuracies, and every row not in the table with why."""
    peak = peak_rss_gb()
    timing = (f"wall time {(train_secs + eval_secs) / 60:.1f} min (training {train_secs:.0f} s, evaluation "
              f"{eval_secs:.0f} s); peak RSS " + ("n/a" if peak is None else f"{peak:.2f} GB")
              + " (this process, training and evaluation)")
    limits = env_limits(cfg)
    per_task = [f"{t}: {limits[t] if limits[t] is not None else 'all'} test examples"
                + (f" x {cfg.samples[t]} samples" if cfg.samples.get(t, 1) > 1 else "") for t in cfg.envs]
    names = {_name(p) for p in cfg.policies}
    by_design = [f"not run by design: {p} on {t}" for p, t in sorted(set(cfg.skip))
                 if t in cfg.envs and p in names and (p, t) not in made.not_made]
    return ([timing, *stage_notes(made.trained), "examples per task: " + "; ".join(per_task)]
            + reward_model_notes(cfg.reward_models) + list(kept.values()) + by_design + made.left_out
            + [f"not evaluated: policy {f.policy} on {f.env} ({f.message})" for f in failures])


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)  # rouge-score logs every tokenizer it builds
    args = parse_config(RunConfig, argv,
                        description="Leaderboards comparing base, SFT, reward-model best-of-n and PPO policies.")
    suite = SUITES[args.suite]
    if args.make and args.no_make:
        raise ValueError("--make and --no-make contradict each other: pass one of them")
    leaderboard_paths(args.out, args.name or args.suite)  # an unwritable output fails now, not after the run
    cfg = suite_config(args)
    check_config(cfg)
    resolve_device(cfg.device)
    dist = Dist()  # one process unless launched with accelerate
    start = time.perf_counter()
    made = _make_or_leave_out(args, cfg, suite.preset, dist, start)
    cfg = replace(cfg, skip=cfg.skip + tuple(sorted(made.not_made)))
    train_secs = time.perf_counter() - start
    cfg = _present_reward_models(cfg)
    gens, failures = _generate(cfg, dist)
    if not dist.is_main:
        return 0
    if not gens:
        print("error: no policy produced any generation; see the messages above", file=sys.stderr)
        return 1
    df = score_generations(gens, cfg)
    kept = kept_start_notes(cfg.policies, cfg.envs)
    for (policy, env) in kept:
        df.loc[(df["policy"] == policy) & (df["task"] == env), "policy"] = f"{policy} (= sft)"
    eval_secs = time.perf_counter() - start - train_secs
    info = collect_run_info(suite=args.name or args.suite, seeds=[cfg.seed, *args.seeds], model=cfg.model,
                            decoding=vars(cfg.decoding), limit=cfg.limit, budgets=suite.budgets,
                            notes=_header_notes(cfg, made, kept, failures, train_secs, eval_secs))
    paths = write_leaderboard(df, args.out, args.name or args.suite, info, metrics=cfg.metrics)
    secs = time.perf_counter() - start
    print(f"wrote {', '.join(str(p) for p in paths.values())} in {secs:.0f} s")
    for f in failures:
        print(f"failed: policy {f.policy!r} on {f.env}: {f.message}", file=sys.stderr)
    # the table (its header names what is missing) is written either way
    return 1 if failures or (made.train and made.not_made) else 0


if __name__ == "__main__":
    cli(main)
