"""The email_reports asset: each report profile's digest, rendered per recipient and sent at most once."""


import random
from contextlib import contextmanager
from datetime import date, datetime, timezone

import dagster as dg

from hitcraft_assets import settings
from hitcraft_assets.analysis.assets import held_metadata
from hitcraft_assets.analysis.days import held_local_days
from hitcraft_assets.config import load_config
from hitcraft_assets.delivery.deliver import TransientDeliveryError, deliver, periods_to_deliver
from hitcraft_assets.delivery.email.smtp import SMTPResource
from hitcraft_assets.delivery.serving import publish
from hitcraft_assets.delivery.unsubscribe import AppDB, secret_key
from hitcraft_assets.ingestion.checks import CHECK_SPECS
from hitcraft_assets.insights.assets import insights
from hitcraft_assets.partitions import DAILY
from hitcraft_assets.progress import report_progress
from hitcraft_assets.retries import NETWORK_RETRY, only_transient_retries
from hitcraft_assets.warehouse import WarehouseResource, existing_tables


class EmailReportsConfig(dg.Config):
    """Which reports a run delivers. Default: what the run's range completes (the daily profiles for its
    last day, the weekly and monthly profiles for the latest week or month it covers whole)."""

    cadences: list[str] | None = None   # e.g. ["weekly"]: the weekly profiles for the week ending on the last day
    profiles: list[str] | None = None   # only these report profiles
    send: bool = True                   # False: render into data/outbox/preview/ only (no ledger, no SMTP)
    send_retries: int = 4               # when the SMTP server cannot be reached: retries of the step ...
    retry_base_s: float = 30.0          # ... after base * 2^n seconds (n = 0, 1, ...), ±20% jitter


def _last_day_with_insights(conn, days: list[date]) -> date | None:
    if "insights.insights" not in existing_tables(conn) or not days:
        return None
    found = conn.execute("select max(as_of_date) from insights.insights where as_of_date between ? and ?",
                         [min(days), max(days)]).fetchall()[0][0]
    return found


@dg.asset(
    partitions_def=DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    retry_policy=NETWORK_RETRY,
    pool="duckdb",
    group_name="delivery",
    kinds={"duckdb", "email"},
    owners=["team:product-analytics"],
    tags={"stage": "delivery"},
    deps=[insights],
)
def email_reports(context: dg.AssetExecutionContext, config: EmailReportsConfig, duckdb: WarehouseResource,
                  smtp: SMTPResource) -> dg.MaterializeResult:
    """The email digests of the report profiles (config `reports:`): for each recipient, the period's KPIs
    against the previous period and the top insights for their areas and role, each with its evidence, a
    chart and a link to the dashboard; HTML that Outlook, Gmail and dark mode render, and a text part.

    Grain: one row per (profile, period, recipient) in `delivery.email_reports` (the rendered message) and
    in `delivery.email_sends` (the ledger: every message goes out at most once). A partition is the local
    day a period ends on; a run over a range delivers only the periods its last day completes.
    Without SMTP settings the messages are written as .eml files to data/outbox/.
    """
    with only_transient_retries("delivering the email reports"):
        cfg = load_config()
        days = sorted(date.fromisoformat(k) for k in context.partition_keys)
        with duckdb.get_connection() as conn:
            held = held_local_days(conn, days, cfg)
            readable = [d for d in days if d not in held]
            last = _last_day_with_insights(conn, readable)
        for day, reason in held.items():
            context.add_asset_metadata(held_metadata(reason), partition_key=day.isoformat())
        if last is None:
            context.log.info("email_reports: no day of the range has insights; nothing to deliver")
            return dg.MaterializeResult()
        plan = periods_to_deliver(readable[0], last, cfg.reports, config.cadences, config.profiles)

        @contextmanager
        def connect():
            with duckdb.get_connection() as conn:
                yield conn

        try:
            outcomes = deliver(connect, cfg, plan, smtp, public_url=settings.public_url(), secret=secret_key(),
                               app_db=AppDB(), send=config.send, preview_dir=settings.outbox_dir() / "preview",
                               log=context.log)
        except TransientDeliveryError as exc:
            _report(context, exc.outcomes, last)
            if context.retry_number >= config.send_retries:
                raise dg.Failure(description=f"{exc} (gave up after {context.retry_number} retries)",
                                 allow_retries=False) from None
            wait = config.retry_base_s * 2 ** context.retry_number * random.uniform(0.8, 1.2)
            context.log.warning(f"{exc}; retrying in {wait:.1f} s (only the messages not sent yet)")
            raise dg.RetryRequested(max_retries=config.send_retries, seconds_to_wait=wait) from None
        _report(context, outcomes, last)
        return dg.MaterializeResult()


def _report(context, outcomes, last: date) -> None:
    """Per partition: what was delivered for the periods that end on it."""
    by_day: dict[date, list] = {}
    for o in outcomes:
        by_day.setdefault(o.period.end, []).append(o)
    for day, items in by_day.items():
        counts: dict[str, int] = {}
        for o in items:
            counts[o.status] = counts.get(o.status, 0) + 1
        context.add_asset_metadata({
            "messages": len(items), **{f"status_{k}": v for k, v in sorted(counts.items())},
            "deliveries": dg.MetadataValue.md("\n".join(
                f"- {o.profile} ({o.period.label}) → {o.recipient}: **{o.status}**"
                + (f" ({o.reason})" if o.reason and o.status not in ("sent", "outbox") else "")
                + (f", {o.where}" if o.where else "") for o in items)),
        }, partition_key=day.isoformat())
    report_progress("email_reports", 1, 1, last.isoformat(), {"messages": len(outcomes)})


def _plain(value):
    """A metadata value as plain JSON data (the check metadata holds counts, days and reasons; no secrets)."""
    value = getattr(value, "value", value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def _range_tag(tags: dict, name: str) -> date | None:
    try:
        return date.fromisoformat(tags[name]) if tags.get(name) else None
    except ValueError:
        return None


def latest_check_results(instance: dg.DagsterInstance) -> list[dict]:
    """The latest completed evaluation (passed or failed, not merely planned) of each data-quality check, as
    Dagster's instance recorded it: rows of serving.CHECK_RESULT_COLUMNS. A check never evaluated is left out.
    The checks of raw_events are not partitioned: one evaluation covers every day its run loaded (the run's
    partition range tags), and its metadata names the days that did not pass."""
    from dagster._core.storage.asset_check_execution_record import COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
        PARTITION_NAME_TAG,
    )

    rows = []
    for spec in CHECK_SPECS:
        records = instance.event_log_storage.get_asset_check_execution_history(
            spec.key, limit=1, status=COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES)
        if not records or records[0].event is None or records[0].event.dagster_event is None:
            continue
        record = records[0]
        evaluation = record.event.dagster_event.asset_check_evaluation_data
        run = instance.get_run_by_id(record.run_id)
        tags = dict(run.tags) if run else {}
        first = _range_tag(tags, ASSET_PARTITION_RANGE_START_TAG) or _range_tag(tags, PARTITION_NAME_TAG)
        last = _range_tag(tags, ASSET_PARTITION_RANGE_END_TAG) or _range_tag(tags, PARTITION_NAME_TAG)
        rows.append({
            "asset": spec.asset_key.to_user_string(), "check_name": spec.name, "passed": evaluation.passed,
            "severity": evaluation.severity.value, "blocking": bool(spec.blocking),
            "description": evaluation.description or spec.description, "partition": record.partition,
            "days_from": first, "days_to": last, "run_id": record.run_id,
            "evaluated_at": datetime.fromtimestamp(record.event.timestamp, timezone.utc),
            "metadata": {k: _plain(v) for k, v in evaluation.metadata.items()},
        })
    return rows


@dg.asset(
    pool="duckdb",
    group_name="delivery",
    kinds={"duckdb"},
    owners=["team:product-analytics"],
    tags={"stage": "delivery"},
    deps=[insights, email_reports, "daily_metrics", "funnels", "retention", "anomalies", "trends", "segments",
          "raw_events"],
)
def serving_snapshot(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    """What the REST API and the dashboard read, published as its own DuckDB file (HITCRAFT_SERVING_PATH,
    default data/serving.duckdb): insights with their history, daily metrics, anomalies, the latest change
    points, funnel steps, retention, significant segment comparisons, the load log and rejected lines by
    reason, the email reports and their ledger, the latest result of each data-quality check of raw_events
    (read from the Dagster instance, where check evaluations live), plus a `meta` table (snapshot id, built
    at, last day).

    Built in a temporary file inside the pipeline (the warehouse's only writer) and swapped in atomically,
    so the API never opens the warehouse and never sees half a snapshot. Grain: the latest state, whole.
    """
    cfg = load_config()
    summary = {"product": cfg.product_name, "timezone": cfg.timezone,
               "funnels": [{"name": f.name, "steps": list(f.steps), "window_days": f.window_days} for f in cfg.funnels],
               "dimensions": [d.name for d in cfg.dimensions],
               "reports": [{"name": r.name, "cadence": r.cadence, "title": r.title} for r in cfg.reports]}
    check_results = latest_check_results(context.instance)
    with only_transient_retries("publishing the serving snapshot"), duckdb.get_connection() as conn:
        meta = publish(conn, settings.serving_path(), config_summary=summary, check_results=check_results)
    return dg.MaterializeResult(metadata={
        "path": str(settings.serving_path()), "snapshot_id": meta["snapshot_id"], "last_day": meta["last_day"] or "",
        "rows": dg.MetadataValue.json(meta["tables"]), "check_results": len(check_results)})


delivery_assets = [email_reports, serving_snapshot]
