"""What README's "Using it" block needs from the demo home: a known customer, example files, an A/B test.

`write_examples(folder, home)` writes `<home>/examples/` from the generated world in `folder`
(deterministic: the same world gives the same bytes):

    ann.jsonl           Ann (ann@example.com, +447700900123): two web visits and a cart she left, as
                        Segment events (the `segment` importer's format); no order, so the world's
                        order and revenue totals (checked against its manifest) stay as they are
    ann_visit.csv       her store visit (a `store_visits` file, matched by e-mail at the store's Wi-Fi)
    homepage_hero.jsonl the A/B test `homepage-hero`: an `Experiment Viewed` event (arm A or B, half
                        each by a hash of the visitor) at every web visitor's first page view of the
                        last 28 days, carrying the visitor's cookie-banner choices in
                        `context.consent.categoryPreferences` (advertising yes for about 60 %)
    receipts.csv        a till file (`import till`): Ann's next store purchase
    export.csv, my_mapping.toml   a file of your own and its mapping (`import my_kind … --mapping`)
    crm_export.csv      the demo's CRM file (`omniweave match`)
    paths.csv           a ChannelAttribution paths file (`attribution --paths`)
    orders.csv          transactions, one row per order (`clv fit --transactions`)

`import_examples(runtime, home)` loads what the demo world itself holds (Ann, her visit, the A/B
test) through the public importers. The A/B test has no true effect: the arms are assigned after
the world was simulated, so an analysis should find no difference beyond chance (an A/A truth).
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from omniweave.runtime import Runtime

EXAMPLES = "examples"
ANN_EMAIL = "ann@example.com"
ANN_PHONE = "+447700900123"
ANN_ANONYMOUS_ID = "a11ce5e1-7d0c-4c55-9a11-000000000001"
ANN_CARD = "LC90000001"
EXPERIMENT = "homepage-hero"
EXPERIMENT_DAYS = 28
ADVERTISING_YES = 0.6
"""Share of visitors whose cookie-banner choice allows advertising (a common opt-in rate in the UK)."""
ANALYTICS_YES = 0.8
LOADED_BY_DEMO = (("segment", "ann.jsonl"), ("store_visits", "ann_visit.csv"), ("segment", "homepage_hero.jsonl"))
"""(importer kind, file) the demo imports; the other files are for the README's commands."""
SITE = "https://www.hollinsvale.example"


def _share(text: str) -> float:
    """A stable number in [0, 1) from `text` (the same visitor always gets the same arm and choices)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16) / 16**12


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _web_context(page: str = "/") -> dict[str, Any]:
    return {
        "library": {"name": "analytics.js", "version": "npm:next-1.70.0"},
        "page": {"path": page, "url": f"{SITE}{page}"},
        "consent": {"categoryPreferences": {"Advertising": True, "Analytics": True, "Marketing": True}},
        "locale": "en-GB",
        "timezone": "Europe/London",
    }


def _ann_events(end: date) -> list[dict[str, Any]]:
    """Ann's web history: a visit 20 days before the world ends, and a cart she left 3 days before."""
    first = datetime(end.year, end.month, end.day, 19, 5, tzinfo=UTC) - timedelta(days=20)
    cart = datetime(end.year, end.month, end.day, 20, 40, tzinfo=UTC) - timedelta(days=3)
    product = {"product_id": "SKU-040021", "sku": "SKU-040021", "name": "Essential Loafers", "category": "shoes"}
    item = {**product, "price": 107.99, "quantity": 1}
    rows: list[tuple[datetime, dict[str, Any]]] = [
        (first, {"type": "page", "name": "Home", "properties": {"path": "/"}}),
        (
            first + timedelta(minutes=1),
            {
                "type": "identify",
                "traits": {
                    "email": ANN_EMAIL,
                    "phone": ANN_PHONE,
                    "first_name": "Ann",
                    "last_name": "Example",
                    "birthday": "1988-11-03",
                    "email_opt_in": True,
                    "sms_opt_in": True,
                },
            },
        ),
        (first + timedelta(minutes=2), {"type": "track", "event": "Product Viewed", "properties": product}),
        (first + timedelta(minutes=3), {"type": "page", "name": "Stores", "properties": {"path": "/stores"}}),
        (cart, {"type": "page", "name": "Home", "properties": {"path": "/"}}),
        (
            cart + timedelta(minutes=2),
            {
                "type": "track",
                "event": "Product Viewed",
                "properties": {**product, "product_id": "SKU-040002", "sku": "SKU-040002", "name": "Chelsea Boots"},
            },
        ),
        (
            cart + timedelta(minutes=3),
            {
                "type": "track",
                "event": "Product Added",
                "properties": {**item, "product_id": "SKU-040002", "sku": "SKU-040002", "name": "Chelsea Boots"},
            },
        ),
    ]
    events = []
    for n, (at, body) in enumerate(rows, start=1):
        events.append(
            {
                **body,
                "messageId": f"demo-example-ann-{n:04d}",
                "anonymousId": ANN_ANONYMOUS_ID,
                "timestamp": _iso(at),
                "context": _web_context(str(body.get("properties", {}).get("path", "/"))),
            }
        )
    return events


def _first_page_views(folder: Path, since: datetime) -> Iterator[dict[str, Any]]:
    """Every web visitor's first page view at or after `since`, in the order of the file."""
    seen: set[str] = set()
    with open(folder / "online" / "web.jsonl", "rb") as fh:
        for line in fh:
            event = json.loads(line)
            if event.get("type") != "page":
                continue
            visitor = str(event.get("anonymousId") or event.get("userId"))
            if visitor in seen or datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")) < since:
                continue
            seen.add(visitor)
            yield event


def _exposures(folder: Path, end: date, ann: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`Experiment Viewed` for every web visitor of the last `EXPERIMENT_DAYS` days (Ann included)."""
    since = datetime(end.year, end.month, end.day, tzinfo=UTC) - timedelta(days=EXPERIMENT_DAYS - 1)
    firsts = list(_first_page_views(folder, since)) + [ann[0]]
    out = []
    for n, page in enumerate(firsts, start=1):
        visitor = str(page.get("anonymousId") or page.get("userId"))
        at = datetime.fromisoformat(page["timestamp"].replace("Z", "+00:00")) + timedelta(milliseconds=1)
        arm = "A" if _share(f"{EXPERIMENT}:{visitor}") < 0.5 else "B"
        event: dict[str, Any] = {
            "type": "track",
            "event": "Experiment Viewed",
            "properties": {
                "experiment_id": EXPERIMENT,
                "experiment_name": "Homepage hero image",
                "variation_id": arm,
                "variation_name": {"A": "current hero", "B": "new hero"}[arm],
            },
            "messageId": f"demo-example-hero-{n:07d}",
            "timestamp": _iso(at),
            "context": {
                **page.get("context", {}),
                "consent": {
                    "categoryPreferences": {
                        "Advertising": _share(f"advertising:{visitor}") < ADVERTISING_YES,
                        "Analytics": _share(f"analytics:{visitor}") < ANALYTICS_YES,
                    }
                },
            },
        }
        for key in ("anonymousId", "userId"):
            if page.get(key):
                event[key] = page[key]
        out.append(event)
    return out


def _write_jsonl(path: Path, events: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for event in events:
            fh.write(json.dumps(event, separators=(",", ":"), sort_keys=True) + "\n")


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


MY_MAPPING = """\
# my_mapping.toml: newsletter sign-ups from a partner's export (docs/importers.md, "Custom mappings")
kind = "my_kind"
type = "track"
event = "Signed Up"
channel = "partner"
key = ["signup_id"]
timestamp = "signed_up_at"
state_traits = true

[columns]
signup_id = { required = true }
signed_up_at = { type = "timestamp", required = true }
email = { required = true }

[identifiers]
email = "email"

[traits]
email = "email"
first_name = "first_name"

[properties]
signup_id = "signup_id"
list = "list"
"""


def _orders(folder: Path) -> list[list[Any]]:
    """One row per store receipt with a customer attached (loyalty card, else e-mail): customer, date, amount."""
    totals: dict[tuple[str, str], float] = {}
    dates: dict[str, str] = {}
    with open(folder / "offline" / "till.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            customer = row["loyalty_card"] or row["email"].strip().lower()
            if not customer:
                continue
            key = (row["transaction_id"], customer)
            amount = int(row["quantity"]) * float(row["unit_price"]) - float(row["line_discount"] or 0)
            totals[key] = totals.get(key, 0.0) + amount
            dates[row["transaction_id"]] = row["timestamp"][:10]
    return [[c, dates[t], f"{v:.2f}"] for (t, c), v in sorted(totals.items())]


def _paths(seed: int) -> list[list[Any]]:
    """A ChannelAttribution paths file: distinct paths with conversions, their value and the non-converting."""
    rng = np.random.default_rng(seed)
    channels = ["search", "social", "email", "display", "direct", "store"]
    lift = np.array([0.05, 0.02, 0.04, 0.01, 0.03, 0.06])
    rows: dict[str, list[float]] = {}
    for _ in range(5000):
        touched = rng.choice(len(channels), size=int(rng.integers(1, 5)), replace=True)
        path = " > ".join(channels[i] for i in touched)
        converted = rng.random() < 0.02 + lift[np.unique(touched)].sum()
        row = rows.setdefault(path, [0, 0.0, 0])
        if converted:
            row[0] += 1
            row[1] += round(float(rng.gamma(4.0, 20.0)), 2)
        else:
            row[2] += 1
    return [[p, int(c), f"{v:.2f}", int(n)] for p, (c, v, n) in sorted(rows.items())]


def write_examples(folder: Path, home: Path) -> Path:
    """Write `<home>/examples/` from the world in `folder`; returns that folder."""
    manifest = json.loads((folder / "manifest.json").read_text())
    end = date.fromisoformat(manifest["end_date"])
    out = home / EXAMPLES
    out.mkdir(parents=True, exist_ok=True)
    ann = _ann_events(end)
    _write_jsonl(out / "ann.jsonl", ann)
    _write_jsonl(out / "homepage_hero.jsonl", _exposures(folder, end, ann))
    visit_at = f"{(end - timedelta(days=10)).isoformat()}T13:20:00+00:00"
    _write_csv(
        out / "ann_visit.csv",
        ["visit_id", "store_id", "timestamp", "visit_type", "loyalty_card", "device_id", "email", "phone"],
        [["ann-visit-0001", "S001", visit_at, "wifi", "", "", ANN_EMAIL, ANN_PHONE]],
    )
    bought_at = f"{(end - timedelta(days=1)).isoformat()}T11:42:00+00:00"
    till = ["transaction_id", "store_id", "timestamp", "sku", "product_name", "category", "quantity", "unit_price"]
    till += ["till_id", "line_discount", "coupon_code", "loyalty_card", "email", "phone", "customer_number"]
    till += ["currency", "payment_method"]
    receipt = ["S001-ANN-0001", "S001", bought_at]
    tail = ["S001-T01", "", "", ANN_CARD, ANN_EMAIL, ANN_PHONE, "", "GBP", "card"]
    _write_csv(
        out / "receipts.csv",
        till,
        [
            [*receipt, "SKU-040002", "Classic Chelsea Boots", "shoes", 1, "58.00", *tail],
            [*receipt, "SKU-050023", "Nordic Mascara", "beauty", 2, "12.50", *tail],
        ],
    )
    _write_csv(
        out / "export.csv",
        ["signup_id", "signed_up_at", "email", "first_name", "list"],
        [
            ["NL-0001", f"{end.isoformat()}T08:15:00Z", ANN_EMAIL, "Ann", "weekly"],
            ["NL-0002", f"{end.isoformat()}T09:02:00Z", "bo@example.org", "Bo", "offers"],
        ],
    )
    (out / "my_mapping.toml").write_text(MY_MAPPING, encoding="utf-8")
    shutil.copyfile(folder / "offline" / "customers.csv", out / "crm_export.csv")
    _write_csv(
        out / "paths.csv",
        ["path", "total_conversions", "total_conversion_value", "total_null"],
        _paths(int(manifest["seed"])),
    )
    _write_csv(out / "orders.csv", ["customer", "date", "amount"], _orders(folder))
    return out


def import_examples(runtime: Runtime, folder: Path) -> dict[str, Any]:
    """Write the examples and import what the demo world holds of them (Ann, her visit, the A/B test)."""
    from omniweave.collect.service import import_file

    out = write_examples(folder, runtime.settings.home_path)
    return {f"example:{name}": import_file(runtime, kind, out / name) for kind, name in LOADED_BY_DEMO}
