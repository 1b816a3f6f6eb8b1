"""The KV cache across inserted turns: a multi-turn rollout (``TextDialogue-v0``, or tool episodes
with ``--tools``) with the cache extended by each turn the env inserts (one forward over the new
tokens) vs re-prefilling the whole conversation after each turn, on the same model, prompts, batch
and actions. A benchmark, not a test.

    python -m evals.benchmarks.turns                           # tiny and default model, batch 8 and 64, 4 turns
    python -m evals.benchmarks.turns --models tiny --num-envs 8
    python -m evals.benchmarks.turns --tools                   # TextReasoning-v0 with the calculator

Both paths step the real vector env with :class:`agents.kvcache.CachedLM`; they differ only in what
happens when a row's observation grows by a whole turn (the re-prefill path marks the row's cache
as unknown, as the cache did before it could extend). Conversations are greedy, so both paths
produce the same ones (printed). Tool episodes play the task's own demonstrations
(:func:`agents.sft.tool_conversation`: the call, then the answer, the env inserting the calculator's
result between them), since the base model rarely calls a tool; the model's forward still runs at
every step, and both paths must agree on its argmax (printed). tokens/s counts the agent's tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

import textenv  # noqa: F401
from agents.kvcache import CachedLM, CacheState
from textenv.cli import arg, cli, parse_config
from textenv.models import DEFAULT_MODEL, env_model_kwargs, load_model


@torch.no_grad()
def rollout(lm: CachedLM, envs, indices: list[int], reprefill: bool, forced: list[list[int]] | None = None
            ) -> tuple[list[list[int]], int, float, list[list[int]]]:
    """One episode per sub-env: (each row's actions, agent tokens, seconds, the model's argmax at each
    of its steps). ``forced``: each row's actions, played instead of the argmax (then EOS)."""
    setup = envs.unwrapped.setup
    obs, _ = envs.reset(seed=0, options={"index": indices})
    state = CacheState(len(indices), setup.max_prompt_tokens)
    active = np.ones(len(indices), dtype=bool)
    actions: list[list[int]] = [[] for _ in indices]
    picks: list[list[int]] = [[] for _ in indices]
    queues = None if forced is None else [list(f) for f in forced]
    start = time.perf_counter()
    while active.any():
        if reprefill:  # a row whose observation grew by a turn: forget its cache, prefill it again
            n_gen = obs["attention_mask"][:, setup.max_prompt_tokens:].sum(-1)
            state.fed[(n_gen > state.fed + 1) & state.known] = -1
        lm.advance(obs, state, active=active)
        greedy = state.logits.argmax(-1).cpu().numpy()
        step = greedy if queues is None else np.array(
            [queues[i].pop(0) if active[i] and queues[i] else setup.eos_token_id for i in range(len(indices))])
        step = np.where(active, step, setup.pad_token_id)
        obs, _, term, trunc, _ = envs.step(step)
        for i in np.flatnonzero(active):
            actions[i].append(int(step[i]))
            picks[i].append(int(greedy[i]))
        active &= ~(term | trunc)
    return actions, sum(map(len, actions)), time.perf_counter() - start, picks


def _envs(model: str, batch: int, turns: int, max_turn_tokens: int, tools: bool, difficulty: int):
    kwargs = {**env_model_kwargs(model), "num_envs": batch, "split": "test", "autoreset_mode": "same_step"}
    if tools:
        return gym.make_vec("TextReasoning-v0", tools=["calculator"], difficulty=difficulty, **kwargs)
    return gym.make_vec("TextDialogue-v0", turns=turns, max_turn_tokens=max_turn_tokens, **kwargs)


def _demonstrations(setup, indices: list[int]) -> list[list[int]]:
    """Each prompt's demonstrated agent tokens (the labelled ones): the call, then the answer."""
    from agents.sft import IGNORE, tool_conversation

    out = []
    for i in indices:
        demo = tool_conversation(setup, i)
        if demo is None:
            raise ValueError(f"the task demonstrates no tool episode for example {i}")
        out.append([t for t, label in zip(*demo, strict=True) if label != IGNORE])
    return out


def run(model: str, batch: int, turns: int, max_turn_tokens: int, repeats: int, tools: bool = False,
        difficulty: int = 4) -> dict[str, float]:
    envs = _envs(model, batch, turns, max_turn_tokens, tools, difficulty)
    setup = envs.unwrapped.setup
    _, lm_model = load_model(model, tokenizer=setup.tokenizer)
    lm = CachedLM(lm_model.eval(), setup.pad_token_id)
    indices = [i % len(setup.examples) for i in range(batch)]
    forced = _demonstrations(setup, indices) if tools else None
    rollout(lm, envs, indices, reprefill=False, forced=forced)  # warm-up
    rounds = []
    seqs, picks = {}, {}
    for _ in range(repeats):  # the two paths alternate, so a burst of load slows both
        rates = {}
        for name, flag in (("extend", False), ("re-prefill", True)):
            seqs[name], tokens, secs, picks[name] = rollout(lm, envs, indices, flag, forced)
            rates[name] = tokens / secs
        rounds.append(rates)
    same = seqs["extend"] == seqs["re-prefill"] and picks["extend"] == picks["re-prefill"]
    best = {k: max(r[k] for r in rounds) for k in rounds[0]}
    paired = float(np.median([r["extend"] / r["re-prefill"] for r in rounds]))
    what = (f"tool episodes, level {difficulty}, {np.mean([len(a) for a in seqs['extend']]):.0f} agent tokens each"
            if tools else f"{turns} turns of <= {max_turn_tokens} tokens")
    print(f"[{model} batch {batch}, {what}] identical episodes and argmax: {same}; "
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
    tools: bool = arg(False, "tool episodes (TextReasoning-v0 with the calculator, the demonstrations' actions) "
                             "instead of conversations")
    difficulty: int = arg(4, "with --tools: TextReasoning-v0's level")


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_config(TurnsBenchConfig, argv)
    print(f"torch_threads={torch.get_num_threads()} repeats={args.repeats}")
    out: dict[str, float] = {}
    for model in args.models:
        for batch in args.num_envs:
            out.update(run(model, batch, args.turns, args.max_turn_tokens, args.repeats, args.tools, args.difficulty))
    return out


if __name__ == "__main__":
    cli(main)
