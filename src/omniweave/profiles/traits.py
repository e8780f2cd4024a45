"""Custom traits: declarative aggregates over a person's events, validated here, compiled by the service.

A custom trait is declared in `omniweave.toml` (or passed as a list of dicts) as

    [[profiles.traits]]
    name = "store_orders_90d"      # the profile column it becomes
    agg = "count"                  # count, sum, avg, min, max, first, last, distinct
    event = "Order Completed"      # optional: one event name or a list of them
    channel = ["store"]            # optional: one channel or a list of them
    where = { currency = "GBP" }   # optional: properties that must have these values
    window_days = 90               # optional: only events of the last N days before `now`
    property = "revenue"           # the value aggregated: a key of `properties` (dots for nesting) ...
    column = "channel"             # ... or a column of the events table (exactly one of the two,
                                   #     except for `count`, which needs neither)

`parse_trait_specs` turns such dicts into `TraitSpec`s and rejects a bad one with an InputError
that names the trait and the field. The declaration itself is defined in `omniweave.settings`, which
parses `[[profiles.traits]]` once at start-up (every problem of the file reported at once) and sits
below every stage; this module is the profiles stage's name for it.
"""

from __future__ import annotations

from omniweave.settings import (
    AGGREGATES,
    EVENT_COLUMNS,
    NUMERIC_AGGREGATES,
    TRAIT_FIELDS,
    TraitSpec,
    parse_trait_specs,
    trait_problems,
)

__all__ = [
    "AGGREGATES",
    "EVENT_COLUMNS",
    "NUMERIC_AGGREGATES",
    "TRAIT_FIELDS",
    "TraitSpec",
    "parse_trait_specs",
    "trait_problems",
]
