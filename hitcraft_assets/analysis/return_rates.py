"""Return rates by segment, as of each day, and the test of a sustained change in each.

Why it exists: "are the users we acquire through YouTube still coming back?" is answered first by cohorts,
long before the channel's active users fall (see return_change.py). Two series, each a count of
successes out of trials, each read only once its window is over (what the day's own run could know):

- `first_week_return`: of the users born (first `retention.birth_event`) on day - 8, the share who came back
  within rolling days 1-7 ([birth + 24 h, birth + 192 h)); segment from the birth event;
- `weekly_return`: of the returning users (first active before that week) active on days day-13..day-7, the
  share active again on days day-6..day; segment: every value they touched that week.

The test of day D (its row's p_value, q_value, direction, significant):
- `first_week_return`: the 7 latest closed birth days pooled (the rows of D-6..D: births D-14..D-8) against
  the 28 birth days before them, in 4 weekly groups (the rows of D-34..D-7);
- `weekly_return`: the row of D against the rows of D-14, D-21, D-28 and D-35 (weeks that share no day
  with D's two weeks).
q-values are Benjamini-Hochberg across every series tested that day (both metrics, every segment and the
totals). The SQL is sql/analysis/return_rates.sql; the `segments` asset writes the table.
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb

from hitcraft_assets.analysis import stats
from hitcraft_assets.analysis.metrics import ensure_first_days
from hitcraft_assets.analysis.retention import NOT_SET, returned_by_segment
from hitcraft_assets.config import ProductConfig
from hitcraft_assets.analysis.return_change import judge
from hitcraft_assets.warehouse import existing_tables, named_statements, run_sql

SQL_FILE = "analysis/return_rates.sql"
FIRST_WEEK = "first_week_return"
WEEKLY = "weekly_return"
METRICS = (FIRST_WEEK, WEEKLY)
FIRST_WEEK_CLOSES_DAYS = 8     # a birth day's rolling days 1-7 are over 8 days later, at the end of the day
RECENT_DAYS = 7                # first_week_return: the birth days pooled as "recent"
BASELINE_WEEKS = 4             # ... and the weeks of birth days before them
WEEKLY_BASELINE_LAGS = (14, 21, 28, 35)
HISTORY_DAYS = 35              # the stored days a test reads
FDR_Q = 0.05


def series_rows(conn: duckdb.DuckDBPyConnection, day: date, config: ProductConfig) -> list[tuple]:
    """(metric, dimension, segment, cohort_from, cohort_to, trials, successes) of the day, totals included."""
    statements = named_statements(SQL_FILE)
    cohort = day - timedelta(days=FIRST_WEEK_CLOSES_DAYS)
    segments, users, returned = returned_by_segment(conn, day, config, cohort, cohort, timedelta(days=1),
                                                    timedelta(days=FIRST_WEEK_CLOSES_DAYS))
    out = [(FIRST_WEEK, "all", "all", cohort, cohort, users, returned)] if users else []
    out += [(FIRST_WEEK, r.dimension, r.segment, cohort, cohort, r.users, r.retained) for r in segments]
    if "core.user_days" not in existing_tables(conn):
        return out
    ensure_first_days(conn)
    week_a = (day - timedelta(days=13), day - timedelta(days=7))
    for dim, seg, n, x in run_sql(conn, statements["weekly"], {
            "dim_names": [d.name for d in config.dimensions], "not_set": NOT_SET, "day": day.isoformat(),
            "week_a_from": week_a[0].isoformat(), "week_a_to": week_a[1].isoformat(),
            "week_b_from": (day - timedelta(days=6)).isoformat()}).fetchall():
        out.append((WEEKLY, dim, seg, week_a[0], week_a[1], int(n), int(x)))
    return out


def _windows(metric: str, day: date) -> tuple[list[date], list[list[date]]]:
    """The rows' days (metric_date) of the recent cohorts, and of each baseline week."""
    if metric == FIRST_WEEK:
        recent = [day - timedelta(days=i) for i in range(RECENT_DAYS)]
        weeks = [[day - timedelta(days=RECENT_DAYS * (w + 1) + i) for i in range(RECENT_DAYS)]
                 for w in range(BASELINE_WEEKS)]
        return recent, weeks
    return [day], [[day - timedelta(days=lag)] for lag in WEEKLY_BASELINE_LAGS]


def _gap(c_from: date, known_on: date, outages: set[date]) -> bool:
    """Whether a rate's window (its cohort's first day to the day it is known on) holds a data outage."""
    return any(c_from <= d <= known_on for d in outages)


def judged_rows(day: date, today: list[tuple], history: list[tuple], outages: set[date] = frozenset()
                ) -> list[tuple]:
    """Table rows: each of today's series with its test against the stored rows of the days before
    (history: metric_date, metric, dimension, segment, trials, successes, cohort_from, cohort_to), q-values
    across the day's tests. A rate whose window holds an outage day (`outages`) is not tested, nor used."""
    by_series: dict[tuple, dict[date, tuple]] = {}
    for d, metric, dim, seg, n, x, c_from, c_to in history:
        if not _gap(c_from, d, outages):
            by_series.setdefault((metric, dim, seg), {})[d] = (int(x), int(n), c_from, c_to)
    tested = []
    for metric, dim, seg, c_from, c_to, n, x in today:
        base = (day, metric, dim, seg, c_from, c_to, n, x, x / n if n else 0.0)
        if _gap(c_from, day, outages):
            tested.append((base, None, None))
            continue
        rows = by_series.setdefault((metric, dim, seg), {})
        rows[day] = (x, n, c_from, c_to)
        recent_days, weeks = _windows(metric, day)
        recent = [rows[d] for d in recent_days if d in rows]
        groups = [[rows[d] for d in w if d in rows] for w in weeks]
        judged = judge((sum(r[0] for r in recent), sum(r[1] for r in recent)),
                       [(sum(r[0] for r in g), sum(r[1] for r in g)) for g in groups if g])
        spans = {"recent": (min(r[2] for r in recent), max(r[3] for r in recent)) if recent else (None, None),
                 "baseline": (min(r[2] for g in groups for r in g), max(r[3] for g in groups for r in g))
                 if any(groups) else (None, None)}
        tested.append((base, spans, judged))
    q = iter(stats.benjamini_hochberg([j.p_value for _, _, j in tested if j is not None]))
    out = []
    for base, spans, j in tested:
        if j is None:
            out.append((*base, None, None, None, None, None, None, None, None, None, None, None, None, None))
            continue
        qi = float(next(q))
        out.append((*base, *spans["recent"], j.recent_trials, j.recent_successes, *spans["baseline"],
                    j.baseline_trials, j.baseline_successes, j.between_var, j.p_value, qi, j.direction,
                    bool(qi <= FDR_Q)))
    return out


def compute_return_rates(conn: duckdb.DuckDBPyConnection, day: date, config: ProductConfig) -> list[tuple]:
    """The day's rows of analytics.return_rates (the caller writes them in its transaction)."""
    statements = named_statements(SQL_FILE)
    conn.execute(statements["create_table"])
    today = series_rows(conn, day, config)
    # a stored row's window begins up to 13 days before the day it is known on: its outages are read too
    params = {"day": day.isoformat(), "from_day": (day - timedelta(days=HISTORY_DAYS + 14)).isoformat()}
    history = run_sql(conn, statements["history"], params).fetchall()
    outages = ({r[0] for r in run_sql(conn, statements["outages"], params).fetchall()}
               if "raw.load_log" in existing_tables(conn) else set())
    return judged_rows(day, today, history, outages)
