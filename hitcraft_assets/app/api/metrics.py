"""GET /v1/metrics (which metrics, dimensions and segments there are) and GET /v1/metrics/{metric} (a metric's daily
values with the anomaly band on flagged days and its change points)."""

from __future__ import annotations

from datetime import date, timedelta

from fastapi import APIRouter, Depends, Path, Query

from hitcraft_assets.app import queries
from hitcraft_assets.app.api.deps import READ_ERRORS, TEXT, check_range, read_key, snapshot
from hitcraft_assets.app.auth import KeyInfo
from hitcraft_assets.app.errors import ApiError
from hitcraft_assets.app.models import MetricCatalog, MetricSeries
from hitcraft_assets.app.snapshot import Snapshot

router = APIRouter(tags=["metrics"])
DEFAULT_DAYS = 90


@router.get("/v1/metrics", response_model=MetricCatalog, responses=READ_ERRORS, summary="List metrics and segments")
def list_metrics(key: KeyInfo = Depends(read_key), snap: Snapshot = Depends(snapshot)) -> dict:
    """Every metric with the days it covers (daily metrics, and funnel step conversions named
    `funnel:<funnel>:step<k>`), and every dimension with its segments."""
    catalog = queries.metric_catalog(snap)
    return {"items": catalog["metrics"], "dimensions": catalog["dimensions"], "next_cursor": None,
            "snapshot_id": snap.snapshot_id}


def _days_before(day: date, days: int) -> date:
    try:
        return day - timedelta(days=days)
    except OverflowError:
        return date.min


@router.get("/v1/metrics/{metric:path}", response_model=MetricSeries, responses=READ_ERRORS,
            summary="A metric's daily series with anomaly flags and change points")
def get_metric(
    key: KeyInfo = Depends(read_key),
    snap: Snapshot = Depends(snapshot),
    metric: str = Path(max_length=300, description="A name from GET /v1/metrics, e.g. `dau`, "
                                                   "`event_count:Sign Up`, `funnel:Onboarding:step2`"),
    dimension: str = Query("all", max_length=100, pattern=TEXT,
                           description="'all' (default: the totals) or a dimension from GET /v1/metrics"),
    segment: str | None = Query(None, max_length=200, pattern=TEXT,
                                description="One segment of the dimension (default: every segment of it)"),
    from_date: date | None = Query(None, alias="from", description=f"First day (default: {DEFAULT_DAYS} days "
                                                                   f"before `to`)"),
    to_date: date | None = Query(None, alias="to", description="Last day (default: the metric's last day)"),
) -> dict:
    """Values per day in [from, to] (at most 400 days), one series per segment of the dimension, each point with
    the anomaly flagged that day (expected value, band, score, direction) or null, and the series' change points
    in the range and latest trend."""
    source = queries.metric_source(snap, metric)
    if source is None:
        raise ApiError(404, "METRIC_NOT_FOUND", f"no metric {metric!r} in the current snapshot (GET /v1/metrics "
                                                f"lists them)")
    check_range(from_date, to_date)
    last = to_date or queries.metric_last_date(snap, metric, source) or snap.last_day or date.today()
    first = from_date or _days_before(last, DEFAULT_DAYS - 1)
    if to_date is None and first > last:
        last = first
    check_range(first, last)
    series = queries.metric_series(snap, metric, source, first, last, dimension,
                                   "all" if dimension == "all" else segment)
    return {"metric": metric, "source": source, "from_date": first, "to_date": last, "series": series,
            "snapshot_id": snap.snapshot_id}


def _days_before(day: date, days: int) -> date:
    try:
        return day - timedelta(days=days)
    except OverflowError:
        return date.min
