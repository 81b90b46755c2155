"""Scripted upstream answers over `httpx.MockTransport`, for what the sandbox cannot say.

The sandbox simulators answer over real HTTP and are what most tests talk to; a test uses
this transport only for answers no simulator gives (an nginx block page, a timeout, a
documented body byte for byte). `Script` answers requests in order and keeps them, so a test
both scripts the upstream and reads what the client sent.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl

import httpx

Handler = Callable[[httpx.Request], httpx.Response]


def answered_by(handler: Handler) -> httpx.AsyncClient:
    """An HTTP client whose every request is answered in process by `handler`."""
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


class Script:
    """Answers requests in order (the last answer repeats) and keeps the requests.

    An answer is a response, a handler called with the request, or an exception raised as
    the transport would raise it (a timeout, a refused connection).
    """

    def __init__(self, *answers: httpx.Response | Handler | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return answer(request)

    def client(self) -> httpx.AsyncClient:
        """An HTTP client that this script answers."""
        return answered_by(self)

    def form(self, index: int = 0) -> dict[str, str]:
        """The form-encoded body of the `index`th request (Unisender's calls are forms)."""
        return form_of(self.requests[index])


def form_of(request: httpx.Request) -> dict[str, str]:
    """A form-encoded request body as a dict, blank values kept."""
    return dict(parse_qsl(request.content.decode(), keep_blank_values=True))
