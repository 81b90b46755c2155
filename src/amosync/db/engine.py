"""Engine and session factory for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import ARRAY, BigInteger, ColumnElement, Text, any_, event, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import InstrumentedAttribute


def async_url(url: str) -> str:
    """Turn the user-facing URL (`sqlite:///…`, `postgresql://…`) into its async-driver form."""
    parsed = make_url(url)
    driver = parsed.drivername
    if driver in ("sqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif driver in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the dashboard read while the worker writes; NORMAL sync is durable across
    # process crashes (only an OS crash can lose the last commits); busy_timeout makes
    # concurrent writers queue instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL and in-memory databases)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return None
    database = parsed.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _private_sqlite_file(path: Path) -> None:
    """Create the database file 0600 before SQLite does, and make an existing one 0600.

    SQLite creates a database with the process's umask (0644 as a rule: readable by every
    user of the machine) and its -wal and -shm files with the database file's mode, so a
    0600 database keeps them 0600 too; an existing one's are fixed here as well.
    """
    # No directory is created: a mistyped path must be an error, not a new empty database
    # somewhere unexpected (the CLI checks the directory first and says so).
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm", f"{path.name}-journal"):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            file = path.with_name(name)
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        # orjson has no integers over 64 bits (an account's settings may carry one, e.g.
        # {"x": 2**70}); the json module writes any integer exactly, and both databases
        # keep the number as written (SQLite's JSON is text; PostgreSQL's json too).
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    full = async_url(url)
    # orjson for JSON columns: several times faster than json.dumps, on every webhook row.
    kwargs.setdefault("json_serializer", _json)
    if full.startswith("sqlite"):
        path = sqlite_file(url)
        if path is not None:
            _private_sqlite_file(path)
        engine = create_async_engine(full, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(full, **kwargs)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits on success, rolls back on any exception."""
    async with sessions() as session, session.begin():
        yield session


def insert_for(dialect: str) -> Any:
    """The `insert` of `postgresql` or `sqlite`, for the statements that need its
    ON CONFLICT clauses."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def dialect_name(session: AsyncSession) -> str:
    """`postgresql` or `sqlite`: the few statements that differ pick their form by this."""
    return session.get_bind().dialect.name


_UNSEEN = object()


def _processed(processor: Callable[[Any], Any], values: list[Any]) -> list[Any]:
    """A column through its type's processor. A value shared by consecutive rows (a batch's
    one timestamp) is processed once: date processors cost more than the rest of a row."""
    out = []
    seen, done = _UNSEEN, None
    for value in values:
        if value is not seen:
            seen, done = value, processor(value)
        out.append(done)
    return out


class PreparedInsert:
    """An INSERT compiled once for a dialect and run with `exec_driver_sql`.

    For the hottest statements only (a webhook batch's rows, a full sync's contacts and
    addresses): `Connection.execute` looks the statement up in the compiled cache and
    processes every value of every row through SQLAlchemy's parameter machinery, which cost
    more than the insert itself. Here the SQL is compiled by SQLAlchemy once, and the rows
    go through the same type processors (JSON, dates) into tuples in the statement's
    parameter order.
    """

    def __init__(self, statement: Any, dialect: Dialect, columns: Sequence[str]) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(columns))
        self.sql = str(compiled)
        names: Sequence[str] = compiled.positiontup or ()
        # (row key, constant, processor) per parameter: a key the rows do not carry is a
        # constant of the statement itself (the 1 of `version + 1`).
        self._params = []
        for name in names:
            bind = compiled.binds[name]
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            self._params.append((name if name in columns else None, bind.value, processor))

    def rows(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """The rows as tuples in the statement's parameter order, built column by column."""
        columns = []
        for key, constant, processor in self._params:
            column = [row[key] for row in rows] if key is not None else [constant] * len(rows)
            if processor is not None:
                column = _processed(processor, column)
            columns.append(column)
        return list(zip(*columns, strict=True))

    async def run(self, connection: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            await connection.exec_driver_sql(self.sql, self.rows(rows))


_PREPARED: dict[tuple[str, str], PreparedInsert] = {}


def prepared(build: Callable[[Dialect], PreparedInsert], dialect: Dialect) -> PreparedInsert:
    """`build(dialect)`, once per kind of database (the SQL is the same for every engine)."""
    key = (f"{build.__module__}.{build.__qualname__}", dialect.name)
    found = _PREPARED.get(key)
    if found is None:
        found = _PREPARED[key] = build(dialect)
    return found


def among(
    column: ColumnElement[Any] | InstrumentedAttribute[Any], values: Iterable[int], dialect: str
) -> ColumnElement[bool]:
    """`column IN (values)` with the values in one parameter: an array on PostgreSQL, a JSON
    array read by `json_each` on SQLite.

    `in_()` renders a placeholder per value on every call, which for a batch of 500
    contacts cost more than the query; here the SQL is the same for any number of values,
    so it compiles once and stays cached.
    """
    ids = list(values)
    if dialect == "postgresql":
        return column == any_(literal(ids, ARRAY(BigInteger)))
    each = func.json_each(literal(orjson.dumps(ids).decode(), Text)).table_valued("value")
    return column.in_(select(each.c.value))
