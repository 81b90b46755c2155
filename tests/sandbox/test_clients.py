"""The service's own amoCRM and Unisender clients against the sandbox: the shapes agree."""

from __future__ import annotations

import pytest

from amosync.amocrm.client import AmoCRMClient, exchange_code, refresh_tokens
from amosync.errors import AuthorizationRevoked, InvalidApiKey, TransientUpstreamError
from amosync.unisender.client import UnisenderClient
from amosync.unisender.models import ImportRow
from amosync.upstream.retry import RetryPolicy
from tests.sandbox.conftest import (
    ACCOUNT_ID,
    CLIENT_ID,
    CLIENT_SECRET,
    KEY,
    REDIRECT_URI,
    FixedToken,
    Served,
    limiter,
)

NO_RETRY = RetryPolicy(attempts=1)


async def test_amocrm_client_pages_through_every_contact(served: Served) -> None:
    ids = served.amo.generate_contacts(ACCOUNT_ID, 1234, seed=4)
    served.amo.add_contact(ACCOUNT_ID, "Null", custom_fields_values=None)
    pair = await exchange_code(
        served.http,
        served.url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri=REDIRECT_URI,
        code=served.amo.issue_code(ACCOUNT_ID, CLIENT_ID),
    )
    async with AmoCRMClient(served.url, FixedToken(pair.access_token), limiter()) as client:
        account = await client.get_account()
        seen = [contact.id async for page in client.iter_contacts() for contact in page.contacts]
    assert account.id == ACCOUNT_ID
    assert seen[: len(ids)] == list(ids)
    assert len(seen) == 1235
    assert served.amo.contact_pages(ACCOUNT_ID) == [1, 2, 3, 4, 5]


async def test_amocrm_client_sees_a_spent_refresh_token_as_revoked(served: Served) -> None:
    pair = await served.install()

    async def refresh(refresh_token: str) -> None:
        await refresh_tokens(
            served.http,
            served.url,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            redirect_uri=REDIRECT_URI,
            refresh_token=refresh_token,
            retry_policy=NO_RETRY,
        )

    await refresh(pair["refresh_token"])
    with pytest.raises(AuthorizationRevoked):
        await refresh(pair["refresh_token"])


async def test_amocrm_client_registers_webhooks(served: Served, token: str) -> None:
    async with AmoCRMClient(served.url, FixedToken(token), limiter()) as client:
        await client.add_webhook("https://svc.test/webhook?token=t", ["add_contact"])
        assert served.amo.webhooks(ACCOUNT_ID)[0]["settings"] == ["add_contact"]
        await client.delete_webhook("https://svc.test/webhook?token=t")
        await client.delete_webhook("https://svc.test/webhook?token=t")  # absent: fine
    assert served.amo.webhooks(ACCOUNT_ID) == []


async def test_amocrm_client_gets_429_as_transient(served: Served, token: str) -> None:
    served.amo.rate_limit_rps = 1
    async with AmoCRMClient(
        served.url, FixedToken(token), limiter(), retry_policy=NO_RETRY
    ) as client:
        await client.get_account()
        with pytest.raises(TransientUpstreamError) as caught:
            await client.get_account()
    assert caught.value.status == 429


async def test_unisender_client_round_trip(served: Served) -> None:
    served.uni.reject("blocked@example.com", "email_blocked")
    url = f"{served.url}/ru/api"
    async with UnisenderClient(url, KEY, limiter(), retry_policy=NO_RETRY) as client:
        list_id = await client.create_list("amoCRM")
        assert [(m.id, m.title) for m in await client.get_lists()] == [(list_id, "amoCRM")]
        rows = [ImportRow("a@example.com", "A"), ImportRow("bad"), ImportRow("blocked@example.com")]
        result = await client.import_contacts(rows, list_id=list_id)
        assert (result.inserted, [(e.index, e.code) for e in result.log]) == (
            1,
            [(1, "invalid_email"), (2, "email_blocked")],
        )
        contact = await client.get_contact("a@example.com")
        assert contact is not None
        assert contact.in_list(list_id)
        assert contact.fields == {"Name": "A"}
        await client.exclude("a@example.com", [list_id])
        await client.exclude("ghost@example.com", [list_id])  # unknown: not an error
        contact = await client.get_contact("a@example.com")
        assert contact is not None
        assert not contact.in_list(list_id)
        assert await client.get_contact("ghost@example.com") is None
    async with UnisenderClient(url, "wrong", limiter(), retry_policy=NO_RETRY) as client:
        with pytest.raises(InvalidApiKey):
            await client.get_lists()
