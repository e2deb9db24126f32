"""The web dashboard, served by the API's app at `/`: server-rendered Jinja2 pages over the same serving snapshot
and the same query functions as the API (hitcraft_assets/app/queries.py), signed in with an API key.

`web_router()` gathers the pages: the overview, insights and sign-in pages of this package, the Vega bundle,
and each module of PAGE_MODULES that is installed (`hitcraft_assets.app.web.<name>`, each with a `router`).
None of them is in the OpenAPI document. `create_app` (app/main.py) includes it, mounts `static/` at /static,
answers `session.PageAuthError` with `session.page_auth_error` and adds `render.SecurityHeaders`.
"""

from __future__ import annotations

import importlib

from fastapi import APIRouter, Request
from fastapi.responses import Response

from hitcraft_assets.app.web import render
from hitcraft_assets.app.web.render import STATIC_DIR, VEGA_BUNDLE_PATH

PAGE_MODULES = ["metrics", "funnels", "retention", "quality", "reports"]

__all__ = ["PAGE_MODULES", "STATIC_DIR", "web_router"]


def _vendor_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get(VEGA_BUNDLE_PATH)
    def vega_bundle(request: Request) -> Response:
        return render.vega_bundle_response(request)

    return router


def web_router() -> APIRouter:
    """Every page of the dashboard; a page module of PAGE_MODULES that is not installed is left out (and out
    of the navigation), an error inside one that is installed is raised."""
    from hitcraft_assets.app.web import insights, login, overview

    router = APIRouter(include_in_schema=False)
    router.include_router(_vendor_router())
    router.include_router(login.router)
    router.include_router(overview.router)
    router.include_router(insights.router)
    available = {"overview", "insights"}
    for name in PAGE_MODULES:
        qualified = f"{__name__}.{name}"
        try:
            module = importlib.import_module(qualified)
        except ModuleNotFoundError as exc:
            if exc.name != qualified:
                raise
            continue
        router.include_router(module.router, include_in_schema=False)
        available.add(name)
    render.set_available_pages(available)
    return router
