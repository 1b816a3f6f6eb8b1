"""The cost of drawing one token per row: row-seeded ``sample`` against ``torch.multinomial``.

    python -m evals.benchmarks.sampling                          # V=49152 (the default model), batch 8, 64, 256
    python -m evals.benchmarks.sampling --device cuda --precision bf16

Three ways to draw a batch of next tokens from the same ``(B, V)`` logits, timed side by side:

- ``per-row``: what :meth:`agents.policy.LMActorCritic.act` did until it got :func:`~agents.policy.sample`
  — a ``torch.Generator`` seeded per row and token, one ``torch.multinomial`` per row, on the CPU;
- ``multinomial``: one ``torch.multinomial`` over the batch from one generator (not row-seeded, so
  a row's draw would depend on its batch; the floor of what torch's sampler costs);
- ``sample``: :func:`~agents.policy.row_uniforms` (a hash of row seed and position) then one
  inverse-CDF :func:`~agents.policy.sample` over the batch, what ``act`` does now.

Each is timed on the logits-to-token path ``act`` runs (log-probs under the sampling settings, then
the draw), best of ``--repeats`` medians. A benchmark, never a test.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from agents.policy import Sampling, logprobs_from_logits, row_uniforms, sample
from textenv.cli import arg, cli, parse_config
from textenv.devices import Precision, resolve_device

__all__ = ["SamplingBenchConfig", "main", "run"]


@dataclass
class SamplingBenchConfig:
    """Settings of one benchmark run (each field is a ``--flag``)."""

    num_envs: tuple[int, ...] = arg((8, 64, 256), "batch sizes (rows drawn per token-step)")
    vocab: int = arg(49152, "vocabulary size V (49152: SmolLM2's)")
    temperature: float = arg(0.7, "sampling temperature (the leaderboard's)")
    steps: int = arg(20, "token-steps timed per repeat")
    repeats: int = arg(3, "repeats; the best median is reported")
    seed: int = arg(0, "seed of the logits and the row seeds")
    device: str = arg("auto", "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    precision: Precision = arg("fp32", "dtype of the logits: 'fp32' or 'bf16' (the draw itself is always fp32/64)")


def _per_row(logp: torch.Tensor, seeds: np.ndarray, step: int) -> torch.Tensor:
    probs = logp.exp().cpu()
    return torch.stack([
        torch.multinomial(probs[i], 1, generator=torch.Generator().manual_seed(int(seeds[i]) * 100_003 + step))
        .squeeze(-1) for i in range(len(seeds))
    ]).to(logp.device)


def _batched(logp: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return torch.multinomial(logp.exp(), 1, generator=gen).squeeze(-1)


def _sample(logp: torch.Tensor, seeds: np.ndarray, step: int) -> torch.Tensor:
    return sample(logp.exp(), torch.from_numpy(row_uniforms(seeds, np.full(len(seeds), step))))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(num_envs: tuple[int, ...] = (8, 64, 256), vocab: int = 49152, temperature: float = 0.7, steps: int = 20,
        repeats: int = 3, seed: int = 0, device: str = "auto", precision: Precision = "fp32"
        ) -> dict[int, dict[str, float]]:
    """Milliseconds per token-step of each way, per batch size, and ``sample``'s speed-up."""
    if not num_envs or min(num_envs) < 1 or vocab < 2 or steps < 1 or repeats < 1:
        raise ValueError("--num-envs and --steps/--repeats must be >= 1 and --vocab >= 2")
    dev = resolve_device(device)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    sampling = Sampling(temperature=temperature)
    gen = torch.Generator(dev).manual_seed(seed)
    out: dict[int, dict[str, float]] = {}
    for b in num_envs:
        logits = (torch.randn(b, vocab, generator=torch.Generator().manual_seed(seed)) * 3).to(dev, dtype)
        seeds = np.arange(b, dtype=np.int64) * 64 + seed
        ways = {"per-row": lambda lp, t, s=seeds: _per_row(lp, s, t), "multinomial": lambda lp, t: _batched(lp, gen),
                "sample": lambda lp, t, s=seeds: _sample(lp, s, t)}
        best = {name: float("inf") for name in ways}
        for _ in range(repeats):
            for name, draw in ways.items():  # ways alternate within a repeat: shared-machine noise hits all
                times = []
                for t in range(steps):
                    _sync(dev)
                    start = time.perf_counter()
                    draw(logprobs_from_logits(logits, sampling), t)
                    _sync(dev)
                    times.append(time.perf_counter() - start)
                best[name] = min(best[name], statistics.median(times) * 1e3)
        out[b] = {**best, "speedup_vs_per_row": best["per-row"] / best["sample"],
                  "speedup_vs_multinomial": best["multinomial"] / best["sample"]}
    return out


def main(argv: list[str] | None = None) -> dict[int, dict[str, float]]:
    args = parse_config(SamplingBenchConfig, argv)
    dev = resolve_device(args.device)
    print(f"V={args.vocab} T={args.temperature} device={dev} precision={args.precision} "
          f"torch_threads={torch.get_num_threads()} steps={args.steps} repeats={args.repeats}")
    res = run(args.num_envs, args.vocab, args.temperature, args.steps, args.repeats, args.seed, args.device,
              args.precision)
    print("| batch | per-row multinomial ms | batched multinomial ms | sample ms | per-row ÷ sample "
          "| multinomial ÷ sample |")
    print("|---:|---:|---:|---:|---:|---:|")
    for b, r in res.items():
        print(f"| {b} | {r['per-row']:.2f} | {r['multinomial']:.2f} | {r['sample']:.2f} "
              f"| {r['speedup_vs_per_row']:.1f}x | {r['speedup_vs_multinomial']:.1f}x |")
    return res


if __name__ == "__main__":
    cli(main)
