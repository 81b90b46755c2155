"""The SQLite database and its WAL and shared-memory files are the operator's alone (0600):
they hold every account's encrypted tokens and keys, and all contact addresses in clear."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from amosync.db.engine import make_engine
from amosync.db.migrate import upgrade


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """022, the usual default: files would be created 0644 (readable by every user)."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def write_and_check(path: Path) -> None:
    engine = make_engine(f"sqlite:///{path}")
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
            await connection.execute(text("INSERT INTO t VALUES (1)"))
        # The connection stays in the pool, so the WAL and its index are still there.
        for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
            assert oct(mode(path.with_name(name))) == oct(0o600), name
    finally:
        await engine.dispose()


async def test_a_new_database_and_its_wal_are_created_0600(tmp_path: Path) -> None:
    await write_and_check(tmp_path / "amosync.db")


async def test_an_existing_database_readable_by_others_is_made_0600(tmp_path: Path) -> None:
    path = tmp_path / "amosync.db"
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        path.with_name(name).touch(mode=0o644)
    await write_and_check(path)


def test_migrating_a_new_database_creates_it_0600(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "amosync.db"
    path.parent.mkdir()  # an existing directory: a missing one is an error (tests/cli/test_main.py)
    upgrade(f"sqlite:///{path}")
    assert oct(mode(path)) == oct(0o600)
    assert not any(mode(p) & 0o077 for p in path.parent.iterdir()), list(path.parent.iterdir())
