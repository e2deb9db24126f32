"""Anomalies in a daily series, judged as of each day from that day's past only; and false-discovery
control over a day's scan of many series.

**Baseline** (analytics-methods.md §2d "seasonality mask", §2f "STL + robust z", §3.7). Each day is
compared with a forecast built only from the days before it. No look-ahead: changing a later value
never changes an earlier decision (a test checks it), so a backfill says what a daily run would have
said. From the last ``window`` = 56 days of the current regime (see below):

- weekly profile (:func:`~hitcraft_assets.detection.changepoints.weekly_profile`): classical
  decomposition with medians. A centred 7-day moving average gives the level, and each weekday's
  effect is the median of value / level over the window (its same-weekday values of the last 8 weeks).
  It is multiplicative for non-negative series, so a weekend dip of 30% stays 30% after growth or a
  level shift; additive otherwise. The moving level keeps a trend or a shift inside the window out of
  the weekday effects. The profile is used only when it is significant
  (:func:`~hitcraft_assets.detection.changepoints.weekly_is_significant`: its effects against the
  window's noise, chi-square at p < 0.01, once every weekday has two values; on counts the noise is at
  least Poisson's). Otherwise the baseline is flat and the noise is that of the raw window: a profile
  estimated from counts of 1.6 a day swings the expected value from 0.4 to 4.1, and a day of 14 was
  flagged in 83% of simulated series with it, 96% without;
- level: the median of the last ``level_days`` = 7 deseasonalized values (one of each weekday),
  projected to the day along a drift, the Theil-Sen slope of the last ``trend_days`` = 28
  deseasonalized values (``drift=True``). Without the drift a median lags a growing metric by half a
  week: on simulated 0.5%/day growth, 16.5% of series got an alert instead of 7.5%;
- expected = the level on the day times (or plus) the day's weekday effect.

**Scale**: the noise sigma of the deseasonalized window from first differences, 1.4826 * MAD(diff) /
sqrt(2) (:func:`~hitcraft_assets.detection.changepoints.robust_sigma`: spikes and slow trends do not
inflate it), times the weekday factor (multiplicative profiles), floored at
``max(min_scale, min_rel_scale * |expected|)`` (2% by default: a perfectly flat series cannot make a
0.1% wobble infinitely anomalous), then widened twice:

- for the forecast's own error: ``sqrt(1 + pi/2 * (1/n_level + 1/n_weekday) + 12 h^2 / (m^3 - m))``
  (medians of ``n`` points have variance ``pi/2 * sigma^2 / n``; a slope from ``m`` points extrapolated
  ``h`` days adds the last term). With only two weeks of history this is about 1.4;
- for the uncertainty of the MAD itself (``t_correction=True``): by the ratio of the Student-t to the
  normal critical value at the threshold's tail probability, with ``0.37 * (n - 1)`` degrees of
  freedom (the MAD's Gaussian efficiency is 37%). The MAD of 55 differences is off by 15% often enough
  that, without this, 33-34% of pure-noise 90-day series got a false alert (simulated); with it, 4%,
  about the nominal rate of a 3.5-sigma two-sided threshold over 76 judged days.

**Weights** (``assess_series(..., weights=)``): the observations behind each value, the sessions
behind a median session length. A value of weight w has noise sigma / sqrt(w): sigma is estimated from
first differences each divided by its own sqrt(1/w_t + 1/w_t-1), the day's scale is sigma / sqrt(w) and
the level's error uses the level days' own weights. The same median of 44 s against 167 s expected is
flagged from 20 sessions, not from 2; on simulated small shops (8 sessions a weekday, 4 on weekends) 11%
of quiet series get an alert instead of 19% unweighted. The weekly profile's significance test counts
each weekday's effect as count / mean(1 / w) of its days (one session's median on a Sunday is not a Sunday
effect). Without weights every value has weight 1. On the log scale (``log_scale=True``) weekday effects
are additive, factors in the original units.

``score`` is the robust z = (observed - expected) / scale; the band is expected +- ``threshold``
(3.5) * scale; ``p_value`` is the normal tail of the score (one-sided for ``direction`` 'up'/'down').

**Counts** (``counts=True``): Poisson noise is skewed and, at small means, mostly discreteness; a plain
robust z on a 3-a-day series alerted on 63% of simulated Poisson(3) series. With ``counts=True`` the
whole computation runs on the Anscombe transform ``2 * sqrt(x + 3/8)``, on which Poisson noise has
unit variance, with a scale floor of 1 there: the Poisson-aware floor, the scale is never below what
Poisson noise alone produces (the ``max(MAD scale, sqrt(expected))`` idea, on a scale where it holds at
small means too). Expected values and bands are transformed back, so bands are asymmetric and never
below 0. Poisson(3) and Poisson(30) series: 0 of 200 alerted; a jump from 3 to 25 is alerted. Use it
for every count (events, users, sessions); without it Poisson(30) alerts on 23% of series. Below
``EXACT_COUNT_MEAN`` (30) a day is judged by its exact negative-binomial tail (:func:`exact_count_z`), and
a low count with a flat baseline (no weekly profile, a drift below one noise sigma over ``trend_days``) is
forecast by the mean of its last ``trend_days`` values (its error 1/n of the noise variance), not by the
median of 7 integers: a day of 18 on Poisson(5) is flagged in 49% of simulated series instead of 1.5%.
The band of such a day is its exact test's (:func:`exact_count_band`): a flagged day lies outside it.

**Guards** (the complaints of §3):

- ``min_volume`` (§3.4): a day whose expected value (original units) is below it is never flagged.
  This also keeps quiet a series that jumps *from* below ``min_volume``.
- ``direction`` = 'both' | 'up' | 'down' (§3.3): one-sided alerting. It filters alerts only; the
  baseline still learns from moves in the other direction (status ``direction_filtered``).
- ``min_history`` (14): no alert before a series has ``min_history`` days of data (days before its first
  value, or missing, do not count).
- One alert per level shift, not thirty (§3.5, §3.6). An alert opens an *episode*. While the next days
  stay on the same side of the pre-episode baseline, beyond ``hysteresis`` * threshold (half: a
  hysteresis against flapping), they are ``continuation`` days, not new alerts, unless they also
  deviate beyond the threshold, the same way, from the episode's own level (a drop that gets worse is
  alerted again, and the episode's level restarts there). An episode that lasts
  ``shift_confirm_days`` (7) is a level shift: a new regime starts at the episode's level, and from
  then on the baseline uses only post-change data, the level at once, the weekly profile, scale and
  drift once the regime has ``min_history`` days (until then the pre-change weekly profile and noise,
  the noise rescaled to the new level for multiplicative profiles, and no drift). An episode that ends sooner was a transient anomaly: its days are left out of all later
  baselines, so a 5-day campaign spike is one alert and its end is not a "drop". This online rule is
  the causal counterpart of :mod:`~hitcraft_assets.detection.changepoints`, which sees the whole
  series and therefore cannot be used day by day without looking ahead.

What the defaults do on 90 simulated days (200 series each, 3% noise, weekends 30% lower, seeded):
pure noise or weekly seasonality 4% of series with any alert; 0.5%/day growth 7.5%; a 40% step, a 50%
spike or a 5-day tripling: alerted on its first day in 100%, with about 1.03 alerts per series; a
one-day spike of 12% / 15% / 20% (4 / 5 / 6.7 sigma) alerted in 35% / 64% / 88%. Judging all 90
days of a series takes about 20 ms.

**False discovery control** (§2h): :func:`fdr_decision` turns one day's robust z-scores (or p-values)
across all scanned series into Benjamini-Hochberg decisions (two-sided or one-sided), and reports how
many series were tested and flagged. The normal p-value of a robust z is approximate (the scale is
estimated), so treat q-values as a ranking with a sensible cut, not as exact error rates.

Public: :class:`AnomalyOptions`, :class:`PointAssessment`, :func:`assess_series`,
:func:`assess_latest`, :func:`detect_anomalies`, :func:`z_to_p_value`, :class:`FdrDecision`,
:func:`fdr_decision`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np

from hitcraft_assets.detection.changepoints import (
    WeeklyProfile,
    mad_scale,
    median,
    robust_sigma,
    trimmed_var,
    weekly_is_significant,
    weekly_profile,
)
from hitcraft_assets.detection.trends import sens_slope
from hitcraft_assets.lazy import lazy

special = lazy("scipy.special")
sps = lazy("scipy.stats")

DIRECTIONS = ("both", "up", "down")
EXACT_COUNT_MEAN = 30.0   # counts expected below this are judged by their exact negative-binomial tail
MAD_EFFICIENCY = 0.3675  # asymptotic Gaussian efficiency of the MAD: n points estimate sigma like 0.37 n

# PointAssessment.status values
MISSING = "missing"                    # no observation that day
WARMING_UP = "warming_up"              # fewer than min_history days of history
NORMAL = "normal"
ANOMALY = "anomaly"                    # flagged
CONTINUATION = "continuation"          # beyond the band, but part of an episode already alerted
DIRECTION_FILTERED = "direction_filtered"  # anomalous, in the direction the caller does not alert on
BELOW_MIN_VOLUME = "below_min_volume"  # anomalous, but the expected value is below min_volume


@dataclass(frozen=True)
class AnomalyOptions:
    """Options of :func:`assess_series` / :func:`detect_anomalies` (see the module docstring).

    threshold: |robust z| above which a day is anomalous (3.5; §2f suggests 3-3.5).
    direction: 'both', 'up' or 'down': which anomalies are alerted.
    counts: the values are counts (Poisson-aware scale on the Anscombe transform).
    min_volume: a day whose expected value is below this is never flagged (0: off).
    min_history: days at the start of a series that are never flagged; also the days a new regime needs
        before its own weekly profile and scale are used.
    window: days of history the weekly profile and scale are estimated from (8 weeks).
    level_days: recent days the level is the median of (one week).
    shift_confirm_days: days an episode must last to become a level shift (a new regime).
    hysteresis: an episode continues while the deviation from the pre-episode baseline stays beyond
        hysteresis * threshold, in the episode's direction.
    min_rel_scale: floor of the scale as a share of |expected| (2%).
    min_scale: absolute floor of the scale, in the series' units (0).
    drift: follow a trend (Theil-Sen slope) instead of a flat level.
    trend_days: recent days the drift is estimated from (4 weeks).
    t_correction: widen the scale for the uncertainty of the MAD (Student-t critical values).
    log_scale: judge ``log(1 + x)`` (non-negative means and medians of skewed per-session values: a
        duration, events per session), where their noise is about symmetric.
    """

    threshold: float = 3.5
    direction: str = "both"
    counts: bool = False
    min_volume: float = 0.0
    min_history: int = 14
    window: int = 56
    level_days: int = 7
    shift_confirm_days: int = 7
    hysteresis: float = 0.5
    min_rel_scale: float = 0.02
    min_scale: float = 0.0
    drift: bool = True
    trend_days: int = 28
    t_correction: bool = True
    log_scale: bool = False

    def __post_init__(self) -> None:
        if self.trend_days < 2:
            raise ValueError(f"DETECTION_TREND_DAYS: trend_days must be at least 2, got {self.trend_days}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"DETECTION_DIRECTION: direction must be one of {DIRECTIONS}, "
                             f"got {self.direction!r}")
        if not self.threshold > 0:
            raise ValueError(f"DETECTION_THRESHOLD: threshold must be positive, got {self.threshold}")
        if self.min_history < 3:
            raise ValueError(f"DETECTION_MIN_HISTORY: min_history must be at least 3, got {self.min_history}")
        if self.window < self.min_history or self.level_days < 1 or self.shift_confirm_days < 1:
            raise ValueError("DETECTION_WINDOW: need window >= min_history, level_days >= 1 and "
                             "shift_confirm_days >= 1")
        if not 0 <= self.hysteresis <= 1:
            raise ValueError(f"DETECTION_HYSTERESIS: hysteresis must be within [0, 1], got {self.hysteresis}")
        if self.counts and self.log_scale:
            raise ValueError("DETECTION_SCALE: counts and log_scale exclude each other")
        if self.min_rel_scale < 0 or self.min_scale < 0 or self.min_volume < 0:
            raise ValueError("DETECTION_FLOOR: min_rel_scale, min_scale and min_volume must be >= 0")


@dataclass(frozen=True)
class PointAssessment:
    """One day's judgement. ``expected``/``lower``/``upper``/``score``/``p_value`` are None on days that
    were not evaluated (missing, warming up). ``score`` is the signed robust z against the baseline the
    day was judged by; ``p_value`` is its normal tail probability, one-sided when ``direction`` is
    'up' or 'down'. ``flagged`` is True exactly when ``status == 'anomaly'``. ``window_days``: the days
    ``observed`` pools (1; a conversion judged on few entrants a day pools 3 or 7, see rates.py)."""

    date: Any
    observed: float | None
    expected: float | None
    lower: float | None
    upper: float | None
    score: float | None
    p_value: float | None
    direction: str | None
    flagged: bool
    status: str
    window_days: int = 1

    def as_anomaly(self) -> dict[str, Any]:
        """The detect_anomalies row: date, observed, expected, lower, upper, score, direction."""
        return {k: getattr(self, k) for k in ("date", "observed", "expected", "lower", "upper", "score",
                                               "direction")}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Profile:
    """What a baseline window says about the shape of a series (working units): its weekly profile,
    the noise sigma of its deseasonalized values and that sigma's effective degrees of freedom, and its
    drift (Theil-Sen slope per day over the last ``trend_days`` points;
    ``trend_n`` = 0 when no slope is used). ``seasonal`` is False when the window's weekly effects
    were not significant and ``season`` is flat (no weekday effect is estimated, so none adds error)."""

    season: WeeklyProfile
    sigma: float
    df: float
    slope: float
    trend_n: int
    seasonal: bool = True


@dataclass(frozen=True)
class _Baseline:
    """A profile plus a level: the deseasonalized level on day t is ``intercept + slope * t``."""

    profile: _Profile
    intercept: float
    n_level: int
    level_centre: float  # mean day number of the level points (the drift is extrapolated from there)
    level_inv_w: float = 1.0   # mean 1 / weight of the level points (1 without weights)
    rate: float = math.nan     # the mean of the rate days (original units; counts)
    rate_n: int = 0


@dataclass(frozen=True)
class _Forecast:
    expected: float  # working units
    scale: float     # working units
    spread: float = 1.0   # the scale without the MAD's t-correction: the forecast's noise (exact count tests)
    mean_level: bool = False   # a low count's level is its window's mean (see _Series.forecast)


@dataclass
class _Episode:
    start: int             # first day (masked if the episode ends unconfirmed)
    anchor: int            # first day of the episode's current level (restarts on a re-alert)
    sign: int              # +1 up, -1 down
    baseline: _Baseline    # the pre-episode baseline


def _day_numbers(dates: Sequence[Any]) -> np.ndarray:
    days = np.asarray(dates, dtype="datetime64[D]")
    if days.ndim != 1:
        raise ValueError("DETECTION_DATES: dates must be one-dimensional")
    numbers = days.astype(np.int64)
    if numbers.size > 1 and not (np.diff(numbers) > 0).all():
        raise ValueError("DETECTION_DATES: dates must be strictly increasing")
    return numbers


def _anscombe(x: np.ndarray) -> np.ndarray:
    return 2.0 * np.sqrt(x + 0.375)


def _inverse_anscombe(y: float) -> float:
    return max(y / 2.0, math.sqrt(0.375)) ** 2 - 0.375


@lru_cache(maxsize=1024)
def _t_factor(threshold: float, df: float) -> float:
    """Student-t over normal critical value at the threshold's tail probability (>= 1)."""
    return float(sps.t.isf(sps.norm.sf(threshold), df) / threshold)


def _weighted_sigma(des: np.ndarray, inv_w: np.ndarray) -> float:
    """The noise sigma of a value of weight 1 when a value of weight w has sigma / sqrt(w): from first
    differences, each divided by its own standard deviation, sqrt(1/w_t + 1/w_{t-1}) (with equal weights,
    :func:`robust_sigma`)."""
    if des.size < 3:
        return 0.0
    if (inv_w == 1.0).all():
        return robust_sigma(des)
    return mad_scale(np.diff(des) / np.sqrt(inv_w[1:] + inv_w[:-1]))


def _count_sigma(des: np.ndarray) -> float:
    """The noise sigma of a count on the Anscombe scale: the larger of the MAD's and the trimmed variance's
    (the mean of the smallest 80% of squared first differences, rescaled). A count of events is a sum over
    users (a user views 1-12 products), so its days have heavier tails than Gaussian noise, which the MAD
    does not see: on simulated series of 3.5 users a day, a segment's quiet product views got 0.17 alerts per
    series per 30 days with the MAD alone, mostly drops to 0 or 1, and 0.07 with this; Poisson counts of 0.3 to
    40 a day keep their 0-0.004, and 2 -> 18 is still flagged in 100 of 100 series."""
    if des.size < 3:
        return 0.0
    d = np.diff(des)    # the days of a baseline window: all finite
    return max(mad_scale(d), math.sqrt(trimmed_var(d))) / math.sqrt(2.0)


class _Series:
    """A series in working units (Anscombe for counts) with the estimators the day loop needs. With
    ``weights`` (the observations behind each value: the sessions behind a median session length), the
    noise of a day is sigma / sqrt(weight), sigma that of one observation."""

    def __init__(self, dates: Sequence[Any], values: Sequence[float] | np.ndarray, opts: AnomalyOptions,
                 weights: Sequence[float] | np.ndarray | None = None):
        x = np.asarray(values, dtype=float)
        if x.ndim != 1 or len(dates) != x.size:
            raise ValueError(f"DETECTION_LENGTH: {len(dates)} dates for {x.size} values")
        self.x = x
        self.valid = np.isfinite(x)
        self.inv_w = np.ones(x.size)
        if weights is not None:
            w = np.asarray(weights, dtype=float)
            if w.shape != x.shape:
                raise ValueError(f"DETECTION_WEIGHTS: {w.size} weights for {x.size} values")
            ok = np.isfinite(w) & (w > 0)
            self.valid &= ok           # a value with no observations behind it is not a data point
            self.inv_w[ok] = 1.0 / w[ok]
        if (opts.counts or opts.log_scale) and (x[self.valid] < 0).any():
            raise ValueError("DETECTION_COUNTS: counts=True and log_scale=True need non-negative values")
        if opts.counts:
            self.y = _anscombe(np.where(self.valid, x, 0.0))
        elif opts.log_scale:
            self.y = np.log1p(np.where(self.valid, x, 0.0))
        else:
            self.y = x
        self.t = _day_numbers(dates)
        self.opts = opts

    def original(self, y: float) -> float:
        if self.opts.counts:
            return _inverse_anscombe(y)
        return float(np.expm1(y)) if self.opts.log_scale else y

    def profile(self, idx: np.ndarray) -> _Profile:
        """The profile of the days ``idx`` (the baseline window)."""
        y, t = self.y[idx], self.t[idx]
        inv_w = self.inv_w[idx]
        # on the log scale a weekday effect is additive (a factor in the original units): a factor on
        # log-values multiplies the original by e^(effect x level), and a 0.72 on log(300 s) forecast 60 s
        season = weekly_profile(y, t, mode="additive" if self.opts.log_scale else "auto")
        des = season.remove(y, t)
        noise_sigma = _count_sigma if self.opts.counts else (lambda d: _weighted_sigma(d, inv_w))
        sigma, seasonal = noise_sigma(des), True
        # a weekly profile estimated from noise (a count of 1.6 a day) swings the expected value as much
        # as the noise does; it is used only when it is significant, once every weekday has 2 values
        test, test_sigma = season, (max(sigma, 1.0) if self.opts.counts else sigma)
        if not self.opts.counts and (inv_w != 1.0).any():
            # with weights, a weekday's effect is as noisy as its own days: one session's median on a
            # Sunday is not a Sunday effect. Each effect counts as count / mean(1 / w) values of weight 1
            phase = (t % season.period).astype(np.int64)
            per = np.bincount(phase, weights=inv_w, minlength=season.period)
            n_per = np.bincount(phase, minlength=season.period)
            mean_inv_w = np.where(n_per > 0, per / np.maximum(n_per, 1), 1.0)
            test = replace(season, counts=season.counts / mean_inv_w)
        if (season.counts.min() >= 2 and test_sigma > 0
                and not weekly_is_significant(test, median(np.abs(y)), test_sigma, min_weeks=2)):
            neutral = np.ones(season.period) if season.mode == "multiplicative" else np.zeros(season.period)
            season = WeeklyProfile(season.mode, neutral, season.counts, season.period)
            des, sigma, seasonal = y, noise_sigma(y), False
        slope, trend_n = 0.0, 0
        if self.opts.drift and idx.size >= self.opts.min_history:
            tail = slice(-self.opts.trend_days, None)
            slope, trend_n = sens_slope(des[tail], t[tail])[0], des[tail].size
        df = max(MAD_EFFICIENCY * (idx.size - 1), 1.0)
        return _Profile(season, sigma, df, slope, trend_n, seasonal)

    def baseline(self, profile: _Profile, idx: np.ndarray, rate_idx: np.ndarray | None = None) -> _Baseline:
        """``profile`` with the level of the days ``idx`` (each projected along the drift); for counts, also
        the mean of the days ``rate_idx`` (default ``idx``), the level of a low flat count."""
        t = self.t[idx].astype(float)
        des = profile.season.remove(self.y[idx], self.t[idx])
        rate_idx = idx if rate_idx is None else rate_idx
        rate = count_rate(self.x[rate_idx]) if self.opts.counts and rate_idx.size else math.nan
        return _Baseline(profile, median(des - profile.slope * t), idx.size, float(t.mean()),
                         float(self.inv_w[idx].mean()), rate, int(rate_idx.size) if self.opts.counts else 0)

    def _mean_level(self, b: _Baseline) -> bool:
        """A low count with a flat baseline (no weekly profile, a drift of less than one noise sigma over
        ``trend_days``) is forecast by the mean of its last ``trend_days`` values: for Poisson counts the
        mean of 28 days has a variance of mu / 28, a median of 7 integers about pi/2 * mu / 7, and a
        median of 3, 1, 2, 2, 3, 3, 5 is 3 where the rate is 2.3."""
        p = b.profile
        return (self.opts.counts and b.rate_n >= 1 and not p.seasonal and b.rate < EXACT_COUNT_MEAN
                and abs(p.slope) * self.opts.trend_days < max(p.sigma, 1.0))

    def forecast(self, b: _Baseline, i: int) -> _Forecast:
        opts, p = self.opts, b.profile
        day = int(self.t[i])
        phase = day % p.season.period
        if self._mean_level(b):
            expected = float(_anscombe(np.float64(b.rate)))
            floor = max(1.0, opts.min_scale / math.sqrt(b.rate + 0.375))
            spread = max(p.sigma, floor) * math.sqrt(1.0 + 1.0 / b.rate_n)
            t_factor = _t_factor(opts.threshold, p.df) if opts.t_correction else 1.0
            return _Forecast(expected, spread * t_factor, spread, mean_level=True)
        expected = p.season.apply(b.intercept + p.slope * day, day)
        noise = (p.sigma * math.sqrt(float(self.inv_w[i]))
                 * (p.season.effects[phase] if p.season.mode == "multiplicative" else 1.0))
        floor_x = max(opts.min_scale, opts.min_rel_scale * abs(self.original(expected)))
        if opts.counts:
            # the original-units floor seen on the Anscombe scale (dy/dx = 1/sqrt(x + 3/8)), and never
            # below 1, the standard deviation of Poisson noise there
            floor = max(1.0, floor_x / math.sqrt(max(self.original(expected), 0.0) + 0.375))
        elif opts.log_scale:
            # the original-units floor seen on the log scale (dy/dx = 1 / (1 + x)); and a score stays within
            # 1 / min_rel_scale (50) there too: 0 s for weeks, then 324 s, is not a 289-sigma event
            gap = abs(float(self.y[i]) - expected) if self.valid[i] else 0.0
            floor = max(floor_x / (1.0 + max(self.original(expected), 0.0)), opts.min_rel_scale * gap, 1e-12)
        else:
            # never a zero scale: a flat history (a median of 0 s, a constant ratio) gets the relative floor of
            # the day's own value too, so a score stays within 1 / min_rel_scale (50) of what data can show
            observed = abs(float(self.x[i])) if self.valid[i] else 0.0
            floor = max(floor_x, opts.min_rel_scale * observed, 1e-12)
        # the expected value's own error, relative to the noise variance: medians of n points have
        # variance (pi/2) sigma^2 / n; a slope from m points, extrapolated h days, 12 h^2 / (m^3 - m)
        n_wd = int(p.season.counts[phase])
        # with weights, the level's points have their own noise (mean 1/w of them) and the day its own
        level_var = b.level_inv_w / float(self.inv_w[i]) / b.n_level
        var = (math.pi / 2) * (level_var + ((1.0 / n_wd if n_wd else 1.0) if p.seasonal else 0.0))
        if p.trend_n >= 3:
            h = float(self.t[i]) - b.level_centre
            var += 12.0 * h * h / (p.trend_n**3 - p.trend_n)
        t_factor = _t_factor(opts.threshold, p.df) if opts.t_correction else 1.0
        spread = max(noise, floor) * math.sqrt(1.0 + var)
        return _Forecast(expected, spread * t_factor, spread)

    def exact_mean(self, i: int, fc: _Forecast) -> float | None:
        """The mean a low count's exact tail is taken at (None: the day is judged by its robust z)."""
        if not self.opts.counts:
            return None
        mu = self.original(fc.expected)
        if fc.mean_level:
            return mu
        if mu < EXACT_COUNT_MEAN:
            # a median level of mostly-zero days is 0; the recent mean rate is what the count is tested at
            rate = count_rate(self.x[max(0, i - 28):i])      # NaN without a finite day
            return max(mu, rate if math.isfinite(rate) else 0.0)
        return None

    def z(self, i: int, fc: _Forecast, mu: float | None = None) -> float:
        """The day's score; ``mu``: its :meth:`exact_mean`, when the caller has it already."""
        mu = self.exact_mean(i, fc) if mu is None else mu
        if mu is not None:
            return exact_count_z(float(self.x[i]), mu, fc.spread)
        return float((self.y[i] - fc.expected) / fc.scale)

    def assessment(self, i: int, date: Any, fc: _Forecast, status: str) -> PointAssessment:
        opts = self.opts
        mu = self.exact_mean(i, fc)
        z = self.z(i, fc, mu)
        half = opts.threshold * fc.scale
        lower, upper = self.original(fc.expected - half), self.original(fc.expected + half)
        if mu is not None:
            # the band of the test that judged the day: a low count outside it is what its exact tail flags
            lower, upper = exact_count_band(mu, fc.spread, opts.threshold)
        if opts.counts or opts.log_scale:
            lower = max(lower, 0.0)
        return PointAssessment(
            date=date,
            observed=float(self.x[i]),
            expected=self.original(fc.expected),
            lower=lower,
            upper=upper,
            score=z,
            p_value=float(z_to_p_value(z, opts.direction)),
            direction="up" if z > 0 else "down",
            flagged=status == ANOMALY,
            status=status,
        )

    def alert_status(self, fc: _Forecast, sign: int) -> str:
        """ANOMALY, or why an anomalous day is not alerted."""
        opts = self.opts
        if opts.min_volume > 0 and self.original(fc.expected) < opts.min_volume:
            return BELOW_MIN_VOLUME
        if opts.direction != "both" and opts.direction != ("up" if sign > 0 else "down"):
            return DIRECTION_FILTERED
        return ANOMALY


def count_rate(counts: np.ndarray) -> float:
    """The daily rate of a count from its days: (total + 1/2) / days, the posterior mean under Jeffreys'
    prior, not the plain mean. 28 days of zeros do not make a rate of 0 (the exact test would then call a
    single event a one-in-a-million day): they make 1/56, and with the forecast's variance of
    rate * (1 + 1/days) the test's negative binomial is then that posterior's predictive, under which 1
    event has a tail of 1.7%, 2 of 0.05% (not flagged at 3.5 sigma) and 3 of 0.001%. Above a few events
    the half makes no difference."""
    x = np.asarray(counts, dtype=float)
    x = x[np.isfinite(x)]
    return (float(x.sum()) + 0.5) / x.size if x.size else math.nan


def _negative_binomial(mu: float, scale: float) -> tuple[float, float]:
    """(n, p) of the negative binomial of mean ``mu`` and variance ``scale**2 * mu`` (at least Poisson's)."""
    phi = max(scale * scale, 1.0 + 1e-9)
    mu = max(mu, 1e-6)
    return mu / (phi - 1.0), 1.0 / phi


def exact_count_band(mu: float, scale: float, threshold: float) -> tuple[float, float]:
    """The counts a low count's exact test at ``threshold`` accepts, as (lowest, highest): the negative
    binomial's quantiles at the threshold's normal tail probability. A day is flagged up when it is above
    the highest (its upper tail is below that probability), so an insight's "usual high" is never above a
    flagged value."""
    n, p = _negative_binomial(mu, scale)
    tail = float(special.ndtr(-threshold))
    # scipy's nbinom.ppf / isf, found by stepping from the normal approximation with the tails that
    # exact_count_z uses (14 us a band instead of 142; every judged day of every low count has one)
    sd = math.sqrt(max(mu, 1e-6) / p)

    def above(x: int) -> float:       # P(X > x)
        return float(special.betainc(x + 1, n, 1.0 - p))

    def at_most(x: int) -> float:     # P(X <= x)
        return float(special.betainc(n, x + 1, p))

    high = max(0, math.floor(mu + threshold * sd))
    while above(high) > tail:
        high += 1
    while high > 0 and above(high - 1) <= tail:
        high -= 1
    low = max(0, math.floor(mu - threshold * sd))
    while low > 0 and at_most(low - 1) >= tail:
        low -= 1
    while at_most(low) < tail:
        low += 1
    return float(low), float(high)


def exact_count_z(k: float, mu: float, scale: float) -> float:
    """The normal score of a count's exact tail: ``k`` against a negative binomial of mean ``mu`` whose
    variance is ``scale**2 * mu`` (``scale`` is the forecast's scale on the Anscombe scale, where Poisson noise
    has unit variance, so ``scale**2`` is the overdispersion the history shows, widened for the forecast's
    own error). Low counts are discrete and skewed: at scale 1, 2 -> 18 in a day has a tail below 1e-8 and
    scores about 6.8, 0.3 -> 2 under 2, where the normal approximation would call the first unremarkable."""
    n, p = _negative_binomial(mu, scale)         # NB(n, p): mean n(1-p)/p = mu, variance mu * phi
    k = max(round(k), 0)
    if k > mu:
        tail = float(special.betainc(k, n, 1.0 - p))          # P(X >= k)
        return max(0.0, float(-special.ndtri(max(tail, 1e-300))))
    tail = float(special.betainc(n, k + 1, p))                # P(X <= k)
    return min(0.0, float(special.ndtri(max(tail, 1e-300))))


@dataclass
class WalkState:
    """Where :func:`assess_series` stopped: everything its day loop carries from one day to the next (the
    days a baseline may use, the regime, the open episode), after judging the days before ``next_index``,
    and the last ``TAIL_POINTS`` judgements (an episode's start is found by walking back over them). Given
    the same values up to ``next_index``, a walk resumed from it judges every later day exactly as a walk
    from the start does."""

    next_index: int
    usable: np.ndarray           # the first next_index days: may a baseline use them
    regime_start: int
    regime_ref: _Baseline | None
    episode: _Episode | None
    tail: list[PointAssessment]  # the judgements of the days just before next_index


TAIL_POINTS = 28                 # judgements a WalkState keeps (a lookback's days and their episodes' starts)
NOT_RECOMPUTED = "not_recomputed"  # a day before a resumed walk's tail: judged by an earlier run


def resumed_points(dates: Sequence[Any], next_index: int, tail: Sequence[PointAssessment]) -> list[PointAssessment]:
    """The judgements a walk resumed at `next_index` starts from: `not_recomputed` for the days before the
    stored tail, then the tail. Raises DETECTION_RESUME when the state does not fit the dates."""
    if not 0 <= next_index <= len(dates) or len(tail) > next_index:
        raise ValueError(f"DETECTION_RESUME: a state at day {next_index} does not fit {len(dates)} days")
    return [PointAssessment(dates[i], None, None, None, None, None, None, None, False, NOT_RECOMPUTED)
            for i in range(next_index - len(tail))] + list(tail)


def assess_series(dates: Sequence[Any], values: Sequence[float] | np.ndarray,
                  options: AnomalyOptions | None = None, *, weights: Sequence[float] | np.ndarray | None = None,
                  **overrides: Any) -> list[PointAssessment]:
    """Judge every day of a daily series, each using only the days before it.

    ``dates``: strictly increasing days (``datetime.date``, ISO strings or ``datetime64``); gaps are
    allowed (weekdays and drift come from the dates). ``values``: one number per date, NaN for a
    missing day. ``weights``: the observations behind each value (sessions behind a median session
    length), or None: a value of weight w has noise sigma / sqrt(w), so a day of 3 sessions is judged
    with a scale twice that of a day of 12; a value of weight 0 or NaN is not a data point.
    ``options`` / keyword overrides: see :class:`AnomalyOptions`. Returns one
    :class:`PointAssessment` per date, in order; ``date`` is the caller's own date object.
    """
    opts = options or AnomalyOptions()
    if overrides:
        opts = AnomalyOptions(**{**asdict(opts), **overrides})
    return walk_series(dates, values, opts, weights=weights)[0]


def walk_series(dates: Sequence[Any], values: Sequence[float] | np.ndarray, opts: AnomalyOptions, *,
                weights: Sequence[float] | np.ndarray | None = None, resume: WalkState | None = None
                ) -> tuple[list[PointAssessment], WalkState]:
    """:func:`assess_series`, optionally resumed from the state a walk over the same first days stopped in,
    and the state it stops in after the last day. Resumed, the days before the state's tail are not judged
    again: their points have status ``not_recomputed`` (the caller has their earlier judgements)."""
    s = _Series(dates, values, opts, weights)
    usable = s.valid.copy()        # days a baseline may use (transient anomalies are removed)
    regime_start = 0
    regime_ref: _Baseline | None = None  # the pre-change baseline, used until a regime has min_history days
    episode: _Episode | None = None
    thr = opts.threshold
    out: list[PointAssessment] = []
    first = 0
    if resume is not None:
        first, out = resume.next_index, resumed_points(dates, resume.next_index, resume.tail)
        usable[:first] = resume.usable
        regime_start, regime_ref = resume.regime_start, resume.regime_ref
        episode = replace(resume.episode) if resume.episode is not None else None

    def not_judged(i: int, date: Any, status: str) -> PointAssessment:
        observed = float(s.x[i]) if s.valid[i] else None
        return PointAssessment(date, observed, None, None, None, None, None, None, False, status)

    def current_baseline(end: int) -> _Baseline | None:
        """The regime's baseline from its usable days before ``end``."""
        idx = np.flatnonzero(usable[regime_start:end]) + regime_start
        if idx.size < (1 if regime_ref is not None else 3):
            return None
        if idx.size >= opts.min_history or regime_ref is None:
            return s.baseline(s.profile(idx[-opts.window:]), idx[-opts.level_days:], idx[-opts.trend_days:])
        # a young regime: the pre-change weekly shape, no drift, the new level, and the pre-change noise
        # (relative to the level when the profile is multiplicative: 3% noise stays 3% after a shift)
        ref = regime_ref.profile
        young = s.baseline(replace(ref, slope=0.0, trend_n=0), idx[-opts.level_days:])
        ref_level = regime_ref.intercept + ref.slope * float(s.t[regime_start])
        if ref.season.mode == "multiplicative" and ref_level > 0 and young.intercept > 0:
            sigma = ref.sigma * young.intercept / ref_level
            young = replace(young, profile=replace(young.profile, sigma=sigma))
        return young

    seen = np.cumsum(s.valid) - s.valid      # days with data before each day
    for i in range(first, len(dates)):
        date = dates[i]
        if not s.valid[i]:
            out.append(not_judged(i, date, MISSING))
            continue
        if episode is not None and usable[episode.anchor:i].sum() >= opts.shift_confirm_days:
            # the episode lasted: a level shift; the new regime starts at its current level
            regime_start, regime_ref, episode = episode.anchor, episode.baseline, None
        if seen[i] < opts.min_history:
            out.append(not_judged(i, date, WARMING_UP))
            continue

        if episode is not None:
            old = s.forecast(episode.baseline, i)
            z_old = s.z(i, old)
            if np.sign(z_old) == episode.sign and abs(z_old) >= opts.hysteresis * thr:
                own = np.flatnonzero(usable[episode.anchor:i]) + episode.anchor
                cand = s.forecast(s.baseline(episode.baseline.profile, own), i) if own.size else old
                if np.sign(s.z(i, cand)) == episode.sign and abs(s.z(i, cand)) > thr:
                    # worse than the episode's own level: alert again; its level restarts here
                    episode.anchor = i
                    out.append(s.assessment(i, date, cand, s.alert_status(cand, episode.sign)))
                else:
                    out.append(s.assessment(i, date, old, CONTINUATION))
                continue
            # back within the band (or past it the other way): the episode was transient
            usable[episode.start:i] = False
            episode = None

        base = current_baseline(i)
        if base is None:
            out.append(not_judged(i, date, WARMING_UP))
            continue
        fc = s.forecast(base, i)
        z = s.z(i, fc)
        if abs(z) > thr:
            sign = 1 if z > 0 else -1
            episode = _Episode(start=i, anchor=i, sign=sign, baseline=base)
            out.append(s.assessment(i, date, fc, s.alert_status(fc, sign)))
        else:
            out.append(s.assessment(i, date, fc, NORMAL))
    n = len(dates)
    state = WalkState(n, usable.copy(), regime_start, regime_ref,
                      replace(episode) if episode is not None else None, out[max(0, n - TAIL_POINTS):])
    return out, state


def assess_latest(dates: Sequence[Any], values: Sequence[float] | np.ndarray,
                  options: AnomalyOptions | None = None, **overrides: Any) -> PointAssessment:
    """The judgement of the last date, as of that date (what a daily "as of" run stores)."""
    if len(dates) == 0:
        raise ValueError("DETECTION_EMPTY: no dates")
    return assess_series(dates, values, options, **overrides)[-1]


def detect_anomalies(dates: Sequence[Any], values: Sequence[float] | np.ndarray,
                     **options: Any) -> list[dict[str, Any]]:
    """One dict per flagged date: ``date, observed, expected, lower, upper, score, direction``
    ('up' | 'down'). Keyword options are the fields of :class:`AnomalyOptions` (threshold=3.5,
    direction='both', counts=False, min_volume=0, min_history=14, window=56, level_days=7,
    shift_confirm_days=7, hysteresis=0.5, min_rel_scale=0.02, min_scale=0)."""
    return [p.as_anomaly() for p in assess_series(dates, values, AnomalyOptions(**options)) if p.flagged]


def z_to_p_value(z: float | Sequence[float] | np.ndarray, direction: str = "both") -> np.ndarray:
    """Normal tail probabilities of z-scores: two-sided for 'both', P(Z >= z) for 'up', P(Z <= z) for
    'down'. NaN stays NaN."""
    if direction not in DIRECTIONS:
        raise ValueError(f"DETECTION_DIRECTION: direction must be one of {DIRECTIONS}, got {direction!r}")
    z = np.asarray(z, dtype=float)
    if direction == "both":
        return 2.0 * special.ndtr(-np.abs(z))      # scipy's norm.sf(x) is ndtr(-x), without its overhead
    return special.ndtr(-z if direction == "up" else z)


@dataclass(frozen=True)
class FdrDecision:
    """Benjamini-Hochberg decisions over one scan, in the input order. A NaN input (a series that was
    not evaluated) is not tested: flagged False, q_value None, and not counted in ``tested``."""

    flagged: tuple[bool, ...]
    p_values: tuple[float | None, ...]
    q_values: tuple[float | None, ...]
    tested: int
    flagged_count: int
    alpha: float
    method: str


def fdr_decision(*, scores: Sequence[float] | np.ndarray | None = None,
                 p_values: Sequence[float] | np.ndarray | None = None, alpha: float = 0.05,
                 direction: str = "both", method: str = "bh") -> FdrDecision:
    """Which of a day's series to flag, controlling the false discovery rate at ``alpha``.

    One entry per series scanned that day (e.g. :attr:`PointAssessment.score` of each series' latest
    day; NaN for a series that was not judged: missing, warming up).
    Give either ``scores`` (robust z-scores, turned into p-values by :func:`z_to_p_value` with
    ``direction``: 'both' two-sided, 'up'/'down' one-sided) or ``p_values``. ``method='bh'`` is
    Benjamini-Hochberg (independent or positively dependent tests, §2h); ``'by'`` is
    Benjamini-Yekutieli (any dependence, more conservative). A series is flagged when its adjusted
    p-value (q-value, ``scipy.stats.false_discovery_control``) is <= alpha, which is the step-up rule:
    reject the k smallest p-values for the largest k with p_(k) <= k * alpha / m.
    """
    if (scores is None) == (p_values is None):
        raise ValueError("DETECTION_FDR_INPUT: give exactly one of scores or p_values")
    if not 0 < alpha < 1:
        raise ValueError(f"DETECTION_FDR_ALPHA: alpha must be within (0, 1), got {alpha}")
    p = z_to_p_value(scores, direction) if scores is not None else np.asarray(p_values, dtype=float)
    p = np.atleast_1d(p)
    tested = np.isfinite(p)
    if ((p[tested] < 0) | (p[tested] > 1)).any():
        raise ValueError("DETECTION_FDR_INPUT: p-values must lie within [0, 1]")
    q = np.full(p.shape, np.nan)
    if tested.any():
        q[tested] = sps.false_discovery_control(p[tested], method=method)
    flagged = tested & (q <= alpha)
    return FdrDecision(
        flagged=tuple(bool(f) for f in flagged),
        p_values=tuple(float(v) if np.isfinite(v) else None for v in p),
        q_values=tuple(float(v) if np.isfinite(v) else None for v in q),
        tested=int(tested.sum()),
        flagged_count=int(flagged.sum()),
        alpha=alpha,
        method=method,
    )
