"""The DuckDB warehouse: where the SQL files live, how they are split into named statements, the schema."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

_NAME = re.compile(r"(?m)^-- name: *([a-z_][a-z0-9_]*) *$")
_PARAM = re.compile(r"\$([a-z_][a-z0-9_]*)")
_COMMENT = re.compile(r"--[^\n]*")


def sql_dir() -> Path:
    """The repository's sql/ folder (next to the package in a checkout or an editable install)."""
    override = os.environ.get("HITCRAFT_SQL_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "sql"


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


class WarehouseResource(DuckDBResource):
    """The DuckDB warehouse file. Like DuckDBResource (which retries a locked file with backoff), and it
    creates the file's folder first, so that a missing folder is not mistaken for a lock and retried.

    DuckDB's memory is capped (it spills to disk beyond the cap): an uncommitted day of events would
    otherwise sit in memory until the commit, about 1 GB per million events.
    """

    connection_config: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_CONNECTION_CONFIG))

    @contextmanager
    def get_connection(self):
        if self.database not in ("", ":memory:") and not self.database.startswith("md:"):
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with super().get_connection() as conn:
            yield conn


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection):
    """One DuckDB transaction: committed when the block ends, rolled back (and re-raised) on any error,
    so a partition write is all or nothing."""
    conn.execute("begin transaction")
    try:
        yield conn
    except BaseException:
        conn.execute("rollback")
        raise
    conn.execute("commit")
