"""The parser and the models against real amoCRM payloads (tests/fixtures/amocrm, SOURCES.md)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiolimiter import AsyncLimiter

from amosync.amocrm.client import AmoCRMClient, refresh_tokens
from amosync.amocrm.models import ContactsResponse, TokenPair
from amosync.amocrm.webhooks import ContactChange, LeadAction, LeadChange, parse_webhook
from amosync.errors import AmoCRMBlocked, AuthorizationRevoked, PermanentUpstreamError
from amosync.sync.mapping import contact_emails
from amosync.upstream.retry import RetryPolicy
from tests.transport import Script

CORPUS = Path(__file__).parent.parent / "fixtures" / "amocrm"
WEBHOOKS = sorted((CORPUS / "webhooks").glob("*.form"))


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


# What each corpus webhook means to amosync: its account and its contact changes.
EXPECTED: dict[str, tuple[int | None, str | None, list[ContactChange]]] = {
    "contact_update_linked_leads_tags.form": (
        None,
        "apfitness",
        [
            ContactChange(
                amocrm_id=22309159,
                action="upsert",
                raw_action="update",
                name="Иджян Илья Юрьевич",
                emails=["kloder3@gmail.com"],
                updated_at=1538066975,
            )
        ],
    ),
    "lead_status_bare_date_tags.form": (None, "apfitness", []),
    "lead_add.form": (None, "test000002", []),
    "lead_update.form": (None, "test000002", []),
    "lead_status.form": (None, "test000002", []),
    "lead_delete_only_id.form": (10216991, "test000002", []),
    "contact_add_amocrm_webhooks_3.form": (
        32427762,
        "etesttask",
        [
            ContactChange(
                amocrm_id=37054081,
                action="upsert",
                raw_action="add",
                name="Абиба абибович",
                updated_at=1748289231,
            )
        ],
    ),
    "contact_update_code_after_values.form": (
        32427762,
        "etesttask",
        [
            ContactChange(
                amocrm_id=37054081,
                action="upsert",
                raw_action="update",
                name="Абиба абибович",
                emails=["444"],
                updated_at=1748292937,
            )
        ],
    ),
    "contact_add_without_fields.form": (
        None,
        "test000002",
        [
            ContactChange(
                amocrm_id=1112,
                action="upsert",
                raw_action="add",
                name="wqds",
                updated_at=1456824964,
            )
        ],
    ),
    "contact_restore_without_fields.form": (
        None,
        "test000002",
        # Nothing of the contact's fields came: its addresses must be read from the API.
        [
            ContactChange(
                amocrm_id=1065,
                action="fetch",
                raw_action="restore",
                name="Some name",
                updated_at=1456827128,
            )
        ],
    ),
    "company_add.form": (None, "test000002", []),
    "contact_add_linked_lead_kommo.form": (
        36398783,
        "rusvenezoficial",
        [
            ContactChange(
                amocrm_id=43684617913,
                action="upsert",
                raw_action="add",
                name="Cristian Aguilera",
                updated_at=1748800060,
            )
        ],
    ),
    "contact_delete.form": (
        30896271,
        "acme",
        [
            ContactChange(amocrm_id=35144366, action="delete", raw_action="delete"),
            ContactChange(amocrm_id=35144367, action="delete", raw_action="delete"),
        ],
    ),
    "contact_delete_only_id.form": (
        30896271,
        "acme",
        [ContactChange(amocrm_id=35144368, action="delete", raw_action="delete")],
    ),
    "contact_update_all_parts.form": (
        30896271,
        "acme",
        [
            ContactChange(
                amocrm_id=35144369,
                action="upsert",
                raw_action="update",
                name="Мария Соколова",
                emails=["maria.sokolova@example.com", "m.sokolova@corp.example"],
                updated_at=1733150000,
            )
        ],
    ),
}


def moved(
    lead_id: int, action: LeadAction, pipeline_id: int, status_id: int, unix: int
) -> LeadChange:
    """A deal change that names where the deal stands and when it changed."""
    at = datetime.fromtimestamp(unix, UTC)
    return LeadChange(
        lead_id=lead_id, action=action, pipeline_id=pipeline_id, status_id=status_id, updated_at=at
    )


# What each deal webhook of the corpus means: its deal changes (no contact changes).
LEAD_EXPECTED: dict[str, list[LeadChange]] = {
    "lead_add.form": [moved(31926529, "add", 2116, 10216993, 1456824464)],
    "lead_update.form": [moved(31926520, "update", 2116, 10216994, 1456820780)],
    "lead_status.form": [moved(31926520, "status", 2116, 10216994, 1456820780)],
    "lead_status_bare_date_tags.form": [moved(10701093, "status", 9217056, 142, 1539782664)],
    "lead_delete_only_id.form": [LeadChange(lead_id=31926520, action="delete")],
}


@pytest.mark.parametrize("name", sorted(LEAD_EXPECTED))
def test_corpus_deal_webhooks_parse_to_their_deal_changes(name: str) -> None:
    payload = parse_webhook(corpus(f"webhooks/{name}"))
    assert list(payload.leads) == LEAD_EXPECTED[name]
    assert payload.changes == []


def test_contact_webhooks_have_no_deal_changes() -> None:
    for path in WEBHOOKS:
        if not path.name.startswith("lead_"):
            assert parse_webhook(path.read_bytes()).leads == (), path.name


def test_every_corpus_webhook_has_an_expectation() -> None:
    assert sorted(EXPECTED) == [path.name for path in WEBHOOKS]


@pytest.mark.parametrize("path", WEBHOOKS, ids=lambda path: path.stem)
def test_corpus_webhooks_parse_to_their_contact_changes(path: Path) -> None:
    account_id, subdomain, changes = EXPECTED[path.name]

    payload = parse_webhook(path.read_bytes())

    assert (payload.account_id, payload.subdomain) == (account_id, subdomain)
    # Tags and other fields are checked below, on the bodies that carry them.
    assert [replace(c, tags=[], fields=[]) for c in payload.changes] == changes


def test_corpus_webhooks_carry_their_tags_and_other_fields() -> None:
    """Tags (`[tags][i][name]`) and the fields other than e-mail, in the API's
    `custom_fields_values` shape, for the field mapping and the tag rules (SPEC §8)."""
    (real,) = parse_webhook(corpus("webhooks/contact_update_linked_leads_tags.form")).changes
    assert real.tags == ["Заявка с сайта", "callback"]
    by_id = {f["field_id"]: f for f in real.fields}
    assert by_id[54667] == {
        "field_id": 54667,
        "field_code": "PHONE",
        "values": [{"value": "89031453455", "enum_id": 114611}],
    }
    # A select without `code`: its value is the option's text, its enum the option's id.
    assert by_id[548465]["field_code"] is None
    assert by_id[548465]["values"] == [{"value": "По рекомендации", "enum_id": 1143911}]
    assert by_id[72337]["values"] == [{"value": "Москва"}]
    assert all(f["field_code"] != "EMAIL" for f in real.fields)

    (built,) = parse_webhook(corpus("webhooks/contact_update_all_parts.form")).changes
    assert built.tags == ["vip", "Выставка 2026"]
    # A date field's bare number is kept as the value.
    assert {"field_id": 301001, "field_code": None, "values": [{"value": "631152000"}]} in (
        built.fields
    )

    (untagged,) = parse_webhook(corpus("webhooks/contact_add_linked_lead_kommo.form")).changes
    assert untagged.tags == []


def test_a_restore_with_fields_is_an_upsert() -> None:
    """Only a restore without `custom_fields` needs the API; one with them is complete."""
    body = corpus("webhooks/contact_update_all_parts.form").replace(
        b"contacts%5Bupdate%5D", b"contacts%5Brestore%5D"
    )
    (change,) = parse_webhook(body).changes
    assert (change.action, change.raw_action) == ("upsert", "restore")
    assert change.emails == ["maria.sokolova@example.com", "m.sokolova@corp.example"]


# --- API pages --------------------------------------------------------------------------


def test_a_page_with_every_field_type_validates_and_yields_only_string_addresses() -> None:
    page = ContactsResponse.model_validate_json(corpus("api/contacts_page_every_field_type.json"))

    contacts = {contact.id: contact for contact in page.contacts}
    assert list(contacts) == [35144369, 35144370, 35144371, 722830]
    assert page.links.next is not None
    emails = {cid: contact_emails(c.custom_fields_values) for cid, c in contacts.items()}
    assert emails[35144369].valid == ["maria.sokolova@example.com", "M.Sokolova@Corp.Example"]
    assert emails[35144370].valid == ["petrov@example.com"]
    # Object, list, null and missing values of an EMAIL field are skipped, not the page.
    assert emails[35144371].valid == ["kept@example.com"]
    assert (emails[722830].valid, emails[722830].invalid) == ([], [])


def test_object_values_survive_validation_as_they_came() -> None:
    """Skipped by the mapping, but not mangled by the model (a later reader may want them)."""
    page = ContactsResponse.model_validate_json(corpus("api/contacts_page_every_field_type.json"))
    fields = {f["field_type"]: f for f in page.contacts[0].custom_fields_values or ()}
    legal = fields["legal_entity"]["values"][0]
    assert isinstance(legal, dict)
    assert legal["value"]["vat_id"] == "7701234567"
    assert fields["file"]["values"][0]["value"]["file_name"] == "dogovor.pdf"
    chained = fields["chained_list"]["values"][0]
    assert chained == {"catalog_id": 5067, "catalog_element_id": 1234567}


# --- OAuth ------------------------------------------------------------------------------


def test_the_token_body_validates() -> None:
    pair = TokenPair.model_validate_json(corpus("oauth/token.json"))
    assert (pair.token_type, pair.expires_in) == ("Bearer", 86400)
    assert pair.refresh_token.startswith("def50200")


# --- error bodies, as the client reads them ---------------------------------------------
# httpx.MockTransport here: the sandbox answers its errors as problem+json, and cannot give
# the nginx page a real block answers with.


def answering(*responses: httpx.Response) -> httpx.AsyncClient:
    return Script(*responses).client()


def problem(name: str, status: int) -> httpx.Response:
    return httpx.Response(
        status,
        content=corpus(f"oauth/{name}"),
        headers={"Content-Type": "application/problem+json"},
    )


async def refresh_with(http: httpx.AsyncClient) -> TokenPair:
    return await refresh_tokens(
        http,
        "https://acme.amocrm.ru",
        client_id="client",
        client_secret="secret",
        redirect_uri="https://amosync.example/vidget",
        refresh_token="def50200spent",
        retry_policy=RetryPolicy(attempts=2, timeout=5, wait_initial=0, wait_max=0, wait_jitter=0),
    )


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("error_401_refresh_token_revoked.json", 401),
        ("error_400_code_revoked.json", 400),
    ],
)
async def test_refused_grants_are_authorization_revoked(name: str, status: int) -> None:
    async with answering(problem(name, status)) as http:
        with pytest.raises(AuthorizationRevoked) as caught:
            await refresh_with(http)
    assert caught.value.status == status
    assert "revoked" in (caught.value.body or "")


async def test_a_refused_client_is_permanent() -> None:
    async with answering(problem("error_401_invalid_client.json", 401)) as http:
        with pytest.raises(PermanentUpstreamError) as caught:
            await refresh_with(http)
    assert caught.value.status == 401


async def test_the_token_body_is_read_by_the_refresh() -> None:
    token = httpx.Response(200, content=corpus("oauth/token.json"))
    async with answering(token) as http:
        pair = await refresh_with(http)
    assert pair.expires_in == 86400


class _Tokens:
    async def access_token(self) -> str:
        return "dead"

    async def refresh(self, _stale: str) -> str:
        return "also-dead"


async def test_an_api_401_after_a_refresh_is_authorization_revoked() -> None:
    async with answering(problem("error_401_api_unauthorized.json", 401)) as http:
        client = AmoCRMClient("https://acme.amocrm.ru", _Tokens(), AsyncLimiter(100, 1), http=http)
        with pytest.raises(AuthorizationRevoked):
            await client.get_account()


async def test_the_real_block_page_after_429s_is_amocrm_blocked() -> None:
    """A blocked account answers 403 with nginx's HTML, not JSON (SOURCES.md)."""
    too_many = problem("error_429.json", 429)
    blocked = httpx.Response(
        403, content=corpus("oauth/error_403_blocked.html"), headers={"Content-Type": "text/html"}
    )
    policy = RetryPolicy(attempts=3, timeout=5, wait_initial=0, wait_max=0, wait_jitter=0)
    async with answering(too_many, blocked) as http:
        client = AmoCRMClient(
            "https://acme.amocrm.ru",
            _Tokens(),
            AsyncLimiter(100, 1),
            http=http,
            retry_policy=policy,
        )
        with pytest.raises(AmoCRMBlocked) as caught:
            await client.get_account()
    assert caught.value.status == 403
    assert "403 Forbidden" in (caught.value.body or "")
