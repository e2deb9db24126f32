"""Vega-Lite specs of the dashboard's explorer, funnel, retention, data-quality and report charts, in the style of
hitcraft_assets/delivery/charts.py (whose palette, axes and config they share): pure functions, plain data in, a
JSON-able dict out, the data inline, never a URL. The emails may import them from here when they need them.

Every spec is `width: "container"` (the figure's width: the page decides, down to a 360 px phone) with a fixed
height. The categorical palette is chosen to read on both themes: every colour is at least 3:1 against white
and against the dark theme's card (#111827), so a line keeps its contrast whichever background the chart
is drawn on. Colour is never the only cue: flagged days are diamonds, incomplete retention buckets carry an
asterisk and a dashed outline, the bars of the quality chart are labelled by status in the legend and the
table, and every chart has a table and a text summary beside it.

Also here: the small formatters (`fmt_int`, `fmt_pct`, `fmt_duration`, `fmt_day`) that label the charts and
the tables under them, so a chart and its table always print a number the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from hitcraft_assets.delivery.charts import (
    GRID,
    INK,
    LINE,
    MARKER,
    MUTED,
    VEGA_LITE_SCHEMA,
    X_AXIS,
    _config,
    _x,
    _y_axis,
    series_chart,
)
from hitcraft_assets.delivery.evidence import number
from hitcraft_assets.delivery.model import Series

# >= 3:1 against white and against #111827 (measured with the WCAG formula), in an order that keeps
# neighbours apart: blue, orange, green, violet, rose, cyan, amber, pink, grey, teal
PALETTE = ("#2563eb", "#c2410c", "#047857", "#7c3aed", "#e11d48", "#0e7490", "#a16207", "#db2777", "#6b7280",
           "#0d9488")
PASSED = "#2563eb"
WARNED = "#b45309"       # amber 5.0:1 on white
HELD = "#dc2626"         # red 4.8:1 on white, 3.7:1 on #111827
MISSING = "#6b7280"      # grey 4.8:1
CELL_INK = "#111827"     # a label on a pale cell, in both themes (charts.js swaps only the theme's inks)
STATUS_COLOURS = {"sent": "#047857", "outbox": "#2563eb", "sending": "#a16207", "unknown": "#a16207",
                  "failed": "#dc2626", "refused": "#e11d48", "unsubscribed": "#6b7280", "skipped_empty": "#9ca3af"}


# -- formatters --------------------------------------------------------------------------------------

def fmt_int(n: float | int | None) -> str:
    return "—" if n is None else f"{round(n):,}"


def fmt_num(x: float | None, percent: bool = False) -> str:
    """A metric value as the emails and the core pages write it (delivery.evidence.number)."""
    return number(x, percent=percent)


def fmt_pct(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x * 100:.{digits}f}%"


def fmt_duration(seconds: float | None) -> str:
    """12 s, 4 min 10 s, 2 h 5 min, 3 d 4 h: the two largest units."""
    if seconds is None or (isinstance(seconds, float) and not math.isfinite(seconds)):
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min" + (f" {s % 60} s" if s % 60 else "")
    if s < 86400:
        return f"{s // 3600} h" + (f" {s % 3600 // 60} min" if s % 3600 // 60 else "")
    return f"{s // 86400} d" + (f" {s % 86400 // 3600} h" if s % 86400 // 3600 else "")


def fmt_day(d: date | None, year: bool = True) -> str:
    if d is None:
        return "—"
    return d.strftime("%-d %b %Y" if year else "%-d %b")


def colours(n: int) -> list[str]:
    return [PALETTE[i % len(PALETTE)] for i in range(n)]


def _base(height: int, values: list[dict]) -> dict:
    spec = {"$schema": VEGA_LITE_SCHEMA, "width": "container", "height": height,
            "autosize": {"type": "fit", "contains": "padding"},
            "padding": {"left": 4, "right": 12, "top": 6, "bottom": 4},
            "config": _config(), "data": {"values": values}}
    return spec


def _legend(n: int) -> dict:
    # below the plot, in columns, so that a phone wraps it instead of widening the chart
    return {"orient": "bottom", "direction": "horizontal", "columns": min(n, 3), "title": None, "labelLimit": 180,
            "symbolType": "stroke", "symbolStrokeWidth": 3, "symbolOpacity": 1, "labelFontSize": 12,
            "labelColor": MUTED}


# -- metrics explorer --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChangeMark:
    """A change point of one series: the day the level shifted, and what it shifted by (for the tooltip)."""

    series: str
    day: date
    label: str


def metric_chart(series: Sequence[Series], change_points: Sequence[ChangeMark] = (), *, height: int = 280) -> dict:
    """The explorer's chart: one line per series (segment), coloured, with a legend when there are several; on
    flagged days (where a series has `lower`/`upper`) the expected range as a band and the observed value as a
    diamond; each change point as a dashed rule. One series reuses delivery.charts.series_chart (its band,
    dashed expected line and a marker) and adds the flagged days and every change point on top."""
    if not series:
        raise ValueError("metric_chart needs at least one series")
    if len(series) == 1:
        return _single_metric_chart(series[0], change_points, height)
    percent = series[0].percent
    rows = []
    for s in series:
        for i, d in enumerate(s.dates):
            v = _num(s.values[i])
            lo, hi = (_num(s.lower[i]) if s.lower else None), (_num(s.upper[i]) if s.upper else None)
            prev_gap = i == 0 or s.values[i - 1] is None
            next_gap = i == len(s.dates) - 1 or s.values[i + 1] is None
            rows.append({"date": d.isoformat(), "series": s.title, "value": v, "lower": lo, "upper": hi,
                         "expected": _num(s.expected[i]) if s.expected else None,
                         "flagged": lo is not None and hi is not None, "solo": v is not None and prev_gap and next_gap})
    names = [s.title for s in series]
    colour = {"field": "series", "type": "nominal", "scale": {"domain": names, "range": colours(len(names))},
              "legend": _legend(len(names))}
    no_legend = colour     # the layers share one colour scale; a `legend: None` on any of them would drop it
    combined = Series("", tuple(d for s in series for d in s.dates), tuple(v for s in series for v in s.values),
                      percent=percent)
    y = {"field": "value", "type": "quantitative", "title": None, "axis": _y_axis(combined),
         "scale": {"zero": False, **({"domainMax": 1, "clamp": True} if percent and _max(series) <= 1 else {})}}
    flagged = [{"filter": "datum.flagged"}]
    layers: list[dict] = [
        {"mark": {"type": "area", "opacity": 0.18, "invalid": "break-paths-show-domains"},
         "encoding": {"y": {**y, "field": "lower"}, "y2": {"field": "upper"}, "color": no_legend,
                      "detail": {"field": "series"}}},
        {"transform": flagged, "mark": {"type": "rule", "strokeWidth": 5, "opacity": 0.35},
         "encoding": {"y": {**y, "field": "lower"}, "y2": {"field": "upper"}, "color": no_legend}},
        {"mark": {"type": "line", "strokeWidth": 2, "invalid": "break-paths-show-domains", "strokeCap": "round",
                  "strokeJoin": "round"},
         "encoding": {"y": y, "color": colour}},
        {"transform": [{"filter": "datum.solo"}], "mark": {"type": "point", "filled": True, "size": 24, "opacity": 1},
         "encoding": {"y": y, "color": no_legend}},
        {"transform": flagged, "mark": {"type": "point", "shape": "diamond", "filled": True, "size": 90, "opacity": 1,
                                        "stroke": INK, "strokeWidth": 1},
         "encoding": {"y": y, "color": no_legend}},
        _hover_layer(y, percent, with_series=True),
    ]
    layers += _change_layers(change_points, colour=no_legend)
    return {**_base(height, rows), "encoding": {"x": _x()}, "layer": layers}


def _single_metric_chart(s: Series, change_points: Sequence[ChangeMark], height: int) -> dict:
    marks = sorted(change_points, key=lambda c: c.day)
    base = Series("", s.dates, s.values, s.expected, s.lower, s.upper, percent=s.percent)
    spec = series_chart(base, height=height)
    spec["width"] = "container"
    y_axis = spec["layer"][-2]["encoding"]["y"]       # the observed line's y (the last two layers: line, solo)
    y = {**y_axis, "field": "value"}
    for row in spec["data"]["values"]:
        row["flagged"] = row.get("lower") is not None and row.get("upper") is not None
        row["series"] = s.title
    flagged = [{"filter": "datum.flagged"}]
    spec["layer"] = [
        {"transform": flagged, "mark": {"type": "rule", "color": LINE, "strokeWidth": 5, "opacity": 0.3},
         "encoding": {"y": {**y, "field": "lower"}, "y2": {"field": "upper"}}},
        *spec["layer"],
        {"transform": flagged, "mark": {"type": "point", "shape": "diamond", "filled": True, "size": 90, "opacity": 1,
                                        "color": MARKER, "stroke": INK, "strokeWidth": 1},
         "encoding": {"y": y}},
        _hover_layer(y, s.percent, with_series=False),
        *_change_layers(marks, single=True),
    ]
    return spec


def _hover_layer(y: dict, percent: bool, *, with_series: bool) -> dict:
    """Invisible points that carry the tooltip (a keyboard user reads the same numbers in the table)."""
    fmt = ".1%" if percent else ",.4~f"
    tooltip = [{"field": "date", "type": "temporal", "title": "day", "format": "%-d %b %Y", "scale": {"type": "utc"}}]
    if with_series:
        tooltip.append({"field": "series", "type": "nominal", "title": "segment"})
    tooltip += [{"field": "value", "type": "quantitative", "title": "value", "format": fmt},
                {"field": "lower", "type": "quantitative", "title": "expected from", "format": fmt},
                {"field": "upper", "type": "quantitative", "title": "expected to", "format": fmt}]
    return {"mark": {"type": "point", "opacity": 0, "size": 120}, "encoding": {"y": y, "tooltip": tooltip}}


def _change_layers(marks: Sequence[ChangeMark], single: bool = False, colour: dict | None = None) -> list[dict]:
    """A dashed rule and a label per change point: in the marker's colour on a single series; with `colour` (the
    segments' colour encoding) in its segment's colour, so a change point of several is read against its line
    (the marker's orange is also a segment colour), labelled in ink with the segment's name."""
    if not marks:
        return []
    data = {"values": [{"date": m.day.isoformat(), "series": m.series, "label": m.label,
                        "text": "change" if single else f"change: {m.series}"} for m in marks]}
    tooltip = [{"field": "series", "type": "nominal", "title": "segment"},
               {"field": "label", "type": "nominal", "title": "change point"}]
    rule = {"type": "rule", "strokeWidth": 1.5 if colour is None else 2, "strokeDash": [4, 3]}
    rule_encoding: dict = {"x": _x(), "tooltip": tooltip}
    if colour is None:
        rule["color"] = MARKER
    else:
        rule_encoding["color"] = colour
    return [
        {"data": data, "mark": rule, "encoding": rule_encoding},
        {"data": data, "mark": {"type": "text", "color": MARKER if colour is None else INK, "fontSize": 11,
                                "fontWeight": 600, "baseline": "top", "align": "left", "dx": 3, "y": 2, "limit": 120},
         "encoding": {"x": _x(), "text": {"field": "text"}}},
    ]


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _max(series: Sequence[Series]) -> float:
    return max((v for s in series for v in s.values if v is not None), default=0.0)


# -- funnels -----------------------------------------------------------------------------------------

def step_label(step: int, event: str) -> str:
    return f"{step}. {event}"


def funnel_chart(steps: Sequence[dict], *, step_px: int = 58) -> dict:
    """Horizontal step bars: the users who reached each step (drawn over a pale bar of the entrants, so the
    drop-off shows), each labelled above with the step and the median time from the previous step and at its
    end with the users and the conversion from the start. The labels sit above the bars rather than on an
    axis, so a phone keeps the whole width for the bars. `steps` are the rows of queries.funnel_report."""
    entrants = max((s["users"] or 0 for s in steps if s["step"] == 1), default=0)
    rows = []
    for s in steps:
        median = s.get("median_seconds_from_prev")
        head = step_label(s["step"], s["step_event"])
        if s["step"] > 1 and median is not None:
            head += f" · median {fmt_duration(median)} after step {s['step'] - 1}"
        rows.append({"label": step_label(s["step"], s["step_event"]), "head": head, "step": s["step"],
                     "users": s["users"] or 0, "entrants": entrants,
                     "text": f"{fmt_int(s['users'])} ({fmt_pct(s.get('conversion_from_start'))})",
                     "from_prev": s.get("conversion_from_prev"), "from_start": s.get("conversion_from_start"),
                     "median": fmt_duration(median) if s["step"] > 1 else "—"})
    x = {"type": "quantitative", "title": None, "scale": {"domain": [0, max(1, entrants) * 1.45], "nice": False},
         "axis": None}
    y = {"field": "label", "type": "nominal", "sort": [r["label"] for r in sorted(rows, key=lambda r: r["step"])],
         "title": None, "axis": None, "scale": {"paddingInner": 0, "paddingOuter": 0}}
    tooltip = [{"field": "label", "title": "step"}, {"field": "users", "title": "users", "format": ","},
               {"field": "from_prev", "title": "from the previous step", "format": ".1%"},
               {"field": "from_start", "title": "from the start", "format": ".1%"},
               {"field": "median", "title": "median time from the previous step"}]
    bar = {"type": "bar", "cornerRadiusEnd": 2, "height": 22, "yOffset": 10}
    # the plot's height grows with the steps (a fixed number: with `width: "container"` a discrete
    # {"step": ...} height draws a warning from Vega-Lite)
    return {**_base(step_px * len(rows), rows),
            "encoding": {"y": y},
            "layer": [
                {"mark": {**bar, "color": GRID}, "encoding": {"x": {**x, "field": "entrants"}}},
                {"mark": {**bar, "color": LINE}, "encoding": {"x": {**x, "field": "users"}, "tooltip": tooltip}},
                {"mark": {"type": "text", "align": "left", "baseline": "middle", "dx": 6, "yOffset": 10,
                          "fontSize": 12, "fontWeight": 600, "color": INK},
                 "encoding": {"x": {**x, "field": "users"}, "text": {"field": "text"}}},
                {"mark": {"type": "text", "align": "left", "baseline": "middle", "yOffset": -14, "x": 0,
                          "fontSize": 12, "color": INK, "limit": {"expr": "width"}},
                 "encoding": {"text": {"field": "head"}}},
            ]}


def funnel_breakdown_chart(groups: Sequence[dict], *, bar_px: int = 13) -> dict:
    """Grouped horizontal bars: for every segment of the dimension (a row each, named on the axis), its
    conversion from entry to each step after the first (one bar per step, a colour per step, labelled with the
    rate). Horizontal, so that many segments and long step names still fit a phone; the segments keep the
    order they come in. `groups` are queries.funnel_report's groups (by range) of one dimension."""
    rows, steps = [], []
    names = [g["segment"] for g in groups]
    for g in groups:
        for s in g["steps"]:
            if s["step"] == 1:
                continue
            label = f"to {step_label(s['step'], s['step_event'])}"
            if label not in steps:
                steps.append(label)
            rows.append({"segment": g["segment"], "label": label, "step": s["step"],
                         "conversion": s["conversion_from_start"], "users": s["users"], "entrants": g["entrants"],
                         "text": fmt_pct(s["conversion_from_start"], 0)})
    colour = {"field": "label", "type": "nominal", "scale": {"domain": steps, "range": colours(len(steps))},
              "legend": {**_legend(len(steps)), "columns": 1, "symbolType": "square", "labelLimit": 300}}
    tooltip = [{"field": "segment"}, {"field": "label", "title": "step"},
               {"field": "conversion", "title": "converted from entry", "format": ".1%"},
               {"field": "users", "title": "users", "format": ","}, {"field": "entrants", "format": ","}]
    x = {"field": "conversion", "type": "quantitative", "title": "converted from entry",
         "scale": {"domain": [0, 1.15], "nice": False},
         "axis": {"format": "~%", "values": [0, 0.25, 0.5, 0.75, 1], "grid": True, "titleColor": MUTED}}
    return {**_base((bar_px * max(1, len(steps)) + 10) * len(names) + 40, rows),
            "encoding": {"y": {"field": "segment", "type": "nominal", "sort": names, "title": None,
                               "axis": {"labelColor": INK, "labelFontSize": 12, "labelLimit": 120, "domain": False,
                                        "ticks": False}},
                         "yOffset": {"field": "label", "sort": steps},
                         "x": x},
            "layer": [
                {"mark": {"type": "bar", "cornerRadiusEnd": 2}, "encoding": {"color": colour, "tooltip": tooltip}},
                {"mark": {"type": "text", "align": "left", "baseline": "middle", "dx": 4, "fontSize": 11,
                          "color": INK},
                 "encoding": {"text": {"field": "text"}}},
            ]}


def funnel_trend_chart(days: Sequence[dict], open_from: date | None = None, *, height: int = 220) -> dict:
    """Conversion from entry to each later step, by entry day (a line per step). Entry days from `open_from` on
    are still inside their conversion window: their points are hollow and the span is shaded ("still
    converting"). `days` are queries.funnel_report's groups by day (dimension all)."""
    rows, names = [], []
    for g in days:
        for s in g["steps"]:
            if s["step"] == 1:
                continue
            label = step_label(s["step"], s["step_event"])
            if label not in names:
                names.append(label)
            is_open = open_from is not None and g["cohort_date"] >= open_from
            rows.append({"date": g["cohort_date"].isoformat(), "series": label, "value": s["conversion_from_start"],
                         "users": s["users"], "entrants": g["entrants"], "open": is_open})
    # a calendar day without entrants (a missing or held day) breaks the lines instead of bridging it
    seen = {g["cohort_date"] for g in days}
    if seen:
        first, last = min(seen), max(seen)
        for i in range((last - first).days + 1):
            day = first + timedelta(days=i)
            if day not in seen:
                rows += [{"date": day.isoformat(), "series": label, "value": None, "users": None, "entrants": None,
                          "open": False} for label in names]
    colour = {"field": "series", "type": "nominal", "scale": {"domain": names, "range": colours(len(names))},
              "legend": _legend(len(names))}
    y = {"field": "value", "type": "quantitative", "title": None, "scale": {"domain": [0, 1]},
         "axis": {"format": "~%", "tickCount": 4, "grid": True}}
    tooltip = [{"field": "date", "type": "temporal", "title": "entry day", "format": "%-d %b %Y",
                "scale": {"type": "utc"}},
               {"field": "series", "title": "step"}, {"field": "value", "title": "converted", "format": ".1%"},
               {"field": "users", "title": "users", "format": ","}, {"field": "entrants", "format": ","}]
    layers: list[dict] = []
    last = max((g["cohort_date"] for g in days), default=None)
    if open_from is not None and last is not None and open_from <= last:
        span = {"values": [{"date": open_from.isoformat(), "end": last.isoformat(), "text": "still converting"}]}
        layers += [
            {"data": span, "mark": {"type": "rect", "color": GRID, "opacity": 0.6},
             "encoding": {"x": _x(), "x2": {"field": "end"}}},
            {"data": span, "mark": {"type": "text", "color": MUTED, "fontSize": 11, "align": "left",
                                    "baseline": "bottom", "dx": 3, "dy": -3, "y": {"expr": "height"}},
             "encoding": {"x": _x(), "text": {"field": "text"}}},
        ]
    layers += [
        {"mark": {"type": "line", "strokeWidth": 2, "invalid": "break-paths-show-domains"},
         "encoding": {"y": y, "color": colour}},
        {"mark": {"type": "point", "size": 36, "strokeWidth": 1.5, "opacity": 1},
         "encoding": {"y": y, "color": colour,
                      # hollow on the days still converting; the fill repeats the line colours elsewhere
                      "fill": {"condition": {"test": "datum.open", "value": "transparent"}, "field": "series",
                               "type": "nominal", "scale": colour["scale"], "legend": colour["legend"]},
                      "tooltip": tooltip}},
    ]
    return {**_base(height, rows), "encoding": {"x": _x()}, "layer": layers}


# -- retention ---------------------------------------------------------------------------------------

def retention_heatmap(rows: Sequence[dict], *, cell_height: int = 34) -> dict:
    """The cohort x week heatmap: one rect per (birth week, weeks since birth), the retention rate as its
    colour (0 to 100%) and as its label; a bucket whose week is not over for every member (`complete` false)
    has a dashed outline and an asterisk. `rows` are queries.retention's."""
    cohorts = sorted({r["cohort_week"] for r in rows})
    sizes = {r["cohort_week"]: r["cohort_size"] for r in rows}
    values = []
    for r in rows:
        rate = r["retention_rate"]
        values.append({"cohort": _cohort_label(r["cohort_week"], sizes[r["cohort_week"]]),
                       "cohort_week": r["cohort_week"].isoformat(), "week": f"week {r['weeks_since']}",
                       "weeks_since": r["weeks_since"], "rate": rate, "retained": r["retained_users"],
                       "size": r["cohort_size"], "complete": bool(r["complete"]),
                       "text": fmt_pct(rate, 0) + ("" if r["complete"] else "*")})
    labels = [_cohort_label(c, sizes[c]) for c in cohorts]
    x = {"field": "week", "type": "ordinal", "sort": {"field": "weeks_since"}, "title": "weeks since first seen",
         "scale": {"paddingInner": 0.06},
         "axis": {"orient": "top", "labelAngle": 0, "domain": False, "ticks": False, "labelColor": INK}}
    y = {"field": "cohort", "type": "ordinal", "sort": labels, "title": None, "scale": {"paddingInner": 0.08},
         "axis": {"domain": False, "ticks": False, "labelColor": INK, "labelLimit": 160}}
    tooltip = [{"field": "cohort_week", "title": "cohort (week of)"}, {"field": "week"},
               {"field": "rate", "title": "retained", "format": ".1%"},
               {"field": "retained", "title": "users retained", "format": ","},
               {"field": "size", "title": "cohort size", "format": ","}, {"field": "complete"}]
    spec = {**_base(max(80, cell_height * len(cohorts) + 40), values),
            "encoding": {"x": x, "y": y},
            "layer": [
                {"mark": {"type": "rect", "cornerRadius": 2},
                 "encoding": {"color": {"field": "rate", "type": "quantitative", "title": "retained",
                                        "scale": {"domain": [0, 1], "scheme": "blues"},
                                        "legend": {"format": "~%", "orient": "bottom", "direction": "horizontal",
                                                   "gradientLength": 160, "titleColor": MUTED,
                                                   "labelColor": MUTED}},
                              "tooltip": tooltip}},
                {"transform": [{"filter": "!datum.complete"}],
                 "mark": {"type": "rect", "filled": False, "stroke": INK, "strokeWidth": 1.5, "strokeDash": [3, 3],
                          "cornerRadius": 2}},
                {"mark": {"type": "text", "fontSize": 12, "fontWeight": 600},
                 "encoding": {"text": {"field": "text"},
                              # fixed inks (not the theme's): the cells' blues are the same in both themes
                              "color": {"condition": {"test": "datum.rate >= 0.55", "value": "#ffffff"},
                                        "value": CELL_INK}}},
            ]}
    return spec


def _cohort_label(week: date, size: int) -> str:
    return f"{fmt_day(week, year=False)} ({size:,} users)"


# -- data quality --------------------------------------------------------------------------------------

QUALITY_STATUSES = ("passed", "warned", "held", "no file")
_QUALITY_COLOURS = (PASSED, WARNED, HELD, MISSING)


def quality_days_chart(days: Sequence[dict], *, height: int = 200) -> dict:
    """Rows loaded per day as bars, coloured by the quality gate: passed (blue), warned (amber), held (red, and
    its whole column tinted red), no file (its whole column tinted grey; no bar, since nothing was loaded).
    `days` are {date, rows, status (one of QUALITY_STATUSES), reason}."""
    values = [{"date": d["date"].isoformat(), "rows": d["rows"], "status": d["status"], "reason": d.get("reason") or ""}
              for d in days]
    x = {"field": "date", "type": "temporal", "timeUnit": "utcyearmonthdate", "title": None,
         "axis": {**X_AXIS, "labelOverlap": True}, "scale": {"type": "utc"}}
    colour = {"field": "status", "type": "nominal", "title": None,
              "scale": {"domain": list(QUALITY_STATUSES), "range": list(_QUALITY_COLOURS)},
              "legend": {"orient": "bottom", "direction": "horizontal", "symbolType": "square", "labelColor": MUTED,
                         "labelFontSize": 12, "columns": 4, "symbolOpacity": 1}}
    tooltip = [{"field": "date", "type": "temporal", "timeUnit": "utcyearmonthdate", "title": "day",
                "format": "%-d %b %Y"},
               {"field": "rows", "title": "rows loaded", "format": ","}, {"field": "status"},
               {"field": "reason"}]
    return {**_base(height, values), "encoding": {"x": x},
            "layer": [
                {"transform": [{"filter": "datum.status == 'held' || datum.status == 'no file'"}],
                 "mark": {"type": "bar", "opacity": 0.22},
                 "encoding": {"color": colour, "tooltip": tooltip}},
                {"mark": {"type": "bar", "cornerRadiusEnd": 1},
                 "encoding": {"y": {"field": "rows", "type": "quantitative", "title": None,
                                    "axis": {"format": "~s", "tickCount": 4, "grid": True}},
                              "color": colour, "tooltip": tooltip}},
            ]}


def rejected_reasons_chart(totals: Sequence[dict], *, height_per_reason: int = 30) -> dict:
    """Quarantined lines by reason over the loaded days, as horizontal bars labelled with the count.
    `totals` are {reason, lines}, largest first."""
    values = [{"reason": t["reason"], "lines": t["lines"], "text": fmt_int(t["lines"])} for t in totals]
    top = max((t["lines"] for t in totals), default=1)
    x = {"field": "lines", "type": "quantitative", "title": None, "scale": {"domain": [0, top * 1.25], "nice": False},
         "axis": {"format": ",~f", "tickCount": 3, "grid": True}}
    y = {"field": "reason", "type": "nominal", "sort": "-x", "title": None,
         "axis": {"labelLimit": 200, "labelColor": INK, "labelFontSize": 12, "domain": False, "ticks": False}}
    return {**_base(max(60, height_per_reason * len(values) + 30), values), "encoding": {"y": y, "x": x},
            "layer": [
                {"mark": {"type": "bar", "color": WARNED, "cornerRadiusEnd": 2, "height": {"band": 0.7}},
                 "encoding": {"tooltip": [{"field": "reason"}, {"field": "lines", "format": ","}]}},
                {"mark": {"type": "text", "align": "left", "dx": 4, "color": INK, "fontSize": 12},
                 "encoding": {"text": {"field": "text"}}},
            ]}


# -- reports -------------------------------------------------------------------------------------------

def report_status_chart(counts: Sequence[dict], *, height_per_profile: int = 40) -> dict:
    """Messages in the send ledger per report profile, stacked by send status. `counts` are
    queries.report_counts's rows {profile, status, messages}."""
    statuses = sorted({c["status"] for c in counts}, key=lambda s: list(STATUS_COLOURS).index(s)
                      if s in STATUS_COLOURS else len(STATUS_COLOURS))
    profiles = sorted({c["profile"] for c in counts})
    values = [{"profile": c["profile"], "status": c["status"], "messages": c["messages"]} for c in counts]
    totals: dict[str, int] = {}
    for c in counts:
        totals[c["profile"]] = totals.get(c["profile"], 0) + c["messages"]
    top = max(totals.values(), default=1)
    step = max(1, math.ceil(top / 4))      # whole messages: ticks at 0, step, 2 step ... (never 0.5)
    colour = {"field": "status", "type": "nominal", "title": None,
              "scale": {"domain": statuses, "range": [STATUS_COLOURS.get(s, MUTED) for s in statuses]},
              "legend": {"orient": "bottom", "direction": "horizontal", "symbolType": "square", "columns": 3,
                         "labelColor": MUTED, "labelFontSize": 12}}
    return {**_base(max(80, height_per_profile * len(profiles) + 50), values),
            "mark": {"type": "bar", "height": {"band": 0.65}},
            "encoding": {
                "y": {"field": "profile", "type": "nominal", "title": None, "sort": profiles,
                      "axis": {"labelLimit": 160, "labelColor": INK, "labelFontSize": 12, "domain": False,
                               "ticks": False}},
                "x": {"field": "messages", "type": "quantitative", "title": "messages", "stack": True,
                      "scale": {"domain": [0, step * math.ceil(top / step)], "nice": False},
                      "axis": {"format": "d", "values": list(range(0, top + step, step)), "grid": True}},
                "color": colour,
                "order": {"field": "status"},
                "tooltip": [{"field": "profile"}, {"field": "status"}, {"field": "messages", "format": ","}],
            }}
