"""The operator dashboard (SPEC §6): server-rendered pages, a login form, and one JSON
endpoint the progress bars poll.

Every response of these routes carries the security headers (see `DashboardRoute`); pages
render their own friendly errors, the JSON endpoint the project's `{"error", "detail"}`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import structlog
from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException
from starlette.responses import Response

from amosync import __version__
from amosync.accounts import repository as accounts_repository
from amosync.accounts import service as accounts
from amosync.accounts.disconnect import disconnect
from amosync.accounts.problems import ProblemCode, problems_for
from amosync.accounts.settings import AccountSettings, account_settings
from amosync.accounts.unisender import account_lists, connect
from amosync.consent.hooks import ensure_hook
from amosync.db.models import Account, AccountStatus
from amosync.errors import AppError, BadRequest, NotFound, TransientUpstreamError, UpstreamError
from amosync.http.deps import ServicesDep, SessionDep
from amosync.http.ids import AccountIdPath, JobIdPath
from amosync.http.pagination import decode_cursor, encode_cursor
from amosync.runtime.crypto import same
from amosync.runtime.services import Services
from amosync.segments import members
from amosync.segments import service as segments
from amosync.sync import activity
from amosync.sync import service as sync
from amosync.sync.reconcile import WEBHOOK_PROBLEMS, check_webhooks
from amosync.web import i18n, repository, settings_form, views
from amosync.web.i18n import N_, Language
from amosync.web.security import (
    COOKIE,
    DashboardSession,
    add_security_headers,
    clear_session_cookie,
    end_session,
    open_session,
    session_of,
    set_session_cookie,
    verify_session_cookie,
)
from amosync.worker import queue

log = structlog.get_logger()

TEMPLATES = Path(__file__).parent / "templates"
ACCOUNTS_PER_PAGE = 50
CONTACTS_PER_PAGE = 50
MAX_TOKEN_LENGTH = 1024

# Messages a redirect may ask a page to show, by their kind (how the notice looks). Only
# these codes are accepted, so a link cannot make the dashboard display text of someone
# else's choosing.
NOTICE_TEXTS: dict[str, dict[str, str]] = {
    "ok": {
        "sync_started": N_("A full sync has been queued."),
        "job_retried": N_("The job is back in the queue."),
        "disconnected": N_(
            "The account is disconnected: webhooks unregistered, tokens and the Unisender key "
            "deleted. Its contact records are kept."
        ),
        "key_connected": N_(
            "Unisender accepted the key. It is stored, and a full sync has been queued."
        ),
        "list_changed": N_("The list is changed, and a full sync has been queued to fill it."),
        "run_retried": N_("The sync is retried as a new run."),
        "webhooks_registered": N_("amoCRM has amosync's webhook again, and it is on."),
        "unisender_hook_set": N_("Unisender's hook is active again."),
        "settings_saved": N_("The settings are saved."),
        "settings_saved_sync": N_(
            "The settings are saved, and a full sync has been queued to apply them."
        ),
    },
    "info": {
        "sync_running": N_("A full sync is already running for this account; it is shown below."),
        "job_not_failed": N_("That job is no longer failed; there was nothing to retry."),
        "logged_out": N_("You are logged out."),
    },
    "error": {
        "sync_refused": N_(
            "This account is disconnected: install the widget in amoCRM again before syncing."
        ),
        "key_refused": N_(
            "Unisender refused this key, so nothing was stored. Copy it again from "
            "Unisender → Settings → API."
        ),
        "key_empty": N_("Enter the Unisender API key first."),
        "unisender_unavailable": N_(
            "Unisender did not answer, so nothing was changed. Try again in a minute."
        ),
        "list_unknown": N_("The key does not see that list any more; pick another."),
        "webhooks_failed": N_(
            "amoCRM did not take the webhook; the problem below says why. Try again later."
        ),
        "unisender_hook_failed": N_(
            "Unisender did not take the hook; the problem below says why. Try again later."
        ),
        "account_disconnected": N_(
            "This account is disconnected: install the widget in amoCRM again first."
        ),
    },
}
NOTICES = {
    code: (kind, text) for kind, texts in NOTICE_TEXTS.items() for code, text in texts.items()
}

# Why the settings form was not saved, by the code the settings service (or the form's own
# check) gave; any other code shows the service's detail.
SETTINGS_ERRORS = {
    "unknown_list": N_(
        "One of the chosen lists is not among the lists of the account's Unisender key. "
        "Choose again."
    ),
    "unknown_field": N_("One of the chosen amoCRM fields no longer exists. Choose again."),
    "unknown_status": N_(
        "One of the chosen pipelines or deal stages no longer exists in amoCRM. Choose again."
    ),
    "invalid_field_name": N_(
        "A Unisender field name must start with a Latin letter and hold only Latin letters, "
        "digits, “_” and “-”."
    ),
    "invalid_settings": N_(
        "Some of the settings are not valid (for example, more than 40 fields): %(detail)s"
    ),
    "reserved_field_name": N_(
        "amosync fills this Unisender field itself (email, Name, phone, tags, email_list_ids). "
        "Choose another name."
    ),
    "duplicate_field_name": N_(
        "Two amoCRM fields would go to the same Unisender field. Give each its own name."
    ),
    "duplicate_list": N_(
        "Two segment rules use the same Unisender list. Put their tags and stages in one "
        "rule, or choose another list."
    ),
    "main_list_rule": N_(
        "The main list already holds every contact with an address, so it cannot be a "
        "segment list. Choose another list."
    ),
    "rule_needs_list": N_("Choose the Unisender list of each segment rule, or remove the rule."),
    "rule_needs_condition": N_(
        "Choose at least one tag or one deal stage for each segment list, or remove it."
    ),
    "pair_incomplete": N_(
        "Choose the amoCRM field and type the Unisender field name of each pair, or remove it."
    ),
    "consent_tag_missing": N_("Type the tag to put on contacts that unsubscribe."),
    "upstream_unavailable": N_(
        "amoCRM or Unisender did not answer, so nothing was saved. Try again in a minute."
    ),
    "upstream_error": N_(
        "amoCRM or Unisender refused the check, so nothing was saved (%(detail)s). "
        "If it repeats, look at the account's problems."
    ),
}

ERROR_TITLES = {
    401: N_("Log in again"),
    403: N_("Not allowed"),
    404: N_("Not found"),
    500: N_("Something went wrong"),
}

# Strings the dashboard script writes into the page itself.
SCRIPT_MESSAGES = {
    "queued": N_("queued"),
    "running": N_("running"),
    "done": N_("done"),
    "failed": N_("failed"),
    "run": N_("run #%(id)s"),
    "per_second": N_("%(rate)s/s"),
    "new_synced": N_("%(n)s synced contacts since this page loaded; reload to see them."),
    "new_unsynced": N_("%(n)s unsynced contacts since this page loaded; reload to see them."),
}

templates = Jinja2Templates(directory=str(TEMPLATES))
templates.env.add_extension("jinja2.ext.i18n")


@pass_context
def _gettext(context: Context, message: str) -> str:
    language: Language = context["i18n"]
    return language.gettext(message)


@pass_context
def _ngettext(context: Context, singular: str, plural: str, n: int) -> str:
    language: Language = context["i18n"]
    return language.ngettext(singular, plural, n)


@pass_context
def _pgettext(context: Context, where: str, message: str) -> str:
    language: Language = context["i18n"]
    return language.catalog.pgettext(where, message)


@pass_context
def _number(context: Context, value: int | float | None) -> str:
    language: Language = context["i18n"]
    return language.number(value)


@pass_context
def _reason(context: Context, value: str | None) -> str:
    return views.reason_text(value, context["i18n"])


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _minute(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "—"


# The page's language comes with each render (context["i18n"]): one environment serves all.
templates.env.install_gettext_callables(  # type: ignore[attr-defined]
    gettext=_gettext, ngettext=_ngettext, pgettext=_pgettext, newstyle=True
)
templates.env.filters["when"] = _when
templates.env.filters["minute"] = _minute
templates.env.filters["number"] = _number
templates.env.filters["reason"] = _reason
templates.env.globals["version"] = __version__
templates.env.globals["language_names"] = i18n.NAMES


class LoginRequired(Exception):
    """No valid session cookie."""


class CsrfRejected(Exception):
    """A form came without the CSRF token of the session."""


class Refused(Exception):
    """A form that cannot apply: back to `path`, whose page shows the notice `notice`."""

    def __init__(self, path: str, notice: str) -> None:
        super().__init__(notice)
        self.path = path
        self.notice = notice


class DashboardRoute(APIRoute):
    """Adds the security headers to every answer and turns failures into friendly pages
    (or into `{"error", "detail"}` for the JSON endpoint), so nothing falls through to the
    API's JSON error handlers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        wants_json = self.path.endswith("/progress")

        async def guarded(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginRequired:
                response = _login_required(request, wants_json)
            except Refused as exc:
                response = _back(exc.path, exc.notice)
            except CsrfRejected:
                response = _failure(
                    request,
                    wants_json,
                    403,
                    "csrf_rejected",
                    "This form has expired or did not come from the dashboard. "
                    "Go back, reload the page and try again.",
                )
            except AppError as exc:
                response = _failure(request, wants_json, exc.status, exc.code, exc.detail)
            except RequestValidationError as exc:
                response = _invalid(request, wants_json, exc)
            except HTTPException as exc:
                detail = exc.detail if isinstance(exc.detail, str) else "request refused"
                response = _failure(request, wants_json, exc.status_code, "http_error", detail)
            except Exception as exc:
                log.exception(
                    "dashboard.request.failed",
                    path=request.url.path,
                    error_type=type(exc).__name__,
                )
                response = _failure(
                    request,
                    wants_json,
                    500,
                    "internal_error",
                    "Something went wrong on our side; it has been logged.",
                )
            return add_security_headers(response)

        return guarded


router = APIRouter(route_class=DashboardRoute, include_in_schema=False)


# -- sessions ---------------------------------------------------------------------------


async def current_session(
    request: Request, services: ServicesDep, session: SessionDep
) -> DashboardSession | None:
    return await session_of(session, services.admin_token, request.cookies.get(COOKIE))


def require_login(
    session: Annotated[DashboardSession | None, Depends(current_session)],
) -> DashboardSession:
    if session is None:
        raise LoginRequired
    return session


async def require_form(
    request: Request,
    services: ServicesDep,
    session: Annotated[DashboardSession, Depends(require_login)],
) -> DashboardSession:
    """A logged-in POST carrying the session's CSRF token (checked in constant time)."""
    token = (await request.form()).get("csrf")
    if not isinstance(token, str) or not session.check_csrf(services.admin_token, token):
        log.warning("dashboard.csrf.rejected", path=request.url.path)
        raise CsrfRejected
    return session


Viewer = Annotated[DashboardSession, Depends(require_login)]
FormPost = Annotated[DashboardSession, Depends(require_form)]


async def account_to_change(_: FormPost, account_id: AccountIdPath, session: SessionDep) -> Account:
    """The account a form of its page changes, once the form's CSRF token is checked:
    locked for the change; a disconnected one is refused (back to its page, which says
    why)."""
    account = await accounts.require(session, account_id, for_update=True)
    if account.status == AccountStatus.DISCONNECTED:
        raise Refused(_account_url(account_id), "account_disconnected")
    return account


AccountToChange = Annotated[Account, Depends(account_to_change)]


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _safe_next(value: object, *, keep_query: bool = False) -> str:
    """Where to go after login: only a dashboard path of this site (no open redirect)."""
    if not isinstance(value, str):
        return "/"
    path, mark, query = value.partition("?")
    if not re.fullmatch(r"/(ui/[A-Za-z0-9_/.-]*)?", path) or ".." in path:
        return "/"
    # The query only ever follows a path of ours, so it cannot lead to another site.
    if keep_query and mark and len(query) <= 500 and "#" not in query:
        return f"{path}?{query}"
    return path


# -- rendering --------------------------------------------------------------------------


def language_of(request: Request) -> Language:
    return i18n.choose(request.cookies.get(i18n.COOKIE), request.headers.get("accept-language"))


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    session: DashboardSession | None = None,
    status: int = 200,
) -> HTMLResponse:
    services = request.app.state.services
    language = language_of(request)
    notice = NOTICES.get(request.query_params.get("notice", ""))
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    full = {
        "csrf": session.csrf_token(services.admin_token) if session else None,
        "notice": {"kind": notice[0], "text": language.gettext(notice[1])} if notice else None,
        "i18n": language,
        "lang": language.code,
        "switch_url": "/ui/language?"
        + urlencode({"to": language.other(), "next": _safe_next(here, keep_query=True)}),
        "script_messages": i18n.messages_for_script(language, SCRIPT_MESSAGES),
        **context,
    }
    response = templates.TemplateResponse(request, name, full, status_code=status)
    response.headers["Content-Language"] = language.code
    response.headers["Vary"] = "Accept-Language, Cookie"
    return response


# Error codes whose page text is ours to translate; in English, and for any other code, the
# page shows the detail its raiser wrote (which may name the id).
ERROR_TEXTS = {
    "csrf_rejected": N_(
        "This form has expired or did not come from the dashboard. "
        "Go back, reload the page and try again."
    ),
    "not_found": N_("There is no such page."),
    "account_not_found": N_("There is no such account. It may have been deleted."),
    "job_not_found": N_("There is no such job. It may have been removed."),
    "run_not_found": N_("There is no such sync run."),
    "unauthorized": N_("Your session has ended. Log in again to continue."),
    "internal_error": N_("Something went wrong on our side; it has been logged."),
}


def _failure(request: Request, wants_json: bool, status: int, code: str, detail: str) -> Response:
    if wants_json:
        return JSONResponse({"error": code, "detail": detail}, status_code=status)
    language = language_of(request)
    session = verify_session_cookie(
        request.app.state.services.admin_token, request.cookies.get(COOKIE)
    )
    title = language.gettext(ERROR_TITLES.get(status, N_("That did not work")))
    translated = code in ERROR_TEXTS and language.code != i18n.DEFAULT
    text = language.gettext(ERROR_TEXTS[code]) if translated else detail
    context = {"title": title, "detail": text, "status": status, "code": code}
    return render(request, "error.html", context, session=session, status=status)


def _invalid(request: Request, wants_json: bool, exc: RequestValidationError) -> Response:
    errors = exc.errors()
    if errors and errors[0].get("loc", ("",))[0] == "path":
        return _failure(request, wants_json, 404, "not_found", "There is no such page.")
    fields = ", ".join(str(e.get("loc", ("", "?"))[-1]) for e in errors[:5])
    if wants_json:
        return _failure(
            request, True, 400, "invalid_request", f"These values are not valid: {fields}."
        )
    text = language_of(request).gettext("These values are not valid: %(fields)s.")
    return _failure(request, False, 400, "invalid_request", text % {"fields": fields})


def _login_required(request: Request, wants_json: bool) -> Response:
    if wants_json:
        return JSONResponse(
            {"error": "unauthorized", "detail": "the dashboard session has ended; log in again"},
            status_code=401,
        )
    if request.method == "GET":
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        target = _safe_next(here, keep_query=True)
        location = "/" if target == "/" else "/?" + urlencode({"next": target})
        return RedirectResponse(location, status_code=303)
    return _failure(
        request, False, 401, "unauthorized", "Your session has ended. Log in again to continue."
    )


@router.get("/ui/language")
async def switch_language(
    request: Request,
    to: Annotated[str, Query(max_length=8)] = i18n.DEFAULT,
    next_path: Annotated[str | None, Query(alias="next", max_length=600)] = None,
) -> Response:
    """The language switch: remembered in a cookie (a preference, not a credential)."""
    response = RedirectResponse(_safe_next(next_path, keep_query=True), status_code=303)
    if to in i18n.LOCALES:
        response.set_cookie(
            i18n.COOKIE,
            to,
            max_age=365 * 24 * 3600,
            httponly=True,
            samesite="lax",
            secure=_secure(request),
            path="/",
        )
    return response


def _back(path: str, notice: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?notice={notice}", status_code=303)


# -- login ------------------------------------------------------------------------------


@router.get("/")
async def overview(
    request: Request,
    session: SessionDep,
    viewer: Annotated[DashboardSession | None, Depends(current_session)],
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    next_path: Annotated[str | None, Query(alias="next", max_length=300)] = None,
) -> Response:
    """The dashboard: the login form, or every account with its sync state."""
    if viewer is None:
        login_context = {"next": _safe_next(next_path, keep_query=True), "error": None}
        return render(request, "login.html", login_context)
    found = await accounts_repository.page(
        session, after=decode_cursor(cursor), limit=ACCOUNTS_PER_PAGE + 1
    )
    more = len(found) > ACCOUNTS_PER_PAGE
    found = found[:ACCOUNTS_PER_PAGE]
    context = {
        "accounts": await views.account_rows(session, found),
        "jobs": await queue.counts(session),
        "failed_jobs": await repository.failed_jobs(session, limit=10),
        "next_url": "/?" + urlencode({"cursor": encode_cursor(found[-1].id)}) if more else None,
        "first_url": "/" if cursor else None,
    }
    return render(request, "overview.html", context, session=viewer)


@router.post("/login")
async def login(request: Request, services: ServicesDep, session: SessionDep) -> Response:
    """Exchange the admin token for a browser-session cookie."""
    form = await request.form()
    token = form.get("token")
    target = _safe_next(form.get("next"), keep_query=True)
    valid = (
        isinstance(token, str)
        and 0 < len(token) <= MAX_TOKEN_LENGTH
        and same(token.strip(), services.admin_token)
    )
    if not valid:
        log.warning(
            "dashboard.login.failed", client=request.client.host if request.client else None
        )
        error = language_of(request).gettext("That is not the admin token. Check it and try again.")
        context = {"next": target, "error": error}
        return render(request, "login.html", context, status=401)
    response = RedirectResponse(target, status_code=303)
    cookie = await open_session(session, services.admin_token)
    set_session_cookie(response, cookie, secure=_secure(request))
    log.info("dashboard.login.succeeded")
    return response


@router.post("/logout")
async def logout(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    viewer: Annotated[DashboardSession | None, Depends(current_session)],
) -> Response:
    """End the browser session, on the server too."""
    if viewer is not None:
        token = (await request.form()).get("csrf")
        if not isinstance(token, str) or not viewer.check_csrf(services.admin_token, token):
            raise CsrfRejected
        await end_session(session, viewer)
    response = _back("/", "logged_out")
    clear_session_cookie(response, secure=_secure(request))
    return response


# -- accounts ---------------------------------------------------------------------------


def _account_url(account_id: int, **query: str | None) -> str:
    params = {key: value for key, value in query.items() if value}
    suffix = "?" + urlencode(params) if params else ""
    return f"/ui/accounts/{account_id}{suffix}"


Reason = Annotated[str | None, Query(max_length=80)]


@router.get("/ui/accounts/{account_id}")
async def account_page(
    request: Request,
    account_id: AccountIdPath,
    viewer: Viewer,
    session: SessionDep,
    contacts: Literal["synced", "unsynced"] = "synced",
    q: Annotated[str | None, Query(max_length=200)] = None,
    reason: Reason = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """One account: its problems, live sync progress, run history and hourly chart,
    contacts, webhook events and failures."""
    account = await accounts.require(session, account_id)
    [row] = await views.account_rows(session, [account])
    search = (q or "").strip() or None
    reasons = await repository.unsynced_reasons(session, account_id)
    # A reason filter only narrows unsynced contacts, and only to a reason that exists.
    wanted = "" if reason == "-" else reason
    chosen = wanted if contacts == "unsynced" and wanted in {r for r, _ in reasons} else None
    rows, next_cursor = await sync.contacts_page(
        session,
        account_id,
        state=contacts,
        cursor=cursor,
        limit=CONTACTS_PER_PAGE,
        search=search,
        reason=chosen,
    )
    integrations = await accounts_repository.integrations(session, account_id)
    amocrm = views.amocrm_base([item.base_url for item in integrations], account.subdomain)
    history = [views.progress(run) for run in await repository.runs(session, account_id, limit=10)]
    chart = views.hourly_chart(await activity.recent_hours(session, account_id))
    filters = {"contacts": contacts, "q": search, "reason": _reason_param(chosen)}
    stored = account_settings(account.settings)
    context = {
        "account": row,
        "problems": views.problem_views(row, language_of(request)),
        "integrations": [accounts.integration_view(item) for item in integrations],
        # AMOSYNC_AMOCRM_BASE_URL sends every account's calls elsewhere (a sandbox, a proxy).
        "amocrm_override": request.app.state.services.settings.amocrm_base_url,
        "amocrm_base": amocrm,
        "contact_url": lambda amocrm_id: views.contact_url(amocrm, amocrm_id),
        "tab": contacts,
        "q": search or "",
        "reason": chosen,
        "reasons": reasons,
        "contacts": rows,
        "tab_urls": {
            state: _account_url(account_id, contacts=state, q=search)
            for state in ("synced", "unsynced")
        },
        "reason_urls": {
            code: _account_url(account_id, contacts="unsynced", q=search, reason=code or "-")
            for code, _ in reasons
        },
        "all_reasons_url": _account_url(account_id, contacts="unsynced", q=search),
        "csv_url": f"/ui/accounts/{account_id}/unsynced.csv?"
        + urlencode({k: v for k, v in {"q": search, "reason": _reason_param(chosen)}.items() if v}),
        "next_url": (
            _account_url(account_id, **filters, cursor=next_cursor) if next_cursor else None
        ),
        "first_url": _account_url(account_id, **filters) if cursor else None,
        "runs": history,
        "chart": chart,
        "events": await repository.recent_webhook_events(session, account_id),
        "consent_events": await repository.recent_consent_events(session, account_id),
        "settings": stored,
        "sent_with_address": views.sent_with_address(stored, language_of(request)),
        "rule_counts": await members.rule_counts(session, account_id),
        "failed_jobs": await repository.failed_jobs(session, account_id=account_id),
    }
    return render(request, "account.html", context, session=viewer)


def _reason_param(reason: str | None) -> str | None:
    # "" (no reason recorded) travels as "-" so that it survives a URL.
    return None if reason is None else (reason or "-")


CSV_COLUMNS = ("amocrm_id", "name", "emails", "reason", "reason_text", "detail", "amocrm_url")
CSV_PAGE = 1000


def _cell(value: object) -> str:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula (a contact's
    name is whatever someone typed into amoCRM)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@router.get("/ui/accounts/{account_id}/unsynced.csv")
async def unsynced_csv(
    request: Request,
    account_id: AccountIdPath,
    _: Viewer,
    services: ServicesDep,
    q: Annotated[str | None, Query(max_length=200)] = None,
    reason: Reason = None,
) -> Response:
    """Every unsynced contact of the account that matches the filters, as CSV (all pages:
    read in keyset pages of 1,000 while the answer streams)."""
    language = language_of(request)
    async with services.sessions() as session:
        account = await accounts.require(session, account_id)
        integrations = await accounts_repository.integrations(session, account_id)
    amocrm = views.amocrm_base([item.base_url for item in integrations], account.subdomain)
    search = (q or "").strip() or None
    chosen = "" if reason == "-" else reason

    async def lines() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        # A byte-order mark, so that Excel reads the names as UTF-8.
        yield "\ufeff"
        writer.writerow(CSV_COLUMNS)
        cursor: str | None = None
        while True:
            async with services.sessions() as session:
                rows, cursor = await sync.contacts_page(
                    session,
                    account_id,
                    state="unsynced",
                    cursor=cursor,
                    limit=CSV_PAGE,
                    search=search,
                    reason=chosen,
                )
            for contact in rows:
                writer.writerow(
                    [
                        contact.amocrm_id,
                        _cell(contact.name),
                        _cell(" ".join(contact.emails or [])),
                        _cell(contact.reason),
                        views.reason_text(contact.reason, language),
                        _cell(contact.detail),
                        views.contact_url(amocrm, contact.amocrm_id) or "",
                    ]
                )
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if cursor is None:
                return

    name = f"amosync-{account_id}-unsynced" + (f"-{_slug(chosen)}" if chosen else "") + ".csv"
    log.info("dashboard.unsynced.exported", account_id=account_id, reason=chosen)
    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _slug(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", value)[:60]


@router.get("/ui/accounts/{account_id}/progress")
async def account_progress(
    account_id: AccountIdPath, _: Viewer, session: SessionDep
) -> JSONResponse:
    """The account's latest full sync and contact counts, for the live progress bar."""
    account = await accounts.require(session, account_id)
    [row] = await views.account_rows(session, [account])
    return JSONResponse(
        {
            "account_id": row.id,
            "status": row.status,
            "unisender_connected": row.unisender_connected,
            "contacts": row.contacts.model_dump(exclude={"total"}),
            "run": row.run.as_json() if row.run else None,
        }
    )


@router.post("/ui/accounts/{account_id}/sync")
async def sync_now(
    account_id: AccountIdPath, _: FormPost, services: ServicesDep, session: SessionDep
) -> Response:
    """Start a full sync (or show the one already running)."""
    account = await accounts.require(session, account_id)
    if account.status == AccountStatus.DISCONNECTED:
        return _back(_account_url(account_id), "sync_refused")
    return await _start_sync(
        services, session, account_id, "sync_started", "dashboard.sync.started"
    )


async def _start_sync(
    services: Services, session: AsyncSession, account_id: int, notice: str, event: str
) -> Response:
    """Back to the account page with `notice` when a new run starts, or with the run
    already active (which the page shows) when one is."""
    run, created = await sync.start_full_sync(session, account_id)
    if created:
        services.notify_work()
        log.info(event, account_id=account_id, run_id=run.id)
    return _back(_account_url(account_id), notice if created else "sync_running")


@router.get("/ui/accounts/{account_id}/disconnect")
async def confirm_disconnect(
    request: Request, account_id: AccountIdPath, viewer: Viewer, session: SessionDep
) -> Response:
    """Ask before disconnecting."""
    account = await accounts.require(session, account_id)
    [row] = await views.account_rows(session, [account])
    return render(request, "disconnect.html", {"account": row}, session=viewer)


@router.post("/ui/accounts/{account_id}/disconnect")
async def disconnect_account(
    account_id: AccountIdPath, _: FormPost, services: ServicesDep
) -> Response:
    """Disconnect the account (its own transactions: amoCRM is called in between)."""
    await disconnect(services, account_id)
    log.info("dashboard.account.disconnected", account_id=account_id)
    return _back(_account_url(account_id), "disconnected")


# -- jobs -------------------------------------------------------------------------------


@router.post("/ui/jobs/{job_id}/retry")
async def retry_job(
    request: Request, job_id: JobIdPath, _: FormPost, services: ServicesDep, session: SessionDep
) -> Response:
    """Put a failed job back in the queue."""
    job = await repository.job(session, job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist", code="job_not_found")
    retried = await queue.retry(session, job_id)
    if retried:
        services.notify_work()
        log.info("dashboard.job.retried", job_id=job_id, account_id=job.account_id, kind=job.kind)
    back = (await request.form()).get("back")
    path = _account_url(job.account_id) if back == "account" and job.account_id else "/"
    return _back(path, "job_retried" if retried else "job_not_failed")


# -- fixing problems --------------------------------------------------------------------


async def _form_field(request: Request, name: str) -> str:
    value = (await request.form()).get(name)
    return value.strip() if isinstance(value, str) else ""


async def _store_key(services: Services, session: AsyncSession, account: Account, key: str) -> None:
    """Check the key with Unisender and store it: the list the account has when the key
    sees it, else the one titled AMOSYNC_UNISENDER_LIST_TITLE (found or created)."""
    if account.list_id is not None:
        try:
            await connect(services, session, account, key, account.list_id)
            return
        except BadRequest as exc:
            if exc.code != "unknown_list":  # a key of another Unisender account
                raise
    await connect(services, session, account, key, None)


@router.post("/ui/accounts/{account_id}/unisender-key")
async def connect_unisender_key(
    request: Request,
    account: AccountToChange,
    services: ServicesDep,
    session: SessionDep,
) -> Response:
    """Enter or replace the Unisender key: checked with Unisender before it is stored,
    then a full sync starts."""
    account_id = account.id
    back = _account_url(account_id)
    key = await _form_field(request, "unisender_key")
    if not key or len(key) > 255:
        return _back(back, "key_empty")
    try:
        await _store_key(services, session, account, key)
    except BadRequest as exc:
        if exc.code == "invalid_unisender_key":
            log.info("dashboard.unisender_key.refused", account_id=account_id)
            return _back(back, "key_refused")
        raise
    except UpstreamError as exc:
        log.warning("dashboard.unisender_key.unchecked", account_id=account_id, error=str(exc))
        return _back(back, "unisender_unavailable")
    await sync.start_full_sync(session, account_id)
    services.notify_work()
    log.info("dashboard.unisender_key.connected", account_id=account_id)
    return _back(back, "key_connected")


@router.get("/ui/accounts/{account_id}/list")
async def choose_list(
    request: Request, account_id: AccountIdPath, viewer: Viewer, services: ServicesDep
) -> Response:
    """The account's Unisender lists by title, to pick the one contacts go to."""
    async with services.sessions() as session:
        account = await accounts.require(session, account_id)
        [row] = await views.account_rows(session, [account])
    if account.unisender_key_enc is None:
        return _back(_account_url(account_id), "key_empty")
    try:
        lists = await account_lists(services, account)
    except BadRequest as exc:
        if exc.code == "invalid_unisender_key":
            return _back(_account_url(account_id), "key_refused")
        raise
    except UpstreamError:
        return _back(_account_url(account_id), "unisender_unavailable")
    context = {"account": row, "lists": lists, "current": account.list_id}
    return render(request, "list.html", context, session=viewer)


@router.post("/ui/accounts/{account_id}/list")
async def change_list(
    request: Request,
    account: AccountToChange,
    services: ServicesDep,
    session: SessionDep,
) -> Response:
    """Send the account's contacts to another of its lists (a full sync fills it)."""
    account_id = account.id
    back = _account_url(account_id)
    chosen = await _form_field(request, "list_id")
    try:
        lists = await account_lists(services, account)
    except BadRequest as exc:
        if exc.code == "invalid_unisender_key":
            return _back(back, "key_refused")
        raise
    except UpstreamError:
        return _back(back, "unisender_unavailable")
    known = {str(item.id): item.id for item in lists}
    if chosen not in known:
        return _back(f"{back}/list", "list_unknown")
    if account.list_id != known[chosen]:
        account.list_id = known[chosen]
        await session.flush()
        await sync.start_full_sync(session, account_id)
        services.notify_work()
        log.info("dashboard.list.changed", account_id=account_id, list_id=account.list_id)
    return _back(back, "list_changed")


@router.post("/ui/accounts/{account_id}/retry")
async def retry_sync(
    account_id: AccountIdPath, _: FormPost, services: ServicesDep, session: SessionDep
) -> Response:
    """Retry a failed full sync: a new run, from the beginning (or the one already
    active)."""
    account = await accounts.require(session, account_id)
    if account.status != AccountStatus.ACTIVE:
        return _back(_account_url(account_id), "sync_refused")
    return await _start_sync(services, session, account_id, "run_retried", "dashboard.sync.retried")


async def _check_again(
    services: Services,
    account_id: int,
    check: Callable[[Services, int], Coroutine[Any, Any, ProblemCode | None]],
    codes: tuple[ProblemCode, ...],
    outcome: str,
) -> Response | None:
    """Run a check that registers something again when it is missing, look once more (the
    second look clears the problem once the other side lists it working), and go back to
    the account with `<outcome>_failed` while one of `codes` is still shown."""
    back = _account_url(account_id)
    async with services.sessions() as session:
        account = await accounts.require(session, account_id)
    if account.status != AccountStatus.ACTIVE:
        return _back(back, "account_disconnected")
    try:
        if await check(services, account_id) is not None:
            await check(services, account_id)
    except (UpstreamError, AppError) as exc:
        log.warning(f"dashboard.{outcome}.failed", account_id=account_id, error=str(exc))
        return _back(back, f"{outcome}_failed")
    async with services.sessions() as session:
        left = (await problems_for(session, [account_id])).get(account_id, [])
    if any(problem.code in codes for problem in left):
        return _back(back, f"{outcome}_failed")
    return None


@router.post("/ui/accounts/{account_id}/webhooks")
async def register_webhook_again(
    account_id: AccountIdPath, _: FormPost, services: ServicesDep
) -> Response:
    """Register amosync's webhook at amoCRM again and check that amoCRM lists it, on."""
    failed = await _check_again(services, account_id, check_webhooks, WEBHOOK_PROBLEMS, "webhooks")
    if failed is not None:
        return failed
    log.info("dashboard.webhooks.registered", account_id=account_id)
    return _back(_account_url(account_id), "webhooks_registered")


@router.post("/ui/accounts/{account_id}/unisender-hook")
async def set_unisender_hook_again(
    account_id: AccountIdPath, _: FormPost, services: ServicesDep
) -> Response:
    """Set amosync's Unisender hook (unsubscribes, SPEC §9) active again and check it."""
    stopped = (ProblemCode.unisender_hook_stopped,)
    failed = await _check_again(services, account_id, ensure_hook, stopped, "unisender_hook")
    if failed is not None:
        return failed
    log.info("dashboard.unisender_hook.set", account_id=account_id)
    return _back(_account_url(account_id), "unisender_hook_set")


# -- settings (SPEC §8, §9) ---------------------------------------------------------------


async def _settings_page(
    request: Request,
    services: Services,
    account_id: int,
    viewer: DashboardSession,
    settings: AccountSettings | None = None,
    error: dict[str, str] | None = None,
) -> Response:
    """The settings form: `settings` as given (what was just posted) or as stored."""
    async with services.sessions() as session:
        account = await accounts.require(session, account_id)
        [row] = await views.account_rows(session, [account])
        counts = await members.rule_counts(session, account_id)
    # Both vendors are asked outside the session: a slow vendor holds no connection.
    choices = (await segments.choices(services, account)).model_dump(mode="json")
    shown = settings if settings is not None else account_settings(account.settings)
    context = {
        "account": row,
        "form": settings_form.form_view(
            shown, choices, counts, main_list=account.list_id, language=language_of(request).code
        ),
        "error": error,
    }
    return render(request, "settings.html", context, session=viewer, status=400 if error else 200)


@router.get("/ui/accounts/{account_id}/settings")
async def settings_page(
    request: Request, account_id: AccountIdPath, viewer: Viewer, services: ServicesDep
) -> Response:
    """The account's settings: segment lists, fields sent with the address, consent."""
    return await _settings_page(request, services, account_id, viewer)


def _settings_error(language: Language, code: str, detail: str) -> dict[str, str]:
    text = SETTINGS_ERRORS.get(code)
    if text is None:
        return {"code": code, "text": detail}
    return {"code": code, "text": language.gettext(text) % {"detail": detail}}


@router.post("/ui/accounts/{account_id}/settings")
async def save_settings(
    request: Request,
    account_id: AccountIdPath,
    viewer: FormPost,
    services: ServicesDep,
) -> Response:
    """Check the posted settings with both vendors and store them, as
    `PUT /accounts/{id}/settings` does; a change of lists or fields starts a full sync."""
    language = language_of(request)
    back = _account_url(account_id)
    try:
        body = settings_form.parse(await request.form())
    except settings_form.Incomplete as exc:
        error = _settings_error(language, exc.problem, "")
        return await _settings_page(request, services, account_id, viewer, error=error)
    try:
        settings = segments.parse(body)
    except AppError as exc:
        error = _settings_error(language, exc.code, exc.detail)
        return await _settings_page(request, services, account_id, viewer, error=error)
    try:
        async with services.sessions() as session, session.begin():
            # Not locked here: `save` locks the row once the vendors have answered.
            account = await accounts.require(session, account_id)
            if account.status == AccountStatus.DISCONNECTED:
                return _back(back, "account_disconnected")
            saved = await segments.save(services, session, account, settings, set(body))
    except AppError as exc:
        log.info("dashboard.settings.refused", account_id=account_id, code=exc.code)
        error = _settings_error(language, exc.code, exc.detail)
        return await _settings_page(request, services, account_id, viewer, settings, error)
    except UpstreamError as exc:
        # As the API answers it (503 upstream_unavailable / 502 upstream_error); the page
        # keeps what was chosen, to save again.
        transient = isinstance(exc, TransientUpstreamError)
        code = "upstream_unavailable" if transient else "upstream_error"
        log.warning("dashboard.settings.unchecked", account_id=account_id, error=str(exc))
        error = _settings_error(language, code, str(exc))
        return await _settings_page(request, services, account_id, viewer, settings, error)
    log.info("dashboard.settings.saved", account_id=account_id, sync=saved.sync is not None)
    return _back(back, "settings_saved_sync" if saved.sync else "settings_saved")
