"""History benchmark: does a day cost the same on day 365 as on day 30?

A demo of flat volume (`generate_demo(..., flat=True)`: as many daily users at the end as at the start, so
the two days differ only in how much history lies behind them) goes into two warehouses: one backfilled up
to the day before day EARLY, one up to the day before the last REPEATS days. Then REPEATS consecutive
mornings of each are timed as the schedule runs them, each after the run of the morning before (its raw
events, then every local day they change, with every daily asset including detection and insights: 8 days
here), alternating early and late, in one process, after one untimed morning of each (the backfill's last
day again: with code newer than the backfill's it recomputes every day, as every digest covers the code);
the timed runs go into copies of the two warehouses, so that --reuse starts from the backfills again. Printed: the median seconds of each warehouse's mornings, the
ratio late / early (issue 15's target is at most 1.2), the peak RSS of the process during the runs (sampled
from /proc every 50 ms), and each asset's median seconds (its step's start to its end) on both, with their
ratio, so that the history-bound steps show.

Usage: PYTHONPATH=. python bench/history.py [--days 365] [--early 30] [--users 5000] [--seed 3]
[--repeats 3] [--keep DIR [--reuse]]. The year's backfill takes most of it (about 35 minutes on 2 cores);
--reuse with the --keep folder of an earlier run only times the days; --days 120 for a quick look.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path

os.environ.setdefault("HITCRAFT_START_DATE", "2024-01-01")
import warnings  # noqa: E402

warnings.filterwarnings("ignore")

import dagster as dg  # noqa: E402

from hitcraft_assets.analysis.assets import analysis_assets  # noqa: E402
from hitcraft_assets.demo.simulator import generate_demo  # noqa: E402
from hitcraft_assets.detection.assets import detection_assets  # noqa: E402
from hitcraft_assets.ingestion.assets import raw_downloads, raw_events  # noqa: E402
from hitcraft_assets.ingestion.mixpanel import MixpanelResource  # noqa: E402
from hitcraft_assets.ingestion.sources import ExportSourceResource  # noqa: E402
from hitcraft_assets.insights.assets import insights  # noqa: E402
from hitcraft_assets.insights.llm import LLMResource  # noqa: E402
from hitcraft_assets.schedules import RANGE_END, RANGE_START, analysis_range  # noqa: E402
from hitcraft_assets.warehouse import WarehouseResource  # noqa: E402

END = date(2026, 6, 30)
DAILY_ASSETS = [raw_downloads, raw_events, *[a for a in analysis_assets if a.partitions_def is not None], *detection_assets,
                insights]
UNPARTITIONED = [a for a in analysis_assets if a.partitions_def is None]
SELECTION = DAILY_ASSETS + UNPARTITIONED


class PeakRSS:
    """The peak resident set of this process while the block runs (VmRSS sampled every 50 ms; VmHWM
    only ever grows, so it cannot tell one run's peak from an earlier one's)."""

    def __enter__(self) -> PeakRSS:
        self.peak, self._stop = _rss(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _resources(folder: Path, warehouse: str) -> dict:
    return {"duckdb": WarehouseResource(database=str(folder / warehouse)), "llm": LLMResource(),
            "export_source": ExportSourceResource(source="files", export_dir=str(folder / "export"),
                                                  staging_dir=str(folder / "staging"), mixpanel=MixpanelResource())}


def _run(instance, resources, first: date, last: date) -> dg.ExecuteInProcessResult:
    result = dg.materialize(SELECTION, instance=instance, resources=resources, selection=SELECTION,
                            tags={RANGE_START: first.isoformat(), RANGE_END: last.isoformat()},
                            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                            raise_on_error=True)
    return result


def step_seconds(instance, result: dg.ExecuteInProcessResult) -> dict[str, float]:
    """Each step's seconds, from its STEP_START to its STEP_SUCCESS (or failure) event in the event log."""
    started, out = {}, {}
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            started[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in started:
            out[event.step_key] = entry.timestamp - started[event.step_key]
    return out


def daily_run(instance, resources, day: date, first: date) -> tuple[float, int, dict[str, float], tuple[date, date]]:
    window = analysis_range(day, day, "UTC", 7, first)
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        result = _run(instance, resources, *window)
        seconds = time.perf_counter() - t0
    return seconds, rss.peak, step_seconds(instance, result), window


def _median(values: list[float]) -> float:
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--early", type=int, default=30, help="the early day timed (1-based)")
    parser.add_argument("--users", type=int, default=5000, help="user base (5,000: about 100 daily users)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each day, alternating (medians)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="folder for the demo and the two warehouses; with --reuse, a folder of an earlier run")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the demo and the backfilled warehouses found in --keep (only time the days)")
    args = parser.parse_args()
    if not 10 <= args.early < args.days:
        parser.error("--early must be at least 10 and before --days")
    if args.reuse and args.keep is None:
        parser.error("--reuse needs --keep")
    folder = args.keep or Path(tempfile.mkdtemp(prefix="hitcraft-history-"))
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if not (args.reuse and (folder / "export" / "ground_truth.json").exists()):
        for stale in folder.glob("*.duckdb*"):
            stale.unlink()
        generate_demo(folder / "export", days=args.days, end_date=END, users=args.users, seed=args.seed,
                      flat=True)
    truth = json.loads((folder / "export" / "ground_truth.json").read_text())
    start = date.fromisoformat(truth["start_date"])
    if date.fromisoformat(truth["end_date"]) != END or truth.get("growth") != "flat" or \
            (END - start).days + 1 != args.days:
        raise SystemExit(f"{folder / 'export'} holds another demo: run without --reuse")
    n = args.repeats
    early, last = start + timedelta(days=args.early - 1), END - timedelta(days=n - 1)
    print(f"flat demo: {args.days} days ({start} .. {END}), {sum(truth['events'].values()):,} events, "
          f"{truth['users']:,} users", flush=True)
    days = [(f"day {args.early}" + (f"-{args.early + n - 1}" if n > 1 else ""), early, "early.duckdb"),
            (f"day {args.days - n + 1}" + (f"-{args.days}" if n > 1 else ""), last, "late.duckdb")]
    timed: dict[str, list[tuple[float, int, dict[str, float]]]] = {label: [] for label, _, _ in days}
    with dg.instance_for_test() as instance:
        for label, day, warehouse in days:   # each warehouse holds every day before its first timed day
            if (folder / warehouse).exists() and args.reuse:
                continue
            t1 = time.perf_counter()
            _run(instance, _resources(folder, warehouse), start, day - timedelta(days=1))
            print(f"backfill {start} .. {day - timedelta(days=1)} ({warehouse}): {time.perf_counter() - t1:.0f} s",
                  flush=True)
        for _, _, warehouse in days:         # the timed runs go into copies: --reuse starts from the backfill again
            for f in folder.glob(f"{warehouse}*"):
                shutil.copyfile(f, folder / f.name.replace(warehouse, "run-" + warehouse))
        for _, first_day, warehouse in days:  # an untimed morning first: the backfill's last day again
            # (with code newer than the backfill's, every digest covers the code, so this morning recomputes
            # every day of its lookback; the timed mornings are the ones after it, as in production)
            t1 = time.perf_counter()
            daily_run(instance, _resources(folder, "run-" + warehouse), first_day - timedelta(days=1), start)
            print(f"untimed morning {first_day - timedelta(days=1)} ({warehouse}): {time.perf_counter() - t1:.1f} s",
                  flush=True)
        for k in range(n):                   # alternating, so that a noisy neighbour hits both alike
            for label, first_day, warehouse in days:
                day = first_day + timedelta(days=k)   # consecutive mornings, each after the day before's run
                seconds, peak, steps, window = daily_run(instance, _resources(folder, "run-" + warehouse), day, start)
                timed[label].append((seconds, peak, steps))
                print(f"{label} ({day}, recomputes {window[0]} .. {window[1]}), run {k + 1}: {seconds:.1f} s, "
                      f"peak RSS {peak / 2**20:,.0f} MiB", flush=True)
    (l1, l2) = (label for label, _, _ in days)
    s1, s2 = (_median([t[0] for t in timed[label]]) for label in (l1, l2))
    p1, p2 = (max(t[1] for t in timed[label]) for label in (l1, l2))
    st1, st2 = ({key: _median([t[2].get(key, 0.0) for t in timed[label]]) for key in timed[label][0][2]}
                for label in (l1, l2))
    print(f"\n| run (median of {args.repeats}) | seconds | peak RSS (MiB) |\n|---|---:|---:|")
    print(f"| {l1} | {s1:.1f} | {p1 / 2**20:,.0f} |\n| {l2} | {s2:.1f} | {p2 / 2**20:,.0f} |")
    print(f"\nratio {l2} / {l1}: {s2 / s1:.2f} (issue 15's target: at most 1.2)\n")
    print(f"| step | {l1} (s) | {l2} (s) | ratio |\n|---|---:|---:|---:|")
    for key in sorted(st2, key=lambda k: -st2[k]):
        a, b = st1.get(key), st2[key]
        print(f"| {key} | {a:.1f} | {b:.1f} | {b / a:.1f} |" if a else f"| {key} | - | {b:.1f} | - |")
    print(f"\nwhole benchmark: {time.perf_counter() - t0:.0f} s; folder {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
