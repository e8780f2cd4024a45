"""Web and app sessions of one day: browsing, logging in, carts and online orders.

Sessions come from clicks (e-mail, SMS, WhatsApp, push, ads, QR landing pages, with their UTM
tags), from organic visits, and from the day's online buyers, who convert in their last
click-through session if they had one. Browsers stay anonymous until the person logs in (then
`identify` links the anonymousId to the userId, and later events carry both); people without
an account check out as guests with their e-mail in `identify` traits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from omniweave.demo.people import email_raw, phone_raw
from omniweave.demo.sinks import iso_one
from omniweave.demo.touches import app_identity, landing_url
from omniweave.demo.world import CATEGORY_NAMES

if TYPE_CHECKING:
    from omniweave.demo.generator import BlockSim

WEB_LIBRARY = {"name": "analytics.js", "version": "npm:next-1.70.0"}
_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
)
_REFERRERS = {
    "social": "https://www.facebook.com/",
    "search": "https://www.google.com/",
    "display": "https://www.theguardian.com/",
}
Session = tuple[int, float, str, int, "dict[str, str] | None", str]


def sessions(sim: BlockSim, day: int, buy_online: np.ndarray) -> None:
    """Emit today's sessions; the online buyers (`buy_online`) order in one of them."""
    p, rng = sim.p, sim.rng["browse"]
    browse = np.nonzero(rng.random(sim.n) < p.browse_rate)[0]
    use_app = (p.n_apps[browse] > 0) & ((rng.random(len(browse)) < 0.6) | (p.n_browsers[browse] == 0))
    slots = (rng.random(len(browse)) * np.maximum(np.where(use_app, p.n_apps[browse], p.n_browsers[browse]), 1)).astype(
        int
    )
    times = sim.at(browse, day, sim.hours(browse, rng))
    by_person: dict[int, list[Session]] = {}
    all_sessions: list[Session] = list(sim.clicks)
    for k, t, app, slot in zip(browse.tolist(), times.tolist(), use_app.tolist(), slots.tolist(), strict=False):
        all_sessions.append((k, t, "app" if app else "web", slot, None, "organic"))
    for s in all_sessions:
        by_person.setdefault(s[0], []).append(s)
    converting: set[int] = set()  # positions in all_sessions
    buyers = np.nonzero(buy_online)[0]
    extra_hours = sim.hours(buyers, rng) if len(buyers) else np.zeros(0)
    extra_app = rng.random(len(buyers)) < 0.5
    positions = {id(s): i for i, s in enumerate(all_sessions)}
    for j, k in enumerate(buyers.tolist()):
        own = by_person.get(k)
        if own:
            clicked = [s for s in own if s[4] is not None]
            chosen = max(clicked or own, key=lambda s: s[1])
            converting.add(positions[id(chosen)])
        else:
            app = bool(p.n_apps[k] > 0 and (extra_app[j] or p.n_browsers[k] == 0))
            slot = 0 if app else (int(sim.mobile_slot[k]) if extra_app[j] and sim.mobile_slot[k] >= 0 else 0)
            t = float(sim.at(np.array([k]), day, extra_hours[j : j + 1])[0])
            converting.add(len(all_sessions))
            all_sessions.append((k, t, "app" if app else "web", slot, None, "direct"))
    detail = sim.rng["detail"]
    for i, (k, t, platform, slot, utm, channel) in enumerate(all_sessions):
        if platform == "app":
            _app_session(sim, day, k, t, slot, utm, i in converting, detail)
        else:
            _web_session(sim, day, k, t, slot, utm, channel, i in converting, detail)


def _products(sim: BlockSim, k: int, rng: np.random.Generator, count: int) -> list[int]:
    """Product indices a person looks at or buys, drawn by category affinity."""
    cat_ix = np.minimum(np.searchsorted(sim.affinity_cum[k], rng.random(count)), len(CATEGORY_NAMES) - 1)
    cat = sim.w.catalogue
    return (cat.category_start[cat_ix] + (rng.random(count) * cat.category_size[cat_ix]).astype(int)).tolist()


def _product_props(sim: BlockSim, i: int, quantity: int | None = None) -> dict[str, Any]:
    cat = sim.w.catalogue
    props = {
        "product_id": cat.sku[i],
        "sku": cat.sku[i],
        "name": cat.name[i],
        "category": CATEGORY_NAMES[cat.category[i]],
        "price": float(cat.price[i]),
        "currency": "GBP",
    }
    if quantity is not None:
        props["quantity"] = quantity
    return props


class _Clock:
    """Event times within one session."""

    def __init__(self, start: float, rng: np.random.Generator):
        self.t, self.rng = start, rng

    def next(self, mean: float = 35.0) -> str:
        self.t += 3.0 + float(self.rng.exponential(mean))
        return iso_one(self.t)


def _web_session(
    sim: BlockSim,
    day: int,
    k: int,
    t: float,
    slot: int,
    utm: dict[str, str] | None,
    channel: str,
    converting: bool,
    rng: np.random.Generator,
) -> None:
    p = sim.p
    anon = p.web_anon[k][slot]
    sim.ledger.mark_one("web_anon", k, slot)
    mobile = bool(p.browser_mobile[k, slot])
    ua = _UA[2 + (k % 2) if mobile else k % 2]
    clock = _Clock(t - 3.0, rng)
    ids: dict[str, str] = {"anonymousId": anon}
    if sim.web_login[k, slot]:
        ids["userId"] = p.user_id[k]

    def context(url: str, path: str, title: str, referrer: str, campaign: dict[str, str] | None) -> dict[str, Any]:
        page = {
            "path": path,
            "url": url,
            "title": title,
            "referrer": referrer,
            "search": url.partition("?")[2] and "?" + url.partition("?")[2],
        }
        ctx: dict[str, Any] = {
            "library": WEB_LIBRARY,
            "page": page,
            "userAgent": ua,
            "ip": p.ip[k],
            "locale": "en-GB",
            "timezone": sim.tz_name(k),
        }
        if campaign:
            ctx["campaign"] = campaign
        return ctx

    def emit(event: dict[str, Any], ctx: dict[str, Any], stamp: str) -> None:
        sim.sinks.event("web", {**event, "messageId": sim.new_id("web"), **ids, "context": ctx, "timestamp": stamp})

    if utm is not None:
        clean = {key: v for key, v in utm.items() if not key.startswith("_")}
        path, url = utm["_path"], landing_url(utm["_path"], clean)
        campaign = {"source": clean["source"], "medium": clean["medium"], "name": clean["campaign"]}
        if "content" in clean:
            campaign["content"] = clean["content"]
        referrer = _REFERRERS.get(channel, "")
    else:
        path = ("/", "/new-in", f"/c/{CATEGORY_NAMES[int(np.argmax(p.affinity[k]))].replace(' & ', '-')}")[
            int(rng.integers(3))
        ]
        url, campaign = landing_url(path, {}), None
        referrer = "https://www.google.com/" if rng.random() < 0.4 else ""
    title = (
        "Hollins & Vale"
        if path == "/"
        else f"{path.strip('/').split('/')[-1].replace('-', ' ').title()} | Hollins & Vale"
    )
    ctx = context(url, path, title, referrer, campaign)
    emit({"type": "page", "name": title, "properties": dict(ctx["page"])}, ctx, clock.next(5))
    if p.has_account[k] and not sim.web_login[k, slot] and rng.random() < (0.85 if converting else 0.25):
        _login(sim, k, slot, ids, lambda e, s: emit(e, ctx, s), clock, rng)
    views = _products(sim, k, rng, 1 + int(rng.poisson(1.3)))
    for i in views:
        ppath = f"/p/{sim.w.catalogue.sku[i].lower()}"
        pctx = context(landing_url(ppath, {}), ppath, f"{sim.w.catalogue.name[i]} | Hollins & Vale", url, None)
        emit({"type": "page", "name": "Product", "properties": dict(pctx["page"])}, pctx, clock.next())
        emit({"type": "track", "event": "Product Viewed", "properties": _product_props(sim, i)}, pctx, clock.next(8))
        _maybe_play_video(sim, i, lambda e, stamp: emit(e, pctx, stamp), clock.t)  # noqa: B023 - called at once
        url, ctx = pctx["page"]["url"], pctx
    if converting:
        _order(sim, day, k, "web", lambda e, s: emit(e, ctx, s), ids, clock, rng)
    elif rng.random() < 0.12:
        emit(
            {
                "type": "track",
                "event": "Product Added",
                "properties": {**_product_props(sim, views[-1], 1), "cart_id": sim.new_id("cart")},
            },
            ctx,
            clock.next(),
        )


VIDEO_PLAY_RATE = 0.15
"""The chance that a shopper on a product page plays the product's video (`Video Playback Started`)."""


def _maybe_play_video(sim: BlockSim, i: int, emit: Any, t: float) -> None:
    """Sometimes the shopper plays product `i`'s video, a few seconds after viewing it. Drawn from the
    simulation's own video stream, so the rest of the session is the same with or without it."""
    rng = sim.rng["video"]
    if rng.random() >= VIDEO_PLAY_RATE:
        return
    emit(
        {
            "type": "track",
            "event": "Video Playback Started",
            "properties": {
                "content_asset_id": sim.w.catalogue.sku[i],
                "video_player": "html5",
                "position": 0,
                "total_length": int(rng.integers(20, 120)),
                "sound": 80,
                "full_screen": False,
            },
        },
        iso_one(t + 1.0 + float(rng.exponential(6.0))),
    )


def _login(
    sim: BlockSim, k: int, slot: int, ids: dict[str, str], emit: Any, clock: _Clock, rng: np.random.Generator
) -> None:
    p = sim.p
    variant = int(rng.choice([0, 1, 3], p=[0.9, 0.06, 0.04]))
    sim.ledger.mark_one("email", k, variant)
    sim.ledger.mark_one("user_id", k, 0)
    traits: dict[str, Any] = {"email": email_raw(p, k, variant), "firstName": p.first[k], "lastName": p.last[k]}
    if p.has_phone[k] and rng.random() < 0.3:
        pv = int(rng.choice([0, 2, 3]))
        sim.ledger.mark_one("phone", k, pv)
        traits["phone"] = phone_raw(p, k, pv)
    ids["userId"] = p.user_id[k]
    sim.web_login[k, slot] = True
    emit({"type": "identify", "traits": traits}, clock.next())


def _order(
    sim: BlockSim,
    day: int,
    k: int,
    platform: str,
    emit: Any,
    ids: dict[str, str],
    clock: _Clock,
    rng: np.random.Generator,
) -> None:
    """Cart, checkout and `Order Completed`; a personal coupon is used now and then."""
    p, cat = sim.p, sim.w.catalogue
    items = _products(sim, k, rng, 1 + min(int(rng.poisson(0.8)), 5))
    quantities = np.where(rng.random(len(items)) < 0.85, 1, 2).tolist()
    products = [_product_props(sim, i, q) for i, q in zip(items, quantities, strict=False)]
    cart_id = sim.new_id("cart")
    for prod in products:
        emit({"type": "track", "event": "Product Added", "properties": {**prod, "cart_id": cart_id}}, clock.next())
    subtotal = round(sum(float(cat.price[i]) * q for i, q in zip(items, quantities, strict=False)), 2)
    order_id = f"{'W' if platform == 'web' else 'A'}{sim.block:02d}-{sim.new_id('order')[-8:].upper()}"
    emit(
        {
            "type": "track",
            "event": "Checkout Started",
            "properties": {
                "order_id": order_id,
                "value": subtotal,
                "revenue": subtotal,
                "currency": "GBP",
                "products": products,
            },
        },
        clock.next(),
    )
    coupon, discount = "", 0.0
    if sim.coupon_until[k] >= day and rng.random() < 0.35 + 0.4 * p.price_sensitivity[k]:
        coupon, discount = sim.coupon_code[k], round(subtotal * int(sim.coupon_pct[k]) / 100.0, 2)
    if "userId" not in ids:  # guest checkout: the e-mail is typed in, typos and all
        variant = int(rng.choice([0, 1, 2, 3, 4], p=[0.75, 0.08, 0.04, 0.05, 0.08])) if p.has_email[k] else -1
        if variant >= 0:
            sim.ledger.mark_one("email", k, variant)
            emit(
                {
                    "type": "identify",
                    "traits": {"email": email_raw(p, k, variant), "firstName": p.first[k], "lastName": p.last[k]},
                },
                clock.next(),
            )
    revenue = round(subtotal - discount, 2)
    shipping = 0.0 if revenue >= 50 or sim.coupon_channel[k] == "push" and coupon else 3.95
    stamp = clock.next(60)
    props: dict[str, Any] = {
        "order_id": order_id,
        "checkout_id": cart_id,
        "affiliation": f"Hollins & Vale {platform}",
        "total": round(revenue + shipping, 2),
        "subtotal": subtotal,
        "revenue": revenue,
        "shipping": shipping,
        "tax": round((revenue + shipping) / 6, 2),
        "discount": discount,
        "currency": "GBP",
        "products": products,
    }
    if coupon:
        props["coupon"] = coupon
        from omniweave.demo.stores import redeem

        redeem(sim, k, day, clock.t, platform, order_id, discount, store=None, card="")
    emit({"type": "track", "event": "Order Completed", "properties": props}, stamp)
    sim.orders[k, 0] += 1
    sim.revenue[k, 0] += revenue
    sim.last_online_order[k] = day


def _app_session(
    sim: BlockSim,
    day: int,
    k: int,
    t: float,
    slot: int,
    utm: dict[str, str] | None,
    converting: bool,
    rng: np.random.Generator,
) -> None:
    p = sim.p
    slot = min(slot, max(int(p.n_apps[k]) - 1, 0))
    ids, context = app_identity(sim, k, slot)
    if utm is not None:
        context = {**context, "campaign": {"source": utm["source"], "medium": utm["medium"], "name": utm["campaign"]}}
    clock = _Clock(t - 3.0, rng)

    def emit(event: dict[str, Any], stamp: str) -> None:
        sim.sinks.event("app", {**event, "messageId": sim.new_id("app"), **ids, "context": context, "timestamp": stamp})

    emit({"type": "screen", "name": "Home", "properties": {}}, clock.next(4))
    views = _products(sim, k, rng, 1 + int(rng.poisson(1.6)))
    for i in views:
        emit({"type": "screen", "name": "Product Detail", "properties": {"sku": sim.w.catalogue.sku[i]}}, clock.next())
        emit({"type": "track", "event": "Product Viewed", "properties": _product_props(sim, i)}, clock.next(8))
    if converting:
        emit({"type": "screen", "name": "Checkout", "properties": {}}, clock.next())
        _order(sim, day, k, "app", lambda e, s: emit(e, s), ids, clock, rng)
    elif rng.random() < 0.15:
        emit(
            {
                "type": "track",
                "event": "Product Added",
                "properties": {**_product_props(sim, views[-1], 1), "cart_id": sim.new_id("cart")},
            },
            clock.next(),
        )
