"""Analysis assets: thin wrappers that read the config, call the SQL-backed functions of this package for
each partition, and report metadata. The logic lives in identity.py, sessions.py, metrics.py, funnels.py,
retention.py and segments.py (SQL in sql/analysis/)."""

from datetime import date

import dagster as dg

from hitcraft_assets.analysis import inputs
from hitcraft_assets.analysis.days import held_local_days, scan_days
from hitcraft_assets.analysis.funnels import compute_funnels
from hitcraft_assets.analysis.identity import rebuild_identity
from hitcraft_assets.analysis.metrics import compute_daily_metrics
from hitcraft_assets.analysis.retention import compute_retention
from hitcraft_assets.analysis.segments import compute_segments
from hitcraft_assets.analysis.sessions import compute_sessions
from hitcraft_assets.config import load_config
from hitcraft_assets.partitions import ANALYSIS_DAILY, raw_days_of_local_day
from hitcraft_assets.progress import report_progress
from hitcraft_assets.warehouse import WarehouseResource

GROUP = "analysis"
OWNERS = ["team:product-analytics"]
KINDS = {"duckdb", "sql"}
DAILY_KW = dict(
    partitions_def=ANALYSIS_DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb",
    group_name=GROUP,
    kinds=KINDS,
    owners=OWNERS,
    tags={"stage": "analysis"},
)


def held_metadata(reason: str) -> dict:
    """What a held day's partition shows: it was not computed, and why (its previous rows, if any, stay)."""
    return {"held": True, "held_because": reason}


def _per_day(context: dg.AssetExecutionContext, duckdb: WarehouseResource, name: str, compute,
             digest_fn=None) -> dg.MaterializeResult:
    """Run `compute(conn, day, config)` for every partition of the step, one transaction each. A day that
    overlaps a raw day held by the quality gate is not computed: its previous rows stay as they were.

    `digest_fn(conn, day_inputs, day, config)`: the digest of what a day reads (inputs.py); a day whose
    digest equals the one recorded with its last computation, with its rows all still there, is left as it
    is (metadata `unchanged: true`, and that computation's figures)."""
    config = load_config()
    days = [date.fromisoformat(k) for k in context.partition_keys]
    with duckdb.get_connection() as conn:
        held = held_local_days(conn, days, config)
        if digest_fn is not None:
            spans = [scan_days(d, config) for d in days]
            day_inputs = inputs.DayInputs(conn, min(a for a, _ in spans), max(b for _, b in spans))
            logs = inputs.logged(conn, name, days)
    unchanged = 0
    for i, day in enumerate(days, start=1):
        if day in held:
            context.add_asset_metadata(held_metadata(held[day]), partition_key=day.isoformat())
            context.log.warning(f"{name} {day}: not computed, {held[day]}")
            report_progress(name, i, len(days), day.isoformat(), {"held": 1})
            continue
        with duckdb.get_connection() as conn:
            digest = digest_fn(conn, day_inputs, day, config) if digest_fn is not None else None
            if digest is not None and logs.get(day, (None, None))[0] == digest:
                unchanged += 1
                context.add_asset_metadata(dict(logs[day][1]) | {
                    "timezone": config.timezone, "unchanged": True,
                    "note": "the same inputs as its last computation (raw days, identity, config, code): left as it is"},
                    partition_key=day.isoformat())
                report_progress(name, i, len(days), day.isoformat(), {"unchanged": 1})
                continue
            stats = compute(conn, day, config)
            if digest_fn is not None:
                inputs.record(conn, name, day, digest, stats)
        numeric = {k: v for k, v in stats.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        context.add_asset_metadata(dict(stats) | {"timezone": config.timezone,
                                                  **({"unchanged": False} if digest_fn else {})},
                                   partition_key=day.isoformat())
        report_progress(name, i, len(days), day.isoformat(), numeric)
    if unchanged:
        context.log.info(f"{name}: {unchanged} of {len(days)} days had the same inputs as their last computation: "
                         "left as they are")
    return dg.MaterializeResult()


def _sessions_digest(conn, day_inputs: inputs.DayInputs, day: date, config) -> str | None:
    return inputs.digest("sessions", day, config, day_inputs.raw_part(*scan_days(day, config)))


def _metrics_digest(conn, day_inputs: inputs.DayInputs, day: date, config) -> str | None:
    """Its own raw days, its sessions, and the user-days of every earlier day (WAU, MAU, new users)."""
    return inputs.digest("daily_metrics", day, config, day_inputs.raw_part(*scan_days(day, config)),
                         inputs.digest_of(conn, "sessions", day), inputs.digests_before(conn, "daily_metrics", day))


@dg.asset(deps=["raw_events"], pool="duckdb", group_name=GROUP, kinds=KINDS, owners=OWNERS,
          tags={"stage": "analysis"})
def identity_map(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    """Mixpanel's ID merge replayed locally: which ids are one user, for Simplified ID Merge (a $device_id
    belongs to its first $user_id) or Original ID Merge ($identify, $create_alias and $merge events join ids).

    Grain: Simplified, one row per device (`core.identity_map`); Original, one row per edge
    (`core.identity_edges`) and per id (`core.identity_clusters`, its cluster's `user_key`). The mode is the
    config's `identity`, or detected from the data when unset. The view `core.identified_events` gives each
    event its `user_key`. Kept current as days arrive: only the days loaded since the last run are read
    (each day's device rows and edges are kept, `core.identity_device_days`, `core.identity_days`), the
    simplified map rows of the devices they touch are recomputed, and original clusters are updated
    incrementally when the new edges come last, else rebuilt from the stored edges; so a merge seen today
    re-attributes earlier events, as Mixpanel's retroactive merge does, without reading every event.
    """
    config = load_config()
    with duckdb.get_connection() as conn:
        stats = rebuild_identity(conn, config.identity)
    context.log.info(f"identity: {stats['identity']}; {stats['identity_update']}")
    return dg.MaterializeResult(metadata=stats)


@dg.asset(deps=[dg.AssetDep("raw_events", partition_mapping=raw_days_of_local_day()), identity_map], **DAILY_KW)
def sessions(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    """Sessions as Mixpanel counts them: a user's events with gaps under the inactivity timeout (config,
    default 30 minutes), reset at midnight of the reporting timezone.

    Grain: one row per session (`core.sessions`), partitioned by the local day it lies in; start, end,
    duration, event count, first event and the first event's platform, country, channel and segments.
    """
    return _per_day(context, duckdb, "sessions", compute_sessions, _sessions_digest)


@dg.asset(deps=[dg.AssetDep("raw_events", partition_mapping=raw_days_of_local_day()), sessions], **DAILY_KW)
def daily_metrics(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    """Daily product metrics in long format, every one for all users and for every segment of every
    configured dimension, so that each metric x segment is a time series for detection.

    Grain: one row per (day, metric, dimension, segment) in `analytics.daily_metrics`: DAU, WAU, MAU,
    stickiness, new users, sessions, session duration (median, mean), events per session, and the count and
    unique users of every event name. Also keeps `core.user_days` (one row per user per active day).
    """
    return _per_day(context, duckdb, "daily_metrics", compute_daily_metrics, _metrics_digest)


@dg.asset(deps=[dg.AssetDep("raw_events", partition_mapping=raw_days_of_local_day(extra_days_after=load_config().max_window_days)),
                identity_map], **DAILY_KW)
def funnels(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    """Every configured funnel with Mixpanel's rules, by entry date: ordered steps, unique users, a window
    from step 1 (default 7 days), a 2-second grace period, exclusion steps and hold-property-constant.

    Grain: one row per (funnel, entry day, dimension, segment, step) in `analytics.funnel_steps`, with users,
    conversion from the previous step and from the start, and median and mean time to convert. An entry
    day keeps converting until its window closes, so the daily run re-materializes those days.
    """
    return _per_day(context, duckdb, "funnels", compute_funnels)


@dg.asset(deps=["raw_events", identity_map], pool="duckdb", group_name=GROUP, kinds=KINDS, owners=OWNERS,
          tags={"stage": "analysis"})
def retention(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    """Weekly cohort retention of first-seen users: users born (config `retention.birth_event`) in a week,
    and the share who came back (`return_event`) N weeks later, both "on or after" (Mixpanel's default) and
    "on" week N.

    Grain: one row per (cohort week, weeks since, measure) in `analytics.retention`; buckets whose period
    is not over yet are flagged incomplete. Each UTC day's events are read once into a summary
    (`core.retention_id_days`), again only when the day is reloaded (metadata `days_summarized`).
    """
    with duckdb.get_connection() as conn:
        stats = compute_retention(conn, load_config())
    report_progress("retention", 1, 1, "all cohorts", {k: v for k, v in stats.items() if isinstance(v, (int, float))})
    return dg.MaterializeResult(metadata=stats)


@dg.asset(deps=[funnels, sessions, daily_metrics, retention], **DAILY_KW)
def segments(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    """Each segment against the rest on every rate and mean metric of the day (funnel step conversion,
    session duration, week-1 retention, events per user), with a fitting test, an effect size, a p-value
    and a Benjamini-Hochberg q-value across all comparisons of the day. Tiny segments produce no rows.

    Grain: one row per (day, metric, dimension, segment) in `analytics.segment_comparisons`.
    """
    return _per_day(context, duckdb, "segments", compute_segments)


analysis_assets = [identity_map, sessions, daily_metrics, funnels, retention, segments]
