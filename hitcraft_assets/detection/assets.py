"""Detection assets: anomalies and trends of every metric x segment series, each "as of" its day."""

from datetime import date, timedelta

import dagster as dg

from hitcraft_assets.analysis.assets import daily_metrics, funnels, held_metadata
from hitcraft_assets.analysis.days import held_local_days
from hitcraft_assets.config import load_config
from hitcraft_assets.detection import scan, walks
from hitcraft_assets.lazy import lazy
from hitcraft_assets.partitions import DAILY
from hitcraft_assets.progress import report_progress
from hitcraft_assets.warehouse import WarehouseResource, ensure_schema, existing_tables, named_statements, transaction

pa = lazy("pyarrow")
pl = lazy("polars")

ANCHOR_DAYS = 28                 # the grid of anomaly-scan starts (see anchor)
ANCHOR_EPOCH = date(2000, 1, 3)  # a Monday
KW = dict(
    partitions_def=DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb",
    group_name="detection",
    kinds={"duckdb", "python"},
    owners=["team:product-analytics"],
    tags={"stage": "detection"},
    deps=[daily_metrics, funnels],
)
ANOMALY_COLUMNS = ["metric_date", "metric", "dimension", "segment", "observed", "expected", "lower", "upper",
                   "score", "direction", "p_value", "q_value", "root_cause", "status", "episode_start",
                   "window_days"]
TREND_COLUMNS = ["as_of_date", "metric", "dimension", "segment", "n", "slope", "tau", "p_value", "q_value",
                 "trend", "trend_change", "current_7d", "pct_change_7d", "current_28d", "pct_change_28d", "change_points",
                 "last_change_date", "last_change_shift", "last_change_relative", "root_cause"]


def load_series(conn, start: date, last_day: date) -> tuple[list[scan.Series], list[date]]:
    """Every series from `start` to `last_day`, on one calendar, with the first day of data of the
    trailing-window series (fixed by the warehouse, not by the range loaded)."""
    statements = named_statements("detection/series.sql")
    span = (last_day - start).days + 1
    params = {"from_day": start.isoformat(), "to_day": last_day.isoformat()}
    frames = [conn.sql(statements["metric_series"], params=params | {"per_session": list(scan.SKEWED)}).pl()]
    if "analytics.funnel_steps" in existing_tables(conn):
        frames.append(conn.sql(statements["funnel_series"], params=params).pl())
    frames = [f.with_columns(pl.col("value").cast(pl.Float64), pl.col("volume").cast(pl.Float64)) for f in frames
              if f.height]
    frame = pl.concat(frames) if frames else pl.DataFrame(
        schema={"metric": pl.String, "dimension": pl.String, "segment": pl.String, "metric_date": pl.Date,
                "value": pl.Float64, "volume": pl.Float64})
    first_days = {(m, d, s): f for m, d, s, f in conn.execute(statements["first_days"]).fetchall()}
    series = scan.to_series(frame, last_day, days=span, first_days=first_days)
    calendar = [start + timedelta(days=i) for i in range(span)]
    return series, calendar


def anchor(day: date) -> date:
    """The first day of the series a day's anomaly scan reads: at least HISTORY_DAYS back, on a grid of
    ANCHOR_DAYS fixed by the calendar. The detector carries state along a series (regimes, episodes), so
    its judgement of a day depends on where the series starts; a start fixed by the day alone (not by the
    range a run loads) gives a backfill the same judgement as that day's own run, at a bounded cost."""
    return day - timedelta(days=scan.HISTORY_DAYS - 1 + (day - ANCHOR_EPOCH).days % ANCHOR_DAYS)


def _write(conn, sql_file: str, table: str, columns: list[str], day: date, rows: list[dict], kind: str,
           tested: int, flagged: int, totals: int | None = None, digest: str | None = None) -> None:
    statements = named_statements(sql_file)
    with transaction(conn):
        conn.execute(statements["delete_day"], {"day": day.isoformat()})
        if rows:
            batch = pa.Table.from_pylist([{c: r[c] for c in columns} for r in rows])  # noqa: F841 (read by SQL)
            conn.execute(f"insert into {table} ({', '.join(columns)}) select {', '.join(columns)} from batch")
        log = named_statements("detection/anomalies.sql")
        conn.execute(log["delete_log"], {"day": day.isoformat(), "kind": kind})
        conn.execute(log["insert_log"], {"day": day.isoformat(), "kind": kind, "tested": tested, "flagged": flagged,
                                         "totals": totals, "digest": digest})


def _skip_held(context, name: str, day: date, reason: str, i: int, n: int) -> None:
    """A day overlapping a raw day held by the quality gate is not judged (its previous rows stay)."""
    context.add_asset_metadata(held_metadata(reason), partition_key=day.isoformat())
    context.log.warning(f"{name} {day}: not computed, {reason}")
    report_progress(name, i, n, day.isoformat(), {"held": 1})


def _prepare(conn) -> None:
    ensure_schema(conn)
    conn.execute(named_statements("detection/anomalies.sql")["schema"])
    conn.execute(named_statements("detection/trends.sql")["schema"])
    walks.ensure_walks(conn)


@dg.asset(**KW)
def anomalies(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    """Anomalies of every metric x segment series and every funnel step's conversion, as of each day.

    Grain: one row per series flagged on a day (`analytics.anomalies`): observed, expected, band, robust
    score and direction against a weekly baseline with a robust scale; q-value across every series tested
    that day (Benjamini-Hochberg); for totals, the segments that explain the change (root cause). A new
    alert has status `new`; the following days that stay beyond the band are `continuing` rows of the same
    episode (not new alerts). Days whose export file was missing are left out of every series.

    Each series is walked from its scan start (`anchor`); where the walk stopped is stored
    (`analytics.anomaly_walks`), and the next run goes on from there for every series whose first days did
    not change (metadata `series_walks_resumed`): the same rows as a walk from the start, at the cost of the
    new days only.
    """
    days = sorted(date.fromisoformat(k) for k in context.partition_keys)
    with duckdb.get_connection() as conn:
        _prepare(conn)
        held = held_local_days(conn, days, load_config())
    groups: dict[date, list[date]] = {}
    for day in days:
        groups.setdefault(anchor(day), []).append(day)
    tested_total = flagged_total = resumed_total = walked_total = 0
    i = 0
    for start, group in groups.items():
        with duckdb.get_connection() as conn:
            series, calendar = load_series(conn, start, group[-1])
            # alerts of the days before the group, for the episodes they began
            alerted_q = {((m, d, s), day): q for m, d, s, day, q in conn.execute(
                "select metric, dimension, segment, metric_date, q_value from analytics.anomalies "
                "where status = 'new' and metric_date between ? and ?",
                [calendar[0], group[0] - timedelta(days=1)]).fetchall()}
            sizes = scan.segment_sizes(series)
            resume = walks.resumable(conn, series, calendar, group[0], sizes)
        assessed = scan.assess_all(series, resume, sizes)
        with duckdb.get_connection() as conn:
            walks.save(conn, series, calendar, assessed.states, sizes)
        resumed_total += assessed.resumed
        walked_total += len(assessed.points)
        for day in group:
            i += 1
            if day in held:
                _skip_held(context, "anomalies", day, held[day], i, len(days))
                continue
            rows, tested = scan.anomalies_for_day(day, calendar, assessed, alerted_q)
            totals = sum(k[1] == "all" for k in scan.tested_keys(assessed, calendar.index(day)))
            new = [r for r in rows if r["status"] == "new"]
            with duckdb.get_connection() as conn:
                _write(conn, "detection/anomalies.sql", "analytics.anomalies", ANOMALY_COLUMNS, day, rows,
                       "anomalies", tested, len(new), totals)
            tested_total += tested
            flagged_total += len(new)
            top = sorted(new, key=lambda r: -abs(r["score"] or 0))[:5]
            meta = {"series_tested": tested, "series_flagged": len(new),
                    "series_continuing": len(rows) - len(new),
                    # series whose walk went on from the state an earlier run stored, not from the scan start
                    "series_walks_resumed": assessed.resumed,
                    "top": dg.MetadataValue.md("\n".join(
                        f"- {r['metric']} [{r['dimension']}={r['segment']}] {r['direction']} "
                        f"{r['observed']:.4g} vs {r['expected']:.4g} (z {r['score']:.1f})" for r in top) or "none")}
            context.add_asset_metadata(meta, partition_key=day.isoformat())
            report_progress("anomalies", i, len(days), day.isoformat(),
                            {"tested": tested, "flagged": len(new), "continuing": len(rows) - len(new)})
    context.log.info(f"anomalies: {tested_total} series tested, {flagged_total} flagged over {len(days)} days; "
                     f"{resumed_total} of {walked_total} series walks resumed from an earlier run's state")
    return dg.MaterializeResult()


def _trend_logs(conn, days: list[date]) -> dict[date, tuple[int, int, str]]:
    """day -> (series tested, significant, input digest) of each day's last trends run whose rows are all
    still there (rows deleted by hand make the day run again)."""
    rows = conn.execute(
        "select l.as_of_date, l.series_tested, l.series_flagged, l.input_digest from analytics.detection_log l "
        "where l.kind = 'trends' and l.input_digest is not null and l.as_of_date between ? and ? and "
        "l.series_tested = (select count(*) from analytics.trends t where t.as_of_date = l.as_of_date)",
        [days[0], days[-1]]).fetchall()
    return {day: (int(tested), int(flagged), digest) for day, tested, flagged, digest in rows}


@dg.asset(**KW)
def trends(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    """Trends of every metric x segment series, as of each day: Mann-Kendall with Sen's slope over the
    trailing 28 days (Hamed-Rao correction for autocorrelation), change over 7 and 28 days against the
    prior window, and change points (PELT, penalty k·sigma²·log n with a robust sigma) of the trailing
    90 days with the date and size of each level shift.

    Grain: one row per series and day (`analytics.trends`); q-values across the day's series. A day whose
    inputs (every series over the 120 days up to it, and the detectors' code) are those of its last run is
    left as it is (metadata `unchanged`): the daily lookback recomputes 8 days, most of them unchanged.
    """
    days = sorted(date.fromisoformat(k) for k in context.partition_keys)
    with duckdb.get_connection() as conn:
        _prepare(conn)
        series, _ = load_series(conn, days[0] - timedelta(days=scan.HISTORY_DAYS - 1), days[-1])
        held = held_local_days(conn, days, load_config())
        logs = _trend_logs(conn, days)
    sizes = scan.segment_sizes(series)
    unchanged = 0
    for i, day in enumerate(days, start=1):
        if day in held:
            _skip_held(context, "trends", day, held[day], i, len(days))
            continue
        digest = scan.trend_inputs_digest(day, series)
        if digest is not None and logs.get(day, (0, 0, None))[2] == digest:
            tested, significant, _ = logs[day]
            unchanged += 1
            context.add_asset_metadata({"series_tested": tested, "significant_trends": significant,
                                        "unchanged": True,
                                        "note": "the same inputs as its last run (series, history and code): "
                                                "left as it is"}, partition_key=day.isoformat())
            report_progress("trends", i, len(days), day.isoformat(), {"tested": tested, "unchanged": 1})
            continue
        rows = scan.trends_for_day(day, series, sizes)
        significant = sum(1 for r in rows if r["q_value"] is not None and r["q_value"] <= scan.FDR_ALPHA)
        with duckdb.get_connection() as conn:
            _write(conn, "detection/trends.sql", "analytics.trends", TREND_COLUMNS, day, rows, "trends",
                   len(rows), significant, sum(r["dimension"] == "all" for r in rows), digest)
        with_cps = sum(1 for r in rows if r["last_change_date"] is not None)
        context.add_asset_metadata({"series_tested": len(rows), "significant_trends": significant,
                                    "series_with_change_points": with_cps, "unchanged": False},
                                   partition_key=day.isoformat())
        report_progress("trends", i, len(days), day.isoformat(),
                        {"tested": len(rows), "significant": significant, "change_points": with_cps})
    if unchanged:
        context.log.info(f"trends: {unchanged} of {len(days)} days had the same inputs as their last run: left as they are")
    return dg.MaterializeResult()


detection_assets = [anomalies, trends]
