"""Settings, read from the environment and `.env` (names fixed by SPEC §2)."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

KEY_HELP = (
    'generate one with: python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())"'
)
_DATABASE_DRIVERS = {
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
    "sqlite+aiosqlite": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "postgresql+asyncpg": "postgresql",
    "postgresql+psycopg": "postgresql",
    "postgresql+psycopg2": "postgresql",
}


class ConfigError(RuntimeError):
    """A setting that stops the service: the CLI prints it (one or two lines) and exits 2.

    `setting` names what to change (`AMOSYNC_DATABASE_URL`, or a file such as the key file),
    `hint` says how, on a line of its own.
    """

    def __init__(self, setting: str, problem: str, hint: str | None = None) -> None:
        self.setting, self.problem, self.hint = setting, problem, hint
        super().__init__(f"{setting} {problem}" + (f"; {hint}" if hint else ""))

    def lines(self) -> list[str]:
        first = f"{self.setting} {self.problem}"
        return [first, self.hint] if self.hint else [first]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AMOSYNC_", env_file=".env", extra="ignore", env_file_encoding="utf-8"
    )

    database_url: str = "sqlite:///./amosync.db"
    amocrm_client_id: str | None = None
    amocrm_client_secret: str | None = None
    amocrm_redirect_uri: str | None = None
    amocrm_base_url: str | None = None
    amocrm_allowed_domains: str = "amocrm.ru,amocrm.com,kommo.com"
    amocrm_rps: float = Field(default=7, gt=0)
    unisender_base_url: str = "https://api.unisender.com/ru/api"
    unisender_rpm: float = Field(default=1200, gt=0)
    unisender_list_title: str = "amoCRM"
    public_url: str | None = None
    admin_token: str | None = None
    encryption_key: str | None = None
    worker: Literal["inline", "off"] = "inline"
    log_format: Literal["console", "json"] = "console"

    @field_validator(
        "amocrm_client_id",
        "amocrm_client_secret",
        "amocrm_redirect_uri",
        "amocrm_base_url",
        "public_url",
        "admin_token",
        "encryption_key",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ValueError:
            raise ValueError("has a port that is not a number") from None
        except ArgumentError:
            raise ValueError(
                "is not a database URL: use sqlite:///path/to/file.db or "
                "postgresql://user:password@host:port/database"
            ) from None
        kind = _DATABASE_DRIVERS.get(url.drivername)
        if kind is None:
            raise ValueError(
                f"names an unsupported database ({url.drivername}): use sqlite:///path/to/file.db "
                "or postgresql://user:password@host:port/database"
            )
        if kind == "postgresql" and not (url.host and url.database):
            raise ValueError(
                "needs a host and a database name: postgresql://user:password@host:port/database"
            )
        if kind == "sqlite" and not url.database:
            raise ValueError("needs a file: sqlite:///./amosync.db (three slashes, then the path)")
        return value

    @field_validator("encryption_key")
    @classmethod
    def _fernet_key(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                Fernet(value.encode())
            except ValueError:
                raise ValueError(
                    f"is not a Fernet key (url-safe base64 of 32 bytes); {KEY_HELP}"
                ) from None
        return value

    @property
    def allowed_domains(self) -> list[str]:
        return [d.strip().lower() for d in self.amocrm_allowed_domains.split(",") if d.strip()]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def webhook_base_url(self) -> str | None:
        """Where amoCRM should post webhooks: PUBLIC_URL, else the redirect URI without /vidget."""
        if self.public_url:
            return self.public_url.rstrip("/")
        if self.amocrm_redirect_uri:
            base = self.amocrm_redirect_uri.rstrip("/")
            return base.removesuffix("/vidget")
        return None

    @property
    def token_audience(self) -> str | None:
        """The `aud` of widget disposable tokens: the origin of the redirect URI."""
        if not self.amocrm_redirect_uri:
            return None
        parts = urlsplit(self.amocrm_redirect_uri)
        return f"{parts.scheme}://{parts.netloc}"

    def sqlite_path(self) -> Path | None:
        if not self.is_sqlite:
            return None
        path = make_url(self.database_url).database
        if not path or path == ":memory:":
            return None
        return Path(path)

    def beside_database(self, suffix: str) -> Path | None:
        """A file kept next to the SQLite database (`amosync.db.key`), None for PostgreSQL."""
        db_path = self.sqlite_path()
        return None if db_path is None else db_path.with_name(db_path.name + suffix)

    def resolve_encryption_key(self) -> str:
        """The Fernet key: the setting, else a 0600 key file beside the SQLite database."""
        if self.encryption_key:
            return self.encryption_key
        key_path = self.beside_database(".key")
        if key_path is None:
            raise ConfigError(
                "AMOSYNC_ENCRYPTION_KEY",
                "is required unless the database is a SQLite file",
                f"set it in .env or the environment; {KEY_HELP}",
            )
        key = read_or_create_secret(key_path, lambda: Fernet.generate_key().decode())
        try:
            Fernet(key.encode())
        except ValueError:
            raise ConfigError(
                str(key_path),
                "does not hold a Fernet key",
                "restore the file, or set AMOSYNC_ENCRYPTION_KEY",
            ) from None
        return key


def read_or_create_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret in `path`; when there is none, `make()` written there with mode 0600.

    The file appears whole or not at all (written aside, then linked into place), so
    processes starting together all end up with the one secret that won.
    """
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    if not path.parent.is_dir():
        # The SQLite file's directory: a mistyped path is reported, never created.
        raise ConfigError(
            "AMOSYNC_DATABASE_URL", f"points into {path.parent}, which is not a directory"
        )
    aside = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(make() + "\n")
    try:
        os.link(aside, path)
    except FileExistsError:
        pass  # another process was first: theirs is the one
    finally:
        aside.unlink()
    return path.read_text().strip()


def write_secret(path: Path, value: str) -> None:
    """Replace the secret in `path` (mode 0600) in one step."""
    aside = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    os.replace(aside, path)


def load_settings(**values: Any) -> Settings:
    """Settings from the environment and `.env`; a bad value is a `ConfigError` naming it."""
    try:
        return Settings(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = "AMOSYNC_" + str(error["loc"][0]).upper() if error["loc"] else "a setting"
        problem = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] != "value_error":
            problem = f"is not valid: {problem[:1].lower()}{problem[1:]}"
        raise ConfigError(name, problem) from None


@lru_cache
def get_settings() -> Settings:
    return load_settings()
