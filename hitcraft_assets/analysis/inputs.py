"""What a day of an analysis asset reads, as a digest: the daily lookback re-materializes a day only when it
changed (issue 15).

The schedule recomputes the last 8 local days every morning so that late events land; most of those days
received none. A day of `sessions` or `daily_metrics` is left as it is when the digest of its
inputs equals the one recorded with its last computation (`analytics.compute_log`) and its rows are all
still there. The digest covers:

- the raw days it reads (the export days its events can be filed on, widened by the load's time
  tolerance): each day's load fingerprint and quality-gate verdict from `raw.load_log` (a day with events
  but no fingerprint, loaded before fingerprints existed or written by other means, makes its readers
  always recompute);
- the events of those days as the analysis sees them: their number and an order-free hash of every
  distinct (distinct_id, device_id, user_key), so that a merge seen today that re-attributes an earlier
  day's events makes it run again;
- the config (every key but the path and the reports) and the analysis code (this package and
  sql/analysis/);
- what the asset reads from other days: `daily_metrics` its day's sessions and the user-days of every
  earlier day (WAU, MAU and new users), through their own digests.

Not covered: `funnels` (an entry day reads the events of its whole conversion window, and every day of the
lookback's window is still open: yesterday's new raw day is in each of them), `segments` (week-1
retention asks whether a user was seen on any earlier day, which no bounded set of days answers), and the
detection assets (trends keep their own digest of the series).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

import duckdb

from hitcraft_assets.config import ProductConfig
from hitcraft_assets.analysis.identity import ensure_identity
from hitcraft_assets.warehouse import ensure_schema, existing_tables, sql_dir

LOG_SCHEMA = """
create table if not exists analytics.compute_log (
    asset         varchar not null,      -- sessions | daily_metrics
    day           date not null,         -- the local day computed
    input_digest  varchar not null,      -- sha256 of what it read (hitcraft_assets/analysis/inputs.py)
    rows          bigint not null,       -- its rows in the asset's table, checked before a day is left alone
    stats         json not null,         -- the metadata of that computation, shown again when it is left alone
    computed_at   timestamptz not null
)"""

# the table and day column each covered asset writes
TABLES = {"sessions": ("core.sessions", "session_date"),
          "daily_metrics": ("analytics.daily_metrics", "metric_date")}


@lru_cache(maxsize=1)
def code_digest() -> bytes:
    """The analysis code: every module of this package and every file of sql/analysis/ (and the shared
    schema): a change to any of them makes every day run again."""
    h = hashlib.sha256()
    files = sorted(Path(__file__).parent.glob("*.py")) + sorted((sql_dir() / "analysis").glob("*.sql")) + \
        [sql_dir() / "schema.sql"]
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.digest()


def config_digest(config: ProductConfig) -> str:
    """The config as the analysis reads it (its path and the email reports left out)."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in ("path", "reports")}
    return hashlib.sha256(json.dumps(fields, default=_plain, sort_keys=True).encode()).hexdigest()


def _plain(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def ensure_log(conn: duckdb.DuckDBPyConnection) -> None:
    ensure_schema(conn)
    conn.execute(LOG_SCHEMA)


class DayInputs:
    """Digests of the raw days of a range, read once per step: the load fingerprint and verdict of each
    export day, and the identity of its ids."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, first: date, last: date):
        self.first, self.last = first, last
        tables = existing_tables(conn)
        self.loads: dict[date, str | None] = {}
        self.ids: dict[date, tuple[int, int]] = {}
        if "raw.load_log" not in tables:
            return
        ensure_identity(conn)
        for day, fp, gate in conn.execute(
                "select event_date, fingerprint, coalesce(gate, 'pass') from raw.load_log "
                "where event_date between ? and ?", [first, last]).fetchall():
            self.loads[day] = None if fp is None else f"{fp}:{gate}"
        # each day's events and an order-free hash of their distinct (id, device, user_key) (held days: none);
        # one string is hashed: DuckDB's hash(a, b, c) of a row whose b is null does not depend on c
        self.ids = {d: (int(n), int(h)) for d, n, h in conn.execute(
            "select event_date, sum(n), bit_xor(h) from (select event_date, "
            "hash(concat(distinct_id, chr(31), coalesce(device_id, chr(30)), chr(31), user_key)) as h, count(*) as n "
            "from core.identified_events "
            "where event_date between ? and ? group by all) group by event_date", [first, last]).fetchall()}

    def raw_part(self, first: date, last: date) -> str | None:
        """The raw days first..last as a string, None when one of them has events but no fingerprint (loaded
        before fingerprints existed, or written by other means than the loader) or lies outside the range
        read."""
        if first < self.first or last > self.last:
            return None
        parts, d = [], first
        while d <= last:
            if d in self.ids and self.loads.get(d) is None:
                return None
            if d in self.loads or d in self.ids:
                parts.append(f"{d}={self.loads.get(d)}/{self.ids.get(d, (0, 0))}")
            d += timedelta(days=1)
        return ";".join(parts)


def digest(asset: str, day: date, config: ProductConfig, raw: str | None, *extra: object) -> str | None:
    """sha256 of an asset's inputs for `day`; None (always compute) when the raw part is unknown."""
    if raw is None:
        return None
    h = hashlib.sha256(code_digest())
    h.update(json.dumps([asset, day.isoformat(), config_digest(config), raw, *[str(x) for x in extra]]).encode())
    return h.hexdigest()


def logged(conn: duckdb.DuckDBPyConnection, asset: str, days: list[date]) -> dict[date, tuple[str, dict]]:
    """day -> (input digest, stats) of each day's last computation whose rows are all still there. Creates
    the log when it is missing: a step calls this first, and the other readers and `record` after it."""
    ensure_log(conn)
    table, column = TABLES[asset]
    if table not in existing_tables(conn):
        return {}
    rows = conn.execute(
        f"select l.day, l.input_digest, l.stats from analytics.compute_log l "  # noqa: S608 (fixed names)
        f"where l.asset = ? and l.day between ? and ? and "
        f"l.rows = (select count(*) from {table} t where t.{column} = l.day)",
        [asset, min(days), max(days)]).fetchall()
    return {d: (dg, json.loads(stats)) for d, dg, stats in rows}


def digests_before(conn: duckdb.DuckDBPyConnection, asset: str, day: date) -> str:
    """An order-free digest of the recorded inputs of every day of `asset` before `day` (daily_metrics'
    user-days of earlier days: WAU, MAU and who is new), or '' when there are none."""
    row = conn.execute("select count(*), bit_xor(hash(day, input_digest)) from analytics.compute_log "
                       "where asset = ? and day < ?", [asset, day]).fetchone()
    return f"{row[0]}:{row[1]}"


def digest_of(conn: duckdb.DuckDBPyConnection, asset: str, day: date) -> str | None:
    row = conn.execute("select input_digest from analytics.compute_log where asset = ? and day = ?",
                       [asset, day]).fetchone()
    return row[0] if row else None


def record(conn: duckdb.DuckDBPyConnection, asset: str, day: date, input_digest: str | None, stats: dict) -> None:
    """Record a day's computation (its digest, rows and metadata); a day computed without a digest forgets
    any earlier record, so that it is computed again next time."""
    table, column = TABLES[asset]
    conn.execute("delete from analytics.compute_log where asset = ? and day = ?", [asset, day])
    if input_digest is None:
        return
    (rows,) = conn.execute(f"select count(*) from {table} where {column} = ?", [day]).fetchone()  # noqa: S608
    conn.execute("insert into analytics.compute_log values (?, ?, ?, ?, ?, now())",
                 [asset, day, input_digest, rows, json.dumps(stats, default=str)])
