"""The funnel pages: `/funnels`, every configured funnel's step bars over its last `DEFAULT_DAYS` entry days, and
`/funnels/{name}`, one funnel over a chosen range of entry days: the step bars (users, conversion from the start,
median time from the previous step), a breakdown by a dimension (a bar per segment and step), and the conversion
by entry day (a line per step), each with its table.

Numbers are queries.funnel_report's, as `GET /v1/funnels/{name}` gives them: over a range users are summed over
the entry days, conversions are ratios of the sums, and the median time is the users-weighted median of the
daily medians. An entry day keeps converting until its window closes (`window_days`; final once data to
day + window + 1 is loaded): those days are marked "still converting" on the line and in the tables.
"""

from __future__ import annotations

from datetime import date, timedelta
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from hitcraft_assets.app import queries
from hitcraft_assets.app.auth import KeyInfo
from hitcraft_assets.app.snapshot import Snapshot
from hitcraft_assets.app.web import specs
from hitcraft_assets.app.web.metrics import FORMATTERS, clean_text, parse_day, resolve_range
from hitcraft_assets.app.web.render import page, page_snapshot
from hitcraft_assets.app.web.session import require_user

router = APIRouter(include_in_schema=False)

DEFAULT_DAYS = 30
DEFAULT_WINDOW_DAYS = 7


def funnel_url(name: str) -> str:
    return "/funnels/" + quote(name, safe="")


def _open_from(funnel: dict, snap: Snapshot) -> date | None:
    """The first entry day whose conversion window is still open: data to day + window + 1 is not loaded yet."""
    last_loaded = snap.last_day or funnel.get("last_cohort_date")
    if last_loaded is None:
        return None
    return last_loaded - timedelta(days=funnel.get("window_days") or DEFAULT_WINDOW_DAYS)


def _steps_summary(name: str, steps: list[dict], first: date, last: date) -> str:
    if not steps:
        return f"{name}: nobody entered between {specs.fmt_day(first)} and {specs.fmt_day(last)}."
    parts = [f"{name}, users who entered between {specs.fmt_day(first)} and {specs.fmt_day(last)}:"]
    for s in steps:
        text = f"step {s['step']}, {s['step_event']}: {specs.fmt_int(s['users'])} users"
        if s["step"] > 1:
            text += (f", {specs.fmt_pct(s['conversion_from_prev'])} of the previous step, "
                     f"{specs.fmt_pct(s['conversion_from_start'])} of the entrants, median "
                     f"{specs.fmt_duration(s['median_seconds_from_prev'])} after the previous step")
        parts.append(text + ".")
    return " ".join(parts)


def _report(snap: Snapshot, funnel: dict, first: date, last: date) -> dict:
    """The step bars of `funnel` over [first, last]: its spec, text and rows (empty when nobody entered)."""
    groups = queries.funnel_report(snap, funnel["name"], first, last)
    steps = groups[0]["steps"] if groups else []
    entrants = groups[0]["entrants"] if groups else 0
    return {"steps": steps, "entrants": entrants,
            "spec": specs.funnel_chart(steps) if entrants else None,
            "summary": _steps_summary(funnel["name"], steps, first, last),
            "caption": f"{funnel['name']}: users at each step, entry days {specs.fmt_day(first, year=False)} "
                       f"to {specs.fmt_day(last)}"}


@router.get("/funnels", response_class=HTMLResponse)
def funnel_list(request: Request, user: KeyInfo = Depends(require_user),
                snap: Snapshot | None = Depends(page_snapshot)) -> HTMLResponse:
    cards = []
    if snap is not None:
        for f in queries.funnels(snap):
            card = {"funnel": f, "url": funnel_url(f["name"]), "report": None}
            if f["last_cohort_date"] is not None:
                last = f["last_cohort_date"]
                first = max(f["first_cohort_date"], last - timedelta(days=DEFAULT_DAYS - 1))
                card.update(first=first, last=last, report=_report(snap, f, first, last))
            cards.append(card)
    configured = bool(snap and snap.config.get("funnels"))
    return page(request, "funnels.html", {"cards": cards, "has_snapshot": snap is not None, "configured": configured,
                                          **FORMATTERS},
                active="funnels", title="Funnels")


def _breakdown(snap: Snapshot, funnel: dict, first: date, last: date, dimension: str) -> dict:
    groups = queries.funnel_report(snap, funnel["name"], first, last, dimension)
    groups = sorted(groups, key=lambda g: (-g["entrants"], g["segment"]))
    entered = [g for g in groups if g["entrants"]]
    out = {"dimension": dimension, "groups": entered, "spec": None}
    if entered:
        out["spec"] = specs.funnel_breakdown_chart(entered)
        last_step = max(s["step"] for s in entered[0]["steps"])
        parts = [f"{funnel['name']} by {dimension}, conversion from entry to the last step (step {last_step}):"]
        for g in entered:
            final = next((s for s in g["steps"] if s["step"] == last_step), None)
            parts.append(f"{g['segment']} {specs.fmt_pct(final['conversion_from_start'] if final else None)} "
                         f"of {specs.fmt_int(g['entrants'])} entrants;")
        out["summary"] = " ".join(parts)
        out["caption"] = (f"{funnel['name']} by {dimension}: conversion from entry to each step, entry days "
                          f"{specs.fmt_day(first, year=False)} to {specs.fmt_day(last)}")
    return out


def _trend(snap: Snapshot, funnel: dict, first: date, last: date, open_from: date | None) -> dict:
    days = [g for g in queries.funnel_report(snap, funnel["name"], first, last, by="day") if g["entrants"]]
    out: dict = {"days": days, "spec": None, "open_from": open_from}
    if days:
        out["spec"] = specs.funnel_trend_chart(days, open_from)
        last_step = max(s["step"] for s in days[0]["steps"])
        values = [(g["cohort_date"], next((s["conversion_from_start"] for s in g["steps"] if s["step"] == last_step),
                                          None)) for g in days]
        present = [(d, v) for d, v in values if v is not None]
        text = f"{funnel['name']}: conversion from entry to step {last_step} by entry day, {len(days)} days"
        if present:
            low, high = min(present, key=lambda p: p[1]), max(present, key=lambda p: p[1])
            text += (f"; latest {specs.fmt_pct(present[-1][1])} on {specs.fmt_day(present[-1][0])}, lowest "
                     f"{specs.fmt_pct(low[1])} on {specs.fmt_day(low[0])}, highest {specs.fmt_pct(high[1])} on "
                     f"{specs.fmt_day(high[0])}")
        if open_from is not None and days[-1]["cohort_date"] >= open_from:
            text += f"; entry days from {specs.fmt_day(open_from)} are still converting"
        out["summary"] = text + "."
        out["caption"] = f"{funnel['name']}: conversion from entry, by entry day"
        out["rows"] = [{"date": g["cohort_date"], "entrants": g["entrants"],
                        "steps": [s for s in g["steps"] if s["step"] > 1],
                        "open": open_from is not None and g["cohort_date"] >= open_from} for g in reversed(days)]
    return out


@router.get("/funnels/{name:path}", response_class=HTMLResponse)
def funnel_page(request: Request, name: str, user: KeyInfo = Depends(require_user),
                snap: Snapshot | None = Depends(page_snapshot)) -> HTMLResponse:
    context: dict = {"name": name, "funnel": None, "has_snapshot": snap is not None, **FORMATTERS}
    if snap is None:
        return page(request, "funnel.html", context, active="funnels", title="Funnel")
    known = queries.funnels(snap)
    funnel = next((f for f in known if f["name"] == name), None)
    if funnel is None:
        context["others"] = [(f["name"], funnel_url(f["name"])) for f in known]
        return page(request, "funnel.html", context, active="funnels", title="No such funnel", status_code=404)
    params = request.query_params
    errors: list[str] = []
    dimensions = [d["name"] for d in queries.metric_catalog(snap)["dimensions"]]
    dimension = clean_text(params.get("dimension")) or (dimensions[0] if dimensions else "all")
    if dimension != "all" and dimension not in dimensions:
        errors.append(f"No dimension {dimension!r} in this snapshot: the breakdown uses "
                      f"{dimensions[0] if dimensions else 'none'}.")
        dimension = dimensions[0] if dimensions else "all"
    first = parse_day(clean_text(params.get("from")), "From", errors)
    last = parse_day(clean_text(params.get("to")), "To", errors)
    first, last = resolve_range(first, last, funnel["first_cohort_date"], funnel["last_cohort_date"], DEFAULT_DAYS,
                                errors)
    context.update(funnel=funnel, errors=errors, dimensions=dimensions, dimension=dimension, first=first, last=last,
                   url=funnel_url(name))
    if first is not None:
        open_from = _open_from(funnel, snap)
        context.update(report=_report(snap, funnel, first, last), trend=_trend(snap, funnel, first, last, open_from),
                       breakdown=_breakdown(snap, funnel, first, last, dimension) if dimension != "all" else None,
                       open_from=open_from)
    return page(request, "funnel.html", context, active="funnels", title=f"{name} · Funnels")
