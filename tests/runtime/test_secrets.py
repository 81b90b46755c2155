"""No secret ever reaches a log line or a response: a whole life of an account, watched.

The stack runs an install, a Unisender connection, a full sync with token refreshes, live
webhooks and the usual mistakes (a wrong webhook token, a bad key, an upstream outage);
every log line the service writes and every response the test receives (status line,
headers, body) are searched for every secret involved.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import stamina
import structlog
from sqlalchemy import select

from amosync.db.models import Account, Integration
from amosync.runtime.logging import configure_logging
from tests.conftest import ADMIN_TOKEN
from tests.stack import ACCOUNT_ID, SUBDOMAIN, UNISENDER_KEY, Stack, stack

FORM = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": ""}
OTHER_KEY = "sandbox-unisender-key-0002-other"


class Seen:
    """Every response the test's client received, as text."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def __call__(self, response: httpx.Response) -> None:
        await response.aread()
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.texts.append(f"{response.status_code} {response.url.path}\n{headers}\n{response.text}")


async def install(s: Stack) -> str:
    """The install call, as Stack.install makes it, keeping the authorization code."""
    s.sandbox.amocrm.add_account(account_id=ACCOUNT_ID, subdomain=SUBDOMAIN, name="Acme")
    client_id = s.settings.amocrm_client_id
    assert client_id
    code = s.sandbox.amocrm.issue_code(ACCOUNT_ID, client_id)
    response = await s.http.get(
        "/vidget",
        params={"code": code, "referer": f"{SUBDOMAIN}.amocrm.ru", "client_id": client_id},
    )
    assert response.status_code == 200
    await s.settle()
    return code


async def stored_secrets(s: Stack) -> set[str]:
    """The account's tokens and keys, decrypted from the database."""
    found: set[str] = set()
    async with s.services.sessions() as session:
        account = await session.get(Account, ACCOUNT_ID)
        integrations = (await session.execute(select(Integration))).scalars().all()
    assert account is not None
    for encrypted in (account.unisender_key_enc, account.webhook_token_enc):
        if encrypted is not None:
            found.add(s.services.cipher.decrypt(encrypted))
    for integration in integrations:
        for encrypted in (integration.access_token_enc, integration.refresh_token_enc):
            if encrypted is not None:
                found.add(s.services.cipher.decrypt(encrypted))
    return found


async def life_of_an_account(s: Stack) -> set[str]:
    """Run everything; returns the secrets read from the database along the way."""
    amo = s.sandbox.amocrm
    # Two-second tokens, outlived twice below, so the pair is rotated along the way (the
    # service refreshes a quarter of a token's lifetime before expiry, not before every call).
    amo.access_token_ttl = 2
    secrets = {await install(s)}
    await asyncio.sleep(2.1)
    secrets |= await stored_secrets(s)
    amo.add_contact(ACCOUNT_ID, name="Ann", emails=["ann@example.com"])
    amo.add_contact(ACCOUNT_ID, name="Bad", emails=["not an address"])
    amo.add_contact(ACCOUNT_ID, name="Nobody")
    s.sandbox.unisender.reject("blocked@example.com", "email_blocked")
    amo.add_contact(ACCOUNT_ID, name="Blocked", emails=["blocked@example.com"])
    await amo.flush_webhooks()
    await s.settle()

    # A bad key first (refused), then the good one, then the full sync.
    bad = await s.http.post(
        "/vidget/unisender",
        json={"account_id": ACCOUNT_ID, "unisender_key": "wrong-" + UNISENDER_KEY},
        headers={"Authorization": "", **s.widget_headers()},
    )
    assert bad.json()["error"] == "invalid_unisender_key"
    run_id = (await s.connect_unisender())["run_id"]
    await s.settle()
    secrets |= await stored_secrets(s)
    assert (await s.http.get(f"/sync/{run_id}")).json()["status"] == "done"
    await asyncio.sleep(2.1)

    # Live webhooks, and one posted by hand with a wrong token.
    ann = amo.add_contact(ACCOUNT_ID, name="Ann 2", emails=["ann2@example.com"])
    amo.update_contact(ACCOUNT_ID, ann["id"], emails=["ann3@example.com"])
    await amo.flush_webhooks()
    await s.settle()
    wrong = await s.http.post("/webhook?token=not-the-token", content=b"x=1", headers=FORM)
    assert wrong.status_code == 401
    secrets |= await stored_secrets(s)

    # An amoCRM outage while a sync runs, and a revoked grant.
    amo.add_fault(503, path="/api/v4/contacts", times=2)
    await s.http.post("/sync", json={"account_id": ACCOUNT_ID})
    await s.settle()
    amo.revoke_tokens(ACCOUNT_ID)
    await s.http.post("/sync", json={"account_id": ACCOUNT_ID})
    await s.settle()

    for path in (
        "/accounts",
        f"/accounts/{ACCOUNT_ID}",
        f"/accounts/integrations/{ACCOUNT_ID}",
        f"/accounts/sync?account_id={ACCOUNT_ID}",
        f"/accounts/unsync?account_id={ACCOUNT_ID}",
        f"/acchasuni?account_id={ACCOUNT_ID}",
        "/metrics",
        "/health",
        "/ready",
        "/webhookwork",
        "/",
        "/openapi.json",
    ):
        assert (await s.http.get(path)).status_code < 500, path
    return secrets


def issued_by_the_sandbox(s: Stack) -> set[str]:
    """Every access and refresh token the sandbox's OAuth server ever handed out."""
    amo = s.sandbox.amocrm
    return set(amo._access) | set(amo._refresh)


async def test_no_secret_in_any_log_line_or_response(
    database_url: str, captured_logs: list[str]
) -> None:
    seen = Seen()
    async with stack(database_url) as s:
        s.http.event_hooks["response"].append(seen)
        secrets = await life_of_an_account(s)
        issued = issued_by_the_sandbox(s)
        hooks = [urlsplit(h["destination"]) for h in s.sandbox.amocrm.webhooks(ACCOUNT_ID)]
        webhook_tokens = {parse_qs(h.query)["token"][0] for h in hooks}
        assert s.settings.encryption_key
        secrets |= issued | webhook_tokens
        secrets |= {
            UNISENDER_KEY,
            "wrong-" + UNISENDER_KEY,
            ADMIN_TOKEN,
            str(s.settings.amocrm_client_secret),
            s.settings.encryption_key,
        }
        assert s.sandbox.amocrm.refresh_count >= 2, "tokens were rotated along the way"

    assert len(issued) >= 6
    assert webhook_tokens
    assert len(seen.texts) >= 15
    assert len(captured_logs) > 20
    assert all(len(secret) >= 16 for secret in secrets)
    for where, texts in (("log", captured_logs), ("response", seen.texts)):
        for text in texts:
            leaked = [secret for secret in secrets if secret in text]
            for secret in leaked:
                text = text.replace(secret, f"<SECRET {secret[:6]}…>")
            assert not leaked, f"a {where} leaks {len(leaked)} secret(s): {text[:500]}"


OUTAGE = (
    {"status": 500},
    503,
    "upstream_unavailable",
    "Unisender is not answering right now (HTTP 500); try again in a minute",
)
REFUSAL = (
    {"code": "invalid_arg"},
    502,
    "upstream_error",
    "Unisender refused the call (error invalid_arg)",
)


@pytest.mark.parametrize(("fault", "status", "error", "detail"), [OUTAGE, REFUSAL])
async def test_an_upstream_failure_names_the_api_not_the_key(
    database_url: str,
    captured_logs: list[str],
    fault: dict[str, Any],
    status: int,
    error: str,
    detail: str,
) -> None:
    async with stack(database_url) as s:
        await install(s)
        s.sandbox.unisender.add_key(OTHER_KEY)
        s.sandbox.unisender.add_fault(method="getLists", times=None, **fault)
        with stamina.set_testing(True, attempts=2):
            response = await s.http.post(
                "/vidget/unisender",
                json={"account_id": ACCOUNT_ID, "unisender_key": OTHER_KEY},
                headers={"Authorization": "", **s.widget_headers()},
            )
        assert response.status_code == status
        assert response.json() == {"error": error, "detail": detail}
        assert response.headers.get("retry-after") == ("60" if status == 503 else None)
        assert OTHER_KEY not in response.text
        assert not [line for line in captured_logs if OTHER_KEY in line]
        assert [line for line in captured_logs if "request.upstream_failed" in line]
        async with s.services.sessions() as session:
            account = await session.get(Account, ACCOUNT_ID)
        assert account is not None
        assert account.unisender_key_enc is None


def raise_with_secrets_in_locals(api_key: str) -> None:
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    raise RuntimeError(f"failed with {len(headers)} header(s) and a key of {len(api_key)}")


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_a_logged_traceback_shows_no_local_variables(log_format: str) -> None:
    out = io.StringIO()
    configure_logging(log_format)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(out))
    try:
        try:
            raise_with_secrets_in_locals(UNISENDER_KEY)
        except RuntimeError:
            structlog.get_logger().exception("request.failed")
    finally:
        configure_logging("console")
    text = out.getvalue()
    assert "request.failed" in text
    assert "RuntimeError: failed with 1 header(s)" in text
    assert "raise_with_secrets_in_locals" in text  # the traceback is there...
    assert UNISENDER_KEY not in text  # ...without the values of the frames' variables
    assert ADMIN_TOKEN not in text
