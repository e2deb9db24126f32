"""The metrics explorer (`/metrics`): one metric, by one dimension, for the segments chosen, over a date range,
drawn on one chart (a coloured line per segment, with a legend), with the anomaly band and the flagged days
(diamonds) and the change points (dashed rules), then the same numbers as tables.

The filters are a GET form (`metric`, `dimension`, `segment` (repeatable), `from`, `to`), so every view has a
URL and works without JavaScript. A value the snapshot does not have (a metric, a dimension, a segment, a
malformed day) is reported above the chart and replaced by the default, never a 422; an unknown metric answers
404 with the form to pick another. Defaults: `dau` (or the first metric), the whole product, the 90 days up
to the metric's last day (cut to the days it has), and for a dimension its `DEFAULT_SEGMENTS` largest
segments over the range.

Reads go through the API's query functions (queries.metric_catalog, queries.metric_series), so the page and
`GET /v1/metrics/{metric}` show the same numbers, with one exception: a day whose export file was never found
(load_log.source_found false) is drawn as a gap and said so under the chart, since its value (the pipeline's 0
for a day without events) is not a measurement; the detector leaves those days out too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from hitcraft_assets.app import queries
from hitcraft_assets.app.auth import KeyInfo
from hitcraft_assets.app.snapshot import Snapshot
from hitcraft_assets.app.web import specs
from hitcraft_assets.app.web.charts_web import series_from_rows
from hitcraft_assets.app.web.render import clean_text, page, page_snapshot, parse_day
from hitcraft_assets.app.web.session import require_user
from hitcraft_assets.delivery.digest import LABELS
from hitcraft_assets.delivery.evidence import number

router = APIRouter(include_in_schema=False)

DEFAULT_METRIC = "dau"
DEFAULT_DAYS = 90
MAX_DAYS = 400
DEFAULT_SEGMENTS = 5
MAX_SEGMENTS = len(specs.PALETTE)
PERCENT_METRICS = {"stickiness"}
# what the templates of these pages call besides the core's filters (`num`, `day`)
FORMATTERS = {"shortday": specs.fmt_day, "pct": specs.fmt_pct, "duration": specs.fmt_duration, "count": specs.fmt_int}


def metric_label(name: str) -> str:
    """What a person reads for a metric name (the email's labels, and the same prefixes)."""
    if name.startswith("funnel:"):
        m = queries.FUNNEL_METRIC.match(name)
        if m:
            return f"{m['funnel']}: conversion to step {m['step']}"
    for prefix, words in (("event_count:", "{} events"), ("event_users:", "Users doing {}")):
        if name.startswith(prefix):
            return words.format(name.removeprefix(prefix))
    return LABELS.get(name, name)


def is_percent(name: str, source: str | None) -> bool:
    return source == "funnel_steps" or name in PERCENT_METRICS


def resolve_range(first: date | None, last: date | None, data_first: date | None, data_last: date | None,
                  default_days: int, errors: list[str], max_days: int = MAX_DAYS) -> tuple[date | None, date | None]:
    """The days to show: as given, else `default_days` up to the data's last day (cut to the days the data
    has); swapped when reversed, cut to `max_days` when longer (each said in `errors`). A `first` after the
    data's last day, with no `last`, is a one-day range (as the API answers it); a day near the calendar's
    ends never overflows."""
    if first and last and first > last:
        errors.append("“From” is after “To”: the two days are swapped.")
        first, last = last, first
    if last is None:
        last = data_last
        if last is not None and first is not None and first > last:
            last = first
    if last is None:
        return None, None
    if first is None:
        first = _days_before(last, default_days - 1)
        if data_first is not None and first < data_first:
            first = min(data_first, last)
    if (last - first).days + 1 > max_days:
        first = _days_before(last, max_days - 1)
        errors.append(f"At most {max_days} days at once: the range starts on {first}.")
    return first, last


def _days_before(day: date, days: int) -> date:
    try:
        return day - timedelta(days=days)
    except OverflowError:
        return date.min


@dataclass
class Explorer:
    """What the form asked for and what the page shows."""

    metric: str = ""
    dimension: str = "all"
    segments: list[str] = field(default_factory=list)
    from_text: str = ""
    to_text: str = ""
    first: date | None = None
    last: date | None = None
    errors: list[str] = field(default_factory=list)
    defaulted_segments: bool = False

    def url(self, **change) -> str:
        values = {"metric": self.metric, "dimension": self.dimension, "segment": self.segments,
                  "from": self.first.isoformat() if self.first else "", "to": self.last.isoformat() if self.last else ""}
        values.update(change)
        return "/metrics?" + urlencode(values, doseq=True)


def _segment_label(dimension: str, segment: str) -> str:
    return "All users" if dimension == "all" else segment


def _series(rows: list[dict], dimension: str, first: date, last: date, percent: bool,
            unloaded: frozenset[date] = frozenset()) -> list[dict]:
    """Each segment's Series (every day of the range; a missing day a gap), its flagged days and change points.
    A day whose export file was never found (`unloaded`) is a gap too: its value counts no events, not a
    measured zero (the detector leaves those days out for the same reason)."""
    out = []
    for s in rows:
        title = _segment_label(dimension, s["segment"])
        points = [p for p in s["points"] if p["date"] not in unloaded]
        series = series_from_rows(points, title=title, start=first, end=last, percent=percent)
        flagged = [{"date": p["date"], "value": p["value"], **p["anomaly"]} for p in points if p["anomaly"]]
        changes = [{**c, "segment": title} for c in s["change_points"]]
        out.append({"segment": s["segment"], "title": title, "series": series, "flagged": flagged,
                    "changes": changes, "trend": s.get("trend"),
                    "present": [v for v in series.values if v is not None]})
    return out


def _change_text(c: dict, percent: bool) -> str:
    before, after = number(c.get("mean_before"), percent=percent), number(c.get("mean_after"), percent=percent)
    rel = c.get("relative_shift")
    return f"{before} → {after}" + (f" ({number(rel, percent=True, signed=True)})" if rel is not None else "")


def _summary(label: str, drawn: list[dict], first: date, last: date, percent: bool) -> str:
    parts = [f"{label}, daily, {specs.fmt_day(first)} to {specs.fmt_day(last)}, "
             f"{len(drawn)} series: {', '.join(d['title'] for d in drawn)}."]
    for d in drawn:
        values = d["present"]
        if not values:
            parts.append(f"{d['title']}: no values.")
            continue
        s = d["series"]
        last_value = next(v for v in reversed(s.values) if v is not None)
        extra = ""
        if d["flagged"]:
            extra += f", {len(d['flagged'])} flagged day(s)"
        if d["changes"]:
            extra += f", {len(d['changes'])} change point(s)"
        parts.append(f"{d['title']}: from {number(values[0], percent=percent)} to "
                     f"{number(last_value, percent=percent)}, lowest {number(min(values), percent=percent)}, "
                     f"highest {number(max(values), percent=percent)}{extra}.")
    return " ".join(parts)


def _table(drawn: list[dict], percent: bool, unloaded: frozenset[date] = frozenset()) -> list[dict]:
    """One row per day (newest first), a cell per series: the value ("no file" on a day whose export was never
    found, "—" on a day without a value), and whether the day is flagged."""
    if not drawn:
        return []
    flagged = {(d["title"], f["date"]) for d in drawn for f in d["flagged"]}
    dates = drawn[0]["series"].dates
    rows = []
    for i in range(len(dates) - 1, -1, -1):
        day = dates[i]
        empty = "no file" if day in unloaded else "—"
        cells = [{"text": number(d["series"].values[i], percent=percent) if d["series"].values[i] is not None else empty,
                  "flagged": (d["title"], day) in flagged} for d in drawn]
        rows.append({"date": day, "cells": cells, "flagged": any(c["flagged"] for c in cells)})
    return rows


def explore(snap: Snapshot, request: Request) -> tuple[Explorer, dict]:
    """Read the form, resolve it against the snapshot and build what the template shows."""
    params = request.query_params
    form = Explorer(metric=clean_text(params.get("metric")), dimension=clean_text(params.get("dimension")) or "all",
                    segments=[clean_text(s) for s in params.getlist("segment") if clean_text(s)],
                    from_text=clean_text(params.get("from")), to_text=clean_text(params.get("to")))
    if clean_text(params.get("shown")) not in ("", form.dimension):
        form.segments = []      # the dimension was changed: the ticked segments were the other dimension's
    catalog = queries.metric_catalog(snap)
    metrics = {m["name"]: m for m in catalog["metrics"]}
    dims = {d["name"]: d["segments"] for d in catalog["dimensions"]}
    view: dict = {"catalog": catalog, "status": 200, "max_segments": MAX_SEGMENTS, "metric_groups": _metric_groups(catalog["metrics"]),
                  "dimensions": dims}
    if not metrics:
        view["empty"] = True
        return form, view
    if not form.metric:
        form.metric = DEFAULT_METRIC if DEFAULT_METRIC in metrics else next(iter(metrics))
    elif form.metric not in metrics:
        view.update(status=404, unknown_metric=form.metric)
        form.metric = DEFAULT_METRIC if DEFAULT_METRIC in metrics else next(iter(metrics))
    meta = metrics[form.metric]
    source = meta["source"]
    percent = is_percent(form.metric, source)
    if form.dimension != "all" and form.dimension not in dims:
        form.errors.append(f"No dimension {form.dimension!r} in this snapshot: showing all users.")
        form.dimension = "all"
    first = parse_day(form.from_text, "From", form.errors)
    last = parse_day(form.to_text, "To", form.errors)
    form.first, form.last = resolve_range(first, last, meta["first_date"], meta["last_date"], DEFAULT_DAYS,
                                          form.errors)
    rows = queries.metric_series(snap, form.metric, source, form.first, form.last, form.dimension,
                                 "all" if form.dimension == "all" else None)
    available = [r["segment"] for r in rows]
    if form.dimension == "all":
        form.segments = []
        chosen = rows[:1]
    else:
        unknown = [s for s in form.segments if s not in available]
        if unknown:
            form.errors.append(f"No data for {', '.join(repr(s) for s in unknown[:3])} of {form.dimension} in "
                               f"this range: left out.")
        picked = [s for s in dict.fromkeys(form.segments) if s in available]
        if len(picked) > MAX_SEGMENTS:
            form.errors.append(f"At most {MAX_SEGMENTS} segments on one chart: the first {MAX_SEGMENTS} are shown.")
            picked = picked[:MAX_SEGMENTS]
        if not picked:
            # the largest segments over the range (by their mean), in that order
            def size(r: dict) -> float:
                values = [p["value"] for p in r["points"] if p["value"] is not None]
                return sum(values) / len(values) if values else float("-inf")
            picked = [r["segment"] for r in sorted(rows, key=size, reverse=True)[:DEFAULT_SEGMENTS]]
            form.defaulted_segments = bool(picked)
        form.segments = picked
        by_segment = {r["segment"]: r for r in rows}
        chosen = [by_segment[s] for s in picked]
    view.update(metric=meta, label=metric_label(form.metric), percent=percent, available_segments=available)
    if not chosen:
        view["no_data"] = True
        return form, view
    unloaded = frozenset(d["event_date"] for d in queries.load_days(snap)
                         if not d["source_found"] and form.first <= d["event_date"] <= form.last)
    drawn = _series(chosen, form.dimension, form.first, form.last, percent, unloaded)
    marks = [specs.ChangeMark(c["segment"], c["date"], _change_text(c, percent)) for d in drawn for c in d["changes"]]
    caption = (f"{view['label']}, {'all users' if form.dimension == 'all' else 'by ' + form.dimension}, "
               f"{specs.fmt_day(form.first)} to {specs.fmt_day(form.last)}")
    view.update(
        drawn=drawn,
        unloaded=sorted(unloaded),
        spec=specs.metric_chart([d["series"] for d in drawn], marks),
        caption=caption,
        summary=_summary(view["label"], drawn, form.first, form.last, percent)
        + (f" No export file was loaded for {', '.join(specs.fmt_day(d) for d in sorted(unloaded))}: a gap."
           if unloaded else ""),
        table=_table(drawn, percent, unloaded),
        flagged=sorted(({**f, "segment": d["title"]} for d in drawn for f in d["flagged"]),
                       key=lambda f: (f["date"], f["segment"]), reverse=True),
        changes=sorted((c for d in drawn for c in d["changes"]), key=lambda c: c["date"], reverse=True),
        change_text=lambda c: _change_text(c, percent),
    )
    return form, view


def _metric_groups(metrics: list[dict]) -> list[tuple[str, list[tuple[str, str]]]]:
    """The metric picker's option groups: (group label, [(name, label)])."""
    groups: dict[str, list[tuple[str, str]]] = {"Product metrics": [], "Event counts": [], "Users by event": [],
                                                "Funnel conversions": []}
    for m in metrics:
        name = m["name"]
        group = ("Funnel conversions" if name.startswith("funnel:") else "Event counts"
                 if name.startswith("event_count:") else "Users by event" if name.startswith("event_users:")
                 else "Product metrics")
        groups[group].append((name, metric_label(name)))
    return [(g, sorted(items, key=lambda i: i[1].lower())) for g, items in groups.items() if items]


@router.get("/metrics", response_class=HTMLResponse)
def metrics_page(request: Request, user: KeyInfo = Depends(require_user),
                 snap: Snapshot | None = Depends(page_snapshot)) -> HTMLResponse:
    if snap is None:
        return page(request, "metrics.html", {"form": Explorer(), "view": None, **FORMATTERS}, active="metrics",
                    title="Metrics")
    form, view = explore(snap, request)
    title = f"{view['label']} · Metrics" if view.get("label") else "Metrics"
    return page(request, "metrics.html", {"form": form, "view": view, **FORMATTERS}, active="metrics", title=title,
                status_code=view["status"])
