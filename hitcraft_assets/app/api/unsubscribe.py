"""Unsubscribing from the email digests, with the signed token from the email (no API key, no login):

- ``POST /v1/unsubscribe?token=...``: RFC 8058 one-click, what Gmail and Yahoo POST (body
  ``List-Unsubscribe=One-Click``) when the reader clicks their own "Unsubscribe" button. Answers JSON.
- ``GET /unsubscribe?token=...``: the page the email's footer links to. It only says what the link will do
  and asks for a click: a GET never unsubscribes, because mail scanners and link previews follow links.
- ``POST /unsubscribe`` (the page's form, the token in a hidden field): records it and confirms.

The token (``delivery.unsubscribe.make_token``) names one report profile (or ``*``: all) and one address;
it is checked with the app's secret key (``secret_key()``: ``HITCRAFT_SECRET_KEY`` or ``data/secret_key``),
and the opt-out is recorded in the app database (``AppDB.unsubscribe``), which the pipeline consults before
every send. A bad, tampered or expired token is a 400: the JSON error for the API, a page for the page.
The pages escape everything they show, send no script, keep the token out of the Referer and out of
caches, and ask robots not to index them.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from hitcraft_assets.app.errors import ApiError
from hitcraft_assets.delivery.unsubscribe import (
    ALL_REPORTS,
    AppDB,
    SecretKeyError,
    TokenError,
    secret_key,
    verify_token,
)

router = APIRouter()
_logger = logging.getLogger(__name__)
MAX_FORM_BYTES = 8192
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
}
_REASONS = {
    "TOKEN_EXPIRED": "This unsubscribe link has expired.",
    "TOKEN_SIGNATURE": "This unsubscribe link is not valid: it was changed, or it comes from another server.",
    "TOKEN_MALFORMED": "This unsubscribe link is incomplete or not valid.",
}


def mask_email(email: str) -> str:
    """``a***@example.com``: enough for its owner to recognise it, not enough to harvest it."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def _app_db(request: Request) -> AppDB:
    """The app database: ``app.state.app_db_path`` (set by create_app), else ``HITCRAFT_APP_DB``; one AppDB
    per app, so that its one-time setup runs once."""
    state = request.app.state
    path = getattr(state, "app_db_path", None)
    db = getattr(state, "unsubscribe_db", None)
    if db is None or (path and db.path != Path(path)):
        db = state.unsubscribe_db = AppDB(path or None)
    return db


def _check(token: str) -> tuple[str, str]:
    """(profile, email) of a valid token; TokenError or SecretKeyError otherwise."""
    return verify_token(secret_key(), token or "")


def _describe(profile: str) -> str:
    return "every HitCraft email report" if profile == ALL_REPORTS else f"the “{profile}” email report"


# -- one-click (RFC 8058) ------------------------------------------------------------------------

@router.post(
    "/v1/unsubscribe", tags=["unsubscribe"], summary="One-click unsubscribe (RFC 8058)",
    responses={400: {"description": "The token is malformed (`TOKEN_MALFORMED`), tampered with "
                                    "(`TOKEN_SIGNATURE`) or expired (`TOKEN_EXPIRED`)"}},
)
def one_click(request: Request, token: str = Query("", description="the token from the email's List-Unsubscribe "
                                                                   "header")) -> dict:
    """Records the opt-out that the token names. Mail providers POST here with the body
    `List-Unsubscribe=One-Click`; the signed token, not the body, is what authorises it, so a POST without
    the body works too. No API key."""
    try:
        profile, email = _check(token)
    except TokenError as e:
        raise ApiError(400, e.code, e.message) from None
    except SecretKeyError as e:
        _logger.error(f"unsubscribe: the secret key is unusable: {e.message}")
        raise ApiError(500, e.code, "the server's secret key is misconfigured") from None
    _app_db(request).unsubscribe(email, profile, source="one-click")
    return {"unsubscribed": True, "profile": profile, "email": mask_email(email)}


# -- the page ------------------------------------------------------------------------------------

def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """A small self-contained page; `body` is already escaped HTML."""
    doc = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="robots" content="noindex">
<title>{html.escape(title)} · HitCraft</title>
<style>
  body {{ font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; padding: 3rem 1rem; }}
  main {{ max-width: 32rem; margin: 0 auto; }}
  h1 {{ font-size: 1.4rem; }}
  button {{ font: inherit; padding: .6rem 1.2rem; border-radius: .4rem; border: 1px solid #b42318;
            background: #b42318; color: #fff; cursor: pointer; }}
  .muted {{ opacity: .7; font-size: .9rem; }}
</style>
</head>
<body><main>
<h1>{html.escape(title)}</h1>
{body}
</main></body>
</html>
"""
    return HTMLResponse(doc, status_code=status, headers=PAGE_HEADERS)


def _bad_link(e: TokenError | SecretKeyError) -> HTMLResponse:
    if isinstance(e, SecretKeyError):
        _logger.error(f"unsubscribe: the secret key is unusable: {e.message}")
        return _page("Unsubscribe is unavailable", "<p>The server cannot check unsubscribe links right now. "
                     "Please try again later, or reply to the email to ask to be removed.</p>", status=500)
    reason = _REASONS.get(e.code, _REASONS["TOKEN_MALFORMED"])
    return _page("This link does not work", f"<p>{html.escape(reason)}</p>"
                 "<p>Use the unsubscribe link in a recent email, or reply to the email to ask to be removed.</p>",
                 status=400)


@router.get("/unsubscribe", include_in_schema=False)
def unsubscribe_page(token: str = "") -> HTMLResponse:
    try:
        profile, email = _check(token)
    except (TokenError, SecretKeyError) as e:
        return _bad_link(e)
    return _page("Unsubscribe", f"""<p>Stop sending {html.escape(_describe(profile))} to
<strong>{html.escape(mask_email(email))}</strong>?</p>
<form method="post" action="/unsubscribe">
<input type="hidden" name="token" value="{html.escape(token, quote=True)}">
<button type="submit">Unsubscribe</button>
</form>
<p class="muted">Nothing changes until you press the button.</p>""")


@router.post("/unsubscribe", include_in_schema=False)
async def unsubscribe_form(request: Request) -> HTMLResponse:
    # the form is application/x-www-form-urlencoded with one field: parsed here, without python-multipart
    body = await request.body()
    fields = parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", "replace")) if len(body) <= MAX_FORM_BYTES else {}
    token = (fields.get("token") or [request.query_params.get("token", "")])[0]
    try:
        profile, email = _check(token)
    except (TokenError, SecretKeyError) as e:
        return _bad_link(e)
    db = _app_db(request)
    new = await run_in_threadpool(db.unsubscribe, email, profile, "page")   # may wait for the write lock
    already = "" if new else "<p class=\"muted\">This address had already been unsubscribed.</p>"
    return _page("You are unsubscribed", f"""<p>{html.escape(mask_email(email))} will no longer receive
{html.escape(_describe(profile))}.</p>
{already}""")
