"""The reports page (`/reports`): the email reports the pipeline sent, from the send ledger of the snapshot.

- `/reports`: a chart of messages per report profile, stacked by send status; the ledger (period, profile,
  cadence, recipient, status, sent at; the subject for admin keys), newest period first, `PAGE_SIZE` rows a
  page (`?page=N`). Each row links to its message.
- `/reports/{key}`: one message (`key`: queries.report_ledger's hash of profile, period and recipient, so no
  address is ever in a URL): its ledger row, and for an admin key its subject, its HTML in a sandboxed frame
  and its text part.
- `/reports/{key}/preview`: the stored HTML itself, for the frame (admin keys only).

Access follows GET /v1/reports: a read key sees the ledger (recipients included, as the API gives them to a
read key) and the chart; a message's content (subject, HTML, text) needs an admin key, as `include=body` does.

The preview is the stored HTML served from this server with a policy of its own (PREVIEW_HEADERS): nothing
may run (`sandbox`, and the frame's `sandbox` attribute), nothing may load but inline styles and data: images,
and no link may leave the frame (no popups, no top navigation). The message's charts are attachments that
the snapshot does not hold (`cid:` images): the preview shows a placeholder for each, with its alt text.
"""

from __future__ import annotations

import math
import re
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from hitcraft_assets.app import queries
from hitcraft_assets.app.auth import KeyInfo
from hitcraft_assets.app.snapshot import Snapshot
from hitcraft_assets.app.web import specs
from hitcraft_assets.app.web.metrics import FORMATTERS
from hitcraft_assets.app.web.render import page, page_snapshot
from hitcraft_assets.app.web.session import require_admin, require_user

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
KEY = re.compile(r"^[0-9a-f]{20}$")
STATUS_WORDS = {"sent": "sent", "outbox": "written to the outbox", "sending": "being sent", "failed": "failed",
                "refused": "refused by the server", "unsubscribed": "not sent: unsubscribed",
                "skipped_empty": "not sent: nothing to report", "unknown": "unknown"}
PREVIEW_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'self'; sandbox",
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_CID_IMAGE = re.compile(r"""src=(["'])cid:[^"']*\1""", re.IGNORECASE)
_HEAD = re.compile(r"<head\b[^>]*>", re.IGNORECASE)
# a grey box for an attached image (its alt text stays on the <img>)
_PLACEHOLDER = "data:image/svg+xml," + quote(
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 150 36" preserveAspectRatio="none">'
    '<rect width="150" height="36" fill="#e5e7eb"/><path d="M0 36L150 0" stroke="#9ca3af" stroke-width="1"/></svg>',
    safe="/:=,")


def preview_html(html: str) -> str:
    """The stored HTML as the frame shows it: attached (`cid:`) images replaced by a placeholder, and links
    opened as new windows, which the sandbox refuses (so a click never leaves the frame nor this server)."""
    html = _CID_IMAGE.sub(f'src="{_PLACEHOLDER}"', html)
    head = _HEAD.search(html)
    base = '<base target="_blank">'
    return html[:head.end()] + base + html[head.end():] if head else base + html


def _status(row: dict) -> dict:
    row["status_text"] = STATUS_WORDS.get(row["status"], row["status"])
    return row


def _period(row: dict) -> str:
    start, end = row["period_start"], row["period_end"]
    return specs.fmt_day(start) if start == end else f"{specs.fmt_day(start)} – {specs.fmt_day(end)}"


def _summary(counts: list[dict]) -> str:
    by_profile: dict[str, list[str]] = {}
    for c in counts:
        by_profile.setdefault(c["profile"], []).append(f"{specs.fmt_int(c['messages'])} {c['status']}")
    return ("Messages in the send ledger per report profile: "
            + "; ".join(f"{p}: {', '.join(parts)}" for p, parts in by_profile.items()) + ".")


def _configured(snap: Snapshot) -> list[dict]:
    return list((snap.config or {}).get("reports") or [])


@router.get("/reports", response_class=HTMLResponse)
def reports_page(request: Request, user: KeyInfo = Depends(require_user),
                 snap: Snapshot | None = Depends(page_snapshot)) -> HTMLResponse:
    admin = user.scope == "admin"
    context: dict = {"has_snapshot": snap is not None, "admin": admin, "rows": [], "errors": [], **FORMATTERS}
    if snap is None:
        return page(request, "reports.html", context, active="reports", title="Reports")
    total = queries.report_ledger_size(snap)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    asked = request.query_params.get("page") or "1"
    number = int(asked) if asked.isdigit() and len(asked) < 8 else 0
    if not 1 <= number <= pages:
        context["errors"].append(f"There is no page {asked[:20]!r} of the ledger: showing page "
                                 f"{min(max(number, 1), pages)} of {pages}.")
        number = min(max(number, 1), pages)
    rows = [_status(r) for r in queries.report_ledger(snap, PAGE_SIZE, (number - 1) * PAGE_SIZE, with_subject=admin)]
    for r in rows:
        r["period"] = _period(r)
    counts = queries.report_counts(snap)
    titles = {r["name"]: r.get("title") for r in _configured(snap)}
    context.update(
        has_table=snap.has("email_sends"), configured=_configured(snap), titles=titles, rows=rows, total=total,
        page=number, pages=pages, first_row=(number - 1) * PAGE_SIZE + 1, last_row=(number - 1) * PAGE_SIZE + len(rows),
        counts=counts, spec=specs.report_status_chart(counts) if counts else None,
        caption="Messages per report profile, by send status", summary=_summary(counts))
    return page(request, "reports.html", context, active="reports", title="Reports")


@router.get("/reports/{key}", response_class=HTMLResponse)
def report_page(key: str, request: Request, user: KeyInfo = Depends(require_user),
                snap: Snapshot | None = Depends(page_snapshot)) -> HTMLResponse:
    admin = user.scope == "admin"
    context: dict = {"has_snapshot": snap is not None, "admin": admin, "row": None, **FORMATTERS}
    if snap is None:
        return page(request, "report.html", context, active="reports", title="Report", status_code=503)
    row = queries.report_message(snap, key, include_body=admin) if KEY.match(key) else None
    if row is None:
        return page(request, "error.html", {
            "heading": "No such message",
            "message": "The send ledger of the current snapshot has no message with this link. It may come from an "
                       "older snapshot; pick the message from the list of reports.",
            "actions": [("All reports", "/reports")]}, active="reports", title="No such message", status_code=404)
    _status(row)
    row["period"] = _period(row)
    titles = {r["name"]: r.get("title") for r in _configured(snap)}
    context.update(row=row, title=titles.get(row["profile"]), preview_url=f"/reports/{key}/preview")
    return page(request, "report.html", context, active="reports", title=f"Report: {row['profile']}, {row['period']}")


@router.get("/reports/{key}/preview")
def report_preview(key: str, request: Request, user: KeyInfo = Depends(require_admin),
                   snap: Snapshot | None = Depends(page_snapshot)) -> Response:
    row = queries.report_message(snap, key, include_body=True) if snap is not None and KEY.match(key) else None
    if row is None or row["body"] is None or not row["body"].get("html"):
        return HTMLResponse("<!doctype html><title>No message</title><p>This message is not stored in the "
                            "snapshot.</p>", status_code=404, headers=PREVIEW_HEADERS)
    return HTMLResponse(preview_html(row["body"]["html"]), headers=PREVIEW_HEADERS)
