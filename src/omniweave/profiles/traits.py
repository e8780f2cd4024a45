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
that names the trait and the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from omniweave.errors import InputError

AGGREGATES = ("count", "sum", "avg", "min", "max", "first", "last", "distinct")
"""`distinct` is the number of distinct values; `first`/`last` the value of the earliest/latest event."""

NUMERIC_AGGREGATES = frozenset({"sum", "avg"})

EVENT_COLUMNS = frozenset(
    {
        "message_id",
        "source",
        "type",
        "event",
        "user_id",
        "anonymous_id",
        "group_id",
        "previous_id",
        "channel",
        "timestamp",
        "original_timestamp",
        "sent_at",
        "received_at",
        "campaign_source",
        "campaign_medium",
        "campaign_name",
    }
)
"""Columns a trait may aggregate or filter on directly (the JSON columns go through `property`)."""

_FIELDS = ("name", "agg", "property", "column", "event", "channel", "where", "window_days", "description")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_PROPERTY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class TraitSpec:
    """One custom trait: `agg` of `property` or `column` over the events that pass the filters."""

    name: str
    agg: str
    property: str | None = None
    column: str | None = None
    events: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    where: tuple[tuple[str, str], ...] = ()
    window_days: float | None = None
    description: str = ""


def parse_trait_specs(raw: Iterable[Mapping[str, Any] | TraitSpec], reserved: Iterable[str] = ()) -> list[TraitSpec]:
    """Validate trait declarations; `reserved` are column names a trait may not take (built-in columns)."""
    taken = set(reserved)
    specs: list[TraitSpec] = []
    for index, item in enumerate(raw):
        spec = item if isinstance(item, TraitSpec) else _parse_one(item, index)
        if spec.name in taken:
            raise InputError(
                f"trait {spec.name!r}: the name is already a profile column or another trait",
                field="name",
                record=index,
            )
        taken.add(spec.name)
        specs.append(spec)
    return specs


def _parse_one(item: Mapping[str, Any], index: int) -> TraitSpec:
    if not isinstance(item, Mapping):
        raise InputError(f"a trait must be a table of fields, got {type(item).__name__}", record=index)
    name = item.get("name")
    label = f"trait {name!r}" if isinstance(name, str) else f"trait #{index}"

    def fail(field: str, reason: str) -> InputError:
        return InputError(f"{label}: {reason}", field=field, record=index)

    unknown = sorted(set(item) - set(_FIELDS))
    if unknown:
        raise fail(unknown[0], f"unknown field {unknown[0]!r}; valid fields: {', '.join(_FIELDS)}")
    if not isinstance(name, str) or not _NAME.match(name):
        raise fail("name", f"name must be lower_snake_case (letters, digits, _; starting with a letter), got {name!r}")
    agg = item.get("agg")
    if agg not in AGGREGATES:
        raise fail("agg", f"agg must be one of {', '.join(AGGREGATES)}, got {agg!r}")
    prop, column = item.get("property"), item.get("column")
    if prop is not None and column is not None:
        raise fail("property", "give either property or column, not both")
    if agg != "count" and prop is None and column is None:
        raise fail("property", f"agg {agg!r} needs a property (a key of the event's properties) or a column")
    if prop is not None and (not isinstance(prop, str) or not _PROPERTY.match(prop)):
        raise fail("property", f"property must be a key like 'revenue' or 'page.path', got {prop!r}")
    if column is not None and column not in EVENT_COLUMNS:
        raise fail("column", f"unknown events column {column!r}; valid columns: {', '.join(sorted(EVENT_COLUMNS))}")
    if agg in NUMERIC_AGGREGATES and column is not None and column != "timestamp":
        raise fail(
            "column", f"agg {agg!r} needs a numeric value; use a property (cast to a number), not column {column!r}"
        )
    window = item.get("window_days")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int | float) or window <= 0):
        raise fail("window_days", f"window_days must be a positive number of days, got {window!r}")
    where = item.get("where") or {}
    if not isinstance(where, Mapping):
        raise fail("where", f"where must be a table of property = value, got {where!r}")
    for key, value in where.items():
        if not isinstance(key, str) or not _PROPERTY.match(key):
            raise fail("where", f"where key must be a property like 'currency', got {key!r}")
        if not isinstance(value, str | int | float | bool):
            raise fail("where", f"where value for {key!r} must be a string, number or boolean, got {value!r}")
    description = item.get("description", "")
    if not isinstance(description, str):
        raise fail("description", "description must be a string")
    return TraitSpec(
        name=name,
        agg=agg,
        property=prop,
        column=column,
        events=_names(item.get("event"), fail, "event"),
        channels=_names(item.get("channel"), fail, "channel"),
        where=tuple((k, _as_text(v)) for k, v in sorted(where.items())),
        window_days=float(window) if window is not None else None,
        description=description,
    )


def _names(value: Any, fail: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list | tuple) or not values or not all(isinstance(v, str) and v for v in values):
        raise fail(field, f"{field} must be a name or a non-empty list of names, got {value!r}")
    return tuple(values)


def _as_text(value: Any) -> str:
    """Properties are compared as the text a JSON extraction gives (`true`, `12`, `12.5`, `GBP`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
