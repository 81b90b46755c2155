"""Migrations build the schema on an empty SQLite file and an empty PostgreSQL database."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from amosync.db.engine import make_engine
from amosync.db.migrate import upgrade, upgrade_async
from amosync.db.models import Base


async def test_upgrade_builds_every_table(database_url: str) -> None:
    # The session fixture already ran `upgrade` on an empty database; running it again
    # must be a no-op, and the result must match the models.
    await upgrade_async(database_url)
    engine = make_engine(database_url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
            indexes = await connection.run_sync(
                lambda c: {i["name"] for i in inspect(c).get_indexes("sync_runs")}
            )
    finally:
        await engine.dispose()
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables
    assert "uq_sync_runs_active_account" in indexes


def test_upgrade_on_a_new_sqlite_file(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "nested" / "fresh.db"  # type: ignore[operator]
    upgrade(f"sqlite:///{path}")
    assert path.exists()
