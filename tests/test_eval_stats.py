"""The evaluation harness's statistics, checked against values worked out by hand."""

import math
import random

import pytest

from evals.stats import (
    Interval,
    Paired,
    bootstrap_ci,
    mcnemar_exact,
    mean,
    paired_bootstrap_ci,
    paired_counts,
    percentile,
    sign_test,
)

SMALL = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]


def test_mean():
    assert mean([]) is None
    assert mean([1, 2, 3, 4]) == 2.5  # 10 / 4
    assert mean([0.1] * 10) == 0.1  # exactly, not 0.09999999999999999


def test_mcnemar_exact_by_hand():
    # n = 10, min(b, c) = 1: 2 * (C(10,0) + C(10,1)) / 2**10 = 2 * (1 + 10) / 1024 = 22/1024
    assert mcnemar_exact(1, 9) == 0.021484375
    # n = 6, min = 0: 2 * C(6,0) / 2**6 = 2/64
    assert mcnemar_exact(0, 6) == 2 / 64


def test_mcnemar_exact_edges():
    assert mcnemar_exact(0, 0) == 1.0  # no disagreements: no evidence either way
    # n = 10, min = 5: the tail sum C(10,0..5) = 638 > 512, so 2 * 638/1024 caps at 1
    assert mcnemar_exact(5, 5) == 1.0
    for b, c in [(1, 9), (0, 6), (3, 17), (12, 4)]:
        assert mcnemar_exact(b, c) == mcnemar_exact(c, b)
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


def test_mcnemar_exact_large_n_does_not_underflow():
    # n = 1000: about 6.3 standard deviations from 500, so p is near 2.7e-10, not 0 or an error
    p = mcnemar_exact(400, 600)
    assert isinstance(p, float)
    assert 0 < p < 1e-9


def test_sign_test_drops_ties_then_is_mcnemar():
    differences = [0.5, -0.2, 0.0, 1.0, 0.0, 0.3, 2.0, -1.0, 0.1]
    # positives: 0.5, 1.0, 0.3, 2.0, 0.1 = 5; negatives: -0.2, -1.0 = 2; the two zeros dropped
    assert sign_test(differences) == mcnemar_exact(5, 2)
    # n = 7, min = 2: 2 * (1 + 7 + 21) / 128 = 58/128
    assert sign_test(differences) == 58 / 128
    assert sign_test([0.0, 0.0]) == 1.0


def test_bootstrap_ci_degenerate_inputs():
    assert bootstrap_ci([]) is None
    assert bootstrap_ci([1] * 10) == Interval(1.0, 1.0)
    assert bootstrap_ci([0.1] * 10) == Interval(0.1, 0.1)


def test_bootstrap_ci_matches_the_normal_approximation():
    # 50 ones and 50 zeros: 0.5 ± 1.96 * sqrt(0.25 / 100) = 0.5 ± 0.098 = (0.402, 0.598)
    interval = bootstrap_ci([1.0] * 50 + [0.0] * 50)
    half_width = 1.96 * math.sqrt(0.25 / 100)
    assert interval.low == pytest.approx(0.5 - half_width, abs=0.02)
    assert interval.high == pytest.approx(0.5 + half_width, abs=0.02)


def test_bootstrap_ci_is_seeded():
    assert bootstrap_ci(SMALL, seed=7) == bootstrap_ci(SMALL, seed=7)
    assert bootstrap_ci(SMALL, seed=0) != bootstrap_ci(SMALL, seed=1)


def test_bootstrap_ci_pinned_on_seed_0():
    # A regression guard: computed once with the implementation...
    assert bootstrap_ci(SMALL) == Interval(2.125, 5.875)

    # ...and re-derived here from the documented procedure: 2000 resamples of 8 with
    # replacement from Random(0), their sorted means, then the 2.5% and 97.5% quantiles by
    # linear interpolation at position q * (2000 - 1).
    rng = random.Random(0)
    means = sorted(math.fsum(rng.choices(SMALL, k=8)) / 8 for _ in range(2000))

    def quantile(q):
        position = q * (len(means) - 1)
        below = math.floor(position)
        return means[below] + (means[below + 1] - means[below]) * (position - below)

    assert Interval(quantile(0.025), quantile(0.975)) == Interval(2.125, 5.875)


def test_bootstrap_ci_rejects_bad_arguments():
    with pytest.raises(ValueError):
        bootstrap_ci(SMALL, level=1.0)
    with pytest.raises(ValueError):
        bootstrap_ci(SMALL, samples=0)


def test_paired_bootstrap_ci():
    assert paired_bootstrap_ci([], []) is None
    assert paired_bootstrap_ci(SMALL, SMALL) == Interval(0.0, 0.0)
    assert paired_bootstrap_ci([1.0] * 20, [0.0] * 20) == Interval(1.0, 1.0)
    with pytest.raises(ValueError):
        paired_bootstrap_ci([1.0, 0.0], [1.0])


def test_paired_bootstrap_ci_resamples_pairs_together():
    # b is a plus a constant: every resample has mean(a) - mean(b) == -1 exactly, which only
    # holds if both lists are resampled with the same indices.
    b = [x + 1.0 for x in SMALL]
    assert paired_bootstrap_ci(SMALL, b) == Interval(-1.0, -1.0)


def test_percentile_nearest_rank():
    assert percentile([], 50) is None
    twenty = list(range(1, 21))
    assert percentile(twenty, 95) == 19  # ceil(0.95 * 20) = 19: the 19th value
    assert percentile([4, 1, 3, 2], 50) == 2  # ceil(0.5 * 4) = 2: the 2nd of 1, 2, 3, 4
    assert percentile(twenty, 0) == 1  # the minimum
    assert percentile(twenty, 100) == 20  # ceil(20) = 20: the maximum
    # ceil(7 * 100 / 100) = 7, where 7 / 100 * 100 = 7.000000000000001 would give 8
    assert percentile(list(range(1, 101)), 7) == 7
    with pytest.raises(ValueError):
        percentile(twenty, 101)


def test_paired_counts():
    first = [True, True, False, True, False, False, True]
    second = [True, False, True, False, False, True, True]
    # items 0 and 6 both right; 1 and 3 only first; 2 and 5 only second; 4 both wrong
    assert paired_counts(first, second) == Paired(
        n=7, both_right=2, only_first=2, only_second=2, both_wrong=1
    )
    assert paired_counts([], []) == Paired(0, 0, 0, 0, 0)
    with pytest.raises(ValueError):
        paired_counts([True], [])
