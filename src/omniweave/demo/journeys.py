"""The demo's activation phase: the built-in journeys run over the world's last days, and its customers react.

The world's online events of the last `days` days (the *stretch*) are held back from the history load
(`runner.run_demo(..., journey_days=N)`). Once the history is loaded, resolved and profiled, the built-in
journeys are published and the stretch is played day by day in ticks of `TICK` seconds:

1. the tick's events (the world's own, and the customers' reactions that fall in it) go to the collector
   over HTTP, exactly as the SDKs sent the history;
2. the journey engine (`activate/service/journeys.JourneyEngine`, its public methods `consume`,
   `date_entries`, `step`, `dispatch`) runs on a clock set to the tick's end until nothing is left to do;
   every channel is the engine's durable `FileSink` (`<home>/demo/journey_sends.jsonl`);
3. what the sink received is read back, and each message draws the customer's reaction from the world's
   known model (`EFFECTS`): with the journey's and channel's true probability the customer reaches the
   journey's goal a little later (orders *that* cart, buys the product viewed, buys a home item after the
   cross-sell), as a new event of the stream the trigger came from. Nobody reacts to a
   message they did not get, so the holdout (no messages) converts at the world's own rate.

Before the stretch the `winback` and `birthday` coupon pools are created (`activate/service/coupons`), the
store event's invitees (the customers of one store) are entered through the engine's API entry; their RSVP
and attendance are reactions too (the RSVP link and the guest list name the person).

The truth (`ground_truth/journeys.json`) per journey: the model, the sends the customers saw, the expected
number of incremental conversions given those sends (the sum of each message's reaction probability, over the
messages whose reaction falls inside the stretch: a message is only sent while the run has not converted, so
this sum is the expected number of reactions however the earlier ones came out), and the true uplift in goal
conversion rate: that expectation over the treated runs, which is what the holdout's lift estimates.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
from rich.console import Console

from omniweave.demo.captures import plan as plan_captures
from omniweave.demo.captures import write_truth as write_captures
from omniweave.demo.signups import describe as describe_signups
from omniweave.demo.signups import kpi_by_placement
from omniweave.demo.signups import load_truth as load_signups
from omniweave.demo.signups import plan as plan_signups
from omniweave.demo.signups import write_truth as write_signups
from omniweave.runtime import Runtime

TICK = 3 * 3600.0
"""Seconds of world time per engine round (entries are stamped at the tick's end)."""
DATE_HOUR = 12
"""The UTC hour of the tick in which the date journeys (birthdays) are entered, once a day."""
REACTION_MEAN = 3 * 3600.0
REACTION_MAX = 12 * 3600.0
"""A reaction comes an exponential time (mean 3 h, at most 12 h) after the message: before the next reminder."""
SINK_FILE = "journey_sends.jsonl"
TRUTH_FILE = "journeys.json"
STREAMS = ("web", "app", "messaging", "ads")
POOLS = {"winback": 30, "birthday": 14}
"""The coupon pools the win-back and birthday journeys issue from, with their codes' validity in days."""
STORE_EVENT_INVITEES = 300
"""How many in-store buyers are invited to the in-store event (entered through the engine's API entry)."""

EFFECTS: dict[str, dict[str, float]] = {
    "cart_abandonment": {"push": 0.20, "sms": 0.15, "email": 0.12},
    "browse_abandonment": {"push": 0.06, "email": 0.05},
    "post_purchase_cross_sell": {"email": 0.08, "push": 0.08, "sms": 0.08, "whatsapp": 0.08},
    "store_event_invitation": {"email": 0.30, "sms": 0.30, "push": 0.25, "whatsapp": 0.30, "print": 0.20},
}
"""The world's true effect of a journey's message, per channel it went out on: the probability that the
customer reaches the journey's goal because of it (on top of what they do anyway). For the store event the
invitation's effect is the RSVP; of those who RSVP, `ATTEND` come (the goal)."""
ATTEND = 0.6
ATTEND_AFTER = 2 * 86400.0
"""Those who come, come this long after their RSVP."""

ENTRY_EVENTS = ("Product Added", "Product Viewed", "Order Completed")

COUPON_EFFECTS: dict[str, dict[str, float]] = {
    "winback": {"email": 0.12, "sms": 0.12, "whatsapp": 0.12, "push": 0.10, "print": 0.08},
    "birthday_coupon": {"email": 0.30, "sms": 0.30, "whatsapp": 0.30, "push": 0.25, "print": 0.20},
}
"""The probability that a personal coupon sent by a journey is redeemed in store because of it (the holdout gets no
code, so it redeems none): a till receipt at the customer's home store with the code, `REDEEM_MEAN` later."""
REDEEM_MEAN = 2 * 86400.0
REDEEM_MAX = 10 * 86400.0
STORE_HOURS = (9.0, 18.0)
OPENED = {"email": 0.45, "whatsapp": 0.70}
"""The probability that a message is opened (the channels that report opens), whether or not it converts."""
CLICKED = {"email": 0.20, "whatsapp": 0.25, "sms": 0.08, "push": 0.10}
"""The probability that a message's link is clicked (of an opened one where the channel reports opens), by someone
it does not convert; a message that converts online is always opened and clicked first (the customer came through
its link). Opens and clicks move nobody: the conversion is `EFFECTS`' draw."""
FEEDBACK = {
    "email": ("Email Opened", "Email Link Clicked"),
    "whatsapp": ("Message Opened", "Link Clicked"),
    "sms": (None, "Link Clicked"),
    "push": (None, "Push Notification Tapped"),
}
"""The events a channel's provider reports for an open and a click (Segment's e-mail spec; the demo's messaging and
app streams)."""
TILL_IMPORT_HOUR = 6
"""The till's export (receipts with coupon codes, e-mail captures) is imported at the engine round ending at 06:00
UTC, and at the stretch's end; `coupons redeem` runs after it."""


@dataclass
class _Clock:
    at: float

    def __call__(self) -> float:
        return self.at


@dataclass
class JourneyTruth:
    """One journey's truth in the demo world, with what `journeys stats` measured."""

    journey: str
    effects: dict[str, float]
    entered: int = 0
    treated: int = 0
    held_out: int = 0
    sent: int = 0
    sends_by_channel: dict[str, int] = field(default_factory=dict)
    expected_incremental: float = 0.0
    reactions: int = 0
    true_uplift: float | None = None
    measured: dict[str, Any] | None = None
    opened: int = 0
    """Opens and clicks of its messages the customers made (posted as the channels' events, inside the stretch)."""
    clicked: int = 0
    without_code: int = 0
    """Coupon messages whose code the coupons table does not hold (nothing to redeem)."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @property
    def interval(self) -> tuple[float, float] | None:
        if not self.measured:
            return None
        low, high = self.measured["difference_interval"]
        return float(low), float(high)

    @property
    def covered(self) -> bool | None:
        """Whether the true uplift lies in the measured interval (None without both)."""
        if self.interval is None or self.true_uplift is None:
            return None
        return self.interval[0] <= self.true_uplift <= self.interval[1]


@dataclass
class Activation:
    """What the activation phase did."""

    since: float
    until: float
    posted: dict[str, int]
    reactions: dict[str, int]
    reaction_orders: int
    reaction_revenue: float
    journeys: list[JourneyTruth]
    seconds: float = 0.0
    signups: dict[str, int] | None = None
    """The true form sign-ups per placement (demo/signups.py), and below what `email_signups` counts."""
    signup_kpi: dict[str, int] | None = None
    redemptions: int = 0
    """Coupons of the journeys redeemed at a till (receipts imported), and those receipts' revenue."""
    redemption_revenue: float = 0.0
    captures: int = 0
    """E-mail addresses captured at the tills and imported (demo/captures.py)."""

    def rows(self) -> list[dict[str, Any]]:
        """The per-journey table the demo prints."""
        out = []
        for t in self.journeys:
            interval = t.interval
            out.append(
                {
                    "journey": t.journey,
                    "entered": t.entered,
                    "sent": t.sent,
                    "holdout": t.held_out,
                    "measured lift": None if not t.measured else round(float(t.measured["difference"]), 3),
                    "95% interval": "" if interval is None else f"{interval[0]:+.3f} .. {interval[1]:+.3f}",
                    "true effect": None if t.true_uplift is None else round(t.true_uplift, 3),
                    "truth in interval": "" if t.covered is None else ("yes" if t.covered else "NO"),
                }
            )
        return out


def stretch_start(end_date_iso: str, days: int) -> float:
    """Epoch seconds of the UTC midnight that starts the world's last `days` days."""
    end = datetime.fromisoformat(end_date_iso).replace(tzinfo=UTC)
    return end.timestamp() + 86400.0 - days * 86400.0


def held(event: Mapping[str, Any], since: float, listened: frozenset[str]) -> bool:
    """Whether an online event is held back for the stretch: a track event a journey listens to, at or after
    `since`. Everything else (pages, screens, identifies, what no journey listens to) is history: loaded and
    resolved before the journeys start, so the engine knows who the stretch's events are."""
    return event.get("type") == "track" and event.get("event") in listened and _epoch(str(event["timestamp"])) >= since


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def held_back(folder: Path, since: float, listened: frozenset[str]) -> list[tuple[float, str, dict[str, Any]]]:
    """The online events held back for the stretch (`held`), oldest first: (time, stream, event)."""
    out: list[tuple[float, str, dict[str, Any]]] = []
    for stream in STREAMS:
        with open(folder / "online" / f"{stream}.jsonl", "rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                event = orjson.loads(line)
                if held(event, since, listened):
                    out.append((_epoch(str(event["timestamp"])), stream, event))
    out.sort(key=lambda r: (r[0], str(r[2].get("messageId"))))
    return out


def _draws(key: str) -> tuple[float, float]:
    """Two uniform draws fixed by a send's key: whether the customer reacts, and when."""
    digest = hashlib.sha256(f"demo-reaction|{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64, int.from_bytes(digest[8:16], "big") / 2**64


def _feedback_draws(key: str) -> tuple[float, float, float]:
    """Three more uniform draws of a send (a stream of their own, so the conversions stay those of `_draws`):
    whether it is opened, whether clicked, and when."""
    digest = hashlib.sha256(f"demo-feedback|{key}".encode()).digest()
    return tuple(int.from_bytes(digest[i : i + 8], "big") / 2**64 for i in (0, 8, 16))  # type: ignore[return-value]


def _store_moment(at: float, v: float) -> float:
    """A store visit `REDEEM_MEAN` (exponential, at most `REDEEM_MAX`) after `at`, moved into the store's hours."""
    later = at + min(-REDEEM_MEAN * math.log(1.0 - v), REDEEM_MAX)
    day = later - later % 86400.0
    hour = STORE_HOURS[0] + (later % 86400.0) / 86400.0 * (STORE_HOURS[1] - STORE_HOURS[0])
    moment = day + hour * 3600.0
    return moment if moment > at else moment + 86400.0


def _delay(u: float) -> float:
    return min(-REACTION_MEAN * math.log(1.0 - u), REACTION_MAX) + 60.0


def _message_id(*parts: str) -> str:
    return "demo-journey-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


class _Catalogue:
    """The products a cross-sell sells (the bag, the stand: the home category), from the ground truth's catalogue."""

    def __init__(self, folder: Path):
        with open(folder / "ground_truth" / "products.csv", newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if r["category"] == "home"]
        self.rows = sorted(rows, key=lambda r: r["sku"])

    def pick(self, key: str) -> dict[str, Any]:
        row = self.rows[int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % len(self.rows)]
        return {
            "product_id": row["sku"],
            "sku": row["sku"],
            "name": row["name"],
            "category": row["category"],
            "price": float(row["price"]),
            "currency": "GBP",
            "quantity": 1,
        }


def _order(
    trigger: Mapping[str, Any], products: list[dict[str, Any]], key: str, at: float, cart: str
) -> dict[str, Any]:
    """An `Order Completed` by the trigger's browser or app (its ids and context), as the shop sends it."""
    subtotal = round(sum(float(p.get("price", 0.0)) * int(p.get("quantity", 1) or 1) for p in products), 2)
    shipping = 0.0 if subtotal >= 50 else 3.95
    event: dict[str, Any] = {
        "type": "track",
        "event": "Order Completed",
        "messageId": _message_id("order", key),
        "timestamp": _iso(at),
        "properties": {
            "order_id": "J-" + hashlib.sha256(key.encode()).hexdigest()[:10].upper(),
            "checkout_id": cart,
            "total": round(subtotal + shipping, 2),
            "subtotal": subtotal,
            "revenue": subtotal,
            "shipping": shipping,
            "tax": round((subtotal + shipping) / 6, 2),
            "discount": 0.0,
            "currency": "GBP",
            "products": products,
        },
    }
    for name in ("userId", "anonymousId", "context"):
        if trigger.get(name):
            event[name] = trigger[name]
    return event


def _person_event(name: str, user: str, key: str, at: float, props: Mapping[str, Any]) -> dict[str, Any]:
    """An event of the customer with user id `user` (the RSVP page and the guest list know who they are)."""
    return {
        "type": "track",
        "event": name,
        "messageId": _message_id(name, key),
        "timestamp": _iso(at),
        "userId": user,
        "properties": dict(props),
    }


@dataclass
class _Send:
    key: str
    journey: str
    node: str
    run: str
    channel: str
    to: str = ""


def _read_sink(path: Path, offset: int) -> tuple[list[_Send], int]:
    """The messages the sink took since byte `offset` (whole lines only) and the new offset."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    out = []
    for line in data[:end].split(b"\n"):
        if not line:
            continue
        row = orjson.loads(line)
        key = str(row["key"])
        parts = key.split(":")
        if len(parts) == 4 and parts[0] == "j":
            out.append(_Send(key, parts[1], parts[2], parts[3], str(row["channel"]), str(row.get("to") or "")))
    return out, offset + end


class _World:
    """The customers' side: which events are due when, and how they react to what they were sent."""

    def __init__(
        self,
        folder: Path,
        runtime: Runtime,
        until: float,
        user_of: Callable[[str], str | None],
        profile_of: Callable[[str], Mapping[str, Any] | None],
    ):
        self.runtime, self.until, self.user_of, self.profile_of = runtime, until, user_of, profile_of
        self.catalogue = _Catalogue(folder)
        self.triggers: dict[str, tuple[str, dict[str, Any]]] = {}
        self.pending: list[tuple[float, str, dict[str, Any]]] = []
        self.truth: dict[str, JourneyTruth] = {
            name: JourneyTruth(name, dict(eff)) for name, eff in {**EFFECTS, **COUPON_EFFECTS}.items()
        }
        self.reactions: dict[str, int] = {}
        self.orders = 0
        self.revenue = 0.0
        self.seen: set[str] = set()
        self.receipts: list[tuple[float, dict[str, Any]]] = []  # till rows of coupon redemptions, not imported yet
        self.orders_store = 0
        self.revenue_store = 0.0
        self.redemptions = 0  # receipts imported
        self.redeemed_to: float | None = None  # `coupons redeem` has read the log's redemptions before this
        self.home_store: dict[str, str] = {}
        with open(folder / "ground_truth" / "customers.csv", newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row["customer_number"] and row["home_store"]:
                    self.home_store[row["customer_number"]] = row["home_store"]

    def remember(self, stream: str, event: Mapping[str, Any]) -> None:
        if event.get("type") == "track" and event.get("event") in ENTRY_EVENTS:
            self.triggers[str(event.get("messageId"))] = (stream, dict(event))

    def _runs(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        from omniweave.storage.ops.tables.journeys import journey_runs

        wanted = sorted(set(ids))
        out: dict[str, dict[str, Any]] = {}
        with self.runtime.store.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                query = sa.select(journey_runs.c.id, journey_runs.c.person_id, journey_runs.c.entry_key).where(
                    journey_runs.c.id.in_(wanted[start : start + 500])
                )
                out.update({str(r[0]): {"person": str(r[1]), "entry_key": str(r[2])} for r in conn.execute(query)})
        return out

    def react(self, sends: list[_Send], at: float) -> None:
        """Each message sent at `at` draws its reaction from the model (a conversion, and opens and clicks); the
        reactions wait for their time."""
        sends = [s for s in sends if s.key not in self.seen]
        self.seen.update(s.key for s in sends)
        runs = self._runs(s.run for s in sends)
        for s in sends:
            run = runs.get(s.run)
            converted_at = self._convert(s, run, at)
            if run is not None:
                self._feedback(s, run["person"], at, converted_at)

    def _convert(self, s: _Send, run: Mapping[str, Any] | None, at: float) -> float | None:
        """The conversion a message causes (`EFFECTS`, `COUPON_EFFECTS`), scheduled; when it happens (None: none)."""
        truth = self.truth.get(s.journey)
        if truth is None:
            return None
        p = truth.effects.get(s.channel, 0.0)
        truth.sends_by_channel[s.channel] = truth.sends_by_channel.get(s.channel, 0) + 1
        u, v = _draws(s.key)
        if s.journey in COUPON_EFFECTS:
            return self._redeem(truth, s, run, at, p, u, v)
        when = at + _delay(v)
        if run is None or p <= 0 or when >= self.until:
            return None
        if s.journey == "store_event_invitation":
            if s.node not in ("invite", "nudge"):
                return None  # the reminder does not change who RSVPs
            user = self.user_of(run["person"])
            if user is None or when + ATTEND_AFTER >= self.until:
                return None  # nobody to answer as, or too late to come
            truth.expected_incremental += p * ATTEND
            if u < p:
                self._store_event(user, s.key, when, u / p)
                return when
            return None
        event = self._reaction(s, run, when)
        if event is None:
            return None
        truth.expected_incremental += p
        if u < p:
            truth.reactions += 1
            self.pending.append(event)
            return when
        return None

    def _redeem(
        self, truth: JourneyTruth, s: _Send, run: Mapping[str, Any] | None, at: float, p: float, u: float, v: float
    ) -> float | None:
        """A coupon message: with probability `p` its code is redeemed at the customer's home store's till."""
        from omniweave.storage.ops.tables.reach import coupons

        when = _store_moment(at, v)
        if run is None or p <= 0 or when >= self.until:
            return None
        with self.runtime.store.engine.connect() as conn:
            code = conn.execute(sa.select(coupons.c.code).where(coupons.c.send_key == s.key)).scalar()
        profile = self.profile_of(run["person"]) or {}
        numbers = list(profile.get("customer_numbers") or [])
        if code is None or not numbers:
            truth.without_code += code is None
            return None  # nothing to redeem, or a till that cannot name the customer
        truth.expected_incremental += p
        if u >= p:
            return None
        truth.reactions += 1
        product = self.catalogue.pick(s.key)
        store = self.home_store.get(str(numbers[0]), "S001")
        self.receipts.append(
            (
                when,
                {
                    "transaction_id": "J-" + hashlib.sha256(f"redeem|{s.key}".encode()).hexdigest()[:12].upper(),
                    "store_id": store,
                    "timestamp": _iso(when),
                    "sku": product["sku"],
                    "product_name": product["name"],
                    "category": product["category"],
                    "quantity": 1,
                    "unit_price": product["price"],
                    "till_id": f"{store}-T01",
                    "line_discount": 0.0,
                    "coupon_code": str(code),
                    "loyalty_card": str(profile.get("primary_loyalty_card") or ""),
                    "email": "",
                    "phone": "",
                    "customer_number": str(numbers[0]),
                    "currency": "GBP",
                    "payment_method": "card",
                },
            )
        )
        return when

    def _feedback(self, s: _Send, person: str, at: float, converted_at: float | None) -> None:
        """The message's open and click (`OPENED`, `CLICKED`; a message that converts online is opened and clicked
        just before), as the channel's provider reports them, naming the person and the send."""
        opened_name, clicked_name = FEEDBACK.get(s.channel, (None, None))
        o, c, t = _feedback_draws(s.key)
        if converted_at is not None:
            opened = opened_name is not None
            clicked = clicked_name is not None and s.journey not in COUPON_EFFECTS  # a coupon is used at the till
            open_at = max(at + 30.0, converted_at - 600.0)
            click_at = max(open_at + 30.0, converted_at - 300.0)
        else:
            opened = opened_name is not None and o < OPENED.get(s.channel, 0.0)
            clicked = clicked_name is not None and (opened or opened_name is None) and c < CLICKED.get(s.channel, 0.0)
            open_at = at + 60.0 + t * 7200.0
            click_at = open_at + 120.0
        stream = "app" if s.channel == "push" else "messaging"
        for name, moment, happens in ((opened_name, open_at, opened), (clicked_name, click_at, clicked)):
            if not happens or name is None or moment >= self.until:
                continue
            event: dict[str, Any] = {
                "type": "track",
                "event": name,
                "messageId": _message_id(name, s.key),
                "timestamp": _iso(moment),
                "properties": {"channel": s.channel, "send_key": s.key, "journey": s.journey, "person_id": person},
            }
            user = self.user_of(person)
            if user:
                event["userId"] = user
            else:
                event["anonymousId"] = f"{s.channel}:{s.to or person}"
            self.pending.append((moment, stream, event))

    def _reaction(self, s: _Send, run: Mapping[str, Any], when: float) -> tuple[float, str, dict[str, Any]] | None:
        found = self.triggers.get(run["entry_key"])
        if found is None:
            return None
        stream, trigger = found
        props = trigger.get("properties") or {}
        if s.journey == "cart_abandonment":
            product = {k: v for k, v in props.items() if k != "cart_id"}
            event = _order(trigger, [product], s.key, when, str(props.get("cart_id")))
        elif s.journey == "browse_abandonment":
            event = _order(trigger, [{**props, "quantity": 1}], s.key, when, _message_id("cart", s.key)[-16:])
        elif s.journey == "post_purchase_cross_sell":
            event = _order(trigger, [self.catalogue.pick(s.key)], s.key, when, _message_id("cart", s.key)[-16:])
        else:
            return None
        return when, stream, event

    def _store_event(self, user: str, key: str, when: float, u: float) -> None:
        self.truth["store_event_invitation"].reactions += 1
        self.pending.append((when, "messaging", _person_event("Store Event RSVP", user, key, when, {})))
        if u < ATTEND:
            later = when + ATTEND_AFTER
            attended = _person_event("Store Event Attended", user, key, later, {"event_name": "Masterclass"})
            self.pending.append((later, "messaging", attended))

    def due(self, before: float) -> list[tuple[float, str, dict[str, Any]]]:
        """The reactions that happen before `before` (taken off the list)."""
        now = [r for r in self.pending if r[0] < before]
        self.pending = [r for r in self.pending if r[0] >= before]
        for _, _, event in now:
            self.reactions[str(event["event"])] = self.reactions.get(str(event["event"]), 0) + 1
            if event["event"] == "Order Completed":
                self.orders += 1
                self.revenue += float(event["properties"]["revenue"])
            journey = (event.get("properties") or {}).get("journey")
            if journey:
                truth = self.truth.setdefault(str(journey), JourneyTruth(str(journey), {}))
                opened = event["event"] in {o for o, _ in FEEDBACK.values() if o}
                truth.opened += opened
                truth.clicked += not opened
        return now

    def redeem_due(self, folder: Path, before: float) -> int:
        """The till's export of the coupon redemptions before `before`, imported like any till file (the `till`
        importer), then `coupons redeem`: the codes are marked and `Coupon Redeemed` goes to the inbox. How many."""
        from omniweave.activate.service.coupons import redeem_from_log
        from omniweave.collect.service import import_file
        from omniweave.demo.sinks import OFFLINE_COLUMNS

        todo = sorted((r for r in self.receipts if r[0] < before), key=lambda r: r[0])
        if not todo:
            return 0
        self.receipts = [r for r in self.receipts if r[0] >= before]
        out = folder / "journeys"
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"till-{datetime.fromtimestamp(before, UTC):%Y%m%dT%H%M}.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=OFFLINE_COLUMNS["till"])
            writer.writeheader()
            writer.writerows(row for _, row in todo)
        import_file(self.runtime, "till", path)
        # the receipts imported before were read by the run before, and these are all at or after its cut (a
        # receipt is drawn after the round that sent its code and comes later than it): only the first run reads
        # the whole log
        since = None if self.redeemed_to is None else datetime.fromtimestamp(self.redeemed_to, UTC)
        redeem_from_log(self.runtime, since=since)
        self.redeemed_to = before
        self.redemptions += len(todo)
        for _, row in todo:
            self.orders_store += 1
            self.revenue_store += float(row["unit_price"])
        return len(todo)


def _post_all(
    client: httpx.Client, url: str, keys: Mapping[str, str], events: list[tuple[float, str, dict[str, Any]]]
) -> dict[str, int]:
    from omniweave.demo.runner import BATCH_EVENTS, _post

    by_stream: dict[str, list[bytes]] = {}
    for _, stream, event in events:
        by_stream.setdefault(stream, []).append(orjson.dumps(event))
    for stream, lines in by_stream.items():
        for start in range(0, len(lines), BATCH_EVENTS):
            body = b'{"batch":[' + b",".join(lines[start : start + BATCH_EVENTS]) + b"]}"
            _post(client, url, keys[stream], body)
    return {s: len(v) for s, v in by_stream.items()}


def _due(runtime: Runtime, at: float) -> bool:
    """Whether a run is due at `at` (the engine's next wake time has come)."""
    from omniweave.storage.ops import journeys as Q

    with runtime.store.engine.connect() as conn:
        wake = Q.next_wake(conn)
    return wake is not None and wake <= at


def _run_engine(engine: Any, dates: bool) -> None:
    """Consume, enter, step and send until nothing is left at the clock's time (with `dates`, the date entries)."""
    if dates:
        engine.date_entries()
    for _ in range(1000):
        busy = 0
        while n := engine.consume(1000):
            busy += n
        while n := engine.step(500):
            busy += n
        busy += engine.dispatch()
        if not busy:
            return


def listened_to(runtime: Runtime) -> frozenset[str]:
    """The event names a built-in journey enters on, waits for or has as its goal."""
    from omniweave.activate.journeys.model import WaitForEvent
    from omniweave.activate.service.journey_stats import builtin_paths, load_journey_file

    names: set[str] = set()
    for path in builtin_paths():
        j = load_journey_file(path)  # the files only: `_prepare` checks their messages when publishing
        names.update(n for n in (j.entry.event, j.goal.event if j.goal else None) if n)
        names.update(s.action.event for s in j.steps.values() if isinstance(s.action, WaitForEvent) and s.action.event)
    return frozenset(names)


@functools.cache
def journey_segments() -> frozenset[str]:
    """The segments a built-in journey enters on or waits for (`winback`: `lapsing_high_value`); the shipped files
    are parsed once (the daily segment run asked every day)."""
    from omniweave.activate.journeys.model import WaitForEvent
    from omniweave.activate.service.journey_stats import builtin_paths, load_journey_file

    out: set[str] = set()
    for path in builtin_paths():
        j = load_journey_file(path)
        if j.entry.segment:
            out.add(j.entry.segment)
        out.update(
            s.action.segment for s in j.steps.values() if isinstance(s.action, WaitForEvent) and s.action.segment
        )
    return frozenset(out)


def evaluate_journey_segments(runtime: Runtime, at: float) -> int:
    """`segments evaluate` of the journeys' segments as of `at` (the retailer's daily run), through the public
    service: its `Segment Entered` / `Exited` events reach the engine through the inbox. How many changed."""
    from omniweave.segments.service.evaluate import evaluate_segments, load_segments

    wanted = journey_segments()
    segments = {sid: seg for sid, seg in load_segments(runtime.settings).items() if sid in wanted}
    if not segments:
        return 0
    return evaluate_segments(runtime, segments, now=datetime.fromtimestamp(at, UTC)).events_written


def _prepare(runtime: Runtime, since: float) -> None:
    """The coupon pools and the published built-in journeys; the engine starts reading the inbox here."""
    from omniweave.activate.service.coupons import create_pool, list_pools
    from omniweave.activate.service.journey_stats import builtin_paths, load_journey_file
    from omniweave.activate.service.journeys import CONSUMER, publish

    existing = {p.name for p in list_pools(runtime)}
    for name, days in POOLS.items():
        if name not in existing:
            create_pool(runtime, name, kind="unique", valid_days=days, campaign=name, description="demo")
    for path in builtin_paths():
        publish(runtime, load_journey_file(path, runtime.settings), note="demo", now=since)
    store = runtime.store
    if store.consumer(CONSUMER).position == 0:  # the history happened before the journeys existed
        # who is in the journeys' segments when the journeys start: a member already is not "entering" later
        evaluate_journey_segments(runtime, since)
        store.commit_position(CONSUMER, store.max_seq())


def _invitees(runtime: Runtime) -> list[str]:
    """The store event's invitees: in-store buyers the retailer can reach (an e-mail or a phone), up to
    `STORE_EVENT_INVITEES`, in an order fixed by their ids."""
    rows = (
        runtime.warehouse()
        .sql(
            "SELECT person_id FROM profiles WHERE store_orders > 0 AND (len(emails) > 0 OR len(phones) > 0) "
            f"ORDER BY md5(person_id) LIMIT {STORE_EVENT_INVITEES}"
        )
        .to_pylist()
    )
    return [str(r["person_id"]) for r in rows]


def activate(
    runtime: Runtime,
    folder: Path,
    events: list[tuple[float, str, dict[str, Any]]],
    since: float,
    until: float,
    *,
    keys: Mapping[str, str],
    progress: Callable[[int, int], None] | None = None,
) -> Activation:
    """Play the stretch [since, until) through the journeys (module docstring); the truth goes to
    `folder/ground_truth/journeys.json`."""
    from omniweave.activate.service.journeys import JourneyEngine
    from omniweave.demo.runner import CONNECTIONS, _Collector

    started = time.perf_counter()
    clock = _Clock(since)
    engine = JourneyEngine(runtime, sink=str(folder / SINK_FILE), clock=clock)
    directory = engine.directory
    directory.refresh(force=True)
    # nothing resolves identities or builds profiles during the stretch: what was read stays true
    directory.ttl = directory.forced_every = math.inf

    def known(event: Mapping[str, Any]) -> bool:
        user, anon = event.get("userId"), event.get("anonymousId")
        return bool((user and str(user) in directory.by_user) or (anon and str(anon) in directory.by_anon))

    # the events of people nobody knows yet (a browser never tied to anyone) cannot start or wake a run
    quiet = [e for e in events if not known(e[2])]
    events = [e for e in events if known(e[2])]

    def user_of(person: str) -> str | None:
        profile = engine.directory.profile(person) or {}
        return str(profile["primary_user_id"]) if profile.get("primary_user_id") else None

    world = _World(folder, runtime, until, user_of, engine.directory.profile)
    signups = plan_signups(folder, since, until)
    captures = plan_captures(folder, since, until, exclude={s.person for s in signups.planned})
    for _, stream, event in events:
        world.remember(stream, event)
    invitees = _invitees(runtime)
    posted: dict[str, int] = {}
    offset = 0
    ticks = max(1, math.ceil((until - since) / TICK))
    queue = list(events)
    with (
        _Collector(runtime.settings) as collector,
        httpx.Client(limits=httpx.Limits(max_connections=CONNECTIONS), timeout=120) as client,
    ):
        url = f"{collector.url}/v1/batch"
        # what no journey can act on goes in at once, before the engine starts reading the inbox
        for stream, n in _post_all(client, url, keys, quiet).items():
            posted[stream] = posted.get(stream, 0) + n
        _prepare(runtime, since)
        for tick in range(ticks):
            end = min(since + (tick + 1) * TICK, until)
            cut = 0
            while cut < len(queue) and queue[cut][0] < end:
                cut += 1
            batch, queue = queue[:cut] + world.due(end), queue[cut:]
            batch.sort(key=lambda r: r[0])
            for stream, n in _post_all(client, url, keys, batch).items():
                posted[stream] = posted.get(stream, 0) + n
            work = bool(batch)
            if signups.due(runtime, end):  # the tick's form sign-ups: their events are in the inbox now
                work = True
            # the tills' export: the e-mail captures, and the receipts with coupon codes, then `coupons redeem`
            export = datetime.fromtimestamp(end, UTC).hour == TILL_IMPORT_HOUR or tick == ticks - 1
            if export and captures.due(runtime, folder, end) + world.redeem_due(folder, end):
                work = True
            clock.at = end
            if tick == int(86400 // TICK) and invitees:  # the invitations go out on the stretch's second day
                engine.enter_many("store_event_invitation", invitees, key="demo-store-event")
                work = True
            # birthdays are due from 09:00 local: once a day at noon UTC covers the world's European zones
            dates = datetime.fromtimestamp(end, UTC).hour == DATE_HOUR
            if dates and evaluate_journey_segments(runtime, end):  # the daily segment run: who lapsed today
                work = True
            if work or dates or _due(runtime, end):  # a quiet night with nothing due costs nothing
                _run_engine(engine, dates)
            sends, offset = _read_sink(folder / SINK_FILE, offset)
            world.react(sends, end)
            if progress:
                progress(tick + 1, ticks)
        if queue:  # the last sessions of the world's last day, ending after its midnight UTC
            for stream, n in _post_all(client, url, keys, queue).items():
                posted[stream] = posted.get(stream, 0) + n
            clock.at = max(until, queue[-1][0])
            _run_engine(engine, False)
    activation = Activation(since, until, posted, world.reactions, world.orders, round(world.revenue, 2), [])
    activation.redemptions = world.redemptions
    activation.redemption_revenue = round(world.revenue_store, 2)
    activation.captures = len(captures.done)
    # welcome_signup enters the persons whose browser the engine knows (a kiosk's id is nobody's)
    welcomed = {directory.by_anon.get(s.anonymous_id or "") for s in signups.done} - {None}
    write_signups(folder, signups, since, until, welcome_entries=len(welcomed))
    # welcome_till_capture: every capture names a customer number the directory knows
    captured = {directory.by_user.get(c.customer_number) for c in captures.done} - {None}
    write_captures(folder, captures, welcome_entries=len(captured))
    activation.signups = signups.by_placement
    activation.journeys = measure(runtime, world.truth)
    activation.seconds = time.perf_counter() - started
    write_truth(folder, activation)
    return activation


def measure(runtime: Runtime, truths: Mapping[str, JourneyTruth]) -> list[JourneyTruth]:
    """Every built-in journey's `journeys stats` (the same test the CLI hands in) beside its truth."""
    from omniweave.activate.service.journey_stats import builtin_paths, journey_stats
    from omniweave.shells.cli.journeys import holdout_test

    out = []
    for path in builtin_paths():
        name = path.stem
        truth = truths.get(name) or JourneyTruth(name, {})
        stats = journey_stats(runtime, name, compare=holdout_test)
        truth.entered = sum(stats.runs.values())
        truth.treated, truth.held_out = stats.treated[0], stats.held_out[0]
        truth.sent = sum(n.sent for n in stats.nodes)
        truth.measured = dict(stats.lift) if stats.lift else None
        truth.true_uplift = truth.expected_incremental / truth.treated if truth.treated else None
        out.append(truth)
    return out


def write_truth(folder: Path, activation: Activation) -> None:
    """`ground_truth/journeys.json`: the stretch, the reaction model and every journey's true effect."""
    doc = {
        "stretch": {"since": _iso(activation.since), "until": _iso(activation.until)},
        "model": {
            "effects": EFFECTS,
            "coupon_effects": COUPON_EFFECTS,
            "coupon_redemption_delay": f"exponential, mean {REDEEM_MEAN / 86400:g} d, at most {REDEEM_MAX / 86400:g} d, "
            f"in the store's hours {STORE_HOURS[0]:g}-{STORE_HOURS[1]:g} UTC",
            "opened": OPENED,
            "clicked": CLICKED,
            "store_event_attendance": ATTEND,
            "reaction_delay": f"exponential, mean {REACTION_MEAN / 3600:g} h, at most {REACTION_MAX / 3600:g} h",
            "note": "the probability per message sent (channel) that the customer reaches the goal because of it; "
            "the holdout gets no message and converts at the world's own rate",
        },
        "reaction_orders": activation.reaction_orders,
        "reaction_revenue": activation.reaction_revenue,
        "reactions": activation.reactions,
        "coupon_redemptions": activation.redemptions,
        "coupon_redemption_revenue": activation.redemption_revenue,
        "email_captures": activation.captures,
        "journeys": {
            t.journey: {
                "effects": t.effects,
                "entered": t.entered,
                "treated": t.treated,
                "held_out": t.held_out,
                "sends_seen_by_customers": t.sends_by_channel,
                "expected_incremental_conversions": round(t.expected_incremental, 4),
                "true_uplift": None if t.true_uplift is None else round(t.true_uplift, 6),
                "reactions": t.reactions,
                "opened": t.opened,
                "clicked": t.clicked,
                "coupon_sends_without_code": t.without_code,
            }
            for t in activation.journeys
        },
    }
    (folder / "ground_truth" / TRUTH_FILE).write_text(json.dumps(doc, indent=2))


def describe(activation: Activation, console: Console) -> None:
    """Per journey: entered, sent, holdout; the measured lift with its interval, the truth, and whether it is inside
    (two lines a journey, so that it fits 80 columns)."""
    days = (activation.until - activation.since) / 86400.0
    lines = [f"journeys over the world's last {days:g} days: the holdout's lift against the world's true effect"]
    for t in activation.journeys:
        lines.append(f"  {t.journey:<25} {t.entered:>6,} entered {t.sent:>6,} sent {t.held_out:>5,} held out")
        if t.measured is None:
            lines.append(f"      no lift: {'no runs' if not t.entered else 'no holdout or no treated runs'}")
            continue
        low, high = t.interval or (0.0, 0.0)
        truth = "unknown" if t.true_uplift is None else f"{t.true_uplift:+.3f}"
        verdict = "" if t.covered is None else (": inside" if t.covered else ": OUTSIDE")
        lines.append(
            f"      lift {float(t.measured['difference']):+.3f} (95% {low:+.3f} .. {high:+.3f}), true {truth}{verdict}"
        )
    r = activation.reactions
    rsvps = r.get("Store Event RSVP", 0) + r.get("Store Event Attended", 0)
    opens = sum(r.get(o, 0) for o in {o for o, _ in FEEDBACK.values() if o})
    clicks = sum(r.get(c, 0) for c in {c for _, c in FEEDBACK.values() if c})  # SMS and WhatsApp share a name
    lines.append(
        f"  caused by messages: {activation.reaction_orders:,} orders online (GBP "
        f"{activation.reaction_revenue:,.2f}), {activation.redemptions:,} coupons\n  redeemed in store (GBP "
        f"{activation.redemption_revenue:,.2f}), {rsvps:,} RSVPs and visits; {opens:,} opens, {clicks:,} clicks\n"
        f"  ({activation.captures:,} e-mails captured at the tills; ground_truth/{TRUTH_FILE})"
    )
    if activation.signups is not None:
        lines.append(describe_signups(activation.signups, activation.signup_kpi))
    console.print("\n".join(lines), highlight=False, markup=False)


def load_activation(runtime: Runtime, folder: Path) -> Activation | None:
    """The activation of an earlier run, from `ground_truth/journeys.json`, measured again (None without it)."""
    try:
        doc = json.loads((folder / "ground_truth" / TRUTH_FILE).read_text())
    except FileNotFoundError:
        return None
    truths = {
        name: JourneyTruth(
            name,
            dict(row["effects"]),
            sends_by_channel=dict(row["sends_seen_by_customers"]),
            expected_incremental=float(row["expected_incremental_conversions"]),
            reactions=int(row["reactions"]),
            opened=int(row.get("opened", 0)),
            clicked=int(row.get("clicked", 0)),
            without_code=int(row.get("coupon_sends_without_code", 0)),
        )
        for name, row in doc["journeys"].items()
    }
    stretch = doc["stretch"]
    activation = Activation(
        _epoch(stretch["since"]),
        _epoch(stretch["until"]),
        {},
        dict(doc["reactions"]),
        int(doc["reaction_orders"]),
        float(doc["reaction_revenue"]),
        measure(runtime, truths),
        redemptions=int(doc.get("coupon_redemptions", 0)),
        redemption_revenue=float(doc.get("coupon_redemption_revenue", 0.0)),
        captures=int(doc.get("email_captures", 0)),
    )
    signups = load_signups(folder)
    if signups is not None:
        activation.signups = {str(k): int(v) for k, v in signups["by_placement"].items()}
        activation.signup_kpi = kpi_by_placement(runtime)
    return activation
