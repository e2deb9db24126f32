"""Sessions: Mixpanel's timeout-based sessions of one local reporting day into core.sessions.

Semantics (Mixpanel, docs/features/sessions.mdx), per user_key (identity merge applied):
- an event at most `session_timeout_minutes` after the user's previous event continues the session (a gap
  of exactly the timeout continues it; one microsecond more starts a new one);
- the session ends at its last event (duration = end - start; a one-event session lasts 0 s);
- sessions reset at midnight of the reporting timezone, so a session never spans two local days.
The last rule is what makes the day a clean partition: compute_sessions(day) reads only the events of
[local midnight, next local midnight), and an activity that runs across midnight is cut there, exactly
where Mixpanel cuts it; the part before midnight belongs to day D's partition, the part after it to D+1's,
and neither partition needs, nor can count, the other's events.

A session's segments are its first event's values. A list-valued property (`genres: ["pop", "rock"]`) puts
the session in each distinct element's segment (core.sessions.segment_lists; `segments` keeps one label per
dimension). The macros of sessions.sql (ensure_segment_macros) are how every analysis statement reads a
configured property: literal top-level key first, else the nested path of a dotted name (property_pairs).
"""

from __future__ import annotations

from datetime import date

import duckdb

from hitcraft_assets.analysis.days import local_day, scan_days, sql_params
from hitcraft_assets.analysis.identity import ensure_identity
from hitcraft_assets.config import ProductConfig, property_path
from hitcraft_assets.warehouse import ensure_schema, named_statements, run_named, transaction

SQL_FILE = "analysis/sessions.sql"
NONE_SEGMENT = "(none)"
SESSION_COLUMNS = ("platform", "country", "utm_source")


def property_pairs(names) -> list[list[str]]:
    """Per property name, its [literal, nested] JSON pointers (config.property_path), the form in which every
    statement takes properties: the macros of sessions.sql read the literal top-level key when an event has
    it, else the nested path of a dotted name."""
    return [[property_path(n), property_path(n, nested=True)] for n in names]


def ensure_segment_macros(conn: duckdb.DuckDBPyConnection) -> None:
    """Create the temp macros (sessions.sql `macros`) by which statements read properties and segments."""
    conn.execute(named_statements(SQL_FILE)["macros"])


def dimension_params(config: ProductConfig) -> dict:
    """The configured dimensions as two parallel lists: names and JSON pointer pairs of their properties;
    and the pointer pairs of the properties behind core.sessions' platform, country and utm_source columns
    (config `session_properties`; a column set to null stays null).

    The names become map keys and segment labels, the paths go in as parameters: no property name is ever
    interpolated into SQL (config.property_path is the one rule for every builder)."""
    config.check()
    columns = [config.session_properties.get(c) for c in SESSION_COLUMNS]
    return {"dim_names": [dim.name for dim in config.dimensions],
            "dim_paths": property_pairs(dim.property for dim in config.dimensions),
            "session_paths": property_pairs(p or "" for p in columns),
            "session_set": [p is not None for p in columns],
            # events with a key property (config event_properties), its name and JSON pointer pair
            "kp_events": list(config.event_properties) or [""],
            "kp_names": list(config.event_properties.values()) or [""],
            "kp_paths": property_pairs(config.event_properties.values()) or [["/", "/"]]}


def day_params(day: date, config: ProductConfig) -> dict:
    """Everything a statement of local day `day` may take: the local day's UTC bounds, the export days to
    scan (widened by the load's time tolerance: a file may hold events up to that far outside its day), the
    session timeout, the dimensions."""
    params = sql_params(local_day(day, config.timezone))
    params.update(dimension_params(config))
    scan_from, scan_to = scan_days(day, config)
    params.update({"scan_from": scan_from.isoformat(), "scan_to": scan_to.isoformat(),
                   "timeout_s": config.session_timeout_minutes * 60})
    return params


def ensure_sessions(conn: duckdb.DuckDBPyConnection) -> None:
    ensure_schema(conn)
    ensure_identity(conn)
    conn.execute(named_statements(SQL_FILE)["schema"])
    ensure_segment_macros(conn)


def compute_sessions(conn: duckdb.DuckDBPyConnection, day: date, config: ProductConfig) -> dict:
    """Replace core.sessions for local day `day` in one transaction; returns figures for metadata."""
    ensure_sessions(conn)
    params = day_params(day, config)
    with transaction(conn):
        run_named(conn, SQL_FILE, "delete_day", params)
        run_named(conn, SQL_FILE, "insert_day", params)
        sessions, users, events, median = run_named(conn, SQL_FILE, "day_summary", params).fetchall()[0]
    return {
        "day": day.isoformat(),
        "timezone": config.timezone,
        "session_timeout_minutes": config.session_timeout_minutes,
        "sessions": int(sessions),
        "users": int(users),
        "events": int(events),
        "median_duration_s": float(median) if median is not None else None,
    }
