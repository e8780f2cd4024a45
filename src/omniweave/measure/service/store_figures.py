"""Figures per store that the KPI catalogue does not give, for the dashboard's Stores page (docs/dashboard.md).

`store_figures`: per period and store, the in-store sales, the share of them bought by people touched online
first (and by people touched online at any time before), and the coupon redemptions at the store.
`store_activity`: one store's local campaigns and in-store events. `store_directory`: the stores there are.
The KPI catalogue's conventions hold (measure/service/kpis.py):

- a **person** is the catalogue's visitor: the resolved person, else the user id, else the anonymous id (an
  importer's made-up `offline:...` id is nobody);
- a **sale at a store** is an `Order Completed` on channel `store` whose `properties.store_id` names the store
  (the catalogue's `revenue_in_store` by store); its value is `revenue`, else `total`, else 0; its period is
  the UTC day's day, Monday-first week or month;
- a **touch** is a person's own activity (measure/kpis.py `customer_activity`: a track, page or screen event
  other than the sends, deliveries, impressions, issued coupons, letters and segment changes written *about*
  them); it is **online** when its channel is one of `ONLINE_TOUCH_CHANNELS` (a screen: web, app, e-mail,
  SMS, WhatsApp, push, social, search, display) and offline otherwise (store, qr, direct_mail, call_centre, a
  coupon used at a till, ...);
- a person's **first touch** is their earliest touch in the whole log (not within the period or the store). It
  was online when they had an online touch at that earliest instant: at one instant the log cannot say which
  came first, and an online order arrives together with its coupon's `Coupon Applied` (channel `coupon`);
- a sale is **online-first** when its buyer's first touch was online and earlier than the sale, and **touched
  online before** when its buyer had at least one online touch earlier than the sale (every online-first sale
  is one);
- `online_first_share` = online-first revenue / revenue of the sales whose buyer is known x 100 (a receipt
  nobody is known by cannot tell; `identified_share` = that known revenue / all revenue x 100 says how much
  the share rests on); `online_before_share` likewise;
- a **coupon redemption at a store** is one code (as `activate.service.coupons.codes_of` reads an event, the
  reading `coupons redeem` uses) on one order (`properties.order_id`, else the event itself) at the store,
  seen on the till's order (`Order Completed` on channel `store`) or on a `Coupon Applied` naming the store.
  The coupons importer writes both for one use: it counts once, on the day it was first seen. Static codes
  count too (every use of a campaign's shared code is a redemption).

A store's **local campaigns** are the campaigns with something at the store: a coupon redeemed there (the
campaign of the `Coupon Applied`, else of the issued code in the coupon store, else of the static pool whose
code it is), or an event at the store carrying the campaign (the catalogue's campaign: `campaign_name`, else
`properties.campaign_name`, else `properties.campaign`), such as an RSVP to an in-store event
(activate/service/bridges.py) or a QR scan that names the store. Its **in-store events** are the
`Store Event RSVP` and `Store Event Attended` events naming it, per `event_id`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir
import orjson

from omniweave.activate.service.coupons import codes_of, list_pools, redeemed_codes
from omniweave.errors import InputError
from omniweave.events import spec
from omniweave.events.properties import order_value
from omniweave.measure.kpis import customer_activity
from omniweave.measure.service.kpis import PERIODS, _visitor_events
from omniweave.runtime import Runtime
from omniweave.storage.engine import Dialect, dialect_of
from omniweave.storage.guard import guarded

ONLINE_TOUCH_CHANNELS = ("web", "app", "email", "sms", "whatsapp", "push", "social", "search", "display")
"""Channels on which a touch is online (compared in lower case)."""
STORES_DATASET = "stores"

FIGURE_COLUMNS = (
    "period",
    "store_id",
    "orders",
    "revenue",
    "known_revenue",
    "online_first_revenue",
    "online_before_revenue",
    "identified_share",
    "online_first_share",
    "online_before_share",
    "coupon_redemptions",
)
REVENUES = ("revenue", "known_revenue", "online_first_revenue", "online_before_revenue")
CAMPAIGN_COLUMNS = (
    "campaign",
    "coupon_redemptions",
    "redeemed_order_revenue",
    "other_events",
    "persons",
    "first_day",
    "last_day",
)
STORE_EVENT_COLUMNS = ("event_id", "event_name", "rsvps", "attended", "first_day", "last_day")


@dataclass(frozen=True)
class StoreFigures:
    """Rows of FIGURE_COLUMNS per period and store with an in-store sale or a coupon redemption, sorted by period
    and store. Revenues are rounded to 2 decimals, shares are % (None without revenue to divide by)."""

    period: str
    rows: tuple[dict[str, Any], ...]

    def to_dict(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self.rows]


@dataclass(frozen=True)
class StoreActivity:
    """One store's local campaigns (rows of CAMPAIGN_COLUMNS, most redemptions first) and in-store events (rows
    of STORE_EVENT_COLUMNS, by first day)."""

    store_id: str
    campaigns: tuple[dict[str, Any], ...]
    store_events: tuple[dict[str, Any], ...]


def period_of(day: date, period: str) -> date:
    """The first day of the `period` (day, Monday-first week, month) that holds `day`."""
    if period == "month":
        return day.replace(day=1)
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day


def _check_period(period: str) -> None:
    if period not in PERIODS:
        raise InputError(f"got {period!r}; expected one of {', '.join(PERIODS)}", field="period")


def _day(d: Dialect, ts: ir.TimestampValue) -> ir.IntegerValue:
    return (d.epoch_seconds(ts) // 86400).cast("int64")


def _from_epoch_day(number: int) -> date:
    return date(1970, 1, 1) + timedelta(days=int(number))


def _events(runtime: Runtime) -> tuple[ir.Table, Dialect]:
    """Every event with its `visitor` (the KPI catalogue's person)."""
    warehouse = runtime.warehouse()
    identities = warehouse.table("identities") if runtime.log.has_data("identities") else None
    events = warehouse.table("events")
    return _visitor_events(events, identities), dialect_of(events)


def _first_touches(ev: ir.Table) -> ir.Table:
    """Per visitor: `_first_at` (their earliest touch) and `_online_at` (their earliest online touch, NULL
    without one)."""
    touches = ev.filter(ev.visitor.notnull() & customer_activity(ev))
    online = touches.channel.lower().isin(ONLINE_TOUCH_CHANNELS).fill_null(False)
    return touches.group_by(touches.visitor.name("_buyer")).aggregate(
        _first_at=touches.timestamp.min(), _online_at=touches.timestamp.min(where=online)
    )


def _sales(ev: ir.Table, d: Dialect) -> ir.Table:
    """In-store orders naming a store: visitor, timestamp, day number, store, value."""
    orders = ev.filter((ev.event == spec.ORDER_COMPLETED) & (ev.channel == "store"))
    orders = d.with_json_fields(orders, "properties", {"_store": "store_id", "_revenue": "revenue", "_total": "total"})
    orders = orders.filter(orders._store.notnull() & (orders._store != ""))
    return orders.select(
        "visitor",
        "timestamp",
        _d=_day(d, orders.timestamp),
        store_id=orders._store,
        value=order_value(orders._revenue, orders._total),
    )


@dataclass(frozen=True)
class _Redemption:
    store_id: str
    order: str
    code: str
    day: date
    campaign: str | None
    visitor: str | None


def _redemptions(runtime: Runtime, ev: ir.Table, d: Dialect) -> tuple[list[_Redemption], dict[tuple[str, str], float]]:
    """Every coupon redemption at a store (one per store, order and code, its first sighting) and the value of
    each till order that carried a code ({(store, order): value})."""
    wanted = ev.event.isin((spec.ORDER_COMPLETED, spec.COUPON_APPLIED)) & ev.properties.contains('"coupon')
    rows = d.with_json_fields(
        ev.filter(wanted),
        "properties",
        {
            "_store": "store_id",
            "_order": "order_id",
            "_campaign_prop": "campaign_name",
            "_campaign_alt": "campaign",
            "_revenue": "revenue",
            "_total": "total",
        },
    )
    at_store = rows._store.notnull() & (rows._store != "")
    rows = rows.filter(at_store & ((rows.event == spec.COUPON_APPLIED) | (rows.channel == "store")))
    table = rows.select(
        "message_id",
        "timestamp",
        "event",
        "visitor",
        "properties",
        _d=_day(d, rows.timestamp),
        store_id=rows._store,
        order=ibis.coalesce(rows._order.nullif(""), rows.message_id),
        campaign=ibis.coalesce(
            rows.campaign_name.nullif(""), rows._campaign_prop.nullif(""), rows._campaign_alt.nullif("")
        ),
        value=order_value(rows._revenue, rows._total),
    ).order_by(["timestamp", "message_id"])
    found: dict[tuple[str, str, str], _Redemption] = {}
    order_values: dict[tuple[str, str], float] = {}
    for row in table.to_pyarrow().to_pylist():
        try:
            properties = orjson.loads(row["properties"]) if row["properties"] else {}
        except orjson.JSONDecodeError:
            continue
        if not isinstance(properties, dict):
            continue
        store, order = str(row["store_id"]), str(row["order"])
        if row["event"] == spec.ORDER_COMPLETED:
            order_values.setdefault((store, order), float(row["value"]))
        for code in codes_of(properties):
            key = (store, order, code)
            seen = found.get(key)
            if seen is None:
                found[key] = _Redemption(
                    store, order, code, _from_epoch_day(row["_d"]), row["campaign"], row["visitor"]
                )
            elif seen.campaign is None and row["campaign"] is not None:  # the Coupon Applied names the campaign
                found[key] = _Redemption(store, order, code, seen.day, row["campaign"], seen.visitor or row["visitor"])
    return list(found.values()), order_values


def _issuing_campaigns(runtime: Runtime, codes: set[str]) -> dict[str, str]:
    """{code: campaign} for the codes the coupon store issued with a campaign, and static pools' codes."""
    out = {pool.static_code: pool.campaign for pool in list_pools(runtime) if pool.static_code and pool.campaign}
    chunk = sorted(codes - set(out))
    for start in range(0, len(chunk), 500):
        for coupon in redeemed_codes(runtime, chunk[start : start + 500]):
            if coupon.campaign:
                out[coupon.code] = coupon.campaign
    return out


def _pct(part: float, whole: float) -> float | None:
    return part * 100.0 / whole if whole > 0 else None


@guarded("store figures")
def store_figures(
    runtime: Runtime, *, period: str = "month", since: date | None = None, until: date | None = None
) -> StoreFigures:
    """In-store sales, the online-first and online-before shares and the coupon redemptions per store and
    `period` (day, week, month); `since` / `until` keep the periods that start in that range (every figure is
    still read from the whole log, so a first touch is a person's first in the log)."""
    _check_period(period)
    if not runtime.log.has_data("events"):
        return StoreFigures(period, ())
    ev, d = _events(runtime)
    sales = _sales(ev, d)
    firsts = _first_touches(ev)
    sales = sales.left_join(firsts, sales.visitor == firsts._buyer)
    known = sales.visitor.notnull()
    online_first = (sales._online_at.notnull() & (sales._online_at == sales._first_at)) & (
        sales._first_at < sales.timestamp
    )
    online_before = sales._online_at.notnull() & (sales._online_at < sales.timestamp)
    per_day = sales.group_by(["_d", "store_id"]).aggregate(
        orders=sales.count(),
        revenue=sales.value.sum(),
        known_revenue=sales.value.sum(where=known),
        online_first_revenue=sales.value.sum(where=known & online_first.fill_null(False)),
        online_before_revenue=sales.value.sum(where=known & online_before.fill_null(False)),
    )
    sums: dict[tuple[date, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in per_day.to_pyarrow().to_pylist():
        into = sums[(period_of(_from_epoch_day(r["_d"]), period), r["store_id"])]
        for name in ("orders", *REVENUES):
            into[name] += float(r[name] or 0.0)
    redemptions, _ = _redemptions(runtime, ev, d)
    for redemption in redemptions:
        sums[(period_of(redemption.day, period), redemption.store_id)]["coupon_redemptions"] += 1
    rows = []
    for (start, store), s in sorted(sums.items()):
        if (since is not None and start < since) or (until is not None and start > until):
            continue
        cents = {name: round(s[name], 2) for name in REVENUES}  # shares of the rounded sums: 100 % is 100.0
        rows.append(
            {
                "period": start.isoformat(),
                "store_id": store,
                "orders": int(s["orders"]),
                **cents,
                "identified_share": _pct(cents["known_revenue"], cents["revenue"]),
                "online_first_share": _pct(cents["online_first_revenue"], cents["known_revenue"]),
                "online_before_share": _pct(cents["online_before_revenue"], cents["known_revenue"]),
                "coupon_redemptions": int(s["coupon_redemptions"]),
            }
        )
    return StoreFigures(period, tuple(rows))


@guarded("store activity")
def store_activity(runtime: Runtime, store_id: str) -> StoreActivity:
    """The local campaigns and in-store events of `store_id` over the whole log (see the module's docstring)."""
    store_id = (store_id or "").strip()
    if not store_id:
        raise InputError("store is empty; expected a store id", field="store")
    if not runtime.log.has_data("events"):
        return StoreActivity(store_id, (), ())
    ev, d = _events(runtime)
    redemptions, order_values = _redemptions(runtime, ev, d)
    here = [r for r in redemptions if r.store_id == store_id]
    issued = _issuing_campaigns(runtime, {r.code for r in here if r.campaign is None})
    per: dict[str, dict[str, Any]] = {}

    def entry(campaign: str) -> dict[str, Any]:
        return per.setdefault(
            campaign,
            {"redemptions": 0, "orders": set(), "other": 0, "persons": set(), "days": set()},
        )

    for r in here:
        campaign = r.campaign or issued.get(r.code)
        if campaign is None:
            continue
        e = entry(campaign)
        e["redemptions"] += 1
        e["orders"].add(r.order)
        e["days"].add(r.day)
        if r.visitor:
            e["persons"].add(r.visitor)

    local = d.with_json_fields(
        ev.filter(ev.properties.contains(store_id)),
        "properties",
        {"_store": "store_id", "_campaign_prop": "campaign_name", "_campaign_alt": "campaign", "_event_id": "event_id"},
    )
    local = local.filter(local._store == store_id)
    local = local.select(
        "event",
        "visitor",
        _d=_day(d, local.timestamp),
        campaign=ibis.coalesce(
            local.campaign_name.nullif(""), local._campaign_prop.nullif(""), local._campaign_alt.nullif("")
        ),
        event_id=local._event_id.nullif(""),
        event_name=d.json(local.properties, "event_name"),
    )
    gatherings: dict[str, dict[str, Any]] = {}
    for row in local.to_pyarrow().to_pylist():
        day = _from_epoch_day(row["_d"])
        if row["campaign"] is not None and row["event"] != spec.COUPON_APPLIED:
            e = entry(row["campaign"])
            e["other"] += 1
            e["days"].add(day)
            if row["visitor"]:
                e["persons"].add(row["visitor"])
        if row["event"] in (spec.EVENT_RSVP, spec.EVENT_ATTENDED) and row["event_id"]:
            g = gatherings.setdefault(row["event_id"], {"name": None, "rsvps": 0, "attended": 0, "days": set()})
            g["name"] = g["name"] or row["event_name"]
            g["rsvps" if row["event"] == spec.EVENT_RSVP else "attended"] += 1
            g["days"].add(day)
    campaigns = [
        {
            "campaign": name,
            "coupon_redemptions": e["redemptions"],
            "redeemed_order_revenue": round(sum(order_values.get((store_id, o), 0.0) for o in e["orders"]), 2),
            "other_events": e["other"],
            "persons": len(e["persons"]),
            "first_day": min(e["days"]).isoformat(),
            "last_day": max(e["days"]).isoformat(),
        }
        for name, e in per.items()
    ]
    campaigns.sort(key=lambda c: (-c["coupon_redemptions"], -c["other_events"], c["campaign"]))
    events = [
        {
            "event_id": event_id,
            "event_name": g["name"],
            "rsvps": g["rsvps"],
            "attended": g["attended"],
            "first_day": min(g["days"]).isoformat(),
            "last_day": max(g["days"]).isoformat(),
        }
        for event_id, g in gatherings.items()
    ]
    events.sort(key=lambda g: (g["first_day"], g["event_id"]))
    return StoreActivity(store_id, tuple(campaigns), tuple(events))


def store_directory(runtime: Runtime) -> dict[str, dict[str, Any]]:
    """{store_id: its row of the `stores` dataset (name, city, floor_area_sqft, ... as imported)}; empty without
    the dataset."""
    if not runtime.log.has_data(STORES_DATASET):
        return {}
    table = runtime.warehouse().table(STORES_DATASET)
    if "store_id" not in table.columns:
        return {}
    out = {}
    for row in table.to_pyarrow().to_pylist():
        if row.get("store_id") not in (None, ""):
            out[str(row["store_id"])] = {
                k: (v.isoformat() if isinstance(v, date | datetime) else v) for k, v in row.items()
            }
    return out
