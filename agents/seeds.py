"""The seeds of a PPO run's random streams, each a fixed function of ``(seed, iteration, process)``.

Every iteration draws its own streams rather than continuing one, so ``--resume`` from a checkpoint
reproduces the uninterrupted run exactly, whatever iteration it stopped at. The formulas are the
ones every run so far was trained with: changing one changes every run's samples and results.
(:mod:`evals` and the reward model's sampled pairs draw from :func:`agents.rollout.row_seed`, a
formula of their own.)
"""

from __future__ import annotations

__all__ = ["heldout_row_seed", "iteration_seed", "update_seed"]


def iteration_seed(seed: int, iteration: int, rank: int = 0) -> int:
    """The seed of iteration ``iteration``'s rollout on process ``rank``: its envs' reset seed and its
    sampling generator's. Runs are ``1_000_003`` (a prime) apart per unit of ``seed`` and processes
    ``7919`` (the 1000th prime) apart, so no two iterations of one run meet below 7919 iterations,
    and runs of neighbouring seeds meet only after hundreds of thousands of iterations."""
    return seed * 1_000_003 + iteration + 7919 * rank


def update_seed(seed: int, iteration: int) -> int:
    """The seed of the generator that orders iteration ``iteration``'s minibatches in its update, the
    same on every process."""
    return seed * 7919 + iteration


def heldout_row_seed(seed: int, index: int) -> int:
    """The seed of held-out prompt ``index``'s sampling stream: the same at every evaluation of a
    run, so two evaluations differ only because the policy did."""
    return seed * 1_000_003 + index
