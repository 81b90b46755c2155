"""`RemoteSandbox`: the Python API for a sandbox running in another process.

    async with RemoteSandbox("http://127.0.0.1:9000") as remote:
        await remote.amocrm.add_integration(client_id, secret, redirect_uri)
        await remote.amocrm.add_account(account_id=30896271, subdomain="acme")
        await remote.amocrm.generate_contacts(30896271, 1_000_000, seed=1)
        await remote.amocrm.configure(latency=0.03, rate_limit_rps=7)
        code = await remote.amocrm.issue_code(30896271, client_id)
        await remote.unisender.add_key("key")
        members = await remote.unisender.list_members("key", list_id)

Method names and arguments follow `Sandbox.amocrm` / `Sandbox.unisender`; knobs that are
attributes in-process are set with `configure(...)` here. Every call goes through the
`/_sandbox/...` control routes (see `amosync.sandbox.control`).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import httpx

from amosync.sandbox.contacts import LEAD_SHARE


class RemoteError(RuntimeError):
    """A control route refused the call (its status and body are in the message)."""


class _Part:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._http.request(method, f"/_sandbox{path}", **kwargs)
        if response.status_code >= 400:
            raise RemoteError(f"{method} {path}: HTTP {response.status_code}: {response.text}")
        if response.status_code == 204:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.content


class RemoteAmoCRM(_Part):
    async def add_integration(self, client_id: str, client_secret: str, redirect_uri: str) -> None:
        await self._call(
            "POST",
            "/amocrm/integrations",
            json={
                "client_id": client_id,
                "client_secret": client_secret,
                "redirect_uri": redirect_uri,
            },
        )

    async def add_account(
        self, account_id: int | None = None, subdomain: str | None = None, name: str | None = None
    ) -> dict[str, Any]:
        body = {"account_id": account_id, "subdomain": subdomain, "name": name}
        return dict(await self._call("POST", "/amocrm/accounts", json=body))

    async def account(self, account_id: int) -> dict[str, Any]:
        """Contacts, pages served, 429s answered, max per second and webhooks of the account."""
        return dict(await self._call("GET", f"/amocrm/accounts/{account_id}"))

    async def arrivals(self, account_id: int, since: float | None = None) -> list[float]:
        """When the account's requests arrived (unix time, from `since` on), 429s included."""
        params = {} if since is None else {"since": since}
        answer = await self._call("GET", f"/amocrm/accounts/{account_id}/arrivals", params=params)
        return [float(at) for at in answer["arrivals"]]

    async def max_per_second(self, account_id: int, since: float | None = None) -> int:
        """The most of the account's requests that arrived in any 1-second window."""
        params = {} if since is None else {"since": since}
        answer = await self._call("GET", f"/amocrm/accounts/{account_id}/arrivals", params=params)
        return int(answer["max_per_second"])

    async def issue_code(self, account_id: int, client_id: str) -> str:
        answer = await self._call(
            "POST", f"/amocrm/accounts/{account_id}/codes", json={"client_id": client_id}
        )
        return str(answer["code"])

    async def issue_tokens(self, account_id: int, client_id: str) -> dict[str, Any]:
        return dict(
            await self._call(
                "POST", f"/amocrm/accounts/{account_id}/tokens", json={"client_id": client_id}
            )
        )

    async def revoke_tokens(self, account_id: int) -> None:
        await self._call("POST", f"/amocrm/accounts/{account_id}/revoke")

    async def add_contact(
        self,
        account_id: int,
        name: str = "",
        emails: Sequence[str] = (),
        phones: Sequence[str] = (),
    ) -> dict[str, Any]:
        body = {"name": name, "emails": list(emails), "phones": list(phones)}
        return dict(await self._call("POST", f"/amocrm/accounts/{account_id}/contacts", json=body))

    async def update_contact(
        self,
        account_id: int,
        contact_id: int,
        *,
        name: str | None = None,
        emails: Sequence[str] | None = None,
        phones: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        body = {
            "name": name,
            "emails": None if emails is None else list(emails),
            "phones": None if phones is None else list(phones),
        }
        path = f"/amocrm/accounts/{account_id}/contacts/{contact_id}"
        return dict(await self._call("PATCH", path, json=body))

    async def delete_contact(self, account_id: int, contact_id: int) -> None:
        await self._call("DELETE", f"/amocrm/accounts/{account_id}/contacts/{contact_id}")

    async def restore_contact(self, account_id: int, contact_id: int) -> dict[str, Any]:
        path = f"/amocrm/accounts/{account_id}/contacts/{contact_id}/restore"
        return dict(await self._call("POST", path))

    async def generate_contacts(
        self,
        account_id: int,
        n: int,
        *,
        seed: int = 0,
        lead_share: float = LEAD_SHARE,
        lead_statuses: Sequence[tuple[int, int, float]] | None = None,
    ) -> range:
        body: dict[str, Any] = {"n": n, "seed": seed, "lead_share": lead_share}
        if lead_statuses is not None:
            body["lead_statuses"] = [list(item) for item in lead_statuses]
        answer = await self._call("POST", f"/amocrm/accounts/{account_id}/generate", json=body)
        return range(answer["first_id"], answer["first_id"] + answer["count"])

    async def create_lead(
        self,
        account_id: int,
        contact_ids: Sequence[int] = (),
        *,
        pipeline_id: int | None = None,
        status_id: int | None = None,
        name: str | None = None,
        price: int = 0,
    ) -> dict[str, Any]:
        body = {
            "contact_ids": list(contact_ids),
            "pipeline_id": pipeline_id,
            "status_id": status_id,
            "name": name,
            "price": price,
        }
        return dict(await self._call("POST", f"/amocrm/accounts/{account_id}/leads", json=body))

    async def move_lead(
        self, account_id: int, lead_id: int, status_id: int, *, pipeline_id: int | None = None
    ) -> dict[str, Any]:
        path = f"/amocrm/accounts/{account_id}/leads/{lead_id}"
        body = {"status_id": status_id, "pipeline_id": pipeline_id}
        return dict(await self._call("PATCH", path, json=body))

    async def update_lead(
        self, account_id: int, lead_id: int, *, name: str | None = None, price: int | None = None
    ) -> dict[str, Any]:
        path = f"/amocrm/accounts/{account_id}/leads/{lead_id}"
        return dict(await self._call("PATCH", path, json={"name": name, "price": price}))

    async def delete_lead(self, account_id: int, lead_id: int) -> None:
        await self._call("DELETE", f"/amocrm/accounts/{account_id}/leads/{lead_id}")

    async def restore_lead(self, account_id: int, lead_id: int) -> dict[str, Any]:
        path = f"/amocrm/accounts/{account_id}/leads/{lead_id}/restore"
        return dict(await self._call("POST", path))

    async def get_lead(self, account_id: int, lead_id: int) -> dict[str, Any] | None:
        answer = await self._call("GET", f"/amocrm/accounts/{account_id}/leads/{lead_id}")
        return None if answer is None else dict(answer)

    async def leads_in(
        self, account_id: int, statuses: Sequence[tuple[int | None, int | None]] | None = None
    ) -> list[int]:
        params = {}
        if statuses:
            params["statuses"] = ",".join(
                f"{'' if p is None else p}:{'' if s is None else s}" for p, s in statuses
            )
        path = f"/amocrm/accounts/{account_id}/leads"
        return [int(i) for i in await self._call("GET", path, params=params)]

    async def lead_pages(self, account_id: int) -> list[int]:
        return list(await self._call("GET", f"/amocrm/accounts/{account_id}/lead-pages"))

    async def webhooks(self, account_id: int) -> list[dict[str, Any]]:
        return list(await self._call("GET", f"/amocrm/accounts/{account_id}/webhooks"))

    async def disable_webhook(self, account_id: int, destination: str | None = None) -> int:
        """Turn the webhook off as amoCRM does to a failing one (every one when None)."""
        path = f"/amocrm/accounts/{account_id}/webhooks/disable"
        return int((await self._call("POST", path, json={"destination": destination}))["disabled"])

    async def remove_webhook(self, account_id: int, destination: str | None = None) -> int:
        path = f"/amocrm/accounts/{account_id}/webhooks"
        body = {"destination": destination}
        return int((await self._call("DELETE", path, json=body))["removed"])

    async def tags(self, account_id: int, contact_id: int) -> list[str]:
        path = f"/amocrm/accounts/{account_id}/contacts/{contact_id}/tags"
        return list(await self._call("GET", path))

    async def tagged(self, account_id: int, tag: str) -> dict[int, float]:
        path = f"/amocrm/accounts/{account_id}/tagged"
        answer = await self._call("GET", path, params={"tag": tag})
        return {int(contact_id): float(at) for contact_id, at in answer.items()}

    async def notes(self, account_id: int, contact_id: int | None = None) -> list[dict[str, Any]]:
        params = {"contact_id": contact_id} if contact_id is not None else {}
        return list(await self._call("GET", f"/amocrm/accounts/{account_id}/notes", params=params))

    async def contact_pages(self, account_id: int) -> list[int]:
        return list(await self._call("GET", f"/amocrm/accounts/{account_id}/pages"))

    async def webhook_body(self, account_id: int, action: str, contact_id: int) -> bytes:
        params = {"action": action, "contact_id": contact_id}
        path = f"/amocrm/accounts/{account_id}/webhook-body"
        return bytes(await self._call("GET", path, params=params))

    async def configure(self, **settings: Any) -> dict[str, Any]:
        """Set knobs: latency, rate_limit_rps, access_token_ttl, webhooks_enabled, fault_rate,
        block_after_429s, block_seconds..."""
        return dict(await self._call("PUT", "/amocrm/settings", json=settings))

    async def add_fault(self, status: int, *, path: str = "/", times: int | None = 1) -> None:
        body = {"status": status, "path": path, "times": times}
        await self._call("POST", "/amocrm/faults", json=body)

    async def clear_faults(self) -> None:
        await self._call("DELETE", "/amocrm/faults")

    async def flush_webhooks(self, timeout: float = 30.0) -> None:
        await self._call(
            "POST", "/amocrm/webhooks/flush", json={"timeout": timeout}, timeout=timeout + 5
        )

    async def deliveries(self) -> list[dict[str, Any]]:
        return list(await self._call("GET", "/amocrm/deliveries"))


class RemoteUnisender(_Part):
    async def add_key(self, key: str) -> None:
        await self._call("POST", "/unisender/keys", json={"key": key})

    async def remove_key(self, key: str) -> None:
        await self._call("DELETE", "/unisender/keys", params={"key": key})

    async def lists(self, key: str) -> list[dict[str, Any]]:
        return list(await self._call("GET", "/unisender/lists", params={"key": key}))

    async def list_members(self, key: str, list_id: int, status: str | None = None) -> set[str]:
        params: dict[str, Any] = {"key": key, "list_id": list_id}
        if status is not None:
            params["status"] = status
        return set(await self._call("GET", "/unisender/members", params=params))

    async def contact(self, key: str, email: str) -> dict[str, Any] | None:
        answer = await self._call("GET", "/unisender/contact", params={"key": key, "email": email})
        return dict(answer) if answer is not None else None

    async def fields(self, key: str) -> list[dict[str, Any]]:
        """The key's user fields, as getFields lists them."""
        return list(await self._call("GET", "/unisender/fields", params={"key": key}))

    async def create_field(self, key: str, name: str, type: str = "string") -> int:  # noqa: A002
        body = {"key": key, "name": name, "type": type}
        return int((await self._call("POST", "/unisender/fields", json=body))["id"])

    async def unsubscribe(
        self, key: str, email: str, list_ids: Sequence[int] | None = None
    ) -> None:
        body = {
            "key": key,
            "email": email,
            "list_ids": None if list_ids is None else list(list_ids),
        }
        await self._call("POST", "/unisender/unsubscribe", json=body)

    async def hooks(self, key: str) -> list[dict[str, Any]]:
        return list(await self._call("GET", "/unisender/hooks", params={"key": key}))

    async def stop_hook(self, key: str, hook_url: str | None = None) -> int:
        body = {"key": key, "hook_url": hook_url}
        return int((await self._call("POST", "/unisender/hooks/stop", json=body))["stopped"])

    async def flush_hooks(self, timeout: float = 30.0) -> None:
        await self._call("POST", "/unisender/hooks/flush", json={"timeout": timeout})

    async def hook_deliveries(self) -> list[dict[str, Any]]:
        return list(await self._call("GET", "/unisender/hook-deliveries"))

    async def reject(
        self, email: str, code: str, message: str | None = None, *, key: str | None = None
    ) -> None:
        body = {"email": email, "code": code, "message": message, "key": key}
        await self._call("POST", "/unisender/rejections", json=body)

    async def configure(self, **settings: Any) -> dict[str, Any]:
        """Set knobs: latency, rate_limit_rpm, fault_rate, fault_status, fault_code."""
        return dict(await self._call("PUT", "/unisender/settings", json=settings))

    async def add_fault(
        self, *, method: str = "", status: int = 500, code: str | None = None, times: int | None = 1
    ) -> None:
        body = {"method": method, "status": status, "code": code, "times": times}
        await self._call("POST", "/unisender/faults", json=body)

    async def clear_faults(self) -> None:
        await self._call("DELETE", "/unisender/faults")


class RemoteSandbox(_Part):
    """A sandbox in another process, driven over its `/_sandbox` control routes."""

    def __init__(self, base_url: str, http: httpx.AsyncClient | None = None) -> None:
        self._owns_http = http is None
        client = http or httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=60.0)
        super().__init__(client)
        self.amocrm = RemoteAmoCRM(client)
        self.unisender = RemoteUnisender(client)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def health(self) -> bool:
        return bool((await self._call("GET", "/health"))["ok"])

    async def calls(self, **filters: Any) -> list[dict[str, Any]]:
        """The call log; filters: api, path (prefix), status, account_id, since (unix time)."""
        params = {name: value for name, value in filters.items() if value is not None}
        return list(await self._call("GET", "/calls", params=params))

    async def calls_summary(self) -> dict[str, Any]:
        return dict(await self._call("GET", "/calls/summary"))

    async def clear_calls(self) -> None:
        await self._call("DELETE", "/calls")

    async def stats(self) -> dict[str, Any]:
        return dict(await self._call("GET", "/stats"))
