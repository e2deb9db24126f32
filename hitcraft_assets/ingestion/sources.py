"""Where a day's raw export comes from: a folder of export files, or Mixpanel's Raw Export API.

Either way the result is a JSONL body on disk (plain or .gz) that DuckDB reads; nothing is held in memory.

From Mixpanel, a day is downloaded by the `raw_downloads` asset (:meth:`ExportSourceResource.download_day`)
into the staging folder: the body `<day>.jsonl`, complete (written to a `.part` name and renamed once
verified), then its manifest `<day>.json` (source, bytes, attempts, sha256), also written under another name
and renamed, so that a manifest only ever describes a whole body. `raw_events` loads a staged day when its
manifest and body agree (:meth:`ExportSourceResource.staged_day`), and fetches the day itself otherwise.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
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
    sha256: str | None = None   # the body's digest, when the download computed it


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
                              f"Raw Export API, {result.attempts} attempt(s)", result.attempts, is_staged=True,
                              sha256=result.sha256 or None)
        raise ValueError(f"SOURCE_UNKNOWN: HITCRAFT_SOURCE must be 'files' or 'mixpanel', got {self.source!r}")

    @property
    def downloads(self) -> bool:
        """Whether a day has to be downloaded before it can be loaded (files are read where they are)."""
        if self.source not in ("files", "mixpanel"):
            raise ValueError(f"SOURCE_UNKNOWN: HITCRAFT_SOURCE must be 'files' or 'mixpanel', got {self.source!r}")
        return self.source == "mixpanel"

    def _manifest(self, day: date) -> Path:
        return Path(self.staging_dir) / f"{day.isoformat()}.json"

    def download_day(self, day: date, log: logging.Logger | None = None) -> FetchedDay:
        """Download a day into the staging folder and write its manifest (after the body, atomically): what
        `raw_events` then loads without touching the network. Only for the Mixpanel source."""
        fetched = self.fetch_day(day, log=log)
        manifest = self._manifest(day)
        record = {k: (str(v) if isinstance(v, (Path, date)) else v) for k, v in asdict(fetched).items()}
        record["size"] = fetched.path.stat().st_size if fetched.path is not None else None
        part = manifest.with_name(manifest.name + ".part")
        part.write_text(json.dumps(record))
        os.replace(part, manifest)
        return fetched

    def staged_day(self, day: date) -> FetchedDay | None:
        """The day `download_day` left in staging, when its manifest describes the body there (same size),
        else None (nothing downloaded, or a body changed since)."""
        manifest = self._manifest(day)
        try:
            record = json.loads(manifest.read_text())
        except (OSError, ValueError):
            return None
        path = Path(record["path"]) if record.get("path") else None
        if path is not None and (not path.is_file() or path.stat().st_size != record.get("size")):
            return None
        return FetchedDay(day, path, record["source"], int(record["bytes_read"]), record["note"],
                          int(record.get("attempts", 1)), is_staged=True, sha256=record.get("sha256"))

    def discard_staged(self, day: date) -> None:
        """Remove a day's staged body and manifest (after its load)."""
        self._manifest(day).unlink(missing_ok=True)
        (Path(self.staging_dir) / f"{day.isoformat()}.jsonl").unlink(missing_ok=True)

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
