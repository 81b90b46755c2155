"""`RemoteSandbox`: the Python API for a sandbox running in another process.

    async with RemoteSandbox("http://127.0.0.1:9000") as remote:
        await remote.amocrm.add_integration(client_id, secret, redirect_uri)
        await remote.amocrm.add_account(account_id=30896271, subdomain="acme")
        await remote.amocrm.generate_contacts(30896271, 1_000_000, seed=1)
        await remote.amocrm.configure(latency=0.03, rate_limit_rps=7)
        code = await remote.amocrm.issue_code(30896271, client_id)
        await remote.unisender.add_key("key")
        members = await remote.unisender.list_members("key", list_id)

Each control declared in `amosync.sandbox.controls` is a method here, with its name and
arguments; they follow `Sandbox.amocrm` / `Sandbox.unisender`, and knobs that are
attributes in-process are set with `configure(...)`. Every call goes through the
`/_sandbox/...` control routes (`amosync.sandbox.control_http`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

import httpx

from amosync.sandbox.controls import AMOCRM, SANDBOX, UNISENDER, Control, Controls

# A control that waits (`timeout=`) gets this long beyond it before its request gives up.
WAIT_SLACK = 5.0


class RemoteError(RuntimeError):
    """A control route refused the call (its status and body are in the message)."""


class RemoteControls:
    """The controls of one part of the sandbox, as methods named after them."""

    def __init__(self, http: httpx.AsyncClient, controls: Controls) -> None:
        self._http = http
        self._controls = controls

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        control = self.__dict__["_controls"].by_name.get(name)
        if control is None:
            raise AttributeError(name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return control.decode(await self._send(control, *args, **kwargs))

        call.__name__ = call.__qualname__ = name
        call.__doc__ = control.run.__doc__
        return call

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *self._controls.by_name]

    async def _send(self, control: Control, *args: Any, **kwargs: Any) -> Any:
        """The control's JSON answer (bytes for a form body, None for 204)."""
        arguments = control.arguments(*args, **kwargs)
        path = control.url(arguments)
        rest = {k: v for k, v in arguments.items() if k not in control.path_arguments}
        options: dict[str, Any] = {}
        if control.send == "query":
            options["params"] = {k: v for k, v in rest.items() if v is not None}
        elif rest:
            options["json"] = rest
        if isinstance(rest.get("timeout"), int | float):
            options["timeout"] = rest["timeout"] + WAIT_SLACK
        response = await self._http.request(control.verb, f"/_sandbox{path}", **options)
        if response.status_code >= 400:
            raise RemoteError(
                f"{control.verb} {path}: HTTP {response.status_code}: {response.text}"
            )
        if response.status_code == 204:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.content


class RemoteAmoCRM(RemoteControls):
    """amoCRM's controls, plus what the Python API reads out of them."""

    async def max_per_second(self, account_id: int, since: float | None = None) -> int:
        """The most of the account's requests that arrived in any 1-second window."""
        answer = await self._send(AMOCRM.by_name["arrivals"], account_id, since=since)
        return int(answer["max_per_second"])

    async def move_lead(
        self, account_id: int, lead_id: int, status_id: int, *, pipeline_id: int | None = None
    ) -> dict[str, Any]:
        return await self.change_lead(  # type: ignore[no-any-return]
            account_id, lead_id, status_id=status_id, pipeline_id=pipeline_id
        )

    async def update_lead(
        self, account_id: int, lead_id: int, *, name: str | None = None, price: int | None = None
    ) -> dict[str, Any]:
        return await self.change_lead(  # type: ignore[no-any-return]
            account_id, lead_id, name=name, price=price
        )


class RemoteSandbox(RemoteControls):
    """A sandbox in another process, driven over its `/_sandbox` control routes."""

    def __init__(self, base_url: str, http: httpx.AsyncClient | None = None) -> None:
        self._owns_http = http is None
        client = http or httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=60.0)
        super().__init__(client, SANDBOX)
        self.amocrm = RemoteAmoCRM(client, AMOCRM)
        self.unisender = RemoteControls(client, UNISENDER)

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
