"""A small shop end to end: does the engine flag its incidents, and rank them where a person reads them?

Issue 14's report, rebuilt on simulated data (the real clickstream is held out): the small shop of
``hitcraft_assets.demo.shop`` (5-15 daily users, 100-300 events a day, six months from its launch) with
its three incidents: a viral article, payment failures, a mobile checkout loop.

The script writes the export (Mixpanel's export format, one ``YYYY-MM-DD.jsonl`` a day) and a shop config
into ``--out``, runs ``hitcraft run`` on it (a real Dagster run into a fresh DuckDB file), then reads each
day's ranked insights and prints, per incident: flagged within 3 days of its start (and after how many
days), and on how many of its first 3 days a finding about it is in the top 10. It also prints the top 5
of each incident's first days, as a person would read them.

    python bench/small_shop.py --out /tmp/shop [--days 180] [--seed 3] [--skip-run]

Run by hand (a 180-day run takes about 5 minutes); the test suite runs a shorter shop end to end
(``test_small_shop.py``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb

from hitcraft_assets.demo.shop import START, Shop, write_shop


@dataclass
class Incident:
    name: str
    first: int      # day index of its start
    days: int
    keywords: tuple[str, ...]       # a finding is about it when its metric, segment or title holds one
    segment: str | None = None      # ... or only within this segment (any metric of the funnel/cart)


def run_engine(out: Path, export: Path, days: int) -> float:
    env = {**os.environ, "HITCRAFT_SOURCE": "files", "HITCRAFT_EXPORT_DIR": str(export),
           "HITCRAFT_CONFIG": str(out / "shop.yaml"), "HITCRAFT_DUCKDB_PATH": str(out / "warehouse.duckdb"),
           "HITCRAFT_START_DATE": START.isoformat(), "HITCRAFT_DATA_DIR": str(out / "data"),
           "DAGSTER_HOME": str(out / "dagster_home")}
    (out / "dagster_home").mkdir(exist_ok=True)
    t0 = time.monotonic()
    end = START + timedelta(days=days - 1)
    subprocess.run([sys.executable, "-m", "hitcraft_assets.cli", "run", "--from", START.isoformat(),
                    "--to", end.isoformat()], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def about(row: dict, inc: Incident) -> bool:
    text = " ".join(str(row.get(k) or "") for k in ("metric", "segment", "title")).lower()
    if any(k.lower() in text for k in inc.keywords):
        return True
    return bool(inc.segment) and (row.get("segment") or "").lower() == inc.segment.lower() and (
        "funnel:checkout" in (row.get("metric") or "").lower()
        or any(e in (row.get("metric") or "") for e in ("Add to Cart", "Checkout Started", "Shipping Details",
                                                        "Payment Submitted", "Order Completed")))


def report(db: Path, incidents: list[Incident]) -> None:
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute(
            "select as_of_date, priority_rank, kind, status, title, evidence->>'metric', "
            "evidence->>'segment' from insights.insights where status <> 'resolved' "
            "order by as_of_date, priority_rank").fetchall()
    by_day: dict[date, list[dict]] = {}
    for d, rank, kind, status, title, metric, segment in rows:
        by_day.setdefault(d, []).append({"rank": rank, "kind": kind, "status": status, "title": title,
                                         "metric": metric, "segment": segment})
    print("| incident | start | flagged within 3 days | first 3 days in the top 10 | best rank |")
    print("|---|---|---|---|---|")
    for inc in incidents:
        start = START + timedelta(days=inc.first)
        first_3 = [start + timedelta(days=k) for k in range(3)]
        flagged = [k for k, d in enumerate(first_3) if any(about(r, inc) for r in by_day.get(d, []))]
        top = [d for d in first_3 if any(about(r, inc) and r["rank"] <= 10 for r in by_day.get(d, []))]
        ranks = [r["rank"] for d in first_3 for r in by_day.get(d, []) if about(r, inc)]
        found = f"yes ({flagged[0]})" if flagged else "no"
        print(f"| {inc.name} | {start} | {found} | {len(top)}/3 | {min(ranks) if ranks else '-'} |")
    print()
    for inc in incidents:
        for k in range(3):
            d = START + timedelta(days=inc.first + k)
            print(f"{inc.name}, day {k} ({d}):")
            for r in by_day.get(d, [])[:6]:
                mark = "*" if about(r, inc) else " "
                print(f"  {mark}{r['rank']:>3}. [{r['kind']}, {r['status']}] {r['title']}")
            hits = [r for r in by_day.get(d, []) if about(r, inc) and r["rank"] > 6]
            for r in hits[:3]:
                print(f"  *{r['rank']:>3}. [{r['kind']}, {r['status']}] {r['title']}")
        print()
    quiet = [d for d in by_day if all(not (inc.first - 3 <= (d - START).days < inc.first + inc.days + 7)
                                      for inc in incidents) and (d - START).days >= 60]
    risks = sum(1 for d in quiet for r in by_day[d] if r["kind"] in ("risk", "anomaly") and r["status"] == "new")
    print(f"quiet days (day 60 on, away from incidents): {len(quiet)}; new risks and anomalies on them: {risks} "
          f"({risks / max(len(quiet), 1) * 30:.1f} per 30 days)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--viral-day", type=int, default=100)
    parser.add_argument("--payment-day", type=int, default=125)
    parser.add_argument("--loop-day", type=int, default=150)
    parser.add_argument("--skip-run", action="store_true", help="only report on the warehouse already in --out")
    args = parser.parse_args()
    incidents = [
        Incident("viral article", args.viral_day, 3, ("article", "new users", "daily active", "page view")),
        Incident("payment failures", args.payment_day, 4, ("payment", "support_chat", "Order Completed")),
        Incident("mobile checkout loop", args.loop_day, 10, ("checkout_bug",), segment="mobile"),
    ]
    if not args.skip_run:
        args.out.mkdir(parents=True, exist_ok=True)
        shop = Shop(args.days, args.seed, args.payment_day, args.loop_day, args.viral_day)
        export = write_shop(args.out, shop)
        events = sum(1 for p in export.glob("*.jsonl") for _ in p.open())
        print(f"{args.days} days, {len(shop.users)} users, {events} events ({events / args.days:.0f} a day)")
        print(f"hitcraft run: {run_engine(args.out, export, args.days):.0f} s")
    report(args.out / "warehouse.duckdb", incidents)
    return 0


if __name__ == "__main__":
    sys.exit(main())
