"""Funnels: Mixpanel's ordered funnels, uniques counting, for the users who entered on one local day.

compute_funnels(conn, day, config) replaces the rows of analytics.funnel_steps for cohort_date = day. The
rules, per configured funnel (steps s1..sn, window_days W, exclusions, hold_constant), per user_key (the
identity after Mixpanel's ID merge, from core.identified_events):

- Entry. A user enters the cohort of `day` (a day of config.timezone) with their first s1 event whose time
  lies in [local midnight, next local midnight). Ties at the same instant go to the lowest $insert_id. Each
  entry day is its own cohort, as in Mixpanel's funnel line chart by day: a user who did s1 on an earlier
  day enters again on this day, with this day's first s1 (the window starts again from it).
- Order and window. Steps count in order; any other events, repeats of steps included, may happen in
  between. Step k is reached when the user does sk at most W * 86400 seconds after the entry event (a step
  exactly at the window's end converts; one microsecond later does not). The window runs from step 1, not
  from the previous step, and later s1 events do not restart it.
- Two-second grace. Consecutive steps whose times are within 2 seconds of each other are interchangeable:
  sk may be up to 2 s (inclusive) before the event that filled step k-1. The time from the previous step is
  then counted as 0 s (never negative). The grace is pairwise, so a read starts 2 s x (n - 1) before
  midnight.
- Conversion time (greedy). Each step is filled by the earliest qualifying event after (or within the grace
  before) the event that filled the previous step; one event never fills two steps (this matters only when
  a funnel repeats an event name). median_seconds_from_prev and mean_seconds_from_prev are over the users
  who reached the step (median of an even count: mean of the two middle values).
- Exclusions. An exclusion event at time x between step k (filled at tk) and step k+1 (filled at tk+1)
  drops the user after step k when tk + 2 s < x < tk+1 - 2 s: strictly between the two steps, and outside
  the grace of both (Mixpanel gives exclusion steps the same 2-second grace, so an exclusion within 2 s of a
  step is interchangeable with it). Every listed exclusion applies between every pair of consecutive
  steps; exclusions after the last step reached, or before the entry, change nothing; the user still
  counts for the steps up to k. Exclusion events are not subject to hold_constant.
- Hold property constant. For each listed property, every step's event must have the same value as the
  entry event (the value is held from the entry, as under Mixpanel's uniques). Values compare as text (a
  JSON string unquoted, a number as written); a property missing from the entry event matches only events
  where it is missing too.
- Breakdowns. For each configured dimension (name, event property), a user's segment is the property's
  value on their entry event, as text, '(none)' when missing, null or empty. A user is in exactly one
  segment per dimension, so the segments of a dimension sum to the totals (dimension and segment 'all'),
  except for a list-valued property: as in Mixpanel's breakdown by a list, an entry with genres
  ["pop", "rock"] puts the user in pop and in rock (each distinct element once; an empty list is
  '(none)'), so such segments sum to more than the total; a segment's rest (total - segment) is still the
  users not in it.
  (Mixpanel's breakdown lets a user enter once per segment they did step 1 in; one entry per user keeps
  the cohort the same size in every breakdown.)
- Rows. For every (dimension, segment) with at least one entrant, one row per step 1..n, steps nobody
  reached included (users 0, times null). conversion_from_prev is users / users of the previous step (1.0
  for step 1, null when nobody reached the previous step); conversion_from_start is users / entrants. A day
  without entrants writes no rows for the funnel (the day's old rows are still deleted).
- Provisional cohorts. A cohort keeps converting for W days, so each row also says how far it is:
  completeness is the elapsed share of the window of the day's last entrant, by the data loaded when the row
  was computed (the end of the last export day in raw.load_log); 1 means every entrant's window has closed
  and the row is final. users_1d and conversion_1d_from_prev count only the steps reached within one day
  (86,400 s) of entry: a cohort's first-day conversion is final one day after the entry day, so it compares
  like with like across cohorts of any age (detection judges it; the risk and segment findings use
  complete cohorts only).
- Writes. All funnels of the day are computed and written in one transaction that first deletes every row
  with cohort_date = day: a re-run gives the same rows, a failure leaves the previous ones.

Reads: only the funnel's step and exclusion events of users who entered on the day, with times in
[day start - 2 s x (n - 1), day end + W days), on the UTC export days that can hold them (widened by the
load's time_tolerance_minutes). A cohort's later steps keep arriving for W days after the entry day: the
partition for `day` is final once the data up to day + W + 1 is loaded.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import duckdb

from hitcraft_assets.analysis.days import filed_days, filing_timezone, local_day, sql_params
from hitcraft_assets.analysis.identity import ensure_identity
from hitcraft_assets.analysis.sessions import ensure_segment_macros, property_pairs
from hitcraft_assets.config import Funnel, ProductConfig
from hitcraft_assets.warehouse import ensure_schema, named_statements, run_sql, sql_parameters, transaction

SQL_FILE = "analysis/funnels.sql"
GRACE_SECONDS = 2
_US = 1_000_000
_TEMP_TABLES = ("hc_funnel_events", "hc_funnel_reached")


def _run(conn: duckdb.DuckDBPyConnection, name: str, params: dict) -> duckdb.DuckDBPyConnection:
    """Run statement `name` with the parameters it uses (DuckDB rejects unused ones; comments don't count)."""
    sql = named_statements(SQL_FILE)[name]
    missing = sql_parameters(sql) - params.keys()
    if missing:
        raise KeyError(f"statement {name} of {SQL_FILE} needs parameters {sorted(missing)}")
    return run_sql(conn, sql, params)


def funnel_params(ld_params: dict, funnel: Funnel, config: ProductConfig) -> dict:
    """Every parameter the statements of one funnel and day take."""
    start, end = ld_params["start_ts"], ld_params["end_ts"]
    tolerance = timedelta(minutes=max(config.time_tolerance_minutes, 0))
    read_start = start - timedelta(seconds=GRACE_SECONDS * (len(funnel.steps) - 1))
    read_end = end + timedelta(days=funnel.window_days)  # a fixed 86,400 s per day, as the window
    entry_from, entry_to = filed_days(start, end, config, tolerance)
    read_from, read_to = filed_days(read_start, read_end, config, tolerance)
    return {
        **ld_params,
        "funnel": funnel.name,
        "steps": list(funnel.steps),
        "n_steps": len(funnel.steps),
        "first_step": funnel.steps[0],
        "events": list(dict.fromkeys(funnel.steps + funnel.exclusions)),
        "exclusions": list(funnel.exclusions),
        "has_hold": bool(funnel.hold_constant),
        "hold_paths": property_pairs(funnel.hold_constant),
        "dim_names": [d.name for d in config.dimensions],
        "dim_paths": property_pairs(d.property for d in config.dimensions),
        "grace_us": GRACE_SECONDS * _US,
        "window_us": funnel.window_days * 86_400 * _US,
        "read_start": read_start,
        "read_end": read_end,
        "entry_from": entry_from.isoformat(),
        "entry_to": entry_to.isoformat(),
        "read_from": read_from.isoformat(),
        "read_to": read_to.isoformat(),
    }


def data_until(conn: duckdb.DuckDBPyConnection, config: ProductConfig) -> datetime | None:
    """The end of the last export day loaded (raw.load_log): how far a cohort's window can have been seen."""
    last = conn.execute("select max(event_date) from raw.load_log").fetchall()[0][0]
    if last is None:
        return None
    return datetime.combine(last + timedelta(days=1), time(0), tzinfo=ZoneInfo(filing_timezone(config)))


def ensure_funnels(conn: duckdb.DuckDBPyConnection) -> None:
    ensure_schema(conn)
    ensure_identity(conn)
    conn.execute(named_statements(SQL_FILE)["schema"])
    ensure_segment_macros(conn)


def compute_funnels(conn: duckdb.DuckDBPyConnection, day: date, config: ProductConfig) -> dict:
    """Replace analytics.funnel_steps for cohort_date = `day` (a local day of config.timezone), every
    configured funnel, in one transaction. Returns numbers for the asset's metadata."""
    config.check()
    ensure_funnels(conn)
    base = sql_params(local_day(day, config.timezone))
    base["data_until"] = data_until(conn, config) or base["end_ts"]
    entrants: dict[str, int] = {}
    converted: dict[str, int] = {}
    events_read: dict[str, int] = {}
    try:
        with transaction(conn):
            _run(conn, "delete_day", base)
            for funnel in config.funnels:
                params = funnel_params(base, funnel, config)
                _run(conn, "events", params)
                _run(conn, "entrants", params)
                for k, event in enumerate(funnel.steps[1:], start=2):
                    _run(conn, "advance", {**params, "step": k, "event": event})
                _run(conn, "insert_steps", params)
                events_read[funnel.name] = conn.execute("select count(*) from hc_funnel_events").fetchall()[0][0]
                by_step = dict(conn.execute(
                    "select step, count(*) from hc_funnel_reached group by step").fetchall())
                entrants[funnel.name] = by_step.get(1, 0)
                converted[funnel.name] = by_step.get(len(funnel.steps), 0)
            rows = conn.execute("select count(*) from analytics.funnel_steps where cohort_date = ?",
                                [day]).fetchall()[0][0]
    finally:
        for table in _TEMP_TABLES:
            conn.execute(f"drop table if exists temp.{table}")  # fixed names, not input
    return {
        "cohort_date": day.isoformat(),
        "timezone": config.timezone,
        "rows_written": rows,
        "funnels": len(config.funnels),
        "entrants": entrants,
        "converted": converted,
        "events_read": events_read,
    }
