"""A contact's columns beside its address (SPEC §8 `fields`): phone, tags, custom fields.

Pure functions of what amoCRM API v4 gives for a contact, its `custom_fields_values`

    [{"field_id": 55123, "field_code": null, "field_type": "select",
      "values": [{"value": "Москва", "enum_id": 700101, "enum_code": null}]}, ...]

and its tag names; they return Unisender's text for the `importContacts` columns. Values
come in every shape amoCRM has (tests/fixtures/amocrm/api/contacts_page_every_field_type.json):
strings, numbers, booleans, unix times, objects (legal entity, file), lists, or no `value`
at all (chained lists). Nothing here raises on an odd shape: what cannot be text is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import phonenumbers

from amosync.accounts.settings import MAX_TAGS, FieldSettings
from amosync.unisender.client import PHONE, SYSTEM_COLUMNS, TAGS

# amoCRM field types whose value is a unix time; their text is a date Unisender reads.
_DATES = frozenset({"date", "birthday"})
_DATE_TIMES = frozenset({"date_time"})
_DAY = 86_400
_HALF_DAY = _DAY // 2


def phone(values: Iterable[Any] | None, region: str) -> str | None:
    """The contact's first valid PHONE value in international (E.164) format; numbers
    without a country code are read in `region` (`8 (926) 123-23-23`, RU → `+79261232323`).
    None when it has no phone that `phonenumbers` reads as valid."""
    for field in _fields(values):
        if field.get("field_code") != "PHONE":
            continue
        for text in _texts(field):
            try:
                number = phonenumbers.parse(text, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


def field_text(values: Iterable[Any] | None, field_id: int) -> str | None:
    """The text of the contact's field `field_id`: its values joined by ", " (an enum by
    its text, a date as YYYY-MM-DD, a checkbox as 1 or 0), objects and lists skipped.
    None when the contact has no value for it."""
    for field in _fields(values):
        if field.get("field_id") == field_id:
            kind = field.get("field_type")
            texts = [text for value in _raw(field) if (text := _text(value, kind)) is not None]
            return ", ".join(texts) or None
    return None


def tags_column(tags: Iterable[Any] | None) -> str | None:
    """The `tags` column: the first ten tag names in amoCRM's order (Unisender keeps at
    most ten), comma-joined; None when there are none.

    A comma inside a name would split it into two tags in Unisender, so it becomes a space.
    """
    names: list[str] = []
    seen: set[str] = set()
    for tag in tags or ():
        if not isinstance(tag, str):
            continue
        name = " ".join(tag.replace(",", " ").split())
        if name and name.lower() not in seen:
            names.append(name)
            seen.add(name.lower())
            if len(names) == MAX_TAGS:
                break
    return ",".join(names) or None


def columns(
    values: Iterable[Any] | None, tags: Iterable[Any] | None, settings: FieldSettings
) -> dict[str, str]:
    """Column → value for what `settings` sends: `phone`, `tags` and each custom pair's
    Unisender field, only those the contact has a value for."""
    found: dict[str, str] = {}
    fields = list(_fields(values))
    if settings.phone and (number := phone(fields, settings.phone_region)) is not None:
        found[PHONE] = number
    if settings.tags and (joined := tags_column(tags)) is not None:
        found[TAGS] = joined
    for pair in settings.custom:
        name = pair.unisender_field
        # Unisender's own columns and the row's name: the settings route refuses them, and
        # skipping them here means a row can never send, say, `email_status` (which would
        # undo an unsubscribe).
        if name.lower() in SYSTEM_COLUMNS or name in found:
            continue
        text = field_text(fields, pair.amocrm_field_id)
        if text is not None:
            found[name] = text
    return found


def _fields(values: Iterable[Any] | None) -> Iterable[Mapping[str, Any]]:
    return (field for field in values or () if isinstance(field, Mapping))


def _raw(field: Mapping[str, Any]) -> Iterable[Any]:
    """A field's `value`s (items without one, such as chained lists, left out)."""
    items = field.get("values")
    if not isinstance(items, list):
        return ()
    return (item["value"] for item in items if isinstance(item, Mapping) and "value" in item)


def _texts(field: Mapping[str, Any]) -> Iterable[str]:
    return (value.strip() for value in _raw(field) if isinstance(value, str) and value.strip())


def _text(value: Any, kind: Any) -> str | None:
    if isinstance(value, bool):
        # Before int: a bool is an int. 1/0 is what Unisender's own bool fields take.
        return "1" if value else "0"
    if isinstance(value, int | float) and kind in _DATES | _DATE_TIMES:
        if kind in _DATES:
            # A date is a midnight, in UTC or in the account's time zone (21:00 UTC the day
            # before for Moscow): the nearest UTC midnight is that date for any zone
            # within 12 hours of UTC.
            value = (value + _HALF_DAY) // _DAY * _DAY
        try:
            moment = datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
        return moment.strftime("%Y-%m-%d" if kind in _DATES else "%Y-%m-%d %H:%M:%S")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value.strip() or None
    return None  # an object (legal entity, file) or a list: no text for it
