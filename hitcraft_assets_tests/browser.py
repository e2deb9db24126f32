"""Browser test infrastructure for the dashboard: the demo snapshot served by the real app with API keys, and
Debian's Chromium driven by Playwright (the Python package; its own browser download is never used).

Fixtures (import them into a test module, as the API tests import api_fixture's):
- `dashboard`: a served copy of the demo snapshot (api_fixture.build_demo_snapshot, with the anomaly rows the
  API tests add) and its app database with a `read` and an `admin` key: `Dashboard(url, path, keys, app_db)`.
- `browser`: one Chromium for the session, launched from /usr/bin/chromium with the flags that keep it from
  reaching the network on its own (no component updates, no sync, no background networking).
- `page`: a fresh browser context and page (1280 x 900, light) that records console errors, page errors and
  the host of every request; the test fails when any request went to a host other than the server's, or
  the console logged an error. `page.guard` holds the records (`page.guard.assert_clean()`).
- `signed_in_page`: the same, signed in through the sign-in form with the read key.
- `shoot(page, name, folder=SCREENSHOTS)`: full-page screenshots `<name>-light.png` and `<name>-dark.png` (the
  color scheme emulated, the charts redrawn in it first).

Chromium missing is a failure, not a skip (.ci/run installs it with apt-get). `python -m
hitcraft_assets_tests.browser [SNAPSHOT]` serves a snapshot (default: data/serving.duckdb, the one `hitcraft
run` publishes) and writes the screenshots of docs/screenshots/ from it.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from hitcraft_assets.app.auth import create_key
from hitcraft_assets.app.main import create_app
from hitcraft_assets.app.ratelimit import RateLimiter
from hitcraft_assets_tests.api_fixture import ADD_ANOMALIES, demo_snapshot, republish, serving  # noqa: F401

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 900}
LOCAL_SCHEMES = ("data", "blob", "about")


@dataclass
class Dashboard:
    url: str
    path: Path          # the snapshot file served
    keys: dict[str, str]
    app_db: Path
    app: object = None

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc


@contextmanager
def served_dashboard(snapshot: Path, folder: Path) -> Iterator[Dashboard]:
    """`snapshot` copied into `folder` and served by create_app on a loopback port, with a read and an admin key."""
    path = folder / "serving.duckdb"
    shutil.copyfile(snapshot, path)
    app_db = folder / "app.sqlite"
    app = create_app(serving_path=path, app_db_path=app_db)
    app.state.rate_limiter = RateLimiter(10_000, 10_000)
    keys = {"read": create_key(app_db, "reader", "read"), "admin": create_key(app_db, "operator", "admin")}
    with serving(app) as url:
        yield Dashboard(url, path, keys, app_db, app)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, demo_snapshot) -> Iterator[Dashboard]:  # noqa: F811
    folder = tmp_path_factory.mktemp("dashboard")
    source = folder / "source.duckdb"
    shutil.copyfile(demo_snapshot, source)
    republish(source, ADD_ANOMALIES)
    with served_dashboard(source, folder) as d:
        yield d


# -- the browser ------------------------------------------------------------------------------------------

def launch(playwright):
    """Debian's Chromium (never Playwright's download); fails, never skips, when it is not installed."""
    assert Path(CHROMIUM).exists(), (f"{CHROMIUM} is missing: install it with `apt-get install -y chromium` "
                                     f"(.ci/run does)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@dataclass
class Guard:
    """What a page did: console errors, page errors, and the host of every request."""

    host: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    failed_pages: list[int] = field(default_factory=list)      # statuses of pages answered with an error
    failed_resources: list[str] = field(default_factory=list)  # anything else answered with an error

    def watch(self, page) -> None:
        page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on("request", self._request)
        page.on("response", self._response)

    def _response(self, response) -> None:
        if response.status >= 400:
            if response.request.resource_type == "document":
                self.failed_pages.append(response.status)
            else:
                self.failed_resources.append(f"{response.status} {response.url}")

    def _request(self, request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in LOCAL_SCHEMES:
            return
        self.hosts.append(parts.netloc)
        if parts.netloc != self.host:
            self.foreign.append(request.url)

    def assert_clean(self) -> None:
        """No request to another host, no script error, no resource that failed to load, and no console error
        but Chromium's own line for each page a test was answered with an error status on purpose (a 401
        after a wrong key)."""
        assert not self.foreign, f"requests to other hosts than {self.host}: {self.foreign}"
        assert not self.page_errors, f"page errors: {self.page_errors}"
        assert not self.failed_resources, f"resources that failed to load: {self.failed_resources}"
        expected = [f"Failed to load resource: the server responded with a status of {s} " for s in self.failed_pages]
        errors = list(self.console_errors)
        for line in expected:
            found = next((e for e in errors if e.startswith(line)), None)
            if found is not None:
                errors.remove(found)
        assert not errors, f"console errors: {errors}"


def new_page(browser, dashboard: Dashboard, **context_options):
    """A page in a fresh context (no cookies) with a Guard attached as `page.guard`."""
    options = {"viewport": VIEWPORT, "color_scheme": "light", "base_url": dashboard.url, **context_options}
    context = browser.new_context(**options)
    page = context.new_page()
    page.guard = Guard(dashboard.host)
    page.guard.watch(page)
    page.set_default_timeout(15_000)
    return page


def sign_in(page, key: str, path: str = "/") -> None:
    """Through the sign-in form, as a person does."""
    page.goto(path)
    if urlsplit(page.url).path != "/login":
        page.goto("/login?next=" + path)
    page.fill("#key", key)
    with page.expect_navigation():
        page.click("form[action='/login'] button[type=submit]")


@pytest.fixture
def page(browser, dashboard):
    p = new_page(browser, dashboard)
    yield p
    guard = p.guard
    p.context.close()
    guard.assert_clean()


@pytest.fixture
def signed_in_page(page, dashboard):
    sign_in(page, dashboard.keys["read"])
    return page


def wait_for_charts(page, scheme: str | None = None, timeout: float = 15_000) -> int:
    """Wait until every chart on the page is drawn (in `scheme`, when given); returns how many there are."""
    page.wait_for_function(
        """(scheme) => [...document.querySelectorAll('div.vega[data-spec]')].every(
               el => el.dataset.drawn && el.dataset.drawn !== 'error' && (!scheme || el.dataset.drawn === scheme)
                     && el.querySelector('svg'))""",
        arg=scheme, timeout=timeout)
    return page.locator("div.vega[data-spec]").count()


def shoot(page, name: str, folder: Path = SCREENSHOTS) -> tuple[Path, Path]:
    """`<folder>/<name>-light.png` and `-dark.png`: full page, charts redrawn in each scheme first."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        wait_for_charts(page, scheme)
        page.wait_for_timeout(150)
        target = folder / f"{name}-{scheme}.png"
        page.screenshot(path=str(target), full_page=True)
        out.append(target)
    page.emulate_media(color_scheme="light")
    return out[0], out[1]


# -- the screenshots of docs/screenshots ----------------------------------------------------------------------

def write_screenshots(snapshot: Path, folder: Path = SCREENSHOTS) -> list[Path]:
    """Serve `snapshot`, sign in, and shoot every page at 1280 px wide (the sign-in page, the overview, the
    insights feed, the top insight, the metrics explorer, the funnels, a funnel, retention, data quality, the
    reports and, signed in as an admin, a report's preview); four of them also at a phone's 390 px."""
    from playwright.sync_api import sync_playwright

    from hitcraft_assets_tests.api_fixture import read

    top = read(snapshot, "select insight_id from insights where as_of_date = (select max(as_of_date) from insights) "
                         "order by priority_rank limit 1")[0][0]
    funnel = quote(read(snapshot, "select funnel from funnel_steps order by funnel limit 1")[0][0])
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp, served_dashboard(snapshot, Path(tmp)) as d, sync_playwright() as p:
        b = launch(p)
        anonymous = new_page(b, d)
        anonymous.goto("/login")
        written += shoot(anonymous, "login", folder)
        anonymous.guard.assert_clean()
        pg = new_page(b, d)
        sign_in(pg, d.keys["read"])
        pages = (("/", "overview"), ("/insights", "insights"), (f"/insights/{top}", "insight"),
                 ("/metrics?metric=dau&dimension=platform", "metrics"), ("/funnels", "funnels"),
                 (f"/funnels/{funnel}", "funnel"), ("/retention", "retention"), ("/quality", "quality"),
                 ("/reports", "reports"))
        for path, name in pages:
            pg.goto(path)
            written += shoot(pg, name, folder)
        admin = new_page(b, d)
        sign_in(admin, d.keys["admin"], "/reports")
        message = admin.locator("#ledger tbody tr a").first
        if message.count():                       # a snapshot whose pipeline sent no report has no preview
            message.click()
            admin.wait_for_load_state()
            written += shoot(admin, "report", folder)
        phone = new_page(b, d, viewport={"width": 390, "height": 844}, device_scale_factor=2)
        sign_in(phone, d.keys["read"])
        for path, name in (("/", "overview-phone"), (f"/insights/{top}", "insight-phone"),
                           (f"/funnels/{funnel}", "funnel-phone"), ("/quality", "quality-phone")):
            phone.goto(path)
            written += shoot(phone, name, folder)
        for p in (pg, admin, phone):
            p.guard.assert_clean()
        b.close()
    for path in written:
        compress(path)
    return written


def compress(path: Path) -> None:
    """A screenshot for the repository in 256 colours (a third of the size; the pages' flat colours survive)."""
    from PIL import Image

    with Image.open(path) as im:
        quantized = im.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE,
                                               dither=Image.Dither.NONE)
    quantized.save(path, optimize=True)


if __name__ == "__main__":
    from hitcraft_assets import settings

    source = Path(sys.argv[1]) if len(sys.argv) > 1 else settings.serving_path()
    for written_path in write_screenshots(source):
        print(written_path)
