"""Real exports have dirt that used to stop or fool the loader: a bare carriage return inside a line made
the two readers disagree (LOAD_LINE_MISMATCH), a line over DuckDB's 2 MB limit failed the step, a
truncated .gz failed every day of a range, and each of these was retried as if it were a network error.
An object as distinct_id, a number as event name or a NUL inside one were accepted; a byte-order mark
in the middle of a file lost a valid line. Each case here is a real file loaded by a real Dagster run
into a real DuckDB file: the bad line is quarantined with its reason and line number, good lines load,
a file that cannot be read whole holds only its own day, and nothing is retried."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from datetime import date, timedelta

import dagster as dg
import duckdb
import pytest

from hitcraft_assets.ingestion import checks, quality
from hitcraft_assets.ingestion.assets import raw_events
from hitcraft_assets.ingestion.loader import load_day
from hitcraft_assets.ingestion.mixpanel import MixpanelResource
from hitcraft_assets.ingestion.sources import ExportSourceResource
from hitcraft_assets.warehouse import WarehouseResource, transaction
from hitcraft_assets_tests.conftest import event_line, ms, write_day

DAY = date(2026, 3, 2)


def good(k: int, day: date = DAY, **props) -> str:
    return event_line("Login", f"u{k}", ms(day, 5, k // 60 % 60, k % 60), f"{day}-{k}", **props)


def materialize(resources, instance, first: date = DAY, last: date = DAY):
    return dg.materialize([raw_events], resources=resources, instance=instance, raise_on_error=False,
                          tags={"dagster/asset_partition_range_start": first.isoformat(),
                                "dagster/asset_partition_range_end": last.isoformat()})


def rejected(warehouse, day=DAY):
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return conn.execute("select line_no, reason, raw_line from raw.rejected_events where event_date = ? "
                            "order by line_no", [day]).fetchall()


def loaded(warehouse, day=DAY):
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return conn.execute("select event, distinct_id, properties from raw.events where event_date = ? "
                            "order by distinct_id", [day]).fetchall()


def log_row(warehouse, day=DAY) -> dict:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        cur = conn.execute("select * from raw.load_log where event_date = ?", [day])
        names = [d[0] for d in cur.description]
        return dict(zip(names, cur.fetchall()[0]))


def retries(result) -> int:
    return sum(1 for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY")


def write_raw(export_dir, day, body: bytes, gz: bool = False):
    path = export_dir / f"{day.isoformat()}.jsonl{'.gz' if gz else ''}"
    path.write_bytes(gzip.compress(body, mtime=0) if gz else body)
    return path


def test_bare_carriage_return_long_line_bom_and_bad_bytes_are_quarantined_or_kept(files_resources, instance,
                                                                                  export_dir, warehouse):
    in_string = good(1).replace('"u1"', '"u\r1"')                      # a raw CR inside a string: not JSON
    between_tokens = good(2).replace(',"properties"', ',\r"properties"')  # CR as JSON whitespace: valid
    huge = json.dumps({"event": "Login", "properties": {"time": ms(DAY, 6), "distinct_id": "big",
                                                        "blob": "x" * (3 * 1024 * 1024)}})
    lines = [good(0), in_string, between_tokens, "\ufeff" + good(3), huge, good(4)]
    body = ("\n".join(lines) + "\n").encode() + b'{"event":"Login","properties":{"distinct_id":"\xff"}}\n'
    body += (good(5) + "\r\n").encode()                                # a CRLF line end is fine
    write_raw(export_dir, DAY, body)
    result = materialize(files_resources, instance)
    assert result.success and retries(result) == 0
    assert [(n, r) for n, r, _ in rejected(warehouse)] == [(2, "invalid_json"), (5, "line_too_long"),
                                                          (7, "invalid_utf8")]
    got = rejected(warehouse)
    assert got[0][2] == in_string and len(got[1][2]) > 3 * 1024 * 1024 and "\\xff" in got[2][2]
    assert [r[1] for r in loaded(warehouse)] == ["u0", "u2", "u3", "u4", "u5"]
    row = log_row(warehouse)
    assert (row["lines"], row["rows_loaded"], row["rejected"], row["gate"]) == (8, 5, 3, "warn")


def test_a_byte_order_mark_in_the_middle_of_a_file_loses_nothing(files_resources, instance, export_dir, warehouse):
    write_day(export_dir, DAY, [good(0), "\ufeff" + good(1), good(2), "{cut"])
    result = materialize(files_resources, instance)
    assert result.success
    assert [r[1] for r in loaded(warehouse)] == ["u0", "u1", "u2"]
    assert [(n, r) for n, r, _ in rejected(warehouse)] == [(4, "invalid_json")]


@pytest.mark.parametrize("record, reason", [
    ({"event": "Login", "properties": {"time": 1, "distinct_id": {"a": 1}}}, "invalid_distinct_id"),
    ({"event": "Login", "properties": {"time": 1, "distinct_id": ["u"]}}, "invalid_distinct_id"),
    ({"event": "Login", "properties": {"time": 1, "distinct_id": True}}, "invalid_distinct_id"),
    ({"event": 42, "properties": {"time": 1, "distinct_id": "u"}}, "invalid_event"),
    ({"event": "Log\u0000in", "properties": {"time": 1, "distinct_id": "u"}}, "invalid_event"),
    ({"event": "Log\nin", "properties": {"time": 1, "distinct_id": "u"}}, "invalid_event"),
    ({"event": "", "properties": {"time": 1, "distinct_id": "u"}}, "missing_event"),
    ({"event": "Login", "properties": {"time": 1, "distinct_id": "  "}}, "missing_distinct_id"),
])
def test_wrong_types_are_rejected_with_their_reason(files_resources, instance, export_dir, warehouse, record, reason):
    record["properties"]["time"] = ms(DAY, 8)
    # the same record twice: once among good lines (the quarantine path) ...
    write_day(export_dir, DAY, [good(0), json.dumps(record), good(1)])
    assert materialize(files_resources, instance).success
    assert [(n, r) for n, r, _ in rejected(warehouse)] == [(2, reason)]
    # ... and once on the exact path (a long line elsewhere in the file sends the day there)
    huge = json.dumps({"event": "E", "properties": {"time": 1, "distinct_id": "x", "b": "y" * (2 * 1024 * 1024)}})
    write_day(export_dir, DAY, [good(0), json.dumps(record), good(1), huge])
    assert materialize(files_resources, instance).success
    assert [(n, r) for n, r, _ in rejected(warehouse)] == [(2, reason), (4, "line_too_long")]
    assert [r[1] for r in loaded(warehouse)] == ["u0", "u1"]


def test_a_numeric_distinct_id_is_an_id(files_resources, instance, export_dir, warehouse):
    write_day(export_dir, DAY, [json.dumps({"event": "Login", "properties": {"time": ms(DAY, 9), "distinct_id": 1234}})])
    assert materialize(files_resources, instance).success
    assert [r[1] for r in loaded(warehouse)] == ["1234"] and rejected(warehouse) == []


def test_a_truncated_gzip_holds_only_its_day_and_is_not_retried(files_resources, instance, export_dir, warehouse):
    days = [DAY + timedelta(days=i) for i in range(3)]
    for day in days:
        write_day(export_dir, day, [good(k, day) for k in range(200)], gz=True)
    bad = export_dir / f"{days[1]}.jsonl.gz"
    whole = bad.read_bytes()
    bad.write_bytes(whole[: len(whole) // 2])          # the download was cut
    result = materialize(files_resources, instance, days[0], days[-1])
    assert result.success and retries(result) == 0
    assert [log_row(warehouse, d)["gate"] for d in days] == ["pass", "held", "pass"]
    row = log_row(warehouse, days[1])
    assert "gzip stream ends early" in row["fault"] and "could not be read whole" in row["gate_reason"]
    assert 0 < row["rows_loaded"] < 200                # what could be read is kept
    assert len(loaded(warehouse, days[0])) == len(loaded(warehouse, days[2])) == 200
    share = {e.check_name: e for e in result.get_asset_check_evaluations()}[checks.REJECTED_SHARE]
    assert not share.passed and share.severity == dg.AssetCheckSeverity.ERROR
    assert list(share.metadata["held_days"].value) == [days[1].isoformat()]
    mats = {m.partition: m.metadata for m in result.asset_materializations_for_node("raw_events")}
    assert mats[days[1].isoformat()]["gate"].value == "held" and mats[days[0].isoformat()]["gate"].value == "pass"
    assert "rows_total" not in mats[days[0].isoformat()]          # a partition shows its own day only


def test_not_a_gzip_file_is_held_with_its_cause(files_resources, instance, export_dir, warehouse):
    (export_dir / f"{DAY}.jsonl.gz").write_bytes(b"this is not gzip")
    result = materialize(files_resources, instance)
    assert result.success and retries(result) == 0
    row = log_row(warehouse)
    assert row["gate"] == "held" and "not a gzip stream" in row["fault"]


def test_an_empty_file_is_flagged(files_resources, instance, export_dir, warehouse):
    days = [DAY + timedelta(days=i) for i in range(5)]
    for day in days[:4]:
        write_day(export_dir, day, [good(k, day) for k in range(20)])
    write_raw(export_dir, days[4], b"")
    result = materialize(files_resources, instance, days[0], days[-1])
    assert result.success
    volume = {e.check_name: e for e in result.get_asset_check_evaluations()}[checks.VOLUME_VS_TRAILING_MEDIAN]
    assert not volume.passed
    assert [(d["day"], d.get("note")) for d in volume.metadata["out_of_band"].value] == [
        (days[4].isoformat(), "the export file is present but empty")]
    assert log_row(warehouse, days[4])["gate"] == "warn"


def test_placeholder_distinct_ids_are_a_check_that_can_fail(files_resources, instance, export_dir, warehouse):
    lines = [good(k) for k in range(100)] + [
        event_line("Login", v, ms(DAY, 7, i), f"p{i}") for i, v in enumerate(["undefined", "null", "0", "NaN",
                                                                               "[object Object]", "-1"])]
    write_day(export_dir, DAY, lines)
    result = materialize(files_resources, instance)
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    check = evals[checks.PLACEHOLDER_DISTINCT_IDS]
    assert not check.passed and check.metadata["placeholder_rows"].value == 6
    write_day(export_dir, DAY, [good(k) for k in range(100)])
    again = {e.check_name: e for e in materialize(files_resources, instance).get_asset_check_evaluations()}
    assert again[checks.PLACEHOLDER_DISTINCT_IDS].passed


@pytest.mark.parametrize("bad, total, gate", [(2, 10, "warn"), (3000, 5000, "held"), (9, 17, "warn"),
                                             (10, 20, "held"), (30, 10_000, "warn"), (0, 50, "pass")])
def test_the_gate_follows_the_evidence(bad, total, gate):
    assert quality.judge_day(lines=total, rejected=bad, source_found=True).gate == gate


def test_the_lower_bound_is_clopper_pearson():
    # 2 of 10: the exact one-sided 95% lower bound is 0.0368 (beta quantile), below 5%
    assert abs(quality.share_lower_bound(2, 10) - 0.036771) < 1e-5
    assert quality.share_lower_bound(0, 10) == 0.0


def test_the_gate_computes_the_bound_only_for_a_share_that_could_hold_the_day():
    # the lower bound is never above the share, so a day whose share is at most 5% is judged without it (and
    # without importing scipy, about 1 s); the verdicts equal those that compute it for every day
    for n in (10, 37, 200, 5_000, 1_000_000):
        for k in sorted({0, 1, 2, 9, 10, 11, n // 40, n // 20, n // 20 + 1, n // 10, n}):
            if 0 <= k <= n:
                assert quality.share_lower_bound(k, n) <= k / n
                lower = quality.share_lower_bound(k, n)
                expected = "held" if k >= quality.MIN_REJECTED_TO_HOLD and lower > quality.HOLD_SHARE else None
                got = quality.judge_day(lines=n, rejected=k, source_found=True).gate
                assert (got == "held") == (expected == "held"), (k, n)
    code = ("import sys; from hitcraft_assets.ingestion import quality; "
            "v = quality.judge_day(lines=1_000_000, rejected=4_000, source_found=True); "
            "print(v.gate, 'scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["warn", "False"]


def test_an_unusable_warehouse_folder_fails_at_once_without_retries(tmp_path, export_dir, instance):
    write_day(export_dir, DAY, [good(0)])
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    resources = {"duckdb": WarehouseResource(database=str(blocker / "w.duckdb")),
                 "export_source": ExportSourceResource(source="files", export_dir=str(export_dir),
                                                       staging_dir=str(tmp_path / "s"), mixpanel=MixpanelResource())}
    result = materialize(resources, instance)
    assert not result.success and retries(result) == 0
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "a-file" in failure.step_failure_data.error.message


def test_the_error_that_ended_a_transaction_is_the_one_raised(tmp_path):
    conn = duckdb.connect(str(tmp_path / "t.duckdb"))
    conn.execute("create table t (x int)")
    with pytest.raises(duckdb.CatalogException, match="no_such_table"):
        with transaction(conn):
            conn.execute("insert into t values (1)")
            conn.execute("select * from no_such_table")     # aborts the transaction
    assert conn.execute("select count(*) from t").fetchall() == [(0,)]


def test_blank_lines_and_an_empty_day_with_the_loader_directly(tmp_path):
    # load_day itself (no Dagster): a CR-only body is blank, an empty day deletes the old rows
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    path = write_raw(tmp_path, DAY, (good(0) + "\n\r\n   \n").encode())
    stats = load_day(conn, DAY, path, source="t")
    assert (stats.lines, stats.rows_loaded, stats.rejected) == (2, 1, 1)
    assert conn.execute("select reason from raw.rejected_events").fetchall() == [("blank_line",)]
    stats = load_day(conn, DAY, None, source="t")
    assert stats.rows_loaded == 0 and conn.execute("select count(*) from raw.events").fetchall() == [(0,)]


def test_a_warehouse_that_is_not_duckdb_fails_profiles_and_events_at_once(tmp_path, export_dir, instance):
    from hitcraft_assets.ingestion.assets import user_profiles

    write_day(export_dir, DAY, [good(0)])
    garbage = tmp_path / "w.duckdb"
    garbage.write_text("not a database")
    resources = {"duckdb": WarehouseResource(database=str(garbage)),
                 "export_source": ExportSourceResource(source="files", export_dir=str(export_dir),
                                                       staging_dir=str(tmp_path / "s"), mixpanel=MixpanelResource())}
    result = dg.materialize([raw_events, user_profiles], resources=resources, instance=instance,
                            partition_key=DAY.isoformat(), raise_on_error=False)
    assert not result.success and retries(result) == 0
    failures = [e.step_failure_data.error.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert len(failures) == 2 and all("not a valid DuckDB database file" in m for m in failures)
