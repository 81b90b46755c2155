"""What the dashboard shows: accounts, sync progress, contacts, webhook events, failures."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest

from amosync.db.models import Integration, SyncRun, WebhookEvent, utcnow
from amosync.runtime.services import Services
from tests.conftest import ADMIN_TOKEN
from tests.web.conftest import ACCOUNT_ID, account, add, contact, failed_job, running_run

ROW_IDS = re.compile(r'data-contact-id="(\d+)"')
NEXT = re.compile(r'href="([^"]+)#contacts" rel="next"')


def contact_ids(html: str) -> list[int]:
    return [int(found) for found in ROW_IDS.findall(html)]


def next_link(html: str) -> str | None:
    match = NEXT.search(html)
    return match.group(1).replace("&amp;", "&") if match else None


async def test_overview_lists_accounts_with_status_connection_counts_and_sync(
    operator: httpx.AsyncClient, services: Services
) -> None:
    await add(
        services,
        account(
            name="Acme Ltd", unisender_key_enc=services.cipher.encrypt("k"), unisender_valid=True
        ),
        account(2, name=None, subdomain="globex", status="reauth_required"),
        account(3, name="Initech", status="disconnected"),
        contact(1),
        contact(2),
        contact(3, "unsynced", reason="no_email", emails=[]),
        contact(4, "pending"),
        running_run(),
    )

    page = await operator.get("/")

    assert page.status_code == 200
    html = page.text
    rows = dict(re.findall(r'<tr data-account-id="(\d+)">(.*?)</tr>', html, re.S))
    assert set(rows) == {str(ACCOUNT_ID), "2", "3"}
    acme = rows[str(ACCOUNT_ID)]
    assert "Acme Ltd" in acme
    assert 'badge--active"' in acme
    assert "Unisender connected" in acme
    assert re.search(r'data-count="synced">2<', acme)
    assert re.search(r'data-count="unsynced">1<', acme)
    assert re.search(r'data-count="pending">1<', acme)
    # 60 of the expected 200 contacts processed.
    assert 'value="30"' in acme
    assert "running" in acme
    assert "globex" in rows["2"]
    assert "re-auth required" in rows["2"]
    assert "Unisender not connected" in rows["2"]
    assert "badge--disconnected" in rows["3"]
    assert "No sync yet." in rows["3"]


async def test_overview_paginates_accounts(operator: httpx.AsyncClient, services: Services) -> None:
    await add(services, *[account(100 + n, name=f"Company {n:02}") for n in range(55)])

    first = await operator.get("/")
    match = re.search(r'href="(/\?cursor=[^"]+)" rel="next"', first.text)
    assert match
    second = await operator.get(match.group(1))

    first_ids = re.findall(r'<tr data-account-id="(\d+)">', first.text)
    second_ids = re.findall(r'<tr data-account-id="(\d+)">', second.text)
    assert len(first_ids) == 50
    assert len(second_ids) == 5
    assert set(first_ids) | set(second_ids) == {str(100 + n) for n in range(55)}
    assert 'rel="next"' not in second.text


async def test_account_page_shows_synced_contacts(
    operator: httpx.AsyncClient, services: Services
) -> None:
    synced_at = utcnow().replace(microsecond=0) - timedelta(hours=1)
    await add(
        services,
        account(),
        contact(
            7,
            name="Ann Lee",
            emails=["ann@example.com", "ann.lee@work.example"],
            synced_at=synced_at,
        ),
        contact(8, "unsynced", name="Bob Nomail", emails=[], reason="no_email"),
    )

    page = await operator.get(f"/ui/accounts/{ACCOUNT_ID}")

    assert page.status_code == 200
    assert contact_ids(page.text) == [7]
    assert "Ann Lee" in page.text
    assert "ann.lee@work.example" in page.text
    assert synced_at.strftime("%Y-%m-%d %H:%M:%S UTC") in page.text
    assert "Bob Nomail" not in page.text


async def test_unsynced_contacts_show_reason_and_detail(
    operator: httpx.AsyncClient, services: Services
) -> None:
    await add(
        services,
        account(),
        contact(7),
        contact(8, "unsynced", name="Bob", emails=[], reason="no_email"),
        contact(
            9,
            "unsynced",
            name="Eve",
            emails=["eve@@x"],
            reason="invalid_email",
            detail="eve@@x: bad syntax",
        ),
        contact(
            10,
            "unsynced",
            name="Sam",
            reason="unisender:invalid_email_domain",
            detail="Unisender said no",
        ),
    )

    page = await operator.get(f"/ui/accounts/{ACCOUNT_ID}", params={"contacts": "unsynced"})

    assert contact_ids(page.text) == [8, 9, 10]
    reasons = re.findall(r'data-reason="([^"]*)">([^<]*)<', page.text)
    assert reasons == [
        ("no_email", "No e-mail address"),
        ("invalid_email", "Invalid e-mail address"),
        ("unisender:invalid_email_domain", "Rejected by Unisender (invalid_email_domain)"),
    ]
    assert "eve@@x: bad syntax" in page.text
    assert "Unisender said no" in page.text


async def test_contacts_are_searchable_by_email(
    operator: httpx.AsyncClient, services: Services
) -> None:
    await add(
        services,
        account(),
        contact(1, emails=["ann@example.com"]),
        contact(2, emails=["bob@example.com"]),
        contact(3, emails=["other@corp.example", "Ann.Second@Example.com"]),
        contact(4, "unsynced", emails=["ann@bad"], reason="invalid_email"),
    )

    page = await operator.get(f"/ui/accounts/{ACCOUNT_ID}", params={"q": " ANN "})
    unsynced = await operator.get(
        f"/ui/accounts/{ACCOUNT_ID}", params={"q": "ann", "contacts": "unsynced"}
    )
    nothing = await operator.get(f"/ui/accounts/{ACCOUNT_ID}", params={"q": "nobody@"})

    assert contact_ids(page.text) == [1, 3]
    assert 'value="ANN"' in page.text  # the box keeps what was searched
    assert contact_ids(unsynced.text) == [4]
    assert contact_ids(nothing.text) == []
    assert "No synced contact matches" in nothing.text


async def test_contacts_are_paginated_by_cursor_keeping_the_search(
    operator: httpx.AsyncClient, services: Services
) -> None:
    await add(
        services,
        account(),
        *[contact(n, emails=[f"user{n}@match.example"]) for n in range(1, 121)],
        *[contact(n, emails=[f"user{n}@else.example"]) for n in range(121, 131)],
    )

    seen: list[int] = []
    url: str | None = f"/ui/accounts/{ACCOUNT_ID}?q=match"
    pages = 0
    while url:
        page = await operator.get(url)
        assert page.status_code == 200
        seen += contact_ids(page.text)
        url = next_link(page.text)
        pages += 1
        if url:
            assert "q=match" in url

    assert pages == 3
    assert seen == list(range(1, 121))


async def test_a_bad_cursor_gets_a_friendly_page(
    operator: httpx.AsyncClient, services: Services
) -> None:
    await add(services, account())

    page = await operator.get(f"/ui/accounts/{ACCOUNT_ID}", params={"cursor": "garbage!"})

    assert page.status_code == 400
    assert page.headers["content-type"].startswith("text/html")
    assert "start again without it" in page.text


@pytest.mark.parametrize("path", ["/ui/accounts/424242", "/ui/accounts/abc"])
async def test_unknown_account_is_a_404_page(operator: httpx.AsyncClient, path: str) -> None:
    page = await operator.get(path)

    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert 'data-error-status="404"' in page.text
    assert "Back to the dashboard" in page.text


async def test_unknown_account_progress_is_a_json_404(operator: httpx.AsyncClient) -> None:
    response = await operator.get("/ui/accounts/424242/progress")

    assert response.status_code == 404
    assert response.json() == {
        "error": "account_not_found",
        "detail": "account 424242 does not exist",
    }


async def test_account_page_shows_recent_webhook_events(
    operator: httpx.AsyncClient, services: Services
) -> None:
    now = utcnow().replace(microsecond=0)
    await add(
        services,
        account(),
        account(2),
        WebhookEvent(
            account_id=ACCOUNT_ID,
            received_at=now - timedelta(minutes=5),
            added=3,
            updated=2,
            deleted=1,
        ),
        WebhookEvent(account_id=ACCOUNT_ID, received_at=now, added=0, updated=17, deleted=0),
        WebhookEvent(account_id=2, received_at=now, added=99, updated=0, deleted=0),
    )

    page = await operator.get(f"/ui/accounts/{ACCOUNT_ID}")

    table = re.search(r'data-table="webhook-events">(.*?)</table>', page.text, re.S)
    assert table
    rows = [
        [cell.strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S)
        if "<td" in row
    ]
    assert rows == [
        [now.strftime("%Y-%m-%d %H:%M:%S UTC"), "0", "17", "0"],
        [(now - timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S UTC"), "3", "2", "1"],
    ]


async def test_failed_jobs_are_listed_with_error_and_attempts(
    operator: httpx.AsyncClient, services: Services
) -> None:
    await add(
        services,
        account(),
        account(2, name="Other"),
        failed_job(last_error="amocrm: too many requests status=429", attempts=12, max_attempts=12),
        failed_job(account_id=2, last_error="belongs to the other account"),
        failed_job(account_id=None, kind="install", last_error="amocrm: code expired status=400"),
        failed_job(status="done", last_error="a job that succeeded later"),
    )

    page = await operator.get(f"/ui/accounts/{ACCOUNT_ID}")
    overview = await operator.get("/")

    assert "amocrm: too many requests status=429" in page.text
    assert "12 / 12" in page.text
    assert "belongs to the other account" not in page.text
    assert "a job that succeeded later" not in page.text
    assert page.text.count('action="/ui/jobs/') == 1
    # The overview shows every account's failures, and those of no account yet (installs).
    assert "belongs to the other account" in overview.text
    assert "amocrm: code expired status=400" in overview.text
    assert overview.text.count('action="/ui/jobs/') == 3
    assert re.search(r'data-queue="failed">3<', overview.text)


async def test_progress_endpoint_reports_the_latest_run(
    operator: httpx.AsyncClient, services: Services
) -> None:
    started = utcnow() - timedelta(seconds=10)
    await add(
        services,
        account(),
        contact(1),
        contact(2, "unsynced", reason="no_email", emails=[]),
        SyncRun(account_id=ACCOUNT_ID, status="done", fetched=5, synced=5, finished_at=utcnow()),
        running_run(
            fetched=250, synced=150, unsynced=40, failed=10, expected=400, started_at=started
        ),
    )

    response = await operator.get(f"/ui/accounts/{ACCOUNT_ID}/progress")

    assert response.status_code == 200
    body = response.json()
    assert body["account_id"] == ACCOUNT_ID
    assert body["status"] == "active"
    assert body["contacts"] == {"synced": 1, "unsynced": 1, "pending": 0}
    run = body["run"]
    assert run["status"] == "running"
    assert run["active"] is True
    assert (run["fetched"], run["synced"], run["unsynced"], run["failed"]) == (250, 150, 40, 10)
    assert run["percent"] == 50
    # 200 contacts in ~10 s.
    assert 15 <= run["rate"] <= 20.5


async def test_progress_of_a_first_sync_is_indeterminate_then_100_when_done(
    operator: httpx.AsyncClient, services: Services
) -> None:
    await add(services, account(), running_run(expected=None))
    url = f"/ui/accounts/{ACCOUNT_ID}/progress"

    assert (await operator.get(url)).json()["run"]["percent"] is None
    page = await operator.get(f"/ui/accounts/{ACCOUNT_ID}")
    bar = re.search(r"<progress [^>]*>", page.text)
    assert bar
    assert "value=" not in bar.group(0)

    async with services.sessions() as session, session.begin():
        run = await session.get(SyncRun, (await operator.get(url)).json()["run"]["run_id"])
        assert run
        run.status = "done"
        run.finished_at = utcnow()
    done = (await operator.get(url)).json()["run"]
    assert done["percent"] == 100
    assert done["active"] is False


async def test_no_secret_is_ever_rendered(operator: httpx.AsyncClient, services: Services) -> None:
    secrets = {
        "unisender": "unisender-key-" + "u" * 30,
        "webhook": "webhook-token-" + "w" * 30,
        "access": "access-token-" + "a" * 30,
        "refresh": "refresh-token-" + "r" * 30,
        "client": "client-secret-" + "c" * 30,
    }
    cipher = services.cipher
    encrypted = {name: cipher.encrypt(value) for name, value in secrets.items()}
    await add(
        services,
        account(
            unisender_key_enc=encrypted["unisender"],
            unisender_valid=True,
            webhook_token_hash="f" * 64,
            webhook_token_enc=encrypted["webhook"],
        ),
        Integration(
            account_id=ACCOUNT_ID,
            client_id="7f8e2a1c-0000-4000-8000-00000000c11d",
            client_secret_enc=encrypted["client"],
            access_token_enc=encrypted["access"],
            refresh_token_enc=encrypted["refresh"],
            base_url="https://acme.amocrm.ru",
            expires_at=utcnow() + timedelta(hours=20),
            webhook_registered=True,
        ),
        contact(1),
        contact(2, "unsynced", reason="no_email", emails=[]),
        running_run(),
        failed_job(),
    )

    pages = [
        await operator.get(path)
        for path in (
            "/",
            f"/ui/accounts/{ACCOUNT_ID}",
            f"/ui/accounts/{ACCOUNT_ID}?contacts=unsynced",
            f"/ui/accounts/{ACCOUNT_ID}/disconnect",
            f"/ui/accounts/{ACCOUNT_ID}/progress",
        )
    ]

    # The page does describe the integration, just not its secrets.
    assert "https://acme.amocrm.ru" in pages[1].text
    assert "stored, expire" in pages[1].text
    for page in pages:
        assert page.status_code == 200
        for forbidden in [ADMIN_TOKEN, *secrets.values(), *encrypted.values(), "f" * 64]:
            assert forbidden not in page.text, (page.url, forbidden[:16])


async def test_pages_use_no_inline_script_or_style(
    operator: httpx.AsyncClient, services: Services
) -> None:
    # The CSP forbids inline code; the browser test would only catch what it happens to see.
    await add(services, account(), contact(1), running_run(), failed_job())
    paths = [
        "/",
        f"/ui/accounts/{ACCOUNT_ID}",
        f"/ui/accounts/{ACCOUNT_ID}/disconnect",
        "/ui/accounts/1",
    ]
    anonymous = httpx.AsyncClient(transport=operator._transport, base_url="http://amosync.test")
    login = await anonymous.get("/")
    for html in [login.text, *[(await operator.get(path)).text for path in paths]]:
        assert re.findall(r"<script(?![^>]*\ssrc=)[^>]*>", html) == []
        assert "<style" not in html
        assert re.search(r"\sstyle=", html) is None
        assert re.search(r"\son[a-z]+=", html) is None
        # Works offline: nothing is loaded from another site (links to amoCRM's contact
        # cards are navigation, not loads).
        assert re.search(r'src="(https?:)?//', html) is None
        assert re.search(r'<link[^>]+href="(https?:)?//', html) is None


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/static/app.css", "text/css"), ("/static/dashboard.js", "javascript")],
)
async def test_assets_are_served_by_the_app(
    web: httpx.AsyncClient, path: str, content_type: str
) -> None:
    response = await web.get(path)

    assert response.status_code == 200
    assert content_type in response.headers["content-type"]
    assert len(response.content) > 1000
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_security_headers_on_every_dashboard_response(
    operator: httpx.AsyncClient, services: Services
) -> None:
    await add(services, account())
    anonymous = httpx.AsyncClient(transport=operator._transport, base_url="http://amosync.test")
    responses = [
        await anonymous.get("/"),
        await anonymous.post("/login", data={"token": "wrong"}),
        await anonymous.get(f"/ui/accounts/{ACCOUNT_ID}"),
        await anonymous.get(f"/ui/accounts/{ACCOUNT_ID}/progress"),
        await operator.get("/"),
        await operator.get(f"/ui/accounts/{ACCOUNT_ID}"),
        await operator.get(f"/ui/accounts/{ACCOUNT_ID}/progress"),
        await operator.get("/ui/accounts/1"),
        await operator.post(f"/ui/accounts/{ACCOUNT_ID}/sync", data={}),
        await operator.get("/static/app.css"),
        await operator.get("/static/missing.js"),
    ]
    for response in responses:
        headers = response.headers
        where = (response.request.method, response.request.url.path, response.status_code)
        assert "default-src 'self'" in headers["content-security-policy"], where
        assert "unsafe-inline" not in headers["content-security-policy"], where
        assert headers["x-frame-options"] == "DENY", where
        assert headers["x-content-type-options"] == "nosniff", where
        assert headers["referrer-policy"] == "no-referrer", where
    assert responses[-1].status_code == 404
    assert responses[0].headers["cache-control"] == "no-store"


async def test_a_failed_sync_shows_its_error(
    operator: httpx.AsyncClient, services: Services
) -> None:
    await add(
        services,
        account(),
        running_run(
            status="failed",
            finished_at=utcnow(),
            error="Unisender refused the API key (invalid_api_key)",
        ),
    )

    page = await operator.get(f"/ui/accounts/{ACCOUNT_ID}")

    assert 'class="badge badge--failed" data-field="status">failed<' in page.text
    assert "Unisender refused the API key (invalid_api_key)" in page.text
    assert 'data-field="error" hidden' not in page.text


async def test_the_amocrm_address_in_use_is_shown(
    operator: httpx.AsyncClient, services: Services
) -> None:
    integration = Integration(
        account_id=ACCOUNT_ID,
        client_id="7f8e2a1c-0000-4000-8000-00000000c11d",
        base_url="https://acme.amocrm.ru",
    )
    await add(services, account(), integration)
    page = await operator.get(f"/ui/accounts/{ACCOUNT_ID}")
    assert "https://acme.amocrm.ru" in page.text
    assert "AMOSYNC_AMOCRM_BASE_URL" not in page.text

    # With the override every call goes there: say so, beside the account's own address.
    services.settings = services.settings.model_copy(
        update={"amocrm_base_url": "http://127.0.0.1:9000"}
    )
    page = await operator.get(f"/ui/accounts/{ACCOUNT_ID}")
    assert "http://127.0.0.1:9000" in page.text
    assert "AMOSYNC_AMOCRM_BASE_URL" in page.text
    assert "https://acme.amocrm.ru" in page.text
