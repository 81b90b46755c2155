"""Unisender's answers as its documentation shows them (tests/fixtures/unisender/): the
client reads them, and the applier decides from the import log which rows were refused.

The log holds errors and warnings: a log entry alone never takes an address out of the
list. httpx.MockTransport serves the fixture files byte for byte (the sandbox produces the
same shapes, but not these exact answers); the database half runs on the real databases.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import stamina
from sqlalchemy import select

from amosync.db.engine import transaction
from amosync.db.models import Account, Contact, ListedEmail
from amosync.errors import InvalidApiKey, PermanentUpstreamError, TransientUpstreamError
from amosync.runtime.services import Services
from amosync.sync.apply import ISOLATION_CALLS, MAX_ROWS, Applier, ContactState, is_row_error
from amosync.unisender.client import UnisenderClient
from amosync.unisender.models import ImportResult, ImportRow
from amosync.upstream.ratelimit import make_limiter
from tests.transport import answered_by, form_of

FIXTURES = Path(__file__).parent.parent / "fixtures" / "unisender"
BASE = "https://api.unisender.com/ru/api"
LIST_ID = 55688
ACCOUNT = 4242


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=1):
        yield


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def answering(handler: Callable[[httpx.Request], bytes]) -> tuple[UnisenderClient, list[Any]]:
    """A client whose every call gets `handler(request)` as an HTTP 200 JSON body; the
    list collects each importContacts call's rows (their addresses)."""
    calls: list[list[str]] = []

    def respond(request: httpx.Request) -> httpx.Response:
        form = form_of(request)
        calls.append([v for k, v in sorted(form.items(), key=_row_order) if k.endswith("][0]")])
        return httpx.Response(200, content=handler(request), headers=JSON)

    return UnisenderClient(BASE, "key", make_limiter(1000), http=answered_by(respond)), calls


JSON = {"content-type": "application/json"}


def _row_order(item: tuple[str, str]) -> tuple[int, str]:
    found = re.match(r"data\[(\d+)\]", item[0])
    return (int(found.group(1)) if found else -1, item[0])


def rows(*emails: str) -> list[ImportRow]:
    return [ImportRow(email, "Name") for email in emails]


# --- the client --------------------------------------------------------------------------


async def test_an_answer_with_log_and_warnings_is_read_whole() -> None:
    client, _ = answering(lambda _r: fixture("import_log_mixed.json"))
    async with client:
        result = await client.import_contacts(
            rows("a@example.com", "ann@@example.com", "b@example.com", "info@example.com"),
            list_id=LIST_ID,
        )
    assert (result.total, result.inserted, result.invalid) == (4, 2, 1)
    assert [(e.index, e.code) for e in result.log] == [(1, "invalid_arg"), (3, "role_address")]
    assert result.warnings == ["info@example.com looks like a role address"]


async def test_numbers_as_strings_and_no_invalid_count_are_accepted() -> None:
    client, _ = answering(lambda _r: fixture("import_log_as_strings.json"))
    async with client:
        result = await client.import_contacts(rows("a@example.com", "x@"), list_id=LIST_ID)
    assert (result.total, result.inserted, result.invalid) == (2, 1, None)
    assert [(e.index, e.code) for e in result.log] == [(1, "invalid_arg")]


@pytest.mark.parametrize(
    ("name", "error", "code"),
    [
        ("error_invalid_api_key.json", InvalidApiKey, "invalid_api_key"),
        (
            "error_api_call_limit_exceeded_for_api_key.json",
            TransientUpstreamError,
            "api_call_limit_exceeded_for_api_key",
        ),
        ("error_retry_later.json", TransientUpstreamError, "retry_later"),
        ("error_owned_by_different_subscribers.json", PermanentUpstreamError, "unspecified"),
    ],
)
async def test_error_answers_are_classified(name: str, error: type[Exception], code: str) -> None:
    client, _ = answering(lambda _r: fixture(name))
    async with client:
        with pytest.raises(error) as raised:
            await client.import_contacts(rows("a@example.com"), list_id=LIST_ID)
    assert raised.type is error
    assert getattr(raised.value, "code", None) == code
    # Only an error that may be about one row is worth halving the call for.
    expected_row_error = name == "error_owned_by_different_subscribers.json"
    assert (isinstance(raised.value, PermanentUpstreamError) and is_row_error(raised.value)) is (
        expected_row_error
    )


# --- which rows the log refuses ----------------------------------------------------------


def result_of(name: str) -> ImportResult:
    return ImportResult.model_validate(orjson.loads(fixture(name))["result"])


@pytest.mark.parametrize(
    ("name", "refused"),
    [
        ("import_clean.json", []),
        # Counters say one row was not imported, two are logged: only the known code.
        ("import_log_mixed.json", [1]),
        # Counters say every row was imported: the entry is a warning, whatever its code.
        ("import_log_warnings_only.json", []),
        # As many rows not imported as rows logged: all of them, codes unknown or not.
        ("import_log_refused.json", [0, 2]),
        # No counter of refused rows: only the known code.
        ("import_log_as_strings.json", [1]),
    ],
)
def test_the_log_refuses_rows_by_counter_then_by_code(name: str, refused: list[int]) -> None:
    assert [entry.index for entry in result_of(name).refused()] == refused


# --- the applier -------------------------------------------------------------------------


def state(amocrm_id: int, *emails: str) -> ContactState:
    return ContactState(amocrm_id, f"Contact {amocrm_id}", list(emails), list(emails), None)


async def stored(services: Services) -> dict[int, tuple[str, str | None, str | None]]:
    async with services.sessions() as session:
        rows = await session.execute(
            select(Contact.amocrm_id, Contact.state, Contact.reason, Contact.detail)
        )
        return {amocrm_id: (st, reason, detail) for amocrm_id, st, reason, detail in rows}


async def listed(services: Services) -> set[str]:
    async with services.sessions() as session:
        return set((await session.execute(select(ListedEmail.email))).scalars())


async def account(services: Services) -> None:
    async with transaction(services.sessions) as session:
        session.add(Account(id=ACCOUNT, status="active", settings={}))


async def test_a_warned_address_stays_listed_and_a_refused_one_does_not(
    services: Services,
) -> None:
    await account(services)
    client, _ = answering(lambda _r: fixture("import_log_mixed.json"))
    applier = Applier(ACCOUNT, LIST_ID, client, services.sessions)
    contacts = [
        state(1, "a@example.com"),
        state(2, "ann@@example.com"),
        state(3, "b@example.com"),
        state(4, "info@example.com"),
    ]
    async with client, transaction(services.sessions) as session:
        outcome = await applier.apply(session, contacts)
    assert (outcome.synced, outcome.unsynced) == (3, 1)
    contacts_now = await stored(services)
    assert contacts_now[2][:2] == ("unsynced", "unisender:invalid_arg")
    assert contacts_now[2][2] == 'Invalid e-mail address "ann@@example.com"'
    assert contacts_now[4][0] == "synced"  # the role address was imported: a warning
    assert await listed(services) == {"a@example.com", "b@example.com", "info@example.com"}


async def test_warnings_only_unlist_nothing(services: Services) -> None:
    await account(services)
    client, _ = answering(lambda _r: fixture("import_log_warnings_only.json"))
    applier = Applier(ACCOUNT, LIST_ID, client, services.sessions)
    async with client, transaction(services.sessions) as session:
        outcome = await applier.apply(
            session, [state(1, "sales@example.com"), state(2, "b@example.com")]
        )
    assert (outcome.synced, outcome.unsynced) == (2, 0)
    assert await listed(services) == {"sales@example.com", "b@example.com"}


async def test_a_call_refused_for_one_row_is_halved_until_that_row_stands_alone(
    services: Services,
) -> None:
    await account(services)
    owned = fixture("error_owned_by_different_subscribers.json")
    clean = fixture("import_clean.json")
    client, calls = answering(lambda r: owned if b"owned%40example.com" in r.content else clean)
    applier = Applier(ACCOUNT, LIST_ID, client, services.sessions)
    contacts = [state(i, f"c{i}@example.com") for i in range(40)]
    contacts[17] = state(17, "owned@example.com")
    async with client, transaction(services.sessions) as session:
        outcome = await applier.apply(session, contacts)
    assert (outcome.synced, outcome.unsynced) == (39, 1)
    reason = (await stored(services))[17]
    assert reason[:2] == ("unsynced", "unisender:unspecified")
    assert "owned by different subscribers" in str(reason[2])
    assert len(calls) <= 1 + 2 * 6  # halving 40 rows takes six levels
    assert await listed(services) == {f"c{i}@example.com" for i in range(40) if i != 17}


async def test_a_call_refused_for_every_row_fails_rather_than_halving_forever(
    services: Services,
) -> None:
    await account(services)
    client, calls = answering(lambda _r: fixture("error_owned_by_different_subscribers.json"))
    applier = Applier(ACCOUNT, LIST_ID, client, services.sessions)
    contacts = [state(i, f"c{i}@example.com") for i in range(MAX_ROWS)]
    async with client, transaction(services.sessions) as session:
        with pytest.raises(PermanentUpstreamError):
            await applier.apply(session, contacts)
    assert len(calls) == 1 + ISOLATION_CALLS


async def test_a_contact_over_500_addresses_is_imported_in_pieces_and_recorded_whole(
    services: Services,
) -> None:
    await account(services)
    client, calls = answering(lambda _r: fixture("import_clean.json"))
    applier = Applier(ACCOUNT, LIST_ID, client, services.sessions)
    big = state(1, *(f"big{i}@example.com" for i in range(1200)))
    async with client, transaction(services.sessions) as session:
        outcome = await applier.apply(session, [big])
    assert [len(call) for call in calls] == [500, 500, 200]
    assert [address for call in calls for address in call] == big.valid
    assert (outcome.synced, outcome.unsynced) == (1, 0)
    assert len(await listed(services)) == 1200
