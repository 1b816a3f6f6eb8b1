"""Seconds per GRPO iteration: ``agents.ppo --advantage grpo`` against TRL's ``GRPOTrainer``, side by
side in one run, on the same model, prompts, samples per prompt, token budget, reward, KL weight and
learning rate (one epoch per batch, fp32 unless ``--precision``). A benchmark, never a test.

    python -m evals.benchmarks.vs_trl                            # default model, TextSentiment-v0
    python -m evals.benchmarks.vs_trl --model tiny --env TextCount-v0 --iterations 6

TRL gets the task through :mod:`agents.trl_adapter` (the env's own prompt text and reward). Each
side runs ``--iterations`` iterations of ``--prompts`` prompts x ``--samples`` completions; the
first is a warm-up, the median of the rest is reported, with the ratio textenv / TRL (< 1: textenv
is faster). Each side runs in its own child process (``--side``), so each peak RSS is that side's
alone, not the larger of the two. Installs nothing: ``pip install trl`` first.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Literal

import torch

from textenv.cli import arg, cli, parse_config
from textenv.devices import Precision, resolve_device


def _textenv(args: VsTRLConfig) -> list[float]:
    from agents.ppo import PPOConfig, PPOTrainer

    with tempfile.TemporaryDirectory() as runs:
        cfg = PPOConfig(env=args.env, model=args.model, advantage="grpo", prompts_per_iter=args.prompts,
                        samples_per_prompt=args.samples, max_new_tokens=args.max_new_tokens, epochs=1,
                        minibatch_size=args.prompts * args.samples, iterations=args.iterations, lr=args.lr,
                        kl_coef=args.kl, kl_target=None, device=args.device, precision=args.precision,
                        runs=runs, tensorboard=False, progress=False, checkpoint_every=10**6, seed=args.seed)
        trainer = PPOTrainer(cfg)
        times = []
        for _ in range(args.iterations):
            start = time.perf_counter()
            trainer.step()
            times.append(time.perf_counter() - start)
        return times


def _trl(args: VsTRLConfig) -> list[float]:
    import gymnasium as gym
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from agents.trl_adapter import task_dataset, trl_reward
    from textenv.models import env_model_kwargs, load_model

    setup = gym.make(args.env, **env_model_kwargs(args.model)).unwrapped.setup
    _, model = load_model(args.model, tokenizer=setup.tokenizer)
    n = args.prompts * args.iterations
    data = task_dataset(args.env, "train", model=args.model, tokenizer=setup.tokenizer, limit=n)
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            times.append(time.perf_counter() - self.start)

    with tempfile.TemporaryDirectory() as out:
        model.save_pretrained(f"{out}/model")  # TRL loads its reference model (beta > 0) from a path
        config = GRPOConfig(output_dir=out, per_device_train_batch_size=args.prompts * args.samples,
                            num_generations=args.samples, max_completion_length=args.max_new_tokens,
                            max_steps=args.iterations, num_iterations=1, learning_rate=args.lr, beta=args.kl,
                            temperature=1.0, report_to=[], save_strategy="no", logging_steps=10**6,
                            use_cpu=resolve_device(args.device).type == "cpu", bf16=args.precision == "bf16",
                            seed=args.seed, disable_tqdm=True)
        trainer = GRPOTrainer(model=f"{out}/model", reward_funcs=[trl_reward(args.env)], train_dataset=data,
                              args=config, processing_class=setup.tokenizer, callbacks=[Clock()])
        trainer.train()
    return times


_RESULT = "VS_TRL_RESULT "  # the line a child process reports its numbers on


def _rss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


@dataclass(frozen=True)
class VsTRLConfig:
    """GRPO seconds per iteration, textenv against TRL, same shapes (each field is a ``--flag``)."""

    env: str = arg("TextSentiment-v0", "registered env id (its prompts and task reward)")
    model: str = arg("smollm2-135m", "policy model")
    prompts: int = arg(4, "distinct prompts per iteration")
    samples: int = arg(4, "completions per prompt (the group)")
    max_new_tokens: int = arg(16, "tokens per completion")
    iterations: int = arg(5, "iterations per side; the first is a warm-up")
    lr: float = arg(1e-6, "learning rate of both sides")
    kl: float = arg(0.04, "KL weight (TRL's beta, textenv's kl_coef)")
    seed: int = arg(0, "seed of both sides")
    device: str = arg("cpu", "'cpu', 'cuda', 'auto'")
    precision: Precision = arg("fp32", "'fp32', 'bf16' or 'auto' (bf16 autocast on CUDA)")
    side: Literal["both", "textenv", "trl"] = arg("both", "'both' runs each side in a child process and "
                                                        "compares; a side's name runs only that side here")


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_config(VsTRLConfig, argv)
    if min(args.prompts, args.iterations, args.max_new_tokens) < 1 or args.samples < 2 or args.iterations < 2:
        raise ValueError("need --prompts >= 1, --samples >= 2, --max-new-tokens >= 1 and --iterations >= 2")
    try:
        import trl
    except ImportError as exc:
        raise ImportError("this benchmark compares against TRL: pip install trl (or textenv[trl])") from exc
    if args.side != "both":
        times = {"textenv": _textenv, "trl": _trl}[args.side](args)
        peak = _rss_gb()
        print(_RESULT + json.dumps({"times": times, "peak_rss_gb": peak}))
        return {"median": statistics.median(times[1:]), "peak_rss_gb": peak}
    print(f"model={args.model} env={args.env} prompts={args.prompts} samples={args.samples} "
          f"max_new_tokens={args.max_new_tokens} iterations={args.iterations} device={args.device} "
          f"precision={args.precision} torch_threads={torch.get_num_threads()} trl={trl.__version__}")
    results: dict[str, float] = {}
    given = sys.argv[1:] if argv is None else list(argv)
    for name in ("textenv", "trl"):
        proc = subprocess.run([sys.executable, "-m", "evals.benchmarks.vs_trl", *given, "--side", name],
                              capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith(_RESULT)]
        if proc.returncode or not lines:
            raise RuntimeError(f"the {name} side failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        child = json.loads(lines[-1][len(_RESULT):])
        results[name] = statistics.median(child["times"][1:])
        results[f"{name}_peak_rss_gb"] = child["peak_rss_gb"]
        print(f"{name:8s} {results[name]:7.2f} s per iteration (median of {len(child['times']) - 1}); "
              f"peak RSS {child['peak_rss_gb']:.2f} GB")
    results["ratio"] = results["textenv"] / results["trl"]
    results["rss_ratio"] = results["textenv_peak_rss_gb"] / results["trl_peak_rss_gb"]
    print(f"textenv / TRL: time {results['ratio']:.2f}, peak RSS {results['rss_ratio']:.2f} (< 1: textenv "
          f"faster, smaller)")
    return results


if __name__ == "__main__":
    cli(main)
