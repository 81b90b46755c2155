"""`Poster`: what each simulator posts out with (amoCRM's webhooks, Unisender's hooks).

A background task drains the simulator's outbox through one HTTP client of its own; both
are made when first needed, and `aclose()` stops the task and closes the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import httpx


class Poster:
    """The task that runs `drain()` while there is something to post, and its HTTP client."""

    def __init__(
        self,
        drain: Callable[[], Coroutine[Any, Any, None]],
        headers: dict[str, str] | None = None,
    ) -> None:
        self._drain = drain
        self._headers = headers
        self.task: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(self) -> bool:
        """Start draining unless it is under way; False when it is, or when no event loop
        runs here (the simulator's flush then drains it)."""
        if self.running:
            return False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        self.task = loop.create_task(self._drain())
        return True

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(headers=self._headers)
        return self._http

    async def aclose(self) -> None:
        """Stop posting and close the HTTP client."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
            self._http = None
