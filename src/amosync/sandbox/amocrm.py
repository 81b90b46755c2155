"""The amoCRM (Kommo) simulator: its state and the Python API tests drive it with.

    amo = sandbox.amocrm
    amo.add_integration(client_id, client_secret, redirect_uri)
    amo.add_account(account_id=30896271, subdomain="acme", name="Acme")
    code = amo.issue_code(30896271, client_id)         # what amoCRM passes to /vidget
    ann = amo.add_contact(30896271, name="Ann", emails=["ann@example.com"], phones=["+7..."])
    amo.update_contact(30896271, ann["id"], emails=["ann@new.example"])
    amo.delete_contact(30896271, ann["id"]); amo.restore_contact(30896271, ann["id"])
    amo.generate_contacts(30896271, 100_000, seed=1)   # ~0.1 s per 100k
    await amo.flush_webhooks()                         # wait for webhook deliveries

Knobs (plain attributes, change them at any time): `latency` (seconds added to every
request), `rate_limit_rps` (per account, None = off; real amoCRM allows 7), `access_token_ttl`
(seconds, default 86400), `refresh_token_ttl`, `code_ttl` (1200: codes live 20 minutes),
`webhooks_enabled` (False: nothing is posted, build bodies with `webhook_body`),
`webhook_concurrency`, `webhook_timeout`, `restore_without_fields` (0.5: the share of
restore webhooks posted without `custom_fields`, by a hash of the id). Faults:
`add_fault(status, path=..., times=...)`, `faults.rate`/`faults.rate_status` for a random
fault rate, `clear_faults()`.

The block amoCRM puts on an integration that keeps exceeding its limit: with
`block_after_429s = N`, an account that was answered N 429s (by the rate limit or injected)
within a minute gets 403 on every API request for `block_seconds`. Webhooks amoCRM turned
off: `disable_webhook(account_id, destination)` (listed with `"disabled": true`, nothing
posted to it; registering the destination again turns it back on), `remove_webhook(...)`.

Catalogs (catalogs.py): `GET /api/v4/contacts/custom_fields`, `/api/v4/leads/pipelines` and
`/api/v4/contacts/tags`; `add_contact_field(...)`, `add_pipeline(...)` extend them.

Deals (leads.py): generated contacts' deals exist (`generate_contacts(..., lead_share=0.1,
lead_statuses=[(pipeline, status, weight), ...])`), listed by `GET /api/v4/leads` with
`filter[statuses][i][pipeline_id|status_id]` and `with=contacts`, one by
`GET /api/v4/leads/{id}` (204 when absent or deleted). `create_lead(account_id, contact_ids,
status_id=142)`, `move_lead(...)`, `update_lead(...)`, `delete_lead(...)`, `restore_lead(...)`
post `add_lead`, `status_lead` + `update_lead`, `update_lead`, `delete_lead`, `restore_lead`
to the webhooks registered for them (`lead_webhook_body(...)` builds one);
`leads_in(account_id, [(pipeline, status)])`, `lead_pages(account_id)` observe them.

Tags and notes: `PATCH /api/v4/contacts` with `tags_to_add`/`tags_to_delete` and
`POST /api/v4/contacts/notes`; see them with `tags(account_id, contact_id)` (names) and
`notes(account_id, contact_id=None)`.

Observations: `contact_pages(account_id)` (page numbers served, in order),
`contact_pages_served`, `rate_limited(account_id)` (429s answered), `max_per_second(account_id)`
(the most of its requests, token requests included, that arrived in any 1-second window),
`arrivals(account_id)` (their arrival times), `refresh_count`,
`token_account(access_token)`, `webhooks(account_id)`, `deliveries` (webhooks posted, with
their HTTP status), `blocked(account_id)` (403s answered while blocked), and the sandbox-wide
call log.

Tokens look like amoCRM's: the access token is a JWT (HS256 here, RS256 at amoCRM) about 600
characters long, the refresh token a `def50200...` string of about 800, so column sizes and
log redaction are exercised as in production.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import jwt
import structlog

from amosync.sandbox.calls import Call, CallLog
from amosync.sandbox.catalogs import (
    CONTACT_FIELDS,
    DEFAULT_PIPELINES,
    LOST,
    WON,
    FieldDef,
    PipelineDef,
    make_pipeline,
)
from amosync.sandbox.contacts import (
    GENERATED_TAGS,
    LEAD_SHARE,
    RESPONSIBLE_USERS,
    ContactData,
    ContactStore,
    FieldValues,
    build_fields,
    lead_share_units,
    unix_now,
    with_changes,
)
from amosync.sandbox.faults import Fault, FaultPlan
from amosync.sandbox.leads import LeadData, LeadStore, StatusPlan
from amosync.sandbox.posting import Poster
from amosync.sandbox.rates import Arrivals, RateWindow
from amosync.sandbox.render import (
    account_pairs,
    contact_json,
    form_body,
    lead_json,
    lead_webhook_pairs,
    webhook_pairs,
)

log = structlog.get_logger()

Action = Literal["add", "update", "delete", "restore"]
LeadAction = Literal["add", "update", "status", "delete", "restore"]
WEBHOOK_EVENTS = frozenset(
    {
        "add_contact", "update_contact", "delete_contact", "restore_contact",
        "add_lead", "update_lead", "delete_lead", "restore_lead", "status_lead",
        "responsible_lead", "add_company", "update_company", "delete_company",
        "restore_company", "add_task", "update_task", "delete_task", "note_contact",
        "note_lead", "note_company", "responsible_contact", "responsible_company",
    }
)  # fmt: skip
# A keyword argument not given (None is a value: no fields).
UNSET: Any = object()
# 429s further apart than this do not add up to a block.
BLOCK_WINDOW = 60.0


@dataclass(frozen=True, slots=True)
class Integration:
    """An integration registered with the simulated amoCRM: what its OAuth calls present."""

    client_id: str
    client_secret: str
    redirect_uri: str


@dataclass(slots=True)
class Webhook:
    id: int
    destination: str
    settings: list[str]
    sort: int
    created_at: int
    updated_at: int
    # amoCRM turns off a webhook whose destination keeps failing.
    disabled: bool = False

    def as_json(self, account_id: int) -> dict[str, Any]:
        """An entry of `GET /api/v4/webhooks`: the webhook's own fields, and whose it is."""
        return {**asdict(self), "account_id": account_id, "created_by": RESPONSIBLE_USERS[0]}


@dataclass
class Account:
    id: int
    subdomain: str
    name: str
    country: str = "RU"
    currency: str = "RUB"
    created_at: int = field(default_factory=unix_now)
    contacts: ContactStore = field(default_factory=ContactStore)
    webhooks: dict[str, Webhook] = field(default_factory=dict)
    window: RateWindow = field(default_factory=lambda: RateWindow(1.0))
    arrivals: Arrivals = field(default_factory=Arrivals)
    pages: list[int] = field(default_factory=list)
    rate_limited: int = 0
    # The 403 block: when the recent 429s reached the simulator's threshold, until when.
    recent_429s: deque[float] = field(default_factory=deque)
    blocked_until: float = 0.0
    blocked: int = 0
    # Tags by lower-cased name (amoCRM's tags are per account), and notes on contacts.
    tags: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[dict[str, Any]] = field(default_factory=list)
    # When each (contact id, lower-cased tag name) was first added, for latency figures.
    tagged_at: dict[tuple[int, str], float] = field(default_factory=dict)
    # The catalogs (catalogs.py): contact fields and lead pipelines, in amoCRM's order.
    contact_fields: list[FieldDef] = field(default_factory=lambda: list(CONTACT_FIELDS))
    pipelines: list[PipelineDef] = field(default_factory=lambda: list(DEFAULT_PIPELINES))
    leads: LeadStore = field(init=False)

    def __post_init__(self) -> None:
        self.leads = LeadStore(self.contacts)

    def pipeline(self, pipeline_id: int) -> PipelineDef:
        for pipeline in self.pipelines:
            if pipeline.id == pipeline_id:
                return pipeline
        raise ValueError(f"no pipeline {pipeline_id} in account {self.id}")

    def as_json(self, base_url: str) -> dict[str, Any]:
        """`GET /api/v4/account`."""
        return {
            "id": self.id,
            "name": self.name,
            "subdomain": self.subdomain,
            "created_at": self.created_at,
            "created_by": RESPONSIBLE_USERS[0],
            "updated_at": self.created_at,
            "updated_by": RESPONSIBLE_USERS[0],
            "current_user_id": RESPONSIBLE_USERS[0],
            "country": self.country,
            "currency": self.currency,
            "currency_symbol": "₽" if self.currency == "RUB" else self.currency,
            "customers_mode": "disabled",
            "is_unsorted_on": True,
            "mobile_feature_version": 0,
            "is_loss_reason_enabled": True,
            "is_helpbot_enabled": False,
            "is_technical_account": False,
            "contact_name_display_order": 1,
            "_links": {"self": {"href": f"{base_url}/api/v4/account"}},
        }


@dataclass(slots=True)
class Grant:
    """An authorization code, an access token or a refresh token."""

    account_id: int
    client_id: str
    expires_at: float
    spent: bool = False  # codes and refresh tokens are single-use; revoked tokens too


@dataclass(slots=True)
class Delivery:
    """One webhook post: what was sent where, and how the receiver answered."""

    account_id: int
    destination: str
    action: str  # a contact's "add"...; a deal's event: "status_lead"...
    contact_id: int  # 0 for a deal's webhook
    body: bytes
    status: int | None = None  # None: not delivered (yet, or the connection failed)
    error: str | None = None
    lead_id: int | None = None


@dataclass(frozen=True, slots=True)
class OAuthAnswer:
    status: int
    body: dict[str, Any]


class AmoCRMSimulator:
    """amoCRM accounts, integrations, tokens, contacts and webhooks (see the module doc)."""

    def __init__(self, calls: CallLog) -> None:
        self.calls = calls
        self.latency = 0.0
        self.rate_limit_rps: float | None = None
        self.access_token_ttl = 86400
        self.refresh_token_ttl = 90 * 86400
        self.code_ttl = 1200
        self.webhooks_enabled = True
        self.webhook_concurrency = 1
        self.webhook_timeout = 2.0
        # The share of `restore` webhooks posted without `custom_fields` (real ones may come
        # so, SPEC §5): a receiver must then read the contact from the API.
        self.restore_without_fields = 0.5
        # After this many 429s within a minute an account is answered 403 for a while.
        self.block_after_429s: int | None = None
        self.block_seconds = 60.0
        self.faults = FaultPlan()
        self.integrations: dict[str, Integration] = {}
        self.accounts: dict[int, Account] = {}
        self.deliveries: list[Delivery] = []
        self.refresh_count = 0
        self._codes: dict[str, Grant] = {}
        self._access: dict[str, Grant] = {}
        self._refresh: dict[str, Grant] = {}
        self._signing_key = secrets.token_bytes(32)
        self._next_contact_id = 1_000_001
        self._next_webhook_id = 839_656
        self._next_tag_id = 501_001
        self._next_note_id = 42_709_001
        self._next_field_id = 302_001
        # Below the generated deals' ids (contacts.py `_LEAD_BASE`), so the two never meet.
        self._next_lead_id = 19_000_001
        self._next_pipeline_id = 3_177_801
        self._next_status_id = 32_393_001
        self._outbox: deque[Delivery] = deque()
        self._poster = Poster(self._pump_deliveries, {"User-Agent": "amoCRM-Webhooks/3.0"})

    # --- integrations and accounts --------------------------------------------------------

    def add_integration(
        self, client_id: str | None, client_secret: str | None, redirect_uri: str | None
    ) -> Integration:
        """Register an integration (its ID, secret key and redirect URI)."""
        if not (client_id and client_secret and redirect_uri):
            raise ValueError("an integration needs a client_id, client_secret and redirect_uri")
        integration = Integration(client_id, client_secret, redirect_uri)
        self.integrations[client_id] = integration
        return integration

    def add_account(
        self,
        account_id: int | None = None,
        subdomain: str | None = None,
        name: str | None = None,
        *,
        country: str = "RU",
        currency: str = "RUB",
    ) -> Account:
        """Create an account (or return the existing one with that id)."""
        if account_id is None:
            account_id = max(self.accounts, default=30_896_270) + 1
        if account_id in self.accounts:
            return self.accounts[account_id]
        subdomain = subdomain or f"sandbox{account_id}"
        account = Account(account_id, subdomain, name or subdomain.title(), country, currency)
        self.accounts[account_id] = account
        return account

    def account(self, account_id: int) -> Account:
        try:
            return self.accounts[account_id]
        except KeyError:
            raise KeyError(f"no sandbox amoCRM account {account_id}") from None

    # --- OAuth ----------------------------------------------------------------------------

    def issue_code(self, account_id: int, client_id: str | None) -> str:
        """An authorization code for `client_id` in this account (single-use, 20 minutes)."""
        self.account(account_id)
        if not client_id or client_id not in self.integrations:
            raise KeyError(f"no sandbox integration {client_id!r}")
        code = "def50200" + secrets.token_hex(300)
        self._codes[code] = Grant(account_id, client_id, time.time() + self.code_ttl)
        return code

    def issue_tokens(self, account_id: int, client_id: str) -> dict[str, Any]:
        """A token pair without the code exchange (for tests that start installed)."""
        self.account(account_id)
        return self._token_pair(account_id, client_id)

    def revoke_tokens(self, account_id: int) -> None:
        """Revoke every token of the account, as when the integration is uninstalled."""
        for grants in (self._access, self._refresh, self._codes):
            for grant in grants.values():
                if grant.account_id == account_id:
                    grant.spent = True

    def token_account(self, access_token: str) -> int | None:
        """The account an access token is valid for, or None."""
        grant = self._access.get(access_token)
        if grant is None or grant.spent or grant.expires_at <= time.time():
            return None
        return grant.account_id

    def oauth_account(self, body: dict[str, Any]) -> int | None:
        """The account a token request is about (by its code or refresh token), if known."""
        grant = self._codes.get(str(body.get("code") or "")) or self._refresh.get(
            str(body.get("refresh_token") or "")
        )
        return grant.account_id if grant is not None else None

    def oauth(self, body: dict[str, Any]) -> OAuthAnswer:
        """`POST /oauth2/access_token`: code exchange or refresh, with amoCRM's errors."""
        grant_type = body.get("grant_type")
        if grant_type not in ("authorization_code", "refresh_token"):
            return _oauth_error(400, "Check the `grant_type` parameter")
        client_id = str(body.get("client_id") or "")
        integration = self.integrations.get(client_id)
        if integration is None:
            return _oauth_error(400, "Check the `client_id` parameter")
        if not secrets.compare_digest(
            str(body.get("client_secret") or ""), integration.client_secret
        ):
            return OAuthAnswer(
                401,
                {
                    "title": "Некорректный клиент",
                    "type": _OAUTH_PROBLEM,
                    "status": 401,
                    "detail": "Авторизация клиента не прошла",
                },
            )
        if str(body.get("redirect_uri") or "") != integration.redirect_uri:
            return _oauth_error(400, "Redirect URI is not associated with client")
        if grant_type == "authorization_code":
            return self._exchange_code(str(body.get("code") or ""), client_id)
        return self._refresh_pair(str(body.get("refresh_token") or ""), client_id)

    def _exchange_code(self, code: str, client_id: str) -> OAuthAnswer:
        grant = self._codes.get(code)
        if grant is None:
            return _oauth_error(400, "Cannot decrypt the authorization code")
        if grant.client_id != client_id:
            return _oauth_error(400, "Authorization code was not issued to this client")
        if grant.spent:
            return _oauth_error(400, "Authorization code has been revoked")
        if grant.expires_at <= time.time():
            return _oauth_error(400, "Authorization code has expired")
        grant.spent = True
        return OAuthAnswer(200, self._token_pair(grant.account_id, client_id))

    def _refresh_pair(self, refresh_token: str, client_id: str) -> OAuthAnswer:
        grant = self._refresh.get(refresh_token)
        # amoCRM answers a spent, revoked or unknown refresh token with 401.
        if grant is None or grant.spent or grant.client_id != client_id:
            return _oauth_error(401, "Token has been revoked")
        if grant.expires_at <= time.time():
            return _oauth_error(401, "Token has expired")
        grant.spent = True  # rotation: the old refresh token dies now
        self.refresh_count += 1
        return OAuthAnswer(200, self._token_pair(grant.account_id, client_id))

    def _token_pair(self, account_id: int, client_id: str) -> dict[str, Any]:
        now = time.time()
        claims = {
            "aud": client_id,
            "jti": str(uuid.uuid4()),
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now) + self.access_token_ttl,
            "sub": str(RESPONSIBLE_USERS[0]),
            "grant_type": "",
            "account_id": account_id,
            "base_domain": "amocrm.ru",
            "version": 2,
            "scopes": ["crm", "files", "files_delete", "notifications", "push_notifications"],
            "hash_uuid": str(uuid.uuid4()),
            "api_domain": "api-b.amocrm.ru",
        }
        access = jwt.encode(claims, self._signing_key, algorithm="HS256")
        refresh = "def50200" + secrets.token_hex(400)
        self._access[access] = Grant(account_id, client_id, now + self.access_token_ttl)
        self._refresh[refresh] = Grant(account_id, client_id, now + self.refresh_token_ttl)
        return {
            "token_type": "Bearer",
            "expires_in": self.access_token_ttl,
            "server_time": int(now),
            "access_token": access,
            "refresh_token": refresh,
        }

    # --- contacts -------------------------------------------------------------------------

    def add_contact(
        self,
        account_id: int,
        name: str = "",
        emails: Sequence[str] = (),
        phones: Sequence[str] = (),
        *,
        responsible_user_id: int | None = None,
        custom_fields_values: FieldValues | None = UNSET,
        contact_id: int | None = None,
        tags: Sequence[str] = (),
        leads: Sequence[int] = (),
        companies: Sequence[int] = (),
    ) -> dict[str, Any]:
        """Create a contact (emits `add_contact`); returns it as the API shows it.

        Without `custom_fields_values`, the fields are built from `emails` and `phones`;
        a contact with neither has `custom_fields_values: null`, as in amoCRM. `contact_id`
        picks the id (to match a recorded webhook); it must be above every id given so far.
        `tags` (names), `leads` and `companies` (ids) are what the contact is linked to.
        """
        account = self.account(account_id)
        if contact_id is not None:
            if contact_id < self._next_contact_id and any(
                len(a.contacts.ids) for a in self.accounts.values()
            ):
                raise ValueError(f"contact ids only grow: {contact_id} is taken or past")
            self._next_contact_id = contact_id
        first, _, last = name.partition(" ")
        fields = (
            build_fields(emails, phones) if custom_fields_values is UNSET else custom_fields_values
        )
        responsible = responsible_user_id or RESPONSIBLE_USERS[0]
        tag_list = [
            dict(tag) for ref in tags if (tag := self._tag(account, {"name": ref}, create=True))
        ]
        data = ContactData(
            name, first, last, responsible, fields, tag_list, tuple(leads), tuple(companies)
        )
        contact_id = self._next_contact_id
        self._next_contact_id += 1
        position = account.contacts.append(contact_id, data, unix_now())
        self._emit(account, "add", position)
        return self._contact_json(account, position)

    def update_contact(
        self,
        account_id: int,
        contact_id: int,
        *,
        name: str | None = None,
        emails: Sequence[str] | None = None,
        phones: Sequence[str] | None = None,
        custom_fields_values: FieldValues | None = UNSET,
    ) -> dict[str, Any]:
        """Change a contact (emits `update_contact`); `emails`/`phones` replace the old ones."""
        account, position = self._find(account_id, contact_id, deleted=False)
        store = account.contacts
        changes: dict[str, Any] = {"name": name, "emails": emails, "phones": phones}
        if custom_fields_values is not UNSET:
            changes["custom_fields"] = custom_fields_values
        store.update(position, with_changes(store.data(position), **changes), unix_now())
        self._emit(account, "update", position)
        return self._contact_json(account, position)

    def delete_contact(self, account_id: int, contact_id: int) -> None:
        """Delete a contact (emits `delete_contact`); it leaves the contact list."""
        account, position = self._find(account_id, contact_id, deleted=False)
        account.contacts.delete(position, unix_now())
        self._emit(account, "delete", position)

    def restore_contact(self, account_id: int, contact_id: int) -> dict[str, Any]:
        """Bring a deleted contact back (emits `restore_contact`)."""
        account, position = self._find(account_id, contact_id, deleted=True)
        account.contacts.restore(position, unix_now())
        self._emit(account, "restore", position)
        return self._contact_json(account, position)

    def get_contact(self, account_id: int, contact_id: int) -> dict[str, Any] | None:
        """The contact as the API shows it; None when absent or deleted."""
        account = self.account(account_id)
        position = account.contacts.position(contact_id)
        if position is None or account.contacts.is_deleted(position):
            return None
        return self._contact_json(account, position)

    def edit_tags(
        self,
        account_id: int,
        contact_id: int,
        *,
        add: Sequence[dict[str, Any]] = (),
        delete: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """`tags_to_add` / `tags_to_delete` of `PATCH /api/v4/contacts`: tags named (or by
        id) are added to or taken off the contact, its other tags untouched. A new name
        becomes an account tag. Emits `update_contact`, as amoCRM does for any edit."""
        account, position = self._find(account_id, contact_id, deleted=False)
        store = account.contacts
        data = store.data(position)
        tags = [dict(tag) for tag in data.tags]
        for ref in add:
            tag = self._tag(account, ref, create=True)
            if tag is not None and all(t["id"] != tag["id"] for t in tags):
                tags.append(dict(tag))
                account.tagged_at.setdefault((contact_id, str(tag["name"]).lower()), time.time())
        for ref in delete:
            tag = self._tag(account, ref, create=False)
            if tag is not None:
                tags = [t for t in tags if t["id"] != tag["id"]]
        changed = with_changes(data)
        changed.tags = tags
        store.update(position, changed, unix_now())
        self._emit(account, "update", position)
        return self._contact_json(account, position)

    def _tag(self, account: Account, ref: dict[str, Any], *, create: bool) -> dict[str, Any] | None:
        if ref.get("id") is not None:
            wanted = int(ref["id"])
            found = [tag for tag in account.tags.values() if tag["id"] == wanted]
            if not found:
                raise KeyError(f"no tag {wanted} in account {account.id}")
            return found[0]
        name = str(ref.get("name") or "").strip()
        if not name:
            raise ValueError("a tag needs an id or a name")
        tag = account.tags.get(name.lower())
        if tag is None and create:
            tag = {"id": self._next_tag_id, "name": name, "color": None}
            self._next_tag_id += 1
            account.tags[name.lower()] = tag
        return tag

    def tags(self, account_id: int, contact_id: int) -> list[str]:
        """The names of the contact's tags, in order."""
        account, position = self._find(account_id, contact_id, deleted=False)
        return [str(tag["name"]) for tag in account.contacts.data(position).tags]

    def tagged(self, account_id: int, tag: str) -> dict[int, float]:
        """The contacts the tag was added to, and when (Unix time) it first was."""
        wanted = tag.strip().lower()
        return {
            contact_id: at
            for (contact_id, name), at in self.account(account_id).tagged_at.items()
            if name == wanted
        }

    def add_note(
        self, account_id: int, contact_id: int, note_type: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        """A note on a contact, as `POST /api/v4/contacts/notes` creates it."""
        account, _position = self._find(account_id, contact_id, deleted=False)
        now = unix_now()
        note = {
            "id": self._next_note_id,
            "entity_id": contact_id,
            "created_by": 0,
            "updated_by": 0,
            "created_at": now,
            "updated_at": now,
            "responsible_user_id": RESPONSIBLE_USERS[0],
            "group_id": 0,
            "note_type": note_type,
            "params": dict(params),
            "account_id": account.id,
        }
        self._next_note_id += 1
        account.notes.append(note)
        return note

    def notes(self, account_id: int, contact_id: int | None = None) -> list[dict[str, Any]]:
        """The account's contact notes (of one contact when given), oldest first."""
        return [
            dict(note)
            for note in self.account(account_id).notes
            if contact_id is None or note["entity_id"] == contact_id
        ]

    # --- catalogs -------------------------------------------------------------------------

    def add_contact_field(
        self,
        account_id: int,
        name: str,
        type: str = "text",  # noqa: A002 - amoCRM's name for it
        *,
        enums: Sequence[str] = (),
        code: str | None = None,
    ) -> dict[str, Any]:
        """A new contact field (enum ids are made up); returns it as the API lists it."""
        account = self.account(account_id)
        field_id = self._next_field_id
        choices = tuple((field_id * 10 + n, value) for n, value in enumerate(enums)) or None
        sort = max((f.sort for f in account.contact_fields), default=500) + 1
        definition = FieldDef(field_id, name, type, code, sort, enums=choices)
        self._next_field_id += 1
        account.contact_fields.append(definition)
        return definition.as_json(account.id, f"https://{account.subdomain}.amocrm.ru")

    def add_pipeline(
        self, account_id: int, name: str, statuses: Sequence[str] = ("Первичный контакт",)
    ) -> dict[str, Any]:
        """A new pipeline: an incoming status, `statuses`, then 142 (won) and 143 (lost)."""
        account = self.account(account_id)
        pipeline_id, first_status = self._next_pipeline_id, self._next_status_id
        self._next_pipeline_id += 1
        self._next_status_id += 3 * (len(statuses) + 2)
        pipeline = make_pipeline(
            pipeline_id, name, len(account.pipelines) + 1, False, statuses, first_status
        )
        account.pipelines.append(pipeline)
        return pipeline.as_json(account.id, f"https://{account.subdomain}.amocrm.ru")

    def generate_contacts(
        self,
        account_id: int,
        n: int,
        *,
        seed: int = 0,
        lead_share: float = LEAD_SHARE,
        lead_statuses: Sequence[tuple[int, int, float]] | None = None,
    ) -> range:
        """Add `n` realistic contacts quickly (no webhooks); returns their ids.

        Names are Russian and English; ~5% have `custom_fields_values: null`, ~10% only a
        phone, ~3% a malformed address, ~7% an address shared with other contacts, ~3% only
        a text field; the rest have one to three addresses (some with capitals, a few the
        same address twice). Apart from that, ~30% are linked to deals, ~12% to a company,
        ~25% have tags, ~4% a legal-entity and ~3% a file field (objects as values). The
        same seed and `n` give the same contacts' shapes.

        Their deals exist as leads (leads.py): `lead_share` of the contacts (0.3 by default)
        have 1 to 3 deals, 2 on average, so 100,000 contacts with `lead_share=0.1` have about
        20,000. `lead_statuses`, `(pipeline id, status id, weight)` triples, says where the
        deals stand (by default every status of every pipeline, three in four in the main
        one): `[(3177727, 142, 1), (3177727, 32392159, 3)]` puts about a quarter at won.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        account = self.account(account_id)
        for tag in GENERATED_TAGS:  # the tags generated contacts carry are the account's
            account.tags.setdefault(str(tag["name"]).lower(), dict(tag))
        units = lead_share_units(lead_share)
        if lead_statuses:
            for pipeline_id, status_id, _weight in lead_statuses:
                if status_id not in account.pipeline(pipeline_id).status_ids():
                    raise ValueError(f"no status {status_id} in pipeline {pipeline_id}")
            plan = StatusPlan.weighted(lead_statuses)
        else:
            plan = StatusPlan.default(account.pipelines)
        account.leads.plans.append((len(account.contacts.ids), plan))
        first_id = self._next_contact_id
        account.contacts.generate(first_id, n, seed, unix_now(), units)
        self._next_contact_id += n
        log.info("sandbox.amocrm.generated", account_id=account_id, contacts=n)
        return range(first_id, first_id + n)

    # --- leads (deals) ----------------------------------------------------------------------

    def create_lead(
        self,
        account_id: int,
        contact_ids: Sequence[int] = (),
        *,
        pipeline_id: int | None = None,
        status_id: int | None = None,
        name: str | None = None,
        price: int = 0,
    ) -> dict[str, Any]:
        """A new deal linked to these contacts, the first the main one (emits `add_lead`).

        Without a pipeline it goes to the main one; without a status, to the pipeline's
        first status after the incoming one (amoCRM's default). Returns it with contacts.
        """
        account = self.account(account_id)
        pipeline_id, status_id = self._placement(account, pipeline_id, status_id)
        positions = []
        for contact_id in contact_ids:
            _account, position = self._find(account_id, contact_id, deleted=False)
            positions.append(position)
        now = unix_now()
        lead = LeadData(
            self._next_lead_id,
            name or f"Сделка #{self._next_lead_id}",
            pipeline_id,
            status_id,
            now,
            now,
            tuple(dict.fromkeys(contact_ids)),
            price=price,
            closed_at=now if status_id in (WON, LOST) else None,
        )
        self._next_lead_id += 1
        store = account.contacts
        for position in positions:
            # Linking shows on the contact (`linked_leads_id`), without a contact webhook.
            data = store.data(position)
            store.explicit[position] = replace(data, leads=(*data.leads, lead.id))
            store.version += 1
        account.leads.put(lead)
        self._emit_lead(account, "add", lead)
        return self._lead_json(account, lead)

    def move_lead(
        self, account_id: int, lead_id: int, status_id: int, *, pipeline_id: int | None = None
    ) -> dict[str, Any]:
        """Move a deal to a status (of another pipeline when given); emits `status_lead`
        and `update_lead`, as a change of status is a change of the deal too."""
        account, lead = self._find_lead(account_id, lead_id, deleted=False)
        if pipeline_id is None and status_id in account.pipeline(lead.pipeline_id).status_ids():
            pipeline_id = lead.pipeline_id
        pipeline_id, status_id = self._placement(account, pipeline_id, status_id)
        now = max(unix_now(), lead.updated_at)
        moved = replace(
            lead,
            pipeline_id=pipeline_id,
            status_id=status_id,
            updated_at=now,
            closed_at=now if status_id in (WON, LOST) else None,
        )
        account.leads.put(moved)
        self._emit_lead(
            account, "status", moved, old_status_id=lead.status_id, old_pipeline_id=lead.pipeline_id
        )
        self._emit_lead(account, "update", moved)
        return self._lead_json(account, moved)

    def update_lead(
        self, account_id: int, lead_id: int, *, name: str | None = None, price: int | None = None
    ) -> dict[str, Any]:
        """Rename a deal or change its price (emits `update_lead`)."""
        account, lead = self._find_lead(account_id, lead_id, deleted=False)
        changed = replace(
            lead,
            name=lead.name if name is None else name,
            price=lead.price if price is None else price,
            updated_at=max(unix_now(), lead.updated_at),
        )
        account.leads.put(changed)
        self._emit_lead(account, "update", changed)
        return self._lead_json(account, changed)

    def delete_lead(self, account_id: int, lead_id: int) -> None:
        """Delete a deal (emits `delete_lead`): it leaves the lists and reads as 204."""
        account, lead = self._find_lead(account_id, lead_id, deleted=False)
        account.leads.delete(lead_id)
        self._emit_lead(account, "delete", lead)

    def restore_lead(self, account_id: int, lead_id: int) -> dict[str, Any]:
        """Bring a deleted deal back where it was (emits `restore_lead`)."""
        account, lead = self._find_lead(account_id, lead_id, deleted=True)
        account.leads.restore(lead_id)
        self._emit_lead(account, "restore", lead)
        return self._lead_json(account, lead)

    def get_lead(self, account_id: int, lead_id: int) -> dict[str, Any] | None:
        """The deal as `GET /api/v4/leads/{id}?with=contacts` shows it; None when absent
        or deleted."""
        account = self.account(account_id)
        lead = account.leads.get(lead_id)
        return None if lead is None else self._lead_json(account, lead)

    def leads_in(
        self, account_id: int, statuses: Sequence[tuple[int | None, int | None]] | None = None
    ) -> list[int]:
        """The ids of the live deals in these (pipeline, status) pairs (all when None)."""
        return list(self.account(account_id).leads.select(statuses))

    def lead_pages(self, account_id: int) -> list[int]:
        """The `page` numbers of the deal list requests answered 200/204, in order."""
        return list(self.account(account_id).leads.pages)

    def live_contacts(self, account: Account, contact_ids: Sequence[int]) -> list[int]:
        """Of these contacts, those not deleted (a deleted contact leaves its deals)."""
        store = account.contacts
        live = []
        for contact_id in contact_ids:
            position = store.position(contact_id)
            if position is not None and not store.is_deleted(position):
                live.append(contact_id)
        return live

    def _lead_json(self, account: Account, lead: LeadData) -> dict[str, Any]:
        return lead_json(
            lead,
            account_id=account.id,
            base_url=f"https://{account.subdomain}.amocrm.ru",
            contacts=self.live_contacts(account, lead.contacts),
        )

    def _placement(
        self, account: Account, pipeline_id: int | None, status_id: int | None
    ) -> tuple[int, int]:
        if pipeline_id is None:
            if status_id is not None and status_id not in (WON, LOST):
                owners = [p for p in account.pipelines if status_id in p.status_ids()]
                if not owners:
                    raise ValueError(f"no status {status_id} in account {account.id}")
                pipeline_id = owners[0].id
            else:
                pipeline_id = next(p.id for p in account.pipelines if p.is_main)
        pipeline = account.pipeline(pipeline_id)
        if status_id is None:
            status_id = pipeline.statuses[1 if len(pipeline.statuses) > 1 else 0].id
        if status_id not in pipeline.status_ids():
            raise ValueError(f"no status {status_id} in pipeline {pipeline_id}")
        return pipeline_id, status_id

    def _find_lead(
        self, account_id: int, lead_id: int, *, deleted: bool
    ) -> tuple[Account, LeadData]:
        account = self.account(account_id)
        lead = account.leads.get(lead_id, deleted=True)
        if lead is None or (lead_id in account.leads.deleted) != deleted:
            state = "deleted" if deleted else "live"
            raise KeyError(f"no {state} lead {lead_id} in account {account_id}")
        return account, lead

    def lead_webhook_body(
        self,
        account_id: int,
        action: LeadAction,
        lead_id: int,
        *,
        old_status_id: int | None = None,
        old_pipeline_id: int | None = None,
    ) -> bytes:
        """The form body amoCRM would post for `action` on the deal as it is now."""
        account = self.account(account_id)
        lead = account.leads.get(lead_id, deleted=True)
        if lead is None:
            raise KeyError(f"no lead {lead_id} in account {account_id}")
        return self._lead_body(
            account, action, lead, old_status_id=old_status_id, old_pipeline_id=old_pipeline_id
        )

    def _lead_body(
        self, account: Account, action: LeadAction, lead: LeadData, **moved_from: int | None
    ) -> bytes:
        """The deal's form body; `moved_from`: `old_status_id` and `old_pipeline_id` of a move."""
        pairs = lead_webhook_pairs(action, lead, account_id=account.id, **moved_from)
        return form_body(pairs + account_pairs(account.id, account.subdomain))

    def _emit_lead(
        self, account: Account, action: LeadAction, lead: LeadData, **moved_from: int | None
    ) -> None:
        event = f"{action}_lead"
        hooks = self._listening(account, event)
        if not hooks:
            return
        body = self._lead_body(account, action, lead, **moved_from)
        for hook in hooks:
            self._outbox.append(
                Delivery(account.id, hook.destination, event, 0, body, lead_id=lead.id)
            )
        self._poster.start()

    def contact_count(self, account_id: int) -> int:
        """Contacts not deleted."""
        return len(self.account(account_id).contacts)

    def contact_pages(self, account_id: int) -> list[int]:
        """The `page` numbers of the contact list requests answered 200/204, in order."""
        return list(self.account(account_id).pages)

    def contact_pages_served(self, account_id: int) -> int:
        return len(self.account(account_id).pages)

    def rate_limited(self, account_id: int | None = None) -> int:
        """How many 429s the rate limit answered (for one account, or all)."""
        if account_id is not None:
            return self.account(account_id).rate_limited
        return sum(account.rate_limited for account in self.accounts.values())

    def blocked(self, account_id: int | None = None) -> int:
        """How many 403s the block answered (for one account, or all)."""
        if account_id is not None:
            return self.account(account_id).blocked
        return sum(account.blocked for account in self.accounts.values())

    def note_rate_limited(self, account: Account) -> None:
        """A 429 was answered to `account`: enough of them in a minute start the block."""
        if self.block_after_429s is None:
            return
        now = time.monotonic()
        recent = account.recent_429s
        recent.append(now)
        while recent and now - recent[0] > BLOCK_WINDOW:
            recent.popleft()
        if len(recent) >= self.block_after_429s:
            account.blocked_until = now + self.block_seconds
            recent.clear()
            log.info("sandbox.amocrm.blocked", account_id=account.id, seconds=self.block_seconds)

    def is_blocked(self, account: Account) -> bool:
        return time.monotonic() < account.blocked_until

    def arrivals(self, account_id: int, since: float | None = None) -> list[float]:
        """When the account's requests arrived (unix time, from `since` on), 429s included."""
        return self.account(account_id).arrivals.since(since)

    def max_per_second(self, account_id: int | None = None, since: float | None = None) -> int:
        """The most requests of the account (or of any one account) in any 1-second window."""
        if account_id is not None:
            return self.account(account_id).arrivals.max_in_window(1.0, since)
        return max(
            (account.arrivals.max_in_window(1.0, since) for account in self.accounts.values()),
            default=0,
        )

    def admit(self, account: Account) -> bool:
        """Record a request's arrival; False (and one more 429 counted) when over the limit.

        Token requests count too: amoCRM's 7 per second are per account, and the account's
        OAuth endpoint is on its host like the API.
        """
        account.arrivals.record()
        if account.window.admit(self.rate_limit_rps):
            return True
        account.rate_limited += 1
        self.note_rate_limited(account)
        return False

    def _find(self, account_id: int, contact_id: int, *, deleted: bool) -> tuple[Account, int]:
        account = self.account(account_id)
        position = account.contacts.position(contact_id)
        if position is None or account.contacts.is_deleted(position) != deleted:
            state = "deleted" if deleted else "live"
            raise KeyError(f"no {state} contact {contact_id} in account {account_id}")
        return account, position

    def _contact_json(self, account: Account, position: int) -> dict[str, Any]:
        store = account.contacts
        return contact_json(
            store.ids[position],
            store.data(position),
            store.created[position],
            store.updated[position],
            account_id=account.id,
            base_url=f"https://{account.subdomain}.amocrm.ru",
        )

    # --- faults ---------------------------------------------------------------------------

    def add_fault(
        self, status: int, *, path: str = "/", times: int | None = 1, applied: bool = False
    ) -> None:
        """Answer the next `times` requests under `path` with `status` (None: until cleared);
        `applied`: carry each out first, so only its answer is lost."""
        self.faults.add(Fault(match=path, status=status, times=times, applied=applied))

    def clear_faults(self) -> None:
        self.faults.clear()

    # --- webhooks -------------------------------------------------------------------------

    def webhooks(self, account_id: int) -> list[dict[str, Any]]:
        """The account's registered webhooks, as `GET /api/v4/webhooks` lists them."""
        account = self.account(account_id)
        ordered = sorted(account.webhooks.values(), key=lambda hook: (hook.sort, hook.id))
        return [hook.as_json(account.id) for hook in ordered]

    def subscribe(
        self, account_id: int, destination: str, settings: Sequence[str], sort: int = 1
    ) -> Webhook:
        """Register (or re-configure) a webhook, as `POST /api/v4/webhooks` does."""
        account = self.account(account_id)
        now = unix_now()
        hook = account.webhooks.get(destination)
        if hook is None:
            hook = Webhook(self._next_webhook_id, destination, list(settings), sort, now, now)
            self._next_webhook_id += 1
            account.webhooks[destination] = hook
        else:
            # Registering a destination again updates it and turns it back on.
            hook.settings, hook.sort, hook.updated_at = list(settings), sort, now
            hook.disabled = False
        return hook

    def unsubscribe(self, account_id: int, destination: str) -> bool:
        return self.account(account_id).webhooks.pop(destination, None) is not None

    def disable_webhook(self, account_id: int, destination: str | None = None) -> int:
        """Turn off the account's webhook at `destination` (every one when None), as amoCRM
        does to a webhook that keeps failing. Returns how many were turned off."""
        hooks = self._hooks(account_id, destination)
        for hook in hooks:
            hook.disabled, hook.updated_at = True, unix_now()
        return len(hooks)

    def remove_webhook(self, account_id: int, destination: str | None = None) -> int:
        """Drop the account's webhook at `destination` (every one when None)."""
        hooks = self._hooks(account_id, destination)
        for hook in hooks:
            del self.account(account_id).webhooks[hook.destination]
        return len(hooks)

    def _hooks(self, account_id: int, destination: str | None) -> list[Webhook]:
        webhooks = self.account(account_id).webhooks
        if destination is None:
            return list(webhooks.values())
        if destination not in webhooks:
            raise KeyError(f"no webhook at {destination} in account {account_id}")
        return [webhooks[destination]]

    def webhook_body(self, account_id: int, action: Action, contact_id: int) -> bytes:
        """The form body amoCRM would post for `action` on the contact as it is now."""
        account = self.account(account_id)
        position = account.contacts.position(contact_id)
        if position is None:
            raise KeyError(f"no contact {contact_id} in account {account_id}")
        return self._webhook_body(account, action, position)

    def _webhook_body(self, account: Account, action: Action, position: int) -> bytes:
        store = account.contacts
        contact_id = store.ids[position]
        data = store.data(position)
        # Which restores come bare is decided by a hash of the id, so it is reproducible.
        if action == "restore" and _share(contact_id) < self.restore_without_fields:
            data = replace(data, custom_fields=None)
        pairs = webhook_pairs(
            action,
            contact_id,
            data,
            store.created[position],
            store.updated[position],
            account_id=account.id,
        )
        return form_body(pairs + account_pairs(account.id, account.subdomain))

    def _listening(self, account: Account, event: str) -> list[Webhook]:
        """The account's webhooks that post `event` (none while webhooks are switched off)."""
        if not self.webhooks_enabled:
            return []
        return [
            hook
            for hook in account.webhooks.values()
            if event in hook.settings and not hook.disabled
        ]

    def _emit(self, account: Account, action: Action, position: int) -> None:
        hooks = self._listening(account, f"{action}_contact")
        if not hooks:
            return
        body = self._webhook_body(account, action, position)
        contact_id = account.contacts.ids[position]
        for hook in hooks:
            self._outbox.append(Delivery(account.id, hook.destination, action, contact_id, body))
        self._poster.start()

    async def _pump_deliveries(self) -> None:
        running: set[asyncio.Task[None]] = set()
        while self._outbox or running:
            while self._outbox and len(running) < max(1, self.webhook_concurrency):
                running.add(asyncio.create_task(self._deliver(self._outbox.popleft())))
            _done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)

    async def _deliver(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        try:
            response = await self._poster.http.post(
                delivery.destination,
                content=delivery.body,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=self.webhook_timeout,
            )
            delivery.status = response.status_code
        except httpx.HTTPError as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
            log.info("sandbox.amocrm.webhook.failed", error=delivery.error)
        self.calls.record(
            Call(
                "webhook",
                "POST",
                urlsplit(delivery.destination).path,
                delivery.status or 0,
                time.time(),
                delivery.account_id,
            )
        )

    async def flush_webhooks(self, timeout: float = 10.0) -> None:
        """Wait until every webhook emitted so far has been posted (or failed)."""
        deadline = time.monotonic() + timeout
        while self._outbox or self._poster.running:
            self._poster.start()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("webhook deliveries did not finish in time")
            assert self._poster.task is not None
            await asyncio.wait({self._poster.task}, timeout=remaining)

    async def aclose(self) -> None:
        """Stop delivering and close the webhook HTTP client."""
        await self._poster.aclose()


def _share(contact_id: int) -> float:
    """A fraction in [0, 1) that a contact id hashes to (not the hash contacts.py uses for
    links and tags, so the two do not go together)."""
    return ((contact_id * 40503) & 0xFFFF) / 65536


_OAUTH_PROBLEM = "https://developers.amocrm.ru/v3/errors/OAuthProblemJson"


def _oauth_error(status: int, hint: str) -> OAuthAnswer:
    """amoCRM's OAuth problem body (the `hint` says what was wrong)."""
    return OAuthAnswer(
        status,
        {
            "hint": hint,
            "title": "Некорректный запрос",
            "type": _OAUTH_PROBLEM,
            "status": status,
            "detail": "В запросе отсутствует ряд параметров или параметры невалидны",
        },
    )
