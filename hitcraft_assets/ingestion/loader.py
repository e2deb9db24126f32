"""Load one export day (a Mixpanel raw-export JSONL body on disk) into raw.events, in one transaction.

DuckDB parses the body (plain or .gz): no event is ever held in Python. Validation, quarantine of bad lines
and Mixpanel's deduplication are the SQL in sql/ingestion/raw_events.sql.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb

from hitcraft_assets.warehouse import ensure_schema, run_named, transaction

SQL_FILE = "ingestion/raw_events.sql"
DEFAULT_TOLERANCE_S = 3600


@dataclass(frozen=True)
class LoadStats:
    day: date
    source: str
    source_found: bool
    lines: int
    rows_loaded: int
    rejected: int
    duplicates_removed: int
    distinct_users: int
    bytes_read: int

    @property
    def rejected_share(self) -> float:
        return self.rejected / self.lines if self.lines else 0.0


def _run(conn: duckdb.DuckDBPyConnection, name: str, params: dict) -> duckdb.DuckDBPyConnection:
    return run_named(conn, SQL_FILE, name, params)


def load_day(
    conn: duckdb.DuckDBPyConnection,
    day: date,
    path: Path | None,
    *,
    source: str,
    bytes_read: int = 0,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> LoadStats:
    """Replace the partition `day` with the rows of `path` (None: an empty day), atomically.

    On any error the transaction rolls back and the previous rows of the day stay as they were.
    """
    ensure_schema(conn)
    day_start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()
    params = {"day": day.isoformat(), "path": str(path) if path else None, "source": source,
              "min_s": day_start - tolerance_s, "max_s": day_start + 86400 + tolerance_s}
    for macro in ("epoch_macro", "parse_macro", "reason_macro"):
        _run(conn, macro, params)
    with transaction(conn):
        _run(conn, "delete_partition", params)
        _run(conn, "delete_rejected", params)
        lines = loaded = rejected = duplicates = 0
        if path is not None:
            conn.execute("set preserve_insertion_order = false")  # parallel insert; row order is irrelevant
            try:
                inserted = _run(conn, "insert_events", params).fetchall()[0][0]
            finally:
                conn.execute("reset preserve_insertion_order")
            duplicates = _run(conn, "remove_duplicates", params).fetchall()[0][0]
            lines = _run(conn, "count_lines", params).fetchall()[0][0]
            if lines != inserted:
                rejected = _run(conn, "insert_rejected", params).fetchall()[0][0]
            if inserted + rejected != lines:
                raise RuntimeError(
                    f"LOAD_LINE_MISMATCH: {source} for {day} has {lines} non-blank lines, but {inserted} were "
                    f"loaded and {rejected} quarantined; nothing was changed")
            loaded = inserted - duplicates
        rows_loaded, users = _run(conn, "day_stats", params).fetchall()[0]
        if rows_loaded != loaded:
            raise RuntimeError(f"LOAD_COUNT_MISMATCH: expected {loaded} rows for {day}, found {rows_loaded}")
        _record(conn, day, source, path is not None, lines, loaded, rejected, duplicates, users, bytes_read)
    return LoadStats(day, source, path is not None, lines, loaded, rejected, duplicates, users, bytes_read)


def _record(conn, day, source, found, lines, loaded, rejected, duplicates, users, bytes_read) -> None:
    conn.execute("delete from raw.load_log where event_date = ?", [day])
    conn.execute(
        "insert into raw.load_log values (?, now(), ?, ?, ?, ?, ?, ?, ?, ?)",
        [day, source, found, lines, loaded, rejected, duplicates, users, bytes_read],
    )
