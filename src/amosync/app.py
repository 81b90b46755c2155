"""The FastAPI application: routers, error handlers, middlewares and the lifespan."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from amosync import __version__
from amosync.accounts import install as accounts_jobs
from amosync.accounts import tasks as accounts_tasks
from amosync.accounts.amocrm_hooks import router as amocrm_hooks_router
from amosync.accounts.endpoints import router as accounts_router
from amosync.accounts.rpc import router as rpc_router
from amosync.config import Settings, get_settings
from amosync.consent import hooks as consent_hooks
from amosync.consent import writeback as consent_writeback
from amosync.consent.endpoints import router as consent_router
from amosync.errors import AppError, TransientUpstreamError, UpstreamError
from amosync.http.health import router as health_router
from amosync.http.middleware import MAX_BODY, BodyLimitMiddleware, WidgetCORSMiddleware
from amosync.runtime.services import Services, build_services, freeze_startup_heap
from amosync.segments import service as segments_jobs
from amosync.segments.endpoints import accounts_router as account_update_router
from amosync.segments.endpoints import router as settings_router
from amosync.sync import jobs as sync_jobs
from amosync.sync.endpoints import router as sync_router
from amosync.sync.webhooks import FAST_ROUTES as WEBHOOK_FAST_ROUTES
from amosync.sync.webhooks import webhook_router
from amosync.web import install_dashboard
from amosync.worker.context import Handler
from amosync.worker.endpoints import router as worker_router
from amosync.worker.metrics import router as metrics_router
from amosync.worker.tasks import registered

log = structlog.get_logger()

# The modules that declare the domains' jobs and attach their handlers (`@TASK.runs`): once
# they are imported, a worker runs every kind (`amosync.worker.tasks`). The worker imports
# no domain, so the modules above the domains (this one, the command line) load them.
JOB_MODULES = (
    accounts_tasks,
    accounts_jobs,
    consent_hooks,
    consent_writeback,
    segments_jobs,
    sync_jobs,
)


def job_handlers() -> dict[str, Handler]:
    """Every job kind's handler (the domains' job modules are loaded with this module)."""
    return registered()


# Routes the amoCRM widget calls from the account's page (CORS allowed for amoCRM origins),
# with their widget methods: PUT/POST/DELETE /accounts/{id} are admin-only and get no CORS;
# the settings are the widget's to change (its advanced settings page).
WIDGET_PATHS: dict[str, tuple[str, ...]] = {
    "/accounts/{account_id}/settings": ("GET", "PUT"),
    "/vidget/unisender": ("POST",),
    "/acchasuni": ("GET",),
    "/unisender/lists": ("GET",),
    "/sync": ("GET", "POST"),
    "/accounts/sync": ("GET",),
    "/accounts/unsync": ("GET",),
    "/accounts/integrations/": ("GET",),
    "/accounts/": ("GET",),
}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def error_response(status: int, code: str, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:10]:
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        message = error.get("msg", "invalid value")
        if error.get("type") == "json_invalid":
            return "the body is not valid JSON"
        parts.append(f"{location}: {message}")
    return "; ".join(parts) or "the request is not valid"


def _out_of_range(exc: BaseException) -> bool:
    """Whether an OverflowError is among the causes of `exc`."""
    current: BaseException | None = exc
    for _ in range(8):
        if current is None:
            return False
        if isinstance(current, OverflowError):
            return True
        current = current.__cause__ or current.__context__
    return False


def _cause(exc: UpstreamError) -> str:
    if exc.code:
        return f"error {exc.code}"
    return f"HTTP {exc.status}" if exc.status is not None else "no answer"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        return error_response(exc.status, exc.code, exc.detail, **headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _describe_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such route; see /docs for the API"
        if exc.status_code == 405:
            detail = "this route does not accept that method; see /docs"
        return error_response(exc.status_code, code, detail, **(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the log; the caller gets nothing that could leak internals.
        log.exception("request.failed", path=request.url.path, error_type=type(exc).__name__)
        return error_response(
            500, "internal_error", "something went wrong on our side; it has been logged"
        )

    @app.exception_handler(UpstreamError)
    async def _upstream(request: Request, exc: UpstreamError) -> JSONResponse:
        # amoCRM or Unisender failed during a request (checking a key, exchanging a code),
        # after the client's own retries: their fault, not ours, and worth saying which.
        # The message names the API and status only: the body stays in the log.
        log.warning(
            "request.upstream_failed",
            path=request.url.path,
            api=exc.api,
            status=exc.status,
            error_code=exc.code,
            error=exc.message,
        )
        name = {"amocrm": "amoCRM", "unisender": "Unisender"}.get(exc.api, exc.api)
        if isinstance(exc, TransientUpstreamError):
            return error_response(
                503,
                "upstream_unavailable",
                f"{name} is not answering right now ({_cause(exc)}); try again in a minute",
                **{"Retry-After": "60"},
            )
        return error_response(502, "upstream_error", f"{name} refused the call ({_cause(exc)})")

    # Registered by class, so Starlette's ExceptionMiddleware answers them; a handler for
    # `Exception` runs in ServerErrorMiddleware, which re-raises after answering.
    @app.exception_handler(OverflowError)
    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: Exception) -> JSONResponse:
        if _out_of_range(exc):
            # A number no column can hold (an id of 30 digits): the caller's input, not
            # our fault. SQLite raises OverflowError; asyncpg's is wrapped by SQLAlchemy.
            return error_response(422, "invalid_request", "a number in the request is out of range")
        return await _unexpected(request, exc)


DOCS_ASSETS = "/docs/assets"


def install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from files shipped in the fastapi-offline package.

    FastAPI's own pages load their scripts from a CDN: offline, or behind a proxy that
    blocks it, /docs was a blank page.
    """
    import fastapi_offline

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title="amosync — API",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title="amosync — API",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )
        # ReDoc's sidebar shows its vendor's logo from their CDN (and hides it when that
        # fails): images from here only, so the page asks nothing of the outside world.
        page.headers["Content-Security-Policy"] = "img-src 'self' data:"
        return page


FastHandler = Callable[[FastAPI, Scope, Receive, Send], Awaitable[None]]


class App(FastAPI):
    """FastAPI, plus routes answered before its middleware stack and router.

    For the busiest route only (`POST /webhook`): walking Starlette's six middlewares and
    FastAPI's request handling cost more than the route's own work. A fast route reads its
    body within `MAX_BODY` itself, is still declared as an ordinary route (for OpenAPI,
    other methods, and a path it does not recognise, as under a proxy's root path), and its
    errors are answered by the app's own exception handlers, so a caller cannot tell the
    difference.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast_routes: dict[tuple[str, str], FastHandler] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            handler = self.fast_routes.get((scope["method"], scope["path"]))
            if handler is not None:
                scope["app"] = self
                try:
                    await handler(self, scope, receive, send)
                except Exception as exc:
                    await self.answer_error(scope, receive, send, exc)
                return
        await super().__call__(scope, receive, send)

    async def answer_error(
        self, scope: Scope, receive: Receive, send: Send, exc: Exception
    ) -> None:
        """Answer `exc` as the app's exception handlers would (one is set for Exception)."""
        for kind in type(exc).__mro__:
            handler = self.exception_handlers.get(kind)
            if handler is not None:
                response = handler(Request(scope, receive), exc)
                if inspect.isawaitable(response):
                    response = await response
                await response(scope, receive, send)
                return
        raise exc


def create_app(
    settings: Settings | None = None,
    *,
    services: Services | None = None,
    migrate: bool = True,
    worker: bool | None = None,
    freeze_gc: bool = False,
) -> App:
    """Build the app. `services` lets tests inject their own; otherwise built at start-up.

    `freeze_gc` (for a service process): once started, everything built so far is kept out
    of the garbage collector's full passes, which otherwise walk it all and stall every
    request in flight for tens of milliseconds.
    """
    settings = settings or (services.settings if services else get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            from amosync.db.migrate import upgrade_async

            await upgrade_async(settings.database_url)
        own = services is None
        ready = settings
        if own and not settings.admin_token:
            from amosync.runtime.preflight import prepare

            # The admin token generated once and kept, not a new one at every start.
            ready = await prepare(settings, migrate=False)
        state = services or build_services(ready)
        app.state.services = state
        run_worker = (settings.worker == "inline") if worker is None else worker
        stop_worker: Any = None
        if run_worker:
            from amosync.worker.runner import start_inline_worker

            stop_worker = await start_inline_worker(state)
        log.info("service.started", worker="inline" if run_worker else "off")
        if freeze_gc:
            freeze_startup_heap()
        try:
            yield
        finally:
            if stop_worker is not None:
                await stop_worker()
            inbox = getattr(app.state, "webhook_inbox", None)
            if inbox is not None:
                await inbox.aclose()
                app.state.webhook_inbox = None
            if own:
                await state.aclose()

    app = App(
        title="amosync",
        version=__version__,
        description="Keeps the e-mail addresses of amoCRM contacts in a Unisender list.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    install_docs(app)
    app.fast_routes.update(WEBHOOK_FAST_ROUTES)
    app.include_router(webhook_router)  # first: the busiest route
    app.include_router(health_router)
    # /accounts/sync and /accounts/unsync before /accounts/{account_id}.
    app.include_router(sync_router)
    app.include_router(consent_router)
    app.include_router(settings_router)  # /accounts/{id}/settings before /accounts/{id}
    app.include_router(account_update_router)  # PUT /accounts/{id}: stores settings too
    app.include_router(accounts_router)
    app.include_router(amocrm_hooks_router)
    app.include_router(rpc_router)
    app.include_router(worker_router)
    app.include_router(metrics_router)
    install_dashboard(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY)
    # Outermost, so even a 413 carries CORS headers the widget can read.
    app.add_middleware(WidgetCORSMiddleware, paths=WIDGET_PATHS)
    return app
