"""Paired differences against hand-computed cases (evals.paired). Fast: numbers only, no model."""

import numpy as np
import pytest

from evals.paired import PairedDifference, paired_difference, verdict


def test_identical_rows_give_exactly_zero_and_p_one():
    a = [0.25, 0.0, 1.0, 0.75, 0.5, 0.1]
    assert paired_difference(a, list(a), seed=3) == PairedDifference(0.0, 0.0, 0.0, 1.0, 6)


@pytest.mark.parametrize("shift", [0.1, -0.37, 1.0])
def test_a_constant_shift_gives_that_shift_exactly(shift):
    base = np.linspace(0.0, 1.0, 40)
    d = paired_difference(base + shift, base)  # (base + shift) - base differs from shift in its last bits
    assert d.value == d.ci_low == d.ci_high == pytest.approx(shift, abs=1e-15) and d.n == 40
    # 2^40 sign flips, 1000 drawn: none reaches the observed mean, so p is the smallest there is, 2 / 1001
    assert d.p_value == pytest.approx(2 / 1001)
    exact = paired_difference([0.75, 0.5, 0.25, 1.0], [0.25, 0.0, -0.25, 0.5])  # 0.5 exactly in binary
    assert exact[:3] == (0.5, 0.5, 0.5)
    assert verdict(d, higher_is_better=True) == ("better" if shift > 0 else "worse")


def test_exact_permutation_p_values_by_hand():
    """With 2^n <= the resamples the permutation test enumerates every sign flip.
    Five pairs all +1: only all-plus (and, two-sided, all-minus) reach |mean| 1: p = 2/32.
    Differences (2, 1, -1): of the 8 flips, the sums are 4, 2, 2, 0, 0, -2, -2, -4; 3/8 reach >= 2,
    so the two-sided p is 2 * 3/8 = 0.75."""
    assert paired_difference([1.0] * 5, [0.0] * 5).p_value == pytest.approx(2 / 32, abs=1e-12)
    d = paired_difference([3.0, 1.0, 0.0], [1.0, 0.0, 1.0])
    assert d.value == pytest.approx(2 / 3) and d.p_value == pytest.approx(0.75, abs=1e-12) and d.n == 3


def test_interval_is_seeded_and_covers_the_mean_difference():
    rng = np.random.default_rng(0)
    b = rng.uniform(size=400)
    a = b + 0.05 + rng.normal(0.0, 0.2, size=400)  # sd of the differences ~0.2: half-width ~1.96 * 0.2 / 20
    d = paired_difference(a, b, seed=7)
    assert d == paired_difference(a, b, seed=7)  # reproducible
    assert d.ci_low < d.value < d.ci_high
    assert 0.015 < d.ci_high - d.value < 0.025 and 0.015 < d.value - d.ci_low < 0.025
    assert d.ci_low > 0 and d.p_value == pytest.approx(2 / 1001) and verdict(d, True) == "better"
    # a marginal interval of a (sd ~0.35) would be about twice as wide: pairing is what makes it sharp
    assert d.ci_high - d.ci_low < 2 * 1.96 * np.std(a) / np.sqrt(400) * 0.75


@pytest.mark.parametrize(("low", "high", "higher", "expected"), [
    (0.012, 0.097, True, "better"),
    (-0.2, -0.01, True, "worse"),
    (-0.01, 0.2, True, "no clear difference"),
    (0.0, 0.2, True, "no clear difference"),  # touching 0 does not exclude it
    (0.0, 0.0, True, "no clear difference"),
    (0.01, 0.2, False, "worse"),  # lower is better: a rise is worse
    (-0.2, -0.01, False, "better"),
    (float("nan"), float("nan"), True, "no clear difference"),
])
def test_better_or_worse_only_when_the_interval_excludes_zero(low, high, higher, expected):
    assert verdict((low, high), higher) == expected


def test_one_prompt_and_bad_input():
    assert paired_difference([0.75], [0.25]) == PairedDifference(0.5, 0.5, 0.5, 1.0, 1)
    for a, b, match in (([1.0, 2.0], [1.0], "equal length"), ([], [], "at least one"),
                        ([1.0, float("nan")], [0.0, 0.0], "finite")):
        with pytest.raises(ValueError, match=match):
            paired_difference(a, b)


def test_a_bound_that_is_zero_up_to_rounding_is_zero():
    """Here the resampled means' 97.5th percentile is 0 computed as -6e-18 (a sum of thirds and
    quarters): that bound must read 0, so the interval touches 0 ("no clear difference"), not
    "-6.01e-18" and "worse"."""
    third = 1 / 3
    a = [0.0, -0.75, -0.25, -third, third, third, -0.75, -third, -0.75]
    d = paired_difference(a, [0.0] * len(a), seed=0)
    assert d.ci_high == 0.0 and d.ci_low < -0.3
    assert verdict(d, higher_is_better=True) == "no clear difference"
