"""Seconds per GRPO iteration: ``agents.ppo --advantage grpo`` against TRL's ``GRPOTrainer``, side by
side in one run, on the same model, prompts, samples per prompt, token budget, reward, KL weight and
learning rate (one epoch per batch, fp32 unless ``--precision``). A benchmark, never a test.

    python -m evals.benchmarks.vs_trl                            # default model, TextSentiment-v0
    python -m evals.benchmarks.vs_trl --model tiny --env TextCount-v0 --iterations 6

TRL gets the task through :mod:`agents.trl_adapter` (the env's own prompt text and reward). Each
side runs ``--iterations`` iterations of ``--prompts`` prompts x ``--samples`` completions; the
first is a warm-up, the median of the rest is reported, with the ratio textenv / TRL (< 1: textenv
is faster) and each side's peak RSS growth. Installs nothing: ``pip install trl`` first.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import torch

from textenv.cli import cli
from textenv.devices import PRECISIONS, resolve_device


def _textenv(args: argparse.Namespace) -> list[float]:
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


def _trl(args: argparse.Namespace) -> list[float]:
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


def _rss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(prog="python -m evals.benchmarks.vs_trl", description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="TextSentiment-v0")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=4, help="distinct prompts per iteration")
    parser.add_argument("--samples", type=int, default=4, help="completions per prompt (the group)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=5, help="iterations per side; the first is a warm-up")
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--kl", type=float, default=0.04, help="KL weight (TRL's beta, textenv's kl_coef)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="'cpu', 'cuda', 'auto'")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    args = parser.parse_args(argv)
    if min(args.prompts, args.iterations, args.max_new_tokens) < 1 or args.samples < 2 or args.iterations < 2:
        raise ValueError("need --prompts >= 1, --samples >= 2, --max-new-tokens >= 1 and --iterations >= 2")
    try:
        import trl
    except ImportError as exc:
        raise ImportError("this benchmark compares against TRL: pip install trl (or textenv[trl])") from exc
    print(f"model={args.model} env={args.env} prompts={args.prompts} samples={args.samples} "
          f"max_new_tokens={args.max_new_tokens} iterations={args.iterations} device={args.device} "
          f"precision={args.precision} torch_threads={torch.get_num_threads()} trl={trl.__version__}")
    results = {}
    for name, fn in (("textenv", _textenv), ("trl", _trl)):
        before = _rss_gb()
        times = fn(args)
        results[name] = statistics.median(times[1:])
        print(f"{name:8s} {results[name]:7.2f} s per iteration (median of {len(times) - 1}; peak RSS "
              f"{_rss_gb():.2f} GB, +{_rss_gb() - before:.2f})")
    results["ratio"] = results["textenv"] / results["trl"]
    print(f"textenv / TRL: {results['ratio']:.2f} (< 1: textenv faster)")
    return results


if __name__ == "__main__":
    cli(main)
