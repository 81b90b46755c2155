"""The dashboard's settings form (SPEC §6, §8, §9): what the page shows and what it posts.

The page works without a script, so the form is flat: each rule and each custom pair is a
numbered row (`rule-0-list`, `rule-0-tags`, ...), with one empty row to add another and a
"remove" box on the others. `parse` turns the posted form back into the §8 object that
`PUT /accounts/{id}/settings` takes; the same service function checks and stores it.

`choices` is the shape of `GET /accounts/{id}/settings/choices`: a part a vendor could not
give is None, and its values are then typed as ids (lists, fields) or names (tags).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from babel import Locale
from starlette.datastructures import FormData

from amosync.accounts.settings import AccountSettings, ListRule

# Where numbers written without a country code are read (phonenumbers' regions): amoCRM's
# own markets first. A region stored that is not here is offered too.
REGIONS = ("RU", "KZ", "BY", "UZ", "KG", "AM", "AZ", "GE", "MD", "TJ", "UA", "US", "GB", "DE")
# Rows read back from a post, at most: more than the settings allow, so that the model's
# own limits (422 → a message) speak, not a silent cut.
MAX_ROWS = 120


@dataclass(frozen=True)
class Choice:
    """An option of a picker: what is posted, what is shown, whether it is chosen."""

    value: str
    label: str
    selected: bool


@dataclass(frozen=True)
class Group:
    """Options shown under one heading (a pipeline's stages)."""

    label: str
    options: tuple[Choice, ...]


@dataclass(frozen=True)
class RuleRow:
    index: int
    list_id: int | None
    lists: tuple[Choice, ...] | None  # None: type the id
    tags: tuple[Choice, ...] | None  # None: type names, comma-separated
    tags_text: str
    statuses: tuple[Group, ...]
    count: int | None  # contacts in the rule's list (None: not known)
    new: bool


@dataclass(frozen=True)
class PairRow:
    index: int
    field_id: int | None
    fields: tuple[Choice, ...] | None  # None: type the id
    unisender_field: str
    new: bool


@dataclass(frozen=True)
class SettingsForm:
    rules: tuple[RuleRow, ...]
    pairs: tuple[PairRow, ...]
    phone: bool
    regions: tuple[Choice, ...]
    tags: bool
    consent_enabled: bool
    consent_tag: str
    consent_note: bool
    # part → the vendor's error code, for the parts of the choices that are missing.
    errors: Mapping[str, str] = field(default_factory=dict)


def _lists(
    choices: Mapping[str, Any], current: int | None, main_list: int | None
) -> tuple[Choice, ...] | None:
    lists = choices.get("lists")
    if lists is None:
        return None
    # The main list holds every contact already: a rule on it is refused (main_list_rule).
    out = [
        Choice(str(item["id"]), str(item["title"]), int(item["id"]) == current)
        for item in lists
        if int(item["id"]) != main_list
    ]
    if current is not None and not any(choice.selected for choice in out):
        # A list the key no longer sees: kept visible, so that saving says what is wrong.
        out.append(Choice(str(current), f"#{current}", True))
    return tuple(out)


def _tags(choices: Mapping[str, Any], chosen: Sequence[str]) -> tuple[Choice, ...] | None:
    tags = choices.get("tags")
    # No list to pick from (amoCRM did not answer, or the account has no tags yet): the
    # names are typed, so a rule can wait for a tag that is not in use yet.
    if tags is None or (not tags and not chosen):
        return None
    wanted = {tag.lower() for tag in chosen}
    out = [
        Choice(str(tag["name"]), str(tag["name"]), tag["name"].lower() in wanted) for tag in tags
    ]
    known = {tag["name"].lower() for tag in tags}
    out += [Choice(tag, tag, True) for tag in chosen if tag.lower() not in known]
    return tuple(out)


def _statuses(choices: Mapping[str, Any], chosen: Iterable[tuple[int, int]]) -> tuple[Group, ...]:
    wanted = set(chosen)
    groups = []
    seen: set[tuple[int, int]] = set()
    for pipeline in choices.get("pipelines") or []:
        options = []
        for status in pipeline.get("statuses") or []:
            pair = (int(pipeline["id"]), int(status["id"]))
            seen.add(pair)
            options.append(Choice(f"{pair[0]}:{pair[1]}", str(status["name"]), pair in wanted))
        groups.append(Group(str(pipeline["name"]), tuple(options)))
    # Stages amoCRM no longer lists (or could not be read): kept, by id.
    missing = [pair for pair in chosen if pair not in seen]
    if missing:
        groups.append(
            Group(
                "#",
                tuple(Choice(f"{p}:{s}", f"#{p} / #{s}", True) for p, s in dict.fromkeys(missing)),
            )
        )
    return tuple(groups)


def _fields(choices: Mapping[str, Any], current: int | None) -> tuple[Choice, ...] | None:
    fields = choices.get("fields")
    if fields is None:
        return None
    out = [
        Choice(str(item["id"]), str(item["name"]), int(item["id"]) == current) for item in fields
    ]
    if current is not None and not any(choice.selected for choice in out):
        out.append(Choice(str(current), f"#{current}", True))
    return tuple(out)


def _rule_row(
    index: int,
    rule: ListRule | None,
    choices: Mapping[str, Any],
    counts: Mapping[int, int] | None,
    main_list: int | None,
) -> RuleRow:
    tags = list(rule.tags_any) if rule else []
    statuses = [(s.pipeline_id, s.status_id) for s in rule.lead_statuses] if rule else []
    list_id = rule.list_id if rule else None
    return RuleRow(
        index=index,
        list_id=list_id,
        lists=_lists(choices, list_id, main_list),
        tags=_tags(choices, tags),
        tags_text=", ".join(tags),
        statuses=_statuses(choices, statuses),
        count=counts.get(list_id, 0) if counts is not None and list_id is not None else None,
        new=rule is None,
    )


def region_name(code: str, language: str) -> str:
    """A region as people name it, in the page's language (CLDR, through babel)."""
    name = Locale.parse(language).territories.get(code)
    return f"{name} ({code})" if name else code


def form_view(
    settings: AccountSettings,
    choices: Mapping[str, Any],
    counts: Mapping[int, int] | None = None,
    *,
    main_list: int | None = None,
    language: str = "en",
) -> SettingsForm:
    """The form for `settings`, with one empty rule and one empty pair to add."""
    rules = [
        _rule_row(i, rule, choices, counts, main_list) for i, rule in enumerate(settings.lists)
    ]
    rules.append(_rule_row(len(rules), None, choices, counts, main_list))
    pairs = [
        PairRow(
            index=i,
            field_id=pair.amocrm_field_id,
            fields=_fields(choices, pair.amocrm_field_id),
            unisender_field=pair.unisender_field,
            new=False,
        )
        for i, pair in enumerate(settings.fields.custom)
    ]
    pairs.append(PairRow(len(pairs), None, _fields(choices, None), "", new=True))
    region = settings.fields.phone_region
    regions = [*REGIONS, region] if region not in REGIONS else list(REGIONS)
    return SettingsForm(
        rules=tuple(rules),
        pairs=tuple(pairs),
        phone=settings.fields.phone,
        regions=tuple(
            Choice(code, region_name(code, language), code == region) for code in regions
        ),
        tags=settings.fields.tags,
        consent_enabled=settings.consent.enabled,
        consent_tag=settings.consent.tag,
        consent_note=settings.consent.note,
        errors=dict(choices.get("errors") or {}),
    )


class Incomplete(ValueError):
    """A row left half done; `problem` names which (a message code of the page)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _id(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and 0 < len(text) <= 16 else None


def _rows(form: FormData, prefix: str) -> list[int]:
    """The row numbers the post carries for `prefix` (`rule`, `custom`), in order."""
    found = set()
    for key in form:
        head, _, rest = key.partition("-")
        number, _, _ = rest.partition("-")
        if head == prefix and number.isdigit() and len(number) <= 4:
            found.add(int(number))
    return sorted(found)[:MAX_ROWS]


def parse(form: FormData) -> dict[str, Any]:
    """The posted form as the §8 object (not validated here: the settings model and the
    vendors do that). Raises `Incomplete` for a row with some of its parts only."""
    lists = []
    for i in _rows(form, "rule"):
        if form.get(f"rule-{i}-remove"):
            continue
        list_text = _text(form, f"rule-{i}-list")
        tags = [
            name.strip()
            for value in form.getlist(f"rule-{i}-tags")
            if isinstance(value, str)
            for name in value.split(",")
            if name.strip()
        ]
        statuses = []
        for value in form.getlist(f"rule-{i}-statuses"):
            pipeline, _, status = value.partition(":") if isinstance(value, str) else ("", "", "")
            if _id(pipeline) and _id(status):
                statuses.append({"pipeline_id": int(pipeline), "status_id": int(status)})
        if not list_text and not tags and not statuses:
            continue  # the empty row left for a new rule
        list_id = _id(list_text)
        if list_id is None:
            raise Incomplete("rule_needs_list")
        if not tags and not statuses:
            raise Incomplete("rule_needs_condition")
        rule: dict[str, Any] = {"list_id": list_id}
        if tags:
            rule["tags_any"] = list(dict.fromkeys(tags))
        if statuses:
            rule["lead_statuses"] = statuses
        lists.append(rule)
    custom = []
    for i in _rows(form, "custom"):
        if form.get(f"custom-{i}-remove"):
            continue
        field_text = _text(form, f"custom-{i}-field")
        name = _text(form, f"custom-{i}-name")
        if not field_text and not name:
            continue
        field_id = _id(field_text)
        if field_id is None or not name:
            raise Incomplete("pair_incomplete")
        custom.append({"amocrm_field_id": field_id, "unisender_field": name})
    enabled = bool(form.get("consent_enabled"))
    tag = _text(form, "consent_tag")
    if enabled and not tag:
        raise Incomplete("consent_tag_missing")
    return {
        "fields": {
            "phone": bool(form.get("phone")),
            "phone_region": _text(form, "phone_region").upper() or "RU",
            "tags": bool(form.get("tags")),
            "custom": custom,
        },
        "lists": lists,
        "consent": {
            "enabled": enabled,
            "tag": tag or "unsubscribed",
            "note": bool(form.get("consent_note")),
        },
    }
