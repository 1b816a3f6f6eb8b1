"""Paired differences: did a trained policy beat the policy it started from, on the same prompts?

Two rows of a leaderboard are scored on the same prompts, so "is RL better than its SFT start?"
is a question about the per-prompt difference, not about two marginal intervals that overlap.
:func:`paired_difference` takes each prompt's value under both policies (a sampled task's prompt
value is the mean over its samples) and returns the mean difference with a percentile bootstrap
95% interval over prompts (``scipy.stats.bootstrap`` of the differences) and a two-sided
permutation p-value (``scipy.stats.permutation_test`` swapping each prompt's pair, i.e. random
sign flips of the differences: Koehn 2004's approximate randomisation, exact when 2^n is at most
the number of resamples). Both are seeded, so a table is reproducible.

A row is called better or worse (:func:`verdict`) only when its interval excludes 0.

>>> d = paired_difference([1.0, 1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0])
>>> d.value, d.ci_low, d.ci_high, d.p_value, d.n
(1.0, 1.0, 1.0, 0.0625, 5)
>>> verdict(d, higher_is_better=True)
'better'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np

__all__ = ["PairedDifference", "Verdict", "paired_difference", "runs_interval", "verdict"]

Verdict = Literal["better", "worse", "no clear difference"]


class PairedDifference(NamedTuple):
    """Mean of ``a - b`` over prompts, its interval, the permutation p-value and the prompt count."""

    value: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int


_ROUNDING = 1e-12
"""Differences that agree to this (relative to their size) are one constant: the rest is rounding."""


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x - y, axis=axis)


def paired_difference(a: Sequence[float], b: Sequence[float], n_resamples: int = 1000, seed: int = 0,
                      confidence_level: float = 0.95) -> PairedDifference:
    """The paired difference of ``a`` over ``b`` (``a[i]`` and ``b[i]`` are prompt i's values).

    Degenerate cases are exact rather than resampled: identical rows give ``0 [0, 0]`` with
    p = 1; a constant difference c (equal up to rounding: ``a + c - a`` varies in its last bits)
    gives ``c [c, c]`` (every resample's mean is c; computing it would only add rounding) with the
    permutation p-value of c; one prompt gives its difference with p = 1 (no sign flip can tell it
    from chance).
    """
    from scipy.stats import bootstrap, permutation_test

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"paired values must be two 1-D sequences of equal length, got {x.shape} and {y.shape}")
    if x.size == 0:
        raise ValueError("a paired difference needs at least one prompt; got none")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("paired values must be finite; got NaN or inf")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1; got {n_resamples}")
    d = x - y
    if np.all(d == 0) or d.size == 1:
        c = float(d[0])
        return PairedDifference(c, c, c, 1.0, int(d.size))
    p_value = float(permutation_test((x, y), _mean_difference, permutation_type="samples", vectorized=True,
                                     n_resamples=n_resamples, alternative="two-sided",
                                     random_state=np.random.default_rng(seed)).pvalue)
    if np.ptp(d) <= _ROUNDING * max(1.0, float(np.max(np.abs(d)))):
        c = float(np.mean(d))
        return PairedDifference(c, c, c, p_value, int(d.size))
    ci = bootstrap((d,), np.mean, n_resamples=n_resamples, confidence_level=confidence_level, method="percentile",
                   vectorized=True, random_state=np.random.default_rng(seed)).confidence_interval
    scale = float(np.max(np.abs(d)))
    low, value, high = (_snap(float(v), scale) for v in (ci.low, np.mean(d), ci.high))
    return PairedDifference(value, low, high, p_value, int(d.size))


def _snap(v: float, scale: float) -> float:
    """0 for a value that is 0 up to rounding: a bootstrap bound of ``1e-17`` (a mean of resampled
    0.25s) must neither read as above 0 nor call a row better."""
    return 0.0 if abs(v) <= _ROUNDING * max(1.0, scale) else v


def verdict(diff: PairedDifference | tuple[float, float], higher_is_better: bool) -> Verdict:
    """"better" or "worse" only when the interval excludes 0 (on the side the metric's direction
    says), else "no clear difference". ``diff`` is a :class:`PairedDifference` or ``(ci_low, ci_high)``."""
    low, high = (diff.ci_low, diff.ci_high) if isinstance(diff, PairedDifference) else diff
    if low > 0 or high < 0:
        return "better" if (low > 0) == higher_is_better else "worse"
    return "no clear difference"


def runs_interval(values: Sequence[float], n_resamples: int = 1000, seed: int = 0,
                  confidence_level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)`` of one number per training run (a seed's score or its paired
    difference): a percentile bootstrap over runs (``scipy.stats.bootstrap``), as rliable's interval
    estimates over runs are (Agarwal et al. 2021). With a handful of runs the interval is about
    their range: a claim over seeds holds only when every seed agrees.

    >>> runs_interval([0.5, 0.5, 0.5])
    (0.5, 0.5, 0.5)
    """
    from scipy.stats import bootstrap

    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"runs_interval needs one finite value per run, got {values!r}")
    mean = float(np.mean(x))
    if x.size == 1 or np.ptp(x) <= _ROUNDING * max(1.0, float(np.max(np.abs(x)))):
        return mean, mean, mean  # one run, or runs that agree: nothing to resample
    res = bootstrap((x,), np.mean, n_resamples=n_resamples, confidence_level=confidence_level, method="percentile",
                    vectorized=True, random_state=np.random.default_rng(seed))
    return mean, float(res.confidence_interval.low), float(res.confidence_interval.high)
