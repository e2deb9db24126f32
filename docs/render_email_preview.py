"""Render a digest email to a folder and screenshot it in light and dark mode (headless Chromium).

Usage (from the repository root)::

    python docs/render_email_preview.py                              # the built-in sample digest below
    python docs/render_email_preview.py --digest pkg.module:function # any callable returning a Digest
    python docs/render_email_preview.py --json digest.json           # a Digest as JSON (see digest_from_json)
    options: --out /tmp/email-sample   --shots docs   --name email-daily   --no-shots

It writes to --out: ``digest.html`` (the email's HTML exactly as sent, images as ``cid:``), ``preview.html``
(a copy in which each ``cid:<id>`` points at the PNG written beside it, the only change), the PNGs,
``digest.txt`` (the text part), ``subject.txt`` and ``message.eml`` (the whole MIME message). Then, unless
--no-shots, it opens preview.html in Chromium at a 680px-wide viewport and saves full-page screenshots
``<shots>/<name>-light.png`` and ``<shots>/<name>-dark.png`` (``prefers-color-scheme: dark`` emulated, as
Apple Mail and Outlook.com apply it).

JSON: the fields of ``hitcraft_assets.delivery.model.Digest``, dates as ISO strings, ``kpis`` and
``insights`` as lists of objects with the fields of Kpi / DigestInsight, series (``sparkline``, ``chart``) as
objects with the fields of Series, ``evidence`` as a list of ``[label, value]`` pairs.

Needs Chromium and playwright: ``apt-get install -y chromium`` and ``pip install playwright``; the browser is
started with no network beyond the local file (``file://``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from hitcraft_assets.delivery.email.mime import build_message
from hitcraft_assets.delivery.email.render import render_digest
from hitcraft_assets.delivery.model import Digest, DigestInsight, Kpi, Series

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


# ------------------------------------------------------------------------------------------- sample digest


def sample_digest() -> Digest:
    """A realistic daily digest: 3 KPIs with sparklines, 4 insights of different kinds with charts (a band
    and a marker, a change point, a percent series with a gap, a trend). Made-up numbers, consistent within
    each insight (the evidence is what the title and summary quote)."""
    end = date(2026, 11, 30)
    days = tuple(end - timedelta(days=29 - i) for i in range(30))

    def wave(base: float, amp: float, slope: float = 0.0, phase: float = 0.0) -> list[float]:
        return [base + slope * i + amp * math.sin(i / 1.1 + phase) + amp * 0.4 * math.sin(i * 2.3) for i in range(30)]

    dau = [round(v) for v in wave(4200, 160, 6)]
    dau[-1] = 3126
    expected = [round(4200 + 6 * i + 60 * math.sin(i / 1.1)) for i in range(30)]
    new_users = [round(v) for v in wave(610, 45, 1.5, 1.0)]
    conversion = [0.412 + 0.0009 * i + 0.012 * math.sin(i / 2) for i in range(30)]
    conversion[-2:] = [0.431, 0.448]
    stems = [round(v) for v in wave(880, 40, 0, 2.0)]
    stems = [s if i < 16 else s + 240 for i, s in enumerate(stems)]
    lyrics = [0.27 - 0.0021 * i + 0.006 * math.sin(i) for i in range(30)]
    lyrics[12] = None
    lyrics[13] = None
    url = "https://analytics.hitcraft.example/insights/"
    return Digest(
        profile="daily-product", cadence="daily", title="HitCraft daily product digest", product="HitCraft",
        period_start=end, period_end=end, period_label="Monday 30 November 2026",
        recipient_email="maya.product@hitcraft.example", recipient_name="Maya", recipient_role="product",
        recipient_timezone="Europe/Berlin", greeting="Good morning, Maya",
        sent_label="Tuesday 1 December 2026, 07:00 (Europe/Berlin)",
        kpis=(
            Kpi("dau", "Daily active users", 3126, 4337, (3126 - 4337) / 4337,
                sparkline=Series("Daily active users", days, tuple(dau))),
            Kpi("new_users", "New users", new_users[-1], new_users[-2], new_users[-1] / new_users[-2] - 1,
                sparkline=Series("New users", days, tuple(new_users))),
            Kpi("funnel:Music Production", "Music Production conversion", conversion[-1], conversion[-2],
                conversion[-1] / conversion[-2] - 1, percent=True,
                sparkline=Series("Music Production conversion", days, tuple(conversion), percent=True)),
        ),
        insights=(
            DigestInsight(
                "a3f1c09e2b7d", "anomaly", "new",
                "Daily active users dropped to 3,126 (expected 4,371) for platform = iOS",
                "Daily active users on 30 Nov 2026 were 3,126 against an expected 4,371 (range 4,150 to 4,592); "
                "iOS 18.2 users account for 81% of the drop.",
                "Check the iOS 18.2 release shipped on 29 Nov 2026 for a login or launch regression before the "
                "next app-store rollout stage; compare crash reports for that version.",
                "studio-team@hitcraft.example", "production",
                (("Observed", "3,126"), ("Expected", "4,371"), ("Expected range", "4,150 to 4,592"),
                 ("Share of the drop from iOS 18.2", "81%"), ("Day", "2026-11-30")),
                url + "a3f1c09e2b7d",
                Series("Daily active users, platform = iOS", days, tuple(dau), tuple(expected),
                       tuple(e - 221 for e in expected), tuple(e + 221 for e in expected), end, "3,126 on 30 Nov"),
            ),
            DigestInsight(
                "7be20d4471c3", "risk", "new",
                "Lyrics Composition: 38% of users drop between Prompt Selected and Lyrics Completed, up from 29% "
                "in the previous four weeks across Android, iOS and web",
                "Completion of the lyrics funnel fell from 27% to 21% over 30 days; the drop-off concentrates in "
                "the last step.",
                "Review the prompt-to-lyrics step with the lyrics team: watch five session recordings of users "
                "who selected a prompt and left, and check the generation latency for prompts added this month.",
                "lyrics-team@hitcraft.example", "lyrics",
                (("Drop between Prompt Selected and Lyrics Completed", "38%"), ("Previous four weeks", "29%"),
                 ("Conversion, 30 days ago", "27%"), ("Conversion, latest", "21%"), ("Users in step", "1,942")),
                url + "7be20d4471c3",
                Series("Lyrics Composition conversion, all users", days, tuple(lyrics), percent=True),
            ),
            DigestInsight(
                "c5d8e1a09f42", "success", "ongoing",
                "Stem Separation rose from 880 to 1,121 since 2026-11-17 (all users)",
                "Daily Stem Separation events stepped up by 27% on 17 Nov 2026 and have held since.",
                "Tell the studio team the new stem presets landed; consider featuring Stem Separation in "
                "onboarding for producers.",
                "studio-team@hitcraft.example", "production",
                (("Mean before", "880"), ("Mean after", "1,121"), ("Shift", "+27%"), ("Since", "2026-11-17")),
                url + "c5d8e1a09f42",
                Series("Stem Separation per day, all users", days, tuple(stems), marker=days[16],
                       marker_label="Change point 17 Nov"),
            ),
            DigestInsight(
                "e09b6a3c1d57", "opportunity", "new",
                "High-converting path few users take: utm_source = \u201cpodcast\u201d (channel) at Production "
                "Started (Onboarding), 58% vs 41%",
                "Users from the podcast channel complete onboarding at 58% against 41% for everyone else, but "
                "they are 3.2% of sign-ups.",
                "Ask growth whether the podcast campaign can be scaled; its sign-ups convert best of all channels.",
                None, "onboarding",
                (("Conversion, podcast", "58%"), ("Conversion, other channels", "41%"), ("Share of sign-ups", "3.2%"),
                 ("q-value", "0.0004")),
                url + "e09b6a3c1d57",
                Series("New users, channel = podcast", days, tuple(round(v / 30) for v in new_users)),
            ),
        ),
        dashboard_url="https://analytics.hitcraft.example/",
        unsubscribe_url="https://analytics.hitcraft.example/unsubscribe?t=eyJwIjoiZGFpbHktcHJvZHVjdCJ9.sig",
    )


# ------------------------------------------------------------------------------------------------- JSON


def _series(d: dict | None) -> Series | None:
    if d is None:
        return None
    d = dict(d)
    d["dates"] = tuple(date.fromisoformat(x) for x in d["dates"])
    for k in ("values", "expected", "lower", "upper"):
        if d.get(k) is not None:
            d[k] = tuple(d[k])
    if d.get("marker"):
        d["marker"] = date.fromisoformat(d["marker"])
    return Series(**d)


def digest_from_json(data: dict) -> Digest:
    data = dict(data)
    for k in ("period_start", "period_end"):
        data[k] = date.fromisoformat(data[k])
    data["kpis"] = tuple(Kpi(**{**k, "sparkline": _series(k.get("sparkline"))}) for k in data["kpis"])
    data["insights"] = tuple(
        DigestInsight(**{**i, "evidence": tuple(tuple(e) for e in i["evidence"]), "chart": _series(i.get("chart"))})
        for i in data["insights"])
    return Digest(**data)


def load_digest(args: argparse.Namespace) -> Digest:
    if args.json:
        return digest_from_json(json.loads(Path(args.json).read_text(encoding="utf-8")))
    if args.digest:
        module, _, name = args.digest.partition(":")
        return getattr(importlib.import_module(module), name)()
    return sample_digest()


# ---------------------------------------------------------------------------------------------- preview


def write_preview(digest: Digest, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rendered = render_digest(digest)
    t1 = time.perf_counter()
    again = render_digest(digest)
    t2 = time.perf_counter()
    assert again == rendered, "rendering is not deterministic"
    preview = rendered.html
    for cid, png in rendered.images.items():
        name = cid.split("@", 1)[0] + ".png"
        (out / name).write_bytes(png)
        preview = preview.replace(f'src="cid:{cid}"', f'src="{name}"')
    (out / "digest.html").write_text(rendered.html, encoding="utf-8")
    (out / "preview.html").write_text(preview, encoding="utf-8")
    (out / "digest.txt").write_text(rendered.text, encoding="utf-8")
    (out / "subject.txt").write_text(rendered.subject + "\n", encoding="utf-8")
    msg = build_message(rendered, sender="HitCraft <digest@hitcraft.example>", to=digest.recipient_email,
                        to_name=digest.recipient_name, message_id="<preview@hitcraft.example>",
                        date=datetime.now(UTC), unsubscribe_url=digest.unsubscribe_url)
    (out / "message.eml").write_bytes(msg.as_bytes())
    sizes = ", ".join(f"{cid} {len(png) / 1024:.1f} KB" for cid, png in rendered.images.items())
    print(f"rendered in {t1 - t0:.2f} s (again: {t2 - t1:.2f} s); {len(rendered.html) / 1024:.1f} KB HTML, "
          f"{len(msg.as_bytes()) / 1024:.0f} KB message; images: {sizes}")
    return out / "preview.html"


def screenshot(preview: Path, shots: Path, name: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    shots.mkdir(parents=True, exist_ok=True)
    paths = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for scheme in ("light", "dark"):
                page = browser.new_page(viewport={"width": 680, "height": 900}, color_scheme=scheme,
                                        device_scale_factor=1)
                page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                           else route.abort())
                page.goto(preview.resolve().as_uri())
                page.wait_for_load_state("load")
                path = shots / f"{name}-{scheme}.png"
                page.screenshot(path=str(path), full_page=True)
                paths.append(path)
                page.close()
        finally:
            browser.close()
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--digest", help="module:callable returning a Digest")
    ap.add_argument("--json", help="a Digest as JSON")
    ap.add_argument("--out", default="/tmp/email-sample")
    ap.add_argument("--shots", default=str(Path(__file__).parent))
    ap.add_argument("--name", default="email-daily")
    ap.add_argument("--no-shots", action="store_true")
    args = ap.parse_args(argv)
    preview = write_preview(load_digest(args), Path(args.out))
    print(f"wrote {preview.parent}/")
    if not args.no_shots:
        for path in screenshot(preview, Path(args.shots), args.name):
            print(f"screenshot {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
