"""An account's `problems` (SPEC §3): stored, derived, and gone when their cause is."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import update

from amosync.accounts.problems import ProblemCode, clear_problem, problems_for, set_problem
from amosync.db.engine import transaction
from amosync.db.models import Account, utcnow
from amosync.runtime.services import Services

KEY = "unisender-key-" + "k" * 30


def codes(body: dict[str, object]) -> list[str]:
    problems = body["problems"]
    assert isinstance(problems, list)
    return [p["code"] for p in problems]


async def test_a_healthy_account_has_no_problems(client: httpx.AsyncClient) -> None:
    created = await client.post("/accounts/301", json={"unisender_key": KEY, "list_id": 3})
    assert created.status_code == 201
    assert created.json()["problems"] == []
    assert (await client.get("/accounts/301")).json()["problems"] == []
    assert (await client.get("/accounts")).json()["items"][0]["problems"] == []


async def test_no_key_and_revoked_tokens_are_derived(
    client: httpx.AsyncClient, services: Services
) -> None:
    assert (await client.post("/accounts/302", json={})).status_code == 201
    body = (await client.get("/accounts/302")).json()
    assert codes(body) == ["unisender_key_missing"]
    problem = body["problems"][0]
    assert problem["detail"]
    assert problem["since"]

    async with transaction(services.sessions) as session:
        await session.execute(
            update(Account).where(Account.id == 302).values(status="reauth_required")
        )
    assert codes((await client.get("/accounts/302")).json()) == [
        "reauth_required",
        "unisender_key_missing",
    ]

    # A key stored and installed again: both gone without anyone clearing them.
    async with transaction(services.sessions) as session:
        await session.execute(
            update(Account)
            .where(Account.id == 302)
            .values(
                status="active",
                unisender_key_enc=services.cipher.encrypt(KEY),
                unisender_valid=True,
            )
        )
    assert (await client.get("/accounts/302")).json()["problems"] == []


async def test_a_stored_problem_keeps_its_first_since(
    client: httpx.AsyncClient, services: Services
) -> None:
    assert (await client.post("/accounts/303", json={"unisender_key": KEY})).status_code == 201
    async with transaction(services.sessions) as session:
        await set_problem(session, 303, ProblemCode.amocrm_webhook_disabled, "first")
    first = (await client.get("/accounts/303")).json()["problems"]
    assert [(p["code"], p["detail"]) for p in first] == [("amocrm_webhook_disabled", "first")]

    async with transaction(services.sessions) as session:
        await set_problem(session, 303, ProblemCode.amocrm_webhook_disabled, "second")
    second = (await client.get("/accounts/303")).json()["problems"]
    assert [(p["code"], p["detail"]) for p in second] == [("amocrm_webhook_disabled", "second")]
    assert second[0]["since"] == first[0]["since"]

    async with transaction(services.sessions) as session:
        await clear_problem(session, 303, ProblemCode.amocrm_webhook_disabled)
    assert (await client.get("/accounts/303")).json()["problems"] == []


async def test_a_problem_with_an_end_is_gone_after_it(
    client: httpx.AsyncClient, services: Services
) -> None:
    assert (await client.post("/accounts/304", json={"unisender_key": KEY})).status_code == 201
    async with transaction(services.sessions) as session:
        await set_problem(
            session,
            304,
            ProblemCode.amocrm_blocked,
            "blocked",
            until=utcnow() + timedelta(minutes=5),
        )
        await set_problem(
            session,
            304,
            ProblemCode.amocrm_webhook_missing,
            "expired",
            until=utcnow() - timedelta(seconds=1),
        )
    assert codes((await client.get("/accounts/304")).json()) == ["amocrm_blocked"]


async def test_a_refused_key_shows_until_a_new_key_is_connected(
    client: httpx.AsyncClient, services: Services
) -> None:
    assert (await client.post("/accounts/305", json={"unisender_key": KEY})).status_code == 201
    async with transaction(services.sessions) as session:
        await session.execute(
            update(Account).where(Account.id == 305).values(unisender_valid=False)
        )
        await set_problem(session, 305, ProblemCode.unisender_key_invalid, "refused")
    body = (await client.get("/accounts/305")).json()
    assert codes(body) == ["unisender_key_invalid"]
    assert body["unisender_connected"] is False
    assert (await client.get("/acchasuni", params={"account_id": 305})).json()["connected"] is False

    # The key replaced (PUT /accounts and POST /vidget/unisender store it valid): gone.
    async with transaction(services.sessions) as session:
        await session.execute(
            update(Account)
            .where(Account.id == 305)
            .values(unisender_key_enc=services.cipher.encrypt(KEY + "2"), unisender_valid=True)
        )
    assert (await client.get("/accounts/305")).json()["problems"] == []
    async with services.sessions() as session:
        assert (await problems_for(session, [305]))[305] == []


async def test_a_disconnected_account_shows_none(
    client: httpx.AsyncClient, services: Services
) -> None:
    assert (await client.post("/accounts/306", json={})).status_code == 201
    async with transaction(services.sessions) as session:
        await set_problem(session, 306, ProblemCode.amocrm_webhook_missing, "gone")
        await session.execute(
            update(Account).where(Account.id == 306).values(status="disconnected")
        )
    assert (await client.get("/accounts/306")).json()["problems"] == []
