"""What amoCRM API v4 returns, as far as amosync reads it.

Unknown fields are ignored everywhere, so amoCRM can add fields without breaking us. Contact
pages are parsed straight from the response bytes (`model_validate_json`, in pydantic-core):
about 2 ms for a 250-contact page, against ~140 ms of rate-limit spacing between pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import (
    AliasChoices,
    AliasPath,
    BaseModel,
    ConfigDict,
    Field,
    computed_field,
    field_validator,
    model_validator,
)
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


class ContactField(TypedDict, total=False):
    """A contact's custom field value(s); e-mail fields have `field_code == "EMAIL"`.

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


class TagRef(TypedDict, total=False):
    """An entry of a contact's `_embedded.tags`: `{"id", "name", "color"}`."""

    id: Any
    name: Any


class ContactEmbedded(TypedDict, total=False):
    """A contact's `_embedded`; only its tags are read (`companies`, `leads` are ignored).

    A TypedDict, not a model, for the reason `ContactField` is one: every contact of a page
    has an `_embedded`, and a model instance for each cost ~2 µs a contact of a full sync.
    """

    tags: list[TagRef] | None


class Contact(_Model):
    id: int
    name: str | None = None
    updated_at: int | None = None  # unix seconds
    custom_fields_values: list[ContactField] | None = None
    embedded: ContactEmbedded | None = Field(default=None, alias="_embedded")

    @property
    def tags(self) -> list[str]:
        """Its tag names, in amoCRM's order (`_embedded.tags[].name`)."""
        tags = self.embedded.get("tags") if self.embedded else None
        if not tags:
            return []
        return [
            name.strip()
            for tag in tags
            if isinstance(name := tag.get("name"), str) and name.strip()
        ]


class UntaggedContact(Contact):
    """A contact read without its `_embedded` (its `tags` are empty): for a sync whose
    account has no rules and sends no tags, which then builds nothing per contact that it
    does not read (with `_embedded`, unthrottled full syncs spent ~15% more CPU, a third of
    it in the garbage collector)."""

    embedded: None = None


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


# The raw shapes of list responses (HAL): only what we need to page through them. A list's
# items are read straight from `_embedded.<name>`, in pydantic-core like the rest.


class _Link(_Model):
    href: str | None = None


class _Links(_Model):
    next: _Link | None = None


class HalList(_Model):
    """A list answer: its items (a field of the subclass, `_embedded`) and its `_links`."""

    links: _Links = Field(default_factory=_Links, alias="_links")

    @property
    def has_next(self) -> bool:
        """Whether amoCRM links a next page."""
        return self.links.next is not None


def _from_embedded(data: Any, field: str, name: str) -> Any:
    """`_embedded.<name>` of an answer's object, for a model that keeps it as `field`; None
    when the object gives `field` itself or has no such `_embedded` entry."""
    if isinstance(data, dict) and field not in data:
        embedded = data.get("_embedded")
        if isinstance(embedded, dict):
            return embedded.get(name)
    return None


def _embedded(name: str) -> Any:
    """A list answer's items, `_embedded.<name>`; none when the answer has no `_embedded`."""
    return Field(default_factory=list, validation_alias=AliasPath("_embedded", name))


class ContactsResponse(HalList):
    page: int | None = Field(default=None, alias="_page")
    contacts: list[Contact] = _embedded("contacts")


class UntaggedContactsResponse(HalList):
    """`ContactsResponse` with `UntaggedContact`s."""

    page: int | None = Field(default=None, alias="_page")
    contacts: list[UntaggedContact] = _embedded("contacts")


# --- catalogs: the account's contact fields, lead pipelines and contact tags -----------------
# Shapes: tests/fixtures/amocrm/api/ (SOURCES.md names amoCRM's pages they follow).


class FieldEnum(_Model):
    """One choice of a select-like field (`enums[]`; `code` and `sort` are not read)."""

    id: int
    value: str = ""

    @field_validator("value", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        return "" if value is None else str(value)


class CustomField(_Model):
    """One field of `GET /api/v4/contacts/custom_fields`: what a contact's values refer to.

    `code` is set on amoCRM's system fields only (PHONE, EMAIL, POSITION, IM...); `enums` is
    null in amoCRM's answer for fields without choices, an empty list here.
    """

    id: int
    name: str = ""
    type: str = ""
    code: str | None = None
    enums: list[FieldEnum] = Field(default_factory=list)

    @field_validator("enums", mode="before")
    @classmethod
    def _no_enums(cls, value: Any) -> Any:
        return [] if value is None else value


class Status(_Model):
    """A pipeline's status; 142 (won) and 143 (lost) have the same id in every pipeline."""

    id: int
    name: str = ""


class Pipeline(_Model):
    """One pipeline of `GET /api/v4/leads/pipelines`, its statuses from `_embedded.statuses`."""

    id: int
    name: str = ""
    statuses: list[Status] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _embedded_statuses(cls, data: Any) -> Any:
        statuses = _from_embedded(data, "statuses", "statuses")
        return data if statuses is None else {**data, "statuses": statuses}


class Tag(_Model):
    """One tag of `GET /api/v4/contacts/tags` (tags are per entity type: a lead tag with the
    same name has another id)."""

    id: int
    name: str = ""


class CustomFieldsResponse(HalList):
    custom_fields: list[CustomField] = _embedded("custom_fields")


class PipelinesResponse(HalList):
    pipelines: list[Pipeline] = _embedded("pipelines")


class TagsResponse(HalList):
    tags: list[Tag] = _embedded("tags")


class Note(_Model):
    """One entry of `GET /api/v4/contacts/notes` (tests/fixtures/amocrm/SOURCES.md): for a
    `common` note, `params` is `{"text": ...}`; other types carry other params."""

    id: int
    entity_id: int
    note_type: str = ""
    created_at: int | None = None
    params: Any = None

    @property
    def text(self) -> str | None:
        text = self.params.get("text") if isinstance(self.params, dict) else None
        return text if isinstance(text, str) else None


class NotesResponse(HalList):
    notes: list[Note] = _embedded("notes")


# --- leads (deals) -------------------------------------------------------------------------


class Lead(_Model):
    """A deal of `GET /api/v4/leads?with=contacts` (or `/leads/{id}`): where it stands and
    which contacts it links, from `_embedded.contacts[].id` (only there with `with=contacts`)."""

    id: int
    pipeline_id: int
    status_id: int
    updated_at: int | None = None  # unix seconds
    contact_ids: list[int] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _embedded_contacts(cls, data: Any) -> Any:
        contacts = _from_embedded(data, "contact_ids", "contacts")
        if not isinstance(contacts, list):
            return data
        ids = [c.get("id") for c in contacts if isinstance(c, dict)]
        return {**data, "contact_ids": [i for i in ids if isinstance(i, int)]}


@dataclass(frozen=True)
class LeadsPage:
    """One page of `GET /api/v4/leads`."""

    page: int
    leads: list[Lead]
    has_next: bool


class LeadsResponse(HalList):
    leads: list[Lead] = _embedded("leads")


class Webhook(_Model):
    """One entry of `GET /api/v4/webhooks` (tests/fixtures/amocrm/webhooks/SOURCES.md)."""

    # The documentation names it `destination`; a public client library reads `name`.
    destination: str = Field(validation_alias=AliasChoices("destination", "name"))
    settings: list[str] = Field(default_factory=list)
    # amoCRM turns off a webhook whose destination keeps failing.
    disabled: bool = False


class WebhooksResponse(HalList):
    webhooks: list[Webhook] = _embedded("webhooks")
