"""KPIs from the event log: a hand-made world of two months whose every KPI is worked out by hand below."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pytest

from omniweave.errors import InputError
from omniweave.events import spec
from omniweave.measure.service.kpis import CATALOGUE, OMITTED, kpi_table
from omniweave.profiles.service.build import write_identities
from omniweave.storage.eventlog import SPEND_SCHEMA, events_to_table
from omniweave.storage.warehouse import write_dataset
from tests.segment_events import segment_event

FEB, MAR = date(2026, 2, 1), date(2026, 3, 1)
COSTS = {"A": 30.0, "B": 10.0}  # product C has no known cost
AREAS = {"S1": 1000.0, "S2": 500.0}


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def world() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []

    def add(
        at: str,
        kind: str,
        name: str | None = None,
        user: str | None = None,
        anon: str | None = None,
        campaign: str | None = None,
        traits: dict[str, Any] | None = None,
        **properties: Any,
    ) -> None:
        track = kind == "track"
        events.append(
            segment_event(
                len(events),
                at + "Z",
                received_at=_at("2026-04-01T00:00:00"),
                type=kind,
                event=name if track else None,
                name=None if track else name,
                user=user,
                anon=anon,
                context={"campaign": {"name": campaign}} if campaign else None,
                traits=traits,
                **properties,
            )
        )

    def product(pid: str, price: float, quantity: int) -> dict[str, Any]:
        return {"product_id": pid, "price": price, "quantity": quantity}

    # February. P1 browses anonymously (a1) in two sessions (a 40-minute gap), then buys online.
    add("2026-02-02T10:00:00", "page", "Home", anon="a1", campaign="spring")
    add("2026-02-02T10:10:00", "page", "Product", anon="a1", campaign="spring")
    add(
        "2026-02-02T10:05:00",
        "track",
        spec.VIDEO_PLAYBACK_STARTED,
        anon="a1",
        channel="web",
        campaign="spring",
        video_player="html5",
        content_asset_id="A",
    )
    add("2026-02-02T10:50:00", "page", "Product", anon="a1", campaign="spring")
    add(
        "2026-02-02T10:55:00",
        "track",
        spec.ORDER_COMPLETED,
        user="u1",
        campaign="spring",
        channel="web",
        revenue=100.0,
        products=[product("A", 40.0, 2), product("B", 20.0, 1)],
    )
    # P2 buys in store S1 and logs in to the Wi-Fi; two anonymous footfall visits (S1, S2)
    add(
        "2026-02-03T11:00:00",
        "track",
        spec.ORDER_COMPLETED,
        user="u2",
        channel="store",
        store_id="S1",
        revenue=50.0,
        products=[product("C", 50.0, 1)],
    )
    add(
        "2026-02-03T10:40:00",
        "track",
        spec.STORE_VISITED,
        anon="offline:store_visits:v1",
        channel="store",
        store_id="S1",
        visit_type="footfall",
        dwell_minutes=20,
    )
    add(
        "2026-02-03T10:41:00",
        "track",
        spec.STORE_VISITED,
        user="u2",
        channel="store",
        store_id="S1",
        visit_type="wifi",
        dwell_minutes=20,
    )
    add(
        "2026-02-04T15:00:00",
        "track",
        spec.STORE_VISITED,
        anon="offline:store_visits:v2",
        channel="store",
        store_id="S2",
        visit_type="footfall",
        dwell_minutes=40,
    )
    # P3 uses the app (one 20-minute session), shares a product, redeems an e-mailed coupon
    add("2026-02-10T12:00:00", "screen", "Home", user="u3")
    add("2026-02-10T12:20:00", "screen", "Product", user="u3")
    add("2026-02-10T12:30:00", "track", spec.PRODUCT_SHARED, user="u3", channel="other")
    add("2026-02-05T09:00:00", "track", spec.COUPON_ISSUED, user="u3", channel="email", campaign_name="coupons")
    add("2026-02-05T09:00:00", "track", spec.COUPON_ISSUED, user="u4", channel="sms", campaign_name="coupons")
    add(
        "2026-02-08T09:00:00",
        "track",
        spec.COUPON_APPLIED,
        user="u3",
        channel="coupon",
        issued_channel="email",
        campaign="coupons",
    )
    # an unknown browser (a9): an impression and a click on a social ad, a page view
    add("2026-02-10T08:00:00", "track", spec.AD_IMPRESSION, anon="a9", channel="social")
    add("2026-02-10T08:00:05", "track", spec.AD_CLICKED, anon="a9", channel="social")
    add("2026-02-10T08:00:10", "page", "Sale", anon="a9")
    add("2026-02-10T08:00:10", "track", spec.VIDEO_PLAYBACK_STARTED, anon="a9", channel="web", video_player="html5")
    # gift cards: P2 buys G1 and P1 buys G2 in February; P1 spends G2 the same month, P4 spends G1 over two
    # visits in March, when P3 buys G3
    sold, spent = spec.GIFT_CARD_PURCHASED, spec.GIFT_CARD_REDEEMED
    for at, name, user, card, value in (
        ("2026-02-03T11:05:00", sold, "u2", "G1", 50.0),
        ("2026-02-02T11:00:00", sold, "u1", "G2", 25.0),
        ("2026-02-25T11:00:00", spent, "u1", "G2", 25.0),
        ("2026-03-20T13:00:00", spent, "u4", "G1", 30.0),
        ("2026-03-22T13:00:00", spent, "u4", "G1", 20.0),
        ("2026-03-15T12:05:00", sold, "u3", "G3", 40.0),
    ):
        add(at, "track", name, user=user, channel="store", gift_card_id=card, value=value)
    # P4 opts in to e-mail (said again in March: not a second sign-up); P2 says no; P4 is sent an e-mail
    add("2026-02-02T09:00:00", "identify", user="u4", traits={"email_opt_in": True})
    add("2026-02-02T09:30:00", "identify", user="u2", traits={"email_opt_in": False})
    add("2026-02-06T09:00:00", "track", spec.EMAIL_SENT, user="u4")
    # NPS answers: 10, 9 (promoters), 7 (passive), 3 (detractor); 12 is not a 0-10 score
    for user, score in (("u1", 10), ("u2", 9), ("u3", 7), ("u4", 3)):
        add("2026-02-20T12:00:00", "track", spec.SURVEY_ANSWERED, user=user, score=score)
    add("2026-02-20T12:00:00", "track", spec.SURVEY_ANSWERED, user="u1", score=12)

    # March. P1 buys in store S1 (Mon 2nd) and online (9th); P3 in store S2 (Sun 15th); P4's first order online.
    add("2026-03-01T09:00:00", "identify", user="u4", traits={"email_opt_in": "true"})
    add(
        "2026-03-02T12:00:00",
        "track",
        spec.ORDER_COMPLETED,
        user="u1",
        channel="store",
        store_id="S1",
        revenue=80.0,
        products=[product("B", 20.0, 4)],
    )
    add(
        "2026-03-09T12:00:00",
        "track",
        spec.ORDER_COMPLETED,
        user="u1",
        channel="web",
        revenue=20.0,
        products=[product("B", 20.0, 1)],
    )
    add(
        "2026-03-15T12:00:00",
        "track",
        spec.ORDER_COMPLETED,
        user="u3",
        channel="store",
        store_id="S2",
        revenue=30.0,
        products=[product("A", 30.0, 1)],
    )
    add("2026-03-20T12:00:00", "track", spec.ORDER_COMPLETED, user="u4", channel="web", total=40.0)
    add("2026-03-21T12:00:00", "page", "Home", anon="a9")
    return events


def spend_table() -> pa.Table:
    rows = [
        ("s1", date(2026, 2, 10), "social", "facebook", "spring", 1000, 10, 30.0),
        ("s2", date(2026, 2, 11), "search", "google", "brand", 500, 20, 10.0),
        ("s3", date(2026, 3, 5), "social", "instagram", "spring", 2000, 5, 50.0),
    ]
    cols = list(zip(*rows, strict=True))
    return pa.table(
        {
            "spend_id": cols[0],
            "source": ["test"] * 3,
            "date": cols[1],
            "channel": cols[2],
            "platform": cols[3],
            "campaign": cols[4],
            "impressions": cols[5],
            "clicks": cols[6],
            "spend": cols[7],
            "currency": ["GBP"] * 3,
        },
        schema=SPEND_SCHEMA,
    )


@pytest.fixture
def seeded(runtime):
    runtime.log.append("events", events_to_table(world(), "test"), "world")
    runtime.log.append("spend", spend_table(), "spend", date_column="date")
    write_identities(
        runtime,
        [
            ("user_id", "u1", "P1"),
            ("anonymous_id", "a1", "P1"),
            ("user_id", "u2", "P2"),
            ("user_id", "u3", "P3"),
            ("user_id", "u4", "P4"),
        ],
    )
    write_dataset(
        runtime.log,
        "profiles",
        pa.table({"person_id": ["P1", "P2", "P3"], "clv_12m": pa.array([100.0, 200.0, None], pa.float64())}),
    )
    return runtime


def _values(table: pa.Table) -> dict[tuple[date, str, str], float]:
    return {(r["period"], r["kpi"], r["dimension_value"]): r["value"] for r in table.to_pylist()}


# Every figure below is worked out from the world above by hand.
MONTHLY = {
    (FEB, "page_views"): 6,  # P1's 3 pages, P3's 2 screens, a9's page
    (FEB, "website_users"): 3,  # P1, P3, a9
    (MAR, "page_views"): 1,
    (MAR, "website_users"): 1,
    (FEB, "social_impressions"): 1000,
    (MAR, "social_impressions"): 2000,
    (FEB, "social_impressions_tracked"): 1,
    (FEB, "store_visits"): 2,  # the Wi-Fi login is the footfall visit seen again
    (FEB, "store_visitors"): 1,  # only P2 is known
    (FEB, "sessions"): 4,  # P1 twice (40-minute gap), P3 in the app, a9
    (FEB, "pages_per_session"): 6 / 4,
    (FEB, "average_session_duration"): (600 + 300 + 1200 + 0) / 4,
    (MAR, "sessions"): 3,
    (MAR, "pages_per_session"): 1 / 3,
    (MAR, "average_session_duration"): 0,
    (FEB, "average_store_dwell_time"): (20 + 40) / 2,
    (FEB, "social_interactions"): 2,  # the social ad click and the share
    (FEB, "social_clicks"): 10,
    (MAR, "social_clicks"): 5,
    (FEB, "email_signups"): 1,
    (FEB, "coupon_redemption_rate"): 50.0,
    (FEB, "video_views"): 2,  # P1 (a1) and a9 pressed play
    (FEB, "gift_card_redemption_rate"): 50.0,  # G2 of G1, G2
    (MAR, "gift_card_redemption_rate"): 100.0,  # G1 (twice: one card) of G3 sold
    (FEB, "revenue_online"): 100,
    (FEB, "revenue_in_store"): 50,
    (FEB, "revenue_total"): 150,
    (MAR, "revenue_online"): 60,
    (MAR, "revenue_in_store"): 110,
    (MAR, "revenue_total"): 170,
    # both months are partial (February has customer activity on 7 days, March on 6): growth compares revenue
    # per day of data
    (MAR, "revenue_growth_online"): (60 / 6 / (100 / 7) - 1) * 100,
    (MAR, "revenue_growth_in_store"): (110 / 6 / (50 / 7) - 1) * 100,
    (MAR, "revenue_growth"): (170 / 6 / (150 / 7) - 1) * 100,
    (FEB, "sales_per_square_foot"): 50 / 1500,
    (MAR, "sales_per_square_foot"): 110 / 1500,
    (FEB, "conversion_rate"): 2 / 5 * 100,  # P1, P2 of P1-P4 and a9 (the e-mail and coupon sent to P4 do not count)
    (MAR, "conversion_rate"): 3 / 4 * 100,  # P1, P3, P4 of those and a9 (an identify is not activity)
    (FEB, "new_customers"): 2,
    (MAR, "new_customers"): 2,
    (FEB, "marketing_spend"): 40,
    (MAR, "marketing_spend"): 50,
    (FEB, "customer_acquisition_cost"): 20,
    (MAR, "customer_acquisition_cost"): 25,
    (FEB, "cost_of_sales"): 2 * 30 + 10,  # P2's order has product C, whose cost is unknown: left out
    (FEB, "gross_margin"): 30.0,
    (MAR, "cost_of_sales"): 4 * 10 + 10 + 30,  # P4's order lists no products: left out
    (MAR, "gross_margin"): (130 - 80) / 130 * 100,
    (MAR, "customer_lifetime_value"): 150,
    # no retention or repeat purchase rate: neither month is whole (see test_whole_and_partial_periods)
    (FEB, "net_promoter_score"): 25.0,
}


def test_every_kpi_of_a_hand_made_world(seeded):
    table = kpi_table(seeded, period="month", floor_areas=AREAS, product_costs=COSTS)
    got = {(p, k): v for (p, k, _), v in _values(table).items()}
    for key, want in MONTHLY.items():
        assert got.get(key) == pytest.approx(want), key
    assert set(got) == set(MONTHLY), set(got) ^ set(MONTHLY)  # nothing more: no growth or retention in February
    assert {r["kpi"] for r in table.to_pylist()} == {k.name for k in CATALOGUE} - {
        "retention_rate",
        "repeat_purchase_rate",
    }
    assert all(table.column("partial").to_pylist())
    scopes = {r["kpi"]: r["scope"] for r in table.to_pylist()}
    assert (
        scopes["store_visits"] == "in-store" and scopes["page_views"] == "online" and scopes["revenue_total"] == "both"
    )
    assert table.schema.field("period").type == pa.date32()


def test_without_costs_or_areas_those_kpis_are_absent(seeded):
    kpis = {r["kpi"] for r in kpi_table(seeded).to_pylist()}
    assert not kpis & {"sales_per_square_foot", "cost_of_sales", "gross_margin"}


def test_breakdowns(seeded):
    by_channel = _values(kpi_table(seeded, by="channel"))
    assert by_channel[(FEB, "revenue_online", "web")] == 100 and by_channel[(FEB, "revenue_in_store", "store")] == 50
    assert (FEB, "revenue_in_store", "web") not in by_channel
    assert by_channel[(FEB, "coupon_redemption_rate", "email")] == 100.0  # by the channel that issued the coupon
    assert by_channel[(FEB, "coupon_redemption_rate", "sms")] == 0.0
    assert by_channel[(FEB, "video_views", "web")] == 2 and (FEB, "video_views", "store") not in by_channel
    assert by_channel[(MAR, "gift_card_redemption_rate", "store")] == 100.0
    assert by_channel[(FEB, "marketing_spend", "social")] == 30 and by_channel[(FEB, "marketing_spend", "search")] == 10
    assert by_channel[(FEB, "sessions", "app")] == 1 and by_channel[(FEB, "sessions", "web")] == 3
    assert not any(k == "customer_acquisition_cost" for _, k, _ in by_channel)

    by_store = kpi_table(seeded, by="store", floor_areas=AREAS)
    assert set(by_store.column("dimension").to_pylist()) == {"store"}
    stores = _values(by_store)
    assert stores[(FEB, "store_visits", "S1")] == 1 and stores[(FEB, "store_visits", "S2")] == 1
    assert stores[(FEB, "store_visitors", "S1")] == 1 and stores[(FEB, "average_store_dwell_time", "S2")] == 40
    assert stores[(MAR, "sales_per_square_foot", "S1")] == pytest.approx(0.08)
    assert stores[(MAR, "sales_per_square_foot", "S2")] == pytest.approx(0.06)
    assert stores[(MAR, "revenue_growth_in_store", "S1")] == pytest.approx((80 / 6 / (50 / 7) - 1) * 100)
    assert not any(k == "page_views" for _, k, _ in stores)  # online events have no store

    campaigns = _values(kpi_table(seeded, by="campaign"))
    assert campaigns[(FEB, "revenue_total", "spring")] == 100
    assert campaigns[(FEB, "marketing_spend", "spring")] == 30 and campaigns[(MAR, "marketing_spend", "spring")] == 50
    assert campaigns[(FEB, "coupon_redemption_rate", "coupons")] == 50.0
    assert campaigns[(FEB, "page_views", "spring")] == 3


def test_days_weeks_and_filters(seeded):
    weeks = _values(kpi_table(seeded, period="week", kpis=["revenue_total", "email_signups"]))
    # 2026-03-02 is a Monday; Sunday 15 March belongs to the week of the 9th, Sunday 1 March to that of 23 Feb
    assert weeks[(date(2026, 3, 2), "revenue_total", "all")] == 80
    assert weeks[(date(2026, 3, 9), "revenue_total", "all")] == 50
    assert weeks[(date(2026, 2, 2), "email_signups", "all")] == 1
    assert {k for _, k, _ in weeks} == {"revenue_total", "email_signups"}
    days = kpi_table(
        seeded, period="day", kpis=["revenue_total", "revenue_growth"], since=date(2026, 3, 1), until=date(2026, 3, 3)
    )
    # 1 and 3 March have no customer activity: no day of data to compare with, so no growth
    assert _values(days) == {(date(2026, 3, 2), "revenue_total", "all"): 80.0}


def test_session_gap_is_configurable(seeded):
    got = _values(kpi_table(seeded, kpis=["sessions"], session_gap_minutes=45))
    assert got[(FEB, "sessions", "all")] == 3  # P1's 40-minute gap no longer cuts a session


def test_bad_parameters_say_what_is_expected(seeded):
    with pytest.raises(InputError, match="field 'period': got 'year'; expected one of day, week, month"):
        kpi_table(seeded, period="year")
    with pytest.raises(InputError, match="field 'by': got 'region'; expected one of channel, store, campaign"):
        kpi_table(seeded, by="region")
    with pytest.raises(InputError, match="unknown KPI.*'video_plays'; expected any of .*video_views"):
        kpi_table(seeded, kpis=["video_plays"])
    with pytest.raises(InputError, match="session_gap_minutes.*> 0"):
        kpi_table(seeded, session_gap_minutes=0)
    with pytest.raises(InputError, match="floor_areas.*expected a number > 0"):
        kpi_table(seeded, floor_areas={"S1": -5})
    with pytest.raises(InputError, match="product_costs.*expected a number >= 0"):
        kpi_table(seeded, product_costs={"A": -1})
    assert OMITTED == {}  # every KPI of the domain articles is computed


def test_reference_csvs(tmp_path):
    from omniweave.measure.service.kpis import floor_areas_from_csv, product_costs_from_csv

    (tmp_path / "stores.csv").write_text("store_id,name,floor_area_sqft\nS1,Central,1000\nS2,Station,500\n")
    (tmp_path / "products.csv").write_text("sku,name,price,cost\nA,x,40.00,30.00\nB,y,20.00,10.00\n")
    assert floor_areas_from_csv(tmp_path / "stores.csv") == AREAS
    assert product_costs_from_csv(tmp_path / "products.csv") == COSTS
    (tmp_path / "bad.csv").write_text("store_id,floor_area_sqft\nS1,big\n")
    with pytest.raises(InputError, match="record 2, field 'floor_area_sqft'.*got 'big'; expected a number"):
        floor_areas_from_csv(tmp_path / "bad.csv")
    with pytest.raises(InputError, match="lacks column"):
        product_costs_from_csv(tmp_path / "stores.csv")


def test_cli_prints_the_catalogue_as_json_csv_and_a_table(seeded, settings):
    import csv
    import io
    import os
    import subprocess
    import sys

    import orjson

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "omniweave", "--home", settings.home, "kpis", *args],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
            env={**os.environ, "COLUMNS": "200"},
        )

    expected = _values(kpi_table(seeded))
    done = run("--format", "json")
    assert done.returncode == 0, done.stderr
    rows = orjson.loads(done.stdout)
    assert {(date.fromisoformat(r["period"]), r["kpi"], r["dimension_value"]): r["value"] for r in rows} == expected
    as_csv = list(csv.DictReader(io.StringIO(run("--format", "csv", "--kpi", "page_views").stdout)))
    assert as_csv and {r["kpi"] for r in as_csv} == {"page_views"}
    table = run("--by", "channel")
    assert table.returncode == 0 and "page_views" in table.stdout
    bad = run("--period", "year")
    assert bad.returncode == 2 and "period" in bad.stderr
    bad = run("--since", "March")
    assert bad.returncode == 2 and "--since" in bad.stderr
