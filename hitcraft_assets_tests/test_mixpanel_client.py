"""Tests for the Mixpanel client resource, against a real local HTTP server (fake_mixpanel.py).

Why this exists: the export is where the established extractors lose data -- a stream cut mid-body or
ending in ``terminated early`` stored as if complete, 429s not retried, a timezone error reported as a
mystery, credentials in tracebacks, rate limits blown by parallel runs. Each test here pins one of
those behaviours down over real sockets, real gzip and real processes; nothing of ours is mocked.
"""

import base64
import gzip
import hashlib
import json
import logging
import multiprocessing
import random
import socket
import subprocess
import threading
import time
import traceback
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from hitcraft_assets.ingestion.mixpanel import (
    ExportResult,
    MixpanelConfigError,
    MixpanelError,
    MixpanelRequestError,
    MixpanelResource,
    MixpanelRetryExhausted,
    RateLimits,
    backoff_delay,
    parse_retry_after,
    safe_url,
)
from hitcraft_assets.ingestion.ratelimit import RateLimiter, Window
from hitcraft_assets_tests.fake_mixpanel import (
    CutBody,
    Delay,
    FakeMixpanel,
    Ok,
    Status,
    TerminatedEarly,
    TruncatedGzip,
)

SA_USER = "sa.hitcraft.test"
SA_SECRET = "sa-secret-9f8e7d6c5b4a"
LEGACY_SECRET = "legacy-secret-0a1b2c3d"
PROJECT = "12345"
DAY = date(2025, 1, 2)
SECRET_FORMS = (
    SA_SECRET,
    LEGACY_SECRET,
    base64.b64encode(f"{SA_USER}:{SA_SECRET}".encode()).decode(),
    base64.b64encode(f"{LEGACY_SECRET}:".encode()).decode(),
)


def day_lines(day: date, n: int = 50) -> list[str]:
    """Realistic export lines for a day, plus the oddities a real export carries."""
    base_ms = int(time.mktime(day.timetuple())) * 1000
    lines = [
        json.dumps(
            {
                "event": "song_generated" if i % 3 else "$mp_web_page_view",
                "properties": {
                    "time": base_ms + i * 1000,
                    "distinct_id": f"user-{i % 7}",
                    "$insert_id": f"ins-{day.isoformat()}-{i}",
                    "title": "naïve café ♪",
                    "mp_processing_time_ms": base_ms + i * 1000 + 500,
                },
            },
            ensure_ascii=False,
        )
        for i in range(n)
    ]
    lines.insert(3, '{"event": "broken", "properties": {"time": 17')  # malformed, kept verbatim
    lines.insert(4, "")  # an empty line
    return lines


def jsonl(lines: list[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


@pytest.fixture
def fake():
    with FakeMixpanel(
        events={DAY: day_lines(DAY), date(2025, 1, 3): day_lines(date(2025, 1, 3))},
        service_account=(SA_USER, SA_SECRET),
        project_id=PROJECT,
    ) as server:
        yield server


@pytest.fixture
def make_resource(tmp_path: Path):
    def make(fake: FakeMixpanel | None = None, **overrides) -> MixpanelResource:
        settings = dict(
            service_account_username=SA_USER,
            service_account_secret=SA_SECRET,
            project_id=PROJECT,
            connect_timeout_s=2.0,
            read_timeout_s=5.0,
            max_attempts=4,
            backoff_base_s=0.01,
            backoff_max_s=0.05,
            rate_limit_dir=str(tmp_path / "ratelimit"),
            # roomy, so retries are not slowed by Mixpanel's real 3/s; the limiter has its own tests
            export_limits=RateLimits(windows=[[1000, 1]], concurrency=100),
        )
        if fake is not None:
            settings.update(export_url=fake.export_url, api_url=fake.api_url)
        settings.update(overrides)
        return MixpanelResource(**settings)

    return make


# -- the happy path -------------------------------------------------------------------------------


def test_gzip_body_is_decoded_and_written_exactly(fake, make_resource, tmp_path):
    dest = tmp_path / "events" / "2025-01-02.jsonl"
    result = make_resource(fake).export_day(DAY, dest)

    expected = jsonl(day_lines(DAY))
    assert dest.read_bytes() == expected
    assert result == ExportResult(
        day=DAY,
        path=dest,
        lines=len(day_lines(DAY)),
        bytes_read=len(gzip.compress(expected)),
        bytes_written=len(expected),
        attempts=1,
        gzip=True,
        sha256=hashlib.sha256(expected).hexdigest(),   # of the decoded body, as written
    )
    assert result.bytes_read < result.bytes_written
    assert not dest.with_name(dest.name + ".part").exists()

    (req,) = fake.export_requests()
    assert req.params == {
        "project_id": PROJECT,
        "from_date": "2025-01-02",
        "to_date": "2025-01-02",
        "time_in_ms": "true",
    }
    assert req.headers["Accept-Encoding"] == "gzip"
    assert req.headers["Accept"] == "text/plain"
    assert req.auth == (SA_USER, SA_SECRET)


def test_uncompressed_body_when_server_does_not_gzip(make_resource, tmp_path):
    with FakeMixpanel(events={DAY: ['{"event":"a"}']}, gzip_min_bytes=1400) as fake:
        dest = tmp_path / "d.jsonl"
        result = make_resource(fake).export_day(DAY, dest)
    assert dest.read_bytes() == b'{"event":"a"}\n'
    assert (result.gzip, result.lines, result.bytes_read, result.bytes_written) == (False, 1, 14, 14)


def test_empty_day_writes_empty_file(make_resource, tmp_path):
    with FakeMixpanel() as fake:
        result = make_resource(fake).export_day(DAY, tmp_path / "empty.jsonl")
    assert (tmp_path / "empty.jsonl").read_bytes() == b""
    assert result.lines == 0


def test_legacy_api_secret_is_basic_username_with_empty_password(make_resource, tmp_path):
    with FakeMixpanel(events={DAY: ['{"event":"a"}']}, api_secret=LEGACY_SECRET) as fake:
        resource = make_resource(
            fake, service_account_username=None, service_account_secret=None, project_id=None,
            api_secret=LEGACY_SECRET,
        )
        resource.export_day(DAY, tmp_path / "d.jsonl")
        (req,) = fake.export_requests()
    assert req.auth == (LEGACY_SECRET, "")
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(f"{LEGACY_SECRET}:".encode()).decode()
    assert "project_id" not in req.params
    assert resource.describe()["auth_mode"] == "api_secret"


# -- retries -------------------------------------------------------------------------------------


def test_429_waits_at_least_retry_after_then_succeeds(fake, make_resource, tmp_path):
    fake.script(
        DAY,
        [Status(429, body='{"error": "Query rate limit exceeded for project_id: 12345. 61/60 queries"}',
                headers={"Retry-After": "1"})],
    )
    dest = tmp_path / "d.jsonl"
    result = make_resource(fake).export_day(DAY, dest)

    first, second = fake.export_requests(DAY)
    assert (first.status, second.status) == (429, 200)
    assert second.started - first.finished >= 1.0
    assert result.attempts == 2
    assert dest.read_bytes() == jsonl(day_lines(DAY))


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(Status(500), id="500"),
        pytest.param(Status(503, body="upstream unavailable"), id="503"),
        pytest.param(CutBody(after_bytes=40), id="cut-content-length"),
        pytest.param(CutBody(after_bytes=40, chunked=True), id="cut-chunked"),
        pytest.param(CutBody(after_bytes=40, reset=True), id="connection-reset"),
        pytest.param(TruncatedGzip(), id="gzip-truncated"),
        pytest.param(TerminatedEarly(keep_lines=5), id="terminated-early"),
        pytest.param(TerminatedEarly(keep_lines=5, marker="export terminated early"), id="export-terminated-early"),
        pytest.param(Delay(1.5), id="read-timeout"),
    ],
)
def test_retryable_failure_then_success_stores_the_whole_day_once(fake, make_resource, tmp_path, failure):
    fake.script(DAY, [failure])
    dest = tmp_path / "2025-01-02.jsonl"
    part = dest.with_name(dest.name + ".part")
    seen_during_backoff = []

    def sleep(seconds: float) -> None:
        # between attempts nothing of the failed body may be visible, not even the .part
        seen_during_backoff.append((dest.exists(), part.exists()))
        time.sleep(seconds)

    resource = make_resource(fake, read_timeout_s=0.5)
    result = resource.get_client(sleep=sleep).export_day(DAY, dest)

    assert seen_during_backoff == [(False, False)]
    assert result.attempts == 2
    assert dest.read_bytes() == jsonl(day_lines(DAY))
    assert result.lines == len(day_lines(DAY))
    assert not part.exists()
    assert [r.params["from_date"] for r in fake.export_requests()] == ["2025-01-02"] * 2


def test_retries_exhausted_leaves_no_file(fake, make_resource, tmp_path):
    fake.script(DAY, [CutBody(after_bytes=30), Status(502), TerminatedEarly(), CutBody(after_bytes=10, chunked=True)])
    dest = tmp_path / "2025-01-02.jsonl"
    with pytest.raises(MixpanelRetryExhausted) as info:
        make_resource(fake, max_attempts=4).export_day(DAY, dest)

    assert info.value.code == "MIXPANEL_RETRY_EXHAUSTED"
    assert "4 attempts" in str(info.value)
    assert "body cut" in str(info.value)  # the last problem is named
    assert len(fake.export_requests()) == 4
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "ratelimit"]


def test_connection_refused_is_retried_then_exhausted(make_resource, tmp_path):
    with FakeMixpanel() as gone:
        url = gone.export_url  # the port is closed once the server stops
    with pytest.raises(MixpanelRetryExhausted) as info:
        make_resource(export_url=url, max_attempts=2).export_day(DAY, tmp_path / "d.jsonl")
    assert "ConnectionError" in str(info.value)
    assert not (tmp_path / "d.jsonl").exists()


def test_backoff_sleeps_are_full_jitter_and_bounded(fake, make_resource, tmp_path):
    fake.script(DAY, [Status(500), Status(500), Status(500)])
    sleeps: list[float] = []
    resource = make_resource(fake, backoff_base_s=0.01, backoff_max_s=0.03, max_attempts=4)
    resource.get_client(sleep=sleeps.append, rng=random.Random(7)).export_day(DAY, tmp_path / "d.jsonl")
    assert len(sleeps) == 3
    for n, slept in enumerate(sleeps):
        assert 0 <= slept <= min(0.03, 0.01 * 2**n)


@pytest.mark.parametrize("retry_index", [0, 1, 3, 8, 200])
def test_backoff_delay_is_uniform_below_the_capped_exponential(retry_index):
    rng = random.Random(retry_index)
    ceiling = min(300.0, 2.0 * 2**retry_index)
    samples = [backoff_delay(retry_index, 2.0, 300.0, rng) for _ in range(2000)]
    assert all(0 <= s <= ceiling for s in samples)
    assert max(samples) > 0.9 * ceiling and min(samples) < 0.1 * ceiling  # really jittered
    assert all(backoff_delay(retry_index, 2.0, 300.0, rng, retry_after_s=400.0) >= 400.0 for _ in range(50))


@pytest.mark.parametrize(
    ("header", "expected"),
    [("1", 1.0), (" 2.5 ", 2.5), ("-3", 0.0), ("soon", None), (None, None), ("99999", 3600.0),
     ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0)],
)
def test_parse_retry_after(header, expected):
    now = 1445412480.0  # 2015-10-21 07:28:00 UTC
    assert parse_retry_after(header, now=now) == expected


# -- errors that must not be retried ---------------------------------------------------------------


def test_to_date_later_than_today_explains_the_project_timezone(make_resource, tmp_path):
    with FakeMixpanel(events={DAY: ["{}"]}, today=date(2025, 1, 1)) as fake:
        with pytest.raises(MixpanelRequestError) as info:
            make_resource(fake).export_day(DAY, tmp_path / "d.jsonl")
        assert len(fake.export_requests()) == 1
    err = info.value
    assert (err.code, err.status) == ("MIXPANEL_TIMEZONE", 400)
    assert "to_date cannot be later than today" in str(err)
    assert "timezone" in str(err) and "MIXPANEL_PROJECT_TIMEZONE" in str(err)
    assert not (tmp_path / "d.jsonl").exists()


@pytest.mark.parametrize(
    ("fake_kwargs", "resource_kwargs", "script", "code", "status", "words"),
    [
        pytest.param({"auth_failure_status": 400}, {"service_account_secret": "wrong-secret-1234"}, [],
                     "MIXPANEL_AUTH", 400, ["Unable to authenticate request", "credentials", "expired"], id="400-auth"),
        pytest.param({}, {"service_account_secret": "wrong-secret-1234"}, [],
                     "MIXPANEL_AUTH", 401, ["credentials", "service account", PROJECT], id="401"),
        pytest.param({}, {}, [Status(402, '{"error": "Your current plan does not allow API calls. Payment is required"}')],
                     "MIXPANEL_PAYMENT_REQUIRED", 402, ["plan does not allow API calls"], id="402"),
        pytest.param({}, {"project_id": "999"}, [],
                     "MIXPANEL_FORBIDDEN", 403, ["lacks access", "999", "classified data"], id="403"),
        pytest.param({}, {}, [Status(400, "'limit' must be at most 100000")],
                     "MIXPANEL_BAD_REQUEST", 400, ["limit"], id="400-other"),
    ],
)
def test_client_errors_fail_at_once_naming_the_cause(
    make_resource, tmp_path, fake_kwargs, resource_kwargs, script, code, status, words
):
    with FakeMixpanel(
        events={DAY: ["{}"]}, service_account=(SA_USER, SA_SECRET), project_id=PROJECT, **fake_kwargs
    ) as fake:
        fake.script(DAY, script)
        with pytest.raises(MixpanelRequestError) as info:
            make_resource(fake, **resource_kwargs).export_day(DAY, tmp_path / "d.jsonl")
        assert len(fake.export_requests()) == 1
    assert (info.value.code, info.value.status) == (code, status)
    for word in words:
        assert word in str(info.value)
    assert not (tmp_path / "d.jsonl").exists()


def test_404_points_at_region_and_urls(fake, make_resource, tmp_path):
    with pytest.raises(MixpanelRequestError) as info:
        make_resource(export_url=fake.base_url + "/api/2.0/nope").export_day(DAY, tmp_path / "d.jsonl")
    assert info.value.code == "MIXPANEL_NOT_FOUND"
    assert "region" in str(info.value)


def _exception_texts(exc: BaseException) -> str:
    """Everything a log, a traceback or Dagster's error display could render from ``exc``."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        texts += [str(exc), repr(exc), repr(vars(exc))]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(texts)


@pytest.mark.parametrize(
    "script",
    [
        pytest.param([Status(401, f"bad credentials {SA_SECRET}")], id="401-echoing-the-secret"),
        pytest.param([Status(500, f"oops {SA_SECRET}")] * 2, id="exhausted-5xx-echoing-the-secret"),
        pytest.param([CutBody(after_bytes=5, reset=True)] * 2, id="exhausted-resets"),
        pytest.param([Delay(1.0)] * 2, id="exhausted-timeouts"),
        pytest.param([Status(400, "to_date cannot be later than today")], id="timezone"),
    ],
)
def test_no_secret_in_errors_causes_or_logs(fake, make_resource, tmp_path, caplog, script):
    fake.script(DAY, script)
    log = logging.getLogger("hitcraft.test.mixpanel")
    caplog.set_level(logging.DEBUG)  # urllib3's debug logging included
    with pytest.raises(MixpanelError) as info:
        make_resource(fake, max_attempts=2, read_timeout_s=0.3).export_day(DAY, tmp_path / "d.jsonl", log=log)

    err = info.value
    assert err.__cause__ is None and err.__context__ is None
    rendered = _exception_texts(err) + "\n" + caplog.text
    assert "mixpanel export of 2025-01-02" in caplog.text  # the attempts were logged
    for secret in SECRET_FORMS:
        assert secret not in rendered
    assert "Authorization" not in rendered
    # and the secret really was on the wire
    assert fake.export_requests()[0].auth == (SA_USER, SA_SECRET)


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "export_host", "api_host"),
    [
        ("us", "data.mixpanel.com", "mixpanel.com"),
        ("eu", "data-eu.mixpanel.com", "eu.mixpanel.com"),
        ("in", "data-in.mixpanel.com", "in.mixpanel.com"),
        ("EU", "data-eu.mixpanel.com", "eu.mixpanel.com"),
    ],
)
def test_region_resolves_hosts_without_a_request(region, export_host, api_host):
    info = MixpanelResource(
        region=region, project_id=PROJECT, service_account_username=SA_USER, service_account_secret=SA_SECRET
    ).describe()
    assert info == {
        "region": region.lower(),
        "host": export_host,
        "api_host": api_host,
        "export_url": f"https://{export_host}/api/2.0/export",
        "engage_url": f"https://{api_host}/api/query/engage",
        "auth_mode": "service_account",
        "project_id": PROJECT,
    }
    assert SA_SECRET not in repr(info)


def test_unknown_region_is_a_config_error():
    with pytest.raises(MixpanelConfigError) as info:
        MixpanelResource(region="apac").describe()
    assert info.value.code == "MIXPANEL_CONFIG"
    assert "apac" in str(info.value)


@pytest.mark.parametrize(
    ("settings", "missing"),
    [
        ({}, "no Mixpanel credentials"),
        ({"service_account_username": SA_USER, "service_account_secret": SA_SECRET}, "project_id"),
        ({"service_account_username": SA_USER, "project_id": PROJECT}, "service_account_secret"),
    ],
)
def test_missing_credentials_fail_before_any_request(fake, tmp_path, settings, missing):
    resource = MixpanelResource(export_url=fake.export_url, rate_limit_dir=str(tmp_path), **settings)
    with pytest.raises(MixpanelConfigError) as info:
        resource.export_day(DAY, tmp_path / "d.jsonl")
    assert missing in str(info.value)
    assert fake.requests == []


def test_resource_works_inside_dagster_with_env_var_secret(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_MIXPANEL_SECRET", SA_SECRET)
    dest = tmp_path / "dagster.jsonl"

    @dg.asset
    def one_day(mixpanel: MixpanelResource) -> dg.MaterializeResult:
        result = mixpanel.export_day(DAY, dest)
        return dg.MaterializeResult(metadata={"lines": result.lines, **mixpanel.describe()})

    resource = MixpanelResource(
        service_account_username=SA_USER,
        service_account_secret=dg.EnvVar("TEST_MIXPANEL_SECRET"),
        project_id=PROJECT,
        export_url=fake.export_url,
        rate_limit_dir=str(tmp_path / "rl"),
        export_limits=RateLimits(windows=[[10, 1]], concurrency=2),
    )
    # an explicit instance: a schedule context built elsewhere in the session can leave Dagster's
    # current defs-state storage pointing at a disposed instance; entering ours replaces it
    with dg.instance_for_test() as instance:
        run = dg.materialize([one_day], resources={"mixpanel": resource}, instance=instance)
    assert run.success
    (mat,) = run.asset_materializations_for_node("one_day")
    assert mat.metadata["lines"].value == len(day_lines(DAY))
    assert mat.metadata["auth_mode"].value == "service_account"
    assert SA_SECRET not in repr(mat.metadata)
    assert dest.read_bytes() == jsonl(day_lines(DAY))


# -- engage --------------------------------------------------------------------------------------


def profile(i: int) -> dict:
    return {"$distinct_id": f"user-{i}", "$properties": {"$email": f"u{i}@example.com", "$last_seen": "2025-01-02T10:00:00"}}


def test_engage_pages_with_session_id_across_three_pages(make_resource, tmp_path):
    profiles = [profile(i) for i in range(5)]
    with FakeMixpanel(
        profiles=profiles, page_size=2, service_account=(SA_USER, SA_SECRET), project_id=PROJECT
    ) as fake:
        fake.script_engage([Ok(), Status(503)])  # page 1 fails once and is retried alone
        dest = tmp_path / "profiles.jsonl"
        count = make_resource(fake).export_profiles(dest)
        reqs = fake.engage_requests()

    assert count == 5
    assert [json.loads(line) for line in dest.read_text().splitlines()] == profiles
    assert [r.status for r in reqs] == [200, 503, 200, 200]
    first, _, second, third = reqs
    assert first.method == "POST" and first.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "page" not in first.form and "session_id" not in first.form
    session_id = second.form["session_id"]
    assert session_id and (second.form["page"], third.form["page"]) == ("1", "2")
    assert third.form["session_id"] == session_id
    assert all(r.params == {"project_id": PROJECT} and r.auth == (SA_USER, SA_SECRET) for r in reqs)


def test_engage_stops_after_an_empty_page_when_total_is_a_multiple(make_resource, tmp_path):
    with FakeMixpanel(profiles=[profile(i) for i in range(4)], page_size=2) as fake:
        count = make_resource(fake).export_profiles(tmp_path / "p.jsonl")
        assert [r.form.get("page") for r in fake.engage_requests()] == [None, "1", "2"]
    assert count == 4


def test_engage_errors_are_json_and_fail_at_once(make_resource, tmp_path):
    with FakeMixpanel(profiles=[profile(1)]) as fake:
        fake.script_engage([Status(402, '{"error": "Your current plan does not allow API calls. Payment is required"}')])
        with pytest.raises(MixpanelRequestError) as info:
            make_resource(fake).export_profiles(tmp_path / "p.jsonl")
        assert len(fake.engage_requests()) == 1
    assert info.value.code == "MIXPANEL_PAYMENT_REQUIRED"
    assert "Payment is required" in str(info.value)
    assert not (tmp_path / "p.jsonl").exists() and not (tmp_path / "p.jsonl.part").exists()


# -- rate limits ---------------------------------------------------------------------------------


def _export_days_in_a_process(export_url: str, rate_limit_dir: str, days: list[date], out_dir: str) -> list[int]:
    """Runs in a separate (spawned) process: export ``days`` through the shared limiter."""
    resource = MixpanelResource(
        service_account_username=SA_USER,
        service_account_secret=SA_SECRET,
        project_id=PROJECT,
        export_url=export_url,
        rate_limit_dir=rate_limit_dir,
        export_limits=RateLimits(windows=[[2, 0.5]], concurrency=100),
        backoff_base_s=0.01,
    )
    return [resource.export_day(d, Path(out_dir) / f"{d}.jsonl").lines for d in days]


def test_rate_limit_holds_across_processes(tmp_path):
    days = [date(2025, 1, d) for d in range(1, 7)]
    with FakeMixpanel(
        events={d: [f'{{"event":"e{d.day}"}}'] for d in days},
        service_account=(SA_USER, SA_SECRET),
        project_id=PROJECT,
    ) as fake:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(2) as pool:
            t0 = time.time()
            results = pool.starmap(
                _export_days_in_a_process,
                [(fake.export_url, str(tmp_path / "rl"), days[:3], str(tmp_path)),
                 (fake.export_url, str(tmp_path / "rl"), days[3:], str(tmp_path))],
            )
            elapsed = time.time() - t0
        starts = sorted(r.started for r in fake.export_requests())

    assert results == [[1, 1, 1], [1, 1, 1]]  # every request blocked until allowed, none failed
    assert len(starts) == 6
    # no 0.5 s window holds a third request (50 ms slack for the hop from limiter to server, which
    # includes a fresh process's first TCP connect; without the limiter all six land within ~10 ms)
    for earlier, later in zip(starts, starts[2:]):
        assert later - earlier >= 0.5 - 0.05
    assert elapsed >= 1.0


def test_concurrency_slots_cap_requests_in_flight(fake, make_resource, tmp_path):
    fake.script(None, [Delay(0.15)] * 3)
    resource = make_resource(fake, export_limits=RateLimits(windows=[[100, 1]], concurrency=1))
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            resource.export_day(DAY, tmp_path / f"d{i}.jsonl")
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert fake.max_in_flight == 1
    assert len(fake.export_requests()) == 3


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_limiter_blocks_until_every_window_allows(tmp_path):
    clock = FakeClock()
    limiter = RateLimiter(
        tmp_path, "export-host-1", [Window(3, 1.0), Window(5, 60.0)], clock=clock, sleep=clock.sleep
    )
    starts = []
    for _ in range(7):
        limiter.acquire()
        starts.append(clock.now - 1_000_000.0)
    # 3 a second, then the 5-a-minute window makes the 6th wait until the first leaves it
    assert starts[:3] == [0.0, 0.0, 0.0]
    assert starts[3] == pytest.approx(1.001, abs=1e-6)
    assert starts[4] == pytest.approx(1.001, abs=1e-6)
    assert starts[5] == pytest.approx(60.001, abs=1e-6)
    assert starts[6] == pytest.approx(60.001, abs=1e-6)
    assert len(limiter.snapshot()["stamps"]) == 4  # those older than the longest window are pruned


def test_limiter_reclaims_slots_of_dead_processes(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    state = {"stamps": [], "slots": {"x": {"pid": dead.pid, "host": socket.gethostname(), "t": time.time()}}}
    limiter = RateLimiter(tmp_path, "query-host-1", [Window(60, 3600)], concurrency=1, poll_s=0.01)
    limiter.state_path.parent.mkdir(parents=True, exist_ok=True)
    limiter.state_path.write_text(json.dumps(state))
    with limiter.slot() as waited:
        assert waited < 0.5
        assert len(limiter.snapshot()["slots"]) == 1
    assert limiter.snapshot()["slots"] == {}


def test_every_retry_passes_the_limiter(fake, make_resource, tmp_path):
    fake.script(DAY, [Status(500), Status(500)])
    resource = make_resource(fake, export_limits=RateLimits(windows=[[2, 0.4]], concurrency=1))
    t0 = time.time()
    result = resource.export_day(DAY, tmp_path / "d.jsonl")
    assert result.attempts == 3
    starts = [r.started for r in fake.export_requests()]
    assert starts[2] - starts[0] >= 0.4 - 0.05
    assert time.time() - t0 >= 0.4


# -- override URLs that carry credentials -----------------------------------------------------------


@pytest.mark.parametrize("url, shown", [
    ("https://proxy.example/api/2.0/export", "https://proxy.example/api/2.0/export"),
    ("https://bob:pa55word@proxy.example:8443/export?region=eu", "https://***@proxy.example:8443/export?region=eu"),
    ("https://proxy.example/export?token=t0k3n-abc&x=1", "https://proxy.example/export?token=***&x=1"),
    ("https://proxy.example/export?p=Zk2Jq9sL0vX7mN4bT8rW", "https://proxy.example/export?p=***"),
])
def test_safe_url_hides_userinfo_and_secret_looking_values(url, shown):
    assert safe_url(url) == shown


def test_an_override_url_with_credentials_never_reaches_logs_metadata_or_errors(fake, make_resource, tmp_path):
    fake.set_events(DAY, [json.dumps({"event": "a", "properties": {"time": 1, "distinct_id": "u"}})])
    base = fake.export_url.replace("http://", "http://proxyuser:proxy-pass-77@")
    resource = make_resource(fake, export_url=base + "?access_token=tok-SECRET-123456&project=1", max_attempts=2)
    records: list[str] = []
    log = logging.getLogger("test.mixpanel.override")
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    fake.script(DAY, [Status(500)])
    resource.export_day(DAY, tmp_path / "d.jsonl", log=log)
    described = json.dumps(resource.describe())
    fake.script(DAY, [Status(403)])
    with pytest.raises(MixpanelRequestError) as err:
        resource.export_day(DAY, tmp_path / "d.jsonl", log=log)
    text = "\n".join(records) + described + str(err.value)
    assert "GET http://***@127.0.0.1" in "\n".join(records)
    for secret in ("proxy-pass-77", "proxyuser", "tok-SECRET-123456"):
        assert secret not in text
