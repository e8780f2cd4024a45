"""Store figures (measure/service/store_figures.py): a hand-made world whose every figure is worked out by hand,
and the shared demo world recomputed by hand-written SQL over the Parquet files of the event log (DuckDB reads
them directly; nothing of omniweave's code is used). `expected_store_figures` is also what the dashboard's
Stores page is checked against (tests/shells/web/test_stores.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from omniweave.activate.service.coupons import create_pool, issue
from omniweave.errors import InputError
from omniweave.events import spec
from omniweave.measure.service.store_figures import (
    ONLINE_TOUCH_CHANNELS,
    store_activity,
    store_directory,
    store_figures,
)
from omniweave.profiles.service.build import write_identities
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.storage.eventlog import events_to_table
from tests.segment_events import segment_event

SEPTEMBER = "2026-09-01"


def _world(autumn_code: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []

    def add(
        at: str,
        kind: str,
        name: str | None = None,
        user: str | None = None,
        anon: str | None = None,
        campaign: str | None = None,
        **properties: Any,
    ) -> None:
        track = kind == "track"
        events.append(
            segment_event(
                len(events),
                f"2026-09-{at}Z",
                received_at=datetime(2026, 10, 1, tzinfo=UTC),
                type=kind,
                event=name if track else None,
                name=None if track else name,
                user=user,
                anon=anon,
                context={"campaign": {"name": campaign}} if campaign else None,
                **properties,
            )
        )

    order = spec.ORDER_COMPLETED
    # P1: a web page first, then buys at S1 with a personal code the coupons importer also reports
    add("01T10:00:00", "page", "Home", user="u1")
    add(
        "05T12:00:00",
        "track",
        order,
        user="u1",
        channel="store",
        store_id="S1",
        order_id="O1",
        revenue=100.0,
        coupon="CODE-1",
    )
    add(
        "05T12:00:00",
        "track",
        spec.COUPON_APPLIED,
        anon="offline:coupons:1",
        campaign="spring",
        channel="coupon",
        store_id="S1",
        order_id="O1",
        coupon_id="code1",
        redeemed_channel="store",
    )
    # P2: in the store first, an e-mail click later, then buys at S1: touched online before, not first
    add("01T09:00:00", "track", spec.STORE_VISITED, user="u2", channel="store", store_id="S1")
    add("02T09:00:00", "track", spec.EMAIL_LINK_CLICKED, user="u2", channel="email")
    add("06T12:00:00", "track", order, user="u2", channel="store", store_id="S1", order_id="O2", revenue=50.0)
    # P3: buys at S2 first, browses after; a second purchase at S2 comes after an online touch
    add("03T12:00:00", "track", order, user="u3", channel="store", store_id="S2", order_id="O3", revenue=30.0)
    add("04T12:00:00", "screen", "Home", user="u3")
    add("10T12:00:00", "track", order, user="u3", channel="store", store_id="S2", order_id="O4", revenue=20.0)
    # P4: an e-mail opened and a store visit at the same instant (online wins), then buys at S1
    add("01T12:00:00", "track", spec.STORE_VISITED, user="u4", channel="store", store_id="S1")
    add("01T12:00:00", "track", spec.EMAIL_OPENED, user="u4", channel="email")
    add("07T12:00:00", "track", order, user="u4", channel="store", store_id="S1", order_id="O5", revenue=10.0)
    # P5: only deliveries and a segment change before (written about them, no touch); buys at S2 with an issued code
    add("01T08:00:00", "track", spec.EMAIL_DELIVERED, user="u5", channel="email")
    add("01T08:30:00", "track", spec.SEGMENT_ENTERED, user="u5", channel="omniweave")
    add(
        "08T12:00:00",
        "track",
        order,
        user="u5",
        channel="store",
        store_id="S2",
        order_id="O6",
        revenue=40.0,
        coupons=[autumn_code],
    )
    # a receipt nobody is known by, at S2
    add(
        "09T12:00:00",
        "track",
        order,
        anon="offline:till:9",
        channel="store",
        store_id="S2",
        order_id="O7",
        revenue=25.0,
    )
    # P6: two purchases at S1 with the catalogue's static code; an online order is no store's sale
    add(
        "02T15:00:00",
        "track",
        order,
        user="u6",
        channel="store",
        store_id="S1",
        order_id="O8",
        revenue=15.0,
        coupon="mail20",
    )
    add(
        "03T15:00:00",
        "track",
        order,
        user="u6",
        channel="store",
        store_id="S1",
        order_id="O9",
        revenue=5.0,
        coupon="MAIL20",
    )
    add("04T15:00:00", "track", order, user="u6", channel="web", order_id="O10", revenue=70.0, coupon="MAIL20")
    # an in-store evening at S1: an RSVP from an invitation of the campaign "evening", and the attendance
    add(
        "11T10:00:00",
        "track",
        spec.EVENT_RSVP,
        user="u2",
        channel="email",
        campaign="evening",
        store_id="S1",
        event_id="EV1",
        event_name="Evening",
        rsvp="yes",
    )
    add(
        "20T18:00:00",
        "track",
        spec.EVENT_ATTENDED,
        user="u2",
        channel="store",
        store_id="S1",
        event_id="EV1",
        event_name="Evening",
    )
    add(
        "21T18:00:00",
        "track",
        spec.EVENT_ATTENDED,
        user="u4",
        channel="store",
        store_id="S1",
        event_id="EV1",
        event_name="Evening",
    )
    return events


@pytest.fixture
def world(runtime: Runtime) -> Runtime:
    create_pool(runtime, "catalogue", kind="static", static_code="MAIL20", campaign="catalogue")
    create_pool(runtime, "autumn", campaign="autumn")
    code = issue(runtime, "autumn", person_id="P5", send_key="k5").display
    runtime.log.append("events", events_to_table(_world(code), "test"), "world")
    write_identities(
        runtime,
        [("user_id", f"u{n}", f"P{n}") for n in range(1, 7)] + [("anonymous_id", "offline:coupons:1", "P1")],
    )
    return runtime


def test_every_figure_of_a_hand_made_world(world: Runtime) -> None:
    rows = {r["store_id"]: r for r in store_figures(world, period="month").rows}
    assert set(rows) == {"S1", "S2"}
    s1, s2 = rows["S1"], rows["S2"]
    assert s1["period"] == SEPTEMBER and s1["orders"] == 5 and s1["revenue"] == 180.0 == s1["known_revenue"]
    assert s1["online_first_revenue"] == 110.0  # P1 (a page first) and P4 (an open at the instant of a visit)
    assert s1["online_before_revenue"] == 160.0  # and P2 (an e-mail click after a visit); P6 has no online touch
    assert s1["online_first_share"] == pytest.approx(110 / 180 * 100)
    assert s1["online_before_share"] == pytest.approx(160 / 180 * 100)
    assert s1["identified_share"] == 100.0
    assert s1["coupon_redemptions"] == 3  # CODE1 once (order and Coupon Applied), MAIL20 on two orders
    assert s2["orders"] == 4 and s2["revenue"] == 115.0 and s2["known_revenue"] == 90.0
    assert s2["online_first_revenue"] == 0.0  # P3's first touch was the purchase; P5 was only written about
    assert s2["online_before_revenue"] == 20.0  # P3's second purchase came after the screen view
    assert s2["identified_share"] == pytest.approx(90 / 115 * 100)
    assert s2["online_before_share"] == pytest.approx(20 / 90 * 100)
    assert s2["coupon_redemptions"] == 1


def test_periods_split_what_the_month_holds(world: Runtime) -> None:
    weeks = store_figures(world, period="week").rows
    month = {r["store_id"]: r for r in store_figures(world, period="month").rows}
    assert {r["period"] for r in weeks} == {"2026-08-31", "2026-09-07"}  # Monday-first weeks
    for store, whole in month.items():
        mine = [r for r in weeks if r["store_id"] == store]
        for name in ("orders", "revenue", "online_first_revenue", "online_before_revenue", "coupon_redemptions"):
            assert sum(r[name] for r in mine) == pytest.approx(whole[name]), (store, name)
    days = store_figures(world, period="day", since=date(2026, 9, 5), until=date(2026, 9, 5)).rows
    assert [(r["store_id"], r["revenue"], r["coupon_redemptions"]) for r in days] == [("S1", 100.0, 1)]


def test_local_campaigns_and_store_events(world: Runtime) -> None:
    s1 = store_activity(world, "S1")
    campaigns = {c["campaign"]: c for c in s1.campaigns}
    # spring: named by the Coupon Applied; catalogue: the static pool's code; evening: the RSVP naming S1
    assert set(campaigns) == {"spring", "catalogue", "evening"}
    assert campaigns["catalogue"] == {
        "campaign": "catalogue",
        "coupon_redemptions": 2,
        "redeemed_order_revenue": 20.0,
        "other_events": 0,
        "persons": 1,
        "first_day": "2026-09-02",
        "last_day": "2026-09-03",
    }
    assert campaigns["spring"]["coupon_redemptions"] == 1 and campaigns["spring"]["redeemed_order_revenue"] == 100.0
    assert campaigns["spring"]["other_events"] == 0 and campaigns["spring"]["persons"] == 1
    assert campaigns["evening"]["other_events"] == 1 and campaigns["evening"]["coupon_redemptions"] == 0
    assert [c["campaign"] for c in s1.campaigns] == ["catalogue", "spring", "evening"]  # most redemptions first
    assert s1.store_events == (
        {
            "event_id": "EV1",
            "event_name": "Evening",
            "rsvps": 1,
            "attended": 2,
            "first_day": "2026-09-11",
            "last_day": "2026-09-21",
        },
    )
    s2 = store_activity(world, "S2")  # the issued code's campaign comes from the coupon store
    assert [(c["campaign"], c["coupon_redemptions"], c["redeemed_order_revenue"]) for c in s2.campaigns] == [
        ("autumn", 1, 40.0)
    ]
    assert store_activity(world, "S9").campaigns == ()
    with pytest.raises(InputError) as bad:
        store_activity(world, " ")
    assert bad.value.field == "store"


def test_bad_period_and_an_empty_home(runtime: Runtime) -> None:
    with pytest.raises(InputError) as bad:
        store_figures(runtime, period="year")
    assert bad.value.field == "period" and "day, week, month" in str(bad.value)
    assert store_figures(runtime).rows == () and store_directory(runtime) == {}


# --- the demo world, by hand-written SQL -------------------------------------------------------------------


def _list(values: Any) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in sorted(values))


def expected_store_figures(warehouse: Path, period: str) -> dict[tuple[str, str], dict[str, float]]:
    """{(period start, store): orders, revenue, known_revenue, online_first_revenue, online_before_revenue,
    coupon_redemptions} from the Parquet files of `warehouse`, by SQL written from the definitions
    (store_figures' docstring): a sale is online-first when an online touch of its buyer came before it and no
    touch of theirs came before that one; touched online before when any online touch came before it."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")

    def files(name: str) -> str:
        return f"read_parquet('{warehouse / name}/**/*.parquet', union_by_name = true, hive_partitioning = false)"

    trunc = {"day": "day", "week": "week", "month": "month"}[period]  # DuckDB's weeks start on Monday (ISO)
    con.execute(f"""
        CREATE TEMP TABLE e AS
        WITH ids AS (SELECT kind, value, person_id FROM {files("identities")})
        SELECT ev.message_id, ev.event, ev.type, ev.channel, ev.timestamp, ev.properties, ev.campaign_name,
               coalesce(u.person_id, a.person_id, ev.user_id,
                        CASE WHEN ev.anonymous_id NOT LIKE 'offline:%' THEN ev.anonymous_id END) AS who,
               CAST(date_trunc('{trunc}', CAST(ev.timestamp AS DATE)) AS DATE) AS p,
               ev.type IN ('track', 'page', 'screen')
                 AND coalesce(ev.event, '') NOT IN ({_list(spec.PLATFORM_EVENTS)})
                 AND coalesce(ev.channel, '') <> 'omniweave' AS act
        FROM {files("events")} ev
        LEFT JOIN ids u ON u.kind = 'user_id' AND u.value = ev.user_id
        LEFT JOIN ids a ON a.kind = 'anonymous_id' AND a.value = ev.anonymous_id
    """)
    con.execute(f"""
        CREATE TEMP TABLE touch AS
        SELECT who, timestamp AS at, lower(channel) IN ({_list(ONLINE_TOUCH_CHANNELS)}) AS online
        FROM e WHERE act AND who IS NOT NULL
    """)
    con.execute("""
        CREATE TEMP TABLE sale AS
        SELECT message_id, who, timestamp AS at, p, json_extract_string(properties, '$.store_id') AS store_id,
               coalesce(TRY_CAST(json_extract_string(properties, '$.revenue') AS DOUBLE),
                        TRY_CAST(json_extract_string(properties, '$.total') AS DOUBLE), 0) AS value
        FROM e WHERE event = 'Order Completed' AND channel = 'store'
          AND coalesce(json_extract_string(properties, '$.store_id'), '') <> ''
    """)
    figures: dict[tuple[str, str], dict[str, float]] = {}
    for p, store, orders, revenue, known, first, before in con.execute("""
        SELECT p, store_id, count(*), sum(value), sum(value) FILTER (WHERE who IS NOT NULL),
               sum(value) FILTER (WHERE EXISTS (
                   SELECT 1 FROM touch o WHERE o.who = s.who AND o.online AND o.at < s.at
                     AND NOT EXISTS (SELECT 1 FROM touch t WHERE t.who = o.who AND t.at < o.at))),
               sum(value) FILTER (WHERE EXISTS (
                   SELECT 1 FROM touch o WHERE o.who = s.who AND o.online AND o.at < s.at))
        FROM sale s GROUP BY ALL
    """).fetchall():
        figures[(p.isoformat(), store)] = {
            "orders": orders,
            "revenue": round(revenue, 2),
            "known_revenue": round(known or 0.0, 2),
            "online_first_revenue": round(first or 0.0, 2),
            "online_before_revenue": round(before or 0.0, 2),
            "coupon_redemptions": 0,
        }
    # a redemption: one code (any of the coupon properties, upper case, without separators) on one order at a store
    for p, store, count in con.execute(r"""
        WITH used AS (
            SELECT message_id, timestamp, p, json_extract_string(properties, '$.store_id') AS store_id,
                   coalesce(json_extract_string(properties, '$.order_id'), message_id) AS order_key, code
            FROM e, unnest([json_extract_string(properties, '$.coupon'),
                            json_extract_string(properties, '$.coupon_id'),
                            json_extract_string(properties, '$.coupon_code'),
                            json_extract_string(properties, '$.coupon_name')]
                           || coalesce(CAST(json_extract(properties, '$.coupons') AS VARCHAR[]), [])) AS t(code)
            WHERE (event = 'Coupon Applied' OR (event = 'Order Completed' AND channel = 'store'))
              AND code IS NOT NULL
        ), one AS (
            SELECT store_id, order_key, upper(regexp_replace(trim(code, '"'), '[\s\-._]', '', 'g')) AS code,
                   arg_min(p, (timestamp, message_id)) AS p
            FROM used WHERE coalesce(store_id, '') <> '' GROUP BY ALL
        )
        SELECT p, store_id, count(*) FROM one WHERE code <> '' GROUP BY ALL
    """).fetchall():
        figures.setdefault(
            (p.isoformat(), store),
            {k: 0.0 for k in ("orders", "revenue", "known_revenue", "online_first_revenue", "online_before_revenue")},
        )["coupon_redemptions"] = count
    return figures


def test_the_demo_world_equals_hand_written_sql(demo_home: Path) -> None:
    runtime = Runtime(Settings(home=str(demo_home)))
    try:
        got = {(r["period"], r["store_id"]): r for r in store_figures(runtime, period="month").rows}
        directory = store_directory(runtime)
        activity = store_activity(runtime, "S003")
    finally:
        runtime.close()
    want = expected_store_figures(demo_home / "warehouse", "month")
    assert set(got) == set(want) and len(want) == 24  # 12 stores, September and October
    for key, expected in want.items():
        for name, value in expected.items():
            assert got[key][name] == pytest.approx(value, abs=0.005), (key, name)
    # the demo's shares are neither nothing nor everything, and some buyers were online before but not first
    assert 0 < sum(r["online_first_revenue"] for r in got.values()) < sum(r["revenue"] for r in got.values())
    assert any(r["online_before_revenue"] > r["online_first_revenue"] for r in got.values())
    assert sum(r["coupon_redemptions"] for r in got.values()) == 174  # the coupons importer's in-store uses
    assert len(directory) == 12 and directory["S001"]["floor_area_sqft"] > 0
    redeemed = sum(c["coupon_redemptions"] for c in activity.campaigns)
    assert redeemed == sum(r["coupon_redemptions"] for (_, store), r in got.items() if store == "S003")
    assert {e["event_id"] for e in activity.store_events} == {"EV03"}
