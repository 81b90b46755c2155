"""The account's `consent` settings (SPEC §8, §9), stored in `accounts.settings`; the whole
of the settings is `amosync.segments.settings.AccountSettings`."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints

# amoCRM keeps tag names short; a name of only spaces would tag contacts with nothing.
TagName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]


class ConsentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    enabled: bool = True
    tag: TagName = "unsubscribed"
    note: bool = True


def consent_settings(stored: dict[str, Any] | None) -> ConsentSettings:
    """The account's consent settings, read as `account_settings(stored).consent` is (the
    defaults where nothing valid is stored), so the write-back and the settings route never
    disagree on what an account chose."""
    # Imported here: segments.settings builds its AccountSettings on ConsentSettings above.
    from amosync.segments.settings import account_settings

    return account_settings(stored).consent
