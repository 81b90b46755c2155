"""One note per unsubscribe and contact, even when the write-back stops between the notes
POST and recording it, or the POST's answer is lost (SPEC §9: "the same event delivered
twice writes one tag and one note"). Over real HTTP against the sandbox."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from amosync.consent import writeback
from amosync.db.models import ConsentEvent
from amosync.runtime.services import Services
from tests.consent.conftest import ANN, deliver, notes, setup
from tests.stack import ACCOUNT_ID, UNISENDER_KEY, Stack, stack


def note_reads(s: Stack) -> int:
    calls = s.sandbox.calls.matching(api="amocrm", path="/api/v4/contacts/notes")
    return sum(1 for call in calls if call.method == "GET")


async def retry_now(s: Stack) -> None:
    """Run the failed attempt's retry now rather than after the worker's backoff."""
    await s.make_due("consent")
    await s.settle()


async def test_a_stop_between_the_post_and_its_record_writes_no_second_note(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = writeback._record
    failures: list[bool] = []

    async def lost_once(services: Services, pairs: Sequence[tuple[int, int]], **done: Any) -> None:
        if done.get("noted") and not failures:
            failures.append(True)
            raise ConnectionError("the database went away after the notes were posted")
        await real(services, pairs, **done)

    async with stack(database_url) as s:
        ids = await setup(s)
        monkeypatch.setattr(writeback, "_record", lost_once)
        s.sandbox.unisender.unsubscribe(UNISENDER_KEY, ANN)
        await deliver(s)
        assert failures == [True]
        assert len(notes(s, ids["ann"])) == 1  # posted before the record failed
        await retry_now(s)
        assert await s.count(ConsentEvent, ConsentEvent.status == "done") == 1
        for contact in ("ann", "ann_work"):
            assert len(notes(s, ids[contact])) == 1, contact
        assert s.sandbox.amocrm.tags(ACCOUNT_ID, ids["ann"]) == ["vip", "unsubscribed"]
        assert note_reads(s) >= 1  # the retry looked in amoCRM before posting


async def test_a_post_whose_answer_is_lost_is_not_repeated(database_url: str) -> None:
    async with stack(database_url) as s:
        ids = await setup(s)
        # amoCRM creates the notes, the answer is a proxy's 502: the client would retry
        # the POST in place and note twice.
        s.sandbox.amocrm.add_fault(502, path="/api/v4/contacts/notes", applied=True)
        s.sandbox.unisender.unsubscribe(UNISENDER_KEY, ANN)
        await deliver(s)
        assert await s.count(ConsentEvent, ConsentEvent.status == "done") == 1
        for contact in ("ann", "ann_work"):
            assert len(notes(s, ids[contact])) == 1, contact
        assert note_reads(s) == 1


async def test_a_post_refused_before_amocrm_did_it_is_posted_again(database_url: str) -> None:
    async with stack(database_url) as s:
        ids = await setup(s)
        s.sandbox.amocrm.add_fault(503, path="/api/v4/contacts/notes", times=1)
        s.sandbox.unisender.unsubscribe(UNISENDER_KEY, ANN)
        await deliver(s)
        for contact in ("ann", "ann_work"):
            assert len(notes(s, ids[contact])) == 1, contact
