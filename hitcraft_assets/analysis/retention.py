"""Cohort retention as Mixpanel reports it by default, and week-1 retention by segment.

Why it exists: "do people who sign up come back?" is the question the product's goals turn on, and the
answer must match what the team sees in Mixpanel's Retention report, so the semantics are Mixpanel's
defaults (see the SQL file): first-time retention, rolling weeks from each user's birth, "on or after"
(with "on" alongside), users counted after identity merge, cohorts by birth week in the reporting
timezone, and buckets whose period is not over flagged incomplete, as Mixpanel marks them with `*`.
The SQL is sql/analysis/retention.sql; this module picks the parameters and writes the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

import duckdb

from hitcraft_assets.analysis.days import local_day
from hitcraft_assets.analysis.identity import ensure_identity
from hitcraft_assets.analysis.sessions import ensure_segment_macros, property_pairs
from hitcraft_assets.config import ProductConfig
from hitcraft_assets.warehouse import ensure_schema, named_statements, run_sql, run_statements, transaction

SQL_FILE = "analysis/retention.sql"
DEFAULT_WEEKS = 8
# Week-1 retention of day D is measured on users born on D-20..D-14: the latest birth week whose rolling
# week 1 is over by the end of D.
WEEK1_LAST_BIRTH_DAYS_AGO = 14
# The segment of a missing or empty property (as in analytics.funnel_steps, core.sessions, daily_metrics).
NOT_SET = "(none)"


def event_params(config: ProductConfig) -> dict:
    """The birth and return events of the config (None: any event)."""
    return {"birth_event": config.retention.get("birth_event"),
            "return_event": config.retention.get("return_event")}


def data_cutoff(conn: duckdb.DuckDBPyConnection, tz: str, as_of: date | None) -> datetime | None:
    """The instant up to which events are counted: the end of local day `as_of`, but never past the end of
    the last loaded UTC day (the data horizon); the horizon itself when `as_of` is None. None: no data."""
    last_day = run_sql(conn, named_statements(SQL_FILE)["data_horizon"], {}).fetchall()[0][0]
    if last_day is None:
        return None
    horizon = datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=timezone.utc)
    if as_of is None:
        return horizon
    return min(local_day(as_of, tz).end, horizon)


def compute_retention(conn: duckdb.DuckDBPyConnection, config: ProductConfig, as_of: date | None = None,
                      weeks: int = DEFAULT_WEEKS, from_events: bool = False) -> dict:
    """Compute analytics.retention whole, in one transaction; returns numbers for the asset's metadata.

    Each user's birth and return weeks come from a per-day summary kept up to date by reading only the days
    loaded since the last run (core.retention_id_days, core.retention_days); `from_events` reads every event
    instead (the definition the summary must equal, for tests and checks)."""
    if weeks < 1:
        raise ValueError(f"RETENTION_WEEKS: weeks must be at least 1, got {weeks}")
    ensure_schema(conn)
    ensure_identity(conn)
    statements = named_statements(SQL_FILE)
    cutoff = data_cutoff(conn, config.timezone, as_of)
    params = {**event_params(config), "tz": config.timezone, "cutoff": cutoff, "weeks": weeks}
    summarized = 0
    with transaction(conn):
        conn.execute(statements["create_table"])
        if cutoff is not None:
            if from_events:
                run_statements(conn, statements["births_returns_from_events"], params)
            else:
                conn.execute(statements["summary_schema"])
                run_statements(conn, statements["summary_changed"], params)
                (summarized,) = conn.execute("select count(*) from hc_retention_changed").fetchone()
                run_statements(conn, statements["summary_update"], params)
                run_statements(conn, statements["births_returns"], params)
            run_sql(conn, statements["insert"], params)
            conn.execute(statements["births_schema"])
            run_statements(conn, statements["births_keep"], params)
            for table in ("hc_retention_changed", "hc_retention_rows", "hc_retention_births", "hc_retention_returns"):
                conn.execute(f"drop table if exists temp.{table}")
    rows, cohorts, users, complete = conn.execute(
        "select count(*), count(distinct cohort_week), "
        "coalesce(sum(cohort_size) filter (where weeks_since = 0 and measure = 'on'), 0), count_if(complete) "
        "from analytics.retention").fetchall()[0]
    week1 = conn.execute(
        "select sum(retained_users) / sum(cohort_size) from analytics.retention "
        "where weeks_since = 1 and measure = 'on_or_after' and complete").fetchall()[0][0]
    return {
        "rows": rows,
        "cohorts": cohorts,
        "users": int(users),
        "complete_rows": complete,
        "cutoff": cutoff.isoformat() if cutoff else None,
        "days_summarized": summarized,   # UTC days read from their events this run (the others were kept)
        "weeks": weeks,
        "birth_event": params["birth_event"] or "(any event)",
        "return_event": params["return_event"] or "(any event)",
        # Mixpanel's unsegmented average: users-weighted over complete cohorts only
        "week1_on_or_after_complete": float(week1) if week1 is not None else None,
    }


@dataclass(frozen=True)
class SegmentRetention:
    """Week-1 retention of one segment of one dimension: `retained` of `users` came back in days 7-13."""

    dimension: str
    segment: str
    users: int
    retained: int


def week1_retention_by_segment(conn: duckdb.DuckDBPyConnection, day: date,
                               config: ProductConfig) -> list[SegmentRetention]:
    """Users born on the 7 local days day-20..day-14, by the value of each configured dimension on their
    birth event, and how many of them returned in their rolling week 1 ([birth + 7 days, birth + 14 days)).

    The window is the latest week whose users' week 1 is entirely over by the end of `day`: a user born on
    day-14 at 23:59 has week 1 until day at 23:59. (Births on day-13..day-7 would still be inside week 1.)
    A list-valued property puts a user in each element's segment, so segments may sum to more than the
    cohort (week1_cohort gives its own totals).
    """
    return week1_cohort(conn, day, config)[0]


def week1_cohort(conn: duckdb.DuckDBPyConnection, day: date, config: ProductConfig,
                 from_events: bool = False) -> tuple[list[SegmentRetention], int, int]:
    """week1_retention_by_segment, and the cohort's users and retained users, each user counted once (the
    total a segment is compared against: the segments of a list dimension overlap)."""
    if not config.dimensions:
        return [], 0, 0
    return returned_by_segment(conn, day, config, day - timedelta(days=WEEK1_LAST_BIRTH_DAYS_AGO + 6),
                               day - timedelta(days=WEEK1_LAST_BIRTH_DAYS_AGO), timedelta(days=7),
                               timedelta(days=14), from_events=from_events)


def births_current(conn: duckdb.DuckDBPyConnection, config: ProductConfig, until: datetime) -> bool:
    """Whether the births retention kept (core.retention_births) are those of what the warehouse holds now,
    for every birth before `until`: the same loaded days, load log rows, identity and birth event."""
    ensure_identity(conn)
    statements = named_statements(SQL_FILE)
    conn.execute(statements["births_schema"])
    params = {**event_params(config), "births_until": until}
    return run_sql(conn, statements["births_current"], params).fetchall()[0][0] > 0


def returned_by_segment(conn: duckdb.DuckDBPyConnection, day: date, config: ProductConfig, first_birth_day: date,
                        last_birth_day: date, return_from: timedelta, return_to: timedelta,
                        from_events: bool = False) -> tuple[list[SegmentRetention], int, int]:
    """Users born on local days first_birth_day..last_birth_day who came back in [birth + return_from,
    birth + return_to), by segment of the birth event, and the cohort's own totals; events up to the end of
    `day` only. The cohort comes from the births retention kept when they are current (births_current),
    else (and with `from_events`) from the events."""
    ensure_identity(conn)
    ensure_segment_macros(conn)
    births_to = local_day(last_birth_day, config.timezone).end
    end_ts = local_day(day, config.timezone).end
    kept = not from_events and births_current(conn, config, min(births_to, end_ts))
    params = {
        **event_params(config), "tz": config.timezone,
        "first_birth_day": first_birth_day.isoformat(), "last_birth_day": last_birth_day.isoformat(),
        "return_from_ms": int(return_from.total_seconds() * 1000),
        "return_to_ms": int(return_to.total_seconds() * 1000),
        "end_ts": end_ts,
        "births_from": local_day(first_birth_day, config.timezone).start,
        "births_to": births_to,
        "dim_names": [d.name for d in config.dimensions],
        "dim_paths": property_pairs(d.property for d in config.dimensions),
        "not_set": NOT_SET,
    }
    statements = named_statements(SQL_FILE)
    run_sql(conn, statements["cohort_from_births" if kept else "cohort_from_events"], params)
    try:
        rows = run_sql(conn, statements["week1_by_segment"], params).fetchall()
    finally:
        conn.execute("drop table if exists temp.hc_cohort")
    users, retained = (int(rows[0][4]), int(rows[0][5])) if rows else (0, 0)
    return [SegmentRetention(dim, seg, int(n), int(r)) for dim, seg, n, r, _, _ in rows], users, retained
