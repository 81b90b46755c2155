"""What amoCRM API v4 returns, as far as amosync reads it.

Unknown fields are ignored everywhere, so amoCRM can add fields without breaking us. Contact
pages are parsed straight from the response bytes (`model_validate_json`, in pydantic-core):
about 2 ms for a 250-contact page, against ~140 ms of rate-limit spacing between pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, computed_field
from typing_extensions import TypedDict


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class FieldValue(TypedDict, total=False):
    """One value of a custom field, as most field types have it: an address, a phone...

    `value` is whatever amoCRM sent: a string as a rule, a number (dates are unix seconds),
    a boolean (checkbox), an object (legal entity, file) or even a list; some types have no
    `value` at all (chained_list: `catalog_id`, `catalog_element_id`). Only the mapping
    decides what it reads (strings of EMAIL fields), so no shape can fail a page.
    """

    value: Any
    enum_id: Any
    enum_code: Any


class CustomField(TypedDict, total=False):
    """A contact's custom field; e-mail fields have `field_code == "EMAIL"`.

    Validated into plain dicts rather than models: a page holds a thousand of them, and
    building model instances was most of the cost of reading a page. `values` holds
    `FieldValue`-like dicts, kept as `Any` so that an odd item is skipped by the mapping
    rather than refused here (tests/fixtures/amocrm/api has every type).
    """

    field_id: int | None
    field_name: str | None
    field_code: str | None
    field_type: str | None
    values: list[Any] | None


class Contact(_Model):
    id: int
    name: str | None = None
    updated_at: int | None = None  # unix seconds
    custom_fields_values: list[CustomField] | None = None


@dataclass(frozen=True)
class ContactsPage:
    """One page of `GET /api/v4/contacts`."""

    page: int
    contacts: list[Contact]
    has_next: bool


class Account(_Model):
    """`GET /api/v4/account`."""

    id: int
    name: str | None = None
    subdomain: str | None = None
    country: str | None = None
    currency: str | None = None


class TokenPair(_Model):
    """The answer of `POST /oauth2/access_token` (code exchange or refresh)."""

    token_type: str = "Bearer"
    access_token: str = Field(repr=False)
    refresh_token: str = Field(repr=False)
    expires_in: int  # seconds
    # When we received the pair: expiry is relative to this, not to when it is read.
    obtained_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @computed_field  # type: ignore[prop-decorator]
    @property
    def expires_at(self) -> datetime:
        return self.obtained_at + timedelta(seconds=self.expires_in)


# The raw shapes of list responses (HAL): only what we need to page through them.


class _Link(_Model):
    href: str | None = None


class _ContactLinks(_Model):
    next: _Link | None = None


class _ContactsEmbedded(_Model):
    contacts: list[Contact] = Field(default_factory=list)


class ContactsResponse(_Model):
    page: int | None = Field(default=None, alias="_page")
    links: _ContactLinks = Field(default_factory=_ContactLinks, alias="_links")
    embedded: _ContactsEmbedded = Field(default_factory=_ContactsEmbedded, alias="_embedded")


class Webhook(_Model):
    """One entry of `GET /api/v4/webhooks` (tests/fixtures/amocrm/webhooks/SOURCES.md)."""

    # The documentation names it `destination`; a public client library reads `name`.
    destination: str = Field(validation_alias=AliasChoices("destination", "name"))
    settings: list[str] = Field(default_factory=list)
    # amoCRM turns off a webhook whose destination keeps failing.
    disabled: bool = False


class _WebhooksEmbedded(_Model):
    webhooks: list[Webhook] = Field(default_factory=list)


class WebhooksResponse(_Model):
    embedded: _WebhooksEmbedded = Field(alias="_embedded", default_factory=_WebhooksEmbedded)
