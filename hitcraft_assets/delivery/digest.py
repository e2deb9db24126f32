"""A report profile's digest for one recipient and period, from the warehouse (plain functions).

Which insights a recipient sees:
- the insights as of the period's last day that are open (new or ongoing), of the profile's `kinds`;
- with profile `areas`, those of these areas and those about the product as a whole (no area);
- with recipient `areas`, those of the recipient's areas first; insights about the product as a whole fill
  the remaining places, insights of other areas are left out;
- ordered by the insight's impact score, weighted ×1.5 in the recipient's areas and ×1.25 for the kinds
  their `role` acts on (ROLE_KINDS), ties by the global rank; the first `top`.
For a weekly or monthly period, an insight is `new` when it first appeared within the period.
KPIs: the period's value against the previous period of the same length (AGGREGATION says how a metric's
days combine), with a sparkline of the last 28 days (90 for a month).
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import duckdb

from hitcraft_assets.config import ProductConfig, Recipient, Report
from hitcraft_assets.delivery.evidence import evidence_rows, insight_series
from hitcraft_assets.delivery.model import Digest, DigestInsight, Kpi, Series
from hitcraft_assets.delivery.periods import Period

ROLE_KINDS = {
    "engineering": ("risk", "anomaly"),
    "product": ("risk", "opportunity", "success"),
    "marketing": ("opportunity", "trend", "anomaly"),
    "growth": ("opportunity", "trend", "anomaly"),
    "executive": ("success", "risk"),
}
AREA_WEIGHT, ROLE_WEIGHT = 1.5, 1.25
# how the days of a period combine into one KPI value
AGGREGATION = {"dau": "mean", "stickiness": "mean", "session_duration_median_s": "mean",
               "session_duration_mean_s": "mean", "events_per_session": "mean", "wau": "last", "mau": "last"}
LABELS = {"dau": "Daily active users", "wau": "Weekly active users", "mau": "Monthly active users",
          "new_users": "New users", "sessions": "Sessions", "stickiness": "Stickiness (DAU / MAU)",
          "session_duration_median_s": "Median session length (s)",
          "session_duration_mean_s": "Mean session length (s)", "events_per_session": "Events per session"}


def kpi_label(key: str, period: Period) -> str:
    if key.startswith("funnel:"):
        return f"{key.removeprefix('funnel:')} conversion"
    if key.startswith("event_count:"):
        return f"{key.removeprefix('event_count:')} events"
    if key.startswith("event_users:"):
        return f"Users doing {key.removeprefix('event_users:')}"
    label = LABELS.get(key, key)
    how = AGGREGATION.get(key, "sum")
    if period.days > 1 and how == "mean":
        label += " (a day, on average)"
    return label


def _metric_value(conn, key: str, period: Period) -> float | None:
    how = AGGREGATION.get(key, "sum")
    rows = conn.execute("select metric_date, value from analytics.daily_metrics where metric = ? and dimension = 'all' "
                        "and segment = 'all' and metric_date between ? and ? order by 1",
                        [key, period.start, period.end]).fetchall()
    if not rows:
        return None
    values = [v for _, v in rows if v is not None]
    if not values:
        return None
    if how == "last":
        return values[-1]
    return sum(values) / len(values) if how == "mean" else sum(values)


# entry cohorts whose window has closed (completeness 1; rows written before completeness existed count as
# complete): a cohort still converting would read as a fall that is only time
_COMPLETE = "coalesce(completeness, 1.0) >= 1.0"


def _last_complete_cohort(conn, funnel: str, end: date, window_days: int = 0) -> date | None:
    """The latest entry day whose window had closed by the end of `end` (entry day <= end - window_days; a
    report re-rendered later must not count what was still converting then) and whose row says so."""
    return conn.execute(
        f"select max(cohort_date) from analytics.funnel_steps where funnel = $f and cohort_date <= $e and {_COMPLETE}",
        {"f": funnel, "e": end - timedelta(days=window_days)}).fetchall()[0][0]


def _funnel_value(conn, funnel: str, first: date, last: date) -> float | None:
    """Conversion from entry to the last step of the complete cohorts that entered on days first..last."""
    row = conn.execute(
        "select sum(users) filter (where step = 1), sum(users) filter (where step = (select max(step) from "
        "analytics.funnel_steps where funnel = $f)) from analytics.funnel_steps where funnel = $f and "
        f"dimension = 'all' and segment = 'all' and cohort_date between $a and $b and {_COMPLETE}",
        {"f": funnel, "a": first, "b": last}).fetchall()[0]
    entrants, converted = row
    return converted / entrants if entrants else None


def _sparkline(conn, key: str, end: date, days: int) -> Series | None:
    start = end - timedelta(days=days - 1)
    if key.startswith("funnel:"):
        funnel = key.removeprefix("funnel:")
        found = dict(conn.execute(
            "select cohort_date, conversion_from_start from analytics.funnel_steps where funnel = $f and "
            "dimension = 'all' and segment = 'all' and step = (select max(step) from analytics.funnel_steps "
            f"where funnel = $f) and cohort_date between $a and $b and {_COMPLETE}",
            {"f": funnel, "a": start, "b": end}).fetchall())
    else:
        found = dict(conn.execute(
            "select metric_date, value from analytics.daily_metrics where metric = ? and dimension = 'all' and "
            "segment = 'all' and metric_date between ? and ?", [key, start, end]).fetchall())
    if not found:
        return None
    dates = tuple(start + timedelta(days=i) for i in range(days))
    return Series(title=key, dates=dates, values=tuple(found.get(d) for d in dates), percent=key.startswith("funnel:"))


def kpis(conn: duckdb.DuckDBPyConnection, keys, period: Period,
         windows: dict[str, int] | None = None) -> tuple[Kpi, ...]:
    """The report's KPI tiles; `windows`: each funnel's window_days (config), for its complete entry days."""
    out = []
    spark_days = 90 if period.cadence == "monthly" else 28
    for key in keys:
        label = kpi_label(key, period)
        if key.startswith("funnel:"):
            # the period's length of the latest entry days whose window has closed, against the same before
            funnel = key.removeprefix("funnel:")
            last = _last_complete_cohort(conn, funnel, period.end, (windows or {}).get(funnel, 0))
            value = previous = None
            if last is not None:
                first = last - timedelta(days=period.days - 1)
                value = _funnel_value(conn, funnel, first, last)
                previous = _funnel_value(conn, funnel, first - timedelta(days=period.days),
                                         first - timedelta(days=1))
                span = f"{first.day} {first:%b}" if first == last else f"{first.day} {first:%b}–{last.day} {last:%b}"
                label += f" (entered {span}, window closed)"
        else:
            value, previous = _metric_value(conn, key, period), _metric_value(conn, key, period.previous())
        change = (value - previous) / abs(previous) if value is not None and previous else None
        out.append(Kpi(key=key, label=label, value=value, previous=previous, change=change,
                       percent=key.startswith("funnel:") or key == "stickiness",
                       sparkline=_sparkline(conn, key, period.end, spark_days)))
    return tuple(out)


def open_insights(conn: duckdb.DuckDBPyConnection, period: Period) -> list[dict]:
    """The open insights as of the period's last day, with when each first appeared."""
    rows = conn.execute(
        "select i.insight_id, i.kind, i.status, i.title, i.summary, i.recommendation, i.evidence, i.context, "
        "i.priority_rank, i.impact_score, f.first_seen from insights.insights i join (select insight_id, "
        "min(as_of_date) as first_seen from insights.insights group by 1) f using (insight_id) "
        "where i.as_of_date = ? and i.status <> 'resolved' order by i.priority_rank", [period.end]).fetchall()
    out = []
    for iid, kind, status, title, summary, rec, evidence, context, rank, impact, first_seen in rows:
        if period.days > 1:
            status = "new" if first_seen >= period.start else "ongoing"
        out.append({"insight_id": iid, "kind": kind, "status": status, "title": title, "summary": summary,
                    "recommendation": rec, "evidence": json.loads(evidence), "context": json.loads(context or "{}"),
                    "rank": rank, "impact": impact})
    return out


def choose(insights: list[dict], report: Report, recipient: Recipient) -> list[dict]:
    """The recipient's insights: filtered and ordered as the module docstring says."""
    mine = set(recipient.areas)
    role_kinds = ROLE_KINDS.get((recipient.role or "").lower(), ())
    kept = []
    for insight in insights:
        area = insight["context"].get("area")
        if insight["kind"] not in report.kinds:
            continue
        if report.areas and area is not None and area not in report.areas:
            continue
        if mine and area is not None and area not in mine:
            continue
        kept.append(insight)

    def weight(i: dict) -> tuple:
        w = float(i["impact"] or 0)
        area = i["context"].get("area")
        if mine and area in mine:
            w *= AREA_WEIGHT
        if i["kind"] in role_kinds:
            w *= ROLE_WEIGHT
        general = mine and area is None    # product-wide insights fill the places left
        return (general, -w, i["rank"])

    return sorted(kept, key=weight)[: report.top]


def funnel_windows(config: ProductConfig) -> dict[str, int]:
    return {f.name: f.window_days for f in config.funnels}


def greeting(name: str, now_local: datetime) -> str:
    part = "morning" if now_local.hour < 12 else "afternoon" if now_local.hour < 18 else "evening"
    return f"Good {part}, {name}" if name else f"Good {part}"


def build_digest(conn: duckdb.DuckDBPyConnection, config: ProductConfig, report: Report, recipient: Recipient,
                 period: Period, *, public_url: str, unsubscribe_url: str, now: datetime,
                 insights: list[dict] | None = None, kpi_tiles: tuple[Kpi, ...] | None = None) -> Digest:
    """One recipient's digest (`insights` and `kpi_tiles` may be passed in when shared by recipients)."""
    tz = recipient.timezone or config.timezone
    local_now = now.astimezone(ZoneInfo(tz))
    insights = open_insights(conn, period) if insights is None else insights
    chosen = choose(insights, report, recipient)
    base = public_url.rstrip("/")
    items = tuple(DigestInsight(
        insight_id=i["insight_id"], kind=i["kind"], status=i["status"], title=i["title"], summary=i["summary"],
        recommendation=i["recommendation"], owner=i["context"].get("owner"), area=i["context"].get("area"),
        evidence=tuple(evidence_rows(i["evidence"])), url=f"{base}/insights/{i['insight_id']}",
        chart=insight_series(conn, i["evidence"], period.end)) for i in chosen)
    empty = None
    if not items:
        empty = (f"No open {', '.join(report.kinds)} insights as of {period.end:%d %B %Y}"
                 + (f" in {', '.join(recipient.areas)}" if recipient.areas else "") + ": nothing needs your attention.")
    return Digest(
        profile=report.name, cadence=report.cadence, title=report.title, product=config.product_name,
        period_start=period.start, period_end=period.end, period_label=period.label,
        recipient_email=recipient.email, recipient_name=recipient.name, recipient_role=recipient.role,
        recipient_timezone=tz, greeting=greeting(recipient.name, local_now),
        sent_label=f"{local_now:%d %B %Y, %H:%M} ({tz})",
        kpis=kpis(conn, report.kpis, period, funnel_windows(config)) if kpi_tiles is None else kpi_tiles,
        insights=items, dashboard_url=base + "/", unsubscribe_url=unsubscribe_url, empty_note=empty)
