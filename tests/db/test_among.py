"""`among`: `IN (values)` as one parameter, on both databases; the contact index is used."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select, text

from amosync.db.engine import among, transaction
from amosync.db.models import Account, ListedEmail
from amosync.runtime.services import Services


async def listed(services: Services) -> None:
    async with transaction(services.sessions) as session:
        session.add(Account(id=7, status="active", settings={}))
        await session.flush()
        await session.execute(
            insert(ListedEmail),
            [{"account_id": 7, "email": f"c{i}@example.com", "amocrm_id": i} for i in range(1, 6)],
        )


@pytest.mark.parametrize(
    ("ids", "expected"),
    [([2, 4, 99], [2, 4]), ([], []), ([5], [5]), (list(range(1000, 2000)) + [1], [1])],
)
async def test_among_selects_exactly_the_given_ids(
    services: Services, ids: list[int], expected: list[int]
) -> None:
    await listed(services)
    dialect = services.engine.dialect.name
    async with services.sessions() as session:
        found = await session.scalars(
            select(ListedEmail.amocrm_id)
            .where(among(ListedEmail.amocrm_id, ids, dialect))
            .order_by(ListedEmail.amocrm_id)
        )
        assert list(found) == expected
        others = await session.scalars(
            select(ListedEmail.amocrm_id)
            .where(~among(ListedEmail.amocrm_id, ids, dialect))
            .order_by(ListedEmail.amocrm_id)
        )
        assert list(others) == [i for i in range(1, 6) if i not in expected]


async def test_sqlite_looks_contacts_up_in_their_index_without_statistics(
    services: Services,
) -> None:
    if services.engine.dialect.name != "sqlite":
        pytest.skip("the query planner in question is SQLite's")
    await listed(services)
    async with services.engine.connect() as connection:
        plan = await connection.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT amocrm_id, email FROM listed_emails "
            "WHERE account_id = 7 AND amocrm_id IN (SELECT value FROM json_each('[1, 2]'))"
        )
        details = " ".join(row[-1] for row in plan)
        stats = await connection.execute(
            text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
        )
    assert stats.scalar() == 0  # no ANALYZE has run
    assert "ix_listed_emails_contact (account_id=? AND amocrm_id=?)" in details
