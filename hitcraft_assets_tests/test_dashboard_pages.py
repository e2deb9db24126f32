"""The dashboard's metrics explorer (/metrics), funnel pages (/funnels, /funnels/{name}) and retention page
(/retention) in a real browser and over HTTP.

Why: these pages are where a person explores the numbers the insights are built from, so they must show the
snapshot's own numbers (checked against direct reads of the snapshot file and against the API's /v1 answer
for the same query), their filters must change what the chart draws (read back from the drawn Vega view, not
only from the HTML), the marks a reader relies on must be there when the data has them (the anomaly band and
flagged days, change points, funnel entry days still converting, incomplete retention buckets), a bad query
value must get a page that says what is wrong (never a 422 or a 500), an empty snapshot must say what is
missing and what to run, and the pages must work with the keyboard, on a phone's width and in the dark theme,
each served in under 200 ms. Every browser test also fails on a console error or a request to another host
(browser.py's `page` fixture).
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
from datetime import date, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from hitcraft_assets.app.web import render, specs
from hitcraft_assets.delivery import charts
from hitcraft_assets.delivery.evidence import number
from hitcraft_assets_tests.api_fixture import ADD_ANOMALIES, read, republish, serving
from hitcraft_assets_tests.browser import (
    Dashboard,
    new_page,
    served_dashboard,
    sign_in,
    wait_for_charts,
)
from hitcraft_assets_tests.test_dashboard_core import cookies_for, get

PAGES = ("/metrics", "/metrics?metric=sessions&dimension=platform", "/metrics?metric=wau", "/funnels",
         "/funnels/Onboarding", "/funnels/Onboarding?dimension=country", "/retention", "/retention?measure=on")

# -- reading what a page drew ---------------------------------------------------------------------------------

# the data of a drawn chart as Vega holds it (dates as ISO strings)
DRAWN_DATA = """(id) => JSON.parse(JSON.stringify(
    document.querySelector(`div.vega[data-spec="${id}"]`).hcView.view.data('source_0')))"""
# every mark item of a drawn chart's scene graph: its type and the properties the tests look at
SCENE = """(id) => {
  const out = [];
  const walk = (node) => {
    if (!node) return;
    if (node.marktype) {
      for (const it of node.items || []) {
        const d = it.datum || {};
        out.push({type: node.marktype, shape: it.shape || null, stroke: it.stroke || null, fill: it.fill || null,
                  dash: it.strokeDash || null, opacity: it.opacity === undefined ? 1 : it.opacity,
                  text: it.text === undefined ? null : String(it.text),
                  series: d.series === undefined ? null : d.series, label: d.label === undefined ? null : d.label,
                  flagged: !!d.flagged, date: d.date === undefined ? null : new Date(d.date).toISOString().slice(0, 10)});
        walk(it);
      }
    } else {
      for (const it of node.items || []) walk(it);
    }
  };
  walk(document.querySelector(`div.vega[data-spec="${id}"]`).hcView.view.scenegraph().root);
  return out;
}"""


def drawn(page, spec_id: str) -> list[dict]:
    return page.evaluate(DRAWN_DATA, spec_id)


def scene(page, spec_id: str) -> list[dict]:
    return page.evaluate(SCENE, spec_id)


def spec_block(page, spec_id: str) -> dict:
    return json.loads(page.locator(f"script#{spec_id}").text_content())


def api(d: Dashboard, route: str, **params) -> dict:
    r = httpx.get(f"{d.url}{route}", params=params, headers={"Authorization": f"Bearer {d.keys['read']}"},
                  timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def unloaded_days(d: Dashboard) -> set[str]:
    return {day.isoformat() for (day,) in read(d.path, "select event_date from load_log where not source_found")}


def last_day(d: Dashboard) -> date:
    return date.fromisoformat(json.loads(read(d.path, "select value from meta where key = 'last_day'")[0][0]))


def values_of(rows: list[dict]) -> dict[tuple[str, str], float | None]:
    return {(r["series"], r["date"][:10]): r["value"] for r in rows}


def flagged_rows(page) -> int:
    return page.locator("section[aria-labelledby=flagged-h] tbody tr").count()


# -- the metrics explorer ----------------------------------------------------------------------------------------

def test_the_explorer_draws_the_snapshots_series_with_its_flagged_days(signed_in_page, dashboard):
    page = signed_in_page
    page.goto("/metrics?metric=dau&from=2026-03-01&to=2026-03-21")
    assert wait_for_charts(page) == 1
    assert page.locator("#m-metric").input_value() == "dau"
    stored = dict(read(dashboard.path, "select metric_date::varchar, value from daily_metrics where metric = 'dau' "
                                       "and dimension = 'all' and metric_date between '2026-03-01' and '2026-03-21'"))
    served = api(dashboard, "/v1/metrics/dau", **{"from": "2026-03-01", "to": "2026-03-21"})["series"]
    assert len(served) == 1 and {p["date"]: p["value"] for p in served[0]["points"]} == stored
    gaps = unloaded_days(dashboard)
    assert gaps == {"2026-03-18"} and stored["2026-03-18"] == 0          # the demo's missing export file
    values = values_of(drawn(page, "metric-chart"))
    assert len(values) == 21
    for day, value in stored.items():
        # a day without an export file is a gap, not the pipeline's 0; every other day is the snapshot's value
        assert values[("All users", day)] == (None if day in gaps else value), day
    assert "no export file was loaded" in page.locator(".key").inner_text()
    # the anomaly band and the flagged days: a diamond per flagged day, and the same days in the table
    flagged = {day.isoformat() for (day,) in read(
        dashboard.path, "select metric_date from anomalies where metric = 'dau' and dimension = 'all'")} - gaps
    assert len(flagged) == 7
    diamonds = [m for m in scene(page, "metric-chart") if m["shape"] == "diamond" and m["opacity"] == 1]
    assert {m["date"] for m in diamonds} == flagged
    spec = spec_block(page, "metric-chart")
    band = [layer for layer in spec["layer"] if layer["mark"]["type"] == "area"]
    assert band and band[0]["encoding"]["y"]["field"] == "lower" and band[0]["encoding"]["y2"]["field"] == "upper"
    rows = {r["date"]: r for r in spec["data"]["values"] if r["flagged"]}
    a = read(dashboard.path, "select lower, upper from anomalies where metric = 'dau' and dimension = 'all' "
                             "and metric_date = '2026-03-21'")[0]
    assert (rows["2026-03-21"]["lower"], rows["2026-03-21"]["upper"]) == pytest.approx(a)
    assert flagged_rows(page) == 7
    first_row = page.locator("section[aria-labelledby=flagged-h] tbody tr").first.inner_text()
    assert "21 Mar 2026" in first_row and f"{number(a[0])} – {number(a[1])}" in first_row
    summary = page.locator(".chart p.sr-only").text_content()
    assert "7 flagged day(s)" in summary and "No export file was loaded for 18 Mar 2026" in summary
    page.click("#table-h")
    table = page.locator("section[aria-labelledby=table-h] tbody tr")
    assert table.count() == 21 and "no file" in table.nth(3).inner_text()        # 18 Mar, newest first
    assert table.first.locator("td").inner_text().startswith(number(stored["2026-03-21"]))


def test_the_explorers_filters_change_what_the_chart_shows(signed_in_page, dashboard):
    page = signed_in_page
    page.goto("/metrics")
    wait_for_charts(page)
    before = drawn(page, "metric-chart")
    assert {r["series"] for r in before} == {"All users"}
    # the metric
    page.select_option("#m-metric", "sessions")
    with page.expect_navigation():
        page.click("form[action='/metrics'] button[type=submit]")
    assert parse_qs(urlsplit(page.url).query)["metric"] == ["sessions"]
    wait_for_charts(page)
    sessions = dict(read(dashboard.path, "select metric_date::varchar, value from daily_metrics where "
                                         "metric = 'sessions' and dimension = 'all'"))
    now = values_of(drawn(page, "metric-chart"))
    assert now[("All users", "2026-03-21")] == sessions["2026-03-21"] != values_of(before)[("All users", "2026-03-21")]
    assert page.locator("#chart-h").inner_text() == "Sessions"
    # the dimension: its largest segments by default, one line each, with a legend
    page.select_option("#m-dimension", "platform")
    with page.expect_navigation():
        page.click("form[action='/metrics'] button[type=submit]")
    wait_for_charts(page)
    means = read(dashboard.path, "select segment, avg(value) from daily_metrics where metric = 'sessions' and "
                                 "dimension = 'platform' group by segment order by 2 desc, 1")
    assert len(means) == 4
    spec = spec_block(page, "metric-chart")
    line = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "line")
    assert line["encoding"]["color"]["scale"]["domain"] == [s for s, _ in means]
    assert {r["series"] for r in drawn(page, "metric-chart")} == {s for s, _ in means}
    legend = [m["text"] for m in scene(page, "metric-chart") if m["type"] == "text" and m["text"] in dict(means)]
    assert sorted(legend) == sorted(dict(means))
    assert page.locator("input[name=segment]:checked").count() == 4
    # the segments: untick all but two; the chart and the table have just those two
    keep = [means[0][0], means[-1][0]]
    for s, _ in means:
        box = page.locator(f"input[name=segment][value='{s}']")
        if s not in keep:
            box.uncheck()
    with page.expect_navigation():
        page.click("form[action='/metrics'] button[type=submit]")
    wait_for_charts(page)
    assert set(parse_qs(urlsplit(page.url).query)["segment"]) == set(keep)
    rows = drawn(page, "metric-chart")
    assert {r["series"] for r in rows} == set(keep)
    heads = page.locator("section[aria-labelledby=table-h] thead th")
    assert sorted(heads.nth(i).text_content() for i in range(1, heads.count())) == sorted(keep)
    stored = dict(read(dashboard.path, "select metric_date::varchar, value from daily_metrics where metric = 'sessions' "
                                       "and dimension = 'platform' and segment = ?", [keep[1]]))
    api_points = api(dashboard, "/v1/metrics/sessions", dimension="platform", segment=keep[1])["series"][0]["points"]
    drawn_values = {d: v for (s, d), v in values_of(rows).items() if s == keep[1] and v is not None}
    assert drawn_values == {d: v for d, v in stored.items() if d not in unloaded_days(dashboard)}
    assert drawn_values == {p["date"]: p["value"] for p in api_points if p["date"] not in unloaded_days(dashboard)}
    # the date range
    page.fill("#m-from", "2026-03-10")
    page.fill("#m-to", "2026-03-16")
    with page.expect_navigation():
        page.click("form[action='/metrics'] button[type=submit]")
    wait_for_charts(page)
    days = sorted({r["date"][:10] for r in drawn(page, "metric-chart")})
    assert days == [f"2026-03-{n}" for n in range(10, 17)]
    assert {r["series"] for r in drawn(page, "metric-chart")} == set(keep)          # the segments are kept
    assert "10 Mar 2026 to 16 Mar 2026" in page.locator(".chart figcaption").inner_text()
    assert flagged_rows(page) == 2 * 3           # the anomaly rows start on 14 Mar: 14, 15 and 16 Mar per segment


def test_change_points_of_several_segments_are_compared_on_one_chart(browser, tmp_path, demo_snapshot):  # noqa: F811
    source = tmp_path / "changes.duckdb"
    shutil.copyfile(demo_snapshot, source)
    points = {"iOS": ("2026-03-08", 20.0, 28.0), "Android": ("2026-03-12", 18.0, 12.0)}
    republish(source, ADD_ANOMALIES, *(
        f"insert into change_points (as_of_date, metric, dimension, segment, change_points, last_change_date, trend) "
        f"values (date '2026-03-21', 'dau', 'platform', '{segment}', "
        f"'[{{\"date\": \"{day}\", \"mean_before\": {before}, \"mean_after\": {after}, "
        f"\"shift\": {after - before}, \"relative_shift\": {(after - before) / before}}}]', date '{day}', 'no trend')"
        for segment, (day, before, after) in points.items()))
    (tmp_path / "served").mkdir()
    with served_dashboard(source, tmp_path / "served") as d:
        page = new_page(browser, d)
        try:
            sign_in(page, d.keys["read"])
            page.goto("/metrics?metric=dau&dimension=platform&segment=iOS&segment=Android&segment=Windows")
            wait_for_charts(page)
            assert {r["series"] for r in drawn(page, "metric-chart")} == {"iOS", "Android", "Windows"}
            spec = spec_block(page, "metric-chart")
            rules = [layer for layer in spec["layer"] if layer["mark"]["type"] == "rule" and "data" in layer]
            assert len(rules) == 1
            assert {(v["series"], v["date"]) for v in rules[0]["data"]["values"]} == \
                {(s, day) for s, (day, _, _) in points.items()}
            colours = dict(zip(spec["layer"][2]["encoding"]["color"]["scale"]["domain"],
                               spec["layer"][2]["encoding"]["color"]["scale"]["range"]))
            dashed = [m for m in scene(page, "metric-chart") if m["type"] == "rule" and m["dash"] and m["label"]]
            # each change point is a dashed rule in its segment's colour, labelled with the segment
            assert {(m["series"], m["date"], m["stroke"].lower()) for m in dashed} == \
                {(s, day, colours[s].lower()) for s, (day, _, _) in points.items()}
            labels = [m["text"] for m in scene(page, "metric-chart") if m["type"] == "text"]
            assert "change: iOS" in labels and "change: Android" in labels
            items = page.locator("section[aria-labelledby=changes-h] li")
            assert items.count() == 2
            for item, segment in ((items.first, "Android"), (items.nth(1), "iOS")):
                day, before, after = points[segment]
                moved = (f"{number(before)} → {number(after)} "
                         f"({number((after - before) / before, percent=True, signed=True)})")
                assert f"{specs.fmt_day(date.fromisoformat(day))} · {segment}: the level moved {moved}" in \
                    item.inner_text()
            # the anomaly rows of the three segments: a diamond per flagged day of each, in its segment's colour
            diamonds = [m for m in scene(page, "metric-chart") if m["shape"] == "diamond" and m["opacity"] == 1]
            expected = read(d.path, "select segment, metric_date::varchar from anomalies where metric = 'dau' and "
                                    "dimension = 'platform' and segment in ('iOS', 'Android', 'Windows') and "
                                    "metric_date <> '2026-03-18'")
            assert sorted((m["series"], m["date"]) for m in diamonds) == sorted(expected)
            assert all(m["fill"].lower() == colours[m["series"]].lower() for m in diamonds)
            assert "2 change point(s)" not in page.locator(".chart p.sr-only").text_content()
            assert page.locator(".chart p.sr-only").text_content().count("1 change point(s)") == 2
            page.guard.assert_clean()
        finally:
            page.context.close()


def test_a_single_series_shows_its_change_point(signed_in_page, dashboard):
    page = signed_in_page
    # the demo's break: Android users stop uploading sketches on 15 Mar, and Sketch Uploaded conversion falls
    # (WAU's climb while its first week fills is not a change, and is not trended)
    page.goto("/metrics?metric=funnel%3AMusic%20Production%3Astep2")
    wait_for_charts(page)
    served = api(dashboard, "/v1/metrics/funnel:Music Production:step2")["series"][0]["change_points"]
    assert [c["date"] for c in served] == ["2026-03-15"]
    assert api(dashboard, "/v1/metrics/wau")["series"][0]["change_points"] == []
    rules = [m for m in scene(page, "metric-chart") if m["type"] == "rule" and m["dash"] and m["label"]]
    assert [(m["date"], m["stroke"].lower()) for m in rules] == [("2026-03-15", charts.MARKER.lower())]
    text = page.locator("section[aria-labelledby=changes-h] li").inner_text()
    c = served[0]
    assert "15 Mar 2026" in text
    assert f"{number(c['mean_before'], percent=True)} → {number(c['mean_after'], percent=True)}" in text
    assert "No day of these series was flagged" in page.locator("section[aria-labelledby=flagged-h]").inner_text()


# -- funnels ---------------------------------------------------------------------------------------------------

def step_cells(card) -> list[list[str]]:
    rows = card.locator("table.steps tbody tr")
    return [[c.strip() for c in rows.nth(i).locator("th, td").all_text_contents()] for i in range(rows.count())]


def expected_step_cells(steps: list[dict]) -> list[list[str]]:
    return [[f"{s['step']}. {s['step_event']}", specs.fmt_int(s["users"]),
             specs.fmt_pct(s["conversion_from_prev"]) if s["step"] > 1 else "—", specs.fmt_pct(s["conversion_from_start"]),
             specs.fmt_duration(s["median_seconds_from_prev"]) if s["step"] > 1 else "—"] for s in steps]


def test_every_funnel_has_its_step_bars_with_conversion_and_time_to_convert(signed_in_page, dashboard):
    page = signed_in_page
    page.goto("/funnels")
    config = json.loads(read(dashboard.path, "select value from meta where key = 'config'")[0][0])
    names = [f["name"] for f in config["funnels"]]
    assert len(names) == 3
    assert wait_for_charts(page) == 3
    cards = page.locator(".funnel-cards > section")
    assert [cards.nth(i).locator("h2").inner_text() for i in range(3)] == names
    for i, name in enumerate(names):
        card = cards.nth(i)
        report = api(dashboard, f"/v1/funnels/{name}")                      # the API's default: 30 entry days
        steps = report["groups"][0]["steps"]
        assert step_cells(card) == expected_step_cells(steps)
        users = read(dashboard.path, "select step, sum(users) from funnel_steps where funnel = ? and dimension = 'all' "
                                     "group by step order by step", [name])
        assert [s["users"] for s in steps] == [u for _, u in users]
        bars = drawn(page, f"funnel-{i + 1}")
        assert [(b["step"], b["users"]) for b in bars] == users
        texts = [m["text"] for m in scene(page, f"funnel-{i + 1}") if m["type"] == "text"]
        for s in steps[1:]:
            assert f"{specs.fmt_int(s['users'])} ({specs.fmt_pct(s['conversion_from_start'])})" in texts
            assert any(t.endswith(f"median {specs.fmt_duration(s['median_seconds_from_prev'])} after step "
                                  f"{s['step'] - 1}") for t in texts), texts
        assert card.locator("h2 a").get_attribute("href") == "/funnels/" + name.replace(" ", "%20")


def test_a_funnels_breakdown_and_conversion_by_entry_day(signed_in_page, dashboard):
    page = signed_in_page
    page.goto("/funnels/Onboarding?dimension=platform")
    assert wait_for_charts(page) == 3
    report = api(dashboard, "/v1/funnels/Onboarding")
    assert step_cells(page.locator("section[aria-labelledby=steps-h]")) == expected_step_cells(
        report["groups"][0]["steps"])
    # the breakdown: a row per segment that entered, largest first, with its conversion to each step
    by = api(dashboard, "/v1/funnels/Onboarding", dimension="platform")["groups"]
    by = sorted((g for g in by if g["entrants"]), key=lambda g: (-g["entrants"], g["segment"]))
    rows = page.locator("table.breakdown tbody tr")
    assert [rows.nth(i).get_attribute("data-segment") for i in range(rows.count())] == [g["segment"] for g in by]
    first = rows.first.locator("td").all_text_contents()
    assert first[0] == specs.fmt_int(by[0]["entrants"])
    assert first[1].startswith(specs.fmt_pct(by[0]["steps"][1]["conversion_from_start"]))
    bars = drawn(page, "funnel-breakdown")
    assert {(b["segment"], b["step"]): b["conversion"] for b in bars} == {
        (g["segment"], s["step"]): s["conversion_from_start"] for g in by for s in g["steps"] if s["step"] > 1}
    # conversion over entry days: a point per entry day and step; the days still converting are hollow
    days = [g for g in api(dashboard, "/v1/funnels/Onboarding", by="day")["groups"] if g["entrants"]]
    open_from = last_day(dashboard) - timedelta(days=7)                  # the funnel's window_days
    points = drawn(page, "funnel-trend")
    assert {(p["date"][:10], p["series"]): p["value"] for p in points if p["value"] is not None} == {
        (g["cohort_date"], f"{s['step']}. {s['step_event']}"): s["conversion_from_start"]
        for g in days for s in g["steps"] if s["step"] > 1 and s["conversion_from_start"] is not None}
    opened = {p["date"][:10] for p in points if p["open"]}
    assert opened == {g["cohort_date"] for g in days if date.fromisoformat(g["cohort_date"]) >= open_from}
    assert opened and min(opened) == open_from.isoformat()
    hollow = [m for m in scene(page, "funnel-trend") if m["type"] == "symbol" and m["date"] in opened]
    assert hollow and all(m["fill"] == "transparent" for m in hollow)
    assert "still converting" in [m["text"] for m in scene(page, "funnel-trend") if m["type"] == "text"]
    table = page.locator("section[aria-labelledby=trend-h] tbody tr")
    assert table.count() == len(days)
    marked = [table.nth(i).locator("th").text_content() for i in range(table.count())]
    assert sum("(still converting)" in t for t in marked) == len(opened)
    assert "(still converting)" in marked[0] and "(still converting)" not in marked[-1]


def test_the_funnel_filters_change_the_breakdown_and_the_range(signed_in_page, dashboard):
    page = signed_in_page
    page.goto("/funnels/Music%20Production")
    wait_for_charts(page)
    assert page.locator("#f-dimension").input_value() == "channel"          # the first dimension by default
    page.select_option("#f-dimension", "country")
    page.fill("#f-from", "2026-03-05")
    page.fill("#f-to", "2026-03-11")
    with page.expect_navigation():
        page.click("form.card button[type=submit]")
    wait_for_charts(page)
    assert page.locator("#breakdown-h").inner_text() == "By country"
    by = api(dashboard, "/v1/funnels/Music Production", dimension="country", **{"from": "2026-03-05", "to": "2026-03-11"})
    assert {b["segment"] for b in drawn(page, "funnel-breakdown")} == {g["segment"] for g in by["groups"] if g["entrants"]}
    report = api(dashboard, "/v1/funnels/Music Production", **{"from": "2026-03-05", "to": "2026-03-11"})
    assert step_cells(page.locator("section[aria-labelledby=steps-h]")) == expected_step_cells(
        report["groups"][0]["steps"])
    assert [b["users"] for b in drawn(page, "funnel-steps")] == [s["users"] for s in report["groups"][0]["steps"]]
    assert sorted({p["date"][:10] for p in drawn(page, "funnel-trend")}) == [f"2026-03-{n:02d}" for n in range(5, 12)]
    assert not any(p["open"] for p in drawn(page, "funnel-trend"))          # all of these entry days are final
    # no breakdown
    page.select_option("#f-dimension", "all")
    with page.expect_navigation():
        page.click("form.card button[type=submit]")
    assert wait_for_charts(page) == 2 and page.locator("#breakdown-h").count() == 0


# -- retention ---------------------------------------------------------------------------------------------------

# The demo's three weeks are too short for the two measures to differ (nobody skips a week and comes back), so
# the toggle is tested on a copy whose "in week N" rows are lower where a later week exists, as they are in a
# longer history.
LOWER_ON = ("update retention set retained_users = retained_users - 1, "
            "retention_rate = (retained_users - 1) / cohort_size "
            "where measure = 'on' and weeks_since = 1 and cohort_week <= date '2026-03-02'")


def test_the_retention_heatmap_and_the_on_or_after_toggle(browser, tmp_path, demo_snapshot):  # noqa: F811
    source = tmp_path / "retention.duckdb"
    shutil.copyfile(demo_snapshot, source)
    republish(source, LOWER_ON)
    (tmp_path / "served").mkdir()
    with served_dashboard(source, tmp_path / "served") as d:
        page = new_page(browser, d)
        try:
            sign_in(page, d.keys["read"])
            check_the_retention_toggle(page, d)
            page.guard.assert_clean()
        finally:
            page.context.close()


def check_the_retention_toggle(page, d: Dashboard) -> None:
    page.goto("/retention")
    wait_for_charts(page)

    def cells() -> dict[tuple[str, int], tuple[float, bool, str]]:
        return {(c["cohort_week"], c["weeks_since"]): (c["rate"], c["complete"], c["text"])
                for c in drawn(page, "retention-heatmap")}

    def stored(measure: str) -> dict[tuple[str, int], tuple[float, bool]]:
        return {(w.isoformat(), n): (rate, complete) for w, n, rate, complete in read(
            d.path, "select cohort_week, weeks_since, retention_rate, complete from retention where measure = ?",
            [measure])}

    def table_rate(week: str, n: int) -> float:
        row = page.locator("table.retention tbody tr",
                           has=page.locator(f"th:text-is('{specs.fmt_day(date.fromisoformat(week))}')"))
        return float(row.locator("td[data-rate]").nth(n).get_attribute("data-rate"))

    after = cells()
    assert len(after) == 9 and {k: v[:2] for k, v in after.items()} == stored("on_or_after")
    assert {(r["cohort_week"], r["weeks_since"]): r["retention_rate"] for r in api(d, "/v1/retention")["items"]} == {
        k: v[0] for k, v in after.items()}
    assert all(text.endswith("*") != complete for _, complete, text in after.values())      # incomplete: an asterisk
    assert sum(not complete for _, complete, _ in after.values()) == 6
    assert "(6 buckets)" in page.locator(".key").inner_text()
    dashed = [m for m in scene(page, "retention-heatmap") if m["type"] == "rect" and m["dash"]]
    assert len(dashed) == 6                                             # and a dashed outline
    assert page.locator("nav.segmented a[aria-current]").get_attribute("data-measure") == "on_or_after"
    with page.expect_navigation():
        page.click("nav.segmented a[data-measure=on]")
    assert parse_qs(urlsplit(page.url).query)["measure"] == ["on"]
    wait_for_charts(page)
    on = cells()
    assert {k: v[:2] for k, v in on.items()} == stored("on")
    assert {(r["cohort_week"], r["weeks_since"]): r["retention_rate"]
            for r in api(d, "/v1/retention", measure="on")["items"]} == {k: v[0] for k, v in on.items()}
    changed = {k for k in on if on[k][0] != after[k][0]}
    assert changed == {("2026-02-23", 1), ("2026-03-02", 1)}
    assert all(on[k][0] < after[k][0] for k in changed)
    assert on[("2026-03-02", 1)][2] == specs.fmt_pct(12 / 31, 0) + "*"          # the cell's label moved too
    assert table_rate("2026-03-02", 1) == pytest.approx(12 / 31)
    assert page.locator("nav.segmented a[aria-current]").get_attribute("data-measure") == "on"
    assert "came back during week N itself" in page.locator("#measure-note").inner_text()
    # and back
    with page.expect_navigation():
        page.click("nav.segmented a[data-measure=on_or_after]")
    wait_for_charts(page)
    assert cells() == after and table_rate("2026-03-02", 1) == pytest.approx(13 / 31)


# -- bad query values and empty states (HTTP) -----------------------------------------------------------------------

@pytest.mark.parametrize("path,status,says", [
    ("/metrics?metric=no_such_metric", 404, "No metric “no_such_metric” in this snapshot"),
    ("/metrics?from=2026-13-01", 200, "“From” is not a date (YYYY-MM-DD): &#39;2026-13-01&#39; is ignored."),
    ("/metrics?to=yesterday&dimension=platform", 200, "“To” is not a date"),
    ("/metrics?from=2026-03-15&to=2026-03-02", 200, "“From” is after “To”: the two days are swapped."),
    ("/metrics?dimension=planet", 200, "No dimension &#39;planet&#39; in this snapshot: showing all users."),
    ("/metrics?dimension=platform&segment=Amiga", 200, "No data for &#39;Amiga&#39; of platform in this range"),
    ("/metrics?from=0001-01-01&to=9999-12-31", 200, "At most 400 days at once"),
    ("/metrics?to=0001-01-05", 200, "No values in this range"),
    ("/metrics?from=2025-01-01&to=2025-01-31", 200, "It has this metric from Sun 1 Mar 2026 to Sat 21 Mar 2026"),
    ("/funnels/Onboarding?from=soon", 200, "“From” is not a date"),
    ("/funnels/Onboarding?dimension=planet", 200, "No dimension &#39;planet&#39; in this snapshot"),
    ("/funnels/Onboarding?to=0001-01-02", 200, "Nobody entered Onboarding"),
    ("/funnels/No%20such%20funnel", 404, "It has: Music Production, Onboarding, Lyrics Composition."),
    ("/retention?measure=weekly", 200, "Unknown measure &#39;weekly&#39;"),
])
def test_a_bad_query_value_gets_a_page_that_says_what_is_wrong(dashboard, path, status, says):
    r = get(dashboard, path, cookies_for(dashboard))
    assert r.status_code == status, r.text[-2000:]
    assert says in r.text
    if path.startswith("/metrics"):
        assert '<form method="get" action="/metrics"' in r.text and 'id="m-metric"' in r.text   # pick another


def test_an_unknown_metric_still_shows_the_form_to_pick_another(signed_in_page):
    page = signed_in_page
    with page.expect_response(lambda r: "/metrics" in r.url) as answer:
        page.goto("/metrics?metric=nope")
    assert answer.value.status == 404
    assert "No metric “nope”" in page.locator("[role=alert]").inner_text()
    page.select_option("#m-metric", "new_users")
    with page.expect_navigation():
        page.click("form[action='/metrics'] button[type=submit]")
    assert page.locator("#chart-h").inner_text() == "New users" and wait_for_charts(page) == 1
    assert page.locator("[role=alert]").count() == 0


def test_empty_snapshots_say_what_is_missing_and_what_to_run(tmp_path, demo_snapshot):  # noqa: F811
    source = tmp_path / "empty.duckdb"
    shutil.copyfile(demo_snapshot, source)
    republish(source, "delete from daily_metrics", "delete from funnel_steps", "delete from retention")
    (tmp_path / "served").mkdir()
    with served_dashboard(source, tmp_path / "served") as d:
        cookies = cookies_for(d)
        for path, heading in (("/metrics", "No metrics yet"), ("/metrics?metric=dau", "No metrics yet"),
                              ("/funnels", "No entry days yet"), ("/funnels/Onboarding", "No entry days yet"),
                              ("/retention", "No cohorts yet"), ("/retention?measure=on", "No cohorts yet")):
            r = get(d, path, cookies)
            assert r.status_code == 200, path
            assert f"<h2>{heading}</h2>" in r.text and "hitcraft run" in r.text, path
            assert 'class="vega"' not in r.text and "<table" not in r.text, path      # never a made-up number
        assert get(d, "/funnels", cookies).text.count("No entry days yet") == 3      # each configured funnel


def test_without_a_snapshot_these_pages_say_to_run_the_pipeline(tmp_path):
    from hitcraft_assets.app.auth import create_key
    from hitcraft_assets.app.main import create_app
    from hitcraft_assets.app.web.session import COOKIE

    app_db = tmp_path / "app.sqlite"
    app = create_app(serving_path=tmp_path / "missing.duckdb", app_db_path=app_db)
    key = create_key(app_db, "early", "read")
    with serving(app) as url:
        r = httpx.post(f"{url}/login", data={"key": key}, follow_redirects=False)
        cookies = httpx.Cookies({COOKIE: r.cookies[COOKIE]})
        for path in ("/metrics", "/metrics?metric=dau&dimension=platform", "/funnels", "/funnels/Onboarding",
                     "/retention"):
            r = httpx.get(url + path, cookies=cookies)
            assert r.status_code == 200, path
            assert "No data yet" in r.text and "hitcraft run" in r.text, path
            assert 'class="vega"' not in r.text, path


# -- keyboard, phone, dark theme, speed -----------------------------------------------------------------------------

def tab_to(page, test: str, limit: int = 80) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"(() => {{ const el = document.activeElement; return {test}; }})()"):
            return
    pytest.fail(f"Tab never reached {test}")


def test_the_forms_work_with_the_keyboard_alone(signed_in_page):
    page = signed_in_page
    page.goto("/metrics")
    wait_for_charts(page)
    tab_to(page, "el.id === 'm-metric'")
    assert page.evaluate("document.querySelector('label[for=m-metric]').textContent") == "Metric"
    outline = page.evaluate("(() => { const s = getComputedStyle(document.activeElement); "
                            "return [s.outlineStyle, parseFloat(s.outlineWidth)]; })()")
    assert outline[0] == "solid" and outline[1] >= 2                       # a visible focus ring
    before = page.locator("#m-metric").input_value()
    page.keyboard.press("ArrowDown")
    chosen = page.locator("#m-metric").input_value()
    assert chosen != before
    tab_to(page, "el.tagName === 'BUTTON' && el.textContent.trim() === 'Show'")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert parse_qs(urlsplit(page.url).query)["metric"] == [chosen]
    wait_for_charts(page)
    # the retention toggle is a pair of links
    page.goto("/retention")
    tab_to(page, "el.dataset.measure === 'on'")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert parse_qs(urlsplit(page.url).query)["measure"] == ["on"]
    # a funnel's breakdown
    page.goto("/funnels/Onboarding")
    tab_to(page, "el.id === 'f-dimension'")
    page.keyboard.press("ArrowDown")
    chosen = page.locator("#f-dimension").input_value()
    tab_to(page, "el.tagName === 'BUTTON' && el.textContent.trim() === 'Show'")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert parse_qs(urlsplit(page.url).query)["dimension"] == [chosen]


def test_a_phone_width_has_no_horizontal_scroll(browser, dashboard):
    page = new_page(browser, dashboard, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        sign_in(page, dashboard.keys["read"])
        for path in (*PAGES, "/funnels/Music%20Production?dimension=country"):
            page.goto(path)
            wait_for_charts(page)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
            assert page.evaluate("document.body.scrollWidth") <= 390, path
            # the chart comes first and fits the width
            box = page.locator("div.vega svg").first.bounding_box()
            assert box["width"] <= 390 and box["x"] >= 0, path
        page.guard.assert_clean()
    finally:
        page.context.close()


def test_the_charts_draw_in_the_dark_theme(signed_in_page):
    page = signed_in_page
    page.emulate_media(color_scheme="dark")
    dark_line = render.DARK_COLORS[charts.LINE].lower()
    for path, spec_id in (("/metrics", "metric-chart"), ("/funnels/Onboarding", "funnel-steps"),
                          ("/retention", "retention-heatmap")):
        page.goto(path)
        n = wait_for_charts(page, "dark")
        assert n >= 1, path
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(11, 18, 32)"
        items = scene(page, spec_id)
        strokes = {m[k].lower() for m in items for k in ("stroke", "fill") if isinstance(m[k], str)}
        if spec_id != "retention-heatmap":                      # the heatmap's blues are the same in both themes
            assert dark_line in strokes and charts.LINE.lower() not in strokes, path
        assert charts.INK.lower() not in strokes, path          # no light-theme ink left on the dark card


def test_these_pages_are_served_in_under_200_ms(dashboard):
    cookies = cookies_for(dashboard)
    timings = {}
    with httpx.Client(base_url=dashboard.url, cookies=cookies, timeout=30) as client:
        for path in PAGES:
            samples = []
            for _ in range(5):
                r = client.get(path)
                assert r.status_code == 200, path
                samples.append(float(re.search(r"app;dur=([0-9.]+)", r.headers["server-timing"]).group(1)))
            timings[path] = statistics.median(samples)
    assert all(ms < 200 for ms in timings.values()), timings
