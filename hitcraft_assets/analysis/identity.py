"""Identity: rebuild core.identity_map and the core.identified_events view (user_key per event)."""

from __future__ import annotations

import duckdb

from hitcraft_assets.warehouse import ensure_schema, named_statements, transaction

SQL_FILE = "analysis/identity_map.sql"


def ensure_identity(conn: duckdb.DuckDBPyConnection) -> None:
    """Make sure the map table and the view exist (an empty map if never rebuilt)."""
    ensure_schema(conn)
    statements = named_statements(SQL_FILE)
    conn.execute(statements["schema"])
    conn.execute(statements["identified_events"])


def rebuild_identity(conn: duckdb.DuckDBPyConnection) -> dict:
    """Rebuild the device -> user map from every stored event; returns counts for metadata."""
    ensure_identity(conn)
    statements = named_statements(SQL_FILE)
    with transaction(conn):
        conn.execute(statements["rebuild"])
        conn.execute(statements["identified_events"])
    devices, users = conn.execute(
        "select count(*), count(distinct user_id) from core.identity_map").fetchall()[0]
    return {"devices_mapped": devices, "users_with_devices": users}
