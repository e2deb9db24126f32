"""A real HTTP server on 127.0.0.1 that speaks Mixpanel's Raw Export and Engage wire formats.

Tests use it instead of mocking ``requests``, so the client's real socket, gzip, streaming and retry
paths run: a ``CutBody`` really closes the TCP connection mid-body, gzip really is gzip.

Quick use::

    from hitcraft_assets_tests.fake_mixpanel import FakeMixpanel, Status, CutBody, Ok

    with FakeMixpanel(
        events={"2025-01-02": ['{"event":"a","properties":{"time":1735776000000}}']},
        service_account=("sa.user", "sa-secret"),
        project_id="12345",
    ) as fake:
        fake.script("2025-01-02", [Status(429, headers={"Retry-After": "1"}), CutBody(after_bytes=10), Ok()])
        resource = MixpanelResource(
            service_account_username="sa.user", service_account_secret="sa-secret", project_id="12345",
            export_url=fake.export_url, api_url=fake.api_url, backoff_base_s=0.01,
            rate_limit_dir=str(tmp_path / "rl"),
        )
        resource.export_day(date(2025, 1, 2), tmp_path / "2025-01-02.jsonl")
        assert [r.status for r in fake.export_requests("2025-01-02")] == [429, 200, 200]

Endpoints:

- ``GET /api/2.0/export`` -- the lines configured for each day from ``from_date`` to ``to_date``, one per
  line, newline-terminated, sent exactly as given (malformed lines included). Gzip-compressed with
  ``Content-Encoding: gzip`` when the request's ``Accept-Encoding`` has gzip and the body has at least
  ``gzip_min_bytes`` bytes (Mixpanel's own threshold is 1400; the default here is 0 so gzip is always
  exercised). Missing/invalid dates -> 400; ``to_date`` after ``today`` (if set) -> 400
  ``to_date cannot be later than today``.
- ``POST /api/query/engage`` -- ``profiles`` in pages of ``page_size``, answering
  ``{"page", "page_size", "session_id", "status", "total", "results"}``; a page above 0 needs the
  ``session_id`` of the first answer (else 400 with a JSON ``error``).

Auth: when ``service_account`` and/or ``api_secret`` is given, every request must carry the matching
HTTP Basic credentials (``user:secret``, or ``api_secret:`` with an empty password); otherwise the
answer is ``auth_failure_status`` (401 ``Invalid credentials``, or 400 ``Unable to authenticate
request`` like Mixpanel sometimes does). A service account must also send ``project_id`` (missing ->
400, another project -> 403). With neither configured, any auth is accepted.

Scripts: ``script(day, [...])`` queues behaviours for export requests of that ``from_date`` (``day=None``:
any export request; a day's own script is used first); ``script_engage([...])`` for Engage. Each
request consumes one behaviour; when a script runs out, requests are served normally. Behaviours:
``Ok``, ``Status``, ``CutBody``, ``TruncatedGzip``, ``TerminatedEarly``, ``Delay``, ``Hold`` (a Delay that
lasts until the test sets its event: a download the test can keep in flight for as long as it needs).

Every request is recorded (``requests``, ``export_requests(day)``, ``engage_requests()``) with its
path, query params, headers (Authorization included), form body, decoded Basic credentials, start and
end times, the status sent and the behaviour used; ``max_in_flight`` is the peak of concurrent requests.
"""

import base64
import gzip
import json
import socket
import struct
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

EXPORT_PATH = "/api/2.0/export"
ENGAGE_PATH = "/api/query/engage"


# -- behaviours ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ok:
    """Serve normally; ``lines`` replaces the configured lines for this one answer."""

    lines: Sequence[str] | None = None


@dataclass(frozen=True)
class Status:
    """Answer ``status`` with ``body`` (default: the reason phrase; JSON ``{"error": ...}`` for Engage)."""

    status: int
    body: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CutBody:
    """HTTP 200, then only the first ``after_bytes`` of the (possibly gzip) body, then the connection closes.

    With ``chunked=False`` the headers announce the full Content-Length; with ``chunked=True`` the body
    is chunked and the terminating chunk never comes. ``reset=True`` closes with a TCP RST
    (connection reset by peer) instead of a FIN.
    """

    after_bytes: int
    chunked: bool = False
    reset: bool = False


@dataclass(frozen=True)
class TruncatedGzip:
    """HTTP 200 with a gzip body cut after ``keep_bytes`` (default: half), and a Content-Length that
    matches what is sent: the HTTP layer sees a complete response, only the gzip stream is short.
    Served as gzip even when the client did not ask for it."""

    keep_bytes: int | None = None


@dataclass(frozen=True)
class TerminatedEarly:
    """HTTP 200 with the first ``keep_lines`` lines of the day, then the line ``marker``."""

    keep_lines: int = 1
    marker: str = "terminated early"


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds`` before answering, then answer as ``then`` (default ``Ok()``)."""

    seconds: float
    then: Any = None


@dataclass(frozen=True)
class Hold:
    """Wait until ``release`` is set (at most ``timeout`` seconds), then answer as ``then`` (default ``Ok()``)."""

    release: threading.Event
    timeout: float = 300.0
    then: Any = None


Behaviour = Ok | Status | CutBody | TruncatedGzip | TerminatedEarly | Delay | Hold


@dataclass
class RecordedRequest:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str]
    auth: tuple[str, str] | None
    started: float
    finished: float | None = None
    status: int | None = None
    behaviour: str = ""

    @property
    def day(self) -> str | None:
        return self.params.get("from_date")


# -- the server ----------------------------------------------------------------------------------


class FakeMixpanel:
    """A threaded HTTP server on 127.0.0.1 (random port). Use as a context manager, or start()/close()."""

    def __init__(
        self,
        events: Mapping[str | date, Sequence[str]] | None = None,
        profiles: Sequence[Mapping[str, Any]] | None = None,
        *,
        service_account: tuple[str, str] | None = None,
        project_id: str | None = None,
        api_secret: str | None = None,
        auth_failure_status: int = 401,
        page_size: int = 1000,
        today: date | None = None,
        gzip_min_bytes: int = 0,
    ) -> None:
        if auth_failure_status not in (400, 401):
            raise ValueError("auth_failure_status must be 400 or 401")
        self.events: dict[str, list[str]] = {_day(k): list(v) for k, v in (events or {}).items()}
        self.profiles: list[dict[str, Any]] = [dict(p) for p in (profiles or [])]
        self.service_account = service_account
        self.project_id = None if project_id is None else str(project_id)
        self.api_secret = api_secret
        self.auth_failure_status = auth_failure_status
        self.page_size = page_size
        self.today = today
        self.gzip_min_bytes = gzip_min_bytes
        self._lock = threading.Lock()
        self._scripts: dict[str | None, deque[Behaviour]] = {}
        self._engage_script: deque[Behaviour] = deque()
        self._requests: list[RecordedRequest] = []
        self._sessions: set[str] = set()
        self._in_flight = 0
        self.max_in_flight = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "FakeMixpanel":
        server = _Server(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeMixpanel":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- configuration -----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeMixpanel is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def export_url(self) -> str:
        """For ``MixpanelResource.export_url``."""
        return self.base_url + EXPORT_PATH

    @property
    def api_url(self) -> str:
        """For ``MixpanelResource.api_url`` (Engage is ``api_url + "/engage"``)."""
        return self.base_url + "/api/query"

    def set_events(self, day: str | date, lines: Sequence[str]) -> None:
        with self._lock:
            self.events[_day(day)] = list(lines)

    def script(self, day: str | date | None, behaviours: Iterable[Behaviour]) -> None:
        """Queue behaviours for export requests whose ``from_date`` is ``day`` (None: any day)."""
        with self._lock:
            self._scripts.setdefault(None if day is None else _day(day), deque()).extend(behaviours)

    def script_engage(self, behaviours: Iterable[Behaviour]) -> None:
        with self._lock:
            self._engage_script.extend(behaviours)

    def pending(self, day: str | date | None = None) -> int:
        """Behaviours not yet consumed for ``day`` (None: the any-day script)."""
        with self._lock:
            return len(self._scripts.get(None if day is None else _day(day), ()))

    # -- inspection --------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def export_requests(self, day: str | date | None = None) -> list[RecordedRequest]:
        want = None if day is None else _day(day)
        return [
            r for r in self.requests if r.path == EXPORT_PATH and (want is None or r.day == want)
        ]

    def engage_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == ENGAGE_PATH]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()
            self.max_in_flight = 0

    # -- used by the handler -----------------------------------------------------------------

    def _next_behaviour(self, path: str, day: str | None) -> Behaviour:
        with self._lock:
            if path == ENGAGE_PATH:
                queue = self._engage_script
            else:
                queue = self._scripts.get(day) or self._scripts.get(None) or deque()
            return queue.popleft() if queue else Ok()

    def _record(self, rec: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(rec)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _done(self, rec: RecordedRequest, status: int) -> None:
        with self._lock:
            rec.finished = time.time()
            rec.status = status
            self._in_flight -= 1

    def _auth_problem(self, rec: RecordedRequest) -> tuple[int, str] | None:
        """None if the credentials are acceptable, else (status, error text)."""
        if self.service_account is None and self.api_secret is None:
            return None
        bad = (
            self.auth_failure_status,
            "Unable to authenticate request" if self.auth_failure_status == 400 else "Invalid credentials",
        )
        if self.service_account is not None and rec.auth == tuple(self.service_account):
            pid = rec.params.get("project_id")
            if not pid:
                return 400, "project_id is required when authenticating with a service account"
            if self.project_id is not None and pid != self.project_id:
                return 403, f"service account does not have access to project {pid}"
            return None
        if self.api_secret is not None and rec.auth == (self.api_secret, ""):
            return None
        return bad


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that gave up (read timeout) or a deliberate cut: not an error of the fake
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def _day(value: str | date) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def _valid_day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value and len(value) == 10 else None
    except ValueError:
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeMixpanel/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    @property
    def fake(self) -> FakeMixpanel:
        return self.server.fake  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    # -- dispatch ----------------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        form = {}
        if "application/x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
            form = {k: v[-1] for k, v in parse_qs(raw_body.decode(), keep_blank_values=True).items()}
        rec = RecordedRequest(
            method=method,
            path=url.path,
            params={k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()},
            headers=dict(self.headers.items()),
            form=form,
            auth=_basic_auth(self.headers.get("Authorization")),
            started=time.time(),
        )
        self.fake._record(rec)
        status = 500
        try:
            if url.path == EXPORT_PATH and method == "GET":
                status = self._export(rec)
            elif url.path == ENGAGE_PATH and method == "POST":
                status = self._engage(rec)
            elif url.path in (EXPORT_PATH, ENGAGE_PATH):
                status = self._send(405, b"method not allowed")
            else:
                status = self._send(404, b"not found")
        finally:
            self.fake._done(rec, status)

    def _wants_gzip(self) -> bool:
        return "gzip" in (self.headers.get("Accept-Encoding") or "").lower()

    def _send(
        self,
        status: int,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        content_type: str = "text/plain; charset=utf-8",
        allow_gzip: bool = True,
    ) -> int:
        extra = dict(headers or {})
        if allow_gzip and self._wants_gzip() and body and len(body) >= self.fake.gzip_min_bytes:
            body = gzip.compress(body)
            extra["Content-Encoding"] = "gzip"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        return status

    def _send_error_text(self, status: int, text: str, engage: bool, headers: Mapping[str, str] | None = None) -> int:
        if engage:
            body = json.dumps({"request": ENGAGE_PATH, "error": text}).encode()
            return self._send(status, body, headers, content_type="application/json")
        return self._send(status, text.encode(), headers)

    def _apply(self, rec: RecordedRequest, behaviour: Behaviour, engage: bool, body: bytes) -> int | None:
        """Play a scripted behaviour. Returns the status sent, or None to serve ``body`` normally."""
        if isinstance(behaviour, Status):
            text = behaviour.body if behaviour.body is not None else _phrase(behaviour.status)
            if engage and behaviour.body is None:
                return self._send_error_text(behaviour.status, text, True, behaviour.headers)
            return self._send(behaviour.status, text.encode(), behaviour.headers,
                              content_type="application/json" if engage else "text/plain; charset=utf-8")
        if isinstance(behaviour, CutBody):
            return self._cut(body, behaviour, engage)
        if isinstance(behaviour, TruncatedGzip):
            packed = gzip.compress(body)
            keep = behaviour.keep_bytes if behaviour.keep_bytes is not None else len(packed) // 2
            return self._send(200, packed[:keep], {"Content-Encoding": "gzip"}, allow_gzip=False)
        return None

    def _cut(self, body: bytes, cut: CutBody, engage: bool) -> int:
        headers = {}
        if self._wants_gzip():
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        self.send_response(200)
        self.send_header("Content-Type", "application/json" if engage else "text/plain; charset=utf-8")
        if cut.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        part = body[: max(0, min(cut.after_bytes, len(body) - 1))]
        if cut.chunked:
            if part:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        else:
            self.wfile.write(part)
        self.wfile.flush()
        self.close_connection = True
        if cut.reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.connection.close()
        return 200

    # -- endpoints ---------------------------------------------------------------------------

    def _export(self, rec: RecordedRequest) -> int:
        fake = self.fake
        problem = fake._auth_problem(rec)
        if problem:
            return self._send_error_text(problem[0], problem[1], False)
        start, end = _valid_day(rec.params.get("from_date")), _valid_day(rec.params.get("to_date"))
        if start is None or end is None:
            return self._send_error_text(400, "'from_date' and 'to_date' must be dates like 2025-01-31", False)
        if end < start:
            return self._send_error_text(400, "'to_date' cannot be earlier than 'from_date'", False)
        behaviour = _after_delay(rec, fake._next_behaviour(EXPORT_PATH, start.isoformat()))
        if fake.today is not None and end > fake.today and not isinstance(behaviour, Status):
            return self._send_error_text(400, "to_date cannot be later than today", False)
        lines: list[str] = []
        day = start
        with fake._lock:
            while day <= end:
                lines.extend(fake.events.get(day.isoformat(), []))
                day = date.fromordinal(day.toordinal() + 1)
        if isinstance(behaviour, Ok) and behaviour.lines is not None:
            lines = list(behaviour.lines)
        if isinstance(behaviour, TerminatedEarly):
            lines = lines[: behaviour.keep_lines] + [behaviour.marker]
            return self._send(200, _jsonl(lines))
        sent = self._apply(rec, behaviour, False, _jsonl(lines))
        if sent is not None:
            return sent
        return self._send(200, _jsonl(lines))

    def _engage(self, rec: RecordedRequest) -> int:
        fake = self.fake
        problem = fake._auth_problem(rec)
        if problem:
            return self._send_error_text(problem[0], problem[1], True)
        form = {**rec.params, **rec.form}
        try:
            page = int(form.get("page") or 0)
        except ValueError:
            return self._send_error_text(400, "page must be an integer", True)
        session_id = form.get("session_id")
        with fake._lock:
            known = session_id in fake._sessions
        if page > 0 and not known:
            return self._send_error_text(
                400, "If the 'page' parameter is provided and above 0, the session_id parameter must also be provided.", True
            )
        if not session_id:
            session_id = uuid.uuid4().hex
            with fake._lock:
                fake._sessions.add(session_id)
        behaviour = _after_delay(rec, fake._next_behaviour(ENGAGE_PATH, None))
        size = fake.page_size
        with fake._lock:
            results = fake.profiles[page * size : (page + 1) * size]
            total = len(fake.profiles)
        body = json.dumps(
            {"page": page, "page_size": size, "session_id": session_id, "status": "ok",
             "total": total, "results": results}
        ).encode()
        sent = self._apply(rec, behaviour, True, body)
        if sent is not None:
            return sent
        return self._send(200, body, content_type="application/json")


def _after_delay(rec: RecordedRequest, behaviour: Behaviour) -> Behaviour:
    """Sleep for a ``Delay`` and return what it wraps; record the behaviour's name."""
    names = []
    while isinstance(behaviour, (Delay, Hold)):
        if isinstance(behaviour, Hold):
            names.append("Hold")
            behaviour.release.wait(behaviour.timeout)
        else:
            names.append(f"Delay({behaviour.seconds:g})")
            time.sleep(behaviour.seconds)
        behaviour = behaviour.then or Ok()
    rec.behaviour = "+".join([*names, type(behaviour).__name__])
    return behaviour


def _jsonl(lines: Sequence[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


def legacy_project_export(lines: Sequence[str], project_timezone: str) -> dict[str, list[str]]:
    """What Mixpanel exports for a project created before 2023 whose timezone is `project_timezone`,
    from records whose `properties.time` is true UTC (epoch milliseconds): each record filed under its
    day in the project timezone, and its `time` rewritten as that local wall clock counted as if it were
    UTC (Mixpanel converted it at ingestion, with the offset in force at that instant). Pass the result as
    ``FakeMixpanel(events=...)``."""
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(project_timezone)
    out: dict[str, list[str]] = {}
    for line in lines:
        record = json.loads(line)
        utc = datetime.fromtimestamp(record["properties"]["time"] / 1000, tz=timezone.utc)
        local = utc.astimezone(zone)
        wall = local.replace(tzinfo=timezone.utc)
        record["properties"]["time"] = int(wall.timestamp() * 1000)
        out.setdefault(local.date().isoformat(), []).append(json.dumps(record, separators=(",", ":")))
    return out
