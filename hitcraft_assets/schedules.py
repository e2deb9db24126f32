"""Schedules and sensors: the daily pull of raw events, then the analysis of the local days it touched."""

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import dagster as dg

from hitcraft_assets.partitions import first_partition

# Mixpanel accepts events up to 5 days late (SDK /track, offline queues): re-pull that many days.
LATE_EVENT_LOOKBACK_DAYS = 5
DAILY_CRON = "30 2 * * *"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def daily_range(scheduled: datetime, first: date, lookback_days: int = LATE_EVENT_LOOKBACK_DAYS
                ) -> tuple[date, date] | None:
    """The UTC days a tick at `scheduled` should (re)load: the last complete UTC day and `lookback_days`
    before it, never before the first partition. None when no complete day exists yet."""
    last = scheduled.astimezone(timezone.utc).date() - timedelta(days=1)
    if last < first:
        return None
    return max(first, last - timedelta(days=lookback_days)), last


def analysis_range(utc_start: date, utc_end: date, tz: str, window_days: int, first: date
                   ) -> tuple[date, date] | None:
    """The local days to (re)compute once the UTC days utc_start..utc_end are loaded: every local day that
    overlaps them and is complete (its end is covered by utc_end), plus the earlier entry days whose funnel
    window (window_days) is still open on the last one."""
    zone = ZoneInfo(tz)
    covered_until = datetime.combine(utc_end + timedelta(days=1), time(0), tzinfo=timezone.utc)
    last = utc_end + timedelta(days=1)
    while datetime.combine(last + timedelta(days=1), time(0), tzinfo=zone) > covered_until:
        last -= timedelta(days=1)
    start = min(utc_start - timedelta(days=1), last - timedelta(days=window_days + 1))
    start = max(start, first)
    if last < start:
        return None
    return start, last


def build_daily_schedule(job, timezone_name: str) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="daily_ingest_schedule",
        job=job,
        cron_schedule=DAILY_CRON,
        execution_timezone=timezone_name,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Every day at 02:30 {timezone_name}: load the last complete UTC day and re-pull the "
                    f"{LATE_EVENT_LOOKBACK_DAYS} days before it for late events, in one run.",
    )
    def daily_ingest_schedule(context: dg.ScheduleEvaluationContext):
        window = daily_range(context.scheduled_execution_time, first_partition())
        if window is None:
            return dg.SkipReason("no complete UTC day since the first partition yet")
        start, end = window
        return dg.RunRequest(
            run_key=f"daily-{end.isoformat()}",
            tags={RANGE_START: start.isoformat(), RANGE_END: end.isoformat()},
        )

    return daily_ingest_schedule


def build_analysis_sensor(ingest_job, analysis_job, timezone_name: str, window_days: int):
    @dg.run_status_sensor(
        name="analysis_after_ingest_sensor",
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[ingest_job],
        request_job=analysis_job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="When raw events for a range of UTC days have landed, analyse the local days they "
                    "touched, and the funnel entry days whose conversion window is still open.",
    )
    def analysis_after_ingest_sensor(context: dg.RunStatusSensorContext):
        tags = context.dagster_run.tags
        if RANGE_START in tags:
            utc_start, utc_end = date.fromisoformat(tags[RANGE_START]), date.fromisoformat(tags[RANGE_END])
        elif "dagster/partition" in tags:
            utc_start = utc_end = date.fromisoformat(tags["dagster/partition"])
        else:
            return dg.SkipReason("the ingest run had no partition range")
        window = analysis_range(utc_start, utc_end, timezone_name, window_days, first_partition())
        if window is None:
            return dg.SkipReason("no complete local day in the loaded range")
        start, end = window
        return dg.RunRequest(
            run_key=f"analysis-{context.dagster_run.run_id}",
            tags={RANGE_START: start.isoformat(), RANGE_END: end.isoformat()},
        )

    return analysis_after_ingest_sensor
