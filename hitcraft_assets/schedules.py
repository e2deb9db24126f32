"""Schedules: the daily pull of the last complete UTC day plus a lookback for late events."""


from datetime import date, datetime, timedelta, timezone

import dagster as dg

from hitcraft_assets.partitions import RAW_DAILY

# Mixpanel accepts events up to 5 days late (SDK /track, offline queues): re-pull that many days.
LATE_EVENT_LOOKBACK_DAYS = 5
DAILY_CRON = "30 2 * * *"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def daily_range(scheduled: datetime, first_partition: date, lookback_days: int = LATE_EVENT_LOOKBACK_DAYS
                ) -> tuple[date, date] | None:
    """The UTC days a tick at `scheduled` should (re)load: the last complete UTC day and `lookback_days`
    before it, never before the first partition. None when no complete day exists yet."""
    last = scheduled.astimezone(timezone.utc).date() - timedelta(days=1)
    if last < first_partition:
        return None
    return max(first_partition, last - timedelta(days=lookback_days)), last


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
        first = date.fromisoformat(RAW_DAILY.start.strftime("%Y-%m-%d"))
        window = daily_range(context.scheduled_execution_time, first)
        if window is None:
            return dg.SkipReason("no complete UTC day since the first partition yet")
        start, end = window
        return dg.RunRequest(
            run_key=f"daily-{end.isoformat()}",
            tags={RANGE_START: start.isoformat(), RANGE_END: end.isoformat()},
        )

    return daily_ingest_schedule
