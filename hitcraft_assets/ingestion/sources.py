"""Where a day's raw export comes from: a folder of export files, or Mixpanel's Raw Export API.

Either way the result is a JSONL body on disk (plain or .gz) that DuckDB reads; nothing is held in memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg

from hitcraft_assets.ingestion.mixpanel import MixpanelResource


@dataclass(frozen=True)
class FetchedDay:
    day: date
    path: Path | None          # None: the source has no data for this day (an empty day)
    source: str                # where it came from, safe to show (no secrets)
    bytes_read: int
    note: str
    attempts: int = 1
    is_staged: bool = False     # a downloaded copy that can be deleted after loading


class ExportSourceResource(dg.ConfigurableResource):
    """The daily export source: `files` (HITCRAFT_EXPORT_DIR) or `mixpanel` (the Raw Export API)."""

    source: str = "files"
    export_dir: str = "data/demo_export"
    staging_dir: str = "data/staging"
    mixpanel: MixpanelResource

    def day_file(self, day: date) -> Path | None:
        base = Path(self.export_dir)
        for name in (f"{day.isoformat()}.jsonl", f"{day.isoformat()}.jsonl.gz"):
            if (base / name).exists():
                return base / name
        return None

    def fetch_day(self, day: date, log: logging.Logger | None = None) -> FetchedDay:
        if self.source == "files":
            path = self.day_file(day)
            if path is None:
                return FetchedDay(day, None, f"files:{self.export_dir}", 0,
                                  f"no export file for {day} in {self.export_dir}: loaded as an empty day")
            return FetchedDay(day, path, f"files:{path}", path.stat().st_size, "export file")
        if self.source == "mixpanel":
            staging = Path(self.staging_dir)
            staging.mkdir(parents=True, exist_ok=True)
            result = self.mixpanel.export_day(day, staging / f"{day.isoformat()}.jsonl", log=log)
            host = self.mixpanel.describe().get("host", "mixpanel")
            return FetchedDay(day, result.path, f"mixpanel:{host}", result.bytes_read,
                              f"Raw Export API, {result.attempts} attempt(s)", result.attempts, is_staged=True)
        raise ValueError(f"SOURCE_UNKNOWN: HITCRAFT_SOURCE must be 'files' or 'mixpanel', got {self.source!r}")

    def fetch_profiles(self, log: logging.Logger | None = None) -> tuple[Path | None, str]:
        """The Engage profiles snapshot as JSONL on disk (files mode: profiles.jsonl if present)."""
        if self.source == "files":
            path = Path(self.export_dir) / "profiles.jsonl"
            return (path if path.exists() else None), f"files:{path}"
        staging = Path(self.staging_dir)
        staging.mkdir(parents=True, exist_ok=True)
        dest = staging / "profiles.jsonl"
        self.mixpanel.export_profiles(dest, log=log)
        return dest, f"mixpanel:{self.mixpanel.describe().get('api_host', 'mixpanel')}"
