"""Reads of the serving snapshot, shared by the REST API and the dashboard: plain functions that take a
`Snapshot` (hitcraft_assets/app/snapshot.py) and return dicts and lists of plain values.

Every value reaches DuckDB as a parameter (`?`); the only text put into SQL is chosen from fixed fragments in
this module (column lists, sort orders, filter clauses). A table the snapshot does not have (the pipeline
leaves out a table it never built) reads as empty. JSON columns come back parsed; NaN and infinite doubles
come back as None (JSON has no NaN).

Lists that page (insights, anomalies, email sends) page by keyset: `Keyset` names the sort columns, the last
row's values continue after it, and `digest(...)` fingerprints the rows at or before a position so that a
cursor made on one snapshot can tell whether the rows it already returned are the same in the next one.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from hitcraft_assets.app.snapshot import Snapshot

SENT_STATUSES = ("sent", "outbox")
FUNNEL_METRIC = re.compile(r"^funnel:(?P<funnel>.+):step(?P<step>[0-9]+)$")


# -- helpers ---------------------------------------------------------------------------------------

def _num(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json(value: Any) -> Any:
    if value is None:
        return None
    return json.loads(value) if isinstance(value, str) else value


def _rows(snap: Snapshot, sql: str, params: Sequence[Any] = ()) -> list[dict]:
    rows = snap.query(sql, list(params))
    for r in rows:
        for n, v in r.items():
            if isinstance(v, float) and not math.isfinite(v):
                r[n] = None
    return rows


def _scalar(snap: Snapshot, sql: str, params: Sequence[Any] = ()) -> Any:
    rows = snap.query(sql, list(params))
    return next(iter(rows[0].values())) if rows else None


@dataclass
class Where:
    """A conjunction of fixed SQL fragments with their parameters."""

    clauses: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, clause: str, *params: Any) -> Where:
        self.clauses.append(clause)
        self.params.extend(params)
        return self

    def sql(self) -> str:
        return " and ".join(f"({c})" for c in self.clauses) or "true"


def days_between(a: date, b: date) -> int:
    """Days in [a, b], both ends counted."""
    return (b - a).days + 1



@dataclass(frozen=True)
class Keyset:
    """A total order of a list: (SQL column, descending?) pairs whose last ones make every row unique."""

    columns: tuple[tuple[str, bool], ...]

    def order_by(self) -> str:
        return ", ".join(f"{c} {'desc' if d else 'asc'}" for c, d in self.columns)

    def after(self, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """Rows strictly after the row whose sort values are `values`: (c1 > v1) or (c1 = v1 and c2 > v2) ..."""
        ors, params = [], []
        for i, (col, desc) in enumerate(self.columns):
            ands = [f"{c} = ?" for c, _ in self.columns[:i]] + [f"{col} {'<' if desc else '>'} ?"]
            ors.append("(" + " and ".join(ands) + ")")
            params.extend([*values[:i], values[i]])
        return "(" + " or ".join(ors) + ")", params


def page(snap: Snapshot, table: str, select: str, where: Where, keyset: Keyset, key_names: Sequence[str],
         after: Sequence[Any] | None, limit: int) -> tuple[list[dict], bool]:
    """Up to `limit` rows in keyset order after `after` (None: from the start), and whether more follow."""
    if not snap.has(table):
        return [], False
    w = Where(list(where.clauses), list(where.params))
    if after is not None:
        clause, params = keyset.after(after)
        w.add(clause, *params)
    rows = _rows(snap, f"select {select} from {table} where {w.sql()} order by {keyset.order_by()} limit ?",
                 [*w.params, limit + 1])
    return rows[:limit], len(rows) > limit


def digest(snap: Snapshot, table: str, identity: str, where: Where, keyset: Keyset,
           upto: Sequence[Any], from_sql: str | None = None) -> str:
    """A fingerprint of the set of rows at or before `upto`: their count and an order-free hash (xor of MD5s)
    of their `identity`. Equal fingerprints on two snapshots: the same rows lie behind that position."""
    if not snap.has(table):
        return "0:0"
    clause, params = keyset.after(upto)
    w = Where(list(where.clauses), list(where.params)).add(f"not {clause}", *params)
    n, h = snap.query(f"select count(*) as n, coalesce(bit_xor(md5_number({identity})), 0) as h "
                      f"from {from_sql or table} where {w.sql()}", w.params)[0].values()
    return f"{n}:{h}"


# -- insights --------------------------------------------------------------------------------------

INSIGHT_SORTS = {
    "rank": Keyset((("priority_rank", False), ("as_of_date", True), ("insight_id", False))),
    "-impact": Keyset((("impact_score", True), ("as_of_date", True), ("insight_id", False))),
    "as_of": Keyset((("as_of_date", False), ("priority_rank", False), ("insight_id", False))),
}
INSIGHT_SORT_KEYS = {"rank": ("priority_rank", "as_of_date", "insight_id"),
                     "-impact": ("impact_score", "as_of_date", "insight_id"),
                     "as_of": ("as_of_date", "priority_rank", "insight_id")}
INSIGHT_IDENTITY = "insight_id || '|' || as_of_date::varchar"
_INSIGHT_COLUMNS = ("insight_id, as_of_date, kind, status, title, summary, impact_score, confidence, priority_rank, "
                    "recommendation, generated_by, evidence->>'metric' as metric, evidence->>'dimension' as dimension, "
                    "evidence->>'segment' as segment")


@dataclass(frozen=True)
class InsightFilters:
    """The filters of an insight list, with the as-of range already resolved to dates."""

    from_date: date | None
    to_date: date | None
    kinds: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    metric: str | None = None
    dimension: str | None = None
    segment: str | None = None
    max_rank: int | None = None
    q: str | None = None

    def where(self) -> Where:
        w = Where()
        if self.from_date is not None:
            w.add("as_of_date >= ?", self.from_date)
        if self.to_date is not None:
            w.add("as_of_date <= ?", self.to_date)
        if self.kinds:
            w.add("list_contains(?::varchar[], kind)", list(self.kinds))
        if self.statuses:
            w.add("list_contains(?::varchar[], status)", list(self.statuses))
        if self.metric is not None:
            w.add("evidence->>'metric' = ?", self.metric)
        if self.dimension is not None:
            w.add("evidence->>'dimension' = ?", self.dimension)
        if self.segment is not None:
            w.add("evidence->>'segment' = ?", self.segment)
        if self.max_rank is not None:
            w.add("priority_rank <= ?", self.max_rank)
        if self.q:
            w.add("strpos(lower(title), lower(?)) > 0 or strpos(lower(summary), lower(?)) > 0", self.q, self.q)
        return w


def latest_as_of(snap: Snapshot) -> date | None:
    """The newest as-of day with insights (the default of an insight list)."""
    if not snap.has("insights"):
        return None
    return snap.memo("latest_as_of", lambda: _scalar(snap, "select max(as_of_date) from insights"))


def insights_page(snap: Snapshot, filters: InsightFilters, sort: str, after: Sequence[Any] | None,
                  limit: int) -> tuple[list[dict], bool]:
    return page(snap, "insights", _INSIGHT_COLUMNS, filters.where(), INSIGHT_SORTS[sort], INSIGHT_SORT_KEYS[sort],
                after, limit)


def insights_digest(snap: Snapshot, filters: InsightFilters, sort: str, upto: Sequence[Any]) -> str:
    return digest(snap, "insights", INSIGHT_IDENTITY, filters.where(), INSIGHT_SORTS[sort], upto)


def insight(snap: Snapshot, insight_id: str) -> dict | None:
    """The latest row of an insight, with evidence and context parsed and its history (one entry per as-of
    day, oldest first); None when the snapshot has no such insight."""
    if not snap.has("insights"):
        return None
    rows = _rows(snap, f"select {_INSIGHT_COLUMNS}, evidence, context from insights where insight_id = ? "
                       f"order by as_of_date desc limit 1", [insight_id])
    if not rows:
        return None
    row = rows[0]
    row["evidence"] = _json(row["evidence"]) or {}
    row["context"] = _json(row["context"]) or {}
    row["history"] = _rows(snap, "select as_of_date, status, priority_rank, impact_score from insights "
                                 "where insight_id = ? order by as_of_date", [insight_id])
    return row


# -- metrics ---------------------------------------------------------------------------------------

def _metric_index(snap: Snapshot) -> dict[str, dict]:
    """name -> {name, source, first_date, last_date, days}, once per snapshot."""
    def compute() -> dict[str, dict]:
        metrics: list[dict] = []
        if snap.has("daily_metrics"):
            metrics += _rows(snap, "select metric as name, 'daily_metrics' as source, min(metric_date) as first_date, "
                                   "max(metric_date) as last_date, count(distinct metric_date) as days "
                                   "from daily_metrics group by metric")
        if snap.has("funnel_steps"):
            metrics += _rows(snap, "select 'funnel:' || funnel || ':step' || step as name, 'funnel_steps' as source, "
                                   "min(cohort_date) as first_date, max(cohort_date) as last_date, "
                                   "count(distinct cohort_date) as days from funnel_steps where step >= 2 "
                                   "group by funnel, step")
        return {m["name"]: m for m in sorted(metrics, key=lambda m: m["name"])}
    return snap.memo("metric_index", compute)


def metric_catalog(snap: Snapshot) -> dict:
    """The metrics there are (daily metrics, and funnel step conversions `funnel:<name>:step<k>`) with the days
    they cover, and the dimensions with their segments."""
    def dimensions() -> list[dict]:
        segments: dict[str, set[str]] = {d: set() for d in snap.config.get("dimensions") or []}
        for table in ("daily_metrics", "funnel_steps"):
            if snap.has(table):
                for r in _rows(snap, f"select distinct dimension, segment from {table} where dimension <> 'all'"):
                    segments.setdefault(r["dimension"], set()).add(r["segment"])
        return [{"name": d, "segments": sorted(s)} for d, s in sorted(segments.items())]
    return {"metrics": list(_metric_index(snap).values()), "dimensions": snap.memo("dimensions", dimensions)}


def metric_source(snap: Snapshot, metric: str) -> str | None:
    """'daily_metrics' or 'funnel_steps' when the snapshot has the metric, else None."""
    found = _metric_index(snap).get(metric)
    return found["source"] if found else None


def metric_last_date(snap: Snapshot, metric: str, source: str | None = None) -> date | None:
    found = _metric_index(snap).get(metric)
    return found["last_date"] if found else None


def metric_series(snap: Snapshot, metric: str, source: str, from_date: date, to_date: date,
                  dimension: str = "all", segment: str | None = None) -> list[dict]:
    """One series per segment (of `dimension`, or just `segment`): its daily values in [from_date, to_date], each
    with the anomaly flagged that day (band, score, direction, status) or None, the series' change points in the
    range, and its latest trend."""
    w = Where().add("v.dimension = ?", dimension)
    if segment is not None:
        w.add("v.segment = ?", segment)
    if source == "daily_metrics":
        values_sql = ("select dimension, segment, metric_date as date, value from daily_metrics "
                      "where metric = ? and metric_date between ? and ?")
        params: list[Any] = [metric, from_date, to_date]
    else:
        m = FUNNEL_METRIC.match(metric)
        values_sql = ("select dimension, segment, cohort_date as date, conversion_from_prev as value from funnel_steps "
                      "where funnel = ? and step = ? and cohort_date between ? and ?")
        params = [m["funnel"], int(m["step"]), from_date, to_date]
    flag_columns = ("a.expected, a.lower, a.upper, a.score, a.direction, a.q_value, "
                    "coalesce(a.status, 'new') as status, a.episode_start, a.metric_date is not null as flagged")
    if snap.has("anomalies"):
        joined = ("left join anomalies a on a.metric = ? and a.metric_date = v.date and a.dimension = v.dimension "
                  "and a.segment = v.segment")
        params.append(metric)
    else:   # the same columns, never matching
        joined = ("left join (select null::date as metric_date, null::double as expected, null::double as lower, "
                  "null::double as upper, null::double as score, null::varchar as direction, null::double as q_value, "
                  "null::varchar as status, null::date as episode_start) a on false")
    values = _rows(snap, f"select v.*, {flag_columns} from ({values_sql}) v {joined} where {w.sql()} "
                         f"order by v.dimension, v.segment, v.date", [*params, *w.params])
    w = Where().add("dimension = ?", dimension)
    if segment is not None:
        w.add("segment = ?", segment)
    trends: dict[tuple, dict] = {}
    if snap.has("change_points"):
        for t in _rows(snap, f"select dimension, segment, as_of_date, trend, q_value, pct_change_7d, pct_change_28d, "
                             f"last_change_date, change_points from change_points where metric = ? and {w.sql()}",
                       [metric, *w.params]):
            trends[(t.pop("dimension"), t.pop("segment"))] = t
    series: dict[tuple, dict] = {}
    flag_names = ("expected", "lower", "upper", "score", "direction", "q_value", "status", "episode_start")
    for v in values:
        key = (v["dimension"], v["segment"])
        s = series.setdefault(key, {"dimension": key[0], "segment": key[1], "points": []})
        flag = {n: v[n] for n in flag_names} if v["flagged"] else None
        s["points"].append({"date": v["date"], "value": v["value"], "anomaly": flag})
    for key, s in series.items():
        t = trends.get(key)
        points = _json(t.pop("change_points")) if t else None
        s["change_points"] = [
            {"date": date.fromisoformat(p["date"]), "mean_before": _num(p.get("mean_before")),
             "mean_after": _num(p.get("mean_after")), "shift": _num(p.get("shift")),
             "relative_shift": _num(p.get("relative_shift"))}
            for p in points or [] if p.get("date") and from_date.isoformat() <= p["date"] <= to_date.isoformat()]
        s["trend"] = t
    return [series[k] for k in sorted(series)]


# -- funnels ---------------------------------------------------------------------------------------

def funnels(snap: Snapshot) -> list[dict]:
    """The configured funnels (from the snapshot's config) with their steps and the entry days they have;
    a funnel that is in the data but not in the config is listed with the steps the data has."""
    return snap.memo("funnels", lambda: _funnels(snap))


def _funnels(snap: Snapshot) -> list[dict]:
    spans = {}
    steps_in_data: dict[str, list[str]] = {}
    if snap.has("funnel_steps"):
        for r in _rows(snap, "select funnel, min(cohort_date) as first_cohort_date, "
                             "max(cohort_date) as last_cohort_date from funnel_steps group by funnel"):
            spans[r.pop("funnel")] = r
        for r in _rows(snap, "select funnel, step, arg_max(step_event, cohort_date) as event from funnel_steps "
                             "where dimension = 'all' group by funnel, step order by funnel, step"):
            steps_in_data.setdefault(r["funnel"], []).append(r["event"])
    out, seen = [], set()
    for f in snap.config.get("funnels") or []:
        seen.add(f["name"])
        out.append({"name": f["name"], "steps": list(f["steps"]), "window_days": f.get("window_days"),
                    **spans.get(f["name"], {"first_cohort_date": None, "last_cohort_date": None})})
    for name in sorted(set(spans) - seen):
        out.append({"name": name, "steps": steps_in_data.get(name, []), "window_days": None, **spans[name]})
    return out


def funnel_report(snap: Snapshot, name: str, from_date: date, to_date: date, dimension: str = "all",
                  by: str = "range") -> list[dict]:
    """The funnel's steps per (entry day if by == 'day', dimension, segment): users, conversion from the previous
    step and from the start, and the median seconds from the previous step. Over a range (by == 'range') users
    are summed over the entry days, conversions are the ratios of those sums, and the median time is the
    users-weighted median of the daily medians (the per-user times are not in the snapshot)."""
    if not snap.has("funnel_steps"):
        return []
    params = [name, dimension, from_date, to_date]
    base = ("from funnel_steps where funnel = ? and dimension = ? and cohort_date between ? and ?")
    # how far the entry days' windows have run (1: closed); snapshots of older warehouses lack the column
    completeness = "completeness" if snap.has_column("funnel_steps", "completeness") else "null::double"
    if by == "day":
        rows = _rows(snap, f"select cohort_date, dimension, segment, step, step_event, users, conversion_from_prev, "
                           f"conversion_from_start, median_seconds_from_prev, {completeness} as completeness {base} "
                           f"order by cohort_date, dimension, segment, step", params)
    else:
        rows = _rows(snap, f"""
            with d as (select * {base}),
            sums as (
                select dimension, segment, step, arg_max(step_event, cohort_date) as step_event, sum(users) as users,
                       min({completeness}) as completeness
                from d group by all
            ),
            medians as (
                select dimension, segment, step, min(m) filter (where 2 * cw >= tw) as median_seconds_from_prev
                from (select dimension, segment, step, median_seconds_from_prev as m,
                             sum(users) over (partition by dimension, segment, step order by median_seconds_from_prev
                                              rows unbounded preceding) as cw,
                             sum(users) over (partition by dimension, segment, step) as tw
                      from d where median_seconds_from_prev is not null and users > 0)
                group by all
            )
            select null::date as cohort_date, s.dimension, s.segment, s.step, s.step_event, s.users::bigint as users,
                   s.completeness,
                   case when s.step = 1 then 1.0 else s.users / nullif(p.users, 0) end as conversion_from_prev,
                   s.users / nullif(f.users, 0) as conversion_from_start, m.median_seconds_from_prev
            from sums s
            left join sums p on p.dimension = s.dimension and p.segment = s.segment and p.step = s.step - 1
            left join sums f on f.dimension = s.dimension and f.segment = s.segment and f.step = 1
            left join medians m on m.dimension = s.dimension and m.segment = s.segment and m.step = s.step
            order by s.dimension, s.segment, s.step""", params)
    groups: dict[tuple, dict] = {}
    for r in rows:
        key = (r["cohort_date"], r["dimension"], r["segment"])
        g = groups.setdefault(key, {"cohort_date": key[0], "dimension": key[1], "segment": key[2],
                                    "entrants": 0, "completeness": r["completeness"], "steps": []})
        if r["step"] == 1:
            g["entrants"] = int(r["users"])
        g["steps"].append({k: r[k] for k in ("step", "step_event", "users", "conversion_from_prev",
                                             "conversion_from_start", "median_seconds_from_prev")})
    return list(groups.values())


def funnel_last_date(snap: Snapshot, name: str) -> date | None:
    return next((f["last_cohort_date"] for f in funnels(snap) if f["name"] == name), None)


# -- retention -------------------------------------------------------------------------------------

def retention(snap: Snapshot, measure: str = "on_or_after", from_week: date | None = None,
              to_week: date | None = None) -> list[dict]:
    """Cohort retention by birth week and rolling week (`measure`: 'on_or_after' or 'on')."""
    if not snap.has("retention"):
        return []
    w = Where().add("measure = ?", measure)
    if from_week is not None:
        w.add("cohort_week >= ?", from_week)
    if to_week is not None:
        w.add("cohort_week <= ?", to_week)
    return _rows(snap, f"select cohort_week, weeks_since, cohort_size, retained_users, retention_rate, complete "
                       f"from retention where {w.sql()} order by cohort_week, weeks_since", w.params)


# -- anomalies -------------------------------------------------------------------------------------

ANOMALY_KEYSET = Keyset((("metric_date", True), ("metric", False), ("dimension", False), ("segment", False)))
ANOMALY_KEY = ("metric_date", "metric", "dimension", "segment")
ANOMALY_IDENTITY = "metric_date::varchar || '|' || metric || '|' || dimension || '|' || segment"
_ANOMALY_COLUMNS = ("metric_date, metric, dimension, segment, observed, expected, lower, upper, score, direction, "
                    "p_value, q_value, coalesce(status, 'new') as status, episode_start, root_cause, "
                    "coalesce(window_days, 1) as window_days")


@dataclass(frozen=True)
class AnomalyFilters:
    from_date: date | None = None
    to_date: date | None = None
    metric: str | None = None
    dimension: str | None = None
    segment: str | None = None
    statuses: tuple[str, ...] = ()
    direction: str | None = None

    def where(self) -> Where:
        w = Where()
        if self.from_date is not None:
            w.add("metric_date >= ?", self.from_date)
        if self.to_date is not None:
            w.add("metric_date <= ?", self.to_date)
        for column in ("metric", "dimension", "segment", "direction"):
            if getattr(self, column) is not None:
                w.add(f"{column} = ?", getattr(self, column))
        if self.statuses:
            w.add("list_contains(?::varchar[], coalesce(status, 'new'))", list(self.statuses))
        return w


def latest_anomaly_day(snap: Snapshot) -> date | None:
    if not snap.has("anomalies"):
        return None
    return snap.memo("latest_anomaly_day", lambda: _scalar(snap, "select max(metric_date) from anomalies"))


def anomalies_page(snap: Snapshot, filters: AnomalyFilters, after: Sequence[Any] | None,
                   limit: int) -> tuple[list[dict], bool]:
    rows, more = page(snap, "anomalies", _ANOMALY_COLUMNS, filters.where(), ANOMALY_KEYSET, ANOMALY_KEY, after, limit)
    for r in rows:
        r["root_cause"] = _json(r["root_cause"])
    return rows, more


def anomalies_digest(snap: Snapshot, filters: AnomalyFilters, upto: Sequence[Any]) -> str:
    return digest(snap, "anomalies", ANOMALY_IDENTITY, filters.where(), ANOMALY_KEYSET, upto)


# -- email reports ---------------------------------------------------------------------------------

REPORT_KEYSET = Keyset((("s.period_start", True), ("s.profile", False), ("s.recipient", False)))
REPORT_KEY = ("period_start", "profile", "recipient")
REPORT_IDENTITY = "s.profile || '|' || s.period_start::varchar || '|' || s.recipient"


@dataclass(frozen=True)
class ReportFilters:
    from_date: date | None = None
    to_date: date | None = None
    profile: str | None = None
    cadence: str | None = None
    statuses: tuple[str, ...] = ()
    recipient: str | None = None

    def where(self) -> Where:
        w = Where()
        if self.from_date is not None:
            w.add("s.period_start >= ?", self.from_date)
        if self.to_date is not None:
            w.add("s.period_start <= ?", self.to_date)
        for column in ("profile", "cadence"):
            if getattr(self, column) is not None:
                w.add(f"s.{column} = ?", getattr(self, column))
        if self.recipient is not None:
            w.add("s.recipient = lower(?)", self.recipient)
        if self.statuses:
            w.add("list_contains(?::varchar[], s.status)", list(self.statuses))
        return w


def _report_from(snap: Snapshot, body: bool) -> tuple[str, str]:
    select = ("s.profile, s.cadence, s.period_start, s.period_end, s.recipient, s.message_id, s.status, s.attempts, "
              "s.reason, s.created_at, s.updated_at, "
              f"case when s.status in ('{SENT_STATUSES[0]}', '{SENT_STATUSES[1]}') then s.updated_at end as sent_at")
    table = "email_sends s"
    if body:
        if snap.has("email_reports"):
            select += ", r.subject, r.html, r.text"
            table += (" left join email_reports r on r.profile = s.profile and r.period_start = s.period_start "
                      "and r.recipient = s.recipient")
        else:
            select += ", null as subject, null as html, null as text"
    return select, table


def reports_page(snap: Snapshot, filters: ReportFilters, after: Sequence[Any] | None, limit: int,
                 include_body: bool = False) -> tuple[list[dict], bool]:
    """The send ledger (one row per profile, period and recipient), newest period first; with include_body,
    each message's subject, HTML and text (None when the message was never rendered)."""
    if not snap.has("email_sends"):
        return [], False
    select, table = _report_from(snap, include_body)
    w = filters.where()
    if after is not None:
        clause, params = REPORT_KEYSET.after(after)
        w.add(clause, *params)
    rows = _rows(snap, f"select {select} from {table} where {w.sql()} order by {REPORT_KEYSET.order_by()} limit ?",
                 [*w.params, limit + 1])
    for r in rows:
        if include_body:
            r["body"] = ({"subject": r.pop("subject"), "html": r.pop("html"), "text": r.pop("text")}
                         if r.get("subject") is not None else _drop_body(r))
        else:
            r["body"] = None
    return rows[:limit], len(rows) > limit


def _drop_body(r: dict) -> None:
    for k in ("subject", "html", "text"):
        r.pop(k, None)
    return None


def reports_digest(snap: Snapshot, filters: ReportFilters, upto: Sequence[Any]) -> str:
    return digest(snap, "email_sends", REPORT_IDENTITY, filters.where(), REPORT_KEYSET, upto,
                  from_sql="email_sends s")


# -- dashboard: overview and insights ---------------------------------------------------------------------

def metric_totals(snap: Snapshot, metrics: Sequence[str], from_date: date, to_date: date) -> list[dict]:
    """The whole product's daily values (dimension 'all') of `metrics` in [from_date, to_date]: metric, date, value."""
    if not snap.has("daily_metrics") or not metrics:
        return []
    return _rows(snap, "select metric, metric_date as date, value from daily_metrics where dimension = 'all' "
                       "and segment = 'all' and list_contains(?::varchar[], metric) and metric_date between ? and ? "
                       "order by metric, metric_date", [list(metrics), from_date, to_date])


def funnel_totals(snap: Snapshot, from_date: date, to_date: date) -> list[dict]:
    """Per funnel and entry day (whole product): entrants (step 1), converted (users at the funnel's last step)
    and the conversion from the start at the last step, as the email's funnel KPIs read them."""
    if not snap.has("funnel_steps"):
        return []
    return _rows(snap, """
        with last as (select funnel, max(step) as step from funnel_steps group by funnel)
        select f.funnel, f.cohort_date as date,
               sum(f.users) filter (where f.step = 1) as entrants,
               sum(f.users) filter (where f.step = l.step) as converted,
               max(f.conversion_from_start) filter (where f.step = l.step) as conversion
        from funnel_steps f join last l using (funnel)
        where f.dimension = 'all' and f.segment = 'all' and f.cohort_date between ? and ?
        group by f.funnel, f.cohort_date order by f.funnel, f.cohort_date""", [from_date, to_date])


_INSIGHT_CONTEXT_COLUMNS = "context->>'owner' as owner, context->>'area' as area"


def top_insights(snap: Snapshot, as_of: date, limit: int,
                 statuses: Sequence[str] = ("new", "ongoing")) -> list[dict]:
    """The ranked insights of one as-of day with these statuses (default: the open ones), best first, each with
    its evidence parsed, owner and area."""
    if not snap.has("insights"):
        return []
    rows = _rows(snap, f"select {_INSIGHT_COLUMNS}, {_INSIGHT_CONTEXT_COLUMNS}, evidence from insights "
                       f"where as_of_date = ? and list_contains(?::varchar[], status) "
                       f"order by priority_rank, insight_id limit ?", [as_of, list(statuses), limit])
    for r in rows:
        r["evidence"] = _json(r["evidence"]) or {}
    return rows


FEED_KEYSET = Keyset((("as_of_date", True), ("priority_rank", False), ("insight_id", False)))
FEED_KEY = ("as_of_date", "priority_rank", "insight_id")


def insight_feed(snap: Snapshot, filters: InsightFilters, after: Sequence[Any] | None,
                 limit: int) -> tuple[list[dict], bool]:
    """The dashboard's feed: newest as-of day first, ranked within the day, keyset-paged after
    (as_of_date, priority_rank, insight_id); each row with its owner and area."""
    return page(snap, "insights", f"{_INSIGHT_COLUMNS}, {_INSIGHT_CONTEXT_COLUMNS}", filters.where(), FEED_KEYSET,
                FEED_KEY, after, limit)


def insights_count(snap: Snapshot, filters: InsightFilters) -> int:
    """How many insight rows (one per insight and as-of day) match `filters`."""
    if not snap.has("insights"):
        return 0
    w = filters.where()
    return int(_scalar(snap, f"select count(*) from insights where {w.sql()}", w.params) or 0)


def insight_facets(snap: Snapshot) -> dict:
    """What the insight filters can choose from, once per snapshot: the first and last as-of days, the metrics
    (with the label the evidence gives them) and the (dimension, segment) pairs the insights are about."""
    def compute() -> dict:
        if not snap.has("insights"):
            return {"first_day": None, "last_day": None, "metrics": [], "segments": []}
        span = _rows(snap, "select min(as_of_date) as first_day, max(as_of_date) as last_day from insights")[0]
        metrics = _rows(snap, "select evidence->>'metric' as metric, arg_max(evidence->>'label', as_of_date) as label "
                              "from insights where evidence->>'metric' is not null group by 1 order by 2, 1")
        segments = _rows(snap, "select distinct evidence->>'dimension' as dimension, evidence->>'segment' as segment "
                               "from insights where evidence->>'dimension' is not null "
                               "and evidence->>'dimension' <> 'all' order by 1, 2")
        return {**span, "metrics": metrics, "segments": [(s["dimension"], s["segment"]) for s in segments]}
    return snap.memo("dashboard_insight_facets", compute)


def anomaly_days(snap: Snapshot, metric: str, dimension: str, segment: str, episode_start: date) -> list[date]:
    """The days flagged in one anomaly episode of a series (the episode's first alert and its continuations)."""
    if not snap.has("anomalies"):
        return []
    return [r["metric_date"] for r in _rows(
        snap, "select metric_date from anomalies where metric = ? and dimension = ? and segment = ? "
              "and episode_start = ? order by metric_date", [metric, dimension, segment, episode_start])]


# -- dashboard: explorer, funnels, retention, quality, reports --------------------------------------------

def load_days(snap: Snapshot) -> list[dict]:
    """raw.load_log as the Data quality page shows it: one row per loaded UTC day, oldest first (lines read, rows
    loaded, rejected lines, duplicates removed, placeholder ids, whether the file was found, the read fault, the
    quality gate's verdict and its reason). Empty when the snapshot has no load_log."""
    if not snap.has("load_log"):
        return []
    return _rows(snap, "select event_date, source, source_found, lines, rows_loaded, rejected, duplicates_removed, "
                       "placeholder_ids, fault, coalesce(gate, 'pass') as gate, gate_reason, loaded_at "
                       "from load_log order by event_date")


def rejected_lines(snap: Snapshot) -> list[dict]:
    """Quarantined lines per (UTC day, reason), oldest day first; empty without the table."""
    if not snap.has("rejected_reasons"):
        return []
    return _rows(snap, "select event_date, reason, lines::bigint as lines from rejected_reasons "
                       "order by event_date, reason")


def report_counts(snap: Snapshot) -> list[dict]:
    """Messages per (report profile, send status) in the send ledger, for the Reports page's chart."""
    if not snap.has("email_sends"):
        return []
    return _rows(snap, "select profile, status, count(*)::bigint as messages from email_sends group by all "
                       "order by profile, status")


def check_results(snap: Snapshot) -> list[dict] | None:
    """The latest evaluation of each data-quality check (the snapshot's check_results, read by the pipeline from
    Dagster's instance), failed ones first; None when the snapshot has no such table (published outside
    Dagster, or by an older pipeline)."""
    if not snap.has("check_results"):
        return None
    rows = _rows(snap, "select asset, check_name, passed, severity, blocking, description, partition, days_from, "
                       "days_to, run_id, evaluated_at, metadata from check_results "
                       "order by passed, severity = 'ERROR' desc, check_name")
    for r in rows:
        r["metadata"] = _json(r["metadata"])
    return rows


# the ledger of the Reports page: a message is named by a hash of its key (profile, period, recipient), so that
# its URL never carries an address
REPORT_MESSAGE_KEY = f"substr(md5({REPORT_IDENTITY}), 1, 20)"
_LEDGER_COLUMNS = (f"{REPORT_MESSAGE_KEY} as key, s.profile, s.cadence, s.period_start, s.period_end, s.recipient, "
                   "s.status, s.attempts, s.reason, s.created_at, s.updated_at, "
                   f"case when s.status in ('{SENT_STATUSES[0]}', '{SENT_STATUSES[1]}') then s.updated_at end "
                   "as sent_at")


def report_ledger(snap: Snapshot, limit: int, offset: int = 0, with_subject: bool = False) -> list[dict]:
    """A page of the send ledger in the API's order (newest period first, then profile, then recipient), with
    each message's key; with_subject adds its subject (part of the body: admin keys only, as in the API), and
    for every row whether a rendered message is stored (`has_message`)."""
    if not snap.has("email_sends"):
        return []
    select, table = _LEDGER_COLUMNS, "email_sends s"
    if snap.has("email_reports"):
        select += ", r.subject is not null as has_message" + (", r.subject" if with_subject else "")
        table += (" left join email_reports r on r.profile = s.profile and r.period_start = s.period_start "
                  "and r.recipient = s.recipient")
    else:
        select += ", false as has_message" + (", null as subject" if with_subject else "")
    return _rows(snap, f"select {select} from {table} order by {REPORT_KEYSET.order_by()} limit ? offset ?",
                 [limit, offset])


def report_ledger_size(snap: Snapshot) -> int:
    return _scalar(snap, "select count(*) from email_sends") if snap.has("email_sends") else 0


def report_message(snap: Snapshot, key: str, include_body: bool = False) -> dict | None:
    """One row of the ledger by its key (report_ledger's `key`), None when there is none; with include_body its
    stored message: `body` {subject, html, text, insight_ids} or None when it was never rendered."""
    if not snap.has("email_sends"):
        return None
    rows = _rows(snap, f"select {_LEDGER_COLUMNS} from email_sends s where {REPORT_MESSAGE_KEY} = ?", [key])
    if not rows:
        return None
    row = rows[0]
    row["body"] = None
    if include_body and snap.has("email_reports"):
        bodies = _rows(snap, "select subject, html, text, insight_ids from email_reports where profile = ? and "
                             "period_start = ? and recipient = ?",
                       [row["profile"], row["period_start"], row["recipient"]])
        if bodies:
            ids = [str(i) for i in _json(bodies[0]["insight_ids"]) or []]
            titles = {r["insight_id"]: r["title"] for r in _rows(
                snap, "select insight_id, arg_max(title, as_of_date) as title from insights "
                      "where list_contains(?::varchar[], insight_id) group by insight_id", [ids])} \
                if ids and snap.has("insights") else {}
            row["body"] = {**bodies[0], "insight_ids": ids,
                           "insights": [{"insight_id": i, "title": titles.get(i)} for i in ids]}
    return row
