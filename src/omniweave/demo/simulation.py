"""The simulation of one block of customers, day by day.

`BlockSim` holds the state of a block (the people, their touch levels, coupons, logins, what
they bought); the channel modules (`touches`, `online`, `stores`) act on it for each day, in an
order that keeps touches independent of purchases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from omniweave.demo.identity import IdentityLedger
from omniweave.demo.model import TouchState
from omniweave.demo.people import People, build_people
from omniweave.demo.sinks import IdMaker, Sinks

if TYPE_CHECKING:
    from omniweave.demo.generator import World

STREAMS = ("people", "touch", "buy", "detail", "browse", "store", "misc", "crm", "gift", "video")
"""Independent random streams of a block: what one part of the simulation draws never shifts another's."""


class BlockSim:
    """The simulation state of one block of customers; the channel modules act on it day by day."""

    def __init__(self, world: World, block: int, start_pid: int, size: int, sinks: Sinks):
        self.w, self.block, self.sinks = world, block, sinks
        self.rng = {
            name: np.random.default_rng(np.random.SeedSequence([world.seed, block + 1, i]))
            for i, name in enumerate(STREAMS)
        }
        self.p: People = build_people(self.rng["people"], start_pid, size, world.stores, world.days, world.start)
        n = self.n = size
        self.ledger = IdentityLedger(n)
        self.touch = TouchState(n, world.effects)
        self._ids: dict[str, IdMaker] = {}
        self.tz = world.city_tz[self.p.city]
        self.store_access = (self.p.home_store >= 0).astype(np.float64)
        self.email_ok = self.p.email_opt_in.copy()
        self.affinity_cum = np.cumsum(self.p.affinity, axis=1)
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
        # gift cards sold and not yet spent: (day of the next redemption, recipient, card id, value left, visits left)
        self.gift_cards: list[tuple[int, int, str, float, int]] = []
        # the raw form of the e-mail the ESP holds, of the phone the SMS provider holds
        self.esp_variant = self.rng["people"].choice([0, 1, 3], n, p=[0.93, 0.04, 0.03])
        self.msg_phone_variant = self.rng["people"].choice([0, 1, 2], n, p=[0.8, 0.1, 0.1])
        slots = np.arange(3)[None, :] < self.p.n_browsers[:, None]
        mobile = self.p.browser_mobile & slots
        self.mobile_slot = np.where(mobile.any(axis=1), mobile.argmax(axis=1), -1)

    def new_id(self, stream: str) -> str:
        """A deterministic unique id for a message, row or order of `stream`."""
        try:
            return self._ids[stream]()
        except KeyError:
            maker = self._ids[stream] = IdMaker(self.w.key, self.block, stream)
            return maker()

    def at(self, idx: np.ndarray, day: int, hours: np.ndarray) -> np.ndarray:
        """Epoch seconds of local wall-clock `hours` on `day` for persons `idx`."""
        return self.w.day0[day] + hours * 3600.0 - self.w.offsets[self.tz[idx], day]

    def store_at(self, stores: np.ndarray, day: int, hours: np.ndarray) -> np.ndarray:
        """Epoch seconds of local `hours` on `day` in `stores`."""
        return self.w.day0[day] + hours * 3600.0 - self.w.offsets[self.w.store_tz[stores], day]

    def hours(
        self, idx: np.ndarray, rng: np.random.Generator, sd: float = 2.5, low: float = 7.0, high: float = 23.9
    ) -> np.ndarray:
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

        stores.write_customers(self)
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
            stores.gift_cards(self, day)
            if progress:
                progress(self.n)
