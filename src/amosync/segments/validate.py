"""The settings checked against what only the vendors know (SPEC §8), before they are stored.

The shape is pydantic's (422, `amosync.accounts.settings`); here come the 400s a person
fixes by picking something else: a list the Unisender key does not have (`unknown_list`),
an amoCRM field, pipeline or status that does not exist (`unknown_field`,
`unknown_status`), a Unisender field name Unisender would refuse (`invalid_field_name`) or
one that is taken (`reserved_field_name`, `duplicate_field_name`), two rules for one list
(`duplicate_list`) and a rule on the main list (`main_list_rule`).

Checks that need no vendor come first, and a vendor is asked only when the body needs it:
Unisender's `getLists` for `lists`, amoCRM's fields for `fields.custom`, its pipelines for
`lead_statuses`. A vendor that fails answers as every route does when one does (the app's
`UpstreamError` handler: 503 `upstream_unavailable`, 502 `upstream_error`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from amosync.accounts.settings import FIELD_NAME, AccountSettings
from amosync.accounts.tokens import amocrm_client
from amosync.accounts.unisender import account_lists
from amosync.db.models import Account
from amosync.errors import BadRequest
from amosync.runtime.services import Services
from amosync.unisender.client import SYSTEM_COLUMNS

# The columns amosync fills itself (SPEC §4, §8). A custom pair naming one of them, or any
# other of Unisender's system columns (`SYSTEM_COLUMNS`, as its importContacts documentation
# lists them), would overwrite the address, the name, the lists, the phone or the tags, or
# worse set a status (`email_status`: SPEC §4 never sends it) or delete the contact
# (`delete`). Compared without regard to case.
OURS = ("email", "Name", "phone", "tags", "email_list_ids")


def check_names(settings: AccountSettings) -> None:
    """The Unisender field names of `fields.custom`: valid, not ours, each once."""
    seen: set[str] = set()
    for index, pair in enumerate(settings.fields.custom):
        name = pair.unisender_field
        where = f"fields.custom[{index}].unisender_field"
        if not FIELD_NAME.fullmatch(name):
            raise BadRequest(
                f"{where}: {name!r} is not a Unisender field name: a Latin letter first, "
                "then Latin letters, digits, _ or -",
                code="invalid_field_name",
            )
        if name.lower() in SYSTEM_COLUMNS:
            raise BadRequest(
                f"{where}: {name!r} is a column amosync fills itself ({', '.join(OURS)}) "
                "or one of Unisender's system columns; choose another name",
                code="reserved_field_name",
            )
        if name.casefold() in seen:
            raise BadRequest(
                f"{where}: two amoCRM fields would go to the Unisender field {name!r}; "
                "give each its own",
                code="duplicate_field_name",
            )
        seen.add(name.casefold())


def check_rules(settings: AccountSettings, main_list: int | None) -> None:
    """One rule per list, and none on the account's main list, which keeps every contact
    with an address (a rule there would take contacts out of it)."""
    seen: set[int] = set()
    for index, rule in enumerate(settings.lists):
        if main_list is not None and rule.list_id == main_list:
            raise BadRequest(
                f"lists[{index}]: list {rule.list_id} is the account's main list, which "
                "holds every contact; choose another list for the rule",
                code="main_list_rule",
            )
        if rule.list_id in seen:
            raise BadRequest(
                f"lists[{index}]: list {rule.list_id} has a rule already; put both "
                "conditions in one rule",
                code="duplicate_list",
            )
        seen.add(rule.list_id)


async def check(
    services: Services, account: Account, settings: AccountSettings, parts: Collection[str]
) -> None:
    """Every check of `parts` (the top-level keys the caller sent), vendors last; the first
    failure is a 400 with its code (see the module doc)."""
    if "fields" in parts:
        check_names(settings)
    if "lists" in parts:
        check_rules(settings, account.list_id)
        if settings.lists:
            await _check_lists(services, account, settings)
        if settings.wants_leads:
            await _check_statuses(services, account, settings)
    if "fields" in parts and settings.fields.custom:
        await _check_fields(services, account, settings)


async def _check_lists(services: Services, account: Account, settings: AccountSettings) -> None:
    known = {item.id for item in await account_lists(services, account)}
    _all_known(
        [rule.list_id for rule in settings.lists],
        known,
        where="lists",
        says=": Unisender list {} does not exist for this key",
        code="unknown_list",
    )


async def _check_statuses(services: Services, account: Account, settings: AccountSettings) -> None:
    client = await amocrm_client(services, account.id)
    pipelines = {p.id: {s.id for s in p.statuses} for p in await client.pipelines()}
    for index, rule in enumerate(settings.lists):
        for at, wanted in enumerate(rule.lead_statuses):
            where = f"lists[{index}].lead_statuses[{at}]"
            statuses = pipelines.get(wanted.pipeline_id)
            if statuses is None:
                raise BadRequest(
                    f"{where}: amoCRM has no pipeline {wanted.pipeline_id}",
                    code="unknown_status",
                )
            if wanted.status_id not in statuses:
                raise BadRequest(
                    f"{where}: pipeline {wanted.pipeline_id} has no status {wanted.status_id}",
                    code="unknown_status",
                )


async def _check_fields(services: Services, account: Account, settings: AccountSettings) -> None:
    client = await amocrm_client(services, account.id)
    known = {field.id for field in await client.contact_fields()}
    _all_known(
        [pair.amocrm_field_id for pair in settings.fields.custom],
        known,
        where="fields.custom",
        says=".amocrm_field_id: amoCRM contacts have no field {}",
        code="unknown_field",
    )


def _all_known(
    ids: Sequence[int], known: Collection[int], *, where: str, says: str, code: str
) -> None:
    """400 `code` for the first of `ids` (the items of `where`, in order) the vendor does
    not know; `says` is the message after the item's place, `{}` the id."""
    for index, item in enumerate(ids):
        if item not in known:
            raise BadRequest(f"{where}[{index}]{says.format(item)}", code=code)
