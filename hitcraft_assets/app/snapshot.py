"""The serving snapshot as the app reads it: opened read-only, reopened when the pipeline publishes a new one.

The pipeline (hitcraft_assets/delivery/serving.py) writes a whole new DuckDB file and swaps it in with
`os.replace`, so a new snapshot is a new inode at the same path. `SnapshotStore.acquire()` stats the path on
every request (one syscall) and, when the inode changed, opens the new file and makes it current. A request
holds the snapshot it started with until it ends (reference counted): an old snapshot is closed only when its
last request has released it, so no request is dropped or sees a mix of two snapshots, and the old file's
inode stays readable until then (POSIX keeps an unlinked file alive while it is open).

Each snapshot is an in-memory DuckDB with the file ATTACHed read-only as `snap`, not `duckdb.connect(path)`:
DuckDB's Python module caches database instances by path, so connecting to the same path again while the
old snapshot is still open hands back the *old* instance (the replaced inode) instead of the new file.
Every request reads through its own cursor (`Snapshot.connect()`), which is safe across threads.

A snapshot never changes once published, so what is read from it can be kept until the next one: `memo()`
for per-snapshot facts (latest day, metric catalog, funnels) and `query()`, which keeps small results (an LRU
of 512 per snapshot). A dashboard reloading or a client polling then costs no DuckDB work; a new snapshot
starts with empty caches, so nothing outlives the data it came from.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TypeVar

import duckdb

from hitcraft_assets.app.errors import ApiError

_logger = logging.getLogger("hitcraft.api")

SCHEMA = "snap"
CACHE_ENTRIES = 512      # query results kept per snapshot
CACHE_MAX_ROWS = 1000    # larger results are not kept
T = TypeVar("T")


@dataclass(frozen=True)
class FileId:
    """What identifies one published snapshot file: a new `os.replace` gives a new inode."""

    device: int
    inode: int
    mtime_ns: int
    size: int

    @classmethod
    def of(cls, path: Path) -> FileId | None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return cls(st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class Snapshot:
    """One open snapshot file: its meta (snapshot_id, built_at, last_day, tables, config) and its tables."""

    def __init__(self, path: Path, file_id: FileId | None) -> None:
        self.path = Path(path)
        self.file_id = file_id
        # one thread per query: the queries are small and many run at once (one per request)
        self._conn = duckdb.connect(":memory:", config={"threads": 1})
        try:
            self._conn.execute(f"attach ? as {SCHEMA} (read_only)", [str(self.path)])
            rows = self._conn.execute(f"select key, value from {SCHEMA}.main.meta").fetchall()
            self.meta: dict = {key: json.loads(value) for key, value in rows}
            self.tables: frozenset[str] = frozenset(
                r[0] for r in self._conn.execute(
                    "select table_name from duckdb_tables() where database_name = ?", [SCHEMA]).fetchall())
        except BaseException:
            self._conn.close()
            raise
        if not self.meta.get("snapshot_id"):
            self._conn.close()
            raise ValueError(f"{self.path} has no snapshot_id in its meta table")
        self.opened_at = datetime.now(timezone.utc)
        self._memo: dict[str, object] = {}
        self._results: OrderedDict[tuple, list[dict]] = OrderedDict()
        self._users = 0
        self._retired = False
        self._lock = threading.Lock()
        self.closed = False

    # -- what it holds --------------------------------------------------------------------------
    @property
    def snapshot_id(self) -> str:
        return str(self.meta["snapshot_id"])

    @property
    def built_at(self) -> datetime | None:
        text = self.meta.get("built_at")
        return datetime.fromisoformat(text) if text else None

    @property
    def last_day(self) -> date | None:
        text = self.meta.get("last_day")
        return date.fromisoformat(text) if text else None

    @property
    def config(self) -> dict:
        return self.meta.get("config") or {}

    def has(self, table: str) -> bool:
        return table in self.tables

    def has_column(self, table: str, column: str) -> bool:
        """Whether the snapshot's `table` has `column` (snapshots of older warehouses lack newer columns)."""
        columns = self.memo(f"columns:{table}", lambda: {r["column_name"] for r in self.query(
            "select column_name from information_schema.columns where table_name = ?", [table])})
        return column in columns

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """`compute()` once per snapshot (a snapshot never changes): for catalogs and latest days that many
        requests need. Two threads may both compute it the first time; the results are equal. Callers must
        not mutate what it returns."""
        try:
            return self._memo[key]  # type: ignore[return-value]
        except KeyError:
            value = self._memo[key] = compute()
            return value

    def query(self, sql: str, params: list | tuple = ()) -> list[dict]:
        """Rows of `sql` as dicts (fresh dicts for the caller to keep or change). A snapshot never changes, so
        small results are kept (least recently used first out) and a repeated query, a dashboard reloading or
        a client polling, costs no DuckDB work until the next snapshot is published."""
        key = (sql, _hashable(params))
        with self._lock:
            hit = self._results.get(key)
            if hit is not None:
                self._results.move_to_end(key)
        if hit is None:
            with self.connect() as con:
                cur = con.execute(sql, list(params))
                names = [d[0] for d in cur.description]
                hit = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
            if len(hit) <= CACHE_MAX_ROWS:
                with self._lock:
                    self._results[key] = hit
                    while len(self._results) > CACHE_ENTRIES:
                        self._results.popitem(last=False)
        return [dict(r) for r in hit]

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of this snapshot, its tables unqualified (`select ... from insights`); closed after."""
        cur = self._conn.cursor()
        try:
            cur.execute(f"use {SCHEMA}")
            yield cur
        finally:
            cur.close()

    # -- its lifetime ---------------------------------------------------------------------------
    def _enter(self) -> None:
        with self._lock:
            self._users += 1

    def _leave(self) -> None:
        with self._lock:
            self._users -= 1
            done = self._retired and self._users == 0
        if done:
            self._close()

    def _retire(self) -> None:
        """No new request gets this snapshot; it closes when the last one using it leaves."""
        with self._lock:
            self._retired = True
            done = self._users == 0
        if done:
            self._close()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self._conn.close()


class SnapshotStore:
    """The current snapshot at `path`; thread-safe. `acquire`/`release` (or `use()`) around every request."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._current: Snapshot | None = None
        self._lock = threading.Lock()
        self._failed: tuple[FileId, str] | None = None   # a file that would not open: not retried until it changes

    def acquire(self) -> Snapshot:
        """The newest snapshot, held for the caller; raises ApiError 503 NO_SNAPSHOT when there is none."""
        file_id = FileId.of(self.path)
        with self._lock:
            current = self._current
            if file_id is not None and (current is None or _moved(current.file_id, file_id)):
                current = self._reopen(file_id) or current
            if current is None:
                reason = self._failed[1] if self._failed and self._failed[0] == file_id else None
                raise ApiError(503, "NO_SNAPSHOT", reason or (
                    "no serving snapshot has been published yet: run the pipeline (hitcraft run), whose last "
                    "step writes it"))
            current._enter()
            return current

    def release(self, snapshot: Snapshot) -> None:
        snapshot._leave()

    @contextmanager
    def use(self) -> Iterator[Snapshot]:
        snapshot = self.acquire()
        try:
            yield snapshot
        finally:
            self.release(snapshot)

    def peek(self) -> Snapshot | None:
        """The snapshot now current, without holding it or looking for a new one (for diagnostics)."""
        return self._current

    def close(self) -> None:
        with self._lock:
            if self._current is not None:
                self._current._retire()
                self._current = None

    def _reopen(self, file_id: FileId) -> Snapshot | None:
        """Open the file now at the path; keep the old snapshot (and say why) when the new one will not open."""
        if self._failed and self._failed[0] == file_id:
            return None
        try:
            fresh = Snapshot(self.path, file_id)
        except (duckdb.Error, ValueError, OSError) as exc:
            _logger.warning("the serving snapshot at %s cannot be read: %s: %s", self.path, type(exc).__name__, exc)
            self._failed = (file_id, "the serving snapshot cannot be read (the server log says why); the next "
                                     "published snapshot replaces it")
            return None
        self._failed = None
        old, self._current = self._current, fresh
        if old is not None:
            old._retire()
        _logger.info("serving snapshot %s (last day %s) from %s", fresh.snapshot_id, fresh.last_day, self.path)
        return fresh


def _hashable(value):
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


def _moved(held: FileId | None, now: FileId) -> bool:
    return held is None or (held.device, held.inode) != (now.device, now.inode) or held.mtime_ns != now.mtime_ns
