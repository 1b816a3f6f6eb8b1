"""The KV cache across inserted turns: a multi-turn rollout (``TextDialogue-v0``) with the cache
extended by each turn the env inserts (one forward over the new tokens) vs re-prefilling the whole
conversation after each turn, on the same model, prompts, batch and greedy decoding. A benchmark,
not a test.

    python -m evals.benchmarks.turns                           # tiny and default model, batch 8 and 64, 4 turns
    python -m evals.benchmarks.turns --models tiny --num-envs 8

Both paths step the real vector env with :class:`agents.kvcache.CachedLM` and take the argmax of its
next-token logits; they differ only in what happens when a row's observation grows by a whole turn
(the re-prefill path marks the row's cache as unknown, as the cache did before it could extend).
Greedy, both produce the same conversations (printed); tokens/s counts the agent's tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

import textenv  # noqa: F401
from agents.kvcache import CachedLM, RolloutState
from textenv.cli import arg, cli, parse_config
from textenv.models import DEFAULT_MODEL, env_model_kwargs, load_model


@torch.no_grad()
def rollout(lm: CachedLM, envs, indices: list[int], reprefill: bool) -> tuple[list[list[int]], int, float]:
    """One conversation per sub-env: (each row's actions, agent tokens, seconds)."""
    setup = envs.unwrapped.setup
    obs, _ = envs.reset(seed=0, options={"index": indices})
    state = RolloutState(len(indices), setup.max_prompt_tokens)
    active = np.ones(len(indices), dtype=bool)
    actions: list[list[int]] = [[] for _ in indices]
    start = time.perf_counter()
    while active.any():
        if reprefill:  # a row whose observation grew by a turn: forget its cache, prefill it again
            n_gen = obs["attention_mask"][:, setup.max_prompt_tokens:].sum(-1)
            state.fed[(n_gen > state.fed + 1) & state.known] = -1
        lm.advance(obs, state, active=active)
        step = state.logits.argmax(-1).cpu().numpy()
        step = np.where(active, step, setup.pad_token_id)
        obs, _, term, trunc, _ = envs.step(step)
        for i in np.flatnonzero(active):
            actions[i].append(int(step[i]))
        active &= ~(term | trunc)
    return actions, sum(map(len, actions)), time.perf_counter() - start


def run(model: str, batch: int, turns: int, max_turn_tokens: int, repeats: int) -> dict[str, float]:
    envs = gym.make_vec("TextDialogue-v0", num_envs=batch, split="test", turns=turns, max_turn_tokens=max_turn_tokens,
                        autoreset_mode="same_step", **env_model_kwargs(model))
    setup = envs.unwrapped.setup
    _, lm_model = load_model(model, tokenizer=setup.tokenizer)
    lm = CachedLM(lm_model.eval(), setup.pad_token_id)
    indices = [i % len(setup.examples) for i in range(batch)]
    rollout(lm, envs, indices, reprefill=False)  # warm-up
    rounds = []
    seqs = {}
    for _ in range(repeats):  # the two paths alternate, so a burst of load slows both
        rates = {}
        for name, flag in (("extend", False), ("re-prefill", True)):
            seqs[name], tokens, secs = rollout(lm, envs, indices, flag)
            rates[name] = tokens / secs
        rounds.append(rates)
    same = seqs["extend"] == seqs["re-prefill"]
    best = {k: max(r[k] for r in rounds) for k in rounds[0]}
    paired = float(np.median([r["extend"] / r["re-prefill"] for r in rounds]))
    print(f"[{model} batch {batch}, {turns} turns of <= {max_turn_tokens} tokens] identical conversations: {same}; "
          f"extend {best['extend']:.1f} tok/s, re-prefill {best['re-prefill']:.1f} tok/s, ratio {paired:.2f} "
          f"(median of {repeats} paired runs)")
    envs.close()
    return {f"{model}/{batch}/extend": best["extend"], f"{model}/{batch}/re-prefill": best["re-prefill"],
            f"{model}/{batch}/ratio": paired, f"{model}/{batch}/identical": float(same)}


@dataclass(frozen=True)
class TurnsBenchConfig:
    """Cache extended by inserted turns vs re-prefilled, tokens/s (each field is a ``--flag``)."""

    models: tuple[str, ...] = arg(("tiny", DEFAULT_MODEL), "policy models")
    num_envs: tuple[int, ...] = arg((8, 64), "batch sizes")
    turns: int = arg(4, "agent turns per conversation")
    max_turn_tokens: int = arg(16, "tokens per agent turn at most (greedy turns rarely end sooner)")
    repeats: int = arg(3, "timed rounds; each runs both paths, in turn")


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_config(TurnsBenchConfig, argv)
    print(f"torch_threads={torch.get_num_threads()} repeats={args.repeats}")
    out: dict[str, float] = {}
    for model in args.models:
        for batch in args.num_envs:
            out.update(run(model, batch, args.turns, args.max_turn_tokens, args.repeats))
    return out


if __name__ == "__main__":
    cli(main)
