"""`hitcraft serve` and `hitcraft api-keys` as an operator runs them, as real processes: the server starts
quickly on a serving snapshot and says what it serves, logs one line per request (method, path, status,
milliseconds; never a key, never a query string, which can hold an unsubscribe token), and stops cleanly
with exit 0 on SIGTERM (systemd, docker stop) and SIGINT (Ctrl-C), even with a client connection open. The
key commands print a key once, refuse duplicates and unknown names with one line and exit 2, and never
show a key again."""

from __future__ import annotations

import importlib.util
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import httpx
import pytest

from hitcraft_assets.delivery.serving import publish
from hitcraft_assets.delivery.unsubscribe import AppDB, make_token
from hitcraft_assets_tests.reports_fixture import LAST, build_warehouse

HITCRAFT = [sys.executable, "-m", "hitcraft_assets.cli"]
SECRET = "serve-test-secret-0123456789abcdef"
START_LIMIT_S = 5.0
STOP_LIMIT_S = 5.0
LOG_LINE = re.compile(r"\b(GET|POST|HEAD|PUT|DELETE) (\S+) (\d{3}) (\d+\.\d) ms\b")

needs_app = pytest.mark.skipif(importlib.util.find_spec("hitcraft_assets.app.main") is None,
                               reason="hitcraft_assets.app.main (create_app) is not written yet")


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("snapshot")
    build_warehouse(folder / "w.duckdb")
    with duckdb.connect(str(folder / "w.duckdb")) as conn:
        publish(conn, folder / "serving.duckdb")
    return folder / "serving.duckdb"


@pytest.fixture
def env(tmp_path, snapshot) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HITCRAFT_", "MIXPANEL_"))}
    env.update({"HITCRAFT_DATA_DIR": str(tmp_path / "data"), "HITCRAFT_SERVING_PATH": str(snapshot),
                "HITCRAFT_APP_DB": str(tmp_path / "app.sqlite"), "HITCRAFT_SECRET_KEY": SECRET,
                "PYTHONWARNINGS": "ignore"})
    return env


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*HITCRAFT, *args], env=env, capture_output=True, text=True, timeout=60)


class Served:
    """A `hitcraft serve --port 0` process: its URL, how long it took to serve, its stdout and stderr."""

    def __init__(self, env: dict, tmp_path: Path) -> None:
        self.stderr_path = tmp_path / "serve.stderr"
        t0 = time.monotonic()
        self.proc = subprocess.Popen([*HITCRAFT, "serve", "--port", "0"], env=env, stdout=subprocess.PIPE,
                                     stderr=self.stderr_path.open("w"), text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line) for line in self.proc.stdout], daemon=True).start()
        self.stdout = ""
        self.url = None
        while self.url is None:
            try:
                line = self.lines.get(timeout=max(0.1, 30 - (time.monotonic() - t0)))
            except queue.Empty:
                break
            self.stdout += line
            if m := re.search(r"hitcraft serve: (http://\S+)", line):
                self.url = m.group(1)
        assert self.url, f"no URL printed; exit {self.proc.poll()}\n{self.stdout}\n{self.stderr}"
        # the first answer, not just the line: the server is ready when it answers
        assert httpx.get(f"{self.url}/v1/health", timeout=10).status_code == 200
        self.started_s = time.monotonic() - t0
        time.sleep(0.2)   # the header block after the URL line
        while not self.lines.empty():
            self.stdout += self.lines.get()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self, sig: int) -> tuple[int, float]:
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        return code, time.monotonic() - t0


@pytest.fixture
def served(env, tmp_path):
    servers: list[Served] = []

    def start() -> Served:
        servers.append(Served(env, tmp_path))
        return servers[-1]

    yield start
    for s in servers:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


@needs_app
def test_serve_starts_on_a_snapshot_logs_one_line_per_request_and_stops_on_sigterm(env, served, snapshot):
    key = cli(env, "api-keys", "create", "dash", "--scope", "read").stdout.strip()
    server = served()
    print(f"hitcraft serve answered /v1/health {server.started_s:.2f} s after the process started")
    assert server.started_s < START_LIMIT_S
    assert str(snapshot) in server.stdout and LAST.isoformat() in server.stdout     # what it serves
    token = make_token(SECRET.encode(), "daily", "ana@shop.example")
    with httpx.Client(base_url=server.url) as client:                    # keep-alive: open during the stop
        requests = [
            (client.get("/v1/insights", params={"limit": 2}, headers={"Authorization": f"Bearer {key}"}),
             "GET", "/v1/insights"),
            (client.get("/v1/insights"), "GET", "/v1/insights"),
            (client.get("/unsubscribe", params={"token": token}), "GET", "/unsubscribe"),
            (client.post("/v1/unsubscribe", params={"token": token}, content="List-Unsubscribe=One-Click",
                         headers={"Content-Type": "application/x-www-form-urlencoded"}), "POST", "/v1/unsubscribe"),
        ]
        assert [r.status_code for r, _, _ in requests] == [200, 401, 200, 200]
        assert AppDB(env["HITCRAFT_APP_DB"]).is_unsubscribed("ana@shop.example", "daily")
        code, stop_s = server.stop(signal.SIGTERM)
    print(f"stopped by SIGTERM in {stop_s:.2f} s")
    assert code == 0 and stop_s < STOP_LIMIT_S
    log = server.stderr
    seen = [m.groups() for m in LOG_LINE.finditer(log)]
    expected = [("GET", "/v1/health", "200")] + [(m, p, str(r.status_code)) for r, m, p in requests]
    # one line each (a line is written when its request is done, so two close requests may swap)
    assert sorted(s[:3] for s in seen) == sorted(expected), log
    assert all(float(ms) >= 0 for *_, ms in seen)
    assert key not in log and key.split("_", 2)[2] not in log           # never the key
    assert token not in log and "token=" not in log and "?" not in "".join(p for _, p, *_ in seen)
    assert "key=dash" in log                                             # the key's name, for whoever reads the log
    assert "Traceback" not in log


@needs_app
def test_serve_stops_on_sigint_with_exit_0(served):
    server = served()
    assert httpx.get(f"{server.url}/v1/health").status_code == 200
    code, stop_s = server.stop(signal.SIGINT)
    print(f"stopped by SIGINT in {stop_s:.2f} s")
    assert code == 0 and stop_s < STOP_LIMIT_S
    assert "Traceback" not in server.stderr and "KeyboardInterrupt" not in server.stderr


def test_serve_refuses_a_port_in_use_and_bad_settings_with_one_line(env):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = cli(env, "serve", "--port", str(port))
    assert r.returncode == 2 and r.stderr.startswith("hitcraft: SERVE_ADDRESS: ")
    assert len(r.stderr.strip().splitlines()) == 1
    r = cli({**env, "HITCRAFT_API_RATE_PER_S": "lots"}, "serve", "--port", "0")
    assert r.returncode == 2 and r.stderr.startswith("hitcraft: SETTINGS_RATE_LIMIT: ")
    assert len(r.stderr.strip().splitlines()) == 1
    r = cli({**env, "HITCRAFT_SECRET_KEY": "short"}, "serve", "--port", "0")
    assert r.returncode == 2 and r.stderr.startswith("hitcraft: SECRET_KEY_SHORT: ")


def test_api_keys_create_list_revoke(env):
    made = cli(env, "api-keys", "create", "ci", "--scope", "admin")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert re.fullmatch(r"hc_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", key)
    assert "will not be shown again" in made.stderr and key not in made.stderr
    again = cli(env, "api-keys", "create", "ci")
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr.startswith("hitcraft: KEY_NAME_TAKEN: ") and len(again.stderr.strip().splitlines()) == 1
    bad = cli(env, "api-keys", "create", "no spaces")
    assert bad.returncode == 2 and bad.stderr.startswith("hitcraft: KEY_NAME_INVALID: ")
    assert cli(env, "api-keys", "create", "x", "--scope", "write").returncode == 2           # argparse's choices
    assert cli(env, "api-keys", "create", "reader").returncode == 0

    listed = cli(env, "api-keys", "list")
    assert listed.returncode == 0
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:3] == ["name", "scope", "key"] and "last used" in header and "revoked" in header
    assert [r.split()[:2] for r in rows] == [["ci", "admin"], ["reader", "read"]]
    assert key not in listed.stdout and key.split("_", 2)[2] not in listed.stdout
    assert all(r.rstrip().endswith("-") for r in rows)                   # neither revoked

    revoked = cli(env, "api-keys", "revoke", "ci")
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert cli(env, "api-keys", "revoke", "ci").returncode == 0          # already revoked: said, not an error
    unknown = cli(env, "api-keys", "revoke", "nobody")
    assert unknown.returncode == 2 and unknown.stderr.startswith("hitcraft: KEY_UNKNOWN: ")
    assert len(unknown.stderr.strip().splitlines()) == 1
    ci_row = next(r for r in cli(env, "api-keys", "list").stdout.splitlines() if r.startswith("ci "))
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}Z\s*$", ci_row)   # the revocation time


def test_api_keys_list_on_an_empty_database(env):
    r = cli(env, "api-keys", "list")
    assert r.returncode == 0 and "no API keys" in r.stdout
