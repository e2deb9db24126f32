"""Trends: is a metric really going up or down, how fast, and how much has it moved.

**Mann-Kendall test with Sen's slope** (analytics-methods.md §2h; formulas as in ``pymannkendall``,
which is not a dependency: the statistic is a few lines of numpy):

- ``S = sum_{i<j} sgn(x_j - x_i)``; ``Var(S) = [n(n-1)(2n+5) - sum_t t(t-1)(2t+5)] / 18`` over groups of
  ``t`` tied values; ``Z = (S-1)/sqrt(Var)`` if S > 0, ``(S+1)/sqrt(Var)`` if S < 0, else 0; two-sided
  p-value; Kendall's ``tau = S / (n(n-1)/2)``.
- Sen's slope = median over i<j of ``(x_j - x_i)/(t_j - t_i)`` (per day, ``t`` = position, so gaps left
  by NaN keep their real spacing); intercept = median(x) - slope * median(t), as pymannkendall.
- **Autocorrelation** (``correction='hamed_rao'``, the default). Daily product metrics are serially
  correlated (a good week is followed by a good week; weekly seasonality correlates lag 7), and the
  original test then finds "significant" trends in pure persistence. Hamed & Rao (1998) inflate
  Var(S) by ``n/n* = 1 + 2/(n(n-1)(n-2)) * sum_k (n-k)(n-k-1)(n-k-2) rho_k``, where ``rho_k`` is the
  autocorrelation at lag k of the *ranks* of the series detrended by Sen's slope, summing only lags
  whose autocorrelation is significant (outside ``+-z_{1-alpha/2}/sqrt(n)``). As in pymannkendall's
  ``hamed_rao_modification_test``, with one deliberate difference: the factor is never allowed below 1
  (negative autocorrelation does not make a trend more significant than the plain test says).
  ``correction='none'`` gives the original test.

**Window change** (:func:`window_change`): the mean (or sum) of the last ``window`` days against the
``window`` days before them: absolute and relative change. 7 and 28 days compare whole weeks, so
the weekly cycle cancels.

Public: :class:`MannKendallResult`, :func:`mann_kendall`, :func:`sens_slope`, :class:`WindowChange`,
:func:`window_change`, :func:`line_change`, :func:`trend_summary`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hitcraft_assets.detection.changepoints import index_pairs, median
from hitcraft_assets.lazy import lazy

sps = lazy("scipy.stats")
special = lazy("scipy.special")

INCREASING = "increasing"
DECREASING = "decreasing"
NO_TREND = "no trend"
CORRECTIONS = ("hamed_rao", "none")


def _finite(values: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"DETECTION_SHAPE: expected a 1-D series, got shape {x.shape}")
    t = np.flatnonzero(np.isfinite(x))
    return t.astype(float), x[t]


def _sens_slope(t: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    i, j = index_pairs(x.size)
    slope = median((x[j] - x[i]) / (t[j] - t[i]))
    return slope, float(median(x) - slope * median(t))


def sens_slope(values: Sequence[float] | np.ndarray,
               times: Sequence[float] | np.ndarray | None = None) -> tuple[float, float]:
    """(slope per unit of time, intercept) of Sen's estimator. ``times`` defaults to the positions
    0..n-1 (so NaNs, which are skipped, keep their spacing). Needs 2 finite values."""
    x = np.asarray(values, dtype=float)
    t = np.arange(x.size, dtype=float) if times is None else np.asarray(times, dtype=float)
    if t.shape != x.shape:
        raise ValueError(f"DETECTION_LENGTH: {t.size} times for {x.size} values")
    keep = np.isfinite(x)
    if keep.sum() < 2:
        raise ValueError("DETECTION_TOO_SHORT: Sen's slope needs at least 2 finite values")
    return _sens_slope(t[keep], x[keep])


@dataclass(frozen=True)
class MannKendallResult:
    """Mann-Kendall trend test of one series. ``variance_ratio`` is the autocorrelation factor n/n*
    applied to Var(S) (1.0 without correction); ``slope``/``intercept`` are Sen's; ``trend`` is
    'increasing' / 'decreasing' when ``p_value < alpha``, else 'no trend'."""

    n: int
    s: float
    var_s: float
    variance_ratio: float
    z: float
    p_value: float
    tau: float
    slope: float
    intercept: float
    trend: str
    correction: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _acf(x: np.ndarray) -> np.ndarray:
    """Sample autocorrelation at lags 0..n-1 (biased estimator, as pymannkendall's ``__acf``)."""
    y = x - x.mean()
    acov = np.correlate(y, y, "full")[x.size - 1:] / x.size
    return acov / acov[0] if acov[0] > 0 else np.zeros_like(acov)


def _hamed_rao_ratio(t: np.ndarray, x: np.ndarray, slope: float, alpha: float) -> float:
    n = x.size
    ranks = sps.rankdata(x - slope * t)
    rho = _acf(ranks)
    bound = -special.ndtri(alpha / 2) / math.sqrt(n)     # norm.isf(q) is -ndtri(q)
    k = np.arange(1, n - 2)
    significant = np.abs(rho[k]) > bound
    k = k[significant]
    total = float(((n - k) * (n - k - 1) * (n - k - 2) * rho[k]).sum())
    return max(1.0 + 2.0 / (n * (n - 1) * (n - 2)) * total, 1.0)


def mann_kendall(values: Sequence[float] | np.ndarray, *, alpha: float = 0.05,
                 correction: str = "hamed_rao") -> MannKendallResult | None:
    """Mann-Kendall test and Sen's slope of a series (oldest first; NaN = missing, skipped).

    ``correction``: 'hamed_rao' (default, autocorrelation-corrected variance) or 'none'. ``alpha`` sets
    the ``trend`` label and the significance of autocorrelations in the correction. Returns None when
    fewer than 4 finite values (the corrected variance needs n >= 4).
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"DETECTION_CORRECTION: correction must be one of {CORRECTIONS}, got {correction!r}")
    t, x = _finite(values)
    n = x.size
    if n < 4:
        return None
    i, j = index_pairs(n)
    s = float(np.sign(x[j] - x[i]).sum())
    _, ties = np.unique(x, return_counts=True)
    var_s = float((n * (n - 1) * (2 * n + 5) - (ties * (ties - 1) * (2 * ties + 5)).sum()) / 18.0)
    slope, intercept = _sens_slope(t, x)
    ratio = _hamed_rao_ratio(t, x, slope, alpha) if correction == "hamed_rao" else 1.0
    var_s *= ratio
    if var_s <= 0 or s == 0:
        z = 0.0
    else:
        z = (s - math.copysign(1.0, s)) / math.sqrt(var_s)
    p = float(2.0 * special.ndtr(-abs(z)))
    trend = (INCREASING if z > 0 else DECREASING) if p < alpha else NO_TREND
    return MannKendallResult(n=n, s=s, var_s=var_s, variance_ratio=ratio, z=z, p_value=p,
                             tau=s / (n * (n - 1) / 2), slope=slope, intercept=intercept, trend=trend,
                             correction=correction)


@dataclass(frozen=True)
class WindowChange:
    """The last ``window`` days against the ``window`` days before them. ``pct_change`` is
    ``abs_change / |previous|`` (None when previous is 0)."""

    window: int
    current: float
    previous: float
    abs_change: float
    pct_change: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def window_change(values: Sequence[float] | np.ndarray, window: int, *, agg: str = "mean",
                  min_coverage: float = 0.5) -> WindowChange | None:
    """Change of the last ``window`` values against the ``window`` before them (oldest first).

    ``agg``: 'mean' (default; rates, averages; NaNs skipped) or 'sum' (totals; a missing day counts as
    0 and lowers coverage). None when there are fewer than ``2 * window`` values or either window has
    less than ``min_coverage`` of its days present.
    """
    if window < 1:
        raise ValueError(f"DETECTION_WINDOW: window must be >= 1, got {window}")
    if agg not in ("mean", "sum"):
        raise ValueError(f"DETECTION_AGG: agg must be 'mean' or 'sum', got {agg!r}")
    x = np.asarray(values, dtype=float)
    if x.size < 2 * window:
        return None
    cur, prev = x[-window:], x[-2 * window:-window]
    for w in (cur, prev):
        if np.isfinite(w).sum() < max(1, min_coverage * window):
            return None
    f = np.nanmean if agg == "mean" else np.nansum
    current, previous = float(f(cur)), float(f(prev))
    change = current - previous
    return WindowChange(window, current, previous, change, change / abs(previous) if previous else None)


def line_change(mk: MannKendallResult, length: int) -> float | None:
    """How much Sen's line moved across the window, relative to where it started: ``(fit(end) -
    fit(0)) / fit(0)`` with ``fit(t) = intercept + slope * t`` over positions ``0..length-1``. This is
    the size of a trend, consistent with its direction: a series that rose for two weeks and fell for
    four can still have a 28-day mean above the 28 days before, while its line points down. None when
    the line starts at or below 0 (a launch from nothing has no relative change)."""
    start = mk.intercept
    if not (math.isfinite(start) and start > 0 and math.isfinite(mk.slope)):
        return None
    return mk.slope * (length - 1) / start


def trend_summary(values: Sequence[float] | np.ndarray, *, windows: Sequence[int] = (7, 28),
                  alpha: float = 0.05, agg: str = "mean") -> dict[str, Any]:
    """One flat row for a trends table: ``slope, tau, z, p_value, trend, n`` from :func:`mann_kendall`
    (Hamed-Rao), ``trend_change`` from :func:`line_change`, and ``current_<w>d, previous_<w>d,
    abs_change_<w>d, pct_change_<w>d`` for each window (None where there is not enough data)."""
    mk = mann_kendall(values, alpha=alpha)
    row: dict[str, Any] = {
        "trend_change": line_change(mk, len(values)) if mk else None,
        "n": mk.n if mk else int(np.isfinite(np.asarray(values, dtype=float)).sum()),
        "slope": mk.slope if mk else None,
        "tau": mk.tau if mk else None,
        "z": mk.z if mk else None,
        "p_value": mk.p_value if mk else None,
        "trend": mk.trend if mk else None,
    }
    for w in windows:
        wc = window_change(values, w, agg=agg)
        for key in ("current", "previous", "abs_change", "pct_change"):
            row[f"{key}_{w}d"] = getattr(wc, key) if wc else None
    return row
