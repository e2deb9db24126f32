"""Change points: where a daily series moves to a new level and stays there.

Method (analytics-methods.md §2g):

1. **Weekly deseasonalization** (``period=7``, on by default; ``None`` turns it off). A weekday pattern
   (weekends 30% lower) is not a change of level, but a least-squares segmentation cuts it into
   pieces. :func:`weekly_profile` is a classical decomposition with medians: a centred 7-day moving
   average is the level, and the effect of a phase (position % 7) is the median of value / level
   (multiplicative, for non-negative series) or value - level (additive). Because the level moves
   with the data, a level shift or a trend does not leak into the weekday effects (plain per-weekday
   medians do: with a step in the middle of the series some weekdays' medians fall before it and
   some after, and the "profile" becomes a copy of the step). The profile is removed only when it is
   significant (:func:`weekly_is_significant`: its effects against the noise, chi-square at p < 0.01),
   so series without a weekly pattern (or not daily at all) are not made noisier by removing one. The
   series' frequency is not known, so a 12-point profile (a yearly pattern of monthly values; an even
   period's level is the centred 2 x 12 moving average) is tested too, at p < 0.001, and of the
   significant profiles the one that leaves the smallest noise is removed. On the public TCPD series it
   is found on 6 monthly ones (seatbelts, jfk_passengers, lga_passengers, construction, businv,
   us_population), on none of the others, and on 2 of the 400 series of the benchmark below (F1 0.904 ->
   0.903).
2. **PELT with an L2 (mean-shift) cost** from ``ruptures`` (``min_size=5`` days, ``jump=1`` because the
   default ``jump=5`` only allows change points on multiples of 5). The cost is ruptures' ``CostL2``
   (sum of squared deviations from the segment mean) computed from cumulative sums: the same numbers,
   O(1) per segment instead of O(segment length), about 10x faster on 90-365 days. The PELT loop is
   ruptures' own, rewritten without its dict copies (:func:`_pelt`; tested against ruptures, which the
   engine no longer imports: it is a dev dependency).
3. **Noise scale** (:func:`noise_scale`). Daily metrics are autocorrelated: a slow wander around the
   level that first differences do not see. The noise is read as an AR(1): for lags k = 1..4,
   Var(x_t - x_t-k) = 2 sigma^2 (1 - phi^k), fitted to robust variances of the differences (the mean of
   the smallest 80% of squares, rescaled, so level shifts, spikes and a trend do not move them). The
   scale that matters for a change of mean is the long-run sigma, sigma * sqrt((1 + phi) / (1 - phi))
   (phi capped at 0.85): at phi = 0.8 it is 3 sigma, while the first-difference sigma
   (:func:`robust_sigma`, the estimate used before) is 0.45 sigma, and with it the detector reported
   a change point on 66% / 98% of 90-day AR(1) series with phi 0.5 / 0.8 and no change (simulated).
   **Second pass**: where PELT returns candidates (with the penalty of step 4), at most one per ``SECOND_PASS_SEGMENT`` = 15
   points, the noise is read again without the lag differences that straddle a candidate, and when its
   long-run sigma is smaller the segmentation is run again with it. On a short series with two steps a
   lag-4 difference across a step is a fifth of them, more than the trimming drops, and the steps
   themselves read as autocorrelation (phi at the cap, a long-run sigma 3-6 times the noise's): TCPD's
   ``rail_lines`` (37 points) lost its step that way, and so did ``co2_canada``. A staircase of
   candidates on a trend (more than one per 15 points) is left alone: its segments are flat by
   construction, and their differences would understate the noise (a 0.3 sigma/day trend was cut on 9%
   of series rather than 3% without that limit).
4. **Penalty** ``pen = k * s^2 * log(n)`` with s the long-run sigma: the BIC of a Gaussian mean-shift
   model with known variance, the model for which ruptures' maintainer vouches for a BIC (§2g), and
   ``k`` (``penalty_k``) 3. k = 2 / 3 / 4 gave F1 0.904 / 0.906 / 0.905 on the benchmark (below) with
   6% / 4% / 2% false alarms on its series without a change point (tuning figures, measured before
   the 30-value floor of :func:`noise_scale`, which took 0.002 off F1 and added 2 points of false
   alarms; the same below); k = 1 is common in public code but cuts pure noise often (PELT alone:
   56% of 90-day Gaussian series, with the old estimate).
5. **Trend-aware confirmation** (``trend_aware=True``). On a smooth trend PELT with a mean-shift cost
   returns a staircase (a trend is a sequence of small mean shifts), and a large one-day spike gets a
   short segment of its own. Every candidate is therefore re-tested as a *jump* at its boundary,
   within the adjacent segments (at most ``jump_window`` = 28 points each side): the difference of the
   two sides' medians, or, where there is a slope, of their median residuals from a common slope
   (Theil-Sen over pairs on the same side, so the jump does not bias it), whose error then enters the
   standard error. There is a slope when it is significant at z >= 2 within 28 points each side
   (whatever the neighbouring candidates: on a trend they are steps of the same staircase, chosen by
   the segmentation to be flat) or at z >= 5 within all segments. Always fitting a slope, as before,
   costs a step most of its z on autocorrelated noise (benchmark F1 0.852 instead of 0.906; a 2-sigma
   step found 48% rather than 80% of the time).
   ``jump_z`` is the jump over its standard error (long-run sigma); the weakest candidate with
   ``|jump_z| < min_jump_z`` (3.0; 3.5 gave F1 0.892 and cuts a bend about a third as often) is dropped and
   its neighbours re-tested, until all remain. A bend (flat, then growing) is a change of slope, not
   of level, and is mostly not reported: the trends module (Mann-Kendall) is the place for it.

Benchmark (``bench/changepoints.py``: 400 labelled series like product metrics, 60-500 days, 0-4
shifts of 1.5-6 sigma, trends, weekly patterns, AR(1) noise with phi up to 0.8, spikes, missing days,
Poisson-like counts; a third without a change point; TCPDBench's F1 with a 5-point margin and
covering): F1 0.911, covering 0.906, a change point on 6% of the series without one (one reading of
the noise, without the second pass: 0.903 / 0.893 / 6%). Before (the
first-difference sigma, always deseasonalized, slope always fitted, min_jump_z 3.5): 0.815 / 0.816 /
24%; no change point at all 0.658 / 0.626; ruptures Binseg with an L2 cost and a BIC penalty on the
standardised series 0.838 / 0.866 / 54%.

What the defaults do on 90 days of unit noise (200 simulated series each, seeded; ``python
bench/changepoints.py --scenarios``; "found" = a change point within 1 day of the step; in brackets with
one reading of the noise (no second pass), then with the first-difference sigma before it): pure noise
0% (0%, 0%) with any change point; a linear trend of 0.1 or 0.3 sigma/day 4% / 3% (4% / 3%, 6% / 3%);
flat for 45 days then +0.2 sigma/day 20% (12%, 16%); weekends 3 sigma lower 0% (0%, 0%); a 12-sigma
one-day spike 2% (2%, 2%); AR(1) noise with phi 0.5 / 0.8 (unit marginal sigma) 2% / 6% (2% / 4%, 66% /
98%); Poisson(3) counts 0% (0%, 1%); steps of 1.5 / 2 / 3 sigma at day 60 found 65% / 80% / 96% (62% /
80% / 96%, 26% / 48% / 93%); a 3-sigma step on a 0.1 sigma/day trend 86% (80%, 84%); a 3-sigma step at
day 45 under weekends 3 sigma lower 97% (96%, 90%); a 3-sigma step at day 45 in AR(1) noise with phi 0.5
/ 0.8 79% / 38% (74% / 28%, 88% / 92%, but then nearly every such series without a step is cut as
well). The second pass costs a bend: where the ramp's first candidates are few, the noise read without
them is a little smaller, and 15 more of 200 such series are cut near the bend (a change of slope there,
reported as a change of level). Small shifts are better caught by the anomaly detector or the trend
test; this detector is tuned not to invent level shifts.

Where the noise model does not fit: a series that wanders like a random walk or bends smoothly (annual
economic series, cumulative totals) reads as phi at the cap, and only a large step is reported. A check
on the 31 univariate public TCPD series, many of them of that kind (bench/README.md): F1 0.811 /
covering 0.729 (0.796 / 0.714 without the second pass, 0.788 / 0.699 before the 12-point profile),
Binseg-BIC 0.679 / 0.643, no change point 0.663 / 0.568.

Missing values (NaN) are skipped; indices always refer to positions in the input.

Public: :func:`detect_change_points` (indices where a new segment starts), :func:`find_change_points`
(the same with the size of each shift, :class:`ChangePoint`), :func:`robust_sigma`, :func:`mad_scale`,
:func:`noise_scale` (:class:`NoiseScale`), :func:`trimmed_var`, :func:`median`, :func:`index_pairs`,
:func:`weekly_profile` (:class:`WeeklyProfile`),
:func:`weekly_is_significant`, :func:`deseasonalize`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from hitcraft_assets.lazy import lazy

sps = lazy("scipy.stats")

MAD_TO_SIGMA = 1.4826  # 1 / Phi^-1(3/4): MAD * 1.4826 estimates a Gaussian standard deviation

DEFAULT_MIN_SIZE = 5
DEFAULT_PENALTY_K = 3.0
DEFAULT_PERIOD = 7
DEFAULT_MIN_JUMP_Z = 3.0
DEFAULT_JUMP_WINDOW = 28
MAX_PHI = 0.85           # the lag-1 autocorrelation used for the long-run sigma is capped here
MIN_WEEKS = 3            # ... and only with at least 3 values per phase
WEEKLY_P_VALUE = 0.01    # a weekly profile is removed only when it is significant at this level
OTHER_PERIODS = (12,)    # also tried: a yearly pattern of monthly values (the series' frequency is not known)
OTHER_PERIOD_P_VALUE = 0.001  # ... at this stricter level (an extra hypothesis on every series)
SLOPE_MIN_Z = 2.0        # a jump is measured against a slope only when the slope is this significant
TREND_MIN_Z = 5.0        # ... and always when the slope within all segments is this significant
NOISE_LAGS = 4           # the noise's autocorrelation is read from differences at lags 1..4
MIN_NOISE_LAGS = 3       # ... at least 3 of them (30 values), else the noise counts as independent
SECOND_PASS_SEGMENT = 15  # the noise is read again without the candidates' steps when they average 15+ points apart
TRIM_SHARE = 0.8         # the noise scale is the mean of the smallest 80% of squared differences


def _finite(values: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the finite values, those values) of a 1-D series."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"DETECTION_SHAPE: expected a 1-D series, got shape {x.shape}")
    pos = np.flatnonzero(np.isfinite(x))
    return pos, x[pos]


def median(x: np.ndarray) -> float:
    """``np.median`` of finite values, from one sort: the middle value, or the mean of the two middle ones
    (the same numbers; np.median's checks cost more than the sort on the short windows a detector
    judges, tens of thousands of times a run)."""
    s = np.sort(x)
    h = s.size // 2
    return float(s[h]) if s.size % 2 else float((s[h - 1] + s[h]) / 2.0)


@lru_cache(maxsize=64)
def index_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The index pairs i < j of n values, read-only (cached: Theil-Sen and Mann-Kendall ask for the same
    few sizes on every judged day)."""
    i, j = np.triu_indices(n, k=1)
    i.flags.writeable = j.flags.writeable = False
    return i, j


def mad_scale(values: Sequence[float] | np.ndarray) -> float:
    """1.4826 * median(|x - median(x)|) over the finite values: a Gaussian sigma that ignores outliers.
    0.0 for fewer than two values."""
    _, x = _finite(values)
    if x.size < 2:
        return 0.0
    return float(MAD_TO_SIGMA * median(np.abs(x - median(x))))


def robust_sigma(values: Sequence[float] | np.ndarray) -> float:
    """Noise sigma of a series from its first differences: 1.4826 * MAD(diff) / sqrt(2).

    Differencing removes the level, so a level shift or a slow trend does not inflate the estimate (a
    shift only adds one large difference, which the MAD ignores). NaNs are skipped (differences are
    taken between consecutive finite values). 0.0 for fewer than three values.
    """
    _, x = _finite(values)
    if x.size < 3:
        return 0.0
    return mad_scale(np.diff(x)) / math.sqrt(2.0)


def trimmed_var(d: np.ndarray) -> float:
    """Variance of Gaussian values from the mean of their smallest ``TRIM_SHARE`` squared deviations from
    the median (rescaled): outliers and the few large differences a level shift makes do not count,
    and unlike a MAD it does not jump between integers on low counts."""
    sq = np.sort((d - median(d)) ** 2)
    keep = max(1, int(round(TRIM_SHARE * sq.size)))
    return float(sq[:keep].mean() / _trim_factor())


@lru_cache(maxsize=1)
def _trim_factor() -> float:
    """E[Z^2 | |Z| < q] with q the normal quantile of 0.5 + TRIM_SHARE / 2 (a constant: computed once, not on
    every call: scipy's ppf and pdf cost more than the rest of :func:`trimmed_var`)."""
    q = sps.norm.ppf(0.5 + TRIM_SHARE / 2)
    return float((TRIM_SHARE - 2 * q * sps.norm.pdf(q)) / TRIM_SHARE)


@dataclass(frozen=True)
class NoiseScale:
    """The noise of a series as a stationary AR(1): ``sigma`` its standard deviation, ``phi`` its lag-1
    autocorrelation (0..MAX_PHI) and ``long_run`` = sigma * sqrt((1 + phi) / (1 - phi)), the scale of a
    mean over many consecutive points (the mean of m points has a variance of about long_run^2 / m)."""

    sigma: float
    phi: float
    long_run: float


def noise_scale(values: Sequence[float] | np.ndarray, lags: int = NOISE_LAGS,
                cuts: Sequence[int] = ()) -> NoiseScale:
    """:class:`NoiseScale` from the variances of differences at lags 1..``lags`` (NaNs skipped).

    For a stationary AR(1), Var(x_t - x_t-k) = 2 sigma^2 (1 - phi^k): (sigma, phi) is the least-squares
    fit of these variances in relative terms (phi on a grid of 0.01 up to ``MAX_PHI``, sigma^2 in closed
    form). Each variance is robust (:func:`trimmed_var`), so level shifts and spikes (a few large
    differences each) do not move them, and a trend only moves the differences' median. On
    autocorrelated noise the first-difference sigma (:func:`robust_sigma`) is sigma * sqrt(1 - phi):
    0.45 sigma at phi = 0.8, whose long-run scale is 3 sigma. Lags 1..4 rather than 1..2 halve the
    spread of phi on 90 points (simulated: sd 0.18 rather than 0.27 at phi = 0.5). Negative
    autocorrelation counts as 0 (conservative). At most n // 10 lags, so that one step moves few of
    the differences; fewer than 20 values: sigma from :func:`robust_sigma`, phi 0 (too few points to
    tell autocorrelation from a step).

    ``cuts`` (positions in the finite values where a segment is thought to start): the differences that
    straddle one are left out, so that steps already located do not count as noise (on a short series
    with two steps, a lag-4 difference across a step is a fifth of them, beyond what the trimming
    drops). Where a cut leaves fewer than 10 differences of some lag, the cuts are ignored.
    """
    _, x = _finite(values)
    lags = min(lags, x.size // 10)  # a step moves k of the n - k lag-k differences: keep that share small
    if lags < MIN_NOISE_LAGS:
        sig = robust_sigma(x)
        return NoiseScale(sig, 0.0, sig)
    diffs = [x[k:] - x[:-k] for k in range(1, lags + 1)]
    if len(cuts):
        marks = np.zeros(x.size + 1, dtype=int)
        np.add.at(marks, np.asarray(cuts, dtype=int), 1)
        before = np.cumsum(marks)                     # before[i]: cuts at positions <= i
        kept = []
        for k, d in enumerate(diffs, start=1):
            i = np.arange(x.size - k)
            kept.append(d[before[i + k] == before[i]])  # no cut in (i, i + k]
        if min(d.size for d in kept) >= 10:
            diffs = kept
    v = np.array([trimmed_var(d) for d in diffs])
    if v[0] <= 0:
        sig = robust_sigma(x)
        return NoiseScale(sig, 0.0, sig)
    phis = np.arange(0.0, MAX_PHI + 1e-9, 0.01)
    g = 2 * (1 - phis[:, None] ** np.arange(1, lags + 1)[None, :])    # (phi, lag) -> Var / sigma^2
    s2 = (g * v).sum(axis=1) / (g * g).sum(axis=1)
    err = (((v - s2[:, None] * g) / (s2[:, None] * g)) ** 2).sum(axis=1)
    best = int(np.argmin(err))
    phi, sig = float(phis[best]), math.sqrt(float(s2[best]))
    return NoiseScale(sig, phi, sig * math.sqrt((1 + phi) / (1 - phi)))


def _phase_medians(x: np.ndarray, ph: np.ndarray, period: int) -> tuple[np.ndarray, np.ndarray]:
    """(median, count) of the values of each phase 0..period-1 (median NaN for an empty phase): the values
    sorted within their phases once, each median the middle value or the mean of the two middle ones, as
    ``np.median`` has it (one ``np.median`` per phase cost more than the rest of a weekly profile)."""
    order = np.lexsort((x, ph))
    xs = x[order]
    counts = np.bincount(ph, minlength=period)[:period]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    medians = np.full(period, np.nan)
    has = counts > 0
    lo = starts[has] + (counts[has] - 1) // 2
    hi = starts[has] + counts[has] // 2
    medians[has] = (xs[lo] + xs[hi]) / 2.0
    return medians, counts


@dataclass(frozen=True)
class WeeklyProfile:
    """A seasonal profile with one effect per phase ``day % period``.

    ``mode='multiplicative'``: ``effects`` are factors (mean 1), so the weekend dip scales with the
    level; ``'additive'``: offsets (mean 0). ``counts`` is the number of values each effect was
    estimated from (0: the neutral effect, 1 or 0, for a phase without data).
    """

    mode: str
    effects: np.ndarray
    counts: np.ndarray
    period: int

    def remove(self, values: np.ndarray, days: np.ndarray) -> np.ndarray:
        """Deseasonalized values of the given days."""
        e = self.effects[np.asarray(days, dtype=np.int64) % self.period]
        return values / e if self.mode == "multiplicative" else values - e

    def apply(self, level: float, day: int) -> float:
        """The seasonal value of deseasonalized ``level`` on ``day``."""
        e = float(self.effects[int(day) % self.period])
        return level * e if self.mode == "multiplicative" else level + e


def weekly_profile(values: Sequence[float] | np.ndarray, days: Sequence[int] | np.ndarray | None = None,
                   period: int = DEFAULT_PERIOD, mode: str = "auto") -> WeeklyProfile:
    """Estimate a :class:`WeeklyProfile` by classical decomposition with medians.

    ``days``: integer day numbers of the values (default 0..n-1); the phase of a value is
    ``day % period``, and gaps (NaN, absent days) keep their place. The level is a centred moving
    average over ``period`` consecutive days (only where all of them are present), so neither a trend
    nor a level shift leaks into the profile: the effect of a phase is the median of value / level
    (multiplicative) or value - level (additive) over its days, normalised to mean 1 or 0. With fewer
    than ``period`` full windows the effects are the phase medians of the raw values instead.
    ``mode='auto'`` picks multiplicative when all values are >= 0, all levels > 0 and every effect
    would be > 0 (counts, users, durations, rates), else additive.
    """
    if mode not in ("auto", "additive", "multiplicative"):
        raise ValueError(f"DETECTION_SEASONALITY: unknown mode {mode!r}")
    if period < 3:
        raise ValueError(f"DETECTION_PERIOD: period must be at least 3, got {period}")
    x = np.asarray(values, dtype=float)
    d = np.arange(x.size) if days is None else np.asarray(days, dtype=np.int64)
    keep = np.isfinite(x)
    x, d = x[keep], d[keep]
    if x.size == 0:
        return WeeklyProfile("additive", np.zeros(period), np.zeros(period, dtype=int), period)
    grid = np.full(int(d.max() - d.min()) + 1, np.nan)
    grid[d - d.min()] = x
    centre = np.array([], dtype=np.int64)
    width = period + 1 - period % 2    # an even period: the centred 2 x period moving average
    if grid.size >= width:
        windows = np.lib.stride_tricks.sliding_window_view(grid, width)  # NaN where a day is absent
        if width > period:
            moving = (windows[:, 1:-1].sum(axis=1) + 0.5 * (windows[:, 0] + windows[:, -1])) / period
        else:
            moving = windows.mean(axis=1)
        centre = np.arange(moving.size) + width // 2
        full = np.isfinite(moving) & np.isfinite(grid[centre])
        centre, moving = centre[full], moving[full]
    if centre.size >= period:
        obs, level, phases = grid[centre], moving, (centre + d.min()) % period
    else:  # too little data for a moving level: the raw values against their mean
        obs, level, phases = x, np.full(x.size, x.mean()), d % period
    if mode != "additive" and (x >= 0).all() and (level > 0).all():
        ratios, counts = _phase_medians(obs / level, phases, period)
        present = counts > 0
        if (ratios[present] > 0).all():
            effects = np.where(present, ratios / ratios[present].mean(), 1.0)
            return WeeklyProfile("multiplicative", effects, counts, period)
    if mode == "multiplicative":
        raise ValueError("DETECTION_SEASONALITY: a multiplicative profile needs positive values")
    diffs, counts = _phase_medians(obs - level, phases, period)
    present = counts > 0
    return WeeklyProfile("additive", np.where(present, diffs - diffs[present].mean(), 0.0), counts, period)


def deseasonalize(values: Sequence[float] | np.ndarray, period: int = DEFAULT_PERIOD,
                  mode: str = "auto") -> np.ndarray:
    """The series with its :func:`weekly_profile` removed (positions as days; NaNs stay NaN)."""
    x = np.asarray(values, dtype=float)
    days = np.arange(x.size)
    return weekly_profile(x, days, period, mode).remove(x, days)


def weekly_is_significant(profile: WeeklyProfile, level: float, sigma: float,
                          p_value: float = WEEKLY_P_VALUE, min_weeks: int = MIN_WEEKS) -> bool:
    """Whether a profile's effects are larger than noise of standard deviation ``sigma`` makes them.

    Each effect is a median of ``counts`` values (variance about pi/2 * sigma^2 / count), so under no
    weekly pattern sum(count * effect^2) / (pi/2 * sigma^2) is about chi-square with (phases - 1)
    degrees of freedom; multiplicative effects are put in the series' units with ``level``. False when a
    phase has fewer than ``min_weeks`` values.
    """
    present = profile.counts > 0
    if present.sum() < 2 or sigma <= 0 or profile.counts.min() < min_weeks:
        return False
    effects = (profile.effects - 1.0) * level if profile.mode == "multiplicative" else profile.effects
    stat = float((profile.counts[present] * effects[present] ** 2).sum() / (math.pi / 2 * sigma**2))
    return stat > _chi2_critical(p_value, int(present.sum()) - 1)


@lru_cache(maxsize=64)
def _chi2_critical(p_value: float, df: int) -> float:
    """The chi-square value exceeded with probability ``p_value`` (cached: anomaly baselines test a profile
    for every judged day of every series, and scipy's ppf costs about 85 us a call)."""
    return float(sps.chi2.ppf(1 - p_value, df))


def _deseasonalized(raw: np.ndarray, pos: np.ndarray, period: int | None) -> tuple[np.ndarray, NoiseScale]:
    """The finite values with their seasonal profile removed when it is significant, and their noise.

    The profile of ``period`` (weekly) is tested at ``WEEKLY_P_VALUE``, each of ``OTHER_PERIODS`` (a
    yearly pattern of monthly values) at the stricter ``OTHER_PERIOD_P_VALUE``; of the significant ones,
    the one that leaves the smallest noise is removed. ``period=None``: none."""
    if not period:
        return raw, noise_scale(raw)
    best = None
    level = float(np.median(np.abs(raw)))
    for p in (period, *(q for q in OTHER_PERIODS if q != period)):
        if raw.size < MIN_WEEKS * p:
            continue
        profile = weekly_profile(raw, pos, p)
        y = profile.remove(raw, pos)
        noise = noise_scale(y)
        alpha = WEEKLY_P_VALUE if p == period else OTHER_PERIOD_P_VALUE
        if weekly_is_significant(profile, level, noise.sigma, p_value=alpha) and (
                best is None or noise.sigma < best[1].sigma):
            best = (y, noise)
    return best if best is not None else (raw, noise_scale(raw))


def _pelt(y: np.ndarray, min_size: int, penalty: float) -> list[int]:
    """PELT segment starts (excluding 0) of a NaN-free series: ruptures' ``Pelt(min_size, jump=1)`` with its
    L2 cost from cumulative sums of the median-centred series, step for step, without its dict copies (1.3-1.5 ms instead of 5-8 ms on 90 days of noise; the same breakpoints, floating-point sums and
    tie-breaking: a test compares the two on a thousand series)."""
    n = int(y.size)
    if n < 2 * min_size or penalty <= 0:
        return []
    centred = np.asarray(y, dtype=float).reshape(-1)
    centred = centred - np.median(centred)
    c1 = np.concatenate([[0.0], np.cumsum(centred)]).tolist()
    c2 = np.concatenate([[0.0], np.cumsum(centred * centred)]).tolist()
    best: dict[int, float] = {0: 0}          # the optimal cost of [0, t), as ruptures sums it
    start_of: dict[int, int] = {}             # the start of the last segment of that optimum
    admissible: list[int] = []
    for end in [*range(min_size, n), n]:
        admissible.append(end - min_size)
        candidates, costs = [], []
        for t in admissible:
            if t not in best:                 # no partition of [0, t) (t < min_size): ruptures skips it
                continue
            k = end - t
            s1 = c1[end] - c1[t]
            costs.append(best[t] + (max(c2[end] - c2[t] - s1 * s1 / k, 0.0) + penalty))
            candidates.append(t)
        j = min(range(len(costs)), key=costs.__getitem__)
        best[end], start_of[end] = costs[j], candidates[j]
        bound = best[end] + penalty
        admissible = [t for t, c in zip(candidates, costs) if c <= bound]
    cuts, end = [], n
    while end > 0:
        end = start_of[end]
        if end > 0:
            cuts.append(end)
    return sorted(cuts)


def _theil_sen_common_slope(left_t: np.ndarray, left_y: np.ndarray,
                            right_t: np.ndarray, right_y: np.ndarray) -> float:
    """Median slope over pairs that lie on the same side of a boundary (a jump does not bias it)."""
    slopes = []
    for t, y in ((left_t, left_y), (right_t, right_y)):
        if t.size >= 2:
            i, j = index_pairs(t.size)
            slopes.append((y[j] - y[i]) / (t[j] - t[i]))
    if not slopes:
        return 0.0
    return float(np.median(np.concatenate(slopes)))


def _segments_slope_z(t: np.ndarray, y: np.ndarray, cuts: list[int], sigma: float) -> float:
    """|z| of the slope common to all segments (Theil-Sen over pairs within the same segment; its
    standard error sigma / sqrt(Sxx within segments)); 0 without a scale or any pair."""
    bounds = [0, *cuts, y.size]
    slopes, sxx = [], 0.0
    for a, b in zip(bounds, bounds[1:]):
        if b - a >= 2:
            i, j = index_pairs(b - a)
            slopes.append((y[a:b][j] - y[a:b][i]) / (t[a:b][j] - t[a:b][i]))
            sxx += float(((t[a:b] - t[a:b].mean()) ** 2).sum())
    if not slopes or sxx <= 0 or sigma <= 0:
        return 0.0
    return abs(float(np.median(np.concatenate(slopes)))) * math.sqrt(sxx) / sigma


def _jump(t: np.ndarray, y: np.ndarray, start: int, cut: int, end: int, window: int,
          sigma: float, trend: bool = False) -> tuple[float, float]:
    """(jump, jump_z) at ``cut`` between segments [start, cut) and [cut, end) of a compressed series.

    The jump is measured within the adjacent segments (at most ``window`` points each side). First, is
    there a slope? Theil-Sen over pairs on the same side of the cut, within ``window`` points each
    side whatever the neighbouring candidates (on a trend they are steps of the same staircase, and a
    slope fitted between them is biased towards 0: the segmentation chose them to be flat). With a
    slope significant at ``SLOPE_MIN_Z`` the jump is the difference of the two sides' median residuals
    from a common slope (fitted within the segments, as above), its standard error including the
    slope's; otherwise it is the difference of the two sides' medians: fitting a slope that is not
    there costs a step most of its z, and on autocorrelated noise a step and a slope are hard to tell
    apart. ``trend``: the series as a whole has a slope (:func:`_segments_slope_z`); measure against one.
    """
    n = y.size
    wlo, whi = max(0, cut - window), min(n, cut + window)
    wlt, wrt = t[wlo:cut], t[cut:whi]
    pre = _theil_sen_common_slope(wlt, y[wlo:cut], wrt, y[cut:whi])
    wsxx = float(((wlt - wlt.mean()) ** 2).sum() + ((wrt - wrt.mean()) ** 2).sum())
    sloped = trend or (wsxx > 0 and sigma > 0 and abs(pre) * math.sqrt(wsxx) / sigma >= SLOPE_MIN_Z)
    lo, hi = max(start, cut - window), min(end, cut + window)
    lt, ly, rt, ry = t[lo:cut], y[lo:cut], t[cut:hi], y[cut:hi]
    var = (math.pi / 2) * (1 / lt.size + 1 / rt.size)  # each side's median: efficiency 2/pi of a mean
    if sloped:
        slope = _theil_sen_common_slope(lt, ly, rt, ry)
        jump = float(np.median(ry - slope * rt) - np.median(ly - slope * lt))
        # plus the slope's error (variance ~ sigma^2 / Sxx within sides) times the distance between
        # the two sides' centres
        sxx = float(((lt - lt.mean()) ** 2).sum() + ((rt - rt.mean()) ** 2).sum())
        if sxx > 0:
            var += (rt.mean() - lt.mean()) ** 2 / sxx
    else:
        jump = float(np.median(ry) - np.median(ly))
    se = sigma * math.sqrt(var)
    if se <= 0:
        return jump, (math.inf if jump else 0.0)
    return jump, jump / se


def _confirm_jumps(t: np.ndarray, y: np.ndarray, cuts: list[int], window: int, sigma: float,
                   min_jump_z: float) -> tuple[list[int], list[tuple[float, float]]]:
    """Drop, weakest first, candidates whose trend-adjusted jump is below min_jump_z."""
    cuts = list(cuts)
    while True:
        bounds = [0, *cuts, y.size]
        trend = bool(cuts) and _segments_slope_z(t, y, cuts, sigma) >= TREND_MIN_Z
        jumps = [_jump(t, y, bounds[k], bounds[k + 1], bounds[k + 2], window, sigma, trend)
                 for k in range(len(cuts))]
        weak = [k for k, (_, z) in enumerate(jumps) if abs(z) < min_jump_z]
        if not weak:
            return cuts, jumps
        del cuts[min(weak, key=lambda k: abs(jumps[k][1]))]


@dataclass(frozen=True)
class ChangePoint:
    """A change of level starting at ``index`` (the first day of the new segment).

    ``mean_before`` / ``mean_after`` are means of the raw values over the adjacent segments (from the
    previous change point, to the next one); ``shift = mean_after - mean_before``; ``relative_shift =
    shift / |mean_before|`` (None when mean_before is 0). ``jump`` is the trend-adjusted step at the
    boundary on the segmented values (deseasonalized when the weekly profile is significant) and
    ``jump_z`` its size in standard errors of the long-run sigma (both None when ``trend_aware`` is off).
    """

    index: int
    date: Any
    mean_before: float
    mean_after: float
    shift: float
    relative_shift: float | None
    jump: float | None
    jump_z: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def detect_change_points(values: Sequence[float] | np.ndarray, *, min_size: int = DEFAULT_MIN_SIZE,
                         penalty: float | None = None, penalty_k: float = DEFAULT_PENALTY_K,
                         period: int | None = DEFAULT_PERIOD, trend_aware: bool = True,
                         min_jump_z: float = DEFAULT_MIN_JUMP_Z,
                         jump_window: int = DEFAULT_JUMP_WINDOW) -> list[int]:
    """Indices (positions in ``values``) where a new segment starts, in increasing order.

    ``values`` are consecutive days (NaN for a missing day). Defaults: PELT, L2 cost, ``min_size=5``,
    ``penalty = penalty_k * s^2 * log(n)`` with ``penalty_k=3`` and s the long-run sigma of
    :func:`noise_scale` (an explicit ``penalty`` overrides it), weekly deseasonalization when the
    profile is significant (``period=7``; None turns it off), trend-aware confirmation with
    ``min_jump_z=3.0`` over ``jump_window=28`` points each side. Fewer than ``2 * min_size`` finite
    values: no change point.
    """
    return [cp.index for cp in find_change_points(
        values, min_size=min_size, penalty=penalty, penalty_k=penalty_k, period=period,
        trend_aware=trend_aware, min_jump_z=min_jump_z, jump_window=jump_window)]


def find_change_points(values: Sequence[float] | np.ndarray, dates: Sequence[Any] | None = None, *,
                       min_size: int = DEFAULT_MIN_SIZE, penalty: float | None = None,
                       penalty_k: float = DEFAULT_PENALTY_K, period: int | None = DEFAULT_PERIOD,
                       trend_aware: bool = True, min_jump_z: float = DEFAULT_MIN_JUMP_Z,
                       jump_window: int = DEFAULT_JUMP_WINDOW) -> list[ChangePoint]:
    """:func:`detect_change_points` with, for each change point, its date (``dates[index]`` when dates
    are given) and the size of the level shift (see :class:`ChangePoint`)."""
    if dates is not None and len(dates) != len(values):
        raise ValueError(f"DETECTION_LENGTH: {len(dates)} dates for {len(values)} values")
    if min_size < 2:
        raise ValueError(f"DETECTION_MIN_SIZE: min_size must be at least 2, got {min_size}")
    pos, raw = _finite(values)
    if raw.size < 2 * min_size:
        return []
    y, noise = _deseasonalized(raw, pos, period)
    sigma = noise.long_run
    explicit_penalty = penalty
    if penalty is None:
        if sigma == 0.0:
            # noise-free data has no scale; a tiny share of the level, so that exact repeats never cut
            sigma = 1e-6 * max(1.0, float(np.median(np.abs(y))))
        penalty = penalty_k * sigma**2 * math.log(y.size)
    cuts = _pelt(y, min_size, penalty)
    if explicit_penalty is None and cuts and len(cuts) * SECOND_PASS_SEGMENT <= y.size:
        # second pass: the noise read without the differences across the first pass's candidates
        inner = noise_scale(y, cuts=cuts)
        if 0 < inner.long_run < sigma:
            sigma = inner.long_run
            penalty = penalty_k * sigma**2 * math.log(y.size)
            cuts = _pelt(y, min_size, penalty)
    jumps = None
    if trend_aware:
        cuts, jumps = _confirm_jumps(pos.astype(float), y, cuts, jump_window, max(sigma, 1e-12), min_jump_z)
    bounds = [0, *cuts, raw.size]
    out = []
    for k, cut in enumerate(cuts):
        before = float(raw[bounds[k]:cut].mean())
        after = float(raw[cut:bounds[k + 2]].mean())
        shift = after - before
        index = int(pos[cut])
        out.append(ChangePoint(
            index=index,
            date=dates[index] if dates is not None else None,
            mean_before=before,
            mean_after=after,
            shift=shift,
            relative_shift=shift / abs(before) if before != 0 else None,
            jump=jumps[k][0] if jumps is not None else None,
            jump_z=jumps[k][1] if jumps is not None else None,
        ))
    return out
