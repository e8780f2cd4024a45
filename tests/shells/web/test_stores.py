"""The Stores page against `omniweave kpis --by store` on the same demo world (the same visits, visitors, sales and
sales per square foot for the same week), and its online-first shares and coupon redemptions against SQL written
by hand over the event log's Parquet files (tests/measure/test_store_figures.py `expected_store_figures`)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from typing import Any

import pytest

from tests.conftest import omniweave_cmd
from tests.measure.test_store_figures import expected_store_figures
from tests.shells.web.conftest import Dashboard

KPI_OF = {
    "visits": "store_visits",
    "visitors": "store_visitors",
    "sales": "revenue_in_store",
    "sales per sq ft": "sales_per_square_foot",
}
"""The page's columns that are the KPI catalogue's, by store."""


@pytest.fixture(scope="module")
def cli_weeks(dashboard: Dashboard) -> dict[tuple[str, str], dict[str, Any]]:
    """{(week, store): {kpi: row}} as `omniweave kpis --by store --period week --format json` prints them."""
    out = subprocess.run(
        omniweave_cmd("--home", str(dashboard.home), "kpis", "--by", "store", "--period", "week", "--format", "json"),
        check=True,
        capture_output=True,
        text=True,
    )
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in json.loads(out.stdout):
        assert r["dimension"] == "store"
        if r["kpi"] in KPI_OF.values():
            rows.setdefault((r["period"], r["dimension_value"]), {})[r["kpi"]] = r
    return rows


@pytest.fixture(scope="module")
def by_hand(dashboard: Dashboard) -> dict[tuple[str, str], dict[str, float]]:
    return expected_store_figures(dashboard.home / "warehouse", "week")


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _number(text: str) -> float | None:
    return None if text == "" else float(text)


def _share(figures: dict[str, float] | None, name: str) -> float | None:
    if figures is None or not figures["known_revenue"]:
        return None
    return round(figures[name] * 100.0 / figures["known_revenue"], 2)


def _check_row(row: dict[str, str], cli: dict[str, dict[str, Any]], hand: dict[str, float] | None, where: Any) -> None:
    for column, kpi in KPI_OF.items():
        want = cli.get(kpi)
        if want is None:
            assert row[column] == "", (where, column)
        else:
            assert _number(row[column]) == pytest.approx(want["value"], rel=1e-9), (where, column)
    assert row["partial"] == str(any(r["partial"] for r in cli.values())), where
    for column, name in (
        ("online-first share %", "online_first_revenue"),
        ("online-before share %", "online_before_revenue"),
    ):
        want_share = _share(hand, name)
        if want_share is None:
            assert row[column] == "", (where, column)
        else:
            assert _number(row[column]) == pytest.approx(want_share, abs=0.006), (where, column)
    redeemed = _number(row["coupon redemptions"])
    assert (redeemed or 0) == (hand or {}).get("coupon_redemptions", 0), where


def test_stores_needs_a_session(dashboard: Dashboard) -> None:
    answer = dashboard.client(None).get("/app/stores?store=S001")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/app/login?next=%2Fapp%2Fstores%3Fstore%3DS001"


def test_every_store_of_a_week_shows_the_cli_numbers_and_the_hand_computed_shares(
    dashboard: Dashboard, cli_weeks: dict[tuple[str, str], dict[str, Any]], by_hand: dict[tuple[str, str], Any]
) -> None:
    client = dashboard.client("analyst")
    weeks = sorted({week for week, _ in cli_weeks})
    chosen = weeks[-3]  # a whole week, not the latest: the page is asked for it
    page = client.get(f"/app/stores?period=week&at={chosen}")
    assert page.status_code == 200, page.text
    assert f'<strong id="chosen-period">{chosen}</strong>' in page.text
    assert 'href="/app/stores?store=S001&amp;period=week' in page.text  # each store links to its own page
    rows = _csv(client.get(f"/app/stores?period=week&at={chosen}&csv=stores").text)
    stores = {store for week, store in cli_weeks if week == chosen}
    assert {r["store"] for r in rows} == stores and len(stores) == 12
    for row in rows:
        key = (chosen, row["store"])
        _check_row(row, cli_weeks[key], by_hand.get(key), key)
    assert sum(int(r["coupon redemptions"]) for r in rows) > 0
    assert any(float(r["online-first share %"]) > 0 for r in rows)
    # the charts draw the same numbers as the table
    shares = {r["store"]: r for r in _csv(client.get(f"/app/stores?period=week&at={chosen}&csv=online_share").text)}
    assert len(shares) == len(rows)
    for row in rows:
        drawn = next(v for k, v in shares.items() if k.endswith(f"({row['store']})") or k == row["store"])
        assert drawn["online first %"] == row["online-first share %"]


def test_a_store_page_shows_its_weeks_and_its_local_campaigns(
    dashboard: Dashboard, cli_weeks: dict[tuple[str, str], dict[str, Any]], by_hand: dict[tuple[str, str], Any]
) -> None:
    client = dashboard.client("marketer")
    page = client.get("/app/stores?store=S003&period=week")
    assert page.status_code == 200, page.text
    assert "<h1>London Riverside (S003)</h1>" in page.text and 'id="local-campaigns"' in page.text
    history = _csv(client.get("/app/stores?store=S003&period=week&csv=store_periods").text)
    weeks = sorted({week for week, _ in cli_weeks} | {week for week, _ in by_hand})
    assert [r["period"] for r in history] == weeks  # every week of the demo, oldest first
    for row in history:
        key = (row["period"], "S003")
        _check_row(row, cli_weeks.get(key, {}), by_hand.get(key), key)
    # every coupon redeemed at the store belongs to a local campaign (the demo's coupons name theirs)
    campaigns = _csv(client.get("/app/stores?store=S003&period=week&csv=campaigns").text)
    assert campaigns and all(c["campaign"] for c in campaigns)
    redeemed = sum(f["coupon_redemptions"] for (_, store), f in by_hand.items() if store == "S003")
    assert sum(int(c["coupon redemptions"]) for c in campaigns) == redeemed > 0
    events = _csv(client.get("/app/stores?store=S003&period=week&csv=store_events").text)
    assert [(e["event"], e["name"]) for e in events] == [("EV03", "Kids Craft Workshop")]


def test_bad_parameters_are_refused_naming_the_field(dashboard: Dashboard) -> None:
    client = dashboard.client("privacy_officer")  # every role reads the stores (profiles:read)
    assert client.get("/app/stores?period=week&csv=stores").status_code == 200
    unknown = client.get("/app/stores?period=week&store=S999")
    assert unknown.status_code == 400 and "<code>store</code>" in unknown.text
    assert "no store &#39;S999&#39;; the stores are S001, S002" in unknown.text
    bad = client.get("/app/stores?period=fortnight")
    assert bad.status_code == 400 and "period must be one of day, week, month" in bad.text
    assert "<code>period</code>" in bad.text
    early = client.get("/app/stores?period=week&at=1999-01-04")
    assert early.status_code == 400 and "<code>at</code>" in early.text
    garbled = client.get("/app/stores?period=week&at=last-week")
    assert garbled.status_code == 400 and "<code>at</code>" in garbled.text
    missing = client.get("/app/stores?period=week&store=S001&csv=stores")  # a store's page has no `stores` table
    assert missing.status_code == 404 and "no table &#39;stores&#39;" in missing.text
