"""A small demo-like world for privacy tests, built through the public doors: the collector (web and app
events over HTTP), the importers (till receipts, the e-mail platform's export, loyalty sign-ups), the
loader, identity resolution, profiles, segments, an audience export, a coupon and the send ledger.

One customer, Annabel Targetson, has web, app, e-mail and store activity under several identifiers
(`TARGET`); 24 others have the same kinds of activity. Every value is made up.
"""

from __future__ import annotations

import base64
import csv
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from fastapi.testclient import TestClient

from omniweave.collect.loader import load_all
from omniweave.collect.service import import_file
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.shells.api.app import create_app
from omniweave.storage.ops.ledger import Ledger

TARGET = {
    "user_id": "usr-annabel-7781",
    "anonymous_id": "anon-9f3c2e71-annabel",
    "device_id": "dev-4d1e8a22-annabel-ios",
    "email": "annabel.targetson@example.org",
    "phone": "+44 7700 900417",
    "phone_e164": "+447700900417",
    "loyalty_card": "LC-ANNA-5523",
    "customer_number": "CUST-ANNA-0042",
    "first_name": "Annabel",
    "last_name": "Targetson",
}
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@dataclass
class World:
    settings: Settings
    home: Path
    write_key: str


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def person(i: int) -> dict[str, str]:
    """Customer i's identifiers (0 is the target)."""
    if i == 0:
        return TARGET
    return {
        "user_id": f"usr-other-{i:04d}",
        "anonymous_id": f"anon-other-{i:04d}-browser",
        "device_id": f"dev-other-{i:04d}-android",
        "email": f"customer{i:04d}@example.net",
        "phone": f"+44 7700 9{i:05d}",
        "phone_e164": f"+4477009{i:05d}",
        "loyalty_card": f"LC-OTHR-{i:04d}",
        "customer_number": f"CUST-OTHR-{i:04d}",
        "first_name": f"Given{i}",
        "last_name": f"Family{i}",
    }


def _at(day: float) -> str:
    return (START + timedelta(days=day)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def online_events(i: int, rng: random.Random) -> list[dict[str, Any]]:
    p = person(i)
    web = {
        "library": {"name": "analytics.js", "version": "2.0"},
        "consent": {"categoryPreferences": {"Advertising": True, "Analytics": True}},
    }
    app = {"library": {"name": "analytics-ios", "version": "4.1"}, "device": {"id": p["device_id"], "type": "ios"}}
    out: list[dict[str, Any]] = []
    n = 0

    def add(day: float, **event: Any) -> None:
        nonlocal n
        n += 1
        out.append({"messageId": f"on-{i:04d}-{n:03d}", "timestamp": _at(day), **event})

    for d in range(3):
        add(
            d,
            type="page",
            name="Home",
            anonymousId=p["anonymous_id"],
            context=web,
            properties={"url": "https://shop.example/"},
        )
    add(
        3,
        type="identify",
        anonymousId=p["anonymous_id"],
        userId=p["user_id"],
        context=web,
        traits={
            "email": p["email"],
            "phone": p["phone"],
            "firstName": p["first_name"],
            "lastName": p["last_name"],
            "email_opt_in": True,
            "advertising_consent": True,
            "loyalty_card": p["loyalty_card"],
            "customer_number": p["customer_number"],
        },
    )
    add(
        3.1,
        type="track",
        event="Product Viewed",
        userId=p["user_id"],
        context=web,
        properties={"product_id": "SKU-1", "price": 20},
    )
    revenue = round(rng.uniform(20, 120), 2)
    add(
        3.2,
        type="track",
        event="Order Completed",
        userId=p["user_id"],
        context=web,
        properties={
            "order_id": f"W-{i:04d}",
            "revenue": revenue,
            "currency": "EUR",
            "products": [{"product_id": "SKU-1", "price": revenue, "quantity": 1}],
        },
    )
    for d in range(2):
        add(4 + d, type="screen", name="Basket", userId=p["user_id"], context=app)
    if i == 0:
        add(
            6,
            type="track",
            event="Consent Updated",
            userId=p["user_id"],
            context={
                "consent": {"categoryPreferences": {"Advertising": True, "Analytics": False, "Personalization": True}}
            },
        )
    return out


def write_till(path: Path, people: range, rng: random.Random) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "transaction_id",
                "store_id",
                "till_id",
                "timestamp",
                "sku",
                "product_name",
                "category",
                "quantity",
                "unit_price",
                "line_discount",
                "coupon_code",
                "loyalty_card",
                "email",
                "phone",
                "customer_number",
                "currency",
                "payment_method",
            ]
        )
        for i in people:
            p = person(i)
            for k in range(2):
                w.writerow(
                    [
                        f"T-{i:04d}-{k}",
                        "S01",
                        "2",
                        _at(7 + k),
                        "SKU-2",
                        "Sourdough",
                        "bakery",
                        1,
                        f"{rng.uniform(3, 30):.2f}",
                        "",
                        "",
                        p["loyalty_card"],
                        p["email"],
                        "",
                        p["customer_number"],
                        "EUR",
                        "card",
                    ]
                )


def write_email_export(path: Path, people: range) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "event_id",
                "timestamp",
                "event_type",
                "email",
                "campaign_id",
                "campaign_name",
                "subject",
                "link_url",
                "bounce_type",
            ]
        )
        for i in people:
            p = person(i)
            for k, kind in enumerate(("sent", "delivered", "opened", "clicked")):
                w.writerow(
                    [
                        f"E-{i:04d}-{k}",
                        _at(8 + k / 24),
                        kind,
                        p["email"],
                        "CMP-1",
                        "Spring",
                        "Spring is here",
                        "https://shop.example/spring" if kind == "clicked" else "",
                        "",
                    ]
                )


def build_world(tmp: Path, others: int = 24) -> World:
    """The world in `tmp/home` (a few hundred events); returns its settings."""
    home = tmp / "home"
    settings = Settings(home=str(home))
    runtime = Runtime(settings)
    rng = random.Random(7)
    people = range(others + 1)
    try:
        _, write_key = runtime.store.create_source("web")
        with TestClient(create_app(settings)) as client:
            batch = [e for i in people for e in online_events(i, rng)]
            for start in range(0, len(batch), 50):
                body = orjson.dumps({"batch": batch[start : start + 50]})
                r = client.post(
                    "/v1/batch",
                    content=body,
                    headers={"Authorization": basic(write_key), "Content-Type": "application/json"},
                )
                assert r.status_code == 200, r.text
        till, mails = tmp / "till.csv", tmp / "email_export.csv"
        write_till(till, people, rng)
        write_email_export(mails, people)
        import_file(runtime, "till", till)
        import_file(runtime, "email_export", mails)
        load_all(runtime.store, runtime.log)
        derive(runtime)
        # the ledger and a coupon: messages omniweave sent
        from omniweave.activate.service.coupons import create_pool, issue

        pids = person_ids(runtime)
        create_pool(runtime, "welcome", kind="unique", length=8)
        ledger = Ledger(runtime.store.engine)
        for i in people:
            p = person(i)
            key = f"send-{i:04d}"
            ledger.insert(
                {
                    "key": key,
                    "channel": "email",
                    "to_address": p["email"],
                    "person_id": pids[p["email"]],
                    "campaign": "spring",
                    "message_name": "welcome",
                    "message_class": "promotional",
                    "content": orjson.dumps({"subject": f"Hello {p['first_name']} {p['last_name']}", "to": p["email"]}),
                }
            )
            issue(runtime, "welcome", person_id=pids[p["email"]], send_key=key, channel="email", campaign="spring")
        # she unsubscribes through the link of her e-mail: the suppression list and an `Unsubscribed` event
        from omniweave.channels.email.message import unsubscribe_token
        from omniweave.channels.links import sign
        from omniweave.channels.service import unsubscribe
        from omniweave.identity.service.resolve import resolve
        from omniweave.profiles.service.build import build_profiles

        unsubscribe(
            runtime, unsubscribe_token(lambda p, payload: sign(runtime, p, payload), "send-0000", TARGET["email"])
        )
        load_all(runtime.store, runtime.log)
        resolve(runtime)
        build_profiles(runtime)
    finally:
        runtime.close()
    return World(settings, home, write_key)


def derive(runtime: Runtime) -> None:
    """Identities, profiles, segment members and an audience export, as the pipeline makes them."""
    from omniweave.activate.service.audiences import export_audience
    from omniweave.identity.service.resolve import resolve
    from omniweave.profiles.service.build import build_profiles
    from omniweave.segments.service.evaluate import evaluate_segments

    resolve(runtime)
    build_profiles(runtime)
    evaluate_segments(runtime)
    export_audience(runtime, "omnichannel_buyers", "meta")


def person_ids(runtime: Runtime) -> dict[str, str]:
    rows = runtime.warehouse().sql("SELECT value, person_id FROM identities WHERE kind = 'email'").to_pylist()
    return {r["value"]: r["person_id"] for r in rows}


def revenue_by_person(runtime: Runtime) -> dict[str, float]:
    """Each other customer's revenue and orders from the log (by user id): an aggregate that must not move."""
    rows = (
        runtime.warehouse()
        .sql(
            "SELECT user_id, count(*) AS n, sum(TRY_CAST(properties_revenue AS DOUBLE)) AS revenue FROM events "
            "WHERE user_id IS NOT NULL GROUP BY user_id"
        )
        .to_pylist()
    )
    return {r["user_id"]: (r["n"], round(r["revenue"] or 0.0, 2)) for r in rows}


def files_containing(home: Path, needles: list[bytes]) -> dict[str, list[str]]:
    """Every file under `home` holding one of `needles` (case-insensitive bytes), with the needles found."""
    found: dict[str, list[str]] = {}
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes().lower()
            hits = [n.decode() for n in needles if n.lower() in data]
            if hits:
                found[str(path.relative_to(home))] = hits
    return found


def wait_until(check: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()
