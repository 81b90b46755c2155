"""Encryption of secrets at rest (Fernet: AES-128-CBC + HMAC-SHA256)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken


class Cipher:
    def __init__(self, key: str) -> None:
        self.key = key
        self._fernet = Fernet(key.encode())

    def can_decrypt(self, value: str) -> bool:
        """Whether `value` was encrypted with this key (checked at start-up)."""
        try:
            self._fernet.decrypt(value.encode())
        except InvalidToken:
            return False
        return True

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, value: str) -> str:
        try:
            return self._fernet.decrypt(value.encode()).decode()
        except InvalidToken as exc:
            # Say which key is wrong without echoing anything secret.
            raise RuntimeError(
                "a stored secret cannot be decrypted: AMOSYNC_ENCRYPTION_KEY changed?"
            ) from exc

    def encrypt_optional(self, value: str | None) -> str | None:
        return None if value is None else self.encrypt(value)

    def decrypt_optional(self, value: str | None) -> str | None:
        return None if value is None else self.decrypt(value)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same(a: str, b: str) -> bool:
    """Constant-time comparison of two secrets."""
    return hmac.compare_digest(a.encode(), b.encode())
