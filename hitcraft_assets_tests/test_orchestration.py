"""The daily orchestration as Dagster evaluates it: which local days the analysis re-runs after an ingest
(funnel windows still open, non-UTC reporting days), and the post-ingest sensor on a real successful run."""

from datetime import date

import dagster as dg
import pytest

from hitcraft_assets.definitions import defs
from hitcraft_assets.schedules import RANGE_END, RANGE_START, analysis_range

FIRST = date(2026, 1, 1)


@pytest.mark.parametrize(
    ("tz", "expected_last"),
    [
        ("UTC", date(2026, 3, 9)),
        # 03-09 in Los Angeles ends at 03-10 08:00 UTC: not covered by UTC days up to 03-09
        ("America/Los_Angeles", date(2026, 3, 8)),
        # 03-09 in Tokyo ends at 03-09 15:00 UTC: covered
        ("Asia/Tokyo", date(2026, 3, 9)),
    ],
)
def test_analysis_range_covers_complete_local_days_and_open_funnel_windows(tz, expected_last):
    start, last = analysis_range(date(2026, 3, 4), date(2026, 3, 9), tz, window_days=7, first=FIRST)
    assert last == expected_last
    # entry days whose 7-day window is still open on the last day, plus the day before the ingest range
    assert start == min(date(2026, 3, 3), expected_last - date.resolution * 8)


def test_analysis_range_never_starts_before_the_first_partition():
    assert analysis_range(date(2026, 1, 2), date(2026, 1, 3), "UTC", 7, FIRST) == (FIRST, date(2026, 1, 3))


def test_sensor_requests_analysis_after_a_successful_ingest_run(tmp_path):
    sensor = defs.get_sensor_def("analysis_after_ingest_sensor")
    job = defs.resolve_job_def("daily_ingest_job")
    with dg.instance_for_test() as instance:
        # a real run of the ingest job over an empty export folder: three empty days
        result = job.execute_in_process(instance=instance, tags={RANGE_START: "2026-03-07", RANGE_END: "2026-03-09"})
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        success = next(e for e in instance.all_logs(result.run_id) if e.dagster_event
                       and e.dagster_event.event_type_value == "PIPELINE_SUCCESS")
        ctx = dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_instance=instance,
                                                 dagster_run=run, dagster_event=success.dagster_event)
        data = sensor(ctx)
    [request] = data if isinstance(data, list) else [data]
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == ("2026-03-01", "2026-03-09")
    assert request.run_key == f"analysis-{result.run_id}"
