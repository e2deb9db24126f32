"""Projects created before 2023 export days of the project timezone, and their `time` is seconds since
the epoch in that timezone (a local wall clock written as if it were UTC). With MIXPANEL_PROJECT_TIMEZONE the
loader requests the project's days and converts each `time` to true UTC with the offset in force at that
instant. The local Mixpanel server here serves such a project across both DST changes of 2026."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pytest

from hitcraft_assets.analysis.assets import daily_metrics, identity_map, sessions
from hitcraft_assets.ingestion.assets import raw_events
from hitcraft_assets.ingestion.mixpanel import MixpanelResource
from hitcraft_assets.ingestion.sources import ExportSourceResource
from hitcraft_assets.schedules import daily_range
from hitcraft_assets.warehouse import WarehouseResource
from hitcraft_assets_tests.fake_mixpanel import FakeMixpanel, legacy_project_export

LA = ZoneInfo("America/Los_Angeles")


def utc_events(first_local_day: date, days: int) -> list[tuple[str, datetime]]:
    """Every 50 minutes from local midnight of the first day to the end of the last, as true UTC, leaving
    out the repeated hour of a fall-back (which a project-timezone clock cannot tell apart)."""
    start = datetime.combine(first_local_day, datetime.min.time(), tzinfo=LA).astimezone(timezone.utc)
    end = datetime.combine(first_local_day + timedelta(days=days), datetime.min.time(), tzinfo=LA).astimezone(timezone.utc)
    out, t, k = [], start, 0
    while t < end:
        local = t.astimezone(LA)
        ambiguous = local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset()
        if not ambiguous:
            out.append((f"u{k % 7}", t))
        t += timedelta(minutes=50)
        k += 1
    return out


def lines_of(events) -> list[str]:
    return [json.dumps({"event": "Login", "properties": {"time": int(t.timestamp() * 1000), "distinct_id": who,
                                                          "$insert_id": f"i{n}"}}) for n, (who, t) in enumerate(events)]


def resources(tmp_path, fake) -> dict:
    mixpanel = MixpanelResource(api_secret="legacy-secret-1234", export_url=fake.export_url, api_url=fake.api_url,
                                backoff_base_s=0.01, rate_limit_dir=str(tmp_path / "rl"))
    return {"duckdb": WarehouseResource(database=str(tmp_path / "w.duckdb")),
            "export_source": ExportSourceResource(source="mixpanel", export_dir=str(tmp_path / "x"),
                                                  staging_dir=str(tmp_path / "staging"), mixpanel=mixpanel)}


def run_days(res, instance, first: date, last: date, assets=(raw_events,)):
    return dg.materialize(list(assets), resources=res, instance=instance, raise_on_error=False,
                          tags={"dagster/asset_partition_range_start": first.isoformat(),
                                "dagster/asset_partition_range_end": last.isoformat()})


@pytest.mark.parametrize("first", [date(2026, 3, 7), date(2026, 10, 31)], ids=["spring-forward", "fall-back"])
def test_a_legacy_project_across_a_dst_change_loads_exact_utc_rows(tmp_path, instance, monkeypatch, first):
    monkeypatch.setenv("MIXPANEL_PROJECT_TIMEZONE", "America/Los_Angeles")
    events = utc_events(first, 3)
    with FakeMixpanel(events=legacy_project_export(lines_of(events), "America/Los_Angeles"),
                      api_secret="legacy-secret-1234") as fake:
        res = resources(tmp_path, fake)
        result = run_days(res, instance, first, first + timedelta(days=2))
        assert result.success
        assert sorted(r.params["from_date"] for r in fake.export_requests()) == [
            (first + timedelta(days=i)).isoformat() for i in range(3)]
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        assert conn.execute("select count(*) from raw.rejected_events").fetchall() == [(0,)]
        got = conn.execute("select event_date, distinct_id, epoch_ms(time) from raw.events order by 3").fetchall()
    want = [(t.astimezone(LA).date(), who, int(t.timestamp() * 1000)) for who, t in events]
    assert got == want
    # the DST day has 23 or 25 hours of events, each on its project-timezone day
    hours = {d: sum(1 for e in want if e[0] == d) for d in {w[0] for w in want}}
    assert len(hours) == 3 and len(set(hours.values())) > 1


def test_without_the_setting_every_time_is_off_by_the_offset(tmp_path, instance):
    first = date(2026, 3, 7)
    events = utc_events(first, 1)
    with FakeMixpanel(events=legacy_project_export(lines_of(events), "America/Los_Angeles"),
                      api_secret="legacy-secret-1234") as fake:
        assert run_days(resources(tmp_path, fake), instance, first, first).success
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        got = [r[0] for r in conn.execute("select epoch_ms(time) from raw.events order by 1").fetchall()]
    # local wall clocks read as UTC: each event 8 hours early (PST), silently
    assert [(int(t.timestamp() * 1000) - g) / 3_600_000 for g, (_, t) in zip(got, events)] == [8.0] * len(events)


def test_analysis_of_a_legacy_project_reads_the_right_days(tmp_path, instance, monkeypatch):
    monkeypatch.setenv("MIXPANEL_PROJECT_TIMEZONE", "America/Los_Angeles")
    monkeypatch.setenv("HITCRAFT_TIMEZONE", "America/Los_Angeles")
    first = date(2026, 3, 7)
    events = utc_events(first, 3)
    with FakeMixpanel(events=legacy_project_export(lines_of(events), "America/Los_Angeles"),
                      api_secret="legacy-secret-1234") as fake:
        res = resources(tmp_path, fake)
        assert run_days(res, instance, first, first + timedelta(days=2)).success
        assert run_days(res, instance, first, first + timedelta(days=2),
                        assets=(identity_map, sessions, daily_metrics)).success
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        counts = dict(conn.execute("select metric_date, value from analytics.daily_metrics where "
                                   "metric = 'event_count:Login' and dimension = 'all'").fetchall())
    assert counts == {d: float(sum(1 for _, t in events if t.astimezone(LA).date() == d))
                      for d in (first + timedelta(days=i) for i in range(3))}


def test_the_daily_schedule_waits_for_the_projects_day_to_end():
    # 03:00 UTC on 2 Dec is still 1 Dec in Los Angeles: its last complete day is 30 Nov
    tick = datetime(2026, 12, 2, 3, 0, tzinfo=timezone.utc)
    assert daily_range(tick, date(2026, 1, 1), 0)[1] == date(2026, 12, 1)
    assert daily_range(tick, date(2026, 1, 1), 0, filing_tz="America/Los_Angeles")[1] == date(2026, 11, 30)
