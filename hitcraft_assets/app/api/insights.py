"""GET /v1/insights (ranked findings, filtered and paginated) and GET /v1/insights/{insight_id} (one finding with
its evidence and its history)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from fastapi import APIRouter, Depends, Path, Query

from hitcraft_assets.app import queries
from hitcraft_assets.app.api.deps import (DEFAULT_PAGE, MAX_PAGE, PAGED_ERRORS, READ_ERRORS, TEXT, check_range,
                                          read_key, snapshot)
from hitcraft_assets.app.api.pagination import MAX_CURSOR_CHARS, PagedList
from hitcraft_assets.app.auth import KeyInfo
from hitcraft_assets.app.errors import ApiError
from hitcraft_assets.app.models import InsightDetail, InsightKind, InsightPage, InsightStatus
from hitcraft_assets.app.snapshot import Snapshot

router = APIRouter(tags=["insights"])
Sort = Literal["rank", "-impact", "as_of"]

INSIGHTS = PagedList(
    resource="insights", filters=queries.InsightFilters,
    key_names=lambda sort: queries.INSIGHT_SORT_KEYS[sort or "rank"],
    read=lambda snap, f, sort, after, limit: queries.insights_page(snap, f, sort or "rank", after, limit),
    digest=lambda snap, f, sort, upto: queries.insights_digest(snap, f, sort or "rank", upto),
)


@router.get("/v1/insights", response_model=InsightPage, responses=PAGED_ERRORS, summary="List insights")
def list_insights(
    key: KeyInfo = Depends(read_key),
    snap: Snapshot = Depends(snapshot),
    from_date: date | None = Query(None, alias="from", description="First as-of day (default: the latest as-of day)"),
    to_date: date | None = Query(None, alias="to", description="Last as-of day (default: the latest as-of day)"),
    kind: list[InsightKind] | None = Query(None, description="One or more kinds (repeat the parameter)"),
    status: list[InsightStatus] | None = Query(None, description="One or more statuses (repeat the parameter)"),
    metric: str | None = Query(None, max_length=200, pattern=TEXT, description="evidence.metric, exactly"),
    dimension: str | None = Query(None, max_length=100, pattern=TEXT, description="evidence.dimension ('all': totals)"),
    segment: str | None = Query(None, max_length=200, pattern=TEXT, description="evidence.segment"),
    max_rank: int | None = Query(None, ge=1, le=100_000, description="Only ranks 1..max_rank of each day"),
    q: str | None = Query(None, min_length=1, max_length=200, pattern=TEXT,
                          description="Text in the title or summary (case-insensitive)"),
    sort: Sort | None = Query(None, description="rank (default: rank, then newest day), -impact, or as_of "
                                                "(oldest day first, then rank)"),
    limit: int = Query(DEFAULT_PAGE, ge=1, le=MAX_PAGE),
    cursor: str | None = Query(None, max_length=MAX_CURSOR_CHARS, description="next_cursor of the previous page"),
) -> dict:
    """The day's ranked findings. Without `from`/`to`: the latest as-of day only; with `from` alone: from then to
    the latest day. The range is pinned when the first page is read (see the pagination notes)."""
    given = {"from": from_date, "to": to_date, "kind": sorted(kind or []), "status": sorted(status or []),
             "metric": metric, "dimension": dimension, "segment": segment, "max_rank": max_rank, "q": q,
             "sort": sort}

    def resolve() -> tuple[queries.InsightFilters, str]:
        check_range(from_date, to_date, max_days=None)
        latest = queries.latest_as_of(snap)
        first, last = from_date, to_date
        if first is None and last is None:
            first = last = latest
        elif last is None:
            last = latest if latest is not None and latest >= first else first
        return queries.InsightFilters(first, last, tuple(sorted(kind or [])), tuple(sorted(status or [])), metric,
                                      dimension, segment, max_rank, q), sort or "rank"

    return INSIGHTS.run(snap, given=given, resolve=resolve, cursor=cursor, limit=limit)


@router.get("/v1/insights/{insight_id}", response_model=InsightDetail, responses=READ_ERRORS,
            summary="One insight with its evidence and history")
def get_insight(
    key: KeyInfo = Depends(read_key),
    snap: Snapshot = Depends(snapshot),
    insight_id: str = Path(pattern=r"^[A-Za-z0-9_-]{1,64}$"),
) -> dict:
    """The insight's latest row (full evidence, recommendation, context) and its status and rank on each as-of day."""
    row = queries.insight(snap, insight_id)
    if row is None:
        raise ApiError(404, "INSIGHT_NOT_FOUND", f"no insight {insight_id!r} in the current snapshot")
    return row
