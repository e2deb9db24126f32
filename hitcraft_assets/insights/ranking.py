"""Prioritization: which of the day's findings a person should read first.

Each insight gets

    impact = users x effect x confidence x importance x scope x kind x novelty x news

- **users** = ``log10(10 + users_affected)``: the users behind the finding (``evidence.users_affected``:
  the segment's users in a comparison, the users lost at a funnel's drop-off, the users at the previous
  step of a funnel step's change, the count of a user or event metric (its 7-day mean for a trend), the
  segment's daily active users otherwise). Log-scaled, so 10,000 users
  weigh 4, 100 users 2, none 1: size matters, but a large effect on a small group is not drowned.
- **effect** = ``sqrt(clip(|relative_change|, 0.01, 1))``: the relative size of the change or gap
  (``evidence.relative_change``: (observed - expected) / expected, a segment's gap to the rest relative to
  the rest, the 28-day change of a trend, the share lost at a funnel step). It saturates at 100%; the
  square root keeps a 50% change about three times, not ten times, a 5% one. Without a relative change,
  ``|Cohen's h|`` or ``|z| / 10`` stand in (clipped the same way).
- **confidence** = the insight's confidence, 0..1: ``1 - sqrt(q)`` of the test behind it (Benjamini-Hochberg
  q-value of the comparison, anomaly or trend), 0.9 for a change point (PELT gives no p-value), and
  ``n / (n + 50)`` for a funnel's largest drop-off (a count, not a test: small cohorts count less).
- **importance** = the largest ``metric_importance`` of the config among the metric's name and its events
  (default 1). A funnel step counts the events of the step and of every later step: a leak before
  Production Completed costs completed productions.
- **scope** = 1.5 for totals (all users), 1 for a segment.
- **kind** = risk 1.2, every other kind 1: of two equal findings, the one that costs users comes first.
- **novelty** = new 1, ongoing 0.7, resolved 0.2.
- **news** = 1 for a change (an anomaly, a change point, a lasting jump, a segment that differs, a trend
  significant on at most 14 days of the last 90, or a falling one: users lost stay news while they are
  lost), 0.6 for a trend significant on 15-28 days, and 0.3 for a standing fact: a trend significant for
  longer (a product's months-long growth), a rise of a young series (trended on at most 28 days) significant
  on two thirds of them or more (a new product ramping up from nothing: its growth is how it began, and an
  incident in its first weeks ranks above it), or a funnel's largest drop-off
  with nothing changing about it (a leak the same size for months is context for the funnel, not today's
  risk).

Ranking sorts open findings (new, ongoing) before resolved ones, then by impact (rounded to 9 significant
digits, so float noise cannot reorder equal findings), highest first, ties broken by ``insight_id``: the
same inputs always give the same order. Call
:func:`~hitcraft_assets.insights.generators.with_status` before :func:`rank_insights`, so that novelty sees
the status.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from hitcraft_assets.config import ProductConfig

if TYPE_CHECKING:
    from hitcraft_assets.insights.generators import Insight

TOTAL_SCOPE = 1.5
SEGMENT_SCOPE = 1.0
KIND_WEIGHT = {"risk": 1.2, "success": 1.0, "opportunity": 1.0, "anomaly": 1.0, "trend": 1.0}
NOVELTY = {"new": 1.0, "ongoing": 0.7, "resolved": 0.2}
TREND_NEWS = 0.6
STANDING_NEWS = 0.3
FRESH_TREND_DAYS = 14   # a trend significant for at most this many days is news
OLD_TREND_DAYS = 28     # ... for more than this, a standing fact
YOUNG_SHARE = 2 / 3     # a rise significant on this share of a young series' trended days is how it began
MIN_EFFECT = 0.01
MAX_EFFECT = 1.0


def parse_funnel_metric(metric: str) -> tuple[str, int] | None:
    """``funnel:<name>:step<k>`` -> (name, k); None for any other metric."""
    if not metric.startswith("funnel:"):
        return None
    name, _, step = metric[len("funnel:"):].rpartition(":")
    if not name or not step.startswith("step") or not step[4:].isdigit():
        return None
    return name, int(step[4:])


def metric_event(metric: str) -> str | None:
    """The event of an ``event_users:<event>`` / ``event_count:<event>`` metric."""
    for prefix in ("event_users:", "event_count:"):
        if metric.startswith(prefix):
            return metric[len(prefix):]
    return None


def metric_events(metric: str, config: ProductConfig, downstream: bool = False) -> list[str]:
    """The events a metric is about: its event, or a funnel step's previous and own event (with
    ``downstream``, the step's event and every later step's instead)."""
    event = metric_event(metric)
    if event:
        return [event]
    parsed = parse_funnel_metric(metric)
    if parsed:
        name, k = parsed
        for f in config.funnels:
            if f.name == name and 2 <= k <= len(f.steps):
                return list(f.steps[k - 1:]) if downstream else [f.steps[k - 2], f.steps[k - 1]]
    return []


def importance(metric: str, config: ProductConfig) -> float:
    """The largest configured weight among the metric's name and its (downstream) events; default 1."""
    weights = config.metric_importance or {}
    names = [metric, *metric_events(metric, config, downstream=True)]
    found = [float(weights[n]) for n in names if n in weights]
    return max(found) if found else 1.0


def _effect(evidence: dict) -> float:
    rel = evidence.get("relative_change")
    if rel is None or not math.isfinite(float(rel)):
        h = evidence.get("effect_size")
        z = evidence.get("score")
        rel = h if h is not None else (abs(float(z)) / 10 if z is not None else MIN_EFFECT)
    return math.sqrt(min(max(abs(float(rel)), MIN_EFFECT), MAX_EFFECT))


def news(evidence: dict, kind: str = "") -> float:
    """How much of a change the finding is (see the module docstring)."""
    facets = evidence.get("facets") or [evidence.get("lead")]
    if list(facets) == ["dropoff"]:
        return STANDING_NEWS
    if evidence.get("lead") != "trend" or kind == "risk":
        return 1.0     # a change, or a decline that goes on: users lost stay news while they are lost
    trend = evidence.get("trend") or {}
    age, trended = trend.get("days_significant"), trend.get("days_trended")
    if age is not None and trended and age >= YOUNG_SHARE * trended and trended <= OLD_TREND_DAYS:
        return STANDING_NEWS   # rising on most days since the series could first be trended: how it began
    if age is None or age <= FRESH_TREND_DAYS:
        return 1.0
    return TREND_NEWS if age <= OLD_TREND_DAYS else STANDING_NEWS


def impact_score(insight: Insight, config: ProductConfig) -> float:
    """The formula of the module docstring, for one insight."""
    ev = insight.evidence or {}
    users = math.log10(10 + max(float(ev.get("users_affected") or 0), 0.0))
    confidence = min(max(float(insight.confidence), 0.0), 1.0)
    scope = TOTAL_SCOPE if ev.get("dimension", "all") == "all" else SEGMENT_SCOPE
    value = (users * _effect(ev) * confidence * importance(str(ev.get("metric", "")), config) * scope
             * KIND_WEIGHT.get(insight.kind, 1.0) * NOVELTY.get(insight.status, 1.0) * news(ev, insight.kind))
    return float(f"{value:.9g}")


def rank_insights(insights: list[Insight], config: ProductConfig) -> list[Insight]:
    """The insights with impact_score and priority_rank set (1 = most important), most important first."""
    scored = [dataclasses.replace(i, impact_score=impact_score(i, config)) for i in insights]
    scored.sort(key=lambda i: (i.status == "resolved", -i.impact_score, i.insight_id))
    return [dataclasses.replace(i, priority_rank=n) for n, i in enumerate(scored, start=1)]
