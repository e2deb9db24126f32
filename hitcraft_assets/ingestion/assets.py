"""Ingestion assets: raw_events (daily, UTC) and user_profiles (snapshot)."""


from datetime import date
from pathlib import Path

import dagster as dg

from hitcraft_assets.config import load_config
from hitcraft_assets.ingestion import checks
from hitcraft_assets.ingestion.loader import LoadStats, load_day
from hitcraft_assets.ingestion.mixpanel import MixpanelConfigError, MixpanelRequestError
from hitcraft_assets.ingestion.sources import ExportSourceResource
from hitcraft_assets.partitions import RAW_DAILY
from hitcraft_assets.progress import report_progress
from hitcraft_assets.warehouse import WarehouseResource, ensure_schema, named_statements, transaction

# Network assets retry with exponential backoff and jitter; the client already retried each request.
NETWORK_RETRY = dg.RetryPolicy(max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
OWNERS = ["team:data-platform"]


def _stats_metadata(stats: LoadStats) -> dict:
    return {
        "rows": stats.rows_loaded,
        "lines": stats.lines,
        "rejected": stats.rejected,
        "duplicates_removed": stats.duplicates_removed,
        "distinct_users": stats.distinct_users,
        "bytes_read": stats.bytes_read,
        "source": stats.source,
        "source_found": stats.source_found,
    }


@dg.asset(
    partitions_def=RAW_DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    retry_policy=NETWORK_RETRY,
    pool="duckdb",
    group_name="ingestion",
    kinds={"duckdb", "python"},
    owners=OWNERS,
    check_specs=checks.CHECK_SPECS,
    tags={"stage": "ingestion"},
)
def raw_events(
    context: dg.AssetExecutionContext, duckdb: WarehouseResource, export_source: ExportSourceResource
):
    """Every product event of a UTC day as Mixpanel exported it: typed, validated and deduplicated.

    Grain: one row per event (Mixpanel's dedup key: event, distinct_id, time, $insert_id; the latest
    `mp_processing_time_ms` wins). Source: the Raw Export API (one request per day) or a folder of export
    files. Lines that fail validation go to `raw.rejected_events` with their reason; nothing is dropped.
    Each day is replaced in one transaction, so a failed run leaves the previous data in place.
    """
    config = load_config()
    tolerance_s = config.time_tolerance_minutes * 60
    days = [date.fromisoformat(k) for k in context.partition_keys]
    all_stats: list[LoadStats] = []
    for i, day in enumerate(days, start=1):
        try:
            fetched = export_source.fetch_day(day, log=context.log)
        except (MixpanelRequestError, MixpanelConfigError) as exc:
            raise dg.Failure(description=str(exc), metadata={"day": day.isoformat(), "code": exc.code},
                             allow_retries=False) from None
        try:
            with duckdb.get_connection() as conn:
                stats = load_day(conn, day, fetched.path, source=fetched.source, bytes_read=fetched.bytes_read,
                                 tolerance_s=tolerance_s)
        finally:
            if fetched.is_staged and fetched.path is not None:
                Path(fetched.path).unlink(missing_ok=True)
        all_stats.append(stats)
        meta = _stats_metadata(stats) | {"note": fetched.note}
        context.add_asset_metadata(meta, partition_key=day.isoformat())
        context.log.info(f"{day}: {stats.rows_loaded} rows, {stats.rejected} rejected, "
                         f"{stats.duplicates_removed} duplicates removed ({fetched.note})")
        report_progress("raw_events", i, len(days), day.isoformat(), meta)

    with duckdb.get_connection() as conn:
        yield checks.keys_not_null(conn, days)
        yield checks.no_duplicates(conn, days)
        yield checks.volume_vs_trailing_median(conn, days)
    yield checks.rejected_share(all_stats)
    yield dg.MaterializeResult(metadata={
        "days": len(days),
        "rows_total": sum(s.rows_loaded for s in all_stats),
        "rejected_total": sum(s.rejected for s in all_stats),
        "duplicates_removed_total": sum(s.duplicates_removed for s in all_stats),
        "empty_days": [s.day.isoformat() for s in all_stats if not s.source_found],
    })


@dg.asset(
    retry_policy=NETWORK_RETRY,
    pool="duckdb",
    group_name="ingestion",
    kinds={"duckdb", "python"},
    owners=OWNERS,
    tags={"stage": "ingestion"},
)
def user_profiles(
    context: dg.AssetExecutionContext, duckdb: WarehouseResource, export_source: ExportSourceResource
) -> dg.MaterializeResult:
    """The people behind the events: a snapshot of Mixpanel's Engage profiles (one row per profile).

    Source: the Engage API, paged (1,000 profiles a page), or `profiles.jsonl` in the export folder. The
    snapshot is replaced whole in one transaction; with no profiles file the table is left empty.
    """
    try:
        path, source = export_source.fetch_profiles(log=context.log)
    except (MixpanelRequestError, MixpanelConfigError) as exc:
        raise dg.Failure(description=str(exc), metadata={"code": exc.code}, allow_retries=False) from None
    with duckdb.get_connection() as conn:
        ensure_schema(conn)
        with transaction(conn):
            conn.execute("delete from raw.user_profiles")
            if path is not None:
                conn.execute(named_statements("ingestion/user_profiles.sql")["replace_profiles"],
                             {"path": str(path)})
            (rows,) = conn.execute("select count(*) from raw.user_profiles").fetchall()[0]
    return dg.MaterializeResult(metadata={"rows": rows, "source": source, "source_found": path is not None})
