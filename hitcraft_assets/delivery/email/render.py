"""A :class:`~hitcraft_assets.delivery.model.Digest` as an email: subject, HTML, plain text and the PNGs the
HTML shows (:func:`render_digest`). Pure: no warehouse, no network, no clock.

- **HTML** (``templates/digest.html.j2``): Jinja2 with autoescaping and StrictUndefined; a table layout
  Outlook renders (role=presentation tables, widths in attributes, 600px at most, buttons as table cells);
  CSS inlined by css-inline, which keeps the ``@media`` rules (dark mode, narrow screens) in a ``<style>``;
  ``color-scheme`` meta tags; a hidden preheader. Images only as ``cid:`` references to PNGs rendered by
  vl-convert from the specs of ``delivery/charts.py`` (Gmail drops ``data:`` URIs, most clients block SVG).
- **Text** (``templates/digest.txt.j2``): the same content, wrapped at 78 characters, nothing escaped.
- **Content ids** are deterministic: ``kpi-<n>@hitcraft`` (1-based position of the KPI) and
  ``insight-<insight_id>@hitcraft``; every id the HTML references is in ``images`` and the other way round.

Numbers are only formatted (``format.py``), never computed: every figure shown is in the Digest.
"""

from __future__ import annotations

import functools
import hashlib
import re
import textwrap
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import css_inline

from hitcraft_assets.delivery import charts as charts_mod
from hitcraft_assets.delivery.email.format import (
    change_words,
    fmt_change,
    fmt_number,
    fmt_percent,
    fmt_value,
    plural,
)
from hitcraft_assets.delivery.model import (
    Digest,
    DigestInsight,
    Kpi,
    RenderedEmail,
    Series,
)
from hitcraft_assets.lazy import lazy

jinja2 = lazy("jinja2")   # imported when an email is first rendered

TEMPLATES = Path(__file__).parent / "templates"
TEXT_WIDTH = 78
CID_DOMAIN = "hitcraft"
# the chart fills an insight card: 600px - 2 x 20px padding - 2 x 1px card border - 2 x 1px image border
CHART_WIDTH, CHART_HEIGHT = 556, 150
SPARK_WIDTH, SPARK_HEIGHT = 150, 36
KPIS_PER_ROW = 3

KIND_LABELS = {"risk": "Risk", "opportunity": "Opportunity", "success": "Success", "trend": "Trend",
               "anomaly": "Anomaly"}
STATUS_LABELS = {"new": "New", "ongoing": "Ongoing", "resolved": "Resolved"}
PREVIOUS = {"daily": "the previous day", "weekly": "the previous week", "monthly": "the previous month"}
SAFE_SCHEMES = ("https", "http", "mailto")


@functools.cache
def environment() -> jinja2.Environment:
    """Autoescaping for ``*.html.j2`` (and strings), none for the text part; undefined names are errors."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        # escape everything but the text part (a template of another name is escaped too)
        autoescape=jinja2.select_autoescape(enabled_extensions=(), disabled_extensions=("txt.j2",),
                                            default_for_string=True, default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["wrap"] = wrap
    return env


@functools.cache
def _inliner() -> css_inline.CSSInliner:
    # keep_at_rules: without it css-inline drops the <style> and the dark-mode @media rules with it
    return css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


# ---------------------------------------------------------------------------------------------- view model


@dataclass(frozen=True)
class KpiView:
    kpi: Kpi
    value: str               # "1,234", "42%"
    change: str              # "+12%", "" without a previous value
    arrow: str               # ▲ ▼ ▬ or ""
    word: str                # up, down, flat or ""
    previous: str            # "1,100", "" without one
    cid: str | None
    alt: str


@dataclass(frozen=True)
class InsightView:
    insight: DigestInsight
    kind_label: str
    kind_class: str
    status_label: str
    status_class: str
    owner: str               # "growth@… (onboarding)", "nobody yet (onboarding)", "" without owner and area
    url: str
    cid: str | None
    alt: str
    legend: str              # what the line, the band and the marker mean, in words


def render_digest(digest: Digest, *, charts: bool = True) -> RenderedEmail:
    """The digest as subject, HTML, text and PNG images (content id -> bytes). `charts=False` renders no
    image at all (no sparklines, no charts, `images` empty)."""
    images: dict[str, bytes] = {}
    kpis = [_kpi_view(n, k, images if charts else None) for n, k in enumerate(digest.kpis, start=1)]
    insights = [_insight_view(i, images if charts else None) for i in digest.insights]
    context = {
        "digest": digest,
        "subject": subject(digest),
        "preheader": preheader(digest),
        "kpi_rows": [kpis[i:i + KPIS_PER_ROW] for i in range(0, len(kpis), KPIS_PER_ROW)],
        "kpis": kpis,
        "insights": insights,
        "compared_with": PREVIOUS.get(digest.cadence, "the previous period"),
        "dashboard_url": safe_url(digest.dashboard_url),
        "unsubscribe_url": safe_url(digest.unsubscribe_url),
        "why": why_you_get_this(digest),
        "counts": counts_line(digest),
        "chart_width": CHART_WIDTH,
        "spark_width": SPARK_WIDTH,
        "spark_height": SPARK_HEIGHT,
    }
    env = environment()
    html = _inliner().inline(env.get_template("digest.html.j2").render(context))
    # css-inline puts the kept @media rules first in <head>; the charset declaration goes before them
    html = _escape_brackets_in_attributes(html).replace("<head>", '<head><meta charset="utf-8">', 1) + "\n"
    text = env.get_template("digest.txt.j2").render(context)
    referenced = set(re.findall(r'src="cid:([^"]+)"', html))
    if referenced != set(images):
        raise RuntimeError(f"cid references {sorted(referenced)} differ from the images {sorted(images)}")
    return RenderedEmail(subject=context["subject"], html=html, text=text, images=images)


def _kpi_view(n: int, kpi: Kpi, images: dict[str, bytes] | None) -> KpiView:
    arrow, word = change_words(kpi.change)
    cid = None
    if images is not None and kpi.sparkline is not None and any(v is not None for v in kpi.sparkline.values):
        cid = content_id("kpi", str(n), images)
        images[cid] = charts_mod.to_png(charts_mod.sparkline(kpi.sparkline, width=SPARK_WIDTH,
                                                             height=SPARK_HEIGHT))
    return KpiView(
        kpi=kpi,
        value=fmt_value(kpi.value, percent=kpi.percent),
        change=fmt_change(kpi.change) if kpi.change is not None else "",
        arrow=arrow,
        word=word,
        previous=fmt_value(kpi.previous, percent=kpi.percent) if kpi.previous is not None else "",
        cid=cid,
        alt=(f"Trend of {kpi.label}, {_span(kpi.sparkline)}" if kpi.sparkline is not None else ""),
    )


def _insight_view(insight: DigestInsight, images: dict[str, bytes] | None) -> InsightView:
    cid = None
    series = insight.chart
    if images is not None and series is not None and any(v is not None for v in series.values):
        cid = content_id("insight", insight.insight_id, images)
        images[cid] = charts_mod.to_png(charts_mod.series_chart(series, width=CHART_WIDTH, height=CHART_HEIGHT))
    owner = insight.owner or ""
    if owner and insight.area:
        owner = f"{owner} ({insight.area})"
    elif insight.area:
        owner = f"nobody yet ({insight.area})"
    return InsightView(
        insight=insight,
        kind_label=KIND_LABELS.get(insight.kind, insight.kind.capitalize()),
        kind_class=insight.kind if insight.kind in KIND_LABELS else "other",
        status_label=STATUS_LABELS.get(insight.status, insight.status.capitalize()),
        status_class=insight.status if insight.status in STATUS_LABELS else "other",
        owner=owner,
        url=safe_url(insight.url),
        cid=cid,
        alt=chart_alt(series) if series is not None else "",
        legend=chart_legend(series) if series is not None else "",
    )


def content_id(prefix: str, key: str, taken: dict[str, bytes]) -> str:
    """``<prefix>-<key>@hitcraft``, the key reduced to characters a Content-ID may hold (a short hash of the
    original is appended when anything had to go, so two keys never share an id)."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", key).strip("-.") or "x"
    if clean != key:
        clean = f"{clean[:40]}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    cid = f"{prefix}-{clean}@{CID_DOMAIN}"
    if cid in taken:
        raise ValueError(f"two images would share the content id {cid!r} (duplicate {prefix} {key!r})")
    return cid


# ------------------------------------------------------------------------------------------------- words


def new_risks(digest: Digest) -> int:
    return sum(1 for i in digest.insights if i.kind == "risk" and i.status == "new")


def subject(digest: Digest) -> str:
    """``"<title>: <period>"``, and when there are insights ``" · 2 new risks"`` (or ``" · no new risks"``)."""
    text = f"{digest.title}: {digest.period_label}"
    if digest.insights:
        n = new_risks(digest)
        text += f" \u00b7 {plural(n, 'new risk')}" if n else " \u00b7 no new risks"
    return " ".join(text.split())        # one line: a header must not carry a line break


def counts_line(digest: Digest) -> str:
    """``"4 insights: 2 risks (2 new), 1 opportunity, 1 anomaly"``; "" when there are none."""
    if not digest.insights:
        return ""
    parts = []
    for kind in list(KIND_LABELS) + sorted({i.kind for i in digest.insights} - set(KIND_LABELS)):
        of_kind = [i for i in digest.insights if i.kind == kind]
        if not of_kind:
            continue
        new = sum(1 for i in of_kind if i.status == "new")
        parts.append(plural(len(of_kind), kind) + (f" ({new:,} new)" if new else ""))
    return f"{plural(len(digest.insights), 'insight')}: " + ", ".join(parts)


def preheader(digest: Digest) -> str:
    """The inbox preview line: the counts and the first title, or the empty note."""
    if not digest.insights:
        return digest.empty_note or f"Nothing new for {digest.period_label}."
    return f"{counts_line(digest)}. First: {digest.insights[0].title}"


def why_you_get_this(digest: Digest) -> str:
    role = f" (role: {digest.recipient_role})" if digest.recipient_role else ""
    return (f"You receive this {digest.cadence} digest because {digest.recipient_email} is a recipient of the "
            f"\u201c{digest.profile}\u201d report{role}.")


def _day(d: date) -> str:
    return f"{d.day} {d:%b %Y}"


def _span(series: Series | None) -> str:
    if series is None or not series.dates:
        return "no days"
    return f"{_day(min(series.dates))} to {_day(max(series.dates))}"


def chart_alt(series: Series) -> str:
    """What the chart shows, in words, from the series' own values."""
    fmt = (lambda x: fmt_percent(x)) if series.percent else fmt_number
    present = [(d, v) for d, v in zip(series.dates, series.values) if v is not None]
    words = [f"Line chart of {series.title}, daily, {_span(series)}."]
    if present:
        (d_lo, lo), (d_hi, hi) = min(present, key=lambda p: p[1]), max(present, key=lambda p: p[1])
        last_d, last_v = present[-1]
        latest = f"Latest {fmt(last_v)} on {_day(last_d)}"
        if last_d == d_lo != d_hi:
            words.append(f"{latest}, the lowest; highest {fmt(hi)} on {_day(d_hi)}.")
        elif last_d == d_hi != d_lo:
            words.append(f"{latest}, the highest; lowest {fmt(lo)} on {_day(d_lo)}.")
        else:
            words.append(f"{latest}; lowest {fmt(lo)} on {_day(d_lo)}, highest {fmt(hi)} on {_day(d_hi)}.")
    missing = len(series.values) - len(present)
    if missing:
        words.append(f"No value on {plural(missing, 'day')}.")
    if series.lower is not None and series.upper is not None:
        words.append("A shaded band shows the expected range.")
    if series.expected is not None:
        words.append("A dashed line shows the expected value.")
    if series.marker is not None:
        label = f": {series.marker_label}" if series.marker_label else ""
        words.append(f"A vertical line marks {_day(series.marker)}{label}.")
    return " ".join(words)


def chart_legend(series: Series) -> str:
    parts = ["Solid line: observed"]
    if series.expected is not None:
        parts.append("dashed: expected")
    if series.lower is not None and series.upper is not None:
        parts.append("shaded: expected range")
    if series.marker is not None:
        parts.append(f"dotted: {_day(series.marker)}")
    return "; ".join(parts) + "."


def safe_url(url: str) -> str:
    """The URL itself if it is http(s) or mailto; anything else (javascript:, data:, a relative path) is a bug
    in the digest and refused, rather than linked."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SAFE_SCHEMES or any(c in url for c in "\r\n\t"):
        raise ValueError(f"refusing to link {url!r}: only absolute http(s) or mailto URLs go into an email")
    return url


def wrap(text: str, width: int = TEXT_WIDTH, indent: str = "", first: str | None = None) -> str:
    """Plain text wrapped at `width`, paragraphs kept; URLs and long words are never broken."""
    first = indent if first is None else first
    out = []
    for n, para in enumerate(str(text).splitlines() or [""]):
        out.append(textwrap.fill(" ".join(para.split()), width=width,
                                 initial_indent=first if n == 0 else indent, subsequent_indent=indent,
                                 break_long_words=False, break_on_hyphens=False) or (first if n == 0 else indent))
    return "\n".join(out)


# css-inline re-serializes the document: text keeps `&lt;`, but attribute values come out with a bare `<`
# and `>` (legal HTML inside quotes, yet a stored `<img ...>` in an alt text is what filters and people
# flag). Its output always double-quotes attribute values and writes `"` as `&quot;`, so a tag is
# `<name (attr="...")*>` and the values can be found exactly.
_TAG = re.compile(r'<[A-Za-z][^\s/>]*(?:\s+[^\s"\'>/=]+(?:="[^"]*")?)*\s*/?>')
_VALUE = re.compile(r'="([^"]*)"')


def _escape_brackets_in_attributes(html: str) -> str:
    def tag(m: re.Match) -> str:
        return _VALUE.sub(lambda v: '="' + v.group(1).replace("<", "&lt;").replace(">", "&gt;") + '"', m.group(0))

    return _TAG.sub(tag, html)

