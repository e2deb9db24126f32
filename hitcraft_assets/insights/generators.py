"""Insight generators: the day's analysis and detection tables, read "as of" the day, turned into a short
list of findings a person can act on, each with its evidence, context and a stable id.

**Sources** (a missing table is skipped): `analytics.funnel_steps`, `analytics.segment_comparisons`,
`analytics.anomalies`, `analytics.trends`, `analytics.daily_metrics` (segment sizes). Each source yields
*facets*, one piece of evidence about one series (metric x dimension x segment), with the kind it
suggests:

- `dropoff` (risk): per funnel, the step where most users are lost in the latest entry cohort whose window
  has closed (the entry day `day - window_days`: younger cohorts are still converting);
- `comparison`: a significant segment-vs-rest comparison (q <= 0.05): a risk if a conversion (funnel
  step, first-week retention) is lower, an opportunity if a conversion or engagement (events per user,
  session length) is higher;
- `anomaly`: a row of `analytics.anomalies` of the day: a risk if a funnel step fell (its first-day
  conversion, of the users who entered the day before), else an anomaly;
- `trend`: a significant Mann-Kendall trend (q <= 0.05) of the day whose Sen line moved 5% or more over
  the 28 days (the mean-on-mean change where the line starts at 0): a risk / success for a funnel step falling / rising, an opportunity for a rising `event_users:` /
  `event_count:`, else a trend;
- `change_point` (success if up, risk if down): a lasting level shift of 10% or more in the last 28 days,
  on a funnel step, or on a total whose metric has a configured importance;
- `persisted` (success): an upward anomaly of the last 28 days (3+ days old) whose 7-day mean is still
  above its band;
- `new`: an event name, a dimension's value or a key property's value first seen in the last 7 days
  after a long absence (novelty.py): a risk when its name reads as a failure, an opportunity for a new
  feature value, else an anomaly.

Trend, change-point and persisted facets of a segment are kept only for big segments (at least 5% of the
day's active users) and never for the smoothed `wau`/`mau`/`stickiness` of a segment. A segment that
beats the rest only because another segment of its dimension drags the rest down (a significantly worse
segment with a larger effect size on the same metric) is not an opportunity.

**One finding per series and direction, little noise.** The facets of one series that point the same way
(up or down; a drop-off is down) are one insight, of the kind of its leading facet, the first present of
comparison, anomaly, persisted, change point, drop-off, trend; the others are evidence inside it ("if the
same series yields an anomaly and a risk, keep one and put the other's evidence in it"): a segment
converting worse and its anomaly are one risk, an anomaly and the rising trend under it one anomaly.
Opposite moves of one series stay apart (a funnel step's standing drop-off and a jump in its conversion).
Then `event_count:X` joins `event_users:X` of the same segment, kind and direction; a segment's finding
built only from time series joins the total's finding of the same metric, kind and direction (listed under
`segments`); a segment's several trend, opportunity or anomaly findings in one direction become one, led by
its DAU (anomalies: by the most important metric, then the largest relative move, DAU's and the other
activity counts' doubled, then the largest |z|), the others listed under
`related_metrics`; so do totals' anomalies whose first root cause is the same segment. A rising generic
event (Login, Page View ...; the config's `product.generic_events`) is a trend, not an opportunity. A story
led by the rise of an event whose name reads as a failure or a request for help (`payment_error`,
`support_chat`, `Refund Requested`: novelty.trouble_like) is a risk; inside a burst of visitors' story (a
viral article's support chats) it stays that story's evidence. The day
keeps at most `MAX_INSIGHTS`, the highest by the ranking formula.

**Identity.** `insight_id` hashes the kind and the series (metric, dimension, segment; a funnel's name and
step are in the metric), never dates or numbers: the same finding keeps its id from day to day, and
:func:`with_status` marks it new, ongoing or resolved.

Public: :class:`Insight`, :func:`generate_insights`, :func:`with_status`, :func:`write_insights`,
:func:`previous_state`, :func:`insight_context`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from hitcraft_assets.config import ProductConfig
from hitcraft_assets.insights.novelty import new_findings, trouble_like
from hitcraft_assets.insights.ranking import (
    impact_score,
    importance,
    metric_event,
    metric_events,
    parse_funnel_metric,
)
from hitcraft_assets.insights.rules import fmt_day, insight_summary, insight_title
from hitcraft_assets.warehouse import existing_tables, named_statements, transaction

SQL = "insights/insights.sql"
KINDS = ("risk", "opportunity", "success", "trend", "anomaly")
OPEN_STATUSES = ("new", "ongoing")
ALPHA = 0.05                  # q-value at or below which a comparison or trend is significant
MAX_INSIGHTS = 50
BIG_SEGMENT_SHARE = 0.05      # share of the day's active users a segment needs for trend findings
CHANGE_DAYS = 28              # a change point this recent is news
MIN_CHANGE_RELATIVE = 0.10    # ... if it moved the level by at least this much
TRANSIENT_DAYS = 14           # a change point this soon after one the other way ends an episode
SEGMENT_TREND_ALPHA = 0.01    # a segment's trend needs this q-value (there are many segments)
MIN_TREND_CHANGE = 0.05       # a significant trend is a finding if its line moved at least this much in 28 days
PERSIST_LOOKBACK_DAYS = 28
PERSIST_MIN_AGE_DAYS = 3
MIN_DROPOFF_USERS = 30        # a funnel drop-off needs this many users at the previous step
DROPOFF_PRIOR_N = 50          # confidence of a drop-off: n / (n + 50)
CHANGE_POINT_CONFIDENCE = 0.9
HISTORY_DAYS = 90             # how far back "significant since" looks
EPISODE_LOOKBACK_DAYS = 60    # how far back the first anomalous day of a change is looked for
EPISODE_NEAR_DAYS = 7         # an episode this close to a change point dates the change
EXPLAINS_SHARE = 0.5          # a segment explains a total's move when it accounts for at least this share
SAME_BREAK_DAYS = 3           # two segments' change points this close on one metric are one break
UNDERUSED_SHARE = 0.2         # a better-converting segment below this share is a path few users take
TREND_WINDOWS = [7, 28]
SMOOTHED = ("wau", "mau", "stickiness")
GENERIC_EVENTS = ("Login", "Logout", "Page View", "Session Start", "App Open")
RETURN_RATES = ("first_week_return", "weekly_return")   # analytics.return_rates
PROPORTIONS = ("week1_retention", *RETURN_RATES)
RETURN_CARRY_DAYS = 14        # a return rate's window holding an outage: its latest judged change stands this long
SUSTAINED_DAYS = 2            # a return rate's change is a finding once significant on this many tested days running
SAME_COHORTS_DAYS = 7         # two segments' return-rate changes first seen this close are one change
RETURN_CAUSE_SHARE = 1 / 3    # a segment explains a total's return-rate fall with this share of the users lost ...
RETURN_CAUSE_LIFT = 2.0       # ... when it loses them at this many times its share of the users
ENGAGEMENT = ("events_per_user", "session_duration_s")
COUNTS = ("dau", "wau", "mau", "new_users", "sessions")
USER_COUNTS = ("dau", "wau", "mau", "new_users")   # a significant fall of these is users lost: a risk
RETURNING = ("stickiness",)   # ... and of these, users coming back less often: a risk too
# which facet leads (and sets the kind of) a series' finding in one direction; the others join it
FACET_PRIORITY = ("comparison", "new", "retention", "anomaly", "persisted", "change_point", "dropoff", "trend")
TIME_SERIES_FACETS = {"anomaly", "trend", "change_point", "persisted", "new"}
LEAD_PREFERENCE = ("dau", "new_users", "sessions", "wau", "mau")   # who leads a segment's group
ACTIVITY_LEAD = 2.0    # ... and the weight of their relative move when totals' anomalies are told as one
AREA_HINTS = {   # fallback words per area name, for areas named in the config's owners
    "billing": ("subscription", "payment", "purchase", "checkout", "invoice", "billing", "plan"),
    "onboarding": ("sign up", "signup", "register", "profile", "onboarding", "welcome"),
}
_LABELS = {
    "dau": "Daily active users", "wau": "Weekly active users", "mau": "Monthly active users",
    "stickiness": "Stickiness (DAU/MAU)", "new_users": "New users", "sessions": "Sessions",
    "session_duration_median_s": "Median session length (s)", "session_duration_mean_s": "Mean session length (s)",
    "events_per_session": "Events per session", "events_per_user": "Events per user",
    "session_duration_s": "Session length (s)", "week1_retention": "First-week retention",
    "first_week_return": "Return within a week of joining", "weekly_return": "Weekly return of returning users",
}

Key = tuple[str, str, str]   # (metric, dimension, segment)


@dataclass(frozen=True)
class Insight:
    """One finding as of a day: a row of `insights.insights`. `evidence` holds every number the texts quote
    (identity: metric, dimension, segment, label, funnel/step/events; `lead` and `facets`; one block per
    facet with its table's numbers; `source`: the tables; `users_affected` and `relative_change` for the
    ranking); `context` the product, goals, area, owner and glossary entries."""

    insight_id: str
    as_of_date: date
    kind: str
    title: str
    summary: str
    evidence: dict
    impact_score: float = 0.0
    confidence: float = 0.0
    priority_rank: int = 0
    recommendation: str = ""
    generated_by: str = "rules"
    status: str = "new"
    context: dict = field(default_factory=dict)


def insight_id(kind: str, metric: str, dimension: str, segment: str) -> str:
    """Stable id of a finding: its kind and series, never its dates or numbers."""
    identity = json.dumps([kind, metric, dimension, segment], ensure_ascii=False)
    return hashlib.sha1(identity.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ context


def _matches(pattern: str, name: str) -> bool:
    pattern, name = pattern.lower(), name.lower()
    return name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern


def area_of(names: list[str], config: ProductConfig) -> str | None:
    """The product area of a finding from its funnel and event names (most specific first).

    1. the config's optional `product.areas` ({area: [event or funnel names, `Prefix*` allowed]});
    2. an area of `product.owners` whose name is in a name ("Music Production" -> production);
    3. for an event, the area of the first configured funnel with it among its steps (by rule 1 or 2);
    4. built-in hints for common area names (billing: subscription, payment ...; onboarding: sign up,
       profile ...), for areas the owners name.
    """
    product = config.product or {}
    explicit = product.get("areas") or {}
    owners = product.get("owners") or {}
    for name in names:
        for area, patterns in explicit.items():
            if any(_matches(p, name) for p in patterns or ()):
                return str(area)

    def by_name(name: str) -> str | None:
        for area, patterns in explicit.items():
            if any(_matches(p, name) for p in patterns or ()):
                return str(area)
        for area in owners:
            stem = str(area).lower().rstrip("s")
            if stem and stem in name.lower():
                return str(area)
        return None

    for name in names:
        if found := by_name(name):
            return found
    for name in names:
        for f in config.funnels:
            if name in f.steps and (found := by_name(f.name)):
                return found
    for name in names:
        for area in owners:
            if any(h in name.lower() for h in AREA_HINTS.get(str(area).lower(), ())):
                return str(area)
    return None


def insight_context(metric: str, segment: str, config: ProductConfig) -> dict:
    """Product name, goals, the area and owner of the metric, and the glossary entries of its events."""
    product = config.product or {}
    events = metric_events(metric, config)
    parsed = parse_funnel_metric(metric)
    names = ([parsed[0]] if parsed else []) + events
    area = area_of(names, config) if names else None
    owners = product.get("owners") or {}
    glossary = product.get("feature_glossary") or {}
    return {
        "product": config.product_name,
        "goals": list(product.get("goals") or []),
        "area": area,
        "owner": owners.get(area) if area else owners.get("default"),
        "events": events,
        "glossary": {k: glossary[k] for k in [*events, segment] if k in glossary},
    }


def metric_label(metric: str, config: ProductConfig) -> str:
    parsed = parse_funnel_metric(metric)
    if parsed:
        events = metric_events(metric, config)
        if events:
            return f"{events[1]} conversion ({parsed[0]})"
        return f"{parsed[0]} step conversion"
    event = metric_event(metric)
    if event:
        return f"{event} users" if metric.startswith("event_users:") else f"{event} events"
    return _LABELS.get(metric, metric)


# ------------------------------------------------------------------------------------------ reading


def _rows(conn, name: str, **params) -> list[dict]:
    cur = conn.execute(named_statements(SQL)[name], {k: v.isoformat() if isinstance(v, date) else v
                                                     for k, v in params.items()})
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _clean(value: Any) -> Any:
    """JSON-ready: dates as ISO strings, non-finite floats as None."""
    if isinstance(value, (date, datetime)):
        return value.isoformat()[:10]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


@dataclass
class _Facet:
    key: Key
    name: str
    kind: str
    block: dict
    confidence: float
    users: float | None
    relative: float | None

    @property
    def direction(self) -> str:
        if self.name == "dropoff":
            return "down"
        return "down" if (self.relative or 0) < 0 else "up"


@dataclass
class _Group:
    key: Key
    kind: str
    facets: dict[str, _Facet]
    segments: list[dict] = field(default_factory=list)
    related: list[dict] = field(default_factory=list)
    total: dict | None = None          # the whole product's move this segment explains (merged into it)
    named: dict | None = None          # the value of the event's key property that carries the move

    @property
    def lead(self) -> _Facet:
        return next(self.facets[n] for n in FACET_PRIORITY if n in self.facets)

    @property
    def ordered(self) -> list[_Facet]:
        return [self.facets[n] for n in FACET_PRIORITY if n in self.facets]


def _q_conf(q: float | None) -> float:
    """Confidence from a q-value: 1 - sqrt(q), so that borderline evidence (q = 0.05: 0.78) weighs clearly
    less than strong evidence (q = 0.001: 0.97), where 1 - q would call both about 1."""
    return 0.0 if q is None else min(max(1.0 - math.sqrt(max(float(q), 0.0)), 0.0), 1.0)


class _Sizes:
    """Users behind a series: segment DAU of the day, funnel volumes at the previous step."""

    def __init__(self, dau_rows: list[dict], volume_rows: list[dict], day: date):
        self.dau = {(r["dimension"], r["segment"]): float(r["value"]) for r in dau_rows}
        self.total = self.dau.get(("all", "all"))
        self.volumes: dict[Key, dict[date, float]] = {}
        for r in volume_rows:
            self.volumes.setdefault((r["metric"], r["dimension"], r["segment"]), {})[r["known_on"]] = \
                float(r["users_prev"])
        self.day = day

    def big(self, key: Key) -> bool:
        if key[1] == "all" or not self.total or (key[1], key[2]) not in self.dau:
            return True     # (no DAU of its own: a value of an event's key property, which the scan sized)
        return self.dau.get((key[1], key[2]), 0.0) >= BIG_SEGMENT_SHARE * self.total

    def funnel_users(self, key: Key, on: date | None = None) -> float | None:
        by_day = self.volumes.get(key) or {}
        if on is not None:
            return by_day.get(on)
        return sum(by_day.values()) / len(by_day) if by_day else None

    def users(self, key: Key, value: float | None = None) -> float | None:
        metric = key[0]
        if parse_funnel_metric(metric):
            return self.funnel_users(key)
        if value is not None and (metric in COUNTS or metric_event(metric)):
            return value
        return self.dau.get((key[1], key[2]))


def _funnel_fields(metric: str, config: ProductConfig) -> dict:
    parsed = parse_funnel_metric(metric)
    if not parsed:
        event = metric_event(metric)
        return {"event": event} if event else {}
    events = metric_events(metric, config)
    out = {"funnel": parsed[0], "step": parsed[1]}
    if events:
        out |= {"prev_event": events[0], "step_event": events[1]}
    return out


# ------------------------------------------------------------------------------------------ facets


def _dropoffs(conn, day: date, config: ProductConfig) -> list[_Facet]:
    out = []
    if not config.funnels:
        return out
    for r in _rows(conn, "funnel_dropoffs", day=day, min_users=MIN_DROPOFF_USERS,
                   funnels=[f.name for f in config.funnels], windows=[f.window_days for f in config.funnels]):
        prev = float(r["users_prev"])
        block = {"source": "analytics.funnel_steps", "cohort_date": r["cohort_date"], "funnel": r["funnel"],
                 "window_days": next(f.window_days for f in config.funnels if f.name == r["funnel"]),
                 "completeness": r["completeness"],
                 "step": r["step"], "prev_event": r["prev_event"], "step_event": r["step_event"],
                 "entrants": r["entrants"], "users_prev": r["users_prev"], "users": r["users"],
                 "users_lost": r["users_lost"], "conversion_from_prev": r["conversion_from_prev"],
                 "conversion_from_start": r["conversion_from_start"], "drop_rate": r["users_lost"] / prev}
        out.append(_Facet((f"funnel:{r['funnel']}:step{r['step']}", "all", "all"), "dropoff", "risk", block,
                          prev / (prev + DROPOFF_PRIOR_N), float(r["users_lost"]), -block["drop_rate"]))
    return out


def _comparisons(conn, day: date, config: ProductConfig) -> list[_Facet]:
    funnels = {f.name for f in config.funnels}
    rows = _rows(conn, "segment_comparisons", day=day, alpha=ALPHA)
    worst: dict[tuple[str, str], float] = {}
    for r in rows:
        if r["effect"] < 0:
            k = (r["metric"], r["dimension"])
            worst[k] = max(worst.get(k, 0.0), abs(r["effect_size"] or 0.0))
    history: dict[Key, list[dict]] = {}
    for h in _rows(conn, "comparison_history", day=day, alpha=ALPHA, history_days=HISTORY_DAYS):
        history.setdefault((h["metric"], h["dimension"], h["segment"]), []).append(h)
    out = []
    for r in rows:
        metric = r["metric"]
        proportion = metric.startswith("funnel:") or metric in PROPORTIONS
        if r["effect"] < 0:
            if not proportion:
                continue
            kind = "risk"
        elif r["effect"] > 0 and (proportion or metric in ENGAGEMENT):
            if worst.get((metric, r["dimension"]), 0.0) >= abs(r["effect_size"] or 0.0):
                continue   # better only because a worse segment drags the rest down
            kind = "opportunity"
        else:
            continue
        block = {k: r[k] for k in ("metric_date", "segment_n", "rest_n", "share_of_users", "segment_value",
                                   "rest_value", "effect", "effect_size", "test", "statistic", "p_value",
                                   "q_value")}
        block["source"] = "analytics.segment_comparisons"
        block["significant_since"], block["days_significant"] = _run(history.get((metric, r["dimension"],
                                                                                  r["segment"]), []), day, r["effect"])
        block["relative_gap"] = r["effect"] / r["rest_value"] if r["rest_value"] else None
        block["underused"] = kind == "opportunity" and r["share_of_users"] < UNDERUSED_SHARE
        parsed = parse_funnel_metric(metric)
        if parsed and parsed[0] in funnels:   # the cohort the comparison rests on (segments.py): yesterday's
            block |= {"cohort_date": day - timedelta(days=1), "conversion_within": "1 day"}
        rel = block["relative_gap"] if block["relative_gap"] is not None else r["effect_size"]
        out.append(_Facet((metric, r["dimension"], r["segment"]), "comparison", kind, block,
                          _q_conf(r["q_value"]), float(r["segment_n"]), rel))
    return out


def _return_changes(conn, day: date) -> list[_Facet]:
    """A sustained fall of a return rate (analytics.return_rates): significant on SUSTAINED_DAYS tested days
    running, the recent cohorts pooled against the weeks before (return_change.py). No size floor: the test
    judges a small segment by its own evidence."""
    out = []
    for r in _rows(conn, "return_changes", day=day, history_days=HISTORY_DAYS, carry_days=RETURN_CARRY_DAYS):
        if r["direction"] != "down" or int(r["days_significant"]) < SUSTAINED_DAYS:
            continue
        recent = r["recent_successes"] / r["recent_trials"]
        base = r["baseline_successes"] / r["baseline_trials"]
        block = {k: r[k] for k in ("metric_date", "recent_from", "recent_to", "recent_trials", "recent_successes",
                                   "baseline_from", "baseline_to", "baseline_trials", "baseline_successes",
                                   "between_var", "p_value", "q_value", "direction", "significant_since",
                                   "days_significant", "first_seen_from")}
        block |= {"source": "analytics.return_rates", "test": "beta_binomial", "recent_rate": recent,
                  "baseline_rate": base, "window": "week" if r["metric"] == "weekly_return" else "first week",
                  "users_lost": round((base - recent) * r["recent_trials"]),
                  # its size: how much the share who do not come back rose (81% -> 74% returning is 19% -> 26%
                  # lost, +37%: the users lost each week compound), not the few points the rate moved
                  "lost_share_change": (base - recent) / (1 - base) if base < 1 else 1.0}
        if r["dimension"] == "all":
            block["root_cause"] = _return_causes(conn, r)
        out.append(_Facet((r["metric"], r["dimension"], r["segment"]), "retention", "risk", block,
                          _q_conf(r["q_value"]), float(r["recent_trials"]), -block["lost_share_change"]))
    return out


def _return_causes(conn, total: dict) -> list[dict]:
    """The segments behind a total's return-rate fall: each one's users lost (recent trials x its fall)
    against the total's, kept when it is at least RETURN_CAUSE_SHARE of the loss and RETURN_CAUSE_LIFT
    times the segment's share of the users (a big segment losing its proportional share is not a cause)."""
    lost = total["recent_trials"] * (total["baseline_successes"] / total["baseline_trials"]
                                     - total["recent_successes"] / total["recent_trials"])
    if lost <= 0:
        return []
    out = []
    for r in _rows(conn, "return_contributions", known_on=total["metric_date"], metric=total["metric"]):
        if not r["recent_trials"] or not r["baseline_trials"]:
            continue
        share = r["recent_trials"] / total["recent_trials"]
        contribution = r["recent_trials"] * (r["baseline_successes"] / r["baseline_trials"]
                                             - r["recent_successes"] / r["recent_trials"]) / lost
        if contribution >= RETURN_CAUSE_SHARE and contribution >= RETURN_CAUSE_LIFT * share:
            out.append({"dimension": r["dimension"], "segment": r["segment"], "contribution": contribution,
                        "share_of_users": share,
                        "summary": f"{r['dimension']} = {r['segment']}: {round(100 * contribution)}% of the "
                                   f"users lost"})
    return sorted(out, key=lambda c: (-c["contribution"], c["dimension"], c["segment"]))


def _run(history: list[dict], day: date, effect: float) -> tuple[date, int]:
    """The first day of the run of days, ending on `day`, on which the comparison was significant with the
    same sign, and the number of such days. A day without a row (no data) does not break the run."""
    since, n = day, 0
    for h in history:   # newest first
        if h["metric_date"] > day:
            continue
        if not h["significant"] or (h["effect"] > 0) != (effect > 0):
            break
        since, n = h["metric_date"], n + 1
    return since, max(n, 1)


def _anomalies(conn, day: date, sizes: _Sizes) -> list[_Facet]:
    out = []
    for r in _rows(conn, "anomalies", day=day):
        key = (r["metric"], r["dimension"], r["segment"])
        cause = r["root_cause"]
        cause = json.loads(cause) if isinstance(cause, str) else (cause or [])
        funnel = parse_funnel_metric(r["metric"]) is not None
        block = {k: r[k] for k in ("metric_date", "observed", "expected", "lower", "upper", "score", "direction",
                                   "p_value", "q_value")}
        block |= {"source": "analytics.anomalies", "root_cause": cause, "anomaly_status": r["status"],
                  "window_days": r.get("window_days") or 1}
        if r["status"] == "continuing" and r["episode_start"] is not None:
            block["since"] = r["episode_start"]
        exp, obs = r["expected"], r["observed"]
        block["relative_change"] = (obs - exp) / abs(exp) if exp and obs is not None else None
        if funnel:   # the first-day conversion of the users who entered the day before
            users = sizes.funnel_users(key, r["metric_date"])
            block |= {"users_prev": users, "cohort_date": r["metric_date"] - timedelta(days=1),
                      "conversion_within": "1 day"}
        else:
            users = sizes.users(key, max(obs or 0.0, exp or 0.0))
        kind = "risk" if funnel and r["direction"] == "down" else "anomaly"
        rel = block["relative_change"] if block["relative_change"] is not None else (r["score"] or 0) / 10
        out.append(_Facet(key, "anomaly", kind, block, _q_conf(r["q_value"]), users, rel))
    return out


def _trends(conn, day: date, config: ProductConfig, sizes: _Sizes) -> list[_Facet]:
    out = []
    runs = {(r["metric"], r["dimension"], r["segment"]): r
            for r in _rows(conn, "trend_runs", day=day, alpha=ALPHA, history_days=HISTORY_DAYS)}
    for r in _rows(conn, "trends", day=day, alpha=ALPHA, change_days=CHANGE_DAYS):
        key = (r["metric"], r["dimension"], r["segment"])
        metric = r["metric"]
        # a segment's WAU and MAU repeat its DAU, late; its stickiness (DAU/MAU) says whether its users return
        if not sizes.big(key) or (key[1] != "all" and metric in SMOOTHED and metric not in RETURNING):
            continue
        # segments are many: a segment's trend is a finding only when strong, and never one of logins or
        # page views (its change point still counts)
        weak = key[1] != "all" and (bool(metric_event(metric) and _generic(metric_event(metric), config))
                                    or r["q_value"] is None or r["q_value"] > SEGMENT_TREND_ALPHA)
        funnel = parse_funnel_metric(metric) is not None
        users = sizes.users(key, r["current_7d"])
        up = r["trend"] == "increasing"
        # the size of a trend is how far its line moved over the window (a turn from rising to falling
        # leaves the 28-day mean above the 28 days before for weeks); the mean-on-mean change if no line
        change = r["trend_change"] if r["trend_change"] is not None else r["pct_change_28d"]
        if (not weak and r["q_value"] is not None and r["q_value"] <= ALPHA and r["trend"] != "no trend"
                and change is not None and abs(change) >= MIN_TREND_CHANGE and (change > 0) == up):
            if funnel or (metric in USER_COUNTS + RETURNING and not up):
                kind = "success" if up else "risk"     # a step converting worse, or users lost
            elif up and metric_event(metric) and not _generic(metric_event(metric), config):
                kind = "opportunity"
            else:
                kind = "trend"
            block = {k: r[k] for k in ("as_of_date", "n", "slope", "tau", "p_value", "q_value", "trend",
                                       "trend_change", "current_7d", "pct_change_7d", "current_28d", "pct_change_28d",
                                       "last_change_date", "last_change_relative")}
            block |= {"source": "analytics.trends", "window_days": TREND_WINDOWS}
            run = runs.get(key)
            if run is not None:
                block["significant_since"] = run["significant_since"]
                block["days_significant"] = int(run["days_significant"])
                block["days_trended"] = int(run["days_trended"])
            out.append(_Facet(key, "trend", kind, block, _q_conf(r["q_value"]), users, change))
        rel_shift, shift = r["last_change_relative"], r["last_change_shift"]
        if (r["last_change_date"] is not None and rel_shift is not None and abs(rel_shift) >= MIN_CHANGE_RELATIVE
                and (funnel or (key[1] == "all" and importance(metric, config) > 1))
                and r["current_7d"] is not None and shift is not None and _held(r, shift)):
            points = json.loads(r["change_points"]) if isinstance(r["change_points"], str) else []
            last = points[-1] if points else {}
            # a funnel step's series is dated the day after entry; the change is named by its entry day
            block = {"source": "analytics.trends",
                     "date": r["last_change_date"] - timedelta(days=1) if funnel else r["last_change_date"],
                     "mean_before": last.get("mean_before"), "mean_after": last.get("mean_after"),
                     "shift": r["last_change_shift"], "relative_shift": rel_shift}
            cause = r.get("root_cause")
            cause = json.loads(cause) if isinstance(cause, str) else (cause or [])
            if cause:
                block["root_cause"] = cause
            out.append(_Facet(key, "change_point", "success" if rel_shift > 0 else "risk", block,
                              CHANGE_POINT_CONFIDENCE, users, rel_shift))
    return out


def _generic(event: str, config: ProductConfig) -> bool:
    """Events that are not a feature (logins, page views, SDK events): their rise is a trend, not an
    opportunity. The config's `product.generic_events` replaces the default list."""
    generic = (config.product or {}).get("generic_events")
    names = set(generic) if generic is not None else set(GENERIC_EVENTS)
    return event in names or event.startswith(("$", "mp_"))


def _held(row: dict, shift: float) -> bool:
    """A lasting change: the last 7 days are still nearer the level after the change point than the level
    before it, and the change point does not just end a short episode (a shift the other way at most
    TRANSIENT_DAYS earlier: the end of a campaign spike is not a fall)."""
    points = json.loads(row["change_points"]) if isinstance(row["change_points"], str) else []
    before = points[-1].get("mean_before") if points else None
    if before is None:
        return False
    if len(points) >= 2:
        gap = (date.fromisoformat(points[-1]["date"][:10]) - date.fromisoformat(points[-2]["date"][:10])).days
        if gap <= TRANSIENT_DAYS and (points[-2].get("shift") or 0) * shift < 0:
            return False
    return (row["current_7d"] - before) * shift >= 0.5 * shift * shift


def _persisted(conn, day: date, config: ProductConfig, sizes: _Sizes) -> list[_Facet]:
    out = []
    for r in _rows(conn, "persisted_rises", day=day, lookback_days=PERSIST_LOOKBACK_DAYS,
                   min_age_days=PERSIST_MIN_AGE_DAYS):
        key = (r["metric"], r["dimension"], r["segment"])
        if not sizes.big(key) or not (parse_funnel_metric(r["metric"]) or importance(r["metric"], config) > 1):
            continue
        funnel = parse_funnel_metric(r["metric"]) is not None     # named by its entry day, as a change point
        block = {"source": ["analytics.anomalies", "analytics.trends"],
                 "anomaly_date": r["metric_date"] - timedelta(days=1) if funnel else r["metric_date"],
                 "observed": r["observed"], "expected": r["expected"], "upper": r["upper"], "score": r["score"],
                 "q_value": r["q_value"], "current_7d": r["current_7d"],
                 "relative_change": (r["current_7d"] - r["expected"]) / abs(r["expected"]) if r["expected"] else None}
        out.append(_Facet(key, "persisted", "success", block, _q_conf(r["q_value"]),
                          sizes.users(key, r["current_7d"]), block["relative_change"] or 0.01))
    return out


# ------------------------------------------------------------------------------------------ merging


def _compact(group: _Group, config: ProductConfig) -> dict:
    lead = group.lead
    keep = {"anomaly": ("metric_date", "observed", "expected", "score", "q_value"),
            "trend": ("trend", "current_7d", "trend_change", "pct_change_28d", "q_value"),
            "change_point": ("date", "mean_before", "mean_after", "relative_shift"),
            "persisted": ("anomaly_date", "current_7d"),
            "comparison": ("segment_value", "rest_value", "q_value"),
            "retention": ("recent_from", "recent_rate", "baseline_rate", "q_value"),
            "new": ("first_seen", "events", "users", "users_a_day"),
            "dropoff": ("users_lost", "drop_rate")}[lead.name]
    return {"metric": group.key[0], "label": metric_label(group.key[0], config), "dimension": group.key[1],
            "segment": group.key[2], "facet": lead.name,
            **{k: lead.block.get(k) for k in keep}}


def _family(metric: str) -> str:
    """event_count:X and event_users:X are one family (the users' series stands for both)."""
    event = metric_event(metric)
    return f"event_users:{event}" if event else metric


def _absorb(target: _Group, g: _Group, out: list[_Group], config: ProductConfig, *, carry: bool = False,
            as_segment: bool = False) -> None:
    """Merge finding `g` into `target` (one story): `g` in brief under target's `related_metrics` (or, with
    `as_segment`, its `segments`), with `g`'s own related metrics when `carry`, and `g` leaves `out`."""
    (target.segments if as_segment else target.related).append(_compact(g, config))
    if carry:
        target.related += g.related
    out.remove(g)


def _collapse(facets: list[_Facet], config: ProductConfig) -> list[_Group]:
    # per series and direction, one finding: its kind is the kind of its leading facet
    buckets: dict[tuple[Key, str], dict[str, _Facet]] = {}
    for f in facets:
        buckets.setdefault((f.key, f.direction), {}).setdefault(f.name, f)
    out: list[_Group] = []
    for (key, _), by_name in buckets.items():
        lead = next(by_name[n] for n in FACET_PRIORITY if n in by_name)
        out.append(_Group(key, lead.kind, by_name))
    # event_count:X into event_users:X
    index = {(g.key, g.kind): g for g in out}
    for g in list(out):
        event = metric_event(g.key[0])
        if event and g.key[0].startswith("event_count:"):
            target = index.get(((f"event_users:{event}", g.key[1], g.key[2]), g.kind))
            if target is not None and target.lead.direction == g.lead.direction:
                _absorb(target, g, out, config)
    # a segment's time-series finding into the total's
    totals = {(_family(g.key[0]), g.kind, g.lead.direction): g for g in out if g.key[1] == "all"}
    for g in list(out):
        if g.key[1] != "all" and set(g.facets) <= TIME_SERIES_FACETS:
            target = totals.get((_family(g.key[0]), g.kind, g.lead.direction))
            if target is not None:
                _absorb(target, g, out, config, as_segment=True)
    # a segment's several trend / anomaly findings in one direction into one
    bundles: dict[tuple, list[_Group]] = {}
    for g in out:
        if (g.key[1] != "all" and set(g.facets) <= {"anomaly", "trend"}
                and (g.kind in ("trend", "anomaly", "opportunity") or (g.kind == "risk" and g.key[0] in USER_COUNTS + RETURNING))):
            # a segment losing users is one finding with its other falling activity (sessions, events)
            kind = "trend" if g.kind in ("trend", "risk") and g.lead.name == "trend" else g.kind
            bundles.setdefault((kind, g.key[1], g.key[2], g.lead.direction), []).append(g)
    for g in out:   # the product's usage moving as a whole (DAU, sessions, WAU, MAU, page views): one trend
        event = metric_event(g.key[0])
        if (g.key[1] == "all" and g.kind == "trend" and set(g.facets) == {"trend"}
                and (g.key[0] in LEAD_PREFERENCE or (event and _generic(event, config)))):
            bundles.setdefault(("trend", "all", "all", g.lead.direction), []).append(g)
    for g in out:   # totals' anomalies that one segment drives, in one direction
        cause = (g.lead.block.get("root_cause") or [None])[0] if g.lead.name == "anomaly" else None
        if g.key[1] == "all" and g.kind == "anomaly" and cause:
            bundles.setdefault(("anomaly", "all", cause["dimension"], cause["segment"], g.lead.direction),
                               []).append(g)
    for (kind, *_), members in bundles.items():
        if len(members) < 2:
            continue
        if kind == "trend":     # users lost lead; then the segment's activity (DAU ...), then importance
            members.sort(key=lambda g: (g.kind != "risk", LEAD_PREFERENCE.index(g.key[0]) if g.key[0] in
                                        LEAD_PREFERENCE else len(LEAD_PREFERENCE), -importance(g.key[0], config),
                                        g.key[0]))
        elif kind == "anomaly":   # the most important metric, then the largest move (the activity's counting
            # double, as in _one_story), then the strongest deviation
            members.sort(key=lambda g: (-importance(g.key[0], config), -_headline_move(g),
                                        -abs(g.lead.block.get("score") or 0.0), g.key[0]))
        else:                   # the segment's activity (DAU ...) first, then the most important metric
            members.sort(key=lambda g: (LEAD_PREFERENCE.index(g.key[0]) if g.key[0] in LEAD_PREFERENCE
                                        else len(LEAD_PREFERENCE), -importance(g.key[0], config), g.key[0]))
        lead = members[0]
        for g in members[1:]:
            _absorb(lead, g, out, config, carry=True)
    out = _one_story(out, config)
    for g in out:   # more errors or support requests, when they lead their story: a risk
        if (g.kind in ("anomaly", "trend", "opportunity") and g.lead.direction == "up"
                and trouble_like(metric_event(g.key[0]) or "")):
            g.kind = "risk"
    return out


def _day_of(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _since_day(g: _Group, episodes: dict) -> date | None:
    """The day the finding's change began, right within a day where the data allow:

    - a change point (PELT places a step in a conversion by entry day a day or two off, as cohorts that
      entered just before a break are half affected, and early in an episode it has few days after the
      step) is replaced by the first day of the series' anomaly episode in the same direction when that
      episode starts within EPISODE_NEAR_DAYS of it;
    - else the anomaly episode's first day, else a lasting jump's day;
    - a comparison without either: the first day of its run of significant days.
    A funnel step's first-day conversion is known, and dated, the day after its entrants entered: the
    finding names the entry day.
    """
    day, of_series = _since_series_day(g, episodes)
    if day is not None and of_series and parse_funnel_metric(g.key[0]):
        return day - timedelta(days=1)   # a funnel's series is dated the day after entry: name the entry day
    return day


def _since_series_day(g: _Group, episodes: dict) -> tuple[date | None, bool]:
    """_since_day, and whether it is a date of the scanned series (a funnel step's: the day after the entry
    day) rather than a day of the comparisons' run."""
    if g.lead.name == "new":
        return _day_of(g.lead.block.get("first_seen")), False
    if g.lead.name == "retention":   # the first cohorts in which the change was seen
        return _day_of(g.lead.block.get("first_seen_from")), False
    key = g.key
    direction = g.lead.direction
    episode = _day_of(episodes.get((*key, direction)))
    anomaly = g.facets.get("anomaly")
    if anomaly is not None:
        start = _day_of(anomaly.block.get("since") or anomaly.block.get("metric_date"))
        episode = min(episode, start) if episode and start else (episode or start)
    cp = _day_of((g.facets.get("change_point").block.get("date")) if "change_point" in g.facets else None)
    if cp is not None:
        if episode is not None and abs((episode - cp).days) <= EPISODE_NEAR_DAYS:
            return episode, True     # the first anomalous day; an early change point is the one misplaced
        return cp, False             # (a funnel's change point is already named by its entry day)
    if "persisted" in g.facets:
        return _day_of(g.facets["persisted"].block.get("anomaly_date")), False
    if episode is not None and g.lead.name in ("anomaly", "comparison"):
        return episode, True
    if "comparison" in g.facets:
        return _day_of(g.facets["comparison"].block.get("significant_since")), False
    return None, False


def _shift(g: _Group, prefer: str = "change_point") -> float | None:
    """The move of a group's series: the level shift of its change point (after - before) or its anomaly's
    gap (observed - expected), `prefer` first (compare a segment's anomaly with a total's anomaly)."""
    order = ("anomaly", "change_point") if prefer == "anomaly" else ("change_point", "anomaly")
    for name in order:
        f = g.facets.get(name)
        if f is None:
            continue
        a, b = (("mean_after", "mean_before") if name == "change_point" else ("observed", "expected"))
        if f.block.get(a) is not None and f.block.get(b) is not None:
            return float(f.block[a]) - float(f.block[b])
    return None


def _share(g: _Group) -> float | None:
    c = g.facets.get("comparison")
    if c is not None and c.block.get("share_of_users") is not None:
        return float(c.block["share_of_users"])
    return None


def _causes(g: _Group) -> list[tuple[str, str]]:
    """The segments that carry at least EXPLAINS_SHARE of a total's anomaly or change point (root cause)."""
    out = []
    for name in ("anomaly", "change_point"):
        f = g.facets.get(name)
        for c in (f.block.get("root_cause") or []) if f is not None else []:
            if (c.get("contribution") or 0) >= EXPLAINS_SHARE and c.get("dimension"):
                out.append((c["dimension"], c["segment"]))
    return out


def _explains(segment: _Group, total: _Group) -> bool:
    """Whether a segment's finding is the cause of the total's move on the same metric: the segment is a
    root cause of it, or its own shift times its share of the users accounts for EXPLAINS_SHARE of the
    total's shift, in the same direction."""
    if (segment.key[1], segment.key[2]) in _causes(total):
        return True
    prefer = "anomaly" if total.lead.name == "anomaly" else "change_point"
    s_shift, t_shift, share = _shift(segment, prefer), _shift(total, prefer), _share(segment)
    if s_shift is None or t_shift is None or share is None or t_shift == 0:
        return False
    explained = share * s_shift / t_shift
    return explained >= EXPLAINS_SHARE


def _total_block(g: _Group, config: ProductConfig) -> dict:
    cp = g.facets.get("change_point")
    out = {"metric": g.key[0], "label": metric_label(g.key[0], config), "dimension": "all", "segment": "all",
           "facet": g.lead.name}
    if cp is not None:
        out |= {"date": cp.block.get("date"), "mean_before": cp.block.get("mean_before"),
                "mean_after": cp.block.get("mean_after"), "relative_shift": cp.block.get("relative_shift")}
    elif "anomaly" in g.facets:
        a = g.facets["anomaly"].block
        out |= {"metric_date": a.get("metric_date"), "observed": a.get("observed"), "expected": a.get("expected")}
    return out


def _headline_move(g: _Group) -> float:
    """How much a total's anomaly moved, as a claim to lead the story it shares with others: its relative
    change, doubled for the product's activity (DAU, new users, sessions, WAU, MAU)."""
    return abs(g.lead.relative or 0.0) * (ACTIVITY_LEAD if g.key[0] in LEAD_PREFERENCE else 1.0)


def _one_story(out: list[_Group], config: ProductConfig) -> list[_Group]:
    """One story, one insight:

    - a total's move that one segment explains (see _explains) goes inside that segment's finding
      (`total`): the segment is the cause, the total the consequence;
    - a total's anomaly or change point on another metric whose root cause is a segment with its own
      finding joins that finding (`related_metrics`) when the metric is one of the segment finding's funnel
      steps or later ones (a broken step empties the steps after it); a finding of a segment that is the
      root cause of a total's anomaly on the step before it (a campaign's sign-ups that rarely complete the
      next step) joins the anomaly instead;
    - an event's users or count moving the same way as the conversion into that event (its funnel step)
      are the same story, told by the step.
    """
    segments = [g for g in out if g.key[1] != "all" and "comparison" in g.facets]
    # the same break seen through two dimensions (Android users, and a country with many of them): the
    # segment that explains more of it (share x shift) tells it; the other joins it as a segment
    segments.sort(key=lambda g: (-(_share(g) or 0) * abs(_shift(g) or 0), g.key))
    for i, s in enumerate(segments):
        if s not in out or "change_point" not in s.facets:
            continue
        s_day = _day_of(s.facets["change_point"].block.get("date"))
        for other in segments[i + 1:]:
            if (other in out and other.key[1] != s.key[1] and _family(other.key[0]) == _family(s.key[0])
                    and other.lead.direction == s.lead.direction and "change_point" in other.facets):
                o_day = _day_of(other.facets["change_point"].block.get("date"))
                if s_day and o_day and abs((s_day - o_day).days) <= SAME_BREAK_DAYS:
                    _absorb(s, other, out, config, as_segment=True)
    segments = [g for g in segments if g in out]
    # totals' anomalies that one segment carries (a campaign lifting sign-ups, page views and sessions):
    # one finding, led by the largest move, where a move of the product's activity (DAU, new users,
    # sessions ...) counts double: a burst of visitors is "Daily active users spiked to 56 (8.7 expected)",
    # not the support chats they opened (10 against 1.5), unless those moved more than twice as much
    anomalies = sorted([g for g in out if g.key[1] == "all" and g.lead.name in ("anomaly", "change_point")
                        and _causes(g)],
                       key=lambda g: (-_headline_move(g), g.key))
    for i, lead in enumerate(anomalies):
        if lead not in out:
            continue
        for other in anomalies[i + 1:]:
            if (other in out and other.lead.direction == lead.lead.direction
                    and set(_causes(other)) & set(_causes(lead))):
                _absorb(lead, other, out, config, carry=True)
    for t in [g for g in out if g.key[1] == "all"]:
        if t not in out:
            continue
        same = [s for s in segments if s in out and _family(s.key[0]) == _family(t.key[0])
                and s.lead.direction == t.lead.direction and _explains(s, t)]
        if same:
            lead = max(same, key=lambda s: (_share(s) or 0, s.key))
            lead.total = _total_block(t, config)
            lead.segments += t.segments
            lead.related += t.related
            out.remove(t)
            continue
        causes = _causes(t)
        for s in segments:
            if s not in out or (s.key[1], s.key[2]) not in causes:
                continue
            downstream = metric_events(s.key[0], config, downstream=True)
            t_events = [metric_event(t.key[0])] if metric_event(t.key[0]) else metric_events(t.key[0], config)
            if t_events and set(t_events) <= set(downstream) and t.lead.direction == s.lead.direction:
                _absorb(s, t, out, config)
                break
            prev = metric_events(s.key[0], config)[:1]
            if t.lead.name == "anomaly" and prev and t_events and t_events[0] == prev[0]:
                _absorb(t, s, out, config, carry=True)
    # a segment's spike of an event, and the same segment converting worse from that event on (a campaign's
    # sign-ups that rarely complete the next step): one story, told by the spike
    spikes = {(g.key[1], g.key[2], metric_event(g.key[0])): g for g in out
              if g.key[1] != "all" and g.lead.name == "anomaly" and g.lead.direction == "up" and metric_event(g.key[0])}
    for c in [g for g in out if g.key[1] != "all" and g.lead.name == "comparison" and parse_funnel_metric(g.key[0])]:
        prev = metric_events(c.key[0], config)[:1]
        spike = spikes.get((c.key[1], c.key[2], prev[0])) if prev else None
        if spike is not None and c in out:
            _absorb(spike, c, out, config)
    # a segment doing less and less, and the same segment retaining worse in its first week: users who come
    # back less (one story, told by the falling activity)
    for g in [g for g in out if g.key[1] != "all" and g.lead.name == "trend" and g.lead.direction == "down"
              and not parse_funnel_metric(g.key[0])]:
        for c in list(out):
            if (c is not g and (c.key[1], c.key[2]) == (g.key[1], g.key[2]) and c.key[0] in PROPORTIONS
                    and c.lead.name == "comparison" and c.lead.direction == "down" and g in out):
                _absorb(g, c, out, config)
    # a segment that carries a total's move: its own time-series findings in that direction join the total's
    movers = [g for g in out if g.key[1] == "all" and _causes(g)]
    for t in movers:
        if t not in out:
            continue
        for g in list(out):
            if (g is not t and g.key[1] != "all" and (g.key[1], g.key[2]) in _causes(t)
                    and set(g.facets) <= TIME_SERIES_FACETS and g.lead.direction == t.lead.direction):
                _absorb(t, g, out, config, as_segment=True)
    # a broken step empties the steps after it: the same segment's findings on later steps' events, in the
    # same direction, are that story
    for s in [g for g in out if g.key[1] != "all" and "comparison" in g.facets and parse_funnel_metric(g.key[0])]:
        if s not in out:
            continue
        later = set(metric_events(s.key[0], config, downstream=True)[1:])
        for g in list(out):
            if (g is not s and (g.key[1], g.key[2]) == (s.key[1], s.key[2]) and g.lead.direction == s.lead.direction
                    and metric_event(g.key[0]) in later and set(g.facets) <= TIME_SERIES_FACETS):
                _absorb(s, g, out, config)
    # one series, two findings: an anomaly against a level that has already moved (a rebound inside a break)
    # and a funnel's standing drop-off belong to the series' main finding
    by_key: dict[Key, list[_Group]] = {}
    for g in out:
        by_key.setdefault(g.key, []).append(g)
    for groups in by_key.values():
        if len(groups) < 2:
            continue
        main = max(groups, key=lambda g: (len(g.facets) > 1 or g.lead.name != "dropoff",
                                          "change_point" in g.facets or "comparison" in g.facets,
                                          abs(g.lead.relative or 0)))
        cp = _shift(main)
        for g in groups:
            if g is main:
                continue
            rebound = (set(g.facets) == {"anomaly"} and cp is not None
                       and abs(_shift(g, "anomaly") or 0) < abs(cp))
            if rebound or set(g.facets) == {"dropoff"}:
                _absorb(main, g, out, config)
    steps = {(g.key[1], g.key[2], g.lead.direction, ev): g for g in out if parse_funnel_metric(g.key[0])
             for ev in metric_events(g.key[0], config)[1:]}
    for g in list(out):
        event = metric_event(g.key[0])
        target = steps.get((g.key[1], g.key[2], g.lead.direction, event)) if event else None
        if target is not None and target is not g:
            _absorb(target, g, out, config, carry=True)
    _return_stories(out, config)
    return out


def _lost(g: _Group) -> float:
    """Users a return-rate change costs: the recent trials times the fall of the rate."""
    b = g.facets["retention"].block
    return float(b["recent_trials"]) * (float(b["baseline_rate"]) - float(b["recent_rate"]))


def _return_stories(out: list[_Group], config: ProductConfig) -> None:
    """A segment's users returning less is one story, told by its return rate:

    - the same change seen through two dimensions (a campaign's users who do not return, seen in its channel
      and in the countries and platforms they came from), first seen within SAME_COHORTS_DAYS: the segment
      where the fall is concentrated (the largest rise of the share lost) tells it, the others are listed;
    - the total's change of the same rate goes inside the segment that accounts for at least half of the
      users it loses (`total`);
    - the segment's two rates (first-week and weekly return) are one finding, led by the one seen first;
    - its falling activity, stickiness or users (trends, anomalies) and its worse first-week retention
      against other segments join it (`related_metrics`).
    """
    # the segment where the fall is concentrated (the largest rise of the share lost) first, then the most users
    changes = sorted([g for g in out if g.lead.name == "retention" and g.lead.direction == "down"],
                     key=lambda g: (-g.lead.block["lost_share_change"], -_lost(g), g.key))
    segs = [g for g in changes if g.key[1] != "all"]
    for i, s in enumerate(segs):
        if s not in out:
            continue
        s_day = _day_of(s.lead.block.get("first_seen_from"))
        for other in segs[i + 1:]:
            o_day = _day_of(other.lead.block.get("first_seen_from"))
            if (other in out and other.key[0] == s.key[0] and other.key[1] != s.key[1] and s_day and o_day
                    and abs((s_day - o_day).days) <= SAME_COHORTS_DAYS):
                _absorb(s, other, out, config, as_segment=True)
    for t in [g for g in changes if g.key[1] == "all" and g in out]:
        causes = [(c["dimension"], c["segment"]) for c in t.lead.block.get("root_cause") or []]
        lead = next((s for s in segs if s in out and s.key[0] == t.key[0] and _lost(s) >= EXPLAINS_SHARE * _lost(t)),
                    None)
        # else the segment behind it with any finding of its own that falls (its activity, stickiness ...)
        lead = lead or next((g for g in sorted(out, key=lambda g: (g.lead.name != "retention", g.key))
                             if g is not t and (g.key[1], g.key[2]) in causes and g.lead.direction == "down"), None)
        if lead is not None:
            cause = next((c for c in t.lead.block.get("root_cause") or []
                          if (c["dimension"], c["segment"]) == (lead.key[1], lead.key[2])), {})
            lead.total = {"metric": t.key[0], "label": metric_label(t.key[0], config), "dimension": "all",
                          "segment": "all", "facet": "retention", "contribution": cause.get("contribution"),
                          **{k: t.lead.block.get(k) for k in ("recent_from", "recent_rate", "baseline_rate")}}
            out.remove(t)
    by_segment: dict[tuple[str, str], list[_Group]] = {}
    for g in changes:
        if g in out:
            by_segment.setdefault((g.key[1], g.key[2]), []).append(g)
    for (dim, seg), groups in by_segment.items():
        groups.sort(key=lambda g: (str(g.lead.block.get("significant_since")), g.key[0] != "first_week_return"))
        lead = groups[0]
        for g in groups[1:]:
            _absorb(lead, g, out, config, carry=True)
        if dim == "all":
            continue
        for g in list(out):
            if (g is not lead and (g.key[1], g.key[2]) == (dim, seg) and g.lead.direction == "down"
                    and not parse_funnel_metric(g.key[0])
                    and (set(g.facets) <= TIME_SERIES_FACETS or g.key[0] in PROPORTIONS)):
                _absorb(lead, g, out, config, carry=True)


def _named_value(conn, day: date, g: _Group, config: ProductConfig) -> dict | None:
    """For a finding on an event with a key property (config event_properties, e.g. Feature Used: feature),
    the property's value that carries the move, when one carries at least EXPLAINS_SHARE of it: its users a
    day now and four weeks earlier, and the day it was first seen (a launch, when it was not seen before the
    history window's start)."""
    event = metric_event(g.key[0])
    prop = config.event_properties.get(event) if event else None
    if not prop or g.key[1] == prop:
        return None
    rows = _rows(conn, "value_breakdown", day=day, event=event, property=prop, history_days=HISTORY_DAYS)
    up = g.lead.direction == "up"
    moves = [(r, float(r["users_7d"]) - float(r["users_7d_before"])) for r in rows]
    moves = [(r, m) for r, m in moves if (m > 0) == up and m != 0]
    total = sum(abs(m) for _, m in moves)
    if not moves or abs(moves[0][1]) < EXPLAINS_SHARE * total:
        return None
    r, _ = moves[0]
    first, data_first = _day_of(r["first_seen"]), _day_of(r["event_first_seen"])
    # a launch: first seen well after the breakdown's data begins (not merely where the history starts)
    launched = first if first is not None and data_first is not None and first > data_first + timedelta(days=7) \
        else None
    return {"property": prop, "value": r["value"], "users_7d": r["users_7d"],
            "users_7d_before": r["users_7d_before"], "launched": launched}

# ------------------------------------------------------------------------------------------ building


def _build(g: _Group, day: date, config: ProductConfig, episodes: dict | None = None) -> Insight:
    metric, dimension, segment = g.key
    lead = g.lead
    ordered = g.ordered
    sources = sorted({s for f in ordered for s in ([f.block["source"]] if isinstance(f.block["source"], str)
                                                   else f.block["source"])})
    ev: dict[str, Any] = {"metric": metric, "dimension": dimension, "segment": segment,
                          "label": metric_label(metric, config), **_funnel_fields(metric, config),
                          "conversion": metric.startswith("funnel:") or metric in PROPORTIONS,
                          "lead": lead.name, "facets": [f.name for f in ordered], "direction": lead.direction,
                          "source": sources,
                          "users_affected": lead.users, "relative_change": lead.relative}
    if lead.name == "comparison":
        ev["effect_size"] = lead.block.get("effect_size")
    for f in ordered:
        ev[f.name] = {k: v for k, v in f.block.items() if k != "source"} | {"source": f.block["source"]}
    if g.segments:
        ev["segments"] = g.segments
    if g.related:
        ev["related_metrics"] = g.related
    if g.total:
        ev["total"] = g.total
    if g.named:
        ev["named"] = g.named
    since = _since_day(g, episodes or {})
    if since is not None:
        ev["since"] = since
    ev = _clean(ev)
    return Insight(
        insight_id=insight_id(g.kind, metric, dimension, segment), as_of_date=day, kind=g.kind,
        title=insight_title(g.kind, ev), summary=insight_summary(ev), evidence=ev,
        confidence=round(max(f.confidence for f in ordered), 6), status="new",
        context=insight_context(metric, segment, config))


def generate_insights(conn, day: date, config: ProductConfig) -> list[Insight]:
    """The day's findings, unranked (status 'new', no recommendation), at most MAX_INSIGHTS of them, in a
    deterministic order (kind, then series)."""
    tables = existing_tables(conn)
    dau = _rows(conn, "segment_users", day=day) if "analytics.daily_metrics" in tables else []
    volumes = (_rows(conn, "funnel_volumes", day=day, from_day=day - timedelta(days=7))
               if "analytics.funnel_steps" in tables else [])
    sizes = _Sizes(dau, volumes, day)
    facets: list[_Facet] = []
    if "analytics.funnel_steps" in tables:
        facets += _dropoffs(conn, day, config)
    if "analytics.segment_comparisons" in tables:
        facets += _comparisons(conn, day, config)
    if "analytics.anomalies" in tables:
        facets += _anomalies(conn, day, sizes)
    if "analytics.return_rates" in tables:
        facets += _return_changes(conn, day)
    if "analytics.daily_metrics" in tables:
        facets += [_Facet(f["key"], "new", f["kind"], f["block"], f["confidence"], f["users"], f["relative"])
                   for f in new_findings(conn, day, config)]
    if "analytics.trends" in tables:
        facets += _trends(conn, day, config, sizes)
        if "analytics.anomalies" in tables:
            facets += _persisted(conn, day, config, sizes)
    groups = _collapse(facets, config)
    if "analytics.daily_metrics" in tables:
        for g in groups:
            g.named = _named_value(conn, day, g, config)
    episodes = ({(r["metric"], r["dimension"], r["segment"], r["direction"]): r["episode_start"]
                 for r in _rows(conn, "episodes", day=day, lookback_days=EPISODE_LOOKBACK_DAYS)}
                if "analytics.anomalies" in tables else {})
    insights = [_build(g, day, config, episodes) for g in groups]
    if len(insights) > MAX_INSIGHTS:
        insights.sort(key=lambda i: (-impact_score(i, config), i.insight_id))
        insights = insights[:MAX_INSIGHTS]
    insights.sort(key=lambda i: (KINDS.index(i.kind), i.evidence["metric"], i.evidence["dimension"],
                                 i.evidence["segment"]))
    return insights


# ------------------------------------------------------------------------------------------ state


def with_status(insights: list[Insight], previous_ids: set[str], previous_open: list[dict],
                day: date | None = None) -> list[Insight]:
    """Mark each insight 'ongoing' if it was open (new or ongoing) the previous time, else 'new'; append a
    'resolved' row for every previously open finding that is gone (its id, kind, title and the evidence of
    the last time). A finding that was resolved and comes back is 'new' again. `day` (default: the
    insights' own as_of_date) dates the resolved rows; write_insights dates every row with its day anyway.
    """
    open_ids = {r["insight_id"] for r in previous_open}
    out = [dataclasses.replace(i, status="ongoing" if i.insight_id in previous_ids and i.insight_id in open_ids
                               else "new") for i in insights]
    current = {i.insight_id for i in insights}
    when = day or (insights[0].as_of_date if insights else None)
    for r in sorted(previous_open, key=lambda r: r["insight_id"]):
        if r["insight_id"] in current:
            continue
        evidence = r.get("evidence") or {}
        evidence = json.loads(evidence) if isinstance(evidence, str) else dict(evidence)
        last = r.get("as_of_date")
        last = last.isoformat() if isinstance(last, date) else str(last)
        evidence["last_reported"] = last
        context = r.get("context") or {}
        context = json.loads(context) if isinstance(context, str) else context
        out.append(Insight(insight_id=r["insight_id"], as_of_date=when or date.fromisoformat(last[:10]),
                           kind=r["kind"], title=r["title"],
                           summary=f"No longer detected; last reported on {fmt_day(last)}.", evidence=evidence,
                           confidence=float(r.get("confidence") or 0.0), generated_by="rules",
                           status="resolved", context=context))
    return out


def _ensure_table(conn) -> None:
    conn.execute(named_statements(SQL)["schema"])


def write_insights(conn, day: date, insights: list[Insight]) -> int:
    """Replace the rows of as_of_date = day with `insights`, in one transaction; returns the rows written."""
    _ensure_table(conn)
    statements = named_statements(SQL)
    rows = [(i.insight_id, day, i.kind, i.title, i.summary, json.dumps(_clean(i.evidence), sort_keys=True),
             float(i.impact_score), float(i.confidence), int(i.priority_rank), i.recommendation, i.generated_by,
             i.status, json.dumps(_clean(i.context), sort_keys=True)) for i in insights]
    with transaction(conn):
        conn.execute(statements["delete_day"], {"day": day.isoformat()})
        if rows:
            conn.executemany(statements["insert_row"], rows)
    return len(rows)


def previous_state(conn, day: date) -> tuple[set[str], list[dict]]:
    """The ids of the latest as_of_date before `day` that has insights, and its open (new or ongoing) rows
    as dicts (evidence and context parsed). Nothing before: (set(), [])."""
    if "insights.insights" not in existing_tables(conn):
        return set(), []
    prev = conn.execute(named_statements(SQL)["previous_day"], {"day": day.isoformat()}).fetchone()[0]
    if prev is None:
        return set(), []
    rows = _rows(conn, "rows_of_day", day=prev)
    for r in rows:
        for k in ("evidence", "context"):
            if isinstance(r[k], str):
                r[k] = json.loads(r[k])
    return {r["insight_id"] for r in rows}, [r for r in rows if r["status"] in OPEN_STATUSES]
