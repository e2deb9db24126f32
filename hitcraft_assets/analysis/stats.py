"""Pure statistics for comparing a segment with the rest: proportion tests, Mann-Whitney U, effect sizes
and Benjamini-Hochberg q-values.

It exists so that the statistics can be checked against textbook and scipy numbers on their own, without
a warehouse: it takes counts and arrays and returns numbers (no DuckDB, no Dagster). The tests
themselves are scipy's (`scipy.stats.chi2_contingency`, `fisher_exact`, `mannwhitneyu`,
`false_discovery_control`); this module only chooses between them and shapes their results.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from hitcraft_assets.lazy import lazy

sps = lazy("scipy.stats")

# Which test compares two proportions depends on the smallest expected cell count of the 2x2 table
# (converted / not converted x segment / rest) under the null hypothesis of equal proportions:
# the normal approximation of the z-test is good from 10 per cell, chi-square with Yates' continuity
# correction from 5, and below that only Fisher's exact test is trustworthy.
MIN_EXPECTED_Z = 10.0
MIN_EXPECTED_CHI_SQUARE = 5.0

Z_TEST = "two_proportion_z"
CHI_SQUARE = "chi_square"
FISHER = "fisher"
MANN_WHITNEY = "mann_whitney"


def _check_counts(x1: int, n1: int, x2: int, n2: int) -> None:
    for x, n in ((x1, n1), (x2, n2)):
        if n <= 0 or x < 0 or x > n:
            raise ValueError(f"STATS_COUNTS: need 0 <= successes <= trials and trials > 0, got {x}/{n}")


def table_2x2(x1: int, n1: int, x2: int, n2: int) -> np.ndarray:
    """[[successes, failures] of group 1, [successes, failures] of group 2]."""
    return np.array([[x1, n1 - x1], [x2, n2 - x2]], dtype=np.int64)


def min_expected_count(x1: int, n1: int, x2: int, n2: int) -> float:
    """The smallest expected cell of the 2x2 table if both groups shared the pooled proportion."""
    _check_counts(x1, n1, x2, n2)
    n = n1 + n2
    successes = x1 + x2
    failures = n - successes
    return min(n1, n2) * min(successes, failures) / n


def choose_proportion_test(x1: int, n1: int, x2: int, n2: int) -> str:
    """`two_proportion_z` when every expected cell >= 10, `chi_square` when >= 5, else `fisher`."""
    smallest = min_expected_count(x1, n1, x2, n2)
    if smallest >= MIN_EXPECTED_Z:
        return Z_TEST
    if smallest >= MIN_EXPECTED_CHI_SQUARE:
        return CHI_SQUARE
    return FISHER


def two_proportion_test(x1: int, n1: int, x2: int, n2: int) -> tuple[str, float | None, float]:
    """Two-sided test of p1 = x1/n1 against p2 = x2/n2: (test name, statistic, p-value).

    The statistic is z (pooled standard error, positive when p1 > p2) for the z-test, the Yates-corrected
    chi-square for the chi-square test, and the sample odds ratio for Fisher's test (None when it is
    undefined or infinite, i.e. a zero cell).
    """
    test = choose_proportion_test(x1, n1, x2, n2)
    if test == Z_TEST:
        pooled = (x1 + x2) / (n1 + n2)
        se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        z = (x1 / n1 - x2 / n2) / se
        return test, z, float(2 * sps.norm.sf(abs(z)))
    table = table_2x2(x1, n1, x2, n2)
    if test == CHI_SQUARE:
        res = sps.chi2_contingency(table, correction=True)
        return test, float(res.statistic), float(res.pvalue)
    res = sps.fisher_exact(table, alternative="two-sided")
    odds = float(res.statistic)
    return test, (odds if math.isfinite(odds) else None), float(res.pvalue)


def cohens_h(p1: float, p2: float) -> float:
    """Cohen's h = 2 asin(sqrt(p1)) - 2 asin(sqrt(p2)): 0.2 small, 0.5 medium, 0.8 large."""
    for p in (p1, p2):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"STATS_PROPORTION: a proportion must be within [0, 1], got {p}")
    return 2 * math.asin(math.sqrt(p1)) - 2 * math.asin(math.sqrt(p2))


def mann_whitney(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """Two-sided Mann-Whitney U test of `a` against `b`: (U of a, p-value, rank-biserial r).

    r = 2U/(n_a n_b) - 1 lies in [-1, 1] and is positive when values of `a` tend to be larger. scipy picks
    the exact distribution for small samples without ties, else the normal approximation with tie and
    continuity corrections.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("STATS_EMPTY: Mann-Whitney needs at least one value on each side")
    res = sps.mannwhitneyu(a, b, alternative="two-sided", method="auto")
    u = float(res.statistic)
    return u, float(res.pvalue), 2 * u / (a.size * b.size) - 1


def benjamini_hochberg(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), in the input order.

    q_(i) = min over j >= i of p_(j) * m / j on the sorted p-values, capped at 1; rejecting q < alpha
    controls the false discovery rate at alpha for independent or positively dependent tests.
    """
    p = np.asarray(pvalues, dtype=float)
    if p.size == 0:
        return p
    if np.isnan(p).any():
        raise ValueError("STATS_PVALUE: a p-value is NaN")
    return np.asarray(sps.false_discovery_control(p, method="bh"), dtype=float)
