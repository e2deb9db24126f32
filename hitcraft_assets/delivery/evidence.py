"""An insight's evidence as a person reads it: labelled rows of numbers, and the daily series to chart.

Every value shown is taken from the insight's `evidence` JSON or from the analysis tables, never computed
anew, so the email says what the insight says.
"""

from __future__ import annotations

import math
from datetime import date, timedelta

import duckdb

from hitcraft_assets.delivery.model import Series

CHART_DAYS = 42


def number(value, *, percent: bool = False, signed: bool = False) -> str:
    """A number for people: thousands separators, at most three significant decimals, percentages with
    one decimal below 10%."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    value = float(value)
    if percent:
        pct = value * 100
        text = f"{pct:+.1f}%" if signed else f"{pct:.1f}%"
        if abs(pct) >= 10:
            text = f"{pct:+.0f}%" if signed else f"{pct:.0f}%"
        return text
    sign = "+" if signed and value > 0 else ""
    if abs(value) >= 1000:
        return f"{sign}{value:,.0f}"
    if abs(value) >= 100 or value == int(value):
        return f"{sign}{value:,.0f}" if value == int(value) else f"{sign}{value:,.1f}"
    return f"{sign}{value:.3g}"


def strength(q) -> str:
    """The strength of the evidence in words, from a q-value (the q-value itself stays in the row)."""
    if q is None:
        return "n/a"
    q = float(q)
    word = ("very strong" if q < 1e-6 else "strong" if q < 1e-3 else "moderate" if q < 0.01 else
            "some" if q <= 0.05 else "weak")
    return f"{word} (q = {q:.2g})"


def evidence_rows(evidence: dict) -> list[tuple[str, str]]:
    """The numbers behind an insight, lead facet first, as (label, value) rows."""
    conversion = bool(evidence.get("conversion"))
    rows: list[tuple[str, str]] = []
    dimension, segment = evidence.get("dimension"), evidence.get("segment")
    if dimension and dimension != "all":
        rows.append(("Segment", f"{dimension} = {segment}"))
    facets = list(evidence.get("facets") or [])
    lead = evidence.get("lead")
    if lead in facets:
        facets.remove(lead)
        facets.insert(0, lead)
    for facet in facets:
        block = evidence.get(facet) or {}
        if facet == "comparison":
            rows += [("In the segment", number(block.get("segment_value"), percent=conversion)),
                     ("Everyone else", number(block.get("rest_value"), percent=conversion)),
                     ("Users in the segment", number(block.get("segment_n"))),
                     ("Evidence", strength(block.get("q_value")))]
            if block.get("significant_since"):
                rows.append(("Significant since", str(block["significant_since"])))
        elif facet == "new":
            rows += [("First seen", str(block.get("first_seen"))),
                     ("Days of data without it before", number(block.get("days_before")))]
            if block.get("new") == "event":
                rows += [("Events since", number(block.get("events"))), ("Users since", number(block.get("users")))]
                rows += [(f"Among {w['segment']} ({w['dimension']})",
                          f"{number(w['share'], percent=True)} of the events, "
                          f"{number(w.get('share_of_users'), percent=True)} of users") for w in block.get("where") or []]
            else:
                rows.append(("Users a day since", number(block.get("users_a_day"))))
            rows.append(("Evidence", strength(block.get("q_value"))))
        elif facet == "retention":
            rows += [(f"Came back, cohorts {block.get('recent_from')} to {block.get('recent_to')}",
                      f"{number(block.get('recent_successes'))} of {number(block.get('recent_trials'))} "
                      f"({number(block.get('recent_rate'), percent=True)})"),
                     (f"Before, cohorts {block.get('baseline_from')} to {block.get('baseline_to')}",
                      f"{number(block.get('baseline_successes'))} of {number(block.get('baseline_trials'))} "
                      f"({number(block.get('baseline_rate'), percent=True)})"),
                     ("Evidence", strength(block.get("q_value")))]
        elif facet == "change_point":
            rows += [("Changed on", str(block.get("date"))),
                     ("Before → after", f"{number(block.get('mean_before'), percent=conversion)} → "
                                        f"{number(block.get('mean_after'), percent=conversion)}")]
        elif facet == "dropoff":
            rows += [(f"Entered on {block.get('cohort_date')}", number(block.get("entrants"))),
                     (f"Lost before {block.get('step_event')}",
                      f"{number(block.get('users_lost'))} of {number(block.get('users_prev'))}"),
                     ("Drop-off", number(block.get("drop_rate"), percent=True))]
        elif facet == "trend":
            rows += [("Last 7 days (a day)", number(block.get("current_7d"), percent=conversion)),
                     ("Trend line over 28 days", number(block.get("trend_change"), percent=True, signed=True)),
                     ("Last 28 days against the 28 before", number(block.get("pct_change_28d"), percent=True,
                                                                  signed=True)),
                     ("Trend", f"{block.get('trend')}, {strength(block.get('q_value'))}")]
        elif facet == "anomaly":
            rows += [("On", str(block.get("metric_date"))),
                     ("Observed", number(block.get("observed"), percent=conversion)),
                     ("Expected", f"{number(block.get('expected'), percent=conversion)} "
                                  f"(normal range {number(block.get('lower'), percent=conversion)}–"
                                  f"{number(block.get('upper'), percent=conversion)})"),
                     ("Evidence", strength(block.get("q_value")))]
        elif facet == "persisted":
            rows += [("Jumped on", str(block.get("anomaly_date"))),
                     ("Expected then", number(block.get("expected"), percent=conversion)),
                     ("Last 7 days", number(block.get("current_7d"), percent=conversion))]
    seen, out = set(), []
    for label, value in rows:
        if (label, value) not in seen:
            seen.add((label, value))
            out.append((label, value))
    return out


def marker(evidence: dict) -> tuple[date | None, str | None]:
    """The day to mark on the chart: the lead facet's day (an anomaly, a lasting jump, a change point)."""
    candidates = [("anomaly", "metric_date", "anomaly"), ("persisted", "anomaly_date", "jump"),
                  ("change_point", "date", "change")]
    candidates.sort(key=lambda c: c[0] != evidence.get("lead"))
    for facet, key, label in candidates:
        block = evidence.get(facet) or {}
        if block.get(key):
            return date.fromisoformat(str(block[key])[:10]), label
    return None, None


def insight_series(conn: duckdb.DuckDBPyConnection, evidence: dict, as_of: date, days: int = CHART_DAYS) -> Series | None:
    """The insight's own series over the `days` before `as_of`, with the anomaly band on flagged days."""
    metric, dimension, segment = evidence.get("metric"), evidence.get("dimension") or "all", evidence.get("segment") or "all"
    if not metric:
        return None
    start = as_of - timedelta(days=days - 1)
    if metric.startswith("funnel:"):
        _, funnel, step = metric.split(":", 2)
        found = conn.execute(
            "select cohort_date, conversion_from_prev from analytics.funnel_steps where funnel = ? and step = ? "
            "and dimension = ? and segment = ? and cohort_date between ? and ?",
            [funnel, int(step.removeprefix("step")), dimension, segment, start, as_of]).fetchall()
    else:
        found = conn.execute(
            "select metric_date, value from analytics.daily_metrics where metric = ? and dimension = ? "
            "and segment = ? and metric_date between ? and ?", [metric, dimension, segment, start, as_of]).fetchall()
    if not found:
        return None
    band = {d: (e, lo, hi) for d, e, lo, hi in conn.execute(
        "select metric_date, expected, lower, upper from analytics.anomalies where metric = ? and dimension = ? "
        "and segment = ? and metric_date between ? and ?", [metric, dimension, segment, start, as_of]).fetchall()}
    values = dict(found)
    dates = tuple(start + timedelta(days=i) for i in range(days))
    mark, mark_label = marker(evidence)
    label = str(evidence.get("label") or metric)
    title = label if dimension == "all" else f"{dimension} = {segment}: {label}"   # the segment first: titles get cut
    return Series(
        title=title, dates=dates, values=tuple(values.get(d) for d in dates),
        expected=tuple(band.get(d, (None,))[0] for d in dates) if band else None,
        lower=tuple(band[d][1] if d in band else None for d in dates) if band else None,
        upper=tuple(band[d][2] if d in band else None for d in dates) if band else None,
        marker=mark if mark and start <= mark <= as_of else None, marker_label=mark_label,
        percent=bool(evidence.get("conversion")))
