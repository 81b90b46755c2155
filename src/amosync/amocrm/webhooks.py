"""amoCRM webhook payloads: PHP-style nested form keys → contact changes (SPEC §5).

amoCRM posts `application/x-www-form-urlencoded` bodies such as
`contacts[add][0][id]=123&contacts[add][0][custom_fields][0][code]=EMAIL&…`. No library
parses PHP's bracket syntax into the shapes we need with strict limits, so `parse_form` does
it by hand: it refuses anything odd (bad encoding, too many pairs, deep nesting, a key used
both as a value and as a container) with `MalformedWebhook`, never another exception, so the
endpoint answers 4xx and stores nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl

from amosync.errors import BadRequest

MAX_PAIRS = 20_000
MAX_DEPTH = 8
MAX_KEY = 256
MAX_INDEX = 100_000

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")

Node = dict[str, Any]


class MalformedWebhook(BadRequest):
    code = "malformed_webhook"


@dataclass(slots=True)
class ContactChange:
    amocrm_id: int
    action: Literal["upsert", "delete"]
    raw_action: str
    name: str | None = None
    emails: list[str] = field(default_factory=list)
    updated_at: int | None = None


@dataclass(slots=True)
class WebhookPayload:
    account_id: int | None
    subdomain: str | None
    changes: list[ContactChange]


def parse_form(body: bytes) -> Node:
    """The nested dict a PHP form parser would build (lists are dicts keyed by index)."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=False,
            errors="strict",
            max_num_fields=MAX_PAIRS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedWebhook("the body is not a valid UTF-8 form") from exc
    root: Node = {}
    for key, value in pairs:
        path = _path(key)
        node = root
        for depth, part in enumerate(path[:-1]):
            child = node.setdefault(part if part != "" else str(len(node)), {})
            if not isinstance(child, dict):
                raise MalformedWebhook(f"key '{key[:80]}' is used as a value and a container")
            node = child
            if depth > MAX_DEPTH:
                raise MalformedWebhook("the form is nested too deeply")
        last = path[-1] if path[-1] != "" else str(len(node))
        if isinstance(node.get(last), dict):
            raise MalformedWebhook(f"key '{key[:80]}' is used as a value and a container")
        node[last] = value
    return root


def _path(key: str) -> list[str]:
    if len(key) > MAX_KEY:
        raise MalformedWebhook("a form key is too long")
    match = _KEY.match(key)
    if match is None:
        raise MalformedWebhook(f"a form key is malformed: '{key[:80]}'")
    parts = [match.group(1), *_PART.findall(match.group(2))]
    if len(parts) > MAX_DEPTH:
        raise MalformedWebhook("the form is nested too deeply")
    return parts


def _items(node: Any, what: str) -> list[Node]:
    """The entries of a PHP list (a dict keyed by index), in index order."""
    if node is None:
        return []
    if not isinstance(node, dict):
        raise MalformedWebhook(f"{what} must be a list")
    entries = []
    for index, item in node.items():
        if not index.isdigit() or int(index) > MAX_INDEX:
            raise MalformedWebhook(f"{what} has a non-numeric index '{index[:20]}'")
        if not isinstance(item, dict):
            raise MalformedWebhook(f"{what}[{index}] must be an object")
        entries.append((int(index), item))
    return [item for _, item in sorted(entries, key=lambda pair: pair[0])]


def _int(value: Any, what: str, *, required: bool) -> int | None:
    if value is None or value == "":
        if required:
            raise MalformedWebhook(f"{what} is missing")
        return None
    if not isinstance(value, str) or not value.strip().isdigit():
        raise MalformedWebhook(f"{what} must be a number")
    return int(value.strip())


def _emails(contact: Node, what: str) -> list[str]:
    emails: list[str] = []
    for custom_field in _items(contact.get("custom_fields"), f"{what}.custom_fields"):
        if custom_field.get("code") != "EMAIL":
            continue
        for value in _items(custom_field.get("values"), f"{what}.custom_fields.values"):
            raw = value.get("value")
            if isinstance(raw, str) and raw.strip():
                emails.append(raw.strip())
    return emails


def parse_webhook(body: bytes) -> WebhookPayload:
    form = parse_form(body)
    account = form.get("account")
    account_id = subdomain = None
    if isinstance(account, dict):
        account_id = _int(account.get("id"), "account.id", required=False)
        sub = account.get("subdomain")
        subdomain = sub if isinstance(sub, str) else None
    contacts = form.get("contacts")
    changes: list[ContactChange] = []
    if contacts is not None:
        if not isinstance(contacts, dict):
            raise MalformedWebhook("contacts must be an object")
        for action, entries in contacts.items():
            if action not in ("add", "update", "delete", "restore"):
                continue  # e.g. notes: acknowledged and ignored
            for n, contact in enumerate(_items(entries, f"contacts.{action}")):
                what = f"contacts.{action}[{n}]"
                amocrm_id = _int(contact.get("id"), f"{what}.id", required=True)
                assert amocrm_id is not None
                # Some deliveries describe companies under contacts (type=company): ignore.
                if contact.get("type") not in (None, "", "contact"):
                    continue
                updated = contact.get("last_modified") or contact.get("updated_at")
                name = contact.get("name")
                changes.append(
                    ContactChange(
                        amocrm_id=amocrm_id,
                        action="delete" if action == "delete" else "upsert",
                        raw_action=action,
                        name=name if isinstance(name, str) else None,
                        emails=[] if action == "delete" else _emails(contact, what),
                        updated_at=_int(updated, f"{what}.last_modified", required=False),
                    )
                )
    return WebhookPayload(account_id=account_id, subdomain=subdomain, changes=changes)
