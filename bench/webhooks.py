"""Webhook benchmark (a command, not a test), on SQLite and on PostgreSQL.

(a) Ingest: `POST /webhook` with one-contact payloads on ONE `amosync serve` process
    (subprocess, AMOSYNC_WORKER=off so no worker competes for the CPU), beside a do-nothing
    FastAPI endpoint started the same way (uvicorn, same options, same machine, same run).
    - open loop: requests sent at a fixed rate whatever the answers (latency counted from
      the moment a request was due, so a slow server cannot hide its queue): p50/p99.
      Target: p99 < 100 ms at 500 requests/s.
    - closed loop: N connections sending back to back: the maximum throughput of each, and
      the ratio. The two servers take turns (three rounds each by default), so a spell of
      the shared machine running slow falls on both. Target: amosync ≥ 40 % of the
      do-nothing endpoint.
(b) End to end: `amosync serve` with its inline worker, 100 changes/s for 20 s; the time
    from a webhook's 200 to its address being in the sandbox's Unisender list (the list is
    polled every 50 ms, which adds up to 50 ms). Targets: p50 ≤ 1 s, p99 ≤ 3 s.
(c) Consent: 20 unsubscribes/s for 20 s in the Unisender sandbox, each posted to the
    service's hook; the time until the amoCRM sandbox has the tag on the contact, with
    amoCRM's 7 requests/s enforced. Targets: p50 ≤ 2 s, p99 ≤ 5 s. `--consent-only` runs
    this part alone.
(d) Deal stage → list (SPEC §8): a status rule (won deals → *Customers*) set through
    `PUT /accounts/{id}/settings`, then deals moved to won in the amoCRM sandbox at 5 a
    second for 20 s, each of one contact; the sandbox posts `status_lead` to the service;
    the time until the contact's address is in the list (polled every 50 ms), amoCRM's 7
    requests/s enforced. Targets: p50 ≤ 1 s, p99 ≤ 3 s. `--leads-only` runs this part alone.

The load generator runs in a process of its own (a small asyncio HTTP/1.1 client on
keep-alive connections), so it does not take the server's CPU; the sandboxes run in others.
Run: `.venv/bin/python bench/webhooks.py [--only sqlite|postgresql] [--quick]`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402

from amosync.accounts.unisender import unisender_client  # noqa: E402
from amosync.app import job_handlers  # noqa: E402
from amosync.db.engine import transaction  # noqa: E402
from amosync.runtime.logging import configure_logging  # noqa: E402
from amosync.sandbox import RemoteSandbox  # noqa: E402
from amosync.sync.service import start_full_sync  # noqa: E402
from amosync.worker.runner import Worker  # noqa: E402
from bench.common import (  # noqa: E402
    ACCOUNT_ID,
    KEY,
    Sandboxes,
    cli_process,
    database,
    free_port,
    installed_account,
    run,
    sandbox_processes,
    settings_env,
    settings_for,
    wait_http,
)

HOST = "127.0.0.1"

# --- the payload ---------------------------------------------------------------------------


def email_for(n: int) -> str:
    return f"contact{n}@bench.example"


def webhook_body(n: int) -> bytes:
    """A one-contact `add` webhook in amoCRM's format (SPEC §5)."""
    now = int(time.time())
    prefix = "contacts[add][0]"
    return urlencode(
        [
            (f"{prefix}[id]", str(n)),
            (f"{prefix}[name]", f"Contact {n}"),
            (f"{prefix}[responsible_user_id]", "504141"),
            (f"{prefix}[date_create]", str(now)),
            (f"{prefix}[last_modified]", str(now)),
            (f"{prefix}[updated_at]", str(now)),
            (f"{prefix}[custom_fields][0][id]", "55"),
            (f"{prefix}[custom_fields][0][name]", "Email"),
            (f"{prefix}[custom_fields][0][code]", "EMAIL"),
            (f"{prefix}[custom_fields][0][values][0][value]", email_for(n)),
            (f"{prefix}[custom_fields][0][values][0][enum]", "101"),
            (f"{prefix}[type]", "contact"),
            ("account[subdomain]", "bench"),
            ("account[id]", str(ACCOUNT_ID)),
            ("account[_links][self]", "https://bench.amocrm.ru"),
        ]
    ).encode()


# --- the load generator (runs in its own process) ------------------------------------------


@dataclass
class Load:
    url: str  # http://host:port/path?query
    mode: str  # "open" or "closed"
    duration: float
    rate: float = 0.0  # open loop: requests per second
    connections: int = 32
    first_id: int = 1


def request_bytes(url: str, body: bytes) -> bytes:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = (
        f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> int:
    """One request on a keep-alive connection; returns the status."""
    writer.write(data)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def generate(load: Load) -> dict[str, Any]:
    """Send the load; every request's id, due time, answer time (unix) and status."""
    parts = urlsplit(load.url)
    host, port = parts.hostname or HOST, parts.port or 80
    results: list[tuple[int, float, float, int]] = []
    clock0, wall0 = time.perf_counter(), time.time()

    def wall(t: float) -> float:
        return wall0 + (t - clock0)

    async def connection(next_item: Callable[[], Any]) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (item := await next_item()) is not None:
                n, due = item
                try:
                    status = await exchange(
                        reader, writer, request_bytes(load.url, webhook_body(n))
                    )
                except (OSError, asyncio.IncompleteReadError):
                    status = 0
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                results.append((n, wall(due), wall(time.perf_counter()), status))
        finally:
            writer.close()

    start = time.perf_counter() + 0.2
    ids = iter(range(load.first_id, 10**9))
    if load.mode == "closed":
        end = start + load.duration

        async def next_closed() -> tuple[int, float] | None:
            now = time.perf_counter()
            if now < start:
                await asyncio.sleep(start - now)
                now = time.perf_counter()
            return (next(ids), now) if now < end else None

        await asyncio.gather(*(connection(next_closed) for _ in range(load.connections)))
    else:
        queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
        workers = [asyncio.create_task(connection(queue.get)) for _ in range(load.connections)]
        total = int(load.rate * load.duration)
        for i in range(total):
            due = start + i / load.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((next(ids), due))
        for _ in workers:
            queue.put_nowait(None)
        await asyncio.gather(*workers)
    return {"started": wall(start), "results": results}


def loadgen_main(spec: str, out: str) -> None:
    load = Load(**json.loads(spec))
    # The collector's full passes over the growing list of results stalled the generator
    # for 30-40 ms at a time, which it then counted against whichever server it measured.
    gc.disable()
    try:
        import uvloop

        outcome = uvloop.run(generate(load))
    except ImportError:
        outcome = asyncio.run(generate(load))
    Path(out).write_text(json.dumps(outcome))


def drive(load: Load) -> dict[str, Any]:
    """Run the load generator in a process of its own and return what it measured."""
    spec = json.dumps(load.__dict__)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "results.json"
        done = subprocess.run(
            [sys.executable, __file__, "--loadgen", spec, str(out)], capture_output=True
        )
        if done.returncode:
            raise RuntimeError(f"the load generator failed:\n{done.stderr.decode()}")
        return dict(json.loads(out.read_text()))


# --- the do-nothing endpoint ---------------------------------------------------------------


def noop_main(port: int) -> None:
    """A FastAPI app that reads the body and answers, served like `amosync serve`."""
    import uvicorn

    uvicorn.run(
        noop_app(), host=HOST, port=port, access_log=False, log_config=None, proxy_headers=True
    )


def noop_app() -> FastAPI:
    app = FastAPI()

    async def webhook(request: Request) -> dict[str, object]:
        await request.body()
        return {"accepted": 1}

    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.add_api_route("/webhook", webhook, methods=["POST"])
    app.add_api_route("/health", health, methods=["GET"])
    return app


@contextmanager
def noop_process() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--noop", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://{HOST}:{port}"
    try:
        wait_http(f"{url}/health", proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- figures -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Figures:
    sent: int
    ok: int
    errors: int
    rate: float  # answered per second
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, measured: dict[str, Any], duration: float) -> Figures:
        return cls.pooled([measured], duration)

    @classmethod
    def pooled(cls, rounds: list[dict[str, Any]], duration: float) -> Figures:
        """The figures of several runs of `duration` seconds each, taken together."""
        results = [result for measured in rounds for result in measured["results"]]
        latencies = [(answered - due) * 1000 for _, due, answered, status in results if status]
        ok = sum(1 for *_, status in results if status == 200)
        span = 0.0
        for measured in rounds:
            answers = [answered for _, _, answered, _ in measured["results"]]
            span += max(duration, max(answers, default=0.0) - measured["started"])
        return cls(
            sent=len(results),
            ok=ok,
            errors=len(results) - ok,
            rate=ok / span,
            p50_ms=percentile(latencies, 0.50),
            p99_ms=percentile(latencies, 0.99),
            max_ms=max(latencies, default=float("nan")),
        )

    def line(self) -> str:
        return (
            f"{self.rate:7.0f} req/s  p50 {self.p50_ms:6.1f} ms  p99 {self.p99_ms:6.1f} ms  "
            f"max {self.max_ms:6.0f} ms  ({self.ok} ok, {self.errors} errors)"
        )


# --- scenarios -----------------------------------------------------------------------------


async def _account(db_url: str, sandboxes: Sandboxes, **overrides: Any) -> tuple[Any, str]:
    """An installed, connected account; returns its settings and webhook token."""
    settings = settings_for(db_url, sandboxes, unisender_rpm=600_000, **overrides)
    async with (
        RemoteSandbox(sandboxes.amocrm) as amocrm,
        RemoteSandbox(sandboxes.unisender) as unisender,
    ):
        services = await installed_account(settings, amocrm, unisender, contacts=0)
        await services.aclose()
        [hook] = await amocrm.amocrm.webhooks(ACCOUNT_ID)
    token = parse_qs(urlsplit(hook["destination"]).query)["token"][0]
    return settings, token


def ingest(db: str, args: argparse.Namespace) -> dict[str, Any]:
    with sandbox_processes() as sandboxes:
        return run(_ingest(db, sandboxes, args))  # type: ignore[no-any-return]


async def _ingest(db: str, sandboxes: Sandboxes, args: argparse.Namespace) -> dict[str, Any]:
    async with database(db) as db_url:
        settings, token = await _account(db_url, sandboxes)
        port = free_port()
        service = f"http://{HOST}:{port}"
        env = settings_env(settings, worker="off")
        figures: dict[str, Any] = {}
        with (
            cli_process(["serve", "--port", str(port)], env, ready_url=f"{service}/health"),
            noop_process() as noop,
        ):
            targets = {"amosync": f"{service}/webhook?token={token}", "noop": f"{noop}/webhook"}
            for url in targets.values():
                # Warm-up: connections, SQLAlchemy's statement cache, the database's.
                drive(Load(url, "closed", 2.0, connections=args.connections, first_id=10**6))
            # Rounds taking turns, so a spell of the shared machine being slow or fast
            # falls on both servers rather than on whichever was running.
            rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
            length = args.duration / args.rounds
            for turn in range(args.rounds):
                for name, url in targets.items():
                    first = 1 + turn * 10**7
                    load = Load(url, "closed", length, connections=args.connections, first_id=first)
                    rounds[name].append(drive(load))
            for name, measured in rounds.items():
                figures[f"{name} closed"] = Figures.pooled(measured, length)
                figures[f"{name} rounds"] = [Figures.of(m, length).rate for m in measured]
            for name, url in targets.items():
                load = Load(url, "open", args.duration, rate=args.rate, connections=64)
                figures[f"{name} open"] = Figures.of(drive(load), args.duration)
    return figures


def end_to_end(db: str, args: argparse.Namespace) -> dict[str, float]:
    with sandbox_processes() as sandboxes:
        return run(_end_to_end(db, sandboxes, args))  # type: ignore[no-any-return]


async def _end_to_end(db: str, sandboxes: Sandboxes, args: argparse.Namespace) -> dict[str, float]:
    async with database(db) as db_url, RemoteSandbox(sandboxes.unisender) as remote:
        settings, token = await _account(db_url, sandboxes)
        [listed] = await remote.unisender.lists(KEY)
        await remote.unisender.configure(latency=args.unisender_latency)
        port = free_port()
        service = f"http://{HOST}:{port}"
        env = settings_env(settings, worker="inline")
        with cli_process(["serve", "--port", str(port)], env, ready_url=f"{service}/health"):
            since = time.time()
            load = Load(
                f"{service}/webhook?token={token}",
                "open",
                args.e2e_duration,
                rate=args.e2e_rate,
                connections=16,
            )
            generator = asyncio.create_task(asyncio.to_thread(drive, load))
            seen: dict[str, float] = {}
            stop_at: float | None = None
            while stop_at is None or time.time() < stop_at:
                members = await remote.unisender.list_members(KEY, listed["id"])
                now = time.time()
                for email in members:
                    seen.setdefault(email, now)
                if generator.done() and stop_at is None:
                    measured = generator.result()
                    acked = {n: answered for n, _, answered, s in measured["results"] if s == 200}
                    stop_at = now + 15  # give stragglers time to arrive
                if stop_at is not None and all(email_for(n) in seen for n in acked):
                    break
                await asyncio.sleep(0.05)
            imports = await remote.calls(
                api="unisender", path="/ru/api/importContacts", since=since
            )
    delays = [seen[email_for(n)] - t for n, t in acked.items() if email_for(n) in seen]
    return {
        "accepted": len(acked),
        "sent": len(measured["results"]),
        "arrived": len(delays),
        "p50": percentile(delays, 0.5),
        "p99": percentile(delays, 0.99),
        "max": max(delays, default=float("nan")),
        "mean": statistics.fmean(delays) if delays else float("nan"),
        "imports": len(imports),
    }


def unsubscriber(n: int) -> str:
    return f"unsub{n}@bench.example"


def consent(db: str, args: argparse.Namespace) -> dict[str, float]:
    with sandbox_processes() as sandboxes:
        return run(_consent(db, sandboxes, args))  # type: ignore[no-any-return]


async def _consent(db: str, sandboxes: Sandboxes, args: argparse.Namespace) -> dict[str, float]:
    """Unsubscribes in the sandbox's Unisender at a fixed rate; for each, the time until
    the amoCRM sandbox has the tag on the contact (the sandbox stamps when a tag is first
    added, so no polling error), with amoCRM's 7 requests/s enforced by the sandbox."""
    count = int(args.consent_rate * args.consent_duration)
    port = free_port()
    service = f"http://{HOST}:{port}"
    async with (
        database(db) as db_url,
        RemoteSandbox(sandboxes.amocrm) as amo,
        RemoteSandbox(sandboxes.unisender) as uni,
    ):
        # The hook URL is {PUBLIC_URL}/unisender/webhook: the service about to start.
        settings = settings_for(
            db_url, sandboxes, unisender_rpm=600_000, amocrm_redirect_uri=f"{service}/vidget"
        )
        services = await installed_account(settings, amo, uni, contacts=0)
        await amo.amocrm.configure(webhooks_enabled=False)  # nobody listens yet
        contact_of = {}
        for n in range(count):
            added = await amo.amocrm.add_contact(ACCOUNT_ID, f"Unsub {n}", emails=[unsubscriber(n)])
            contact_of[n] = int(added["id"])
        await amo.amocrm.configure(webhooks_enabled=True, rate_limit_rps=7)
        async with transaction(services.sessions) as session:
            await start_full_sync(session, ACCOUNT_ID)
        # The sync, and the hook set.
        await Worker(services, concurrency=1, handlers=job_handlers()).drain(120)
        await services.aclose()
        [hook] = await uni.unisender.hooks(KEY)
        assert hook["hook_url"].startswith(service), hook
        env = settings_env(settings, worker="inline")
        with cli_process(["serve", "--port", str(port)], env, ready_url=f"{service}/health"):
            before = (await amo.stats())["amocrm"]["rate_limited"]
            since = time.time()
            sent: dict[int, float] = {}
            start = time.monotonic()
            for n in range(count):
                due = start + n / args.consent_rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                sent[n] = time.time()
                await uni.unisender.unsubscribe(KEY, unsubscriber(n))
            deadline = time.monotonic() + 60
            tagged: dict[int, float] = {}
            while time.monotonic() < deadline:
                tagged = await amo.amocrm.tagged(ACCOUNT_ID, "unsubscribed")
                if len(tagged) >= count:
                    break
                await asyncio.sleep(0.25)
            window = time.time() - since
            # Each batch's notes follow its tags by one request: wait for the last ones.
            notes = await amo.amocrm.notes(ACCOUNT_ID)
            while len(notes) < len(tagged) and time.monotonic() < deadline:
                await asyncio.sleep(0.25)
                notes = await amo.amocrm.notes(ACCOUNT_ID)
            calls = await amo.calls(api="amocrm", account_id=ACCOUNT_ID, since=since)
            limited = (await amo.stats())["amocrm"]["rate_limited"] - before
    delays = [tagged[contact_of[n]] - sent[n] for n in sent if contact_of[n] in tagged]
    return {
        "sent": count,
        "tagged": len(delays),
        "notes": len(notes),
        "p50": percentile(delays, 0.5),
        "p99": percentile(delays, 0.99),
        "max": max(delays, default=float("nan")),
        "amocrm_calls": len(calls),
        "amocrm_rps": len(calls) / window if window else float("nan"),
        "rate_limited": limited,
    }


def report_consent(db: str, args: argparse.Namespace) -> None:
    print(
        f"== consent, {db}: {args.consent_rate:.0f} unsubscribes/s for "
        f"{args.consent_duration:.0f} s, inline worker, amoCRM limited to 7 requests/s =="
    )
    figures = consent(db, args)
    print(
        f"  tagged {figures['tagged']:.0f} of {figures['sent']:.0f} contacts, "
        f"{figures['notes']:.0f} notes"
    )
    print(
        f"  unsubscribe -> tag in amoCRM: p50 {figures['p50']:.2f} s (target <= 2)  "
        f"p99 {figures['p99']:.2f} s (target <= 5)  max {figures['max']:.2f} s"
    )
    print(
        f"  amoCRM requests {figures['amocrm_calls']:.0f} "
        f"({figures['amocrm_rps']:.1f}/s over the run), 429s {figures['rate_limited']:.0f}"
    )
    sys.stdout.flush()


# The sandbox's main pipeline: its won status, and the one the deals wait in.
PIPELINE, WON, TALKS = 3177727, 142, 32392159


def buyer(n: int) -> str:
    return f"buyer{n}@bench.example"


def lead_status(db: str, args: argparse.Namespace) -> dict[str, float]:
    with sandbox_processes() as sandboxes:
        return run(_lead_status(db, sandboxes, args))  # type: ignore[no-any-return]


async def _lead_status(db: str, sandboxes: Sandboxes, args: argparse.Namespace) -> dict[str, float]:
    """Deals moved to won at a fixed rate; for each, the time until its contact's address
    is in the status rule's list."""
    count = int(args.lead_rate * args.lead_duration)
    port = free_port()
    service = f"http://{HOST}:{port}"
    async with (
        database(db) as db_url,
        RemoteSandbox(sandboxes.amocrm) as amo,
        RemoteSandbox(sandboxes.unisender) as uni,
    ):
        # amoCRM's webhook goes to {PUBLIC_URL}/webhook: the service about to start.
        settings = settings_for(
            db_url, sandboxes, unisender_rpm=600_000, amocrm_redirect_uri=f"{service}/vidget"
        )
        services = await installed_account(settings, amo, uni, contacts=0)
        customers = await unisender_client(services, KEY).create_list("Customers")
        await services.aclose()
        await amo.amocrm.configure(webhooks_enabled=False)  # nobody listens yet
        lead_of = {}
        for n in range(count):
            contact = await amo.amocrm.add_contact(ACCOUNT_ID, f"Buyer {n}", emails=[buyer(n)])
            lead = await amo.amocrm.create_lead(
                ACCOUNT_ID, [int(contact["id"])], pipeline_id=PIPELINE, status_id=TALKS
            )
            lead_of[n] = int(lead["id"])
        await amo.amocrm.configure(webhooks_enabled=True, rate_limit_rps=7)
        env = settings_env(settings, worker="inline")
        with cli_process(["serve", "--port", str(port)], env, ready_url=f"{service}/health"):
            async with httpx.AsyncClient(
                base_url=service, headers={"Authorization": f"Bearer {settings.admin_token}"}
            ) as http:
                rule = {"pipeline_id": PIPELINE, "status_id": WON}
                saved = await http.put(
                    f"/accounts/{ACCOUNT_ID}/settings",
                    json={"lists": [{"list_id": customers, "lead_statuses": [rule]}]},
                )
                assert saved.status_code == 200, saved.text
                await _settled(http, amo)
            before = (await amo.stats())["amocrm"]["rate_limited"]
            since = time.time()
            sent: dict[int, float] = {}
            seen: dict[str, float] = {}
            start = time.monotonic()

            async def move() -> None:
                for n in range(count):
                    due = start + n / args.lead_rate
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    sent[n] = time.time()
                    await amo.amocrm.move_lead(ACCOUNT_ID, lead_of[n], WON)

            mover = asyncio.create_task(move())
            deadline: float | None = None
            while deadline is None or time.monotonic() < deadline:
                members = await uni.unisender.list_members(KEY, customers)
                now = time.time()
                for email in members:
                    seen.setdefault(email, now)
                if mover.done() and deadline is None:
                    await mover
                    deadline = time.monotonic() + 15  # stragglers
                if len(seen) >= count:
                    break
                await asyncio.sleep(0.05)
            calls = await amo.calls(api="amocrm", account_id=ACCOUNT_ID, since=since)
            limited = (await amo.stats())["amocrm"]["rate_limited"] - before
    window = time.time() - since
    delays = [seen[buyer(n)] - t for n, t in sent.items() if buyer(n) in seen]
    return {
        "moved": len(sent),
        "listed": len(delays),
        "p50": percentile(delays, 0.5),
        "p99": percentile(delays, 0.99),
        "max": max(delays, default=float("nan")),
        "amocrm_calls": len(calls),
        "amocrm_rps": len(calls) / window if window else float("nan"),
        "rate_limited": limited,
    }


async def _settled(http: httpx.AsyncClient, amo: RemoteSandbox, timeout: float = 120) -> None:
    """Until the full sync the settings started is done and amoCRM's webhook covers deals."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        account = (await http.get(f"/accounts/{ACCOUNT_ID}")).json()
        run = account.get("last_sync") or {}
        hooks = await amo.amocrm.webhooks(ACCOUNT_ID)
        covered = any("status_lead" in hook.get("settings", []) for hook in hooks)
        if run.get("status") == "done" and covered:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("the settings' full sync or the deal webhooks did not come")


def report_leads(db: str, args: argparse.Namespace) -> None:
    print(
        f"== deal stage -> list, {db}: {args.lead_rate:.0f} deals won/s for "
        f"{args.lead_duration:.0f} s, inline worker, amoCRM limited to 7 requests/s =="
    )
    figures = lead_status(db, args)
    print(f"  listed {figures['listed']:.0f} of {figures['moved']:.0f} contacts")
    print(
        f"  deal won -> address in the list: p50 {figures['p50']:.2f} s (target <= 1)  "
        f"p99 {figures['p99']:.2f} s (target <= 3)  max {figures['max']:.2f} s"
    )
    print(
        f"  amoCRM requests {figures['amocrm_calls']:.0f} "
        f"({figures['amocrm_rps']:.1f}/s over the run), 429s {figures['rate_limited']:.0f}"
    )
    sys.stdout.flush()


def report(db: str, args: argparse.Namespace) -> None:
    print(f"== ingest, {db}: one `amosync serve` (AMOSYNC_WORKER=off) vs a do-nothing endpoint ==")
    figures = ingest(db, args)
    print(
        f"closed loop, {args.connections} connections, {args.rounds} turns of "
        f"{args.duration / args.rounds:.0f} s each:"
    )
    print(f"  do-nothing  {figures['noop closed'].line()}")
    print(f"  amosync     {figures['amosync closed'].line()}")
    ratio = figures["amosync closed"].rate / figures["noop closed"].rate
    turns = zip(figures["amosync rounds"], figures["noop rounds"], strict=True)
    each = ", ".join(f"{a / b:.0%}" for a, b in turns)
    print(f"  ratio       {ratio:7.0%}   (target >= 40%; rounds {each})")
    print(f"open loop, {args.rate:.0f} requests/s offered, {args.duration:.0f} s:")
    print(f"  do-nothing  {figures['noop open'].line()}")
    print(f"  amosync     {figures['amosync open'].line()}   (target p99 < 100 ms)")
    sys.stdout.flush()

    print(
        f"== end to end, {db}: {args.e2e_rate:.0f} changes/s for {args.e2e_duration:.0f} s, "
        f"inline worker, Unisender latency {args.unisender_latency * 1000:.0f} ms =="
    )
    e2e = end_to_end(db, args)
    print(
        f"  accepted {e2e['accepted']:.0f} of {e2e['sent']:.0f}, in the list {e2e['arrived']:.0f}"
    )
    print(
        f"  webhook 200 -> address listed: p50 {e2e['p50']:.2f} s (target <= 1)  "
        f"p99 {e2e['p99']:.2f} s (target <= 3)  max {e2e['max']:.2f} s"
    )
    print(
        f"  importContacts calls {e2e['imports']:.0f} "
        f"({e2e['arrived'] / max(e2e['imports'], 1):.1f} addresses per call)"
    )
    sys.stdout.flush()


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--loadgen":
        loadgen_main(sys.argv[2], sys.argv[3])
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--noop":
        noop_main(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument("--rate", type=float, default=500, help="open-loop requests/s")
    parser.add_argument("--duration", type=float, default=15, help="seconds of each ingest load")
    parser.add_argument("--connections", type=int, default=32, help="closed-loop connections")
    parser.add_argument("--rounds", type=int, default=3, help="closed-loop turns of each server")
    parser.add_argument("--e2e-rate", type=float, default=100, help="changes/s end to end")
    parser.add_argument("--e2e-duration", type=float, default=20)
    parser.add_argument("--unisender-latency", type=float, default=0.05, help="seconds")
    parser.add_argument("--consent-rate", type=float, default=20, help="unsubscribes/s")
    parser.add_argument("--consent-duration", type=float, default=20)
    parser.add_argument(
        "--consent-only", action="store_true", help="only (c), unsubscribe -> amoCRM tag"
    )
    parser.add_argument("--lead-rate", type=float, default=5, help="deals won/s")
    parser.add_argument("--lead-duration", type=float, default=20)
    parser.add_argument("--leads-only", action="store_true", help="only (d), deal stage -> list")
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.e2e_duration, args.consent_duration = 3, 5, 5
        args.lead_duration = 5
    configure_logging("json", level=40)
    for db in args.only or ["sqlite", "postgresql"]:
        if not (args.consent_only or args.leads_only):
            report(db, args)
        if not args.leads_only:
            report_consent(db, args)
        if not args.consent_only:
            report_leads(db, args)


if __name__ == "__main__":
    main()
