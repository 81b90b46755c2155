"""Apply Alembic migrations programmatically (used by the CLI, the app's start-up and tests).

On PostgreSQL the migrations run under a transaction-level advisory lock: however many
`serve` and `worker` processes start at once, one migrates and the others wait for it, then
find the schema at head and do nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

from amosync.db.engine import make_engine

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant shared by every amosync process: "amosync" in ASCII.
MIGRATION_LOCK = 0x616D6F73796E63


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    config.set_main_option(
        "file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d_%%(slug)s"
    )
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (blocking; runs its own event loop)."""
    asyncio.run(upgrade_async(url, revision))


async def upgrade_async(url: str, revision: str = "head") -> None:
    """Same, from inside a running event loop."""
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                # Held until the commit below, released even if this process dies.
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
                )
            await connection.run_sync(_upgrade, url, revision)
            await connection.commit()
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, url: str, revision: str) -> None:
    config = alembic_config(url)
    # The migrations' env.py runs on this connection (inside its transaction and lock).
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
