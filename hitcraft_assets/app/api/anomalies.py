"""GET /v1/anomalies: the points the detector flagged, newest first, filtered and paginated."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Depends, Query

from hitcraft_assets.app import queries
from hitcraft_assets.app.api.deps import DEFAULT_PAGE, MAX_PAGE, PAGED_ERRORS, TEXT, check_range, read_key, snapshot
from hitcraft_assets.app.api.pagination import MAX_CURSOR_CHARS, PagedList
from hitcraft_assets.app.auth import KeyInfo
from hitcraft_assets.app.models import AnomalyPage, AnomalyStatus, Direction
from hitcraft_assets.app.snapshot import Snapshot

router = APIRouter(tags=["anomalies"])

ANOMALIES = PagedList(
    resource="anomalies", filters=queries.AnomalyFilters, key_names=lambda sort: queries.ANOMALY_KEY,
    read=lambda snap, f, sort, after, limit: queries.anomalies_page(snap, f, after, limit),
    digest=lambda snap, f, sort, upto: queries.anomalies_digest(snap, f, upto),
)


@router.get("/v1/anomalies", response_model=AnomalyPage, responses=PAGED_ERRORS, summary="List anomalies")
def list_anomalies(
    key: KeyInfo = Depends(read_key),
    snap: Snapshot = Depends(snapshot),
    from_date: date | None = Query(None, alias="from", description="First day (default: the first there is)"),
    to_date: date | None = Query(None, alias="to", description="Last day (default: the latest, pinned on page 1)"),
    metric: str | None = Query(None, max_length=300, pattern=TEXT),
    dimension: str | None = Query(None, max_length=100, pattern=TEXT, description="'all' for totals"),
    segment: str | None = Query(None, max_length=200, pattern=TEXT),
    status: list[AnomalyStatus] | None = Query(None, description="new: a new alert; continuing: a later day of "
                                                                 "the same episode (repeat the parameter)"),
    direction: Direction | None = Query(None),
    limit: int = Query(DEFAULT_PAGE, ge=1, le=MAX_PAGE),
    cursor: str | None = Query(None, max_length=MAX_CURSOR_CHARS, description="next_cursor of the previous page"),
) -> dict:
    """Flagged points (observed value, expected value and band, robust score, direction, q-value, root cause),
    newest day first, then by metric, dimension and segment."""
    given = {"from": from_date, "to": to_date, "metric": metric, "dimension": dimension, "segment": segment,
             "status": sorted(status or []), "direction": direction}

    def resolve() -> tuple[queries.AnomalyFilters, None]:
        check_range(from_date, to_date, max_days=None)
        last = to_date if to_date is not None else queries.latest_anomaly_day(snap)
        return queries.AnomalyFilters(from_date, last, metric, dimension, segment, tuple(sorted(status or [])),
                                      direction), None

    return ANOMALIES.run(snap, given=given, resolve=resolve, cursor=cursor, limit=limit)
