"""What the day-by-day detectors cost per series, by length of history.

Each detector judges every day of a series from the days before it, in one pass over its history (the
state of an episode, a regime and the days left out of baselines carries from day to day), so a daily
run pays for the whole history of every series it scans. This times that pass on seeded series like the
engine's: daily counts of about 40 with a weekly pattern (``assess_series`` with the count options the
scan uses) and funnel conversions of about 15 entrants a day (``assess_rate_series``), at 30, 90 and 365
days, and prints milliseconds per series and the ratio of each length to 30 days. With ``--before REV``
the same series are timed on the code of git revision REV (a temporary worktree, its own process), and
the table gains the ratio before / now.

    python bench/detection.py [--series 40] [--before REV]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LENGTHS = (30, 90, 365)

_TIMER = r"""
import json, sys, time
from datetime import date, timedelta
import numpy as np
from hitcraft_assets.detection.anomalies import assess_series
from hitcraft_assets.detection.rates import assess_rate_series
from hitcraft_assets.detection.scan import anomaly_options

series, lengths = int(sys.argv[1]), [int(v) for v in sys.argv[2].split(",")]
out = {}
for n in lengths:
    rng = np.random.default_rng(n)
    dates = [date(2026, 1, 1) + timedelta(days=i) for i in range(n)]
    week = np.array([1.0, 1.1, 1.1, 1.0, 0.9, 0.6, 0.5])
    counts = [rng.poisson(40 * week[np.arange(n) % 7]).astype(float) for _ in range(series)]
    trials = [rng.poisson(15, n).astype(float) for _ in range(series)]
    rates = [np.where(t > 0, rng.binomial(t.astype(int), 0.6) / np.maximum(t, 1), np.nan) for t in trials]
    opts = anomaly_options("event_count:Sign Up")
    assess_series(dates, counts[0], opts)
    assess_rate_series(dates, rates[0], trials[0])
    t = time.perf_counter()
    for c in counts:
        assess_series(dates, c, opts)
    count_ms = (time.perf_counter() - t) * 1000 / series
    t = time.perf_counter()
    for r, k in zip(rates, trials):
        assess_rate_series(dates, r, k)
    rate_ms = (time.perf_counter() - t) * 1000 / series
    out[n] = {"count": count_ms, "rate": rate_ms}
print(json.dumps(out))
"""


def _time(path: Path, series: int) -> dict[int, dict[str, float]]:
    run = subprocess.run([sys.executable, "-c", _TIMER, str(series), ",".join(map(str, LENGTHS))], cwd=path,
                         env={"PYTHONPATH": str(path), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                         check=True)
    return {int(k): v for k, v in json.loads(run.stdout.strip().splitlines()[-1]).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=40)
    parser.add_argument("--before", metavar="REV", default=None)
    args = parser.parse_args()
    now = _time(ROOT, args.series)
    before = None
    if args.before:
        worktree = Path(tempfile.mkdtemp()) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.before], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            before = _time(worktree, args.series)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, capture_output=True)
            shutil.rmtree(worktree.parent, ignore_errors=True)
    head = "| detector | days | ms per series | vs 30 days |"
    rule = "|---|---:|---:|---:|"
    if before:
        head += f" ms @{args.before} | @{args.before} / now |"
        rule += "---:|---:|"
    print(f"## Detectors, {args.series} series per length\n\n{head}\n{rule}")
    for kind, name in (("count", "assess_series (counts)"), ("rate", "assess_rate_series (15 entrants)")):
        for n in LENGTHS:
            row = f"| {name} | {n} | {now[n][kind]:.1f} | {now[n][kind] / now[LENGTHS[0]][kind]:.1f} |"
            if before:
                row += f" {before[n][kind]:.1f} | {before[n][kind] / now[n][kind]:.1f} |"
            print(row)


if __name__ == "__main__":
    main()
