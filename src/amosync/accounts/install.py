"""The widget install flow: amoCRM's call to /vidget, the code exchange job, webhooks.

amoCRM waits at most 3 s for /vidget and never resends it, so the endpoint only checks the
call (referer allow-list, our client_id — before anything goes out, so the client secret can
never be sent to a host we don't trust) and queues an `install` job. The job exchanges the
single-use code once and keeps the resulting tokens in its own payload (encrypted) before
anything else, so a retry after a later failure never tries to spend the code again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from amosync.accounts import repository
from amosync.accounts.problems import CLEARED_BY_INSTALL, clear_problem
from amosync.accounts.settings import AccountSettings, account_settings
from amosync.accounts.tasks import INSTALL, WEBHOOKS, InstallJob
from amosync.accounts.tokens import amocrm_client
from amosync.amocrm.client import AmoCRMClient, account_base_url, exchange_code
from amosync.config import Settings
from amosync.db.engine import transaction
from amosync.db.models import Account, AccountStatus, Integration
from amosync.errors import AppError, BadRequest, PermanentUpstreamError, TransientUpstreamError
from amosync.http.hosts import InvalidHost, account_host
from amosync.runtime.crypto import new_token, same, token_hash
from amosync.runtime.services import Services
from amosync.upstream.ratelimit import amocrm_key
from amosync.worker.context import JobContext
from amosync.worker.tasks import AccountJob

log = structlog.get_logger()

WEBHOOK_EVENTS = ["add_contact", "update_contact", "delete_contact", "restore_contact"]
# Only while a segment rule reads leads (SPEC §8): otherwise amoCRM would post every deal
# change of the account to us for nothing.
LEAD_EVENTS = ["add_lead", "update_lead", "status_lead", "delete_lead", "restore_lead"]


def webhook_events(settings: AccountSettings) -> list[str]:
    """The events the account's amoCRM webhook covers: contacts always, leads while a
    rule needs them. Install, reconciliation and the dashboard all register these."""
    return WEBHOOK_EVENTS + LEAD_EVENTS if settings.wants_leads else list(WEBHOOK_EVENTS)


def check_referer(settings: Settings, referer: str | None) -> str:
    """The account's host name (`acme.amocrm.ru`) the referer names, or 400.

    The same check (`hosts.account_host`) decides the base URL of the exchange, so a
    referer accepted here can always be called, and one that could not is refused here.
    """
    try:
        return account_host(referer or "", settings.allowed_domains)
    except InvalidHost as exc:
        raise BadRequest(
            "the referer is not the host name of an amoCRM or Kommo account, such as "
            f"acme.amocrm.ru (allowed: subdomains of {', '.join(settings.allowed_domains)})",
            code="invalid_referer",
        ) from exc


def check_client_id(settings: Settings, client_id: str | None) -> str:
    """Our client_id, or 400. A call without one is for us: amoCRM's documentation of the
    widget install lists only `code`, `referer` and `from_widget`."""
    if not settings.amocrm_client_id or not settings.amocrm_client_secret:
        raise BadRequest(
            "installs are not configured: set AMOSYNC_AMOCRM_CLIENT_ID, "
            "AMOSYNC_AMOCRM_CLIENT_SECRET and AMOSYNC_AMOCRM_REDIRECT_URI",
            code="install_not_configured",
        )
    if client_id and not same(client_id, settings.amocrm_client_id):
        raise BadRequest("client_id is not this service's integration", code="invalid_client_id")
    return settings.amocrm_client_id


async def accept_install(
    services: Services, session: AsyncSession, *, code: str, referer: str, client_id: str | None
) -> None:
    """Validate amoCRM's install call and queue the exchange."""
    host = check_referer(services.settings, referer)
    client_id = check_client_id(services.settings, client_id)
    await INSTALL.enqueue(
        session, InstallJob(code=services.cipher.encrypt(code), host=host, client_id=client_id)
    )


class _StaticTokens:
    """Tokens straight from the exchange, before the account exists in our database."""

    def __init__(self, access_token: str) -> None:
        self._token = access_token

    async def access_token(self) -> str:
        return self._token

    async def refresh(self, stale: str) -> str:  # noqa: ARG002 - protocol signature
        return self._token


@INSTALL.runs
async def run_install(ctx: JobContext) -> None:
    services, settings, cipher = ctx.services, ctx.services.settings, ctx.services.cipher
    payload = dict(ctx.payload)
    try:
        # Checked again: a job queued by an older version may hold a host it let through.
        host = account_host(payload["host"], settings.allowed_domains)
    except InvalidHost as exc:
        raise PermanentUpstreamError(
            f"the install's referer is not an account host name: {exc}", api="amocrm"
        ) from exc
    base_url = account_base_url(settings.amocrm_base_url, host)
    assert settings.amocrm_client_secret
    assert settings.amocrm_redirect_uri
    # The account's rate limit, by its host: the account's clients and refreshes share it.
    limiter = services.limits.window(amocrm_key(host), settings.amocrm_rps)
    if "tokens" not in payload:
        pair = await exchange_code(
            services.http,
            base_url,
            client_id=payload["client_id"],
            client_secret=settings.amocrm_client_secret,
            redirect_uri=settings.amocrm_redirect_uri,
            code=cipher.decrypt(payload["code"]),
            limiter=limiter,
        )
        payload.pop("code")
        payload["tokens"] = {
            "access": cipher.encrypt(pair.access_token),
            "refresh": cipher.encrypt(pair.refresh_token),
            "expires_at": pair.expires_at.isoformat(),
        }
        await ctx.save_payload(payload)
    tokens = payload["tokens"]
    if "account_id" not in payload:
        client = AmoCRMClient(
            base_url, _StaticTokens(cipher.decrypt(tokens["access"])), limiter, http=services.http
        )
        info = await client.get_account()
        account_id = await _store_account(services, info, host, payload)
        payload["account_id"] = account_id
        await ctx.save_payload(payload)
    await register_webhooks(services, int(payload["account_id"]))
    log.info("install.done", account_id=payload["account_id"])


async def _store_account(services: Services, info: Any, host: str, payload: dict[str, Any]) -> int:
    settings, cipher = services.settings, services.cipher
    tokens = payload["tokens"]
    subdomain = getattr(info, "subdomain", None) or host.split(".")[0]
    async with transaction(services.sessions) as session:
        account = await session.get(Account, info.id, with_for_update=True)
        if account is None:
            account = Account(id=info.id, settings={})
            session.add(account)
        account.subdomain = subdomain
        account.name = info.name
        account.status = AccountStatus.ACTIVE
        if account.webhook_token_hash is None:
            token = new_token()
            account.webhook_token_hash = token_hash(token)
            account.webhook_token_enc = cipher.encrypt(token)
        integration = await repository.integration(session, info.id, payload["client_id"])
        if integration is None:
            integration = Integration(
                account_id=info.id, client_id=payload["client_id"], token_version=0
            )
            session.add(integration)
        integration.redirect_uri = settings.amocrm_redirect_uri
        integration.base_url = f"https://{host}"
        integration.access_token_enc = tokens["access"]
        integration.refresh_token_enc = tokens["refresh"]
        integration.expires_at = datetime.fromisoformat(tokens["expires_at"])
        integration.token_version = (integration.token_version or 0) + 1
        integration.webhook_registered = False
        await session.flush()
        # Installed again: amoCRM accepts this account's requests anew.
        await clear_problem(session, info.id, *CLEARED_BY_INSTALL)
    return int(info.id)


def webhook_url(services: Services, token: str) -> str:
    base = services.settings.webhook_base_url
    if not base:
        raise BadRequest(
            "set AMOSYNC_PUBLIC_URL (or AMOSYNC_AMOCRM_REDIRECT_URI) so amoCRM can reach us",
            code="public_url_missing",
        )
    return f"{base}/webhook?token={token}"


async def register_webhooks(services: Services, account_id: int) -> None:
    """Register the account's webhook at amoCRM (its events follow the settings)."""
    await _set_webhook(services, account_id, registered=True)


async def unregister_webhooks(services: Services, account_id: int) -> None:
    """Remove the account's webhook at amoCRM."""
    await _set_webhook(services, account_id, registered=False)


async def _set_webhook(services: Services, account_id: int, *, registered: bool) -> None:
    """A workflow that commits on its own, unlike the services: the account is read, amoCRM
    called and the outcome stored each in its own session, so no transaction (nor the
    account's row) is held while amoCRM answers."""
    async with services.sessions() as session:
        account = await session.get(Account, account_id)
    if account is None or account.webhook_token_enc is None:
        return
    destination = webhook_url(services, services.cipher.decrypt(account.webhook_token_enc))
    client = await amocrm_client(services, account_id)
    if registered:
        # amoCRM updates the events of a destination it has: lead events come and go with it.
        await client.add_webhook(destination, webhook_events(account_settings(account.settings)))
    else:
        await client.delete_webhook(destination)
    async with transaction(services.sessions) as session:
        await repository.set_webhook_registered(session, account_id, registered)


async def exchange_private_code(
    services: Services, session: AsyncSession, account: Account, integration: Integration, code: str
) -> None:
    """A private integration's code (PUT /integrations/{id}): exchanged now, webhooks queued."""
    settings, cipher = services.settings, services.cipher
    secret = cipher.decrypt_optional(integration.client_secret_enc)
    if secret is None and integration.client_id == settings.amocrm_client_id:
        secret = settings.amocrm_client_secret
    redirect_uri = integration.redirect_uri or settings.amocrm_redirect_uri
    if not secret or not redirect_uri:
        raise BadRequest(
            "the integration needs client_secret and redirect_uri before a code can be exchanged",
            code="integration_incomplete",
        )
    if not account.subdomain and not settings.amocrm_base_url:
        raise BadRequest("set the account's subdomain first", code="subdomain_required")
    host = check_referer(settings, f"{account.subdomain}.amocrm.ru") if account.subdomain else ""
    try:
        base_url = account_base_url(settings.amocrm_base_url, host or "amocrm.ru")
        pair = await exchange_code(
            services.http,
            base_url,
            client_id=integration.client_id,
            client_secret=secret,
            redirect_uri=redirect_uri,
            code=code,
        )
    except PermanentUpstreamError as exc:
        raise BadRequest(
            "amoCRM refused the code (used, expired, or for another integration)",
            code="invalid_code",
        ) from exc
    except TransientUpstreamError as exc:
        raise AppError(
            "amoCRM did not answer; try again", code="amocrm_unavailable", status=502
        ) from exc
    integration.access_token_enc = cipher.encrypt(pair.access_token)
    integration.refresh_token_enc = cipher.encrypt(pair.refresh_token)
    integration.expires_at = pair.expires_at
    integration.token_version = (integration.token_version or 0) + 1
    integration.base_url = f"https://{host}" if host else None
    integration.redirect_uri = redirect_uri
    account.status = AccountStatus.ACTIVE
    if account.webhook_token_hash is None:
        token = new_token()
        account.webhook_token_hash = token_hash(token)
        account.webhook_token_enc = cipher.encrypt(token)
    await session.flush()
    await clear_problem(session, account.id, *CLEARED_BY_INSTALL)
    await WEBHOOKS.enqueue(session, AccountJob(account.id))


@WEBHOOKS.runs
async def run_register_webhooks(ctx: JobContext) -> None:
    assert ctx.account_id is not None
    await register_webhooks(ctx.services, ctx.account_id)
