"""API keys: created and revoked by the CLI, checked by the API on every request, stored hashed in the app
database (``HITCRAFT_APP_DB``, the SQLite file of ``delivery.unsubscribe.AppDB``).

- A key reads ``hc_<key_id>_<secret>``: ``key_id`` is 8 hex digits (4 random bytes) that find the row,
  ``secret`` is 32 random bytes in URL-safe base64 (256 bits: no guessing, so a fast hash is the right
  one; a slow password hash would only slow every request down). The table keeps ``key_id`` and the
  SHA-256 of the secret, never the key itself; ``verify`` compares hashes with ``hmac.compare_digest``.
  The full key is shown once, by ``hitcraft api-keys create``, and cannot be recovered.
- Scopes: ``read`` (every GET of the API) and ``admin`` (which includes ``read``).
- ``verify`` reads the row on every request (a WAL read on a connection kept per thread: a few
  microseconds), so a key created or revoked by the CLI takes effect on the next request without
  restarting the server; nothing is cached but the connection. It writes
  ``last_used_at`` at most once a minute per key, and gives up on that write rather than wait when the
  database is busy: it is a hint, not an audit log.
- ``require_scope(scope)`` is the FastAPI dependency: ``Depends(require_scope("read"))``. It answers 401
  ``AUTH_REQUIRED`` (no ``Authorization: Bearer`` header; with ``WWW-Authenticate: Bearer``), 401
  ``AUTH_INVALID`` (unknown or revoked key), 429 ``RATE_LIMITED`` (with ``Retry-After``; a token bucket per
  key, see ratelimit.py) and 403 ``FORBIDDEN`` (the key's scope is too small), in that order, as
  ``ApiError``. The app database is ``request.app.state.app_db_path`` when the app sets it (``create_app``
  does), else ``HITCRAFT_APP_DB`` (default ``data/app.sqlite``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hitcraft_assets.app.errors import ApiError
from hitcraft_assets.app.ratelimit import RateLimiter, retry_after_header
from hitcraft_assets.delivery.unsubscribe import AppDB, app_db_path, write_transaction

SCOPES = ("read", "admin")
KEY_PREFIX = "hc"
KEY_ID_BYTES = 4
SECRET_BYTES = 32
LAST_USED_EVERY_S = 60.0
_KEY = re.compile(r"^hc_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()

_SCHEMA = """
create table if not exists api_keys (
    name text not null unique,      -- chosen by the operator; kept after revocation
    scope text not null check (scope in ('read', 'admin')),
    key_id text not null unique,    -- the 8 hex digits after hc_: finds the row
    key_hash text not null,         -- SHA-256 (hex) of the secret part; the key itself is never stored
    created_at text not null,       -- ISO 8601, UTC
    last_used_at text,              -- updated at most once a minute
    revoked_at text                 -- set by revoke: the key stops working at once
)
"""


class AuthError(Exception):
    """A key operation the CLI refuses. ``code``: ``KEY_NAME_TAKEN``, ``KEY_NAME_INVALID``, ``KEY_SCOPE``,
    ``KEY_UNKNOWN``."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


@dataclass(frozen=True)
class KeyInfo:
    """Who is calling: what a route gets from ``require_scope``."""

    name: str
    scope: str


@dataclass(frozen=True)
class KeyRow:
    """A key as ``list_keys`` shows it: never the key, never its hash."""

    name: str
    scope: str
    key_id: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


# -- the store -----------------------------------------------------------------------------------

AppDBLike = AppDB | str | Path | None
_dbs: dict[Path, AppDB] = {}
_dbs_lock = threading.Lock()


def _db(app_db: AppDBLike) -> AppDB:
    """An AppDB for a path, kept per process so that its one-time setup (WAL, schema) runs once."""
    if isinstance(app_db, AppDB):
        return app_db
    path = Path(app_db) if app_db else app_db_path()
    with _dbs_lock:
        db = _dbs.get(path)
        if db is None:
            db = _dbs[path] = AppDB(path)
        return db


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _no_table(exc: sqlite3.OperationalError) -> bool:
    return "no such table" in str(exc)


def create_key(app_db: AppDBLike, name: str, scope: str = "read") -> str:
    """Create a key named ``name`` with ``scope``; returns the key, the only time it exists in clear."""
    name = (name or "").strip()
    if not _NAME.match(name):
        raise AuthError("KEY_NAME_INVALID", f"a key name is 1-64 letters, digits, '.', '_', '-' or '@', starting "
                                            f"with a letter or digit; got {name!r}")
    if scope not in SCOPES:
        raise AuthError("KEY_SCOPE", f"the scope must be one of {', '.join(SCOPES)}; got {scope!r}")
    db = _db(app_db)
    with db.connect() as conn, write_transaction(conn):
        conn.execute(_SCHEMA)
        if conn.execute("select 1 from api_keys where name = ?", (name,)).fetchone():
            raise AuthError("KEY_NAME_TAKEN", f"an API key named {name!r} already exists (a revoked key keeps its "
                                              f"name; choose another, see hitcraft api-keys list)")
        for _ in range(10):   # 32-bit ids: a clash is rare, and retried
            key_id = secrets.token_hex(KEY_ID_BYTES)
            if not conn.execute("select 1 from api_keys where key_id = ?", (key_id,)).fetchone():
                break
        secret = secrets.token_urlsafe(SECRET_BYTES)
        conn.execute("insert into api_keys (name, scope, key_id, key_hash, created_at) values (?, ?, ?, ?, ?)",
                     (name, scope, key_id, _hash(secret), _now()))
    return f"{KEY_PREFIX}_{key_id}_{secret}"


def list_keys(app_db: AppDBLike = None) -> list[KeyRow]:
    """Every key, active and revoked, by name."""
    try:
        with _db(app_db).connect() as conn:
            rows = conn.execute("select name, scope, key_id, created_at, last_used_at, revoked_at from api_keys "
                                "order by name").fetchall()
    except sqlite3.OperationalError as exc:
        if _no_table(exc):
            return []
        raise
    return [KeyRow(n, s, k, _when(c), _when(u), _when(r)) for n, s, k, c, u, r in rows]


def revoke_key(app_db: AppDBLike, name: str) -> bool:
    """Revoke the active key named ``name``: True if it was active, False if there is none (unknown, or
    revoked before). The row stays, so that ``list`` shows when it was revoked."""
    with _db(app_db).connect() as conn, write_transaction(conn):
        conn.execute(_SCHEMA)
        cur = conn.execute("update api_keys set revoked_at = ? where name = ? and revoked_at is null",
                           (_now(), (name or "").strip()))
        return cur.rowcount > 0


_touched: dict[tuple[Path, str], float] = {}   # (db path, key_id) -> monotonic time of the last write
_readers = threading.local()                    # per thread: {db path: (connection, (st_dev, st_ino))}


def _reader(db: AppDB) -> sqlite3.Connection:
    """This thread's read connection to ``db``: opening one costs ~125 us, a lookup on an open one ~3 us.
    Each SELECT in autocommit mode is its own read transaction, so it sees every commit made before it
    (a key created or revoked a moment ago); a file replaced at the same path (a new inode) is reopened."""
    cache = getattr(_readers, "conns", None)
    if cache is None:
        cache = _readers.conns = {}
    try:
        st = os.stat(db.path)
        ident = (st.st_dev, st.st_ino)
    except FileNotFoundError:
        ident = None
    held = cache.get(db.path)
    if held is not None and held[1] == ident and ident is not None:
        return held[0]
    if held is not None:
        held[0].close()
    with db.connect():   # the one-time setup (the folder, WAL mode) of a new file
        pass
    conn = sqlite3.connect(db.path, timeout=db.busy_timeout_s, isolation_level=None, check_same_thread=False)
    conn.execute(f"pragma busy_timeout = {int(db.busy_timeout_s * 1000)}")
    st = os.stat(db.path)
    cache[db.path] = (conn, (st.st_dev, st.st_ino))
    return conn


def verify(app_db: AppDBLike, presented: str) -> KeyInfo | None:
    """The active key ``presented`` names, or None (malformed, unknown, wrong secret, revoked)."""
    match = _KEY.match(presented or "")
    if match is None:
        return None
    key_id, secret = match.groups()
    db = _db(app_db)
    try:
        row = _reader(db).execute("select name, scope, key_hash, revoked_at, last_used_at from api_keys "
                                  "where key_id = ?", (key_id,)).fetchone()
    except sqlite3.OperationalError as exc:
        if _no_table(exc):
            return None   # no key was ever created
        raise
    if row is None:
        hmac.compare_digest(_hash(secret), _DUMMY_HASH)   # the same work as for a known id
        return None
    name, scope, key_hash, revoked_at, last_used_at = row
    if not hmac.compare_digest(_hash(secret), key_hash) or revoked_at is not None:
        return None
    _touch(db, key_id, last_used_at)
    return KeyInfo(name, scope)


def _touch(db: AppDB, key_id: str, last_used_at: str | None) -> None:
    """Record the use, at most once a minute per key, without waiting long for a busy database."""
    now = time.monotonic()
    if now - _touched.get((db.path, key_id), -LAST_USED_EVERY_S) < LAST_USED_EVERY_S:
        return
    stamp = datetime.now(timezone.utc)
    if last_used_at and (stamp - datetime.fromisoformat(last_used_at)).total_seconds() < LAST_USED_EVERY_S:
        _touched[(db.path, key_id)] = now   # another process wrote it a moment ago
        return
    _touched[(db.path, key_id)] = now
    try:
        with db.connect() as conn:
            conn.execute("pragma busy_timeout = 200")
            with write_transaction(conn):
                conn.execute("update api_keys set last_used_at = ? where key_id = ?",
                             (stamp.isoformat(timespec="seconds"), key_id))
    except sqlite3.OperationalError:
        _touched.pop((db.path, key_id), None)   # busy: try again on the next request


# -- the FastAPI dependency ----------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, scheme_name="api_key",
                     description="An API key, made by `hitcraft api-keys create NAME`: `Authorization: Bearer hc_...`")
_limiter_lock = threading.Lock()


def _error(code: str, message: str) -> dict:
    return {"application/json": {"example": {"error": {"code": code, "message": message}}}}


# for a route's `responses=`: the answers require_scope adds, so that the OpenAPI document lists them
AUTH_RESPONSES: dict[int | str, dict] = {
    401: {"description": "No API key (`AUTH_REQUIRED`), or an unknown or revoked one (`AUTH_INVALID`)",
          "content": _error("AUTH_REQUIRED", "send an API key: Authorization: Bearer <key>")},
    403: {"description": "The key's scope does not allow this (`FORBIDDEN`)",
          "content": _error("FORBIDDEN", "this needs a key with the admin scope")},
    429: {"description": "Too many requests with this key (`RATE_LIMITED`); wait `Retry-After` seconds",
          "content": _error("RATE_LIMITED", "too many requests with this key; retry after 1 s")},
}


def _app_db_of(request: Request) -> AppDBLike:
    return getattr(request.app.state, "app_db_path", None) or None


def _limiter_of(request: Request) -> RateLimiter:
    state = request.app.state
    limiter = getattr(state, "rate_limiter", None)
    if limiter is None:
        with _limiter_lock:
            limiter = getattr(state, "rate_limiter", None)
            if limiter is None:
                limiter = state.rate_limiter = RateLimiter.from_env()
    return limiter


def require_scope(scope: str) -> Callable[..., KeyInfo]:
    """A dependency that lets a request through with a valid key of ``scope`` (``admin`` includes ``read``)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; one of {SCOPES}")

    def dependency(request: Request,
                   credentials: HTTPAuthorizationCredentials | None = Security(_bearer)) -> KeyInfo:
        if credentials is None:
            raise ApiError(401, "AUTH_REQUIRED", "send an API key: Authorization: Bearer <key> "
                                                 "(hitcraft api-keys create NAME)",
                           headers={"WWW-Authenticate": "Bearer"})
        info = verify(_app_db_of(request), credentials.credentials)
        if info is None:
            raise ApiError(401, "AUTH_INVALID", "the API key is unknown or revoked",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        request.state.api_key_name = info.name   # for logs: the name, never the key
        wait = _limiter_of(request).acquire(info.name)
        if wait > 0:
            retry = retry_after_header(wait)
            raise ApiError(429, "RATE_LIMITED", f"too many requests with this key; retry after {retry} s",
                           headers={"Retry-After": retry})
        if scope == "admin" and info.scope != "admin":
            raise ApiError(403, "FORBIDDEN", f"this needs a key with the admin scope; {info.name!r} has "
                                             f"{info.scope!r}")
        return info

    dependency.__name__ = f"require_{scope}_key"
    return dependency
