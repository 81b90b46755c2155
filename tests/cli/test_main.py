"""The command line as a person meets it: each configuration mistake is one or two lines
naming the setting, exit code 2; the admin token is generated once and kept; help is clean."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import structlog
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from amosync.cli.main import app
from amosync.db.engine import make_engine, make_sessionmaker, transaction
from amosync.db.models import Account
from amosync.runtime.crypto import Cipher
from tests.conftest import PG_ADMIN_URL, _pg_ok
from tests.servers import stop

CONFIG_ERROR = 2


def amosync(
    cwd: Path, *args: str, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("AMOSYNC_")}
    clean.update({"AMOSYNC_LOG_FORMAT": "console", "COLUMNS": "100", **env})
    return subprocess.run(
        [sys.executable, "-m", "amosync.cli.main", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_config_error(result: subprocess.CompletedProcess[str], setting: str) -> list[str]:
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == CONFIG_ERROR, result.stdout + result.stderr
    assert 1 <= len(lines) <= 2, lines
    assert setting in lines[0], lines
    assert "Traceback" not in result.stderr
    return lines


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


KEY = Fernet.generate_key().decode()
MALFORMED_URLS = [
    ("postgres//db.example/amosync", ["serve"]),
    ("mysql://u@h/db", ["worker"]),
    ("postgresql://u@h:port/db", ["db", "upgrade"]),
    ("sqlite://", ["widget", "build"]),
]


@pytest.mark.parametrize(("url", "command"), MALFORMED_URLS)
def test_a_malformed_database_url_stops_any_command(
    tmp_path: Path, url: str, command: list[str]
) -> None:
    result = amosync(tmp_path, *command, AMOSYNC_DATABASE_URL=url)
    assert_config_error(result, "AMOSYNC_DATABASE_URL")


@pytest.mark.parametrize("command", [["serve"], ["sync", "1"], ["admin-token"]])
def test_postgresql_that_is_not_running_is_named(tmp_path: Path, command: list[str]) -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/amosync"
    result = amosync(tmp_path, *command, AMOSYNC_DATABASE_URL=url, AMOSYNC_ENCRYPTION_KEY=KEY)
    lines = assert_config_error(result, "AMOSYNC_DATABASE_URL")
    assert "connection refused" in lines[0]


def test_a_database_that_does_not_exist_on_the_server_is_named(tmp_path: Path) -> None:
    if not _pg_ok():
        pytest.skip("PostgreSQL is not reachable")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/amosync_no_such_database"
    result = amosync(
        tmp_path, "db", "upgrade", AMOSYNC_DATABASE_URL=url, AMOSYNC_ENCRYPTION_KEY=KEY
    )
    lines = assert_config_error(result, "AMOSYNC_DATABASE_URL")
    assert "does not exist" in lines[0]


def test_a_host_that_does_not_resolve_is_named(tmp_path: Path) -> None:
    url = "postgresql://postgres@no-such-host.invalid:5432/amosync"
    result = amosync(tmp_path, "worker", AMOSYNC_DATABASE_URL=url, AMOSYNC_ENCRYPTION_KEY=KEY)
    assert "no-such-host.invalid" in assert_config_error(result, "AMOSYNC_DATABASE_URL")[0]


@pytest.mark.parametrize("command", [["serve"], ["admin-token"]])
def test_a_mistyped_sqlite_directory_is_an_error_not_a_new_database(
    tmp_path: Path, command: list[str]
) -> None:
    result = amosync(tmp_path, *command, AMOSYNC_DATABASE_URL="sqlite:///./dta/amosync.db")
    assert "dta" in assert_config_error(result, "AMOSYNC_DATABASE_URL")[0]
    assert list(tmp_path.iterdir()) == []  # nothing created anywhere


def test_a_new_file_in_an_existing_directory_is_the_normal_first_run(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    result = amosync(tmp_path, "db", "upgrade", AMOSYNC_DATABASE_URL="sqlite:///./data/a.db")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "a.db").is_file()


@pytest.mark.parametrize("command", [["serve"], ["sandbox"]])
def test_a_malformed_encryption_key_is_named(tmp_path: Path, command: list[str]) -> None:
    result = amosync(tmp_path, *command, AMOSYNC_ENCRYPTION_KEY="not-a-key")
    lines = assert_config_error(result, "AMOSYNC_ENCRYPTION_KEY")
    assert "not-a-key" not in "".join(lines)  # a secret is never echoed back


def test_postgresql_without_a_key_is_named(tmp_path: Path, pg_database: str) -> None:
    result = amosync(tmp_path, "serve", AMOSYNC_DATABASE_URL=pg_database)
    assert_config_error(result, "AMOSYNC_ENCRYPTION_KEY")


@pytest.mark.parametrize("command", [["serve"], ["worker"]])
def test_a_key_that_cannot_read_the_stored_secrets_is_named(
    tmp_path: Path, pg_database: str, command: list[str]
) -> None:
    # The first start stores the generated admin token, encrypted with the first key.
    first = amosync(
        tmp_path, "admin-token", AMOSYNC_DATABASE_URL=pg_database, AMOSYNC_ENCRYPTION_KEY=KEY
    )
    assert first.returncode == 0, first.stderr
    other = Fernet.generate_key().decode()
    result = amosync(
        tmp_path, *command, AMOSYNC_DATABASE_URL=pg_database, AMOSYNC_ENCRYPTION_KEY=other
    )
    lines = assert_config_error(result, "AMOSYNC_ENCRYPTION_KEY")
    assert "cannot decrypt" in lines[0]


def test_a_replaced_key_file_is_named(tmp_path: Path) -> None:
    assert amosync(tmp_path, "admin-token").returncode == 0
    # A secret stored with the key of the first start: an account's Unisender key.
    key_file = tmp_path / "amosync.db.key"
    stored = Cipher(key_file.read_text().strip()).encrypt("unisender-key")
    asyncio.run(store_account(f"sqlite:///{tmp_path / 'amosync.db'}", stored))
    key_file.write_text(Fernet.generate_key().decode() + "\n")
    lines = assert_config_error(amosync(tmp_path, "serve"), "AMOSYNC_ENCRYPTION_KEY")
    assert "amosync.db.key" in lines[0]


async def store_account(url: str, unisender_key_enc: str) -> None:
    engine = make_engine(url)
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            session.add(Account(id=1, subdomain="a", unisender_key_enc=unisender_key_enc))
    finally:
        await engine.dispose()


def test_a_generated_admin_token_is_kept_across_restarts(tmp_path: Path) -> None:
    first = amosync(tmp_path, "admin-token")
    second = amosync(tmp_path, "admin-token")
    assert first.returncode == second.returncode == 0, first.stderr
    token = first.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{48}", token)
    assert second.stdout.strip() == token
    token_file = tmp_path / "amosync.db.admin-token"
    assert token_file.read_text().strip() == token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    rotated = amosync(tmp_path, "admin-token", "--rotate")
    assert rotated.returncode == 0
    assert rotated.stdout.strip() not in ("", token)
    assert amosync(tmp_path, "admin-token").stdout.strip() == rotated.stdout.strip()


def test_a_generated_admin_token_is_kept_in_postgresql(tmp_path: Path, pg_database: str) -> None:
    env = {"AMOSYNC_DATABASE_URL": pg_database, "AMOSYNC_ENCRYPTION_KEY": KEY}
    token = amosync(tmp_path, "admin-token", **env).stdout.strip()
    assert len(token) == 48
    # Another process elsewhere (another working directory) gets the same one.
    (tmp_path / "elsewhere").mkdir()
    assert amosync(tmp_path / "elsewhere", "admin-token", **env).stdout.strip() == token
    rotated = amosync(tmp_path, "admin-token", "--rotate", **env).stdout.strip()
    assert rotated not in ("", token)
    assert amosync(tmp_path, "admin-token", **env).stdout.strip() == rotated
    assert list(tmp_path.glob("*.admin-token")) == []


def test_a_set_admin_token_is_printed_and_not_rotated(tmp_path: Path) -> None:
    assert amosync(tmp_path, "admin-token", AMOSYNC_ADMIN_TOKEN="mine").stdout.strip() == "mine"
    result = amosync(tmp_path, "admin-token", "--rotate", AMOSYNC_ADMIN_TOKEN="mine")
    assert_config_error(result, "AMOSYNC_ADMIN_TOKEN")


def test_sync_of_a_missing_account_prints_no_token(tmp_path: Path) -> None:
    token = amosync(tmp_path, "admin-token").stdout.strip()
    result = amosync(tmp_path, "sync", "999")
    assert result.returncode != 0
    assert "999" in result.stdout + result.stderr
    assert token not in result.stdout + result.stderr
    assert "admin_bearer" not in result.stdout + result.stderr


HELP = [[], ["serve"], ["worker"], ["sync"], ["db"], ["db", "upgrade"], ["demo"], ["sandbox"],
        ["admin-token"], ["widget"], ["widget", "build"]]  # fmt: skip


@pytest.fixture
def kept_logging() -> Iterator[None]:
    """The CLI's callback points structlog and the root logger at CliRunner's stream, which is
    closed once `invoke` returns: later tests would log into a closed file (uvicorn's start-up
    among them). Put back the configuration the rest of the suite logs through."""
    config = structlog.get_config()
    handlers = logging.root.handlers[:]
    yield
    structlog.configure(**config)
    logging.root.handlers[:] = handlers


@pytest.mark.usefixtures("kept_logging")
@pytest.mark.parametrize("command", HELP)
def test_help_shows_no_type_markers(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert not re.search(r"<\w+>", result.output), result.output
    assert "--help" in result.output


def start_serve(cwd: Path, port: int) -> tuple[subprocess.Popen[str], list[str]]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("AMOSYNC_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "amosync.cli.main", "serve", "--port", str(port)],
        cwd=cwd,
        env={**clean, "AMOSYNC_LOG_FORMAT": "console"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line)
        if "amosync is running" in line:
            return process, lines
    process.wait(timeout=10)
    raise AssertionError("".join(lines))


def test_serve_says_where_to_open_and_keeps_its_token_across_restarts(tmp_path: Path) -> None:
    port = closed_port()
    base = f"http://127.0.0.1:{port}"
    tokens = []
    for _ in range(2):
        process, lines = start_serve(tmp_path, port)
        try:
            output = "".join(lines)
            assert f"open {base}/ for the dashboard" in output
            assert re.search(rf"service\.listening .*url={re.escape(base)}", output), output
            token = amosync(tmp_path, "admin-token").stdout.strip()
            assert token not in output  # shown by `amosync admin-token`, never logged
            answer = httpx.get(f"{base}/accounts", headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200, answer.text
            tokens.append(token)
        finally:
            stop(process)
    assert tokens[0] == tokens[1]


def test_a_busy_port_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = amosync(tmp_path, "serve", "--port", str(port))
    lines = assert_config_error(result, "--port")
    assert str(port) in lines[0]
    assert "service.started" not in result.stdout + result.stderr
