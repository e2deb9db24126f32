"""Start-up benchmark: what loading the code location costs a process (every Dagster step's process, the
CLI and the API server pay it), against yardsticks measured in the same run, alternating:

  python -c pass                         the interpreter alone
  import dagster                         the floor for a Dagster code location
  import hitcraft_assets.definitions     the code location (every asset, resource, schedule and sensor)

and, with ``--before REV``, the code location as it was at git revision REV (a temporary git worktree).
Each import runs in a fresh process; wall seconds and peak RSS are medians over ``--runs``. Usage:

    python bench/startup.py [--runs 7] [--before REV]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(code: str, path: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of a fresh interpreter running ``code`` with ``path`` first on sys.path."""
    env = dict(os.environ, PYTHONPATH=str(path), PYTHONDONTWRITEBYTECODE="1")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=path)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"startup bench: {code!r} failed in {path}")
    return wall, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--before", metavar="REV", default=None)
    args = parser.parse_args()
    cases = [("python -c pass", "pass", ROOT), ("import dagster", "import dagster", ROOT),
             ("import hitcraft_assets.definitions", "import hitcraft_assets.definitions", ROOT)]
    worktree = None
    if args.before:
        worktree = Path(tempfile.mkdtemp()) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.before], cwd=ROOT, check=True,
                       capture_output=True)
        cases.append((f"import hitcraft_assets.definitions @{args.before}", "import hitcraft_assets.definitions",
                      worktree))
    try:
        for _, code, path in cases:   # warm the file cache
            timed(code, path)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in cases}
        for _ in range(args.runs):    # alternate, so that drift of the machine's speed hits every case alike
            for name, code, path in cases:
                samples[name].append(timed(code, path))
    finally:
        if worktree is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, capture_output=True)
            shutil.rmtree(worktree.parent, ignore_errors=True)
    floor = statistics.median(w for w, _ in samples["import dagster"])
    print(f"## start-up, median of {args.runs} fresh processes ({os.cpu_count()} cores)\n")
    print("| what | wall s | peak RSS MB | wall / import dagster |")
    print("|---|---:|---:|---:|")
    for name, runs in samples.items():
        wall = statistics.median(w for w, _ in runs)
        rss = statistics.median(r for _, r in runs)
        print(f"| {name} | {wall:.2f} | {rss:.0f} | {wall / floor:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
