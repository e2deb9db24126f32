"""When the email digests go out: after a day's insights (daily profiles), on Mondays (weekly) and on the 1st
(monthly), in the reporting timezone; and an operator alert when a run fails."""


import os
from datetime import timedelta

import dagster as dg

from hitcraft_assets import settings
from hitcraft_assets.delivery.alerts import alert_message
from hitcraft_assets.delivery.email.smtp import SMTPResource

SEND_HOUR = 7          # the weekly and monthly digests: 07:00 in the reporting timezone
INSIGHTS_PER_TICK = 1000


def email_run_config(cadences: list[str], profiles: list[str] | None = None) -> dict:
    return {"ops": {"email_reports": {"config": {"cadences": cadences, "profiles": profiles}}}}


def _run_delivers_itself(instance: dg.DagsterInstance, run_id: str) -> bool:
    if not run_id:        # reported without a run
        return False
    planned = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
                                           limit=10_000).records
    return any(r.event_log_entry.dagster_event and r.event_log_entry.dagster_event.asset_key == dg.AssetKey("email_reports")
               for r in planned)


def build_reports_sensor(email_job, daily_profiles: list[str]):
    @dg.sensor(
        name="daily_reports_after_insights_sensor",
        job=email_job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="When a day's insights are materialized (by any run that does not deliver itself), send "
                    "that day's daily digests: one run per profile and day (run_key), so a re-materialized "
                    "day is not sent again; the send ledger stops a second send in any case.",
    )
    def daily_reports_after_insights_sensor(context: dg.SensorEvaluationContext):
        if not daily_profiles:
            return dg.SkipReason("no daily report profile in the config")
        found = context.instance.fetch_materializations(dg.AssetKey("insights"), limit=INSIGHTS_PER_TICK,
                                                        cursor=context.cursor, ascending=True)
        if not found.records:
            return dg.SkipReason("no new materialization of insights")
        requests, seen = [], set()
        for record in found.records:
            day = record.partition_key
            if not day or day in seen or _run_delivers_itself(context.instance, record.run_id):
                continue
            seen.add(day)
            for profile in daily_profiles:
                requests.append(dg.RunRequest(run_key=f"email:{profile}:{day}", partition_key=day,
                                              run_config=email_run_config(["daily"], [profile]),
                                              tags={"hitcraft/report": profile}))
        context.update_cursor(found.cursor)
        return requests or dg.SkipReason("the new insights were delivered by the runs that made them")

    return daily_reports_after_insights_sensor


def build_period_schedule(email_job, cadence: str, timezone_name: str) -> dg.ScheduleDefinition:
    cron = f"0 {SEND_HOUR} * * 1" if cadence == "weekly" else f"0 {SEND_HOUR} 1 * *"

    @dg.schedule(
        name=f"{cadence}_reports_schedule",
        job=email_job,
        cron_schedule=cron,
        execution_timezone=timezone_name,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"{'Every Monday' if cadence == 'weekly' else 'On the 1st of every month'} at "
                    f"{SEND_HOUR:02d}:00 {timezone_name}: the {cadence} digests of the period that just ended.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        yesterday = context.scheduled_execution_time.date() - timedelta(days=1)
        return dg.RunRequest(run_key=f"email:{cadence}:{yesterday.isoformat()}", partition_key=yesterday.isoformat(),
                             run_config=email_run_config([cadence]))

    return _schedule


def failures_of(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str, str]]:
    """(step, error class, message) of each failed step of a run, innermost cause last."""
    out = []
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE, limit=100).records:
        event = record.event_log_entry.dagster_event
        error = event.step_failure_data.error if event and event.step_failure_data else None
        if error is None:
            continue
        message, cls = error.message, error.cls_name or ""
        while error.cause is not None:
            error = error.cause
            message, cls = message + "\n  caused by " + error.message, error.cls_name or cls
        out.append((event.step_key or "?", cls, message))
    return out


@dg.run_failure_sensor(
    name="operator_alert_on_run_failure",
    default_status=dg.DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=False,
    description="When a run fails, email the operator (HITCRAFT_ALERT_EMAIL; without it, or without SMTP, "
                "the alert goes to data/outbox/): job, run, failed steps and their errors with secrets "
                "redacted, and a link to the run in the Dagster UI.",
)
def operator_alert_on_run_failure(context: dg.RunFailureSensorContext, smtp: SMTPResource):
    run = context.dagster_run
    to = os.environ.get("HITCRAFT_ALERT_EMAIL") or "operator@localhost"
    msg = alert_message(job=run.job_name, run_id=run.run_id, failures=failures_of(context.instance, run.run_id),
                        sender=smtp.sender, to=to, run_url=f"{settings.dagster_url()}/runs/{run.run_id}")
    target = smtp if os.environ.get("HITCRAFT_ALERT_EMAIL") else SMTPResource(host=None, sender=smtp.sender,
                                                                            outbox_dir=smtp.outbox_dir)
    result = target.send(msg)
    context.log.info(f"alert for run {run.run_id} sent: {result.status} {result.where}")


def daily_profile_names(config) -> list[str]:
    return [r.name for r in config.reports if r.cadence == "daily"]

