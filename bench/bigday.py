"""One big day through the whole daily job: seconds per step and peak RSS.

A demo day of N events (default 5M, cached in bench/.work/ as bench/ingest.py caches its day), loaded and
analysed by every daily asset as one run of a day does it (raw_downloads, raw_events, identity, sessions,
metrics, funnels, retention, segments, anomalies, trends, insights), in one process with a real Dagster
instance and a fresh DuckDB file (capped at 512 MB of memory per connection, as always). Printed: the run's
seconds, the process's peak RSS during it (sampled every 50 ms), each step's seconds (from Dagster's own
step events), and the same run on an empty day measured first in the same process, so that Dagster's own
cost of the run shows apart from the data's.

Usage: PYTHONPATH=. python bench/bigday.py [--events 5000000] [--seed 7]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("HITCRAFT_START_DATE", "2026-01-01")
import dagster as dg  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from history import PeakRSS, _resources, _run, step_seconds  # noqa: E402

from hitcraft_assets.demo.simulator import generate_demo  # noqa: E402

BENCH_DAY = date(2026, 6, 1)
EMPTY_DAY = date(2026, 5, 1)
HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    export = HERE / ".work" / f"export-{args.events}-{args.seed}"
    day_file = export / f"{BENCH_DAY.isoformat()}.jsonl"
    if not day_file.exists():
        t0 = time.perf_counter()
        generate_demo(export, days=1, end_date=BENCH_DAY, events_per_day=args.events, seed=args.seed)
        print(f"generated {day_file} in {time.perf_counter() - t0:.1f} s", flush=True)
    lines = sum(1 for _ in open(day_file, "rb"))
    print(f"input: {lines:,} lines, {day_file.stat().st_size / 1e6:,.0f} MB, {os.cpu_count()} cores", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="hitcraft-bigday-"))
    (folder / "export").symlink_to(export)
    resources = _resources(folder, "big.duckdb")
    out = {}
    with dg.instance_for_test() as instance:
        for label, day in (("empty day", EMPTY_DAY), ("big day", BENCH_DAY)):
            with PeakRSS() as rss:
                t0 = time.perf_counter()
                result = _run(instance, resources, day, day)
                seconds = time.perf_counter() - t0
            out[label] = (seconds, rss.peak, step_seconds(instance, result))
            print(f"{label} ({day}): {seconds:.1f} s, peak RSS {rss.peak / 2**20:,.0f} MiB", flush=True)
    (e_s, _, e_steps), (b_s, b_peak, b_steps) = out["empty day"], out["big day"]
    print(f"\n| run | seconds | peak RSS (MiB) |\n|---|---:|---:|")
    print(f"| empty day | {e_s:.1f} | {out['empty day'][1] / 2**20:,.0f} |")
    print(f"| {lines:,}-line day | {b_s:.1f} | {b_peak / 2**20:,.0f} |")
    print(f"\nbeyond the empty day: {b_s - e_s:.1f} s ({lines / (b_s - e_s):,.0f} events/s through the whole job)\n")
    print("| step | empty day (s) | big day (s) |\n|---|---:|---:|")
    for key in sorted(b_steps, key=lambda k: -b_steps[k]):
        print(f"| {key} | {e_steps.get(key, 0.0):.1f} | {b_steps[key]:.1f} |")
    print(f"\nwarehouse: {(folder / 'big.duckdb').stat().st_size / 1e6:,.0f} MB in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
