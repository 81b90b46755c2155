"""What a command checks before it starts work: the database answers, the schema is at head,
the encryption key reads the stored secrets, and which admin token is in use.

Each mistake a person can make in the settings is a `ConfigError` naming the setting, which
the CLI prints in one or two lines (exit code 2) instead of a traceback from deep inside a
driver.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import InstrumentedAttribute

from amosync.config import ConfigError, Settings, read_or_create_secret, write_secret
from amosync.db.engine import insert_for, make_engine
from amosync.db.migrate import upgrade_async
from amosync.db.models import Account, Integration, ServiceSecret, utcnow
from amosync.runtime.crypto import Cipher

DATABASE = "AMOSYNC_DATABASE_URL"
CONNECT_TIMEOUT = 10.0
ADMIN_TOKEN = "admin_token"
ADMIN_TOKEN_FILE = ".admin-token"


async def prepare(
    settings: Settings, *, migrate: bool = True, rotate_admin_token: bool = False
) -> Settings:
    """Check everything a command needs; the settings with the key and admin token resolved."""
    check_sqlite_path(settings)
    engine = make_engine(
        settings.database_url,
        **({} if settings.is_sqlite else {"connect_args": {"timeout": CONNECT_TIMEOUT}}),
    )
    try:
        await check_database(settings, engine)
        cipher = Cipher(settings.resolve_encryption_key())
        if migrate:
            await upgrade_async(settings.database_url)
        await check_stored_secrets(settings, engine, cipher)
        token = await admin_token(settings, engine, cipher, rotate=rotate_admin_token)
    finally:
        await engine.dispose()
    return settings.model_copy(
        update={"encryption_key": cipher.key, "admin_token": token},
    )


def check_sqlite_path(settings: Settings) -> None:
    """A SQLite file may be new, its directory may not: a typo must not start a new database."""
    path = settings.sqlite_path()
    if path is None:
        return
    shown = str(path)
    if path.is_dir():
        raise ConfigError(DATABASE, f"points to {shown}, a directory", "name a file in it")
    if not path.parent.is_dir():
        raise ConfigError(
            DATABASE,
            f"points into {path.parent.absolute()}, which does not exist",
            "create the directory, or fix the path (sqlite:///./amosync.db is a file here)",
        )
    if not os.access(path if path.exists() else path.parent, os.R_OK | os.W_OK):
        raise ConfigError(DATABASE, f"points to {shown}, which this user cannot write")


async def check_database(settings: Settings, engine: AsyncEngine) -> None:
    """The database answers; otherwise say what is wrong with the URL or the server."""
    url = make_url(settings.database_url)
    where = f"{url.host}:{url.port or 5432}" if not settings.is_sqlite else str(url.database)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except ConnectionRefusedError:
        raise ConfigError(
            DATABASE,
            f"cannot reach PostgreSQL at {where}: connection refused",
            "is the server running, and are the host and port right?",
        ) from None
    except socket.gaierror:
        raise ConfigError(
            DATABASE, f"names a host that does not resolve: {url.host}", "fix the host name"
        ) from None
    except TimeoutError:
        raise ConfigError(
            DATABASE,
            f"cannot reach PostgreSQL at {where}: no answer in {CONNECT_TIMEOUT:.0f} s",
            "is the host right, and does a firewall let the port through?",
        ) from None
    except DBAPIError as exc:
        # The server answered and refused: unknown database or role, wrong password.
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise ConfigError(DATABASE, f"is refused by the database at {where}: {reason}") from None
    except OSError as exc:
        raise ConfigError(
            DATABASE, f"cannot reach the database at {where}: {exc.strerror or exc}"
        ) from None


_SECRET_COLUMNS: tuple[InstrumentedAttribute[str | None] | InstrumentedAttribute[str], ...] = (
    Account.unisender_key_enc,
    Account.webhook_token_enc,
    Integration.client_secret_enc,
    Integration.refresh_token_enc,
    ServiceSecret.value_enc,
)


async def check_stored_secrets(settings: Settings, engine: AsyncEngine, cipher: Cipher) -> None:
    """One stored secret of each kind decrypts with the key in use."""
    async with engine.connect() as connection:
        for column in _SECRET_COLUMNS:
            stored = await connection.scalar(select(column).where(column.is_not(None)).limit(1))
            if stored is not None and not cipher.can_decrypt(stored):
                raise _wrong_key(settings)


def _wrong_key(settings: Settings) -> ConfigError:
    if settings.encryption_key:
        where = "AMOSYNC_ENCRYPTION_KEY"
    else:
        where = (
            f"AMOSYNC_ENCRYPTION_KEY (unset, so the key file {settings.beside_database('.key')})"
        )
    return ConfigError(
        where,
        "cannot decrypt the secrets stored in the database",
        "set the key they were stored with (was the key changed or its file replaced?)",
    )


async def admin_token(
    settings: Settings, engine: AsyncEngine, cipher: Cipher, *, rotate: bool = False
) -> str:
    """The admin token in use: the setting, else one generated once and kept.

    Kept beside a SQLite database in a 0600 file, otherwise in the database (encrypted), so
    every process and every restart accepts the same one. `rotate` makes a new one.
    """
    if settings.admin_token:
        if rotate:
            raise ConfigError(
                "AMOSYNC_ADMIN_TOKEN", "is set, so it is the token", "change it where it is set"
            )
        return settings.admin_token
    path = admin_token_file(settings)
    if path is not None:
        if rotate:
            write_secret(path, new_admin_token())
        return read_or_create_secret(path, new_admin_token)
    table = ServiceSecret.__table__
    async with engine.begin() as connection:
        insert = insert_for(connection.dialect.name)(table)
        value = {"name": ADMIN_TOKEN, "value_enc": cipher.encrypt(new_admin_token())}
        if rotate:
            statement = insert.values(**value).on_conflict_do_update(
                index_elements=[table.c.name],
                set_={"value_enc": insert.excluded.value_enc, "updated_at": utcnow()},
            )
        else:
            # Processes starting together: the first insert wins, the others read it.
            statement = insert.values(**value).on_conflict_do_nothing(index_elements=[table.c.name])
        await connection.execute(statement)
        stored = await connection.scalar(
            select(table.c.value_enc).where(table.c.name == ADMIN_TOKEN)
        )
    assert stored is not None
    return cipher.decrypt(stored)


def admin_token_file(settings: Settings) -> Path | None:
    return settings.beside_database(ADMIN_TOKEN_FILE)


def new_admin_token() -> str:
    # Letters and digits only: it is pasted into shells, headers and a login form.
    return secrets.token_hex(24)
