"""What the KPIs agree on before they count anything: whose activity is it, and is a period whole.

Pure: an Ibis predicate and period arithmetic, no I/O. `measure/service/kpis.py` composes them.

- **Customer activity** is a `track`, `page` or `screen` event a person did: not one of the events omniweave
  (or a provider on its behalf) writes about what was done *to* them (`events.spec.PLATFORM_EVENTS`: sends,
  deliveries, bounces, impressions, issued coupons, audience syncs, segment changes), and not on omniweave's
  own bookkeeping channel. An `identify` is a statement, not a visit. Every "active people" count and the
  coverage of a period use this one predicate.
- **A whole period** is one that has ended (before `today`) and each of whose days has some customer
  activity. Anything else (the current month, a month the data starts or ends inside) is *partial*.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

import ibis.expr.types as ir

from omniweave.events import spec


def customer_activity(events: ir.Table) -> ir.BooleanValue:
    """True for the events (columns `type`, `event`, `channel`) that are a customer's own activity."""
    own = events.type.isin(("track", "page", "screen"))
    platform = events.event.isin(tuple(sorted(spec.PLATFORM_EVENTS))).fill_null(False) | (
        events.channel.fill_null("") == spec.PLATFORM_CHANNEL
    )
    return own & ~platform


def period_start(index: int, period: str) -> date:
    """The first day of period number `index`: days since 1970-01-01, Monday-first weeks since the Monday
    before it, or year x 12 + month - 1."""
    epoch = date(1970, 1, 1)
    if period == "day":
        return epoch + timedelta(days=index)
    if period == "week":
        return epoch + timedelta(days=7 * index - 3)
    return date(index // 12, index % 12 + 1, 1)


def period_length(index: int, period: str) -> int:
    """How many days period number `index` has."""
    return (period_start(index + 1, period) - period_start(index, period)).days


def whole_periods(active_days: Mapping[int, int], period: str, today: date) -> frozenset[int]:
    """The periods of `active_days` ({period number: days with customer activity}) that are whole: ended
    before `today` and active on every one of their days."""
    return frozenset(
        p
        for p, days in active_days.items()
        if period_start(p + 1, period) <= today and days >= period_length(p, period)
    )
