"""Signing in and out: `/login` (a form that takes an API key and sets the session cookie, see session.py) and
`/logout` (a POST that clears it; GET asks for the click, so that a link or an image cannot sign anyone out)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hitcraft_assets.app.web.render import page, read_form
from hitcraft_assets.app.web.session import (
    SESSION_HOURS,
    check_csrf,
    clear_cookie,
    current_user,
    same_origin,
    safe_next,
    set_cookie,
    sign_in,
)

router = APIRouter(include_in_schema=False)


def _login_page(request: Request, *, next_path: str, error: str | None = None, notice: str | None = None,
                status_code: int = 200) -> HTMLResponse:
    return page(request, "login.html", {"next": next_path, "error": error, "notice": notice,
                                        "session_hours": SESSION_HOURS},
                active="login", title="Sign in", status_code=status_code)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    current_user(request)
    params = request.query_params
    notice = None
    if params.get("expired"):
        notice = "Your session ended (it expired, or its key was revoked). Sign in again."
    elif params.get("signed_out"):
        notice = "You are signed out."
    return _login_page(request, next_path=safe_next(params.get("next")), notice=notice)


@router.post("/login", response_class=HTMLResponse)
async def login_submit(request: Request) -> Response:
    form = await read_form(request)
    next_path = safe_next(form.get("next"))
    if not same_origin(request):
        return _login_page(request, next_path=next_path, status_code=403,
                           error="This sign-in form was sent from another site; open the dashboard and sign in there.")
    key = form.get("key", "").strip()
    if not key:
        return _login_page(request, next_path=next_path, status_code=400,
                           error="Enter an API key (it starts with hc_).")
    signed = sign_in(request, key)
    if signed is None:
        return _login_page(request, next_path=next_path, status_code=401,
                           error="That key is unknown or revoked. Check it, or make one with "
                                 "hitcraft api-keys create NAME.")
    _, cookie = signed
    response = RedirectResponse(next_path, status_code=303)
    set_cookie(request, response, cookie)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/logout", response_class=HTMLResponse)
def logout_form(request: Request) -> Response:
    if current_user(request) is None:
        return RedirectResponse("/login", status_code=303)
    return page(request, "logout.html", {}, active="logout", title="Sign out")


@router.post("/logout")
async def logout_submit(request: Request) -> Response:
    form = await read_form(request)
    user = current_user(request)
    if user is not None and not check_csrf(request, form.get("csrf_token")):
        return page(request, "error.html", {
            "heading": "Sign-out not confirmed",
            "message": "This sign-out request did not come from the dashboard's own form. Use the Sign out "
                       "button to sign out.",
            "actions": [("Sign out", "/logout")]}, active="logout", title="Sign out", status_code=403)
    response = RedirectResponse("/login?signed_out=1", status_code=303)
    clear_cookie(request, response)
    response.headers["Cache-Control"] = "no-store"
    return response
