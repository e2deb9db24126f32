"""Segment comparisons: for each day, every segment of every configured dimension against the rest of the
users, on conversion, retention and engagement, with a significance test and a false-discovery control.

Why it exists: "Android converts worse at sketch upload" is only a finding if it is not noise. Scanning
every segment x metric every day makes dozens of comparisons, so some will look "significant" by chance;
Benjamini-Hochberg q-values over all of the day's comparisons keep the share of false findings near 5%,
and minimum sample sizes keep tiny segments out altogether. The insights stage reads these rows.

Comparisons (each a segment S of dimension D against everyone else in D on the same day):
- `funnel:<funnel>:step<k>`: first-day conversion from step k-1 to k (within 86,400 s of entry) of the funnel
  cohort that entered the day before: final by the end of the day, the same elapsed time for every segment, from
  analytics.funnel_steps (rest = the funnel's 'all' row minus S: a user is in S at most once).
- `week1_retention`: share of the users born on local days day-20..day-14 (the latest birth week whose
  week 1 is over by the end of the day) who came back 7 to 14 days (168-336 hours) after birth, Mixpanel's
  rolling week 1; segment = the dimension's value on the birth event.
- `session_duration_s`: per user, the mean length of the user's sessions of the day (core.sessions),
  Mann-Whitney U over users: a user's sessions are not independent samples, so sessions are not the units.
- `events_per_user`: events per active user of the day, Mann-Whitney U, from core.identified_events
  (segment = the user's first value that day; core.user_days is not used because its segments list every
  value a user touched, and a comparison needs each user on exactly one side).
A list-valued property (`genres: ["pop", "rock"]`) puts a unit in each element's segment, so a dimension's
segments may overlap; the rest is always the units not in the segment (each once): for funnels the 'all'
row minus S (a user is in S at most once), for retention the cohort's own total minus S, for the samples
the units (sessions, users) without S. For scalar properties every unit is in one segment and nothing
changes. Proportions use a z-test, chi-square (Yates) or Fisher's exact test depending on the expected cell counts
(see stats.py). Statistics live in stats.py; the inputs' SQL in sql/analysis/segments.sql.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from datetime import date, timedelta

import duckdb
import numpy as np

from hitcraft_assets.analysis import stats
from hitcraft_assets.analysis.identity import ensure_identity
from hitcraft_assets.analysis.return_rates import compute_return_rates
from hitcraft_assets.analysis.days import local_day
from hitcraft_assets.analysis.retention import WEEK1_LAST_BIRTH_DAYS_AGO, NOT_SET, births_current, week1_cohort
from hitcraft_assets.analysis.sessions import day_params, ensure_segment_macros, property_pairs
from hitcraft_assets.config import ProductConfig
from hitcraft_assets.warehouse import ensure_schema, named_statements, run_sql, transaction

SQL_FILE = "analysis/segments.sql"
RETURN_RATES_SQL = "analysis/return_rates.sql"

# A proportion comparison has no size floor per side: its test is exact where counts are small (Fisher's),
# so a segment of 8 users is judged by the evidence it has, and the day's Benjamini-Hochberg correction
# covers the extra rows. It needs at least MIN_OUTCOMES successes and MIN_OUTCOMES failures in the two groups
# together (the 2x2 table's column totals: with fewer, no test could reach significance). It is deliberately
# not required per side: a segment at 0% against a rest at 40% is the strongest finding there is, and
# Fisher's test handles its zero cell.
MIN_OUTCOMES = 5
# A rank comparison (Mann-Whitney U, normal approximation) needs MIN_SIDE_N users on each side: below about
# 10 the approximation's p-values are not to be trusted.
MIN_SIDE_N = 10
# False discovery rate at which a comparison is called significant.
FDR_Q = 0.05

METRIC_SESSION_DURATION = "session_duration_s"
METRIC_WEEK1_RETENTION = "week1_retention"
METRIC_EVENTS_PER_USER = "events_per_user"


def funnel_metric(funnel: str, step: int) -> str:
    return f"funnel:{funnel}:step{step}"


@dataclass(frozen=True)
class Comparison:
    """One segment against the rest on one metric (before the day's q-values are known)."""

    metric: str
    dimension: str
    segment: str
    segment_n: int
    rest_n: int
    segment_value: float
    rest_value: float
    effect: float
    effect_size: float | None
    test: str
    statistic: float | None
    p_value: float


def compare_proportions(metric: str, dimension: str, segment: str,
                        x1: int, n1: int, x2: int, n2: int) -> Comparison | None:
    """Segment x1/n1 against rest x2/n2, or None without enough outcomes to test."""
    if n1 < 1 or n2 < 1 or not (0 <= x1 <= n1 and 0 <= x2 <= n2):
        return None
    if x1 + x2 < MIN_OUTCOMES or (n1 - x1) + (n2 - x2) < MIN_OUTCOMES:
        return None
    test, statistic, p = stats.two_proportion_test(x1, n1, x2, n2)
    p1, p2 = x1 / n1, x2 / n2
    return Comparison(metric, dimension, segment, n1, n2, p1, p2, p1 - p2, stats.cohens_h(p1, p2),
                      test, statistic, p)


def compare_samples(metric: str, dimension: str, segment: str,
                    a: np.ndarray, b: np.ndarray) -> Comparison | None:
    """Values of the segment against those of the rest (Mann-Whitney U), or None below the minimum sizes."""
    if a.size < MIN_SIDE_N or b.size < MIN_SIDE_N:
        return None
    u, p, r = stats.mann_whitney(a, b)
    if np.isnan(p):
        return None
    m1, m2 = float(a.mean()), float(b.mean())
    return Comparison(metric, dimension, segment, int(a.size), int(b.size), m1, m2, m1 - m2, r,
                      stats.MANN_WHITNEY, u, p)


def compare_each_segment(metric: str, dimensions: np.ndarray, segments: np.ndarray,
                         values: np.ndarray, units: np.ndarray | None = None) -> list[Comparison]:
    """Every segment of every dimension against the rest of that dimension. Without `units`, each row is a
    unit in exactly one segment of its dimension. With `units` (one id per row), a unit may have a row per
    segment (a list-valued property): the rest of a segment is then the units without it, each once."""
    out = []
    for dim in sorted(set(dimensions.tolist())):
        in_dim = dimensions == dim
        segs, vals = segments[in_dim], values[in_dim]
        if units is not None:
            # units as integer codes, so a segment's rest is one boolean lookup, not a sort of ids (np.isin
            # on 30,000 string ids per segment was most of a big product's day)
            _, index, codes = np.unique(units[in_dim], return_index=True, return_inverse=True)
            first = np.sort(index)                                     # a unit's first row, in row order
        for seg in sorted(set(segs.tolist())):
            mask = segs == seg
            if units is None:
                a, b = vals[mask], vals[~mask]
            else:
                has = np.zeros(index.size, dtype=bool)
                has[codes[mask]] = True
                a, b = vals[mask], vals[first[~has[codes[first]]]]
            found = compare_samples(metric, dim, seg, a, b)
            if found:
                out.append(found)
    return out


def with_q_values(comparisons: list[Comparison]) -> list[tuple]:
    """Rows of the table (without metric_date): each comparison with its BH q-value over all of them."""
    q = stats.benjamini_hochberg([c.p_value for c in comparisons])
    return [(*astuple(c), float(qi), bool(qi < FDR_Q)) for c, qi in zip(comparisons, q)]


def _columns(conn: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
    tables: dict[str, dict[str, str]] = {}
    for table, column, dtype in conn.execute(named_statements(SQL_FILE)["table_columns"]).fetchall():
        tables.setdefault(table, {})[column] = dtype
    return tables


def _has_segment_map(columns: dict[str, str] | None, required: set[str]) -> bool:
    """The table has the `required` columns and a `segments` MAP(VARCHAR, VARCHAR) column (dimension ->
    the unit's one value)."""
    if not columns or not required <= set(columns):
        return False
    return columns.get("segments", "").replace(" ", "").upper() == "MAP(VARCHAR,VARCHAR)"


def _samples(conn, statement: str, params: dict) -> tuple[np.ndarray, ...]:
    """dimension, segment and value per row, and the unit (session, user) when the statement names it."""
    got = run_sql(conn, named_statements(SQL_FILE)[statement], params).fetchnumpy()
    return (np.asarray(got["dimension"], dtype=object), np.asarray(got["segment"], dtype=object),
            np.asarray(got["value"], dtype=float),
            np.asarray(got["unit"], dtype=object) if "unit" in got else None)


def funnel_comparisons(conn, params: dict) -> list[Comparison]:
    out = []
    for funnel, step, dim, seg, seg_prev, seg_users, all_prev, all_users in run_sql(
            conn, named_statements(SQL_FILE)["funnel_counts"], params).fetchall():
        found = compare_proportions(funnel_metric(funnel, step), dim, seg, seg_users, seg_prev,
                                    all_users - seg_users, all_prev - seg_prev)
        if found:
            out.append(found)
    return out


def week1_comparisons(conn, day: date, config: ProductConfig) -> list[Comparison]:
    by_dim: dict[str, list] = {}
    segments, total_n, total_x = week1_cohort(conn, day, config)   # each user once, whatever the segments
    for r in segments:
        by_dim.setdefault(r.dimension, []).append(r)
    out = []
    for dim, rows in sorted(by_dim.items()):
        for r in rows:
            found = compare_proportions(METRIC_WEEK1_RETENTION, dim, r.segment, r.retained, r.users,
                                        total_x - r.retained, total_n - r.users)
            if found:
                out.append(found)
    return out


def compute_segments(conn: duckdb.DuckDBPyConnection, day: date, config: ProductConfig) -> dict:
    """Replace the day's rows of analytics.segment_comparisons in one transaction; returns metadata."""
    ensure_schema(conn)
    ensure_identity(conn)
    statements = named_statements(SQL_FILE)
    conn.execute(statements["create_table"])
    ensure_segment_macros(conn)
    params = {**day_params(day, config), "dim_names": [d.name for d in config.dimensions],
              "dim_paths": property_pairs(d.property for d in config.dimensions), "not_set": NOT_SET}
    tables = _columns(conn)
    skipped: dict[str, str] = {}
    comparisons: list[Comparison] = []

    if "analytics.funnel_steps" in tables:
        comparisons += funnel_comparisons(conn, params)
    else:
        skipped["funnels"] = "analytics.funnel_steps does not exist yet"
    cohorts_from = None
    if config.dimensions:
        comparisons += week1_comparisons(conn, day, config)
        week1_births_to = local_day(day - timedelta(days=WEEK1_LAST_BIRTH_DAYS_AGO), config.timezone).end
        cohorts_from = ("core.retention_births" if births_current(conn, config, week1_births_to)
                        else "events (retention has not run since the last load)")
        sessions = tables.get("core.sessions")
        if sessions is None:
            skipped[METRIC_SESSION_DURATION] = "core.sessions does not exist yet"
        elif not _has_segment_map(sessions, {"session_date", "duration_s"}):
            skipped[METRIC_SESSION_DURATION] = ("core.sessions lacks session_date, duration_s or a "
                                                "segments MAP(VARCHAR, VARCHAR) column")
        else:
            lists = sessions.get("segment_lists", "").replace(" ", "").upper() == "MAP(VARCHAR,VARCHAR[])"
            comparisons += compare_each_segment(METRIC_SESSION_DURATION, *_samples(
                conn, "session_segment_durations" if lists else "session_durations", params))
        comparisons += compare_each_segment(METRIC_EVENTS_PER_USER, *_samples(conn, "events_per_user", params))
    else:
        skipped["dimensions"] = "the config defines no dimensions"

    rows = [(day, *row) for row in with_q_values(comparisons)]
    returns = compute_return_rates(conn, day, config)
    return_sql = named_statements(RETURN_RATES_SQL)
    with transaction(conn):
        run_sql(conn, statements["delete_day"], params)
        if rows:
            conn.executemany(statements["insert_row"], rows)
        run_sql(conn, return_sql["delete_day"], params)
        if returns:
            conn.executemany(return_sql["insert_row"], returns)
    by_metric: dict[str, int] = {}
    for c in comparisons:
        key = "funnel steps" if c.metric.startswith("funnel:") else c.metric
        by_metric[key] = by_metric.get(key, 0) + 1
    significant = sorted((r for r in rows if r[-1]), key=lambda r: r[-2])
    return {
        "rows": len(rows),
        "significant": len(significant),
        "comparisons_by_metric": by_metric,
        "skipped": skipped,
        "top_findings": [describe(r) for r in significant[:5]],
        "return_rates": len(returns),
        # where the week-1 cohort's births came from (None: no dimensions, no cohort)
        "week1_cohort_from": cohorts_from,
        "return_rate_changes": [f"{r[1]} {r[2]}={r[3]}: {r[12] / r[11]:.3g} vs {r[16] / r[15]:.3g} "
                                f"({r[20]}, q {r[19]:.2g})" for r in returns if r[21]][:5],
    }


def describe(row: tuple) -> str:
    """One line for a person: `week1_retention platform=iOS: 0.8 vs 0.163 (n 40 vs 43, fisher, q 1e-08)`."""
    _, metric, dim, seg, n1, n2, v1, v2, _, _, test, _, _, q, _ = row
    return f"{metric} {dim}={seg}: {v1:.3g} vs {v2:.3g} (n {n1} vs {n2}, {test}, q {q:.2g})"
