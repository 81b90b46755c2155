"""`amosync demo` from the command line: sandbox + service + an installed, synced account."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.servers import free_port, stop


def test_demo_installs_syncs_and_keeps_serving(tmp_path: Path) -> None:
    port, sandbox_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AMOSYNC_")}
    # The user's own database, where `amosync serve` keeps its data: the demo keeps apart.
    own = tmp_path / "amosync.db"
    own.write_bytes(b"the user's database")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "amosync.cli.main",
            "demo",
            "--port",
            str(port),
            "--sandbox-port",
            str(sandbox_port),
            "--contacts",
            "600",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 90
        token = None
        demo_folder = None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            folder = re.search(r"demo data in (\S+)", line)
            if folder:
                demo_folder = Path(folder.group(1))
            match = re.search(r"admin token: (\S+)", line)  # a token may begin with "-"
            if match:
                token = match.group(1)
                break
        assert token, "".join(output)
        assert demo_folder is not None
        assert (demo_folder / "demo.db").is_file()
        assert not demo_folder.is_relative_to(tmp_path)
        headers = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{port}"
        accounts = httpx.get(f"{base}/accounts", headers=headers).json()["items"]
        assert len(accounts) == 1
        demo = accounts[0]
        assert demo["status"] == "active"
        assert demo["unisender_connected"] is True
        assert demo["last_sync"]["status"] == "done"
        assert demo["last_sync"]["fetched"] == 600
        assert demo["contacts"]["synced"] > 0
        assert demo["contacts"]["unsynced"] > 0
        assert httpx.get(f"{base}/").status_code == 200  # the dashboard's login page
        # The sandbox keeps changing contacts and posts webhooks: a live contact arrives.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = httpx.get(
                f"{base}/accounts/sync",
                params={"account_id": demo["id"], "search": "live1@"},
                headers=headers,
            ).json()["items"]
            if found:
                break
            time.sleep(0.5)
        else:
            raise AssertionError("no live webhook change reached the synced contacts")
    finally:
        stop(process)
    assert own.read_bytes() == b"the user's database"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["amosync.db"]
    assert not demo_folder.exists(), "the demo's data outlived it"
