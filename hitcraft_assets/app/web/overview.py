"""The overview page (`/`): the latest day's ranked findings with their evidence first, then the KPI tiles (DAU,
WAU, MAU, new users, sessions and each configured funnel's conversion) with sparklines and the change against
the previous period of the same length, and the data's freshness. Numbers are written as the email writes
them (delivery/email/format.py).

A KPI over a period is computed as the email digest computes it (delivery/digest.py): DAU is the period's
daily average, WAU and MAU the value on its last day, counts are summed, and a funnel's conversion is the
users who reached its last step over those who entered, summed over the entry days. Every number comes from
the snapshot; a KPI without data says so ("no data"), it is never shown as 0.
"""

from __future__ import annotations

from datetime import date, timedelta

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from hitcraft_assets.app import queries
from hitcraft_assets.app.auth import KeyInfo
from hitcraft_assets.app.snapshot import Snapshot
from hitcraft_assets.app.web.charts_web import describe, series_from_rows, sparkline_spec
from hitcraft_assets.app.web.render import page, page_snapshot
from hitcraft_assets.app.web.session import require_user
from hitcraft_assets.delivery.digest import AGGREGATION, LABELS
from hitcraft_assets.delivery.email.format import change_words, fmt_change, fmt_value
from hitcraft_assets.delivery.evidence import evidence_rows

router = APIRouter(include_in_schema=False)

KPI_METRICS = ("dau", "wau", "mau", "new_users", "sessions")
PERIODS = {1: "Latest day", 7: "7 days", 28: "28 days"}
DEFAULT_PERIOD = 7
TOP_INSIGHTS = 5
EVIDENCE_ROWS = 3


def _period_value(how: str, values: list[float]) -> float | None:
    if not values:
        return None
    if how == "last":
        return values[-1]
    return sum(values) / len(values) if how == "mean" else sum(values)


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def kpi_tiles(snap: Snapshot, last_day: date, days: int) -> list[dict]:
    """The tiles for the `days` ending on `last_day` against the `days` before: label, value, previous, change
    (relative), percent, the sparkline's spec and its text."""
    start = last_day - timedelta(days=days - 1)
    prev_start, prev_end = start - timedelta(days=days), start - timedelta(days=1)
    spark_days = 90 if days >= 28 else 28
    spark_start = last_day - timedelta(days=spark_days - 1)
    window_start = min(prev_start, spark_start)
    by_metric: dict[str, dict[date, float]] = {}
    for r in queries.metric_totals(snap, KPI_METRICS, window_start, last_day):
        by_metric.setdefault(r["metric"], {})[r["date"]] = r["value"]
    by_funnel: dict[str, dict[date, dict]] = {}
    for r in queries.funnel_totals(snap, window_start, last_day):
        by_funnel.setdefault(r["funnel"], {})[r["date"]] = r
    tiles = []
    for key in KPI_METRICS:
        found = by_metric.get(key, {})
        how = AGGREGATION.get(key, "sum")

        def over(a: date, b: date) -> float | None:
            return _period_value(how, [found[d] for d in _days(a, b) if found.get(d) is not None])

        label = LABELS.get(key, key) + (" (a day, on average)" if days > 1 and how == "mean" else "")
        tiles.append(_tile(key, label, over(start, last_day), over(prev_start, prev_end), False,
                           [{"date": d, "value": v} for d, v in found.items() if d >= spark_start],
                           spark_start, last_day, how))
    for funnel in [f["name"] for f in queries.funnels(snap)]:
        found = by_funnel.get(funnel, {})

        def ratio(a: date, b: date) -> float | None:
            rows = [found[d] for d in _days(a, b) if d in found]
            entrants = sum(r["entrants"] or 0 for r in rows)
            return sum(r["converted"] or 0 for r in rows) / entrants if entrants else None

        tiles.append(_tile(f"funnel:{funnel}", f"{funnel} conversion", ratio(start, last_day),
                           ratio(prev_start, prev_end), True,
                           [{"date": d, "value": r["conversion"]} for d, r in found.items() if d >= spark_start],
                           spark_start, last_day, "ratio"))
    return tiles


def _tile(key: str, label: str, value: float | None, previous: float | None, percent: bool, spark_rows: list[dict],
          spark_start: date, last_day: date, how: str) -> dict:
    change = (value - previous) / abs(previous) if value is not None and previous else None
    series = series_from_rows(spark_rows, title=label, start=spark_start, end=last_day, percent=percent, band=False)
    has_spark = any(v is not None for v in series.values)
    arrow, word = change_words(change)
    return {
        "key": key, "label": label, "value": value, "previous": previous, "change": change, "percent": percent,
        "value_text": fmt_value(value, percent=percent) if value is not None else None,
        "previous_text": fmt_value(previous, percent=percent) if previous is not None else None,
        "change_text": fmt_change(change) if change is not None else None,
        "arrow": arrow, "direction": word or None, "how": how,
        "spec": sparkline_spec(series, width=120, height=36) if has_spark else None,
        "spark_summary": describe(series) if has_spark else None,
        "spark_days": len(series.dates),
    }


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, user: KeyInfo = Depends(require_user),
             snap: Snapshot | None = Depends(page_snapshot)) -> HTMLResponse:
    try:
        days = int(request.query_params.get("days", DEFAULT_PERIOD))
    except ValueError:
        days = DEFAULT_PERIOD
    if days not in PERIODS:
        days = DEFAULT_PERIOD
    context: dict = {"periods": PERIODS, "days": days, "tiles": [], "insights": [], "as_of": None, "kpi_day": None}
    if snap is not None:
        as_of = queries.latest_as_of(snap)
        kpi_day = queries.metric_last_date(snap, "dau") or snap.last_day
        insights = queries.top_insights(snap, as_of, TOP_INSIGHTS) if as_of else []
        for i in insights:
            i["evidence_rows"] = evidence_rows(i["evidence"])[:EVIDENCE_ROWS]
        context.update(as_of=as_of, kpi_day=kpi_day, insights=insights,
                       open_count=queries.insights_count(snap, queries.InsightFilters(as_of, as_of,
                                                                                      statuses=("new", "ongoing")))
                       if as_of else 0,
                       tiles=kpi_tiles(snap, kpi_day, days) if kpi_day else [])
    return page(request, "overview.html", context, active="overview", title="Overview")
