"""Why this exists: a digest email goes to people's inboxes, where a mistake cannot be taken back and the
clients are hostile. These tests pin what users of other tools complained about (delivery.md A3): the MIME
structure that shows images inline in Gmail and Outlook (multipart/alternative of text and
multipart/related; PNGs by Content-ID, never ``data:`` URIs or SVG, every referenced id present); event
names and property values from the product's data escaped in the HTML yet verbatim in the text part; the
dark-mode rules surviving CSS inlining; charts that are real PNGs (a band and a marker included); the
one-click unsubscribe headers; RFC 2047 for non-ASCII names; an empty digest saying why; and each recipient
getting their own greeting. Digests are built by hand, so the numbers shown are the ones given.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
import struct
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser

import pytest
import vl_convert

from hitcraft_assets.delivery import charts
from hitcraft_assets.delivery.email.format import (
    change_words,
    fmt_change,
    fmt_number,
    fmt_percent,
)
from hitcraft_assets.delivery.email.mime import build_message
from hitcraft_assets.delivery.email.render import (
    CHART_HEIGHT,
    CHART_WIDTH,
    content_id,
    render_digest,
    safe_url,
    subject,
)
from hitcraft_assets.delivery.model import Digest, DigestInsight, Kpi, Series

HOSTILE = "<img src=x onerror=alert(1)>"
QUOTED = "plan = \"pro\" 'annual' & <b>co</b>"
END = date(2026, 11, 30)
DAYS = tuple(END - timedelta(days=13 - i) for i in range(14))
SENT = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
UNSUB = "https://analytics.hitcraft.example/unsubscribe?t=abc.def"


def series(title: str = "Daily active users", *, band: bool = False, marker: bool = False,
           percent: bool = False, gaps: tuple[int, ...] = ()) -> Series:
    base = [0.40 + 0.01 * (i % 3) for i in range(14)] if percent else [1000.0 + 25 * (i % 4) for i in range(14)]
    values = tuple(None if i in gaps else v for i, v in enumerate(base))
    expected = tuple(b * 1.01 for b in base) if band else None
    return Series(title, DAYS, values, expected=expected,
                  lower=tuple(e * 0.95 for e in expected) if band else None,
                  upper=tuple(e * 1.05 for e in expected) if band else None,
                  marker=DAYS[11] if marker else None, marker_label="Anomaly: 712" if marker else None,
                  percent=percent)


def insight(n: int, kind: str = "risk", status: str = "new", *, title: str | None = None,
            evidence: tuple[tuple[str, str], ...] | None = None, chart: Series | None = None) -> DigestInsight:
    return DigestInsight(
        insight_id=f"ins{n:04d}", kind=kind, status=status,
        title=title or f"Finding number {n} about Sketch Uploaded",
        summary=f"Summary of finding {n}: 712 against an expected 1,050.",
        recommendation=f"Look at step {n} of the Music Production funnel with the studio team.",
        owner="studio-team@hitcraft.example", area="production",
        evidence=evidence or (("Observed", "712"), ("Expected", "1,050")),
        url=f"https://analytics.hitcraft.example/insights/ins{n:04d}", chart=chart)


def digest(*, name: str = "Maya", email_: str = "maya@hitcraft.example", insights=(), kpis=None,
           empty_note: str | None = None) -> Digest:
    if kpis is None:
        kpis = (Kpi("dau", "Daily active users", 4321.0, 4000.0, 0.08025, sparkline=series()),
                Kpi("funnel:Onboarding", "Onboarding conversion", 0.412, 0.43, -0.0419, percent=True,
                    sparkline=series("Onboarding", percent=True, gaps=(3,))),
                Kpi("new_users", "New users", 612.0, None, None))
    return Digest(
        profile="daily-product", cadence="daily", title="HitCraft daily product digest", product="HitCraft",
        period_start=END, period_end=END, period_label="Monday 30 November 2026",
        recipient_email=email_, recipient_name=name, recipient_role="product", recipient_timezone="Europe/Berlin",
        greeting=f"Good morning, {name}", sent_label="Tuesday 1 December 2026, 07:00 (Europe/Berlin)",
        kpis=kpis, insights=tuple(insights), dashboard_url="https://analytics.hitcraft.example/",
        unsubscribe_url=UNSUB, empty_note=empty_note)


def message(rendered, *, to_name: str | None = "Maya", **kw):
    return build_message(rendered, sender="HitCraft <digest@hitcraft.example>", to="maya@hitcraft.example",
                         to_name=to_name, message_id="<daily-product.2026-11-30.maya@hitcraft.example>",
                         date=SENT, unsubscribe_url=UNSUB, **kw)


def reparse(msg):
    return email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)


class Tags(HTMLParser):
    """Every start tag with its decoded attributes, and the decoded text."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def full():
    """One digest with every part: KPIs with sparklines, four kinds of insight, charts with a band and a
    marker, a percent series with gaps, and hostile strings in a title, the evidence and a segment."""
    d = digest(insights=(
        insight(1, "anomaly", chart=series("DAU, platform = iOS", band=True, marker=True)),
        insight(2, "risk", title=f"Drop at {HOSTILE} for {QUOTED}",
                evidence=((f"Event {HOSTILE}", QUOTED), ("Segment", f"utm_source = {QUOTED}")),
                chart=series(f"Conversion at {HOSTILE}, {QUOTED}", percent=True, gaps=(4, 5))),
        insight(3, "success", "ongoing", chart=series("Stem Separation")),
        insight(4, "opportunity", chart=None),
    ))
    return d, render_digest(d)


# ----------------------------------------------------------------------------------------------- MIME


def test_mime_structure_is_alternative_of_text_and_related_html_with_inline_pngs(full):
    _, rendered = full
    parsed = reparse(message(rendered))
    types = [p.get_content_type() for p in parsed.walk()]
    n = len(rendered.images)
    assert n == 5                                   # 2 sparklines (the third KPI has none) + 3 charts
    assert types == ["multipart/alternative", "text/plain", "multipart/related", "text/html"] + ["image/png"] * n
    text, related = parsed.get_payload()
    html = related.get_payload()[0]
    assert text.get_content_charset() == "utf-8" and html.get_content_charset() == "utf-8"
    assert text.get_content().replace("\r\n", "\n") == rendered.text
    assert html.get_content().replace("\r\n", "\n") == rendered.html
    cids = {}
    for part in related.get_payload()[1:]:
        assert part.get_content_disposition() == "inline"
        cid = part["Content-ID"].strip()
        assert cid.startswith("<") and cid.endswith(">")
        assert part.get_filename() == cid[1:].split("@")[0] + ".png"
        cids[cid[1:-1]] = part.get_content()
    assert cids == rendered.images                  # the bytes survive base64 both ways
    referenced = set(re.findall(r'src="cid:([^"]+)"', rendered.html))
    assert referenced == set(cids)
    srcs = [a.get("src") for t, a in Tags(rendered.html).tags if t == "img"]
    assert srcs and all(s.startswith("cid:") for s in srcs)
    whole = parsed.as_string()
    for forbidden in ("data:", "<svg", "base64,"):
        assert forbidden not in rendered.html and forbidden not in rendered.text
    assert "<svg" not in whole


def test_headers_one_click_unsubscribe_and_auto_submitted(full):
    _, rendered = full
    msg = message(rendered, unsubscribe_mailto="unsubscribe@hitcraft.example",
                  extra_headers={"X-HitCraft-Digest": "daily-product/2026-11-30"})
    raw = msg.as_bytes()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")     # SMTP line ends throughout
    parsed = reparse(msg)
    assert parsed["Subject"] == rendered.subject
    assert parsed["From"].addresses[0].addr_spec == "digest@hitcraft.example"
    assert parsed["Message-ID"] == "<daily-product.2026-11-30.maya@hitcraft.example>"
    assert parsed["MIME-Version"] == "1.0"
    assert parsed["Date"].datetime == SENT
    assert parsed["List-Unsubscribe"] == f"<{UNSUB}>, <mailto:unsubscribe@hitcraft.example>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["X-Auto-Response-Suppress"] == "All"
    assert parsed["X-HitCraft-Digest"] == "daily-product/2026-11-30"
    for name in ("Subject", "Message-ID", "List-Unsubscribe", "Date"):
        assert len(parsed.get_all(name)) == 1


def test_long_unsubscribe_url_stays_one_unencoded_link(full):
    _, rendered = full
    url = "https://analytics.hitcraft.example/unsubscribe?t=" + "A1b2C3d4" * 30
    msg = build_message(rendered, sender="digest@hitcraft.example", to="maya@hitcraft.example", to_name=None,
                        message_id="x.1@hitcraft.example", date=SENT, unsubscribe_url=url)
    parsed = reparse(msg)
    assert parsed["List-Unsubscribe"] == f"<{url}>"
    head = msg.as_bytes().split(b"\r\n\r\n")[0]
    assert f"\r\nList-Unsubscribe: <{url}>\r\n".encode() in head        # not RFC 2047 encoded words
    assert parsed["Message-ID"] == "<x.1@hitcraft.example>"         # brackets added


def test_non_ascii_recipient_name_is_encoded_in_to(full):
    _, rendered = full
    msg = message(rendered, to_name="Léa Müller-Øster")
    head = msg.as_bytes().split(b"\r\n\r\n")[0]
    to_line = re.search(rb"^To: (.*(?:\r\n[ \t].*)*)", head, re.MULTILINE).group(1)
    assert to_line.isascii() and b"=?utf-8?" in to_line.lower() and b"<maya@hitcraft.example>" in to_line
    addr = reparse(msg)["To"].addresses[0]
    assert (addr.display_name, addr.addr_spec) == ("Léa Müller-Øster", "maya@hitcraft.example")


def test_one_click_only_for_https_unsubscribe_links(full):
    _, rendered = full
    local = "http://127.0.0.1:8000/v1/unsubscribe?token=abc"
    parsed = reparse(build_message(rendered, sender="a@b.example", to="d@e.example", to_name=None,
                                   message_id="<1@x>", date=SENT, unsubscribe_url=local))
    assert parsed["List-Unsubscribe"] == f"<{local}>" and parsed["List-Unsubscribe-Post"] is None
    with pytest.raises(ValueError, match="http"):
        build_message(rendered, sender="a@b.example", to="d@e.example", to_name=None, message_id="<1@x>",
                      date=SENT, unsubscribe_url="javascript:alert(1)")


def test_message_refuses_naive_dates_and_owned_headers(full):
    _, rendered = full
    with pytest.raises(ValueError, match="timezone"):
        build_message(rendered, sender="a@b.c", to="d@e.f", to_name=None, message_id="<1@x>",
                      date=datetime(2026, 12, 1, 6, 0), unsubscribe_url=UNSUB)
    with pytest.raises(ValueError, match="Subject"):
        message(rendered, extra_headers={"Subject": "spoofed"})


# -------------------------------------------------------------------------------------- HTML and text


def test_hostile_event_names_and_quoted_values_are_escaped_in_html_and_verbatim_in_text(full):
    _, rendered = full
    html = rendered.html
    assert HOSTILE not in html and "<b>co</b>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    parsed = Tags(html)
    assert all("onerror" not in attrs for _, attrs in parsed.tags)
    assert [t for t, _ in parsed.tags].count("img") == len(rendered.images)
    assert all(t != "b" for t, _ in parsed.tags)
    text = "".join(parsed.text)
    assert f"Drop at {HOSTILE} for {QUOTED}" in text                   # decoded, it is the same words
    assert f"Event {HOSTILE}" in text and f"utm_source = {QUOTED}" in text
    alts = [a["alt"] for t, a in parsed.tags if t == "img" and "insight-ins0002" in a["src"]]
    assert len(alts) == 1 and f"Conversion at {HOSTILE}, {QUOTED}" in alts[0]
    plain = " ".join(rendered.text.split())                             # the text part is wrapped
    assert f"Drop at {HOSTILE} for {QUOTED}" in plain
    assert f"Event {HOSTILE}: {QUOTED}" in plain and f"Segment: utm_source = {QUOTED}" in plain
    assert "&lt;" not in rendered.text and "&quot;" not in rendered.text and "&#39;" not in rendered.text


def test_dark_mode_rules_survive_inlining_and_color_scheme_is_declared(full):
    _, rendered = full
    html = rendered.html
    styles = re.findall(r"<style[^>]*>(.*?)</style>", html, re.DOTALL)
    assert any("@media (prefers-color-scheme: dark)" in s and "!important" in s for s in styles)
    assert '<meta name="color-scheme" content="light dark">' in html
    assert '<meta name="supported-color-schemes" content="light dark">' in html
    body = re.search(r"<body[^>]*>", html).group(0)
    assert "background-color: #f3f4f6" in body                          # the class rules were inlined
    assert not any(".card {" in s for s in styles)                      # and removed from <style>


def test_layout_is_tables_outlook_renders(full):
    _, rendered = full
    tags = Tags(rendered.html).tags
    tables = [a for t, a in tags if t == "table"]
    assert tables and all(a.get("role") == "presentation" for a in tables)
    assert any(a.get("width") == "600" for a in tables)
    assert "display: flex" not in rendered.html and "display: grid" not in rendered.html
    preheader = [a for t, a in tags if t == "div" and a.get("class") == "preheader"]
    assert len(preheader) == 1 and "display: none" in preheader[0]["style"]
    links = {a["href"] for t, a in tags if t == "a"}
    assert {f"https://analytics.hitcraft.example/insights/ins{n:04d}" for n in (1, 2, 3, 4)} <= links
    assert UNSUB in links and "https://analytics.hitcraft.example/" in links
    assert rendered.html.count(">Open in the dashboard</a>") == 4


def test_content_shows_kpis_with_change_words_insights_owner_and_why(full):
    _, rendered = full
    text = "".join(Tags(rendered.html).text)
    for words in ("Good morning, Maya", "Monday 30 November 2026", "Daily active users", "4,321", "+8.0%",
                  "up, was 4,000", "41%", "-4.2%", "down, was 43%", "612", "o previous period to compare",
                  "Anomaly", "Risk", "Success", "Ongoing", "Opportunity", "Observed", "1,050",
                  "studio-team@hitcraft.example (production)", "Unsubscribe", "(role: product)",
                  "\u201cdaily-product\u201d"):
        assert words in text, words
        if words not in ("Unsubscribe",):
            assert words in rendered.text, words
    assert f"Unsubscribe: {UNSUB}" in rendered.text
    assert "Open in the dashboard: https://analytics.hitcraft.example/insights/ins0003" in rendered.text
    orphan = render_digest(digest(kpis=(), insights=[dataclasses.replace(insight(5), owner=None)]), charts=False)
    assert "Owner: nobody yet (production)" in orphan.text


def test_text_part_is_wrapped_at_78_except_unbreakable_urls(full):
    _, rendered = full
    url = "https://analytics.hitcraft.example/funnels/music-production?segment=platform%3DiOS&from=2026-11-01"
    linked = dataclasses.replace(insight(9), summary=f"The drop is explained on {url} with the segment view.")
    text = render_digest(digest(kpis=(), insights=[linked]), charts=False).text
    assert url in text.split()                                          # whole, on a line of its own making
    long_lines = [line for line in rendered.text.splitlines() if len(line) > 78]
    assert all("https://" in line for line in long_lines), long_lines
    assert max(len(line) for line in rendered.text.splitlines()) > 60           # it is prose, not a column


def test_alt_text_says_what_the_chart_shows(full):
    _, rendered = full
    alts = {a["src"]: a["alt"] for t, a in Tags(rendered.html).tags if t == "img"}
    band = alts["cid:insight-ins0001@hitcraft"]
    assert band.startswith("Line chart of DAU, platform = iOS, daily, 17 Nov 2026 to 30 Nov 2026.")
    assert "expected range" in band and "dashed line shows the expected" in band
    assert "marks 28 Nov 2026: Anomaly: 712" in band
    assert "No value on 2 days" in alts["cid:insight-ins0002@hitcraft"]
    assert all(alts.values())


def test_subject_counts_only_new_risks():
    assert subject(digest()) == "HitCraft daily product digest: Monday 30 November 2026"
    assert subject(digest(insights=[insight(1, "anomaly"), insight(2, "risk", "ongoing")])) == (
        "HitCraft daily product digest: Monday 30 November 2026 \u00b7 no new risks")
    assert subject(digest(insights=[insight(1, "risk")])).endswith("\u00b7 1 new risk")
    assert subject(digest(insights=[insight(1), insight(2), insight(3, "trend")])).endswith("\u00b7 2 new risks")


def test_empty_digest_renders_the_empty_note():
    note = "Nothing new since yesterday: no anomaly, trend or finding crossed its threshold."
    rendered = render_digest(digest(empty_note=note, kpis=()))
    assert note in " ".join(rendered.text.split())
    shown = re.search(r'<p class="empty"[^>]*>(.*?)</p>', rendered.html, re.DOTALL)
    assert shown and shown.group(1) == note                             # in the body, not only the preheader
    assert "Open in the dashboard" not in rendered.html and "WHAT NEEDS ATTENTION" not in rendered.text
    assert rendered.images == {} and "cid:" not in rendered.html
    assert "\u00b7" not in rendered.subject
    parsed = reparse(message(rendered))
    assert [p.get_content_type() for p in parsed.walk()] == ["multipart/alternative", "text/plain", "text/html"]


def test_two_recipients_get_their_own_greeting():
    ana = render_digest(digest(name="Ana", email_="ana@hitcraft.example", insights=[insight(1)]), charts=False)
    sam = render_digest(digest(name="Sam", email_="sam@hitcraft.example", insights=[insight(1)]), charts=False)
    assert "Good morning, Ana" in ana.html and "Good morning, Ana" in ana.text and "ana@hitcraft.example" in ana.text
    assert "Sam" not in ana.html and "Sam" not in ana.text
    assert "Good morning, Sam" in sam.html and "Ana" not in sam.html and "ana@" not in sam.text


def test_charts_false_renders_no_images():
    rendered = render_digest(digest(insights=[insight(1, chart=series(band=True))]), charts=False)
    assert rendered.images == {} and "<img" not in rendered.html and "cid:" not in rendered.html


def test_unsafe_links_are_refused():
    bad = dataclasses.replace(insight(1), url="javascript:alert(1)")
    with pytest.raises(ValueError, match="refusing to link"):
        render_digest(digest(insights=[bad]), charts=False)
    assert safe_url("mailto:a@b.example") == "mailto:a@b.example"


def test_content_ids_are_deterministic_and_clean():
    assert content_id("insight", "a3f1c09e", {}) == "insight-a3f1c09e@hitcraft"
    odd = content_id("insight", "risk <x>@y", {})
    assert re.fullmatch(r"insight-[A-Za-z0-9._-]+@hitcraft", odd) and odd == content_id("insight", "risk <x>@y", {})
    assert odd != content_id("insight", "risk <x>@z", {})
    with pytest.raises(ValueError, match="share the content id"):
        content_id("kpi", "1", {"kpi-1@hitcraft": b""})


# -------------------------------------------------------------------------------------------- charts


def _walk(node):
    if isinstance(node, dict):
        for k, v in node.items():
            yield k, v
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def test_series_chart_spec_has_band_dashed_expectation_marker_and_inline_data():
    spec = charts.series_chart(series(band=True, marker=True, gaps=(2,)))
    marks = [layer["mark"]["type"] for layer in spec["layer"]]
    assert marks == ["area", "line", "line", "point", "rule", "text"]
    area, expected = spec["layer"][0], spec["layer"][1]
    assert area["encoding"]["y"]["field"] == "lower" and area["encoding"]["y2"]["field"] == "upper"
    assert expected["mark"]["strokeDash"] and expected["encoding"]["y"]["field"] == "expected"
    assert spec["layer"][5]["data"]["values"] == [{"date": "2026-11-28", "label": "Anomaly: 712"}]
    rows = spec["data"]["values"]
    assert len(rows) == 14 and rows[2]["value"] is None and rows[0]["date"] == "2026-11-17"
    assert spec["config"]["background"] == "#ffffff"
    assert (spec["width"], spec["height"]) == (520, 140)
    assert not [k for k, _ in _walk(spec) if k == "url"]
    assert "%" in charts.series_chart(series(percent=True))["layer"][0]["encoding"]["y"]["axis"]["format"]
    assert "%" not in spec["layer"][2]["encoding"]["y"]["axis"]["format"]


@pytest.mark.parametrize("make", [charts.series_chart, charts.sparkline])
def test_a_missing_value_is_a_gap_in_the_line(make):
    # drawn as SVG here only to read the path; emails get PNGs
    svg = vl_convert.vegalite_to_svg(make(series(gaps=(5,))))
    line = [d for d in re.findall(r'aria-roledescription="line mark" d="([^"]+)"', svg)]
    assert len(line) == 1 and line[0].count("M") == 2                  # two runs: days 1-5 and 7-14
    svg = vl_convert.vegalite_to_svg(make(series()))
    assert re.findall(r'aria-roledescription="line mark" d="([^"]+)"', svg)[0].count("M") == 1


def test_sparkline_has_no_axes_or_title():
    spec = charts.sparkline(series())
    assert (spec["width"], spec["height"]) == (120, 32) and "title" not in spec
    assert spec["encoding"]["x"]["axis"] is None
    assert all(layer["encoding"]["y"]["axis"] is None for layer in spec["layer"])


def test_pngs_are_real_and_a_band_and_marker_chart_renders(full):
    _, rendered = full
    for cid, png in rendered.images.items():
        w, h = png_size(png)
        assert w > 0 and h > 0, cid
    assert png_size(rendered.images["insight-ins0001@hitcraft"]) == (2 * CHART_WIDTH, 2 * CHART_HEIGHT)
    plain = charts.to_png(charts.series_chart(series()))
    banded = charts.to_png(charts.series_chart(series(band=True, marker=True)))
    assert png_size(plain) == png_size(banded) == (1040, 280)
    assert plain != banded


def test_a_series_of_gaps_only_gets_no_chart():
    rendered = render_digest(digest(kpis=(), insights=[insight(1, chart=series(gaps=tuple(range(14))))]))
    assert rendered.images == {} and "<img" not in rendered.html


# ------------------------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("value, expected", [
    (1234.6, "1,235"), (12000, "12,000"), (45.24, "45.2"), (2.345, "2.35"), (0.004, "0.004"), (None, "n/a"),
    (float("nan"), "n/a"),
])
def test_fmt_number(value, expected):
    assert fmt_number(value) == expected


@pytest.mark.parametrize("value, expected", [(0.412, "41%"), (0.042, "4.2%"), (0.0035, "0.35%"), (0.0, "0%"),
                                             (1.0, "100%"), (None, "n/a")])
def test_fmt_percent(value, expected):
    assert fmt_percent(value) == expected


@pytest.mark.parametrize("value, expected, arrow, word", [
    (0.12, "+12%", "\u25b2", "up"), (-0.034, "-3.4%", "\u25bc", "down"), (0.0, "+0%", "\u25ac", "flat"),
    (None, "n/a", "", ""),
])
def test_fmt_change_and_words(value, expected, arrow, word):
    assert fmt_change(value) == expected
    assert change_words(value) == (arrow, word)


def test_kind_counts_read_as_english_plurals():
    """'2 successes' and '2 anomalies', not '2 successs' and '2 anomalys'; a day, 2 days, 2 risks."""
    from hitcraft_assets.delivery.email.format import plural

    assert [plural(2, w) for w in ("success", "anomaly", "opportunity", "risk", "trend", "day")] == [
        "2 successes", "2 anomalies", "2 opportunities", "2 risks", "2 trends", "2 days"]
    assert plural(1, "success") == "1 success" and plural(1_200, "insight") == "1,200 insights"
