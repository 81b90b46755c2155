"""`amosync sync ACCOUNT_ID` as a real subprocess, against the sandbox served by this test.

The CLI runs in its own process, so the test awaits it with asyncio: the event loop keeps
serving the in-process sandbox (amoCRM and Unisender) while the CLI calls it over HTTP.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from amosync.config import Settings
from tests.conftest import ADMIN_TOKEN, ENCRYPTION_KEY
from tests.stack import ACCOUNT_ID, UNISENDER_KEY, Stack, stack

CLI_TIMEOUT = 60.0


def cli_env(settings: Settings) -> dict[str, str]:
    """The stack's settings as the CLI reads them: from the environment only."""
    env = {
        name: value
        for name, value in os.environ.items()
        # An operator's own AMOSYNC_* settings must not leak into the test's CLI.
        if not name.startswith("AMOSYNC_")
    }
    assert settings.amocrm_base_url
    assert settings.amocrm_client_id
    assert settings.amocrm_client_secret
    assert settings.amocrm_redirect_uri
    env.update(
        AMOSYNC_DATABASE_URL=settings.database_url,
        AMOSYNC_ENCRYPTION_KEY=ENCRYPTION_KEY,
        AMOSYNC_ADMIN_TOKEN=ADMIN_TOKEN,
        AMOSYNC_AMOCRM_BASE_URL=settings.amocrm_base_url,
        AMOSYNC_UNISENDER_BASE_URL=settings.unisender_base_url,
        AMOSYNC_AMOCRM_CLIENT_ID=settings.amocrm_client_id,
        AMOSYNC_AMOCRM_CLIENT_SECRET=settings.amocrm_client_secret,
        AMOSYNC_AMOCRM_REDIRECT_URI=settings.amocrm_redirect_uri,
        AMOSYNC_WORKER="off",
        # Rich draws no live bar without a terminal, but keep the output plain regardless.
        NO_COLOR="1",
        TERM="dumb",
        COLUMNS="200",
    )
    return env


async def run_cli(settings: Settings, cwd: Path, *args: str) -> tuple[int, str]:
    """Run `amosync ARGS...`; its exit code and everything it printed (stdout + stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "amosync.cli.main",
        *args,
        env=cli_env(settings),
        # Not the project directory: a `.env` there must not be read.
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=CLI_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


def list_members(s: Stack) -> set[str]:
    [listed] = s.sandbox.unisender.lists(UNISENDER_KEY)
    return s.sandbox.unisender.list_members(UNISENDER_KEY, listed["id"])


async def test_cli_sync_brings_a_change_missed_by_webhooks_into_the_list(
    database_url: str, tmp_path: Path
) -> None:
    async with stack(database_url) as s:
        await s.install()
        amo = s.sandbox.amocrm
        ann = amo.add_contact(ACCOUNT_ID, name="Ann Lee", emails=["ann@example.com"])
        amo.add_contact(ACCOUNT_ID, name="Bob Phone", phones=["+79990000001"])
        amo.add_contact(ACCOUNT_ID, name="Carl Bad", emails=["carl-at-example"])
        await s.connect_unisender()
        await s.settle()  # the first full sync, queued by connecting Unisender
        assert list_members(s) == {"ann@example.com"}

        # A change amoCRM never told the service about: only a full sync can find it.
        amo.webhooks_enabled = False
        amo.update_contact(ACCOUNT_ID, ann["id"], name="Ann Moved", emails=["ann.new@example.com"])
        amo.add_contact(ACCOUNT_ID, name="Dan New", emails=["dan@example.com"])

        code, output = await run_cli(s.settings, tmp_path, "sync", str(ACCOUNT_ID))

        assert code == 0, output
        assert "Traceback" not in output
        assert "done: 4 contacts, 2 synced, 2 unsynced" in output
        assert "4/4" in output
        assert "100%" in output
        assert list_members(s) == {"ann.new@example.com", "dan@example.com"}
        moved = s.sandbox.unisender.contact(UNISENDER_KEY, "ann.new@example.com")
        assert moved is not None
        assert moved["fields"]["Name"] == "Ann Moved"
        # The service's own records agree with what the CLI printed.
        account = (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()
        assert account["last_sync"]["status"] == "done"
        assert account["contacts"]["synced"] == 2
        assert account["contacts"]["unsynced"] == 2


async def test_cli_sync_of_an_unknown_account_fails_with_a_message(
    database_url: str, tmp_path: Path
) -> None:
    async with stack(database_url) as s:
        code, output = await run_cli(s.settings, tmp_path, "sync", "424242")

    assert code != 0
    assert "Traceback" not in output
    assert "account 424242 does not exist" in output
    assert "done" not in output
