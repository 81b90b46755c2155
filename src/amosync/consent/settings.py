"""The account's `consent` settings (SPEC §8, §9), stored in `accounts.settings`."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

# amoCRM keeps tag names short; a name of only spaces would tag contacts with nothing.
TagName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]


class ConsentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    enabled: bool = True
    tag: TagName = "unsubscribed"
    note: bool = True


class AccountSettings(BaseModel):
    """What `GET/PUT /accounts/{id}/settings` reads and writes.

    Only `consent` so far: `fields` and `lists` (what goes to Unisender, SPEC §8) are a
    separate piece of work, and an unknown key is refused (422) rather than stored unread.
    """

    model_config = ConfigDict(extra="forbid")

    consent: ConsentSettings = Field(default_factory=ConsentSettings)


def consent_settings(stored: dict[str, Any] | None) -> ConsentSettings:
    """The account's consent settings; the defaults where nothing valid is stored (a value
    set by hand through `PUT /accounts` is not checked there)."""
    value = (stored or {}).get("consent")
    if not isinstance(value, dict):
        return ConsentSettings()
    try:
        return ConsentSettings.model_validate(value)
    except ValidationError:
        return ConsentSettings()
