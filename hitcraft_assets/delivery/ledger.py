"""The send ledger (delivery.email_sends): one row per (profile, period, recipient), so that no message is
sent twice, whatever retries, re-materializations, second runs or concurrent runs happen.

Before a send the row becomes `sending`, committed; after it, `sent` (or `outbox`, `failed`, `refused`).
A message is sent only when its row is new or `failed` (the server said no, so nothing went out). A row
still `sending` means an earlier attempt stopped during the send, and it cannot be known whether the
message left: it becomes `unknown` and is not sent again (at most once; the deterministic Message-ID lets a
mail client drop a duplicate too). Every DuckDB write here is its own short transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb

from hitcraft_assets.warehouse import ensure_schema, named_statements, run_named, transaction

SQL_FILE = "delivery/email_reports.sql"
SENDABLE = ("failed",)
DONE = ("sent", "outbox")


@dataclass(frozen=True)
class SendKey:
    profile: str
    cadence: str
    period_start: date
    period_end: date
    recipient: str        # lower-cased address
    message_id: str

    def params(self, **extra) -> dict:
        return {"profile": self.profile, "cadence": self.cadence, "period_start": self.period_start,
                "period_end": self.period_end, "recipient": self.recipient, "message_id": self.message_id, **extra}


def ensure_ledger(conn: duckdb.DuckDBPyConnection) -> None:
    ensure_schema(conn)
    conn.execute(named_statements(SQL_FILE)["schema"])


def state(conn: duckdb.DuckDBPyConnection, key: SendKey) -> str | None:
    rows = run_named(conn, SQL_FILE, "send_state", key.params()).fetchall()
    return rows[0][0] if rows else None


def claim(conn: duckdb.DuckDBPyConnection, key: SendKey) -> str | None:
    """Mark the message `sending` if it may be sent, and return None; else return why not (its status)."""
    with transaction(conn):
        current = state(conn, key)
        if current is None:
            run_named(conn, SQL_FILE, "claim_new", key.params(status="sending", reason=None))
            return None
        if current in SENDABLE:
            run_named(conn, SQL_FILE, "claim_again", key.params(status="sending", reason=None))
            return None
        if current == "sending":
            run_named(conn, SQL_FILE, "record_outcome", key.params(
                status="unknown", transport=None,
                reason="an earlier attempt stopped during the send: it may have gone out, so it is not sent again"))
            return "unknown"
        return current


def record(conn: duckdb.DuckDBPyConnection, key: SendKey, status: str, *, reason: str | None = None,
           transport: str | None = None) -> None:
    """The outcome of a claimed send."""
    with transaction(conn):
        run_named(conn, SQL_FILE, "record_outcome", key.params(status=status, reason=reason, transport=transport))


def skip(conn: duckdb.DuckDBPyConnection, key: SendKey, status: str, reason: str) -> str:
    """Record that a message is not sent (unsubscribed, nothing to say), unless it already went out;
    returns the row's status."""
    with transaction(conn):
        current = state(conn, key)
        if current in DONE or current in ("unknown", "sending"):
            return current
        if current is None:
            run_named(conn, SQL_FILE, "claim_new", key.params(status=status, reason=reason))
        else:
            run_named(conn, SQL_FILE, "claim_again", key.params(status=status, reason=reason))
        return status


def store_report(conn: duckdb.DuckDBPyConnection, key: SendKey, *, subject: str, html: str, text: str,
                 insight_ids: str, images: int) -> None:
    """Replace the rendered report of (profile, period, recipient)."""
    with transaction(conn):
        run_named(conn, SQL_FILE, "delete_report", key.params())
        run_named(conn, SQL_FILE, "insert_report", key.params(subject=subject, html=html, text=text,
                                                              insight_ids=insight_ids, images=images))
