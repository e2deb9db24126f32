"""GET /v1/funnels (the configured funnels and their steps) and GET /v1/funnels/{name} (a funnel's steps by entry day
or over a range, with conversion and time to convert, optionally broken down by a dimension)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

from fastapi import APIRouter, Depends, Path, Query

from hitcraft_assets.app import queries
from hitcraft_assets.app.api.deps import READ_ERRORS, TEXT, check_range, read_key, snapshot
from hitcraft_assets.app.auth import KeyInfo
from hitcraft_assets.app.errors import ApiError
from hitcraft_assets.app.models import FunnelList, FunnelReport
from hitcraft_assets.app.snapshot import Snapshot

router = APIRouter(tags=["funnels"])
DEFAULT_DAYS = 30


@router.get("/v1/funnels", response_model=FunnelList, responses=READ_ERRORS, summary="List funnels")
def list_funnels(key: KeyInfo = Depends(read_key), snap: Snapshot = Depends(snapshot)) -> dict:
    """The funnels of the pipeline's config with their steps and conversion window, and the entry days the
    snapshot has for each."""
    return {"items": queries.funnels(snap), "next_cursor": None, "snapshot_id": snap.snapshot_id}


@router.get("/v1/funnels/{name:path}", response_model=FunnelReport, responses=READ_ERRORS,
            summary="A funnel's steps by entry day or over a range")
def get_funnel(
    key: KeyInfo = Depends(read_key),
    snap: Snapshot = Depends(snapshot),
    name: str = Path(max_length=200, description="A funnel name from GET /v1/funnels"),
    from_date: date | None = Query(None, alias="from", description=f"First entry day (default: {DEFAULT_DAYS} days "
                                                                   f"before `to`)"),
    to_date: date | None = Query(None, alias="to", description="Last entry day (default: the funnel's last one)"),
    dimension: str = Query("all", max_length=100, pattern=TEXT,
                           description="'all' (default: totals) or a dimension to break the funnel down by"),
    by: Literal["day", "range"] = Query("range", description="day: one group per entry day; range (default): "
                                                              "summed over the range"),
) -> dict:
    """Users at each step of the users who entered in [from, to] (at most 400 days), conversion from the previous
    step and from the start, and the median seconds from the previous step. Over a range, conversions are ratios
    of the summed users, and the median time is the users-weighted median of the daily medians."""
    funnel = next((f for f in queries.funnels(snap) if f["name"] == name), None)
    if funnel is None:
        raise ApiError(404, "FUNNEL_NOT_FOUND", f"no funnel {name!r} (GET /v1/funnels lists them)")
    check_range(from_date, to_date)
    last = to_date or queries.funnel_last_date(snap, name) or snap.last_day or date.today()
    first = from_date
    if first is None:
        try:
            first = last - timedelta(days=DEFAULT_DAYS - 1)
        except OverflowError:
            first = date.min
    if to_date is None and first > last:
        last = first
    check_range(first, last)
    return {"name": name, "steps": funnel["steps"], "window_days": funnel["window_days"], "from_date": first,
            "to_date": last, "by": by, "dimension": dimension,
            "groups": queries.funnel_report(snap, name, first, last, dimension, by), "snapshot_id": snap.snapshot_id}
