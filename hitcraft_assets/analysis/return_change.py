"""A sustained change in a return rate (cohort retention, returning users), judged by its evidence.

Why it exists: a channel whose users come back less shows first in its cohorts, weeks before its active
users trend down (a growing channel's DAU keeps rising while each cohort returns less). A return rate is a
count of successes out of trials, so its uncertainty is known exactly: a segment with 8 sign-ups a day is
judged by the same test as one with 800, and no volume floor is needed (the test is weak on few users and
says so with a large p-value; Benjamini-Hochberg across the day's segments keeps the false findings
bounded).

The test (:func:`judge`): the recent cohorts pooled (x successes of n trials) against the baseline's
cohorts, grouped by week. The baseline's rate p0 is uncertain (its own binomial noise) and moves from week
to week more than binomial noise alone (a holiday, a campaign's mix): `between_var`, the variance of its
weekly rates beyond their binomial variance (method of moments, at least 0). The recent count is then
beta-binomial: X ~ BetaBinomial(n, a, b) with the beta's mean p0 and variance p0(1-p0)/N + between_var
(plus Jeffreys' half a success and failure), and the p-value is the two-sided exact tail of x. With
between_var = 0 this is the posterior predictive of a binomial baseline; with small n it is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hitcraft_assets.lazy import lazy

stats = lazy("scipy.stats")

# the baseline needs this many of its weekly groups with users (its weeks are 4): fewer says too little
# about how the rate moves from week to week
MIN_BASELINE_WEEKS = 3


@dataclass(frozen=True)
class Judgement:
    recent_trials: int
    recent_successes: int
    baseline_trials: int
    baseline_successes: int
    between_var: float
    p_value: float
    direction: str          # 'down' | 'up'


def between_week_variance(groups: list[tuple[int, int]]) -> float:
    """Variance of the weekly rates (successes, trials) beyond their binomial variance, at least 0."""
    groups = [(x, n) for x, n in groups if n > 0]
    if len(groups) < 2:
        return 0.0
    x = np.array([g[0] for g in groups], float)
    n = np.array([g[1] for g in groups], float)
    p0 = x.sum() / n.sum()
    rates = x / n
    return float(max(0.0, rates.var(ddof=1) - np.mean(p0 * (1 - p0) / n)))


def judge(recent: tuple[int, int], baseline_weeks: list[tuple[int, int]]) -> Judgement | None:
    """The recent (successes, trials) against the baseline's weekly (successes, trials); None when there is
    nothing to judge (no recent trials, or fewer than MIN_BASELINE_WEEKS baseline weeks with users)."""
    x, n = int(recent[0]), int(recent[1])
    weeks = [(int(a), int(b)) for a, b in baseline_weeks if b > 0]
    if n <= 0 or len(weeks) < MIN_BASELINE_WEEKS:
        return None
    xb, nb = sum(w[0] for w in weeks), sum(w[1] for w in weeks)
    p0 = xb / nb
    tau2 = between_week_variance(weeks)
    if 0.0 < p0 < 1.0:
        var = p0 * (1 - p0) / nb + tau2
        concentration = max(p0 * (1 - p0) / var - 1.0, 0.0)
        a, b = p0 * concentration + 0.5, (1 - p0) * concentration + 0.5
    else:   # a baseline at 0% or 100%: Jeffreys' posterior of its count
        a, b = xb + 0.5, nb - xb + 0.5
    lower = float(stats.betabinom.cdf(x, n, a, b))
    upper = float(stats.betabinom.sf(x - 1, n, a, b))
    p = min(1.0, 2.0 * min(lower, upper))
    return Judgement(n, x, nb, xb, tau2, p, "down" if x / n < p0 else "up")
