"""amoCRM webhook payloads: PHP-style nested form keys → contact and deal changes (SPEC §5).

amoCRM posts `application/x-www-form-urlencoded` bodies in the legacy (API v2) shape:

    contacts[update][0][id]=124&contacts[update][0][name]=Ann
    &contacts[update][0][last_modified]=1642684812&contacts[update][0][updated_at]=1642684812
    &contacts[update][0][custom_fields][0][id]=55&contacts[update][0][custom_fields][0][code]=EMAIL
    &contacts[update][0][custom_fields][0][values][0][value]=ann@example.com
    &contacts[update][0][custom_fields][0][values][0][enum]=101
    &contacts[update][0][type]=contact
    &contacts[delete][0][id]=125&contacts[delete][0][type]=contact
    &account[subdomain]=acme&account[id]=30896271&account[_links][self]=https://acme.amocrm.ru

What real deliveries look like, beyond that example (tests/fixtures/amocrm holds them, with
their sources), and how this module copes:

- keys named by entity ids, not indices: `[linked_leads_id][35144366][ID]=35144366` for
  every deal the contact is linked to, `[catalog_elements_id][<catalog>][<element>]`; a key
  part is only a name, whatever its size (PHP keeps one past 64 bits as a string key);
- tags (`[tags][0][name]=vip`), `linked_company_id`, `company_name`, fields without `code`;
- companies arrive under `contacts[...]` with `[type]=company`: skipped;
- a value of a date field is a bare scalar (`[values][0]=1471813200`), not `[values][0][value]`;
- system fields carry their `code` after their values: the tree is built before it is read;
- `delete` entries may hold only an `id`; a `restore` may come without `custom_fields`, and
  then its addresses are unknown: such a change is a `fetch` (sync.restore reads the contact);
- note webhooks use one key both as a value and as a container
  (`contacts[note][0][note][type]=3` and `contacts[note][0][note][type][message_uuid]=…`),
  and Unsorted nests ten levels deep; `parse_webhook` only builds the parts it reads
  (`account[…]`, `contacts[add|update|delete|restore]…` and
  `leads[add|update|status|delete|restore]…`), so other entities and events are
  acknowledged and ignored whatever their shape.

A body is refused (`MalformedWebhook`, 400, nothing stored) only when it cannot be read at
all: not UTF-8, a NUL character (no database column can hold one), or over the limits on the
body as a whole (key count, nesting depth; its size is capped before it gets here) or on what
is read of it (contacts, fields of a contact, values of a field). Within those, every body
is taken: a part that cannot be used (an entry without a numeric id, a list that is not a
list) is skipped and logged, and the rest is stored. Where a key is both a value and a
container, the later one wins, as in PHP.

No library parses PHP's bracket syntax with these limits, so `parse_form` does it by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, TypeAlias, Union

import structlog

from amosync.errors import BadRequest

log = structlog.get_logger()

# Limits on the body as a whole. A real pair takes ~70 bytes: the 1 MiB body cap comes first.
MAX_PAIRS = 20_000
MAX_DEPTH = 16  # a contact's e-mail value sits 8 levels deep; Unsorted goes to ~11
# Limits on what is read. A real webhook holds at most a few hundred contacts, tens of fields
# and a handful of values; a contact with a thousand addresses (SPEC §4) must still pass.
MAX_CONTACTS = 5_000
MAX_FIELDS = 1_000
MAX_VALUES = 10_000
# amoCRM ids are positive 64-bit integers; more digits than this cannot be one. A longer
# digit string is still a fine key part, just not an index or an id.
_MAX_ID_DIGITS = 18
# Keys repeat from one webhook to the next, so their paths are cached; a long key is parsed
# every time rather than kept.
_CACHED_KEY_LENGTH = 256

# `Node` is what the form builds: a value is a string or a dict of further nodes. A PHP
# list (`a[0]`, `a[1]`, `a[]`) stays a dict keyed by the index as a string.
Node: TypeAlias = dict[str, Union["Node", str]]

Action = Literal["add", "update", "delete", "restore"]
_ACTIONS: tuple[Action, ...] = ("add", "update", "delete", "restore")
LeadAction = Literal["add", "update", "status", "delete", "restore"]
_LEAD_ACTIONS: tuple[LeadAction, ...] = ("add", "update", "status", "delete", "restore")
MAX_LEADS = 5_000
# The only keys parse_webhook reads; everything else is dropped before the tree is built.
_WANTED = (
    "account[",
    *(f"contacts[{action}]" for action in _ACTIONS),
    *(f"leads[{action}]" for action in _LEAD_ACTIONS),
)


class MalformedWebhook(BadRequest):
    """The body cannot be read as an amoCRM webhook; nothing of it was used."""

    code = "malformed_webhook"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactChange:
    """One contact of a webhook: its state after the change, or its deletion.

    `fetch`: the contact is back (a restore) but the webhook did not say what it holds, so
    its state must be read from amoCRM before it is applied.
    """

    amocrm_id: int
    action: Literal["upsert", "delete", "fetch"]
    raw_action: Action  # as amoCRM sent it: "restore" is an upsert, like "add"
    name: str | None = None
    # The EMAIL field's values in order, trimmed, blanks dropped; checked by sync.mapping.
    emails: list[str] = field(default_factory=list)
    updated_at: int | None = None  # amoCRM's last_modified (unix seconds)
    # Its tag names in amoCRM's order (`[tags][i][name]`); a webhook names every tag the
    # contact has, and none when it has none.
    tags: list[str] = field(default_factory=list)
    # Its other custom fields in the API's `custom_fields_values` shape (`field_id`,
    # `field_code`, `values[].value`/`enum_id`), for the field mapping (SPEC §8).
    fields: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadChange:
    """One deal of a webhook (`leads[add|update|status|delete|restore][i]`): which, and where
    it stands as the webhook says (a delete may carry only the id). Its contacts are not in
    the webhook: they are read with `GET /api/v4/leads/{id}?with=contacts`."""

    lead_id: int
    action: LeadAction
    pipeline_id: int | None = None
    status_id: int | None = None
    updated_at: datetime | None = None  # amoCRM's last_modified


@dataclass(frozen=True, slots=True)
class WebhookPayload:
    account_id: int | None
    subdomain: str | None
    changes: list[ContactChange]
    leads: tuple[LeadChange, ...] = ()


def parse_form(body: bytes) -> Node:
    """The nested dict PHP's `$_POST` would hold for this form body."""
    return _build(_pairs(body))


def parse_webhook(body: bytes) -> WebhookPayload:
    """The account and the contact changes of an amoCRM webhook body."""
    form = _build([pair for pair in _pairs(body) if pair[0].startswith(_WANTED)])
    account = form.get("account")
    account_id: int | None = None
    subdomain: str | None = None
    if isinstance(account, dict):
        account_id = _number(account.get("id"))
        sub = account.get("subdomain")
        subdomain = sub if isinstance(sub, str) and sub else None
    changes: list[ContactChange] = []
    skipped: list[str] = []
    contacts = form.get("contacts")
    if isinstance(contacts, dict):
        # In the order amoCRM wrote them, so a later action on one contact wins a tie.
        for action, entries in contacts.items():
            if action in _ACTIONS:
                changes.extend(_changes(action, entries, skipped))
                if len(changes) > MAX_CONTACTS:
                    raise MalformedWebhook(f"the webhook has more than {MAX_CONTACTS} contacts")
    leads = _lead_changes(form.get("leads"), skipped)
    if skipped:
        log.warning("webhook.parts.skipped", account_id=account_id, parts=skipped[:10])
    return WebhookPayload(
        account_id=account_id, subdomain=subdomain, changes=changes, leads=tuple(leads)
    )


# --- the form ---------------------------------------------------------------------------
#
# Written for speed as much as for strictness: the webhook endpoint aims at 1000 requests a
# second, and urllib's parse_qsl spends ~170 µs on a one-contact webhook unquoting every
# bracket. Here brackets are unquoted once over the whole body (they are no delimiters, so
# that cannot change how it splits), other escapes only where a "%" is left, and the paths
# of keys, which repeat from one webhook to the next, are cached: ~50 µs in all.


def _pairs(body: bytes) -> list[tuple[str, str]]:
    if b"\x00" in body:
        raise _nul()
    if body.count(b"&") >= MAX_PAIRS:
        raise MalformedWebhook(f"the form has more than {MAX_PAIRS} fields")
    for escaped, plain in _BRACKETS:
        body = body.replace(escaped, plain)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedWebhook("the form is not valid UTF-8") from exc
    pairs = []
    for pair in text.split("&"):
        if pair:
            key, _, value = pair.partition("=")
            if "%" in key:
                key = _unquote(key)
            # The depth of the body as a whole, read or not: the one limit on a key.
            if key.count("[") >= MAX_DEPTH:
                raise MalformedWebhook(f"a form key is nested deeper than {MAX_DEPTH} levels")
            if "%" in value:
                value = _unquote(value)
            pairs.append((key, value))
    return pairs


_BRACKETS = ((b"+", b" "), (b"%5B", b"["), (b"%5D", b"]"), (b"%5b", b"["), (b"%5d", b"]"))
_BYTE = {
    spelling.encode(): bytes([n])
    for n in range(256)
    for spelling in {
        f"{n:02x}",
        f"{n:02X}",
        f"{n:02x}"[0] + f"{n:02X}"[1],
        f"{n:02X}"[0] + f"{n:02x}"[1],
    }
}


def _unquote(text: str) -> str:
    """Percent escapes → characters; a "%" that starts no escape stays as it is (as PHP's
    urldecode does), escapes that are not UTF-8 are refused."""
    first, *rest = text.encode("utf-8").split(b"%")
    chunks = [first]
    for chunk in rest:
        byte = _BYTE.get(chunk[:2])
        if byte is None:
            chunks += (b"%", chunk)
        else:
            chunks += (byte, chunk[2:])
    raw = b"".join(chunks)
    if b"\x00" in raw:
        raise _nul()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedWebhook("the form is not valid UTF-8") from exc


def _nul() -> MalformedWebhook:
    # PostgreSQL text and jsonb cannot hold a NUL: refused here, or it would be a 500 there.
    return MalformedWebhook("the form contains a NUL character")


def _build(pairs: list[tuple[str, str]]) -> Node:
    root: Node = {}
    # `a[]` appends; PHP gives it one more than the largest index of its container so far.
    # Bookkeeping by container id (containers live until the end), only when it is needed.
    next_index: dict[int, int] | None = None
    if any("[]" in key for key, _ in pairs):
        next_index = {}
    for key, value in pairs:
        path = _path(key) if len(key) <= _CACHED_KEY_LENGTH else _parse_path(key)
        if path is None:
            continue  # a key PHP would have to guess at: not one amoCRM writes
        node = root
        for part in path[:-1]:
            if next_index is not None:
                part = _slot(node, part, next_index)
            child = node.get(part)
            if not isinstance(child, dict):
                # New, or a value until now: the container replaces it, as in PHP.
                node[part] = child = {}
            node = child
        part = path[-1]
        if next_index is not None:
            part = _slot(node, part, next_index)
        node[part] = value  # a later value replaces an earlier container, as in PHP
    return root


def _slot(node: Node, part: str, next_index: dict[int, int]) -> str:
    if part == "":
        part = str(next_index.get(id(node), 0))
    if _is_index(part) and int(part) >= next_index.get(id(node), 0):
        next_index[id(node)] = int(part) + 1
    return part


@lru_cache(maxsize=4096)
def _path(key: str) -> tuple[str, ...] | None:
    return _parse_path(key)


def _parse_path(key: str) -> tuple[str, ...] | None:
    """`a[b][0][]` → ("a", "b", "0", ""); None for a key whose brackets do not pair up."""
    head, bracket, rest = key.partition("[")
    if not bracket:
        return (head,) if head and "]" not in head else None
    parts = rest[:-1].split("][")
    if not head or "]" in head or not rest.endswith("]"):
        return None
    for part in parts:
        if "[" in part or "]" in part:
            return None
    return (head, *parts)


# --- contacts ---------------------------------------------------------------------------


def _changes(action: Action, entries: Node | str, skipped: list[str]) -> list[ContactChange]:
    if not isinstance(entries, dict):
        skipped.append(f"contacts[{action}]")
        return []
    changes = []
    for index, contact in _ordered(entries):
        where = f"contacts[{action}][{index[:20]}]"
        if not isinstance(contact, dict):
            skipped.append(where)
            continue
        amocrm_id = _number(contact.get("id"))
        if not amocrm_id:
            skipped.append(f"{where}[id]")
            continue
        # Companies come under contacts[...] too, told apart by their type.
        if contact.get("type", "contact") not in ("contact", ""):
            continue
        if action == "delete":
            change = ContactChange(amocrm_id=amocrm_id, action="delete", raw_action=action)
        else:
            name = contact.get("name")
            fields = contact.get("custom_fields")
            emails, others = _fields(fields, where)
            change = ContactChange(
                amocrm_id=amocrm_id,
                action="fetch" if action == "restore" and fields is None else "upsert",
                name=name if isinstance(name, str) else None,
                emails=emails,
                updated_at=_number(contact.get("last_modified") or contact.get("updated_at")),
                raw_action=action,
                tags=_tags(contact.get("tags")),
                fields=others,
            )
        changes.append(change)
    return changes


# --- leads ------------------------------------------------------------------------------


def _lead_changes(leads: Node | str | None, skipped: list[str]) -> list[LeadChange]:
    """The deals of `leads[...]`, in the order amoCRM wrote them; an entry without a numeric
    id is skipped, an odd pipeline, status or time is left out (the deal is read anyway)."""
    if leads is None:
        return []
    if not isinstance(leads, dict):
        skipped.append("leads")
        return []
    changes: list[LeadChange] = []
    for action, entries in leads.items():
        if action not in _LEAD_ACTIONS:
            continue
        if not isinstance(entries, dict):
            skipped.append(f"leads[{action}]")
            continue
        for index, lead in _ordered(entries):
            where = f"leads[{action}][{index[:20]}]"
            lead_id = _number(lead.get("id")) if isinstance(lead, dict) else None
            if not isinstance(lead, dict) or not lead_id:
                skipped.append(where if not isinstance(lead, dict) else f"{where}[id]")
                continue
            modified = _number(lead.get("last_modified") or lead.get("updated_at"))
            changes.append(
                LeadChange(
                    lead_id=lead_id,
                    action=action,
                    pipeline_id=_number(lead.get("pipeline_id")),
                    status_id=_number(lead.get("status_id")),
                    updated_at=None if modified is None else datetime.fromtimestamp(modified, UTC),
                )
            )
            if len(changes) > MAX_LEADS:
                raise MalformedWebhook(f"the webhook has more than {MAX_LEADS} deals")
    return changes


def _number(value: Node | str | None) -> int | None:
    """A non-negative decimal integer, or None. Timestamps and the account id are optional:
    a garbled one costs only the ordering of duplicate deliveries, so it refuses nothing."""
    if isinstance(value, str) and 0 < len(value) <= _MAX_ID_DIGITS:
        if value.isdigit() and value.isascii():
            return int(value)
    return None


def _fields(fields: Node | str | None, where: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The EMAIL fields' values (by code, never by position), and the other fields in the
    API's `custom_fields_values` shape."""
    if not isinstance(fields, dict):
        return [], []
    if len(fields) > MAX_FIELDS:
        raise MalformedWebhook(f"{where} has more than {MAX_FIELDS} custom fields")
    emails: list[str] = []
    others: list[dict[str, Any]] = []
    for _, custom_field in _ordered(fields):
        if not isinstance(custom_field, dict):
            continue
        values = custom_field.get("values")
        if not isinstance(values, dict):
            continue
        if len(values) > MAX_VALUES:
            raise MalformedWebhook(f"{where} has a field with more than {MAX_VALUES} values")
        code = custom_field.get("code")
        if code == "EMAIL":
            for _, item in _ordered(values):
                # {"value": "a@b.c", "enum": "101"} as a rule; a bare scalar for some types.
                raw = item.get("value") if isinstance(item, dict) else item
                if isinstance(raw, str) and (address := raw.strip()):
                    emails.append(address)
            continue
        field_id = _number(custom_field.get("id"))
        if field_id is None:
            continue  # nothing a mapping could name it by
        converted: list[dict[str, Any]] = []
        for _, item in _ordered(values):
            if isinstance(item, dict):
                # An object value (a file, a legal entity) stays an object: the mapping
                # skips it, as it does over the API.
                value: dict[str, Any] = {"value": item.get("value")}
                enum_id = _number(item.get("enum"))
                if enum_id is not None:
                    value["enum_id"] = enum_id
            else:
                value = {"value": item}  # a date field's bare number
            converted.append(value)
        others.append(
            {
                "field_id": field_id,
                "field_code": code if isinstance(code, str) and code else None,
                "values": converted,
            }
        )
    return emails, others


def _tags(tags: Node | str | None) -> list[str]:
    """`[tags][i][name]`, in order; a tag without a name is no tag."""
    if not isinstance(tags, dict):
        return []
    names: list[str] = []
    for _, tag in _ordered(tags):
        name = tag.get("name") if isinstance(tag, dict) else None
        if isinstance(name, str) and (name := name.strip()):
            names.append(name)
    return names


def _is_index(key: str) -> bool:
    return (
        0 < len(key) <= _MAX_ID_DIGITS
        and key.isdigit()
        and key.isascii()
        and (key == "0" or key[0] != "0")
    )


def _ordered(node: Node) -> list[tuple[str, Node | str]]:
    """A PHP list's items by index (other keys after them, as they came)."""
    items = list(node.items())
    if len(items) > 1:
        items.sort(key=lambda item: (0, int(item[0])) if _is_index(item[0]) else (1, 0))
    return items
