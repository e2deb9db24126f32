"""Charts in pages: snapshot rows into the email's chart data model (delivery.model.Series), the email's
Vega-Lite specs (delivery.charts) with what a page adds, and the text alternative of every chart.

- `series_from_rows(rows, ...)` builds a Series from rows as the snapshot queries give them: `{date, value}`
  with the anomaly band either flat (`expected`, `lower`, `upper`) or nested (`anomaly: {...}`, as in
  queries.metric_series points). Days without a row are gaps (None), never zeros. Both halves of the dashboard
  draw their daily series through it, so a series is the same Series the email charts.
- `line_spec` / `sparkline_spec`: delivery.charts.series_chart / sparkline (the same specs the email renders to
  PNG), drawn by static/charts.js at the figure's width (`width: "container"`) and in the page's theme.
- `mark_span` and `mark_day` add an anomaly episode (a shaded span) and a second marked day (a change point
  when the series' marker is an anomaly) to a series_chart spec.
- `describe(series)` is the text alternative: the span, the latest value, the range, the flagged days and the
  marked day, in words (the macro puts it in a visually hidden paragraph; pages add a data table too).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from typing import Any

from hitcraft_assets.delivery import charts
from hitcraft_assets.delivery.evidence import number
from hitcraft_assets.delivery.model import Series

EPISODE = "#f59e0b"       # the anomaly episode's span: a translucent amber wash, under the lines


def _day(value: Any) -> date:
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def series_from_rows(rows: Iterable[Mapping[str, Any]], *, title: str, start: date | None = None,
                     end: date | None = None, date_key: str = "date", value_key: str = "value",
                     percent: bool = False, band: bool = True, marker: date | None = None,
                     marker_label: str | None = None) -> Series:
    """A daily Series from `rows`, one day each from `start` to `end` (default: the rows' first and last day);
    a day without a row, or with a null value, is a gap. With `band`, the expected value and range of the rows
    that carry them (flat keys or a nested `anomaly` dict); the band is left out when no row has one. A
    `marker` outside the days is dropped."""
    by_day: dict[date, Mapping[str, Any]] = {}
    for r in rows:
        if r.get(date_key) is not None:
            by_day[_day(r[date_key])] = r
    if start is None or end is None:
        if not by_day:
            days: tuple[date, ...] = ()
        else:
            start = start or min(by_day)
            end = end or max(by_day)
    if start is not None and end is not None:
        days = tuple(start + timedelta(days=i) for i in range((end - start).days + 1))

    def flag(r: Mapping[str, Any] | None, name: str) -> float | None:
        if r is None:
            return None
        nested = r.get("anomaly")
        if isinstance(nested, Mapping):
            return _num(nested.get(name))
        return _num(r.get(name))

    values = tuple(_num(by_day[d].get(value_key)) if d in by_day else None for d in days)
    expected = lower = upper = None
    if band:
        e = tuple(flag(by_day.get(d), "expected") for d in days)
        lo = tuple(flag(by_day.get(d), "lower") for d in days)
        hi = tuple(flag(by_day.get(d), "upper") for d in days)
        if any(v is not None for v in lo + hi):
            expected, lower, upper = e, lo, hi
    if marker is not None and (not days or not days[0] <= marker <= days[-1]):
        marker, marker_label = None, None
    return Series(title=title, dates=days, values=values, expected=expected, lower=lower, upper=upper,
                  marker=marker, marker_label=marker_label if marker else None, percent=percent)


# -- specs -------------------------------------------------------------------------------------------

def line_spec(series: Series, *, height: int = 180) -> dict:
    """delivery.charts.series_chart at the figure's width."""
    spec = charts.series_chart(series, height=height)
    spec["width"] = "container"
    if "title" in spec:
        # cut a long title at the plot's width: Vega fits the title into the width too, and a phone would
        # otherwise get a plot as narrow as the title is long
        spec["title"]["limit"] = {"expr": "width"}
    return spec


def sparkline_spec(series: Series, *, width: int = 120, height: int = 32) -> dict:
    """delivery.charts.sparkline, at a fixed size (a KPI tile)."""
    return charts.sparkline(series, width=width, height=height)


def mark_span(spec: dict, start: date, end: date, label: str = "episode") -> dict:
    """Shade [start, end] (an anomaly episode, whole days) under the lines of a series_chart spec, labelled at
    the bottom. Returns the spec (changed in place)."""
    data = {"values": [{"date": start.isoformat(), "end": (end + timedelta(days=1)).isoformat(), "label": label}]}
    x = charts._x()
    spec["layer"] = [
        {"data": data, "mark": {"type": "rect", "color": EPISODE, "opacity": 0.18},
         "encoding": {"x": x, "x2": {"field": "end"}}},
        {"data": data, "mark": {"type": "text", "color": charts.MUTED, "fontSize": 11, "align": "left",
                                "baseline": "bottom", "dx": 3, "dy": -3, "y": {"expr": "height"}},
         "encoding": {"x": x, "text": {"field": "label", "type": "nominal"}}},
        *spec["layer"],
    ]
    return spec


def mark_day(spec: dict, day: date, label: str) -> dict:
    """A second marked day on a series_chart spec (e.g. the change point when the marker is the anomaly): a
    dashed rule in the muted ink with its label at the bottom, so it never covers the marker's label on top."""
    data = {"values": [{"date": day.isoformat(), "label": label}]}
    x = charts._x()
    spec["layer"] = [*spec["layer"],
                     {"data": data, "mark": {"type": "rule", "color": charts.INK, "strokeWidth": 1.25,
                                             "strokeDash": [5, 3]},
                      "encoding": {"x": x}},
                     {"data": data, "mark": {"type": "text", "color": charts.INK, "fontSize": 11, "align": "left",
                                             "baseline": "bottom", "dx": 4, "dy": -16, "y": {"expr": "height"}},
                      "encoding": {"x": x, "text": {"field": "label", "type": "nominal"}}}]
    return spec


# -- text alternatives ---------------------------------------------------------------------------------------

def _fmt(value: float | None, series: Series) -> str:
    return number(value, percent=series.percent)


def _when(d: date) -> str:
    return f"{d.day} {d:%b %Y}"


def describe(series: Series, *, episode: tuple[date, date] | None = None,
             second_mark: tuple[date, str] | None = None) -> str:
    """The chart in words: what a screen reader reads instead of the picture."""
    present = [(d, v) for d, v in zip(series.dates, series.values) if v is not None]
    if not present:
        return f"{series.title}: no values in this period."
    first, last = present[0], present[-1]
    low = min(present, key=lambda p: p[1])
    high = max(present, key=lambda p: p[1])
    parts = [f"{series.title}, daily, {_when(series.dates[0])} to {_when(series.dates[-1])} "
             f"({len(present)} of {len(series.dates)} days with a value).",
             f"First {_fmt(first[1], series)} on {_when(first[0])}, latest {_fmt(last[1], series)} on {_when(last[0])}; "
             f"lowest {_fmt(low[1], series)} on {_when(low[0])}, highest {_fmt(high[1], series)} on {_when(high[0])}."]
    if series.lower is not None and series.upper is not None:
        flagged = [(d, v, lo, hi) for d, v, lo, hi in zip(series.dates, series.values, series.lower, series.upper)
                   if lo is not None and hi is not None]
        if flagged:
            shown = "; ".join(f"{_when(d)}: {_fmt(v, series)} against a normal range of {_fmt(lo, series)} to "
                              f"{_fmt(hi, series)}" for d, v, lo, hi in flagged[:5])
            more = f" and {len(flagged) - 5} more" if len(flagged) > 5 else ""
            parts.append(f"Flagged days: {shown}{more}.")
    if series.marker is not None:
        parts.append(f"Marked: {series.marker_label or 'day'} on {_when(series.marker)}.")
    if second_mark is not None:
        parts.append(f"Also marked: {second_mark[1]} on {_when(second_mark[0])}.")
    if episode is not None:
        parts.append(f"Shaded: the anomaly episode from {_when(episode[0])} to {_when(episode[1])}.")
    return " ".join(parts)


def table_rows(series: Series) -> list[dict]:
    """The chart's data as table rows (newest first): day, value, and the normal range where there is one."""
    out = []
    for i in range(len(series.dates) - 1, -1, -1):
        lo = series.lower[i] if series.lower is not None else None
        hi = series.upper[i] if series.upper is not None else None
        out.append({"date": series.dates[i], "value": _fmt(series.values[i], series),
                    "range": f"{_fmt(lo, series)} – {_fmt(hi, series)}" if lo is not None and hi is not None else "",
                    "flagged": lo is not None and hi is not None})
    return out
