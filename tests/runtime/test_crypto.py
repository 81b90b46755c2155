from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from amosync.config import ConfigError, Settings, load_settings
from amosync.runtime.crypto import Cipher


def test_round_trip_and_ciphertext_hides_the_value() -> None:
    cipher = Cipher(Fernet.generate_key().decode())
    secret = "refresh-token-value"
    stored = cipher.encrypt(secret)
    assert secret not in stored
    assert cipher.decrypt(stored) == secret
    assert cipher.encrypt(secret) != stored  # random IV: equal secrets look different


def test_a_different_key_cannot_read_it() -> None:
    stored = Cipher(Fernet.generate_key().decode()).encrypt("x")
    with pytest.raises(RuntimeError, match="AMOSYNC_ENCRYPTION_KEY"):
        Cipher(Fernet.generate_key().decode()).decrypt(stored)


def test_key_file_is_generated_beside_sqlite_with_mode_0600(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, database_url=f"sqlite:///{tmp_path}/a.db")  # type: ignore[call-arg]
    key = settings.resolve_encryption_key()
    key_file = tmp_path / "a.db.key"
    assert key_file.read_text().strip() == key
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert settings.resolve_encryption_key() == key  # stable across starts
    Cipher(key)


def test_postgresql_requires_a_key() -> None:
    settings = Settings(_env_file=None, database_url="postgresql://u@h/db")  # type: ignore[call-arg]
    with pytest.raises(RuntimeError, match="AMOSYNC_ENCRYPTION_KEY is required"):
        settings.resolve_encryption_key()


def test_a_malformed_key_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="AMOSYNC_ENCRYPTION_KEY is not a Fernet key"):
        load_settings(_env_file=None, encryption_key="short")
