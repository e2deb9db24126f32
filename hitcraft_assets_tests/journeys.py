"""Declarative journeys, in the way PostHog tests funnels: `person -> [(event, timestamp, properties)]`,
loaded as rows of raw.events into a real DuckDB file, so the analysis SQL runs on exactly what a test
states. A timestamp is an aware datetime or an ISO string with an offset ("2026-03-02T09:00:00+00:00")."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import duckdb

from hitcraft_assets.analysis.identity import ensure_identity, rebuild_identity
from hitcraft_assets.warehouse import ensure_schema

Step = tuple[str, datetime | str] | tuple[str, datetime | str, Mapping[str, Any]]
Journeys = Mapping[str, Sequence[Step]]


def _ts(value: datetime | str) -> datetime:
    ts = datetime.fromisoformat(value) if isinstance(value, str) else value
    if ts.tzinfo is None:
        raise ValueError(f"journey timestamps need a timezone: {value!r}")
    return ts.astimezone(timezone.utc)


def load_journeys(conn: duckdb.DuckDBPyConnection, journeys: Journeys) -> int:
    """Insert every step as an event of `person` (its distinct_id, unless the properties carry one) and
    rebuild the identity map. `$device_id` / `$user_id` in the properties fill those columns."""
    ensure_schema(conn)
    rows = []
    n = 0
    for person, steps in journeys.items():
        for step in steps:
            event, ts = step[0], _ts(step[1])
            props = dict(step[2]) if len(step) > 2 else {}
            distinct_id = str(props.pop("distinct_id", person))
            n += 1
            properties = {"time": int(ts.timestamp() * 1000), "distinct_id": distinct_id,
                          "$insert_id": f"j{n}", **props}
            rows.append((ts.date(), event, distinct_id, ts, f"j{n}", props.get("$device_id"),
                         props.get("$user_id"), json.dumps(properties)))
    conn.executemany(
        "insert into raw.events values (?, ?, ?, ?, ?, ?, ?, ?, now())", rows)
    rebuild_identity(conn)
    return n


def fresh_warehouse(path) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect(str(path))
    ensure_schema(conn)
    ensure_identity(conn)
    return conn


def export_days(journeys: Journeys) -> dict:
    """The journeys as lines of Mixpanel's export format, per UTC day: every step an event of `person` (its
    distinct_id, unless the properties carry one) with the $insert_id `<person>-<n>`, so that writing the
    same journeys again gives the same lines."""
    days: dict = {}
    for person, steps in journeys.items():
        for n, step in enumerate(steps):
            event, ts = step[0], _ts(step[1])
            props = dict(step[2]) if len(step) > 2 else {}
            distinct_id = str(props.pop("distinct_id", person))
            properties = {"time": int(ts.timestamp() * 1000), "distinct_id": distinct_id,
                          "$insert_id": f"{person}-{n}", **props}
            days.setdefault(ts.date(), []).append(
                (ts, json.dumps({"event": event, "properties": properties}, separators=(",", ":"))))
    return {day: [line for _, line in sorted(rows)] for day, rows in sorted(days.items())}


def write_export(directory, journeys: Journeys) -> list:
    """Write the journeys as a folder of export files (`YYYY-MM-DD.jsonl`, one per UTC day); returns the days."""
    from pathlib import Path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    days = export_days(journeys)
    for day, lines in days.items():
        (directory / f"{day.isoformat()}.jsonl").write_text("\n".join(lines) + "\n")
    return list(days)
