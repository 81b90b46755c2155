"""Bundled amoCRM (Kommo) API v4 and Unisender API simulators (SPEC §7).

One ASGI app serves both on one port: amoCRM at the root (`/oauth2/access_token`,
`/api/v4/...`), Unisender at `/{lang}/api/{method}` and control routes at `/_sandbox/...`.
Point the service at it with

    AMOSYNC_AMOCRM_BASE_URL=http://127.0.0.1:PORT
    AMOSYNC_UNISENDER_BASE_URL=http://127.0.0.1:PORT/ru/api

Every amoCRM account shares that base URL, so the sandbox tells accounts apart by the
access token (and, on the OAuth endpoint, by the code or refresh token).

In-process use (tests, the demo):

    sb = Sandbox()
    sb.amocrm.add_integration(client_id, client_secret, redirect_uri)
    sb.amocrm.add_account(account_id=30896271, subdomain="acme", name="Acme")
    code = sb.amocrm.issue_code(30896271, client_id)
    ann = sb.amocrm.add_contact(30896271, name="Ann", emails=["a@x.com"], phones=["+7..."])
    sb.amocrm.update_contact(30896271, ann["id"], emails=["b@x.com"])
    sb.amocrm.generate_contacts(30896271, 100_000, seed=1)
    sb.amocrm.latency = 0.03; sb.amocrm.rate_limit_rps = 7; sb.amocrm.access_token_ttl = 3600
    sb.unisender.add_key("key"); sb.unisender.reject("x@y.z", "invalid_arg")
    async with serve(sb, host="127.0.0.1", port=0) as base_url:
        ...
        await sb.amocrm.flush_webhooks()
    sb.calls.count_where(api="amocrm", path="/api/v4/contacts")

See `amocrm.AmoCRMSimulator` and `unisender.UnisenderSimulator` for every knob and helper,
`controls` for the `/_sandbox` routes, and `remote.RemoteSandbox` for the same API against a
sandbox in another process (`main(host, port)` runs one, blocking).

What is faithful (and pinned by tests/sandbox): OAuth code exchange with single-use codes,
refresh-token rotation (a spent refresh token → 401, hint "Token has been revoked"),
access-token expiry (→ 401), amoCRM's problem+json error bodies; contact pages (`limit` ≤ 250,
HAL `_links.next` only when more follow, **204 with an empty body** past the end,
`filter[updated_at][from|to]`, `order[id|updated_at]`); the catalogs (contact fields with
their `enums`, pipelines whose statuses include 142 and 143, contact tags); deals linked to
contacts, listed by `filter[statuses][i][pipeline_id|status_id]` with `with=contacts` and read
one by one (204 when deleted); webhook registration and **real-format webhooks** (form-encoded
PHP-style keys) posted on every contact and deal change; a per-account rate limit answering
429. Unisender: every answer is HTTP 200 — errors are
`{"error", "code"}` (`invalid_api_key`, `invalid_arg`, `api_call_limit_exceeded_for_api_key`,
`retry_later`, ...); `importContacts` takes ≤ 500 rows and reports rejected rows in `log`;
unsubscribed addresses stay unsubscribed; `exclude` keeps the contact; `getFields` and
`createField` (names unique regardless of case), and `importContacts` storing `phone`,
`tags` (added, at most 10) and user fields on the contact, refusing a column that names no
field.
"""

from amosync.sandbox.amocrm import AmoCRMSimulator, Delivery
from amosync.sandbox.calls import Call, CallLog
from amosync.sandbox.remote import RemoteSandbox
from amosync.sandbox.server import create_app, main, serve
from amosync.sandbox.simulators import DEMO_ACCOUNT_ID, DEMO_SUBDOMAIN, DEMO_UNISENDER_KEY, Sandbox
from amosync.sandbox.unisender import UnisenderSimulator

__all__ = [
    "DEMO_ACCOUNT_ID",
    "DEMO_SUBDOMAIN",
    "DEMO_UNISENDER_KEY",
    "AmoCRMSimulator",
    "Call",
    "CallLog",
    "Delivery",
    "RemoteSandbox",
    "Sandbox",
    "UnisenderSimulator",
    "create_app",
    "main",
    "serve",
]
