"""Which of the account's segment lists a contact belongs in (SPEC §8).

`Segments` is built once per job from the account's settings and its main list; the full
sync and the webhook changes ask it, for each contact, which segment lists its tags and the
statuses of its linked leads put it in. The answer travels with the contact's state to
`sync.apply.Applier`, which adds the addresses to those lists in the same `importContacts`
row (`email_list_ids`) and excludes them from the lists the contact no longer matches.

An account without rules has `active` false: then nothing here costs anything per contact,
and the sync does no segment bookkeeping at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from amosync.accounts.settings import AccountSettings, FieldSettings, ListRule
from amosync.segments.fields import columns

Status = tuple[int, int]  # (pipeline_id, status_id)
NO_STATUSES: frozenset[Status] = frozenset()


@dataclass(frozen=True)
class Segments:
    main_list: int
    rules: tuple[ListRule, ...]
    fields: FieldSettings

    @classmethod
    def of(cls, settings: AccountSettings, main_list: int) -> Segments:
        # A rule naming the main list would take addresses out of it when they stop
        # matching, though the main list keeps every valid address (§8): such a rule is
        # already satisfied and is left out.
        rules = tuple(rule for rule in settings.lists if rule.list_id != main_list)
        return cls(main_list=main_list, rules=rules, fields=settings.fields)

    @property
    def active(self) -> bool:
        """Whether any segment list is configured (the bookkeeping is needed)."""
        return bool(self.rules)

    @property
    def wants_leads(self) -> bool:
        return any(rule.lead_statuses for rule in self.rules)

    @property
    def wants_columns(self) -> bool:
        """Whether rows carry more than the address and the name."""
        fields = self.fields
        return fields.phone or fields.tags or bool(fields.custom)

    @property
    def lists(self) -> tuple[int, ...]:
        """Every segment list, each once, in the order the rules name them."""
        return tuple(dict.fromkeys(rule.list_id for rule in self.rules))

    def wanted_statuses(self) -> list[Status]:
        return list(
            dict.fromkeys(
                (s.pipeline_id, s.status_id) for rule in self.rules for s in rule.lead_statuses
            )
        )

    def lists_for(
        self, tags: Iterable[str], statuses: frozenset[Status] | set[Status] = NO_STATUSES
    ) -> tuple[int, ...]:
        """The segment lists a contact with these tags and linked-lead statuses is in."""
        if not self.rules:
            return ()
        lowered = {tag.lower() for tag in tags}
        linked = statuses if isinstance(statuses, set) else set(statuses)
        matched = [rule.list_id for rule in self.rules if rule.matches(lowered, linked)]
        return tuple(dict.fromkeys(matched))

    def columns(
        self, custom_fields_values: Sequence[Mapping[str, Any]] | None, tags: Sequence[str]
    ) -> dict[str, str]:
        """The row's extra columns (phone, tags, custom fields) as `fields` asks."""
        if not self.wants_columns:
            return {}
        return columns(custom_fields_values, tags, self.fields)
