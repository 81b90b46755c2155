"""Run history, the hourly chart and its counter, the reason filter, the CSV export and the
links to amoCRM, over ASGI against a real database."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import httpx
from sqlalchemy import select

from amosync.db.models import AppliedHour, Integration, SyncRun, utcnow
from amosync.runtime.services import Services
from amosync.sync.activity import count_applied, hour_of
from tests.web.conftest import ACCOUNT_ID, account, add, contact

PAGE = f"/ui/accounts/{ACCOUNT_ID}"


async def test_applied_changes_add_up_per_hour(services: Services) -> None:
    await add(services, account())
    at = utcnow()
    async with services.sessions() as session, session.begin():
        await count_applied(session, ACCOUNT_ID, synced=10, unsynced=2, at=at)
        await count_applied(session, ACCOUNT_ID, synced=5, deleted=1, at=at)
        await count_applied(session, ACCOUNT_ID, synced=7, at=at - timedelta(hours=1))
        await count_applied(session, ACCOUNT_ID, at=at)  # nothing: no row

    async with services.sessions() as session:
        rows = (await session.execute(select(AppliedHour).order_by(AppliedHour.hour))).scalars()
        got = [(r.hour, r.synced, r.unsynced, r.deleted) for r in rows]
    assert got == [
        (hour_of(at) - timedelta(hours=1), 7, 0, 0),
        (hour_of(at), 15, 2, 1),
    ]


async def test_the_account_page_shows_run_history_and_the_chart(
    operator: httpx.AsyncClient, services: Services
) -> None:
    now = utcnow()
    await add(
        services,
        account(),
        SyncRun(account_id=ACCOUNT_ID, status="done", fetched=10, synced=9, unsynced=1),
        SyncRun(account_id=ACCOUNT_ID, status="failed", error="Unisender refused the key"),
        AppliedHour(account_id=ACCOUNT_ID, hour=hour_of(now), synced=9, unsynced=1, deleted=0),
        AppliedHour(
            account_id=ACCOUNT_ID,
            hour=hour_of(now) - timedelta(hours=30),  # older than the chart's day
            synced=500,
            unsynced=0,
            deleted=0,
        ),
    )

    html = (await operator.get(PAGE)).text

    runs = re.findall(r'<tr data-run-id="(\d+)" data-status="(\w+)">', html)
    assert [status for _, status in runs] == ["failed", "done"]
    assert "Unisender refused the key" in html
    assert 'data-role="chart" data-total="10"' in html
    assert len(re.findall(r'<g class="chart__bar"', html)) == 24
    assert len(re.findall(r'data-series="synced"', html)) == 1
    # A failed run that never fetched anything: an empty bar, not a full or moving one.
    block = html.split("progress-block--detailed", 1)[1]
    assert re.search(r'data-field="bar" data-status="failed" max="100" value="0"', block)


async def test_unsynced_contacts_filter_by_reason(
    operator: httpx.AsyncClient, services: Services
) -> None:
    await add(
        services,
        account(),
        contact(1, "unsynced", emails=[], reason="no_email"),
        contact(2, "unsynced", emails=["x@bad"], reason="invalid_email"),
        contact(3, "unsynced", emails=[], reason="no_email"),
        contact(4, "unsynced", emails=["a@b.example"], reason=None),
        contact(5),
    )

    page = await operator.get(PAGE, params={"contacts": "unsynced", "reason": "no_email"})
    none = await operator.get(PAGE, params={"contacts": "unsynced", "reason": "-"})
    unknown = await operator.get(PAGE, params={"contacts": "unsynced", "reason": "nope"})

    assert re.findall(r'data-contact-id="(\d+)"', page.text) == ["1", "3"]
    assert (
        'chip chip--current" href="/ui/accounts/30896271?contacts=unsynced&amp;reason=no_email'
        in (page.text)
    )
    assert re.findall(r'data-contact-id="(\d+)"', none.text) == ["4"]
    # A reason no contact has is no filter.
    assert re.findall(r'data-contact-id="(\d+)"', unknown.text) == ["1", "2", "3", "4"]
    assert f"/ui/accounts/{ACCOUNT_ID}/unsynced.csv?reason=no_email" in page.text


async def test_csv_export_holds_every_filtered_row_across_pages(
    operator: httpx.AsyncClient, services: Services
) -> None:
    rows = [contact(i, "unsynced", emails=[], reason="no_email") for i in range(1, 1206)]
    rows += [
        contact(
            5000, "unsynced", name="=cmd|' /C calc'!A0", emails=["x@bad"], reason="invalid_email"
        ),
        contact(5001, "unsynced", name="-2+3", emails=[], reason="no_email"),
    ]
    await add(
        services,
        account(),
        Integration(account_id=ACCOUNT_ID, client_id="c", base_url="https://acme.kommo.com"),
        *rows,
    )

    response = await operator.get(f"{PAGE}/unsynced.csv", params={"reason": "no_email"})
    everything = await operator.get(f"{PAGE}/unsynced.csv")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert (
        'filename="amosync-30896271-unsynced-no_email.csv"'
        in response.headers["content-disposition"]
    )
    table = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [int(r["amocrm_id"]) for r in table] == [*range(1, 1206), 5001]
    assert {r["reason"] for r in table} == {"no_email"}
    assert table[0]["reason_text"] == "No e-mail address"
    assert table[0]["amocrm_url"] == "https://acme.kommo.com/contacts/detail/1"
    # A name that a spreadsheet would run as a formula is written as text.
    assert table[-1]["name"] == "'-2+3"
    full = list(csv.DictReader(io.StringIO(everything.content.decode("utf-8-sig"))))
    assert len(full) == 1207
    assert full[-2]["name"].startswith("'=cmd")


async def test_csv_export_in_russian_words_the_reasons_in_russian(
    operator: httpx.AsyncClient, services: Services
) -> None:
    await add(services, account(), contact(1, "unsynced", emails=[], reason="no_email"))

    response = await operator.get(f"{PAGE}/unsynced.csv", headers={"Accept-Language": "ru"})

    [row] = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert row["reason_text"] == "Нет адреса e-mail"
    assert row["amocrm_url"] == "https://acme.amocrm.ru/contacts/detail/1"


async def test_csv_export_needs_a_login(web: httpx.AsyncClient, services: Services) -> None:
    await add(services, account(), contact(1, "unsynced", emails=[], reason="no_email"))

    response = await web.get(f"{PAGE}/unsynced.csv")

    assert response.status_code == 303
    assert "no_email" not in response.text


async def test_contacts_link_to_their_card_in_amocrm(
    operator: httpx.AsyncClient, services: Services
) -> None:
    await add(services, account(subdomain="acme"), contact(42))
    html = (await operator.get(PAGE)).text
    assert 'href="https://acme.amocrm.ru/contacts/detail/42"' in html

    # A subdomain that is not a host name gives no link rather than a strange one.
    async with services.sessions() as session, session.begin():
        stored = await session.get(type(account()), ACCOUNT_ID)
        assert stored is not None
        stored.subdomain = "evil.example/x?"
    html = (await operator.get(PAGE)).text
    assert "contacts/detail/42" not in html
