"""The ground truth written next to the data, and the spend file.

`customers.csv` has each person's true attributes, preferences and what they really bought
(for checking profiles, segments and identity resolution); `stores.csv`, `products.csv` and
`campaigns.csv` describe the retailer; `offline/ad_spend.csv` is what the ad platforms, the
media agency and the messaging providers invoice per day and campaign.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from omniweave.demo.people import CHANNEL_PREFS, DEVICE_PREFS, PERSONAS, PROMO_RESPONSE_COLUMNS
from omniweave.demo.world import CATEGORY_NAMES, CITIES

if TYPE_CHECKING:
    from _csv import Writer as CsvWriter  # what csv.writer returns

    from omniweave.demo.generator import World
    from omniweave.demo.simulation import BlockSim

CUSTOMER_COLUMNS = (
    "person_id",
    "persona",
    "first_name",
    "last_name",
    "gender",
    "birth_date",
    "age",
    "city",
    "country",
    "postcode",
    "address",
    "time_zone",
    "home_store",
    "email",
    "phone",
    "customer_number",
    "user_id",
    "loyalty_card",
    "loyalty_card_2",
    "member_since",
    "has_account",
    "web_browsers",
    "app_devices",
    "email_opt_in",
    "sms_opt_in",
    "whatsapp_opt_in",
    "push_opt_in",
    "preferred_channel",
    "preferred_device",
    "active_hour",
    "favourite_category",
    *(f"affinity_{c.replace(' & ', '_')}" for c in CATEGORY_NAMES),
    "price_sensitivity",
    *PROMO_RESPONSE_COLUMNS,
    "base_online",
    "base_store",
    "orders_online",
    "orders_store",
    "revenue_online",
    "revenue_store",
)

# cost per message of the owned channels (GBP), invoiced by the providers
_MESSAGE_COST = {"email": 0.0008, "sms": 0.04, "whatsapp": 0.03, "push": 0.0, "direct_mail": 0.65}
AUDIENCE_REACH = 6
"""Reported ad impressions/clicks (and so spend) per impression/click on a known customer."""
_QR_CHANNEL = {"tv": "tv", "print": "print", "flyer": "print", "poster": "ooh", "packaging": "print", "store": "print"}


def write_customers(writer: CsvWriter, sim: BlockSim) -> None:
    """One ground-truth row per person of the block."""
    p, w = sim.p, sim.w
    gender = ("F", "M", "")
    rows = []
    for k in range(sim.n):
        since = int(p.member_since[k])
        rows.append(
            (
                p.person_id[k],
                PERSONAS[p.persona[k]],
                p.first[k],
                p.last[k],
                gender[p.gender[k]],
                str(p.birth[k]),
                int(p.age[k]),
                CITIES[p.city[k]].name,
                CITIES[p.city[k]].country,
                p.postcode[k],
                p.address[k],
                sim.tz_name(k),
                w.stores[p.home_store[k]].store_id if p.home_store[k] >= 0 else "",
                p.email[k],
                f"+{p.phone_cc[k]}{p.phone_nsn[k]}" if p.has_phone[k] else "",
                p.customer_number[k],
                p.user_id[k] if p.has_account[k] else "",
                p.card[k] if p.is_member[k] else "",
                p.card2[k] if p.has_card2[k] else "",
                w.date_of(since).isoformat() if p.is_member[k] else "",
                bool(p.has_account[k]),
                int(p.n_browsers[k]),
                int(p.n_apps[k]),
                bool(p.email_opt_in[k]),
                bool(p.sms_opt_in[k]),
                bool(p.whatsapp_opt_in[k]),
                bool(p.push_opt_in[k]),
                CHANNEL_PREFS[p.pref_channel[k]],
                DEVICE_PREFS[p.pref_device[k]],
                round(float(p.active_hour[k]), 1),
                CATEGORY_NAMES[int(np.argmax(p.affinity[k]))],
                *np.round(p.affinity[k], 4).tolist(),
                round(float(p.price_sensitivity[k]), 3),
                *np.round(p.response[k], 3).tolist(),
                round(float(p.base_online[k]), 5),
                round(float(p.base_store[k]), 5),
                int(sim.orders[k, 0]),
                int(sim.orders[k, 1]),
                round(float(sim.revenue[k, 0]), 2),
                round(float(sim.revenue[k, 1]), 2),
            )
        )
    writer.writerows(rows)


def ad_spend_rows(world: World) -> tuple[list[tuple[object, ...]], dict[str, float]]:
    """The rows of `offline/ad_spend.csv` (paid media per day and campaign, QR placements,
    message costs) and the total spend per channel."""
    rows: list[tuple[object, ...]] = []
    totals: dict[str, float] = {}
    scale = world.customers / 2000.0

    def add(
        day: int, channel: str, campaign: str, spend: float, platform: str, impressions: object, clicks: object
    ) -> None:
        spend = round(spend, 2)
        rows.append(
            (world.date_of(day).isoformat(), channel, campaign, f"{spend:.2f}", platform, impressions, clicks, "GBP")
        )
        totals[channel] = totals.get(channel, 0.0) + spend

    for day in range(world.days):
        for ai, ad in enumerate(world.calendar.ads):
            if not ad.start_day <= day <= ad.end_day:
                continue
            # the platforms also reach people who are not (yet) customers: AUDIENCE_REACH times more
            impressions, clicks = (int(x) * AUDIENCE_REACH for x in world.ad_counts[day, ai])
            cost = clicks * ad.cost_per_click if ad.channel == "search" else impressions / 1000.0 * ad.cost_per_mille
            add(day, ad.channel, ad.name, cost, ad.platform, impressions, clicks)
        for q in world.calendar.qr:
            if q.start_day <= day <= q.end_day:
                reach = int(world.customers * (0.3 if q.placement == "tv" else 0.05))
                add(
                    day,
                    _QR_CHANNEL[q.placement],
                    q.campaign,
                    q.spend_per_day * scale,
                    {"tv": "itv", "print": "magazine", "poster": "jcdecaux", "flyer": "in_store"}.get(
                        q.placement, q.placement
                    ),
                    reach,
                    "",
                )
        for c in world.calendar.campaigns:
            sent = world.send_counts.get(c.campaign_id, 0)
            if c.day == day and sent and _MESSAGE_COST[c.channel] > 0:
                add(
                    day,
                    c.channel,
                    c.name,
                    sent * _MESSAGE_COST[c.channel],
                    {"email": "esp", "sms": "twilio", "whatsapp": "whatsapp_business", "direct_mail": "royal_mail"}[
                        c.channel
                    ],
                    sent,
                    "",
                )
    return rows, totals


def write_reference(folder: Path, world: World) -> None:
    """stores.csv, products.csv and campaigns.csv (what the retailer knows about itself)."""
    with open(folder / "stores.csv", "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(
            ("store_id", "name", "city", "time_zone", "postcode", "floor_area_sqft", "format", "opened", "tills")
        )
        for s in world.stores:
            out.writerow(
                (
                    s.store_id,
                    s.name,
                    s.city,
                    s.time_zone,
                    s.postcode,
                    s.floor_area_sqft,
                    s.store_format,
                    s.opened.isoformat(),
                    s.tills,
                )
            )
    cat = world.catalogue
    with open(folder / "products.csv", "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(("sku", "name", "category", "price", "cost", "margin"))
        for i, sku in enumerate(cat.sku):
            price, cost = float(cat.price[i]), float(cat.cost[i])
            out.writerow(
                (
                    sku,
                    cat.name[i],
                    CATEGORY_NAMES[cat.category[i]],
                    f"{price:.2f}",
                    f"{cost:.2f}",
                    f"{(price - cost) / price:.3f}",
                )
            )
    with open(folder / "campaigns.csv", "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(
            ("campaign_id", "channel", "name", "start_date", "end_date", "promotion", "platform", "city", "sent")
        )
        for c in world.calendar.campaigns:
            out.writerow(
                (
                    c.campaign_id,
                    c.channel,
                    c.name,
                    world.date_of(c.day),
                    world.date_of(c.day),
                    c.promo_type,
                    "",
                    c.city or "",
                    world.send_counts.get(c.campaign_id, 0),
                )
            )
        for ad in world.calendar.ads:
            out.writerow(
                (
                    ad.campaign_id,
                    ad.channel,
                    ad.name,
                    world.date_of(ad.start_day),
                    world.date_of(ad.end_day),
                    "",
                    ad.platform,
                    ad.city or "",
                    "",
                )
            )
        for q in world.calendar.qr:
            out.writerow(
                (
                    q.qr_code_id,
                    _QR_CHANNEL[q.placement],
                    q.campaign,
                    world.date_of(q.start_day),
                    world.date_of(q.end_day),
                    "",
                    q.placement,
                    "",
                    "",
                )
            )
        for ev in world.calendar.events:
            out.writerow(
                (
                    ev.event_id,
                    "store_event",
                    ev.name,
                    world.date_of(ev.day),
                    world.date_of(ev.day),
                    "event",
                    ev.store_id,
                    ev.city,
                    "",
                )
            )
