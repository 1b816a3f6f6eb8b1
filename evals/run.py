"""``python -m evals.run``: leaderboards comparing base, SFT, reward-model best-of-n and PPO policies.

With no arguments it runs the ``quick`` suite on the default model: it makes the checkpoints it
needs with the agents' quick presets when they are missing (``agents.pipeline``, cached under
``runs/pipeline/``, reused after), evaluates them with the random and reference baselines on
``TextSummarize-v0`` and ``TextSentiment-v0``, and writes ``leaderboards/quick.{csv,md,png}``.

    python -m evals.run                                   # the quick suite, everything
    python -m evals.run --tasks TextSentiment-v0 --policies base,ppo-task --limit 16
    python -m evals.run --policy mine=path/to/checkpoint  # add any checkpoint (repeatable)
    python -m evals.run --suite full                      # GPU-sized budgets
    accelerate launch --multi_gpu --num_processes 2 -m evals.run ...  # shards batches, same table
                                                          # (--multi_gpu starts the processes; CPUs work too)

Policy paths may contain ``{task}``, replaced per task (checkpoints are task-specific).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from agents.distributed import Dist
from agents.tracking import stage_memory
from evals.generate import Decoding, Generation
from evals.suite import Failure, SuiteConfig, check_config, generate_all, score_generations
from textenv.cli import cli
from textenv.devices import PRECISIONS, resolve_device

__all__ = ["SUITES", "main"]

logger = logging.getLogger(__name__)

PIPELINE = "runs/pipeline/{task}__smollm2-135m"


@dataclass(frozen=True)
class Suite:
    config: SuiteConfig
    preset: str  # the agents' preset used to make missing checkpoints
    budgets: str


_POLICIES = (
    "base=smollm2-135m",
    f"sft={PIPELINE}/sft",
    f"rm=bon:{PIPELINE}/sft",
    f"ppo-task={PIPELINE}/ppo_task",
    f"ppo-rm={PIPELINE}/ppo_rm",
    "random",
    "reference",
)

_FULL_TASKS = ("TextSummarize-v0", "TextSentiment-v0", "TextReasoning-v0")

SUITES: dict[str, Suite] = {
    "quick": Suite(
        SuiteConfig(policies=_POLICIES, reward_models=tuple(f"{t}={PIPELINE.format(task=t)}/reward_model"
                                                            for t in ("TextSummarize-v0", "TextSentiment-v0")),
                    limit=64, decoding=Decoding(temperature=0.7, max_new_tokens=32, batch_size=32)),
        preset="quick",
        budgets="CPU quick presets (agents.sft/reward_model/ppo --preset quick), 64 test examples per task, "
                "32 new tokens, best-of-4",
    ),
    "full": Suite(
        SuiteConfig(tasks=_FULL_TASKS, policies=_POLICIES,
                    reward_models=tuple(f"{t}={PIPELINE.format(task=t)}/reward_model" for t in _FULL_TASKS),
                    limit=256, decoding=Decoding(temperature=0.7, max_new_tokens=None, batch_size=64)),
        preset="default",
        budgets="GPU default presets (agents.ppo --preset default-<task>: PPO on sentiment and summaries, GRPO "
                "with 8 samples per prompt on reasoning), 256 test examples per task, the tasks' own token "
                "budgets, best-of-4",
    ),
}


def make_checkpoints(tasks: tuple[str, ...], preset: str, model: str, device: str = "auto",
                     precision: str = "auto") -> None:
    """Run the missing pipeline stages (SFT -> reward model -> PPO on the task reward and on the
    reward model) for every task."""
    from agents.pipeline import PipelineConfig, run_pipeline

    for task in tasks:
        run_pipeline(PipelineConfig(task=task, model=model, preset=preset, out=PIPELINE.format(task=task),
                                    device=device, precision=precision))  # type: ignore[arg-type]


def reward_model_notes(reward_models: tuple[str, ...]) -> list[str]:
    """One header line per task's reward model: its held-out pairwise accuracy, all pairs and
    length-matched, as its trainer measured them (``metrics.json``)."""
    import json

    notes = []
    for item in reward_models:
        task, _, path = item.partition("=")
        metrics_file = Path(path) / "metrics.json"
        if not metrics_file.exists():
            continue
        m = json.loads(metrics_file.read_text())
        after = {k.removeprefix("eval/after/"): v for k, v in m.items() if k.startswith("eval/after/")}
        kinds = ", ".join(f"{k[9:]} {v:.2f} (n={after.get('pairs/' + k[9:])})"
                          for k, v in sorted(after.items()) if k.startswith("accuracy/"))
        lm = after.get("accuracy_length_matched")
        notes.append(f"reward model {task}: held-out ({m.get('eval_split')}) pairwise accuracy "
                     f"{m['eval/accuracy_after']:.3f} on {m.get('eval_pairs')} pairs (before training "
                     f"{m['eval/accuracy_before']:.3f}); length-matched "
                     f"{'n/a' if lm is None else f'{lm:.3f}'} on {after.get('pairs_length_matched')} pairs; "
                     f"by kind: {kinds}")
    return notes


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, SuiteConfig, Suite]:
    parser = argparse.ArgumentParser(prog="python -m evals.run", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--suite", default="quick", choices=sorted(SUITES), help="budgets and default policies")
    parser.add_argument("--tasks", default=None, help="comma-separated env ids (default: the suite's)")
    parser.add_argument("--policies", default=None, help="comma-separated policy names to keep (default: all)")
    parser.add_argument("--policy", action="append", default=[], metavar="NAME=PATH",
                        help="add a policy: NAME=PATH, NAME=bon:PATH (best-of-n), 'random' or 'reference'")
    parser.add_argument("--only", action="store_true", help="evaluate only the --policy entries")
    parser.add_argument("--reward-model", action="append", default=[], metavar="TASK=PATH",
                        help="reward model of a task (rm_score metric, best-of-n reranking)")
    parser.add_argument("--metrics", default=None, help="comma-separated metrics to keep (default: all)")
    parser.add_argument("--limit", type=int, default=None, help="test examples per task (default: the suite's)")
    parser.add_argument("--model", default=None, help="base model (default: smollm2-135m)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto",
                        help="where policies, the reference and reward models run: 'auto' (CUDA when present), "
                             "'cpu', 'cuda', 'cuda:N'")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="'auto' (bf16 autocast on CUDA, fp32 elsewhere), 'fp32' or 'bf16' (any device)")
    parser.add_argument("--out", default="leaderboards", help="directory of the leaderboard files")
    parser.add_argument("--name", default=None, help="leaderboard file name (default: the suite name)")
    parser.add_argument("--no-make", action="store_true", help="do not create missing checkpoints")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    suite = SUITES[args.suite]
    cfg = suite.config
    policies = () if args.only else cfg.policies
    policies = tuple(policies) + tuple(args.policy)
    if args.policies:
        keep = args.policies.split(",")
        names = [p.partition("=")[0] for p in policies]
        unknown = [k for k in keep if k not in names]
        if unknown:
            parser.error(f"unknown policy names {unknown}; available: {names}")
        policies = tuple(p for p, n in zip(policies, names, strict=True) if n in keep)
    model = args.model or cfg.model
    if args.model and args.model != cfg.model:  # the default base entry follows --model
        policies = tuple(f"base={model}" if p == f"base={cfg.model}" else p for p in policies)
    cfg = replace(
        cfg, policies=policies, model=model, seed=args.seed, progress=not args.no_progress,
        tasks=tuple(args.tasks.split(",")) if args.tasks else cfg.tasks,
        reward_models=cfg.reward_models + tuple(args.reward_model),
        metrics=tuple(args.metrics.split(",")) if args.metrics else None,
        limit=args.limit if args.limit is not None else cfg.limit,
        device=args.device, precision=args.precision,
    )
    return args, cfg, suite


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)  # rouge-score logs every tokenizer it builds
    args, cfg, suite = parse_args(argv)
    try:
        check_config(cfg)
        resolve_device(cfg.device)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    dist = Dist()  # one process unless launched with accelerate
    is_main = dist.is_main
    start = time.perf_counter()
    uses_pipeline = any(PIPELINE in p for p in cfg.policies)
    if uses_pipeline and not args.no_make and cfg.model == "smollm2-135m":
        if is_main:
            make_checkpoints(cfg.tasks, suite.preset, cfg.model, cfg.device, cfg.precision)
            logger.info("checkpoints ready after %.0f s", time.perf_counter() - start)
        dist.barrier()
    # reward models that do not exist are dropped with a message (rm rows then fail by name)
    present = tuple(r for r in cfg.reward_models if Path(r.partition("=")[2]).exists())
    for r in set(cfg.reward_models) - set(present):
        logger.warning("reward model %s not found: rm_score and best-of-n are skipped for that task", r)
    cfg = replace(cfg, reward_models=present)
    failures: list[Failure] = []
    shard = (dist.rank, dist.world)
    stage_memory()
    gens = generate_all(cfg, shard=shard, failures=failures)
    mem = stage_memory()
    logger.info("evaluation generated %d completions; peak RSS %.2f GB", len(gens), mem.get("peak_gb", float("nan")))
    if dist.world > 1:
        logger.info("process %d/%d generated %d completions", dist.rank, dist.world, len(gens))
        gens = [Generation(**g) for g in dist.gather([g.to_dict() for g in gens])]
        # a (policy, task) split across processes fails on each of them: report it once
        failures = list(dict.fromkeys(Failure(**f) for f in dist.gather([vars(f) for f in failures])))
    if not is_main:
        return 0
    if not gens:
        print("error: no policy produced any generation; see the messages above", file=sys.stderr)
        return 1
    df = score_generations(gens, cfg)
    from evals.report import collect_run_info, write_leaderboard

    info = collect_run_info(suite=args.name or args.suite, seeds=[cfg.seed], model=cfg.model,
                            decoding=vars(cfg.decoding), limit=cfg.limit, budgets=suite.budgets,
                            notes=reward_model_notes(cfg.reward_models)
                            + [f"not evaluated: policy {f.policy} on {f.task} ({f.message})" for f in failures])
    paths = write_leaderboard(df, args.out, args.name or args.suite, info)
    secs = time.perf_counter() - start
    print(f"wrote {', '.join(str(p) for p in paths.values())} in {secs:.0f} s")
    for f in failures:
        print(f"failed: policy {f.policy!r} on {f.task}: {f.message}", file=sys.stderr)
    return 1 if failures else 0  # the table (its header names what is missing) is written either way


if __name__ == "__main__":
    cli(main)
