"""Data-quality checks of raw_events, evaluated by the asset right after it loads (declared as check_specs).

Each check covers every day the step loaded; its metadata lists the days that did not pass. No check
blocks the whole step: a bad day is held back by the quality gate (quality.py, recorded per day in
raw.load_log and honoured by every analysis asset), so the other days of a range are analysed as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from statistics import median

import dagster as dg
import duckdb

from hitcraft_assets.ingestion import quality
from hitcraft_assets.ingestion.loader import LoadStats

PLACEHOLDER_DISTINCT_IDS = "placeholder_distinct_ids"
NO_DUPLICATES = "no_duplicates"
REJECTED_SHARE = "rejected_share"
VOLUME_VS_TRAILING_MEDIAN = "volume_vs_trailing_median"

VOLUME_TOLERANCE = 0.5
VOLUME_WINDOW_DAYS = 7

CHECK_SPECS = [
    dg.AssetCheckSpec(PLACEHOLDER_DISTINCT_IDS, asset="raw_events",
                      description="few events carry a placeholder distinct_id ('undefined', 'null', '0', ...), "
                                  "which would make all of them look like one user"),
    dg.AssetCheckSpec(NO_DUPLICATES, asset="raw_events", blocking=True,
                      description="no two rows share Mixpanel's key (event, distinct_id, time, $insert_id)"),
    dg.AssetCheckSpec(REJECTED_SHARE, asset="raw_events",
                      description="quarantined lines: a day whose lines show with 95% confidence that more than 5% "
                                  "are bad (and at least 10 are), or whose file cannot be read whole, is held "
                                  "back from analysis (ERROR); above 0.1% it warns"),
    dg.AssetCheckSpec(VOLUME_VS_TRAILING_MEDIAN, asset="raw_events",
                      description="a day's rows within ±50% of the median of the 7 days before it; a present "
                                  "but empty file always warns"),
]


def _days_sql(days: Sequence[date]) -> tuple[str, list]:
    return "event_date in (select unnest(?::date[]))", [list(days)]


def placeholder_distinct_ids(stats: Sequence[LoadStats]) -> dg.AssetCheckResult:
    flagged = [s for s in stats if s.placeholder_ids >= quality.MIN_PLACEHOLDERS_TO_WARN and s.rows_loaded
               and s.placeholder_ids / s.rows_loaded > quality.PLACEHOLDER_WARN_SHARE]
    return dg.AssetCheckResult(
        check_name=PLACEHOLDER_DISTINCT_IDS, passed=not flagged, severity=dg.AssetCheckSeverity.WARN,
        metadata={"placeholder_rows": sum(s.placeholder_ids for s in stats),
                  "days_flagged": dg.MetadataValue.json(
                      [{"day": s.day.isoformat(), "rows": s.rows_loaded, "placeholder_rows": s.placeholder_ids}
                       for s in flagged])})


def no_duplicates(conn: duckdb.DuckDBPyConnection, days: Sequence[date]) -> dg.AssetCheckResult:
    where, params = _days_sql(days)
    (dups,) = conn.execute(
        f"select coalesce(sum(n - 1), 0)::bigint from (select count(*) n from raw.events where {where} "
        "and insert_id is not null group by event_date, event, distinct_id, time, insert_id having count(*) > 1)",
        params).fetchall()[0]
    return dg.AssetCheckResult(check_name=NO_DUPLICATES, passed=dups == 0, metadata={"duplicate_rows": dups})


def rejected_share(stats: Sequence[LoadStats]) -> dg.AssetCheckResult:
    """The quality gate's verdicts: ERROR when a day is held (only that day is held back), WARN otherwise."""
    worst = max(stats, key=lambda s: s.rejected_share)
    held = [s for s in stats if s.gate == quality.HELD]
    warned = [s for s in stats if s.gate == quality.WARN and s.rejected]
    return dg.AssetCheckResult(
        check_name=REJECTED_SHARE,
        passed=not held and not warned,
        severity=dg.AssetCheckSeverity.ERROR if held else dg.AssetCheckSeverity.WARN,
        metadata={
            "rejected_lines": sum(s.rejected for s in stats),
            "worst_day": worst.day.isoformat(),
            "worst_share": round(worst.rejected_share, 6),
            "held_days": dg.MetadataValue.json({s.day.isoformat(): s.gate_reason for s in held}),
            "days_warned": [s.day.isoformat() for s in warned],
            "rule": f"held when the 95% lower bound of the rejected share > {quality.HOLD_SHARE:.0%} and at least "
                    f"{quality.MIN_REJECTED_TO_HOLD} lines are rejected, or the file cannot be read whole; "
                    f"warn above {quality.WARN_SHARE:.1%}",
        },
    )


def volume_vs_trailing_median(conn: duckdb.DuckDBPyConnection, days: Sequence[date]) -> dg.AssetCheckResult:
    """Each day's row count against the median of the previous 7 loaded days (skipped with < 3 days); a
    file that is present but empty is flagged whatever the history."""
    log = {d: (n, found, lines) for d, n, found, lines in conn.execute(
        "select event_date, rows_loaded, source_found, lines from raw.load_log").fetchall()}
    rows = {d: v[0] for d, v in log.items()}
    out_of_band, compared = [], 0
    for day in days:
        observed, found, lines = log.get(day, (0, False, 0))
        if found and lines == 0:
            out_of_band.append({"day": day.isoformat(), "rows": 0, "trailing_median": None,
                                "note": "the export file is present but empty"})
            continue
        history = [n for d, n in rows.items() if 0 < (day - d).days <= VOLUME_WINDOW_DAYS]
        if len(history) < 3:
            continue
        compared += 1
        base = median(history)
        if base > 0 and abs(observed - base) / base > VOLUME_TOLERANCE:
            out_of_band.append({"day": day.isoformat(), "rows": observed, "trailing_median": base})
    return dg.AssetCheckResult(
        check_name=VOLUME_VS_TRAILING_MEDIAN,
        passed=not out_of_band,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"days_compared": compared, "days_out_of_band": len(out_of_band),
                  "out_of_band": dg.MetadataValue.json(out_of_band)},
    )
