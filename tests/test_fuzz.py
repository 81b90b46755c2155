"""Hostile input: property-based runs against the app's own OpenAPI, and webhook bodies.

schemathesis generates valid and invalid requests for every operation of /openapi.json
and sends them to the app in process (ASGI): anonymously, as the admin and as a widget of
a seeded account. Whatever it sends, the app never answers 5xx, and every 4xx is
`{"error", "detail"}`. Upstream APIs are an `httpx.MockTransport` that refuses everything
the way amoCRM and Unisender do, so no request leaves the machine.

One backend is enough here (SQLite, built in a temporary directory by the migrations);
runs are derandomized, so a failure reproduces on the next run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import schemathesis
import stamina
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.python import asgi

from amosync.amocrm.disposable import issue_disposable_token
from amosync.app import create_app
from amosync.config import Settings
from amosync.crypto import Cipher, token_hash
from amosync.db.engine import make_engine, make_sessionmaker
from amosync.db.migrate import upgrade
from amosync.db.models import Account, Base, Contact, Integration, SyncRun, utcnow
from amosync.logging import configure_logging
from tests.conftest import ADMIN_TOKEN, make_settings

ACCOUNT_ID = 1
WEBHOOK_TOKEN = "fuzz-webhook-token-" + "w" * 24
# Bounded for CI (about a minute for the module); derandomized, so a failure reproduces.
# No shrinking: schemathesis prints a curl command for the failing request, and shrinking
# requests through the whole app takes minutes.
FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
# Anonymous calls stop at the auth check: fewer examples find what there is to find.
FUZZ_ANONYMOUS = settings(FUZZ, max_examples=10)
FUZZ_WEBHOOKS = settings(FUZZ, max_examples=300)

upstream_calls: list[str] = []


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


@pytest.fixture(scope="module")
def fuzz_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A migrated SQLite database, shared by the module's tests."""
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'amosync.db'}"
    upgrade(url)
    return make_settings(
        url,
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
        application.state.services.http = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
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
@FUZZ_ANONYMOUS
def test_anonymous_callers_never_get_a_5xx(case: Any, app: FastAPI) -> None:
    check(case.call(app=app), f"anonymous {case.method} {case.formatted_path}")


@schema.parametrize()
@FUZZ
def test_the_admin_never_gets_a_5xx(case: Any, app: FastAPI) -> None:
    response = case.call(app=app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    check(response, f"admin {case.method} {case.formatted_path}")


@schema.parametrize()
@FUZZ
def test_a_widget_never_gets_a_5xx(case: Any, app: FastAPI, widget_token: str) -> None:
    if case.operation.path == "/webhook":
        # Past the token check, into the parser.
        case.query = {**(case.query or {}), "token": WEBHOOK_TOKEN}
    headers = {"X-Auth-Token": widget_token, "Origin": "https://acme.amocrm.ru"}
    response = case.call(app=app, headers=headers)
    check(response, f"widget {case.method} {case.formatted_path}")


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
    app: FastAPI, pairs: list[tuple[str, str]], raw: bytes
) -> None:
    body = urlencode(pairs).encode() + (b"&" + raw if raw else b"")
    with asgi.get_client(app) as http:
        response = http.post(
            f"/webhook?token={WEBHOOK_TOKEN}",
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    check(response, f"webhook {body[:200]!r}")
    if response.status_code == 200:
        assert set(json.loads(response.text)) >= {"accepted"}
