"""The reference for segment evaluation: every built-in segment, and the segment bench's ten extra audiences,
written by hand as DuckDB SQL over the warehouse's Parquet files. One copy, shared by
tests/segments/test_evaluate.py (the library selects what this SQL selects on the demo world) and
bench/segments.py (the same members, and how fast next to it).

The queries read three tables: `profiles`, `identities` and `pe` (events up to `$now`, each with the person it
belongs to: by user id, else anonymous id). `$now` stands for the evaluation time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import duckdb

UNIDENTIFIED = "len(p.emails) = 0 AND len(p.phones) = 0 AND len(p.user_ids) = 0 AND len(p.loyalty_cards) = 0"
"""A profile with no e-mail, phone, user id or loyalty card."""

BUILTIN_SQL: dict[str, str] = {
    "store_only_buyers": "SELECT person_id FROM profiles WHERE store_orders >= 1 AND online_orders = 0",
    "online_only_buyers": "SELECT person_id FROM profiles WHERE online_orders >= 1 AND store_orders = 0",
    "omnichannel_buyers": "SELECT person_id FROM profiles WHERE online_orders >= 1 AND store_orders >= 1",
    "lapsing_high_value": "SELECT person_id FROM profiles WHERE rfm_monetary >= 4 "
    "AND last_order_at < $now - INTERVAL 30 DAY",
    "coupon_hunters": "SELECT person_id FROM pe WHERE event = 'Coupon Applied' AND timestamp > $now - INTERVAL 90 DAY "
    "GROUP BY person_id HAVING count(*) >= 2",
    "event_attendees": "SELECT DISTINCT person_id FROM pe WHERE event = 'Store Event Attended' "
    "AND timestamp > $now - INTERVAL 90 DAY",
    "cart_abandoners": """SELECT DISTINCT a.person_id FROM pe a
        WHERE a.event = 'Product Added' AND a.timestamp > $now - INTERVAL 7 DAY
          AND a.timestamp <= $now - INTERVAL 24 HOUR
          AND NOT EXISTS (SELECT 1 FROM pe b WHERE b.person_id = a.person_id AND b.event = 'Order Completed'
                          AND b.timestamp > a.timestamp AND b.timestamp <= a.timestamp + INTERVAL 24 HOUR)""",
    "new_till_subscribers": """SELECT DISTINCT pe.person_id FROM pe JOIN profiles p USING (person_id)
        WHERE pe.type = 'identify' AND pe.channel = 'loyalty'
          AND json_extract_string(pe.properties, '$.store_id') IS NOT NULL
          AND pe.timestamp > $now - INTERVAL 30 DAY AND p.consent_email""",
    "qr_scanners_unidentified": f"""SELECT DISTINCT pe.person_id FROM pe JOIN profiles p USING (person_id)
        WHERE pe.event = 'QR Code Scanned' AND pe.timestamp > $now - INTERVAL 30 DAY AND {UNIDENTIFIED}""",
    "bounced_visitors": f"""SELECT p.person_id FROM profiles p
        WHERE p.person_id IN (SELECT person_id FROM pe WHERE type IN ('page', 'screen')
                              AND timestamp > $now - INTERVAL 14 DAY)
          AND p.person_id NOT IN (SELECT person_id FROM pe WHERE event = 'Order Completed'
                                  AND timestamp > $now - INTERVAL 14 DAY)
          AND {UNIDENTIFIED}""",
}
"""The built-in library (segments/library/*.yaml), segment id → SQL."""

EXTRA_SEGMENTS: dict[str, dict[str, Any]] = {
    "high_value": {"trait": "total_revenue", "gte": 500},
    "frequent_buyers": {"trait": "orders", "gte": 5},
    "email_engaged": {"performed": "Email Opened", "at_least": 3, "within_days": 30},
    "mobile_first": {"trait": "preferred_device", "eq": "mobile"},
    "coupon_responsive": {"trait": "responsive_promotion", "eq": "coupon"},
    "big_store_orders": {
        "performed": "Order Completed",
        "at_least": 2,
        "within_days": 60,
        "where": [{"property": "channel", "eq": "store"}, {"property": "revenue", "gt": 100}],
    },
    "browsed_not_bought": {
        "performed": "Product Viewed",
        "within_days": 7,
        "then_not": {"event": "Order Completed", "within_hours": 24},
    },
    "lapsing_repeat": {"all": [{"trait": "last_order_at", "before_days_ago": 90}, {"trait": "orders", "gte": 2}]},
    "holdout_10": {"bucket": {"salt": "holdout", "from": 0, "to": 10}},
    "email_consented_buyers": {"all": [{"trait": "consent_email", "eq": True}, {"trait": "orders", "gte": 1}]},
}
"""Ten more audiences (their `where` trees) on top of the built-in library: numeric and text traits, counted
events with property filters, a sequence, a date trait and a hash bucket."""

EXTRA_SQL: dict[str, str] = {
    "high_value": "SELECT person_id FROM profiles WHERE total_revenue >= 500",
    "frequent_buyers": "SELECT person_id FROM profiles WHERE orders >= 5",
    "email_engaged": "SELECT person_id FROM pe WHERE event = 'Email Opened' AND timestamp > $now - INTERVAL 30 DAY "
    "GROUP BY person_id HAVING count(*) >= 3",
    "mobile_first": "SELECT person_id FROM profiles WHERE preferred_device = 'mobile'",
    "coupon_responsive": "SELECT person_id FROM profiles WHERE responsive_promotion = 'coupon'",
    "big_store_orders": "SELECT person_id FROM pe WHERE event = 'Order Completed' AND channel = 'store' "
    "AND TRY_CAST(json_extract_string(properties, '$.revenue') AS DOUBLE) > 100 "
    "AND timestamp > $now - INTERVAL 60 DAY GROUP BY person_id HAVING count(*) >= 2",
    "browsed_not_bought": """SELECT DISTINCT a.person_id FROM pe a
        WHERE a.event = 'Product Viewed' AND a.timestamp > $now - INTERVAL 7 DAY
          AND a.timestamp <= $now - INTERVAL 24 HOUR
          AND NOT EXISTS (SELECT 1 FROM pe b WHERE b.person_id = a.person_id AND b.event = 'Order Completed'
                          AND b.timestamp > a.timestamp AND b.timestamp <= a.timestamp + INTERVAL 24 HOUR)""",
    "lapsing_repeat": "SELECT person_id FROM profiles WHERE last_order_at < $now - INTERVAL 90 DAY AND orders >= 2",
    "holdout_10": "SELECT person_id FROM profiles WHERE "
    "('0x' || substr(md5('holdout:' || person_id), 1, 8))::BIGINT % 100 < 10",
    "email_consented_buyers": "SELECT person_id FROM profiles WHERE consent_email AND orders >= 1",
}
"""`EXTRA_SEGMENTS` as SQL."""

PE_EVENTS = (
    "Coupon Applied",
    "Store Event Attended",
    "Product Added",
    "Order Completed",
    "QR Code Scanned",
    "Email Opened",
    "Product Viewed",
)
"""The tracked events the queries above read (besides page, screen and identify calls)."""

LOOKBACK_DAYS = 90
"""The longest window any query above looks back."""


def open_reference(
    urls: Mapping[str, str], now: str, *, events: Iterable[str] | None = None, days: int | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the tables the queries read, over the Parquet datasets at `urls`
    (keys profiles, identities, events). `pe` holds the events up to `now` (an ISO timestamp), all of them, or
    only the `events` named (plus page, screen and identify calls) of the last `days` days when given, which
    the bench uses to build a smaller table."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE VIEW profiles AS SELECT * FROM read_parquet('{urls['profiles']}/**/*.parquet')")
    con.execute(f"CREATE VIEW identities AS SELECT * FROM read_parquet('{urls['identities']}/**/*.parquet')")
    con.execute(
        f"CREATE VIEW events AS SELECT * FROM read_parquet('{urls['events']}/**/*.parquet', "
        "hive_partitioning = true, union_by_name = true)"
    )
    where = [f"e.timestamp <= TIMESTAMPTZ '{now}'", "coalesce(u.person_id, a.person_id) IS NOT NULL"]
    if events is not None:
        names = ", ".join(f"'{n}'" for n in events)
        where.append(f"(e.event IN ({names}) OR e.type IN ('page', 'screen', 'identify'))")
    if days is not None:
        where.append(f"e.timestamp > TIMESTAMPTZ '{now}' - INTERVAL {int(days)} DAY")
    con.execute(f"""
        CREATE TEMP TABLE pe AS
        SELECT coalesce(u.person_id, a.person_id) AS person_id, e.type, e.event, e.channel, e.timestamp, e.properties
        FROM events e
        LEFT JOIN (SELECT value, person_id FROM identities WHERE kind = 'user_id') u ON e.user_id = u.value
        LEFT JOIN (SELECT value, person_id FROM identities WHERE kind = 'anonymous_id') a ON e.anonymous_id = a.value
        WHERE {" AND ".join(where)}""")
    return con


def reference_members(con: duckdb.DuckDBPyConnection, query: str, now: str) -> list[str]:
    """The person ids `query` selects as of `now` (an ISO timestamp), sorted."""
    rows = con.execute(query.replace("$now", f"TIMESTAMPTZ '{now}'")).fetchall()
    return sorted(r[0] for r in rows)
