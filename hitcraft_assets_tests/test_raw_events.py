"""raw_events through a real Dagster run into a real DuckDB file: validation and quarantine, Mixpanel's
deduplication, idempotent re-runs, empty days, gzip, the declared checks, and atomicity (a process killed
mid-write leaves the previous partition intact)."""

import json
import signal
import subprocess
import sys
import textwrap
from datetime import date

import dagster as dg
import duckdb
import pytest

from hitcraft_assets.ingestion import checks
from hitcraft_assets.ingestion.assets import raw_events
from hitcraft_assets_tests.conftest import event_line, ms, write_day

DAY = date(2026, 3, 2)


def rows(warehouse, day=DAY):
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return conn.execute(
            "select event, distinct_id, epoch_ms(time), insert_id, device_id, user_id, properties "
            "from raw.events where event_date = ? order by all", [day]).fetchall()


def rejected(warehouse, day=DAY):
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return conn.execute("select line_no, reason, raw_line from raw.rejected_events where event_date = ? "
                            "order by line_no", [day]).fetchall()


def run(resources, instance, day=DAY, **kw):
    return dg.materialize([raw_events], partition_key=day.isoformat(), resources=resources, instance=instance,
                          raise_on_error=False, **kw)


def meta(result, day=DAY):
    mat = [m for m in result.asset_materializations_for_node("raw_events") if m.partition == day.isoformat()]
    return {k: v.value for k, v in mat[0].metadata.items()}


DIRTY_DAY = [
    event_line("Login", "u1", ms(DAY, 9), "a1", **{"$user_id": "u1", "$device_id": "d1", "mp_processing_time_ms": 10}),
    # a duplicate delivery of a1 processed later (wins) and one processed earlier (loses)
    event_line("Login", "u1", ms(DAY, 9), "a1", **{"$user_id": "u1", "$device_id": "d1", "mp_processing_time_ms": 30,
                                                  "plan": "pro"}),
    event_line("Login", "u1", ms(DAY, 9), "a1", **{"$user_id": "u1", "$device_id": "d1", "mp_processing_time_ms": 20}),
    # same $insert_id but another time: not a duplicate by Mixpanel's key
    event_line("Login", "u1", ms(DAY, 10), "a1", mp_processing_time_ms=5),
    # no $insert_id: never deduplicated, both kept
    event_line("Page View", "$device:d9", ms(DAY, 11), None, **{"$device_id": "d9"}),
    event_line("Page View", "$device:d9", ms(DAY, 11), None, **{"$device_id": "d9"}),
    "{not json",                                                                   # line 7
    json.dumps({"properties": {"time": ms(DAY, 12), "distinct_id": "u2"}}),        # line 8: no event
    json.dumps({"event": "Login", "properties": {"time": "noon", "distinct_id": "u2"}}),  # 9
    json.dumps({"event": "Login", "properties": {"time": ms(DAY, 12)}}),           # 10: no distinct_id
    event_line("Login", "u3", ms(date(2026, 3, 5), 12), "late"),                  # 11: another day entirely
    "[1, 2, 3]",                                                                   # 12
    json.dumps({"event": "Login", "properties": "oops"}),                          # 13
    # seconds-precision time (export without time_in_ms) is accepted
    json.dumps({"event": "Logout", "properties": {"time": ms(DAY, 23, 59, 59) // 1000, "distinct_id": "u1",
                                                  "$insert_id": "s1"}}),
    # 30 minutes before midnight of the next day's... inside the tolerance after the day's end
    event_line("Logout", "u4", ms(date(2026, 3, 3), 0, 20), "tol"),
    # a time that is a JSON string or boolean is not numeric, even if it looks like one (lines 16, 17)
    json.dumps({"event": "Login", "properties": {"time": str(ms(DAY, 12)), "distinct_id": "u5"}}),
    json.dumps({"event": "Login", "properties": {"time": True, "distinct_id": "u5"}}),
]


def test_validation_quarantine_and_dedup(files_resources, instance, export_dir, warehouse):
    write_day(export_dir, DAY, DIRTY_DAY)
    result = run(files_resources, instance)
    # 9 of 17 lines rejected: a high share, but fewer than the 10 rejected lines the gate needs to hold a
    # day; it warns, and the run goes on
    assert result.success
    got = rows(warehouse)
    logins_9 = [r for r in got if r[0] == "Login" and r[2] == ms(DAY, 9)]
    assert len(logins_9) == 1 and json.loads(logins_9[0][6])["mp_processing_time_ms"] == 30
    assert json.loads(logins_9[0][6])["plan"] == "pro"
    assert logins_9[0][3:6] == ("a1", "d1", "u1")
    assert len([r for r in got if r[0] == "Login" and r[2] == ms(DAY, 10)]) == 1
    assert len([r for r in got if r[0] == "Page View"]) == 2
    assert [r[2] for r in got if r[0] == "Logout"] == [ms(DAY, 23, 59, 59), ms(date(2026, 3, 3), 0, 20)]
    assert len(got) == 6
    assert [(n, reason) for n, reason, _ in rejected(warehouse)] == [
        (7, "invalid_json"), (8, "missing_event"), (9, "missing_or_non_numeric_time"),
        (10, "missing_distinct_id"), (11, "time_outside_day"), (12, "not_a_json_object"),
        (13, "missing_properties"), (16, "missing_or_non_numeric_time"), (17, "missing_or_non_numeric_time")]
    assert rejected(warehouse)[0][2] == "{not json"
    m = meta(result)
    assert (m["rows"], m["lines"], m["rejected"], m["duplicates_removed"], m["distinct_users"]) == (6, 17, 9, 2, 3)
    assert m["bytes_read"] == (export_dir / f"{DAY}.jsonl").stat().st_size
    assert (m["gate"], m["load_path"]) == ("warn", "quarantine")
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evals[checks.PLACEHOLDER_DISTINCT_IDS].passed and evals[checks.NO_DUPLICATES].passed
    assert not evals[checks.REJECTED_SHARE].passed
    assert evals[checks.REJECTED_SHARE].severity == dg.AssetCheckSeverity.WARN


def test_a_few_bad_lines_warn_without_failing(files_resources, instance, export_dir, warehouse):
    good = [event_line("Login", f"u{k}", ms(DAY, 5, 0, k % 60), f"g{k}") for k in range(400)]
    write_day(export_dir, DAY, good[:200] + ["{cut"] + good[200:])
    result = run(files_resources, instance)
    assert result.success
    share = {e.check_name: e for e in result.get_asset_check_evaluations()}[checks.REJECTED_SHARE]
    assert not share.passed and share.severity == dg.AssetCheckSeverity.WARN
    assert [(n, r) for n, r, _ in rejected(warehouse)] == [(201, "invalid_json")]
    assert len(rows(warehouse)) == 400


def test_rerun_is_idempotent_and_gzip_reads_the_same(files_resources, instance, export_dir, warehouse):
    write_day(export_dir, DAY, DIRTY_DAY)
    run(files_resources, instance)
    first, first_rejected = rows(warehouse), rejected(warehouse)
    assert len(first) == 6 and len(first_rejected) == 9
    run(files_resources, instance)
    assert rows(warehouse) == first and rejected(warehouse) == first_rejected
    (export_dir / f"{DAY}.jsonl").unlink()
    write_day(export_dir, DAY, DIRTY_DAY, gz=True)
    result = run(files_resources, instance)
    assert rows(warehouse) == first and rejected(warehouse) == first_rejected
    assert meta(result)["source"].endswith(".jsonl.gz")


def test_missing_file_is_an_empty_day_and_replaces_old_rows(files_resources, instance, export_dir, warehouse):
    path = write_day(export_dir, DAY, [event_line("Login", "u1", ms(DAY, 1), "x")])
    assert run(files_resources, instance).success and len(rows(warehouse)) == 1
    path.unlink()
    result = run(files_resources, instance)
    assert result.success and rows(warehouse) == []
    m = meta(result)
    assert m["source_found"] is False and m["rows"] == 0 and "empty day" in m["note"]


def test_partition_range_in_one_run_and_volume_check(files_resources, instance, export_dir, warehouse):
    days = [date(2026, 3, d) for d in range(1, 11)]
    for i, day in enumerate(days):
        n = 40 if i < 9 else 5          # the last day collapses to an eighth of its usual volume
        write_day(export_dir, day, [event_line("Login", f"u{k}", ms(day, 1, 0, k), f"{day}-{k}") for k in range(n)])
    result = dg.materialize([raw_events], resources=files_resources, instance=instance,
                            tags={"dagster/asset_partition_range_start": "2026-03-01",
                                  "dagster/asset_partition_range_end": "2026-03-10"})
    assert result.success
    assert len([e for e in result.all_events if e.event_type_value == "STEP_START"]) == 1  # one step, ten days
    assert instance.get_materialized_partitions(dg.AssetKey("raw_events")) == {d.isoformat() for d in days}
    assert len(rows(warehouse, date(2026, 3, 10))) == 5
    volume = {e.check_name: e for e in result.get_asset_check_evaluations()}[checks.VOLUME_VS_TRAILING_MEDIAN]
    assert not volume.passed and volume.severity == dg.AssetCheckSeverity.WARN
    assert [d["day"] for d in volume.metadata["out_of_band"].value] == ["2026-03-10"]


KILLER = textwrap.dedent("""
    import os, signal, sys
    from datetime import date
    from pathlib import Path
    import duckdb
    from hitcraft_assets.ingestion import loader
    real_run = loader._run
    def run_then_die(conn, name, params):
        result = real_run(conn, name, params)
        if name == sys.argv[3]:
            print("killing", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    loader._run = run_then_die
    conn = duckdb.connect(sys.argv[1])
    loader.load_day(conn, date(2026, 3, 2), Path(sys.argv[2]), source="new")
""")


@pytest.mark.parametrize("kill_after", ["delete_partition", "insert_events", "remove_duplicates"])
def test_process_killed_mid_write_leaves_previous_partition(files_resources, instance, export_dir, warehouse,
                                                            tmp_path, kill_after):
    write_day(export_dir, DAY, [event_line("Login", f"old{k}", ms(DAY, 2, k), f"o{k}") for k in range(30)])
    assert run(files_resources, instance).success
    before = rows(warehouse)
    new_file = write_day(tmp_path / "new", DAY, [event_line("Login", f"new{k}", ms(DAY, 3, k), f"n{k}")
                                                 for k in range(50)] + ["{broken"])
    proc = subprocess.run([sys.executable, "-c", KILLER, str(warehouse), str(new_file), kill_after],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "killing" in proc.stdout
    assert rows(warehouse) == before and rejected(warehouse) == []


def _log(warehouse, day=DAY):
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return conn.execute("select fingerprint, loaded_at, rows_loaded, rejected, gate from raw.load_log "
                            "where event_date = ?", [day]).fetchone()


def _ingested(warehouse, day=DAY):
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return conn.execute("select min(ingested_at), max(ingested_at) from raw.events where event_date = ?",
                            [day]).fetchone()


def test_a_day_loaded_again_from_the_same_input_is_left_as_it_is(files_resources, instance, export_dir, warehouse):
    """The daily schedule re-pulls 5 days for late events; a day whose body is byte for byte the one already
    loaded (same source and loading parameters) is not replaced: replacing it would write the same rows and
    cost DuckDB a checkpoint in proportion to the whole table. The metadata says so; a changed body, or a
    log from before fingerprints, loads again."""
    write_day(export_dir, DAY, DIRTY_DAY)
    first = run(files_resources, instance)
    assert first.success and meta(first)["load_path"] in ("quarantine", "exact")
    before, log, ingested = rows(warehouse), _log(warehouse), _ingested(warehouse)
    assert len(log[0]) == 64                                     # a sha256 recorded with the load
    again = run(files_resources, instance)
    assert again.success and meta(again)["load_path"] == "unchanged" and "left as it is" in meta(again)["note"]
    assert {k: meta(again)[k] for k in ("rows", "rejected", "duplicates_removed", "gate")} == \
        {k: meta(first)[k] for k in ("rows", "rejected", "duplicates_removed", "gate")}
    assert rows(warehouse) == before and rejected(warehouse) and _log(warehouse) == log
    assert _ingested(warehouse) == ingested                      # the rows were not rewritten
    # a late event arrives: the body changes, the day is loaded again
    write_day(export_dir, DAY, DIRTY_DAY + [event_line("Login", "u9", ms(DAY, 20), "late-1")])
    late = run(files_resources, instance)
    assert meta(late)["load_path"] != "unchanged" and meta(late)["rows"] == meta(first)["rows"] + 1
    assert _log(warehouse)[0] != log[0]
    # a warehouse whose log has no fingerprint (made before them) loads the day again
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("update raw.load_log set fingerprint = null")
    assert meta(run(files_resources, instance))["load_path"] != "unchanged"
    assert meta(run(files_resources, instance))["load_path"] == "unchanged"
    # rows deleted by hand since: the day loads again and gets them back
    full = rows(warehouse)
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("delete from raw.events where event_date = ? and event = 'Logout'", [DAY])
    assert meta(run(files_resources, instance))["load_path"] != "unchanged" and rows(warehouse) == full


def test_the_fingerprint_covers_the_body_the_day_the_source_and_the_parameters(tmp_path):
    from hitcraft_assets.ingestion.loader import fingerprint

    body = write_day(tmp_path, DAY, DIRTY_DAY)
    base = fingerprint(DAY, body, "files", 3600, None)
    assert fingerprint(DAY, body, "files", 3600, None) == base
    others = {fingerprint(date(2026, 3, 3), body, "files", 3600, None), fingerprint(DAY, body, "mixpanel", 3600, None),
              fingerprint(DAY, body, "files", 60, None), fingerprint(DAY, body, "files", 3600, "US/Pacific"),
              fingerprint(DAY, None, "files", 3600, None)}
    body.write_bytes(body.read_bytes() + b"\n")                  # one byte more
    others.add(fingerprint(DAY, body, "files", 3600, None))
    assert base not in others and len(others) == 6
