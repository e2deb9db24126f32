"""A day's scan of every metric x segment series: which series are tested, with which options, and what
is flagged after false-discovery control. Plain functions on polars frames; the assets read the series
from DuckDB and write what these return.

Which series: every metric x dimension x segment of `analytics.daily_metrics` and every funnel step's
conversion (`funnel:<funnel>:step<k>`), except the trailing-window metrics (`wau`, `mau`, `stickiness`):
they are smoothed sums of the daily ones, so an anomaly there only repeats one in `dau`, late, for weeks.
They do get trends.

How: counts (events, users, sessions) use the detectors' Poisson-aware mode, with an exact negative-binomial
tail below 30 a day and no volume floor (2 -> 18 in a day is an anomaly, 0 -> 2 is not); a conversion is
judged one day at a time with 30 entrants a day or more, else by pooling its last 1, 3 or 7 days against the
28 before them (`rates.py`, an exact beta-binomial tail); both are judged in segments of any size. Durations
and ratios (per-session values: a median session length, events per session) use the robust scale on
log(1 + x), weighted by the day's sessions (a day of 3 sessions has twice the noise of a day of 12), also in
segments of any size; their trends need MIN_SEGMENT_USERS daily users. A series is
flagged on a day when the detector calls it an anomaly (not a continuation of an alert already raised) and
its Benjamini-Hochberg q-value within its family of the series tested that day (the totals, or the
segments) is at most `FDR_ALPHA`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from hitcraft_assets.detection.anomalies import (
    CONTINUATION,
    AnomalyOptions,
    PointAssessment,
    WalkState,
    fdr_decision,
    walk_series,
)
from hitcraft_assets.detection.changepoints import find_change_points
from hitcraft_assets.detection.rates import RateWalkState, walk_rate_series
from hitcraft_assets.detection.rootcause import rank_contributors
from hitcraft_assets.detection.trends import trend_summary, window_change
from hitcraft_assets.lazy import lazy

pl = lazy("polars")

FDR_ALPHA = 0.05
HISTORY_DAYS = 120            # how far back a day's scan reads its series
TREND_DAYS = 28               # Mann-Kendall window
CHANGE_POINT_DAYS = 90        # change points searched in the trailing 90 days
MIN_COUNT_VOLUME = 0          # no volume floor: a low count is judged by its exact tail (anomalies.exact_count_z)
MIN_TRIALS = 30               # a conversion judged one day at a time needs this many entrants a day; below
                              # it, days are pooled (rates.py)
MIN_SEGMENT_USERS = 30        # a segment's duration and ratio trends need this many daily users (median, 28 days)
MIN_TREND_COUNT = 20          # a count series needs this median volume to get a trend row
SMOOTHED = ("wau", "mau", "stickiness")
# the days a trailing-window metric needs behind it: before the first full window (counted from the
# series' first day of data) it only ramps up (MAU climbs, stickiness falls) and is not trended
# `new_users` counts users first seen in the warehouse: in its first month every returning user is "new" the
# first time the warehouse sees them, so the series only falls while the warehouse fills (a 300-user demo's
# new users "dropped" on days 14-16 of data); it is judged from then on, like MAU
FULL_WINDOW_DAYS = {"wau": 7, "mau": 30, "stickiness": 30, "new_users": 30}
COUNT_PREFIXES = ("event_count:", "event_users:")
COUNT_METRICS = ("dau", "new_users", "sessions")
# means and medians of skewed per-session values, judged on log(1 + x): on the raw scale, a shop with 15
# sessions a day got 0.46 false alerts per series per 30 days (simulated, lognormal sessions), 0.13 on logs
SKEWED = ("events_per_session", "session_duration_mean_s", "session_duration_median_s")
TOP_CONTRIBUTORS = 3
NEW_SEGMENT_DAYS = 28         # a segment absent for this long before a total's anomaly counts as new (expected 0)

SeriesKey = tuple[str, str, str]   # (metric, dimension, segment)


def is_count(metric: str) -> bool:
    return metric in COUNT_METRICS or metric.startswith(COUNT_PREFIXES)


def is_rate(metric: str) -> bool:
    return metric.startswith("funnel:")


def anomaly_options(metric: str) -> AnomalyOptions:
    if is_count(metric):
        return AnomalyOptions(counts=True, min_volume=MIN_COUNT_VOLUME)
    if metric in SKEWED:
        return AnomalyOptions(log_scale=True)
    return AnomalyOptions()


@dataclass(frozen=True)
class Series:
    key: SeriesKey
    dates: list[date]
    values: np.ndarray       # NaN on days without a value
    volume: np.ndarray       # trials behind a rate, or the value of a count
    first_day: date | None = None   # the series' first day of data in the warehouse (None: the first loaded)

    @property
    def metric(self) -> str:
        return self.key[0]


def to_series(frame: pl.DataFrame, until: date, days: int = HISTORY_DAYS,
              first_days: dict[SeriesKey, date] | None = None) -> list[Series]:
    """One Series per (metric, dimension, segment) of `frame` (columns metric, dimension, segment,
    metric_date, value, volume), on a continuous calendar ending on `until` (missing days are NaN);
    `first_days`: each series' first day of data, where known."""
    first_days = first_days or {}
    start = until - timedelta(days=days - 1)
    calendar = [start + timedelta(days=i) for i in range(days)]
    index = {d: i for i, d in enumerate(calendar)}
    out = []
    frame = frame.filter((pl.col("metric_date") >= start) & (pl.col("metric_date") <= until))
    for (metric, dimension, segment), part in frame.group_by(["metric", "dimension", "segment"],
                                                             maintain_order=True):
        values = np.full(days, np.nan)
        volume = np.full(days, np.nan)
        for d, v, w in zip(part["metric_date"], part["value"], part["volume"]):
            values[index[d]] = v
            volume[index[d]] = w if w is not None else np.nan
        key = (metric, dimension, segment)
        out.append(Series(key, calendar, values, volume, first_days.get(key)))
    out.sort(key=lambda s: s.key)
    return out


def trailing_median(x: np.ndarray, days: int = 28) -> np.ndarray:
    """At every index, the median of the finite values of the `days` days up to it (0 where there are none):
    what a day's scan knows of a series' size, from that day's past only."""
    padded = np.concatenate([np.full(days - 1, np.nan), np.asarray(x, dtype=float)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, days)
    out = np.zeros(len(x))
    seen = np.isfinite(windows).any(axis=1)
    if seen.any():
        out[seen] = np.nanmedian(windows[seen], axis=1)
    return out


def segment_sizes(series: Iterable[Series]) -> dict[tuple[str, str], np.ndarray]:
    """(dimension, segment) -> its median daily users over the 28 days up to each day, from the `dau`
    series; a value of an event's key property (config event_properties), which has no DAU of its own, from
    the event's users with that value (the largest event)."""
    out: dict[tuple[str, str], np.ndarray] = {}
    by_event: dict[tuple[str, str], np.ndarray] = {}
    for s in series:
        if s.metric == "dau":
            out[(s.key[1], s.key[2])] = trailing_median(s.values)
        elif s.metric.startswith("event_users:") and s.key[1] != "all":
            median = trailing_median(s.values)
            seg = (s.key[1], s.key[2])
            by_event[seg] = np.fmax(by_event[seg], median) if seg in by_event else median
    for key, median in by_event.items():
        out.setdefault(key, median)
    return out


def exact_tested(metric: str) -> bool:
    """Counts (exact negative-binomial tails) and conversion rates (pooled beta-binomial tails): their
    sampling noise is known, so a segment of any size is judged by the evidence it has."""
    return is_count(metric) or is_rate(metric)


def big_enough(series: Series, sizes: dict[tuple[str, str], np.ndarray], trend: bool = False) -> np.ndarray:
    """Per day: totals always; a segment's series while it had users in the 28 days up to the day: the
    tests of counts and conversions know their own sampling noise, and a duration or ratio is judged with
    its day's sessions as weights (`weights`). A trend (Mann-Kendall, unweighted) of a segment's duration
    or ratio needs MIN_SEGMENT_USERS daily users: with 3 sessions a day a median session length is mostly
    the noise of which sessions happened."""
    if series.key[1] == "all":
        return np.ones(len(series.dates), dtype=bool)
    size = sizes.get((series.key[1], series.key[2]))
    if size is None:
        return np.zeros(len(series.dates), dtype=bool)
    if trend and not exact_tested(series.metric):
        return size >= MIN_SEGMENT_USERS
    return size > 0


def weights(series: Series) -> np.ndarray | None:
    """The observations behind each value: the sessions behind a per-session value, None for the others."""
    return series.volume if series.metric in SKEWED else None


def scannable(series: Series) -> np.ndarray:
    """Per day, whether the anomaly scan tests the series: never a trailing-window metric."""
    if series.metric in SMOOTHED:
        return np.zeros(len(series.dates), dtype=bool)
    return np.ones(len(series.dates), dtype=bool)


@dataclass
class RateWalks:
    """Where a conversion series' two walks stopped (either is None when the series did not need it): the
    per-day detector on its days with enough trials, and the pooled windows on the others."""
    next_index: int
    daily: WalkState | None
    pooled: RateWalkState | None


def _assess_rate(s: Series, gate: np.ndarray, resume: RateWalks | None = None
                 ) -> tuple[list[PointAssessment], RateWalks]:
    """A conversion series: a day whose median trials over the 28 days up to it reach MIN_TRIALS is judged
    on its own by the robust detector (a day with fewer trials is not a data point there); a day with
    fewer, by pooled windows against the 28 days before them (`rates.assess_rate_series`). `resume`: where
    both walks stopped on an earlier run over the same first days (a walk the earlier run did not need
    starts from the beginning)."""
    daily = trailing_median(s.volume) >= MIN_TRIALS
    per_day = pooled = None
    daily_state = pooled_state = None
    if daily.any():
        values = s.values.copy()
        values[~(s.volume >= MIN_TRIALS)] = np.nan
        per_day, daily_state = walk_series(s.dates, values, anomaly_options(s.metric),
                                           resume=resume.daily if resume is not None else None)
    if (gate & ~daily).any():
        pooled, pooled_state = walk_rate_series(s.dates, s.values, s.volume, judge=gate & ~daily,
                                                resume=resume.pooled if resume is not None else None)
    state = RateWalks(len(s.dates), daily_state, pooled_state)
    if pooled is None:
        return per_day, state
    if per_day is None:
        return pooled, state
    return [a if use_daily else b for a, b, use_daily in zip(per_day, pooled, daily)], state


@dataclass
class Assessed:
    """A scan's judgements: every day of every series that some day tests, and on which days it is tested."""
    points: dict[SeriesKey, list[PointAssessment]]
    tested: dict[SeriesKey, np.ndarray]      # bool per calendar day
    # the values of the segments' count series, tested or not: a segment that appears (a new channel) has no
    # judgement yet, but it can be the cause of a total's anomaly
    counts: dict[SeriesKey, np.ndarray] = field(default_factory=dict)
    # where each series' walk stopped: the next run over the same start resumes from it
    states: dict[SeriesKey, WalkState | RateWalks] = field(default_factory=dict)
    resumed: int = 0                          # series whose walk resumed from a stored state


def assess_all(series: Sequence[Series], resume: dict[SeriesKey, WalkState | RateWalks] | None = None,
               sizes: dict[tuple[str, str], np.ndarray] | None = None) -> Assessed:
    """Every day of every series judged from its own past only (no look-ahead), so one pass over a range
    serves every day of a backfill; which series a day tests (size, trials) also follows only the days up to
    it, so a backfill tests on each day what that day's own run tests. `resume`: per series, the state an
    earlier walk over the same first days stopped in (see :func:`walk_digest`, and `walks.resumable`, which
    gives a conversion its two walks' state and any other series its one walk's); the walk goes on from there.
    `sizes`: the series' `segment_sizes`, when the caller has them already."""
    resume = resume or {}
    points, tested, counts, states = {}, {}, {}, {}
    resumed = 0
    sizes = segment_sizes(series) if sizes is None else sizes
    for s in series:
        if s.key[1] != "all" and is_count(s.metric):
            counts[s.key] = s.values
        gate = scan_gate(s, sizes)
        if not gate.any():
            continue
        state = resume.get(s.key)
        resumed += state is not None
        if is_rate(s.metric):
            points[s.key], states[s.key] = _assess_rate(s, gate, state)
        else:
            points[s.key], states[s.key] = walk_series(s.dates, _full_windows(s), anomaly_options(s.metric),
                                                       weights=weights(s), resume=state)
        tested[s.key] = gate
    return Assessed(points, tested, counts, states, resumed)


def scan_gate(s: Series, sizes: dict[tuple[str, str], np.ndarray]) -> np.ndarray:
    """Per day, whether the anomaly scan tests the series (it may still walk the days it does not test)."""
    return scannable(s) & big_enough(s, sizes)


def walk_digest(s: Series, n: int, sizes: dict[tuple[str, str], np.ndarray]) -> str:
    """sha256 of what a series' anomaly walk reads on its first `n` days: the detectors' code, its key, first
    day of data (trailing-window metrics start at their first full window), calendar start, and values and
    volumes (weights: a conversion's trials) of those days to DIGEST_DIGITS significant digits; for a
    conversion also the days it tests (its segment's size: the pooled walk judges only those). A walk
    stopped after day n - 1 may be resumed by a run whose series has the same digest. `sizes`: the
    scan's `segment_sizes`."""
    h = hashlib.sha256(_detection_code_digest())
    _hash_span(h, s, 0, n, n)
    if is_rate(s.metric):
        h.update(np.packbits(scan_gate(s, sizes)[:n]).tobytes())
    return h.hexdigest()


def _hash_span(h, s: Series, lo: int, hi: int, *extra: Any) -> None:
    """Feed `h` what a detector reads of series `s` on its days lo..hi-1: its key, first day of data (else its
    first loaded value's: _full_windows counts from it, and it may lie before lo), the span's first date,
    `extra`, and the values and volumes to DIGEST_DIGITS significant digits."""
    first = s.first_day
    if first is None:
        seen = np.flatnonzero(np.isfinite(s.values))
        first = s.dates[int(seen[0])] if seen.size else None
    h.update(repr((s.key, first.isoformat() if first else None, s.dates[lo].isoformat(), *extra)).encode())
    h.update(_significant(s.values[lo:hi]).tobytes())
    h.update(_significant(s.volume[lo:hi]).tobytes())


def _root_cause(metric: str, day_index: int, assessed: Assessed, total: PointAssessment) -> list[dict[str, Any]]:
    """For an anomaly in a total count: which segments of which dimension explain the change from the
    expected value (ThirdEye-style contribution)."""
    if not is_count(metric) or total.expected is None or total.observed is None:
        return []
    dimensions: dict[str, dict[str, tuple[float, float]]] = {}
    for (m, dimension, segment), points in assessed.points.items():
        if m != metric or dimension == "all" or not assessed.tested[(m, dimension, segment)][day_index]:
            continue
        p = points[day_index]
        if p.observed is not None and p.expected is not None:
            dimensions.setdefault(dimension, {})[segment] = (p.expected, p.observed)
    for (m, dimension, segment), values in assessed.counts.items():
        # a segment seen today for the first time in NEW_SEGMENT_DAYS (a new channel): expected 0
        if (m == metric and segment not in dimensions.get(dimension, {}) and np.isfinite(values[day_index])
                and values[day_index] > 0):
            before = values[max(0, day_index - NEW_SEGMENT_DAYS):day_index]
            if not (np.isfinite(before) & (before > 0)).any():
                dimensions.setdefault(dimension, {})[segment] = (0.0, float(values[day_index]))
    ranked = rank_contributors(total.expected, total.observed, dimensions)
    out = []
    for c in ranked[:TOP_CONTRIBUTORS]:
        out.append({"dimension": c.dimension, "segment": c.segment, "expected": round(c.baseline, 3),
                    "observed": c.current, "contribution": None if c.contribution is None
                    else round(c.contribution, 4), "summary": c.describe()})
    return out


def _row(day: date, key: SeriesKey, p: PointAssessment, q: float | None, cause: list, status: str,
         episode_start: date) -> dict[str, Any]:
    metric, dimension, segment = key
    return {"metric_date": day, "metric": metric, "dimension": dimension, "segment": segment,
            "observed": p.observed, "expected": p.expected, "lower": p.lower, "upper": p.upper,
            "score": p.score, "direction": p.direction, "p_value": p.p_value, "q_value": q,
            "root_cause": json.dumps(cause), "status": status, "episode_start": episode_start,
            "window_days": p.window_days}


def _episode_start(points: list[PointAssessment], i: int, calendar: Sequence[date]) -> date | None:
    """The day the detector alerted the episode that point i continues (walking back over its
    continuation days), or None."""
    j = i - 1
    while j >= 0 and points[j].status == CONTINUATION:
        j -= 1
    return calendar[j] if j >= 0 and points[j].flagged else None


def tested_keys(assessed: Assessed, i: int) -> list[SeriesKey]:
    """The series a day's scan tests: gated in, and judged that day."""
    return [k for k, points in assessed.points.items() if assessed.tested[k][i] and points[i].p_value is not None]


def family_fdr(keys: Sequence[SeriesKey], p_values: Sequence[float]) -> list[tuple[bool, float | None]]:
    """(passes, q-value) per series: Benjamini-Hochberg at FDR_ALPHA within each family, the totals (did the
    product change?) and the segments (where?). One family of every series would let a thousand segment
    series drown the few dozen totals: a small product's real break on a total (p = 6e-5) got q = 0.06."""
    out: list[tuple[bool, float | None]] = [(False, None)] * len(keys)
    for family in (True, False):
        idx = [j for j, k in enumerate(keys) if (k[1] == "all") == family]
        if idx:
            decision = fdr_decision(p_values=[p_values[j] for j in idx], alpha=FDR_ALPHA)
            for j, ok, q in zip(idx, decision.flagged, decision.q_values):
                out[j] = (ok, q)
    return out


def _cause(key: SeriesKey, day_index: int, assessed: Assessed, p: PointAssessment) -> list[dict[str, Any]]:
    """A total's root cause (a segment's row has none)."""
    return _root_cause(key[0], day_index, assessed, p) if key[1] == "all" else []


def anomalies_for_day(day: date, calendar: Sequence[date], assessed: Assessed,
                      alerted_q: dict[tuple[SeriesKey, date], float] | None = None
                      ) -> tuple[list[dict[str, Any]], int]:
    """The rows of `day` and the number of series tested that day. A row is a new alert (status `new`:
    the detector's anomaly that passes Benjamini-Hochberg within its family of the day's tested series, the
    totals or the segments) or the
    continuation of an episode alerted on an earlier day (status `continuing`, with the q-value of that
    alert), so that a finding stays visible while it lasts without being alerted again. `alerted_q`
    remembers the q-value of each (series, day) alert across the days of one scan."""
    alerted_q = {} if alerted_q is None else alerted_q
    i = list(calendar).index(day)
    keys = tested_keys(assessed, i)
    if not keys:
        return [], 0
    decisions = family_fdr(keys, [assessed.points[k][i].p_value for k in keys])
    rows = []
    for k, (fdr_ok, q) in zip(keys, decisions):
        p = assessed.points[k][i]
        # the root cause only for the rows written: it reads every segment of the metric
        if p.flagged and fdr_ok:
            alerted_q[(k, day)] = q
            rows.append(_row(day, k, p, q, _cause(k, i, assessed, p), "new", day))
        elif p.status == CONTINUATION:
            start = _episode_start(assessed.points[k], i, calendar)
            if (k, start) in alerted_q:      # only episodes whose alert passed that day's FDR control
                rows.append(_row(day, k, p, alerted_q[(k, start)], _cause(k, i, assessed, p), "continuing",
                                 start))
    return rows, len(keys)


def _finite_or_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


CHANGE_SEARCH_PCT = 0.15      # a segment series is searched for change points when its 7- or 28-day
CHANGE_SEARCH_P = 0.01        # change or its 28-day trend is at least this clear (totals always are)


def _worth_a_change_point_search(key: SeriesKey, mk: dict, summary: dict) -> bool:
    """PELT costs ~4 ms a series; segments whose last weeks show no movement are not searched."""
    if key[1] == "all":
        return True
    moved = any(summary.get(k) is not None and abs(summary[k]) >= CHANGE_SEARCH_PCT
                for k in ("pct_change_7d", "pct_change_28d"))
    return moved or (mk.get("p_value") is not None and mk["p_value"] < CHANGE_SEARCH_P)


def change_root_cause(total: Series, change_index: int, end_index: int, series: Sequence[Series]
                      ) -> list[dict[str, Any]]:
    """For a level shift of a total count at `change_index`: which segments explain it, comparing each
    segment's mean over the 14 days before the change with its mean from the change to `end_index`."""
    if not is_count(total.metric):
        return []

    def means(values: np.ndarray) -> tuple[float, float] | None:
        before = values[max(0, change_index - 14):change_index]
        after = values[change_index:end_index + 1]
        if not (np.isfinite(before).any() and np.isfinite(after).any()):
            return None
        return float(np.nanmean(before)), float(np.nanmean(after))

    base = means(total.values)
    if base is None:
        return []
    dimensions: dict[str, dict[str, tuple[float, float]]] = {}
    for s in series:
        if s.metric == total.metric and s.key[1] != "all":
            m = means(s.values)
            if m is not None:
                dimensions.setdefault(s.key[1], {})[s.key[2]] = m
    return [{"dimension": c.dimension, "segment": c.segment, "before": round(c.baseline, 3),
             "after": round(c.current, 3), "contribution": None if c.contribution is None
             else round(c.contribution, 4), "summary": c.describe()}
            for c in rank_contributors(base[0], base[1], dimensions)[:TOP_CONTRIBUTORS]]


def _full_windows(s: Series) -> np.ndarray:
    """The series' values, without the days of a trailing-window metric whose window is not yet full
    (counted from the series' first day of data in the warehouse, else its first loaded day)."""
    need = FULL_WINDOW_DAYS.get(s.metric)
    seen = np.flatnonzero(np.isfinite(s.values))
    if not need or not seen.size:
        return s.values
    first = seen[0] if s.first_day is None else (s.first_day - s.dates[0]).days
    values = s.values.copy()
    values[: max(0, first + need - 1)] = np.nan
    return values


@lru_cache(maxsize=1)
def _detection_code_digest() -> bytes:
    """The detectors' own code (every module of this package and the shared number formatting): a change to
    any of them makes every day's trends run again."""
    from hitcraft_assets import numbers

    h = hashlib.sha256()
    for f in sorted(Path(__file__).parent.glob("*.py")) + [Path(numbers.__file__)]:
        h.update(f.read_bytes())
    return h.digest()


def trend_inputs_digest(day: date, series: Sequence[Series]) -> str | None:
    """sha256 of everything :func:`trends_for_day` reads for `day`: each series' key, values (as loaded,
    and without the days whose trailing window is not yet full) and volumes over the HISTORY_DAYS up to
    the day (the most it reads back: the change-point window, the 28-day windows and the segment sizes all
    lie within them), to 12 significant digits, and the detectors' code. The same digest gives the same rows
    (to the last digits a recompute of the same inputs changes anyway). None when the day is not on the
    series' calendar.

    The series' first day of data is not hashed as such: trends read it only through the days it masks
    (`_full_windows`), and a series without a recorded first day counts from its first loaded value, which
    moves with the range a run loads; hashing that date made every day of every run look changed."""
    h = hashlib.sha256(_detection_code_digest())
    h.update(day.isoformat().encode())
    for s in sorted(series, key=lambda s: s.key):
        if day not in s.dates:
            return None
        i = s.dates.index(day)
        lo = max(0, i - HISTORY_DAYS + 1)
        h.update(repr((s.key, s.dates[lo].isoformat())).encode())
        for values in (s.values, _full_windows(s), s.volume):
            h.update(_significant(values[lo:i + 1]).tobytes())
    return h.hexdigest()


DIGEST_DIGITS = 12   # values are compared to 12 significant digits in a digest


def _significant(x: np.ndarray) -> np.ndarray:
    """The values rounded to DIGEST_DIGITS significant digits (NaN, 0 and infinities as they are). DuckDB's
    parallel aggregates are not bit-for-bit repeatable: a mean session length recomputed from the same
    sessions differed in the 13th digit (4.5e-13 s), which would make every day look changed."""
    x = np.asarray(x, dtype=float)
    out = x.copy()
    ok = np.isfinite(x) & (x != 0)
    if ok.any():
        scale = 10.0 ** (DIGEST_DIGITS - 1 - np.floor(np.log10(np.abs(x[ok]))))
        out[ok] = np.round(x[ok] * scale) / scale
    return np.ascontiguousarray(out)


def trends_for_day(day: date, series: Sequence[Series],
                   sizes: dict[tuple[str, str], np.ndarray] | None = None) -> list[dict[str, Any]]:
    """One row per series with enough data: Mann-Kendall / Sen over the trailing 28 days, 7- and 28-day
    changes, change points of the trailing 90 days (for a total count, with the segments that explain its
    latest level shift); q-values across the day's series."""
    rows = []
    sizes = segment_sizes(series) if sizes is None else sizes
    for s in series:
        i = s.dates.index(day) if day in s.dates else None
        if i is None or not big_enough(s, sizes, trend=True)[i]:
            continue
        values = _full_windows(s)[: i + 1]
        recent = values[-TREND_DAYS:]
        if np.isfinite(recent).sum() < 10:
            continue
        if is_count(s.metric) and not (np.nanmedian(recent) >= MIN_TREND_COUNT):
            continue
        trials = s.volume[: i + 1][-TREND_DAYS:]
        if is_rate(s.metric) and not (np.isfinite(trials).any() and np.nanmedian(trials) >= MIN_TRIALS):
            continue
        mk = trend_summary(recent, windows=())
        summary = {f"{key}_{w}d": getattr(wc, key) if wc else None
                   for w in (7, TREND_DAYS) for wc in [window_change(values, w)] for key in ("current", "pct_change")}
        cps = []
        if _worth_a_change_point_search(s.key, mk, summary):
            window = values[-CHANGE_POINT_DAYS:]
            cps = find_change_points(window, s.dates[: i + 1][-CHANGE_POINT_DAYS:])
        points = [{"date": cp.date.isoformat(), "mean_before": cp.mean_before, "mean_after": cp.mean_after,
                   "shift": cp.shift, "relative_shift": cp.relative_shift} for cp in cps]
        last = cps[-1] if cps else None
        metric, dimension, segment = s.key
        cause = []
        if last is not None and dimension == "all":
            cause = change_root_cause(s, s.dates.index(last.date), i, series)
        rows.append({
            "as_of_date": day, "metric": metric, "dimension": dimension, "segment": segment,
            "n": mk["n"], "slope": mk["slope"], "tau": mk["tau"], "p_value": mk["p_value"], "q_value": None,
            "trend": mk["trend"], "trend_change": mk["trend_change"], "current_7d": summary["current_7d"], "pct_change_7d": summary["pct_change_7d"],
            "current_28d": summary["current_28d"], "pct_change_28d": summary["pct_change_28d"],
            "change_points": json.dumps(points, default=str),
            "last_change_date": last.date if last else None,
            "last_change_shift": last.shift if last else None,
            "last_change_relative": last.relative_shift if last else None,
            "root_cause": json.dumps(cause),
        })
    tested = [r for r in rows if r["p_value"] is not None and math.isfinite(r["p_value"])]
    if tested:
        decision = fdr_decision(p_values=[r["p_value"] for r in tested], alpha=FDR_ALPHA)
        for r, q in zip(tested, decision.q_values):
            r["q_value"] = q
    return [{k: _finite_or_none(v) for k, v in r.items()} for r in rows]
