"""Unsubscribe tokens, the secret key that signs them, and the SQLite store of who opted out.

Why: an unsubscribe link must work without a login for exactly one address, must not be forgeable or
reusable with another address, and must keep working after a restart (the key is generated once and
reused, never regenerated behind the operator's back). The store is shared by the API process and the
pipeline, so it is tested from real separate processes, with real files, while another connection holds it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from hitcraft_assets.delivery.unsubscribe import (
    ALL_REPORTS,
    AppDB,
    SecretKeyError,
    TokenError,
    make_token,
    one_click_url,
    secret_key,
    unsubscribe_url,
    verify_token,
)

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)


def run_python(code: str, *, env: dict | None = None) -> subprocess.Popen:
    """Start `code` in a fresh interpreter (another process, as the API would be)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 30) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


# -- tokens ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("profile", "email", "expected_email"), [
    ("daily", "ana@example.com", "ana@example.com"),
    ("Weekly Growth", "  Ana.Lopez@Example.COM ", "ana.lopez@example.com"),
    (ALL_REPORTS, "ops+alerts@hitcraft.test", "ops+alerts@hitcraft.test"),
    ("résumé mensuel", "zoë@example.com", "zoë@example.com"),
])
def test_a_token_round_trips(profile, email, expected_email):
    token = make_token(KEY, profile, email, issued=NOW - timedelta(days=3))
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert verify_token(KEY, token, now=NOW) == (profile, expected_email)
    assert verify_token(KEY, token) == (profile, expected_email)  # against the real clock too


def test_the_same_inputs_give_the_same_token_and_emails_compare_case_insensitively():
    a = make_token(KEY, "daily", "Ana@Example.com", issued=NOW)
    assert a == make_token(KEY, "daily", "ana@example.com", issued=NOW)
    assert a != make_token(KEY, "weekly", "ana@example.com", issued=NOW)


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1:]


def test_a_tampered_token_fails_with_token_signature():
    token = make_token(KEY, "daily", "ana@example.com", issued=NOW)
    payload, sig = token.split(".")
    other = make_token(KEY, "daily", "boss@example.com", issued=NOW)
    forged_payload = base64.urlsafe_b64encode(
        json.dumps(["daily", "boss@example.com", int(NOW.timestamp())], separators=(",", ":")).encode()
    ).rstrip(b"=").decode()
    cases = [
        _flip(payload, 3) + "." + sig,                  # payload edited
        payload + "." + _flip(sig, 5),                  # signature edited
        other.split(".")[0] + "." + sig,                # someone else's address under this signature
        forged_payload + "." + sig,                     # a payload written by hand
        make_token(OTHER_KEY, "daily", "ana@example.com", issued=NOW),  # another installation's key
    ]
    for bad in cases:
        with pytest.raises(TokenError) as err:
            verify_token(KEY, bad, now=NOW)
        assert err.value.code == "TOKEN_SIGNATURE", bad


def test_a_signature_for_another_purpose_does_not_pass():
    """The key also signs session cookies: an HMAC of the bare payload (no purpose label) is refused."""
    payload = make_token(KEY, "daily", "ana@example.com", issued=NOW).split(".")[0]
    bare = base64.urlsafe_b64encode(hmac.new(KEY, payload.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
    with pytest.raises(TokenError) as err:
        verify_token(KEY, f"{payload}.{bare}", now=NOW)
    assert err.value.code == "TOKEN_SIGNATURE"


@pytest.mark.parametrize("bad", ["", "abc", "a.b.c", "!!!.???", "a b.c", "x" * 5000, None])
def test_a_malformed_token_fails_with_token_malformed(bad):
    with pytest.raises(TokenError) as err:
        verify_token(KEY, bad, now=NOW)
    assert err.value.code == "TOKEN_MALFORMED"
    assert str(err.value).startswith("[TOKEN_MALFORMED] ")


def test_a_signed_payload_of_the_wrong_shape_is_malformed():
    payload = base64.urlsafe_b64encode(b'{"email":"ana@example.com"}').rstrip(b"=").decode()
    sig = hmac.new(KEY, b"hitcraft:unsubscribe:v1\n" + payload.encode(), hashlib.sha256).digest()
    token = f"{payload}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"
    with pytest.raises(TokenError) as err:
        verify_token(KEY, token, now=NOW)
    assert err.value.code == "TOKEN_MALFORMED"


@pytest.mark.parametrize(("age_days", "max_age_days", "expired"), [
    (364, 365, False), (366, 365, True), (10, 5, True), (4, 5, False),
])
def test_tokens_expire(age_days, max_age_days, expired):
    token = make_token(KEY, "daily", "ana@example.com", issued=NOW - timedelta(days=age_days))
    if not expired:
        assert verify_token(KEY, token, max_age_days=max_age_days, now=NOW) == ("daily", "ana@example.com")
        return
    with pytest.raises(TokenError) as err:
        verify_token(KEY, token, max_age_days=max_age_days, now=NOW)
    assert err.value.code == "TOKEN_EXPIRED" and f"{max_age_days} days" in err.value.message


@pytest.mark.parametrize(("call", "error"), [
    (lambda: make_token(b"short", "daily", "ana@example.com"), SecretKeyError),
    (lambda: make_token(KEY, "daily", "not-an-address"), ValueError),
    (lambda: make_token(KEY, " ", "ana@example.com"), ValueError),
    (lambda: make_token(KEY, "daily", "ana@example.com", issued=datetime(2026, 1, 1)), ValueError),
])
def test_make_token_refuses_bad_input(call, error):
    with pytest.raises(error):
        call()


def test_unsubscribe_urls_carry_the_token():
    token = make_token(KEY, "daily", "ana@example.com", issued=NOW)
    page = unsubscribe_url("https://analytics.hitcraft.test/", token)
    assert page.startswith("https://analytics.hitcraft.test/unsubscribe?token=")
    assert parse_qs(urlsplit(page).query) == {"token": [token]}
    click = one_click_url("http://127.0.0.1:8000", token)
    assert click == f"http://127.0.0.1:8000/v1/unsubscribe?token={token}"
    assert verify_token(KEY, parse_qs(urlsplit(click).query)["token"][0], now=NOW) == ("daily", "ana@example.com")
    with pytest.raises(ValueError):
        unsubscribe_url("analytics.hitcraft.test", token)


# -- the secret key -------------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HITCRAFT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("HITCRAFT_SECRET_KEY", raising=False)
    monkeypatch.delenv("HITCRAFT_APP_DB", raising=False)
    return tmp_path / "data"


def test_the_generated_key_is_created_once_with_mode_0600_and_reused(data_dir):
    key = secret_key()
    path = data_dir / "secret_key"
    assert len(key) == 32 and path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.stat()
    assert secret_key() == key
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in data_dir.iterdir()) == ["secret_key"]  # no temporary file left
    # another process reads the same key: tokens made here verify there
    token = make_token(key, "daily", "ana@example.com")
    out = finish(run_python(f"""
        from hitcraft_assets.delivery.unsubscribe import secret_key, verify_token
        print(verify_token(secret_key(), {token!r}))
    """))
    assert out.strip() == "('daily', 'ana@example.com')"


def test_processes_racing_to_create_the_key_agree_on_one(data_dir):
    procs = [run_python("""
        from hitcraft_assets.delivery.unsubscribe import secret_key
        print(secret_key().hex())
    """) for _ in range(4)]
    keys = {finish(p).strip() for p in procs}
    assert len(keys) == 1 and keys == {(data_dir / "secret_key").read_bytes().hex()}
    assert sorted(p.name for p in data_dir.iterdir()) == ["secret_key"]


def test_the_env_key_is_used_as_text_and_nothing_is_written(data_dir, monkeypatch):
    monkeypatch.setenv("HITCRAFT_SECRET_KEY", "correct horse battery staple")
    assert secret_key() == b"correct horse battery staple"
    assert not (data_dir / "secret_key").exists()


def test_a_short_env_key_fails_with_secret_key_short(data_dir, monkeypatch):
    monkeypatch.setenv("HITCRAFT_SECRET_KEY", "too-short")
    with pytest.raises(SecretKeyError) as err:
        secret_key()
    assert err.value.code == "SECRET_KEY_SHORT" and "16" in err.value.message
    assert "too-short" not in str(err.value)


def test_a_damaged_key_file_is_reported_not_replaced(data_dir):
    data_dir.mkdir(parents=True)
    (data_dir / "secret_key").write_bytes(b"abc")
    with pytest.raises(SecretKeyError) as err:
        secret_key()
    assert err.value.code == "SECRET_KEY_FILE"
    assert (data_dir / "secret_key").read_bytes() == b"abc"


# -- the store ------------------------------------------------------------------------------------


def test_is_unsubscribed_honours_the_profile_and_star(tmp_path):
    db = AppDB(tmp_path / "app.sqlite")
    assert not db.is_unsubscribed("ana@example.com", "daily")
    assert db.unsubscribe("Ana@Example.com", "daily", "one-click") is True
    assert db.unsubscribe("ana@example.com", "daily", "link") is False  # already recorded: the first is kept
    assert db.is_unsubscribed("ANA@example.com", "daily")
    assert not db.is_unsubscribed("ana@example.com", "weekly")
    db.unsubscribe("bob@example.com", ALL_REPORTS, "api")
    assert db.is_unsubscribed("bob@example.com", "daily") and db.is_unsubscribed("bob@example.com", "weekly")
    rows = db.list_unsubscribed()
    assert [(r.email, r.profile, r.source) for r in rows] == [
        ("ana@example.com", "daily", "one-click"), ("bob@example.com", "*", "api")]
    assert all(r.unsubscribed_at.tzinfo is not None for r in rows)


def test_resubscribe(tmp_path):
    db = AppDB(tmp_path / "app.sqlite")
    for profile in ("daily", "weekly", ALL_REPORTS):
        db.unsubscribe("ana@example.com", profile, "link")
    assert db.resubscribe("ana@example.com", "daily") == 1
    assert db.is_unsubscribed("ana@example.com", "daily")  # the '*' row still stops every report
    assert db.resubscribe("Ana@example.com", ALL_REPORTS) == 2  # '*' clears every row of the address
    assert db.list_unsubscribed() == [] and not db.is_unsubscribed("ana@example.com", "weekly")
    assert db.resubscribe("ana@example.com", "daily") == 0


def test_the_default_path_comes_from_the_environment_when_called(data_dir, monkeypatch, tmp_path):
    assert AppDB().path == data_dir / "app.sqlite"
    monkeypatch.setenv("HITCRAFT_APP_DB", str(tmp_path / "elsewhere" / "state.sqlite"))
    db = AppDB()
    db.unsubscribe("ana@example.com", "daily", "cli")
    assert db.path == tmp_path / "elsewhere" / "state.sqlite" and db.path.exists()
    with sqlite3.connect(db.path) as conn:
        assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"


_WRITE_FROM_ANOTHER_PROCESS = """
    import time
    from hitcraft_assets.delivery.unsubscribe import AppDB
    db = AppDB({path!r})
    print("ready", flush=True)
    t = time.monotonic()
    db.unsubscribe({email!r}, {profile!r}, "api")
    print(f"{{time.monotonic() - t:.3f}}", flush=True)
"""


def test_another_process_writes_while_this_one_reads(tmp_path):
    path = tmp_path / "app.sqlite"
    db = AppDB(path)
    db.unsubscribe("ana@example.com", "daily", "link")
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("begin")
        assert reader.execute("select count(*) from unsubscribes").fetchone()[0] == 1  # a read snapshot is open
        finish(run_python(_WRITE_FROM_ANOTHER_PROCESS.format(path=str(path), email="bob@example.com", profile="*")))
        assert reader.execute("select count(*) from unsubscribes").fetchone()[0] == 1  # still its snapshot
        reader.execute("commit")
        assert reader.execute("select count(*) from unsubscribes").fetchone()[0] == 2
    finally:
        reader.close()
    assert db.is_unsubscribed("bob@example.com", "weekly")


def test_a_second_writer_waits_for_the_first_instead_of_failing(tmp_path):
    path = tmp_path / "app.sqlite"
    AppDB(path).unsubscribe("ana@example.com", "daily", "link")
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("begin immediate")  # this process holds the write lock
        holder.execute("insert into unsubscribes values (?, ?, ?, ?)",
                       ("carol@example.com", "daily", "2026-12-01T00:00:00+00:00", "x"))
        proc = run_python(_WRITE_FROM_ANOTHER_PROCESS.format(path=str(path), email="bob@example.com", profile="daily"))
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.4)
        holder.execute("commit")
    finally:
        holder.close()
    waited = float(finish(proc).strip())
    assert waited >= 0.2  # it was blocked by the lock, then wrote
    assert {r.email for r in AppDB(path).list_unsubscribed()} == {"ana@example.com", "bob@example.com",
                                                                   "carol@example.com"}


def test_processes_using_a_new_database_at_once(tmp_path):
    path = tmp_path / "fresh" / "app.sqlite"
    procs = [run_python(_WRITE_FROM_ANOTHER_PROCESS.format(path=str(path), email=f"u{i}@example.com",
                                                           profile="daily")) for i in range(4)]
    for p in procs:
        finish(p)
    assert sorted(r.email for r in AppDB(path).list_unsubscribed()) == [f"u{i}@example.com" for i in range(4)]
