"""Schedules and sensors: the daily pull of raw events, then the analysis of the local days it touched."""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from hitcraft_assets.partitions import first_partition

# Mixpanel accepts events up to 5 days late (SDK /track, offline queues): re-pull that many days.
LATE_EVENT_LOOKBACK_DAYS = 5
DAILY_CRON = "30 2 * * *"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def daily_range(scheduled: datetime, first: date, lookback_days: int = LATE_EVENT_LOOKBACK_DAYS,
                filing_tz: str = "UTC") -> tuple[date, date] | None:
    """The export days a tick at `scheduled` should (re)load: the last complete day and `lookback_days`
    before it, never before the first partition. None when no complete day exists yet. Export days are UTC
    days, or a legacy Mixpanel project's own days (`filing_tz`): its day must be over there."""
    last = scheduled.astimezone(ZoneInfo(filing_tz)).date() - timedelta(days=1)
    if last < first:
        return None
    return max(first, last - timedelta(days=lookback_days)), last


def analysis_range(utc_start: date, utc_end: date, tz: str, window_days: int, first: date,
                   filing_tz: str = "UTC") -> tuple[date, date] | None:
    """The local days to (re)compute once the export days utc_start..utc_end are loaded: every local day
    that overlaps them and is complete (its end is covered by utc_end), plus the earlier entry days whose
    funnel window (window_days) is still open on the last one. Export days are UTC days, or a legacy
    Mixpanel project's own days (`filing_tz`)."""
    zone = ZoneInfo(tz)
    covered_until = datetime.combine(utc_end + timedelta(days=1), time(0), tzinfo=ZoneInfo(filing_tz))
    last = utc_end + timedelta(days=1)
    while datetime.combine(last + timedelta(days=1), time(0), tzinfo=zone) > covered_until:
        last -= timedelta(days=1)
    start = min(utc_start - timedelta(days=1), last - timedelta(days=window_days + 1))
    start = max(start, first)
    if last < start:
        return None
    return start, last


def build_daily_schedule(job, timezone_name: str, filing_tz: str = "UTC") -> dg.ScheduleDefinition:
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
        window = daily_range(context.scheduled_execution_time, first_partition(), filing_tz=filing_tz)
        if window is None:
            return dg.SkipReason("no complete UTC day since the first partition yet")
        start, end = window
        return dg.RunRequest(
            run_key=f"daily-{end.isoformat()}",
            tags={RANGE_START: start.isoformat(), RANGE_END: end.isoformat()},
        )

    return daily_ingest_schedule


def build_analysis_sensor(analysis_job, timezone_name: str, window_days: int, filing_tz: str = "UTC"):
    @dg.sensor(
        name="analysis_after_ingest_sensor",
        job=analysis_job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="When raw events for some days have landed (from the daily schedule, a CLI or UI "
                    "backfill, any run that does not analyse them itself), analyse the local days they "
                    "touched, and the funnel entry days whose conversion window is still open.",
    )
    def analysis_after_ingest_sensor(context: dg.SensorEvaluationContext):
        found = context.instance.fetch_materializations(dg.AssetKey("raw_events"), limit=MATERIALIZATIONS_PER_TICK,
                                                        cursor=context.cursor, ascending=True)
        if not found.records:
            return dg.SkipReason("no new materialization of raw_events")
        by_run: dict[str, list[date]] = {}
        last_id: dict[str, int] = {}
        for record in found.records:
            if record.partition_key:
                by_run.setdefault(record.run_id, []).append(date.fromisoformat(record.partition_key))
                last_id[record.run_id] = record.storage_id
        requests = []
        for run_id, days in by_run.items():
            if _run_analyses_itself(context.instance, run_id):
                continue
            window = analysis_range(min(days), max(days), timezone_name, window_days, first_partition(), filing_tz)
            if window is None:
                continue
            start, end = window
            requests.append(dg.RunRequest(
                run_key=f"analysis-{run_id}-{last_id[run_id]}",
                tags={RANGE_START: start.isoformat(), RANGE_END: end.isoformat(), "hitcraft/after_run": run_id},
            ))
        context.update_cursor(found.cursor)
        return requests or dg.SkipReason("the new raw days were analysed by the runs that loaded them")

    return analysis_after_ingest_sensor


MATERIALIZATIONS_PER_TICK = 1000


def _run_analyses_itself(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether the run that loaded the days also materializes the analysis (hitcraft run, a backfill of
    every asset): then a second analysis run would only repeat it."""
    planned = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
                                           limit=10_000).records
    return any(r.event_log_entry.dagster_event and r.event_log_entry.dagster_event.asset_key == dg.AssetKey("sessions")
               for r in planned)
