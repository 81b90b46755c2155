"""`amosync sync ACCOUNT_ID` as a person runs it: a dead Unisender key ends it at once with
the run's error and a non-zero exit code, instead of retrying for ever."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

from tests.stack import ACCOUNT_ID, UNISENDER_KEY, Stack, stack
from tests.worker.processes import env_for


async def installed(s: Stack) -> None:
    await s.connect(("Ann", ["ann@example.com"]))
    assert s.members() == {"ann@example.com"}


async def test_a_dead_unisender_key_ends_the_foreground_sync_with_its_error(
    database_url: str, tmp_path: Path
) -> None:
    async with stack(database_url) as s:
        await installed(s)
        s.sandbox.unisender.remove_key(UNISENDER_KEY)
        started = time.monotonic()
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "amosync.cli.main", "sync", str(ACCOUNT_ID)],
            cwd=tmp_path,
            env=env_for(s.settings),
            capture_output=True,
            text=True,
            timeout=90,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert time.monotonic() - started < 60
        failed = [line for line in output.splitlines() if "sync failed" in line]
        assert failed, output
        assert "Unisender" in failed[0]
        assert "key" in failed[0]
