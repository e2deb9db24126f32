"""What one email digest says, for one recipient: plain data, built by `digest.py` from the warehouse and
rendered by `email/render.py`. Every number here comes from the insights' evidence or the analysis tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True)
class Series:
    """A daily series for a chart: the observed values, optionally the expected band (anomalies) and one
    marked day (an anomaly's day, a change point) with its label."""

    title: str
    dates: tuple[date, ...]
    values: tuple[float | None, ...]
    expected: tuple[float | None, ...] | None = None
    lower: tuple[float | None, ...] | None = None
    upper: tuple[float | None, ...] | None = None
    marker: date | None = None
    marker_label: str | None = None
    percent: bool = False          # values are shares (0..1), shown as percentages


@dataclass(frozen=True)
class Kpi:
    """One KPI tile: the value over the period against the previous period of the same length."""

    key: str                       # metric name or funnel:<name>
    label: str                     # what a person reads ("Daily active users (average)")
    value: float | None
    previous: float | None
    change: float | None           # relative change (0.12 = +12%), None when there is no previous value
    percent: bool = False          # a share (funnel conversion), shown as a percentage
    sparkline: Series | None = None


@dataclass(frozen=True)
class DigestInsight:
    insight_id: str
    kind: str                      # risk | opportunity | success | trend | anomaly
    status: str                    # new | ongoing | resolved
    title: str
    summary: str
    recommendation: str
    owner: str | None
    area: str | None
    evidence: tuple[tuple[str, str], ...]   # (label, formatted value): the numbers behind it
    url: str                       # the insight's page in the dashboard
    chart: Series | None = None


@dataclass(frozen=True)
class Digest:
    """One report profile's digest for one recipient and period."""

    profile: str                   # report profile name (config `reports[].name`)
    cadence: str                   # daily | weekly | monthly
    title: str
    product: str
    period_start: date             # the period's first and last local days (reporting timezone)
    period_end: date
    period_label: str              # "Tuesday 1 December 2026", "week of 23 November 2026", "November 2026"
    recipient_email: str
    recipient_name: str
    recipient_role: str | None
    recipient_timezone: str
    greeting: str                  # "Good morning, Ana" in the recipient's timezone
    sent_label: str                # when it was prepared, in the recipient's timezone
    kpis: tuple[Kpi, ...]
    insights: tuple[DigestInsight, ...]
    dashboard_url: str
    unsubscribe_url: str
    empty_note: str | None = None  # why there is nothing new, when there is nothing
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str
    images: dict[str, bytes]       # content id (without <>) -> PNG bytes, referenced as cid:<id> in the HTML
