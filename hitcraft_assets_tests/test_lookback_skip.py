"""Issue 15: the daily lookback re-materializes a day of `sessions` or `daily_metrics` only when what it reads
changed (hitcraft_assets/analysis/inputs.py). A demo warehouse is run morning after morning as the schedule
runs it, next to a twin whose every day is recomputed (its compute log cleared before each morning); the
rows must be identical, the untouched days must say `unchanged`, and a day whose export file gained an event
overnight must run again, with every later day of daily_metrics (WAU, MAU and who is new read earlier
days)."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta, timezone

import dagster as dg
import duckdb

from hitcraft_assets.analysis.assets import daily_metrics, identity_map, retention, segments, sessions
from hitcraft_assets.analysis.retention import compute_retention
from hitcraft_assets.config import load_config
from hitcraft_assets.demo.simulator import generate_demo
from hitcraft_assets.ingestion.assets import raw_events
from hitcraft_assets.ingestion.mixpanel import MixpanelResource
from hitcraft_assets.ingestion.sources import ExportSourceResource
from hitcraft_assets.schedules import analysis_range
from hitcraft_assets.warehouse import WarehouseResource
from hitcraft_assets_tests.test_as_of import assert_same_rows

END = date(2026, 2, 19)
DAYS = 14
START = END - timedelta(days=DAYS - 1)
ASSETS = [raw_events, identity_map, sessions, daily_metrics]
TABLES = {"core.sessions": "session_date, session_id", "core.user_days": "activity_date, user_key, device_id",
          "core.user_first_days": "user_key, device_id", "analytics.daily_metrics": "metric_date, metric, dimension, segment"}


def _resources(tmp_path, db):
    return {"duckdb": WarehouseResource(database=str(db)),
            "export_source": ExportSourceResource(source="files", export_dir=str(tmp_path / "export"),
                                                  staging_dir=str(tmp_path / f"staging-{db.stem}"),
                                                  mixpanel=MixpanelResource())}


def _run(instance, resources, first: date, last: date, assets=ASSETS) -> dg.ExecuteInProcessResult:
    result = dg.materialize(assets, instance=instance, resources=resources, selection=assets,
                            tags={"dagster/asset_partition_range_start": first.isoformat(),
                                  "dagster/asset_partition_range_end": last.isoformat()})
    assert result.success
    return result


def _unchanged(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, bool]:
    """partition -> its metadata's `unchanged`, for the asset's materializations of the run."""
    return {m.partition: m.metadata["unchanged"].value for m in result.asset_materializations_for_node(asset)}


def _rows(db) -> dict[str, list[tuple]]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return {t: conn.execute(f"select * from {t} order by {o}").fetchall() for t, o in TABLES.items()}


def _add_late_event(export_dir, day: date) -> None:
    """One more event in the day's export file, as a late upload would bring."""
    path = export_dir / f"{day.isoformat()}.jsonl"
    first = json.loads(path.read_text().splitlines()[0])
    props = dict(first["properties"], time=first["properties"]["time"] + 60, **{"$insert_id": "late-arrival-1"})
    with path.open("a") as f:
        f.write(json.dumps({"event": "Late Upload", "properties": props}) + "\n")


def test_unchanged_days_are_left_alone_and_the_rows_equal_a_recompute_of_every_day(tmp_path):
    generate_demo(tmp_path / "export", days=DAYS, end_date=END, users=300, seed=5)
    skip, full = tmp_path / "skip.duckdb", tmp_path / "full.duckdb"
    mornings = [END - timedelta(days=1), END]
    with dg.instance_for_test() as instance:
        for db in (skip, full):
            _run(instance, _resources(tmp_path, db), START, mornings[0] - timedelta(days=1))
        results, windows = [], []
        for k, day in enumerate(mornings):
            if k == 1:
                _add_late_event(tmp_path / "export", day - timedelta(days=5))
            window = analysis_range(day, day, "UTC", 7, START)
            windows.append(window)
            with duckdb.connect(str(full)) as conn:
                conn.execute("delete from analytics.compute_log")   # the twin recomputes every day
            results.append(_run(instance, _resources(tmp_path, skip), *window))
            _run(instance, _resources(tmp_path, full), *window)
    assert_same_rows(_rows(skip), _rows(full))
    first, second = results
    # first morning: only the new day and the day before it (its events may lie in the new file, within
    # the load's time tolerance) are computed
    new, before = mornings[0].isoformat(), (mornings[0] - timedelta(days=1)).isoformat()
    for asset in ("sessions", "daily_metrics"):
        flags = _unchanged(first, asset)
        assert len(flags) == (windows[0][1] - windows[0][0]).days + 1, (asset, flags)
        assert {p for p, same in flags.items() if not same} == {new, before}, (asset, flags)
    # second morning: the day that gained a late event runs again, with its neighbours for sessions and
    # every later day for daily_metrics
    late = mornings[1] - timedelta(days=5)
    changed = {d.isoformat() for d in (late - timedelta(days=1), late, late + timedelta(days=1))} | \
        {mornings[1].isoformat(), (mornings[1] - timedelta(days=1)).isoformat()}
    assert {p for p, same in _unchanged(second, "sessions").items() if not same} == changed
    later = {(late - timedelta(days=1) + timedelta(days=i)).isoformat() for i in range(7)}
    assert {p for p, same in _unchanged(second, "daily_metrics").items() if not same} == later
    with duckdb.connect(str(skip), read_only=True) as conn:   # the late event is counted on its day
        assert conn.execute("select value from analytics.daily_metrics where metric_date = ? and "
                            "metric = 'event_count:Late Upload' and dimension = 'all'", [late]).fetchall() == [(1.0,)]


def test_a_day_whose_rows_were_deleted_is_computed_again(tmp_path):
    generate_demo(tmp_path / "export", days=4, end_date=END, users=300, seed=2)
    db = tmp_path / "w.duckdb"
    with dg.instance_for_test() as instance:
        _run(instance, _resources(tmp_path, db), END - timedelta(days=3), END)
        with duckdb.connect(str(db)) as conn:
            day, before = conn.execute("select session_date, count(*) from core.sessions group by 1 "
                                       "order by 2 desc, 1 limit 1").fetchone()
            conn.execute("delete from core.sessions where session_date = ?", [day])
        again = _run(instance, _resources(tmp_path, db), END - timedelta(days=3), END)
    assert before > 0
    flags = _unchanged(again, "sessions")
    assert [p for p, same in flags.items() if not same] == [day.isoformat()]
    assert all(_unchanged(again, "daily_metrics").values())
    with duckdb.connect(str(db), read_only=True) as conn:
        assert conn.execute("select count(*) from core.sessions where session_date = ?", [day]).fetchone()[0] == before


# --- identity: only the days loaded since the last run are read ------------------------------------------

IDENTITY = ("core.identity_map", "core.identity_device_days", "core.identity_edges", "core.identity_clusters")
# a twin that builds identity from scratch: no day read yet, no mode chosen yet (the map is then built whole)
FORGET_IDENTITY = "delete from core.identity_days; delete from core.identity_device_days; delete from core.identity_state"


def _identity(db) -> dict[str, list[tuple]]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return {t: conn.execute(f"select * from {t} order by all").fetchall() for t in IDENTITY}


def _whole_map(db) -> list[tuple]:
    """The map as its definition gives it, from every stored event (sql/analysis/identity_map.sql, rebuild)."""
    from hitcraft_assets.warehouse import named_statements
    rebuild = named_statements("analysis/identity_map.sql")["rebuild"].rstrip(";")
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(f"select * from ({rebuild}) order by all").fetchall()


def _retention_both_ways(db) -> tuple[list[tuple], list[tuple]]:
    """analytics.retention as the asset left it (from the kept day summaries), and as computed from every
    event."""
    def rows(conn):
        return conn.execute("select * from analytics.retention order by all").fetchall()
    with duckdb.connect(str(db)) as conn:
        kept = rows(conn)
        compute_retention(conn, load_config(), from_events=True)
        return kept, rows(conn)


def _update(result: dg.ExecuteInProcessResult) -> str:
    return next(m.metadata["identity_update"].value for m in result.asset_materializations_for_node("identity_map"))


def _move_a_sign_up_earlier(export_dir, day: date) -> str:
    """A late upload on `day`: a device's sign-up (its first event with a $user_id) under another user, a
    second before the real one, so the device's map row must change. Returns the device."""
    path = export_dir / f"{day.isoformat()}.jsonl"
    signup = next(e for e in map(json.loads, path.read_text().splitlines()) if e["event"] == "Sign Up")
    props = dict(signup["properties"], time=signup["properties"]["time"] - 1,
                 **{"$insert_id": "late-signup-1", "$user_id": "someone-else"})
    with path.open("a") as f:
        f.write(json.dumps({"event": "Sign Up", "properties": props}) + "\n")
    return props["$device_id"]


def test_identity_and_retention_read_only_the_changed_days_and_equal_what_every_event_gives(tmp_path):
    """Issue 15: identity_map and retention read every stored event each morning. Now each day's device rows
    and retention summary are kept and only days loaded since are read; morning after morning, with a late
    sign-up five days back that gives a device another first user, then a day held by the quality gate and
    released, the map equals its definition over every event and the tables of a twin that reads every day
    again, and the retention matrix equals the one computed from every event, row for row."""
    generate_demo(tmp_path / "export", days=DAYS, end_date=END, users=300, seed=5)
    kept, full = tmp_path / "kept.duckdb", tmp_path / "full.duckdb"
    mornings = [END - timedelta(days=2), END - timedelta(days=1), END]
    late = END - timedelta(days=6)
    updates, summarized = [], []
    with dg.instance_for_test() as instance:
        for db in (kept, full):
            _run(instance, _resources(tmp_path, db), START, mornings[0] - timedelta(days=1), assets=ASSETS[:2])
        assert _identity(kept)["core.identity_map"] == _whole_map(kept) != []
        for k, day in enumerate(mornings):
            if k == 1:
                device = _move_a_sign_up_earlier(tmp_path / "export", late)
                before = dict((r[0], r[1]) for r in _identity(kept)["core.identity_map"])[device]
            window = analysis_range(day, day, "UTC", 7, START)
            with duckdb.connect(str(full)) as conn:                   # the twin reads every day again
                conn.execute(FORGET_IDENTITY)
            result = _run(instance, _resources(tmp_path, kept), *window, assets=[*ASSETS[:2], retention])
            updates.append(_update(result))
            summarized.append(next(m.metadata["days_summarized"].value
                                   for m in result.asset_materializations_for_node("retention")))
            _run(instance, _resources(tmp_path, full), *window, assets=ASSETS[:2])
            assert _identity(kept) == _identity(full)
            assert _identity(kept)["core.identity_map"] == _whole_map(kept)
            kept_rows, from_events = _retention_both_ways(kept)
            assert kept_rows == from_events != []
        after = dict((r[0], r[1]) for r in _identity(kept)["core.identity_map"])[device]
        assert (before, after) == (before, "someone-else") and before != after
        # the new day only (and the day before it, its last hours), then the reloaded day as well
        assert updates[0].startswith("incremental (simplified: 1 changed days"), updates
        assert updates[1].startswith("incremental (simplified: 2 changed days"), updates
        with duckdb.connect(str(kept), read_only=True) as conn:
            (passed,) = conn.execute("select count(*) from raw.load_log where coalesce(gate, 'pass') <> 'held' "
                                     "and rows_loaded > 0 and event_date < ?", [mornings[1]]).fetchone()
        # retention's first run reads every day it may (not held); then the new day, and the reloaded one
        assert summarized == [passed, 2, 1], summarized
        # a day held by the quality gate leaves the map, and comes back when released
        for gate in ("held", "pass"):
            for db in (kept, full):
                with duckdb.connect(str(db)) as conn:
                    conn.execute("update raw.load_log set gate = ? where event_date = ?", [gate, late])
                    if db == full:
                        conn.execute(FORGET_IDENTITY)
                rebuild = _update(dg.materialize([identity_map, retention], instance=instance,
                                                 resources={"duckdb": WarehouseResource(database=str(db))}))
                if db == kept:
                    assert rebuild.startswith("incremental (simplified: 1 changed days"), rebuild
            assert _identity(kept) == _identity(full)
            assert _identity(kept)["core.identity_map"] == _whole_map(kept)
            kept_rows, from_events = _retention_both_ways(kept)
            assert kept_rows == from_events
            held = dict((r[0], r[1]) for r in _identity(kept)["core.identity_map"]).get(device)
            assert (held == "someone-else") == (gate == "pass")


def _cohorts_both_ways(db, days: list[date]) -> tuple[bool, list, list]:
    """Whether the kept births are current, and the week-1 and rolling day-1..7 cohorts by segment of each day
    as the segments step computes them (from the kept births when current) and from the events."""
    from hitcraft_assets.analysis.retention import births_current, returned_by_segment, week1_cohort
    cfg = load_config()
    with duckdb.connect(str(db)) as conn:
        current = births_current(conn, cfg, datetime.combine(max(days), time(0), tzinfo=timezone.utc))

        def both(from_events: bool) -> list:
            out = []
            for d in days:
                out.append(week1_cohort(conn, d, cfg, from_events=from_events))
                out.append(returned_by_segment(conn, d, cfg, d - timedelta(days=8), d - timedelta(days=8),
                                               timedelta(days=1), timedelta(days=8), from_events=from_events))
            return out
        return current, both(False), both(True)


def _cohort_source(instance, resources) -> str:
    """segments' metadata on END: where its week-1 cohort's births came from."""
    result = _run(instance, resources, END, END, assets=[segments])
    return result.asset_materializations_for_node("segments")[0].metadata["week1_cohort_from"].value


def _sign_up_earlier(export_dir, day: date, days_earlier: int) -> date:
    """A late upload: the first sign-up of `day` again, `days_earlier` days before, in that day's file (the
    user is born then, not on `day`). Returns the day whose file changed."""
    signup = next(e for e in map(json.loads, (export_dir / f"{day.isoformat()}.jsonl").read_text().splitlines())
                  if e["event"] == "Sign Up")
    earlier = day - timedelta(days=days_earlier)
    props = dict(signup["properties"], time=signup["properties"]["time"] - days_earlier * 86_400_000,
                 **{"$insert_id": "late-signup-2"})
    with (export_dir / f"{earlier.isoformat()}.jsonl").open("a") as f:
        f.write(json.dumps({"event": "Sign Up", "properties": props}) + "\n")
    return earlier


def test_the_segments_cohorts_come_from_the_kept_births_and_equal_what_every_event_gives(tmp_path):
    """Issue 15: the segments' week-1 and rolling-day cohorts looked through every cohort user's earlier events
    for an earlier birth, three times a day. Retention now keeps each user's birth (core.retention_births),
    and the cohorts read it while it holds what is stored; a day reloaded since (here with a sign-up moved
    earlier) makes them read the events again until retention runs. Each way, the cohorts equal those from
    every event, row for row."""
    days = 28
    start = END - timedelta(days=days - 1)
    generate_demo(tmp_path / "export", days=days, end_date=END, users=300, seed=5)
    db = tmp_path / "w.duckdb"
    resources = _resources(tmp_path, db)
    checked = [END - timedelta(days=k) for k in range(4)]
    with dg.instance_for_test() as instance:
        _run(instance, resources, start, END, assets=[raw_events, identity_map, retention])
        current, kept, from_events = _cohorts_both_ways(db, checked)
        assert current and kept == from_events
        assert all(total > 0 for _, total, _ in kept), kept
        assert _cohort_source(instance, resources) == "core.retention_births"
        # a late upload moves a checked cohort's user's birth earlier; raw_events loads it, retention has not run
        changed = _sign_up_earlier(tmp_path / "export", END - timedelta(days=16), 6)
        _run(instance, resources, changed, changed, assets=[raw_events, identity_map])
        current, stale, from_events = _cohorts_both_ways(db, checked)
        assert not current and stale == from_events != kept
        assert _cohort_source(instance, resources).startswith("events")
        _run(instance, resources, END, END, assets=[retention])
        current, kept, from_events = _cohorts_both_ways(db, checked)
        assert current and kept == from_events
