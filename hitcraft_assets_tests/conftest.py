"""Shared fixtures. The environment is fixed before hitcraft_assets is imported: partitions are built
from HITCRAFT_START_DATE when the code location loads, and nothing may touch the user's data/ folder."""

import json
import os
import tempfile
from datetime import date, datetime, timezone
from pathlib import Path

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="hitcraft-tests-"))
os.environ["HITCRAFT_START_DATE"] = "2026-01-01"
os.environ["HITCRAFT_DATA_DIR"] = str(_SESSION_DIR / "data")
os.environ["HITCRAFT_EXPORT_DIR"] = str(_SESSION_DIR / "export")
os.environ["DAGSTER_HOME"] = str(_SESSION_DIR / "dagster_home")
for name in ("HITCRAFT_SOURCE", "HITCRAFT_DUCKDB_PATH", "HITCRAFT_CONFIG", "HITCRAFT_TIMEZONE",
             "MIXPANEL_PROJECT_ID", "MIXPANEL_SERVICE_ACCOUNT_USERNAME", "MIXPANEL_SERVICE_ACCOUNT_SECRET",
             "MIXPANEL_API_SECRET", "MIXPANEL_EXPORT_URL", "MIXPANEL_API_URL", "OPENAI_API_KEY"):
    os.environ.pop(name, None)
(_SESSION_DIR / "dagster_home").mkdir(parents=True, exist_ok=True)

import dagster as dg  # noqa: E402
import pytest  # noqa: E402
from hitcraft_assets.warehouse import WarehouseResource  # noqa: E402

from hitcraft_assets.ingestion.mixpanel import MixpanelResource  # noqa: E402
from hitcraft_assets.ingestion.sources import ExportSourceResource  # noqa: E402


def ms(day: date, hh: int = 0, mm: int = 0, ss: int = 0, milli: int = 0) -> int:
    """Epoch milliseconds of a UTC wall-clock time."""
    dt = datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=timezone.utc)
    return int(dt.timestamp()) * 1000 + milli


def event_line(event: str, distinct_id: str, time_ms: int, insert_id: str | None = None, **props) -> str:
    """One line exactly as Mixpanel's raw export writes it."""
    properties = {"time": time_ms, "distinct_id": distinct_id}
    if insert_id is not None:
        properties["$insert_id"] = insert_id
    properties.update(props)
    return json.dumps({"event": event, "properties": properties}, separators=(",", ":"))


def write_day(directory: Path, day: date, lines: list[str], gz: bool = False) -> Path:
    import gzip

    directory.mkdir(parents=True, exist_ok=True)
    body = ("\n".join(lines) + "\n").encode()
    path = directory / f"{day.isoformat()}.jsonl{'.gz' if gz else ''}"
    path.write_bytes(gzip.compress(body, mtime=0) if gz else body)
    return path


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def warehouse(tmp_path) -> Path:
    return tmp_path / "warehouse.duckdb"


@pytest.fixture
def export_dir(tmp_path) -> Path:
    d = tmp_path / "export"
    d.mkdir()
    return d


@pytest.fixture
def files_resources(tmp_path, warehouse, export_dir) -> dict:
    return {
        "duckdb": WarehouseResource(database=str(warehouse)),
        "export_source": ExportSourceResource(
            source="files", export_dir=str(export_dir), staging_dir=str(tmp_path / "staging"),
            mixpanel=MixpanelResource()),
    }

# The fixtures of the API and dashboard tests, registered once for the whole suite: a session-scoped fixture
# imported into each test module would be a new fixture per module (the demo snapshot built once per module,
# and a second Playwright started while the first runs, which its sync API refuses)
from hitcraft_assets_tests.api_fixture import api, api_factory, demo_snapshot, fresh_api  # noqa: E402,F401
from hitcraft_assets_tests.browser import browser, dashboard, page, signed_in_page  # noqa: E402,F401
