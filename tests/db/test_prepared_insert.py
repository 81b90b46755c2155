"""`PreparedInsert` stores exactly what `Connection.execute` would, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert, select

from amosync.db.engine import PreparedInsert, prepared, transaction
from amosync.db.models import Account, PendingChange
from amosync.runtime.services import Services
from amosync.sync.webhooks import PENDING_COLUMNS, _upsert_pending

WHEN = datetime(2026, 12, 1, 15, 4, 5, 123456, tzinfo=UTC)


def row(amocrm_id: int, **changes: object) -> dict[str, object]:
    return {
        "account_id": 7,
        "amocrm_id": amocrm_id,
        "action": "upsert",
        "name": "Ann Smith",
        "emails": ["ann@example.com", "Ann.S@Example.org"],
        "amocrm_updated_at": 1700000000,
        "version": 1,
        "received_at": WHEN,
        "data": None,
        **changes,
    }


async def stored(services: Services) -> dict[int, tuple[object, ...]]:
    async with services.sessions() as session:
        rows = (await session.execute(select(PendingChange))).scalars()
        return {
            r.amocrm_id: (r.action, r.name, r.emails, r.amocrm_updated_at, r.version, r.received_at)
            for r in rows
        }


async def test_rows_read_back_the_same_as_through_core(services: Services) -> None:
    async with transaction(services.sessions) as session:
        session.add(Account(id=7, status="active", settings={}))
    async with services.engine.begin() as connection:
        await connection.execute(insert(PendingChange), [row(1)])
        prepared = PreparedInsert(insert(PendingChange), connection.dialect, PENDING_COLUMNS)
        await prepared.run(connection, [row(2), row(3, name=None, emails=[])])
    got = await stored(services)
    assert got[2] == got[1]
    assert got[2][-1] == WHEN
    assert got[3] == ("upsert", None, [], 1700000000, 1, WHEN)


async def test_the_webhook_upsert_keeps_its_constant_and_its_condition(services: Services) -> None:
    async with transaction(services.sessions) as session:
        session.add(Account(id=7, status="active", settings={}))
    async with services.engine.begin() as connection:
        upsert = prepared(_upsert_pending, connection.dialect)
        await upsert.run(connection, [row(1)])
        # Newer: replaces the state and bumps the version by the statement's own `+ 1`.
        await upsert.run(connection, [row(1, name="Ann", amocrm_updated_at=1700000100)])
        # Older, arriving late: changes nothing.
        await upsert.run(connection, [row(1, name="Stale", amocrm_updated_at=1700000050)])
    [(action, name, _, updated_at, version, _)] = (await stored(services)).values()
    assert (action, name, updated_at, version) == ("upsert", "Ann", 1700000100, 2)


async def test_a_value_shared_by_rows_is_processed_once_and_others_still_are(
    services: Services,
) -> None:
    # Processors are remembered by identity for consecutive rows: A, A, B, A must read back
    # as A, A, B, A, not as the last processed value.
    later = datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)
    shared = ["one@example.com"]
    async with transaction(services.sessions) as session:
        session.add(Account(id=7, status="active", settings={}))
    async with services.engine.begin() as connection:
        prepared = PreparedInsert(insert(PendingChange), connection.dialect, PENDING_COLUMNS)
        await prepared.run(
            connection,
            [
                row(1, emails=shared),
                row(2, emails=shared),
                row(3, received_at=later, emails=["two@example.com"]),
                row(4, emails=shared),
            ],
        )
    got = await stored(services)
    assert [got[i][-1] for i in (1, 2, 3, 4)] == [WHEN, WHEN, later, WHEN]
    assert [got[i][2] for i in (1, 2, 3, 4)] == [shared, shared, ["two@example.com"], shared]
