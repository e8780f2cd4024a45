"""Journey conditions: property filters (examples and hypothesis against a naive oracle) and branch conditions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from omniweave.activate.journeys.conditions import FILTER_OPS, holds, lookup, matches
from omniweave.activate.journeys.model import Condition, EventCount, PropertyFilter

F = PropertyFilter

ORDER = {
    "order_id": "W01-ABC",
    "revenue": 129.5,
    "coupon": "",
    "products": [
        {"product_id": "SKU-1", "category": "electronics", "price": 399.0, "name": "Studio Headphones"},
        {"product_id": "SKU-2", "category": "home", "price": 20, "name": "Classic Table Lamp"},
    ],
    "context.page.url": "https://shop.example/a",
    "shipped_at": "2024-05-01T09:00:00+02:00",
    "tags": ["gift", "express"],
    "note": None,
}


def test_dotted_paths_reach_every_element_of_a_list_and_flat_keys_win() -> None:
    assert lookup(ORDER, "products.category") == ["electronics", "home"]
    assert lookup(ORDER, "context.page.url") == ["https://shop.example/a"]
    assert lookup(ORDER, "products.missing") == [] and lookup(ORDER, "note") == [] and lookup(ORDER, "nope.x") == []
    assert matches([F("products.category", "eq", "electronics")], ORDER)
    assert matches([F("products.category", "eq", "home")], ORDER)
    assert not matches([F("products.category", "eq", "beauty")], ORDER)
    assert matches([F("products.price", "gt", 300)], ORDER)  # any product
    assert not matches([F("products.price", "gt", 400)], ORDER)
    assert matches([F("products.category", "ne", "beauty")], ORDER)
    assert not matches([F("products.category", "ne", "home")], ORDER)  # ne is "no product is home"
    assert matches([F("products.name", "contains", "Lamp")], ORDER)
    assert matches([F("tags", "contains", "gift")], ORDER) and not matches([F("tags", "contains", "gold")], ORDER)


def test_numbers_texts_booleans_and_timestamps_compare_sensibly() -> None:
    props = {"n": "42", "m": 7, "flag": True, "code": "00123", "at": "2024-05-01T07:00:00Z", "word": "abc"}
    assert matches([F("n", "eq", 42), F("n", "gt", 9), F("m", "eq", "7"), F("m", "lt", "10")], props)
    assert not matches([F("n", "gt", "9")], props)  # two texts compare as texts: "42" < "9"
    assert not matches([F("code", "eq", "123")], props) and matches([F("code", "eq", 123)], props)
    assert matches([F("flag", "eq", True)], props)
    assert not matches([F("flag", "eq", 1)], props) and not matches([F("flag", "eq", "true")], props)
    assert not matches([F("m", "eq", True)], props)
    assert matches([F("at", "eq", "2024-05-01T09:00:00+02:00")], props)  # the same instant
    assert matches([F("at", "gte", "2024-05-01"), F("at", "lt", "2024-05-02")], props)
    assert matches([F("at", "lt", datetime(2024, 5, 1, 8, tzinfo=UTC))], props)
    assert not matches([F("word", "gt", 5)], props) and not matches([F("word", "lt", 5)], props)
    assert matches([F("word", "ne", 5)], props)  # cannot be equal
    assert matches([F("n", "in", (1, 42)), F("n", "not_in", ("41",))], props)
    assert matches([F("gone", "missing"), F("n", "exists"), F("gone", "ne", 1)], props)
    assert not matches([F("gone", "gt", 0)], props) and not matches([F("gone", "exists")], props)
    assert matches([F("gone", "eq", None)], props) and not matches([F("n", "eq", None)], props)
    assert matches([], None)


# --- hypothesis against a naive oracle ------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.5, 2.0, -1.5]),
    st.sampled_from(
        ["a", "b", "ab", "2", "10", "2.0", "2024-01-01", "2024-01-01T01:00:00+01:00", "2023-12-31T12:00:00Z"]
    ),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3))
NAMES = st.sampled_from(["x", "y", "z"])


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return "text"


def _as_number(v: Any) -> float | None:
    if _kind(v) == "number":
        return float(v)
    try:
        return float(v) if isinstance(v, str) else None
    except ValueError:
        return None


def _as_time(v: Any) -> datetime | None:
    if not isinstance(v, str) or len(v) < 10 or v[4] != "-":
        return None
    parsed = datetime.fromisoformat(v.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _oracle_pair(a: Any, b: Any) -> tuple[Any, Any] | None:
    kinds = {_kind(a), _kind(b)}
    if "bool" in kinds:
        return (a, b) if kinds == {"bool"} else None
    if "number" in kinds:
        na, nb = _as_number(a), _as_number(b)
        return None if na is None or nb is None else (na, nb)
    ta, tb = _as_time(a), _as_time(b)
    return (ta, tb) if ta and tb else (a, b)


def _oracle(filters: list[PropertyFilter], props: dict[str, Any]) -> bool:
    for f in filters:
        raw = props.get(f.name)
        found = [v for v in (raw if isinstance(raw, list) else [raw]) if v is not None]
        ok = False
        for v in found:
            if f.op in ("eq", "ne"):
                pair = _oracle_pair(v, f.value)
                ok = ok or (pair is not None and pair[0] == pair[1])
            elif f.op in ("in", "not_in"):
                for option in f.value:
                    pair = _oracle_pair(v, option)
                    ok = ok or (pair is not None and pair[0] == pair[1])
            elif f.op == "contains":
                if isinstance(v, str) and isinstance(f.value, str):
                    ok = ok or f.value in v
                else:
                    pair = _oracle_pair(v, f.value)
                    ok = ok or (pair is not None and pair[0] == pair[1])
            elif f.op in ("gt", "gte", "lt", "lte"):
                pair = _oracle_pair(v, f.value)
                if pair is not None and not isinstance(pair[0], bool):
                    x, y = pair
                    ok = ok or {"gt": x > y, "gte": x >= y, "lt": x < y, "lte": x <= y}[f.op]
        if f.op in ("exists", "missing"):
            ok = bool(found)
        if f.op == "eq" and f.value is None:
            ok = not found
        if f.op in ("ne", "not_in", "missing"):
            ok = not ok
        if f.op == "ne" and f.value is None:
            ok = bool(found)
        if not ok:
            return False
    return True


@st.composite
def filters(draw: st.DrawFn) -> PropertyFilter:
    op = draw(st.sampled_from(FILTER_OPS))
    name = draw(NAMES)
    if op in ("exists", "missing"):
        return F(name, op)
    if op in ("in", "not_in"):
        return F(name, op, tuple(draw(st.lists(SCALARS.filter(lambda v: v is not None), min_size=1, max_size=3))))
    if op in ("gt", "gte", "lt", "lte", "contains"):
        return F(name, op, draw(SCALARS.filter(lambda v: v is not None and not isinstance(v, bool))))
    return F(name, op, draw(SCALARS))


@settings(max_examples=200, deadline=None)
@given(st.lists(filters(), max_size=3), st.dictionaries(NAMES, VALUES, max_size=3))
def test_matches_agrees_with_a_naive_oracle(fs: list[PropertyFilter], props: dict[str, Any]) -> None:
    assert matches(fs, props) == _oracle(fs, props)


@settings(max_examples=150, deadline=None)
@given(filters(), st.dictionaries(NAMES, VALUES, max_size=3))
def test_negated_operators_are_the_negations_and_filters_combine_by_and(
    f: PropertyFilter, props: dict[str, Any]
) -> None:
    negation = {"eq": "ne", "ne": "eq", "in": "not_in", "not_in": "in", "exists": "missing", "missing": "exists"}
    if f.op in negation:
        assert matches([F(f.name, negation[f.op], f.value)], props) == (not matches([f], props))
    other = F("y", "exists")
    assert matches([f, other], props) == (matches([f], props) and matches([other], props))


@settings(max_examples=200, deadline=None)
@given(st.integers(-1000, 1000), st.integers(-1000, 1000), st.sampled_from(["gt", "gte", "lt", "lte", "eq"]))
def test_a_number_written_as_text_compares_like_the_number(a: int, b: int, op: str) -> None:
    assert matches([F("x", op, b)], {"x": str(a)}) == matches([F("x", op, b)], {"x": a})
    assert matches([F("x", op, str(b))], {"x": a}) == matches([F("x", op, b)], {"x": a})


# --- branch conditions -------------------------------------------------------------------------------------

NOW = 1_700_000_000.0
DAY = 86400.0
EVENTS = [
    ("Order Completed", NOW - 10 * DAY, {"revenue": 80, "products": [{"category": "home"}]}),
    ("Order Completed", NOW - 40 * DAY, {"revenue": 300, "products": [{"category": "electronics"}]}),
    ("Order Completed", NOW - 200 * DAY, {"revenue": 50}),
    ("Product Viewed", datetime.fromtimestamp(NOW - 3600, UTC), {"product_id": "SKU-1"}),
    ("Order Completed", NOW + DAY, {"revenue": 10}),  # not yet happened at NOW
    ("Store Visited", datetime.fromtimestamp(NOW - 2 * DAY, UTC).isoformat(), {"store_id": "S1"}),
]


def test_holds_combines_traits_events_trigger_and_segments() -> None:
    traits = {"lifetime_value": 640, "city": "Leeds"}
    vip = Condition(
        traits=(F("lifetime_value", "gt", 500),),
        events=(EventCount("Order Completed", within=90 * DAY, min_count=2),),
    )
    assert holds(vip, traits, EVENTS, None, set(), NOW)
    assert not holds(vip, {"lifetime_value": 400}, EVENTS, None, set(), NOW)
    three = Condition(events=(EventCount("Order Completed", within=90 * DAY, min_count=3),))
    assert not holds(three, traits, EVENTS, None, set(), NOW)  # the future order does not count
    assert holds(Condition(events=(EventCount("Order Completed", min_count=3),)), traits, EVENTS, None, set(), NOW)
    electronics = EventCount("Order Completed", where=(F("products.category", "eq", "electronics"),), within=30 * DAY)
    assert not holds(Condition(events=(electronics,)), traits, EVENTS, None, set(), NOW)
    assert holds(
        Condition(events=(EventCount("Order Completed", (F("revenue", "gte", 300),)),)), {}, EVENTS, None, set(), NOW
    )
    viewed = EventCount("Product Viewed", within=7200)
    assert holds(Condition(events=(viewed,)), {}, EVENTS, None, set(), NOW)  # a datetime timestamp
    no_recent = EventCount("Order Completed", within=5 * DAY, min_count=0, none=True)
    assert holds(Condition(events=(no_recent,)), {}, EVENTS, None, set(), NOW)
    assert not holds(
        Condition(events=(EventCount("Order Completed", within=20 * DAY, min_count=0, none=True),)),
        {},
        EVENTS,
        None,
        set(),
        NOW,
    )
    trigger = Condition(trigger=(F("cart_id", "exists"), F("value", "gte", 50)))
    assert holds(trigger, {}, [], {"cart_id": "c1", "value": "75.5"}, set(), NOW)
    assert not holds(trigger, {}, [], {"cart_id": "c1", "value": 20}, set(), NOW)
    assert not holds(trigger, {}, [], None, set(), NOW)
    segs = Condition(in_segments=("lapsing_high_value",), not_in_segments=("store_only_buyers",))
    assert holds(segs, {}, [], None, {"lapsing_high_value", "x"}, NOW)
    assert not holds(segs, {}, [], None, {"lapsing_high_value", "store_only_buyers"}, NOW)
    assert not holds(segs, {}, [], None, set(), NOW)
    visited = EventCount("Store Visited", (F("store_id", "eq", "S1"),), within=3 * DAY)
    assert holds(Condition(events=(visited,)), {}, EVENTS, None, set(), NOW)  # an ISO timestamp
    assert not holds(Condition(events=(EventCount("Store Visited", within=DAY),)), {}, EVENTS, None, set(), NOW)
    assert holds(Condition(), None, [], None, set(), NOW)  # an empty condition holds
