"""``python -m textenv``: roll out a model (greedy, sampled) or random tokens on a textenv task and
print each completion with its reward. The smallest end-to-end check that an env, a model and a
reward work together; learning lives in ``agents``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import numpy as np

import textenv  # noqa: F401 - registers the env ids
from textenv.cli import arg, cli, parse_config
from textenv.context import EnvContext
from textenv.devices import resolve_device
from textenv.models import forward_with_cache


@dataclass(frozen=True)
class DemoConfig(EnvContext):
    """Roll out a model or random tokens on a textenv task and print each completion with its reward."""

    env: str = arg("TextSummarize-v0", f"a registered env id ({', '.join(textenv.ENV_IDS)}) or 'module:Env-vN' "
                                       "(a module that registers a task)")
    policy: Literal["greedy", "sample", "random"] = arg("greedy", "how tokens are chosen")
    episodes: int = arg(2, "episodes to roll out")
    split: Literal["train", "validation", "test"] = arg("test", "the split prompts come from")
    max_new_tokens: int | None = arg(None, "token budget (None: the task's)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.episodes < 1:
            raise ValueError(f"--episodes must be >= 1, got {self.episodes}")


def rollout(env: gym.Env, model, policy: str, seed: int, temperature: float = 1.0,
            precision: str = "auto") -> tuple[float, dict, int]:
    """One episode; the model keeps its KV cache across env steps: each forward feeds what the
    observation gained (one token, or a turn a multi-turn env inserted), on the model's device under
    ``precision``'s autocast; tokens are chosen on the CPU. Returns the episode's return."""
    import torch

    from textenv.devices import autocast

    device = next(model.parameters()).device
    obs, _ = env.reset(seed=seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    seen = obs["input_ids"][obs["attention_mask"] == 1]
    inputs, fed = torch.as_tensor(seen)[None], len(seen)
    past, done, steps, total, info = None, False, 0, 0.0, {}
    while not done:
        if policy == "random":
            token = int(rng.integers(env.action_space.n))
        else:
            with torch.no_grad(), autocast(device, precision):
                out, past = forward_with_cache(model, inputs.to(device), past)
            logits = out.logits[0, -1].float().cpu()
            if policy == "greedy":
                token = int(logits.argmax())
            else:
                token = int(torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=gen))
        obs, reward, terminated, truncated, info = env.step(token)
        seen = obs["input_ids"][obs["attention_mask"] == 1]
        inputs, fed = torch.as_tensor(seen[fed:])[None], len(seen)
        total += float(reward)
        done, steps = terminated or truncated, steps + 1
    return total, info, steps


def main(argv: list[str] | None = None) -> None:
    args = parse_config(DemoConfig, argv)

    from textenv.models import load_model
    from textenv.tasks import env_spec

    env_spec(args.env)  # an unknown id or a module that does not import: one line, before any model loads
    device = resolve_device(args.device)
    env = gym.make(args.env, model=args.model, split=args.split, max_new_tokens=args.max_new_tokens)
    _, model = load_model(args.model, tokenizer=env.unwrapped.tokenizer)
    model.to(device)
    rewards = []
    for episode in range(args.episodes):
        start = time.perf_counter()
        reward, info, steps = rollout(env, model, args.policy, seed=args.seed + episode, precision=args.precision)
        secs = time.perf_counter() - start
        rewards.append(reward)
        print(f"--- episode {episode} (prompt {info['index']}, {steps} tokens, {steps / secs:.1f} tok/s)")
        print(f"prompt:    ...{info['prompt'][-300:]!r}")
        for message in info.get("conversation", [])[:-1]:  # a multi-turn episode's earlier turns
            print(f"{message['role']:>9}: {message['content']!r}")
        print(f"text:      {info['text']!r}")
        if info["reference"] is not None:
            print(f"reference: {info['reference']!r}")
        parts = ", ".join(f"{k}={v:.4f}" for k, v in info["reward_parts"].items())
        print(f"reward:    {reward:.4f} ({parts})")
    print(f"mean reward over {len(rewards)} episodes: {np.mean(rewards):.4f}")


if __name__ == "__main__":
    cli(main)
