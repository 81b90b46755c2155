"""Unisender's answers as its documentation shows them (tests/fixtures/unisender/): the
client reads them, and the import log says which rows were refused.

The log holds errors and warnings: a log entry alone never takes an address out of the
list (what the applier makes of it: tests/sync/test_apply.py). The fixture files are
served byte for byte (tests/unisender/answers.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
import stamina

from amosync.errors import InvalidApiKey, PermanentUpstreamError, TransientUpstreamError
from amosync.sync.apply import is_row_error
from amosync.unisender.models import ImportResult, ImportRow
from tests.unisender.answers import answering, fixture

LIST_ID = 55688


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=1):
        yield


def rows(*emails: str) -> list[ImportRow]:
    return [ImportRow(email, "Name") for email in emails]


# --- the client --------------------------------------------------------------------------


async def test_an_answer_with_log_and_warnings_is_read_whole() -> None:
    client, _ = answering(lambda _r: fixture("import_log_mixed.json"))
    async with client:
        result = await client.import_contacts(
            rows("a@example.com", "ann@@example.com", "b@example.com", "info@example.com"),
            list_id=LIST_ID,
        )
    assert (result.total, result.inserted, result.invalid) == (4, 2, 1)
    assert [(e.index, e.code) for e in result.log] == [(1, "invalid_arg"), (3, "role_address")]
    assert result.warnings == ["info@example.com looks like a role address"]


async def test_numbers_as_strings_and_no_invalid_count_are_accepted() -> None:
    client, _ = answering(lambda _r: fixture("import_log_as_strings.json"))
    async with client:
        result = await client.import_contacts(rows("a@example.com", "x@"), list_id=LIST_ID)
    assert (result.total, result.inserted, result.invalid) == (2, 1, None)
    assert [(e.index, e.code) for e in result.log] == [(1, "invalid_arg")]


@pytest.mark.parametrize(
    ("name", "error", "code"),
    [
        ("error_invalid_api_key.json", InvalidApiKey, "invalid_api_key"),
        (
            "error_api_call_limit_exceeded_for_api_key.json",
            TransientUpstreamError,
            "api_call_limit_exceeded_for_api_key",
        ),
        ("error_retry_later.json", TransientUpstreamError, "retry_later"),
        ("error_owned_by_different_subscribers.json", PermanentUpstreamError, "unspecified"),
    ],
)
async def test_error_answers_are_classified(name: str, error: type[Exception], code: str) -> None:
    client, _ = answering(lambda _r: fixture(name))
    async with client:
        with pytest.raises(error) as raised:
            await client.import_contacts(rows("a@example.com"), list_id=LIST_ID)
    assert raised.type is error
    assert getattr(raised.value, "code", None) == code
    # Only an error that may be about one row is worth halving the call for.
    expected_row_error = name == "error_owned_by_different_subscribers.json"
    assert (isinstance(raised.value, PermanentUpstreamError) and is_row_error(raised.value)) is (
        expected_row_error
    )


# --- which rows the log refuses ----------------------------------------------------------


def result_of(name: str) -> ImportResult:
    return ImportResult.model_validate(orjson.loads(fixture(name))["result"])


@pytest.mark.parametrize(
    ("name", "refused"),
    [
        ("import_clean.json", []),
        # Counters say one row was not imported, two are logged: only the known code.
        ("import_log_mixed.json", [1]),
        # Counters say every row was imported: the entry is a warning, whatever its code.
        ("import_log_warnings_only.json", []),
        # As many rows not imported as rows logged: all of them, codes unknown or not.
        ("import_log_refused.json", [0, 2]),
        # No counter of refused rows: only the known code.
        ("import_log_as_strings.json", [1]),
    ],
)
def test_the_log_refuses_rows_by_counter_then_by_code(name: str, refused: list[int]) -> None:
    assert [entry.index for entry in result_of(name).refused()] == refused
