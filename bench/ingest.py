"""Ingest benchmark: one demo day of N events through raw_events' own code path (a real Dagster
materialization into a real DuckDB file), against two baselines measured in the same run on the same file:

  (a) the parse floor: DuckDB `count(*)` over `read_ndjson` (reading and parsing, nothing stored);
  (b) a json.loads + pandas loader (parse every line in Python, build a DataFrame, drop duplicates on
      Mixpanel's key, insert into DuckDB), the way a simple extractor would do it.

  (c) a straightforward DuckDB script: `read_ndjson` of the event and its properties, Mixpanel's dedup
      (`qualify row_number()` on its key, the latest `mp_processing_time_ms` first), stored as a table of a
      DuckDB file; no validation, no quarantine, no load log (issue 15's yardstick);
  (d) the same script writing one zstd Parquet file instead (the layout of a lake partition).

The asset is also materialized once for a day without a file, in the same process before the timed day:
its seconds are Dagster's own cost of a partition, and the day's seconds beyond them are the load's.

Each measurement runs in its own process, so its peak RSS is its own. Usage:

    python bench/ingest.py                 # 1M events
    python bench/ingest.py --events 5000000
    python bench/ingest.py --skip-baseline # without (b), which needs pandas and a lot of memory
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

BENCH_DAY = date(2026, 6, 1)
HERE = Path(__file__).resolve().parent

ASSET_PATH = """
import os, sys, time
from datetime import date
import dagster as dg
from hitcraft_assets.ingestion.assets import raw_events
from hitcraft_assets.ingestion.mixpanel import MixpanelResource
from hitcraft_assets.ingestion.sources import ExportSourceResource
from hitcraft_assets.warehouse import WarehouseResource
export_dir, db, day = sys.argv[1], sys.argv[2], sys.argv[3]
resources = {"duckdb": WarehouseResource(database=db),
             "export_source": ExportSourceResource(source="files", export_dir=export_dir,
                                                   staging_dir=export_dir + "/staging", mixpanel=MixpanelResource())}
with dg.instance_for_test() as instance:
    t0 = time.perf_counter()
    empty = dg.materialize([raw_events], partition_key="2026-01-01", resources=resources, instance=instance)
    empty_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = dg.materialize([raw_events], partition_key=day, resources=resources, instance=instance,
                            raise_on_error=False)
    elapsed = time.perf_counter() - t0
mat = result.asset_materializations_for_node("raw_events")[0]
print({"seconds": elapsed, "empty_day_seconds": empty_s, "rows": mat.metadata["rows"].value,
       "lines": mat.metadata["lines"].value, "rejected": mat.metadata["rejected"].value,
       "duplicates": mat.metadata["duplicates_removed"].value, "success": result.success and empty.success})
"""

PLAIN_SELECT = """
select event, properties->>'distinct_id' as distinct_id,
       to_timestamp(try_cast(properties->>'time' as double) / 1000) as time, properties->>'$."$insert_id"' as insert_id,
       properties->>'$."$device_id"' as device_id, properties->>'$."$user_id"' as user_id, properties
from read_ndjson(?, columns={event: 'VARCHAR', properties: 'JSON'}, ignore_errors=true)
where event is not null and properties->>'distinct_id' is not null and try_cast(properties->>'time' as double) is not null
qualify row_number() over (partition by event, distinct_id, time, insert_id
                           order by try_cast(properties->>'mp_processing_time_ms' as bigint) desc nulls last) = 1
"""

PLAIN_DUCKDB = """
import sys, time, duckdb
path, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
select = sys.argv[4]
t0 = time.perf_counter()
conn = duckdb.connect(out if mode == "table" else ":memory:")
conn.execute("set memory_limit = '512MB'")
if mode == "table":
    conn.execute("create table events as " + select, [path])
    (n,) = conn.execute("select count(*) from events").fetchone()
else:
    conn.execute(f"copy ({select}) to '{out}' (format parquet, compression zstd)", [path])
    (n,) = conn.execute("select count(*) from read_parquet(?)", [out]).fetchone()
conn.close()
print({"seconds": time.perf_counter() - t0, "rows": n})
"""

PARSE_FLOOR = """
import sys, time, duckdb
t0 = time.perf_counter()
(n,) = duckdb.connect().execute("select count(*) from read_ndjson(?, ignore_errors=true)", [sys.argv[1]]).fetchall()[0]
print({"seconds": time.perf_counter() - t0, "rows": n})
"""

PANDAS_BASELINE = """
import json, sys, time
import duckdb, pandas as pd
path, db = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
records, bad = [], 0
with open(path) as f:
    for line in f:
        try:
            obj = json.loads(line)
            p = obj["properties"]
            records.append((obj["event"], p["distinct_id"], p["time"], p.get("$insert_id"), p.get("$device_id"),
                            p.get("$user_id"), p.get("mp_processing_time_ms"), json.dumps(p)))
        except (ValueError, KeyError, TypeError):
            bad += 1
df = pd.DataFrame(records, columns=["event", "distinct_id", "time", "insert_id", "device_id", "user_id",
                                    "proc", "properties"])
df = df.sort_values("proc").drop_duplicates(["event", "distinct_id", "time", "insert_id"], keep="last")
df["time"] = pd.to_datetime(df["time"], unit="ms", utc=True)
conn = duckdb.connect(db)
conn.execute("create table events as select * exclude (proc) from df")
conn.close()
print({"seconds": time.perf_counter() - t0, "rows": len(df), "rejected": bad})
"""


def measure_rss(code: str, *args: str) -> dict:
    """Run `code` in a fresh Python process; its printed dict plus its own peak RSS (os.wait4: KiB on Linux)."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    stdout_chunks: list[str] = []
    err_chunks: list[str] = []

    def drain(stream, sink):
        sink.append(stream.read())

    threads = [threading.Thread(target=drain, args=(proc.stdout, stdout_chunks)),
               threading.Thread(target=drain, args=(proc.stderr, err_chunks))]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    for t in threads:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{''.join(err_chunks)[-3000:]}")
    result = eval("".join(stdout_chunks).strip().splitlines()[-1])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=HERE / ".work")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()

    from hitcraft_assets.demo.simulator import generate_demo

    export_dir = args.workdir / f"export-{args.events}-{args.seed}"
    day_file = export_dir / f"{BENCH_DAY.isoformat()}.jsonl"
    if not day_file.exists():
        t0 = time.perf_counter()
        generate_demo(export_dir, days=1, end_date=BENCH_DAY, events_per_day=args.events, seed=args.seed)
        print(f"generated {day_file} in {time.perf_counter() - t0:.1f} s")
    size_mb = day_file.stat().st_size / 1e6
    lines = sum(1 for _ in open(day_file, "rb"))
    print(f"input: {lines:,} lines, {size_mb:,.0f} MB, {os.cpu_count()} cores")

    for stale in [*args.workdir.glob("bench-*.duckdb*"), *args.workdir.glob("bench-*.parquet")]:
        stale.unlink()
    env_start = {"HITCRAFT_START_DATE": "2026-01-01"}
    os.environ.update(env_start)
    ours = measure_rss(ASSET_PATH, str(export_dir), str(args.workdir / "bench-asset.duckdb"), BENCH_DAY.isoformat())
    floor = measure_rss(PARSE_FLOOR, str(day_file))
    t0 = time.perf_counter()
    table = measure_rss(PLAIN_DUCKDB, str(day_file), str(args.workdir / "bench-plain.duckdb"), "table", PLAIN_SELECT)
    table["process_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    parquet = measure_rss(PLAIN_DUCKDB, str(day_file), str(args.workdir / "bench-plain.parquet"), "parquet",
                          PLAIN_SELECT)
    parquet["process_seconds"] = time.perf_counter() - t0
    beyond = dict(ours, seconds=ours["seconds"] - ours["empty_day_seconds"])
    rows = [("raw_events asset (materialize)", ours), ("  the same beyond an empty day", beyond),
            ("parse floor: count(*) read_ndjson", floor),
            ("plain DuckDB script -> table", table), ("plain DuckDB script -> Parquet", parquet)]
    baseline = None
    if not args.skip_baseline:
        baseline = measure_rss(PANDAS_BASELINE, str(day_file), str(args.workdir / "bench-pandas.duckdb"))
        rows.append(("json.loads + pandas baseline", baseline))

    print(f"\n{'path':<36} {'seconds':>8} {'events/s':>12} {'peak RSS MiB':>13}")
    for name, r in rows:
        print(f"{name:<36} {r['seconds']:>8.2f} {lines / r['seconds']:>12,.0f} {r['peak_rss_mib']:>13,.0f}")
    print(f"\nasset: {ours['rows']:,} rows stored, {ours['rejected']} rejected, {ours['duplicates']:,} duplicates "
          f"removed (run success: {ours['success']})")
    print(f"empty-day materialization: {ours['empty_day_seconds']:.2f} s; plain scripts with their process start: "
          f"table {table['process_seconds']:.2f} s ({table['rows']:,} rows), Parquet "
          f"{parquet['process_seconds']:.2f} s ({parquet['rows']:,} rows, "
          f"{(args.workdir / 'bench-plain.parquet').stat().st_size / 1e6:,.0f} MB)")
    print(f"ratio asset / parse floor:      {ours['seconds'] / floor['seconds']:.2f}x slower")
    print(f"ratio asset beyond empty / plain table script: {beyond['seconds'] / table['seconds']:.2f}; "
          f"/ plain Parquet script: {beyond['seconds'] / parquet['seconds']:.2f}")
    if baseline:
        print(f"ratio pandas baseline / asset:  {baseline['seconds'] / ours['seconds']:.2f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
