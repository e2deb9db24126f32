"""Server-rendered pages: the Jinja2 environment (templates in `templates/`, autoescaped), `page()` that every
dashboard route answers with, the snapshot dependency of a page, the static files and the offline Vega bundle,
and the security headers of every HTML page.

- `page(request, template, context, *, active, title)` renders `template` with `context` plus what every page
  needs: `request`, `user` (the signed-in key, or None), `nav` (the pages there are, `active` marked),
  `freshness` (the snapshot served: built at, last day, age; None without one), `theme` (auto, light or dark,
  from the `hc_theme` cookie the toggle sets), `csrf_token` (for the POST forms of a signed-in user), and the
  URLs of the static files. It adds `Server-Timing: render;dur=...` (the template) and `Cache-Control:
  no-store` (pages hold data behind a key); `SecurityHeaders` adds `app;dur=...` (the whole request).
- `page_snapshot` (a dependency) holds the current snapshot for the request, or gives None when the pipeline
  has published none (or it cannot be read): a page then says so and what to do, never a made-up number.
- Charts: `templates/_macros.html` has `chart(spec_id, spec, caption, summary)`; `static/charts.js` draws each
  spec with the Vega bundle of vl-convert (`vl_convert.javascript_bundle()`, Vega 6 + Vega-Lite 6 +
  vega-embed 7), built in memory at first use and served from `/static/vendor/vega-<version>.js` with a
  year-long immutable cache (the URL changes with vl-convert's version). Nothing is fetched from another host.

CSP (`CSP` below): `default-src 'self'`, and nothing inline. Vega compiles its expressions with `new Function`
(which needs `'unsafe-eval'`) unless vega-embed is given `ast: true`, which evaluates them with the
interpreter the bundle carries; and vega-embed injects a `<style>` element unless `defaultStyle: false`.
charts.js passes both, so the policy needs neither `'unsafe-eval'` nor `'unsafe-inline'` (measured in
Chromium: no violation, every chart drawn). htmx's own inline indicator style is turned off in its meta
config. The specs travel in `<script type="application/json">` blocks, which are data and never run.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.staticfiles import StaticFiles

from hitcraft_assets.app.errors import ApiError
from hitcraft_assets.app.snapshot import Snapshot
from hitcraft_assets.delivery import charts
from hitcraft_assets.delivery.evidence import number

_logger = logging.getLogger("hitcraft_assets.app.web")

WEB_DIR = Path(__file__).parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"
THEME_COOKIE = "hc_theme"
THEMES = ("auto", "light", "dark")
STALE_AFTER_S = 36 * 3600      # a snapshot older than this is flagged: the daily run did not publish

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}

# (key, label, path): every page of the dashboard, in the order of the navigation
NAV_ITEMS = (
    ("overview", "Overview", "/"),
    ("insights", "Insights", "/insights"),
    ("metrics", "Metrics", "/metrics"),
    ("funnels", "Funnels", "/funnels"),
    ("retention", "Retention", "/retention"),
    ("quality", "Data quality", "/quality"),
    ("reports", "Reports", "/reports"),
)
# the pages whose module is installed (web_router() sets it): the navigation never links to a missing page
_available: set[str] = {key for key, _, _ in NAV_ITEMS}


def set_available_pages(keys: set[str]) -> None:
    global _available
    _available = set(keys)


# -- the chart colours in dark mode ----------------------------------------------------------------
# charts.py draws for a white card; in the page charts.js makes every chart's background clear (the card's
# colour shows), and in dark mode swaps each of these colours, wherever the spec uses it, for its dark
# counterpart (strokes at least 3:1, text 4.5:1 against the dark card). White is not swapped: a white label
# on a dark mark stays white.
DARK_COLORS = {
    charts.INK: "#e5e7eb",
    charts.MUTED: "#9ca3af",
    charts.GRID: "#374151",
    charts.LINE: "#60a5fa",
    charts.BAND: "#2563eb",
    charts.MARKER: "#fb923c",
}


# -- templates -------------------------------------------------------------------------------------

def _spec_json(value: Any) -> Markup:
    """JSON for a `<script type="application/json">` block: `<`, `>`, `&` and the JS line separators escaped,
    so that no value (an event name from the tracked product) can close the block."""
    text = json.dumps(value, separators=(",", ":"), default=str, allow_nan=False)
    text = (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return Markup(text)


def _fmt_number(value: Any, percent: bool = False, signed: bool = False) -> str:
    return number(value, percent=percent, signed=signed)


def _fmt_day(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    return f"{value:%a} {value.day} {value:%b %Y}"


_static_versions: dict[str, str] = {}


def static_url(name: str) -> str:
    """`/static/<name>?v=<content hash>`: a changed file gets a new URL, so it may be cached for a year."""
    version = _static_versions.get(name)
    if version is None:
        try:
            version = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:10]
        except OSError:
            version = "0"
        _static_versions[name] = version
    return f"/static/{name}?v={version}"


def _make_env() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["spec_json"] = _spec_json
    env.filters["num"] = _fmt_number
    env.filters["day"] = _fmt_day
    env.globals["static"] = static_url
    env.globals["vega_bundle_url"] = lambda: VEGA_BUNDLE_PATH
    env.globals["dark_colors"] = DARK_COLORS
    return env


env = _make_env()


# -- the snapshot of a page --------------------------------------------------------------------------

async def page_snapshot(request: Request) -> AsyncIterator[Snapshot | None]:
    """The snapshot current when the request started, held until it ends; None when there is none to read
    (`request.state.snapshot_problem` then says why, for the empty state)."""
    store = request.app.state.snapshots
    try:
        snap = store.acquire()
    except ApiError as exc:
        request.state.snapshot = None
        request.state.snapshot_problem = exc.message
        yield None
        return
    request.state.snapshot = snap
    try:
        yield snap
    finally:
        store.release(snap)


def _age_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 90:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h {minutes % 60} min"
    return f"{hours // 24} days"


def freshness(snap: Snapshot | None) -> dict | None:
    """What the footer and the overview say about the data: None without a snapshot."""
    if snap is None:
        return None
    built = snap.built_at
    age = (datetime.now(timezone.utc) - built).total_seconds() if built else None
    return {"snapshot_id": snap.snapshot_id, "built_at": built, "last_day": snap.last_day,
            "age_seconds": age, "age": _age_text(age) if age is not None else "unknown",
            "stale": age is not None and age > STALE_AFTER_S, "tables": snap.meta.get("tables") or {},
            "product": snap.config.get("product") or "HitCraft"}


def theme_of(request: Request) -> str:
    value = request.cookies.get(THEME_COOKIE, "auto")
    return value if value in THEMES else "auto"


def page(request: Request, template: str, context: dict, *, active: str, title: str,
         status_code: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    """The page `template` with `context` and what every page shows (see the module docstring)."""
    from hitcraft_assets.app.web.session import csrf_token   # session imports render

    t0 = time.perf_counter()
    user = getattr(request.state, "user", None)
    snap = getattr(request.state, "snapshot", None)
    if snap is None:
        snap = request.app.state.snapshots.peek()
    nav = [{"key": key, "label": label, "href": href, "active": key == active}
           for key, label, href in NAV_ITEMS if key in _available or key == active]
    values = {
        "request": request, "user": user, "nav": nav, "active": active, "title": title,
        "freshness": freshness(snap), "snapshot_problem": getattr(request.state, "snapshot_problem", None),
        "theme": theme_of(request), "csrf_token": csrf_token(request) if user else None,
        **context,
    }
    html = env.get_template(template).render(values)
    ms = (time.perf_counter() - t0) * 1000
    out = {"Server-Timing": f'render;dur={ms:.1f};desc="template"', "Cache-Control": "no-store",
           "Vary": "Cookie, HX-Request"}
    out.update(headers or {})
    return HTMLResponse(html, status_code=status_code, headers=out)


def partial(request: Request, template: str, context: dict) -> HTMLResponse:
    """A fragment for htmx to swap in (the same template the full page includes)."""
    t0 = time.perf_counter()
    html = env.get_template(template).render({"request": request, **context})
    ms = (time.perf_counter() - t0) * 1000
    return HTMLResponse(html, headers={"Server-Timing": f'render;dur={ms:.1f};desc="template"',
                                       "Cache-Control": "no-store", "Vary": "Cookie, HX-Request"})


def is_htmx_fragment(request: Request, target: str) -> bool:
    """Whether htmx asked for the fragment swapped into `#target` (a history restore wants the whole page)."""
    return (request.headers.get("HX-Request") == "true" and request.headers.get("HX-Target") == target
            and request.headers.get("HX-History-Restore-Request") != "true")


# -- security headers ----------------------------------------------------------------------------------

class SecurityHeaders:
    """ASGI middleware for the dashboard's HTML: every `text/html` answer that sets no Content-Security-Policy
    of its own (the API's /docs and /unsubscribe pages set theirs) gets `SECURITY_HEADERS`, and
    `Server-Timing: app;dur=<ms>` (the request's time in the app up to its first byte)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()

        async def wrapped(message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers") or [])
                names = {k.lower() for k, _ in raw}
                ctype = next((v for k, v in raw if k.lower() == b"content-type"), b"")
                if ctype.startswith(b"text/html") and b"content-security-policy" not in names:
                    raw += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                    ms = (time.perf_counter() - t0) * 1000
                    raw.append((b"server-timing", f'app;dur={ms:.1f};desc="server time"'.encode()))
                    message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, wrapped)


# -- static files ----------------------------------------------------------------------------------------

class Static(StaticFiles):
    """The static folder; a file asked for by its versioned URL (`?v=`, see static_url) may be cached a year."""

    async def get_response(self, path: str, scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200 and b"v=" in scope.get("query_string", b""):
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response


def static_files() -> Static:
    return Static(directory=STATIC_DIR)


# -- the Vega bundle -----------------------------------------------------------------------------------------

def _bundle_version() -> str:
    import vl_convert

    return getattr(vl_convert, "__version__", "0").replace("+", "-")


VEGA_BUNDLE_PATH = f"/static/vendor/vega-{_bundle_version()}.js"
_bundle: dict[str, bytes] = {}
_bundle_lock = threading.Lock()


def vega_bundle() -> dict[str, bytes]:
    """{"js": the bundle, "gz": gzipped, "etag"}: built at its first request (about 2 s, once per process; not
    in the background, since vl-convert holds the GIL while it builds and would stall every request), kept in
    memory (900 KB; 300 KB gzipped). Not a file in the package: an installed package may not be writable,
    and the bundle is not committed."""
    with _bundle_lock:
        if not _bundle:
            import vl_convert

            t0 = time.perf_counter()
            js = vl_convert.javascript_bundle().encode()
            _bundle["js"] = js
            _bundle["gz"] = gzip.compress(js, 6, mtime=0)
            _bundle["etag"] = ('"' + hashlib.sha256(js).hexdigest()[:16] + '"').encode()
            _logger.info("built the Vega bundle (%d KB) in %.1f s", len(js) // 1024, time.perf_counter() - t0)
        return _bundle


def vega_bundle_response(request: Request) -> Response:
    b = vega_bundle()
    headers = {"Cache-Control": "public, max-age=31536000, immutable", "ETag": b["etag"].decode(),
               "X-Content-Type-Options": "nosniff", "Vary": "Accept-Encoding"}
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(b["gz"], media_type="text/javascript", headers={**headers, "Content-Encoding": "gzip"})
    return Response(b["js"], media_type="text/javascript", headers=headers)


# -- forms ---------------------------------------------------------------------------------------------------

MAX_FORM_BYTES = 16_384
MAX_TEXT = 200          # a query value is cut to this many characters


def clean_text(value: str | None) -> str:
    """A query value as a page may echo it: trimmed, at most MAX_TEXT characters, printable ones only."""
    value = (value or "").strip()[:MAX_TEXT]
    return "".join(c for c in value if c.isprintable())


def parse_day(text: str, label: str, errors: list[str]) -> date | None:
    """A YYYY-MM-DD field; a malformed one is reported in `errors` (shown above the page) and ignored."""
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors.append(f"“{label}” is not a date (YYYY-MM-DD): {text!r} is ignored.")
        return None


async def read_form(request: Request) -> dict[str, str]:
    """A posted `application/x-www-form-urlencoded` form (the first value of each field), read without
    python-multipart; a larger or other body reads as empty."""
    from urllib.parse import parse_qsl

    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    out: dict[str, str] = {}
    for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        out.setdefault(name, value)
    return out
