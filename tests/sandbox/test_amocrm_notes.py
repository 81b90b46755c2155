"""Contact notes: the documented list answer (tests/fixtures/amocrm/api/notes_page.json)
parses, the sandbox lists notes in the same shape with the documented filters, and a fault
can lose the answer to a POST the sandbox carried out."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from amosync.amocrm.client import AmoCRMClient
from amosync.amocrm.models import NotesResponse
from amosync.errors import TransientUpstreamError
from tests.sandbox.conftest import ACCOUNT_ID, FixedToken, Served, limiter

API = Path(__file__).parents[1] / "fixtures" / "amocrm" / "api"


def test_the_documented_notes_page_parses() -> None:
    page = NotesResponse.model_validate_json((API / "notes_page.json").read_bytes())
    assert [(n.id, n.entity_id, n.note_type, n.text) for n in page.notes] == [
        (42709325, 26050861, "common", "Текст примечания"),
        (42709842, 26053794, "attachment", "Снимок экрана 2022-12-12 в 20.11.45 (1).jpg"),
    ]
    assert page.links.next is not None


async def test_the_sandbox_lists_notes_as_documented(served: Served, token: str) -> None:
    ann = served.amo.add_contact(ACCOUNT_ID, "Ann")["id"]
    bob = served.amo.add_contact(ACCOUNT_ID, "Bob")["id"]
    served.amo.add_note(ACCOUNT_ID, ann, "common", {"text": "one"})
    served.amo.add_note(ACCOUNT_ID, ann, "call_in", {"phone": "+7"})
    served.amo.add_note(ACCOUNT_ID, bob, "common", {"text": "two"})
    listed = await served.api(
        "GET",
        "/api/v4/contacts/notes",
        token,
        params={"filter[entity_id][0]": ann, "filter[note_type]": "common"},
    )
    assert listed.headers["content-type"] == "application/hal+json"
    body = listed.json()
    documented = orjson.loads((API / "notes_page.json").read_bytes())
    assert set(documented) - {"_links"} <= set(body)
    (note,) = body["_embedded"]["notes"]
    assert set(documented["_embedded"]["notes"][0]) <= set(note)
    assert (note["entity_id"], note["params"]) == (ann, {"text": "one"})
    # One contact's notes by its own path; a later `updated_at` bound leaves none (204).
    own = await served.api("GET", f"/api/v4/contacts/{bob}/notes", token)
    assert [n["params"]["text"] for n in own.json()["_embedded"]["notes"]] == ["two"]
    later = await served.api(
        "GET",
        "/api/v4/contacts/notes",
        token,
        params={"filter[updated_at][from]": int(time.time()) + 60},
    )
    assert later.status_code == 204


async def test_the_client_reads_every_page_of_notes(served: Served, token: str) -> None:
    ids = [served.amo.add_contact(ACCOUNT_ID, f"C{n}")["id"] for n in range(3)]
    for n in range(300):
        served.amo.add_note(ACCOUNT_ID, ids[n % 3], "common", {"text": f"note {n}"})
    served.amo.add_note(ACCOUNT_ID, ids[0], "call_out", {"phone": "+7"})
    async with AmoCRMClient(served.url, FixedToken(token), limiter()) as client:
        notes = await client.contact_notes(ids[:2], note_type="common", updated_since=0)
    assert len(notes) == 200
    assert {n.entity_id for n in notes} == set(ids[:2])


async def test_an_applied_fault_carries_out_the_post_and_loses_its_answer(
    served: Served, token: str
) -> None:
    ann = served.amo.add_contact(ACCOUNT_ID, "Ann")["id"]
    served.amo.add_fault(502, path="/api/v4/contacts/notes", applied=True)
    async with AmoCRMClient(served.url, FixedToken(token), limiter()) as client:
        with pytest.raises(TransientUpstreamError) as lost:
            await client.add_notes([(ann, "hello")], retry=False)
    assert lost.value.status == 502
    assert [n["params"]["text"] for n in served.amo.notes(ACCOUNT_ID, ann)] == ["hello"]
