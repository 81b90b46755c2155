"""The service built by `create_app` serves the dashboard (the other dashboard tests add it
themselves when it is missing, so they can run on their own)."""

from __future__ import annotations

import httpx


async def test_create_app_serves_the_dashboard(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    css = await client.get("/static/app.css")

    assert page.status_code == 200
    assert 'action="/login"' in page.text
    assert css.status_code == 200
    assert "text/css" in css.headers["content-type"]
