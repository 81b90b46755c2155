"""structlog set-up: console or JSON lines, with secrets redacted on the way out."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

# Field names whose values are never written, whatever a caller passes by mistake.
_SECRET_FIELD = re.compile(r"(token|secret|password|api_key|apikey|unisender_key|code|key)$", re.I)
_ALLOWED = {"error_code", "status_code", "code_exchange", "event_key"}


def _redact(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    for name in list(event):
        if name in _ALLOWED or name == "event":
            continue
        if _SECRET_FIELD.search(name) and event[name] is not None:
            event[name] = "[redacted]"
    return event


def configure_logging(log_format: str = "console", level: int = logging.INFO) -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        # Not structlog's default rich traceback: it prints every frame's local variables,
        # and those hold request headers (the admin token), API keys and access tokens.
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Library loggers (uvicorn, alembic) go through the standard library: keep them terse,
    # and never let uvicorn's access log print query strings (they carry webhook tokens).
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(message)s")
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("alembic").setLevel(logging.WARNING)
