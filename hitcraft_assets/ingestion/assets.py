"""Ingestion assets: raw_downloads and raw_events (daily, UTC), and user_profiles (snapshot).

A Mixpanel day is downloaded by `raw_downloads`, which holds the `mixpanel` pool and never opens the
warehouse, then loaded by `raw_events`, which holds the `duckdb` pool only while it loads: a backfill that
waits for Mixpanel's rate limit (60 export requests an hour) does not keep the analysis waiting.
"""


from datetime import date
from pathlib import Path

import dagster as dg

from hitcraft_assets.config import load_config
from hitcraft_assets.ingestion import checks
from hitcraft_assets.ingestion.loader import LoadStats, load_day
from hitcraft_assets.ingestion.mixpanel import MixpanelConfigError, MixpanelRequestError
from hitcraft_assets.ingestion.sources import ExportSourceResource, FetchedDay
from hitcraft_assets.partitions import RAW_DAILY
from hitcraft_assets.progress import report_progress
from hitcraft_assets.retries import NETWORK_RETRY, only_transient_retries
from hitcraft_assets.warehouse import WarehouseResource, ensure_schema, named_statements, transaction

OWNERS = ["team:data-platform"]


def _stats_metadata(stats: LoadStats) -> dict:
    """The day's own figures (each partition's materialization shows its day, never run-wide totals)."""
    return {
        "rows": stats.rows_loaded,
        "lines": stats.lines,
        "rejected": stats.rejected,
        "duplicates_removed": stats.duplicates_removed,
        "distinct_users": stats.distinct_users,
        "placeholder_ids": stats.placeholder_ids,
        "bytes_read": stats.bytes_read,
        "source": stats.source,
        "source_found": stats.source_found,
        "load_path": stats.path,
        "gate": stats.gate,
        "gate_reason": stats.gate_reason or "",
        "fault": stats.fault or "",
    }


def fetch_partition(context, export_source: ExportSourceResource, day: date, download: bool = False) -> FetchedDay:
    """Fetch one day (``download``: into staging, with its manifest); a fault that retrying cannot fix
    becomes a dg.Failure without retries."""
    with only_transient_retries(f"fetching {day}", day=day.isoformat()):
        try:
            if download:
                return export_source.download_day(day, log=context.log)
            return export_source.fetch_day(day, log=context.log)
        except (MixpanelRequestError, MixpanelConfigError) as exc:
            raise dg.Failure(description=str(exc), metadata={"day": day.isoformat(), "code": exc.code},
                             allow_retries=False) from None


def load_partition(context, duckdb: WarehouseResource, export_source: ExportSourceResource, day: date,
                   config) -> tuple[LoadStats, str]:
    """Load one day: the body `raw_downloads` staged for it, or, with none, fetched here (raw_events
    materialized on its own, or the files source). A staged body is removed once loaded; a load that fails
    leaves it for the retry."""
    fetched = export_source.staged_day(day) if export_source.downloads else None
    note_prefix = "downloaded by raw_downloads: " if fetched is not None else ""
    if fetched is None:
        fetched = fetch_partition(context, export_source, day)
    loaded = False
    try:
        with only_transient_retries(f"loading {day} from {fetched.source}", day=day.isoformat()):
            with duckdb.get_connection() as conn:
                stats = load_day(conn, day, fetched.path, source=fetched.source, bytes_read=fetched.bytes_read,
                                 tolerance_s=config.time_tolerance_minutes * 60,
                                 project_tz=config.mixpanel_project_timezone, body_sha256=fetched.sha256)
        loaded = True
    finally:
        if fetched.is_staged and (loaded or not note_prefix):
            export_source.discard_staged(day)
            if fetched.path is not None:
                Path(fetched.path).unlink(missing_ok=True)
    return stats, note_prefix + fetched.note


@dg.asset(
    partitions_def=RAW_DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    retry_policy=NETWORK_RETRY,
    pool="mixpanel",
    group_name="ingestion",
    kinds={"python"},
    owners=OWNERS,
    tags={"stage": "ingestion"},
)
def raw_downloads(context: dg.AssetExecutionContext, export_source: ExportSourceResource) -> dg.MaterializeResult:
    """Each day's Raw Export body downloaded into the staging folder, verified, for `raw_events` to load.

    Holds the `mixpanel` concurrency pool (one download at a time across runs, as Mixpanel counts export
    requests per project), never the `duckdb` one: while a backfill waits for Mixpanel's rate limit, the
    analysis of the days already loaded goes on. Grain: one staged file per day (`<day>.jsonl` and its
    manifest `<day>.json` in HITCRAFT_STAGING_DIR), removed once `raw_events` has loaded it. With the
    files source there is nothing to download: the export files are read where they are.
    """
    days = [date.fromisoformat(k) for k in context.partition_keys]
    if not export_source.downloads:
        for day in days:
            context.add_asset_metadata({"source": "files", "staged": False,
                                        "note": "export files are read where they are by raw_events"},
                                       partition_key=day.isoformat())
        return dg.MaterializeResult()
    for i, day in enumerate(days, start=1):
        fetched = fetch_partition(context, export_source, day, download=True)
        meta = {"source": fetched.source, "staged": True, "bytes_read": fetched.bytes_read,
                "attempts": fetched.attempts, "note": fetched.note}
        context.add_asset_metadata(meta, partition_key=day.isoformat())
        context.log.info(f"{day}: downloaded {fetched.bytes_read} bytes ({fetched.note})")
        report_progress("raw_downloads", i, len(days), day.isoformat(), {"bytes_read": fetched.bytes_read})
    return dg.MaterializeResult()


@dg.asset(
    deps=[raw_downloads],
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
    """Every product event of a day as Mixpanel exported it: typed, validated and deduplicated.

    Grain: one row per event (Mixpanel's dedup key: event, distinct_id, time, $insert_id; the latest
    `mp_processing_time_ms` wins). A partition is a UTC day, or for a legacy Mixpanel project (config
    `mixpanel_project_timezone`) a day of the project's timezone, as the export API slices it; `time` is
    always true UTC. Source: the body `raw_downloads` staged (the Raw Export API, one request per day),
    fetched here when none is staged (this asset materialized alone), or a folder of export files. Lines
    that fail validation go to `raw.rejected_events` with their reason; nothing is dropped. Each day is
    replaced in one transaction and judged by the quality gate: a day that is clearly broken is held back
    from analysis (raw.load_log.gate = 'held') while the other days go on.
    """
    config = load_config()
    days = [date.fromisoformat(k) for k in context.partition_keys]
    all_stats: list[LoadStats] = []
    for i, day in enumerate(days, start=1):
        stats, note = load_partition(context, duckdb, export_source, day, config)
        all_stats.append(stats)
        if stats.path == "unchanged":
            note = f"{note}; the same input as its last load: left as it is".lstrip("; ")
        meta = _stats_metadata(stats) | {"note": note}
        context.add_asset_metadata(meta, partition_key=day.isoformat())
        held = f"; HELD: {stats.gate_reason}" if stats.held else ""
        (context.log.warning if stats.held else context.log.info)(
            f"{day}: {stats.rows_loaded} rows, {stats.rejected} rejected, "
            f"{stats.duplicates_removed} duplicates removed ({note}){held}")
        report_progress("raw_events", i, len(days), day.isoformat(), meta)

    yield checks.placeholder_distinct_ids(all_stats)
    with duckdb.get_connection() as conn:
        yield checks.no_duplicates(conn, days)
        yield checks.volume_vs_trailing_median(conn, days)
    yield checks.rejected_share(all_stats)
    held = [s.day.isoformat() for s in all_stats if s.held]
    context.log.info(f"loaded {len(days)} days, {sum(s.rows_loaded for s in all_stats)} rows"
                     + (f"; held back from analysis: {', '.join(held)}" if held else ""))
    yield dg.MaterializeResult()


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
    with only_transient_retries("loading the profiles snapshot"), duckdb.get_connection() as conn:
        ensure_schema(conn)
        with transaction(conn):
            conn.execute("delete from raw.user_profiles")
            if path is not None:
                conn.execute(named_statements("ingestion/user_profiles.sql")["replace_profiles"],
                             {"path": str(path)})
            (rows,) = conn.execute("select count(*) from raw.user_profiles").fetchall()[0]
    return dg.MaterializeResult(metadata={"rows": rows, "source": source, "source_found": path is not None})
