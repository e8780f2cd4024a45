"""Every KPI of one demo month recomputed by hand-written SQL over the Parquet files of the event log (DuckDB reads
them directly; nothing of omniweave's KPI code is used), on the session's shared demo world (tests/conftest.py
`demo_home`: 600 customers, 60 days to 2026-10-31, profiles built and the built-in segments evaluated, so the log
also holds the `Segment Entered` events omniweave wrote)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

from omniweave.events import spec
from omniweave.measure.service.kpis import CATALOGUE, SOCIAL_PLATFORMS, kpi_table
from omniweave.runtime import Runtime
from omniweave.settings import Settings

OCTOBER, SEPTEMBER = date(2026, 10, 1), date(2026, 9, 1)


def _list(values: Any) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in sorted(values))


def _sql(warehouse: Path) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the views the SQL below reads: `e` (every event with its person `who`, UTC `day`,
    `month` and whether it is customer activity `act`), `spend`, `stores`, `products`, `profiles`."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")

    def files(name: str, partitions: bool = False) -> str:
        return (
            f"read_parquet('{warehouse / name}/**/*.parquet', union_by_name = true, hive_partitioning = {partitions})"
        )

    con.execute(f"""
        CREATE TEMP TABLE e AS
        WITH ids AS (SELECT kind, value, person_id FROM {files("identities")})
        SELECT ev.*,
               coalesce(u.person_id, a.person_id, ev.user_id,
                        CASE WHEN ev.anonymous_id NOT LIKE 'offline:%' THEN ev.anonymous_id END) AS who,
               CAST(ev.timestamp AS DATE) AS day,
               strftime(ev.timestamp, '%Y-%m') AS month,
               ev.type IN ('track', 'page', 'screen')
                 AND coalesce(ev.event, '') NOT IN ({_list(spec.PLATFORM_EVENTS)})
                 AND coalesce(ev.channel, '') <> 'omniweave' AS act
        FROM {files("events")} ev
        LEFT JOIN ids u ON u.kind = 'user_id' AND u.value = ev.user_id
        LEFT JOIN ids a ON a.kind = 'anonymous_id' AND a.value = ev.anonymous_id
    """)
    # the spend dataset is partitioned by its date (date=YYYY-MM-DD folders)
    con.execute(
        f"CREATE VIEW spend AS SELECT *, strftime(CAST(date AS DATE), '%Y-%m') AS month FROM {files('spend', True)}"
    )
    for name in ("stores", "products", "profiles"):
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM {files(name)}")
    con.execute("""
        CREATE TEMP TABLE orders AS
        SELECT message_id, who, day, month, channel, json_extract_string(properties, '$.store_id') AS store_id,
               coalesce(TRY_CAST(json_extract_string(properties, '$.revenue') AS DOUBLE),
                        TRY_CAST(json_extract_string(properties, '$.total') AS DOUBLE), 0) AS value,
               json_extract(properties, '$.products') AS products
        FROM e WHERE event = 'Order Completed'
    """)
    return con


def _one(con: duckdb.DuckDBPyConnection, query: str) -> float | None:
    row = con.execute(query).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def hand_written(con: duckdb.DuckDBPyConnection, month: str, previous: str) -> dict[str, float | None]:
    """Every KPI of `month` (YYYY-MM), its previous month `previous`, written out in SQL from docs/kpis.md."""
    social = f"(channel = 'social' OR lower(platform) IN ({_list(SOCIAL_PLATFORMS)}))"
    visit = "event = 'Store Visited' AND coalesce(json_extract_string(properties, '$.visit_type'), '') <> 'wifi'"
    kpi: dict[str, float | None] = {}
    q = lambda sql: _one(con, sql)  # noqa: E731
    m = f"month = '{month}'"

    kpi["page_views"] = q(f"SELECT count(*) FROM e WHERE {m} AND type IN ('page', 'screen')")
    kpi["website_users"] = q(f"SELECT count(DISTINCT who) FROM e WHERE {m} AND type IN ('page', 'screen')")
    kpi["social_impressions"] = q(f"SELECT sum(impressions) FROM spend WHERE {m} AND {social}")
    kpi["social_impressions_tracked"] = q(
        f"SELECT count(*) FROM e WHERE {m} AND event = 'Ad Impression' AND channel = 'social'"
    )
    kpi["video_views"] = q(f"SELECT count(*) FROM e WHERE {m} AND event = 'Video Playback Started'")
    kpi["store_visits"] = q(f"SELECT count(*) FROM e WHERE {m} AND {visit}")
    kpi["store_visitors"] = q(f"SELECT count(DISTINCT who) FROM e WHERE {m} AND event = 'Store Visited'")
    sessions = con.execute(f"""
        WITH online AS (
            SELECT who, channel, type, month, timestamp, message_id, epoch(timestamp) AS s,
                   epoch(timestamp) - lag(epoch(timestamp)) OVER w AS gap
            FROM e WHERE channel IN ('web', 'app') AND who IS NOT NULL
            WINDOW w AS (PARTITION BY who, channel ORDER BY timestamp, message_id)
        ), numbered AS (
            SELECT *, sum(CASE WHEN gap IS NULL OR gap > 1800 THEN 1 ELSE 0 END)
                      OVER (PARTITION BY who, channel ORDER BY timestamp, message_id ROWS UNBOUNDED PRECEDING) AS n
            FROM online
        ), sessions AS (
            SELECT arg_min(month, s) AS month, count(*) FILTER (WHERE type IN ('page', 'screen')) AS pages,
                   max(s) - min(s) AS seconds
            FROM numbered GROUP BY who, channel, n
        )
        SELECT count(*), sum(pages) / count(*), avg(seconds) FROM sessions WHERE {m}
    """).fetchone()
    assert sessions is not None
    kpi["sessions"], kpi["pages_per_session"], kpi["average_session_duration"] = (float(x) for x in sessions)
    kpi["average_store_dwell_time"] = q(
        f"SELECT avg(TRY_CAST(json_extract_string(properties, '$.dwell_minutes') AS DOUBLE)) FROM e WHERE {m} AND "
        f"{visit}"
    )
    kpi["social_interactions"] = q(
        f"SELECT count(*) FROM e WHERE {m} AND ((event = 'Ad Clicked' AND channel = 'social') "
        "OR event = 'Product Shared')"
    )
    kpi["social_clicks"] = q(f"SELECT sum(clicks) FROM spend WHERE {m} AND {social}")
    kpi["email_signups"] = q(f"""
        WITH said AS (
            SELECT who, month, row_number() OVER (PARTITION BY who ORDER BY timestamp, message_id) AS n FROM e
            WHERE who IS NOT NULL AND traits IS NOT NULL AND traits <> '{{}}'
              AND lower(json_extract_string(traits, '$.email_opt_in')) IN ('true', '1', 'yes')
        )
        SELECT count(*) FROM said WHERE n = 1 AND {m}
    """)
    kpi["coupon_redemption_rate"] = q(
        f"SELECT 100.0 * count(*) FILTER (WHERE event = 'Coupon Applied') / count(*) FILTER "
        f"(WHERE event = 'Coupon Issued') FROM e WHERE {m}"
    )
    kpi["gift_card_redemption_rate"] = q(f"""
        SELECT 100.0 * (count(DISTINCT nullif(json_extract_string(properties, '$.gift_card_id'), ''))
                        FILTER (WHERE event = 'Gift Card Redeemed')
                        + count(*) FILTER (WHERE event = 'Gift Card Redeemed'
                                           AND nullif(json_extract_string(properties, '$.gift_card_id'), '') IS NULL))
               / count(*) FILTER (WHERE event = 'Gift Card Purchased')
        FROM e WHERE {m}
    """)
    revenue = {
        which: {
            mm: q(f"SELECT sum(value) FROM orders WHERE month = '{mm}' AND {where}") or 0.0 for mm in (month, previous)
        }
        for which, where in (("online", "channel <> 'store'"), ("in_store", "channel = 'store'"), ("total", "TRUE"))
    }
    kpi["revenue_online"] = round(revenue["online"][month], 2)
    kpi["revenue_in_store"] = round(revenue["in_store"][month], 2)
    kpi["revenue_total"] = round(revenue["total"][month], 2)
    # a month is whole when it has ended and every one of its days has customer activity; growth against a partial
    # month compares revenue per day of data
    days = {mm: q(f"SELECT count(DISTINCT day) FROM e WHERE act AND month = '{mm}'") or 0.0 for mm in (month, previous)}
    length = {
        mm: q(f"SELECT date_diff('day', DATE '{mm}-01', DATE '{mm}-01' + INTERVAL 1 MONTH)") or 0.0
        for mm in (month, previous)
    }
    whole = {mm: days[mm] == length[mm] for mm in (month, previous)}
    for name, which in (
        ("revenue_growth_online", "online"),
        ("revenue_growth_in_store", "in_store"),
        ("revenue_growth", "total"),
    ):
        now, then = revenue[which][month], revenue[which][previous]
        if not (whole[month] and whole[previous]):
            now, then = now / days[month], then / days[previous]
        kpi[name] = (now - then) / then * 100
    kpi["sales_per_square_foot"] = q(
        f"SELECT sum(value) / (SELECT sum(floor_area_sqft) FROM stores) FROM orders "
        f"WHERE {m} AND channel = 'store' AND store_id IN (SELECT store_id FROM stores)"
    )
    kpi["conversion_rate"] = q(
        f"SELECT 100.0 * count(DISTINCT who) FILTER (WHERE event = 'Order Completed') "
        f"/ count(DISTINCT who) FILTER (WHERE act) FROM e WHERE {m} AND who IS NOT NULL"
    )
    kpi["new_customers"] = q(
        f"SELECT count(*) FROM (SELECT who, arg_min(month, (day, message_id)) AS first FROM orders "
        f"WHERE who IS NOT NULL GROUP BY who) WHERE first = '{month}'"
    )
    kpi["marketing_spend"] = q(f"SELECT round(sum(spend), 2) FROM spend WHERE {m}")
    kpi["customer_acquisition_cost"] = q(f"SELECT sum(spend) FROM spend WHERE {m}") / kpi["new_customers"]  # type: ignore[operator]
    costs = con.execute(f"""
        WITH lines AS (
            SELECT o.message_id, o.value, l.product_id, coalesce(l.quantity, 1) AS quantity
            FROM orders o, unnest(from_json(o.products, '[{{"product_id": "VARCHAR", "quantity": "DOUBLE"}}]')) t(l)
            WHERE o.{m}
        ), costed AS (
            SELECT message_id, any_value(value) AS value, sum(quantity * p.cost) AS cost,
                   count(*) FILTER (WHERE p.cost IS NULL) AS unknown
            FROM lines LEFT JOIN products p ON p.sku = lines.product_id GROUP BY message_id
        )
        SELECT round(sum(cost), 2), 100 * (sum(value) - sum(cost)) / sum(value) FROM costed WHERE unknown = 0
    """).fetchone()
    assert costs is not None
    kpi["cost_of_sales"], kpi["gross_margin"] = float(costs[0]), float(costs[1])
    kpi["customer_lifetime_value"] = q("SELECT avg(clv_12m) FROM profiles")
    customers = "SELECT DISTINCT who FROM orders WHERE who IS NOT NULL AND month = '{}'"
    kpi["retention_rate"] = (
        q(
            f"SELECT 100.0 * count(*) FILTER (WHERE who IN ({customers.format(month)})) / count(*) "
            f"FROM ({customers.format(previous)})"
        )
        if whole[month]
        else None
    )
    kpi["repeat_purchase_rate"] = (
        q(
            f"SELECT 100.0 * count(*) FILTER (WHERE days >= 2) / count(*) FROM (SELECT who, count(DISTINCT day) AS days "
            f"FROM orders WHERE who IS NOT NULL AND {m} GROUP BY who)"
        )
        if whole[month]
        else None
    )
    kpi["net_promoter_score"] = q(f"""
        WITH answers AS (
            SELECT TRY_CAST(json_extract_string(properties, '$.score') AS DOUBLE) AS score FROM e
            WHERE {m} AND event = 'Survey Answered'
        )
        SELECT 100.0 * (count(*) FILTER (WHERE score >= 9) - count(*) FILTER (WHERE score <= 6)) / count(*)
        FROM answers WHERE score BETWEEN 0 AND 10
    """)
    kpi["_whole"] = float(whole[month])
    kpi["_whole_previous"] = float(whole[previous])
    return kpi


@pytest.fixture(scope="module")
def demo(demo_home: Path) -> tuple[Runtime, duckdb.DuckDBPyConnection]:
    runtime = Runtime(Settings(home=str(demo_home)))
    yield runtime, _sql(Path(demo_home) / "warehouse")  # type: ignore[misc]
    runtime.close()


def test_every_kpi_of_a_demo_month_equals_hand_written_sql(demo):
    runtime, con = demo
    # the log holds what omniweave wrote (segment changes): they must not count as anybody's activity
    assert _one(con, "SELECT count(*) FROM e WHERE event = 'Segment Entered'")
    rows = [r for r in kpi_table(runtime).to_pylist() if r["period"] == OCTOBER]
    got = {r["kpi"]: r for r in rows}
    want = hand_written(con, "2026-10", "2026-09")
    assert want.pop("_whole") == 1.0 and want.pop("_whole_previous") == 0.0  # the demo starts on 2 September
    for k in CATALOGUE:
        expected = want[k.name]
        if expected is None or expected == 0:  # a count of 0 has no row (docs/kpis.md)
            assert k.name not in got, k.name
            continue
        assert got[k.name]["value"] == pytest.approx(expected, rel=1e-9, abs=1e-9), k.name
    missing = {k.name for k in CATALOGUE} - set(got)
    assert missing <= {"email_signups"}, missing  # every KPI has a value (no till sign-up was anybody's first)
    # October is whole; its growth and retention rest on September, which the data starts inside
    assert {k for k, r in got.items() if r["partial"]} == {
        "revenue_growth_online",
        "revenue_growth_in_store",
        "revenue_growth",
        "retention_rate",
    }


def test_partial_months_are_marked_and_not_compared_as_whole(demo):
    runtime, _ = demo
    table = kpi_table(runtime).to_pylist()
    september = {r["kpi"]: r for r in table if r["period"] == SEPTEMBER}
    assert september["revenue_total"]["partial"] and all(r["partial"] for r in september.values())
    assert "repeat_purchase_rate" not in september and "retention_rate" not in september
    # the month the segment changes were written in (today) holds no customer activity: no KPI row at all
    today = date.today().replace(day=1)
    assert all(r["partial"] for r in table if r["period"] >= today)


@pytest.mark.parametrize("by", ["channel", "store", "campaign"])
def test_totals_equal_the_sum_of_their_breakdown(demo, by):
    runtime, _ = demo
    kpis = ["email_signups", "revenue_in_store", "new_customers", "store_visits"]
    total = {(r["period"], r["kpi"]): r["value"] for r in kpi_table(runtime, kpis=kpis).to_pylist()}
    summed: dict[tuple[date, str], float] = defaultdict(float)
    for r in kpi_table(runtime, kpis=kpis, by=by).to_pylist():
        summed[(r["period"], r["kpi"])] += r["value"]
    for key, value in summed.items():
        assert value <= total[key] + 1e-6, key  # a breakdown value never holds more than the total
    if by == "channel":  # every event has a channel
        signups = {k: v for k, v in total.items() if k[1] == "email_signups"}
        assert signups and all(summed[k] == v for k, v in signups.items())
        assert summed[(OCTOBER, "revenue_in_store")] == pytest.approx(total[(OCTOBER, "revenue_in_store")])
    if by == "store":  # every in-store order and visit names its store
        assert summed[(OCTOBER, "revenue_in_store")] == pytest.approx(total[(OCTOBER, "revenue_in_store")])
        assert summed[(OCTOBER, "store_visits")] == total[(OCTOBER, "store_visits")]


def test_reference_datasets_and_survey_answers_come_with_the_demo(demo):
    _, con = demo
    assert _one(con, "SELECT count(*) FROM stores WHERE floor_area_sqft > 0") == 12
    assert _one(con, "SELECT count(*) FROM products WHERE cost >= 0") == _one(con, "SELECT count(*) FROM products")
    assert (_one(con, "SELECT count(*) FROM e WHERE event = 'Survey Answered'") or 0) > 20
