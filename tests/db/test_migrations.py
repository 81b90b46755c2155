"""Migrations build the schema on an empty SQLite file and an empty PostgreSQL database."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from amosync.db.engine import make_engine
from amosync.db.migrate import alembic_config, upgrade, upgrade_async
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


def test_upgrade_on_a_new_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    upgrade(f"sqlite:///{path}")
    assert path.exists()


def test_the_migrations_have_one_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config("sqlite:///unused.db")).get_heads()
    assert len(heads) == 1, heads


UPGRADE = "import sys; from amosync.db.migrate import upgrade; upgrade(sys.argv[1])"


def test_processes_starting_together_migrate_once(pg_database: str) -> None:
    # A service and workers started at once (docker compose up): each migrates at start.
    # Under the advisory lock one migrates and the others find the schema at head.
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", UPGRADE, pg_database],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=90)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], outputs

    async def version() -> list[str]:
        engine = make_engine(pg_database)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
                return [row[0] for row in rows]
        finally:
            await engine.dispose()

    head = ScriptDirectory.from_config(alembic_config(pg_database)).get_current_head()
    assert asyncio.run(version()) == [head]
