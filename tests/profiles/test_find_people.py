"""`find_people`: everyone an identifier may mean (the dashboard's customer search), against a reading of the
`identities` table of its own; its first answer is always `find_person`'s. `churn_risk` is 1 - P(alive)."""

from __future__ import annotations

import math

import pytest

from omniweave.collect.emit import emit
from omniweave.collect.loader import load_all
from omniweave.errors import InputError
from omniweave.identity.service.resolve import resolve
from omniweave.profiles.service.lookup import churn_risk, find_people, find_person
from omniweave.runtime import Runtime


def _identify(runtime: Runtime, *people: dict[str, object]) -> None:
    events = [
        {"type": "identify", "messageId": f"id-{n}", "timestamp": "2026-05-01T09:00:00Z", **person}
        for n, person in enumerate(people)
    ]
    emit(runtime.store, "crm", events)
    load_all(runtime.store, runtime.log)
    resolve(runtime, probabilistic=False)


def _expected(runtime: Runtime, ref: str) -> set[tuple[str, str]]:
    """Who has `ref` as a value of any kind, read from the identities table row by row (bare values are
    written as stored here: digits and lower-case e-mails need no normalising)."""
    rows = runtime.warehouse().table("identities").to_pyarrow().to_pylist()
    return {(str(r["person_id"]), f"{r['kind']}:{r['value']}") for r in rows if r["value"] == ref}


def test_a_value_of_two_kinds_finds_both_persons_and_find_person_the_first(runtime: Runtime) -> None:
    _identify(
        runtime,
        {"userId": "7001234", "traits": {"email": "ann@example.com"}},
        {"userId": "C-200", "traits": {"email": "bob@example.com", "loyalty_card": "7001234"}},
        {"userId": "C-300", "traits": {"email": "cy@example.com"}},
    )
    both = find_people(runtime, "7001234")
    assert set(both) == _expected(runtime, "7001234") and len(both) == 2
    assert both[0] == find_person(runtime, "7001234")
    assert [by for _, by in both] == ["user_id:7001234", "loyalty_card:7001234"]  # find_person's order of kinds
    assert find_people(runtime, "loyalty_card:7001234") == [find_person(runtime, "loyalty_card:7001234")]
    # one person, any spelling; a person id; nobody
    ann = find_people(runtime, "  ANN@example.com ")
    assert ann == [find_person(runtime, "ann@example.com")] and set(ann) == _expected(runtime, "ann@example.com")
    assert find_people(runtime, ann[0][0]) == [(ann[0][0], f"person:{ann[0][0]}")]
    assert find_people(runtime, "nobody@example.com") == [] and find_person(runtime, "nobody@example.com") is None
    with pytest.raises(InputError) as bad:
        find_people(runtime, "email:not-an-address")
    assert bad.value.field == "identifier"


def test_churn_risk_is_one_minus_p_alive() -> None:
    assert churn_risk({"p_alive": 0.25}) == pytest.approx(0.75)
    assert churn_risk({"p_alive": 1.0}) == 0.0
    for unknown in ({"p_alive": None}, {"p_alive": math.nan}, {}, None):
        assert churn_risk(unknown) is None


def test_a_value_with_sql_words_in_it_is_only_a_value(runtime: Runtime) -> None:
    _identify(runtime, {"userId": "from identities join profiles", "traits": {"email": "dee@example.com"}})
    found = find_people(runtime, "from identities join profiles")
    assert [by for _, by in found] == ["user_id:from identities join profiles"]
    assert find_people(runtime, "it's from nowhere") == [] and find_person(runtime, "it's from nowhere") is None
