"""The identity graph: normalisation, blocked values, limits, demotion, merges, splits, explain, order."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omniweave.errors import InputError
from omniweave.identity.graph import (
    IdentifierError,
    Observation,
    Rules,
    Stitcher,
    hashed,
    is_blocked,
    normalize,
    person_id_for,
)


def obs(mid: str, ts: str, *ids: tuple[str, str]) -> Observation:
    return Observation(mid, f"2026-01-01T00:00:{ts}", tuple(ids))


def partition(s: Stitcher) -> set[frozenset[tuple[str, str]]]:
    return {frozenset((k, v) for k, vs in ids.items() for v in vs) for ids in s.persons().values()}


# --- normalisation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        ("email", "  Jane.Smith@Gmail.COM ", "jane.smith@gmail.com"),
        ("phone", "+44 7700 900123", "+447700900123"),
        ("phone", "07700 900123", "+447700900123"),
        ("phone", "0044 7700 900123", "+447700900123"),
        ("phone", "+44 (0)7700 900123", "+447700900123"),
        ("phone", "+31 6 12345678", "+31612345678"),
        ("customer_number", " c-10004821 ", "C10004821"),
        ("loyalty_card", "6300 0202 64", "6300020264"),
        ("device_id", "069253FD-C273-4B9A-9DC6-A68BC5B1A505", "069253fd-c273-4b9a-9dc6-a68bc5b1a505"),
        ("user_id", " usr_1 ", "usr_1"),
        ("anonymous_id", "abc ", "abc"),
    ],
)
def test_normalize(kind: str, raw: str, expected: str) -> None:
    assert normalize(kind, raw, "GB") == expected


def test_normalize_customer_number_prefix_for_digits_only() -> None:
    assert normalize("customer_number", "10004821", customer_number_prefix="C") == "C10004821"


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("email", "jane"),
        ("email", "jane@localhost"),
        ("email", "a@b@c.com"),
        ("email", "   "),
        ("phone", "12"),
        ("phone", "not a phone"),
        ("phone", None),
    ],
)
def test_normalize_rejects_with_a_clear_error(kind: str, raw: str | None) -> None:
    with pytest.raises(IdentifierError) as err:
        normalize(kind, raw, "GB")
    assert kind in str(err.value)
    assert isinstance(err.value, ValueError)


def test_hashed_is_sha256_hex() -> None:
    assert hashed("a@b.com") == "fb98d44ad7501a959f3f4f4a3f004fe2d9e581ea6207e218c4b02c08a4d75adf"


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("anonymous_id", ""),
        ("anonymous_id", "anonymous"),
        ("user_id", "unknown"),
        ("user_id", "None"),
        ("user_id", "null"),
        ("email", "test@example.com"),
        ("email", "noemail@noemail.com"),
        ("loyalty_card", "0000000000"),
        ("phone", "+00000"),
        ("customer_number", "000-000"),
    ],
)
def test_blocked_values(kind: str, value: str) -> None:
    assert is_blocked(kind, value)


def test_blocked_values_never_merge_anyone() -> None:
    s = Stitcher()
    s.add(
        [
            obs("m1", "01", ("user_id", "u1"), ("loyalty_card", "0000000000"), ("email", "test@shop.com")),
            obs("m2", "02", ("user_id", "u2"), ("loyalty_card", "0000000000"), ("email", "test@shop.com")),
            obs("m3", "03", ("anonymous_id", "anonymous"), ("user_id", "u1")),
            obs("m4", "04", ("anonymous_id", "anonymous"), ("user_id", "u3")),
        ]
    )
    assert len(s.persons()) == 3
    assert ("loyalty_card", "0000000000") not in s.parent


def test_configurable_blocked_list() -> None:
    rules = Rules(blocked=frozenset({"shopfloor"}))
    s = Stitcher(rules)
    s.add(
        [
            obs("m1", "01", ("user_id", "u1"), ("device_id", "shopfloor")),
            obs("m2", "02", ("user_id", "u2"), ("device_id", "shopfloor")),
        ]
    )
    assert len(s.persons()) == 2


# --- stitching ------------------------------------------------------------------------------------


def test_anonymous_browsing_joins_the_user_on_login() -> None:
    s = Stitcher()
    s.add(
        [
            obs("m1", "01", ("anonymous_id", "a1")),
            obs("m2", "02", ("anonymous_id", "a1"), ("user_id", "u1")),
            obs("m3", "03", ("user_id", "u1"), ("email", "x@y.com")),
            obs("m4", "04", ("email", "x@y.com"), ("loyalty_card", "123")),
        ]
    )
    assert len(s.persons()) == 1
    pid = s.person_of(("anonymous_id", "a1"))
    assert pid == person_id_for(("anonymous_id", "a1"))  # the oldest founder survives
    assert s.identifiers_of(pid) == {
        "anonymous_id": ["a1"],
        "email": ["x@y.com"],
        "loyalty_card": ["123"],
        "user_id": ["u1"],
    }


def test_family_phone_keeps_two_people_apart() -> None:
    s = Stitcher()
    s.add(
        [
            obs("m1", "01", ("user_id", "mum"), ("phone", "+447700900123")),
            obs("m2", "02", ("user_id", "dad"), ("phone", "+447700900123")),
            obs("m3", "03", ("user_id", "dad"), ("email", "dad@x.com")),
        ]
    )
    assert len(s.persons()) == 2
    assert s.person_of(("phone", "+447700900123")) == s.person_of(("user_id", "mum"))
    assert s.person_of(("email", "dad@x.com")) == s.person_of(("user_id", "dad"))
    [refusal] = s.refusals
    assert refusal.b == ("phone", "+447700900123") and refusal.rule == "limit: at most 1 user_id per person"
    assert refusal.message_id == "m2"


def test_a_coupon_code_redeemed_with_two_loyalty_cards_is_a_campaign_code_not_a_person() -> None:
    """A mailing's offer code (the same for every recipient) used at the tills by two card holders:
    a personal coupon is one person's, so the code is demoted instead of merging the two."""
    s = Stitcher(Rules(priorities=(*Rules().priorities, "coupon_code")))
    mailing = ("coupon_code", "MAIL20")
    s.add(
        [
            obs("t1", "01", ("loyalty_card", "111"), mailing),
            obs("t2", "02", ("loyalty_card", "222"), mailing),
            obs("c1", "03", ("user_id", "u1"), ("coupon_code", "EM01ABC")),
            obs("t3", "04", ("loyalty_card", "333"), ("coupon_code", "EM01ABC")),
        ]
    )
    assert s.person_of(("loyalty_card", "111")) != s.person_of(("loyalty_card", "222"))
    assert mailing in s.demoted and s.demoted_report()[mailing] == {"loyalty_card": 2}
    # a personal coupon issued to a user and redeemed with a card still ties them
    assert s.person_of(("loyalty_card", "333")) == s.person_of(("user_id", "u1"))


def test_limit_refuses_the_lower_priority_link_not_the_person() -> None:
    s = Stitcher(Rules(limits={"user_id": 1, "loyalty_card": 1}))
    s.add(
        [
            obs("m1", "01", ("email", "a@x.com"), ("loyalty_card", "1")),
            obs("m2", "02", ("email", "a@x.com"), ("loyalty_card", "2"), ("anonymous_id", "an")),
        ]
    )
    # the second card is refused, but the anonymous id of the same event still joins
    assert s.person_of(("anonymous_id", "an")) == s.person_of(("email", "a@x.com"))
    assert s.person_of(("loyalty_card", "2")) != s.person_of(("email", "a@x.com"))


def test_over_shared_identifier_is_demoted_and_reported() -> None:
    s = Stitcher()
    shop_wifi = ("device_id", "shop-ipad")
    s.add([obs(f"m{i}", f"{i:02d}", ("user_id", f"u{i}"), ("email", f"p{i}@x.com"), shop_wifi) for i in range(4)])
    assert len(s.persons()) == 5  # four people and the demoted device on its own
    assert shop_wifi in s.demoted
    assert s.demoted_report()[shop_wifi] == {"email": 4, "user_id": 4}
    assert s.merge_log() == []


def test_merge_log_records_why_and_old_ids_still_work() -> None:
    s = Stitcher()
    s.add(
        [
            obs("m1", "01", ("anonymous_id", "a1")),
            obs("m2", "02", ("email", "e@x.com"), ("phone", "+447700900123")),
            obs("m3", "03", ("anonymous_id", "a1"), ("email", "e@x.com")),
        ]
    )
    [merge] = s.merge_log()
    old = person_id_for(("email", "e@x.com"))
    assert merge.merged == old and merge.survivor == person_id_for(("anonymous_id", "a1"))
    assert merge.message_id == "m3" and merge.rule.startswith("same event")
    assert {merge.a, merge.b} == {("anonymous_id", "a1"), ("email", "e@x.com")}
    assert s.lookup(old) == merge.survivor
    assert "phone" in s.identifiers_of(old)


def test_split_sticks_on_every_later_run() -> None:
    s = Stitcher()
    s.add(
        [
            obs("m1", "01", ("user_id", "u1"), ("email", "me@x.com")),
            obs("m2", "02", ("user_id", "u1"), ("device_id", "shared-tablet")),
            obs("m3", "03", ("device_id", "shared-tablet"), ("anonymous_id", "a9")),
        ]
    )
    pid = s.person_of(("user_id", "u1"))
    s.split(pid, ("device_id", "shared-tablet"))
    assert s.person_of(("device_id", "shared-tablet")) != pid
    assert s.person_of(("anonymous_id", "a9")) == s.person_of(("device_id", "shared-tablet"))
    # later events that would link them again are refused, incrementally and on a re-derivation
    s.add([obs("m4", "04", ("user_id", "u1"), ("device_id", "shared-tablet"))])
    assert s.person_of(("device_id", "shared-tablet")) != s.person_of(("user_id", "u1"))
    s.add([obs("m0", "00", ("email", "me@x.com"), ("device_id", "shared-tablet"))])
    assert s.person_of(("device_id", "shared-tablet")) != s.person_of(("user_id", "u1"))
    assert any(r.rule.startswith("split") for r in s.refusals)


def test_split_of_a_foreign_identifier_is_refused() -> None:
    s = Stitcher()
    s.add([obs("m1", "01", ("user_id", "u1"), ("email", "me@x.com")), obs("m2", "02", ("user_id", "u2"))])
    with pytest.raises(InputError, match="is not an identifier of person"):
        s.split(s.person_of(("user_id", "u1")), ("user_id", "u2"))


def test_explain_gives_the_chain_of_links() -> None:
    s = Stitcher()
    s.add(
        [
            obs("m1", "01", ("anonymous_id", "a1"), ("email", "e@x.com")),
            obs("m2", "02", ("email", "e@x.com"), ("loyalty_card", "42")),
            obs("m3", "03", ("loyalty_card", "42"), ("customer_number", "C1")),
        ]
    )
    chain = s.explain(("anonymous_id", "a1"), ("customer_number", "C1"))
    assert [link.message_id for link in chain] == ["m1", "m2", "m3"]
    assert s.explain(("email", "e@x.com"), ("email", "e@x.com")) == []
    s.add([obs("m4", "04", ("user_id", "other"))])
    with pytest.raises(InputError, match="different persons"):
        s.explain(("user_id", "other"), ("email", "e@x.com"))


def test_unknown_kind_is_an_error() -> None:
    with pytest.raises(IdentifierError, match="unknown identifier kind 'shoe_size'"):
        Stitcher().add([obs("m1", "01", ("shoe_size", "9"))])


def test_custom_kinds_from_config() -> None:
    s = Stitcher(Rules(priorities=(*Rules().priorities, "crm_id")))
    s.add([obs("m1", "01", ("crm_id", "X1"), ("email", "a@x.com"))])
    assert len(s.persons()) == 1


# --- order independence --------------------------------------------------------------------------

_KINDS = st.sampled_from(["user_id", "email", "phone", "loyalty_card", "device_id", "anonymous_id"])
_IDENT = st.tuples(_KINDS, st.sampled_from(["1", "2", "3", "4", "5", "0", "anonymous"]))
_OBS = st.lists(st.tuples(st.integers(0, 20), st.lists(_IDENT, min_size=1, max_size=4)), min_size=1, max_size=25)


@settings(max_examples=150, deadline=None)
@given(_OBS, st.randoms(use_true_random=False), st.lists(st.integers(0, 25), max_size=4))
def test_same_persons_in_any_order_and_any_increments(raw: list, rnd, cuts: list[int]) -> None:  # type: ignore[type-arg]
    observations = [Observation(f"m{i}", f"2026-01-01T00:00:{ts:02d}", tuple(ids)) for i, (ts, ids) in enumerate(raw)]
    rules = Rules(limits={"user_id": 1, "email": 2, "phone": 2, "loyalty_card": 1}, share_limits={"user_id": 2})
    reference = Stitcher(rules, bulk_threshold=10**9)  # rule by rule, in canonical order
    reference.add(observations)
    bulk = Stitcher(rules, bulk_threshold=0)  # every re-derivation in bulk
    bulk.add(observations)
    assert bulk.persons() == reference.persons()
    shuffled = list(observations)
    rnd.shuffle(shuffled)
    incremental = Stitcher(rules, bulk_threshold=rnd.choice([0, 3, 10**9]))
    bounds = [0, *sorted(c % (len(shuffled) + 1) for c in cuts), len(shuffled)]
    for lo, hi in itertools.pairwise(bounds):
        incremental.add(shuffled[lo:hi])
    assert partition(incremental) == partition(reference)
    assert incremental.persons() == reference.persons()
    assert incremental.demoted == reference.demoted


def test_state_round_trip_continues_incrementally() -> None:
    first = [
        obs("m1", "01", ("anonymous_id", "a1"), ("email", "e@x.com")),
        obs("m2", "02", ("user_id", "u1"), ("phone", "+447700900123")),
    ]
    later = [obs("m3", "03", ("email", "e@x.com"), ("user_id", "u1")), obs("m0", "00", ("anonymous_id", "a1"))]
    whole = Stitcher()
    whole.add(first + later)
    s = Stitcher()
    s.add(first)
    s.split(s.person_of(("user_id", "u1")), ("phone", "+447700900123"))
    whole.split(whole.person_of(("user_id", "u1")), ("phone", "+447700900123"))
    restored = Stitcher.from_state(Rules(), s.state())
    assert restored.persons() == s.persons() and restored.splits == s.splits
    restored.add(later)
    assert restored.persons() == whole.persons()
    assert restored.explain(("anonymous_id", "a1"), ("user_id", "u1"))


def test_bulk_rebuild_gives_the_rule_by_rule_persons_on_a_larger_graph() -> None:
    """Thousands of observations where limits bind (shared family phones, several user ids on one
    card, splits): the bulk rebuild walks only the components that break a limit, with the same
    persons, refusals and explanations as the walk over everything."""
    rnd = random.Random(7)
    kinds = ["user_id", "email", "phone", "loyalty_card", "device_id", "anonymous_id"]
    pools = {"user_id": 600, "email": 700, "phone": 300, "loyalty_card": 250, "device_id": 400, "anonymous_id": 3000}
    observations = []
    for i in range(6000):
        ids = {(k, f"{k[0]}{rnd.randrange(pools[k])}") for k in rnd.sample(kinds, rnd.choice([1, 2, 2, 3]))}
        observations.append(
            Observation(f"m{i:05d}", f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}", tuple(sorted(ids)))
        )
    rules = Rules(limits={"user_id": 1, "email": 3, "phone": 2, "loyalty_card": 1}, share_limits={"user_id": 3})
    walked = Stitcher(rules, bulk_threshold=10**9)
    walked.add(observations)
    bulk = Stitcher(rules, bulk_threshold=0)
    bulk.add(observations)
    assert bulk.persons() == walked.persons()
    assert sorted(bulk.refusals, key=repr) == sorted(walked.refusals, key=repr) != []
    assert 1 < len(bulk.persons()) < len(bulk.parent)
    some = next(p for p in bulk.persons().values() if sum(map(len, p.values())) > 3)
    kind, values = next(iter(some.items()))
    other = next((k, v[0]) for k, v in some.items() if (k, v[0]) != (kind, values[0]))
    chain = bulk.explain((kind, values[0]), other)
    assert chain and {chain[0].a, chain[0].b} & {(kind, values[0])}
    pid = bulk.person_of(other)
    bulk.split(pid, other)
    walked.split(walked.person_of(other), other)
    assert bulk.persons() == walked.persons()
