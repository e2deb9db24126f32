"""A small product's first days, a quiet weekend, a test project: small days are normal, and a couple of
malformed lines among ten once failed a six-month backfill with nothing analysed. The quality gate
judges each day by evidence and holds back only a day that is clearly broken; every other day of the
range is loaded and analysed as usual. These tests run every asset through a real Dagster instance
(in process, and through `hitcraft run`) on hand-written export files, and release a held day by
replacing its file and running it again."""

from __future__ import annotations

import subprocess
from datetime import date, timedelta

import dagster as dg
import duckdb

from hitcraft_assets.ingestion import checks
from hitcraft_assets_tests.conftest import event_line, ms, write_day
from hitcraft_assets_tests.cli_env import HITCRAFT, env_for

START = date(2026, 4, 1)
EVENTS = ["Sign Up", "Login", "Production Started", "Sketch Uploaded", "Production Completed", "Page View"]


def small_day(day: date, users: int = 4, per_user: int = 3) -> list[str]:
    """A few users doing a few things: a product in its first weeks."""
    out = []
    for u in range(users):
        for k in range(per_user):
            out.append(event_line(EVENTS[(u + k) % len(EVENTS)], f"user{u}", ms(day, 9 + u, 5 * k),
                                  f"{day}-{u}-{k}", **{"$os": "iOS" if u % 2 else "Android", "utm_source": "ads"}))
    return out


def all_assets():
    from hitcraft_assets.definitions import all_assets as assets

    return assets


def resources_for(files_resources, outbox):
    from hitcraft_assets.delivery.email.smtp import SMTPResource
    from hitcraft_assets.insights.llm import LLMResource

    return {**files_resources, "llm": LLMResource(), "smtp": SMTPResource(host=None, outbox_dir=str(outbox))}


def local_days_with(warehouse, table: str, column: str) -> set[date]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return {r[0] for r in conn.execute(f"select distinct {column} from {table}").fetchall()}


def test_two_bad_lines_among_ten_warn_and_every_day_is_analysed(files_resources, instance, export_dir, warehouse,
                                                                tmp_path, monkeypatch):
    monkeypatch.setenv("HITCRAFT_APP_DB", str(tmp_path / "app.sqlite"))
    days = [START + timedelta(days=i) for i in range(30)]
    for i, day in enumerate(days):
        lines = small_day(day, users=2 if i < 5 else 4)
        if i == 2:
            lines = lines[:4] + ["{cut", '{"event": "Login"}'] + lines[4:8]   # 2 malformed of 10
        write_day(export_dir, day, lines)
    result = dg.materialize(all_assets(), resources=resources_for(files_resources, tmp_path / "outbox"), instance=instance,
                            raise_on_error=False,
                            tags={"dagster/asset_partition_range_start": days[0].isoformat(),
                                  "dagster/asset_partition_range_end": days[-1].isoformat()})
    assert result.success
    share = {e.check_name: e for e in result.get_asset_check_evaluations()}[checks.REJECTED_SHARE]
    assert not share.passed and share.severity == dg.AssetCheckSeverity.WARN
    assert share.metadata["days_warned"].value == [days[2].isoformat()]
    assert share.metadata["held_days"].value == {}
    assert local_days_with(warehouse, "analytics.daily_metrics", "metric_date") == set(days)
    assert local_days_with(warehouse, "core.sessions", "session_date") == set(days)
    assert local_days_with(warehouse, "insights.insights", "as_of_date") <= set(days)
    # the run analysed the days it loaded: the post-ingest sensor does not ask for a second analysis
    from hitcraft_assets.definitions import defs

    sensor = defs.get_sensor_def("analysis_after_ingest_sensor")
    skipped = sensor(dg.build_sensor_context(instance=instance, definitions=defs))
    assert isinstance(skipped, dg.SkipReason) and "analysed by the runs that loaded them" in skipped.skip_message


def test_a_broken_day_is_held_the_others_are_analysed_and_a_fixed_file_releases_it(tmp_path):
    export = tmp_path / "export"
    days = [START + timedelta(days=i) for i in range(10)]
    broken = days[4]
    for day in days:
        write_day(export, day, small_day(day))
    garbage = [f'{{"event": "Login", "properties": {{"time": "x{k}"' for k in range(3000)]
    good = [event_line("Login", f"v{k % 40}", ms(broken, 10, k // 60 % 60, k % 60), f"g{k}") for k in range(2000)]
    write_day(export, broken, good[:1000] + garbage + good[1000:])      # 60% garbage among 5,000 lines
    env = env_for(tmp_path, HITCRAFT_EXPORT_DIR=str(export), HITCRAFT_START_DATE="2026-03-01")
    run = subprocess.run([*HITCRAFT, "run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 3, run.stderr[-3000:]
    assert "succeeded" in run.stdout and "1 held" in run.stdout
    assert f"    {broken}: 3,000 of 5,000 lines rejected (60.0%; at least" in run.stdout
    assert f"held back from analysis by the quality gate: {broken}" in run.stderr
    warehouse = env["HITCRAFT_DUCKDB_PATH"]
    analysed = local_days_with(warehouse, "analytics.daily_metrics", "metric_date")
    assert analysed == set(days) - {broken}
    assert broken not in local_days_with(warehouse, "core.sessions", "session_date")
    with duckdb.connect(warehouse, read_only=True) as conn:
        # nothing is lost: the valid lines are stored, the garbage quarantined with its reason
        assert conn.execute("select count(*) from raw.events where event_date = ?", [broken]).fetchall() == [(2000,)]
        assert conn.execute("select count(*), min(reason), max(reason) from raw.rejected_events "
                            "where event_date = ?", [broken]).fetchall() == [(3000, "invalid_json", "invalid_json")]
        # and no analysis reads them: the identified events leave the held day out
        assert conn.execute("select count(*) from core.identified_events where event_date = ?",
                            [broken]).fetchall() == [(0,)]
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    mats = instance.fetch_materializations(dg.AssetKey("daily_metrics"), limit=100).records
    meta = {m.partition_key: m.asset_materialization.metadata for m in mats}
    assert meta[broken.isoformat()]["held"].value is True
    assert "3,000 of 5,000 lines rejected" in meta[broken.isoformat()]["held_because"].value
    assert "held" not in meta[days[3].isoformat()]
    instance.dispose()

    # release: replace the file with a good export and run the day again
    write_day(export, broken, small_day(broken, users=5))
    again = subprocess.run([*HITCRAFT, "run", "--from", broken.isoformat(), "--to", broken.isoformat()],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 held" in again.stdout
    assert broken in local_days_with(warehouse, "analytics.daily_metrics", "metric_date")
    with duckdb.connect(warehouse, read_only=True) as conn:
        assert conn.execute("select value from analytics.daily_metrics where metric_date = ? and metric = 'dau' "
                            "and dimension = 'all'", [broken]).fetchall() == [(5.0,)]
        assert conn.execute("select gate from raw.load_log where event_date = ?", [broken]).fetchall() == [("pass",)]
