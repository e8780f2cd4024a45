"""Generate the demo world: simulate the retailer day by day and write every file.

`generate_world(folder, customers, days, seed)` is pure and deterministic for its arguments: the
same call writes the same bytes. Customers are simulated in blocks (100,000 by default) with
numpy, each block from its own random streams, so memory stays flat for a million customers.

Layout of `folder`:

    online/{web,app,messaging,ads}.jsonl   Segment-spec events (what SDKs/servers send)
    offline/<kind>.csv                     the built-in import formats (docs/file-formats.md)
    ground_truth/identities.csv            every identifier emitted → true person
    ground_truth/customers.csv             true attributes and totals of every person
    ground_truth/channel_effects.json      the causal model and each channel's true effect
    ground_truth/{stores,products,campaigns}.csv
    manifest.json                          parameters and counts (written last: a world is
                                           complete when its manifest exists)
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from omniweave.demo import world as w
from omniweave.demo.identity import IdentityLedger, write_header
from omniweave.demo.model import DEFAULT_EFFECTS, ChannelEffect, TouchState, effects_report
from omniweave.demo.people import People, build_people, write_identities
from omniweave.demo.sinks import IdMaker, Sinks

DEFAULT_END_DATE = date(2026, 10, 31)
"""The last simulated day (fixed, so that a seed always gives the same world)."""
BLOCK_SIZE = 100_000
SITE = "https://www.hollinsvale.example"
CURRENCY = "GBP"
MANIFEST = "manifest.json"
_STREAMS = ("people", "touch", "buy", "detail", "browse", "store", "misc")


@dataclass
class World:
    """What every block shares: size, calendar, stores, catalogue, time zones, ad counters."""

    customers: int
    days: int
    seed: int
    end_date: date
    effects: tuple[ChannelEffect, ...]
    start: date
    key: str
    stores: list[w.Store]
    catalogue: w.Catalogue
    calendar: w.Calendar
    tz_names: list[str]
    offsets: np.ndarray  # [time zone, day] UTC offset in seconds
    day0: np.ndarray  # [day] epoch seconds of the day's UTC midnight
    city_tz: np.ndarray
    store_tz: np.ndarray
    ad_counts: np.ndarray = field(init=False)  # [day, ad campaign, (impressions, clicks)]
    send_counts: dict[str, int] = field(default_factory=dict)  # messages sent per owned campaign

    _offset_cache: dict[tuple[int, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ad_counts = np.zeros((self.days, len(self.calendar.ads), 2), np.int64)

    def date_of(self, day: int) -> date:
        return self.start + timedelta(days=day)

    def offset(self, tz: int, day: int) -> int:
        """UTC offset (seconds) of time zone `tz` at noon of `day`, also outside the period."""
        if 0 <= day < self.days:
            return int(self.offsets[tz, day])
        key = (tz, day)
        if key not in self._offset_cache:
            noon = datetime.combine(self.date_of(day), datetime.min.time()).replace(hour=12, tzinfo=ZoneInfo(self.tz_names[tz]))
            self._offset_cache[key] = int(noon.utcoffset().total_seconds())  # type: ignore[union-attr]
        return self._offset_cache[key]


def build_world(customers: int, days: int, seed: int, end_date: date = DEFAULT_END_DATE,
                effects: tuple[ChannelEffect, ...] = DEFAULT_EFFECTS) -> World:
    """The shared part of the world (stores, catalogue, calendar) for these parameters."""
    if customers < 1 or days < 1:
        raise ValueError(f"customers and days must be at least 1 (got {customers}, {days})")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    start = end_date - timedelta(days=days - 1)
    stores = w.build_stores(rng, customers)
    catalogue = w.build_catalogue(rng)
    calendar = w.build_calendar(rng, days, start, stores)
    tz_names = sorted({c.time_zone for c in w.CITIES} | {s.time_zone for s in stores})
    offsets = np.zeros((len(tz_names), days), np.int64)
    for ti, name in enumerate(tz_names):
        zone = ZoneInfo(name)
        for d in range(days):
            noon = datetime.combine(start + timedelta(days=d), datetime.min.time()).replace(hour=12, tzinfo=zone)
            offsets[ti, d] = int(noon.utcoffset().total_seconds())  # type: ignore[union-attr]
    epoch = datetime(1970, 1, 1, tzinfo=UTC).date()
    day0 = np.array([((start - epoch).days + d) * 86400 for d in range(days)], np.int64)
    city_tz = np.array([tz_names.index(c.time_zone) for c in w.CITIES])
    store_tz = np.array([tz_names.index(s.time_zone) for s in stores])
    key = f"{seed}-{customers}-{days}-{end_date.isoformat()}"
    return World(customers, days, seed, end_date, effects, start, key, stores, catalogue, calendar,
                 tz_names, offsets, day0, city_tz, store_tz)


class BlockSim:
    """The simulation state of one block of customers; the channel modules act on it day by day."""

    def __init__(self, world: World, block: int, start_pid: int, size: int, sinks: Sinks):
        self.w, self.block, self.sinks = world, block, sinks
        self.rng = {name: np.random.default_rng(np.random.SeedSequence([world.seed, block + 1, i]))
                    for i, name in enumerate(_STREAMS)}
        self.p: People = build_people(self.rng["people"], start_pid, size, world.stores, world.days, world.start)
        n = self.n = size
        self.ledger = IdentityLedger(n)
        self.touch = TouchState(n, world.effects)
        self._ids: dict[str, IdMaker] = {}
        self.tz = world.city_tz[self.p.city]
        self.store_access = (self.p.home_store >= 0).astype(np.float64)
        self.email_ok = self.p.email_opt_in.copy()
        self.web_login = np.zeros((n, 3), bool)
        self.coupon_code = [""] * n
        self.coupon_until = np.full(n, -1)
        self.coupon_pct = np.zeros(n, np.int64)
        self.coupon_channel = [""] * n
        self.coupon_campaign = [""] * n
        self.dm_until = np.full(n, -1)
        self.dm_code = [""] * n
        self.dm_campaign = [""] * n
        self.invited = np.full(n, -1)  # index of the store event whose invitation the person opened
        self.event_ad = np.full(n, -1)  # index of the store event whose ad the person clicked
        self.attending = np.full(n, -1)  # today's store event attended
        self.last_online_order = np.full(n, -10_000)
        self.orders = np.zeros((n, 2), np.int64)  # online, store
        self.revenue = np.zeros((n, 2))
        self.clicks: list[tuple[int, float, str, int, dict[str, str], str]] = []
        # the raw form of the e-mail the ESP holds, of the phone the SMS provider holds
        self.esp_variant = self.rng["people"].choice([0, 1, 3], n, p=[0.93, 0.04, 0.03])
        self.msg_phone_variant = self.rng["people"].choice([0, 1, 2], n, p=[0.8, 0.1, 0.1])
        slots = np.arange(3)[None, :] < self.p.n_browsers[:, None]
        mobile = self.p.browser_mobile & slots
        self.mobile_slot = np.where(mobile.any(axis=1), mobile.argmax(axis=1), -1)

    def new_id(self, stream: str) -> str:
        """A deterministic unique id for a message, row or order of `stream`."""
        maker = self._ids.get(stream)
        if maker is None:
            maker = self._ids[stream] = IdMaker(self.w.key, self.block, stream)
        return maker()

    def at(self, idx: np.ndarray, day: int, hours: np.ndarray) -> np.ndarray:
        """Epoch seconds of local wall-clock `hours` on `day` for persons `idx`."""
        return self.w.day0[day] + hours * 3600.0 - self.w.offsets[self.tz[idx], day]

    def store_at(self, stores: np.ndarray, day: int, hours: np.ndarray) -> np.ndarray:
        """Epoch seconds of local `hours` on `day` in `stores`."""
        return self.w.day0[day] + hours * 3600.0 - self.w.offsets[self.w.store_tz[stores], day]

    def hours(self, idx: np.ndarray, rng: np.random.Generator, sd: float = 2.5,
              low: float = 7.0, high: float = 23.9) -> np.ndarray:
        """Local hours of day for activities of persons `idx`, around each one's active hour."""
        hours = rng.normal(self.p.active_hour[idx], sd)
        outside = (hours < low) | (hours > high)
        hours[outside] = rng.uniform(low, high, int(outside.sum()))
        return hours

    def tz_name(self, k: int) -> str:
        return self.w.tz_names[self.tz[k]]

    def run(self, progress: Callable[[int], None] | None = None) -> None:
        """Simulate every day of the period for this block."""
        from omniweave.demo import online, stores, touches

        stores.write_loyalty(self)
        for day in range(self.w.days):
            self.clicks = []
            self.touch.new_day()
            touches.owned_channels(self, day)
            touches.advertising(self, day)
            touches.qr_codes(self, day)
            touches.store_events(self, day)
            valid = self.coupon_until >= day
            self.touch.set_level("coupon", np.where(valid, self.p.response[:, 0], 0.0))
            p_online, p_store = self.touch.probabilities(self.p.base_online, self.p.base_store, self.store_access)
            draws = self.rng["buy"].random((2, self.n))
            buy_online = draws[0] < p_online
            buy_store = draws[1] < p_store
            online.sessions(self, day, buy_online)
            stores.trips(self, day, buy_store)
            stores.call_centre(self, day)
            if progress:
                progress(self.n)


def generate_world(folder: Path, customers: int, days: int, seed: int, *, end_date: date = DEFAULT_END_DATE,
                   effects: tuple[ChannelEffect, ...] = DEFAULT_EFFECTS, block_size: int = BLOCK_SIZE,
                   progress: Callable[[int, int], None] | None = None) -> dict[str, object]:
    """Write the world into `folder` (replacing what is there) and return its manifest.

    `progress(done, total)` is called as person-days are simulated (total = customers × days).
    """
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "ground_truth").mkdir(parents=True)
    world = build_world(customers, days, seed, end_date, effects)
    sinks = Sinks(folder)
    done = 0
    total = customers * days
    totals = {"orders_online": 0, "orders_store": 0, "revenue_online": 0.0, "revenue_store": 0.0}
    incremental = [np.zeros(len(effects)), np.zeros(len(effects))]
    expected = [0.0, 0.0]
    identities = 0
    from omniweave.demo import groundtruth

    with open(folder / "ground_truth" / "identities.csv", "w", newline="", encoding="utf-8") as id_fh, \
         open(folder / "ground_truth" / "customers.csv", "w", newline="", encoding="utf-8") as cust_fh:
        id_writer = write_header(id_fh)
        cust_writer = csv.writer(cust_fh, lineterminator="\n")
        cust_writer.writerow(groundtruth.CUSTOMER_COLUMNS)
        for block, start_pid in enumerate(range(0, customers, block_size)):
            size = min(block_size, customers - start_pid)
            sim = BlockSim(world, block, start_pid + 1, size, sinks)

            def tick(n: int) -> None:
                nonlocal done
                done += n
                if progress:
                    progress(done, total)

            sim.run(tick)
            for kind, raw in sorted(sim.ledger.placeholders):
                sim.ledger.add(kind, raw.strip().lower(), raw, "")
            identities += write_identities(id_writer, sim.p, sim.ledger)
            groundtruth.write_customers(cust_writer, sim)
            totals["orders_online"] += int(sim.orders[:, 0].sum())
            totals["orders_store"] += int(sim.orders[:, 1].sum())
            totals["revenue_online"] += float(sim.revenue[:, 0].sum())
            totals["revenue_store"] += float(sim.revenue[:, 1].sum())
            incremental[0] += sim.touch.incremental_online
            incremental[1] += sim.touch.incremental_store
            expected[0] += sim.touch.expected_online
            expected[1] += sim.touch.expected_store
            del sim
    spend = groundtruth.write_ad_spend(world, sinks)
    sinks.close()
    average = {
        "online": totals["revenue_online"] / max(1, totals["orders_online"]),
        "store": totals["revenue_store"] / max(1, totals["orders_store"]),
    }
    report = effects_report(effects, incremental[0], incremental[1], expected[0], expected[1], average)
    (folder / "ground_truth" / "channel_effects.json").write_text(json.dumps(report, indent=2))
    groundtruth.write_reference(folder / "ground_truth", world)
    manifest: dict[str, object] = {
        "world": world.key,
        "customers": customers, "days": days, "seed": seed,
        "start_date": world.start.isoformat(), "end_date": end_date.isoformat(),
        "default_effects": effects == DEFAULT_EFFECTS,
        "files": {name: count for name, count in sinks.counts.items()},
        "events": dict(sorted(sinks.event_counts.items())),
        "identities": identities,
        "stores": len(world.stores),
        "products": len(world.catalogue.sku),
        **{k: round(v, 2) if isinstance(v, float) else v for k, v in totals.items()},
        "spend": {k: round(v, 2) for k, v in spend.items()},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest
