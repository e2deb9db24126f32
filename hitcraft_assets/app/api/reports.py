"""GET /v1/reports: the email digests sent (the send ledger), newest period first; message bodies for admin keys."""

from __future__ import annotations

from datetime import date
from typing import Literal

from fastapi import APIRouter, Depends, Query

from hitcraft_assets.app import queries
from hitcraft_assets.app.api.deps import DEFAULT_PAGE, MAX_PAGE, PAGED_ERRORS, TEXT, check_range, read_key, snapshot
from hitcraft_assets.app.api.pagination import MAX_CURSOR_CHARS, PagedList
from hitcraft_assets.app.auth import KeyInfo
from hitcraft_assets.app.errors import ApiError
from hitcraft_assets.app.models import Cadence, ReportPage, SendStatus
from hitcraft_assets.app.snapshot import Snapshot

router = APIRouter(tags=["reports"])


def _paged(include_body: bool) -> PagedList:
    return PagedList(
        resource="reports", filters=queries.ReportFilters, key_names=lambda sort: queries.REPORT_KEY,
        read=lambda snap, f, sort, after, limit: queries.reports_page(snap, f, after, limit, include_body),
        digest=lambda snap, f, sort, upto: queries.reports_digest(snap, f, upto),
    )


@router.get("/v1/reports", response_model=ReportPage, responses=PAGED_ERRORS, summary="List email digests sent")
def list_reports(
    key: KeyInfo = Depends(read_key),
    snap: Snapshot = Depends(snapshot),
    profile: str | None = Query(None, max_length=100, pattern=TEXT, description="A report profile name"),
    cadence: Cadence | None = Query(None),
    status: list[SendStatus] | None = Query(None, description="Send statuses (repeat the parameter)"),
    recipient: str | None = Query(None, max_length=320, pattern=TEXT, description="An address (any case)"),
    from_date: date | None = Query(None, alias="from", description="First period start"),
    to_date: date | None = Query(None, alias="to", description="Last period start"),
    include: Literal["body"] | None = Query(None, description="body: add each message's subject, HTML and text "
                                                              "(admin keys only)"),
    limit: int = Query(DEFAULT_PAGE, ge=1, le=MAX_PAGE),
    cursor: str | None = Query(None, max_length=MAX_CURSOR_CHARS, description="next_cursor of the previous page"),
) -> dict:
    """One row per report profile, period and recipient: cadence, period, recipient, status, attempts and when it
    went out; `body` (subject, HTML, text) only with `include=body`, which needs an admin key."""
    if include == "body" and key.scope != "admin":
        raise ApiError(403, "FORBIDDEN", f"include=body needs a key with the admin scope; {key.name!r} has "
                                         f"{key.scope!r}")
    given = {"profile": profile, "cadence": cadence, "status": sorted(status or []), "recipient": recipient,
             "from": from_date, "to": to_date}

    def resolve() -> tuple[queries.ReportFilters, None]:
        check_range(from_date, to_date, max_days=None)
        return queries.ReportFilters(from_date, to_date, profile, cadence, tuple(sorted(status or [])),
                                     recipient), None

    return _paged(include == "body").run(snap, given=given, resolve=resolve, cursor=cursor, limit=limit)
