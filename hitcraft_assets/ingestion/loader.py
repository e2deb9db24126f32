"""Load one export day (a Mixpanel raw-export JSONL body on disk) into raw.events, in one transaction.

DuckDB parses the body (plain or .gz): no event is held in Python on the usual paths. Validation,
quarantine of bad lines and Mixpanel's deduplication are the SQL in sql/ingestion/raw_events.sql; its
header describes the three paths through a day. The exact path (rare: a bare carriage return inside a
line, a line over 2 MB, bytes that are not UTF-8, a compressed file that ends early) streams the body's
lines through Python in batches, into a temp table, and never holds the whole day.

Every day is judged by the quality gate (quality.py) and the verdict is recorded with the load in
raw.load_log, in the same transaction as the rows.

Each load records a fingerprint of its input (:func:`fingerprint`: the body's bytes, the day, the source,
the loading parameters and the loader's own code). A later load of the same day with the same fingerprint
would write the same rows, so it leaves the day as it is (``path = "unchanged"``): the daily schedule
re-pulls 5 days for late events, and most of them have none; replacing a day that did not change costs
DuckDB a checkpoint in proportion to the whole table (bench/README.md, "A day on day 30 and on day 365").
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb

from hitcraft_assets.ingestion import quality
from hitcraft_assets.lazy import lazy
from hitcraft_assets.warehouse import ensure_schema, run_named, transaction

pa = lazy("pyarrow")

SQL_FILE = "ingestion/raw_events.sql"
DEFAULT_TOLERANCE_S = 3600
# Mixpanel refuses events over 1 MB; a longer line is not an event (and DuckDB's text reader stops at 2 MB).
MAX_LINE_BYTES = 2 * 1024 * 1024
BATCH_LINES = 20_000
_BOM = b"\xef\xbb\xbf"


@lru_cache(maxsize=1)
def _lines_schema() -> pa.Schema:
    return pa.schema([("line_no", pa.int64()), ("line", pa.string()), ("raw_line", pa.string()),
                      ("problem", pa.string())])


class LoadError(RuntimeError):
    """A day could not be loaded for a reason that is not its data (the message starts with a stable code)."""


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
    placeholder_ids: int = 0
    fault: str | None = None       # why the body could not be read whole, or None
    path: str = "fast"             # fast | quarantine | exact | empty | unchanged (the same input as before)
    gate: str = quality.PASS
    gate_reason: str | None = None

    @property
    def rejected_share(self) -> float:
        return self.rejected / self.lines if self.lines else 0.0

    @property
    def held(self) -> bool:
        return self.gate == quality.HELD


class _NeedsExactPath(Exception):
    """Internal: the text reader cannot follow the JSON reader's lines; load the day on the exact path."""


def day_window(day: date, project_tz: str | None) -> tuple[datetime, datetime]:
    """The UTC bounds of export day `day`: a UTC day, or for a legacy project a day of its timezone (the
    export API slices such projects by their own days)."""
    zone = ZoneInfo(project_tz) if project_tz else timezone.utc
    start = datetime.combine(day, time(0), tzinfo=zone).astimezone(timezone.utc)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(timezone.utc)
    return start, end


def _run(conn: duckdb.DuckDBPyConnection, name: str, params: dict) -> duckdb.DuckDBPyConnection:
    return run_named(conn, SQL_FILE, name, params)


def _one(conn: duckdb.DuckDBPyConnection, name: str, params: dict) -> int:
    return int(_run(conn, name, params).fetchall()[0][0])


def load_day(
    conn: duckdb.DuckDBPyConnection,
    day: date,
    path: Path | None,
    *,
    source: str,
    bytes_read: int = 0,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    project_tz: str | None = None,
    body_sha256: str | None = None,
) -> LoadStats:
    """Replace the partition `day` with the rows of `path` (None: an empty day), atomically, and record the
    load and the quality gate's verdict in raw.load_log.

    On any error the transaction rolls back and the previous rows of the day stay as they were. A body that
    cannot be read whole is not an error: what could be read is loaded and the day is held. ``body_sha256``:
    the body's digest when the download computed it (see :func:`fingerprint`).
    """
    ensure_schema(conn)
    start, end = day_window(day, project_tz)
    params = {"day": day.isoformat(), "path": str(path) if path else None, "source": source,
              "project_tz": project_tz, "min_s": start.timestamp() - tolerance_s,
              "max_s": end.timestamp() + tolerance_s}
    for macro in ("epoch_macro", "reason_macro", "rows_macro", "exact_table", "line_macro"):
        _run(conn, macro, params)
    if path is not None and not Path(path).is_file():
        raise LoadError(f"SOURCE_UNREADABLE: {source} for {day} is not a readable file")
    digest = fingerprint(day, path, source, tolerance_s, project_tz, body_sha256)
    previous = _unchanged(conn, day, digest)
    if previous is not None:
        return previous
    conn.execute("set preserve_insertion_order = false")  # parallel insert; row order is irrelevant
    try:
        try:
            with transaction(conn):
                counts = _load_fast(conn, params) if path is not None else _empty(conn, params)
                return _finish(conn, day, source, path, bytes_read, params, counts, digest)
        except _NeedsExactPath:
            pass
        with transaction(conn):
            counts = _load_exact(conn, params, Path(path))
            return _finish(conn, day, source, path, bytes_read, params, counts, digest)
    finally:
        conn.execute("reset preserve_insertion_order")
        conn.execute("drop table if exists temp.hc_lines")


@lru_cache(maxsize=1)
def _code_digest() -> bytes:
    """The loader's own code and SQL: a fix to either makes every day load again."""
    from hitcraft_assets.warehouse import sql_dir

    h = hashlib.sha256()
    for f in (Path(__file__), Path(quality.__file__), sql_dir() / SQL_FILE):
        h.update(f.read_bytes())
    return h.digest()


def fingerprint(day: date, path: Path | None, source: str, tolerance_s: int, project_tz: str | None,
                body_sha256: str | None = None) -> str:
    """sha256 of what a load of `day` reads: the sha256 of the body's bytes (as stored, compressed or not;
    None: an empty day), the day, the source, the time tolerance, the project's timezone and the loader's
    code. ``body_sha256``: the body's digest when the download computed it while writing the body
    (:func:`body_digest` otherwise reads the file once more: about 0.4 s for a 542 MB day)."""
    h = hashlib.sha256(_code_digest())
    h.update(f"{day.isoformat()}|{source}|{tolerance_s}|{project_tz or ''}|".encode())
    h.update(b"<empty day>" if path is None else (body_sha256 or body_digest(path)).encode())
    return h.hexdigest()


def body_digest(path: Path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _unchanged(conn: duckdb.DuckDBPyConnection, day: date, digest: str) -> LoadStats | None:
    """The recorded stats of `day` when its last load had this fingerprint and its rows are all still there
    (a load would write them again), else None."""
    row = conn.execute(
        "select source, source_found, lines, rows_loaded, rejected, duplicates_removed, distinct_users, "
        "bytes_read, coalesce(placeholder_ids, 0), fault, coalesce(gate, 'pass'), gate_reason "
        "from raw.load_log where event_date = ? and fingerprint = ?", [day, digest]).fetchone()
    if row is None:
        return None
    source, found, lines, rows, rejected, dups, users, read, placeholders, fault, gate, reason = row
    (stored,) = conn.execute("select count(*) from raw.events where event_date = ?", [day]).fetchone()
    if stored != rows:     # rows deleted or added since by hand: load the day again
        return None
    return LoadStats(day, source, found, lines, rows, rejected, dups, users, read, placeholders, fault,
                     "unchanged", gate, reason)


def _empty(conn: duckdb.DuckDBPyConnection, params: dict) -> dict:
    _run(conn, "delete_partition", params)
    _run(conn, "delete_rejected", params)
    return {"lines": 0, "inserted": 0, "rejected": 0, "duplicates": 0, "fault": None, "path": "empty"}


def _is_read_fault(exc: duckdb.Error) -> bool:
    """A DuckDB error that comes from reading the body (a compression or encoding problem, a line too long
    for the text reader), not from the warehouse."""
    text = str(exc).lower()
    if "could not set lock" in text or "conflicting lock" in text:
        return False
    return isinstance(exc, (duckdb.IOException, duckdb.InvalidInputException, duckdb.ConversionException))


def _load_fast(conn: duckdb.DuckDBPyConnection, params: dict) -> dict:
    """Paths 1 and 2 of raw_events.sql; raises _NeedsExactPath when the text reader cannot be trusted."""
    _run(conn, "delete_partition", params)
    _run(conn, "delete_rejected", params)
    try:
        inserted = _one(conn, "insert_events", params)
        duplicates = _one(conn, "remove_duplicates", params)
        lines = _one(conn, "count_lines", params)
        if lines == inserted:
            return {"lines": lines, "inserted": inserted, "rejected": 0, "duplicates": duplicates,
                    "fault": None, "path": "fast"}
        rejected = _one(conn, "insert_rejected", params)
        recovered = 0
        if inserted + rejected < lines:
            recovered = _one(conn, "insert_recovered", params)
            duplicates += _one(conn, "remove_duplicates", params)
        records = _one(conn, "count_records", params)
        blank = _one(conn, "count_blank", params)
    except duckdb.Error as exc:
        if _is_read_fault(exc):
            raise _NeedsExactPath() from None
        raise
    if inserted + recovered + rejected != lines or lines - blank != records:
        raise _NeedsExactPath()
    return {"lines": lines, "inserted": inserted + recovered, "rejected": rejected, "duplicates": duplicates,
            "fault": None, "path": "quarantine"}


def _load_exact(conn: duckdb.DuckDBPyConnection, params: dict, path: Path) -> dict:
    """Path 3: the body's lines split at "\\n" by Python, judged by the same SQL rule."""
    _run(conn, "delete_partition", params)
    _run(conn, "delete_rejected", params)
    reader = _LineReader(path)
    stream = pa.RecordBatchReader.from_batches(_lines_schema(), reader.batches())
    conn.register("hc_line_stream", stream)
    try:
        conn.execute("insert into temp.hc_lines select * from hc_line_stream")
    finally:
        conn.unregister("hc_line_stream")
    inserted = _one(conn, "exact_events", params)
    duplicates = _one(conn, "remove_duplicates", params)
    rejected = _one(conn, "exact_rejected", params)
    lines = conn.execute("select count(*) from temp.hc_lines").fetchall()[0][0]
    return {"lines": lines, "inserted": inserted, "rejected": rejected, "duplicates": duplicates,
            "fault": reader.fault, "path": "exact"}


def _finish(conn, day, source, path, bytes_read, params, counts, digest: str) -> LoadStats:
    if counts["inserted"] + counts["rejected"] != counts["lines"]:
        raise LoadError(
            f"LOAD_LINE_MISMATCH: {source} for {day} has {counts['lines']} non-blank lines, but "
            f"{counts['inserted']} were loaded and {counts['rejected']} quarantined; nothing was changed")
    loaded = counts["inserted"] - counts["duplicates"]
    rows_loaded, users, placeholders = _run(conn, "day_stats", params).fetchall()[0]
    if rows_loaded != loaded:
        raise LoadError(f"LOAD_COUNT_MISMATCH: expected {loaded} rows for {day}, found {rows_loaded}")
    verdict = quality.judge_day(lines=counts["lines"], rejected=counts["rejected"], source_found=path is not None,
                                fault=counts["fault"], rows=rows_loaded, placeholder_ids=placeholders)
    stats = LoadStats(day, source, path is not None, counts["lines"], loaded, counts["rejected"],
                      counts["duplicates"], users, bytes_read, placeholders, counts["fault"], counts["path"],
                      verdict.gate, verdict.reason)
    _record(conn, stats, digest)
    return stats


def _record(conn: duckdb.DuckDBPyConnection, s: LoadStats, digest: str) -> None:
    conn.execute("delete from raw.load_log where event_date = ?", [s.day])
    conn.execute(
        "insert into raw.load_log (event_date, loaded_at, source, source_found, lines, rows_loaded, rejected, "
        "duplicates_removed, distinct_users, bytes_read, placeholder_ids, fault, gate, gate_reason, fingerprint) "
        "values (?, now(), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [s.day, s.source, s.source_found, s.lines, s.rows_loaded, s.rejected, s.duplicates_removed,
         s.distinct_users, s.bytes_read, s.placeholder_ids, s.fault, s.gate, s.gate_reason, digest],
    )


class _LineReader:
    """The body's lines, exactly as split at "\\n", in Arrow batches; `fault` says why reading stopped
    early (a truncated or corrupt compressed file), after the batches were consumed."""

    def __init__(self, path: Path):
        self.path = path
        self.fault: str | None = None

    def _chunks(self) -> Iterator[bytes]:
        if self.path.suffix == ".gz":
            # zlib by hand rather than gzip.open, so that every byte before a cut is still delivered
            decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out = 0
            with open(self.path, "rb") as f:
                try:
                    while raw := f.read(1 << 20):
                        while raw:
                            data = decoder.decompress(raw)
                            out += len(data)
                            yield data
                            raw = b""
                            if decoder.eof and decoder.unused_data:   # a further gzip member
                                raw = decoder.unused_data
                                decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    tail = decoder.flush()
                    out += len(tail)
                    yield tail
                    if not decoder.eof:
                        self.fault = f"the gzip stream ends early, after {out:,} decompressed bytes"
                except zlib.error as exc:
                    kind = "not a gzip stream" if out == 0 else "a corrupt gzip stream"
                    self.fault = f"{kind} (after {out:,} decompressed bytes: {exc})"
            return
        with open(self.path, "rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk

    def _lines(self) -> Iterator[bytes]:
        rest = b""
        for chunk in self._chunks():
            parts = (rest + chunk).split(b"\n")
            rest = parts.pop()
            yield from parts
        if rest:
            yield rest

    def batches(self) -> Iterator[pa.RecordBatch]:
        cols: tuple[list, list, list, list] = ([], [], [], [])
        for number, raw in enumerate(self._lines(), start=1):
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if not raw:
                continue
            line = raw[len(_BOM):] if raw.startswith(_BOM) else raw
            problem = shown = None
            if len(raw) > MAX_LINE_BYTES:
                problem, text = "line_too_long", None
                shown = raw.decode("utf-8", errors="backslashreplace")
            else:
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError:
                    problem, text = "invalid_utf8", None
                    shown = raw.decode("utf-8", errors="backslashreplace")
                else:
                    if line is not raw:
                        shown = raw.decode("utf-8", errors="backslashreplace")
            for col, value in zip(cols, (number, text, shown, problem)):
                col.append(value)
            if len(cols[0]) >= BATCH_LINES:
                yield pa.record_batch(list(cols), schema=_lines_schema())
                cols = ([], [], [], [])
        if cols[0]:
            yield pa.record_batch(list(cols), schema=_lines_schema())
