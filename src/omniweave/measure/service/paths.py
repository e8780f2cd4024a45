"""Journeys to conversions: per-person touch paths built from the event log, for attribution.

`journeys_expr` builds one Ibis expression (DuckDB and Spark alike) that maps events to persons
through the `identities` dataset, keeps the channel touches and the orders, cuts each person's
history into journeys (one per order, plus the touches that led to none) and aggregates them into
the paths table that `measure.attribution` consumes. `spend_expr` sums the `spend` dataset over the
same period, and `returns` turns a model's credited value and that spend into ROAS and ROI.

Definitions (which events are touches, the channel of each, lookback, de-duplication, nulls):
docs/attribution.md, "Attribution on the event log".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from omniweave.errors import InputError
from omniweave.events import spec
from omniweave.events.properties import order_value
from omniweave.identity.persons import with_person
from omniweave.measure.attribution import Attribution, PathRow, PathsTable
from omniweave.runtime import Runtime
from omniweave.storage.engine import Dialect, dialect_of, to_arrow

BY = ("channel", "campaign")
DEFAULT_LOOKBACK_DAYS = 30.0
DEFAULT_DEDUP_MINUTES = 30.0

CONVERSIONS = (spec.ORDER_COMPLETED,)
"""A conversion: an order, online or at the till; its value is `properties.revenue` (else `total`, else 0)."""

TOUCH_CHANNELS: dict[str, str | None] = {
    spec.EMAIL_LINK_CLICKED: "email",
    spec.MESSAGE_LINK_CLICKED: None,  # the event's channel: sms, whatsapp
    spec.PUSH_NOTIFICATION_TAPPED: "push",
    spec.AD_CLICKED: None,  # social, search, display
    spec.PROMOTION_CLICKED: None,  # web, app
    spec.QR_CODE_SCANNED: "qr",
    spec.COUPON_APPLIED: None,  # a coupon used (till, shop): credited to the channel that issued it
    spec.COUPON_REDEEMED: None,  # a personal code came back: credited to the channel of the message that issued it
    spec.EVENT_ATTENDED: "store_event",
    spec.STORE_VISITED: "store",
    spec.DIRECT_MAIL_SENT: "direct_mail",  # a letter has no click: its arrival is the touch
}
"""Track events that are touches, with their channel label (None: the event's `channel` column).

A coupon is a mechanism, not a channel: `Coupon Applied` is labelled by the channel that issued the
coupon (`properties.issued_channel`, as the KPIs read it) and `Coupon Redeemed` by the issuing message's
channel; a coupon whose issuer is unknown is no channel touch (with `by="campaign"` it still touches its
campaign). A `Coupon Applied` that `coupons redeem` turned into a `Coupon Redeemed` (its
`redemption_event`) counts once, as the latter."""

COUPON_EVENTS = (spec.COUPON_APPLIED, spec.COUPON_REDEEMED)
NO_ISSUER = ("coupon", *("other", "unknown", ""))

EXPOSURE_CHANNELS: dict[str, str | None] = {
    spec.EMAIL_OPENED: "email",
    spec.MESSAGE_OPENED: None,
    spec.PUSH_NOTIFICATION_RECEIVED: "push",
    spec.AD_IMPRESSION: None,
}
"""Further touches counted only with `exposures=True` (views rather than interactions)."""

MEDIUM_CHANNELS = {
    "email": "email",
    "e-mail": "email",
    "newsletter": "email",
    "sms": "sms",
    "whatsapp": "whatsapp",
    "push": "push",
    "qr": "qr",
    "cpc": "search",
    "ppc": "search",
    "paid_search": "search",
    "paidsearch": "search",
    "sem": "search",
    "search": "search",
    "paid_social": "social",
    "paidsocial": "social",
    "social": "social",
    "social_paid": "social",
    "display": "display",
    "banner": "display",
    "cpm": "display",
    "programmatic": "display",
    "direct_mail": "direct_mail",
    "mail": "direct_mail",
}
"""Channel of a web/app visit that arrived from a campaign, by `utm_medium` (other media keep their own name,
lower-cased; a visit with a source and no medium is labelled by its source)."""

UNTRACKED = ("other", "unknown", "")
# Labels are not trimmed: ibis's `strip()` on Spark also strips the letters v and f ("tv" becomes "t").


@dataclass(frozen=True)
class Journeys:
    """The paths table of one period, and what could not go into it."""

    paths: PathsTable
    by: str
    lookback_days: float
    dedup_minutes: float
    since: datetime | None
    until: datetime | None
    exposures: bool
    untouched_conversions: float  # orders with no touch in their lookback window (not in `paths`)
    untouched_value: float
    spend: dict[str, float]  # spend per channel (or campaign) over the period, where the spend dataset has some


@dataclass(frozen=True)
class Return:
    """One channel's (or campaign's) credited value against its spend."""

    spend: float
    value: float
    roas: float  # value / spend
    roi: float  # (value - spend) / spend


def check_options(
    lookback_days: float, dedup_minutes: float, by: str, since: datetime | None = None, until: datetime | None = None
) -> None:
    """Reject options that cannot define a journey, naming the option and what is valid."""
    if (
        isinstance(lookback_days, bool)
        or not isinstance(lookback_days, int | float)
        or not math.isfinite(lookback_days)
        or lookback_days <= 0
    ):
        raise InputError(f"got {lookback_days!r}; expected a positive number of days", field="lookback_days")
    if (
        isinstance(dedup_minutes, bool)
        or not isinstance(dedup_minutes, int | float)
        or not math.isfinite(dedup_minutes)
        or dedup_minutes < 0
    ):
        raise InputError(f"got {dedup_minutes!r}; expected zero or a positive number of minutes", field="dedup_minutes")
    if by not in BY:
        raise InputError(f"got {by!r}; expected one of {', '.join(BY)}", field="by")
    if since is not None and until is not None and _utc(since) >= _utc(until):
        raise InputError(
            f"got since {since.isoformat()} and until {until.isoformat()}; expected since before until", field="since"
        )


def _utc(moment: datetime) -> datetime:
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment).astimezone(UTC)


def _ts(moment: datetime) -> ir.TimestampScalar:
    return ibis.literal(_utc(moment), dt.Timestamp(timezone="UTC"))


def _channel_label(ev: ir.Table) -> ir.StringValue:
    """The channel a touch is credited to (docs/attribution.md lists the rule per event)."""
    medium = ev.campaign_medium.lower().nullif("")
    source = ev.campaign_source.lower().nullif("")
    from_campaign = ibis.coalesce(medium.substitute(MEDIUM_CHANNELS, else_=medium), source)
    own = ev.channel.lower()
    own = ibis.cases((own.isin(UNTRACKED), ibis.null("string")), else_=own)
    fixed = {**TOUCH_CHANNELS, **EXPOSURE_CHANNELS}
    cases = [(ev.event == name, ibis.literal(label)) for name, label in fixed.items() if label is not None]
    issued = ev._issued_channel.lower()
    issuer = ibis.cases((issued.isin(NO_ISSUER), ibis.null("string")), else_=issued)
    redeemed_by = ibis.cases((ev.channel.lower().isin(NO_ISSUER), ibis.null("string")), else_=ev.channel.lower())
    return ibis.cases(
        *cases,
        (ev.event == spec.COUPON_APPLIED, issuer),
        (ev.event == spec.COUPON_REDEEMED, redeemed_by),
        (ev.type.isin(("page", "screen")), from_campaign),
        else_=ibis.coalesce(own, from_campaign, ibis.literal("other")),
    )


def _person_rows(
    events: ir.Table,
    identities: ir.Table,
    *,
    touch_events: tuple[str, ...],
    start: datetime | None,
    until: datetime | None,
    by: str,
    d: Dialect,
) -> ir.Table:
    """Touches and orders in [start, until) with their person (by user_id if set, else anonymous_id, as profiles do)."""
    campaign_visit = events.type.isin(("page", "screen")) & (
        events.campaign_medium.nullif("").notnull() | events.campaign_source.nullif("").notnull()
    )
    ev = events.filter(events.event.isin((*touch_events, *CONVERSIONS)) | campaign_visit)
    if start is not None:
        ev = ev.filter(ev.timestamp >= _ts(start))
    if until is not None:
        ev = ev.filter(ev.timestamp < _ts(until))
    ev = with_person(ev, identities)
    # page and screen calls have no event name
    ev = ev.mutate(_conversion=ev.event.isin(CONVERSIONS).fill_null(False))
    ev = d.with_json_fields(
        ev,
        "properties",
        {
            "_revenue": "revenue",
            "_total": "total",
            "_campaign_name": "campaign_name",
            "_campaign": "campaign",
            "_issued_channel": "issued_channel",
        },
    )
    if spec.COUPON_REDEEMED in touch_events:
        ev = _without_redeemed_applications(events, ev, d)
    channel = _channel_label(ev)
    if by == "campaign":
        campaign = ibis.coalesce(ev.campaign_name.nullif(""), ev._campaign_name.nullif(""), ev._campaign.nullif(""))
        label = ibis.coalesce(campaign, "(" + channel + ")")
    else:
        label = channel
    ev = ev.mutate(_label=label)
    ev = ev.filter(ev._conversion | ev._label.notnull())  # a coupon of no known issuer (or campaign) touches nothing
    value = order_value(ev._revenue, ev._total)
    return ev.select(
        "person_id",
        "timestamp",
        message_id=ev.message_id.fill_null(""),
        second=d.epoch_seconds(ev.timestamp).cast("int64"),
        conversion=ev._conversion.cast("int64"),
        label=ibis.cases((ev._conversion, ibis.null("string")), else_=ev._label),
        value=ibis.cases((ev._conversion, value), else_=ibis.literal(0.0)),
    )


def _without_redeemed_applications(events: ir.Table, ev: ir.Table, d: Dialect) -> ir.Table:
    """`ev` less the `Coupon Applied` events that a `Coupon Redeemed` names as its `redemption_event`."""
    redeemed = d.with_json_fields(
        events.filter(events.event == spec.COUPON_REDEEMED), "properties", {"_redemption_event": "redemption_event"}
    )
    redeemed = redeemed.filter(redeemed._redemption_event.notnull()).select(_applied=redeemed._redemption_event)
    applied = ev.filter(ev.event == spec.COUPON_APPLIED)
    counted = applied.anti_join(redeemed, applied.message_id == redeemed._applied)
    return ev.filter((ev.event != spec.COUPON_APPLIED) | ev.event.isnull()).union(counted)


def journeys_expr(
    events: ir.Table,
    identities: ir.Table,
    *,
    lookback_days: float = DEFAULT_LOOKBACK_DAYS,
    dedup_minutes: float = DEFAULT_DEDUP_MINUTES,
    by: str = "channel",
    since: datetime | None = None,
    until: datetime | None = None,
    exposures: bool = False,
) -> ir.Table:
    """The paths table as an expression: `path` (array of labels; NULL for orders with no touch), `total_conversions`,
    `total_conversion_value`, `total_null`, one row per distinct path.

    A person's touches and orders are ordered by time (a touch before an order at the same instant).
    Journey `k` of a person ends at their k-th order and holds the touches after the previous order
    that are at most `lookback_days` older than it; the touches after the previous order that are
    older than that, and those after the last order, are a journey that did not convert (a null).
    A touch whose label (channel or campaign) was already touched less than `dedup_minutes`
    earlier in the same journey is not counted again. Orders count when they fall in [since, until),
    nulls when their last touch does. It runs on the engine of `events`.
    """
    check_options(lookback_days, dedup_minutes, by, since, until)
    d = dialect_of(events)
    touch_events = tuple(TOUCH_CHANNELS) + (tuple(EXPOSURE_CHANNELS) if exposures else ())
    start = _utc(since) - timedelta(days=lookback_days) if since is not None else None
    rows = _person_rows(events, identities, touch_events=touch_events, start=start, until=until, by=by, d=d)
    # k: how many orders came before this row (a touch and the order that ends its journey share k)
    order = [rows.timestamp, rows.conversion, rows.message_id]
    rows = rows.mutate(
        k=rows.conversion.sum().over(ibis.cumulative_window(group_by="person_id", order_by=order)) - rows.conversion
    )
    orders = rows.filter(rows.conversion == 1).select(
        _person=rows.person_id, _k=rows.k, _order_at=rows.timestamp, _order_second=rows.second, _value=rows.value
    )
    touches = rows.filter(rows.conversion == 0)
    touches = touches.left_join(orders, (touches.person_id == orders._person) & (touches.k == orders._k))
    lookback = round(lookback_days * 86400)
    touches = touches.mutate(
        converted=(touches._order_second.notnull() & (touches._order_second - touches.second <= lookback)).fill_null(
            False
        )
    )
    journey = ["person_id", "k", "converted"]
    if dedup_minutes > 0:
        # the window is a column first: filtering on it directly is compiled wrongly for Spark
        touches = touches.mutate(
            _previous=touches.second.lag().over(
                group_by=[*journey, "label"], order_by=[touches.timestamp, touches.message_id]
            )
        )
        touches = touches.filter(
            touches._previous.isnull() | (touches.second - touches._previous >= round(dedup_minutes * 60))
        )
    touches = touches.mutate(
        position=ibis.row_number().over(group_by=journey, order_by=[touches.timestamp, touches.message_id])
    )
    paths = touches.group_by(journey).aggregate(
        _items=ibis.struct({"position": touches.position, "label": touches.label}).collect(),
        _last=touches.timestamp.max(),
    )
    paths = paths.mutate(path=paths._items.sort().map(lambda item: item.label))

    in_period = orders
    if since is not None:
        in_period = in_period.filter(in_period._order_at >= _ts(since))
    converting = paths.filter(paths.converted).select(_p="person_id", _j="k", path="path")
    won = in_period.left_join(converting, (in_period._person == converting._p) & (in_period._k == converting._j))
    won = won.select("path", conversions=ibis.literal(1, "int64"), value=won._value, nulls=ibis.literal(0, "int64"))
    lost = paths.filter(~paths.converted)
    if since is not None:
        lost = lost.filter(lost._last >= _ts(since))
    lost = lost.select(
        "path", conversions=ibis.literal(0, "int64"), value=ibis.literal(0.0, "float64"), nulls=ibis.literal(1, "int64")
    )
    journeys = won.union(lost)
    return journeys.group_by("path").aggregate(
        total_conversions=journeys.conversions.sum(),
        total_conversion_value=journeys.value.sum(),
        total_null=journeys.nulls.sum(),
    )


def spend_expr(
    spend: ir.Table, *, by: str = "channel", since: datetime | None = None, until: datetime | None = None
) -> ir.Table:
    """Spend per channel (lower-cased) or campaign over the days that overlap [since, until): `label`, `spend`."""
    if by not in BY:
        raise InputError(f"got {by!r}; expected one of {', '.join(BY)}", field="by")
    rows = spend.filter(spend.spend.notnull())
    if since is not None:
        rows = rows.filter(rows.date >= ibis.literal(_utc(since).date()))
    if until is not None:
        rows = rows.filter(rows.date <= ibis.literal((_utc(until) - timedelta(microseconds=1)).date()))
    label = rows.channel.lower() if by == "channel" else rows.campaign
    rows = rows.select(label=label, spend=rows.spend).filter(ibis._.label.notnull() & (ibis._.label != ""))
    return rows.group_by("label").aggregate(spend=rows.spend.sum())


def paths_table(table: Any) -> tuple[PathsTable, float, float]:
    """(paths, untouched conversions, untouched value) from the Arrow result of `journeys_expr`, rows sorted by path."""
    rows, untouched, untouched_value = [], 0.0, 0.0
    for record in table.to_pylist():
        path = record["path"]
        conversions, value = float(record["total_conversions"] or 0), float(record["total_conversion_value"] or 0)
        if not path:
            untouched, untouched_value = untouched + conversions, untouched_value + value
            continue
        rows.append(PathRow(tuple(path), conversions, value, float(record["total_null"] or 0)))
    rows.sort(key=lambda row: row.channels)
    return PathsTable(tuple(rows)), untouched, untouched_value


def returns(attribution: Attribution, spend: Mapping[str, float]) -> dict[str, Return]:
    """ROAS and ROI of every channel (or campaign) with spend above zero; one without credit has value 0."""
    out = {}
    for label, cost in sorted(spend.items()):
        if cost > 0:
            value = attribution.value.get(label, 0.0)
            out[label] = Return(spend=cost, value=value, roas=value / cost, roi=(value - cost) / cost)
    return out


def journeys_from_log(
    runtime: Runtime,
    *,
    lookback_days: float = DEFAULT_LOOKBACK_DAYS,
    dedup_minutes: float = DEFAULT_DEDUP_MINUTES,
    by: str = "channel",
    since: datetime | None = None,
    until: datetime | None = None,
    exposures: bool = False,
) -> Journeys:
    """The paths table and spend of [since, until) from the warehouse's `events`, `identities` and `spend`."""
    check_options(lookback_days, dedup_minutes, by, since, until)
    if not runtime.log.has_data("identities"):
        raise InputError(
            "no identities yet: persons are not built yet; run `omniweave resolve` first", field="identities"
        )
    warehouse = runtime.warehouse()
    expr = journeys_expr(
        warehouse.table("events"),
        warehouse.table("identities"),
        lookback_days=lookback_days,
        dedup_minutes=dedup_minutes,
        by=by,
        since=since,
        until=until,
        exposures=exposures,
    )
    paths, untouched, untouched_value = paths_table(to_arrow(expr))
    spent = to_arrow(spend_expr(warehouse.table("spend"), by=by, since=since, until=until)).to_pylist()
    return Journeys(
        paths=paths,
        by=by,
        lookback_days=lookback_days,
        dedup_minutes=dedup_minutes,
        since=_utc(since) if since else None,
        until=_utc(until) if until else None,
        exposures=exposures,
        untouched_conversions=untouched,
        untouched_value=untouched_value,
        spend={row["label"]: float(row["spend"]) for row in spent},
    )
