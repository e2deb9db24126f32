"""Runtime settings from the environment (ARCHITECTURE.md's table), read when called, never at import time.

Secrets are not here: they reach resources through dg.EnvVar in definitions.py.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

DEFAULT_DATA_DIR = Path("data")
DEMO_HISTORY_DAYS = 90


class SettingsError(ValueError):
    """An environment variable has a value the engine cannot use."""


def data_dir() -> Path:
    return Path(os.environ.get("HITCRAFT_DATA_DIR") or DEFAULT_DATA_DIR)


def duckdb_path() -> Path:
    return Path(os.environ.get("HITCRAFT_DUCKDB_PATH") or data_dir() / "hitcraft.duckdb")


def demo_dir() -> Path:
    """Where `hitcraft generate-demo` writes by default, and the default export folder."""
    return data_dir() / "demo_export"


def export_dir() -> Path:
    return Path(os.environ.get("HITCRAFT_EXPORT_DIR") or demo_dir())


def staging_dir() -> Path:
    return data_dir() / "staging"


def source_mode() -> str:
    mode = (os.environ.get("HITCRAFT_SOURCE") or "files").strip().lower()
    if mode not in ("files", "mixpanel"):
        raise SettingsError(f"SETTINGS_SOURCE: HITCRAFT_SOURCE must be 'files' or 'mixpanel', got {mode!r}")
    return mode


def parse_day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise SettingsError(f"SETTINGS_DATE: {name} must be a date as YYYY-MM-DD, got {value!r}") from None


def demo_ground_truth(directory: Path | None = None) -> dict | None:
    path = (directory or export_dir()) / "ground_truth.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def start_date() -> date:
    """First daily partition: HITCRAFT_START_DATE, else the demo's first day, else 90 days before today."""
    value = os.environ.get("HITCRAFT_START_DATE")
    if value:
        return parse_day(value, "HITCRAFT_START_DATE")
    truth = demo_ground_truth() if source_mode() == "files" else None
    if truth and truth.get("start_date"):
        return date.fromisoformat(truth["start_date"])
    return datetime.now(timezone.utc).date() - timedelta(days=DEMO_HISTORY_DAYS)


def public_url() -> str:
    """The dashboard's base URL, for links in emails (HITCRAFT_PUBLIC_URL)."""
    return (os.environ.get("HITCRAFT_PUBLIC_URL") or "http://127.0.0.1:8000").rstrip("/")


def outbox_dir() -> Path:
    """Where messages go without SMTP settings: one .eml file each."""
    return data_dir() / "outbox"


def dagster_url() -> str:
    """The Dagster UI's base URL, for links to runs in operator alerts (HITCRAFT_DAGSTER_URL)."""
    return (os.environ.get("HITCRAFT_DAGSTER_URL") or "http://127.0.0.1:3000").rstrip("/")


def serving_path() -> Path:
    """The serving snapshot the API and the dashboard read (HITCRAFT_SERVING_PATH)."""
    return Path(os.environ.get("HITCRAFT_SERVING_PATH") or data_dir() / "serving.duckdb")
