"""Settings, read from the environment and `.env` (names fixed by SPEC §2)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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
        path = self.database_url.split(":///", 1)[-1]
        if not path or path == ":memory:":
            return None
        return Path(path)

    def resolve_encryption_key(self) -> str:
        """The Fernet key: the setting, else a 0600 key file beside the SQLite database."""
        if self.encryption_key:
            Fernet(self.encryption_key.encode())  # fails early on a malformed key
            return self.encryption_key
        db_path = self.sqlite_path()
        if db_path is None:
            raise RuntimeError(
                "AMOSYNC_ENCRYPTION_KEY is required unless the database is a SQLite file"
            )
        key_path = db_path.with_name(db_path.name + ".key")
        if key_path.exists():
            return key_path.read_text().strip()
        key_path.parent.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key().decode()
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
        return key


@lru_cache
def get_settings() -> Settings:
    return Settings()
