"""segments.evaluator (one person at a time, in Python) against segments.service.evaluate.Compiler (Ibis on DuckDB):
the same members for every built-in and many extra segments on the demo world and on hand-made
profiles full of NULLs, NaN and boundaries, the same matching events on the demo's event log and on
hand-made events, and the edge inputs the batch path never sees."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import duckdb
import ibis
import pyarrow as pa
import pytest

from omniweave.runtime import Runtime
from omniweave.segments import language as S
from omniweave.segments.evaluator import condition_holds, event_matches
from omniweave.segments.service.evaluate import Compiler, builtin_segments, compiler_for, member_ids
from omniweave.settings import Settings
from tests.conftest import shared_demo_world


def _segments(where: Mapping[str, Any]) -> dict[str, S.Segment]:
    return {sid: S.parse_segment({"id": sid, "where": w}) for sid, w in where.items()}


def _counts(compiler: Compiler, segments: Mapping[str, S.Segment]) -> dict[str, dict[S.Behaviour, int]]:
    """Per person, the count of every behaviour condition of `segments`, as the compiler counts it."""
    behaviours = dict.fromkeys(b for seg in segments.values() for b in S.behaviours_of(seg.where, segments))
    out: dict[str, dict[S.Behaviour, int]] = {}
    for b in behaviours:
        for row in compiler._behaviour_counts(b, "n").to_pyarrow().to_pylist():
            out.setdefault(row["person_id"], {})[b] = row["n"]
    return out


def _python_members(
    segments: Mapping[str, S.Segment],
    sid: str,
    profiles: list[dict[str, Any]],
    counts: Mapping[str, Mapping[S.Behaviour, int]],
    now: datetime,
) -> list[str]:
    return sorted(
        p["person_id"]
        for p in profiles
        if condition_holds(segments[sid].where, p, counts.get(p["person_id"], {}), now, segments, p["person_id"])
    )


# --- the demo world ----------------------------------------------------------------------------------


@dataclass
class World:
    compiler: Compiler  # prepared as evaluate_segments prepares it: the members
    plain: Compiler  # over every event, afresh: the counts per behaviour and the matching events
    segments: dict[str, S.Segment]
    profiles: list[dict[str, Any]]  # the rows of `profiles`, as the live path holds them
    counts: dict[str, dict[S.Behaviour, int]]  # person -> behaviour -> count (absent: 0)
    events: list[dict[str, Any]]  # every event attributed to a person up to now (properties: JSON text)


def _extra(now: datetime) -> dict[str, Any]:
    """Segments beyond the library: every trait operator on numbers, texts, true/false, lists and
    timestamps, NULL checks, not / any / in_segment / bucket, counts and property filters of each kind."""
    day = (now - timedelta(days=20)).date().isoformat()
    moment = (now - timedelta(days=10)).astimezone(timezone(timedelta(hours=2))).isoformat()
    return {
        "n_eq": {"trait": "orders", "eq": 1},
        "n_ne": {"trait": "orders", "ne": 0},
        "n_gt_float": {"trait": "orders", "gt": 1.5},
        "n_lte": {"trait": "store_orders", "lte": 1},
        "n_in": {"trait": "orders", "in": [1, 3]},
        "n_not_in": {"trait": "orders", "not_in": [0, 2]},
        "f_between": {"trait": "total_revenue", "between": [20, 100.5]},
        "f_lt_nullable": {"trait": "average_order_value", "lt": 40},
        "f_not_lt_nullable": {"not": {"trait": "average_order_value", "lt": 40}},
        "f_gte_nullable": {"trait": "expected_orders_12m", "gte": 0.5},
        "i_ne_nullable": {"trait": "rfm_monetary", "ne": 3},
        "i_not_in_nullable": {"trait": "rfm_monetary", "not_in": [1, 2]},
        "not_ne_nullable": {"not": {"trait": "rfm_monetary", "ne": 3}},
        "not_not_in_nullable": {"not": {"trait": "rfm_monetary", "not_in": [1, 2]}},
        "t_eq": {"trait": "preferred_channel", "eq": "web"},
        "t_ne": {"trait": "preferred_channel", "ne": "store"},
        "t_not_eq": {"not": {"trait": "preferred_channel", "eq": "store"}},
        "t_in": {"trait": "best_weekday", "in": ["Friday", "Monday"]},
        "t_not_in": {"trait": "timezone", "not_in": ["UTC"]},
        "t_gte": {"trait": "first_name", "gte": "M"},
        "t_between": {"trait": "rfm_segment", "between": ["2", "4"]},
        "t_is_null": {"trait": "first_name", "is_null": True},
        "t_not_null": {"trait": "preferred_device", "is_null": False},
        "b_eq_true": {"trait": "consent_email", "eq": True},
        "b_ne_true": {"trait": "consent_sms", "ne": True},
        "b_not_eq_true": {"not": {"trait": "consent_sms", "eq": True}},
        "b_gt_false": {"trait": "consent_email", "gt": False},
        "l_contains": {"trait": "channels", "contains": "web"},
        "l_not_contains": {"not": {"trait": "favourite_categories", "contains": "beauty"}},
        "l_is_null": {"trait": "favourite_categories", "is_null": True},
        "l_not_null": {"trait": "emails", "is_null": False},
        "ts_before": {"trait": "last_order_at", "before_days_ago": 12.5},
        "ts_within": {"trait": "first_seen", "within_days": 45},
        "ts_not_within": {"not": {"trait": "last_order_at", "within_days": 7}},
        "ts_gt_day": {"trait": "last_order_at", "gt": day},
        "ts_lte_offset": {"trait": "last_seen", "lte": moment},
        "ts_between": {"trait": "first_order_at", "between": [day, moment]},
        "ts_null": {"trait": "last_order_at", "is_null": True},
        "tree": {
            "all": [
                {
                    "any": [
                        {"in_segment": "omnichannel_buyers"},
                        {"in_segment": "t_eq"},
                        {"bucket": {"salt": "holdout", "from": 0, "to": 15}},
                    ]
                },
                {
                    "not": {
                        "all": [
                            {"trait": "consent_email", "eq": False},
                            {"bucket": {"salt": "x", "from": 30, "to": 90}},
                        ]
                    }
                },
            ]
        },
        "bucket": {"bucket": {"salt": "holdout", "from": 10, "to": 55}},
        "exactly_1_order": {"performed": "Order Completed", "exactly": 1},
        "at_most_2_opens_30d": {"performed": "Email Opened", "at_most": 2, "within_days": 30},
        "at_least_0": {"performed": "Email Opened", "at_least": 0, "within_days": 3},
        "no_views_7d": {"not_performed": "Product Viewed", "within_days": 7},
        "filtered": {
            "any": [
                {
                    "performed": "Order Completed",
                    "where": [{"property": "revenue", "gte": 60}, {"property": "channel", "ne": "store"}],
                },
                {
                    "performed": "Video Playback Started",
                    "at_least": 2,
                    "where": [{"property": "full_screen", "eq": True}],
                },
                {
                    "performed": "Coupon Applied",
                    "where": [
                        {"property": "redeemed_channel", "in": ["store", "app"]},
                        {"property": "store_id", "is_null": True},
                    ],
                },
                {"performed": "Page Viewed", "within_days": 10, "where": [{"property": "path", "gte": "/s"}]},
            ]
        },
        "viewed_not_added": {
            "performed": "Product Viewed",
            "within_days": 14,
            "then_not": {"event": "Product Added", "within_hours": 48, "where": [{"property": "quantity", "lte": 1}]},
        },
        "in_library": {"all": [{"in_segment": "lapsing_high_value"}, {"not": {"in_segment": "coupon_hunters"}}]},
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = shared_demo_world(tmp_path_factory, "segment-eval-demo", customers=600, days=60, seed=7)
    rt = Runtime(Settings(home=str(home)))
    try:
        now = compiler_for(rt, {}).now
        segments = {**builtin_segments(), **_segments(_extra(now))}
        compiler = compiler_for(rt, segments, now=now)
        compiler.prepare(segments)  # every behaviour counted once for all segments, as evaluate_segments does
        wh = rt.warehouse()
        # the compiler read afresh, over every event (message ids included) kept in memory: counts and matches
        plain = Compiler(wh.table("profiles"), wh.table("events").cache(), wh.table("identities"), now, segments)
        profiles = wh.table("profiles").to_pyarrow().to_pylist()
        events = plain.events.select("message_id", "type", "event", "channel", "properties").to_pyarrow().to_pylist()
        yield World(compiler, plain, segments, profiles, _counts(plain, segments), events)
    finally:
        rt.close()


def test_every_segment_has_the_compilers_members_on_the_demo_world(world: World):
    everyone = len(world.profiles)
    assert everyone > 1000
    for sid in world.segments:
        expected = member_ids(world.compiler, sid)
        ours = _python_members(world.segments, sid, world.profiles, world.counts, world.compiler.now)
        assert ours == expected, (sid, len(ours), len(expected), sorted(set(ours) ^ set(expected))[:5])
        # a segment of nobody or of everyone would prove little (at least 0 times is everyone)
        assert 0 < len(expected) < everyone or (sid == "at_least_0" and len(expected) == everyone), sid


def test_the_null_semantics_show_on_the_demo_world(world: World):
    """The pairs that tell NULL apart: `ne` and `not_in` leave the NULLs out, `not` of a comparison takes them in."""
    sizes = {
        sid: len(member_ids(world.compiler, sid))
        for sid in (
            "i_ne_nullable",
            "not_ne_nullable",
            "i_not_in_nullable",
            "not_not_in_nullable",
            "b_ne_true",
            "b_not_eq_true",
            "f_lt_nullable",
            "f_not_lt_nullable",
        )
    }
    everyone = len(world.profiles)
    nulls = sum(p["rfm_monetary"] is None for p in world.profiles)
    assert nulls > 0
    assert sizes["i_ne_nullable"] + sizes["not_ne_nullable"] == everyone
    assert sizes["i_not_in_nullable"] + sizes["not_not_in_nullable"] == everyone
    assert sizes["b_ne_true"] < sizes["b_not_eq_true"]
    assert sizes["f_lt_nullable"] + sizes["f_not_lt_nullable"] == everyone


DEMO_FILTERS: list[tuple[str, list[dict[str, Any]]]] = [
    ("Order Completed", [{"property": "revenue", "gte": 50}, {"property": "channel", "ne": "store"}]),
    ("Order Completed", [{"property": "products[0].category", "in": ["beauty", "home", "kids"]}]),
    ("Order Completed", [{"property": "coupon", "is_null": False}, {"property": "total", "lt": 80.25}]),
    ("Order Completed", [{"property": "products", "lt": '[{"product_id":"SKU-05'}]),  # an array's JSON text
    ("Product Viewed", [{"property": "price", "lt": 20}, {"property": "category", "not_in": ["beauty", "kids"]}]),
    ("Product Viewed", [{"property": "price", "gt": "5"}]),  # a number's text, compared as text
    ("Product Added", [{"property": "quantity", "in": [1, "3"]}]),  # mixed values: as text
    ("Product Added", [{"property": "quantity", "ne": 1}]),
    # the demo's full_screen is always false: true/false filters alongside one that chooses
    (
        "Video Playback Started",
        [{"property": "full_screen", "ne": True}, {"property": "content_asset_id", "lt": "SKU-04"}],
    ),
    (
        "Video Playback Started",
        [
            {"property": "full_screen", "in": [False]},
            {"property": "position", "lte": 0},
            {"property": "content_asset_id", "gt": "SKU-06"},
        ],
    ),
    (
        "Coupon Applied",
        [{"property": "redeemed_channel", "in": ["store", "app"]}, {"property": "discount", "lte": 5.5}],
    ),
    ("Coupon Issued", [{"property": "discount_pct", "in": [10, 20]}, {"property": "valid_until", "gt": "2026-10-2"}]),
    ("Page Viewed", [{"property": "path", "gte": "/p"}, {"property": "referrer", "is_null": False}]),
    ("Page Viewed", [{"property": "search", "eq": ""}, {"property": "title", "lt": "N"}]),
    ("Screen Viewed", [{"property": "sku", "is_null": True}]),
    ("Identified", [{"property": "channel", "eq": "loyalty"}, {"property": "store_id", "is_null": False}]),
    ("Identified", [{"property": "customer_number", "gte": "C"}]),
    ("Store Visited", [{"property": "dwell_minutes", "gt": 20.5}, {"property": "visit_type", "ne": "browse"}]),
    (
        "Email Opened",
        [
            {"property": "no_such_key", "is_null": True},
            {"property": "channel", "in": ["email"]},
            {"property": "campaign_id", "lte": "EM-20261002"},
        ],
    ),
    ("Segment Entered", [{"property": "segment_id", "eq": "store_only_buyers"}]),
]


@pytest.mark.parametrize("name,where", DEMO_FILTERS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(DEMO_FILTERS)])
def test_event_matches_selects_the_compilers_events_on_the_demo_log(world: World, name: str, where: list):
    filters = S.parse_segment({"id": "x", "where": {"performed": name, "where": where}}).where.filters  # type: ignore[union-attr]
    expected = sorted(
        world.plain._matching(name, filters).select("message_id").to_pyarrow().column("message_id").to_pylist()
    )
    ours = sorted(e["message_id"] for e in world.events if event_matches(name, filters, e))
    assert ours == expected
    named = sum(event_matches(name, (), e) for e in world.events)
    assert 0 < len(expected) < named, (name, len(expected), named)  # the filters choose


# --- hand-made events: the corners of JSON and of the comparisons --------------------------------------

NOW = datetime(2026, 10, 31, 12, 0, 0, 250_000, tzinfo=UTC)
DOCS = [
    '{"v": 1}',
    '{"v": 1.0}',
    '{"v": 1.5}',
    '{"v": 1e16}',
    '{"v": 1e-7}',
    '{"v": 2.5e21}',
    '{"v": -0.0}',
    '{"v": 0}',
    '{"v": -0}',
    '{"v": 12345678901234567890123}',
    '{"v": 1e400}',
    '{"v": NaN}',
    '{"v": -Infinity}',
    '{"v": "1"}',
    '{"v": " 2.5 "}',
    '{"v": "1_000"}',
    '{"v": "+-3"}',
    '{"v": "nan"}',
    '{"v": "-inf"}',
    '{"v": ".5e1"}',
    '{"v": null}',
    "{}",
    "[1, 2]",
    '"v"',
    "7",
    "null",
    None,
    '{"v": 1, "v": "x"}',
    '{"w": {"v": 1}}',
    '{"n": {"w": [5, {"x": "y\\u00e9\\n"}, -0.0, 1e16], "w": 0}}',
]
TEXT_DOCS = [
    '{"v": true}',
    '{"v": false}',
    '{"v": "TRUE"}',
    '{"v": "abc"}',
    '{"v": ""}',
    '{"v": "é"}',
    '{"v": [1, "a", {"b": null}]}',
    '{"v": {"z": 1, "a": [true]}}',
    '{"v": "1.0"}',
]
NUMERIC_FILTERS: list[tuple[str, Any]] = [
    ("eq", 1),
    ("eq", 0),
    ("ne", 1),
    ("gt", 1),
    ("gte", 1.0),
    ("lt", 2),
    ("lte", 0),
    ("lt", 1e300),
    ("gt", 1e300),
    ("in", (0, 1.5, 1000)),
    ("not_in", (1, 0)),
    ("eq", float("nan")),
    ("gt", 5),
    ("ne", float("nan")),
    ("eq", 1e16),
    ("lte", float("-inf")),
]
TEXT_FILTERS: list[tuple[str, Any]] = [
    ("eq", "1"),
    ("eq", "1.0"),
    ("eq", "1e400"),
    ("eq", "10000000000000000.0"),
    ("eq", "1e-7"),
    ("eq", "2.5e21"),
    ("eq", "-0.0"),
    ("eq", "0"),
    ("eq", "NaN"),
    ("eq", "true"),
    ("eq", "TRUE"),
    ("eq", ""),
    ("eq", "é"),
    ("eq", '[1,"a",{"b":null}]'),
    ("eq", '{"z":1,"a":[true]}'),
    ("ne", "abc"),
    ("gt", "1"),
    ("lte", "abc"),
    ("in", ("1", "x", "nan")),
    ("not_in", ("abc", "1")),
    ("eq", True),
    ("eq", False),
    ("ne", True),
    ("gt", False),
    ("in", (True,)),
    ("not_in", (False,)),
    ("in", (1, "abc")),
    ("in", (True, "true")),
    ("is_null", True),
    ("is_null", False),
]
NESTED_FILTERS: list[tuple[str, str, Any]] = [
    ("n.w[0]", "gt", 4),
    ("n.w[1].x", "eq", "yé\n"),
    ("n.w[#-1]", "eq", "10000000000000000.0"),
    ("n.w[-2]", "eq", 0),
    ("n.w[2]", "eq", "-0.0"),
    ("n.w[4]", "is_null", True),
    ("n.w", "eq", '[5,{"x":"yé\\n"},-0.0,10000000000000000.0]'),
    ("n", "eq", '{"w":[5,{"x":"yé\\n"},-0.0,10000000000000000.0],"w":0}'),
    ("n.w.x", "is_null", True),
    ('"n".w[1]', "eq", '{"x":"yé\\n"}'),
    ("w.v", "eq", 1),
    ("v.x", "is_null", True),
]
CHANNEL_FILTERS: list[tuple[str, Any]] = [
    ("eq", "web"),
    ("ne", "web"),
    ("gt", "m"),
    ("in", ("app", "store")),
    ("not_in", ("web",)),
    ("is_null", True),
    ("is_null", False),
]


def _events_table(docs: list[str | None]) -> list[dict[str, Any]]:
    types = [
        ("track", "Thing"),
        ("track", "Thing"),
        ("page", "Home"),
        ("track", "Page Viewed"),
        ("identify", None),
        ("screen", "Cart"),
        ("track", "Other"),
    ]
    channels = ["web", None, "app", "store", "Web", "", "web"]
    out = []
    for i, doc in enumerate(docs):
        for j, ((typ, name), channel) in enumerate(zip(types, channels, strict=True)):
            out.append(
                {
                    "message_id": f"m{i:03d}-{j}",
                    "type": typ,
                    "event": name,
                    "channel": channel,
                    "properties": doc,
                    "timestamp": NOW - timedelta(minutes=i + j),
                    "user_id": "u1",
                    "anonymous_id": None,
                }
            )
    return out


def _compiler_over(
    events: list[dict[str, Any]], profiles: pa.Table | None = None, segments: Mapping[str, S.Segment] | None = None
) -> Compiler:
    schema = pa.schema(
        [
            ("message_id", pa.string()),
            ("type", pa.string()),
            ("event", pa.string()),
            ("channel", pa.string()),
            ("properties", pa.string()),
            ("timestamp", pa.timestamp("us", "UTC")),
            ("user_id", pa.string()),
            ("anonymous_id", pa.string()),
        ]
    )
    ids = pa.table({"kind": ["user_id"], "value": ["u1"], "person_id": ["p1"]})
    profiles = profiles if profiles is not None else pa.table({"person_id": ["p1"]})
    return Compiler(
        ibis.memtable(profiles),
        ibis.memtable(pa.Table.from_pylist(events, schema)),
        ibis.memtable(ids),
        NOW,
        segments or {},
    )


def _same_matches(compiler: Compiler, events: list[dict[str, Any]], name: str, filters: tuple[S.Filter, ...]) -> int:
    expected = sorted(
        compiler._matching(name, filters).select("message_id").to_pyarrow().column("message_id").to_pylist()
    )
    ours = sorted(e["message_id"] for e in events if event_matches(name, filters, e))
    assert ours == expected, (name, filters, sorted(set(ours) ^ set(expected)))
    return len(expected)


def test_event_matches_equals_the_compiler_on_the_corners_of_json():
    numeric = _events_table(DOCS)  # every `v` here is NULL or a text DuckDB can read as a number
    everything = _events_table(DOCS + TEXT_DOCS)
    on_numbers, on_all = _compiler_over(numeric), _compiler_over(everything)
    seen = Counter()
    for name in ("Thing", "Page Viewed", "Screen Viewed", "Identified", "Other"):
        seen[name] = _same_matches(on_all, everything, name, ())
    for name in ("Thing", "Page Viewed"):  # a name, and a call type
        for op, value in NUMERIC_FILTERS:
            seen[f"n {op} {value}"] += _same_matches(on_numbers, numeric, name, (S.Filter("v", op, value),))
        for op, value in TEXT_FILTERS:
            seen[f"t {op} {value}"] += _same_matches(on_all, everything, name, (S.Filter("v", op, value),))
        for key, op, value in NESTED_FILTERS:
            seen[f"{key} {op}"] += _same_matches(on_all, everything, name, (S.Filter(key, op, value),))
        for op, value in CHANNEL_FILTERS:
            seen[f"c {op} {value}"] += _same_matches(on_all, everything, name, (S.Filter("channel", op, value),))
        _same_matches(
            on_all,
            everything,
            name,
            (S.Filter("channel", "ne", "web"), S.Filter("v", "is_null", False), S.Filter("v", "in", ("x", "1", "abc"))),
        )
    assert seen["Thing"] == 2 * len(DOCS + TEXT_DOCS) and seen["Page Viewed"] == seen["Identified"] > 0
    assert seen["Other"] > 0 and seen["Screen Viewed"] > 0
    # each filter chose something, or the comparison would prove little
    assert all(count > 0 for count in seen.values()), [k for k, c in seen.items() if c == 0]


def test_json_text_is_duckdbs():
    """Through `eq` on the text: each property is the very text json_extract_string gives."""
    con = duckdb.connect()
    keys = ["v", "n", "n.w", "n.w[1]", "n.w[3]", "w", "w.v", "n.w[#-2]"]
    for doc in DOCS + TEXT_DOCS:
        for key in keys:
            text = con.execute("SELECT json_extract_string(?, ?)", [doc, f"$.{key}"]).fetchone()[0]
            event = {"type": "track", "event": "E", "channel": None, "properties": doc}
            assert event_matches("E", (S.Filter(key, "is_null", True),), event) == (text is None), (doc, key)
            if text is not None:
                assert event_matches("E", (S.Filter(key, "eq", text),), event), (doc, key, text)
                assert not event_matches("E", (S.Filter(key, "eq", text + " "),), event), (doc, key)
    con.close()


# --- hand-made profiles: NULLs, NaN, empty lists, boundaries ---------------------------------------


def _profiles() -> pa.Table:
    at = NOW - timedelta(days=30)
    nan, inf = float("nan"), float("inf")
    rows = [
        # person, n, x, s, b, ts, tags
        ("p0", 1, 0.5, "a", True, at, ["a", "b"]),
        ("p1", None, None, None, None, None, None),
        ("p2", 0, nan, "", False, at - timedelta(microseconds=1), []),
        ("p3", 2, -0.0, "é", None, at + timedelta(microseconds=1), ["b", None]),
        ("p4", -5, inf, "b", True, NOW, [None]),
        ("p5", 3, 1e300, "A", False, NOW - timedelta(days=400), ["a"]),
        ("p6", 1, 0.0, "ab", True, datetime(2026, 10, 1, tzinfo=UTC), ["c"]),
        ("p7", 2, -inf, "z", False, datetime(2026, 9, 30, 22, 0, tzinfo=UTC), ["a", "a"]),
    ]
    names = ["person_id", "n", "x", "s", "b", "ts", "tags"]
    types = [
        pa.string(),
        pa.int64(),
        pa.float64(),
        pa.string(),
        pa.bool_(),
        pa.timestamp("us", "UTC"),
        pa.list_(pa.string()),
    ]
    return pa.table([pa.array([r[i] for r in rows], t) for i, t in enumerate(types)], names=names)


PROFILE_SEGMENTS: dict[str, Any] = {
    **{
        f"n_{op}": {"trait": "n", op: v}
        for op, v in [
            ("eq", 1),
            ("ne", 1),
            ("gt", 1),
            ("gte", 1),
            ("lt", 1),
            ("lte", 1),
            ("in", [1, 3]),
            ("not_in", [1]),
            ("between", [0, 2]),
            ("gt", 1.5),
            ("is_null", True),
            ("is_null", False),
        ]
    },
    **{
        f"x_{op}_{i}": {"trait": "x", op: v}
        for i, (op, v) in enumerate(
            [
                ("gt", 0),
                ("lt", 1e301),
                ("eq", 0),
                ("ne", 0),
                ("between", [-1, 1]),
                ("in", [0.5, 0]),
                ("not_in", [0.5]),
                ("gte", 1e300),
                ("is_null", True),
                ("lte", -1e308),
            ]
        )
    },
    **{
        f"s_{op}_{i}": {"trait": "s", op: v}
        for i, (op, v) in enumerate(
            [
                ("eq", "a"),
                ("ne", "a"),
                ("gt", "a"),
                ("lt", "b"),
                ("in", ["a", "é"]),
                ("not_in", ["a"]),
                ("between", ["a", "z"]),
                ("is_null", True),
                ("eq", ""),
                ("gte", "B"),
            ]
        )
    },
    **{
        f"b_{op}_{i}": {"trait": "b", op: v}
        for i, (op, v) in enumerate(
            [
                ("eq", True),
                ("ne", True),
                ("eq", False),
                ("gt", False),
                ("in", [False]),
                ("not_in", [False]),
                ("is_null", False),
            ]
        )
    },
    **{
        f"ts_{op}_{i}": {"trait": "ts", op: v}
        for i, (op, v) in enumerate(
            [
                ("before_days_ago", 30),
                ("within_days", 30),
                ("before_days_ago", 0),
                ("within_days", 0),
                ("within_days", 29.999999),
                ("gt", "2026-10-01"),
                ("lte", "2026-10-01T00:00:00+02:00"),
                ("eq", "2026-10-01T00:00:00"),
                ("between", ["2026-09-01", "2026-10-01"]),
                ("ne", "2026-10-01"),
                ("in", ["2026-10-01", "2026-09-30T22:00:00Z"]),
                ("is_null", True),
            ]
        )
    },
    **{
        f"tags_{op}_{i}": {"trait": "tags", op: v}
        for i, (op, v) in enumerate([("contains", "a"), ("contains", "c"), ("is_null", True), ("is_null", False)])
    },
    **{
        f"not_{i}": {"not": c}
        for i, c in enumerate(
            [
                {"trait": "n", "ne": 1},
                {"trait": "x", "gt": 0},
                {"trait": "s", "not_in": ["a"]},
                {"trait": "b", "eq": True},
                {"trait": "ts", "within_days": 30},
                {"trait": "tags", "contains": "a"},
                {"trait": "x", "between": [-1, 1]},
            ]
        )
    },
    "tree": {
        "any": [
            {"all": [{"in_segment": "n_ne"}, {"not": {"in_segment": "s_eq_0"}}]},
            {"bucket": {"salt": "s", "from": 0, "to": 30}},
        ]
    },
}


def test_condition_holds_equals_the_compiler_on_hand_made_profiles():
    profiles = _profiles()
    segments = _segments(PROFILE_SEGMENTS)
    compiler = _compiler_over([], profiles, segments)
    rows = profiles.to_pylist()
    nontrivial = 0
    for sid in segments:
        expected = member_ids(compiler, sid)
        assert _python_members(segments, sid, rows, {}, NOW) == expected, (sid, expected)
        nontrivial += 0 < len(expected) < len(rows)
    assert nontrivial >= len(segments) - 3
    # the boundaries: within_days includes the moment exactly N days ago, before_days_ago excludes it
    assert member_ids(compiler, "ts_within_days_1") == ["p0", "p3", "p4"]
    assert member_ids(compiler, "ts_before_days_ago_0") == ["p2", "p5", "p6", "p7"]
    assert member_ids(compiler, "x_gt_0") == ["p0", "p2", "p4", "p5"]  # NaN is above every number
    assert member_ids(compiler, "not_0") == ["p0", "p1", "p6"]  # not (n != 1) takes the NULL in


def test_behaviour_counts_against_count_and_operator():
    b = S.Behaviour("Order Completed", negated=False, count_op="at_most", count=2)
    none = S.Behaviour("Order Completed", negated=True, count_op="exactly", count=0)
    tree = S.All((b, S.Not(none)))
    assert condition_holds(b, {}, {}, NOW, {}, "p") and condition_holds(none, {}, {}, NOW, {}, "p")
    assert not condition_holds(tree, {}, {}, NOW, {}, "p")
    assert condition_holds(tree, {}, {b: 2, none: 2}, NOW, {}, "p")
    assert not condition_holds(tree, {}, {b: 3, none: 3}, NOW, {}, "p")


# --- inputs the batch path never sees ---------------------------------------------------------------


def _event(properties: Any, channel: str | None = "web") -> dict[str, Any]:
    return {"type": "track", "event": "E", "channel": channel, "properties": properties}


def test_properties_that_are_not_an_object_hold_no_property():
    for properties in (None, "[1, 2]", '"v"', "3", "null", "{not json", "", {}, []):
        event = _event(properties)
        assert event_matches("E", (S.Filter("v", "is_null", True),), event), properties
        assert not event_matches("E", (S.Filter("v", "ne", "x"),), event), properties
        assert not event_matches("E", (S.Filter("v", "not_in", (1,)),), event), properties
        assert event_matches("E", (S.Filter("channel", "eq", "web"),), event)  # the channel is not a property
    assert not event_matches("E", (S.Filter("channel", "is_null", True),), _event({"channel": None}))
    assert event_matches("E", (S.Filter("channel", "is_null", True),), _event({"channel": "web"}, channel=None))
    assert not event_matches("F", (), _event({})) and not event_matches("Page Viewed", (), _event({}))
    assert event_matches("Page Viewed", (), {"type": "page", "event": "Home"})  # missing keys are NULL


def test_a_mapping_reads_as_the_event_log_stores_it():
    props = {"v": 1e16, "w": -0.0, "t": True, "o": {"a": [1, None]}, "d": datetime(2026, 1, 2, tzinfo=UTC)}
    as_text = json.dumps(props, default=lambda d: d.isoformat().replace("+00:00", "Z"))
    for key, text in (
        ("v", "10000000000000000.0"),
        ("w", "-0.0"),
        ("t", "true"),
        ("o", '{"a":[1,null]}'),
        ("d", "2026-01-02T00:00:00+00:00"),
    ):
        assert event_matches("E", (S.Filter(key, "eq", text),), _event(props)), key
        assert event_matches("E", (S.Filter(key, "eq", text),), _event(as_text)) == (key != "d"), key


def test_a_numeric_filter_on_a_text_that_is_no_number_is_false():
    """DuckDB's CAST raises here (the batch query fails); Spark reads NULL, and so do we."""
    for value in ("abc", "", "1,5", "١", "0x10", True, [1], {"a": 1}):
        for op, number in (("eq", 1), ("ne", 1), ("gt", 0), ("not_in", (1, 2)), ("lte", float("inf"))):
            assert not event_matches("E", (S.Filter("v", op, number),), _event({"v": value})), (value, op)
    assert event_matches("E", (S.Filter("v", "eq", 1000),), _event({"v": " 1_000 "}))  # DuckDB reads it so


def test_missing_traits_unknown_segments_and_bad_paths_are_errors():
    with pytest.raises(S.SegmentError, match="unknown trait 'orders'"):
        condition_holds(S.Not(S.Trait("orders", "gt", 1)), {"person_id": "p"}, {}, NOW, {}, "p")
    with pytest.raises(S.SegmentError, match="unknown segment 'nope'"):
        condition_holds(S.InSegment("nope"), {}, {}, NOW, {}, "p")
    loop = _segments({"a": {"in_segment": "b"}, "b": {"in_segment": "a"}})
    with pytest.raises(S.SegmentError, match="cycle"):
        condition_holds(S.InSegment("a"), {}, {}, NOW, loop, "p")
    with pytest.raises(S.SegmentError, match="contains needs a list"):
        condition_holds(S.Trait("s", "contains", "a"), {"s": "abc"}, {}, NOW, {}, "p")
    with pytest.raises(S.SegmentError, match="expected a value of the trait's type"):
        condition_holds(S.Trait("n", "eq", "many"), {"n": 3}, {}, NOW, {}, "p")
    for key in ("", "a.", "a[*]", "*", "a[ 1]", "a..b"):
        with pytest.raises(S.SegmentError):
            event_matches("E", (S.Filter(key, "eq", "x"),), _event({"a": [1]}))
    # a NULL trait satisfies no comparison, so there is nothing to check its type against
    assert not condition_holds(S.Trait("n", "eq", "many"), {"n": None}, {}, NOW, {}, "p")
    # a naive `now` or timestamp is UTC, as for the compiler
    moment = {"ts": NOW - timedelta(days=1)}
    assert condition_holds(S.Trait("ts", "within_days", 1), moment, {}, NOW.replace(tzinfo=None), {}, "p")
    naive = {"ts": datetime(2026, 10, 1, 0, 30)}
    assert condition_holds(S.Trait("ts", "gt", "2026-10-01T02:00:00+02:00"), naive, {}, NOW, {}, "p")
    assert not condition_holds(S.Trait("ts", "before_days_ago", 30.5), naive, {}, NOW, {}, "p")
