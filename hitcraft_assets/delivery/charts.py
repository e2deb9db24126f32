"""Vega-Lite specs for every chart the engine draws: the email renders them to PNG here (`to_png`, through
vl-convert, no browser, no network), and the dashboard will hand the same dicts to vega-embed.

The functions are pure: a :class:`~hitcraft_assets.delivery.model.Series` in, a JSON-able dict out, the data
inline (``data.values``; never a URL). A ``None`` value is a gap: the line breaks there (Vega-Lite's
``invalid: "break-paths-show-domains"``), and a value with gaps on both sides is drawn as a dot so it does not
vanish.

**Colours and dark mode.** Every chart has a solid white background (``background: "#ffffff"``), never a
transparent one. A PNG in an email is shown as is by clients that honour ``prefers-color-scheme`` (Apple Mail,
Outlook.com, the Gmail apps' partial mode), and inverted together with the page by the clients that invert
everything (Gmail's full inversion, Outlook's dark mode). With a transparent background the first group
would draw dark lines on a dark page; with a solid one the chart is always a light card with dark ink, or,
when inverted, a dark card with light ink: readable either way. The palette is chosen for white (every
stroke at least 3:1 against it, text at least 4.5:1) and stays distinct after an RGB inversion
(the blue line becomes amber, the band stays a pale tint of it, the orange marker becomes blue).
"""

from __future__ import annotations

import math
from datetime import date

from hitcraft_assets.delivery.model import Series
from hitcraft_assets.lazy import lazy

vl_convert = lazy("vl_convert")   # imported when a chart is first drawn

VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"   # an identifier; nothing fetches it

BACKGROUND = "#ffffff"
INK = "#1f2937"          # titles, marker label (14.7:1 on white)
MUTED = "#4b5563"        # axis labels (7.6:1)
GRID = "#e5e7eb"
LINE = "#1d4ed8"         # observed values (6.7:1)
EXPECTED = "#4b5563"     # the expected value, dashed
BAND = "#93c5fd"         # the expected range, as a translucent area
MARKER = "#c2410c"       # the marked day (5.2:1)
FONT = "Helvetica, Arial, DejaVu Sans, sans-serif"


def _config() -> dict:
    return {
        "background": BACKGROUND,
        "font": FONT,
        "view": {"stroke": None},
        "axis": {"labelColor": MUTED, "titleColor": MUTED, "labelFontSize": 12, "gridColor": GRID,
                 "domainColor": GRID, "tickColor": GRID},
        "title": {"color": INK, "fontSize": 14, "fontWeight": 600, "anchor": "start", "offset": 8},
    }


def _rows(series: Series) -> list[dict]:
    """One row per day; None stays None (null in JSON: a gap). `solo` marks a value with no neighbour, `last`
    the last value present."""
    n = len(series.dates)
    for name in ("values", "expected", "lower", "upper"):
        column = getattr(series, name)
        if column is not None and len(column) != n:
            raise ValueError(f"series {series.title!r}: {name} has {len(column)} values for {n} dates")
    rows = []
    for i, d in enumerate(series.dates):
        v = series.values[i]
        row = {"date": d.isoformat(), "value": _num(v)}
        for name in ("expected", "lower", "upper"):
            column = getattr(series, name)
            if column is not None:
                row[name] = _num(column[i])
        prev_gap = i == 0 or series.values[i - 1] is None
        next_gap = i == n - 1 or series.values[i + 1] is None
        row["solo"] = v is not None and prev_gap and next_gap
        rows.append(row)
    present = [r for r in rows if r["value"] is not None]
    for r in rows:
        r["last"] = bool(present) and r is present[-1]
    return rows


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None            # NaN, inf -> a gap


# every layer of a chart repeats the same x encoding: layered axes merge, and one layer without this axis
# (`axis: None`) would remove it from the whole chart
X_AXIS = {"format": "%-d %b", "labelAngle": 0, "tickCount": 6, "grid": False, "labelOverlap": True,
          "labelFlush": True}


def _x(axis: dict | None = X_AXIS) -> dict:
    # a UTC scale: ISO dates parse as UTC midnight, and the labels then show the same day in every timezone
    return {"field": "date", "type": "temporal", "scale": {"type": "utc"}, "axis": axis, "title": None}


def _y_axis(series: Series) -> dict:
    axis = {"tickCount": 4, "title": None, "grid": True, "labelPadding": 4}
    if series.percent:
        axis["format"] = "~%"      # the precision follows the tick step: 42%, 42.5%, 43%
    else:
        # 1,200 and 0.35 as written; SI prefixes (12k, 1.5M) only where full numbers would crowd the axis
        biggest = max((abs(v) for v in series.values if v is not None), default=0)
        axis["format"] = "~s" if biggest >= 10_000 else ",~f"
    return axis


def _line_layers(series: Series, y: dict, *, stroke_width: float, solo_size: float) -> list[dict]:
    line = {"mark": {"type": "line", "color": LINE, "strokeWidth": stroke_width, "invalid": "break-paths-show-domains",
                     "strokeCap": "round", "strokeJoin": "round"},
            "encoding": {"y": y}}
    solo = {"transform": [{"filter": "datum.solo"}],
            "mark": {"type": "point", "filled": True, "color": LINE, "size": solo_size, "opacity": 1},
            "encoding": {"y": y}}
    return [line, solo]


def series_chart(series: Series, *, width: int = 520, height: int = 140) -> dict:
    """A daily line of the observed values; with `expected`/`lower`/`upper` the expected range as a shaded area
    and the expected value as a dashed line; the `marker` day as a vertical rule with its label; a percent
    axis when `series.percent`. `width` x `height` is the whole image (title and axes included)."""
    # with a marker, 18px of headroom above (and below) the data keep its label clear of the lines
    scale = {"zero": False, **({"padding": 18} if series.marker is not None else {})}
    observed = [v for v in series.values if v is not None]
    if series.percent and observed and max(observed) <= 1:
        scale.update(domainMax=1, clamp=True)     # a share never reads above 100% (a band is cut there)
    y_field = {"type": "quantitative", "title": None, "axis": _y_axis(series), "scale": scale}
    layers: list[dict] = []
    if series.lower is not None and series.upper is not None:
        layers.append({"mark": {"type": "area", "color": BAND, "opacity": 0.45, "invalid": "break-paths-show-domains"},
                       "encoding": {"y": {**y_field, "field": "lower"}, "y2": {"field": "upper"}}})
    if series.expected is not None:
        layers.append({"mark": {"type": "line", "color": EXPECTED, "strokeWidth": 1.5, "strokeDash": [4, 3],
                                "invalid": "break-paths-show-domains"},
                       "encoding": {"y": {**y_field, "field": "expected"}}})
    layers += _line_layers(series, {**y_field, "field": "value"}, stroke_width=2, solo_size=24)
    if series.marker is not None:
        layers += _marker_layers(series)
    spec = {
        "$schema": VEGA_LITE_SCHEMA,
        "width": width,
        "height": height,
        "autosize": {"type": "fit", "contains": "padding"},
        "padding": {"left": 4, "right": 12, "top": 6, "bottom": 4},
        "config": _config(),
        "data": {"values": _rows(series)},
        "encoding": {"x": _x()},
        "layer": layers,
    }
    if series.title:
        # a long title is cut with an ellipsis rather than widening the image past the email's column
        spec["title"] = {"text": series.title, "limit": width - 16}
    return spec


def _marker_layers(series: Series) -> list[dict]:
    marker = series.marker
    assert marker is not None
    # the label goes on the side of the rule with more room, so it stays inside the plot
    position = _position(series.dates, marker)
    right_half = position > 0.6
    label = series.marker_label or marker.strftime("%-d %b")
    data = {"values": [{"date": marker.isoformat(), "label": label}]}
    rule = {"data": data, "mark": {"type": "rule", "color": MARKER, "strokeWidth": 1.5, "strokeDash": [2, 2]},
            "encoding": {"x": _x()}}
    text = {"data": data,
            "mark": {"type": "text", "color": MARKER, "fontSize": 12, "fontWeight": 600, "baseline": "top",
                     "align": "right" if right_half else "left", "dx": -4 if right_half else 4, "y": 2},
            "encoding": {"x": _x(), "text": {"field": "label", "type": "nominal"}}}
    return [rule, text]


def _position(dates: tuple[date, ...], day: date) -> float:
    if not dates:
        return 0.5
    first, last = min(dates), max(dates)
    span = (last - first).days
    return 0.5 if span <= 0 else (day - first).days / span


def sparkline(series: Series, *, width: int = 120, height: int = 32) -> dict:
    """A tiny line of the observed values, no axes, no title; the last value as a dot."""
    y = {"field": "value", "type": "quantitative", "axis": None, "scale": {"zero": False}}
    last = {"transform": [{"filter": "datum.last"}],
            "mark": {"type": "point", "filled": True, "color": LINE, "size": 16, "opacity": 1},
            "encoding": {"y": y}}
    return {
        "$schema": VEGA_LITE_SCHEMA,
        "width": width,
        "height": height,
        "autosize": {"type": "fit", "contains": "padding"},
        "padding": 3,
        "config": {**_config(), "axis": {"disable": True}},
        "data": {"values": _rows(series)},
        "encoding": {"x": _x(None)},
        "layer": _line_layers(series, y, stroke_width=1.5, solo_size=9) + [last],
    }


def to_png(spec: dict, scale: float = 2) -> bytes:
    """The spec as PNG bytes at `scale` (2: sharp on high-density screens, shown at the spec's width in the
    email). No URL may be fetched (`allowed_base_urls=[]`): the data is inline."""
    return vl_convert.vegalite_to_png(spec, scale=scale, allowed_base_urls=[])
