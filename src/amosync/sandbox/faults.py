"""Faults injected into either simulator: scripted ones first, then a random rate."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Fault:
    """Answer the next `times` requests whose path (or Unisender method) starts with `match`.

    For amoCRM, `status` is the HTTP status (body: a problem+json). For Unisender, either an
    HTTP `status` (e.g. 500, 503) or an error `code` delivered with HTTP 200 (`retry_later`).
    `times=None` keeps the fault until it is cleared. `applied` (amoCRM): the request is
    carried out first and only its answer is the fault, as when a timeout or a proxy's 5xx
    loses the answer to a request that did reach amoCRM.
    """

    match: str = ""
    status: int = 500
    code: str | None = None
    times: int | None = 1
    applied: bool = False

    def take(self, target: str) -> bool:
        """True (and one fewer to go) when this fault applies to `target`."""
        if not target.startswith(self.match) or self.times == 0:
            return False
        if self.times is not None:
            self.times -= 1
        return True


@dataclass
class FaultPlan:
    """Scripted faults first, then a random fault rate."""

    scripted: list[Fault] = field(default_factory=list)
    rate: float = 0.0
    rate_status: int = 500
    rate_code: str | None = None
    _random: random.Random = field(default_factory=lambda: random.Random(0))

    def add(self, fault: Fault) -> None:
        self.scripted.append(fault)

    def clear(self) -> None:
        self.scripted.clear()
        self.rate = 0.0

    def pick(self, target: str) -> Fault | None:
        for fault in self.scripted:
            if fault.take(target):
                self.scripted = [f for f in self.scripted if f.times != 0]
                return fault
        if self.rate and self._random.random() < self.rate:
            return Fault(match="", status=self.rate_status, code=self.rate_code, times=None)
        return None
