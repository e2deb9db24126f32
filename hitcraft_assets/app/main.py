"""The ASGI app: the REST API under /v1 over the serving snapshot, /openapi.json, /docs (offline), and the web
dashboard at / (hitcraft_assets/app/web/: its pages, /static, its sign-in redirect and its security headers).

`create_app()` builds it; `hitcraft serve` runs it under uvicorn. It reads only the serving snapshot
(HITCRAFT_SERVING_PATH, opened read-only and reopened when the pipeline swaps in a new one) and the app
database (HITCRAFT_APP_DB: API keys, unsubscribes), never the warehouse, and it never imports Dagster.

Every error is `{"error": {"code", "message"}}`: ApiError from the routes and the key check, FastAPI's
validation errors reshaped into VALIDATION_ERROR naming the parameter, unknown paths and methods, and (never
expected) an unhandled exception as a 500 INTERNAL_ERROR that says nothing about the internals. One log line
per request: `GET /v1/insights 200 3.1 ms key=NAME`, the path without its query string (which may hold an
unsubscribe token), the API key's name when one was accepted, never the key.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hitcraft_assets.app.api import anomalies, funnels, health, insights, metrics, reports, retention
from hitcraft_assets.app.api.unsubscribe import router as unsubscribe_router
from hitcraft_assets.app.config import load_app_config
from hitcraft_assets.app.errors import ApiError
from hitcraft_assets.app.openapi import DOCS_HEADERS, DOCS_HTML
from hitcraft_assets.app.snapshot import SnapshotStore
from hitcraft_assets.app.web import web_router
from hitcraft_assets.app.web.render import SecurityHeaders, static_files
from hitcraft_assets.app.web.session import PageAuthError, page_auth_error

API_VERSION = "1.0.0"
ACCESS_LOGGER = "hitcraft_assets.access"
_logger = logging.getLogger("hitcraft_assets.app")

DESCRIPTION = """\
Read-only JSON over the serving snapshot that the HitCraft pipeline publishes after each run: ranked insights
with their evidence, daily metrics with anomaly bands and change points, funnels, retention, anomalies and the
email digests sent.

- **Auth**: `Authorization: Bearer <key>` (keys from `hitcraft api-keys create NAME [--scope read|admin]`); every
  /v1 endpoint but `/v1/health` and `/v1/unsubscribe` needs a key with the `read` scope (`admin` includes it).
- **Lists** answer `{"items": [...], "next_cursor": "..." | null}`; pass `next_cursor` back as `cursor`. Pages
  stay exact while a new snapshot is published between two of them, or answer 409 `SNAPSHOT_CHANGED`.
- **Errors** answer `{"error": {"code": "...", "message": "..."}}` with 400, 401, 403, 404, 409, 422, 429 or 503.
- **Freshness**: `/v1/health` says which snapshot is served, when it was built and the last day it holds.
"""


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = list(err.get("loc", ()))
        where = str(loc[0]) if loc else "request"
        names = [str(x) for x in loc[1:] if not isinstance(x, int)]
        items = [f" (value {x + 1})" for x in loc[1:] if isinstance(x, int)]
        kind = {"query": "query parameter", "path": "path parameter", "header": "header"}.get(where, where)
        parts.append(f"{kind} '{'.'.join(names) or 'body'}'{''.join(items)}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is not valid"


class AccessLog:
    """ASGI middleware: one line per HTTP request, method, path (no query string), status, milliseconds to the
    last byte, and the accepted key's name. Control characters in the path are escaped (no forged lines)."""

    def __init__(self, app, logger_name: str = ACCESS_LOGGER) -> None:
        self.app = app
        self.logger = logging.getLogger(logger_name)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def watch(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            ms = (time.perf_counter() - t0) * 1000
            path = "".join(c if c.isprintable() and c != " " else f"\\x{ord(c):02x}"
                           for c in scope.get("path", "")[:300])
            key = (scope.get("state") or {}).get("api_key_name")
            self.logger.info("%s %s %d %.1f ms%s", scope.get("method", "-"), path, status, ms,
                             f" key={key}" if key else "")


def _ensure_log_handler() -> None:
    """`hitcraft serve` configures logging for hitcraft_assets.*; under a bare `uvicorn ...:app` nothing does,
    and the request lines would vanish: give the access logger a stderr handler then, and only then."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not logger.hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)


def _openapi(app: FastAPI) -> dict:
    """FastAPI's document, with its stock 422 schema (HTTPValidationError) replaced by the one this app answers
    (`{"error": {"code": "VALIDATION_ERROR", ...}}`, see `validation_error`), on every operation."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        from hitcraft_assets.app.models import ERROR_MODELS

        doc = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                          description=app.description, routes=app.routes)
        stock = "#/components/schemas/HTTPValidationError"
        ours = ERROR_MODELS[422].__name__
        for item in doc.get("paths", {}).values():
            for op in item.values():
                answer = op.get("responses", {}).get("422")
                schema = (answer or {}).get("content", {}).get("application/json", {}).get("schema", {})
                if schema.get("$ref") == stock:
                    answer["description"] = "A parameter is malformed or out of range (`VALIDATION_ERROR`)"
                    answer["content"]["application/json"]["schema"] = {"$ref": f"#/components/schemas/{ours}"}
        schemas = doc.get("components", {}).get("schemas", {})
        if ours not in schemas:
            from pydantic.json_schema import models_json_schema

            _, defs = models_json_schema([(ERROR_MODELS[422], "serialization")],
                                         ref_template="#/components/schemas/{model}")
            schemas.update(defs.get("$defs", {}))
        if stock not in json.dumps(doc):
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
        app.openapi_schema = doc
    return app.openapi_schema


def create_app(serving_path: Path | None = None, app_db_path: Path | None = None,
               cors_origins: list[str] | None = None) -> FastAPI:
    """The app. Arguments left out come from HITCRAFT_SERVING_PATH, HITCRAFT_APP_DB and HITCRAFT_CORS_ORIGINS
    (comma-separated origins; CORS is off unless some are given). Nothing is opened until the first request."""
    config = load_app_config(serving_path, app_db_path, cors_origins)
    snapshots = SnapshotStore(config.serving_path)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        _ensure_log_handler()
        yield
        snapshots.close()

    app = FastAPI(title="HitCraft Analytics API", version=API_VERSION, description=DESCRIPTION,
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json", lifespan=lifespan)
    app.state.config = config
    app.state.app_db_path = config.app_db_path      # auth.require_scope reads the keys here
    app.state.snapshots = snapshots
    app.state.logs_requests = True                   # `hitcraft serve` adds no second access log

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": {"code": "VALIDATION_ERROR", "message": _validation_message(exc)}},
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, f"HTTP_{exc.status_code}")
        message = {404: f"no such endpoint: {request.url.path[:200]} (see /docs)",
                   405: f"{request.method} is not allowed here"}.get(exc.status_code, str(exc.detail))
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    # the dashboard's pages: a page that needs a session redirects to /login (or answers a 403 page)
    app.add_exception_handler(PageAuthError, page_auth_error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        _logger.exception("unhandled error in %s %s", request.method, request.url.path)
        return JSONResponse({"error": {"code": "INTERNAL_ERROR", "message": "an unexpected error; it is logged"}},
                            status_code=500)

    for module in (health, insights, metrics, funnels, retention, anomalies, reports):
        app.include_router(module.router)
    app.include_router(unsubscribe_router)
    app.include_router(web_router())                    # the dashboard (web/): /, /insights, /login, ...
    app.mount("/static", static_files(), name="static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(DOCS_HTML, headers=DOCS_HEADERS)

    app.openapi = lambda: _openapi(app)

    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], max_age=600)
    app.add_middleware(SecurityHeaders)                 # CSP and friends on the dashboard's HTML
    app.add_middleware(AccessLog)
    return app
