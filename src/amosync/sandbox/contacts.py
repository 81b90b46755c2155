"""One account's amoCRM contacts, stored compactly enough for a million of them.

Contacts live in parallel columns indexed by *position* (ids only grow, so positions are in
id order): `array` columns for ids and timestamps, `bytearray` columns for the recipe of a
generated contact. A generated contact's name and custom fields are derived from its recipe
byte and id when a page is served, so `generate_contacts(n=1_000_000)` only fills a few
columns (about a second) and a 250-contact page costs well under a millisecond to build.
Contacts added or edited through the Python API keep their full data in `explicit`.

The custom fields follow amoCRM's system fields: Phone (`field_code` PHONE) and Email
(`field_code` EMAIL) are `multitext` fields whose values carry `enum_id`/`enum_code`;
Position (`field_code` POSITION) is a `text` field. A contact without any field value has
`custom_fields_values: null`, as amoCRM answers.

Besides, as on a real account (tests/fixtures/amocrm holds the real shapes): ~30% of the
generated contacts are linked to one to three deals (`linked_leads_id[<lead id>][ID]` in
webhooks, `_embedded.leads` with `with=leads`), ~12% to a company, ~25% carry tags, and ~4%
of those with fields have a legal-entity field and ~3% a file field, both with an object as
`values[].value`; ~40% of those with fields have a city (a text field) and ~20% a source (a
select field, with `enum_id`). These come from a hash of the id, so the shares of the recipes
above stay as they are. The account's catalog of these fields is in `catalogs.py`.
"""

from __future__ import annotations

import itertools
import random
import time
from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field
from typing import Any

PHONE_FIELD = {"field_id": 264909, "field_name": "Телефон", "field_code": "PHONE"}
EMAIL_FIELD = {"field_id": 264911, "field_name": "Email", "field_code": "EMAIL"}
POSITION_FIELD = {"field_id": 264907, "field_name": "Должность", "field_code": "POSITION"}
PHONE_ENUMS = {"WORK": 524193, "WORKDD": 524195, "MOB": 524197, "FAX": 524199, "HOME": 524201}
EMAIL_ENUMS = {"WORK": 524203, "PRIV": 524205, "OTHER": 524207}
RESPONSIBLE_USERS = (8214421, 8214427, 8302933, 8391105)

FieldValues = list[dict[str, Any]]

# Display name, transliteration (for addresses), grammatical gender.
_FIRST = (
    ("Анна", "anna", 1), ("Иван", "ivan", 0), ("Мария", "maria", 1), ("Дмитрий", "dmitry", 0),
    ("Елена", "elena", 1), ("Сергей", "sergey", 0), ("Ольга", "olga", 1), ("Алексей", "alexey", 0),
    ("Наталья", "natalia", 1), ("Андрей", "andrey", 0), ("Татьяна", "tatiana", 1),
    ("Михаил", "mikhail", 0), ("Ирина", "irina", 1), ("Николай", "nikolay", 0),
    ("Светлана", "svetlana", 1), ("Павел", "pavel", 0), ("Юлия", "yulia", 1),
    ("Артём", "artem", 0), ("Ксения", "ksenia", 1), ("Роман", "roman", 0),
    ("Anna", "anna", 1), ("John", "john", 0), ("Laura", "laura", 1), ("Peter", "peter", 0),
)  # fmt: skip
# Male form, female form, transliteration.
_LAST = (
    ("Иванов", "Иванова", "ivanov"), ("Смирнов", "Смирнова", "smirnov"),
    ("Кузнецов", "Кузнецова", "kuznetsov"), ("Попов", "Попова", "popov"),
    ("Васильев", "Васильева", "vasiliev"), ("Петров", "Петрова", "petrov"),
    ("Соколов", "Соколова", "sokolov"), ("Михайлов", "Михайлова", "mikhailov"),
    ("Новиков", "Новикова", "novikov"), ("Фёдоров", "Фёдорова", "fedorov"),
    ("Морозов", "Морозова", "morozov"), ("Волков", "Волкова", "volkov"),
    ("Алексеев", "Алексеева", "alekseev"), ("Лебедев", "Лебедева", "lebedev"),
    ("Семёнов", "Семёнова", "semenov"), ("Егоров", "Егорова", "egorov"),
    ("Smith", "Smith", "smith"), ("Brown", "Brown", "brown"), ("Miller", "Miller", "miller"),
)  # fmt: skip
_DOMAINS = ("mail.ru", "yandex.ru", "gmail.com", "example.com", "bk.ru", "inbox.ru", "corp.example")
_POSITIONS = ("Менеджер", "Директор", "Бухгалтер", "Инженер", "Маркетолог")
_SHARED_POOL = 211  # shared addresses such as team17@corp.example, each used by many contacts

# A generated contact's recipe byte decides what it looks like (shares out of 256).
_NULL_FIELDS = 12  # ~5%: custom_fields_values is null
_PHONE_ONLY = 38  # ~10%: a phone, no address
_INVALID = 46  # ~3%: a malformed address (and a phone)
_SHARED = 64  # ~7%: an address shared with other contacts
_POSITION_ONLY = 72  # ~3%: a text field but no address
_ONE_EMAIL = 190  # ~46%: one address; then ~18% two, ~8% three
_TWO_EMAILS = 236
EXPLICIT = 255  # not generated: the data is in `ContactStore.explicit`


@dataclass(slots=True)
class ContactData:
    """What a contact holds besides its id and timestamps."""

    name: str
    first_name: str
    last_name: str
    responsible_user_id: int
    custom_fields: FieldValues | None  # amoCRM's custom_fields_values; None is null
    # `_embedded.tags`: [{"id", "name", "color"}], set through PATCH /api/v4/contacts.
    tags: list[dict[str, Any]] = dataclass_field(default_factory=list)
    # The ids of the deals and companies the contact is linked to.
    leads: Sequence[int] = ()
    companies: Sequence[int] = ()


# The account's tags that generated contacts carry (ids as amoCRM's, names as people type them).
_TAG_NAMES = (
        (90001, "vip"), (90002, "Выставка 2026"), (90003, "callback"),
        (90004, "Заявка с сайта"), (90005, "опт"), (90006, "newsletter"),
)  # fmt: skip
GENERATED_TAGS: tuple[dict[str, Any], ...] = tuple(
    {"id": tag_id, "name": name, "color": None} for tag_id, name in _TAG_NAMES
)
# One tag or two different ones; a generated contact gets one of these lists.
_TAG_SETS = [[tag] for tag in GENERATED_TAGS] + [
    [a, b] for n, a in enumerate(GENERATED_TAGS) for b in GENERATED_TAGS[n + 1 :]
][::3]
LEGAL_ENTITY_FIELD = {"field_id": 301022, "field_name": "Юр. лицо", "field_code": None}
FILE_FIELD = {"field_id": 301023, "field_name": "Договор", "field_code": None}
# A text field and a select field of the account's own, as marketers map them (city, source).
CITY_FIELD = {"field_id": 301024, "field_name": "Город", "field_code": None}
SOURCE_FIELD = {"field_id": 301025, "field_name": "Откуда узнали", "field_code": None}
SOURCE_ENUMS = (
    (700101, "Сайт"), (700103, "Выставка"), (700105, "Рекомендация"), (700107, "Реклама"),
)  # fmt: skip
CITIES = ("Москва", "Санкт-Петербург", "Казань", "Новосибирск", "Екатеринбург", "Алматы")
_LEAD_BASE = 20_000_000  # deal ids: 8 digits and up, as on a real account
_COMPANY_BASE = 30_000_000
# Shares out of 1024 of the id hash in `_generated`, as ranges of it.
_LEADS_SHARE = 307  # [0, 307): ~30% linked to deals
_COMPANY_FROM = 1024 - 123  # ~12% linked to a company
_TAGS_FROM, _TAGS_TO = 300, 300 + 256  # ~25% tagged
_LEGAL_FROM, _LEGAL_TO = 600, 600 + 41  # ~4% with a legal-entity field
_FILE_FROM, _FILE_TO = 700, 700 + 31  # ~3% with a file field
# Of those with fields, from other bits of the same hash: ~40% have a city, ~20% a source.
_CITY_SHARE, _SOURCE_SHARE = 410, 205
_NO_LINKS: tuple[int, ...] = ()
# Shared by the generated contacts, never changed in place (edits build new lists).
_NO_TAGS: list[dict[str, Any]] = []


def company_name(company_id: int) -> str:
    """The name of a generated company, as webhooks carry it in `company_name`."""
    return f"ООО «Компания {company_id % 10_000}»"


def _legal_entity(company_id: int) -> dict[str, Any]:
    """A `legal_entity` field: `value` is an object (amocrm-api-php's LegalEntity model)."""
    inn = f"77{company_id % 100_000_000:08d}"
    return {
        **LEGAL_ENTITY_FIELD,
        "field_type": "legal_entity",
        "values": [
            {
                "value": {
                    "name": company_name(company_id),
                    "entity_type": 2,
                    "vat_id": inn,
                    "tax_registration_reason_code": f"1027{inn}",
                    "address": "Москва, ул. Тверская, 1",
                    "kpp": "770101001",
                    "bank_code": "044525225",
                    "external_uid": None,
                }
            }
        ],
    }


def _file(contact_id: int) -> dict[str, Any]:
    """A `file` field: `value` is an object (amocrm-api-php's File model)."""
    return {
        **FILE_FIELD,
        "field_type": "file",
        "values": [
            {
                "value": {
                    "file_uuid": f"a8a5e1c4-2d6f-4c53-8f1e-{contact_id:012x}",
                    "version_uuid": f"0f9e8d7c-6b5a-4f3e-9d2c-{contact_id:012x}",
                    "file_name": f"dogovor-{contact_id}.pdf",
                    "file_size": 100_000 + contact_id % 90_000,
                }
            }
        ],
    }


_PHONE_CODES = ("WORK", "MOB", "HOME")
_EMAIL_CODES = ("WORK", "PRIV", "OTHER")
# (enum_id, enum_code) for a field's values in order, repeating; long enough for most.
_ENUM_PAIRS = {
    id(PHONE_FIELD): tuple((PHONE_ENUMS[code], code) for code in _PHONE_CODES) * 4,
    id(EMAIL_FIELD): tuple((EMAIL_ENUMS[code], code) for code in _EMAIL_CODES) * 4,
}


def multitext(field: dict[str, Any], values: Sequence[str]) -> dict[str, Any]:
    """A Phone/Email field: values get the enum ids WORK, then PRIV/MOB, then OTHER/HOME.

    Written flat because serving a page of generated contacts builds 250 of these.
    """
    pairs: Iterable[tuple[int, str]] = _ENUM_PAIRS[id(field)]
    if len(values) > 12:
        pairs = itertools.cycle(_ENUM_PAIRS[id(field)][:3])
    return {
        "field_id": field["field_id"],
        "field_name": field["field_name"],
        "field_code": field["field_code"],
        "field_type": "multitext",
        "values": [
            {"value": value, "enum_id": enum_id, "enum_code": code}
            for value, (enum_id, code) in zip(values, pairs, strict=False)
        ],
    }


def build_fields(emails: Sequence[str], phones: Sequence[str]) -> FieldValues | None:
    """custom_fields_values for these phones and addresses (None when there are none)."""
    fields: FieldValues = []
    if phones:
        fields.append(multitext(PHONE_FIELD, phones))
    if emails:
        fields.append(multitext(EMAIL_FIELD, emails))
    return fields or None


def field_values(fields: FieldValues | None, code: str) -> list[str]:
    """The values of the field with `field_code == code` (e.g. a contact's addresses)."""
    return [
        str(value.get("value"))
        for field in fields or ()
        if field.get("field_code") == code
        for value in field.get("values") or ()
    ]


def _phone(contact_id: int) -> str:
    return f"+79{contact_id % 1_000_000_000:09d}"


LEAD_SHARE = _LEADS_SHARE / 1024  # the default share of generated contacts with deals


def lead_share_units(share: float) -> int:
    """A share of contacts with deals (0..1) as the id-hash range that gets them."""
    if not 0 <= share <= 1:
        raise ValueError("lead_share must be between 0 and 1")
    return round(share * 1024)


def generated_leads(contact_id: int, lead_units: int = _LEADS_SHARE) -> range:
    """The deals of a generated contact: 1 to 3 ids from `_LEAD_BASE + 3 * id`, when the id
    hash falls in the share; so a deal id also names its contact (`lead_owner`)."""
    spread = (contact_id * 2654435761) & 0xFFFFFFFF
    if spread >> 22 >= lead_units:
        return range(0)
    lead = _LEAD_BASE + contact_id * 3
    return range(lead, lead + 1 + spread % 3)


def lead_owner(lead_id: int) -> int | None:
    """The generated contact whose deal `lead_id` would be (it may have no such deal)."""
    return (lead_id - _LEAD_BASE) // 3 if lead_id >= _LEAD_BASE else None


def _generated(
    contact_id: int, recipe: int, first: int, last: int, lead_units: int = _LEADS_SHARE
) -> ContactData:
    """Derive a generated contact from its recipe: same inputs, same contact."""
    first_name, first_latin, female = _FIRST[first % len(_FIRST)]
    male_last, female_last, last_latin = _LAST[last % len(_LAST)]
    last_name = female_last if female else male_last
    if female and male_last != female_last:
        last_latin += "a"
    responsible = RESPONSIBLE_USERS[contact_id % len(RESPONSIBLE_USERS)]
    name = f"{first_name} {last_name}"
    fields: FieldValues | None
    if recipe < _NULL_FIELDS:
        fields = None
    elif recipe < _PHONE_ONLY:
        fields = build_fields((), (_phone(contact_id),))
    elif recipe < _INVALID:
        broken = (
            f"{first_latin}.{last_latin}@"
            if recipe % 2
            else f"{first_latin} {last_latin}@{_DOMAINS[contact_id % 7]}"
        )
        fields = build_fields((broken,), (_phone(contact_id),))
    elif _SHARED <= recipe < _POSITION_ONLY:
        position = _POSITIONS[contact_id % len(_POSITIONS)]
        fields = [{**POSITION_FIELD, "field_type": "text", "values": [{"value": position}]}]
    else:
        fields = build_fields(
            _addresses(contact_id, recipe, first_latin, last_latin),
            (_phone(contact_id),) if recipe % 3 == 0 else (),
        )
    # Links, tags and object-valued fields by a hash of the id (Knuth's multiplicative one),
    # independent of the recipe; each share is a range of it, so a contact can have several.
    # Written flat, with shared read-only tag lists: a page derives 250 contacts.
    spread = (contact_id * 2654435761) & 0xFFFFFFFF
    h = spread >> 22  # 0..1023
    leads = _NO_LINKS
    if h < lead_units:
        lead = _LEAD_BASE + contact_id * 3
        leads = tuple(range(lead, lead + 1 + spread % 3))
    companies = (_COMPANY_BASE + contact_id % 5_000,) if h >= _COMPANY_FROM else _NO_LINKS
    tags = _TAG_SETS[spread % len(_TAG_SETS)] if _TAGS_FROM <= h < _TAGS_TO else _NO_TAGS
    if fields is not None:
        if _LEGAL_FROM <= h < _LEGAL_TO:
            fields.append(_legal_entity(_COMPANY_BASE + contact_id % 5_000))
        elif _FILE_FROM <= h < _FILE_TO:
            fields.append(_file(contact_id))
        if (spread >> 12) & 0x3FF < _CITY_SHARE:
            city = CITIES[(spread >> 8) % len(CITIES)]
            fields.append({**CITY_FIELD, "field_type": "text", "values": [{"value": city}]})
        if (spread >> 2) & 0x3FF < _SOURCE_SHARE:
            enum_id, value = SOURCE_ENUMS[(spread >> 16) % len(SOURCE_ENUMS)]
            choice = {"value": value, "enum_id": enum_id, "enum_code": None}
            fields.append({**SOURCE_FIELD, "field_type": "select", "values": [choice]})
    return ContactData(name, first_name, last_name, responsible, fields, tags, leads, companies)


def _addresses(contact_id: int, recipe: int, first: str, last: str) -> list[str]:
    personal = f"{first}.{last}{contact_id}@{_DOMAINS[contact_id % 7]}"
    if recipe < _SHARED:
        shared = f"team{(contact_id * 31) % _SHARED_POOL}@corp.example"
        return [shared, personal] if recipe % 2 else [shared]
    if recipe < _ONE_EMAIL:
        # Some people type their address with capitals; amoCRM keeps it as typed.
        return [personal.title() if recipe % 16 == 0 else personal]
    if recipe < _TWO_EMAILS:
        if recipe % 23 == 0:
            return [personal, personal.upper()]  # the same address twice
        return [personal, f"{first[0]}{last}{contact_id % 10_000}@{_DOMAINS[recipe % 7]}"]
    return [
        personal,
        f"{first[0]}.{last}@work{contact_id % 50}.example",
        f"{last}{contact_id}@{_DOMAINS[(contact_id + 3) % 7]}",
    ]


class ContactStore:
    """One account's contacts; positions are in id order, deleted ones are skipped."""

    def __init__(self) -> None:
        self.ids = array("q")
        self.created = array("q")
        self.updated = array("q")
        self.recipes = bytearray()
        self.first = bytearray()
        self.last = bytearray()
        self.explicit: dict[int, ContactData] = {}
        # (first position, lead units) of each generated batch: its share with deals.
        self.lead_batches: list[tuple[int, int]] = []
        self._deleted: list[int] = []  # sorted positions
        self._deleted_set: set[int] = set()
        self.version = 0  # bumped on every change; keys the caches below
        self._by_updated: tuple[int, list[int]] | None = None
        self._filtered: tuple[tuple[Any, ...], list[int]] | None = None

    # --- size and lookup ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids) - len(self._deleted)

    def position(self, contact_id: int) -> int | None:
        """Where `contact_id` is stored (deleted or not), or None."""
        index = bisect_left(self.ids, contact_id)
        if index < len(self.ids) and self.ids[index] == contact_id:
            return index
        return None

    def is_deleted(self, position: int) -> bool:
        return position in self._deleted_set

    def data(self, position: int) -> ContactData:
        explicit = self.explicit.get(position)
        if explicit is not None:
            return explicit
        return _generated(
            self.ids[position],
            self.recipes[position],
            self.first[position],
            self.last[position],
            self.lead_units(position),
        )

    def lead_units(self, position: int) -> int:
        """The share with deals of the batch a generated contact came in."""
        batches = self.lead_batches
        if len(batches) == 1:
            return batches[0][1]
        index = bisect_right(batches, (position, 1 << 30)) - 1
        return batches[index][1] if index >= 0 else _LEADS_SHARE

    def is_generated(self, position: int) -> bool:
        return self.recipes[position] != EXPLICIT

    # --- changes --------------------------------------------------------------------------

    def append(self, contact_id: int, data: ContactData, now: int) -> int:
        position = len(self.ids)
        self.ids.append(contact_id)
        self.created.append(now)
        self.updated.append(now)
        self.recipes.append(EXPLICIT)
        self.first.append(0)
        self.last.append(0)
        self.explicit[position] = data
        self.version += 1
        return position

    def update(self, position: int, data: ContactData, now: int) -> None:
        self.explicit[position] = data
        # amoCRM timestamps have one-second resolution; never go back in time.
        self.updated[position] = max(now, self.updated[position])
        self.version += 1

    def delete(self, position: int, now: int) -> None:
        if position not in self._deleted_set:
            self._deleted_set.add(position)
            insort(self._deleted, position)
            self.updated[position] = max(now, self.updated[position])
            self.version += 1

    def restore(self, position: int, now: int) -> None:
        if position in self._deleted_set:
            self._deleted_set.discard(position)
            self._deleted.remove(position)
            self.updated[position] = max(now, self.updated[position])
            self.version += 1

    def generate(
        self, first_id: int, count: int, seed: int, now: int, lead_units: int = _LEADS_SHARE
    ) -> None:
        """Append `count` generated contacts with ids `first_id...`, created over a year."""
        self.lead_batches.append((len(self.ids), lead_units))
        rng = random.Random(seed)
        span = 365 * 86400
        step = max(1, span // max(count, 1))
        start = now - span
        created = array("q", range(start, start + step * count, step))
        # Edited some time after creation, never in the future; still roughly id-ordered.
        delays = rng.randbytes(count)
        updated = array("q", (min(now, c + d * 600) for c, d in zip(created, delays, strict=True)))
        self.ids.extend(range(first_id, first_id + count))
        self.created.extend(created)
        self.updated.extend(updated)
        self.recipes.extend(rng.randbytes(count).replace(bytes([EXPLICIT]), bytes([EXPLICIT - 1])))
        self.first.extend(rng.randbytes(count))
        self.last.extend(rng.randbytes(count))
        self.version += 1

    # --- queries --------------------------------------------------------------------------

    def page(
        self,
        offset: int,
        limit: int,
        *,
        order: str = "id",
        descending: bool = False,
        updated_from: int | None = None,
        updated_to: int | None = None,
    ) -> tuple[list[int], bool]:
        """Positions of one page and whether more follow."""
        if updated_from is None and updated_to is None and order == "id":
            return self._id_page(offset, limit, descending)
        selection = self._select(order, updated_from, updated_to)
        if descending:
            end = len(selection) - offset
            chosen = selection[max(0, end - limit) : max(0, end)][::-1]
            return chosen, end - limit > 0
        return selection[offset : offset + limit], offset + limit < len(selection)

    def _id_page(self, offset: int, limit: int, descending: bool) -> tuple[list[int], bool]:
        live = len(self)
        if offset >= live:
            return [], False
        count = min(limit, live - offset)
        more = offset + count < live
        if descending:
            position = self._live_position(live - 1 - offset)
            step = -1
        else:
            position = self._live_position(offset)
            step = 1
        if not self._deleted:
            chosen = list(range(position, position + step * count, step))
            return chosen, more
        chosen = []
        while len(chosen) < count:
            if position not in self._deleted_set:
                chosen.append(position)
            position += step
        return chosen, more

    def _live_position(self, ordinal: int) -> int:
        """The position of the `ordinal`-th (0-based) contact that is not deleted."""
        deleted = self._deleted
        if not deleted:
            return ordinal
        low, high = ordinal, ordinal + len(deleted)
        while low < high:  # the smallest p with p + 1 - deleted_up_to(p) > ordinal
            mid = (low + high) // 2
            if mid + 1 - bisect_right(deleted, mid) > ordinal:
                high = mid
            else:
                low = mid + 1
        return low

    def _select(self, order: str, updated_from: int | None, updated_to: int | None) -> list[int]:
        key = (self.version, order, updated_from, updated_to)
        if self._filtered is not None and self._filtered[0] == key:
            return self._filtered[1]
        by_updated = self._updated_index()
        updated = self.updated
        low = (
            0
            if updated_from is None
            else bisect_left(by_updated, updated_from, key=updated.__getitem__)
        )
        high = (
            len(by_updated)
            if updated_to is None
            else bisect_right(by_updated, updated_to, key=updated.__getitem__)
        )
        selection = by_updated[low:high]
        if order == "id":
            selection.sort()
        self._filtered = (key, selection)
        return selection

    def _updated_index(self) -> list[int]:
        """Live positions ordered by (updated_at, id); rebuilt after a change."""
        if self._by_updated is not None and self._by_updated[0] == self.version:
            return self._by_updated[1]
        deleted = self._deleted_set
        live = (p for p in range(len(self.ids)) if p not in deleted)
        index = sorted(live, key=self.updated.__getitem__)  # stable: ties stay in id order
        self._by_updated = (self.version, index)
        return index


def with_changes(
    data: ContactData,
    *,
    name: str | None = None,
    emails: Sequence[str] | None = None,
    phones: Sequence[str] | None = None,
    custom_fields: FieldValues | None | object = ...,
) -> ContactData:
    """`data` with a new name and/or new phones/addresses (other fields are kept)."""
    changed = replace(data)
    if name is not None:
        changed.name = name
        first, _, last = name.partition(" ")
        changed.first_name, changed.last_name = first, last
    if custom_fields is not ...:
        changed.custom_fields = custom_fields  # type: ignore[assignment]
    elif emails is not None or phones is not None:
        kept = [
            field
            for field in data.custom_fields or ()
            if field.get("field_code") not in ("EMAIL", "PHONE")
        ]
        new_phones = field_values(data.custom_fields, "PHONE") if phones is None else phones
        new_emails = field_values(data.custom_fields, "EMAIL") if emails is None else emails
        fields = (build_fields(new_emails, new_phones) or []) + kept
        changed.custom_fields = fields or None
    return changed


def unix_now() -> int:
    return int(time.time())
