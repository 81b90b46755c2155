"""Hostile input: property-based runs against the app's own OpenAPI, webhook bodies and
the dashboard's pages and forms.

schemathesis generates valid and invalid requests for every operation of /openapi.json
and sends each to the app in process (ASGI) three times: anonymously, as the admin and as
a widget of a seeded account. Hypothesis generates webhook bodies, and requests to every
dashboard route (paths, queries and forms of huge, negative and unicode values, cursors,
deep JSON) from a logged-in operator. Whatever is sent, the app never answers 5xx, and
every 4xx of the API is `{"error", "detail"}`. Upstream APIs are an
`httpx.MockTransport` that refuses everything the way amoCRM and Unisender do, so no
request leaves the machine.

On SQLite and PostgreSQL (each built by the migrations). Runs are derandomized, so a
failure reproduces on the next run; the number of requests sent is printed at the end.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
import schemathesis
import stamina
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.python import asgi

from amosync.app import create_app
from amosync.config import Settings
from amosync.db.engine import make_engine, make_sessionmaker
from amosync.db.models import Account, Base, Contact, Integration, SyncRun, utcnow
from amosync.http.disposable import issue_disposable_token
from amosync.runtime.crypto import Cipher, token_hash
from amosync.runtime.logging import configure_logging
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.transport import answered_by

ACCOUNT_ID = 1
WEBHOOK_TOKEN = "fuzz-webhook-token-" + "w" * 24
# Bounded for CI (under a minute for the module, both backends, on a quiet machine);
# derandomized, so a failure reproduces. No shrinking: the assertion names the failing
# request, and shrinking requests through the whole app takes minutes.
FUZZ = settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
FUZZ_WEBHOOKS = settings(FUZZ, max_examples=50)
FUZZ_DASHBOARD = settings(FUZZ, max_examples=100)

upstream_calls: list[str] = []
# Requests sent, by backend and kind: printed when the module ends.
sent: Counter[str] = Counter()
# The dashboard's answers by backend and status: the run must reach the pages themselves.
answered: dict[str, Counter[int]] = {"sqlite": Counter(), "postgresql": Counter()}


def upstream(request: httpx.Request) -> httpx.Response:
    """amoCRM and Unisender, refusing every credential (no call leaves the machine)."""
    upstream_calls.append(f"{request.method} {request.url.host}{request.url.path}")
    if request.url.host.startswith("unisender"):
        return httpx.Response(200, json={"error": "invalid api key", "code": "invalid_api_key"})
    if request.url.path == "/oauth2/access_token":
        return httpx.Response(400, json={"hint": "Authorization code has expired", "status": 400})
    return httpx.Response(401, json={"title": "Unauthorized", "status": 401})


async def seed(fuzz_settings: Settings) -> None:
    """Only an active account with an integration, contacts and a finished sync, and a
    disconnected one: every test starts from there, whatever the previous one deleted."""
    cipher = Cipher(fuzz_settings.resolve_encryption_key())
    engine = make_engine(fuzz_settings.database_url)
    async with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(table.delete())
    async with make_sessionmaker(engine)() as session, session.begin():
        session.add_all(
            [
                Account(
                    id=ACCOUNT_ID,
                    subdomain="acme",
                    name="Acme",
                    status="active",
                    unisender_key_enc=cipher.encrypt("fuzz-unisender-key"),
                    unisender_valid=True,
                    list_id=5,
                    settings={},
                    webhook_token_hash=token_hash(WEBHOOK_TOKEN),
                    webhook_token_enc=cipher.encrypt(WEBHOOK_TOKEN),
                ),
                Account(id=2, subdomain="gone", status="disconnected", settings={}),
            ]
        )
        await session.flush()
        session.add_all(
            [
                Integration(
                    account_id=ACCOUNT_ID,
                    client_id=fuzz_settings.amocrm_client_id,
                    access_token_enc=cipher.encrypt("fuzz-access-token"),
                    refresh_token_enc=cipher.encrypt("fuzz-refresh-token"),
                    expires_at=utcnow() + timedelta(days=1),
                    token_version=0,
                    webhook_registered=True,
                ),
                Contact(
                    account_id=ACCOUNT_ID,
                    amocrm_id=10,
                    name="Ann",
                    emails=["ann@example.com"],
                    state="synced",
                    synced_at=utcnow(),
                ),
                Contact(
                    account_id=ACCOUNT_ID,
                    amocrm_id=11,
                    name="Nobody",
                    emails=[],
                    state="unsynced",
                    reason="no_email",
                ),
                SyncRun(account_id=ACCOUNT_ID, status="done", fetched=2, synced=1, unsynced=1),
            ]
        )
    await engine.dispose()


@pytest.fixture(scope="module", autouse=True)
def report_requests(pytestconfig: pytest.Config) -> Iterator[None]:
    started, cpu = time.monotonic(), time.process_time()
    yield
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and capture is not None and sent:
        figures = ", ".join(f"{kind} {count}" for kind, count in sorted(sent.items()))
        seconds = f"{time.monotonic() - started:.0f} s, {time.process_time() - cpu:.0f} s CPU"
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"fuzz: {sum(sent.values())} requests in {seconds} ({figures})")
    sent.clear()


def backend(fuzz_settings: Settings) -> str:
    return "sqlite" if fuzz_settings.is_sqlite else "postgresql"


@pytest.fixture(scope="module")
def fuzz_settings(database_url: str) -> Settings:
    """The migrated database of the backend (SQLite, PostgreSQL), for the module's tests."""
    return make_settings(
        database_url,
        amocrm_base_url="http://amocrm.upstream.test",
        unisender_base_url="http://unisender.upstream.test/ru/api",
    )


@pytest.fixture
def app(fuzz_settings: Settings) -> Iterator[FastAPI]:
    """The app, started in schemathesis's event loop thread, with upstream mocked.

    One per test: schemathesis's pytest plugin ends every ASGI lifespan when a test ends.
    """
    asyncio.run(seed(fuzz_settings))
    configure_logging("console")  # plain tracebacks: structlog's default renders them slowly
    application = create_app(fuzz_settings, migrate=False, worker=False)
    # No waiting between retries of an upstream call: they fail the same way anyway.
    with stamina.set_testing(True, attempts=2):
        with asgi.get_client(application) as http:  # runs the lifespan: services built
            assert http.get("/openapi.json").json() == OPENAPI
        application.state.services.http = answered_by(upstream)
        yield application


@pytest.fixture(scope="module")
def widget_token(fuzz_settings: Settings) -> str:
    current = fuzz_settings
    assert current.amocrm_client_secret
    assert current.token_audience
    return issue_disposable_token(
        secret=current.amocrm_client_secret,
        audience=current.token_audience,
        account_id=ACCOUNT_ID,
        ttl=3600,
    )


# The operations are known at collection time: the schema does not depend on settings or
# data. (schemathesis.pytest.from_fixture would load it from the running app, but does not
# work with pytest 9: it reads `request.node._nodeid`.) Each test passes `app=` to reach
# the module's running app.
OPENAPI = create_app(make_settings("sqlite:///unused.db"), migrate=False, worker=False).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)
schema.config.generation.update(modes=["positive", "negative"])
# The coverage phase (explicit examples: boundary values such as 2**63 for every parameter)
# is most of the run; of the methods no route has, one is enough to see the 405 answer.
schema.config.phases.coverage.unexpected_methods = {"patch"}


def check(response: Any, label: str) -> None:
    """No 5xx; an error is {"error": code, "detail": text}."""
    assert response.status_code < 500, f"{label} -> {response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict), label
        assert set(body) == {"error", "detail"}, f"{label}: {body}"
        assert isinstance(body["error"], str), label
        assert body["error"], label
        assert isinstance(body["detail"], str), label


@schema.parametrize()
@FUZZ
def test_no_caller_ever_gets_a_5xx(
    case: Any, app: FastAPI, widget_token: str, fuzz_settings: Settings
) -> None:
    """Each generated request, as sent by an anonymous caller, the admin and a widget."""
    callers = {
        "anonymous": {},
        "admin": {"Authorization": f"Bearer {ADMIN_TOKEN}"},
        "widget": {"X-Auth-Token": widget_token, "Origin": "https://acme.amocrm.ru"},
    }
    for caller, headers in callers.items():
        if caller == "widget" and case.operation.path == "/webhook":
            # Past the token check, into the parser.
            case.query = {**(case.query or {}), "token": WEBHOOK_TOKEN}
        response = case.call(app=app, headers=headers)
        sent[f"{backend(fuzz_settings)} openapi"] += 1
        check(response, f"{caller} {case.method} {case.formatted_path}")


# --- amoCRM webhooks with the right token: PHP-style keys, any values ------------------

segment = st.one_of(
    st.sampled_from(["contacts", "leads", "companies", "account", "add", "update", "delete"]),
    st.sampled_from(["restore", "id", "name", "custom_fields", "values", "value", "code"]),
    st.sampled_from(["EMAIL", "enum", "type", "_links", "self", "0", "1", "-1", ""]),
    st.integers(0, 2**70).map(str),
    st.text(max_size=6),
)
key = st.builds(
    lambda head, rest: head + "".join(f"[{part}]" for part in rest),
    st.sampled_from(["contacts", "leads", "account", "x"]),
    st.lists(segment, max_size=6),
)
value = st.one_of(
    st.sampled_from(["ann@example.com", "not an address", "", "30896271", "0", "-5"]),
    st.integers(-(2**70), 2**70).map(str),
    st.text(max_size=30),
)


@FUZZ_WEBHOOKS
@given(pairs=st.lists(st.tuples(key, value), max_size=12), raw=st.binary(max_size=40))
def test_any_webhook_body_is_stored_or_refused_with_a_4xx(
    app: FastAPI, fuzz_settings: Settings, pairs: list[tuple[str, str]], raw: bytes
) -> None:
    body = urlencode(pairs).encode() + (b"&" + raw if raw else b"")
    with asgi.get_client(app) as http:
        response = http.post(
            f"/webhook?token={WEBHOOK_TOKEN}",
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    sent[f"{backend(fuzz_settings)} webhook"] += 1
    check(response, f"webhook {body[:200]!r}")
    if response.status_code == 200:
        assert set(json.loads(response.text)) >= {"accepted"}


# --- the dashboard: pages, forms and the progress endpoint, logged in -------------------

huge_ints = st.one_of(
    st.sampled_from([0, -1, 2**31, 2**63 - 1, 2**63, 2**64, 2**70, -(2**63)]),
    st.integers(-(2**80), 2**80),
)
hostile_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "%00", "%ff", "..", "1e5", "0x10", "１２", "١٢", "\u202e", "\x00"]),
)
path_id = st.one_of(huge_ints.map(str), hostile_text.filter(lambda t: t not in ("", ".", "..")))


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


cursor = st.one_of(
    huge_ints.map(lambda n: _cursor(f"k{n}")),
    hostile_text.map(_cursor),
    hostile_text,
)
query_value = st.one_of(hostile_text, huge_ints.map(str), cursor)
query = st.dictionaries(
    st.sampled_from(["cursor", "contacts", "q", "next", "notice", "account_id", "x"]),
    query_value,
    max_size=4,
)
form_key = st.sampled_from(["back", "token", "next", "x"])
form_value = st.one_of(hostile_text, huge_ints.map(str))
deep_json = st.integers(1, 20_000).map(lambda n: "[" * n + "]" * n)

DASHBOARD_GETS = [
    "/",
    "/ui/accounts/{id}",
    "/ui/accounts/{id}/progress",
    "/ui/accounts/{id}/disconnect",
]
DASHBOARD_POSTS = [
    "/ui/accounts/{id}/sync",
    "/ui/accounts/{id}/disconnect",
    "/ui/jobs/{id}/retry",
    "/logout",
    "/login",
]
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@pytest.fixture
def operator(app: FastAPI) -> Iterator[tuple[Any, str]]:
    """A logged-in dashboard client, and the session's CSRF token."""
    with asgi.get_client(app) as http:
        login = http.post("/login", data={"token": ADMIN_TOKEN}, allow_redirects=False)
        assert login.status_code == 303, login.text
        found = CSRF.search(http.get("/").text)
        assert found, "the overview carries no CSRF token"
        yield http, found.group(1)


@FUZZ_DASHBOARD
@given(data=st.data(), post=st.booleans(), hostile_id=path_id, seeded=st.integers(0, 2))
def test_the_dashboard_never_answers_a_5xx(
    operator: tuple[Any, str],
    fuzz_settings: Settings,
    data: Any,
    post: bool,
    hostile_id: str,
    seeded: int,
) -> None:
    http, csrf = operator
    # Two in three examples are about the seeded account, so its pages and forms are
    # reached with hostile queries and forms, not only "no such page".
    ident = str(ACCOUNT_ID) if seeded else hostile_id
    route = data.draw(st.sampled_from(DASHBOARD_POSTS if post else DASHBOARD_GETS))
    path = route.replace("{id}", quote(ident, safe=""))
    params = data.draw(query)
    label = f"{'POST' if post else 'GET'} {path} {params}"
    if not post:
        response = http.get(path, params=params, allow_redirects=False)
    elif data.draw(st.integers(0, 9)) == 0:
        body = data.draw(deep_json)
        json_type = {"Content-Type": "application/json"}
        response = http.post(path, params=params, data=body, headers=json_type)
    else:
        form = data.draw(
            st.dictionaries(st.sampled_from(["back", "token", "next", "x"]), form_value)
        )
        # With the session's token mostly, so the forms get past the CSRF check; never
        # for /logout, which would end the session the next examples use.
        if route != "/logout" and data.draw(st.integers(0, 3)):
            form["csrf"] = csrf
        response = http.post(path, params=params, data=form, allow_redirects=False)
    sent[f"{backend(fuzz_settings)} dashboard"] += 1
    answered[backend(fuzz_settings)][response.status_code] += 1
    assert response.status_code < 500, f"{label} -> {response.status_code}: {response.text[:300]}"


def test_the_dashboard_run_got_past_the_login(fuzz_settings: Settings) -> None:
    """Runs after the dashboard's examples (pytest keeps the module's order per backend)."""
    statuses = answered[backend(fuzz_settings)]
    assert statuses[200] > 0, statuses  # pages and progress shown
    assert statuses[303] > 0, statuses  # forms that did what they were asked
    assert statuses[404] > 0, statuses  # ids of no account
