"""The causal model of the demo world: how touches raise the chance that a person buys.

Each day `t` each person `i` buys online with probability

    p_online(i, t) = base_online(i) + Σ_c online_effect(c) · L_c(i, t)

and in a store with probability

    p_store(i, t) = base_store(i) + Σ_c store_effect(c) · L_c(i, t)      (0 for people abroad)

(both capped at 0.9), where `L_c(i, t) = max over i's touches τ ≤ t on channel c of
r(i, τ) · 0.5 ** ((t − τ) / half_life(c))` is a decayed indicator of the most recent touch,
scaled by the person's responsiveness `r` (mean 1) to the touch's promotion type (coupon,
discount, free shipping, event). A channel's touch is the event named in its `ChannelEffect.touch`:
the interaction its data records. Touches do not depend on purchases, and who is sent to or shown
an ad depends on consent, location and online activity, never on how likely someone is to buy,
so each channel's effect is identifiable from the data; `expected_incremental_*` in the ground
truth is the exact expected number of purchases each channel caused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np


@dataclass(frozen=True)
class ChannelEffect:
    """The true effect of one channel's touch."""

    channel: str
    touch: str  # the event that counts as a touch
    online: float  # added to the daily online purchase probability at L = 1
    store: float  # added to the daily store purchase probability at L = 1
    half_life_days: float  # 0: the level does not decay (a coupon counts while it is valid)


DEFAULT_EFFECTS: tuple[ChannelEffect, ...] = (
    ChannelEffect("email", "Email Link Clicked (email_export clicked)", 0.04, 0.013, 3.0),
    ChannelEffect("sms", "Message Link Clicked (channel sms)", 0.075, 0.062, 2.0),
    ChannelEffect("whatsapp", "Message Link Clicked (channel whatsapp)", 0.028, 0.012, 2.0),
    ChannelEffect("push", "Push Notification Tapped", 0.15, 0.0, 1.0),
    ChannelEffect("social", "Ad Clicked (channel social)", 0.08, 0.016, 2.0),
    ChannelEffect("search", "Ad Clicked (channel search)", 0.165, 0.007, 1.0),
    ChannelEffect("display", "Ad Clicked (channel display)", 0.0, 0.0, 3.0),
    ChannelEffect("qr", "QR Code Scanned (qr_scans)", 0.038, 0.011, 3.0),
    ChannelEffect("direct_mail", "Direct Mail Sent (direct_mail)", 0.002, 0.009, 7.0),
    ChannelEffect("store_event", "Store Event Attended (store_visits event)", 0.0, 0.12, 0.5),
    ChannelEffect("coupon", "holding an unredeemed personal coupon (Coupon Issued), 14 days", 0.004, 0.010, 0.0),
)
"""Messages and ads work on the people who interact with them (a click, a tap, a scan, a visit); a
letter works on everyone it reaches and a coupon while it is held. The effects are spaced so that
the channels' expected incremental orders are spread apart, mostly by half as much again or more from one
rank to the next (docs/attribution.md, "The demo world's ground truth")."""
CHANNELS = tuple(e.channel for e in DEFAULT_EFFECTS)
CHANNEL_INDEX = {c: i for i, c in enumerate(CHANNELS)}


def effects_with(**changes: tuple[float, float]) -> tuple[ChannelEffect, ...]:
    """The default effects with some channels' (online, store) effects replaced."""
    out = []
    for e in DEFAULT_EFFECTS:
        if e.channel in changes:
            online, store = changes[e.channel]
            e = replace(e, online=online, store=store)
        out.append(e)
    return tuple(out)


class TouchState:
    """The decayed touch levels `L[i, c]` of a block of people, advanced one day at a time."""

    def __init__(self, size: int, effects: tuple[ChannelEffect, ...]):
        self.effects = effects
        self.level = np.zeros((size, len(effects)), np.float32)
        # half life 0: no decay (the coupon level is held while the coupon is valid)
        self.decay = np.array(
            [0.5 ** (1.0 / e.half_life_days) if e.half_life_days > 0 else 1.0 for e in effects], np.float32
        )
        self.online = np.array([e.online for e in effects], np.float64)
        self.store = np.array([e.store for e in effects], np.float64)
        self.incremental_online = np.zeros(len(effects))
        self.incremental_store = np.zeros(len(effects))
        # the channel (index) that issued the coupon each person holds, -1 for none: a coupon is a
        # mechanism, not a channel, so what holding it adds is credited to the channel that issued it
        self.coupon_issuer = np.full(size, -1, np.int64)
        self.coupon_folded = np.zeros(len(effects))  # per issuing channel, online + store, for the report
        self.expected_online = 0.0
        self.expected_store = 0.0

    def new_day(self) -> None:
        """Age every touch by one day."""
        self.level *= self.decay

    def touch(self, channel: str, idx: np.ndarray, strength: np.ndarray | float = 1.0) -> None:
        """Persons `idx` were touched on `channel` today with responsiveness `strength`."""
        if np.size(idx):
            c = CHANNEL_INDEX[channel]
            self.level[idx, c] = np.maximum(self.level[idx, c], strength)

    def set_level(self, channel: str, values: np.ndarray) -> None:
        """Set a non-decaying level directly (the coupon a person holds)."""
        self.level[:, CHANNEL_INDEX[channel]] = values

    def probabilities(
        self, base_online: np.ndarray, base_store: np.ndarray, store_access: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Today's purchase probabilities (online, store), and the expected lift of each channel."""
        lift_online = self.level * self.online  # [n, C]
        lift_store = self.level * self.store * store_access[:, None]
        raw_online = base_online + lift_online.sum(axis=1)
        raw_store = base_store + lift_store.sum(axis=1)
        p_online, p_store = np.minimum(raw_online, 0.9), np.minimum(raw_store, 0.9)
        self.expected_online += float(p_online.sum())
        self.expected_store += float(p_store.sum())
        # what each channel added: p minus p without that channel (exact, cap included)
        self.incremental_online += p_online.sum() - np.minimum(raw_online[:, None] - lift_online, 0.9).sum(axis=0)
        self.incremental_store += p_store.sum() - np.minimum(raw_store[:, None] - lift_store, 0.9).sum(axis=0)
        if "coupon" in CHANNEL_INDEX and CHANNEL_INDEX["coupon"] < len(self.effects):
            self._credit_coupons_to_issuers(p_online, p_store, raw_online, raw_store, lift_online, lift_store)
        return p_online, p_store

    def _credit_coupons_to_issuers(
        self,
        p_online: np.ndarray,
        p_store: np.ndarray,
        raw_online: np.ndarray,
        raw_store: np.ndarray,
        lift_online: np.ndarray,
        lift_store: np.ndarray,
    ) -> None:
        """Move what holding a coupon added today from the `coupon` column to the channel that issued it."""
        c = CHANNEL_INDEX["coupon"]
        held = self.coupon_issuer >= 0
        if not held.any():
            return
        for p, raw, lift, total in (
            (p_online, raw_online, lift_online, self.incremental_online),
            (p_store, raw_store, lift_store, self.incremental_store),
        ):
            added = (p - np.minimum(raw - lift[:, c], 0.9))[held]
            np.add.at(total, self.coupon_issuer[held], added)
            np.add.at(self.coupon_folded, self.coupon_issuer[held], added)
            total[c] -= added.sum()


def effects_report(
    effects: tuple[ChannelEffect, ...],
    incremental_online: np.ndarray,
    incremental_store: np.ndarray,
    expected_online: float,
    expected_store: float,
    average_order: dict[str, float],
    coupon_folded: np.ndarray | None = None,
) -> dict[str, object]:
    """The content of `ground_truth/channel_effects.json`.

    A coupon is a mechanism, not a channel: what holding one added is in the numbers of the channel
    that issued it (as attribution and the KPIs credit it); the `coupon` entry keeps the effect's
    parameters, says so (`credited_to_issuing_channels`, with the orders per issuing channel) and has
    no incremental orders of its own."""
    channels: dict[str, dict[str, object]] = {}
    for i, e in enumerate(effects):
        inc_on, inc_st = float(incremental_online[i]), float(incremental_store[i])
        channels[e.channel] = {
            **asdict(e),
            "expected_incremental_orders_online": round(inc_on, 2),
            "expected_incremental_orders_store": round(inc_st, 2),
            "expected_incremental_revenue": round(
                inc_on * average_order["online"] + inc_st * average_order["store"], 2
            ),
        }
        if e.channel == "coupon" and coupon_folded is not None:
            channels[e.channel]["credited_to_issuing_channels"] = {
                effects[j].channel: round(float(coupon_folded[j]), 2) for j in np.flatnonzero(coupon_folded)
            }
    return {
        "model": __doc__.strip(),
        "expected_orders_online": round(expected_online, 2),
        "expected_orders_store": round(expected_store, 2),
        "average_order_value": {k: round(v, 2) for k, v in average_order.items()},
        "channels": channels,
    }


def true_orders(report: dict[str, object]) -> dict[str, float]:
    """Each channel's expected incremental orders, online and in store, from an `effects_report`
    (the content of `ground_truth/channel_effects.json`)."""
    channels: dict[str, dict[str, float]] = report["channels"]  # type: ignore[assignment]
    return {
        name: c["expected_incremental_orders_online"] + c["expected_incremental_orders_store"]
        for name, c in channels.items()
        if "credited_to_issuing_channels" not in c
    }
