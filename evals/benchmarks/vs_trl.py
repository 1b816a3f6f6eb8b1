"""Seconds per RL iteration, textenv against TRL, side by side in one run, on the same model,
prompts, samples per prompt, token budget, reward, KL weight and learning rate (one epoch per
batch, fp32 unless ``--precision``). A benchmark, never a test.

- ``--algo grpo`` (default): ``agents.ppo --advantage grpo`` against TRL's ``GRPOTrainer``, both
  rewarded by the task's own reward (TRL gets it through :mod:`agents.trl_adapter`).
- ``--algo ppo``: ``agents.ppo`` (GAE, a value head on the policy) against TRL's PPO
  (``trl.experimental.ppo``: a separate value model), both rewarded by the same sequence-classifier
  reward model (``--reward-model``, or one built from the policy with a seeded random head: the
  timing does not depend on what it prefers). TRL removed its PPO after 1.12: put a TRL that has it
  first on the path, e.g. ``pip install --no-deps --target /tmp/trl112 trl==1.12.0`` and
  ``PYTHONPATH=/tmp/trl112``.

    python -m evals.benchmarks.vs_trl                            # default model, TextSentiment-v0
    python -m evals.benchmarks.vs_trl --model tiny --env TextCount-v0 --iterations 6
    PYTHONPATH=/tmp/trl112 python -m evals.benchmarks.vs_trl --algo ppo

Each side runs ``--iterations`` iterations of ``--prompts`` prompts x ``--samples`` completions; the
first is a warm-up, the median of the rest is reported, with the ratio textenv / TRL (< 1: textenv
is faster). Each side runs in its own child process (``--side``), so each peak RSS is that side's
alone, not the larger of the two. Installs nothing: ``pip install trl`` first.
"""

from __future__ import annotations

import dataclasses
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
from textenv.context import ENV_HELP, EnvContext
from textenv.devices import Precision, resolve_device


def _textenv(args: VsTRLConfig) -> list[float]:
    from agents.ppo import PPOConfig, PPOTrainer

    with tempfile.TemporaryDirectory() as runs:
        cfg = PPOConfig(env=args.env, model=args.model, advantage="grpo" if args.algo == "grpo" else "gae",
                        reward_model=args.reward_model if args.algo == "ppo" else None, prompts_per_iter=args.prompts,
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
    from trl import GRPOConfig, GRPOTrainer

    from agents.trl_adapter import task_dataset, trl_reward
    from textenv.models import env_model_kwargs, load_model

    setup = gym.make(args.env, **env_model_kwargs(args.model)).unwrapped.setup
    _, model = load_model(args.model, tokenizer=setup.tokenizer)
    n = args.prompts * args.iterations
    data = task_dataset(args.env, "train", model=args.model, tokenizer=setup.tokenizer, limit=n)
    clock = _Clock()
    with tempfile.TemporaryDirectory() as out:
        model.save_pretrained(f"{out}/model")  # TRL loads its reference model (beta > 0) from a path
        config = GRPOConfig(output_dir=out, per_device_train_batch_size=args.prompts * args.samples,
                            num_generations=args.samples, max_completion_length=args.max_new_tokens,
                            max_steps=args.iterations, num_iterations=1, learning_rate=args.lr, beta=args.kl,
                            temperature=1.0, report_to=[], save_strategy="no", logging_steps=10**6,
                            use_cpu=resolve_device(args.device).type == "cpu", bf16=args.precision == "bf16",
                            seed=args.seed, disable_tqdm=True)
        trainer = GRPOTrainer(model=f"{out}/model", reward_funcs=[trl_reward(args.env)], train_dataset=data,
                              args=config, processing_class=setup.tokenizer, callbacks=[clock.callback])
        trainer.train()
    return clock.times


class _Clock:
    """Seconds of each TRL step: from a step's start (or the previous step's end, for a trainer
    that reports only ends) to its end."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        self.times: list[float] = []
        clock = self

        class Callback(TrainerCallback):
            def on_train_begin(self, *a: Any, **k: Any) -> None:
                clock.start = time.perf_counter()

            def on_step_begin(self, *a: Any, **k: Any) -> None:
                clock.start = time.perf_counter()

            def on_step_end(self, *a: Any, **k: Any) -> None:
                clock.times.append(time.perf_counter() - clock.start)
                clock.start = time.perf_counter()

        self.callback = Callback()


def _trl_ppo(args: VsTRLConfig) -> list[float]:
    import copy

    import gymnasium as gym
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    from textenv.models import env_model_kwargs, load_model

    setup = gym.make(args.env, **env_model_kwargs(args.model)).unwrapped.setup
    tok = copy.copy(setup.tokenizer)
    tok.padding_side = "left"  # TRL's PPO generates from its collator's padded batch
    _, model = load_model(args.model, tokenizer=setup.tokenizer)
    model.train()
    prompts = [setup.encode(i).ids.tolist() for i in range(args.prompts * args.iterations)]
    data = Dataset.from_dict({"input_ids": [p for p in prompts for _ in range(args.samples)]})
    clock = _Clock()
    with tempfile.TemporaryDirectory() as out:
        model.save_pretrained(f"{out}/model")
        value = AutoModelForSequenceClassification.from_pretrained(f"{out}/model", num_labels=1)
        value.config.pad_token_id = tok.pad_token_id
        reward = AutoModelForSequenceClassification.from_pretrained(args.reward_model, num_labels=1)
        reward.config.pad_token_id = tok.pad_token_id
        n = args.prompts * args.samples
        config = PPOConfig(output_dir=out, per_device_train_batch_size=n, gradient_accumulation_steps=1,
                           num_mini_batches=1, num_ppo_epochs=1, local_rollout_forward_batch_size=n,
                           total_episodes=n * args.iterations, response_length=args.max_new_tokens,
                           learning_rate=args.lr, kl_coef=args.kl, temperature=1.0, stop_token="eos",
                           num_sample_generations=0, report_to=[], save_strategy="no", logging_steps=10**6,
                           use_cpu=resolve_device(args.device).type == "cpu", bf16=args.precision == "bf16",
                           seed=args.seed, disable_tqdm=True)
        trainer = PPOTrainer(args=config, processing_class=tok, model=model, ref_model=copy.deepcopy(model),
                             reward_model=reward, train_dataset=data, value_model=value, callbacks=[clock.callback])
        trainer.train()
    return clock.times


def build_reward_model(policy: str, env: str, out: str, seed: int = 0) -> str:
    """A sequence-classifier reward model on ``policy``'s trunk with a seeded random score head, saved
    with its tokenizer under ``out``: what ``--algo ppo`` scores with when no ``--reward-model`` is
    given (both sides run the same forward; what it prefers does not change the timing)."""
    import gymnasium as gym
    from transformers import AutoModelForSequenceClassification

    from textenv.models import env_model_kwargs, load_model

    setup = gym.make(env, **env_model_kwargs(policy)).unwrapped.setup  # the env's tokenizer (tiny: its vocab)
    tok, model = load_model(policy, tokenizer=setup.tokenizer)
    model.save_pretrained(f"{out}/policy")
    torch.manual_seed(seed)
    rm = AutoModelForSequenceClassification.from_pretrained(f"{out}/policy", num_labels=1)
    rm.config.pad_token_id = tok.pad_token_id
    rm.save_pretrained(f"{out}/reward_model")
    tok.save_pretrained(f"{out}/reward_model")
    return f"{out}/reward_model"


_RESULT = "VS_TRL_RESULT "  # the line a child process reports its numbers on


def _rss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


@dataclass(frozen=True)
class VsTRLConfig(EnvContext):
    """Seconds per GRPO or PPO iteration, textenv against TRL, same shapes (each field is a ``--flag``)."""

    algo: Literal["grpo", "ppo"] = arg("grpo", "'grpo' (GRPOTrainer, the task's reward) or 'ppo' (TRL's experimental "
                                               "PPO, a reward model)")
    reward_model: str | None = arg(None, "--algo ppo: a sequence-classifier checkpoint (default: built from the "
                                         "policy with a random head)")

    env: str = arg("TextSentiment-v0", ENV_HELP)
    prompts: int = arg(4, "distinct prompts per iteration")
    samples: int = arg(4, "completions per prompt (GRPO's group; PPO: the prompt repeated)")
    max_new_tokens: int = arg(16, "tokens per completion")
    iterations: int = arg(5, "iterations per side; the first is a warm-up")
    lr: float = arg(1e-6, "learning rate of both sides")
    kl: float = arg(0.04, "KL weight (TRL's beta, textenv's kl_coef)")
    device: str = arg("cpu", "'cpu', 'cuda', 'auto'")
    precision: Precision = arg("fp32", "'fp32', 'bf16' or 'auto' (bf16 autocast on CUDA)")
    side: Literal["both", "textenv", "trl"] = arg("both", "'both' runs each side in a child process and "
                                                        "compares; a side's name runs only that side here")


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_config(VsTRLConfig, argv)
    min_samples = 2 if args.algo == "grpo" else 1
    if min(args.prompts, args.iterations, args.max_new_tokens) < 1 or args.samples < min_samples or args.iterations < 2:
        raise ValueError(f"need --prompts >= 1, --samples >= {min_samples} (--algo {args.algo}), "
                         "--max-new-tokens >= 1 and --iterations >= 2")
    if args.reward_model and args.algo != "ppo":
        raise ValueError("--reward-model is for --algo ppo (GRPO is rewarded by the task's own reward)")
    try:
        import trl
    except ImportError as exc:
        raise ImportError("this benchmark compares against TRL: pip install trl (or textenv[trl])") from exc
    if args.algo == "ppo" and args.side != "textenv":
        try:
            import trl.experimental.ppo  # noqa: F401
        except ImportError as exc:
            raise ImportError(f"--algo ppo needs a TRL with trl.experimental.ppo (1.12 or earlier; this is "
                              f"{trl.__version__}): see this module's docstring") from exc
    with tempfile.TemporaryDirectory() as tmp:
        if args.algo == "ppo" and not args.reward_model:  # built once, scored by both sides
            args = dataclasses.replace(args, reward_model=build_reward_model(args.model, args.env, tmp, args.seed))
        if args.side != "both":
            times = {"textenv": _textenv, "trl": _trl if args.algo == "grpo" else _trl_ppo}[args.side](args)
            peak = _rss_gb()
            print(_RESULT + json.dumps({"times": times, "peak_rss_gb": peak}))
            return {"median": statistics.median(times[1:]), "peak_rss_gb": peak}
        return _compare(args, trl.__version__)


def _compare(args: VsTRLConfig, trl_version: str) -> dict[str, float]:
    print(f"algo={args.algo} model={args.model} env={args.env} prompts={args.prompts} samples={args.samples} "
          f"max_new_tokens={args.max_new_tokens} iterations={args.iterations} device={args.device} "
          f"precision={args.precision} torch_threads={torch.get_num_threads()} trl={trl_version}")
    results: dict[str, float] = {}
    given = [f"--{f.name.replace('_', '-')}={getattr(args, f.name)}" for f in dataclasses.fields(args)
             if f.name != "side" and getattr(args, f.name) is not None]
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
