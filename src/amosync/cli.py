"""The `amosync` command line (typer)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer

from amosync.config import get_settings
from amosync.logging import configure_logging

app = typer.Typer(help="amosync: amoCRM contacts → Unisender list.", no_args_is_help=True)
db_app = typer.Typer(help="Database commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@app.callback()
def _setup() -> None:
    configure_logging(get_settings().log_format)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8080, help="Port to listen on."),
) -> None:
    """Run the HTTP service (migrates the database first; runs the worker inline by default)."""
    import uvicorn

    from amosync.app import create_app

    uvicorn.run(
        create_app(get_settings(), freeze_gc=True),
        host=host,
        port=port,
        access_log=False,
        log_config=None,
        proxy_headers=True,
    )


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply database migrations."""
    from amosync.db.migrate import upgrade

    upgrade(get_settings().database_url, revision)
    typer.echo(f"database at {revision}")


@app.command()
def worker(
    slots: int = typer.Option(4, help="Jobs run at once (each for a different account)."),
) -> None:
    """Run a standalone worker (any number of them against one PostgreSQL database)."""
    import asyncio
    import signal

    from amosync.db.migrate import upgrade
    from amosync.state import build_services, freeze_startup_heap
    from amosync.worker.runner import Worker

    settings = get_settings()
    upgrade(settings.database_url)

    async def main() -> None:
        services = build_services(settings)
        runner = Worker(services, concurrency=slots)
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


@app.command()
def sync(account_id: int = typer.Argument(..., help="amoCRM account id.")) -> None:
    """Run a full sync in the foreground with a progress bar."""
    import asyncio

    from amosync.db.migrate import upgrade
    from amosync.sync.foreground import run_with_progress

    settings = get_settings()
    upgrade(settings.database_url)
    code = asyncio.run(run_with_progress(settings, account_id))
    raise typer.Exit(code)


widget_app = typer.Typer(help="The amoCRM widget.", no_args_is_help=True)
app.add_typer(widget_app, name="widget")


@widget_app.command("build")
def widget_build(
    out: Path = typer.Option(Path("widget.zip"), help="Where to write the archive."),
    backend_url: str | None = typer.Option(
        None, help="The service's public URL (default: AMOSYNC_PUBLIC_URL)."
    ),
    support_email: str | None = typer.Option(
        None, help="Support address shown in amoCRM and in the widget."
    ),
    support_url: str | None = typer.Option(
        None, help="Support page shown in amoCRM and in the widget (not this service's URL)."
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
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(9000, help="Port to listen on."),
    seed: bool = typer.Option(True, help="Seed a small demo account and Unisender key."),
) -> None:
    """Run the bundled amoCRM and Unisender simulators (driven over /_sandbox/...)."""
    from amosync.sandbox import main

    main(host, port, demo=seed)


@app.command()
def demo(
    host: str = typer.Option("127.0.0.1", help="Interface of the service."),
    port: int = typer.Option(8080, help="Port of the service."),
    sandbox_port: int = typer.Option(9000, help="Port of the sandbox."),
    contacts: int = typer.Option(3000, help="Contacts in the demo account."),
) -> None:
    """Sandbox + service + a demo account installed through the real flow + a full sync."""
    import asyncio

    from amosync.demo import run_demo

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_demo(
                get_settings(), host=host, port=port, sandbox_port=sandbox_port, contacts=contacts
            )
        )


if __name__ == "__main__":
    app()
