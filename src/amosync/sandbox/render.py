"""amoCRM's wire shapes: contacts and deals as API v4 JSON and as webhook form bodies.

Both follow the real payloads of tests/fixtures/amocrm (SOURCES.md names their sources);
tests/sandbox/test_shapes.py checks that what is rendered here looks like them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from amosync.sandbox.contacts import ContactData, company_name
from amosync.sandbox.leads import LeadData

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
    with_leads: bool = False,
) -> dict[str, Any]:
    """One contact as `GET /api/v4/contacts` lists it (`with_leads`: `?with=leads`)."""
    embedded: dict[str, Any] = {
        "tags": [dict(tag) for tag in data.tags] if data.tags else [],
        "companies": [
            {"id": company, "_links": {"self": {"href": f"{base_url}/api/v4/companies/{company}"}}}
            for company in data.companies
        ]
        if data.companies
        else [],
    }
    if with_leads:
        embedded["leads"] = [
            {"id": lead, "_links": {"self": {"href": f"{base_url}/api/v4/leads/{lead}"}}}
            for lead in data.leads
        ]
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
        "_embedded": embedded,
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
    `last_modified`, `company_name` and `linked_company_id` for a contact of a company,
    `custom_fields[i]` with `id`, `name`, `values[j][value]`, `values[j][enum]` and, for
    system fields only, `code` after the values; then `tags[k][id]`/`[name]` and one
    `linked_leads_id[<lead id>][ID]` per linked deal. A date field's value is a bare number
    (`values[j]=1700000000`). delete carries the id and type.

    No real webhook with an object value (file, legal entity) was found: it is rendered as
    PHP's http_build_query would (`values[j][value][file_name]=...`), an assumption.
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
    if data.companies:
        company = data.companies[0]
        pairs.append((f"{prefix}[company_name]", company_name(company)))
        pairs.append((f"{prefix}[linked_company_id]", str(company)))
    for index, field in enumerate(data.custom_fields or ()):
        field_prefix = f"{prefix}[custom_fields][{index}]"
        pairs.append((f"{field_prefix}[id]", str(field.get("field_id"))))
        pairs.append((f"{field_prefix}[name]", str(field.get("field_name") or "")))
        bare = field.get("field_type") in _BARE_TYPES
        for value_index, value in enumerate(field.get("values") or ()):
            value_prefix = f"{field_prefix}[values][{value_index}]"
            raw = value.get("value")
            if bare:
                pairs.append((value_prefix, _text(raw)))
            elif isinstance(raw, dict):
                pairs += [(f"{value_prefix}[value][{k}]", _text(v)) for k, v in raw.items()]
            else:
                pairs.append((f"{value_prefix}[value]", _text(raw)))
            if value.get("enum_id") is not None:
                pairs.append((f"{value_prefix}[enum]", str(value["enum_id"])))
        if field.get("field_code"):
            pairs.append((f"{field_prefix}[code]", str(field["field_code"])))
    for index, tag in enumerate(data.tags):
        pairs.append((f"{prefix}[tags][{index}][id]", str(tag.get("id"))))
        pairs.append((f"{prefix}[tags][{index}][name]", str(tag.get("name"))))
    pairs += [(f"{prefix}[linked_leads_id][{lead}][ID]", str(lead)) for lead in data.leads]
    pairs += [
        (f"{prefix}[created_at]", str(created_at)),
        (f"{prefix}[updated_at]", str(updated_at)),
        (f"{prefix}[type]", "contact"),
    ]
    return pairs


def lead_json(
    lead: LeadData,
    *,
    account_id: int,
    base_url: str,
    contacts: Sequence[int] | None = None,
) -> dict[str, Any]:
    """One deal as `GET /api/v4/leads` lists it; `contacts` (with `?with=contacts`): the
    linked contacts to embed, the first one the main contact."""
    embedded: dict[str, Any] = {"tags": [], "companies": []}
    if contacts is not None:
        embedded["contacts"] = [
            {
                "id": contact_id,
                "is_main": n == 0,
                "_links": {"self": {"href": f"{base_url}/api/v4/contacts/{contact_id}"}},
            }
            for n, contact_id in enumerate(contacts)
        ]
    return {
        "id": lead.id,
        "name": lead.name,
        "price": lead.price,
        "responsible_user_id": lead.responsible_user_id,
        "group_id": 0,
        "status_id": lead.status_id,
        "pipeline_id": lead.pipeline_id,
        "loss_reason_id": None,
        "created_by": lead.responsible_user_id,
        "updated_by": lead.responsible_user_id,
        "created_at": lead.created_at,
        "updated_at": lead.updated_at,
        "closed_at": lead.closed_at,
        "closest_task_at": None,
        "is_deleted": False,
        "custom_fields_values": None,
        "score": None,
        "account_id": account_id,
        "labor_cost": None,
        "_links": {"self": {"href": f"{base_url}/api/v4/leads/{lead.id}"}},
        "_embedded": embedded,
    }


def lead_webhook_pairs(
    action: str,
    lead: LeadData,
    *,
    account_id: int,
    old_status_id: int | None = None,
    old_pipeline_id: int | None = None,
) -> list[tuple[str, str]]:
    """The `leads[{action}][0][...]` fields of one webhook, in amoCRM's order.

    add/update/status/restore carry the deal in the legacy shape of the real bodies in
    tests/fixtures/amocrm/webhooks (`date_create`, `last_modified`, `pipeline_id`; a status
    change adds `old_status_id` after the fields). `old_pipeline_id` on a move to another
    pipeline, `created_at`/`updated_at` (as contacts have them now) and the delete entry's
    `status_id`/`pipeline_id` are not in any real body found: assumptions.
    """
    prefix = f"leads[{action}][0]"
    if action == "delete":
        return [
            (f"{prefix}[id]", str(lead.id)),
            (f"{prefix}[status_id]", str(lead.status_id)),
            (f"{prefix}[pipeline_id]", str(lead.pipeline_id)),
        ]
    pairs = [
        (f"{prefix}[id]", str(lead.id)),
        (f"{prefix}[name]", lead.name),
        (f"{prefix}[status_id]", str(lead.status_id)),
        (f"{prefix}[price]", str(lead.price)),
        (f"{prefix}[responsible_user_id]", str(lead.responsible_user_id)),
        (f"{prefix}[last_modified]", str(lead.updated_at)),
        (f"{prefix}[modified_user_id]", str(SYSTEM_USER_ID)),
        (f"{prefix}[created_user_id]", str(lead.responsible_user_id)),
        (f"{prefix}[date_create]", str(lead.created_at)),
        (f"{prefix}[pipeline_id]", str(lead.pipeline_id)),
        (f"{prefix}[account_id]", str(account_id)),
    ]
    if old_status_id is not None:
        pairs.append((f"{prefix}[old_status_id]", str(old_status_id)))
    if old_pipeline_id is not None and old_pipeline_id != lead.pipeline_id:
        pairs.append((f"{prefix}[old_pipeline_id]", str(old_pipeline_id)))
    pairs += [
        (f"{prefix}[created_at]", str(lead.created_at)),
        (f"{prefix}[updated_at]", str(lead.updated_at)),
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


# Field types whose webhook value is a bare number, not `[value]` (real: a lead's date field).
_BARE_TYPES = frozenset({"date", "birthday", "date_time"})


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
