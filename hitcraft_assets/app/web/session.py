"""Dashboard sessions: signing in with an API key sets a signed cookie; each page request checks it and the key.

- The cookie `hc_session` holds `<payload>.<signature>`, both URL-safe base64 without padding. The payload is
  the compact JSON `{"k": key_id, "n": name, "s": scope, "e": expiry (unix s), "r": random nonce}`: never the
  key, never its hash. The signature is HMAC-SHA256 with `unsubscribe.secret_key()` over a purpose label and
  the payload, so an unsubscribe token (signed with the same key for another purpose) never passes as a
  session, and back. It lasts `SESSION_HOURS`; the cookie is HttpOnly, SameSite=Lax, Path=/, and Secure when
  the page is served over https (the request's scheme, or an https `HITCRAFT_PUBLIC_URL`).
- On every request the key the cookie names is looked up in the app database (`api_keys`, as auth.verify
  does): a key revoked with `hitcraft api-keys revoke` ends its sessions at the next request, with no restart.
  The name and scope must still match. The key's last use is recorded as for the API.
- `require_user` (a dependency) gives the `KeyInfo` of a valid session, or raises `LoginRequired`: the app's
  handler (`page_auth_error`) answers 303 to `/login?next=<the path asked for>` (htmx: `HX-Redirect`).
  `require_admin` also raises `AdminRequired` for a read key: a 403 page. Pages need `read` (every key has it).
- CSRF: SameSite=Lax keeps the cookie off cross-site POSTs; the sign-out form also carries `csrf_token`
  (an HMAC of the session's nonce), and sign-in refuses a cross-site `Origin` / `Sec-Fetch-Site`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from hitcraft_assets import settings
from hitcraft_assets.app import auth
from hitcraft_assets.app.auth import KeyInfo

COOKIE = "hc_session"
SESSION_HOURS = 12
PURPOSE = b"hitcraft:dashboard-session:v1\n"
CSRF_PURPOSE = b"hitcraft:dashboard-csrf:v1\n"
MAX_COOKIE_CHARS = 1024
_B64 = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class Session:
    key_id: str
    name: str
    scope: str
    expires: int          # unix seconds
    nonce: str


# -- signing -----------------------------------------------------------------------------------------

def _secret() -> bytes:
    from hitcraft_assets.delivery.unsubscribe import secret_key

    return secret_key()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, purpose: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, purpose + payload, hashlib.sha256).digest()


def make_cookie(secret: bytes, key_id: str, name: str, scope: str, *, now: float | None = None,
                hours: float = SESSION_HOURS) -> str:
    now = time.time() if now is None else now
    payload = json.dumps({"k": key_id, "n": name, "s": scope, "e": int(now + hours * 3600),
                          "r": secrets.token_urlsafe(12)}, separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_sign(secret, PURPOSE, payload))}"


def read_cookie(secret: bytes, value: str | None, *, now: float | None = None) -> Session | None:
    """The session a cookie holds when its signature is ours and it has not expired; else None."""
    if not value or len(value) > MAX_COOKIE_CHARS or value.count(".") != 1:
        return None
    body, sig = value.split(".")
    if not (_B64.match(body) and _B64.match(sig)):
        return None
    try:
        payload, signature = _unb64(body), _unb64(sig)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(signature, _sign(secret, PURPOSE, payload)):
        return None
    try:
        data = json.loads(payload)
        session = Session(str(data["k"]), str(data["n"]), str(data["s"]), int(data["e"]), str(data["r"]))
    except (ValueError, KeyError, TypeError):
        return None
    if session.expires <= (time.time() if now is None else now):
        return None
    return session


def csrf_for(secret: bytes, session: Session) -> str:
    return _b64(_sign(secret, CSRF_PURPOSE, session.nonce.encode()))[:32]


# -- the key behind a session ----------------------------------------------------------------------------

def _active_key(app_db, session: Session) -> KeyInfo | None:
    """The key the session names when it is still active with the same name and scope (read like auth.verify:
    this thread's connection to the app database, one indexed SELECT)."""
    db = auth._db(app_db)
    try:
        row = auth._reader(db).execute("select name, scope, revoked_at, last_used_at from api_keys where key_id = ?",
                                       (session.key_id,)).fetchone()
    except sqlite3.OperationalError as exc:
        if auth._no_table(exc):
            return None
        raise
    if row is None:
        return None
    name, scope, revoked_at, last_used_at = row
    if revoked_at is not None or name != session.name or scope != session.scope:
        return None
    auth._touch(db, session.key_id, last_used_at)
    return KeyInfo(name, scope)


def _app_db(request: Request):
    return getattr(request.app.state, "app_db_path", None) or None


def current_user(request: Request) -> KeyInfo | None:
    """The signed-in key of this request (checked once per request), or None."""
    if hasattr(request.state, "user"):
        return request.state.user
    session = read_cookie(_secret(), request.cookies.get(COOKIE))
    user = _active_key(_app_db(request), session) if session else None
    request.state.user = user
    request.state.session = session if user else None
    if user is not None:
        request.state.api_key_name = user.name      # the access log names the key, as for the API
    return user


def csrf_token(request: Request) -> str | None:
    session = getattr(request.state, "session", None)
    return csrf_for(_secret(), session) if session else None


def check_csrf(request: Request, token: str | None) -> bool:
    expected = csrf_token(request)
    return bool(expected and token and hmac.compare_digest(expected, token))


# -- the dependencies and their answers ---------------------------------------------------------------------

class PageAuthError(Exception):
    """Raised by the page dependencies; `page_auth_error` answers it."""


class LoginRequired(PageAuthError):
    def __init__(self, next_path: str, expired: bool = False) -> None:
        super().__init__(next_path)
        self.next_path = next_path
        self.expired = expired


class AdminRequired(PageAuthError):
    def __init__(self, user: KeyInfo) -> None:
        super().__init__(user.name)
        self.user = user


def _asked_for(request: Request) -> str:
    path = request.url.path
    if request.url.query:
        path += "?" + request.url.query
    if request.headers.get("HX-Request") == "true":   # a fragment: come back to the page the user was on
        current = request.headers.get("HX-Current-URL")
        if current:
            parts = urlsplit(current)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
    return path


def require_user(request: Request) -> KeyInfo:
    """A dependency: the signed-in key (any scope: both include read), else a redirect to the sign-in page."""
    user = current_user(request)
    if user is None:
        raise LoginRequired(_asked_for(request), expired=COOKIE in request.cookies)
    return user


def require_admin(request: Request) -> KeyInfo:
    """A dependency: the signed-in key when its scope is admin; a read key gets a 403 page."""
    user = require_user(request)
    if user.scope != "admin":
        raise AdminRequired(user)
    return user


def safe_next(value: str | None) -> str:
    """A local path to go to after signing in: never another host (`//x`, `/\\x`, `https://x`), never
    /login or /logout; otherwise the overview."""
    if not value or len(value) > 2000 or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    if any(not c.isprintable() or c in " \\" for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path in ("/login", "/logout"):
        return "/"
    return value


def login_url(next_path: str) -> str:
    target = safe_next(next_path)
    return "/login" if target == "/" else f"/login?next={quote(target, safe='/')}"


def page_auth_error(request: Request, exc: PageAuthError) -> Response:
    """The app's handler of PageAuthError: 303 to the sign-in page, or the 403 page."""
    if isinstance(exc, LoginRequired):
        url = login_url(exc.next_path)
        if exc.expired:
            url += ("&" if "?" in url else "?") + "expired=1"
        if request.headers.get("HX-Request") == "true":
            response: Response = Response(status_code=204, headers={"HX-Redirect": url})
        else:
            response = RedirectResponse(url, status_code=303)
        if exc.expired:
            clear_cookie(request, response)
        response.headers["Cache-Control"] = "no-store"
        return response
    from hitcraft_assets.app.web.render import page

    return page(request, "error.html", {
        "heading": "This page needs an admin key",
        "message": f"You are signed in with “{exc.user.name}”, a read key. Sign in with an admin key; make one "
                   f"with:",
        "command": "hitcraft api-keys create NAME --scope admin",
        "actions": [("Sign in with another key", "/login")]},
        active="", title="Admin key needed", status_code=403)


# -- the cookie -------------------------------------------------------------------------------------------

def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or settings.public_url().startswith("https://")


def set_cookie(request: Request, response: Response, value: str) -> None:
    response.set_cookie(COOKIE, value, max_age=SESSION_HOURS * 3600, path="/", httponly=True, samesite="lax",
                        secure=_secure(request))


def clear_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=_secure(request))


def sign_in(request: Request, presented: str) -> tuple[KeyInfo, str] | None:
    """Check a key typed into the sign-in form; (its KeyInfo, the cookie value) when it is active."""
    presented = (presented or "").strip()
    info = auth.verify(_app_db(request), presented)
    if info is None:
        return None
    key_id = auth._KEY.match(presented).group(1)
    return info, make_cookie(_secret(), key_id, info.name, info.scope)


def same_origin(request: Request) -> bool:
    """False when the browser says the form was posted from another site (login CSRF)."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    origin = request.headers.get("origin")
    if origin:
        return origin != "null" and urlsplit(origin).netloc == request.headers.get("host", "")
    return True
