"""The account's settings (SPEC §8, §9): field mapping, segment lists, consent write-back.

Kept in the accounts domain, the lowest that reads them (install, `PUT /accounts`), so
segments and consent read them from below.

Stored as JSON in `accounts.settings`; `AccountSettings` is what
`GET/PUT /accounts/{id}/settings` reads and writes. The shape is checked here (unknown keys
and wrong types → 422); what only the vendors can answer (does list 321 exist, is field
55123 amoCRM's) is checked by `amosync.segments.validate` before anything is stored.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from amosync.errors import AppError

# Unisender takes 50 columns a call: email, Name, email_list_ids, phone, tags and 40 more.
MAX_CUSTOM = 40
# Unisender's own limit on the `tags` column.
MAX_TAGS = 10
# A Unisender field name: a Latin letter, then Latin letters, digits, `_` and `-`.
FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")

PositiveId = Annotated[int, Field(gt=0, le=2**53)]
# amoCRM keeps tag names short; a name of only spaces would tag contacts with nothing.
TagName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class CustomPair(_Strict):
    """One amoCRM custom field sent, as text, in one Unisender field."""

    amocrm_field_id: PositiveId
    # Syntax checked by `validate` (400 invalid_field_name, not 422), so the length only.
    unisender_field: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class FieldSettings(_Strict):
    phone: bool = False
    # ISO 3166 region the numbers without a country code are read in (phonenumbers).
    phone_region: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] = "RU"
    tags: bool = False
    custom: Annotated[list[CustomPair], Field(max_length=MAX_CUSTOM)] = Field(default_factory=list)


class ConsentSettings(BaseModel):
    """The `consent` part: unsubscribes written back to amoCRM as a tag and a note."""

    model_config = ConfigDict(extra="forbid", strict=True)

    enabled: bool = True
    tag: TagName = "unsubscribed"
    note: bool = True


class LeadStatus(_Strict):
    pipeline_id: PositiveId
    status_id: PositiveId


class ListRule(_Strict):
    """A segment list: every condition the rule has must hold (at least one is required)."""

    list_id: PositiveId
    tags_any: Annotated[list[TagName], Field(max_length=100)] = Field(default_factory=list)
    lead_statuses: Annotated[list[LeadStatus], Field(max_length=100)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_a_condition(self) -> ListRule:
        if not self.tags_any and not self.lead_statuses:
            raise ValueError("a list rule needs tags_any, lead_statuses or both")
        return self

    def matches(self, tags: set[str], statuses: set[tuple[int, int]]) -> bool:
        """`tags`: the contact's tag names, lower case; `statuses`: (pipeline, status) of
        the leads linked to it that are in a wanted status."""
        if self.tags_any and not any(tag.lower() in tags for tag in self.tags_any):
            return False
        return not self.lead_statuses or any(
            (s.pipeline_id, s.status_id) in statuses for s in self.lead_statuses
        )


class AccountSettings(_Strict):
    """What `GET/PUT /accounts/{id}/settings` reads and writes; every key optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: FieldSettings = Field(default_factory=FieldSettings)
    lists: Annotated[list[ListRule], Field(max_length=50)] = Field(default_factory=list)
    consent: ConsentSettings = Field(default_factory=ConsentSettings)

    @property
    def wants_leads(self) -> bool:
        """Whether a rule reads leads: then lead webhooks are registered and the full sync
        reads the leads in the wanted statuses."""
        return any(rule.lead_statuses for rule in self.lists)

    def wanted_statuses(self) -> list[tuple[int, int]]:
        """Every (pipeline, status) pair a rule names, each once, in order."""
        return list(
            dict.fromkeys(
                (s.pipeline_id, s.status_id) for rule in self.lists for s in rule.lead_statuses
            )
        )

    def sync_part(self) -> dict[str, Any]:
        """What, when it changes, needs a full sync: `fields` and `lists`."""
        return self.model_dump(include={"fields", "lists"}, mode="json")


def account_settings(stored: dict[str, Any] | None) -> AccountSettings:
    """The settings stored for an account; each part that is missing or no longer valid
    (set by hand through `PUT /accounts`, or by an older version) reads as its defaults."""
    stored = stored if isinstance(stored, dict) else {}
    parts: dict[str, Any] = {}
    for name, model in (("fields", FieldSettings), ("consent", ConsentSettings)):
        try:
            parts[name] = model.model_validate(stored.get(name) or {})
        except ValidationError:
            parts[name] = model()
    rules: list[ListRule] = []
    for rule in stored.get("lists") or []:
        try:
            rules.append(ListRule.model_validate(rule))
        except ValidationError:
            continue
    return AccountSettings(fields=parts["fields"], lists=rules, consent=parts["consent"])


def parse(value: Any) -> AccountSettings:
    """`value` (the `settings` of `PUT /accounts/{id}`) read as the settings route reads its
    body; 422 `invalid_settings` otherwise."""
    try:
        return AccountSettings.model_validate(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error.get("loc", ())) or "settings"
        raise AppError(
            f"settings.{where}: {error.get('msg', 'invalid value')}",
            code="invalid_settings",
            status=422,
        ) from None
