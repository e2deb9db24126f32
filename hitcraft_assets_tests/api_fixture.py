"""Fixtures of the REST API tests: a serving snapshot built by a real `hitcraft run` of a small demo, the app
served by uvicorn on a loopback port in a thread, API keys made with auth.py, and helpers that read the
snapshot directly and publish a changed copy of it the way the pipeline does (a new file, `os.replace`)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import httpx
import pytest
import uvicorn

from hitcraft_assets.app.auth import create_key
from hitcraft_assets.app.main import create_app
from hitcraft_assets.app.ratelimit import RateLimiter
from hitcraft_assets_tests.cli_env import HITCRAFT, env_for

DEMO_DAYS, DEMO_USERS, DEMO_END, DEMO_START = 21, 300, "2026-03-21", "2026-03-01"


@contextmanager
def serving(app) -> Iterator[str]:
    """uvicorn serving `app` in a thread on a free loopback port; yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def read(path: Path, sql: str, params: list | None = None) -> list[tuple]:
    """A direct read of a snapshot file (attached to an in-memory database: DuckDB caches instances by path,
    and a plain connect could hand back an already-replaced file)."""
    with duckdb.connect(":memory:") as conn:
        conn.execute("attach ? as s (read_only)", [str(path)])
        conn.execute("use s")
        return conn.execute(sql, params or []).fetchall()


def snapshot_id(path: Path) -> str:
    return json.loads(read(path, "select value from meta where key = 'snapshot_id'")[0][0])


def republish(path: Path, *statements: str) -> str:
    """Publish a new snapshot at `path` as the pipeline does: a copy changed by `statements`, with a new
    snapshot_id, written to a temporary file and swapped in with os.replace. Returns the new id."""
    new_id = uuid.uuid4().hex
    tmp = path.with_name(f"{path.name}.tmp-{new_id[:8]}")
    shutil.copyfile(path, tmp)
    with duckdb.connect(str(tmp)) as conn:
        for sql in statements:
            conn.execute(sql)
        conn.execute("update meta set value = ? where key = 'snapshot_id'", [json.dumps(new_id)])
        conn.execute("checkpoint")
    os.replace(tmp, path)
    return new_id


def build_demo_snapshot(folder: Path) -> Path:
    """`hitcraft generate-demo` then `hitcraft run` as subprocesses; the run's last asset publishes the snapshot."""
    export = folder / "demo"
    env = env_for(folder, HITCRAFT_EXPORT_DIR=str(export), HITCRAFT_START_DATE=DEMO_START,
                  HITCRAFT_SERVING_PATH=str(folder / "data" / "serving.duckdb"))
    gen = subprocess.run([*HITCRAFT, "generate-demo", "--days", str(DEMO_DAYS), "--users", str(DEMO_USERS),
                          "--end-date", DEMO_END, "--out", str(export)],
                         cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert gen.returncode == 0, gen.stderr[-3000:]
    run = subprocess.run([*HITCRAFT, "run"], cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    built = Path(env["HITCRAFT_SERVING_PATH"])
    assert built.exists(), run.stdout[-3000:]
    return built


# The 21-day demo is too short for the detector to flag anything (it needs 14 days of history before a first
# alert, and the demo's incident is a level shift that trends and insights report). The anomaly endpoints
# need rows to filter and page through: these are added to the served copy, built from real daily values.
ADD_ANOMALIES = """
insert into anomalies
select metric_date, metric, dimension, segment, value as observed, value * 0.8 as expected,
       value * 0.7 as lower, value * 0.9 as upper, 3.5 + day(metric_date) / 10 as score,
       case when day(metric_date) % 2 = 0 then 'up' else 'down' end as direction, 0.001 as p_value,
       0.01 as q_value,
       case when dimension = 'all' then '[{"dimension": "platform", "segment": "Android", "share": 0.6}]'::json end,
       case when day(metric_date) % 3 = 0 then 'new' else 'continuing' end as status,
       metric_date - (day(metric_date) % 3)::integer as episode_start,
       1 as window_days
from daily_metrics
where metric in ('dau', 'sessions') and metric_date between date '2026-03-14' and date '2026-03-21'
  and dimension in ('all', 'platform')
"""


@dataclass
class Api:
    """The served app: its base URL, the snapshot file it serves, keys by scope, and the app object."""

    url: str
    path: Path
    keys: dict[str, str]
    app: object

    def headers(self, scope: str = "read") -> dict:
        return {"Authorization": f"Bearer {self.keys[scope]}"}

    def get(self, route: str, scope: str = "read", **params) -> httpx.Response:
        return httpx.get(f"{self.url}{route}", params=params or None, headers=self.headers(scope), timeout=30)


@pytest.fixture(scope="session")
def demo_snapshot(tmp_path_factory) -> Path:
    return build_demo_snapshot(tmp_path_factory.mktemp("api-demo"))


@pytest.fixture(scope="module")
def api_factory(tmp_path_factory, demo_snapshot) -> Iterator[Callable[[], Api]]:
    """Makes a fresh served copy of the demo snapshot (with the anomaly rows) and serves it."""
    stack = []

    def make() -> Api:
        folder = tmp_path_factory.mktemp("api")
        path = folder / "serving.duckdb"
        shutil.copyfile(demo_snapshot, path)
        republish(path, ADD_ANOMALIES)
        app_db = folder / "app.sqlite"
        app = create_app(serving_path=path, app_db_path=app_db)
        app.state.rate_limiter = RateLimiter(10_000, 10_000)   # these tests are not about the rate limit
        keys = {"read": create_key(app_db, "tester", "read"), "admin": create_key(app_db, "operator", "admin")}
        ctx = serving(app)
        url = ctx.__enter__()
        stack.append(ctx)
        return Api(url, path, keys, app)

    yield make
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


@pytest.fixture(scope="module")
def api(api_factory) -> Api:
    """The served demo snapshot, shared by the tests that only read it."""
    return api_factory()


@pytest.fixture
def fresh_api(api_factory) -> Api:
    """A served copy of its own, for a test that publishes new snapshots."""
    return api_factory()


def python(code: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
