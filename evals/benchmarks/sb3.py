"""External agents vs the project's PPO on the same task and env-step budget (a documented run,
not a test): stable-baselines3 PPO with the LM policy, sb3-contrib MaskablePPO on the top-k
masked env (with the LM policy, and with sb3-contrib's own MLP policy), and ``agents.ppo`` with
and without the same NLPO mask — each on ``TextCount-v0`` with the tiny model.

    python -m evals.benchmarks.sb3                  # 15,360 env steps each (the tiny PPO preset's budget)

Prints, per agent, the mean episode reward of its first and last 64 episodes and the wall time.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

import textenv  # noqa: F401
from textenv.cli import arg, cli, parse_config
from textenv.devices import Precision, resolve_device

ENV = "TextCount-v0"


def _ends(rewards: list[float], k: int = 64) -> tuple[float, float]:
    return float(np.mean(rewards[:k])), float(np.mean(rewards[-k:]))


def run_sb3(steps: int, seed: int, policy: str, device: str = "cpu") -> dict[str, float]:
    """``policy``: "lm" (PPO + LMPolicy), "maskable-lm" (MaskablePPO + MaskableLMPolicy) or
    "maskable-mlp" (MaskablePPO + sb3-contrib's MultiInputPolicy), masked envs with top-16."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    from agents.sb3 import LMPolicy, MaskableLMPolicy, TopKMaskWrapper

    history: list[float] = []

    class Keep(BaseCallback):  # SB3 keeps only the last 100 episodes; keep them all
        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    history.append(float(info["episode"]["r"]))
            return True

    tok = gym.make(ENV, model="tiny").unwrapped.tokenizer
    kwargs = {"model": "tiny", "max_new_tokens": 12}
    start = time.perf_counter()
    lm_kwargs = {"model_name": "tiny", "tokenizer": tok}
    if policy.startswith("maskable"):
        from sb3_contrib import MaskablePPO

        venv = make_vec_env(ENV, n_envs=8, seed=seed, env_kwargs=kwargs,
                            wrapper_class=TopKMaskWrapper, wrapper_kwargs={"k": 16})
        if policy == "maskable-lm":
            model = MaskablePPO(MaskableLMPolicy, venv, n_steps=64, batch_size=128, n_epochs=4, learning_rate=3e-3,
                                seed=seed, device=device, verbose=0, policy_kwargs=lm_kwargs)
        else:
            model = MaskablePPO("MultiInputPolicy", venv, n_steps=64, batch_size=128, n_epochs=4,
                                learning_rate=1e-3, seed=seed, device=device, verbose=0)
    else:
        venv = make_vec_env(ENV, n_envs=8, seed=seed, env_kwargs=kwargs)
        model = PPO(LMPolicy, venv, n_steps=64, batch_size=128, n_epochs=4, learning_rate=3e-3, seed=seed,
                    device=device, verbose=0, policy_kwargs=lm_kwargs)
    model.learn(total_timesteps=steps, callback=Keep())
    first, last = _ends(history)
    return {"first": first, "last": last, "episodes": len(history), "secs": time.perf_counter() - start}


def run_ours(steps: int, seed: int, mask_top_k: int = 0, mask_update_every: int = 0, device: str = "cpu",
             precision: str = "auto") -> dict[str, float]:
    from agents.ppo import PRESETS, PPOTrainer

    cfg = PRESETS["tiny"]
    iterations = max(1, steps // (cfg.prompts_per_iter * cfg.max_new_tokens))
    with tempfile.TemporaryDirectory() as runs:
        cfg = dataclasses.replace(cfg, iterations=iterations, seed=seed, runs=runs, tensorboard=False, progress=False,
                                  mask_top_k=mask_top_k, mask_update_every=mask_update_every, device=device,
                                  precision=precision)
        start = time.perf_counter()
        trainer = PPOTrainer(cfg)
        history = trainer.train()
        secs = time.perf_counter() - start
    rewards = [m["charts/reward_mean"] for m in history]
    return {"first": float(np.mean(rewards[:4])), "last": float(np.mean(rewards[-4:])),
            "episodes": iterations * cfg.prompts_per_iter, "secs": secs}


@dataclass(frozen=True)
class SB3BenchConfig:
    """stable-baselines3 agents against agents.ppo on one env (each field is a ``--flag``)."""

    steps: int = arg(15_360, "env steps (tokens) per agent")
    seed: int = arg(0, "seed of every agent")
    device: str = arg("cpu", "'cpu', 'cuda', 'auto' (SB3's and ours)")
    precision: Precision = arg("auto", "agents.ppo's autocast: 'auto' (bf16 on CUDA), 'fp32', 'bf16'; SB3 runs in fp32")


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    args = parse_config(SB3BenchConfig, argv)
    device = str(resolve_device(args.device))
    ours = {"device": device, "precision": args.precision}
    results = {
        "sb3 PPO + LMPolicy": run_sb3(args.steps, args.seed, "lm", device),
        "MaskablePPO + MaskableLMPolicy (top-16)": run_sb3(args.steps, args.seed, "maskable-lm", device),
        "MaskablePPO + MLP policy (top-16)": run_sb3(args.steps, args.seed, "maskable-mlp", device),
        "agents.ppo (KV cache)": run_ours(args.steps, args.seed, **ours),
        "agents.ppo --mask-top-k 16": run_ours(args.steps, args.seed, mask_top_k=16, **ours),
        "agents.ppo --mask-top-k 16 --mask-update-every 5": run_ours(args.steps, args.seed, 16, 5, **ours),
    }
    print(f"{ENV}, tiny model, {args.steps} env steps each, seed {args.seed}")
    for name, r in results.items():
        print(f"{name:50s} reward {r['first']:.3f} -> {r['last']:.3f}  episodes {r['episodes']:5d}  "
              f"wall {r['secs']:6.1f} s")
    return results


if __name__ == "__main__":
    cli(main)
