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


def test_the_api_answers_while_dagster_materializes_a_new_day(tmp_path, monkeypatch, files_resources, export_dir,
                                                               warehouse, instance):
    import threading
    from datetime import timedelta

    import httpx

    from hitcraft_assets.app.auth import create_key
    from hitcraft_assets.app.main import create_app
    from hitcraft_assets.app.ratelimit import RateLimiter
    from hitcraft_assets.ingestion.assets import raw_events
    from hitcraft_assets_tests.api_fixture import serving
    from hitcraft_assets_tests.conftest import event_line, ms, write_day

    target = tmp_path / "serving.duckdb"
    monkeypatch.setenv("HITCRAFT_SERVING_PATH", str(target))
    build_warehouse(warehouse)
    assert dg.materialize([serving_snapshot], resources=files_resources, instance=instance).success
    first = meta(target)["snapshot_id"]
    app_db = tmp_path / "app.sqlite"
    key = create_key(app_db, "reader", "read")
    new_day = LAST + timedelta(days=1)
    write_day(export_dir, new_day, [event_line("Login", f"u{k}", ms(new_day, 9, k), f"n{k}") for k in range(50)])
    statuses: list[int] = []
    stop = threading.Event()
    app = create_app(serving_path=target, app_db_path=app_db)
    app.state.rate_limiter = RateLimiter(10_000, 10_000)      # this test is about the snapshot, not the limit
    with serving(app) as url:
        def hammer():
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
                while not stop.is_set():
                    statuses.append(client.get("/v1/insights", params={"limit": 20}).status_code)
                    statuses.append(client.get("/v1/health").status_code)

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            # the pipeline writes the warehouse (a new day) and publishes a new snapshot while requests flow
            result = dg.materialize([raw_events, serving_snapshot], resources=files_resources, instance=instance,
                                    partition_key=new_day.isoformat())
        finally:
            stop.set()
            for t in threads:
                t.join()
        health = httpx.get(f"{url}/v1/health", timeout=30).json()
    assert result.success
    assert len(statuses) > 20 and set(statuses) == {200}
    assert health["snapshot_id"] == meta(target)["snapshot_id"] != first
