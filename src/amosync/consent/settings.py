"""The account's `consent` settings (SPEC §8, §9), stored in `accounts.settings`; the model
is `amosync.accounts.settings.ConsentSettings`, part of the account's `AccountSettings`."""

from __future__ import annotations

from typing import Any

from amosync.accounts.settings import ConsentSettings, account_settings


def consent_settings(stored: dict[str, Any] | None) -> ConsentSettings:
    """The account's consent settings, read as `account_settings(stored).consent` is (the
    defaults where nothing valid is stored), so the write-back and the settings route never
    disagree on what an account chose."""
    return account_settings(stored).consent
