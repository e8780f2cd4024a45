"""Offline importers: every built-in kind lands the right events, re-imports add nothing, custom
mappings work, and malformed files and rows are reported with file, row, field and reason."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from rich.console import Console

from omniweave.collect.files import MappingError, builtin_kinds, parse_mapping
from omniweave.collect.files.engine import connect
from omniweave.collect.service import ImportProgress, import_file
from omniweave.errors import InputError
from omniweave.events import spec
from omniweave.events.normalize import deterministic_message_id
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.storage.ops.store import imports as imports_table

DATA = Path(__file__).parents[1] / "data" / "importers"
REPO = Path(__file__).parents[2]


def rows(runtime: Runtime, where: str = "TRUE") -> list[dict[str, Any]]:
    """Events in the log, JSON columns decoded, ordered by time then message id."""
    table = runtime.warehouse().sql(f"SELECT * FROM events WHERE {where} ORDER BY timestamp, message_id")
    out = []
    for row in table.to_pylist():
        for column in ("context", "properties", "traits", "integrations"):
            row[column] = json.loads(row[column])
        out.append(row)
    return out


def by_key(events: list[dict[str, Any]], prop: str) -> dict[str, dict[str, Any]]:
    return {e["properties"][prop]: e for e in events}


def external_ids(event: dict[str, Any]) -> dict[str, str]:
    return {x["type"]: x["id"] for x in event["context"].get("externalIds", [])}


def source_id(runtime: Runtime, kind: str) -> str:
    return runtime.store.ensure_source(f"import:{kind}")


# --- till: grouping, revenue, identity --------------------------------------------------------


def test_till_rows_become_one_order_per_transaction(runtime: Runtime) -> None:
    summary = import_file(runtime, "till", DATA / "till.csv")
    assert (summary.rows_read, summary.rows_imported, summary.rows_duplicate, summary.rows_rejected) == (6, 6, 0, 0)
    assert summary.records_written == 3 and summary.errors == []
    assert "6 rows read" in summary.describe()

    orders = by_key(rows(runtime), "order_id")
    assert set(orders) == {"T1001", "T1002", "T1003"}
    for order in orders.values():
        assert order["type"] == "track" and order["event"] == spec.ORDER_COMPLETED
        assert order["channel"] == "store" and order["properties"]["channel"] == "store"
        assert order["source"] == source_id(runtime, "till")
        assert order["context"]["library"]["name"] == "omniweave-importer"
        assert order["context"]["source_kind"] == "till"

    first = orders["T1001"]
    assert first["message_id"] == deterministic_message_id("till", "T1001")
    assert first["user_id"] == "C-100" and first["anonymous_id"] is None
    props = first["properties"]
    assert props["revenue"] == pytest.approx(2 * 1.99 + 3.50 - 0.50 + 8.00)
    assert props["discount"] == pytest.approx(0.5)
    assert (props["store_id"], props["till_id"], props["currency"], props["payment_method"]) == (
        "S01",
        "3",
        "EUR",
        "card",
    )
    assert props["coupon"] == "SPRING10" and props["coupons"] == ["SPRING10"]
    assert sorted(p["sku"] for p in props["products"]) == ["SKU-1", "SKU-2", "SKU-3"]
    milk = next(p for p in props["products"] if p["sku"] == "SKU-1")
    assert milk == {
        "product_id": "SKU-1",
        "sku": "SKU-1",
        "name": "Oat milk",
        "category": "dairy",
        "price": 1.99,
        "quantity": 2,
    }
    assert external_ids(first) == {"loyalty_card": "LC-0001", "email": "ann@example.com", "customer_number": "C-100"}
    assert first["context"]["traits"] == {"email": "ann@example.com"}
    assert all(x["collection"] == "users" and x["encoding"] == "none" for x in first["context"]["externalIds"])

    cash = orders["T1002"]  # no customer number: a deterministic anonymous id; offset time in UTC
    assert cash["user_id"] is None and cash["anonymous_id"] == "offline:till:T1002"
    assert cash["timestamp"].isoformat() == "2024-05-01T14:40:00+00:00"
    assert cash["properties"]["currency"] == "EUR"  # the default for an empty currency
    assert external_ids(cash) == {"phone": "+44 7700 900123"}
    assert "coupon" not in cash["properties"] and "coupons" not in cash["properties"]

    two_coupons = orders["T1003"]["properties"]
    assert two_coupons["revenue"] == pytest.approx(4.25 + 2 * 5.00 - 1.00)
    assert two_coupons["coupons"] == ["SPRING10", "WELCOME5"] and two_coupons["currency"] == "GBP"
    assert {p["name"] for p in two_coupons["products"]} == {"Tea, green", "Honey"}


def test_reimporting_a_file_adds_nothing(runtime: Runtime) -> None:
    import_file(runtime, "till", DATA / "till.csv")
    import_file(runtime, "email_export", DATA / "email_export.csv")
    again = import_file(runtime, "till", DATA / "till.csv")
    assert (again.rows_read, again.rows_imported, again.rows_duplicate, again.records_written) == (6, 0, 6, 0)
    assert "6 duplicate" in again.describe()
    again = import_file(runtime, "email_export", DATA / "email_export.csv")
    assert (again.rows_imported, again.rows_duplicate) == (0, 6)
    assert len(rows(runtime)) == 3 + 6
    with runtime.store.engine.connect() as conn:
        logged = conn.execute(
            sa.select(imports_table.c.kind, imports_table.c.rows_imported, imports_table.c.rows_duplicate).order_by(
                imports_table.c.id
            )
        ).all()
    assert [tuple(r) for r in logged] == [
        ("till", 6, 0),
        ("email_export", 6, 0),
        ("till", 0, 6),
        ("email_export", 0, 6),
    ]


def test_duplicate_keys_within_one_file_count_as_duplicates(runtime: Runtime, tmp_path: Path) -> None:
    lines = (DATA / "email_export.csv").read_text().splitlines()
    path = tmp_path / "email.csv"
    path.write_text("\n".join(lines + [lines[1]]) + "\n")
    summary = import_file(runtime, "email_export", path)
    assert (summary.rows_read, summary.rows_imported, summary.rows_duplicate) == (7, 6, 1)
    assert len(rows(runtime)) == 6


@pytest.mark.parametrize(
    "parts",
    [
        ("till", "T1001"),
        ("ad_spend", "2024-05-01", "search", "spring-search"),
        ("custom_kind", "Kassenbon Nr. 7 – Köln", "ü"),
    ],
)
def test_message_ids_computed_in_sql_match_python(parts: tuple[str, ...]) -> None:
    kind, *key = parts
    con = connect()
    literal = ", ".join("'" + p.replace("'", "''") + "'" for p in parts)
    sql_id = con.execute(f"SELECT '{kind}-' || substr(sha256(concat_ws(chr(31), {literal})), 1, 32)").fetchone()[0]
    assert sql_id == deterministic_message_id(kind, *key)


# --- every other built-in kind ----------------------------------------------------------------


def _check_store_visits(events: list[dict[str, Any]]) -> None:
    visits = by_key(events, "visit_id")
    assert [visits[v]["event"] for v in ("V1", "V2", "V3")] == [
        spec.STORE_VISITED,
        spec.STORE_VISITED,
        spec.EVENT_ATTENDED,
    ]
    assert visits["V2"]["properties"]["dwell_minutes"] == 35.5
    assert external_ids(visits["V2"]) == {"device_id": "dev-77"}
    assert external_ids(visits["V3"]) == {"loyalty_card": "LC-0001", "email": "ann@example.com"}
    assert visits["V3"]["properties"]["event_name"] == "Wine tasting"
    assert visits["V1"]["anonymous_id"] == "offline:store_visits:V1"


def _check_loyalty(events: list[dict[str, Any]]) -> None:
    ann, bob = events
    assert {e["type"] for e in events} == {"identify"} and ann["event"] is None
    assert ann["user_id"] == "C-100" and bob["anonymous_id"] == "offline:loyalty:LC-0002"
    assert ann["traits"]["email_opt_in"] is True and ann["traits"]["sms_opt_in"] is False
    assert bob["traits"]["email_opt_in"] is False and bob["traits"]["sms_opt_in"] is True
    assert ann["traits"]["birthday"] == "1985-02-14" and ann["traits"]["first_name"] == "Ann"
    assert "email" not in bob["traits"]  # missing values are left out, never null
    assert external_ids(ann) == {
        "loyalty_card": "LC-0001",
        "email": "ann@example.com",
        "phone": "+44 7700 900001",
        "customer_number": "C-100",
    }
    assert ann["channel"] == "loyalty"


def _check_customers(events: list[dict[str, Any]]) -> None:
    ann, bob = events
    assert {e["type"] for e in events} == {"identify"} and {e["channel"] for e in events} == {"crm"}
    assert ann["user_id"] == "C-100" and bob["user_id"] == "C-101"
    assert ann["traits"]["birthday"] == "1985-02-14" and ann["traits"]["postcode"] == "SW1A 1AA"
    assert ann["traits"]["email_opt_in"] is True and ann["traits"]["sms_opt_in"] is False
    assert bob["traits"]["sms_opt_in"] is True and "email" not in bob["traits"]
    assert external_ids(ann) == {
        "customer_number": "C-100",
        "email": "ann@example.com",
        "phone": "+44 7700 900001",
        "user_id": "usr_ann",
    }
    assert external_ids(bob) == {"customer_number": "C-101", "phone": "07700 900002"}


def _check_coupons(events: list[dict[str, Any]]) -> None:
    store, web = events
    assert {e["event"] for e in events} == {spec.COUPON_APPLIED}
    assert store["properties"]["coupon_id"] == "SPRING10" and store["properties"]["discount"] == 0.5
    assert store["properties"]["redeemed_channel"] == "store" and web["properties"]["redeemed_channel"] == "web"
    assert store["context"]["campaign"] == {"source": "direct_mail", "medium": "coupon", "name": "spring-sale"}
    assert web["properties"]["discount"] == 5.0 and external_ids(web) == {"email": "bob@example.com"}


def _check_gift_cards(events: list[dict[str, Any]]) -> None:
    sold, redeemed = events
    assert (sold["event"], sold["channel"]) == (spec.GIFT_CARD_PURCHASED, "store")
    assert (redeemed["event"], redeemed["channel"]) == (spec.GIFT_CARD_REDEEMED, "web")
    assert sold["properties"]["gift_card_id"] == redeemed["properties"]["gift_card_id"] == "GC-100"
    assert sold["properties"]["value"] == 50.0 and redeemed["properties"]["value"] == 32.5
    assert redeemed["properties"]["order_id"] == "W-77" and sold["properties"]["store_id"] == "S01"
    assert external_ids(sold) == {"loyalty_card": "LC-0001"} and external_ids(redeemed) == {"email": "bob@example.com"}


def _check_qr(events: list[dict[str, Any]]) -> None:
    tv, flyer = events
    assert {e["event"] for e in events} == {spec.QR_CODE_SCANNED} and {e["channel"] for e in events} == {"qr"}
    assert (tv["campaign_source"], tv["campaign_medium"], tv["campaign_name"]) == ("tv", "qr", "spring-tv")
    assert tv["context"]["campaign"] == {"source": "tv", "medium": "qr", "name": "spring-tv"}
    assert flyer["campaign_source"] == "flyer" and tv["anonymous_id"] == "anon-1"
    assert external_ids(flyer) == {"device_id": "dev-9"}


def _check_call_centre(events: list[dict[str, Any]]) -> None:
    known, unknown = events
    assert {e["event"] for e in events} == {spec.CALL_CENTRE_CONTACTED}
    assert known["user_id"] == "C-100" and known["properties"]["duration_seconds"] == 240
    assert "duration_seconds" not in unknown["properties"] and unknown["anonymous_id"] == "offline:call_centre:CC2"
    assert known["context"]["traits"]["first_name"] == "Ann"


def _check_direct_mail(events: list[dict[str, Any]]) -> None:
    assert {e["event"] for e in events} == {spec.DIRECT_MAIL_SENT}
    assert sorted(e["user_id"] for e in events) == ["C-100", "C-200"]
    assert {e["campaign_name"] for e in events} == {"spring-mailer"}
    assert {e["properties"]["offer_code"] for e in events} == {"SPRING10"}


def _check_email(events: list[dict[str, Any]]) -> None:
    names = {e["properties"]["email_id"]: e["event"] for e in events}
    assert names == {
        "E1": spec.EMAIL_SENT,
        "E2": spec.EMAIL_DELIVERED,
        "E3": spec.EMAIL_OPENED,
        "E4": spec.EMAIL_LINK_CLICKED,
        "E5": spec.EMAIL_BOUNCED,
        "E6": spec.UNSUBSCRIBED,
    }
    assert {e["channel"] for e in events} == {"email"}
    clicked = next(e for e in events if e["event"] == spec.EMAIL_LINK_CLICKED)
    assert clicked["properties"]["link_url"] == "https://shop.example.com/spring"
    assert external_ids(clicked) == {"email": "ann@example.com"}


def _check_email_capture(events: list[dict[str, Any]]) -> None:
    ann, carl = events
    assert {e["event"] for e in events} == {spec.EMAIL_CAPTURED} and {e["channel"] for e in events} == {"store"}
    assert external_ids(ann) == {"email": "ann@example.com", "loyalty_card": "LC-0001"}
    assert external_ids(carl)["customer_number"] == "C-300" and carl["user_id"] == "C-300"
    # the traits state the person's e-mail and consent, as a loyalty sign-up does (profiles read them)
    assert ann["traits"] == {
        "email": "ann@example.com",
        "email_opt_in": True,
        "first_name": "Ann",
        "loyalty_card": "LC-0001",
    }
    assert carl["traits"]["email_opt_in"] is False
    assert ann["properties"] == {
        "capture_id": "EC1",
        "store_id": "S01",
        "till_id": "T3",
        "staff_id": "ST-7",
        "email_opt_in": True,
        "channel": "store",
    }
    assert "till_id" not in carl["properties"]


@pytest.mark.parametrize(
    ("kind", "count", "check"),
    [
        ("store_visits", 3, _check_store_visits),
        ("customers", 2, _check_customers),
        ("loyalty", 2, _check_loyalty),
        ("coupons", 2, _check_coupons),
        ("gift_cards", 2, _check_gift_cards),
        ("qr_scans", 2, _check_qr),
        ("call_centre", 2, _check_call_centre),
        ("direct_mail", 2, _check_direct_mail),
        ("email_export", 6, _check_email),
        ("email_capture", 2, _check_email_capture),
    ],
)
def test_builtin_kind_lands_its_events(
    runtime: Runtime, kind: str, count: int, check: Callable[[list[dict[str, Any]]], None]
) -> None:
    summary = import_file(runtime, kind, DATA / f"{kind}.csv")
    assert (summary.rows_imported, summary.rows_rejected, summary.errors) == (count, 0, [])
    events = rows(runtime)
    assert len(events) == count
    assert {e["source"] for e in events} == {source_id(runtime, kind)}
    assert all(e["context"]["source_kind"] == kind for e in events)
    assert all(e["properties"]["channel"] == e["channel"] for e in events)
    check(events)


def test_every_documented_kind_has_a_builtin_mapping() -> None:
    doc = (REPO / "docs" / "file-formats.md").read_text()
    documented = {line.split("`")[1] for line in doc.splitlines() if line.startswith("| `")}
    assert documented - {"segment"} == set(builtin_kinds())


def test_ad_spend_lands_in_the_spend_dataset(runtime: Runtime) -> None:
    summary = import_file(runtime, "ad_spend", DATA / "ad_spend.csv")
    assert (summary.rows_imported, summary.dataset, summary.records_written) == (3, "spend", 3)
    assert "spend rows" in summary.describe()
    spend = runtime.warehouse().sql("SELECT * FROM spend ORDER BY date, channel").to_pylist()
    assert [(r["date"].isoformat(), r["channel"], r["spend"]) for r in spend] == [
        ("2024-05-01", "search", 120.5),
        ("2024-05-01", "social", 80.0),
        ("2024-05-02", "search", 99.99),
    ]
    assert spend[1]["currency"] == "EUR" and spend[0]["impressions"] == 10000 and spend[0]["clicks"] == 300
    assert spend[0]["spend_id"] == deterministic_message_id("ad_spend", "2024-05-01", "search", "spring-search")
    assert {r["source"] for r in spend} == {source_id(runtime, "ad_spend")}
    assert rows(runtime) == []
    again = import_file(runtime, "ad_spend", DATA / "ad_spend.csv")
    assert (again.rows_imported, again.rows_duplicate) == (0, 3)


# --- Segment JSON lines -------------------------------------------------------------------------


def test_segment_json_lines_are_validated_and_deduplicated(runtime: Runtime) -> None:
    summary = import_file(runtime, "segment", DATA / "segment.jsonl")
    assert (summary.rows_read, summary.rows_imported, summary.rows_rejected) == (6, 6, 0)
    events = {e["message_id"]: e for e in rows(runtime)}
    # clock-skew correction with the export's receivedAt: timestamp = receivedAt - (sentAt - timestamp)
    assert events["m-5"]["timestamp"].isoformat() == "2024-05-01T09:10:02+00:00"
    # without receivedAt, sentAt stands in for it: no correction, and not the import time
    assert events["m-6"]["timestamp"].isoformat() == "2024-05-01T09:20:00+00:00"
    assert events["m-6"]["received_at"].isoformat() == "2024-05-01T09:20:30+00:00"
    assert {"m-1", "m-2", "m-3"} <= set(events)
    page = events["m-2"]
    assert (page["type"], page["event"], page["channel"]) == ("page", "Home", "web")
    assert page["context"]["campaign"] == {"source": "news", "medium": "email", "name": "spring"}
    order = next(e for e in events.values() if e["event"] == spec.ORDER_COMPLETED)
    assert order["message_id"].startswith("segment-") and order["properties"]["revenue"] == 12.5
    assert events["m-3"]["traits"] == {"email": "ann@example.com"}
    again = import_file(runtime, "segment", DATA / "segment.jsonl")
    assert (again.rows_imported, again.rows_duplicate) == (0, 6)
    assert len(rows(runtime)) == 6


def test_duplicates_are_looked_up_within_the_same_source_only(runtime: Runtime) -> None:
    from datetime import UTC, datetime

    from omniweave.events.normalize import normalize_event
    from omniweave.storage.eventlog import events_to_table

    seen_online = normalize_event(
        {
            "type": "track",
            "event": "Product Viewed",
            "userId": "C-100",
            "messageId": "m-1",
            "timestamp": "2024-05-01T09:00:00Z",
        },
        received_at=datetime.now(UTC),
    )
    runtime.log.append("events", events_to_table([seen_online], source="collector-source"), batch_name="other")
    summary = import_file(runtime, "segment", DATA / "segment.jsonl")
    assert (summary.rows_imported, summary.rows_duplicate) == (6, 0)
    assert len(rows(runtime, "message_id = 'm-1'")) == 2


# --- other file formats -------------------------------------------------------------------------


def _till_events(home: Path, path: Path) -> list[dict[str, Any]]:
    rt = Runtime(Settings(home=str(home)))
    try:
        summary = import_file(rt, "till", path)
        assert (summary.rows_imported, summary.rows_rejected) == (6, 0), summary.errors
        return [
            {k: e[k] for k in ("message_id", "user_id", "anonymous_id", "timestamp", "context", "properties")}
            for e in rows(rt)
        ]
    finally:
        rt.close()


def test_parquet_gzip_and_csv_give_the_same_events(tmp_path: Path) -> None:
    expected = _till_events(tmp_path / "csv", DATA / "till.csv")
    text = pacsv.read_csv(
        DATA / "till.csv",
        convert_options=pacsv.ConvertOptions(
            column_types={"till_id": pa.string(), "unit_price": pa.string(), "line_discount": pa.string()},
            strings_can_be_null=True,
        ),
    )
    pq.write_table(text, tmp_path / "till_text.parquet")
    typed = pacsv.read_csv(
        DATA / "till.csv",
        convert_options=pacsv.ConvertOptions(
            column_types={"till_id": pa.string(), "timestamp": pa.timestamp("us", "UTC"), "quantity": pa.int32()}
        ),
    )
    pq.write_table(typed, tmp_path / "till_typed.parquet")
    (tmp_path / "till.csv.gz").write_bytes(gzip.compress((DATA / "till.csv").read_bytes()))
    for name in ("till_text.parquet", "till_typed.parquet", "till.csv.gz"):
        assert _till_events(tmp_path / f"home-{name}", tmp_path / name) == expected, name


def test_json_lines_for_a_builtin_kind_match_the_csv(tmp_path: Path) -> None:
    homes = []
    for name in ("store_visits.csv", "store_visits.jsonl"):
        rt = Runtime(Settings(home=str(tmp_path / name)))
        summary = import_file(rt, "store_visits", DATA / name)
        assert (summary.rows_imported, summary.rows_rejected) == (3, 0)
        homes.append([(e["message_id"], e["event"], e["properties"], e["context"]) for e in rows(rt)])
        rt.close()
    assert homes[0] == homes[1]


# --- custom mappings ----------------------------------------------------------------------------


def test_custom_mapping_maps_columns_of_your_own(runtime: Runtime) -> None:
    summary = import_file(runtime, "custom", DATA / "pos_export.csv", mapping=DATA / "pos_export.toml")
    assert (summary.kind, summary.rows_read, summary.rows_imported, summary.records_written) == ("pos_export", 3, 3, 2)
    receipts = by_key(rows(runtime), "order_id")
    first = receipts["R-1"]
    assert first["message_id"] == deterministic_message_id("pos_export", "R-1")
    assert first["timestamp"].isoformat() == "2024-05-01T10:15:00+00:00"
    assert first["source"] == source_id(runtime, "pos_export")
    props = first["properties"]
    assert (props["store_id"], props["currency"], props["source_system"]) == ("Berlin", "EUR", "kasse-3000")
    assert (props["quantity"], props["lines"]) == (4, 2)
    assert sorted(p["name"] for p in props["products"]) == ["Apfel", "Birne"]
    assert external_ids(first) == {"loyalty_card": "M-9"}
    assert "externalIds" not in receipts["R-2"]["context"]


def test_the_mapping_example_in_the_docs_works(runtime: Runtime, tmp_path: Path) -> None:
    doc = (REPO / "docs" / "importers.md").read_text()
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "pos.toml").write_text(example)
    summary = import_file(runtime, "custom", DATA / "pos_export.csv", mapping=tmp_path / "pos.toml")
    assert (summary.kind, summary.rows_imported, summary.records_written) == ("pos_export", 3, 2)
    assert {e["properties"]["currency"] for e in rows(runtime)} == {"EUR"}


def test_mapping_option_with_a_builtin_kind_name_uses_that_file(runtime: Runtime) -> None:
    summary = import_file(runtime, "till", DATA / "pos_export.csv", mapping=DATA / "pos_export.toml")
    assert summary.kind == "till" and summary.rows_imported == 3
    assert {e["message_id"] for e in rows(runtime)} == {
        deterministic_message_id("till", "R-1"),
        deterministic_message_id("till", "R-2"),
    }


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('kind = "x"\nkey = ["id"]\ntimestamp = "t"\nevent = "E"\ncolour = "red"', "colour: unknown key; allowed keys"),
        ('key = ["id"]\ntimestamp = "t"\ntype = "sing"', "type: expected one of track, identify, page, screen"),
        ('key = ["id"]\ntimestamp = "t"', "event: a track mapping needs an event name"),
        ('timestamp = "t"\nevent = "E"', "key: expected the column(s) that identify one record"),
        (
            'key = ["id"]\ntimestamp = "t"\nevent = "E"\n[columns.n]\ntype = "decimal"',
            "columns.n.type: expected one of string, int, float, bool, date, timestamp",
        ),
        (
            'key = ["id"]\ntimestamp = "t"\nevent = "E"\n[columns.t]\ntype = "int"',
            "the timestamp column must be a timestamp or date",
        ),
        (
            'key = ["id"]\ntimestamp = "t"\nevent = "E"\n[columns.n]\nformat = "%d"\n[properties]\nn = "n"',
            "columns.n.format: only date and timestamp columns take a format",
        ),
        (
            'key = ["id"]\ntimestamp = "t"\nevent = "E"\n[group.totals]\nrevenue = "sum(price)"',
            "group.totals.revenue: column 'price' is used in arithmetic",
        ),
        (
            'key = ["id"]\ntimestamp = "t"\nevent = "E"\n[group.totals]\nrevenue = "median(price)"',
            "must start with one of sum, min, max, distinct, count, round",
        ),
        ('target = "spend"\nkey = ["d"]\n[spend]\ndate = "d"', "spend: missing channel, campaign, spend"),
        ('key = ["id"]\ntimestamp = "t"\nevent = "E"\n[properties]\nx = ["a"]', "properties.x: expected a column name"),
        (
            'key = ["id"]\ntimestamp = "t"\nevent = "E"\n[campaign]\nchannel = "c"',
            "campaign.channel: unknown field; allowed: source",
        ),
        (
            'key = ["id"]\ntimestamp = "t"\nevent = { column = "k", values = { a = "A" } }\n[columns.k]\nvalues = ["a", "b"]',
            "every allowed value of column 'k' needs an event name",
        ),
        (
            'key = ["id"]\ntimestamp = "t"\nevent = "E"\n[columns.unused]\ntype = "int"',
            "columns.unused: declared but not used",
        ),
        ("key = [", "not valid TOML"),
    ],
)
def test_bad_mappings_say_which_key_and_what_is_allowed(toml: str, expected: str) -> None:
    with pytest.raises(MappingError) as caught:
        parse_mapping(toml, origin="mapping bad.toml")
    assert "mapping bad.toml" in str(caught.value) and expected in str(caught.value)


def test_every_builtin_mapping_is_a_valid_mapping_file() -> None:
    folder = REPO / "src" / "omniweave" / "collect" / "files" / "mappings"
    for kind in builtin_kinds():
        mapping = parse_mapping((folder / f"{kind}.toml").read_text(), default_kind=kind)
        assert mapping.kind == kind and mapping.key


# --- malformed files and rows ---------------------------------------------------------------------

# (kind, file, errors that must be reported, rows imported, rows rejected). Row numbers count data
# rows from 1, as a spreadsheet shows them below the header row.
BAD_ROWS = [
    (
        "till",
        "till_bad_rows.csv",
        [
            "till_bad_rows.csv:row 2: field 'quantity': not a whole number (got 'two')",
            "till_bad_rows.csv:row 3: field 'transaction_id': not imported because another row of the same record is bad (got 'T2')",
            "till_bad_rows.csv:row 4: field 'timestamp': not an ISO 8601 timestamp (e.g. 2024-05-01T12:00:00Z) (got '01/05/2024 12:00')",
            "till_bad_rows.csv:row 5: field 'unit_price': not a number (got 'abc')",
            "till_bad_rows.csv:row 6: field 'category': missing required value (got '')",
            "till_bad_rows.csv:row 7: field 'quantity': not a whole number (got '1.5')",
            "till_bad_rows.csv:row 8: field 'line_discount': the row does not match the header",
            "till_bad_rows.csv:row 9: the row does not match the header (Expected Number of Columns: 9 Found: 10)",
        ],
        2,
        8,
    ),
    (
        "store_visits",
        "store_visits_bad_enum.csv",
        [
            "store_visits_bad_enum.csv:row 2: field 'visit_type': unknown value; expected one of footfall, wifi, event (got 'teleport')",
        ],
        2,
        1,
    ),
    (
        "store_visits",
        "store_visits_bad_utf8.csv",
        [
            "store_visits_bad_utf8.csv:row 2: field 'store_id': the row cannot be read (Invalid unicode",
        ],
        2,
        1,
    ),
    (
        "gift_cards",
        "gift_cards_bad.csv",
        [
            "gift_cards_bad.csv:row 2: field 'action': unknown value; expected one of sold, redeemed (got 'lost')",
            "gift_cards_bad.csv:row 3: field 'value': not a number (got 'fifty')",
            "gift_cards_bad.csv:row 4: field 'gift_card_id': missing required value (got '')",
            "gift_cards_bad.csv:row 5: field 'channel': unknown value; expected one of store, web, app (got 'fax')",
        ],
        1,
        4,
    ),
    (
        "customers",
        "customers_bad.csv",
        [
            "customers_bad.csv:row 1: field 'birth_date': not a date (expected YYYY-MM-DD) (got '1990-13-40')",
            "customers_bad.csv:row 2: field 'customer_number': missing required value (got '')",
            "customers_bad.csv:row 3: field 'email_opt_in': ",
        ],
        1,
        3,
    ),
    (
        "ad_spend",
        "ad_spend_bad.csv",
        [
            "ad_spend_bad.csv:row 2: field 'date': not a date (expected YYYY-MM-DD) (got '2024-13-01')",
            "ad_spend_bad.csv:row 3: field 'spend': not a number (got 'ten')",
            "ad_spend_bad.csv:row 4: field 'channel': missing required value (got '')",
        ],
        1,
        3,
    ),
    (
        "email_capture",
        "email_capture_bad.csv",
        [
            "email_capture_bad.csv:row 2: field 'email': missing required value (got '')",
            "email_capture_bad.csv:row 3: field 'timestamp': not an ISO 8601 timestamp (e.g. 2024-05-01T12:00:00Z) (got '04/05/2024 10:10')",
            "email_capture_bad.csv:row 4: field 'email_opt_in': ",
        ],
        1,
        3,
    ),
    (
        "segment",
        "segment_bad.jsonl",
        [
            "segment_bad.jsonl:row 2: not valid JSON (unexpected end of data",
            "segment_bad.jsonl:row 3: field 'event': a track call needs a non-empty event name",
            "segment_bad.jsonl:row 4: field 'properties.revenue': expected a number, got 'lots'",
            "segment_bad.jsonl:row 5: field 'type': unknown type 'teleport'",
            "segment_bad.jsonl:row 6: field 'timestamp': 'yesterday' is not an ISO 8601 timestamp",
            "segment_bad.jsonl:row 7: expected a JSON object, got list",
        ],
        1,
        6,
    ),
]


@pytest.mark.parametrize(
    ("kind", "name", "expected", "imported", "rejected"), BAD_ROWS, ids=[case[1] for case in BAD_ROWS]
)
def test_bad_rows_are_reported_and_good_rows_imported(
    runtime: Runtime, kind: str, name: str, expected: list[str], imported: int, rejected: int
) -> None:
    summary = import_file(runtime, kind, DATA / name)
    assert (summary.rows_imported, summary.rows_rejected) == (imported, rejected), summary.errors
    assert len(summary.errors) == len(expected)
    for error, start in zip(summary.errors, expected, strict=False):
        assert error.startswith(start), (error, start)
    assert f"{rejected:,} rejected" in summary.describe()


def test_bad_json_line_in_a_builtin_kind(runtime: Runtime, tmp_path: Path) -> None:
    path = tmp_path / "visits.jsonl"
    lines = (DATA / "store_visits.jsonl").read_text().splitlines()
    path.write_text("\n".join([lines[0], '{"visit_id": "V9", "store_id": ', "[1, 2]", lines[1]]) + "\n")
    summary = import_file(runtime, "store_visits", path)
    assert (summary.rows_imported, summary.rows_rejected) == (2, 2)
    assert summary.errors == [
        'visits.jsonl:row 2: not a JSON object (expected one {...} per line) (got \'{"visit_id": "V9", "store_id": \')',
        "visits.jsonl:row 3: not a JSON object (expected one {...} per line) (got '[1, 2]')",
    ]


def test_a_bad_line_item_rejects_its_transaction_until_the_file_is_fixed(runtime: Runtime, tmp_path: Path) -> None:
    import_file(runtime, "till", DATA / "till_bad_rows.csv")
    fixed = tmp_path / "fixed.csv"
    fixed.write_text((DATA / "till_bad_rows.csv").read_text().replace(",two,", ",2,"))
    summary = import_file(runtime, "till", fixed)
    assert summary.rows_imported == 2 and summary.rows_duplicate == 2  # T2's two lines now, T1 and T9 again
    order = by_key(rows(runtime), "order_id")["T2"]
    assert order["properties"]["revenue"] == pytest.approx(2 * 1.99 + 2.50)


def _binary(tmp_path: Path) -> Path:
    path = tmp_path / "till.csv"
    path.write_bytes(bytes(range(256)) * 4)
    return path


def _latin1(tmp_path: Path) -> Path:
    path = tmp_path / "till.csv"
    path.write_bytes("transaction_id,store_id\nT1,Köln\n".encode("latin-1").replace(b"store_id", b"st\xf6re"))
    return path


def _copy(name: str, suffix: str) -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        path = tmp_path / f"file{suffix}"
        path.write_bytes((DATA / name).read_bytes())
        return path

    return make


def _text(name: str, text: str) -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return make


# (kind, how to make the file, what the InputError must say)
UNREADABLE = [
    ("till", _copy("till_missing_column.csv", ".csv"), "missing required column 'quantity'; the file has columns"),
    ("till", _copy("empty.csv", ".csv"), "the file is empty; expected a header row"),
    ("till", _binary, "not a CSV file (it holds binary data)"),
    ("till", _latin1, "not a UTF-8 CSV file"),
    ("till", _copy("segment.jsonl", ".csv"), "missing required columns"),
    ("till", _copy("till.csv", ".xlsx"), "unknown file type; expected a name ending in .csv"),
    ("till", _copy("till.csv", ".parquet"), "not a Parquet file"),
    ("store_visits", _text("v.jsonl", "\n\n"), "the file is empty"),
    ("store_visits", _text("v.jsonl", '{"visit_id": "V1"}\n'), "missing required columns 'visit_type', 'timestamp'"),
    ("segment", _copy("till.csv", ".csv"), "the segment kind reads JSON lines"),
    ("segment", _text("s.json", "[1, 2"), "not valid JSON"),
    ("pizza", _copy("till.csv", ".csv"), "unknown source kind 'pizza'; built-in kinds: ad_spend"),
]


@pytest.mark.parametrize(("kind", "make", "expected"), UNREADABLE, ids=[str(i) for i in range(len(UNREADABLE))])
def test_unreadable_files_raise_input_errors_naming_the_file(
    runtime: Runtime, tmp_path: Path, kind: str, make: Callable[[Path], Path], expected: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(InputError) as caught:
        import_file(runtime, kind, path)
    message = str(caught.value)
    assert expected in message
    if kind != "pizza":
        assert path.name in message
    assert rows(runtime) == []


def test_nothing_already_accepted_is_lost_by_a_bad_file(runtime: Runtime) -> None:
    import_file(runtime, "till", DATA / "till.csv")
    with pytest.raises(InputError):
        import_file(runtime, "till", DATA / "till_missing_column.csv")
    assert len(rows(runtime)) == 3


# --- progress, the command line, the benchmark helper -------------------------------------------------


def test_progress_bar_shows_the_current_stage() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with ImportProgress(console, "importing x", delay=0.0) as progress:
        progress.stage("reading big.csv", lambda: 50.0)
        deadline = time.monotonic() + 10
        while "reading big.csv" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "reading big.csv" in out.getvalue()
    quiet = io.StringIO()
    with ImportProgress(Console(file=quiet, force_terminal=True), "importing y", delay=60.0) as progress:
        progress.stage("reading small.csv")
    assert quiet.getvalue() == ""


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMNIWEAVE_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "omniweave", "import", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_imports_a_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = _cli(home, "till", str(DATA / "till.csv"))
    assert done.returncode == 0, done.stderr
    assert "6 rows read, 6 imported as 3 events" in " ".join(done.stdout.split())
    bad = _cli(home, "till", str(DATA / "till_bad_rows.csv"))  # good rows land; a rejected row means exit 1
    assert bad.returncode == 1 and "till_bad_rows.csv:row 2: field 'quantity'" in " ".join(bad.stderr.split())
    unreadable = _cli(home, "till", str(DATA / "till_missing_column.csv"))
    assert unreadable.returncode == 2
    assert "till_missing_column.csv: missing required column 'quantity'" in " ".join(unreadable.stderr.split())
    rt = Runtime(Settings(home=str(home)))
    assert len(rows(rt)) == 3 + 2
    rt.close()


def test_benchmark_till_file_follows_the_till_format(runtime: Runtime, tmp_path: Path) -> None:
    spec_ = importlib.util.spec_from_file_location("bench_till", REPO / "bench" / "_till.py")
    assert spec_ and spec_.loader
    module = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(module)
    path = module.make_till_file(tmp_path / "till.csv", 3000, seed=1)
    assert path.read_text().count("\n") == 3001
    summary = import_file(runtime, "till", path)
    assert (summary.rows_read, summary.rows_imported, summary.rows_rejected) == (3000, 3000, 0), summary.errors[:3]
    assert 700 < summary.records_written < 1300
    identified = (
        runtime.warehouse()
        .sql("SELECT count(*) AS n FROM events WHERE context LIKE '%loyalty_card%'")
        .to_pylist()[0]["n"]
    )
    assert 0 < identified < summary.records_written


def test_a_big_import_writes_one_file_per_day_and_reimports_add_only_new_records(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write path of big imports (days cut out of the result by two threads), then the two ways a
    re-import finds what is logged: every id (the same file) and some ids (a longer file)."""
    from omniweave.collect import service as imports
    from omniweave.storage.eventlog import EVENT_SCHEMA

    monkeypatch.setattr(imports, "_PARALLEL_WRITE_ROWS", 0)
    spec_ = importlib.util.spec_from_file_location("bench_till", REPO / "bench" / "_till.py")
    assert spec_ and spec_.loader
    module = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(module)
    full = module.make_till_file(tmp_path / "till.csv", 3000, seed=2)
    lines = full.read_text().splitlines(keepends=True)
    half = tmp_path / "till_half.csv"
    half.write_text("".join(lines[:1501]))

    first = import_file(runtime, "till", half)
    assert (first.rows_read, first.rows_imported, first.rows_rejected) == (1500, 1500, 0)
    files = runtime.log.files("events")
    folders = {Path(f).parent.name for f in files}
    assert len(files) == len(folders) > 1  # one file per day
    for file in files:
        assert Path(file).name.startswith("import-till-") and Path(file).suffix == ".parquet"
        table = pq.read_table(file)
        assert table.schema.remove_metadata() == EVENT_SCHEMA
        days = {ts.date().isoformat() for ts in table["timestamp"].to_pylist()}
        assert {f"date={day}" for day in days} == {Path(file).parent.name}
    assert not [p for p in (Path(runtime.log.root) / "events").rglob("*") if p.name.startswith(".tmp")]
    assert len(rows(runtime)) == first.records_written

    again = import_file(runtime, "till", half)
    assert (again.rows_imported, again.rows_duplicate, again.records_written) == (0, 1500, 0)

    rest = import_file(runtime, "till", full)
    assert rest.rows_imported + rest.rows_duplicate == 3000 and 0 < rest.rows_imported <= 1500
    events = rows(runtime)
    assert len(events) == len({e["message_id"] for e in events}) == first.records_written + rest.records_written
    orders = {e["properties"]["order_id"] for e in events}
    assert orders == {line.split(",", 1)[0] for line in lines[1:]}


def test_an_import_does_not_load_pandas(tmp_path: Path) -> None:
    """pyarrow loads pandas (a quarter of a second) the first time it converts a Python value; an
    import of good rows converts none, which keeps a one-off `omniweave import` that much faster."""
    code = (
        "import sys\nfrom pathlib import Path\n"
        "from omniweave.collect.service import import_file\nfrom omniweave.runtime import Runtime\n"
        "from omniweave.settings import Settings\n"
        f"runtime = Runtime(Settings(home={str(tmp_path / 'home')!r}))\n"
        f"assert import_file(runtime, 'till', Path({str(DATA / 'till.csv')!r})).rows_imported == 6\n"
        "runtime.close()\nprint('pandas' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
