"""The offline side of one day: store trips and till receipts, footfall and Wi-Fi, coupon
redemptions, loyalty sign-ups, the call centre and the gift-card platform.

Till rows carry what a till really captures: the loyalty card when it is shown (sometimes the
cashier's placeholder card), an e-mail typed for an e-receipt (typos included), rarely a phone or
customer number, and the coupon code when one is redeemed. Many receipts carry nothing at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from omniweave.demo.identity import PLACEHOLDER_CARD, PLACEHOLDER_EMAILS
from omniweave.demo.people import customer_number_raw, email_raw, phone_raw
from omniweave.demo.sinks import iso_local, iso_one, iso_utc
from omniweave.demo.world import CATEGORY_NAMES

if TYPE_CHECKING:
    from omniweave.demo.generator import BlockSim

_PAYMENTS = ("card", "contactless", "mobile", "cash", "voucher")
_REASONS_AFTER_ORDER = ("order_status", "delivery", "return", "refund")
_REASONS = ("product_question", "loyalty_points", "store_hours", "complaint", "account_help")
_OUTCOMES = ("resolved", "resolved", "resolved", "escalated", "callback_scheduled", "order_updated")


def write_customers(sim: BlockSim) -> None:
    """The CRM's customer master as exported at the start of the period: every customer (all have a
    customer number), with the e-mail and phone on file (all that receive newsletters, SMS or WhatsApp,
    most of the others who have one), postcode, often
    the birth date, the web shop account (its user id) of those who have one, and the consent flags;
    each record as last changed before the period."""
    p, rng = sim.p, sim.rng["crm"]
    n = sim.n
    created = rng.integers(60, 2000, n)
    updated = np.minimum(created, rng.integers(1, 60, n))
    hours = rng.uniform(8.0, 20.0, n)
    created_at = iso_utc(sim.w.day0[0] - created * 86400.0 + hours * 3600.0)
    updated_at = iso_utc(sim.w.day0[0] - updated * 86400.0 + hours * 3600.0)
    # the retailer messages only contact details it holds: every opted-in address and number is on file
    give_email = p.has_email & (p.email_opt_in | (rng.random(n) < 0.8))
    give_phone = p.has_phone & (p.sms_opt_in | p.whatsapp_opt_in | (rng.random(n) < 0.7))
    phone_v = rng.choice(6, n, p=[0.4, 0.2, 0.2, 0.2, 0.0, 0.0])
    give_birth = rng.random(n) < 0.5
    give_postcode = rng.random(n) < 0.95
    sim.ledger.mark("customer_number", np.arange(n), 0)
    sim.ledger.mark("email", np.nonzero(give_email)[0], 0)
    sim.ledger.mark("phone", np.nonzero(give_phone)[0], phone_v[give_phone])
    sim.ledger.mark("user_id", np.nonzero(p.has_account)[0], 0)
    gender = ("F", "M", "")
    sim.sinks.rows(
        "customers",
        [
            (
                p.customer_number[k],
                updated_at[k],
                p.first[k],
                p.last[k],
                p.email[k] if give_email[k] else "",
                phone_raw(p, k, int(phone_v[k])) if give_phone[k] else "",
                str(p.birth[k]) if give_birth[k] else "",
                p.postcode[k] if give_postcode[k] else "",
                gender[p.gender[k]],
                "true" if p.email_opt_in[k] else "false",
                "true" if p.sms_opt_in[k] else "false",
                created_at[k],
                p.user_id[k] if p.has_account[k] else "",
            )
            for k in range(n)
        ],
    )


def write_loyalty(sim: BlockSim) -> None:
    """The loyalty programme's member list (sign-ups before and during the period)."""
    p, rng = sim.p, sim.rng["store"]
    idx = np.nonzero(p.is_member)[0]
    m = len(idx)
    if not m:
        return
    since = p.member_since[idx]
    hours = rng.uniform(10.0, 18.0, m)
    store = np.maximum(p.home_store[idx], 0)
    tz = sim.w.store_tz[store]
    offsets = np.array([sim.w.offset(int(z), int(d)) for z, d in zip(tz.tolist(), since.tolist(), strict=False)])
    utc = sim.w.day0[0] + since * 86400.0 + hours * 3600.0 - offsets
    stamps = iso_local(utc, offsets)
    replaced_day = np.minimum(since + rng.integers(30, 400, m), sim.w.days - 1)
    replaced_offsets = np.array(
        [sim.w.offset(int(z), int(d)) for z, d in zip(tz.tolist(), replaced_day.tolist(), strict=False)]
    )
    later = iso_local(sim.w.day0[0] + replaced_day * 86400.0 + hours * 3600.0 - replaced_offsets, replaced_offsets)
    email_v = rng.choice(5, m, p=[0.7, 0.1, 0.05, 0.05, 0.1])
    give_email = p.has_email[idx] & (rng.random(m) < 0.85)
    phone_v = rng.choice(6, m, p=[0.1, 0.1, 0.5, 0.2, 0.05, 0.05])
    give_phone = p.has_phone[idx] & (rng.random(m) < 0.8)
    give_cn = rng.random(m) < 0.7
    give_birth = rng.random(m) < 0.9
    sim.ledger.mark("loyalty_card", idx, 0)
    sim.ledger.mark("email", idx[give_email], email_v[give_email])
    sim.ledger.mark("phone", idx[give_phone], phone_v[give_phone])
    sim.ledger.mark("customer_number", idx[give_cn], 0)
    gender = ("F", "M", "")
    rows = []
    for j, k in enumerate(idx.tolist()):
        row = [
            p.card[k],
            stamps[j],
            sim.w.stores[int(store[j])].store_id,
            p.first[k],
            p.last[k],
            email_raw(p, k, int(email_v[j])) if give_email[j] else "",
            phone_raw(p, k, int(phone_v[j])) if give_phone[j] else "",
            str(p.birth[k]) if give_birth[j] else "",
            p.postcode[k],
            gender[p.gender[k]],
            "true" if p.email_opt_in[k] else "false",
            "true" if p.sms_opt_in[k] else "false",
            p.customer_number[k] if give_cn[j] else "",
        ]
        rows.append(row)
        if p.has_card2[k]:  # a replacement card: a second sign-up row, fewer details
            sim.ledger.mark_one("loyalty_card", k, 1)
            rows.append(
                [
                    p.card2[k],
                    later[j],
                    row[2],
                    p.first[k],
                    p.last[k],
                    row[5],
                    "",
                    "",
                    p.postcode[k],
                    row[9],
                    row[10],
                    row[11],
                    row[12],
                ]
            )
    sim.sinks.rows("loyalty", rows)


def redeem(
    sim: BlockSim,
    k: int,
    day: int,
    t: float,
    channel: str,
    order_id: str,
    discount: float,
    store: int | None,
    card: str,
    code: str = "",
    campaign: str = "",
    issued: str = "",
) -> None:
    """Record a coupon redemption (`coupons` file); a personal coupon is used up."""
    p = sim.p
    personal = not code
    code = code or sim.coupon_code[k]
    if store is not None:
        offset = int(sim.w.offsets[sim.w.store_tz[store], day])
        stamp = iso_local(np.array([t]), np.array([offset]))[0]
    else:
        stamp = iso_one(t)
    email = ""
    if channel != "store" and p.has_email[k]:
        email = email_raw(p, k, 0)
        sim.ledger.mark_one("email", k, 0)
    sim.sinks.rows(
        "coupons",
        [
            (
                sim.new_id("redemption"),
                code,
                stamp,
                channel,
                campaign or sim.coupon_campaign[k],
                sim.w.stores[store].store_id if store is not None else "",
                card,
                email,
                "",
                order_id,
                f"{discount:.2f}",
                issued or sim.coupon_channel[k],
            )
        ],
    )
    if personal:
        sim.coupon_until[k] = -1


def trips(sim: BlockSim, day: int, buy_store: np.ndarray) -> None:
    """Store purchases (till rows), browsing visits (footfall) and Wi-Fi logins."""
    p, rng = sim.p, sim.rng["store"]
    w, cat = sim.w, sim.w.catalogue
    buyers = np.nonzero(buy_store)[0]
    browsers = np.nonzero((rng.random(sim.n) < p.base_store * 0.8) & ~buy_store)[0]
    visitors = np.concatenate([buyers, browsers])
    if not len(visitors):
        return
    v = len(visitors)
    n_stores = len(w.stores)
    stores = np.where(rng.random(v) < 0.88, p.home_store[visitors], rng.integers(0, n_stores, v))
    stores = np.where(stores < 0, 0, stores)
    hours = rng.normal(p.active_hour[visitors], 2.5)
    closed = (hours < 9.0) | (hours > 20.5)
    hours[closed] = rng.uniform(9.0, 20.5, int(closed.sum()))
    event_store = {
        ei: next(i for i, s in enumerate(w.stores) if s.store_id == ev.store_id)
        for ei, ev in enumerate(w.calendar.events)
        if ev.day == day
    }
    for j, k in enumerate(visitors.tolist()):
        ei = int(sim.attending[k])
        if ei >= 0:
            stores[j] = event_store[ei]
            hours[j] = w.calendar.events[ei].start_hour + 0.5 + rng.random()
    times = sim.store_at(stores, day, hours)
    offsets = w.offsets[w.store_tz[stores], day]
    stamps = iso_local(times, offsets)
    date_tag = w.date_of(day).strftime("%Y%m%d")
    # footfall: every visit, anonymous; Wi-Fi: some visitors' phones, sometimes with an e-mail
    dwell = rng.integers(4, 55, v)
    footfall = [
        (
            sim.new_id("visit"),
            w.stores[int(stores[j])].store_id,
            stamps[j],
            "footfall",
            "",
            "",
            "",
            "",
            "",
            "",
            int(dwell[j]),
        )
        for j in range(v)
    ]
    wifi = np.nonzero(p.has_phone[visitors] & (rng.random(v) < 0.2))[0]
    wifi_email = rng.random(len(wifi)) < 0.35
    wifi_rows = []
    for j, e in zip(wifi.tolist(), wifi_email.tolist(), strict=False):
        k = int(visitors[j])
        via_app = p.n_apps[k] > 0
        sim.ledger.mark_one("device_id", k, 0 if via_app else 2)
        device = p.device_id[k][0] if via_app else p.wifi_mac[k]
        email = ""
        if e and p.has_email[k]:
            variant = 0 if rng.random() < 0.8 else 4
            sim.ledger.mark_one("email", k, variant)
            email = email_raw(p, k, variant)
        wifi_rows.append(
            (
                sim.new_id("visit"),
                w.stores[int(stores[j])].store_id,
                iso_local(times[j : j + 1] + 60, offsets[j : j + 1])[0],
                "wifi",
                "",
                device,
                email,
                "",
                "",
                "",
                int(dwell[j]),
            )
        )
    sim.sinks.rows("store_visits", footfall + wifi_rows)
    # till receipts of the buyers (the first len(buyers) visitors)
    b = len(buyers)
    if not b:
        return
    rows = []
    show_card = p.is_member[buyers] & (p.member_since[buyers] <= day) & (rng.random(b) < 0.8)
    placeholder = ~show_card & (rng.random(b) < 0.015)
    give_email = p.has_email[buyers] & (rng.random(b) < 0.18)
    email_v = rng.choice(5, b, p=[0.55, 0.12, 0.08, 0.1, 0.15])
    dummy_email = ~give_email & (rng.random(b) < 0.01)
    give_phone = p.has_phone[buyers] & (rng.random(b) < 0.04)
    phone_v = rng.choice([1, 2, 3], b)
    give_cn = rng.random(b) < 0.03
    use_coupon = rng.random(b) < 0.45 + 0.4 * p.price_sensitivity[buyers]
    use_mail_offer = rng.random(b) < 0.35
    payment = rng.choice(len(_PAYMENTS), b, p=[0.4, 0.25, 0.15, 0.15, 0.05])
    for j, k in enumerate(buyers.tolist()):
        s = int(stores[j])
        store = w.stores[s]
        till = 1 + int(rng.integers(store.tills))
        txn = f"{store.store_id}-{date_tag}-{till:02d}-{sim.block:02d}{sim.new_id('till')[-6:]}"
        card = ""
        if show_card[j]:
            second = p.has_card2[k] and rng.random() < 0.5
            card = p.card2[k] if second else p.card[k]
            sim.ledger.mark_one("loyalty_card", k, 1 if second else 0)
        elif placeholder[j]:
            card = PLACEHOLDER_CARD
            sim.ledger.placeholder("loyalty_card", card)
        email = ""
        if give_email[j]:
            email = email_raw(p, k, int(email_v[j]))
            sim.ledger.mark_one("email", k, int(email_v[j]))
        elif dummy_email[j]:
            email = PLACEHOLDER_EMAILS[k % 2]
            sim.ledger.placeholder("email", email)
        phone = ""
        if give_phone[j]:
            phone = phone_raw(p, k, int(phone_v[j]))
            sim.ledger.mark_one("phone", k, int(phone_v[j]))
        cn = ""
        if give_cn[j]:
            cn = customer_number_raw(p, k, 0)
            sim.ledger.mark_one("customer_number", k, 0)
        n_items = 1 + min(int(rng.poisson(1.3)), 7)
        cat_ix = np.minimum(np.searchsorted(sim.affinity_cum[k], rng.random(n_items)), len(CATEGORY_NAMES) - 1)
        items = cat.category_start[cat_ix] + (rng.random(n_items) * cat.category_size[cat_ix]).astype(int)
        qty = np.where(rng.random(n_items) < 0.8, 1, rng.integers(2, 4, n_items))
        line_total = cat.price[items] * qty
        code, pct, campaign, issued = "", 0, "", ""
        if sim.coupon_until[k] >= day and use_coupon[j]:
            code, pct, campaign, issued = (
                sim.coupon_code[k],
                int(sim.coupon_pct[k]),
                sim.coupon_campaign[k],
                sim.coupon_channel[k],
            )
        elif sim.dm_until[k] >= day and use_mail_offer[j]:
            code, pct, campaign, issued = sim.dm_code[k], 20, sim.dm_campaign[k], "direct_mail"
        discounts = np.round(line_total * pct / 100.0, 2) if code else np.zeros(n_items)
        for i in range(n_items):
            item = int(items[i])
            rows.append(
                (
                    txn,
                    store.store_id,
                    stamps[j],
                    cat.sku[item],
                    cat.name[item],
                    CATEGORY_NAMES[cat.category[item]],
                    int(qty[i]),
                    f"{cat.price[item]:.2f}",
                    f"{store.store_id}-T{till:02d}",
                    f"{discounts[i]:.2f}" if code else "",
                    code,
                    card,
                    email,
                    phone,
                    cn,
                    "GBP",
                    _PAYMENTS[payment[j]],
                )
            )
        if code:
            redeem(
                sim,
                k,
                day,
                float(times[j]) - 30,
                "store",
                txn,
                float(discounts.sum()),
                store=s,
                card=card,
                code=code if issued == "direct_mail" else "",
                campaign=campaign,
                issued=issued,
            )
        sim.orders[k, 1] += 1
        sim.revenue[k, 1] += float(np.round(line_total.sum() - discounts.sum(), 2))
    sim.sinks.rows("till", rows)


def call_centre(sim: BlockSim, day: int) -> None:
    """Calls: more after an online order; a few callers give only their name and postcode."""
    p, rng = sim.p, sim.rng["misc"]
    recent = (day - sim.last_online_order) <= 7
    idx = np.nonzero(rng.random(sim.n) < np.where(recent, 0.012, 0.0006))[0]
    m = len(idx)
    if not m:
        return
    times = sim.at(idx, day, rng.uniform(8.5, 19.5, m))
    stamps = iso_local(times, sim.w.offsets[sim.tz[idx], day])
    no_key = rng.random(m) < 0.03
    give_cn = ~no_key & (rng.random(m) < 0.55)
    cn_v = rng.choice(4, m, p=[0.5, 0.2, 0.2, 0.1])
    give_phone = ~no_key & p.has_phone[idx] & (rng.random(m) < 0.75)
    phone_v = rng.choice(6, m, p=[0.2, 0.15, 0.3, 0.2, 0.1, 0.05])
    give_email = ~no_key & p.has_email[idx] & (rng.random(m) < 0.15)
    email_v = rng.choice([0, 1, 4], m, p=[0.7, 0.2, 0.1])
    no_key |= ~give_cn & ~give_phone & ~give_email  # only a name and a postcode to go on
    give_postcode = no_key | (rng.random(m) < 0.7)
    sim.ledger.mark("customer_number", idx[give_cn], cn_v[give_cn])
    sim.ledger.mark("phone", idx[give_phone], phone_v[give_phone])
    sim.ledger.mark("email", idx[give_email], email_v[give_email])
    sim.ledger.mark("name_postcode", idx[no_key], 0)
    reasons = np.where(
        recent[idx], rng.integers(0, len(_REASONS_AFTER_ORDER), m), -1 - rng.integers(0, len(_REASONS), m)
    )
    outcome = rng.integers(0, len(_OUTCOMES), m)
    agent = rng.integers(1, 31, m)
    duration = (60 + rng.exponential(300, m)).astype(int)
    sim.sinks.rows(
        "call_centre",
        [
            (
                sim.new_id("call"),
                stamps[j],
                customer_number_raw(p, k, int(cn_v[j])) if give_cn[j] else "",
                phone_raw(p, k, int(phone_v[j])) if give_phone[j] else "",
                email_raw(p, k, int(email_v[j])) if give_email[j] else "",
                p.first[k],
                p.last[k],
                p.postcode[k] if give_postcode[j] else "",
                _REASONS_AFTER_ORDER[reasons[j]] if reasons[j] >= 0 else _REASONS[-1 - reasons[j]],
                _OUTCOMES[outcome[j]],
                f"A{agent[j]:03d}",
                int(duration[j]),
            )
            for j, k in enumerate(idx.tolist())
        ],
    )


GIFT_CARD_SALES_PER_DAY = 0.0006
"""The chance that a customer buys a gift card on a given day."""
GIFT_CARD_VALUES = (25.0, 50.0, 75.0, 100.0)


def gift_cards(sim: BlockSim, day: int) -> None:
    """The gift-card platform's rows of the day: cards sold (at a till or in the web shop) and redemptions.

    Four cards in five are spent, by someone else (the buyer's gift) 3-60 days later, in one visit or
    (three in ten) two; the rest are never redeemed. A card bought or spent at a till names the loyalty
    card when a member shows it; one bought or spent online names the account's e-mail.
    """
    p, rng = sim.p, sim.rng["gift"]
    rows: list[tuple[object, ...]] = []

    def row(k: int, card: str, action: str, value: float) -> None:
        in_store = p.home_store[k] >= 0 and rng.random() < 0.65
        hour = np.array(
            [rng.uniform(9.5, 20.0) if in_store else float(np.clip(rng.normal(p.active_hour[k], 2.5), 7, 23.5))]
        )
        card_no, email, store_id = "", "", ""
        if in_store:
            s = int(p.home_store[k])
            store_id = sim.w.stores[s].store_id
            stamp = iso_local(sim.store_at(np.array([s]), day, hour), sim.w.offsets[sim.w.store_tz[[s]], day])[0]
            if p.is_member[k] and p.member_since[k] <= day and rng.random() < 0.8:
                card_no = p.card[k]
                sim.ledger.mark_one("loyalty_card", k, 0)
        else:
            stamp = iso_utc(sim.at(np.array([k]), day, hour))[0]
            if p.has_email[k]:
                email = email_raw(p, k, 0)
                sim.ledger.mark_one("email", k, 0)
        rows.append(
            (
                sim.new_id("gift"),
                card,
                action,
                stamp,
                "store" if in_store else "web",
                f"{value:.2f}",
                "GBP",
                store_id,
                "",
                card_no,
                email,
            )
        )

    for k in np.nonzero(rng.random(sim.n) < GIFT_CARD_SALES_PER_DAY)[0].tolist():
        card = f"GC{sim.block:02d}{sim.new_id('gift-card')[-8:].upper()}"
        value = float(GIFT_CARD_VALUES[int(rng.integers(len(GIFT_CARD_VALUES)))])
        row(k, card, "sold", value)
        if rng.random() < 0.8:
            visits = 2 if rng.random() < 0.3 else 1
            sim.gift_cards.append((day + int(rng.integers(3, 61)), int(rng.integers(sim.n)), card, value, visits))
    due = [g for g in sim.gift_cards if g[0] == day]
    sim.gift_cards = [g for g in sim.gift_cards if g[0] != day]
    for _, k, card, left, visits in due:
        spent = left if visits == 1 else round(left * float(rng.uniform(0.3, 0.7)), 2)
        row(k, card, "redeemed", spent)
        if visits > 1:
            sim.gift_cards.append((day + int(rng.integers(2, 30)), k, card, round(left - spent, 2), visits - 1))
    if rows:
        sim.sinks.rows("gift_cards", rows)
