"""API keys and unsubscribe links are the API's only gates, so they are tested the way a client meets them:
over real HTTP, against uvicorn serving the app on an ephemeral 127.0.0.1 port in a thread, with keys made
and revoked by the `hitcraft api-keys` command in another process while the server runs. The matrix: no key,
a wrong key, a revoked key, a read key on an admin route, an admin key; keys stored hashed; last use
recorded; the per-key rate limit; and the unsubscribe endpoints (one-click, the page that must not act on
a GET, its form), which need no key but a signed token."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse

from hitcraft_assets.app import auth
from hitcraft_assets.app.api.unsubscribe import router as unsubscribe_router
from hitcraft_assets.app.auth import KeyInfo, create_key, list_keys, require_scope, revoke_key, verify
from hitcraft_assets.app.errors import ApiError
from hitcraft_assets.app.ratelimit import RateLimiter, limits_from_env, retry_after_header
from hitcraft_assets.delivery.unsubscribe import AppDB, make_token
from hitcraft_assets_tests.api_fixture import serving
from hitcraft_assets.settings import SettingsError

HITCRAFT = [sys.executable, "-m", "hitcraft_assets.cli"]
SECRET = "test-secret-key-0123456789abcdef"
HOSTILE = "<img src=x onerror=alert(1)>"
HAVE_CREATE_APP = importlib.util.find_spec("hitcraft_assets.app.main") is not None


# -- the server ----------------------------------------------------------------------------------

def _admin_only(key: KeyInfo = Depends(require_scope("admin"))) -> dict:
    return {"name": key.name, "scope": key.scope}


def _read_only(key: KeyInfo = Depends(require_scope("read"))) -> dict:
    return {"name": key.name, "scope": key.scope}


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    """A serving snapshot of the delivery tests' small warehouse, for the real app's routes."""
    import duckdb

    from hitcraft_assets.delivery.serving import publish
    from hitcraft_assets_tests.reports_fixture import build_warehouse

    folder = tmp_path_factory.mktemp("snapshot")
    build_warehouse(folder / "w.duckdb")
    with duckdb.connect(str(folder / "w.duckdb")) as conn:
        publish(conn, folder / "serving.duckdb")
    return folder / "serving.duckdb"


def build_app(snapshot: Path, app_db: Path) -> FastAPI:
    """The real app (create_app) when it exists, else a minimal one with the same error handler; either
    way with two test routes in front, one per scope, and the unsubscribe routes."""
    if HAVE_CREATE_APP:
        from hitcraft_assets.app.main import create_app

        app = create_app(serving_path=snapshot, app_db_path=app_db)
    else:
        app = FastAPI()
        app.state.app_db_path = app_db

        @app.exception_handler(ApiError)
        async def _api_error(request, exc: ApiError):
            return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

        app.include_router(unsubscribe_router)
    app.add_api_route("/test/admin", _admin_only, methods=["GET"])
    app.add_api_route("/test/read", _read_only, methods=["GET"])
    for _ in range(2):   # in front of any catch-all route the app may have
        app.router.routes.insert(0, app.router.routes.pop())
    return app


@pytest.fixture
def env(tmp_path, monkeypatch) -> dict:
    app_db = tmp_path / "app.sqlite"
    monkeypatch.setenv("HITCRAFT_APP_DB", str(app_db))
    monkeypatch.setenv("HITCRAFT_SECRET_KEY", SECRET)
    for name in ("HITCRAFT_API_RATE_PER_S", "HITCRAFT_API_BURST"):
        monkeypatch.delenv(name, raising=False)
    return {**os.environ, "PYTHONWARNINGS": "ignore"}


@pytest.fixture
def app_db(tmp_path, env) -> Path:
    return tmp_path / "app.sqlite"


@pytest.fixture
def base(snapshot, app_db):
    with serving(build_app(snapshot, app_db)) as url:
        yield url


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*HITCRAFT, *args], env=env, capture_output=True, text=True, timeout=60)


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


# -- the matrix ----------------------------------------------------------------------------------

def test_a_request_without_a_key_is_told_how_to_authenticate(base):
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}):
        r = httpx.get(f"{base}/test/read", headers=headers)
        assert r.status_code == 401 and error_code(r) == "AUTH_REQUIRED"
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert "Authorization: Bearer" in r.json()["error"]["message"]


def test_a_wrong_or_forged_key_is_invalid(base, app_db):
    real = create_key(app_db, "real", "read")
    prefix, key_id, secret = real.split("_", 2)
    forged = f"{prefix}_{key_id}_{'A' * len(secret)}"                       # a known id, a guessed secret
    for key in ("nope", "hc_00000000_" + "A" * 43, forged, real + "x"):
        r = httpx.get(f"{base}/test/read", headers=bearer(key))
        assert r.status_code == 401 and error_code(r) == "AUTH_INVALID", key
    assert httpx.get(f"{base}/test/read", headers=bearer(real)).status_code == 200


def test_scopes_a_read_key_cannot_use_an_admin_route_and_an_admin_key_can_use_both(base, app_db):
    read, admin = create_key(app_db, "reader", "read"), create_key(app_db, "operator", "admin")
    r = httpx.get(f"{base}/test/admin", headers=bearer(read))
    assert r.status_code == 403 and error_code(r) == "FORBIDDEN"
    assert httpx.get(f"{base}/test/read", headers=bearer(read)).json() == {"name": "reader", "scope": "read"}
    assert httpx.get(f"{base}/test/admin", headers=bearer(admin)).json() == {"name": "operator", "scope": "admin"}
    assert httpx.get(f"{base}/test/read", headers=bearer(admin)).status_code == 200


def test_a_key_made_by_the_cli_works_at_once_and_stops_working_when_the_cli_revokes_it(base, env):
    made = cli(env, "api-keys", "create", "ci", "--scope", "read")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("hc_") and len(key.splitlines()) == 1          # the key alone on stdout
    assert "will not be shown again" in made.stderr
    with httpx.Client(base_url=base, headers=bearer(key)) as client:   # one keep-alive connection throughout
        assert client.get("/test/read").json()["name"] == "ci"
        revoked = cli(env, "api-keys", "revoke", "ci")
        assert revoked.returncode == 0, revoked.stderr
        r = client.get("/test/read")                                   # the same server, not restarted
        assert r.status_code == 401 and error_code(r) == "AUTH_INVALID"


@pytest.mark.skipif(not HAVE_CREATE_APP, reason="hitcraft_assets.app.main is not written yet")
def test_the_real_api_routes_are_protected(base, app_db):
    key = create_key(app_db, "reader", "read")
    assert httpx.get(f"{base}/v1/health").status_code == 200             # health needs no key
    r = httpx.get(f"{base}/v1/insights")
    assert r.status_code == 401 and error_code(r) == "AUTH_REQUIRED"
    r = httpx.get(f"{base}/v1/insights", params={"limit": 2}, headers=bearer(key))
    assert r.status_code == 200 and len(r.json()["items"]) == 2


# -- storage -------------------------------------------------------------------------------------

def test_keys_are_stored_hashed_and_never_listed(app_db, env):
    key = create_key(app_db, "ci", "admin")
    secret = key.split("_", 2)[2]
    assert verify(app_db, key) == KeyInfo("ci", "admin")
    files = [p for p in app_db.parent.glob(app_db.name + "*")]           # the database and its WAL
    assert files and not any(secret.encode() in p.read_bytes() or key.encode() in p.read_bytes() for p in files)
    with sqlite3.connect(app_db) as conn:
        (stored,) = conn.execute("select key_hash from api_keys where name = 'ci'").fetchone()
    assert stored == hashlib.sha256(secret.encode()).hexdigest()
    listed = cli(env, "api-keys", "list")
    assert listed.returncode == 0 and "ci" in listed.stdout and "admin" in listed.stdout
    assert secret not in listed.stdout and stored not in listed.stdout


def test_last_used_is_recorded_at_most_once_a_minute(base, app_db, monkeypatch):
    key = create_key(app_db, "ci", "read")
    assert list_keys(app_db)[0].last_used_at is None
    writes = []
    real_write = auth.write_transaction
    monkeypatch.setattr(auth, "write_transaction", lambda conn: (writes.append(1), real_write(conn))[1])
    before = datetime.now(timezone.utc).replace(microsecond=0)
    for _ in range(5):
        assert httpx.get(f"{base}/test/read", headers=bearer(key)).status_code == 200
    used = list_keys(app_db)[0].last_used_at
    assert used is not None and before <= used <= datetime.now(timezone.utc)
    assert len(writes) == 1                                              # five requests, one write
    old = (datetime.now(timezone.utc) - timedelta(minutes=2)).isoformat(timespec="seconds")
    with sqlite3.connect(app_db) as conn:                                # a minute later (as if):
        conn.execute("update api_keys set last_used_at = ?", (old,))
    monkeypatch.setattr(auth, "_touched", {})
    assert httpx.get(f"{base}/test/read", headers=bearer(key)).status_code == 200
    assert len(writes) == 2 and list_keys(app_db)[0].last_used_at >= before


def test_revoked_keys_keep_their_row_and_their_name(app_db):
    create_key(app_db, "ci", "read")
    assert revoke_key(app_db, "ci") is True
    assert revoke_key(app_db, "ci") is False                             # nothing left to revoke
    assert revoke_key(app_db, "nobody") is False
    (row,) = list_keys(app_db)
    assert row.name == "ci" and row.revoked_at is not None and not row.active
    with pytest.raises(auth.AuthError) as exc:
        create_key(app_db, "ci", "read")
    assert exc.value.code == "KEY_NAME_TAKEN"


@pytest.mark.parametrize("name, scope, code", [
    ("", "read", "KEY_NAME_INVALID"),
    ("has space", "read", "KEY_NAME_INVALID"),
    ("x" * 65, "read", "KEY_NAME_INVALID"),
    ("ci", "write", "KEY_SCOPE"),
])
def test_key_names_and_scopes_are_validated(app_db, name, scope, code):
    with pytest.raises(auth.AuthError) as exc:
        create_key(app_db, name, scope)
    assert exc.value.code == code


def test_an_app_database_without_keys_accepts_none(tmp_path):
    empty = tmp_path / "empty.sqlite"
    AppDB(empty).is_unsubscribed("a@b.example", "daily")                  # the file exists, no api_keys table
    assert verify(empty, "hc_00000000_" + "A" * 43) is None and list_keys(empty) == []


# -- the rate limit ------------------------------------------------------------------------------

def test_the_rate_limit_answers_429_with_retry_after_then_recovers(snapshot, app_db, monkeypatch):
    monkeypatch.setenv("HITCRAFT_API_RATE_PER_S", "4")
    monkeypatch.setenv("HITCRAFT_API_BURST", "3")
    busy, calm = create_key(app_db, "busy", "read"), create_key(app_db, "calm", "read")
    with serving(build_app(snapshot, app_db)) as url, httpx.Client(base_url=url) as client:
        codes = [client.get("/test/read", headers=bearer(busy)).status_code for _ in range(3)]
        r = client.get("/test/read", headers=bearer(busy))
        assert codes == [200, 200, 200] and r.status_code == 429 and error_code(r) == "RATE_LIMITED"
        assert int(r.headers["Retry-After"]) >= 1
        assert client.get("/test/read", headers=bearer(calm)).status_code == 200   # one bucket per key
        time.sleep(0.3)                                                  # 4/s: a token after 0.25 s
        assert client.get("/test/read", headers=bearer(busy)).status_code == 200


def test_token_bucket_refills_at_its_rate_up_to_its_burst():
    now = [0.0]
    limiter = RateLimiter(rate_per_s=2, burst=3, clock=lambda: now[0])
    assert [limiter.acquire("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("k") == pytest.approx(0.5)                    # one token every 0.5 s
    now[0] = 0.5
    assert limiter.acquire("k") == 0.0 and limiter.acquire("k") > 0
    now[0] = 100.0                                                       # idle: back to the burst, no more
    assert [limiter.acquire("k") for _ in range(4)][-1] > 0
    assert retry_after_header(0.01) == "1" and retry_after_header(1.2) == "2"


@pytest.mark.parametrize("rate, burst", [("0", None), ("-1", None), ("fast", None), ("nan", None),
                                         (None, "0"), (None, "2.5")])
def test_bad_rate_limit_settings_are_refused(monkeypatch, rate, burst):
    for name, value in (("HITCRAFT_API_RATE_PER_S", rate), ("HITCRAFT_API_BURST", burst)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match="SETTINGS_RATE_LIMIT"):
        limits_from_env()


# -- unsubscribe ---------------------------------------------------------------------------------

def token(profile="daily", email="Ana@Shop.example", **kw) -> str:
    return make_token(SECRET.encode(), profile, email, **kw)


def test_one_click_unsubscribe_records_the_opt_out(base, app_db):
    r = httpx.post(f"{base}/v1/unsubscribe", params={"token": token()}, content="List-Unsubscribe=One-Click",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200
    assert r.json() == {"unsubscribed": True, "profile": "daily", "email": "a***@shop.example"}
    db = AppDB(app_db)
    assert db.is_unsubscribed("ana@shop.example", "daily") and not db.is_unsubscribed("ana@shop.example", "weekly")
    assert [u.source for u in db.list_unsubscribed()] == ["one-click"]
    again = httpx.post(f"{base}/v1/unsubscribe", params={"token": token()})   # twice is fine
    assert again.status_code == 200 and len(db.list_unsubscribed()) == 1


@pytest.mark.parametrize("bad, code", [
    (lambda t: t[:-3] + ("AAA" if not t.endswith("AAA") else "BBB"), "TOKEN_SIGNATURE"),
    (lambda t: "", "TOKEN_MALFORMED"),
    (lambda t: "not-a-token", "TOKEN_MALFORMED"),
    (lambda t: token(issued=datetime.now(timezone.utc) - timedelta(days=400)), "TOKEN_EXPIRED"),
    (lambda t: make_token(b"another-secret-key-0123456789", "daily", "ana@shop.example"), "TOKEN_SIGNATURE"),
])
def test_a_bad_token_is_refused_by_the_api_and_by_the_page(base, app_db, bad, code):
    t = bad(token())
    r = httpx.post(f"{base}/v1/unsubscribe", params={"token": t})
    assert r.status_code == 400 and error_code(r) == code
    page = httpx.get(f"{base}/unsubscribe", params={"token": t})
    assert page.status_code == 400 and "text/html" in page.headers["content-type"]
    assert "link" in page.text and "<form" not in page.text
    form = httpx.post(f"{base}/unsubscribe", data={"token": t})
    assert form.status_code == 400
    assert AppDB(app_db).list_unsubscribed() == []


def test_the_page_asks_first_and_only_its_form_unsubscribes(base, app_db):
    t = token(profile=HOSTILE)
    db = AppDB(app_db)
    page = httpx.get(f"{base}/unsubscribe", params={"token": t})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert HOSTILE not in page.text and "&lt;img src=x onerror=alert(1)&gt;" in page.text    # escaped
    assert "a***@shop.example" in page.text and "ana@shop.example" not in page.text.lower()
    assert '<form method="post" action="/unsubscribe">' in page.text and f'value="{t}"' in page.text
    assert "<script" not in page.text
    assert page.headers["Referrer-Policy"] == "no-referrer" and page.headers["Cache-Control"] == "no-store"
    for _ in range(3):                                                   # a mail scanner following the link
        httpx.get(f"{base}/unsubscribe", params={"token": t})
    assert db.list_unsubscribed() == []                                  # a GET never unsubscribes
    done = httpx.post(f"{base}/unsubscribe", data={"token": t})          # the button
    assert done.status_code == 200 and "You are unsubscribed" in done.text and HOSTILE not in done.text
    assert db.is_unsubscribed("ana@shop.example", HOSTILE)
    assert [(u.profile, u.source) for u in db.list_unsubscribed()] == [(HOSTILE, "page")]
    again = httpx.post(f"{base}/unsubscribe", data={"token": t})
    assert again.status_code == 200 and "already" in again.text


def test_an_all_reports_token_stops_every_report(base, app_db):
    page = httpx.get(f"{base}/unsubscribe", params={"token": token(profile="*")})
    assert "every HitCraft email report" in page.text
    assert httpx.post(f"{base}/unsubscribe", data={"token": token(profile="*")}).status_code == 200
    db = AppDB(app_db)
    assert db.is_unsubscribed("ana@shop.example", "daily") and db.is_unsubscribed("ana@shop.example", "weekly")
