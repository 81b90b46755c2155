"""Generated contacts: fast, realistic, deterministic, and cheap to serve."""

from __future__ import annotations

import statistics
import time
from collections import Counter

from amosync.sandbox import Sandbox
from amosync.sandbox.contacts import field_values
from tests.sandbox.conftest import ACCOUNT_ID, Served


def test_generating_many_contacts_is_fast_and_realistic() -> None:
    amo = Sandbox().amocrm
    amo.add_account(account_id=1, subdomain="big")
    started = time.perf_counter()
    ids = amo.generate_contacts(1, 200_000, seed=1)
    assert time.perf_counter() - started < 2.0  # ~0.12 s here; 1M takes ~0.6 s
    assert len(ids) == amo.contact_count(1) == 200_000

    store = amo.account(1).contacts
    shapes: Counter[str] = Counter()
    addresses: Counter[str] = Counter()
    for position in range(0, 200_000, 20):
        fields = store.data(position).custom_fields
        emails = field_values(fields, "EMAIL")
        addresses.update(e.strip().lower() for e in emails)
        if fields is None:
            shapes["null"] += 1
        elif not emails:
            shapes["no email"] += 1
        elif any("@" not in e[1:-1] or " " in e for e in emails):
            shapes["invalid"] += 1
        else:
            shapes[f"{min(len(emails), 3)} emails"] += 1
    total = sum(shapes.values())
    assert 0.02 < shapes["null"] / total < 0.08
    assert 0.08 < shapes["no email"] / total < 0.20  # phone-only and text-field-only
    assert 0.01 < shapes["invalid"] / total < 0.06
    assert shapes["1 emails"] > shapes["2 emails"] > shapes["3 emails"] > 0
    assert sum(1 for count in addresses.values() if count > 1) > 50  # shared addresses


def test_the_same_seed_gives_the_same_contacts() -> None:
    def names(seed: int) -> list[str]:
        amo = Sandbox().amocrm
        amo.add_account(account_id=1)
        ids = amo.generate_contacts(1, 300, seed=seed)
        return [amo.get_contact(1, contact_id)["name"] for contact_id in ids]  # type: ignore[index]

    assert names(7) == names(7)
    assert names(7) != names(8)


async def test_a_full_page_is_served_quickly(served: Served, token: str) -> None:
    """A page deep into 100,000 contacts costs what the first one does (no scan of what
    comes before it), whatever the machine's speed."""
    served.amo.generate_contacts(ACCOUNT_ID, 100_000, seed=1)

    async def seconds(page: int) -> float:
        params = {"limit": 250, "page": page}
        started = time.perf_counter()
        response = await served.api("GET", "/api/v4/contacts", token, params=params)
        assert len(response.json()["_embedded"]["contacts"]) == 250
        return time.perf_counter() - started

    await seconds(1)  # warm up
    first, deep = [], []
    for _ in range(10):  # taking turns, so a slow spell of the machine falls on both
        first.append(await seconds(1))
        deep.append(await seconds(400))
    assert statistics.median(deep) < 3 * statistics.median(first)
    # Includes the client's HTTP round trip and JSON parsing; the sandbox part is ~2 ms.
    assert statistics.median(deep) < 0.5


async def test_generated_contacts_can_be_edited_like_others(served: Served, token: str) -> None:
    ids = served.amo.generate_contacts(ACCOUNT_ID, 10, seed=5)
    edited = served.amo.update_contact(ACCOUNT_ID, ids[3], emails=["only@example.com"])
    assert field_values(edited["custom_fields_values"], "EMAIL") == ["only@example.com"]
    assert edited["name"] == served.amo.get_contact(ACCOUNT_ID, ids[3])["name"]  # type: ignore[index]
    listed = await served.api("GET", f"/api/v4/contacts/{ids[3]}", token)
    assert field_values(listed.json()["custom_fields_values"], "EMAIL") == ["only@example.com"]


def test_pages_agree_with_a_plain_sort_whatever_is_deleted_or_edited() -> None:
    import random

    amo = Sandbox().amocrm
    amo.add_account(account_id=1)
    ids = amo.generate_contacts(1, 500, seed=9)
    store = amo.account(1).contacts
    rng = random.Random(9)
    for contact_id in rng.sample(list(ids), 60):
        amo.delete_contact(1, contact_id)
    for contact_id in rng.sample([i for i in ids if amo.get_contact(1, i)], 20):
        amo.update_contact(1, contact_id, name="Edited Person")
    live = [p for p in range(len(store.ids)) if not store.is_deleted(p)]
    by_updated = sorted(live, key=lambda p: (store.updated[p], p))
    cutoff = sorted(store.updated[p] for p in live)[300]
    cases = {
        ("id", False, None): live,
        ("id", True, None): live[::-1],
        ("updated_at", False, None): by_updated,
        ("updated_at", True, None): by_updated[::-1],
        ("id", False, cutoff): [p for p in live if store.updated[p] >= cutoff],
    }
    for (order, descending, since), expected in cases.items():
        for limit in (1, 7, 250):
            got: list[int] = []
            offset = 0
            while True:
                chosen, more = store.page(
                    offset, limit, order=order, descending=descending, updated_from=since
                )
                got += chosen
                offset += limit
                if not more:
                    break
            key = [store.updated[p] for p in got] if order == "updated_at" else got
            want = [store.updated[p] for p in expected] if order == "updated_at" else expected
            assert key == want, (order, descending, since, limit)
            assert sorted(got) == sorted(expected)
