"""Daily metrics of one local reporting day: core.user_days, then analytics.daily_metrics (long format).

Mixpanel's semantics (docs/reports/insights.mdx): DAU/WAU/MAU are the distinct users active in the 1/7/30
local days ending on the day (MAU of Dec 31 = Dec 2..Dec 31); a user counts in every segment they touched,
so segments do not sum to the total; in WAU/MAU a user counts in a segment touched on any day of the
window. A list-valued property (`genres: ["pop", "rock"]`) puts the user, the session and the event in
each element's segment, once (Mixpanel's breakdown by a list property), so an event counts in pop and in
rock. new_users are users with no earlier day in core.user_days, whose history starts at the first
stored event: on the first loaded day everyone is new. Users are re-resolved through the current identity
map, so a device that signs up days after browsing anonymously is one user, not new again. The SQL is
sql/analysis/daily_metrics.sql; the metric names are listed in METRICS.

Order of work, and what it needs:
- compute_sessions(day) must have run first: session metrics come from core.sessions, and a day whose
  sessions were not computed from the same events fails with SESSIONS_NOT_CURRENT instead of reporting
  wrong numbers.
- WAU, MAU and new users read core.user_days of earlier days, never their raw events. Earlier days whose
  user_days are missing, or were built with another timezone or other dimensions, are built first (from the
  first stored event on), in the same transaction; so the result does not depend on the order in which
  days are materialized, and in the steady state a day reads only its own events.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import duckdb

from hitcraft_assets.analysis.sessions import day_params, ensure_sessions
from hitcraft_assets.config import ProductConfig
from hitcraft_assets.warehouse import named_statements, run_named, transaction

SQL_FILE = "analysis/daily_metrics.sql"
METRICS = ("dau", "wau", "mau", "stickiness", "new_users", "sessions", "session_duration_median_s",
           "session_duration_mean_s", "events_per_session", "event_count:<event>", "event_users:<event>")


class MetricsError(RuntimeError):
    """A day's metrics cannot be computed as asked; the message starts with a stable code."""


def ensure_metrics(conn: duckdb.DuckDBPyConnection) -> None:
    ensure_sessions(conn)
    conn.execute(named_statements(SQL_FILE)["schema"])


def signature(config: ProductConfig) -> str:
    """What core.user_days rows depend on besides the events: the timezone, the dimensions and the rule
    that turns a property into segments (`segments`: list elements and dotted paths, sessions.sql macros;
    rows built before it are rebuilt)."""
    return json.dumps({"timezone": config.timezone,
                       "dimensions": [[d.name, d.property] for d in config.dimensions],
                       "segments": "lists+nested"})


def _params(day: date, config: ProductConfig) -> dict:
    return {**day_params(day, config), "signature": signature(config)}


def _build_user_days(conn: duckdb.DuckDBPyConnection, params: dict) -> None:
    """Replace the day's core.user_days rows, and keep core.user_first_days in step with them."""
    for name in ("day_events", "delete_user_days", "delete_user_days_log", "insert_user_days", "log_user_days",
                 "first_days_gone", "first_days_forget", "first_days_refind", "first_days_earlier", "first_days_new",
                 "first_days_drop"):
        run_named(conn, SQL_FILE, name, params)


def ensure_first_days(conn: duckdb.DuckDBPyConnection) -> None:
    """core.user_first_days exists and holds every pair of core.user_days (for readers that may run on a
    warehouse whose daily metrics were built before the table existed)."""
    conn.execute(named_statements(SQL_FILE)["schema"])
    _ensure_first_days(conn)


def _ensure_first_days(conn: duckdb.DuckDBPyConnection) -> None:
    """core.user_first_days from core.user_days when it is empty and they are not (built before it existed)."""
    first_days, user_days = run_named(conn, SQL_FILE, "first_days_count", {}).fetchall()[0]
    if first_days == 0 and user_days > 0:
        conn.execute(named_statements(SQL_FILE)["first_days_rebuild"])


def _days_to_backfill(conn: duckdb.DuckDBPyConnection, day: date, config: ProductConfig) -> list[date]:
    """Local days before `day`, from the first stored event's day on, whose user_days are not built with
    the current signature."""
    first = run_named(conn, SQL_FILE, "first_event_time", {}).fetchall()[0][0]
    if first is None:
        return []
    first_day = first.astimezone(ZoneInfo(config.timezone)).date() if isinstance(first, datetime) else first
    built = {row[0] for row in run_named(conn, SQL_FILE, "built_days", {"signature": signature(config)}).fetchall()}
    days, d = [], first_day
    while d < day:
        if d not in built:
            days.append(d)
        d += timedelta(days=1)
    return days


def compute_daily_metrics(conn: duckdb.DuckDBPyConnection, day: date, config: ProductConfig) -> dict:
    """Replace core.user_days and analytics.daily_metrics for local day `day`, in one transaction.

    Requires compute_sessions(conn, day, config) to have run on the same events. An empty day (no events)
    still gets its totals: dau, new_users and sessions 0, and WAU/MAU of its window."""
    ensure_metrics(conn)
    params = _params(day, config)
    try:
        with transaction(conn):
            _ensure_first_days(conn)
            backfilled = _days_to_backfill(conn, day, config)
            for earlier in backfilled:
                _build_user_days(conn, _params(earlier, config))
            _build_user_days(conn, params)
            events, session_events = run_named(conn, SQL_FILE, "sessions_check", params).fetchall()[0]
            if events != session_events:
                raise MetricsError(
                    f"SESSIONS_NOT_CURRENT: {day} has {events} events but its core.sessions hold {session_events}; "
                    f"run compute_sessions for {day} (the sessions asset) before the daily metrics")
            run_named(conn, SQL_FILE, "delete_metrics", params)
            run_named(conn, SQL_FILE, "insert_metrics", params)
            rows, dau, wau, mau, new_users, sessions = run_named(conn, SQL_FILE, "day_summary", params).fetchall()[0]
    finally:
        run_named(conn, SQL_FILE, "drop_day_events", {})
    return {
        "day": day.isoformat(),
        "timezone": config.timezone,
        "rows": int(rows),
        "events": int(events),
        "dau": int(dau or 0),
        "wau": int(wau or 0),
        "mau": int(mau or 0),
        "new_users": int(new_users or 0),
        "sessions": int(sessions or 0),
        "user_days_backfilled": len(backfilled),
        "user_days_backfilled_days": [d.isoformat() for d in backfilled],
    }
