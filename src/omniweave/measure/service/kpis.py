"""The KPI catalogue of an omnichannel business, computed from the event log, `spend` and `profiles`.

`kpi_table` builds one Ibis expression per KPI family over `events` (persons through the
`identities` dataset when there is one) and `spend`, runs them on DuckDB or Spark, and returns a
tidy Arrow table: one row per (period, KPI, dimension value). Every KPI of `CATALOGUE` says its
group (awareness, engagement, conversion, loyalty), its scope (online, in-store, both), its formula,
the events it reads and its unit; docs/kpis.md lists them and what is left out, and why.

Periods are UTC days, ISO weeks (Monday first) or calendar months, numbered as whole numbers so
that "the previous period" is the same integer arithmetic on every engine. A breakdown by channel,
store or campaign computes each KPI on the events (and spend rows) of one dimension value as if they
were the whole log.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.compute as pc

from omniweave.errors import InputError
from omniweave.events import spec
from omniweave.events.properties import order_value, yes_no
from omniweave.identity.persons import with_person
from omniweave.measure.kpis import customer_activity, period_start, whole_periods
from omniweave.runtime import Runtime
from omniweave.storage.engine import Dialect, dialect_of

PERIODS = ("day", "week", "month")
DIMENSIONS = ("channel", "store", "campaign", "placement")
"""Breakdowns: `placement` is where a sign-up form was shown or its QR code printed (forms: web, embed, kiosk,
poster, receipt, shelf, tv), from the events' `properties.placement`."""
DEFAULT_SESSION_GAP_MINUTES = 30
SOCIAL_PLATFORMS = (
    "facebook",
    "instagram",
    "tiktok",
    "snapchat",
    "pinterest",
    "linkedin",
    "twitter",
    "x",
    "youtube",
    "reddit",
)
"""A `spend` row is social when its channel is `social` or its platform is one of these."""
ONLINE_CHANNELS = ("web", "app")
"""Sessions are cut from the events of these channels."""
RESULT_SCHEMA = pa.schema(
    [
        ("period", pa.date32()),
        ("kpi", pa.string()),
        ("dimension", pa.string()),
        ("dimension_value", pa.string()),
        ("value", pa.float64()),
        ("scope", pa.string()),
        ("group", pa.string()),
        ("unit", pa.string()),
        ("partial", pa.bool_()),
    ]
)
"""What `kpi_table` returns: `period` is the first day of the period; `dimension` is "all" without a breakdown;
`partial` is true when the figure rests on a period that is not whole (measure/kpis.py): the period itself, or
for growth and retention the previous one too."""
PREVIOUS_PERIOD_KPIS = frozenset(
    {"revenue_growth_online", "revenue_growth_in_store", "revenue_growth", "retention_rate"}
)
"""KPIs that compare a period with the one before it."""


@dataclass(frozen=True)
class Kpi:
    """One entry of the catalogue."""

    name: str
    group: str
    scope: str
    unit: str
    formula: str
    events: str


CATALOGUE: tuple[Kpi, ...] = (
    # --- awareness
    Kpi("page_views", "awareness", "online", "count", "number of page and screen views", "page, screen"),
    Kpi(
        "website_users",
        "awareness",
        "online",
        "persons",
        "distinct persons (else user or anonymous ids) with a page or screen view",
        "page, screen",
    ),
    Kpi(
        "social_impressions",
        "awareness",
        "online",
        "count",
        "sum of spend.impressions on social rows (channel social or a social platform), as the platforms report them",
        "spend",
    ),
    Kpi(
        "social_impressions_tracked",
        "awareness",
        "online",
        "count",
        "Ad Impression events on channel social (impressions the platforms sent as events, on known browsers)",
        spec.AD_IMPRESSION,
    ),
    Kpi(
        "video_views",
        "awareness",
        "online",
        "count",
        "Video Playback Started events (Segment's Video spec: a viewer pressed play)",
        spec.VIDEO_PLAYBACK_STARTED,
    ),
    Kpi(
        "store_visits",
        "awareness",
        "in-store",
        "count",
        "Store Visited events other than Wi-Fi logins (properties.visit_type != 'wifi': a login is a second "
        "sighting of a visit the footfall counter already counted)",
        spec.STORE_VISITED,
    ),
    Kpi(
        "store_visitors",
        "awareness",
        "in-store",
        "persons",
        "distinct known persons with a Store Visited event",
        spec.STORE_VISITED,
    ),
    # --- engagement
    Kpi(
        "sessions",
        "engagement",
        "online",
        "count",
        "a person's web or app events (per channel) cut where more than the session gap (30 min) passes",
        "every event on channel web or app",
    ),
    Kpi(
        "pages_per_session",
        "engagement",
        "online",
        "pages",
        "page and screen views in sessions / sessions",
        "every event on channel web or app",
    ),
    Kpi(
        "average_session_duration",
        "engagement",
        "online",
        "seconds",
        "mean of (last event - first event) over sessions (a one-event session lasts 0 s)",
        "every event on channel web or app",
    ),
    Kpi(
        "average_store_dwell_time",
        "engagement",
        "in-store",
        "minutes",
        "mean properties.dwell_minutes of the visits counted by store_visits",
        spec.STORE_VISITED,
    ),
    Kpi(
        "social_interactions",
        "engagement",
        "online",
        "count",
        "Ad Clicked events on channel social + Product Shared events",
        f"{spec.AD_CLICKED}, {spec.PRODUCT_SHARED}",
    ),
    Kpi("social_clicks", "engagement", "online", "count", "sum of spend.clicks on social rows", "spend"),
    Kpi(
        "email_signups",
        "engagement",
        "both",
        "persons",
        "persons whose first statement of traits.email_opt_in = true falls in the period (by channel, store, "
        "campaign or placement: that of the first statement, so the breakdown sums to the total; a sign-up form's "
        "Sign-up Confirmed is on channel web or store and carries its placement)",
        "identify (and any event with traits)",
    ),
    Kpi(
        "coupon_redemption_rate",
        "engagement",
        "both",
        "%",
        "Coupon Applied / Coupon Issued x 100 (by channel: the channel that issued the coupon)",
        f"{spec.COUPON_APPLIED}, {spec.COUPON_ISSUED}",
    ),
    Kpi(
        "gift_card_redemption_rate",
        "engagement",
        "both",
        "%",
        "gift cards redeemed / gift cards sold x 100: distinct properties.gift_card_id of Gift Card Redeemed (a "
        "card spent over several visits counts once; a redemption without an id counts as a card) / Gift Card "
        "Purchased events",
        f"{spec.GIFT_CARD_REDEEMED}, {spec.GIFT_CARD_PURCHASED}",
    ),
    # --- conversion
    Kpi(
        "revenue_online",
        "conversion",
        "online",
        "currency",
        "sum of Order Completed revenue (else total) off channel store",
        spec.ORDER_COMPLETED,
    ),
    Kpi(
        "revenue_in_store",
        "conversion",
        "in-store",
        "currency",
        "sum of Order Completed revenue on channel store",
        spec.ORDER_COMPLETED,
    ),
    Kpi(
        "revenue_total",
        "conversion",
        "both",
        "currency",
        "sum of Order Completed revenue (else total)",
        spec.ORDER_COMPLETED,
    ),
    Kpi(
        "revenue_growth_online",
        "conversion",
        "online",
        "%",
        "(revenue_online - revenue_online of the previous period) / that x 100; per day of data when either "
        "period is partial",
        spec.ORDER_COMPLETED,
    ),
    Kpi(
        "revenue_growth_in_store",
        "conversion",
        "in-store",
        "%",
        "(revenue_in_store - revenue_in_store of the previous period) / that x 100; per day of data when "
        "either period is partial",
        spec.ORDER_COMPLETED,
    ),
    Kpi(
        "revenue_growth",
        "conversion",
        "both",
        "%",
        "(revenue_total - revenue_total of the previous period) / that x 100; per day of data when either "
        "period is partial",
        spec.ORDER_COMPLETED,
    ),
    Kpi(
        "sales_per_square_foot",
        "conversion",
        "in-store",
        "currency/sq ft",
        "in-store revenue of the stores with a floor area / their floor area (the stores dataset)",
        spec.ORDER_COMPLETED,
    ),
    Kpi(
        "conversion_rate",
        "conversion",
        "both",
        "%",
        "persons with an order / persons active (any customer activity: a track, page or screen event that "
        "omniweave did not write about them) x 100",
        "every track, page and screen event",
    ),
    Kpi(
        "new_customers",
        "conversion",
        "both",
        "persons",
        "persons whose first order in the log falls in the period",
        spec.ORDER_COMPLETED,
    ),
    Kpi("marketing_spend", "conversion", "both", "currency", "sum of spend.spend", "spend"),
    Kpi(
        "customer_acquisition_cost",
        "conversion",
        "both",
        "currency",
        "marketing_spend / new_customers (no breakdown)",
        f"spend, {spec.ORDER_COMPLETED}",
    ),
    Kpi(
        "cost_of_sales",
        "conversion",
        "both",
        "currency",
        "sum of quantity x unit cost over the lines of orders whose every product has a cost (the products dataset)",
        spec.ORDER_COMPLETED,
    ),
    Kpi(
        "gross_margin",
        "conversion",
        "both",
        "%",
        "(revenue - cost_of_sales) / revenue x 100, over the same orders",
        spec.ORDER_COMPLETED,
    ),
    # --- loyalty
    Kpi(
        "customer_lifetime_value",
        "loyalty",
        "both",
        "currency",
        "mean clv_12m of the profiles table (as of its build; shown on the latest period, no breakdown)",
        "profiles",
    ),
    Kpi(
        "retention_rate",
        "loyalty",
        "both",
        "%",
        "customers of the previous period who bought again in this one / customers of the previous period x 100 "
        "(only for a whole period)",
        spec.ORDER_COMPLETED,
    ),
    Kpi(
        "repeat_purchase_rate",
        "loyalty",
        "both",
        "%",
        "customers with orders on 2 or more days / customers x 100 (only for a whole period)",
        spec.ORDER_COMPLETED,
    ),
    Kpi(
        "net_promoter_score",
        "loyalty",
        "both",
        "points",
        "% of answers with properties.score 9-10 - % with 0-6, over answers scored 0-10",
        spec.SURVEY_ANSWERED,
    ),
)
KPIS: dict[str, Kpi] = {k.name: k for k in CATALOGUE}

OMITTED: dict[str, str] = {}
"""KPIs of the domain articles that the data cannot give, and why (docs/kpis.md)."""


def _period_index(day: ir.IntegerValue, period: str) -> ir.IntegerValue:
    """The period's number from a day number (days since 1970-01-01): the day itself, the Monday-first
    week, or year x 12 + month - 1 (Howard Hinnant's civil_from_days, integer arithmetic only)."""
    if period == "day":
        return day
    if period == "week":
        return (day + 3) // 7  # 1970-01-01 was a Thursday
    z = day + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = ibis.cases((mp < 10, mp + 3), else_=mp - 9)
    year = yoe + era * 400 + ibis.cases((month <= 2, 1), else_=0)
    return (year * 12 + month - 1).cast("int64")


# --- inputs ----------------------------------------------------------------------------------------


def _check(period: str, by: str | None, kpis: Iterable[str] | None, session_gap_minutes: float) -> list[str]:
    if period not in PERIODS:
        raise InputError(f"got {period!r}; expected one of {', '.join(PERIODS)}", field="period")
    if by is not None and by not in DIMENSIONS:
        raise InputError(f"got {by!r}; expected one of {', '.join(DIMENSIONS)} (or none for totals)", field="by")
    if not session_gap_minutes > 0:
        raise InputError(f"got {session_gap_minutes!r}; expected a number of minutes > 0", field="session_gap_minutes")
    wanted = list(KPIS) if kpis is None else list(kpis)
    unknown = [k for k in wanted if k not in KPIS]
    if unknown:
        omitted = [k for k in unknown if k in OMITTED]
        why = "".join(f"; {k} is not computed: {OMITTED[k]}" for k in omitted)
        raise InputError(
            f"unknown KPI(s) {', '.join(map(repr, unknown))}; expected any of {', '.join(KPIS)}{why}", field="kpis"
        )
    return wanted


def _positive_map(values: Mapping[str, float] | None, field: str) -> dict[str, float]:
    out = {}
    for key, value in (values or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        floor = 0.0 if field == "product_costs" else None  # a free product costs 0; a store has an area
        if not (number >= floor if floor is not None else number > 0):
            raise InputError(
                f"got {value!r} for {key!r}; expected a number {'>= 0' if floor is not None else '> 0'}",
                field=field,
                record=key,
            )
        out[str(key)] = number
    return out


def floor_areas_from_csv(path: str | Path) -> dict[str, float]:
    """{store_id: floor area in square feet} from a CSV with columns `store_id` and `floor_area_sqft`
    (the demo's stores.csv has them)."""
    return _csv_map(path, "store_id", "floor_area_sqft")


def product_costs_from_csv(path: str | Path) -> dict[str, float]:
    """{product id: unit cost} from a CSV with columns `sku` (or `product_id`) and `cost` (the demo's products.csv)."""
    with open(path, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh), [])
    return _csv_map(path, "product_id" if "product_id" in header else "sku", "cost")


def _csv_map(path: str | Path, key: str, value: str) -> dict[str, float]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in (key, value) if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: lacks column(s) {missing}; expected {key!r} and {value!r}", field=missing[0])
        out = {}
        for i, row in enumerate(reader, start=2):
            try:
                out[row[key]] = float(row[value])
            except ValueError:
                raise InputError(f"{path}: got {row[value]!r}; expected a number", field=value, record=i) from None
    return out


# --- the base tables -------------------------------------------------------------------------------


def _visitor_events(events: ir.Table, identities: ir.Table | None) -> ir.Table:
    """`events` with `visitor`: the person (through `identities`), else the user id, else the anonymous id of
    an online event. An importer's made-up anonymous id (`offline:...`, a receipt or a visit nobody is known by)
    is nobody."""
    if identities is None:
        ev = events.mutate(person_id=ibis.null("string"))
    else:
        ev = with_person(events, identities, keep_unknown=True)
    anon = ibis.cases((ev.anonymous_id.startswith("offline:"), ibis.null("string")), else_=ev.anonymous_id)
    return ev.mutate(visitor=ibis.coalesce(ev.person_id, ev.user_id, anon)).drop("person_id")


def _base(
    events: ir.Table, identities: ir.Table | None, period: str, by: str | None, d: Dialect, *, products: bool = True
) -> ir.Table:
    """One row per event with what every KPI reads: period number, dimension value (null: the event is in no
    breakdown value), visitor, whether it is customer activity, parsed properties. The orders' `products` only
    with `products` (cost of sales reads them): the table is kept in memory, 30 M rows at a million persons."""
    ev = _visitor_events(events, identities)
    needed = ev.event.isin(
        (
            spec.ORDER_COMPLETED,
            spec.STORE_VISITED,
            spec.COUPON_APPLIED,
            spec.COUPON_ISSUED,
            spec.SURVEY_ANSWERED,
            spec.GIFT_CARD_REDEEMED,
        )
    )
    ev = d.with_json_fields(
        ev,
        "properties",
        {
            "_revenue": "revenue",
            "_total": "total",
            **({"_products": "products"} if products else {}),
            "_store": "store_id",
            "_campaign_prop": "campaign_name",
            "_campaign_alt": "campaign",
            "_issued": "issued_channel",
            "_dwell": "dwell_minutes",
            "_visit_type": "visit_type",
            "_score": "score",
            "_gift_card": "gift_card_id",
            "_placement": "placement",
        },
        where=None if by in ("store", "campaign", "placement") else needed,
    )
    stated = ev.traits.notnull() & (ev.traits != "{}")
    ev = d.with_json_fields(ev, "traits", {"_email_opt_in": "email_opt_in"}, where=stated)
    day = (d.epoch_seconds(ev.timestamp) // 86400).cast("int64")
    is_order = ev.event == spec.ORDER_COMPLETED
    dims: dict[str | None, ir.Value] = {
        None: ibis.literal("all"),
        "channel": ibis.cases(
            (ev.event == spec.COUPON_APPLIED, ibis.coalesce(ev._issued, ev.channel)), else_=ev.channel
        ),
        "store": ev._store.nullif(""),
        "campaign": ibis.coalesce(
            ev.campaign_name.nullif(""), ev._campaign_prop.nullif(""), ev._campaign_alt.nullif("")
        ),
        "placement": ev._placement.nullif(""),
    }
    base = ev.select(
        "message_id",
        "type",
        "event",
        "channel",
        "visitor",
        "timestamp",
        _day=day,
        _p=_period_index(day, period),
        active=customer_activity(ev),
        _dim=dims[by],
        is_order=is_order,
        in_store=ev.channel == "store",
        revenue=ibis.cases((is_order, order_value(ev._revenue, ev._total)), else_=ibis.null("float64")),
        **({"products": ibis.cases((is_order, ev._products), else_=ibis.null("string"))} if products else {}),
        store_id=ev._store.nullif(""),
        dwell=ev._dwell.cast("float64"),
        wifi=ev._visit_type.fill_null("") == "wifi",
        score=ibis.cases((ev.event == spec.SURVEY_ANSWERED, ev._score.cast("float64")), else_=ibis.null("float64")),
        email_opt_in=yes_no(ev._email_opt_in),
        gift_card=ibis.cases(
            (ev.event == spec.GIFT_CARD_REDEEMED, ev._gift_card.nullif("")), else_=ibis.null("string")
        ),
    )
    return base


def _spend(spend: ir.Table, period: str, by: str | None, d: Dialect) -> ir.Table:
    dims: dict[str | None, ir.Value] = {
        None: ibis.literal("all"),
        "channel": spend.channel,
        "store": ibis.null("string"),
        "campaign": spend.campaign.nullif(""),
        "placement": ibis.null("string"),
    }
    day = d.epoch_day(spend.date.cast("date"))
    social = (spend.channel == "social") | spend.platform.lower().isin(SOCIAL_PLATFORMS)
    out = spend.select(
        _p=_period_index(day, period),
        _dim=dims[by],
        social=social.fill_null(False),
        spend=spend.spend.cast("float64"),
        impressions=spend.impressions.cast("float64"),
        clicks=spend.clicks.cast("float64"),
    )
    return out.filter(out._dim.notnull())


# --- the KPI families --------------------------------------------------------------------------------


def _long(table: ir.Table, **values: ir.Value) -> list[ir.Table]:
    """One (_p, _dim, kpi, value) table per named value of the rows of `table`."""
    return [
        table.select("_p", "_dim", kpi=ibis.literal(name), value=value.cast("float64"))
        for name, value in values.items()
    ]


def _pct(part: ir.NumericValue, whole: ir.NumericValue) -> ir.FloatingValue:
    return ibis.cases((whole > 0, part.cast("float64") * 100.0 / whole.cast("float64")), else_=ibis.null("float64"))


def _ratio(part: ir.NumericValue, whole: ir.NumericValue) -> ir.FloatingValue:
    return ibis.cases((whole > 0, part.cast("float64") / whole.cast("float64")), else_=ibis.null("float64"))


def _distinct_visitors(ev: ir.Table, **flags: ir.BooleanValue) -> ir.Table:
    """(_p, _dim, one count per flag): the distinct visitors with an event of each flag, as `visitor.nunique(where=
    flag)` counts them, in two steps: the visitors of each (_p, _dim) first, then their flags added up. On DuckDB a
    distinct count over a million visitors in each of a dozen groups runs on one thread per group and took most of
    the KPIs' time at 1M persons; (_p, _dim) pairs without such a visitor have no row."""
    wanted = ev.filter(ev.visitor.notnull() & ibis.or_(*flags.values()))
    per_visitor = wanted.group_by(["_p", "_dim", "visitor"]).aggregate(
        **{name: flag.any() for name, flag in flags.items()}
    )
    return per_visitor.group_by(["_p", "_dim"]).aggregate(
        **{name: per_visitor[name].cast("int64").sum() for name in flags}
    )


def _awareness_engagement(ev: ir.Table, everything: ir.Table, sp: ir.Table) -> list[ir.Table]:
    viewed = ev.type.isin(("page", "screen"))
    visit = (ev.event == spec.STORE_VISITED) & ~ev.wifi
    counted = ev.group_by(["_p", "_dim"]).aggregate(
        page_views=viewed.cast("int64").sum(),
        social_impressions_tracked=((ev.event == spec.AD_IMPRESSION) & (ev.channel == "social")).cast("int64").sum(),
        store_visits=visit.cast("int64").sum(),
        _visits_with_dwell=ev.dwell.count(where=visit),
        average_store_dwell_time=ev.dwell.mean(where=visit),
        social_interactions=(
            ((ev.event == spec.AD_CLICKED) & (ev.channel == "social")) | (ev.event == spec.PRODUCT_SHARED)
        )
        .cast("int64")
        .sum(),
        _issued=(ev.event == spec.COUPON_ISSUED).cast("int64").sum(),
        _applied=(ev.event == spec.COUPON_APPLIED).cast("int64").sum(),
        video_views=(ev.event == spec.VIDEO_PLAYBACK_STARTED).cast("int64").sum(),
        _cards_sold=(ev.event == spec.GIFT_CARD_PURCHASED).cast("int64").sum(),
        # a card spent over several visits counts once; a redemption without an id is a card of its own
        _cards_redeemed=ev.gift_card.nunique()
        + ((ev.event == spec.GIFT_CARD_REDEEMED) & ev.gift_card.isnull()).cast("int64").sum(),
    )
    # a count of zero has no row: a breakdown would otherwise list every KPI for every channel or store
    parts = _long(
        counted,
        page_views=counted.page_views.nullif(0),
        social_impressions_tracked=counted.social_impressions_tracked.nullif(0),
        store_visits=counted.store_visits.nullif(0),
        average_store_dwell_time=ibis.cases(
            (counted._visits_with_dwell > 0, counted.average_store_dwell_time), else_=ibis.null("float64")
        ),
        social_interactions=counted.social_interactions.nullif(0),
        coupon_redemption_rate=_pct(counted._applied, counted._issued),
        video_views=counted.video_views.nullif(0),
        gift_card_redemption_rate=_pct(counted._cards_redeemed, counted._cards_sold),
    )
    visitors = _distinct_visitors(ev, website_users=viewed, store_visitors=ev.event == spec.STORE_VISITED)
    parts += _long(
        visitors,
        website_users=visitors.website_users.nullif(0),
        store_visitors=visitors.store_visitors.nullif(0),
    )
    social = (
        sp.filter(sp.social)
        .group_by(["_p", "_dim"])
        .aggregate(social_impressions=sp.impressions.sum(), social_clicks=sp.clicks.sum())
    )
    parts += _long(social, social_impressions=social.social_impressions, social_clicks=social.social_clicks)
    # a person's first statement over the whole log (not within one channel or store), counted where it was made
    said = everything.filter(everything.email_opt_in.fill_null(False) & everything.visitor.notnull())
    said = said.mutate(_rn=ibis.row_number().over(group_by="visitor", order_by=[said.timestamp, said.message_id]))
    first = said.filter((said._rn == 0) & said._dim.notnull())
    signups = first.group_by(["_p", "_dim"]).aggregate(n=first.count())
    parts += _long(signups, email_signups=signups.n)
    return parts


def _sessions(ev: ir.Table, gap_seconds: float, d: Dialect) -> list[ir.Table]:
    online = ev.filter(ev.channel.isin(ONLINE_CHANNELS) & ev.visitor.notnull())
    online = online.mutate(_s=d.epoch_micros(online.timestamp))  # microseconds: a duration keeps its fraction
    keys = ["visitor", "channel"]
    order = [online.timestamp, online.message_id]
    previous = online._s.lag().over(group_by=keys, order_by=order)
    online = online.mutate(
        _new=ibis.cases((previous.isnull() | (online._s - previous > gap_seconds * 1e6), 1), else_=0)
    )
    online = online.mutate(_session=online._new.sum().over(ibis.cumulative_window(group_by=keys, order_by=order)))
    sessions = online.group_by([*keys, "_session"]).aggregate(
        start=online._s.min(),
        end=online._s.max(),
        pages=online.type.isin(("page", "screen")).cast("int64").sum(),
        _p=online._p.argmin(online._s),
        _dim=online._dim.argmin(online._s),
    )
    per = sessions.group_by(["_p", "_dim"]).aggregate(
        n=sessions.count(),
        pages=sessions.pages.sum(),
        seconds=(sessions.end - sessions.start).cast("float64").mean() / 1e6,
    )
    return _long(per, sessions=per.n, pages_per_session=_ratio(per.pages, per.n), average_session_duration=per.seconds)


def _previous(table: ir.Table, periods: ir.Table) -> ir.Table:
    """`table` (_p, _dim, ...) moved to the next period, up to the last period the log has."""
    moved = table.mutate(_p=table._p + 1)
    return moved.filter(moved._p <= periods._p.max().as_scalar())


def _conversion(
    ev: ir.Table,
    sp: ir.Table,
    periods: ir.Table,
    coverage: ir.Table,
    by: str | None,
    floor_areas: dict[str, float] | None,
) -> list[ir.Table]:
    orders = ev.filter(ev.is_order)
    revenue = orders.group_by(["_p", "_dim"]).aggregate(
        revenue_online=orders.revenue.sum(where=~orders.in_store),
        revenue_in_store=orders.revenue.sum(where=orders.in_store),
        revenue_total=orders.revenue.sum(),
    )
    parts = _long(
        revenue,
        revenue_online=revenue.revenue_online.round(2),
        revenue_in_store=revenue.revenue_in_store.round(2),
        revenue_total=revenue.revenue_total.round(2),
    )
    before = _previous(revenue, periods).rename(
        _prev_online="revenue_online", _prev_store="revenue_in_store", _prev_total="revenue_total"
    )
    joined = before.left_join(revenue, ["_p", "_dim"])
    now = coverage.select(_p_now="_p", _whole_now="_whole", _days_now="_days")
    then = coverage.select(_p_then="_p", _whole_then="_whole", _days_then="_days")
    joined = joined.left_join(now, joined._p == now._p_now).select(~ibis.selectors.matches("^_p_now$"))
    joined = joined.mutate(_p_before=joined._p - 1)
    joined = joined.left_join(then, joined._p_before == then._p_then)
    both_whole = joined._whole_now.fill_null(False) & joined._whole_then.fill_null(False)

    def growth_of(current: ir.NumericValue, previous: ir.NumericValue) -> ir.FloatingValue:
        # two whole periods compare as they are; otherwise revenue per day of data (a partial period is not
        # compared as if it were whole), and not at all when a period has no day of data
        per_day_now = current.fill_null(0.0) / joined._days_now.cast("float64")
        per_day_then = previous / joined._days_then.cast("float64")
        return ibis.cases(
            (both_whole, _pct(current.fill_null(0.0) - previous, previous)),
            (
                (joined._days_now.fill_null(0) > 0) & (joined._days_then.fill_null(0) > 0),
                _pct(per_day_now - per_day_then, per_day_then),
            ),
            else_=ibis.null("float64"),
        )

    growth = joined.select(
        "_p",
        "_dim",
        revenue_growth_online=growth_of(joined.revenue_online, joined._prev_online),
        revenue_growth_in_store=growth_of(joined.revenue_in_store, joined._prev_store),
        revenue_growth=growth_of(joined.revenue_total, joined._prev_total),
    )
    parts += _long(
        growth,
        revenue_growth_online=growth.revenue_growth_online,
        revenue_growth_in_store=growth.revenue_growth_in_store,
        revenue_growth=growth.revenue_growth,
    )

    conv = _distinct_visitors(ev, _active=ev.active, _buyers=ev.is_order)
    parts += _long(conv, conversion_rate=_pct(conv._buyers, conv._active))

    buyers = orders.filter(orders.visitor.notnull())
    ranked = buyers.mutate(
        _rn=ibis.row_number().over(group_by="visitor", order_by=[buyers.timestamp, buyers.message_id])
    )
    first = ranked.filter(ranked._rn == 0)
    new = first.group_by(["_p", "_dim"]).aggregate(new_customers=first.count())
    parts += _long(new, new_customers=new.new_customers)
    paid = sp.group_by(["_p", "_dim"]).aggregate(marketing_spend=sp.spend.sum())
    parts += _long(paid, marketing_spend=paid.marketing_spend.round(2))
    if by is None:
        cac = paid.left_join(new, ["_p", "_dim"])
        parts += _long(cac, customer_acquisition_cost=_ratio(cac.marketing_spend, cac.new_customers.fill_null(0)))

    if floor_areas and by in (None, "store"):
        areas = ibis.memtable(pa.table({"_area_store": list(floor_areas), "_area": list(floor_areas.values())}))
        sold = orders.filter(orders.in_store & orders.store_id.notnull())
        sold = sold.join(areas, sold.store_id == areas._area_store)
        if by is None:
            per = sold.group_by(["_p", "_dim"]).aggregate(rev=sold.revenue.sum())
            per = per.mutate(area=ibis.literal(sum(floor_areas.values())))
        else:
            per = sold.group_by(["_p", "_dim"]).aggregate(rev=sold.revenue.sum(), area=sold._area.max())
        parts += _long(per, sales_per_square_foot=_ratio(per.rev, per.area))
    return parts


def _margin(ev: ir.Table, costs: dict[str, float], d: Dialect) -> list[ir.Table]:
    orders = ev.filter(ev.is_order)
    lines = orders.select("message_id", "_p", "_dim", item=d.products(orders.products).unnest())
    lines = lines.select(
        "message_id", "_p", "_dim", product_id=lines.item.product_id, units=lines.item.quantity.fill_null(1.0)
    )
    table = ibis.memtable(pa.table({"_cost_product": list(costs), "_cost": list(costs.values())}))
    lines = lines.left_join(table, lines.product_id == table._cost_product)
    per_order = lines.group_by(["message_id", "_p", "_dim"]).aggregate(
        cost=(lines.units * lines._cost).sum(), _unknown=lines._cost.isnull().cast("int64").sum()
    )
    costed = per_order.filter(per_order._unknown == 0).join(orders.select("message_id", "revenue"), "message_id")
    per = costed.group_by(["_p", "_dim"]).aggregate(cost=costed.cost.sum(), rev=costed.revenue.sum())
    return _long(per, cost_of_sales=per.cost.round(2), gross_margin=_pct(per.rev - per.cost, per.rev))


def _loyalty(ev: ir.Table, periods: ir.Table, coverage: ir.Table) -> list[ir.Table]:
    whole = coverage.filter(coverage._whole).select(_p_whole="_p")
    orders = ev.filter(ev.is_order & ev.visitor.notnull())
    customers = orders.group_by(["_p", "_dim", "visitor"]).aggregate(days=orders._day.nunique())
    # a repeat within a period, and a return in it, need the whole period: a partial one has had less time
    in_whole = customers.semi_join(whole, customers._p == whole._p_whole)
    per = in_whole.group_by(["_p", "_dim"]).aggregate(
        n=in_whole.count(), repeat=(in_whole.days >= 2).cast("int64").sum()
    )
    parts = _long(per, repeat_purchase_rate=_pct(per.repeat, per.n))
    earlier = _previous(customers.select("_p", "_dim", "visitor"), periods)
    earlier = earlier.semi_join(whole, earlier._p == whole._p_whole)
    again = earlier.left_join(customers, ["_p", "_dim", "visitor"])
    retained = again.group_by([again._p, again._dim]).aggregate(
        base=again.count(), kept=again.days.notnull().cast("int64").sum()
    )
    parts += _long(retained, retention_rate=_pct(retained.kept, retained.base))
    answers = ev.filter(ev.score.notnull() & (ev.score >= 0) & (ev.score <= 10))
    nps = answers.group_by(["_p", "_dim"]).aggregate(
        n=answers.count(),
        promoters=(answers.score >= 9).cast("int64").sum(),
        detractors=(answers.score <= 6).cast("int64").sum(),
    )
    parts += _long(nps, net_promoter_score=_pct(nps.promoters - nps.detractors, nps.n))
    return parts


@dataclass(frozen=True)
class KpiExpr:
    """The KPIs as one Ibis expression (_p, _dim, kpi, value) and the periods that are whole."""

    expr: ir.Table
    whole: frozenset[int]


def kpis_expr(
    events: ir.Table,
    spend: ir.Table,
    identities: ir.Table | None,
    *,
    period: str = "month",
    by: str | None = None,
    session_gap_minutes: float = DEFAULT_SESSION_GAP_MINUTES,
    floor_areas: Mapping[str, float] | None = None,
    product_costs: Mapping[str, float] | None = None,
    today: date | None = None,
) -> KpiExpr:
    """(_p, _dim, kpi, value) for every KPI the log gives, as one Ibis expression (no CLV: see `kpi_table`), on the
    engine of `events`, and the whole periods (measure/kpis.py; `today` defaults to the UTC date). Finding the
    whole periods runs one small query."""
    _check(period, by, None, session_gap_minutes)
    d = dialect_of(events)
    everything = _base(events, identities, period, by, d, products=bool(product_costs)).cache()
    ev = everything.filter(everything._dim.notnull())
    active = everything.filter(everything.active)
    days = active.group_by("_p").aggregate(_days=active._day.nunique()).to_pyarrow().to_pylist()
    active_days = {int(r["_p"]): int(r["_days"]) for r in days}
    whole = whole_periods(active_days, period, today or datetime.now(UTC).date())
    coverage = ibis.memtable(
        pa.table(
            {
                "_p": pa.array(list(active_days), pa.int64()),
                "_days": pa.array(list(active_days.values()), pa.int64()),
                "_whole": pa.array([p in whole for p in active_days], pa.bool_()),
            }
        )
    )
    sp = _spend(spend, period, by, d)
    periods = ev.select("_p").union(sp.select("_p")).distinct()
    parts = [
        *_awareness_engagement(ev, everything, sp),
        *_sessions(ev, session_gap_minutes * 60.0, d),
        *_conversion(ev, sp, periods, coverage, by, _positive_map(floor_areas, "floor_areas")),
        *_loyalty(ev, periods, coverage),
    ]
    if product_costs:
        parts += _margin(ev, _positive_map(product_costs, "product_costs"), d)
    result = ibis.union(*parts)
    return KpiExpr(result.filter(result.value.notnull()), whole)


STORES_DATASET = "stores"
"""The warehouse dataset of the `stores` importer: store_id, floor_area_sqft (sales per square foot)."""
PRODUCTS_DATASET = "products"
"""The warehouse dataset of the `products` importer: sku, cost (cost of sales, gross margin)."""


def _reference(runtime: Runtime, dataset: str, key: str, value: str) -> dict[str, float] | None:
    """{key: value} from a reference dataset the importers loaded, or None when there is none."""
    if not runtime.log.has_data(dataset):
        return None
    table = runtime.warehouse().table(dataset)
    if key not in table.columns or value not in table.columns:
        return None
    rows = table.select(k=table[key].cast("string"), v=table[value].cast("float64")).to_pyarrow().to_pylist()
    return {r["k"]: r["v"] for r in rows if r["k"] is not None and r["v"] is not None}


def kpi_table(
    runtime: Runtime,
    *,
    period: str = "month",
    by: str | None = None,
    kpis: Iterable[str] | None = None,
    since: date | None = None,
    until: date | None = None,
    session_gap_minutes: float = DEFAULT_SESSION_GAP_MINUTES,
    floor_areas: Mapping[str, float] | None = None,
    product_costs: Mapping[str, float] | None = None,
    today: date | None = None,
) -> pa.Table:
    """The KPI catalogue per `period` (day, week, month), optionally `by` channel, store or campaign, as a tidy
    table of RESULT_SCHEMA sorted by period, KPI and dimension value.

    `kpis` picks KPIs by name (default: all); `since` / `until` keep the periods that start in that range
    (every KPI is still computed over the whole log, so that "first order" and "previous period" see it all).
    Floor areas ({store_id: sq ft}, sales per square foot) and product costs ({product id: unit cost}, cost of
    sales and gross margin) come from the `stores` and `products` datasets the importers load, unless given as
    `floor_areas` / `product_costs`. A ratio with nothing to divide by, or a count of 0, has no row. `partial`
    marks a row that rests on a period that is not whole (`today`, default the UTC date, ends the last one).
    """
    wanted = _check(period, by, kpis, session_gap_minutes)
    warehouse = runtime.warehouse()
    identities = warehouse.table("identities") if runtime.log.has_data("identities") else None
    if floor_areas is None:
        floor_areas = _reference(runtime, STORES_DATASET, "store_id", "floor_area_sqft")
    if product_costs is None:
        product_costs = _reference(runtime, PRODUCTS_DATASET, "sku", "cost")
    built = kpis_expr(
        warehouse.table("events"),
        warehouse.table("spend"),
        identities,
        period=period,
        by=by,
        session_gap_minutes=session_gap_minutes,
        floor_areas=floor_areas,
        product_costs=product_costs,
        today=today,
    )
    expr = built.expr.filter(built.expr.kpi.isin(wanted))
    rows = expr.to_pyarrow().to_pylist()
    if "customer_lifetime_value" in wanted and by is None and rows and runtime.log.has_data("profiles"):
        profiles = warehouse.table("profiles")
        if "clv_12m" in profiles.columns:
            clv = profiles.clv_12m.mean().execute()
            if clv is not None and not math.isnan(clv):
                rows.append(
                    {
                        "_p": max(r["_p"] for r in rows),
                        "_dim": "all",
                        "kpi": "customer_lifetime_value",
                        "value": float(clv),
                    }
                )
    out = []
    for r in rows:
        index = int(r["_p"])
        start = period_start(index, period)
        if (since is not None and start < since) or (until is not None and start > until):
            continue
        k = KPIS[r["kpi"]]
        value = float(r["value"])
        partial = index not in built.whole or (k.name in PREVIOUS_PERIOD_KPIS and index - 1 not in built.whole)
        out.append((start, k.name, by or "all", r["_dim"], value, k.scope, k.group, k.unit, partial))
    order = {name: i for i, name in enumerate(KPIS)}
    out.sort(key=lambda row: (row[0], order[row[1]], row[3]))
    columns = list(zip(*out, strict=True)) if out else [() for _ in RESULT_SCHEMA]
    table = pa.table(
        [pa.array(col, f.type) for col, f in zip(columns, RESULT_SCHEMA, strict=True)], schema=RESULT_SCHEMA
    )
    return table.filter(pc.is_valid(table.column("value")))
