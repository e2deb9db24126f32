"""The API must never open the pipeline's warehouse (a reader there both fails while Dagster writes and
blocks Dagster's writer), so the pipeline publishes a serving snapshot: built in a temporary file and
swapped in atomically. A reader holding the old snapshot keeps reading it, a reader that reopens sees the
new one whole, and the warehouse is never locked by a reader."""

import json

import dagster as dg
import duckdb

from hitcraft_assets.delivery.assets import serving_snapshot
from hitcraft_assets.delivery.serving import publish
from hitcraft_assets.warehouse import WarehouseResource
from hitcraft_assets_tests.reports_fixture import LAST, build_warehouse


def meta(path) -> dict:
    with duckdb.connect(str(path), read_only=True) as conn:
        return {k: json.loads(v) for k, v in conn.execute("select key, value from meta").fetchall()}


def test_the_asset_publishes_the_tables_the_api_reads(tmp_path, monkeypatch, instance):
    warehouse, target = tmp_path / "w.duckdb", tmp_path / "serving.duckdb"
    build_warehouse(warehouse)
    monkeypatch.setenv("HITCRAFT_SERVING_PATH", str(target))
    result = dg.materialize([serving_snapshot], resources={"duckdb": WarehouseResource(database=str(warehouse))},
                            instance=instance)
    assert result.success
    m = meta(target)
    assert m["last_day"] == LAST.isoformat() and m["tables"]["insights"] > 0
    with duckdb.connect(str(target), read_only=True) as conn:
        tables = {r[0] for r in conn.execute("select table_name from duckdb_tables()").fetchall()}
        assert {"insights", "daily_metrics", "funnel_steps", "anomalies", "load_log", "meta"} <= tables
        assert conn.execute("select count(*) from insights").fetchall()[0][0] == m["tables"]["insights"]
    assert not list(tmp_path.glob("serving.duckdb.tmp-*"))           # nothing left behind


def test_a_reader_keeps_its_snapshot_while_a_new_one_is_swapped_in(tmp_path):
    warehouse, target = tmp_path / "w.duckdb", tmp_path / "serving.duckdb"
    build_warehouse(warehouse)
    with duckdb.connect(str(warehouse)) as conn:
        first = publish(conn, target)
    reader = duckdb.connect(str(target), read_only=True)           # the API holds the old snapshot open
    before = reader.execute("select count(*) from insights").fetchall()[0][0]
    with duckdb.connect(str(warehouse)) as conn:                     # the pipeline writes and publishes again
        conn.execute("delete from insights.insights where priority_rank > 2")
        second = publish(conn, target)
    assert reader.execute("select count(*) from insights").fetchall()[0][0] == before   # its old file still
    assert json.loads(reader.execute("select value from meta where key = 'snapshot_id'").fetchall()[0][0]) == \
        first["snapshot_id"]
    reader.close()
    assert meta(target)["snapshot_id"] == second["snapshot_id"] != first["snapshot_id"]
    with duckdb.connect(str(target), read_only=True) as conn:
        assert conn.execute("select count(*) from insights").fetchall()[0][0] < before
