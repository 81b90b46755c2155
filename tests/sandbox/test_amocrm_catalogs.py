"""The catalogs (contact fields, lead pipelines, contact tags): the real shapes of
tests/fixtures/amocrm/api parse, the sandbox serves the same shapes, and the client reads every
page of them over real HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from amosync.amocrm.client import AmoCRMClient
from amosync.amocrm.models import (
    CustomField,
    CustomFieldsResponse,
    Pipeline,
    PipelinesResponse,
    TagsResponse,
)
from amosync.sandbox.contacts import CITY_FIELD, SOURCE_FIELD
from tests.sandbox.conftest import ACCOUNT_ID, FixedToken, Served, limiter

API = Path(__file__).parents[1] / "fixtures" / "amocrm" / "api"


def test_the_documented_catalog_answers_parse() -> None:
    fields = CustomFieldsResponse.model_validate_json(
        (API / "custom_fields_page.json").read_bytes()
    )
    assert [(f.id, f.type, f.enums) for f in fields.custom_fields] == [
        (4439091, "text", []),  # `enums: null`
        (4440043, "date", []),
    ]
    assert fields.links.next is not None
    select = CustomField.model_validate_json((API / "custom_field_select.json").read_bytes())
    assert (select.code, [(e.id, e.value) for e in select.enums]) == (
        None,
        [(867968, "New"), (867970, "Regular"), (867972, "VIP")],
    )
    pipelines = PipelinesResponse.model_validate_json((API / "leads_pipelines.json").read_bytes())
    [pipeline] = pipelines.pipelines
    assert (pipeline.id, pipeline.name) == (3177727, "Воронка")
    assert [s.id for s in pipeline.statuses] == [32392156, 32392159, 32392165, 142, 143]
    tags = TagsResponse.model_validate_json((API / "tags_page.json").read_bytes())
    assert [(t.id, t.name) for t in tags.tags] == [
        (2707, "Заявка с сайта"),
        (2709, "Техническая поддержка"),
    ]
    assert tags.links.next is not None


def test_a_pipeline_built_by_hand_keeps_its_statuses() -> None:
    """Others build `Pipeline(id, name, statuses)` directly (settings tests)."""
    pipeline = Pipeline.model_validate({"id": 1, "name": "P", "statuses": [{"id": 142}]})
    assert [s.id for s in pipeline.statuses] == [142]


async def test_sandbox_catalogs_have_the_documented_keys(served: Served, token: str) -> None:
    served.amo.generate_contacts(ACCOUNT_ID, 100, seed=1)
    fields = (await served.api("GET", "/api/v4/contacts/custom_fields", token)).json()
    documented = orjson_file("custom_fields_page.json")
    assert set(documented) - {"_page_count"} <= set(fields)
    for field in fields["_embedded"]["custom_fields"]:
        assert set(orjson_file("custom_field_select.json")) - set(field) <= {
            "tracking_callback",
            "triggers",
            "currency",
            "hidden_statuses",
            "chained_lists",  # leads-only keys
        }
    pipelines = (await served.api("GET", "/api/v4/leads/pipelines", token)).json()
    real = orjson_file("leads_pipelines.json")["_embedded"]["pipelines"][0]
    for pipeline in pipelines["_embedded"]["pipelines"]:
        assert set(real) <= set(pipeline)
        for status in pipeline["_embedded"]["statuses"]:
            assert set(real["_embedded"]["statuses"][0]) <= set(status)
    tags = await served.api("GET", "/api/v4/contacts/tags", token)
    assert tags.headers["content-type"] == "application/hal+json"
    assert set(orjson_file("tags_page.json")["_embedded"]["tags"][0]) <= set(
        tags.json()["_embedded"]["tags"][0]
    )


def orjson_file(name: str) -> dict[str, object]:
    value = orjson.loads((API / name).read_bytes())
    assert isinstance(value, dict)
    return value


async def test_client_reads_the_contact_fields_generated_contacts_use(
    served: Served, token: str
) -> None:
    ids = served.amo.generate_contacts(ACCOUNT_ID, 500, seed=2)
    async with AmoCRMClient(served.url, FixedToken(token), limiter()) as client:
        fields = {field.id: field for field in await client.contact_fields()}
    assert {f.code for f in fields.values()} >= {"PHONE", "EMAIL", "POSITION"}
    assert fields[CITY_FIELD["field_id"]].type == "text"
    source = fields[SOURCE_FIELD["field_id"]]
    assert (source.type, len(source.enums)) == ("select", 4)
    choices = {enum.id: enum.value for enum in source.enums}
    cities = sources = 0
    for contact_id in ids:
        contact = served.amo.get_contact(ACCOUNT_ID, contact_id)
        assert contact is not None
        for value in contact["custom_fields_values"] or ():
            assert value["field_id"] in fields  # every value refers to a catalog field
            if value["field_id"] == CITY_FIELD["field_id"]:
                cities += 1
            if value["field_id"] == SOURCE_FIELD["field_id"]:
                sources += 1
                [choice] = value["values"]
                assert choices[choice["enum_id"]] == choice["value"]
    assert 0.25 < cities / len(ids) < 0.5
    assert 0.1 < sources / len(ids) < 0.3


async def test_client_reads_every_page_of_fields_and_tags(served: Served, token: str) -> None:
    for n in range(300):
        served.amo.add_contact_field(ACCOUNT_ID, f"Поле {n}", "select", enums=("да", "нет"))
    for n in range(260):
        served.amo.add_contact(ACCOUNT_ID, f"C{n}", tags=[f"tag {n}"])
    async with AmoCRMClient(served.url, FixedToken(token), limiter()) as client:
        fields = await client.contact_fields()
        tags = await client.contact_tags()
    assert len(fields) == 307
    assert fields[-1].name == "Поле 299"
    assert [enum.value for enum in fields[-1].enums] == ["да", "нет"]
    assert sorted(tag.name for tag in tags) == sorted(f"tag {n}" for n in range(260))
    pages = [c.path for c in served.sandbox.calls if c.path.endswith("/tags")]
    assert len(pages) == 2  # 250 a page


async def test_client_reads_pipelines_with_won_and_lost(served: Served, token: str) -> None:
    added = served.amo.add_pipeline(ACCOUNT_ID, "Опт", ["Счёт выставлен", "Оплачен"])
    async with AmoCRMClient(served.url, FixedToken(token), limiter()) as client:
        pipelines = await client.pipelines()
    assert [p.name for p in pipelines] == ["Воронка", "Партнёры", "Опт"]
    for pipeline in pipelines:
        ids = [status.id for status in pipeline.statuses]
        assert ids[-2:] == [142, 143]
        assert len(set(ids)) == len(ids) > 3
    assert [s.name for s in pipelines[2].statuses][1:3] == ["Счёт выставлен", "Оплачен"]
    assert pipelines[2].id == added["id"]
    # Working statuses have ids of their own across pipelines; only 142 and 143 repeat.
    working = [s.id for p in pipelines for s in p.statuses if s.id not in (142, 143)]
    assert len(set(working)) == len(working)


async def test_no_tags_is_204_and_an_empty_catalog(served: Served, token: str) -> None:
    response = await served.api("GET", "/api/v4/contacts/tags", token)
    assert (response.status_code, response.content) == (204, b"")
    async with AmoCRMClient(served.url, FixedToken(token), limiter()) as client:
        assert await client.contact_tags() == []
    served.amo.generate_contacts(ACCOUNT_ID, 10)
    listed = (await served.api("GET", "/api/v4/contacts/tags", token)).json()
    assert "vip" in [tag["name"] for tag in listed["_embedded"]["tags"]]


@pytest.mark.parametrize(
    ("query", "status"), [("limit=251", 400), ("limit=x", 400), ("page=0", 400), ("page=2", 204)]
)
async def test_catalog_paging_is_checked(
    served: Served, token: str, query: str, status: int
) -> None:
    response = await served.api("GET", f"/api/v4/contacts/custom_fields?{query}", token)
    assert response.status_code == status
    if status == 400:
        assert response.headers["content-type"] == "application/problem+json"


async def test_fields_default_to_50_a_page(served: Served, token: str) -> None:
    for n in range(60):
        served.amo.add_contact_field(ACCOUNT_ID, f"F{n}")
    first = (await served.api("GET", "/api/v4/contacts/custom_fields", token)).json()
    assert len(first["_embedded"]["custom_fields"]) == 50
    next_url = httpx.URL(first["_links"]["next"]["href"])
    second = (await served.api("GET", f"{next_url.path}?{next_url.query.decode()}", token)).json()
    assert len(second["_embedded"]["custom_fields"]) == 17
    assert "next" not in second["_links"]
