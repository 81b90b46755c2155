"""What the dashboard shows, shaped for the templates and the progress endpoint.

Built from the domain repositories; nothing here reads a secret column, so nothing secret
can reach a page.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from amosync.accounts import service as accounts
from amosync.accounts.problems import (
    KEY_MISSING_DETAIL,
    REAUTH_DETAIL,
    ProblemCode,
)
from amosync.accounts.schemas import AccountOut
from amosync.accounts.settings import AccountSettings
from amosync.db.models import Account, AccountStatus, RunStatus, SyncRun, utcnow
from amosync.web.i18n import N_, Language

ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)

REASONS = {
    "no_email": N_("No e-mail address"),
    "invalid_email": N_("Invalid e-mail address"),
}


def reason_text(reason: str | None, language: Language) -> str:
    """A person's wording of an unsynced reason code, in the page's language."""
    if not reason:
        return language.gettext("Unknown")
    if reason.startswith("unisender:"):
        code = reason.removeprefix("unisender:")
        return language.gettext("Rejected by Unisender (%(code)s)") % {"code": code}
    if reason in REASONS:
        return language.gettext(REASONS[reason])
    # A code this version does not know yet: readable, if not translated.
    return reason.replace("_", " ").capitalize()


@dataclass(frozen=True)
class Progress:
    """A full sync run as the progress bar shows it."""

    run_id: int
    status: str
    fetched: int
    synced: int
    unsynced: int
    failed: int
    expected: int | None
    # None while the total is unknown (first sync: amoCRM gives no count).
    percent: int | None
    # What the bar shows: None (indeterminate, moving) only while a run with no known
    # total is active; a run that ended without one shows an empty bar, never a full one.
    bar: int | None
    rate: float | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def processed(self) -> int:
        return self.synced + self.unsynced + self.failed

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "active": self.active,
            "fetched": self.fetched,
            "synced": self.synced,
            "unsynced": self.unsynced,
            "failed": self.failed,
            "expected": self.expected,
            "percent": self.percent,
            "bar": self.bar,
            "rate": self.rate,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "error": self.error,
        }


def progress(run: SyncRun, *, now: datetime | None = None) -> Progress:
    processed = run.synced + run.unsynced + run.failed
    percent: int | None
    if run.status == RunStatus.DONE:
        percent = 100
    elif run.status == RunStatus.QUEUED:
        percent = 0
    elif run.expected:
        # The estimate can be short (contacts added since): stay below 100 until done.
        percent = min(99, processed * 100 // run.expected)
    else:
        percent = None
    rate = None
    if run.started_at is not None:
        elapsed = ((run.finished_at or now or utcnow()) - run.started_at).total_seconds()
        if elapsed > 0:
            rate = round(processed / elapsed, 1)
    bar = percent
    if bar is None and run.status not in ACTIVE:
        bar = 0
    return Progress(
        run_id=run.id,
        status=run.status,
        bar=bar,
        fetched=run.fetched,
        synced=run.synced,
        unsynced=run.unsynced,
        failed=run.failed,
        expected=run.expected,
        percent=percent,
        rate=rate,
        started_at=run.started_at,
        finished_at=run.finished_at,
        error=run.error,
    )


class AccountRow(AccountOut):
    """An account as the dashboard shows it: the API's view of it (no secret in it) with
    its last run's progress."""

    run: Progress | None

    @property
    def title(self) -> str:
        return self.name or self.subdomain or f"Account {self.id}"


async def account_rows(session: AsyncSession, found: Sequence[Account]) -> list[AccountRow]:
    now = utcnow()
    return [
        AccountRow(
            **dict(accounts.view(state)),
            run=progress(state.last_run, now=now) if state.last_run else None,
        )
        for state in await accounts.states(session, found)
    ]


# What each problem means and what to do about it, in the operator's words. The control
# that fixes it (if the dashboard has one) is the template's: `PROBLEM_CONTROLS`.
PROBLEMS: dict[str, tuple[str, str]] = {
    ProblemCode.reauth_required: (
        N_("amoCRM no longer accepts this account's authorization"),
        N_(
            "Install the amosync widget again in amoCRM (Settings → Integrations). "
            "The account resumes by itself once amoCRM has authorised it."
        ),
    ),
    ProblemCode.unisender_key_invalid: (
        N_("Unisender refuses the API key"),
        N_(
            "Copy the key again from Unisender (Settings → API) and enter it below. It is "
            "checked with Unisender before it is stored, and a full sync starts."
        ),
    ),
    ProblemCode.unisender_key_missing: (
        N_("No Unisender API key is connected"),
        N_(
            "Enter the account's Unisender API key (Unisender → Settings → API). It is "
            "checked with Unisender before it is stored, and a full sync starts."
        ),
    ),
    ProblemCode.amocrm_blocked: (
        N_("amoCRM is blocking requests for a while"),
        N_(
            "amoCRM blocked this integration after too many requests. amosync pauses the "
            "account and resumes by itself; nothing needs doing."
        ),
    ),
    ProblemCode.amocrm_webhook_missing: (
        N_("amosync's webhook is missing in amoCRM"),
        N_(
            "Changes made in amoCRM do not reach amosync. Register the webhook again; the "
            "next reconciliation catches up on what was missed."
        ),
    ),
    ProblemCode.amocrm_webhook_disabled: (
        N_("amoCRM turned amosync's webhook off"),
        N_(
            "amoCRM disables a webhook whose deliveries keep failing. Check that amoCRM can "
            "reach this service, then register the webhook again."
        ),
    ),
    ProblemCode.unisender_hook_stopped: (
        N_("Unisender stopped sending unsubscribes"),
        N_(
            "Unisender stops a hook whose deliveries fail for a day, so unsubscribes no "
            "longer reach amoCRM. Check that Unisender can reach this service, then set the "
            "hook again."
        ),
    ),
    ProblemCode.unisender_hook_not_removed: (
        N_("The replaced Unisender key's hook is still there"),
        N_(
            "amosync could not remove its hook from the Unisender account of the key you "
            "replaced. It can no longer write to amoCRM; delete it in that account's "
            "Unisender settings, or retry the failed job below."
        ),
    ),
    ProblemCode.request_refused: (
        N_("amoCRM or Unisender refused a request"),
        N_("Fix what the message below names, then retry the sync as a new run."),
    ),
}

# The control each problem gets on the account page (see problems.html).
PROBLEM_CONTROLS = {
    ProblemCode.unisender_key_invalid: "key",
    ProblemCode.unisender_key_missing: "key",
    ProblemCode.amocrm_webhook_missing: "webhooks",
    ProblemCode.amocrm_webhook_disabled: "webhooks",
    ProblemCode.unisender_hook_stopped: "unisender_hook",
    ProblemCode.request_refused: "retry",
}


@dataclass(frozen=True)
class ProblemView:
    code: str
    title: str
    advice: str
    detail: str
    since: datetime | None
    control: str | None


def problem_views(row: AccountRow, language: Language) -> list[ProblemView]:
    """The account's problems as the page shows them, plus a failed last run (its retry
    is the remedy), in the page's language; the detail stays as the service wrote it."""
    out = []
    for problem in row.problems:
        title, advice = PROBLEMS.get(problem.code, (problem.code, ""))
        out.append(
            ProblemView(
                code=str(problem.code),
                title=language.gettext(title),
                advice=language.gettext(advice) if advice else "",
                # A derived problem's fixed English detail says no more than the advice.
                detail=""
                if problem.detail in (REAUTH_DETAIL, KEY_MISSING_DETAIL)
                else problem.detail,
                since=problem.since,
                control=PROBLEM_CONTROLS.get(problem.code),
            )
        )
    run = row.run
    # A failed run on its own; with a problem, the problem is its cause and says what to do.
    if (
        run is not None
        and run.status == RunStatus.FAILED
        and row.status == AccountStatus.ACTIVE
        and not out
    ):
        out.append(
            ProblemView(
                code="sync_failed",
                title=language.gettext("The last full sync failed"),
                advice=language.gettext(
                    "Once its cause is fixed, retry it: a new run starts from the beginning."
                ),
                detail=run.error or "",
                since=run.finished_at,
                control="retry",
            )
        )
    return out


# -- the chart of changes applied per hour (inline SVG, drawn here: no script, no CDN) -----

CHART_WIDTH = 720
CHART_HEIGHT = 220
CHART_LEFT = 64  # room for the count labels
CHART_BOTTOM = 28  # room for the hour labels
CHART_TOP = 16
CHART_RIGHT = 28  # room for the last hour's label
SERIES = ("synced", "unsynced", "deleted")


class Segment(NamedTuple):
    """One series' part of an hour's bar, in chart units."""

    series: str
    y: float
    height: float


@dataclass(frozen=True)
class Bar:
    hour: datetime
    x: float
    width: float
    synced: int
    unsynced: int
    deleted: int
    segments: tuple[Segment, ...]

    @property
    def total(self) -> int:
        return self.synced + self.unsynced + self.deleted


class Tick(NamedTuple):
    """A count on the chart's left axis, at its height."""

    y: float
    value: int


class HourLabel(NamedTuple):
    """An hour named under the chart, at its place."""

    x: float
    text: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    base: float  # the y of the zero line
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    labels: tuple[HourLabel, ...]

    @property
    def total(self) -> int:
        return sum(bar.total for bar in self.bars)

    @property
    def right(self) -> int:
        return self.width - CHART_RIGHT

    def totals(self) -> dict[str, int]:
        return {name: sum(getattr(bar, name) for bar in self.bars) for name in SERIES}


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 × 10ⁿ at or above `value`: round tick values."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if factor * step >= value:
                return factor * step
        step *= 10


def hourly_chart(rows: Sequence[Any], *, hours: int = 24, now: datetime | None = None) -> Chart:
    """Bars for the last `hours` clock hours (UTC), oldest first; `rows` carry `hour`,
    `synced`, `unsynced`, `deleted` (AppliedHour)."""
    current = (now or utcnow()).replace(minute=0, second=0, microsecond=0)
    by_hour = {row.hour: row for row in rows}
    slots = [current - timedelta(hours=hours - 1 - i) for i in range(hours)]
    peak = max([row.synced + row.unsynced + row.deleted for row in by_hour.values()] + [1])
    top = _nice_ceiling(peak)
    plot_height = CHART_HEIGHT - CHART_TOP - CHART_BOTTOM
    base = CHART_TOP + plot_height
    slot = (CHART_WIDTH - CHART_LEFT - CHART_RIGHT) / hours
    bars = []
    for index, hour in enumerate(slots):
        row = by_hour.get(hour)
        values = {name: int(getattr(row, name)) if row else 0 for name in SERIES}
        segments = []
        y = float(base)
        for name in SERIES:
            if values[name]:
                height = max(1.0, values[name] / top * plot_height)
                y -= height
                segments.append(Segment(name, round(y, 2), round(height, 2)))
        bars.append(
            Bar(
                hour=hour,
                x=round(CHART_LEFT + index * slot + slot * 0.15, 2),
                width=round(slot * 0.7, 2),
                segments=tuple(segments),
                **values,
            )
        )
    marks = sorted({0, top // 2, top}) if top > 1 else [0, top]
    ticks = tuple(Tick(y=round(base - mark / top * plot_height, 2), value=mark) for mark in marks)
    labels = tuple(
        HourLabel(x=round(CHART_LEFT + index * slot + slot / 2, 2), text=hour.strftime("%H:00"))
        for index, hour in enumerate(slots)
        if index % 6 == (hours - 1) % 6
    )
    return Chart(
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
        left=CHART_LEFT,
        base=base,
        bars=tuple(bars),
        ticks=ticks,
        labels=labels,
    )


_HOST = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def amocrm_base(base_urls: Sequence[str | None], subdomain: str | None) -> str | None:
    """Where the account's amoCRM pages are: its integration's base URL (amocrm.ru,
    amocrm.com or kommo.com), else `https://<subdomain>.amocrm.ru`; None when neither
    is a plain https host (never a link of someone else's making)."""
    for url in base_urls:
        if url:
            parsed = urlsplit(url)
            labels = (parsed.hostname or "").split(".")
            if parsed.scheme == "https" and all(_HOST.fullmatch(label) for label in labels):
                return f"https://{parsed.hostname}"
    if subdomain and _HOST.fullmatch(subdomain.lower()):
        return f"https://{subdomain.lower()}.amocrm.ru"
    return None


def contact_url(base: str | None, amocrm_id: int) -> str | None:
    """A contact's card in amoCRM (`/contacts/detail/<id>`, as amoCRM's own links are)."""
    return f"{base}/contacts/detail/{amocrm_id}" if base else None


def sent_with_address(settings: AccountSettings, language: Language) -> str:
    """What goes to Unisender beside the address and the name, in a few words."""
    sent = []
    if settings.fields.phone:
        sent.append(language.gettext("phone"))
    if settings.fields.tags:
        sent.append(language.gettext("tags"))
    if settings.fields.custom:
        n = len(settings.fields.custom)
        sent.append(
            language.ngettext("%(num)s amoCRM field", "%(num)s amoCRM fields", n) % {"num": n}
        )
    return ", ".join(sent) if sent else language.gettext("the name only")
