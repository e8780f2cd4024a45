"""Profile build benchmark: `build_profiles` on DuckDB over a synthetic event log, with peak memory.

Generates (once; cached by size and seed) a Segment-spec event log in the project's own layout —
`<warehouse>/events/date=YYYY-MM-DD/*.parquet` written through `EventLog.append`, JSON columns
`context`, `properties`, `traits` as the collector stores them — and the `identities` dataset
(kind, value, person_id) that `resolve` would write. The mix is a retailer's year: page views,
product views, cart and checkout steps, orders online (web, app) and in store (till receipts with
their own anonymous ids) with revenue, products and categories; e-mail sends, deliveries, opens
and clicks; SMS and push with promotions (coupon, discount, free shipping, event), coupons issued
and redeemed, store visits and events, identify calls with consent traits, unsubscribes, and
consent-manager events carrying `context.consent.categoryPreferences`; several channels,
devices (desktop, mobile and tablet browsers, iOS and Android apps) and time zones.

Then runs `build_profiles(runtime)` (DuckDB, the default engine) end to end (reading the log, computing,
writing the `profiles` dataset) in a fresh process and prints seconds, rows and that process's
peak RSS (DuckDB's memory is inside it). Target (issue 3): 1,000,000 persons / 30,000,000 events
in ≤ 60 s.

    python bench/profiles.py [--persons 1000000] [--events 30000000] [--seed 1] [--threads N]
                             [--cache DIR] [--repeat 1] [--memory-limit 4GB]

`--memory-limit` is the `memory_limit` setting of the build (default: the setting's default, half the
machine); issue 27 asks for a peak RSS of at most 4 GB at 1 M persons and 30 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SRC = Path(__file__).resolve().parents[1] / "src"
FORMAT_VERSION = 4  # bump when the generator changes, so that cached logs are regenerated
START = np.datetime64("2025-07-01T00:00:00", "us")
DAYS = 365
CHUNK_EVENTS = 1_000_000

ZONES = (
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Australia/Sydney",
)
ZONE_SHARE = (0.45, 0.12, 0.1, 0.12, 0.06, 0.07, 0.04, 0.04)
ZONE_OFFSET = (0, 1, 1, -5, -6, -8, 9, 10)  # hours from UTC, close enough to place activity in the day
AGENTS = (  # desktop, desktop, mobile, mobile, tablet
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/604.1",
)
AGENT_DEVICES = ("desktop", "desktop", "mobile", "mobile", "tablet")  # events.normalize.device_class of AGENTS
AGENT_SHARE = (0.3, 0.15, 0.3, 0.17, 0.08)
CATEGORIES = ("shoes", "bags", "hats", "coats", "dresses", "shirts", "jeans", "beauty", "home", "toys", "food", "sport")
PRODUCTS = 5_000
PROMOTIONS = ("coupon", "discount", "free_shipping", "event")
PURPOSES = ("Advertising", "Analytics", "Marketing", "Personalization")

# event kind -> share of all events; a kind is an event name with where it happens
MIX = {
    "page": 0.26,
    "screen": 0.06,
    "product_viewed": 0.18,
    "product_list_viewed": 0.05,
    "product_added": 0.035,
    "cart_viewed": 0.02,
    "checkout_started": 0.01,
    "order_online": 0.012,
    "order_store": 0.008,
    "email_sent": 0.11,
    "email_delivered": 0.1,
    "email_opened": 0.04,
    "email_clicked": 0.01,
    "sms_sent": 0.02,
    "sms_clicked": 0.003,
    "push_received": 0.02,
    "push_tapped": 0.003,
    "promotion_viewed": 0.01,
    "promotion_clicked": 0.002,
    "coupon_issued": 0.005,
    "coupon_applied": 0.002,
    "store_visited": 0.01,
    "event_attended": 0.0005,
    "identify": 0.005,
    "unsubscribed": 0.0005,
    "consent_updated": 0.0025,
}

ELIGIBLE = {  # kinds that only happen to some persons: drawn among those with this flag
    "screen": "has_app",
    "push_received": "has_app",
    "push_tapped": "has_app",
    "sms_sent": "has_phone",
    "sms_clicked": "has_phone",
    "email_sent": "has_email",
    "email_delivered": "has_email",
    "email_opened": "has_email",
    "email_clicked": "has_email",
    "unsubscribed": "has_email",
    "store_visited": "has_card",
    "event_attended": "has_card",
    "consent_updated": "cmp",
}


# --- people ---------------------------------------------------------------------------------------


def make_people(persons: int, seed: int) -> dict[str, np.ndarray]:
    """Fixed traits per person: activity, time zone, browser, app, identifiers, consent."""
    rng = np.random.default_rng([seed, 0])
    return {
        "activity": rng.lognormal(0.0, 1.0, persons),
        "zone": rng.choice(len(ZONES), persons, p=ZONE_SHARE),
        "agent": rng.choice(len(AGENTS), persons, p=AGENT_SHARE),
        "app": (app := rng.choice(3, persons, p=(0.55, 0.25, 0.2))),  # none, ios, android
        "has_app": app > 0,
        "hour": np.clip(rng.normal(13, 4, persons), 6, 22),  # local hour they are usually active
        "has_user": rng.random(persons) < 0.6,
        "has_email": rng.random(persons) < 0.7,
        "has_phone": rng.random(persons) < 0.4,
        "has_card": rng.random(persons) < 0.3,
        "second_browser": rng.random(persons) < 0.25,
        "cmp": rng.random(persons) < 0.5,  # their browser has a consent manager: web events carry consent
        "consent": rng.random((persons, len(PURPOSES))) < (0.45, 0.8, 0.5, 0.65),
        "email_opt_in": rng.random(persons) < 0.7,
        "sms_opt_in": rng.random(persons) < 0.35,
    }


def identities_table(people: dict[str, np.ndarray], till_person: np.ndarray, till_ids: pa.Array) -> pa.Table:
    """(kind, value, person_id) for every identifier, as `resolve` writes them."""
    n = people["activity"].size
    idx = np.arange(n)
    parts: list[tuple[str, pa.Array, np.ndarray]] = [("anonymous_id", _ids("a", idx), idx)]
    for kind, flag, prefix in (
        ("anonymous_id", "second_browser", "b"),
        ("user_id", "has_user", "u"),
        ("phone", "has_phone", "+4477009"),
        ("loyalty_card", "has_card", "L"),
    ):
        chosen = idx[people[flag]]
        parts.append((kind, _ids(prefix, chosen), chosen))
    chosen = idx[people["has_email"]]
    parts.append(("email", _cat("p", _num(chosen), "@example.com"), chosen))
    parts.append(("anonymous_id", till_ids, till_person))
    return pa.table(
        {
            "kind": pa.array(np.concatenate([np.full(len(v), k, dtype=object) for k, v, _ in parts]), pa.string()),
            "value": pa.concat_arrays([v for _, v, _ in parts]),
            "person_id": _ids("P", np.concatenate([p for _, _, p in parts])),
        }
    )


# --- string building, vectorised ------------------------------------------------------------------


def _num(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _ids(prefix: str, values: np.ndarray) -> pa.Array:
    return _cat(prefix, _num(values))


def _cat(*parts: Any) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _pick(options: tuple[str, ...], index: np.ndarray) -> pa.Array:
    return pc.take(pa.array(options, pa.string()), pa.array(index))


def _bool(flags: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(flags), "true", "false")


def _when(flags: np.ndarray, text: pa.Array | str) -> pa.Array:
    return pc.if_else(pa.array(flags), text, "")


# --- events ---------------------------------------------------------------------------------------


class Context(NamedTuple):
    """An event's `context` JSON and the log's flat copies of it (storage.eventlog.CONTEXT_COLUMNS)."""

    json: pa.Array | str
    timezone: pa.Array | str
    device: pa.Array | str
    consent: pa.Array | str


class Chunk:
    """The events of one chunk of days, built kind by kind as Arrow columns."""

    def __init__(
        self,
        people: dict[str, np.ndarray],
        rng: np.random.Generator,
        first_day: int,
        days: int,
        first_message: int,
        till_start: int,
    ):
        from omniweave.events.normalize import PROPERTY_KEYS  # generate() puts src on the path

        self.p, self.rng, self.first_day, self.days = people, rng, first_day, days
        self.property_keys = PROPERTY_KEYS
        self.next_message, self.next_till = first_message, till_start
        self.cdfs: dict[str | None, np.ndarray] = {}
        self.tables: list[pa.Table] = []
        self.till_person: list[np.ndarray] = []

    def persons(self, count: int, only: str | None = None) -> np.ndarray:
        """`count` persons drawn by activity, among those with the flag `only` (e.g. has_email) if given."""
        if only not in self.cdfs:
            weight = self.p["activity"] if only is None else np.where(self.p[only], self.p["activity"], 0.0)
            self.cdfs[only] = np.cumsum(weight) / weight.sum()
        cdf = self.cdfs[only]
        return np.minimum(np.searchsorted(cdf, self.rng.random(count), side="right"), cdf.size - 1)

    def times(self, who: np.ndarray) -> np.ndarray:
        """UTC instants around each person's usual local hour, on a random day of the chunk."""
        day = self.first_day + self.rng.integers(0, self.days, who.size)
        local = self.p["hour"][who] + self.rng.normal(0, 2.5, who.size)
        utc_hours = local - np.asarray(ZONE_OFFSET)[self.p["zone"][who]]
        micros = (day * 86400 + np.clip(utc_hours * 3600, -86399, 2 * 86399)) * 1_000_000
        return START + micros.astype("timedelta64[us]")

    def add(
        self,
        who: np.ndarray,
        event: str | None,
        type_: str,
        channel: pa.Array | str,
        context: Context | str,
        properties: pa.Array | str,
        traits: pa.Array | str = "{}",
        user: np.ndarray | None = None,
        anonymous: pa.Array | None = None,
        flat: dict[str, pa.Array | str] | None = None,
    ) -> None:
        """Events of `who`; `flat` holds the text of the PROPERTY_KEYS the `properties` have (the log's
        `properties_<key>` columns, "" for the others), so the log needs not parse the JSON it was given."""
        n = who.size
        if n == 0:
            return
        ts = pa.array(self.times(who), pa.timestamp("us", tz="UTC"))
        idx = np.arange(self.next_message, self.next_message + n)
        self.next_message += n
        with_user = self.p["has_user"][who] if user is None else user
        user_ids = pc.if_else(pa.array(with_user), _ids("u", who), pa.scalar(None, pa.string()))
        if anonymous is None:
            second = self.p["second_browser"][who] & (self.rng.random(n) < 0.3)
            anonymous = pc.if_else(pa.array(second), _ids("b", who), _ids("a", who))

        def full(value: pa.Array | str | None) -> pa.Array:
            return value if isinstance(value, pa.Array) else pa.repeat(pa.scalar(value, pa.string()), n)

        null_ts = pa.nulls(n, pa.timestamp("us", tz="UTC"))
        if isinstance(context, str):  # a context with none of the flat fields
            context = Context(context, "", "", "")
        self.tables.append(
            pa.table(
                {
                    "message_id": _ids("bench-", idx),
                    "source": full("bench"),
                    "type": full(type_),
                    "event": full(event),
                    "user_id": user_ids,
                    "anonymous_id": anonymous,
                    "group_id": full(None),
                    "previous_id": full(None),
                    "channel": full(channel),
                    "timestamp": ts,
                    "original_timestamp": ts,
                    "sent_at": null_ts,
                    "received_at": ts,
                    "campaign_source": full(None),
                    "campaign_medium": full(None),
                    "campaign_name": full(None),
                    "context": full(context.json),
                    "properties": full(properties),
                    "traits": full(traits),
                    "integrations": full("{}"),
                    "context_timezone": full(context.timezone),
                    "context_device": full(context.device),
                    "context_consent": full(context.consent),
                    **{f"properties_{key}": full((flat or {}).get(key, "")) for key in self.property_keys},
                }
            )
        )

    # contexts
    def web_context(self, who: np.ndarray) -> Context:
        zone, agent = _pick(ZONES, self.p["zone"][who]), _pick(AGENTS, self.p["agent"][who])
        consent = self.p["consent"][who]
        changed = self.rng.random(who.size) < 0.02  # a few events carry the choice the person made that day
        consent = np.where(changed[:, None], ~consent, consent)
        prefs = _cat(
            "{",
            *(
                part
                for i, name in enumerate(PURPOSES)
                for part in (("," if i else "") + f'"{name}":', _bool(consent[:, i]))
            ),
            "}",
        )
        cmp = self.p["cmp"][who]
        text = _cat(
            '{"library":{"name":"analytics.js","version":"2.1"},"locale":"en-GB","timezone":"',
            zone,
            '","userAgent":"',
            agent,
            '"',
            _when(cmp, _cat(',"consent":{"categoryPreferences":', prefs, "}")),
            "}",
        )
        return Context(text, zone, _pick(AGENT_DEVICES, self.p["agent"][who]), _when(cmp, prefs))

    def app_context(self, who: np.ndarray) -> Context:
        os_ = np.maximum(self.p["app"][who], 1)
        lib = _pick(("", "analytics-ios", "analytics-android"), os_)
        dev = _pick(("", "ios", "android"), os_)
        zone = _pick(ZONES, self.p["zone"][who])
        text = _cat(
            '{"library":{"name":"', lib, '","version":"4.1"},"device":{"type":"', dev, '"},"timezone":"', zone, '"}'
        )
        return Context(text, zone, "mobile", "")

    def online(self, who: np.ndarray) -> tuple[pa.Array, Context]:
        """(channel, context): the app for app users half of the time, else their browser."""
        app = pa.array((self.p["app"][who] > 0) & (self.rng.random(who.size) < 0.5))
        on_app, on_web = self.app_context(who), self.web_context(who)
        return pc.if_else(app, "app", "web"), Context(
            *(pc.if_else(app, a, w) for a, w in zip(on_app, on_web, strict=True))
        )

    def products(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array, pa.Array]:
        product = (self.rng.pareto(1.1, n) * 40).astype(np.int64) % PRODUCTS
        category = product % len(CATEGORIES)
        price = np.round(5 + (product % 97) * 1.5, 2)
        return product, category, price, _ids("SKU-", product), _pick(CATEGORIES, category)

    def order(self, who: np.ndarray, store: bool) -> None:
        n = who.size
        items = self.rng.choice((1, 2, 3), n, p=(0.6, 0.3, 0.1))
        revenue = np.zeros(n)
        lines = []
        for k in range(3):
            _, _, price, sku, cat = self.products(n)
            qty = self.rng.choice((1, 2), n, p=(0.85, 0.15))
            revenue += np.where(items > k, price * qty, 0)
            line = _cat(
                "" if k == 0 else ",",
                '{"product_id":"',
                sku,
                '","name":"Item ',
                sku,
                '","category":"',
                cat,
                '","price":',
                _num(price),
                ',"quantity":',
                _num(qty),
                "}",
            )
            lines.append(line if k == 0 else _when(items > k, line))
        orders = _ids("o", np.arange(self.next_message, self.next_message + n))
        revenue = np.round(revenue, 2)
        flat: dict[str, pa.Array | str] = {"revenue": _num(revenue), "products": _cat("[", *lines, "]")}
        if store:
            till = np.arange(self.next_till, self.next_till + n)
            self.next_till += n
            self.till_person.append(who)
            props = _cat(
                '{"order_id":"',
                orders,
                '","revenue":',
                _num(revenue),
                ',"currency":"GBP","channel":"store","store_id":"S',
                _num(who % 120),
                '","products":[',
                *lines,
                "]}",
            )
            self.add(
                who,
                "Order Completed",
                "track",
                "store",
                "{}",
                props,
                user=np.zeros(n, bool),
                anonymous=_ids("offline:till:T", till),
                flat=flat,
            )
        else:
            channel, context = self.online(who)
            props = _cat(
                '{"order_id":"',
                orders,
                '","revenue":',
                _num(revenue),
                ',"currency":"GBP","channel":"',
                channel,
                '","products":[',
                *lines,
                "]}",
            )
            self.add(who, "Order Completed", "track", channel, context, props, flat=flat)

    def promoted(self, who: np.ndarray, event: str, channel: str, response: bool) -> None:
        promo = _pick(PROMOTIONS, self.rng.choice(4, who.size, p=(0.3, 0.4, 0.2, 0.1)))
        campaign = _ids("c", self.rng.integers(0, 400, who.size))
        props = _cat('{"channel":"', channel, '","campaign_id":"', campaign, '","promotion":"', promo, '"}')
        context = self.app_context(who) if channel == "push" and response else "{}"
        self.add(who, event, "track", channel, context, props, flat={"campaign_id": campaign, "promotion": promo})

    def build(self, kind: str, count: int) -> None:
        who = self.persons(count, ELIGIBLE.get(kind))
        p = self.p
        if kind in (
            "page",
            "product_viewed",
            "product_list_viewed",
            "product_added",
            "cart_viewed",
            "checkout_started",
        ):
            channel, context = self.online(who) if kind != "page" else ("web", self.web_context(who))
            flat: dict[str, pa.Array | str] = {}
            if kind in ("product_viewed", "product_added"):
                _, _, price, sku, cat = self.products(count)
                flat = {"product_id": sku, "category": cat}
                props = _cat(
                    '{"product_id":"',
                    sku,
                    '","name":"Item ',
                    sku,
                    '","category":"',
                    cat,
                    '","price":',
                    _num(price),
                    "}",
                )
            elif kind == "product_list_viewed":
                props = _cat('{"list_id":"', _pick(CATEGORIES, self.rng.integers(0, len(CATEGORIES), count)), '"}')
            elif kind == "page":
                props = _cat('{"path":"/p/', _num(self.rng.integers(0, 300, count)), '"}')
            else:
                props = "{}"
            name = {
                "page": None,
                "product_viewed": "Product Viewed",
                "product_list_viewed": "Product List Viewed",
                "product_added": "Product Added",
                "cart_viewed": "Cart Viewed",
                "checkout_started": "Checkout Started",
            }[kind]
            logged_in = p["has_user"][who] & (self.rng.random(count) < 0.5)
            self.add(
                who, name, "page" if kind == "page" else "track", channel, context, props, user=logged_in, flat=flat
            )
        elif kind == "screen":
            self.add(who, "Home", "screen", "app", self.app_context(who), '{"name":"Home"}')
        elif kind in ("order_online", "order_store"):
            self.order(who, store=kind == "order_store")
        elif kind.startswith("email_"):
            event = {
                "email_sent": "Email Sent",
                "email_delivered": "Email Delivered",
                "email_opened": "Email Opened",
                "email_clicked": "Email Link Clicked",
            }[kind]
            if kind in ("email_sent", "email_clicked"):
                self.promoted(who, event, "email", response=kind == "email_clicked")
            else:
                campaign = _ids("c", self.rng.integers(0, 400, who.size))
                props = _cat('{"campaign_id":"', campaign, '"}')
                self.add(who, event, "track", "email", "{}", props, flat={"campaign_id": campaign})
        elif kind in ("sms_sent", "sms_clicked"):
            self.promoted(
                who, "Message Sent" if kind == "sms_sent" else "Message Link Clicked", "sms", kind != "sms_sent"
            )
        elif kind in ("push_received", "push_tapped"):
            self.promoted(
                who,
                "Push Notification Received" if kind == "push_received" else "Push Notification Tapped",
                "push",
                kind == "push_tapped",
            )
        elif kind in ("promotion_viewed", "promotion_clicked"):
            self.promoted(
                who,
                "Promotion Viewed" if kind == "promotion_viewed" else "Promotion Clicked",
                "web",
                kind == "promotion_clicked",
            )
        elif kind == "coupon_issued":
            issued = _pick(("email", "sms", "push", "direct_mail"), self.rng.integers(0, 4, count))
            coupon = _num(self.rng.integers(0, 10**6, count))
            campaign = _ids("c", self.rng.integers(0, 400, count))
            props = _cat(
                '{"coupon_id":"K',
                coupon,
                '","channel":"',
                issued,
                '","campaign_id":"',
                campaign,
                '","promotion":"coupon"}',
            )
            flat = {"campaign_id": campaign, "promotion": "coupon"}
            self.add(who, "Coupon Issued", "track", issued, "{}", props, flat=flat)
        elif kind == "coupon_applied":
            issued = _pick(("email", "sms", "push", "direct_mail"), self.rng.integers(0, 4, count))
            redeemed = _pick(("web", "store"), self.rng.integers(0, 2, count))
            props = _cat(
                '{"coupon_id":"K',
                _num(self.rng.integers(0, 10**6, count)),
                '","channel":"',
                redeemed,
                '","issued_channel":"',
                issued,
                '","redeemed_channel":"',
                redeemed,
                '","discount":5}',
            )
            flat = {"issued_channel": issued, "redeemed_channel": redeemed}
            self.add(who, "Coupon Applied", "track", redeemed, "{}", props, flat=flat)
        elif kind in ("store_visited", "event_attended"):
            props = _cat('{"channel":"store","store_id":"S', _num(who % 120), '"}')
            self.add(
                who,
                "Store Visited" if kind == "store_visited" else "Store Event Attended",
                "track",
                "store",
                "{}",
                props,
                user=np.zeros(who.size, bool),
                anonymous=_ids("a", who),
            )
        elif kind == "identify":
            traits = _cat(
                '{"email":"p',
                _num(who),
                '@example.com","first_name":"Name',
                _num(who % 5000),
                '","email_opt_in":',
                _bool(p["email_opt_in"][who] ^ (self.rng.random(count) < 0.1)),
                ',"sms_opt_in":',
                _bool(p["sms_opt_in"][who]),
                "}",
            )
            channel, context = self.online(who)
            self.add(who, None, "identify", channel, context, "{}", traits)
        elif kind == "unsubscribed":
            self.add(who, "Unsubscribed", "track", "email", "{}", '{"list":"newsletter"}')
        elif kind == "consent_updated":
            self.add(who, "Segment Consent Preference Updated", "track", "web", self.web_context(who), "{}")
        else:
            raise ValueError(f"unknown event kind {kind!r}")

    def table(self) -> pa.Table:
        table = pa.concat_tables(self.tables)
        return table.take(pc.sort_indices(table, [("timestamp", "ascending")]))


def generate(home: Path, persons: int, events: int, seed: int) -> tuple[int, int]:
    """Write the event log and identities under `home`; returns (events, identity rows) written."""
    sys.path.insert(0, str(SRC))
    from omniweave.runtime import Runtime
    from omniweave.settings import Settings
    from omniweave.storage.warehouse import write_dataset

    runtime = Runtime(Settings(home=str(home)))
    people = make_people(persons, seed)
    chunks = max(1, -(-events // CHUNK_EVENTS))
    bounds = np.linspace(0, DAYS, chunks + 1).astype(int)
    written, till = 0, 0
    till_people: list[np.ndarray] = []
    share = np.asarray(list(MIX.values()))
    for c in range(chunks):
        rng = np.random.default_rng([seed, 1, c])
        size = events // chunks + (1 if c < events % chunks else 0)
        chunk = Chunk(people, rng, int(bounds[c]), int(bounds[c + 1] - bounds[c]), written, till)
        for kind, count in zip(MIX, rng.multinomial(size, share / share.sum()), strict=True):
            chunk.build(kind, int(count))
        table = chunk.table()
        days = pc.cast(table.column("timestamp"), pa.date32()).to_numpy()
        cuts = np.flatnonzero(np.diff(days.astype(np.int64))) + 1
        for start, stop in zip(np.r_[0, cuts], np.r_[cuts, days.size], strict=True):
            runtime.log.append("events", table.slice(start, stop - start), f"bench-{c:04d}")
        written += table.num_rows
        till = chunk.next_till
        till_people.extend(chunk.till_person)
        print(f"  chunk {c + 1}/{chunks}: {written:,} events written", flush=True)
    till_person = np.concatenate(till_people) if till_people else np.zeros(0, np.int64)
    identities = identities_table(people, till_person, _ids("offline:till:T", np.arange(till)))
    write_dataset(runtime.log, "identities", identities)
    return written, identities.num_rows


# --- the measured build ---------------------------------------------------------------------------


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_build(home: str, threads: int | None, memory_limit: str = "") -> dict[str, Any]:
    """In this (fresh) process: build the profiles once; seconds, rows and peak RSS."""
    sys.path.insert(0, str(SRC))
    from omniweave.profiles.service.build import build_profiles
    from omniweave.runtime import Runtime
    from omniweave.settings import Settings

    runtime = Runtime(Settings(home=home, memory_limit=memory_limit))
    baseline = _peak_mb()
    cpu = _cpu_seconds()
    started = time.perf_counter()
    summary = build_profiles(runtime, traits=[], threads=threads)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "cpu": _cpu_seconds() - cpu,
        "persons": summary.persons,
        "events": summary.events,
        "buyers": summary.buyers,
        "peak_mb": _peak_mb(),
        "baseline_mb": baseline,
    }


def _cpu_seconds() -> float:
    """User + system CPU time of this process: steadier than wall time when others share the machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _machine_check(duckdb: Any) -> float:
    """Seconds for a fixed query of the kind a build is made of: how fast this machine is right now.

    The same code has built the profiles in 80 s and in 150 s on these shared machines an hour apart;
    this figure, printed next to the builds, tells such a spell from a change in the code."""
    con = duckdb.connect()
    try:
        started = time.perf_counter()
        con.sql("SELECT count(DISTINCT i % 1000003), sum(i) FROM range(100000000) t(i)").fetchall()
        return time.perf_counter() - started
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=30_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: DuckDB's, one per core)")
    parser.add_argument("--repeat", type=int, default=1, help="builds, each in a fresh process")
    parser.add_argument("--memory-limit", default="", help="the memory_limit setting (default: half the machine)")
    parser.add_argument(
        "--cache", default=os.environ.get("OMNIWEAVE_BENCH_CACHE", str(Path(tempfile.gettempdir()) / "omniweave-bench"))
    )
    parser.add_argument("--run-build", help=argparse.SUPPRESS)  # internal: the measured child process
    parser.add_argument("--generate", help=argparse.SUPPRESS)  # internal: the generating child process
    args = parser.parse_args()
    if args.run_build:
        print(json.dumps(run_build(args.run_build, args.threads, args.memory_limit)))
        return
    if args.generate:
        started = time.perf_counter()
        events, identities = generate(Path(args.generate), args.persons, args.events, args.seed)
        meta = {"events": events, "identities": identities, "seconds": time.perf_counter() - started}
        (Path(args.generate) / "generated.json").write_text(json.dumps(meta))
        return

    home = Path(args.cache) / f"profiles-v{FORMAT_VERSION}-{args.persons}p-{args.events}e-s{args.seed}"
    done = home / "generated.json"
    if done.exists():
        meta = json.loads(done.read_text())
        print(f"event log: {meta['events']:,} events, {meta['identities']:,} identities (cached in {home})")
    else:
        # generated in a child: a process's ru_maxrss survives fork and exec, so the measured builds
        # must not descend from a process that once held the generated tables
        shutil.rmtree(home, ignore_errors=True)
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--generate",
                str(home),
                "--persons",
                str(args.persons),
                "--events",
                str(args.events),
                "--seed",
                str(args.seed),
            ],
            check=True,
        )
        meta = json.loads(done.read_text())
        print(
            f"event log: {meta['events']:,} events, {meta['identities']:,} identities for {args.persons:,} "
            f"persons, generated in {meta['seconds']:.1f} s into {home}"
        )
    size = sum(f.stat().st_size for f in (home / "warehouse" / "events").rglob("*.parquet"))
    files = sum(1 for _ in (home / "warehouse" / "events").rglob("*.parquet"))
    import duckdb

    print(
        f"python {platform.python_version()}, duckdb {duckdb.__version__}, {os.cpu_count()} cpus, "
        f"threads {args.threads or 'default'}, memory_limit {args.memory_limit or 'default (half the machine)'}; "
        f"events on disk: {files:,} files, {size / 2**20:,.0f} MB"
    )
    print(
        f"machine check: {_machine_check(duckdb):.2f} s for a fixed DuckDB query (a distinct count over 100 M "
        "integers; compare it before comparing builds across sessions or machines)"
    )
    print(
        f"{'run':>4} {'seconds':>9} {'cpu s':>8} {'events/s':>12} {'profiles':>10} {'events':>12} {'buyers':>10} "
        f"{'peak RSS MB':>12} {'after imports MB':>17} {'load avg':>9}"
    )
    for run in range(1, args.repeat + 1):
        command = [sys.executable, __file__, "--run-build", str(home)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        if args.memory_limit:
            command += ["--memory-limit", args.memory_limit]
        out = subprocess.run(command, check=True, capture_output=True, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{run:>4} {r['seconds']:>9.1f} {r['cpu']:>8.1f} {r['events'] / r['seconds']:>12,.0f} {r['persons']:>10,} "
            f"{r['events']:>12,} {r['buyers']:>10,} {r['peak_mb']:>12,.0f} {r['baseline_mb']:>17,.0f} "
            f"{os.getloadavg()[0]:>9.1f}"
        )
    print(f"machine check after the runs: {_machine_check(duckdb):.2f} s")
    print(
        "target (issue 27): 1,000,000 persons / 30,000,000 events in ≤ 30 s and ≤ 4 GB peak RSS; cpu s = user + system time of the "
        "build process (2 threads: about twice the wall time on an idle 2-core machine); load avg after the run"
    )


if __name__ == "__main__":
    main()
