"""`/_sandbox/...`: drive a sandbox that runs in another process (benchmarks, the demo).

All routes below are under `/_sandbox`; JSON in and out. An unknown account, contact or
key → 404 `{"error": "not_found", "detail"}`; bad input → 400 `{"error": "bad_request",
"detail"}`. `amosync.sandbox.remote.RemoteSandbox` wraps these routes with the same method
names as the in-process Python API.

    GET    /health                             {"ok": true}
    GET    /stats                              refreshes, 429s, max per second, deliveries

    amoCRM (ID = account id, CID = contact id)
    POST   /amocrm/integrations                {client_id, client_secret, redirect_uri}
    POST   /amocrm/accounts                    {account_id?, subdomain?, name?}
    GET    /amocrm/accounts/ID                 contacts, pages served, 429s, max per second,
                                               webhooks
    GET    /amocrm/accounts/ID/arrivals?since=U   when its requests arrived (unix times) and
                                               the most in any 1-second window
    POST   /amocrm/accounts/ID/codes           {client_id} → {"code"}
    POST   /amocrm/accounts/ID/tokens          {client_id} → a token pair
    POST   /amocrm/accounts/ID/revoke          revoke all its tokens
    POST   /amocrm/accounts/ID/contacts        {name, emails, phones, custom_fields_values?}
    PATCH  /amocrm/accounts/ID/contacts/CID    {name?, emails?, phones?, custom_fields_values?}
    DELETE /amocrm/accounts/ID/contacts/CID
    POST   /amocrm/accounts/ID/contacts/CID/restore
    POST   /amocrm/accounts/ID/generate        {n, seed?, lead_share?, lead_statuses?:
                                               [[pipeline_id, status_id, weight], ...]}
                                               → {first_id, count, leads, seconds}

    Deals (LID = deal id); each change fires the deal webhooks registered for it
    POST   /amocrm/accounts/ID/leads           {contact_ids, pipeline_id?, status_id?, name?,
                                               price?} → the deal (add_lead)
    GET    /amocrm/accounts/ID/leads?statuses=P:S,P:S   ids of the live deals in them
    GET    /amocrm/accounts/ID/leads/LID       the deal with its contacts, or null
    PATCH  /amocrm/accounts/ID/leads/LID       {status_id, pipeline_id?}: move (status_lead,
                                               update_lead); {name?, price?}: update_lead
    DELETE /amocrm/accounts/ID/leads/LID       (delete_lead)
    POST   /amocrm/accounts/ID/leads/LID/restore   (restore_lead)
    GET    /amocrm/accounts/ID/lead-pages      deal list page numbers served, in order
    GET    /amocrm/accounts/ID/lead-webhook-body?action=A&lead_id=LID   the form body
    GET    /amocrm/accounts/ID/webhooks        registered webhooks
    POST   /amocrm/accounts/ID/webhooks/disable  {destination?}: amoCRM turned it off
    DELETE /amocrm/accounts/ID/webhooks        {destination?}: drop it (every one without)
    GET    /amocrm/accounts/ID/pages           contact page numbers served, in order
    GET    /amocrm/accounts/ID/notes[?contact_id=CID]   notes on contacts, oldest first
    GET    /amocrm/accounts/ID/contacts/CID/tags       the contact's tag names
    GET    /amocrm/accounts/ID/tagged?tag=T    {contact id: when T was first added}
    GET    /amocrm/accounts/ID/webhook-body?action=A&contact_id=CID   the form body
    GET    /amocrm/settings                    the knobs below, current values
    PUT    /amocrm/settings                    {latency, rate_limit_rps, access_token_ttl,
                                                refresh_token_ttl, code_ttl, webhooks_enabled,
                                                webhook_concurrency, webhook_timeout,
                                                block_after_429s, block_seconds,
                                                fault_rate, fault_status} (any subset)
    POST   /amocrm/faults                      {status, path?, times?}
    DELETE /amocrm/faults                      clear them (and the fault rate)
    POST   /amocrm/webhooks/flush              {timeout?}: wait for pending deliveries
    GET    /amocrm/deliveries                  webhooks posted and their statuses

    Unisender (K = API key)
    POST   /unisender/keys                     {key}
    DELETE /unisender/keys?key=K
    GET    /unisender/settings
    PUT    /unisender/settings                 {latency, rate_limit_rpm, hook_timeout,
                                                hook_retry_interval, hook_stop_after,
                                                fault_rate, fault_status, fault_code}
    POST   /unisender/faults                   {method?, status?, code?, times?}
    DELETE /unisender/faults
    POST   /unisender/rejections               {email, code, message?, key?}
    POST   /unisender/unsubscribe              {key, email, list_ids?}: posted to its hooks
    GET    /unisender/hooks?key=K              the key's hooks, as listHooks gives them
    POST   /unisender/hooks/stop               {key, hook_url?}: stopped after failures
    POST   /unisender/hooks/flush              {timeout?}: wait for the deliveries due now
    GET    /unisender/hook-deliveries          events posted to hooks, attempts, statuses
    GET    /unisender/lists?key=K
    GET    /unisender/members?key=K&list_id=N[&status=S]
    GET    /unisender/contact?key=K&email=E    the contact (lists, fields, phone, tags), or null
    GET    /unisender/fields?key=K             the key's user fields, as getFields lists them
    POST   /unisender/fields                   {key, name, type?}: createField → {"id"}

    Call log
    GET    /calls?api=&path=&status=&account_id=&since=   entries, oldest first
    GET    /calls/summary                      totals by path and by api+status
    DELETE /calls                              empty it
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, cast

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from amosync.sandbox.amocrm import Action, AmoCRMSimulator, LeadAction
from amosync.sandbox.contacts import LEAD_SHARE
from amosync.sandbox.controls import max_in_window
from amosync.sandbox.sandbox import Sandbox
from amosync.sandbox.unisender import UnisenderError, UnisenderSimulator

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Sandbox, Request], Awaitable[Any]]

AMOCRM_SETTINGS: dict[str, type | tuple[type, ...]] = {
    "latency": (int, float),
    "rate_limit_rps": (int, float, type(None)),
    "access_token_ttl": int,
    "refresh_token_ttl": int,
    "code_ttl": int,
    "webhooks_enabled": bool,
    "webhook_concurrency": int,
    "webhook_timeout": (int, float),
    "block_after_429s": (int, type(None)),
    "block_seconds": (int, float),
}
UNISENDER_SETTINGS: dict[str, type | tuple[type, ...]] = {
    "latency": (int, float),
    "rate_limit_rpm": (int, float, type(None)),
    "hook_timeout": (int, float),
    "hook_retry_interval": (int, float),
    "hook_stop_after": (int, float),
}


def routes(sandbox: Sandbox) -> list[Route]:
    def route(path: str, handler: Handler, method: str = "GET") -> Route:
        async def endpoint(request: Request) -> Response:
            try:
                result = await handler(sandbox, request)
            except KeyError as exc:
                return _json({"error": "not_found", "detail": str(exc.args[0])}, 404)
            except (ValueError, TypeError) as exc:
                return _json({"error": "bad_request", "detail": str(exc)}, 400)
            if isinstance(result, Response):
                return result
            return _json(result, 200)

        return Route(f"/_sandbox{path}", endpoint, methods=[method])

    account = "/amocrm/accounts/{account_id:int}"
    contact = account + "/contacts/{contact_id:int}"
    lead = account + "/leads/{lead_id:int}"
    return [
        route("/health", _health),
        route("/amocrm/integrations", _add_integration, "POST"),
        route("/amocrm/accounts", _add_account, "POST"),
        route(account, _account),
        route(account + "/codes", _issue_code, "POST"),
        route(account + "/tokens", _issue_tokens, "POST"),
        route(account + "/revoke", _revoke, "POST"),
        route(account + "/contacts", _add_contact, "POST"),
        route(contact, _update_contact, "PATCH"),
        route(contact, _delete_contact, "DELETE"),
        route(contact + "/restore", _restore_contact, "POST"),
        route(account + "/generate", _generate, "POST"),
        route(account + "/leads", _create_lead, "POST"),
        route(account + "/leads", _leads_in),
        route(lead, _get_lead),
        route(lead, _change_lead, "PATCH"),
        route(lead, _delete_lead, "DELETE"),
        route(lead + "/restore", _restore_lead, "POST"),
        route(account + "/lead-pages", _lead_pages),
        route(account + "/lead-webhook-body", _lead_webhook_body),
        route(account + "/webhooks", _webhooks),
        route(account + "/webhooks/disable", _disable_webhook, "POST"),
        route(account + "/webhooks", _remove_webhook, "DELETE"),
        route(account + "/pages", _pages),
        route(account + "/notes", _notes),
        route(account + "/tagged", _tagged),
        route(contact + "/tags", _tags),
        route(account + "/arrivals", _arrivals),
        route(account + "/webhook-body", _webhook_body),
        route("/amocrm/settings", _amocrm_settings),
        route("/amocrm/settings", _amocrm_settings, "PUT"),
        route("/amocrm/faults", _amocrm_fault, "POST"),
        route("/amocrm/faults", _amocrm_clear_faults, "DELETE"),
        route("/amocrm/webhooks/flush", _flush, "POST"),
        route("/amocrm/deliveries", _deliveries),
        route("/unisender/keys", _add_key, "POST"),
        route("/unisender/keys", _remove_key, "DELETE"),
        route("/unisender/settings", _unisender_settings),
        route("/unisender/settings", _unisender_settings, "PUT"),
        route("/unisender/faults", _unisender_fault, "POST"),
        route("/unisender/faults", _unisender_clear_faults, "DELETE"),
        route("/unisender/rejections", _reject, "POST"),
        route("/unisender/unsubscribe", _unsubscribe, "POST"),
        route("/unisender/hooks", _hooks),
        route("/unisender/hooks/stop", _stop_hook, "POST"),
        route("/unisender/hooks/flush", _flush_hooks, "POST"),
        route("/unisender/hook-deliveries", _hook_deliveries),
        route("/unisender/lists", _lists),
        route("/unisender/members", _members),
        route("/unisender/contact", _contact),
        route("/unisender/fields", _fields),
        route("/unisender/fields", _create_field, "POST"),
        route("/calls", _calls),
        route("/calls/summary", _calls_summary),
        route("/calls", _clear_calls, "DELETE"),
        route("/stats", _stats),
    ]


def _json(value: Any, status: int) -> Response:
    return Response(orjson.dumps(value), status, media_type="application/json")


def _no_content() -> Response:
    return Response(status_code=204)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("the body must be a JSON object")
    return value


def _query(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if value is None:
        raise ValueError(f"query parameter {name!r} is required")
    return value


def _ids(request: Request) -> tuple[int, int]:
    return request.path_params["account_id"], request.path_params["contact_id"]


# --- amoCRM -----------------------------------------------------------------------------


async def _health(_sandbox: Sandbox, _request: Request) -> Any:
    return {"ok": True}


async def _add_integration(sandbox: Sandbox, request: Request) -> Any:
    body = await _body(request)
    integration = sandbox.amocrm.add_integration(
        body.get("client_id"), body.get("client_secret"), body.get("redirect_uri")
    )
    return {"client_id": integration.client_id, "redirect_uri": integration.redirect_uri}


async def _add_account(sandbox: Sandbox, request: Request) -> Any:
    body = await _body(request)
    account = sandbox.amocrm.add_account(
        account_id=body.get("account_id"), subdomain=body.get("subdomain"), name=body.get("name")
    )
    return {"id": account.id, "subdomain": account.subdomain, "name": account.name}


async def _account(sandbox: Sandbox, request: Request) -> Any:
    amo = sandbox.amocrm
    account = amo.account(request.path_params["account_id"])
    return {
        "id": account.id,
        "subdomain": account.subdomain,
        "name": account.name,
        "contacts": len(account.contacts),
        "pages_served": len(account.pages),
        "rate_limited": account.rate_limited,
        "blocked": account.blocked,
        "max_per_second": account.arrivals.max_in_window(1.0),
        "webhooks": amo.webhooks(account.id),
    }


async def _issue_code(sandbox: Sandbox, request: Request) -> Any:
    body = await _body(request)
    return {
        "code": sandbox.amocrm.issue_code(request.path_params["account_id"], body.get("client_id"))
    }


async def _issue_tokens(sandbox: Sandbox, request: Request) -> Any:
    body = await _body(request)
    return sandbox.amocrm.issue_tokens(
        request.path_params["account_id"], str(body.get("client_id"))
    )


async def _revoke(sandbox: Sandbox, request: Request) -> Any:
    sandbox.amocrm.revoke_tokens(request.path_params["account_id"])
    return _no_content()


async def _add_contact(sandbox: Sandbox, request: Request) -> Any:
    body = await _body(request)
    extra = {}
    if "custom_fields_values" in body:
        extra["custom_fields_values"] = body["custom_fields_values"]
    return sandbox.amocrm.add_contact(
        request.path_params["account_id"],
        name=str(body.get("name") or ""),
        emails=list(body.get("emails") or []),
        phones=list(body.get("phones") or []),
        **extra,
    )


async def _update_contact(sandbox: Sandbox, request: Request) -> Any:
    body = await _body(request)
    account_id, contact_id = _ids(request)
    extra = {}
    if "custom_fields_values" in body:
        extra["custom_fields_values"] = body["custom_fields_values"]
    return sandbox.amocrm.update_contact(
        account_id,
        contact_id,
        name=body.get("name"),
        emails=body.get("emails"),
        phones=body.get("phones"),
        **extra,
    )


async def _delete_contact(sandbox: Sandbox, request: Request) -> Any:
    sandbox.amocrm.delete_contact(*_ids(request))
    return _no_content()


async def _restore_contact(sandbox: Sandbox, request: Request) -> Any:
    return sandbox.amocrm.restore_contact(*_ids(request))


async def _generate(sandbox: Sandbox, request: Request) -> Any:
    body = await _body(request)
    account_id = request.path_params["account_id"]
    statuses = body.get("lead_statuses")
    if statuses is not None and not (
        isinstance(statuses, list)
        and all(isinstance(item, list) and len(item) == 3 for item in statuses)
    ):
        raise ValueError("lead_statuses must be a list of [pipeline_id, status_id, weight]")
    started = time.perf_counter()
    ids = sandbox.amocrm.generate_contacts(
        account_id,
        int(body.get("n", 0)),
        seed=int(body.get("seed", 0)),
        lead_share=float(body.get("lead_share", LEAD_SHARE)),
        lead_statuses=None
        if statuses is None
        else [(int(p), int(s), float(w)) for p, s, w in statuses],
    )
    seconds = time.perf_counter() - started
    leads = len(sandbox.amocrm.leads_in(account_id))
    return {"first_id": ids.start, "count": len(ids), "leads": leads, "seconds": seconds}


def _lead_ids(request: Request) -> tuple[int, int]:
    return request.path_params["account_id"], request.path_params["lead_id"]


def _optional_id(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an id")
    return value


async def _create_lead(sandbox: Sandbox, request: Request) -> Any:
    body = await _body(request)
    contact_ids = body.get("contact_ids", [])
    if not isinstance(contact_ids, list) or not all(isinstance(c, int) for c in contact_ids):
        raise ValueError("contact_ids must be a list of ids")
    return sandbox.amocrm.create_lead(
        request.path_params["account_id"],
        contact_ids,
        pipeline_id=_optional_id(body, "pipeline_id"),
        status_id=_optional_id(body, "status_id"),
        name=body.get("name"),
        price=int(body.get("price", 0)),
    )


async def _leads_in(sandbox: Sandbox, request: Request) -> Any:
    wanted: list[tuple[int | None, int | None]] | None = None
    spec = request.query_params.get("statuses")
    if spec:
        wanted = []
        for item in spec.split(","):
            pipeline, _, status = item.partition(":")
            wanted.append((int(pipeline) if pipeline else None, int(status) if status else None))
    return sandbox.amocrm.leads_in(request.path_params["account_id"], wanted)


async def _get_lead(sandbox: Sandbox, request: Request) -> Any:
    return sandbox.amocrm.get_lead(*_lead_ids(request))


async def _change_lead(sandbox: Sandbox, request: Request) -> Any:
    body = await _body(request)
    status_id = _optional_id(body, "status_id")
    if status_id is not None:
        return sandbox.amocrm.move_lead(
            *_lead_ids(request), status_id, pipeline_id=_optional_id(body, "pipeline_id")
        )
    price = body.get("price")
    return sandbox.amocrm.update_lead(
        *_lead_ids(request), name=body.get("name"), price=None if price is None else int(price)
    )


async def _delete_lead(sandbox: Sandbox, request: Request) -> Any:
    sandbox.amocrm.delete_lead(*_lead_ids(request))
    return _no_content()


async def _restore_lead(sandbox: Sandbox, request: Request) -> Any:
    return sandbox.amocrm.restore_lead(*_lead_ids(request))


async def _lead_pages(sandbox: Sandbox, request: Request) -> Any:
    return sandbox.amocrm.lead_pages(request.path_params["account_id"])


async def _lead_webhook_body(sandbox: Sandbox, request: Request) -> Any:
    action = _query(request, "action")
    if action not in ("add", "update", "status", "delete", "restore"):
        raise ValueError("action must be add, update, status, delete or restore")
    old_status = request.query_params.get("old_status_id")
    body = sandbox.amocrm.lead_webhook_body(
        request.path_params["account_id"],
        cast(LeadAction, action),
        int(_query(request, "lead_id")),
        old_status_id=int(old_status) if old_status else None,
    )
    return Response(body, 200, media_type="application/x-www-form-urlencoded")


async def _webhooks(sandbox: Sandbox, request: Request) -> Any:
    return sandbox.amocrm.webhooks(request.path_params["account_id"])


async def _destination(request: Request) -> str | None:
    destination = (await _body(request)).get("destination")
    if destination is not None and not isinstance(destination, str):
        raise ValueError("destination must be a string")
    return destination


async def _disable_webhook(sandbox: Sandbox, request: Request) -> Any:
    destination = await _destination(request)
    count = sandbox.amocrm.disable_webhook(request.path_params["account_id"], destination)
    return {"disabled": count}


async def _remove_webhook(sandbox: Sandbox, request: Request) -> Any:
    destination = await _destination(request)
    count = sandbox.amocrm.remove_webhook(request.path_params["account_id"], destination)
    return {"removed": count}


async def _pages(sandbox: Sandbox, request: Request) -> Any:
    return sandbox.amocrm.contact_pages(request.path_params["account_id"])


async def _notes(sandbox: Sandbox, request: Request) -> Any:
    contact_id = request.query_params.get("contact_id")
    return sandbox.amocrm.notes(
        request.path_params["account_id"], int(contact_id) if contact_id else None
    )


async def _tagged(sandbox: Sandbox, request: Request) -> Any:
    tagged = sandbox.amocrm.tagged(request.path_params["account_id"], _query(request, "tag"))
    return {str(contact_id): at for contact_id, at in tagged.items()}


async def _tags(sandbox: Sandbox, request: Request) -> Any:
    return sandbox.amocrm.tags(*_ids(request))


async def _arrivals(sandbox: Sandbox, request: Request) -> Any:
    since = request.query_params.get("since")
    arrivals = sandbox.amocrm.account(request.path_params["account_id"]).arrivals
    times = arrivals.since(float(since) if since else None)
    return {"arrivals": times, "max_per_second": max_in_window(times, 1.0)}


async def _webhook_body(sandbox: Sandbox, request: Request) -> Any:
    action = _query(request, "action")
    if action not in ("add", "update", "delete", "restore"):
        raise ValueError("action must be add, update, delete or restore")
    body = sandbox.amocrm.webhook_body(
        request.path_params["account_id"],
        cast(Action, action),
        int(_query(request, "contact_id")),
    )
    return Response(body, 200, media_type="application/x-www-form-urlencoded")


async def _amocrm_settings(sandbox: Sandbox, request: Request) -> Any:
    amo = sandbox.amocrm
    if request.method == "PUT":
        body = await _body(request)
        _apply(amo, body, AMOCRM_SETTINGS)
        _apply_fault_rate(amo, body)
    return _settings(amo, AMOCRM_SETTINGS)


async def _amocrm_fault(sandbox: Sandbox, request: Request) -> Any:
    body = await _body(request)
    times = body.get("times", 1)
    sandbox.amocrm.add_fault(int(body["status"]), path=str(body.get("path", "/")), times=times)
    return _no_content()


async def _amocrm_clear_faults(sandbox: Sandbox, _request: Request) -> Any:
    sandbox.amocrm.clear_faults()
    return _no_content()


async def _flush(sandbox: Sandbox, request: Request) -> Any:
    body = await _body(request)
    await sandbox.amocrm.flush_webhooks(timeout=float(body.get("timeout", 30)))
    return _no_content()


async def _deliveries(sandbox: Sandbox, _request: Request) -> Any:
    return [
        {
            "account_id": d.account_id,
            "destination": d.destination,
            "action": d.action,
            "contact_id": d.contact_id,
            "lead_id": d.lead_id,
            "status": d.status,
            "error": d.error,
        }
        for d in sandbox.amocrm.deliveries
    ]


# --- Unisender --------------------------------------------------------------------------


async def _add_key(sandbox: Sandbox, request: Request) -> Any:
    sandbox.unisender.add_key(str((await _body(request)).get("key") or ""))
    return _no_content()


async def _remove_key(sandbox: Sandbox, request: Request) -> Any:
    sandbox.unisender.remove_key(_query(request, "key"))
    return _no_content()


async def _unisender_settings(sandbox: Sandbox, request: Request) -> Any:
    uni = sandbox.unisender
    if request.method == "PUT":
        body = await _body(request)
        _apply(uni, body, UNISENDER_SETTINGS)
        _apply_fault_rate(uni, body)
    return _settings(uni, UNISENDER_SETTINGS)


async def _unisender_fault(sandbox: Sandbox, request: Request) -> Any:
    body = await _body(request)
    sandbox.unisender.add_fault(
        method=str(body.get("method", "")),
        status=int(body.get("status", 500)),
        code=body.get("code"),
        times=body.get("times", 1),
    )
    return _no_content()


async def _unisender_clear_faults(sandbox: Sandbox, _request: Request) -> Any:
    sandbox.unisender.clear_faults()
    return _no_content()


async def _reject(sandbox: Sandbox, request: Request) -> Any:
    body = await _body(request)
    sandbox.unisender.reject(
        str(body["email"]), str(body["code"]), body.get("message"), key=body.get("key")
    )
    return _no_content()


async def _unsubscribe(sandbox: Sandbox, request: Request) -> Any:
    body = await _body(request)
    sandbox.unisender.unsubscribe(str(body["key"]), str(body["email"]), body.get("list_ids"))
    return _no_content()


async def _hooks(sandbox: Sandbox, request: Request) -> Any:
    return sandbox.unisender.hooks.list_hooks(_query(request, "key"))


async def _stop_hook(sandbox: Sandbox, request: Request) -> Any:
    body = await _body(request)
    return {"stopped": sandbox.unisender.hooks.stop(str(body["key"]), body.get("hook_url"))}


async def _flush_hooks(sandbox: Sandbox, request: Request) -> Any:
    await sandbox.unisender.hooks.flush(float((await _body(request)).get("timeout", 30.0)))
    return _no_content()


async def _hook_deliveries(sandbox: Sandbox, _request: Request) -> Any:
    return [delivery.as_json() for delivery in sandbox.unisender.hooks.deliveries]


async def _lists(sandbox: Sandbox, request: Request) -> Any:
    return sandbox.unisender.lists(_query(request, "key"))


async def _members(sandbox: Sandbox, request: Request) -> Any:
    members = sandbox.unisender.list_members(
        _query(request, "key"),
        int(_query(request, "list_id")),
        request.query_params.get("status"),
    )
    return sorted(members)


async def _contact(sandbox: Sandbox, request: Request) -> Any:
    return sandbox.unisender.contact(_query(request, "key"), _query(request, "email"))


async def _fields(sandbox: Sandbox, request: Request) -> Any:
    return sandbox.unisender.fields(_query(request, "key"))


async def _create_field(sandbox: Sandbox, request: Request) -> Any:
    body = await _body(request)
    try:
        field_id = sandbox.unisender.create_field(
            str(body["key"]), str(body["name"]), str(body.get("type", "string"))
        )
    except UnisenderError as exc:
        raise ValueError(f"{exc.code}: {exc.message}") from None
    return {"id": field_id}


# --- both -------------------------------------------------------------------------------


async def _calls(sandbox: Sandbox, request: Request) -> Any:
    query = request.query_params
    since = float(query.get("since", 0))
    matching = sandbox.calls.matching(
        api=query.get("api"),  # type: ignore[arg-type]
        path=query.get("path"),
        status=int(query["status"]) if "status" in query else None,
        account_id=int(query["account_id"]) if "account_id" in query else None,
    )
    return [asdict(call) for call in matching if call.at >= since]


async def _calls_summary(sandbox: Sandbox, _request: Request) -> Any:
    by_status: dict[str, int] = {}
    for call in sandbox.calls:
        key = f"{call.api} {call.status}"
        by_status[key] = by_status.get(key, 0) + 1
    return {"total": len(sandbox.calls), "by_path": sandbox.calls.by_path(), "by_status": by_status}


async def _clear_calls(sandbox: Sandbox, _request: Request) -> Any:
    sandbox.calls.clear()
    return _no_content()


async def _stats(sandbox: Sandbox, _request: Request) -> Any:
    amo, uni = sandbox.amocrm, sandbox.unisender
    return {
        "amocrm": {
            "refresh_count": amo.refresh_count,
            "rate_limited": amo.rate_limited(),
            "max_per_second": amo.max_per_second(),
            "deliveries": len(amo.deliveries),
            "failed_deliveries": sum(1 for d in amo.deliveries if d.status != 200),
        },
        "unisender": {"rate_limited": uni.rate_limited},
        "calls": len(sandbox.calls),
    }


# --- settings helpers -------------------------------------------------------------------


def _apply(
    target: AmoCRMSimulator | UnisenderSimulator,
    body: dict[str, Any],
    allowed: dict[str, type | tuple[type, ...]],
) -> None:
    for name, value in body.items():
        if name.startswith("fault_"):
            continue
        if name not in allowed:
            raise ValueError(f"unknown setting {name!r}")
        if not isinstance(value, allowed[name]) or (
            isinstance(value, bool) and allowed[name] is not bool
        ):
            raise ValueError(f"setting {name!r} has the wrong type")
        setattr(target, name, value)


def _apply_fault_rate(target: AmoCRMSimulator | UnisenderSimulator, body: dict[str, Any]) -> None:
    faults = target.faults
    if "fault_rate" in body:
        rate = float(body["fault_rate"])
        if not 0 <= rate <= 1:
            raise ValueError("fault_rate must be between 0 and 1")
        faults.rate = rate
    if "fault_status" in body:
        faults.rate_status = int(body["fault_status"])
    if "fault_code" in body:
        faults.rate_code = body["fault_code"]


def _settings(
    target: AmoCRMSimulator | UnisenderSimulator, allowed: dict[str, type | tuple[type, ...]]
) -> dict[str, Any]:
    values = {name: getattr(target, name) for name in allowed}
    values["fault_rate"] = target.faults.rate
    values["fault_status"] = target.faults.rate_status
    values["fault_code"] = target.faults.rate_code
    return values
