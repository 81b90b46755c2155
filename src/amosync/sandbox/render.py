"""amoCRM's wire shapes: contacts as API v4 JSON, and contacts as webhook form bodies."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from amosync.sandbox.contacts import ContactData

# What amoCRM sends as the acting user in webhooks for changes made by the API/robots.
SYSTEM_USER_ID = 0


def contact_json(
    contact_id: int,
    data: ContactData,
    created_at: int,
    updated_at: int,
    *,
    account_id: int,
    base_url: str,
) -> dict[str, Any]:
    """One contact as `GET /api/v4/contacts` lists it."""
    return {
        "id": contact_id,
        "name": data.name,
        "first_name": data.first_name,
        "last_name": data.last_name,
        "responsible_user_id": data.responsible_user_id,
        "group_id": 0,
        "created_by": data.responsible_user_id,
        "updated_by": data.responsible_user_id,
        "created_at": created_at,
        "updated_at": updated_at,
        "closest_task_at": None,
        "is_deleted": False,
        "is_unsorted": False,
        "custom_fields_values": data.custom_fields,
        "account_id": account_id,
        "_links": {"self": {"href": f"{base_url}/api/v4/contacts/{contact_id}"}},
        "_embedded": {"tags": [dict(tag) for tag in data.tags], "companies": []},
    }


def webhook_pairs(
    action: str,
    contact_id: int,
    data: ContactData | None,
    created_at: int,
    updated_at: int,
    *,
    account_id: int,
) -> list[tuple[str, str]]:
    """The `contacts[{action}][0][...]` fields of one webhook, in amoCRM's order.

    add/update/restore carry the whole contact in the legacy (API v2) shape: `date_create`,
    `last_modified`, `custom_fields[i]` with `id`, `name`, `values[j][value]`,
    `values[j][enum]` and, for system fields only, `code`. delete carries the id and type.
    """
    prefix = f"contacts[{action}][0]"
    if action == "delete" or data is None:
        return [(f"{prefix}[id]", str(contact_id)), (f"{prefix}[type]", "contact")]
    pairs = [
        (f"{prefix}[id]", str(contact_id)),
        (f"{prefix}[name]", data.name),
        (f"{prefix}[responsible_user_id]", str(data.responsible_user_id)),
        (f"{prefix}[date_create]", str(created_at)),
        (f"{prefix}[last_modified]", str(updated_at)),
        (f"{prefix}[created_user_id]", str(data.responsible_user_id)),
        (f"{prefix}[modified_user_id]", str(SYSTEM_USER_ID)),
        (f"{prefix}[account_id]", str(account_id)),
    ]
    for index, field in enumerate(data.custom_fields or ()):
        field_prefix = f"{prefix}[custom_fields][{index}]"
        pairs.append((f"{field_prefix}[id]", str(field.get("field_id"))))
        pairs.append((f"{field_prefix}[name]", str(field.get("field_name") or "")))
        for value_index, value in enumerate(field.get("values") or ()):
            value_prefix = f"{field_prefix}[values][{value_index}]"
            pairs.append((f"{value_prefix}[value]", _text(value.get("value"))))
            if value.get("enum_id") is not None:
                pairs.append((f"{value_prefix}[enum]", str(value["enum_id"])))
        if field.get("field_code"):
            pairs.append((f"{field_prefix}[code]", str(field["field_code"])))
    pairs += [
        (f"{prefix}[created_at]", str(created_at)),
        (f"{prefix}[updated_at]", str(updated_at)),
        (f"{prefix}[type]", "contact"),
    ]
    return pairs


def account_pairs(account_id: int, subdomain: str) -> list[tuple[str, str]]:
    return [
        ("account[subdomain]", subdomain),
        ("account[id]", str(account_id)),
        ("account[_links][self]", f"https://{subdomain}.amocrm.ru"),
    ]


def form_body(pairs: list[tuple[str, str]]) -> bytes:
    """`application/x-www-form-urlencoded`, brackets percent-encoded as amoCRM sends them."""
    return urlencode(pairs).encode()


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
