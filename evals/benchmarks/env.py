"""Is the env negligible next to the model? Env and model token-steps/s, side by side in one run.

``python -m evals.benchmarks.env`` prints one table:

1. env-only token-steps/s: one :class:`textenv.env.TextEnv` (``gym.make``), the native vector env
   (``gym.make_vec(id, num_envs=B)``) and Gymnasium's ``vectorization_mode="sync"`` for comparison.
   Actions are random non-EOS token ids drawn up front, so the "agent" costs nothing; episodes run
   to the default token budget, so every episode end pays its decode, task reward and reset, as a
   real rollout does. Vector envs count ``B`` token-steps per step.
2. model token-steps/s: one KV-cached single-token decode step (``forward_with_cache``) at batch 1
   and at batch ``B``, after prefilling real prompts from the env, under ``torch.no_grad``.
3. ratios env ÷ model at matching batch (single env vs batch 1, vector envs vs batch B). The design
   target is ratio >> 1: the env is then a small share of a rollout's time.

It is a benchmark, never a test: nothing here asserts a speed. ``run(...)`` returns the numbers.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import textenv  # noqa: E402,F401  (registers the envs)
from textenv.cli import cli, parse_config  # noqa: E402
from textenv.core import PromptTruncationWarning  # noqa: E402
from textenv.models import DEFAULT_MODEL, forward_with_cache, load_model  # noqa: E402

__all__ = ["BenchConfig", "main", "run"]

# A ratio at least this large means the env takes under ~10% of a rollout's time.
NEGLIGIBLE_RATIO = 10.0
# Env timings are split into this many chunks and the median chunk rate is reported, so a burst of
# load from another process on a shared machine moves the number less than a plain mean would.
_CHUNKS = 5


@dataclass
class BenchConfig:
    """Settings of one benchmark run (each field is a ``--flag``)."""

    env: str = field(default="TextSummarize-v0", metadata={"help": "registered env id"})
    num_envs: int = field(default=8, metadata={"help": "B: vector env width and model batch size"})
    tokens: int = field(default=12000, metadata={
        "help": "token-steps timed per env variant (the vector envs take tokens // B steps)"})
    models: str = field(default=f"tiny,{DEFAULT_MODEL}", metadata={"help": "comma-separated model names"})
    seed: int = field(default=0, metadata={"help": "seed for env resets, actions and the tiny model"})
    env_model: str = field(default=DEFAULT_MODEL, metadata={
        "help": "whose tokenizer the timed envs use (decode cost depends on it)"})
    model_steps: int = field(default=16, metadata={
        "help": "one-token decode steps timed per model and batch (the median step is reported); "
                "0 = the env's max_new_tokens"})
    warmup: int = field(default=200, metadata={"help": "untimed env token-steps before each env timing"})
    threads: int = field(default=0, metadata={
        "help": "torch.set_num_threads for the model steps; 0 leaves torch's default (the realistic case)"})
    device: str = field(default="cpu", metadata={"help": "where the model steps run: 'cpu', 'cuda', 'auto'"})
    precision: str = field(default="auto", metadata={
        "help": "'auto' (bf16 autocast on CUDA, fp32 elsewhere), 'fp32' or 'bf16' for the model steps"})

    def model_names(self) -> list[str]:
        names = [m.strip() for m in self.models.split(",") if m.strip()] if isinstance(self.models, str) \
            else list(self.models)
        if not names:
            raise ValueError(f"--models needs at least one model name, got {self.models!r}")
        return names

    def check(self) -> None:
        if self.num_envs < 1:
            raise ValueError(f"--num-envs must be >= 1, got {self.num_envs}")
        if self.tokens < self.num_envs * _CHUNKS:
            raise ValueError(f"--tokens must be >= num_envs * {_CHUNKS} = {self.num_envs * _CHUNKS}, "
                             f"got {self.tokens}")
        if self.model_steps < 0 or self.warmup < 0:
            raise ValueError(
                f"--model-steps and --warmup must be >= 0, got {self.model_steps} and {self.warmup}")
        if self.threads < 0:
            raise ValueError(f"--threads must be >= 0 (0 = torch's default), got {self.threads}")


# ---------------------------------------------------------------------------------------------
# env-only timing


def _random_actions(rng: np.random.Generator, shape: tuple[int, ...], vocab: int, eos: int) -> np.ndarray:
    """Uniform token ids over the vocabulary without EOS: draw from vocab-1 ids and skip EOS."""
    a = rng.integers(0, vocab - 1, size=shape, dtype=np.int64)
    return a + (a >= eos)


def _chunked_rate(step_chunk, n_chunks: int, tokens_per_chunk: int) -> float:
    times = []
    for c in range(n_chunks):
        start = time.perf_counter()
        step_chunk(c)
        times.append(time.perf_counter() - start)
    return tokens_per_chunk / statistics.median(times)


def time_single_env(env: gym.Env, actions: np.ndarray, warmup: int, seed: int) -> dict[str, float]:
    """Token-steps/s of one env, resets included; ``actions`` is ``(tokens,)``."""
    episodes = 0

    def loop(acts: np.ndarray) -> None:
        nonlocal episodes
        for a in acts:
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()
                episodes += 1

    env.reset(seed=seed)
    loop(actions[:warmup])
    episodes = 0
    timed = actions[warmup:]
    per = len(timed) // _CHUNKS
    rate = _chunked_rate(lambda c: loop(timed[c * per:(c + 1) * per]), _CHUNKS, per)
    return {"rate": rate, "episodes": episodes}


def time_vector_env(
    env: gym.vector.VectorEnv, actions: np.ndarray, warmup: int, seed: int
) -> dict[str, float]:
    """Token-steps/s (B per step) of a vector env with autoreset; ``actions`` is ``(steps, B)``."""
    b = env.num_envs
    episodes = 0

    def loop(acts: np.ndarray) -> None:
        nonlocal episodes
        for a in acts:
            _, _, terminated, truncated, _ = env.step(a)
            episodes += int(np.count_nonzero(terminated | truncated))

    env.reset(seed=seed)
    loop(actions[:warmup])
    episodes = 0
    timed = actions[warmup:]
    per = len(timed) // _CHUNKS
    rate = _chunked_rate(lambda c: loop(timed[c * per:(c + 1) * per]), _CHUNKS, per * b)
    return {"rate": rate, "episodes": episodes}


# ---------------------------------------------------------------------------------------------
# model timing


def time_decode_step(model: Any, prompt_ids: np.ndarray, prompt_mask: np.ndarray, steps: int,
                     rng: np.random.Generator, vocab: int, precision: str = "auto") -> float:
    """Median seconds of one KV-cached one-token decode step at batch ``len(prompt_ids)``.

    The prompts (left-padded, as the env lays them out) are prefilled once, untimed; then ``steps``
    single-token forwards extend the cache, each timed on its own. A short throwaway prefill and
    decode first warms up the kernels.
    """
    import torch

    from textenv.devices import autocast

    device = next(model.parameters()).device
    ids = torch.as_tensor(prompt_ids, dtype=torch.long, device=device)
    mask = torch.as_tensor(prompt_mask, dtype=torch.long, device=device)
    b = ids.shape[0]
    tokens = torch.as_tensor(rng.integers(0, vocab, size=(steps + 4, b, 1)), dtype=torch.long, device=device)
    one = torch.ones(b, 1, dtype=torch.long, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.no_grad(), autocast(device, precision):
        # Warm-up on the last few prompt tokens (they are real tokens in every left-padded row).
        _, cache = forward_with_cache(model, ids[:, -8:], None, attention_mask=mask[:, -8:])
        warm_mask = mask[:, -8:]
        for t in range(2):
            warm_mask = torch.cat([warm_mask, one], dim=1)
            _, cache = forward_with_cache(model, tokens[t], cache, attention_mask=warm_mask)
        # The real prefill, then two untimed steps so the timed ones see a settled cache.
        _, cache = forward_with_cache(model, ids, None, attention_mask=mask)
        times = []
        for t in range(steps + 2):
            mask = torch.cat([mask, one], dim=1)
            sync()
            start = time.perf_counter()
            _, cache = forward_with_cache(model, tokens[t + 2], cache, attention_mask=mask)
            sync()
            if t >= 2:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def _env_prompts(env_id: str, model: str, b: int, seed: int) -> tuple[np.ndarray, np.ndarray, Any, int]:
    """``b`` real prompts of the env, tokenized for ``model``, cut to the longest (left-padded)."""
    venv = gym.make_vec(env_id, num_envs=b, model=model)
    try:
        obs, _ = venv.reset(seed=seed)
        setup = venv.unwrapped.setup
        p = setup.max_prompt_tokens
        ids, mask = obs["input_ids"][:, :p], obs["attention_mask"][:, :p]
        keep = int(mask.sum(axis=1).max())
        return ids[:, p - keep:], mask[:, p - keep:], setup.tokenizer, setup.max_new_tokens
    finally:
        venv.close()


def time_model(name: str, env_id: str, b: int, steps: int, seed: int, device: str = "cpu",
               precision: str = "auto") -> dict[str, float]:
    """Model token-steps/s of one decode step at batch 1 and batch ``b``, on the env's prompts."""
    from textenv.devices import resolve_device

    ids, mask, tokenizer, max_new = _env_prompts(env_id, name, b, seed)
    _, model = load_model(name, tokenizer=tokenizer, seed=seed)
    model.to(resolve_device(device))
    steps = steps or max_new
    rng = np.random.default_rng(seed)
    vocab = int(model.get_output_embeddings().weight.shape[0])
    # Batch 1: the first env's prompt, without its padding.
    n0 = int(mask[0].sum())
    t1 = time_decode_step(model, ids[:1, -n0:], mask[:1, -n0:], steps, rng, vocab, precision)
    tb = time_decode_step(model, ids, mask, steps, rng, vocab, precision)
    return {
        "rate_1": 1.0 / t1, "rate_b": b / tb, "step_s_1": t1, "step_s_b": tb,
        "prompt_tokens_1": n0, "prompt_tokens_b": int(ids.shape[1]), "steps": steps,
        "params": sum(p.numel() for p in model.parameters()),
    }


# ---------------------------------------------------------------------------------------------
# the run


def run(config: BenchConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """Run the benchmark and return its numbers (nothing is printed).

    ``run(env="TextCount-v0", models=["tiny"], tokens=400)`` works as well as passing a
    :class:`BenchConfig`. Returns ``{"config", "env", "model", "ratio"}``: ``env[variant]["rate"]``
    for ``"single"``, ``"vector"``, ``"sync"``; ``model[name]["rate_1" | "rate_b"]``; and
    ``ratio[name][variant]`` = env rate ÷ model rate at the matching batch.
    """
    import torch

    cfg = dataclasses.replace(config or BenchConfig(), **overrides)
    cfg.check()
    names = cfg.model_names()
    default_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        with warnings.catch_warnings():
            # Long prompts are cut to the env's budget, as in any rollout; the warning is noise here.
            warnings.simplefilter("ignore", PromptTruncationWarning)
            return _run(cfg, names)
    finally:
        torch.set_num_threads(default_threads)


def _run(cfg: BenchConfig, names: list[str]) -> dict[str, Any]:
    import torch

    b = cfg.num_envs
    rng = np.random.default_rng(cfg.seed)

    env_rates: dict[str, dict[str, float]] = {}
    single = gym.make(cfg.env, model=cfg.env_model)
    try:
        setup = single.unwrapped.setup
        vocab, eos = setup.vocab_size, setup.eos_token_id
        acts = _random_actions(rng, (cfg.warmup + cfg.tokens,), vocab, eos)
        env_rates["single"] = time_single_env(single, acts, cfg.warmup, cfg.seed)
        max_new = setup.max_new_tokens
    finally:
        single.close()
    vec_steps, vec_warm = cfg.tokens // b, max(1, cfg.warmup // b)
    for variant, mode in (("vector", None), ("sync", "sync")):
        venv = gym.make_vec(cfg.env, num_envs=b, vectorization_mode=mode, model=cfg.env_model)
        try:
            acts = _random_actions(rng, (vec_warm + vec_steps, b), vocab, eos)
            env_rates[variant] = time_vector_env(venv, acts, vec_warm, cfg.seed)
        finally:
            venv.close()

    model_rates = {name: time_model(name, cfg.env, b, cfg.model_steps, cfg.seed, cfg.device, cfg.precision)
                   for name in names}
    ratios = {
        name: {
            "single": env_rates["single"]["rate"] / m["rate_1"],
            "vector": env_rates["vector"]["rate"] / m["rate_b"],
            "sync": env_rates["sync"]["rate"] / m["rate_b"],
        }
        for name, m in model_rates.items()
    }
    return {
        "config": {**dataclasses.asdict(cfg), "models": names, "torch_threads": torch.get_num_threads(),
                   "max_new_tokens": max_new, "torch": torch.__version__, "gymnasium": gym.__version__},
        "env": env_rates,
        "model": model_rates,
        "ratio": ratios,
    }


def format_table(result: dict[str, Any]) -> str:
    cfg, env, ratio = result["config"], result["env"], result["ratio"]
    b = cfg["num_envs"]
    lines = [
        f"textenv bench: env={cfg['env']} B={b} tokens={cfg['tokens']} models={','.join(cfg['models'])} "
        f"torch_threads={cfg['torch_threads']} seed={cfg['seed']}",
        f"  env tokenizer={cfg['env_model']} max_new_tokens={cfg['max_new_tokens']} "
        f"warmup={cfg['warmup']} model_steps={cfg['model_steps']} "
        f"torch={cfg['torch']} gymnasium={cfg['gymnasium']}",
        "",
        f"{'what':<58}{'batch':>6}{'token-steps/s':>15}",
    ]
    labels = {"single": "env: TextEnv (gym.make)", "vector": "env: native vector (gym.make_vec)",
              "sync": 'env: vectorization_mode="sync"'}
    for variant, label in labels.items():
        e = env[variant]
        label = f"{label} [{e['episodes']} episodes]"
        lines.append(f"{label:<58}{1 if variant == 'single' else b:>6}{e['rate']:>15,.0f}")
    for name, m in result["model"].items():
        for batch, key, n in ((1, "rate_1", m["prompt_tokens_1"]), (b, "rate_b", m["prompt_tokens_b"])):
            step_ms = 1000 * m["step_s_1" if batch == 1 else "step_s_b"]
            label = f"model: {name} decode step ({step_ms:.1f} ms, prompt {n})"
            lines.append(f"{label:<58}{batch:>6}{m[key]:>15,.0f}")
    lines += ["", f"{'ratio env / model (>> 1 wanted)':<58}{'single':>10}{'vector':>10}{'sync':>10}"]
    for name, r in ratio.items():
        lines.append(f"{name:<58}{r['single']:>10.1f}{r['vector']:>10.1f}{r['sync']:>10.1f}")
    lines.append("")
    for name, r in ratio.items():
        # textenv's own paths (single env, native vector env); "sync" is shown for comparison only.
        low = min(r["single"], r["vector"])
        share = 100.0 / (1.0 + low)
        if low >= NEGLIGIBLE_RATIO:
            verdict = f"env is negligible next to the model (ratio >= {low:.1f}; env <= {share:.1f}% of time)"
        else:
            verdict = (f"env is NOT negligible (ratio {low:.1f} < {NEGLIGIBLE_RATIO:.0f}; "
                       f"env ~{share:.0f}% of rollout time)")
        lines.append(f"verdict vs {name}: {verdict}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    result = run(parse_config(BenchConfig, argv, description="Env-only vs model token-steps/s, measured side by "
                                                             "side; prints the ratios."))
    print(format_table(result))
    return result


if __name__ == "__main__":
    cli(main)
