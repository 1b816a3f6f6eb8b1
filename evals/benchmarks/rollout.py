"""Rollout speed: the KV-cached policy stepping the real vector env vs ``model.generate`` vs naive
no-cache stepping, on the same model, prompts, batch and decoding. A benchmark, not a test.

    python -m evals.benchmarks.rollout                  # default model, TextSentiment-v0, batch 8, 64, 256
    python -m evals.benchmarks.rollout --model tiny --env TextCount-v0 --num-envs 8 64

Greedy decoding is the headline: all three paths then produce the same tokens, so tokens/s compare
the same work. A sampled run (temperature 1) is reported too, as generated tokens per second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

import textenv  # noqa: F401
from agents.kvcache import left_pad, positions
from agents.policy import LMActorCritic, Sampling
from agents.rollout import collect
from textenv.cli import arg, cli, parse_config
from textenv.context import ENV_HELP, EnvContext
from textenv.devices import autocast, resolve_device


def _prompts(envs, indices, device=None):
    setup = envs.unwrapped.setup
    ids, mask = left_pad([setup.encode(i).ids for i in indices], setup.pad_token_id)
    return ids.to(device), mask.to(device)


@torch.no_grad()
def run_generate(policy, envs, indices, max_new, greedy, seed):
    ids, mask = _prompts(envs, indices, policy.device)
    eos = envs.unwrapped.setup.eos_token_id
    torch.manual_seed(seed)
    start = time.perf_counter()
    out = policy.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=not greedy,
                                top_k=0, top_p=1.0, temperature=1.0, eos_token_id=eos,
                                pad_token_id=policy.pad_token_id)
    secs = time.perf_counter() - start
    gen = out[:, ids.shape[1]:].tolist()
    seqs = [g[:g.index(eos) + 1] if eos in g else g for g in gen]
    return seqs, secs


@torch.no_grad()
def run_env(policy, envs, indices, greedy, seed):
    start = time.perf_counter()
    episodes = collect(envs, policy, indices, seed=seed, generator=torch.Generator(policy.device).manual_seed(seed),
                       greedy=greedy)
    return [e.actions for e in episodes], time.perf_counter() - start


@torch.no_grad()
def run_naive(policy, envs, indices, greedy, seed):
    """The O(n^2) way: a full forward over the whole observation at every env step."""
    gen = torch.Generator(policy.device).manual_seed(seed)
    obs, _ = envs.reset(seed=seed, options={"index": list(indices)})
    b = len(indices)
    active = np.ones(b, dtype=bool)
    seqs: list[list[int]] = [[] for _ in range(b)]
    start = time.perf_counter()
    from agents.policy import logprobs_from_logits

    while active.any():
        ids = torch.as_tensor(obs["input_ids"], device=policy.device)
        mask = torch.as_tensor(obs["attention_mask"], device=policy.device).long()
        last = mask.shape[1] - (mask.flip(1).cumsum(1) == 0).sum(1) - 1  # index of each row's last real token
        logits = policy.model(input_ids=ids, attention_mask=mask,
                              position_ids=positions(mask)).logits
        logp = logprobs_from_logits(logits[torch.arange(b, device=policy.device), last], policy.sampling)
        actions = logp.argmax(-1) if greedy else torch.multinomial(logp.exp(), 1, generator=gen).squeeze(-1)
        actions = np.where(active, actions.cpu().numpy(), policy.pad_token_id)
        obs, _, term, trunc, _ = envs.step(actions)
        for i in np.flatnonzero(active):
            seqs[i].append(int(actions[i]))
        active &= ~(term | trunc)
    return seqs, time.perf_counter() - start


def run(model: str, env_id: str, batch: int, max_new_tokens: int, repeats: int, seed: int, device: torch.device,
        precision: str, naive: bool) -> dict[str, float]:
    """Tokens/s of each path at one batch size (best of ``repeats`` after a warm-up), greedy and sampled."""
    from textenv.models import env_model_kwargs

    envs = gym.make_vec(env_id, num_envs=batch, autoreset_mode="same_step", max_new_tokens=max_new_tokens,
                        split="test", **env_model_kwargs(model))
    policy = LMActorCritic.from_pretrained(model, tokenizer=envs.unwrapped.setup.tokenizer,
                                           sampling=Sampling()).to(device)
    indices = [i % len(envs.unwrapped.setup.examples) for i in range(batch)]
    results = {}
    for greedy in (True, False):
        label = "greedy" if greedy else "sampled"
        paths = [("generate", run_generate, (max_new_tokens,)), ("env+cache", run_env, ())]
        if naive:
            paths.append(("env naive", run_naive, ()))
        for _name, fn, extra in paths:  # warm-up
            with autocast(device, precision):
                fn(policy, envs, indices, *extra, greedy, seed)
        # The paths take turns within each repeat, so a burst of load from another process on a
        # shared machine slows both sides of a ratio instead of one.
        rounds: list[dict[str, float]] = []
        seqs: dict[str, list] = {}
        for _ in range(repeats):
            rates = {}
            for name, fn, extra in paths:
                with autocast(device, precision):
                    seqs[name], secs = fn(policy, envs, indices, *extra, greedy, seed)
                rates[name] = sum(len(s) for s in seqs[name]) / secs
            rounds.append(rates)
        if greedy:
            same = all(s == seqs["generate"] for s in seqs.values())
            print(f"[batch {batch} {label}] all paths produced identical tokens: {same}")
        for name, *_ in paths:
            best = max(r[name] for r in rounds)
            paired = float(np.median([r[name] / r["generate"] for r in rounds]))
            print(f"[batch {batch} {label}] {name:10s} {best:8.1f} tok/s   ratio to generate "
                  f"{best / max(r['generate'] for r in rounds):.3f} (best/best), {paired:.3f} (median of "
                  f"{repeats} paired runs)")
            results[f"{batch}/{label}/{name}"] = best
            results[f"{batch}/{label}/{name}/paired_ratio"] = paired
    envs.close()
    return results


@dataclass(frozen=True)
class RolloutBenchConfig(EnvContext):
    """Env + KV cache vs model.generate tokens/s at several batch sizes on the env's test prompts (each
    field is a ``--flag``)."""

    env: str = arg("TextSentiment-v0", ENV_HELP)
    num_envs: tuple[int, ...] = arg((8, 64, 256), "batch sizes to measure")
    max_new_tokens: int = arg(32, "tokens generated per prompt")
    repeats: int = arg(5, "timed rounds; each round runs every path once, in turn")
    naive_max_batch: int = arg(8, "run the O(n^2) no-cache path only up to this batch size")
    device: str = arg("cpu", "'cpu', 'cuda', 'auto'")


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_config(RolloutBenchConfig, argv)
    if not args.num_envs or min(args.num_envs) < 1 or args.max_new_tokens < 1 or args.repeats < 1:
        raise ValueError("--num-envs, --max-new-tokens and --repeats must be >= 1")
    device = resolve_device(args.device)
    print(f"model={args.model} env={args.env} batches={list(args.num_envs)} max_new_tokens={args.max_new_tokens} "
          f"device={device} precision={args.precision} torch_threads={torch.get_num_threads()} "
          f"repeats={args.repeats} (paths alternate within each)")
    results: dict[str, float] = {}
    for batch in args.num_envs:
        results.update(run(args.model, args.env, batch, args.max_new_tokens, args.repeats, args.seed, device,
                           args.precision, naive=batch <= args.naive_max_batch))
    return results


if __name__ == "__main__":
    cli(main)
