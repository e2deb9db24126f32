"""What the engine says about a day is what it would have said that day: a backfill over a range gives the
same detection, segment and insight rows as a backfill of its first days followed by the daily runs of the
rest, one after the other, each as the schedule runs it (the day's raw events, then the local days whose
results it can change). The first part checks that no day sees later days (a backfill of 38 days says what
a backfill of 40 says of them), the second that a day's run recomputes its trailing days as a backfill
does, and that the second run builds on what the first wrote; the daily runs are the last 2 days, when
every detector has the history to speak, and each of them recomputes 8 days. (40 daily runs took 12-17 of
CI's 30 minutes; 5 of them, about 50 s each on 2 cores, kept this test at 7 minutes.)"""

import json
import math
from datetime import date, timedelta

import dagster as dg
import duckdb
import pytest

from hitcraft_assets.analysis.assets import analysis_assets
from hitcraft_assets.demo.simulator import generate_demo
from hitcraft_assets.detection.assets import detection_assets
from hitcraft_assets.ingestion.assets import raw_events
from hitcraft_assets.insights.assets import insights
from hitcraft_assets.insights.llm import LLMResource
from hitcraft_assets.ingestion.mixpanel import MixpanelResource
from hitcraft_assets.ingestion.sources import ExportSourceResource
from hitcraft_assets.schedules import analysis_range
from hitcraft_assets.warehouse import WarehouseResource

DAYS = 40
DAILY_DAYS = 2    # daily runs of the last 2 days (each recomputes 8), after a backfill of the 38 before
END = date(2026, 2, 19)
START = END - timedelta(days=DAYS - 1)
DAILY_ASSETS = [raw_events, *[a for a in analysis_assets if a.partitions_def is not None], *detection_assets,
                insights]
UNPARTITIONED = [a for a in analysis_assets if a.partitions_def is None]
TABLES = {
    "analytics.anomalies": "metric_date, metric, dimension, segment",
    "analytics.trends": "as_of_date, metric, dimension, segment",
    "analytics.segment_comparisons": "metric_date, metric, dimension, segment",
    "analytics.return_rates": "metric_date, metric, dimension, segment",
    "insights.insights": "as_of_date, priority_rank, insight_id",
}


def _resources(tmp_path, db):
    return {"duckdb": WarehouseResource(database=str(db)), "llm": LLMResource(),
            "export_source": ExportSourceResource(source="files", export_dir=str(tmp_path / "export"),
                                                  staging_dir=str(tmp_path / f"staging-{db.stem}"),
                                                  mixpanel=MixpanelResource())}


def _run(instance, resources, first: date, last: date, assets) -> None:
    result = dg.materialize(assets + UNPARTITIONED, instance=instance, resources=resources,
                            selection=assets + UNPARTITIONED,
                            tags={"dagster/asset_partition_range_start": first.isoformat(),
                                  "dagster/asset_partition_range_end": last.isoformat()})
    assert result.success


def _rows(db) -> dict[str, list[tuple]]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return {table: conn.execute(f"select * exclude (context) from {table} order by {order}"
                                    if table == "insights.insights" else
                                    f"select * from {table} order by {order}").fetchall()
                for table, order in TABLES.items()}


def _same(a, b) -> bool:
    """Equal, with floats equal to 1e-9 (relative; 1e-12 absolute): DuckDB's parallel sums may differ in the
    last bits from one run of a query to the next, whatever the range. JSON text is compared as values."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, str) and isinstance(b, str) and a[:1] in "[{" and a != b:
        try:
            return _same(json.loads(a), json.loads(b))
        except ValueError:
            return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def assert_same_rows(got: dict[str, list[tuple]], want: dict[str, list[tuple]]) -> None:
    """Every table has rows, and the same rows in both (`_same`)."""
    for table in want:
        assert len(want[table]) > 0, table
        assert len(got[table]) == len(want[table]), table
        for g, w in zip(got[table], want[table]):
            assert _same(g, w), (table, g, w)


@pytest.mark.timeout(900)
def test_a_backfill_gives_the_rows_of_the_daily_runs(tmp_path):
    generate_demo(tmp_path / "export", days=DAYS, end_date=END, users=600, seed=11)
    backfill, daily = tmp_path / "backfill.duckdb", tmp_path / "daily.duckdb"
    with dg.instance_for_test() as instance:
        _run(instance, _resources(tmp_path, backfill), START, END, DAILY_ASSETS)
        resources = _resources(tmp_path, daily)
        _run(instance, resources, START, END - timedelta(days=DAILY_DAYS), DAILY_ASSETS)
        for i in range(DAILY_DAYS, 0, -1):   # each day's run: its raw events, then every local day they change
            day = END - timedelta(days=i - 1)
            _run(instance, resources, *analysis_range(day, day, "UTC", 7, START), DAILY_ASSETS)
    got, want = _rows(daily), _rows(backfill)
    assert_same_rows(got, want)
    kinds = {r[2] for r in want["insights.insights"]}
    assert len(kinds) >= 3
    assert any(r[1].startswith("funnel:") for r in want["analytics.anomalies"])   # a funnel step's first day
