"""Marketing touches of one day: owned channels, paid ads, QR codes and in-store events.

Who is touched never depends on what they bought or on how likely they are to buy (each send
goes to everyone eligible by consent or location, less a random holdout), which is what makes
every channel's effect identifiable. Each touch is written as the data the channel really
produces (an ESP export row, a messaging webhook event, an ad platform event, a QR scan log
row, an event attendance row). The person's touch level (demo/model.py) rises with the
interaction: a click, a tap, a scan or a visit; a letter's on arrival. Opens and impressions
are recorded but move nobody; an open still delivers a coupon or an event invitation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

import numpy as np

from omniweave.demo.model import CHANNEL_INDEX
from omniweave.demo.people import email_raw, phone_raw
from omniweave.demo.sinks import iso_local, iso_one, iso_utc
from omniweave.demo.world import PROMO_TYPES, Campaign

if TYPE_CHECKING:
    from omniweave.demo.generator import BlockSim

SERVER_LIBRARY = {"name": "analytics-python", "version": "2.3.2"}
ADS_LIBRARY = {"name": "omniweave-ads-connector", "version": "1.0.0"}
_ENGAGEMENT = np.array([1.1, 0.8, 1.1, 1.0, 0.6])  # by persona
_LANDINGS = ("/", "/new-in", "/sale", "/c/womenswear", "/c/home", "/c/beauty")


_URLS: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}


def landing_url(path: str, utm: dict[str, str]) -> str:
    """The site URL for `path` with the UTM parameters of a campaign link."""
    key = (path, tuple(utm.items()))
    url = _URLS.get(key)
    if url is None:
        from omniweave.demo.generator import SITE

        query = urlencode({f"utm_{k}": v for k, v in utm.items()})
        url = _URLS[key] = f"{SITE}{path}?{query}" if query else f"{SITE}{path}"
    return url


def _day_end(sim: BlockSim, idx: np.ndarray, day: int) -> np.ndarray:
    return sim.at(idx, day, np.full(len(idx), 23.98))


def owned_channels(sim: BlockSim, day: int) -> None:
    """Today's e-mail, SMS, WhatsApp, push and direct-mail campaigns."""
    p, rng = sim.p, sim.rng["touch"]
    for c in sim.w.calendar.campaigns:
        if c.day != day:
            continue
        # letters go to every customer near a store (the customer file holds their postal address)
        eligible = {
            "email": sim.email_ok,
            "sms": p.sms_opt_in,
            "whatsapp": p.whatsapp_opt_in,
            "push": p.push_opt_in,
            "direct_mail": sim.store_access > 0,
        }[c.channel]
        if c.city is not None:
            eligible = eligible & (p.city == _city_index(c.city))
        sent = eligible & (rng.random(sim.n) < c.reach)
        idx = np.nonzero(sent)[0]
        sim.w.send_counts[c.campaign_id] = sim.w.send_counts.get(c.campaign_id, 0) + len(idx)
        if not len(idx):
            continue
        {"email": _email, "sms": _message, "whatsapp": _message, "push": _push, "direct_mail": _direct_mail}[c.channel](
            sim, day, c, idx
        )


def _city_index(name: str) -> int:
    from omniweave.demo.world import CITIES

    return next(i for i, c in enumerate(CITIES) if c.name == name)


def _promo(c: Campaign) -> int:
    return PROMO_TYPES.index(c.promo_type)


def _email(sim: BlockSim, day: int, c: Campaign, idx: np.ndarray) -> None:
    p, rng = sim.p, sim.rng["touch"]
    m = len(idx)
    sent_t = sim.at(idx, day, 10.0 + rng.random(m) * 0.5)
    bounced = rng.random(m) < 0.015
    open_p = 0.24 * np.where(p.pref_channel[idx] == 0, 1.5, 0.85) * _ENGAGEMENT[p.persona[idx]]
    opened = ~bounced & (rng.random(m) < open_p * (1.3 if c.promo_type == "event" else 1.0))
    open_t = np.minimum(sent_t + 60 + rng.exponential(2.5 * 3600, m), _day_end(sim, idx, day))
    resp = p.response[idx, _promo(c)]
    clicked = opened & (rng.random(m) < 0.14 * np.sqrt(resp))
    click_t = open_t + 5 + rng.exponential(60, m)
    unsubscribed = ~bounced & (rng.random(m) < 0.0025)
    sim.email_ok[idx[unsubscribed]] = False
    hard = rng.random(m) < 0.3
    utm = {"source": "newsletter", "medium": "email", "campaign": c.name, "content": "hero"}
    path = f"/events/{c.event_id.lower()}" if c.event_id else _LANDINGS[c.day % len(_LANDINGS)]
    link = landing_url(path, utm)
    variants = sim.esp_variant[idx]
    sim.ledger.mark("email", idx, variants)
    times = {
        name: iso_utc(t)
        for name, t in (
            ("sent", sent_t),
            ("delivered", sent_t + 4),
            ("opened", open_t),
            ("clicked", click_t),
            ("unsubscribed", open_t + 30),
        )
    }
    rows = []

    def row(j: int, kind: str, address: str, url: str = "", bounce: str = "") -> tuple[str, ...]:
        stamp = times["delivered" if kind == "bounced" else kind][j]
        return (sim.new_id("esp"), stamp, kind, address, c.campaign_id, c.name, c.subject, url, bounce)

    for j, k in enumerate(idx.tolist()):
        address = email_raw(p, k, int(variants[j]))
        rows.append(row(j, "sent", address))
        if bounced[j]:
            rows.append(row(j, "bounced", address, bounce="hard" if hard[j] else "soft"))
            continue
        rows.append(row(j, "delivered", address))
        if opened[j]:
            rows.append(row(j, "opened", address))
        if clicked[j]:
            rows.append(row(j, "clicked", address, url=link))
        if unsubscribed[j]:
            rows.append(row(j, "unsubscribed", address))
    sim.sinks.rows("email_export", rows)
    touched = idx[opened]
    sim.touch.touch("email", idx[clicked], resp[clicked])
    if c.event_id:
        sim.invited[touched] = _event_index(sim, c.event_id)
    if c.promo_type == "coupon":
        issue_coupons(sim, day, c, touched, open_t[opened] + 1, "email")
    _add_clicks(sim, idx[clicked], click_t[clicked], utm, path, "email")


def _message(sim: BlockSim, day: int, c: Campaign, idx: np.ndarray) -> None:
    """SMS or WhatsApp: provider webhooks as track events (`properties.channel`)."""
    p, rng = sim.p, sim.rng["touch"]
    m, wa = len(idx), c.channel == "whatsapp"
    slot = 1 if wa else 0
    sent_t = sim.at(idx, day, (17.0 if wa else 12.5) + rng.random(m) * 0.25)
    delivered = rng.random(m) < (0.98 if wa else 0.97)
    pref = np.where(p.pref_channel[idx] == (2 if wa else 1), 1.4, 0.9)
    opened = delivered & (rng.random(m) < 0.72 * pref) if wa else delivered
    resp = p.response[idx, _promo(c)]
    clicked = opened & (rng.random(m) < (0.11 if wa else 0.05) * pref * np.sqrt(resp))
    open_t = np.minimum(sent_t + 10 + rng.exponential(1800, m), _day_end(sim, idx, day))
    click_t = open_t + 5 + rng.exponential(40, m)
    utm = {"source": c.channel, "medium": c.channel, "campaign": c.name}
    path = _LANDINGS[c.day % len(_LANDINGS)]
    variants = sim.msg_phone_variant[idx]
    sim.ledger.mark("phone", idx, variants)
    stamps = {
        "sent": iso_utc(sent_t),
        "delivered": iso_utc(sent_t + 3),
        "opened": iso_utc(open_t),
        "clicked": iso_utc(click_t),
    }
    for j, k in enumerate(idx.tolist()):
        who = _recipient(sim, k, slot)
        context = {"library": SERVER_LIBRARY, "traits": {"phone": phone_raw(p, k, int(variants[j]))}}
        props = {
            "channel": c.channel,
            "campaign_id": c.campaign_id,
            "campaign_name": c.name,
            "promotion": c.promo_type,
            "provider_message_id": f"{c.campaign_id}-{k}",
        }
        steps = [
            ("Message Sent", "sent", True),
            ("Message Delivered", "delivered", delivered[j]),
            ("Message Opened", "opened", wa and opened[j]),
            ("Message Link Clicked", "clicked", clicked[j]),
        ]
        for name, stamp, happened in steps:
            if happened:
                extra = {"url": landing_url(path, utm)} if stamp == "clicked" else {}
                sim.sinks.event(
                    "messaging",
                    {
                        "type": "track",
                        "event": name,
                        "messageId": sim.new_id("msg"),
                        **who,
                        "properties": {**props, **extra},
                        "context": context,
                        "timestamp": stamps[stamp][j],
                    },
                )
    touched = idx[opened]
    sim.touch.touch(c.channel, idx[clicked], resp[clicked])
    if c.promo_type == "coupon":
        issue_coupons(sim, day, c, touched, open_t[opened] + 2, c.channel)
    _add_clicks(sim, idx[clicked], click_t[clicked], utm, path, c.channel)


def _recipient(sim: BlockSim, k: int, slot: int) -> dict[str, str]:
    """userId for account holders; otherwise the provider's recipient id as anonymousId."""
    if sim.p.has_account[k]:
        sim.ledger.mark_one("user_id", k, 0)
        return {"userId": sim.p.user_id[k]}
    sim.ledger.mark_one("msg_anon", k, slot)
    return {"anonymousId": sim.p.msg_anon[k][slot]}


def app_identity(sim: BlockSim, k: int, slot: int) -> tuple[dict[str, str], dict[str, object]]:
    """(ids, context) of an event sent by app install `slot` of person `k`."""
    p = sim.p
    ios = bool(p.app_ios[k, slot])
    sim.ledger.mark_one("app_anon", k, slot)
    sim.ledger.mark_one("device_id", k, slot)
    ids = {"anonymousId": p.app_anon[k][slot]}
    if p.has_account[k]:
        sim.ledger.mark_one("user_id", k, 0)
        ids["userId"] = p.user_id[k]
    context: dict[str, object] = {
        "library": {"name": "analytics-ios" if ios else "analytics-android", "version": "4.1.8" if ios else "4.11.3"},
        "app": {"name": "Hollins & Vale", "version": "5.2.0", "build": "520", "namespace": "example.hollinsvale"},
        "device": {
            "id": p.device_id[k][slot],
            "manufacturer": "Apple" if ios else "Samsung",
            "model": "iPhone15,2" if ios else "SM-S911B",
            "type": "ios" if ios else "android",
        },
        "os": {"name": "iOS" if ios else "Android", "version": "17.5" if ios else "14"},
        "locale": "en-GB",
        "timezone": sim.tz_name(k),
    }
    return ids, context


def _push(sim: BlockSim, day: int, c: Campaign, idx: np.ndarray) -> None:
    p, rng = sim.p, sim.rng["touch"]
    m = len(idx)
    received = rng.random(m) < 0.92
    resp = p.response[idx, _promo(c)]
    tapped = received & (rng.random(m) < 0.09 * np.where(p.pref_channel[idx] == 3, 1.4, 0.9) * np.sqrt(resp))
    recv_t = sim.at(idx, day, 18.5 + rng.random(m) * 0.2)
    tap_t = np.minimum(recv_t + 5 + rng.exponential(900, m), _day_end(sim, idx, day))
    stamps = iso_utc(recv_t), iso_utc(tap_t)
    utm = {"source": "app", "medium": "push", "campaign": c.name}
    for j in np.nonzero(received)[0].tolist():
        k = int(idx[j])
        ids, context = app_identity(sim, k, 0)
        props = {"campaign_id": c.campaign_id, "campaign_name": c.name, "promotion": c.promo_type, "title": c.subject}
        sim.sinks.event(
            "app",
            {
                "type": "track",
                "event": "Push Notification Received",
                "messageId": sim.new_id("app"),
                **ids,
                "properties": props,
                "context": context,
                "timestamp": stamps[0][j],
            },
        )
        if tapped[j]:
            sim.sinks.event(
                "app",
                {
                    "type": "track",
                    "event": "Push Notification Tapped",
                    "messageId": sim.new_id("app"),
                    **ids,
                    "properties": props,
                    "context": {**context, "campaign": {"source": "app", "medium": "push", "name": c.name}},
                    "timestamp": stamps[1][j],
                },
            )
    touched = idx[received]
    sim.touch.touch("push", idx[tapped], resp[tapped])
    if c.promo_type == "coupon":
        issue_coupons(sim, day, c, touched, recv_t[received] + 1, "push")
    for k, t in zip(idx[tapped].tolist(), tap_t[tapped].tolist(), strict=False):
        sim.clicks.append((k, t + 2, "app", 0, utm, "push"))


def _direct_mail(sim: BlockSim, day: int, c: Campaign, idx: np.ndarray) -> None:
    p, rng = sim.p, sim.rng["touch"]
    m = len(idx)
    prospect = rng.random(m) < 0.04  # from a rented list: name and address, no customer number
    stamps = iso_local(sim.at(idx, day, np.full(m, 8.0)), sim.w.offsets[sim.tz[idx], day])
    sim.ledger.mark("customer_number", idx[~prospect], 0)
    sim.ledger.mark("name_postcode", idx[prospect], 0)
    sim.sinks.rows(
        "direct_mail",
        [
            (
                sim.new_id("mail"),
                stamps[j],
                c.name,
                "" if prospect[j] else p.customer_number[k],
                p.first[k],
                p.last[k],
                p.address[k],
                p.postcode[k],
                c.offer_code,
            )
            for j, k in enumerate(idx.tolist())
        ],
    )
    if c.offer_code:
        sim.ledger.placeholder("coupon_code", c.offer_code)  # one code for every recipient: nobody's own
    sim.touch.touch("direct_mail", idx, p.response[idx, _promo(c)])
    sim.dm_until[idx] = day + 21
    for k in idx.tolist():
        sim.dm_code[k] = c.offer_code or ""
        sim.dm_campaign[k] = c.name


def issue_coupons(sim: BlockSim, day: int, c: Campaign, idx: np.ndarray, times: np.ndarray, channel: str) -> None:
    """Give persons `idx` a personal coupon (valid 14 days), announced by a `Coupon Issued` event."""
    if not len(idx):
        return
    p = sim.p
    valid_until = sim.w.date_of(day + 14).isoformat()
    stamps = iso_utc(times)
    prefix = {"email": "EM", "sms": "SM", "whatsapp": "WA", "push": "AP"}[channel]
    for j, k in enumerate(idx.tolist()):
        serial = sim.new_id("coupon")[-7:].upper()
        code = f"{prefix}{sim.block:02d}{serial}"
        props = {
            "coupon_code": code,
            "campaign_id": c.campaign_id,
            "campaign_name": c.name,
            "channel": channel,
            "discount_pct": c.discount_pct or 15,
            "valid_until": valid_until,
            "promotion": "coupon",
        }
        if channel == "push":
            ids, context = app_identity(sim, k, 0)
            stream = "app"
        else:
            stream = "messaging"
            ids = _recipient(sim, k, {"sms": 0, "whatsapp": 1, "email": 2}[channel])
            context = {"library": SERVER_LIBRARY}
            if channel == "email":
                context["traits"] = {"email": email_raw(p, k, int(sim.esp_variant[k]))}
        sim.sinks.event(
            stream,
            {
                "type": "track",
                "event": "Coupon Issued",
                "messageId": sim.new_id(stream),
                **ids,
                "properties": props,
                "context": context,
                "timestamp": stamps[j],
            },
        )
        sim.ledger.add("coupon_code", code, code, p.person_id[k])
        sim.coupon_code[k], sim.coupon_channel[k], sim.coupon_campaign[k] = code, channel, c.name
        sim.touch.coupon_issuer[k] = CHANNEL_INDEX[channel]
        sim.coupon_until[k], sim.coupon_pct[k] = day + 14, c.discount_pct or 15


def _add_clicks(
    sim: BlockSim, idx: np.ndarray, times: np.ndarray, utm: dict[str, str], path: str, channel: str
) -> None:
    """Clicks land on the web shop, in the person's (mobile) browser."""
    for k, t in zip(idx.tolist(), times.tolist(), strict=False):
        slot = int(sim.mobile_slot[k]) if sim.mobile_slot[k] >= 0 else 0
        sim.clicks.append((k, t, "web", slot, {**utm, "_path": path}, channel))


def _event_index(sim: BlockSim, event_id: str) -> int:
    return next(i for i, e in enumerate(sim.w.calendar.events) if e.event_id == event_id)


def advertising(sim: BlockSim, day: int) -> None:
    """Paid social, search and display: impressions and clicks reported by the platforms."""
    p, rng = sim.p, sim.rng["touch"]
    online = p.n_browsers > 0
    activity = np.clip(p.browse_rate / 0.05, 0.2, 3.0)
    for ai, ad in enumerate(sim.w.calendar.ads):
        if not ad.start_day <= day <= ad.end_day:
            continue
        eligible = online if ad.city is None else online & (p.city == _city_index(ad.city))
        shown = np.minimum(rng.poisson(ad.impression_rate * activity), 3) * eligible
        idx = np.nonzero(shown)[0]
        counts = shown[idx]
        clicks = rng.binomial(counts, ad.click_rate)
        sim.w.ad_counts[day, ai] += (int(counts.sum()), int(clicks.sum()))
        if not len(idx):
            continue
        slots = (rng.random(len(idx)) * p.n_browsers[idx]).astype(int)
        sim.ledger.mark("web_anon", idx, slots)
        t0 = sim.at(idx, day, sim.hours(idx, rng, 3.0, 6.0, 23.5))
        utm = {
            "source": ad.utm_source,
            "medium": ad.utm_medium,
            "campaign": ad.name,
            "content": f"{ad.campaign_id.lower()}-a",
        }
        props = {
            "channel": ad.channel,
            "platform": ad.platform,
            "campaign_id": ad.campaign_id,
            "campaign_name": ad.name,
            "ad_id": f"{ad.campaign_id}-A1",
            "creative": utm["content"],
        }
        context = {
            "library": ADS_LIBRARY,
            "campaign": {"source": ad.utm_source, "medium": ad.utm_medium, "name": ad.name},
        }
        path = f"/events/{ad.campaign_id[6:].lower()}" if ad.city else "/sale" if ad.channel != "search" else "/"
        for j, k in enumerate(idx.tolist()):
            anon = p.web_anon[k][slots[j]]
            for r in range(int(counts[j])):
                t = t0[j] + r * 1800.0
                sim.sinks.event(
                    "ads",
                    {
                        "type": "track",
                        "event": "Ad Impression",
                        "messageId": sim.new_id("ads"),
                        "anonymousId": anon,
                        "properties": props,
                        "context": context,
                        "timestamp": iso_one(t),
                    },
                )
                if r < clicks[j]:
                    url = landing_url(path, utm)
                    sim.sinks.event(
                        "ads",
                        {
                            "type": "track",
                            "event": "Ad Clicked",
                            "messageId": sim.new_id("ads"),
                            "anonymousId": anon,
                            "properties": {**props, "url": url},
                            "context": context,
                            "timestamp": iso_one(t + 3),
                        },
                    )
                    sim.clicks.append((k, t + 6, "web", int(slots[j]), {**utm, "_path": path}, ad.channel))
        sim.touch.touch(ad.channel, idx[clicks > 0], 1.0)
        if ad.city:
            sim.event_ad[idx[clicks > 0]] = _event_index(sim, ad.campaign_id[6:])


def qr_codes(sim: BlockSim, day: int) -> None:
    """Scans of QR codes on TV, print, posters and flyers; each opens the shop in a mobile browser."""
    p, rng = sim.p, sim.rng["touch"]
    can_scan = sim.mobile_slot >= 0
    for q in sim.w.calendar.qr:
        if not q.start_day <= day <= q.end_day:
            continue
        rate = q.daily_scan_rate * (np.where(p.age > 45, 1.6, 0.7) if q.placement == "print" else 1.0)
        idx = np.nonzero(can_scan & (rng.random(sim.n) < rate))[0]
        if not len(idx):
            continue
        hours = rng.uniform(19.0, 22.5, len(idx)) if q.placement == "tv" else sim.hours(idx, rng)
        times = sim.at(idx, day, hours)
        stamps = iso_utc(times)
        slots = sim.mobile_slot[idx]
        sim.ledger.mark("web_anon", idx, slots)
        utm = {"source": q.placement, "medium": "qr", "campaign": q.campaign}
        path = f"/qr/{q.qr_code_id.lower()}"
        url = landing_url(path, utm)
        sim.sinks.rows(
            "qr_scans",
            [
                (sim.new_id("qr"), stamps[j], q.qr_code_id, q.placement, q.campaign, p.web_anon[k][slots[j]], "", url)
                for j, k in enumerate(idx.tolist())
            ],
        )
        sim.touch.touch("qr", idx, 1.0)
        for j, k in enumerate(idx.tolist()):
            sim.clicks.append((k, float(times[j]) + 2, "web", int(slots[j]), {**utm, "_path": path}, "qr"))


def store_events(sim: BlockSim, day: int) -> None:
    """Attendance of today's in-store events: likelier for those who opened the invitation or clicked the ad."""
    p, rng = sim.p, sim.rng["touch"]
    sim.attending[:] = -1
    for ei, ev in enumerate(sim.w.calendar.events):
        if ev.day != day:
            continue
        local = (p.city == _city_index(ev.city)) & (sim.store_access > 0)
        prob = 0.003 + 0.10 * (sim.invited == ei) * p.response[:, 3] + 0.08 * (sim.event_ad == ei)
        idx = np.nonzero(local & (rng.random(sim.n) < prob))[0]
        if not len(idx):
            continue
        store = next(i for i, s in enumerate(sim.w.stores) if s.store_id == ev.store_id)
        times = sim.store_at(np.full(len(idx), store), day, ev.start_hour + rng.uniform(-0.2, 0.4, len(idx)))
        stamps = iso_local(times, sim.w.offsets[sim.w.store_tz[store], day].repeat(len(idx)))
        show_card = p.is_member[idx] & (p.member_since[idx] <= day) & (rng.random(len(idx)) < 0.7)
        rsvp = p.has_email[idx] & (rng.random(len(idx)) < 0.5)
        sim.ledger.mark("loyalty_card", idx[show_card], 0)
        sim.ledger.mark("email", idx[rsvp], 0)
        dwell = rng.integers(45, 150, len(idx))
        sim.sinks.rows(
            "store_visits",
            [
                (
                    sim.new_id("visit"),
                    ev.store_id,
                    stamps[j],
                    "event",
                    p.card[k] if show_card[j] else "",
                    "",
                    p.email[k] if rsvp[j] else "",
                    "",
                    ev.event_id,
                    ev.name,
                    int(dwell[j]),
                )
                for j, k in enumerate(idx.tolist())
            ],
        )
        sim.touch.touch("store_event", idx, p.response[idx, 3])
        sim.attending[idx] = ei
