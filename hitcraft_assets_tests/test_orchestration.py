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


def _tick(sensor, instance, cursor=None):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    data = sensor(ctx)
    requests = [r for r in (data if isinstance(data, list) else [data]) if isinstance(r, dg.RunRequest)]
    return requests, ctx.cursor


def test_sensor_follows_every_materialization_of_raw_events(files_resources):
    """The daily job, a CLI or UI backfill of raw_events: each is followed by one analysis run; a run that
    analysed its own days (hitcraft run, a backfill of every asset) is not."""
    from hitcraft_assets.ingestion.assets import raw_events

    sensor = defs.get_sensor_def("analysis_after_ingest_sensor")
    job = defs.resolve_job_def("daily_ingest_job")
    with dg.instance_for_test() as instance:
        requests, cursor = _tick(sensor, instance)
        assert requests == []
        # a real run of the ingest job over an empty export folder: three empty days
        result = job.execute_in_process(instance=instance, tags={RANGE_START: "2026-03-07", RANGE_END: "2026-03-09"})
        assert result.success
        [request], cursor = _tick(sensor, instance, cursor)
        assert (request.tags[RANGE_START], request.tags[RANGE_END]) == ("2026-03-01", "2026-03-09")
        assert request.run_key.startswith(f"analysis-{result.run_id}-")
        assert _tick(sensor, instance, cursor)[0] == []          # the cursor moved on: asked once
        # a backfill of raw_events alone, as `dagster asset materialize --partition-range` runs it
        backfill = dg.materialize([raw_events], resources=files_resources, instance=instance,
                                  tags={RANGE_START: "2026-02-10", RANGE_END: "2026-02-11"})
        [request], cursor = _tick(sensor, instance, cursor)
        assert (request.tags[RANGE_START], request.tags[RANGE_END]) == ("2026-02-03", "2026-02-11")
        assert request.tags["hitcraft/after_run"] == backfill.run_id
