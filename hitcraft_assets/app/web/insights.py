"""The insights pages: `/insights`, the feed of ranked findings with its filters, and `/insights/{insight_id}`,
one insight with its evidence, its chart, its recommendation, owner and status history (the URL the emails
link to: `{HITCRAFT_PUBLIC_URL}/insights/{insight_id}`).

The feed's filters are a GET form (as-of days from and to, kind, status, metric, segment, text), so a filtered
feed has a URL and works without JavaScript; with it, htmx swaps only the list (`#feed`) and pushes the URL. A
malformed filter value is reported next to the form and ignored, never a 422. The feed is newest day first,
ranked within the day, 25 rows a page, paged by keyset (`after=<day>.<rank>.<id>`).

The chart of an insight is the email's (delivery.evidence.insight_series: the 42 days up to the insight's day,
the anomaly band on flagged days, the lead facet's day marked) built from the snapshot through
queries.metric_series, plus the anomaly episode shaded and the change point marked when the marker is
another day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from hitcraft_assets.app import queries
from hitcraft_assets.app.auth import KeyInfo
from hitcraft_assets.app.snapshot import Snapshot
from hitcraft_assets.app.web.charts_web import describe, line_spec, mark_day, mark_span, series_from_rows, table_rows
from hitcraft_assets.app.web.render import clean_text, is_htmx_fragment, page, page_snapshot, parse_day, partial
from hitcraft_assets.app.web.session import require_user
from hitcraft_assets.delivery.evidence import CHART_DAYS, evidence_rows, marker

router = APIRouter(include_in_schema=False)

KINDS = ("risk", "opportunity", "success", "trend", "anomaly")
STATUSES = ("new", "ongoing", "resolved")
PAGE_SIZE = 25
INSIGHT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_AFTER = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(\d{1,9})\.([A-Za-z0-9_-]{1,64})$")


@dataclass
class FeedForm:
    """The feed's filters as typed (to refill the form) and as InsightFilters."""

    from_text: str = ""
    to_text: str = ""
    kinds: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    metric: str = ""
    segment: str = ""          # "" any, "all" the whole product, "<dimension>=<segment>"
    q: str = ""
    errors: list[str] = field(default_factory=list)
    defaulted: bool = False    # no filter given: the latest day

    def query(self, **extra: str) -> str:
        pairs = [("from", self.from_text), ("to", self.to_text), *[("kind", k) for k in self.kinds],
                 *[("status", s) for s in self.statuses], ("metric", self.metric), ("segment", self.segment),
                 ("q", self.q), *extra.items()]
        return urlencode(pairs)


def parse_form(request: Request, latest: date | None) -> tuple[FeedForm, queries.InsightFilters]:
    params = request.query_params
    form = FeedForm()
    filtering = any(k in params for k in ("from", "to", "kind", "status", "metric", "segment", "q"))
    if not filtering and latest is not None:
        form.from_text = form.to_text = latest.isoformat()
        form.defaulted = True
    else:
        form.from_text, form.to_text = clean_text(params.get("from")), clean_text(params.get("to"))
    first = parse_day(form.from_text, "From", form.errors)
    last = parse_day(form.to_text, "To", form.errors)
    if first and last and first > last:
        form.errors.append("“From” is after “To”: the two days are swapped.")
        first, last = last, first
        form.from_text, form.to_text = first.isoformat(), last.isoformat()
    form.kinds = [k for k in params.getlist("kind") if k in KINDS]
    form.statuses = [s for s in params.getlist("status") if s in STATUSES]
    for name, allowed, given in (("kind", KINDS, params.getlist("kind")), ("status", STATUSES, params.getlist("status"))):
        bad = [v for v in given if v not in allowed and v]
        if bad:
            form.errors.append(f"Unknown {name} {', '.join(repr(clean_text(b)) for b in bad[:3])}: ignored.")
    form.metric, form.segment = clean_text(params.get("metric")), clean_text(params.get("segment"))
    form.q = clean_text(params.get("q"))
    dimension = segment = None
    if form.segment == "all":
        dimension = "all"
    elif form.segment:
        if "=" in form.segment:
            dimension, segment = form.segment.split("=", 1)
        else:
            form.errors.append(f"Unknown segment {form.segment!r}: ignored.")
            form.segment = ""
    filters = queries.InsightFilters(first, last, tuple(sorted(form.kinds)), tuple(sorted(form.statuses)),
                                     form.metric or None, dimension, segment, None, form.q or None)
    return form, filters


def _after(text: str | None) -> tuple | None:
    m = _AFTER.match(text or "")
    if not m:
        return None
    try:
        return (date.fromisoformat(m[1]), int(m[2]), m[3])
    except ValueError:
        return None


def _group_by_day(rows: list[dict]) -> list[dict]:
    days: list[dict] = []
    for r in rows:
        if not days or days[-1]["day"] != r["as_of_date"]:
            days.append({"day": r["as_of_date"], "rows": []})
        days[-1]["rows"].append(r)
    return days


@router.get("/insights", response_class=HTMLResponse)
def insight_feed(request: Request, user: KeyInfo = Depends(require_user),
                 snap: Snapshot | None = Depends(page_snapshot)) -> HTMLResponse:
    facets = queries.insight_facets(snap) if snap is not None else None
    latest = queries.latest_as_of(snap) if snap is not None else None
    form, filters = parse_form(request, latest)
    context: dict = {"form": form, "facets": facets, "kinds": KINDS, "statuses": STATUSES, "latest": latest,
                     "days": [], "total": 0, "next_url": None, "first_url": None, "paged": False}
    if snap is not None and latest is not None:
        after = _after(request.query_params.get("after"))
        rows, more = queries.insight_feed(snap, filters, after, PAGE_SIZE)
        context.update(days=_group_by_day(rows), total=queries.insights_count(snap, filters), paged=after is not None,
                       shown=len(rows))
        if more and rows:
            last = rows[-1]
            context["next_url"] = "/insights?" + form.query(
                after=f"{last['as_of_date'].isoformat()}.{last['priority_rank']}.{last['insight_id']}")
        if after is not None:
            context["first_url"] = "/insights?" + form.query()
    if is_htmx_fragment(request, "feed"):
        return partial(request, "_feed.html", context)
    return page(request, "insights.html", context, active="insights", title="Insights")


# -- one insight ---------------------------------------------------------------------------------------

def insight_chart(snap: Snapshot, row: dict) -> dict | None:
    """The insight's chart: spec, caption, summary and table rows; None when its series is not in the snapshot."""
    evidence = row["evidence"]
    metric = evidence.get("metric")
    source = queries.metric_source(snap, metric) if metric else None
    if source is None:
        return None
    dimension, segment = evidence.get("dimension") or "all", evidence.get("segment") or "all"
    as_of: date = row["as_of_date"]
    start = as_of - timedelta(days=CHART_DAYS - 1)
    found = queries.metric_series(snap, metric, source, start, as_of, dimension, segment)
    if not found or not found[0]["points"]:
        return None
    points = found[0]["points"]
    mark, mark_label = marker(evidence)
    label = str(evidence.get("label") or metric)
    title = label if dimension == "all" else f"{dimension} = {segment}: {label}"
    series = series_from_rows(points, title=title, start=start, end=as_of, percent=bool(evidence.get("conversion")),
                              marker=mark, marker_label=mark_label)
    spec = line_spec(series, height=220)
    # the anomaly episode of the marked day (or of the lead anomaly), shaded
    episode = None
    anomaly_day = next((p for p in points if p["anomaly"] and mark and p["date"] == mark), None)
    if anomaly_day is not None and anomaly_day["anomaly"].get("episode_start"):
        days = queries.anomaly_days(snap, metric, dimension, segment, anomaly_day["anomaly"]["episode_start"])
        days = [d for d in days if start <= d <= as_of] or [mark]
        episode = (min(days), max(days))
        mark_span(spec, *episode, label="episode")
    # the change point, when the marker is another day
    second = None
    change = (evidence.get("change_point") or {}).get("date")
    change_day = date.fromisoformat(str(change)[:10]) if change else None
    if change_day is None and found[0]["change_points"]:
        change_day = found[0]["change_points"][-1]["date"]
    if change_day is not None and change_day != series.marker and start <= change_day <= as_of:
        second = (change_day, "change point")
        mark_day(spec, change_day, "change point")
    marks = []
    if series.lower is not None:
        marks.append("the expected range on flagged days")
    if series.marker:
        marks.append(f"the {series.marker_label or 'marked day'} on {series.marker.day} {series.marker:%b}")
    if second:
        marks.append(f"the change point on {second[0].day} {second[0]:%b}")
    if episode:
        marks.append("the anomaly episode shaded")
    caption = f"{title}, {CHART_DAYS} days to {as_of.day} {as_of:%b %Y}" + (f", with {', '.join(marks)}" if marks else "")
    return {"spec": spec, "caption": caption, "summary": describe(series, episode=episode, second_mark=second),
            "table": table_rows(series), "percent": series.percent}


def _drivers(evidence: dict) -> list[str]:
    """The root-cause summaries the evidence carries ("channel = direct: 47% of the rise")."""
    out = []
    for facet in ("change_point", "anomaly", "persisted"):
        for cause in (evidence.get(facet) or {}).get("root_cause") or []:
            text = cause.get("summary") if isinstance(cause, dict) else None
            if text and text not in out:
                out.append(text)
    return out


@router.get("/insights/{insight_id}", response_class=HTMLResponse)
def insight_page(request: Request, insight_id: str, user: KeyInfo = Depends(require_user),
                 snap: Snapshot | None = Depends(page_snapshot)) -> HTMLResponse:
    if snap is None:
        return page(request, "insight.html", {"insight": None, "insight_id": insight_id}, active="insights",
                    title="Insight", status_code=503)
    row = queries.insight(snap, insight_id) if INSIGHT_ID.match(insight_id) else None
    if row is None:
        return page(request, "error.html", {
            "heading": "No such insight",
            "message": f"The current snapshot has no insight “{insight_id[:64]}”. An insight link from an email "
                       "opens while the snapshot still holds that insight; it may have been replaced by a newer "
                       "finding on the same series.",
            "actions": [("See the insights of the latest day", "/insights")]},
            active="insights", title="Insight not found", status_code=404)
    evidence = row["evidence"]
    context = {
        "insight": row, "insight_id": insight_id, "evidence_rows": evidence_rows(evidence), "drivers": _drivers(evidence),
        "figure": insight_chart(snap, row), "owner": row["context"].get("owner"), "area": row["context"].get("area"),
        "latest": queries.latest_as_of(snap),
    }
    return page(request, "insight.html", context, active="insights", title=row["title"])
