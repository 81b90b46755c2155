"""The Unisender simulator: API keys, lists, contacts and the methods amosync calls.

    uni = sandbox.unisender
    uni.add_key("key")
    uni.lists("key")                      # [{"id": 1, "title": "amoCRM"}]
    uni.list_members("key", 1)            # {"ann@example.com", ...}
    uni.contact("key", "ann@example.com") # {"email", "status", "lists", "fields", "phone", "tags"}
    uni.fields("key")                     # [{"id", "name": "Name", "type": "string", ...}]
    uni.create_field("key", "city")       # as createField does; returns the field id
    uni.unsubscribe("key", "ann@example.com")  # posts `unsubscribe` to the key's hooks
    uni.hooks.list_hooks("key"); uni.hooks.stop("key"); await uni.hooks.flush()
    uni.reject("blocked@example.com", "invalid_arg")     # importContacts logs it, skips it
    uni.warn("role@example.com", "role_address")          # logs it, imports it all the same
    uni.fail_imports("bad@example.com", code="unspecified")  # any call holding it fails

Knobs: `latency` (seconds per call), `rate_limit_rpm` (calls per minute per key, None = off),
`hook_timeout` (3 s), `hook_retry_interval` (600 s), `hook_stop_after` (86 400 s),
`add_fault(method=..., status=503)` or `add_fault(method=..., code="retry_later")`,
`faults.rate` for a random fault rate, `clear_faults()`.

Behaviour follows Unisender's API: every answer is HTTP 200, errors are
`{"error": message, "code": code}` with the message HTML-escaped; `importContacts` takes at
most 500 rows and reports rejected rows in `log` by their index; new addresses get status
`new`; an address imported without `email_status` keeps its status, so an unsubscribed
address stays unsubscribed (a list it is added to records it as unsubscribed there too);
`exclude` takes an address out of lists without deleting or unsubscribing it. Addresses are
kept lower-cased, as Unisender stores them.

User fields: every key starts with `Name`; `getFields` lists them, `createField` adds one
(a name of Latin letters, digits, `_` and `-` starting with a letter; unique regardless of
case; type string, text, number, date or bool). An `importContacts` column that is neither
one of Unisender's own (email, phone, tags, email_list_ids, ...) nor a user field fails the
whole call with `invalid_arg`. `phone` and user fields are stored on the contact; `tags` are
added to the contact's (replaced with `overwrite_tags=1`), at most 10 kept. An empty `phone`
cell leaves the phone as it was; an empty user field cell empties the field.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from amosync.sandbox.calls import CallLog
from amosync.sandbox.faults import Fault, FaultPlan
from amosync.sandbox.rates import RateWindow
from amosync.sandbox.unisender_hooks import HookDesk, HookError

MAX_IMPORT_ROWS = 500
MAX_TAGS = 10
FIELD_TYPES = frozenset({"string", "text", "number", "date", "bool"})
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
STATUSES = frozenset(
    {"new", "invited", "active", "inactive", "unsubscribed", "blocked", "activation_requested"}
)
_EMAIL = re.compile(
    r"^[^@\s,;<>\"']+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$"
)


class UnisenderHTTPError(Exception):
    """A call answered with a bare HTTP error status (a 500 from a proxy or a crash)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class UnisenderError(Exception):
    """An error answer: `{"error": message, "code": code}` (with HTTP 200)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_json(self) -> dict[str, str]:
        return {"error": html.escape(self.message), "code": self.code}


@dataclass(slots=True)
class Membership:
    status: str  # active or unsubscribed
    added_at: str


@dataclass(slots=True)
class Subscriber:
    email: str
    status: str
    added_at: str
    lists: dict[int, Membership] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)
    phone: str | None = None
    tags: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "status": self.status,
            "added_at": self.added_at,
            "lists": [
                {"id": list_id, "status": m.status, "added_at": m.added_at}
                for list_id, m in sorted(self.lists.items())
            ],
            "fields": dict(self.fields),
            "phone": self.phone,
            "tags": list(self.tags),
        }


@dataclass(slots=True)
class UserField:
    id: int
    name: str
    type: str


@dataclass
class KeyAccount:
    """What one API key sees: its lists and contacts."""

    key: str
    lists: dict[int, str] = field(default_factory=dict)
    contacts: dict[str, Subscriber] = field(default_factory=dict)
    # User fields by lower-case name: Unisender keeps names unique regardless of case.
    fields: dict[str, UserField] = field(default_factory=dict)
    window: RateWindow = field(default_factory=lambda: RateWindow(60.0))


class HookKnob:
    """A knob of the simulator kept by its `HookDesk`: `hook_timeout` is `hooks.timeout`
    (seconds, stored as a float)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name.removeprefix("hook_")

    def __get__(self, simulator: UnisenderSimulator, owner: type) -> float:
        return float(getattr(simulator.hooks, self.name))

    def __set__(self, simulator: UnisenderSimulator, value: float) -> None:
        setattr(simulator.hooks, self.name, float(value))


class UnisenderSimulator:
    """Unisender accounts by API key (see the module doc)."""

    def __init__(self, calls: CallLog) -> None:
        self.calls = calls
        self.latency = 0.0
        self.rate_limit_rpm: float | None = None
        self.faults = FaultPlan()
        self.keys: dict[str, KeyAccount] = {}
        self.rate_limited = 0
        self._rejections: dict[tuple[str | None, str], tuple[str, str]] = {}
        self._warnings: dict[str, tuple[str, str]] = {}
        self._import_failures: dict[str, UnisenderError | UnisenderHTTPError] = {}
        self._next_list_id = 1
        self._next_field_id = 1
        # setHook/listHooks/removeHook and the notifications posted to hooks.
        self.hooks = HookDesk()

    # Unisender's hook timing (see `unisender_hooks`), as knobs of the simulator.
    hook_timeout = HookKnob()
    hook_retry_interval = HookKnob()
    hook_stop_after = HookKnob()

    # --- Python API -----------------------------------------------------------------------

    def add_key(self, key: str) -> KeyAccount:
        """Make `key` a valid API key (an empty account), or return its account."""
        if not key:
            raise ValueError("an API key cannot be empty")
        account = self.keys.get(key)
        if account is None:
            account = self.keys[key] = KeyAccount(key)
            # A new Unisender account has one user field, the contact's name.
            self._add_field(account, "Name", "string")
        return account

    def remove_key(self, key: str) -> None:
        """Invalidate a key: calls with it get `invalid_api_key` from now on."""
        self.keys.pop(key, None)
        self.hooks.forget(key)

    def lists(self, key: str) -> list[dict[str, Any]]:
        return [{"id": i, "title": title} for i, title in sorted(self._account(key).lists.items())]

    def create_list(self, key: str, title: str) -> int:
        return int(self.call(key, "createList", {"title": title})["id"])

    def fields(self, key: str) -> list[dict[str, Any]]:
        """The key's user fields, as `getFields` lists them."""
        return self._get_fields(self._account(key), {})  # type: ignore[no-any-return]

    def create_field(self, key: str, name: str, type: str = "string") -> int:  # noqa: A002
        """Add a user field as `createField` does (its errors included); returns its id."""
        return int(self.call(key, "createField", {"name": name, "type": type})["id"])

    def list_members(self, key: str, list_id: int, status: str | None = None) -> set[str]:
        """Addresses in the list (any membership status unless `status` is given)."""
        return {
            sub.email
            for sub in self._account(key).contacts.values()
            if list_id in sub.lists and (status is None or sub.lists[list_id].status == status)
        }

    def contact(self, key: str, email: str) -> dict[str, Any] | None:
        """An address's status, lists and fields; None when Unisender does not know it."""
        sub = self._account(key).contacts.get(email.strip().lower())
        return sub.as_json() if sub is not None else None

    def unsubscribe(self, key: str, email: str, list_ids: Sequence[int] | None = None) -> None:
        """The address unsubscribes: from `list_ids`, or from everything (status too)."""
        sub = self._account(key).contacts.get(email.strip().lower())
        if sub is None:
            raise KeyError(f"{email!r} is not a contact of this key")
        left = []
        for list_id, membership in sub.lists.items():
            if (list_ids is None or list_id in list_ids) and membership.status != "unsubscribed":
                membership.status = "unsubscribed"
                left.append(list_id)
        if list_ids is None:
            sub.status = "unsubscribed"
        # Unisender notifies the key's hooks of every list the address left.
        for list_id in left:
            self.hooks.emit(key, "unsubscribe", sub.email, list_id)

    def reject(
        self, email: str, code: str, message: str | None = None, *, key: str | None = None
    ) -> None:
        """Make `importContacts` refuse this address with `code` in its `log` (any key)."""
        text = message or f"The address was rejected ({code})"
        self._rejections[(key, email.strip().lower())] = (code, text)

    def warn(self, email: str, code: str, message: str | None = None) -> None:
        """Make `importContacts` import this address and still log `code` for it: `log`
        holds warnings as well as errors."""
        text = message or f"Warning about the address ({code})"
        self._warnings[email.strip().lower()] = (code, text)

    def fail_imports(
        self,
        email: str,
        *,
        code: str | None = None,
        message: str | None = None,
        status: int | None = None,
    ) -> None:
        """Fail every `importContacts` call holding this address, as a whole: with error
        `code` (HTTP 200, as Unisender answers errors) or with an HTTP `status`."""
        if (code is None) == (status is None):
            raise ValueError("give either code or status")
        failure: UnisenderError | UnisenderHTTPError = (
            UnisenderHTTPError(status)
            if status is not None
            else UnisenderError(str(code), message or f"The call was refused ({code})")
        )
        self._import_failures[email.strip().lower()] = failure

    def clear_import_failures(self) -> None:
        self._import_failures.clear()

    def add_fault(
        self,
        *,
        method: str = "",
        status: int = 500,
        code: str | None = None,
        times: int | None = 1,
    ) -> None:
        """Fail the next `times` calls of methods starting with `method`.

        With `code` (e.g. "retry_later") the call gets that error with HTTP 200, otherwise
        an HTTP `status` such as 500 or 503.
        """
        self.faults.add(Fault(match=method, status=status, code=code, times=times))

    def clear_faults(self) -> None:
        self.faults.clear()

    def _account(self, key: str) -> KeyAccount:
        try:
            return self.keys[key]
        except KeyError:
            raise KeyError("no such sandbox Unisender key") from None

    # --- API methods ----------------------------------------------------------------------

    def call(self, key: str, method: str, params: Mapping[str, Any]) -> Any:
        """Run an API method for `key`; returns its `result` or raises `UnisenderError`."""
        account = self.keys.get(key)
        if account is None:
            raise UnisenderError("invalid_api_key", "Invalid API key")
        handler = _METHODS.get(method)
        if handler is None:
            raise UnisenderError("unknown_method", f'Unknown method "{method}"')
        try:
            return handler(self, account, params)
        except HookError as exc:  # what the hook desk refuses, Unisender calls invalid_arg
            raise UnisenderError("invalid_arg", str(exc)) from None

    def answer_warnings(self, method: str, result: Any) -> list[dict[str, str]]:
        """The answer's top-level `warnings` (`[{"warning": message}]`, as Unisender's
        general API description shows them): here, those of `warn()`ed rows."""
        if method != "importContacts" or not self._warnings or not isinstance(result, dict):
            return []
        codes = {code for code, _ in self._warnings.values()}
        return [{"warning": entry["message"]} for entry in result["log"] if entry["code"] in codes]

    def _get_lists(self, account: KeyAccount, _params: Mapping[str, Any]) -> Any:
        return self.lists(account.key)

    def _create_list(self, account: KeyAccount, params: Mapping[str, Any]) -> Any:
        title = str(params.get("title") or "").strip()
        if not title:
            raise UnisenderError("invalid_arg", 'Argument "title" is required')
        if any(existing == title for existing in account.lists.values()):
            raise UnisenderError("invalid_arg", f'List with title "{title}" already exists')
        list_id = self._next_list_id
        self._next_list_id += 1
        account.lists[list_id] = title
        return {"id": list_id}

    def _get_fields(self, account: KeyAccount, _params: Mapping[str, Any]) -> Any:
        return [
            {
                "id": user_field.id,
                "name": user_field.name,
                "type": user_field.type,
                "is_visible": 1,
                "view_pos": position,
            }
            for position, user_field in enumerate(account.fields.values(), 1)
        ]

    def _create_field(self, account: KeyAccount, params: Mapping[str, Any]) -> Any:
        name = str(params.get("name") or "").strip()
        kind = str(params.get("type") or "").strip()
        if not name:
            raise UnisenderError("invalid_arg", 'Argument "name" is required')
        if not _FIELD_NAME.fullmatch(name):
            raise UnisenderError(
                "invalid_arg",
                f'Invalid field name "{name}": Latin letters, digits, "_" and "-", '
                "starting with a letter",
            )
        if kind not in FIELD_TYPES:
            raise UnisenderError(
                "invalid_arg", f'Argument "type" must be one of {", ".join(sorted(FIELD_TYPES))}'
            )
        if name.lower() in account.fields:
            raise UnisenderError("invalid_arg", f'Field "{name}" already exists')
        return {"id": self._add_field(account, name, kind).id}

    def _add_field(self, account: KeyAccount, name: str, kind: str) -> UserField:
        user_field = UserField(self._next_field_id, name, kind)
        self._next_field_id += 1
        account.fields[name.lower()] = user_field
        return user_field

    def _import_contacts(self, account: KeyAccount, params: Mapping[str, Any]) -> Any:
        names = [str(name) for name in params.get("field_names") or []]
        rows = params.get("data") or []
        if not names or "email" not in [name.lower() for name in names]:
            raise UnisenderError("invalid_arg", 'Argument "field_names" must contain "email"')
        for name in names:
            if name.lower() not in _SYSTEM and name.lower() not in account.fields:
                # Assumed wording: the documentation names the columns allowed (Unisender's
                # own and "the names of the existing user fields"), not the error.
                raise UnisenderError("invalid_arg", f'Unknown field name "{name}" in field_names')
        if len(rows) > MAX_IMPORT_ROWS:
            raise UnisenderError(
                "invalid_arg",
                f"Too many contacts in one call: {len(rows)}, at most {MAX_IMPORT_ROWS}",
            )
        if self._import_failures:
            self._check_failures(names, rows)
        overwrite_lists = str(params.get("overwrite_lists") or "0") == "1"
        overwrite_tags = str(params.get("overwrite_tags") or "0") == "1"
        result: dict[str, Any] = {
            "total": len(rows),
            "inserted": 0,
            "updated": 0,
            "deleted": 0,
            "new_emails": 0,
            "invalid": 0,
            "log": [],
        }
        now = _timestamp()
        lowered = [name.lower() for name in names]
        # The columns stored as the subscriber's user fields, by the field's own name.
        extra = [
            (i, account.fields[lowered[i]].name)
            for i in range(len(names))
            if lowered[i] not in _SYSTEM
        ]
        for index, row in enumerate(rows):
            cells = [
                str(row[i]) if i < len(row) and row[i] is not None else ""
                for i in range(len(names))
            ]
            values = dict(zip(lowered, cells, strict=True))
            fields = {name: cells[i] for i, name in extra}
            outcome = self._import_row(
                account, values, fields, overwrite_lists, now, overwrite_tags=overwrite_tags
            )
            if isinstance(outcome, tuple):
                code, message = outcome
                result["log"].append({"index": index, "code": code, "message": message})
                # "How many of the addresses were not imported": every refused row.
                result["invalid"] += 1
                continue
            result[outcome] += 1
            if outcome == "inserted":
                result["new_emails"] += 1
            if self._warnings:
                warning = self._warnings.get(values.get("email", "").strip().lower())
                if warning is not None:
                    code, message = warning
                    result["log"].append({"index": index, "code": code, "message": message})
        return result

    def _check_failures(self, names: list[str], rows: Sequence[Any]) -> None:
        column = [name.lower() for name in names].index("email")
        for row in rows:
            if column < len(row) and row[column] is not None:
                failure = self._import_failures.get(str(row[column]).strip().lower())
                if failure is not None:
                    raise failure

    def _import_row(
        self,
        account: KeyAccount,
        values: dict[str, str],
        fields: dict[str, str],
        overwrite_lists: bool,
        now: str,
        *,
        overwrite_tags: bool = False,
    ) -> str | tuple[str, str]:
        """One row (`values` by lower-case column name, `fields` the subscriber's own):
        "inserted"/"updated"/"deleted", or a (code, message) log entry."""
        email = values.get("email", "").strip().lower()
        if not _EMAIL.match(email):
            return "invalid_email", f'Invalid e-mail address "{values.get("email", "")}"'
        rejection = self._rejections.get((account.key, email)) or self._rejections.get(
            (None, email)
        )
        if rejection is not None:
            return rejection
        if values.get("delete") == "1":
            return "deleted" if account.contacts.pop(email, None) is not None else "updated"
        status = values.get("email_status", "").strip()
        if status and status not in STATUSES:
            return "invalid_arg", f'Invalid email_status "{status}"'
        try:
            list_ids = _ids(values.get("email_list_ids", ""))
        except ValueError:
            return "invalid_arg", "email_list_ids must be list ids separated by commas"
        unknown = [list_id for list_id in list_ids if list_id not in account.lists]
        if unknown:
            return "invalid_arg", f"List {unknown[0]} not found"
        sub = account.contacts.get(email)
        outcome = "updated"
        if sub is None:
            sub = Subscriber(email, "new", now)
            account.contacts[email] = sub
            outcome = "inserted"
        if status:
            sub.status = status
        if overwrite_lists:
            sub.lists = {i: m for i, m in sub.lists.items() if i in list_ids}
        for list_id in list_ids:
            membership = sub.lists.get(list_id)
            if membership is None:
                # Unsubscribed stays unsubscribed: the list records it that way.
                initial = "unsubscribed" if sub.status == "unsubscribed" else "active"
                sub.lists[list_id] = Membership(initial, now)
            elif status in ("active", "unsubscribed"):
                membership.status = status
        sub.fields.update(fields)
        phone = values.get("phone", "").strip()
        if phone:
            sub.phone = phone
        if "tags" in values:
            sub.tags = _tags(sub.tags, values["tags"], overwrite=overwrite_tags)
        return outcome

    def _exclude(self, account: KeyAccount, params: Mapping[str, Any]) -> Any:
        if str(params.get("contact_type") or "") not in ("email", "phone"):
            raise UnisenderError("invalid_arg", 'Argument "contact_type" must be email or phone')
        contact = str(params.get("contact") or "").strip().lower()
        sub = account.contacts.get(contact)
        if sub is None:
            raise UnisenderError("unspecified", f'Contact "{contact}" not found')
        try:
            list_ids = _ids(str(params.get("list_ids") or ""))
        except ValueError:
            raise UnisenderError("invalid_arg", 'Argument "list_ids" is invalid') from None
        for list_id in list_ids or list(sub.lists):
            sub.lists.pop(list_id, None)
        return {}

    def _set_hook(self, account: KeyAccount, params: Mapping[str, Any]) -> Any:
        return self.hooks.set_hook(account.key, params)

    def _list_hooks(self, account: KeyAccount, _params: Mapping[str, Any]) -> Any:
        return self.hooks.list_hooks(account.key)

    def _remove_hook(self, account: KeyAccount, params: Mapping[str, Any]) -> Any:
        return self.hooks.remove_hook(account.key, params)

    def _get_contact(self, account: KeyAccount, params: Mapping[str, Any]) -> Any:
        email = str(params.get("email") or "").strip().lower()
        if not _EMAIL.match(email):
            raise UnisenderError("invalid_arg", 'Argument "email" is not a valid address')
        sub = account.contacts.get(email)
        if sub is None:
            raise UnisenderError("unspecified", f'Contact "{email}" not found')
        result: dict[str, Any] = {
            "email": {
                "email": sub.email,
                "added_at": sub.added_at,
                "status": sub.status,
                "availability": "available" if sub.status != "blocked" else "blocked",
                "last_send_datetime": None,
                "last_delivery_datetime": None,
                "last_read_datetime": None,
                "last_click_datetime": None,
                "rating": 0,
            }
        }
        if str(params.get("include_lists") or "") == "1":
            result["lists"] = [
                {"id": list_id, "status": m.status, "added_at": m.added_at}
                for list_id, m in sorted(sub.lists.items())
            ]
        if str(params.get("include_fields") or "") == "1":
            # PHP's json_encode writes an empty map as [].
            result["fields"] = dict(sub.fields) if sub.fields else []
        return result


_METHODS = {
    "getLists": UnisenderSimulator._get_lists,
    "createList": UnisenderSimulator._create_list,
    "getFields": UnisenderSimulator._get_fields,
    "createField": UnisenderSimulator._create_field,
    "importContacts": UnisenderSimulator._import_contacts,
    "exclude": UnisenderSimulator._exclude,
    "getContact": UnisenderSimulator._get_contact,
    "setHook": UnisenderSimulator._set_hook,
    "listHooks": UnisenderSimulator._list_hooks,
    "removeHook": UnisenderSimulator._remove_hook,
}


@lru_cache(maxsize=1024)
def _ids(value: str) -> tuple[int, ...]:
    """List ids from "1,2": the same few strings on every row of an import, parsed once."""
    return tuple(int(part) for part in value.split(",") if part.strip())


# Unisender's own importContacts columns, lower case; any other column must be a user field.
# Read from the simulator's own copy of Unisender's documentation (unisender_columns.json),
# not from amosync.unisender: the simulator must not share the client's belief.
_SYSTEM = frozenset(
    json.loads(
        resources.files("amosync.sandbox").joinpath("unisender_columns.json").read_text("utf-8")
    )["system_columns"]
)


def _tags(current: list[str], cell: str, *, overwrite: bool) -> list[str]:
    """The contact's tags after an import's `tags` cell (comma-separated): added to the
    ones it has, or in their place with `overwrite_tags=1`; at most 10, the first kept."""
    tags = [] if overwrite else list(current)
    seen = {tag.lower() for tag in tags}
    for tag in (part.strip() for part in cell.split(",")):
        if tag and tag.lower() not in seen and len(tags) < MAX_TAGS:
            tags.append(tag)
            seen.add(tag.lower())
    return tags


def _timestamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
