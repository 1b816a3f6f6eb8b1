"""Peak memory of a PPO stage on multi-turn episodes: the learner's LM head at the actions only (as
it runs) vs over every generated column (as it ran before: the inserted turns and the padding got
vocabulary-wide logits too, and every layer's hidden states were kept), one process each.

    python -m evals.benchmarks.learner                     # TextDialogue-v0, quick-dialogue, default model
    python -m evals.benchmarks.learner --model tiny --iterations 1

Each variant runs the preset's trainer in a fresh process (peak RSS is a process's high-water mark):
``iterations`` PPO iterations from the base model (rollout, reference scoring, update; the base
model's turns run long, so this is the heavy end), then one held-out evaluation as ``eval_every``
runs it. It prints the seconds and the peak RSS (``ru_maxrss``) after loading and at the end, and
the first iteration's policy loss, which is the same under both variants up to float rounding (the
same learner, computed two ways). A benchmark, not a test.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import torch

import agents.policy as policy_module
from agents.kvcache import score_forward
from textenv.cli import arg, cli, parse_config
from textenv.models import DEFAULT_MODEL

VARIANTS = ("actions", "dense")


def _dense_columns(model, batch, ids: torch.Tensor, mask: torch.Tensor):
    """The learner before the LM head moved to the actions: logits over every generated column and
    the last layer's hidden states read off ``output_hidden_states`` (every layer's kept), then the
    actions' rows picked out of them."""
    g = batch.gen_len
    logits, hidden = score_forward(model, ids, mask, logits_to_keep=g + 1, prompt_len=batch.prompt_len)
    select, place = policy_module.action_selector(batch, ids.device)
    return policy_module._Scored(select(logits[:, :-1]), select(hidden[:, -g - 1:-1]), select(ids[:, -g:]),
                                 select, place)


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux


def child(variant: str, env: str, preset: str, model: str, iterations: int) -> dict[str, float]:
    """One variant's stage in this process."""
    from agents.ppo import PRESETS, PPOTrainer

    if variant == "dense":
        policy_module._action_columns = _dense_columns
    with tempfile.TemporaryDirectory() as runs:
        cfg = dataclasses.replace(PRESETS[preset], env=env, model=model, iterations=iterations, runs=runs,
                                  tensorboard=False, progress=False, checkpoint_every=iterations + 1)
        trainer = PPOTrainer(cfg)
        loaded, start = _peak_gb(), time.perf_counter()
        first = [trainer.step() for _ in range(iterations)][0]
        trained = time.perf_counter() - start
        trainer.evaluate_heldout()
        out = {"loaded_gb": loaded, "peak_gb": _peak_gb(), "train_s": trained,
               "total_s": time.perf_counter() - start, "policy_loss": first.get("losses/policy_loss", float("nan"))}
        trainer.close()
    return out


@dataclass(frozen=True)
class LearnerBenchConfig:
    """A PPO stage's peak RSS, LM head at the actions vs over every generated column (each field is a ``--flag``)."""

    env: str = arg("TextDialogue-v0", "env id")
    preset: str = arg("quick-dialogue", "agents.ppo preset")
    model: str = arg(DEFAULT_MODEL, "policy model")
    iterations: int = arg(1, "PPO iterations per variant")
    variant: str | None = arg(None, "run one variant in this process (the benchmark's child)")


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_config(LearnerBenchConfig, argv)
    if args.variant is not None:
        out = child(args.variant, args.env, args.preset, args.model, args.iterations)
        print(json.dumps(out))
        return out
    print(f"{args.env} {args.preset} model={args.model} iterations={args.iterations} torch_threads="
          f"{torch.get_num_threads()}")
    results: dict[str, float] = {}
    for variant in VARIANTS:
        cmd = [sys.executable, "-m", "evals.benchmarks.learner", "--variant", variant, "--env", args.env,
               "--preset", args.preset, "--model", args.model, "--iterations", str(args.iterations)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{variant:>8}: peak RSS {row['peak_gb']:.2f} GB (after loading {row['loaded_gb']:.2f} GB), "
              f"{row['train_s']:.0f} s training + held-out eval {row['total_s'] - row['train_s']:.0f} s, "
              f"first policy loss {row['policy_loss']:+.6f}")
        results.update({f"{variant}/{k}": v for k, v in row.items()})
    print(f"peak RSS dense / actions: {results['dense/peak_gb'] / results['actions/peak_gb']:.2f}x")
    return results


if __name__ == "__main__":
    cli(main)
