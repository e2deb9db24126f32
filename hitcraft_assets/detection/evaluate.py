"""Scoring detection against the demo product's ground truth (`hitcraft evaluate`).

A story is **detected** on the first day D in [start, start + MAX_DELAY_DAYS] when, on the story's own
series (its metric, dimension and segment; a funnel story's series is `funnel:<funnel>:step<k>`):
- `analytics.anomalies` has a row on D in the story's direction, or
- `analytics.trends` as of D has a change point dated within MAX_DELAY_DAYS of the start with a shift in
  the story's direction, or a significant Mann-Kendall trend (q <= 0.05) in the story's direction that
  was not already significant the day before the story started, or
- for a story about a segment's activity (its DAU), `analytics.return_rates` has a significant change of
  one of that segment's return rates on D in the story's direction (not already significant the day
  before the start): users coming back less is that story, seen in its cohorts.
The delay is D - start. A detection after the allowed delay is reported as late, with its delay.

**False alerts** are anomalies that no story explains: on total series (dimension `all`) per 30 evaluated
days, and on totals and on segments per series per 30 days of testing (the series each day's scan tested,
from `analytics.detection_log`). A story explains an alert from its start to 3 days after its end when the
alert's metric is the story's own, involves one of the story's events (the event of an `event_*` metric, or the funnel's
steps), or, for a story that moves how many users come (a sign-up, DAU or new-user story), is one of the
volume metrics (DAU, new users, sessions, and the counts of Page View, Sign Up and Login).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

ACTIVITY_STORIES = {"dau", "wau", "mau"}
RETURN_METRICS = {"first_week_return", "weekly_return"}   # analytics.return_rates
ACTIVITY_METRICS = {"dau", "wau", "mau", "sessions", "new_users", "week1_retention", "stickiness", *RETURN_METRICS}
MAX_DELAY_DAYS = 3
EXPLAIN_AFTER_END_DAYS = 3
Q_ALPHA = 0.05
VOLUME_METRICS = {"dau", "new_users", "sessions", "event_count:Page View", "event_users:Page View",
                  "event_count:Sign Up", "event_users:Sign Up", "event_count:Login", "event_users:Login"}


@dataclass(frozen=True)
class StoryScore:
    story_id: str
    series: tuple[str, str, str]
    start: date
    direction: str
    detected: bool            # within MAX_DELAY_DAYS
    delay_days: int | None    # first detection, even if late
    how: str                  # anomaly | change_point | trend | -


@dataclass(frozen=True)
class Evaluation:
    stories: list[StoryScore]
    false_alerts: int
    evaluated_days: int
    false_alerts_per_30_days: float
    unexplained: list[dict[str, Any]]
    segment_false_alerts: int = 0
    totals_series_days: int = 0      # series x days tested (analytics.detection_log), totals
    segment_series_days: int = 0     # ... segments

    @staticmethod
    def _per_series(alerts: int, series_days: int) -> float | None:
        return round(alerts / series_days * 30, 4) if series_days else None

    @property
    def totals_per_series_30d(self) -> float | None:
        """Unexplained alerts per total series per 30 days of testing."""
        return self._per_series(self.false_alerts, self.totals_series_days)

    @property
    def segments_per_series_30d(self) -> float | None:
        """Unexplained alerts per segment series per 30 days of testing."""
        return self._per_series(self.segment_false_alerts, self.segment_series_days)

    @property
    def detected(self) -> int:
        return sum(s.detected for s in self.stories)


def story_series(story: Mapping[str, Any]) -> tuple[str, str, str]:
    metric = story["metric"]
    if metric == "funnel_conversion":
        metric = f"funnel:{story['funnel']}:step{story['step']}"
    return metric, story.get("dimension") or "all", story.get("segment") or "all"


def story_events(story: Mapping[str, Any], funnel_steps: Mapping[str, Sequence[str]]) -> set[str]:
    metric = story["metric"]
    if metric == "funnel_conversion":
        return set(funnel_steps.get(story["funnel"], ()))
    if ":" in metric:
        return {metric.split(":", 1)[1]}
    return set()


def _explains(story: Mapping[str, Any], metric: str, day: date, funnel_steps) -> bool:
    start = date.fromisoformat(story["start_date"])
    end = date.fromisoformat(story["end_date"]) + timedelta(days=EXPLAIN_AFTER_END_DAYS)
    if not start <= day <= end:
        return False
    own = story_series(story)[0]
    if metric == own:
        return True
    events = story_events(story, funnel_steps)
    if any(metric.endswith(":" + e) or (metric.startswith("funnel:") and e in metric) for e in events):
        return True
    moves_volume = story["metric"] in ("dau", "new_users") or story["metric"].endswith(":Sign Up")
    return moves_volume and metric in VOLUME_METRICS


def _direction_of(value: float | None) -> str | None:
    if value is None or value == 0:
        return None
    return "up" if value > 0 else "down"


def score(truth: Mapping[str, Any], anomalies: Iterable[Mapping[str, Any]], trends: Iterable[Mapping[str, Any]],
          funnel_steps: Mapping[str, Sequence[str]], first_scored_day: date, last_day: date,
          tested: Mapping[date, tuple[int, int]] | None = None,
          return_rates: Iterable[Mapping[str, Any]] = ()) -> Evaluation:
    """Score the anomaly rows (metric_date, metric, dimension, segment, direction), trend rows
    (as_of_date, metric, dimension, segment, trend, q_value, change_points as a list of dicts with date
    and shift) and return-rate rows (metric_date, metric, dimension, segment, direction, significant)
    against `truth` (ground_truth.json). `tested`: per day, how many total and segment series the anomaly
    scan tested (for the false alerts per series)."""
    anomalies = list(anomalies)
    returns = [r for r in return_rates if r["metric"] in RETURN_METRICS and r["significant"]]
    trend_rows: dict[tuple[str, str, str], dict[date, Mapping[str, Any]]] = {}
    for r in trends:
        trend_rows.setdefault((r["metric"], r["dimension"], r["segment"]), {})[r["as_of_date"]] = r
    scores = []
    for story in truth["stories"]:
        key = story_series(story)
        start = date.fromisoformat(story["start_date"])
        direction = story["direction"]
        found: list[tuple[int, str]] = []
        for a in anomalies:
            if (a["metric"], a["dimension"], a["segment"]) == key and a["direction"] == direction \
                    and a["metric_date"] >= start:
                found.append(((a["metric_date"] - start).days, "anomaly"))
        by_day = trend_rows.get(key, {})
        before = by_day.get(start - timedelta(days=1))
        already = bool(before and before["q_value"] is not None and before["q_value"] <= Q_ALPHA
                       and before["trend"] == ("increasing" if direction == "up" else "decreasing"))
        for day, r in sorted(by_day.items()):
            if day < start:
                continue
            for cp in r["change_points"]:
                cp_day = cp["date"] if isinstance(cp["date"], date) else date.fromisoformat(str(cp["date"])[:10])
                if abs((cp_day - start).days) <= MAX_DELAY_DAYS and _direction_of(cp["shift"]) == direction:
                    found.append(((day - start).days, "change_point"))
                    break
            if not already and r["q_value"] is not None and r["q_value"] <= Q_ALPHA and \
                    r["trend"] == ("increasing" if direction == "up" else "decreasing"):
                found.append(((day - start).days, "trend"))
        if story["metric"] in ACTIVITY_STORIES and key[1] != "all":
            seg = [r for r in returns if (r["dimension"], r["segment"]) == key[1:] and r["direction"] == direction]
            already_down = {r["metric"] for r in seg if r["metric_date"] == start - timedelta(days=1)}
            found += [((r["metric_date"] - start).days, "return_rate") for r in seg
                      if r["metric_date"] >= start and r["metric"] not in already_down]
        first = min(found) if found else None
        scores.append(StoryScore(story["id"], key, start, direction,
                                 detected=bool(first and first[0] <= MAX_DELAY_DAYS),
                                 delay_days=first[0] if first else None, how=first[1] if first else "-"))
    unexplained = [a for a in anomalies if first_scored_day <= a["metric_date"] <= last_day
                   and not any(_explains(s, a["metric"], a["metric_date"], funnel_steps) for s in truth["stories"])]
    on_totals = [a for a in unexplained if a["dimension"] == "all"]
    days = (last_day - first_scored_day).days + 1
    scored = [v for d, v in (tested or {}).items() if first_scored_day <= d <= last_day]
    return Evaluation(scores, len(on_totals), days, round(len(on_totals) / days * 30, 2) if days else 0.0,
                      on_totals, segment_false_alerts=len(unexplained) - len(on_totals),
                      totals_series_days=sum(t for t, _ in scored), segment_series_days=sum(g for _, g in scored))


def format_report(ev: Evaluation) -> str:
    lines = [f"{'story':<30} {'series':<58} {'start':<10} {'dir':<4} {'detected':<9} {'delay':>5}  how"]
    for s in ev.stories:
        series = f"{s.series[0]} [{s.series[1]}={s.series[2]}]"
        delay = "-" if s.delay_days is None else str(s.delay_days)
        lines.append(f"{s.story_id:<30} {series:<58} {s.start.isoformat():<10} {s.direction:<4} "
                     f"{'yes' if s.detected else 'no':<9} {delay:>5}  {s.how}")
    lines.append(f"\nstories detected within {MAX_DELAY_DAYS} days: {ev.detected}/{len(ev.stories)}")
    lines.append(f"false alerts on total series: {ev.false_alerts} in {ev.evaluated_days} days = "
                 f"{ev.false_alerts_per_30_days} per 30 days")
    for a in ev.unexplained:
        lines.append(f"  {a['metric_date']} {a['metric']} {a['direction']}")
    if ev.totals_series_days or ev.segment_series_days:
        lines.append(f"false alerts per series per 30 days: totals {ev.totals_per_series_30d} "
                     f"({ev.false_alerts} in {ev.totals_series_days:,} series-days), segments "
                     f"{ev.segments_per_series_30d} ({ev.segment_false_alerts} in {ev.segment_series_days:,})")
    return "\n".join(lines)


@dataclass(frozen=True)
class StoryCoverage:
    story_id: str
    active_days: int          # days from the story's start to its end (or the last scored day)
    days_in_top: int          # of those, days with an open insight on the story's series in the top N
    first_delay_days: int | None
    max_copies: int = 0       # the most top-N insights that told the story on one day (1 = one story, one insight)
    dated: int = 0            # days in the top whose insight states when the change began
    dated_right: int = 0      # ... within one day of the story's start


def _series_of(evidence: Mapping[str, Any]) -> set[tuple[str, str, str]]:
    """Every (metric, dimension, segment) an insight speaks for: its own and the ones merged into it;
    event counts and event users count as one series, as the insights merge them."""
    def norm(metric: str) -> str:
        return "event_users:" + metric.split(":", 1)[1] if metric.startswith("event_count:") else metric
    out = set()
    for item in [evidence, *(evidence.get("segments") or []), *(evidence.get("related_metrics") or [])]:
        if isinstance(item, Mapping) and item.get("metric"):
            out.add((norm(item["metric"]), item.get("dimension", "all"), item.get("segment", "all")))
    return out


def _about(story: Mapping[str, Any], evidence: Mapping[str, Any], series: tuple[str, str, str],
           events: set[str]) -> bool:
    """Whether an insight tells (part of) a story: it speaks for the story's series, or, for a story about a
    segment, it is about that segment and one of the story's events, or a total's move whose root cause is
    that segment (a campaign's spike seen in sessions, a broken step seen in the steps after it). An insight
    moving the other way (a total's rise that lists the segment while the story is its fall) tells nothing."""
    if evidence.get("direction") not in (None, story.get("direction")):
        return False
    if series in _series_of(evidence):
        return True
    # a story of an event's users filtered to one value of its key property (feature = Stem Separation): an
    # insight about that value of the same event tells it
    for prop, value in (story.get("event_filter") or {}).items():
        if any(s[0] == series[0] and (s[1], s[2]) == (prop, value) for s in _series_of(evidence)):
            return True
    dimension, segment = series[1], series[2]
    if dimension == "all":
        return False
    metric = str(evidence.get("metric") or "")
    metric_events = {evidence.get(k) for k in ("event", "prev_event", "step_event")} - {None}
    if (evidence.get("dimension"), evidence.get("segment")) == (dimension, segment):
        same_way = evidence.get("direction") in (None, story.get("direction"))
        if same_way and (bool(metric_events & events) or metric in VOLUME_METRICS):
            return True
        # a story about a segment's activity (its DAU): the segment's users doing less of anything, or
        # retaining worse, in the story's direction, is that story
        return (story.get("metric") in ACTIVITY_STORIES and evidence.get("direction") == story.get("direction")
                and (metric in ACTIVITY_METRICS or metric.startswith(("event_users:", "event_count:"))))
    for facet in ("anomaly", "change_point"):
        for cause in (evidence.get(facet) or {}).get("root_cause") or []:
            if ((cause.get("dimension"), cause.get("segment")) == (dimension, segment)
                    and (cause.get("contribution") or 0) >= 0.5):
                return True
    return False


def top_insight_coverage(truth: Mapping[str, Any], insights: Iterable[Mapping[str, Any]], last_day: date,
                         top: int = 10, funnel_steps: Mapping[str, Sequence[str]] | None = None
                         ) -> list[StoryCoverage]:
    """For each story, on how many of its active days an open insight about it (see _about: its series, or
    for a story about a segment that segment's same move) was in the top `top`, the most insights that told
    it on one day, and on how many days the best-ranked one dated the
    change (its evidence's `since`) within a day of the story's start (rows: as_of_date, priority_rank,
    status, evidence as a dict)."""
    by_day: dict[date, list[Mapping[str, Any]]] = {}
    for r in insights:
        if r["status"] != "resolved" and r["priority_rank"] <= top:
            by_day.setdefault(r["as_of_date"], []).append(r)
    out = []
    for story in truth["stories"]:
        metric, dimension, segment = story_series(story)
        if metric.startswith("event_count:"):
            metric = "event_users:" + metric.split(":", 1)[1]
        series = (metric, dimension, segment)
        events = story_events(story, funnel_steps or {})
        start = date.fromisoformat(story["start_date"])
        end = min(date.fromisoformat(story["end_date"]), last_day)
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        hits, copies, dated, dated_right = [], 0, 0, 0
        for d in days:
            rows = sorted(by_day.get(d, []), key=lambda r: r["priority_rank"])
            about = [r for r in rows if _about(story, r["evidence"], series, events)]
            own = about
            copies = max(copies, len(about))
            if own:
                hits.append(d)
                since = own[0]["evidence"].get("since")
                if since:
                    dated += 1
                    dated_right += abs((date.fromisoformat(str(since)[:10]) - start).days) <= 1
        out.append(StoryCoverage(story["id"], len(days), len(hits), (hits[0] - start).days if hits else None,
                                 copies, dated, dated_right))
    return out


def format_coverage(coverage: Sequence[StoryCoverage], top: int = 10) -> str:
    lines = [f"\nstories in the top {top} insights on their active days:",
             f"{'story':<30} {'active days':>11} {'in top':>7} {'first (days after start)':>25} "
             f"{'most copies a day':>18} {'dated right':>12}"]
    for c in coverage:
        first = "-" if c.first_delay_days is None else str(c.first_delay_days)
        right = f"{c.dated_right}/{c.dated}" if c.dated else "-"
        lines.append(f"{c.story_id:<30} {c.active_days:>11} {c.days_in_top:>7} {first:>25} {c.max_copies:>18} "
                     f"{right:>12}")
    return "\n".join(lines)


def format_summary(results: Sequence[tuple[int | None, int, Evaluation, Sequence[StoryCoverage]]]) -> str:
    """One table over several demos (size as median daily users, seed): per story, detected within
    MAX_DELAY_DAYS (with the first delay) and days in the top 10 of its active days; per demo, false alerts
    per series per 30 days on totals and on segments."""
    lines = [f"{'size (DAU)':>10} {'seed':>5}  {'story':<30} {'detected':<12} {'top 10':>8}"]
    for size, seed, ev, coverage in results:
        top = {c.story_id: c for c in coverage}
        for s in ev.stories:
            c = top.get(s.story_id)
            found = "-" if s.delay_days is None else f"{'yes' if s.detected else 'late'} ({s.delay_days} d)"
            shown = f"{c.days_in_top}/{c.active_days}" if c else "-"
            lines.append(f"{size or 'demo':>10} {seed:>5}  {s.story_id:<30} {found:<12} {shown:>8}")
        lines.append(f"{size or 'demo':>10} {seed:>5}  false alerts per series per 30 days: totals "
                     f"{ev.totals_per_series_30d}, segments {ev.segments_per_series_30d}")
    return "\n".join(lines)
