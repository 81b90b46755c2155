"""The worker's heartbeat: touched while it claims work, so `amosync worker --check` (the
compose health check) fails once it has stopped."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from amosync.runtime.services import Services
from amosync.worker.runner import Worker


def check(path: Path, max_age: float) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AMOSYNC_")}
    return subprocess.run(
        [sys.executable, "-m", "amosync.cli.main", "worker", "--check", "--heartbeat", str(path),
         "--max-age", str(max_age)],
        cwd=path.parent, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def test_a_running_worker_is_healthy_and_a_stopped_one_is_not(
    services: Services, tmp_path: Path
) -> None:
    heartbeat = tmp_path / "worker.heartbeat"
    assert check(heartbeat, 60).returncode == 1  # no worker yet

    worker = Worker(services, concurrency=2, heartbeat=heartbeat)
    running = asyncio.create_task(worker.run())
    try:
        deadline = time.monotonic() + 10
        while not heartbeat.exists():
            assert time.monotonic() < deadline, "no heartbeat from an idle worker"
            await asyncio.sleep(0.05)
        first = heartbeat.stat().st_mtime
        await asyncio.sleep(1.5)  # idle: it keeps polling, so it keeps beating
        assert heartbeat.stat().st_mtime > first
        assert check(heartbeat, 60).returncode == 0
    finally:
        worker.stop()
        await running
    await asyncio.sleep(2.5)
    result = check(heartbeat, 2)
    assert result.returncode == 1, result.stdout
    assert "unhealthy" in result.stdout
