"""API benchmark: a bounded load on loopback against a real `hitcraft serve` process.

It starts `hitcraft serve` (a subprocess, one uvicorn worker) on a demo serving snapshot, creates a read
key with `hitcraft api-keys create`, then, one endpoint at a time, keeps a fixed number of keep-alive
connections busy for a fixed time (after a short warm-up) and stops by itself:

  /v1/health                the framework's own floor (no key, no query), measured in the same run
  /v1/insights?limit=20     the key check, the rate limiter, one snapshot query, JSON
  /v1/metrics/dau           the same with a longer answer

and prints requests per second, p50/p90/p99 latency and errors per endpoint, and each against health.
Targets (issue 10): p99 under 50 ms at 16 connections for /v1/insights?limit=20, and at least a third of
health's throughput. The client is a small asyncio HTTP/1.1 client with keep-alive (no dependency; it
shares the machine's cores with the server, as wrk would). The server's rate limit is lifted for the run
(HITCRAFT_API_RATE_PER_S), so the limiter is still on the path but never refuses.

    python bench/api.py                              # builds bench/.work/api/ (a 30-day demo) if missing
    python bench/api.py --snapshot data/serving.duckdb --duration 10 --connections 16
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "api"
HITCRAFT = [sys.executable, "-m", "hitcraft_assets.cli"]
ENDPOINTS = [("health", "/v1/health", False), ("insights", "/v1/insights?limit=20", True),
             ("metrics/dau", "/v1/metrics/dau", True)]
P99_TARGET_MS = 50.0
THROUGHPUT_TARGET = 1 / 3


def base_env(data: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HITCRAFT_", "MIXPANEL_"))}
    env.update({"HITCRAFT_DATA_DIR": str(data), "DAGSTER_HOME": str(WORK / "dagster_home"),
                "PYTHONWARNINGS": "ignore"})
    return env


def build_snapshot(days: int) -> Path:
    """A demo snapshot in bench/.work/api/data/serving.duckdb, built through the real CLI if missing."""
    data = WORK / "data"
    snapshot = data / "serving.duckdb"
    if snapshot.exists():
        return snapshot
    env = base_env(data)
    (WORK / "dagster_home").mkdir(parents=True, exist_ok=True)
    print(f"building a {days}-day demo snapshot in {data} (hitcraft generate-demo + hitcraft run) ...", flush=True)
    t0 = time.monotonic()
    for args in (["generate-demo", "--days", str(days)], ["run"]):
        proc = subprocess.run([*HITCRAFT, *args], env=env, cwd=WORK, capture_output=True, text=True)
        if proc.returncode not in (0, 3):   # 3: some days held back by the quality gate, the rest is fine
            sys.exit(f"hitcraft {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    if not snapshot.exists():
        sys.exit(f"hitcraft run did not publish {snapshot}")
    print(f"  built in {time.monotonic() - t0:.0f} s", flush=True)
    return snapshot


# -- the client ----------------------------------------------------------------------------------

class Connection:
    """One keep-alive HTTP/1.1 connection; `get` returns (status, body length)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def get(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        match = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
        if match is None:
            raise RuntimeError(f"no Content-Length in {head[:200]!r}")
        body = await self.reader.readexactly(int(match.group(1)))
        if re.search(rb"\r\nconnection:\s*close", head, re.IGNORECASE):
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None


async def load(host: str, port: int, path: str, key: str | None, connections: int, seconds: float) -> dict:
    """Keep `connections` connections busy with GET `path` for `seconds`; latencies in ms."""
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}Accept: application/json\r\n\r\n".encode()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    failures: list[str] = []
    sizes: list[int] = []
    refused: list[bytes] = []   # the first answer that is not a 200, to say why
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        conn = Connection(host, port)
        try:
            while (t0 := time.perf_counter()) < deadline:
                try:
                    status, body = await conn.get(request)
                except (OSError, asyncio.IncompleteReadError, RuntimeError, ValueError) as exc:
                    failures.append(repr(exc))
                    await conn.close()
                    continue
                latencies.append((time.perf_counter() - t0) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
                if not sizes:
                    sizes.append(len(body))
                if status != 200 and not refused:
                    refused.append(body[:300])
        finally:
            await conn.close()

    t_start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - t_start
    return {"latencies": latencies, "statuses": statuses, "failures": failures, "elapsed": elapsed,
            "bytes": sizes[0] if sizes else 0, "refused": refused}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


# -- the server ----------------------------------------------------------------------------------

def start_server(env: dict, log: Path) -> tuple[subprocess.Popen, str, float]:
    t0 = time.monotonic()
    proc = subprocess.Popen([*HITCRAFT, "serve", "--port", "0"], env=env, cwd=WORK, stdout=subprocess.PIPE,
                            stderr=log.open("w"), text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        match = re.search(r"hitcraft serve: (http://\S+)", line)
        if match:
            return proc, match.group(1), time.monotonic() - t0
    proc.wait()
    sys.exit(f"hitcraft serve exited ({proc.returncode}) before it served:\n{''.join(lines)}\n"
             f"{log.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen) -> tuple[int, float]:
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    return code, time.monotonic() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--snapshot", type=Path, default=None, help="a serving snapshot (default: build a demo one)")
    parser.add_argument("--days", type=int, default=30, help="days of the demo snapshot built when missing")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per endpoint")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load per endpoint before measuring")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()

    snapshot = args.snapshot.resolve() if args.snapshot else build_snapshot(args.days)
    if not snapshot.exists():
        sys.exit(f"no snapshot at {snapshot}")
    WORK.mkdir(parents=True, exist_ok=True)
    app_db = WORK / "bench-app.sqlite"
    for stale in WORK.glob("bench-app.sqlite*"):
        stale.unlink()
    env = base_env(WORK / "data")
    env.update({"HITCRAFT_SERVING_PATH": str(snapshot), "HITCRAFT_APP_DB": str(app_db),
                "HITCRAFT_API_RATE_PER_S": "1000000", "HITCRAFT_API_BURST": "1000000"})
    made = subprocess.run([*HITCRAFT, "api-keys", "create", "bench", "--scope", "read"], env=env, cwd=WORK,
                          capture_output=True, text=True)
    if made.returncode != 0:
        sys.exit(f"hitcraft api-keys create failed: {made.stderr}")
    key = next((w for w in made.stdout.split() if re.fullmatch(r"hc_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", w)), None)
    if key is None:
        sys.exit(f"no key in the output of hitcraft api-keys create: {made.stdout!r}")

    log = WORK / "serve.log"
    proc, url, started_s = start_server(env, log)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    print(f"hitcraft serve on {url} in {started_s:.2f} s (snapshot {snapshot}); {args.connections} connections, "
          f"{args.warmup:g} s warm-up + {args.duration:g} s per endpoint; client: asyncio; "
          f"cores: {os.cpu_count()}{', wrk installed (not used)' if shutil.which('wrk') else ''}", flush=True)
    results = {}
    try:
        for name, path, needs_key in ENDPOINTS:
            k = key if needs_key else None
            asyncio.run(load(host, int(port), path, k, args.connections, args.warmup))
            results[name] = asyncio.run(load(host, int(port), path, k, args.connections, args.duration))
    finally:
        code, stop_s = stop_server(proc)

    print(f"\n{'endpoint':<28} {'requests':>9} {'req/s':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
          f"{'max ms':>7} {'bytes':>6}  errors")
    health = results["health"]
    health_rps = len(health["latencies"]) / health["elapsed"]
    verdict = []
    for name, path, _ in ENDPOINTS:
        r = results[name]
        lat = r["latencies"]
        rps = len(lat) / r["elapsed"]
        bad = sum(n for s, n in r["statuses"].items() if s != 200) + len(r["failures"])
        detail = ", ".join(f"HTTP {s}: {n}" for s, n in sorted(r["statuses"].items()) if s != 200)
        if r["failures"]:
            detail += f" {r['failures'][:2]}"
        if r["refused"]:
            detail += f" first: {r['refused'][0].decode(errors='replace')}"
        print(f"{path:<28} {len(lat):>9,} {rps:>8,.0f} {percentile(lat, 50):>7.1f} {percentile(lat, 90):>7.1f} "
              f"{percentile(lat, 99):>7.1f} {max(lat, default=float('nan')):>7.1f} {r['bytes']:>6,}  "
              f"{bad} {detail}")
        r.update(rps=rps, p50=percentile(lat, 50), p99=percentile(lat, 99), errors=bad)
    print("\nagainst /v1/health:")
    for name, path, _ in ENDPOINTS[1:]:
        r = results[name]
        print(f"  {path:<26} throughput {r['rps'] / health_rps:5.2f}x health, p50 {r['p50'] / health['p50']:4.1f}x, "
              f"p99 {r['p99'] / health['p99']:4.1f}x")
    ins = results["insights"]
    verdict.append(f"insights p99 {ins['p99']:.1f} ms {'<' if ins['p99'] < P99_TARGET_MS else '>='} "
                   f"{P99_TARGET_MS:g} ms: {'met' if ins['p99'] < P99_TARGET_MS else 'NOT met'}")
    ratio = ins["rps"] / health_rps
    verdict.append(f"insights throughput {ratio:.2f}x health (target >= {THROUGHPUT_TARGET:.2f}x, i.e. within 3x): "
                   f"{'met' if ratio >= THROUGHPUT_TARGET else 'NOT met'}")
    print("\ntargets: " + "; ".join(verdict))
    print(f"server: started in {started_s:.2f} s (process start to listening), stopped by SIGTERM in {stop_s:.2f} s "
          f"with exit code {code}; request log lines: {sum(1 for _ in log.open())} in {log}")
    if any(r["errors"] for r in results.values()):
        print("errors: see above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
