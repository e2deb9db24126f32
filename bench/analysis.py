"""Analysis benchmark: seconds per analysis asset (a real Dagster materialization of one partition) on

  (1) a 90-day demo history: day 5 materialized when five days are loaded, day 90 when ninety are; the
      ratio day 90 / day 5 shows whether a day's cost grows with history (it should not, for the daily
      assets; identity_map and retention are rebuilt over the whole history by design);
  (2) a 1M-event day (the ingest benchmark's day).

Usage: python bench/analysis.py [--skip-1m]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

os.environ.setdefault("HITCRAFT_START_DATE", "2026-01-01")
import warnings  # noqa: E402

warnings.filterwarnings("ignore")

import dagster as dg  # noqa: E402

from hitcraft_assets.analysis.assets import analysis_assets  # noqa: E402
from hitcraft_assets.ingestion.loader import load_day  # noqa: E402
from hitcraft_assets.warehouse import WarehouseResource  # noqa: E402

HERE = Path(__file__).resolve().parent
HISTORY_END = date(2026, 6, 30)
BIG_DAY = date(2026, 6, 1)


def load_export(warehouse: WarehouseResource, export: Path, days: list[date]) -> None:
    with warehouse.get_connection() as conn:
        for day in days:
            path = export / f"{day.isoformat()}.jsonl"
            load_day(conn, day, path if path.exists() else None, source="bench")


def step_seconds(warehouse: WarehouseResource, day: date) -> dict[str, float]:
    """Materialize every analysis asset for `day`; seconds per step from Dagster's own step events."""
    with dg.instance_for_test() as instance:
        result = dg.materialize(analysis_assets, partition_key=day.isoformat(), resources={"duckdb": warehouse},
                                instance=instance, selection=[a.key for a in analysis_assets])
        assert result.success
        return {e.step_key: e.event_specific_data.duration_ms / 1000 for e in result.all_events
                if e.event_type_value == "STEP_SUCCESS"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=HERE / ".work")
    parser.add_argument("--skip-1m", action="store_true")
    args = parser.parse_args()
    from hitcraft_assets.demo.simulator import generate_demo

    export = args.workdir / "history-90"
    if not (export / "ground_truth.json").exists():
        generate_demo(export, days=90, end_date=HISTORY_END, seed=11)
    days = [HISTORY_END - timedelta(days=89 - i) for i in range(90)]
    db = args.workdir / "bench-analysis.duckdb"
    for stale in args.workdir.glob("bench-analysis.duckdb*"):
        stale.unlink()
    warehouse = WarehouseResource(database=str(db))
    # as the daily schedule sees it: on day 5 five days are loaded, on day 90 ninety
    load_export(warehouse, export, days[:5])
    early = step_seconds(warehouse, days[4])
    t0 = time.perf_counter()
    load_export(warehouse, export, days[5:])
    print(f"loaded days 6..90 of raw events in {time.perf_counter() - t0:.1f} s")
    # days 6..89 analysed as the daily runs would have (untimed), then day 90 timed
    t0 = time.perf_counter()
    with dg.instance_for_test() as instance:
        assert dg.materialize(analysis_assets, resources={"duckdb": warehouse}, instance=instance,
                              tags={"dagster/asset_partition_range_start": days[5].isoformat(),
                                    "dagster/asset_partition_range_end": days[88].isoformat()}).success
    print(f"analysed days 6..89 in one run in {time.perf_counter() - t0:.1f} s")
    late = step_seconds(warehouse, days[89])
    print(f"\n{'asset':<16} {'day 5 (s)':>10} {'day 90 (s)':>11} {'ratio 90/5':>11}")
    for key in early:
        print(f"{key:<16} {early[key]:>10.2f} {late[key]:>11.2f} {late[key] / max(early[key], 1e-3):>11.2f}")
    print(f"{'total':<16} {sum(early.values()):>10.2f} {sum(late.values()):>11.2f} "
          f"{sum(late.values()) / sum(early.values()):>11.2f}")

    if not args.skip_1m:
        big_export = args.workdir / "export-1000000-7"
        if not (big_export / f"{BIG_DAY.isoformat()}.jsonl").exists():
            generate_demo(big_export, days=1, end_date=BIG_DAY, events_per_day=1_000_000, seed=7)
        big_db = args.workdir / "bench-analysis-1m.duckdb"
        for stale in args.workdir.glob("bench-analysis-1m.duckdb*"):
            stale.unlink()
        big = WarehouseResource(database=str(big_db))
        load_export(big, big_export, [BIG_DAY])
        one = step_seconds(big, BIG_DAY)
        print(f"\n1M-event day ({BIG_DAY}):")
        for key, seconds in one.items():
            print(f"{key:<16} {seconds:>10.2f}")
        print(f"{'total':<16} {sum(one.values()):>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
