"""A conversion rate on few trials a day, judged by pooling days: the last 1, 3 or 7 days against the 28
before them, with an exact beta-binomial tail.

A funnel with 15 entrants a day cannot be judged one day at a time by a robust z: one day's rate moves by
+-13 points from sampling alone, and the robust scale of such a series is mostly discreteness. What is
known exactly is the sampling: on a day ``n`` users entered the step and ``k`` got through. So, as of day
``i`` and for each window ``w`` in ``WINDOWS`` (1, 3, 7 days ending on ``i``):

- **baseline**: the ``BASELINE_DAYS`` (28) days before the window, within the current regime and without
  the days of a transient episode: ``K_b`` successes of ``N_b`` trials;
- **overdispersion** ``phi`` >= 1: the Pearson chi-square of the baseline days over its degrees of freedom
  (a day-to-day wobble beyond binomial noise, from the series' own history; a median-based estimate was
  tried and is biased upwards at 20 trials a day, where squared residuals are far from chi-square);
- **predictive tail**: under no change the window's successes follow a beta-binomial with ``N_w / phi``
  trials and a Beta(``K_b / phi + 1/2``, ``(N_b - K_b) / phi + 1/2``) rate: the binomial noise of the window,
  the uncertainty of the baseline rate itself, both widened by ``phi`` (exact for ``phi`` = 1);
- **p-value**: the two-sided tail of the window's successes, the smallest over the windows times their
  number (Bonferroni). A day is anomalous when p <= ``P_THRESHOLD`` = 2 * Phi(-3.5), the per-day
  detector's 3.5-sigma threshold; its ``score`` is the normal quantile of p, signed and capped at
  ``MAX_SCORE`` (50).

Episodes work as in :func:`~hitcraft_assets.detection.anomalies.assess_series`: an alert opens one; the
next days are ``continuation`` while the rate since its start (the last 7 days at most) stays beyond half
the threshold on the same side of the frozen pre-episode baseline; an episode that lasts
``SHIFT_CONFIRM_DAYS`` (7) judged days is a level shift and starts a new regime (later baselines use only
its days, from 7 of them); a shorter one was transient and its days are left out of later baselines.
The first ``MIN_HISTORY`` (14) days with trials are never judged. Each day is judged from its own past
only, so a backfill says what the daily runs said.

What it does (simulated, 90 days, about 15 trials a day at 60%, a change on day 60, 300 series each): 60% ->
20% is alerted within 3 days in 92% of series (one day's 3 of 15 has a tail of about 0.01, not proof;
three days' are), with a median delay of 2 days; 60% -> 45% within 3 days in 2% (after about a week);
a quiet series gets 0.004 false alerts per 30 days (0.007 with a day-to-day wobble of 5 points beyond
binomial noise). About 20 ms per 90-day series: the tails come from one vector of the pmf per judged
window (:func:`betabinom_tails`; scipy's frozen ``betabinom`` took 0.7 s a series, building a docstring per
freeze and summing the pmf once per ``cdf`` call and per bisection step of ``ppf``).

Public: :func:`assess_rate_series` (:func:`walk_rate_series`: the same, resumable from a
:class:`RateWalkState`), :func:`pooled_tail`, :func:`betabinom_tails`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hitcraft_assets.detection.anomalies import (
    ANOMALY,
    CONTINUATION,
    MISSING,
    NORMAL,
    TAIL_POINTS,
    WARMING_UP,
    AnomalyOptions,
    PointAssessment,
    resumed_points,
)
from hitcraft_assets.lazy import lazy

special = lazy("scipy.special")

# the per-day detector's defaults: the same threshold, history, confirmation and score bound
_DEFAULTS = AnomalyOptions()
WINDOWS = (1, 3, 7)
BASELINE_DAYS = 28
MIN_HISTORY = _DEFAULTS.min_history
MIN_REGIME_DAYS = 7
SHIFT_CONFIRM_DAYS = _DEFAULTS.shift_confirm_days
THRESHOLD_Z = _DEFAULTS.threshold
P_THRESHOLD = math.erfc(THRESHOLD_Z / math.sqrt(2))   # two-sided normal tail, 2 * norm.sf(z)
P_HYSTERESIS = math.erfc(THRESHOLD_Z * _DEFAULTS.hysteresis / math.sqrt(2))
MAX_SCORE = 1.0 / _DEFAULTS.min_rel_scale


@dataclass(frozen=True)
class _Base:
    k: float       # successes
    n: float       # trials
    phi: float     # overdispersion (>= 1)

    @property
    def rate(self) -> float:
        return self.k / self.n


def _base(k: np.ndarray, n: np.ndarray, idx: np.ndarray) -> _Base | None:
    """The pooled baseline of the days ``idx`` (those with trials)."""
    idx = idx[n[idx] > 0]
    if idx.size == 0:
        return None
    kb, nb = float(k[idx].sum()), float(n[idx].sum())
    p = kb / nb
    phi = 1.0
    if 0 < p < 1 and idx.size > 1:
        chi2 = float((((k[idx] - n[idx] * p) ** 2) / (n[idx] * p * (1 - p))).sum())
        phi = max(1.0, chi2 / (idx.size - 1))
    return _Base(kb, nb, phi)


def betabinom_tails(m: int, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """(P(X <= j), P(X >= j)) at j = 0..m of a beta-binomial with ``m`` trials and a Beta(``a``, ``b``)
    rate: scipy's pmf (the same log-beta formula) summed from each end, so that a small upper tail is
    its own sum rather than 1 minus a sum close to 1. One vector answers what scipy's generic discrete
    ``cdf``, ``sf``, ``ppf`` and ``isf`` compute with a sum over the support each (``ppf``: one per
    bisection step)."""
    j = np.arange(m + 1, dtype=float)
    pmf = np.exp(-math.log(m + 1) - special.betaln(m - j + 1, j + 1) + special.betaln(j + a, m - j + b)
                 - special.betaln(a, b))
    return np.minimum(np.cumsum(pmf), 1.0), np.minimum(np.cumsum(pmf[::-1])[::-1], 1.0)


def pooled_tail(k: float, n: float, base: _Base) -> tuple[float, float, float]:
    """(two-sided p, lower, upper) for ``k`` successes of ``n`` trials against ``base``: the beta-binomial
    predictive tail, trials and baseline counts divided by the overdispersion; ``lower``/``upper`` bound
    the rate at the threshold's tail probability (the smallest counts whose cumulative probability reaches
    ``P_THRESHOLD / 2`` and ``1 - P_THRESHOLD / 2``, as scipy's ``ppf`` and ``isf`` define them)."""
    m = max(int(round(n / base.phi)), 1)
    x = min(max(int(round(k / n * m)), 0), m)
    a, b = base.k / base.phi + 0.5, (base.n - base.k) / base.phi + 0.5
    cdf, sf = betabinom_tails(m, a, b)
    p = min(1.0, 2.0 * min(float(cdf[x]), float(sf[x])))
    lo = min(int(np.searchsorted(cdf, P_THRESHOLD / 2, side="left")), m)
    hi = min(int(np.searchsorted(cdf, 1.0 - P_THRESHOLD / 2, side="left")), m)
    return p, lo / m, hi / m


def _score(p: float, sign: int) -> float:
    return sign * min(MAX_SCORE, float(-special.ndtri(max(p / 2, 1e-300))))


@dataclass
class RateWalkState:
    """Where a pooled walk stopped: what its day loop carries from one day to the next (the days a baseline
    may use, the regime, the open episode), after judging the days before ``next_index``, and the last
    ``TAIL_POINTS`` judgements. Given the same rates, trials and days to judge up to ``next_index``, a walk
    resumed from it judges every later day exactly as a walk from the start does (the windows and baselines
    it reads lie in the arrays, which the resumed walk has whole)."""

    next_index: int
    usable: np.ndarray
    regime_start: int
    in_regime: bool
    episode: tuple[int, int, _Base] | None
    judged_since: int
    tail: list[PointAssessment]


def assess_rate_series(dates: Sequence[Any], rates: Sequence[float] | np.ndarray,
                       trials: Sequence[float] | np.ndarray,
                       judge: Sequence[bool] | np.ndarray | None = None) -> list[PointAssessment]:
    """Judge every day of a conversion series (``rates``: successes / trials per day, NaN for none;
    ``trials``: the day's trials) by pooled windows, each day from the days before it only. ``judge``: the
    days to judge (default all); the others are still part of later baselines. Returns one
    :class:`PointAssessment` per date, in order (``observed``/``expected`` are rates; ``observed`` is the
    window that decided)."""
    return walk_rate_series(dates, rates, trials, judge)[0]


def walk_rate_series(dates: Sequence[Any], rates: Sequence[float] | np.ndarray,
                     trials: Sequence[float] | np.ndarray, judge: Sequence[bool] | np.ndarray | None = None, *,
                     resume: RateWalkState | None = None) -> tuple[list[PointAssessment], RateWalkState]:
    """:func:`assess_rate_series`, optionally resumed from the state a walk over the same first days stopped
    in, and the state it stops in after the last day. Resumed, the days before the state's tail are not
    judged again: their points have status ``not_recomputed``."""
    r = np.asarray(rates, dtype=float)
    n = np.asarray(trials, dtype=float)
    if r.shape != n.shape or r.ndim != 1 or len(dates) != r.size:
        raise ValueError(f"DETECTION_LENGTH: {len(dates)} dates, {r.size} rates, {n.size} trials")
    valid = np.isfinite(r) & np.isfinite(n) & (n > 0)
    n = np.where(valid, n, 0.0)
    k = np.where(valid, np.clip(np.round(r * n), 0, n), 0.0)
    judge = np.ones(r.size, bool) if judge is None else np.asarray(judge, bool)
    usable = valid.copy()
    seen = np.cumsum(valid)
    regime_start = 0
    in_regime = False
    episode: tuple[int, int, _Base] | None = None       # (start, sign, frozen baseline)
    judged_since = 0
    out: list[PointAssessment] = []
    first = 0
    if resume is not None:
        first, out = resume.next_index, resumed_points(dates, resume.next_index, resume.tail)
        usable[:first] = resume.usable
        regime_start, in_regime, episode, judged_since = (resume.regime_start, resume.in_regime, resume.episode,
                                                          resume.judged_since)

    def blank(i: int, status: str) -> PointAssessment:
        return PointAssessment(dates[i], float(r[i]) if valid[i] else None, None, None, None, None, None,
                               None, False, status)

    for i in range(first, r.size):
        if not valid[i]:
            out.append(blank(i, MISSING))
            continue
        if not judge[i]:
            out.append(blank(i, WARMING_UP))
            continue
        if episode is not None:
            start, sign, base = episode
            if judged_since >= SHIFT_CONFIRM_DAYS:       # it lasted: a level shift, a new regime from its start
                regime_start, in_regime, episode = start, True, None
            else:
                lo = max(start, i - max(WINDOWS) + 1)
                kw, nw = float(k[lo:i + 1].sum()), float(n[lo:i + 1].sum())
                p, lower, upper = pooled_tail(kw, nw, base)
                same = (kw / nw - base.rate) * sign > 0
                if same and p <= P_HYSTERESIS:
                    judged_since += 1
                    out.append(PointAssessment(dates[i], kw / nw, base.rate, lower, upper, _score(p, sign), p,
                                               "up" if sign > 0 else "down", False, CONTINUATION, i - lo + 1))
                    continue
                usable[start:i] = False                 # back: the episode was transient
                episode = None
        if seen[i] - 1 < MIN_HISTORY:
            out.append(blank(i, WARMING_UP))
            continue
        best = None
        for w in WINDOWS:
            lo = i - w + 1
            if lo < regime_start:
                continue
            idx = np.arange(max(regime_start, lo - BASELINE_DAYS), lo)
            idx = idx[usable[idx]]
            if idx.size < (MIN_REGIME_DAYS if in_regime else MIN_HISTORY):
                continue
            base = _base(k, n, idx)
            kw, nw = float(k[lo:i + 1].sum()), float(n[lo:i + 1].sum())
            if base is None or nw == 0:
                continue
            p, lower, upper = pooled_tail(kw, nw, base)
            if best is None or p < best[0]:
                best = (p, lower, upper, kw / nw, base, w)
        if best is None:
            out.append(blank(i, WARMING_UP))
            continue
        p_raw, lower, upper, observed, base, window = best
        p = min(1.0, p_raw * len(WINDOWS))
        sign = 1 if observed > base.rate else -1
        status = ANOMALY if p <= P_THRESHOLD else NORMAL
        if status == ANOMALY:
            episode, judged_since = (i, sign, base), 1
        out.append(PointAssessment(dates[i], observed, base.rate, lower, upper, _score(p, sign), p,
                                   "up" if sign > 0 else "down", status == ANOMALY, status, window))
    state = RateWalkState(r.size, usable.copy(), regime_start, in_regime, episode, judged_since,
                          out[max(0, r.size - TAIL_POINTS):])
    return out, state


__all__ = ["assess_rate_series", "walk_rate_series", "RateWalkState", "betabinom_tails", "pooled_tail",
           "P_THRESHOLD", "WINDOWS"]
