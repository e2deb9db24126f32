"""A small warehouse with the tables the email digests read (daily metrics, funnel steps, anomalies,
insights, the load log) and a product config with report profiles, for the delivery tests. The rows are
written through the project's own DDL; the numbers are made up but consistent with each other."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import duckdb
import yaml

from hitcraft_assets.warehouse import ensure_schema, named_statements

LAST = date(2026, 3, 29)          # a Sunday: the daily, weekly (23..29 March) periods end on it
DAYS = 60
HOSTILE = "<img src=x onerror=alert(1)>"

CONFIG = {
    "product": {"name": "Shop", "goals": ["Sell more"],
                "owners": {"checkout": "checkout@shop.example", "growth": "growth@shop.example"}},
    "timezone": "UTC",
    "dimensions": [{"name": "platform", "property": "$os"}],
    "funnels": [{"name": "Checkout", "steps": ["Cart Viewed", "Order Placed"], "window_days": 3}],
    "reports": [
        {"name": "daily", "cadence": "daily", "title": "Shop daily digest", "top": 4,
         "kpis": ["dau", "new_users", "funnel:Checkout"],
         "recipients": [
             {"email": "ana@shop.example", "name": "Ana", "role": "product", "areas": ["checkout", "growth"],
              "timezone": "Europe/Berlin"},
             {"email": "ben@shop.example", "name": "Ben", "role": "engineering", "areas": ["checkout"],
              "timezone": "America/New_York"}]},
        {"name": "weekly", "cadence": "weekly", "title": "Shop weekly", "kinds": ["opportunity", "trend"],
         "kpis": ["new_users"], "recipients": [{"email": "cleo@shop.example", "name": "Cléo", "role": "marketing"}]},
    ],
}


def write_config(directory: Path, **changes) -> Path:
    doc = json.loads(json.dumps(CONFIG))
    doc.update(changes)
    path = directory / "shop.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


def insight(iid: str, kind: str, title: str, area: str | None, rank: int, *, metric: str = "dau",
            dimension: str = "all", segment: str = "all", status: str = "ongoing", first_day: date | None = None,
            evidence: dict | None = None) -> dict:
    return {"insight_id": iid, "kind": kind, "title": title, "area": area, "rank": rank, "metric": metric,
            "dimension": dimension, "segment": segment, "status": status, "first_day": first_day or LAST,
            "evidence": evidence or {}}


INSIGHTS = [
    insight("i-checkout-drop", "risk", "Checkout conversion fell from 62% to 41% since 2026-03-24", "checkout", 1,
            metric="funnel:Checkout:step2", first_day=LAST - timedelta(days=5),
            evidence={"conversion": True, "lead": "change_point", "facets": ["change_point"],
                      "change_point": {"date": "2026-03-24", "mean_before": 0.62, "mean_after": 0.41}}),
    insight("i-hostile", "anomaly", f"Sign ups of {HOSTILE} spiked to 90 (expected 12)", "growth", 2,
            metric="event_count:Sign Up", dimension="channel", segment=f'"{HOSTILE}"',
            evidence={"lead": "anomaly", "facets": ["anomaly"],
                      "anomaly": {"metric_date": LAST.isoformat(), "observed": 90, "expected": 12, "lower": 5,
                                  "upper": 20, "q_value": 1e-9}}),
    insight("i-dau-trend", "trend", "Daily active users up 18% in 28 days", None, 3,
            evidence={"lead": "trend", "facets": ["trend"],
                      "trend": {"current_7d": 118, "pct_change_28d": 0.18, "trend": "increasing", "q_value": 0.001}}),
    insight("i-growth-opp", "opportunity", "Referral sign-ups up 40% in 28 days", "growth", 4,
            metric="new_users", first_day=LAST - timedelta(days=20),
            evidence={"lead": "trend", "facets": ["trend"],
                      "trend": {"current_7d": 14, "pct_change_28d": 0.4, "trend": "increasing", "q_value": 0.004}}),
]


def build_warehouse(path: Path, insights: list[dict] = INSIGHTS) -> None:
    """The tables of LAST - DAYS + 1 .. LAST."""
    conn = duckdb.connect(str(path))
    ensure_schema(conn)
    for sql_file in ("analysis/daily_metrics.sql", "analysis/funnels.sql", "detection/anomalies.sql",
                     "insights/insights.sql"):
        conn.execute(named_statements(sql_file)["schema"])
    first = LAST - timedelta(days=DAYS - 1)
    metrics, steps, log = [], [], []
    for i in range(DAYS):
        day = first + timedelta(days=i)
        dau = 100 + i
        metrics += [(day, "dau", "all", "all", float(dau)), (day, "new_users", "all", "all", float(10 + i % 7)),
                    (day, "event_count:Sign Up", "channel", f'"{HOSTILE}"', float(12 if day < LAST else 90))]
        entrants, converted = 50, 31 if day < LAST - timedelta(days=5) else 20
        steps += [("Checkout", day, "all", "all", 1, "Cart Viewed", entrants, 1.0, 1.0, None, None),
                  ("Checkout", day, "all", "all", 2, "Order Placed", converted, converted / entrants,
                   converted / entrants, 600.0, 700.0)]
        log.append(day)
    conn.executemany("insert into analytics.daily_metrics values (?, ?, ?, ?, ?)", metrics)
    columns = [r[0] for r in conn.execute("describe analytics.funnel_steps").fetchall()]
    conn.executemany(f"insert into analytics.funnel_steps ({', '.join(columns[:11])}) values "
                     f"({', '.join('?' * 11)})", steps)
    conn.executemany("insert into raw.load_log (event_date, loaded_at, source, source_found, lines, rows_loaded, "
                     "rejected, duplicates_removed, distinct_users, bytes_read, gate) "
                     "values (?, now(), 'test', true, 1, 1, 0, 0, 1, 1, 'pass')", [(d,) for d in log])
    rows = []
    for item in insights:
        evidence = {"metric": item["metric"], "dimension": item["dimension"], "segment": item["segment"],
                    "label": item["title"].split(" ")[0], **item["evidence"]}
        context = {"area": item["area"], "owner": CONFIG["product"]["owners"].get(item["area"] or "")}
        day = item["first_day"]
        while day <= LAST:
            rows.append((item["insight_id"], day, item["kind"], item["title"], f"Summary of {item['title']}",
                         json.dumps(evidence), 10.0 - item["rank"], 0.9, item["rank"],
                         f"Do something about {item['title']}", "rules",
                         "new" if day == item["first_day"] else item["status"], json.dumps(context)))
            day += timedelta(days=1)
    conn.executemany("insert into insights.insights values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.close()
