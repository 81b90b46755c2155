"""The sandbox's controls, each declared once: its route under `/_sandbox` and what it does.

A control is a function of one simulator (or of the whole `Sandbox`) and its arguments,
registered with its HTTP verb and path. Its signature is its argument model: the control
routes (`control_http`) validate a request's path, query or JSON body against it, and
`remote.RemoteSandbox` offers it as a method of the same name that sends those arguments.
A control that returns None answers 204; one that returns bytes answers a form body
(the webhook bodies); anything else is JSON. An unknown account, contact or key (KeyError)
→ 404 `{"error": "not_found", "detail"}`; bad input → 400 `{"error": "bad_request",
"detail"}`.

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

import inspect
import operator
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Annotated, Any, Literal, TypedDict, TypeVar, Unpack, get_type_hints

from pydantic import (
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    TypeAdapter,
    validate_call,
)

from amosync.sandbox.amocrm import AmoCRMSimulator
from amosync.sandbox.calls import Api
from amosync.sandbox.contacts import LEAD_SHARE
from amosync.sandbox.rates import max_in_window
from amosync.sandbox.simulators import Sandbox
from amosync.sandbox.unisender import UnisenderSimulator

Verb = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
Run = TypeVar("Run", bound=Callable[..., Any])
# A control's first argument is the simulator it drives, a type pydantic need not know.
_validated = validate_call(config=ConfigDict(arbitrary_types_allowed=True))
# `{account_id:int}` in a route's path: the argument it names.
_PATH_ARGUMENT = re.compile(r"\{(\w+)(?::\w+)?\}")


def _answer_as_is(answer: Any) -> Any:
    return answer


@dataclass
class Control:
    """One control: `run(part, **arguments)` served at `verb prefix+path`.

    `send` is where the arguments that are not in the path travel (the query for GET, the
    JSON body otherwise). `shape` makes the answer of what `run` returned (a summary of
    it); with `answer_in`, the answer is `{answer_in: that}`.
    `decode` turns the JSON answer into what the in-process method returns (a range, a
    set, the value under `answer_in`), for `RemoteSandbox`.
    """

    name: str
    verb: Verb
    path: str
    run: Callable[..., Any]
    part: Callable[[Sandbox], Any]
    send: Literal["query", "body"]
    shape: Callable[[Any], Any] = _answer_as_is
    answer_in: str | None = None
    decode: Callable[[Any], Any] = _answer_as_is
    path_arguments: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        if self.answer_in is not None and self.decode is _answer_as_is:
            self.decode = operator.itemgetter(self.answer_in)
        self.path_arguments = frozenset(_PATH_ARGUMENT.findall(self.path))

    # The argument model is built when first used: a process that serves or drives a few
    # controls does not pay for all of them at import.
    @cached_property
    def signature(self) -> inspect.Signature:
        return inspect.signature(self.run)

    @cached_property
    def _hints(self) -> dict[str, Any]:
        return get_type_hints(self.run, include_extras=True)

    @cached_property
    def no_content(self) -> bool:
        """`run` returns None: the route answers 204."""
        return self._hints.get("return") is type(None)

    @cached_property
    def types(self) -> dict[str, TypeAdapter[Any]]:
        """Each argument's type, which writes it as JSON for the route (the simulator aside)."""
        simulator = next(iter(self.signature.parameters))
        return {
            name: TypeAdapter(hint)
            for name, hint in self._hints.items()
            if name not in (simulator, "return")
        }

    @cached_property
    def validated(self) -> Callable[..., Any]:
        """`run`, checking and converting its arguments first (bad ones: a ValueError)."""
        return _validated(self.run)

    def answer(self, result: Any) -> Any:
        """What the route answers when `run` returned `result`."""
        shaped = self.shape(result)
        return shaped if self.answer_in is None else {self.answer_in: shaped}

    def arguments(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The arguments a Python call gives (only those), as the JSON the route reads."""
        bound = self.signature.bind(None, *args, **kwargs)
        given: dict[str, Any] = {}
        for position, (name, value) in enumerate(bound.arguments.items()):
            if position == 0:
                continue  # the simulator: the route supplies it
            if self.signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                given |= value
            else:
                given[name] = self.types[name].dump_python(value, mode="json")
        return given

    def url(self, arguments: dict[str, Any]) -> str:
        """The route's path with the path arguments filled in."""
        return _PATH_ARGUMENT.sub(lambda match: str(arguments[match[1]]), self.path)


class ControlOptions(TypedDict, total=False):
    """How a control is served beyond its verb and path: `Control`'s other fields."""

    name: str
    send: Literal["query", "body"]
    shape: Callable[[Any], Any]
    answer_in: str
    decode: Callable[[Any], Any]


class Controls:
    """The controls of one part of the sandbox: amoCRM's, Unisender's or the sandbox's own."""

    def __init__(self, prefix: str, part: Callable[[Sandbox], Any]) -> None:
        self.prefix = prefix
        self.part = part
        self.by_name: dict[str, Control] = {}

    def __call__(
        self, verb: Verb, path: str = "", **options: Unpack[ControlOptions]
    ) -> Callable[[Run], Run]:
        """Declare the function below as a control (named after it unless `name` says)."""

        def declare(run: Run) -> Run:
            self.declare(verb, path, run, **options)
            return run

        return declare

    def declare(
        self, verb: Verb, path: str, run: Callable[..., Any], **options: Unpack[ControlOptions]
    ) -> None:
        """Serve `run` (a function of the part, or one of its methods) as a control."""
        control = Control(
            name=options.get("name") or run.__name__,
            verb=verb,
            path=self.prefix + path,
            run=run,
            part=self.part,
            send=options.get("send") or ("query" if verb == "GET" else "body"),
            shape=options.get("shape", _answer_as_is),
            answer_in=options.get("answer_in"),
            decode=options.get("decode", _answer_as_is),
        )
        self.by_name[control.name] = control


SANDBOX = Controls("", lambda sandbox: sandbox)
AMOCRM = Controls("/amocrm", lambda sandbox: sandbox.amocrm)
UNISENDER = Controls("/unisender", lambda sandbox: sandbox.unisender)
ALL = (SANDBOX, AMOCRM, UNISENDER)

ACCOUNT = "/accounts/{account_id:int}"
CONTACT = ACCOUNT + "/contacts/{contact_id:int}"
LEAD = ACCOUNT + "/leads/{lead_id:int}"


def _statuses(value: Any) -> Any:
    """`P:S,P:S` (either side may be empty: any) as `[(P, S), ...]`; empty: every status."""
    if not isinstance(value, str):
        return value
    if not value:
        return None
    wanted = []
    for item in value.split(","):
        pipeline, _, status = item.partition(":")
        wanted.append((int(pipeline) if pipeline else None, int(status) if status else None))
    return wanted


def _statuses_query(statuses: Sequence[tuple[int | None, int | None]] | None) -> str | None:
    if statuses is None:
        return None
    return ",".join(f"{'' if p is None else p}:{'' if s is None else s}" for p, s in statuses)


# Pipeline and status pairs (None: every status) as the deal list's query carries them.
Statuses = Annotated[
    list[tuple[int | None, int | None]] | None,
    BeforeValidator(_statuses),
    PlainSerializer(_statuses_query),
]


# --- the sandbox ------------------------------------------------------------------------


@SANDBOX("GET", "/health", decode=lambda answer: bool(answer["ok"]))
def health(_sandbox: Sandbox) -> dict[str, bool]:
    return {"ok": True}


@SANDBOX("GET", "/calls")
def calls(
    sandbox: Sandbox,
    api: Api | None = None,
    path: str | None = None,
    status: int | None = None,
    account_id: int | None = None,
    since: float = 0,
) -> list[dict[str, Any]]:
    """The call log; filters: api, path (prefix), status, account_id, since (unix time)."""
    matching = sandbox.calls.matching(api=api, path=path, status=status, account_id=account_id)
    return [asdict(call) for call in matching if call.at >= since]


@SANDBOX("GET", "/calls/summary")
def calls_summary(sandbox: Sandbox) -> dict[str, Any]:
    by_status: dict[str, int] = {}
    for call in sandbox.calls:
        key = f"{call.api} {call.status}"
        by_status[key] = by_status.get(key, 0) + 1
    return {"total": len(sandbox.calls), "by_path": sandbox.calls.by_path(), "by_status": by_status}


@SANDBOX("DELETE", "/calls")
def clear_calls(sandbox: Sandbox) -> None:
    sandbox.calls.clear()


@SANDBOX("GET", "/stats")
def stats(sandbox: Sandbox) -> dict[str, Any]:
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


# --- amoCRM -----------------------------------------------------------------------------


@AMOCRM("GET", ACCOUNT)
def account(amo: AmoCRMSimulator, account_id: int) -> dict[str, Any]:
    """Contacts, pages served, 429s answered, max per second and webhooks of the account."""
    found = amo.account(account_id)
    return {
        "id": found.id,
        "subdomain": found.subdomain,
        "name": found.name,
        "contacts": len(found.contacts),
        "pages_served": len(found.pages),
        "rate_limited": found.rate_limited,
        "blocked": found.blocked,
        "max_per_second": found.arrivals.max_in_window(1.0),
        "webhooks": amo.webhooks(found.id),
    }


@AMOCRM(
    "GET",
    ACCOUNT + "/arrivals",
    decode=lambda answer: [float(at) for at in answer["arrivals"]],
)
def arrivals(amo: AmoCRMSimulator, account_id: int, since: float | None = None) -> dict[str, Any]:
    """When the account's requests arrived (unix time, from `since` on), 429s included."""
    times = amo.account(account_id).arrivals.since(since)
    return {"arrivals": times, "max_per_second": max_in_window(times, 1.0)}


@AMOCRM(
    "POST",
    ACCOUNT + "/generate",
    decode=lambda answer: range(answer["first_id"], answer["first_id"] + answer["count"]),
)
def generate_contacts(
    amo: AmoCRMSimulator,
    account_id: int,
    n: int,
    *,
    seed: int = 0,
    lead_share: float = LEAD_SHARE,
    lead_statuses: Sequence[tuple[int, int, float]] | None = None,
) -> dict[str, Any]:
    """`n` generated contacts (and their deals); remotely, the range of their ids."""
    started = time.perf_counter()
    ids = amo.generate_contacts(
        account_id, n, seed=seed, lead_share=lead_share, lead_statuses=lead_statuses
    )
    seconds = time.perf_counter() - started
    leads = len(amo.leads_in(account_id))
    return {"first_id": ids.start, "count": len(ids), "leads": leads, "seconds": seconds}


@AMOCRM("GET", ACCOUNT + "/leads")
def leads_in(amo: AmoCRMSimulator, account_id: int, statuses: Statuses = None) -> list[int]:
    return amo.leads_in(account_id, statuses)


@AMOCRM("PATCH", LEAD)
def change_lead(
    amo: AmoCRMSimulator, account_id: int, lead_id: int, **change: Any
) -> dict[str, Any]:
    """With a `status_id`, `move_lead` (and its `pipeline_id`); without, `update_lead` (its
    `name` and `price`). A change given as None is no change."""
    given = {name: value for name, value in change.items() if value is not None}
    method = _MOVE_LEAD if "status_id" in given else _UPDATE_LEAD
    return method(amo, account_id, lead_id, **given)


_MOVE_LEAD = _validated(AmoCRMSimulator.move_lead)
_UPDATE_LEAD = _validated(AmoCRMSimulator.update_lead)


@AMOCRM(
    "GET",
    ACCOUNT + "/tagged",
    decode=lambda answer: {int(contact_id): float(at) for contact_id, at in answer.items()},
)
def tagged(amo: AmoCRMSimulator, account_id: int, tag: str) -> dict[str, float]:
    return {str(contact_id): at for contact_id, at in amo.tagged(account_id, tag).items()}


@AMOCRM("GET", "/settings", name="settings")
def amocrm_settings(amo: AmoCRMSimulator) -> dict[str, Any]:
    return _settings(amo, AMOCRM_SETTINGS)


@AMOCRM("PUT", "/settings", name="configure")
def configure_amocrm(amo: AmoCRMSimulator, **settings: Any) -> dict[str, Any]:
    """Set knobs: latency, rate_limit_rps, access_token_ttl, webhooks_enabled, fault_rate,
    block_after_429s, block_seconds..."""
    return _configure(amo, settings, AMOCRM_SETTINGS)


@AMOCRM("POST", "/webhooks/flush")
async def flush_webhooks(amo: AmoCRMSimulator, timeout: float = 30.0) -> None:
    await amo.flush_webhooks(timeout=timeout)


@AMOCRM("GET", "/deliveries")
def deliveries(amo: AmoCRMSimulator) -> list[dict[str, Any]]:
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
        for d in amo.deliveries
    ]


# Simulator methods served as they are: each one's signature is its control's.
AMOCRM.declare(
    "POST",
    "/integrations",
    AmoCRMSimulator.add_integration,
    shape=lambda added: {"client_id": added.client_id, "redirect_uri": added.redirect_uri},
)
AMOCRM.declare(
    "POST",
    "/accounts",
    AmoCRMSimulator.add_account,
    shape=lambda added: {"id": added.id, "subdomain": added.subdomain, "name": added.name},
)
AMOCRM.declare("POST", ACCOUNT + "/codes", AmoCRMSimulator.issue_code, answer_in="code")
AMOCRM.declare("POST", ACCOUNT + "/tokens", AmoCRMSimulator.issue_tokens)
AMOCRM.declare("POST", ACCOUNT + "/revoke", AmoCRMSimulator.revoke_tokens)
AMOCRM.declare("POST", ACCOUNT + "/contacts", AmoCRMSimulator.add_contact)
AMOCRM.declare("PATCH", CONTACT, AmoCRMSimulator.update_contact)
AMOCRM.declare("DELETE", CONTACT, AmoCRMSimulator.delete_contact)
AMOCRM.declare("POST", CONTACT + "/restore", AmoCRMSimulator.restore_contact)
AMOCRM.declare("GET", CONTACT + "/tags", AmoCRMSimulator.tags)
AMOCRM.declare("POST", ACCOUNT + "/leads", AmoCRMSimulator.create_lead)
AMOCRM.declare("GET", LEAD, AmoCRMSimulator.get_lead)
AMOCRM.declare("DELETE", LEAD, AmoCRMSimulator.delete_lead)
AMOCRM.declare("POST", LEAD + "/restore", AmoCRMSimulator.restore_lead)
AMOCRM.declare("GET", ACCOUNT + "/lead-pages", AmoCRMSimulator.lead_pages)
AMOCRM.declare("GET", ACCOUNT + "/lead-webhook-body", AmoCRMSimulator.lead_webhook_body)
AMOCRM.declare("GET", ACCOUNT + "/webhooks", AmoCRMSimulator.webhooks)
AMOCRM.declare(
    "POST", ACCOUNT + "/webhooks/disable", AmoCRMSimulator.disable_webhook, answer_in="disabled"
)
AMOCRM.declare("DELETE", ACCOUNT + "/webhooks", AmoCRMSimulator.remove_webhook, answer_in="removed")
AMOCRM.declare("GET", ACCOUNT + "/pages", AmoCRMSimulator.contact_pages)
AMOCRM.declare("GET", ACCOUNT + "/notes", AmoCRMSimulator.notes)
AMOCRM.declare("GET", ACCOUNT + "/webhook-body", AmoCRMSimulator.webhook_body)
AMOCRM.declare("POST", "/faults", AmoCRMSimulator.add_fault)
AMOCRM.declare("DELETE", "/faults", AmoCRMSimulator.clear_faults)


# --- Unisender --------------------------------------------------------------------------


@UNISENDER("POST", "/keys")
def add_key(uni: UnisenderSimulator, key: str) -> None:
    uni.add_key(key)


@UNISENDER("GET", "/settings", name="settings")
def unisender_settings(uni: UnisenderSimulator) -> dict[str, Any]:
    return _settings(uni, UNISENDER_SETTINGS)


@UNISENDER("PUT", "/settings", name="configure")
def configure_unisender(uni: UnisenderSimulator, **settings: Any) -> dict[str, Any]:
    """Set knobs: latency, rate_limit_rpm, fault_rate, fault_status, fault_code."""
    return _configure(uni, settings, UNISENDER_SETTINGS)


@UNISENDER("GET", "/hooks")
def hooks(uni: UnisenderSimulator, key: str) -> list[dict[str, Any]]:
    return uni.hooks.list_hooks(key)


@UNISENDER("POST", "/hooks/stop", answer_in="stopped")
def stop_hook(uni: UnisenderSimulator, key: str, hook_url: str | None = None) -> int:
    return uni.hooks.stop(key, hook_url)


@UNISENDER("POST", "/hooks/flush")
async def flush_hooks(uni: UnisenderSimulator, timeout: float = 30.0) -> None:
    await uni.hooks.flush(timeout)


@UNISENDER("GET", "/hook-deliveries")
def hook_deliveries(uni: UnisenderSimulator) -> list[dict[str, Any]]:
    return [delivery.as_json() for delivery in uni.hooks.deliveries]


@UNISENDER("GET", "/members", decode=set)
def list_members(
    uni: UnisenderSimulator, key: str, list_id: int, status: str | None = None
) -> list[str]:
    """The addresses on the list (sorted; remotely, a set as in-process)."""
    return sorted(uni.list_members(key, list_id, status))


UNISENDER.declare("DELETE", "/keys", UnisenderSimulator.remove_key, send="query")
UNISENDER.declare("POST", "/faults", UnisenderSimulator.add_fault)
UNISENDER.declare("DELETE", "/faults", UnisenderSimulator.clear_faults)
UNISENDER.declare("POST", "/rejections", UnisenderSimulator.reject)
UNISENDER.declare("POST", "/unsubscribe", UnisenderSimulator.unsubscribe)
UNISENDER.declare("GET", "/lists", UnisenderSimulator.lists)
UNISENDER.declare("GET", "/contact", UnisenderSimulator.contact)
UNISENDER.declare("GET", "/fields", UnisenderSimulator.fields)
UNISENDER.declare("POST", "/fields", UnisenderSimulator.create_field, answer_in="id")


# --- settings ---------------------------------------------------------------------------

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


def _configure(
    target: AmoCRMSimulator | UnisenderSimulator,
    body: dict[str, Any],
    allowed: dict[str, type | tuple[type, ...]],
) -> dict[str, Any]:
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
    return _settings(target, allowed)


def _settings(
    target: AmoCRMSimulator | UnisenderSimulator, allowed: dict[str, type | tuple[type, ...]]
) -> dict[str, Any]:
    values = {name: getattr(target, name) for name in allowed}
    values["fault_rate"] = target.faults.rate
    values["fault_status"] = target.faults.rate_status
    values["fault_code"] = target.faults.rate_code
    return values
