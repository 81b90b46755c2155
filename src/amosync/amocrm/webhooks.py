"""amoCRM webhook payloads: PHP-style nested form keys → contact changes (SPEC §5).

amoCRM posts `application/x-www-form-urlencoded` bodies in the legacy (API v2) shape:

    contacts[update][0][id]=124&contacts[update][0][name]=Ann
    &contacts[update][0][last_modified]=1642684812&contacts[update][0][updated_at]=1642684812
    &contacts[update][0][custom_fields][0][id]=55&contacts[update][0][custom_fields][0][code]=EMAIL
    &contacts[update][0][custom_fields][0][values][0][value]=ann@example.com
    &contacts[update][0][custom_fields][0][values][0][enum]=101
    &contacts[update][0][type]=contact
    &contacts[delete][0][id]=125&contacts[delete][0][type]=contact
    &account[subdomain]=acme&account[id]=30896271&account[_links][self]=https://acme.amocrm.ru

What real deliveries look like, beyond that example, and how this module copes:

- companies arrive under `contacts[...]` with `[type]=company`: skipped;
- a value of a date field is a bare scalar (`[values][0]=1471813200`), not `[values][0][value]`;
- note webhooks use one key both as a value and as a container
  (`contacts[note][0][note][type]=3` and `contacts[note][0][note][type][message_uuid]=…`),
  and Unsorted nests ten levels deep; `parse_webhook` only builds the parts it reads
  (`account[…]` and `contacts[add|update|delete|restore]…`), so other entities and events
  are acknowledged and ignored whatever their shape.

No library parses PHP's bracket syntax with strict limits, so `parse_form` does it by hand.
Anything odd (bad percent escapes, non-UTF-8, NUL characters, too many pairs, deep nesting,
long keys, huge indices, a key used both as a value and a container, a contact without a
numeric id) raises `MalformedWebhook` and nothing else, so the endpoint answers 400 and
stores nothing: a request is taken whole or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal, TypeAlias, Union

from amosync.errors import BadRequest

MAX_PAIRS = 20_000  # a real pair takes ~70 bytes: the 1 MiB body limit comes first
MAX_DEPTH = 16  # a contact's e-mail value sits 8 levels deep; Unsorted goes to ~11
MAX_KEY_LENGTH = 512
MAX_INDEX = 100_000  # amoCRM numbers list items 0, 1, 2…; more is an attack, not a webhook
# amoCRM ids are positive 64-bit integers; more digits than this cannot be one.
_MAX_ID_DIGITS = 18

# `Node` is what the form builds: a value is a string or a dict of further nodes. A PHP
# list (`a[0]`, `a[1]`, `a[]`) stays a dict keyed by the index as a string.
Node: TypeAlias = dict[str, Union["Node", str]]

Action = Literal["add", "update", "delete", "restore"]
_ACTIONS: tuple[Action, ...] = ("add", "update", "delete", "restore")
# The only keys parse_webhook reads; everything else is dropped before the tree is built.
_WANTED = ("account[", *(f"contacts[{action}]" for action in _ACTIONS))


class MalformedWebhook(BadRequest):
    """The body is not a well-formed amoCRM webhook; nothing of it was used."""

    code = "malformed_webhook"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactChange:
    """One contact of a webhook: its state after the change, or its deletion."""

    amocrm_id: int
    action: Literal["upsert", "delete"]
    raw_action: Action  # as amoCRM sent it: "restore" is an upsert, like "add"
    name: str | None = None
    # The EMAIL field's values in order, trimmed, blanks dropped; checked by sync.mapping.
    emails: list[str] = field(default_factory=list)
    updated_at: int | None = None  # amoCRM's last_modified (unix seconds)


@dataclass(frozen=True, slots=True)
class WebhookPayload:
    account_id: int | None
    subdomain: str | None
    changes: list[ContactChange]


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
    contacts = form.get("contacts")
    if isinstance(contacts, dict):
        # In the order amoCRM wrote them, so a later action on one contact wins a tie.
        for action, entries in contacts.items():
            if action in _ACTIONS:
                changes.extend(_changes(action, entries))
    return WebhookPayload(account_id=account_id, subdomain=subdomain, changes=changes)


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
    """Percent escapes → characters, refusing a stray "%" and escapes that are not UTF-8."""
    first, *rest = text.encode("utf-8").split(b"%")
    chunks = [first]
    for chunk in rest:
        byte = _BYTE.get(chunk[:2])
        if byte is None:
            raise MalformedWebhook("the form has a '%' that is not a percent escape")
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
        path = _path(key)
        node = root
        for part in path[:-1]:
            if next_index is not None:
                part = _slot(node, part, next_index)
            child = node.get(part)
            if child is None:
                node[part] = child = {}
            elif not isinstance(child, dict):
                raise _conflict(key)
            node = child
        part = path[-1]
        if next_index is not None:
            part = _slot(node, part, next_index)
        if isinstance(node.get(part), dict):
            raise _conflict(key)
        node[part] = value
    return root


def _slot(node: Node, part: str, next_index: dict[int, int]) -> str:
    if part == "":
        part = str(next_index.get(id(node), 0))
        if int(part) > MAX_INDEX:
            raise MalformedWebhook(f"a list has more than {MAX_INDEX} items")
    if _is_index(part) and int(part) >= next_index.get(id(node), 0):
        next_index[id(node)] = int(part) + 1
    return part


@lru_cache(maxsize=4096)
def _path(key: str) -> tuple[str, ...]:
    """`a[b][0][]` → ("a", "b", "0", ""), refusing anything PHP would have to guess at."""
    if len(key) > MAX_KEY_LENGTH:
        raise MalformedWebhook(f"a form key is longer than {MAX_KEY_LENGTH} characters")
    head, bracket, rest = key.partition("[")
    if not head or "]" in head:
        raise MalformedWebhook(f"a form key is malformed: '{key[:80]}'")
    if not bracket:
        return (head,)
    if not rest.endswith("]"):
        raise MalformedWebhook(f"a form key is malformed: '{key[:80]}'")
    parts = rest[:-1].split("][")
    if len(parts) >= MAX_DEPTH:
        raise MalformedWebhook(f"a form key is nested deeper than {MAX_DEPTH} levels")
    for part in parts:
        if "[" in part or "]" in part:
            raise MalformedWebhook(f"a form key is malformed: '{key[:80]}'")
        if _is_index(part) and (len(part) > 6 or int(part) > MAX_INDEX):
            raise MalformedWebhook(f"an index is over {MAX_INDEX} in '{key[:80]}'")
    return (head, *parts)


def _conflict(key: str) -> MalformedWebhook:
    return MalformedWebhook(f"the form uses '{key[:80]}' both as a value and as a container")


# --- contacts ---------------------------------------------------------------------------


def _changes(action: Action, entries: Node | str) -> list[ContactChange]:
    if not isinstance(entries, dict):
        raise MalformedWebhook(f"contacts[{action}] must be a list of contacts")
    changes = []
    for index, contact in _ordered(entries):
        where = f"contacts[{action}][{index}]"
        if not _is_index(index) or not isinstance(contact, dict):
            raise MalformedWebhook(f"{where} is not a contact")
        amocrm_id = _contact_id(contact.get("id"), where)
        # Companies come under contacts[...] too, told apart by their type.
        if contact.get("type", "contact") not in ("contact", ""):
            continue
        if action == "delete":
            change = ContactChange(amocrm_id=amocrm_id, action="delete", raw_action=action)
        else:
            name = contact.get("name")
            change = ContactChange(
                amocrm_id=amocrm_id,
                action="upsert",
                name=name if isinstance(name, str) else None,
                emails=_emails(contact),
                updated_at=_number(contact.get("last_modified") or contact.get("updated_at")),
                raw_action=action,
            )
        changes.append(change)
    return changes


def _contact_id(value: Node | str | None, where: str) -> int:
    if value is None:
        raise MalformedWebhook(f"{where} has no id")
    number = _number(value)
    if number is None or number == 0:
        raise MalformedWebhook(f"{where}[id] is not a contact id")
    return number


def _number(value: Node | str | None) -> int | None:
    """A non-negative decimal integer, or None. Timestamps and the account id are optional:
    a garbled one costs only the ordering of duplicate deliveries, so it refuses nothing."""
    if isinstance(value, str) and 0 < len(value) <= _MAX_ID_DIGITS:
        if value.isdigit() and value.isascii():
            return int(value)
    return None


def _emails(contact: Node) -> list[str]:
    """Values of the fields whose code is EMAIL — by code, never by position."""
    fields = contact.get("custom_fields")
    if not isinstance(fields, dict):
        return []
    emails = []
    for _, custom_field in _ordered(fields):
        if not isinstance(custom_field, dict) or custom_field.get("code") != "EMAIL":
            continue
        values = custom_field.get("values")
        if not isinstance(values, dict):
            continue
        for _, item in _ordered(values):
            # {"value": "a@b.c", "enum": "101"} as a rule; a bare scalar for some field types.
            raw = item.get("value") if isinstance(item, dict) else item
            if isinstance(raw, str) and (address := raw.strip()):
                emails.append(address)
    return emails


def _is_index(key: str) -> bool:
    return key.isdigit() and key.isascii() and (key == "0" or key[0] != "0")


def _ordered(node: Node) -> list[tuple[str, Node | str]]:
    """A PHP list's items by index (other keys after them, as they came)."""
    items = list(node.items())
    if len(items) > 1:
        items.sort(key=lambda item: int(item[0]) if _is_index(item[0]) else MAX_INDEX + 1)
    return items
