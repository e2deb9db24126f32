"""The DuckDB warehouse: where the SQL files live, how they are split into named statements, the schema."""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

_NAME = re.compile(r"(?m)^-- name: *([a-z_][a-z0-9_]*) *$")
_PARAM = re.compile(r"\$([a-z_][a-z0-9_]*)")
_COMMENT = re.compile(r"--[^\n]*")


def sql_dir() -> Path:
    """The SQL files: the repository's top-level sql/, which an installed wheel carries inside the package
    as hitcraft_assets/sql/ (pyproject.toml maps the package `hitcraft_assets.sql` onto sql/). A checkout
    or an editable install has no hitcraft_assets/sql/ and reads sql/ beside the package."""
    package = Path(__file__).resolve().parent
    installed = package / "sql"
    return installed if installed.is_dir() else package.parent / "sql"


@lru_cache(maxsize=None)
def named_statements(relative_path: str) -> dict[str, str]:
    """Split a .sql file into its `-- name: x` statements, in file order."""
    text = (sql_dir() / relative_path).read_text()
    parts = _NAME.split(text)
    statements: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        statements[name] = body.strip()
    if not statements:
        statements[Path(relative_path).stem] = text.strip()
    return statements


def sql_parameters(sql: str) -> set[str]:
    """The `$name` parameters a statement uses (comments don't count)."""
    return set(_PARAM.findall(_COMMENT.sub("", sql)))


def run_sql(conn: duckdb.DuckDBPyConnection, sql: str, params: dict) -> duckdb.DuckDBPyConnection:
    """Execute `sql` with the subset of `params` it names (DuckDB rejects parameters a statement lacks)."""
    wanted = sql_parameters(sql)
    used = {k: v for k, v in params.items() if k in wanted}
    return conn.execute(sql, used) if used else conn.execute(sql)


def run_statements(conn: duckdb.DuckDBPyConnection, sql: str, params: dict) -> None:
    """Each statement of a script (statements end with `;` at the end of a line) with the parameters it
    names: DuckDB takes prepared parameters for the last statement of an `execute` only."""
    for statement in (part.strip() for part in sql.split(";\n")):
        if statement and not all(line.startswith("--") for line in statement.splitlines()):
            run_sql(conn, statement, params)


def run_named(conn: duckdb.DuckDBPyConnection, sql_file: str, name: str, params: dict) -> duckdb.DuckDBPyConnection:
    """Run statement `name` of `sql_file` with the parameters it uses."""
    return run_sql(conn, named_statements(sql_file)[name], params)


def existing_tables(conn: duckdb.DuckDBPyConnection) -> set[str]:
    """Every table of the warehouse as `schema.table`."""
    return {r[0] for r in conn.execute("select schema_name || '.' || table_name from duckdb_tables()").fetchall()}


def ensure_schema(conn: duckdb.DuckDBPyConnection) -> None:
    """Create every schema and table that does not exist yet (idempotent)."""
    conn.execute((sql_dir() / "schema.sql").read_text())


DEFAULT_CONNECTION_CONFIG = {"memory_limit": "512MB"}


class WarehouseLockedError(dg.Failure):
    """WAREHOUSE_LOCKED: another process kept the warehouse file locked for the whole wait."""

    code = "WAREHOUSE_LOCKED"

    def __init__(self, database: str, holder: LockHolder, waited_s: float):
        self.database, self.holder, self.waited_s = database, holder, waited_s
        super().__init__(
            description=(
                f"{self.code}: the warehouse {database} is locked by another process, {holder}, "
                f"and stayed locked for {waited_s:.0f} s. Close it (or stop its query) and run again. "
                f"Readers must not open the live warehouse while the pipeline runs: read the serving "
                f"snapshot or a copy of the file instead."),
            metadata={"code": self.code, "database": database, "holder_pid": holder.pid or -1,
                      "holder": str(holder), "waited_s": round(waited_s, 1)},
            allow_retries=False,
        )


class LockHolder:
    """The process DuckDB names in a lock conflict: 'Conflicting lock is held in <exe> (PID n)'."""

    _HELD_BY = re.compile(r"Conflicting lock is held in (?P<exe>.+?) \(PID (?P<pid>\d+)\)")

    def __init__(self, message: str):
        match = self._HELD_BY.search(message)
        self.pid = int(match["pid"]) if match else None
        self.executable = match["exe"] if match else None
        self.cmdline = self._cmdline(self.pid) if self.pid else None

    @staticmethod
    def _cmdline(pid: int) -> str | None:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        text = raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
        return text[:300] + ("…" if len(text) > 300 else "") if text else None

    def __str__(self) -> str:
        if self.pid is None:
            return "a process DuckDB did not name"
        return f"PID {self.pid} ({self.cmdline or self.executable})"


def is_lock_conflict(exc: BaseException) -> bool:
    """True for DuckDB's 'Could not set lock on file ...: Conflicting lock is held in ...' (another process
    has the file open), the one error opening the warehouse that waiting can cure."""
    text = str(exc)
    return isinstance(exc, duckdb.IOException) and ("Could not set lock" in text or "Conflicting lock" in text)


class WarehouseResource(DuckDBResource):
    """The DuckDB warehouse file, opened read-write.

    Unlike DuckDBResource (which retries every IOException and RuntimeError for about 100 s), only a lock
    conflict is waited out: another process (a notebook, the DuckDB CLI, a reader) has the file open. The
    step waits with exponential backoff (1, 2, 4, 8, then every 15 s) for `lock_wait_seconds` in all,
    logging a warning that names the process holding the lock each time it waits, then fails with
    WAREHOUSE_LOCKED (no Dagster retry). Any other error opening the file is raised at once. The file's
    folder is created first, so that a missing folder is a plain error, not a wait.

    DuckDB's memory is capped (it spills to disk beyond the cap): an uncommitted day of events would
    otherwise sit in memory until the commit, about 1 GB per million events.
    """

    connection_config: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_CONNECTION_CONFIG))
    lock_wait_seconds: float = Field(
        default=600.0,
        description="How long, in all, a step waits for another process to release the warehouse file "
                    "before it fails with WAREHOUSE_LOCKED.")

    @contextmanager
    def get_connection(self):
        if self.database not in ("", ":memory:") and not self.database.startswith("md:"):
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        # the same configuration DuckDBResource passes (custom_user_agent since duckdb 1.0)
        config = {"custom_user_agent": "dagster", **self.connection_config}
        conn = self._connect(config)
        try:
            yield conn
        finally:
            conn.close()

    def _connect(self, config: dict) -> duckdb.DuckDBPyConnection:
        log = dg.get_dagster_logger("hitcraft.warehouse")
        t0 = time.monotonic()
        delay = LOCK_FIRST_DELAY_S
        while True:
            try:
                return duckdb.connect(database=self.database, read_only=False, config=config)
            except duckdb.IOException as exc:
                if not is_lock_conflict(exc):
                    raise
                holder = LockHolder(str(exc))
                waited = time.monotonic() - t0
                remaining = self.lock_wait_seconds - waited
                if remaining <= 0:
                    raise WarehouseLockedError(self.database, holder, waited) from exc
                pause = min(delay, remaining)
                log.warning(f"the warehouse {self.database} is locked by {holder}: waiting {pause:.0f} s "
                            f"(waited {waited:.0f} s of {self.lock_wait_seconds:.0f} s)")
                _sleep(pause)
                delay = min(delay * 2, LOCK_MAX_DELAY_S)


LOCK_FIRST_DELAY_S = 1.0
LOCK_MAX_DELAY_S = 15.0


def _sleep(seconds: float) -> None:
    """time.sleep in short slices, so that a run being stopped (hitcraft_assets.runs) interrupts it quickly."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, 0.25))


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection):
    """One DuckDB transaction: committed when the block ends, rolled back (and re-raised) on any error,
    so a partition write is all or nothing."""
    conn.execute("begin transaction")
    try:
        yield conn
    except BaseException:
        try:
            conn.execute("rollback")
        except duckdb.Error:
            pass  # the transaction is gone already; the error that ended it is the one to report
        raise
    conn.execute("commit")
