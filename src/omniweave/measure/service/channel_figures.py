"""Figures per channel that no other report gives, for the dashboard's Channels page (shells/web/pages/channels.py).

`channel_reach`: per period and channel, how many persons the channel reached and how many engaged on it, and
the impressions and clicks the ad platforms reported (the `spend` dataset). The KPI catalogue (kpis.py) has
awareness KPIs per kind of channel (website users, store visitors, social impressions) but none that reads the
same way for every channel; this does, with the catalogue's conventions:

- a **person** is the KPI catalogue's visitor: the resolved person, else the user id, else the anonymous id
  (an importer's made-up `offline:...` id is nobody);
- the **channel** of an event is the KPI breakdown's: its `channel` column, except a `Coupon Applied`, which
  belongs to the channel that issued the coupon; the bookkeeping channel `omniweave` is no channel;
- **engaged**: the person did something on the channel themselves (measure/kpis.py `customer_activity`: a
  track, page or screen event that omniweave or a provider did not write about them — an open, a click, a
  visit, a page view, an order);
- **reached**: engaged, or the channel got to them without an answer: a delivery or an exposure written
  about them (`REACHED_EVENTS`: e-mail, SMS, WhatsApp and letter deliveries, a received push, an ad
  impression, a direct-mail letter). A send that bounced or failed reached nobody;
- **engagement rate**: engaged / reached x 100.

Media without person-level events (TV, radio, print, outdoor, door drops) reach nobody here: their reported
impressions are the platforms' (not distinct persons), and the media-mix model measures what they add.

`response_curves`: points on the saved media-mix fit's response curves (measure/service/mmm.py): revenue per
period, and its marginal return, at a steady spend from 0 to `up_to` times each channel's current spend —
the curves `omniweave mmm report` draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import ibis
import numpy as np

from omniweave.errors import InputError
from omniweave.events import spec
from omniweave.measure.kpis import customer_activity, period_start
from omniweave.measure.service.kpis import PERIODS, _period_index, _visitor_events
from omniweave.measure.service.mmm import SavedFit
from omniweave.runtime import Runtime
from omniweave.storage.engine import dialect_of
from omniweave.storage.guard import guarded

REACHED_EVENTS = (
    spec.EMAIL_DELIVERED,
    spec.MESSAGE_DELIVERED,
    "SMS Delivered",
    "WhatsApp Delivered",
    "Letter Delivered",
    spec.PUSH_NOTIFICATION_RECEIVED,
    spec.AD_IMPRESSION,
    spec.DIRECT_MAIL_SENT,
)
"""Events written about a person that show a channel got to them though they did not answer (yet)."""

REACH_COLUMNS = ("period", "channel", "reached", "engaged", "engagement_rate", "impressions", "clicks")


@dataclass(frozen=True)
class ChannelReach:
    """Rows of REACH_COLUMNS per period and channel, sorted by period and channel: `reached` and `engaged`
    persons, `engagement_rate` (%; None without anyone reached), `impressions` and `clicks` as the platforms
    reported them (None without spend rows for the channel)."""

    period: str
    rows: tuple[dict[str, Any], ...]

    def to_dict(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self.rows]


@guarded("channel reach")
def channel_reach(
    runtime: Runtime, *, period: str = "month", since: date | None = None, until: date | None = None
) -> ChannelReach:
    """Persons reached and engaged per channel and `period` (day, week, month), with the reported impressions
    and clicks; `since` / `until` keep the periods that start in that range (as the KPI catalogue does)."""
    if period not in PERIODS:
        raise InputError(f"got {period!r}; expected one of {', '.join(PERIODS)}", field="period")
    if not runtime.log.has_data("events"):
        return ChannelReach(period, ())
    warehouse = runtime.warehouse()
    identities = warehouse.table("identities") if runtime.log.has_data("identities") else None
    events = warehouse.table("events")
    d = dialect_of(events)
    ev = _visitor_events(events, identities)
    applied = ev.event == spec.COUPON_APPLIED
    ev = d.with_json_fields(ev, "properties", {"_issued": "issued_channel"}, where=applied)
    channel = ibis.cases((applied, ibis.coalesce(ev._issued.nullif(""), ev.channel)), else_=ev.channel)
    engaged = customer_activity(ev)
    ev = ev.select(
        _p=_period_index((d.epoch_seconds(ev.timestamp) // 86400).cast("int64"), period),
        channel=channel,
        visitor=ev.visitor,
        engaged=engaged,
        reached=engaged | ev.event.isin(REACHED_EVENTS).fill_null(False),
    )
    ev = ev.filter(
        ev.visitor.notnull()
        & ev.reached
        & ev.channel.notnull()
        & (ev.channel != "")
        & (ev.channel != spec.PLATFORM_CHANNEL)
    )
    per_person = ev.group_by(["_p", "channel", "visitor"]).aggregate(engaged=ev.engaged.any())
    persons = per_person.group_by(["_p", "channel"]).aggregate(
        reached=per_person.count(), engaged=per_person.engaged.cast("int64").sum()
    )
    counts: dict[tuple[int, str], dict[str, Any]] = {}
    for r in persons.to_pyarrow().to_pylist():
        counts[(int(r["_p"]), r["channel"])] = {"reached": int(r["reached"]), "engaged": int(r["engaged"])}
    if runtime.log.has_data("spend"):
        sp = warehouse.table("spend")
        sp = sp.select(
            _p=_period_index(d.epoch_day(sp.date.cast("date")), period),
            channel=sp.channel,
            impressions=sp.impressions.cast("float64"),
            clicks=sp.clicks.cast("float64"),
        )
        reported = sp.group_by(["_p", "channel"]).aggregate(impressions=sp.impressions.sum(), clicks=sp.clicks.sum())
        for r in reported.to_pyarrow().to_pylist():
            if r["channel"] is None or (r["impressions"] is None and r["clicks"] is None):
                continue
            counts.setdefault((int(r["_p"]), r["channel"]), {"reached": 0, "engaged": 0}).update(
                impressions=r["impressions"], clicks=r["clicks"]
            )
    rows = []
    for (index, name), c in sorted(counts.items()):
        start = period_start(index, period)
        if (since is not None and start < since) or (until is not None and start > until):
            continue
        rows.append(
            {
                "period": start.isoformat(),
                "channel": name,
                "reached": c["reached"],
                "engaged": c["engaged"],
                "engagement_rate": c["engaged"] * 100.0 / c["reached"] if c["reached"] else None,
                "impressions": c.get("impressions"),
                "clicks": c.get("clicks"),
            }
        )
    return ChannelReach(period, tuple(rows))


CURVE_COLUMNS = ("channel", "times_current", "spend", "revenue", "marginal_return")


def response_curves(saved: SavedFit, *, points: int = 31, up_to: float = 3.0) -> list[dict[str, Any]]:
    """Per channel of the saved fit, `points` steady spends per period evenly from 0 to `up_to` x its current
    spend (the fitted history's mean), each with the revenue per period the curve expects there and the
    marginal return (revenue of the next unit of spend); rows of CURVE_COLUMNS. `times_current` is the spend
    as a multiple of the current one, so channels of very different budgets can share an axis."""
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise InputError(f"got {points!r}; expected a whole number of points >= 2", field="points")
    if not up_to > 0:
        raise InputError(f"got {up_to!r}; expected a multiple of the current spend above 0", field="up_to")
    current = saved.current_spend()
    rows = []
    for channel, curve in saved.curves().items():
        times = np.linspace(0.0, up_to, points)
        spend = times * current.get(channel, 0.0)
        revenue = np.asarray(curve.revenue(spend), dtype=float)
        marginal = np.asarray(curve.marginal(spend), dtype=float)
        for k in range(points):
            rows.append(
                {
                    "channel": channel,
                    "times_current": float(times[k]),
                    "spend": float(spend[k]),
                    "revenue": float(revenue[k]),
                    "marginal_return": float(marginal[k]),
                }
            )
    return rows
