"""Unified customer profiles: one row per person, computed from the event log with Ibis.

`build_profiles` reads `events` and the `identities` dataset written by `resolve`, builds one Ibis
expression (`profiles_expr`) that runs unchanged on DuckDB and Spark, and writes the result as the
warehouse dataset `profiles` (one Parquet file, replaced on every build). The few functions the two
engines spell differently (JSON extraction, time zones) are the `Dialect` of the tables' engine
(storage/engine.py), and nowhere else.

Docs: docs/profiles.md lists every column and how it is computed.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from omniweave.errors import InputError
from omniweave.events import spec
from omniweave.events.properties import order_value, yes_no
from omniweave.identity.persons import with_person
from omniweave.profiles import insights
from omniweave.profiles.ranking import best, top
from omniweave.profiles.traits import TraitSpec, parse_trait_specs
from omniweave.runtime import Runtime
from omniweave.storage.engine import DUCKDB, Dialect, EngineName, dialect_of, partitioned, to_arrow
from omniweave.storage.eventlog import FLAT_COLUMNS
from omniweave.storage.guard import guarded
from omniweave.storage.warehouse import write_dataset

IDENTITIES_SCHEMA = pa.schema([("kind", pa.string()), ("value", pa.string()), ("person_id", pa.string())])
"""The input contract of `resolve`: every identifier value and the person it belongs to."""

IDENTIFIER_KINDS = ("email", "phone", "loyalty_card", "user_id", "customer_number", "device_id")
"""Kinds listed in full on a profile (as `<kind>s`); anonymous ids are only counted (there are many)."""

ENGAGEMENT_WEIGHTS = {"open": 1, "click": 3, "visit": 2, "purchase": 5}
"""What one engagement is worth when choosing a preferred channel. Visits count once per channel and day."""

OPENS = (spec.EMAIL_OPENED, spec.MESSAGE_OPENED)
CLICKS = (
    spec.EMAIL_LINK_CLICKED,
    spec.MESSAGE_LINK_CLICKED,
    spec.PUSH_NOTIFICATION_TAPPED,
    spec.AD_CLICKED,
    spec.PROMOTION_CLICKED,
    spec.QR_CODE_SCANNED,
    spec.COUPON_APPLIED,
)
VISITS = (spec.STORE_VISITED, spec.EVENT_ATTENDED, spec.CALL_CENTRE_CONTACTED, spec.PRODUCT_VIEWED)
PURCHASES = (spec.ORDER_COMPLETED,)

PROMOTION_EXPOSURES = (
    spec.MESSAGE_SENT,
    spec.EMAIL_SENT,
    spec.PUSH_NOTIFICATION_RECEIVED,
    spec.COUPON_ISSUED,
    spec.PROMOTION_VIEWED,
    spec.DIRECT_MAIL_SENT,
)
PROMOTION_RESPONSES = (
    spec.MESSAGE_LINK_CLICKED,
    spec.EMAIL_LINK_CLICKED,
    spec.PUSH_NOTIFICATION_TAPPED,
    spec.PROMOTION_CLICKED,
    spec.COUPON_APPLIED,
    spec.EVENT_ATTENDED,
)
PROMOTION_TYPES = ("coupon", "discount", "free_shipping", "event")
MESSAGES_RECEIVED = (spec.EMAIL_SENT, spec.MESSAGE_SENT, spec.PUSH_NOTIFICATION_RECEIVED)
"""A message that reached the person, for the preferred messaging channel (profiles/insights.py)."""
MESSAGE_RESPONSES = (
    spec.EMAIL_OPENED,
    spec.EMAIL_LINK_CLICKED,
    spec.MESSAGE_OPENED,
    spec.MESSAGE_LINK_CLICKED,
    spec.PUSH_NOTIFICATION_TAPPED,
)
"""An answer to a message (an open, a click, a tap), for the preferred messaging channel."""

CONSENT_TRAITS = {
    "email": "email_opt_in",
    "sms": "sms_opt_in",
    "whatsapp": "whatsapp_opt_in",
    "push": "push_opt_in",
    "direct_mail": "mail_opt_in",
    "phone": "phone_opt_in",
}
"""Profile column `consent_<channel>` comes from the latest value of this trait (an `Unsubscribed` on the channel is a no)."""

CONSENT_PURPOSES = {
    "advertising": ("Advertising", "advertising"),
    "analytics": ("Analytics", "analytics"),
    "marketing": ("Marketing", "marketing"),
    "personalisation": ("Personalization", "Personalisation", "personalization", "personalisation"),
}
"""Profile column `consent_purpose_<purpose>` (true / false / NULL = never stated) comes from the latest event
stating it: a key of Segment's `context.consent.categoryPreferences` (these spellings), else the trait
`<purpose>_consent`."""

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
TOP_N = 3
VIEWED_NOT_BOUGHT_N = 5


@dataclass(frozen=True)
class ProfilesSummary:
    """What a build did: how many persons it profiled, from how many events, as of when, where it wrote."""

    persons: int
    events: int
    buyers: int
    now: datetime
    engine: EngineName
    path: str
    traits: tuple[str, ...]
    chunks: int = 1  # ranges of persons profiled one at a time (`profiles_table`)
    incremental: bool = False  # only the persons a new day touched were profiled again (service/increment.py)
    reprofiled: int = 0  # persons profiled again by the increment


# --- the profile expression ----------------------------------------------------------------------


# What an event is to a profile, one small number per event (the per-event table's `code`): every flag
# and the engagement kind below are read from it, so the table keeps one byte instead of five columns.
OTHER, OPEN, CLICK, CLICK_RESPONSE, VISIT, VISIT_RESPONSE, PURCHASE, EXPOSURE, UNSUBSCRIBE, INTERNAL = range(10)
ENGAGEMENT_CODES = {
    "open": (OPEN,),
    "click": (CLICK, CLICK_RESPONSE),
    "visit": (VISIT, VISIT_RESPONSE),
    "purchase": (PURCHASE,),
}
RESPONSE_CODES = (CLICK_RESPONSE, VISIT_RESPONSE)


def _event_code(events: ir.Table) -> ir.IntegerValue:
    """The class of each event (OTHER...INTERNAL): omniweave's own bookkeeping (segment changes), else an
    engagement (purchase, click, open, visit, in that order of precedence; a page or screen call is a
    visit), else a promotion exposure, else an unsubscribe."""
    response = events.event.isin(PROMOTION_RESPONSES)
    return ibis.cases(
        (events.event.isin(spec.INTERNAL_EVENTS), INTERNAL),
        (events.event.isin(PURCHASES), PURCHASE),
        (events.event.isin(CLICKS), ibis.cases((response, CLICK_RESPONSE), else_=CLICK)),
        (events.event.isin(OPENS), OPEN),
        (
            events.event.isin(VISITS) | events.type.isin(("page", "screen")),
            ibis.cases((response, VISIT_RESPONSE), else_=VISIT),
        ),
        (events.event.isin(PROMOTION_EXPOSURES), EXPOSURE),
        (events.event == spec.UNSUBSCRIBED, UNSUBSCRIBE),
        else_=OTHER,
    ).cast("int8")


def _with_event_code(ev: ir.Table, events: ir.Table) -> ir.Table:
    """`ev` (rows of `events`) with `code`, the class of each event (`_event_code`).

    The class depends on the event's name and type alone, and a log holds a few dozen distinct
    pairs: the class is worked out once per pair and joined to the events, instead of testing
    every event against every list of names (at 30 M events, testing them cost 6.6 CPU seconds on
    its own and the join costs about one; a build took 3-8 CPU seconds less).
    """
    pairs = events.select("event", "type").distinct()
    # kept (a table of a few rows): as a subquery the engine cannot know how small it is, and DuckDB
    # hashed the 30 M events instead
    message = ibis.cases(
        (pairs.event.isin(MESSAGES_RECEIVED), insights.MESSAGE_RECEIVED),
        (pairs.event.isin(MESSAGE_RESPONSES), insights.MESSAGE_RESPONSE),
        else_=0,
    ).cast("int8")
    pairs = pairs.select(_event=pairs.event, _type=pairs.type, code=_event_code(pairs), message=message).cache()
    # IS NOT DISTINCT FROM: a page or screen call may have no name, a bad row no type
    joined = ev.left_join(pairs, [ev.event.identical_to(pairs._event), ev.type.identical_to(pairs._type)])
    return joined.drop("_event", "_type")


def _engaged(ev: ir.Table) -> ir.BooleanValue:
    return ev.code.between(OPEN, PURCHASE)


def _is(ev: ir.Table, *codes: int) -> ir.BooleanValue:
    return ev.code.isin(codes) if len(codes) > 1 else ev.code == codes[0]


def _epoch_day(ev: ir.Table, d: Dialect) -> ir.IntegerValue:
    return (d.epoch_seconds(ev.timestamp) // 86400).cast("int64")


def _engaged_channel(ev: ir.Table) -> ir.StringValue:
    """The channel an engagement answers: a coupon redemption's issuing channel, else the event's own."""
    return ibis.coalesce(ev.coupon_channel, ev.channel, ibis.literal("unknown"))


def _flat_columns(ev: ir.Table) -> ir.Table:
    """`ev` plus `_timezone`, `_device`, `_consent` and `_<key>` for each of events.normalize.PROPERTY_KEYS: the log's
    flat copies of `context` and `properties` (storage.eventlog.FLAT_COLUMNS), "" where absent (`person_events`
    reads "" as NULL where it reads a value, not on every row).
    `build_profiles` first upgrades files written before the log kept them (EventLog.upgrade_events)."""
    missing = [name for name in FLAT_COLUMNS if name not in ev.columns]
    if missing:
        raise InputError(
            f"the events table lacks columns {missing}: upgrade the event log first "
            "(EventLog.upgrade_events, which build_profiles runs)",
            field="events",
        )
    return ev.mutate(**{"_" + name.split("_", 1)[1]: ev[name] for name in FLAT_COLUMNS})


def person_events(
    events: ir.Table, identities: ir.Table, now: datetime, d: Dialect, columns: Sequence[str] = ()
) -> ir.Table:
    """Events up to `now` with the person they belong to (by user_id if set, else anonymous_id) and derived fields.

    Every later step reads this table, so it is kept narrow: the JSON documents are parsed here,
    once, and only for the events that use a field (product ids from product views, promotions from
    sends and responses, the products of orders, traits where there are some...). `columns` are
    further columns of `events` to keep as they are (those custom traits use, `properties` included).
    """
    ev = with_person(events.filter(events.timestamp <= ibis.literal(now, dt.Timestamp(timezone="UTC"))), identities)
    ev = _flat_columns(ev)
    none = ibis.null("string")
    ev = _with_event_code(ev, events)
    is_order = ev.code == PURCHASE
    engaged = _engaged(ev)
    exposure = ev.code == EXPOSURE
    promoted = ev.code.isin((EXPOSURE, *RESPONSE_CODES))
    viewed = ev.event == spec.PRODUCT_VIEWED
    coupon = ev.event == spec.COUPON_APPLIED
    promotion = ibis.coalesce(
        ibis.cases((promoted, ev._promotion.nullif("")), else_=none),
        ibis.cases((coupon, "coupon"), (ev.event == spec.EVENT_ATTENDED, "event"), else_=ibis.null()),
    )
    stated = ev.traits.notnull() & (ev.traits != "{}")
    base = ["person_id", "channel", "timestamp", "user_id", "code", "message"]
    return ev.select(
        *base,
        *(c for c in dict.fromkeys(columns) if c not in base),
        revenue=ibis.cases(
            (is_order, order_value(ev._revenue.nullif(""), ev._total.nullif(""))),
            else_=ibis.literal(0.0),
        ),
        products=ibis.cases((is_order, ev._products.nullif("")), else_=none),
        # a coupon redemption answers the channel that issued the coupon (_engaged_channel)
        coupon_channel=ibis.cases(
            (coupon, ibis.coalesce(ev._issued_channel.nullif(""), ev._redeemed_channel.nullif(""))), else_=none
        ),
        device=ibis.cases((engaged, ev._device.nullif("")), else_=none),  # engagements use it
        timezone=ev._timezone.nullif(""),
        promotion=promotion,
        # a send of a campaign counts once per campaign; one without a campaign id is one exposure of its own
        campaign_id=ibis.cases((exposure, ev._campaign_id.nullif("")), else_=none),
        product_id=ibis.cases((viewed, ev._product_id.nullif("")), else_=none),
        category=ibis.cases((viewed, ev._category.nullif("")), else_=none),
        traits=ibis.cases((stated, ev.traits), else_=none),
        consent=ev._consent.nullif(""),
    )


def _identifiers(identities: ir.Table) -> ir.Table:
    """Per person (numbered): `_person`, the person's id (text), and their identifiers by kind."""
    ids = identities  # an identifier (kind, value) belongs to one person: listed once, no DISTINCT needed
    lists = {f"{kind}s": ids.value.collect(where=ids.kind == kind).sort() for kind in IDENTIFIER_KINDS}
    return ids.group_by("person_id").aggregate(
        _person=ids._person.arbitrary(),  # one text per number
        **lists,
        anonymous_id_count=(ids.kind == "anonymous_id").sum().cast("int64"),
        identifier_count=ids.count(),
        identifier_kinds=ids.kind.collect(distinct=True).sort(),
    )


DEMOGRAPHIC_TRAITS = ("gender", "birthday", "postcode")
"""Stated demographics (identify traits of these names) kept as the person last stated them (identify traits: loyalty forms, CRM exports...)."""


def _iso_date(text: ir.StringValue) -> ir.StringValue:
    """The `YYYY-MM-DD` a text starts with (a birthday may come with a time), NULL when it does not."""
    return ibis.cases((text.re_search(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"), text.substr(0, 10)), else_=ibis.null("string"))


def _age(birthday: ir.StringValue, now: datetime) -> ir.IntegerValue:
    """Whole years from a `YYYY-MM-DD` birthday to `now` (UTC); NULL without one, or outside 0-120."""
    year = birthday.substr(0, 4).cast("int64")
    month_day = birthday.substr(5, 5)
    years = ibis.literal(now.year) - year - ibis.cases((month_day > f"{now:%m-%d}", 1), else_=0)
    return ibis.cases(((years >= 0) & (years <= 120), years), else_=ibis.null("int64"))


def _latest(ev: ir.Table, value: ir.Value) -> ir.Value:
    """The value of the person's latest event that has one."""
    return value.argmax(ev.timestamp, where=value.notnull())


def _activity(ev: ir.Table) -> ir.Table:
    """Activity per person: when seen, how much, latest user id and time zone, touches per channel.

    One pass over the events groups them by person and channel (what `last_touch` lists); the person's
    figures come from those few rows per person. The latest user id and time zone come from a grouping
    by person of the events that have one: on DuckDB 2 at 30 M events, 5 CPU seconds instead of the 9
    that the same latest values cost inside the grouping by channel. Orders are summed from the order
    events alone.
    """
    # a segment change (INTERNAL) is not something the person did. Filtered here, on the kept table: the
    # same filter before keeping it made DuckDB hash the 30 M events in the event-class join (+10 s)
    ev = ev.filter(ev.code != INTERNAL)
    per = ev.group_by(["person_id", "channel"]).aggregate(
        _first=ev.timestamp.min(), last_at=ev.timestamp.max(), events=ev.count()
    )
    grouped = per.group_by("person_id").aggregate(
        first_seen=per._first.min(),
        last_seen=per.last_at.max(),
        event_count=per.events.sum(),
        _t=ibis.struct({"channel": per.channel, "last_at": per.last_at, "events": per.events}).collect(),
    )
    touches = grouped._t.sort()  # by channel first: the channels come out sorted and distinct
    activity = grouped.mutate(channels=touches.map(lambda t: t.channel), last_touch=touches).drop("_t")
    for name, column in (("primary_user_id", "user_id"), ("timezone", "timezone")):
        said = ev.filter(ev[column].notnull())
        latest = said.group_by("person_id").aggregate(**{name: said[column].argmax(said.timestamp)})
        activity = activity.left_join(latest, "person_id").drop("person_id_right")
    return activity


def _orders(ev: ir.Table, d: Dialect) -> ir.Table:
    """Orders per person: how many and how much, online and in store, and the repeat-purchase summary of CLV."""
    bought = ev.filter(ev.code == PURCHASE)
    bought = bought.mutate(epoch_day=_epoch_day(bought, d))
    store = bought.channel == "store"
    orders = bought.group_by("person_id").aggregate(
        orders=bought.count(),
        online_orders=(~store).sum().cast("int64"),
        store_orders=store.sum().cast("int64"),
        online_revenue=bought.revenue.sum(where=~store).fill_null(0.0).round(2),
        store_revenue=bought.revenue.sum(where=store).fill_null(0.0).round(2),
        total_revenue=bought.revenue.sum().round(2),
        first_order_at=bought.timestamp.min(),
        last_order_at=bought.timestamp.max(),
    )
    # the repeat-purchase summary CLV is fitted on (lifetimes' convention): days with an order, and the mean
    # value of the days after the first, summed in whole cents so that every engine gives the same double
    days = bought.group_by(["person_id", "epoch_day"]).aggregate(
        cents=(bought.revenue * 100).round().cast("int64").sum()
    )
    days = days.mutate(_first=days.epoch_day.min().over(group_by="person_id"))
    repeat = days.group_by("person_id").aggregate(
        purchase_days=days.count(),
        _repeat_cents=days.cents.sum(where=days.epoch_day > days._first),
    )
    repeat = repeat.select(
        "person_id",
        "purchase_days",
        repeat_order_value=ibis.cases(
            (
                repeat.purchase_days > 1,
                repeat._repeat_cents.cast("float64") / (repeat.purchase_days - 1).cast("float64") / 100.0,
            ),
            else_=ibis.null("float64"),
        ),
    )
    return orders.join(repeat, "person_id")


def _stated(ev: ir.Table, d: Dialect) -> ir.Table:
    """What the person said about themselves: latest names, e-mail, phone, consent per channel and per purpose.

    Only events that can say something are read (traits, an unsubscribe, a consent object); on
    the others every value is NULL, which `_latest` skips anyway. A consent manager repeats the same
    object on every page view, so events that carry nothing else count once per person and object
    (at its latest time): the same latest values, from far fewer JSON documents.
    """
    ev = ev.mutate(is_unsubscribe=ev.code == UNSUBSCRIBE)
    cols = ["person_id", "timestamp", "channel", "is_unsubscribe", "traits", "consent"]
    said = ev.filter(ev.traits.notnull() | ev.is_unsubscribe).select(*cols)
    only_consent = ev.filter(ev.consent.notnull() & ev.traits.isnull() & ~ev.is_unsubscribe)
    docs = only_consent.group_by(["person_id", "consent"]).aggregate(timestamp=only_consent.timestamp.max())
    said = said.union(
        docs.select(
            "person_id",
            "timestamp",
            channel=ibis.null("string"),
            is_unsubscribe=ibis.literal(False),
            traits=ibis.null("string"),
            consent=docs.consent,
        )
    )
    names = {
        "first_name": "first_name",
        "last_name": "last_name",
        "latest_email": "email",
        "latest_phone": "phone",
        **{name: name for name in DEMOGRAPHIC_TRAITS},
        **{f"consent_{c}": t for c, t in CONSENT_TRAITS.items()},
        **{f"_{p}_consent": f"{p}_consent" for p in CONSENT_PURPOSES},
    }
    # numbered, not named by the key: Spark's column names ignore case, and Advertising / advertising are two keys
    spellings = {
        f"_said_{i}": name for i, name in enumerate(name for spelled in CONSENT_PURPOSES.values() for name in spelled)
    }
    said = d.with_json_fields(said, "traits", {f"_trait_{name}": key for name, key in names.items()})
    said = d.with_json_fields(said, "consent", spellings)
    traits = {name: said[f"_trait_{name}"] for name in names}
    chosen = {key: said[name] for name, key in spellings.items()}
    values: dict[str, ir.Value] = {
        name: traits[name] for name in ("first_name", "last_name", "latest_email", "latest_phone")
    }
    values.update({name: traits[name].strip().nullif("") for name in DEMOGRAPHIC_TRAITS})  # "" states nothing
    for channel in CONSENT_TRAITS:
        values[f"consent_{channel}"] = ibis.coalesce(
            yes_no(traits[f"consent_{channel}"]),
            ibis.cases((said.is_unsubscribe & (said.channel == channel), False), else_=ibis.null("boolean")),
        )
    for purpose, spelled in CONSENT_PURPOSES.items():
        values[f"consent_purpose_{purpose}"] = ibis.coalesce(
            *(yes_no(chosen[name]) for name in spelled), yes_no(traits[f"_{purpose}_consent"])
        )
    return said.group_by("person_id").aggregate(**{name: _latest(said, v) for name, v in values.items()})


def _preferred_channel(ev: ir.Table, d: Dialect) -> ir.Table:
    """Per person, each channel's engagement score (`engagement_by_channel`, by channel) and the best one.

    Visit days are counted from the distinct (person, channel, day) of the visits, joined to the counts
    of the other engagements, rather than by a DISTINCT inside that grouping (which cost 6 of the
    part's 11 CPU seconds at 30 M events). The best channel is the first of the sorted scores with the
    highest score: the same grouping gives both.
    """
    engaged = ev.filter(_engaged(ev))
    engaged = engaged.select("person_id", "code", engaged_channel=_engaged_channel(engaged))
    keys = ["person_id", "engaged_channel"]
    w = ENGAGEMENT_WEIGHTS
    per = engaged.group_by(keys).aggregate(
        opens=_is(engaged, *ENGAGEMENT_CODES["open"]).sum(),
        clicks=_is(engaged, *ENGAGEMENT_CODES["click"]).sum(),
        purchases=_is(engaged, *ENGAGEMENT_CODES["purchase"]).sum(),
    )
    visits = ev.filter(_is(ev, *ENGAGEMENT_CODES["visit"]))
    visits = visits.select("person_id", engaged_channel=_engaged_channel(visits), epoch_day=_epoch_day(visits, d))
    visits = visits.distinct()
    visit_days = visits.group_by(keys).aggregate(visit_days=visits.count())
    per = per.left_join(visit_days, keys).drop("person_id_right", "engaged_channel_right")
    per = per.mutate(
        score=(
            per.opens * w["open"]
            + per.clicks * w["click"]
            + per.visit_days.fill_null(0) * w["visit"]
            + per.purchases * w["purchase"]
        ).cast("int64")
    )
    scores = per.group_by("person_id").aggregate(
        _s=ibis.struct({"channel": per.engaged_channel, "score": per.score}).collect(), _top=per.score.max()
    )
    ordered = scores._s.sort()  # by channel: the first with the top score is the smallest name among the best
    return scores.select(
        "person_id",
        preferred_channel=ordered.filter(lambda s: s.score == scores._top)[0].channel,
        engagement_by_channel=ordered,
    )


def _preferred_device(ev: ir.Table) -> ir.Table:
    dev = ev.filter(ev.device.notnull())  # set on engagements only
    per = dev.group_by(["person_id", "device"]).aggregate(n=dev.count())
    return best(per, "person_id", "device", [-per.n], "preferred_device")


def _best_time(ev: ir.Table, zones: ir.Table, d: Dialect) -> ir.Table:
    # Every join and grouping here is on whole numbers: zones are numbered, and the zone's name is
    # read once per (zone, quarter hour) below.
    names = zones.select("tz").distinct()
    names = names.select("tz", zone=ibis.row_number().over(order_by=names.tz))
    zones = zones.join(names, "tz").select("person_id", "zone")
    # the hour from what the person started (visits, views, orders), not from opens and clicks, whose
    # time the sender chose; the weekday from every engagement, as before
    engaged = ev.filter(_engaged(ev)).select("person_id", "timestamp", own=_is(ev, VISIT, PURCHASE))
    engaged = engaged.join(zones, "person_id")
    # Time-zone conversion is the costliest step per row, so it runs once per (zone, quarter hour of
    # UTC) instead of once per engagement: every zone's offset is a whole number of quarter hours
    # and changes on a quarter hour, so all instants of one UTC quarter hour share the local hour and day.
    engaged = engaged.mutate(quarter=d.epoch_seconds(engaged.timestamp) // 900)
    quarters = engaged.group_by(["zone", "quarter"]).aggregate(at=engaged.timestamp.min())
    quarters = quarters.join(names, "zone")
    local = d.local_time(quarters.at, quarters.tz)
    quarters = quarters.select(
        "zone",
        "quarter",
        # the middle of the local quarter hour, as a fraction of hours
        hour=local.hour().cast("float64") + (local.minute() // 15 * 15 + 7.5).cast("float64") / 60.0,
        weekday=local.day_of_week.index().cast("int32"),
    )
    engaged = engaged.join(quarters, ["zone", "quarter"]).select("person_id", "hour", "weekday", "own")
    # the best hour is shrunk toward everyone's (insights.best_hour_from): here only each person's sums,
    # which `_with_best_hour` scores once every person's are known
    own = insights.own_hours(engaged.filter(engaged.own))
    own = own.select("person_id", **{f"_own_{name}": own[name] for name in OWN_HOURS})
    best_day = _most_frequent(engaged, "weekday", 7)
    names = ibis.cases(*((best_day.weekday == i, name) for i, name in enumerate(WEEKDAYS)), else_=ibis.null())
    best_day = best_day.select("person_id", best_weekday=names)
    return best_day.left_join(own, "person_id").drop("person_id_right")


OWN_HOURS = ("n", "total", "squares")
"""The columns of insights.own_hours, kept per person as `_own_<name>` until the best hour is scored."""


def _most_frequent(table: ir.Table, value: str, span: int) -> ir.Table:
    """Per person, the `value` (a whole number in [0, span)) of most rows, the smallest on a tie.

    A maximum of count * span + (span - 1 - value) per person instead of ranking every (person, value)
    in a window: the same answer, without sorting.
    """
    counts = table.group_by(["person_id", value]).aggregate(n=table.count())
    best = counts.group_by("person_id").aggregate(_k=(counts.n * span + (span - 1 - counts[value])).max())
    return best.select("person_id", **{value: (span - 1 - best._k % span).cast("int32")})


def _contact_frequency(ev: ir.Table, d: Dialect) -> ir.Table:
    """Median days between consecutive days with an engagement (exact, the same on every engine)."""
    engaged = ev.filter(_engaged(ev))
    days = engaged.select("person_id", epoch_day=_epoch_day(engaged, d))
    # In day order, the engagements of a day after the first differ from the one before by 0, and the
    # first of a day by the days since the last day with one: the non-zero differences are the gaps
    # between distinct days, without grouping 18 M engagements into distinct days first.
    gaps = days.mutate(gap=days.epoch_day - days.epoch_day.lag().over(group_by="person_id", order_by="epoch_day"))
    gaps = gaps.filter(gaps.gap > 0)
    # an exact median: DuckDB's quantile_cont and Spark's percentile both take the mean of the two middle gaps
    return gaps.group_by("person_id").aggregate(contact_every_days=gaps.gap.median().cast("float64"))


def _products(ev: ir.Table, d: Dialect) -> list[ir.Table]:
    orders = ev.filter(ev.code == PURCHASE)
    lines = orders.select("person_id", "timestamp", item=d.products(orders.products).unnest())
    # three parts read the order lines: parsed once, kept (a few per order)
    bought = lines.select(
        "person_id",
        "timestamp",
        product_id=lines.item.product_id,
        name=lines.item["name"],
        category=lines.item.category,
        units=lines.item.quantity.fill_null(1.0),
    ).cache()
    views = ev.filter(ev.product_id.notnull())  # set on product views only
    # a purchased unit is worth three views when choosing favourites
    interest = bought.select(
        "person_id", "product_id", "category", "timestamp", score=bought.units * 3, viewed=ibis.literal(False)
    ).union(
        views.select(
            "person_id", "product_id", "category", "timestamp", score=ibis.literal(1.0), viewed=ibis.literal(True)
        )
    )
    products = interest.filter(interest.product_id.notnull())
    # one grouping by (person, product) gives both the favourites' scores and when each was last viewed and bought
    per_product = (
        products.group_by(["person_id", "product_id"])
        .aggregate(
            score=products.score.sum(),
            viewed_at=products.timestamp.max(where=products.viewed),
            bought_at=products.timestamp.max(where=~products.viewed),
        )
        .cache()
    )  # read by two parts
    favourite_products = top(per_product, "person_id", "product_id", [-per_product.score], TOP_N, "favourite_products")
    cats = interest.filter(interest.category.notnull())
    per_category = cats.group_by(["person_id", "category"]).aggregate(score=cats.score.sum())
    favourite_categories = top(
        per_category, "person_id", "category", [-per_category.score], TOP_N, "favourite_categories"
    )
    vnb = per_product.filter(
        per_product.viewed_at.notnull()
        & (per_product.bought_at.isnull() | (per_product.bought_at < per_product.viewed_at))
    )
    viewed_not_bought = top(
        vnb, "person_id", "product_id", [-d.epoch_micros(vnb.viewed_at)], VIEWED_NOT_BOUGHT_N, "viewed_not_bought"
    )
    return [favourite_products, favourite_categories, viewed_not_bought]


def _promotion(ev: ir.Table) -> ir.Table:
    """The most responsive promotion (profiles/insights.py): exposures and responses per channel and type.
    A coupon redeemed at the till answers the channel that issued it."""
    promo = ev.filter(ev.promotion.isin(PROMOTION_TYPES))
    promo = promo.select(
        "person_id",
        "promotion",
        "campaign_id",
        channel=_engaged_channel(promo),
        exposure=(promo.code == EXPOSURE).cast("int64"),
        response=_is(promo, *RESPONSE_CODES).cast("int64"),
    )
    return insights.responsive_promotion(promo, PROMOTION_TYPES)


def _custom_traits(ev: ir.Table, traits: Sequence[TraitSpec], now: datetime, d: Dialect) -> ir.Table | None:
    """The declared custom traits, one aggregate column each, per person."""
    if not traits:
        return None
    ev = ev.filter(ev.code != INTERNAL)
    return ev.group_by("person_id").aggregate(**{t.name: _trait_aggregate(ev, t, now, d) for t in traits})


def _trait_columns(traits: Sequence[TraitSpec]) -> list[str]:
    """The columns of `events` the custom traits read (`properties` for a property or a filter)."""
    columns = [t.column for t in traits if t.column is not None]
    if any(t.events for t in traits):
        columns.append("event")
    if any(t.property is not None or t.where for t in traits):
        columns.append("properties")
    return columns


def _trait_aggregate(ev: ir.Table, t: TraitSpec, now: datetime, d: Dialect) -> ir.Value:
    mask: ir.BooleanValue = ibis.literal(True)
    if t.events:
        mask &= ev.event.isin(t.events)
    if t.channels:
        mask &= ev.channel.isin(t.channels)
    for key, wanted in t.where:
        mask &= d.json(ev.properties, key) == wanted
    if t.window_days is not None:
        mask &= ev.timestamp > ibis.literal(now - timedelta(days=t.window_days), dt.Timestamp(timezone="UTC"))
    if t.agg == "count" and t.property is None and t.column is None:
        return mask.cast("int64").sum()
    value = ev[t.column] if t.column is not None else d.json(ev.properties, t.property or "")
    if t.agg in ("sum", "avg") or (t.agg in ("min", "max") and t.property is not None):
        value = value.cast("float64")
    if t.agg == "count":
        return value.count(where=mask)
    if t.agg == "sum":
        return value.sum(where=mask)
    if t.agg == "avg":
        return value.mean(where=mask)
    if t.agg == "min":
        return value.min(where=mask)
    if t.agg == "max":
        return value.max(where=mask)
    if t.agg == "first":
        return value.argmin(ev.timestamp, where=mask & value.notnull())
    if t.agg == "last":
        return value.argmax(ev.timestamp, where=mask & value.notnull())
    return value.nunique(where=mask).cast("int64")  # distinct


def _average_order_value(revenue: ir.FloatingValue, orders: ir.IntegerValue) -> ir.FloatingValue:
    """Revenue / orders rounded half up to the cent, in whole cents.

    Rounding the quotient as a double does not give the same answer on every engine when it ends in
    a half cent (10.03 / 2 is 5.01499... in binary: DuckDB says 5.01, Spark 5.02); whole cents do.
    """
    cents = (revenue * 100).round().cast("int64")  # revenue is already rounded to the cent
    return ibis.cases((orders > 0, ((2 * cents + orders) // (2 * orders)) / 100.0), else_=ibis.null("float64"))


def _rfm(orders: ir.Table) -> ir.Table:
    """Quintile scores 1-5 among buyers (5 = most recent, most orders, most revenue); ties share a score.

    Ranked over the narrow per-person orders, not the finished profiles: a window sorts whole rows,
    and a profile row is wide.
    """
    buyers = orders.select("person_id", "last_order_at", "orders", "total_revenue")

    def quintile(col: ir.Column) -> ir.IntegerValue:
        return (ibis.cume_dist().over(order_by=col) * 5).ceil().cast("int32")

    scored = buyers.select(
        "person_id",
        rfm_recency=quintile(buyers.last_order_at),
        rfm_frequency=quintile(buyers.orders),
        rfm_monetary=quintile(buyers.total_revenue),
    )
    return scored.mutate(
        rfm_segment=scored.rfm_recency.cast("string")
        + scored.rfm_frequency.cast("string")
        + scored.rfm_monetary.cast("string")
    )


def _numbered(identities: ir.Table) -> ir.Table:
    """`identities` with the person as a whole number (`person_id`, from 0 in person_id order) and the text id
    as `_person`.

    Every step groups and joins by person: on a whole number, not on the id's text, which `resolve` makes
    16 characters long (longer than DuckDB keeps inline). The text comes back at the end."""
    persons = identities.select("person_id").distinct()
    persons = persons.select(_person=persons.person_id, _number=ibis.row_number().over(order_by=persons.person_id))
    return identities.join(persons, identities.person_id == persons._person).select(
        "kind", "value", "_person", person_id=persons._number
    )


def _profiles_of(
    ev: ir.Table,
    identities: ir.Table,
    now: datetime,
    traits: Sequence[TraitSpec],
    orders: ir.Table,
    rfm: ir.Table,
    population: ir.Table,
) -> pa.Table:
    """One row per person of `identities` (numbered, `_numbered`), from their events `ev` (`person_events`), in
    person order, as Arrow; see docs/profiles.md for the columns.

    `orders`, `rfm` and `population` are computed over every person (`_orders`, `_rfm`,
    insights.message_population), so that a build by chunks of persons gives each chunk the same as the whole:
    they may hold other persons too. The best hour is left as each person's sums (`_own_*`): `_with_best_hour`
    scores it. A list is NULL where the person has no row in its part: `profiles_table` makes those [].

    Each part runs on the engine on its own and comes back as Arrow; its rows are then placed by person number
    (`_placed`) rather than joined to the others in the engine: a dozen joins of wide rows and a sort of the
    result cost a third of a build's CPU at 30 M events (docs/scale.md). The few columns computed from several
    parts (`_derived`) run on DuckDB over those columns alone.
    """
    d = dialect_of(ev)
    activity = _activity(ev).cache()
    zones = activity.select("person_id", tz=activity.timezone.fill_null("UTC"))
    base = to_arrow(_identifiers(identities)).sort_by("person_id")
    numbers = base.column("person_id").to_numpy()
    low, high = (int(numbers[0]), int(numbers[-1])) if len(numbers) else (0, -1)
    parts = [
        activity,
        orders.filter(orders.person_id.between(low, high)),  # over everyone: this range's rows only
        _stated(ev, d),
        _preferred_channel(ev, d),
        insights.preferred_messaging_channel(ev, population),
        _preferred_device(ev),
        _best_time(ev, zones, d),
        _contact_frequency(ev, d),
        *_products(ev, d),
        _promotion(ev),
    ]
    custom = _custom_traits(ev, traits, now, d)
    if custom is not None:
        parts.append(custom)
    columns = {name: base.column(name) for name in base.column_names}
    for part in parts:
        columns.update(_placed(to_arrow(part), numbers))
    scored = _placed(to_arrow(rfm.filter(rfm.person_id.between(low, high))), numbers)
    # the columns in their order: the same steps over a table of no rows (nothing runs), then the RFM scores
    unbound = ibis.table(ibis.Schema.from_pyarrow(pa.schema([(n, c.type) for n, c in columns.items()])))
    names = [*_arranged(unbound, now, d).columns, *scored]
    out = {**columns, **scored, **_derived(columns, now), "person_id": columns["_person"]}
    return pa.table({name: out[name] for name in names})


def _placed(table: pa.Table, numbers: np.ndarray) -> dict[str, pa.ChunkedArray]:
    """The columns of `table` (a part: one row per person it has, by `person_id` number) in the order of `numbers`
    (sorted person numbers), NULL for a person without a row; rows of other persons are left out."""
    persons = table.column("person_id").to_numpy()
    at = np.searchsorted(numbers, persons)
    inside = at < len(numbers)
    inside[inside] = numbers[at[inside]] == persons[inside]
    index = np.full(len(numbers), -1, np.int64)
    index[at[inside]] = np.flatnonzero(inside)
    take = pa.array(index, pa.int64(), mask=index < 0)
    return {name: table.column(name).take(take) for name in table.column_names if name != "person_id"}


DERIVED_INPUTS = (
    "latest_email", "emails", "latest_phone", "phones", "loyalty_cards", "primary_user_id", "user_ids",
    "event_count", "orders", "online_orders", "store_orders", "online_revenue", "store_revenue", "total_revenue",
    "last_order_at", "timezone", "birthday",
)  # fmt: skip
"""The columns `_derived` reads."""


def _derived_values(result: ir.Table, now: datetime, d: Dialect) -> dict[str, ir.Value]:
    """The columns computed from several parts: primary identifiers, zeros for no orders, average order value,
    recency, the time zone (UTC when never stated) and the birthday as a date."""
    now_lit = ibis.literal(now, dt.Timestamp(timezone="UTC"))
    return {
        "primary_email": ibis.coalesce(result.latest_email, result.emails.mins()),
        "primary_phone": ibis.coalesce(result.latest_phone, result.phones.mins()),
        "primary_loyalty_card": result.loyalty_cards.mins(),
        "primary_user_id": ibis.coalesce(result.primary_user_id, result.user_ids.mins()),
        "event_count": result.event_count.fill_null(0),
        "orders": result.orders.fill_null(0),
        "online_orders": result.online_orders.fill_null(0),
        "store_orders": result.store_orders.fill_null(0),
        "online_revenue": result.online_revenue.fill_null(0.0),
        "store_revenue": result.store_revenue.fill_null(0.0),
        "total_revenue": result.total_revenue.fill_null(0.0),
        "average_order_value": _average_order_value(result.total_revenue, result.orders),
        "recency_days": ((d.epoch_seconds(now_lit) - d.epoch_seconds(result.last_order_at)) // 86400).cast("int64"),
        "timezone": result.timezone.fill_null("UTC"),
        "birthday": _iso_date(result.birthday),
    }


def _derived(columns: Mapping[str, pa.ChunkedArray], now: datetime) -> dict[str, pa.ChunkedArray]:
    """`_derived_values` and `age` over the placed columns, on DuckDB (Ibis's default backend for Arrow)."""
    narrow = ibis.memtable(pa.table({name: columns[name] for name in DERIVED_INPUTS}))
    values = _derived_values(narrow, now, DUCKDB)
    out = narrow.select(**values)
    out = out.mutate(age=_age(out.birthday, now))
    table = to_arrow(out)
    return {name: table.column(name) for name in table.column_names}


def _arranged(result: ir.Table, now: datetime, d: Dialect) -> ir.Table:
    """The columns of the placed parts (`result`) in the order docs/profiles.md lists them, with the derived ones
    (`_derived_values`, `age`) in their places, and `person_id` the text id."""
    consent = [c for c in result.columns if c.startswith("consent_")]
    result = result.relocate("channels", after="event_count")
    result = result.relocate(
        "first_name", "last_name", *DEMOGRAPHIC_TRAITS, "latest_email", "latest_phone", after="channels"
    )
    result = result.relocate(*consent, after="last_order_at")
    result = result.relocate("last_touch", after=consent[-1])
    result = result.mutate(**_derived_values(result, now, d)).drop("latest_email", "latest_phone")
    result = result.mutate(age=_age(result.birthday, now)).relocate("age", after="birthday")
    return result.mutate(person_id=result._person).drop("_person")


BUILTIN_COLUMNS = frozenset(
    {
        "person_id",
        *DEMOGRAPHIC_TRAITS,
        "age",
        *(f"{k}s" for k in IDENTIFIER_KINDS),
        "anonymous_id_count",
        "identifier_count",
        "identifier_kinds",
        "first_seen",
        "last_seen",
        "event_count",
        "channels",
        "first_name",
        "last_name",
        "primary_email",
        "primary_phone",
        "primary_loyalty_card",
        "primary_user_id",
        "timezone",
        "orders",
        "online_orders",
        "store_orders",
        "online_revenue",
        "store_revenue",
        "total_revenue",
        "first_order_at",
        "last_order_at",
        *(f"consent_{c}" for c in CONSENT_TRAITS),
        *(f"consent_purpose_{p}" for p in CONSENT_PURPOSES),
        "last_touch",
        "preferred_channel",
        "engagement_by_channel",
        "preferred_messaging_channel",
        "messaging_response",
        "preferred_device",
        "best_hour",
        "best_weekday",
        "contact_every_days",
        "favourite_products",
        "favourite_categories",
        "viewed_not_bought",
        "responsive_promotion",
        "average_order_value",
        "recency_days",
        "rfm_recency",
        "rfm_frequency",
        "rfm_monetary",
        "rfm_segment",
        "latest_email",
        "latest_phone",
        "purchase_days",
        "repeat_order_value",
        "p_alive",
        "p_alive_note",
        "expected_orders_12m",
        "clv_12m",
        "recommended_products",
    }
)


# --- running a build -----------------------------------------------------------------------------

CLV_HORIZON_DAYS = 365
CLV_MIN_REPEAT_BUYERS = 20
"""Fewer buyers with a repeat purchase than this and the models are not fitted (the CLV columns stay NULL)."""


def with_clv(table: pa.Table, now: datetime) -> pa.Table:
    """`table` (profiles) plus `p_alive`, `expected_orders_12m` and `clv_12m` for every buyer.

    BG/NBD (purchase days) and Gamma-Gamma (value per day) are fitted by maximum likelihood
    (profiles.clv) on all buyers, in days: frequency = days with an order - 1, recency = last - first
    order day, T = `now`'s day - first order day, monetary value = `repeat_order_value`. `clv_12m` is
    the expected orders over the next 365 days times the expected value of one (undiscounted); a
    buyer whose repeat days have no value gets the population's expected value. Non-buyers, and
    everyone when there are fewer than CLV_MIN_REPEAT_BUYERS repeat buyers, get NULL. When the history
    does not identify dropout (`clv.dropout_identification`), `p_alive` is NULL for every buyer and
    `p_alive_note` says why (also when too few repeat buyers stop the fit; NULL otherwise).
    """
    from omniweave.profiles import clv

    n = table.num_rows
    # NaN until predicted, written as NULL
    predicted = {name: np.full(n, np.nan) for name in ("p_alive", "expected_orders_12m", "clv_12m")}
    days = np.asarray(table.column("purchase_days").to_numpy(zero_copy_only=False), dtype=float)
    buyer = np.nan_to_num(days) > 0

    def day_of(column: str) -> np.ndarray:
        micros = table.column(column).cast(pa.int64()).to_numpy(zero_copy_only=False)
        return np.floor_divide(np.nan_to_num(micros.astype(float)), 86_400_000_000)

    first, last = day_of("first_order_at")[buyer], day_of("last_order_at")[buyer]
    frequency = days[buyer] - 1
    recency = np.where(frequency > 0, last - first, 0.0)
    age = (np.datetime64(now.replace(tzinfo=None), "us").astype(np.int64) // 86_400_000_000) - first
    value = np.nan_to_num(
        np.asarray(table.column("repeat_order_value").to_numpy(zero_copy_only=False), dtype=float)[buyer]
    )
    note: list[str | None] = [None] * n
    repeat_buyers = int((frequency > 0).sum())
    if repeat_buyers < CLV_MIN_REPEAT_BUYERS:
        for row in np.flatnonzero(buyer).tolist():
            note[row] = f"not fitted: {repeat_buyers} buyers with a repeat purchase, fewer than {CLV_MIN_REPEAT_BUYERS}"
    else:
        purchases = clv.fit_bgnbd(frequency, recency, age)
        check = clv.dropout_identification(purchases, frequency, recency, age)
        if check.identified:
            predicted["p_alive"][buyer] = clv.probability_alive(purchases, frequency, recency, age)
        else:  # P(alive) unknown; expected orders and CLV kept, but they rest on the same unidentified dropout
            reason = f"{check.reason}; expected_orders_12m and clv_12m assume the fitted dropout ({check.dropout:.2g})"
            for row in np.flatnonzero(buyer).tolist():
                note[row] = reason
        predicted["expected_orders_12m"][buyer] = clv.expected_purchases(
            purchases, CLV_HORIZON_DAYS, frequency, recency, age
        )
        valued = (frequency > 0) & (value > 0)
        if int(valued.sum()) >= CLV_MIN_REPEAT_BUYERS:
            spend = clv.fit_gamma_gamma(frequency[valued], value[valued])
            known = np.where(value > 0, frequency, 0.0)
            predicted["clv_12m"][buyer] = clv.customer_lifetime_value(
                purchases, spend, known, recency, age, value, horizon=CLV_HORIZON_DAYS
            )
    for name, values in predicted.items():
        table = table.append_column(name, pa.array(np.round(values, 6), pa.float64(), mask=np.isnan(values)))
        if name == "p_alive":
            table = table.append_column("p_alive_note", pa.array(note, pa.string()))
    return table


def with_recommendations(runtime: Runtime, table: pa.Table) -> pa.Table:
    """`table` (profiles) plus `recommended_products` from the `recommendations` dataset ([] without one)."""
    field = pa.field("recommended_products", pa.list_(pa.string()))
    if not runtime.log.has_data("recommendations"):
        empty = pa.ListArray.from_arrays(pa.array(np.zeros(table.num_rows + 1, np.int32)), pa.array([], pa.string()))
        return table.append_column(field, empty)
    import duckdb

    con = duckdb.connect()
    try:
        con.register("p", table)
        con.register("r", runtime.warehouse().table("recommendations").to_pyarrow())
        result = con.sql(
            "SELECT p.*, coalesce(r.recommended_products, []::VARCHAR[]) AS recommended_products "
            "FROM p LEFT JOIN r USING (person_id) ORDER BY person_id"
        ).to_arrow_table()
    finally:
        con.close()
    return result.cast(pa.schema([*table.schema, field]))


def profiles_table(
    events: ir.Table,
    identities: ir.Table,
    now: datetime,
    traits: Sequence[TraitSpec] = (),
    chunks: int = 1,
    spill: str | None = None,
    keep: dict[str, pa.Table] | None = None,
) -> pa.Table:
    """The profiles of every person of `identities` as Arrow, in person_id order, with [] for every list that
    is NULL (a profile always says []): see docs/profiles.md for the columns. It runs on the engine of
    `events` (DuckDB or Spark alike).

    With `chunks` > 1 the persons are cut into that many ranges, profiled one range at a time, so that the
    engine holds one range's events and groupings at once instead of everyone's (docs/scale.md). The
    per-event table is then written once under `spill` (a folder; default: a temporary one), partitioned by
    range, and read back range by range. What is estimated over everyone (RFM's quintiles, the messaging
    channels' response rates, the best hour's shrinkage) is computed over everyone: the same profiles as one
    range.
    """
    d = dialect_of(events)
    numbered = _numbered(identities).cache()  # the per-event table and the identifiers both read it
    ev = person_events(events, numbered, now, d, _trait_columns(traits))
    with contextlib.ExitStack() as stack:
        if chunks > 1:
            persons = int(numbered.person_id.max().execute() or 0) + 1
            size = -(-persons // chunks)
            folder = spill if spill is not None else stack.enter_context(tempfile.TemporaryDirectory())
            ev = ev.mutate(_chunk=(ev.person_id // size).cast("int32"))
            everyone, parts = partitioned(ev, "_chunk", chunks, folder)
            ranges: list[tuple[int, int] | None] = [(k * size, (k + 1) * size - 1) for k in range(chunks)]
        else:
            everyone = ev.cache()  # read by every part
            parts, ranges = [everyone], [None]
        orders = _orders(everyone, d).cache()
        rfm = _rfm(orders).cache()
        population = insights.message_population(everyone).cache()
        population_counts = (
            to_arrow(population.select("channel", received="_received", responses="_responses"))
            if keep is not None
            else None
        )
        tables = []
        for part, bounds in zip(parts, ranges, strict=True):
            ids = numbered if bounds is None else numbered.filter(numbered.person_id.between(*bounds))
            tables.append(_null_lists_empty(_profiles_of(part, ids, now, traits, orders, rfm, population)))
    whole = pa.concat_tables(tables)
    if keep is not None:  # what the daily increment continues from (profiles/service/increment.py)
        keep["own"] = whole.select(["person_id", *(f"_own_{name}" for name in OWN_HOURS)])
        keep["population"] = population_counts
    return _with_best_hour(whole)


def _with_best_hour(table: pa.Table) -> pa.Table:
    """`table` with `best_hour` scored (insights.best_hour_from) over every person's sums `_own_*`, in their place."""
    sums = [f"_own_{name}" for name in OWN_HOURS]
    has = pc.is_valid(table.column(sums[0]))
    rows = pa.table(
        {
            "person_id": pa.array(np.arange(table.num_rows)),
            **{name: table.column(f"_own_{name}") for name in OWN_HOURS},
        }
    ).filter(has)
    scored = insights.best_hour_from(ibis.memtable(rows)).to_pyarrow()
    hours = np.full(table.num_rows, -1, np.int32)
    hours[scored.column("person_id").to_numpy()] = scored.column("best_hour").to_numpy(zero_copy_only=False)
    at = table.schema.get_field_index(sums[0])
    table = table.drop_columns(sums)
    return table.add_column(at, pa.field("best_hour", pa.int32()), pa.array(hours, pa.int32(), mask=hours < 0))


def _null_lists_empty(table: pa.Table) -> pa.Table:
    """`table` with every NULL in its list columns replaced by [].

    Done on the Arrow buffers rather than in SQL: a NULL list whose offsets span no values becomes []
    by dropping the validity bitmap, without copying a value (in SQL, COALESCE copied every list of
    every row: 1.8 s at 1 M profiles).
    """
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if (pa.types.is_list(field.type) or pa.types.is_large_list(field.type)) and column.null_count:
            column = pa.chunked_array([_empty_for_null(chunk) for chunk in column.chunks], field.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=table.schema)


def _empty_for_null(chunk: pa.Array) -> pa.Array:
    if not chunk.null_count:
        return chunk
    offsets = chunk.offsets  # of this slice, without a validity bitmap
    valid = chunk.is_valid()
    spans = np.diff(offsets.to_numpy())[~valid.to_numpy(zero_copy_only=False)]
    if spans.any():  # a NULL that spans values (Arrow allows it): the copying way
        return pc.if_else(valid, chunk, pa.scalar([], chunk.type))
    return type(chunk).from_arrays(offsets, chunk.values, type=chunk.type)


def write_identities(runtime: Runtime, rows: Iterable[tuple[str, str, str]]) -> str:
    """Write an `identities` dataset of (kind, value, person_id) rows (for tests and small imports)."""
    kinds, values, persons = zip(*rows, strict=True) if rows else ((), (), ())
    table = pa.table(
        [pa.array(kinds, pa.string()), pa.array(values, pa.string()), pa.array(persons, pa.string())],
        schema=IDENTITIES_SCHEMA,
    )
    return write_dataset(runtime.log, "identities", table)


EVENTS_PER_CHUNK = 4_000_000
"""At most this many events per range of persons that a DuckDB build profiles at once (`profiles_table`'s
chunks): a range's per-event table and groupings then stay within a few GB (docs/scale.md)."""
BYTES_PER_EVENT = 1_000
"""DuckDB memory a range needs per event of its persons: a smaller `memory_limit` means smaller ranges."""


def _default_chunks(runtime: Runtime, events: ir.Table) -> int:
    """Ranges of persons for a build on this runtime: one per EVENTS_PER_CHUNK events, or per what the
    memory limit holds (BYTES_PER_EVENT) when that is fewer; one on Spark, which spreads the work itself."""
    if runtime.engine.name != "duckdb":
        return 1
    per_chunk = EVENTS_PER_CHUNK
    if runtime.engine.memory_limit:
        per_chunk = max(1_000, min(per_chunk, runtime.engine.memory_limit // BYTES_PER_EVENT))
    return max(1, -(-int(events.count().execute()) // per_chunk))


@guarded("profiles")
def build_profiles(
    runtime: Runtime,
    now: datetime | None = None,
    traits: Iterable[Mapping[str, Any] | TraitSpec] | None = None,
    threads: int | None = None,
    chunks: int | None = None,
    full: bool = False,
) -> ProfilesSummary:
    """Rebuild the `profiles` dataset from `events` and `identities`, as of `now` (default: the latest event).

    `traits` are custom trait declarations (see profiles.traits); by default the `[[profiles.traits]]` of
    omniweave.toml. The same inputs and `now` give the same profiles, on DuckDB and on Spark (the Runtime's engine).
    `threads` caps DuckDB's worker threads (default: one per core); Spark has its own settings. `chunks`: the
    ranges of persons profiled one at a time (`profiles_table`; default: one per EVENTS_PER_CHUNK events on
    DuckDB, one on Spark), spilled to `<home>/spill`.

    When a saved build can be continued (profiles/service/increment.py: the default `now`, the same custom
    traits, no file rewritten since), only the persons the new events touched are profiled again, unless `full`
    or `chunks` is given.
    """
    from omniweave.profiles.service import increment

    specs = parse_trait_specs(runtime.settings.profiles.traits if traits is None else traits, reserved=BUILTIN_COLUMNS)
    if not runtime.log.has_data("identities"):
        raise InputError("no identities yet: run `omniweave resolve` before building profiles", field="identities")
    runtime.log.upgrade_events()  # files from before the log kept context_* columns get them, once
    warehouse = runtime.warehouse()
    warehouse.set_threads(threads)
    files = runtime.log.files("events")  # what `events` reads, for the increment's state
    events, identities = warehouse.table("events"), warehouse.table("identities")
    missing = [c for c in IDENTITIES_SCHEMA.names if c not in identities.columns]
    if missing:
        raise InputError(
            f"the identities dataset lacks columns {missing}; expected {IDENTITIES_SCHEMA.names}", field="identities"
        )
    default_now = now is None
    if now is None:
        latest = runtime.log.latest_event_time() or events.timestamp.max().execute()
        now = latest.to_pydatetime() if hasattr(latest, "to_pydatetime") else (latest or datetime.now(UTC))
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    now = now.astimezone(UTC)
    done = (
        None
        if full or chunks is not None or not default_now
        else increment.run(runtime, warehouse, events, identities, now, specs, files)
    )
    if done is not None:
        table, own, population, reprofiled = done
        table = increment.finish(runtime, table, now)
        chunks = 1
    else:
        if chunks is None:
            chunks = _default_chunks(runtime, events)
        spill = None
        if chunks > 1 and runtime.engine.temp_directory is not None:
            Path(runtime.engine.temp_directory).mkdir(parents=True, exist_ok=True)
            spill = runtime.engine.temp_directory
        keep: dict[str, pa.Table] = {}
        with tempfile.TemporaryDirectory(prefix="profiles-", dir=spill) as folder:
            table = profiles_table(events, identities, now, specs, chunks=chunks, spill=folder, keep=keep)
        own, population = keep["own"], keep["population"]
        table = with_clv(table, now)
        table = with_recommendations(runtime, table)
    increment.forget(runtime)  # the saved state describes the profiles being replaced
    path = write_dataset(runtime.log, "profiles", table)
    if default_now and runtime.engine.name == "duckdb":
        increment.save_state(runtime, files, specs, now, own, population)
    return ProfilesSummary(
        persons=table.num_rows,
        events=int(pc.sum(table.column("event_count")).as_py() or 0),
        buyers=int(pc.sum(pc.greater(table.column("orders"), 0)).as_py() or 0),
        now=now,
        engine=runtime.engine.name,
        path=path,
        traits=tuple(s.name for s in specs),
        chunks=chunks,
        incremental=done is not None,
        reprofiled=reprofiled if done is not None else table.num_rows,
    )
