"""What every route shares: the snapshot a request reads, the key it needs, the errors it documents, and the
checks of its date parameters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

from fastapi import Depends, Request

from hitcraft_assets.app.auth import AUTH_RESPONSES, KeyInfo, require_scope
from hitcraft_assets.app.errors import ApiError
from hitcraft_assets.app.models import ERROR_MODELS
from hitcraft_assets.app.queries import days_between
from hitcraft_assets.app.snapshot import Snapshot, SnapshotStore

MAX_PAGE = 200
DEFAULT_PAGE = 50
MAX_RANGE_DAYS = 400
TEXT = r"^[^\x00-\x1f]*$"   # free-text filters: no control characters

# one object per scope, so that tests (and the dashboard) can override it with app.dependency_overrides
require_read = require_scope("read")

_DESCRIPTIONS = {
    400: "A malformed or foreign `cursor` (`INVALID_CURSOR`)",
    404: "No such resource in the current snapshot",
    409: "A new snapshot changed rows this listing had already returned (`SNAPSHOT_CHANGED`): start again",
    422: "A parameter is malformed or out of range (`VALIDATION_ERROR`; the message names it)",
    503: "No serving snapshot has been published yet (`NO_SNAPSHOT`)",
}


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """`responses=` for a route: each status with its error schema and description."""
    out: dict[int | str, dict] = {}
    for status in statuses:
        described = AUTH_RESPONSES.get(status, {})
        out[status] = {"model": ERROR_MODELS[status],
                       "description": described.get("description") or _DESCRIPTIONS[status]}
    return out


READ_ERRORS = error_responses(400, 401, 403, 404, 422, 429, 503)
PAGED_ERRORS = error_responses(400, 401, 403, 404, 409, 422, 429, 503)


def store(request: Request) -> SnapshotStore:
    return request.app.state.snapshots


async def snapshot(request: Request) -> AsyncIterator[Snapshot]:
    """The snapshot current when the request started, held until it ends. Async: a stat of the path, no
    thread hop (opening a newly published snapshot, once per publish, takes a few milliseconds)."""
    with store(request).use() as snap:
        yield snap


async def read_key(key: KeyInfo = Depends(require_read)) -> KeyInfo:
    return key


def check_range(from_date: date | None, to_date: date | None, *, max_days: int | None = MAX_RANGE_DAYS) -> None:
    if from_date is not None and to_date is not None:
        if from_date > to_date:
            raise ApiError(422, "VALIDATION_ERROR", f"query parameter 'from' ({from_date}) is after 'to' ({to_date})")
        if max_days is not None and days_between(from_date, to_date) > max_days:
            raise ApiError(422, "VALIDATION_ERROR",
                           f"query parameters 'from' and 'to' span {days_between(from_date, to_date)} days; at most "
                           f"{max_days} at once")
