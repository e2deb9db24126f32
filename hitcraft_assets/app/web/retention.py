"""The retention page (`/retention`): the cohort x week heatmap of first-time retention (a row per birth week, a
column per rolling week since first seen, the rate as the cell's colour and its label), with the toggle between
the two measures the pipeline computes (`measure=on_or_after`, Mixpanel's default: came back in week N or later;
`measure=on`: came back in week N), and the same numbers as a table.

A bucket whose week is not over for every member of its cohort (`complete` false) is still filling up: it has an
asterisk and a dashed outline, and the table says "incomplete". The newest `MAX_COHORTS` cohorts are shown.
Numbers are queries.retention's, as `GET /v1/retention` gives them.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from hitcraft_assets.app import queries
from hitcraft_assets.app.auth import KeyInfo
from hitcraft_assets.app.snapshot import Snapshot
from hitcraft_assets.app.web import specs
from hitcraft_assets.app.web.metrics import FORMATTERS
from hitcraft_assets.app.web.render import page, page_snapshot
from hitcraft_assets.app.web.session import require_user

router = APIRouter(include_in_schema=False)

MEASURES = {"on_or_after": ("On or after week N", "came back in week N or any later week (Mixpanel's default)"),
            "on": ("In week N", "came back during week N itself")}
DEFAULT_MEASURE = "on_or_after"
MAX_COHORTS = 26


def _summary(rows: list[dict], measure: str) -> str:
    if not rows:
        return "No cohorts."
    cohorts: dict = {}
    for r in rows:
        cohorts.setdefault(r["cohort_week"], []).append(r)
    parts = [f"Retention {MEASURES[measure][0].lower()}, {len(cohorts)} weekly cohorts:"]
    for week, cells in cohorts.items():
        values = ", ".join(f"week {c['weeks_since']} {specs.fmt_pct(c['retention_rate'], 0)}"
                           f"{'' if c['complete'] else ' (incomplete)'}" for c in cells)
        parts.append(f"cohort of {specs.fmt_day(week)} ({specs.fmt_int(cells[0]['cohort_size'])} users): {values}.")
    return " ".join(parts)


@router.get("/retention", response_class=HTMLResponse)
def retention_page(request: Request, user: KeyInfo = Depends(require_user),
                   snap: Snapshot | None = Depends(page_snapshot)) -> HTMLResponse:
    asked = request.query_params.get("measure") or DEFAULT_MEASURE
    errors = []
    measure = asked if asked in MEASURES else DEFAULT_MEASURE
    if asked not in MEASURES:
        errors.append(f"Unknown measure {asked[:40]!r}: showing “{MEASURES[measure][0]}”.")
    context: dict = {"has_snapshot": snap is not None, "measure": measure, "measures": MEASURES, "errors": errors,
                     "rows": [], **FORMATTERS}
    if snap is not None:
        rows = queries.retention(snap, measure)
        weeks = sorted({r["cohort_week"] for r in rows})
        shown = set(weeks[-MAX_COHORTS:])
        rows = [r for r in rows if r["cohort_week"] in shown]
        context.update(rows=rows, dropped=len(weeks) - len(shown), has_table=snap.has("retention"))
        if rows:
            max_week = max(r["weeks_since"] for r in rows)
            table = []
            for week in sorted(shown, reverse=True):
                cells = {r["weeks_since"]: r for r in rows if r["cohort_week"] == week}
                size = next(iter(cells.values()))["cohort_size"]
                table.append({"week": week, "size": size, "cells": [cells.get(n) for n in range(max_week + 1)]})
            context.update(
                spec=specs.retention_heatmap(rows), table=table, max_week=max_week,
                caption=f"Retention by weekly cohort, {MEASURES[measure][0].lower()}: share of each cohort that "
                        f"{MEASURES[measure][1]}",
                summary=_summary(rows, measure),
                incomplete=sum(1 for r in rows if not r["complete"]))
    return page(request, "retention.html", context, active="retention", title="Retention")
