"""One account's deals (leads), derived from its generated contacts and kept compactly.

A generated contact with deals has 1 to 3 of them, with ids `_LEAD_BASE + 3 * contact id + k`
(contacts.py), so a deal's id names its contact and nothing is stored for it: its pipeline
and status come from a hash of its id and the status weights of the batch its contact was
generated in, its times from its contact's. Deals made, moved, deleted or restored through
the Python API are kept in full in `explicit` (and `deleted`), and win over the derived ones.

Listing by status (`GET /api/v4/leads?filter[statuses]...`) needs every deal: their ids and
statuses are derived once per change of the contacts (about 0.1 s per 100,000 contacts) and
kept in arrays; a filtered selection is cached until a deal changes or contacts are added.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from amosync.sandbox.catalogs import DEFAULT_PIPELINES, PipelineDef
from amosync.sandbox.contacts import (
    RESPONSIBLE_USERS,
    ContactStore,
    generated_leads,
    lead_owner,
)

# Shares are drawn from a 16-bit hash of the deal id.
_SCALE = 1 << 16


@dataclass(frozen=True, slots=True)
class StatusPlan:
    """Where generated deals stand: cumulative 16-bit thresholds → (pipeline, status)."""

    thresholds: tuple[int, ...]
    statuses: tuple[tuple[int, int], ...]

    @classmethod
    def weighted(cls, weights: Iterable[tuple[int, int, float]]) -> StatusPlan:
        chosen = [(p, s, float(w)) for p, s, w in weights if w > 0]
        if not chosen:
            raise ValueError("lead statuses need at least one positive weight")
        total = sum(w for _, _, w in chosen)
        thresholds, running = [], 0.0
        for _, _, weight in chosen:
            running += weight
            thresholds.append(round(running / total * _SCALE))
        thresholds[-1] = _SCALE
        return cls(tuple(thresholds), tuple((p, s) for p, s, _ in chosen))

    @classmethod
    def default(cls, pipelines: Sequence[PipelineDef]) -> StatusPlan:
        """Every status of every pipeline; the main pipeline holds three deals in four."""
        weights = []
        for pipeline in pipelines:
            share = 3.0 if pipeline.is_main else 1.0 / max(1, len(pipelines) - 1)
            for status in pipeline.statuses:
                weights.append((pipeline.id, status.id, share / len(pipeline.statuses)))
        return cls.weighted(weights)

    def pick(self, lead_id: int) -> tuple[int, int]:
        # Not the hash contacts.py uses, so a deal's status does not follow its contact's tags.
        spot = ((lead_id * 2246822519) >> 7) & 0xFFFF
        return self.statuses[bisect_right(self.thresholds, spot)]


_DEFAULT_PLAN = StatusPlan.default(DEFAULT_PIPELINES)


@dataclass(slots=True)
class LeadData:
    id: int
    name: str
    pipeline_id: int
    status_id: int
    created_at: int
    updated_at: int
    contacts: tuple[int, ...]
    price: int = 0
    responsible_user_id: int = RESPONSIBLE_USERS[0]
    closed_at: int | None = None


@dataclass
class LeadStore:
    contacts: ContactStore
    # The status plan of each generated contact batch, by its first position.
    plans: list[tuple[int, StatusPlan]] = field(default_factory=list)
    explicit: dict[int, LeadData] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)
    version: int = 0
    pages: list[int] = field(default_factory=list)
    _base: tuple[int, array[int], array[int], array[int]] | None = None
    _selected: tuple[tuple[Any, ...], list[int]] | None = None

    # --- one deal -------------------------------------------------------------------------

    def get(self, lead_id: int, *, deleted: bool = False) -> LeadData | None:
        """The deal (None when absent, or deleted unless `deleted`)."""
        if lead_id in self.deleted and not deleted:
            return None
        found = self.explicit.get(lead_id)
        if found is not None:
            return found
        return self._derived(lead_id)

    def _derived(self, lead_id: int) -> LeadData | None:
        owner = lead_owner(lead_id)
        if owner is None:
            return None
        store = self.contacts
        position = store.position(owner)
        if position is None or not store.is_generated(position):
            return None
        if lead_id not in generated_leads(owner, store.lead_units(position)):
            return None
        pipeline_id, status_id = self._plan(position).pick(lead_id)
        created = store.created[position] + (lead_id % 3) * 3600
        updated = max(created, store.updated[position])
        return LeadData(
            lead_id,
            f"Сделка #{lead_id}",
            pipeline_id,
            status_id,
            created,
            updated,
            (owner,),
            price=(lead_id % 97) * 1000,
            responsible_user_id=RESPONSIBLE_USERS[owner % len(RESPONSIBLE_USERS)],
            closed_at=updated if status_id in (142, 143) else None,
        )

    def _plan(self, position: int) -> StatusPlan:
        if not self.plans:  # contacts generated straight into the store
            return _DEFAULT_PLAN
        index = bisect_right(self.plans, position, key=lambda item: item[0]) - 1
        return self.plans[max(index, 0)][1]

    def put(self, lead: LeadData) -> None:
        self.explicit[lead.id] = lead
        self.version += 1

    def delete(self, lead_id: int) -> None:
        self.deleted.add(lead_id)
        self.version += 1

    def restore(self, lead_id: int) -> None:
        self.deleted.discard(lead_id)
        self.version += 1

    # --- lists ----------------------------------------------------------------------------

    def select(self, wanted: Sequence[tuple[int | None, int | None]] | None) -> list[int]:
        """Live deal ids in id order, of the (pipeline, status) pairs wanted (None: any)."""
        # Derived deals depend only on which contacts were generated: contact edits and
        # deletions leave them as they are, so they do not throw the selection away.
        key = (len(self.contacts.ids), self.version, tuple(wanted) if wanted else None)
        if self._selected is not None and self._selected[0] == key:
            return self._selected[1]
        _version, ids, pipelines, statuses = self._derived_index()
        match = _matcher(wanted)
        overridden = self.deleted | self.explicit.keys()
        chosen = [
            lead_id
            for lead_id, pipeline_id, status_id in zip(ids, pipelines, statuses, strict=True)
            if match(pipeline_id, status_id) and lead_id not in overridden
        ]
        extra = [
            lead.id
            for lead in self.explicit.values()
            if lead.id not in self.deleted and match(lead.pipeline_id, lead.status_id)
        ]
        if extra:
            chosen = sorted(chosen + extra)
        self._selected = (key, chosen)
        return chosen

    def _derived_index(self) -> tuple[int, array[int], array[int], array[int]]:
        store = self.contacts
        if self._base is not None and self._base[0] == len(store.ids):
            return self._base
        ids, pipelines, statuses = array("q"), array("q"), array("q")
        for position in range(len(store.ids)):
            if not store.is_generated(position):
                continue
            leads = generated_leads(store.ids[position], store.lead_units(position))
            if not leads:
                continue
            plan = self._plan(position)
            for lead_id in leads:
                pipeline_id, status_id = plan.pick(lead_id)
                ids.append(lead_id)
                pipelines.append(pipeline_id)
                statuses.append(status_id)
        self._base = (len(store.ids), ids, pipelines, statuses)
        return self._base

    def count(self) -> int:
        return len(self.select(None))


def _matcher(
    wanted: Sequence[tuple[int | None, int | None]] | None,
) -> Any:
    if not wanted:
        return lambda _pipeline, _status: True
    pairs = {(p, s) for p, s in wanted if p is not None and s is not None}
    pipelines = {p for p, s in wanted if s is None and p is not None}
    statuses = {s for p, s in wanted if p is None and s is not None}

    def match(pipeline_id: int, status_id: int) -> bool:
        return (
            (pipeline_id, status_id) in pairs or pipeline_id in pipelines or status_id in statuses
        )

    return match
