"""Profiles: a small hand-made world with known answers, custom traits, and DuckDB == Spark."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from omniweave.errors import InputError
from omniweave.events import spec
from omniweave.events.normalize import context_columns, property_columns
from omniweave.profiles.service.build import build_profiles, profiles_table, write_identities
from omniweave.profiles.traits import parse_trait_specs
from omniweave.runtime import Runtime
from omniweave.settings import Settings, load_settings
from omniweave.storage.eventlog import (
    FLAT_COLUMNS,
    PROPERTY_COLUMNS,
    events_to_table,
    with_flat_columns,
)
from omniweave.storage.query import run_query
from tests.conftest import on_engine
from tests.segment_events import segment_event

NOW = datetime(2026, 6, 30, tzinfo=UTC)
NEW_YORK = {
    "timezone": "America/New_York",
    "library": {"name": "analytics.js", "version": "1"},
    "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
}
PHONE_APP = {"library": {"name": "analytics-android", "version": "4"}, "device": {"type": "android"}}

IDENTITIES = [
    ("user_id", "u1", "P1"),
    ("anonymous_id", "a1", "P1"),
    ("anonymous_id", "offline:till:T1", "P1"),
    ("email", "alice@example.com", "P1"),
    ("loyalty_card", "L1", "P1"),
    ("user_id", "u2", "P2"),
    ("anonymous_id", "a2", "P2"),
    ("email", "bob@example.com", "P2"),
    ("phone", "+447700900001", "P2"),
    ("loyalty_card", "L3", "P3"),
    ("anonymous_id", "offline:till:T2", "P3"),
    ("anonymous_id", "offline:till:T3", "P3"),
    ("anonymous_id", "offline:till:T4", "P3"),
    ("anonymous_id", "offline:till:T5", "P3"),
    ("anonymous_id", "a4", "P4"),
]

TRAITS: list[dict[str, Any]] = [
    {"name": "store_orders_30d", "agg": "count", "event": spec.ORDER_COMPLETED, "channel": "store", "window_days": 30},
    {"name": "revenue_60d", "agg": "sum", "property": "revenue", "event": spec.ORDER_COMPLETED, "window_days": 60},
    {"name": "last_viewed_category", "agg": "last", "property": "category", "event": spec.PRODUCT_VIEWED},
    {"name": "first_order_channel", "agg": "first", "column": "channel", "event": spec.ORDER_COMPLETED},
    {"name": "order_channels", "agg": "distinct", "column": "channel", "event": [spec.ORDER_COMPLETED]},
    {"name": "discount_clicks", "agg": "count", "event": spec.MESSAGE_LINK_CLICKED, "where": {"promotion": "discount"}},
    {"name": "biggest_order", "agg": "max", "property": "revenue", "event": spec.ORDER_COMPLETED},
    {"name": "smallest_order", "agg": "min", "property": "revenue", "event": spec.ORDER_COMPLETED},
    {"name": "average_order", "agg": "avg", "property": "revenue", "event": spec.ORDER_COMPLETED},
    {
        "name": "till_receipts",
        "agg": "distinct",
        "column": "anonymous_id",
        "event": spec.ORDER_COMPLETED,
        "channel": "store",
    },
]


def _consent(**purposes: bool) -> dict[str, Any]:
    """A browser context carrying Segment's consent object (what a consent manager adds to every event)."""
    return {**NEW_YORK, "consent": {"categoryPreferences": purposes}}


def _event(n: int, at: str, **fields: Any) -> dict[str, Any]:
    # received on 30 June, or when it happened if later (the collector clamps a time more than 24 h past
    # its receipt to the receipt: an event after `now` is one that arrived after `now`)
    received = max(datetime(2026, 6, 30, tzinfo=UTC), datetime.fromisoformat(at))
    return segment_event(n, at, received_at=received, **fields)


def _order(
    n: int, at: str, revenue: float, channel: str, products: list[tuple[str, str, int]], **ids: Any
) -> dict[str, Any]:
    items = [{"product_id": p, "category": c, "quantity": q, "price": 1.0} for p, c, q in products]
    return _event(
        n, at, event=spec.ORDER_COMPLETED, revenue=revenue, channel=channel, products=items, order_id=f"o{n}", **ids
    )


def world_events() -> list[dict[str, Any]]:
    viewed = spec.PRODUCT_VIEWED
    events = [
        # Alice (P1): web in New York, one web order, one till receipt, consent changes
        _event(
            1,
            "2026-05-01T12:00:00Z",
            type="identify",
            user="u1",
            traits={"first_name": "Alice", "email": "alice@example.com", "email_opt_in": True, "sms_opt_in": False},
        ),
        _event(
            2,
            "2026-06-01T14:00:00Z",
            event=viewed,
            anon="a1",
            product_id="SKU-1",
            category="shoes",
            context=_consent(Advertising=True, Analytics=True, Marketing=True, Functional=True),
        ),
        _event(
            3, "2026-06-02T13:00:00Z", event=viewed, anon="a1", context=NEW_YORK, product_id="SKU-2", category="shoes"
        ),
        _order(
            4, "2026-06-02T14:00:00Z", 100.0, "web", [("SKU-2", "shoes", 1)], user="u1", anon="a1", context=NEW_YORK
        ),
        _event(
            5, "2026-06-03T02:30:00Z", event=viewed, user="u1", context=NEW_YORK, product_id="SKU-5", category="bags"
        ),
        _event(6, "2026-06-10T09:00:00Z", event=spec.UNSUBSCRIBED, user="u1"),
        # she withdraws advertising consent in the consent manager; marketing is not restated
        _event(
            10,
            "2026-06-15T09:00:00Z",
            event="Segment Consent Preference Updated",
            user="u1",
            context=_consent(Advertising=False, Analytics=True),
        ),
        _order(7, "2026-06-20T15:00:00Z", 50.0, "store", [("SKU-3", "bags", 2)], anon="offline:till:T1"),
        _event(
            8, "2026-06-25T14:00:00Z", event=viewed, user="u1", context=NEW_YORK, product_id="SKU-4", category="hats"
        ),
        # an event after `now` is not part of the profile
        _event(
            9, "2026-07-05T14:00:00Z", event=viewed, user="u1", context=NEW_YORK, product_id="SKU-9", category="hats"
        ),
    ]
    # Bob (P2): lots of e-mail volume, but he answers SMS; one app order long ago
    n = 20
    for i in range(12):
        events.append(_event(n, f"2026-06-{i + 1:02d}T08:00:00Z", event=spec.EMAIL_SENT, user="u2"))
        events.append(_event(n + 1, f"2026-06-{i + 1:02d}T08:00:01Z", event=spec.EMAIL_DELIVERED, user="u2"))
        n += 2
    events.append(_event(n, "2026-06-05T08:30:00Z", event=spec.EMAIL_OPENED, user="u2"))
    for i, campaign in enumerate(["c1", "c2", "c3"]):
        events.append(
            _event(
                n + 1 + i,
                f"2026-06-1{i}T08:00:00Z",
                event=spec.MESSAGE_SENT,
                user="u2",
                channel="sms",
                promotion="discount",
                campaign_id=campaign,
            )
        )
    for i, campaign in enumerate(["c1", "c2"]):
        events.append(
            _event(
                n + 4 + i,
                f"2026-06-1{i}T08:10:00Z",
                event=spec.MESSAGE_LINK_CLICKED,
                user="u2",
                channel="sms",
                promotion="discount",
                campaign_id=campaign,
            )
        )
    events.append(
        _event(
            n + 6,
            "2026-06-12T08:00:00Z",
            event=spec.PUSH_NOTIFICATION_RECEIVED,
            user="u2",
            promotion="coupon",
            campaign_id="p1",
        )
    )
    events.append(
        _order(
            n + 7, "2026-04-01T08:00:00Z", 30.0, "app", [("SKU-7", "toys", 1)], user="u2", anon="a2", context=PHONE_APP
        )
    )
    # a preference form saved as traits: marketing yes, advertising no (then said again, unchanged)
    events.append(
        _event(
            n + 8,
            "2026-06-20T08:00:00Z",
            type="identify",
            user="u2",
            traits={"marketing_consent": True, "advertising_consent": "no"},
        )
    )
    events.append(
        _event(n + 9, "2026-06-21T08:00:00Z", type="identify", user="u2", traits={"advertising_consent": False})
    )
    # Carol (P3): store only, four receipts (one outside the 30-day window)
    for i, (tx, at) in enumerate(
        [
            ("T2", "2026-05-01T10:00:00Z"),
            ("T3", "2026-06-10T10:00:00Z"),
            ("T4", "2026-06-20T10:00:00Z"),
            ("T5", "2026-06-28T10:00:00Z"),
        ]
    ):
        events.append(_order(100 + i, at, 20.0, "store", [("SKU-8", "food", 1)], anon=f"offline:till:{tx}"))
    # Dave (P4): one page view, nothing else
    # ... with a consent manager whose keys are lower case, American spelling
    events.append(
        _event(
            200,
            "2026-06-15T19:00:00Z",
            type="page",
            anon="a4",
            context=_consent(advertising=True, personalization=True),
        )
    )
    return events


def seed(runtime) -> None:
    runtime.log.append("events", events_to_table(world_events(), "test"), "world")
    write_identities(runtime, IDENTITIES)


def seed_half_old(runtime) -> None:
    """The same world, with every other event in a file written before the log kept `context_*` columns."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = events_to_table(world_events(), "test")
    odd = pc.equal(pc.bit_wise_and(pa.array(range(table.num_rows)), 1), 1)
    runtime.log.append("events", table.filter(pc.invert(odd)), "new")
    old = table.filter(odd).drop_columns(list(FLAT_COLUMNS))
    days = pc.cast(old.column("timestamp"), pa.date32())
    for day in pc.unique(days).to_pylist():
        folder = f"{runtime.log.dataset_path('events')}/date={day.isoformat()}"
        runtime.log.fs.makedirs(folder, exist_ok=True)
        with runtime.log.fs.open(f"{folder}/old.parquet", "wb") as fh:
            pq.write_table(old.filter(pc.equal(days, pa.scalar(day, pa.date32()))), fh)
    write_identities(runtime, IDENTITIES)


def profiles_by_person(runtime) -> dict[str, dict[str, Any]]:
    rows = runtime.warehouse().sql("select * from profiles").to_pylist()
    return {row["person_id"]: row for row in rows}


def test_profiles_of_a_small_world(runtime):
    seed(runtime)
    summary = build_profiles(runtime, now=NOW, traits=TRAITS)
    assert (summary.persons, summary.buyers) == (4, 3)
    p = profiles_by_person(runtime)
    alice, bob, carol, dave = p["P1"], p["P2"], p["P3"], p["P4"]

    # identifiers by kind
    assert alice["emails"] == ["alice@example.com"] and alice["loyalty_cards"] == ["L1"]
    assert alice["user_ids"] == ["u1"] and alice["anonymous_id_count"] == 2 and alice["phones"] == []
    assert alice["primary_email"] == "alice@example.com" and bob["primary_phone"] == "+447700900001"
    assert alice["first_name"] == "Alice"

    # first/last seen (events after `now` ignored), channels, last touch per channel
    assert alice["first_seen"] == datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert alice["last_seen"] == datetime(2026, 6, 25, 14, tzinfo=UTC)
    assert alice["channels"] == ["email", "other", "store", "web"]
    touch = {t["channel"]: t["last_at"] for t in alice["last_touch"]}
    assert touch["store"] == datetime(2026, 6, 20, 15, tzinfo=UTC) and touch["web"] == datetime(
        2026, 6, 25, 14, tzinfo=UTC
    )

    # revenue online vs store, orders, AOV
    assert (alice["online_revenue"], alice["store_revenue"], alice["total_revenue"]) == (100.0, 50.0, 150.0)
    assert (alice["orders"], alice["online_orders"], alice["store_orders"]) == (2, 1, 1)
    assert alice["average_order_value"] == 75.0
    assert (carol["online_revenue"], carol["store_revenue"], carol["orders"]) == (0.0, 80.0, 4)
    assert (dave["orders"], dave["total_revenue"], dave["average_order_value"]) == (0, 0.0, None)

    # RFM among the three buyers: cume_dist quintiles (Bob lowest everywhere)
    assert [bob["rfm_recency"], alice["rfm_recency"], carol["rfm_recency"]] == [2, 4, 5]
    assert [bob["rfm_frequency"], alice["rfm_frequency"], carol["rfm_frequency"]] == [2, 4, 5]
    assert [bob["rfm_monetary"], carol["rfm_monetary"], alice["rfm_monetary"]] == [2, 4, 5]
    assert alice["rfm_segment"] == "445" and dave["rfm_segment"] is None
    assert carol["recency_days"] == 1 and bob["recency_days"] == 89

    # preferred channel by engagement: Bob gets 24 e-mails but clicks SMS
    assert bob["preferred_channel"] == "sms"
    assert {e["channel"]: e["score"] for e in bob["engagement_by_channel"]} == {"email": 1, "sms": 6, "app": 5}
    assert alice["preferred_channel"] == "web"  # 3 visit days x 2 + 1 order x 5 vs store 5

    # best hour and weekday in the person's time zone (New York), UTC for Bob: the hour from what the person
    # started (visits, views, orders — not opens or clicks, whose time the sender chose), pulled toward
    # everyone's hour when the person has few such events (profiles/insights.py); Bob has fewer than 3: unknown
    assert (alice["timezone"], alice["best_hour"], alice["best_weekday"]) == ("America/New_York", 11, "Tuesday")
    assert (bob["timezone"], bob["best_hour"]) == ("UTC", None)
    assert alice["preferred_device"] == "desktop" and bob["preferred_device"] == "mobile"
    # engagement days 1, 2, 3, 20, 25 June: gaps 1, 1, 17, 5 -> median 3
    assert alice["contact_every_days"] == 3.0

    # products: favourites weigh purchases; viewed but not bought, most recent first
    assert alice["favourite_products"][:2] == ["SKU-3", "SKU-2"]
    assert alice["favourite_categories"] == ["bags", "shoes", "hats"]
    assert alice["viewed_not_bought"] == ["SKU-4", "SKU-5", "SKU-1"]
    assert bob["responsive_promotion"] == "discount" and carol["responsive_promotion"] is None

    # consent: the latest word per channel (an unsubscribe after the opt-in wins)
    assert (alice["consent_email"], alice["consent_sms"], alice["consent_push"]) == (False, False, None)
    # consent per purpose: the latest event stating each purpose wins; NULL = never stated (not a no)
    purposes = ("advertising", "analytics", "marketing", "personalisation")
    assert [alice[f"consent_purpose_{p}"] for p in purposes] == [False, True, True, None]
    assert [bob[f"consent_purpose_{p}"] for p in purposes] == [False, None, True, None]
    assert [carol[f"consent_purpose_{p}"] for p in purposes] == [None, None, None, None]
    assert [dave[f"consent_purpose_{p}"] for p in purposes] == [True, None, None, True]

    # custom traits: window, filter, first/last/distinct/max
    assert [alice["store_orders_30d"], carol["store_orders_30d"], dave["store_orders_30d"]] == [1, 3, 0]
    assert (alice["revenue_60d"], bob["revenue_60d"]) == (150.0, None)
    assert alice["last_viewed_category"] == "hats"
    assert (alice["first_order_channel"], alice["order_channels"]) == ("web", 2)
    assert bob["discount_clicks"] == 2 and alice["discount_clicks"] == 0
    assert carol["biggest_order"] == 20.0
    assert (alice["smallest_order"], alice["average_order"], dave["smallest_order"]) == (50.0, 75.0, None)
    assert (alice["till_receipts"], carol["till_receipts"], bob["till_receipts"]) == (1, 4, 0)


def test_profiles_table_is_queryable_and_rebuilt_in_place(runtime):
    seed(runtime)
    build_profiles(runtime, now=NOW, traits=[])
    build_profiles(runtime, now=NOW, traits=[])
    assert len(runtime.log.files("profiles")) == 1
    result = run_query(runtime.settings, "select person_id, total_revenue from profiles order by person_id")
    assert result.column("total_revenue").to_pylist() == [150.0, 30.0, 80.0, 0.0]


def test_building_without_identities_says_what_to_run(runtime):
    runtime.log.append("events", events_to_table(world_events(), "test"), "world")
    with pytest.raises(InputError, match="omniweave resolve"):
        build_profiles(runtime, now=NOW, traits=[])


def test_traits_come_from_the_config_file(runtime):
    seed(runtime)
    (runtime.settings.home_path / "omniweave.toml").write_text(
        '[profiles]\n[[profiles.traits]]\nname = "views"\nagg = "count"\nevent = "Product Viewed"\n'
    )
    runtime = Runtime(load_settings(env={}, home=runtime.settings.home))  # <home>/omniweave.toml, read once
    summary = build_profiles(runtime, now=NOW)
    assert summary.traits == ("views",)
    assert profiles_by_person(runtime)["P1"]["views"] == 4


@pytest.mark.parametrize(
    ("trait", "field", "words"),
    [
        ({"name": "x", "agg": "median", "property": "revenue"}, "agg", "agg must be one of"),
        ({"name": "Bad Name", "agg": "count"}, "name", "lower_snake_case"),
        ({"name": "rev", "agg": "sum"}, "property", "needs a property"),
        ({"name": "rev", "agg": "sum", "property": "revenue", "column": "channel"}, "property", "not both"),
        ({"name": "rev", "agg": "max", "column": "nope"}, "column", "unknown events column"),
        ({"name": "rev", "agg": "count", "window_days": -3}, "window_days", "positive number"),
        ({"name": "rev", "agg": "count", "window_days": "7"}, "window_days", "positive number"),
        ({"name": "rev", "agg": "count", "event": []}, "event", "non-empty list"),
        ({"name": "rev", "agg": "count", "where": {"a b": 1}}, "where", "where key"),
        ({"name": "rev", "agg": "count", "filter": "x"}, "filter", "unknown field"),
        ({"name": "orders", "agg": "count"}, "name", "already a profile column"),
    ],
)
def test_bad_trait_specs_name_the_trait_and_the_field(runtime, trait, field, words):
    with pytest.raises(InputError, match=words) as info:
        build_profiles(runtime, now=NOW, traits=[trait])
    assert info.value.field == field
    assert repr(trait["name"]) in str(info.value) and f"field {field!r}" in str(info.value)


def test_duplicate_trait_names_are_rejected():
    with pytest.raises(InputError, match="'twice'"):
        parse_trait_specs([{"name": "twice", "agg": "count"}, {"name": "twice", "agg": "count"}])


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("spark", marks=pytest.mark.spark)])
def test_average_order_value_is_rounded_half_up_to_the_cent_on_every_engine(runtime, request, engine):
    # 10.03 / 2 = 5.015 exactly, but 5.01499... as a double: rounding the double gives 5.01 on DuckDB, 5.02 on Spark
    orders = [
        _order(1, "2026-06-01T10:00:00Z", 5.00, "web", [("SKU-1", "toys", 1)], user="u9"),
        _order(2, "2026-06-02T10:00:00Z", 5.03, "web", [("SKU-2", "toys", 1)], user="u9"),
    ]
    runtime.log.append("events", events_to_table(orders, "test"), "erin")
    write_identities(runtime, [("user_id", "u9", "P9")])
    session = request.getfixturevalue("spark_session") if engine == "spark" else None
    warehouse = on_engine(runtime, engine, session).warehouse()
    row = profiles_table(warehouse.table("events"), warehouse.table("identities"), NOW, []).to_pylist()[0]
    assert (row["total_revenue"], row["orders"], row["average_order_value"]) == (10.03, 2, 5.02)


@pytest.mark.spark
def test_log_files_from_before_the_flat_context_columns_give_the_same_profiles(runtime, tmp_path):
    seed(runtime)
    build_profiles(runtime, now=NOW, traits=TRAITS)
    mixed = Runtime(Settings(home=str(tmp_path / "mixed")))
    seed_half_old(mixed)
    build_profiles(mixed, now=NOW, traits=TRAITS)
    assert profiles_by_person(mixed) == profiles_by_person(runtime)
    assert profiles_by_person(mixed)["P1"]["timezone"] == "America/New_York"
    mixed.close()


def test_context_columns_are_filled_on_the_way_into_the_log():
    table = events_to_table(world_events(), "test")
    dropped = table.drop_columns(list(FLAT_COLUMNS))
    assert with_flat_columns(dropped).select(list(FLAT_COLUMNS)) == table.select(list(FLAT_COLUMNS))
    assert context_columns({"timezone": "Asia/Tokyo", "device": {"type": "iOS"}}) == ("Asia/Tokyo", "mobile", "")
    assert context_columns({"userAgent": "Mozilla/5.0 (iPad; CPU OS 17_5)"})[1] == "tablet"
    assert context_columns({"userAgent": "Mozilla/5.0 (Windows NT 10.0)"})[1] == "desktop"
    assert context_columns({"consent": {"categoryPreferences": {"Advertising": True}}}) == (
        "",
        "",
        '{"Advertising":true}',
    )
    assert context_columns(None) == context_columns({"timezone": 3, "consent": []}) == ("", "", "")
    broken = pa.table({"context": ['{"timezone": "Europe/Paris"', None, '{"timezone":"UTC"}']})
    assert with_flat_columns(broken).column("context_timezone").to_pylist() == ["", "", "UTC"]


def test_property_columns_are_filled_on_the_way_into_the_log(runtime):
    from pathlib import Path

    import orjson

    from omniweave.collect.service import import_file

    assert property_columns(
        {
            "revenue": 12.5,
            "total": None,
            "products": [{"product_id": "A", "price": 2}],
            "promotion": "coupon",
            "campaign_id": 7,
            "category": True,
        }
    ) == ("12.5", "", '[{"product_id":"A","price":2}]', "coupon", "", "", "7", "", "true")
    assert property_columns(None) == property_columns([1]) == ("",) * len(PROPERTY_COLUMNS)
    # a document that is not JSON, a NULL, and a good one, read by DuckDB: the same texts as a parsed event gives
    broken = pa.table({"properties": ['{"revenue": 3', None, '{"revenue":3.50,"category":"shoes","total":1e2}']})
    filled = with_flat_columns(broken)
    assert [filled.column(c).to_pylist() for c in ("properties_revenue", "properties_category")] == [
        ["", "", "3.5"],
        ["", "", "shoes"],
    ]
    assert float(filled.column("properties_total")[2].as_py()) == 100.0
    # an import (SQL) fills them as the collector's events_to_table would from the same properties
    import_file(runtime, "till", Path(__file__).parents[1] / "data" / "importers" / "till.csv")
    events = runtime.warehouse().table("events").to_pyarrow()
    assert events.num_rows > 0
    for row in events.select(["properties", *PROPERTY_COLUMNS]).to_pylist():
        expected = property_columns(orjson.loads(row["properties"]))
        got = tuple(row[c] for c in PROPERTY_COLUMNS)
        assert [float(x) for x in got[:2] if x] == [float(x) for x in expected[:2] if x]
        assert got[2:] == expected[2:] or orjson.loads(got[2] or "null") == orjson.loads(expected[2] or "null")


def test_clv_columns_come_from_the_orders_as_a_transaction_file_would_give_them(runtime):
    """p_alive, expected_orders_12m and clv_12m equal profiles.clv fitted on the same orders read as a plain
    transaction list (several orders on one day count as one purchase day, lifetimes' convention)."""
    import numpy as np

    from omniweave.profiles import clv

    rng = np.random.default_rng(5)
    events, rows, n = [], [], 0
    for person in range(80):
        start = int(rng.integers(0, 200))
        for _ in range(int(rng.integers(1, 6))):
            day = min(start + int(rng.integers(0, 160)), 180)
            at = datetime(2026, 1, 1, tzinfo=UTC) + np.timedelta64(day, "D").astype(object)
            value = float(rng.integers(1000, 9000)) / 100
            n += 1
            events.append(
                _order(n, at.strftime("%Y-%m-%dT%H:%M:%SZ"), value, "web", [("SKU-1", "shoes", 1)], user=f"c{person}")
            )
            rows.append((f"P{person:03d}", at.date().isoformat(), value))
    runtime.log.append("events", events_to_table(events, "test"), "orders")
    write_identities(runtime, [("user_id", f"c{p}", f"P{p:03d}") for p in range(80)])
    now = datetime(2026, 7, 1, tzinfo=UTC)
    build_profiles(runtime, now=now, traits=[])
    profiles = profiles_by_person(runtime)

    people, dates, values = zip(*rows, strict=True)
    summary = clv.summarize_transactions(list(people), list(dates), list(values), observation_end="2026-07-01")
    purchases = clv.fit_bgnbd(summary.frequency, summary.recency, summary.T)
    repeat = summary.frequency > 0
    spend = clv.fit_gamma_gamma(summary.frequency[repeat], summary.monetary_value[repeat])
    p_alive = clv.probability_alive(purchases, summary.frequency, summary.recency, summary.T)
    expected = clv.expected_purchases(purchases, 365, summary.frequency, summary.recency, summary.T)
    value = clv.customer_lifetime_value(
        purchases, spend, summary.frequency, summary.recency, summary.T, summary.monetary_value, horizon=365
    )
    # this short history (half the buyers seen for 23 days, 42 days between purchases) does not identify
    # dropout: P(alive) is withheld with the reason (tests/profiles/test_clv_identification.py has one that does)
    check = clv.dropout_identification(purchases, summary.frequency, summary.recency, summary.T)
    assert not check.identified and p_alive.min() > 0.99
    for i, person in enumerate(summary.customer):
        row = profiles[str(person)]
        assert row["purchase_days"] == summary.frequency[i] + 1
        assert row["p_alive"] is None and row["p_alive_note"].startswith(check.reason or "?")
        assert row["expected_orders_12m"] == pytest.approx(expected[i], abs=1e-6)
        assert row["clv_12m"] == pytest.approx(value[i], rel=1e-5)  # both fits converge to ~1e-6


def test_clv_columns_stay_empty_when_too_few_buyers_repeat(runtime):
    seed(runtime)
    build_profiles(runtime, now=NOW, traits=[])
    rows = profiles_by_person(runtime)
    assert all(row["clv_12m"] is None and row["p_alive"] is None for row in rows.values())
    assert rows["P3"]["purchase_days"] == 4 and rows["P3"]["repeat_order_value"] == 20.0


def test_null_lists_become_empty_lists_without_touching_the_others():
    from omniweave.profiles.service.build import _null_lists_empty

    lists = pa.array([[1, 2], None, [], [3], None], pa.list_(pa.int64()))
    # Arrow allows a NULL list whose offsets span values: it must still come out as [], not as its values
    spanning = pa.ListArray.from_arrays(
        pa.array([0, 2, 3], pa.int32()), pa.array([1, 2, 3]), mask=pa.array([False, True])
    )
    structs = pa.array([[{"a": 1}], None], pa.list_(pa.struct([("a", pa.int64())])))
    table = pa.table(
        {
            "x": pa.chunked_array([lists, lists.slice(2)]),  # a sliced chunk: offsets not from 0
            "s": structs.take([0, 1, 1, 0, 1, 0, 1, 0]),
            "n": pa.array([1, None, 3, 4, 5, 6, 7, 8]),
        }
    )
    out = _null_lists_empty(table)
    assert out.schema == table.schema
    assert out.column("x").to_pylist() == [[1, 2], [], [], [3], [], [], [3], []]
    assert out.column("s").to_pylist() == [[{"a": 1}], [], [], [{"a": 1}], [], [{"a": 1}], [], [{"a": 1}]]
    assert out.column("n").to_pylist() == [1, None, 3, 4, 5, 6, 7, 8]  # only lists change
    assert _null_lists_empty(pa.table({"x": spanning})).column("x").to_pylist() == [[1, 2], []]
