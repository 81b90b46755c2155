"""The dashboard's buttons: sync now, retry a failed job, disconnect."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from amosync.db.models import Account, Job, SyncRun
from amosync.runtime.services import Services
from tests.web.conftest import ACCOUNT_ID, account, add, contact, csrf, failed_job

ACCOUNT_PAGE = f"/ui/accounts/{ACCOUNT_ID}"


async def all_runs(services: Services) -> list[SyncRun]:
    async with services.sessions() as session:
        return list((await session.execute(select(SyncRun).order_by(SyncRun.id))).scalars())


async def jobs(services: Services, **where: object) -> list[Job]:
    async with services.sessions() as session:
        return list((await session.execute(select(Job).filter_by(**where))).scalars())


async def load_account(services: Services, account_id: int = ACCOUNT_ID) -> Account:
    async with services.sessions() as session:
        found = await session.get(Account, account_id)
        assert found
        return found


async def test_sync_now_queues_a_run_once(operator: httpx.AsyncClient, services: Services) -> None:
    await add(services, account(), contact(1), contact(2))
    token = await csrf(operator, ACCOUNT_PAGE)

    response = await operator.post(f"{ACCOUNT_PAGE}/sync", data={"csrf": token})

    assert response.status_code == 303
    assert response.headers["location"] == f"{ACCOUNT_PAGE}?notice=sync_started"
    [run] = await all_runs(services)
    assert (run.account_id, run.status, run.expected) == (ACCOUNT_ID, "queued", 2)
    [job] = await jobs(services, kind="full_sync")
    assert job.payload == {"run_id": run.id}
    assert services.work_ready.is_set()
    page = await operator.get(response.headers["location"])
    assert "A full sync has been queued." in page.text
    assert f"run #{run.id}" in page.text
    assert 'data-field="status">queued<' in page.text

    again = await operator.post(f"{ACCOUNT_PAGE}/sync", data={"csrf": token})

    assert again.headers["location"] == f"{ACCOUNT_PAGE}?notice=sync_running"
    assert len(await all_runs(services)) == 1


async def test_sync_now_of_an_unknown_account_is_a_404_page(operator: httpx.AsyncClient) -> None:
    token = await csrf(operator)

    response = await operator.post("/ui/accounts/999/sync", data={"csrf": token})

    assert response.status_code == 404
    assert "account 999 does not exist" in response.text


async def test_a_disconnected_account_is_not_synced(
    operator: httpx.AsyncClient, services: Services
) -> None:
    await add(services, account(status="disconnected"))
    token = await csrf(operator, ACCOUNT_PAGE)
    page = await operator.get(ACCOUNT_PAGE)
    assert 'data-action="sync-now"' not in page.text

    response = await operator.post(f"{ACCOUNT_PAGE}/sync", data={"csrf": token})

    assert response.headers["location"] == f"{ACCOUNT_PAGE}?notice=sync_refused"
    assert await all_runs(services) == []
    assert (
        "install the widget in amoCRM again"
        in (await operator.get(response.headers["location"])).text
    )


async def test_retry_puts_a_failed_job_back_in_the_queue(
    operator: httpx.AsyncClient, services: Services
) -> None:
    await add(services, account(), failed_job(attempts=8))
    [job] = await jobs(services)
    token = await csrf(operator, ACCOUNT_PAGE)

    response = await operator.post(
        f"/ui/jobs/{job.id}/retry", data={"csrf": token, "back": "account"}
    )

    assert response.status_code == 303
    assert response.headers["location"] == f"{ACCOUNT_PAGE}?notice=job_retried"
    [retried] = await jobs(services)
    assert (retried.status, retried.attempts) == ("pending", 0)
    assert services.work_ready.is_set()
    page = await operator.get(response.headers["location"])
    assert "The job is back in the queue." in page.text
    assert 'action="/ui/jobs/' not in page.text

    twice = await operator.post(f"/ui/jobs/{job.id}/retry", data={"csrf": token})

    assert twice.headers["location"] == "/?notice=job_not_failed"
    assert [j.status for j in await jobs(services)] == ["pending"]


async def test_retry_from_the_overview_returns_there(
    operator: httpx.AsyncClient, services: Services
) -> None:
    await add(services, failed_job(account_id=None, kind="install"))
    [job] = await jobs(services)
    token = await csrf(operator)

    response = await operator.post(
        f"/ui/jobs/{job.id}/retry", data={"csrf": token, "back": "overview"}
    )

    assert response.headers["location"] == "/?notice=job_retried"
    assert [j.status for j in await jobs(services)] == ["pending"]


async def test_retry_needs_csrf_and_an_existing_job(
    operator: httpx.AsyncClient, services: Services
) -> None:
    await add(services, account(), failed_job())
    [job] = await jobs(services)
    token = await csrf(operator)

    refused = await operator.post(f"/ui/jobs/{job.id}/retry", data={"csrf": "f" * 64})
    missing = await operator.post("/ui/jobs/987654/retry", data={"csrf": token})

    assert refused.status_code == 403
    assert missing.status_code == 404
    assert [j.status for j in await jobs(services)] == ["failed"]


async def test_disconnect_asks_first_then_disconnects(
    operator: httpx.AsyncClient, services: Services
) -> None:
    await add(
        services,
        account(unisender_key_enc=services.cipher.encrypt("key"), unisender_valid=True),
        contact(1),
        failed_job(status="pending"),
    )
    page = await operator.get(ACCOUNT_PAGE)
    assert f'href="{ACCOUNT_PAGE}/disconnect"' in page.text

    confirm = await operator.get(f"{ACCOUNT_PAGE}/disconnect")

    assert confirm.status_code == 200
    assert "Disconnect Acme Ltd?" in confirm.text
    assert (await load_account(services)).status == "active"  # asking changes nothing

    response = await operator.post(
        f"{ACCOUNT_PAGE}/disconnect", data={"csrf": await csrf(operator, ACCOUNT_PAGE)}
    )

    assert response.status_code == 303
    assert response.headers["location"] == f"{ACCOUNT_PAGE}?notice=disconnected"
    stored = await load_account(services)
    assert stored.status == "disconnected"
    assert stored.unisender_key_enc is None
    assert [j.status for j in await jobs(services)] == ["dropped"]
    after = await operator.get(response.headers["location"])
    assert "The account is disconnected" in after.text
    assert "badge--disconnected" in after.text
    assert 'data-action="sync-now"' not in after.text
    assert "c1@example.com" in after.text  # the contact records are kept


async def test_disconnect_without_csrf_changes_nothing(
    operator: httpx.AsyncClient, services: Services
) -> None:
    await add(services, account())

    response = await operator.post(f"{ACCOUNT_PAGE}/disconnect", data={"csrf": "0" * 64})

    assert response.status_code == 403
    assert (await load_account(services)).status == "active"
