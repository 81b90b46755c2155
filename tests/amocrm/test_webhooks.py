"""amoCRM webhook bodies (SPEC §5): the PHP-style form parser and the contact changes."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amosync.amocrm.webhooks import (
    MAX_CONTACTS,
    MAX_DEPTH,
    MAX_FIELDS,
    MAX_LEADS,
    MAX_PAIRS,
    MAX_VALUES,
    ContactChange,
    MalformedWebhook,
    Node,
    parse_form,
    parse_webhook,
)
from amosync.errors import BadRequest

SPEC_EXAMPLE = (
    "contacts[add][0][id]=123&contacts[add][0][name]=Ann"
    "&contacts[add][0][custom_fields][0][id]=55&contacts[add][0][custom_fields][0][code]=EMAIL"
    "&contacts[add][0][custom_fields][0][values][0][value]=ann@example.com"
    "&contacts[add][0][custom_fields][0][values][0][enum]=101"
    "&contacts[update][0][id]=124&contacts[update][0][name]=Bob"
    "&contacts[update][0][last_modified]=1700000000"
    "&contacts[delete][0][id]=125&contacts[delete][0][type]=contact"
    "&account[subdomain]=acme&account[id]=30896271&account[_links][self]=https://acme.amocrm.ru"
)


def form(pairs: list[tuple[str, str]]) -> bytes:
    """As amoCRM sends it: every bracket percent-encoded."""
    return urlencode(pairs).encode()


def update(
    contact_id: str, *fields: tuple[str, str], action: str = "update"
) -> list[tuple[str, str]]:
    prefix = f"contacts[{action}][0]"
    return [(f"{prefix}[id]", contact_id), *((f"{prefix}{k}", v) for k, v in fields)]


# --- contact changes ------------------------------------------------------------------


def test_the_spec_example() -> None:
    payload = parse_webhook(SPEC_EXAMPLE.encode())

    assert payload.account_id == 30896271
    assert payload.subdomain == "acme"
    assert payload.changes == [
        ContactChange(
            amocrm_id=123, action="upsert", raw_action="add", name="Ann", emails=["ann@example.com"]
        ),
        ContactChange(
            amocrm_id=124, action="upsert", raw_action="update", name="Bob", updated_at=1700000000
        ),
        ContactChange(amocrm_id=125, action="delete", raw_action="delete"),
    ]


def test_a_real_update_delivery() -> None:
    """The legacy shape amoCRM really posts: system fields, a PHONE field first, a date
    field whose value is a bare scalar, the EMAIL field at index 2 with two values."""
    p = "contacts[update][0]"
    body = form(
        [
            (f"{p}[id]", "7793457"),
            (f"{p}[name]", "Анна Петрова"),
            (f"{p}[responsible_user_id]", "6101560"),
            (f"{p}[date_create]", "1608138130"),
            (f"{p}[last_modified]", "1642684812"),
            (f"{p}[modified_user_id]", "0"),
            (f"{p}[custom_fields][0][id]", "293097"),
            (f"{p}[custom_fields][0][name]", "Телефон"),
            (f"{p}[custom_fields][0][values][0][value]", "+7 999 000-00-00"),
            (f"{p}[custom_fields][0][values][0][enum]", "395207"),
            (f"{p}[custom_fields][0][code]", "PHONE"),
            (f"{p}[custom_fields][1][id]", "293207"),
            (f"{p}[custom_fields][1][name]", "Дата регистрации"),
            (f"{p}[custom_fields][1][values][0]", "1471813200"),
            (f"{p}[custom_fields][2][id]", "55"),
            (f"{p}[custom_fields][2][name]", "Email"),
            (f"{p}[custom_fields][2][values][0][value]", " anna@example.com "),
            (f"{p}[custom_fields][2][values][0][enum]", "101"),
            (f"{p}[custom_fields][2][values][1][value]", "Anna.Work@Example.com"),
            (f"{p}[custom_fields][2][values][1][enum]", "103"),
            (f"{p}[custom_fields][2][code]", "EMAIL"),
            (f"{p}[custom_fields][3][id]", "77"),
            (f"{p}[custom_fields][3][name]", "Backup e-mail (not the EMAIL field)"),
            (f"{p}[custom_fields][3][values][0][value]", "other@example.com"),
            (f"{p}[created_at]", "1608138130"),
            (f"{p}[updated_at]", "1642684812"),
            (f"{p}[type]", "contact"),
            ("account[subdomain]", "acme"),
            ("account[id]", "29138932"),
            ("account[_links][self]", "https://acme.amocrm.ru"),
        ]
    )

    (change,) = parse_webhook(body).changes

    assert change == ContactChange(
        amocrm_id=7793457,
        action="upsert",
        raw_action="update",
        name="Анна Петрова",
        emails=["anna@example.com", "Anna.Work@Example.com"],
        updated_at=1642684812,
        # The other fields, in the API's shape, for the field mapping (SPEC §8).
        fields=[
            {
                "field_id": 293097,
                "field_code": "PHONE",
                "values": [{"value": "+7 999 000-00-00", "enum_id": 395207}],
            },
            {"field_id": 293207, "field_code": None, "values": [{"value": "1471813200"}]},
            {"field_id": 77, "field_code": None, "values": [{"value": "other@example.com"}]},
        ],
    )


def test_emails_follow_field_and_value_indices_not_arrival_order() -> None:
    body = form(
        update(
            "1",
            ("[custom_fields][10][code]", "EMAIL"),
            ("[custom_fields][10][values][1][value]", "third@example.com"),
            ("[custom_fields][10][values][0][value]", "second@example.com"),
            ("[custom_fields][2][values][0][value]", "first@example.com"),
            ("[custom_fields][2][code]", "EMAIL"),
            action="add",
        )
    )

    (change,) = parse_webhook(body).changes

    assert change.emails == ["first@example.com", "second@example.com", "third@example.com"]


def test_restore_and_update_are_upserts_and_several_contacts_per_action() -> None:
    body = form(
        [
            ("contacts[restore][0][id]", "5"),
            ("contacts[restore][1][id]", "6"),
            ("contacts[update][0][id]", "7"),
            ("contacts[add][0][id]", "8"),
        ]
    )

    changes = parse_webhook(body).changes

    # A restore without custom_fields says nothing of the contact: it is read from the API.
    assert [(c.amocrm_id, c.action, c.raw_action) for c in changes] == [
        (5, "fetch", "restore"),
        (6, "fetch", "restore"),
        (7, "upsert", "update"),
        (8, "upsert", "add"),
    ]


def test_a_contact_without_custom_fields_has_no_emails() -> None:
    (change,) = parse_webhook(form(update("9", ("[name]", "No Mail")))).changes
    assert change.emails == []
    assert change.name == "No Mail"


def test_updated_at_falls_back_to_updated_at_and_a_garbled_one_is_none() -> None:
    (change,) = parse_webhook(form(update("9", ("[updated_at]", "1700000001")))).changes
    assert change.updated_at == 1700000001
    (change,) = parse_webhook(form(update("9", ("[last_modified]", "yesterday")))).changes
    assert change.updated_at is None


def test_companies_posted_under_contacts_are_skipped() -> None:
    body = form(
        [
            ("contacts[update][0][id]", "10"),
            ("contacts[update][0][type]", "company"),
            ("contacts[update][1][id]", "11"),
            ("contacts[update][1][type]", "contact"),
            ("contacts[delete][0][id]", "12"),
            ("contacts[delete][0][type]", "company"),
        ]
    )
    assert [c.amocrm_id for c in parse_webhook(body).changes] == [11]


def test_other_entities_and_events_are_ignored_whatever_their_shape() -> None:
    deep = "unsorted[add][0][data][contacts][0][custom_fields][0][values][0][value]"
    body = form(
        [
            ("leads[add][0][id]", "1"),
            ("leads[status][0][id]", "2"),
            ("companies[update][0][id]", "3"),
            ("task[add][0][id]", "4"),
            # Note webhooks use one key both as a value and as a container.
            ("contacts[note][0][note][type]", "3"),
            ("contacts[note][0][note][type][message_uuid]", "70f31734"),
            ("contacts[responsible][0][id]", "not a number"),
            (deep, "x@example.com"),
            ("account[id]", "1"),
        ]
    )
    payload = parse_webhook(body)
    assert payload.changes == []
    assert payload.account_id == 1


def test_an_empty_body_is_an_empty_payload() -> None:
    payload = parse_webhook(b"")
    assert (payload.account_id, payload.subdomain, payload.changes) == (None, None, [])


@pytest.mark.parametrize(
    "contact_id", [None, "", "abc", "12a", "-5", "1.5", " 7", "0", "²", "١٢", "9" * 30]
)
def test_a_contact_without_a_numeric_id_is_skipped_and_the_rest_is_kept(
    contact_id: str | None,
) -> None:
    pairs = update("100", ("[name]", "Fine"))
    pairs += [("contacts[add][0][name]", "Broken")]
    if contact_id is not None:
        pairs.append(("contacts[add][0][id]", contact_id))

    changes = parse_webhook(form(pairs)).changes

    assert [(c.amocrm_id, c.name) for c in changes] == [(100, "Fine")]


@pytest.mark.parametrize(
    "pairs",
    [
        [("contacts[add]", "x")],  # not a list
        [("contacts[add][0]", "x")],  # an item that is not a contact
        [("contacts[add][0][id][x]", "1")],  # an id that is no number
    ],
)
def test_contact_lists_of_the_wrong_shape_are_skipped(pairs: list[tuple[str, str]]) -> None:
    body = form([*pairs, *update("7", ("[name]", "Kept"))])
    assert [c.amocrm_id for c in parse_webhook(body).changes] == [7]


def test_entries_keyed_by_something_else_than_an_index_are_read_after_the_indexed_ones() -> None:
    body = form(
        [
            ("contacts[add][first][id]", "1"),
            ("contacts[add][01][id]", "2"),
            ("contacts[add][1][id]", "3"),
            ("contacts[add][0][id]", "4"),
        ]
    )
    assert [c.amocrm_id for c in parse_webhook(body).changes] == [4, 3, 1, 2]


def test_keys_named_by_large_entity_ids_parse() -> None:
    """`linked_leads_id[<lead id>][ID]`: one key per linked deal, named by its id."""
    lead_ids = ["35144366", "351443627913", str(2**63 - 1), "9" * 40]
    pairs = update("35144369", ("[name]", "Linked"))
    pairs += [(f"contacts[update][0][linked_leads_id][{lead}][ID]", lead) for lead in lead_ids]
    pairs += [("contacts[update][0][catalog_elements_id][5067][1234567]", "1")]
    pairs += update("35144369", ("[custom_fields][0][code]", "EMAIL"))[1:]
    pairs += [("contacts[update][0][custom_fields][0][values][0][value]", "l@example.com")]

    (change,) = parse_webhook(form(pairs)).changes

    assert (change.amocrm_id, change.emails) == (35144369, ["l@example.com"])
    tree = parse_form(form(pairs))
    linked = tree["contacts"]["update"]["0"]["linked_leads_id"]  # type: ignore[index]
    assert list(linked) == lead_ids  # type: ignore[arg-type]


def test_a_contact_with_a_thousand_addresses_passes() -> None:
    p = "[custom_fields][0]"
    fields = [(f"{p}[code]", "EMAIL")]
    fields += [(f"{p}[values][{n}][value]", f"a{n}@example.com") for n in range(1000)]
    (change,) = parse_webhook(form(update("1", *fields))).changes
    assert len(change.emails) == 1000
    assert change.emails[-1] == "a999@example.com"


@pytest.mark.parametrize(
    ("pairs", "problem"),
    [
        (
            [(f"contacts[add][{n}][id]", str(n + 1)) for n in range(MAX_CONTACTS + 1)],
            "contacts",
        ),
        (
            [("contacts[add][0][id]", "1")]
            + [
                (f"contacts[add][0][custom_fields][{n}][id]", str(n)) for n in range(MAX_FIELDS + 1)
            ],
            "custom fields",
        ),
        (
            [("contacts[add][0][id]", "1"), ("contacts[add][0][custom_fields][0][code]", "EMAIL")]
            + [
                (f"contacts[add][0][custom_fields][0][values][{n}]", "x")
                for n in range(MAX_VALUES + 1)
            ],
            "values",
        ),
    ],
)
def test_limits_on_what_is_read(pairs: list[tuple[str, str]], problem: str) -> None:
    with pytest.raises(MalformedWebhook, match=problem) as caught:
        parse_webhook(form(pairs))
    assert isinstance(caught.value, BadRequest)
    assert (caught.value.status, caught.value.code) == (400, "malformed_webhook")


# --- the form parser ------------------------------------------------------------------


def test_nested_keys_build_nested_dicts_with_brackets_raw_or_encoded() -> None:
    expected = {"a": {"b": {"0": "1", "1": "2"}, "c": "x y"}, "d": "ü&="}
    raw = b"a[b][0]=1&a[b][1]=2&a[c]=x+y&d=%C3%BC%26%3D"
    encoded = b"a%5Bb%5D%5B0%5D=1&a%5bb%5d%5b1%5d=2&a%5Bc%5D=x%20y&d=%c3%bc%26%3d"
    assert parse_form(raw) == expected
    assert parse_form(encoded) == expected


def test_append_keys_number_after_the_largest_index_like_php() -> None:
    assert parse_form(b"a[]=x&a[]=y") == {"a": {"0": "x", "1": "y"}}
    assert parse_form(b"a[5]=x&a[]=y&a[2]=z&a[]=w") == {
        "a": {"5": "x", "6": "y", "2": "z", "7": "w"}
    }
    assert parse_form(b"a[][v]=1&a[][v]=2") == {"a": {"0": {"v": "1"}, "1": {"v": "2"}}}


def test_keys_without_value_and_repeated_keys() -> None:
    assert parse_form(b"a&b=&c=1&c=2&&") == {"a": "", "b": "", "c": "2"}


def test_a_key_used_as_value_and_container_keeps_the_later_one_like_php() -> None:
    assert parse_form(b"a=1&a[b]=2") == {"a": {"b": "2"}}
    assert parse_form(b"a[b]=2&a=1") == {"a": "1"}
    assert parse_form(b"a[b][c]=1&a[b]=2") == {"a": {"b": "2"}}


def test_keys_php_would_guess_at_are_ignored_and_stray_percents_kept() -> None:
    body = b"[a]=1&a]=1&a[b=1&a[b]c=1&a[b[c]]=1&ok[x]=1&p=100%&q=%zz&r=%41"
    assert parse_form(body) == {"ok": {"x": "1"}, "p": "100%", "q": "%zz", "r": "A"}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"a=%FF%FE", "UTF-8"),
        (b"a=\xff", "UTF-8"),
        (b"a=x\x00", "NUL"),
        (b"a=x%00", "NUL"),
        (b"a" + b"[x]" * MAX_DEPTH + b"=1", "deeper"),
        (b"x=1&contacts[add][0]" + b"[x]" * MAX_DEPTH + b"=1", "deeper"),
        (b"&".join([b"a[]=1"] * (MAX_PAIRS + 1)), "fields"),
    ],
)
def test_unreadable_forms_are_refused(body: bytes, problem: str) -> None:
    with pytest.raises(MalformedWebhook, match=problem):
        parse_form(body)
    with pytest.raises(MalformedWebhook, match=problem):
        parse_webhook(body)


def test_limits_are_inclusive() -> None:
    assert parse_form(b"a" + b"[x]" * (MAX_DEPTH - 1) + b"=1")
    assert parse_form(b"a[" + b"k" * 100_000 + b"]=1") == {"a": {"k" * 100_000: "1"}}
    assert len(parse_form(b"&".join(b"a%d=1" % i for i in range(MAX_PAIRS)))) == MAX_PAIRS


# --- properties -----------------------------------------------------------------------

TOKENS = st.sampled_from(
    [
        "contacts", "account", "add", "update", "delete", "restore", "id", "name", "code",
        "EMAIL", "custom_fields", "values", "value", "type", "company", "0", "1", "00", "7",
        "99999999", "[", "]", "[]", "%5B", "%5D", "%5b", "=", "&", "+", "%", "%2", "%zz", "%41",
        "%C3%BC", "%FF", "%00", "\x00", "ü", "\xff", " ", "a@b.c", "-1", "²",
    ]
)  # fmt: skip
STRUCTURED = st.lists(TOKENS, max_size=60).map(lambda tokens: "".join(tokens).encode())


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=300), STRUCTURED))
def test_nothing_but_malformed_webhook_ever_escapes(body: bytes) -> None:
    for parse in (parse_form, parse_webhook):
        try:
            parse(body)
        except MalformedWebhook:
            pass


KEY = st.text(
    st.characters(blacklist_characters="[]\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=8,
)
VALUE = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12
)


def trees(depth: int) -> st.SearchStrategy[Node]:
    child = VALUE if depth <= 1 else st.one_of(VALUE, trees(depth - 1))
    return st.dictionaries(KEY, child, min_size=1, max_size=4)


def flatten(tree: Node, prefix: str = "") -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in tree.items():
        name = f"{prefix}[{key}]" if prefix else key
        pairs += flatten(value, name) if isinstance(value, dict) else [(name, value)]
    return pairs


@settings(max_examples=300, deadline=None)
@given(trees(depth=5), st.booleans())
def test_any_nested_form_round_trips(tree: Node, raw_brackets: bool) -> None:
    body = urlencode(flatten(tree), safe="[]" if raw_brackets else "", quote_via=quote)
    assert parse_form(body.encode()) == tree


@dataclass
class Generated:
    id: int
    action: str
    name: str
    updated_at: int
    fields: list[tuple[str, list[str]]]  # (code, values); e-mails where the code is EMAIL

    def expected(self) -> ContactChange:
        if self.action == "delete":
            return ContactChange(amocrm_id=self.id, action="delete", raw_action="delete")
        sent_fields = any(code or values for code, values in self.fields)
        emails = [
            value.strip()
            for code, values in self.fields
            if code == "EMAIL"
            for value in values
            if value.strip()
        ]
        return ContactChange(
            amocrm_id=self.id,
            action="fetch" if self.action == "restore" and not sent_fields else "upsert",
            raw_action=self.action,  # type: ignore[arg-type]
            name=self.name,
            emails=emails,
            updated_at=self.updated_at,
        )


CONTACT = st.builds(
    Generated,
    id=st.integers(1, 2**53),
    action=st.sampled_from(["add", "update", "delete", "restore"]),
    name=VALUE,
    updated_at=st.integers(0, 2**31),
    fields=st.lists(
        st.tuples(st.sampled_from(["EMAIL", "PHONE", "", "email"]), st.lists(VALUE, max_size=3)),
        max_size=4,
    ),
)


def amocrm_body(contacts: list[Generated]) -> bytes:
    """Contacts as amoCRM posts them: grouped by action, numbered within each group."""
    groups: dict[str, list[Generated]] = {}
    for contact in contacts:
        groups.setdefault(contact.action, []).append(contact)
    pairs = [("account[id]", "42"), ("account[subdomain]", "acme")]
    for action, members in groups.items():
        for n, contact in enumerate(members):
            p = f"contacts[{action}][{n}]"
            pairs.append((f"{p}[id]", str(contact.id)))
            if action != "delete":
                pairs.append((f"{p}[name]", contact.name))
                pairs.append((f"{p}[last_modified]", str(contact.updated_at)))
                for i, (code, values) in enumerate(contact.fields):
                    if code:
                        pairs.append((f"{p}[custom_fields][{i}][code]", code))
                    for j, value in enumerate(values):
                        pairs.append((f"{p}[custom_fields][{i}][values][{j}][value]", value))
            pairs.append((f"{p}[type]", "contact"))
    return form(pairs)


@settings(max_examples=200, deadline=None)
@given(st.lists(CONTACT, max_size=6))
def test_generated_webhooks_round_trip(contacts: list[Generated]) -> None:
    payload = parse_webhook(amocrm_body(contacts))

    by_action: dict[str, list[ContactChange]] = {}
    for contact in contacts:
        by_action.setdefault(contact.action, []).append(contact.expected())
    assert payload.changes == [change for group in by_action.values() for change in group]
    assert (payload.account_id, payload.subdomain) == (42, "acme")


# --- deals ------------------------------------------------------------------------------


def test_deal_changes_of_every_action_in_order() -> None:
    body = form(
        [
            ("leads[status][0][id]", "7"),
            ("leads[status][0][status_id]", "142"),
            ("leads[status][0][pipeline_id]", "3177727"),
            ("leads[status][0][old_status_id]", "32392159"),
            ("leads[status][0][last_modified]", "1700000000"),
            ("leads[status][1][id]", "8"),
            ("leads[status][1][status_id]", "143"),
            ("leads[add][0][id]", "9"),
            ("leads[delete][0][id]", "10"),
            ("leads[restore][0][id]", "11"),
            ("leads[restore][0][updated_at]", "1700000001"),
            ("leads[update][0][id]", "12"),
            ("leads[responsible][0][id]", "13"),  # not an event amosync reads
            ("leads[note][0][note][text]", "x"),
            ("account[id]", "30896271"),
        ]
    )
    payload = parse_webhook(body)
    assert [(c.lead_id, c.action) for c in payload.leads] == [
        (7, "status"),
        (8, "status"),
        (9, "add"),
        (10, "delete"),
        (11, "restore"),
        (12, "update"),
    ]
    first = payload.leads[0]
    assert (first.pipeline_id, first.status_id) == (3177727, 142)
    assert first.updated_at is not None
    assert first.updated_at.timestamp() == 1700000000
    assert payload.leads[1].pipeline_id is None
    assert payload.leads[4].updated_at is not None
    assert payload.account_id == 30896271
    assert payload.changes == []


def test_a_deal_without_a_numeric_id_is_skipped_and_odd_parts_are_left_out() -> None:
    body = form(
        [
            ("leads[update][0][id]", "abc"),
            ("leads[update][1][name]", "no id"),
            ("leads[update][2][id]", "5"),
            ("leads[update][2][status_id]", "-1"),
            ("leads[update][2][pipeline_id]", ""),
            ("leads[update][2][last_modified]", "yesterday"),
        ]
    )
    (change,) = parse_webhook(body).leads
    assert (change.lead_id, change.pipeline_id, change.status_id, change.updated_at) == (
        5,
        None,
        None,
        None,
    )
    assert parse_webhook(b"leads=1&leads[add]=2").leads == ()


def test_contacts_and_deals_in_one_body_are_both_read() -> None:
    body = SPEC_EXAMPLE.encode() + b"&leads[add][0][id]=77&leads[add][0][status_id]=142"
    payload = parse_webhook(body)
    assert [c.amocrm_id for c in payload.changes] == [123, 124, 125]
    assert [(c.lead_id, c.status_id) for c in payload.leads] == [(77, 142)]


def test_too_many_deals_is_malformed() -> None:
    body = "&".join(f"leads[update][{n}][id]={n + 1}" for n in range(MAX_LEADS + 1))
    with pytest.raises(MalformedWebhook, match="deals"):
        parse_webhook(body.encode())
