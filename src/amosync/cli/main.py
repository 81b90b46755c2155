"""The `amosync` command line (typer).

Every command that uses the database first runs `amosync.runtime.preflight.prepare`; a mistake in
the settings is a `ConfigError`, printed as one or two lines naming the setting, exit 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog
import typer
import uvicorn
from typer.core import TyperArgument, TyperCommand

from amosync.config import ConfigError, Settings, get_settings
from amosync.runtime.logging import configure_logging

CONFIG_ERROR = 2
HEARTBEAT = Path(tempfile.gettempdir()) / "amosync-worker.heartbeat"


class _App(typer.Typer):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except ConfigError as exc:
            first, *rest = exc.lines()
            typer.echo(f"amosync: {first}", err=True)
            for line in rest:
                typer.echo(f"  {line}", err=True)
            sys.exit(CONFIG_ERROR)


class _Command(TyperCommand):
    """A command whose arguments show their metavar alone (`ACCOUNT_ID`, not `<int>`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument) and param.metavar:
                param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]  # noqa: ARG005


def _typer(help_text: str) -> typer.Typer:
    # Click's plain help: typer's rich panels print a `<bool>` beside every flag and a
    # `<int>` beside every number. No local variables in tracebacks: they hold secrets.
    return _App(
        help=help_text,
        no_args_is_help=True,
        rich_markup_mode=None,
        pretty_exceptions_show_locals=False,
        add_completion=False,
    )


app = _typer("amosync: amoCRM contacts → Unisender list.")
db_app = _typer("Database commands.")
app.add_typer(db_app, name="db")
widget_app = _typer("The amoCRM widget.")
app.add_typer(widget_app, name="widget")


@app.callback()
def _setup() -> None:
    configure_logging(get_settings().log_format)


def _prepare(*, migrate: bool = True, rotate_admin_token: bool = False) -> Settings:
    from amosync.runtime.preflight import prepare

    return asyncio.run(
        prepare(get_settings(), migrate=migrate, rotate_admin_token=rotate_admin_token)
    )


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", metavar="HOST", help="Interface to listen on."),
    port: int = typer.Option(8080, metavar="PORT", help="Port to listen on."),
) -> None:
    """Run the HTTP service (migrates the database first; runs the worker inline by default)."""
    from amosync.app import create_app

    listener = bind(host, port)
    settings = _prepare()
    server = Server(
        create_app(settings, migrate=False, freeze_gc=True),
        host=host,
        port=port,
        show=settings.log_format == "console",
    )
    server.run(sockets=[listener])
    if not server.started:
        raise typer.Exit(1)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the app starts: a busy port is one clear error."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror:
        raise ConfigError("--host", f"{host} is not an address of this machine") from None
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                "--port",
                f"{port} is already in use on {host}",
                "stop what listens there, or pass another --port",
            ) from None
        raise ConfigError(
            "--host", f"{host}:{port} cannot be listened on: {exc.strerror}"
        ) from None
    return listener


def public_url(host: str, port: int) -> str:
    """The URL a person opens: an address bound on every interface is reached on loopback."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


class Server(uvicorn.Server):
    """uvicorn, saying where it listens once it does (and the dashboard is ready)."""

    def __init__(self, app: Any, *, host: str, port: int, show: bool) -> None:
        super().__init__(
            uvicorn.Config(
                app, host=host, port=port, access_log=False, log_config=None, proxy_headers=True
            )
        )
        self.url = public_url(host, port)
        self.show = show

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        url = self.url
        structlog.get_logger().info(
            "service.listening", url=url, dashboard=f"{url}/", docs=f"{url}/docs"
        )
        if self.show:
            typer.echo(
                f"amosync is running: open {url}/ for the dashboard (sign in with the token "
                f"`amosync admin-token` prints); API docs at {url}/docs"
            )


@db_app.command("upgrade", cls=_Command)
def db_upgrade(
    revision: str = typer.Argument("head", metavar="REVISION", help="Target revision."),
) -> None:
    """Apply database migrations."""
    from amosync.db.migrate import upgrade

    settings = _prepare(migrate=revision == "head")
    if revision != "head":
        upgrade(settings.database_url, revision)
    typer.echo(f"database at {revision}")


@app.command("admin-token")
def admin_token(
    rotate: bool = typer.Option(False, "--rotate", help="Make a new token (the old one stops)."),
) -> None:
    """Print the admin token of the API and dashboard (generated once when not set)."""
    settings = _prepare(rotate_admin_token=rotate)
    assert settings.admin_token
    typer.echo(settings.admin_token)
    if rotate:
        typer.echo("running `amosync serve` processes accept it once restarted", err=True)


@app.command()
def worker(
    slots: int = typer.Option(
        4, metavar="N", help="Jobs run at once (each for a different account)."
    ),
    heartbeat: Path = typer.Option(
        HEARTBEAT, metavar="FILE", help="File touched after every claim (for --check)."
    ),
    check: bool = typer.Option(
        False,
        "--check",
        help="Health check: exit 0 if a worker touched the heartbeat file recently, else 1.",
    ),
    max_age: float = typer.Option(
        60.0, metavar="SECONDS", help="With --check: the oldest heartbeat that is healthy."
    ),
) -> None:
    """Run a standalone worker (any number of them against one PostgreSQL database)."""
    if check:
        raise typer.Exit(check_heartbeat(heartbeat, max_age))
    from amosync.app import job_handlers
    from amosync.runtime.services import build_services, freeze_startup_heap
    from amosync.worker.runner import Worker

    settings = _prepare()

    async def main() -> None:
        services = build_services(settings)
        runner = Worker(services, handlers=job_handlers(), concurrency=slots, heartbeat=heartbeat)
        freeze_startup_heap()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            # Graceful: stop claiming, let running jobs finish (or hand them back).
            loop.add_signal_handler(sig, runner.stop)
        try:
            await runner.run()
        finally:
            await services.aclose()

    asyncio.run(main())


def check_heartbeat(path: Path, max_age: float) -> int:
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        typer.echo(f"unhealthy: no heartbeat at {path} (has the worker claimed anything yet?)")
        return 1
    if age > max_age:
        typer.echo(f"unhealthy: the worker last claimed work {age:.0f} s ago")
        return 1
    typer.echo(f"healthy: last claim {age:.0f} s ago")
    return 0


@app.command(cls=_Command)
def sync(
    account_id: int = typer.Argument(..., metavar="ACCOUNT_ID", help="amoCRM account id."),
) -> None:
    """Run a full sync in the foreground with a progress bar."""
    from amosync.app import JOB_MODULES
    from amosync.sync.foreground import run_with_progress

    assert JOB_MODULES  # loaded: the foreground worker runs every kind

    settings = _prepare()
    code = asyncio.run(run_with_progress(settings, account_id))
    raise typer.Exit(code)


@widget_app.command("build")
def widget_build(
    out: Path = typer.Option(
        Path("widget.zip"), metavar="FILE", help="Where to write the archive."
    ),
    backend_url: str | None = typer.Option(
        None, metavar="URL", help="The service's public URL (default: AMOSYNC_PUBLIC_URL)."
    ),
    support_email: str | None = typer.Option(
        None, metavar="ADDRESS", help="Support address shown in amoCRM and in the widget."
    ),
    support_url: str | None = typer.Option(
        None,
        metavar="URL",
        help="Support page shown in amoCRM and in the widget (not this service's URL).",
    ),
) -> None:
    """Build the amoCRM widget archive (upload it in amoCRM's integration settings)."""
    from amosync.widget.build import WidgetBuildError, build_widget, support_contacts

    url = backend_url or get_settings().webhook_base_url
    if not url:
        raise typer.BadParameter("pass --backend-url or set AMOSYNC_PUBLIC_URL")
    try:
        support = support_contacts(support_email, support_url, url)
        path = build_widget(out, url, support=support)
    except WidgetBuildError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"widget written to {path}")
    if not support.manifest():
        typer.echo("no --support-email given: the widget shows users no way to reach you", err=True)


@app.command()
def sandbox(
    host: str = typer.Option("127.0.0.1", metavar="HOST", help="Interface to listen on."),
    port: int = typer.Option(9000, metavar="PORT", help="Port to listen on."),
    seed: bool = typer.Option(True, help="Seed a small demo account and Unisender key."),
) -> None:
    """Run the bundled amoCRM and Unisender simulators (driven over /_sandbox/...)."""
    from amosync.sandbox import main

    main(host, port, demo=seed)


@app.command()
def demo(
    host: str = typer.Option("127.0.0.1", metavar="HOST", help="Interface of the service."),
    port: int = typer.Option(8080, metavar="PORT", help="Port of the service."),
    sandbox_port: int = typer.Option(9000, metavar="PORT", help="Port of the sandbox."),
    contacts: int = typer.Option(3000, metavar="N", help="Contacts in the demo account."),
) -> None:
    """Sandbox + service + a demo account installed through the real flow + a full sync.

    Its data is its own: a database in a temporary directory, removed when the demo stops.
    """
    from amosync.cli.demo import run_demo

    listener = bind(host, port)
    bind("127.0.0.1", sandbox_port).close()  # busy: say so now, not halfway through

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    # uvicorn hands SIGTERM on once its servers have stopped: as an exception here, so the
    # demo's temporary directory is removed on the way out rather than left behind.
    signal.signal(signal.SIGTERM, interrupted)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_demo(
                get_settings(),
                host=host,
                port=port,
                sandbox_port=sandbox_port,
                contacts=contacts,
                listener=listener,
            )
        )


if __name__ == "__main__":
    app()
