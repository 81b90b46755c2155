"""An account's catalogs: its contact fields and its lead pipelines with their statuses.

The shapes are those of amoCRM's `GET /api/v4/contacts/custom_fields` and
`GET /api/v4/leads/pipelines` (tests/fixtures/amocrm/api, SOURCES.md names the pages). The
contact fields are the ones generated contacts carry (contacts.py): amoCRM's system fields
Phone and Email (`multitext`, with their WORK/MOB... choices) and Position (`text`), then the
account's own: a legal entity, a file, a city (`text`) and a source (`select`). Every account
starts with two pipelines; each has an "incoming" status (type 1), a few working ones, and
amoCRM's fixed 142 (won) and 143 (lost), whose ids are the same in every pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from amosync.sandbox.contacts import (
    CITY_FIELD,
    EMAIL_ENUMS,
    EMAIL_FIELD,
    FILE_FIELD,
    LEGAL_ENTITY_FIELD,
    PHONE_ENUMS,
    PHONE_FIELD,
    POSITION_FIELD,
    SOURCE_ENUMS,
    SOURCE_FIELD,
)

WON = 142
LOST = 143


@dataclass(frozen=True, slots=True)
class FieldDef:
    """A custom field of the account's contacts, as `GET /api/v4/contacts/custom_fields`
    lists it."""

    id: int
    name: str
    type: str
    code: str | None
    sort: int
    enums: tuple[tuple[int, str], ...] | None = None
    predefined: bool = False

    def as_json(self, account_id: int, base_url: str) -> dict[str, Any]:
        enums = (
            None
            if self.enums is None
            else [
                {"id": enum_id, "value": value, "sort": (n + 1) * 2}
                for n, (enum_id, value) in enumerate(self.enums)
            ]
        )
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "account_id": account_id,
            "code": self.code,
            "sort": self.sort,
            "is_api_only": False,
            "enums": enums,
            "group_id": None,
            "required_statuses": [],
            "is_deletable": not self.predefined,
            "is_predefined": self.predefined,
            "entity_type": "contacts",
            "remind": None,
            "_links": {"self": {"href": f"{base_url}/api/v4/contacts/custom_fields/{self.id}"}},
        }


def _field(spec: dict[str, Any], type_: str, sort: int, **extra: Any) -> FieldDef:
    return FieldDef(spec["field_id"], spec["field_name"], type_, spec["field_code"], sort, **extra)


CONTACT_FIELDS: tuple[FieldDef, ...] = (
    _field(POSITION_FIELD, "text", 2, predefined=True),
    _field(PHONE_FIELD, "multitext", 4, enums=tuple((i, c) for c, i in PHONE_ENUMS.items()),
           predefined=True),
    _field(EMAIL_FIELD, "multitext", 6, enums=tuple((i, c) for c, i in EMAIL_ENUMS.items()),
           predefined=True),
    _field(LEGAL_ENTITY_FIELD, "legal_entity", 510),
    _field(FILE_FIELD, "file", 511),
    _field(CITY_FIELD, "text", 512),
    _field(SOURCE_FIELD, "select", 513, enums=SOURCE_ENUMS),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class StatusDef:
    id: int
    name: str
    sort: int
    color: str
    type: int = 0  # 1: the "incoming leads" status
    editable: bool = True


@dataclass(frozen=True, slots=True)
class PipelineDef:
    id: int
    name: str
    sort: int
    is_main: bool
    statuses: tuple[StatusDef, ...]

    def status_ids(self) -> list[int]:
        return [status.id for status in self.statuses]

    def as_json(self, account_id: int, base_url: str) -> dict[str, Any]:
        href = f"{base_url}/api/v4/leads/pipelines/{self.id}"
        return {
            "id": self.id,
            "name": self.name,
            "sort": self.sort,
            "is_main": self.is_main,
            "is_unsorted_on": True,
            "is_archive": False,
            "account_id": account_id,
            "_links": {"self": {"href": href}},
            "_embedded": {
                "statuses": [
                    {
                        "id": status.id,
                        "name": status.name,
                        "sort": status.sort,
                        "is_editable": status.editable,
                        "pipeline_id": self.id,
                        "color": status.color,
                        "type": status.type,
                        "account_id": account_id,
                        "_links": {"self": {"href": f"{href}/statuses/{status.id}"}},
                    }
                    for status in self.statuses
                ]
            },
        }


def closing_statuses() -> tuple[StatusDef, StatusDef]:
    return (
        StatusDef(WON, "Успешно реализовано", 10000, "#CCFF66", editable=False),
        StatusDef(LOST, "Закрыто и не реализовано", 11000, "#D5D8DB", editable=False),
    )


def make_pipeline(
    pipeline_id: int, name: str, sort: int, is_main: bool, names: Sequence[str], first_id: int
) -> PipelineDef:
    """A pipeline with an incoming status, `names` as working statuses, then 142 and 143."""
    colors = ("#99ccff", "#ffff99", "#ffcc66", "#ffcccc", "#d6eaff", "#ebffb1")
    statuses = [StatusDef(first_id, "Неразобранное", 10, "#c1c1c1", type=1, editable=False)]
    statuses += [
        StatusDef(first_id + 3 * (n + 1), status, 20 + 10 * n, colors[n % len(colors)])
        for n, status in enumerate(names)
    ]
    return PipelineDef(pipeline_id, name, sort, is_main, (*statuses, *closing_statuses()))


DEFAULT_PIPELINES: tuple[PipelineDef, ...] = (
    make_pipeline(
        3177727,
        "Воронка",
        1,
        True,
        ("Первичный контакт", "Переговоры", "Принимают решение", "Согласование договора"),
        32392156,
    ),
    make_pipeline(3177730, "Партнёры", 2, False, ("Первая встреча", "Договор"), 32392180),
)
