"""User fields, phone, tags and per-row lists: the client against the sandbox over HTTP.

The shapes (getFields entries, createField's answer and arguments, importContacts' `phone`,
`tags`, `overwrite_tags` and per-row `email_list_ids`) are Unisender's, with sources in
tests/fixtures/unisender/SOURCES.md ("User fields").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import orjson
import pytest
from aiolimiter import AsyncLimiter

from amosync.errors import PermanentUpstreamError
from amosync.sandbox import RemoteSandbox, Sandbox, serve
from amosync.sync.apply import is_row_error
from amosync.unisender.client import FieldNotCreated, UnisenderClient, encode_import
from amosync.unisender.models import ImportRow
from amosync.upstream.retry import RetryPolicy
from tests.transport import Script

KEY = "unisender-fields-key"
NO_RETRY = RetryPolicy(attempts=1)


@pytest.fixture
async def sandbox() -> AsyncIterator[tuple[Sandbox, str]]:
    sb = Sandbox()
    sb.unisender.add_key(KEY)
    async with serve(sb, host="127.0.0.1", port=0) as url:
        yield sb, url


@pytest.fixture
async def client(sandbox: tuple[Sandbox, str]) -> AsyncIterator[UnisenderClient]:
    _, url = sandbox
    async with UnisenderClient(
        f"{url}/ru/api", KEY, AsyncLimiter(1000, 1), retry_policy=NO_RETRY
    ) as unisender:
        yield unisender


def calls(sb: Sandbox, method: str) -> int:
    return sb.calls.count_where(api="unisender", path=f"/ru/api/{method}")


async def test_a_new_account_has_the_name_field_and_fields_can_be_created(
    sandbox: tuple[Sandbox, str], client: UnisenderClient
) -> None:
    sb, _ = sandbox
    assert [(f.name, f.type) for f in await client.get_fields()] == [("Name", "string")]
    field_id = await client.create_field("city")
    number_id = await client.create_field("visits", type="number")
    fields = await client.get_fields()
    assert [(f.id, f.name, f.type) for f in fields][1:] == [
        (field_id, "city", "string"),
        (number_id, "visits", "number"),
    ]
    assert [f["name"] for f in sb.unisender.fields(KEY)] == ["Name", "city", "visits"]


@pytest.mark.parametrize(
    ("name", "kind", "says"),
    [
        ("City", "string", "already exists"),  # unique regardless of case
        ("1city", "string", "Invalid field name"),
        ("my city", "string", "Invalid field name"),
        ("город", "string", "Invalid field name"),
        ("region", "json", "type"),
    ],
)
async def test_create_field_refuses_what_unisender_refuses(
    client: UnisenderClient, name: str, kind: str, says: str
) -> None:
    await client.create_field("city")
    with pytest.raises(PermanentUpstreamError) as caught:
        await client.create_field(name, type=kind)
    assert caught.value.code == "invalid_arg"
    assert says in caught.value.message


async def test_phone_tags_and_a_custom_field_arrive_and_a_missing_field_is_created_once(
    sandbox: tuple[Sandbox, str], client: UnisenderClient
) -> None:
    sb, _ = sandbox
    list_id = await client.create_list("amoCRM")
    first = [
        ImportRow(
            "ann@example.com",
            "Ann",
            fields={"phone": "+79261232323", "tags": "vip,partner", "city": "Москва"},
        ),
        ImportRow("bob@example.com", "Bob", fields={"city": "Тверь"}),
        ImportRow("eve@example.com", "Eve"),
    ]
    result = await client.import_contacts(first, list_id=list_id)
    assert (result.inserted, result.log) == (3, [])
    second = [ImportRow("cat@example.com", "Cat", fields={"city": "Казань", "tags": "new"})]
    await client.import_contacts(second, list_id=list_id)

    assert calls(sb, "createField") == 1
    assert calls(sb, "getFields") == 1
    assert [f["name"] for f in sb.unisender.fields(KEY)] == ["Name", "city"]
    ann = sb.unisender.contact(KEY, "ann@example.com")
    assert ann is not None
    assert (ann["phone"], ann["tags"], ann["fields"]) == (
        "+79261232323",
        ["vip", "partner"],
        {"Name": "Ann", "city": "Москва"},
    )
    bob = sb.unisender.contact(KEY, "bob@example.com")
    assert bob is not None
    assert (bob["phone"], bob["tags"], bob["fields"]["city"]) == (None, [], "Тверь")
    contact = await client.get_contact("cat@example.com")
    assert contact is not None
    assert contact.fields == {"Name": "Cat", "city": "Казань"}
    assert sb.unisender.list_members(KEY, list_id) == {
        "ann@example.com",
        "bob@example.com",
        "eve@example.com",
        "cat@example.com",
    }


async def test_tags_are_added_never_removed_and_at_most_ten_kept(
    sandbox: tuple[Sandbox, str], client: UnisenderClient
) -> None:
    sb, _ = sandbox
    list_id = await client.create_list("amoCRM")

    async def send(tags: str) -> list[str]:
        row = ImportRow("ann@example.com", "Ann", fields={"tags": tags})
        await client.import_contacts([row], list_id=list_id)
        contact = sb.unisender.contact(KEY, "ann@example.com")
        assert contact is not None
        return list(contact["tags"])

    assert await send("vip,partner") == ["vip", "partner"]
    assert await send("client") == ["vip", "partner", "client"]  # vip stays
    # No `tags` value at all: the column is absent and nothing changes.
    await client.import_contacts([ImportRow("ann@example.com", "Ann")], list_id=list_id)
    assert await send(",".join(f"t{i}" for i in range(12))) == [
        "vip",
        "partner",
        "client",
        *(f"t{i}" for i in range(7)),
    ]


async def test_each_row_goes_to_its_own_lists(
    sandbox: tuple[Sandbox, str], client: UnisenderClient
) -> None:
    sb, _ = sandbox
    main = await client.create_list("amoCRM")
    vip = await client.create_list("VIP")
    rows = [
        ImportRow("ann@example.com", "Ann", list_ids=f"{main},{vip}"),
        ImportRow("bob@example.com", "Bob"),  # the call's list
    ]
    await client.import_contacts(rows, list_id=main)
    assert sb.unisender.list_members(KEY, main) == {"ann@example.com", "bob@example.com"}
    assert sb.unisender.list_members(KEY, vip) == {"ann@example.com"}


async def test_a_field_that_exists_meanwhile_counts_as_created(
    sandbox: tuple[Sandbox, str], client: UnisenderClient
) -> None:
    sb, _ = sandbox
    await client.ensure_fields(["city"])  # reads getFields, creates city
    sb.unisender.create_field(KEY, "Region")  # by hand, after the client looked
    await client.ensure_fields(["city", "region", "phone", "tags", "Name"])
    assert calls(sb, "createField") == 2  # city, then region: refused as existing
    assert [f["name"] for f in sb.unisender.fields(KEY)] == ["Name", "city", "Region"]
    list_id = await client.create_list("amoCRM")
    row = ImportRow("ann@example.com", "Ann", fields={"region": "Север"})
    assert (await client.import_contacts([row], list_id=list_id)).inserted == 1
    contact = sb.unisender.contact(KEY, "ann@example.com")
    assert contact is not None
    assert contact["fields"]["Region"] == "Север"
    assert calls(sb, "createField") == 2


async def test_a_field_unisender_refuses_stops_the_import_as_a_whole(
    sandbox: tuple[Sandbox, str], client: UnisenderClient
) -> None:
    sb, _ = sandbox
    list_id = await client.create_list("amoCRM")
    row = ImportRow("ann@example.com", "Ann", fields={"1st": "x"})
    with pytest.raises(FieldNotCreated) as caught:
        await client.import_contacts([row], list_id=list_id)
    assert (caught.value.field, caught.value.refusal.code) == ("1st", "invalid_arg")
    assert "Invalid field name" in caught.value.message
    # Not taken for a refusal of one row, which the applier would hunt by halving the batch.
    assert not is_row_error(caught.value)
    assert calls(sb, "importContacts") == 0
    assert sb.unisender.contact(KEY, "ann@example.com") is None


async def test_a_field_deleted_in_unisender_is_read_again_after_the_refused_import(
    sandbox: tuple[Sandbox, str], client: UnisenderClient
) -> None:
    sb, _ = sandbox
    list_id = await client.create_list("amoCRM")
    row = ImportRow("ann@example.com", "Ann", fields={"city": "Москва"})
    await client.import_contacts([row], list_id=list_id)
    del sb.unisender.keys[KEY].fields["city"]  # deleted by hand in Unisender
    with pytest.raises(PermanentUpstreamError, match="city"):
        await client.import_contacts([row], list_id=list_id)
    await client.import_contacts([row], list_id=list_id)
    assert calls(sb, "createField") == 2
    contact = sb.unisender.contact(KEY, "ann@example.com")
    assert contact is not None
    assert contact["fields"]["city"] == "Москва"


async def test_a_column_naming_no_field_fails_the_whole_import(
    sandbox: tuple[Sandbox, str],
) -> None:
    sb, url = sandbox
    list_id = sb.unisender.create_list(KEY, "amoCRM")
    rows = [ImportRow("ann@example.com", "Ann", fields={"city": "Москва"})]
    async with httpx.AsyncClient() as http:
        answer = (
            await http.post(
                f"{url}/ru/api/importContacts",
                params={"format": "json"},
                content=encode_import(KEY, rows, list_id),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        ).json()
    assert answer["code"] == "invalid_arg"
    assert "city" in answer["error"]
    assert sb.unisender.contact(KEY, "ann@example.com") is None


async def test_the_controls_read_fields_phone_and_tags_over_http(
    sandbox: tuple[Sandbox, str], client: UnisenderClient
) -> None:
    _, url = sandbox
    async with RemoteSandbox(url) as remote:
        field_id = await remote.unisender.create_field(KEY, "city")
        assert [(f["id"], f["name"]) for f in await remote.unisender.fields(KEY)][1:] == [
            (field_id, "city")
        ]
        list_id = await client.create_list("amoCRM")
        row = ImportRow(
            "ann@example.com", "Ann", fields={"phone": "+79261232323", "tags": "vip", "city": "X"}
        )
        await client.import_contacts([row], list_id=list_id)
        contact = await remote.unisender.contact(KEY, "ann@example.com")
        assert contact is not None
        assert (contact["phone"], contact["tags"], contact["fields"]["city"]) == (
            "+79261232323",
            ["vip"],
            "X",
        )


# --- the body -------------------------------------------------------------------------------


def form(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode(), keep_blank_values=True))


def test_the_columns_are_the_union_the_batch_needs_with_empty_cells() -> None:
    rows = [
        ImportRow("a@example.com", "A", fields={"zeta": "z", "tags": "vip"}),
        ImportRow("b@example.com", "B", list_ids="1,2", fields={"phone": "+79261232323"}),
        ImportRow("c@example.com", "C", fields={"alpha": "α", "email_status": "active"}),
        ImportRow("d@example.com", "D"),
    ]
    sent = form(encode_import("key", rows, 7))
    names = [sent[f"field_names[{i}]"] for i in range(7)]
    assert names == ["email", "Name", "email_list_ids", "phone", "tags", "alpha", "zeta"]
    assert "field_names[7]" not in sent  # email_status is never sent
    assert sent["overwrite_tags"] == "0"
    table = [[sent[f"data[{r}][{c}]"] for c in range(7)] for r in range(4)]
    assert table == [
        ["a@example.com", "A", "7", "", "vip", "", "z"],
        ["b@example.com", "B", "1,2", "+79261232323", "", "", ""],
        ["c@example.com", "C", "7", "", "", "α", ""],
        ["d@example.com", "D", "7", "", "", "", ""],
    ]


def test_without_fields_the_body_is_as_before() -> None:
    plain = [ImportRow(f"u{i}@example.com", f"User {i}") for i in range(3)]
    empty = [ImportRow(f"u{i}@example.com", f"User {i}", fields={}) for i in range(3)]
    body = encode_import("key", plain, 7)
    assert encode_import("key", empty, 7) == body
    assert b"overwrite_tags" not in body
    assert form(body)["field_names[2]"] == "email_list_ids"
    assert "field_names[3]" not in form(body)
    phone_only = encode_import("key", [ImportRow("a@example.com", fields={"phone": "+7"})], 7)
    assert b"overwrite_tags" not in phone_only


def test_more_than_fifty_columns_are_refused() -> None:
    row = ImportRow("a@example.com", fields={f"f{i}": "x" for i in range(48)})
    with pytest.raises(ValueError, match="50"):
        encode_import("key", [row], 7)


# --- the documented answers -----------------------------------------------------------------

FIXTURES = Path(__file__).parent.parent / "fixtures" / "unisender"


def answering(*names: str) -> tuple[UnisenderClient, Script]:
    """A client whose calls get the fixture files in turn (the last repeats); the script
    keeps the requests (`methods` names them)."""
    script = Script(
        *(
            httpx.Response(
                200,
                content=(FIXTURES / name).read_bytes(),
                headers={"content-type": "application/json"},
            )
            for name in names
        )
    )
    client = UnisenderClient(
        "https://api.unisender.com/ru/api",
        KEY,
        AsyncLimiter(1000, 1),
        http=script.client(),
        retry_policy=NO_RETRY,
    )
    return client, script


def methods(script: Script) -> list[str]:
    """The Unisender methods called, in order (each is the last part of its URL's path)."""
    return [request.url.path.rsplit("/", 1)[-1] for request in script.requests]


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (
            "get_fields.json",
            [(21575, "Name", "string"), (21576, "city", "string"), (21577, "birthday", "date")],
        ),
        ("get_fields_as_strings.json", [(21575, "Name", "string"), (21576, "city", "text")]),
    ],
)
async def test_get_fields_reads_the_documented_answer(
    fixture: str, expected: list[tuple[int, str, str]]
) -> None:
    client, _ = answering(fixture)
    async with client:
        assert [(f.id, f.name, f.type) for f in await client.get_fields()] == expected


async def test_the_sandbox_answers_get_fields_and_create_field_in_the_documented_shape(
    sandbox: tuple[Sandbox, str],
) -> None:
    _, url = sandbox
    documented = orjson.loads((FIXTURES / "get_fields.json").read_bytes())["result"][0]
    created = orjson.loads((FIXTURES / "create_field.json").read_bytes())["result"]
    async with httpx.AsyncClient(base_url=f"{url}/ru/api") as http:
        made = (
            await http.post("/createField", data={"api_key": KEY, "name": "city", "type": "string"})
        ).json()
        fields = (await http.post("/getFields", data={"api_key": KEY})).json()
    assert made["result"].keys() == created.keys()
    assert [entry.keys() for entry in fields["result"]] == [documented.keys()] * 2


async def test_an_exists_refusal_counts_as_created_and_another_refusal_does_not() -> None:
    client, script = answering("get_fields.json", "error_create_field_exists.json")
    async with client:
        await client.ensure_fields(["region"])
        await client.ensure_fields(["region", "city"])  # both known now
    assert methods(script) == ["getFields", "createField"]

    client, script = answering(
        "get_fields.json", "error_create_field_refused.json", "get_fields.json"
    )
    async with client:
        with pytest.raises(FieldNotCreated, match="1city"):
            await client.ensure_fields(["1city"])
    # The refusal is checked against getFields before it counts as one.
    assert methods(script) == ["getFields", "createField", "getFields"]


async def test_an_import_naming_an_unknown_field_is_a_permanent_error() -> None:
    client, _ = answering("error_import_unknown_field.json")
    async with client:
        with pytest.raises(PermanentUpstreamError) as caught:
            await client.import_contacts([ImportRow("ann@example.com")], list_id=1)
    assert caught.value.code == "invalid_arg"
    assert 'Unknown field name "city"' in caught.value.message
