"""Data-quality checks of raw_events, evaluated by the asset right after it loads (declared as check_specs).

Each check covers every day the step loaded; its metadata lists the days that did not pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from statistics import median

import dagster as dg
import duckdb

from hitcraft_assets.ingestion.loader import LoadStats

KEYS_NOT_NULL = "keys_not_null"
NO_DUPLICATES = "no_duplicates"
REJECTED_SHARE = "rejected_share"
VOLUME_VS_TRAILING_MEDIAN = "volume_vs_trailing_median"

REJECTED_WARN_SHARE = 0.001
REJECTED_FAIL_SHARE = 0.05
VOLUME_TOLERANCE = 0.5
VOLUME_WINDOW_DAYS = 7

CHECK_SPECS = [
    dg.AssetCheckSpec(KEYS_NOT_NULL, asset="raw_events", blocking=True,
                      description="event, distinct_id, time and event_date are never null"),
    dg.AssetCheckSpec(NO_DUPLICATES, asset="raw_events", blocking=True,
                      description="no two rows share Mixpanel's key (event, distinct_id, time, $insert_id)"),
    dg.AssetCheckSpec(REJECTED_SHARE, asset="raw_events", blocking=True,
                      description="quarantined lines: warn above 0.1% of a day's lines, fail above 5%"),
    dg.AssetCheckSpec(VOLUME_VS_TRAILING_MEDIAN, asset="raw_events",
                      description="a day's rows within ±50% of the median of the 7 days before it"),
]


def _days_sql(days: Sequence[date]) -> tuple[str, list]:
    return "event_date in (select unnest(?::date[]))", [list(days)]


def keys_not_null(conn: duckdb.DuckDBPyConnection, days: Sequence[date]) -> dg.AssetCheckResult:
    where, params = _days_sql(days)
    (bad,) = conn.execute(
        f"select count(*) from raw.events where {where} and "
        "(event is null or distinct_id is null or time is null or event_date is null)", params).fetchall()[0]
    return dg.AssetCheckResult(check_name=KEYS_NOT_NULL, passed=bad == 0, metadata={"null_key_rows": bad})


def no_duplicates(conn: duckdb.DuckDBPyConnection, days: Sequence[date]) -> dg.AssetCheckResult:
    where, params = _days_sql(days)
    (dups,) = conn.execute(
        f"select coalesce(sum(n - 1), 0)::bigint from (select count(*) n from raw.events where {where} "
        "and insert_id is not null group by event_date, event, distinct_id, time, insert_id having count(*) > 1)",
        params).fetchall()[0]
    return dg.AssetCheckResult(check_name=NO_DUPLICATES, passed=dups == 0, metadata={"duplicate_rows": dups})


def rejected_share(stats: Sequence[LoadStats]) -> dg.AssetCheckResult:
    worst = max(stats, key=lambda s: s.rejected_share)
    warn = [s for s in stats if s.rejected_share > REJECTED_WARN_SHARE]
    fail = [s for s in stats if s.rejected_share > REJECTED_FAIL_SHARE]
    return dg.AssetCheckResult(
        check_name=REJECTED_SHARE,
        passed=not warn,
        severity=dg.AssetCheckSeverity.ERROR if fail else dg.AssetCheckSeverity.WARN,
        metadata={
            "rejected_lines": sum(s.rejected for s in stats),
            "worst_day": worst.day.isoformat(),
            "worst_share": round(worst.rejected_share, 6),
            "days_above_warn": [s.day.isoformat() for s in warn],
            "days_above_fail": [s.day.isoformat() for s in fail],
        },
    )


def volume_vs_trailing_median(conn: duckdb.DuckDBPyConnection, days: Sequence[date]) -> dg.AssetCheckResult:
    """Each day's row count against the median of the previous 7 loaded days (skipped with < 3 days)."""
    rows = dict(conn.execute("select event_date, rows_loaded from raw.load_log").fetchall())
    out_of_band, compared = [], 0
    for day in days:
        history = [n for d, n in rows.items() if 0 < (day - d).days <= VOLUME_WINDOW_DAYS]
        if len(history) < 3:
            continue
        compared += 1
        base = median(history)
        observed = rows.get(day, 0)
        if base > 0 and abs(observed - base) / base > VOLUME_TOLERANCE:
            out_of_band.append({"day": day.isoformat(), "rows": observed, "trailing_median": base})
    return dg.AssetCheckResult(
        check_name=VOLUME_VS_TRAILING_MEDIAN,
        passed=not out_of_band,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"days_compared": compared, "days_out_of_band": len(out_of_band),
                  "out_of_band": dg.MetadataValue.json(out_of_band)},
    )
