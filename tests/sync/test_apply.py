"""The applier (sync/apply.py): batches of contacts' states into the account's Unisender
list, and the contacts table and listed addresses kept to match.

Against the sandbox's Unisender over real HTTP: batching, exclusions, removals, halving a
refused call, the disconnect guard. Against Unisender's documented answers, byte for byte
(tests/unisender/answers.py): what the import log's errors and warnings make of a batch.
The database half runs on the real databases.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import httpx
import pytest
import stamina
from sqlalchemy import select, update

from amosync.db.engine import transaction
from amosync.db.models import Account, Contact, ListedEmail
from amosync.errors import AccountGone, PermanentUpstreamError
from amosync.runtime.services import Services
from amosync.sandbox import Sandbox, serve
from amosync.sync.apply import ISOLATION_CALLS, MAX_ROWS, Applier, ContactState, Outcome, batches
from amosync.unisender.client import UnisenderClient
from amosync.upstream.ratelimit import make_limiter
from tests.unisender.answers import answering, fixture

ACCOUNT = 4242
LIST_ID = 55688
KEY = "sandbox-unisender-key-apply"


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=1):
        yield


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


# --- batches -----------------------------------------------------------------------------


def sizes(groups: list[list[ContactState]]) -> list[list[int]]:
    return [[contact.rows for contact in group] for group in groups]


def test_batches_hold_at_most_max_rows_and_never_split_a_contact() -> None:
    contacts = [
        state(i, *(f"c{i}-{n}@example.com" for n in range(rows)))
        for i, rows in enumerate([2, 2, 1, 3, 4])
    ]
    assert sizes(list(batches(contacts, max_rows=4))) == [[2, 2], [1, 3], [4]]


def test_a_contact_over_max_rows_is_a_batch_of_its_own() -> None:
    contacts = [state(1, "a@example.com"), state(2, *(f"b{n}@example.com" for n in range(5)))]
    contacts.append(state(3, "c@example.com"))
    assert sizes(list(batches(contacts, max_rows=4))) == [[1], [5], [1]]


def test_contacts_without_addresses_ride_along_and_nothing_makes_no_batch() -> None:
    nobody = ContactState(9, "Nobody", [], [], "no_email")
    assert sizes(list(batches([nobody, state(1, "a@example.com"), nobody], max_rows=1))) == [
        [0, 1, 0]
    ]
    assert list(batches([])) == []
    assert sizes(list(batches([state(i, f"c{i}@example.com") for i in range(MAX_ROWS + 1)]))) == [
        [1] * MAX_ROWS,
        [1],
    ]


# --- against the sandbox -----------------------------------------------------------------


@dataclass
class Upstream:
    """The sandbox's Unisender over HTTP, the key's list, and an applier for it."""

    sandbox: Sandbox
    list_id: int
    applier: Applier

    def members(self) -> set[str]:
        return self.sandbox.unisender.list_members(KEY, self.list_id)

    def calls(self, method: str) -> int:
        return self.sandbox.calls.count_where(api="unisender", path=f"/ru/api/{method}")


@pytest.fixture
async def upstream(services: Services) -> AsyncIterator[Upstream]:
    await account(services)
    sandbox = Sandbox()
    sandbox.unisender.add_key(KEY)
    list_id = sandbox.unisender.create_list(KEY, "amoCRM")
    async with (
        serve(sandbox, host="127.0.0.1", port=0) as url,
        UnisenderClient(f"{url}/ru/api", KEY, make_limiter(1000)) as client,
    ):
        yield Upstream(sandbox, list_id, Applier(ACCOUNT, list_id, client, services.sessions))


async def apply(services: Services, applier: Applier, *contacts: ContactState) -> Outcome:
    """One batch applied and committed, as a job does."""
    async with transaction(services.sessions) as session:
        return await applier.apply(session, contacts)


async def test_a_batch_lists_its_addresses_in_one_call_and_records_every_contact(
    services: Services, upstream: Upstream
) -> None:
    nobody = ContactState(3, "Nobody", [], [], "no_email")
    outcome = await apply(
        services,
        upstream.applier,
        state(1, "ann@example.com"),
        state(2, "b1@example.com", "b2@example.com"),
        nobody,
    )
    assert (outcome.synced, outcome.unsynced, outcome.excluded) == (2, 1, [])
    assert upstream.calls("importContacts") == 1
    assert upstream.members() == {"ann@example.com", "b1@example.com", "b2@example.com"}
    assert await listed(services) == upstream.members()
    assert await stored(services) == {
        1: ("synced", None, None),
        2: ("synced", None, None),
        3: ("unsynced", "no_email", None),
    }


async def test_a_batch_of_no_addresses_calls_nobody(services: Services, upstream: Upstream) -> None:
    outcome = await apply(services, upstream.applier, ContactState(3, "Nobody", [], [], "no_email"))
    assert (outcome.synced, outcome.unsynced) == (0, 1)
    assert upstream.sandbox.calls.count_where(api="unisender") == 0


async def test_a_contact_over_500_addresses_takes_500_row_calls_and_is_listed_whole(
    services: Services, upstream: Upstream
) -> None:
    big = state(1, *(f"big{i}@example.com" for i in range(1200)))
    outcome = await apply(services, upstream.applier, big)
    assert upstream.calls("importContacts") == 3  # 500 + 500 + 200: the sandbox takes ≤ 500
    assert (outcome.synced, outcome.unsynced) == (1, 0)
    assert upstream.members() == set(big.valid)
    assert await listed(services) == set(big.valid)


async def test_a_dropped_address_is_excluded_unless_another_contact_has_it(
    services: Services, upstream: Upstream
) -> None:
    await apply(
        services,
        upstream.applier,
        state(1, "a@example.com", "shared@example.com"),
        state(2, "shared@example.com"),
    )
    outcome = await apply(services, upstream.applier, state(1, "b@example.com"))
    assert outcome.excluded == ["a@example.com"]
    assert upstream.calls("exclude") == 1
    assert upstream.members() == {"b@example.com", "shared@example.com"}
    assert await listed(services) == {"b@example.com", "shared@example.com"}


async def test_removed_contacts_leave_the_list_and_the_table(
    services: Services, upstream: Upstream
) -> None:
    await apply(services, upstream.applier, state(1, "a@example.com"), state(2, "b@example.com"))
    async with transaction(services.sessions) as session:
        excluded = await upstream.applier.remove(session, [1])
    assert excluded == ["a@example.com"]
    assert upstream.members() == {"b@example.com"}
    assert await listed(services) == {"b@example.com"}
    assert set(await stored(services)) == {2}


async def test_a_call_refused_for_one_address_is_halved_until_it_stands_alone(
    services: Services, upstream: Upstream
) -> None:
    upstream.sandbox.unisender.fail_imports("owned@example.com", code="unspecified")
    contacts = [state(i, f"c{i}@example.com") for i in range(40)]
    contacts[17] = state(17, "owned@example.com")
    outcome = await apply(services, upstream.applier, *contacts)
    assert (outcome.synced, outcome.unsynced) == (39, 1)
    assert (await stored(services))[17][:2] == ("unsynced", "unisender:unspecified")
    assert upstream.calls("importContacts") <= 1 + 2 * 6  # halving 40 rows takes six levels
    assert upstream.members() == {f"c{i}@example.com" for i in range(40) if i != 17}


async def test_nothing_goes_upstream_for_a_disconnected_account(
    services: Services, upstream: Upstream
) -> None:
    async with transaction(services.sessions) as session:
        await session.execute(
            update(Account).where(Account.id == ACCOUNT).values(status="disconnected")
        )
    with pytest.raises(AccountGone):
        await apply(services, upstream.applier, state(1, "a@example.com"))
    assert upstream.sandbox.calls.count_where(api="unisender") == 0
    assert upstream.members() == set()


# --- against the documented answers ------------------------------------------------------

Answered = Callable[[Callable[[httpx.Request], bytes]], tuple[Applier, list[list[str]]]]


@pytest.fixture
async def answered(services: Services) -> AsyncIterator[Answered]:
    """Appliers for the active account whose every Unisender call gets `answer(request)`
    (a documented body); each comes with the rows of each importContacts call."""
    await account(services)
    async with AsyncExitStack() as clients:

        def applier(answer: Callable[[httpx.Request], bytes]) -> tuple[Applier, list[list[str]]]:
            client, calls = answering(answer)
            clients.push_async_callback(client.aclose)
            return Applier(ACCOUNT, LIST_ID, client, services.sessions), calls

        yield applier


async def test_a_warned_address_stays_listed_and_a_refused_one_does_not(
    services: Services, answered: Answered
) -> None:
    applier, _ = answered(lambda _r: fixture("import_log_mixed.json"))
    contacts = [
        state(1, "a@example.com"),
        state(2, "ann@@example.com"),
        state(3, "b@example.com"),
        state(4, "info@example.com"),
    ]
    outcome = await apply(services, applier, *contacts)
    assert (outcome.synced, outcome.unsynced) == (3, 1)
    contacts_now = await stored(services)
    assert contacts_now[2][:2] == ("unsynced", "unisender:invalid_arg")
    assert contacts_now[2][2] == 'Invalid e-mail address "ann@@example.com"'
    assert contacts_now[4][0] == "synced"  # the role address was imported: a warning
    assert await listed(services) == {"a@example.com", "b@example.com", "info@example.com"}


async def test_warnings_only_unlist_nothing(services: Services, answered: Answered) -> None:
    applier, _ = answered(lambda _r: fixture("import_log_warnings_only.json"))
    outcome = await apply(
        services, applier, state(1, "sales@example.com"), state(2, "b@example.com")
    )
    assert (outcome.synced, outcome.unsynced) == (2, 0)
    assert await listed(services) == {"sales@example.com", "b@example.com"}


async def test_a_call_refused_for_one_row_is_halved_until_that_row_stands_alone(
    services: Services, answered: Answered
) -> None:
    owned = fixture("error_owned_by_different_subscribers.json")
    clean = fixture("import_clean.json")
    applier, calls = answered(lambda r: owned if b"owned%40example.com" in r.content else clean)
    contacts = [state(i, f"c{i}@example.com") for i in range(40)]
    contacts[17] = state(17, "owned@example.com")
    outcome = await apply(services, applier, *contacts)
    assert (outcome.synced, outcome.unsynced) == (39, 1)
    reason = (await stored(services))[17]
    assert reason[:2] == ("unsynced", "unisender:unspecified")
    assert "owned by different subscribers" in str(reason[2])
    assert len(calls) <= 1 + 2 * 6  # halving 40 rows takes six levels
    assert await listed(services) == {f"c{i}@example.com" for i in range(40) if i != 17}


async def test_a_call_refused_for_every_row_fails_rather_than_halving_forever(
    services: Services, answered: Answered
) -> None:
    applier, calls = answered(lambda _r: fixture("error_owned_by_different_subscribers.json"))
    contacts = [state(i, f"c{i}@example.com") for i in range(MAX_ROWS)]
    with pytest.raises(PermanentUpstreamError):
        await apply(services, applier, *contacts)
    assert len(calls) == 1 + ISOLATION_CALLS


async def test_a_contact_over_500_addresses_is_imported_in_pieces_and_recorded_whole(
    services: Services, answered: Answered
) -> None:
    applier, calls = answered(lambda _r: fixture("import_clean.json"))
    big = state(1, *(f"big{i}@example.com" for i in range(1200)))
    outcome = await apply(services, applier, big)
    assert [len(call) for call in calls] == [500, 500, 200]
    assert [address for call in calls for address in call] == big.valid
    assert (outcome.synced, outcome.unsynced) == (1, 0)
    assert len(await listed(services)) == 1200
