"""raw_downloads, raw_events and user_profiles with HITCRAFT_SOURCE=mixpanel, against a real local HTTP server
speaking Mixpanel's export and Engage wire formats: retries (429, 500, a cut stream, `terminated early`) end in
exactly the served rows, a reader never sees a partial partition, a 400 fails at once with its cause and
no secret, profiles are paged, and a day downloaded into staging is loaded from there (once, and only while
its body matches its manifest)."""

import threading
import time
from datetime import date

import dagster as dg

from hitcraft_assets.ingestion.assets import raw_downloads, raw_events, user_profiles
from hitcraft_assets.ingestion.mixpanel import MixpanelResource
from hitcraft_assets.ingestion.sources import ExportSourceResource
from hitcraft_assets.warehouse import WarehouseResource
from hitcraft_assets_tests.conftest import event_line, ms
from hitcraft_assets_tests.fake_mixpanel import CutBody, Delay, FakeMixpanel, Ok, Status, TerminatedEarly

DAY = date(2026, 4, 7)
USER, SECRET, PROJECT = "sa.test", "s3cr3t-value-xyz", "4242"
OLD = [event_line("Login", f"old{k}", ms(DAY, 1, k), f"old{k}") for k in range(20)]
NEW = [event_line("Production Started", f"new{k}", ms(DAY, 2, k % 60, k // 60), f"new{k}", **{"$os": "iOS"})
       for k in range(300)]


def resources(tmp_path, fake: FakeMixpanel, warehouse) -> dict:
    mixpanel = MixpanelResource(
        service_account_username=USER, service_account_secret=SECRET, project_id=PROJECT,
        export_url=fake.export_url, api_url=fake.api_url, backoff_base_s=0.01, backoff_max_s=0.05,
        rate_limit_dir=str(tmp_path / "ratelimit"))
    return {"duckdb": WarehouseResource(database=str(warehouse)),
            "export_source": ExportSourceResource(source="mixpanel", export_dir=str(tmp_path / "unused"),
                                                  staging_dir=str(tmp_path / "staging"), mixpanel=mixpanel)}


def stored(res, day=DAY):
    with res["duckdb"].get_connection() as conn:
        return conn.execute("select distinct_id from raw.events where event_date = ? order by all", [day]).fetchall()


def test_retries_end_in_exact_rows_and_no_partial_partition_is_visible(tmp_path, warehouse, instance):
    with FakeMixpanel(events={DAY: OLD}, service_account=(USER, SECRET), project_id=PROJECT) as fake:
        res = resources(tmp_path, fake, warehouse)
        assert dg.materialize([raw_events], partition_key=DAY.isoformat(), resources=res, instance=instance).success
        old_rows = stored(res)
        assert len(old_rows) == 20

        fake.set_events(DAY, NEW)
        fake.script(DAY, [Status(429, body='{"error": "Query rate limit exceeded"}', headers={"Retry-After": "1"}),
                          Status(500), Delay(0.3, CutBody(after_bytes=1000)), Delay(0.3, TerminatedEarly(keep_lines=100)),
                          Delay(0.3, Ok())])
        seen: list[int] = []
        done = threading.Event()

        def watch():
            while not done.is_set():
                seen.append(len(stored(res)))
                time.sleep(0.02)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            result = dg.materialize([raw_events], partition_key=DAY.isoformat(), resources=res, instance=instance)
        finally:
            done.set()
            watcher.join()
        assert result.success
        assert [r.status for r in fake.export_requests(DAY)][-5:] == [429, 500, 200, 200, 200]
        waits = fake.export_requests(DAY)
        assert waits[-4].started - waits[-5].started >= 1.0          # Retry-After honoured
        request = waits[-1]
        assert request.params["from_date"] == request.params["to_date"] == DAY.isoformat()
        assert request.params["project_id"] == PROJECT and request.params["time_in_ms"] == "true"

    assert stored(res) == sorted((f"new{k}",) for k in range(300))
    assert len(seen) > 10 and set(seen) <= {20, 300}, sorted(set(seen))   # never a partial day
    meta = result.asset_materializations_for_node("raw_events")[0].metadata
    assert meta["rows"].value == 300 and meta["source"].value == "mixpanel:127.0.0.1"
    assert meta["bytes_read"].value > 0 and "5 attempt(s)" in meta["note"].value
    assert list((tmp_path / "staging").iterdir()) == []                   # the downloaded body is removed


def test_bad_request_fails_at_once_with_its_cause_and_keeps_old_rows(tmp_path, warehouse, instance):
    with FakeMixpanel(events={DAY: OLD}, service_account=(USER, SECRET), project_id=PROJECT) as fake:
        res = resources(tmp_path, fake, warehouse)
        assert dg.materialize([raw_events], partition_key=DAY.isoformat(), resources=res, instance=instance).success
        fake.script(DAY, [Status(400, body="to_date cannot be later than today")])
        result = dg.materialize([raw_events], partition_key=DAY.isoformat(), resources=res, instance=instance,
                                raise_on_error=False)
        assert not result.success
        assert len(fake.export_requests(DAY)) == 2                            # no retry of a 400
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "timezone" in failure.step_failure_data.user_failure_data.description.lower()
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
    assert len(stored(res)) == 20
    logs = instance.all_logs(result.run_id)
    assert logs and not any(SECRET in str(entry) for entry in logs)


def test_user_profiles_from_engage_pages(tmp_path, warehouse, instance):
    profiles = [{"$distinct_id": f"u{k}", "$properties": {"plan": "pro" if k % 3 == 0 else "free",
                                                          "$last_seen": "2026-04-01T10:00:00"}} for k in range(2300)]
    with FakeMixpanel(profiles=profiles, service_account=(USER, SECRET), project_id=PROJECT, page_size=1000) as fake:
        res = resources(tmp_path, fake, warehouse)
        result = dg.materialize([user_profiles], resources=res, instance=instance)
        assert result.success
        pages = [r.form.get("page", "0") for r in fake.engage_requests()]
        assert pages == ["0", "1", "2"]
    with res["duckdb"].get_connection() as conn:
        assert conn.execute("select count(*), count(*) filter (where properties->>'plan' = 'pro'), "
                            "min(last_seen) from raw.user_profiles").fetchall()[0][:2] == (2300, 767)
    assert result.asset_materializations_for_node("user_profiles")[0].metadata["rows"].value == 2300


def test_user_profiles_from_files(tmp_path, files_resources, export_dir, instance):
    (export_dir / "profiles.jsonl").write_text(
        '{"$distinct_id": "a", "$properties": {"role": "producer"}}\n{"$distinct_id": "b", "$properties": {}}\n')
    result = dg.materialize([user_profiles], resources=files_resources, instance=instance)
    assert result.success
    assert result.asset_materializations_for_node("user_profiles")[0].metadata["rows"].value == 2
    (export_dir / "profiles.jsonl").unlink()
    result = dg.materialize([user_profiles], resources=files_resources, instance=instance)
    meta = result.asset_materializations_for_node("user_profiles")[0].metadata
    assert meta["rows"].value == 0 and meta["source_found"].value is False


def test_a_downloaded_day_is_loaded_from_staging_without_a_second_request(tmp_path, warehouse, instance):
    with FakeMixpanel(events={DAY: NEW}, service_account=(USER, SECRET), project_id=PROJECT) as fake:
        res = resources(tmp_path, fake, warehouse)
        down = dg.materialize([raw_downloads], partition_key=DAY.isoformat(), resources=res, instance=instance)
        assert down.success
        meta = down.asset_materializations_for_node("raw_downloads")[0].metadata
        assert meta["staged"].value is True and meta["bytes_read"].value > 0
        staged = sorted(p.name for p in (tmp_path / "staging").iterdir())
        assert staged == [f"{DAY}.json", f"{DAY}.jsonl"]                  # the body and its manifest
        assert not any(SECRET in (tmp_path / "staging" / name).read_text() for name in staged)
        assert len(fake.export_requests(DAY)) == 1

        fake.set_events(DAY, OLD)               # Mixpanel changes its answer: the staged body is what loads
        load = dg.materialize([raw_events], partition_key=DAY.isoformat(), resources=res, instance=instance)
        assert load.success and len(fake.export_requests(DAY)) == 1        # no second request
        note = load.asset_materializations_for_node("raw_events")[0].metadata["note"].value
        assert note.startswith("downloaded by raw_downloads: Raw Export API, 1 attempt(s)")
        assert stored(res) == sorted((f"new{k}",) for k in range(300))
        assert list((tmp_path / "staging").iterdir()) == []                # removed once loaded

        # raw_events alone, nothing staged: it fetches the day itself (now the OLD body)
        again = dg.materialize([raw_events], partition_key=DAY.isoformat(), resources=res, instance=instance)
        assert again.success and len(fake.export_requests(DAY)) == 2
        assert stored(res) == sorted((f"old{k}",) for k in range(20))

        # the digest the download computed while writing is the digest of the file: a load of the same body
        # through staging is recognised as unchanged
        assert dg.materialize([raw_downloads, raw_events], partition_key=DAY.isoformat(), resources=res,
                              instance=instance).success
        with res["duckdb"].get_connection() as conn:
            assert conn.execute("select count(*) from raw.load_log where event_date = ?", [DAY]).fetchone()[0] >= 1
        last = instance.get_latest_materialization_event(dg.AssetKey("raw_events")).asset_materialization
        assert last.metadata["load_path"].value == "unchanged"


def test_a_staged_body_that_no_longer_matches_its_manifest_is_not_loaded(tmp_path, warehouse, instance):
    with FakeMixpanel(events={DAY: NEW}, service_account=(USER, SECRET), project_id=PROJECT) as fake:
        res = resources(tmp_path, fake, warehouse)
        assert dg.materialize([raw_downloads], partition_key=DAY.isoformat(), resources=res, instance=instance).success
        body = tmp_path / "staging" / f"{DAY}.jsonl"
        body.write_bytes(body.read_bytes()[:500])           # cut by hand (a full disk, a stray copy)
        fake.set_events(DAY, OLD)
        load = dg.materialize([raw_events], partition_key=DAY.isoformat(), resources=res, instance=instance)
        assert load.success and len(fake.export_requests(DAY)) == 2      # fetched again rather than trusted
        assert stored(res) == sorted((f"old{k}",) for k in range(20))
        assert list((tmp_path / "staging").iterdir()) == []                # the stale manifest too
