"""GET /v1/health: is there a snapshot, which one, how old, and up to which day (no key needed)."""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Depends

from hitcraft_assets.app.api.deps import error_responses, snapshot
from hitcraft_assets.app.models import Health
from hitcraft_assets.app.snapshot import Snapshot

router = APIRouter(tags=["health"])


@router.get("/v1/health", response_model=Health, responses=error_responses(503), summary="Snapshot freshness")
def health(snap: Snapshot = Depends(snapshot)) -> dict:
    """The serving snapshot the API answers from: its id, when the pipeline built it and how many seconds ago,
    the newest day it holds, and its tables' row counts. 503 `NO_SNAPSHOT` until the pipeline has published one."""
    built = snap.built_at
    age = (datetime.now(timezone.utc) - built).total_seconds() if built else None
    return {"status": "ok", "snapshot_id": snap.snapshot_id, "version": snap.meta.get("version"), "built_at": built,
            "age_seconds": round(age, 3) if age is not None else None, "last_day": snap.last_day,
            "opened_at": snap.opened_at, "tables": snap.meta.get("tables") or {}}
