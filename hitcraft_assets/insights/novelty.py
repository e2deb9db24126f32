"""New things: an event name, a value of a configured dimension or a value of an event's key property
(config `event_properties`, e.g. `Feature Used: feature`) that appears after a long absence is a finding
of its own, from its first day: "payment_error first seen on 3 Nov, 15 events from 9 users".

When it is news (`new_findings`), all as of the day:
- first seen in the last NEW_DAYS days, after at least ABSENCE_DAYS days of data without it in the
  HISTORY_DAYS window (a product's own first weeks are all new: nothing is reported then);
- the evidence, not a volume floor: while absent, its daily rate was at most 3 / days_before (the rule of
  three, a 95% upper bound for a count never seen); the Poisson probability of seeing at least its total
  since at that rate must be at most NEW_ALPHA. Two to 18 events a day after 28 quiet days passes; one
  stray event does not. A new event also needs two users (one device firing it is a tester);
- a new value of a configured dimension (a new platform, country, channel) also carries at least
  NEW_VALUE_SHARE of the active users since it appeared: a country's first three visitors are not news.

Kind: a name or value that reads as a failure (error, fail, exception, crash, bug, timeout, declined,
invalid, denied) is a risk; a new value of a key property (a feature launch) is an opportunity; any other
new event or value is an anomaly. The evidence says where it happens (the segment of each dimension that
holds most of its events, with that segment's share of users).
"""

from __future__ import annotations

import math
import re
from datetime import date, timedelta
from typing import Any

from hitcraft_assets.analysis.days import filed_days, local_day, sql_params
from hitcraft_assets.config import ProductConfig
from hitcraft_assets.lazy import lazy
from hitcraft_assets.warehouse import named_statements, run_sql

sps = lazy("scipy.stats")

SQL_FILE = "insights/new_things.sql"
HISTORY_DAYS = 60        # how far back "absent" is checked
ABSENCE_DAYS = 14        # days of data without it before it is new
NEW_DAYS = 7             # a first sighting this recent is news
NEW_ALPHA = 0.001        # Poisson tail of its total at the absent rate's upper bound
NEW_VALUE_SHARE = 0.01   # a new value of a dimension: at least this share of the active users
MIN_EVENT_USERS = 2      # a new event fired by one user only is a tester
FAILURE = re.compile(r"error|fail|exception|crash|bug|timeout|timed out|declin|invalid|denied|refus", re.I)
SUPPORT = re.compile(r"support|complain|ticket|refund|chargeback|dispute|contact.?us", re.I)


def failure_like(name: str) -> bool:
    return bool(FAILURE.search(name or ""))


def trouble_like(name: str) -> bool:
    """A name that reads as a failure or as users asking for help (``payment_error``, ``support_chat``,
    ``Refund Requested``): more of it is a risk, not a sign of interest."""
    return failure_like(name) or bool(SUPPORT.search(name or ""))


def surprise(total: float, days_since: int, days_before: int) -> float:
    """P(X >= total) for X ~ Poisson(days_since * 3 / days_before): how unlikely the count is if the thing
    had been there all along at the highest rate its absence allows."""
    rate = 3.0 / max(days_before, 1)
    mu = rate * max(days_since, 1)
    return float(sps.poisson.sf(math.ceil(total) - 1, mu))


def _rows(conn, name: str, params: dict) -> list[dict]:
    cur = run_sql(conn, named_statements(SQL_FILE)[name], params)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _span(first: date, day: date, config: ProductConfig) -> dict:
    start = sql_params(local_day(first, config.timezone))["start_ts"]
    end = sql_params(local_day(day, config.timezone))["end_ts"]
    scan_from, scan_to = filed_days(start, end, config, timedelta(minutes=max(config.time_tolerance_minutes, 0)))
    return {"from_ts": start, "to_ts": end, "scan_from": scan_from.isoformat(), "scan_to": scan_to.isoformat()}


def new_findings(conn, day: date, config: ProductConfig) -> list[dict[str, Any]]:
    """The day's new things: dicts with key (metric, dimension, segment), kind, block (the evidence),
    confidence, users and relative (1: from nothing)."""
    kp = config.event_properties or {}
    params = {"day": day.isoformat(), "history_days": HISTORY_DAYS, "new_days": NEW_DAYS,
              "kp_events": list(kp) or [""], "kp_properties": list(kp.values()) or [""]}
    out = []
    for r in _rows(conn, "first_seen", params):
        if r["days_before"] < ABSENCE_DAYS:
            continue
        metric, dimension, segment = r["metric"], r["dimension"], r["segment"]
        p = surprise(r["total"], r["days_since"], r["days_before"])
        if p > NEW_ALPHA:
            continue
        block: dict[str, Any] = {"source": "analytics.daily_metrics", "first_seen": r["first_seen"],
                                 "days_since": int(r["days_since"]), "days_before": int(r["days_before"]),
                                 "days_seen": int(r["days_seen"]), "p_value": p, "q_value": p}
        if metric.startswith("event_count:"):
            event = metric.removeprefix("event_count:")
            counts = _rows(conn, "event_users", {"event": event, **_span(r["first_seen"], day, config)})[0]
            if (counts["users"] or 0) < MIN_EVENT_USERS:
                continue
            where = _rows(conn, "event_segments", {"event": event, "from_day": r["first_seen"].isoformat(),
                                                   "day": day.isoformat()})
            block |= {"new": "event", "events": int(counts["events"]), "users": int(counts["users"]),
                      "where": [w for w in where if w["share"] is not None and w["share"] >= 0.5
                                and (w["share_of_users"] or 0) < w["share"] - 0.1][:2]}
            kind = "risk" if failure_like(event) else "anomaly"
            users = float(counts["users"])
        elif metric == "dau":
            total_users = conn.execute(
                "select sum(value) from analytics.daily_metrics where metric = 'dau' and dimension = 'all' "
                "and metric_date between ? and ?", [r["first_seen"], day]).fetchall()[0][0] or 0
            share = r["total"] / total_users if total_users else 0.0
            if share < NEW_VALUE_SHARE:
                continue
            block |= {"new": "value", "users_a_day": r["total"] / max(r["days_seen"], 1), "share_of_users": share}
            kind = "risk" if failure_like(segment) else "anomaly"
            users = block["users_a_day"]
        else:   # a value of an event's key property: a feature's launch
            block |= {"new": "feature", "users_a_day": r["total"] / max(r["days_seen"], 1)}
            kind = "risk" if failure_like(segment) else "opportunity"
            users = block["users_a_day"]
        out.append({"key": (metric, dimension, segment), "kind": kind, "block": block,
                    "confidence": min(max(1.0 - math.sqrt(p), 0.0), 1.0), "users": users, "relative": 1.0})
    return out
