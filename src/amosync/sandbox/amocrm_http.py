"""amoCRM's HTTP surface: `/oauth2/access_token` and the `/api/v4/...` routes amosync uses.

Every request first waits `latency`, then may hit an injected fault; API requests are then
authenticated by their bearer token (which also names the account, since every account
shares the sandbox's base URL) and rate-limited per account; so are token requests, whose
code or refresh token names the account. Errors are `application/problem+json` as amoCRM
sends them; lists are `application/hal+json`, and an empty list page is `204 No Content`
with no body at all.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from amosync.sandbox.amocrm import WEBHOOK_EVENTS, Account, AmoCRMSimulator
from amosync.sandbox.calls import Call
from amosync.sandbox.render import contact_json, lead_json

MAX_LIMIT = 250
DEFAULT_LIMIT = 50

Handler = Callable[[AmoCRMSimulator, Account, Request], Awaitable[Response]]


def routes(sim: AmoCRMSimulator) -> list[Route]:
    def api(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await _api_call(sim, request, handler)

        return endpoint

    async def token(request: Request) -> Response:
        return await _oauth(sim, request)

    return [
        Route("/oauth2/access_token", token, methods=["POST"]),
        Route("/api/v4/account", api(_account), methods=["GET"]),
        Route("/api/v4/contacts", api(_contacts), methods=["GET"]),
        Route("/api/v4/contacts", api(_contacts_edit), methods=["PATCH"]),
        Route("/api/v4/contacts/notes", api(_notes_add), methods=["POST"]),
        Route("/api/v4/contacts/notes", api(_notes_list), methods=["GET"]),
        Route("/api/v4/contacts/{contact_id:int}/notes", api(_notes_list), methods=["GET"]),
        Route("/api/v4/contacts/custom_fields", api(_contact_fields), methods=["GET"]),
        Route("/api/v4/contacts/tags", api(_contact_tags), methods=["GET"]),
        Route("/api/v4/leads/pipelines", api(_pipelines), methods=["GET"]),
        Route("/api/v4/leads", api(_leads), methods=["GET"]),
        Route("/api/v4/leads/{lead_id:int}", api(_lead), methods=["GET"]),
        Route("/api/v4/contacts/{contact_id:int}", api(_contact), methods=["GET"]),
        Route("/api/v4/webhooks", api(_webhooks_list), methods=["GET"]),
        Route("/api/v4/webhooks", api(_webhooks_add), methods=["POST"]),
        Route("/api/v4/webhooks", api(_webhooks_delete), methods=["DELETE"]),
    ]


# --- plumbing ---------------------------------------------------------------------------


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    body = {**extra, "title": title, "type": f"https://httpstatus.es/{status}", "status": status}
    body["detail"] = detail
    return Response(orjson.dumps(body), status, media_type="application/problem+json")


def _hal(body: Any) -> Response:
    return Response(orjson.dumps(body), 200, media_type="application/hal+json")


def _invalid(path: str, detail: str) -> Response:
    errors = [
        {"request_id": "0", "errors": [{"code": "InvalidValue", "path": path, "detail": detail}]}
    ]
    return problem(400, "Bad Request", "Request validation failed", **{"validation-errors": errors})


def _paging(query: QueryParams, not_integers: str) -> tuple[int, int] | Response:
    """A list request's `page` and `limit` (<= 250, 50 by default), or amoCRM's 400 for them."""
    try:
        limit = int(query.get("limit", DEFAULT_LIMIT))
        page = int(query.get("page", 1))
    except ValueError:
        return _invalid("limit", not_integers)
    if not 1 <= limit <= MAX_LIMIT:
        return _invalid("limit", f"limit must be between 1 and {MAX_LIMIT}")
    if page < 1:
        return _invalid("page", "page must be 1 or more")
    return page, limit


async def _api_call(sim: AmoCRMSimulator, request: Request, handler: Handler) -> Response:
    if sim.latency:
        await asyncio.sleep(sim.latency)
    path = request.url.path
    account_id: int | None = None
    fault = sim.faults.pick(path)
    if fault is not None and not fault.applied:
        response = problem(fault.status, "Injected fault", "The sandbox was told to fail")
        if fault.status == 429:
            # An injected 429 counts towards the block like a real one.
            account_id = sim.token_account(_bearer(request))
            if account_id is not None and account_id in sim.accounts:
                sim.note_rate_limited(sim.accounts[account_id])
    else:
        account_id = sim.token_account(_bearer(request))
        account = sim.accounts.get(account_id) if account_id is not None else None
        if account is None:
            response = problem(401, "Unauthorized", "Неверный логин или пароль")
        elif sim.is_blocked(account):
            # amoCRM's documentation says requests are restricted after repeated excess; the
            # body of that answer is not documented, so this is its usual problem+json.
            account.arrivals.record()
            account.blocked += 1
            response = problem(403, "Forbidden", "Access denied")
        elif not sim.admit(account):
            response = _too_many()
        else:
            response = await handler(sim, account, request)
            if fault is not None:
                response = problem(
                    fault.status, "Injected fault", "The sandbox did it, then was told to fail"
                )
    sim.calls.record(
        Call("amocrm", request.method, path, response.status_code, time.time(), account_id)
    )
    return response


def _too_many() -> Response:
    return problem(429, "Too Many Requests", "Превышен лимит запросов к API")


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def _oauth(sim: AmoCRMSimulator, request: Request) -> Response:
    if sim.latency:
        await asyncio.sleep(sim.latency)
    path = request.url.path
    fault = sim.faults.pick(path)
    account_id: int | None = None
    if fault is not None:
        response = problem(fault.status, "Injected fault", "The sandbox was told to fail")
    else:
        body = await _body(request)
        account_id = sim.oauth_account(body)
        account = sim.accounts.get(account_id) if account_id is not None else None
        if account is not None and not sim.admit(account):
            response = _too_many()  # before the grant is looked at, so it is not spent
        else:
            answer = sim.oauth(body)
            media = "application/json" if answer.status == 200 else "application/problem+json"
            response = Response(orjson.dumps(answer.body), answer.status, media_type=media)
    sim.calls.record(Call("amocrm", "POST", path, response.status_code, time.time(), account_id))
    return response


async def _body(request: Request) -> dict[str, Any]:
    """A JSON or form body (amoCRM's token endpoint takes both); anything else is empty."""
    raw = await request.body()
    if "json" in request.headers.get("content-type", ""):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}
    return dict(parse_qsl(raw.decode("utf-8", "replace")))


# --- handlers ---------------------------------------------------------------------------


async def _account(_sim: AmoCRMSimulator, account: Account, request: Request) -> Response:
    return _hal(account.as_json(_base_url(request)))


async def _contacts(_sim: AmoCRMSimulator, account: Account, request: Request) -> Response:
    query = request.query_params
    not_integers = "limit, page and filter[updated_at] must be integers"
    try:
        updated_from = _optional_int(query.get("filter[updated_at][from]"))
        updated_to = _optional_int(query.get("filter[updated_at][to]"))
    except ValueError:
        return _invalid("limit", not_integers)
    paging = _paging(query, not_integers)
    if isinstance(paging, Response):
        return paging
    page, limit = paging
    order, descending = "id", False
    for field in ("id", "updated_at"):
        direction = query.get(f"order[{field}]")
        if direction is not None:
            if direction not in ("asc", "desc"):
                return _invalid(f"order[{field}]", "order must be asc or desc")
            order, descending = field, direction == "desc"
    store = account.contacts
    positions, more = store.page(
        (page - 1) * limit,
        limit,
        order=order,
        descending=descending,
        updated_from=updated_from,
        updated_to=updated_to,
    )
    account.pages.append(page)
    if not positions:
        return Response(status_code=204)  # amoCRM: an empty page has no body at all
    base = _base_url(request)
    with_leads = _with_leads(request)
    contacts = [
        contact_json(
            store.ids[p],
            store.data(p),
            store.created[p],
            store.updated[p],
            account_id=account.id,
            base_url=base,
            with_leads=with_leads,
        )
        for p in positions
    ]
    links = {"self": {"href": _page_url(base, request, page)}}
    if more:
        links["next"] = {"href": _page_url(base, request, page + 1)}
    if page > 1:
        links["prev"] = {"href": _page_url(base, request, page - 1)}
    return _hal({"_page": page, "_links": links, "_embedded": {"contacts": contacts}})


async def _contact(_sim: AmoCRMSimulator, account: Account, request: Request) -> Response:
    store = account.contacts
    position = store.position(request.path_params["contact_id"])
    if position is None or store.is_deleted(position):
        return Response(status_code=204)  # amoCRM answers an unknown id with 204 too
    return _hal(
        contact_json(
            store.ids[position],
            store.data(position),
            store.created[position],
            store.updated[position],
            account_id=account.id,
            base_url=_base_url(request),
            with_leads=_with_leads(request),
        )
    )


def _with_leads(request: Request) -> bool:
    """`?with=leads` (a comma-separated list): amoCRM adds `_embedded.leads` only then."""
    return "leads" in request.query_params.get("with", "").split(",")


MAX_BATCH = 250  # amoCRM takes at most 250 entities in one add or edit request


async def _json_list(request: Request) -> list[Any] | None:
    try:
        value = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, list) else None


async def _contacts_edit(sim: AmoCRMSimulator, account: Account, request: Request) -> Response:
    """`PATCH /api/v4/contacts`: a JSON array of `{"id", ...}`; this simulator applies
    `tags_to_add` and `tags_to_delete` (`[{"name"}]` or `[{"id"}]`) and nothing else."""
    items = await _json_list(request)
    if not items or len(items) > MAX_BATCH:
        return _invalid("", f"the body must be a JSON array of 1 to {MAX_BATCH} contacts")
    edits = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("id"), int):
            return _invalid(f"{index}.id", "This value should not be blank.")
        refs = {}
        for name in ("tags_to_add", "tags_to_delete"):
            value = item.get(name, [])
            if not isinstance(value, list) or not all(
                isinstance(ref, dict)
                and (isinstance(ref.get("name"), str) or isinstance(ref.get("id"), int))
                for ref in value
            ):
                return _invalid(f"{index}.{name}", "tags must be objects with a name or an id")
            refs[name] = value
        position = account.contacts.position(item["id"])
        if position is None or account.contacts.is_deleted(position):
            return _invalid(f"{index}.id", "Entity not found")
        edits.append((item["id"], refs, str(item.get("request_id", index))))
    base = _base_url(request)
    contacts = []
    for contact_id, refs, request_id in edits:
        try:
            edited = sim.edit_tags(
                account.id, contact_id, add=refs["tags_to_add"], delete=refs["tags_to_delete"]
            )
        except (KeyError, ValueError) as exc:
            return _invalid("tags", str(exc))
        contacts.append(
            {
                "id": contact_id,
                "name": edited["name"],
                "updated_at": edited["updated_at"],
                "request_id": request_id,
                "_links": {"self": {"href": f"{base}/api/v4/contacts/{contact_id}"}},
            }
        )
    return _hal(
        {
            "_links": {"self": {"href": f"{base}/api/v4/contacts"}},
            "_embedded": {"contacts": contacts},
        }
    )


async def _contact_fields(_sim: AmoCRMSimulator, account: Account, request: Request) -> Response:
    base = _base_url(request)
    fields = [field.as_json(account.id, base) for field in account.contact_fields]
    return _listing(request, "custom_fields", fields)


async def _contact_tags(_sim: AmoCRMSimulator, account: Account, request: Request) -> Response:
    wanted = request.query_params.get("filter[name]")
    tags = sorted(account.tags.values(), key=lambda tag: int(tag["id"]))
    if wanted is not None:  # amoCRM: the exact name (one only)
        tags = [tag for tag in tags if str(tag["name"]).lower() == wanted.strip().lower()]
    return _listing(request, "tags", [dict(tag) for tag in tags])


async def _pipelines(_sim: AmoCRMSimulator, account: Account, request: Request) -> Response:
    base = _base_url(request)
    pipelines = [pipeline.as_json(account.id, base) for pipeline in account.pipelines]
    return _hal(
        {
            "_total_items": len(pipelines),
            "_links": {"self": {"href": f"{base}/api/v4/leads/pipelines"}},
            "_embedded": {"pipelines": pipelines},
        }
    )


_STATUS_FILTER = re.compile(r"filter\[statuses\]\[(\d+)\]\[(pipeline_id|status_id)\]")


async def _leads(sim: AmoCRMSimulator, account: Account, request: Request) -> Response:
    """`GET /api/v4/leads`: `filter[statuses][i][pipeline_id]`/`[status_id]` (a pair, or
    either alone), `filter[pipeline_id]`, `with=contacts`, `page`, `limit` <= 250; in id order,
    204 past the end."""
    query = request.query_params
    try:
        wanted = _lead_filter(query.multi_items())
    except ValueError as exc:
        return _invalid("filter", str(exc))
    paging = _paging(query, "limit and page must be integers")
    if isinstance(paging, Response):
        return paging
    page, limit = paging
    ids = account.leads.select(wanted)
    chosen = ids[(page - 1) * limit : page * limit]
    account.leads.pages.append(page)
    if not chosen:
        return Response(status_code=204)
    base = _base_url(request)
    with_contacts = _with(request, "contacts")
    leads = []
    for lead_id in chosen:
        lead = account.leads.get(lead_id)
        if lead is None:  # cannot happen: the selection holds live deals only
            continue
        contacts = sim.live_contacts(account, lead.contacts) if with_contacts else None
        leads.append(lead_json(lead, account_id=account.id, base_url=base, contacts=contacts))
    links = {"self": {"href": _page_url(base, request, page)}}
    if page * limit < len(ids):
        links["next"] = {"href": _page_url(base, request, page + 1)}
    if page > 1:
        links["first"] = {"href": _page_url(base, request, 1)}
        links["prev"] = {"href": _page_url(base, request, page - 1)}
    return _hal({"_page": page, "_links": links, "_embedded": {"leads": leads}})


def _lead_filter(items: list[tuple[str, str]]) -> list[tuple[int | None, int | None]] | None:
    by_index: dict[str, dict[str, int]] = {}
    wanted: list[tuple[int | None, int | None]] = []
    for key, value in items:
        match = _STATUS_FILTER.fullmatch(key)
        if match is not None:
            by_index.setdefault(match[1], {})[match[2]] = _filter_id(key, value)
        elif key in ("filter[pipeline_id]", "filter[pipeline_id][]") or key.startswith(
            "filter[pipeline_id]["
        ):
            wanted.append((_filter_id(key, value), None))
    wanted += [(pair.get("pipeline_id"), pair.get("status_id")) for pair in by_index.values()]
    return wanted or None


def _filter_id(key: str, value: str) -> int:
    if not value.isdigit():
        raise ValueError(f"{key} must be an id")
    return int(value)


async def _lead(sim: AmoCRMSimulator, account: Account, request: Request) -> Response:
    lead = account.leads.get(request.path_params["lead_id"])
    if lead is None:
        return Response(status_code=204)  # amoCRM: "no deal with this id", deleted ones too
    contacts = sim.live_contacts(account, lead.contacts) if _with(request, "contacts") else None
    return _hal(
        lead_json(lead, account_id=account.id, base_url=_base_url(request), contacts=contacts)
    )


def _with(request: Request, what: str) -> bool:
    return what in request.query_params.get("with", "").split(",")


def _listing(request: Request, key: str, items: list[dict[str, Any]]) -> Response:
    """One page of a catalog (`page`, `limit` <= 250, 50 by default), HAL-linked; 204 past
    the end, as amoCRM answers."""
    paging = _paging(request.query_params, "limit and page must be integers")
    if isinstance(paging, Response):
        return paging
    page, limit = paging
    chosen = items[(page - 1) * limit : page * limit]
    if not chosen:
        return Response(status_code=204)
    base = _base_url(request)
    links = {"self": {"href": _page_url(base, request, page)}}
    if page * limit < len(items):
        links["next"] = {"href": _page_url(base, request, page + 1)}
    if page > 1:
        links["prev"] = {"href": _page_url(base, request, page - 1)}
    return _hal(
        {
            "_total_items": len(items),
            "_page": page,
            "_page_count": -(-len(items) // limit),
            "_links": links,
            "_embedded": {key: chosen},
        }
    )


NOTE_TYPES = frozenset({"common", "call_in", "call_out", "service_message", "sms_in", "sms_out"})


def _filter_values(request: Request, name: str) -> list[str] | None:
    """A list filter as PHP's http_build_query writes it (`name[0]=1&name[1]=2`, the form
    amoCRM's own examples show), as `name[]=1`, or as one value (`name=1`; commas split);
    None when absent."""
    values = []
    for key, value in request.query_params.multi_items():
        suffix = key[len(name) :] if key.startswith(name) else None
        if (
            suffix == ""
            or suffix == "[]"
            or (
                suffix
                and suffix.startswith("[")
                and suffix.endswith("]")
                and suffix[1:-1].isdigit()
            )
        ):
            values += [part.strip() for part in value.split(",") if part.strip()]
    return values if values or name in request.query_params else None


async def _notes_list(sim: AmoCRMSimulator, account: Account, request: Request) -> Response:
    """`GET /api/v4/contacts/notes` and `GET /api/v4/contacts/{id}/notes` ("Events and
    notes"): `filter[entity_id]`, `filter[id]`, `filter[note_type]`,
    `filter[updated_at]` (a timestamp: changed at or after it; or `[from]`/`[to]`),
    `order[id]`/`order[updated_at]`, paged like the other lists, 204 when nothing matches.

    The documentation leaves open whether a bound is inclusive and what a contact without
    notes answers; the sandbox includes both bounds and answers 204."""
    query = request.query_params
    try:
        entity_ids = _filter_values(request, "filter[entity_id]")
        note_ids = _filter_values(request, "filter[id]")
        wanted = {int(i) for i in entity_ids} if entity_ids is not None else None
        ids = {int(i) for i in note_ids} if note_ids is not None else None
        after = _optional_int(query.get("filter[updated_at]"))
        since = _optional_int(query.get("filter[updated_at][from]"))
        until = _optional_int(query.get("filter[updated_at][to]"))
    except ValueError:
        return _invalid("filter", "filter values must be integers")
    if "contact_id" in request.path_params:
        wanted = {int(request.path_params["contact_id"])}
    types = _filter_values(request, "filter[note_type]")
    since = max(v for v in (after, since, 0) if v is not None)
    chosen = [
        note
        for note in sim.notes(account.id)
        if (wanted is None or note["entity_id"] in wanted)
        and (ids is None or note["id"] in ids)
        and (types is None or note["note_type"] in types)
        and note["updated_at"] >= since
        and (until is None or note["updated_at"] <= until)
    ]
    for field in ("updated_at", "id"):
        direction = query.get(f"order[{field}]")
        if direction in ("asc", "desc"):
            chosen.sort(key=lambda note: note[field], reverse=direction == "desc")
    base = _base_url(request)
    for note in chosen:
        note["_links"] = {
            "self": {"href": f"{base}/api/v4/contacts/{note['entity_id']}/notes/{note['id']}"}
        }
    return _listing(request, "notes", chosen)


async def _notes_add(sim: AmoCRMSimulator, account: Account, request: Request) -> Response:
    """`POST /api/v4/contacts/notes`: `[{"entity_id", "note_type", "params": {"text"}}]`."""
    items = await _json_list(request)
    if not items or len(items) > MAX_BATCH:
        return _invalid("", f"the body must be a JSON array of 1 to {MAX_BATCH} notes")
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("entity_id"), int):
            return _invalid(f"{index}.entity_id", "This value should not be blank.")
        if item.get("note_type") not in NOTE_TYPES:
            return _invalid(f"{index}.note_type", "The value you selected is not a valid choice.")
        params = item.get("params")
        if item["note_type"] == "common" and (
            not isinstance(params, dict) or not isinstance(params.get("text"), str)
        ):
            return _invalid(f"{index}.params.text", "This value should not be blank.")
        position = account.contacts.position(item["entity_id"])
        if position is None or account.contacts.is_deleted(position):
            return _invalid(f"{index}.entity_id", "Entity not found")
    base = _base_url(request)
    notes = []
    for index, item in enumerate(items):
        note = sim.add_note(
            account.id, item["entity_id"], item["note_type"], item.get("params") or {}
        )
        notes.append(
            {
                "id": note["id"],
                "entity_id": note["entity_id"],
                "request_id": str(item.get("request_id", index)),
                "_links": {
                    "self": {
                        "href": f"{base}/api/v4/contacts/{note['entity_id']}/notes/{note['id']}"
                    }
                },
            }
        )
    return _hal(
        {
            "_links": {"self": {"href": f"{base}/api/v4/contacts/notes"}},
            "_embedded": {"notes": notes},
        }
    )


async def _webhooks_list(sim: AmoCRMSimulator, account: Account, request: Request) -> Response:
    wanted = request.query_params.get("filter[destination]")
    hooks = [
        hook for hook in sim.webhooks(account.id) if wanted is None or hook["destination"] == wanted
    ]
    return _hal({"_total_items": len(hooks), "_embedded": {"webhooks": hooks}})


async def _webhooks_add(sim: AmoCRMSimulator, account: Account, request: Request) -> Response:
    body = await _json_object(request)
    destination = body.get("destination")
    settings = body.get("settings")
    if not isinstance(destination, str) or not destination.startswith(("https://", "http://")):
        return _invalid("destination", "destination must be a valid URL")
    if (
        not isinstance(settings, list)
        or not settings
        or not all(isinstance(event, str) and event in WEBHOOK_EVENTS for event in settings)
    ):
        return _invalid("settings", "settings must be a non-empty list of known events")
    sort = body.get("sort", 1)
    hook = sim.subscribe(account.id, destination, settings, sort if isinstance(sort, int) else 1)
    return _hal(hook.as_json(account.id))


async def _webhooks_delete(sim: AmoCRMSimulator, account: Account, request: Request) -> Response:
    destination = (await _json_object(request)).get("destination")
    if not isinstance(destination, str) or not destination:
        return _invalid("destination", "destination is required")
    if not sim.unsubscribe(account.id, destination):
        return problem(404, "Not Found", "Webhook not found")
    return Response(status_code=204)


# --- helpers ----------------------------------------------------------------------------


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        value = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _optional_int(value: str | None) -> int | None:
    return None if value is None or value == "" else int(value)


def _base_url(request: Request) -> str:
    # Links point back at the sandbox (not at {subdomain}.amocrm.ru) so they can be followed.
    return str(request.base_url).rstrip("/")


def _page_url(base: str, request: Request, page: int) -> str:
    params = [(key, value) for key, value in request.query_params.multi_items() if key != "page"]
    params.append(("page", str(page)))
    return f"{base}{request.url.path}?{urlencode(params)}"
