"""GET /v1/retention: first-time retention in rolling weeks by birth-week cohort."""

from __future__ import annotations

from datetime import date
from typing import Literal

from fastapi import APIRouter, Depends, Query

from hitcraft_assets.app import queries
from hitcraft_assets.app.api.deps import READ_ERRORS, check_range, read_key, snapshot
from hitcraft_assets.app.auth import KeyInfo
from hitcraft_assets.app.models import RetentionList
from hitcraft_assets.app.snapshot import Snapshot

router = APIRouter(tags=["retention"])


@router.get("/v1/retention", response_model=RetentionList, responses=READ_ERRORS, summary="Cohort retention")
def get_retention(
    key: KeyInfo = Depends(read_key),
    snap: Snapshot = Depends(snapshot),
    measure: Literal["on_or_after", "on"] = Query(
        "on_or_after", description="on_or_after (default, Mixpanel's): came back in week N or later; on: in week N"),
    from_date: date | None = Query(None, alias="from", description="First cohort week (its Monday)"),
    to_date: date | None = Query(None, alias="to", description="Last cohort week"),
) -> dict:
    """One row per birth week and rolling week since birth: cohort size, users retained and the rate; `complete`
    is false while the week's period is not over for every member of the cohort."""
    check_range(from_date, to_date, max_days=None)
    return {"items": queries.retention(snap, measure, from_date, to_date), "next_cursor": None, "measure": measure,
            "snapshot_id": snap.snapshot_id}
