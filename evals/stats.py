"""Small-sample statistics for comparing systems in the evaluation harness.

Standard library only, so the harness runs wherever the app runs. Every random
procedure takes a `seed` and draws from its own `random.Random(seed)`: a report
rerun on the same grades gives the same intervals, and no global state is touched.
"""

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Interval:
    """A confidence interval; frozen so a reported result can't drift after the fact."""

    low: float
    high: float


def mean(values: Sequence[float]) -> float | None:
    """The arithmetic mean, or None for no values (an empty run has no score, not 0)."""
    if not values:
        return None
    # fsum is exactly rounded: n copies of v average back to v, not v ± an ulp.
    return math.fsum(values) / len(values)


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    # Linear interpolation between the two closest ranks (NumPy's default, Hyndman & Fan
    # type 7): position q * (n - 1), so both tails of an interval are treated alike.
    position = q * (len(sorted_values) - 1)
    below = math.floor(position)
    above = min(below + 1, len(sorted_values) - 1)
    fraction = position - below
    return sorted_values[below] + (sorted_values[above] - sorted_values[below]) * fraction


def _check_bootstrap_args(samples: int, level: float) -> None:
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")


def bootstrap_ci(
    values: Sequence[float], *, samples: int = 2000, level: float = 0.95, seed: int = 0
) -> Interval | None:
    """Percentile-bootstrap interval for the mean: no normality assumption, fine for 0/1 grades.

    Draws `samples` resamples of len(values) items with replacement
    (`rng.choices(values, k=n)` on `random.Random(seed)`), takes each resample's mean
    (math.fsum / n), sorts the means and reads the (1 - level) / 2 and 1 - (1 - level) / 2
    quantiles by linear interpolation at position q * (samples - 1).
    None for no values.
    """
    _check_bootstrap_args(samples, level)
    if not values:
        return None
    rng = random.Random(seed)
    n = len(values)
    means = sorted(math.fsum(rng.choices(values, k=n)) / n for _ in range(samples))
    tail = (1 - level) / 2
    return Interval(_quantile(means, tail), _quantile(means, 1 - tail))


def paired_bootstrap_ci(
    a: Sequence[float],
    b: Sequence[float],
    *,
    samples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval | None:
    """Bootstrap interval for mean(a) - mean(b) when both systems were graded on the same items.

    Pairing removes the item-difficulty variance both systems share, so the interval is
    narrower than two independent intervals would suggest. The same resampled indices are
    used for both systems, which is the same as resampling the per-item differences
    a[i] - b[i]; that is what is done, with exactly the procedure of `bootstrap_ci`.
    None for no items; ValueError if the lists are not the same length.
    """
    if len(a) != len(b):
        raise ValueError(f"paired lists differ in length: {len(a)} and {len(b)}")
    differences = [x - y for x, y in zip(a, b, strict=True)]
    return bootstrap_ci(differences, samples=samples, level=level, seed=seed)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: do two systems differ on the items they disagree on?

    b counts pairs the first system got right and the second wrong, c the opposite.
    Under the null each disagreement is a fair coin, so with n = b + c:
    p = min(1, 2 * sum_{k=0}^{min(b, c)} C(n, k) / 2**n), and p = 1.0 when n == 0.
    Exact rather than the chi-squared approximation, which is poor for the small
    disagreement counts an eval set produces.
    """
    if b < 0 or c < 0:
        raise ValueError(f"counts must be non-negative, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    # Integer true division is correctly rounded however large the operands, so big n
    # neither overflows nor loses the tiny tail to intermediate underflow.
    return min(1.0, 2 * tail / 2**n)


def sign_test(differences: Sequence[float]) -> float:
    """Two-sided exact sign test: does one system score higher per item more often than not?

    Uses only the direction of each paired difference, so it holds for any score scale.
    Ties (0) carry no direction and are dropped; the rest is `mcnemar_exact` with
    b = positive differences and c = negative ones.
    """
    positives = sum(1 for d in differences if d > 0)
    negatives = sum(1 for d in differences if d < 0)
    return mcnemar_exact(positives, negatives)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile: always an observed value (a real latency, not a blend of two).

    sorted(values)[ceil(q / 100 * n) - 1] for q in 0..100; q = 0 gives the minimum.
    None for no values.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"q must be between 0 and 100, got {q}")
    if not values:
        return None
    ordered = sorted(values)
    # q * n / 100, not q / 100 * n: 7 / 100 * 100 is 7.000000000000001, whose ceil is 8.
    rank = math.ceil(q * len(ordered) / 100)
    return ordered[max(rank, 1) - 1]


@dataclass(frozen=True)
class Paired:
    """How two systems' right/wrong grades line up item by item (McNemar's 2x2 table)."""

    n: int  # items both systems have a grade for
    both_right: int
    only_first: int  # first right, second wrong (McNemar's b)
    only_second: int  # first wrong, second right (c)
    both_wrong: int


def paired_counts(first: Sequence[bool], second: Sequence[bool]) -> Paired:
    """Tabulate two systems' grades on the same items, ready for `mcnemar_exact`.

    first[i] and second[i] grade the same item; ValueError if the lengths differ.
    """
    if len(first) != len(second):
        raise ValueError(f"paired lists differ in length: {len(first)} and {len(second)}")
    both_right = only_first = only_second = both_wrong = 0
    for x, y in zip(first, second, strict=True):
        if x and y:
            both_right += 1
        elif x:
            only_first += 1
        elif y:
            only_second += 1
        else:
            both_wrong += 1
    return Paired(len(first), both_right, only_first, only_second, both_wrong)
