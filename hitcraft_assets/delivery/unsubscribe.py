"""Unsubscribing from email digests: signed per-recipient tokens, the secret key, and the store of who opted out.

Plain Python with no Dagster import: the pipeline (which skips unsubscribed recipients) and the API (which
records an unsubscribe) both use it.

- ``secret_key()``: ``HITCRAFT_SECRET_KEY`` when set (at least 16 bytes), else 32 random bytes generated
  once into ``data_dir()/secret_key`` (mode 0600). The first process to create the file wins; every other
  process, now or later, reads that same key, so links in emails already sent stay valid.
- ``make_token`` / ``verify_token``: ``<payload>.<signature>``, both URL-safe base64 without padding. The
  payload is the compact JSON ``[profile, email, issued unix seconds]``; the signature is HMAC-SHA256
  over a purpose label and the payload, so a token made with the same key for another purpose (the
  dashboard's session cookies) can never pass as an unsubscribe token. Verification compares in constant
  time and rejects tokens older than ``max_age_days`` (365 by default: links in an old email should still
  work; PostHog's 30 days is short for a monthly digest). A token names one profile or ``*`` (all).
- ``unsubscribe_url`` (the page linked from the email's footer) and ``one_click_url`` (for the
  ``List-Unsubscribe`` header, RFC 8058 one-click POST). Only the URLs are built here: the REST API
  issue implements ``GET /unsubscribe`` (a confirmation page) and ``POST /v1/unsubscribe`` (one-click,
  body ``List-Unsubscribe=One-Click``), both calling ``verify_token`` and ``AppDB.unsubscribe``.
- ``AppDB``: the app's own small state in SQLite (``HITCRAFT_APP_DB``, default ``data_dir()/app.sqlite``),
  not in DuckDB, whose file the pipeline holds for writing. WAL mode lets readers and one writer work
  at the same time; ``busy_timeout`` makes a second writer wait instead of failing; every write is one
  short ``BEGIN IMMEDIATE`` transaction on its own connection, so the API process and the pipeline can use
  it together.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from hitcraft_assets import settings

_logger = logging.getLogger(__name__)

ALL_REPORTS = "*"
MIN_KEY_BYTES = 16
GENERATED_KEY_BYTES = 32
KEY_FILE_NAME = "secret_key"
TOKEN_PURPOSE = b"hitcraft:unsubscribe:v1\n"
MAX_TOKEN_CHARS = 2048
DEFAULT_MAX_AGE_DAYS = 365
_B64 = re.compile(r"^[A-Za-z0-9_-]+$")


class UnsubscribeError(Exception):
    """Base of this module's errors. ``code`` is stable."""

    default_code = "UNSUBSCRIBE_ERROR"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        self.code = code or self.default_code
        self.message = message
        super().__init__(f"[{self.code}] {message}")


class SecretKeyError(UnsubscribeError):
    """``HITCRAFT_SECRET_KEY`` (or the generated key file) is unusable. Codes: ``SECRET_KEY_SHORT``,
    ``SECRET_KEY_FILE``."""

    default_code = "SECRET_KEY_SHORT"


class TokenError(UnsubscribeError):
    """An unsubscribe token that cannot be trusted. Codes: ``TOKEN_MALFORMED`` (not a token of ours),
    ``TOKEN_SIGNATURE`` (tampered with, or signed with another key), ``TOKEN_EXPIRED``."""

    default_code = "TOKEN_MALFORMED"


# -- the key -------------------------------------------------------------------------------------


def secret_key_path() -> Path:
    return settings.data_dir() / KEY_FILE_NAME


def secret_key() -> bytes:
    """The key that signs unsubscribe tokens (and, later, the dashboard's session cookies)."""
    text = os.environ.get("HITCRAFT_SECRET_KEY")
    if text:
        key = text.strip().encode("utf-8")
        if len(key) < MIN_KEY_BYTES:
            raise SecretKeyError(
                f"HITCRAFT_SECRET_KEY must be at least {MIN_KEY_BYTES} bytes long, got {len(key)}; "
                "e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        return key
    path = secret_key_path()
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = _create_key_file(path)
    except OSError as e:
        raise SecretKeyError(f"cannot read {path}: {e}", code="SECRET_KEY_FILE") from None
    if len(key) < MIN_KEY_BYTES:
        raise SecretKeyError(
            f"{path} holds {len(key)} bytes, fewer than {MIN_KEY_BYTES}; delete it to generate a new key "
            "(links in emails already sent stop working)", code="SECRET_KEY_FILE")
    return key


def _create_key_file(path: Path) -> bytes:
    """Write a new key to ``path`` unless another process did first; return the key now in ``path``.

    The key is written to a 0600 temporary file and hard-linked into place: ``os.link`` fails if ``path``
    exists, so of two processes racing, one key wins and both return it (``os.replace`` would let the
    second overwrite a key the first has already used).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise SecretKeyError(f"cannot create {path}: {e}", code="SECRET_KEY_FILE") from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(GENERATED_KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
            _logger.info(f"generated a new secret key in {path}")
        except FileExistsError:
            pass  # another process won the race: use its key
        return path.read_bytes()
    except OSError as e:
        raise SecretKeyError(f"cannot create {path}: {e}", code="SECRET_KEY_FILE") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


# -- tokens --------------------------------------------------------------------------------------


def normalize_email(email: str) -> str:
    value = (email or "").strip().lower()
    if "@" not in value or any(c.isspace() for c in value):
        raise ValueError(f"not an email address: {email!r}")
    return value


def _profile(profile: str) -> str:
    value = (profile or "").strip()
    if not value:
        raise ValueError("the report profile is empty (use '*' for all reports)")
    return value


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not _B64.match(text):
        raise TokenError("not URL-safe base64")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("not URL-safe base64") from None


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
        raise SecretKeyError(f"the signing key must be at least {MIN_KEY_BYTES} bytes")


def _sign(key: bytes, payload_b64: str) -> bytes:
    return hmac.new(key, TOKEN_PURPOSE + payload_b64.encode("ascii"), hashlib.sha256).digest()


def make_token(key: bytes, profile: str, email: str, *, issued: datetime | None = None) -> str:
    """A URL-safe token that lets the holder unsubscribe ``email`` from ``profile`` (``*``: every report).

    ``issued`` (timezone-aware; default now) starts the token's validity.
    """
    _check_key(key)
    if issued is None:
        issued = datetime.now(timezone.utc)
    elif issued.tzinfo is None:
        raise ValueError("issued must be timezone-aware")
    payload = json.dumps([_profile(profile), normalize_email(email), int(issued.timestamp())],
                         separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    payload_b64 = _b64(payload)
    return f"{payload_b64}.{_b64(_sign(key, payload_b64))}"


def verify_token(
    key: bytes,
    token: str,
    *,
    max_age_days: float = DEFAULT_MAX_AGE_DAYS,
    now: datetime | None = None,
) -> tuple[str, str]:
    """``(profile, email)`` of a token made by ``make_token`` with ``key``; raises ``TokenError``."""
    _check_key(key)
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise TokenError("missing or oversized token")
    parts = token.strip().split(".")
    if len(parts) != 2:
        raise TokenError("a token has two parts separated by '.'")
    payload_b64, sig_b64 = parts
    signature = _unb64(sig_b64)
    _unb64(payload_b64)
    if not hmac.compare_digest(_sign(key, payload_b64), signature):
        raise TokenError("the signature does not match (tampered with, or made with another key)",
                         code="TOKEN_SIGNATURE")
    try:
        profile, email, issued_s = json.loads(_unb64(payload_b64).decode("utf-8"))
        if not (isinstance(profile, str) and isinstance(email, str) and isinstance(issued_s, int)):
            raise TypeError
    except (ValueError, TypeError):
        raise TokenError("the signed payload is not [profile, email, issued]") from None
    try:
        issued = datetime.fromtimestamp(issued_s, timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise TokenError("the signed issue time is out of range") from None
    now = now or datetime.now(timezone.utc)
    if now - issued > timedelta(days=max_age_days):
        raise TokenError(f"the token was issued on {issued.date().isoformat()}, more than {max_age_days:g} days ago",
                         code="TOKEN_EXPIRED")
    return profile, email


def _base(base_url: str) -> str:
    parts = urlsplit(base_url or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"the public URL must be http(s)://host[:port][/path], got {base_url!r}")
    return base_url.rstrip("/")


def unsubscribe_url(base_url: str, token: str) -> str:
    """``{base}/unsubscribe?token=...``: the page (served by the API issue) that confirms an unsubscribe."""
    return f"{_base(base_url)}/unsubscribe?{urlencode({'token': token})}"


def one_click_url(base_url: str, token: str) -> str:
    """``{base}/v1/unsubscribe?token=...``: for ``List-Unsubscribe`` with ``List-Unsubscribe-Post:
    List-Unsubscribe=One-Click`` (RFC 8058; mail providers POST to it; Gmail requires https)."""
    return f"{_base(base_url)}/v1/unsubscribe?{urlencode({'token': token})}"


# -- the store -----------------------------------------------------------------------------------


def app_db_path() -> Path:
    return Path(os.environ.get("HITCRAFT_APP_DB") or settings.data_dir() / "app.sqlite")


@dataclass(frozen=True)
class Unsubscribe:
    email: str
    profile: str                   # a report profile name, or '*' for every report
    unsubscribed_at: datetime      # UTC
    source: str                    # e.g. one-click, link, cli, api


_SCHEMA = """
create table if not exists unsubscribes (
    email text not null,            -- lower-cased
    profile text not null,          -- report profile name, or '*' for every report
    unsubscribed_at text not null,  -- ISO 8601, UTC
    source text not null,
    primary key (email, profile)
)
"""


class AppDB:
    """The app's own state in SQLite (for now: ``unsubscribes``). Safe to use from several processes."""

    def __init__(self, path: str | Path | None = None, *, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path) if path else app_db_path()
        self.busy_timeout_s = busy_timeout_s
        self._schema_ready = False

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode (``BEGIN`` explicitly), WAL, with the busy timeout; closed after."""
        if not self._schema_ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        try:
            conn.execute(f"pragma busy_timeout = {int(self.busy_timeout_s * 1000)}")
            if not self._schema_ready:
                mode = conn.execute("pragma journal_mode = wal").fetchone()[0]
                if str(mode).lower() != "wal":
                    _logger.warning(f"{self.path}: SQLite kept journal mode {mode!r} (no WAL on this file system?)")
                with write_transaction(conn):
                    conn.execute(_SCHEMA)
                self._schema_ready = True
            yield conn
        finally:
            conn.close()

    def unsubscribe(self, email: str, profile: str = ALL_REPORTS, source: str = "link") -> bool:
        """Record that ``email`` wants no more ``profile`` reports (``*``: none). False if already recorded
        (the first time and source are kept)."""
        email, profile = normalize_email(email), _profile(profile)
        source = (source or "").strip() or "unknown"
        at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self.connect() as conn, write_transaction(conn):
            cur = conn.execute(
                "insert into unsubscribes (email, profile, unsubscribed_at, source) values (?, ?, ?, ?) "
                "on conflict (email, profile) do nothing",
                (email, profile, at, source),
            )
            return cur.rowcount > 0

    def is_unsubscribed(self, email: str, profile: str) -> bool:
        """True if ``email`` unsubscribed from ``profile`` or from every report."""
        email, profile = normalize_email(email), _profile(profile)
        with self.connect() as conn:
            row = conn.execute(
                "select 1 from unsubscribes where email = ? and profile in (?, ?) limit 1",
                (email, profile, ALL_REPORTS),
            ).fetchone()
        return row is not None

    def resubscribe(self, email: str, profile: str) -> int:
        """Undo an unsubscribe from ``profile``; ``*`` removes every unsubscribe of ``email``. Returns the rows
        removed. (After ``resubscribe(e, 'daily')`` an earlier ``*`` still stops every report.)"""
        email, profile = normalize_email(email), _profile(profile)
        with self.connect() as conn, write_transaction(conn):
            if profile == ALL_REPORTS:
                cur = conn.execute("delete from unsubscribes where email = ?", (email,))
            else:
                cur = conn.execute("delete from unsubscribes where email = ? and profile = ?", (email, profile))
            return cur.rowcount

    def list_unsubscribed(self) -> list[Unsubscribe]:
        with self.connect() as conn:
            rows = conn.execute(
                "select email, profile, unsubscribed_at, source from unsubscribes order by email, profile"
            ).fetchall()
        return [Unsubscribe(e, p, datetime.fromisoformat(at), s) for e, p, at, s in rows]


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One short write transaction; ``BEGIN IMMEDIATE`` takes the write lock up front (waiting up to the
    busy timeout) so that it cannot fail later on a read-to-write upgrade."""
    conn.execute("begin immediate")
    try:
        yield
    except BaseException:
        conn.execute("rollback")
        raise
    conn.execute("commit")
