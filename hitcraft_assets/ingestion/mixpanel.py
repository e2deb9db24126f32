"""Mixpanel client: the Raw Event Export API (one UTC day per request) and Engage profiles.

``MixpanelResource`` is the Dagster face (settings only, EnvVar-friendly); it hands the work to a
plain ``MixpanelClient`` that can take an injected ``sleep`` and random generator in tests.

What the established extractors get wrong, and this client does instead (see
``shared/reference/mixpanel-api.md`` sections 1 and 4):

- a day is stored only when its whole body arrived: the body is streamed to ``<dest>.part`` and
  renamed to ``dest`` after the stream ended cleanly, the gzip stream reached its end, and the last
  line is not ``terminated early``; anything else fetches the whole day again;
- the body never sits in memory as Python objects; gzip is decoded here (not by urllib3) so that a
  gzip stream cut short is noticed and the bytes on the wire can be counted;
- 429 (honouring ``Retry-After``), 5xx, resets, timeouts and cut bodies are retried with full-jitter
  exponential backoff; 400/401/402/403/404 fail at once with a message naming the likely cause;
- every request, retries included, passes a cross-process rate limiter (``ratelimit.py``) keyed by
  host and project, so a backfill or several concurrent runs stay inside Mixpanel's per-project limits;
- error messages and logs never carry a secret or the Authorization header, and no exception from
  ``requests`` (whose ``.request`` holds the headers) is chained onto ours.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import logging
import os
import random
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timezone
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import dagster as dg

from hitcraft_assets.ingestion.ratelimit import RateLimiter, Window
from hitcraft_assets.lazy import lazy

# imported on first use: loading the code location (every step's process) need not pay for them
requests = lazy("requests")
urllib3_exceptions = lazy("urllib3.exceptions")

_logger = logging.getLogger(__name__)

# region -> (export base, query base); paths per mixpanel/docs openapi export/query specs
REGION_HOSTS: dict[str, tuple[str, str]] = {
    "us": ("https://data.mixpanel.com", "https://mixpanel.com"),
    "eu": ("https://data-eu.mixpanel.com", "https://eu.mixpanel.com"),
    "in": ("https://data-in.mixpanel.com", "https://in.mixpanel.com"),
}
EXPORT_PATH = "/api/2.0/export"
QUERY_PATH = "/api/query"

CHUNK_BYTES = 1 << 20
ERROR_BODY_BYTES = 4096
TERMINATED_EARLY_LINES = frozenset({b"terminated early", b"export terminated early", b"[terminated early]"})
RETRY_AFTER_CAP_S = 3600.0  # Mixpanel's longest window is an hour; never sleep longer on its say-so
NON_RETRYABLE_STATUSES = frozenset({400, 401, 402, 403, 404})


# -- errors --------------------------------------------------------------------------------------


class MixpanelError(Exception):
    """Base of every error this client raises. ``code`` is stable; the message holds no secret."""

    default_code = "MIXPANEL_ERROR"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        self.code = code or self.default_code
        self.status = status
        self.message = message
        super().__init__(f"[{self.code}] {message}")


class MixpanelConfigError(MixpanelError):
    """Missing or contradictory settings: no credentials, unknown region, bad URL."""

    default_code = "MIXPANEL_CONFIG"


class MixpanelRequestError(MixpanelError):
    """Mixpanel refused the request (400/401/402/403/404); retrying would not help."""

    default_code = "MIXPANEL_BAD_REQUEST"


class MixpanelRetryExhausted(MixpanelError):
    """A retryable problem (429, 5xx, reset, timeout, cut body) persisted past ``max_attempts``."""

    default_code = "MIXPANEL_RETRY_EXHAUSTED"


@dataclass(frozen=True)
class ExportResult:
    """One exported day.

    ``lines`` counts the body's lines (blank or malformed ones included: the file holds the body as
    sent); ``bytes_read`` counts bytes on the wire (compressed when ``gzip``), ``bytes_written`` the
    decompressed bytes in ``path``; ``attempts`` includes the successful one; ``sha256`` is the hex digest
    of the bytes in ``path``, computed while they were written (the loader's fingerprint uses it rather
    than reading the body once more).
    """

    day: date
    path: Path
    lines: int
    bytes_read: int
    bytes_written: int
    attempts: int
    gzip: bool
    sha256: str = ""


class _Retry(Exception):
    """Internal: one attempt failed in a way worth retrying. Never leaves this module."""

    def __init__(self, reason: str, *, status: int | None = None, retry_after_s: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after_s = retry_after_s


# -- pure helpers --------------------------------------------------------------------------------


def backoff_delay(
    retry_index: int,
    base_s: float,
    max_s: float,
    rng: random.Random,
    retry_after_s: float | None = None,
) -> float:
    """Full-jitter exponential backoff: ``uniform(0, min(max_s, base_s * 2**retry_index))``.

    ``retry_index`` is 0 before the first retry. A server's ``Retry-After`` is a floor on the result.
    """
    ceiling = min(max_s, base_s * 2.0 ** min(retry_index, 64))
    delay = rng.uniform(0.0, ceiling)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)


_SECRET_NAMES = ("secret", "token", "key", "password", "passwd", "pwd", "auth", "sig", "signature",
                 "credential", "session", "access", "code")


def safe_url(url: str) -> str:
    """`url` fit for logs, metadata and messages: no user:password@ and no value of a query parameter whose
    name suggests a secret (token, key, sig, ...) or that looks like one (a long random string)."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    if parts.username or parts.password:
        netloc = "***@" + netloc
    query = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        secretish = any(word in name.lower() for word in _SECRET_NAMES) or (
            len(value) >= 20 and any(c.isdigit() for c in value) and any(c.isalpha() for c in value))
        query.append(f"{name}={'***' if secretish and value else value}")
    return urlunsplit((parts.scheme, netloc, parts.path, "&".join(query), ""))


def _short_text(body: bytes) -> str:
    """The server's error text, one line, at most 300 characters; the ``error`` key if JSON."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("error"):
        text = str(parsed["error"])
    text = " ".join(text.split())
    return text[:300] + ("..." if len(text) > 300 else "")


# -- settings ------------------------------------------------------------------------------------


class RateLimits(dg.Config):
    """Per-project request limits, enforced across processes.

    ``windows`` is a list of ``[max_requests, seconds]`` pairs, all enforced together (e.g.
    ``[[60, 3600], [3, 1]]`` = 60 an hour and 3 a second); ``concurrency`` caps requests in flight
    (None = no cap).
    """

    windows: list[list[float]]
    concurrency: int | None = None

    def to_windows(self) -> list[Window]:
        out = []
        for pair in self.windows:
            if len(pair) != 2 or int(pair[0]) != pair[0] or pair[0] < 1 or not pair[1] > 0:
                raise MixpanelConfigError(
                    f"rate limit window {pair!r} must be [max_requests (int >= 1), seconds (> 0)]"
                )
            out.append(Window(int(pair[0]), float(pair[1])))
        return out


# Mixpanel's documented per-project limits (mixpanel/docs:reference/rate-limits.mdx)
EXPORT_LIMITS = RateLimits(windows=[[60, 3600], [3, 1]], concurrency=100)
QUERY_LIMITS = RateLimits(windows=[[60, 3600]], concurrency=5)


class MixpanelResource(dg.ConfigurableResource):
    """Mixpanel Raw Export and Engage client settings.

    Authenticate with a service account (``service_account_username`` + ``service_account_secret`` +
    ``project_id``, the supported way) or the legacy project ``api_secret`` (retired March 2027).
    ``region`` picks the data-residency hosts; ``export_url`` / ``api_url`` override them (tests, proxies).
    """

    project_id: str | None = None
    service_account_username: str | None = None
    service_account_secret: str | None = None
    api_secret: str | None = None
    region: str = "us"
    export_url: str | None = None
    api_url: str | None = None
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 600.0
    max_attempts: int = 6
    backoff_base_s: float = 2.0
    backoff_max_s: float = 300.0
    rate_limit_dir: str | None = None
    export_limits: RateLimits = EXPORT_LIMITS
    engage_limits: RateLimits = QUERY_LIMITS

    def get_client(
        self,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> "MixpanelClient":
        """A client bound to these settings; tests inject ``sleep`` and ``rng`` here."""
        return MixpanelClient(self, sleep=sleep, rng=rng)

    def export_day(self, day: date, dest: Path, log: logging.Logger | None = None) -> ExportResult:
        """Export one UTC day of raw events to ``dest`` (JSONL, exactly as Mixpanel sent it)."""
        return self.get_client().export_day(day, dest, log=log)

    def export_profiles(self, dest: Path, log: logging.Logger | None = None) -> int:
        """Export every user profile through Engage to ``dest`` (one JSON object a line); return the count."""
        return self.get_client().export_profiles(dest, log=log)

    def describe(self) -> dict[str, Any]:
        """A summary safe for metadata and logs: region, hosts, auth mode, project id; never a secret."""
        return self.get_client().describe()


# -- the client ----------------------------------------------------------------------------------


class MixpanelClient:
    """Does the HTTP work for a ``MixpanelResource``. Stateless apart from injected sleep/rng."""

    def __init__(
        self,
        settings: MixpanelResource,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.s = settings
        self._sleep = sleep
        self._rng = rng or random.Random()
        region = (settings.region or "").strip().lower()
        if region not in REGION_HOSTS:
            raise MixpanelConfigError(
                f"unknown Mixpanel region {settings.region!r}; expected one of {sorted(REGION_HOSTS)}"
            )
        self.region = region
        export_base, query_base = REGION_HOSTS[region]
        self.export_url = (settings.export_url or export_base + EXPORT_PATH).rstrip("/")
        self.api_url = (settings.api_url or query_base + QUERY_PATH).rstrip("/")
        self.engage_url = self.api_url + "/engage"
        for url in (self.export_url, self.engage_url):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise MixpanelConfigError(f"not an http(s) URL: {safe_url(url)!r}")
        if settings.max_attempts < 1:
            raise MixpanelConfigError(f"max_attempts must be >= 1, got {settings.max_attempts}")

    # -- description and auth ---------------------------------------------------------------

    @property
    def auth_mode(self) -> str | None:
        if self.s.service_account_username or self.s.service_account_secret:
            return "service_account"
        if self.s.api_secret:
            return "api_secret"
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "host": urlsplit(self.export_url).hostname,
            "api_host": urlsplit(self.api_url).hostname,
            "export_url": safe_url(self.export_url),
            "engage_url": safe_url(self.engage_url),
            "auth_mode": self.auth_mode,
            "project_id": self.s.project_id,
        }

    def _credentials(self) -> tuple[tuple[str, str], dict[str, str]]:
        """Basic-auth pair and the extra query params the auth mode needs."""
        mode = self.auth_mode
        if mode == "service_account":
            missing = [
                name
                for name in ("service_account_username", "service_account_secret", "project_id")
                if not getattr(self.s, name)
            ]
            if missing:
                raise MixpanelConfigError(
                    "service-account authentication needs service_account_username, "
                    f"service_account_secret and project_id; missing: {', '.join(missing)}"
                )
            assert self.s.service_account_username and self.s.service_account_secret
            return (
                (self.s.service_account_username, self.s.service_account_secret),
                {"project_id": str(self.s.project_id)},
            )
        if mode == "api_secret":
            assert self.s.api_secret
            return (self.s.api_secret, ""), {}
        raise MixpanelConfigError(
            "no Mixpanel credentials: set service_account_username, service_account_secret and "
            "project_id (or the legacy api_secret)"
        )

    def _secrets(self) -> list[str]:
        """Strings that must never appear in a message: the secrets and their Basic-auth encodings."""
        out = []
        if self.s.service_account_secret:
            user = self.s.service_account_username or ""
            out.append(self.s.service_account_secret)
            out.append(base64.b64encode(f"{user}:{self.s.service_account_secret}".encode()).decode())
        if self.s.api_secret:
            out.append(self.s.api_secret)
            out.append(base64.b64encode(f"{self.s.api_secret}:".encode()).decode())
        # an override URL may carry credentials of a proxy: its userinfo and secret-looking query values
        for url in (self.s.export_url, self.s.api_url):
            if url:
                parts = urlsplit(url)
                out += [v for v in (parts.username, parts.password) if v]
                masked = dict(parse_qsl(urlsplit(safe_url(url)).query, keep_blank_values=True))
                out += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if masked.get(k) == "***"]
        return [s for s in out if len(s) >= 4]

    def _redact(self, text: str) -> str:
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return text

    def _limiter(self, api: str, url: str, limits: RateLimits) -> RateLimiter:
        if self.s.rate_limit_dir:
            state_dir = Path(self.s.rate_limit_dir)
        elif os.environ.get("DAGSTER_HOME"):
            state_dir = Path(os.environ["DAGSTER_HOME"]) / ".mixpanel_ratelimit"
        else:
            state_dir = Path("data") / ".mixpanel_ratelimit"
        host = urlsplit(url).netloc
        # limits are per project; a legacy secret has no project id here, so all such share one key
        project = self.s.project_id if self.auth_mode == "service_account" else "legacy"
        return RateLimiter(
            state_dir,
            f"{api}-{host}-{project}",
            limits.to_windows(),
            limits.concurrency,
        )  # real time.sleep: the limiter's clock is wall time shared with other processes

    # -- the retry loop ----------------------------------------------------------------------

    def _with_retries(
        self,
        what: str,
        limiter: RateLimiter,
        log: logging.Logger,
        attempt_fn: Callable[[int], Any],
    ) -> tuple[Any, int]:
        """Run ``attempt_fn(attempt)`` inside a limiter slot until it returns or fails for good."""
        last: _Retry | None = None
        max_attempts = self.s.max_attempts
        for attempt in range(1, max_attempts + 1):
            try:
                with limiter.slot(log=log):
                    return attempt_fn(attempt), attempt
            except _Retry as r:
                last = _Retry(r.reason, status=r.status, retry_after_s=r.retry_after_s)
            if attempt == max_attempts:
                break
            delay = backoff_delay(
                attempt - 1, self.s.backoff_base_s, self.s.backoff_max_s, self._rng, last.retry_after_s
            )
            log.warning(
                f"mixpanel {what}: attempt {attempt}/{max_attempts} failed ({last.reason}); "
                f"retrying in {delay:.2f} s"
            )
            self._sleep(delay)
        assert last is not None
        log.error(f"mixpanel {what}: giving up after {max_attempts} attempts ({last.reason})")
        raise MixpanelRetryExhausted(
            f"{what} failed after {max_attempts} attempts; last problem: {last.reason}",
            status=last.status,
        )

    def _transport_problem(self, e: BaseException) -> str:
        """A redacted one-line description of a transport exception (the exception itself is dropped)."""
        return self._redact(f"{type(e).__name__}: {e}")[:300]

    def _fail_for_status(self, status: int, body: bytes, what: str) -> NoReturn:
        """Raise the MixpanelRequestError for a non-retryable status, naming the likely cause."""
        text = self._redact(_short_text(body))
        quoted = f"HTTP {status}: {text!r}" if text else f"HTTP {status}"
        project = self.s.project_id or "(none: legacy api_secret)"
        if status == 400 and "to_date cannot be later than today" in text.lower():
            raise MixpanelRequestError(
                f"{what}: Mixpanel refused the date ({quoted}). The day has not started yet in the "
                "project's timezone: projects created before 1 January 2023 interpret "
                "from_date/to_date in the project timezone, not UTC. Check the timezone in Mixpanel's "
                "project settings, set MIXPANEL_PROJECT_TIMEZONE (or the config's "
                "mixpanel_project_timezone) to it, and do not request a day that has not begun there.",
                code="MIXPANEL_TIMEZONE",
                status=status,
            )
        if status == 401 or (status == 400 and "unable to authenticate" in text.lower()):
            if self.auth_mode == "api_secret":
                check = "check the project's API secret (deprecated: prefer a service account)"
            else:
                check = (
                    "check the service account username and secret, and that project_id "
                    f"{project} is a project the service account belongs to"
                )
            raise MixpanelRequestError(
                f"{what}: Mixpanel could not authenticate the request ({quoted}). The credentials are "
                f"wrong or expired: {check}.",
                code="MIXPANEL_AUTH",
                status=status,
            )
        if status == 402:
            raise MixpanelRequestError(
                f"{what}: Mixpanel answered Payment Required ({quoted}): the project's plan does not "
                "allow API calls.",
                code="MIXPANEL_PAYMENT_REQUIRED",
                status=status,
            )
        if status == 403:
            raise MixpanelRequestError(
                f"{what}: Mixpanel answered Forbidden ({quoted}): the service account lacks access to "
                f"project {project}, or to classified data in it. Give it a role in the project (and "
                "classified-data access if the project has classified data).",
                code="MIXPANEL_FORBIDDEN",
                status=status,
            )
        if status == 404:
            raise MixpanelRequestError(
                f"{what}: Mixpanel answered Not Found ({quoted}): the endpoint is wrong. Check region "
                f"({self.region}: the project's data residency decides the host) and export_url/api_url.",
                code="MIXPANEL_NOT_FOUND",
                status=status,
            )
        raise MixpanelRequestError(
            f"{what}: Mixpanel rejected the request ({quoted}).",
            code="MIXPANEL_BAD_REQUEST",
            status=status,
        )

    def _classify_status(self, resp: requests.Response, what: str) -> NoReturn:
        """Turn a non-200 response into ``_Retry`` or a ``MixpanelRequestError``."""
        status = resp.status_code
        body = _read_error_body(resp)
        if status == 429 or status == 408 or status >= 500:
            text = self._redact(_short_text(body))
            raise _Retry(
                f"HTTP {status}" + (f": {text!r}" if text else ""),
                status=status,
                retry_after_s=parse_retry_after(resp.headers.get("Retry-After")),
            )
        self._fail_for_status(status, body, what)

    def _request(self, what: str, send: Callable[[], requests.Response]) -> requests.Response:
        """Send one request; transport failures become ``_Retry`` or a MixpanelError, never a
        ``requests`` exception (whose ``.request`` carries the Authorization header)."""
        retry = fatal = config = None
        try:
            return send()
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as e:
            retry = self._transport_problem(e)
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema, requests.exceptions.InvalidHeader) as e:
            config = self._transport_problem(e)
        except requests.RequestException as e:
            fatal = self._transport_problem(e)
        if config is not None:
            raise MixpanelConfigError(f"{what}: bad request setup: {config}")
        if fatal is not None:
            raise MixpanelError(f"{what}: request failed: {fatal}", code="MIXPANEL_HTTP")
        raise _Retry(str(retry))

    # -- export ------------------------------------------------------------------------------

    def export_day(self, day: date, dest: Path, log: logging.Logger | None = None) -> ExportResult:
        log = log or _logger
        dest = Path(dest)
        auth, params = self._credentials()
        params = {
            **params,
            "from_date": day.isoformat(),
            "to_date": day.isoformat(),
            "time_in_ms": "true",
        }
        headers = {"Accept-Encoding": "gzip", "Accept": "text/plain"}
        limiter = self._limiter("export", self.export_url, self.s.export_limits)
        what = f"export of {day.isoformat()}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")

        with requests.Session() as session:

            def attempt(n: int) -> tuple[int, int, int, bool]:
                log.info(f"mixpanel {what}: attempt {n}/{self.s.max_attempts} GET {safe_url(self.export_url)}")
                resp = self._request(
                    what,
                    lambda: session.get(
                        self.export_url,
                        params=params,
                        headers=headers,
                        auth=auth,
                        stream=True,
                        timeout=(self.s.connect_timeout_s, self.s.read_timeout_s),
                    ),
                )
                with resp:
                    if resp.status_code != 200:
                        self._classify_status(resp, what)
                    return self._stream_to_part(resp, part)

            done = False
            try:
                (lines, wire, written, gz, digest), attempts = self._with_retries(what, limiter, log, attempt)
                # _stream_to_part left a complete, valid body in `part`
                os.replace(part, dest)
                done = True
            finally:
                if not done:
                    part.unlink(missing_ok=True)
        log.info(
            f"mixpanel {what}: {lines} lines, {written} bytes written ({wire} on the wire"
            f"{', gzip' if gz else ''}) after {attempts} attempt(s)"
        )
        return ExportResult(
            day=day, path=dest, lines=lines, bytes_read=wire, bytes_written=written,
            attempts=attempts, gzip=gz, sha256=digest,
        )

    def _stream_to_part(self, resp: requests.Response, part: Path) -> tuple[int, int, int, bool, str]:
        """Stream a 200 body to ``part``; return (lines, wire bytes, bytes written, gzip, sha256 of the bytes
        written).

        Raises ``_Retry`` (after deleting ``part``) when the body is cut or ends ``terminated early``.
        """
        encoding = resp.headers.get("Content-Encoding", "").strip().lower()
        gz = encoding in ("gzip", "x-gzip")
        if not gz and encoding not in ("", "identity"):
            raise _Retry(f"unexpected Content-Encoding {encoding!r}")
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS) if gz else None
        wire = written = newlines = 0
        tail = b""
        digest = hashlib.sha256()
        problem: str | None = None
        try:
            with open(part, "wb") as f:

                def write(data: bytes) -> None:
                    nonlocal written, newlines, tail
                    if data:
                        f.write(data)
                        digest.update(data)
                        written += len(data)
                        newlines += data.count(b"\n")
                        tail = (tail + data)[-256:]

                for chunk in resp.raw.stream(CHUNK_BYTES, decode_content=False):
                    wire += len(chunk)
                    if decoder is None:
                        write(chunk)
                        continue
                    while chunk:
                        write(decoder.decompress(chunk))
                        chunk = b""
                        if decoder.eof:  # a gzip member ended; another may follow
                            chunk = decoder.unused_data
                            if chunk:
                                decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
                if decoder is not None:
                    write(decoder.flush())
                    if not decoder.eof:
                        problem = f"gzip stream truncated after {wire} bytes"
                f.flush()
                os.fsync(f.fileno())
        except (urllib3_exceptions.HTTPError, requests.RequestException) as e:
            problem = f"body cut after {wire} bytes: {self._transport_problem(e)}"
        except zlib.error as e:
            problem = f"corrupt gzip body after {wire} bytes: {e}"
        if problem is None and _last_line(tail) in TERMINATED_EARLY_LINES:
            problem = f"Mixpanel ended the stream with {_last_line(tail).decode()!r} after {written} bytes"
        if problem is not None:
            part.unlink(missing_ok=True)
            raise _Retry(problem)
        lines = newlines + (1 if tail and not tail.endswith(b"\n") else 0)
        return lines, wire, written, gz, digest.hexdigest()

    # -- engage ------------------------------------------------------------------------------

    def export_profiles(self, dest: Path, log: logging.Logger | None = None) -> int:
        log = log or _logger
        dest = Path(dest)
        auth, params = self._credentials()
        limiter = self._limiter("query", self.api_url, self.s.engage_limits)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        count = 0
        ok = False
        try:
            with requests.Session() as session, open(part, "w", encoding="utf-8") as f:
                form: dict[str, str] = {}
                page = 0
                while True:
                    what = f"engage page {page}"

                    def attempt(n: int, form: dict[str, str] = form, what: str = what) -> dict[str, Any]:
                        log.info(f"mixpanel {what}: attempt {n}/{self.s.max_attempts} POST {safe_url(self.engage_url)}")
                        return self._engage_page(session, auth, params, form, what)

                    body, _ = self._with_retries(what, limiter, log, attempt)
                    results = body["results"]
                    for profile in results:
                        f.write(json.dumps(profile, ensure_ascii=False, separators=(",", ":")) + "\n")
                    count += len(results)
                    page_size = int(body.get("page_size") or 1000)
                    log.info(f"mixpanel {what}: {len(results)} profiles (total so far {count})")
                    if len(results) < page_size or not results:
                        break
                    session_id = body.get("session_id")
                    if not session_id:
                        raise MixpanelError(
                            f"{what}: a full page came back without a session_id, cannot page on",
                            code="MIXPANEL_BAD_RESPONSE",
                        )
                    page = int(body.get("page", page)) + 1
                    form = {"session_id": str(session_id), "page": str(page)}
                f.flush()
                os.fsync(f.fileno())
            os.replace(part, dest)
            ok = True
        finally:
            if not ok:
                part.unlink(missing_ok=True)
        log.info(f"mixpanel engage: {count} profiles written to {dest.name}")
        return count

    def _engage_page(
        self,
        session: requests.Session,
        auth: tuple[str, str],
        params: dict[str, str],
        form: dict[str, str],
        what: str,
    ) -> dict[str, Any]:
        resp = self._request(
            what,
            lambda: session.post(
                self.engage_url,
                params=params,
                data=form,
                auth=auth,
                headers={
                    "Accept": "application/json",
                    "Accept-Encoding": "gzip",
                    # also on the first page, whose form is empty
                    "Content-Type": "application/x-www-form-urlencoded",
                },
                timeout=(self.s.connect_timeout_s, self.s.read_timeout_s),
            ),
        )
        with resp:
            if resp.status_code != 200:
                self._classify_status(resp, what)
            try:
                body = resp.json()
            except ValueError:
                body = None
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise _Retry("response is not an Engage page (no JSON 'results' list)")
        return body


def _last_line(tail: bytes) -> bytes:
    """The last non-empty line of the body's tail, stripped."""
    for line in reversed(tail.splitlines()):
        if line.strip():
            return line.strip()
    return b""


def _read_error_body(resp: requests.Response) -> bytes:
    """Up to ERROR_BODY_BYTES of a (possibly gzip) error body; empty if it cannot be read."""
    buf = b""
    try:
        for chunk in resp.iter_content(1024):
            buf += chunk
            if len(buf) >= ERROR_BODY_BYTES:
                break
    except (requests.RequestException, urllib3_exceptions.HTTPError):
        pass
    return buf[:ERROR_BODY_BYTES]
