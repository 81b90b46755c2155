"""What of a secret may leave the process: nothing but a mask or a hash.

An upstream body goes into logs and into the jobs table as an excerpt with token- and
key-shaped values masked (`body_excerpt`); a rate limit keyed by a Unisender API key is
keyed by a hash of it (`secret_key`).
"""

from __future__ import annotations

import hashlib
import re

EXCERPT_CHARS = 500
_SECRET_VALUES = re.compile(
    r'("?(?:access_token|refresh_token|api_key|client_secret)"?\s*[:=]\s*"?)([^"&,\s]+)',
    re.IGNORECASE,
)


def body_excerpt(text: str) -> str:
    """The start of an upstream response body, safe to log or store with an error.

    Error bodies carry no secrets in practice; this masks token- and key-shaped values anyway,
    because an excerpt ends up in logs and in the jobs table.
    """
    return _SECRET_VALUES.sub(r"\1***", text[:EXCERPT_CHARS])


def secret_key(prefix: str, secret: str) -> str:
    """A registry key for a secret (a Unisender API key): a hash, never the secret itself."""
    digest = hashlib.sha256(secret.encode()).hexdigest()[:16]
    return f"{prefix}:{digest}"
