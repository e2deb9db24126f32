"""The serving snapshot: the tables the API and the dashboard read, published into their own DuckDB file.

DuckDB lets one process write a file, and a reader in another process both fails while Dagster writes and
blocks Dagster while it reads. So the API never opens the warehouse: this step, inside the pipeline (the
writer), copies what the API serves into `<HITCRAFT_SERVING_PATH>.tmp-<pid>`, checkpoints and closes it, and
swaps it in with `os.replace`. A reader holding the old file keeps reading it (same inode) until it sees
the new one and reopens; the swap is atomic, so a reader never sees half a snapshot.

Besides the warehouse's tables, `publish` writes what the caller passes that lives elsewhere: the latest
evaluation of each data-quality check (`check_results`), which Dagster keeps in its instance, not in the
warehouse (the serving_snapshot asset reads them; see CHECK_RESULT_COLUMNS).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from hitcraft_assets.warehouse import existing_tables

SNAPSHOT_VERSION = 1
# (table in the snapshot, query over the warehouse); a missing warehouse table gives an empty snapshot table
# of the same columns when the warehouse has its DDL, else it is left out
TABLES = {
    "insights": "select * from insights.insights",
    "daily_metrics": "select * from analytics.daily_metrics",
    "anomalies": "select * from analytics.anomalies",
    "change_points": "select as_of_date, metric, dimension, segment, change_points, last_change_date, "
                     "last_change_shift, last_change_relative, trend, q_value, pct_change_7d, pct_change_28d "
                     "from analytics.trends where as_of_date = (select max(as_of_date) from analytics.trends)",
    "funnel_steps": "select * from analytics.funnel_steps",
    "retention": "select * from analytics.retention",
    "segment_comparisons": "select * from analytics.segment_comparisons where significant",
    "load_log": "select * from raw.load_log",
    "rejected_reasons": "select event_date, reason, count(*) as lines from raw.rejected_events group by all",
    "email_sends": "select * from delivery.email_sends",
    "email_reports": "select * from delivery.email_reports",
}
SOURCES = {"insights": "insights.insights", "daily_metrics": "analytics.daily_metrics",
           "anomalies": "analytics.anomalies", "change_points": "analytics.trends",
           "funnel_steps": "analytics.funnel_steps", "retention": "analytics.retention",
           "segment_comparisons": "analytics.segment_comparisons", "load_log": "raw.load_log",
           "rejected_reasons": "raw.rejected_events", "email_sends": "delivery.email_sends",
           "email_reports": "delivery.email_reports"}


# the `check_results` table: one row per asset check, its latest completed evaluation (None: the snapshot has
# no such table, e.g. a publish outside Dagster; an empty list: an empty table, no check has run yet)
CHECK_RESULT_COLUMNS = {
    "asset": "varchar",            # the checked asset, e.g. raw_events
    "check_name": "varchar",
    "passed": "boolean",
    "severity": "varchar",         # WARN | ERROR: how bad a failure is
    "blocking": "boolean",
    "description": "varchar",      # what the check verifies (its spec's description)
    "partition": "varchar",        # the partition evaluated, for a partitioned check (else null)
    "days_from": "date",           # the range of days the evaluating run covered (its partition range tags)
    "days_to": "date",
    "run_id": "varchar",
    "evaluated_at": "timestamptz",
    "metadata": "json",            # the check's metadata as plain JSON (counts, the days that did not pass)
}


def _write_check_results(conn: duckdb.DuckDBPyConnection, rows: Sequence[dict]) -> int:
    columns = ", ".join(f"{name} {kind}" for name, kind in CHECK_RESULT_COLUMNS.items())
    conn.execute(f"create table hc_snapshot.main.check_results ({columns})")   # fixed names and types
    names = list(CHECK_RESULT_COLUMNS)
    values = [[json.dumps(r.get(n), default=str) if n == "metadata" else r.get(n) for n in names] for r in rows]
    if values:
        conn.executemany(f"insert into hc_snapshot.main.check_results values ({', '.join('?' for _ in names)})",
                         values)
    return len(values)


def publish(conn: duckdb.DuckDBPyConnection, target: Path, *, config_summary: dict | None = None,
            check_results: Sequence[dict] | None = None) -> dict:
    """Build a new snapshot from the warehouse on `conn` and swap it in at `target`; returns its meta.
    `check_results`: rows of CHECK_RESULT_COLUMNS for the `check_results` table (left out when None)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    have = existing_tables(conn)
    counts: dict[str, int] = {}
    conn.execute("attach ? as hc_snapshot", [str(tmp)])
    try:
        for name, sql in TABLES.items():
            if SOURCES[name] not in have:
                continue
            conn.execute(f"create table hc_snapshot.main.{name} as {sql}")   # fixed names and queries
            counts[name] = conn.execute(f"select count(*) from hc_snapshot.main.{name}").fetchall()[0][0]
        if check_results is not None:
            counts["check_results"] = _write_check_results(conn, check_results)
        last_day = (conn.execute("select max(as_of_date) from insights.insights").fetchall()[0][0]
                    if "insights.insights" in have else None)
        meta = {"snapshot_id": uuid.uuid4().hex, "version": SNAPSHOT_VERSION,
                "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "last_day": last_day.isoformat() if last_day else None, "tables": counts,
                "config": config_summary or {}}
        conn.execute("create table hc_snapshot.main.meta (key varchar, value json)")
        conn.executemany("insert into hc_snapshot.main.meta values (?, ?)",
                         [(k, json.dumps(v)) for k, v in meta.items()])
        conn.execute("checkpoint hc_snapshot")
    finally:
        conn.execute("detach hc_snapshot")
    try:
        os.replace(tmp, target)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            leftover.unlink(missing_ok=True)
    return meta
