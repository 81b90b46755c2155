"""The settings routes over real HTTP against the sandbox (SPEC §3, §8): validation against
both vendors with its codes, storing, the full sync a change starts, the pickers, CORS."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import stamina
from sqlalchemy import select, update

from amosync.accounts.install import LEAD_EVENTS, WEBHOOK_EVENTS
from amosync.db.engine import transaction
from amosync.db.models import Account, Job, SyncRun, utcnow
from amosync.sandbox.contacts import CITY_FIELD
from tests.stack import ACCOUNT_ID, UNISENDER_KEY, Stack, stack

URL = f"/accounts/{ACCOUNT_ID}/settings"
DEFAULTS: dict[str, Any] = {
    "fields": {"phone": False, "phone_region": "RU", "tags": False, "custom": []},
    "lists": [],
    "consent": {"enabled": True, "tag": "unsubscribed", "note": True},
}


async def connected(s: Stack) -> int:
    """An installed account with its key connected and first sync done; a second list
    of the key ("VIP") is returned for rules."""
    await s.connect()
    return s.sandbox.unisender.create_list(UNISENDER_KEY, "VIP")


async def stored(s: Stack) -> dict[str, Any]:
    async with s.services.sessions() as session:
        account = await session.scalar(select(Account).where(Account.id == ACCOUNT_ID))
        assert account is not None
        return dict(account.settings or {})


def error(answer: Any) -> tuple[int, str]:
    return answer.status_code, answer.json()["error"]


async def test_settings_read_as_defaults_and_keep_the_parts_not_sent(database_url: str) -> None:
    async with stack(database_url) as s:
        vip = await connected(s)
        assert (await s.http.get(URL)).json() == DEFAULTS
        lists = [{"list_id": vip, "tags_any": ["vip"]}]
        first = await s.http.put(URL, json={"lists": lists})
        assert first.status_code == 200, first.text
        calls = len(s.sandbox.calls)
        answer = await s.http.put(URL, json={"consent": {"tag": "no-mail"}})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        # Only consent changed: nothing asked of a vendor, no sync started, lists kept.
        assert body["sync"] is None
        assert len(s.sandbox.calls) == calls
        assert body["lists"] == [{"list_id": vip, "tags_any": ["vip"], "lead_statuses": []}]
        assert body["consent"] == {"enabled": True, "tag": "no-mail", "note": True}
        assert (await s.http.get(URL)).json() == {k: v for k, v in body.items() if k != "sync"}


async def test_widget_may_read_and_save_its_own_account_only(database_url: str) -> None:
    async with stack(database_url) as s:
        await connected(s)
        widget = {"Authorization": "", **s.widget_headers()}
        assert (await s.http.get(URL, headers=widget)).status_code == 200
        saved = await s.http.put(URL, json={"consent": {"note": False}}, headers=widget)
        assert saved.status_code == 200, saved.text
        foreign = {"Authorization": "", **s.widget_headers(ACCOUNT_ID + 1)}
        assert (await s.http.get(URL, headers=foreign)).status_code == 403
        assert (await s.http.put(URL, json={}, headers=foreign)).status_code == 403
        absent = await s.http.get("/accounts/999/settings")
        assert error(absent) == (404, "account_not_found")


@pytest.mark.parametrize(
    "body",
    [
        {"colour": "red"},
        {"fields": {"phone": "yes"}},
        {"fields": {"phone_region": "russia"}},
        {
            "fields": {
                "custom": [{"amocrm_field_id": 1, "unisender_field": f"f{n}"} for n in range(41)]
            }
        },
        {"lists": [{"list_id": 1}]},
        {"lists": [{"list_id": "1", "tags_any": ["vip"]}]},
        {"lists": [{"list_id": 1, "lead_statuses": [{"pipeline_id": 7}]}]},
        {"consent": {"tag": "  "}},
    ],
)
async def test_a_bad_shape_is_422_and_stores_nothing(
    database_url: str, body: dict[str, Any]
) -> None:
    async with stack(database_url) as s:
        await s.install()
        answer = await s.http.put(URL, json=body)
        assert error(answer) == (422, "invalid_request"), answer.text
        assert await stored(s) == {}


async def test_a_list_the_key_does_not_have_is_unknown_list(database_url: str) -> None:
    async with stack(database_url) as s:
        vip = await connected(s)
        answer = await s.http.put(
            URL,
            json={
                "lists": [
                    {"list_id": vip, "tags_any": ["a"]},
                    {"list_id": 987654, "tags_any": ["b"]},
                ]
            },
        )
        assert error(answer) == (400, "unknown_list")
        assert "987654" in answer.json()["detail"]
        assert "lists" not in await stored(s)
        assert await s.count(SyncRun) == 1  # the first sync only


async def test_list_rules_need_a_connected_key(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        answer = await s.http.put(URL, json={"lists": [{"list_id": 5, "tags_any": ["vip"]}]})
        assert error(answer) == (400, "unisender_not_connected")


async def test_one_rule_per_list_and_none_on_the_main_list(database_url: str) -> None:
    async with stack(database_url) as s:
        vip = await connected(s)
        main = s.sandbox.unisender.lists(UNISENDER_KEY)[0]["id"]
        twice = await s.http.put(
            URL,
            json={
                "lists": [{"list_id": vip, "tags_any": ["a"]}, {"list_id": vip, "tags_any": ["b"]}]
            },
        )
        assert error(twice) == (400, "duplicate_list")
        on_main = await s.http.put(URL, json={"lists": [{"list_id": main, "tags_any": ["a"]}]})
        assert error(on_main) == (400, "main_list_rule")
        assert await stored(s) == {}


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("1city", "invalid_field_name"),
        ("город", "invalid_field_name"),
        ("city name", "invalid_field_name"),
        ("city.name", "invalid_field_name"),
        ("_city", "invalid_field_name"),
        ("email", "reserved_field_name"),
        ("Name", "reserved_field_name"),
        ("PHONE", "reserved_field_name"),
        ("tags", "reserved_field_name"),
        ("email_list_ids", "reserved_field_name"),
        ("delete", "reserved_field_name"),
        ("email_status", "reserved_field_name"),
        ("phone_excluded_list_ids", "reserved_field_name"),
    ],
)
async def test_a_unisender_field_name_unisender_would_refuse_or_we_fill(
    database_url: str, name: str, code: str
) -> None:
    async with stack(database_url) as s:
        await connected(s)
        calls = len(s.sandbox.calls)
        answer = await s.http.put(
            URL, json={"fields": {"custom": [{"amocrm_field_id": 55, "unisender_field": name}]}}
        )
        assert error(answer) == (400, code), answer.text
        assert len(s.sandbox.calls) == calls  # refused before any vendor is asked
        assert await stored(s) == {}


async def test_two_pairs_naming_one_unisender_field_are_refused(database_url: str) -> None:
    async with stack(database_url) as s:
        await connected(s)
        custom = [
            {"amocrm_field_id": 55, "unisender_field": "city"},
            {"amocrm_field_id": 56, "unisender_field": "City"},
        ]
        answer = await s.http.put(URL, json={"fields": {"custom": custom}})
        assert error(answer) == (400, "duplicate_field_name")


async def test_changing_lists_or_fields_starts_one_full_sync(database_url: str) -> None:
    async with stack(database_url) as s:
        vip = await connected(s)
        rule = {"list_id": vip, "tags_any": ["vip"]}
        answer = await s.http.put(URL, json={"lists": [rule]})
        assert answer.status_code == 200, answer.text
        sync = answer.json()["sync"]
        assert sync["status"] == "queued"
        run = await s.http.get(f"/sync/{sync['run_id']}")
        assert run.json()["account_id"] == ACCOUNT_ID
        # The same lists again while the run is active: nothing changed, no sync.
        again = await s.http.put(URL, json={"lists": [rule]})
        assert again.json()["sync"] is None
        # Fields change while it is still queued: the active run is the answer.
        phone = await s.http.put(URL, json={"fields": {"phone": True}})
        assert phone.json()["sync"] == sync
        await s.settle()
        assert (await s.http.get(f"/sync/{sync['run_id']}")).json()["status"] == "done"
        tags = await s.http.put(URL, json={"fields": {"phone": True, "tags": True}})
        assert tags.json()["sync"]["run_id"] != sync["run_id"]
        assert await s.count(SyncRun) == 3


async def test_no_sync_is_started_for_an_account_without_a_key(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        answer = await s.http.put(URL, json={"fields": {"phone": True}})
        assert answer.status_code == 200, answer.text
        assert answer.json()["sync"] is None
        assert await s.count(SyncRun) == 0
        assert (await stored(s))["fields"]["phone"] is True


async def test_unisender_failing_is_503_and_stores_nothing(database_url: str) -> None:
    async with stack(database_url) as s:
        vip = await connected(s)
        s.sandbox.unisender.add_fault(method="getLists", status=503, times=None)
        with stamina.set_testing(True, attempts=2):
            answer = await s.http.put(URL, json={"lists": [{"list_id": vip, "tags_any": ["v"]}]})
        assert error(answer) == (503, "upstream_unavailable")
        assert answer.headers["retry-after"] == "60"
        assert await stored(s) == {}


async def test_put_accounts_settings_go_through_the_same_checks(database_url: str) -> None:
    async with stack(database_url) as s:
        vip = await connected(s)
        account = f"/accounts/{ACCOUNT_ID}"
        bad_shape = await s.http.put(account, json={"settings": {"lists": "all"}})
        assert error(bad_shape) == (422, "invalid_settings")
        unknown = await s.http.put(
            account,
            json={"name": "New", "settings": {"lists": [{"list_id": 987654, "tags_any": ["x"]}]}},
        )
        assert error(unknown) == (400, "unknown_list")
        assert (await s.http.get(account)).json()["name"] == "Acme"  # nothing stored
        ok = await s.http.put(
            account, json={"settings": {"lists": [{"list_id": vip, "tags_any": ["x"]}]}}
        )
        assert ok.status_code == 200, ok.text
        assert ok.json()["settings"]["lists"] == [
            {"list_id": vip, "tags_any": ["x"], "lead_statuses": []}
        ]
        assert await s.count(SyncRun) == 2  # the change started a full sync
        # The consent part stays as it was: only the keys sent are replaced.
        assert (await s.http.get(URL)).json()["consent"] == DEFAULTS["consent"]


async def test_choices_say_which_part_failed(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        before = await s.http.get(f"{URL}/choices")
        assert before.status_code == 200, before.text
        assert before.json()["lists"] is None
        assert before.json()["errors"]["lists"] == "unisender_not_connected"
        vip = await connected(s)
        after = (await s.http.get(f"{URL}/choices")).json()
        assert {"id": vip, "title": "VIP"} in after["lists"]
        assert "lists" not in after["errors"]
        widget = {"Authorization": "", **s.widget_headers()}
        assert (await s.http.get(f"{URL}/choices", headers=widget)).status_code == 200
        foreign = {"Authorization": "", **s.widget_headers(ACCOUNT_ID + 1)}
        assert (await s.http.get(f"{URL}/choices", headers=foreign)).status_code == 403


def preflight(method: str) -> dict[str, str]:
    return {
        "Origin": "https://acme.amocrm.ru",
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "x-auth-token, content-type",
    }


async def test_the_widget_may_save_settings_cross_origin(database_url: str) -> None:
    async with stack(database_url) as s:
        await connected(s)
        put = await s.http.options(URL, headers=preflight("PUT"))
        assert put.status_code == 204, put.text
        assert put.headers["access-control-allow-origin"] == "https://acme.amocrm.ru"
        assert "PUT" in put.headers["access-control-allow-methods"]
        for path in (f"{URL}/choices", "/unisender/lists"):
            get = await s.http.options(path, headers=preflight("GET"))
            assert get.status_code == 204, path
        # The account itself stays admin-only: no CORS answer for its PUT.
        account = await s.http.options(f"/accounts/{ACCOUNT_ID}", headers=preflight("PUT"))
        assert "access-control-allow-origin" not in account.headers
        saved = await s.http.put(
            URL,
            json={"consent": {"note": False}},
            headers={"Authorization": "", "Origin": "https://acme.amocrm.ru", **s.widget_headers()},
        )
        assert saved.status_code == 200
        assert saved.headers["access-control-allow-origin"] == "https://acme.amocrm.ru"


PIPELINE = 3177727  # the sandbox's main pipeline, with amoCRM's won (142) and lost (143)
CITY = int(CITY_FIELD["field_id"])


@pytest.mark.parametrize(
    ("wanted", "named"),
    [
        ({"pipeline_id": 1, "status_id": 142}, "no pipeline 1"),
        ({"pipeline_id": PIPELINE, "status_id": 999}, "no status 999"),
    ],
)
async def test_a_pipeline_or_status_amocrm_lacks_is_unknown_status(
    database_url: str, wanted: dict[str, int], named: str
) -> None:
    async with stack(database_url) as s:
        vip = await connected(s)
        rule = {"list_id": vip, "lead_statuses": [wanted]}
        answer = await s.http.put(URL, json={"lists": [rule]})
        assert error(answer) == (400, "unknown_status"), answer.text
        assert named in answer.json()["detail"]
        assert await stored(s) == {}


async def test_an_amocrm_field_that_does_not_exist_is_unknown_field(database_url: str) -> None:
    async with stack(database_url) as s:
        await connected(s)
        custom = [{"amocrm_field_id": 987654, "unisender_field": "city"}]
        answer = await s.http.put(URL, json={"fields": {"custom": custom}})
        assert error(answer) == (400, "unknown_field"), answer.text
        assert await stored(s) == {}
        custom = [{"amocrm_field_id": CITY, "unisender_field": "city"}]
        ok = await s.http.put(URL, json={"fields": {"custom": custom}})
        assert ok.status_code == 200, ok.text
        assert ok.json()["fields"]["custom"] == custom
        assert ok.json()["sync"]["status"] == "queued"


async def test_amocrm_is_asked_only_for_what_the_body_names(database_url: str) -> None:
    async with stack(database_url) as s:
        vip = await connected(s)
        before = len(s.sandbox.calls.matching(api="amocrm"))
        tags = await s.http.put(URL, json={"lists": [{"list_id": vip, "tags_any": ["vip"]}]})
        assert tags.status_code == 200, tags.text
        phone = await s.http.put(URL, json={"fields": {"phone": True}})
        assert phone.status_code == 200, phone.text
        assert len(s.sandbox.calls.matching(api="amocrm")) == before


async def test_amocrm_failing_is_503_and_stores_nothing(database_url: str) -> None:
    async with stack(database_url) as s:
        vip = await connected(s)
        s.sandbox.amocrm.add_fault(503, path="/api/v4/leads/pipelines", times=None)
        rule = {"list_id": vip, "lead_statuses": [{"pipeline_id": PIPELINE, "status_id": 142}]}
        with stamina.set_testing(True, attempts=2):
            answer = await s.http.put(URL, json={"lists": [rule]})
        assert error(answer) == (503, "upstream_unavailable")
        assert await stored(s) == {}


def events(s: Stack) -> list[list[str]]:
    return [sorted(hook["settings"]) for hook in s.sandbox.amocrm.webhooks(ACCOUNT_ID)]


async def test_a_status_rule_adds_the_lead_events_to_the_webhook_and_removes_them(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        vip = await connected(s)
        assert events(s) == [sorted(WEBHOOK_EVENTS)]
        rule = {"list_id": vip, "lead_statuses": [{"pipeline_id": PIPELINE, "status_id": 142}]}
        answer = await s.http.put(URL, json={"lists": [rule]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["lists"] == [{"list_id": vip, "tags_any": [], **rule}]
        await s.settle()
        assert events(s) == [sorted(WEBHOOK_EVENTS + LEAD_EVENTS)]
        # Another change that keeps a lead rule registers nothing again.
        posts = len(s.sandbox.calls.matching(api="amocrm", path="/api/v4/webhooks"))
        both = {**rule, "tags_any": ["vip"]}
        assert (await s.http.put(URL, json={"lists": [both]})).status_code == 200
        await s.settle()
        assert len(s.sandbox.calls.matching(api="amocrm", path="/api/v4/webhooks")) == posts
        # No rule reads leads any more: amoCRM stops posting deal changes.
        tags_only = await s.http.put(URL, json={"lists": [{"list_id": vip, "tags_any": ["vip"]}]})
        assert tags_only.status_code == 200, tags_only.text
        await s.settle()
        assert events(s) == [sorted(WEBHOOK_EVENTS)]


async def test_choices_list_every_part_by_name(database_url: str) -> None:
    async with stack(database_url) as s:
        vip = await connected(s)
        amo = s.sandbox.amocrm
        ann = amo.add_contact(ACCOUNT_ID, "Ann", emails=["ann@example.com"])["id"]
        amo.edit_tags(ACCOUNT_ID, ann, add=[{"name": "vip"}])
        answer = await s.http.get(f"{URL}/choices")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["errors"] == {}
        assert {"id": vip, "title": "VIP"} in body["lists"]
        assert {"id": CITY, "name": CITY_FIELD["field_name"], "type": "text"} in body["fields"]
        main = next(p for p in body["pipelines"] if p["id"] == PIPELINE)
        assert {142, 143} <= {status["id"] for status in main["statuses"]}
        assert all(set(status) == {"id", "name"} for status in main["statuses"])
        assert "vip" in {tag["name"] for tag in body["tags"]}
        assert all(set(tag) == {"id", "name"} for tag in body["tags"])


async def test_choices_show_the_rest_when_amocrm_fails(database_url: str) -> None:
    async with stack(database_url) as s:
        vip = await connected(s)
        s.sandbox.amocrm.add_fault(503, path="/api/v4/", times=None)
        with stamina.set_testing(True, attempts=1):
            answer = await s.http.get(f"{URL}/choices")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert {"id": vip, "title": "VIP"} in body["lists"]
        assert body["fields"] is None
        assert body["pipelines"] is None
        assert body["tags"] is None
        assert body["errors"] == {
            "fields": "upstream_unavailable",
            "pipelines": "upstream_unavailable",
            "tags": "upstream_unavailable",
        }


async def test_a_change_during_a_running_sync_gets_a_sync_of_its_own(database_url: str) -> None:
    async with stack(database_url) as s:
        vip = await connected(s)
        started = (await s.http.post("/sync", json={"account_id": ACCOUNT_ID})).json()
        # The run has begun: it read the settings of its start, without the rule.
        async with transaction(s.services.sessions) as session:
            await session.execute(
                update(SyncRun)
                .where(SyncRun.id == started["run_id"])
                .values(status="running", started_at=utcnow())
            )
        answer = await s.http.put(URL, json={"lists": [{"list_id": vip, "tags_any": ["vip"]}]})
        assert answer.json()["sync"] == {"run_id": started["run_id"], "status": "running"}
        deadline = time.monotonic() + 20
        while await s.count(SyncRun, SyncRun.status == "done") < 3:
            assert time.monotonic() < deadline, "no sync followed the running one"
            await s.settle()
            await asyncio.sleep(0.2)
        async with s.services.sessions() as session:
            runs = (await session.scalars(select(SyncRun).order_by(SyncRun.id))).all()
        assert [run.status for run in runs] == ["done", "done", "done"]
        # The follow-up began after the running one was over.
        assert runs[2].started_at is not None
        assert runs[1].finished_at is not None
        assert runs[2].started_at >= runs[1].finished_at


async def test_a_change_while_a_sync_is_queued_needs_no_second_one(database_url: str) -> None:
    async with stack(database_url) as s:
        vip = await connected(s)
        started = (await s.http.post("/sync", json={"account_id": ACCOUNT_ID})).json()
        answer = await s.http.put(URL, json={"lists": [{"list_id": vip, "tags_any": ["vip"]}]})
        assert answer.json()["sync"] == started  # not begun: it will read the new settings
        await s.settle()
        assert await s.count(SyncRun) == 2
        assert await s.count(Job, Job.kind == "resync") == 0


async def test_a_saved_tag_rule_fills_its_list_through_the_sync_it_starts(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        amo = s.sandbox.amocrm
        await s.install()
        ann = amo.add_contact(ACCOUNT_ID, "Ann", emails=["ann@example.com"])["id"]
        amo.add_contact(ACCOUNT_ID, "Bob", emails=["bob@example.com"])
        amo.edit_tags(ACCOUNT_ID, ann, add=[{"name": "VIP"}])
        await amo.flush_webhooks()
        vip = await connected(s)
        answer = await s.http.put(URL, json={"lists": [{"list_id": vip, "tags_any": ["vip"]}]})
        run_id = answer.json()["sync"]["run_id"]
        await s.settle()
        assert (await s.http.get(f"/sync/{run_id}")).json()["status"] == "done"
        assert s.sandbox.unisender.list_members(UNISENDER_KEY, vip) == {"ann@example.com"}


async def test_a_saved_status_rule_fills_its_list_and_follows_the_deal(database_url: str) -> None:
    async with stack(database_url) as s:
        amo = s.sandbox.amocrm
        vip = await connected(s)
        ann = amo.add_contact(ACCOUNT_ID, "Ann", emails=["ann@example.com"])["id"]
        lead = amo.create_lead(ACCOUNT_ID, [ann], pipeline_id=PIPELINE, status_id=142)["id"]
        await amo.flush_webhooks()
        await s.settle()
        rule = {"list_id": vip, "lead_statuses": [{"pipeline_id": PIPELINE, "status_id": 142}]}
        answer = await s.http.put(URL, json={"lists": [rule]})
        assert answer.json()["sync"] is not None
        await s.settle()
        assert s.sandbox.unisender.list_members(UNISENDER_KEY, vip, "active") == {"ann@example.com"}
        # The webhook now covers deals: the deal lost, Ann leaves the list.
        amo.move_lead(ACCOUNT_ID, lead, 143)
        await amo.flush_webhooks()
        await s.settle()
        assert s.sandbox.unisender.list_members(UNISENDER_KEY, vip, "active") == set()


async def test_a_rules_list_cannot_become_the_main_list(database_url: str) -> None:
    async with stack(database_url) as s:
        vip = await connected(s)
        saved = await s.http.put(URL, json={"lists": [{"list_id": vip, "tags_any": ["vip"]}]})
        assert saved.status_code == 200, saved.text
        main = f"/accounts/{ACCOUNT_ID}"
        answer = await s.http.put(main, json={"list_id": vip})
        assert error(answer) == (400, "main_list_rule")
        assert (await s.http.get(main)).json()["list_id"] != vip
        other = s.sandbox.unisender.create_list(UNISENDER_KEY, "Other")
        assert (await s.http.put(main, json={"list_id": other})).status_code == 200
