"""The operator dashboard: server-rendered pages at `/` and `/ui/...`, assets at `/static/`.

from amosync.web import install_dashboard
install_dashboard(app)
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from amosync.web.endpoints import router
from amosync.web.security import add_security_headers

STATIC = Path(__file__).parent / "static"

__all__ = ["DashboardStatic", "install_dashboard", "router"]


class DashboardStatic(StaticFiles):
    """The dashboard's CSS/JS, served by the app itself (works offline, no CDN)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            response = await super().get_response(path, scope)
        except HTTPException as exc:
            response = PlainTextResponse("not found", status_code=exc.status_code)
        # Revalidate each time (ETag makes it cheap), so a new version is never stale.
        response.headers["Cache-Control"] = "no-cache"
        return add_security_headers(response)


def install_dashboard(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", DashboardStatic(directory=STATIC), name="static")
