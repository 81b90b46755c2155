"""`amosync sync ACCOUNT_ID`: a full sync in the foreground with a rich progress bar."""

from __future__ import annotations

import asyncio
import contextlib

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from amosync.accounts import service as accounts
from amosync.config import Settings
from amosync.db.engine import transaction
from amosync.db.models import RunStatus, SyncRun
from amosync.errors import AppError
from amosync.runtime.services import Services, build_services, freeze_startup_heap
from amosync.sync.service import start_full_sync
from amosync.worker.runner import Worker


async def run_with_progress(settings: Settings, account_id: int) -> int:
    """Start (or join) the account's full sync, run it here, show progress. Exit code."""
    console = Console(stderr=True)
    services = build_services(settings)
    freeze_startup_heap()
    try:
        try:
            async with transaction(services.sessions) as session:
                await accounts.require(session, account_id)
                run, _ = await start_full_sync(session, account_id)
                run_id = run.id
        except AppError as exc:
            console.print(f"[red]{exc.detail}[/red]")
            return 2
        # A worker of our own runs the queue (another worker may take the job: then we watch).
        worker = Worker(services, concurrency=2)
        worker_task = asyncio.create_task(worker.run())
        try:
            final = await _watch(services, run_id, console)
        finally:
            worker.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(worker_task, timeout=30)
        if final.status == RunStatus.DONE:
            console.print(
                f"[green]done[/green]: {final.fetched} contacts, {final.synced} synced, "
                f"{final.unsynced} unsynced"
            )
            return 0
        console.print(f"[red]sync failed[/red]: {final.error}")
        return 1
    finally:
        await services.aclose()


async def _watch(services: Services, run_id: int, console: Console) -> SyncRun:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]:>8.0f} contacts/s"),
        TextColumn("imported {task.fields[imported]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("fetched", total=None, rate=0.0, imported=0)
        while True:
            async with services.sessions() as session:
                run = await session.get(SyncRun, run_id)
            assert run is not None
            expected = max(run.expected or 0, run.fetched) or None
            elapsed = progress.tasks[0].elapsed or 0.0
            progress.update(
                task,
                completed=run.fetched,
                total=expected
                if run.status not in (RunStatus.DONE, RunStatus.FAILED)
                else run.fetched,
                rate=run.fetched / elapsed if elapsed > 0 else 0.0,
                imported=run.synced,
                description=run.status,
            )
            if run.status in (RunStatus.DONE, RunStatus.FAILED):
                return run
            await asyncio.sleep(0.25)
